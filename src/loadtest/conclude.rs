//! After the workers stop: the gate summary, the handshake and soak
//! verdicts, the text or JSON output, and the HTML report.
use super::monitor::Monitor;
use super::output::{self, HandshakeSummary, Verdict};
use super::soak::{self, Interval, SoakLimits, SoakVerdict};
use super::stats::{gate_summary, Counters, PeerResult, Stats};
use super::{page, LoadtestArgs, EXIT_FAIL, EXIT_PASS};
use crate::gates::table::{format_number, group_thousands};
use crate::gates::{Report, Summary};
use serde::Serialize;

#[derive(Serialize)]
struct RttJson {
    min: Option<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    pass: bool,
    stopped_early: bool,
    peers_configured: usize,
    rate_per_peer: f64,
    ramp_s: f64,
    duration_s: f64,
    elapsed_s: f64,
    steady_s: f64,
    gate: &'a Report,
    summary: &'a Summary,
    handshakes: &'a HandshakeSummary,
    counters: &'a Counters,
    rtt_ms: RttJson,
    intervals: &'a [Interval],
    soak: &'a SoakVerdict,
    target_pid: Option<u32>,
    peers: &'a [PeerResult],
}

/// How the run went, for [`conclude`].
pub struct Outcome<'a> {
    pub stats: Stats,
    pub results: Vec<PeerResult>,
    pub monitor: Monitor<'a>,
    /// Probing time since the start, and after the ramp (seconds).
    pub elapsed_s: f64,
    pub steady_s: f64,
    pub stopped_early: bool,
    pub header: &'a str,
    pub threads: usize,
}

/// Prints the verdict (text or JSON), writes the report; returns the exit code.
pub fn conclude(a: &LoadtestArgs, o: Outcome) -> Result<i32, String> {
    let c = o.stats.counters;
    let mut counted = c;
    // Throughput is measured after the ramp; a run stopped during the ramp
    // falls back to everything it did.
    let span = if o.steady_s >= 1.0 {
        o.steady_s
    } else {
        counted.steady_answered = c.probes_answered;
        o.elapsed_s.max(1e-3)
    };
    let summary = gate_summary(&counted, &o.stats.rtt, o.elapsed_s, span);
    let gate_report = output::evaluate_gate(o.monitor.gates_cfg, o.monitor.gate, &summary);
    let hs = output::handshake_summary(
        &c,
        &o.stats.handshake,
        &o.results,
        a.ramp.as_secs_f64(),
        a.handshake_deadline.as_secs_f64(),
    );
    let limits = SoakLimits {
        memory_growth: a.mem_growth / 100.0,
        memory_slope: a.mem_slope / 100.0,
        fd_slack: a.fd_slack,
        warmup: a
            .warmup
            .unwrap_or_else(|| soak::default_warmup(a.ramp, a.interval)),
    };
    let soak_v = soak::verdict(&o.monitor.intervals, &o.monitor.samples, &limits);
    let verdict = Verdict {
        report: &gate_report,
        handshakes: &hs,
        soak: &soak_v,
        counters: &c,
        stats: &o.stats,
        load_line: format!(
            "Load: {} concurrent WireGuard peers, {}/s probes each",
            group_thousands(&a.peers.to_string()),
            a.rate
        ),
        duration_line: format!(
            "Duration: {} seconds (after a {} s ramp)",
            format_number(o.steady_s.max(0.0)),
            a.ramp.as_secs_f64()
        ),
        stopped_early: o.stopped_early,
        elapsed_s: o.elapsed_s,
    };
    let text = output::render_text(&verdict);
    let pass = verdict.pass();
    if a.json {
        let r = &o.stats.rtt;
        let q = |x: f64| r.quantile(x).map(|s| s * 1e3);
        let doc = JsonOut {
            pass,
            stopped_early: o.stopped_early,
            peers_configured: a.peers,
            rate_per_peer: a.rate,
            ramp_s: a.ramp.as_secs_f64(),
            duration_s: a.duration.as_secs_f64(),
            elapsed_s: o.elapsed_s,
            steady_s: o.steady_s,
            gate: &gate_report,
            summary: &summary,
            handshakes: &hs,
            counters: &c,
            rtt_ms: RttJson {
                min: r.min().map(|s| s * 1e3),
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: r.max().map(|s| s * 1e3),
                mean: r.mean().map(|s| s * 1e3),
            },
            intervals: &o.monitor.intervals,
            soak: &soak_v,
            target_pid: o.monitor.target_pid,
            peers: &o.results,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
    } else {
        print!("{text}");
        let worst = super::stats::worst_peers(&o.results, 3);
        if worst
            .iter()
            .any(|p| p.loss() > 0.0 || p.handshake_ms.is_none())
        {
            println!("Worst peers:");
            for p in worst {
                println!(
                    "  #{} {}: handshake {}, {} of {} probes failed, RTT max {}",
                    p.index,
                    p.address,
                    p.handshake_ms
                        .map_or("none".into(), |h| format!("{h:.1}ms")),
                    p.probes_lost + p.probes_no_session,
                    p.probes_answered + p.probes_lost + p.probes_no_session,
                    p.rtt_max_ms.map_or("-".into(), |m| format!("{m:.2}ms")),
                );
            }
        }
    }
    if let Some(path) = &a.report {
        let params = vec![
            ("Run".to_string(), o.header.to_string()),
            (
                "Target process".to_string(),
                o.monitor
                    .target_pid
                    .map_or("unknown".into(), |p| p.to_string()),
            ),
            (
                "Probe timeout".to_string(),
                format!("{} s", a.probe_timeout.as_secs_f64()),
            ),
            ("Worker threads".to_string(), o.threads.to_string()),
        ];
        let page = page::html(&page::Page {
            title: "PhantomMesh load test",
            pass,
            gate: &gate_report,
            gate_notes: &[verdict.load_line.clone(), verdict.duration_line.clone()],
            details: &output::render_details(&verdict),
            params: &params,
            intervals: &o.monitor.lines,
            stats: &o.stats,
            samples: &o.monitor.samples,
            soak: &soak_v,
        });
        std::fs::write(path, page).map_err(|e| format!("{}: {e}", path.display()))?;
        if !a.json {
            println!("Report: {}", path.display());
        }
    }
    Ok(if pass { EXIT_PASS } else { EXIT_FAIL })
}
