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

pub use status::{Member, MeshState, ProbeResult};
pub mod agent;
pub mod alloc;
pub mod cache;
pub mod etcd_store;
pub mod leave;
pub mod mem_store;
pub mod record;
pub mod store;
pub mod view;

pub use agent::{AgentParams, MeshUpdate};
pub use leave::leave;

/// A running agent: stops when [`AgentHandle::stop`] is called or it is
/// dropped.
pub struct AgentHandle {
    stop: tokio::sync::watch::Sender<bool>,
}

impl AgentHandle {
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the agent against etcd on a thread of its own (with a
/// single-threaded runtime: the agent is one task). Updates arrive on the
/// returned channel; run mode applies them.
pub fn start(
    params: AgentParams,
    state: std::sync::Arc<MeshState>,
) -> Result<(AgentHandle, std::sync::mpsc::Receiver<MeshUpdate>), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("mesh agent runtime: {e}"))?;
    let connector = etcd_store::EtcdConnector(params.mesh.clone());
    let agent = agent::Agent::new(params, state, connector, tx, stop_rx);
    std::thread::Builder::new()
        .name("pm-mesh".into())
        .spawn(move || rt.block_on(agent.run()))
        .map_err(|e| format!("mesh agent thread: {e}"))?;
    Ok((AgentHandle { stop: stop_tx }, rx))
}
