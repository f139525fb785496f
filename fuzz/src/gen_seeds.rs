//! Writes the committed seed corpora (fuzz/seeds/<target>/) from the crate's
//! own code: real handshake messages and data messages (noise), a real
//! UAPI `get` dump and a real scrape of a device on the in-memory backends
//! with a completed handshake, and the example configuration files.
//!
//!   cd fuzz && cargo +nightly fuzz build gen_seeds &&
//!     target/x86_64-unknown-linux-gnu/release/gen_seeds
//!
//! Deterministic except for the timestamps and the scrape's counters. The
//! structure-aware targets (handshake_*, cookie, keypair_open,
//! device_datagrams) build real messages inside the harness instead, from
//! their input's seed fields.
use phantommesh::device::Device;
use phantommesh::io::mem::{MemNetwork, MemTun};
use phantommesh::metrics::render::{render, Extra};
use phantommesh::noise::cookie::CookieChecker;
use phantommesh::noise::handshake::*;
use phantommesh::noise::keypair::Keypair;
use phantommesh::noise::tai64n::Tai64n;
use phantommesh::device::config::{AllowedIpChange, DeviceSet, PeerSet};
use phantommesh_fuzz::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn put(target: &str, name: &str, data: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), data).unwrap();
}

fn repo(path: &str) -> Vec<u8> {
    fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).unwrap()
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&src);
    p[24..40].copy_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn handshake_messages() {
    let responder = identity(RESPONDER_SECRET);
    let initiator = identity(INITIATOR_SECRET);
    let to_responder = peer_keys(&initiator, RESPONDER_SECRET, PSK);
    let peer = peer_keys(&responder, INITIATOR_SECRET, PSK);
    let ts = Tai64n::from_system_time(SystemTime::now());
    let (state, mut init) =
        create_initiation(&initiator, &to_responder, 0x1234, ts, &mut FuzzRng(1)).unwrap();
    add_mac1(&mut init, responder.public_key());
    let consumed = consume_initiation(&responder, &init, |_| Some(&peer)).unwrap();
    let (mut resp, rkeys) = create_response(&peer, &consumed, 0x5678, &mut FuzzRng(2)).unwrap();
    add_mac1(&mut resp, initiator.public_key());
    let ikeys = consume_response(&initiator, &to_responder, &state, &resp).unwrap();
    let mut checker = CookieChecker::new(responder.public_key());
    let reply = checker.create_reply(
        &init,
        "192.0.2.1:51820".parse().unwrap(),
        Instant::now(),
        &mut FuzzRng(3),
    );
    let kp = Keypair::new(ikeys, Instant::now());
    let _ = Keypair::new(rkeys, Instant::now());
    let inner = ipv4(
        [10, 9, 0, 2],
        [10, 9, 0, 1],
        17,
        b"\x30\x39\x00\x35\x00\x0chello",
    );
    let mut data = vec![0u8; 16 + 48 + 16];
    data[16..16 + inner.len()].copy_from_slice(&inner);
    let n = kp.seal(0, &mut data, 48);
    data.truncate(n);
    let mut keepalive = vec![0u8; 32];
    let n = kp.seal(1, &mut keepalive, 0);
    keepalive.truncate(n);
    for (name, m) in [
        ("initiation", &init[..]),
        ("response", &resp[..]),
        ("cookie_reply", &reply[..]),
        ("data", &data[..]),
        ("keepalive", &keepalive[..]),
    ] {
        put("datagram_classify", name, m);
    }
}

fn inner_packets() {
    let tcp = {
        let mut t = vec![0u8; 20];
        t[12] = 0x50;
        t.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        t
    };
    put(
        "inner_headers",
        "ipv4_udp",
        &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &[0; 12]),
    );
    put(
        "inner_headers",
        "ipv4_tcp",
        &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 6, &tcp),
    );
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = 1;
    let mut b = a;
    b[15] = 2;
    put("inner_headers", "ipv6_tcp", &ipv6(a, b, 6, &tcp));
    put("inner_headers", "ipv6_udp", &ipv6(a, b, 17, &[0; 16]));
}

