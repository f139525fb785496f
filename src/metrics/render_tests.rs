//! Scrapes of real devices running over the in-memory backends.
use super::*;
use crate::io::mem::MemNetwork;
use crate::metrics::parse::{parse, Parsed};
use crate::uapi::protocol::{AllowedIpChange, DeviceSet, PeerSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const PSK: [u8; 32] = [0x5a; 32];

use crate::device::test_node::{public_of, TestNode as Node};

/// A scrape of a test node's device.
trait Scrape {
    fn scrape(&self, extra: &Extra) -> (String, Parsed);
}

impl Scrape for Node {
    fn scrape(&self, extra: &Extra) -> (String, Parsed) {
        let mut out = String::new();
        render(&mut out, &self.dev, extra);
        let parsed = parse(&out).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{out}"));
        (out, parsed)
    }
}

/// Scrapes until `pred` holds: the sender bumps its counters after the
/// datagram is already on the (synchronous) in-memory wire, so the receiver
/// can deliver before the sender's numbers move.
fn scrape_until(node: &Node, extra: &Extra, what: &str, pred: impl Fn(&Parsed) -> bool) -> Parsed {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (text, p) = node.scrape(extra);
        if pred(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn b64(k: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20 + payload.len()];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&Ipv4Addr::from(src).octets());
    p[16..20].copy_from_slice(&Ipv4Addr::from(dst).octets());
    p[20..].copy_from_slice(payload);
    p
}

fn send_until_delivered(from: &Node, to: &Node, pkt: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        from.tun.inject(pkt);
        if to.tun.recv_timeout(Duration::from_millis(300)).is_some() {
            return;
        }
    }
    panic!("packet never crossed the tunnel");
}

/// Two connected devices with a preshared key; secrets are distinct bytes
/// so any leak is unambiguous.
fn pair(net: &MemNetwork, base_port: u16) -> (Node, Node) {
    let a = Node::new(net, "192.0.2.1", base_port, [0x11; 32]);
    let b = Node::new(net, "192.0.2.2", base_port + 1, [0x22; 32]);
    a.add_peer(&b, Some(PSK), true, &[("10.0.0.2", 32), ("fd00::2", 128)]);
    b.add_peer(&a, Some(PSK), false, &[("10.0.0.1", 32)]);
    (a, b)
}

fn full_extra() -> Extra {
    let hist = Arc::new(DeviceHistograms::new());
    hist.rx_packet.observe(Duration::from_micros(40));
    hist.tx_packet.observe(Duration::from_micros(80));
    hist.handshake.observe(Duration::from_millis(3));
    hist.tunnel_test_rtt.observe(Duration::from_millis(150));
    Extra {
        interface: "wg0".into(),
        live: Some(true),
        ready: Some(false),
        health_checks: vec![("tun".into(), true), ("udp".into(), false)],
        gates: vec![
            ("gate2_p99".into(), true),
            ("odd \"name\"\\\n".into(), false),
        ],
        offloads: vec![("tso".into(), false), ("udp_gro".into(), true)],
        tunnel_tests_run: 7,
        tunnel_tests_failed: 2,
        histograms: Some(hist),
        ..Default::default()
    }
}

