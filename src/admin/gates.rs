//! The daemon's side of the go-live gates: what it feeds the measurement
//! window, once a second, from counters it keeps anyway.
//!
//! Definitions (README, "Gates"):
//! - success rate = (handshakes completed + tunnel-test probes answered) /
//!   (handshakes completed + handshakes failed + tunnel-test probes sent);
//! - error rate = packets dropped as bad (bad MAC, replay, failed
//!   decryption, malformed, source check, no session, queue full) /
//!   (packets received + packets sent + those drops). Drops that are policy,
//!   not faults (no route for a destination, rate limiting under load), are
//!   not errors;
//! - latency (P50/P99) = tunnel-test probe round trips (periodic self tests
//!   and on-demand tests);
//! - throughput = tunnel packets per second, received plus sent.
use super::AdminState;
use crate::device::snapshot::Counters;
use crate::gates::{evaluate_with_mesh, GatesConfig, Report, Sampler, Window};
use parking_lot::Mutex;
use std::time::Instant;

#[derive(Default, Clone, Copy)]
struct Totals {
    completed: u64,
    failed: u64,
    packets: u64,
    errors: u64,
    bytes: u64,
}

fn totals(s: &Counters) -> Totals {
    let errors = s.drop_bad_mac
        + s.drop_replay
        + s.drop_decrypt
        + s.drop_malformed
        + s.drop_source_check
        + s.drop_no_session
        + s.drop_queue_full;
    Totals {
        completed: s.handshakes_completed,
        failed: s.handshakes_failed,
        packets: s.rx_packets + s.tx_packets + errors,
        errors,
        bytes: s.rx_bytes + s.tx_bytes,
    }
}

pub struct GateState {
    pub cfg: GatesConfig,
    pub window: Window,
    sampler: Mutex<Sampler>,
    last: Mutex<Totals>,
}

impl GateState {
    pub fn new(cfg: GatesConfig, stats: &Counters) -> GateState {
        let window = Window::new(cfg.window, Instant::now());
        GateState {
            cfg,
            window,
            sampler: Mutex::new(Sampler::new()),
            last: Mutex::new(totals(stats)),
        }
    }

    /// Moves the counters' growth since the last tick into the window.
    pub fn tick(&self, stats: &Counters, now: Instant) {
        let cur = totals(stats);
        let prev = std::mem::replace(&mut *self.last.lock(), cur);
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let (ok, bad) = (d(cur.completed, prev.completed), d(cur.failed, prev.failed));
        if ok + bad > 0 {
            self.window.record_attempts(now, ok + bad, ok);
        }
        let (packets, errors) = (d(cur.packets, prev.packets), d(cur.errors, prev.errors));
        self.window.record_packets(now, packets, errors);
        self.window
            .record_requests(now, packets - errors, d(cur.bytes, prev.bytes));
    }

    /// Records a finished tunnel test: probes as attempts, RTTs as latency.
    pub fn record_test(&self, sent: usize, received: usize, rtts: &[std::time::Duration]) {
        let now = Instant::now();
        if sent > 0 {
            self.window
                .record_attempts(now, sent as u64, received as u64);
        }
        let secs: Vec<f64> = rtts.iter().map(|d| d.as_secs_f64()).collect();
        self.window.record_latencies(now, &secs);
    }

    /// Evaluates every gate now.
    pub fn report(&self, st: &AdminState) -> Report {
        let now = Instant::now();
        let health: Vec<(String, bool)> = super::health::Kind::Health
            .checks_for(st)
            .into_iter()
            .map(|n| (n.to_string(), super::health::check(st, n).is_ok()))
            .collect();
        let resources = self.sampler.lock().sample(now);
        let mesh = st.mesh_view().map(|v| super::mesh::health(&v));
        evaluate_with_mesh(
            &self.cfg,
            &self.window.summary(now),
            &resources,
            &health,
            mesh.as_ref(),
        )
    }
}
