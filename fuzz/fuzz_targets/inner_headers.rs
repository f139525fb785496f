//! Inner IP headers of decrypted packets (length, source, destination) and
//! the pure UDP GSO/GRO segment arithmetic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use phantommesh::device::receive::{inner_packet_len, source};
use phantommesh::device::send::destination;
use phantommesh::io::udp_gso::{gro_segments, gso_groups, MAX_GSO_BYTES, MAX_GSO_SEGMENTS};
use std::net::IpAddr;

fn headers(pkt: &[u8]) {
    let (len, ok) = inner_packet_len(pkt);
    let src = source(pkt);
    let dst = destination(pkt);
    if ok {
        assert!(len <= pkt.len());
        // A well-formed packet always has both addresses, of its version.
        let (s, d) = (src.expect("source"), dst.expect("destination"));
        match pkt[0] >> 4 {
            4 => {
                assert!(len >= 20 && matches!((s, d), (IpAddr::V4(_), IpAddr::V4(_))));
                assert_eq!(usize::from(u16::from_be_bytes([pkt[2], pkt[3]])), len);
            }
            6 => assert!(len >= 40 && matches!((s, d), (IpAddr::V6(_), IpAddr::V6(_)))),
            v => panic!("version {v} accepted"),
        }
        // Trimming to the header's length keeps it well formed.
        assert_eq!(inner_packet_len(&pkt[..len]), (len, true));
    } else {
        assert_eq!(len, 0);
    }
    assert_eq!(src.is_some(), dst.is_some());
}

fn gso(data: &[u8]) {
    let lens: Vec<usize> = data
        .chunks(2)
        .map(|c| usize::from(c[0]) * 16 + usize::from(*c.get(1).unwrap_or(&0) % 16))
        .collect();
    let mut out = vec![(0, 0); 1 + data.first().map_or(0, |b| usize::from(*b) % 64)];
    let n = gso_groups(&lens, &mut out);
    let mut at = 0;
    for &(s, e) in &out[..n] {
        assert_eq!(s, at, "groups are contiguous");
        assert!(e > s && e - s <= MAX_GSO_SEGMENTS);
        let seg = lens[s];
        let total: usize = lens[s..e].iter().sum();
        assert!(e - s == 1 || total <= MAX_GSO_BYTES);
        // Equal sizes, except a shorter last one.
        for &l in &lens[s..e.saturating_sub(1)] {
            assert_eq!(l, seg);
        }
        assert!(lens[e - 1] <= seg);
        at = e;
    }
    if n < out.len() {
        assert_eq!(at, lens.len(), "every datagram is grouped");
    }
    // GRO: segments tile the datagram exactly.
    if data.len() >= 4 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let seg = usize::from(u16::from_le_bytes([data[2], data[3]]));
        let mut next = 0;
        for (off, l) in gro_segments(len, seg) {
            assert_eq!(off, next);
            assert!(l > 0 && l <= seg.max(len));
            next = off + l;
        }
        assert_eq!(next, len);
    }
}

fuzz_target!(|data: &[u8]| {
    headers(data);
    gso(data);
});
