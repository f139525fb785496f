//! Pinned peers' datagrams overtake a full listen queue; unpinned, roamed,
//! re-bound and capped sets behave. Loopback only.
use super::*;
use crate::io::linux_bind::LinuxBind;
use crate::io::linux_udp::Family;
use crate::io::Bind;
use std::net::UdpSocket;
use std::time::Duration;

/// Strangers' datagrams, enough to fill the listen socket's receive buffer.
const FLOOD: usize = 3000;

fn open(port: u16, pins: Arc<Pins>) -> PeerSockets {
    open_family(port, pins, Family::V4Only)
}

fn open_family(port: u16, pins: Arc<Pins>, family: Family) -> PeerSockets {
    PeerSockets::new(
        LinuxUdp::bind(port, 0, family).unwrap(),
        0,
        pins,
        crate::io::linux_udp::RECV_BUFFER_BYTES,
    )
    .unwrap()
}

fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// Receives what is queued until `want` came from `from`; returns how many
/// datagrams were read before it (None if it never came).
fn position_of(u: &dyn Udp, from: SocketAddr, want: &[u8]) -> Option<usize> {
    let mut bufs = vec![vec![0u8; 2048]; 64];
    let mut meta = vec![RecvMeta::default(); 64];
    let mut seen = 0;
    loop {
        let n = u.recv_ready(&mut bufs, &mut meta).unwrap();
        if n == 0 {
            return None;
        }
        for i in 0..n {
            if meta[i].src == from && &bufs[i][..meta[i].len] == want {
                return Some(seen);
            }
            seen += 1;
        }
    }
}

/// Floods `u`'s port from a stranger, then sends one datagram from `peer`.
fn flood_then_peer(u: &dyn Udp, peer: &UdpSocket) -> Option<usize> {
    let to = SocketAddr::from(([127, 0, 0, 1], u.port()));
    let stranger = client();
    for _ in 0..FLOOD {
        let _ = stranger.send_to(&[1u8; 148], to);
    }
    peer.send_to(b"established", to).unwrap();
    position_of(u, peer.local_addr().unwrap(), b"established")
}

#[test]
fn pinned_peer_overtakes_a_flooded_listen_queue() {
    let u = open(0, Arc::default());
    let peer = client();
    u.pin(Endpoint::to(peer.local_addr().unwrap()));
    assert_eq!(u.connected(), 1);
    assert_eq!(flood_then_peer(&u, &peer), Some(0), "read first");
}

/// Reads until a datagram from `from` arrives; its `connected` flag.
fn arrived_connected(u: &dyn Udp, from: SocketAddr) -> bool {
    let mut bufs = vec![vec![0u8; 2048]; 4];
    let mut meta = vec![RecvMeta::default(); 4];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let n = u.recv(&mut bufs, &mut meta).unwrap();
        if let Some(m) = meta[..n].iter().find(|m| m.src == from) {
            return m.connected;
        }
    }
    panic!("no datagram from {from}");
}

#[test]
fn datagrams_tell_whether_they_came_on_a_pinned_socket() {
    let u = open(0, Arc::default());
    let to = SocketAddr::from(([127, 0, 0, 1], u.port()));
    let (peer, stranger) = (client(), client());
    u.pin(Endpoint::to(peer.local_addr().unwrap()));
    // Three in a row from the peer: the second and third take the path
    // that reads a lone ready socket directly (the "hot" one).
    for _ in 0..3 {
        peer.send_to(b"data", to).unwrap();
        assert!(arrived_connected(&u, peer.local_addr().unwrap()));
    }
    stranger.send_to(b"hello", to).unwrap();
    assert!(!arrived_connected(&u, stranger.local_addr().unwrap()));
    // Unpinned, the peer is a stranger to the sockets again.
    u.unpin(peer.local_addr().unwrap());
    peer.send_to(b"data", to).unwrap();
    assert!(!arrived_connected(&u, peer.local_addr().unwrap()));
}

