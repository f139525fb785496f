//! Gates config (`config/gates.toml`): the window and each gate's
//! thresholds. Pure parser with `file:line` errors like the daemon's own
//! config; the shipped file is embedded as the default.
use super::report::{Comparison, Target, Unit};
use super::window::WindowConfig;
use crate::config::{line_of, ConfigError};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// The shipped gates config, used when no file is given.
pub const DEFAULT_GATES_TOML: &str = include_str!("../../config/gates.toml");
const DEFAULT_NAME: &str = "<built-in gates.toml>";

/// What a gate can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    SuccessRate,
    ErrorRate,
    P50Latency,
    P99Latency,
    Throughput,
    Memory,
    Cpu,
    Health,
    /// Share of mesh members reachable through the tunnel (recent
    /// handshake and an answered probe); needs the store up.
    MeshPeers,
}

impl MetricKind {
    pub const ALL: [MetricKind; 9] = [
        MetricKind::SuccessRate,
        MetricKind::ErrorRate,
        MetricKind::P50Latency,
        MetricKind::P99Latency,
        MetricKind::Throughput,
        MetricKind::Memory,
        MetricKind::Cpu,
        MetricKind::Health,
        MetricKind::MeshPeers,
    ];

    /// The config key and the report's metric `name`.
    pub fn key(self) -> &'static str {
        match self {
            MetricKind::SuccessRate => "success_rate",
            MetricKind::ErrorRate => "error_rate",
            MetricKind::P50Latency => "p50_latency",
            MetricKind::P99Latency => "p99_latency",
            MetricKind::Throughput => "throughput",
            MetricKind::Memory => "memory",
            MetricKind::Cpu => "cpu",
            MetricKind::Health => "health",
            MetricKind::MeshPeers => "mesh_peers",
        }
    }

    /// The label in the runbook's tables.
    pub fn label(self) -> &'static str {
        match self {
            MetricKind::SuccessRate => "Success Rate",
            MetricKind::ErrorRate => "Error Rate",
            MetricKind::P50Latency => "P50 Latency",
            MetricKind::P99Latency => "P99 Latency",
            MetricKind::Throughput => "Throughput",
            MetricKind::Memory => "Memory Usage",
            MetricKind::Cpu => "CPU Usage",
            MetricKind::Health => "Health Checks",
            MetricKind::MeshPeers => "Mesh Peers Healthy",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            MetricKind::SuccessRate | MetricKind::ErrorRate => Unit::Percent,
            MetricKind::MeshPeers => Unit::Percent,
            MetricKind::Memory | MetricKind::Cpu => Unit::Percent,
            MetricKind::P50Latency | MetricKind::P99Latency => Unit::Ms,
            MetricKind::Throughput => Unit::PerSecond,
            MetricKind::Health => Unit::Checks,
        }
    }

    pub fn from_key(key: &str) -> Option<MetricKind> {
        MetricKind::ALL.into_iter().find(|m| m.key() == key)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricSpec {
    pub metric: MetricKind,
    /// For health the value is a placeholder: the evaluation sets it to the
    /// number of checks.
    pub target: Target,
    pub optional: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GateSpec {
    pub name: String,
    pub title: String,
    /// In file order.
    pub metrics: Vec<MetricSpec>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GatesConfig {
    pub window: WindowConfig,
    pub gates: Vec<GateSpec>,
}

impl Default for GatesConfig {
    /// The embedded `config/gates.toml` (a test keeps it parseable).
    fn default() -> Self {
        Self::parse(DEFAULT_GATES_TOML, DEFAULT_NAME).unwrap_or_else(|_| GatesConfig {
            window: WindowConfig::default(),
            gates: Vec::new(),
        })
    }
}

impl GatesConfig {
    /// The built-in config, or the file at `path`.
    pub fn load(path: Option<&Path>) -> Result<GatesConfig, ConfigError> {
        let Some(path) = path else {
            return Self::parse(DEFAULT_GATES_TOML, DEFAULT_NAME);
        };
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&file, 0, format!("cannot read gates config: {e}")))?;
        Self::parse(&text, &file)
    }

    /// Parses gates TOML; `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<GatesConfig, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            ConfigError::new(file, line, e.message().trim_end().replace('\n', "; "))
        })?;
        let at = |span: Range<usize>, msg: String| {
            ConfigError::new(file, line_of(text, span.start), msg)
        };

        let mut window = WindowConfig::default();
        if let Some(w) = raw.window {
            if let Some(l) = &w.length {
                window.length = parse_duration(l.get_ref()).map_err(|m| at(l.span(), m))?;
            }
            if let Some(s) = &w.slot {
                window.slot = parse_duration(s.get_ref()).map_err(|m| at(s.span(), m))?;
            }
            let span = w
                .length
                .as_ref()
                .or(w.slot.as_ref())
                .map_or(0..0, |v| v.span());
            window
                .validate()
                .map_err(|m| at(span, format!("invalid [window]: {m}")))?;
        }

        if raw.gate.is_empty() {
            return Err(ConfigError::new(
                file,
                0,
                "no [[gate]] tables: nothing to evaluate",
            ));
        }
        let mut gates: Vec<GateSpec> = Vec::new();
        let mut name_lines: Vec<usize> = Vec::new();
        for g in raw.gate {
            let name = g.name.get_ref();
            validate_gate_name(name).map_err(|m| at(g.name.span(), m))?;
            if let Some(i) = gates.iter().position(|x| &x.name == name) {
                let msg = format!(
                    "duplicate gate {name:?} (first given on line {})",
                    name_lines[i]
                );
                return Err(at(g.name.span(), msg));
            }
            let mut found: Vec<(usize, MetricKind, Target)> = Vec::new();
            for (kind, value) in g.thresholds() {
                let Some(v) = value else { continue };
                let target = parse_threshold(kind, v.get_ref()).map_err(|m| at(v.span(), m))?;
                found.push((v.span().start, kind, target));
            }
            if found.is_empty() {
                return Err(at(
                    g.name.span(),
                    format!("gate {name:?} sets no metric thresholds"),
                ));
            }
            found.sort_by_key(|f| f.0);
            let mut metrics: Vec<MetricSpec> = found
                .into_iter()
                .map(|(_, metric, target)| MetricSpec {
                    metric,
                    target,
                    optional: false,
                })
                .collect();
            for o in g.optional.iter().flatten() {
                let key = o.get_ref();
                let Some(m) = metrics.iter_mut().find(|m| m.metric.key() == key.as_str()) else {
                    let msg = if MetricKind::from_key(key).is_some() {
                        format!("optional metric {key:?} has no threshold in gate {name:?}")
                    } else {
                        format!("unknown metric {key:?} in optional")
                    };
                    return Err(at(o.span(), msg));
                };
                m.optional = true;
            }
            let title = match &g.title {
                Some(t) if t.get_ref().trim().is_empty() => {
                    return Err(at(t.span(), "title must not be empty".into()))
                }
                Some(t) => t.get_ref().clone(),
                None => name.clone(),
            };
            name_lines.push(line_of(text, g.name.span().start));
            gates.push(GateSpec {
                name: name.clone(),
                title,
                metrics,
            });
        }
        Ok(GatesConfig { window, gates })
    }

    pub fn gate(&self, name: &str) -> Option<&GateSpec> {
        self.gates.iter().find(|g| g.name == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    window: Option<RawWindow>,
    #[serde(default)]
    gate: Vec<RawGate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    length: Option<Spanned<String>>,
    slot: Option<Spanned<String>>,
}

type Threshold = Option<Spanned<String>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    name: Spanned<String>,
    title: Option<Spanned<String>>,
    optional: Option<Vec<Spanned<String>>>,
    success_rate: Threshold,
    error_rate: Threshold,
    p50_latency: Threshold,
    p99_latency: Threshold,
    throughput: Threshold,
    memory: Threshold,
    cpu: Threshold,
    health: Threshold,
    mesh_peers: Threshold,
}

