//! Linux UDP: one dual-stack socket per bind, batched with recvmmsg/sendmmsg.
//!
//! Hand-rolled on libc rather than quinn-udp: the trait moves plain slices to
//! one destination, which maps one-to-one onto sendmmsg/recvmmsg with arrays on
//! the stack (no allocation per call). UDP GSO and GRO (a UDP_SEGMENT
//! control message on send, UDP_GRO on receive) ride in those same calls,
//! so the trait does not know about them.
//!
//! Here: the socket, its options and the [`Udp`] face. `send.rs` builds
//! the sendmmsg batches (GSO runs, per-datagram destinations, retries),
//! `recv.rs` the recvmmsg ones (GRO runs split in place, the arrival
//! address from the pktinfo), `raw_addr.rs` converts socket addresses for
//! both.
mod raw_addr;
mod recv;
mod send;

use raw_addr::RawAddr;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::udp_gso::{gro_segments, gso_groups, SOL_UDP, UDP_GRO, UDP_SEGMENT};
use super::{pktinfo, source_rejected, Endpoint, LocalAddr, RecvMeta, Udp, MAX_BATCH};
use std::mem::MaybeUninit;

/// Longest a `recv` blocks before returning `Ok(0)`.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(200);
/// Longest one blocking `sendmmsg` waits for socket buffer space.
const SEND_TIMEOUT: Duration = Duration::from_millis(50);
/// Tries after EAGAIN/ENOBUFS before the rest of a batch is dropped.
const SEND_RETRIES: u32 = 3;
/// Send buffer size asked for (wireguard-go uses 7 MiB for both).
pub const SOCKET_BUFFER_BYTES: usize = 7 << 20;
/// Receive buffer size asked for. Deliberately small: datagrams waiting in
/// the receive buffer are a FIFO every tunnelled flow shares, so its size
/// is the latency a bulk transfer adds to everything else. Measured on a
/// 2-core VM: with wireguard-go's 7 MiB, ping through a tunnel loaded by four
/// TCP streams took 8-15 ms; with 256 KiB, 3-5 ms at the same throughput;
/// with 128 KiB, 2-3 ms, but a 1,000-peer load of small packets then lost
/// 0.4 % (the buffer counts kernel memory per datagram, not payload). TCP
/// inside the tunnel adapts to the drops.
pub const RECV_BUFFER_BYTES: usize = 256 << 10;
/// The daemon's override of [`RECV_BUFFER_BYTES`] (bytes), read in
/// `daemon::options` and passed down through [`UdpOptions`].
pub const RECV_BUFFER_ENV: &str = "PHANTOMMESH_UDP_RCVBUF";

/// How [`super::linux_bind::LinuxBind`] sets its sockets up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpOptions {
    /// Receive buffer to ask for, bytes.
    pub recv_buffer: usize,
    /// UDP GSO/GRO when the kernel has them.
    pub offload: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            recv_buffer: RECV_BUFFER_BYTES,
            offload: true,
        }
    }
}

/// Which sockets [`super::linux_bind::LinuxBind`] opens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    /// `[::]:port` with IPV6_V6ONLY off, falling back to `0.0.0.0:port` when
    /// the kernel has no IPv6.
    #[default]
    DualStack,
    /// `0.0.0.0:port` only.
    V4Only,
}

/// One bound UDP socket.
///
/// `close` shuts the socket down (waking blocked receivers) and releases the
/// port at once by replacing the descriptor with an unbound placeholder via
/// dup3; the descriptor number itself stays valid until drop, so a thread
/// still inside `recv` can never touch an unrelated, recycled descriptor.
pub struct LinuxUdp {
    sock: Socket,
    /// The socket speaks AF_INET6 (IPv4 peers as mapped addresses).
    v6: bool,
    port: u16,
    closed: AtomicBool,
    send_drops: AtomicU64,
    /// UDP_SEGMENT sends; turned off for good if the kernel fails one.
    gso: AtomicBool,
    /// UDP_GRO receives: coalesced datagrams are split in `recv`.
    gro: bool,
}

