//! Linux UDP: one dual-stack socket per bind, batched with recvmmsg/sendmmsg.
//!
//! Hand-rolled on libc rather than quinn-udp: the trait moves plain slices to
//! one destination, which maps one-to-one onto sendmmsg/recvmmsg with arrays on
//! the stack (no allocation per call). A later issue adds UDP GSO/GRO
//! (UDP_SEGMENT cmsg on send, UDP_GRO on receive); both slot into `send_chunk`
//! and `recv` as control messages without changing the trait.
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

/// Room for either address family, as recvmmsg/sendmmsg take it.
#[repr(C)]
#[derive(Clone, Copy)]
union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddr {
    fn zeroed() -> Self {
        // SAFETY: both members are plain C structs for which all-zero is valid.
        unsafe { zeroed() }
    }

    fn from_std(addr: SocketAddr) -> (Self, libc::socklen_t) {
        let mut raw = Self::zeroed();
        match addr {
            SocketAddr::V4(a) => {
                raw.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                (raw, size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(a) => {
                raw.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                (raw, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }

    /// The address the kernel wrote, IPv4-mapped IPv6 reported as IPv4.
    fn to_std(self, len: libc::socklen_t) -> Option<SocketAddr> {
        // SAFETY: the family field sits at the same offset in both members, and
        // a member is read only when the family and length say it was written.
        unsafe {
            match self.v4.sin_family as libc::c_int {
                libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
                    let a = self.v4;
                    let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                    Some(SocketAddr::V4(SocketAddrV4::new(
                        ip,
                        u16::from_be(a.sin_port),
                    )))
                }
                libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
                    let a = self.v6;
                    let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                    let port = u16::from_be(a.sin6_port);
                    Some(match ip.to_ipv4_mapped() {
                        Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                        // Flow labels vary per packet; keeping them would make one
                        // peer look like many endpoints.
                        None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, a.sin6_scope_id)),
                    })
                }
                _ => None,
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

    /// Sends at most MAX_BATCH datagrams, retrying briefly when the kernel
    /// has no room and dropping (counted) what still does not fit.
    fn send_chunk(
        &self,
        bufs: &[&[u8]],
        name: &mut RawAddr,
        namelen: libc::socklen_t,
        src: Option<&LocalAddr>,
    ) -> Result<(), (usize, io::Error)> {
        if bufs.len() <= SMALL_BATCH {
            self.send_chunk_n::<SMALL_BATCH>(bufs, name, namelen, src)
        } else {
            self.send_chunk_n::<MAX_BATCH>(bufs, name, namelen, src)
        }
    }

    /// [`Self::send_chunk`] with header arrays of N entries.
    fn send_chunk_n<const N: usize>(
        &self,
        bufs: &[&[u8]],
        name: &mut RawAddr,
        namelen: libc::socklen_t,
        src: Option<&LocalAddr>,
    ) -> Result<(), (usize, io::Error)> {
        let n = bufs.len();
        assert!(n <= N);
        // SAFETY (zeroed): iovec and mmsghdr are C structs valid when zeroed.
        let mut iovs: [libc::iovec; N] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
        for (iov, buf) in iovs.iter_mut().zip(bufs) {
            // The kernel only reads send buffers; iovec just has no const variant.
            *iov = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
        }
        let iov_base = iovs.as_mut_ptr();
        let name_ptr: *mut RawAddr = name;
        // One destination, one source: every message shares one control
        // buffer (the kernel only reads it).
        let mut control = CmsgBuf([0u8; CMSG_BUF]);
        let controllen = match src {
            Some(src) => {
                // SAFETY: a msghdr over `control`, CMSG_BUF >= pktinfo::SPACE.
                unsafe {
                    let mut h: libc::msghdr = zeroed();
                    h.msg_control = control.0.as_mut_ptr().cast();
                    h.msg_controllen = CMSG_BUF;
                    pktinfo::write(libc::CMSG_FIRSTHDR(&h), src)
                }
            }
            None => 0,
        };
        for (i, h) in hdrs.iter_mut().take(n).enumerate() {
            h.msg_hdr.msg_name = name_ptr.cast();
            h.msg_hdr.msg_namelen = namelen;
            // SAFETY: i < n <= N, inside `iovs`.
            h.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
            h.msg_hdr.msg_iovlen = 1;
            if controllen > 0 {
                h.msg_hdr.msg_control = control.0.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = controllen;
            }
        }
        self.sendmmsg_all(&mut hdrs[..n])
    }

    /// Sends every message of `hdrs`, retrying briefly when the kernel has
    /// no room and dropping (counted) what still does not fit. An error
    /// comes with the index of the message it concerns (those before it
    /// were sent).
    fn sendmmsg_all(&self, hdrs: &mut [libc::mmsghdr]) -> Result<(), (usize, io::Error)> {
        let n = hdrs.len();
        let mut done = 0;
        let mut retries = 0;
        while done < n {
            // SAFETY: hdrs[done..n] point at live iovecs, buffers and `name`.
            let r = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    hdrs.as_mut_ptr().add(done),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                done += r as usize;
                continue;
            }
            let e = if r == 0 {
                io::Error::from_raw_os_error(libc::EAGAIN)
            } else {
                io::Error::last_os_error()
            };
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR)
                    if retries < SEND_RETRIES =>
                {
                    retries += 1;
                    // EAGAIN already waited SEND_TIMEOUT in the kernel; ENOBUFS
                    // (a full qdisc) returns at once, so give it a moment.
                    if e.raw_os_error() == Some(libc::ENOBUFS) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                    let dropped = (n - done) as u64;
                    self.send_drops.fetch_add(dropped, Ordering::Relaxed);
                    tracing::debug!("UDP send: dropped {dropped} datagrams: {e}");
                    return Ok(());
                }
                _ => return Err((done, e)),
            }
        }
        Ok(())
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

impl LinuxUdp {
    /// Sends up to MAX_BATCH datagrams as GSO groups: one message per run
    /// of equal-size datagrams, each datagram its own iovec (no copying).
    fn send_gso(
        &self,
        bufs: &[&[u8]],
        name: &mut RawAddr,
        namelen: libc::socklen_t,
        src: Option<&LocalAddr>,
    ) -> Result<(), (usize, io::Error)> {
        if bufs.len() <= SMALL_BATCH {
            self.send_gso_n::<SMALL_BATCH>(bufs, name, namelen, src)
        } else {
            self.send_gso_n::<MAX_BATCH>(bufs, name, namelen, src)
        }
    }

    /// [`Self::send_gso`] with arrays of N entries.
    /// An error's index is that of the first datagram of the group it
    /// concerns.
    fn send_gso_n<const N: usize>(
        &self,
        bufs: &[&[u8]],
        name: &mut RawAddr,
        namelen: libc::socklen_t,
        src: Option<&LocalAddr>,
    ) -> Result<(), (usize, io::Error)> {
        let n = bufs.len();
        assert!(n <= N);
        let mut lens = [0usize; N];
        for (l, b) in lens.iter_mut().zip(bufs) {
            *l = b.len();
        }
        let mut groups = [(0usize, 0usize); N];
        let g = gso_groups(&lens[..n], &mut groups);
        // SAFETY (zeroed): iovec and mmsghdr are C structs valid when zeroed.
        let mut iovs: [libc::iovec; N] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
        let mut cmsgs = [const { MaybeUninit::<CmsgBuf>::uninit() }; N];
        for (iov, buf) in iovs.iter_mut().zip(bufs) {
            *iov = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
        }
        let name_ptr: *mut RawAddr = name;
        for (k, &(start, end)) in groups[..g].iter().enumerate() {
            let h = &mut hdrs[k].msg_hdr;
            h.msg_name = name_ptr.cast();
            h.msg_namelen = namelen;
            // SAFETY: start < n <= N, inside `iovs`.
            h.msg_iov = unsafe { iovs.as_mut_ptr().add(start) };
            h.msg_iovlen = end - start;
            if end - start == 1 && src.is_none() {
                continue;
            }
            // Zeroed up to what is written: CMSG_NXTHDR reads the next
            // header's length.
            let buf = cmsgs[k].write(CmsgBuf([0; CMSG_BUF]));
            h.msg_control = buf.0.as_mut_ptr().cast();
            h.msg_controllen = CMSG_BUF;
            let mut used = 0;
            // SAFETY: a pktinfo (SPACE) and a u16 cmsg fit CMSG_BUF (checked
            // above); each is written inside that buffer.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                if let Some(src) = src {
                    used += pktinfo::write(c, src);
                    c = c.cast::<u8>().add(used).cast();
                }
                if end - start > 1 {
                    (*c).cmsg_level = SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), lens[start] as u16);
                    used += libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                }
            }
            h.msg_controllen = used;
        }
        self.sendmmsg_all(&mut hdrs[..g])
            .map_err(|(k, e)| (groups[k].0, e))
    }

    /// [`Udp::send_many_from`] for one chunk, with arrays of N entries. A
    /// message whose source the kernel refuses goes again without it, and
    /// `rejected` hears its index.
    fn send_many_n<const N: usize>(
        &self,
        chunk: &[(&[u8], Endpoint)],
        rejected: &mut dyn FnMut(usize),
    ) -> io::Result<()> {
        let n = chunk.len();
        assert!(n <= N);
        let mut names = [RawAddr::zeroed(); N];
        // SAFETY (zeroed): iovec and mmsghdr are C structs valid when zeroed.
        let mut iovs: [libc::iovec; N] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
        let mut cmsgs = [const { MaybeUninit::<CmsgBuf>::uninit() }; N];
        let mut lens = [0 as libc::socklen_t; N];
        for (i, (buf, ep)) in chunk.iter().enumerate() {
            let (name, len) = RawAddr::from_std(self.dst_for_socket(ep.dst)?);
            names[i] = name;
            lens[i] = len;
            // The kernel only reads send buffers; iovec has no const variant.
            iovs[i] = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
        }
        let (iov_base, name_base) = (iovs.as_mut_ptr(), names.as_mut_ptr());
        for (i, h) in hdrs.iter_mut().take(n).enumerate() {
            // SAFETY: i < n <= N, inside both arrays.
            unsafe {
                h.msg_hdr.msg_name = name_base.add(i).cast();
                h.msg_hdr.msg_iov = iov_base.add(i);
            }
            h.msg_hdr.msg_namelen = lens[i];
            h.msg_hdr.msg_iovlen = 1;
            let ep = &chunk[i].1;
            if let Some(src) = ep.src.as_ref().filter(|s| pktinfo::fits(s, &ep.dst)) {
                let buf = cmsgs[i].write(CmsgBuf([0; CMSG_BUF]));
                h.msg_hdr.msg_control = buf.0.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = CMSG_BUF;
                // SAFETY: CMSG_BUF >= pktinfo::SPACE, inside `buf`.
                h.msg_hdr.msg_controllen =
                    unsafe { pktinfo::write(libc::CMSG_FIRSTHDR(&h.msg_hdr), src) };
            }
        }
        let mut from = 0;
        while from < n {
            match self.sendmmsg_all(&mut hdrs[from..n]) {
                Ok(()) => return Ok(()),
                Err((k, e)) => {
                    let at = from + k;
                    let h = &mut hdrs[at].msg_hdr;
                    if !source_rejected(&e) || h.msg_controllen == 0 {
                        return Err(with_context(e, format!("UDP send to {n} destinations")));
                    }
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                    rejected(at);
                    from = at;
                }
            }
        }
        Ok(())
    }

    /// recvmmsg with UDP_GRO: reads a few (possibly coalesced) messages
    /// into the first buffers, then splits them in place.
    ///
    /// Message `i` lies in `bufs[i]` and its segments go to `bufs[first[i]..]`,
    /// after those of the messages before it. Every message yields at least
    /// one entry, so `first[i] >= i`: splitting the last message first never
    /// overwrites a message not yet split, and a lone datagram is not copied
    /// at all (an idle tunnel's packets arrive to cold caches; touching one
    /// buffer instead of two is measurable there).
    fn recv_gro(
        &self,
        bufs: &mut [Vec<u8>],
        meta: &mut [RecvMeta],
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let n = bufs.len().min(meta.len()).min(MAX_BATCH);
        // Each message may hold up to 64 datagrams: read no more messages
        // than the batch has room for when all are full (wireguard-go reads
        // 2 of 128 the same way).
        let read = (n / super::udp_gso::MAX_GSO_SEGMENTS).clamp(1, GRO_READS);
        // Arrays for the messages read only: zeroing MAX_BATCH of each
        // would cost a lone datagram more than its syscall.
        let mut names = [RawAddr::zeroed(); GRO_READS];
        // SAFETY (zeroed): iovec and mmsghdr are C structs valid when zeroed.
        let mut iovs: [libc::iovec; GRO_READS] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; GRO_READS] = unsafe { zeroed() };
        let mut cmsgs = [CmsgBuf([0; CMSG_BUF]); GRO_READS];
        for i in 0..read {
            iovs[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: bufs[i].len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut names[i] as *mut RawAddr).cast();
            h.msg_namelen = size_of::<RawAddr>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = cmsgs[i].0.as_mut_ptr().cast();
            h.msg_controllen = CMSG_BUF;
        }
        // SAFETY: hdrs[..read] point at live iovecs (over caller buffers),
        // names and control buffers.
        let r = unsafe { self.recvmmsg(&mut hdrs[..read], flags)? };
        let mut msgs = [(None, 0usize, 0usize, None); GRO_READS];
        let mut first = [0usize; GRO_READS + 1];
        for i in 0..r {
            let h = &hdrs[i].msg_hdr;
            let (len, seg) = (hdrs[i].msg_len as usize, gro_size(h));
            let src = names[i].to_std(h.msg_namelen);
            // SAFETY: the kernel filled the control buffer of this header.
            let local = unsafe { pktinfo::parse(h) };
            // An unparseable source or an empty datagram is reported as one
            // empty datagram (every caller drops those), as `recv` does.
            let count = match src {
                Some(_) => gro_segments(len, seg).count().max(1),
                None => 1,
            };
            msgs[i] = (src, len, seg, local);
            first[i + 1] = first[i] + count;
        }
        for i in (0..r).rev() {
            let (src, len, seg, local) = msgs[i];
            let Some(src) = src.filter(|_| len > 0) else {
                if first[i] < n {
                    meta[first[i]] = RecvMeta::default();
                }
                continue;
            };
            for (k, (off, l)) in gro_segments(len, seg).enumerate() {
                let dst = first[i] + k;
                // With the sizing above this never triggers; it guards a
                // small batch against segments it has no room for.
                if dst >= n {
                    continue;
                }
                // dst == i only for the first segment (offset 0): in place.
                if dst > i {
                    let (front, back) = bufs.split_at_mut(dst);
                    back[0][..l].copy_from_slice(&front[i][off..off + l]);
                }
                meta[dst] = RecvMeta {
                    len: l,
                    src,
                    local,
                    connected: false,
                };
            }
        }
        Ok(first[r].min(n))
    }
}

