//! Whole-protocol tests of two peers on a virtual clock: milliseconds of
//! test time cover minutes of protocol time, deterministically.
use super::*;
use crate::noise::constants::{DATA_HEADER_LEN, KEEPALIVE_LEN};
use crate::noise::handshake::consume_initiation;
use crate::noise::keys::StaticSecretKey;
use crate::noise::messages::{message_type, receiver_index, MessageType};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::HashMap;

struct Node {
    identity: Identity,
    peer: PeerState,
    /// Receiver index table, as the device keeps it.
    indices: HashMap<u32, Option<Arc<Keypair>>>,
    next_index: u32,
    rng: ChaCha20Rng,
    /// Inner packets waiting for a session.
    staged: Vec<Vec<u8>>,
    /// Inner packets delivered to this node.
    delivered: Vec<Vec<u8>>,
    initiations_sent: usize,
    keepalives_sent: usize,
    gave_up: usize,
}

fn secret(seed: u8) -> StaticSecretKey {
    StaticSecretKey::from([seed; 32])
}

impl Node {
    fn pair(t0: SystemTime) -> (Node, Node) {
        let _ = t0;
        let (sa, sb) = (secret(1), secret(2));
        let (pa, pb) = (PublicKey::from(&sa), PublicKey::from(&sb));
        let ia = Identity::new(sa);
        let ib = Identity::new(sb);
        let psk = [7u8; 32];
        let a = Node::new(ia, PeerState::new(None, pb, psk, 11), 1000);
        let b = Node::new(ib, PeerState::new(None, pa, psk, 22), 2000);
        (a, b)
    }

    fn new(identity: Identity, mut peer: PeerState, base: u32) -> Node {
        let mut out = Vec::new();
        peer.set_identity(Some(&identity), &mut out);
        assert!(out.is_empty(), "a state without sessions retires nothing");
        Node {
            identity,
            peer,
            indices: HashMap::new(),
            next_index: base,
            rng: ChaCha20Rng::seed_from_u64(base as u64),
            staged: Vec::new(),
            delivered: Vec::new(),
            initiations_sent: 0,
            keepalives_sent: 0,
            gave_up: 0,
        }
    }

    fn call<R>(
        &mut self,
        now: Instant,
        wall: SystemTime,
        f: impl FnOnce(&mut PeerState, &mut Env, &mut Vec<Output>) -> R,
    ) -> (R, Vec<Output>) {
        let mut next = self.next_index;
        let mut alloc = || {
            next += 1;
            next
        };
        let ctx = crate::noise::driver::Ctx {
            identity: &self.identity,
            now,
            wall,
            rng: &mut self.rng,
            alloc_index: &mut alloc,
        };
        let (r, out) = crate::noise::driver::call(&mut self.peer, ctx, f);
        self.next_index = next;
        let (events, out) = crate::noise::driver::split_index(out);
        for ev in events {
            match ev {
                IndexEvent::Handshake(i) => {
                    self.indices.insert(i, None);
                }
                IndexEvent::Session(kp) => {
                    self.indices.insert(kp.local_index, Some(kp));
                }
                IndexEvent::Retired(i) => {
                    self.indices.remove(&i);
                }
            }
        }
        for o in &out {
            match o {
                Output::Handshake(m) if m[0] == 1 => self.initiations_sent += 1,
                Output::Keepalive => self.keepalives_sent += 1,
                Output::GaveUp => self.gave_up += 1,
                _ => {}
            }
        }
        (r, out)
    }
}

/// Minimal IPv4 packet carrying `seq`, so delivery can be checked in order.
fn packet(seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&24u16.to_be_bytes());
    p[20..24].copy_from_slice(&seq.to_be_bytes());
    p
}

/// A virtual network between two nodes on a virtual clock.
struct World {
    a: Node,
    b: Node,
    t0: Instant,
    now: Instant,
    wall0: SystemTime,
    /// Drop everything A sends (B unreachable).
    drop_a_to_b: bool,
    drop_b_to_a: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    A,
    B,
}

impl World {
    fn new() -> World {
        let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (a, b) = Node::pair(wall0);
        let t0 = Instant::now();
        World {
            a,
            b,
            t0,
            now: t0,
            wall0,
            drop_a_to_b: false,
            drop_b_to_a: false,
        }
    }
    fn wall(&self) -> SystemTime {
        self.wall0 + (self.now - self.t0)
    }
    fn nodes(&mut self, side: Side) -> (&mut Node, &mut Node) {
        match side {
            Side::A => (&mut self.a, &mut self.b),
            Side::B => (&mut self.b, &mut self.a),
        }
    }
    fn dropped(&self, from: Side) -> bool {
        match from {
            Side::A => self.drop_a_to_b,
            Side::B => self.drop_b_to_a,
        }
    }