#[test]
fn scrape_tracks_traffic_on_a_live_pair() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 52000);
    let extra = Extra::default();
    let (_, before) = a.scrape(&extra);
    assert_eq!(before.value("phantommesh_peers", &[]), Some(1.0));
    assert_eq!(
        before.value("phantommesh_packets_total", &[("direction", "tx")]),
        Some(0.0)
    );
    assert_eq!(before.value("phantommesh_sessions", &[]), Some(0.0));
    let peer_key = b64(&b.public());
    let labels = [
        ("interface", "wgm52000"),
        ("public_key", peer_key.as_str()),
        ("allowed_ips", "10.0.0.2/32,fd00::2/128"),
    ];
    assert_eq!(
        before.value("wireguard_latest_handshake_seconds", &labels),
        Some(0.0),
        "0 before any handshake"
    );

    send_until_delivered(&a, &b, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], b"hello"));
    let tx_pk = |p: &Parsed| {
        p.value("phantommesh_packets_total", &[("direction", "tx")])
            .unwrap()
    };
    let mid = scrape_until(&a, &extra, "A's tx packet", |p| tx_pk(p) >= 1.0);
    scrape_until(&b, &extra, "B's rx packet", |p| {
        p.value("phantommesh_packets_total", &[("direction", "rx")])
            .unwrap()
            >= 1.0
    });
    assert!(
        mid.value("phantommesh_handshakes_total", &[("outcome", "initiated")])
            .unwrap()
            >= 1.0
    );
    assert!(
        mid.value("phantommesh_handshakes_total", &[("outcome", "completed")])
            .unwrap()
            >= 1.0
    );
    assert!(mid.value("phantommesh_sessions", &[]).unwrap() >= 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let hs = mid
        .value("wireguard_latest_handshake_seconds", &labels)
        .expect("compat series");
    assert!(
        (now - hs).abs() < 30.0,
        "a Unix timestamp, not an age: {hs}"
    );
    let hs2 = mid
        .value(
            "phantommesh_peer_last_handshake_timestamp_seconds",
            &[("public_key", &peer_key)],
        )
        .unwrap();
    assert!((hs2 - hs).abs() < 1.0);
    let tx1 = mid
        .value(
            "phantommesh_peer_transmit_bytes_total",
            &[("public_key", &peer_key)],
        )
        .unwrap();
    assert!(tx1 > 0.0);
    assert_eq!(
        mid.value("wireguard_sent_bytes_total", &labels),
        Some(tx1),
        "both families agree"
    );

    // More traffic, both ways: counters only grow.
    for i in 0u8..20 {
        a.tun.inject(&ipv4([10, 0, 0, 1], [10, 0, 0, 2], &[i; 100]));
    }
    for _ in 0..20 {
        b.tun
            .recv_timeout(Duration::from_secs(5))
            .expect("packet lost");
    }
    send_until_delivered(&b, &a, &ipv4([10, 0, 0, 2], [10, 0, 0, 1], b"back"));
    let after = scrape_until(&a, &extra, "20 more tx packets", |p| {
        tx_pk(p) >= tx_pk(&mid) + 20.0
    });
    let tx2 = after
        .value(
            "phantommesh_peer_transmit_bytes_total",
            &[("public_key", &peer_key)],
        )
        .unwrap();
    assert!(tx2 >= tx1 + 20.0 * 100.0, "{tx1} -> {tx2}");
    let rx = after
        .value("wireguard_received_bytes_total", &labels)
        .unwrap();
    assert!(rx > 0.0);
    assert!(
        after
            .value("phantommesh_packets_total", &[("direction", "rx")])
            .unwrap()
            >= 1.0
    );

    // A packet with no route is counted under its reason.
    let drops = |p: &Parsed| {
        p.value(
            "phantommesh_packets_dropped_total",
            &[("reason", "no_route")],
        )
        .unwrap()
    };
    let d0 = drops(&after);
    a.tun
        .inject(&ipv4([10, 0, 0, 1], [10, 9, 9, 9], b"nowhere"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while drops(&a.scrape(&extra).1) <= d0 {
        assert!(Instant::now() < deadline, "no_route drop never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_no_key(text: &str, key: &[u8; 32], what: &str) {
    use base64::Engine;
    let engines = [
        base64::engine::general_purpose::STANDARD.encode(key),
        base64::engine::general_purpose::URL_SAFE.encode(key),
    ];
    for enc in engines {
        // The first 43 characters cover both padded and unpadded forms.
        assert!(!text.contains(&enc[..43]), "{what} leaked as base64");
    }
    let hex_lower = hex::encode(key);
    assert!(
        !text.to_ascii_lowercase().contains(&hex_lower),
        "{what} leaked as hex"
    );
}

#[test]
fn scrape_never_contains_private_or_preshared_keys() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 52100);
    send_until_delivered(&a, &b, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], b"psk in use"));
    for node in [&a, &b] {
        let (text, parsed) = node.scrape(&full_extra());
        assert_no_key(&text, &node.secret, "private key");
        assert_no_key(&text, &PSK, "preshared key");
        // The search would find a key that is there: public keys are.
        assert!(text.contains(&b64(&node.public())), "own public key shown");
        assert_eq!(
            parsed
                .samples("phantommesh_peer_receive_bytes_total")
                .count(),
            1
        );
    }
    // The device really holds both secrets (this is not a vacuous check).
    let info = a.dev.info();
    assert_eq!(info.private_key, Some(a.secret));
    let key = a.dev.peer_keys()[0];
    assert_eq!(a.dev.peer_info(&key).unwrap().preshared_key, PSK);
    // What the scrape reads never copies the preshared key out; only the
    // UAPI get's variant does.
    let scraped = &a.dev.peer_infos()[0];
    assert_eq!(scraped.preshared_key, [0; 32]);
    assert_eq!(a.dev.peer_infos_with_psk()[0].preshared_key, PSK);
    assert_eq!(a.dev.listen_port(), info.listen_port);
}

