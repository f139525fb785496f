//! Tunnel tests: prove the node's whole data path works, end to end.
//!
//! The self test plays a WireGuard peer against the daemon's own listen
//! socket: a fresh key, registered as a hidden peer; a real handshake over
//! UDP; then ICMP echo requests that the daemon decrypts and writes to the
//! TUN, that the kernel answers, and whose replies the daemon reads back,
//! encrypts and sends to us. Only loopback and the node's own interface are
//! involved. The peer test forces a handshake with one configured peer and
//! times it; when that peer has a probe address, it then pings that address
//! from this host through the tunnel (see [`super::peer_probe`]).
use super::probe::{echo_request, interface_addresses, parse_echo_reply, probe_candidates};
use crate::device::Device;
use crate::noise::constants::DATA_HEADER_LEN;
use crate::noise::driver;
use crate::noise::handshake::Identity;
use crate::noise::keys::{PublicKey, StaticSecretKey};
use crate::noise::messages::{message_type, MessageType};
use crate::noise::peer::{Env, Output, PeerState};
use crate::uapi::protocol::{AllowedIpChange, DeviceSet, PeerSet};
use rand::RngCore;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub const DEFAULT_PROBES: usize = 20;
pub const MAX_PROBES: usize = 1000;
/// No test runs longer than this, whatever was asked.
pub const MAX_DURATION: Duration = Duration::from_secs(15);
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, Serialize, Default)]
pub struct Rtt {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct TestReport {
    pub ok: bool,
    /// "self", "self-handshake-only" (no interface address to probe from)
    /// or "peer".
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub handshake_ms: Option<f64>,
    /// Peer tests: "forced" (a new handshake was made) or "reused" (one
    /// was forced less than 5 s ago, so the current session was tested;
    /// see [`super::handshake_limit`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<&'static str>,
    /// Reused sessions: seconds since the peer's last handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_age_seconds: Option<f64>,
    pub rtt: Option<Rtt>,
    pub sent: usize,
    pub received: usize,
    pub errors: Vec<String>,
    pub duration_ms: f64,
    /// Echo probes to the peer's probe address (peer tests of peers that
    /// have one); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
    /// Raw RTT samples, for histograms; not part of the JSON answer.
    #[serde(skip)]
    pub rtts: Vec<Duration>,
    /// The device's count of link returns when the test started (see
    /// [`crate::device::link`]): a self test is readiness's verdict only
    /// while the link has not come back since.
    #[serde(skip)]
    pub link_ups: u64,
}

/// Pings from this host to an address behind the tested peer.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub address: IpAddr,
    pub sent: usize,
    pub received: usize,
    pub rtt: Option<Rtt>,
    #[serde(skip)]
    pub rtts: Vec<Duration>,
}

/// What a peer test should ping after the handshake.
#[derive(Debug, Clone, Copy)]
pub struct PeerProbe {
    pub address: IpAddr,
    pub count: usize,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Nearest-rank quantile of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// p50 / p99 / max of samples; None without samples.
fn summarize(samples: &[Duration]) -> Option<Rtt> {
    let mut s = samples.to_vec();
    s.sort();
    let max = *s.last()?;
    Some(Rtt {
        p50_ms: ms(quantile(&s, 0.5)),
        p99_ms: ms(quantile(&s, 0.99)),
        max_ms: ms(max),
    })
}

impl TestReport {
    fn finish(mut self, started: Instant) -> Self {
        self.rtt = summarize(&self.rtts);
        if let Some(p) = &mut self.probe {
            p.rtt = summarize(&p.rtts);
        }
        self.duration_ms = ms(started.elapsed());
        let probes_ok = self
            .probe
            .as_ref()
            .is_none_or(|p| p.sent > 0 && p.received == p.sent);
        self.ok =
            self.errors.is_empty() && self.has_session() && self.received == self.sent && probes_ok;
        self
    }

    /// Whether the test has a session to probe on: a completed handshake,
    /// or a reused current session.
    fn has_session(&self) -> bool {
        self.handshake_ms.is_some()
            || (self.handshake == Some(REUSED) && self.handshake_age_seconds.is_some())
    }

