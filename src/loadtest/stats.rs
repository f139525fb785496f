//! What a load run measured: counters, latency histograms, a timeline for
//! the report's charts, per-peer results, and the gate [`Summary`] built
//! from them. Pure: workers fill [`Stats`] locally and merge them into the
//! shared copy now and then; the main thread reads snapshots.
use crate::gates::{Histogram, Summary};
use serde::Serialize;
use std::time::Duration;

/// Everything counted, summed over peers. Datagram counts are on the wire;
/// byte counts are inner (tunnelled) bytes unless named `wire_`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Peers that sent a first initiation.
    pub peers_started: u64,
    /// Peers whose first handshake completed.
    pub peers_established: u64,
    pub initiations_sent: u64,
    pub responses_received: u64,
    pub cookie_replies_received: u64,
    /// Every session established, first handshakes and rekeys.
    pub handshakes_completed: u64,
    /// Peers that gave up after the protocol's retry limit.
    pub handshakes_given_up: u64,
    pub probes_sent: u64,
    pub probes_answered: u64,
    /// No reply within the probe timeout.
    pub probes_lost: u64,
    /// Due while the peer had no usable session (after its first handshake).
    pub probes_no_session: u64,
    /// Answered probes sent after the ramp: the throughput numerator.
    pub steady_answered: u64,
    /// Replies that matched no outstanding probe (late or duplicated).
    pub replies_unmatched: u64,
    /// Data messages sent that carried a packet (probes and bulk).
    pub data_sent: u64,
    pub keepalives_sent: u64,
    pub data_received: u64,
    pub keepalives_received: u64,
    pub bulk_sent: u64,
    pub bulk_received: u64,
    pub send_errors: u64,
    /// Datagrams that were not a valid message for us (bad index, failed
    /// authentication, malformed inner packet).
    pub receive_errors: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
}

macro_rules! each_counter {
    ($m:ident) => {
        $m!(
            peers_started,
            peers_established,
            initiations_sent,
            responses_received,
            cookie_replies_received,
            handshakes_completed,
            handshakes_given_up,
            probes_sent,
            probes_answered,
            probes_lost,
            probes_no_session,
            steady_answered,
            replies_unmatched,
            data_sent,
            keepalives_sent,
            data_received,
            keepalives_received,
            bulk_sent,
            bulk_received,
            send_errors,
            receive_errors,
            bytes_sent,
            bytes_received,
            wire_bytes_sent,
            wire_bytes_received
        )
    };
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        macro_rules! add {
            ($($f:ident),*) => { $( self.$f = self.$f.saturating_add(o.$f); )* };
        }
        each_counter!(add);
    }

    /// `self - earlier`, field by field (for interval deltas).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut d = *self;
        macro_rules! sub {
            ($($f:ident),*) => { $( d.$f = self.$f.saturating_sub(earlier.$f); )* };
        }
        each_counter!(sub);
        d
    }

    /// Probes with an outcome: answered, lost, or not sendable.
    pub fn probes_resolved(&self) -> u64 {
        self.probes_answered + self.probes_lost + self.probes_no_session
    }

    /// Failed probes plus datagrams we could not send.
    pub fn probe_failures(&self) -> u64 {
        self.probes_lost + self.probes_no_session
    }
}

/// Log-spaced buckets for the report's latency histogram: 10 per decade
/// from 10 us to 10 s, plus underflow and overflow. The gate quantiles come
/// from [`Histogram`]; this one only draws the chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartHistogram {
    pub counts: Vec<u64>,
}

pub const CHART_MIN_SECONDS: f64 = 1e-5;
pub const CHART_PER_DECADE: usize = 10;
pub const CHART_DECADES: usize = 6;

impl Default for ChartHistogram {
    fn default() -> Self {
        ChartHistogram {
            counts: vec![0; CHART_PER_DECADE * CHART_DECADES + 2],
        }
    }
}

