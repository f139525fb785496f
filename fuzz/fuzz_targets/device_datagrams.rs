//! Raw datagrams into a whole device on the in-memory backends: the receive
//! path's classification and session lookup, decryption, the inner header
//! and allowed-IPs source checks, the TUN write, and the handshake queue
//! (MAC checks, cookies, rate limiting, handshakes) handled on this thread.
//!
//! The harness is the device's one peer: it completes a real handshake at
//! start-up (and again before the session expires), so a datagram can be
//! raw bytes, a data message sealed with the live session around any inner
//! packet, or a handshake message of the right type and length with a valid
//! MAC1 for the device (so it reaches the handshake code).
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use phantommesh::device::receive::Receiver;
use phantommesh::device::Device;
use phantommesh::fuzz_api::{drain_handshake_queue, handle_handshake, receive_pass};
use phantommesh::io::mem::{MemNetwork, MemTun, MemTunHandle};
use phantommesh::io::{Bind, RecvMeta, Udp};
use phantommesh::noise::handshake::{consume_response, create_initiation, Identity, PeerKeys};
use phantommesh::noise::keypair::Keypair;
use phantommesh::noise::messages::{message_type, MessageType};
use phantommesh::noise::tai64n::Tai64n;
use phantommesh::device::config::{AllowedIpChange, DeviceSet, PeerSet};
use phantommesh_fuzz::*;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

#[derive(Arbitrary, Debug)]
enum Op {
    Raw(Vec<u8>),
    Data {
        counter: Counter,
        inner: Inner,
    },
    Handshake {
        kind: u8,
        body: Vec<u8>,
        to_session: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum Counter {
    Next,
    Back(u16),
    Exact(u64),
}

#[derive(Arbitrary, Debug)]
enum Inner {
    Raw(Vec<u8>),
    V4 {
        src: [u8; 2],
        allowed: bool,
        dst: [u8; 4],
        proto: u8,
        payload: Vec<u8>,
        len_delta: i8,
    },
    V6 {
        src: [u8; 2],
        allowed: bool,
        dst: [u8; 16],
        next: u8,
        payload: Vec<u8>,
        len_delta: i8,
    },
}

impl Inner {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Inner::Raw(b) => b.clone(),
            Inner::V4 {
                src,
                allowed,
                dst,
                proto,
                payload,
                len_delta,
            } => {
                let mut p = vec![0u8; 20];
                p[0] = 0x45;
                let len =
                    (20 + payload.len() as i64 + i64::from(*len_delta)).clamp(0, 65535) as u16;
                p[2..4].copy_from_slice(&len.to_be_bytes());
                p[8] = 64;
                p[9] = *proto;
                let net = if *allowed { [10, 9] } else { [10, 8] };
                p[12..16].copy_from_slice(&[net[0], net[1], src[0], src[1]]);
                p[16..20].copy_from_slice(dst);
                p.extend_from_slice(payload);
                p
            }
            Inner::V6 {
                src,
                allowed,
                dst,
                next,
                payload,
                len_delta,
            } => {
                let mut p = vec![0u8; 40];
                p[0] = 0x60;
                let len = (payload.len() as i64 + i64::from(*len_delta)).clamp(0, 65535) as u16;
                p[4..6].copy_from_slice(&len.to_be_bytes());
                p[6] = *next;
                p[7] = 64;
                p[8] = 0xfd;
                p[9] = if *allowed { 0 } else { 1 };
                p[22..24].copy_from_slice(src);
                p[24..40].copy_from_slice(dst);
                p.extend_from_slice(payload);
                p
            }
        }
    }
}

/// A socket that "receives" the current input's datagrams.
#[derive(Default)]
struct FuzzUdp {
    queued: Mutex<Vec<Vec<u8>>>,
}

impl Udp for FuzzUdp {
    fn recv(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        self.recv_ready(bufs, meta)
    }
    fn recv_ready(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let mut q = self.queued.lock().unwrap();
        let n = q.len().min(bufs.len()).min(meta.len());
        for (i, d) in q.drain(..n).enumerate() {
            let len = d.len().min(bufs[i].len());
            bufs[i][..len].copy_from_slice(&d[..len]);
            meta[i] = RecvMeta {
                len,
                src: peer_addr(),
                ..RecvMeta::default()
            };
        }
        Ok(n)
    }
    fn send(&self, _: &[&[u8]], _: SocketAddr) -> io::Result<()> {
        Ok(())
    }
    fn port(&self) -> u16 {
        51820
    }
    fn close(&self) {}
}

fn peer_addr() -> SocketAddr {
    "10.0.0.2:51820".parse().unwrap()
}

struct Session {
    kp: Keypair,
    born: Instant,
}