impl LinuxUdp {
    /// recvmmsg over `hdrs`: with MSG_WAITFORONE it blocks up to SO_RCVTIMEO
    /// for the first datagram, then takes what is already queued; with
    /// MSG_DONTWAIT it never blocks. A timeout or signal is Ok(0); a closed
    /// socket an error.
    ///
    /// # Safety
    /// Every header must point at live buffers for the call's duration.
    unsafe fn recvmmsg(&self, hdrs: &mut [libc::mmsghdr], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: the caller vouches for the headers.
        let r = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        // close() wakes a blocked receiver with a shutdown, which may look
        // like an empty datagram: the flag decides.
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }
}

/// The GRO segment size a received message carries, 0 if none.
fn gro_size(h: &libc::msghdr) -> usize {
    // SAFETY: walks the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                return std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>()).max(0)
                    as usize;
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    0
}

impl LinuxUdp {
    /// `recv` with recvmmsg `flags` (blocking or not).
    fn recv_with(
        &self,
        bufs: &mut [Vec<u8>],
        meta: &mut [RecvMeta],
        flags: libc::c_int,
    ) -> io::Result<usize> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        if self.gro && bufs.len().min(meta.len()) > 0 {
            return self.recv_gro(bufs, meta, flags);
        }
        let n = bufs.len().min(meta.len()).min(MAX_BATCH);
        if n == 0 {
            return Ok(0);
        }
        let mut names = [RawAddr::zeroed(); MAX_BATCH];
        // SAFETY (zeroed): iovec and mmsghdr are C structs valid when zeroed.
        let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        // Filled by the kernel and read only within what it reports.
        let mut cmsgs = [const { MaybeUninit::<CmsgBuf>::uninit() }; MAX_BATCH];
        for (iov, buf) in iovs.iter_mut().zip(bufs.iter_mut()) {
            *iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
        }
        let (iov_base, name_base) = (iovs.as_mut_ptr(), names.as_mut_ptr());
        for (i, h) in hdrs.iter_mut().take(n).enumerate() {
            // SAFETY: i < n <= MAX_BATCH, inside both arrays.
            unsafe {
                h.msg_hdr.msg_name = name_base.add(i).cast();
                h.msg_hdr.msg_iov = iov_base.add(i);
            }
            h.msg_hdr.msg_namelen = size_of::<RawAddr>() as libc::socklen_t;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_BUF;
        }
        // With MSG_WAITFORONE: blocks up to SO_RCVTIMEO for the first
        // datagram, then takes whatever else is already queued.
        // SAFETY: hdrs[..n] point at live iovecs (over caller buffers) and names.
        let got = unsafe { self.recvmmsg(&mut hdrs[..n], flags)? };
        for i in 0..got {
            let h = &hdrs[i].msg_hdr;
            // An unparseable source cannot be answered; an empty datagram is
            // dropped by every caller, so report it as one.
            meta[i] = match names[i].to_std(h.msg_namelen) {
                Some(src) => RecvMeta {
                    len: hdrs[i].msg_len as usize,
                    src,
                    // SAFETY: the kernel filled this header's control buffer.
                    local: unsafe { pktinfo::parse(h) },
                    connected: false,
                },
                None => RecvMeta::default(),
            };
        }
        Ok(got)
    }
}

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
            let res = if self.gso.load(Ordering::Relaxed) && chunk.len() > 1 {
                self.send_gso(chunk, &mut name, namelen, src.as_ref())
            } else {
                self.send_chunk(chunk, &mut name, namelen, src.as_ref())
            };
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
#[path = "linux_udp_tests.rs"]
mod tests;
