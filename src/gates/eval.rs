//! Gate evaluation: config + measurements in, [`Report`] out. Pure.
use super::config::{GatesConfig, MetricKind, MetricSpec};
use super::report::{Comparison, GateReport, MetricReport, Report, SampleCounts, Target};
use super::resources::Resources;
use super::window::Summary;

/// Reason given for a metric without samples.
pub const NO_DATA: &str = "no data";

/// Evaluates every gate in `config`. `health` lists (check name, ok).
///
/// A metric with no data fails with reason "no data" unless the config
/// marks it optional; an empty health list is "no data" too. The report
/// passes only when every gate passes.
pub fn evaluate<S: AsRef<str>>(
    config: &GatesConfig,
    summary: &Summary,
    resources: &Resources,
    health: &[(S, bool)],
) -> Report {
    let gates: Vec<GateReport> = config
        .gates
        .iter()
        .map(|g| {
            let metrics: Vec<MetricReport> = g
                .metrics
                .iter()
                .map(|m| evaluate_metric(m, summary, resources, health))
                .collect();
            GateReport {
                name: g.name.clone(),
                title: g.title.clone(),
                pass: metrics.iter().all(|m| m.pass),
                metrics,
            }
        })
        .collect();
    Report {
        pass: !gates.is_empty() && gates.iter().all(|g| g.pass),
        window_seconds: summary.window_seconds,
        samples: SampleCounts {
            attempts: summary.attempts,
            packets: summary.packets,
            requests: summary.requests,
            latency: summary.latency_samples,
        },
        gates,
    }
}

fn evaluate_metric<S: AsRef<str>>(
    spec: &MetricSpec,
    summary: &Summary,
    resources: &Resources,
    health: &[(S, bool)],
) -> MetricReport {
    let mut target = spec.target;
    let pct = |v: Option<f64>| v.map(|f| f * 100.0);
    let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
    let mut reason = None;
    let actual = match spec.metric {
        MetricKind::SuccessRate => pct(summary.success_rate),
        MetricKind::ErrorRate => pct(summary.error_rate),
        MetricKind::P50Latency => ms(summary.p50_seconds),
        MetricKind::P99Latency => ms(summary.p99_seconds),
        MetricKind::Throughput => summary.requests_per_second,
        MetricKind::Memory => pct(resources.memory),
        MetricKind::Cpu => pct(resources.cpu),
        MetricKind::Health => {
            target.value = health.len() as f64;
            let failing: Vec<&str> = health
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(n, _)| n.as_ref())
                .collect();
            if !failing.is_empty() {
                reason = Some(format!("failing: {}", failing.join(", ")));
            }
            (!health.is_empty()).then(|| (health.len() - failing.len()) as f64)
        }
    };
    let actual = actual.map(snap);
    let pass = match actual {
        None => {
            reason = Some(if spec.optional {
                format!("{NO_DATA} (optional)")
            } else {
                NO_DATA.to_string()
            });
            spec.optional
        }
        Some(a) if !a.is_finite() => {
            reason = Some("invalid measurement".into());
            false
        }
        Some(a) => target.op.holds(a, target.value),
    };
    MetricReport {
        name: spec.metric.key().to_string(),
        label: spec.metric.label().to_string(),
        target,
        actual: actual.filter(|a| a.is_finite()),
        pass,
        margin: actual.and_then(|a| margin(&target, a)).map(snap),
        optional: spec.optional,
        reason,
    }
}

/// Rounds to 10 significant digits, so unit conversions do not turn an
/// exact boundary into a miss (7 errors in 100 packets is 7.000000000000001
/// after `* 100.0`, which would fail "<= 7%").
fn snap(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 10 - v.abs().log10().ceil() as i32;
    if !(-300..=300).contains(&digits) {
        return v;
    }
    let scale = 10f64.powi(digits.abs());
    if digits >= 0 {
        (v * scale).round() / scale
    } else {
        (v / scale).round() * scale
    }
}

/// Relative headroom of `actual` against `target`, as the runbook's Margin
/// column: P50 7.32 ms against <= 100 ms is 0.9268. Negative when on the
/// failing side; `None` for a zero target, health, or non-finite values.
pub fn margin(target: &Target, actual: f64) -> Option<f64> {
    let t = target.value;
    if t == 0.0 || !t.is_finite() || !actual.is_finite() {
        return None;
    }
    let m = match target.op {
        Comparison::Ge | Comparison::Gt => (actual - t) / t,
        Comparison::Le | Comparison::Lt => (t - actual) / t,
        Comparison::Eq => return None,
    };
    Some(m)
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
