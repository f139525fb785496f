//! Mesh membership: nodes find each other through a store (etcd), get
//! their own tunnel address from it, and keep the device's peers in step
//! with it.
//!
//! A control-plane layer beside [`crate::config`], never inside the engine:
//! the agent turns the store's view (or, while the store is away, the view
//! cached on disk) into peer entries of the same kind a config file gives,
//! and run mode applies them through the one path a SIGHUP takes. The
//! device never knows where a peer came from.
//!
//! - [`status`]: what the agent knows, read by the admin plane.
pub mod status;
// TEMPORARY (admin-mesh branch): replaced by the lead's real `leave`.
mod leave_placeholder;
pub use leave_placeholder::leave;

pub use status::{Member, MeshState, ProbeResult};
