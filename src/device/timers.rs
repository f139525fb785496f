//! The timer thread: runs due protocol timers of every peer, refreshes the
//! cached MTU, and follows the TUN's link (down, up, deleted).
use super::Shared;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Timer resolution. Protocol timers are seconds long; 100 ms is plenty.
pub const TICK: Duration = Duration::from_millis(100);

pub fn run(s: &Shared) {
    let mut last_slow = Instant::now() - Duration::from_secs(10);
    while !s.shutdown.load(Ordering::Relaxed) {
        s.heartbeat(super::HB_TIMERS);
        std::thread::sleep(TICK);
        let now = Instant::now();
        if now.duration_since(last_slow) >= Duration::from_secs(1) {
            last_slow = now;
            if let Ok(mtu) = s.tun.mtu() {
                s.mtu.store(mtu, Ordering::Relaxed);
            }
        }
        if s.link.observe(s.tun.link_state()) == crate::io::LinkState::Gone {
            s.tun_gone.store(true, Ordering::SeqCst);
        }
        tick_peers(s, now);
    }
}

/// Runs every peer timer due at `now`.
pub fn tick_peers(s: &Shared, now: Instant) {
    let peers: Vec<_> = s.peers.read().values().cloned().collect();
    for p in peers {
        let due = p.state.lock().next_deadline().is_some_and(|d| d <= now);
        if due {
            s.with_peer(&p, |st, env, out| st.tick(env, out));
        }
    }
}
