use super::link::{ifindex, require_ifindex};
use super::netlink::{find_ack, netlink_request};
use super::test_support::{in_netns, privileged};
use super::*;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

fn ipv4_checksum(header: &[u8]) -> u16 {
    let sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    !(((folded & 0xffff) + (folded >> 16)) as u16)
}

/// An IPv4/UDP packet (UDP checksum 0: allowed over IPv4).
fn ipv4_udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let csum = ipv4_checksum(&p);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Source, destination and payload of an IPv4/UDP packet.
fn parse_ipv4_udp(p: &[u8]) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    if p.len() < 28 || p[0] != 0x45 || p[9] != 17 {
        return None;
    }
    let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
    let port = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
    Some((
        SocketAddr::from((ip(12), port(20))),
        SocketAddr::from((ip(16), port(22))),
        p[28..].to_vec(),
    ))
}

/// Deletes a link by name, as `ip link del` does.
fn delete_link(name: &str) {
    let index = require_ifindex(name).unwrap();
    // struct ifinfomsg: family, pad, type, index, flags, change.
    let mut payload = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    payload.extend_from_slice(&(index as i32).to_ne_bytes());
    payload.extend_from_slice(&[0u8; 8]);
    netlink_request(
        libc::RTM_DELLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
        &payload,
    )
    .unwrap();
}

#[test]
fn names_are_validated_like_wg_quick() {
    for good in ["wg0", "a", "Tun_=+.-9", "fifteen-chars15"] {
        validate_name(good).unwrap();
    }
    for bad in [
        "",
        "sixteen-chars-16",
        "wg/0",
        "wg 0",
        "wg%d",
        "wg:0",
        "wgé",
    ] {
        assert_eq!(
            validate_name(bad).unwrap_err().kind(),
            io::ErrorKind::InvalidInput,
            "{bad:?}"
        );
        let err = LinuxTun::create(bad)
            .err()
            .expect("create must refuse a bad name");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}

#[test]
fn from_fd_refuses_descriptors_that_are_not_tun() {
    use std::os::fd::IntoRawFd;
    assert_eq!(
        LinuxTun::from_fd(-1, None).err().unwrap().kind(),
        io::ErrorKind::InvalidInput
    );
    let null = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
    let err = LinuxTun::from_fd(null, Some("wg0"))
        .err()
        .expect("/dev/null is no TUN");
    assert!(err.to_string().contains("not an attached TUN"), "{err}");
}

#[test]
fn helpers_report_missing_interfaces() {
    let name = "pmnosuch0";
    assert!(get_mtu(name).is_err());
    assert!(set_mtu(name, 1400).is_err());
    assert!(!is_up(name));
    let err = add_address(name, "10.77.0.1".parse().unwrap(), 24).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains(name), "{err}");
    let err = add_address(name, "10.77.0.1".parse().unwrap(), 33).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(get_mtu("lo").unwrap() > 0);
}

fn nl_message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

#[test]
fn netlink_acks_are_parsed() {
    let err = libc::NLMSG_ERROR as u16;
    let ack = |errno: i32, seq| nl_message(err, seq, &[errno.to_ne_bytes(), [0; 4]].concat());
    assert!(find_ack(&ack(0, 1), 1).unwrap().is_ok());
    let e = find_ack(&ack(-libc::EEXIST, 1), 1).unwrap().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    assert!(
        find_ack(&ack(0, 2), 1).is_none(),
        "another request's answer"
    );
    // An unrelated message first, then the answer, in one datagram.
    let both = [
        nl_message(libc::RTM_NEWADDR, 1, &[0; 8]),
        ack(-libc::EPERM, 1),
    ]
    .concat();
    assert_eq!(
        find_ack(&both, 1).unwrap().unwrap_err().raw_os_error(),
        Some(libc::EPERM)
    );
    let mut truncated = ack(0, 1);
    truncated[0] = 200;
    assert!(find_ack(&truncated, 1).unwrap().is_err());
    assert!(find_ack(&[1, 2, 3], 1).is_none());
}

/// Reads until `want` IPv4/UDP packets to `dst` arrived; returns them and the
/// largest batch one `read` returned.
fn read_udp(tun: &LinuxTun, dst: SocketAddr, want: usize) -> (Vec<(SocketAddr, Vec<u8>)>, usize) {
    const OFFSET: usize = 16;
    let mut store = vec![vec![0u8; 2048]; 32];
    let mut sizes = [0usize; 32];
    let (mut got, mut biggest) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < want && Instant::now() < deadline {
        let n = tun.read_wait(&mut store, &mut sizes, OFFSET).unwrap();
        biggest = biggest.max(n);
        // The kernel may also send IPv6 chatter (MLD, router solicitations).
        for (b, &len) in store.iter().zip(&sizes).take(n) {
            if let Some((src, d, payload)) = parse_ipv4_udp(&b[OFFSET..OFFSET + len]) {
                if d == dst {
                    got.push((src, payload));
                }
            }
        }
    }
    (got, biggest)
}

