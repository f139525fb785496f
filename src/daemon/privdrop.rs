//! The privilege drop after set-up: once the TUN, the UDP, UAPI and admin
//! sockets exist and the config is applied, the daemon switches to an
//! unprivileged user (default `nobody`, 65534:65534, numeric so it works
//! in distroless images), keeps only the capabilities its remaining work
//! needs, and sets NO_NEW_PRIVS. The syscalls are in [`super::privdrop_sys`].
//!
//! Kept: CAP_NET_ADMIN always (routes, addresses, MTU and link state, the
//! fwmark, rebinding the UDP port); CAP_NET_RAW only when peer probes need
//! ICMP and `net.ipv4.ping_group_range` does not admit the group;
//! CAP_NET_BIND_SERVICE only for a listen port below 1024;
//! CAP_DAC_READ_SEARCH only when a file re-read later (config, keys,
//! store credentials) is unreadable by the user.
//!
//! A failed drop is logged as an error naming the cause and the opt-out,
//! and the daemon runs on as it is: a tunnel is never taken down for it.
use super::privdrop_sys::{self as sys, ThreadPlan};
use crate::config::{Config, KeySource};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const USER_ENV: &str = "PHANTOMMESH_USER";
pub const DROP_ENV: &str = "PHANTOMMESH_DROP_PRIVILEGES";
/// `nobody`/`nogroup` by number: present without an /etc/passwd.
pub const DEFAULT_USER: &str = "65534:65534";

// The spec is config vocabulary (`[interface] user`); resolving it to
// numbers is the drop's job, so that half lives here.
pub use crate::config::user::UserSpec;

impl UserSpec {
    /// (uid, gid): numbers as given, names from the passwd and group
    /// databases; without a group, the user's primary group (a numeric
    /// user not in passwd: the same number).
    pub fn resolve(&self) -> Result<(u32, u32), String> {
        let (uid, primary) = match self.user.parse::<u32>() {
            Ok(n) => (n, lookup_user(&self.user).map_or(n, |(_, g)| g)),
            Err(_) => {
                lookup_user(&self.user).ok_or_else(|| format!("unknown user {:?}", self.user))?
            }
        };
        let gid = match &self.group {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup_group(g).ok_or_else(|| format!("unknown group {g:?}"))?,
            },
        };
        if uid == 0 || gid == 0 {
            return Err(format!(
                "user {}{} resolves to uid {uid} gid {gid}: root",
                self.user,
                self.group
                    .as_deref()
                    .map(|g| format!(":{g}"))
                    .unwrap_or_default()
            ));
        }
        Ok((uid, gid))
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into pw and buf, both ours.
    let r = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    (r == 0 && !out.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}

fn lookup_group(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out = std::ptr::null_mut();
    // SAFETY: getgrnam_r writes into gr and buf, both ours.
    let r = unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
    (r == 0 && !out.is_null()).then_some(gr.gr_gid)
}

/// Whether and to whom to drop, with where that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub enabled: bool,
    pub user: UserSpec,
    pub source: String,
}

/// `run`'s command-line choice: (--user, --no-drop-privileges).
static CLI: OnceLock<(Option<String>, bool)> = OnceLock::new();

pub fn set_cli(user: Option<String>, no_drop: bool) {
    let _ = CLI.set((user, no_drop));
}

/// The options from, in order: the command line, the environment, the
/// config's `[interface] user` and `drop_privileges`, the default.
pub fn options(cfg_user: Option<&str>, cfg_drop: Option<bool>) -> Result<Options, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (cli_user, cli_no) = CLI.get().cloned().unwrap_or((None, false));
    let env_drop = env(DROP_ENV).map(|v| parse_bool(&v)).transpose()?;
    let (enabled, dsrc) = if cli_no {
        (false, "--no-drop-privileges")
    } else if let Some(d) = env_drop {
        (d, DROP_ENV)
    } else if let Some(d) = cfg_drop {
        (d, "[interface] drop_privileges")
    } else {
        (true, "default")
    };
    let (user, usrc) = match (cli_user, env(USER_ENV), cfg_user) {
        (Some(u), _, _) => (u, "--user"),
        (None, Some(u), _) => (u, USER_ENV),
        (None, None, Some(u)) => (u.to_string(), "[interface] user"),
        _ => (DEFAULT_USER.to_string(), "default"),
    };
    Ok(Options {
        enabled,
        user: UserSpec::parse(&user).map_err(|e| format!("{usrc}: {e}"))?,
        source: if enabled { usrc.into() } else { dsrc.into() },
    })
}

pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{DROP_ENV}={v:?}: expected 1/0, true/false, yes/no"
        )),
    }
}

