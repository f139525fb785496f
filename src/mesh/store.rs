//! The membership store, behind a small trait: etcd in production
//! ([`super::etcd_store`]), an in-memory store with the same semantics for
//! deterministic tests ([`super::mem_store`]).
//!
//! The primitives are etcd's, because that is the store we build on, and
//! they are what a consistent membership view needs: list a prefix with its
//! revision, watch from the next revision, write under a lease that dies
//! with a silent node, and create-if-absent for allocations.
use std::future::Future;

/// A lease id (etcd's int64).
pub type LeaseId = i64;

/// One key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put(Kv),
    Delete { key: String, mod_revision: i64 },
}

/// What one wait on a watch brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchBatch {
    Events(Vec<WatchEvent>),
    /// The revision watched from was compacted away: list again, then
    /// watch from the new revision.
    Compacted,
}

/// A store operation failed: unreachable, timed out, refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn new(msg: impl std::fmt::Display) -> StoreError {
        StoreError(msg.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The outcome of [`Store::put_if`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutIf {
    Written,
    /// The key was not as expected; here is what it holds (None: absent).
    Refused(Option<Kv>),
}

/// An open watch on a prefix.
pub trait Watch: Send {
    /// Waits for the next events. Cancel-safe: dropping the future loses
    /// nothing, so it can sit in a `select!` beside timers.
    fn next(&mut self) -> impl Future<Output = StoreResult<WatchBatch>> + Send;
}

/// The operations the mesh agent needs from a store.
pub trait Store: Send {
    type Watch: Watch;

    /// Every key under `prefix`, and the store revision they were read at.
    fn list(&mut self, prefix: &str) -> impl Future<Output = StoreResult<(Vec<Kv>, i64)>> + Send;

    /// Watches `prefix` for changes after `from_revision - 1`.
    fn watch(
        &mut self,
        prefix: &str,
        from_revision: i64,
    ) -> impl Future<Output = StoreResult<Self::Watch>> + Send;

    /// A lease that expires `ttl` seconds after its last keep-alive.
    fn grant(&mut self, ttl: u32) -> impl Future<Output = StoreResult<LeaseId>> + Send;

    /// Renews a lease; Ok(false) when it has already expired.
    fn keep_alive(&mut self, lease: LeaseId) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Writes `key` only if its create revision is `expect_create_revision`
    /// (0: only if absent), attached to `lease` if given.
    fn put_if(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        expect_create_revision: i64,
    ) -> impl Future<Output = StoreResult<PutIf>> + Send;

    /// Deletes `key` (absent is fine).
    fn delete(&mut self, key: &str) -> impl Future<Output = StoreResult<()>> + Send;
}