#[test]
fn tun_in_namespace_carries_packets_and_notices_deletion() {
    if !privileged("tun_in_namespace_carries_packets_and_notices_deletion") {
        return;
    }
    in_netns(|| {
        const NAME: &str = "pmtun0";
        let local = Ipv4Addr::new(10, 77, 0, 1);
        let tun = LinuxTun::create(NAME).unwrap();
        assert_eq!(tun.name(), NAME);
        assert!(tun.exists());
        assert_eq!(tun.features(), crate::io::TunFeatures::PLAIN);
        assert!(!is_up(NAME));
        set_mtu(NAME, 1380).unwrap();
        assert_eq!(tun.mtu().unwrap(), 1380);
        set_up(NAME).unwrap();
        assert!(is_up(NAME));
        add_address(NAME, local.into(), 24).unwrap();
        add_address(NAME, local.into(), 24).unwrap(); // re-applying is fine

        // Kernel -> TUN: datagrams routed over the /24 come out as one batch.
        let sock = UdpSocket::bind((local, 0)).unwrap();
        let dst: SocketAddr = "10.77.0.2:9999".parse().unwrap();
        for i in 0..8 {
            sock.send_to(format!("packet {i}").as_bytes(), dst).unwrap();
        }
        let (got, biggest) = read_udp(&tun, dst, 8);
        let want: Vec<_> = (0..8)
            .map(|i| {
                (
                    sock.local_addr().unwrap(),
                    format!("packet {i}").into_bytes(),
                )
            })
            .collect();
        assert_eq!(got, want);
        assert!(biggest > 1, "reads were not batched");

        // TUN -> kernel, at an offset.
        let mut framed = vec![0xee; 16];
        framed.extend(ipv4_udp(
            Ipv4Addr::new(10, 77, 0, 2),
            5555,
            local,
            sock.local_addr().unwrap().port(),
            b"inbound",
        ));
        tun.write(&mut [&mut framed], 16).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"inbound"[..], "10.77.0.2:5555".parse().unwrap())
        );
        // Garbage is dropped and counted, not fatal.
        tun.write(&mut [&mut vec![0xff; 20]], 0).unwrap();
        assert_eq!(tun.write_drops(), 1);

        // IPv6 addresses: bindable exactly while assigned (no traffic sent).
        let v6: std::net::Ipv6Addr = "fd00:77::1".parse().unwrap();
        add_address(NAME, v6.into(), 64).unwrap();
        UdpSocket::bind((v6, 0)).unwrap();
        del_address(NAME, v6.into(), 64).unwrap();
        assert_eq!(
            UdpSocket::bind((v6, 0)).unwrap_err().kind(),
            io::ErrorKind::AddrNotAvailable
        );

        del_address(NAME, local.into(), 24).unwrap();
        assert!(
            sock.send_to(b"no route", dst).is_err(),
            "route should be gone with the address"
        );
        assert!(del_address(NAME, local.into(), 24).is_err());

        delete_link(NAME);
        assert!(!tun.exists());
        let mut store = [vec![0u8; 64]];
        let err = tun.read_wait(&mut store, &mut [0], 0).unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    });
}

#[test]
fn close_wakes_readers_and_removes_the_interface() {
    if !privileged("close_wakes_readers_and_removes_the_interface") {
        return;
    }
    in_netns(|| {
        const NAME: &str = "pmtun1";
        let tun = Arc::new(LinuxTun::create(NAME).unwrap());
        let reader = {
            let tun = tun.clone();
            std::thread::spawn(move || {
                let mut store = [vec![0u8; 2048]];
                loop {
                    if let Err(e) = tun.read_wait(&mut store, &mut [0], 0) {
                        return e.kind();
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        tun.close();
        assert_eq!(reader.join().unwrap(), io::ErrorKind::NotConnected);
        assert!(!tun.exists());
        assert!(tun.write(&mut [&mut vec![0x45; 20]], 0).is_err());
        // `tun` is still referenced, yet the interface is released.
        let deadline = Instant::now() + Duration::from_secs(2);
        while ifindex(NAME) != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ifindex(NAME), 0, "interface still present after close");
    });
}

#[test]
fn from_fd_adopts_a_tun_and_checks_its_mode() {
    if !privileged("from_fd_adopts_a_tun_and_checks_its_mode") {
        return;
    }
    in_netns(|| {
        let tun = LinuxTun::create("pmtun2").unwrap();
        // SAFETY: dup of a descriptor we own; from_fd takes the copy.
        let copy = unsafe { libc::dup(tun.fd.as_raw_fd()) };
        let adopted = LinuxTun::from_fd(copy, Some("other-name")).unwrap();
        assert_eq!(adopted.name(), "pmtun2");
        assert!(adopted.exists());
        assert_eq!(adopted.link_state(), tun.link_state());

        // A TAP device is refused.
        // SAFETY: plain open and ioctl on a descriptor that from_fd then owns.
        let tap = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(tap >= 0);
        let mut req = ifreq_for("pmtap0").unwrap();
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        assert_eq!(
            unsafe { libc::ioctl(tap, libc::TUNSETIFF as _, &mut req as *mut libc::ifreq) },
            0
        );
        let err = LinuxTun::from_fd(tap, None)
            .err()
            .expect("TAP must be refused");
        assert!(err.to_string().contains("TAP"), "{err}");

        // An open but never attached /dev/net/tun descriptor is refused.
        let detached =
            unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(detached >= 0);
        assert!(LinuxTun::from_fd(detached, None).is_err());
    });
}
