//! Memory and CPU usage as fractions of what the process may use: the
//! cgroup v2 limits when set, else the host. Pure parsers of the kernel's
//! file texts, plus a small reader ([`Sampler`]) that feeds them.
//!
//! Memory: cgroup `memory.current / memory.max`; with `memory.max` = "max",
//! `memory.current / MemTotal`; without a cgroup, `VmRSS / MemTotal`.
//! CPU: CPU time used between two samples over wall time times the cores
//! allowed (`cpu.max` quota / period, else the host's cores). CPU time comes
//! from the cgroup's `cpu.stat` (the whole container), else from
//! `/proc/self/stat` (this process).
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Usage fractions (0..=1, CPU may exceed 1 if the core count is wrong);
/// `None` when it could not be measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub memory: Option<f64>,
    pub cpu: Option<f64>,
}

/// The cgroup v2 path from `/proc/self/cgroup` (the `0::` line).
pub fn parse_cgroup_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// A file holding one decimal number (`memory.current`).
pub fn parse_u64_text(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `memory.max`: `Some(None)` for "max" (no limit).
pub fn parse_memory_max(text: &str) -> Option<Option<u64>> {
    match text.trim() {
        "max" => Some(None),
        t => t.parse().ok().filter(|&v| v > 0).map(Some),
    }
}

/// `usage_usec` from cgroup `cpu.stat`.
pub fn parse_cpu_stat_usage_usec(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        (k == "usage_usec").then(|| v.trim().parse().ok()).flatten()
    })
}

/// `cpu.max` ("quota period" or "max period") as cores allowed:
/// `Some(None)` when unlimited.
pub fn parse_cpu_max(text: &str) -> Option<Option<f64>> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period: f64 = it.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" {
        return Some(None);
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0 && period > 0.0).then_some(Some(quota / period))
}

/// A `Key:   N kB` line from `/proc/self/status` or `/proc/meminfo`, in bytes.
fn parse_kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut it = rest.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some("kB") | None => n.checked_mul(1024),
            Some(_) => None,
        }
    })
}

pub fn parse_vmrss_bytes(status: &str) -> Option<u64> {
    parse_kb_field(status, "VmRSS")
}

pub fn parse_memtotal_bytes(meminfo: &str) -> Option<u64> {
    parse_kb_field(meminfo, "MemTotal")
}

/// From `/proc/self/stat`: (utime + stime, starttime), in clock ticks.
pub fn parse_proc_stat_times(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself, so count fields from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is 14, stime 15, starttime 22.
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    Some((num(11)?.checked_add(num(12)?)?, num(19)?))
}

/// First number of `/proc/uptime`, seconds.
pub fn parse_uptime_seconds(text: &str) -> Option<f64> {
    text.split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
}

/// The kernel files a sample reads; `None` where a file was unreadable.
#[derive(Clone, Debug, Default)]
pub struct Texts {
    pub memory_current: Option<String>,
    pub memory_max: Option<String>,
    pub cpu_stat: Option<String>,
    pub cpu_max: Option<String>,
    pub status: Option<String>,
    pub meminfo: Option<String>,
    pub stat: Option<String>,
    pub uptime: Option<String>,
}

/// Memory usage fraction from the texts (see the module docs for the
/// order of preference).
pub fn memory_fraction(t: &Texts) -> Option<f64> {
    let total = t.meminfo.as_deref().and_then(parse_memtotal_bytes);
    let current = t.memory_current.as_deref().and_then(parse_u64_text);
    let limit = t.memory_max.as_deref().and_then(parse_memory_max);
    let (used, of) = match (current, limit) {
        (Some(c), Some(Some(max))) => (c, Some(max)),
        (Some(c), Some(None)) => (c, total),
        _ => (t.status.as_deref().and_then(parse_vmrss_bytes)?, total),
    };
    let of = of.filter(|&v| v > 0)?;
    Some(used as f64 / of as f64)
}

/// CPU seconds used so far: the cgroup's when known, else this process's.
pub fn cpu_seconds(t: &Texts, clk_tck: f64) -> Option<f64> {
    if let Some(us) = t.cpu_stat.as_deref().and_then(parse_cpu_stat_usage_usec) {
        return Some(us as f64 / 1e6);
    }
    let (ticks, _) = parse_proc_stat_times(t.stat.as_deref()?)?;
    Some(ticks as f64 / clk_tck)
}

