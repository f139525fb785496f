//! The system side of the privilege drop: raw syscalls applied on every
//! thread, and the UAPI socket reaper.
//!
//! Credentials and capabilities are per thread in the kernel. glibc's
//! `setresuid` broadcasts to all threads, but `capset`, the bounding set,
//! `PR_SET_KEEPCAPS` and `PR_SET_NO_NEW_PRIVS` do not, and by the time the
//! daemon is set up it runs tokio workers, UAPI and device threads. So the
//! whole sequence ([`drop_this_thread`]) runs on each thread: on the others
//! from a real-time signal handler (raw syscalls only: async-signal-safe),
//! on the calling thread last (once it has dropped it could no longer
//! signal threads that still run as root).
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// What every thread applies (set before the broadcast, read by handlers).
static P_SETUID: AtomicBool = AtomicBool::new(false);
static P_BOUNDING: AtomicBool = AtomicBool::new(false);
static P_UID: AtomicU32 = AtomicU32::new(0);
static P_GID: AtomicU32 = AtomicU32::new(0);
static P_KEEP: AtomicU64 = AtomicU64::new(0);
static P_LAST_CAP: AtomicU32 = AtomicU32::new(40);

const SLOTS: usize = 1024;
static N_DONE: AtomicUsize = AtomicUsize::new(0);
static DONE_TID: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static DONE_CODE: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

fn errno() -> i32 {
    // SAFETY: reads this thread's errno; async-signal-safe.
    unsafe { *libc::__errno_location() }
}

/// The sequence for the calling thread; 0, or step * 1000 + errno.
/// Async-signal-safe: raw syscalls and atomics only.
fn drop_this_thread() -> i32 {
    let setuid = P_SETUID.load(Ordering::Acquire);
    let keep = P_KEEP.load(Ordering::Acquire);
    // SAFETY: plain syscalls on this thread's own credentials.
    unsafe {
        // A thread that a dropped thread started while the broadcast ran
        // inherited the finished drop: repeating it would fail, since the
        // bounding set needs the CAP_SETPCAP it no longer has. (Not judged
        // by NO_NEW_PRIVS: a container may set that before we start.) The
        // verification of /proc/self/task/*/status still checks it.
        if already_dropped(setuid, keep) {
            return 0;
        }
        if setuid && libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return 1000 + errno();
        }
        if P_BOUNDING.load(Ordering::Acquire) {
            for cap in 0..=P_LAST_CAP.load(Ordering::Acquire) {
                if keep & (1 << cap) == 0
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                    && errno() != libc::EINVAL
                {
                    return 2000 + errno();
                }
            }
        }
        // Ambient capabilities would survive an exec; none are wanted.
        let _ = libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        if setuid {
            let (uid, gid) = (P_UID.load(Ordering::Acquire), P_GID.load(Ordering::Acquire));
            // Raw syscalls: glibc's wrappers would broadcast to every
            // thread from inside a signal handler.
            if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0 {
                return 3000 + errno();
            }
            if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
                return 4000 + errno();
            }
            if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
                return 5000 + errno();
            }
        }
        if capset(keep, keep) != 0 {
            return 6000 + errno();
        }
        if setuid {
            let _ = libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return 7000 + errno();
        }
    }
    0
}

/// Whether this thread already has the target credentials: the target uid
/// (when switching), nothing in the bounding set beyond `keep` (when it is
/// cut), and exactly `keep` effective and permitted. Async-signal-safe.
fn already_dropped(setuid: bool, keep: u64) -> bool {
    // SAFETY: plain syscalls reading this thread's own credentials.
    unsafe {
        if setuid && libc::syscall(libc::SYS_geteuid) as u32 != P_UID.load(Ordering::Acquire) {
            return false;
        }
        if P_BOUNDING.load(Ordering::Acquire) {
            for cap in 0..=P_LAST_CAP.load(Ordering::Acquire) {
                if keep & (1 << cap) == 0
                    && libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) == 1
                {
                    return false;
                }
            }
        }
        let mut hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: header and room for two data words, as capget(2) expects.
        if libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        ) != 0
        {
            return false;
        }
        let eff = data[0].effective as u64 | (data[1].effective as u64) << 32;
        let prm = data[0].permitted as u64 | (data[1].permitted as u64) << 32;
        eff == keep && prm == keep
    }
}

/// Sets this thread's effective and permitted sets (inheritable: none).
/// Returns the raw syscall result.
fn capset(effective: u64, permitted: u64) -> libc::c_long {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: 0,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: header and two data words as capset(2) expects.
    unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) }
}

extern "C" fn on_signal(_: libc::c_int) {
    let saved = errno();
    let code = drop_this_thread();
    let i = N_DONE.fetch_add(1, Ordering::AcqRel);
    if i < SLOTS {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        DONE_CODE[i].store(code, Ordering::Release);
        DONE_TID[i].store(tid, Ordering::Release);
    }
    // SAFETY: restores the interrupted code's errno.
    unsafe { *libc::__errno_location() = saved };
}