impl ChartHistogram {
    pub fn bucket_of(seconds: f64) -> usize {
        let n = CHART_PER_DECADE * CHART_DECADES;
        if seconds.is_nan() || seconds < CHART_MIN_SECONDS {
            return 0;
        }
        let pos = (seconds / CHART_MIN_SECONDS).log10() * CHART_PER_DECADE as f64;
        if pos >= n as f64 {
            n + 1
        } else {
            1 + pos as usize
        }
    }

    /// Lower and upper edge of bucket `i` in seconds (0 and inf at the ends).
    pub fn edges(i: usize) -> (f64, f64) {
        let edge = |k: usize| CHART_MIN_SECONDS * 10f64.powf(k as f64 / CHART_PER_DECADE as f64);
        let n = CHART_PER_DECADE * CHART_DECADES;
        match i {
            0 => (0.0, CHART_MIN_SECONDS),
            i if i > n => (edge(n), f64::INFINITY),
            i => (edge(i - 1), edge(i)),
        }
    }

    pub fn record(&mut self, seconds: f64) {
        let i = Self::bucket_of(seconds);
        self.counts[i] += 1;
    }

    pub fn merge(&mut self, o: &ChartHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
    }
}

/// One slice of the timeline.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    pub counters: Counters,
    pub rtt: Histogram,
}

/// Counters and RTTs by time since the run's start, in equal buckets.
#[derive(Clone, Debug)]
pub struct Timeline {
    pub width: Duration,
    pub buckets: Vec<Bucket>,
}

/// Most timeline buckets: each carries an ~8 KB histogram.
pub const MAX_BUCKETS: usize = 400;

impl Timeline {
    /// A bucket width of at least one second that fits `total` in
    /// [`MAX_BUCKETS`] buckets.
    pub fn new(total: Duration) -> Timeline {
        let secs = total.as_secs_f64() / MAX_BUCKETS as f64;
        let width = Duration::from_secs(secs.ceil().max(1.0) as u64);
        Timeline {
            width,
            buckets: Vec::new(),
        }
    }

    pub fn index_of(&self, since_start: Duration) -> usize {
        ((since_start.as_nanos() / self.width.as_nanos().max(1)) as usize).min(MAX_BUCKETS * 4)
    }

    pub fn bucket_mut(&mut self, index: usize) -> &mut Bucket {
        if self.buckets.len() <= index {
            self.buckets.resize_with(index + 1, Bucket::default);
        }
        &mut self.buckets[index]
    }

    pub fn merge(&mut self, o: &Timeline) {
        for (i, b) in o.buckets.iter().enumerate() {
            if b.counters == Counters::default() && b.rtt.is_empty() {
                continue;
            }
            let mine = self.bucket_mut(i);
            mine.counters.add(&b.counters);
            mine.rtt.merge(&b.rtt);
        }
    }
}

/// A measurement set: totals, RTT and handshake latency histograms, and
/// the timeline. Workers keep a local one and merge it into the shared one.
#[derive(Clone, Debug)]
pub struct Stats {
    pub counters: Counters,
    pub rtt: Histogram,
    pub handshake: Histogram,
    pub chart: ChartHistogram,
    pub timeline: Timeline,
}

