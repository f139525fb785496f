//! Soak checks: the target's resident memory and open descriptors sampled
//! from /proc at each interval, and the verdicts on them. The verdict
//! functions are pure; [`sample`] reads /proc.
use super::stats::least_squares;
use crate::gates::resources::{parse_proc_stat_times, parse_vmrss_bytes};
use crate::gates::table::format_number;
use crate::noise::constants::{REKEY_AFTER_TIME, REKEY_TIMEOUT};
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
    /// Allowed slope of resident memory after warm-up, as a fraction of
    /// the baseline per hour (0.05).
    pub memory_slope: f64,
    /// Descriptors the target may gain over the baseline.
    pub fd_slack: u64,
    /// Samples taken before this much time has passed are warm-up.
    pub warmup: Duration,
}

/// The slope is judged only over at least this long after warm-up: over
/// a few minutes, a page or two of allocator noise is several % per hour.
pub const SLOPE_MIN_SPAN: Duration = Duration::from_secs(600);
/// ... and over at least this many samples.
pub const SLOPE_MIN_SAMPLES: usize = 5;

/// The default warm-up: the ramp plus one interval, and at least until
/// every peer has rekeyed once. The last peer starts at the ramp's end and
/// rekeys REKEY_AFTER_TIME after its first handshake; the rekey gets two
/// REKEY_TIMEOUTs (one retransmit) to complete. A rekey holds a second
/// keypair per peer, so memory steps up once there, then stays flat.
pub fn default_warmup(ramp: Duration, interval: Duration) -> Duration {
    (ramp + interval).max(ramp + REKEY_AFTER_TIME + 2 * REKEY_TIMEOUT)
}

/// The least-squares line through the target's resident memory after
/// warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MemoryFit {
    pub samples: usize,
    /// Seconds since the start of the first and last sample fitted.
    pub from_s: f64,
    pub to_s: f64,
    /// The fitted line's values at `from_s` and `to_s`.
    pub fit_from_mib: f64,
    pub fit_to_mib: f64,
    pub mib_per_hour: f64,
    /// The slope as a percentage of the baseline per hour.
    pub percent_per_hour: f64,
    /// Whether the fit spans enough ([`SLOPE_MIN_SPAN`],
    /// [`SLOPE_MIN_SAMPLES`]) for the slope to be judged.
    pub judged: bool,
}

/// The soak verdict, with the reasons it failed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakVerdict {
    pub pass: bool,
    /// Samples before this many seconds since the start are warm-up.
    pub warmup_s: f64,
    /// The first sample after warm-up, and when it was taken.
    pub baseline: Option<ProcSample>,
    pub baseline_at_s: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    pub peak_at_s: Option<f64>,
    pub last: Option<ProcSample>,
    /// Growth of the peak over the baseline, as a fraction.
    pub memory_growth: Option<f64>,
    pub memory_growth_limit: f64,
    pub memory_slope: Option<MemoryFit>,
    /// Percent of the baseline per hour.
    pub memory_slope_limit: f64,
    pub intervals: usize,
    pub failed_intervals: usize,
    pub failures: Vec<String>,
}

/// The least-squares fit of resident memory over `samples` (taken after
/// warm-up); None with fewer than two samples or a zero baseline.
pub fn memory_fit(samples: &[(f64, ProcSample)]) -> Option<MemoryFit> {
    let base = samples.first()?.1.rss_bytes;
    if base == 0 {
        return None;
    }
    let points: Vec<(f64, f64)> = samples
        .iter()
        .map(|(t, s)| (*t, mib(s.rss_bytes)))
        .collect();
    let line = least_squares(&points)?;
    let (from_s, to_s) = (points[0].0, points[points.len() - 1].0);
    let mib_per_hour = line.slope * 3600.0;
    Some(MemoryFit {
        samples: points.len(),
        from_s,
        to_s,
        fit_from_mib: line.at(from_s),
        fit_to_mib: line.at(to_s),
        mib_per_hour,
        percent_per_hour: mib_per_hour / mib(base) * 100.0,
        judged: points.len() >= SLOPE_MIN_SAMPLES && to_s - from_s >= SLOPE_MIN_SPAN.as_secs_f64(),
    })
}

