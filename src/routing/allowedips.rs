//! Allowed IPs: a longest-prefix-match table from IP prefixes to a value (a
//! peer), used for outbound peer selection and the inbound source check.
//!
//! Each address family is a path-compressed binary trie (the shape of the
//! kernel's allowedips.c): a node holds a masked prefix, children extend it by
//! at least one bit, and nodes without a value exist only where two branches
//! fork, so a lookup touches at most one node per prefix length present on its
//! path (<= 33 or 129) and never allocates. Nodes live in a per-family arena
//! addressed by `u32` so that removal by value is a linear scan of a dense
//! array rather than a pointer chase, and so that node indices stay stable
//! while the trie is reshaped.
//!
//! IPv4 keys are stored left-aligned in a `u128` so both families share one
//! implementation; bit 0 is the most significant bit of the address.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NIL: u32 = u32::MAX;

struct Node<T> {
    /// Prefix bits, left-aligned, host bits zero.
    key: u128,
    cidr: u8,
    parent: u32,
    child: [u32; 2],
    value: Option<T>,
}

/// Mask of the first `cidr` bits of a left-aligned key.
#[inline]
fn mask(cidr: u8) -> u128 {
    if cidr == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(cidr))
    }
}

/// The bit right after a `pos`-bit prefix, which picks the child.
#[inline]
fn bit(key: u128, pos: u8) -> usize {
    ((key >> (127 - u32::from(pos))) & 1) as usize
}

/// Length of the common prefix of two left-aligned keys.
#[inline]
fn common_len(a: u128, b: u128) -> u8 {
    // At most 128, so it fits.
    (a ^ b).leading_zeros() as u8
}

struct Trie<T> {
    nodes: Vec<Node<T>>,
    free: Vec<u32>,
    root: u32,
    /// 32 or 128: the longest valid prefix.
    bits: u8,
    len: usize,
}

impl<T: Clone + PartialEq> Trie<T> {
    fn new(bits: u8) -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            bits,
            len: 0,
        }
    }

    fn clear(&mut self) {
        self.nodes.clear();
        self.free.clear();
        self.root = NIL;
        self.len = 0;
    }

    fn alloc(&mut self, key: u128, cidr: u8, value: Option<T>) -> u32 {
        let node = Node {
            key,
            cidr,
            parent: NIL,
            child: [NIL, NIL],
            value,
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        n.value = None;
        n.child = [NIL, NIL];
        n.parent = NIL;
        self.free.push(i);
    }

    /// Hangs node `n` under `parent` (or at the root), in the slot its key
    /// selects; whatever was in that slot is overwritten.
    fn link(&mut self, parent: u32, n: u32) {
        if parent == NIL {
            self.root = n;
        } else {
            let b = bit(self.nodes[n as usize].key, self.nodes[parent as usize].cidr);
            self.nodes[parent as usize].child[b] = n;
        }
        self.nodes[n as usize].parent = parent;
    }

    fn insert(&mut self, key: u128, cidr: u8, value: T) {
        let cidr = cidr.min(self.bits);
        let key = key & mask(cidr);
        let mut parent = NIL;
        let mut cur = self.root;
        loop {
            if cur == NIL {
                let n = self.alloc(key, cidr, Some(value));
                self.link(parent, n);
                self.len += 1;
                return;
            }
            let (nkey, ncidr) = {
                let n = &self.nodes[cur as usize];
                (n.key, n.cidr)
            };
            let common = common_len(key, nkey).min(cidr).min(ncidr);
            if common == ncidr {
                if ncidr == cidr {
                    let slot = &mut self.nodes[cur as usize].value;
                    if slot.is_none() {
                        self.len += 1;
                    }
                    *slot = Some(value);
                    return;
                }
                parent = cur;
                cur = self.nodes[cur as usize].child[bit(key, ncidr)];
                continue;
            }
            // `cur` does not contain the new prefix: either the new prefix
            // contains `cur`, or the two fork at bit `common`.
            let n = self.alloc(key, cidr, Some(value));
            if common == cidr {
                self.link(parent, n);
                self.link(n, cur);
            } else {
                let fork = self.alloc(key & mask(common), common, None);
                self.link(parent, fork);
                self.link(fork, n);
                self.link(fork, cur);
            }
            self.len += 1;
            return;
        }
    }

    fn find_exact(&self, key: u128, cidr: u8) -> Option<u32> {
        let mut cur = self.root;
        while cur != NIL {
            let n = &self.nodes[cur as usize];
            if n.cidr > cidr || common_len(key, n.key) < n.cidr {
                return None;
            }
            if n.cidr == cidr {
                return Some(cur);
            }
            cur = n.child[bit(key, n.cidr)];
        }
        None
    }

    fn remove(&mut self, key: u128, cidr: u8, value: &T) -> bool {
        let cidr = cidr.min(self.bits);
        let key = key & mask(cidr);
        match self.find_exact(key, cidr) {
            Some(i) if self.nodes[i as usize].value.as_ref() == Some(value) => {
                self.remove_node(i);
                true
            }
            _ => false,
        }
    }

    /// Drops the value of node `i` and restores the invariant that a
    /// valueless node has exactly two children. Only `i` and valueless
    /// ancestors are released, so other nodes keep their indices.
    fn remove_node(&mut self, i: u32) {
        self.nodes[i as usize].value = None;
        self.len -= 1;
        if self.len == 0 {
            self.clear();
            return;
        }
        let mut cur = i;
        loop {
            let n = &self.nodes[cur as usize];
            if n.value.is_some() {
                return;
            }
            let parent = n.parent;
            match n.child {
                [NIL, NIL] => {
                    if parent == NIL {
                        self.root = NIL;
                    } else {
                        let b = bit(n.key, self.nodes[parent as usize].cidr);
                        self.nodes[parent as usize].child[b] = NIL;
                    }
                    self.release(cur);
                    if parent == NIL {
                        return;
                    }
                    // The parent lost a child; if it is a fork it must go.
                    cur = parent;
                }
                [only, NIL] | [NIL, only] => {
                    self.link(parent, only);
                    self.release(cur);
                    return;
                }
                _ => return,
            }
        }
    }

    fn retain(&mut self, keep: &mut impl FnMut(&T) -> bool) {
        // Removal never moves a node, so indices stay valid while scanning;
        // the arena only shrinks when the table empties (then the loop ends).
        let mut i = 0;
        while i < self.nodes.len() {
            if matches!(&self.nodes[i].value, Some(v) if !keep(v)) {
                self.remove_node(i as u32);
            }
            i += 1;
        }
    }

    #[inline]
    fn lookup(&self, key: u128) -> Option<&T> {
        let mut best = None;
        let mut cur = self.root;
        while let Some(n) = self.nodes.get(cur as usize) {
            if common_len(key, n.key) < n.cidr {
                break;
            }
            if n.value.is_some() {
                best = n.value.as_ref();
            }
            if n.cidr >= self.bits {
                break;
            }
            cur = n.child[bit(key, n.cidr)];
        }
        best
    }

    fn prefixes_of(&self, value: &T) -> Vec<(u128, u8)> {
        let mut out: Vec<(u128, u8)> = self
            .nodes
            .iter()
            .filter(|n| n.value.as_ref() == Some(value))
            .map(|n| (n.key, n.cidr))
            .collect();
        out.sort_unstable();
        out
    }

    fn entries(&self) -> impl Iterator<Item = (u128, u8, &T)> + '_ {
        self.nodes
            .iter()
            .filter_map(|n| n.value.as_ref().map(|v| (n.key, n.cidr, v)))
    }

    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

