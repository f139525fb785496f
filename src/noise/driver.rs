//! The one place that builds an [`Env`] and runs a call on a [`PeerState`].
//! The device's driver (`device::driver`), the admin plane's tunnel test,
//! the load tester and the protocol tests all go through [`call`], and
//! split its outputs with [`split_index`]: each keeps only its own
//! receiver-index bookkeeping and its own way of sending.
use super::handshake::Identity;
use super::peer::{Env, IndexEvent, Output, PeerState};
use rand_core::CryptoRngCore;
use std::time::{Instant, SystemTime};

/// What a caller supplies for one call: the clocks, randomness and the
/// receiver-index allocator.
pub struct Ctx<'a> {
    pub identity: &'a Identity,
    pub now: Instant,
    pub wall: SystemTime,
    pub rng: &'a mut dyn CryptoRngCore,
    pub alloc_index: &'a mut dyn FnMut() -> u32,
}

/// Runs `f` on `state` with an [`Env`] made from `ctx`; returns its result
/// and every output, index changes included, in the order they happened.
pub fn call<R>(
    state: &mut PeerState,
    ctx: Ctx<'_>,
    f: impl FnOnce(&mut PeerState, &mut Env, &mut Vec<Output>) -> R,
) -> (R, Vec<Output>) {
    let mut env = Env {
        identity: ctx.identity,
        now: ctx.now,
        wall: ctx.wall,
        rng: ctx.rng,
        alloc_index: ctx.alloc_index,
    };
    let mut out = Vec::new();
    let r = f(state, &mut env, &mut out);
    (r, out)
}

/// Splits index changes (in order) from the outputs that send or drop
/// something (in order).
pub fn split_index(out: Vec<Output>) -> (Vec<IndexEvent>, Vec<Output>) {
    let mut index = Vec::new();
    let mut rest = Vec::with_capacity(out.len());
    for o in out {
        match o {
            Output::Index(ev) => index.push(ev),
            o => rest.push(o),
        }
    }
    (index, rest)
}
