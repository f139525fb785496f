//! tun-rs's offload code on peer-controlled packets, through its public
//! (doc-hidden) API, no TUN needed:
//! - GRO coalescing (`GROTable::apply_gro`), which the offloading TUN runs
//!   on every batch of decrypted packets it writes;
//! - the daemon's own zero-UDP-checksum fix-up of a packet read with a
//!   virtio-net header.
//!
//! Not here: TSO/USO splitting. tun-rs validates a read's virtio-net header
//! in a private method before its public `gso_split`, so `gso_split` alone
//! would be fed headers the device never passes it; and its input comes
//! from the local kernel, not from a peer.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use phantommesh::device::receive::inner_packet_len;
use phantommesh::fuzz_api::finish_zero_udp_checksum;
use tun_rs::{GROTable, VIRTIO_NET_HDR_LEN};

#[derive(Arbitrary, Debug)]
struct Input {
    /// GRO: a batch of packets as the TUN writer gets them.
    batch: Vec<Vec<u8>>,
    can_udp_gro: bool,
    /// A virtio-net header and the packet read with it.
    hdr: [u8; VIRTIO_NET_HDR_LEN],
    packet: Vec<u8>,
}

/// The daemon's headroom in front of each packet (io::WRITE_HEADROOM).
const OFFSET: usize = phantommesh::io::WRITE_HEADROOM;

fuzz_target!(|inp: Input| {
    let mut bufs: Vec<Vec<u8>> = inp
        .batch
        .iter()
        .take(64)
        // What the receive path writes: well-formed inner packets, trimmed
        // to their header's length (see device::receive).
        .filter_map(|p| match inner_packet_len(p) {
            (len, true) => Some(&p[..len]),
            _ => None,
        })
        .map(|p| {
            let mut b = vec![0u8; OFFSET];
            b.extend_from_slice(p);
            b
        })
        .collect();
    let mut gro = GROTable::new();
    let _ = gro.apply_gro(&mut bufs, OFFSET, inp.can_udp_gro);

    let mut raw = inp.packet.clone();
    finish_zero_udp_checksum(&inp.hdr, &mut raw);
    assert_eq!(raw.len(), inp.packet.len());
    // Only a zero checksum field may change, and only to 0xFFFF.
    for (i, (a, b)) in raw.iter().zip(&inp.packet).enumerate() {
        if a != b {
            assert!(*a == 0xff && *b == 0, "byte {i} changed {b:#x} -> {a:#x}");
        }
    }
});
