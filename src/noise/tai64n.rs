//! TAI64N timestamps carried in handshake initiations.
use std::time::{SystemTime, UNIX_EPOCH};

/// TAI64 label of the Unix epoch: 2^62, plus the 10 s TAI-UTC offset of 1970.
const TAI64_EPOCH: u64 = (1 << 62) + 10;
/// Nanoseconds are rounded down to a multiple of 2^24 (about 16.8 ms, just
/// under the 20 ms minimum initiation interval).
const WHITENER_MASK: u32 = (1 << 24) - 1;

/// 12 bytes: big-endian TAI64 seconds (2^62 + 10 + unix seconds) and nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Tai64n(pub [u8; 12]);

impl Tai64n {
    /// From wall-clock time. The nanoseconds are rounded down to a multiple of
    /// 2^24 ns (~16 ms), as the kernel and wireguard-go do, so the timestamp
    /// does not leak a precise clock.
    pub fn from_system_time(t: SystemTime) -> Self {
        // A clock set before 1970 yields the epoch: such a timestamp is older
        // than anything a peer has seen, so it is rejected, never accepted.
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = TAI64_EPOCH.saturating_add(since.as_secs());
        let nanos = since.subsec_nanos() & !WHITENER_MASK;
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&secs.to_be_bytes());
        out[8..].copy_from_slice(&nanos.to_be_bytes());
        Tai64n(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn layout_and_whitening() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let ts = Tai64n::from_system_time(t);
        let secs = u64::from_be_bytes(ts.0[..8].try_into().unwrap());
        let nanos = u32::from_be_bytes(ts.0[8..].try_into().unwrap());
        assert_eq!(secs, 0x4000_0000_0000_000a + 1_700_000_000);
        assert_eq!(nanos, 123_456_789 / (1 << 24) * (1 << 24));
        assert_eq!(nanos % (1 << 24), 0);
    }

    #[test]
    fn byte_order_follows_time() {
        let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = Tai64n::from_system_time(base);
        let b = Tai64n::from_system_time(base + Duration::from_millis(20));
        let c = Tai64n::from_system_time(base + Duration::from_secs(1));
        // Within one whitening step the timestamp does not move.
        let same = Tai64n::from_system_time(base + Duration::from_millis(10));
        assert!(a < b && b < c);
        assert_eq!(a, same);
    }

    #[test]
    fn before_epoch_is_the_epoch() {
        let t = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(
            Tai64n::from_system_time(t),
            Tai64n::from_system_time(UNIX_EPOCH)
        );
    }
}