    /// Runs outputs `from` produced, delivering what they send.
    fn run_outputs(&mut self, from: Side, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Handshake(msg) => self.deliver_handshake(from, msg),
                Output::Keepalive => self.send_data(from, None),
                Output::SessionReady { confirm } => {
                    let staged = std::mem::take(&mut self.nodes(from).0.staged);
                    let had = !staged.is_empty();
                    for p in staged {
                        self.send_data(from, Some(p));
                    }
                    if !had && confirm {
                        self.send_data(from, None);
                    }
                }
                Output::GaveUp => self.nodes(from).0.staged.clear(),
                Output::Index(_) => unreachable!("Node::call applies index changes"),
            }
        }
    }

    fn deliver_handshake(&mut self, from: Side, msg: Vec<u8>) {
        if self.dropped(from) {
            return;
        }
        let (now, wall) = (self.now, self.wall());
        let (_, to) = self.nodes(from);
        let to_side = if from == Side::A { Side::B } else { Side::A };
        match message_type(&msg).unwrap() {
            MessageType::Initiation => {
                let arr: &[u8; 148] = msg[..].try_into().unwrap();
                let keys = to.peer.keys().unwrap();
                let remote = *to.peer.remote_public();
                let init =
                    consume_initiation(&to.identity, arr, |pk| (pk == &remote).then_some(keys));
                let Ok(init) = init else { return };
                let (res, out) = to.call(now, wall, |st, env, out| {
                    st.accept_initiation(env, init, out)
                });
                if let Ok(resp) = res {
                    self.deliver_handshake(to_side, resp);
                }
                self.run_outputs(to_side, out);
            }
            MessageType::Response => {
                let arr: &[u8; 92] = msg[..].try_into().unwrap();
                let idx = receiver_index(MessageType::Response, arr);
                if to.peer.pending_index() != Some(idx) {
                    return;
                }
                let (_, out) =
                    to.call(now, wall, |st, env, out| st.consume_response(env, arr, out));
                self.run_outputs(to_side, out);
            }
            _ => {}
        }
    }

    /// Sends a data packet (None = keepalive) from `from`; stages it if no
    /// session is usable.
    fn send_data(&mut self, from: Side, payload: Option<Vec<u8>>) {
        let (now, wall) = (self.now, self.wall());
        let drop = self.dropped(from);
        let to_side = if from == Side::A { Side::B } else { Side::A };
        let (me, to) = self.nodes(from);
        let Some(kp) = me.peer.sending_keypair(now).cloned() else {
            if let Some(p) = payload {
                me.staged.push(p);
            }
            let (_, out) = me.call(now, wall, |st, env, out| st.need_session(env, out));
            self.run_outputs(from, out);
            return;
        };
        let data = payload.is_some();
        let inner = payload.unwrap_or_default();
        let mut buf = vec![0u8; DATA_HEADER_LEN + inner.len() + 16];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + inner.len()].copy_from_slice(&inner);
        let counter = kp.next_counter().unwrap();
        let n = kp.seal(counter, &mut buf, inner.len());
        if !data {
            assert_eq!(n, KEEPALIVE_LEN);
        }
        let (_, out) = me.call(now, wall, |st, env, out| st.on_sent(env, &kp, data, out));
        let mut outs = vec![(from, out)];
        if !drop {
            let idx = receiver_index(MessageType::Data, &buf[..n]);
            if let Some(Some(rkp)) = to.indices.get(&idx).cloned() {
                if let Ok(len) = rkp.open(&mut buf[..n]) {
                    if len > 0 {
                        to.delivered
                            .push(buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len].to_vec());
                    }
                    let (_, out) = to.call(now, wall, |st, env, out| {
                        st.on_received(env, &rkp, len > 0, out)
                    });
                    outs.push((to_side, out));
                }
            }
        }
        for (side, out) in outs {
            self.run_outputs(side, out);
        }
    }

    /// Advances the clock in `step`s to `until`, running both nodes' timers.
    fn advance(&mut self, until: Duration, step: Duration, mut each: impl FnMut(&mut World)) {
        while self.now - self.t0 < until {
            self.now += step;
            let (now, wall) = (self.now, self.wall());
            let (_, out) = self.a.call(now, wall, |st, env, out| st.tick(env, out));
            self.run_outputs(Side::A, out);
            let (_, out) = self.b.call(now, wall, |st, env, out| st.tick(env, out));
            self.run_outputs(Side::B, out);
            each(self);
        }
    }
}

