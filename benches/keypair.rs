//! The data-path session (`noise::keypair::Keypair`: header, send counter,
//! replay window) against its ceiling, the bare ring ChaCha20-Poly1305 it
//! wraps, on the same buffers: a batch of 128 packets of 1420 bytes laid out
//! as data messages (16-byte header, payload, 16-byte tag).
//!
//! `cargo bench --bench keypair -- --warm-up-time 1 --measurement-time 3`
//! prints keypair/raw ratios at the end; benches/device_pair.rs uses the
//! seal+open result as its ceiling.
mod common;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use phantommesh::noise::handshake::SessionKeys;
use phantommesh::noise::keypair::Keypair;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use std::hint::black_box;
use std::time::{Instant, SystemTime};

const BATCH: usize = 128;
const PACKET: usize = 1420;
const HEADER: usize = 16;
const TAG: usize = 16;
const MSG: usize = HEADER + PACKET + TAG;
const KEY: [u8; 32] = [0x42; 32];
const GROUP: &str = "keypair_128x1420";

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

fn packets() -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let mut p = vec![0u8; MSG];
            for (j, b) in p[HEADER..HEADER + PACKET].iter_mut().enumerate() {
                *b = (i * 31 + j) as u8;
            }
            p
        })
        .collect()
}

/// Initiator and responder sessions sharing one key in each direction, as a
/// completed handshake leaves them (both directions use `KEY` so the raw
/// ring key can seal and open the same bytes).
fn sessions() -> (Keypair, Keypair) {
    let now = Instant::now();
    let a = SessionKeys {
        send: KEY,
        recv: KEY,
        local_index: 1,
        remote_index: 2,
        is_initiator: true,
    };
    let b = SessionKeys {
        send: KEY,
        recv: KEY,
        local_index: 2,
        remote_index: 1,
        is_initiator: false,
    };
    (Keypair::new(a, now), Keypair::new(b, now))
}

fn raw_seal(key: &LessSafeKey, batch: &mut [Vec<u8>], first: u64) {
    for (i, p) in batch.iter_mut().enumerate() {
        let (body, tag_out) = p[HEADER..].split_at_mut(PACKET);
        let tag = key
            .seal_in_place_separate_tag(nonce(first + i as u64), Aad::empty(), body)
            .expect("seal");
        tag_out.copy_from_slice(tag.as_ref());
    }
}

fn raw_open(key: &LessSafeKey, batch: &mut [Vec<u8>], first: u64) {
    for (i, p) in batch.iter_mut().enumerate() {
        let plain = key
            .open_in_place(nonce(first + i as u64), Aad::empty(), &mut p[HEADER..])
            .expect("open");
        black_box(plain.len());
    }
}

fn kp_seal(kp: &Keypair, batch: &mut [Vec<u8>]) {
    for p in batch.iter_mut() {
        let c = kp.next_counter().expect("counter");
        black_box(kp.seal(c, p, PACKET));
    }
}

fn kp_open(kp: &Keypair, batch: &mut [Vec<u8>]) {
    for p in batch.iter_mut() {
        black_box(kp.open(p).expect("open"));
    }
}

