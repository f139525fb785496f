//! Tunnel address allocation from `[mesh] network`, by create-if-absent
//! transactions on `PREFIX/addrs/IP` (value: the node name). Two nodes can
//! never get one address: the store lets exactly one create each key. A
//! node's address is keyed by its name, so it stays the node's own across
//! restarts, and it is freed only by `mesh leave`, never by a lease.
use super::record::{addr_key, addrs_prefix};
use super::store::{PutIf, Store, StoreError, StoreResult};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses tried before giving up (a huge IPv6 network is never walked
/// whole; a full IPv4 one is).
const MAX_TRIES: u64 = 65_536;

/// The usable host addresses of a network, counted from offset 0: the
/// network address is skipped, and for IPv4 the broadcast address too.
pub fn host_count(network: (IpAddr, u8)) -> u128 {
    let bits = match network.0 {
        IpAddr::V4(_) => 32 - u32::from(network.1),
        IpAddr::V6(_) => 128 - u32::from(network.1),
    };
    let size: u128 = if bits >= 128 {
        u128::MAX
    } else {
        1u128 << bits
    };
    match network.0 {
        IpAddr::V4(_) => size.saturating_sub(2),
        IpAddr::V6(_) => size.saturating_sub(1),
    }
}

/// The `i`-th usable host address (0-based) of a network.
pub fn nth_host(network: (IpAddr, u8), i: u128) -> IpAddr {
    match network.0 {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(network.1)).unwrap_or(0);
            let base = u32::from(a) & mask;
            IpAddr::V4(Ipv4Addr::from(base.wrapping_add(1 + i as u32)))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(network.1))
                .unwrap_or(0);
            let base = u128::from(a) & mask;
            IpAddr::V6(Ipv6Addr::from(base.wrapping_add(1 + i)))
        }
    }
}

/// Where a node starts looking: a hash of its name, so that nodes starting
/// together mostly try different addresses first.
pub fn start_offset(name: &str, hosts: u128) -> u128 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    if hosts == 0 {
        0
    } else {
        u128::from(h) % hosts
    }
}

/// This node's address in `network`: the one the store already holds for
/// `name`, else the first free one from the name's start offset.
pub async fn allocate<S: Store>(
    store: &mut S,
    prefix: &str,
    name: &str,
    network: (IpAddr, u8),
) -> StoreResult<IpAddr> {
    let (kvs, _) = store.list(&addrs_prefix(prefix)).await?;
    let mut taken = std::collections::HashSet::new();
    for kv in &kvs {
        let Some(ip) = kv
            .key
            .strip_prefix(&addrs_prefix(prefix))
            .and_then(|s| s.parse::<IpAddr>().ok())
        else {
            continue;
        };
        if !crate::config::prefix_contains(network, ip) {
            continue;
        }
        if kv.value == name.as_bytes() {
            return Ok(ip);
        }
        taken.insert(ip);
    }
    let hosts = host_count(network);
    let start = start_offset(name, hosts);
    let tries = hosts.min(u128::from(MAX_TRIES));
    for step in 0..tries {
        let ip = nth_host(network, (start + step) % hosts);
        if taken.contains(&ip) {
            continue;
        }
        match store
            .put_if(&addr_key(prefix, ip), name.as_bytes().to_vec(), None, 0)
            .await?
        {
            PutIf::Written => return Ok(ip),
            PutIf::Refused(Some(kv)) if kv.value == name.as_bytes() => return Ok(ip),
            PutIf::Refused(_) => continue,
        }
    }
    Err(StoreError::new(format!(
        "no free address left in {}/{} for node {name}",
        network.0, network.1
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::mem_store::MemStore;

    fn net(s: &str) -> (IpAddr, u8) {
        crate::config::parse_cidr(s).unwrap()
    }

    #[test]
    fn host_arithmetic() {
        assert_eq!(host_count(net("10.0.0.0/27")), 30);
        assert_eq!(
            nth_host(net("10.0.0.7/27"), 0),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            nth_host(net("10.0.0.0/27"), 29),
            "10.0.0.30".parse::<IpAddr>().unwrap()
        );
        assert_eq!(host_count(net("fd00::/126")), 3);
        assert_eq!(
            nth_host(net("fd00::/64"), 4),
            "fd00::5".parse::<IpAddr>().unwrap()
        );
        assert!(host_count(net("fd00::/0")) > 1 << 100);
    }

    #[tokio::test]
    async fn thirty_nodes_fill_a_slash_27_without_duplicates_and_keep_theirs() {
        let store = MemStore::new();
        let n = net("10.9.0.0/27");
        let mut tasks = Vec::new();
        for i in 0..30 {
            let mut s = store.clone();
            tasks.push(tokio::spawn(async move {
                allocate(&mut s, "/p", &format!("node-{i}"), n)
                    .await
                    .unwrap()
            }));
        }
        let mut got = std::collections::BTreeSet::new();
        for t in tasks {
            assert!(got.insert(t.await.unwrap()), "duplicate address");
        }
        assert_eq!(got.len(), 30);
        // The 31st finds none; an existing node gets its own back.
        let mut s = store.clone();
        let err = allocate(&mut s, "/p", "node-30", n).await.unwrap_err();
        assert!(err.0.contains("no free address"), "{err}");
        let again = allocate(&mut s, "/p", "node-7", n).await.unwrap();
        let key = addr_key("/p", again);
        assert_eq!(store.get(&key).unwrap(), b"node-7");
    }
}
