//! The report's charts as inline SVG: the RTT histogram, RTT percentiles
//! over time, throughput over time, peers established and probes failed
//! over time, and tunnel traffic with bulk packets. The page around them is
//! [`super::page`], the memory chart [`super::chart`]. Pure.
use super::stats::{ChartHistogram, Stats};
use std::fmt::Write as _;

pub(super) const W: f64 = 760.0;
pub(super) const H: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 46.0;
const BOTTOM: f64 = 46.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// About five round tick values covering `0..=max`.
pub fn ticks(max: f64) -> Vec<f64> {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return vec![0.0, 1.0];
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let count = (max / step).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v.abs() >= 1e4 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub(super) fn frame(out: &mut String, title: &str, x_label: &str, y_label: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="18" font-size="14" font-weight="bold" text-anchor="middle">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 8.0,
        esc(x_label)
    );
    let _ = write!(
        out,
        r#"<text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + (H - TOP - BOTTOM) / 2.0,
        esc(y_label)
    );
}

fn y_axis(out: &mut String, yt: &[f64]) -> f64 {
    let ymax = *yt.last().unwrap_or(&1.0);
    let ph = H - TOP - BOTTOM;
    for &t in yt {
        let y = TOP + ph - t / ymax * ph;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            W - RIGHT
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            y + 4.0,
            num(t)
        );
    }
    ymax
}

/// A line chart of `series` (name, points (x, y)).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> String {
    let mut out = String::new();
    frame(&mut out, title, x_label, y_label);
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (xmax, ymax) = all.fold((0f64, 0f64), |(a, b), &(x, y)| (a.max(x), b.max(y)));
    if series.iter().all(|(_, p)| p.is_empty()) {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return out;
    }
    let xt = ticks(xmax);
    let yt = ticks(ymax);
    let xmax = *xt.last().unwrap_or(&1.0);
    let ymax = y_axis(&mut out, &yt);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    for &t in &xt {
        let x = LEFT + t / xmax * pw;
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            TOP + ph + 15.0,
            num(t)
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    LEFT + x / xmax * pw,
                    TOP + ph - y / ymax * ph
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
            path.join(" ")
        );
        let lx = LEFT + 10.0 + i as f64 * 150.0;
        let _ = write!(
            out,
            r#"<rect x="{lx}" y="{}" width="12" height="3" fill="{color}"/>"#,
            TOP - 12.0
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}">{}</text>"#,
            lx + 16.0,
            TOP - 8.0,
            esc(name)
        );
    }
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/></svg>"##
    );
    out
}

/// The RTT histogram on log-spaced buckets, trimmed to the buckets in use.
pub fn histogram_chart(h: &ChartHistogram) -> String {
    let mut out = String::new();
    frame(
        &mut out,
        "Probe RTT distribution",
        "round-trip time (log scale)",
        "probes",
    );
    let used: Vec<usize> = (0..h.counts.len()).filter(|&i| h.counts[i] > 0).collect();
    let (Some(&first), Some(&last)) = (used.first(), used.last()) else {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return out;
    };
    let ymax = y_axis(
        &mut out,
        &ticks(*h.counts.iter().max().unwrap_or(&1) as f64),
    );
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let bars = last - first + 1;
    let bw = pw / bars as f64;
    for (k, i) in (first..=last).enumerate() {
        let c = h.counts[i] as f64;
        let bh = c / ymax * ph;
        let x = LEFT + k as f64 * bw;
        let (lo, hi) = ChartHistogram::edges(i);
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{} - {}: {}</title></rect>"#,
            TOP + ph - bh,
            (bw - 1.0).max(1.0),
            COLORS[0],
            dur(lo),
            dur(hi),
            c
        );
        // Label every bucket that starts a decade, and the ends.
        if (i >= 1 && (i - 1) % 10 == 0) || k == 0 {
            let _ = write!(
                out,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                TOP + ph + 15.0,
                dur(lo)
            );
        }
    }
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/></svg>"##
    );
    out
}

/// `1.5ms`, `20us`, `2s`.
pub fn dur(seconds: f64) -> String {
    if seconds.is_infinite() {
        "inf".into()
    } else if seconds >= 1.0 {
        format!("{}s", sig3(seconds))
    } else if seconds >= 1e-3 {
        format!("{}ms", sig3(seconds * 1e3))
    } else {
        format!("{}us", sig3(seconds * 1e6))
    }
}

/// Three significant digits at most: bucket edges are powers of 10^0.1.
fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return trim(v);
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The timeline charts: RTT percentiles, probe throughput, peers and
/// failures, and tunnel traffic in Mbit/s when there was bulk traffic.
pub fn timeline_charts(stats: &Stats) -> Vec<String> {
    let w = stats.timeline.width.as_secs_f64();
    let mid = |i: usize| (i as f64 + 0.5) * w;
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut max = Vec::new();
    let mut rate = Vec::new();
    let mut mbit = Vec::new();
    let mut peers = Vec::new();
    let mut failed = Vec::new();
    let mut established = 0u64;
    for (i, b) in stats.timeline.buckets.iter().enumerate() {
        if let (Some(a), Some(b99), Some(m)) =
            (b.rtt.quantile(0.5), b.rtt.quantile(0.99), b.rtt.max())
        {
            p50.push((mid(i), a * 1e3));
            p99.push((mid(i), b99 * 1e3));
            max.push((mid(i), m * 1e3));
        }
        let c = &b.counters;
        rate.push((mid(i), c.probes_answered as f64 / w));
        mbit.push((
            mid(i),
            (c.bytes_sent + c.bytes_received) as f64 * 8.0 / w / 1e6,
        ));
        established += c.peers_established;
        peers.push((mid(i), established as f64));
        failed.push((mid(i), c.probe_failures() as f64));
    }
    let bulk = stats.counters.bulk_sent > 0;
    let mut charts = vec![
        line_chart(
            "Probe RTT over time",
            "seconds since start",
            "ms",
            &[("P50", p50), ("P99", p99), ("max", max)],
        ),
        line_chart(
            "Throughput over time",
            "seconds since start",
            "probes answered per second",
            &[("probes answered/s", rate)],
        ),
        line_chart(
            "Peers and failures over time",
            "seconds since start",
            "count",
            &[
                ("peers established", peers),
                ("failed probes per bucket", failed),
            ],
        ),
    ];
    if bulk {
        charts.push(line_chart(
            "Tunnel traffic over time",
            "seconds since start",
            "Mbit/s (inner bytes, both ways)",
            &[("Mbit/s", mbit)],
        ));
    }
    charts
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
