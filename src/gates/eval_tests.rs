use super::*;
use crate::gates::report::Unit;

/// The runbook's recorded Gate 2 run, with healthy resources and checks.
fn runbook_summary() -> Summary {
    let mut s = Summary {
        window_seconds: 30.0,
        span_seconds: 30.0,
        attempts: 3587,
        successes: 3587,
        packets: 3587,
        packet_errors: 0,
        requests: 3587,
        bytes: 0,
        latency_samples: 3587,
        p50_seconds: Some(0.00732),
        p99_seconds: Some(0.01384),
        ..Summary::default()
    };
    s.derive_rates();
    s.requests_per_second = Some(119.57);
    s
}

fn good_resources() -> Resources {
    Resources {
        memory: Some(0.35),
        cpu: Some(0.20),
    }
}

fn good_health() -> Vec<(String, bool)> {
    vec![("tun".into(), true), ("uapi".into(), true)]
}

fn cfg() -> GatesConfig {
    GatesConfig::default()
}

fn metric<'a>(r: &'a Report, gate: &str, name: &str) -> &'a MetricReport {
    r.gate(gate)
        .unwrap()
        .metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap()
}

fn failing(r: &Report) -> Vec<String> {
    r.gates
        .iter()
        .flat_map(|g| {
            g.metrics
                .iter()
                .filter(|m| !m.pass)
                .map(move |m| format!("{}.{}", g.name, m.name))
        })
        .collect()
}

#[test]
fn runbook_run_passes_with_runbook_margins() {
    let r = evaluate(
        &cfg(),
        &runbook_summary(),
        &good_resources(),
        &good_health(),
    );
    assert!(r.pass, "{:?}", failing(&r));
    assert!(r.gates.iter().all(|g| g.pass));
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
    let p50 = metric(&r, "performance", "p50_latency");
    assert!(close(p50.actual, 7.32));
    assert!(close(p50.margin, 0.9268)); // the runbook's 92.7 %
    assert!(close(
        metric(&r, "performance", "p99_latency").margin,
        0.9308
    )); // 93.1 %
    assert!(close(
        metric(&r, "performance", "success_rate").actual,
        100.0
    ));
    assert!(close(
        metric(&r, "performance", "success_rate").margin,
        1.0 / 99.0
    ));
    assert!(close(metric(&r, "performance", "error_rate").margin, 1.0));
    assert!(close(
        metric(&r, "performance", "throughput").margin,
        0.1957
    ));
    let h = metric(&r, "technical", "health");
    assert_eq!((h.actual, h.target.value, h.margin), (Some(2.0), 2.0, None));
    assert_eq!(r.samples.latency, 3587);
    assert_eq!(r.window_seconds, 30.0);
}

