//! The handshake worker: drains the queue the receive loop fills, checks
//! MAC1, and under load demands MAC2 (answering with cookie replies) and
//! applies the per-source rate limiter before any Diffie-Hellman is spent.
//!
//! It takes what is queued in turns of up to [`TURN`] messages and sends
//! the cookie replies a turn earned together, in one multi-destination
//! send: under a flood nearly every message earns one, and one system call
//! each was most of what answering cost.
use super::peer::Peer;
use super::{bump, wire, Shared};
use crate::io::Endpoint;
use crate::noise::constants::{COOKIE_REPLY_LEN, INITIATION_LEN, RESPONSE_LEN};
use crate::noise::handshake::consume_initiation;
use crate::noise::messages::{message_type, receiver_index, MessageType};
use crate::noise::peer::PeerState;
use parking_lot::MutexGuard;
use smallvec::SmallVec;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A handshake message waiting for the worker.
pub struct Queued {
    pub msg: Vec<u8>,
    pub src: SocketAddr,
    /// Where it arrived (see [`crate::io::LocalAddr`]).
    pub local: Option<crate::io::LocalAddr>,
}

impl Queued {
    /// The endpoint an authenticated handshake message teaches.
    fn seen(&self) -> crate::io::Endpoint {
        crate::io::Endpoint {
            dst: self.src,
            src: self.local,
        }
    }
}

/// Messages handled in one turn, at most (within one send batch).
const TURN: usize = 64;

/// Cookie replies a turn earned, sent together at its end.
#[derive(Default)]
struct Replies(Vec<(Endpoint, [u8; COOKIE_REPLY_LEN])>);