/// The capabilities kept, each with why, as a bit mask and a list.
pub fn choose_caps(
    listen_port: u16,
    unreadable: &[PathBuf],
    icmp_needs_raw: bool,
) -> Vec<(u32, String)> {
    let mut v = vec![(
        sys::CAP_NET_ADMIN,
        "routes, link and MTU changes, fwmark, UDP rebinds".to_string(),
    )];
    if icmp_needs_raw {
        v.push((
            sys::CAP_NET_RAW,
            "peer probes need ICMP and net.ipv4.ping_group_range excludes the group".into(),
        ));
    }
    if listen_port != 0 && listen_port < 1024 {
        v.push((
            sys::CAP_NET_BIND_SERVICE,
            format!("listen port {listen_port} is below 1024"),
        ));
    }
    if let Some(p) = unreadable.first() {
        v.push((
            sys::CAP_DAC_READ_SEARCH,
            format!("{} is not readable by the user", p.display()),
        ));
    }
    v
}

pub fn mask(caps: &[(u32, String)]) -> u64 {
    caps.iter().fold(0, |m, (c, _)| m | (1u64 << c))
}

pub fn cap_name(c: u32) -> String {
    match c {
        sys::CAP_DAC_READ_SEARCH => "CAP_DAC_READ_SEARCH".into(),
        sys::CAP_NET_BIND_SERVICE => "CAP_NET_BIND_SERVICE".into(),
        sys::CAP_NET_ADMIN => "CAP_NET_ADMIN".into(),
        sys::CAP_NET_RAW => "CAP_NET_RAW".into(),
        n => format!("cap {n}"),
    }
}

/// Whether `uid`/`gid` (no supplementary groups: they are cleared) may
/// `want` (4 read, 1 search) a file of this mode and owner.
pub fn may(mode: u32, owner: u32, group: u32, uid: u32, gid: u32, want: u32) -> bool {
    let bits = if owner == uid {
        mode >> 6
    } else if group == gid {
        mode >> 3
    } else {
        mode
    };
    bits & want == want
}

/// Whether the user can read `path`: search on every directory above it
/// and read on the file (a missing file counts as readable: nothing to
/// keep a capability for).
pub fn readable_by(path: &Path, uid: u32, gid: u32) -> bool {
    let Ok(abs) = std::path::absolute(path) else {
        return false;
    };
    let Ok(m) = std::fs::metadata(&abs) else {
        return true;
    };
    let dirs_ok = abs
        .ancestors()
        .skip(1)
        .all(|d| std::fs::metadata(d).is_ok_and(|m| may(m.mode(), m.uid(), m.gid(), uid, gid, 1)));
    dirs_ok && may(m.mode(), m.uid(), m.gid(), uid, gid, 4)
}

/// Whether `net.ipv4.ping_group_range` ("LOW HIGH") admits `gid`, so ICMP
/// ping sockets work without CAP_NET_RAW.
pub fn ping_range_covers(range: &str, gid: u32) -> bool {
    let mut it = range.split_whitespace().map(|x| x.parse::<u64>());
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) => lo <= gid as u64 && gid as u64 <= hi,
        _ => false,
    }
}

/// Every file run mode reads again after set-up: the config (SIGHUP), the
/// private and preshared keys and the store credentials (read on each
/// reconnect). The admin token is read once, before the drop.
pub fn run_mode_files(path: &Path, cfg: &Config) -> Vec<PathBuf> {
    let mut v = vec![path.to_path_buf()];
    let key = |k: &KeySource| match k {
        KeySource::File(p) => Some(p.clone()),
        KeySource::Inline(_) => None,
    };
    v.extend(key(&cfg.interface.private_key));
    v.extend(
        cfg.peers
            .iter()
            .filter_map(|p| p.preshared_key.as_ref().and_then(key)),
    );
    if let Some(m) = &cfg.mesh {
        for f in [&m.ca_file, &m.cert_file, &m.key_file, &m.password_file] {
            v.extend(f.clone());
        }
    }
    v
}

/// What the drop will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// (uid, gid), or None when not started as root (only capabilities
    /// are trimmed).
    pub ids: Option<(u32, u32)>,
    pub keep: Vec<(u32, String)>,
    pub unreadable: Vec<PathBuf>,
    pub source: String,
}

/// Plans the drop for a daemon on `listen_port` that re-reads `files`.
pub fn plan(
    opts: &Options,
    listen_port: u16,
    files: &[PathBuf],
    icmp: bool,
) -> Result<Plan, String> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let (uid, gid) = if root {
        opts.user.resolve()?
    } else {
        // SAFETY: as above.
        unsafe { (libc::geteuid(), libc::getegid()) }
    };
    let unreadable: Vec<PathBuf> = files
        .iter()
        .filter(|f| !readable_by(f, uid, gid))
        .cloned()
        .collect();
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let raw = icmp && !ping_range_covers(&range, gid);
    Ok(Plan {
        ids: root.then_some((uid, gid)),
        keep: choose_caps(listen_port, &unreadable, raw),
        unreadable,
        source: opts.source.clone(),
    })
}

/// One line for logs and `run --check`.
pub fn describe(p: &Plan) -> String {
    let who = match p.ids {
        Some((u, g)) => format!("to uid {u} gid {g}"),
        None => "capabilities only (not started as root)".into(),
    };
    let caps: Vec<String> = p
        .keep
        .iter()
        .map(|(c, why)| format!("{} ({why})", cap_name(*c)))
        .collect();
    format!(
        "privilege drop {who} [{}], keeping {}, NO_NEW_PRIVS",
        p.source,
        caps.join(", ")
    )
}

