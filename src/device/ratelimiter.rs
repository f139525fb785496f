//! Per-source token bucket for handshake messages under load (kernel
//! ratelimiter.c): 20 per second, burst 5, keyed by IPv4 address or IPv6 /64,
//! at most 65,536 tracked sources, idle entries collected. Sans-IO: `now` is
//! passed in.
//!
//! Tokens are kept in nanoseconds of credit, as the kernel does: one packet
//! costs 1/20 s and the bucket holds at most 5 packets' worth, so the burst is
//! part of the bucket size rather than of the rate. A new source starts with a
//! full bucket minus the packet that created it. When the table is full, new
//! sources are refused (not tracked, not allowed) until collection frees room:
//! under a flood of spoofed sources that is the safe side to fail on.
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const PACKETS_PER_SECOND: u64 = 20;
pub const PACKETS_BURSTABLE: u64 = 5;
pub const MAX_ENTRIES: usize = 65_536;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const PACKET_COST: u64 = NANOS_PER_SEC / PACKETS_PER_SECOND;
const TOKEN_MAX: u64 = PACKET_COST * PACKETS_BURSTABLE;
/// Entries untouched for longer than this are collected; by then their
/// bucket is full again, so forgetting them changes no decision.
const IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    /// The upper 64 bits: one bucket per /64, since a single IPv6 host
    /// usually controls at least that much address space.
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; keyed as
        // IPv6 they would all share the bucket of ::ffff:0:0/64.
        match ip.to_canonical() {
            IpAddr::V4(a) => Source::V4(u32::from(a)),
            IpAddr::V6(a) => Source::V6((u128::from(a) >> 64) as u64),
        }
    }
}

struct Entry {
    last: Instant,
    tokens: u64,
}

