use super::*;

fn s(rss_kib: u64, fds: u64) -> ProcSample {
    ProcSample {
        rss_bytes: rss_kib * 1024,
        fds,
        cpu_ms: 0,
    }
}

fn limits() -> SoakLimits {
    SoakLimits {
        memory_growth: 0.10,
        memory_slope: 0.05,
        fd_slack: 2,
        warmup: Duration::from_secs(60),
    }
}

#[test]
fn growth_is_measured_from_the_first_sample_after_warm_up() {
    // Warm-up samples may be anything: the baseline is the one at 60 s.
    let samples = [
        (10.0, s(1000, 5)),
        (60.0, s(20_000, 10)),
        (120.0, s(21_000, 10)),
        (180.0, s(21_900, 11)),
    ];
    let v = verdict(&[], &samples, &limits());
    assert!(v.pass, "{:?}", v.failures);
    assert_eq!(v.baseline, Some(s(20_000, 10)));
    assert_eq!(v.peak_rss_bytes, Some(21_900 * 1024));
    assert!((v.memory_growth.unwrap() - 0.095).abs() < 1e-9);
    let samples = [
        (60.0, s(20_000, 10)),
        (120.0, s(22_001, 10)),
        (180.0, s(20_500, 10)),
    ];
    let v = verdict(&[], &samples, &limits());
    assert!(!v.pass);
    assert!(
        v.failures[0].contains("total growth rule: RSS grew 10.0%"),
        "{:?}",
        v.failures
    );
}

/// A series in MiB at the default interval (60 s, ramp 5 s): `(seconds,
/// MiB)` -> samples with 20 descriptors.
fn series(points: impl IntoIterator<Item = (f64, f64)>) -> Vec<(f64, ProcSample)> {
    points
        .into_iter()
        .map(|(t, m)| {
            let sample = ProcSample {
                rss_bytes: (m * 1024.0 * 1024.0) as u64,
                fds: 20,
                cpu_ms: 0,
            };
            (t, sample)
        })
        .collect()
}

fn default_limits() -> SoakLimits {
    SoakLimits {
        warmup: default_warmup(Duration::from_secs(5), Duration::from_secs(60)),
        ..limits()
    }
}

/// Deterministic noise in -1..1 (a fixed LCG).
fn noise(n: usize) -> Vec<f64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn the_default_warm_up_covers_every_peers_first_rekey() {
    let sec = Duration::from_secs;
    assert_eq!(
        default_warmup(Duration::ZERO, Duration::ZERO),
        REKEY_AFTER_TIME + 2 * REKEY_TIMEOUT
    );
    // The 20-minute soak's shape: ramp 5 s, interval 60 s.
    assert_eq!(default_warmup(sec(5), sec(60)), sec(135));
    // A long interval still counts: ramp plus one interval.
    assert_eq!(default_warmup(sec(5), sec(600)), sec(605));
}

#[test]
fn a_step_at_the_first_rekey_then_flat_passes() {
    // The 20-minute soak that said FAIL: 11.0 MiB until the first rekey
    // (120 s), 12.1 MiB at 180 s, then 12.2 MiB, with a page or two of
    // wobble, to the end at 1205 s.
    let mut pts = vec![(0.0, 10.2), (60.0, 11.0), (120.0, 11.0), (180.0, 12.1)];
    let wobble = noise(21);
    pts.extend((4..=20).map(|i| (i as f64 * 60.0, 12.2 + wobble[i] * 0.008)));
    pts.push((1205.0, 12.2));
    let samples = series(pts);
    let old = SoakLimits {
        warmup: Duration::from_secs(65),
        ..limits()
    };
    let v = verdict(&[], &samples, &old);
    assert!(
        v.failures.iter().any(|f| f.contains("total growth rule")),
        "the old warm-up (ramp + one interval) calls the step a leak: {:?}",
        v.failures
    );
    let v = verdict(&[], &samples, &default_limits());
    assert!(v.pass, "{:?}", v.failures);
    assert_eq!(v.baseline_at_s, Some(180.0));
    let f = v.memory_slope.unwrap();
    assert!(f.judged && f.samples == 19, "{f:?}");
    assert!(f.percent_per_hour.abs() < 5.0, "{f:?}");
    assert!(
        (v.memory_growth.unwrap() * 100.0 - 0.9).abs() < 0.2,
        "{v:?}"
    );
}

#[test]
fn a_slow_steady_leak_under_the_total_limit_fails_by_its_slope() {
    // One hour, 12 MiB after warm-up, growing 7 % of that per hour: 6.6 %
    // by the end, under the 10 % total.
    let pts = (3..=60).map(|i| (i as f64 * 60.0, 12.0 * (1.0 + 0.07 * (i - 3) as f64 / 60.0)));
    let v = verdict(&[], &series(pts), &default_limits());
    assert!(!v.pass);
    assert!(v.memory_growth.unwrap() < 0.10, "{v:?}");
    assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
    let f = &v.failures[0];
    assert!(
        f.contains("slope rule: RSS rose +7.00%/h (+0.840 MiB/h"),
        "{f}"
    );
    assert!(
        f.contains("58 samples from 180s to 3600s), limit 5%/h"),
        "{f}"
    );
    let fit = v.memory_slope.unwrap();
    assert!((fit.fit_from_mib - 12.0).abs() < 1e-6, "{fit:?}");
    assert!(
        target_lines(&v).contains("slope +7.00%/h"),
        "{}",
        target_lines(&v)
    );
}