#[test]
fn per_peer_series_stop_above_the_cap() {
    let net = MemNetwork::new();
    let hub = Node::new(&net, "192.0.2.10", 52200, [0x33; 32]);
    for i in 1u8..=5 {
        let peer = PeerSet {
            public_key: public_of([0x40 + i; 32]),
            allowed_ips: vec![AllowedIpChange::Add(
                IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)),
                32,
            )],
            ..Default::default()
        };
        hub.dev
            .apply(&DeviceSet {
                peers: vec![peer],
                ..Default::default()
            })
            .unwrap();
    }
    let per_peer = [
        "phantommesh_peer_receive_bytes_total",
        "phantommesh_peer_transmit_bytes_total",
        "phantommesh_peer_last_handshake_timestamp_seconds",
        "wireguard_sent_bytes_total",
        "wireguard_received_bytes_total",
        "wireguard_latest_handshake_seconds",
    ];
    let (_, at_cap) = hub.scrape(&Extra {
        max_peer_series: 5,
        ..Default::default()
    });
    assert_eq!(
        at_cap.value("phantommesh_peer_metrics_truncated", &[]),
        Some(0.0)
    );
    for name in per_peer {
        assert_eq!(at_cap.samples(name).count(), 5, "{name}");
    }
    let (_, over) = hub.scrape(&Extra {
        max_peer_series: 4,
        ..Default::default()
    });
    assert_eq!(
        over.value("phantommesh_peer_metrics_truncated", &[]),
        Some(1.0)
    );
    assert_eq!(
        over.value("phantommesh_peers", &[]),
        Some(5.0),
        "the count stays exact"
    );
    for name in per_peer {
        assert_eq!(over.samples(name).count(), 0, "{name}");
    }
    assert_eq!(Extra::default().max_peer_series, 1000);
}

