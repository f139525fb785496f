use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Same shape as the kernel selftest's `ip6()`: four big-endian words.
fn v6(a: u32, b: u32, c: u32, d: u32) -> IpAddr {
    let x = (u128::from(a) << 96) | (u128::from(b) << 64) | (u128::from(c) << 32) | u128::from(d);
    IpAddr::V6(Ipv6Addr::from(x))
}

/// Walks both tries and checks the structural invariants: parent links, a
/// child extends its parent's prefix by at least one bit on the side it hangs
/// from, keys are masked, valueless nodes fork, and `len` and the arena's
/// live node count agree with what is reachable.
fn check_invariants<T: Clone + PartialEq>(t: &AllowedIps<T>) {
    for trie in [&t.v4, &t.v6] {
        let mut stack = vec![(trie.root, NIL)];
        let mut reachable = 0;
        let mut values = 0;
        while let Some((i, parent)) = stack.pop() {
            if i == NIL {
                continue;
            }
            reachable += 1;
            let n = &trie.nodes[i as usize];
            assert_eq!(n.parent, parent, "parent link");
            assert!(n.cidr <= trie.bits);
            assert_eq!(n.key & !mask(n.cidr), 0, "key not masked");
            if parent != NIL {
                let p = &trie.nodes[parent as usize];
                assert!(n.cidr > p.cidr);
                assert!(common_len(n.key, p.key) >= p.cidr);
                assert_eq!(p.child[bit(n.key, p.cidr)], i, "hangs on wrong side");
            }
            if n.value.is_some() {
                values += 1;
            } else {
                assert!(
                    n.child[0] != NIL && n.child[1] != NIL,
                    "valueless leaf/chain"
                );
            }
            stack.push((n.child[0], i));
            stack.push((n.child[1], i));
        }
        assert_eq!(values, trie.len);
        assert_eq!(reachable, trie.live_nodes(), "leaked arena nodes");
    }
}

