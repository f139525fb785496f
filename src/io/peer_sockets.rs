//! Established peers' datagrams queued apart from strangers' (a handshake
//! flood), as boringtun does: per-peer connected UDP sockets.
//!
//! The listen socket takes everything by default, so a flood of handshake
//! initiations from strangers fills the queue an established peer's data
//! waits in (and, once the receive buffer is full, the kernel drops that
//! data with the flood). For each pinned endpoint (an established peer's,
//! told by the device through [`Udp::pin`]) this backend opens a socket
//! bound to the same port with SO_REUSEPORT and `connect()`ed to the peer.
//! The kernel's UDP lookup scores a connected socket above the wildcard
//! listen socket (it matches source address and port too; with a connected
//! socket in the port's reuseport group, `reuseport_has_conns` makes the
//! lookup score every socket instead of picking one by hash), so that peer's
//! datagrams land in their own queue, which is read before the listen
//! socket's.
//!
//! The listen socket sets SO_REUSEPORT only after its bind: a second daemon
//! binding the same port still fails with EADDRINUSE, while this backend's
//! connected sockets (which set it before binding) may share the port.
//!
//! Sends keep going through the listen socket: it has the sticky source
//! (IP_PKTINFO), GSO and sendmmsg batching across peers, and the kernel
//! does not care which socket of the port a datagram left from.
//!
//! [`Udp::poll_fd`] is an inner epoll descriptor holding the listen socket
//! and the connected ones, so the device's I/O loop waits on one descriptor
//! as before. Connected sockets are capped ([`MAX_PEER_SOCKETS`], less when
//! RLIMIT_NOFILE is low): the peers beyond the cap share the listen socket,
//! and at the cap a socket silent for 180 s (`IDLE_EVICT_MS`) gives its place to a
//! newly pinned peer (so idle peers, or endpoints a peer left behind while
//! the device was not told, do not hold the places for good).
use super::linux_udp::{grow_buffers, setsockopt_int, LinuxUdp, RECV_TIMEOUT};
use super::udp_gso::{SOL_UDP, UDP_GRO};
use super::{pktinfo, Endpoint, LocalAddr, RecvMeta, Udp};
use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Most connected sockets by default.
pub const MAX_PEER_SOCKETS: usize = 1024;
/// Descriptors left for everything else (TUN, UAPI, admin, files).
const FD_RESERVE: u64 = 256;
/// The listen socket's epoll token; connected sockets count up from 1.
const LISTEN_TOKEN: u64 = 0;
/// Ready descriptors one `recv_ready` looks at.
const EVENTS: usize = 64;
/// At the cap, a connected socket silent this long gives its place to a
/// newly pinned peer: after REJECT_AFTER_TIME (180 s) its peer has no
/// session left, and a roamed or re-configured peer's old endpoint goes
/// silent for good.
const IDLE_EVICT_MS: u64 = 180_000;
/// Least time between two searches for an idle socket.
const EVICT_SCAN_MS: u64 = 1_000;
/// Receives in a row that may read the hot socket without asking epoll.
const HOT_TURNS: u8 = 4;

/// The pinned endpoints, shared by every socket set a
/// [`super::linux_bind::LinuxBind`] opens, so a re-bind (new listen port)
/// reopens them all on the new port.
#[derive(Debug, Default)]
pub struct Pins(Mutex<HashMap<SocketAddr, Option<LocalAddr>>>);

/// A connected socket and when it last had datagrams (ms on the set's clock).
struct Live {
    udp: LinuxUdp,
    last_ms: AtomicU64,
}

struct Conn {
    token: u64,
    src: Option<LocalAddr>,
    live: Arc<Live>,
}

#[derive(Default)]
struct Conns {
    by_dst: HashMap<SocketAddr, Conn>,
    by_token: HashMap<u64, Arc<Live>>,
    next_token: u64,
}

/// The listen socket plus the pinned peers' connected sockets.
pub struct PeerSockets {
    listen: LinuxUdp,
    epoll: OwnedFd,
    conns: Mutex<Conns>,
    pins: Arc<Pins>,
    cap: usize,
    /// The clock of `Live::last_ms` and of `last_evict_ms`.
    born: Instant,
    /// When the cap was last searched for an idle socket (at most once per
    /// [`EVICT_SCAN_MS`]: peers beyond the cap pin on every batch).
    last_evict_ms: AtomicU64,
    fwmark: AtomicU32,
    /// Receive buffer each connected socket asks for (as the listen one).
    recv_buffer: usize,
    closed: AtomicBool,
    /// The connected socket that was alone ready, and drained, in the last
    /// look, with the turns it has left (see [`PeerSockets::ready`]).
    hot: Mutex<Option<Hot>>,
}

