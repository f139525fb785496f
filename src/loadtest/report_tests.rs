use super::*;
use std::time::Duration;

#[test]
fn ticks_are_round_and_cover_the_maximum() {
    assert_eq!(ticks(10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    let t = ticks(23_456.0);
    assert_eq!(t[1], 5000.0);
    assert!(*t.last().unwrap() >= 23_456.0);
    assert_eq!(ticks(0.0), vec![0.0, 1.0]);
    assert_eq!(ticks(f64::NAN), vec![0.0, 1.0]);
    assert_eq!(dur(0.0015), "1.5ms");
    assert_eq!(dur(2e-5), "20us");
    assert_eq!(dur(3.0), "3s");
    assert_eq!(dur(1.9953e-5), "20us", "three significant digits");
    assert_eq!(dur(0.00125893), "1.26ms");
}

#[test]
fn text_is_escaped() {
    assert_eq!(
        esc("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
}

#[test]
fn timeline_charts_draw_each_series() {
    let mut s = Stats::new(Duration::from_secs(10));
    for i in 0..50u64 {
        let at = Duration::from_millis(i * 200);
        s.count(at, |c| {
            c.probes_answered += 10;
            c.peers_established += u64::from(i < 5);
            c.bytes_sent += 1000;
        });
        s.record_rtt(at, 0.0005 + i as f64 * 1e-5);
    }
    s.count(Duration::from_secs(3), |c| c.probes_lost += 2);
    let h = histogram_chart(&s.chart);
    assert!(
        h.contains("<rect x=") && h.contains("<title>"),
        "histogram bars with tooltips"
    );
    let charts = timeline_charts(&s);
    assert!(
        charts.iter().all(|c| c.contains("<polyline")),
        "line charts drawn"
    );
    assert!(charts[1].contains("probes answered/s"));
    assert_eq!(charts.len(), 3, "no traffic chart without bulk traffic");
    s.counters.bulk_sent = 5;
    assert!(timeline_charts(&s)[3].contains("Tunnel traffic"));
    let empty = Stats::new(Duration::from_secs(1));
    assert!(histogram_chart(&empty.chart).contains("no data"));
    assert!(timeline_charts(&empty)[0].contains("no data"));
}