/// The reaper's pipe: held until the process exits.
static REAPER: OnceLock<std::os::fd::OwnedFd> = OnceLock::new();

/// On a graceful stop: asks the reaper to remove the UAPI socket now and
/// waits up to 1 s for it (the daemon itself may not unlink it any more).
pub fn release_uapi_socket(path: &Path) {
    use std::io::Write;
    let Some(fd) = REAPER.get() else {
        return;
    };
    let _ = std::fs::File::from(fd.try_clone().expect("dup of the reaper pipe")).write_all(b"x");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while std::fs::symlink_metadata(path).is_ok() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Drops privileges after set-up; logs what it did or why it could not.
/// `uapi` is the socket path the reaper removes after the daemon exits.
pub fn drop_after_setup(
    opts: Result<Options, String>,
    listen_port: u16,
    files: &[PathBuf],
    icmp: bool,
    uapi: &Path,
    mesh_cache: Option<&Path>,
) {
    const OPT_OUT: &str =
        "set PHANTOMMESH_DROP_PRIVILEGES=0 (or --no-drop-privileges, [interface] drop_privileges = false) to run privileged on purpose";
    let opts = match opts {
        Ok(o) if !o.enabled => {
            tracing::info!(by = %o.source, "privilege drop disabled; running with the starting privileges");
            return;
        }
        Ok(o) => o,
        Err(e) => {
            tracing::error!("privilege drop not done: {e}; {OPT_OUT}");
            return;
        }
    };
    let p = match plan(&opts, listen_port, files, icmp) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("privilege drop not done: {e}; {OPT_OUT}");
            return;
        }
    };
    if let (false, Some((u, g))) = (p.unreadable.is_empty(), p.ids) {
        let files: Vec<String> = p
            .unreadable
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        tracing::info!(
            files = %files.join(", "),
            "keeping CAP_DAC_READ_SEARCH: these files are re-read later and uid {u} gid {g} cannot read them; chown them to uid {u} (key files: mode 0600), or chgrp them to gid {g} with mode 0640, and their directories searchable, to drop this capability"
        );
    }
    let eff = sys::own_effective();
    let has = |c: u32| eff & (1 << c) != 0;
    if p.ids.is_some() && !(has(sys::CAP_SETUID) && has(sys::CAP_SETGID)) {
        tracing::error!(
            "privilege drop not done: no CAP_SETUID/CAP_SETGID (a restricted container or unit?); grant them, or {OPT_OUT}"
        );
        return;
    }
    if let (Some(c), Some((u, g))) = (mesh_cache, p.ids) {
        let dir = c
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let writable =
            std::fs::metadata(dir).is_ok_and(|m| may(m.mode(), m.uid(), m.gid(), u, g, 3));
        if !writable {
            // Rewritten in place from then on, through a descriptor opened now.
            match crate::mesh::cache::preopen(c) {
                Ok(()) => {
                    tracing::info!(path = %c.display(), "mesh cache directory not writable by uid {u} gid {g}: the cache is rewritten in place")
                }
                Err(e) => {
                    tracing::warn!(path = %c.display(), "mesh cache not writable after the privilege drop: {e}")
                }
            }
        }
    }
    // Nothing can be raised (a container without NET_RAW, a unit without
    // DAC_READ_SEARCH): keep what is there, and say what is missing.
    let keep = mask(&p.keep) & eff;
    for (c, why) in p.keep.iter().filter(|(c, _)| eff & (1 << c) == 0) {
        tracing::warn!("{} is not held, so not kept, though {why}", cap_name(*c));
    }
    if p.ids.is_some() {
        match sys::spawn_reaper(uapi) {
            Ok(fd) => {
                let _ = REAPER.set(fd);
            }
            Err(e) => {
                tracing::warn!(path = %uapi.display(), "no UAPI socket reaper ({e}); the socket may stay behind after exit")
            }
        }
    }
    let plan = ThreadPlan {
        ids: p.ids,
        keep,
        bounding: has(sys::CAP_SETPCAP),
    };
    match sys::apply_all_threads(plan) {
        Ok(n) => match verify(&plan) {
            Ok(()) => tracing::info!(threads = n, "{}", describe(&p)),
            Err(e) => tracing::error!("privilege drop incomplete: {e}"),
        },
        Err(e) => tracing::error!("privilege drop failed: {e}; {OPT_OUT}"),
    }
}

/// Checks every thread's status after the drop.
fn verify(plan: &ThreadPlan) -> Result<(), String> {
    for t in sys::thread_states().map_err(|e| e.to_string())? {
        let uid_ok = plan
            .ids
            .is_none_or(|(u, _)| t.uids.split_whitespace().all(|x| x == u.to_string()));
        if !uid_ok || t.cap_eff != plan.keep || t.cap_prm != plan.keep || !t.no_new_privs {
            return Err(format!("thread {} still has {:?}", t.tid, t));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "privdrop_tests.rs"]
mod tests;
