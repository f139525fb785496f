//! The few rtnetlink requests the TUN helpers need (RTM_NEWADDR/RTM_DELADDR,
//! and RTM_DELLINK in tests), built by hand: one request, one acknowledgement,
//! on a fresh NETLINK_ROUTE socket each time (configuration is rare).
use std::io;
use std::mem::{size_of, zeroed};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::link::{cvt, require_ifindex, with_context};

fn push_attr(msg: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(msg.len().next_multiple_of(4), 0);
}

pub(super) fn address_request(
    kind: u16,
    flags: u16,
    name: &str,
    ip: IpAddr,
    prefix: u8,
) -> io::Result<()> {
    let (family, octets, max) = match ip {
        IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec(), 32),
        IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec(), 128),
    };
    if prefix > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("prefix length {prefix} above {max}"),
        ));
    }
    let index = require_ifindex(name)?;
    // A tunnel has no link layer to detect duplicates on; without NODAD an
    // IPv6 address stays tentative (unbindable) until DAD work runs.
    let ifa_flags = if ip.is_ipv6() {
        libc::IFA_F_NODAD as u8
    } else {
        0
    };
    // struct ifaddrmsg: family, prefixlen, flags, scope (universe), index.
    let mut payload = vec![family as u8, prefix, ifa_flags, 0];
    payload.extend_from_slice(&index.to_ne_bytes());
    // Without a peer address, local and address are the same (as `ip` sends).
    push_attr(&mut payload, libc::IFA_LOCAL, &octets);
    push_attr(&mut payload, libc::IFA_ADDRESS, &octets);
    netlink_request(kind, flags, &payload)
}

/// Sends one rtnetlink request and waits for its acknowledgement.
pub(super) fn netlink_request(kind: u16, flags: u16, payload: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket creation; the result is owned right away.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // A kernel that never answers must not hang configuration forever.
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: `tv` outlives the call and its size is passed alongside.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    const SEQ: u32 = 1;
    // struct nlmsghdr: len, type, flags, seq, pid (0: the kernel fills it in).
    let mut msg = Vec::with_capacity(16 + payload.len());
    msg.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&SEQ.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(payload);
    // SAFETY: sockaddr_nl is plain data; all-zero plus the family addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` and `kernel` are live for the call, lengths match.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(with_context(e, "no answer from rtnetlink"));
        }
        if let Some(result) = find_ack(&buf[..n as usize], SEQ) {
            return result;
        }
    }
}

/// Scans a netlink datagram for the NLMSG_ERROR answering `seq` (error 0 is
/// the acknowledgement). `None` when this datagram does not hold it.
pub(super) fn find_ack(mut data: &[u8], seq: u32) -> Option<io::Result<()>> {
    let u32_at = |d: &[u8], at: usize| {
        d.get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    while data.len() >= 16 {
        let len = u32_at(data, 0)? as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < 16 || len > data.len() {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed rtnetlink answer",
            )));
        }
        if kind == libc::NLMSG_ERROR as u16 && u32_at(data, 8) == Some(seq) {
            let errno = u32_at(data, 16)? as i32;
            return Some(if errno == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-errno))
            });
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    None
}