#[test]
fn dual_stack_socket_pins_ipv4_peers_too() {
    let u = open_family(0, Arc::default(), Family::DualStack);
    let peer = client();
    let src = LocalAddr {
        ip: "127.0.0.1".parse().unwrap(),
        ifindex: 1,
    };
    u.pin(Endpoint {
        dst: peer.local_addr().unwrap(),
        src: Some(src),
    });
    assert_eq!(u.connected(), 1);
    assert_eq!(flood_then_peer(&u, &peer), Some(0));
}

#[test]
fn unpinned_peer_waits_behind_or_is_dropped_with_the_flood() {
    let u = open(0, Arc::default());
    let peer = client();
    let at = flood_then_peer(&u, &peer);
    assert!(at.is_none_or(|n| n > 0), "{at:?}");
    // Pin then unpin: back on the listen socket.
    u.pin(Endpoint::to(peer.local_addr().unwrap()));
    u.unpin(peer.local_addr().unwrap());
    assert_eq!(u.connected(), 0);
    let at = flood_then_peer(&u, &peer);
    assert!(at.is_none_or(|n| n > 0), "{at:?}");
}

#[test]
fn roamed_peer_gets_a_new_socket_and_the_old_one_goes() {
    let u = open(0, Arc::default());
    let (old, new) = (client(), client());
    u.pin(Endpoint::to(old.local_addr().unwrap()));
    u.unpin(old.local_addr().unwrap());
    u.pin(Endpoint::to(new.local_addr().unwrap()));
    assert_eq!(u.connected(), 1);
    assert_eq!(flood_then_peer(&u, &new), Some(0));
}

#[test]
fn sticky_source_binds_the_connected_socket() {
    let u = open(0, Arc::default());
    let peer = client();
    let src = LocalAddr {
        ip: "127.0.0.1".parse().unwrap(),
        ifindex: 1,
    };
    u.pin(Endpoint {
        dst: peer.local_addr().unwrap(),
        src: Some(src),
    });
    assert_eq!(u.connected(), 1);
    assert_eq!(flood_then_peer(&u, &peer), Some(0));
    // Repeating the pin is a no-op; a new source reopens the socket.
    u.pin(Endpoint::to(peer.local_addr().unwrap()));
    assert_eq!(u.connected(), 1);
    assert_eq!(flood_then_peer(&u, &peer), Some(0));
}

#[test]
fn pins_follow_a_rebind_to_a_new_port() {
    let bind = LinuxBind::with_family(Family::V4Only);
    let first = bind.open(0, 0).unwrap();
    let peer = client();
    first.pin(Endpoint::to(peer.local_addr().unwrap()));
    first.close();
    let second = bind.open(0, 0).unwrap();
    assert_ne!(second.port(), 0);
    assert_eq!(flood_then_peer(second.as_ref(), &peer), Some(0));
}

#[test]
fn peers_beyond_the_cap_share_the_listen_socket() {
    let mut u = open(0, Arc::default());
    u.cap = 1;
    let (a, b) = (client(), client());
    u.pin(Endpoint::to(a.local_addr().unwrap()));
    u.pin(Endpoint::to(b.local_addr().unwrap()));
    assert_eq!(u.connected(), 1);
    // b still reaches the device, through the listen socket.
    let to = SocketAddr::from(([127, 0, 0, 1], u.port()));
    b.send_to(b"hello", to).unwrap();
    assert_eq!(position_of(&u, b.local_addr().unwrap(), b"hello"), Some(0));
}

