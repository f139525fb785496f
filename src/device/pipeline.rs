//! The multi-core packet pipeline: the kernel's and wireguard-go's design.
//!
//! A reader (the TUN reader for outbound packets, the UDP reader for inbound
//! ones) turns each batch into jobs, one per run of packets for the same
//! peer. A job goes on its peer's ordered queue (`tx` or `rx`) *and* on the
//! device-wide crypto queue. Any crypto worker may seal or open any job; when
//! it finishes one it drains its peer's ordered queue from the head while the
//! head is finished, so packets leave in the order they were read while the
//! crypto runs on every core. Draining is done by at most one thread per
//! queue at a time (see [`OrderedQueue::drain`]), so there is no per-peer
//! thread.
//!
//! Whether a run of packets goes to the workers, is done inline by the
//! thread that read it, or skips the job and the queue altogether is
//! decided in one place for both directions: [`decide`].
//!
//! Buffers and jobs are recycled through pools, so the steady state allocates
//! nothing; the buffer pool is bounded, and a reader that finds it empty
//! waits, which pushes back on the TUN queue or the socket buffer instead of
//! growing memory.
use super::peer::Peer;
use crate::noise::constants::{AEAD_TAG_LEN, DATA_HEADER_LEN};
use crate::noise::keypair::Keypair;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Room in front of each inner packet for the data header (so sealing
/// happens in place).
pub const HEADROOM: usize = DATA_HEADER_LEN;
/// One pooled buffer: the largest IP packet plus header, padding and tag.
pub const BUF_LEN: usize = HEADROOM + 65_535 + 16 + AEAD_TAG_LEN;

/// How a run of one peer's packets is handled (see [`decide`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Way<T> {
    /// By the reading thread in its read buffers: no job, no queue, no
    /// pool round trip. Carries what the claim took (the send counter).
    InPlace(T),
    /// As a job on the peer's queue, sealed or opened by the reading
    /// thread at once.
    Inline,
    /// As a job on the peer's queue and on the crypto queue.
    Worker,
}

/// The one inline-or-worker decision, for both directions.
///
/// - More than the device's `inline_batch` packets
///   ([`super::options::DeviceOptions::inline_batch`]: a few where workers
///   have cores of their own, all on two cores), or jobs already waiting
///   for a worker: [`Way::Worker`]. Bulk runs use every core, and a reader
///   never makes the workers' backlog wait behind its own crypto.
/// - Otherwise the reader does it itself: a lone ping or a TCP ACK pays no
///   thread wake-up, and many peers' single packets (a hand-off each would
///   cost more than their crypto) stay on the reader.
///   - [`Way::InPlace`] when the peer's queue is idle (nothing queued or
///     being delivered, [`OrderedQueue::when_idle`]) and `claim` gives
///     something. `claim` runs under the queue's lock, so whatever it takes
///     (a send counter) is newer than everything the queue delivered, and
///     nothing queued can be overtaken. On an idle tunnel each packet meets
///     cold caches, and touching less memory is what shortens its way.
///   - [`Way::Inline`] otherwise: the job queues behind the peer's jobs in
///     flight, which keeps the peer's order.
pub(crate) fn decide<T>(
    s: &super::Shared,
    packets: usize,
    queue: &OrderedQueue,
    claim: impl FnOnce() -> Option<T>,
) -> Way<T> {
    if packets > s.inline_batch || !s.crypto_rx.is_empty() {
        return Way::Worker;
    }
    match queue.when_idle(claim) {
        Some(Some(t)) => Way::InPlace(t),
        _ => Way::Inline,
    }
}

/// Environment variable: number of crypto workers (default: the cores).
pub const WORKERS_ENV: &str = "PHANTOMMESH_WORKERS";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Dir {
    #[default]
    Tx,
    Rx,
}

/// What became of one inbound datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// Authentic; deliver this many inner bytes (0 = keepalive).
    Deliver(usize),
    /// Authentic but not deliverable (malformed inner packet or failed the
    /// source check): still counts for the session and the endpoint.
    Authentic,
    /// Dropped before or during decryption.
    Dropped,
}

