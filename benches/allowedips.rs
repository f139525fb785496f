//! Allowed-IPs lookups at 10,000 peers: one IPv4 /32 and one IPv6 /128 each,
//! plus a few hundred /16s over them, queried with random addresses.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use phantommesh::routing::AllowedIps;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

const PEERS: u32 = 10_000;
const SLASH16S: u32 = 256;
const QUERIES: usize = 4096;

/// Stands in for the peer handle: compared by identity like an Arc'd peer.
#[derive(Clone)]
struct Peer(Arc<u32>);

impl PartialEq for Peer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

fn v4_of(i: u32) -> [u8; 4] {
    // Peers spread over 10.0.0.0/8 and the /16s over 10.0.0.0/8 too, so
    // lookups walk through forks at many depths.
    (0x0a00_0000 | (i.wrapping_mul(2_654_435_761) & 0x00ff_ffff)).to_be_bytes()
}

fn v6_of(i: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1..5].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
    a[12..].copy_from_slice(&i.to_be_bytes());
    a
}

fn bench(c: &mut Criterion) {
    let peers: Vec<Peer> = (0..PEERS).map(|i| Peer(Arc::new(i))).collect();
    let mut table = AllowedIps::new();
    for (i, p) in peers.iter().enumerate() {
        let i = i as u32;
        table.insert(IpAddr::V4(Ipv4Addr::from(v4_of(i))), 32, p.clone());
        table.insert(IpAddr::V6(Ipv6Addr::from(v6_of(i))), 128, p.clone());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for s in 0..SLASH16S {
        let owner = peers[rng.gen_range(0..peers.len())].clone();
        table.insert(IpAddr::V4(Ipv4Addr::new(10, s as u8, 0, 0)), 16, owner);
    }

    // Half the queries hit a peer's own address, half are random in 10/8
    // (mostly answered by a /16).
    let v4: Vec<[u8; 4]> = (0..QUERIES)
        .map(|q| {
            if q % 2 == 0 {
                v4_of(rng.gen_range(0..PEERS))
            } else {
                (0x0a00_0000 | (rng.gen::<u32>() & 0x00ff_ffff)).to_be_bytes()
            }
        })
        .collect();
    let v6: Vec<[u8; 16]> = (0..QUERIES)
        .map(|q| {
            if q % 2 == 0 {
                v6_of(rng.gen_range(0..PEERS))
            } else {
                let mut a: [u8; 16] = rng.gen();
                a[0] = 0xfd;
                a
            }
        })
        .collect();
    let hits = v4.iter().filter(|a| table.lookup_v4(**a).is_some()).count();
    assert!(hits > QUERIES / 2, "queries should mostly match");

    let mut g = c.benchmark_group("allowedips_10k_peers");
    g.throughput(Throughput::Elements(QUERIES as u64));
    g.bench_function("lookup_v4", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for a in &v4 {
                found += table.lookup_v4(black_box(*a)).is_some() as usize;
            }
            found
        })
    });
    g.bench_function("lookup_v6", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for a in &v6 {
                found += table.lookup_v6(black_box(*a)).is_some() as usize;
            }
            found
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
