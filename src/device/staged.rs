//! Packets staged for a peer while it has no session, under two caps: per
//! peer (MAX_STAGED_PACKETS, the oldest goes, as wireguard-go) and for the
//! whole device in bytes ([`StagedBudget`]), so N peers without a session
//! cannot pin N x 128 x MTU.
//!
//! Over the device-wide cap the *new* packet is dropped: making room would
//! mean evicting another peer's packets (a flood to one dead peer would
//! starve the others' first packets), or taking every peer's lock.
use crate::noise::constants::MAX_STAGED_PACKETS;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Default device-wide cap on staged bytes (about 90 peers' full queues
/// at a 1420-byte MTU).
pub const MAX_STAGED_BYTES: usize = 16 << 20;

/// Bytes staged across all peers of one device.
#[derive(Debug)]
pub struct StagedBudget {
    used: AtomicUsize,
    cap: AtomicUsize,
}

impl StagedBudget {
    pub fn new(cap: usize) -> Self {
        StagedBudget {
            used: AtomicUsize::new(0),
            cap: AtomicUsize::new(cap),
        }
    }
    /// Bytes staged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }
    fn try_take(&self, n: usize) -> bool {
        let cap = self.cap.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= cap)
            })
            .is_ok()
    }
    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One peer's staged packets; what they hold is charged to the device's
/// budget until they are taken, cleared or dropped.
#[derive(Debug)]
pub struct Staged {
    packets: VecDeque<Vec<u8>>,
    bytes: usize,
    budget: Arc<StagedBudget>,
}

impl Staged {
    pub fn new(budget: Arc<StagedBudget>) -> Self {
        Staged {
            packets: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }
    /// Stages a copy of `packet`, dropping this peer's oldest at the
    /// per-peer cap. False when the device-wide cap refused it (dropped).
    pub fn push(&mut self, packet: &[u8]) -> bool {
        if self.packets.len() >= MAX_STAGED_PACKETS {
            if let Some(old) = self.packets.pop_front() {
                self.bytes -= old.len();
                self.budget.give_back(old.len());
            }
        }
        if !self.budget.try_take(packet.len()) {
            return false;
        }
        self.bytes += packet.len();
        self.packets.push_back(packet.to_vec());
        true
    }
    /// Takes every staged packet, in order.
    pub fn take_all(&mut self) -> Vec<Vec<u8>> {
        self.budget.give_back(std::mem::take(&mut self.bytes));
        self.packets.drain(..).collect()
    }
    pub fn clear(&mut self) {
        self.take_all();
    }
    pub fn len(&self) -> usize {
        self.packets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_charged_and_returned() {
        let budget = Arc::new(StagedBudget::new(250));
        let mut a = Staged::new(budget.clone());
        let mut b = Staged::new(budget.clone());
        assert!(a.push(&[1; 100]));
        assert!(b.push(&[2; 100]));
        // 300 > 250: the new packet is refused, the old ones stay.
        assert!(!b.push(&[3; 100]));
        assert_eq!((a.len(), b.len(), budget.used()), (1, 1, 200));
        assert!(a.push(&[4; 50]));
        assert_eq!(budget.used(), 250);
        assert_eq!(a.take_all(), vec![vec![1; 100], vec![4; 50]]);
        assert_eq!(budget.used(), 100);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn per_peer_cap_drops_the_oldest_and_returns_its_bytes() {
        let budget = Arc::new(StagedBudget::new(usize::MAX));
        let mut s = Staged::new(budget.clone());
        for i in 0..MAX_STAGED_PACKETS + 5 {
            assert!(s.push(&[i as u8; 10]));
        }
        assert_eq!(s.len(), MAX_STAGED_PACKETS);
        assert_eq!(budget.used(), MAX_STAGED_PACKETS * 10);
        assert_eq!(s.take_all()[0], vec![5u8; 10]);
        assert!(s.is_empty());
        assert_eq!(budget.used(), 0);
    }

    /// A device on the in-memory backends: packets to peers that cannot
    /// get a session (no endpoint) are staged up to the device-wide cap;
    /// the rest are dropped and counted as queue-full.
    #[test]
    fn a_device_stages_at_most_its_byte_cap_across_peers() {
        use crate::device::config::{AllowedIpChange, DeviceSet, PeerSet};
        use crate::device::test_node::{public_of, TestNode};
        use crate::io::mem::MemNetwork;
        use std::time::{Duration, Instant};

        let node = TestNode::new(&MemNetwork::new(), "192.0.2.10", 52300, [0x31; 32]);
        let dev = &node.dev;
        let budget = dev.shared.staged_budget.clone();
        budget.set_cap(2500);
        let peers: Vec<PeerSet> = (1u8..=3)
            .map(|i| PeerSet {
                public_key: public_of([0x40 + i; 32]),
                allowed_ips: vec![AllowedIpChange::Add([10, 0, i, 0].into(), 24)],
                ..Default::default()
            })
            .collect();
        dev.apply(&DeviceSet {
            peers,
            ..Default::default()
        })
        .unwrap();
        // 12 packets of 500 bytes, 4 per peer: 6000 bytes for a 2500 cap.
        for n in 0..4u8 {
            for i in 1u8..=3 {
                let mut p = vec![0u8; 500];
                p[0] = 0x45;
                p[2..4].copy_from_slice(&500u16.to_be_bytes());
                p[8] = 64;
                p[9] = 17;
                p[12..16].copy_from_slice(&[10, 0, 0, 1]);
                p[16..20].copy_from_slice(&[10, 0, i, 2 + n]);
                assert!(node.tun.inject(&p));
            }
        }
        let staged = || -> usize { dev.peers().iter().map(|p| p.staged.lock().len()).sum() };
        let drops = || dev.shared.stats.drop_queue_full.load(Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(10);
        while staged() as u64 + drops() < 12 {
            assert!(
                Instant::now() < until,
                "staged {} dropped {}",
                staged(),
                drops()
            );
            std::thread::yield_now();
        }
        assert_eq!(staged(), 5);
        assert_eq!(drops(), 7);
        assert_eq!(budget.used(), 2500);
        // Removing a peer returns its share of the budget.
        let first = dev.peers()[0].clone();
        let had = first.staged.lock().len();
        dev.apply(&DeviceSet {
            peers: vec![PeerSet {
                public_key: first.public_key,
                remove: true,
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(budget.used(), (5 - had) * 500);
    }
}
