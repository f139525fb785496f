//! Who gets a connection slot: the connection table of the admin server,
//! its per-source-IP counts, and the eviction of idle connections.
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{Notify, OwnedSemaphorePermit};

/// One connection's standing, for eviction and the per-IP counts.
pub(super) struct Slot {
    pub ip: IpAddr,
    /// On a reserve slot: health requests only, one per connection.
    pub reserve: bool,
    /// Its main-pool permit (None while it waits for one). Eviction hands
    /// it straight to the newcomer: a permit freed to the semaphore could
    /// go to an earlier waiter, and the newcomer (a probe) wait in vain.
    pub permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Told to close (a waiter may get its permit just after: it must not
    /// then serve, out of the table and uncounted).
    pub evicted: AtomicBool,
    /// Requests in progress (hyper's HTTP/1 runs one at a time).
    pub busy: AtomicUsize,
    /// When it last became idle (accepted, or answered), in ms since start.
    pub idle_since_ms: AtomicU64,
    pub evict: Notify,
}

impl Slot {
    pub fn new(
        ip: IpAddr,
        reserve: bool,
        permit: Option<OwnedSemaphorePermit>,
        now_ms: u64,
    ) -> Self {
        Slot {
            ip,
            reserve,
            permit: Mutex::new(permit),
            evicted: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now_ms),
            evict: Notify::new(),
        }
    }
}

/// Open connections, and per source IP how many are on the main pool
/// (serving or waiting for a permit) and how many on the reserve.
#[derive(Default)]
pub(super) struct Table {
    slots: HashMap<u64, Arc<Slot>>,
    per_ip: HashMap<IpAddr, (usize, usize)>,
}

impl Table {
    /// (main, reserve) connections from `ip`.
    pub fn count(&self, ip: IpAddr) -> (usize, usize) {
        self.per_ip.get(&ip).copied().unwrap_or_default()
    }

    pub fn insert(&mut self, id: u64, slot: Arc<Slot>) {
        let c = self.per_ip.entry(slot.ip).or_default();
        if slot.reserve {
            c.1 += 1;
        } else {
            c.0 += 1;
        }
        self.slots.insert(id, slot);
    }

    /// Takes the connection out of the table and its IP's count; None when
    /// it was taken already (evicted).
    pub fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let slot = self.slots.remove(&id)?;
        if let Some(c) = self.per_ip.get_mut(&slot.ip) {
            if slot.reserve {
                c.1 -= 1;
            } else {
                c.0 -= 1;
            }
            if *c == (0, 0) {
                self.per_ip.remove(&slot.ip);
            }
        }
        Some(slot)
    }

    /// The main-pool connection idle the longest with no request in
    /// progress: from `ip` only (waiting ones included, they count towards
    /// the IP's cap), or from anyone (serving ones only: the point is to
    /// free a permit).
    pub fn oldest_idle(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.slots
            .iter()
            .filter(|(_, s)| !s.reserve && s.busy.load(Ordering::Acquire) == 0)
            .filter(|(_, s)| match ip {
                Some(ip) => s.ip == ip,
                None => s.permit.lock().is_some(),
            })
            .min_by_key(|(_, s)| s.idle_since_ms.load(Ordering::Relaxed))
            .map(|(id, _)| *id)
    }
}

/// Logs at warn level at most once a minute per kind of event, so a flood
/// cannot flood the log too.
pub(super) struct RateLimitedWarn {
    last: Mutex<HashMap<&'static str, std::time::Instant>>,
}

impl RateLimitedWarn {
    pub fn new() -> Self {
        RateLimitedWarn {
            last: Mutex::new(HashMap::new()),
        }
    }

    pub fn warn(&self, kind: &'static str, msg: impl FnOnce() -> String) {
        let mut last = self.last.lock();
        let now = std::time::Instant::now();
        if last
            .get(kind)
            .is_none_or(|t| now.duration_since(*t) > std::time::Duration::from_secs(60))
        {
            last.insert(kind, now);
            drop(last);
            tracing::warn!("admin server: {}", msg());
        }
    }
}

/// Paths a reserve slot may serve: the kubelet's probes (routes.rs: each
/// of these and one check by name below it, e.g. /livez/ping).
pub(super) fn is_health_path(path: &str) -> bool {
    ["/livez", "/readyz", "/healthz"].iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}
