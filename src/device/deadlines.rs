//! The peers' protocol deadlines in one min-heap, so the timer thread sleeps
//! until the earliest one instead of walking every peer on a fixed tick: ten
//! thousand idle peers cost nothing between their events.
//!
//! Each peer keeps the deadline it is armed at in an atomic (nanoseconds
//! since the heap's epoch; [`UNARMED`] for none). Re-arming after a state
//! change is then one atomic load on the packet path in the common case: a
//! deadline that moved LATER (or went away) needs nothing, because the heap
//! entry at the earlier time stays and, when it fires, the timer thread finds
//! the peer not yet due and arms it again at its real deadline (lazy
//! deletion). Only a deadline EARLIER than the armed one takes the heap's
//! lock, pushes an entry and, when that entry is the new earliest, wakes the
//! timer thread. An entry whose time no longer equals its peer's armed time
//! is stale and is dropped when popped.
//!
//! [`DeadlineHeap`] is the clock-free core (the differential test in
//! `deadlines_tests.rs` drives it on a virtual clock); [`Deadlines`] adds the
//! lock and the condition variable the device's timer thread sleeps on.
use parking_lot::{Condvar, Mutex};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The armed time of a peer with no deadline.
pub const UNARMED: u64 = u64::MAX;

/// A deadline as nanoseconds since `epoch` (earlier deadlines count as the
/// epoch itself: they are simply due).
pub fn to_nanos(epoch: Instant, at: Instant) -> u64 {
    let ns = at.saturating_duration_since(epoch).as_nanos();
    ns.min(UNARMED as u128 - 1) as u64
}

/// One heap entry: a time and a key that names the peer.
struct Entry<K> {
    at: u64,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<K> Eq for Entry<K> {}
impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<K> Ord for Entry<K> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The heap itself, without locking or clocks. `K` names a peer (the device
/// uses a weak reference, so a removed peer's stale entry frees nothing
/// late; the test uses an index).
pub struct DeadlineHeap<K> {
    epoch: Instant,
    heap: BinaryHeap<Reverse<Entry<K>>>,
    /// Ties break in push order, so equal deadlines fire deterministically.
    seq: u64,
}

impl<K> DeadlineHeap<K> {
    pub fn new(epoch: Instant) -> Self {
        DeadlineHeap {
            epoch,
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The earliest entry's time (possibly stale: waking for it is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse(e)| self.epoch + Duration::from_nanos(e.at))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Records that the peer behind `armed` now has `deadline`. Returns true
    /// when an entry was pushed that is the new earliest (the sleeper must
    /// wake). Callers that hold no heap lock use [`needs_push`] first.
    pub fn rearm(&mut self, key: K, armed: &AtomicU64, deadline: Option<Instant>) -> bool {
        let Some(at) = deadline.map(|d| to_nanos(self.epoch, d)) else {
            return false;
        };
        if at >= armed.load(Ordering::Acquire) {
            return false;
        }
        armed.store(at, Ordering::Release);
        let earliest = self.heap.peek().is_none_or(|Reverse(e)| at < e.at);
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            key,
        }));
        earliest
    }

    /// Pops every entry due at `now`. `claim` gets each with its time and
    /// returns the peer when it is still armed at that time (see [`claim`]),
    /// None for a stale entry (dropped).
    pub fn pop_due<T>(
        &mut self,
        now: Instant,
        mut claim: impl FnMut(K, u64) -> Option<T>,
    ) -> Vec<T> {
        let now = to_nanos(self.epoch, now);
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Some(Reverse(e)) = self.heap.pop() else {
                break;
            };
            due.extend(claim(e.key, e.at));
        }
        due
    }
}

/// Disarms a peer whose entry at `at` was popped, if it is still armed at
/// that time (else the entry is stale). The caller then runs the peer's
/// timers and re-arms it.
pub fn claim(armed: &AtomicU64, at: u64) -> bool {
    armed
        .compare_exchange(at, UNARMED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Whether `deadline` is earlier than the armed one: the only case that
/// needs the heap (see the module docs). One atomic load.
pub fn needs_push(epoch: Instant, armed: &AtomicU64, deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| to_nanos(epoch, d) < armed.load(Ordering::Acquire))
}

/// The device's heap: shared by the packet path (which re-arms) and the
/// timer thread (which sleeps until the earliest entry or a wake-up).
pub struct Deadlines<K> {
    heap: Mutex<DeadlineHeap<K>>,
    /// Set (under the heap's lock) by [`Deadlines::stop`]: no more sleeping.
    stopped: std::sync::atomic::AtomicBool,
    wake: Condvar,
    epoch: Instant,
}

impl<K> Deadlines<K> {
    pub fn new(epoch: Instant) -> Self {
        Deadlines {
            heap: Mutex::new(DeadlineHeap::new(epoch)),
            stopped: Default::default(),
            wake: Condvar::new(),
            epoch,
        }
    }

    /// Re-arms after a state change; see the module docs for why this is
    /// one atomic load unless the deadline moved earlier.
    pub fn rearm(&self, key: impl FnOnce() -> K, armed: &AtomicU64, deadline: Option<Instant>) {
        if !needs_push(self.epoch, armed, deadline) {
            return;
        }
        if self.heap.lock().rearm(key(), armed, deadline) {
            self.wake.notify_one();
        }
    }

    /// Wakes the sleeper now and for good (shutdown): set under the lock,
    /// so a sleeper about to wait sees it.
    pub fn stop(&self) {
        let _g = self.heap.lock();
        self.stopped.store(true, Ordering::Relaxed);
        self.wake.notify_all();
    }

    /// Sleeps until an entry is due or `until` passes (or a wake-up), then
    /// returns the due keys (possibly none).
    pub fn wait_due<T>(
        &self,
        until: Instant,
        mut claim: impl FnMut(K, u64) -> Option<T>,
    ) -> Vec<T> {
        let mut h = self.heap.lock();
        let now = Instant::now();
        let due = h.pop_due(now, &mut claim);
        if !due.is_empty() {
            return due;
        }
        let wake_at = h.next().map_or(until, |n| n.min(until));
        if wake_at > now && !self.stopped.load(Ordering::Relaxed) {
            self.wake.wait_until(&mut h, wake_at);
        }
        h.pop_due(Instant::now(), claim)
    }

    /// Entries in the heap, stale ones included (for tests and metrics).
    pub fn len(&self) -> usize {
        self.heap.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.lock().is_empty()
    }
}

#[cfg(test)]
#[path = "deadlines_tests.rs"]
mod tests;
