use super::*;
use crate::io::linux_udp::CmsgBuf;

/// A msghdr over `buf` with `len` bytes of control data.
fn msg_over(buf: &mut CmsgBuf<64>, len: usize) -> libc::msghdr {
    // SAFETY: msghdr is plain data.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_control = buf.0.as_mut_ptr().cast();
    h.msg_controllen = len;
    h
}

fn round_trip(src: LocalAddr) -> Option<LocalAddr> {
    let mut buf = CmsgBuf([0u8; 64]);
    let mut h = msg_over(&mut buf, 64);
    // SAFETY: 64 bytes of aligned control buffer, more than SPACE.
    let used = unsafe { write(libc::CMSG_FIRSTHDR(&h), &src) };
    assert!(used <= SPACE);
    h.msg_controllen = used;
    // SAFETY: the buffer holds what `write` put there.
    unsafe { parse(&h) }
}

#[test]
fn space_is_the_larger_pktinfo() {
    // SAFETY: CMSG_SPACE is arithmetic.
    let v6 = unsafe { libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) } as usize;
    let v4 = unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) } as usize;
    assert_eq!(SPACE, v6.max(v4));
}

#[test]
fn ipv4_source_round_trips() {
    let src = LocalAddr {
        ip: "10.9.8.7".parse().unwrap(),
        ifindex: 0,
    };
    assert_eq!(round_trip(src), Some(src));
}

#[test]
fn ipv6_source_round_trips_and_keeps_the_interface_only_when_scoped() {
    let global = LocalAddr {
        ip: "fd00::5".parse().unwrap(),
        ifindex: 7,
    };
    assert_eq!(
        round_trip(global),
        Some(LocalAddr {
            ifindex: 0,
            ..global
        })
    );
    let link_local = LocalAddr {
        ip: "fe80::1".parse().unwrap(),
        ifindex: 7,
    };
    assert_eq!(round_trip(link_local), Some(link_local));
}

#[test]
fn received_ipv4_mapped_pktinfo_reads_as_ipv4() {
    let mut buf = CmsgBuf([0u8; 64]);
    let h = msg_over(&mut buf, 64);
    let mapped = LocalAddr {
        ip: "::ffff:10.1.2.3".parse().unwrap(),
        ifindex: 3,
    };
    // SAFETY: as in round_trip.
    let got = unsafe {
        let c = libc::CMSG_FIRSTHDR(&h);
        // Written as the kernel would: with its interface.
        let p = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: match mapped.ip {
                    IpAddr::V6(v6) => v6.octets(),
                    _ => unreachable!(),
                },
            },
            ipi6_ifindex: 3,
        };
        (*c).cmsg_level = libc::IPPROTO_IPV6;
        (*c).cmsg_type = libc::IPV6_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), p);
        parse(&h)
    };
    assert_eq!(
        got,
        Some(LocalAddr {
            ip: "10.1.2.3".parse().unwrap(),
            ifindex: 3
        })
    );
}

