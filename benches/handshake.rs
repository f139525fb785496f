//! Handshakes per second against their ceiling, the X25519 cost. With the
//! static-static DH precomputed per peer, the responder spends 4 scalar
//! multiplications per handshake (es, ephemeral keygen, ee, se), so its
//! ceiling is a quarter of raw X25519 operations per second; a full
//! handshake (both sides, as one process doing both) about an eighth. The
//! initiator's share (create initiation + consume response: ephemeral
//! keygen, es, ee, se) has the same 4-multiplication ceiling as the
//! responder. The rates and ratios are printed at the end.
//!
//! `cargo bench --bench handshake -- --warm-up-time 1 --measurement-time 3`
mod common;

use criterion::{criterion_group, Criterion, Throughput};
use phantommesh::noise::handshake::{
    consume_initiation, consume_response, create_initiation, create_response, Identity, PeerKeys,
};
use phantommesh::noise::keys::{PublicKey, StaticSecretKey};
use phantommesh::noise::tai64n::Tai64n;
use rand_chacha::rand_core::SeedableRng;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

const GROUP: &str = "handshake";
const X25519: &str = "x25519 (ceiling unit)";
const FULL: &str = "full handshake, both sides";
const INITIATOR: &str = "initiator: create initiation + consume response";
const RESPONDER: &str = "responder: consume initiation + create response";

fn bench_handshake(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let (si, sr) = (
        StaticSecretKey::from([1u8; 32]),
        StaticSecretKey::from([2u8; 32]),
    );
    let (pi, pr) = (PublicKey::from(&si), PublicKey::from(&sr));
    let (ii, ir) = (Identity::new(si), Identity::new(sr));
    let keys_i = PeerKeys::new(&ii, pr, [0u8; 32]).unwrap();
    let keys_r = PeerKeys::new(&ir, pi, [0u8; 32]).unwrap();
    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Elements(1));
    g.bench_function(X25519, |b| {
        let s = StaticSecretKey::from([3u8; 32]);
        b.iter(|| black_box(s.diffie_hellman(black_box(&pr))))
    });
    g.bench_function(FULL, |b| {
        b.iter(|| {
            let ts = Tai64n::from_system_time(SystemTime::now());
            let (st, init) = create_initiation(&ii, &keys_i, 1, ts, &mut rng).unwrap();
            let c = consume_initiation(&ir, &init, |_| Some(&keys_r)).unwrap();
            let (resp, _) = create_response(&keys_r, &c, 2, &mut rng).unwrap();
            black_box(consume_response(&ii, &keys_i, &st, &resp).unwrap());
        })
    });
    // The initiator's share alone: the responder's work in between is not timed.
    g.bench_function(INITIATOR, |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let ts = Tai64n::from_system_time(SystemTime::now());
                let t = Instant::now();
                let (st, init) = create_initiation(&ii, &keys_i, 1, ts, &mut rng).unwrap();
                timed += t.elapsed();
                let c = consume_initiation(&ir, &init, |_| Some(&keys_r)).unwrap();
                let (resp, _) = create_response(&keys_r, &c, 2, &mut rng).unwrap();
                let t = Instant::now();
                black_box(consume_response(&ii, &keys_i, &st, &resp).unwrap());
                timed += t.elapsed();
            }
            timed
        })
    });
    // The responder's share alone: consume an initiation and answer it.
    let ts = Tai64n::from_system_time(SystemTime::now());
    let (_, init) = create_initiation(&ii, &keys_i, 1, ts, &mut rng).unwrap();
    g.bench_function(RESPONDER, |b| {
        b.iter(|| {
            let c = consume_initiation(&ir, &init, |_| Some(&keys_r)).unwrap();
            black_box(create_response(&keys_r, &c, 2, &mut rng).unwrap());
        })
    });
    g.finish();
}

/// Handshakes per second against X25519 operations per second divided by
/// the multiplications each one needs.
fn summary(since: SystemTime) {
    let Some(x) = common::measured(GROUP, X25519, Some(since)) else {
        eprintln!("\nhandshake: X25519 not measured in this run, no ratios");
        return;
    };
    let x_rate = 1e9 / x.ns;
    eprintln!("\nX25519: {x_rate:.0} /s ({:.1} us)", x.ns / 1e3);
    for (name, mults) in [(INITIATOR, 4.0), (RESPONDER, 4.0), (FULL, 8.0)] {
        if let Some(m) = common::measured(GROUP, name, Some(since)) {
            common::print_ratio(
                &format!("{name} (ceiling = X25519 rate / {mults})"),
                1e9 / m.ns,
                x_rate / mults,
                "/s",
            );
        }
    }
}

criterion_group!(benches, bench_handshake);

fn main() {
    let since = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary(since);
}
