//! Fact gathering for `preflight`: the syscalls and /proc, /sys reads whose
//! results the pure checks in the parent module judge. Nothing here keeps
//! a key: a key file's content is parsed and dropped.
use super::{Iface, KeyFacts, TunOffload};
use crate::config::{Config, KeySource};
use socket2::{Domain, Socket, Type};
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use zeroize::Zeroize;

/// Opens `path` read/write and closes it again.
pub fn open_rw(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(drop)
}

/// The nearest existing directory at or above `dir` (where
/// `load_or_generate_private_key` would start creating).
fn nearest_existing(dir: &Path) -> PathBuf {
    let mut d = dir.to_path_buf();
    loop {
        if d.is_dir() {
            return d;
        }
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
}

/// access(2) W_OK: honours read-only mounts, which a mode check would not.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    match CString::new(dir.as_os_str().as_bytes()) {
        // SAFETY: a valid NUL-terminated path.
        Ok(c) => unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 },
        Err(_) => false,
    }
}

/// What the key check needs, for the (valid) config at `config_path`.
pub fn key_facts(cfg: Option<&Config>, config_path: Option<&Path>) -> KeyFacts {
    use crate::cli::keys::{check_key_file_mode, read_key_file};
    let Some(cfg) = cfg else {
        return KeyFacts::NotConfigured;
    };
    match &cfg.interface.private_key {
        KeySource::Inline(_) => {
            let config = config_path.map(Path::to_path_buf).unwrap_or_default();
            let mode = check_key_file_mode(&config);
            KeyFacts::Inline { config, mode }
        }
        KeySource::File(path) => match fs::metadata(path) {
            Ok(_) => {
                let mode = check_key_file_mode(path);
                let content = read_key_file(path).map(|mut k| k.zeroize());
                KeyFacts::Present {
                    path: path.clone(),
                    mode,
                    content,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                let dir = nearest_existing(parent);
                KeyFacts::Missing {
                    path: path.clone(),
                    dir_writable: writable(&dir),
                    dir,
                }
            }
            Err(e) => KeyFacts::Unreadable {
                path: path.clone(),
                error: e.to_string(),
            },
        },
    }
}

fn bind_udp_on(addr: SocketAddr) -> io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    // A socket with SO_REUSEADDR could share the port with another one that
    // also set it; the daemon does not, so neither does the test.
    s.set_reuse_address(false)?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.bind(&addr.into())
}

/// Tries the daemon's binds one after the other (each socket is closed
/// before the next, so they do not conflict with each other).
pub fn bind_udp(port: u16) -> Vec<(SocketAddr, io::Result<()>)> {
    [
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
    ]
    .into_iter()
    .map(|a| (a, bind_udp_on(a)))
    .collect()
}

/// Binds the admin address as the daemon would (std's listener, which sets
/// SO_REUSEADDR so a TIME_WAIT leftover does not count); returns the
/// result and the port when the text parsed.
pub fn bind_tcp(listen: &str) -> (io::Result<()>, Option<u16>) {
    match listen.parse::<SocketAddr>() {
        Ok(a) => (std::net::TcpListener::bind(a).map(drop), Some(a.port())),
        Err(_) => (
            Err(io::Error::new(io::ErrorKind::InvalidInput, "not ip:port")),
            None,
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    /// Listening TCP sockets only.
    TcpListen,
}

/// Socket inodes bound to local `port` in a /proc/net/{udp,udp6,tcp,tcp6}
/// table (TCP: only LISTEN, state 0A).
pub fn socket_inodes(table: &str, port: u16, proto: Proto) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let p = u16::from_str_radix(local_port, 16).ok()?;
            let listening = proto == Proto::Udp || *f.get(3)? == "0A";
            let inode: u64 = f.get(9)?.parse().ok()?;
            (p == port && listening && inode != 0).then_some(inode)
        })
        .collect()
}