impl RawGate {
    fn thresholds(&self) -> [(MetricKind, &Threshold); 9] {
        [
            (MetricKind::SuccessRate, &self.success_rate),
            (MetricKind::ErrorRate, &self.error_rate),
            (MetricKind::P50Latency, &self.p50_latency),
            (MetricKind::P99Latency, &self.p99_latency),
            (MetricKind::Throughput, &self.throughput),
            (MetricKind::Memory, &self.memory),
            (MetricKind::Cpu, &self.cpu),
            (MetricKind::Health, &self.health),
            (MetricKind::MeshPeers, &self.mesh_peers),
        ]
    }
}

fn validate_gate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid gate name {name:?}: 1 to 32 characters from [a-z0-9_-]"
        ))
    }
}

/// `"5m"`, `"30s"`, `"1.5s"`, `"500ms"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid duration {s:?}: expected a number and ms, s, m or h (\"5m\")");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let secs = n * scale;
    if !secs.is_finite() || secs > 7.0 * 86400.0 {
        return Err(format!("invalid duration {s:?}: at most 7 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `">= 99%"`, `"< 200ms"`, `">= 100/s"`, or `"all"` for health.
pub fn parse_threshold(metric: MetricKind, s: &str) -> Result<Target, String> {
    let key = metric.key();
    let t = s.trim();
    if metric == MetricKind::Health {
        return if t == "all" {
            Ok(Target {
                value: 0.0,
                op: Comparison::Eq,
                unit: Unit::Checks,
            })
        } else {
            Err(format!(
                "invalid {key} {s:?}: the only threshold is \"all\""
            ))
        };
    }
    let (op, rest) = [
        (">=", Comparison::Ge),
        ("≥", Comparison::Ge),
        ("<=", Comparison::Le),
        ("≤", Comparison::Le),
        (">", Comparison::Gt),
        ("<", Comparison::Lt),
    ]
    .into_iter()
    .find_map(|(p, op)| t.strip_prefix(p).map(|r| (op, r.trim_start())))
    .ok_or_else(|| format!("invalid {key} {s:?}: must start with >=, >, <= or <"))?;
    let split = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, unit) = rest.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid {key} {s:?}: expected a number after the comparison"))?;
    let unit = unit.trim();
    let value = match (metric.unit(), unit) {
        (Unit::Percent, "%") if value <= 100.0 => value,
        (Unit::Percent, "%") => return Err(format!("invalid {key} {s:?}: more than 100%")),
        (Unit::Ms, "ms") => value,
        (Unit::Ms, "s") => value * 1000.0,
        (Unit::PerSecond, "/s") => value,
        (u, _) => {
            let want = match u {
                Unit::Percent => "%",
                Unit::Ms => "ms or s",
                _ => "/s",
            };
            return Err(format!("invalid {key} {s:?}: unit must be {want}"));
        }
    };
    Ok(Target {
        value,
        op,
        unit: metric.unit(),
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
