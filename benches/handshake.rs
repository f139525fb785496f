//! Handshakes per second against their ceiling, the X25519 cost. With the
//! static-static DH precomputed per peer, the responder spends 4 scalar
//! multiplications per handshake (es, ephemeral keygen, ee, se), so its
//! ceiling is a quarter of raw X25519 operations per second; a full
//! handshake (both sides, as one process doing both) about an eighth.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use phantommesh::noise::handshake::{
    consume_initiation, consume_response, create_initiation, create_response, Identity, PeerKeys,
};
use phantommesh::noise::keys::{PublicKey, StaticSecretKey};
use phantommesh::noise::tai64n::Tai64n;
use rand_chacha::rand_core::SeedableRng;
use std::hint::black_box;
use std::time::SystemTime;

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
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("x25519 (ceiling unit)", |b| {
        let s = StaticSecretKey::from([3u8; 32]);
        b.iter(|| black_box(s.diffie_hellman(black_box(&pr))))
    });
    g.bench_function("full handshake, both sides", |b| {
        b.iter(|| {
            let ts = Tai64n::from_system_time(SystemTime::now());
            let (st, init) = create_initiation(&ii, &keys_i, 1, ts, &mut rng).unwrap();
            let c = consume_initiation(&ir, &init, |_| Some(&keys_r)).unwrap();
            let (resp, _) = create_response(&keys_r, &c, 2, &mut rng).unwrap();
            black_box(consume_response(&ii, &keys_i, &st, &resp).unwrap());
        })
    });
    // The responder's share alone: consume an initiation and answer it.
    let ts = Tai64n::from_system_time(SystemTime::now());
    let (_, init) = create_initiation(&ii, &keys_i, 1, ts, &mut rng).unwrap();
    g.bench_function("responder: consume initiation + create response", |b| {
        b.iter(|| {
            let c = consume_initiation(&ir, &init, |_| Some(&keys_r)).unwrap();
            black_box(create_response(&keys_r, &c, 2, &mut rng).unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, bench_handshake);
criterion_main!(benches);
