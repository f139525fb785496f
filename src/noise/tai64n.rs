//! TAI64N timestamps carried in handshake initiations.
use std::time::SystemTime;

/// 12 bytes: big-endian TAI64 seconds (2^62 + 10 + unix seconds) and nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Tai64n(pub [u8; 12]);

impl Tai64n {
    /// From wall-clock time. The nanoseconds are rounded down to a multiple of
    /// 2^24 ns (~16 ms), as the kernel and wireguard-go do, so the timestamp
    /// does not leak a precise clock.
    pub fn from_system_time(t: SystemTime) -> Self {
        let _ = t;
        todo!()
    }
}
