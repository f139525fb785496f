//! One peer's protocol state: its handshake, its three sessions (previous,
//! current, next, as in the kernel's noise.c) and its timers. Sans-IO: every
//! call takes an [`Env`] with `now`, the wall clock for TAI64N stamps, a
//! random source and an index allocator, and returns [`Output`]s for the
//! device to carry out. Index changes are outputs too
//! ([`Output::Index`]), so the device keeps its receiver-index table in
//! step through the same channel as everything else.
use super::constants::*;
use super::cookie::{CookieError, CookieGenerator};
use super::handshake::{
    self, ConsumedInitiation, HandshakeError, Identity, InitiatorState, PeerKeys,
};
use super::keypair::Keypair;
use super::keys::PublicKey;
use super::tai64n::Tai64n;
use super::timers::{Timer, Timers};
use rand_core::CryptoRngCore;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use zeroize::Zeroize;

/// What a call needs from the outside world.
pub struct Env<'a> {
    pub identity: &'a Identity,
    pub now: Instant,
    /// Wall clock, for TAI64N stamps and `last_handshake_time`.
    pub wall: SystemTime,
    pub rng: &'a mut dyn CryptoRngCore,
    /// A fresh receiver index, unique on the device.
    pub alloc_index: &'a mut dyn FnMut() -> u32,
}

/// Changes to the receiver indices this peer owns.
#[derive(Clone)]
pub enum IndexEvent {
    /// An initiation was sent with this index; a response will name it.
    Handshake(u32),
    /// A session was derived; data will arrive on `keypair.local_index`.
    Session(Arc<Keypair>),
    /// The index is no longer in use.
    Retired(u32),
}

impl PartialEq for IndexEvent {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (IndexEvent::Handshake(a), IndexEvent::Handshake(b)) => a == b,
            (IndexEvent::Session(a), IndexEvent::Session(b)) => Arc::ptr_eq(a, b),
            (IndexEvent::Retired(a), IndexEvent::Retired(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for IndexEvent {}

/// Names the index only: a session's keys never reach a log.
impl std::fmt::Debug for IndexEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexEvent::Handshake(i) => f.debug_tuple("Handshake").field(i).finish(),
            IndexEvent::Session(kp) => f.debug_tuple("Session").field(&kp.local_index).finish(),
            IndexEvent::Retired(i) => f.debug_tuple("Retired").field(i).finish(),
        }
    }
}

/// Something the device must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Update the receiver-index table. Must be applied before the peer's
    /// state is unlocked: a reply naming a new index may arrive at once.
    Index(IndexEvent),
    /// Send this handshake message (initiation or response) to the endpoint.
    Handshake(Vec<u8>),
    /// Send an empty data message on the current session.
    Keepalive,
    /// A sending session became usable: send staged packets; when none are
    /// staged and `confirm` is set, send a keepalive so the responder learns
    /// the session at once.
    SessionReady { confirm: bool },
    /// Handshake attempts are exhausted: drop staged packets.
    GaveUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Cookie(#[from] CookieError),
    #[error("no private key configured")]
    NoIdentity,
    #[error("initiation timestamp is not newer than the last one (replay)")]
    Replay,
    #[error("initiations arrive faster than one per 20 ms (flood)")]
    Flood,
    #[error("no initiation of ours awaits this response")]
    Unexpected,
}

pub struct PeerState {
    remote: PublicKey,
    psk: [u8; 32],
    /// None while the device has no private key (or the key is low order).
    keys: Option<PeerKeys>,
    cookie: CookieGenerator,
    pending: Option<InitiatorState>,
    last_sent_handshake: Option<Instant>,
    last_initiation_consumed: Option<Instant>,
    latest_timestamp: Option<Tai64n>,
    previous: Option<Arc<Keypair>>,
    current: Option<Arc<Keypair>>,
    next: Option<Arc<Keypair>>,
    pub timers: Timers,
    last_handshake: Option<SystemTime>,
    jitter_state: u64,
}

/// Whether a session may still carry data at `now`.
pub fn keypair_usable(kp: &Keypair, now: Instant) -> bool {
    now < kp.created + REJECT_AFTER_TIME && kp.sent_messages() < REJECT_AFTER_MESSAGES
}

impl Drop for PeerState {
    fn drop(&mut self) {
        self.psk.zeroize();
    }
}

