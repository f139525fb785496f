//! Probe packets sent through the tunnel and the bookkeeping of the ones in
//! flight. Pure.
//!
//! ICMP echo (the default) makes the target's kernel answer, so a probe
//! crosses the whole data path: decrypt, TUN write, kernel, TUN read,
//! encrypt. UDP echo sends to a given `ADDR:PORT` behind the target that
//! returns datagrams unchanged. Each probe carries the peer's 16-bit id and
//! a 16-bit sequence number; the tracker maps the sequence number back to
//! the probe's full number and send time.
use crate::admin::probe::{checksum, echo_request, parse_echo_reply};
use std::net::{IpAddr, SocketAddr};

/// What a probe is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Icmp,
    UdpEcho(SocketAddr),
}

/// Marks our UDP echo payloads, so stray datagrams are not taken for replies.
const UDP_MAGIC: &[u8; 4] = b"PMLT";
/// Source port of UDP probes inside the tunnel.
pub const UDP_SOURCE_PORT: u16 = 40_000;

/// A probe (or bulk) packet from `src` to `dst` with `size` bytes of
/// payload (at least 8). Bulk packets use a different id than probes.
pub fn build(
    kind: ProbeKind,
    src: IpAddr,
    dst: IpAddr,
    id: u16,
    seq: u16,
    size: usize,
) -> Option<Vec<u8>> {
    let mut payload = vec![0u8; size.max(8)];
    payload[..4].copy_from_slice(UDP_MAGIC);
    payload[4..6].copy_from_slice(&id.to_be_bytes());
    payload[6..8].copy_from_slice(&seq.to_be_bytes());
    match kind {
        ProbeKind::Icmp => echo_request(src, dst, id, seq, &payload),
        ProbeKind::UdpEcho(to) => udp_packet(src, UDP_SOURCE_PORT, to.ip(), to.port(), &payload),
    }
}

/// The (id, seq) of a reply to one of our probes addressed to `me`.
pub fn parse_reply(kind: ProbeKind, pkt: &[u8], me: IpAddr) -> Option<(u16, u16)> {
    match kind {
        ProbeKind::Icmp => parse_echo_reply(pkt, me),
        ProbeKind::UdpEcho(from) => {
            let (src, sport, dport, payload) = parse_udp(pkt, me)?;
            if src != from.ip() || sport != from.port() || dport != UDP_SOURCE_PORT {
                return None;
            }
            if payload.len() < 8 || &payload[..4] != UDP_MAGIC {
                return None;
            }
            Some((
                u16::from_be_bytes([payload[4], payload[5]]),
                u16::from_be_bytes([payload[6], payload[7]]),
            ))
        }
    }
}

/// An IPv4 or IPv6 UDP packet (checksummed; IPv6 requires it).
pub fn udp_packet(
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let ulen = 8 + payload.len();
    let mut udp = Vec::with_capacity(ulen);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&(ulen as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ph = Vec::with_capacity(12);
            ph.extend_from_slice(&s.octets());
            ph.extend_from_slice(&d.octets());
            ph.extend_from_slice(&[0, 17]);
            ph.extend_from_slice(&(ulen as u16).to_be_bytes());
            let c = match checksum(&[&ph, &udp]) {
                0 => 0xffff,
                c => c,
            };
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            let total = 20 + ulen;
            let mut p = vec![0u8; 20];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[6] = 0x40;
            p[8] = 64;
            p[9] = 17;
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            let c = checksum(&[&p]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&udp);
            Some(p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ph = Vec::with_capacity(40);
            ph.extend_from_slice(&s.octets());
            ph.extend_from_slice(&d.octets());
            ph.extend_from_slice(&(ulen as u32).to_be_bytes());
            ph.extend_from_slice(&[0, 0, 0, 17]);
            let c = match checksum(&[&ph, &udp]) {
                0 => 0xffff,
                c => c,
            };
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            let mut p = vec![0u8; 40];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(ulen as u16).to_be_bytes());
            p[6] = 17;
            p[7] = 64;
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
            p.extend_from_slice(&udp);
            Some(p)
        }
        _ => None,
    }
}

