//! The run's verdict and how it is shown: the runbook's Gate 2 table (the
//! gates library's own renderer), the handshake and soak lines, interval
//! lines, and the JSON document. Pure.
use super::soak::{self, mib, Interval, SoakVerdict};
use super::stats::{gate_summary, Counters, PeerResult, Stats};
use crate::gates::table::{format_number, group_thousands};
use crate::gates::{
    evaluate, render_table, GateSpec, GatesConfig, Histogram, MetricKind, Report, Resources,
    Summary,
};
use serde::Serialize;

/// Handshake results against the "all done within D of the ramp's end"
/// requirement.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HandshakeSummary {
    pub peers: u64,
    pub started: u64,
    pub established: u64,
    pub percent: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Seconds after the ramp's end when the last first handshake completed
    /// (negative: before it ended).
    pub last_after_ramp_s: Option<f64>,
    pub deadline_s: f64,
    pub cookie_replies: u64,
    pub pass: bool,
}

pub fn handshake_summary(
    c: &Counters,
    h: &Histogram,
    peers: &[PeerResult],
    ramp_s: f64,
    deadline_s: f64,
) -> HandshakeSummary {
    let last = peers
        .iter()
        .filter_map(|p| p.established_at_s)
        .reduce(f64::max);
    let ms = |v: Option<f64>| v.map(|s| s * 1e3);
    let started = c.peers_started;
    let established = c.peers_established;
    let last_after_ramp_s = last.map(|l| l - ramp_s);
    HandshakeSummary {
        peers: peers.len() as u64,
        started,
        established,
        percent: if started == 0 {
            0.0
        } else {
            established as f64 * 100.0 / started as f64
        },
        p50_ms: ms(h.quantile(0.5)),
        p99_ms: ms(h.quantile(0.99)),
        max_ms: ms(h.max()),
        last_after_ramp_s,
        deadline_s,
        cookie_replies: c.cookie_replies_received,
        pass: started > 0
            && established == started
            && last_after_ramp_s.is_some_and(|l| l <= deadline_s),
    }
}

/// Evaluates `gate` of `cfg` on a summary with the same code as `/gates`.
/// The resources and health inputs are empty: Gate 2 measures neither.
pub fn evaluate_gate(cfg: &GatesConfig, gate: &GateSpec, summary: &Summary) -> Report {
    let one = GatesConfig {
        window: cfg.window,
        gates: vec![gate.clone()],
    };
    evaluate(&one, summary, &Resources::default(), &[] as &[(&str, bool)])
}

/// Whether an interval's probes stay within the gate's success and error
/// limits. Intervals without probes are not judged.
pub fn interval_passes(
    cfg: &GatesConfig,
    gate: &GateSpec,
    c: &Counters,
    rtt: &Histogram,
    length_s: f64,
) -> bool {
    if c.probes_resolved() == 0 {
        return true;
    }
    let s = gate_summary(c, rtt, length_s, length_s);
    let report = evaluate_gate(cfg, gate, &s);
    report.gates[0]
        .metrics
        .iter()
        .filter(|m| {
            matches!(
                MetricKind::from_key(&m.name),
                Some(MetricKind::SuccessRate | MetricKind::ErrorRate)
            )
        })
        .all(|m| m.pass)
}

pub fn build_interval(
    c: &Counters,
    rtt: &Histogram,
    end_s: f64,
    length_s: f64,
    pass: bool,
) -> Interval {
    let resolved = c.probes_resolved();
    let failed = c.probe_failures();
    Interval {
        end_s,
        length_s,
        probes_sent: c.probes_sent,
        probes_answered: c.probes_answered,
        probes_failed: failed,
        loss_percent: if resolved == 0 {
            0.0
        } else {
            failed as f64 * 100.0 / resolved as f64
        },
        p50_ms: rtt.quantile(0.5).map(|s| s * 1e3),
        p99_ms: rtt.quantile(0.99).map(|s| s * 1e3),
        probes_per_second: if length_s > 0.0 {
            c.probes_answered as f64 / length_s
        } else {
            0.0
        },
        handshakes: c.handshakes_completed,
        target: None,
        target_cpu: None,
        pass,
    }
}

fn n(v: u64) -> String {
    group_thousands(&v.to_string())
}

fn ms_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |m| format!("{}ms", format_number(m)))
}

/// One soak interval line.
pub fn interval_line(i: &Interval) -> String {
    let mut s = format!(
        "[{:>7}] probes {} sent, {} answered, {} failed ({}%), RTT p50 {} p99 {}, {}/s, handshakes {}",
        format!("{:.0}s", i.end_s),
        n(i.probes_sent),
        n(i.probes_answered),
        n(i.probes_failed),
        format_number(i.loss_percent),
        ms_opt(i.p50_ms),
        ms_opt(i.p99_ms),
        format_number(i.probes_per_second.round()),
        n(i.handshakes),
    );
    if let Some(t) = i.target {
        s.push_str(&format!(
            ", target RSS {:.1} MiB fds {}",
            mib(t.rss_bytes),
            n(t.fds)
        ));
    }
    if let Some(c) = i.target_cpu {
        s.push_str(&format!(" CPU {:.0}%", c * 100.0));
    }
    s.push_str(if i.pass { " ✅" } else { " ❌" });
    s
}