pub struct RateLimiter {
    // The default hasher is keyed randomly per process, so a flood cannot
    // aim for one hash bucket.
    table: HashMap<Source, Entry>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        Self {
            table: HashMap::new(),
        }
    }
    /// True when a packet from `ip` may pass now (and takes a token).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let source = Source::of(ip);
        if let Some(e) = self.table.get_mut(&source) {
            let elapsed = now.saturating_duration_since(e.last);
            let refill = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            let tokens = e.tokens.saturating_add(refill).min(TOKEN_MAX);
            // A `now` earlier than the last one (callers on several threads)
            // must not move the clock back and hand out refills twice.
            e.last = e.last.max(now);
            let pass = tokens >= PACKET_COST;
            e.tokens = if pass { tokens - PACKET_COST } else { tokens };
            return pass;
        }
        if self.table.len() >= MAX_ENTRIES {
            return false;
        }
        self.table.insert(
            source,
            Entry {
                last: now,
                tokens: TOKEN_MAX - PACKET_COST,
            },
        );
        true
    }
    /// Drops entries idle for more than a second. Call about once a second.
    pub fn collect(&mut self, now: Instant) {
        self.table
            .retain(|_, e| now.saturating_duration_since(e.last) <= IDLE);
    }
    pub fn len(&self) -> usize {
        self.table.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ip4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }

    #[test]
    fn burst_of_five_then_blocked() {
        let mut rl = RateLimiter::new();
        let t0 = Instant::now();
        for i in 0..PACKETS_BURSTABLE {
            assert!(rl.allow(ip4(1), t0), "packet {i} of the burst");
        }
        assert!(!rl.allow(ip4(1), t0));
        assert!(!rl.allow(ip4(1), t0 + ms(49)), "less than one token");
        assert_eq!(rl.len(), 1);
    }

    #[test]
    fn refills_at_twenty_per_second() {
        let mut rl = RateLimiter::new();
        let t0 = Instant::now();
        for _ in 0..PACKETS_BURSTABLE {
            assert!(rl.allow(ip4(1), t0));
        }
        // Blocked attempts do not spend credit: time keeps accruing.
        assert!(!rl.allow(ip4(1), t0 + ms(30)));
        assert!(rl.allow(ip4(1), t0 + ms(50)));
        assert!(!rl.allow(ip4(1), t0 + ms(50)));
        // Over one steady second at 100 attempts/s, exactly 20 pass.
        let start = t0 + ms(50);
        let passed = (1..=100)
            .filter(|i| rl.allow(ip4(1), start + ms(10 * i)))
            .count();
        assert_eq!(passed as u64, PACKETS_PER_SECOND);
        // A long silence refills to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        let burst = (0..10).filter(|_| rl.allow(ip4(1), later)).count();
        assert_eq!(burst as u64, PACKETS_BURSTABLE);
    }

    #[test]
    fn sources_are_independent() {
        let mut rl = RateLimiter::new();
        let t0 = Instant::now();
        for _ in 0..PACKETS_BURSTABLE {
            assert!(rl.allow(ip4(1), t0));
        }
        assert!(!rl.allow(ip4(1), t0));
        assert!(rl.allow(ip4(2), t0));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(rl.allow(v6, t0));
        assert_eq!(rl.len(), 3);
    }

    #[test]
    fn ipv6_keyed_by_slash_64() {
        let mut rl = RateLimiter::new();
        let t0 = Instant::now();
        let same: [IpAddr; 5] = [
            "2001:db8:1:2::1".parse().unwrap(),
            "2001:db8:1:2::2".parse().unwrap(),
            "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap(),
            "2001:db8:1:2:1234::".parse().unwrap(),
            "2001:db8:1:2::99".parse().unwrap(),
        ];
        for ip in same {
            assert!(rl.allow(ip, t0));
        }
        assert!(!rl.allow("2001:db8:1:2::abcd".parse().unwrap(), t0));
        assert!(rl.allow("2001:db8:1:3::1".parse().unwrap(), t0));
        assert_eq!(rl.len(), 2);
    }

    #[test]
    fn ipv4_mapped_is_keyed_as_ipv4() {
        let mut rl = RateLimiter::new();
        let t0 = Instant::now();
        let a = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped());
        let b = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 2).to_ipv6_mapped());
        for _ in 0..PACKETS_BURSTABLE {
            assert!(rl.allow(a, t0));
        }
        assert!(!rl.allow(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), t0));
        assert!(rl.allow(b, t0), "another IPv4 host has its own bucket");
    }

    #[test]
    fn table_is_bounded_and_collect_makes_room() {
        let mut rl = RateLimiter::new();
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES as u32 {
            assert!(rl.allow(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), t0));
        }
        assert_eq!(rl.len(), MAX_ENTRIES);
        let newcomer: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(!rl.allow(newcomer, t0), "full table refuses new sources");
        assert!(!rl.allow("2001:db8::9".parse().unwrap(), t0));
        // Known sources keep their buckets while full.
        assert!(rl.allow(IpAddr::V4(Ipv4Addr::from(0x0a00_0000)), t0));
        assert_eq!(rl.len(), MAX_ENTRIES);
        rl.collect(t0 + ms(1001));
        assert!(rl.is_empty());
        assert!(rl.allow(newcomer, t0 + ms(1002)));
    }

    #[test]
    fn collect_drops_only_idle_entries() {
        let mut rl = RateLimiter::new();
        let t0 = Instant::now();
        assert!(rl.allow(ip4(1), t0));
        assert!(rl.allow(ip4(2), t0 + ms(600)));
        rl.collect(t0 + ms(1000));
        assert_eq!(rl.len(), 2, "exactly one second idle is kept");
        rl.collect(t0 + ms(1100));
        assert_eq!(rl.len(), 1);
        assert!(rl.allow(ip4(2), t0 + ms(1100)));
        rl.collect(t0 + ms(2101));
        assert!(rl.is_empty());
    }

    #[test]
    fn clock_going_backwards_grants_nothing_extra() {
        let mut rl = RateLimiter::new();
        let t0 = Instant::now() + Duration::from_secs(10);
        for _ in 0..PACKETS_BURSTABLE {
            assert!(rl.allow(ip4(1), t0));
        }
        assert!(!rl.allow(ip4(1), t0 - ms(500)));
        assert!(!rl.allow(ip4(1), t0));
        assert!(!rl.allow(ip4(1), t0 + ms(49)));
        assert!(rl.allow(ip4(1), t0 + ms(50)));
    }
}
