//! The Prometheus text parser (what `gate` and `status` read from a
//! scrape). Whatever parses is written back with the crate's own exposition
//! helpers and must parse again to the same families (round trip).
#![no_main]
use libfuzzer_sys::fuzz_target;
use phantommesh::metrics::exposition::{escape_help, escape_label_value, write_value, Value};
use phantommesh::metrics::parse::{parse, Parsed};

fn render(p: &Parsed) -> String {
    let mut out = String::new();
    for f in &p.families {
        if !f.help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(&f.name);
            out.push(' ');
            escape_help(&mut out, &f.help);
            out.push('\n');
        }
        if !f.kind.is_empty() {
            out.push_str(&format!("# TYPE {} {}\n", f.name, f.kind));
        }
        for s in &f.samples {
            out.push_str(&s.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push_str("=\"");
                    escape_label_value(&mut out, v);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(&mut out, Value::Float(s.value));
            out.push('\n');
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = parse(text) else { return };
    for f in &p.families {
        let _ = p.family(&f.name);
        for s in p.samples(&f.name) {
            let labels: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let _ = p.value(&s.name, &labels);
        }
    }
    let again = render(&p);
    let q = parse(&again).unwrap_or_else(|e| panic!("rendered text does not parse: {e}\n{again}"));
    assert_eq!(p.families.len(), q.families.len());
    for (a, b) in p.families.iter().zip(&q.families) {
        assert_eq!((&a.name, &a.kind, &a.help), (&b.name, &b.kind, &b.help));
        assert_eq!(a.samples.len(), b.samples.len());
        for (x, y) in a.samples.iter().zip(&b.samples) {
            assert_eq!((&x.name, &x.labels), (&y.name, &y.labels));
            assert!(x.value == y.value || (x.value.is_nan() && y.value.is_nan()));
        }
    }
});
