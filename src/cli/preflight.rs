//! `phantommesh preflight [--config FILE]`: the runbook's pre-deployment
//! checks that concern one node, one line each, in the runbook's style:
//!
//! ```text
//! ✅ TUN device: /dev/net/tun usable
//! ❌ CAP_NET_ADMIN: missing (run as root or add NET_ADMIN)
//! Preflight: FAILED (1 of 10 checks failed)
//! ```
//!
//! Every check is a pure function from gathered facts (file texts, syscall
//! results) to a [`Check`], so each verdict is unit-tested on synthetic
//! input; [`probe`] gathers the facts from the running system. Exit status
//! 2 when the config cannot be loaded, 1 on any other ❌, else 0
//! ([`exit_code`]); `-o json` prints the same checks as one document.
//! Skipped checks and warnings keep ✅: they do not block a deployment,
//! and the line says why.
use crate::cli::keys::KeyError;
use crate::config::{Config, ConfigError};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[path = "preflight_probe.rs"]
pub mod probe;

pub const TUN_PATH: &str = "/dev/net/tun";
pub const DEFAULT_CONFIG: &str = "/etc/phantommesh/phantommesh.toml";
/// The daemon's MTU when the config sets none (wireguard-go's).
pub const DEFAULT_MTU: u16 = 1420;
/// WireGuard's per-packet overhead over an IPv6 outer header: 40 (IPv6)
/// + 8 (UDP) + 32 (WireGuard header and tag), as wg-quick subtracts.
pub const WG_OVERHEAD_V6: u16 = 80;
/// CAP_NET_ADMIN's bit in the capability sets (linux/capability.h).
pub const CAP_NET_ADMIN_BIT: u32 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Pass,
    /// Passes, with something the operator should know.
    Warn,
    /// Not applicable here (no config, admin off, ...); not a failure.
    Skip,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
}

impl Check {
    pub fn new(name: &'static str, level: Level, detail: impl Into<String>) -> Check {
        Check {
            name,
            level,
            detail: detail.into(),
        }
    }
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check::new(name, Level::Pass, detail)
    }
    pub fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check::new(name, Level::Fail, detail)
    }
    pub fn skip(name: &'static str, why: impl std::fmt::Display) -> Check {
        Check::new(name, Level::Skip, format!("skipped ({why})"))
    }
    pub fn failed(&self) -> bool {
        self.level == Level::Fail
    }
    /// The check's output line.
    pub fn line(&self) -> String {
        let mark = if self.failed() { "❌" } else { "✅" };
        format!("{mark} {}: {}", self.name, self.detail)
    }
}

