use super::*;
use std::net::Ipv4Addr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Receives until `want` datagrams arrived or a deadline passes.
fn recv_all(udp: &dyn Udp, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut store = vec![vec![0u8; 1500]; 16];
    let mut meta = vec![RecvMeta::default(); 16];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while out.len() < want && Instant::now() < deadline {
        let bufs = &mut store;
        let n = udp.recv(bufs, &mut meta).unwrap();
        for (b, m) in bufs.iter().zip(&meta).take(n) {
            out.push((b[..m.len].to_vec(), m.src));
        }
    }
    out
}

#[test]
fn udp_batch_round_trip_reports_sources() {
    let net = MemNetwork::new();
    let a = net.bind(ip("10.0.0.1")).open(51820, 0).unwrap();
    let b = net.bind(ip("10.0.0.2")).open(0, 0).unwrap();
    let packets: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 20 + i as usize]).collect();
    let refs: Vec<&[u8]> = packets.iter().map(|p| p.as_slice()).collect();
    a.send(&refs, SocketAddr::new(ip("10.0.0.2"), b.port()))
        .unwrap();

    // One call returns the whole batch, in order.
    let mut store = vec![vec![0u8; 100]; 16];
    let bufs = &mut store;
    let mut meta = vec![RecvMeta::default(); 16];
    let n = b.recv(bufs, &mut meta).unwrap();
    assert_eq!(n, 10);
    for i in 0..n {
        assert_eq!(&bufs[i][..meta[i].len], packets[i].as_slice());
        assert_eq!(meta[i].src, sa("10.0.0.1:51820"));
    }
    assert_eq!(
        net.stats(),
        MemNetStats {
            sent: 10,
            delivered: 10,
            dropped: 0
        }
    );

    // And back, to the reported source.
    b.send(&[b"pong"], meta[0].src).unwrap();
    let got = recv_all(a.as_ref(), 1);
    assert_eq!(
        got,
        vec![(b"pong".to_vec(), SocketAddr::new(ip("10.0.0.2"), b.port()))]
    );
}

#[test]
fn recv_is_limited_by_buffers_and_truncates() {
    let net = MemNetwork::new();
    let a = net.bind(ip("10.0.0.1")).open(0, 0).unwrap();
    let b = net.bind(ip("10.0.0.2")).open(0, 0).unwrap();
    let dst = SocketAddr::new(ip("10.0.0.2"), b.port());
    a.send(&[b"one", b"two", b"three-long", b"four", b"five"], dst)
        .unwrap();
    let mut store = vec![vec![0u8; 5]; 3];
    let bufs = &mut store;
    let mut meta = vec![RecvMeta::default(); 3];
    assert_eq!(b.recv(bufs, &mut meta).unwrap(), 3);
    assert_eq!(&bufs[2][..meta[2].len], b"three");
    assert_eq!(b.recv(bufs, &mut meta).unwrap(), 2);
    assert_eq!(&bufs[1][..meta[1].len], b"five");
}

#[test]
fn idle_recv_times_out_with_zero() {
    let net = MemNetwork::new();
    let a = net.bind(ip("10.0.0.1")).open(0, 0).unwrap();
    let bufs = &mut [vec![0u8; 64]];
    let mut meta = [RecvMeta::default()];
    let t = Instant::now();
    assert_eq!(a.recv(bufs, &mut meta).unwrap(), 0);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(40) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
}

#[test]
fn ports_are_unique_and_freed_on_close() {
    let net = MemNetwork::new();
    let host = net.bind(ip("10.0.0.1"));
    let a = host.open(0, 0).unwrap();
    let b = host.open(0, 0).unwrap();
    assert_ne!(a.port(), 0);
    assert_ne!(a.port(), b.port());
    let err = host.open(a.port(), 0).err().expect("port in use");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    // The same port on another host is fine.
    net.bind(ip("10.0.0.2")).open(a.port(), 0).unwrap();
    a.close();
    let again = host.open(a.port(), 0).unwrap();
    assert_eq!(again.port(), a.port());
    // Dropping without close frees the port as well.
    let p = b.port();
    drop(b);
    host.open(p, 0).unwrap();
}

