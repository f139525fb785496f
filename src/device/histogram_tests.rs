use super::*;
use std::sync::Arc;

fn idx_of(bounds: &[f64], le: f64) -> usize {
    bounds
        .iter()
        .position(|&b| b == le)
        .unwrap_or_else(|| panic!("{le} is not a bucket edge"))
}

#[test]
fn runbook_objectives_are_bucket_edges() {
    for (name, bounds) in [
        ("packet", PACKET_BUCKETS),
        ("handshake", HANDSHAKE_BUCKETS),
        ("rtt", RTT_BUCKETS),
    ] {
        let h = Histogram::new(bounds);
        let exported = h.bounds();
        assert!(exported.contains(&0.1), "{name}: 100 ms edge");
        assert!(exported.contains(&0.2), "{name}: 200 ms edge");
        // Bounds survive the nanosecond round trip bit for bit, so `le`
        // labels print as the constants were written.
        assert_eq!(exported, bounds, "{name}");
    }
    let packet = Histogram::new(PACKET_BUCKETS).bounds();
    assert_eq!(
        packet.iter().filter(|&&b| b < 0.001).count(),
        6,
        "sub-millisecond resolution"
    );
    assert_eq!(packet[0], 0.000_01);
}

#[test]
fn observations_on_an_edge_belong_to_that_bucket() {
    let h = Histogram::new(PACKET_BUCKETS);
    let i100 = idx_of(PACKET_BUCKETS, 0.1);
    h.observe(Duration::from_millis(100)); // exactly le=0.1
    let s = h.snapshot();
    assert_eq!(s.cumulative[i100], 1);
    assert_eq!(s.cumulative[i100 - 1], 0, "not in the bucket below");

    h.observe(Duration::from_nanos(100_000_001)); // just above 100 ms
    let s = h.snapshot();
    assert_eq!(s.cumulative[i100], 1);
    assert_eq!(s.cumulative[i100 + 1], 2, "lands in le=0.2");

    let i10us = idx_of(PACKET_BUCKETS, 0.000_01);
    h.observe(Duration::from_micros(10));
    h.observe(Duration::ZERO);
    let s = h.snapshot();
    assert_eq!(
        s.cumulative[i10us], 2,
        "10us and 0 both in the first bucket"
    );
    h.observe(Duration::from_nanos(10_001));
    assert_eq!(h.snapshot().cumulative[i10us], 2);
    assert_eq!(h.snapshot().cumulative[i10us + 1], 3);
}

#[test]
fn values_above_the_last_bound_only_reach_inf() {
    let h = Histogram::new(PACKET_BUCKETS);
    h.observe(Duration::from_secs(10));
    h.observe(Duration::from_millis(10_001));
    h.observe(Duration::MAX);
    let s = h.snapshot();
    let last = PACKET_BUCKETS.len() - 1;
    assert_eq!(
        s.cumulative[last], 1,
        "le=10 holds only the 10 s observation"
    );
    assert_eq!(s.cumulative[last + 1], 3);
    assert_eq!(s.count, 3);
    // Duration::MAX is clamped for the sum, not dropped.
    assert!(s.sum > 20.0 && s.sum.is_finite());
}

#[test]
fn cumulative_counts_sum_and_count() {
    let h = Histogram::new(&[0.001, 0.01, 0.1]);
    for ms in [0.5, 0.5, 5.0, 50.0, 50.0, 50.0, 500.0] {
        h.observe(Duration::from_secs_f64(ms / 1000.0));
    }
    let s = h.snapshot();
    assert_eq!(s.bounds, vec![0.001, 0.01, 0.1]);
    assert_eq!(s.cumulative, vec![2, 3, 6, 7]);
    assert_eq!(s.count, 7);
    assert!((s.sum - 0.656).abs() < 1e-9, "sum {}", s.sum);
    assert!((s.mean().unwrap() - 0.656 / 7.0).abs() < 1e-9);
}

#[test]
fn observe_n_counts_a_batch() {
    let h = Histogram::new(&[0.001, 0.01]);
    h.observe_n(Duration::from_micros(200), 64);
    h.observe_n(Duration::from_secs(1), 0);
    let s = h.snapshot();
    assert_eq!(s.cumulative, vec![64, 64, 64]);
    assert!((s.sum - 64.0 * 0.0002).abs() < 1e-12);
}

