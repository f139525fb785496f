//! An in-memory [`Store`] with etcd's semantics (revisions, leases,
//! create-if-absent, watches from a revision, compaction), for
//! deterministic tests of the agent: no etcd, no clock. Tests drive what
//! etcd would do on its own: a lease expiring, a compaction, an outage.
use super::store::{
    Kv, LeaseId, PutIf, Store, StoreError, StoreResult, Watch, WatchBatch, WatchEvent,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Default)]
struct Inner {
    revision: i64,
    kvs: BTreeMap<String, (Kv, Option<LeaseId>)>,
    /// Every change, in order: (revision, event).
    log: Vec<(i64, WatchEvent)>,
    /// Watches from at or below this revision are told to list again.
    compacted: i64,
    leases: HashMap<LeaseId, bool>,
    next_lease: LeaseId,
    down: bool,
}

/// A store shared by every handle cloned from it.
#[derive(Clone)]
pub struct MemStore {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<tokio::sync::watch::Sender<i64>>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore {
            inner: Arc::default(),
            changed: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// While down, every operation and every open watch fails.
    pub fn set_down(&self, down: bool) {
        self.inner.lock().down = down;
        self.changed.send_modify(|r| *r += 0);
    }

    /// Expires a lease now, deleting its keys (as etcd does at its TTL).
    pub fn expire_lease(&self, lease: LeaseId) {
        let mut g = self.inner.lock();
        g.leases.insert(lease, false);
        let keys: Vec<String> = g
            .kvs
            .iter()
            .filter(|(_, (_, l))| *l == Some(lease))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            delete_locked(&mut g, &k);
        }
        let rev = g.revision;
        drop(g);
        self.changed.send_replace(rev);
    }

    /// The live leases.
    pub fn leases(&self) -> Vec<LeaseId> {
        let g = self.inner.lock();
        let mut v: Vec<LeaseId> = g
            .leases
            .iter()
            .filter(|(_, &a)| a)
            .map(|(&l, _)| l)
            .collect();
        v.sort_unstable();
        v
    }

    /// Forgets history up to now: watches from older revisions are told
    /// to list again.
    pub fn compact(&self) {
        let mut g = self.inner.lock();
        g.compacted = g.revision;
        g.log.clear();
        let rev = g.revision;
        drop(g);
        self.changed.send_replace(rev);
    }

    /// Writes a key directly (an operator's `etcdctl put`).
    pub fn put_raw(&self, key: &str, value: &[u8]) {
        let mut g = self.inner.lock();
        put_locked(&mut g, key, value.to_vec(), None);
        let rev = g.revision;
        drop(g);
        self.changed.send_replace(rev);
    }

    /// Deletes a key directly.
    pub fn delete_raw(&self, key: &str) {
        let mut g = self.inner.lock();
        delete_locked(&mut g, key);
        let rev = g.revision;
        drop(g);
        self.changed.send_replace(rev);
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.inner
            .lock()
            .kvs
            .get(key)
            .map(|(kv, _)| kv.value.clone())
    }

    /// Every key under `prefix` with its value.
    pub fn dump(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let g = self.inner.lock();
        g.kvs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (kv, _))| (k.clone(), kv.value.clone()))
            .collect()
    }

    fn op<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> StoreResult<T> {
        let mut g = self.inner.lock();
        if g.down {
            return Err(StoreError::new("store unreachable (test outage)"));
        }
        let before = g.revision;
        let out = f(&mut g);
        let after = g.revision;
        drop(g);
        if after != before {
            self.changed.send_replace(after);
        }
        Ok(out)
    }
}

fn put_locked(g: &mut Inner, key: &str, value: Vec<u8>, lease: Option<LeaseId>) {
    g.revision += 1;
    let rev = g.revision;
    let create_revision = g.kvs.get(key).map_or(rev, |(kv, _)| kv.create_revision);
    let kv = Kv {
        key: key.to_string(),
        value,
        create_revision,
        mod_revision: rev,
    };
    g.log.push((rev, WatchEvent::Put(kv.clone())));
    g.kvs.insert(key.to_string(), (kv, lease));
}

