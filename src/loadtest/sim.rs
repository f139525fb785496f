//! One simulated WireGuard peer: its own identity, the project's protocol
//! core as initiator ([`PeerState`], timers included, so it rekeys and
//! retransmits like a real peer), its own UDP socket, and its probes.
use super::net::realtime_ns;
use super::probe::{self, Matched, ProbeKind, Tracker};
use super::stats::{PeerResult, Stats};
use crate::noise::constants::{COOKIE_REPLY_LEN, DATA_HEADER_LEN, RESPONSE_LEN};
use crate::noise::driver;
use crate::noise::handshake::Identity;
use crate::noise::keypair::Keypair;
use crate::noise::messages::{message_type, padded_len, receiver_index, MessageType};
use crate::noise::peer::{Env, IndexEvent, Output, PeerState};
use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Inner MTU used for padding, as a default interface has.
const MTU: usize = 1420;

/// Settings every peer of a run shares.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub kind: ProbeKind,
    pub target: IpAddr,
    /// Payload bytes of a probe.
    pub size: usize,
    pub timeout: Duration,
    /// Payload bytes of a bulk packet (0: no bulk traffic).
    pub bulk_size: usize,
}

pub struct SimPeer {
    pub index: u32,
    pub addr: IpAddr,
    pub sock: UdpSocket,
    identity: Identity,
    state: PeerState,
    /// Sessions the core derived, by local index (at most three live).
    sessions: Vec<Arc<Keypair>>,
    next_index: u32,
    tracker: Tracker,
    probe_id: u16,
    bulk_seq: u16,
    first_initiation: Option<Instant>,
    pub established: Option<Instant>,
    pub result: PeerResult,
    rtt_sum_ns: u128,
    /// Scratch for sealing.
    buf: Vec<u8>,
}

/// Time since the run's origin, for the timeline.
fn at(origin: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(origin)
}

impl SimPeer {
    pub fn new(
        index: u32,
        addr: IpAddr,
        identity: Identity,
        state: PeerState,
        sock: UdpSocket,
        tracker: Tracker,
    ) -> SimPeer {
        let result = PeerResult {
            index,
            address: addr.to_string(),
            public_key: crate::cli::keys::encode_base64_key(identity.public_key().as_bytes()),
            ..PeerResult::default()
        };
        SimPeer {
            index,
            addr,
            sock,
            identity,
            state,
            sessions: Vec::new(),
            next_index: rand::random::<u32>() | 1,
            tracker,
            probe_id: index as u16,
            bulk_seq: 0,
            first_initiation: None,
            established: None,
            result,
            rtt_sum_ns: 0,
            buf: vec![0u8; 2048],
        }
    }

    /// Runs `f` on the protocol state with a fresh [`Env`], then applies
    /// index events and carries out the outputs.
    fn call<R>(
        &mut self,
        now: Instant,
        origin: Instant,
        st: &mut Stats,
        f: impl FnOnce(&mut PeerState, &mut Env, &mut Vec<Output>) -> R,
    ) -> R {
        let mut rng = rand::rngs::OsRng;
        let mut idx = self.next_index;
        let mut alloc = || {
            idx = idx.wrapping_add(1).max(1);
            idx
        };
        let ctx = driver::Ctx {
            identity: &self.identity,
            now,
            wall: SystemTime::now(),
            rng: &mut rng,
            alloc_index: &mut alloc,
        };
        let (r, out) = driver::call(&mut self.state, ctx, f);
        self.next_index = idx;
        let (events, out) = driver::split_index(out);
        for ev in events {
            match ev {
                IndexEvent::Session(kp) => self.sessions.push(kp),
                IndexEvent::Retired(i) => self.sessions.retain(|k| k.local_index != i),
                IndexEvent::Handshake(_) => {}
            }
        }
        self.perform(out, now, origin, st);
        r
    }

    fn perform(&mut self, out: Vec<Output>, now: Instant, origin: Instant, st: &mut Stats) {
        for o in out {
            match o {
                Output::Handshake(msg) => {
                    if self.first_initiation.is_none() {
                        self.first_initiation = Some(now);
                        st.count(at(origin, now), |c| c.peers_started += 1);
                    }
                    self.result.initiations += 1;
                    self.send_raw(&msg, origin, now, st);
                    st.count(at(origin, now), |c| c.initiations_sent += 1);
                }
                Output::Keepalive => self.send_keepalive(now, origin, st),
                Output::SessionReady { confirm } => {
                    self.result.handshakes += 1;
                    st.count(at(origin, now), |c| c.handshakes_completed += 1);
                    if self.established.is_none() {
                        self.established = Some(now);
                        let first = self.first_initiation.unwrap_or(now);
                        let secs = now.saturating_duration_since(first).as_secs_f64();
                        self.result.handshake_ms = Some(secs * 1e3);
                        self.result.established_at_s = Some(at(origin, now).as_secs_f64());
                        st.handshake.record(secs);
                        st.count(at(origin, now), |c| c.peers_established += 1);
                    }
                    // The responder keeps the session in waiting until our
                    // first data message confirms it.
                    if confirm {
                        self.send_keepalive(now, origin, st);
                    }
                }
                Output::GaveUp => {
                    st.count(at(origin, now), |c| c.handshakes_given_up += 1);
                }
                // Split off by `call` before this runs.
                Output::Index(_) => {}
            }
        }
    }

