//! What the mesh agent knows, for the admin plane to read: store health,
//! the members it applied, conflicts, and how fast changes arrive. The
//! agent writes it; `/mesh`, `/metrics`, readiness and the `mesh` gate read
//! it. Probe results are written back by the admin plane's self test, which
//! is what probes mesh peers through the tunnel.
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One other node of the mesh, as its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub public_key: [u8; 32],
    /// `host:port` the node advertises, if any.
    pub endpoint: Option<String>,
    /// Its tunnel addresses (host addresses, no prefix).
    pub addresses: Vec<IpAddr>,
    /// Extra prefixes it routes (its pod CIDR).
    pub allowed_ips: Vec<(IpAddr, u8)>,
}

/// The last probe of one member through the tunnel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    pub at: Instant,
    /// None when no reply came.
    pub rtt: Option<Duration>,
}

/// Upper bounds (seconds) of the convergence-delay histogram buckets.
pub const CONVERGENCE_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A Prometheus-style histogram of convergence delays (cumulative buckets
/// are computed when rendered).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Convergence {
    /// Observations per bucket of [`CONVERGENCE_BUCKETS`] (not cumulative);
    /// the last slot counts those above every bound.
    pub buckets: [u64; CONVERGENCE_BUCKETS.len() + 1],
    pub count: u64,
    pub sum_seconds: f64,
    pub last_seconds: Option<f64>,
}

/// Shared between the mesh agent (writer) and the admin plane (reader).
pub struct MeshState {
    pub node_name: String,
    /// The key prefix of this mesh.
    pub prefix: String,
    store_up: AtomicBool,
    /// The store was reachable at start, or a cached view was loaded:
    /// this node knows its address and its peers.
    started: AtomicBool,
    sync_errors: AtomicU64,
    conflicts: AtomicU64,
    /// This node's tunnel addresses once allocated (or loaded from cache).
    own_addresses: RwLock<Vec<IpAddr>>,
    members: RwLock<Vec<Member>>,
    probes: RwLock<HashMap<[u8; 32], ProbeResult>>,
    convergence: Mutex<Convergence>,
}

impl MeshState {
    pub fn new(node_name: &str, prefix: &str) -> MeshState {
        MeshState {
            node_name: node_name.to_string(),
            prefix: prefix.to_string(),
            store_up: AtomicBool::new(false),
            started: AtomicBool::new(false),
            sync_errors: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            own_addresses: RwLock::new(Vec::new()),
            members: RwLock::new(Vec::new()),
            probes: RwLock::new(HashMap::new()),
            convergence: Mutex::new(Convergence::default()),
        }
    }

    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }
    pub fn set_store_up(&self, up: bool) {
        self.store_up.store(up, Ordering::Relaxed);
    }
    /// Readiness: the node had a view of the mesh to start from.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }
    pub fn set_started(&self) {
        self.started.store(true, Ordering::Relaxed);
    }
    pub fn sync_errors(&self) -> u64 {
        self.sync_errors.load(Ordering::Relaxed)
    }
    pub fn count_sync_error(&self) {
        self.sync_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }
    pub fn count_conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }
    pub fn own_addresses(&self) -> Vec<IpAddr> {
        self.own_addresses.read().clone()
    }
    pub fn set_own_addresses(&self, a: Vec<IpAddr>) {
        *self.own_addresses.write() = a;
    }
    /// The members applied to the device (never this node), sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.members.read().clone()
    }
    pub fn set_members(&self, mut m: Vec<Member>) {
        m.sort_by(|a, b| a.name.cmp(&b.name));
        let keys: std::collections::HashSet<[u8; 32]> = m.iter().map(|x| x.public_key).collect();
        *self.members.write() = m;
        // Forget probe results of members that left.
        self.probes.write().retain(|k, _| keys.contains(k));
    }
    pub fn record_probe(&self, public_key: [u8; 32], result: ProbeResult) {
        self.probes.write().insert(public_key, result);
    }
    pub fn probe(&self, public_key: &[u8; 32]) -> Option<ProbeResult> {
        self.probes.read().get(public_key).copied()
    }
    pub fn observe_convergence(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let mut c = self.convergence.lock();
        let i = CONVERGENCE_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(CONVERGENCE_BUCKETS.len());
        c.buckets[i] += 1;
        c.count += 1;
        c.sum_seconds += secs;
        c.last_seconds = Some(secs);
    }
    pub fn convergence(&self) -> Convergence {
        self.convergence.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_buckets_and_sum() {
        let s = MeshState::new("a", "/p");
        s.observe_convergence(Duration::from_millis(30));
        s.observe_convergence(Duration::from_millis(700));
        s.observe_convergence(Duration::from_secs(100));
        let c = s.convergence();
        assert_eq!(c.count, 3);
        assert_eq!(c.buckets[0], 1);
        assert_eq!(c.buckets[4], 1);
        assert_eq!(c.buckets[CONVERGENCE_BUCKETS.len()], 1);
        assert!((c.sum_seconds - 100.73).abs() < 1e-9);
        assert_eq!(c.last_seconds, Some(100.0));
    }

    #[test]
    fn leaving_members_lose_their_probe_results() {
        let s = MeshState::new("a", "/p");
        let m = |n: &str, k: u8| Member {
            name: n.into(),
            public_key: [k; 32],
            endpoint: None,
            addresses: vec![],
            allowed_ips: vec![],
        };
        s.set_members(vec![m("c", 2), m("b", 1)]);
        assert_eq!(s.members()[0].name, "b");
        let r = ProbeResult {
            at: Instant::now(),
            rtt: Some(Duration::from_millis(1)),
        };
        s.record_probe([1; 32], r);
        s.record_probe([2; 32], r);
        s.set_members(vec![m("b", 1)]);
        assert!(s.probe(&[1; 32]).is_some());
        assert!(s.probe(&[2; 32]).is_none());
    }
}
