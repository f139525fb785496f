//! The one driver of the protocol core ([`crate::noise::peer`]): it builds
//! the [`Env`] a call needs (identity, clocks, randomness, receiver-index
//! allocation), keeps the receiver-index table in step with the index
//! changes the call reports while the peer's state is still locked (so a
//! reply naming a new index never arrives before the index exists), and
//! hands the remaining outputs to [`Shared::perform`], and re-arms the
//! peer's timer deadline.
//!
//! Everything in the device that advances a peer's protocol state goes
//! through here.
use super::peer::Peer;
use super::{bump, send, Device, IndexEntry, Shared};
use crate::noise::driver::{self, Ctx};
use crate::noise::handshake::Identity;
use crate::noise::peer::{Env, IndexEvent, Output, PeerState};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

impl Shared {
    /// Runs `f` on the peer's protocol state with a fresh [`Env`], applies
    /// index events, then performs the outputs (with no lock held).
    /// None when the device has no private key.
    pub fn with_peer<R>(
        &self,
        peer: &Arc<Peer>,
        f: impl FnOnce(&mut PeerState, &mut Env, &mut Vec<Output>) -> R,
    ) -> Option<R> {
        let (r, out) = self.peer_call(peer, f)?;
        self.perform(peer, out);
        Some(r)
    }

    /// As [`Shared::with_peer`], but hands the outputs back to the caller.
    pub fn peer_call<R>(
        &self,
        peer: &Arc<Peer>,
        f: impl FnOnce(&mut PeerState, &mut Env, &mut Vec<Output>) -> R,
    ) -> Option<(R, Vec<Output>)> {
        let identity = self.identity.read().clone()?;
        let mut st = peer.state.lock();
        Some(self.call_locked(peer, &mut st, &identity, f))
    }

    /// Runs `f` on an already locked state: builds the [`Env`] (the one
    /// place in the device that does), applies the index changes while
    /// `st` is still locked, and hands back the other outputs.
    pub fn call_locked<R>(
        &self,
        peer: &Arc<Peer>,
        st: &mut PeerState,
        identity: &Identity,
        f: impl FnOnce(&mut PeerState, &mut Env, &mut Vec<Output>) -> R,
    ) -> (R, Vec<Output>) {
        let mut rng = rand::rngs::OsRng;
        let mut alloc = || self.alloc_index(peer);
        let ctx = Ctx {
            identity,
            now: Instant::now(),
            wall: SystemTime::now(),
            rng: &mut rng,
            alloc_index: &mut alloc,
        };
        let (r, mut out) = driver::call(st, ctx, f);
        if peer.removed.load(Ordering::Acquire) {
            // The call raced the peer's removal (its caller looked the peer
            // up just before): forget whatever it started, indices
            // included, and send nothing for a peer that is gone.
            st.shutdown(&mut out);
            let _ = self.apply_index(peer, out);
            return (r, Vec::new());
        }
        let out = self.apply_index(peer, out);
        self.rearm(peer, st.next_deadline());
        (r, out)
    }

    /// Tells the timer thread about the peer's next deadline after a state
    /// change: one atomic load unless the deadline moved earlier (see
    /// [`super::deadlines`]).
    pub fn rearm(&self, peer: &Arc<Peer>, deadline: Option<Instant>) {
        self.deadlines
            .rearm(|| Arc::downgrade(peer), &peer.armed, deadline);
    }

    /// For the state changes that need no [`Env`] (a new device key, a
    /// removed peer): runs `f` on the locked state and applies its index
    /// changes; the other outputs are handed back.
    pub fn update_locked(
        &self,
        peer: &Arc<Peer>,
        st: &mut PeerState,
        f: impl FnOnce(&mut PeerState, &mut Vec<Output>),
    ) -> Vec<Output> {
        let mut out = Vec::new();
        f(st, &mut out);
        let out = self.apply_index(peer, out);
        self.rearm(peer, st.next_deadline());
        out
    }