    fn send_raw(&mut self, msg: &[u8], origin: Instant, now: Instant, st: &mut Stats) -> bool {
        match self.sock.send(msg) {
            Ok(_) => {
                st.count(at(origin, now), |c| c.wire_bytes_sent += msg.len() as u64);
                true
            }
            Err(_) => {
                st.count(at(origin, now), |c| c.send_errors += 1);
                false
            }
        }
    }

    /// Seals `inner` (empty for a keepalive) on the current session and
    /// sends it. False when there is no usable session or the send failed.
    fn send_data(&mut self, inner: &[u8], now: Instant, origin: Instant, st: &mut Stats) -> bool {
        let Some(kp) = self.state.sending_keypair(now).cloned() else {
            return false;
        };
        let Some(counter) = kp.next_counter() else {
            return false;
        };
        let plen = if inner.is_empty() {
            0
        } else {
            padded_len(inner.len(), MTU)
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(DATA_HEADER_LEN + plen + 16, 0);
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + inner.len()].copy_from_slice(inner);
        buf[DATA_HEADER_LEN + inner.len()..DATA_HEADER_LEN + plen].fill(0);
        let n = kp.seal(counter, &mut buf, plen);
        let ok = self.send_raw(&buf[..n], origin, now, st);
        self.buf = buf;
        if ok {
            self.call(now, origin, st, |s, env, out| {
                s.on_sent(env, &kp, !inner.is_empty(), out)
            });
        }
        ok
    }

    fn send_keepalive(&mut self, now: Instant, origin: Instant, st: &mut Stats) {
        if self.send_data(&[], now, origin, st) {
            st.count(at(origin, now), |c| c.keepalives_sent += 1);
        }
    }

    /// Sends the first initiation.
    pub fn start(&mut self, now: Instant, origin: Instant, st: &mut Stats) {
        self.call(now, origin, st, |s, env, out| s.force_initiation(env, out));
    }

    pub fn has_session(&self, now: Instant) -> bool {
        self.state.sending_keypair(now).is_some()
    }

    /// Sends one probe. `steady` marks probes after the ramp.
    pub fn send_probe(&mut self, cfg: &ProbeConfig, now: Instant, origin: Instant, st: &mut Stats) {
        if self.established.is_none() {
            return;
        }
        let t = at(origin, now);
        if !self.has_session(now) {
            // The tunnel is down (rekey failed): the probe fails, and the
            // core starts a handshake as it would for a staged packet.
            self.result.probes_no_session += 1;
            st.count(t, |c| c.probes_no_session += 1);
            self.call(now, origin, st, |s, env, out| s.need_session(env, out));
            return;
        }
        let sent_ns = realtime_ns();
        let (seq, evicted) = self.tracker.send(sent_ns);
        if evicted {
            self.result.probes_lost += 1;
            st.count(t, |c| c.probes_lost += 1);
        }
        let Some(pkt) = probe::build(
            cfg.kind,
            self.addr,
            cfg.target,
            self.probe_id,
            seq as u16,
            cfg.size,
        ) else {
            return;
        };
        self.result.probes_sent += 1;
        st.count(t, |c| c.probes_sent += 1);
        if self.send_data(&pkt, now, origin, st) {
            self.result.bytes_sent += pkt.len() as u64;
            st.count(t, |c| {
                c.data_sent += 1;
                c.bytes_sent += pkt.len() as u64;
            });
        }
    }

    /// Sends one bulk packet (counted in bytes, not as a probe).
    pub fn send_bulk(&mut self, cfg: &ProbeConfig, now: Instant, origin: Instant, st: &mut Stats) {
        if cfg.bulk_size == 0 || !self.has_session(now) {
            return;
        }
        self.bulk_seq = self.bulk_seq.wrapping_add(1);
        let Some(pkt) = probe::build(
            cfg.kind,
            self.addr,
            cfg.target,
            !self.probe_id,
            self.bulk_seq,
            cfg.bulk_size,
        ) else {
            return;
        };
        if self.send_data(&pkt, now, origin, st) {
            self.result.bytes_sent += pkt.len() as u64;
            st.count(at(origin, now), |c| {
                c.data_sent += 1;
                c.bulk_sent += 1;
                c.bytes_sent += pkt.len() as u64;
            });
        }
    }