#[test]
fn extra_values_and_histograms_render() {
    let net = MemNetwork::new();
    let node = Node::new(&net, "192.0.2.20", 52300, [0x44; 32]);
    let mut extra = full_extra();
    extra.gates.push(("gate2_p99".into(), false)); // a duplicate name keeps the first value
    let (_, p) = node.scrape(&extra);
    assert_eq!(
        p.value(
            "phantommesh_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    let own = b64(&node.public());
    assert_eq!(
        p.value(
            "phantommesh_device_info",
            &[("interface", "wg0"), ("public_key", &own)]
        ),
        Some(1.0)
    );
    assert_eq!(p.value("phantommesh_listen_port", &[]), Some(52300.0));
    assert_eq!(p.value("phantommesh_live", &[]), Some(1.0));
    assert_eq!(p.value("phantommesh_ready", &[]), Some(0.0));
    assert_eq!(
        p.value("phantommesh_gate_passed", &[("gate", "gate2_p99")]),
        Some(1.0)
    );
    assert_eq!(
        p.value("phantommesh_gate_passed", &[("gate", "odd \"name\"\\\n")]),
        Some(0.0),
        "escaped round trip"
    );
    assert_eq!(
        p.value("phantommesh_health_check_passed", &[("check", "udp")]),
        Some(0.0)
    );
    assert_eq!(
        p.value("phantommesh_offload_enabled", &[("feature", "udp_gro")]),
        Some(1.0)
    );
    assert_eq!(p.value("phantommesh_tunnel_tests_total", &[]), Some(7.0));
    assert_eq!(
        p.value("phantommesh_tunnel_test_failures_total", &[]),
        Some(2.0)
    );
    assert_eq!(p.value("phantommesh_under_load", &[]), Some(0.0));
    for reason in [
        "bad_mac",
        "replay",
        "decrypt",
        "no_route",
        "source_check",
        "rate_limited",
        "malformed",
        "no_session",
        "queue_full",
    ] {
        assert!(
            p.value("phantommesh_packets_dropped_total", &[("reason", reason)])
                .is_some(),
            "{reason}"
        );
    }
    let h = "phantommesh_packet_processing_seconds";
    assert_eq!(
        p.value(
            &format!("{h}_bucket"),
            &[("direction", "rx"), ("le", "0.00005")]
        ),
        Some(1.0)
    );
    assert_eq!(
        p.value(
            &format!("{h}_bucket"),
            &[("direction", "rx"), ("le", "0.000025")]
        ),
        Some(0.0)
    );
    assert_eq!(
        p.value(
            &format!("{h}_bucket"),
            &[("direction", "tx"), ("le", "0.00005")]
        ),
        Some(0.0)
    );
    assert_eq!(
        p.value(&format!("{h}_count"), &[("direction", "tx")]),
        Some(1.0)
    );
    let rtt = "phantommesh_tunnel_test_rtt_seconds_bucket";
    assert_eq!(p.value(rtt, &[("le", "0.1")]), Some(0.0));
    assert_eq!(p.value(rtt, &[("le", "0.2")]), Some(1.0));
    assert_eq!(
        p.value("phantommesh_handshake_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        p.family("phantommesh_handshake_duration_seconds")
            .unwrap()
            .kind,
        "histogram"
    );

    // Unknown values are left out rather than guessed.
    let (text, bare) = node.scrape(&Extra::default());
    assert!(
        bare.family("phantommesh_live").is_none() && bare.family("phantommesh_ready").is_none()
    );
    assert!(
        !text.contains("phantommesh_packet_processing_seconds"),
        "no histograms without a source"
    );
    assert_eq!(
        bare.value(
            "phantommesh_device_info",
            &[("interface", "wgm52300"), ("public_key", &own)]
        ),
        Some(1.0)
    );
}

#[test]
fn allowed_ips_label_is_bounded() {
    let v: Vec<(IpAddr, u8)> = (0u8..5)
        .map(|i| (IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 32))
        .collect();
    assert_eq!(
        join_prefixes(&v, 10),
        "10.0.0.0/32,10.0.0.1/32,10.0.0.2/32,10.0.0.3/32,10.0.0.4/32"
    );
    assert_eq!(join_prefixes(&v, 2), "10.0.0.0/32,10.0.0.1/32,+3 more");
    assert_eq!(join_prefixes(&[], 2), "");
}

/// `promtool check metrics` (Debian package `prometheus`) must accept the
/// scrape with no lint findings. Set PHANTOMMESH_NO_PROMTOOL=1 to skip.
#[test]
fn promtool_accepts_the_scrape() {
    if std::env::var("PHANTOMMESH_NO_PROMTOOL").as_deref() == Ok("1") {
        eprintln!("skipping: PHANTOMMESH_NO_PROMTOOL=1");
        return;
    }
    let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("promtool");
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 52400);
    send_until_delivered(&a, &b, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], b"x"));
    for node in [&a, &b] {
        let (text, _) = node.scrape(&full_extra());
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run promtool ({e}): install it (apt-get install -y --no-install-recommends prometheus) \
                     or set PHANTOMMESH_NO_PROMTOOL=1 to skip this test"
                )
            });
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool rejected the scrape:\n{}{}\n--- scrape ---\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
