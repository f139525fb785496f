use super::*;

fn op_value(g: &GateSpec) -> Vec<(&'static str, Comparison, f64)> {
    g.metrics
        .iter()
        .map(|m| (m.metric.key(), m.target.op, m.target.value))
        .collect()
}

#[test]
fn default_config_is_the_runbook() {
    let cfg = GatesConfig::load(None).unwrap();
    assert_eq!(cfg, GatesConfig::default());
    assert_eq!(cfg.window.length, Duration::from_secs(300));
    assert_eq!(cfg.window.slot, Duration::from_secs(1));
    let names: Vec<&str> = cfg.gates.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["performance", "technical", "mesh"]);
    use Comparison::*;
    let perf = cfg.gate("performance").unwrap();
    assert_eq!(perf.title, "Gate 2: Performance Validation");
    assert_eq!(
        op_value(perf),
        [
            ("success_rate", Ge, 99.0),
            ("error_rate", Le, 1.0),
            ("p50_latency", Le, 100.0),
            ("p99_latency", Le, 200.0),
            ("throughput", Ge, 100.0),
        ]
    );
    // File order, strict comparisons as the runbook's success criteria.
    let tech = cfg.gate("technical").unwrap();
    assert_eq!(
        op_value(tech),
        [
            ("error_rate", Lt, 0.1),
            ("p99_latency", Lt, 200.0),
            ("success_rate", Gt, 99.0),
            ("memory", Lt, 80.0),
            ("cpu", Lt, 80.0),
            ("health", Eq, 0.0),
        ]
    );
    // The mesh gate: optional, so nodes without a mesh pass it.
    let mesh = cfg.gate("mesh").unwrap();
    assert_eq!(op_value(mesh), [("mesh_peers", Ge, 99.0)]);
    assert!(mesh.metrics[0].optional);
    assert!(cfg
        .gates
        .iter()
        .filter(|g| g.name != "mesh")
        .flat_map(|g| &g.metrics)
        .all(|m| !m.optional));
}

const GOOD: &str = r#"
[window]
length = "30s"
slot = "500ms"

[[gate]]
name = "quick"
p99_latency = "≤ 0.25s"
throughput = ">=10/s"
health = "all"
optional = ["throughput"]
"#;

#[test]
fn parses_units_and_optional() {
    let cfg = GatesConfig::parse(GOOD, "g.toml").unwrap();
    assert_eq!(cfg.window.length, Duration::from_secs(30));
    assert_eq!(cfg.window.slot, Duration::from_millis(500));
    let g = &cfg.gates[0];
    assert_eq!(g.title, "quick");
    assert_eq!(g.metrics[0].target.value, 250.0);
    assert_eq!(g.metrics[0].target.op, Comparison::Le);
    assert_eq!(g.metrics[0].target.unit, Unit::Ms);
    assert!(!g.metrics[0].optional);
    assert_eq!(g.metrics[1].metric, MetricKind::Throughput);
    assert!(g.metrics[1].optional);
    assert_eq!(g.metrics[2].target.unit, Unit::Checks);
}

fn err(text: &str) -> ConfigError {
    GatesConfig::parse(text, "gates.toml").unwrap_err()
}

fn gate_with(line: &str) -> String {
    format!("[[gate]]\nname = \"g\"\n{line}\n")
}

#[test]
fn errors_name_file_and_line() {
    let cases: Vec<(String, usize, &str)> = vec![
        (
            gate_with("latency = \"<= 1ms\""),
            3,
            "unknown field `latency`",
        ),
        (
            gate_with("error_rate = \"=> 1%\""),
            3,
            "must start with >=, >, <= or <",
        ),
        (
            gate_with("p50_latency = \"<= 100%\""),
            3,
            "unit must be ms or s",
        ),
        (gate_with("success_rate = \">= 99\""), 3, "unit must be %"),
        (gate_with("memory = \"< 180%\""), 3, "more than 100%"),
        (gate_with("cpu = \"< abc%\""), 3, "expected a number"),
        (gate_with("throughput = \">= 5 rps\""), 3, "unit must be /s"),
        (
            gate_with("health = \"most\""),
            3,
            "only threshold is \"all\"",
        ),
        (gate_with("cpu = 80"), 3, "invalid type"),
        (
            gate_with("cpu = \"< 80%\"\noptional = [\"memory\"]"),
            4,
            "optional metric \"memory\" has no threshold",
        ),
        (
            gate_with("cpu = \"< 80%\"\noptional = [\"disk\"]"),
            4,
            "unknown metric \"disk\"",
        ),
        (
            gate_with("title = \"\"\ncpu = \"< 80%\""),
            3,
            "title must not be empty",
        ),
        (gate_with(""), 2, "sets no metric thresholds"),
        (
            "[[gate]]\nname = \"Perf\"\ncpu = \"< 80%\"\n".into(),
            2,
            "invalid gate name",
        ),
        (
            "[[gate]]\nname = \"a\"\ncpu = \"< 80%\"\n\n[[gate]]\nname = \"a\"\ncpu = \"< 90%\"\n"
                .into(),
            6,
            "duplicate gate \"a\" (first given on line 2)",
        ),
        (
            "[window]\nlength = \"5x\"\n[[gate]]\nname = \"g\"\ncpu = \"< 1%\"\n".into(),
            2,
            "invalid duration",
        ),
        (
            "[window]\nlength = \"1s\"\nslot = \"2s\"\n[[gate]]\nname = \"g\"\ncpu = \"< 1%\"\n"
                .into(),
            2,
            "length must be at least one slot",
        ),
        (
            "[window]\nlength = \"5h\"\n[[gate]]\nname = \"g\"\ncpu = \"< 1%\"\n".into(),
            2,
            "18000 slots",
        ),
        (
            "[window]\nsize = \"1m\"\n".into(),
            2,
            "unknown field `size`",
        ),
        (
            "\n[[gate]]\ncpu = \"< 1%\"\n".into(),
            2,
            "missing field `name`",
        ),
        ("[[gate]\nname = \"g\"\n".into(), 1, ""),
    ];
    for (text, line, want) in cases {
        let e = err(&text);
        assert_eq!(
            (e.file.as_str(), e.line),
            ("gates.toml", line),
            "{text:?}: {e}"
        );
        assert!(e.message.contains(want), "{text:?}: {e}");
        assert!(
            e.to_string().starts_with(&format!("gates.toml:{line}: ")),
            "{e}"
        );
    }
    let e = err("[window]\nlength = \"1m\"\n");
    assert_eq!(e.line, 0);
    assert_eq!(
        e.to_string(),
        "gates.toml: no [[gate]] tables: nothing to evaluate"
    );
}

#[test]
fn load_from_file() {
    let dir = std::env::temp_dir().join(format!("pm-gates-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gates.toml");
    std::fs::write(&path, GOOD).unwrap();
    let cfg = GatesConfig::load(Some(&path)).unwrap();
    assert_eq!(cfg.gates[0].name, "quick");
    std::fs::write(&path, "[[gate]]\nname = \"x\"\ncpu = \"< 1\"\n").unwrap();
    let e = GatesConfig::load(Some(&path)).unwrap_err();
    assert_eq!(
        e.to_string().split(": ").next().unwrap(),
        format!("{}:3", path.display())
    );
    let missing = dir.join("nope.toml");
    let e = GatesConfig::load(Some(&missing)).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e.message.contains("cannot read gates config"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration(" 1.5s "), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    for bad in ["", "5", "m", "-1s", "1d", "1e3s", "9999h"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}
