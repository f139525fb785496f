use super::*;
use crate::device::test_node::TestNode;
use crate::io::mem::MemNetwork;
use std::os::fd::IntoRawFd;

/// A server on a socket in a temporary directory, with `limits`.
struct Served {
    _node: TestNode,
    server: UapiServer,
    sock: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop (the server's own path is not this one).
        let _ = UnixStream::connect(&self.sock);
        let _ = std::fs::remove_file(&self.sock);
    }
}

fn serve(tag: &str, limits: Limits) -> Served {
    let node = TestNode::new(&MemNetwork::new(), "192.0.2.1", 51820, [0x11; 32]);
    let sock = std::env::temp_dir().join(format!("pm-uapi-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).unwrap();
    let server = UapiServer::from_fd(listener.into_raw_fd(), &format!("pmt-{tag}")).unwrap();
    server.serve_with(node.dev.clone(), limits).unwrap();
    Served {
        _node: node,
        server,
        sock,
    }
}

/// Sends `request` and reads until the answer's blank line or EOF.
fn ask(conn: &mut UnixStream, request: &str) -> String {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A refused connection may be answered and closed before the request
    // is written (EPIPE): the answer is still there to read.
    let _ = conn.write_all(request.as_bytes());
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\n\n") {
        match conn.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(_) => out.push(byte[0]),
        }
    }
    String::from_utf8(out).unwrap()
}

fn get_works(sock: &Path) -> bool {
    let Ok(mut c) = UnixStream::connect(sock) else {
        return false;
    };
    let a = ask(&mut c, "get=1\n\n");
    a.contains("listen_port=") && a.ends_with("errno=0\n\n")
}

fn peer_line(i: u32) -> String {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&i.to_be_bytes());
    k[31] = 1;
    format!("public_key={}\n", hex::encode(k))
}

#[test]
fn a_set_over_its_line_or_peer_cap_is_refused_and_serving_goes_on() {
    let s = serve(
        "caps",
        Limits {
            max_set_lines: 10,
            max_set_peers: 3,
            ..Limits::default()
        },
    );
    // Within both caps: applied.
    let mut c = UnixStream::connect(&s.sock).unwrap();
    let ok: String = (0..3).map(peer_line).collect();
    assert_eq!(ask(&mut c, &format!("set=1\n{ok}\n")), "errno=0\n\n");
    // One peer too many.
    let mut c = UnixStream::connect(&s.sock).unwrap();
    let four: String = (10..14).map(peer_line).collect();
    assert_eq!(ask(&mut c, &format!("set=1\n{four}\n")), "errno=-7\n\n");
    // Too many lines (one peer, many allowed IPs).
    let mut c = UnixStream::connect(&s.sock).unwrap();
    let ips: String = (0..11)
        .map(|i| format!("allowed_ip=10.0.{i}.0/24\n"))
        .collect();
    let req = format!("set=1\n{}{ips}\n", peer_line(20));
    assert_eq!(ask(&mut c, &req), "errno=-7\n\n");
    // Nothing of the refused sets was applied; the server still serves.
    assert_eq!(s._node.dev.peer_count(), 3);
    assert!(get_works(&s.sock));
}

#[test]
fn connections_over_the_cap_get_ebusy_until_one_ends() {
    let s = serve(
        "conns",
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
    );
    let mut held: Vec<UnixStream> = (0..2)
        .map(|_| UnixStream::connect(&s.sock).unwrap())
        .collect();
    // Both are served (the answer proves each has its slot).
    for c in &mut held {
        assert!(ask(c, "get=1\n\n").ends_with("errno=0\n\n"));
    }
    let mut third = UnixStream::connect(&s.sock).unwrap();
    assert_eq!(ask(&mut third, "get=1\n\n"), "errno=-16\n\n");
    drop(held.pop());
    // The slot frees once the handler sees the close: poll for it.
    let until = Instant::now() + Duration::from_secs(10);
    while !get_works(&s.sock) {
        assert!(Instant::now() < until, "slot never freed");
        std::thread::yield_now();
    }
}

#[test]
fn an_operation_gets_one_deadline() {
    let s = serve(
        "deadline",
        Limits {
            op_deadline: Duration::from_millis(300),
            ..Limits::default()
        },
    );
    let mut c = UnixStream::connect(&s.sock).unwrap();
    let start = Instant::now();
    // A set that never ends: the server closes the connection.
    assert_eq!(ask(&mut c, &format!("set=1\n{}", peer_line(1))), "");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(get_works(&s.sock));
}

#[test]
fn accept_errors_back_off_up_to_a_second() {
    let mut d = next_backoff(None);
    assert_eq!(d, Duration::from_millis(10));
    for _ in 0..20 {
        let n = next_backoff(Some(d));
        assert!(n >= d && n <= Duration::from_secs(1));
        d = n;
    }
    assert_eq!(d, Duration::from_secs(1));
}
