//! A strict reader for the Prometheus text format, used to check what
//! [`super::render()`] writes (and usable by the admin plane's own tests).
//!
//! Beyond the grammar it enforces what Prometheus needs to ingest a scrape
//! cleanly and what this crate promises: every family has HELP and TYPE
//! before its samples, a family's lines are contiguous, no series appears
//! twice, counters end in `_total` and never go negative, and every
//! histogram series has ascending `le` buckets with non-decreasing counts,
//! a `+Inf` bucket equal to `_count`, and a `_sum`. Malformed input gives
//! an error naming the line; it never panics.
use super::exposition::{is_label_name, is_metric_name};
use std::collections::{HashMap, HashSet};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub families: Vec<Family>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based; 0 for a problem found after reading everything.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

impl Parsed {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Samples named exactly `name` (for histograms: `x_bucket`, `x_sum`...).
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families
            .iter()
            .flat_map(|f| f.samples.iter())
            .filter(move |s| s.name == name)
    }

    /// The value of the series with exactly these labels (in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .find(|s| {
                s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(k2, v2)| k2 == k && v2 == v))
            })
            .map(|s| s.value)
    }
}

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// Parses and validates a whole exposition.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut families: Vec<Family> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut series: HashSet<String> = HashSet::new();
    // Index of the family whose lines we are in.
    let mut current: Option<usize> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let ln = i + 1;
        let line = raw.trim_matches(|c| c == ' ' || c == '\t');
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start_matches([' ', '\t']);
            let (kw, rest) = split_token(rest);
            if kw != "HELP" && kw != "TYPE" {
                continue; // plain comment
            }
            let (name, rest) = split_token(rest);
            if !is_metric_name(name) {
                return Err(err(ln, format!("bad metric name {name:?} in {kw}")));
            }
            let idx = enter(&mut families, &mut by_name, &mut current, name, ln)?;
            let fam = &mut families[idx];
            if !fam.samples.is_empty() {
                return Err(err(ln, format!("{kw} for {name} after its samples")));
            }
            if kw == "HELP" {
                if !fam.help.is_empty() {
                    return Err(err(ln, format!("second HELP for {name}")));
                }
                fam.help = unescape_help(rest).map_err(|m| err(ln, m))?;
                if fam.help.is_empty() {
                    return Err(err(ln, format!("empty HELP for {name}")));
                }
            } else {
                if !fam.kind.is_empty() {
                    return Err(err(ln, format!("second TYPE for {name}")));
                }
                let kind = rest.trim();
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(err(ln, format!("unknown type {kind:?} for {name}")));
                }
                fam.kind = kind.to_string();
            }
            continue;
        }
        let sample = parse_sample(line).map_err(|m| err(ln, m))?;
        let fam_name = family_of(&families, &by_name, &sample.name);
        let idx = enter(&mut families, &mut by_name, &mut current, &fam_name, ln)?;
        let fam = &mut families[idx];
        if fam.kind.is_empty() || fam.help.is_empty() {
            return Err(err(
                ln,
                format!(
                    "sample {} before HELP and TYPE of {}",
                    sample.name, fam_name
                ),
            ));
        }
        check_sample(fam, &sample).map_err(|m| err(ln, m))?;
        let mut key_labels: Vec<_> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        key_labels.sort();
        if !series.insert(format!("{}{{{}}}", sample.name, key_labels.join(","))) {
            return Err(err(ln, format!("duplicate series {}", sample.name)));
        }
        fam.samples.push(sample);
    }
    for f in &families {
        if f.kind.is_empty() || f.help.is_empty() {
            return Err(err(0, format!("family {} lacks HELP or TYPE", f.name)));
        }
        if f.kind == "histogram" {
            check_histogram(f).map_err(|m| err(0, m))?;
        }
    }
    Ok(Parsed { families })
}

/// Switches to family `name`, refusing to come back to a finished one.
fn enter(
    families: &mut Vec<Family>,
    by_name: &mut HashMap<String, usize>,
    current: &mut Option<usize>,
    name: &str,
    ln: usize,
) -> Result<usize, ParseError> {
    if let Some(&idx) = by_name.get(name) {
        if *current != Some(idx) {
            return Err(err(
                ln,
                format!("lines of family {name} are not contiguous"),
            ));
        }
        return Ok(idx);
    }
    families.push(Family {
        name: name.to_string(),
        kind: String::new(),
        help: String::new(),
        samples: Vec::new(),
    });
    let idx = families.len() - 1;
    by_name.insert(name.to_string(), idx);
    *current = Some(idx);
    Ok(idx)
}

