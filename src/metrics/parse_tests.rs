use super::*;

const GOOD: &str = "# HELP a_total Things.\n# TYPE a_total counter\na_total{k=\"v\"} 3\na_total{k=\"w\\\\x\\\"y\\nz\"} 4 1700000000000\n\
# HELP h_seconds Latency.\n# TYPE h_seconds histogram\n\
h_seconds_bucket{le=\"0.1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 0.3\nh_seconds_count 2\n\
# some comment\n\n# HELP g A gauge.\n# TYPE g gauge\ng NaN\ng{x=\"1\",} -Inf\n";

#[test]
fn reads_a_valid_exposition() {
    let p = parse(GOOD).unwrap();
    assert_eq!(p.families.len(), 3);
    assert_eq!(p.value("a_total", &[("k", "v")]), Some(3.0));
    assert_eq!(
        p.value("a_total", &[("k", "w\\x\"y\nz")]),
        Some(4.0),
        "escapes decoded"
    );
    assert_eq!(p.value("h_seconds_count", &[]), Some(2.0));
    assert_eq!(p.value("h_seconds_bucket", &[("le", "+Inf")]), Some(2.0));
    assert!(p.value("g", &[]).unwrap().is_nan());
    assert_eq!(p.value("g", &[("x", "1")]), Some(f64::NEG_INFINITY));
    assert_eq!(p.family("h_seconds").unwrap().kind, "histogram");
    assert_eq!(p.family("a_total").unwrap().help, "Things.");
    assert_eq!(p.value("a_total", &[]), None, "label sets match exactly");
}

fn rejects(text: &str, why: &str) {
    match parse(text) {
        Ok(_) => panic!("accepted ({why}): {text:?}"),
        Err(e) => assert!(e.message.contains(why), "expected {why:?}, got {e}"),
    }
}

const HDR: &str = "# HELP x_total X.\n# TYPE x_total counter\n";

#[test]
fn rejects_grammar_errors() {
    rejects(&format!("{HDR}x_total{{k=\"v}} 1\n"), "unterminated");
    rejects(&format!("{HDR}x_total{{k=\"a\\tb\"}} 1\n"), "bad escape");
    rejects(&format!("{HDR}x_total{{k=v}} 1\n"), "expected \"");
    rejects(&format!("{HDR}x_total{{1k=\"v\"}} 1\n"), "bad label name");
    rejects(&format!("{HDR}x_total{{__k=\"v\"}} 1\n"), "bad label name");
    rejects(&format!("{HDR}x_total{{k=\"v\",k=\"w\"}} 1\n"), "repeated");
    rejects(
        &format!("{HDR}x_total{{k=\"v\" j=\"w\"}} 1\n"),
        "expected ,",
    );
    rejects(&format!("{HDR}x_total one\n"), "bad value");
    rejects(&format!("{HDR}x_total inf\n"), "bad value");
    rejects(&format!("{HDR}x_total\n"), "whitespace");
    rejects(&format!("{HDR}x_total 1 2 3\n"), "trailing");
    rejects(&format!("{HDR}x_total 1 now\n"), "timestamp");
    rejects("# HELP 9x X.\n", "bad metric name");
    rejects("# HELP x X \\t.\n# TYPE x gauge\nx 1\n", "bad escape");
    rejects("# HELP x X.\n# TYPE x gaugee\nx 1\n", "unknown type");
}

#[test]
fn rejects_structure_errors() {
    rejects("x_total 1\n", "before HELP and TYPE");
    rejects(
        "# TYPE x_total counter\nx_total 1\n",
        "before HELP and TYPE",
    );
    rejects(
        &format!("{HDR}x_total 1\n# HELP x_total again\n"),
        "after its samples",
    );
    rejects("# HELP x X.\n# HELP x Y.\n# TYPE x gauge\n", "second HELP");
    rejects(
        "# HELP x X.\n# TYPE x gauge\n# TYPE x gauge\n",
        "second TYPE",
    );
    rejects(
        &format!("{HDR}x_total 1\n# HELP y Y.\n# TYPE y gauge\ny 1\nx_total{{a=\"b\"}} 2\n"),
        "not contiguous",
    );
    rejects(
        &format!("{HDR}x_total{{a=\"b\"}} 1\nx_total{{a=\"b\"}} 2\n"),
        "duplicate series",
    );
    rejects(
        "# HELP x Y.\n# TYPE x counter\nx 1\n",
        "does not end in _total",
    );
    rejects(&format!("{HDR}x_total -1\n"), "has value");
    assert!(
        parse("# HELP t X.\n# TYPE t gauge\n").is_ok(),
        "a family may have no samples"
    );
    rejects("# HELP t X.\n", "lacks HELP or TYPE");
}

#[test]
fn rejects_broken_histograms() {
    let h = "# HELP h X.\n# TYPE h histogram\n";
    rejects(
        &format!("{h}h_bucket{{le=\"1\"}} 1\nh_sum 1\nh_count 1\n"),
        "no +Inf",
    );
    rejects(
        &format!("{h}h_bucket{{le=\"+Inf\"}} 1\nh_count 1\n"),
        "no _sum",
    );
    rejects(
        &format!("{h}h_bucket{{le=\"+Inf\"}} 2\nh_sum 1\nh_count 1\n"),
        "differs",
    );
    rejects(
        &format!("{h}h_bucket{{le=\"1\"}} 2\nh_bucket{{le=\"+Inf\"}} 1\nh_sum 1\nh_count 1\n"),
        "decrease",
    );
    rejects(
        &format!("{h}h_bucket{{le=\"2\"}} 1\nh_bucket{{le=\"1\"}} 1\n"),
        "not ascending",
    );
    rejects(&format!("{h}h_bucket{{le=\"x\"}} 1\n"), "bad le");
    rejects(&format!("{h}h_bucket 1\n"), "le belongs");
    rejects(&format!("{h}h_sum{{le=\"1\"}} 1\n"), "le belongs");
    rejects(&format!("{h}h 1\n"), "lacks a suffix");
    // Series are grouped by their other labels.
    let ok = format!(
        "{h}h_bucket{{d=\"rx\",le=\"+Inf\"}} 1\nh_sum{{d=\"rx\"}} 1\nh_count{{d=\"rx\"}} 1\n\
         h_bucket{{d=\"tx\",le=\"+Inf\"}} 0\nh_sum{{d=\"tx\"}} 0\nh_count{{d=\"tx\"}} 1\n"
    );
    rejects(&ok, "differs");
}

#[test]
fn never_panics_on_junk() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let alphabet: Vec<char> = "ab_{}=\",\\ \n#+-.0123456789eInfNa\tHELPTYPE le\u{e9}"
        .chars()
        .collect();
    for _ in 0..3000 {
        let len = (seed % 80) as usize;
        let mut s = String::from(if seed % 3 == 0 { GOOD } else { "" });
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let _ = parse(&s);
    }
}
