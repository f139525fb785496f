//! A peer as the device sees it: protocol state behind its own lock, plus
//! what the packet path touches without that lock (endpoint, counters).
use super::pipeline::OrderedQueue;
use super::staged::{Staged, StagedBudget};
use crate::io::{Endpoint, LocalAddr};
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
    /// Where to send, and from which local address (the sticky source,
    /// learned from the peer's authenticated packets).
    pub endpoint: Mutex<Option<Endpoint>>,
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
    /// The time this peer's entry in the device's deadline heap fires
    /// (see [`super::deadlines`]): lets a state change that moved no timer
    /// earlier skip the heap with one atomic load.
    pub armed: AtomicU64,
    /// Set (under `state`) when the peer is removed. A thread that looked
    /// the peer up just before (a packet in flight, a queued handshake
    /// message) may still call into its state afterwards; the driver then
    /// undoes whatever that call started (see [`super::driver`]), so no
    /// receiver index outlives the peer.
    pub removed: std::sync::atomic::AtomicBool,
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
            armed: AtomicU64::new(super::deadlines::UNARMED),
            removed: std::sync::atomic::AtomicBool::new(false),
        }
    }
    /// The address to send to.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint.lock().map(|e| e.dst)
    }
    /// The address to send to and the source to send from.
    pub fn full_endpoint(&self) -> Option<Endpoint> {
        *self.endpoint.lock()
    }
    /// A configured endpoint: no source is known for it yet.
    pub fn set_endpoint(&self, addr: SocketAddr) {
        *self.endpoint.lock() = Some(Endpoint::to(addr));
    }
    /// Where an authenticated packet came from, and where it arrived (the
    /// source replies leave from). Returns the endpoint it replaces, so the
    /// receive path learns of a roam under the same lock.
    pub fn set_seen_endpoint(&self, ep: Endpoint) -> Option<Endpoint> {
        let mut e = self.endpoint.lock();
        let old = *e;
        if old != Some(ep) {
            *e = Some(ep);
        }
        old
    }
    /// Forgets the source `src` after the kernel refused it (the address is
    /// gone): the route picks one until the next packet teaches a new one.
    pub fn clear_source(&self, src: Option<LocalAddr>) {
        let mut e = self.endpoint.lock();
        if let Some(ep) = e.as_mut().filter(|ep| src.is_some() && ep.src == src) {
            ep.src = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        let st = PeerState::new(None, [9u8; 32].into(), [0u8; 32], 1);
        Peer::new(1, [9; 32], st, Arc::new(StagedBudget::new(1 << 20)))
    }

    #[test]
    fn the_sticky_source_is_learned_configured_away_and_forgotten_when_refused() {
        let p = peer();
        let dst: SocketAddr = "10.0.0.2:51820".parse().unwrap();
        let src = Some(LocalAddr {
            ip: "10.0.0.11".parse().unwrap(),
            ifindex: 2,
        });
        p.set_seen_endpoint(Endpoint { dst, src });
        assert_eq!(p.full_endpoint(), Some(Endpoint { dst, src }));
        assert_eq!(p.endpoint(), Some(dst));
        // A refusal of another source (an older send) changes nothing.
        let other = Some(LocalAddr {
            ip: "10.0.0.1".parse().unwrap(),
            ifindex: 2,
        });
        p.clear_source(other);
        assert_eq!(p.full_endpoint().unwrap().src, src);
        p.clear_source(src);
        assert_eq!(p.full_endpoint(), Some(Endpoint::to(dst)));
        // A configured endpoint starts with no source.
        p.set_seen_endpoint(Endpoint { dst, src });
        p.set_endpoint(dst);
        assert_eq!(p.full_endpoint(), Some(Endpoint::to(dst)));
    }
}