#[test]
fn noise_without_a_trend_passes() {
    // +-2 % around 12 MiB at every sample for an hour: neither rule fires.
    let n = noise(61);
    let pts = (3..=60).map(|i| (i as f64 * 60.0, 12.0 * (1.0 + 0.02 * n[i])));
    let v = verdict(&[], &series(pts), &default_limits());
    assert!(v.pass, "{:?}", v.failures);
    let f = v.memory_slope.unwrap();
    assert!(f.judged && f.percent_per_hour.abs() < 2.0, "{f:?}");
}

#[test]
fn a_fast_leak_fails_by_both_rules_and_a_short_fit_is_not_judged() {
    let pts = (3..=30).map(|i| (i as f64 * 60.0, 12.0 + (i - 3) as f64 * 0.1));
    let v = verdict(&[], &series(pts), &default_limits());
    assert_eq!(v.failures.len(), 2, "{:?}", v.failures);
    assert!(v.failures[0].contains("total growth rule: RSS grew 22.5% after warm-up (12.00 MiB at 180s -> 14.70 MiB peak at 1800s), limit 10%"), "{:?}", v.failures);
    assert!(
        v.failures[1].contains("slope rule: RSS rose +50.00%/h"),
        "{:?}",
        v.failures
    );
    // Five minutes after warm-up: 4 %/... per hour is not judged yet.
    let pts = (3..=8).map(|i| (i as f64 * 60.0, 12.0 + (i - 3) as f64 * 0.05));
    let v = verdict(&[], &series(pts), &default_limits());
    assert!(v.pass, "{:?}", v.failures);
    let f = v.memory_slope.unwrap();
    assert!(!f.judged && f.percent_per_hour > 20.0, "{f:?}");
    assert!(
        target_lines(&v).contains("not judged: needs 10 min and 5 samples after warm-up"),
        "{}",
        target_lines(&v)
    );
}

#[test]
fn target_lines_show_both_rules_and_their_limits() {
    let pts = (3..=20).map(|i| (i as f64 * 60.0, 12.0));
    let v = verdict(&[], &series(pts), &default_limits());
    let t = target_lines(&v);
    assert_eq!(
        t,
        "Target: RSS 12.0 MiB after warm-up (180s), peak 12.0 MiB, last 12.0 MiB; fds 20 -> 20\n\
         Memory: growth 0% after warm-up (limit 10%), slope +0.00%/h (+0.000 MiB/h over 18 samples, 180s to 1200s; limit 5%/h)\n"
    );
    let v = verdict(&[], &series([(30.0, 9.0)]), &default_limits());
    assert_eq!(
        target_lines(&v),
        "Target: RSS 9.0 MiB, fds 20 (run shorter than the warm-up of 135s: memory not judged)\n"
    );
}

#[test]
fn descriptor_leak_beyond_slack_fails() {
    let ok = [(60.0, s(100, 10)), (120.0, s(100, 12))];
    assert!(verdict(&[], &ok, &limits()).pass);
    let leak = [(60.0, s(100, 10)), (120.0, s(100, 13))];
    let v = verdict(&[], &leak, &limits());
    assert!(!v.pass);
    assert!(v.failures[0].contains("from 10 to 13"));
}

#[test]
fn a_lossy_interval_fails_and_no_samples_is_not_a_failure() {
    let good = Interval {
        end_s: 60.0,
        pass: true,
        ..Interval::default()
    };
    let bad = Interval {
        end_s: 120.0,
        probes_answered: 990,
        probes_failed: 10,
        loss_percent: 1.0,
        pass: false,
        ..Interval::default()
    };
    let v = verdict(&[good.clone(), bad], &[], &limits());
    assert!(!v.pass);
    assert_eq!((v.intervals, v.failed_intervals), (2, 1));
    assert!(v.failures[0].contains("10 of 1000"), "{:?}", v.failures);
    let v = verdict(&[good], &[(1.0, s(5, 5))], &limits());
    assert!(v.pass, "warm-up samples alone judge nothing");
    assert_eq!(v.baseline, None);
    assert_eq!(v.last, Some(s(5, 5)));
}

#[test]
fn sampling_our_own_process_works() {
    let t0 = std::time::Instant::now();
    let a = sample(std::process::id()).expect("own /proc entry");
    assert!(a.rss_bytes > 0 && a.fds >= 3);
    let mut x = 0u64;
    while t0.elapsed() < Duration::from_millis(300) {
        x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
    }
    std::hint::black_box(x);
    let b = sample(std::process::id()).unwrap();
    let busy = cpu_cores(&(0.0, a), &(t0.elapsed().as_secs_f64(), b)).unwrap();
    assert!(
        busy > 0.2 && busy < 4.0,
        "a spinning thread is busy: {busy}"
    );
    assert!(sample(u32::MAX).is_none());
}
