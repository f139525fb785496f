//! Link configuration by ioctl (MTU, flags) and one rtnetlink request per
//! address change (RTM_NEWADDR / RTM_DELADDR), built by hand: no `ip`
//! command, no async netlink stack.
use super::netlink::address_request;
use std::ffi::CString;
use std::io;
use std::mem::zeroed;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Checks a name as wg-quick does: `[a-zA-Z0-9_=+.-]{1,15}`.
pub fn validate_name(name: &str) -> io::Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_=+.-".contains(c);
    if (1..libc::IFNAMSIZ).contains(&name.len()) && name.chars().all(ok_char) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid interface name {name:?}: use 1-15 characters from a-z A-Z 0-9 _ = + . -"
            ),
        ))
    }
}

pub(super) fn with_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An ifreq carrying `name`; any name the kernel could hold is accepted here
/// (helpers also serve `lo` and the like), the kernel checks the rest.
pub(super) fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is a C struct (name array and a union of plain data).
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

pub(super) fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The interface index of `name` in the calling thread's namespace, 0 if none.
pub(super) fn ifindex(name: &str) -> u32 {
    match CString::new(name) {
        // SAFETY: a valid NUL-terminated string.
        Ok(c) => unsafe { libc::if_nametoindex(c.as_ptr()) },
        Err(_) => 0,
    }
}

pub(super) fn require_ifindex(name: &str) -> io::Result<u32> {
    match ifindex(name) {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name}"),
        )),
        i => Ok(i),
    }
}

/// Runs one interface ioctl on a throwaway datagram socket.
fn ifreq_ioctl(name: &str, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: plain socket creation; the result is owned right away.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
        .or_else(|_| {
            cvt(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
        })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the request reads/writes one ifreq, which `req` is.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) })
        .map(drop)
        .map_err(|e| with_context(e, format!("interface {name}")))
}

/// The MTU of `name`.
pub fn get_mtu(name: &str) -> io::Result<usize> {
    let mut req = ifreq_for(name)?;
    ifreq_ioctl(name, libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: SIOCGIFMTU fills the mtu member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu }.max(0) as usize)
}

/// Sets the MTU of `name` (needs CAP_NET_ADMIN).
pub fn set_mtu(name: &str, mtu: usize) -> io::Result<()> {
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("MTU {mtu} out of range"),
        )
    })?;
    ifreq_ioctl(name, libc::SIOCSIFMTU, &mut req)
        .map_err(|e| with_context(e, format!("cannot set MTU {mtu}")))
}

fn get_flags(name: &str) -> io::Result<libc::c_int> {
    let mut req = ifreq_for(name)?;
    ifreq_ioctl(name, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS fills the flags member. The kernel's flags are an
    // unsigned short: widen without sign extension.
    Ok(unsafe { req.ifr_ifru.ifru_flags } as u16 as libc::c_int)
}

/// Brings `name` up (needs CAP_NET_ADMIN).
pub fn set_up(name: &str) -> io::Result<()> {
    let flags = get_flags(name)?;
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_flags = (flags | libc::IFF_UP) as libc::c_short;
    ifreq_ioctl(name, libc::SIOCSIFFLAGS, &mut req)
        .map_err(|e| with_context(e, "cannot bring link up"))
}

/// Whether `name` exists and is administratively up.
pub fn is_up(name: &str) -> bool {
    get_flags(name).is_ok_and(|f| f & libc::IFF_UP != 0)
}

/// Adds `ip/prefix` to `name`. Adding an address that is already there
/// succeeds (NLM_F_REPLACE), so configuration can be re-applied.
pub fn add_address(name: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
    let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE;
    address_request(libc::RTM_NEWADDR, flags as u16, name, ip, prefix)
        .map_err(|e| with_context(e, format!("cannot add address {ip}/{prefix} to {name}")))
}

/// Removes `ip/prefix` from `name`.
pub fn del_address(name: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
    let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
    address_request(libc::RTM_DELADDR, flags as u16, name, ip, prefix).map_err(|e| {
        with_context(
            e,
            format!("cannot remove address {ip}/{prefix} from {name}"),
        )
    })
}