fn signal_number() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

/// /proc/self/task's thread ids (as /proc's mount numbers them).
fn proc_task_ids() -> io::Result<Vec<i32>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/task")? {
        if let Some(t) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            v.push(t);
        }
    }
    Ok(v)
}

/// The threads' ids in this process's own PID namespace, as gettid and
/// tgkill number them: a /proc mounted for another namespace (a container
/// started with `unshare --pid` and the host's /proc) lists other numbers,
/// so each status file's NSpid (last field: the innermost) is used.
fn task_ids() -> io::Result<Vec<i32>> {
    let mut v = Vec::new();
    for t in proc_task_ids()? {
        let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{t}/status")) else {
            continue;
        };
        let ns = s
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|x| x.parse().ok());
        v.push(ns.unwrap_or(t));
    }
    Ok(v)
}

/// Whether thread `tid` of this process still exists (signal 0).
fn alive(pid: i32, tid: i32) -> bool {
    // SAFETY: tgkill with signal 0 only checks.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) == 0 }
}

/// The plan every thread applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPlan {
    /// (uid, gid) to switch to; None keeps the ids (not started as root).
    pub ids: Option<(u32, u32)>,
    /// Capability bit mask kept (effective and permitted).
    pub keep: u64,
    /// Whether to clear the bounding set (needs CAP_SETPCAP).
    pub bounding: bool,
}

/// Applies `plan` to every thread of the process. Fails before changing
/// anything when the signal handler cannot be installed; a thread that
/// refuses its part is reported by tid with the failing step.
pub fn apply_all_threads(plan: ThreadPlan) -> Result<usize, String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40u32);
    P_LAST_CAP.store(last.min(63), Ordering::Release);
    P_SETUID.store(plan.ids.is_some(), Ordering::Release);
    let (uid, gid) = plan.ids.unwrap_or((0, 0));
    P_UID.store(uid, Ordering::Release);
    P_GID.store(gid, Ordering::Release);
    P_KEEP.store(plan.keep, Ordering::Release);
    P_BOUNDING.store(plan.bounding, Ordering::Release);
    N_DONE.store(0, Ordering::Release);
    let sig = signal_number();
    // SAFETY: installs a handler that only makes raw syscalls.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            return Err(format!(
                "cannot install the signal handler: {}",
                io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: getpid/gettid have no preconditions.
    let (pid, me) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
    let mut signalled: Vec<i32> = Vec::new();
    let mut gone: Vec<i32> = Vec::new();
    // Threads started meanwhile by a thread not yet dropped show up in the
    // next listing; one listing with nothing new ends the loop.
    loop {
        let fresh: Vec<i32> = task_ids()
            .map_err(|e| format!("cannot list threads: {e}"))?
            .into_iter()
            .filter(|t| *t != me && !signalled.contains(t) && !gone.contains(t))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for &t in &fresh {
            // SAFETY: tgkill to a thread of this process.
            let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, t, sig) };
            if r == 0 {
                signalled.push(t);
            } else if errno() == libc::ESRCH {
                // Exited meanwhile (never retried: the loop must end).
                gone.push(t);
            } else {
                return Err(format!(
                    "cannot signal thread {t}: {}",
                    io::Error::last_os_error()
                ));
            }
        }
        wait_done(pid, &signalled)?;
    }
    match drop_this_thread() {
        0 => Ok(signalled.len() + 1),
        code => Err(describe(me, code)),
    }
}

/// Waits until each signalled thread ran its part (or exited).
fn wait_done(pid: i32, signalled: &[i32]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = N_DONE.load(Ordering::Acquire).min(SLOTS);
        let mut done = Vec::with_capacity(n);
        for i in 0..n {
            let tid = DONE_TID[i].load(Ordering::Acquire);
            if tid == 0 {
                continue;
            }
            let code = DONE_CODE[i].load(Ordering::Acquire);
            if code != 0 {
                return Err(describe(tid, code));
            }
            done.push(tid);
        }
        let missing: Vec<i32> = signalled
            .iter()
            .copied()
            .filter(|t| !done.contains(t))
            .filter(|t| alive(pid, *t))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("threads {missing:?} did not drop their privileges"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn describe(tid: i32, code: i32) -> String {
    let step = match code / 1000 {
        1 => "prctl(PR_SET_KEEPCAPS)",
        2 => "prctl(PR_CAPBSET_DROP)",
        3 => "setgroups",
        4 => "setresgid",
        5 => "setresuid",
        6 => "capset",
        _ => "prctl(PR_SET_NO_NEW_PRIVS)",
    };
    format!(
        "thread {tid}: {step}: {}",
        io::Error::from_raw_os_error(code % 1000)
    )
}

/// One thread's credentials, from /proc/self/task/TID/status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadState {
    pub tid: i32,
    pub uids: String,
    pub cap_eff: u64,
    pub cap_prm: u64,
    pub cap_bnd: u64,
    pub no_new_privs: bool,
}

/// Parses a status file's credential lines.
pub fn parse_status(tid: i32, text: &str) -> ThreadState {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let hex = |k: &str| u64::from_str_radix(&field(k), 16).unwrap_or(u64::MAX);
    ThreadState {
        tid,
        uids: field("Uid:"),
        cap_eff: hex("CapEff:"),
        cap_prm: hex("CapPrm:"),
        cap_bnd: hex("CapBnd:"),
        no_new_privs: field("NoNewPrivs:") == "1",
    }
}

/// Every thread's state now (status files stay world-readable after the
/// process becomes non-dumpable).
pub fn thread_states() -> io::Result<Vec<ThreadState>> {
    let mut v = Vec::new();
    for t in proc_task_ids()? {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{t}/status")) {
            v.push(parse_status(t, &s));
        }
    }
    Ok(v)
}

