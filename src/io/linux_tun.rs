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
//! Link helpers use ioctls (MTU, flags) and one rtnetlink request per address
//! change (RTM_NEWADDR / RTM_DELADDR), built by hand: no `ip` command, no
//! async netlink stack.
use std::ffi::{CStr, CString};
use std::io;
use std::mem::zeroed;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::Tun;

#[path = "linux_netlink.rs"]
mod netlink;
use netlink::address_request;

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

/// Checks a name as wg-quick does: `[a-zA-Z0-9_=+.-]{1,15}`.
pub fn validate_name(name: &str) -> io::Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_=+.-".contains(c);
    if (1..libc::IFNAMSIZ).contains(&name.len()) && name.chars().all(ok_char) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid interface name {name:?}: use 1-15 characters from a-z A-Z 0-9 _ = + . -"
            ),
        ))
    }
}

fn with_context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An ifreq carrying `name`; any name the kernel could hold is accepted here
/// (helpers also serve `lo` and the like), the kernel checks the rest.
fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is a C struct (name array and a union of plain data).
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The interface index of `name` in the calling thread's namespace, 0 if none.
fn ifindex(name: &str) -> u32 {
    match CString::new(name) {
        // SAFETY: a valid NUL-terminated string.
        Ok(c) => unsafe { libc::if_nametoindex(c.as_ptr()) },
        Err(_) => 0,
    }
}

fn require_ifindex(name: &str) -> io::Result<u32> {
    match ifindex(name) {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name}"),
        )),
        i => Ok(i),
    }
}

/// Runs one interface ioctl on a throwaway datagram socket.
fn ifreq_ioctl(name: &str, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: plain socket creation; the result is owned right away.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
        .or_else(|_| {
            cvt(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
        })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the request reads/writes one ifreq, which `req` is.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) })
        .map(drop)
        .map_err(|e| with_context(e, format!("interface {name}")))
}

/// The MTU of `name`.
pub fn get_mtu(name: &str) -> io::Result<usize> {
    let mut req = ifreq_for(name)?;
    ifreq_ioctl(name, libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: SIOCGIFMTU fills the mtu member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu }.max(0) as usize)
}

/// Sets the MTU of `name` (needs CAP_NET_ADMIN).
pub fn set_mtu(name: &str, mtu: usize) -> io::Result<()> {
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("MTU {mtu} out of range"),
        )
    })?;
    ifreq_ioctl(name, libc::SIOCSIFMTU, &mut req)
        .map_err(|e| with_context(e, format!("cannot set MTU {mtu}")))
}

fn get_flags(name: &str) -> io::Result<libc::c_int> {
    let mut req = ifreq_for(name)?;
    ifreq_ioctl(name, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS fills the flags member. The kernel's flags are an
    // unsigned short: widen without sign extension.
    Ok(unsafe { req.ifr_ifru.ifru_flags } as u16 as libc::c_int)
}

/// Brings `name` up (needs CAP_NET_ADMIN).
pub fn set_up(name: &str) -> io::Result<()> {
    let flags = get_flags(name)?;
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_flags = (flags | libc::IFF_UP) as libc::c_short;
    ifreq_ioctl(name, libc::SIOCSIFFLAGS, &mut req)
        .map_err(|e| with_context(e, "cannot bring link up"))
}

/// Whether `name` exists and is administratively up.
pub fn is_up(name: &str) -> bool {
    get_flags(name).is_ok_and(|f| f & libc::IFF_UP != 0)
}

/// Adds `ip/prefix` to `name`. Adding an address that is already there
/// succeeds (NLM_F_REPLACE), so configuration can be re-applied.
pub fn add_address(name: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
    let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE;
    address_request(libc::RTM_NEWADDR, flags as u16, name, ip, prefix)
        .map_err(|e| with_context(e, format!("cannot add address {ip}/{prefix} to {name}")))
}

/// Removes `ip/prefix` from `name`.
pub fn del_address(name: &str, ip: IpAddr, prefix: u8) -> io::Result<()> {
    let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
    address_request(libc::RTM_DELADDR, flags as u16, name, ip, prefix).map_err(|e| {
        with_context(
            e,
            format!("cannot remove address {ip}/{prefix} from {name}"),
        )
    })
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

/// Gates for tests that need root and network namespaces.
#[cfg(test)]
pub(crate) mod test_support {
    /// Whether a privileged test should run. It skips (printing so) only when
    /// PHANTOMMESH_SKIP_PRIVILEGED=1; otherwise a missing root is a failure.
    pub(crate) fn privileged(test: &str) -> bool {
        if std::env::var("PHANTOMMESH_SKIP_PRIVILEGED").as_deref() == Ok("1") {
            eprintln!("skipping {test}: PHANTOMMESH_SKIP_PRIVILEGED=1");
            return false;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("{test} needs root (CAP_NET_ADMIN, network namespaces); run as root or set PHANTOMMESH_SKIP_PRIVILEGED=1 to skip it");
        }
        true
    }

    /// Waits until traffic to `ip`, just added to an interface of this
    /// thread's namespace, is delivered locally. An IPv4 address's local
    /// route exists once the kernel acknowledges the address; an IPv6
    /// address's is installed later, by its DAD work on a shared kernel
    /// workqueue (even with IFA_F_NODAD), which a loaded machine or other
    /// tests' namespace setup and teardown can delay for many milliseconds.
    /// Until then, datagrams to the address meet the prefix route, which on
    /// `lo` is a reject route, and are silently dropped.
    pub(crate) fn wait_until_local(ip: std::net::IpAddr) {
        use std::time::{Duration, Instant};
        let std::net::IpAddr::V6(v6) = ip else {
            return;
        };
        // /proc/net/ipv6_route: destination, prefix length, ..., flags, device.
        let dst = format!("{:032x}", u128::from(v6));
        let is_local = |line: &str| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() >= 10
                && f[0] == dst
                && f[1] == "80"
                && u32::from_str_radix(f[8], 16).is_ok_and(|flags| flags & RTF_LOCAL != 0)
        };
        const RTF_LOCAL: u32 = 0x8000_0000;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let routes = std::fs::read_to_string("/proc/thread-self/net/ipv6_route")
                .expect("read /proc/thread-self/net/ipv6_route");
            if routes.lines().any(is_local) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ip}: no local route after 10 s:\n{routes}"
            );
            // Polls the condition; the kernel work runs meanwhile.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs `f` on a new thread inside a fresh network namespace with `lo` up.
    /// The namespace, and every interface in it, goes away with the thread,
    /// whether `f` returns or panics: nothing is left behind on the host.
    pub(crate) fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let worker = std::thread::spawn(move || {
            // SAFETY: unshare affects only this thread (CLONE_NEWNET).
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                panic!(
                    "cannot create a network namespace (unshare CLONE_NEWNET): {}; \
                     set PHANTOMMESH_SKIP_PRIVILEGED=1 to skip privileged tests",
                    std::io::Error::last_os_error()
                );
            }
            super::set_up("lo").expect("bring up lo in the test namespace");
            f()
        });
        worker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

#[cfg(test)]
#[path = "linux_tun_tests.rs"]
mod tests;