    /// Applies the index outputs to the receiver-index table (one write
    /// lock for all of them) and returns the rest, in order.
    fn apply_index(&self, peer: &Arc<Peer>, out: Vec<Output>) -> Vec<Output> {
        if !out.iter().any(|o| matches!(o, Output::Index(_))) {
            return out;
        }
        let (events, rest) = driver::split_index(out);
        let mut idx = self.index.write();
        for ev in events {
            match ev {
                IndexEvent::Handshake(i) => {
                    idx.insert(
                        i,
                        IndexEntry {
                            peer: peer.clone(),
                            keypair: None,
                        },
                    );
                }
                IndexEvent::Session(kp) => {
                    idx.insert(
                        kp.local_index,
                        IndexEntry {
                            peer: peer.clone(),
                            keypair: Some(kp),
                        },
                    );
                }
                IndexEvent::Retired(i) => {
                    if idx.get(&i).is_some_and(|e| e.peer.id == peer.id) {
                        idx.remove(&i);
                    }
                }
            }
        }
        rest
    }

    /// Carries out protocol outputs for `peer` (no peer lock held).
    pub fn perform(&self, peer: &Arc<Peer>, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Handshake(msg) => {
                    if msg.first() == Some(&1) {
                        bump(&self.stats.handshakes_initiated, 1);
                    }
                    self.send_to_peer(peer, &[&msg]);
                }
                Output::Keepalive => send::send_keepalive(self, peer),
                Output::SessionReady { confirm } => {
                    bump(&self.stats.handshakes_completed, 1);
                    let sent = send::flush_staged(self, peer);
                    if !sent && confirm {
                        send::send_keepalive(self, peer);
                    }
                }
                Output::GaveUp => {
                    bump(&self.stats.handshakes_failed, 1);
                    peer.staged.lock().clear();
                }
                // Applied by the driver while the peer's state was locked.
                Output::Index(_) => {}
            }
        }
    }
}

impl Device {
    /// Sends a handshake initiation to a visible peer now, even if one went
    /// out within REKEY_TIMEOUT (an operator's `/tunnel-test?peer=`).
    pub fn force_handshake(&self, public_key: &[u8; 32]) -> Result<(), &'static str> {
        let peer = self.visible_peer(public_key).ok_or("unknown peer")?;
        self.shared
            .with_peer(&peer, |st, env, out| st.force_initiation(env, out))
            .ok_or("no private key configured")
    }
}

#[cfg(test)]
mod tests {
    use crate::device::config::{DeviceSet, PeerSet};
    use crate::device::test_node::TestNode;
    use crate::io::mem::MemNetwork;

    /// A thread that looked a peer up before its removal and calls into
    /// its state afterwards (a packet in flight, a queued handshake
    /// message) must leave no receiver index behind and send nothing.
    #[test]
    fn a_call_racing_the_removal_leaves_no_index_and_sends_nothing() {
        let net = MemNetwork::new();
        let a = TestNode::new(&net, "192.0.2.1", 51830, [1; 32]);
        let b = TestNode::new(&net, "192.0.2.2", 51831, [2; 32]);
        a.add_peer(&b, None, true, &[("10.0.0.2", 32)]);
        let s = &a.dev.shared;
        let peer = s.peers.read().get(&b.public()).cloned().unwrap();
        a.dev
            .apply(&DeviceSet {
                peers: vec![PeerSet {
                    public_key: b.public(),
                    remove: true,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .unwrap();
        let sent_before = a.dev.path_counters().wire_datagrams;
        // Without the removal check this allocates an index and sends an
        // initiation for a peer the device no longer has.
        s.with_peer(&peer, |st, env, out| st.force_initiation(env, out))
            .expect("the device has a key");
        assert_eq!(a.dev.index_count(), 0, "an index outlived its peer");
        assert_eq!(a.dev.path_counters().wire_datagrams, sent_before);
    }
}
