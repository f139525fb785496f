//! The I/O thread(s): wait on one epoll set that holds the TUN and the UDP
//! socket, each registered one-shot, and handle whichever is ready.
//!
//! Why: on an idle tunnel, a dedicated TUN reader and a dedicated UDP
//! receiver hand every round trip from one thread to the other (the request
//! leaves through the reader, the reply comes back through the receiver),
//! and each hand-off is a wake-up, often on the other CPU (on KVM an IPI to
//! a halted vCPU costs tens of µs). With one I/O thread the thread that
//! sent a request is the one that receives the reply, as in boringtun's
//! loop. The crypto workers behind it are unchanged.
//!
//! How many: [`super::options::default_io_threads`]. With several threads,
//! one-shot registration hands each descriptor to one thread at a time (it
//! re-arms it once its batch is queued), so two threads work the TUN and
//! the socket in parallel under load; a lone thread registers them
//! level-triggered and re-arms nothing, and one wait serves both halves
//! when both are ready (`benches/scripts/profile-stream.sh`: 8.8 system
//! calls per 64 KiB tunnelled on the sender and 10.1 on the receiver with
//! one-shot, 6.6 and 8.6 without). But at idle
//! the second one is woken by whatever becomes ready while the first is
//! busy (the reply to the packet it is sending), which costs the round trip
//! what the shared set saves: measured on the 2-vCPU VM, per-ping p50 392
//! µs with two threads, 380 with one, 400 with the dedicated loops; and one
//! thread carried the same TCP throughput there (2647 and 2088 Mbit/s with
//! one and four streams, against 2208 and 2240 for the dedicated loops):
//! two cores have no room for a second I/O thread beside the crypto.
//!
//! It is the only way packets enter the device: every TUN (the in-memory
//! one too) has a poll descriptor, and so has every socket the device
//! reads, so tests run this loop as the daemon does.
use super::{send, Shared};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// Environment override of [`super::options::default_io_threads`].
pub const IO_THREADS_ENV: &str = "PHANTOMMESH_IO_THREADS";

const TUN: u64 = 0;
const UDP: u64 = 1;
const WAKE: u64 = 2;
/// Longest wait before a thread refreshes its heartbeat (liveness allows
/// 5 s). Shutdown and a replaced socket do not wait for it: they ring
/// [`Wake`].
const WAIT: Duration = Duration::from_secs(1);

/// An eventfd that wakes the I/O threads: rung when the device closes and
/// when the UDP socket is replaced (a listen-port change), so neither waits
/// for a timeout, and an idle thread need not wake up to look.
pub struct Wake(Option<OwnedFd>);

impl Wake {
    /// A new eventfd; without one (never on Linux) the threads still see
    /// both changes within [`WAIT`].
    pub fn new() -> Wake {
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        // SAFETY: a fresh descriptor we own from here on.
        Wake((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wakes a thread waiting on the set (each write wakes one; the
    /// eventfd stays readable until a thread drains it).
    pub fn ring(&self) {
        if let Some(fd) = &self.0 {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64. EAGAIN (counter full)
            // means it is ringing already.
            let _ = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    fn drain(&self) {
        if let Some(fd) = &self.0 {
            let mut n: u64 = 0;
            // SAFETY: reads at most 8 bytes into a live u64.
            let _ = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
        }
    }

    fn fd(&self) -> Option<RawFd> {
        self.0.as_ref().map(|f| f.as_raw_fd())
    }
}

impl Default for Wake {
    fn default() -> Wake {
        Wake::new()
    }
}

/// The shared epoll set.
pub struct IoPoll {
    epoll: OwnedFd,
    tun: RawFd,
    /// The UDP socket generation (`Shared::udp_generation`) registered.
    udp_generation: AtomicU64,
    /// The registered socket's descriptor (-1: none), read lock-free on
    /// every re-arm; `follow` serialises its changes.
    udp_fd: AtomicI32,
    follow: parking_lot::Mutex<()>,
    /// Cleared when the TUN is gone (or shut down): it stays disarmed.
    tun_open: AtomicBool,
    /// Several threads share the set: each descriptor is registered
    /// one-shot, so one thread at a time reads it, and re-armed after its
    /// batch. One thread registers them level-triggered instead: no re-arm,
    /// an `epoll_ctl` fewer per wake-up (about one per 64 KiB each way).
    oneshot: bool,
}

impl IoPoll {
    /// The set for `s`, holding its TUN and its wake-up eventfd, for
    /// `threads` I/O threads.
    pub fn new(s: &Shared, threads: usize) -> io::Result<IoPoll> {
        let tun = s.tun.poll_fd();
        // SAFETY: epoll_create1 has no memory preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own from here on.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let io = IoPoll {
            epoll,
            tun,
            udp_generation: AtomicU64::new(0),
            udp_fd: AtomicI32::new(-1),
            follow: parking_lot::Mutex::new(()),
            tun_open: AtomicBool::new(true),
            oneshot: threads > 1,
        };
        io.ctl(libc::EPOLL_CTL_ADD, tun, TUN)?;
        if let Some(wake) = s.io_wake.fd() {
            // Level-triggered, not one-shot: every waiting thread sees it.
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: WAKE,
            };
            // SAFETY: both descriptors are ours; `ev` outlives the call.
            let r = unsafe {
                libc::epoll_ctl(io.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, wake, &mut ev)
            };
            if r != 0 {
                tracing::debug!(
                    "cannot poll the wake-up eventfd ({}); changes are seen within {WAIT:?}",
                    io::Error::last_os_error()
                );
            }
        }
        Ok(io)
    }

    /// Registers (`ADD`), re-arms (`MOD`) or removes (`DEL`) `fd`: for one
    /// readable event when threads share the set, else level-triggered.
    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
        let oneshot = if self.oneshot { libc::EPOLLONESHOT } else { 0 };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | oneshot) as u32,
            u64: token,
        };
        // SAFETY: both descriptors are ours; `ev` outlives the call.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the ready descriptors (TUN, UDP, wake-up: at most 3) and
    /// returns how many of `evs` it filled (0 on timeout or signal). One
    /// wait serves both halves when both are ready, as under bulk traffic
    /// (data one way, ACKs the other).
    fn wait(&self, evs: &mut [libc::epoll_event; 3]) -> usize {
        // SAFETY: `evs` has room for the 3 events passed as the count.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                evs.as_mut_ptr(),
                evs.len() as i32,
                WAIT.as_millis() as i32,
            )
        };
        n.max(0) as usize
    }

