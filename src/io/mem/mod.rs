//! In-memory backends: a virtual UDP switch ([`MemNetwork`]) and a TUN whose
//! "kernel side" is a test handle ([`MemTun`] / [`MemTunHandle`]).
//!
//! They let whole devices talk to each other in unit tests with no root and no
//! kernel. This is test code: it allocates per packet, and favours being
//! obviously correct over being fast. Queues are bounded (like socket buffers)
//! so a stalled reader cannot grow memory without limit; overflow drops.
//!
//! The device's side of each queue is pollable: an eventfd that is readable
//! while packets are queued (and once the queue is closed), so a device on
//! these backends runs the same epoll I/O loop as on a real TUN and socket.
//!
//! Here: the bounded queue both use; `net.rs` holds the switch and its
//! sockets, `tun.rs` the TUN and its test handle.
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::{Bind, RecvMeta, Tun, Udp};

mod net;
mod tun;

pub use net::{MemBind, MemNetStats, MemNetwork, MemUdp};
pub use tun::{MemTun, MemTunHandle};

/// How long an idle `recv` (and the handle's reads) block before returning
/// `Ok(0)`.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(50);
/// Packets a queue holds before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;
/// First port handed out when port 0 is asked for (the IANA dynamic range).
const EPHEMERAL_START: u16 = 49152;

fn closed_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, format!("{what} is closed"))
}

/// A bounded FIFO with blocking batch pops: the one primitive both backends
/// use. Its eventfd is kept readable exactly while items are queued or the
/// queue is closed (set and cleared under the state lock, so it never
/// disagrees with the queue).
struct Queue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
    signal: OwnedFd,
}

struct QueueState<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Queue<T> {
    fn new() -> Self {
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(
            fd >= 0,
            "eventfd for an in-memory queue: {}",
            io::Error::last_os_error()
        );
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            // SAFETY: a fresh descriptor we own from here on.
            signal: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }

    /// Makes the eventfd readable (called with the state lock held).
    fn raise(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let _ = unsafe { libc::write(self.signal.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the eventfd unreadable (called with the state lock held).
    fn lower(&self) {
        let mut n = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64.
        let _ = unsafe { libc::read(self.signal.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    }

    fn poll_fd(&self) -> RawFd {
        self.signal.as_raw_fd()
    }

    /// Appends `item`; false when the queue is full or closed (the item is dropped).
    fn push(&self, item: T) -> bool {
        self.push_all(std::iter::once(item)) == 1
    }

    /// Appends `items` at once (a reader sees all or none of them); returns
    /// how many fit (the rest are dropped).
    fn push_all(&self, items: impl IntoIterator<Item = T>) -> usize {
        let mut st = self.state.lock();
        if st.closed {
            return 0;
        }
        let was_empty = st.items.is_empty();
        let mut n = 0;
        for item in items {
            if st.items.len() >= QUEUE_CAPACITY {
                break;
            }
            st.items.push_back(item);
            n += 1;
        }
        if n > 0 && was_empty {
            self.raise();
        }
        drop(st);
        if n > 0 {
            self.ready.notify_all();
        }
        n
    }

    fn close(&self) {
        let mut st = self.state.lock();
        if !st.closed && st.items.is_empty() {
            self.raise();
        }
        st.closed = true;
        drop(st);
        self.ready.notify_all();
    }

    /// Waits up to `timeout` for one item, then hands up to `max` items to `take`
    /// (with their index in the batch). `None` once the queue is closed.
    fn pop_batch(
        &self,
        max: usize,
        timeout: Duration,
        mut take: impl FnMut(usize, T),
    ) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while !st.closed && st.items.is_empty() && max > 0 {
            if self.ready.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        if st.closed {
            return None;
        }
        let mut n = 0;
        while n < max {
            match st.items.pop_front() {
                Some(item) => take(n, item),
                None => break,
            }
            n += 1;
        }
        if n > 0 && st.items.is_empty() {
            self.lower();
        }
        Some(n)
    }
}

/// Copies as much of `src` as fits into `dst`; like the kernel, an oversized
/// datagram or packet is truncated rather than failing the whole batch.
fn copy_truncated(dst: &mut [u8], src: &[u8]) -> usize {
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
    n
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Decides per datagram whether it is delivered: `(src, dst, payload) -> keep`.
pub type MemFilter = dyn Fn(SocketAddr, SocketAddr, &[u8]) -> bool + Send + Sync;

#[cfg(test)]
mod tests;