    /// Attempts, answers and RTT samples of the whole test (handshake and
    /// probes), for the gates' loss and latency windows.
    pub fn totals(&self) -> (usize, usize, Vec<Duration>) {
        let mut rtts = self.rtts.clone();
        let (mut sent, mut received) = (self.sent, self.received);
        if let Some(p) = &self.probe {
            sent += p.sent;
            received += p.received;
            rtts.extend_from_slice(&p.rtts);
        }
        (sent, received, rtts)
    }
}

/// The client side: a peer state machine with its own identity.
struct Client {
    identity: Identity,
    state: PeerState,
    sock: UdpSocket,
    index: u32,
}

impl Client {
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut PeerState, &mut Env, &mut Vec<Output>) -> R,
    ) -> (R, Vec<Output>) {
        let mut rng = rand::rngs::OsRng;
        let mut idx = self.index;
        let mut alloc = || {
            idx = idx.wrapping_add(1);
            idx
        };
        let ctx = driver::Ctx {
            identity: &self.identity,
            now: Instant::now(),
            wall: SystemTime::now(),
            rng: &mut rng,
            alloc_index: &mut alloc,
        };
        let (r, out) = driver::call(&mut self.state, ctx, f);
        self.index = idx;
        // The client keeps no index table: it reads only its one session.
        let (_, out) = driver::split_index(out);
        (r, out)
    }

    fn send_handshakes(&self, out: &[Output]) {
        for o in out {
            if let Output::Handshake(m) = o {
                let _ = self.sock.send(m);
            }
        }
    }

    /// Handshakes with the daemon, answering cookie replies; returns the
    /// handshake latency.
    fn handshake(&mut self, deadline: Instant) -> Result<Duration, String> {
        let start = Instant::now();
        let (_, out) = self.call(|st, env, out| st.force_initiation(env, out));
        self.send_handshakes(&out);
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            match message_type(&buf[..n]) {
                Ok(MessageType::Response) => {
                    let msg: [u8; 92] = buf[..92].try_into().map_err(|_| "short response")?;
                    let (r, _) = self.call(|st, env, out| st.consume_response(env, &msg, out));
                    return r
                        .map(|_| start.elapsed())
                        .map_err(|e| format!("handshake response rejected: {e}"));
                }
                Ok(MessageType::CookieReply) => {
                    // The daemon is under load: retry with the cookie.
                    let msg: [u8; 64] = buf[..64].try_into().map_err(|_| "short cookie reply")?;
                    let _ = self.state.consume_cookie_reply(&msg, Instant::now());
                    let (_, out) = self.call(|st, env, out| st.force_initiation(env, out));
                    self.send_handshakes(&out);
                }
                _ => {}
            }
        }
        Err("no handshake response within the deadline".into())
    }

    fn send_data(&self, inner: &[u8]) -> Result<(), String> {
        let kp = self
            .state
            .sending_keypair(Instant::now())
            .ok_or("no session")?;
        let counter = kp.next_counter().ok_or("session exhausted")?;
        let plen = crate::noise::messages::padded_len(inner.len(), 1420);
        let mut buf = vec![0u8; DATA_HEADER_LEN + plen + 16];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + inner.len()].copy_from_slice(inner);
        let n = kp.seal(counter, &mut buf, plen);
        self.sock.send(&buf[..n]).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The next decrypted inner packet, until `deadline`.
    fn recv_data(&self, buf: &mut [u8], deadline: Instant) -> Option<Vec<u8>> {
        let kp = self.state.sending_keypair(Instant::now())?.clone();
        while Instant::now() < deadline {
            let Ok(n) = self.sock.recv(buf) else { continue };
            if message_type(&buf[..n]) != Ok(MessageType::Data) {
                continue;
            }
            if let Ok(len) = kp.open(&mut buf[..n]) {
                return Some(buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len].to_vec());
            }
        }
        None
    }
}

/// Picks a probe source in the interface's subnet that no peer routes, and
/// the interface address to ping.
fn probe_addresses(dev: &Device, ifname: &str) -> Option<(IpAddr, IpAddr)> {
    let mut addrs = interface_addresses(ifname);
    addrs.sort_by_key(|(a, _)| a.is_ipv6()); // IPv4 first
    addrs.into_iter().find_map(|(addr, prefix)| {
        let c = dev.first_unrouted(probe_candidates(addr, prefix, 64))?;
        Some((c, addr))
    })
}

/// Removes the hidden test peer however the test ends.
struct PeerGuard<'a> {
    dev: &'a Device,
    key: [u8; 32],
}

