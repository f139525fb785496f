//! Plain-text tables in the go-live runbook's style:
//!
//! ```text
//! Metric                  Target      Actual     Status    Margin
//! ──────────────────────────────────────────────────────────────
//! P50 Latency             ≤100ms      7.32ms     ✅ PASS   92.7%
//! ```
//!
//! Margins follow the runbook: percentage metrics show the signed distance
//! in percentage points (`+1%` for 100 % against ≥ 99 %), the others the
//! relative headroom (`92.7%`).
use super::report::{GateReport, MetricReport, Report, Unit};

const HEADERS: [&str; 5] = ["Metric", "Target", "Actual", "Status", "Margin"];
/// Column widths of the runbook's Gate 2 table (display columns).
const WIDTHS: [usize; 4] = [24, 12, 11, 10];
const RULE: usize = 62;

/// Terminal columns: the status emoji are double width.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| if matches!(c, '✅' | '❌') { 2 } else { 1 })
        .sum()
}

/// Up to two decimals without trailing zeros, three significant digits
/// below 0.01, thousands grouped: `7.32`, `100`, `0.004`, `1,234.5`.
pub fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    let s = if a != 0.0 && a < 0.01 {
        let digits = (2 - a.log10().floor() as i32).clamp(3, 12) as usize;
        format!("{a:.digits$}")
    } else {
        format!("{a:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut out = String::new();
    if v < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.push('-');
    }
    out.push_str(&group_thousands(int));
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// `1000` -> `1,000`, for trailing lines like `Load: 1,000 concurrent users`.
pub fn group_thousands(digits: &str) -> String {
    let n = digits.len();
    let mut out = String::with_capacity(n + n / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (n - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn with_unit(v: f64, unit: Unit) -> String {
    let n = format_number(v);
    match unit {
        Unit::Percent => format!("{n}%"),
        Unit::Ms => format!("{n}ms"),
        Unit::PerSecond => format!("{n}/s"),
        Unit::Checks => n,
    }
}

fn target_cell(m: &MetricReport) -> String {
    if m.target.unit == Unit::Checks {
        return "All".into();
    }
    format!(
        "{}{}",
        m.target.op.symbol(),
        with_unit(m.target.value, m.target.unit)
    )
}

/// A metric that does not apply to this node (`mesh_peers` without a mesh).
fn not_applicable(m: &MetricReport) -> bool {
    m.actual.is_none() && m.reason.as_deref() == Some(super::eval::NOT_APPLICABLE)
}

fn actual_cell(m: &MetricReport) -> String {
    match (m.actual, m.target.unit) {
        (None, _) if not_applicable(m) => "n/a".into(),
        (None, _) => "no data".into(),
        (Some(a), Unit::Checks) => {
            format!("{}/{}", format_number(a), format_number(m.target.value))
        }
        (Some(a), u) => with_unit(a, u),
    }
}

fn margin_cell(m: &MetricReport) -> String {
    let Some(actual) = m.actual else {
        return if m.optional && !not_applicable(m) {
            "optional".into()
        } else {
            "-".into()
        };
    };
    match m.target.unit {
        Unit::Checks => "-".into(),
        Unit::Percent => {
            let d = actual - m.target.value;
            let sign = if d >= 0.0 { "+" } else { "" };
            format!("{sign}{}%", format_number(d))
        }
        _ => match m.margin {
            Some(r) => format!("{:.1}%", r * 100.0),
            None => "-".into(),
        },
    }
}

fn status_cell(pass: bool) -> &'static str {
    if pass {
        "✅ PASS"
    } else {
        "❌ FAIL"
    }
}

/// A metric's label, target, actual and margin cells, as the table shows
/// them (for other renderings of the table, such as HTML).
pub fn metric_cells(m: &MetricReport) -> [String; 4] {
    [
        m.label.clone(),
        target_cell(m),
        actual_cell(m),
        margin_cell(m),
    ]
}

fn push_row(out: &mut String, cells: [&str; 5], widths: &[usize; 4]) {
    let mut line = String::new();
    for (cell, w) in cells.iter().zip(widths) {
        line.push_str(cell);
        line.push_str(&" ".repeat(w.saturating_sub(width(cell))));
    }
    line.push_str(cells[4]);
    out.push_str(line.trim_end());
    out.push('\n');
}

/// One gate's table; `trailer` lines (`Load: 1,000 concurrent users`,
/// `Duration: 30 seconds`) follow after a blank line. Metrics with a
/// reason other than missing data (failing health checks) get a note line.
pub fn render_table(gate: &GateReport, trailer: &[&str]) -> String {
    let rows: Vec<[String; 5]> = gate
        .metrics
        .iter()
        .map(|m| {
            let [label, target, actual, margin] = metric_cells(m);
            [
                label,
                target,
                actual,
                status_cell(m.pass).to_string(),
                margin,
            ]
        })
        .collect();
    let mut widths = WIDTHS;
    for row in &rows {
        for (i, w) in widths.iter_mut().enumerate() {
            *w = (*w).max(width(&row[i]) + 2);
        }
    }
    let extra: usize = widths.iter().zip(WIDTHS).map(|(w, d)| w - d).sum();
    let mut out = String::new();
    push_row(&mut out, HEADERS, &widths);
    out.push_str(&"─".repeat(RULE + extra));
    out.push('\n');
    for row in &rows {
        push_row(
            &mut out,
            [&row[0], &row[1], &row[2], &row[3], &row[4]],
            &widths,
        );
    }
    let notes: Vec<String> = gate
        .metrics
        .iter()
        .filter(|m| m.actual.is_some())
        .filter_map(|m| m.reason.as_ref().map(|r| format!("{}: {r}", m.label)))
        .collect();
    if !notes.is_empty() || !trailer.is_empty() {
        out.push('\n');
    }
    for line in notes
        .iter()
        .map(String::as_str)
        .chain(trailer.iter().copied())
    {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every gate of a report: a heading with the verdict, the table, then
/// the window and sample counts and the overall result.
pub fn render_report(report: &Report) -> String {
    let mut out = String::new();
    for g in &report.gates {
        let verdict = if g.pass { "✅ PASSED" } else { "❌ FAILED" };
        out.push_str(&format!("{} {verdict}\n\n", g.title));
        out.push_str(&render_table(g, &[]));
        out.push('\n');
    }
    let s = &report.samples;
    let n = |v: u64| group_thousands(&v.to_string());
    out.push_str(&format!(
        "Window: {} seconds ({} attempts, {} latency samples, {} packets, {} requests)\n",
        format_number(report.window_seconds),
        n(s.attempts),
        n(s.latency),
        n(s.packets),
        n(s.requests),
    ));
    out.push_str(if report.pass {
        "Result: PASS\n"
    } else {
        "Result: FAIL\n"
    });
    out
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