fn with_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "UDP socket is closed")
}

/// Errors meaning "this kernel has no IPv6", as opposed to a real bind failure.
fn ipv6_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}

fn open_socket(v6: bool, port: u16) -> io::Result<Socket> {
    let sock = if v6 {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_only_v6(false)?;
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        s
    } else {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
        s
    };
    Ok(sock)
}

pub(super) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed alongside.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sizes the socket buffers: a large send buffer absorbs bursts, the receive
/// buffer is bounded for latency (see [`RECV_BUFFER_BYTES`]). The FORCE
/// variants (CAP_NET_ADMIN) bypass rmem_max/wmem_max, the plain ones are
/// clamped to them. Best effort.
pub(super) fn grow_buffers(fd: RawFd, recv_buffer: usize) {
    for (force, plain, size) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, recv_buffer),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SOCKET_BUFFER_BYTES),
    ] {
        let size = size as libc::c_int;
        if setsockopt_int(fd, libc::SOL_SOCKET, force, size).is_err() {
            if let Err(e) = setsockopt_int(fd, libc::SOL_SOCKET, plain, size) {
                tracing::debug!("cannot grow UDP socket buffer: {e}");
            }
        }
    }
}

impl LinuxUdp {
    /// Binds `port` (0 = any) for `family`, applying `fwmark` when non-zero.
    pub fn bind(port: u16, fwmark: u32, family: Family) -> io::Result<LinuxUdp> {
        Self::bind_with(port, fwmark, family, UdpOptions::default())
    }

    /// As [`LinuxUdp::bind`], set up as `opts` says.
    pub fn bind_with(
        port: u16,
        fwmark: u32,
        family: Family,
        opts: UdpOptions,
    ) -> io::Result<LinuxUdp> {
        let what = || format!("cannot bind UDP port {port}");
        let (sock, v6) = match family {
            Family::DualStack => match open_socket(true, port) {
                Ok(s) => (s, true),
                Err(e) if ipv6_unavailable(&e) => {
                    tracing::info!("IPv6 unavailable ({e}); listening on IPv4 only");
                    (
                        open_socket(false, port).map_err(|e| with_context(e, what()))?,
                        false,
                    )
                }
                Err(e) => return Err(with_context(e, what())),
            },
            Family::V4Only => (
                open_socket(false, port).map_err(|e| with_context(e, what()))?,
                false,
            ),
        };
        grow_buffers(sock.as_raw_fd(), opts.recv_buffer);
        if let Err(e) = pktinfo::enable(sock.as_raw_fd(), v6) {
            tracing::info!(error = %e, "no IP_PKTINFO: replies leave from the route's preferred address");
        }
        if fwmark != 0 {
            sock.set_mark(fwmark).map_err(|e| {
                with_context(
                    e,
                    format!("cannot set fwmark {fwmark:#x} (needs CAP_NET_ADMIN)"),
                )
            })?;
        }
        sock.set_read_timeout(Some(RECV_TIMEOUT))?;
        sock.set_write_timeout(Some(SEND_TIMEOUT))?;
        let port = sock
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .ok_or_else(|| io::Error::other("bound UDP socket has no IP address"))?;
        let offload = opts.offload;
        let gso = offload && gso_supported(sock.as_raw_fd());
        let gro = offload && setsockopt_int(sock.as_raw_fd(), SOL_UDP, UDP_GRO, 1).is_ok();
        Ok(LinuxUdp {
            sock,
            v6,
            port,
            closed: AtomicBool::new(false),
            send_drops: AtomicU64::new(0),
            gso: AtomicBool::new(gso),
            gro,
        })
    }

    /// Wraps `sock`, already bound to `port` and set up as [`LinuxUdp::bind`]
    /// does (a peer's connected socket).
    pub(super) fn from_socket(sock: Socket, v6: bool, port: u16, gro: bool) -> LinuxUdp {
        LinuxUdp {
            sock,
            v6,
            port,
            closed: AtomicBool::new(false),
            send_drops: AtomicU64::new(0),
            gso: AtomicBool::new(false),
            gro,
        }
    }

