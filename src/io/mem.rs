//! In-memory backends: a virtual UDP switch ([`MemNetwork`]) and a TUN whose
//! "kernel side" is a test handle ([`MemTun`] / [`MemTunHandle`]).
//!
//! They let whole devices talk to each other in unit tests with no root and no
//! kernel. This is test code: it allocates per packet, and favours being
//! obviously correct over being fast. Queues are bounded (like socket buffers)
//! so a stalled reader cannot grow memory without limit; overflow drops.
//!
//! The device's side of each queue is pollable: an eventfd that is readable
//! while packets are queued (and once the queue is closed), so a device on
//! these backends runs the same epoll I/O loop as on a real TUN and socket.
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::{Bind, RecvMeta, Tun, Udp};

/// How long an idle `recv` (and the handle's reads) block before returning
/// `Ok(0)`.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(50);
/// Packets a queue holds before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;
/// First port handed out when port 0 is asked for (the IANA dynamic range).
const EPHEMERAL_START: u16 = 49152;

fn closed_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, format!("{what} is closed"))
}

/// A bounded FIFO with blocking batch pops: the one primitive both backends
/// use. Its eventfd is kept readable exactly while items are queued or the
/// queue is closed (set and cleared under the state lock, so it never
/// disagrees with the queue).
struct Queue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
    signal: OwnedFd,
}

struct QueueState<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Queue<T> {
    fn new() -> Self {
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(
            fd >= 0,
            "eventfd for an in-memory queue: {}",
            io::Error::last_os_error()
        );
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            // SAFETY: a fresh descriptor we own from here on.
            signal: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }

    /// Makes the eventfd readable (called with the state lock held).
    fn raise(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let _ = unsafe { libc::write(self.signal.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the eventfd unreadable (called with the state lock held).
    fn lower(&self) {
        let mut n = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64.
        let _ = unsafe { libc::read(self.signal.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    }

    fn poll_fd(&self) -> RawFd {
        self.signal.as_raw_fd()
    }

    /// Appends `item`; false when the queue is full or closed (the item is dropped).
    fn push(&self, item: T) -> bool {
        self.push_all(std::iter::once(item)) == 1
    }

    /// Appends `items` at once (a reader sees all or none of them); returns
    /// how many fit (the rest are dropped).
    fn push_all(&self, items: impl IntoIterator<Item = T>) -> usize {
        let mut st = self.state.lock();
        if st.closed {
            return 0;
        }
        let was_empty = st.items.is_empty();
        let mut n = 0;
        for item in items {
            if st.items.len() >= QUEUE_CAPACITY {
                break;
            }
            st.items.push_back(item);
            n += 1;
        }
        if n > 0 && was_empty {
            self.raise();
        }
        drop(st);
        if n > 0 {
            self.ready.notify_all();
        }
        n
    }

    fn close(&self) {
        let mut st = self.state.lock();
        if !st.closed && st.items.is_empty() {
            self.raise();
        }
        st.closed = true;
        drop(st);
        self.ready.notify_all();
    }

    /// Waits up to `timeout` for one item, then hands up to `max` items to `take`
    /// (with their index in the batch). `None` once the queue is closed.
    fn pop_batch(
        &self,
        max: usize,
        timeout: Duration,
        mut take: impl FnMut(usize, T),
    ) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while !st.closed && st.items.is_empty() && max > 0 {
            if self.ready.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        if st.closed {
            return None;
        }
        let mut n = 0;
        while n < max {
            match st.items.pop_front() {
                Some(item) => take(n, item),
                None => break,
            }
            n += 1;
        }
        if n > 0 && st.items.is_empty() {
            self.lower();
        }
        Some(n)
    }
}

/// Copies as much of `src` as fits into `dst`; like the kernel, an oversized
/// datagram or packet is truncated rather than failing the whole batch.
fn copy_truncated(dst: &mut [u8], src: &[u8]) -> usize {
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
    n
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Decides per datagram whether it is delivered: `(src, dst, payload) -> keep`.
pub type MemFilter = dyn Fn(SocketAddr, SocketAddr, &[u8]) -> bool + Send + Sync;

/// Counters of a [`MemNetwork`], for test assertions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemNetStats {
    /// Datagrams handed to the switch.
    pub sent: u64,
    /// Datagrams queued at a bound socket.
    pub delivered: u64,
    /// Datagrams dropped (no such address, drop-all, filter, full queue).
    pub dropped: u64,
}

struct Datagram {
    data: Vec<u8>,
    src: SocketAddr,
}

#[derive(Default)]
struct NetInner {
    sockets: Mutex<HashMap<SocketAddr, Arc<Queue<Datagram>>>>,
    drop_all: AtomicBool,
    filter: RwLock<Option<Arc<MemFilter>>>,
    sent: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

/// A virtual switch joining any number of hosts; clones share the same switch.
#[derive(Clone, Default)]
pub struct MemNetwork {
    inner: Arc<NetInner>,
}

impl MemNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// A host with address `ip` on this network (IPv4-mapped addresses are
    /// treated as IPv4). Several binds may share an IP; ports stay unique.
    pub fn bind(&self, ip: IpAddr) -> MemBind {
        MemBind {
            net: self.clone(),
            ip: ip.to_canonical(),
        }
    }

    /// Drops every datagram while `on` (a network partition).
    pub fn set_drop_all(&self, on: bool) {
        self.inner.drop_all.store(on, Ordering::SeqCst);
    }

    /// Installs a per-datagram filter; datagrams for which it returns false are dropped.
    pub fn set_filter<F>(&self, filter: F)
    where
        F: Fn(SocketAddr, SocketAddr, &[u8]) -> bool + Send + Sync + 'static,
    {
        *self.inner.filter.write() = Some(Arc::new(filter));
    }

    pub fn clear_filter(&self) {
        *self.inner.filter.write() = None;
    }

    pub fn stats(&self) -> MemNetStats {
        MemNetStats {
            sent: self.inner.sent.load(Ordering::SeqCst),
            delivered: self.inner.delivered.load(Ordering::SeqCst),
            dropped: self.inner.dropped.load(Ordering::SeqCst),
        }
    }

    /// Delivers one send call's datagrams to `dst`: queued together, so the
    /// receiver gets them in one batch, as a GSO send is received whole.
    fn deliver(&self, src: SocketAddr, dst: SocketAddr, bufs: &[&[u8]]) {
        let inner = &self.inner;
        inner.sent.fetch_add(bufs.len() as u64, Ordering::SeqCst);
        let dst = canonical(dst);
        let filter = inner.filter.read().clone();
        let kept: Vec<Datagram> = bufs
            .iter()
            .filter(|d| {
                !inner.drop_all.load(Ordering::SeqCst)
                    && filter.as_ref().is_none_or(|f| f(src, dst, d))
            })
            .map(|d| Datagram {
                data: d.to_vec(),
                src,
            })
            .collect();
        // Clone the queue out so the switch lock is not held while copying.
        let queue = inner.sockets.lock().get(&dst).cloned();
        let delivered = queue.map_or(0, |q| q.push_all(kept)) as u64;
        inner.delivered.fetch_add(delivered, Ordering::SeqCst);
        inner
            .dropped
            .fetch_add(bufs.len() as u64 - delivered, Ordering::SeqCst);
    }

    fn register(&self, ip: IpAddr, port: u16) -> io::Result<(SocketAddr, Arc<Queue<Datagram>>)> {
        let mut sockets = self.inner.sockets.lock();
        let port = if port != 0 {
            if sockets.contains_key(&SocketAddr::new(ip, port)) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("address {} already in use", SocketAddr::new(ip, port)),
                ));
            }
            port
        } else {
            (EPHEMERAL_START..=u16::MAX)
                .find(|p| !sockets.contains_key(&SocketAddr::new(ip, *p)))
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrInUse, format!("no free port on {ip}"))
                })?
        };
        let addr = SocketAddr::new(ip, port);
        let queue = Arc::new(Queue::new());
        sockets.insert(addr, queue.clone());
        Ok((addr, queue))
    }

    fn unregister(&self, addr: SocketAddr, queue: &Arc<Queue<Datagram>>) {
        let mut sockets = self.inner.sockets.lock();
        if sockets.get(&addr).is_some_and(|q| Arc::ptr_eq(q, queue)) {
            sockets.remove(&addr);
        }
    }
}