/// See [`PeerSockets::hot`].
struct Hot {
    token: u64,
    live: Arc<Live>,
    turns: u8,
}

/// How many connected sockets RLIMIT_NOFILE leaves room for (two
/// descriptors each budgeted, for a re-bind's overlap).
fn socket_cap() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    let cur = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    (cur.saturating_sub(FD_RESERVE) / 2).min(MAX_PEER_SOCKETS as u64) as usize
}

/// Datagrams read from a connected socket: their endpoint is pinned.
fn mark_connected(meta: &mut [RecvMeta]) {
    for m in meta {
        m.connected = true;
    }
}

fn epoll_ctl(ep: RawFd, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` outlives the call; the kernel copies it.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl PeerSockets {
    /// Wraps the bound `listen` socket; opens a connected socket for each
    /// endpoint already in `pins`.
    /// `recv_buffer` is what each connected socket asks for, as the
    /// listen socket does.
    pub fn new(
        listen: LinuxUdp,
        fwmark: u32,
        pins: Arc<Pins>,
        recv_buffer: usize,
    ) -> io::Result<PeerSockets> {
        let fd = listen.socket().as_raw_fd();
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        // SAFETY: plain syscall; the result is checked before use.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` is a fresh descriptor we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, LISTEN_TOKEN)?;
        let me = PeerSockets {
            listen,
            epoll,
            conns: Mutex::new(Conns {
                next_token: LISTEN_TOKEN + 1,
                ..Conns::default()
            }),
            pins,
            cap: socket_cap(),
            born: Instant::now(),
            last_evict_ms: AtomicU64::new(0),
            fwmark: AtomicU32::new(fwmark),
            recv_buffer,
            closed: AtomicBool::new(false),
            hot: Mutex::new(None),
        };
        let pinned: Vec<_> = me.pins.0.lock().iter().map(|(d, s)| (*d, *s)).collect();
        let mut conns = me.conns.lock();
        for (dst, src) in pinned {
            me.open_conn(&mut conns, Endpoint { dst, src });
        }
        drop(conns);
        Ok(me)
    }

    /// How many connected sockets are open.
    pub fn connected(&self) -> usize {
        self.conns.lock().by_dst.len()
    }

    /// A socket on our port connected to `ep.dst`, bound to `ep.src`'s
    /// address when known (else connect picks the route's source).
    fn connect(&self, ep: Endpoint) -> io::Result<LinuxUdp> {
        let v6 = self.listen.is_dual_stack();
        let dst = self.listen.dst_for_socket(ep.dst)?;
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if v6 {
            sock.set_only_v6(false)?;
        }
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        let port = self.listen.port();
        let any = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        };
        let local = match (ep.src.map(|s| s.ip), v6) {
            (Some(IpAddr::V4(a)), true) => IpAddr::V6(a.to_ipv6_mapped()),
            (Some(IpAddr::V6(a)), false) => a.to_ipv4_mapped().map_or(any, IpAddr::V4),
            (Some(ip), _) => ip,
            (None, _) => any,
        };
        // A sticky source that is gone: the route picks one at connect.
        if sock.bind(&SocketAddr::new(local, port).into()).is_err() {
            sock.bind(&SocketAddr::new(any, port).into())?;
        }
        let mark = self.fwmark.load(Ordering::Relaxed);
        if mark != 0 {
            sock.set_mark(mark)?;
        }
        let fd = sock.as_raw_fd();
        grow_buffers(fd, self.recv_buffer);
        // Best effort as on the listen socket: without them a datagram
        // simply carries no local address or arrives uncoalesced.
        let _ = pktinfo::enable(fd, v6);
        let gro = self.listen.offloads().1 && setsockopt_int(fd, SOL_UDP, UDP_GRO, 1).is_ok();
        sock.connect(&dst.into())?;
        sock.set_nonblocking(true)?;
        Ok(LinuxUdp::from_socket(sock, v6, port, gro))
    }

    /// Opens (or reopens, for a new source) the connected socket for `ep`.
    fn open_conn(&self, conns: &mut Conns, ep: Endpoint) {
        if let Some(old) = conns.by_dst.get(&ep.dst) {
            if old.src == ep.src {
                return;
            }
            self.close_conn(conns, ep.dst);
        }
        if conns.by_dst.len() >= self.cap && !self.evict_idle(conns) {
            return;
        }
        let live = match self.connect(ep) {
            Ok(udp) => Arc::new(Live {
                udp,
                last_ms: AtomicU64::new(self.now_ms()),
            }),
            Err(e) => {
                tracing::debug!(endpoint = %ep.dst, error = %e, "no connected socket for peer; it shares the listen socket");
                return;
            }
        };
        let token = conns.next_token;
        conns.next_token += 1;
        let fd = live.udp.socket().as_raw_fd();
        if let Err(e) = epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, token) {
            tracing::debug!(error = %e, "cannot poll a peer's connected socket");
            return;
        }
        // Lock order: conns, then pins.
        self.pins.0.lock().insert(ep.dst, ep.src);
        conns.by_token.insert(token, live.clone());
        conns.by_dst.insert(
            ep.dst,
            Conn {
                token,
                src: ep.src,
                live,
            },
        );
    }

    fn close_conn(&self, conns: &mut Conns, dst: SocketAddr) {
        if let Some(c) = conns.by_dst.remove(&dst) {
            conns.by_token.remove(&c.token);
            let mut hot = self.hot.lock();
            if hot.as_ref().is_some_and(|h| h.token == c.token) {
                *hot = None;
            }
            drop(hot);
            let fd = c.live.udp.socket().as_raw_fd();
            let _ = epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, c.token);
            c.live.udp.close();
        }
    }

    fn take_hot(&self) -> Option<Hot> {
        self.hot.lock().take()
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// At the cap: closes the longest-silent socket if it has been silent
    /// [`IDLE_EVICT_MS`]; true if room was made.
    fn evict_idle(&self, conns: &mut Conns) -> bool {
        let now = self.now_ms();
        let last = self.last_evict_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < EVICT_SCAN_MS {
            return false;
        }
        self.last_evict_ms.store(now.max(1), Ordering::Relaxed);
        let idlest = conns
            .by_dst
            .iter()
            .map(|(d, c)| (c.live.last_ms.load(Ordering::Relaxed), *d))
            .min();
        match idlest {
            Some((at, dst)) if now.saturating_sub(at) >= IDLE_EVICT_MS => {
                self.close_conn(conns, dst);
                self.pins.0.lock().remove(&dst);
                true
            }
            _ => false,
        }
    }

    /// Connected sockets with datagrams queued, then the listen socket.
    ///
    /// On an idle tunnel each receive finds one peer's socket alone ready
    /// with one datagram: asking the inner epoll set which one costs a
    /// system call per datagram (two per round trip) on top of the read.
    /// So a socket that was alone ready and drained is read directly next
    /// time ("hot"). Its read failing (EAGAIN: the datagram is elsewhere)
    /// falls back to asking. It is used [`HOT_TURNS`] times in a row at
    /// most, and not after filling a batch: the other sockets are never
    /// kept waiting behind one peer for more than a few batches (the I/O
    /// loop's level-triggered wait comes back at once while any is ready).
    fn ready(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let n = bufs.len().min(meta.len());
        if let Some(h) = self.take_hot() {
            if let Ok(m) = h.live.udp.recv_ready(&mut bufs[..n], &mut meta[..n]) {
                if m > 0 {
                    mark_connected(&mut meta[..m]);
                    h.live.last_ms.store(self.now_ms(), Ordering::Relaxed);
                    if m < n && h.turns > 1 {
                        *self.hot.lock() = Some(Hot {
                            turns: h.turns - 1,
                            ..h
                        });
                    }
                    return Ok(m);
                }
            }
        }
        let mut got = 0;
        let has_conns = !self.conns.lock().by_token.is_empty();
        // Without connected sockets the listen socket is read blind, as
        // before; with them, only when epoll says it has something (one
        // syscall fewer per batch of a busy peer).
        let mut listen_ready = !has_conns;
        if has_conns {
            // SAFETY: epoll_event is a C struct valid when zeroed.
            let mut evs: [libc::epoll_event; EVENTS] = unsafe { std::mem::zeroed() };
            // SAFETY: the array outlives the call and its length is passed.
            let k = unsafe {
                libc::epoll_wait(self.epoll.as_raw_fd(), evs.as_mut_ptr(), EVENTS as i32, 0)
            };
            let ready = &evs[..k.max(0) as usize];
            for ev in ready {
                let token = ev.u64;
                if token == LISTEN_TOKEN {
                    listen_ready = true;
                    continue;
                }
                if got >= n {
                    continue;
                }
                let Some(live) = self.conns.lock().by_token.get(&token).cloned() else {
                    continue;
                };
                // A connected socket also hears ICMP errors about its peer
                // (ECONNREFUSED): nothing to deliver, the data path goes on.
                if let Ok(m) = live.udp.recv_ready(&mut bufs[got..n], &mut meta[got..n]) {
                    if m > 0 {
                        mark_connected(&mut meta[got..got + m]);
                        live.last_ms.store(self.now_ms(), Ordering::Relaxed);
                    }
                    if ready.len() == 1 && m > 0 && m < n {
                        *self.hot.lock() = Some(Hot {
                            token,
                            live: live.clone(),
                            turns: HOT_TURNS,
                        });
                    }
                    got += m;
                }
            }
        }
        if got < n && (listen_ready || self.closed.load(Ordering::Acquire)) {
            match self.listen.recv_ready(&mut bufs[got..n], &mut meta[got..n]) {
                Ok(m) => got += m,
                Err(e) if got == 0 => return Err(e),
                Err(_) => {}
            }
        }
        Ok(got)
    }
}