fn bench(c: &mut Criterion) {
    let raw = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &KEY).unwrap());
    // Same bytes from both before their speeds are compared.
    {
        let (a, b) = sessions();
        let (mut x, mut y) = (packets(), packets());
        raw_seal(&raw, &mut x, 0);
        kp_seal(&a, &mut y);
        for (x, y) in x.iter().zip(&y) {
            assert_eq!(x[HEADER..], y[HEADER..], "keypair and raw ring disagree");
        }
        kp_open(&b, &mut y);
        assert_eq!(
            y[0][HEADER..HEADER + PACKET],
            packets()[0][HEADER..HEADER + PACKET]
        );
    }

    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Bytes((BATCH * PACKET) as u64));

    let mut buf = packets();
    let mut counter = 0u64;
    g.bench_function("raw_seal", |bch| {
        bch.iter(|| {
            raw_seal(&raw, &mut buf, counter);
            counter += BATCH as u64;
        })
    });
    let (a, _) = sessions();
    g.bench_function("keypair_seal", |bch| bch.iter(|| kp_seal(&a, &mut buf)));

    // Opening needs fresh ciphertexts (the replay window refuses a counter
    // twice): sealed in the untimed setup, one batch per iteration.
    let mut sealed = packets();
    raw_seal(&raw, &mut sealed, 0);
    g.bench_function("raw_open", |bch| {
        bch.iter_batched_ref(
            || sealed.clone(),
            |batch| raw_open(&raw, batch, 0),
            BatchSize::LargeInput,
        )
    });
    let (a, b) = sessions();
    let plain = packets();
    g.bench_function("keypair_open", |bch| {
        bch.iter_batched_ref(
            || {
                let mut batch = plain.clone();
                kp_seal(&a, &mut batch);
                batch
            },
            |batch| kp_open(&b, batch),
            BatchSize::LargeInput,
        )
    });

    // One packet's whole crypto trip, sender and receiver: the per-packet
    // ceiling of a device pair on one machine.
    let mut counter = 0u64;
    g.bench_function("raw_seal_open", |bch| {
        bch.iter(|| {
            raw_seal(&raw, &mut buf, counter);
            raw_open(&raw, &mut buf, counter);
            counter += BATCH as u64;
        })
    });
    let (a, b) = sessions();
    g.bench_function("keypair_seal_open", |bch| {
        bch.iter(|| {
            kp_seal(&a, &mut buf);
            kp_open(&b, &mut buf);
        })
    });
    g.finish();
}

/// On a shared machine separate criterion runs of raw and keypair see
/// different neighbours; timing them alternately, batch by batch, and
/// comparing the fastest batches gives a ratio the neighbours disturb less.
/// Returns (raw, keypair) nanoseconds per batch of seal+open.
fn paired_seal_open(rounds: usize) -> (f64, f64) {
    let raw = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &KEY).unwrap());
    let (a, b) = sessions();
    let mut buf = packets();
    let (mut best_raw, mut best_kp) = (u128::MAX, u128::MAX);
    for round in 0..rounds as u64 {
        let t = Instant::now();
        raw_seal(&raw, &mut buf, round * BATCH as u64);
        raw_open(&raw, &mut buf, round * BATCH as u64);
        best_raw = best_raw.min(t.elapsed().as_nanos());
        let t = Instant::now();
        kp_seal(&a, &mut buf);
        kp_open(&b, &mut buf);
        best_kp = best_kp.min(t.elapsed().as_nanos());
    }
    (best_raw as f64, best_kp as f64)
}

fn summary(since: SystemTime) {
    eprintln!("\nkeypair vs raw ring ChaCha20-Poly1305 ({BATCH} x {PACKET} B):");
    for op in ["seal", "open", "seal_open"] {
        let (Some(raw), Some(kp)) = (
            common::measured(GROUP, &format!("raw_{op}"), Some(since)),
            common::measured(GROUP, &format!("keypair_{op}"), Some(since)),
        ) else {
            eprintln!("{op}: not measured in this run");
            continue;
        };
        let gbit = |ns: f64| (BATCH * PACKET * 8) as f64 / ns;
        common::print_ratio(
            &format!(
                "{op} (keypair/raw, {:.0} ns per packet)",
                kp.ns / BATCH as f64
            ),
            gbit(kp.ns),
            gbit(raw.ns),
            "Gbit/s",
        );
    }
    if common::measured(GROUP, "keypair_seal_open", Some(since)).is_some() {
        let (raw, kp) = paired_seal_open(300);
        let gbit = |ns: f64| (BATCH * PACKET * 8) as f64 / ns;
        common::print_ratio(
            "seal_open, interleaved, fastest of 300 batches each (keypair/raw)",
            gbit(kp),
            gbit(raw),
            "Gbit/s",
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    let since = SystemTime::now();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    summary(since);
}