#[test]
fn observe_secs_handles_bad_floats() {
    let h = Histogram::new(&[0.001]);
    h.observe_secs(f64::NAN);
    h.observe_secs(-1.0);
    h.observe_secs(f64::INFINITY);
    h.observe_secs(0.0005);
    let s = h.snapshot();
    assert_eq!(s.cumulative, vec![3, 4]);
    assert!(s.sum.is_finite());
}

#[test]
fn concurrent_observers_lose_nothing() {
    let h = Arc::new(Histogram::new(PACKET_BUCKETS));
    let threads = 4u64;
    let per = 50_000u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    // Spread over several buckets, deterministic per thread.
                    h.observe(Duration::from_micros((i % 7) * 40 + t));
                }
            })
        })
        .collect();
    for th in handles {
        th.join().unwrap();
    }
    let s = h.snapshot();
    assert_eq!(s.count, threads * per);
    let expected_ns: u64 = (0..threads)
        .map(|t| (0..per).map(|i| ((i % 7) * 40 + t) * 1000).sum::<u64>())
        .sum();
    assert!(
        (s.sum - expected_ns as f64 / 1e9).abs() < 1e-6,
        "sum {} vs {}",
        s.sum,
        expected_ns as f64 / 1e9
    );
    // Every observation is <= 243 us: all below the 250 us edge.
    assert_eq!(
        s.cumulative[idx_of(PACKET_BUCKETS, 0.000_25)],
        threads * per
    );
    assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn snapshot_while_observing_stays_consistent() {
    let h = Arc::new(Histogram::new(PACKET_BUCKETS));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (h, stop) = (h.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                h.observe(Duration::from_micros(i % 5000));
                i += 1;
            }
        })
    };
    for _ in 0..2000 {
        let s = h.snapshot();
        assert_eq!(*s.cumulative.last().unwrap(), s.count);
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn quantile_interpolates_like_promql() {
    let h = Histogram::new(&[0.1, 0.2, 0.5]);
    assert_eq!(h.snapshot().quantile(0.5), None, "empty");
    for _ in 0..50 {
        h.observe(Duration::from_millis(50));
    }
    for _ in 0..50 {
        h.observe(Duration::from_millis(150));
    }
    let s = h.snapshot();
    // Rank 50 is the top of the first bucket; rank 75 is halfway into the second.
    assert!((s.quantile(0.5).unwrap() - 0.1).abs() < 1e-12);
    assert!((s.quantile(0.75).unwrap() - 0.15).abs() < 1e-12);
    assert!((s.quantile(0.25).unwrap() - 0.05).abs() < 1e-12);
    assert_eq!(s.quantile(1.5), None);
    h.observe(Duration::from_secs(3));
    h.observe(Duration::from_secs(3));
    assert_eq!(
        h.snapshot().quantile(1.0),
        Some(0.5),
        "rank in +Inf reports the last bound"
    );
}

#[test]
fn invalid_bounds_are_rejected() {
    assert!(Histogram::try_new(&[]).is_none());
    assert!(Histogram::try_new(&[0.2, 0.1]).is_none());
    assert!(Histogram::try_new(&[0.1, 0.1]).is_none());
    assert!(Histogram::try_new(&[0.0]).is_none());
    assert!(Histogram::try_new(&[f64::NAN]).is_none());
    assert!(Histogram::try_new(&[f64::INFINITY]).is_none());
    assert!(
        Histogram::try_new(&[1e-10]).is_none(),
        "below nanosecond resolution"
    );
    assert!(
        Histogram::try_new(&[1e-9, 1.4e-9]).is_none(),
        "equal once rounded to ns"
    );
    let many: Vec<f64> = (1..=MAX_BUCKETS + 1).map(|i| i as f64).collect();
    assert!(Histogram::try_new(&many).is_none());
    assert!(Histogram::try_new(&many[..MAX_BUCKETS]).is_some());
}

#[test]
fn device_histograms_use_their_buckets() {
    let d = DeviceHistograms::new();
    assert_eq!(d.rx_packet.bounds(), PACKET_BUCKETS);
    assert_eq!(d.tx_packet.bounds(), PACKET_BUCKETS);
    assert_eq!(d.handshake.bounds(), HANDSHAKE_BUCKETS);
    assert_eq!(d.tunnel_test_rtt.bounds(), RTT_BUCKETS);
    d.rx_packet.observe(Duration::from_micros(30));
    assert_eq!(d.rx_packet.snapshot().count, 1);
    assert_eq!(
        d.tx_packet.snapshot().count,
        0,
        "histograms are independent"
    );
    // Two histograms written by different threads never share a cache line.
    assert_eq!(std::mem::align_of::<Histogram>(), 64);
}