impl PeerState {
    /// `identity` is None when the device has no private key yet.
    pub fn new(identity: Option<&Identity>, remote: PublicKey, psk: [u8; 32], seed: u64) -> Self {
        let mut st = PeerState {
            remote,
            psk,
            keys: None,
            cookie: CookieGenerator::new(&remote),
            pending: None,
            last_sent_handshake: None,
            last_initiation_consumed: None,
            latest_timestamp: None,
            previous: None,
            current: None,
            next: None,
            timers: Timers::default(),
            last_handshake: None,
            jitter_state: seed | 1,
        };
        // A new state has no sessions, so setting the key retires nothing.
        st.set_identity(identity, &mut Vec::new());
        st
    }

    pub fn remote_public(&self) -> &PublicKey {
        &self.remote
    }
    pub fn preshared_key(&self) -> &[u8; 32] {
        &self.psk
    }
    /// Handshake material, None without a usable device key.
    pub fn keys(&self) -> Option<&PeerKeys> {
        self.keys.as_ref()
    }
    /// False when the device key is missing or DH with this peer is low order.
    pub fn can_handshake(&self) -> bool {
        self.keys.is_some()
    }

    /// Recomputes handshake material for a new device key. Existing sessions
    /// are expired, as wireguard-go does when the private key changes.
    pub fn set_identity(&mut self, identity: Option<&Identity>, out: &mut Vec<Output>) {
        let had = self.keys.is_some();
        self.keys = identity.and_then(|id| PeerKeys::new(id, self.remote, self.psk).ok());
        if had {
            self.clear_sessions(out);
        }
    }

    pub fn set_preshared_key(&mut self, psk: [u8; 32]) {
        self.psk.zeroize();
        self.psk = psk;
        if let Some(k) = self.keys.as_mut() {
            k.set_preshared_key(psk);
        }
    }

    /// Sets the persistent keepalive interval (seconds, 0 = off). Turning it
    /// on sends a keepalive at once (wireguard-go and the kernel do).
    pub fn set_persistent_keepalive(&mut self, env: &mut Env, secs: u16, out: &mut Vec<Output>) {
        let was = self.timers.persistent_keepalive_interval;
        self.timers.persistent_keepalive_interval = secs;
        if secs == 0 {
            self.timers.disarm(Timer::PersistentKeepalive);
        } else if was == 0 {
            self.send_keepalive(env, out);
        }
    }

