//! `--report FILE.html`: one self-contained page (inline SVG and CSS, no
//! scripts, nothing fetched): the verdict as a badge, the gate as an HTML
//! table, the run's parameters, the details and interval lines, and the
//! charts ([`super::report`], [`chart`]). PASS and FAIL are text in styled badges,
//! not emoji, which a browser without an emoji font draws as empty boxes;
//! tables scroll inside their own box and text wraps, so a narrow window
//! never scrolls the page sideways. Pure.
use super::chart;
use super::report::{esc, histogram_chart, timeline_charts};
use super::soak::{ProcSample, SoakVerdict};
use super::stats::Stats;
use crate::gates::table::metric_cells;
use crate::gates::Report;
use std::fmt::Write as _;

/// Everything the page shows.
pub struct Page<'a> {
    pub title: &'a str,
    pub pass: bool,
    /// The gate evaluated, for its table.
    pub gate: &'a Report,
    /// Lines under the gate's table (`Load: ...`, `Duration: ...`).
    pub gate_notes: &'a [String],
    /// The final text below the table (handshakes, probes, soak, result).
    pub details: &'a str,
    /// (name, value) rows describing the run.
    pub params: &'a [(String, String)],
    pub intervals: &'a [String],
    pub stats: &'a Stats,
    /// The target's samples, for the memory chart.
    pub samples: &'a [(f64, ProcSample)],
    pub soak: &'a SoakVerdict,
}

const CSS: &str = "\
*{box-sizing:border-box}\
body{font-family:'DejaVu Sans',sans-serif;max-width:820px;margin:2em auto;padding:0 12px;color:#222;line-height:1.4}\
h1{font-size:1.6em;overflow-wrap:anywhere}\
pre{background:#f6f6f6;padding:1em;font-size:13px;white-space:pre-wrap;overflow-wrap:anywhere;\
font-family:'DejaVu Sans Mono',monospace}\
.scroll{max-width:100%;overflow-x:auto}\
table{border-collapse:collapse;min-width:50%}\
th,td{padding:4px 12px 4px 0;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
table.gate th,table.gate td{border-bottom:1px solid #ddd;white-space:nowrap}\
table.gate td.n{text-align:right;font-variant-numeric:tabular-nums}\
table.params td:first-child{white-space:nowrap}\
.badge{display:inline-block;padding:0 .5em;border-radius:4px;color:#fff;font-weight:bold;\
font-family:'DejaVu Sans',sans-serif;font-size:.85em;line-height:1.5;letter-spacing:.04em}\
.badge.pass{background:#1a7f37}.badge.fail{background:#cf222e}\
.verdict{font-size:1.3em}.verdict .badge{font-size:1em;padding:.1em .7em}\
svg{display:block;margin:1.5em 0;max-width:100%;height:auto}";

/// A PASS or FAIL badge.
pub fn badge(pass: bool) -> &'static str {
    if pass {
        r#"<span class="badge pass">PASS</span>"#
    } else {
        r#"<span class="badge fail">FAIL</span>"#
    }
}

/// Terminal text for a `<pre>`: escaped, with the status emoji as badges.
pub fn pre_text(s: &str) -> String {
    esc(s)
        .replace("✅ PASSED", badge(true))
        .replace("❌ FAILED", badge(false))
        .replace("✅ PASS", badge(true))
        .replace("❌ FAIL", badge(false))
        .replace('✅', badge(true))
        .replace('❌', badge(false))
}

fn gate_tables(out: &mut String, report: &Report, notes: &[String]) {
    for g in &report.gates {
        let _ = writeln!(out, "<h2>{} {}</h2>", esc(&g.title), badge(g.pass));
        out.push_str(
            "<div class=\"scroll\"><table class=\"gate\">\n<thead><tr><th>Metric</th>\
<th>Target</th><th>Actual</th><th>Status</th><th>Margin</th></tr></thead>\n<tbody>\n",
        );
        for m in &g.metrics {
            let [label, target, actual, margin] = metric_cells(m);
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&label),
                esc(&target),
                esc(&actual),
                badge(m.pass),
                esc(&margin)
            );
        }
        out.push_str("</tbody></table></div>\n");
        for m in g.metrics.iter().filter(|m| m.actual.is_some()) {
            if let Some(r) = &m.reason {
                let _ = writeln!(out, "<p>{}: {}</p>", esc(&m.label), esc(r));
            }
        }
    }
    for n in notes {
        let _ = writeln!(out, "<p>{}</p>", esc(n));
    }
}

/// The whole page.
pub fn html(p: &Page) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title>\n\
<style>{CSS}</style></head><body>\n<h1>{}</h1>\n<p class=\"verdict\">Result: {}</p>\n",
        esc(p.title),
        esc(p.title),
        badge(p.pass)
    );
    gate_tables(&mut out, p.gate, p.gate_notes);
    out.push_str("<h2>Parameters</h2>\n<div class=\"scroll\"><table class=\"params\">\n");
    for (k, v) in p.params {
        let _ = writeln!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</table></div>\n<h2>Details</h2>\n<pre>");
    out.push_str(&pre_text(p.details));
    out.push_str("</pre>\n");
    if !p.intervals.is_empty() {
        out.push_str("<h2>Intervals</h2>\n<pre>");
        for l in p.intervals {
            out.push_str(&pre_text(l));
            out.push('\n');
        }
        out.push_str("</pre>\n");
    }
    out.push_str("<h2>Charts</h2>\n");
    if !p.samples.is_empty() {
        out.push_str(&chart::rss_chart(p.samples, p.soak));
        out.push('\n');
    }
    out.push_str(&histogram_chart(&p.stats.chart));
    for c in timeline_charts(p.stats) {
        out.push('\n');
        out.push_str(&c);
    }
    out.push_str("\n</body></html>\n");
    out
}

#[cfg(test)]
#[path = "page_tests.rs"]
mod tests;