    /// Makes the TUN readable again for the set (one-shot only).
    fn rearm_tun(&self) {
        if self.oneshot {
            let _ = self.ctl(libc::EPOLL_CTL_MOD, self.tun, TUN);
        }
    }

    /// The TUN is gone or shut: level-triggered, it would wake the loop
    /// for good; one-shot, it simply stays disarmed.
    fn drop_tun(&self) {
        self.tun_open.store(false, Ordering::Relaxed);
        if !self.oneshot {
            let _ = self.ctl(libc::EPOLL_CTL_DEL, self.tun, TUN);
        }
    }

    /// Registers the current UDP socket when it was replaced (a listen-port
    /// change). A closed socket leaves the set by itself.
    fn follow_udp(&self, s: &Shared) {
        let generation = s.udp_generation.load(Ordering::Acquire);
        if self.udp_generation.load(Ordering::Acquire) == generation {
            return;
        }
        let _serial = self.follow.lock();
        if self.udp_generation.load(Ordering::Acquire) == generation {
            return;
        }
        let old = self.udp_fd.swap(-1, Ordering::AcqRel);
        if old >= 0 {
            // Usually gone already (closed); an error here means just that.
            let _ = self.ctl(libc::EPOLL_CTL_DEL, old, UDP);
        }
        if let Some(new) = s.current_udp().and_then(|u| u.poll_fd()) {
            match self.ctl(libc::EPOLL_CTL_ADD, new, UDP) {
                Ok(()) => self.udp_fd.store(new, Ordering::Release),
                Err(e) => tracing::warn!("cannot poll the UDP socket: {e}"),
            }
        }
        self.udp_generation.store(generation, Ordering::Release);
    }

    fn rearm_udp(&self) {
        let fd = self.udp_fd.load(Ordering::Acquire);
        if fd >= 0 && self.oneshot {
            // Fails only for a socket closed meanwhile (replaced; see above).
            let _ = self.ctl(libc::EPOLL_CTL_MOD, fd, UDP);
        }
    }
}

/// One I/O thread (the device runs [`super::options::default_io_threads`] of them).
pub fn run(s: &Shared, io: &IoPoll) {
    // SAFETY: epoll_event is a C struct valid when zeroed.
    let mut evs: [libc::epoll_event; 3] = unsafe { std::mem::zeroed() };
    while !s.shutdown.load(Ordering::Relaxed) {
        // The TUN side is alive while the TUN is; the UDP side always.
        if io.tun_open.load(Ordering::Relaxed) {
            s.heartbeat(super::HB_SEND);
        }
        s.heartbeat(super::HB_RECEIVE);
        io.follow_udp(s);
        let n = io.wait(&mut evs);
        for ev in &evs[..n] {
            match ev.u64 {
                TUN => {
                    if let Err(e) = send::read_ready_batch(s) {
                        if !send::keep_reading_after(s, &e) {
                            io.drop_tun();
                        }
                    }
                    if io.tun_open.load(Ordering::Relaxed) {
                        io.rearm_tun();
                    }
                }
                UDP => {
                    if let Some(udp) = s.current_udp() {
                        // Err: closed for a rebind or shutdown; the next
                        // turn follows the new socket.
                        let _ = s.receiver.lock().pass(s, &*udp);
                    }
                    io.rearm_udp();
                }
                // Shutdown or a new socket: the loop's head looks at both.
                // On shutdown the eventfd stays readable for the other
                // threads.
                WAKE if !s.shutdown.load(Ordering::Acquire) => s.io_wake.drain(),
                _ => {}
            }
        }
    }
}
