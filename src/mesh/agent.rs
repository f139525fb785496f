//! The mesh agent: one task that keeps this node's record alive in the
//! store, watches the other records, and hands the members it should peer
//! with to run mode as [`MeshUpdate`]s.
//!
//! The store can fail; the tunnels must not. Every store error ends the
//! current session and is retried with capped, jittered backoff, while the
//! last members stay applied: a peer leaves only when a reachable store
//! says it is gone. The view is cached on disk after each change, so a
//! node that restarts while the store is down starts from what it knew.
use super::alloc::allocate;
use super::cache::{self, Cache};
use super::record::{node_key, nodes_prefix, unix_ms, NodeRecord};
use super::status::{Member, MeshState};
use super::store::{LeaseId, PutIf, Store, StoreResult, Watch, WatchBatch};
use super::view::{Applied, View};
use crate::config::MeshConfig;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What the agent needs besides `[mesh]`.
#[derive(Debug, Clone)]
pub struct AgentParams {
    pub mesh: MeshConfig,
    pub public_key: [u8; 32],
    /// The device's UDP port (appended to a bare advertise address).
    pub listen_port: u16,
    pub cache_path: PathBuf,
}

/// What run mode applies: this node's tunnel addresses (with the mesh
/// network's prefix length; empty until known) and the members to peer
/// with (never this node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshUpdate {
    pub addresses: Vec<(IpAddr, u8)>,
    pub members: Vec<Member>,
}

/// Opens a store session (etcd: a client; tests: an in-memory handle).
pub trait Connector: Send {
    type S: Store;
    fn connect(&mut self) -> impl Future<Output = StoreResult<Self::S>> + Send;
}

/// First and longest wait between reconnects.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

