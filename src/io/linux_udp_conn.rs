//! Connected sockets: one per confirmed peer endpoint, on the listening
//! socket's port.
//!
//! Why: for every datagram an unconnected socket sends, the kernel looks up
//! a route, and every datagram it receives takes the slow route input path.
//! A connected socket keeps its route, and early demux finds it for
//! arriving datagrams. Between two network namespaces on the 2-vCPU test VM
//! (100-byte ping-pong every 10 ms, median round trip): 245 µs with both
//! ends unconnected, 210 µs with one end connected, 170 µs with both. An
//! idle tunnel pays that on each of its two datagrams per ping. boringtun
//! connects a socket per peer for the same reason.
//!
//! How:
//! - The device calls [`super::Udp::connect`] only for addresses that
//!   authenticated packets came from, so no sender can make us open
//!   sockets, and we hold at most [`MAX_CONNECTED`] of them (descriptors).
//! - The kernel prefers the exact 4-tuple match, so that peer's datagrams
//!   arrive on its connected socket from then on: `recv` waits on every
//!   socket with one level-triggered epoll set and serves one ready socket
//!   per call, in turn (a busy peer cannot starve handshakes on the
//!   listening socket).
//! - Sharing the port needs SO_REUSEPORT on both sockets. The listening
//!   socket sets it only after its bind, so a second daemon binding the
//!   same port still gets EADDRINUSE rather than half our traffic.
//! - A connected socket reports ICMP errors (port unreachable) on its next
//!   call: a send that fails goes out through the listening socket instead,
//!   and a receive error is not the end of the socket.
//! - A socket that is disconnected may still be in use by the receiving
//!   thread: the map hands out `Arc`s, and the descriptor closes with the
//!   last one.
use super::{closed_error, grow_buffers, setsockopt_int, From, LinuxUdp, To};
use crate::io::epoll::Epoll;
use crate::io::udp_gso::{SOL_UDP, UDP_GRO};
use crate::io::RecvMeta;
use parking_lot::RwLock;
use socket2::{Domain, Protocol, Socket};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// Most connected sockets per endpoint, and at most a quarter of the
/// descriptor limit. Beyond it, peers use the listening socket (as every
/// peer does without this): it bounds the descriptors we hold, and past a
/// few hundred busy peers sendmmsg batches across peers matter more than a
/// route lookup.
pub const MAX_CONNECTED: usize = 1024;

fn connected_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    MAX_CONNECTED.min((lim.rlim_cur / 4) as usize)
}

/// Environment switch: `PHANTOMMESH_UDP_CONNECT=off` keeps every peer on
/// the listening socket.
pub const CONNECT_ENV: &str = "PHANTOMMESH_UDP_CONNECT";

/// Whether connected sockets are allowed by the environment.
pub fn connect_allowed() -> bool {
    !std::env::var(CONNECT_ENV)
        .is_ok_and(|v| v.eq_ignore_ascii_case("off") || v == "0" || v.eq_ignore_ascii_case("false"))
}

/// The epoll token of the listening socket (connected ones use their fd).
const LISTENER: u64 = u64::MAX;

struct ConnSock {
    sock: Socket,
    gro: bool,
}

#[derive(Default)]
struct ConnMap {
    by_addr: HashMap<SocketAddr, Arc<ConnSock>>,
    by_fd: HashMap<RawFd, Arc<ConnSock>>,
}

/// The connected sockets of one [`LinuxUdp`].
pub(super) struct Conns {
    /// The listening socket and every connected one; None when connected
    /// sockets are off (then `recv` blocks in recvmmsg on the listener).
    epoll: Option<Epoll>,
    map: RwLock<ConnMap>,
    /// Lets `send` skip the map when nothing is connected.
    count: AtomicUsize,
    limit: usize,
    fwmark: AtomicU32,
}

impl Conns {
    /// Prepares sharing `listener`'s port; off (not an error) where the
    /// environment or the kernel says no.
    pub(super) fn new(listener: &Socket, fwmark: u32) -> Conns {
        if !connect_allowed() {
            return Conns::off();
        }
        match share_port(listener) {
            Ok(epoll) => Conns {
                epoll: Some(epoll),
                map: RwLock::new(ConnMap::default()),
                count: AtomicUsize::new(0),
                limit: connected_limit(),
                fwmark: AtomicU32::new(fwmark),
            },
            Err(e) => {
                tracing::info!("connected UDP sockets unavailable: {e}");
                Conns::off()
            }
        }
    }

    /// No connected sockets (`recv` blocks on the listener alone).
    pub(super) fn off() -> Conns {
        Conns {
            epoll: None,
            map: RwLock::new(ConnMap::default()),
            count: AtomicUsize::new(0),
            limit: 0,
            fwmark: AtomicU32::new(0),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.epoll.is_some()
    }

    fn get(&self, dst: SocketAddr) -> Option<Arc<ConnSock>> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.map.read().by_addr.get(&dst).cloned()
    }

    pub(super) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(super) fn remove(&self, dst: SocketAddr) {
        let mut m = self.map.write();
        if let Some(c) = m.by_addr.remove(&dst) {
            let fd = c.sock.as_raw_fd();
            m.by_fd.remove(&fd);
            if let Some(ep) = &self.epoll {
                ep.delete(fd);
            }
            self.count.store(m.by_addr.len(), Ordering::Relaxed);
        }
    }

    pub(super) fn clear(&self) {
        let mut m = self.map.write();
        for fd in m.by_fd.keys() {
            if let Some(ep) = &self.epoll {
                ep.delete(*fd);
            }
        }
        *m = ConnMap::default();
        self.count.store(0, Ordering::Relaxed);
    }

