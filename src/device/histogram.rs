//! A fixed-bucket, lock-free latency histogram in Prometheus' model:
//! `le` upper bounds (inclusive), cumulative counts on export, a sum and a
//! count.
//!
//! Recording is two relaxed `fetch_add`s and a binary search over at most
//! [`MAX_BUCKETS`] integers, so the packet pipelines can call it once per
//! batch from several threads. Everything lives inline in one cache-aligned
//! struct: two histograms written by different threads (rx and tx) never
//! share a cache line, and recording touches no heap.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Most finite buckets a histogram can have (plus the implicit `+Inf`).
pub const MAX_BUCKETS: usize = 32;

/// Per-packet processing time: sub-millisecond resolution, with the runbook's
/// 100 ms (P50) and 200 ms (P99) objectives as exact edges.
pub const PACKET_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Initiation sent to session established. Retries come every 5 s and a
/// handshake is abandoned after 90 s (REKEY_ATTEMPT_TIME), hence the tail.
pub const HANDSHAKE_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
    30.0, 60.0, 90.0,
];

/// Tunnel-test round trips: network latency, again with 100 ms / 200 ms edges.
pub const RTT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A single observation is clamped to this (about 73 minutes) so that the
/// nanosecond sum cannot wrap in any realistic lifetime; such values fall in
/// `+Inf` either way, only `_sum` is affected.
const MAX_OBSERVATION_NS: u64 = 1 << 42;

#[repr(align(64))]
struct Cells {
    /// Non-cumulative: `counts[i]` holds observations in `(bound[i-1], bound[i]]`;
    /// `counts[len]` is the overflow (`+Inf`) bucket.
    counts: [AtomicU64; MAX_BUCKETS + 1],
    sum_ns: AtomicU64,
}

/// A latency histogram with fixed bounds in seconds.
#[repr(align(64))]
pub struct Histogram {
    /// Upper bounds in nanoseconds; read-only after construction.
    bounds_ns: [u64; MAX_BUCKETS],
    len: usize,
    cells: Cells,
}

/// A point-in-time copy of a [`Histogram`], ready to export.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Finite upper bounds in seconds, ascending (`+Inf` is implicit).
    pub bounds: Vec<f64>,
    /// Cumulative counts, one per bound plus a last one for `+Inf`
    /// (which equals `count`).
    pub cumulative: Vec<u64>,
    /// Sum of all observations, in seconds.
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// A histogram with the given finite upper bounds, in seconds.
    ///
    /// Panics unless the bounds are 1..=[`MAX_BUCKETS`] strictly ascending,
    /// positive, finite values that stay distinct at nanosecond resolution:
    /// they are compile-time constants, so a bad list is a programming error.
    pub fn new(bounds: &[f64]) -> Histogram {
        Self::try_new(bounds).expect("invalid histogram bounds")
    }

    /// As [`Histogram::new`], but None for invalid bounds.
    pub fn try_new(bounds: &[f64]) -> Option<Histogram> {
        if bounds.is_empty() || bounds.len() > MAX_BUCKETS {
            return None;
        }
        let mut bounds_ns = [0u64; MAX_BUCKETS];
        let mut prev = 0u64;
        for (i, &b) in bounds.iter().enumerate() {
            if !b.is_finite() || b <= 0.0 {
                return None;
            }
            let ns = (b * 1e9).round();
            if ns < 1.0 || ns >= MAX_OBSERVATION_NS as f64 {
                return None;
            }
            let ns = ns as u64;
            if ns <= prev {
                return None;
            }
            bounds_ns[i] = ns;
            prev = ns;
        }
        Some(Histogram {
            bounds_ns,
            len: bounds.len(),
            cells: Cells {
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
                sum_ns: AtomicU64::new(0),
            },
        })
    }

    /// Records one observation.
    #[inline]
    pub fn observe(&self, d: Duration) {
        self.observe_n(d, 1);
    }

    /// Records `n` observations of the same value (a batch whose packets
    /// are attributed the batch's per-packet average, for instance).
    #[inline]
    pub fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let ns = u64::try_from(d.as_nanos())
            .unwrap_or(u64::MAX)
            .min(MAX_OBSERVATION_NS);
        // `le` is inclusive: the first bound >= ns.
        let idx = self.bounds_ns[..self.len].partition_point(|&b| b < ns);
        self.cells.counts[idx].fetch_add(n, Ordering::Relaxed);
        self.cells
            .sum_ns
            .fetch_add(ns.saturating_mul(n), Ordering::Relaxed);
    }

    /// Records seconds given as a float (negative and NaN count as 0).
    pub fn observe_secs(&self, secs: f64) {
        let d = if secs.is_nan() || secs <= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        };
        self.observe(d);
    }

    /// The finite upper bounds in seconds.
    pub fn bounds(&self) -> Vec<f64> {
        self.bounds_ns[..self.len]
            .iter()
            .map(|&ns| ns as f64 / 1e9)
            .collect()
    }

    /// Copies the current state. Concurrent observations may or may not be
    /// included, but `count` always equals the `+Inf` bucket and buckets are
    /// always non-decreasing.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(self.len + 1);
        let mut running = 0u64;
        for c in &self.cells.counts[..=self.len] {
            running = running.wrapping_add(c.load(Ordering::Relaxed));
            cumulative.push(running);
        }
        let sum = self.cells.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        HistogramSnapshot {
            bounds: self.bounds(),
            cumulative,
            sum,
            count: running,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Histogram")
            .field("count", &s.count)
            .field("sum", &s.sum)
            .finish()
    }
}

impl HistogramSnapshot {
    /// Mean observation in seconds; None when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Estimated `q`-quantile (0..=1) in seconds, interpolated linearly
    /// inside the bucket as PromQL's `histogram_quantile` does. None when
    /// empty or `q` is out of range; the last finite bound when the rank
    /// falls in `+Inf`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let i = self.cumulative.iter().position(|&c| c as f64 >= rank)?;
        if i >= self.bounds.len() {
            return self.bounds.last().copied();
        }
        let (lo, below) = if i == 0 {
            (0.0, 0u64)
        } else {
            (self.bounds[i - 1], self.cumulative[i - 1])
        };
        let hi = self.bounds[i];
        let in_bucket = self.cumulative[i] - below;
        if in_bucket == 0 {
            return Some(hi);
        }
        Some(lo + (hi - lo) * ((rank - below as f64) / in_bucket as f64))
    }
}

/// The device's latency histograms. The pipelines record into them; the
/// admin plane renders them on `/metrics`.
#[derive(Debug)]
pub struct DeviceHistograms {
    /// Per-packet time from UDP receive to TUN delivery (sampled).
    pub rx_packet: Histogram,
    /// Per-packet time from TUN read to UDP send (sampled).
    pub tx_packet: Histogram,
    /// Initiation sent to session established.
    pub handshake: Histogram,
    /// Round trips measured by the admin plane's tunnel tests.
    pub tunnel_test_rtt: Histogram,
}

impl DeviceHistograms {
    pub fn new() -> DeviceHistograms {
        DeviceHistograms {
            rx_packet: Histogram::new(PACKET_BUCKETS),
            tx_packet: Histogram::new(PACKET_BUCKETS),
            handshake: Histogram::new(HANDSHAKE_BUCKETS),
            tunnel_test_rtt: Histogram::new(RTT_BUCKETS),
        }
    }
}

impl Default for DeviceHistograms {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[path = "histogram_tests.rs"]
mod tests;
