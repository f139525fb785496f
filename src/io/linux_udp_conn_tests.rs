use super::super::{Family, LinuxBind, LinuxUdp};
use crate::io::{Bind, RecvMeta, Udp, MAX_BATCH};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open() -> LinuxUdp {
    LinuxUdp::bind(0, 0, Family::DualStack).unwrap()
}

/// Receives until `want` datagrams arrived or 3 s passed. Every call must
/// succeed: a connected socket's ICMP errors are not the endpoint's end.
fn recv_n(udp: &LinuxUdp, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut store = vec![vec![0u8; 2048]; MAX_BATCH];
    let mut meta = vec![RecvMeta::default(); MAX_BATCH];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while out.len() < want && Instant::now() < deadline {
        let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| b.as_mut_slice()).collect();
        let n = udp.recv(&mut bufs, &mut meta).expect("recv failed");
        for (b, m) in bufs.iter().zip(&meta).take(n) {
            if m.len > 0 {
                out.push((b[..m.len].to_vec(), m.src));
            }
        }
    }
    out
}

fn peer(ip: &str) -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// Bytes waiting in the receive queue of the IPv4 socket bound to
/// `local_port` and connected to `remote`, from /proc/net/udp.
fn connected_rx_queue(local_port: u16, remote: SocketAddr) -> Option<u64> {
    let SocketAddr::V4(r) = remote else {
        return None;
    };
    let want_rem = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(r.ip().octets()),
        r.port()
    );
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local_port_hex = f[1].rsplit(':').next()?;
        let port = u16::from_str_radix(local_port_hex, 16).ok()?;
        (port == local_port && f[2] == want_rem).then(|| {
            let rx = f[4].split(':').nth(1).unwrap();
            u64::from_str_radix(rx, 16).unwrap()
        })
    })
}

#[test]
fn a_connected_peer_uses_its_own_socket_and_others_the_listener() {
    let udp = open();
    let (a, a_addr) = peer("127.0.0.1");
    let (b, b_addr) = peer("127.0.0.1");
    let dst = SocketAddr::from(([127, 0, 0, 1], udp.port()));

    assert!(udp.connect(a_addr));
    assert!(udp.connect(a_addr), "connecting again is a no-op");
    assert_eq!(udp.connected_count(), 1);

    // A's datagram waits on the connected socket, not the listener.
    a.send_to(b"from a", dst).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while connected_rx_queue(udp.port(), a_addr).unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing queued on the connected socket"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    b.send_to(b"from b", dst).unwrap();
    let mut got = recv_n(&udp, 2);
    got.sort();
    assert_eq!(
        got,
        vec![(b"from a".to_vec(), a_addr), (b"from b".to_vec(), b_addr)]
    );

    // Sends to either leave from our port.
    udp.send(&[b"to a".as_slice(), b"to a again"], a_addr)
        .unwrap();
    udp.send(&[b"to b".as_slice()], b_addr).unwrap();
    let mut buf = [0u8; 64];
    for want in [b"to a".as_slice(), b"to a again"] {
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from.port()), (want, udp.port()));
    }
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from.port()), (b"to b".as_slice(), udp.port()));
}

#[test]
fn disconnect_hands_the_peer_back_to_the_listener() {
    let udp = open();
    let (a, a_addr) = peer("127.0.0.1");
    let dst = SocketAddr::from(([127, 0, 0, 1], udp.port()));
    assert!(udp.connect(a_addr));
    udp.disconnect(a_addr);
    assert_eq!(udp.connected_count(), 0);
    assert_eq!(connected_rx_queue(udp.port(), a_addr), None);
    a.send_to(b"after", dst).unwrap();
    assert_eq!(recv_n(&udp, 1), vec![(b"after".to_vec(), a_addr)]);
    udp.send(&[b"back".as_slice()], a_addr).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = a.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"back");
}

#[test]
fn icmp_errors_on_a_connected_socket_neither_fail_nor_stop_the_endpoint() {
    let udp = open();
    // A port nobody listens on: sends to it provoke ICMP port unreachable,
    // which a connected socket reports on its next call.
    let gone = {
        let (s, addr) = peer("127.0.0.1");
        drop(s);
        addr
    };
    assert!(udp.connect(gone));
    for _ in 0..3 {
        udp.send(&[b"nobody home".as_slice()], gone)
            .expect("a refused send falls back to the listener");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The pending error must not surface as the endpoint closing.
    let (a, a_addr) = peer("127.0.0.1");
    a.send_to(
        b"still here",
        SocketAddr::from(([127, 0, 0, 1], udp.port())),
    )
    .unwrap();
    assert_eq!(recv_n(&udp, 1), vec![(b"still here".to_vec(), a_addr)]);
}

#[test]
fn ipv6_peers_connect_too() {
    let udp = open();
    let Ok(s) = UdpSocket::bind("[::1]:0") else {
        panic!("IPv6 loopback unavailable: this test needs ::1");
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let s_addr = s.local_addr().unwrap();
    assert!(udp.connect(s_addr));
    s.send_to(
        b"v6",
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, udp.port())),
    )
    .unwrap();
    assert_eq!(recv_n(&udp, 1), vec![(b"v6".to_vec(), s_addr)]);
    udp.send(&[b"v6 back".as_slice()], s_addr).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = s.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from.port()),
        (b"v6 back".as_slice(), udp.port())
    );
}

#[test]
fn the_port_stays_exclusive_and_close_wakes_an_epoll_receiver() {
    let udp: Arc<dyn Udp> = LinuxBind::new().open(0, 0).unwrap();
    let (_a, a_addr) = peer("127.0.0.1");
    assert!(udp.connect(a_addr));
    // Sharing the port with our connected sockets must not let another
    // endpoint (a second daemon) bind it.
    let err = LinuxBind::new()
        .open(udp.port(), 0)
        .err()
        .expect("must conflict");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

    let reader = {
        let udp = udp.clone();
        std::thread::spawn(move || {
            let mut store = [0u8; 64];
            let mut meta = [RecvMeta::default()];
            loop {
                if let Err(e) = udp.recv(&mut [&mut store[..]], &mut meta) {
                    return e.kind();
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    udp.close();
    assert_eq!(reader.join().unwrap(), std::io::ErrorKind::NotConnected);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "close did not wake the receiver"
    );
    assert!(!udp.connect(a_addr), "a closed endpoint connects nothing");
}

#[test]
fn with_connected_sockets_off_everything_goes_through_the_listener() {
    let mut udp = open();
    assert!(Udp::offloads(&udp).contains(&("udp_connected", true)));
    udp.conns = super::Conns::off();
    assert!(Udp::offloads(&udp).contains(&("udp_connected", false)));
    let (a, a_addr) = peer("127.0.0.1");
    assert!(!udp.connect(a_addr));
    a.send_to(b"plain", SocketAddr::from(([127, 0, 0, 1], udp.port())))
        .unwrap();
    assert_eq!(recv_n(&udp, 1), vec![(b"plain".to_vec(), a_addr)]);
}