#[test]
fn other_or_truncated_control_messages_give_nothing() {
    let mut buf = CmsgBuf([0u8; 64]);
    let h = msg_over(&mut buf, 0);
    // SAFETY: an empty control buffer.
    assert_eq!(unsafe { parse(&h) }, None);
    let h = msg_over(&mut buf, 64);
    // SAFETY: a UDP_GRO int, then nothing.
    let got = unsafe {
        let c = libc::CMSG_FIRSTHDR(&h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = 104;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        parse(&h)
    };
    assert_eq!(got, None);
    // A pktinfo header whose length is too short for its data.
    let h = msg_over(&mut buf, 64);
    let got = unsafe {
        let c = libc::CMSG_FIRSTHDR(&h);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        parse(&h)
    };
    assert_eq!(got, None);
}

#[test]
fn sources_fit_only_their_family() {
    let v4 = LocalAddr {
        ip: "10.0.0.1".parse().unwrap(),
        ifindex: 0,
    };
    let v6 = LocalAddr {
        ip: "fd00::1".parse().unwrap(),
        ifindex: 0,
    };
    assert!(fits(&v4, &"10.0.0.2:1".parse().unwrap()));
    assert!(fits(&v4, &"[::ffff:10.0.0.2]:1".parse().unwrap()));
    assert!(!fits(&v4, &"[fd00::2]:1".parse().unwrap()));
    assert!(fits(&v6, &"[fd00::2]:1".parse().unwrap()));
    assert!(!fits(&v6, &"10.0.0.2:1".parse().unwrap()));
}

mod sockets {
    //! The sticky source over real sockets (privileged: a namespace).
    use crate::io::linux_tun::add_address;
    use crate::io::linux_tun::test_support::{in_netns, privileged, wait_until_local};
    use crate::io::linux_udp::{Family, LinuxUdp};
    use crate::io::{Endpoint, LocalAddr, RecvMeta, Udp};
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    fn recv_one(u: &LinuxUdp) -> RecvMeta {
        let mut bufs = vec![vec![0u8; 2048]; 4];
        let mut meta = [RecvMeta::default(); 4];
        for _ in 0..20 {
            if u.recv(&mut bufs, &mut meta).unwrap() > 0 {
                return meta[0];
            }
        }
        panic!("nothing received");
    }

    fn from(peer: &UdpSocket) -> SocketAddr {
        let mut b = [0u8; 64];
        peer.recv_from(&mut b).expect("a datagram").1
    }

    fn local(ip: &str) -> Option<LocalAddr> {
        Some(LocalAddr {
            ip: ip.parse().unwrap(),
            ifindex: 0,
        })
    }

    /// A datagram to the node's second address is answered from it; a
    /// source that is not (or no longer) local is dropped and the datagram
    /// still goes out, from the route's address.
    /// `plain`: the source the route picks (IPv6 prefers the destination
    /// itself when it is local).
    fn check(u: &LinuxUdp, peer_ip: &str, plain_ip: &str, second: &str) {
        let peer = UdpSocket::bind((peer_ip.parse::<std::net::IpAddr>().unwrap(), 0)).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let me: SocketAddr = SocketAddr::new(second.parse().unwrap(), u.port());
        peer.send_to(b"hello", me).unwrap();
        let m = recv_one(u);
        assert_eq!(m.src, peer.local_addr().unwrap());
        let got = m.local.expect("the local address of the datagram");
        assert_eq!(got.ip, second.parse::<std::net::IpAddr>().unwrap());
        assert!(got.ifindex > 0);

        let ep = Endpoint {
            dst: m.src,
            src: m.local,
        };
        assert!(!u.send_from(&[b"one"], ep).unwrap());
        assert_eq!(from(&peer), me);
        // Several datagrams at once (a GSO send where available).
        assert!(!u.send_from(&[b"aaaa", b"bbbb", b"cccc"], ep).unwrap());
        for _ in 0..3 {
            assert_eq!(from(&peer), me);
        }
        // Without a source: the route's preferred address.
        u.send_from(&[b"plain"], Endpoint::to(m.src)).unwrap();
        let plain = from(&peer);
        assert_eq!(plain.ip(), plain_ip.parse::<std::net::IpAddr>().unwrap());
        assert_ne!(plain, me);

        // A vanished source: refused, dropped, still delivered.
        let gone_src = if peer_ip.contains(':') {
            "fd00:77::9"
        } else {
            "10.77.0.9"
        };
        let gone = Endpoint {
            dst: m.src,
            src: local(gone_src),
        };
        assert!(u.send_from(&[b"x"], gone).unwrap(), "the source is refused");
        assert_eq!(from(&peer), plain);
        let mut rejected = Vec::new();
        u.send_many_from(&[(b"p", ep), (b"q", gone), (b"r", ep)], &mut |i| {
            rejected.push(i)
        })
        .unwrap();
        assert_eq!(rejected, vec![1]);
        assert_eq!(from(&peer), me);
        assert_eq!(from(&peer), plain);
        assert_eq!(from(&peer), me);
    }

    #[test]
    fn replies_leave_from_the_address_the_peer_used() {
        if !crate::io::linux_tun::test_support::privileged(
            "replies_leave_from_the_address_the_peer_used",
        ) {
            return;
        }
        let _ = privileged;
        in_netns(|| {
            for a in ["10.66.0.1", "10.66.0.2", "10.66.0.9"] {
                add_address("lo", a.parse().unwrap(), 24).unwrap();
            }
            for a in ["fd00:66::1", "fd00:66::2", "fd00:66::9"] {
                add_address("lo", a.parse().unwrap(), 64).unwrap();
            }
            // Datagrams to an IPv6 address are dropped until its local route
            // appears, which may be well after add_address returns.
            for a in ["fd00:66::1", "fd00:66::2", "fd00:66::9"] {
                wait_until_local(a.parse().unwrap());
            }
            let u = LinuxUdp::bind(0, 0, Family::DualStack).unwrap();
            check(&u, "10.66.0.9", "10.66.0.1", "10.66.0.2");
            check(&u, "fd00:66::9", "fd00:66::9", "fd00:66::2");
            let v4 = LinuxUdp::bind(0, 0, Family::V4Only).unwrap();
            check(&v4, "10.66.0.9", "10.66.0.1", "10.66.0.2");
        });
    }
}
