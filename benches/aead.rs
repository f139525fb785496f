//! Data-path AEAD choice: ring's ChaCha20-Poly1305 (assembly) against the
//! RustCrypto `chacha20poly1305` crate, sealing and opening a batch of
//! 128 packets of 1420 bytes in place, as the send/receive pipelines do.
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ring::aead::{Aad, LessSafeKey, Nonce as RingNonce, UnboundKey, CHACHA20_POLY1305};
use std::hint::black_box;

const BATCH: usize = 128;
const PACKET: usize = 1420;
const TAG: usize = 16;
const KEY: [u8; 32] = [0x42; 32];

/// WireGuard's nonce: 32 zero bits, then the 64-bit little-endian counter.
fn nonce_bytes(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n
}

/// Plaintext packets with room for the tag at the end.
fn packets() -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let mut p = vec![0u8; PACKET + TAG];
            for (j, b) in p[..PACKET].iter_mut().enumerate() {
                *b = (i * 31 + j) as u8;
            }
            p
        })
        .collect()
}

fn ring_seal(key: &LessSafeKey, batch: &mut [Vec<u8>], first: u64) {
    for (i, p) in batch.iter_mut().enumerate() {
        let nonce = RingNonce::assume_unique_for_key(nonce_bytes(first + i as u64));
        let (body, tag_out) = p.split_at_mut(PACKET);
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::empty(), body)
            .expect("seal");
        tag_out.copy_from_slice(tag.as_ref());
    }
}

fn ring_open(key: &LessSafeKey, batch: &mut [Vec<u8>], first: u64) {
    for (i, p) in batch.iter_mut().enumerate() {
        let nonce = RingNonce::assume_unique_for_key(nonce_bytes(first + i as u64));
        let plain = key.open_in_place(nonce, Aad::empty(), p).expect("open");
        black_box(plain.len());
    }
}

fn rc_seal(key: &ChaCha20Poly1305, batch: &mut [Vec<u8>], first: u64) {
    for (i, p) in batch.iter_mut().enumerate() {
        let nonce = nonce_bytes(first + i as u64);
        let (body, tag_out) = p.split_at_mut(PACKET);
        let tag = key
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", body)
            .expect("seal");
        tag_out.copy_from_slice(&tag);
    }
}

fn rc_open(key: &ChaCha20Poly1305, batch: &mut [Vec<u8>], first: u64) {
    for (i, p) in batch.iter_mut().enumerate() {
        let nonce = nonce_bytes(first + i as u64);
        let (body, tag) = p.split_at_mut(PACKET);
        key.decrypt_in_place_detached(Nonce::from_slice(&nonce), b"", body, Tag::from_slice(tag))
            .expect("open");
    }
}

fn bench(c: &mut Criterion) {
    let ring_key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &KEY).unwrap());
    let rc_key = ChaCha20Poly1305::new(&KEY.into());

    // Both implementations must agree before their speed means anything.
    let (mut a, mut b) = (packets(), packets());
    ring_seal(&ring_key, &mut a, 7);
    rc_seal(&rc_key, &mut b, 7);
    assert_eq!(a, b, "ring and RustCrypto disagree");

    // Ciphertexts to open; each measured batch opens a fresh copy (the copy
    // is made outside the timed routine).
    let mut sealed = packets();
    ring_seal(&ring_key, &mut sealed, 0);

    let mut g = c.benchmark_group(format!("aead_{BATCH}x{PACKET}"));
    g.throughput(Throughput::Bytes((BATCH * PACKET) as u64));

    let mut buf = packets();
    let mut counter = 0u64;
    g.bench_function("ring_encrypt", |bch| {
        bch.iter(|| {
            ring_seal(&ring_key, &mut buf, counter);
            counter += BATCH as u64;
        })
    });
    g.bench_function("rustcrypto_encrypt", |bch| {
        bch.iter(|| {
            rc_seal(&rc_key, &mut buf, counter);
            counter += BATCH as u64;
        })
    });
    g.bench_function("ring_decrypt", |bch| {
        bch.iter_batched_ref(
            || sealed.clone(),
            |batch| ring_open(&ring_key, batch, 0),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("rustcrypto_decrypt", |bch| {
        bch.iter_batched_ref(
            || sealed.clone(),
            |batch| rc_open(&rc_key, batch, 0),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