/// One host of a [`MemNetwork`]: opens sockets on its IP.
#[derive(Clone)]
pub struct MemBind {
    net: MemNetwork,
    ip: IpAddr,
}

impl MemBind {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Bind for MemBind {
    fn open(&self, port: u16, _fwmark: u32) -> io::Result<Arc<dyn Udp>> {
        let (local, queue) = self.net.register(self.ip, port)?;
        Ok(Arc::new(MemUdp {
            net: self.net.clone(),
            local,
            queue,
            closed: AtomicBool::new(false),
        }))
    }
}

/// A socket on a [`MemNetwork`]; closing (or dropping) it frees its port.
pub struct MemUdp {
    net: MemNetwork,
    local: SocketAddr,
    queue: Arc<Queue<Datagram>>,
    closed: AtomicBool,
}

impl MemUdp {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Udp for MemUdp {
    fn recv(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(closed_error("socket"));
        }
        let max = bufs.len().min(meta.len());
        self.queue
            .pop_batch(max, IDLE_TIMEOUT, |i, d| {
                meta[i] = RecvMeta {
                    len: copy_truncated(&mut bufs[i], &d.data),
                    src: d.src,
                    local: None,
                    connected: false,
                };
            })
            .ok_or_else(|| closed_error("socket"))
    }

    fn recv_ready(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(closed_error("socket"));
        }
        let max = bufs.len().min(meta.len());
        self.queue
            .pop_batch(max, Duration::ZERO, |i, d| {
                meta[i] = RecvMeta {
                    len: copy_truncated(&mut bufs[i], &d.data),
                    src: d.src,
                    local: None,
                    connected: false,
                };
            })
            .ok_or_else(|| closed_error("socket"))
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.queue.poll_fd())
    }

    fn send(&self, bufs: &[&[u8]], dst: SocketAddr) -> io::Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(closed_error("socket"));
        }
        self.net.deliver(self.local, dst, bufs);
        Ok(())
    }

    fn port(&self) -> u16 {
        self.local.port()
    }

    fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            self.net.unregister(self.local, &self.queue);
            self.queue.close();
        }
    }
}

impl Drop for MemUdp {
    fn drop(&mut self) {
        self.close();
    }
}

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
    fn features(&self) -> super::TunFeatures {
        super::TunFeatures {
            slots_per_read: super::MAX_BATCH,
            ..super::TunFeatures::PLAIN
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

    fn link_state(&self) -> super::LinkState {
        if !self.exists() {
            super::LinkState::Gone
        } else if self.shared.down.load(Ordering::SeqCst) {
            super::LinkState::Down
        } else {
            super::LinkState::Up
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

#[cfg(test)]
#[path = "mem_tests.rs"]
mod tests;