#[test]
fn kernel_selftest_fixed_table() {
    // drivers/net/wireguard/selftest/allowedips.c, as data.
    let inserts: &[(char, IpAddr, u8)] = &[
        ('a', v4(192, 168, 4, 0), 24),
        ('b', v4(192, 168, 4, 4), 32),
        ('c', v4(192, 168, 0, 0), 16),
        ('d', v4(192, 95, 5, 64), 27),
        ('c', v4(192, 95, 5, 65), 27), // replaces d, host bits masked
        ('d', v6(0x26075300, 0x60006b00, 0, 0xc05f0543), 128),
        ('c', v6(0x26075300, 0x60006b00, 0, 0), 64),
        ('e', v4(0, 0, 0, 0), 0),
        ('e', v6(0, 0, 0, 0), 0),
        ('f', v6(0, 0, 0, 0), 0), // replaces e
        ('g', v6(0x24046800, 0, 0, 0), 32),
        ('h', v6(0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef), 64),
        ('a', v6(0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef), 128),
        ('c', v6(0x24446800, 0x40e40800, 0xdeaebeef, 0xdefbeef), 128),
        ('b', v6(0x24446800, 0xf0e40800, 0xeeaebeef, 0), 98),
        ('g', v4(64, 15, 112, 0), 20),
        ('h', v4(64, 15, 123, 211), 25),
        ('a', v4(10, 0, 0, 0), 25),
        ('b', v4(10, 0, 0, 128), 25),
        ('a', v4(10, 1, 0, 0), 30),
        ('b', v4(10, 1, 0, 4), 30),
        ('c', v4(10, 1, 0, 8), 29),
        ('d', v4(10, 1, 0, 16), 29),
    ];
    let lookups: &[(char, IpAddr)] = &[
        ('a', v4(192, 168, 4, 20)),
        ('a', v4(192, 168, 4, 0)),
        ('b', v4(192, 168, 4, 4)),
        ('c', v4(192, 168, 200, 182)),
        ('c', v4(192, 95, 5, 68)),
        ('e', v4(192, 95, 5, 96)),
        ('d', v6(0x26075300, 0x60006b00, 0, 0xc05f0543)),
        ('c', v6(0x26075300, 0x60006b00, 0, 0xc02e01ee)),
        ('f', v6(0x26075300, 0x60006b01, 0, 0)),
        ('g', v6(0x24046800, 0x40040806, 0, 0x1006)),
        ('g', v6(0x24046800, 0x40040806, 0x1234, 0x5678)),
        ('f', v6(0x240467ff, 0x40040806, 0x1234, 0x5678)),
        ('f', v6(0x24046801, 0x40040806, 0x1234, 0x5678)),
        ('h', v6(0x24046800, 0x40040800, 0x1234, 0x5678)),
        ('h', v6(0x24046800, 0x40040800, 0, 0)),
        ('h', v6(0x24046800, 0x40040800, 0x10101010, 0x10101010)),
        ('a', v6(0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef)),
        ('g', v4(64, 15, 116, 26)),
        ('g', v4(64, 15, 127, 3)),
        ('g', v4(64, 15, 123, 1)),
        ('h', v4(64, 15, 123, 128)),
        ('h', v4(64, 15, 123, 129)),
        ('a', v4(10, 0, 0, 52)),
        ('b', v4(10, 0, 0, 220)),
        ('a', v4(10, 1, 0, 2)),
        ('b', v4(10, 1, 0, 6)),
        ('c', v4(10, 1, 0, 10)),
        ('d', v4(10, 1, 0, 20)),
    ];
    let mut t = AllowedIps::new();
    for &(peer, addr, cidr) in inserts {
        t.insert(addr, cidr, peer);
        check_invariants(&t);
    }
    // Two inserts replaced an existing prefix.
    assert_eq!(t.len(), inserts.len() - 2);
    for &(want, addr) in lookups {
        assert_eq!(t.lookup(addr), Some(&want), "lookup {addr}");
    }

    for first in [1, 64, 128, 192, 255] {
        t.insert(v4(first, 0, 0, 0), 32, 'a');
    }
    t.remove_by_value(&'a');
    check_invariants(&t);
    for first in [1, 64, 128, 192, 255] {
        assert_ne!(t.lookup(v4(first, 0, 0, 0)), Some(&'a'));
    }
    assert!(t.prefixes_of(&'a').is_empty());

    t.clear();
    assert!(t.is_empty());
    t.insert(v4(192, 168, 0, 0), 16, 'a');
    t.insert(v4(192, 168, 0, 0), 24, 'a');
    t.remove_by_value(&'a');
    assert_eq!(t.lookup(v4(192, 168, 0, 1)), None);
    check_invariants(&t);
    assert_eq!(t.v4.live_nodes(), 0);

    // 128 host routes, each all-ones but for one bit: deepest possible forks.
    for i in 0..128u32 {
        let addr = !(1u128 << (127 - i));
        t.insert(IpAddr::V6(Ipv6Addr::from(addr)), 128, 'a');
    }
    check_invariants(&t);
    assert_eq!(t.len(), 128);
    t.remove_by_value(&'a');
    assert!(t.is_empty());
    check_invariants(&t);
    assert_eq!(t.v6.live_nodes(), 0);

    t.insert(v4(192, 95, 5, 93), 27, 'a');
    t.insert(v6(0x26075300, 0x60006b00, 0, 0xc05f0543), 128, 'a');
    t.insert(v4(10, 1, 0, 20), 29, 'a');
    t.insert(v6(0x26075300, 0x6d8a6bf8, 0xdab1f1df, 0xc05f1523), 83, 'a');
    t.insert(v6(0x26075300, 0x6d8a6bf8, 0xdab1f1df, 0xc05f1523), 21, 'a');
    assert_eq!(
        t.prefixes_of(&'a'),
        vec![
            (v4(10, 1, 0, 16), 29),
            (v4(192, 95, 5, 64), 27),
            (v6(0x26075000, 0, 0, 0), 21),
            (v6(0x26075300, 0x60006b00, 0, 0xc05f0543), 128),
            (v6(0x26075300, 0x6d8a6bf8, 0xdab1e000, 0), 83),
        ]
    );
}

