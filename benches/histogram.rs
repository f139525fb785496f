//! Cost of recording into a latency histogram (the pipelines call it once
//! per batch) and of rendering a scrape.
//!
//! `cargo bench --bench histogram`
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use phantommesh::device::config::{AllowedIpChange, DeviceSet, PeerSet};
use phantommesh::device::Device;
use phantommesh::io::mem::{MemNetwork, MemTun};
use phantommesh::metrics::histogram::{Histogram, PACKET_BUCKETS};
use phantommesh::metrics::{render, Extra};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn observe(c: &mut Criterion) {
    let mut g = c.benchmark_group("histogram");
    g.throughput(Throughput::Elements(1));
    let h = Histogram::new(PACKET_BUCKETS);
    // Varying values so the bucket search is not trivially predicted.
    let values: Vec<Duration> = (0..1024u64)
        .map(|i| Duration::from_nanos((i * 7919) % 2_000_000))
        .collect();
    let mut i = 0usize;
    g.bench_function("observe/1-thread", |b| {
        b.iter(|| {
            h.observe(black_box(values[i & 1023]));
            i = i.wrapping_add(1);
        })
    });
    // Two threads hammering the same histogram: the contended worst case
    // (the pipelines use separate rx / tx histograms).
    g.bench_function("observe/2-threads-shared", |b| {
        b.iter_custom(|iters| {
            let h = Arc::new(Histogram::new(PACKET_BUCKETS));
            let barrier = Arc::new(Barrier::new(2));
            let other = {
                let (h, barrier) = (h.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for n in 0..iters {
                        h.observe(Duration::from_nanos(n % 300_000));
                    }
                })
            };
            barrier.wait();
            let start = Instant::now();
            for n in 0..iters {
                h.observe(black_box(Duration::from_nanos(n % 300_000)));
            }
            let t = start.elapsed();
            other.join().unwrap();
            t
        })
    });
    g.bench_function("snapshot", |b| b.iter(|| black_box(h.snapshot())));
    g.finish();
}

fn scrape(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    g.sample_size(20);
    for peers in [10u32, 1000] {
        let net = MemNetwork::new();
        let (tun, _handle) = MemTun::new("bench0", 1420);
        let dev = Device::new(tun, Arc::new(net.bind("192.0.2.1".parse().unwrap())));
        dev.apply(&DeviceSet {
            private_key: Some([7; 32]),
            listen_port: Some(51820),
            ..Default::default()
        })
        .unwrap();
        let set = DeviceSet {
            peers: (0..peers)
                .map(|i| {
                    let mut key = [0u8; 32];
                    key[..4].copy_from_slice(&(i + 1).to_be_bytes());
                    PeerSet {
                        public_key: key,
                        allowed_ips: vec![AllowedIpChange::Add(
                            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                            32,
                        )],
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        };
        dev.apply(&set).unwrap();
        let extra = Extra {
            histograms: Some(Default::default()),
            ..Default::default()
        };
        let mut out = String::new();
        g.bench_with_input(BenchmarkId::new("peers", peers), &peers, |b, _| {
            b.iter(|| {
                out.clear();
                render(&mut out, &dev, &extra);
                black_box(out.len())
            })
        });
        dev.close();
    }
    g.finish();
}

criterion_group!(benches, observe, scrape);
criterion_main!(benches);