    pub fn persistent_keepalive(&self) -> u16 {
        self.timers.persistent_keepalive_interval
    }
    /// Wall-clock time of the last completed handshake.
    pub fn last_handshake(&self) -> Option<SystemTime> {
        self.last_handshake
    }
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }
    /// The session to send on, if it is still usable.
    pub fn sending_keypair(&self, now: Instant) -> Option<&Arc<Keypair>> {
        self.current.as_ref().filter(|kp| keypair_usable(kp, now))
    }
    pub fn has_session(&self) -> bool {
        self.current.is_some() || self.next.is_some() || self.previous.is_some()
    }

    fn jitter(&mut self) -> Duration {
        // xorshift64*: jitter only has to be unpredictable enough to spread
        // simultaneous retries; the seed comes from the caller's rng.
        let mut x = self.jitter_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.jitter_state = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        Duration::from_millis(r % (REKEY_TIMEOUT_JITTER_MAX.as_millis() as u64 + 1))
    }

    fn retire(kp: Option<Arc<Keypair>>, out: &mut Vec<Output>) {
        if let Some(kp) = kp {
            out.push(Output::Index(IndexEvent::Retired(kp.local_index)));
        }
    }

    fn clear_sessions(&mut self, out: &mut Vec<Output>) {
        for kp in [self.previous.take(), self.current.take(), self.next.take()] {
            Self::retire(kp, out);
        }
        if let Some(p) = self.pending.take() {
            out.push(Output::Index(IndexEvent::Retired(p.local_index())));
        }
    }

    /// Sends an initiation unless one went out less than REKEY_TIMEOUT ago.
    /// `is_retry` keeps the attempt counter (timer retransmissions).
    pub fn send_initiation(&mut self, env: &mut Env, is_retry: bool, out: &mut Vec<Output>) {
        if !is_retry {
            self.timers.handshake_attempts = 0;
        }
        if matches!(self.last_sent_handshake, Some(t) if env.now < t + REKEY_TIMEOUT) {
            return;
        }
        let Some(keys) = self.keys.as_ref() else {
            return;
        };
        let idx = (env.alloc_index)();
        let ts = Tai64n::from_system_time(env.wall);
        let Ok((state, mut msg)) =
            handshake::create_initiation(env.identity, keys, idx, ts, &mut env.rng)
        else {
            out.push(Output::Index(IndexEvent::Retired(idx)));
            return;
        };
        self.cookie.add_macs(&mut msg, env.now);
        if let Some(old) = self.pending.replace(state) {
            out.push(Output::Index(IndexEvent::Retired(old.local_index())));
        }
        out.push(Output::Index(IndexEvent::Handshake(idx)));
        self.last_sent_handshake = Some(env.now);
        self.timers.any_authenticated_packet_traversal(env.now);
        self.timers.any_authenticated_packet_sent();
        let j = self.jitter();
        self.timers.handshake_initiated(env.now, j);
        out.push(Output::Handshake(msg.to_vec()));
    }

    /// Sends an initiation now, even if one went out within REKEY_TIMEOUT
    /// (an operator's `/tunnel-test?peer=`, or a retry after a cookie reply).
    pub fn force_initiation(&mut self, env: &mut Env, out: &mut Vec<Output>) {
        self.last_sent_handshake = None;
        self.send_initiation(env, false, out);
    }

    /// A keepalive on the current session, or a handshake when there is none.
    pub fn send_keepalive(&mut self, env: &mut Env, out: &mut Vec<Output>) {
        if self.sending_keypair(env.now).is_some() {
            out.push(Output::Keepalive);
        } else {
            self.send_initiation(env, false, out);
        }
    }

    /// Packets are waiting but there is no usable session: start a handshake.
    pub fn need_session(&mut self, env: &mut Env, out: &mut Vec<Output>) {
        self.send_initiation(env, false, out);
    }

    /// Called once per batch after data messages went out on `kp`.
    /// `data` is false when only keepalives were sent.
    pub fn on_sent(&mut self, env: &mut Env, kp: &Keypair, data: bool, out: &mut Vec<Output>) {
        self.timers.any_authenticated_packet_traversal(env.now);
        self.timers.any_authenticated_packet_sent();
        if data {
            let j = self.jitter();
            self.timers.data_sent(env.now, j);
        }
        // keep_key_fresh (send side)
        let stale = kp.sent_messages() > REKEY_AFTER_MESSAGES
            || (kp.is_initiator && env.now >= kp.created + REKEY_AFTER_TIME);
        if stale
            && self
                .current
                .as_ref()
                .is_some_and(|c| c.local_index == kp.local_index)
        {
            self.send_initiation(env, false, out);
        }
    }

    /// Called once per batch after data messages on `kp` authenticated.
    /// `data` is false when they were all keepalives.
    pub fn on_received(
        &mut self,
        env: &mut Env,
        kp: &Arc<Keypair>,
        data: bool,
        out: &mut Vec<Output>,
    ) {
        if self.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, kp)) {
            // The initiator used the session we answered: confirm it.
            let old_prev = self.previous.take();
            Self::retire(old_prev, out);
            self.previous = self.current.take();
            self.current = self.next.take();
            self.timers.handshake_complete();
            self.last_handshake = Some(env.wall);
            out.push(Output::SessionReady { confirm: false });
        }
        // keep_key_fresh (receive side): the initiator rekeys before its
        // session hits REJECT_AFTER_TIME if it only receives.
        if let Some(cur) = self.current.clone() {
            if cur.is_initiator
                && !self.timers.sent_lastminute_handshake
                && keypair_usable(&cur, env.now)
                && env.now >= cur.created + REKEY_ON_RECEIVE_AFTER
            {
                self.timers.sent_lastminute_handshake = true;
                self.send_initiation(env, false, out);
            }
        }
        self.timers.any_authenticated_packet_received();
        self.timers.any_authenticated_packet_traversal(env.now);
        if data {
            self.timers.data_received(env.now);
        }
    }

    /// Our side of an initiation that [`handshake::consume_initiation`]
    /// decrypted for this peer: replay and flood checks, then the response.
    pub fn accept_initiation(
        &mut self,
        env: &mut Env,
        init: ConsumedInitiation,
        out: &mut Vec<Output>,
    ) -> Result<Vec<u8>, PeerError> {
        let keys = self.keys.as_ref().ok_or(PeerError::NoIdentity)?;
        if matches!(self.latest_timestamp, Some(t) if init.timestamp <= t) {
            return Err(PeerError::Replay);
        }
        if matches!(self.last_initiation_consumed, Some(t) if env.now < t + HANDSHAKE_MIN_INTERVAL)
        {
            return Err(PeerError::Flood);
        }
        let idx = (env.alloc_index)();
        let (mut msg, session) = match handshake::create_response(keys, &init, idx, &mut env.rng) {
            Ok(v) => v,
            Err(e) => {
                out.push(Output::Index(IndexEvent::Retired(idx)));
                return Err(e.into());
            }
        };
        self.latest_timestamp = Some(init.timestamp);
        self.last_initiation_consumed = Some(env.now);
        self.cookie.add_macs(&mut msg, env.now);
        // One handshake per peer: answering theirs abandons ours.
        if let Some(p) = self.pending.take() {
            out.push(Output::Index(IndexEvent::Retired(p.local_index())));
        }
        let kp = Arc::new(Keypair::new(session, env.now));
        out.push(Output::Index(IndexEvent::Session(kp.clone())));
        // Responder: the new session waits in `next` until the initiator's
        // first data confirms it; `current` keeps sending meanwhile.
        let old_next = self.next.replace(kp);
        Self::retire(old_next, out);
        let old_prev = self.previous.take();
        Self::retire(old_prev, out);
        self.timers.any_authenticated_packet_received();
        self.timers.any_authenticated_packet_traversal(env.now);
        self.timers.any_authenticated_packet_sent();
        self.timers.session_derived(env.now);
        self.last_sent_handshake = Some(env.now);
        Ok(msg.to_vec())
    }

    /// A response to our initiation (the device matched its receiver index).
    pub fn consume_response(
        &mut self,
        env: &mut Env,
        msg: &[u8; RESPONSE_LEN],
        out: &mut Vec<Output>,
    ) -> Result<(), PeerError> {
        let keys = self.keys.as_ref().ok_or(PeerError::NoIdentity)?;
        let pending = self.pending.as_ref().ok_or(PeerError::Unexpected)?;
        let session = handshake::consume_response(env.identity, keys, pending, msg)?;
        self.pending = None; // its index now belongs to the session
        let kp = Arc::new(Keypair::new(session, env.now));
        out.push(Output::Index(IndexEvent::Session(kp.clone())));
        // Initiator: the new session is current at once.
        if let Some(n) = self.next.take() {
            let old_prev = self.previous.replace(n);
            Self::retire(old_prev, out);
            let old_cur = self.current.take();
            Self::retire(old_cur, out);
        } else {
            let old_prev = self.previous.take();
            Self::retire(old_prev, out);
            self.previous = self.current.take();
        }
        self.current = Some(kp);
        self.timers.any_authenticated_packet_received();
        self.timers.any_authenticated_packet_traversal(env.now);
        self.timers.session_derived(env.now);
        self.timers.handshake_complete();
        self.last_handshake = Some(env.wall);
        out.push(Output::SessionReady { confirm: true });
        Ok(())
    }

    /// A cookie reply to our last handshake message. Never counts as
    /// liveness and never roams.
    pub fn consume_cookie_reply(
        &mut self,
        msg: &[u8; COOKIE_REPLY_LEN],
        now: Instant,
    ) -> Result<(), PeerError> {
        self.cookie.consume_reply(msg, now)?;
        Ok(())
    }

    /// When our last initiation went out.
    pub fn last_sent_handshake(&self) -> Option<Instant> {
        self.last_sent_handshake
    }

    /// The index of our pending initiation, if any.
    pub fn pending_index(&self) -> Option<u32> {
        self.pending.as_ref().map(|p| p.local_index())
    }

    /// Runs every timer due at `now`.
    pub fn tick(&mut self, env: &mut Env, out: &mut Vec<Output>) {
        let fired: Vec<Timer> = self.timers.expired(env.now).collect();
        for t in fired {
            match t {
                Timer::RetransmitHandshake => {
                    if self.timers.handshake_attempts > MAX_TIMER_HANDSHAKES {
                        self.timers.disarm(Timer::SendKeepalive);
                        if let Some(p) = self.pending.take() {
                            out.push(Output::Index(IndexEvent::Retired(p.local_index())));
                        }
                        out.push(Output::GaveUp);
                        if !self.timers.is_pending(Timer::ZeroKeyMaterial) {
                            self.timers
                                .arm(Timer::ZeroKeyMaterial, env.now + ZERO_KEYS_AFTER);
                        }
                    } else {
                        self.timers.handshake_attempts += 1;
                        self.send_initiation(env, true, out);
                    }
                }
                Timer::SendKeepalive => {
                    self.send_keepalive(env, out);
                    if self.timers.need_another_keepalive {
                        self.timers.need_another_keepalive = false;
                        self.timers
                            .arm(Timer::SendKeepalive, env.now + KEEPALIVE_TIMEOUT);
                    }
                }
                Timer::NewHandshake => self.send_initiation(env, false, out),
                Timer::ZeroKeyMaterial => self.clear_sessions(out),
                Timer::PersistentKeepalive => {
                    if self.timers.persistent_keepalive_interval > 0 {
                        self.send_keepalive(env, out);
                    }
                }
            }
        }
    }

    /// Forgets every session and pending handshake (peer removed).
    pub fn shutdown(&mut self, out: &mut Vec<Output>) {
        self.clear_sessions(out);
        self.timers.disarm_all();
    }
}

#[cfg(test)]
mod tests;