/// The closing line: `Preflight: PASSED (n checks)` or
/// `Preflight: FAILED (k of n checks failed)`.
pub fn summary(checks: &[Check]) -> String {
    let n = checks.len();
    let failed = checks.iter().filter(|c| c.failed()).count();
    let count = |level| checks.iter().filter(|c| c.level == level).count();
    let plural = |k: usize, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
    if failed > 0 {
        return format!(
            "Preflight: FAILED ({failed} of {} failed)",
            plural(n, "check")
        );
    }
    let mut notes = vec![plural(n, "check")];
    if count(Level::Warn) > 0 {
        notes.push(plural(count(Level::Warn), "warning"));
    }
    if count(Level::Skip) > 0 {
        notes.push(format!("{} skipped", count(Level::Skip)));
    }
    format!("Preflight: PASSED ({})", notes.join(", "))
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

// ---- the checks: facts in, verdict out ----

/// The TUN clone device must exist and open read/write.
pub fn tun_device(path: &str, open: &io::Result<()>) -> Check {
    const N: &str = "TUN device";
    match open {
        Ok(()) => Check::pass(N, format!("{path} usable")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Check::fail(
            N,
            format!("{path} missing (modprobe tun; in Kubernetes mount it as a hostPath CharDevice)"),
        ),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Check::fail(
            N,
            format!("cannot open {path} read/write: permission denied (device cgroup or file mode; run privileged or allow the device)"),
        ),
        Err(e) if matches!(errno(e), libc::ENODEV | libc::ENXIO) => {
            Check::fail(N, format!("{path}: no TUN driver in this kernel (modprobe tun)"))
        }
        Err(e) => Check::fail(N, format!("cannot open {path} read/write: {e}")),
    }
}

/// The effective capability set from `/proc/self/status` text.
pub fn cap_eff(status_text: &str) -> Option<u64> {
    let hex = status_text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// CAP_NET_ADMIN must be in the effective set (`status_text` is
/// `/proc/self/status`, `None` when it could not be read).
pub fn cap_net_admin(status_text: Option<&str>) -> Check {
    const N: &str = "CAP_NET_ADMIN";
    match status_text.and_then(cap_eff) {
        None => Check::fail(N, "cannot read CapEff from /proc/self/status"),
        Some(caps) if caps & (1 << CAP_NET_ADMIN_BIT) != 0 => {
            Check::pass(N, "present in the effective set")
        }
        Some(_) => Check::fail(N, "missing (run as root or add NET_ADMIN)"),
    }
}

/// The config file parses and validates. `loaded` is `None` when no file
/// was checked (none given and the default path does not exist).
/// The name of the config check (its failure is a configuration error).
pub const CONFIG: &str = "Config";

pub fn config(loaded: Option<(&Path, &Result<Config, ConfigError>)>) -> Check {
    const N: &str = CONFIG;
    match loaded {
        None => Check::skip(
            N,
            format_args!(
                "no config checked: no --config given and {DEFAULT_CONFIG} does not exist"
            ),
        ),
        Some((p, Ok(c))) => Check::pass(
            N,
            format!(
                "{} valid (interface {}, {} peer{})",
                p.display(),
                c.interface.name,
                c.peers.len(),
                if c.peers.len() == 1 { "" } else { "s" }
            ),
        ),
        Some((_, Err(e))) => Check::fail(N, e.to_string()),
    }
}

/// What is known about the interface's private key.
#[derive(Debug)]
pub enum KeyFacts {
    /// No (valid) config, so no key location.
    NotConfigured,
    /// The key is inline in a wg-quick file: that file must be private.
    Inline {
        config: PathBuf,
        mode: Result<(), KeyError>,
    },
    Present {
        path: PathBuf,
        /// [`crate::cli::keys::check_key_file_mode`].
        mode: Result<(), KeyError>,
        /// Whether the content is a key (the key itself is not kept).
        content: Result<(), KeyError>,
    },
    /// The daemon generates it on first start, creating `dir` if needed:
    /// `dir` is the nearest existing directory on the way.
    Missing {
        path: PathBuf,
        dir: PathBuf,
        dir_writable: bool,
    },
    /// Could not even stat it.
    Unreadable { path: PathBuf, error: String },
}

pub fn private_key(facts: &KeyFacts) -> Check {
    const N: &str = "Private key";
    match facts {
        KeyFacts::NotConfigured => Check::skip(N, "no valid config naming a key file"),
        KeyFacts::Inline {
            config,
            mode: Ok(()),
        } => Check::pass(
            N,
            format!(
                "inline in {}, which only its owner can read",
                config.display()
            ),
        ),
        KeyFacts::Inline { mode: Err(e), .. } => {
            Check::fail(N, format!("inline in a config readable by others: {e}"))
        }
        KeyFacts::Present {
            path,
            mode: Ok(()),
            content: Ok(()),
        } => Check::pass(
            N,
            format!("{} present, owner-only permissions", path.display()),
        ),
        KeyFacts::Present { mode: Err(e), .. } => Check::fail(N, e.to_string()),
        KeyFacts::Present {
            path,
            content: Err(e),
            ..
        } => match e {
            KeyError::Io { source, .. } if source.kind() != io::ErrorKind::InvalidData => {
                Check::fail(N, e.to_string())
            }
            _ => Check::fail(
                N,
                format!(
                    "{}: not a base64 WireGuard key (wg genkey > file)",
                    path.display()
                ),
            ),
        },
        KeyFacts::Missing {
            path,
            dir_writable: true,
            ..
        } => Check::pass(
            N,
            format!(
                "{} missing: will be generated on first start",
                path.display()
            ),
        ),
        KeyFacts::Missing {
            path,
            dir,
            dir_writable: false,
        } => Check::fail(
            N,
            format!(
                "{} missing and {} is not writable, so it cannot be generated",
                path.display(),
                dir.display()
            ),
        ),
        KeyFacts::Unreadable { path, error } => {
            Check::fail(N, format!("{}: {error}", path.display()))
        }
    }
}

/// Why a bind failed, for port lines.
fn bind_reason(e: &io::Error, holder: Option<&str>) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => match holder {
            Some(h) => format!("in use by {h}"),
            None => "in use".into(),
        },
        io::ErrorKind::AddrNotAvailable => "not an address of this host".into(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)".into()
        }
        _ => e.to_string(),
    }
}