/// (source address, source port, destination port, payload) of a UDP
/// packet addressed to `me`.
pub fn parse_udp(pkt: &[u8], me: IpAddr) -> Option<(IpAddr, u16, u16, &[u8])> {
    let (src, body) = match (pkt.first()? >> 4, me) {
        (4, IpAddr::V4(a)) if pkt.len() >= 28 && pkt[9] == 17 && pkt[16..20] == a.octets() => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])).min(pkt.len());
            let src = IpAddr::from(<[u8; 4]>::try_from(&pkt[12..16]).ok()?);
            (src, pkt.get(ihl..total)?)
        }
        (6, IpAddr::V6(a)) if pkt.len() >= 48 && pkt[6] == 17 && pkt[24..40] == a.octets() => {
            let plen = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            let src = IpAddr::from(<[u8; 16]>::try_from(&pkt[8..24]).ok()?);
            (src, pkt.get(40..40 + plen)?)
        }
        _ => return None,
    };
    if body.len() < 8 {
        return None;
    }
    let ulen = usize::from(u16::from_be_bytes([body[4], body[5]]));
    let payload = body.get(8..ulen.max(8))?;
    Some((
        src,
        u16::from_be_bytes([body[0], body[1]]),
        u16::from_be_bytes([body[2], body[3]]),
        payload,
    ))
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    seq: u64,
    sent_ns: u64,
    pending: bool,
}

/// Probes in flight for one peer, in a ring indexed by sequence number.
/// Probes go out in sequence order, so the pending ones lie between
/// `oldest` and `next`; expiry walks from `oldest` and stops at the first
/// one still in time.
#[derive(Clone, Debug)]
pub struct Tracker {
    ring: Vec<Slot>,
    mask: u64,
    next: u64,
    oldest: u64,
}

/// What happened to a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    /// Answered: round trip in nanoseconds.
    Rtt(u64),
    /// No such probe in flight (late after its timeout, or a duplicate).
    Unmatched,
}

impl Tracker {
    /// Room for `in_flight` probes (rounded up to a power of two, at most
    /// 32768 so a 16-bit sequence number names a slot unambiguously).
    pub fn new(in_flight: usize) -> Tracker {
        let n = in_flight.clamp(4, 32_768).next_power_of_two();
        Tracker {
            ring: vec![Slot::default(); n],
            mask: n as u64 - 1,
            next: 0,
            oldest: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    /// Registers the next probe, sent at `sent_ns`; returns its sequence
    /// number and whether an older probe had to be given up as lost to
    /// make room (the ring was too small for the timeout).
    pub fn send(&mut self, sent_ns: u64) -> (u64, bool) {
        let seq = self.next;
        self.next += 1;
        let slot = &mut self.ring[(seq & self.mask) as usize];
        let evicted = slot.pending;
        *slot = Slot {
            seq,
            sent_ns,
            pending: true,
        };
        if self.next - self.oldest > self.ring.len() as u64 {
            self.oldest = self.next - self.ring.len() as u64;
        }
        (seq, evicted)
    }

    /// A reply carrying the 16-bit `seq`, arrived at `at_ns`.
    pub fn reply(&mut self, seq16: u16, at_ns: u64) -> Matched {
        let slot = &mut self.ring[(u64::from(seq16) & self.mask) as usize];
        if !slot.pending || slot.seq as u16 != seq16 {
            return Matched::Unmatched;
        }
        slot.pending = false;
        Matched::Rtt(at_ns.saturating_sub(slot.sent_ns))
    }

    /// Gives up on probes sent before `deadline_ns`; returns how many.
    pub fn expire(&mut self, deadline_ns: u64) -> u64 {
        let mut lost = 0;
        while self.oldest < self.next {
            let slot = &mut self.ring[(self.oldest & self.mask) as usize];
            if slot.seq == self.oldest && slot.pending {
                if slot.sent_ns >= deadline_ns {
                    break;
                }
                slot.pending = false;
                lost += 1;
            }
            self.oldest += 1;
        }
        lost
    }

    /// Probes still waiting for a reply.
    pub fn pending(&self) -> u64 {
        (self.oldest..self.next)
            .filter(|s| {
                let slot = &self.ring[(s & self.mask) as usize];
                slot.seq == *s && slot.pending
            })
            .count() as u64
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