#[test]
fn at_the_cap_a_long_silent_socket_makes_room() {
    let mut u = open(0, Arc::default());
    u.cap = 1;
    let (a, b) = (client(), client());
    let (da, db) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    u.pin(Endpoint::to(da));
    // a was heard from just now: b waits on the listen socket.
    u.last_evict_ms.store(0, Ordering::Relaxed);
    u.pin(Endpoint::to(db));
    assert!(u.conns.lock().by_dst.contains_key(&da));
    // a has been silent past IDLE_EVICT_MS: b takes its place.
    let Some(earlier) = u
        .born
        .checked_sub(Duration::from_millis(IDLE_EVICT_MS + 5 * EVICT_SCAN_MS))
    else {
        return; // the monotonic clock is younger than that
    };
    u.born = earlier;
    u.last_evict_ms.store(0, Ordering::Relaxed);
    u.pin(Endpoint::to(db));
    let conns = u.conns.lock();
    assert!(conns.by_dst.contains_key(&db) && conns.by_dst.len() == 1);
    drop(conns);
    assert_eq!(u.pins.0.lock().keys().collect::<Vec<_>>(), vec![&db]);
    assert_eq!(flood_then_peer(&u, &b), Some(0));
}

#[test]
fn a_second_listener_on_the_port_is_still_refused() {
    let u = open(0, Arc::default());
    let err = LinuxUdp::bind(u.port(), 0, Family::V4Only).err();
    assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::AddrInUse));
}

#[test]
fn close_wakes_blocking_receivers_with_an_error() {
    let u = Arc::new(open(0, Arc::default()));
    let peer = client();
    u.pin(Endpoint::to(peer.local_addr().unwrap()));
    let r = {
        let u = u.clone();
        std::thread::spawn(move || {
            let mut bufs = vec![vec![0u8; 2048]; 4];
            let mut meta = vec![RecvMeta::default(); 4];
            loop {
                if let Err(e) = u.recv(&mut bufs, &mut meta) {
                    return e;
                }
            }
        })
    };
    u.close();
    assert_eq!(u.connected(), 0);
    let e = r.join().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotConnected);
}

#[test]
fn ipv6_peer_is_pinned_on_the_dual_stack_socket() {
    let u = open_family(0, Arc::default(), Family::DualStack);
    let Ok(peer) = UdpSocket::bind("[::1]:0") else {
        return; // no IPv6 loopback here
    };
    u.pin(Endpoint::to(peer.local_addr().unwrap()));
    assert_eq!(u.connected(), 1);
    let to = SocketAddr::from((Ipv6Addr::LOCALHOST, u.port()));
    peer.send_to(b"v6", to).unwrap();
    assert_eq!(position_of(&u, peer.local_addr().unwrap(), b"v6"), Some(0));
}

/// A peer whose socket is read directly (alone ready and drained last
/// time) does not keep another peer's datagram waiting for more than a few
/// receives, even when it has a datagram before every one of them.
#[test]
fn a_hot_peer_does_not_keep_another_waiting() {
    let u = open(0, Arc::default());
    let to = SocketAddr::from(([127, 0, 0, 1], u.port()));
    let (p, q) = (client(), client());
    for c in [&p, &q] {
        u.pin(Endpoint::to(c.local_addr().unwrap()));
    }
    assert_eq!(u.connected(), 2);
    let mut bufs = vec![vec![0u8; 2048]; 64];
    let mut meta = vec![RecvMeta::default(); 64];
    let mut recv = |want: SocketAddr| -> bool {
        let n = u.recv_ready(&mut bufs, &mut meta).unwrap();
        (0..n).any(|i| meta[i].src == want)
    };
    // P alone, drained: its socket is hot.
    p.send_to(b"p", to).unwrap();
    assert!(recv(p.local_addr().unwrap()));
    q.send_to(b"q", to).unwrap();
    let q_at = (0..3 * HOT_TURNS as usize).find(|_| {
        p.send_to(b"p", to).unwrap();
        recv(q.local_addr().unwrap())
    });
    match q_at {
        Some(k) => assert!(k <= HOT_TURNS as usize, "Q waited {k} receives"),
        None => panic!("Q's datagram never came while P kept its socket busy"),
    }
}
