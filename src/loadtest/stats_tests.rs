use super::*;

#[test]
fn counters_add_and_difference() {
    let mut a = Counters {
        probes_sent: 10,
        probes_answered: 9,
        probes_lost: 1,
        bytes_sent: 100,
        ..Counters::default()
    };
    let b = Counters {
        probes_sent: 5,
        probes_answered: 5,
        handshakes_completed: 2,
        ..Counters::default()
    };
    let before = a;
    a.add(&b);
    assert_eq!(
        (
            a.probes_sent,
            a.probes_answered,
            a.probes_lost,
            a.handshakes_completed
        ),
        (15, 14, 1, 2)
    );
    assert_eq!(a.since(&before), b);
    assert_eq!(before.since(&a).probes_sent, 0, "saturates, never wraps");
    assert_eq!(a.probes_resolved(), 15);
}

#[test]
fn summary_rates_follow_the_documented_definitions() {
    let c = Counters {
        peers_started: 100,
        peers_established: 99,
        probes_sent: 10_000,
        probes_answered: 9_990,
        probes_lost: 8,
        probes_no_session: 2,
        steady_answered: 6_000,
        bytes_sent: 1_000,
        bytes_received: 900,
        ..Counters::default()
    };
    let mut rtt = Histogram::new();
    for i in 1..=100 {
        rtt.record(i as f64 * 1e-4);
    }
    let s = gate_summary(&c, &rtt, 35.0, 30.0);
    assert_eq!(s.attempts, 100 + 10_000);
    assert_eq!(s.successes, 99 + 9_990);
    assert!((s.success_rate.unwrap() - 10_089.0 / 10_100.0).abs() < 1e-12);
    assert!((s.error_rate.unwrap() - 10.0 / 10_000.0).abs() < 1e-12);
    assert!((s.requests_per_second.unwrap() - 200.0).abs() < 1e-9);
    assert_eq!(s.bytes, 1_900);
    assert_eq!(s.latency_samples, 100);
    let p50 = s.p50_seconds.unwrap();
    assert!((p50 - 0.005).abs() / 0.005 < 0.02, "p50 {p50}");
    let p99 = s.p99_seconds.unwrap();
    assert!((p99 - 0.0099).abs() / 0.0099 < 0.02, "p99 {p99}");
    // Nothing measured is "no data", not zero.
    let empty = gate_summary(&Counters::default(), &Histogram::new(), 1.0, 1.0);
    assert_eq!(
        (
            empty.success_rate,
            empty.error_rate,
            empty.p99_seconds,
            empty.requests_per_second
        ),
        (None, None, None, None)
    );
}

#[test]
fn chart_buckets_are_log_spaced_and_cover_their_values() {
    assert_eq!(ChartHistogram::bucket_of(0.0), 0);
    assert_eq!(ChartHistogram::bucket_of(f64::NAN), 0);
    assert_eq!(
        ChartHistogram::bucket_of(100.0),
        CHART_PER_DECADE * CHART_DECADES + 1
    );
    for v in [1.1e-5, 3e-4, 0.00123, 0.05, 0.999, 7.5] {
        let i = ChartHistogram::bucket_of(v);
        let (lo, hi) = ChartHistogram::edges(i);
        assert!(
            lo <= v * (1.0 + 1e-12) && v < hi * (1.0 + 1e-12),
            "{v} not in [{lo}, {hi}) (bucket {i})"
        );
    }
    // One decade has ten buckets.
    assert_eq!(
        ChartHistogram::bucket_of(1.5e-3) - ChartHistogram::bucket_of(1.5e-4),
        10
    );
    let mut a = ChartHistogram::default();
    a.record(0.001);
    let mut b = ChartHistogram::default();
    b.record(0.001);
    b.record(1.0);
    a.merge(&b);
    assert_eq!(a.counts.iter().sum::<u64>(), 3);
    assert_eq!(a.counts[ChartHistogram::bucket_of(0.001)], 2);
}

#[test]
fn timeline_width_keeps_buckets_bounded() {
    assert_eq!(
        Timeline::new(Duration::from_secs(35)).width,
        Duration::from_secs(1)
    );
    let long = Timeline::new(Duration::from_secs(72 * 3600));
    assert_eq!(long.width, Duration::from_secs(648));
    assert!(long.index_of(Duration::from_secs(72 * 3600)) <= MAX_BUCKETS);
    let mut s = Stats::new(Duration::from_secs(10));
    s.count(Duration::from_millis(1500), |c| c.probes_sent += 1);
    s.record_rtt(Duration::from_millis(1600), 0.002);
    s.count(Duration::from_millis(3200), |c| c.probes_lost += 1);
    assert_eq!(s.timeline.buckets.len(), 4);
    assert_eq!(s.timeline.buckets[1].counters.probes_sent, 1);
    assert_eq!(s.timeline.buckets[1].rtt.count(), 1);
    assert_eq!(s.timeline.buckets[3].counters.probes_lost, 1);
    let mut total = Stats::new(Duration::from_secs(10));
    total.merge(&s);
    total.merge(&s);
    assert_eq!(total.counters.probes_sent, 2);
    assert_eq!(total.timeline.buckets[1].rtt.count(), 2);
    assert_eq!(total.rtt.count(), 2);
    assert_eq!(total.chart.counts.iter().sum::<u64>(), 2);
    total.clear();
    assert_eq!(total.counters, Counters::default());
    assert!(total.timeline.buckets.is_empty());
}

#[test]
fn worst_peers_puts_failed_handshakes_then_loss_first() {
    let p = |index, hs: Option<f64>, lost, max| PeerResult {
        index,
        handshake_ms: hs,
        probes_answered: 100 - lost,
        probes_lost: lost,
        rtt_max_ms: Some(max),
        ..PeerResult::default()
    };
    let peers = vec![
        p(0, Some(1.0), 0, 9.0),
        p(1, Some(1.0), 5, 1.0),
        p(2, None, 0, 0.0),
        p(3, Some(1.0), 0, 20.0),
    ];
    let w: Vec<u32> = worst_peers(&peers, 3).iter().map(|p| p.index).collect();
    assert_eq!(w, vec![2, 1, 3]);
    assert!((peers[1].loss() - 0.05).abs() < 1e-12);
    assert_eq!(PeerResult::default().loss(), 0.0);
}

#[test]
fn least_squares_recovers_a_line_and_refuses_degenerate_input() {
    let pts: Vec<(f64, f64)> = (0..10)
        .map(|i| (1000.0 + i as f64 * 60.0, 5e6 + 3.0 * i as f64 * 60.0))
        .collect();
    let f = least_squares(&pts).unwrap();
    assert!((f.slope - 3.0).abs() < 1e-9, "{f:?}");
    assert!((f.at(1000.0) - 5e6).abs() < 1e-3, "{f:?}");
    // Symmetric noise around a flat line: slope 0.
    let flat = [(0.0, 1.0), (1.0, 3.0), (2.0, 1.0), (3.0, 3.0), (4.0, 2.0)];
    let f = least_squares(&flat).unwrap();
    assert!(
        f.slope.abs() < 0.3 && (f.at(2.0) - 2.0).abs() < 1e-9,
        "{f:?}"
    );
    assert_eq!(least_squares(&[(1.0, 2.0)]), None);
    assert_eq!(least_squares(&[(1.0, 2.0), (1.0, 3.0)]), None);
}
