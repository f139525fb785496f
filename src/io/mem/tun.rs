//! The in-memory TUN and the handle that plays its kernel side.
use super::*;
use crate::io::{LinkState, TunFeatures, MAX_BATCH};

struct TunShared {
    name: String,
    mtu: AtomicUsize,
    /// Packets "from the kernel", read by the device.
    to_device: Queue<Vec<u8>>,
    /// Packets the device wrote, for the handle.
    from_device: Queue<Vec<u8>>,
    closed: AtomicBool,
    deleted: AtomicBool,
    /// Simulated `ip link set down`.
    down: AtomicBool,
    write_drops: AtomicU64,
}

/// An in-memory TUN device; its kernel side is a [`MemTunHandle`].
pub struct MemTun {
    shared: Arc<TunShared>,
}

/// The test's side of a [`MemTun`]: plays the kernel's network stack.
pub struct MemTunHandle {
    shared: Arc<TunShared>,
}

impl MemTun {
    pub fn new(name: &str, mtu: usize) -> (Arc<MemTun>, MemTunHandle) {
        let shared = Arc::new(TunShared {
            name: name.to_string(),
            mtu: AtomicUsize::new(mtu),
            to_device: Queue::new(),
            from_device: Queue::new(),
            closed: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            down: AtomicBool::new(false),
            write_drops: AtomicU64::new(0),
        });
        (
            Arc::new(MemTun {
                shared: shared.clone(),
            }),
            MemTunHandle { shared },
        )
    }

    fn check_open(&self) -> io::Result<()> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(closed_error("TUN device"));
        }
        if self.shared.deleted.load(Ordering::SeqCst) {
            return Err(io::Error::other(format!(
                "TUN {} was deleted",
                self.shared.name
            )));
        }
        Ok(())
    }
}

fn offset_error(offset: usize, len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("offset {offset} beyond buffer of {len} bytes"),
    )
}

impl MemTun {
    /// Whether the interface still exists (false once it was deleted).
    pub fn exists(&self) -> bool {
        !self.shared.deleted.load(Ordering::SeqCst)
    }
}

impl Tun for MemTun {
    /// Reads what is queued now; an error once closed or deleted.
    fn read(&self, bufs: &mut [Vec<u8>], sizes: &mut [usize], offset: usize) -> io::Result<usize> {
        self.check_open()?;
        if let Some(b) = bufs.iter().find(|b| b.len() < offset) {
            return Err(offset_error(offset, b.len()));
        }
        let max = bufs.len().min(sizes.len());
        let n = self
            .shared
            .to_device
            .pop_batch(max, Duration::ZERO, |i, p| {
                sizes[i] = copy_truncated(&mut bufs[i][offset..], &p);
            });
        // A deleted device closes the queue too: report the more precise reason.
        n.ok_or_else(|| {
            self.check_open()
                .err()
                .unwrap_or_else(|| closed_error("TUN device"))
        })
    }

    fn poll_fd(&self) -> RawFd {
        self.shared.to_device.poll_fd()
    }

    /// One read takes everything queued (there is no syscall to save), so
    /// packets injected together are read as one batch.
    fn features(&self) -> TunFeatures {
        TunFeatures {
            slots_per_read: MAX_BATCH,
            ..TunFeatures::PLAIN
        }
    }

    fn write(&self, bufs: &mut [&mut Vec<u8>], offset: usize) -> io::Result<()> {
        self.check_open()?;
        for b in bufs.iter() {
            let packet = b
                .get(offset..)
                .ok_or_else(|| offset_error(offset, b.len()))?;
            if !self.shared.from_device.push(packet.to_vec()) {
                self.shared.write_drops.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    fn mtu(&self) -> io::Result<usize> {
        Ok(self.shared.mtu.load(Ordering::SeqCst))
    }

    fn link_state(&self) -> LinkState {
        if !self.exists() {
            LinkState::Gone
        } else if self.shared.down.load(Ordering::SeqCst) {
            LinkState::Down
        } else {
            LinkState::Up
        }
    }

    fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.to_device.close();
    }
}

impl MemTunHandle {
    /// Hands `packet` to the device as if the kernel routed it into the TUN.
    /// False when it was dropped (device closed or deleted, or queue full).
    pub fn inject(&self, packet: &[u8]) -> bool {
        self.shared.to_device.push(packet.to_vec())
    }

    /// Hands `packets` to the device at once: its next read sees all of
    /// them (a burst the kernel queued between two reads). Returns how
    /// many were queued.
    pub fn inject_batch(&self, packets: &[&[u8]]) -> usize {
        self.shared
            .to_device
            .push_all(packets.iter().map(|p| p.to_vec()))
    }

    /// The next packet the device wrote, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Vec<u8>> {
        let mut out = None;
        self.shared
            .from_device
            .pop_batch(1, timeout, |_, p| out = Some(p));
        out
    }

    /// Simulates `ip link del`: `exists()` turns false and I/O fails.
    pub fn delete(&self) {
        self.shared.deleted.store(true, Ordering::SeqCst);
        self.shared.to_device.close();
    }

    /// Simulates `ip link set up` (true) or `down` (false); only
    /// `link_state` notices.
    pub fn set_link_up(&self, up: bool) {
        self.shared.down.store(!up, Ordering::SeqCst);
    }

    pub fn set_mtu(&self, mtu: usize) {
        self.shared.mtu.store(mtu, Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Packets the device wrote that were dropped because nobody drained them.
    pub fn write_drops(&self) -> u64 {
        self.shared.write_drops.load(Ordering::SeqCst)
    }
}
