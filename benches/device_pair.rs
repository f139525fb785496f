//! Two whole in-memory devices (MemTun + MemNetwork, the real pipelines and
//! threads) with a completed handshake: packets injected into A's TUN until
//! they come out of B's. Bursts of 512 packets of 1420 bytes stay well under
//! the mem queues' capacity (4096), so nothing should drop; any loss is
//! counted and reported rather than hidden.
//!
//! Ceiling: the per-packet cost of `Keypair` seal + open from
//! benches/keypair.rs (run it first; the summary reads its last result).
//!
//! `cargo bench --bench device_pair -- --warm-up-time 1 --measurement-time 3`
mod common;

use criterion::{criterion_group, Criterion, Throughput};
use phantommesh::device::config::{AllowedIpChange, DeviceSet, PeerSet};
use phantommesh::device::Device;
use phantommesh::io::mem::{MemNetwork, MemTun, MemTunHandle, QUEUE_CAPACITY};
use phantommesh::noise::keys::{PublicKey, StaticSecretKey};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const BURST: usize = 512;
const PACKET: usize = 1420;
/// Matches benches/keypair.rs.
const KEYPAIR_GROUP: &str = "keypair_128x1420";
const KEYPAIR_BATCH: f64 = 128.0;
const GROUP: &str = "device_pair";
const GROUP_BYTES: &str = "device_pair_bytes";
const FUNCTION: &str = "a_tun_to_b_tun";

struct Node {
    dev: Arc<Device>,
    tun: MemTunHandle,
    secret: [u8; 32],
    endpoint: SocketAddr,
}

impl Node {
    fn new(net: &MemNetwork, ip: &str, port: u16, seed: u8) -> Node {
        let (tun, handle) = MemTun::new(&format!("bench{seed}"), PACKET);
        let ip: IpAddr = ip.parse().unwrap();
        let dev = Device::new(tun, Arc::new(net.bind(ip)));
        let secret = [seed; 32];
        dev.apply(&DeviceSet {
            private_key: Some(secret),
            listen_port: Some(port),
            ..Default::default()
        })
        .unwrap();
        Node {
            dev,
            tun: handle,
            secret,
            endpoint: SocketAddr::new(ip, port),
        }
    }
    fn add_peer(&self, other: &Node, endpoint: bool, allowed: Ipv4Addr) {
        let public = *PublicKey::from(&StaticSecretKey::from(other.secret)).as_bytes();
        self.dev
            .apply(&DeviceSet {
                peers: vec![PeerSet {
                    public_key: public,
                    endpoint: endpoint.then_some(other.endpoint),
                    allowed_ips: vec![AllowedIpChange::Add(IpAddr::V4(allowed), 32)],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .unwrap();
    }
}

/// A valid IPv4/UDP packet of `PACKET` bytes in total.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; PACKET];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(PACKET as u16).to_be_bytes());
    p[4..6].copy_from_slice(&seq.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum = !p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .fold(0u32, |s, w| {
            let s = s + w;
            (s & 0xffff) + (s >> 16)
        }) as u16;
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

/// Drains whatever B still delivers (duplicates from the handshake phase).
fn drain(b: &Node) {
    while b.tun.recv_timeout(Duration::from_millis(200)).is_some() {}
}

/// Two peered devices with the handshake done and the first packet through.
fn pair(net: &MemNetwork, src: Ipv4Addr, dst: Ipv4Addr) -> (Node, Node) {
    let a = Node::new(net, "192.0.2.1", 51820, 1);
    let b = Node::new(net, "192.0.2.2", 51821, 2);
    a.add_peer(&b, true, dst);
    b.add_peer(&a, false, src);
    let probe = ipv4(src, dst, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "handshake never completed");
        a.tun.inject(&probe);
        if let Some(got) = b.tun.recv_timeout(Duration::from_millis(300)) {
            assert_eq!(got, probe);
            break;
        }
    }
    drain(&b);
    (a, b)
}

/// Sends one burst; returns how many of its packets B delivered.
fn burst(a: &Node, b: &Node, pkts: &[Vec<u8>]) -> usize {
    for p in pkts {
        a.tun.inject(p);
    }
    let mut got = 0;
    while got < pkts.len() && b.tun.recv_timeout(Duration::from_secs(1)).is_some() {
        got += 1;
    }
    got
}

fn bench(c: &mut Criterion) {
    const _: () = assert!(BURST * 2 <= QUEUE_CAPACITY);
    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let net = MemNetwork::new();
    let (a, b) = pair(&net, src, dst);
    let pkts: Vec<Vec<u8>> = (0..BURST).map(|i| ipv4(src, dst, i as u16)).collect();
    let (sent, lost) = (AtomicU64::new(0), AtomicU64::new(0));

    for (group, throughput) in [
        (GROUP, Throughput::Elements(BURST as u64)),
        (GROUP_BYTES, Throughput::Bytes((BURST * PACKET) as u64)),
    ] {
        let mut g = c.benchmark_group(group);
        // An iteration is a whole burst (milliseconds): fewer samples keep
        // the run near the requested measurement time.
        g.sample_size(20);
        g.throughput(throughput);
        g.bench_function(FUNCTION, |bch| {
            bch.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let got = burst(&a, &b, &pkts);
                    sent.fetch_add(BURST as u64, Ordering::Relaxed);
                    lost.fetch_add((BURST - got) as u64, Ordering::Relaxed);
                }
                start.elapsed()
            })
        });
        g.finish();
    }
    let (sent, lost) = (sent.into_inner(), lost.into_inner());
    if lost > 0 {
        eprintln!(
            "device_pair: {lost} of {sent} packets lost (net dropped {}, tun write drops {}): \
             timings include 1 s receive timeouts",
            net.stats().dropped,
            b.tun.write_drops()
        );
    }
    a.dev.close();
    b.dev.close();
}

fn summary(since: SystemTime) {
    let Some(dev) = common::measured(GROUP, FUNCTION, Some(since))
        .or_else(|| common::measured(GROUP_BYTES, FUNCTION, Some(since)))
    else {
        eprintln!("\ndevice_pair: not measured in this run");
        return;
    };
    let dev_pps = 1e9 * BURST as f64 / dev.ns;
    eprintln!(
        "\ndevice pair A tun -> B tun: {:.0} packets/s, {:.3} Gbit/s",
        dev_pps,
        dev_pps * (PACKET * 8) as f64 / 1e9
    );
    let Some(kp) = common::measured(KEYPAIR_GROUP, "keypair_seal_open", None) else {
        eprintln!("no ceiling: run `cargo bench --bench keypair` first");
        return;
    };
    let age = kp.written.elapsed().unwrap_or_default().as_secs();
    let ceiling_pps = 1e9 * KEYPAIR_BATCH / kp.ns;
    common::print_ratio(
        &format!("device pair vs keypair seal+open (ceiling measured {age} s ago)"),
        dev_pps,
        ceiling_pps,
        "packets/s",
    );
}

criterion_group!(benches, bench);

fn main() {
    let since = SystemTime::now();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    summary(since);
}
