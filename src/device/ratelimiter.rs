//! Per-source token bucket for handshake messages under load (kernel
//! ratelimiter.c): 20 per second, burst 5, keyed by IPv4 address or IPv6 /64,
//! at most 65,536 tracked sources, idle entries collected. Sans-IO: `now` is
//! passed in.
use std::net::IpAddr;
use std::time::Instant;

pub const PACKETS_PER_SECOND: u64 = 20;
pub const PACKETS_BURSTABLE: u64 = 5;
pub const MAX_ENTRIES: usize = 65_536;

pub struct RateLimiter {
    // owner: fill in
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        todo!()
    }
    /// True when a packet from `ip` may pass now (and takes a token).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let _ = (ip, now);
        todo!()
    }
    /// Drops entries idle for more than a second. Call about once a second.
    pub fn collect(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
