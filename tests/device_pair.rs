//! Whole devices talking over the in-memory network: the real pipelines,
//! threads and UAPI semantics, with no kernel and no root.
mod common;

use common::Node;
use phantommesh::device::config::{DeviceSet, PeerSet};
use phantommesh::io::mem::MemNetwork;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20 + payload.len()];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..].copy_from_slice(payload);
    p
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40 + payload.len()];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..].copy_from_slice(payload);
    p
}

/// Injects `pkt` into `from` until `to` delivers it (the first ones wait
/// for the handshake); returns what arrived.
fn send_until_delivered(from: &Node, to: &Node, pkt: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        from.tun.inject(pkt);
        if let Some(got) = to.tun.recv_timeout(Duration::from_millis(300)) {
            return got;
        }
    }
    panic!("packet never crossed the tunnel");
}

fn pair(net: &MemNetwork) -> (Node, Node) {
    let a = Node::new(net, "192.0.2.1", 51820, 1, 4);
    let b = Node::new(net, "192.0.2.2", 51821, 2, 4);
    a.add_peer(&b, true, &[("10.0.0.2", 32), ("fd00::2", 128)], None);
    b.add_peer(&a, false, &[("10.0.0.1", 32), ("fd00::1", 128)], None);
    (a, b)
}

#[test]
fn two_devices_exchange_ipv4_and_ipv6_both_ways() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net);
    let p = ipv4(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        b"hello",
    );
    assert_eq!(send_until_delivered(&a, &b, &p), p);
    // B learned A's endpoint from the handshake: it can answer.
    let r = ipv4(
        "10.0.0.2".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        b"world",
    );
    assert_eq!(send_until_delivered(&b, &a, &r), r);
    let p6 = ipv6(
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        &[7u8; 1000],
    );
    assert_eq!(send_until_delivered(&a, &b, &p6), p6);
    // Odd sizes are padded on the wire and trimmed on delivery.
    for len in [0usize, 1, 15, 17, 1379] {
        let p = ipv4(
            "10.0.0.2".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            &vec![0xab; len],
        );
        assert_eq!(send_until_delivered(&b, &a, &p), p, "payload {len}");
    }
    let info = a.dev.peer_info(&a.dev.peer_keys()[0]).unwrap();
    assert!(
        info.last_handshake_time_sec > 1_600_000_000,
        "epoch seconds, not an age"
    );
    assert!(info.tx_bytes > 0 && info.rx_bytes > 0);
}

#[test]
fn batch_of_packets_arrives_in_order() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net);
    let first = ipv4(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        b"x",
    );
    send_until_delivered(&a, &b, &first);
    // Rounds of sequence-numbered packets of varying size: batches large
    // enough to go to the crypto workers, which finish them in any order.
    let mut next = 0u32;
    for round in 0..20usize {
        let start = next;
        for k in 0..400usize {
            let mut payload = next.to_be_bytes().to_vec();
            payload.resize(4 + (k * 7 + round) % 1300, 0x5a);
            a.tun.inject(&ipv4(
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                &payload,
            ));
            next += 1;
        }
        for i in start..next {
            let got = b
                .tun
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|| panic!("packet {i} lost"));
            assert_eq!(&got[20..24], &i.to_be_bytes(), "reordered at {i}");
        }
    }
}

