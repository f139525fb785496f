//! The deadline heap against the walk it replaces: seeded random scripts of
//! traffic among three pairs of peers over ~2,500 simulated seconds, run
//! once with every peer checked every millisecond and once with only the
//! heap's due peers run (the clock jumping from deadline to deadline). Both
//! must produce the same outputs at the same milliseconds.
use super::*;
use crate::noise::driver::{self, Ctx};
use crate::noise::handshake::{consume_initiation, Identity};
use crate::noise::keypair::Keypair;
use crate::noise::keys::{PublicKey, StaticSecretKey};
use crate::noise::messages::{receiver_index, MessageType};
use crate::noise::peer::{Env, IndexEvent, Output, PeerState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

const PEERS: usize = 6; // slot i talks to slot i ^ 1
const SIM_MS: u64 = 2_500_000;

/// One peer's side: its own key, its state about the other, its indices.
struct Slot {
    identity: Identity,
    peer: PeerState,
    indices: HashMap<u32, Arc<Keypair>>,
    next_index: u32,
    rng: ChaCha20Rng,
    staged: bool,
}

#[derive(Clone, Copy)]
enum Ev {
    Data,
    Keepalive(u16),
    Force,
    /// The link between this pair drops (true) or heals (false).
    Cut(bool),
}

struct World {
    slots: Vec<Slot>,
    t0: Instant,
    now_ms: u64,
    cut: [bool; PEERS / 2],
    /// (ms, slot, what) for every output and delivery, in order.
    log: Vec<(u64, usize, &'static str)>,
    /// Slots whose state changed (the heap world re-arms these).
    touched: Vec<usize>,
}

impl World {
    fn new(seed: u64) -> World {
        let secret = |i: usize| StaticSecretKey::from([i as u8 + 1; 32]);
        let slots = (0..PEERS)
            .map(|i| {
                let me = Identity::new(secret(i));
                let other = PublicKey::from(&secret(i ^ 1));
                let st = PeerState::new(Some(&me), other, [3; 32], seed ^ i as u64);
                Slot {
                    identity: me,
                    peer: st,
                    indices: HashMap::new(),
                    next_index: (i as u32 + 1) << 24,
                    rng: ChaCha20Rng::seed_from_u64(seed.wrapping_add(i as u64)),
                    staged: false,
                }
            })
            .collect();
        World {
            slots,
            t0: Instant::now(),
            now_ms: 0,
            cut: [false; PEERS / 2],
            log: Vec::new(),
            touched: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.now_ms)
    }

    fn call<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut PeerState, &mut Env, &mut Vec<Output>) -> R,
    ) -> R {
        let now = self.now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + self.now_ms / 1000);
        let s = &mut self.slots[i];
        let mut next = s.next_index;
        let mut alloc = || {
            next += 1;
            next
        };
        let ctx = Ctx {
            identity: &s.identity,
            now,
            wall,
            rng: &mut s.rng,
            alloc_index: &mut alloc,
        };
        let (r, out) = driver::call(&mut s.peer, ctx, f);
        s.next_index = next;
        let (events, out) = driver::split_index(out);
        for ev in events {
            match ev {
                IndexEvent::Session(kp) => {
                    s.indices.insert(kp.local_index, kp);
                }
                IndexEvent::Retired(i) => {
                    s.indices.remove(&i);
                }
                IndexEvent::Handshake(_) => {}
            }
        }
        self.touched.push(i);
        self.outputs(i, out);
        r
    }

    fn outputs(&mut self, i: usize, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Handshake(m) => {
                    self.log(i, if m[0] == 1 { "initiation" } else { "response" });
                    self.handshake(i, m);
                }
                Output::Keepalive => self.send(i, false),
                Output::SessionReady { confirm } => {
                    self.log(i, "ready");
                    if std::mem::take(&mut self.slots[i].staged) {
                        self.send(i, true);
                    } else if confirm {
                        self.send(i, false);
                    }
                }
                Output::GaveUp => {
                    self.log(i, "gave up");
                    self.slots[i].staged = false;
                }
                Output::Index(_) => unreachable!("split off in call"),
            }
        }
    }

    fn log(&mut self, i: usize, what: &'static str) {
        self.log.push((self.now_ms, i, what));
    }

    fn handshake(&mut self, from: usize, msg: Vec<u8>) {
        let to = from ^ 1;
        if self.cut[from / 2] {
            return;
        }
        if msg[0] == 1 {
            let arr: &[u8; 148] = msg[..].try_into().unwrap();
            let s = &self.slots[to];
            let keys = s.peer.keys().unwrap();
            let remote = *s.peer.remote_public();
            let Ok(init) =
                consume_initiation(&s.identity, arr, |pk| (pk == &remote).then_some(keys))
            else {
                return;
            };
            if let Ok(resp) = self.call(to, |st, env, out| st.accept_initiation(env, init, out)) {
                self.log(to, "response");
                self.handshake(to, resp);
            }
        } else {
            let arr: &[u8; 92] = msg[..].try_into().unwrap();
            let idx = receiver_index(MessageType::Response, arr);
            if self.slots[to].peer.pending_index() == Some(idx) {
                let _ = self.call(to, |st, env, out| st.consume_response(env, arr, out));
            }
        }
    }

    /// Data (or a keepalive) from `from`; staged behind a handshake when no
    /// session is usable, as the device does.
    fn send(&mut self, from: usize, data: bool) {
        let Some(kp) = self.slots[from].peer.sending_keypair(self.now()).cloned() else {
            if data {
                self.slots[from].staged = true;
            }
            self.call(from, |st, env, out| st.need_session(env, out));
            return;
        };
        let _ = kp.next_counter();
        self.log(from, if data { "data" } else { "keepalive" });
        self.call(from, |st, env, out| st.on_sent(env, &kp, data, out));
        let to = from ^ 1;
        if self.cut[from / 2] {
            return;
        }
        if let Some(rkp) = self.slots[to].indices.get(&kp.remote_index).cloned() {
            self.call(to, |st, env, out| st.on_received(env, &rkp, data, out));
        }
    }

    fn apply(&mut self, slot: usize, ev: Ev) {
        match ev {
            Ev::Data => self.send(slot, true),
            Ev::Keepalive(secs) => self.call(slot, |st, env, out| {
                st.set_persistent_keepalive(env, secs, out)
            }),
            Ev::Force => self.call(slot, |st, env, out| st.force_initiation(env, out)),
            Ev::Cut(c) => self.cut[slot / 2] = c,
        }
    }

    fn due(&self, i: usize) -> bool {
        self.slots[i]
            .peer
            .next_deadline()
            .is_some_and(|d| d <= self.now())
    }
}

