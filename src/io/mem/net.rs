//! The virtual UDP switch and the sockets bound on it.
use super::*;

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
