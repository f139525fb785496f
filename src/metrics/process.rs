//! The standard `process_*` families, as every Prometheus client library
//! exports them (names, types and HELP texts of client_golang's process
//! collector), read from this process's own `/proc` entries.
//!
//! One scrape costs: `getrusage` (CPU time, microsecond resolution instead
//! of `/proc/self/stat`'s clock ticks), one read of `/proc/self/statm`
//! (virtual and resident size), a listing of `/proc/self/fd` and
//! `getrlimit`. The start time never changes, so `/proc/self/stat` and the
//! boot time in `/proc/stat` are read once.
//!
//! A value that cannot be read (a `/proc` hidden by a sandbox) leaves its
//! family out of the scrape instead of reporting a false zero.
use super::exposition::{MetricType, Writer};
use std::sync::OnceLock;

/// What the process families report; a field is None when it could not be
/// read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time of all threads, seconds.
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`: what `open` hits first.
    pub max_fds: Option<u64>,
    /// Unix time the process started, seconds.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads this process's figures now.
    pub fn read() -> ProcessStats {
        let (virt, rss) = match statm() {
            Some((v, r)) => (Some(v), Some(r)),
            None => (None, None),
        };
        ProcessStats {
            cpu_seconds: cpu_seconds(),
            resident_memory_bytes: rss,
            virtual_memory_bytes: virt,
            open_fds: open_fds(),
            max_fds: max_fds(),
            start_time_seconds: start_time(),
        }
    }
}

/// Writes the families that have a value.
pub fn render(w: &mut Writer<'_>, p: &ProcessStats) {
    use MetricType::{Counter, Gauge};
    if let Some(v) = p.cpu_seconds {
        w.single(
            "process_cpu_seconds_total",
            Counter,
            "Total user and system CPU time spent in seconds.",
            v,
        );
    }
    if let Some(v) = p.open_fds {
        w.single(
            "process_open_fds",
            Gauge,
            "Number of open file descriptors.",
            v,
        );
    }
    if let Some(v) = p.max_fds {
        w.single(
            "process_max_fds",
            Gauge,
            "Maximum number of open file descriptors.",
            v,
        );
    }
    if let Some(v) = p.virtual_memory_bytes {
        w.single(
            "process_virtual_memory_bytes",
            Gauge,
            "Virtual memory size in bytes.",
            v,
        );
    }
    if let Some(v) = p.resident_memory_bytes {
        w.single(
            "process_resident_memory_bytes",
            Gauge,
            "Resident memory size in bytes.",
            v,
        );
    }
    if let Some(v) = p.start_time_seconds {
        w.single(
            "process_start_time_seconds",
            Gauge,
            "Start time of the process since unix epoch in seconds.",
            v,
        );
    }
}

fn cpu_seconds() -> Option<f64> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above (and zeroed before).
    let ru = unsafe { ru.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(ru.ru_utime) + secs(ru.ru_stime))
}

/// (virtual, resident) bytes from `/proc/self/statm` (sizes in pages).
fn statm() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    parse_statm(&text, page_size()?)
}

fn parse_statm(text: &str, page: u64) -> Option<(u64, u64)> {
    let mut it = text.split_ascii_whitespace();
    let size: u64 = it.next()?.parse().ok()?;
    let resident: u64 = it.next()?.parse().ok()?;
    Some((size.checked_mul(page)?, resident.checked_mul(page)?))
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(v).ok().filter(|&p| p > 0)
}

/// Entries of `/proc/self/fd`; like the client libraries, the descriptor of
/// the listing itself counts.
fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(dir.filter(|e| e.is_ok()).count() as u64)
}

fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the pointer it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    // rlim_t is 32 bits wide on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    Some(lim.rlim_cur as u64)
}

fn start_time() -> Option<f64> {
    static START: OnceLock<Option<f64>> = OnceLock::new();
    *START.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
        Some(boot_time(&boot)? as f64 + start_ticks(&stat)? as f64 / hz as f64)
    })
}

/// Field 22 of `/proc/PID/stat`, `starttime`: clock ticks after boot. The
/// second field (the command name, in parentheses) may hold spaces and
/// parentheses itself, so fields are counted after its last `)`.
fn start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` begins with field 3 (state): field 22 is the 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// `btime` of `/proc/stat`: Unix time of boot, seconds.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