struct Harness {
    _net: MemNetwork,
    dev: Arc<Device>,
    tun: MemTunHandle,
    /// The peer's own socket: where the device's answers arrive.
    sock: Arc<dyn Udp>,
    me: Identity,
    to_device: PeerKeys,
    udp: FuzzUdp,
    rx: Mutex<Receiver>,
    session: Mutex<Option<Session>>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let net = MemNetwork::new();
        let (tun, handle) = MemTun::new("fuzz0", 1420);
        let dev = Device::with_workers(tun, Arc::new(net.bind("10.0.0.1".parse().unwrap())), 1);
        dev.apply(&DeviceSet {
            private_key: Some(RESPONDER_SECRET),
            listen_port: Some(51820),
            peers: vec![PeerSet {
                public_key: *public(INITIATOR_SECRET).as_bytes(),
                endpoint: Some(peer_addr()),
                allowed_ips: vec![
                    AllowedIpChange::Add("10.9.0.0".parse().unwrap(), 16),
                    AllowedIpChange::Add("fd00::".parse().unwrap(), 16),
                ],
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("device config");
        let sock = net
            .bind("10.0.0.2".parse().unwrap())
            .open(51820, 0)
            .expect("peer socket");
        let me = identity(INITIATOR_SECRET);
        let to_device = peer_keys(&me, RESPONDER_SECRET, [0; 32]);
        Harness {
            _net: net,
            dev,
            tun: handle,
            sock,
            me,
            to_device,
            udp: FuzzUdp::default(),
            rx: Mutex::new(Receiver::default()),
            session: Mutex::new(None),
        }
    })
}

/// A real handshake with the device, as its peer.
fn handshake(h: &Harness) -> Session {
    let mut bufs = vec![vec![0u8; 2048]; 64];
    let mut meta = vec![RecvMeta::default(); 64];
    // Empty the peer's socket (keepalives, cookie replies) first.
    while h.sock.recv(&mut bufs, &mut meta).unwrap_or(0) > 0 {}
    // The device refuses initiations closer than 20 ms together.
    std::thread::sleep(Duration::from_millis(25));
    let index = rand_index();
    let ts = Tai64n::from_system_time(SystemTime::now());
    let (state, mut msg) = create_initiation(
        &h.me,
        &h.to_device,
        index,
        ts,
        &mut FuzzRng(u64::from(index)),
    )
    .unwrap();
    add_mac1(&mut msg, &public(RESPONDER_SECRET));
    handle_handshake(&h.dev, &msg, peer_addr());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let n = h.sock.recv(&mut bufs, &mut meta).unwrap_or(0);
        for i in 0..n {
            let m = &bufs[i][..meta[i].len];
            if message_type(m) == Ok(MessageType::Response) {
                let keys = consume_response(&h.me, &h.to_device, &state, m.try_into().unwrap())
                    .expect("the device's response");
                return Session {
                    kp: Keypair::new(keys, Instant::now()),
                    born: Instant::now(),
                };
            }
        }
    }
    panic!("the device did not answer a real initiation");
}

fn rand_index() -> u32 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16) | 1
}

fn seal(kp: &Keypair, counter: u64, inner: &[u8]) -> Vec<u8> {
    let padded = inner.len().next_multiple_of(16).min(1420).max(inner.len());
    let mut b = vec![0u8; 16 + padded + 16];
    b[16..16 + inner.len()].copy_from_slice(inner);
    let n = kp.seal(counter, &mut b, padded);
    b.truncate(n);
    b
}

fuzz_target!(|ops: Vec<Op>| {
    let h = harness();
    let mut session = h.session.lock().unwrap();
    // Rekeys well inside REJECT_AFTER_TIME, as a real peer would.
    if session
        .as_ref()
        .is_none_or(|s| s.born.elapsed() > Duration::from_secs(100))
    {
        *session = Some(handshake(h));
    }
    let s = session.as_ref().unwrap();
    let mut datagrams = Vec::new();
    for op in ops.into_iter().take(128) {
        let d = match op {
            Op::Raw(b) => b,
            Op::Data { counter, inner } => {
                let c = match counter {
                    Counter::Next => s.kp.next_counter().unwrap_or(0),
                    Counter::Back(b) => s.kp.sent_messages().saturating_sub(u64::from(b)),
                    Counter::Exact(c) => c,
                };
                seal(&s.kp, c, &inner.bytes())
            }
            Op::Handshake {
                kind,
                body,
                to_session,
            } => {
                let (t, len) = match kind % 3 {
                    0 => (1u8, 148),
                    1 => (2, 92),
                    _ => (3, 64),
                };
                let mut m = body;
                m.resize(len, 0);
                m[..4].copy_from_slice(&[t, 0, 0, 0]);
                if to_session {
                    // Addressed to the device's side of the live session.
                    let at = if t == 2 { 8 } else { 4 };
                    m[at..at + 4].copy_from_slice(&s.kp.remote_index.to_le_bytes());
                }
                if t != 3 {
                    add_mac1(&mut m, &public(RESPONDER_SECRET));
                }
                m
            }
        };
        datagrams.push(d);
    }
    *h.udp.queued.lock().unwrap() = datagrams;
    let mut rx = h.rx.lock().unwrap();
    while !h.udp.queued.lock().unwrap().is_empty() {
        receive_pass(&h.dev, &mut rx, &h.udp).expect("receive");
    }
    drain_handshake_queue(&h.dev);
    // Whatever reached the TUN left as well-formed packets.
    while let Some(p) = h.tun.recv_timeout(Duration::ZERO) {
        assert!(
            phantommesh::device::receive::inner_packet_len(&p).1,
            "{p:?}"
        );
    }
});