impl Stats {
    pub fn new(total: Duration) -> Stats {
        Stats {
            counters: Counters::default(),
            rtt: Histogram::new(),
            handshake: Histogram::new(),
            chart: ChartHistogram::default(),
            timeline: Timeline::new(total),
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        self.counters.add(&o.counters);
        self.rtt.merge(&o.rtt);
        self.handshake.merge(&o.handshake);
        self.chart.merge(&o.chart);
        self.timeline.merge(&o.timeline);
    }

    /// Empties the measurements, keeping the timeline's bucket width.
    pub fn clear(&mut self) {
        self.counters = Counters::default();
        self.rtt.clear();
        self.handshake.clear();
        self.chart = ChartHistogram::default();
        self.timeline.buckets.clear();
    }

    /// Applies `f` to the totals and to the timeline bucket at `at`.
    pub fn count(&mut self, at: Duration, f: impl Fn(&mut Counters)) {
        f(&mut self.counters);
        let i = self.timeline.index_of(at);
        f(&mut self.timeline.bucket_mut(i).counters);
    }

    pub fn record_rtt(&mut self, at: Duration, seconds: f64) {
        self.rtt.record(seconds);
        self.chart.record(seconds);
        let i = self.timeline.index_of(at);
        self.timeline.bucket_mut(i).rtt.record(seconds);
    }
}

/// The gate summary of a run (or an interval).
///
/// - Success Rate: handshakes that completed plus probes answered, over
///   peers started plus probes with an outcome (the gates window counts
///   "one handshake or probe attempt" the same way).
/// - Error Rate: failed probes (lost, or no session to send on) over probes
///   with an outcome: the load test's requests.
/// - P50 / P99: probe round-trip times.
/// - Throughput: probes answered after the ramp, per second of
///   `steady_seconds`.
pub fn gate_summary(
    c: &Counters,
    rtt: &Histogram,
    elapsed_seconds: f64,
    steady_seconds: f64,
) -> Summary {
    let mut s = Summary {
        window_seconds: elapsed_seconds,
        span_seconds: steady_seconds,
        attempts: c.peers_started + c.probes_resolved(),
        successes: c.peers_established + c.probes_answered,
        packets: c.probes_resolved(),
        packet_errors: c.probe_failures(),
        requests: c.steady_answered,
        bytes: c.bytes_sent + c.bytes_received,
        latency_samples: rtt.count(),
        p50_seconds: rtt.quantile(0.50),
        p99_seconds: rtt.quantile(0.99),
        ..Summary::default()
    };
    s.derive_rates();
    s
}

/// One peer's results, for the JSON output and the worst-peers list.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerResult {
    pub index: u32,
    pub address: String,
    pub public_key: String,
    /// From the first initiation to the first session, retries included.
    pub handshake_ms: Option<f64>,
    /// Seconds after the run's start when the first session came up.
    pub established_at_s: Option<f64>,
    pub initiations: u64,
    pub cookie_replies: u64,
    pub handshakes: u64,
    pub probes_sent: u64,
    pub probes_answered: u64,
    pub probes_lost: u64,
    pub probes_no_session: u64,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl PeerResult {
    pub fn loss(&self) -> f64 {
        let resolved = self.probes_answered + self.probes_lost + self.probes_no_session;
        if resolved == 0 {
            return 0.0;
        }
        (self.probes_lost + self.probes_no_session) as f64 / resolved as f64
    }
}

/// The `n` worst peers: no session first, then most loss, then highest
/// maximum RTT.
pub fn worst_peers(peers: &[PeerResult], n: usize) -> Vec<&PeerResult> {
    let mut v: Vec<&PeerResult> = peers.iter().collect();
    v.sort_by(|a, b| {
        let key = |p: &PeerResult| {
            (
                p.handshake_ms.is_some(),
                -p.loss(),
                -p.rtt_max_ms.unwrap_or(0.0),
            )
        };
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            .then(ka.2.total_cmp(&kb.2))
            .then(a.index.cmp(&b.index))
    });
    v.truncate(n);
    v
}

/// A straight line fitted to points by least squares: `y = intercept +
/// slope * x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineFit {
    pub slope: f64,
    pub intercept: f64,
}

impl LineFit {
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// The least-squares line through `points` (x, y). None with fewer than
/// two points or when every x is the same.
pub fn least_squares(points: &[(f64, f64)]) -> Option<LineFit> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    // Centred sums: no cancellation when x is large (seconds into a 72 h
    // run) and y is large (bytes).
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 || !sxx.is_finite() {
        return None;
    }
    let slope = sxy / sxx;
    Some(LineFit {
        slope,
        intercept: my - slope * mx,
    })
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
