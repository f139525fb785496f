//! Linux TUN (one queue, IFF_TUN | IFF_NO_PI) and link configuration helpers.
//!
//! Hand-rolled on libc rather than tun-rs: what is needed now (open, adopt a
//! descriptor from WG_TUN_FD, poll with a timeout and drain, notice deletion)
//! is a few ioctls, and owning them keeps close/exists semantics exact.
//! tun-rs remains the candidate for the later offload issue (IFF_VNET_HDR +
//! TUNSETOFFLOAD, GSO split and GRO coalescing): such a mode would open with
//! extra flags and put a virtio_net_hdr in front of each packet, which the
//! caller-reserved `offset` in every buffer already leaves room for.
//!
//! Here: the device itself. `link.rs` has the link helpers (ioctls for MTU
//! and flags, one rtnetlink request per address change, built in
//! `netlink.rs`: no `ip` command, no async netlink stack);
//! `test_support.rs` the gates of the privileged tests.
use std::ffi::CStr;
use std::io;
use std::mem::zeroed;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::Tun;

mod link;
mod netlink;
#[cfg(test)]
pub(crate) mod test_support;

pub use link::{add_address, del_address, get_mtu, is_up, set_mtu, set_up, validate_name};
use link::{cvt, ifreq_for, ifreq_name, with_context};

/// Longest a `read` waits before returning `Ok(0)`.
pub const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// Tries after EAGAIN/ENOBUFS before one written packet is dropped.
const WRITE_RETRIES: u32 = 3;

/// A TUN device opened by this process or handed over as a descriptor.
///
/// `close` wakes blocked readers (an eventfd in the poll set) and releases the
/// device at once, so the kernel removes the interface like wireguard-go's
/// Close. It does so by pointing the descriptor number at /dev/null with dup3:
/// the number stays valid until drop, so no thread can ever touch a recycled
/// descriptor.
pub struct LinuxTun {
    fd: OwnedFd,
    wake: OwnedFd,
    name: String,
    link: super::tun_link::TunLink,
    closed: AtomicBool,
    write_drops: AtomicU64,
}

fn open_error(e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            "load the tun module; in a container, expose /dev/net/tun"
        }
        _ => "needs CAP_NET_ADMIN",
    };
    io::Error::new(e.kind(), format!("cannot open /dev/net/tun: {e} ({hint})"))
}

fn setiff_error(e: io::Error, name: &str) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => "needs CAP_NET_ADMIN",
        Some(libc::EBUSY) => "the interface is in use by another process",
        Some(libc::EINVAL) => "an interface of another kind may already use this name",
        _ => "TUNSETIFF failed",
    };
    io::Error::new(e.kind(), format!("cannot create TUN {name}: {e} ({hint})"))
}

/// Errors on a TUN descriptor meaning the interface is gone.
fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD)
            | Some(libc::EIO)
            | Some(libc::ENODEV)
            | Some(libc::ENXIO)
            | Some(libc::EBADF)
            | Some(libc::EPIPE)
    )
}

fn set_fd_flags(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        cvt(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK))?;
        // Hooks the daemon may run must not inherit the device.
        let fd_flags = cvt(libc::fcntl(fd, libc::F_GETFD))?;
        cvt(libc::fcntl(fd, libc::F_SETFD, fd_flags | libc::FD_CLOEXEC))?;
    }
    Ok(())
}