impl Udp for PeerSockets {
    fn recv(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        if self.closed.load(Ordering::Acquire) {
            return self.listen.recv_ready(bufs, meta);
        }
        let got = self.ready(bufs, meta)?;
        if got > 0 {
            return Ok(got);
        }
        let mut pfd = libc::pollfd {
            fd: self.epoll.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, RECV_TIMEOUT.as_millis() as i32) };
        if r <= 0 {
            // Timeout or signal; a close meanwhile answers with its error.
            return if self.closed.load(Ordering::Acquire) {
                self.listen.recv_ready(bufs, meta)
            } else {
                Ok(0)
            };
        }
        self.ready(bufs, meta)
    }

    fn recv_ready(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        self.ready(bufs, meta)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn send(&self, bufs: &[&[u8]], dst: SocketAddr) -> io::Result<()> {
        self.listen.send(bufs, dst)
    }

    fn send_many(&self, msgs: &[(&[u8], SocketAddr)]) -> io::Result<()> {
        self.listen.send_many(msgs)
    }

    fn send_from(&self, bufs: &[&[u8]], ep: Endpoint) -> io::Result<bool> {
        self.listen.send_from(bufs, ep)
    }

    fn send_many_from(
        &self,
        msgs: &[(&[u8], Endpoint)],
        rejected: &mut dyn FnMut(usize),
    ) -> io::Result<()> {
        self.listen.send_many_from(msgs, rejected)
    }

    fn port(&self) -> u16 {
        self.listen.port()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.listen.close();
        let mut conns = self.conns.lock();
        let dsts: Vec<_> = conns.by_dst.keys().copied().collect();
        for d in dsts {
            self.close_conn(&mut conns, d);
        }
    }

    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        self.listen.set_fwmark(mark)?;
        self.fwmark.store(mark, Ordering::Relaxed);
        for c in self.conns.lock().by_dst.values() {
            c.live.udp.set_fwmark(mark)?;
        }
        Ok(())
    }

    fn offloads(&self) -> Vec<(&'static str, bool)> {
        Udp::offloads(&self.listen)
    }

    fn pin(&self, ep: Endpoint) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        {
            // The fast path: the packet path pins on every batch.
            let conns = self.conns.lock();
            match conns.by_dst.get(&ep.dst) {
                Some(c) if c.src == ep.src => return,
                None if conns.by_dst.len() >= self.cap
                    && self
                        .now_ms()
                        .saturating_sub(self.last_evict_ms.load(Ordering::Relaxed))
                        < EVICT_SCAN_MS =>
                {
                    return
                }
                _ => {}
            }
        }
        let mut conns = self.conns.lock();
        self.open_conn(&mut conns, ep);
    }

    fn unpin(&self, dst: SocketAddr) {
        self.pins.0.lock().remove(&dst);
        let mut conns = self.conns.lock();
        self.close_conn(&mut conns, dst);
    }
}

#[cfg(test)]
#[path = "peer_sockets_tests.rs"]
mod tests;