/// The calling thread's effective capability mask.
pub fn own_effective() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .map(|s| parse_status(0, &s).cap_eff)
        .unwrap_or(0)
}

/// Forks the reaper: a child that keeps only the read end of a pipe (no
/// TUN, UDP or UAPI descriptor), drops every capability, ignores the stop
/// signals a service manager sends the whole group, and blocks in read()
/// until the daemon is gone (EOF: exit, crash or SIGKILL alike) or writes
/// a byte (a graceful stop, see [`super::privdrop::release_uapi_socket`]:
/// as PID 1 of a container the daemon's exit kills the reaper with it
/// before it could act on the EOF). Then it
/// unlinks `path` if it is still the socket the daemon bound (same device
/// and inode): a successor's socket is never removed. It stays uid 0 with
/// no capabilities: as the owner of /var/run/wireguard it may unlink there.
///
/// Returns the write end, which the daemon must hold until it exits.
pub fn spawn_reaper(path: &std::path::Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    let (dev, ino) = (meta.dev(), meta.ino());
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in socket path"))?;
    let argv = argv_area();
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (rfd, wfd) = (fds[0], fds[1]);
    // SAFETY: the child only makes async-signal-safe calls (no allocation,
    // no locks) before _exit, as required after fork in a threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        unsafe {
            libc::close(rfd);
            libc::close(wfd);
        }
        return Err(e);
    }
    if pid == 0 {
        unsafe { reaper_child(rfd, &cpath, dev, ino, argv) }
    }
    // SAFETY: rfd is ours and no longer needed here; wfd is owned below.
    unsafe {
        libc::close(rfd);
        Ok(std::os::fd::OwnedFd::from_raw_fd(wfd))
    }
}

/// The command line's memory (arg_start, arg_end from /proc/self/stat), so
/// the reaper can rename itself for `ps`, `pidof` and `pgrep -f`.
fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; arg_start is field 48.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let (s, e) = (f.get(45)?.parse().ok()?, f.get(46)?.parse().ok()?);
    (s > 0 && e > s).then_some((s, e))
}

unsafe fn reaper_child(
    rfd: i32,
    path: &std::ffi::CStr,
    dev: u64,
    ino: u64,
    argv: Option<(usize, usize)>,
) -> ! {
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGQUIT,
    ] {
        libc::signal(sig, libc::SIG_IGN);
    }
    libc::signal(signal_number(), libc::SIG_DFL);
    // Every descriptor but the pipe: the reaper must never keep the TUN,
    // the UDP sockets or the admin listener alive.
    let max = !0u32;
    if libc::syscall(libc::SYS_close_range, 0u32, (rfd - 1) as u32, 0u32) != 0
        || libc::syscall(libc::SYS_close_range, (rfd + 1) as u32, max, 0u32) != 0
    {
        for fd in 0..65536 {
            if fd != rfd {
                libc::close(fd);
            }
        }
    }
    libc::prctl(
        libc::PR_SET_NAME,
        c"pm-uapi-reaper".as_ptr() as libc::c_ulong,
        0,
        0,
        0,
    );
    if let Some((start, end)) = argv {
        let name = b"phantommesh-uapi-reaper";
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area.fill(0);
        let n = name.len().min(area.len().saturating_sub(1));
        area[..n].copy_from_slice(&name[..n]);
    }
    let _ = libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
        0,
        0,
    );
    // Bounding set first (needs CAP_SETPCAP, which capset then drops).
    for cap in 0..64u64 {
        libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
    }
    capset(0, 0);
    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    let mut b = [0u8; 1];
    loop {
        let n = libc::read(rfd, b.as_mut_ptr().cast(), 1);
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        break;
    }
    let mut st: libc::stat = std::mem::zeroed();
    if libc::lstat(path.as_ptr(), &mut st) == 0
        && st.st_dev == dev
        && st.st_ino == ino
        && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    {
        libc::unlink(path.as_ptr());
    }
    libc::_exit(0)
}
