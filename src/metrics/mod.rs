//! Prometheus metrics for the admin plane's `/metrics`.
//!
//! - [`histogram`]: the device's lock-free latency histograms
//!   ([`DeviceHistograms`], defined in `device::histogram`, re-exported here).
//! - [`exposition`]: a writer for the text format (0.0.4).
//! - [`render()`]: the whole scrape for a device, from counters it already keeps.
//! - [`process`]: the standard `process_*` families, from `/proc/self`.
//! - [`parse`]: a strict reader of that format, to check what we write.
//!
//! Hand-written rather than a metrics crate: the scrape is a pure function
//! of device state, so there is no registry, no upkeep task, and no
//! summary-by-default pitfall.
pub mod exposition;
pub mod parse;
pub mod process;
pub mod render;

pub use exposition::CONTENT_TYPE;
// The histograms live with the device that records into them; metrics
// renders them.
pub use crate::device::histogram::{self, DeviceHistograms, Histogram, HistogramSnapshot};
pub use process::ProcessStats;
pub use render::{render, render_with, Extra, MeshMetrics};