/// The WireGuard UDP port must be free on both wildcard addresses (the
/// daemon binds `[::]` dual-stack, or `0.0.0.0` without IPv6). `binds` are
/// the attempts; an IPv6 attempt failing with EAFNOSUPPORT means the host
/// has no IPv6, which is not a conflict.
pub fn udp_port(port: u16, binds: &[(SocketAddr, io::Result<()>)], holder: Option<&str>) -> Check {
    const N: &str = "UDP listen port";
    let mut tried = Vec::new();
    for (addr, r) in binds {
        match r {
            Ok(()) => tried.push(addr.ip().to_string()),
            Err(e) if addr.is_ipv6() && errno(e) == libc::EAFNOSUPPORT => {}
            Err(e) => {
                let ip = match addr.ip() {
                    IpAddr::V6(v6) => format!("[{v6}]"),
                    v4 => v4.to_string(),
                };
                return Check::fail(N, format!("{port} on {ip}: {}", bind_reason(e, holder)));
            }
        }
    }
    if tried.is_empty() {
        return Check::fail(N, format!("{port}: no address family could be tried"));
    }
    let shown: Vec<String> = tried
        .iter()
        .map(|ip| {
            if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.clone()
            }
        })
        .collect();
    Check::pass(N, format!("{port} free on {}", shown.join(" and ")))
}

/// The admin server's TCP address must be bindable. `listen` is the
/// configured text (already known not to be "off").
pub fn admin_address(listen: &str, bind: &Result<(), io::Error>, holder: Option<&str>) -> Check {
    const N: &str = "Admin address";
    match bind {
        Ok(()) => Check::pass(N, format!("{listen} free")),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            Check::fail(N, format!("{listen:?} is not ip:port or \"off\""))
        }
        Err(e) => Check::fail(N, format!("{listen}: {}", bind_reason(e, holder))),
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        errno(e),
        libc::ENOPROTOOPT | libc::EINVAL | libc::EOPNOTSUPP
    )
}

/// `setsockopt(UDP_SEGMENT)` on a UDP socket: segmentation offload for sends.
pub fn udp_gso(r: &io::Result<()>) -> Check {
    const N: &str = "UDP GSO";
    match r {
        Ok(()) => Check::pass(N, "supported (UDP_SEGMENT)"),
        Err(e) if unsupported(e) => Check::fail(
            N,
            "not supported by this kernel (UDP_SEGMENT needs Linux 4.18+): one send per packet",
        ),
        Err(e) => Check::fail(N, format!("cannot test: {e}")),
    }
}

/// `setsockopt(UDP_GRO)` on a UDP socket: coalesced receives.
pub fn udp_gro(r: &io::Result<()>) -> Check {
    const N: &str = "UDP GRO";
    match r {
        Ok(()) => Check::pass(N, "supported (UDP_GRO)"),
        Err(e) if unsupported(e) => Check::fail(
            N,
            "not supported by this kernel (UDP_GRO needs Linux 5.0+): one receive per packet",
        ),
        Err(e) => Check::fail(N, format!("cannot test: {e}")),
    }
}