#[test]
fn source_address_must_belong_to_the_sending_peer() {
    let net = MemNetwork::new();
    let a = Node::new(&net, "192.0.2.1", 51820, 1, 4);
    let b = Node::new(&net, "192.0.2.2", 51821, 2, 4);
    let c = Node::new(&net, "192.0.2.3", 51822, 3, 4);
    // A gives B the /24 but the more specific .3 to C.
    a.add_peer(&b, true, &[("10.0.0.0", 24)], None);
    a.add_peer(&c, true, &[("10.0.0.3", 32)], None);
    b.add_peer(&a, true, &[("10.0.0.0", 24)], None);
    c.add_peer(&a, true, &[("10.0.0.0", 24)], None);
    let from_b = ipv4(
        "10.0.0.2".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        b"ok",
    );
    assert_eq!(send_until_delivered(&b, &a, &from_b), from_b);
    // B spoofing C's address is dropped by A's source check.
    let spoof = ipv4(
        "10.0.0.3".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        b"spoof",
    );
    for _ in 0..5 {
        b.tun.inject(&spoof);
    }
    assert!(
        a.tun.recv_timeout(Duration::from_millis(500)).is_none(),
        "spoofed packet delivered"
    );
    assert!(a.dev.counters().drop_source_check >= 1);
    // C's own packets with that source pass, and A routes .3 to C.
    let from_c = ipv4(
        "10.0.0.3".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        b"c",
    );
    assert_eq!(send_until_delivered(&c, &a, &from_c), from_c);
    let to_c = ipv4(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.3".parse().unwrap(),
        b"to c",
    );
    assert_eq!(send_until_delivered(&a, &c, &to_c), to_c);
    assert!(
        b.tun.recv_timeout(Duration::from_millis(200)).is_none(),
        "B got C's packet"
    );
}

#[test]
fn peer_roams_to_a_new_port() {
    let net = MemNetwork::new();
    let (a, mut b) = pair(&net);
    let p = ipv4(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        b"1",
    );
    send_until_delivered(&a, &b, &p);
    b.dev
        .apply(&DeviceSet {
            listen_port: Some(40000),
            ..Default::default()
        })
        .unwrap();
    b.port = 40000;
    let r = ipv4(
        "10.0.0.2".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        b"2",
    );
    assert_eq!(send_until_delivered(&b, &a, &r), r);
    assert_eq!(
        a.dev.peer_info(&a.dev.peer_keys()[0]).unwrap().endpoint,
        Some(b.endpoint()),
        "A follows B to its new port"
    );
    assert_eq!(send_until_delivered(&a, &b, &p), p);
}

#[test]
fn junk_datagrams_do_not_disturb_a_working_tunnel() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net);
    let p = ipv4(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        b"before",
    );
    send_until_delivered(&a, &b, &p);
    let junk_sock = net.bind("192.0.2.66".parse().unwrap());
    let udp = phantommesh::io::Bind::open(&junk_sock, 0, 0).unwrap();
    let mut seed = 12345u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut junk: Vec<Vec<u8>> = Vec::new();
    for kind in 1u8..=4 {
        for len in [
            0usize, 1, 4, 31, 32, 63, 64, 65, 91, 92, 93, 147, 148, 149, 1500,
        ] {
            let mut m: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            if !m.is_empty() {
                m[0] = kind;
            }
            if m.len() >= 4 {
                m[1..4].fill(0);
            }
            junk.push(m);
        }
    }
    junk.push(vec![0x55; 65_507]);
    for m in &junk {
        udp.send(&[m], b.endpoint()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = ipv4(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        b"after",
    );
    assert_eq!(send_until_delivered(&a, &b, &after), after);
    assert!(!b.dev.is_closed());
}

#[test]
fn removing_a_peer_stops_its_traffic_and_frees_its_indices() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net);
    let p = ipv4(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        b"x",
    );
    send_until_delivered(&a, &b, &p);
    assert!(a.dev.index_count() > 0);
    a.dev
        .apply(&DeviceSet {
            peers: vec![PeerSet {
                public_key: b.public(),
                remove: true,
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(a.dev.peer_count(), 0);
    assert!(a.dev.index_count() == 0);
    a.tun.inject(&p);
    assert!(b.tun.recv_timeout(Duration::from_millis(300)).is_none());
}

#[test]
fn deleted_tun_is_noticed() {
    let net = MemNetwork::new();
    let (a, _b) = pair(&net);
    a.tun.delete();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !a.dev.tun_gone() {
        assert!(Instant::now() < deadline, "TUN deletion not noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.dev.close();
}