#[test]
fn each_threshold_fails_on_its_own() {
    type Tweak = Box<dyn Fn(&mut Summary, &mut Resources, &mut Vec<(String, bool)>)>;
    let cases: Vec<(Tweak, &[&str])> = vec![
        (
            Box::new(|s, _, _| s.success_rate = Some(0.989)),
            &["performance.success_rate", "technical.success_rate"],
        ),
        // Exactly 99 %: ">= 99%" passes, the strict "> 99%" does not.
        (
            Box::new(|s, _, _| s.success_rate = Some(0.99)),
            &["technical.success_rate"],
        ),
        (
            Box::new(|s, _, _| s.error_rate = Some(0.011)),
            &["performance.error_rate", "technical.error_rate"],
        ),
        (
            Box::new(|s, _, _| s.error_rate = Some(0.01)),
            &["technical.error_rate"],
        ),
        (
            Box::new(|s, _, _| s.error_rate = Some(0.001)),
            &["technical.error_rate"],
        ),
        (
            Box::new(|s, _, _| s.p50_seconds = Some(0.1001)),
            &["performance.p50_latency"],
        ),
        (Box::new(|s, _, _| s.p50_seconds = Some(0.1)), &[]),
        (
            Box::new(|s, _, _| s.p99_seconds = Some(0.2001)),
            &["performance.p99_latency", "technical.p99_latency"],
        ),
        (
            Box::new(|s, _, _| s.p99_seconds = Some(0.2)),
            &["technical.p99_latency"],
        ),
        (
            Box::new(|s, _, _| s.requests_per_second = Some(99.9)),
            &["performance.throughput"],
        ),
        (Box::new(|s, _, _| s.requests_per_second = Some(100.0)), &[]),
        (
            Box::new(|_, r, _| r.memory = Some(0.8)),
            &["technical.memory"],
        ),
        (Box::new(|_, r, _| r.memory = Some(0.799)), &[]),
        (Box::new(|_, r, _| r.cpu = Some(0.95)), &["technical.cpu"]),
        (Box::new(|_, _, h| h[1].1 = false), &["technical.health"]),
    ];
    for (i, (tweak, want)) in cases.iter().enumerate() {
        let (mut s, mut r, mut h) = (runbook_summary(), good_resources(), good_health());
        tweak(&mut s, &mut r, &mut h);
        let rep = evaluate(&cfg(), &s, &r, &h);
        assert_eq!(failing(&rep), *want, "case {i}");
        assert_eq!(rep.pass, want.is_empty(), "case {i}");
        for g in &rep.gates {
            let gate_fails = want.iter().any(|w| w.starts_with(&format!("{}.", g.name)));
            assert_eq!(g.pass, !gate_fails, "case {i} gate {}", g.name);
        }
    }
}

#[test]
fn failing_health_names_the_checks() {
    let h = vec![("tun", true), ("uapi", false), ("peers", false)];
    let r = evaluate(&cfg(), &runbook_summary(), &good_resources(), &h);
    let m = metric(&r, "technical", "health");
    assert!(!m.pass);
    assert_eq!(m.actual, Some(1.0));
    assert_eq!(m.target.value, 3.0);
    assert_eq!(m.reason.as_deref(), Some("failing: uapi, peers"));
}

#[test]
fn empty_window_fails_with_no_data() {
    let window = crate::gates::Window::new(cfg().window, std::time::Instant::now());
    let s = window.summary(std::time::Instant::now());
    let r = evaluate(
        &cfg(),
        &s,
        &Resources::default(),
        &Vec::<(String, bool)>::new(),
    );
    assert!(!r.pass);
    for g in &r.gates {
        if g.name == "mesh" {
            // Not a window measurement: without a mesh it does not apply.
            assert!(g.pass);
            continue;
        }
        assert!(!g.pass);
        for m in &g.metrics {
            assert!(!m.pass, "{} passed without data", m.name);
            assert_eq!(m.actual, None);
            assert_eq!(m.margin, None);
            assert_eq!(m.reason.as_deref(), Some(NO_DATA));
        }
    }
    assert_eq!(r.samples, SampleCounts::default());
}

#[test]
fn optional_metric_passes_without_data() {
    let text = "[[gate]]\nname = \"g\"\np99_latency = \"< 200ms\"\nthroughput = \">= 10/s\"\noptional = [\"throughput\"]\n";
    let cfg = GatesConfig::parse(text, "t").unwrap();
    let mut s = runbook_summary();
    s.requests_per_second = None;
    let r = evaluate(&cfg, &s, &good_resources(), &good_health());
    assert!(r.pass);
    let t = metric(&r, "g", "throughput");
    assert!(t.pass && t.optional);
    assert_eq!(t.reason.as_deref(), Some("no data (optional)"));
    // Optional only excuses missing data, not a bad value.
    s.requests_per_second = Some(5.0);
    assert!(!evaluate(&cfg, &s, &good_resources(), &good_health()).pass);
}