#[test]
fn more_specific_prefix_of_another_peer_wins() {
    let mut t = AllowedIps::new();
    t.insert(v4(10, 0, 0, 0), 24, 1u32);
    t.insert(v4(10, 0, 0, 5), 32, 2);
    t.insert(v4(0, 0, 0, 0), 0, 3);
    assert_eq!(t.lookup(v4(10, 0, 0, 5)), Some(&2));
    assert_eq!(t.lookup(v4(10, 0, 0, 4)), Some(&1));
    assert_eq!(t.lookup(v4(10, 0, 0, 6)), Some(&1));
    assert_eq!(t.lookup(v4(10, 0, 1, 5)), Some(&3));
    assert_eq!(t.lookup_v4([10, 0, 0, 5]), Some(&2));
    // Inserting in the other order builds a different shape, same answers.
    let mut u = AllowedIps::new();
    u.insert(v4(10, 0, 0, 5), 32, 2u32);
    u.insert(v4(10, 0, 0, 0), 24, 1);
    assert_eq!(u.lookup(v4(10, 0, 0, 5)), Some(&2));
    assert_eq!(u.lookup(v4(10, 0, 0, 9)), Some(&1));
    assert_eq!(u.lookup(v4(10, 0, 1, 9)), None);
    // Removing the /32 hands the address back to the /24's owner.
    assert!(t.remove(v4(10, 0, 0, 5), 32, &2));
    assert_eq!(t.lookup(v4(10, 0, 0, 5)), Some(&1));
    check_invariants(&t);
}

#[test]
fn remove_by_prefix_only_when_owned() {
    let mut t = AllowedIps::new();
    t.insert(v4(10, 0, 0, 0), 8, 1u32);
    t.insert(v6(0xfd00, 0, 0, 0), 64, 1);
    assert!(!t.remove(v4(10, 0, 0, 0), 8, &2), "not the owner");
    assert!(!t.remove(v4(10, 0, 0, 0), 16, &1), "no such prefix");
    assert!(!t.remove(v4(10, 0, 0, 0), 7, &1), "no such prefix");
    assert_eq!(t.lookup(v4(10, 9, 9, 9)), Some(&1));
    // Host bits in the removal are masked like on insert.
    assert!(t.remove(v4(10, 1, 2, 3), 8, &1));
    assert_eq!(t.lookup(v4(10, 9, 9, 9)), None);
    assert!(!t.remove(v4(10, 0, 0, 0), 8, &1), "already gone");
    assert_eq!(t.len(), 1);
    assert!(t.remove(v6(0xfd00, 0, 0, 0), 64, &1));
    assert!(t.is_empty());
    check_invariants(&t);
}

#[test]
fn remove_by_value_leaves_other_peers() {
    let mut t = AllowedIps::new();
    t.insert(v4(10, 0, 0, 0), 8, 1u32);
    t.insert(v4(10, 1, 0, 0), 16, 2);
    t.insert(v4(10, 1, 1, 0), 24, 1);
    t.insert(v6(0xfd00, 0, 0, 1), 128, 1);
    t.insert(v6(0xfd00, 0, 0, 2), 128, 2);
    t.remove_by_value(&1);
    check_invariants(&t);
    assert_eq!(t.len(), 2);
    assert_eq!(t.lookup(v4(10, 1, 1, 1)), Some(&2));
    assert_eq!(t.lookup(v4(10, 2, 0, 0)), None);
    assert_eq!(t.lookup(v6(0xfd00, 0, 0, 1)), None);
    assert_eq!(t.lookup(v6(0xfd00, 0, 0, 2)), Some(&2));
    assert_eq!(
        t.prefixes_of(&2),
        vec![(v4(10, 1, 0, 0), 16), (v6(0xfd00, 0, 0, 2), 128)]
    );
}

