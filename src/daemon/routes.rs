//! Kernel routes for the peers' allowed IPs, as wg-quick installs them.
//!
//! [`RouteSync`] keeps the routes of one interface in step with the peers:
//! each sync computes the routes the peers need ([`desired_routes`], pure),
//! compares them with the routes it installed itself ([`diff`], pure) and
//! adds or deletes the difference over rtnetlink. It only ever deletes
//! routes it installed (or adopted, see below), and only through its own
//! interface, so routes an operator or a CNI plugin made are left alone.
//!
//! A route that already exists when it is added (EEXIST, e.g. left over by
//! a daemon that was killed) counts as installed: the daemon manages it from
//! then on, which is what makes a restart converge instead of erroring.
use crate::config::{prefix_contains, RouteTable};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[path = "routes_netlink.rs"]
mod netlink;

/// An address and a prefix length, as the config holds them.
pub type Prefix = (IpAddr, u8);

/// The kernel's main table (RT_TABLE_MAIN), where `Table = auto` routes go.
const MAIN_TABLE: u32 = 254;

/// `prefix` with its host bits cleared and its length clamped to the
/// family's width: the kernel refuses an IPv4 route with host bits set, and
/// `10.244.1.7/24` and `10.244.1.0/24` from two peers are one route.
pub fn normalise((ip, len): Prefix) -> Prefix {
    match ip {
        IpAddr::V4(a) => {
            let len = len.min(32);
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            (IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)), len)
        }
        IpAddr::V6(a) => {
            let len = len.min(128);
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            (IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)), len)
        }
    }
}

/// The routes a set of peers needs, and the default routes left out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Desired {
    pub routes: BTreeSet<Prefix>,
    /// `0.0.0.0/0` or `::/0` that a peer allows but `allow_default_route`
    /// does not: the caller warns about them.
    pub skipped_defaults: BTreeSet<Prefix>,
}

/// The routes for `peer_prefixes` (normalised, deduplicated).
///
/// In the main table a prefix already inside one of the interface's own
/// prefixes gets no route: the kernel made a prefix route for the address
/// (10.100.0.5/16 covers a peer's 10.100.0.7/32). In another table that
/// kernel route does not exist, so every prefix gets one, as with wg-quick's
/// `Table = N`. `RouteTable::Off` needs nothing.
pub fn desired_routes(
    interface_prefixes: &[Prefix],
    peer_prefixes: &[Prefix],
    table: RouteTable,
    allow_default_route: bool,
) -> Desired {
    let mut out = Desired::default();
    let Some(id) = table.id() else {
        return out;
    };
    let own: Vec<Prefix> = if id == MAIN_TABLE {
        interface_prefixes.iter().map(|&p| normalise(p)).collect()
    } else {
        Vec::new()
    };
    for &p in peer_prefixes {
        let p = normalise(p);
        if p.1 == 0 && !allow_default_route {
            out.skipped_defaults.insert(p);
        } else if !own.iter().any(|&o| covers(o, p)) {
            out.routes.insert(p);
        }
    }
    out
}

/// Whether `outer` contains all of `inner` (same family, not longer).
fn covers(outer: Prefix, inner: Prefix) -> bool {
    outer.0.is_ipv4() == inner.0.is_ipv4() && outer.1 <= inner.1 && prefix_contains(outer, inner.0)
}

/// What to change to get from `installed` to `desired`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub add: Vec<Prefix>,
    pub delete: Vec<Prefix>,
}

pub fn diff(installed: &BTreeSet<Prefix>, desired: &BTreeSet<Prefix>) -> Diff {
    Diff {
        add: desired.difference(installed).copied().collect(),
        delete: installed.difference(desired).copied().collect(),
    }
}

/// Keeps the kernel routes of one interface in step with its peers.
///
/// The table is fixed for the life of a `RouteSync`: to move to another
/// table, [`clear`](RouteSync::clear) this one and make a new one. Calls
/// act in the calling thread's network namespace.
#[derive(Debug)]
pub struct RouteSync {
    ifname: String,
    table: RouteTable,
    allow_default_route: bool,
    installed: BTreeSet<Prefix>,
    /// Skipped default routes already warned about (warned again only after
    /// one disappears from the peers and comes back).
    warned: BTreeSet<Prefix>,
}

