use super::recv::gro_size;
use super::*;
use crate::io::linux_bind::LinuxBind;
use crate::io::linux_tun::test_support::privileged;
use crate::io::Bind;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Instant;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn open(family: Family) -> LinuxUdp {
    LinuxUdp::bind(0, 0, family).unwrap()
}

/// Receives until `want` datagrams arrived (or 3 s passed); also returns how
/// many non-empty `recv` calls it took.
fn recv_n(udp: &LinuxUdp, want: usize) -> (Vec<(Vec<u8>, SocketAddr)>, usize) {
    let mut store = vec![vec![0u8; 2048]; MAX_BATCH];
    let mut meta = vec![RecvMeta::default(); MAX_BATCH];
    let (mut out, mut calls) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(3);
    while out.len() < want && Instant::now() < deadline {
        let bufs = &mut store;
        let n = udp.recv(bufs, &mut meta).unwrap();
        if n > 0 {
            calls += 1;
        }
        for (b, m) in bufs.iter().zip(&meta).take(n) {
            out.push((b[..m.len].to_vec(), m.src));
        }
    }
    (out, calls)
}

fn numbered(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("datagram {i:04} {}", "x".repeat(i % 50)).into_bytes())
        .collect()
}

fn batch_round_trip(family: Family, dst_ip: &str, expect_src_ip: &str) {
    let a = open(family);
    let b = open(family);
    let packets = numbered(64);
    let refs: Vec<&[u8]> = packets.iter().map(|p| p.as_slice()).collect();
    let dst = SocketAddr::new(dst_ip.parse().unwrap(), b.port());
    a.send(&refs, dst).unwrap();
    let (got, calls) = recv_n(&b, 64);
    assert_eq!(got.len(), 64);
    assert!(
        calls < 64,
        "recvmmsg returned one datagram per call ({calls} calls)"
    );
    let want_src = SocketAddr::new(expect_src_ip.parse().unwrap(), a.port());
    for (i, (data, src)) in got.iter().enumerate() {
        assert_eq!(data, &packets[i], "datagram {i} differs or is out of order");
        assert_eq!(*src, want_src);
    }
}

#[test]
fn batch_of_64_over_ipv4_loopback() {
    batch_round_trip(Family::DualStack, "127.0.0.1", "127.0.0.1");
}

#[test]
fn batch_of_64_over_ipv6_loopback() {
    batch_round_trip(Family::DualStack, "::1", "::1");
}

#[test]
fn batch_of_64_on_ipv4_only_socket() {
    batch_round_trip(Family::V4Only, "127.0.0.1", "127.0.0.1");
}

#[test]
fn batches_larger_than_max_batch_are_split() {
    let a = open(Family::DualStack);
    let b = open(Family::DualStack);
    let packets = numbered(MAX_BATCH * 2 + 7);
    let refs: Vec<&[u8]> = packets.iter().map(|p| p.as_slice()).collect();
    a.send(&refs, sa(&format!("127.0.0.1:{}", b.port())))
        .unwrap();
    let (got, _) = recv_n(&b, packets.len());
    let got: Vec<Vec<u8>> = got.into_iter().map(|(d, _)| d).collect();
    assert_eq!(got, packets);
    assert_eq!(a.send_drops(), 0);
}

#[test]
fn mapped_sources_are_reported_as_ipv4_and_ipv4_destinations_are_mapped() {
    let ours = open(Family::DualStack);
    assert!(ours.is_dual_stack());
    let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    plain
        .send_to(b"from v4", ("127.0.0.1", ours.port()))
        .unwrap();
    let (got, _) = recv_n(&ours, 1);
    assert_eq!(got[0], (b"from v4".to_vec(), plain.local_addr().unwrap()));
    assert!(got[0].1.is_ipv4(), "mapped source must be normalised");

    // Reply to the IPv4 address (mapped for the v6 socket by send) and to
    // the same address spelled as IPv4-mapped IPv6.
    let v4 = plain.local_addr().unwrap();
    let mapped = SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), v4.port()));
    ours.send(&[b"reply"], v4).unwrap();
    ours.send(&[b"reply mapped"], mapped).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = plain.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from.port()), (&b"reply"[..], ours.port()));
    let (n, _) = plain.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply mapped");
}