pub struct Agent<C: Connector> {
    p: AgentParams,
    state: Arc<MeshState>,
    connector: C,
    view: View,
    own: Vec<IpAddr>,
    /// The addresses the store holds for this node's name (what a claim
    /// publishes; `own` becomes this once the claim succeeds).
    allocated: Vec<IpAddr>,
    lease: Option<LeaseId>,
    /// This node's record is in the store under its lease.
    claimed: bool,
    /// Another node (another public key) holds this node's name.
    name_conflict: bool,
    updates: std::sync::mpsc::Sender<MeshUpdate>,
    last_sent: Option<MeshUpdate>,
    last_members: Vec<Member>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl<C: Connector> Agent<C> {
    pub fn new(
        p: AgentParams,
        state: Arc<MeshState>,
        connector: C,
        updates: std::sync::mpsc::Sender<MeshUpdate>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let view = View::new(&p.mesh.prefix, &p.mesh.node_name, p.public_key);
        Agent {
            p,
            state,
            connector,
            view,
            own: Vec::new(),
            allocated: Vec::new(),
            lease: None,
            claimed: false,
            name_conflict: false,
            updates,
            last_sent: None,
            last_members: Vec::new(),
            stop,
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        self.load_cache();
        let mut backoff = BACKOFF_MIN;
        let mut failures = 0u64;
        loop {
            let result = self.session(&mut backoff).await;
            if self.stopped() {
                return;
            }
            if let Err(e) = result {
                let was_up = self.state.store_up();
                self.state.set_store_up(false);
                self.state.count_sync_error();
                self.claimed = false;
                failures += 1;
                // Log the fall and then every 10th retry, not each one.
                if was_up || failures == 1 || failures % 10 == 0 {
                    tracing::warn!(error = %e, retries = failures, "mesh store unreachable; keeping every peer and retrying");
                }
            } else {
                failures = 0;
            }
            let wait = jitter(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            if self.stopped() {
                return;
            }
        }
    }

    fn load_cache(&mut self) {
        let m = &self.p.mesh;
        match cache::load(&self.p.cache_path, &m.prefix, &m.node_name) {
            Ok(Some(c)) => {
                self.own = c.addresses.clone();
                self.view.load(c.entries(), c.revision);
                tracing::info!(path = %self.p.cache_path.display(), records = c.nodes.len(), "loaded the cached mesh view");
                self.state.set_started();
                self.publish();
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}"),
        }
    }

    fn own_member(&self) -> Member {
        let endpoint = self.p.mesh.advertise_endpoint.as_ref().map(|e| {
            if e.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
                format!("[{e}]:{}", self.p.listen_port)
            } else if e.contains(':') {
                e.clone()
            } else {
                format!("{e}:{}", self.p.listen_port)
            }
        });
        Member {
            name: self.p.mesh.node_name.clone(),
            public_key: self.p.public_key,
            endpoint,
            addresses: self.own.clone(),
            allowed_ips: self.p.mesh.allowed_ips.clone(),
        }
    }

    /// One connection's life: join, list, then follow the watch until an
    /// error (returned) or stop (Ok).
    async fn session(&mut self, backoff: &mut Duration) -> StoreResult<()> {
        let mut store = self.connector.connect().await?;
        let m = self.p.mesh.clone();
        let mut own = Vec::new();
        for &net in &m.network {
            own.push(allocate(&mut store, &m.prefix, &m.node_name, net).await?);
        }
        if own != self.own && !self.own.is_empty() {
            tracing::warn!(cached = ?self.own, store = ?own, "the store gives this node other addresses than its cache");
        }
        self.allocated = own;
        self.claim(&mut store).await?;
        let prefix = nodes_prefix(&m.prefix);
        let mut rev = self.relist(&mut store).await?;
        self.state.set_store_up(true);
        self.state.set_started();
        *backoff = BACKOFF_MIN;
        let mut watch = store.watch(&prefix, rev + 1).await?;
        let period = Duration::from_secs(u64::from(m.lease_ttl)) / 3;
        let mut tick = tokio::time::interval(period.max(Duration::from_millis(500)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                batch = watch.next() => match batch? {
                    WatchBatch::Events(evs) => {
                        let applied = self.view.apply_events(&evs);
                        self.after(&mut store, applied).await?;
                    }
                    WatchBatch::Compacted => {
                        tracing::info!("mesh watch compacted away; listing again");
                        rev = self.relist(&mut store).await?;
                        watch = store.watch(&prefix, rev + 1).await?;
                    }
                },
                _ = tick.tick() => {
                    let alive = match self.lease {
                        Some(l) => store.keep_alive(l).await?,
                        None => false,
                    };
                    if !alive || !self.claimed {
                        self.claim(&mut store).await?;
                    }
                }
                _ = stop.changed() => return Ok(()),
            }
        }
    }

    async fn relist(&mut self, store: &mut C::S) -> StoreResult<i64> {
        let (kvs, rev) = store.list(&nodes_prefix(&self.p.mesh.prefix)).await?;
        let applied = self.view.apply_list(&kvs, rev);
        if applied.stale_list {
            tracing::warn!(
                store_revision = rev,
                seen = self.view.revision(),
                "the store's view is older than this node's; keeping every peer it lacks"
            );
        }
        self.after(store, applied).await?;
        self.publish();
        Ok(rev)
    }

    async fn after(&mut self, store: &mut C::S, a: Applied) -> StoreResult<()> {
        for reason in &a.invalid {
            tracing::warn!("ignoring a mesh record: {reason}");
        }
        let now = unix_ms();
        for (_, written) in &a.updated {
            if *written > 0 && now >= *written && now - written < 3_600_000 {
                self.state
                    .observe_convergence(Duration::from_millis(now - written));
            }
        }
        if a.own_record_touched {
            self.claimed = false;
            self.claim(store).await?;
        }
        if a.changed {
            self.publish();
        }
        Ok(())
    }

    /// Puts this node's record under its lease: created if absent, taken
    /// over if it is this node's own (same public key) from an earlier run.
    /// Another node's record under this name is a conflict: logged and
    /// counted once, and retried each keep-alive tick.
    async fn claim(&mut self, store: &mut C::S) -> StoreResult<()> {
        if let Some(l) = self.lease {
            if !store.keep_alive(l).await? {
                self.lease = None;
            }
        }
        let lease = match self.lease {
            Some(l) => l,
            None => {
                let l = store.grant(self.p.mesh.lease_ttl).await?;
                self.lease = Some(l);
                l
            }
        };
        let previous = std::mem::replace(&mut self.own, self.allocated.clone());
        let record = NodeRecord::from_member(&self.own_member(), unix_ms()).to_json();
        let key = node_key(&self.p.mesh.prefix, &self.p.mesh.node_name);
        let mut expect = 0;
        for _ in 0..2 {
            match store
                .put_if(&key, record.clone(), Some(lease), expect)
                .await?
            {
                PutIf::Written => {
                    if !self.claimed {
                        tracing::info!(node = %self.p.mesh.node_name, addresses = ?self.own, "published this node in the mesh");
                    }
                    self.claimed = true;
                    if self.name_conflict {
                        tracing::info!("the node name conflict is over");
                        self.name_conflict = false;
                    }
                    self.publish();
                    return Ok(());
                }
                PutIf::Refused(Some(kv)) => {
                    let name = &self.p.mesh.node_name;
                    let mine = NodeRecord::parse(&key, name, &kv.value)
                        .is_ok_and(|m| m.public_key == self.p.public_key);
                    if mine || NodeRecord::parse(&key, name, &kv.value).is_err() {
                        // Our record from an earlier run (or garbage under
                        // our name): take it over.
                        expect = kv.create_revision;
                        continue;
                    }
                    if !self.name_conflict {
                        self.name_conflict = true;
                        self.state.count_conflict();
                        tracing::error!(node = %name, "another node (another public key) holds this node's name in the mesh; not publishing until its record expires. Give every node its own node_name");
                    }
                    self.claimed = false;
                    // Keep what this node used before (its cache or an
                    // earlier claim); a fresh node takes no address.
                    self.own = previous;
                    return Ok(());
                }
                PutIf::Refused(None) => {
                    // The lease died between the check and the put.
                    self.lease = None;
                    self.own = previous;
                    return Ok(());
                }
            }
        }
        self.own = previous;
        Ok(())
    }

    /// Hands the current members to run mode (when they or this node's
    /// addresses changed) and caches the view.
    fn publish(&mut self) {
        let (members, conflicts) = self.view.members();
        for name in conflicts {
            self.state.count_conflict();
            tracing::error!(node = %name, "two mesh records carry one public key; ignoring the newer one");
        }
        let added: Vec<&str> = members
            .iter()
            .filter(|m| !self.last_members.iter().any(|o| o.name == m.name))
            .map(|m| m.name.as_str())
            .collect();
        let removed: Vec<&str> = self
            .last_members
            .iter()
            .filter(|o| !members.iter().any(|m| m.name == o.name))
            .map(|m| m.name.as_str())
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(joined = ?added, left = ?removed, members = members.len(), "mesh membership changed");
        }
        self.last_members = members.clone();
        self.state.set_members(members.clone());
        self.state.set_own_addresses(self.own.clone());
        let addresses = self
            .own
            .iter()
            .filter_map(|ip| {
                let net = self
                    .p
                    .mesh
                    .network
                    .iter()
                    .find(|n| crate::config::prefix_contains(**n, *ip))?;
                Some((*ip, net.1))
            })
            .collect();
        let update = MeshUpdate { addresses, members };
        if self.last_sent.as_ref() != Some(&update) {
            let _ = self.updates.send(update.clone());
            self.last_sent = Some(update);
            let entries: Vec<_> = self.view.entries().collect();
            let c = Cache::new(
                &self.p.mesh.prefix,
                &self.p.mesh.node_name,
                self.own.clone(),
                self.view.revision(),
                &entries,
            );
            if let Err(e) = cache::save(&self.p.cache_path, &c) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// A wait between `d/2` and `d`, so that nodes cut off together do not
/// come back in step.
fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    let ms = d.as_millis().max(2) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;

/// Helpers shared by the mesh module's tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::mesh::mem_store::MemStore;

    pub fn mesh_config(name: &str, prefix: &str, network: &str) -> MeshConfig {
        MeshConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password_file: None,
            prefix: prefix.into(),
            node_name: name.into(),
            advertise_endpoint: Some("10.0.0.1".into()),
            network: vec![crate::config::parse_cidr(network).unwrap()],
            allowed_ips: vec![],
            lease_ttl: 6,
            persistent_keepalive: 25,
            cache_file: None,
        }
    }

    /// Each session gets a handle on the shared in-memory store; while
    /// the store is down, connecting fails as it would against etcd.
    impl Connector for MemStore {
        type S = MemStore;
        async fn connect(&mut self) -> StoreResult<MemStore> {
            let mut s = self.clone();
            s.list("/").await?;
            Ok(s)
        }
    }
}
