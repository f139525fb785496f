//! Handshake-flood generator for benches/scripts/handshake-flood.sh and the
//! flood e2e check (tests/e2e/45-flood.sh); not part of the product.
//!
//! Sends MAC1-valid handshake initiations to one WireGuard responder, each
//! from one of `--sources` local IPv4 addresses in turn (the addresses must
//! already be on an interface: the scripts add them to the generator's
//! veth), at `--rate` per second (0: as fast as one core can, with
//! `sendmmsg`) for `--seconds`. MAC1 is the keyed BLAKE2s-128 the crate's
//! cookie code checks, keyed with HASH("mac1----" || responder public key),
//! so every message passes the responder's first check and costs it real
//! work; the rest of the message is fresh random-looking bytes, so no two
//! messages are alike. The source address of each message is chosen with
//! IP_PKTINFO (one unbound socket, no socket per address).
//!
//! Counts what comes back (cookie replies, type 3, and anything else) on a
//! second thread, and prints one line of `key=value` fields at the end:
//!   sent=N seconds=S rate=R cookie_replies=C other_replies=O send_errors=E
use phantommesh::noise::constants::{INITIATION_LEN, LABEL_MAC1, MESSAGE_INITIATION};
use phantommesh::noise::kdf::{hash, mac};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages per `sendmmsg`.
const BATCH: usize = 64;
/// MAC1 sits 32 bytes before the end (MAC2 follows it).
const MAC1_AT: usize = INITIATION_LEN - 32;
/// Size of one IP_PKTINFO control message.
const CMSG_ROOM: usize = 64;

struct Args {
    target: SocketAddrV4,
    peer_key: [u8; 32],
    src_base: Ipv4Addr,
    sources: u32,
    rate: u64,
    seconds: f64,
}

fn usage() -> ! {
    eprintln!(
        "usage: flood --target IP:PORT --peer-key BASE64 --src-base IP --sources N \
         [--rate PER_SEC (0 = max)] [--seconds S]\n\
         sources are src-base+1 .. src-base+N, already local addresses"
    );
    std::process::exit(2)
}

fn parse_args() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let (mut target, mut key, mut base) = (None, None, None);
    let (mut sources, mut rate, mut seconds) = (1u32, 0u64, 5f64);
    while let Some(flag) = a.next() {
        let v = a.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--target" => target = Some(v.parse().map_err(|e| bad(&e))?),
            "--peer-key" => {
                use base64::Engine;
                let k = base64::engine::general_purpose::STANDARD
                    .decode(&v)
                    .map_err(|e| bad(&e))?;
                key = Some(k.try_into().map_err(|_| bad(&"not 32 bytes"))?);
            }
            "--src-base" => base = Some(v.parse().map_err(|e| bad(&e))?),
            "--sources" => sources = v.parse().map_err(|e| bad(&e))?,
            "--rate" => rate = v.parse().map_err(|e| bad(&e))?,
            "--seconds" => seconds = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if sources == 0 || seconds.is_nan() || seconds <= 0.0 {
        return Err("--sources and --seconds must be positive".into());
    }
    Ok(Args {
        target: target.ok_or("--target is required")?,
        peer_key: key.ok_or("--peer-key is required")?,
        src_base: base.ok_or("--src-base is required")?,
        sources,
        rate,
        seconds,
    })
}

/// A cheap generator of distinct message bodies (xorshift64*): the bodies
/// only need to differ, not to be secret.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
    }
}

/// Counts the datagrams the responder sends back until `stop`.
fn count_replies(
    sock: UdpSocket,
    stop: Arc<AtomicBool>,
    cookies: Arc<AtomicU64>,
    other: Arc<AtomicU64>,
) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv(&mut buf) {
            Ok(n) if n == 64 && buf[0] == 3 => cookies.fetch_add(1, Ordering::Relaxed),
            Ok(_) => other.fetch_add(1, Ordering::Relaxed),
            Err(_) => 0,
        };
    }
}

fn run(args: Args) -> io::Result<()> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    let fd = sock.as_raw_fd();
    let mac1_key = hash(&[LABEL_MAC1, &args.peer_key]);
    let stop = Arc::new(AtomicBool::new(false));
    let (cookies, other) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (s, st, c, o) = (
            sock.try_clone()?,
            stop.clone(),
            cookies.clone(),
            other.clone(),
        );
        std::thread::spawn(move || count_replies(s, st, c, o))
    };

    let mut msgs = vec![[0u8; INITIATION_LEN]; BATCH];
    let mut cmsgs = vec![[0u8; CMSG_ROOM]; BATCH];
    let mut iovs: Vec<libc::iovec> = vec![unsafe { zeroed() }; BATCH];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; BATCH];
    let mut dst: libc::sockaddr_in = unsafe { zeroed() };
    dst.sin_family = libc::AF_INET as libc::sa_family_t;
    dst.sin_port = args.target.port().to_be();
    dst.sin_addr.s_addr = u32::from(*args.target.ip()).to_be();
    let base = u32::from(args.src_base);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let (mut sent, mut errors, mut next_src) = (0u64, 0u64, 0u32);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if args.rate > 0 {
            // Pace: stay at or behind rate * elapsed.
            let due = (now - start).as_secs_f64() * args.rate as f64;
            if (sent as f64) >= due {
                let ahead = (sent as f64 - due + BATCH as f64) / args.rate as f64;
                std::thread::sleep(Duration::from_secs_f64(ahead.min(0.01)));
                continue;
            }
        }
        for i in 0..BATCH {
            let m = &mut msgs[i];
            m[..4].copy_from_slice(&MESSAGE_INITIATION.to_le_bytes());
            rng.fill(&mut m[4..MAC1_AT]);
            let m1 = mac(&mac1_key, &[&m[..MAC1_AT]]);
            m[MAC1_AT..MAC1_AT + 16].copy_from_slice(&m1);
            let src = Ipv4Addr::from(base + 1 + next_src);
            next_src = (next_src + 1) % args.sources;
            fill_pktinfo(&mut cmsgs[i], src);
            iovs[i] = libc::iovec {
                iov_base: m.as_mut_ptr().cast(),
                iov_len: INITIATION_LEN,
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut dst as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen =
                unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) } as _;
        }
        // SAFETY: every header points at live buffers of this frame.
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            errors += 1;
        } else {
            sent += n as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Late replies to the last messages.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    println!(
        "sent={sent} seconds={secs:.2} rate={:.0} cookie_replies={} other_replies={} send_errors={errors}",
        sent as f64 / secs,
        cookies.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Writes one IP_PKTINFO control message asking for source `src`.
fn fill_pktinfo(room: &mut [u8; CMSG_ROOM], src: Ipv4Addr) {
    let mut h: libc::msghdr = unsafe { zeroed() };
    h.msg_control = room.as_mut_ptr().cast();
    h.msg_controllen = CMSG_ROOM as _;
    // SAFETY: the control buffer is CMSG_ROOM bytes, more than one
    // CMSG_SPACE(in_pktinfo); the macros stay inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&h);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(src).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("flood: {e}");
        usage()
    });
    if let Err(e) = run(args) {
        eprintln!("flood: {e}");
        std::process::exit(1);
    }
}
