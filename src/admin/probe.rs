//! Probe packets for tunnel tests: ICMP echo over IPv4 and IPv6, built and
//! parsed by hand (a few dozen bytes, checksummed), and the interface
//! addresses a self test can borrow a probe source from.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Internet checksum (RFC 1071) over `parts`, as one byte stream.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP (v4) or ICMPv6 echo request from `src` to `dst`.
pub fn echo_request(
    src: IpAddr,
    dst: IpAddr,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(echo_v4(s, d, id, seq, payload)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(echo_v6(s, d, id, seq, payload)),
        _ => None,
    }
}

fn icmp_body(kind: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn echo_v4(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = icmp_body(8, id, seq, payload);
    let c = checksum(&[&icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = 20 + icmp.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64;
    p[9] = 1; // ICMP
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&[&p]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&icmp);
    p
}

fn v6_pseudo(src: &Ipv6Addr, dst: &Ipv6Addr, len: usize) -> Vec<u8> {
    let mut ph = Vec::with_capacity(40);
    ph.extend_from_slice(&src.octets());
    ph.extend_from_slice(&dst.octets());
    ph.extend_from_slice(&(len as u32).to_be_bytes());
    ph.extend_from_slice(&[0, 0, 0, 58]);
    ph
}

fn echo_v6(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = icmp_body(128, id, seq, payload);
    let c = checksum(&[&v6_pseudo(&src, &dst, icmp.len()), &icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(icmp.len() as u16).to_be_bytes());
    p[6] = 58; // ICMPv6
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

/// (id, seq) of an echo reply addressed to `to`, if `pkt` is one.
pub fn parse_echo_reply(pkt: &[u8], to: IpAddr) -> Option<(u16, u16)> {
    let (icmp, reply_type) = match (pkt.first()? >> 4, to) {
        (4, IpAddr::V4(a)) if pkt.len() >= 28 && pkt[9] == 1 && pkt[16..20] == a.octets() => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            (pkt.get(ihl..)?, 0u8)
        }
        (6, IpAddr::V6(a)) if pkt.len() >= 48 && pkt[6] == 58 && pkt[24..40] == a.octets() => {
            (&pkt[40..], 129u8)
        }
        _ => return None,
    };
    if icmp.len() < 8 || icmp[0] != reply_type || icmp[1] != 0 {
        return None;
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// Addresses (with prefix length) assigned to interface `ifname`.
pub fn interface_addresses(ifname: &str) -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != ifname.as_bytes() {
            continue;
        }
        // SAFETY: the family field tells which sockaddr type each points to.
        unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                    let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                    out.push((
                        IpAddr::V4(ip),
                        u32::from_be(m.sin_addr.s_addr).count_ones() as u8,
                    ));
                }
                libc::AF_INET6 => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in6);
                    let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                    let prefix: u32 = m.sin6_addr.s6_addr.iter().map(|b| b.count_ones()).sum();
                    out.push((IpAddr::V6(ip), prefix as u8));
                }
                _ => {}
            }
        }
    }
    // SAFETY: frees the list allocated above; nothing refers to it now.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Candidate probe sources inside the interface's subnet, highest first,
/// skipping the interface's own address and the subnet's broadcast.
pub fn probe_candidates(addr: IpAddr, prefix: u8, limit: usize) -> Vec<IpAddr> {
    match addr {
        IpAddr::V4(a) if prefix <= 29 => {
            let host_bits = 32 - u32::from(prefix);
            let base = u32::from(a) & !((1u32 << host_bits) - 1);
            let top = base | ((1u32 << host_bits) - 1);
            (1..=limit as u32)
                .map(|i| top - i)
                .filter(|&c| c > base && c != u32::from(a))
                .map(|c| IpAddr::V4(Ipv4Addr::from(c)))
                .collect()
        }
        IpAddr::V6(a) if prefix <= 120 && !a.is_unicast_link_local() => {
            let host_bits = 128 - u32::from(prefix);
            let base = u128::from(a) & !((1u128 << host_bits) - 1);
            let top = base | ((1u128 << host_bits) - 1);
            (0..limit as u128)
                .map(|i| top - i)
                .filter(|&c| c != u128::from(a))
                .map(|c| IpAddr::V6(Ipv6Addr::from(c)))
                .collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3 example bytes; sum 0xddf2, checksum !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        // Split across parts at an odd boundary gives the same sum.
        assert_eq!(checksum(&[&data[..3], &data[3..]]), !0xddf2);
    }

    #[test]
    fn echo_packets_verify_and_replies_parse() {
        let s: IpAddr = "10.0.0.9".parse().unwrap();
        let d: IpAddr = "10.0.0.1".parse().unwrap();
        let p = echo_request(s, d, 7, 3, b"abc").unwrap();
        assert_eq!(checksum(&[&p[..20]]), 0, "IPv4 header checksum");
        assert_eq!(checksum(&[&p[20..]]), 0, "ICMP checksum");
        // Turn it into the reply the kernel would send.
        let mut r = p.clone();
        r[12..16].copy_from_slice(&p[16..20]);
        r[16..20].copy_from_slice(&p[12..16]);
        r[20] = 0;
        assert_eq!(parse_echo_reply(&r, s), Some((7, 3)));
        assert_eq!(parse_echo_reply(&p, s), None, "a request is not a reply");
        let s6: IpAddr = "fd00::9".parse().unwrap();
        let d6: IpAddr = "fd00::1".parse().unwrap();
        let p6 = echo_request(s6, d6, 1, 2, b"xyz").unwrap();
        let IpAddr::V6(a) = s6 else { unreachable!() };
        let IpAddr::V6(b) = d6 else { unreachable!() };
        assert_eq!(checksum(&[&v6_pseudo(&a, &b, p6.len() - 40), &p6[40..]]), 0);
        assert_eq!(parse_echo_reply(&[0x45; 5], s), None);
    }

    #[test]
    fn candidates_stay_inside_the_subnet() {
        let c = probe_candidates("10.100.0.1".parse().unwrap(), 24, 3);
        assert_eq!(
            c,
            vec![
                "10.100.0.254".parse::<IpAddr>().unwrap(),
                "10.100.0.253".parse().unwrap(),
                "10.100.0.252".parse().unwrap()
            ]
        );
        assert!(probe_candidates("10.100.0.1".parse().unwrap(), 32, 3).is_empty());
        let c6 = probe_candidates("fd00:100::1".parse().unwrap(), 64, 2);
        assert_eq!(
            c6[0],
            "fd00:100::ffff:ffff:ffff:ffff".parse::<IpAddr>().unwrap()
        );
    }
}
