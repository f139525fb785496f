//! The generator's socket plumbing: one connected UDP socket per simulated
//! peer (its own source port), an epoll set per worker, batched receive
//! with kernel arrival timestamps, and the descriptor limit.
//!
//! Kernel timestamps (SO_TIMESTAMPNS) make the RTT end at the datagram's
//! arrival, not at the moment a busy worker got round to it: with hundreds
//! of sockets ready at once, that difference is milliseconds.
use crate::io::linux_udp::CmsgBuf;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Wall-clock nanoseconds (CLOCK_REALTIME, the clock of SO_TIMESTAMPNS).
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Raises the soft RLIMIT_NOFILE to at least `want` (up to the hard limit,
/// or beyond it when privileged). Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let mut new = libc::rlimit {
        rlim_cur: want.max(lim.rlim_cur),
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: setrlimit reads the struct; raising the hard limit needs
    // CAP_SYS_RESOURCE, so fall back to the hard limit when refused.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        new = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(new.rlim_cur)
}

/// A non-blocking UDP socket bound to `bind` (port 0: the kernel picks),
/// connected to `target`, with arrival timestamps on.
pub fn peer_socket(bind: SocketAddr, target: SocketAddr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(bind)?;
    sock.connect(target)?;
    sock.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and an int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Level-triggered epoll over the worker's sockets; the event data is the
/// peer's slot in the worker.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(capacity: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.clamp(16, 1024)],
        })
    }

    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `ev` outlives the call.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` and returns the ready tokens.
    pub fn wait(&mut self, timeout_ms: i32, ready: &mut Vec<u64>) -> io::Result<()> {
        ready.clear();
        // SAFETY: the events buffer is ours and its length is passed.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        ready.extend(self.events[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

/// Datagrams one receive call may return.
pub const RECV_BATCH: usize = 8;
/// Large enough for any datagram a WireGuard peer sends us.
pub const RECV_BUF: usize = 2048;
const CMSG_SPACE: usize = 64;

/// Buffers for [`recv_batch`], reused by a worker.
pub struct RecvBufs {
    pub data: Vec<[u8; RECV_BUF]>,
    pub lens: [usize; RECV_BATCH],
    /// Arrival time (realtime ns) of each datagram; 0 when the kernel gave
    /// none.
    pub stamps: [u64; RECV_BATCH],
    control: Vec<CmsgBuf<CMSG_SPACE>>,
}

impl Default for RecvBufs {
    fn default() -> Self {
        RecvBufs {
            data: vec![[0u8; RECV_BUF]; RECV_BATCH],
            lens: [0; RECV_BATCH],
            stamps: [0; RECV_BATCH],
            control: vec![CmsgBuf([0u8; CMSG_SPACE]); RECV_BATCH],
        }
    }
}

/// Receives what is queued on `fd` (up to [`RECV_BATCH`]) without
/// blocking, with arrival timestamps. Returns how many arrived (0 when none
/// were waiting).
pub fn recv_batch(fd: RawFd, b: &mut RecvBufs) -> io::Result<usize> {
    let mut iovs: [libc::iovec; RECV_BATCH] = std::array::from_fn(|i| libc::iovec {
        iov_base: b.data[i].as_mut_ptr().cast(),
        iov_len: RECV_BUF,
    });
    // SAFETY: mmsghdr is plain old data; zero is a valid initial value.
    let mut hdrs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    for (i, h) in hdrs.iter_mut().enumerate() {
        h.msg_hdr.msg_iov = &mut iovs[i];
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_control = b.control[i].0.as_mut_ptr().cast();
        h.msg_hdr.msg_controllen = CMSG_SPACE as _;
    }
    // SAFETY: every header points at buffers that live until we return.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            RECV_BATCH as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            // A previous send drew ICMP port unreachable: the target is not
            // listening (yet). Not a receive failure of ours.
            io::ErrorKind::ConnectionRefused => Ok(0),
            _ => Err(e),
        };
    }
    let n = n as usize;
    for (i, h) in hdrs.iter().enumerate().take(n) {
        b.lens[i] = h.msg_len as usize;
        b.stamps[i] = 0;
        let msg = &h.msg_hdr;
        // SAFETY: walking the control buffer the kernel filled, with the
        // length it reported.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                    b.stamps[i] = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                }
                c = libc::CMSG_NXTHDR(msg, c);
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn batch_receive_carries_kernel_timestamps() {
        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let b = peer_socket(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            a.local_addr().unwrap(),
        )
        .unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        let mut bufs = RecvBufs::default();
        assert_eq!(
            recv_batch(b.as_raw_fd(), &mut bufs).unwrap(),
            0,
            "nothing queued yet"
        );
        let before = realtime_ns();
        for i in 0..3u8 {
            a.send(&[i; 10]).unwrap();
        }
        let mut ep = Epoll::new(4).unwrap();
        ep.add(b.as_raw_fd(), 7).unwrap();
        let mut ready = Vec::new();
        ep.wait(1000, &mut ready).unwrap();
        assert_eq!(ready, vec![7]);
        let mut got = 0;
        while got < 3 {
            let n = recv_batch(b.as_raw_fd(), &mut bufs).unwrap();
            for i in 0..n {
                assert_eq!(bufs.lens[i], 10);
                assert_eq!(bufs.data[i][0], (got + i) as u8);
                assert!(
                    bufs.stamps[i] >= before - 1_000_000,
                    "stamp before the send"
                );
                assert!(bufs.stamps[i] <= realtime_ns());
            }
            got += n;
        }
    }

    #[test]
    fn nofile_limit_is_at_least_what_we_had() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        assert!(raise_nofile(64).unwrap() >= lim.rlim_cur.min(64));
    }
}
