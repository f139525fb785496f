//! The gate report: what `/gates` answers and `phantommesh gate` reads.
//!
//! Shaped for rollout tools: a top-level `pass` boolean (Argo Rollouts'
//! web metric: `successCondition: result == true` with `jsonPath: "{$.pass}"`),
//! and a `pass` per gate (`{$.gates[?(@.name=='performance')].pass}`).
//! Fields are added, never renamed; readers ignore fields they do not know.
use serde::{Deserialize, Serialize};

/// How the actual value is compared with the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
    /// Health checks: every check must pass (`actual == value`).
    #[serde(rename = "==")]
    Eq,
}

impl Comparison {
    /// Whether `actual` meets `target`; NaN never does.
    pub fn holds(self, actual: f64, target: f64) -> bool {
        match self {
            Comparison::Ge => actual >= target,
            Comparison::Gt => actual > target,
            Comparison::Le => actual <= target,
            Comparison::Lt => actual < target,
            Comparison::Eq => actual == target,
        }
    }

    /// The runbook's symbols: ≥ ≤ > <.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Ge => "≥",
            Comparison::Gt => ">",
            Comparison::Le => "≤",
            Comparison::Lt => "<",
            Comparison::Eq => "=",
        }
    }
}

/// Unit of a target and of the matching actual value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// 0..=100.
    Percent,
    /// Milliseconds.
    Ms,
    /// Requests per second.
    PerSecond,
    /// Number of passing health checks.
    Checks,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub value: f64,
    pub op: Comparison,
    pub unit: Unit,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricReport {
    /// Stable key: `success_rate`, `p99_latency`, `memory`, `health`, ...
    pub name: String,
    /// Human label, as in the runbook's tables ("P99 Latency").
    pub label: String,
    pub target: Target,
    /// In the target's unit; `null` when the window had no data.
    pub actual: Option<f64>,
    pub pass: bool,
    /// Relative headroom: `(target - actual) / target` for upper limits,
    /// `(actual - target) / target` for lower limits; negative when
    /// failing. `null` without data, for a zero target, and for health.
    pub margin: Option<f64>,
    /// Passes without data (stated in the gates config).
    #[serde(default)]
    pub optional: bool,
    /// Why it failed or has no value ("no data", failing check names).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub name: String,
    pub title: String,
    pub pass: bool,
    pub metrics: Vec<MetricReport>,
}

/// Sample counts behind the numbers, so a reader can judge them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleCounts {
    pub attempts: u64,
    pub packets: u64,
    pub requests: u64,
    pub latency: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// True when every gate passes (and there is at least one gate).
    pub pass: bool,
    pub window_seconds: f64,
    pub samples: SampleCounts,
    pub gates: Vec<GateReport>,
}

impl Report {
    pub fn gate(&self, name: &str) -> Option<&GateReport> {
        self.gates.iter().find(|g| g.name == name)
    }

    /// The report narrowed to one gate, with `pass` recomputed; `None`
    /// when the gate is not in the report.
    pub fn only(&self, name: &str) -> Option<Report> {
        let g = self.gate(name)?.clone();
        Some(Report {
            pass: g.pass,
            window_seconds: self.window_seconds,
            samples: self.samples,
            gates: vec![g],
        })
    }

    /// Serialized as pretty JSON (what `/gates` serves).
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail; NaN/inf would become
        // null, which is why margins and actuals are kept finite.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{\"pass\":false}".into())
    }
}
