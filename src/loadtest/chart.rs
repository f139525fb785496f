//! The report's memory chart: the target's resident memory at each sample,
//! the warm-up (shaded, with its end marked) and the line fitted by least
//! squares after it, whose slope the soak verdict judges. Inline SVG, pure.
use super::report::{esc, frame, ticks, H, W};
use super::soak::{mib, ProcSample, SoakVerdict};
use std::fmt::Write as _;

const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 46.0;
const BOTTOM: f64 = 46.0;
const RSS_COLOR: &str = "#1f77b4";
const FIT_COLOR: &str = "#d62728";

/// About five round ticks covering `lo..=hi` (not from zero: a 12 MiB
/// daemon's 0.1 MiB step must show).
pub fn range_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo.floor(), lo.floor() + 1.0];
    }
    let step = ticks(hi - lo).get(1).copied().unwrap_or(1.0);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    (first as i64..=last as i64)
        .map(|i| i as f64 * step)
        .collect()
}

fn label(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The chart of `samples` (seconds since the start, target sample) with the
/// verdict's warm-up and fit.
pub fn rss_chart(samples: &[(f64, ProcSample)], v: &SoakVerdict) -> String {
    let mut out = String::new();
    frame(
        &mut out,
        "Target memory (RSS)",
        "seconds since start",
        "MiB",
    );
    if samples.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no data (the target process is not local)</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return out;
    }
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .map(|(t, s)| (*t, mib(s.rss_bytes)))
        .collect();
    let fit = v.memory_slope;
    let ys = pts
        .iter()
        .map(|p| p.1)
        .chain(fit.iter().flat_map(|f| [f.fit_from_mib, f.fit_to_mib]));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    // At least 0.2 MiB of range, so page-sized wobble stays small.
    let pad = ((0.2 - (hi - lo)) / 2.0).max(0.0);
    let yt = range_ticks((lo - pad).max(0.0), hi + pad);
    let (y0, y1) = (yt[0], yt[yt.len() - 1]);
    let xmax_data = pts.iter().map(|p| p.0).fold(v.warmup_s, f64::max).max(1.0);
    let xt = ticks(xmax_data);
    let xmax = *xt.last().unwrap_or(&1.0);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |t: f64| LEFT + t / xmax * pw;
    let y = |m: f64| TOP + ph - (m - y0) / (y1 - y0) * ph;
    // The warm-up, shaded, and its end.
    let we = x(v.warmup_s.min(xmax));
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{ph}" fill="#f0f0f0"/><line x1="{we:.1}" x2="{we:.1}" y1="{TOP}" y2="{}" stroke="#555" stroke-dasharray="5,4"/><text x="{:.1}" y="{}" font-size="10" fill="#555">warm-up end {:.0}s</text>"##,
        we - LEFT,
        TOP + ph,
        we + 4.0,
        TOP + 12.0,
        v.warmup_s
    );
    for &t in &yt {
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            y(t),
            y(t),
            LEFT - 4.0,
            y(t) + 4.0,
            label(t)
        );
    }
    for &t in &xt {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(t),
            TOP + ph + 15.0,
            label(t)
        );
    }
    let line: Vec<String> = pts
        .iter()
        .map(|&(t, m)| format!("{:.1},{:.1}", x(t), y(m)))
        .collect();
    let _ = write!(
        out,
        r#"<polyline fill="none" stroke="{RSS_COLOR}" stroke-width="1.6" points="{}"/>"#,
        line.join(" ")
    );
    for &(t, m) in &pts {
        let _ = write!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{RSS_COLOR}"><title>{t:.0}s: {m:.2} MiB</title></circle>"#,
            x(t),
            y(m)
        );
    }
    let mut legend = vec![(RSS_COLOR, "RSS at each interval".to_string(), "")];
    if let Some(f) = fit {
        let _ = write!(
            out,
            r#"<line class="fit" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{FIT_COLOR}" stroke-width="2" stroke-dasharray="8,4"/>"#,
            x(f.from_s),
            y(f.fit_from_mib),
            x(f.to_s),
            y(f.fit_to_mib)
        );
        let judged = if f.judged {
            format!("limit {}%/h", label(v.memory_slope_limit))
        } else {
            "too short to judge".to_string()
        };
        legend.push((
            FIT_COLOR,
            format!(
                "fit after warm-up: {:+.3} MiB/h ({:+.2}%/h, {judged})",
                f.mib_per_hour, f.percent_per_hour
            ),
            r#" stroke-dasharray="8,4""#,
        ));
    }
    for (i, (color, text, dash)) in legend.iter().enumerate() {
        let lx = LEFT + 10.0 + i as f64 * 190.0;
        let _ = write!(
            out,
            r#"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 16.0,
            TOP - 10.0,
            TOP - 10.0,
            lx + 20.0,
            TOP - 6.0,
            esc(text)
        );
    }
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/></svg>"##
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::soak::{default_warmup, verdict, SoakLimits};
    use std::time::Duration;

    fn at(t: f64, mib: f64) -> (f64, ProcSample) {
        let s = ProcSample {
            rss_bytes: (mib * 1024.0 * 1024.0) as u64,
            fds: 10,
            cpu_ms: 0,
        };
        (t, s)
    }

    /// The numbers of an attribute in every element of a kind, in order.
    fn attr(svg: &str, element: &str, name: &str) -> Vec<f64> {
        svg.split(&format!("<{element} "))
            .skip(1)
            .filter_map(|e| {
                let e = format!(" {e}");
                let v = e.split(&format!(" {name}=\"")).nth(1)?;
                v.split('"').next()?.parse().ok()
            })
            .collect()
    }

    #[test]
    fn range_ticks_are_round_and_cover_the_range() {
        assert_eq!(range_ticks(11.0, 12.3), vec![11.0, 11.5, 12.0, 12.5]);
        let t = range_ticks(11.0, 12.3);
        assert!(t[0] <= 11.0 && *t.last().unwrap() >= 12.3, "{t:?}");
        assert!((3..=8).contains(&t.len()), "{t:?}");
        assert_eq!(range_ticks(5.0, 5.0).len(), 2);
    }

    #[test]
    fn the_chart_marks_the_warm_up_and_draws_the_fit_through_the_samples() {
        let warmup = default_warmup(Duration::from_secs(5), Duration::from_secs(60));
        let limits = SoakLimits {
            memory_growth: 0.10,
            memory_slope: 0.05,
            fd_slack: 2,
            warmup,
        };
        let mut samples = vec![at(0.0, 10.0), at(60.0, 11.0), at(120.0, 11.0)];
        samples.extend((3..=20).map(|i| at(i as f64 * 60.0, 12.0 + i as f64 * 0.01)));
        let v = verdict(&[], &samples, &limits);
        let svg = rss_chart(&samples, &v);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("warm-up end 135s"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), samples.len());
        assert!(svg.contains("<title>180s: 12.03 MiB</title>"), "{svg}");
        // The fit starts at the first sample after warm-up (x) and rises
        // (SVG y grows downwards).
        let fit = svg.split("<line class=\"fit\"").nth(1).expect("fit line");
        let n = |k: &str| -> f64 {
            fit.split(&format!("{k}=\""))
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let circles_x = attr(&svg, "circle", "cx");
        let circles_y = attr(&svg, "circle", "cy");
        assert!(
            (n("x1") - circles_x[3]).abs() < 0.2,
            "fit from the 180 s sample"
        );
        assert!((n("x2") - circles_x[20]).abs() < 0.2, "to the last sample");
        assert!(n("y2") < n("y1"), "a rising fit");
        assert!((n("y1") - circles_y[3]).abs() < 2.0 && (n("y2") - circles_y[20]).abs() < 2.0);
        // The warm-up's step is inside the plot, above the first sample.
        assert!(circles_y[0] > circles_y[3]);
        assert!(
            svg.contains("fit after warm-up: +0.600 MiB/h (+4.99%/h, limit 5%/h)"),
            "{svg}"
        );
        let empty = rss_chart(&[], &SoakVerdict::default());
        assert!(empty.contains("no data"));
    }
}
