//! Sliding measurement window, sans-IO: every call takes `now`.
//!
//! Time is cut into slots of `slot` length counted from the window's
//! creation. A summary at `now` covers every slot that overlaps
//! `(now - length, now]`, so nothing younger than `length` is ever missed
//! (a 30 s load run summarised at its end with a 30 s window sees all of
//! it) and a sample leaves the window between `length` and `length + slot`
//! after it was recorded. The slots live in a ring one longer than
//! `ceil(length / slot)`; a slot is reset when its ring position is reused
//! by a newer slot, so expiry costs nothing until then, and
//! [`Window::summary`] skips slots that have left the window.
//!
//! Recording takes one mutex; callers record per event or per batch (a
//! handshake, a probe, a batch of packets), never per byte.
use super::histogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Most slots a window may hold; bounds memory (each slot with latency
/// samples carries an ~8 KB histogram).
pub const MAX_SLOTS: u64 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    pub length: Duration,
    pub slot: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            length: Duration::from_secs(300),
            slot: Duration::from_secs(1),
        }
    }
}

impl WindowConfig {
    /// Checks the invariants [`Window::new`] relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.slot.is_zero() {
            return Err("slot must be longer than zero".into());
        }
        if self.length < self.slot {
            return Err("length must be at least one slot".into());
        }
        if self.slot_count() > MAX_SLOTS {
            return Err(format!(
                "length / slot is {} slots, at most {MAX_SLOTS} allowed",
                self.slot_count()
            ));
        }
        Ok(())
    }

    fn slot_count(&self) -> u64 {
        let slot = self.slot.as_nanos().max(1);
        self.length.as_nanos().div_ceil(slot) as u64
    }
}

/// What a window (or a load run) measured. Rates are fractions (0..=1),
/// latencies seconds; `None` means no samples, which a gate treats as
/// "no data".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Configured window length.
    pub window_seconds: f64,
    /// Time the throughput is averaged over: from the start of the oldest
    /// slot holding data to `now`, at least one slot.
    pub span_seconds: f64,
    pub attempts: u64,
    pub successes: u64,
    pub packets: u64,
    pub packet_errors: u64,
    pub requests: u64,
    pub bytes: u64,
    pub latency_samples: u64,
    pub success_rate: Option<f64>,
    pub error_rate: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub requests_per_second: Option<f64>,
    pub bytes_per_second: Option<f64>,
}

impl Summary {
    /// Fills the derived fields (rates, throughput) from the counters and
    /// `span_seconds`; quantiles are left as they are. Lets a load test
    /// build a summary from its own counts.
    pub fn derive_rates(&mut self) {
        let ratio = |num: u64, den: u64| (den > 0).then(|| num.min(den) as f64 / den as f64);
        self.success_rate = ratio(self.successes, self.attempts);
        self.error_rate = ratio(self.packet_errors, self.packets);
        let per_sec =
            |n: u64| (n > 0 && self.span_seconds > 0.0).then(|| n as f64 / self.span_seconds);
        self.requests_per_second = per_sec(self.requests);
        self.bytes_per_second = per_sec(self.bytes);
    }
}

#[derive(Default)]
struct Slot {
    /// Slot number since the window's origin; `None` when never used.
    epoch: Option<u64>,
    attempts: u64,
    successes: u64,
    packets: u64,
    packet_errors: u64,
    requests: u64,
    bytes: u64,
    /// Allocated on the first latency sample and kept across reuse.
    latency: Option<Box<Histogram>>,
}

impl Slot {
    fn reset(&mut self, epoch: u64) {
        self.epoch = Some(epoch);
        self.attempts = 0;
        self.successes = 0;
        self.packets = 0;
        self.packet_errors = 0;
        self.requests = 0;
        self.bytes = 0;
        if let Some(h) = &mut self.latency {
            h.clear();
        }
    }

    fn has_data(&self) -> bool {
        self.attempts + self.packets + self.requests + self.bytes > 0
            || self.latency.as_ref().is_some_and(|h| !h.is_empty())
    }
}

/// A thread-safe sliding window of counters and latencies.
pub struct Window {
    cfg: WindowConfig,
    origin: Instant,
    slots: Mutex<Vec<Slot>>,
}

