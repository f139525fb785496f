//! The per-peer timer state machine (kernel timers.c), sans-IO.
//!
//! Timers are deadlines, not threads: events from the packet path arm or
//! disarm them, and [`Timers::expired`] reports which fired at `now`. The
//! owner ([`super::peer::PeerState`]) turns fired timers into actions.
use super::constants::*;
use std::time::{Duration, Instant};

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// No response to our initiation within REKEY_TIMEOUT (+ jitter).
    RetransmitHandshake,
    /// Data was received and nothing sent for KEEPALIVE_TIMEOUT.
    SendKeepalive,
    /// Data was sent and nothing received for KEEPALIVE + REKEY_TIMEOUT.
    NewHandshake,
    /// No new session for 3 * REJECT_AFTER_TIME: forget all keys.
    ZeroKeyMaterial,
    /// The configured persistent keepalive interval passed.
    PersistentKeepalive,
}

const ALL: [Timer; 5] = [
    Timer::RetransmitHandshake,
    Timer::SendKeepalive,
    Timer::NewHandshake,
    Timer::ZeroKeyMaterial,
    Timer::PersistentKeepalive,
];

#[derive(Debug, Default, Clone)]
pub struct Timers {
    deadlines: [Option<Instant>; 5],
    /// Initiations sent for the current handshake attempt (retries + 1).
    pub handshake_attempts: u32,
    /// A keepalive was due while the keepalive timer was pending.
    pub need_another_keepalive: bool,
    /// The initiator already asked for a handshake because its key neared
    /// REJECT_AFTER_TIME on receive; reset when a handshake completes.
    pub sent_lastminute_handshake: bool,
    /// Seconds; 0 is off.
    pub persistent_keepalive_interval: u16,
}

fn slot(t: Timer) -> usize {
    t as usize
}

impl Timers {
    pub fn deadline(&self, t: Timer) -> Option<Instant> {
        self.deadlines[slot(t)]
    }
    pub fn is_pending(&self, t: Timer) -> bool {
        self.deadlines[slot(t)].is_some()
    }
    pub fn arm(&mut self, t: Timer, at: Instant) {
        self.deadlines[slot(t)] = Some(at);
    }
    pub fn disarm(&mut self, t: Timer) {
        self.deadlines[slot(t)] = None;
    }
    pub fn disarm_all(&mut self) {
        self.deadlines = [None; 5];
    }
    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
    /// Disarms and returns, in a fixed order, every timer due at `now`.
    pub fn expired(&mut self, now: Instant) -> impl Iterator<Item = Timer> {
        let mut fired = [None; 5];
        for (i, t) in ALL.iter().enumerate() {
            if matches!(self.deadlines[slot(*t)], Some(d) if d <= now) {
                self.deadlines[slot(*t)] = None;
                fired[i] = Some(*t);
            }
        }
        fired.into_iter().flatten()
    }

    // Events, named as in the kernel's timers.c.

    /// A data packet (not a keepalive) was sent.
    pub fn data_sent(&mut self, now: Instant, jitter: Duration) {
        if !self.is_pending(Timer::NewHandshake) {
            self.arm(Timer::NewHandshake, now + NEW_HANDSHAKE_TIMEOUT + jitter);
        }
    }
    /// A data packet (not a keepalive) was received.
    pub fn data_received(&mut self, now: Instant) {
        if !self.is_pending(Timer::SendKeepalive) {
            self.arm(Timer::SendKeepalive, now + KEEPALIVE_TIMEOUT);
        } else {
            self.need_another_keepalive = true;
        }
    }
    /// Any authenticated packet (data, keepalive, handshake) was sent.
    pub fn any_authenticated_packet_sent(&mut self) {
        self.disarm(Timer::SendKeepalive);
    }
    /// Any authenticated packet was received.
    pub fn any_authenticated_packet_received(&mut self) {
        self.disarm(Timer::NewHandshake);
    }
    /// Any authenticated packet was sent or received.
    pub fn any_authenticated_packet_traversal(&mut self, now: Instant) {
        if self.persistent_keepalive_interval > 0 {
            self.arm(
                Timer::PersistentKeepalive,
                now + Duration::from_secs(self.persistent_keepalive_interval.into()),
            );
        }
    }
    /// An initiation was sent.
    pub fn handshake_initiated(&mut self, now: Instant, jitter: Duration) {
        self.arm(Timer::RetransmitHandshake, now + REKEY_TIMEOUT + jitter);
    }
    /// A handshake completed (response consumed, or first data on a
    /// responder's new session).
    pub fn handshake_complete(&mut self) {
        self.disarm(Timer::RetransmitHandshake);
        self.handshake_attempts = 0;
        self.sent_lastminute_handshake = false;
    }
    /// A new session was derived.
    pub fn session_derived(&mut self, now: Instant) {
        self.arm(Timer::ZeroKeyMaterial, now + ZERO_KEYS_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_reports_only_due_timers_and_disarms_them() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(Timer::SendKeepalive, t0 + Duration::from_secs(10));
        t.arm(Timer::NewHandshake, t0 + Duration::from_secs(15));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(t.expired(t0 + Duration::from_secs(9)).count(), 0);
        let fired: Vec<_> = t.expired(t0 + Duration::from_secs(10)).collect();
        assert_eq!(fired, vec![Timer::SendKeepalive]);
        assert!(!t.is_pending(Timer::SendKeepalive));
        assert!(t.is_pending(Timer::NewHandshake));
    }

    #[test]
    fn data_received_twice_asks_for_another_keepalive() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.data_received(t0);
        assert!(!t.need_another_keepalive);
        t.data_received(t0 + Duration::from_secs(1));
        assert!(t.need_another_keepalive);
        // The deadline is not pushed back by later data.
        assert_eq!(
            t.deadline(Timer::SendKeepalive),
            Some(t0 + KEEPALIVE_TIMEOUT)
        );
    }

    #[test]
    fn sending_cancels_passive_keepalive_and_receiving_cancels_new_handshake() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.data_received(t0);
        t.data_sent(t0, Duration::ZERO);
        t.any_authenticated_packet_sent();
        assert!(!t.is_pending(Timer::SendKeepalive));
        assert!(t.is_pending(Timer::NewHandshake));
        t.any_authenticated_packet_received();
        assert!(!t.is_pending(Timer::NewHandshake));
    }

    #[test]
    fn persistent_keepalive_only_when_configured() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.any_authenticated_packet_traversal(t0);
        assert!(!t.is_pending(Timer::PersistentKeepalive));
        t.persistent_keepalive_interval = 25;
        t.any_authenticated_packet_traversal(t0);
        assert_eq!(
            t.deadline(Timer::PersistentKeepalive),
            Some(t0 + Duration::from_secs(25))
        );
    }
}
