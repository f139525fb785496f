//! PhantomMesh: a userspace WireGuard data plane with an admin plane.
//!
//! Layout (data flows top to bottom on receive, bottom to top on send):
//! - [`io`]: TUN and UDP behind small batch traits, Linux and in-memory backends.
//! - [`device`]: peers, index table, rate limiter, and the pipelines that move
//!   batches between I/O and the protocol core.
//! - [`noise`]: the sans-IO protocol core (handshake, cookies, sessions, timers).
//! - [`routing`]: allowed-IPs longest-prefix table, used both ways.
//! - [`uapi`], [`config`]: configuration surfaces (`wg`'s socket, files).
//! - [`cli`]: key tools, logging, daemonizing.
//! - [`metrics`]: latency histograms and the Prometheus scrape.
//! - [`gates`]: go-live thresholds evaluated over a sliding window.
//! - [`admin`]: the HTTP admin server (health, tunnel tests, metrics, gates).
//! - [`mesh`]: membership through etcd (records, addresses, the watch).
//! - [`daemon`]: process lifecycle of both command lines.
pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod device;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_api;
pub mod gates;
pub mod io;
pub mod loadtest;
pub mod mesh;
pub mod metrics;
pub mod noise;
pub mod routing;
pub mod uapi;
