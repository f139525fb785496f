//! Echo probes from this host to an address behind a peer, through the
//! tunnel: ICMP echo requests on a socket bound to the WireGuard interface,
//! so the kernel routes them into the TUN, the daemon encrypts them to the
//! peer, and the replies come back decrypted the same way. Unlike the
//! handshake alone, this proves data flows both ways with that peer.
//!
//! An unprivileged ping socket is tried first (needs the process's group in
//! `net.ipv4.ping_group_range`), then a raw socket (needs CAP_NET_RAW, which
//! a root daemon has).
use super::probe::{checksum, interface_addresses};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long one probe waits for its reply.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
const PAYLOAD_TAG: &[u8] = b"phantommesh peer probe ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_DGRAM` ICMP: the kernel owns the echo id and strips IP headers.
    Ping,
    /// `SOCK_RAW` ICMP: we pick the id; IPv4 reads include the IP header.
    Raw,
}

/// An ICMP echo socket bound to one interface and connected to one address.
pub struct EchoSocket {
    sock: Socket,
    kind: SocketKind,
    v6: bool,
    /// Our echo id (raw sockets only; the kernel demultiplexes ping sockets).
    id: u16,
    /// Random bytes in every request, so only our own replies count.
    token: [u8; 8],
}

/// What a run of probes gave.
#[derive(Debug, Default)]
pub struct PingOutcome {
    pub sent: usize,
    pub received: usize,
    pub rtts: Vec<Duration>,
    pub errors: Vec<String>,
}

impl EchoSocket {
    /// Opens a ping socket, else a raw one, bound to `ifname` and
    /// connected to `dst`.
    pub fn open(ifname: &str, dst: IpAddr) -> Result<EchoSocket, String> {
        let mut why = Vec::new();
        for kind in [SocketKind::Ping, SocketKind::Raw] {
            match Self::open_kind(ifname, dst, kind) {
                Ok(s) => return Ok(s),
                Err(e) => why.push(format!("{kind:?}: {e}")),
            }
        }
        Err(format!(
            "cannot open an ICMP socket on {ifname} to {dst} ({}); the daemon needs CAP_NET_RAW or a group in net.ipv4.ping_group_range",
            why.join("; ")
        ))
    }

    pub fn open_kind(ifname: &str, dst: IpAddr, kind: SocketKind) -> io::Result<EchoSocket> {
        let v6 = dst.is_ipv6();
        let (domain, proto) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let ty = match kind {
            SocketKind::Ping => Type::DGRAM,
            SocketKind::Raw => Type::RAW,
        };
        let sock = Socket::new(domain, ty, Some(proto))?;
        // Bound to the interface, the route lookup can only pick the
        // tunnel (the kernel takes the address as on-link there when no
        // route names it), and only packets arriving on it are read.
        sock.bind_device(Some(ifname.as_bytes()))?;
        sock.connect(&SocketAddr::new(dst, 0).into())?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(EchoSocket {
            sock,
            kind,
            v6,
            id: rand::random(),
            token: rand::random(),
        })
    }

    pub fn kind(&self) -> SocketKind {
        self.kind
    }

    fn payload(&self, seq: u16) -> Vec<u8> {
        let mut p = PAYLOAD_TAG.to_vec();
        p.extend_from_slice(&self.token);
        p.extend_from_slice(&seq.to_be_bytes());
        p
    }

    /// Sends echo request `seq`.
    pub fn send(&self, seq: u16) -> io::Result<()> {
        let mut m = vec![if self.v6 { 128 } else { 8 }, 0, 0, 0];
        m.extend_from_slice(&self.id.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&self.payload(seq));
        if !self.v6 {
            // The kernel fills in ICMPv6 checksums (it knows the pseudo
            // header) and ping-socket ones, but not raw ICMPv4 ones.
            let c = checksum(&[&m]);
            m[2..4].copy_from_slice(&c.to_be_bytes());
        }
        self.sock.send(&m).map(|_| ())
    }

    /// Whether `pkt`, as read from this socket, is the reply to `seq`.
    pub fn is_reply(&self, pkt: &[u8], seq: u16) -> bool {
        let icmp = if self.kind == SocketKind::Raw && !self.v6 {
            let ihl = usize::from(pkt.first().map_or(0, |b| b & 0x0f)) * 4;
            if ihl < 20 {
                return false;
            }
            pkt.get(ihl..).unwrap_or(&[])
        } else {
            pkt
        };
        let reply_type = if self.v6 { 129 } else { 0 };
        if icmp.len() < 8 || icmp[0] != reply_type || icmp[1] != 0 {
            return false;
        }
        let id_ok = self.kind == SocketKind::Ping || icmp[4..6] == self.id.to_be_bytes();
        id_ok && icmp[6..8] == seq.to_be_bytes() && icmp[8..] == self.payload(seq)[..]
    }

    /// Waits until `until` for the reply to `seq`.
    pub fn wait_reply(&self, seq: u16, until: Instant) -> bool {
        let mut buf = [0u8; 1500];
        while Instant::now() < until {
            match (&self.sock).read(&mut buf) {
                Ok(n) if self.is_reply(&buf[..n], seq) => return true,
                _ => {}
            }
        }
        false
    }
}