    /// Whether UDP GSO sends and GRO receives are on.
    pub fn offloads(&self) -> (bool, bool) {
        (self.gso.load(Ordering::Relaxed), self.gro)
    }

    /// Whether this is the dual-stack `[::]` socket (else IPv4 only).
    pub fn is_dual_stack(&self) -> bool {
        self.v6
    }

    /// Datagrams dropped because the kernel kept refusing them (EAGAIN/ENOBUFS).
    pub fn send_drops(&self) -> u64 {
        self.send_drops.load(Ordering::Relaxed)
    }

    /// The underlying socket, for options the traits do not cover.
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// `dst` as this socket's family needs it.
    pub(super) fn dst_for_socket(&self, dst: SocketAddr) -> io::Result<SocketAddr> {
        match (self.v6, dst) {
            (true, SocketAddr::V4(a)) => Ok(SocketAddr::from((a.ip().to_ipv6_mapped(), a.port()))),
            (false, SocketAddr::V6(a)) => match a.ip().to_ipv4_mapped() {
                Some(v4) => Ok(SocketAddr::from((v4, a.port()))),
                None => Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("cannot send to {dst}: socket is IPv4 only"),
                )),
            },
            _ => Ok(dst),
        }
    }
}

/// Whether the kernel knows UDP_SEGMENT (Linux 4.18+).
fn gso_supported(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and sized for the option.
    unsafe {
        libc::getsockopt(
            fd,
            SOL_UDP,
            UDP_SEGMENT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        ) == 0
    }
}

/// Control-message space for what one message carries: a u16
/// (UDP_SEGMENT) or int (UDP_GRO), then a pktinfo (the sticky source, or
/// where a datagram arrived). A dual-stack socket receiving IPv4 gets both
/// kinds of pktinfo (IPV6_PKTINFO with the mapped address, then
/// IP_PKTINFO): 24 + 40 + 32 bytes of CMSG_SPACE. With 64, every such
/// receive came back MSG_CTRUNC with the IPv4 one cut short.
const CMSG_BUF: usize = 96;
// SAFETY: CMSG_SPACE is arithmetic on its argument.
const _: () = assert!(unsafe {
    CMSG_BUF
        >= libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as usize
            + pktinfo::SPACE
            + libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize
});

/// Batches up to this size use header arrays of this size: a send or
/// receive zeroes its arrays on every call, and for one datagram zeroing
/// MAX_BATCH headers (8 KiB of mmsghdr alone, often cold) cost more than
/// the rest of the call.
const SMALL_BATCH: usize = 8;

/// Messages one UDP_GRO receive reads (each may hold MAX_GSO_SEGMENTS).
const GRO_READS: usize = MAX_BATCH / super::udp_gso::MAX_GSO_SEGMENTS;

/// A control-message buffer aligned for `cmsghdr` (the kernel and the
/// CMSG_* macros read it as one; a plain byte array may sit at any
/// address). N bytes, CMSG_BUF by default.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub(crate) struct CmsgBuf<const N: usize = CMSG_BUF>(pub(crate) [u8; N]);

const _: () = assert!(std::mem::align_of::<CmsgBuf>() >= std::mem::align_of::<libc::cmsghdr>());

impl Udp for LinuxUdp {
    fn recv(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        self.recv_with(bufs, meta, libc::MSG_WAITFORONE)
    }

