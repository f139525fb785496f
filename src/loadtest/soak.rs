//! Soak checks: the target's resident memory and open descriptors sampled
//! from /proc at each interval, and the verdicts on them. The verdict
//! functions are pure; [`sample`] reads /proc.
use crate::gates::resources::{parse_proc_stat_times, parse_vmrss_bytes};
use serde::Serialize;
use std::time::Duration;

/// One reading of the target process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcSample {
    pub rss_bytes: u64,
    pub fds: u64,
    /// User plus system CPU time so far, milliseconds.
    pub cpu_ms: u64,
}

/// Cores the target kept busy between two samples (1.0 = one core).
pub fn cpu_cores(earlier: &(f64, ProcSample), later: &(f64, ProcSample)) -> Option<f64> {
    let dt = later.0 - earlier.0;
    (dt > 0.0).then(|| later.1.cpu_ms.saturating_sub(earlier.1.cpu_ms) as f64 / 1e3 / dt)
}

/// Reads `/proc/PID/status` (VmRSS) and counts `/proc/PID/fd`. None when
/// the process is gone or unreadable.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_bytes = parse_vmrss_bytes(&status)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let cpu_ms = parse_proc_stat_times(&stat).map_or(0, |(ticks, _)| ticks * 1000 / tck);
    Some(ProcSample {
        rss_bytes,
        fds,
        cpu_ms,
    })
}

/// One interval line's numbers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Interval {
    /// Seconds since the run's start at the interval's end.
    pub end_s: f64,
    pub length_s: f64,
    pub probes_sent: u64,
    pub probes_answered: u64,
    pub probes_failed: u64,
    /// Failed over resolved probes, percent.
    pub loss_percent: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub probes_per_second: f64,
    pub handshakes: u64,
    pub target: Option<ProcSample>,
    /// Cores the target used during the interval.
    pub target_cpu: Option<f64>,
    /// Whether the interval's loss stays within the gate.
    pub pass: bool,
}

/// Soak limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoakLimits {
    /// Allowed growth of resident memory over the warm-up baseline (0.10).
    pub memory_growth: f64,
    /// Descriptors the target may gain over the baseline.
    pub fd_slack: u64,
    /// Samples taken before this much time has passed are warm-up.
    pub warmup: Duration,
}

/// The soak verdict, with the reasons it failed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakVerdict {
    pub pass: bool,
    pub baseline: Option<ProcSample>,
    pub peak_rss_bytes: Option<u64>,
    pub last: Option<ProcSample>,
    /// Growth of the peak over the baseline, as a fraction.
    pub memory_growth: Option<f64>,
    pub intervals: usize,
    pub failed_intervals: usize,
    pub failures: Vec<String>,
}

/// Judges a run's interval lines and target samples (`(seconds since the
/// start, sample)`, in time order; the last one taken at the end of the
/// run, before the peers were removed).
pub fn verdict(
    intervals: &[Interval],
    samples: &[(f64, ProcSample)],
    limits: &SoakLimits,
) -> SoakVerdict {
    let mut v = SoakVerdict {
        intervals: intervals.len(),
        failed_intervals: intervals.iter().filter(|i| !i.pass).count(),
        ..SoakVerdict::default()
    };
    for i in intervals.iter().filter(|i| !i.pass) {
        v.failures.push(format!(
            "interval ending at {:.0}s lost {:.3}% of its probes ({} of {})",
            i.end_s,
            i.loss_percent,
            i.probes_failed,
            i.probes_answered + i.probes_failed
        ));
    }
    let warm = limits.warmup.as_secs_f64();
    let after: Vec<ProcSample> = samples
        .iter()
        .filter(|(t, _)| *t >= warm)
        .map(|(_, s)| *s)
        .collect();
    v.last = samples.last().map(|(_, s)| *s);
    if let Some(base) = after.first().copied() {
        v.baseline = Some(base);
        let peak = after
            .iter()
            .map(|s| s.rss_bytes)
            .max()
            .unwrap_or(base.rss_bytes);
        v.peak_rss_bytes = Some(peak);
        if base.rss_bytes > 0 {
            let growth = peak as f64 / base.rss_bytes as f64 - 1.0;
            v.memory_growth = Some(growth);
            if growth > limits.memory_growth {
                v.failures.push(format!(
                    "target memory grew {:.1}% after warm-up ({} -> {} KiB peak), limit {:.0}%",
                    growth * 100.0,
                    base.rss_bytes / 1024,
                    peak / 1024,
                    limits.memory_growth * 100.0
                ));
            }
        }
        if let Some(last) = after.last() {
            if last.fds > base.fds + limits.fd_slack {
                v.failures.push(format!(
                    "target descriptors grew from {} to {} (slack {})",
                    base.fds, last.fds, limits.fd_slack
                ));
            }
        }
    }
    v.pass = v.failures.is_empty();
    v
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
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
            v.failures[0].contains("memory grew 10.0%"),
            "{:?}",
            v.failures
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
}