impl Window {
    /// A window starting at `now`. An invalid config (see
    /// [`WindowConfig::validate`]) is replaced by the default rather than
    /// panicking; configs from files are validated when parsed.
    pub fn new(cfg: WindowConfig, now: Instant) -> Self {
        let cfg = if cfg.validate().is_ok() {
            cfg
        } else {
            WindowConfig::default()
        };
        let n = cfg.slot_count() as usize + 1;
        Window {
            cfg,
            origin: now,
            slots: Mutex::new((0..n).map(|_| Slot::default()).collect()),
        }
    }

    pub fn config(&self) -> WindowConfig {
        self.cfg
    }

    fn epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        (since / self.cfg.slot.as_nanos()) as u64
    }

    /// The oldest slot overlapping `(now - length, now]`: slot `e` spans
    /// `[e * slot, (e + 1) * slot)`.
    fn oldest_epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        let before = since.saturating_sub(self.cfg.length.as_nanos());
        (before / self.cfg.slot.as_nanos()) as u64
    }

    /// Runs `f` on the slot for `now`, unless that time is already older
    /// than what the ring holds (a late record from a slow thread).
    fn with_slot(&self, now: Instant, f: impl FnOnce(&mut Slot)) {
        let epoch = self.epoch(now);
        let mut slots = self.slots.lock();
        let n = slots.len() as u64;
        let slot = &mut slots[(epoch % n) as usize];
        match slot.epoch {
            Some(e) if e == epoch => {}
            Some(e) if e > epoch => return,
            _ => slot.reset(epoch),
        }
        f(slot);
    }

    /// One handshake or probe attempt and whether it succeeded.
    pub fn record_attempt(&self, now: Instant, ok: bool) {
        self.record_attempts(now, 1, u64::from(ok));
    }

    /// A batch of attempts; `successes` is capped at `attempts`.
    pub fn record_attempts(&self, now: Instant, attempts: u64, successes: u64) {
        self.with_slot(now, |s| {
            s.attempts = s.attempts.saturating_add(attempts);
            s.successes = s.successes.saturating_add(successes.min(attempts));
        });
    }

    /// Units handled and how many of them failed: packets in the daemon,
    /// requests in a load test. `errors` is capped at `packets`.
    pub fn record_packets(&self, now: Instant, packets: u64, errors: u64) {
        self.with_slot(now, |s| {
            s.packets = s.packets.saturating_add(packets);
            s.packet_errors = s.packet_errors.saturating_add(errors.min(packets));
        });
    }

    /// Completed requests and bytes, for throughput.
    pub fn record_requests(&self, now: Instant, requests: u64, bytes: u64) {
        self.with_slot(now, |s| {
            s.requests = s.requests.saturating_add(requests);
            s.bytes = s.bytes.saturating_add(bytes);
        });
    }

    /// One latency sample in seconds; invalid values (negative, NaN) are
    /// dropped.
    pub fn record_latency(&self, now: Instant, seconds: f64) {
        self.record_latencies(now, &[seconds]);
    }

    pub fn record_latencies(&self, now: Instant, seconds: &[f64]) {
        if seconds.is_empty() {
            return;
        }
        self.with_slot(now, |s| {
            let h = s.latency.get_or_insert_with(Default::default);
            for &v in seconds {
                h.record(v);
            }
        });
    }

    /// Everything recorded in the window ending at `now`.
    pub fn summary(&self, now: Instant) -> Summary {
        let current = self.epoch(now);
        let oldest_allowed = self.oldest_epoch(now);
        let slots = self.slots.lock();
        let mut sum = Summary {
            window_seconds: self.cfg.length.as_secs_f64(),
            ..Summary::default()
        };
        let mut latency = Histogram::new();
        let mut oldest_data: Option<u64> = None;
        for s in slots.iter() {
            let Some(e) = s.epoch else { continue };
            if e < oldest_allowed || e > current || !s.has_data() {
                continue;
            }
            oldest_data = Some(oldest_data.map_or(e, |o| o.min(e)));
            sum.attempts += s.attempts;
            sum.successes += s.successes;
            sum.packets += s.packets;
            sum.packet_errors += s.packet_errors;
            sum.requests += s.requests;
            sum.bytes += s.bytes;
            if let Some(h) = &s.latency {
                latency.merge(h);
            }
        }
        drop(slots);
        if let Some(o) = oldest_data {
            let offset = self.cfg.slot.as_nanos().saturating_mul(u128::from(o));
            let start = self.origin + Duration::from_nanos(offset.min(u128::from(u64::MAX)) as u64);
            let span = now.saturating_duration_since(start);
            sum.span_seconds = span.max(self.cfg.slot).as_secs_f64();
        }
        sum.latency_samples = latency.count();
        sum.p50_seconds = latency.quantile(0.50);
        sum.p99_seconds = latency.quantile(0.99);
        sum.derive_rates();
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn window(len: u64, slot: u64) -> (Window, Instant) {
        let t0 = Instant::now();
        let cfg = WindowConfig {
            length: Duration::from_secs(len),
            slot: Duration::from_secs(slot),
        };
        (Window::new(cfg, t0), t0)
    }

    #[test]
    fn empty_window_has_no_samples() {
        let (w, t0) = window(300, 1);
        let s = w.summary(t0 + secs(10.0));
        assert_eq!(s.window_seconds, 300.0);
        assert_eq!(s.latency_samples, 0);
        assert_eq!(s.success_rate, None);
        assert_eq!(s.error_rate, None);
        assert_eq!(s.p50_seconds, None);
        assert_eq!(s.p99_seconds, None);
        assert_eq!(s.requests_per_second, None);
        assert_eq!(s.span_seconds, 0.0);
    }

    #[test]
    fn counts_rates_and_throughput() {
        let (w, t0) = window(60, 1);
        for i in 0..30u32 {
            let t = t0 + secs(f64::from(i) + 0.5);
            w.record_attempts(t, 10, if i == 0 { 9 } else { 10 });
            w.record_packets(t, 1000, u64::from(i == 5) * 3);
            w.record_requests(t, 4, 4096);
            w.record_latency(t, 0.005);
        }
        let s = w.summary(t0 + secs(30.0));
        assert_eq!(s.attempts, 300);
        assert_eq!(s.successes, 299);
        assert!((s.success_rate.unwrap() - 299.0 / 300.0).abs() < 1e-12);
        assert!((s.error_rate.unwrap() - 3.0 / 30_000.0).abs() < 1e-12);
        // 120 requests over the 30 s since the first slot began.
        assert_eq!(s.span_seconds, 30.0);
        assert!((s.requests_per_second.unwrap() - 4.0).abs() < 1e-9);
        assert!((s.bytes_per_second.unwrap() - 4096.0).abs() < 1e-9);
        assert_eq!(s.latency_samples, 30);
        assert_eq!(s.p50_seconds, Some(0.005));
    }

    #[test]
    fn old_slots_expire() {
        let (w, t0) = window(10, 1);
        w.record_attempt(t0 + secs(0.5), false);
        w.record_latency(t0 + secs(0.5), 1.0);
        w.record_attempt(t0 + secs(5.5), true);
        w.record_latency(t0 + secs(5.5), 0.010);
        let s = w.summary(t0 + secs(9.9));
        assert_eq!((s.attempts, s.successes, s.latency_samples), (2, 1, 2));
        // Slot 0 ([0, 1) s) still overlaps the window (0.5, 10.5].
        let s = w.summary(t0 + secs(10.5));
        assert_eq!((s.attempts, s.successes, s.latency_samples), (2, 1, 2));
        // At 11 s slot 0 has left the window although no record reused it.
        let s = w.summary(t0 + secs(11.0));
        assert_eq!((s.attempts, s.successes, s.latency_samples), (1, 1, 1));
        assert_eq!(s.p99_seconds, Some(0.010));
        // Recording at 22.5 s reuses ring position 0 (11 slots) and must not
        // see slot 0's data.
        w.record_attempt(t0 + secs(22.5), true);
        let s = w.summary(t0 + secs(22.6));
        assert_eq!((s.attempts, s.successes, s.latency_samples), (1, 1, 0));
        // Much later, nothing at all.
        let s = w.summary(t0 + secs(1000.0));
        assert_eq!(s.attempts, 0);
        assert_eq!(s.success_rate, None);
    }

    #[test]
    fn a_run_as_long_as_the_window_is_seen_whole() {
        let (w, t0) = window(30, 1);
        for i in 0..3000u32 {
            let t = t0 + secs(f64::from(i) * 0.01);
            w.record_requests(t, 1, 100);
            w.record_packets(t, 1, u64::from(i % 100 == 0));
        }
        let s = w.summary(t0 + secs(30.0));
        assert_eq!((s.requests, s.packets, s.packet_errors), (3000, 3000, 30));
        assert_eq!(s.span_seconds, 30.0);
        assert!((s.requests_per_second.unwrap() - 100.0).abs() < 1e-9);
        assert!((s.error_rate.unwrap() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn late_record_older_than_ring_is_dropped() {
        let (w, t0) = window(10, 1);
        w.record_attempt(t0 + secs(12.5), true); // epoch 12, ring position 1
        w.record_attempt(t0 + secs(1.5), false); // epoch 1, same position: stale
        let s = w.summary(t0 + secs(12.6));
        assert_eq!((s.attempts, s.successes), (1, 1));
        // A late record that is still inside the window is kept.
        w.record_attempt(t0 + secs(8.5), false);
        let s = w.summary(t0 + secs(12.6));
        assert_eq!((s.attempts, s.successes), (2, 1));
    }

    #[test]
    fn window_quantiles_merge_slots() {
        let (w, t0) = window(300, 1);
        // 100 slots each holding a slice of 1..=10_000 ms: merged quantiles
        // must match the exact ones within 5 %.
        for i in 0..10_000u32 {
            let t = t0 + secs(f64::from(i / 100) + 0.1);
            w.record_latency(t, f64::from(i + 1) * 1e-3);
        }
        let s = w.summary(t0 + secs(100.0));
        assert_eq!(s.latency_samples, 10_000);
        let p50 = s.p50_seconds.unwrap();
        let p99 = s.p99_seconds.unwrap();
        assert!((p50 - 5.0).abs() / 5.0 < 0.05, "p50 {p50}");
        assert!((p99 - 9.9).abs() / 9.9 < 0.05, "p99 {p99}");
    }

    #[test]
    fn span_runs_from_the_oldest_slot_with_data() {
        let (w, t0) = window(10, 2);
        w.record_requests(t0 + secs(0.1), 10, 0);
        // At least one slot, so a fresh burst is not divided by 0.1 s.
        let s = w.summary(t0 + secs(0.2));
        assert_eq!(s.span_seconds, 2.0);
        assert!((s.requests_per_second.unwrap() - 5.0).abs() < 1e-9);
        w.record_requests(t0 + secs(9.0), 10, 0);
        let s = w.summary(t0 + secs(9.9));
        assert_eq!(s.span_seconds, 9.9);
        // Slot [0, 2) still overlaps (1, 11]: its requests count over 11 s.
        let s = w.summary(t0 + secs(11.0));
        assert_eq!((s.requests, s.span_seconds), (20, 11.0));
        // Once it has left, the span starts at the next slot with data.
        let s = w.summary(t0 + secs(12.0));
        assert_eq!((s.requests, s.span_seconds), (10, 4.0));
        assert!((s.requests_per_second.unwrap() - 2.5).abs() < 1e-9);
    }

    #[test]
    fn invalid_config_falls_back_to_default() {
        let bad = WindowConfig {
            length: Duration::from_secs(1),
            slot: Duration::ZERO,
        };
        assert!(bad.validate().is_err());
        let w = Window::new(bad, Instant::now());
        assert_eq!(w.config(), WindowConfig::default());
        let too_many = WindowConfig {
            length: Duration::from_secs(7200),
            slot: Duration::from_secs(1),
        };
        assert!(too_many.validate().unwrap_err().contains("7200 slots"));
    }

    #[test]
    fn records_from_many_threads() {
        let (w, t0) = window(60, 1);
        let w = std::sync::Arc::new(w);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        let t = t0 + secs(f64::from(i % 50) + 0.5);
                        w.record_attempt(t, true);
                        w.record_latency(t, 0.002);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = w.summary(t0 + secs(50.0));
        assert_eq!(s.attempts, 4000);
        assert_eq!(s.latency_samples, 4000);
    }
}