/// A device with a peer and a completed handshake: its `get` and its scrape.
fn device_dumps() {
    let net = MemNetwork::new();
    let (ta, _ha) = MemTun::new("seed0", 1420);
    let (tb, _hb) = MemTun::new("seed1", 1420);
    let a = Device::with_workers(ta, Arc::new(net.bind("10.0.0.1".parse().unwrap())), 1);
    let b = Device::with_workers(tb, Arc::new(net.bind("10.0.0.2".parse().unwrap())), 1);
    let peer = |secret: [u8; 32], port: &str, ip: &str| PeerSet {
        public_key: *public(secret).as_bytes(),
        preshared_key: Some(PSK),
        endpoint: Some(port.parse().unwrap()),
        persistent_keepalive_interval: Some(25),
        allowed_ips: vec![
            AllowedIpChange::Add(ip.parse().unwrap(), 32),
            AllowedIpChange::Add("fd00::".parse().unwrap(), 64),
        ],
        ..Default::default()
    };
    a.apply(&DeviceSet {
        private_key: Some(RESPONDER_SECRET),
        listen_port: Some(51820),
        fwmark: Some(0x1234),
        peers: vec![peer(INITIATOR_SECRET, "10.0.0.2:51821", "10.9.0.2")],
        ..Default::default()
    })
    .unwrap();
    b.apply(&DeviceSet {
        private_key: Some(INITIATOR_SECRET),
        listen_port: Some(51821),
        peers: vec![peer(RESPONDER_SECRET, "10.0.0.1:51820", "10.9.0.1")],
        ..Default::default()
    })
    .unwrap();
    // The keepalive makes b start a handshake; wait for it to complete.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a
        .peer_infos()
        .iter()
        .all(|i| i.last_handshake_time_sec == 0)
    {
        assert!(
            Instant::now() < deadline,
            "no handshake between the seed devices"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut get = String::new();
    phantommesh::uapi::protocol::format_device(&a.info(), &mut get);
    for info in a.peer_infos() {
        phantommesh::uapi::protocol::format_peer(&info, &mut get);
    }
    // The dump as a set would read it: only the keys set knows.
    let settable: String = get
        .lines()
        .filter(|l| {
            !l.starts_with("last_handshake") && !l.starts_with("tx_") && !l.starts_with("rx_")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let set = format!("set=1\nreplace_peers=true\n{settable}\n");
    put(
        "uapi_parse",
        "get_dump",
        format!("set=1\n{get}\n").as_bytes(),
    );
    put("uapi_parse", "set_from_get", set.as_bytes());
    put("uapi_parse", "get", b"get=1\n\n");
    put(
        "uapi_device",
        "set_then_get",
        format!("{set}get=1\n\n").as_bytes(),
    );
    put(
        "uapi_device",
        "remove_peer",
        format!(
            "{set}set=1\npublic_key={}\nremove=true\n\nget=1\n\n",
            hex(public(INITIATOR_SECRET).as_bytes())
        )
        .as_bytes(),
    );
    let mut scrape = String::new();
    render(&mut scrape, &a, &Extra::default());
    put("metrics_parse", "scrape", scrape.as_bytes());
    a.close();
    b.close();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn configs() {
    let mut toml = vec![0u8];
    toml.extend(repo("config/phantommesh.toml"));
    put("config", "phantommesh.toml", &toml);
    let mut conf = vec![1u8];
    conf.extend(repo("config/example-wg0.conf"));
    put("config", "example-wg0.conf", &conf);
    // The first byte picks the parser (see fuzz_targets/config.rs).
    for (name, which, s) in [
        ("cidr4", 2u8, "10.100.0.0/24"),
        ("cidr6", 2, "fd00:100::1/64"),
        ("endpoint4", 3, "192.0.2.1:51820"),
        ("endpoint6", 3, "[2001:db8::1]:51820"),
        ("key", 4, "4nhsls0q7klSqPEh+VPMNSDd8fQGZoZospgUcqfAHiU="),
        ("ifname", 5, "wg0"),
    ] {
        let mut b = vec![which];
        b.extend_from_slice(s.as_bytes());
        put("config", name, &b);
    }
    put("admin_query", "health", b"verbose&exclude=tun&exclude=udp");
    put(
        "admin_query",
        "tunnel_test",
        b"peer=4nhsls0q7klSqPEh%2BVPMNSDd8fQGZoZospgUcqfAHiU%3D&probes=3",
    );
}

fn main() {
    handshake_messages();
    inner_packets();
    configs();
    device_dumps();
    println!("seeds written to {}/seeds", env!("CARGO_MANIFEST_DIR"));
}
