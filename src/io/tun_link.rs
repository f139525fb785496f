//! A TUN's link state, read through its descriptor, wherever the interface
//! lives.
//!
//! `ip link set wg0 netns other` moves the interface and leaves the daemon
//! (and its UDP socket) where they were: the descriptor keeps working, but
//! looking the interface up by name or index in the daemon's namespace
//! finds nothing (or another interface). So:
//! - *gone or not* comes from the descriptor alone, as wireguard-go does it:
//!   a zero-length write answers EINVAL while the device is attached (EIO
//!   while it is down, on kernels that check that first; current ones say
//!   EINVAL either way) and EBADFD once it was deleted;
//! - *up or down* and the MTU come from an interface ioctl on a socket in
//!   the namespace the interface lives in now (TUNGETDEVNETNS, Linux 5.2),
//!   for the name the device has now (TUNGETIFF). Sockets belong to the
//!   namespace they were created in, so one made there (on a short-lived
//!   thread that joins it) keeps answering for it; it is kept until the
//!   interface moves again.
//!
//! Where the namespace cannot be joined (no CAP_SYS_ADMIN there, as after
//! the privilege drop) rtnetlink answers instead (tun_link_netlink); where
//! that fails too the state is "up" as far as can be told: never a false
//! "down", never "gone".
use super::LinkState;
use parking_lot::Mutex;
use std::io;
use std::mem::zeroed;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `_IO('T', 227)`: a descriptor for the device's network namespace.
const TUNGETDEVNETNS: libc::c_ulong = 0x54e3;

/// What a zero-length write says about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Attached,
    /// EIO: attached, and the kernel says the link is down.
    Down,
    Gone,
}

/// Probes `fd` with a zero-length write (no packet is ever sent).
pub fn probe(fd: RawFd) -> Probe {
    // SAFETY: a zero-length write reads no memory.
    let r = unsafe { libc::write(fd, [0u8; 1].as_ptr().cast(), 0) };
    if r >= 0 {
        return Probe::Attached;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EINVAL | libc::EAGAIN | libc::EINTR | libc::ENOBUFS | libc::ENOMEM) => {
            Probe::Attached
        }
        Some(libc::EIO) => Probe::Down,
        _ => Probe::Gone,
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The device's current name (it follows renames), via TUNGETIFF.
fn current_name(fd: RawFd) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    // SAFETY: ifreq is plain data; TUNGETIFF fills it or fails.
    let mut req: libc::ifreq = unsafe { zeroed() };
    cvt(unsafe { libc::ioctl(fd, libc::TUNGETIFF as _, &mut req as *mut libc::ifreq) })?;
    Ok(req.ifr_name)
}

/// The inode of a namespace file: which namespace it is.
fn ns_inode(fd: RawFd) -> io::Result<u64> {
    // SAFETY: fstat writes one stat struct.
    let mut st: libc::stat = unsafe { zeroed() };
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st.st_ino)
}