#[test]
fn handshake_then_data_both_ways() {
    let mut w = World::new();
    w.send_data(Side::A, Some(packet(1)));
    assert_eq!(w.a.initiations_sent, 1);
    // The staged packet went out once the session existed, and confirmed
    // the responder's session (no separate keepalive needed).
    assert_eq!(w.b.delivered, vec![packet(1)]);
    assert!(
        w.b.peer.sending_keypair(w.now).is_some(),
        "responder confirmed by data"
    );
    w.send_data(Side::B, Some(packet(2)));
    assert_eq!(w.a.delivered, vec![packet(2)]);
    assert!(w.a.peer.last_handshake().is_some() && w.b.peer.last_handshake().is_some());
    assert_eq!(w.a.keepalives_sent, 0);
}

#[test]
fn initiator_confirms_with_keepalive_when_nothing_is_staged() {
    let mut w = World::new();
    let (now, wall) = (w.now, w.wall());
    let (_, out) = w.a.call(now, wall, |st, env, out| {
        st.send_initiation(env, false, out)
    });
    w.run_outputs(Side::A, out);
    // The keepalive confirmed B's `next` session, so B can send.
    assert!(w.b.peer.sending_keypair(w.now).is_some());
    assert!(w.b.delivered.is_empty());
}

#[test]
fn continuous_traffic_across_rekeys_loses_nothing() {
    let mut w = World::new();
    let mut seq = 0u32;
    // A packet each way every 100 ms for 400 s: three rekeys at least.
    w.advance(Duration::from_secs(400), Duration::from_millis(100), |w| {
        seq += 1;
        w.send_data(Side::A, Some(packet(seq)));
        w.send_data(Side::B, Some(packet(seq)));
    });
    let want: Vec<_> = (1..=seq).map(packet).collect();
    assert_eq!(w.b.delivered, want, "A to B lost or reordered packets");
    assert_eq!(w.a.delivered, want, "B to A lost or reordered packets");
    let handshakes = w.a.initiations_sent + w.b.initiations_sent;
    assert!(
        (4..=8).contains(&handshakes),
        "expected a rekey about every 120 s, got {handshakes} initiations"
    );
}

#[test]
fn gives_up_after_twenty_initiations() {
    let mut w = World::new();
    w.drop_a_to_b = true;
    w.send_data(Side::A, Some(packet(1)));
    w.advance(Duration::from_secs(200), Duration::from_millis(50), |_| {});
    assert_eq!(w.a.initiations_sent, 20, "1 initiation + 19 retries");
    assert_eq!(w.a.gave_up, 1);
    assert!(w.a.staged.is_empty(), "staged packets dropped on giving up");
}

#[test]
fn retries_are_spaced_by_rekey_timeout_plus_jitter() {
    let mut w = World::new();
    w.drop_a_to_b = true;
    let mut times = Vec::new();
    w.send_data(Side::A, Some(packet(1)));
    times.push(Duration::ZERO);
    let mut seen = 1;
    w.advance(Duration::from_secs(30), Duration::from_millis(10), |w| {
        if w.a.initiations_sent > seen {
            seen = w.a.initiations_sent;
            times.push(w.now - w.t0);
        }
    });
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= REKEY_TIMEOUT
                && gap <= REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX + Duration::from_millis(10),
            "gap {gap:?}"
        );
    }
    assert!(times.len() >= 5);
}

#[test]
fn passive_keepalive_after_ten_seconds_and_never_for_a_keepalive() {
    let mut w = World::new();
    w.send_data(Side::A, Some(packet(1)));
    let ka_b = w.b.keepalives_sent;
    let ka_a = w.a.keepalives_sent;
    w.advance(
        Duration::from_millis(9_900),
        Duration::from_millis(100),
        |_| {},
    );
    assert_eq!(w.b.keepalives_sent, ka_b, "too early");
    w.advance(
        Duration::from_millis(10_100),
        Duration::from_millis(100),
        |_| {},
    );
    assert_eq!(
        w.b.keepalives_sent,
        ka_b + 1,
        "B received data and sent nothing for 10 s"
    );
    w.advance(Duration::from_secs(30), Duration::from_millis(100), |_| {});
    assert_eq!(
        w.a.keepalives_sent, ka_a,
        "a keepalive is never answered with a keepalive"
    );
    assert_eq!(w.b.keepalives_sent, ka_b + 1);
}