/// Everything the final text shows besides the table.
pub struct Verdict<'a> {
    pub report: &'a Report,
    pub handshakes: &'a HandshakeSummary,
    pub soak: &'a SoakVerdict,
    pub counters: &'a Counters,
    pub stats: &'a Stats,
    pub load_line: String,
    pub duration_line: String,
    pub stopped_early: bool,
    /// Probing time, for the traffic rates.
    pub elapsed_s: f64,
}

impl Verdict<'_> {
    pub fn pass(&self) -> bool {
        self.report.pass && self.handshakes.pass && self.soak.pass
    }
}

/// The final text: Gate 2's table with its Load and Duration lines, then
/// handshakes, probes, packets, the soak verdict and the result.
pub fn render_text(v: &Verdict) -> String {
    let mut out = String::new();
    for g in &v.report.gates {
        let verdict = if g.pass { "✅ PASSED" } else { "❌ FAILED" };
        out.push_str(&format!("{} {verdict}\n\n", g.title));
        out.push_str(&render_table(g, &[&v.load_line, &v.duration_line]));
        out.push('\n');
    }
    out.push_str(&render_details(v));
    out
}

/// The final text after the gate's table: handshakes, probes, packets,
/// the target and soak verdict, and the result.
pub fn render_details(v: &Verdict) -> String {
    let mut out = String::new();
    let h = v.handshakes;
    let last = h
        .last_after_ramp_s
        .map_or("none".to_string(), |l| format!("{l:.2}s after ramp end"));
    out.push_str(&format!(
        "Handshakes: {}/{} completed ({}%), P50 {} P99 {} max {}, last {} (limit {}s), {} cookie replies {}\n",
        n(h.established),
        n(h.started),
        format_number(h.percent),
        ms_opt(h.p50_ms),
        ms_opt(h.p99_ms),
        ms_opt(h.max_ms),
        last,
        format_number(h.deadline_s),
        n(h.cookie_replies),
        if h.pass { "✅" } else { "❌" },
    ));
    let c = v.counters;
    let r = &v.stats.rtt;
    let q = |x: f64| ms_opt(r.quantile(x).map(|s| s * 1e3));
    out.push_str(&format!(
        "Probes: {} sent, {} answered, {} lost, {} without a session, {} unmatched replies; RTT min {} P50 {} P90 {} P99 {} P99.9 {} max {}\n",
        n(c.probes_sent),
        n(c.probes_answered),
        n(c.probes_lost),
        n(c.probes_no_session),
        n(c.replies_unmatched),
        ms_opt(r.min().map(|s| s * 1e3)),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        ms_opt(r.max().map(|s| s * 1e3)),
    ));
    out.push_str(&format!(
        "Packets: sent {} initiations, {} data, {} keepalives; received {} responses, {} cookie replies, {} data, {} keepalives; {} send errors, {} receive errors\n",
        n(c.initiations_sent),
        n(c.data_sent),
        n(c.keepalives_sent),
        n(c.responses_received),
        n(c.cookie_replies_received),
        n(c.data_received),
        n(c.keepalives_received),
        n(c.send_errors),
        n(c.receive_errors),
    ));
    if c.bulk_sent > 0 {
        out.push_str(&format!(
            "Bulk: {} packets sent, {} echoed\n",
            n(c.bulk_sent),
            n(c.bulk_received)
        ));
    }
    if v.elapsed_s > 0.0 {
        let mbit = |bytes: u64| format_number(bytes as f64 * 8.0 / v.elapsed_s / 1e6);
        out.push_str(&format!(
            "Traffic: {} Mbit/s into the tunnel, {} Mbit/s out of it; {} / {} Mbit/s on the wire\n",
            mbit(c.bytes_sent),
            mbit(c.bytes_received),
            mbit(c.wire_bytes_sent),
            mbit(c.wire_bytes_received)
        ));
    }
    let s = v.soak;
    out.push_str(&soak::target_lines(s));
    out.push_str(&format!(
        "Soak: {} intervals, {} failed{}\n",
        s.intervals,
        s.failed_intervals,
        if s.pass { " ✅" } else { " ❌" }
    ));
    for f in &s.failures {
        out.push_str(&format!("  - {f}\n"));
    }
    if v.stopped_early {
        out.push_str("Stopped early (interrupted): these are the numbers so far.\n");
    }
    out.push_str(if v.pass() {
        "Result: PASS\n"
    } else {
        "Result: FAIL\n"
    });
    out
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
