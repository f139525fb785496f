//! I/O behind small traits, as wireguard-go's tun.Device and conn.Bind.
//!
//! The packet path only sees [`Tun`] and [`Udp`]; Linux backends live in
//! [`linux_tun`] and [`linux_udp`], and [`mem`] provides in-memory backends so
//! a pair of devices can hold a whole conversation in a unit test, no root.
//!
//! Batches: every call moves a slice of buffers. Buffers are owned by the
//! caller and reused (no allocation per packet). Packets sit at `offset` in
//! their buffer so the caller can prepend the WireGuard header in place.
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub mod linux_bind;
pub mod linux_tun;
pub mod linux_udp;
pub mod mem;
pub mod offload_tun;
pub mod peer_sockets;
pub mod pktinfo;
pub mod tun_link;
mod tun_link_netlink;
pub mod udp_gso;

/// Most packets moved by one call.
pub const MAX_BATCH: usize = 128;

/// Room writers leave in front of each packet (a virtio-net header).
pub const WRITE_HEADROOM: usize = 12;

/// A TUN interface's state, wherever it lives (it may have been moved to
/// another network namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Administratively up (or up as far as can be told).
    Up,
    Down,
    /// Deleted: the descriptor is detached.
    Gone,
}

/// What a TUN can do beyond moving packets, fixed when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunFeatures {
    /// Slots one read syscall may fill: [`Tun::read`] given exactly this
    /// many makes one syscall (a TSO super-packet splits into up to 64).
    pub slots_per_read: usize,
    /// Kernel offloads in use: TCP and UDP segmentation (virtio-net header).
    pub tso: bool,
    pub uso: bool,
}

impl TunFeatures {
    /// A plain TUN: one packet per read, no offloads.
    pub const PLAIN: TunFeatures = TunFeatures {
        slots_per_read: 1,
        tso: false,
        uso: false,
    };

    /// The offloads by name ("tun_tso", "tun_uso"), for status output.
    pub fn offloads(&self) -> Vec<(&'static str, bool)> {
        vec![("tun_tso", self.tso), ("tun_uso", self.uso)]
    }
}

/// A TUN device (one queue), as the device needs it: eight methods, like
/// wireguard-go's tun.Device, and one read protocol: wait on
/// [`Tun::poll_fd`] (with the UDP socket, in one epoll set), then
/// [`Tun::read`] what is queued.
pub trait Tun: Send + Sync {
    /// Reads what is queued now, without waiting (Ok(0) when nothing is):
    /// up to `bufs.len()` packets, packet `i` into `bufs[i][offset..]`, its
    /// length into `sizes[i]`. After [`Tun::close`] it returns an error.
    ///
    /// Buffers are passed whole (each Vec's length is its room), not as a
    /// slice of slices: building one for the whole batch on every read
    /// cost an idle tunnel's lone packet more than the read itself.
    fn read(&self, bufs: &mut [Vec<u8>], sizes: &mut [usize], offset: usize) -> io::Result<usize>;
    /// Writes every packet `bufs[i][offset..]` (each Vec's length marks its
    /// packet's end; `offset` leaves room in front, at least
    /// [`WRITE_HEADROOM`] bytes). The buffers may be rewritten and grown: an
    /// offloading TUN coalesces a flow's segments into the first of them
    /// (GRO), so callers reset lengths before reusing them.
    fn write(&self, bufs: &mut [&mut Vec<u8>], offset: usize) -> io::Result<()>;
    /// A descriptor that polls readable while a packet can be read (a
    /// closed TUN need not wake a waiter: the device rings its own
    /// eventfd on shutdown).
    fn poll_fd(&self) -> std::os::fd::RawFd;
    fn features(&self) -> TunFeatures;
    fn name(&self) -> &str;
    fn mtu(&self) -> io::Result<usize>;
    /// The interface's state now ([`LinkState::Gone`] once deleted).
    fn link_state(&self) -> LinkState;
    fn close(&self);
}

/// The local end of a datagram: the address it was sent to and the
/// interface it arrived on (IP_PKTINFO / IPV6_PKTINFO). Replies sent from
/// it leave from the address the peer talks to (the "sticky source" of the
/// kernel's and wireguard-go's endpoints), not from whatever address the
/// route prefers: a multihomed node otherwise answers from its first
/// address, and NATs and firewalls on the way drop that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr {
    pub ip: std::net::IpAddr,
    pub ifindex: u32,
}

/// Where a peer is: the address to send to and, once learned from its
/// authenticated packets, the local address to send from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub dst: SocketAddr,
    pub src: Option<LocalAddr>,
}

impl Endpoint {
    /// An endpoint with no sticky source (configured, not learned).
    pub fn to(dst: SocketAddr) -> Endpoint {
        Endpoint { dst, src: None }
    }
}

/// Metadata of one received datagram.
#[derive(Clone, Copy, Debug)]
pub struct RecvMeta {
    pub len: usize,
    /// Source address; IPv4-mapped IPv6 addresses are reported as IPv4.
    pub src: SocketAddr,
    /// Where it arrived, when the backend can tell.
    pub local: Option<LocalAddr>,
    /// It came on a socket connected to `src` (see [`Udp::pin`]): that
    /// endpoint is pinned already, so the device need not pin it again.
    pub connected: bool,
}

impl Default for RecvMeta {
    fn default() -> Self {
        RecvMeta {
            len: 0,
            src: SocketAddr::from(([0, 0, 0, 0], 0)),
            local: None,
            connected: false,
        }
    }
}