    fn recv_ready(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        self.recv_with(bufs, meta, libc::MSG_DONTWAIT)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.sock.as_raw_fd())
    }

    fn send(&self, bufs: &[&[u8]], dst: SocketAddr) -> io::Result<()> {
        self.send_from(bufs, Endpoint::to(dst)).map(drop)
    }

    fn send_from(&self, bufs: &[&[u8]], ep: Endpoint) -> io::Result<bool> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        let dst = ep.dst;
        let (mut name, namelen) = RawAddr::from_std(self.dst_for_socket(dst)?);
        let mut src = ep.src.filter(|s| pktinfo::fits(s, &dst));
        let mut dropped_src = false;
        // Sends from `at` on; a refused source is dropped and the rest
        // goes without it (once).
        let mut at = 0;
        while at < bufs.len() {
            let end = (at + MAX_BATCH).min(bufs.len());
            let chunk = &bufs[at..end];
            let gso = self.gso.load(Ordering::Relaxed) && chunk.len() > 1;
            let res = self.send_to_one(chunk, &mut name, namelen, src.as_ref(), gso);
            match res {
                Ok(()) => at = end,
                Err((k, e)) if src.is_some() && source_rejected(&e) => {
                    tracing::debug!(error = %e, source = ?src, "UDP send: source refused; sending without it");
                    src = None;
                    dropped_src = true;
                    at += k;
                }
                // EIO: the route's device cannot checksum segments (as
                // wireguard-go, give GSO up for this socket and resend).
                Err((k, e))
                    if chunk.len() > 1
                        && self.gso.load(Ordering::Relaxed)
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
                        ) =>
                {
                    self.gso.store(false, Ordering::Relaxed);
                    tracing::info!(error = %e, "UDP GSO send failed; GSO disabled on this socket");
                    at += k;
                }
                Err((_, e)) => return Err(with_context(e, format!("UDP send to {dst}"))),
            }
        }
        Ok(dropped_src)
    }

    fn send_many(&self, msgs: &[(&[u8], SocketAddr)]) -> io::Result<()> {
        for chunk in msgs.chunks(MAX_BATCH) {
            let eps: smallvec::SmallVec<[(&[u8], Endpoint); MAX_BATCH]> =
                chunk.iter().map(|(b, d)| (*b, Endpoint::to(*d))).collect();
            self.send_many_from(&eps, &mut |_| {})?;
        }
        Ok(())
    }

    fn send_many_from(
        &self,
        msgs: &[(&[u8], Endpoint)],
        rejected: &mut dyn FnMut(usize),
    ) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        for (c, chunk) in msgs.chunks(MAX_BATCH).enumerate() {
            let mut hear = |i: usize| rejected(c * MAX_BATCH + i);
            if chunk.len() <= SMALL_BATCH {
                self.send_many_n::<SMALL_BATCH>(chunk, &mut hear)?;
            } else {
                self.send_many_n::<MAX_BATCH>(chunk, &mut hear)?;
            }
        }
        Ok(())
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        self.sock.set_mark(mark).map_err(|e| {
            with_context(
                e,
                format!("cannot set fwmark {mark:#x} (needs CAP_NET_ADMIN)"),
            )
        })
    }

    fn offloads(&self) -> Vec<(&'static str, bool)> {
        let (gso, gro) = self.offloads();
        vec![("udp_gso", gso), ("udp_gro", gro)]
    }

    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wakes threads blocked in recvmmsg (ENOTCONN is expected: unconnected UDP).
        let _ = self.sock.shutdown(Shutdown::Both);
        let domain = if self.v6 { Domain::IPV6 } else { Domain::IPV4 };
        match Socket::new(domain, Type::DGRAM, None) {
            Ok(placeholder) => {
                let _ = placeholder.set_read_timeout(Some(RECV_TIMEOUT));
                // SAFETY: both descriptors are open and owned; dup3 atomically
                // swaps what our descriptor number refers to.
                let r = unsafe {
                    libc::dup3(
                        placeholder.as_raw_fd(),
                        self.sock.as_raw_fd(),
                        libc::O_CLOEXEC,
                    )
                };
                if r < 0 {
                    tracing::warn!(
                        "UDP close: port {} stays bound until drop: {}",
                        self.port,
                        io::Error::last_os_error()
                    );
                }
            }
            Err(e) => tracing::warn!("UDP close: port {} stays bound until drop: {e}", self.port),
        }
    }
}

#[cfg(test)]
mod tests;
