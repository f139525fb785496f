//! At most one forced handshake per peer per [`FORCED_HANDSHAKE_INTERVAL`].
//!
//! `/tunnel-test?peer=` sends an initiation at once, skipping the
//! REKEY_TIMEOUT (5 s) that WireGuard otherwise keeps between initiations.
//! Each completed handshake replaces the peer's session, so a loop of
//! requests would churn its sessions (and make the peer do a DH per
//! request). Within the window a test reports on the current session
//! instead of forcing a new one.
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Why 5 s: REKEY_TIMEOUT, the protocol's own minimum spacing between
/// initiations to one peer; forced handshakes then cost a peer no more
/// than a retrying handshake does.
pub const FORCED_HANDSHAKE_INTERVAL: Duration = Duration::from_secs(5);

/// When each peer last got a forced handshake.
#[derive(Default)]
pub struct ForcedHandshakes {
    last: Mutex<HashMap<[u8; 32], Instant>>,
}

impl ForcedHandshakes {
    /// Claims a forced handshake for `peer` at `now`: Ok(()) and the
    /// window starts, or Err(time until the next one is allowed).
    pub fn claim(&self, peer: &[u8; 32], now: Instant) -> Result<(), Duration> {
        let mut last = self.last.lock();
        // Entries past their window say nothing: drop them, so the map
        // holds only peers tested in the last 5 s.
        last.retain(|_, t| now.saturating_duration_since(*t) < FORCED_HANDSHAKE_INTERVAL);
        if let Some(t) = last.get(peer) {
            return Err(FORCED_HANDSHAKE_INTERVAL - now.saturating_duration_since(*t));
        }
        last.insert(*peer, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_peer_per_window() {
        let l = ForcedHandshakes::default();
        let t0 = Instant::now();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(l.claim(&a, t0), Ok(()));
        assert_eq!(
            l.claim(&a, t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(4))
        );
        assert_eq!(l.claim(&b, t0 + Duration::from_secs(1)), Ok(()), "per peer");
        assert_eq!(
            l.claim(&a, t0 + Duration::from_millis(4999)),
            Err(Duration::from_millis(1))
        );
        assert_eq!(l.claim(&a, t0 + FORCED_HANDSHAKE_INTERVAL), Ok(()));
        // A refused claim does not extend the window.
        assert!(l.claim(&b, t0 + Duration::from_secs(5)).is_err());
        assert_eq!(l.claim(&b, t0 + Duration::from_secs(6)), Ok(()));
    }

    #[test]
    fn old_entries_are_dropped() {
        let l = ForcedHandshakes::default();
        let t0 = Instant::now();
        for i in 0..100u8 {
            l.claim(&[i; 32], t0).unwrap();
        }
        l.claim(&[200; 32], t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(l.last.lock().len(), 1);
    }
}