    pub(super) fn set_fwmark(&self, mark: u32) {
        self.fwmark.store(mark, Ordering::Relaxed);
        for c in self.map.read().by_addr.values() {
            if let Err(e) = c.sock.set_mark(mark) {
                tracing::warn!("connected UDP socket: cannot set fwmark {mark:#x}: {e}");
            }
        }
    }
}

/// Lets connected sockets bind the listener's port, and watches it.
fn share_port(listener: &Socket) -> io::Result<Epoll> {
    setsockopt_int(
        listener.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        1,
    )?;
    let ep = Epoll::new(16)?;
    ep.add(listener.as_raw_fd(), LISTENER)?;
    Ok(ep)
}

impl LinuxUdp {
    /// [`super::Udp::connect`]: opens a socket on our port connected to
    /// `dst`, unless one exists, the limit is reached or the kernel says no.
    pub(super) fn connect_peer(&self, dst: SocketAddr) -> bool {
        let Some(ep) = &self.conns.epoll else {
            return false;
        };
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        if self.conns.get(dst).is_some() {
            return true;
        }
        if self.conns.len() >= self.conns.limit {
            return false;
        }
        let c = match self.open_connected(dst) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::debug!("no connected UDP socket for {dst}: {e}");
                return false;
            }
        };
        let fd = c.sock.as_raw_fd();
        let mut m = self.conns.map.write();
        if m.by_addr.contains_key(&dst) {
            return true; // another thread won; ours closes on drop
        }
        if let Err(e) = ep.add(fd, fd as u64) {
            tracing::debug!("no connected UDP socket for {dst}: epoll: {e}");
            return false;
        }
        m.by_addr.insert(dst, c.clone());
        m.by_fd.insert(fd, c);
        self.conns.count.store(m.by_addr.len(), Ordering::Relaxed);
        tracing::debug!(peer = %dst, port = self.port, "connected UDP socket");
        true
    }

    fn open_connected(&self, dst: SocketAddr) -> io::Result<ConnSock> {
        let (domain, local) = match dst {
            SocketAddr::V4(_) => (
                Domain::IPV4,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.port)),
            ),
            SocketAddr::V6(_) if self.v6 => (
                Domain::IPV6,
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, self.port)),
            ),
            SocketAddr::V6(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    "listening on IPv4 only",
                ))
            }
        };
        let sock = Socket::new(domain, socket2::Type::DGRAM, Some(Protocol::UDP))?;
        if domain == Domain::IPV6 {
            sock.set_only_v6(true)?;
        }
        sock.set_reuse_port(true)?;
        let mark = self.conns.fwmark.load(Ordering::Relaxed);
        if mark != 0 {
            sock.set_mark(mark)?;
        }
        grow_buffers(sock.as_raw_fd());
        sock.bind(&local.into())?;
        // Between bind and connect this socket may receive datagrams from
        // anyone; they stay queued and `recv` reads them like any other.
        sock.connect(&dst.into())?;
        sock.set_nonblocking(true)?;
        let gro = self.gro && setsockopt_int(sock.as_raw_fd(), SOL_UDP, UDP_GRO, 1).is_ok();
        Ok(ConnSock { sock, gro })
    }

    /// Sends through `dst`'s connected socket if it has one. False: the
    /// caller sends through the listening socket (no connected socket, or
    /// it failed, e.g. with an ICMP error an earlier datagram provoked).
    pub(super) fn send_connected(&self, bufs: &[&[u8]], dst: SocketAddr) -> bool {
        let Some(c) = self.conns.get(dst) else {
            return false;
        };
        let to = To {
            fd: c.sock.as_raw_fd(),
            name: std::ptr::null_mut(),
            namelen: 0,
        };
        match self.send_to(bufs, to, dst) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(
                    "connected UDP send to {dst} failed ({e}); using the listening socket"
                );
                false
            }
        }
    }

    /// `recv` with connected sockets on: waits on every socket and reads
    /// one batch from one ready socket. None: off, use the listener alone.
    pub(super) fn recv_any(
        &self,
        bufs: &mut [&mut [u8]],
        meta: &mut [RecvMeta],
    ) -> Option<io::Result<usize>> {
        let ep = self.conns.epoll.as_ref()?;
        let timeout = super::RECV_TIMEOUT.as_millis() as i32;
        let token = match ep.wait_one(timeout) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        if self.closed.load(Ordering::Acquire) {
            return Some(Err(closed_error()));
        }
        let Some(token) = token else {
            return Some(Ok(0));
        };
        if token == LISTENER {
            let from = From {
                fd: self.sock.as_raw_fd(),
                flags: libc::MSG_DONTWAIT,
                gro: self.gro,
            };
            return Some(self.recv_from(from, bufs, meta));
        }
        // Gone since the wait (disconnected): its datagrams went with it.
        let Some(c) = self.conns.map.read().by_fd.get(&(token as RawFd)).cloned() else {
            return Some(Ok(0));
        };
        let from = From {
            fd: c.sock.as_raw_fd(),
            flags: libc::MSG_DONTWAIT,
            gro: c.gro,
        };
        Some(match self.recv_from(from, bufs, meta) {
            // A pending ICMP error (ECONNREFUSED...) is reported once and
            // cleared: the socket goes on.
            Err(e) if !self.closed.load(Ordering::Acquire) => {
                tracing::debug!("connected UDP receive: {e}");
                Ok(0)
            }
            r => r,
        })
    }

    /// Connected sockets in use (for tests and status).
    pub fn connected_count(&self) -> usize {
        self.conns.len()
    }
}

#[cfg(test)]
#[path = "linux_udp_conn_tests.rs"]
mod tests;
