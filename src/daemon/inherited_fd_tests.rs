use super::*;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

fn temp_path(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("pm-fd-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn uapi_fd_must_be_a_listening_unix_stream_socket() {
    let sock = temp_path("uapi.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    assert_eq!(validate_uapi_fd(listener.as_raw_fd()), Ok(()));

    let (a, _b) = UnixStream::pair().unwrap();
    let e = validate_uapi_fd(a.as_raw_fd()).unwrap_err();
    assert!(e.contains("not listening"), "{e}");
    let (d, _d2) = UnixDatagram::pair().unwrap();
    let e = validate_uapi_fd(d.as_raw_fd()).unwrap_err();
    assert!(e.contains("not a stream socket"), "{e}");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = validate_uapi_fd(udp.as_raw_fd()).unwrap_err();
    assert!(e.contains("not a unix socket"), "{e}");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let e = validate_uapi_fd(tcp.as_raw_fd()).unwrap_err();
    assert!(e.contains("not a unix socket"), "{e}");

    let (r, _w) = pipe();
    let e = validate_uapi_fd(r.as_raw_fd()).unwrap_err();
    assert!(e.contains("a pipe"), "{e}");
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let e = validate_uapi_fd(file.as_raw_fd()).unwrap_err();
    assert!(e.contains("a regular file"), "{e}");
    std::fs::remove_file(&sock).unwrap();
}

#[test]
fn tun_fd_must_be_a_tun_character_device() {
    let (r, _w) = pipe();
    let e = validate_tun_fd(r.as_raw_fd()).unwrap_err();
    assert!(e.contains("a pipe, not a TUN"), "{e}");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = validate_tun_fd(udp.as_raw_fd()).unwrap_err();
    assert!(e.contains("a socket, not a TUN"), "{e}");
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let e = validate_tun_fd(file.as_raw_fd()).unwrap_err();
    assert!(e.contains("a regular file"), "{e}");
    // A character device, but not a TUN.
    let null = std::fs::File::open("/dev/null").unwrap();
    let e = validate_tun_fd(null.as_raw_fd()).unwrap_err();
    assert!(e.contains("not an attached TUN"), "{e}");
}

#[test]
fn closed_or_negative_descriptors_are_refused() {
    for fd in [-1, i32::MAX] {
        let e = validate_tun_fd(fd).unwrap_err();
        assert!(e.contains("is not open"), "{e}");
        let e = validate_uapi_fd(fd).unwrap_err();
        assert!(e.contains("is not open"), "{e}");
    }
}

fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe fills two new descriptors, owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh descriptors from pipe(2), owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}