    /// Handles one datagram from the target that arrived at `stamp_ns`
    /// (realtime); `steady_from` is when the ramp ended.
    #[allow(clippy::too_many_arguments)]
    pub fn receive(
        &mut self,
        msg: &mut [u8],
        stamp_ns: u64,
        cfg: &ProbeConfig,
        now: Instant,
        origin: Instant,
        steady_from: Instant,
        st: &mut Stats,
    ) {
        let t = at(origin, now);
        st.count(t, |c| c.wire_bytes_received += msg.len() as u64);
        match message_type(msg) {
            Ok(MessageType::Response) => {
                let Ok(m) = <&[u8; RESPONSE_LEN]>::try_from(&*msg) else {
                    return;
                };
                let m = *m;
                st.count(t, |c| c.responses_received += 1);
                // A late answer to an initiation we have since retransmitted
                // names an index we retired: the normal cost of a retry.
                if self.state.pending_index() != Some(receiver_index(MessageType::Response, &m)) {
                    return;
                }
                if self
                    .call(now, origin, st, |s, env, out| {
                        s.consume_response(env, &m, out)
                    })
                    .is_err()
                {
                    st.count(t, |c| c.receive_errors += 1);
                }
            }
            Ok(MessageType::CookieReply) => {
                let Ok(m) = <&[u8; COOKIE_REPLY_LEN]>::try_from(&*msg) else {
                    return;
                };
                st.count(t, |c| c.cookie_replies_received += 1);
                self.result.cookie_replies += 1;
                if self.state.consume_cookie_reply(m, now).is_err() {
                    st.count(t, |c| c.receive_errors += 1);
                    return;
                }
                // The target is under load and dropped our initiation: retry
                // now with MAC2 rather than after the 5 s retransmit timer,
                // so a handshake storm settles within the ramp.
                if self.established.is_none() || !self.has_session(now) {
                    self.call(now, origin, st, |s, env, out| s.force_initiation(env, out));
                }
            }
            Ok(MessageType::Data) => {
                self.receive_data(msg, stamp_ns, cfg, now, origin, steady_from, st)
            }
            Ok(MessageType::Initiation) | Err(_) => st.count(t, |c| c.receive_errors += 1),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn receive_data(
        &mut self,
        msg: &mut [u8],
        stamp_ns: u64,
        cfg: &ProbeConfig,
        now: Instant,
        origin: Instant,
        steady_from: Instant,
        st: &mut Stats,
    ) {
        let t = at(origin, now);
        let idx = receiver_index(MessageType::Data, msg);
        let Some(kp) = self.sessions.iter().find(|k| k.local_index == idx).cloned() else {
            st.count(t, |c| c.receive_errors += 1);
            return;
        };
        let Ok(n) = kp.open(msg) else {
            st.count(t, |c| c.receive_errors += 1);
            return;
        };
        // The IP header's length, without the padding, as for what we sent.
        let (len, ok) =
            crate::device::receive::inner_packet_len(&msg[DATA_HEADER_LEN..DATA_HEADER_LEN + n]);
        let inner = &msg[DATA_HEADER_LEN..DATA_HEADER_LEN + if ok { len } else { n }];
        if n == 0 {
            st.count(t, |c| c.keepalives_received += 1);
        } else {
            let bytes = inner.len() as u64;
            st.count(t, |c| {
                c.data_received += 1;
                c.bytes_received += bytes;
            });
            self.result.bytes_received += bytes;
            match probe::parse_reply(cfg.kind, inner, self.addr) {
                Some((id, seq)) if id == self.probe_id => {
                    let arrived = if stamp_ns != 0 {
                        stamp_ns
                    } else {
                        realtime_ns()
                    };
                    match self.tracker.reply(seq, arrived) {
                        Matched::Rtt(ns) => {
                            let secs = ns as f64 / 1e9;
                            self.result.probes_answered += 1;
                            self.rtt_sum_ns += u128::from(ns);
                            let max = self.result.rtt_max_ms.unwrap_or(0.0).max(secs * 1e3);
                            self.result.rtt_max_ms = Some(max);
                            let steady = now >= steady_from + Duration::from_nanos(ns);
                            st.count(t, |c| {
                                c.probes_answered += 1;
                                c.steady_answered += u64::from(steady);
                            });
                            st.record_rtt(t, secs);
                        }
                        Matched::Unmatched => st.count(t, |c| c.replies_unmatched += 1),
                    }
                }
                Some((id, _)) if id == !self.probe_id => st.count(t, |c| c.bulk_received += 1),
                _ => st.count(t, |c| c.replies_unmatched += 1),
            }
        }
        self.call(now, origin, st, |s, env, out| {
            s.on_received(env, &kp, n > 0, out)
        });
    }

    /// Runs due protocol timers and gives up on probes past the timeout.
    pub fn tick(&mut self, cfg: &ProbeConfig, now: Instant, origin: Instant, st: &mut Stats) {
        if self.state.next_deadline().is_some_and(|d| d <= now) {
            self.call(now, origin, st, |s, env, out| s.tick(env, out));
        }
        let timeout = cfg.timeout.as_nanos() as u64;
        let lost = self.tracker.expire(realtime_ns().saturating_sub(timeout));
        if lost > 0 {
            self.result.probes_lost += lost;
            st.count(at(origin, now), |c| c.probes_lost += lost);
        }
    }

    pub fn probes_pending(&self) -> u64 {
        self.tracker.pending()
    }

    /// Final per-peer figures.
    pub fn finish(mut self) -> PeerResult {
        if self.result.probes_answered > 0 {
            let avg = self.rtt_sum_ns as f64 / self.result.probes_answered as f64 / 1e6;
            self.result.rtt_avg_ms = Some(avg);
        }
        self.result
    }
}