/// A script: bursts of traffic, long quiet spells (so keepalives, rekeys,
/// retries, give-ups and key zeroing all happen), and cut links.
fn script(seed: u64) -> Vec<(u64, usize, Ev)> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut t = 0;
    let mut evs = Vec::new();
    while t < SIM_MS - 200_000 {
        t += match rng.gen_range(0..10) {
            0 => rng.gen_range(100_000..400_000),
            1..=3 => rng.gen_range(1_000..30_000),
            _ => rng.gen_range(1..500),
        };
        let slot = rng.gen_range(0..PEERS);
        let ev = match rng.gen_range(0..40) {
            0 => Ev::Keepalive([0, 0, 1, 7, 25][rng.gen_range(0..5)]),
            1 => Ev::Force,
            2 => Ev::Cut(rng.gen_bool(0.5)),
            _ => Ev::Data,
        };
        evs.push((t, slot, ev));
    }
    evs
}

/// The reference: every peer checked every millisecond.
fn run_walk(seed: u64) -> Vec<(u64, usize, &'static str)> {
    let evs = script(seed);
    let mut w = World::new(seed);
    let mut e = 0;
    for ms in 0..=SIM_MS {
        w.now_ms = ms;
        while e < evs.len() && evs[e].0 == ms {
            w.apply(evs[e].1, evs[e].2);
            e += 1;
        }
        for i in 0..PEERS {
            if w.due(i) {
                w.call(i, |st, env, out| st.tick(env, out));
            }
        }
    }
    w.log
}

