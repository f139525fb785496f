//! Log-linear latency histogram (seconds).
//!
//! Each power-of-two octave is split into 32 equal sub-buckets, so a bucket
//! is at most 1/32 of its lower bound wide and reporting its midpoint is
//! within about 1.6 % of any value in it. The bucket index comes straight
//! from the bits of the `f64` (exponent and top five mantissa bits), which
//! keeps recording cheap and exact at bucket edges.
//!
//! Range: 2^-20 s (about 1 us) to 2^12 s (about 68 min). Smaller values go to
//! an underflow bucket, larger ones to an overflow bucket; quantiles are
//! clamped to the exact minimum and maximum seen, so out-of-range values
//! still report something sensible.

const SUB_BITS: u32 = 5;
const SUBS: usize = 1 << SUB_BITS;
const MIN_EXP: i32 = -20;
const MAX_EXP: i32 = 12;
const OCTAVES: usize = (MAX_EXP - MIN_EXP) as usize;
/// Underflow, the regular buckets, overflow.
pub const BUCKETS: usize = OCTAVES * SUBS + 2;
const OVERFLOW: usize = BUCKETS - 1;

/// Bucket index of a finite, non-negative value.
fn index_of(v: f64) -> usize {
    if v < f64::powi(2.0, MIN_EXP) {
        return 0;
    }
    if v >= f64::powi(2.0, MAX_EXP) {
        return OVERFLOW;
    }
    let bits = v.to_bits();
    // In range, so the value is normal and the biased exponent is exact.
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let sub = ((bits >> (52 - SUB_BITS)) & (SUBS as u64 - 1)) as usize;
    1 + (exp - MIN_EXP) as usize * SUBS + sub
}

/// Midpoint of a regular bucket.
fn midpoint(index: usize) -> f64 {
    let i = index - 1;
    let exp = MIN_EXP + (i / SUBS) as i32;
    let sub = (i % SUBS) as f64;
    let base = f64::powi(2.0, exp);
    base * (1.0 + (sub + 0.5) / SUBS as f64)
}

/// Latency histogram with exact count, sum, minimum and maximum.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Records one latency in seconds. Negative, NaN or infinite values are
    /// measurement bugs, not latencies: they are dropped and `false` is
    /// returned.
    pub fn record(&mut self, seconds: f64) -> bool {
        if !seconds.is_finite() || seconds < 0.0 {
            return false;
        }
        self.counts[index_of(seconds)] += 1;
        self.count += 1;
        self.sum += seconds;
        self.min = self.min.min(seconds);
        self.max = self.max.max(seconds);
        true
    }

    /// Adds another histogram's samples into this one.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn clear(&mut self) {
        if self.count != 0 {
            self.counts.iter_mut().for_each(|c| *c = 0);
        }
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `q` quantile (0..=1) by the nearest-rank definition: the
    /// smallest sample with at least `ceil(q * n)` samples at or below it
    /// (rank at least 1), estimated by its bucket's midpoint and clamped to
    /// the exact minimum and maximum. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let estimate = match i {
                    0 => self.min,
                    OVERFLOW => self.max,
                    _ => midpoint(i),
                };
                return Some(estimate.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        let n = sorted.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        sorted[rank - 1]
    }

    fn check(samples: Vec<f64>, what: &str) {
        let mut h = Histogram::new();
        for &s in &samples {
            assert!(h.record(s));
        }
        let mut sorted = samples;
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let want = exact(&sorted, q);
            let got = h.quantile(q).unwrap();
            let err = (got - want).abs() / want;
            assert!(
                err < 0.05,
                "{what} q={q}: got {got}, exact {want}, error {err}"
            );
            // Tighter than required: the bucket design promises ~1.6 %.
            assert!(err < 0.017, "{what} q={q}: error {err} above bucket bound");
        }
    }

    #[test]
    fn quantiles_uniform() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v = (0..50_000).map(|_| rng.gen_range(0.001..0.250)).collect();
        check(v, "uniform");
    }

    #[test]
    fn quantiles_exponential() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        // Mean 10 ms, by inverse transform.
        let v = (0..50_000)
            .map(|_| -0.010 * (1.0 - rng.gen::<f64>()).ln())
            .map(|x: f64| x.max(1e-6))
            .collect();
        check(v, "exponential");
    }

    #[test]
    fn quantiles_bimodal() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // 70 % fast path around 2 ms, 30 % slow path around 150 ms: P50 and
        // P99 fall in different modes.
        let v = (0..50_000)
            .map(|_| {
                if rng.gen_bool(0.7) {
                    rng.gen_range(0.0015..0.0025)
                } else {
                    rng.gen_range(0.120..0.180)
                }
            })
            .collect();
        check(v, "bimodal");
    }

    #[test]
    fn small_samples_and_edges() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert!(h.record(0.0073));
        // One sample: every quantile is that sample (clamped to min/max).
        assert_eq!(h.quantile(0.5), Some(0.0073));
        assert_eq!(h.quantile(0.99), Some(0.0073));
        assert!(!h.record(-1.0));
        assert!(!h.record(f64::NAN));
        assert!(!h.record(f64::INFINITY));
        assert_eq!(h.count(), 1);
        // Underflow and overflow report the exact extremes.
        let mut h = Histogram::new();
        h.record(0.0);
        h.record(10_000.0);
        assert_eq!(h.quantile(0.0), Some(0.0));
        assert_eq!(h.quantile(1.0), Some(10_000.0));
    }

    #[test]
    fn bucket_edges_are_monotonic_and_tight() {
        let mut last = 0;
        let mut v = 1.0e-6;
        while v < 4000.0 {
            let i = index_of(v);
            assert!(i >= last, "index went down at {v}");
            last = i;
            if i != 0 && i != OVERFLOW {
                let m = midpoint(i);
                assert!((m - v).abs() / v <= 1.0 / 32.0, "midpoint {m} far from {v}");
            }
            v *= 1.0007;
        }
    }

    #[test]
    fn merge_equals_recording_together() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut both = Histogram::new();
        for i in 1..=1000 {
            let v = i as f64 * 1e-4;
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            };
            both.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), both.count());
        assert_eq!(a.quantile(0.5), both.quantile(0.5));
        assert_eq!(a.min(), both.min());
        assert_eq!(a.max(), both.max());
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a.quantile(0.5), None);
    }
}