/// `pid N (comm)` of the first process holding one of `inodes`, scanning
/// `proc` (normally /proc). Only processes we may inspect are seen.
pub fn find_holder(proc: &Path, inodes: &[u64]) -> Option<String> {
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir(proc).ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                let comm = comm.trim();
                return Some(if comm.is_empty() {
                    format!("pid {pid}")
                } else {
                    format!("pid {pid} ({comm})")
                });
            }
        }
    }
    None
}

/// Who holds `port`, if /proc can tell cheaply; only called after a bind
/// failed.
pub fn port_holder(proto: Proto, port: u16) -> Option<String> {
    let tables: &[&str] = match proto {
        Proto::Udp => &["udp", "udp6"],
        Proto::TcpListen => &["tcp", "tcp6"],
    };
    // thread-self: /proc/net follows the main thread's namespace, which
    // need not be the calling thread's.
    let read = |t: &str| {
        fs::read_to_string(format!("/proc/thread-self/net/{t}"))
            .or_else(|_| fs::read_to_string(format!("/proc/net/{t}")))
            .ok()
    };
    let inodes: Vec<u64> = tables
        .iter()
        .filter_map(|t| read(t))
        .flat_map(|t| socket_inodes(&t, port, proto))
        .collect();
    find_holder(Path::new("/proc"), &inodes)
}

fn setsockopt_int(
    s: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int with its exact size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// (UDP_SEGMENT, UDP_GRO) accepted by a UDP socket?
pub fn udp_offloads() -> (io::Result<()>, io::Result<()>) {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, None)
        .or_else(|_| Socket::new(Domain::IPV6, Type::DGRAM, None));
    match sock {
        Ok(s) => (
            setsockopt_int(&s, libc::SOL_UDP, libc::UDP_SEGMENT, 1280),
            setsockopt_int(&s, libc::SOL_UDP, libc::UDP_GRO, 1),
        ),
        Err(e) => {
            let again = io::Error::new(e.kind(), e.to_string());
            (Err(e), Err(again))
        }
    }
}

/// A name no other preflight run in this process is using.
fn temp_tun_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed) % 1000;
    // "pmpf" + up to 7 pid digits + "-" + 3 digits fits IFNAMSIZ - 1.
    format!("pmpf{}-{n}", std::process::id())
}

/// Creates a non-persistent IFF_VNET_HDR TUN, asks for the offloads the fast
/// path wants, and closes it (the kernel removes the interface with the last
/// descriptor).
pub fn tun_offload() -> Result<TunOffload, String> {
    let name = temp_tun_name();
    // SAFETY: a valid NUL-terminated path; the result is owned right away.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "cannot open /dev/net/tun: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF as _,
            &mut req as *mut libc::ifreq,
        )
    } < 0
    {
        return Err(format!(
            "cannot create TUN {name} with IFF_VNET_HDR: {}",
            io::Error::last_os_error()
        ));
    }
    let set = |flags: libc::c_uint| -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        let r = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD as _,
                flags as libc::c_ulong,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let base = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    let tso = set(base);
    let uso = if tso.is_ok() {
        set(base | libc::TUN_F_USO4 | libc::TUN_F_USO6)
    } else {
        Err(io::Error::new(io::ErrorKind::Unsupported, "not tried"))
    };
    drop(fd);
    Ok(TunOffload { tso, uso })
}

/// Interfaces under `sys_class_net` (normally /sys/class/net).
pub fn interfaces(sys_class_net: &Path) -> Vec<Iface> {
    let Ok(dir) = fs::read_dir(sys_class_net) else {
        return Vec::new();
    };
    let read_num = |p: PathBuf| -> Option<u32> {
        let t = fs::read_to_string(p).ok()?;
        let t = t.trim();
        match t.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => t.parse().ok(),
        }
    };
    let mut out: Vec<Iface> = dir
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            Some(Iface {
                name: e.file_name().to_string_lossy().into_owned(),
                mtu: read_num(p.join("mtu"))?,
                kind: read_num(p.join("type")).unwrap_or(0),
                up: read_num(p.join("flags")).is_some_and(|f| f & libc::IFF_UP as u32 != 0),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