/// Whether a send error may mean the kernel refused the source address (it
/// is no longer local, or not usable on the route): then the sticky source
/// is dropped and the datagrams go out without it, as the kernel's and
/// wireguard-go's WireGuard do. IPv4 answers ENETUNREACH for a source that
/// is no local address (EINVAL with an interface given), IPv6
/// EADDRNOTAVAIL or EINVAL. Only asked when a source was set; if the
/// resend without it fails too, that error is the caller's.
pub fn source_rejected(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EADDRNOTAVAIL | libc::ENETUNREACH)
    )
}

/// A bound UDP endpoint (IPv4 and IPv6).
pub trait Udp: Send + Sync {
    /// Receives up to `bufs.len()` datagrams, datagram `i` into `bufs[i]`
    /// (whose length is the room it offers; `meta[i].len` says how much was
    /// used). Returns `Ok(0)` after a short internal timeout so loops can
    /// notice shutdown; an error after close. Buffers, not slices, so that
    /// a backend touches only the slots it fills.
    fn recv(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize>;
    /// Sends every buffer in `bufs` to `dst` (one batch, one destination).
    fn send(&self, bufs: &[&[u8]], dst: SocketAddr) -> io::Result<()>;
    /// Sends datagrams to several destinations at once, in order (one
    /// `sendmmsg` on Linux): many peers' single packets cost one syscall.
    fn send_many(&self, msgs: &[(&[u8], SocketAddr)]) -> io::Result<()> {
        let mut res = Ok(());
        for (buf, dst) in msgs {
            if let Err(e) = self.send(&[buf], *dst) {
                res = Err(e);
            }
        }
        res
    }
    /// As [`Udp::send`], from `ep.src` when set. A source the kernel
    /// refuses ([`source_rejected`]) is dropped for this call and the
    /// datagrams go out without it: Ok(true) says so, so the caller can
    /// forget the source.
    fn send_from(&self, bufs: &[&[u8]], ep: Endpoint) -> io::Result<bool> {
        self.send(bufs, ep.dst).map(|()| false)
    }
    /// As [`Udp::send_many`], each from its endpoint's source; `rejected`
    /// hears the index of each message whose source was refused (it went
    /// out without it).
    fn send_many_from(
        &self,
        msgs: &[(&[u8], Endpoint)],
        rejected: &mut dyn FnMut(usize),
    ) -> io::Result<()> {
        let mut res = Ok(());
        for (i, (buf, ep)) in msgs.iter().enumerate() {
            match self.send_from(&[buf], *ep) {
                Ok(true) => rejected(i),
                Ok(false) => {}
                Err(e) => res = Err(e),
            }
        }
        res
    }
    /// The bound port (the chosen one when 0 was asked for).
    fn port(&self) -> u16;
    fn close(&self);
    /// Sets SO_MARK on outgoing packets (0 clears it).
    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        let _ = mark;
        Ok(())
    }
    /// Kernel offloads in use, by name ("udp_gso", "udp_gro").
    fn offloads(&self) -> Vec<(&'static str, bool)> {
        Vec::new()
    }
    /// As [`Udp::recv`], but only what is queued now (Ok(0) when nothing
    /// is). Backends without it answer `Unsupported`.
    fn recv_ready(&self, bufs: &mut [Vec<u8>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let _ = (bufs, meta);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// As [`Tun::poll_fd`]: readable when [`Udp::recv_ready`] has datagrams.
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// Tells the backend that `ep` is an established peer's endpoint (its
    /// authenticated packets come from there): a backend may then queue
    /// that peer's datagrams apart from everything else, so a flood of
    /// strangers' handshakes cannot delay or drop them. Cheap when `ep` is
    /// already pinned, so callers may repeat it. The default does nothing.
    fn pin(&self, ep: Endpoint) {
        let _ = ep;
    }
    /// Undoes [`Udp::pin`] for `dst` (the peer moved or was removed).
    fn unpin(&self, dst: SocketAddr) {
        let _ = dst;
    }
}

/// Opens UDP endpoints: the device re-binds when `listen_port` changes.
pub trait Bind: Send + Sync {
    /// Binds `port` (0 = any) on all addresses, IPv4 and IPv6.
    /// `fwmark` is applied when non-zero.
    fn open(&self, port: u16, fwmark: u32) -> io::Result<Arc<dyn Udp>>;
}

/// Environment switch: `PHANTOMMESH_OFFLOAD=off` forces every offload off
/// (plain TUN, no UDP GSO/GRO), for comparison and as an escape hatch.
pub const OFFLOAD_ENV: &str = "PHANTOMMESH_OFFLOAD";

/// Creates TUN `name`: with kernel offloads when `offload` allows them (the
/// daemon's tuning, e.g. [`OFFLOAD_ENV`]) and the kernel supports them,
/// otherwise plain. Logs which.
pub fn create_tun(name: &str, offload: bool) -> io::Result<Arc<dyn Tun>> {
    if offload {
        match offload_tun::OffloadTun::create(name) {
            Ok(t) => {
                let f = t.features();
                tracing::info!(interface = %t.name(), tso = f.tso, uso = f.uso, "TUN offloads enabled");
                return Ok(Arc::new(t));
            }
            Err(e) => tracing::info!(error = %e, "TUN offloads unavailable; using a plain TUN"),
        }
    }
    Ok(Arc::new(linux_tun::LinuxTun::create(name)?))
}
