//! The one send path and the one receive path, through the real I/O loop
//! on the in-memory backends: which way runs of packets take (inline or
//! crypto workers), order under mixed batch sizes, and that every datagram
//! a device sends (data, keepalives, handshake messages) leaves through its
//! one function to the wire.
mod common;

use common::Node;
use phantommesh::device::options::{MAX_INLINE_BATCH, SMALL_BATCH};
use phantommesh::device::PathCounters;
use phantommesh::io::mem::MemNetwork;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A pair with a session: A (10.0.0.1) and B (10.0.0.2); runs of more
/// than [`SMALL_BATCH`] packets go to the crypto workers.
fn pair(net: &MemNetwork, keepalive: Option<u16>) -> (Node, Node) {
    pair_inline(net, keepalive, SMALL_BATCH)
}

/// As [`pair`], the readers doing runs of up to `inline_batch` themselves.
fn pair_inline(net: &MemNetwork, keepalive: Option<u16>, inline_batch: usize) -> (Node, Node) {
    let a = Node::with_inline_batch(net, "192.0.2.1", 51820, 1, 2, inline_batch);
    let b = Node::with_inline_batch(net, "192.0.2.2", 51821, 2, 2, inline_batch);
    a.add_peer(&b, true, &[("10.0.0.2", 32)], keepalive);
    b.add_peer(&a, false, &[("10.0.0.1", 32)], None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no session within 10 s");
        a.tun.inject(&packet(u32::MAX));
        if b.tun.recv_timeout(Duration::from_millis(300)).is_some() {
            break;
        }
    }
    // Whatever else the handshake let through.
    while b.tun.recv_timeout(Duration::from_millis(50)).is_some() {}
    (a, b)
}

/// An IPv4/UDP packet from A to B carrying sequence number `seq`.
fn packet(seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; 64];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&64u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    p[28..32].copy_from_slice(&seq.to_be_bytes());
    p
}

fn seq_of(p: &[u8]) -> u32 {
    u32::from_be_bytes(p[28..32].try_into().unwrap())
}

/// Injects packets `first..first + n` into A at once and waits until B
/// delivered all of them; returns their sequence numbers in arrival order.
fn burst(a: &Node, b: &Node, first: u32, n: u32) -> Vec<u32> {
    let pkts: Vec<Vec<u8>> = (first..first + n).map(packet).collect();
    let refs: Vec<&[u8]> = pkts.iter().map(|p| p.as_slice()).collect();
    assert_eq!(a.tun.inject_batch(&refs), n as usize);
    (0..n)
        .map(|_| {
            let p = b.tun.recv_timeout(Duration::from_secs(5));
            seq_of(&p.expect("a packet of the burst never arrived"))
        })
        .collect()
}

fn delta(after: PathCounters, before: PathCounters) -> (u64, u64) {
    (
        after.batches_inline - before.batches_inline,
        after.batches_worker - before.batches_worker,
    )
}

/// One read of 1 or 2 packets for an idle pipeline is done by the I/O
/// thread (in place or as an inline job), a read of 64 goes to the crypto
/// workers, on both the sending and the receiving device.
#[test]
fn batch_size_decides_inline_or_worker_in_both_directions() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, None);
    let mut seq = 0;
    for (n, way) in [
        (1u32, "inline"),
        (2, "inline"),
        (64, "worker"),
        (1, "inline"),
    ] {
        let (a0, b0) = (a.dev.path_counters(), b.dev.path_counters());
        let got = burst(&a, &b, seq, n);
        assert_eq!(got, (seq..seq + n).collect::<Vec<_>>(), "burst of {n}");
        seq += n;
        let want = if way == "inline" { (1, 0) } else { (0, 1) };
        assert_eq!(
            delta(a.dev.path_counters(), a0),
            want,
            "sender, burst of {n}"
        );
        assert_eq!(
            delta(b.dev.path_counters(), b0),
            want,
            "receiver, burst of {n}"
        );
    }
}