impl RouteSync {
    pub fn new(ifname: &str, table: RouteTable, allow_default_route: bool) -> RouteSync {
        RouteSync {
            ifname: ifname.to_string(),
            table,
            allow_default_route,
            installed: BTreeSet::new(),
            warned: BTreeSet::new(),
        }
    }

    /// The routes this instance installed or adopted and has not removed.
    pub fn installed(&self) -> &BTreeSet<Prefix> {
        &self.installed
    }

    /// Adds the routes `peer_prefixes` need and deletes the ones installed
    /// before that they no longer need. Every change is tried; the error
    /// lists the ones that failed (they are tried again on the next sync).
    pub fn sync(
        &mut self,
        interface_prefixes: &[Prefix],
        peer_prefixes: &[Prefix],
    ) -> Result<(), String> {
        let Some(table) = self.table.id() else {
            return Ok(());
        };
        let want = desired_routes(
            interface_prefixes,
            peer_prefixes,
            self.table,
            self.allow_default_route,
        );
        self.warned.retain(|d| want.skipped_defaults.contains(d));
        for &d in &want.skipped_defaults {
            if self.warned.insert(d) {
                tracing::warn!(
                    interface = %self.ifname,
                    prefix = %format_prefix(d),
                    "a peer allows the default route; no route installed for it: a default \
                     route through the tunnel cuts the node off when the peer is wrong. Set \
                     allow_default_route = true in [interface] to route everything through it"
                );
            }
        }
        let changes = diff(&self.installed, &want.routes);
        if changes.add.is_empty() && changes.delete.is_empty() {
            return Ok(());
        }
        let ifindex = ifindex(&self.ifname)
            .ok_or_else(|| format!("cannot sync routes: no interface named {}", self.ifname))?;
        let mut sock = netlink::RouteSocket::open()
            .map_err(|e| format!("cannot open an rtnetlink socket: {e}"))?;
        let mut failed = Vec::new();
        for p in changes.delete {
            match sock.delete(p, table, ifindex) {
                Ok(()) => self.note(table, p, "route removed"),
                Err(e) if is_gone(&e) => {}
                Err(e) => {
                    failed.push(format!("delete {}: {e}", format_prefix(p)));
                    continue;
                }
            }
            self.installed.remove(&p);
        }
        for p in changes.add {
            match sock.add(p, table, ifindex) {
                Ok(()) => self.note(table, p, "route added"),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.note(table, p, "route already present; managed from now on")
                }
                Err(e) => {
                    failed.push(format!("add {}: {e}", format_prefix(p)));
                    continue;
                }
            }
            self.installed.insert(p);
        }
        summary(&self.ifname, failed)
    }

    /// Removes every route this instance installed (at shutdown). Routes
    /// already gone, with the interface or otherwise, count as removed.
    pub fn clear(&mut self) -> Result<(), String> {
        let (Some(table), false) = (self.table.id(), self.installed.is_empty()) else {
            return Ok(());
        };
        let Some(ifindex) = ifindex(&self.ifname) else {
            // The kernel removed the routes with the interface.
            self.installed.clear();
            return Ok(());
        };
        let mut sock = netlink::RouteSocket::open()
            .map_err(|e| format!("cannot open an rtnetlink socket: {e}"))?;
        let mut failed = Vec::new();
        for p in std::mem::take(&mut self.installed) {
            match sock.delete(p, table, ifindex) {
                Ok(()) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) => {
                    failed.push(format!("delete {}: {e}", format_prefix(p)));
                    self.installed.insert(p);
                }
            }
        }
        summary(&self.ifname, failed)
    }
}

impl RouteSync {
    fn note(&self, table: u32, p: Prefix, what: &str) {
        tracing::info!(interface = %self.ifname, table, route = %format_prefix(p), "{what}");
    }
}

/// A delete that found nothing to delete: no such route (ESRCH) or no such
/// interface any more (ENODEV).
fn is_gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENODEV))
}

fn summary(ifname: &str, failed: Vec<String>) -> Result<(), String> {
    if failed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} route change(s) on {ifname} failed: {}",
        failed.len(),
        failed.join("; ")
    ))
}

fn format_prefix((ip, len): Prefix) -> String {
    format!("{ip}/{len}")
}

/// The interface's index in the calling thread's namespace.
fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => None,
        i => Some(i),
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
