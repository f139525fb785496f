//! Prometheus metrics for the admin plane's `/metrics`.
//!
//! - [`histogram`]: lock-free latency histograms the pipelines record into
//!   ([`DeviceHistograms`]).
//! - [`exposition`]: a writer for the text format (0.0.4).
//! - [`render()`]: the whole scrape for a device, from counters it already keeps.
//! - [`process`]: the standard `process_*` families, from `/proc/self`.
//! - [`parse`]: a strict reader of that format, to check what we write.
//!
//! Hand-written rather than a metrics crate: the scrape is a pure function
//! of device state, so there is no registry, no upkeep task, and no
//! summary-by-default pitfall.
pub mod exposition;
pub mod histogram;
pub mod parse;
pub mod process;
pub mod render;

pub use exposition::CONTENT_TYPE;
pub use histogram::{DeviceHistograms, Histogram, HistogramSnapshot};
pub use process::ProcessStats;
pub use render::{render, render_with, Extra, MeshMetrics};
