use super::*;
use crate::gates::{GatesConfig, Histogram};
use crate::loadtest::output::evaluate_gate;
use crate::loadtest::soak::{verdict, SoakLimits};
use crate::loadtest::stats::{gate_summary, Counters};
use std::time::Duration;

fn stats() -> Stats {
    let mut s = Stats::new(Duration::from_secs(10));
    // (bulk_sent stays 0: three timeline charts.)
    for i in 0..50u64 {
        let at = Duration::from_millis(i * 200);
        s.count(at, |c| {
            c.probes_answered += 10;
            c.peers_established += u64::from(i < 5);
            c.bytes_sent += 1000;
        });
        s.record_rtt(at, 0.0005 + i as f64 * 1e-5);
    }
    s.count(Duration::from_secs(3), |c| c.probes_lost += 2);
    s
}

/// Gate 2 (the built-in targets) on a run whose probe RTTs are about
/// `rtt_ms`: passes at 1 ms, fails at 150 ms (P50 and P99).
fn gate(rtt_ms: f64) -> Report {
    let cfg = GatesConfig::default();
    let spec = cfg.gate("performance").unwrap().clone();
    let c = Counters {
        peers_started: 1000,
        peers_established: 1000,
        probes_sent: 750_000,
        probes_answered: 750_000,
        steady_answered: 600_000,
        ..Counters::default()
    };
    let mut h = Histogram::new();
    for i in 0..1000 {
        h.record(rtt_ms / 1e3 * (1.0 + i as f64 / 1000.0));
    }
    evaluate_gate(&cfg, &spec, &gate_summary(&c, &h, 35.0, 30.0))
}

fn samples() -> Vec<(f64, ProcSample)> {
    (0..=20)
        .map(|i| {
            let mib = if i < 3 { 11.0 } else { 12.2 };
            let s = ProcSample {
                rss_bytes: (mib * 1024.0 * 1024.0) as u64,
                fds: 10,
                cpu_ms: 0,
            };
            (i as f64 * 60.0, s)
        })
        .collect()
}

fn page(report: &Report, pass: bool, samples: &[(f64, ProcSample)], soak: &SoakVerdict) -> String {
    let st = stats();
    html(&Page {
        title: "Run <1>",
        pass,
        gate: report,
        gate_notes: &["Load: 1,000 concurrent WireGuard peers".into()],
        details: "Handshakes: 5/5 ✅\nSoak: 1 intervals, 0 failed ✅\nResult: PASS\n",
        params: &[("Peers".into(), "1,000".into())],
        intervals: &[
            "[    60s] probes 10 sent ✅".into(),
            "[   120s] probes 9 sent ❌".into(),
        ],
        stats: &st,
        samples,
        soak,
    })
}

#[test]
fn the_page_is_self_contained_with_text_badges_and_no_emoji() {
    let r = gate(1.0);
    let p = page(&r, true, &[], &SoakVerdict::default());
    assert!(p.starts_with("<!DOCTYPE html>"));
    assert!(p.contains("<p class=\"verdict\">Result: <span class=\"badge pass\">PASS</span></p>"));
    assert!(p.contains("Run &lt;1&gt;"));
    assert!(
        !p.contains("<script")
            && !p.contains("src=")
            && !p.contains("href=")
            && !p.contains("url("),
        "nothing external"
    );
    // No emoji anywhere: the status symbols became badges.
    let emoji: Vec<char> = p
        .chars()
        .filter(|c| matches!(*c as u32, 0x2600..=0x27BF | 0x1F000..=0x1FAFF))
        .collect();
    assert!(emoji.is_empty(), "{emoji:?}");
    assert!(p.contains("[    60s] probes 10 sent <span class=\"badge pass\">PASS</span>"));
    assert!(p.contains("[   120s] probes 9 sent <span class=\"badge fail\">FAIL</span>"));
    assert!(p.contains("Handshakes: 5/5 <span class=\"badge pass\">PASS</span>"));
    // The gate is an HTML table in a scroll box, with one row per metric.
    let table = p
        .split("<table class=\"gate\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(p.contains("<div class=\"scroll\"><table class=\"gate\">"));
    assert_eq!(table.matches("<tr><td>").count(), r.gates[0].metrics.len());
    for m in &r.gates[0].metrics {
        let [label, target, actual, margin] = metric_cells(m);
        let row = format!(
            "<tr><td>{label}</td><td class=\"n\">{}</td><td class=\"n\">{actual}</td><td>{}</td><td class=\"n\">{margin}</td></tr>",
            esc(&target),
            badge(true)
        );
        assert!(table.contains(&row), "{row} not in {table}");
    }
    assert!(
        table.contains("<tr><td>P99 Latency</td><td class=\"n\">≤200ms</td>"),
        "{table}"
    );
    assert!(p.contains("<p>Load: 1,000 concurrent WireGuard peers</p>"));
    assert!(p.contains("width=device-width"));
    // Charts: histogram and three timelines; no memory chart without samples.
    assert_eq!(p.matches("<svg").count(), 4);
    assert_eq!(p.matches("</svg>").count(), 4);
    assert!(!p.contains("Target memory"));
}

#[test]
fn a_failing_gate_shows_fail_badges_and_the_memory_chart_comes_first() {
    let r = gate(150.0);
    assert!(!r.pass);
    let samples = samples();
    let limits = SoakLimits {
        memory_growth: 0.10,
        memory_slope: 0.05,
        fd_slack: 2,
        warmup: Duration::from_secs(135),
    };
    let v = verdict(&[], &samples, &limits);
    let p = page(&r, false, &samples, &v);
    assert!(p.contains("<p class=\"verdict\">Result: <span class=\"badge fail\">FAIL</span></p>"));
    assert!(
        p.contains("Gate 2: Performance Validation <span class=\"badge fail\">FAIL</span></h2>"),
        "{p}"
    );
    let p99 = p
        .split("<tr><td>P99 Latency</td>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(p99.contains(badge(false)), "{p99}");
    assert_eq!(p.matches("<svg").count(), 5);
    let charts = p.split("<h2>Charts</h2>").nth(1).unwrap();
    assert!(charts.trim_start().starts_with("<svg") && charts.contains("Target memory (RSS)"));
    assert!(charts.find("Target memory").unwrap() < charts.find("Probe RTT distribution").unwrap());
    assert!(charts.contains("warm-up end 135s") && charts.contains("class=\"fit\""));
}

#[test]
fn pre_text_escapes_and_turns_status_emoji_into_badges() {
    assert_eq!(
        pre_text("a <b> ✅ PASSED, x ❌ FAIL & ✅"),
        "a &lt;b&gt; <span class=\"badge pass\">PASS</span>, x <span class=\"badge fail\">FAIL</span> &amp; <span class=\"badge pass\">PASS</span>"
    );
}
