//! A moved TUN's flags and MTU without joining its namespace: after the
//! privilege drop the daemon has CAP_NET_ADMIN but not CAP_SYS_ADMIN, so
//! `setns` fails. rtnetlink can still answer from here: the namespace gets
//! an id in ours (RTM_NEWNSID from its descriptor, as `ip` does; needs
//! CAP_NET_ADMIN), and RTM_GETLINK with IFLA_TARGET_NETNSID (Linux 4.20)
//! looks the interface up by name over there.
use std::io;
use std::mem::zeroed;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const IFLA_TARGET_NETNSID: u16 = 46;

fn attr(msg: &mut Vec<u8>, kind: u16, data: &[u8]) {
    msg.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(msg.len().next_multiple_of(4), 0);
}

/// The attributes after a fixed header of `skip` bytes: (type, data).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        v.push((kind, &b[4..len]));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    v
}

struct Nl(OwnedFd, u32);

impl Nl {
    fn open() -> io::Result<Nl> {
        // SAFETY: plain socket creation; owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just created.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: a timeval for SO_RCVTIMEO: a kernel that never answers
        // cannot hang the caller.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(Nl(fd, 0))
    }

    /// One request; returns the first reply's payload (after the netlink
    /// header), or the kernel's error.
    fn call(&mut self, kind: u16, flags: u16, payload: &[u8]) -> io::Result<Vec<u8>> {
        self.1 += 1;
        let mut msg = Vec::with_capacity(16 + payload.len());
        msg.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg.extend_from_slice(&self.1.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        // SAFETY: a zeroed sockaddr_nl addresses the kernel.
        let mut sa: libc::sockaddr_nl = unsafe { zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sends msg to the kernel.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 16384];
        loop {
            // SAFETY: reads into buf.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let b = &buf[..n as usize];
            if b.len() < 16 {
                return Err(io::Error::other("short netlink reply"));
            }
            let len = (u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize).min(b.len());
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            let seq = u32::from_ne_bytes(b[8..12].try_into().unwrap());
            if seq != self.1 {
                continue;
            }
            let body = &b[16..len];
            if ty == libc::NLMSG_ERROR as u16 {
                let e = i32::from_ne_bytes(
                    body.get(0..4)
                        .ok_or_else(|| io::Error::other("short error"))?
                        .try_into()
                        .unwrap(),
                );
                return if e == 0 {
                    Ok(Vec::new())
                } else {
                    Err(io::Error::from_raw_os_error(-e))
                };
            }
            return Ok(body.to_vec());
        }
    }

    /// The id of namespace `ns` in ours (-1: none yet).
    fn get_nsid(&mut self, ns: RawFd) -> io::Result<i32> {
        let mut p = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        attr(&mut p, NETNSA_FD, &(ns as u32).to_ne_bytes());
        let r = self.call(RTM_GETNSID, 0, &p)?;
        attrs(r.get(4..).unwrap_or_default())
            .into_iter()
            .find(|(k, d)| *k == NETNSA_NSID && d.len() >= 4)
            .map(|(_, d)| i32::from_ne_bytes(d[..4].try_into().unwrap()))
            .ok_or_else(|| io::Error::other("no nsid in the reply"))
    }

    fn nsid(&mut self, ns: RawFd) -> io::Result<i32> {
        let id = self.get_nsid(ns)?;
        if id >= 0 {
            return Ok(id);
        }
        let mut p = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        attr(&mut p, NETNSA_FD, &(ns as u32).to_ne_bytes());
        attr(&mut p, NETNSA_NSID, &(-1i32).to_ne_bytes());
        // EEXIST: another process assigned one meanwhile.
        match self.call(RTM_NEWNSID, libc::NLM_F_ACK as u16, &p) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        self.get_nsid(ns)
    }
}

/// (ifi_flags, MTU) of interface `name` in namespace `ns`.
pub fn link_in(ns: RawFd, name: &[libc::c_char]) -> io::Result<(u32, u32)> {
    let mut nl = Nl::open()?;
    let id = nl.nsid(ns)?;
    // struct ifinfomsg: family, pad, type, index, flags, change.
    let mut p = vec![0u8; 16];
    attr(&mut p, IFLA_TARGET_NETNSID, &id.to_ne_bytes());
    let bytes: Vec<u8> = name
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .chain([0])
        .collect();
    attr(&mut p, libc::IFLA_IFNAME, &bytes);
    let r = nl.call(libc::RTM_GETLINK, 0, &p)?;
    if r.len() < 16 {
        return Err(io::Error::other("short RTM_NEWLINK"));
    }
    let flags = u32::from_ne_bytes(r[8..12].try_into().unwrap());
    let mtu = attrs(&r[16..])
        .into_iter()
        .find(|(k, d)| *k == libc::IFLA_MTU && d.len() >= 4)
        .map(|(_, d)| u32::from_ne_bytes(d[..4].try_into().unwrap()))
        .unwrap_or(0);
    Ok((flags, mtu))
}