/// The family a sample name belongs to: itself, or a histogram / summary
/// family it is a `_bucket` / `_sum` / `_count` of.
fn family_of(families: &[Family], by_name: &HashMap<String, usize>, sample: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if let Some(&i) = by_name.get(base) {
                let kind = families[i].kind.as_str();
                if kind == "histogram" || (kind == "summary" && suffix != "_bucket") {
                    return base.to_string();
                }
            }
        }
    }
    sample.to_string()
}

fn check_sample(fam: &Family, s: &Sample) -> Result<(), String> {
    let has_le = s.label("le").is_some();
    match fam.kind.as_str() {
        "counter" => {
            if !fam.name.ends_with("_total") {
                return Err(format!("counter {} does not end in _total", fam.name));
            }
            if s.value.is_nan() || s.value < 0.0 {
                return Err(format!("counter {} has value {}", s.name, s.value));
            }
        }
        "histogram" => {
            if s.name == fam.name {
                return Err(format!("histogram sample {} lacks a suffix", s.name));
            }
            if has_le != s.name.ends_with("_bucket") {
                return Err(format!("{}: le belongs on _bucket samples only", s.name));
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_histogram(f: &Family) -> Result<(), String> {
    #[derive(Default)]
    struct Series {
        buckets: Vec<(f64, f64)>,
        sum: bool,
        count: Option<f64>,
    }
    let mut groups: HashMap<Vec<(String, String)>, Series> = HashMap::new();
    for s in &f.samples {
        let mut key: Vec<_> = s
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        key.sort();
        let g = groups.entry(key).or_default();
        if s.name.ends_with("_bucket") {
            let le = s.label("le").unwrap_or_default();
            let bound = parse_value(le).ok_or_else(|| format!("{}: bad le {le:?}", f.name))?;
            if g.buckets.last().is_some_and(|&(prev, _)| prev >= bound) {
                return Err(format!("{}: le values not ascending", f.name));
            }
            if g.buckets.last().is_some_and(|&(_, prev)| prev > s.value) {
                return Err(format!("{}: bucket counts decrease at le={le}", f.name));
            }
            g.buckets.push((bound, s.value));
        } else if s.name.ends_with("_sum") {
            g.sum = true;
        } else {
            g.count = Some(s.value);
        }
    }
    for (labels, g) in groups {
        let inf = g
            .buckets
            .last()
            .filter(|b| b.0 == f64::INFINITY)
            .map(|b| b.1);
        let Some(inf) = inf else {
            return Err(format!("{}{labels:?}: no +Inf bucket", f.name));
        };
        if !g.sum {
            return Err(format!("{}{labels:?}: no _sum", f.name));
        }
        if g.count != Some(inf) {
            return Err(format!(
                "{}{labels:?}: _count {:?} differs from +Inf bucket {inf}",
                f.name, g.count
            ));
        }
    }
    Ok(())
}

fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i + 1..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => return Err(format!("bad escape \\{other:?} in HELP")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        // Rust also takes "inf"/"infinity"; only the forms above are written.
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name in {:?}", truncate(line)));
    }
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let ln_end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let lname = &rest[..ln_end];
            if !is_label_name(lname) || lname.starts_with("__") {
                return Err(format!("bad label name {lname:?}"));
            }
            if labels.iter().any(|(k, _)| k == lname) {
                return Err(format!("label {lname} repeated"));
            }
            rest = rest[ln_end..].trim_start_matches([' ', '\t']);
            rest = rest
                .strip_prefix('=')
                .ok_or_else(|| format!("expected = after label {lname}"))?;
            rest = rest.trim_start_matches([' ', '\t']);
            rest = rest
                .strip_prefix('"')
                .ok_or_else(|| format!("expected \" for label {lname}"))?;
            let (value, r) = read_quoted(rest)?;
            labels.push((lname.to_string(), value));
            rest = r.trim_start_matches([' ', '\t']);
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err(format!("expected , or }} after label {lname}"));
            }
        }
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("expected whitespace before the value of {name}"));
    }
    let mut parts = rest.split([' ', '\t']).filter(|p| !p.is_empty());
    let v = parts.next().ok_or_else(|| format!("no value for {name}"))?;
    let value = parse_value(v).ok_or_else(|| format!("bad value {v:?} for {name}"))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?} for {name}"))?;
    }
    if parts.next().is_some() {
        return Err(format!("trailing text after {name}"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Reads a label value up to its closing quote; returns it and the rest.
fn read_quoted(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut it = s.char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match it.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                other => {
                    return Err(format!(
                        "bad escape in label value: {:?}",
                        other.map(|o| o.1)
                    ))
                }
            },
            c => out.push(c),
        }
    }
    Err("unterminated label value".into())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
