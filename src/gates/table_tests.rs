use super::*;
use crate::gates::{evaluate, GatesConfig, Resources, Summary};

fn runbook_report(rps: f64) -> Report {
    let mut s = Summary {
        window_seconds: 30.0,
        span_seconds: 30.0,
        attempts: 3587,
        successes: 3587,
        packets: 3587,
        requests: 3587,
        latency_samples: 3587,
        p50_seconds: Some(0.00732),
        p99_seconds: Some(0.01384),
        ..Summary::default()
    };
    s.derive_rates();
    s.requests_per_second = Some(rps);
    let r = Resources {
        memory: Some(0.35),
        cpu: Some(0.8525),
    };
    evaluate(
        &GatesConfig::default(),
        &s,
        &r,
        &[("tun", true), ("uapi", false)],
    )
}

/// The runbook's Gate 2 rows, verbatim (its throughput row says
/// "Baseline" / "Excellent" where a configured baseline gives numbers).
const RUNBOOK_ROWS: &str = "\
Metric                  Target      Actual     Status    Margin
──────────────────────────────────────────────────────────────
Success Rate            ≥99%        100%       ✅ PASS   +1%
Error Rate              ≤1%         0%         ✅ PASS   -1%
P50 Latency             ≤100ms      7.32ms     ✅ PASS   92.7%
P99 Latency             ≤200ms      13.84ms    ✅ PASS   93.1%
";

#[test]
fn gate2_table_matches_the_runbook() {
    let report = runbook_report(119.57);
    let table = render_table(
        report.gate("performance").unwrap(),
        &["Load: 1,000 concurrent users", "Duration: 30 seconds"],
    );
    let want = format!(
        "{RUNBOOK_ROWS}\
Throughput              ≥100/s      119.57/s   ✅ PASS   19.6%

Load: 1,000 concurrent users
Duration: 30 seconds
"
    );
    assert_eq!(table, want);
}

#[test]
fn failing_table_with_no_data_and_health_note() {
    let mut report = runbook_report(119.57);
    let tech = report
        .gates
        .iter_mut()
        .find(|g| g.name == "technical")
        .unwrap();
    // Turn P99 into "no data" and the error rate into a small non-zero one.
    let p99 = tech
        .metrics
        .iter_mut()
        .find(|m| m.name == "p99_latency")
        .unwrap();
    p99.actual = None;
    p99.margin = None;
    p99.pass = false;
    let err = tech
        .metrics
        .iter_mut()
        .find(|m| m.name == "error_rate")
        .unwrap();
    err.actual = Some(0.05);
    let table = render_table(tech, &[]);
    let want = "\
Metric                  Target      Actual     Status    Margin
──────────────────────────────────────────────────────────────
Error Rate              <0.1%       0.05%      ✅ PASS   -0.05%
P99 Latency             <200ms      no data    ❌ FAIL   -
Success Rate            >99%        100%       ✅ PASS   +1%
Memory Usage            <80%        35%        ✅ PASS   -45%
CPU Usage               <80%        85.25%     ❌ FAIL   +5.25%
Health Checks           All         1/2        ❌ FAIL   -

Health Checks: failing: uapi
";
    assert_eq!(table, want);
}

#[test]
fn wide_values_widen_their_column_and_the_rule() {
    let report = runbook_report(1_234_567.891);
    let table = render_table(report.gate("performance").unwrap(), &[]);
    let lines: Vec<&str> = table.lines().collect();
    // "1,234,567.89/s" is 14 columns: the Actual column grows from 11 to 16.
    assert_eq!(
        lines[0],
        "Metric                  Target      Actual          Status    Margin"
    );
    assert_eq!(lines[1].chars().count(), 67);
    assert!(lines[1].chars().all(|c| c == '─'));
    assert_eq!(
        lines[6],
        "Throughput              ≥100/s      1,234,567.89/s  ✅ PASS   1234467.9%"
    );
    assert_eq!(
        lines[2],
        "Success Rate            ≥99%        100%            ✅ PASS   +1%"
    );
}

#[test]
fn report_rendering_has_verdicts_and_window() {
    let report = runbook_report(119.57);
    let text = render_report(&report);
    assert!(
        text.starts_with("Gate 2: Performance Validation ✅ PASSED\n\nMetric"),
        "{text}"
    );
    assert!(
        text.contains("\nTechnical Success Criteria ❌ FAILED\n\n"),
        "{text}"
    );
    assert!(text.contains(
        "Window: 30 seconds (3,587 attempts, 3,587 latency samples, 3,587 packets, 3,587 requests)\n"
    ));
    assert!(text.ends_with("Result: FAIL\n"));
}

#[test]
fn optional_no_data_row() {
    let text = "[[gate]]\nname = \"g\"\nthroughput = \">= 10/s\"\noptional = [\"throughput\"]\n";
    let cfg = GatesConfig::parse(text, "t").unwrap();
    let r = evaluate(
        &cfg,
        &Summary::default(),
        &Resources::default(),
        &[("a", true)],
    );
    let table = render_table(&r.gates[0], &[]);
    assert_eq!(
        table.lines().nth(2).unwrap(),
        "Throughput              ≥10/s       no data    ✅ PASS   optional"
    );
}

#[test]
fn numbers() {
    let cases = [
        (7.32, "7.32"),
        (100.0, "100"),
        (0.0, "0"),
        (-1.0, "-1"),
        (0.004, "0.004"),
        (0.00012345, "0.000123"),
        (-0.001, "-0.001"),
        (0.0456, "0.05"),
        (119.57, "119.57"),
        (1234.5, "1,234.5"),
        (99.999, "100"),
        (1_000_000.0, "1,000,000"),
        (f64::NAN, "n/a"),
    ];
    for (v, want) in cases {
        assert_eq!(format_number(v), want, "{v}");
    }
    assert_eq!(group_thousands("1000"), "1,000");
    assert_eq!(group_thousands("999"), "999");
    assert_eq!(group_thousands("1234567"), "1,234,567");
}

#[test]
fn mesh_gate_rows() {
    let r = runbook_report(119.57);
    let mesh = r.gate("mesh").unwrap();
    let t = render_table(mesh, &[]);
    assert!(
        t.contains("Mesh Peers Healthy      ≥99%        n/a        ✅ PASS   -\n"),
        "{t}"
    );
    assert!(!t.contains("not applicable"), "no note for n/a: {t}");
    let s = Summary {
        ..Summary::default()
    };
    let m = crate::gates::MeshHealth {
        store_up: true,
        members: 32,
        healthy: 31,
        unhealthy: vec!["node-7: no answered probe".into()],
    };
    let cfg = GatesConfig::default();
    let r = crate::gates::evaluate_with_mesh(
        &cfg,
        &s,
        &Resources::default(),
        &[("tun", true)],
        Some(&m),
    );
    let t = render_table(r.gate("mesh").unwrap(), &[]);
    assert!(
        t.contains("Mesh Peers Healthy      ≥99%        96.88%     ❌ FAIL   -2.12%\n"),
        "{t}"
    );
    assert!(
        t.contains("\nMesh Peers Healthy: 1 of 32 members unhealthy: node-7: no answered probe\n"),
        "{t}"
    );
}