impl Replies {
    fn send(&mut self, s: &Shared) {
        if self.0.is_empty() {
            return;
        }
        {
            let bufs: SmallVec<[&[u8]; TURN]> = self.0.iter().map(|(_, r)| &r[..]).collect();
            let runs: SmallVec<[wire::Run<'_>; TURN]> = self
                .0
                .iter()
                .map(|(ep, _)| wire::Run {
                    peer: None,
                    ep: *ep,
                    count: 1,
                })
                .collect();
            wire::transmit(s, &bufs, &runs, &mut |_| {});
        }
        bump(&s.stats.cookie_replies_sent, self.0.len() as u64);
        self.0.clear();
    }
}

pub fn run(s: &Shared) {
    yield_to_data();
    let mut last_gc = Instant::now();
    let mut replies = Replies::default();
    while !s.shutdown.load(Ordering::Relaxed) {
        s.heartbeat(super::HB_HANDSHAKE);
        match s.handshake_rx.recv_timeout(super::IDLE_WAIT) {
            Ok(_) if s.shutdown.load(Ordering::Relaxed) => return,
            Ok(q) => {
                process(s, &q, &mut replies);
                for q in s.handshake_rx.try_iter().take(TURN - 1) {
                    process(s, &q, &mut replies);
                }
                replies.send(s);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        if last_gc.elapsed() >= Duration::from_secs(1) {
            last_gc = Instant::now();
            s.rate_limiter.lock().collect(last_gc);
        }
    }
}

/// Handles `q` as a turn of its own: a cookie reply it earns leaves at
/// once (the fuzz targets' way in).
#[cfg(feature = "fuzzing")]
pub fn process_alone(s: &Shared, q: &Queued) {
    let mut replies = Replies::default();
    process(s, q, &mut replies);
    replies.send(s);
}

/// Handles one handshake message; a cookie reply it earns joins `replies`.
fn process(s: &Shared, q: &Queued, replies: &mut Replies) {
    let Ok(kind) = message_type(&q.msg) else {
        bump(&s.stats.drop_malformed, 1);
        return;
    };
    let now = Instant::now();
    if matches!(kind, MessageType::Initiation | MessageType::Response) && !admit(s, q, now, replies)
    {
        return;
    }
    match kind {
        MessageType::Initiation => handle_initiation(s, q),
        MessageType::Response => handle_response(s, q),
        MessageType::CookieReply => handle_cookie_reply(s, q, now),
        MessageType::Data => {}
    }
}

/// MAC1 always; under load MAC2 (else a cookie reply) and the rate limiter.
fn admit(s: &Shared, q: &Queued, now: Instant, replies: &mut Replies) -> bool {
    let reply = {
        let mut guard = s.cookie_checker.lock();
        let Some(cc) = guard.as_mut() else {
            return false;
        };
        if !cc.check_mac1(&q.msg) {
            bump(&s.stats.drop_bad_mac, 1);
            return false;
        }
        if !s.is_under_load() {
            return true;
        }
        let mut rng = rand::rngs::OsRng;
        if cc.check_mac2(&q.msg, q.src, now, &mut rng) {
            None
        } else {
            Some(cc.create_reply(&q.msg, q.src, now, &mut rng))
        }
    };
    if let Some(reply) = reply {
        replies.0.push((q.seen(), reply));
        return false;
    }
    if !s.rate_limiter.lock().allow(q.src.ip(), now) {
        bump(&s.stats.drop_rate_limited, 1);
        return false;
    }
    true
}

fn handle_initiation(s: &Shared, q: &Queued) {
    let Some(identity) = s.identity.read().clone() else {
        return;
    };
    let Ok(msg) = <&[u8; INITIATION_LEN]>::try_from(&q.msg[..]) else {
        return;
    };
    let (peer, res, out) = {
        let peers = s.peers.read();
        let peers_ref = &*peers;
        // The lookup keeps the peer's state locked from finding its keys
        // until the response is built, so no configuration change slips in.
        let mut slot: Option<(Arc<Peer>, MutexGuard<'_, PeerState>)> = None;
        let slot_ref = &mut slot;
        let consumed = consume_initiation(&identity, msg, move |pk| {
            let p = peers_ref.get(pk.as_bytes())?;
            let (_, guard) = slot_ref.insert((p.clone(), p.state.lock()));
            guard.keys()
        });
        let (Some((peer, mut st)), Ok(init)) = (slot, consumed) else {
            bump(&s.stats.handshakes_failed, 1);
            return;
        };
        let (res, out) = s.call_locked(&peer, &mut st, &identity, |st, env, out| {
            st.accept_initiation(env, init, out)
        });
        drop(st);
        (peer, res, out)
    };
    match res {
        Ok(response) => {
            peer.set_seen_endpoint(q.seen());
            peer.add_rx(q.msg.len() as u64);
            s.send_to_peer(&peer, &[&response]);
            s.perform(&peer, out);
        }
        Err(e) => {
            tracing::debug!(error = %e, "initiation rejected");
            bump(&s.stats.handshakes_failed, 1);
        }
    }
}

fn handle_response(s: &Shared, q: &Queued) {
    let Ok(msg) = <&[u8; RESPONSE_LEN]>::try_from(&q.msg[..]) else {
        return;
    };
    let idx = receiver_index(MessageType::Response, msg);
    let Some(peer) = s
        .index
        .read()
        .get(&idx)
        .filter(|e| e.keypair.is_none())
        .map(|e| e.peer.clone())
    else {
        return;
    };
    let r = s.peer_call(&peer, |st, env, out| {
        if st.pending_index() != Some(idx) {
            return Err(crate::noise::peer::PeerError::Unexpected);
        }
        let sent = st.last_sent_handshake();
        st.consume_response(env, msg, out).map(|_| sent)
    });
    match r {
        Some((Ok(sent), out)) => {
            if let Some(t) = sent {
                s.hist.handshake.observe(t.elapsed());
            }
            // Roam before confirming, so the keepalive goes where they are.
            peer.set_seen_endpoint(q.seen());
            peer.add_rx(q.msg.len() as u64);
            s.perform(&peer, out);
        }
        Some((Err(e), out)) => {
            tracing::debug!(error = %e, "response rejected");
            bump(&s.stats.handshakes_failed, 1);
            s.perform(&peer, out);
        }
        None => {}
    }
}

fn handle_cookie_reply(s: &Shared, q: &Queued, now: Instant) {
    let Ok(msg) = <&[u8; COOKIE_REPLY_LEN]>::try_from(&q.msg[..]) else {
        return;
    };
    let idx = receiver_index(MessageType::CookieReply, msg);
    let Some(peer) = s.index.read().get(&idx).map(|e| e.peer.clone()) else {
        return;
    };
    let res = peer.state.lock().consume_cookie_reply(msg, now);
    if let Err(e) = res {
        tracing::debug!(error = %e, "cookie reply rejected");
    }
}

/// Nice value of the handshake thread: below the I/O thread and the crypto
/// workers, so a flood of initiations (each a MAC check, most a cookie
/// reply) takes the CPU the data path leaves, not the CPU it needs. With
/// equal weights the handshake thread took half of the one core a flood
/// generator left on the 2-core bench machine, and an established peer's
/// pings waited behind it (p99 4.2 ms).
const HANDSHAKE_NICE: libc::c_int = 10;

/// Lowers this thread's scheduling priority (Linux's nice is per thread).
/// Raising the nice value needs no privilege; failure only logs.
fn yield_to_data() {
    // SAFETY: gettid and setpriority have no memory preconditions.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, HANDSHAKE_NICE)
    };
    if r != 0 {
        tracing::debug!(
            "cannot lower the handshake thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}