/// Cores allowed: the cgroup quota when set, else `host_cores`.
pub fn cores_allowed(t: &Texts, host_cores: f64) -> f64 {
    match t.cpu_max.as_deref().and_then(parse_cpu_max) {
        Some(Some(q)) => q,
        _ => host_cores,
    }
}

/// CPU fraction over this process's lifetime, for the first sample when
/// there is no earlier one to difference against.
pub fn lifetime_cpu_fraction(t: &Texts, clk_tck: f64, cores: f64) -> Option<f64> {
    let (ticks, start) = parse_proc_stat_times(t.stat.as_deref()?)?;
    let uptime = parse_uptime_seconds(t.uptime.as_deref()?)?;
    let alive = uptime - start as f64 / clk_tck;
    cpu_fraction(ticks as f64 / clk_tck, alive, cores)
}

/// `cpu_secs / (wall_secs * cores)`, `None` for degenerate inputs.
pub fn cpu_fraction(cpu_secs: f64, wall_secs: f64, cores: f64) -> Option<f64> {
    if !(wall_secs > 0.0 && cores > 0.0 && cpu_secs.is_finite()) {
        return None;
    }
    Some(cpu_secs.max(0.0) / (wall_secs * cores))
}

/// Reads the kernel files and differences CPU time between calls. Keep one
/// per process and call [`Sampler::sample`] when evaluating gates (or on a
/// timer); samples closer than [`Sampler::MIN_INTERVAL`] reuse the last CPU
/// figure rather than dividing by a tiny interval.
pub struct Sampler {
    root: PathBuf,
    clk_tck: f64,
    host_cores: f64,
    last: Option<(Instant, f64)>,
    last_cpu: Option<f64>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

    /// Reads the real `/proc` and `/sys/fs/cgroup`.
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_root(
            Path::new("/"),
            if tck > 0 { tck as f64 } else { 100.0 },
            cores as f64,
        )
    }

    /// Reads `<root>/proc/...` and `<root>/sys/fs/cgroup/...` (for tests).
    pub fn with_root(root: &Path, clk_tck: f64, host_cores: f64) -> Self {
        Sampler {
            root: root.to_path_buf(),
            clk_tck,
            host_cores,
            last: None,
            last_cpu: None,
        }
    }

    /// Reads the files one sample needs. Small files; a read error is `None`.
    pub fn read_texts(&self) -> Texts {
        let read = |p: PathBuf| std::fs::read_to_string(p).ok();
        let proc_self = self.root.join("proc/self");
        let cg_root = self.root.join("sys/fs/cgroup");
        // The process's own cgroup directory, or the mount root inside a
        // container with its own cgroup namespace ("0::/").
        let cg_dir = read(proc_self.join("cgroup"))
            .as_deref()
            .and_then(parse_cgroup_path)
            .map(|p| cg_root.join(p.trim_start_matches('/')))
            .filter(|d| d.join("memory.current").exists() || d.join("cpu.stat").exists())
            .unwrap_or(cg_root);
        Texts {
            memory_current: read(cg_dir.join("memory.current")),
            memory_max: read(cg_dir.join("memory.max")),
            cpu_stat: read(cg_dir.join("cpu.stat")),
            cpu_max: read(cg_dir.join("cpu.max")),
            status: read(proc_self.join("status")),
            meminfo: read(self.root.join("proc/meminfo")),
            stat: read(proc_self.join("stat")),
            uptime: read(self.root.join("proc/uptime")),
        }
    }

    pub fn sample(&mut self, now: Instant) -> Resources {
        let texts = self.read_texts();
        self.sample_texts(now, &texts)
    }

    /// [`Sampler::sample`] on texts already read.
    pub fn sample_texts(&mut self, now: Instant, t: &Texts) -> Resources {
        let cores = cores_allowed(t, self.host_cores);
        let used = cpu_seconds(t, self.clk_tck);
        let cpu = match (self.last, used) {
            (Some((at, _)), Some(_)) if now.saturating_duration_since(at) < Self::MIN_INTERVAL => {
                return Resources {
                    memory: memory_fraction(t),
                    cpu: self.last_cpu,
                };
            }
            (Some((at, before)), Some(u)) => cpu_fraction(
                u - before,
                now.saturating_duration_since(at).as_secs_f64(),
                cores,
            ),
            _ => lifetime_cpu_fraction(t, self.clk_tck, cores),
        };
        if let Some(u) = used {
            self.last = Some((now, u));
        }
        self.last_cpu = cpu;
        Resources {
            memory: memory_fraction(t),
            cpu,
        }
    }
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
