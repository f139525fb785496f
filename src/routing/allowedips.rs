//! Allowed IPs: a longest-prefix-match table from IP prefixes to a value (a
//! peer), used for outbound peer selection and the inbound source check.
use std::net::IpAddr;

pub struct AllowedIps<T> {
    _owner_fill_in: std::marker::PhantomData<T>,
}

impl<T: Clone + PartialEq> Default for AllowedIps<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> AllowedIps<T> {
    pub fn new() -> Self {
        todo!()
    }
    /// Inserts `addr/cidr` (host bits are masked off) for `value`, replacing
    /// any previous owner of exactly that prefix. `cidr` must be <= 32/128.
    pub fn insert(&mut self, addr: IpAddr, cidr: u8, value: T) {
        let _ = (addr, cidr, value);
        todo!()
    }
    /// Removes `addr/cidr` if `value` owns it; true when removed.
    pub fn remove(&mut self, addr: IpAddr, cidr: u8, value: &T) -> bool {
        let _ = (addr, cidr, value);
        todo!()
    }
    /// Removes every prefix owned by `value`.
    pub fn remove_by_value(&mut self, value: &T) {
        let _ = value;
        todo!()
    }
    /// Longest-prefix match.
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        let _ = addr;
        todo!()
    }
    pub fn lookup_v4(&self, addr: [u8; 4]) -> Option<&T> {
        let _ = addr;
        todo!()
    }
    pub fn lookup_v6(&self, addr: [u8; 16]) -> Option<&T> {
        let _ = addr;
        todo!()
    }
    /// Prefixes owned by `value` (masked), IPv4 first, in a stable order.
    pub fn prefixes_of(&self, value: &T) -> Vec<(IpAddr, u8)> {
        let _ = value;
        todo!()
    }
    /// Number of prefixes in the table.
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn clear(&mut self) {
        todo!()
    }
}