/// Judges a run's interval lines and target samples (`(seconds since the
/// start, sample)`, in time order; the last one taken at the end of the
/// run, before the peers were removed).
///
/// Memory fails by either rule: its peak after warm-up is more than
/// `memory_growth` over the baseline (a big step or a fast leak), or the
/// least-squares slope after warm-up is steeper than `memory_slope` of the
/// baseline per hour (a slow leak in a run too short for the total to
/// show it). The failure says which rule fired and with what numbers.
pub fn verdict(
    intervals: &[Interval],
    samples: &[(f64, ProcSample)],
    limits: &SoakLimits,
) -> SoakVerdict {
    let mut v = SoakVerdict {
        intervals: intervals.len(),
        failed_intervals: intervals.iter().filter(|i| !i.pass).count(),
        warmup_s: limits.warmup.as_secs_f64(),
        memory_growth_limit: limits.memory_growth * 100.0,
        memory_slope_limit: limits.memory_slope * 100.0,
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
    let after: Vec<(f64, ProcSample)> = samples
        .iter()
        .filter(|(t, _)| *t >= v.warmup_s)
        .copied()
        .collect();
    v.last = samples.last().map(|(_, s)| *s);
    let Some(&(base_at, base)) = after.first() else {
        v.pass = v.failures.is_empty();
        return v;
    };
    v.baseline = Some(base);
    v.baseline_at_s = Some(base_at);
    // The first of equal peaks: when memory got there.
    let (peak_at, peak) = after.iter().fold((base_at, base.rss_bytes), |m, (t, s)| {
        if s.rss_bytes > m.1 {
            (*t, s.rss_bytes)
        } else {
            m
        }
    });
    v.peak_rss_bytes = Some(peak);
    v.peak_at_s = Some(peak_at);
    if base.rss_bytes > 0 {
        let growth = peak as f64 / base.rss_bytes as f64 - 1.0;
        v.memory_growth = Some(growth);
        if growth > limits.memory_growth {
            v.failures.push(format!(
                "memory, total growth rule: RSS grew {:.1}% after warm-up ({:.2} MiB at {:.0}s -> {:.2} MiB peak at {:.0}s), limit {}%",
                growth * 100.0,
                mib(base.rss_bytes),
                base_at,
                mib(peak),
                peak_at,
                format_number(v.memory_growth_limit)
            ));
        }
    }
    v.memory_slope = memory_fit(&after);
    if let Some(f) = v.memory_slope.filter(|f| f.judged) {
        if f.percent_per_hour > v.memory_slope_limit {
            v.failures.push(format!(
                "memory, slope rule: RSS rose {:+.2}%/h ({:+.3} MiB/h, least-squares fit over {} samples from {:.0}s to {:.0}s), limit {}%/h",
                f.percent_per_hour,
                f.mib_per_hour,
                f.samples,
                f.from_s,
                f.to_s,
                format_number(v.memory_slope_limit)
            ));
        }
    }
    if let Some((_, last)) = after.last() {
        if last.fds > base.fds + limits.fd_slack {
            v.failures.push(format!(
                "target descriptors grew from {} to {} (slack {})",
                base.fds, last.fds, limits.fd_slack
            ));
        }
    }
    v.pass = v.failures.is_empty();
    v
}

/// The final text's target lines: memory and descriptors after warm-up,
/// with both memory rules' numbers and limits.
pub fn target_lines(v: &SoakVerdict) -> String {
    let (Some(b), Some(l)) = (v.baseline, v.last) else {
        return match v.last {
            Some(l) => format!(
                "Target: RSS {:.1} MiB, fds {} (run shorter than the warm-up of {:.0}s: memory not judged)\n",
                mib(l.rss_bytes),
                l.fds,
                v.warmup_s
            ),
            None => String::new(),
        };
    };
    let mut out = format!(
        "Target: RSS {:.1} MiB after warm-up ({:.0}s), peak {:.1} MiB, last {:.1} MiB; fds {} -> {}\n",
        mib(b.rss_bytes),
        v.baseline_at_s.unwrap_or(v.warmup_s),
        mib(v.peak_rss_bytes.unwrap_or(b.rss_bytes)),
        mib(l.rss_bytes),
        b.fds,
        l.fds
    );
    out.push_str(&format!(
        "Memory: growth {}% after warm-up (limit {}%)",
        format_number(v.memory_growth.unwrap_or(0.0) * 100.0),
        format_number(v.memory_growth_limit)
    ));
    match v.memory_slope {
        Some(f) => out.push_str(&format!(
            ", slope {:+.2}%/h ({:+.3} MiB/h over {} samples, {:.0}s to {:.0}s; {})\n",
            f.percent_per_hour,
            f.mib_per_hour,
            f.samples,
            f.from_s,
            f.to_s,
            if f.judged {
                format!("limit {}%/h", format_number(v.memory_slope_limit))
            } else {
                format!(
                    "not judged: needs {} min and {} samples after warm-up",
                    SLOPE_MIN_SPAN.as_secs() / 60,
                    SLOPE_MIN_SAMPLES
                )
            }
        )),
        None => out.push_str(", slope not judged (one sample after warm-up)\n"),
    }
    out
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
#[path = "soak_tests.rs"]
mod tests;