#[test]
fn retain_and_entries() {
    let mut t = AllowedIps::new();
    for i in 0..50u8 {
        t.insert(v4(10, i, 0, 0), 16, u32::from(i % 5));
        t.insert(v6(0xfd00, u32::from(i), 0, 0), 64, u32::from(i % 5));
    }
    t.retain(|&p| p == 1 || p == 3);
    check_invariants(&t);
    assert_eq!(t.len(), 40);
    let mut seen: Vec<(IpAddr, u8, u32)> = t.entries().map(|(a, c, &p)| (a, c, p)).collect();
    assert_eq!(seen.len(), 40);
    assert!(seen.iter().all(|e| e.2 == 1 || e.2 == 3));
    assert!(seen[..20].iter().all(|e| e.0.is_ipv4()), "IPv4 first");
    seen.retain(|e| e.2 == 3);
    seen.sort();
    let want: Vec<_> = t
        .prefixes_of(&3)
        .into_iter()
        .map(|(a, c)| (a, c, 3))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(t.lookup(v4(10, 3, 1, 1)), Some(&3));
    assert_eq!(t.lookup(v4(10, 2, 1, 1)), None);
}

#[test]
fn insert_replaces_owner_of_identical_prefix() {
    let mut t = AllowedIps::new();
    t.insert(v4(192, 168, 1, 0), 24, 1u32);
    t.insert(v4(192, 168, 1, 77), 24, 2);
    assert_eq!(t.len(), 1);
    assert_eq!(t.lookup(v4(192, 168, 1, 1)), Some(&2));
    assert!(t.prefixes_of(&1).is_empty());
    assert!(!t.remove(v4(192, 168, 1, 0), 24, &1));
    assert_eq!(t.prefixes_of(&2), vec![(v4(192, 168, 1, 0), 24)]);
}

#[test]
fn host_bits_masked_and_families_separate() {
    let mut t = AllowedIps::new();
    t.insert(v4(10, 200, 3, 4), 8, 1u32);
    t.insert(v6(0x2001_0db8, 0x1234, 0x5678, 0x9abc), 32, 1);
    t.insert(v4(1, 2, 3, 4), 200, 2); // oversized cidr: treated as /32
    assert_eq!(
        t.prefixes_of(&1),
        vec![(v4(10, 0, 0, 0), 8), (v6(0x2001_0db8, 0, 0, 0), 32)]
    );
    assert_eq!(t.prefixes_of(&2), vec![(v4(1, 2, 3, 4), 32)]);
    // An IPv4-mapped IPv6 address is looked up in the v6 table only.
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 1, 1).to_ipv6_mapped());
    assert_eq!(t.lookup(mapped), None);
    assert_eq!(t.lookup(v4(10, 1, 1, 1)), Some(&1));
    let a6 = [
        0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    assert_eq!(t.lookup_v6(a6), Some(&1));
    assert_eq!(t.lookup(IpAddr::V6(Ipv6Addr::from(a6))), Some(&1));
    t.clear();
    assert!(t.is_empty());
    assert_eq!(t.lookup_v4([10, 0, 0, 0]), None);
}

/// The trivial reference: a list of (is_v4, key, cidr, peer).
#[derive(Default)]
struct Naive(Vec<(bool, u128, u8, u32)>);

impl Naive {
    fn insert(&mut self, v4: bool, key: u128, cidr: u8, peer: u32) {
        let key = key & mask(cidr);
        match self
            .0
            .iter_mut()
            .find(|r| (r.0, r.1, r.2) == (v4, key, cidr))
        {
            Some(r) => r.3 = peer,
            None => self.0.push((v4, key, cidr, peer)),
        }
    }
    fn remove(&mut self, v4: bool, key: u128, cidr: u8, peer: u32) -> bool {
        let key = key & mask(cidr);
        let before = self.0.len();
        self.0.retain(|r| *r != (v4, key, cidr, peer));
        self.0.len() != before
    }
    fn lookup(&self, v4: bool, key: u128) -> Option<u32> {
        self.0
            .iter()
            .filter(|r| r.0 == v4 && (key ^ r.1) & mask(r.2) == 0)
            .max_by_key(|r| r.2)
            .map(|r| r.3)
    }
}

fn to_ip(v4: bool, key: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from((key >> 96) as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(key))
    }
}

fn random_key(rng: &mut ChaCha8Rng, v4: bool) -> u128 {
    let k: u128 = rng.gen();
    if v4 {
        k & mask(32)
    } else {
        k
    }
}

