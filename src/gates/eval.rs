//! Gate evaluation: config + measurements in, [`Report`] out. Pure.
use super::config::{GatesConfig, MetricKind, MetricSpec};
use super::report::{Comparison, GateReport, MetricReport, Report, SampleCounts, Target};
use super::resources::Resources;
use super::window::Summary;

/// Reason given for a metric without samples.
pub const NO_DATA: &str = "no data";
/// Reason given for `mesh_peers` on a node without a mesh.
pub const NOT_APPLICABLE: &str = "not applicable: no mesh configured";
/// At most this many unhealthy members are named in a reason.
const MAX_NAMED: usize = 5;

/// The mesh as the `mesh_peers` gate metric sees it (the admin plane
/// computes it from the mesh state and the device).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshHealth {
    /// The membership store answers.
    pub store_up: bool,
    /// Members known (never this node).
    pub members: usize,
    /// Members with a recent handshake and a recent answered probe.
    pub healthy: usize,
    /// Why the others are not: `"name: reason"`, in member order.
    pub unhealthy: Vec<String>,
}

impl MeshHealth {
    /// Healthy share in percent; a mesh of one (no members) is 100 %.
    pub fn healthy_percent(&self) -> f64 {
        if self.members == 0 {
            100.0
        } else {
            self.healthy as f64 * 100.0 / self.members as f64
        }
    }
}

/// Evaluates every gate in `config`. `health` lists (check name, ok).
///
/// A metric with no data fails with reason "no data" unless the config
/// marks it optional; an empty health list is "no data" too. The report
/// passes only when every gate passes. No mesh is known: see
/// [`evaluate_with_mesh`].
pub fn evaluate<S: AsRef<str>>(
    config: &GatesConfig,
    summary: &Summary,
    resources: &Resources,
    health: &[(S, bool)],
) -> Report {
    evaluate_with_mesh(config, summary, resources, health, None)
}

/// [`evaluate`] with the mesh's health; `None` when no mesh is configured
/// (then `mesh_peers` has no data: "not applicable", which passes when the
/// config lists it as optional, as the shipped config does).
pub fn evaluate_with_mesh<S: AsRef<str>>(
    config: &GatesConfig,
    summary: &Summary,
    resources: &Resources,
    health: &[(S, bool)],
    mesh: Option<&MeshHealth>,
) -> Report {
    let gates: Vec<GateReport> = config
        .gates
        .iter()
        .map(|g| {
            let metrics: Vec<MetricReport> = g
                .metrics
                .iter()
                .map(|m| evaluate_metric(m, summary, resources, health, mesh))
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
    mesh: Option<&MeshHealth>,
) -> MetricReport {
    let mut target = spec.target;
    // The mesh store being down fails `mesh_peers` whatever the share.
    let mut store_down = false;
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
        MetricKind::MeshPeers => mesh.map(|m| {
            let mut why = Vec::new();
            if !m.store_up {
                store_down = true;
                why.push("mesh store unreachable".to_string());
            }
            if !m.unhealthy.is_empty() {
                let mut named = m.unhealthy[..m.unhealthy.len().min(MAX_NAMED)].join(", ");
                if m.unhealthy.len() > MAX_NAMED {
                    named.push_str(&format!(" and {} more", m.unhealthy.len() - MAX_NAMED));
                }
                why.push(format!(
                    "{} of {} members unhealthy: {named}",
                    m.unhealthy.len(),
                    m.members
                ));
            }
            if !why.is_empty() {
                reason = Some(why.join("; "));
            }
            m.healthy_percent()
        }),
    };
    let actual = actual.map(snap);
    let pass = match actual {
        None if spec.metric == MetricKind::MeshPeers => {
            reason = Some(if spec.optional {
                NOT_APPLICABLE.to_string()
            } else {
                format!("{NO_DATA}: no mesh configured")
            });
            spec.optional
        }
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
        Some(a) => target.op.holds(a, target.value) && !store_down,
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