/// Where an inbound datagram came from and arrived: the endpoint it
/// teaches once authenticated.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub ep: crate::io::Endpoint,
    /// It came on a socket connected to its sender, so its endpoint is
    /// pinned already (`crate::io::RecvMeta::connected`).
    pub connected: bool,
}

/// One run of packets for one peer, in one direction.
#[derive(Default)]
pub struct JobData {
    pub dir: Dir,
    pub peer: Option<Arc<Peer>>,
    pub keypair: Option<Arc<Keypair>>,
    pub bufs: Vec<Vec<u8>>,
    /// Outbound: inner packet lengths. Inbound: datagram lengths.
    pub lens: Vec<usize>,
    /// Outbound: the send counter of each packet, taken in queue order.
    pub counters: Vec<u64>,
    /// Inbound: where each datagram came from, and what became of it.
    pub srcs: Vec<Seen>,
    pub outcomes: Vec<RxOutcome>,
    /// When the batch was read, for the packet-latency histograms.
    pub started: Option<Instant>,
}

impl JobData {
    /// Empties the job; its buffers go back to the pool.
    fn reset(&mut self, bufs: &BufPool) {
        bufs.put(self.bufs.drain(..));
        self.clear_keeping_bufs();
    }

    /// Empties everything but `bufs`, which their owner takes back itself
    /// (the in-place receive returns them to its batch slots).
    pub(crate) fn clear_keeping_bufs(&mut self) {
        self.peer = None;
        self.keypair = None;
        self.lens.clear();
        self.counters.clear();
        self.srcs.clear();
        self.outcomes.clear();
        self.started = None;
    }
}

pub struct Job {
    done: AtomicBool,
    pub data: Mutex<JobData>,
}