#[test]
fn close_makes_io_fail_and_wakes_reader() {
    let net = MemNetwork::new();
    let a = net.bind(ip("10.0.0.1")).open(0, 0).unwrap();
    let reader = {
        let a = a.clone();
        std::thread::spawn(move || {
            let bufs = &mut [vec![0u8; 64]];
            let mut meta = [RecvMeta::default()];
            loop {
                if let Err(e) = a.recv(bufs, &mut meta) {
                    return e.kind();
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    a.close();
    assert_eq!(reader.join().unwrap(), io::ErrorKind::NotConnected);
    assert!(a.send(&[b"x"], sa("10.0.0.2:1")).is_err());
}

#[test]
fn undeliverable_and_filtered_datagrams_are_dropped() {
    let net = MemNetwork::new();
    let a = net.bind(ip("10.0.0.1")).open(0, 0).unwrap();
    let b = net.bind(ip("10.0.0.2")).open(7000, 0).unwrap();
    a.send(&[b"nobody"], sa("10.0.0.3:7000")).unwrap();
    a.send(&[b"closed-port"], sa("10.0.0.2:7001")).unwrap();
    assert_eq!(
        net.stats(),
        MemNetStats {
            sent: 2,
            delivered: 0,
            dropped: 2
        }
    );

    net.set_drop_all(true);
    a.send(&[b"partitioned"], sa("10.0.0.2:7000")).unwrap();
    net.set_drop_all(false);
    net.set_filter(|_, _, data| data != b"filtered");
    a.send(&[b"filtered", b"kept"], sa("10.0.0.2:7000"))
        .unwrap();
    net.clear_filter();
    a.send(&[b"kept-too"], sa("10.0.0.2:7000")).unwrap();

    let got: Vec<Vec<u8>> = recv_all(b.as_ref(), 2)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(got, vec![b"kept".to_vec(), b"kept-too".to_vec()]);
    assert_eq!(
        net.stats(),
        MemNetStats {
            sent: 6,
            delivered: 2,
            dropped: 4
        }
    );
}

#[test]
fn mapped_addresses_reach_ipv4_hosts() {
    let net = MemNetwork::new();
    let a = net.bind(ip("::ffff:10.0.0.1")).open(0, 0).unwrap();
    let b = net.bind(ip("10.0.0.2")).open(9000, 0).unwrap();
    let v6 = net.bind(ip("fd00::2")).open(9000, 0).unwrap();
    a.send(&[b"hi"], sa("[::ffff:10.0.0.2]:9000")).unwrap();
    let got = recv_all(b.as_ref(), 1);
    assert_eq!(got[0].1.ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    v6.send(&[b"six"], SocketAddr::new(ip("10.0.0.1"), a.port()))
        .unwrap();
    assert_eq!(recv_all(a.as_ref(), 1)[0].1, sa("[fd00::2]:9000"));
}

#[test]
fn tun_batches_in_both_directions() {
    let (tun, handle) = MemTun::new("mem0", 1420);
    assert_eq!(tun.name(), "mem0");
    assert_eq!(tun.mtu().unwrap(), 1420);
    for i in 0..5u8 {
        assert!(handle.inject(&[0x45, i, i, i]));
    }
    let offset = 16;
    let mut bufs = vec![vec![0u8; 64]; 8];
    let mut sizes = [0usize; 8];
    assert_eq!(tun.read(&mut bufs, &mut sizes, offset).unwrap(), 5);
    for i in 0..5 {
        assert_eq!(
            &bufs[i][offset..offset + sizes[i]],
            &[0x45, i as u8, i as u8, i as u8]
        );
        assert!(
            bufs[i][..offset].iter().all(|&b| b == 0),
            "nothing written before offset"
        );
    }

    let mut out1 = vec![0xffu8; offset];
    out1.extend_from_slice(b"first");
    let mut out2 = vec![0xffu8; offset];
    out2.extend_from_slice(b"second");
    tun.write(&mut [&mut out1, &mut out2], offset).unwrap();
    assert_eq!(
        handle.recv_timeout(Duration::from_secs(1)).unwrap(),
        b"first"
    );
    assert_eq!(
        handle.recv_timeout(Duration::from_secs(1)).unwrap(),
        b"second"
    );
    assert_eq!(handle.recv_timeout(Duration::from_millis(10)), None);

    handle.set_mtu(1280);
    assert_eq!(tun.mtu().unwrap(), 1280);
}

fn readable(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

#[test]
fn tun_idle_read_returns_at_once_and_rejects_bad_offset() {
    let (tun, _handle) = MemTun::new("mem0", 1420);
    let mut store = [vec![0u8; 32]];
    let mut sizes = [0usize; 1];
    assert!(!readable(tun.poll_fd()), "nothing queued");
    assert_eq!(tun.read(&mut store, &mut sizes, 0).unwrap(), 0);
    let err = tun.read(&mut store, &mut sizes, 33).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        tun.write(&mut [&mut vec![1u8, 2]], 3).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

/// The poll descriptor is readable exactly while packets are queued, and
/// once closed: what the device's epoll loop needs.
#[test]
fn tun_and_udp_poll_descriptors_follow_their_queues() {
    let (tun, handle) = MemTun::new("mem0", 1420);
    let mut store = vec![vec![0u8; 32]; 2];
    let mut sizes = [0usize; 2];
    assert!(handle.inject(&[0x45, 1]));
    assert!(handle.inject(&[0x45, 2]));
    assert!(readable(tun.poll_fd()));
    assert_eq!(tun.read(&mut store[..1], &mut sizes[..1], 0).unwrap(), 1);
    assert!(readable(tun.poll_fd()), "one packet is still queued");
    assert_eq!(tun.read(&mut store, &mut sizes, 0).unwrap(), 1);
    assert!(!readable(tun.poll_fd()), "drained");
    tun.close();
    assert!(readable(tun.poll_fd()), "closed: a waiter must see it");

    let net = MemNetwork::new();
    let a = net.bind(ip("10.0.0.1")).open(0, 0).unwrap();
    let b = net.bind(ip("10.0.0.2")).open(0, 0).unwrap();
    let fd = b.poll_fd().unwrap();
    assert!(!readable(fd));
    let mut bufs = vec![vec![0u8; 64]; 4];
    let mut meta = vec![RecvMeta::default(); 4];
    assert_eq!(b.recv_ready(&mut bufs, &mut meta).unwrap(), 0);
    a.send(&[b"one", b"two"], SocketAddr::new(ip("10.0.0.2"), b.port()))
        .unwrap();
    assert!(readable(fd));
    assert_eq!(b.recv_ready(&mut bufs, &mut meta).unwrap(), 2);
    assert_eq!(&bufs[1][..meta[1].len], b"two");
    assert!(!readable(fd));
}

#[test]
fn tun_close_and_delete() {
    let (tun, handle) = MemTun::new("mem0", 1420);
    assert!(tun.exists());
    tun.close();
    let mut store = [vec![0u8; 32]];
    let err = tun.read(&mut store, &mut [0usize; 1], 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    assert!(handle.is_closed());
    assert!(!handle.inject(b"late"));
    assert!(tun.write(&mut [&mut b"x".to_vec()], 0).is_err());

    let (tun, handle) = MemTun::new("mem1", 1420);
    handle.delete();
    assert!(!tun.exists());
    let mut store = [vec![0u8; 32]];
    let err = tun.read(&mut store, &mut [0usize; 1], 0).unwrap_err();
    assert!(err.to_string().contains("deleted"), "{err}");
}