#[test]
fn exact_boundaries_survive_unit_conversion() {
    let text = "[[gate]]\nname = \"g\"\nerror_rate = \"<= 7%\"\nsuccess_rate = \">= 29%\"\np50_latency = \"<= 0.3s\"\n";
    let cfg = GatesConfig::parse(text, "t").unwrap();
    let mut s = Summary {
        packets: 100,
        packet_errors: 7,
        attempts: 100,
        successes: 29,
        p50_seconds: Some(0.3),
        ..Summary::default()
    };
    s.derive_rates();
    // 0.07 * 100.0 and 0.29 * 100.0 are not exactly 7 and 29 in f64.
    assert_ne!(s.error_rate.unwrap() * 100.0, 7.0);
    let r = evaluate(&cfg, &s, &good_resources(), &good_health());
    assert!(r.pass, "{:?}", failing(&r));
    assert_eq!(metric(&r, "g", "error_rate").actual, Some(7.0));
}

#[test]
fn margins() {
    let t = |value, op| Target {
        value,
        op,
        unit: Unit::Ms,
    };
    let m = |x: Option<f64>| (x.unwrap() * 1000.0).round() / 1000.0;
    assert_eq!(m(margin(&t(100.0, Comparison::Le), 7.32)), 0.927);
    assert_eq!(m(margin(&t(200.0, Comparison::Le), 13.84)), 0.931);
    assert_eq!(m(margin(&t(200.0, Comparison::Lt), 230.0)), -0.15);
    assert_eq!(m(margin(&t(100.0, Comparison::Ge), 119.57)), 0.196);
    assert_eq!(m(margin(&t(99.0, Comparison::Gt), 98.01)), -0.01);
    assert_eq!(margin(&t(0.0, Comparison::Le), 1.0), None);
    assert_eq!(margin(&t(2.0, Comparison::Eq), 2.0), None);
    assert_eq!(margin(&t(2.0, Comparison::Le), f64::NAN), None);
}

#[test]
fn json_round_trip_and_shape() {
    let mut s = runbook_summary();
    s.p99_seconds = None;
    let r = evaluate(
        &cfg(),
        &s,
        &good_resources(),
        &[("tun", true), ("uapi", false)],
    );
    let text = r.to_json();
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["pass"], serde_json::Value::Bool(false));
    assert_eq!(v["gates"][0]["name"], "performance");
    assert_eq!(v["gates"][0]["pass"], false);
    let p99 = &v["gates"][0]["metrics"][3];
    assert_eq!(p99["name"], "p99_latency");
    assert_eq!(p99["actual"], serde_json::Value::Null);
    assert_eq!(p99["reason"], "no data");
    assert_eq!(p99["target"]["op"], "<=");
    assert_eq!(p99["target"]["unit"], "ms");
    assert_eq!(v["gates"][0]["metrics"][4]["target"]["unit"], "per_second");
    // Readers tolerate fields they do not know, and old reports without
    // the optional fields.
    let mut extended = v.clone();
    extended["future_field"] = serde_json::json!({"x": 1});
    extended["gates"][0]["metrics"][0]
        .as_object_mut()
        .unwrap()
        .remove("reason");
    let parsed: Report = serde_json::from_value(extended).unwrap();
    assert_eq!(parsed.gates[0].metrics[0].reason, None);
}

#[test]
fn only_narrows_and_recomputes_pass() {
    let mut s = runbook_summary();
    s.error_rate = Some(0.005); // fails technical only
    let r = evaluate(&cfg(), &s, &good_resources(), &good_health());
    assert!(!r.pass);
    let perf = r.only("performance").unwrap();
    assert!(perf.pass);
    assert_eq!(perf.gates.len(), 1);
    assert!(!r.only("technical").unwrap().pass);
    assert!(r.only("nope").is_none());
}

#[test]
fn no_gates_never_passes() {
    let cfg = GatesConfig {
        window: Default::default(),
        gates: vec![],
    };
    assert!(!evaluate(&cfg, &runbook_summary(), &good_resources(), &good_health()).pass);
}

fn mesh(store_up: bool, members: usize, healthy: usize) -> MeshHealth {
    MeshHealth {
        store_up,
        members,
        healthy,
        unhealthy: (healthy..members)
            .map(|i| format!("n{i}: no handshake in 180 s"))
            .collect(),
    }
}

