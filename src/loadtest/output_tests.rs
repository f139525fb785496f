use super::*;
use crate::loadtest::soak::SoakVerdict;

fn run_counters(lost: u64) -> Counters {
    Counters {
        bytes_sent: 4_375_000,
        peers_started: 1000,
        peers_established: 1000,
        probes_sent: 750_000,
        probes_answered: 750_000 - lost,
        probes_lost: lost,
        steady_answered: 600_000,
        ..Counters::default()
    }
}

fn rtts(ms: f64) -> Histogram {
    let mut h = Histogram::new();
    for i in 0..1000 {
        h.record(ms / 1e3 * (1.0 + i as f64 / 1000.0));
    }
    h
}

fn peers_at(times: &[f64]) -> Vec<PeerResult> {
    times
        .iter()
        .map(|&t| PeerResult {
            established_at_s: Some(t),
            ..PeerResult::default()
        })
        .collect()
}

#[test]
fn handshake_deadline_is_judged_from_the_ramp_end() {
    let c = run_counters(0);
    let h = rtts(2.0);
    let ok = handshake_summary(&c, &h, &peers_at(&[0.1, 4.9, 6.5]), 5.0, 2.0);
    assert!(ok.pass);
    assert!((ok.last_after_ramp_s.unwrap() - 1.5).abs() < 1e-9);
    assert_eq!(ok.percent, 100.0);
    let late = handshake_summary(&c, &h, &peers_at(&[0.1, 7.5]), 5.0, 2.0);
    assert!(!late.pass);
    let missing = Counters {
        peers_established: 999,
        ..c
    };
    let m = handshake_summary(&missing, &h, &peers_at(&[1.0]), 5.0, 2.0);
    assert!(!m.pass);
    assert!((m.percent - 99.9).abs() < 1e-9);
    assert!(
        !handshake_summary(&Counters::default(), &h, &[], 5.0, 2.0).pass,
        "nothing started is no pass"
    );
}

#[test]
fn gate_is_evaluated_with_the_gates_library() {
    let cfg = GatesConfig::default();
    let mut gate = cfg.gate("performance").unwrap().clone();
    let s = gate_summary(&run_counters(0), &rtts(1.0), 35.0, 30.0);
    let r = evaluate_gate(&cfg, &gate, &s);
    assert!(r.pass, "{}", r.to_json());
    assert_eq!(r.gates.len(), 1);
    crate::loadtest::setup::override_target(&mut gate, MetricKind::P99Latency, "0.001ms").unwrap();
    let r = evaluate_gate(&cfg, &gate, &s);
    assert!(!r.pass);
    let p99 = r.gates[0]
        .metrics
        .iter()
        .find(|m| m.name == "p99_latency")
        .unwrap();
    assert!(!p99.pass && p99.margin.unwrap() < 0.0);
}

#[test]
fn intervals_are_judged_on_loss_only() {
    let cfg = GatesConfig::default();
    let mut gate = cfg.gate("performance").unwrap().clone();
    crate::loadtest::setup::override_target(&mut gate, MetricKind::SuccessRate, "99.9%").unwrap();
    crate::loadtest::setup::override_target(&mut gate, MetricKind::P99Latency, "0.001ms").unwrap();
    // A slow but lossless interval passes: latency is the run's gate.
    assert!(interval_passes(
        &cfg,
        &gate,
        &run_counters(0),
        &rtts(50.0),
        60.0
    ));
    // 0.2 % loss fails a 99.9 % success target.
    assert!(!interval_passes(
        &cfg,
        &gate,
        &run_counters(1_500),
        &rtts(1.0),
        60.0
    ));
    assert!(
        interval_passes(&cfg, &gate, &Counters::default(), &Histogram::new(), 60.0),
        "no probes, not judged"
    );
    let iv = build_interval(&run_counters(1_500), &rtts(1.0), 120.0, 60.0, false);
    assert!((iv.loss_percent - 0.2).abs() < 1e-9);
    assert_eq!(iv.probes_failed, 1_500);
    let line = interval_line(&iv);
    assert!(
        line.starts_with("[   120s] probes 750,000 sent, 748,500 answered, 1,500 failed (0.2%)"),
        "{line}"
    );
    assert!(line.ends_with("❌"));
    let mut iv = iv;
    iv.target = Some(crate::loadtest::soak::ProcSample {
        rss_bytes: 3 << 20,
        fds: 1_012,
        cpu_ms: 0,
    });
    iv.target_cpu = Some(0.456);
    iv.pass = true;
    assert!(
        interval_line(&iv).ends_with(", target RSS 3.0 MiB fds 1,012 CPU 46% ✅"),
        "{}",
        interval_line(&iv)
    );
}

#[test]
fn final_text_has_the_runbook_table_and_the_verdicts() {
    let cfg = GatesConfig::default();
    let gate = cfg.gate("performance").unwrap().clone();
    let c = run_counters(0);
    let mut stats = crate::loadtest::stats::Stats::new(std::time::Duration::from_secs(40));
    stats.counters = c;
    stats.rtt = rtts(1.0);
    let s = gate_summary(&c, &stats.rtt, 35.0, 30.0);
    let r = evaluate_gate(&cfg, &gate, &s);
    let hs = handshake_summary(&c, &rtts(3.0), &peers_at(&[5.2]), 5.0, 2.0);
    let soak = SoakVerdict {
        pass: true,
        intervals: 1,
        ..SoakVerdict::default()
    };
    let v = Verdict {
        report: &r,
        handshakes: &hs,
        soak: &soak,
        counters: &c,
        stats: &stats,
        load_line: "Load: 1,000 concurrent WireGuard peers".into(),
        duration_line: "Duration: 30 seconds".into(),
        stopped_early: false,
        elapsed_s: 35.0,
    };
    let text = render_text(&v);
    for want in [
        "Gate 2: Performance Validation ✅ PASSED",
        "Success Rate",
        "Error Rate",
        "P50 Latency",
        "P99 Latency",
        "Throughput              ≥100/s      20,000/s",
        "Load: 1,000 concurrent WireGuard peers\nDuration: 30 seconds\n",
        "Handshakes: 1,000/1,000 completed (100%)",
        "0.20s after ramp end",
        "Traffic: 1 Mbit/s into the tunnel, 0 Mbit/s out of it",
        "Result: PASS",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let failing = SoakVerdict {
        pass: false,
        failures: vec!["target memory grew".into()],
        ..SoakVerdict::default()
    };
    let v = Verdict {
        soak: &failing,
        stopped_early: true,
        ..v
    };
    let text = render_text(&v);
    assert!(!v.pass());
    assert!(
        text.contains("  - target memory grew")
            && text.contains("Stopped early")
            && text.ends_with("Result: FAIL\n")
    );
}
