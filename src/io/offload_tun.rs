//! A TUN with kernel offloads (IFF_VNET_HDR + TUNSETOFFLOAD), through the
//! tun-rs crate, which carries wireguard-go's segmentation and coalescing.
//!
//! Reads return 64 KB TCP (and, on Linux 6.2+, UDP) super-packets split in
//! userspace into MTU-sized packets (TSO); writes coalesce consecutive
//! segments of one flow into one super-packet with a virtio-net header (GRO).
//! One read or write syscall then moves dozens of packets: the single
//! largest saving on the data path.
use super::linux_tun::validate_name;
use super::Tun;
use parking_lot::Mutex;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use tun_rs::{DeviceBuilder, GROTable, SyncDevice, VirtioNetHdr, VIRTIO_NET_HDR_LEN};

/// Segments one super-packet can become (64 KB over the smallest MSS we
/// expect); a read only starts when this many output buffers are free.
const MAX_SEGMENTS: usize = 64;

pub struct OffloadTun {
    dev: SyncDevice,
    name: String,
    link: super::tun_link::TunLink,
    closed: AtomicBool,
    /// Scratch for the raw super-packet (one reader thread: uncontended).
    scratch: Mutex<Vec<u8>>,
    gro: Mutex<GROTable>,
}

impl OffloadTun {
    /// Creates `name` with offloads on. Fails when the kernel refuses them;
    /// the caller then falls back to a plain [`super::linux_tun::LinuxTun`].
    pub fn create(name: &str) -> io::Result<OffloadTun> {
        validate_name(name)?;
        let dev = DeviceBuilder::new()
            .name(name)
            .offload(true)
            .packet_information(false)
            .build_sync()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create TUN {name} with offloads: {e}"),
                )
            })?;
        if !dev.tcp_gso() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel refused TUN TCP offloads",
            ));
        }
        dev.set_nonblocking(true)?;
        let real = dev.name().unwrap_or_else(|_| name.to_string());
        Ok(OffloadTun {
            dev,
            name: real,
            link: super::tun_link::TunLink::new(),
            closed: AtomicBool::new(false),
            scratch: Mutex::new(vec![0u8; VIRTIO_NET_HDR_LEN + 65_535]),
            gro: Mutex::new(GROTable::new()),
        })
    }

    /// Whether the interface still exists (false once it was deleted).
    /// Asks the descriptor, not the name: the interface may have been
    /// moved to another network namespace (see [`super::tun_link`]).
    pub fn exists(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
            && super::tun_link::TunLink::exists(self.dev.as_raw_fd())
    }

    fn closed_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotConnected,
            format!("TUN {} is closed", self.name),
        )
    }

    fn gone(&self, e: io::Error) -> io::Error {
        match e.raw_os_error() {
            Some(libc::EBADFD | libc::EIO | libc::ENODEV | libc::ENXIO) => io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("TUN {} is gone ({e})", self.name),
            ),
            _ => e,
        }
    }
}

/// A UDP checksum the kernel left to us (CHECKSUM_PARTIAL, not segmented)
/// that computed to 0 goes out as 0xFFFF, as RFC 768 and the kernel do: in
/// the field, 0 means "no checksum" over IPv4 and is invalid over IPv6 (RFC
/// 8200), so the receiving kernel drops such an IPv6 datagram as a checksum
/// error. tun-rs's segmentation maps it; its unsegmented path
/// (`gso_none_checksum`, as wireguard-go's `gsoNoneChecksum`) writes the 0,
/// which cost one datagram in about 65,536.
///
/// `hdr` is the virtio-net header the packet was read with; only a packet
/// whose checksum was finished here is touched, so a sender's deliberate 0
/// (IPv4, or IPv6 with UDP_NO_CHECK6_TX) passes unchanged.
pub(crate) fn finish_zero_udp_checksum(hdr: &[u8], pkt: &mut [u8]) {
    let Ok(h) = VirtioNetHdr::decode(hdr) else {
        return;
    };
    if h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 || h.gso_type != VIRTIO_NET_HDR_GSO_NONE {
        return;
    }
    // UDP's and UDP-Lite's checksum lies 6 bytes into their header (TCP's
    // at 16); the IP header names the protocol. IPv6 extension headers put
    // csum_start past 40 and are left alone.
    let proto = match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() > 9 => pkt[9],
        Some(6) if pkt.len() > 6 && h.csum_start == 40 => pkt[6],
        _ => return,
    };
    if h.csum_offset != 6 || !matches!(proto, IPPROTO_UDP | IPPROTO_UDPLITE) {
        return;
    }
    let at = usize::from(h.csum_start) + 6;
    if let Some(field) = pkt.get_mut(at..at + 2) {
        if field == [0, 0] {
            field.copy_from_slice(&[0xff, 0xff]);
        }
    }
}

const IPPROTO_UDP: u8 = 17;
const IPPROTO_UDPLITE: u8 = 136;
/// virtio_net.h: the checksum from csum_start on is ours to finish.
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// virtio_net.h: not a GSO frame.
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;

impl Tun for OffloadTun {
    fn features(&self) -> super::TunFeatures {
        super::TunFeatures {
            slots_per_read: MAX_SEGMENTS,
            tso: self.dev.tcp_gso(),
            uso: self.dev.udp_gso(),
        }
    }

    fn poll_fd(&self) -> std::os::fd::RawFd {
        self.dev.as_raw_fd()
    }