/// Keeps a random number of leading bits of `base` and randomizes the rest,
/// as the kernel's randomized test does, so prefixes cluster and nest.
fn mutate(rng: &mut ChaCha8Rng, v4: bool, base: u128) -> u128 {
    let bits = if v4 { 32 } else { 128 };
    let keep = mask(rng.gen_range(0..bits));
    (base & keep) | (random_key(rng, v4) & !keep)
}

#[test]
fn randomized_against_naive_list() {
    const PEERS: u32 = 1000;
    const BASE_ROUTES: usize = 80;
    const MUTATIONS: usize = 16;
    const ROUNDS: usize = 14;
    const QUERIES: usize = 600;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_a11e_d195);
    let mut t = AllowedIps::new();
    let mut naive = Naive::default();
    let insert = |t: &mut AllowedIps<u32>, naive: &mut Naive, v4: bool, key, cidr, peer| {
        t.insert(to_ip(v4, key), cidr, peer);
        naive.insert(v4, key, cidr, peer);
    };
    for v4 in [true, false] {
        let bits = if v4 { 32 } else { 128 };
        for _ in 0..BASE_ROUTES {
            let base = random_key(&mut rng, v4);
            let (cidr, peer) = (rng.gen_range(1..=bits), rng.gen_range(0..PEERS));
            insert(&mut t, &mut naive, v4, base, cidr, peer);
            for _ in 0..MUTATIONS {
                let key = mutate(&mut rng, v4, base);
                let (cidr, peer) = (rng.gen_range(1..=bits), rng.gen_range(0..PEERS));
                insert(&mut t, &mut naive, v4, key, cidr, peer);
            }
        }
    }
    check_invariants(&t);
    assert_eq!(t.len(), naive.0.len());

    for round in 0..ROUNDS {
        for v4 in [true, false] {
            for q in 0..QUERIES {
                // Half uniformly random, half near an existing route so long
                // prefixes are hit too.
                let key = if q % 2 == 0 || naive.0.is_empty() {
                    random_key(&mut rng, v4)
                } else {
                    let r = naive.0[rng.gen_range(0..naive.0.len())];
                    mutate(&mut rng, v4, r.1)
                };
                let got = t.lookup(to_ip(v4, key)).copied();
                assert_eq!(
                    got,
                    naive.lookup(v4, key),
                    "round {round} {}",
                    to_ip(v4, key)
                );
            }
        }
        // Mutations: new nested routes, removals by prefix (owned or not),
        // and whole peers removed.
        for _ in 0..40 {
            let v4 = rng.gen_bool(0.5);
            let bits = if v4 { 32 } else { 128 };
            let key = if naive.0.is_empty() {
                random_key(&mut rng, v4)
            } else {
                let base = naive.0[rng.gen_range(0..naive.0.len())].1;
                mutate(&mut rng, v4, base)
            };
            let (cidr, peer) = (rng.gen_range(0..=bits), rng.gen_range(0..PEERS));
            insert(&mut t, &mut naive, v4, key, cidr, peer);
        }
        for _ in 0..30 {
            let r = naive.0[rng.gen_range(0..naive.0.len())];
            let peer = if rng.gen_bool(0.7) {
                r.3
            } else {
                rng.gen_range(0..PEERS)
            };
            let removed = t.remove(to_ip(r.0, r.1), r.2, &peer);
            assert_eq!(removed, naive.remove(r.0, r.1, r.2, peer));
        }
        for _ in 0..40 {
            let peer = rng.gen_range(0..PEERS);
            t.remove_by_value(&peer);
            naive.0.retain(|r| r.3 != peer);
        }
        check_invariants(&t);
        assert_eq!(t.len(), naive.0.len());
        for _ in 0..5 {
            let peer = naive.0[rng.gen_range(0..naive.0.len())].3;
            let mut want: Vec<_> = naive.0.iter().filter(|r| r.3 == peer).collect();
            want.sort_by_key(|r| (!r.0, r.1, r.2));
            let want: Vec<_> = want.iter().map(|r| (to_ip(r.0, r.1), r.2)).collect();
            assert_eq!(t.prefixes_of(&peer), want);
        }
    }
    for peer in 0..PEERS {
        t.remove_by_value(&peer);
    }
    assert!(t.is_empty());
    assert_eq!(t.v4.live_nodes() + t.v6.live_nodes(), 0);
}
