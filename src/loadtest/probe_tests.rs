use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What the target kernel does to an ICMP echo request.
fn icmp_reply(req: &[u8]) -> Vec<u8> {
    let mut r = req.to_vec();
    r[12..16].copy_from_slice(&req[16..20]);
    r[16..20].copy_from_slice(&req[12..16]);
    r[20] = 0;
    r
}

/// What a UDP echo service does: swap addresses and ports.
fn udp_reply(req: &[u8]) -> Vec<u8> {
    let me = IpAddr::from(<[u8; 4]>::try_from(&req[12..16]).unwrap());
    let svc = IpAddr::from(<[u8; 4]>::try_from(&req[16..20]).unwrap());
    let sport = u16::from_be_bytes([req[20], req[21]]);
    let dport = u16::from_be_bytes([req[22], req[23]]);
    udp_packet(svc, dport, me, sport, &req[28..]).unwrap()
}

#[test]
fn icmp_probes_round_trip() {
    let (me, tgt) = (ip("10.250.0.2"), ip("10.250.0.1"));
    let p = build(ProbeKind::Icmp, me, tgt, 42, 7, 56).unwrap();
    assert_eq!(p.len(), 20 + 8 + 56);
    assert_eq!(checksum(&[&p[20..]]), 0);
    assert_eq!(
        parse_reply(ProbeKind::Icmp, &icmp_reply(&p), me),
        Some((42, 7))
    );
    assert_eq!(
        parse_reply(ProbeKind::Icmp, &icmp_reply(&p), ip("10.250.0.3")),
        None,
        "not ours"
    );
    assert_eq!(
        parse_reply(ProbeKind::Icmp, &p, me),
        None,
        "a request is no reply"
    );
    // Tiny sizes are raised to the 8 bytes the id and sequence need.
    assert_eq!(build(ProbeKind::Icmp, me, tgt, 1, 1, 0).unwrap().len(), 36);
}

#[test]
fn udp_probes_round_trip_with_valid_checksums() {
    let (me, svc) = (ip("10.250.0.9"), "10.250.0.1:7".parse().unwrap());
    let kind = ProbeKind::UdpEcho(svc);
    let p = build(kind, me, svc.ip(), 3, 65535, 32).unwrap();
    assert_eq!(p.len(), 20 + 8 + 32);
    assert_eq!(checksum(&[&p[..20]]), 0, "IPv4 header");
    let mut ph = Vec::new();
    ph.extend_from_slice(&p[12..20]);
    ph.extend_from_slice(&[0, 17, 0, 40]);
    assert_eq!(
        checksum(&[&ph, &p[20..]]),
        0,
        "UDP checksum with pseudo header"
    );
    let r = udp_reply(&p);
    assert_eq!(parse_reply(kind, &r, me), Some((3, 65535)));
    // From another port, or without our marker, it is not a reply.
    let other = ProbeKind::UdpEcho("10.250.0.1:8".parse().unwrap());
    assert_eq!(parse_reply(other, &r, me), None);
    let stray = udp_packet(svc.ip(), 7, me, UDP_SOURCE_PORT, b"hello world!").unwrap();
    assert_eq!(parse_reply(kind, &stray, me), None);
    // IPv6: checksum mandatory and valid.
    let (me6, svc6) = (ip("fd00::9"), "[fd00::1]:7".parse::<SocketAddr>().unwrap());
    let p6 = build(ProbeKind::UdpEcho(svc6), me6, svc6.ip(), 1, 2, 8).unwrap();
    let mut ph6 = Vec::new();
    ph6.extend_from_slice(&p6[8..40]);
    ph6.extend_from_slice(&(p6.len() as u32 - 40).to_be_bytes());
    ph6.extend_from_slice(&[0, 0, 0, 17]);
    assert_eq!(checksum(&[&ph6, &p6[40..]]), 0);
    let (src, sport, dport, payload) = parse_udp(&p6, svc6.ip()).unwrap();
    assert_eq!(
        (src, sport, dport, payload.len()),
        (me6, UDP_SOURCE_PORT, 7, 8)
    );
    assert!(parse_udp(&p6[..44], svc6.ip()).is_none(), "truncated");
}

#[test]
fn tracker_matches_replies_and_expires_in_order() {
    let mut t = Tracker::new(10);
    assert_eq!(t.capacity(), 16);
    let (s0, e0) = t.send(1_000);
    let (s1, _) = t.send(2_000);
    let (s2, _) = t.send(3_000);
    assert_eq!((s0, s1, s2, e0), (0, 1, 2, false));
    assert_eq!(t.reply(1, 2_500), Matched::Rtt(500));
    assert_eq!(t.reply(1, 2_600), Matched::Unmatched, "duplicate");
    assert_eq!(t.pending(), 2);
    // Probes sent before 2_500 are given up: only seq 0 (seq 1 answered).
    assert_eq!(t.expire(2_500), 1);
    assert_eq!(t.reply(0, 9_000), Matched::Unmatched, "late reply");
    assert_eq!(t.expire(2_500), 0, "nothing counted twice");
    assert_eq!(t.expire(10_000), 1);
    assert_eq!(t.pending(), 0);
}

#[test]
fn tracker_survives_sequence_wrap_and_a_full_ring() {
    let mut t = Tracker::new(4);
    let mut evicted = 0;
    for i in 0..70_000u64 {
        let (seq, ev) = t.send(i);
        evicted += u64::from(ev);
        if i % 3 != 0 {
            assert_eq!(t.reply(seq as u16, i + 5), Matched::Rtt(5), "seq {seq}");
        }
    }
    // Every third probe stayed pending; a 4-slot ring gives them up when
    // the slot is reused, except the ones still in the ring at the end.
    let pending = t.pending();
    assert_eq!(evicted + pending, 70_000u64.div_ceil(3));
    assert_eq!(t.expire(u64::MAX), pending);
}
