use super::*;

/// Room for either address family, as recvmmsg/sendmmsg take it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddr {
    pub(super) fn zeroed() -> Self {
        // SAFETY: both members are plain C structs for which all-zero is valid.
        unsafe { zeroed() }
    }

    pub(super) fn from_std(addr: SocketAddr) -> (Self, libc::socklen_t) {
        let mut raw = Self::zeroed();
        match addr {
            SocketAddr::V4(a) => {
                raw.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                (raw, size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(a) => {
                raw.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                (raw, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }

    /// The address the kernel wrote, IPv4-mapped IPv6 reported as IPv4.
    pub(super) fn to_std(self, len: libc::socklen_t) -> Option<SocketAddr> {
        // SAFETY: the family field sits at the same offset in both members, and
        // a member is read only when the family and length say it was written.
        unsafe {
            match self.v4.sin_family as libc::c_int {
                libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
                    let a = self.v4;
                    let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                    Some(SocketAddr::V4(SocketAddrV4::new(
                        ip,
                        u16::from_be(a.sin_port),
                    )))
                }
                libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
                    let a = self.v6;
                    let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                    let port = u16::from_be(a.sin6_port);
                    Some(match ip.to_ipv4_mapped() {
                        Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                        // Flow labels vary per packet; keeping them would make one
                        // peer look like many endpoints.
                        None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, a.sin6_scope_id)),
                    })
                }
                _ => None,
            }
        }
    }
}
