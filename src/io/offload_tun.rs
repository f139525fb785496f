//! A TUN with kernel offloads (IFF_VNET_HDR + TUNSETOFFLOAD), through the
//! tun-rs crate, which carries wireguard-go's segmentation and coalescing.
//!
//! Reads return 64 KB TCP (and, on Linux 6.2+, UDP) super-packets split in
//! userspace into MTU-sized packets (TSO); writes coalesce consecutive
//! segments of one flow into one super-packet with a virtio-net header (GRO).
//! One read or write syscall then moves dozens of packets: the single
//! largest saving on the data path.
use super::linux_tun::{validate_name, READ_TIMEOUT};
use super::Tun;
use parking_lot::Mutex;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use tun_rs::{DeviceBuilder, GROTable, SyncDevice, VIRTIO_NET_HDR_LEN};

/// Segments one super-packet can become (64 KB over the smallest MSS we
/// expect); a read only starts when this many output buffers are free.
const MAX_SEGMENTS: usize = 64;

pub struct OffloadTun {
    dev: SyncDevice,
    name: String,
    index: u32,
    closed: AtomicBool,
    /// Scratch for the raw super-packet (one reader thread: uncontended).
    scratch: Mutex<Vec<u8>>,
    gro: Mutex<GROTable>,
}

/// Which offloads the kernel accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffloadFeatures {
    pub tso: bool,
    pub uso: bool,
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
        let index = if_index(&real);
        Ok(OffloadTun {
            dev,
            name: real,
            index,
            closed: AtomicBool::new(false),
            scratch: Mutex::new(vec![0u8; VIRTIO_NET_HDR_LEN + 65_535]),
            gro: Mutex::new(GROTable::new()),
        })
    }

    pub fn features(&self) -> OffloadFeatures {
        OffloadFeatures {
            tso: self.dev.tcp_gso(),
            uso: self.dev.udp_gso(),
        }
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

fn if_index(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: `c` is a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

impl Tun for OffloadTun {
    fn read(&self, bufs: &mut [Vec<u8>], sizes: &mut [usize], offset: usize) -> io::Result<usize> {
        super::read_when_ready(self, bufs, sizes, offset, READ_TIMEOUT)
    }

    fn wait_readable(&self, timeout: std::time::Duration) -> io::Result<bool> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let mut pfd = libc::pollfd {
            fd: self.dev.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if r <= 0 {
            return Ok(false);
        }
        if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
            && pfd.revents & libc::POLLIN == 0
        {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("TUN {} is gone", self.name),
            ));
        }
        Ok(true)
    }

    fn slots_per_read(&self) -> usize {
        MAX_SEGMENTS
    }

    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.dev.as_raw_fd())
    }

    fn read_ready(
        &self,
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
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
                Ok(k) => n += k,
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
        let mut gro = self.gro.lock();
        match self.dev.send_multiple(&mut gro, bufs, offset) {
            Ok(_) => Ok(()),
            // The kernel rejects a malformed packet: drop it, keep going.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(self.gone(e)),
        }
    }

    fn batch_size(&self) -> usize {
        super::MAX_BATCH
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn mtu(&self) -> io::Result<usize> {
        super::linux_tun::get_mtu(&self.name)
    }

    fn exists(&self) -> bool {
        if self.closed.load(Ordering::Acquire) || self.index == 0 {
            return false;
        }
        match if_index(&self.name) {
            // The lookup itself can fail (it needs a socket: out of file
            // descriptors); only ENODEV means the interface is gone.
            0 => io::Error::last_os_error().raw_os_error() != Some(libc::ENODEV),
            i => i == self.index,
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn can_read_ready(&self) -> bool {
        true
    }

    fn offloads(&self) -> Vec<(&'static str, bool)> {
        let f = self.features();
        vec![("tun_tso", f.tso), ("tun_uso", f.uso)]
    }
}