impl Drop for PeerGuard<'_> {
    fn drop(&mut self) {
        let _ = self.dev.apply(&DeviceSet {
            peers: vec![PeerSet {
                public_key: self.key,
                remove: true,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
}

/// Runs the self test with `probes` echo requests.
pub fn self_test(dev: &Device, ifname: &str, probes: usize) -> TestReport {
    let started = Instant::now();
    let deadline = started + MAX_DURATION;
    let mut rep = TestReport {
        mode: "self".into(),
        ..Default::default()
    };
    let (Some(device_key), port) = (dev.public_key(), dev.listen_port()) else {
        rep.errors.push("no private key configured".into());
        return rep.finish(started);
    };
    if port == 0 {
        rep.errors.push("not listening on UDP".into());
        return rep.finish(started);
    }
    let addrs = probe_addresses(dev, ifname);
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let identity = Identity::new(StaticSecretKey::from(secret));
    let my_key = *identity.public_key().as_bytes();
    let allowed: Vec<AllowedIpChange> = match addrs {
        Some((src, _)) => vec![AllowedIpChange::Add(
            src,
            if src.is_ipv4() { 32 } else { 128 },
        )],
        None => {
            rep.mode = "self-handshake-only".into();
            Vec::new()
        }
    };
    let sock = match UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.connect((Ipv4Addr::LOCALHOST, port)).map(|_| s))
        .or_else(|_| {
            UdpSocket::bind((Ipv6Addr::LOCALHOST, 0))
                .and_then(|s| s.connect((Ipv6Addr::LOCALHOST, port)).map(|_| s))
        }) {
        Ok(s) => s,
        Err(e) => {
            rep.errors
                .push(format!("cannot open a loopback UDP socket: {e}"));
            return rep.finish(started);
        }
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let test_peer = PeerSet {
        public_key: my_key,
        allowed_ips: allowed,
        ..Default::default()
    };
    if let Err(e) = dev.add_hidden_peer(&test_peer) {
        rep.errors.push(format!("cannot add the test peer: {e}"));
        return rep.finish(started);
    }
    let _guard = PeerGuard { dev, key: my_key };
    let state = PeerState::new(
        Some(&identity),
        PublicKey::from(device_key),
        [0u8; 32],
        rand::random(),
    );
    let mut client = Client {
        identity,
        state,
        sock,
        index: rand::random(),
    };
    match client.handshake(deadline.min(Instant::now() + Duration::from_secs(5))) {
        Ok(d) => rep.handshake_ms = Some(ms(d)),
        Err(e) => {
            rep.errors.push(e);
            return rep.finish(started);
        }
    }
    if let Some((src, dst)) = addrs {
        run_probes(&client, src, dst, probes, deadline, &mut rep);
    }
    rep.finish(started)
}

fn run_probes(
    client: &Client,
    src: IpAddr,
    dst: IpAddr,
    probes: usize,
    deadline: Instant,
    rep: &mut TestReport,
) {
    let id: u16 = rand::random();
    let mut buf = vec![0u8; 2048];
    for seq in 0..probes.min(MAX_PROBES) as u16 {
        if Instant::now() >= deadline {
            rep.errors.push("test duration limit reached".into());
            return;
        }
        let Some(pkt) = echo_request(src, dst, id, seq, b"phantommesh tunnel-test") else {
            return;
        };
        let sent_at = Instant::now();
        if let Err(e) = client.send_data(&pkt) {
            rep.errors.push(format!("probe {seq}: {e}"));
            return;
        }
        rep.sent += 1;
        let until = (sent_at + PROBE_TIMEOUT).min(deadline);
        loop {
            match client.recv_data(&mut buf, until) {
                Some(inner) => {
                    if parse_echo_reply(&inner, src) == Some((id, seq)) {
                        rep.received += 1;
                        rep.rtts.push(sent_at.elapsed());
                        break;
                    }
                }
                None => {
                    rep.errors.push(format!(
                        "probe {seq}: no reply within {} ms",
                        PROBE_TIMEOUT.as_millis()
                    ));
                    break;
                }
            }
        }
    }
}

/// [`TestReport::handshake`] of a test that forced a handshake.
pub const FORCED: &str = "forced";
/// [`TestReport::handshake`] of a test that used the current session.
pub const REUSED: &str = "reused";

/// How a peer test gets its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Force a new handshake and time it.
    Force,
    /// Use the current session; a new forced handshake is allowed after
    /// the given time.
    Reuse { retry_after: Duration },
}

/// Forces a handshake with a configured peer and times it.
pub fn peer_test(dev: &Device, public_key: [u8; 32], timeout: Duration) -> TestReport {
    peer_test_probing(dev, "", public_key, None, Handshake::Force, timeout)
}

/// Checks that the device routes `addr` to the peer `public_key` (its
/// allowed IPs cover it and no other peer's more specific prefix does), so
/// probes to it cross the tunnel to that peer.
pub fn check_probe_route(dev: &Device, public_key: &[u8; 32], addr: IpAddr) -> Result<(), String> {
    let routed_to = dev.route_of(addr);
    if routed_to == Some(*public_key) {
        return Ok(());
    }
    let key = crate::noise::keys::encode_base64_key(public_key);
    let mut own: Vec<String> = dev
        .peer_info(public_key)
        .into_iter()
        .flat_map(|i| i.allowed_ips)
        .map(|(ip, c)| format!("{ip}/{c}"))
        .collect();
    if own.is_empty() {
        own.push("none".into());
    }
    let why = match routed_to {
        Some(other) => format!(
            "it is routed to peer {} instead",
            crate::noise::keys::encode_base64_key(&other)
        ),
        None => "no peer's allowed IPs cover it".into(),
    };
    Err(format!(
        "probe address {addr} of peer {key} is outside that peer's allowed IPs ({}): {why}; fix `probe` or `allowed_ips` in the config",
        own.join(", ")
    ))
}

/// [`peer_test`], then, with `probe`, echo requests from this host to the
/// probe address over interface `ifname` (through the tunnel to the peer).
pub fn peer_test_probing(
    dev: &Device,
    ifname: &str,
    public_key: [u8; 32],
    probe: Option<PeerProbe>,
    handshake: Handshake,
    timeout: Duration,
) -> TestReport {
    let started = Instant::now();
    let mut rep = match handshake {
        Handshake::Force => handshake_test(dev, public_key, timeout),
        Handshake::Reuse { retry_after } => session_test(dev, public_key, retry_after),
    };
    let Some(probe) = probe else {
        return rep.finish(started);
    };
    let mut p = ProbeReport {
        address: probe.address,
        sent: 0,
        received: 0,
        rtt: None,
        rtts: Vec::new(),
    };
    if rep.has_session() {
        match check_probe_route(dev, &public_key, probe.address) {
            Ok(()) => {
                let o = super::peer_probe::ping_through(
                    ifname,
                    probe.address,
                    probe.count.min(MAX_PROBES),
                    started + MAX_DURATION,
                );
                (p.sent, p.received, p.rtts) = (o.sent, o.received, o.rtts);
                rep.errors.extend(o.errors);
            }
            Err(e) => rep.errors.push(e),
        }
    }
    rep.probe = Some(p);
    rep.finish(started)
}

/// The session part of a peer test whose handshake may not be forced
/// now: the current session's age, or an error when there is none.
fn session_test(dev: &Device, public_key: [u8; 32], retry_after: Duration) -> TestReport {
    let mut rep = TestReport {
        mode: "peer".into(),
        peer: Some(crate::noise::keys::encode_base64_key(&public_key)),
        handshake: Some(REUSED),
        ..Default::default()
    };
    let Some(peer) = dev.peer_snapshot(&public_key) else {
        rep.errors.push("unknown peer".into());
        return rep;
    };
    match peer.last_handshake.filter(|_| peer.has_session) {
        Some(t) => {
            let age = std::time::SystemTime::now()
                .duration_since(t)
                .unwrap_or_default();
            rep.handshake_age_seconds = Some((age.as_secs_f64() * 1e3).round() / 1e3);
        }
        None => rep.errors.push(format!(
            "no current session, and a handshake was forced less than {} s ago: \
             retry in {} ms",
            super::handshake_limit::FORCED_HANDSHAKE_INTERVAL.as_secs(),
            retry_after.as_millis()
        )),
    }
    rep
}

/// The handshake part of a peer test, not yet finished.
fn handshake_test(dev: &Device, public_key: [u8; 32], timeout: Duration) -> TestReport {
    let mut rep = TestReport {
        mode: "peer".into(),
        peer: Some(crate::noise::keys::encode_base64_key(&public_key)),
        handshake: Some(FORCED),
        ..Default::default()
    };
    let last_handshake = || {
        dev.peer_snapshot(&public_key)
            .and_then(|p| p.last_handshake)
    };
    let Some(peer) = dev.peer_snapshot(&public_key) else {
        rep.errors.push("unknown peer".into());
        return rep;
    };
    if peer.endpoint.is_none() {
        rep.errors.push("peer has no endpoint yet".into());
        return rep;
    }
    let before = peer.last_handshake;
    let sent_at = Instant::now();
    match dev.force_handshake(&public_key) {
        Ok(()) => {}
        Err(e) => {
            rep.errors.push(e.into());
            return rep;
        }
    }
    rep.sent = 1;
    let deadline = sent_at + timeout.min(MAX_DURATION);
    while Instant::now() < deadline {
        if last_handshake() != before {
            let d = sent_at.elapsed();
            rep.handshake_ms = Some(ms(d));
            rep.received = 1;
            rep.rtts.push(d);
            return rep;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    rep.errors
        .push(format!("no handshake within {} ms", timeout.as_millis()));
    rep
}

/// Convenience for the admin layer: test `peer` if given, else self.
pub fn run(dev: &Arc<Device>, ifname: &str, peer: Option<[u8; 32]>, probes: usize) -> TestReport {
    match peer {
        Some(k) => peer_test(dev, k, Duration::from_secs(5)),
        None => self_test(dev, ifname, probes),
    }
}

/// Loopback address of the daemon's listen socket (for logs).
pub fn listen_addr(dev: &Device) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, dev.listen_port()))
}
