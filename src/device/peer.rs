//! A peer as the device sees it: protocol state behind its own lock, plus
//! what the packet path touches without that lock (endpoint, counters).
use super::pipeline::OrderedQueue;
use super::staged::{Staged, StagedBudget};
use crate::noise::peer::PeerState;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Peer {
    /// Unique per device lifetime: a cheap identity for the routing table.
    pub id: u64,
    pub public_key: [u8; 32],
    pub state: Mutex<PeerState>,
    pub endpoint: Mutex<Option<SocketAddr>>,
    /// Inner packets waiting for a session (see [`super::staged`]).
    pub staged: Mutex<Staged>,
    pub rx_bytes: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// A short-lived peer of the admin plane's self test: routed like any
    /// other, but not shown to UAPI clients or in metrics.
    pub hidden: std::sync::atomic::AtomicBool,
    /// Outbound and inbound jobs in read order (see [`super::pipeline`]).
    pub tx: OrderedQueue,
    pub rx: OrderedQueue,
}

impl Peer {
    pub fn new(id: u64, public_key: [u8; 32], state: PeerState, budget: Arc<StagedBudget>) -> Self {
        Peer {
            id,
            public_key,
            state: Mutex::new(state),
            endpoint: Mutex::new(None),
            staged: Mutex::new(Staged::new(budget)),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            hidden: std::sync::atomic::AtomicBool::new(false),
            tx: OrderedQueue::default(),
            rx: OrderedQueue::default(),
        }
    }
    pub fn endpoint(&self) -> Option<SocketAddr> {
        *self.endpoint.lock()
    }
    pub fn set_endpoint(&self, addr: SocketAddr) {
        let mut e = self.endpoint.lock();
        if *e != Some(addr) {
            *e = Some(addr);
        }
    }
    pub fn is_hidden(&self) -> bool {
        self.hidden.load(Ordering::Relaxed)
    }
    pub fn add_rx(&self, n: u64) {
        self.rx_bytes.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_tx(&self, n: u64) {
        self.tx_bytes.fetch_add(n, Ordering::Relaxed);
    }
}

/// Routing-table value: a peer compared by identity, not by content.
#[derive(Clone)]
pub struct PeerRef(pub std::sync::Arc<Peer>);

impl PartialEq for PeerRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