fn eval_mesh(m: Option<&MeshHealth>) -> Report {
    evaluate_with_mesh(
        &cfg(),
        &runbook_summary(),
        &good_resources(),
        &good_health(),
        m,
    )
}

#[test]
fn mesh_gate_not_applicable_without_a_mesh() {
    let r = eval_mesh(None);
    assert!(r.pass, "{:?}", failing(&r));
    let m = metric(&r, "mesh", "mesh_peers");
    assert!(m.pass && m.optional);
    assert_eq!(m.actual, None);
    assert_eq!(m.reason.as_deref(), Some(NOT_APPLICABLE));
    assert_eq!(r.gate("mesh").unwrap().title, "Mesh Connectivity");
    // evaluate() is the same as no mesh.
    assert_eq!(
        evaluate(
            &cfg(),
            &runbook_summary(),
            &good_resources(),
            &good_health()
        ),
        r
    );
    // A config that requires the mesh fails a node without one.
    let text = "[[gate]]\nname = \"m\"\nmesh_peers = \">= 99%\"\n";
    let strict = GatesConfig::parse(text, "t").unwrap();
    let r = evaluate(
        &strict,
        &runbook_summary(),
        &good_resources(),
        &good_health(),
    );
    assert!(!r.pass);
    assert_eq!(
        metric(&r, "m", "mesh_peers").reason.as_deref(),
        Some("no data: no mesh configured")
    );
}

#[test]
fn mesh_gate_99_percent_boundary() {
    // 99 of 100 healthy: exactly the threshold.
    let r = eval_mesh(Some(&mesh(true, 100, 99)));
    let m = metric(&r, "mesh", "mesh_peers");
    assert!(m.pass, "{m:?}");
    assert_eq!(m.actual, Some(99.0));
    assert!(r.pass);
    assert_eq!(
        m.reason.as_deref(),
        Some("1 of 100 members unhealthy: n99: no handshake in 180 s")
    );
    // 98 of 100 and 31 of 32 (96.9 %) fail.
    for (n, ok) in [(100, 98), (32, 31), (1, 0)] {
        let r = eval_mesh(Some(&mesh(true, n, ok)));
        assert!(!metric(&r, "mesh", "mesh_peers").pass, "{ok}/{n}");
        assert!(!r.gate("mesh").unwrap().pass);
        assert!(!r.pass);
    }
    // All of 32.
    assert!(metric(&eval_mesh(Some(&mesh(true, 32, 32))), "mesh", "mesh_peers").pass);
}

#[test]
fn mesh_gate_store_down_fails_even_when_peers_are_fine() {
    let r = eval_mesh(Some(&mesh(false, 3, 3)));
    let m = metric(&r, "mesh", "mesh_peers");
    assert!(!m.pass);
    assert_eq!(m.actual, Some(100.0));
    assert_eq!(m.reason.as_deref(), Some("mesh store unreachable"));
    // A mesh of one: passes while the store is up, fails when it is down.
    let alone = eval_mesh(Some(&mesh(true, 0, 0)));
    let m = metric(&alone, "mesh", "mesh_peers");
    assert!(m.pass);
    assert_eq!((m.actual, m.reason.as_deref()), (Some(100.0), None));
    assert!(!metric(&eval_mesh(Some(&mesh(false, 0, 0))), "mesh", "mesh_peers").pass);
    // Both reasons, and long lists are cut.
    let r = eval_mesh(Some(&mesh(false, 10, 2)));
    assert_eq!(
        metric(&r, "mesh", "mesh_peers").reason.as_deref(),
        Some(
            "mesh store unreachable; 8 of 10 members unhealthy: n2: no handshake in 180 s, \
             n3: no handshake in 180 s, n4: no handshake in 180 s, n5: no handshake in 180 s, \
             n6: no handshake in 180 s and 3 more"
        )
    );
}
