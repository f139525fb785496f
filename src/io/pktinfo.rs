//! IP_PKTINFO / IPV6_PKTINFO control messages: the local address a datagram
//! arrived on, and the source address to send one from (the sticky source
//! of [`super::Endpoint`]).
//!
//! Received: IPv4 datagrams carry an `in_pktinfo` (SOL_IP), IPv6 ones an
//! `in6_pktinfo` (SOL_IPV6); a dual-stack socket gets the IPv4 kind for
//! IPv4-mapped traffic when IP_PKTINFO is set on it too. Sent: the same
//! structures name the source; an IPv4 source on a dual-stack socket goes
//! as IP_PKTINFO, which the kernel accepts for IPv4-mapped destinations.
use super::LocalAddr;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

/// Control-message space one pktinfo takes (the IPv6 kind, the larger).
pub const SPACE: usize = 40;

fn setsockopt_one(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a live int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Asks the kernel for each datagram's local address (`v6`: a dual-stack
/// socket, which needs both options).
pub fn enable(fd: RawFd, v6: bool) -> io::Result<()> {
    if v6 {
        setsockopt_one(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
    }
    setsockopt_one(fd, libc::IPPROTO_IP, libc::IP_PKTINFO)
}

/// The local address in a received message's control messages.
///
/// # Safety
/// `h.msg_control` / `h.msg_controllen` must describe a live buffer (as
/// the kernel left it after a receive).
pub unsafe fn parse(h: &libc::msghdr) -> Option<LocalAddr> {
    // SAFETY: walks the buffer within msg_controllen (the caller's word).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            let room = ((*c).cmsg_len as usize).saturating_sub(data as usize - c as usize);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) if room >= size_of::<libc::in_pktinfo>() => {
                    let p = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    return Some(LocalAddr {
                        ip: IpAddr::V4(Ipv4Addr::from(u32::from_be(p.ipi_spec_dst.s_addr))),
                        ifindex: p.ipi_ifindex.max(0) as u32,
                    });
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if room >= size_of::<libc::in6_pktinfo>() =>
                {
                    let p = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    let v6 = Ipv6Addr::from(p.ipi6_addr.s6_addr);
                    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
                    return Some(LocalAddr {
                        ip,
                        ifindex: p.ipi6_ifindex,
                    });
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// Whether `src` can name the source of a datagram to `dst` (same family;
/// an IPv4 destination may be IPv4-mapped).
pub fn fits(src: &LocalAddr, dst: &SocketAddr) -> bool {
    let dst_v4 = match dst {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().is_some(),
    };
    src.ip.is_ipv4() == dst_v4 && !src.ip.is_unspecified()
}

/// Writes a pktinfo naming `src` as the source at `c`; returns its
/// CMSG_SPACE.
///
/// # Safety
/// `c` must point into a message's control buffer with at least [`SPACE`]
/// bytes left (as CMSG_FIRSTHDR / CMSG_NXTHDR give).
pub unsafe fn write(c: *mut libc::cmsghdr, src: &LocalAddr) -> usize {
    // SAFETY: the caller guarantees SPACE bytes at `c`.
    unsafe {
        match src.ip {
            IpAddr::V4(ip) => {
                let p = libc::in_pktinfo {
                    // The route picks the interface; only the address is kept.
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), p);
                libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize
            }
            IpAddr::V6(ip) => {
                // A link-local source needs its interface; others do not.
                let scoped = ip.segments()[0] & 0xffc0 == 0xfe80;
                let p = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: if scoped { src.ifindex } else { 0 },
                };
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), p);
                libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize
            }
        }
    }
}

#[cfg(test)]
#[path = "pktinfo_tests.rs"]
mod tests;