/// With `inline_batch` at its most (the default on two cores) every run
/// stays on the reader, the 64-packet one too, and arrives in order; with 0
/// even a lone packet goes to a worker.
#[test]
fn inline_batch_moves_the_line_between_reader_and_workers() {
    for (inline_batch, want) in [(MAX_INLINE_BATCH, (1, 0)), (0, (0, 1))] {
        let net = MemNetwork::new();
        let (a, b) = pair_inline(&net, None, inline_batch);
        let mut seq = 0;
        for n in [1u32, 64, 2] {
            let (a0, b0) = (a.dev.path_counters(), b.dev.path_counters());
            let got = burst(&a, &b, seq, n);
            assert_eq!(got, (seq..seq + n).collect::<Vec<_>>(), "burst of {n}");
            seq += n;
            let what = format!("inline_batch {inline_batch}, burst of {n}");
            assert_eq!(delta(a.dev.path_counters(), a0), want, "sender, {what}");
            assert_eq!(delta(b.dev.path_counters(), b0), want, "receiver, {what}");
        }
    }
}

/// Bursts of mixed sizes, back to back (so inline runs, worker jobs and
/// in-place packets of one peer overlap): every packet arrives, in order.
#[test]
fn order_per_peer_holds_under_mixed_batch_sizes() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, None);
    let sizes = [1u32, 64, 2, 1, 5, 128, 1, 3, 64, 1, 1, 2, 100, 4, 1];
    let mut pkts = Vec::new();
    let mut seq = 0u32;
    for &n in sizes.iter().cycle().take(60) {
        let batch: Vec<Vec<u8>> = (seq..seq + n).map(packet).collect();
        seq += n;
        pkts.push(batch);
    }
    let total = seq;
    let sender = {
        let tun_batches = pkts;
        let a_tun = a.tun;
        std::thread::spawn(move || {
            for batch in &tun_batches {
                let refs: Vec<&[u8]> = batch.iter().map(|p| p.as_slice()).collect();
                // The TUN queue is bounded: wait for room rather than drop.
                let mut at = 0;
                while at < refs.len() {
                    match a_tun.inject_batch(&refs[at..]) {
                        0 => std::thread::yield_now(),
                        n => at += n,
                    }
                }
            }
            a_tun
        })
    };
    let mut got = Vec::with_capacity(total as usize);
    while got.len() < total as usize {
        let p = b.tun.recv_timeout(Duration::from_secs(5));
        got.push(seq_of(&p.unwrap_or_else(|| {
            panic!("{} of {total} packets arrived", got.len())
        })));
    }
    let _a_tun = sender.join().unwrap();
    assert!(
        got.windows(2).all(|w| w[0] + 1 == w[1]),
        "out of order: {:?}",
        got.windows(2).find(|w| w[0] + 1 != w[1])
    );
    let counters = a.dev.path_counters();
    assert!(
        counters.batches_inline > 0 && counters.batches_worker > 0,
        "both ways were taken: {counters:?}"
    );
}

/// Handshake messages, data and keepalives: the network sees exactly the
/// datagrams the devices handed to their one function to the wire.
#[test]
fn keepalives_and_handshakes_leave_through_the_one_send_function() {
    let net = MemNetwork::new();
    let (initiations, responses, keepalives) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    {
        let (i, r, k) = (initiations.clone(), responses.clone(), keepalives.clone());
        net.set_filter(move |_, _, d| {
            match (d.first(), d.len()) {
                (Some(1), _) => i.fetch_add(1, Ordering::SeqCst),
                (Some(2), _) => r.fetch_add(1, Ordering::SeqCst),
                // A data message with no payload: header (16) and tag (16).
                (Some(4), 32) => k.fetch_add(1, Ordering::SeqCst),
                _ => 0,
            };
            true
        });
    }
    // A persistent keepalive every second from A.
    let (a, b) = pair(&net, Some(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while keepalives.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no keepalive within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stop both before counting: nothing is sent between the two looks.
    a.dev.close();
    b.dev.close();
    assert!(initiations.load(Ordering::SeqCst) >= 1);
    assert!(responses.load(Ordering::SeqCst) >= 1);
    let wire = a.dev.path_counters().wire_datagrams + b.dev.path_counters().wire_datagrams;
    assert_eq!(
        net.stats().sent,
        wire,
        "every datagram on the network went through the one send function"
    );
}
