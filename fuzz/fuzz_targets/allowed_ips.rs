//! Allowed IPs: sequences of insert, remove and lookup against a naive
//! model (a list of masked prefixes, longest match by scanning).
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use phantommesh::routing::allowedips::AllowedIps;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Arbitrary, Debug)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
    /// IPv6 in the IPv4-mapped range: its own family in the table.
    Mapped([u8; 4]),
}

impl Addr {
    fn ip(&self) -> IpAddr {
        match *self {
            Addr::V4(a) => IpAddr::V4(Ipv4Addr::from(a)),
            Addr::V6(a) => IpAddr::V6(Ipv6Addr::from(a)),
            Addr::Mapped(a) => IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Insert(Addr, u8, u8),
    Remove(Addr, u8, u8),
    RemoveByValue(u8),
    Lookup(Addr),
    Entries,
    Clear,
}

fn bits(ip: IpAddr) -> (bool, u128, u8) {
    match ip {
        IpAddr::V4(a) => (true, u128::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (false, u128::from(a), 128),
    }
}

fn mask(ip: IpAddr, cidr: u8) -> (bool, u128, u8) {
    let (v4, k, max) = bits(ip);
    let cidr = cidr.min(max);
    let m = if cidr == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(cidr))
    };
    (v4, k & m, cidr)
}

fuzz_target!(|ops: Vec<Op>| {
    let mut t: AllowedIps<u8> = AllowedIps::new();
    // (v4, masked key, cidr) -> owner
    let mut model: Vec<((bool, u128, u8), u8)> = Vec::new();
    for op in ops {
        match op {
            Op::Insert(a, cidr, v) => {
                let v = v % 8;
                let p = mask(a.ip(), cidr);
                t.insert(a.ip(), p.2, v);
                model.retain(|(q, _)| *q != p);
                model.push((p, v));
            }
            Op::Remove(a, cidr, v) => {
                let v = v % 8;
                let p = mask(a.ip(), cidr);
                let owned = model.iter().any(|e| *e == (p, v));
                assert_eq!(t.remove(a.ip(), p.2, &v), owned, "remove {p:?} by {v}");
                model.retain(|e| *e != (p, v));
            }
            Op::RemoveByValue(v) => {
                let v = v % 8;
                t.remove_by_value(&v);
                model.retain(|(_, o)| *o != v);
            }
            Op::Lookup(a) => {
                let (v4, k, _) = bits(a.ip());
                let want = model
                    .iter()
                    .filter(|((f, pk, c), _)| *f == v4 && mask(a.ip(), *c).1 == *pk)
                    .max_by_key(|((_, _, c), _)| *c)
                    .map(|(_, o)| *o);
                assert_eq!(t.lookup(a.ip()).copied(), want, "lookup {:?}", a.ip());
                let fast = match a.ip() {
                    IpAddr::V4(x) => t.lookup_v4(x.octets()),
                    IpAddr::V6(x) => t.lookup_v6(x.octets()),
                };
                assert_eq!(fast.copied(), want);
                let _ = k;
            }
            Op::Entries => {
                let mut got: Vec<_> = t.entries().map(|(ip, c, v)| (mask(ip, c), *v)).collect();
                let mut want = model.clone();
                got.sort();
                want.sort();
                assert_eq!(got, want);
                for v in 0..8u8 {
                    let mut p: Vec<_> = t
                        .prefixes_of(&v)
                        .into_iter()
                        .map(|(ip, c)| mask(ip, c))
                        .collect();
                    let mut w: Vec<_> = model
                        .iter()
                        .filter(|(_, o)| *o == v)
                        .map(|(q, _)| *q)
                        .collect();
                    p.sort();
                    w.sort();
                    assert_eq!(p, w);
                }
            }
            Op::Clear => {
                t.clear();
                model.clear();
            }
        }
        assert_eq!(t.len(), model.len());
    }
});
