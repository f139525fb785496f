//! Go-live gates: a sliding measurement window, the gates config, their
//! evaluation into a JSON report, and the runbook-style table.
//!
//! Shared by the daemon's `/gates` endpoint, `phantommesh gate` and the
//! load test. Everything here is sans-IO except [`resources::Sampler`]
//! (reads `/proc` and cgroup files) and [`fetch`] (the CLI's HTTP GET).
//!
//! Daemon wiring, in short:
//! ```no_run
//! use phantommesh::gates::{evaluate, GatesConfig, Sampler, Window};
//! use std::time::Instant;
//! let cfg = GatesConfig::load(None).expect("built-in config parses");
//! let window = Window::new(cfg.window, Instant::now());
//! window.record_attempt(Instant::now(), true);
//! window.record_latency(Instant::now(), 0.004);
//! let mut sampler = Sampler::new();
//! let now = Instant::now();
//! let report = evaluate(&cfg, &window.summary(now), &sampler.sample(now), &[("tun", true)]);
//! println!("{}", report.to_json());
//! ```
//!
//! No data is a failure: a metric without samples fails with reason
//! "no data" unless the config lists it as optional.
pub mod config;
pub mod eval;
pub mod fetch;
pub mod fetch_proxy;
#[cfg(test)]
pub mod fetch_stub;
pub mod fetch_trust;
pub mod histogram;
pub mod report;
pub mod resources;
pub mod table;
pub mod window;

pub use config::{GateSpec, GatesConfig, MetricKind, MetricSpec, DEFAULT_GATES_TOML};
pub use eval::{evaluate, evaluate_with_mesh, margin, MeshHealth, NOT_APPLICABLE, NO_DATA};
pub use histogram::Histogram;
pub use report::{Comparison, GateReport, MetricReport, Report, SampleCounts, Target, Unit};
pub use resources::{Resources, Sampler};
pub use table::{render_report, render_table};
pub use window::{Summary, Window, WindowConfig};