/// Pings `dst` `count` times through interface `ifname`, one probe at a
/// time, each waiting up to [`PROBE_TIMEOUT`], all before `deadline`.
pub fn ping_through(ifname: &str, dst: IpAddr, count: usize, deadline: Instant) -> PingOutcome {
    let mut out = PingOutcome::default();
    // The kernel would take a source address from another interface, one
    // the peer does not route back to us: say why instead of timing out.
    if !interface_addresses(ifname)
        .iter()
        .any(|(a, _)| a.is_ipv6() == dst.is_ipv6() && !is_link_local(*a))
    {
        out.errors.push(format!(
            "interface {ifname} has no {} address to probe {dst} from",
            if dst.is_ipv6() { "IPv6" } else { "IPv4" }
        ));
        return out;
    }
    let sock = match EchoSocket::open(ifname, dst) {
        Ok(s) => s,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let mut lost = 0usize;
    for seq in 0..count.min(usize::from(u16::MAX)) as u16 {
        if Instant::now() >= deadline {
            out.errors.push("test duration limit reached".into());
            break;
        }
        let sent_at = Instant::now();
        if let Err(e) = sock.send(seq) {
            out.errors
                .push(format!("probe {seq}: cannot send to {dst}: {e}"));
            break;
        }
        out.sent += 1;
        if sock.wait_reply(seq, (sent_at + PROBE_TIMEOUT).min(deadline)) {
            out.received += 1;
            out.rtts.push(sent_at.elapsed());
        } else {
            lost += 1;
        }
    }
    if lost > 0 {
        out.errors.push(format!(
            "{lost} of {} probes to {dst} got no reply within {} ms",
            out.sent,
            PROBE_TIMEOUT.as_millis()
        ));
    }
    out
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => v.is_unicast_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over loopback each socket kind that this host lets us open must get
    /// its replies; a kind we may not open must fail with an error, not
    /// hang or panic.
    #[test]
    fn loopback_echo_both_families_and_kinds() {
        let mut opened = 0;
        for dst in ["127.0.0.1", "::1"] {
            let dst: IpAddr = dst.parse().unwrap();
            for kind in [SocketKind::Ping, SocketKind::Raw] {
                let Ok(s) = EchoSocket::open_kind("lo", dst, kind) else {
                    continue;
                };
                opened += 1;
                let until = Instant::now() + Duration::from_secs(2);
                s.send(7).unwrap();
                assert!(s.wait_reply(7, until), "{kind:?} echo to {dst}");
                s.send(8).unwrap();
                assert!(
                    !s.wait_reply(9, Instant::now() + Duration::from_millis(200)),
                    "{kind:?}: a reply to another seq does not count"
                );
            }
        }
        if opened == 0 {
            let e = EchoSocket::open("lo", "127.0.0.1".parse().unwrap())
                .err()
                .unwrap();
            assert!(e.contains("CAP_NET_RAW"), "{e}");
            eprintln!("no ICMP socket allowed here: {e}");
        }
    }

    #[test]
    fn ping_through_counts_replies_and_losses() {
        if EchoSocket::open("lo", "127.0.0.1".parse().unwrap()).is_err() {
            eprintln!("no ICMP socket allowed here; skipped");
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let o = ping_through("lo", "127.0.0.1".parse().unwrap(), 3, deadline);
        assert_eq!(
            (o.sent, o.received, o.rtts.len()),
            (3, 3, 3),
            "{:?}",
            o.errors
        );
        assert!(o.errors.is_empty(), "{:?}", o.errors);
        // Nobody answers from 127.0.0.1 over an interface without IPv4.
        let o = ping_through("pm-nonexistent0", "10.1.2.3".parse().unwrap(), 3, deadline);
        assert_eq!(o.sent, 0);
        assert!(
            o.errors[0].contains("has no IPv4 address"),
            "{:?}",
            o.errors
        );
    }

    #[test]
    fn foreign_packets_are_not_replies() {
        // Parsing needs no privilege: any socket stands in for a raw one.
        let s = EchoSocket {
            sock: Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap(),
            kind: SocketKind::Raw,
            v6: false,
            id: 0x1234,
            token: *b"12345678",
        };
        let mut reply = vec![0x45u8];
        reply.extend_from_slice(&[0; 19]);
        reply.extend_from_slice(&[0, 0, 0, 0]);
        reply.extend_from_slice(&s.id.to_be_bytes());
        reply.extend_from_slice(&3u16.to_be_bytes());
        reply.extend_from_slice(&s.payload(3));
        assert!(s.is_reply(&reply, 3));
        let mut other_id = reply.clone();
        other_id[24] ^= 0xff;
        assert!(!s.is_reply(&other_id, 3));
        let mut other_payload = reply.clone();
        *other_payload.last_mut().unwrap() ^= 1;
        assert!(!s.is_reply(&other_payload, 3));
        let mut request = reply.clone();
        request[20] = 8;
        assert!(!s.is_reply(&request, 3));
        assert!(!s.is_reply(&reply[..25], 3));
        assert!(!s.is_reply(&[0x41, 0, 0], 3), "bad IHL");
        assert!(!s.is_reply(&[], 3));
    }
}