impl LinuxTun {
    /// Creates (or attaches to) TUN `name`, in the calling thread's network namespace.
    pub fn create(name: &str) -> io::Result<LinuxTun> {
        validate_name(name)?;
        let path = c"/dev/net/tun";
        // SAFETY: a valid path; the result is owned right away.
        let fd = cvt(unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        })
        .map_err(open_error)?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = ifreq_for(name)?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq.
        cvt(unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETIFF as _,
                &mut req as *mut libc::ifreq,
            )
        })
        .map_err(|e| setiff_error(e, name))?;
        let actual = ifreq_name(&req);
        Self::finish(fd, actual)
    }

    /// Adopts an open TUN descriptor (WG_TUN_FD). Takes ownership of `fd`: it
    /// is closed when the device is dropped, or at once if this fails. The
    /// kernel's name for the device wins over `name_hint`.
    ///
    /// The descriptor must have been opened with IFF_NO_PI, as wireguard-go
    /// also assumes: TUNGETIFF cannot tell, since it reports IFF_NOFILTER in
    /// the same bit. TAP and IFF_VNET_HDR descriptors are refused.
    pub fn from_fd(fd: RawFd, name_hint: Option<&str>) -> io::Result<LinuxTun> {
        if fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid TUN descriptor {fd}"),
            ));
        }
        // SAFETY: the caller hands `fd` over (documented above); nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ifreq is plain data; TUNGETIFF fills name and flags.
        let mut req: libc::ifreq = unsafe { zeroed() };
        cvt(unsafe { libc::ioctl(fd, libc::TUNGETIFF as _, &mut req as *mut libc::ifreq) })
            .map_err(|e| {
                with_context(e, format!("descriptor {fd} is not an attached TUN device"))
            })?;
        // SAFETY: TUNGETIFF filled the flags member.
        let flags = unsafe { req.ifr_ifru.ifru_flags } as u16 as libc::c_int;
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN descriptor {fd}: {why}"),
            )
        };
        if flags & libc::IFF_TUN == 0 {
            return Err(bad("a TAP device, not TUN"));
        }
        if flags & libc::IFF_VNET_HDR != 0 {
            return Err(bad("opened with IFF_VNET_HDR, which is not supported yet"));
        }
        let name = ifreq_name(&req);
        if let Some(hint) = name_hint.filter(|h| *h != name) {
            tracing::warn!("TUN descriptor {fd} belongs to {name}, not {hint}; using {name}");
        }
        set_fd_flags(fd)?;
        Self::finish(owned, name)
    }

    fn finish(fd: OwnedFd, name: String) -> io::Result<LinuxTun> {
        // SAFETY: plain eventfd creation; the result is owned right away.
        let wake = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: just created, owned by nobody else.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        Ok(LinuxTun {
            fd,
            wake,
            name,
            link: super::tun_link::TunLink::new(),
            closed: AtomicBool::new(false),
            write_drops: AtomicU64::new(0),
        })
    }

    /// Packets dropped on write because the kernel refused them (malformed, or no memory).
    pub fn write_drops(&self) -> u64 {
        self.write_drops.load(Ordering::Relaxed)
    }

    fn closed_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotConnected,
            format!("TUN {} is closed", self.name),
        )
    }

    fn fd_error(&self, e: io::Error, op: &str) -> io::Error {
        if is_gone(&e) {
            io::Error::new(e.kind(), format!("TUN {} is gone ({op}: {e})", self.name))
        } else {
            with_context(e, format!("TUN {} {op}", self.name))
        }
    }

    /// Writes one packet: retries briefly on transient errors, drops (counted)
    /// packets the kernel rejects, returns errors that concern the device.
    fn write_one(&self, packet: &[u8]) -> io::Result<()> {
        let mut retries = 0;
        loop {
            // SAFETY: `packet` is readable for its length.
            let r =
                unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOBUFS)
                    if retries < WRITE_RETRIES =>
                {
                    retries += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                // Not a valid IP packet, or still no memory: drop this one only.
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOBUFS)
                | Some(libc::EINVAL) | Some(libc::EMSGSIZE) => {
                    self.write_drops.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                _ => return Err(self.fd_error(e, "write")),
            }
        }
    }
}