fn delete_locked(g: &mut Inner, key: &str) {
    if g.kvs.remove(key).is_some() {
        g.revision += 1;
        let rev = g.revision;
        g.log.push((
            rev,
            WatchEvent::Delete {
                key: key.to_string(),
                mod_revision: rev,
            },
        ));
    }
}

impl Store for MemStore {
    type Watch = MemWatch;

    async fn list(&mut self, prefix: &str) -> StoreResult<(Vec<Kv>, i64)> {
        self.op(|g| {
            let kvs = g
                .kvs
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, (kv, _))| kv.clone())
                .collect();
            (kvs, g.revision)
        })
    }

    async fn watch(&mut self, prefix: &str, from_revision: i64) -> StoreResult<MemWatch> {
        self.op(|_| ())?;
        Ok(MemWatch {
            store: self.clone(),
            rx: self.changed.subscribe(),
            prefix: prefix.to_string(),
            next: from_revision,
        })
    }

    async fn grant(&mut self, _ttl: u32) -> StoreResult<LeaseId> {
        self.op(|g| {
            g.next_lease += 1;
            let id = g.next_lease;
            g.leases.insert(id, true);
            id
        })
    }

    async fn keep_alive(&mut self, lease: LeaseId) -> StoreResult<bool> {
        self.op(|g| g.leases.get(&lease).copied().unwrap_or(false))
    }

    async fn put_if(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        expect_create_revision: i64,
    ) -> StoreResult<PutIf> {
        self.op(|g| {
            if let Some(l) = lease {
                if g.leases.get(&l) != Some(&true) {
                    return PutIf::Refused(g.kvs.get(key).map(|(kv, _)| kv.clone()));
                }
            }
            let current = g.kvs.get(key).map(|(kv, _)| kv.clone());
            let create = current.as_ref().map_or(0, |kv| kv.create_revision);
            if create != expect_create_revision {
                return PutIf::Refused(current);
            }
            put_locked(g, key, value, lease);
            PutIf::Written
        })
    }

    async fn delete(&mut self, key: &str) -> StoreResult<()> {
        self.op(|g| delete_locked(g, key))
    }
}

/// A watch on a [`MemStore`] prefix.
pub struct MemWatch {
    store: MemStore,
    rx: tokio::sync::watch::Receiver<i64>,
    prefix: String,
    next: i64,
}

impl MemWatch {
    fn poll_now(&mut self) -> Option<StoreResult<WatchBatch>> {
        let g = self.store.inner.lock();
        if g.down {
            return Some(Err(StoreError::new("watch lost: store unreachable")));
        }
        if self.next <= g.compacted {
            return Some(Ok(WatchBatch::Compacted));
        }
        let events: Vec<WatchEvent> = g
            .log
            .iter()
            .filter(|(rev, _)| *rev >= self.next)
            .filter(|(_, e)| match e {
                WatchEvent::Put(kv) => kv.key.starts_with(&self.prefix),
                WatchEvent::Delete { key, .. } => key.starts_with(&self.prefix),
            })
            .map(|(_, e)| e.clone())
            .collect();
        let top = g.revision;
        drop(g);
        self.next = self.next.max(top + 1);
        (!events.is_empty()).then_some(Ok(WatchBatch::Events(events)))
    }
}

impl Watch for MemWatch {
    async fn next(&mut self) -> StoreResult<WatchBatch> {
        loop {
            // Mark the current value seen before looking, so a change made
            // after the look wakes the wait below.
            self.rx.borrow_and_update();
            if let Some(r) = self.poll_now() {
                return r;
            }
            if self.rx.changed().await.is_err() {
                return Err(StoreError::new("store dropped"));
            }
        }
    }
}