fn dgram_socket() -> io::Result<OwnedFd> {
    let open = |family| {
        // SAFETY: plain socket creation.
        cvt(unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
    };
    let fd = open(libc::AF_INET)
        .or_else(|_| open(libc::AF_INET6))
        .or_else(|_| open(libc::AF_UNIX))?;
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A socket created inside the namespace `ns` (a thread joins it for that).
fn socket_in(ns: OwnedFd) -> io::Result<OwnedFd> {
    std::thread::Builder::new()
        .name("pm-netns".into())
        .spawn(move || {
            // SAFETY: setns on this thread only, with a namespace descriptor.
            cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
            dgram_socket()
        })?
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
}

/// Link queries for one TUN descriptor.
pub struct TunLink {
    own_ns: Option<u64>,
    /// The namespace the interface was last found in, and a socket there
    /// (None: it could not be made).
    sock: Mutex<Option<(u64, Option<OwnedFd>)>>,
}

impl Default for TunLink {
    fn default() -> Self {
        Self::new()
    }
}

impl TunLink {
    pub fn new() -> TunLink {
        let own_ns = std::fs::File::open("/proc/thread-self/ns/net")
            .ok()
            .and_then(|f| ns_inode(f.as_raw_fd()).ok());
        TunLink {
            own_ns,
            sock: Mutex::new(None),
        }
    }

    /// Whether the device behind `fd` is still attached (not deleted).
    pub fn exists(fd: RawFd) -> bool {
        probe(fd) != Probe::Gone
    }

    /// Up, down or gone, wherever the interface lives.
    pub fn state(&self, fd: RawFd) -> LinkState {
        match probe(fd) {
            Probe::Gone => LinkState::Gone,
            Probe::Down => LinkState::Down,
            Probe::Attached => match self.ifreq(fd, libc::SIOCGIFFLAGS) {
                // SAFETY: SIOCGIFFLAGS filled the flags member.
                Ok(req)
                    if unsafe { req.ifr_ifru.ifru_flags } as u16 as libc::c_int & libc::IFF_UP
                        == 0 =>
                {
                    LinkState::Down
                }
                Ok(_) => LinkState::Up,
                // Detached between the probe and the ioctl.
                Err(_) if probe(fd) == Probe::Gone => LinkState::Gone,
                Err(_) => LinkState::Up,
            },
        }
    }

    /// The MTU, wherever the interface lives.
    pub fn mtu(&self, fd: RawFd) -> io::Result<usize> {
        let req = self.ifreq(fd, libc::SIOCGIFMTU)?;
        // SAFETY: SIOCGIFMTU filled the mtu member.
        Ok(unsafe { req.ifr_ifru.ifru_mtu }.max(0) as usize)
    }

    fn device_ns(&self, fd: RawFd) -> io::Result<OwnedFd> {
        // SAFETY: TUNGETDEVNETNS takes no argument and returns a new fd.
        let ns = cvt(unsafe { libc::ioctl(fd, TUNGETDEVNETNS as _) })?;
        // SAFETY: a fresh descriptor we own from here on.
        Ok(unsafe { OwnedFd::from_raw_fd(ns) })
    }

    /// Runs an interface ioctl for the device's current name on a socket in
    /// its current namespace.
    fn ifreq(&self, fd: RawFd, request: libc::c_ulong) -> io::Result<libc::ifreq> {
        let name = current_name(fd)?;
        let mut slot = self.sock.lock();
        let inode = match self.device_ns(fd) {
            Ok(ns) => {
                let inode = ns_inode(ns.as_raw_fd())?;
                if slot.as_ref().map(|(i, _)| *i) != Some(inode) {
                    let home = Some(inode) == self.own_ns;
                    let sock = if home { dgram_socket() } else { socket_in(ns) };
                    if !home {
                        match &sock {
                            Ok(_) => tracing::info!(
                                "the TUN now lives in another network namespace; following it there"
                            ),
                            Err(e) => tracing::warn!(
                                error = %e,
                                "the TUN now lives in another network namespace that cannot be joined; reading its state through rtnetlink"
                            ),
                        }
                    }
                    // A failure is remembered until the interface moves again.
                    *slot = Some((inode, sock.ok()));
                }
                inode
            }
            // A kernel without TUNGETDEVNETNS (before 5.2): this namespace.
            Err(_) => self.own_ns.unwrap_or(0),
        };
        if slot.as_ref().map(|(i, _)| *i) != Some(inode) {
            *slot = Some((inode, dgram_socket().ok()));
        }
        let Some(sock) = slot.as_ref().and_then(|(_, s)| s.as_ref()) else {
            // The namespace could not be joined (no CAP_SYS_ADMIN, as after
            // the privilege drop): ask rtnetlink from here instead.
            return self.netlink_ifreq(fd, name, request);
        };
        // SAFETY: ifreq is plain data.
        let mut req: libc::ifreq = unsafe { zeroed() };
        req.ifr_name = name;
        // SAFETY: the request reads/writes one ifreq, which `req` is.
        cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &mut req as *mut libc::ifreq) })?;
        Ok(req)
    }

    /// [`Self::ifreq`]'s answer for SIOCGIFFLAGS or SIOCGIFMTU, from
    /// rtnetlink (see tun_link_netlink).
    fn netlink_ifreq(
        &self,
        fd: RawFd,
        name: [libc::c_char; libc::IFNAMSIZ],
        request: libc::c_ulong,
    ) -> io::Result<libc::ifreq> {
        let ns = self.device_ns(fd)?;
        let (flags, mtu) = super::tun_link_netlink::link_in(ns.as_raw_fd(), &name)?;
        // SAFETY: ifreq is plain data.
        let mut req: libc::ifreq = unsafe { zeroed() };
        req.ifr_name = name;
        match request {
            libc::SIOCGIFFLAGS => req.ifr_ifru.ifru_flags = flags as libc::c_short,
            libc::SIOCGIFMTU => req.ifr_ifru.ifru_mtu = mtu as libc::c_int,
            _ => return Err(io::Error::other("unsupported request")),
        }
        Ok(req)
    }
}

#[cfg(test)]
#[path = "tun_link_tests.rs"]
mod tests;