fn v4_key(a: Ipv4Addr) -> u128 {
    u128::from(u32::from(a)) << 96
}

fn key_of(addr: IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(a) => (true, v4_key(a)),
        IpAddr::V6(a) => (false, u128::from(a)),
    }
}

pub struct AllowedIps<T> {
    v4: Trie<T>,
    v6: Trie<T>,
}

impl<T: Clone + PartialEq> Default for AllowedIps<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> AllowedIps<T> {
    pub fn new() -> Self {
        Self {
            v4: Trie::new(32),
            v6: Trie::new(128),
        }
    }
    /// Inserts `addr/cidr` (host bits are masked off) for `value`, replacing
    /// any previous owner of exactly that prefix. `cidr` must be <= 32/128;
    /// a larger one is treated as the family's maximum.
    pub fn insert(&mut self, addr: IpAddr, cidr: u8, value: T) {
        match key_of(addr) {
            (true, k) => self.v4.insert(k, cidr, value),
            (false, k) => self.v6.insert(k, cidr, value),
        }
    }
    /// Removes `addr/cidr` if `value` owns it; true when removed.
    pub fn remove(&mut self, addr: IpAddr, cidr: u8, value: &T) -> bool {
        match key_of(addr) {
            (true, k) => self.v4.remove(k, cidr, value),
            (false, k) => self.v6.remove(k, cidr, value),
        }
    }
    /// Removes every prefix owned by `value`. This scans the whole table
    /// (values are only `PartialEq`, so there is no per-value index): to
    /// drop many peers at once, use [`retain`](Self::retain) or `clear`.
    pub fn remove_by_value(&mut self, value: &T) {
        self.retain(|v| v != value);
    }
    /// Keeps only the prefixes whose owner passes `keep`, in one pass.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.v4.retain(&mut keep);
        self.v6.retain(&mut keep);
    }
    /// Every prefix (masked) with its owner, IPv4 first, in no particular
    /// order within a family. One pass over the table, for building a whole
    /// get reply without a `prefixes_of` scan per peer.
    pub fn entries(&self) -> impl Iterator<Item = (IpAddr, u8, &T)> + '_ {
        let v4 = self
            .v4
            .entries()
            .map(|(k, c, v)| (IpAddr::V4(Ipv4Addr::from((k >> 96) as u32)), c, v));
        let v6 = self
            .v6
            .entries()
            .map(|(k, c, v)| (IpAddr::V6(Ipv6Addr::from(k)), c, v));
        v4.chain(v6)
    }
    /// Longest-prefix match.
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(v4_key(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }
    #[inline]
    pub fn lookup_v4(&self, addr: [u8; 4]) -> Option<&T> {
        self.v4.lookup(u128::from(u32::from_be_bytes(addr)) << 96)
    }
    #[inline]
    pub fn lookup_v6(&self, addr: [u8; 16]) -> Option<&T> {
        self.v6.lookup(u128::from_be_bytes(addr))
    }
    /// Prefixes owned by `value` (masked), IPv4 first, in a stable order
    /// (ascending address, then prefix length).
    pub fn prefixes_of(&self, value: &T) -> Vec<(IpAddr, u8)> {
        let v4 = self.v4.prefixes_of(value).into_iter().map(|(k, c)| {
            let a = Ipv4Addr::from((k >> 96) as u32);
            (IpAddr::V4(a), c)
        });
        let v6 = self
            .v6
            .prefixes_of(value)
            .into_iter()
            .map(|(k, c)| (IpAddr::V6(Ipv6Addr::from(k)), c));
        v4.chain(v6).collect()
    }
    /// Number of prefixes in the table.
    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }
}

#[cfg(test)]
#[path = "allowedips_tests.rs"]
mod tests;