#[test]
fn ipv4_only_socket_accepts_mapped_and_refuses_ipv6_destinations() {
    let ours = open(Family::V4Only);
    assert!(!ours.is_dual_stack());
    let peer = open(Family::V4Only);
    ours.send(
        &[b"mapped"],
        sa(&format!("[::ffff:127.0.0.1]:{}", peer.port())),
    )
    .unwrap();
    let (got, _) = recv_n(&peer, 1);
    assert_eq!(got[0].0, b"mapped");
    let err = ours.send(&[b"v6"], sa("[::1]:9")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
}

#[test]
fn port_zero_picks_a_port_and_busy_port_is_addr_in_use() {
    let bind = LinuxBind::new();
    let a = bind.open(0, 0).unwrap();
    assert_ne!(a.port(), 0);
    let err = bind.open(a.port(), 0).err().expect("second bind must fail");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&a.port().to_string()), "{err}");

    // An IPv4-only socket elsewhere on the port also blocks the dual-stack bind.
    let plain = UdpSocket::bind("0.0.0.0:0").unwrap();
    let err = bind
        .open(plain.local_addr().unwrap().port(), 0)
        .err()
        .expect("must conflict");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn idle_recv_returns_zero_after_timeout() {
    let a = open(Family::DualStack);
    let mut store = vec![vec![0u8; 64]];
    let mut meta = [RecvMeta::default()];
    let t = Instant::now();
    assert_eq!(a.recv(&mut store, &mut meta).unwrap(), 0);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[test]
fn close_wakes_receiver_and_frees_port_while_still_referenced() {
    let udp: Arc<dyn Udp> = LinuxBind::new().open(0, 0).unwrap();
    let port = udp.port();
    let reader = {
        let udp = udp.clone();
        std::thread::spawn(move || {
            let mut store = vec![vec![0u8; 64]];
            let mut meta = [RecvMeta::default()];
            loop {
                if let Err(e) = udp.recv(&mut store, &mut meta) {
                    return e.kind();
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    udp.close();
    assert_eq!(reader.join().unwrap(), io::ErrorKind::NotConnected);
    assert!(udp.send(&[b"x"], sa("127.0.0.1:9")).is_err());
    // `udp` is still alive here, yet its port can be bound again at once.
    let again = LinuxBind::new().open(port, 0).unwrap();
    assert_eq!(again.port(), port);
    drop(udp);
}

#[test]
fn fwmark_and_forced_buffers_as_root() {
    if !privileged("fwmark_and_forced_buffers_as_root") {
        return;
    }
    let udp = LinuxUdp::bind(0, 0x5a17, Family::DualStack).unwrap();
    assert_eq!(udp.socket().mark().unwrap(), 0x5a17);
    // The kernel doubles the value; FORCE must beat the default wmem_max,
    // and the receive buffer is the bounded size asked for (not the default).
    assert!(udp.socket().send_buffer_size().unwrap() >= SOCKET_BUFFER_BYTES);
    let rcv = udp.socket().recv_buffer_size().unwrap();
    let want = super::RECV_BUFFER_BYTES;
    assert!(
        rcv >= want && rcv <= 2 * want,
        "receive buffer {rcv}, asked for {want}"
    );
    let plain = LinuxUdp::bind(0, 0, Family::DualStack).unwrap();
    assert_eq!(plain.socket().mark().unwrap(), 0);
}

/// Equal-size datagrams leave as GSO runs and may arrive GRO-coalesced:
/// every one must come out separate, intact and in order, including a
/// shorter tail and across several runs.
#[test]
fn gso_runs_and_gro_coalescing_keep_every_datagram() {
    let rx = open(Family::DualStack);
    let tx = open(Family::DualStack);
    let dst = SocketAddr::from(([127, 0, 0, 1], rx.port()));
    let mut sent: Vec<Vec<u8>> = (0..120u32)
        .map(|i| {
            let mut d = vec![(i % 251) as u8; 1400];
            d[..4].copy_from_slice(&i.to_be_bytes());
            d
        })
        .collect();
    sent.push(vec![0xee; 333]);
    let refs: Vec<&[u8]> = sent.iter().map(|d| d.as_slice()).collect();
    tx.send(&refs, dst).unwrap();
    // Buffers big enough for a coalesced 64 KB message, as the device uses.
    let mut store = vec![vec![0u8; 65_600]; MAX_BATCH];
    let mut meta = vec![RecvMeta::default(); MAX_BATCH];
    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < sent.len() && Instant::now() < deadline {
        let bufs = &mut store;
        let n = rx.recv(bufs, &mut meta).unwrap();
        for (b, m) in bufs.iter().zip(&meta).take(n) {
            got.push(b[..m.len].to_vec());
        }
    }
    assert_eq!(got.len(), sent.len(), "datagrams lost");
    assert!(got == sent, "datagrams changed or reordered");
}

/// One multi-destination batch: every datagram reaches its own destination,
/// in order, across both address families of a dual-stack socket.
#[test]
fn send_many_reaches_each_destination_in_order() {
    let a = open(Family::DualStack);
    let b = open(Family::DualStack);
    let c = open(Family::DualStack);
    let packets = numbered(150);
    let msgs: Vec<(&[u8], SocketAddr)> = packets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let dst = match i % 3 {
                0 => SocketAddr::new("127.0.0.1".parse().unwrap(), b.port()),
                1 => SocketAddr::new("::1".parse().unwrap(), c.port()),
                _ => SocketAddr::new("127.0.0.1".parse().unwrap(), c.port()),
            };
            (p.as_slice(), dst)
        })
        .collect();
    a.send_many(&msgs).unwrap();
    let (to_b, _) = recv_n(&b, 50);
    let (to_c, _) = recv_n(&c, 100);
    let want_b: Vec<&Vec<u8>> = packets.iter().step_by(3).collect();
    let want_c: Vec<&Vec<u8>> = packets
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(to_b.iter().map(|(d, _)| d).collect::<Vec<_>>(), want_b);
    assert_eq!(to_c.iter().map(|(d, _)| d).collect::<Vec<_>>(), want_c);
}

/// Receives `want` datagrams into device-sized buffers (room for a
/// coalesced 64 KB message), or what came within 3 s.
fn recv_coalesced(udp: &LinuxUdp, slots: usize, want: usize) -> Vec<Vec<u8>> {
    let mut store = vec![vec![0u8; 65_600]; slots];
    let mut meta = vec![RecvMeta::default(); slots];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < want && Instant::now() < deadline {
        let bufs = &mut store;
        let n = udp.recv(bufs, &mut meta).unwrap();
        for (b, m) in bufs.iter().zip(&meta).take(n) {
            got.push(b[..m.len].to_vec());
        }
    }
    got
}

/// Batches at and around the small-array size take either header-array
/// size (send, send_many) and arrive whole and in order, also through a
/// receive that reads one message instead of two. (Fewer than
/// GRO_MIN_SLOTS buffers could not hold a full coalesced message; the
/// device always receives into MAX_BATCH.) With offloads on (GSO runs,
/// GRO splits) and off (a message per datagram both ways).
#[test]
fn batches_around_the_small_array_size_arrive_in_order() {
    for offload in [true, false] {
        let opts = UdpOptions {
            offload,
            ..UdpOptions::default()
        };
        let rx = LinuxUdp::bind_with(0, 0, Family::DualStack, opts).unwrap();
        let tx = LinuxUdp::bind_with(0, 0, Family::DualStack, opts).unwrap();
        assert_eq!(
            rx.offloads().1,
            offload && open(Family::DualStack).offloads().1
        );
        small_array_batches(&rx, &tx, offload);
    }
}

fn small_array_batches(rx: &LinuxUdp, tx: &LinuxUdp, offload: bool) {
    const GRO_MIN_SLOTS: usize = crate::io::udp_gso::MAX_GSO_SEGMENTS + 1;
    let dst = SocketAddr::from(([127, 0, 0, 1], rx.port()));
    for count in [
        1,
        2,
        SMALL_BATCH - 1,
        SMALL_BATCH,
        SMALL_BATCH + 1,
        2 * SMALL_BATCH,
    ] {
        // Equal sizes (one GSO group) and mixed sizes (several).
        let same: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                let mut d = vec![0x5a; 600];
                d[..4].copy_from_slice(&(i as u32).to_be_bytes());
                d
            })
            .collect();
        let mixed = numbered(count);
        for (kind, packets) in [("equal", &same), ("mixed", &mixed)] {
            let refs: Vec<&[u8]> = packets.iter().map(|p| p.as_slice()).collect();
            let msgs: Vec<(&[u8], SocketAddr)> = refs.iter().map(|r| (*r, dst)).collect();
            for (how, slots) in [
                ("send", MAX_BATCH),
                ("send_many", MAX_BATCH),
                ("send", GRO_MIN_SLOTS),
            ] {
                if how == "send" {
                    tx.send(&refs, dst).unwrap();
                } else {
                    tx.send_many(&msgs).unwrap();
                }
                let got = recv_coalesced(rx, slots, count);
                assert!(
                    got == *packets,
                    "offload {offload}: {how} of {count} {kind} datagrams, {slots} receive buffers: got {} back",
                    got.len()
                );
            }
        }
    }
}

/// A GRO receive splits each message into the slots after the previous
/// message's datagrams, last message first: an empty datagram between two
/// coalesced runs must keep its place (reported empty) and leave both runs
/// intact and in order.
#[test]
fn empty_datagram_between_coalesced_runs_keeps_its_place() {
    let rx = open(Family::DualStack);
    let tx = open(Family::DualStack);
    let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dst = SocketAddr::from(([127, 0, 0, 1], rx.port()));
    let run = |tag: u8, count: usize, len: usize| -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| vec![tag.wrapping_add(i as u8); len])
            .collect()
    };
    let (first, second) = (run(0x10, 5, 900), run(0x80, 3, 300));
    let send_run = |r: &[Vec<u8>]| {
        let s: Vec<&[u8]> = r.iter().map(|d| d.as_slice()).collect();
        tx.send(&s, dst).unwrap();
    };
    // Both runs from one socket, the empty datagram from another: the
    // kernel coalesces only datagrams of one flow.
    send_run(&first);
    plain.send_to(&[], dst).unwrap();
    send_run(&second);
    let got = recv_coalesced(&rx, MAX_BATCH, first.len() + second.len() + 1);
    let mut want: Vec<Vec<u8>> = first.clone();
    want.push(Vec::new());
    want.extend(second.iter().cloned());
    // Sent from one thread over loopback, they queue in sending order.
    assert_eq!(got.len(), want.len(), "datagrams lost");
    assert!(
        got == want,
        "datagrams changed, reordered or the empty one moved"
    );
}