/// The heap: the clock jumps to the next event or the earliest entry, and
/// only claimed peers are looked at. Returns the log and the wake-ups.
fn run_heap(seed: u64) -> (Vec<(u64, usize, &'static str)>, usize) {
    let evs = script(seed);
    let mut w = World::new(seed);
    let mut heap = DeadlineHeap::new(w.t0);
    let armed: Vec<AtomicU64> = (0..PEERS).map(|_| AtomicU64::new(UNARMED)).collect();
    let rearm = |w: &mut World, heap: &mut DeadlineHeap<usize>| {
        for i in std::mem::take(&mut w.touched) {
            heap.rearm(i, &armed[i], w.slots[i].peer.next_deadline());
        }
    };
    let (mut e, mut wakeups) = (0, 0);
    loop {
        let next_ev = evs.get(e).map(|x| x.0);
        let next_timer = heap.next().map(|d| {
            let ns = d.duration_since(w.t0).as_nanos() as u64;
            ns.div_ceil(1_000_000)
        });
        let Some(ms) = [next_ev, next_timer].into_iter().flatten().min() else {
            break;
        };
        if ms > SIM_MS {
            break;
        }
        wakeups += 1;
        w.now_ms = ms;
        while e < evs.len() && evs[e].0 == ms {
            w.apply(evs[e].1, evs[e].2);
            e += 1;
            rearm(&mut w, &mut heap);
        }
        let mut due = heap.pop_due(w.now(), |i, at| claim(&armed[i], at).then_some(i));
        // The walk visits peers in slot order; so does this.
        due.sort_unstable();
        for i in due {
            if w.due(i) {
                w.call(i, |st, env, out| st.tick(env, out));
            }
            w.touched.push(i);
            rearm(&mut w, &mut heap);
        }
    }
    (w.log, wakeups)
}

#[test]
fn heap_driven_timers_match_checking_every_peer_every_millisecond() {
    for seed in [1u64, 2, 3] {
        let walk = run_walk(seed);
        let (heap, wakeups) = run_heap(seed);
        let count = |what| walk.iter().filter(|x| x.2 == what).count();
        // The script exercised the timers, not only the packet path.
        assert!(count("keepalive") > 10, "seed {seed}: keepalives");
        assert!(count("initiation") > 20, "seed {seed}: initiations");
        assert!(count("gave up") > 0, "seed {seed}: no handshake gave up");
        let first_diff = walk.iter().zip(&heap).position(|(a, b)| a != b);
        assert_eq!(
            first_diff.map(|i| (walk[i], heap[i])),
            None,
            "seed {seed}: first divergence"
        );
        assert_eq!(walk.len(), heap.len(), "seed {seed}");
        // Far fewer looks than the walk's one per millisecond.
        assert!(
            wakeups < SIM_MS as usize / 100,
            "seed {seed}: {wakeups} wake-ups"
        );
    }
}

#[test]
fn a_later_deadline_keeps_the_entry_and_an_earlier_one_pushes() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut h = DeadlineHeap::new(t0);
    let armed = AtomicU64::new(UNARMED);
    assert!(h.rearm(1, &armed, Some(t0 + s(10))));
    // Later: nothing pushed (lazy), the armed time stays.
    assert!(!needs_push(t0, &armed, Some(t0 + s(20))));
    assert!(!h.rearm(1, &armed, Some(t0 + s(20))));
    assert_eq!(h.len(), 1);
    // Earlier: pushed, and the old entry is stale.
    assert!(h.rearm(1, &armed, Some(t0 + s(5))));
    assert_eq!(h.len(), 2);
    assert_eq!(h.next(), Some(t0 + s(5)));
    let due = h.pop_due(t0 + s(30), |k, at| claim(&armed, at).then_some(k));
    assert_eq!(due, vec![1], "the stale entry at 10 s is dropped");
    assert_eq!(armed.load(Ordering::Relaxed), UNARMED);
    assert!(h.is_empty());
}

#[test]
fn an_earlier_deadline_wakes_the_sleeper() {
    let t0 = Instant::now();
    let d = Arc::new(Deadlines::<u32>::new(t0));
    let armed = Arc::new(AtomicU64::new(UNARMED));
    let (d2, a2) = (d.clone(), armed.clone());
    let sleeper = std::thread::spawn(move || {
        // Would sleep an hour without the wake-up.
        let far = Instant::now() + Duration::from_secs(3600);
        loop {
            let due = d2.wait_due(far, |k, at| claim(&a2, at).then_some(k));
            if !due.is_empty() {
                return due;
            }
        }
    });
    d.rearm(
        || 7,
        &armed,
        Some(Instant::now() + Duration::from_millis(20)),
    );
    assert_eq!(sleeper.join().unwrap(), vec![7]);
}

#[test]
fn stop_ends_a_sleep() {
    let d = Arc::new(Deadlines::<u32>::new(Instant::now()));
    let d2 = d.clone();
    let sleeper = std::thread::spawn(move || {
        d2.wait_due(Instant::now() + Duration::from_secs(3600), |k, _| Some(k))
    });
    // Stop may come before or during the wait: either way it returns.
    d.stop();
    assert!(sleeper.join().unwrap().is_empty());
}

#[test]
fn a_real_device_runs_persistent_keepalives_from_the_heap() {
    use crate::device::test_node::TestNode;
    use crate::io::mem::MemNetwork;
    use crate::uapi::protocol::{DeviceSet, PeerSet};
    let net = MemNetwork::new();
    let a = TestNode::new(&net, "10.9.0.1", 51001, [31; 32]);
    let b = TestNode::new(&net, "10.9.0.2", 51002, [32; 32]);
    a.add_peer(&b, None, true, &[("10.10.0.2", 32)]);
    b.add_peer(&a, None, false, &[("10.10.0.1", 32)]);
    // Every second: the handshake, then one keepalive per second, all
    // driven by the timer thread's heap (no traffic from the TUN).
    a.dev
        .apply(&DeviceSet {
            peers: vec![PeerSet {
                public_key: b.public(),
                persistent_keepalive_interval: Some(1),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
    let a_at_b = b.dev.shared.peers.read().get(&a.public()).cloned().unwrap();
    let rx = || a_at_b.rx_bytes.load(Ordering::Relaxed);
    let wait_for = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while rx() < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        rx()
    };
    // The handshake (and the first keepalive) arrived; then three more
    // keepalives (32 bytes each) must follow, from the timer alone.
    let base = wait_for(1);
    let got = wait_for(base + 3 * 32);
    assert!(got >= base + 3 * 32, "{} bytes after {base}", got);
    // Idle peers leave the heap small: one live entry per armed peer, and
    // stale ones only until they fire.
    assert!(
        a.dev.shared.deadlines.len() <= 4,
        "{}",
        a.dev.shared.deadlines.len()
    );
}