impl Job {
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
    pub fn mark_done(&self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// A peer's jobs in one direction, in the order they were read.
#[derive(Default)]
pub struct OrderedQueue {
    q: Mutex<VecDeque<Arc<Job>>>,
    draining: AtomicBool,
}

impl OrderedQueue {
    pub fn push(&self, job: Arc<Job>) {
        self.q.lock().push_back(job);
    }

    /// Runs `push` under the queue's lock, so that whatever order the caller
    /// assigns inside (send counters) is the queue order.
    pub fn push_with<R>(&self, f: impl FnOnce(&mut VecDeque<Arc<Job>>) -> R) -> R {
        f(&mut self.q.lock())
    }

    fn pop_done(&self) -> Option<Arc<Job>> {
        let mut q = self.q.lock();
        if q.front()?.is_done() {
            q.pop_front()
        } else {
            None
        }
    }

    fn head_done(&self) -> bool {
        self.q.lock().front().is_some_and(|j| j.is_done())
    }

    pub fn len(&self) -> usize {
        self.q.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` under the queue's lock if no job is queued and none is
    /// being delivered, so that a packet its caller handles outside the
    /// queue cannot overtake an earlier one of the same peer (the caller
    /// must be the only producer, or accept that one produced meanwhile
    /// may overtake it). A drainer raises its flag before it takes the
    /// last job, so an empty queue with the flag down means nothing is in
    /// flight.
    pub fn when_idle<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let q = self.q.lock();
        if q.is_empty() && !self.draining.load(Ordering::SeqCst) {
            Some(f())
        } else {
            None
        }
    }

    /// Hands finished jobs from the head to `f`, in order, until the head is
    /// unfinished. Only one thread drains at a time; a thread that finds
    /// another draining returns at once, and the drainer looks at the head
    /// again after letting go, so a job finished meanwhile is never stranded.
    pub fn drain(&self, mut f: impl FnMut(Arc<Job>)) {
        loop {
            if self.draining.swap(true, Ordering::SeqCst) {
                return;
            }
            while let Some(j) = self.pop_done() {
                f(j);
            }
            self.draining.store(false, Ordering::SeqCst);
            if !self.head_done() {
                return;
            }
        }
    }

    /// Drops every queued job (peer removal, shutdown); returns them so the
    /// caller can recycle them.
    pub fn take_all(&self) -> Vec<Arc<Job>> {
        self.q.lock().drain(..).collect()
    }
}

/// Packet buffers of BUF_LEN bytes, allocated on demand up to `cap`.
pub struct BufPool {
    free: Mutex<Vec<Vec<u8>>>,
    available: Condvar,
    allocated: AtomicUsize,
    cap: usize,
}

impl BufPool {
    pub fn new(cap: usize) -> Self {
        BufPool {
            free: Mutex::new(Vec::new()),
            available: Condvar::new(),
            allocated: AtomicUsize::new(0),
            cap,
        }
    }

    /// Fills every empty slot of `slots` with a buffer. Waits (up to
    /// `patience`) while the pool is exhausted; false if slots are still
    /// empty then, so the caller can look at its shutdown flag.
    pub fn fill(&self, slots: &mut [Vec<u8>], patience: Duration) -> bool {
        let mut missing = slots.iter().filter(|b| b.capacity() == 0).count();
        if missing == 0 {
            return true;
        }
        let deadline = Instant::now() + patience;
        let mut free = self.free.lock();
        loop {
            for slot in slots.iter_mut().filter(|b| b.capacity() == 0) {
                let b = match free.pop() {
                    Some(b) => b,
                    None if self.allocated.load(Ordering::Relaxed) < self.cap => {
                        self.allocated.fetch_add(1, Ordering::Relaxed);
                        vec![0u8; BUF_LEN]
                    }
                    None => break,
                };
                *slot = b;
                missing -= 1;
            }
            if missing == 0 {
                return true;
            }
            if self.available.wait_until(&mut free, deadline).timed_out() {
                return false;
            }
        }
    }

    /// Takes back buffers. Buffers that are not full-sized (built outside
    /// the pool) are dropped instead.
    pub fn put(&self, bufs: impl Iterator<Item = Vec<u8>>) {
        let mut free = self.free.lock();
        let before = free.len();
        for mut b in bufs {
            if b.capacity() >= BUF_LEN {
                restore_len(&mut b);
                free.push(b);
            }
        }
        if free.len() > before {
            self.available.notify_all();
        }
    }

    /// Buffers handed out so far (for tests and the bounded-memory check).
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }
}

/// Gives a buffer back its full length. Its bytes were initialised when it
/// was allocated at BUF_LEN; truncating and coalescing never shrink the
/// allocation, so this is a length change, not a fill.
pub fn restore_len(b: &mut Vec<u8>) {
    if b.len() == BUF_LEN {
        return;
    }
    if b.capacity() >= BUF_LEN {
        // SAFETY: u8 has no invalid values and the first BUF_LEN bytes of the
        // allocation were initialised by vec![0; BUF_LEN] (a Vec never
        // shrinks its allocation when truncated, and grows by copying).
        unsafe { b.set_len(BUF_LEN) };
    } else {
        b.resize(BUF_LEN, 0);
    }
}

/// Recycled jobs.
#[derive(Default)]
pub struct JobPool {
    free: Mutex<Vec<Arc<Job>>>,
}

impl JobPool {
    pub fn get(&self, dir: Dir) -> Arc<Job> {
        let job = self.free.lock().pop().unwrap_or_else(|| {
            Arc::new(Job {
                done: AtomicBool::new(false),
                data: Mutex::new(JobData::default()),
            })
        });
        job.done.store(false, Ordering::SeqCst);
        job.data.lock().dir = dir;
        job
    }

    /// Returns a finished job's buffers to `bufs` and the job to the pool.
    pub fn recycle(&self, job: Arc<Job>, bufs: &BufPool) {
        job.data.lock().reset(bufs);
        let mut free = self.free.lock();
        // Bounded: a burst of tiny jobs must not pin memory forever.
        if free.len() < 4096 {
            free.push(job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(pool: &JobPool) -> Arc<Job> {
        pool.get(Dir::Tx)
    }

    #[test]
    fn drain_keeps_order_and_stops_at_an_unfinished_head() {
        let pool = JobPool::default();
        let q = OrderedQueue::default();
        let jobs: Vec<_> = (0..4).map(|_| job(&pool)).collect();
        for (i, j) in jobs.iter().enumerate() {
            j.data.lock().lens.push(i);
            q.push(j.clone());
        }
        let mut seen = Vec::new();
        jobs[1].mark_done();
        q.drain(|j| seen.push(j.data.lock().lens[0]));
        assert!(seen.is_empty(), "head unfinished: nothing leaves");
        jobs[0].mark_done();
        jobs[3].mark_done();
        q.drain(|j| seen.push(j.data.lock().lens[0]));
        assert_eq!(seen, vec![0, 1]);
        jobs[2].mark_done();
        q.drain(|j| seen.push(j.data.lock().lens[0]));
        assert_eq!(seen, vec![0, 1, 2, 3]);
        assert!(q.is_empty());
    }

    #[test]
    fn concurrent_finishers_deliver_every_job_once_in_order() {
        let pool = Arc::new(JobPool::default());
        let q = Arc::new(OrderedQueue::default());
        let out = Arc::new(Mutex::new(Vec::new()));
        let n = 20_000usize;
        let (tx, rx) = crossbeam_channel::unbounded::<Arc<Job>>();
        for i in 0..n {
            let j = job(&pool);
            j.data.lock().lens.push(i);
            q.push(j.clone());
            tx.send(j).unwrap();
        }
        drop(tx);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (rx, q, out) = (rx.clone(), q.clone(), out.clone());
                std::thread::spawn(move || {
                    while let Ok(j) = rx.recv() {
                        j.mark_done();
                        drop(j);
                        q.drain(|j| out.lock().push(j.data.lock().lens[0]));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let out = out.lock();
        assert_eq!(out.len(), n, "no job stranded or repeated");
        assert!(out.windows(2).all(|w| w[0] + 1 == w[1]), "in order");
    }

    /// A packet may skip the queue only while nothing is queued and no
    /// drainer is still delivering the last job it took.
    #[test]
    fn idle_means_empty_and_not_delivering() {
        let pool = JobPool::default();
        let q = Arc::new(OrderedQueue::default());
        assert_eq!(q.when_idle(|| 7), Some(7));
        let j = job(&pool);
        q.push(j.clone());
        assert_eq!(q.when_idle(|| 7), None, "a job is queued");
        j.mark_done();
        // While the drainer delivers the (now dequeued) job, the queue is
        // empty but not idle.
        let (inside_tx, inside_rx) = crossbeam_channel::bounded::<()>(0);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let q2 = q.clone();
        let drainer = std::thread::spawn(move || {
            q2.drain(|_| {
                inside_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
        });
        inside_rx.recv().unwrap();
        assert!(q.is_empty());
        assert_eq!(
            q.when_idle(|| 7),
            None,
            "the last job is still being delivered"
        );
        release_tx.send(()).unwrap();
        drainer.join().unwrap();
        assert_eq!(q.when_idle(|| 7), Some(7));
    }

    #[test]
    fn buffer_pool_is_bounded_and_reuses() {
        let pool = BufPool::new(3);
        let mut slots = vec![Vec::new(), Vec::new()];
        assert!(pool.fill(&mut slots, Duration::ZERO));
        assert_eq!(pool.allocated(), 2);
        let mut more = vec![Vec::new(), Vec::new()];
        assert!(
            !pool.fill(&mut more, Duration::from_millis(10)),
            "a fourth buffer would pass the cap"
        );
        assert_eq!(pool.allocated(), 3);
        let mut b = std::mem::take(&mut slots[0]);
        b.truncate(10);
        pool.put(std::iter::once(b));
        assert!(pool.fill(&mut more, Duration::ZERO));
        assert!(more.iter().all(|b| b.len() == BUF_LEN), "lengths restored");
        assert_eq!(pool.allocated(), 3);
        pool.put(std::iter::once(vec![0u8; 8]));
        let mut one = vec![Vec::new()];
        assert!(
            !pool.fill(&mut one, Duration::ZERO),
            "a short foreign buffer is not pooled"
        );
    }
}