/// Results of TUNSETOFFLOAD on a throwaway IFF_VNET_HDR TUN.
#[derive(Debug)]
pub struct TunOffload {
    /// TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6.
    pub tso: io::Result<()>,
    /// The same plus TUN_F_USO4 | TUN_F_USO6 (Linux 6.2+).
    pub uso: io::Result<()>,
}

/// `probe` is `Err(why)` when the test could not be run at all.
pub fn tun_offload(probe: &Result<TunOffload, String>) -> Check {
    const N: &str = "TUN offload";
    match probe {
        Err(why) => Check::fail(N, format!("cannot test: {why}")),
        Ok(TunOffload { tso: Err(e), .. }) => Check::fail(
            N,
            format!("IFF_VNET_HDR TUN refuses CSUM|TSO4|TSO6 ({e}): no segmentation offload"),
        ),
        Ok(TunOffload { uso: Ok(()), .. }) => {
            Check::pass(N, "IFF_VNET_HDR with CSUM, TSO4, TSO6, USO4, USO6")
        }
        Ok(TunOffload { uso: Err(e), .. }) => Check::new(
            N,
            Level::Warn,
            format!(
                "IFF_VNET_HDR with CSUM, TSO4, TSO6; USO4/USO6 {} (UDP inside the tunnel is not segmented)",
                if unsupported(e) { "not supported (Linux 6.2+)".to_string() } else { format!("failed: {e}") }
            ),
        ),
    }
}

/// One network interface from /sys/class/net.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub mtu: u32,
    /// ARPHRD type: 772 loopback, 65534 "none" (TUN, WireGuard).
    pub kind: u32,
    pub up: bool,
}

pub const ARPHRD_LOOPBACK: u32 = 772;
pub const ARPHRD_NONE: u32 = 65534;

/// The interface outer packets are most likely to leave by: the largest
/// MTU among non-loopback, non-tunnel interfaces that are up (all of them
/// when none is up).
pub fn uplink(ifaces: &[Iface]) -> Option<&Iface> {
    let candidates: Vec<&Iface> = ifaces
        .iter()
        .filter(|i| i.kind != ARPHRD_LOOPBACK && i.kind != ARPHRD_NONE && i.name != "lo")
        .collect();
    let up: Vec<&Iface> = candidates.iter().copied().filter(|i| i.up).collect();
    let pool = if up.is_empty() { candidates } else { up };
    pool.into_iter().max_by_key(|i| i.mtu)
}

/// The tunnel MTU must satisfy IP's minimums (1280 with IPv6 addresses,
/// 576 otherwise) and leave room for the outer headers on the uplink.
pub fn mtu(mtu: u16, from_config: bool, has_v6: bool, ifaces: &[Iface]) -> Check {
    const N: &str = "MTU";
    let what = if from_config {
        format!("{mtu}")
    } else {
        format!("{mtu} (default)")
    };
    let min = if has_v6 { 1280 } else { 576 };
    if mtu < min {
        let why = if has_v6 { " with IPv6 addresses" } else { "" };
        return Check::fail(N, format!("{what} is below {min}, the minimum{why}"));
    }
    let Some(up) = uplink(ifaces) else {
        return Check::new(
            N,
            Level::Warn,
            format!("{what} (no non-loopback interface to compare with)"),
        );
    };
    let room = up.mtu.saturating_sub(u32::from(WG_OVERHEAD_V6));
    if u32::from(mtu) > room {
        return Check::fail(
            N,
            format!(
                "{what} exceeds {} MTU {} minus {WG_OVERHEAD_V6} bytes of WireGuard overhead: set mtu <= {room}",
                up.name, up.mtu
            ),
        );
    }
    Check::pass(
        N,
        format!(
            "{what} fits {} MTU {} minus {WG_OVERHEAD_V6}",
            up.name, up.mtu
        ),
    )
}

// ---- the runner (and its text and JSON output) ----

#[path = "preflight_run.rs"]
mod runner;
pub use runner::*;

#[cfg(test)]
#[path = "preflight_tests.rs"]
mod tests;