impl LinuxTun {
    /// Polls the TUN (and the close eventfd) for up to `timeout`: the TUN's
    /// revents, or None on timeout or a signal.
    fn poll_readable(&self, timeout: std::time::Duration) -> io::Result<Option<i16>> {
        let mut fds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as libc::c_int) };
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(self.fd_error(e, "poll"))
            };
        }
        Ok((r > 0).then_some(fds[0].revents))
    }

    fn gone_error(&self, revents: i16) -> io::Error {
        let msg = format!("TUN {} is gone (poll revents {revents:#x})", self.name);
        io::Error::new(io::ErrorKind::BrokenPipe, msg)
    }

    /// Reads what is queued now (the fd is non-blocking): that is the batch.
    fn drain(&self, bufs: &mut [Vec<u8>], sizes: &mut [usize], offset: usize) -> io::Result<usize> {
        let max = bufs.len().min(sizes.len());
        let mut n = 0;
        while n < max {
            // Checked as each buffer is reached: a pass over the whole batch
            // first would touch every buffer for one packet.
            let Some(buf) = bufs[n].get_mut(offset..).filter(|b| !b.is_empty()) else {
                if n > 0 {
                    break;
                }
                let msg = format!(
                    "no room after offset {offset} in a buffer of {} bytes",
                    bufs[n].len()
                );
                return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
            };
            // SAFETY: `buf` is writable for its length.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r >= 0 {
                sizes[n] = r as usize;
                n += 1;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => break,
                // Hand out what was read; the error comes back on the next call.
                _ if n > 0 => break,
                _ => return Err(self.fd_error(e, "read")),
            }
        }
        Ok(n)
    }
}

impl LinuxTun {
    /// Waits up to `timeout` until a packet can be read (Ok(false) on
    /// timeout); for tests and tools that read without an epoll set.
    pub fn wait_readable(&self, timeout: std::time::Duration) -> io::Result<bool> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        match self.poll_readable(timeout)? {
            None => Ok(false),
            // POLLERR with nothing to read would make every later poll
            // return at once: report it instead of spinning.
            Some(revents) if revents & libc::POLLIN == 0 => Err(self.gone_error(revents)),
            Some(_) => Ok(true),
        }
    }

    /// [`Tun::read`] after waiting up to [`READ_TIMEOUT`] for a packet.
    pub fn read_wait(
        &self,
        bufs: &mut [Vec<u8>],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        if !self.wait_readable(READ_TIMEOUT)? {
            return Ok(0);
        }
        self.read(bufs, sizes, offset)
    }

    /// Whether the interface still exists (false once it was deleted).
    /// Asks the descriptor, not the name: the interface may have been
    /// moved to another network namespace (see [`super::tun_link`]).
    pub fn exists(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
            && super::tun_link::TunLink::exists(self.fd.as_raw_fd())
    }
}

impl Tun for LinuxTun {
    fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn features(&self) -> super::TunFeatures {
        super::TunFeatures::PLAIN
    }

    fn read(&self, bufs: &mut [Vec<u8>], sizes: &mut [usize], offset: usize) -> io::Result<usize> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        self.drain(bufs, sizes, offset)
    }

    fn write(&self, bufs: &mut [&mut Vec<u8>], offset: usize) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        for b in bufs.iter() {
            let packet = b.get(offset..).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("offset {offset} beyond a {}-byte buffer", b.len()),
                )
            })?;
            self.write_one(packet)?;
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn mtu(&self) -> io::Result<usize> {
        self.link
            .mtu(self.fd.as_raw_fd())
            .or_else(|_| get_mtu(&self.name))
    }

    fn link_state(&self) -> super::LinkState {
        if self.closed.load(Ordering::Acquire) {
            return super::LinkState::Gone;
        }
        self.link.state(self.fd.as_raw_fd())
    }

    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array to our eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        let null: &CStr = c"/dev/null";
        // SAFETY: a valid path; the descriptor is closed right after dup3.
        let placeholder = unsafe { libc::open(null.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if placeholder < 0 {
            tracing::warn!(
                "TUN {} close: stays open until drop: {}",
                self.name,
                io::Error::last_os_error()
            );
            return;
        }
        // SAFETY: both descriptors are open; dup3 atomically repoints ours.
        unsafe {
            if libc::dup3(placeholder, self.fd.as_raw_fd(), libc::O_CLOEXEC) < 0 {
                tracing::warn!(
                    "TUN {} close: stays open until drop: {}",
                    self.name,
                    io::Error::last_os_error()
                );
            }
            libc::close(placeholder);
        }
    }
}

#[cfg(test)]
mod tests;
