//! The shared I/O loop (`device::io_loop`) with real descriptors and no
//! root: each device's "TUN" is one end of a SOCK_SEQPACKET socketpair
//! (one packet per message, pollable like a TUN), and the devices talk over
//! real UDP sockets on 127.0.0.1.
use phantommesh::device::config::{AllowedIpChange, DeviceSet, PeerSet};
use phantommesh::device::options::{DeviceOptions, SMALL_BATCH};
use phantommesh::device::Device;
use phantommesh::io::linux_bind::LinuxBind;
use phantommesh::io::{LinkState, Tun, TunFeatures};
use phantommesh::noise::keys::{PublicKey, StaticSecretKey};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TUN stand-in: the device's end of a SOCK_SEQPACKET socketpair.
struct PairTun {
    fd: OwnedFd,
    closed: AtomicBool,
}

/// The test's end: what the kernel would write into and read from a TUN.
struct Wire {
    fd: OwnedFd,
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: fresh descriptors we own from here on.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn recv_msg(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn send_msg(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    // SAFETY: `buf` is readable for its length.
    let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn poll_in(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) > 0 }
}

impl Tun for PairTun {
    fn read(&self, bufs: &mut [Vec<u8>], sizes: &mut [usize], offset: usize) -> io::Result<usize> {
        if self.closed.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "closed"));
        }
        let mut n = 0;
        while n < bufs.len() {
            match recv_msg(
                self.fd.as_raw_fd(),
                &mut bufs[n][offset..],
                libc::MSG_DONTWAIT,
            ) {
                Ok(len) => {
                    sizes[n] = len;
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
    fn write(&self, bufs: &mut [&mut Vec<u8>], offset: usize) -> io::Result<()> {
        for b in bufs.iter() {
            send_msg(self.fd.as_raw_fd(), &b[offset..])?;
        }
        Ok(())
    }
    fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
    fn features(&self) -> TunFeatures {
        TunFeatures::PLAIN
    }
    fn name(&self) -> &str {
        "pair"
    }
    fn mtu(&self) -> io::Result<usize> {
        Ok(1420)
    }
    fn link_state(&self) -> LinkState {
        if self.closed.load(Ordering::Acquire) {
            LinkState::Gone
        } else {
            LinkState::Up
        }
    }
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

impl Wire {
    fn inject(&self, pkt: &[u8]) {
        send_msg(self.fd.as_raw_fd(), pkt).unwrap();
    }
    fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        if !poll_in(self.fd.as_raw_fd(), timeout) {
            return None;
        }
        let mut buf = vec![0u8; 65_536];
        let n = recv_msg(self.fd.as_raw_fd(), &mut buf, 0).ok()?;
        buf.truncate(n);
        Some(buf)
    }
}

struct Node {
    dev: Arc<Device>,
    wire: Wire,
    secret: [u8; 32],
}

impl Node {
    fn new(seed: u8, io_threads: usize) -> Node {
        let (dev_end, test_end) = socketpair();
        let tun = Arc::new(PairTun {
            fd: dev_end,
            closed: AtomicBool::new(false),
        });
        // Bursts go to the crypto workers whatever the machine's cores, so
        // their hand-offs back to the I/O threads are covered everywhere.
        let opts = DeviceOptions {
            workers: 2,
            io_threads,
            inline_batch: SMALL_BATCH,
            ..Default::default()
        };
        let dev = Device::with_options(tun, Arc::new(LinuxBind::new()), opts);
        let secret = [seed; 32];
        dev.apply(&DeviceSet {
            private_key: Some(secret),
            listen_port: Some(0),
            ..Default::default()
        })
        .unwrap();
        Node {
            dev,
            wire: Wire { fd: test_end },
            secret,
        }
    }
    fn public(&self) -> [u8; 32] {
        *PublicKey::from(&StaticSecretKey::from(self.secret)).as_bytes()
    }
    fn endpoint(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.dev.info().listen_port))
    }
    fn add_peer(&self, other: &Node, inner: &str) {
        self.dev
            .apply(&DeviceSet {
                peers: vec![PeerSet {
                    public_key: other.public(),
                    endpoint: Some(other.endpoint()),
                    allowed_ips: vec![AllowedIpChange::Add(inner.parse().unwrap(), 32)],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .unwrap();
    }
}

/// An IPv4/UDP packet from 10.0.0.`src` to 10.0.0.`dst` carrying `payload`.
fn packet(src: u8, dst: u8, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, src]);
    p[16..20].copy_from_slice(&[10, 0, 0, dst]);
    let mut sum = 0u32;
    for c in p[..20].chunks(2) {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

fn recv_window(w: &Wire) -> Vec<Vec<u8>> {
    (0..64)
        .map_while(|_| w.recv(Duration::from_secs(5)))
        .collect()
}

fn pair(io_threads: usize) -> (Node, Node) {
    let a = Node::new(1, io_threads);
    let b = Node::new(2, io_threads);
    a.add_peer(&b, "10.0.0.2");
    b.add_peer(&a, "10.0.0.1");
    (a, b)
}

fn cross(from: &Node, to: &Node, pkt: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        from.wire.inject(pkt);
        if let Some(got) = to.wire.recv(Duration::from_millis(300)) {
            assert_eq!(got, pkt);
            return;
        }
    }
    panic!("packet never crossed the tunnel");
}

#[test]
fn round_trips_and_bursts_cross_in_order_with_one_io_thread() {
    round_trips_and_bursts(1);
}

#[test]
fn round_trips_and_bursts_cross_in_order_with_two_io_threads() {
    round_trips_and_bursts(2);
}

fn round_trips_and_bursts(io_threads: usize) {
    let (a, b) = pair(io_threads);
    cross(&a, &b, &packet(1, 2, b"hello"));
    // Request and reply, many times: the path a ping takes.
    for i in 0..200u32 {
        let req = packet(1, 2, &i.to_be_bytes());
        a.wire.inject(&req);
        assert_eq!(
            b.wire.recv(Duration::from_secs(3)).as_deref(),
            Some(&req[..]),
            "request {i}"
        );
        let rep = packet(2, 1, &i.to_be_bytes());
        b.wire.inject(&rep);
        assert_eq!(
            a.wire.recv(Duration::from_secs(3)).as_deref(),
            Some(&rep[..]),
            "reply {i}"
        );
    }
    // Bursts both ways at once, in windows of 64 (what fits the receive
    // buffers however slow this machine is): every packet arrives, each
    // direction in order.
    for w in 0..30u32 {
        let fwd: Vec<Vec<u8>> = (0..64u32)
            .map(|i| packet(1, 2, &(w * 64 + i).to_be_bytes().repeat(40)))
            .collect();
        let back: Vec<Vec<u8>> = (0..64u32)
            .map(|i| packet(2, 1, &(w * 64 + i).to_be_bytes().repeat(3)))
            .collect();
        std::thread::scope(|sc| {
            sc.spawn(|| fwd.iter().for_each(|p| a.wire.inject(p)));
            sc.spawn(|| back.iter().for_each(|p| b.wire.inject(p)));
            let got_b = sc.spawn(|| recv_window(&b.wire));
            let got_a = sc.spawn(|| recv_window(&a.wire));
            assert!(
                got_b.join().unwrap() == fwd,
                "window {w}: A to B lost or reordered packets"
            );
            assert!(
                got_a.join().unwrap() == back,
                "window {w}: B to A lost or reordered packets"
            );
        });
    }
}

/// Moves `node` to a listen port nobody holds now (a new UDP socket).
fn move_to_a_free_port(node: &Node) {
    let fresh = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = fresh.local_addr().unwrap().port();
    drop(fresh);
    node.dev
        .apply(&DeviceSet {
            listen_port: Some(port),
            ..Default::default()
        })
        .unwrap();
}

#[test]
fn the_loop_follows_a_new_listen_port() {
    let (a, b) = pair(2);
    cross(&a, &b, &packet(1, 2, b"before"));
    let old = b.endpoint();
    move_to_a_free_port(&b);
    assert_ne!(b.endpoint(), old);
    // B speaks first (A learns the new port from it), then A answers.
    cross(&b, &a, &packet(2, 1, b"from the new port"));
    cross(&a, &b, &packet(1, 2, b"after"));
}

#[test]
fn a_new_socket_is_polled_at_once_and_close_does_not_wait_for_idle_threads() {
    // Two I/O threads each: both must wake on close, not just one.
    let (a, b) = pair(2);
    cross(&a, &b, &packet(1, 2, b"before"));
    cross(&b, &a, &packet(2, 1, b"before, back"));
    // B's I/O thread is now in an idle wait of up to a second.
    std::thread::sleep(Duration::from_millis(50));
    move_to_a_free_port(&b);
    // A is told the new port (it does not learn it from B), so only B's
    // thread taking up the new socket at once lets this packet in.
    a.dev
        .apply(&DeviceSet {
            peers: vec![PeerSet {
                public_key: b.public(),
                endpoint: Some(b.endpoint()),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
    let pkt = packet(1, 2, b"to the new port");
    a.wire.inject(&pkt);
    let got = b.wire.recv(Duration::from_millis(600));
    assert_eq!(
        got.as_deref(),
        Some(&pkt[..]),
        "B did not poll its new socket before its idle wait ended"
    );
    // Every thread is idle now; closing wakes them instead of waiting.
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    a.dev.close();
    b.dev.close();
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "closing two idle devices took {:?}",
        t.elapsed()
    );
}