/// A receive's control buffer holds everything the kernel puts there for
/// an IPv4 datagram on a dual-stack socket with GRO on (the daemon's usual
/// socket): the segment size of a coalesced run and both kinds of pktinfo,
/// with nothing cut (MSG_CTRUNC).
#[test]
fn control_buffer_holds_gro_and_both_pktinfos() {
    let rx = open(Family::DualStack);
    let tx = open(Family::DualStack);
    let dst = SocketAddr::from(([127, 0, 0, 1], rx.port()));
    let run: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 1000]).collect();
    let refs: Vec<&[u8]> = run.iter().map(|d| d.as_slice()).collect();
    tx.send(&refs, dst).unwrap();
    tx.send(&[b"alone"], dst).unwrap();
    let fd = rx.socket().as_raw_fd();
    let (mut got, mut kinds) = (0, std::collections::BTreeSet::new());
    let mut data = vec![0u8; 65_600];
    let deadline = Instant::now() + Duration::from_secs(3);
    while got < run.len() + 1 && Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd. Waits for the next datagram (or 100 ms).
        unsafe { libc::poll(&mut pfd, 1, 100) };
        let mut control = CmsgBuf([0u8; CMSG_BUF]);
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data; it points at live locals below.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        h.msg_control = control.0.as_mut_ptr().cast();
        h.msg_controllen = CMSG_BUF;
        // SAFETY: `h` describes live buffers for the call.
        let n = unsafe { libc::recvmsg(fd, &mut h, libc::MSG_DONTWAIT) };
        if n < 0 {
            continue;
        }
        assert_eq!(h.msg_flags & libc::MSG_CTRUNC, 0, "control data cut");
        let seg = gro_size(&h);
        got += if seg > 0 {
            (n as usize).div_ceil(seg)
        } else {
            1
        };
        // SAFETY: walks what the kernel wrote, within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h);
            while !c.is_null() {
                kinds.insert(((*c).cmsg_level, (*c).cmsg_type));
                c = libc::CMSG_NXTHDR(&h, c);
            }
        }
        // SAFETY: as above.
        let local = unsafe { pktinfo::parse(&h) };
        assert_eq!(
            local.map(|l| l.ip),
            Some(std::net::IpAddr::from([127, 0, 0, 1]))
        );
    }
    assert_eq!(got, run.len() + 1, "datagrams lost");
    assert!(kinds.contains(&(libc::IPPROTO_IP, libc::IP_PKTINFO)));
    assert!(kinds.contains(&(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)));
}
