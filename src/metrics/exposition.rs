//! A small writer for the Prometheus text exposition format, version 0.0.4.
//!
//! It writes into a caller's `String` so a scrape costs one buffer. Metric
//! and label names come from this crate (constants) and are checked in debug
//! builds; label values come from anywhere and are always escaped.
use super::histogram::HistogramSnapshot;
use std::fmt::Write;

/// The `Content-Type` of the text format this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A sample value. Integers are printed exactly (an f64 would round
/// counters above 2^53).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(v as u64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(u64::from(v))
    }
}

/// Writes families into `out`, one at a time: [`Writer::family`] starts a
/// family, then its samples follow.
pub struct Writer<'a> {
    out: &'a mut String,
    #[cfg(debug_assertions)]
    seen: std::collections::HashSet<String>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut String) -> Self {
        Writer {
            out,
            #[cfg(debug_assertions)]
            seen: Default::default(),
        }
    }

    /// Writes the `# HELP` and `# TYPE` lines of a family.
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        debug_assert!(is_metric_name(name), "bad metric name {name:?}");
        #[cfg(debug_assertions)]
        debug_assert!(
            self.seen.insert(name.to_string()),
            "family {name} written twice"
        );
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(self.out, help);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// Writes one sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(name);
        write_labels(self.out, labels, None);
        self.out.push(' ');
        write_value(self.out, value.into());
        self.out.push('\n');
    }

    /// Writes a whole family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: MetricType, help: &str, value: impl Into<Value>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples of one histogram
    /// series (the family line must already be written).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let mut le = String::new();
        for (i, &count) in h.cumulative.iter().enumerate() {
            le.clear();
            match h.bounds.get(i) {
                Some(&b) => write_value(&mut le, Value::Float(b)),
                None => le.push_str("+Inf"),
            }
            self.out.push_str(name);
            self.out.push_str("_bucket");
            write_labels(self.out, labels, Some(&le));
            self.out.push(' ');
            write_value(self.out, Value::Int(count));
            self.out.push('\n');
        }
        self.out.push_str(name);
        self.out.push_str("_sum");
        write_labels(self.out, labels, None);
        self.out.push(' ');
        write_value(self.out, Value::Float(h.sum));
        self.out.push('\n');
        self.out.push_str(name);
        self.out.push_str("_count");
        write_labels(self.out, labels, None);
        self.out.push(' ');
        write_value(self.out, Value::Int(h.count));
        self.out.push('\n');
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|l| ("le", l))) {
        debug_assert!(is_label_name(k), "bad label name {k:?}");
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    out.push('}');
}

/// Label values escape backslash, double quote and line feed.
pub fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslash and line feed (quotes stay as they are).
pub fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Formats a value as Prometheus parses it: `+Inf`, `-Inf`, `NaN`, else
/// the shortest decimal that round-trips.
pub fn write_value(out: &mut String, v: Value) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f == f64::INFINITY => out.push_str("+Inf"),
        Value::Float(f) if f == f64::NEG_INFINITY => out.push_str("-Inf"),
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(s: &str) -> bool {
    let mut it = s.bytes();
    matches!(it.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && it.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_label_name(s: &str) -> bool {
    let mut it = s.bytes();
    matches!(it.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && it.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        let mut w = Writer::new(&mut s);
        w.family(
            "x_total",
            MetricType::Counter,
            "a \\ help\nline with \"quotes\"",
        );
        w.sample("x_total", &[("gate", "a\\b\"c\nd"), ("k", "ünï")], 3u64);
        assert_eq!(
            s,
            "# HELP x_total a \\\\ help\\nline with \"quotes\"\n# TYPE x_total counter\n\
             x_total{gate=\"a\\\\b\\\"c\\nd\",k=\"ünï\"} 3\n"
        );
    }

    #[test]
    fn values_format_for_prometheus() {
        let f = |v: Value| {
            let mut s = String::new();
            write_value(&mut s, v);
            s
        };
        assert_eq!(f(Value::Int(u64::MAX)), "18446744073709551615");
        assert_eq!(f(Value::Float(f64::INFINITY)), "+Inf");
        assert_eq!(f(Value::Float(f64::NEG_INFINITY)), "-Inf");
        assert_eq!(f(Value::Float(f64::NAN)), "NaN");
        assert_eq!(f(Value::Float(0.000_01)), "0.00001");
        assert_eq!(f(Value::Float(0.0025)), "0.0025");
        assert_eq!(f(Value::Float(1.0)), "1");
        assert_eq!(f(true.into()), "1");
        for x in [1e-300, 123.456, 1.7e308, 0.1 + 0.2] {
            assert_eq!(f(Value::Float(x)).parse::<f64>().unwrap(), x, "round trip");
        }
    }

    #[test]
    fn histogram_lines() {
        let h = HistogramSnapshot {
            bounds: vec![0.1, 0.2],
            cumulative: vec![1, 3, 4],
            sum: 1.25,
            count: 4,
        };
        let mut s = String::new();
        let mut w = Writer::new(&mut s);
        w.family("lat_seconds", MetricType::Histogram, "Latency.");
        w.histogram("lat_seconds", &[("direction", "rx")], &h);
        let want = "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
            lat_seconds_bucket{direction=\"rx\",le=\"0.1\"} 1\n\
            lat_seconds_bucket{direction=\"rx\",le=\"0.2\"} 3\n\
            lat_seconds_bucket{direction=\"rx\",le=\"+Inf\"} 4\n\
            lat_seconds_sum{direction=\"rx\"} 1.25\n\
            lat_seconds_count{direction=\"rx\"} 4\n";
        assert_eq!(s, want);
        let mut s = String::new();
        Writer::new(&mut s).histogram("h", &[], &h);
        assert!(s.starts_with("h_bucket{le=\"0.1\"} 1\n"), "{s}");
        assert!(s.contains("\nh_sum 1.25\nh_count 4\n"), "{s}");
    }

    #[test]
    fn name_rules() {
        assert!(is_metric_name("phantommesh_peers"));
        assert!(is_metric_name("a:b_c1"));
        assert!(!is_metric_name("1abc"));
        assert!(!is_metric_name(""));
        assert!(!is_metric_name("a-b"));
        assert!(is_label_name("_x1"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name("9"));
    }
}