#[test]
fn new_handshake_when_sent_data_gets_no_answer_for_fifteen_seconds() {
    let mut w = World::new();
    w.send_data(Side::A, Some(packet(1)));
    let base = w.a.initiations_sent;
    w.drop_b_to_a = true;
    w.advance(Duration::from_secs(1), Duration::from_millis(100), |_| {});
    // More data does not push the deadline back: it counts from the first
    // unanswered packet.
    w.send_data(Side::A, Some(packet(2)));
    w.advance(
        Duration::from_millis(14_900),
        Duration::from_millis(100),
        |_| {},
    );
    assert_eq!(w.a.initiations_sent, base, "not before 15 s");
    w.advance(
        Duration::from_millis(15_500),
        Duration::from_millis(100),
        |_| {},
    );
    assert_eq!(w.a.initiations_sent, base + 1);
}

#[test]
fn keys_are_zeroed_after_540_seconds_of_silence() {
    let mut w = World::new();
    w.send_data(Side::A, Some(packet(1)));
    assert!(w.a.peer.has_session() && !w.a.indices.is_empty());
    w.advance(Duration::from_secs(539), Duration::from_secs(1), |_| {});
    assert!(w.a.peer.has_session());
    w.advance(Duration::from_secs(541), Duration::from_secs(1), |_| {});
    assert!(!w.a.peer.has_session() && !w.b.peer.has_session());
    assert!(
        w.a.indices.is_empty() && w.b.indices.is_empty(),
        "indices retired with the keys"
    );
}

#[test]
fn replayed_and_flooding_initiations_are_rejected() {
    let mut w = World::new();
    let (now, wall) = (w.now, w.wall());
    let (_, out) = w.a.call(now, wall, |st, env, out| {
        st.send_initiation(env, false, out)
    });
    let Output::Handshake(msg) = &out[0] else {
        panic!("no initiation")
    };
    let arr: [u8; 148] = msg[..].try_into().unwrap();
    let consume = |b: &mut Node, now: Instant, wall| {
        let keys = b.peer.keys().unwrap();
        let remote = *b.peer.remote_public();
        let init =
            consume_initiation(&b.identity, &arr, |pk| (pk == &remote).then_some(keys)).unwrap();
        b.call(now, wall, |st, env, out| {
            st.accept_initiation(env, init, out)
        })
        .0
    };
    assert!(consume(&mut w.b, now, wall).is_ok());
    let later = now + Duration::from_secs(1);
    assert_eq!(
        consume(&mut w.b, later, wall).unwrap_err(),
        PeerError::Replay
    );
    // A fresh initiation 10 ms after the last consumed one is a flood.
    w.now += Duration::from_secs(6);
    let wall2 = w.wall();
    let (_, out) = w.a.call(w.now, wall2, |st, env, out| {
        st.send_initiation(env, false, out)
    });
    let Output::Handshake(msg2) = &out[0] else {
        panic!("no initiation")
    };
    let arr2: [u8; 148] = msg2[..].try_into().unwrap();
    let b = &mut w.b;
    let keys = b.peer.keys().unwrap();
    let remote = *b.peer.remote_public();
    let init =
        consume_initiation(&b.identity, &arr2, |pk| (pk == &remote).then_some(keys)).unwrap();
    let res = b
        .call(now + Duration::from_millis(10), wall2, |st, env, out| {
            st.accept_initiation(env, init, out)
        })
        .0;
    assert_eq!(res.unwrap_err(), PeerError::Flood);
}

#[test]
fn persistent_keepalive_sends_at_once_and_every_interval() {
    let mut w = World::new();
    w.send_data(Side::A, Some(packet(1)));
    let base = w.a.keepalives_sent;
    let (now, wall) = (w.now, w.wall());
    let (_, out) = w.a.call(now, wall, |st, env, out| {
        st.set_persistent_keepalive(env, 25, out)
    });
    w.run_outputs(Side::A, out);
    assert_eq!(
        w.a.keepalives_sent,
        base + 1,
        "turning it on sends one at once"
    );
    w.advance(Duration::from_secs(100), Duration::from_millis(500), |_| {});
    // One every 25 s; B's passive keepalives do not reset A's timer enough
    // to suppress them (any traffic pushes it back, so allow 3..=4).
    let n = w.a.keepalives_sent - base - 1;
    assert!((3..=4).contains(&n), "{n} persistent keepalives in 100 s");
}

#[test]
fn low_order_remote_key_cannot_handshake() {
    let id = Identity::new(secret(3));
    let st = PeerState::new(Some(&id), PublicKey::from([0u8; 32]), [0u8; 32], 1);
    assert!(!st.can_handshake());
}