    fn read(&self, bufs: &mut [Vec<u8>], sizes: &mut [usize], offset: usize) -> io::Result<usize> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let mut scratch = self.scratch.lock();
        let mut n = 0;
        // Drain super-packets while a whole one still fits in the batch.
        while bufs.len() - n >= MAX_SEGMENTS.min(bufs.len()) && n < bufs.len() {
            match self
                .dev
                .recv_multiple(&mut scratch[..], &mut bufs[n..], &mut sizes[n..], offset)
            {
                Ok(k) => {
                    if k == 1 {
                        let hdr = &scratch[..VIRTIO_NET_HDR_LEN];
                        let pkt = &mut bufs[n][offset..offset + sizes[n]];
                        finish_zero_udp_checksum(hdr, pkt);
                    }
                    n += k
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if n > 0 => {
                    tracing::debug!(error = %e, "TUN read ended a batch early");
                    break;
                }
                Err(e) => {
                    if self.closed.load(Ordering::Acquire) {
                        return Err(self.closed_error());
                    }
                    // A malformed super-packet is dropped, not fatal; a gone
                    // device is reported.
                    let e = self.gone(e);
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "dropped an unsplittable TUN packet");
                    return Ok(0);
                }
            }
        }
        Ok(n)
    }

    fn write(&self, bufs: &mut [&mut Vec<u8>], offset: usize) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        if offset < VIRTIO_NET_HDR_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no room for the virtio-net header",
            ));
        }
        let res = if let [one] = bufs {
            // A lone packet has nothing to coalesce with: write it behind
            // an all-zero header (no GSO, checksum complete), as the GRO
            // pass would, without the pass. On an idle tunnel every packet
            // is lone, and less code and memory touched is less latency.
            one[offset - VIRTIO_NET_HDR_LEN..offset].fill(0);
            self.dev.send(&one[offset - VIRTIO_NET_HDR_LEN..])
        } else {
            self.dev.send_multiple(&mut self.gro.lock(), bufs, offset)
        };
        match res {
            Ok(_) => Ok(()),
            // The kernel rejects a malformed packet: drop it, keep going.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(self.gone(e)),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn mtu(&self) -> io::Result<usize> {
        self.link
            .mtu(self.dev.as_raw_fd())
            .or_else(|_| super::linux_tun::get_mtu(&self.name))
    }

    fn link_state(&self) -> super::LinkState {
        if self.closed.load(Ordering::Acquire) {
            return super::LinkState::Gone;
        }
        self.link.state(self.dev.as_raw_fd())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(flags: u8, gso_type: u8, csum_start: u16, csum_offset: u16) -> Vec<u8> {
        let h = VirtioNetHdr {
            flags,
            gso_type,
            csum_start,
            csum_offset,
            ..Default::default()
        };
        let mut b = vec![0u8; VIRTIO_NET_HDR_LEN];
        h.encode(&mut b).unwrap();
        b
    }

    /// An IPv4 or IPv6 packet of protocol `proto` with a zeroed 8-byte
    /// transport header and 4 payload bytes.
    fn packet(v6: bool, proto: u8) -> Vec<u8> {
        let mut p = vec![0u8; if v6 { 40 } else { 20 } + 12];
        if v6 {
            p[0] = 0x60;
            p[6] = proto;
        } else {
            p[0] = 0x45;
            p[9] = proto;
        }
        p
    }

    fn udp_check(p: &[u8], iph: usize) -> [u8; 2] {
        [p[iph + 6], p[iph + 7]]
    }

    #[test]
    fn finished_udp_checksum_of_zero_becomes_ffff() {
        for (v6, iph) in [(false, 20), (true, 40)] {
            for proto in [IPPROTO_UDP, IPPROTO_UDPLITE] {
                let mut p = packet(v6, proto);
                finish_zero_udp_checksum(&hdr(1, 0, iph as u16, 6), &mut p);
                assert_eq!(udp_check(&p, iph), [0xff, 0xff], "v6={v6} proto={proto}");
            }
        }
    }

    #[test]
    fn other_checksums_are_left_alone() {
        // Not ours to finish: a sender's deliberate 0 stays 0.
        let mut p = packet(true, IPPROTO_UDP);
        finish_zero_udp_checksum(&hdr(0, 0, 40, 6), &mut p);
        assert_eq!(udp_check(&p, 40), [0, 0]);
        // A non-zero checksum is kept.
        let mut p = packet(true, IPPROTO_UDP);
        p[46] = 0x12;
        finish_zero_udp_checksum(&hdr(1, 0, 40, 6), &mut p);
        assert_eq!(udp_check(&p, 40), [0x12, 0]);
        // TCP: 0 is a valid checksum (and its field is at 16, not 6).
        let mut p = packet(false, 6);
        p.resize(60, 0);
        finish_zero_udp_checksum(&hdr(1, 0, 20, 16), &mut p);
        assert!(p[20..].iter().all(|&b| b == 0));
        // A segmented (GSO) packet: tun-rs already maps each segment's 0.
        let mut p = packet(false, IPPROTO_UDP);
        finish_zero_udp_checksum(&hdr(1, 5, 20, 6), &mut p);
        assert_eq!(udp_check(&p, 20), [0, 0]);
        // IPv6 with extension headers (csum_start past 40) is not parsed.
        let mut p = packet(true, 0);
        p.resize(60, 0);
        finish_zero_udp_checksum(&hdr(1, 0, 48, 6), &mut p);
        assert!(p[41..].iter().all(|&b| b == 0));
    }

    #[test]
    fn short_or_odd_input_does_not_panic() {
        let h = hdr(1, 0, 40, 6);
        for len in 0..48 {
            let mut p = packet(true, IPPROTO_UDP);
            p.truncate(len);
            finish_zero_udp_checksum(&h, &mut p);
        }
        finish_zero_udp_checksum(&[1, 2], &mut packet(false, IPPROTO_UDP));
        let mut p = packet(false, IPPROTO_UDP);
        finish_zero_udp_checksum(&hdr(1, 0, 65_000, 6), &mut p);
        assert_eq!(udp_check(&p, 20), [0, 0]);
    }
}
