//! The timer thread: runs the peers' protocol timers when they fall due
//! (see [`super::deadlines`]: it sleeps until the earliest deadline or a
//! wake-up, not on a fixed tick), and every [`HOUSEKEEPING`] refreshes the
//! cached MTU, follows the TUN's link (down, up, deleted) and beats its
//! heartbeat.
use super::deadlines::claim;
use super::peer::Peer;
use super::Shared;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the device-wide chores run. They are per device, not per peer,
/// so this is the idle wake-up rate whatever the number of peers; one second
/// keeps the heartbeat well inside the stall limit (5 s) and a deleted
/// interface noticed within about a second.
pub const HOUSEKEEPING: Duration = Duration::from_secs(1);

pub fn run(s: &Shared) {
    let mut next_chores = Instant::now();
    while !s.shutdown.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_chores {
            next_chores = now + HOUSEKEEPING;
            chores(s);
        }
        let due = s.deadlines.wait_due(next_chores, claim_peer);
        for p in due {
            run_peer(s, &p);
        }
    }
}

fn chores(s: &Shared) {
    s.heartbeat(super::HB_TIMERS);
    if let Ok(mtu) = s.tun.mtu() {
        s.mtu.store(mtu, Ordering::Relaxed);
    }
    if s.link.observe(s.tun.link_state()) == crate::io::LinkState::Gone {
        s.tun_gone.store(true, Ordering::SeqCst);
    }
}

/// The peer behind a popped entry, when the entry is not stale.
pub(crate) fn claim_peer(p: Weak<Peer>, at: u64) -> Option<Arc<Peer>> {
    let p = p.upgrade()?;
    claim(&p.armed, at).then_some(p)
}

/// Runs a claimed peer's due timers and re-arms it at its next deadline
/// (lazy deletion: its entry may have been earlier than its real deadline).
pub(crate) fn run_peer(s: &Shared, p: &Arc<Peer>) {
    let now = Instant::now();
    let due = p.state.lock().next_deadline().is_some_and(|d| d <= now);
    if !due {
        // A stale (early) entry: arm the peer at its real deadline.
        s.rearm(p, p.state.lock().next_deadline());
        return;
    }
    // with_peer re-arms (see Shared::call_locked). Without a private key it
    // runs nothing and the deadline stays due: look again a second later
    // (not at once, which would spin), so the timers run once a key is set.
    if s.with_peer(p, |st, env, out| st.tick(env, out)).is_none() {
        s.rearm(p, Some(now + HOUSEKEEPING));
    }
}

/// Runs every peer timer due at `now` by walking all peers: the reference
/// the deadline heap must match (tests), and a catch-all after bulk changes.
pub fn tick_peers(s: &Shared, now: Instant) {
    let peers: Vec<_> = s.peers.read().values().cloned().collect();
    for p in peers {
        let due = p.state.lock().next_deadline().is_some_and(|d| d <= now);
        if due {
            s.with_peer(&p, |st, env, out| st.tick(env, out));
        }
    }
}
