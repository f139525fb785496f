//! The device: peers, keys, the receiver-index table, and the threads that
//! move batches between the TUN and the UDP socket.
//!
//! Threads (see the files named after them):
//! - [`io_loop`]: the I/O thread(s), the only entry point of packets:
//!   waiting on the TUN and the UDP socket together and handing each ready
//!   one to the two below.
//! - [`send`]: reads the TUN, routes, and sends each peer's run of packets
//!   the way [`pipeline::decide`] picks (in place, inline or by a worker).
//! - [`receive`]: reads the UDP socket and opens each session's run of
//!   datagrams the same way; handshake messages go to a bounded queue so a
//!   flood never stalls data.
//! - crypto workers (one per core by default, `pipeline_worker` below):
//!   seal or open any job, then deliver the peer's finished jobs in order
//!   (UDP send or TUN write).
//! - [`wire`]: the one function that puts sealed datagrams (data,
//!   keepalives, handshake messages, cookie replies) on the wire.
//! - [`handshake`]: drains that queue (MAC checks, cookies, rate limit).
//! - [`timers`]: runs the peers' protocol timers as they fall due
//!   ([`deadlines`]).
//!
//! The device's face (the rest of the crate never sees [`Shared`]):
//! [`config`] takes configuration in device-level types, [`snapshot`]
//! copies out counters, peers, health and routes, and [`histogram`] holds
//! the latency histograms the packet path records into. Every call into
//! the protocol core goes through [`driver`].
//!
//! Lock order (never take an earlier one while holding a later one):
//! `receiver` -> `tun_reader` (only ever tried, never waited for) ->
//! `peers` -> a peer's `state` -> `index` / `allowed_ips` / `staged`.
//! The packet path holds `index` and `allowed_ips` only as readers, once per
//! batch, and a peer's `state` once per batch per peer.
pub mod config;
pub mod deadlines;
pub mod driver;
pub mod handshake;
pub mod histogram;
pub mod index_hash;
pub mod io_loop;
pub mod link;
pub mod options;
pub mod peer;
pub mod pipeline;
pub mod ratelimiter;
pub mod receive;
pub mod send;
pub mod snapshot;
pub mod staged;
#[cfg(test)]
pub(crate) mod test_node;
pub mod timers;
pub(crate) mod wire;

use crate::io::{Bind, Tun, Udp};
use crate::noise::cookie::CookieChecker;
use crate::noise::handshake::Identity;
use crate::noise::keypair::Keypair;
use crate::routing::AllowedIps;
use parking_lot::{Mutex, RwLock};
use peer::{Peer, PeerRef};
use rand::RngCore;
use ratelimiter::RateLimiter;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Capacity of the handshake queue (the kernel's MAX_QUEUED_INCOMING_HANDSHAKES).
pub const HANDSHAKE_QUEUE_LEN: usize = 4096;
/// The device is "under load" once the queue is this full; it stays so for 1 s.
pub const UNDER_LOAD_THRESHOLD: usize = HANDSHAKE_QUEUE_LEN / 8;

/// What a receiver index points at.
#[derive(Clone)]
pub struct IndexEntry {
    pub peer: Arc<Peer>,
    /// None while the index names a pending initiation.
    pub keypair: Option<Arc<Keypair>>,
}

/// Receiver index -> session. Every datagram looks its index up here.
pub type IndexMap =
    HashMap<u32, IndexEntry, std::hash::BuildHasherDefault<index_hash::IndexHasher>>;

/// Counters the admin plane reads; relaxed atomics, bumped per batch.
#[derive(Default)]
pub struct Stats {
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    /// Inner (plaintext) bytes delivered to the TUN / read from it and sent.
    pub rx_bytes: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub drop_bad_mac: AtomicU64,
    pub drop_replay: AtomicU64,
    pub drop_decrypt: AtomicU64,
    pub drop_no_route: AtomicU64,
    pub drop_source_check: AtomicU64,
    pub drop_rate_limited: AtomicU64,
    pub drop_malformed: AtomicU64,
    pub drop_no_session: AtomicU64,
    /// A full queue: the handshake queue, or the device-wide cap on bytes
    /// staged for peers without a session.
    pub drop_queue_full: AtomicU64,
    pub cookie_replies_sent: AtomicU64,
    pub handshakes_initiated: AtomicU64,
    pub handshakes_completed: AtomicU64,
    pub handshakes_failed: AtomicU64,
    /// Runs of packets (either direction) done by the thread that read
    /// them (in place or as an inline job), and runs handed to the crypto
    /// workers: the ways [`pipeline::decide`] picked.
    pub batches_inline: AtomicU64,
    pub batches_worker: AtomicU64,
    /// Datagrams handed to [`wire::transmit`], every kind.
    pub wire_datagrams: AtomicU64,
}

/// How runs of packets went, from [`Stats`] (see [`pipeline::decide`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathCounters {
    pub batches_inline: u64,
    pub batches_worker: u64,
    pub wire_datagrams: u64,
}

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    if n > 0 {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

pub struct Settings {
    pub listen_port: u16,
    pub fwmark: u32,
    /// Zeroed when replaced and on drop.
    pub private_key: Option<[u8; 32]>,
}

impl Drop for Settings {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private_key);
    }
}

/// The device's state, shared by its threads. Every field is private to
/// `device` and its submodules: the rest of the crate sees [`Device`].
pub struct Shared {
    tun: Arc<dyn Tun>,
    bind: Arc<dyn Bind>,
    udp: RwLock<Option<Arc<dyn Udp>>>,
    identity: RwLock<Option<Arc<Identity>>>,
    cookie_checker: Mutex<Option<CookieChecker>>,
    peers: RwLock<HashMap<[u8; 32], Arc<Peer>>>,
    allowed_ips: RwLock<AllowedIps<PeerRef>>,
    index: RwLock<IndexMap>,
    settings: Mutex<Settings>,
    rate_limiter: Mutex<RateLimiter>,
    /// Milliseconds since `epoch` until which the device counts as under load.
    under_load_until: AtomicU64,
    epoch: Instant,
    stats: Stats,
    /// The TUN's MTU, refreshed by the timer thread (padding needs it).
    mtu: std::sync::atomic::AtomicUsize,
    shutdown: AtomicBool,
    /// Set when the TUN went away; the owner should exit.
    tun_gone: AtomicBool,
    /// The TUN's link state as last seen (see [`link`]).
    link: link::LinkMonitor,
    next_peer_id: AtomicU64,
    /// Bytes staged across all peers (see [`staged`]).
    staged_budget: Arc<staged::StagedBudget>,
    handshake_tx: crossbeam_channel::Sender<handshake::Queued>,
    handshake_rx: crossbeam_channel::Receiver<handshake::Queued>,
    /// Wakes the UDP receive loop when the socket is replaced.
    udp_generation: AtomicU64,
    /// Rung on shutdown and when the UDP socket is replaced (see
    /// [`io_loop::Wake`]).
    io_wake: io_loop::Wake,
    /// Last loop iteration of each worker thread (ms since `epoch`), for
    /// liveness: every loop wakes at least every few hundred milliseconds.
    heartbeats: [AtomicU64; WORKERS.len()],
    /// Latency histograms, observed once per batch (a sample, not every
    /// packet, so instrumentation costs two clock reads per batch).
    hist: Arc<histogram::DeviceHistograms>,
    /// Packet-path latency sampling on (off measures what it costs; see
    /// [`options::DeviceOptions::packet_metrics`]).
    sample_packets: bool,
    /// The pipeline: the shared crypto queue, recycled jobs, and one buffer
    /// pool per direction.
    crypto_tx: crossbeam_channel::Sender<Arc<pipeline::Job>>,
    crypto_rx: crossbeam_channel::Receiver<Arc<pipeline::Job>>,
    jobs: pipeline::JobPool,
    tx_bufs: pipeline::BufPool,
    rx_bufs: pipeline::BufPool,
    /// Crypto workers started, and each one's last heartbeat.
    workers: usize,
    /// Longest run the reader seals or opens itself ([`pipeline::decide`]).
    inline_batch: usize,
    /// The TUN reader's batch (see [`send::read_opportunistically`]).
    tun_reader: Mutex<send::TunReader>,
    /// The UDP receiver's batch (see [`receive::Receiver`]).
    receiver: Mutex<receive::Receiver>,
    /// Set when packets were written to the TUN since the last
    /// opportunistic read.
    tun_written: AtomicBool,
    crypto_heartbeats: Vec<AtomicU64>,
    /// Every peer's next protocol deadline (see [`deadlines`]).
    deadlines: deadlines::Deadlines<std::sync::Weak<Peer>>,
}

/// The device's worker threads, in `heartbeats` order.
pub const WORKERS: [&str; 4] = ["send", "receive", "handshake", "timers"];
pub const HB_SEND: usize = 0;
pub const HB_RECEIVE: usize = 1;
pub const HB_HANDSHAKE: usize = 2;
pub const HB_TIMERS: usize = 3;

/// A running device. Dropping it stops its threads.
pub struct Device {
    /// Private: everything outside `device` goes through `Device`'s
    /// methods (configuration in [`config`], reads in [`snapshot`]).
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Device {
    /// Starts a device on `tun`, opening UDP through `bind` once a port is
    /// set (port 0 = any, as wireguard-go binds on first configuration).
    /// Starts [`options::default_workers`] crypto workers.
    pub fn new(tun: Arc<dyn Tun>, bind: Arc<dyn Bind>) -> Arc<Device> {
        Self::with_workers(tun, bind, options::default_workers())
    }

    /// As [`Device::new`] with `workers` crypto workers (at least one).
    pub fn with_workers(tun: Arc<dyn Tun>, bind: Arc<dyn Bind>, workers: usize) -> Arc<Device> {
        Self::with_threads(tun, bind, workers, options::default_io_threads())
    }

    /// As [`Device::with_workers`], with `io_threads` I/O threads where the
    /// TUN and the socket can be polled together (see [`io_loop`]).
    pub fn with_threads(
        tun: Arc<dyn Tun>,
        bind: Arc<dyn Bind>,
        workers: usize,
        io_threads: usize,
    ) -> Arc<Device> {
        let opts = options::DeviceOptions {
            workers,
            io_threads,
            ..Default::default()
        };
        Self::with_options(tun, bind, opts)
    }

    /// Starts a device tuned by `opts` (built by the daemon; see
    /// [`options`]). `opts.offload` and `opts.udp_recv_buffer` apply where
    /// `tun` and `bind` were made.
    pub fn with_options(
        tun: Arc<dyn Tun>,
        bind: Arc<dyn Bind>,
        opts: options::DeviceOptions,
    ) -> Arc<Device> {
        let workers = opts.workers.clamp(1, options::MAX_WORKERS);
        let io_threads = opts.io_threads;
        let (handshake_tx, handshake_rx) = crossbeam_channel::bounded(HANDSHAKE_QUEUE_LEN);
        let (crypto_tx, crypto_rx) = crossbeam_channel::unbounded();
        // Room for the reader's batch and a few in flight per worker; more
        // would only add queueing delay.
        let pool_cap = crate::io::MAX_BATCH * (2 + workers.min(6));
        tracing::info!(
            workers,
            buffers_per_direction = pool_cap,
            "data path: crypto workers started"
        );
        let slots_per_read = tun.features().slots_per_read;
        let epoch = Instant::now();
        let shared = Arc::new(Shared {
            tun,
            bind,
            udp: RwLock::new(None),
            identity: RwLock::new(None),
            cookie_checker: Mutex::new(None),
            peers: RwLock::new(HashMap::new()),
            allowed_ips: RwLock::new(AllowedIps::new()),
            index: RwLock::new(IndexMap::default()),
            settings: Mutex::new(Settings {
                listen_port: 0,
                fwmark: 0,
                private_key: None,
            }),
            rate_limiter: Mutex::new(RateLimiter::new()),
            under_load_until: AtomicU64::new(0),
            epoch,
            stats: Stats::default(),
            mtu: std::sync::atomic::AtomicUsize::new(1420),
            shutdown: AtomicBool::new(false),
            tun_gone: AtomicBool::new(false),
            link: link::LinkMonitor::default(),
            next_peer_id: AtomicU64::new(1),
            staged_budget: Arc::new(staged::StagedBudget::new(staged::MAX_STAGED_BYTES)),
            handshake_tx,
            handshake_rx,
            udp_generation: AtomicU64::new(0),
            io_wake: io_loop::Wake::new(),
            heartbeats: Default::default(),
            hist: Arc::new(histogram::DeviceHistograms::new()),
            sample_packets: opts.packet_metrics,
            crypto_tx,
            crypto_rx,
            jobs: pipeline::JobPool::default(),
            tx_bufs: pipeline::BufPool::new(pool_cap),
            rx_bufs: pipeline::BufPool::new(pool_cap),
            workers,
            inline_batch: opts.inline_batch,
            tun_reader: Mutex::new(send::TunReader::new(slots_per_read)),
            receiver: Mutex::new(receive::Receiver::default()),
            tun_written: AtomicBool::new(false),
            crypto_heartbeats: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            deadlines: deadlines::Deadlines::new(epoch),
        });
        let dev = Arc::new(Device {
            shared: shared.clone(),
            threads: Mutex::new(Vec::new()),
        });
        let mut th = dev.threads.lock();
        match io_loop::IoPoll::new(&shared, io_threads.clamp(1, 8)) {
            Ok(io) => {
                let io = Arc::new(io);
                for i in 0..io_threads.clamp(1, 8) {
                    let (s, io) = (shared.clone(), io.clone());
                    th.push(spawn(&format!("pm-io-{i}"), move || io_loop::run(&s, &io)));
                }
            }
            Err(e) => {
                // Never on Linux short of running out of descriptors; the
                // owner sees a dead device and exits.
                tracing::error!(error = %e, "cannot poll the TUN: no packets can move");
                shared.tun_gone.store(true, Ordering::SeqCst);
            }
        }
        let s = shared.clone();
        th.push(spawn("pm-handshake", move || handshake::run(&s)));
        for id in 0..workers {
            let s = shared.clone();
            th.push(spawn(&format!("pm-crypto-{id}"), move || {
                pipeline_worker(&s, id)
            }));
        }
        let s = shared;
        th.push(spawn("pm-timers", move || timers::run(&s)));
        drop(th);
        dev
    }

    /// Stops every thread and closes the I/O. Idempotent.
    pub fn close(&self) {
        if self.shared.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.tun.close();
        if let Some(u) = self.shared.udp.write().take() {
            u.close();
        }
        // One ring per I/O thread (each write wakes one waiter); no thread
        // drains it once the flag is set, so none sleeps through it.
        for _ in 0..8 {
            self.shared.io_wake.ring();
        }
        self.shared.deadlines.stop();
        // Wake the idle workers (see IDLE_WAIT) so they see the flag now: an
        // empty job is a no-op for a crypto worker, an empty message is
        // dropped by the handshake worker once it sees the flag.
        for _ in 0..self.shared.workers {
            let _ = self
                .shared
                .crypto_tx
                .try_send(self.shared.jobs.get(pipeline::Dir::Tx));
        }
        let _ = self.shared.handshake_tx.try_send(handshake::Queued {
            msg: Vec::new(),
            src: SocketAddr::from(([0, 0, 0, 0], 0)),
            local: None,
        });
        let me = std::thread::current().id();
        for t in self.threads.lock().drain(..) {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // Queued jobs hold their peer (and the peer its queues): break those
        // cycles so a closed device frees everything.
        let s = &self.shared;
        let recycle = |job: Arc<pipeline::Job>| {
            let bufs = match job.data.lock().dir {
                pipeline::Dir::Tx => &s.tx_bufs,
                pipeline::Dir::Rx => &s.rx_bufs,
            };
            s.jobs.recycle(job, bufs);
        };
        while let Ok(job) = s.crypto_rx.try_recv() {
            recycle(job);
        }
        for peer in s.peers.read().values() {
            peer.tx.take_all().into_iter().for_each(recycle);
            peer.rx.take_all().into_iter().for_each(recycle);
        }
    }

    /// The device state, for the fuzz targets' forwarding functions only.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn fuzz_shared(&self) -> &Shared {
        &self.shared
    }

    /// The next message waiting in the handshake queue (fuzz targets only).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn fuzz_next_handshake(&self) -> Option<handshake::Queued> {
        self.shared.handshake_rx.try_recv().ok()
    }

    pub fn is_closed(&self) -> bool {
        self.shared.shutdown.load(Ordering::SeqCst)
    }

    /// How runs of packets went so far (see [`PathCounters`]).
    pub fn path_counters(&self) -> PathCounters {
        let st = &self.shared.stats;
        PathCounters {
            batches_inline: st.batches_inline.load(Ordering::Relaxed),
            batches_worker: st.batches_worker.load(Ordering::Relaxed),
            wire_datagrams: st.wire_datagrams.load(Ordering::Relaxed),
        }
    }

    /// Looks at the TUN's link now (and records the look, see [`link`]).
    pub fn link_state(&self) -> crate::io::LinkState {
        self.shared.link.observe(self.shared.tun.link_state())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.close();
    }
}

/// How long an idle crypto or handshake worker sleeps before it refreshes
/// its heartbeat: well inside the liveness limit
/// (the admin plane's worker stall limit, 5 s), and long enough that an
/// idle daemon is not woken several times a second per thread. Each such
/// wake-up costs CPU on every node and moves threads between CPUs, which
/// makes the next packet's wake-up more likely to need an IPI. Shutdown
/// does not wait for it: [`Device::close`] wakes the workers.
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A crypto worker: takes any job off the shared queue, seals or opens it,
/// then delivers its peer's finished jobs in order.
fn pipeline_worker(s: &Shared, id: usize) {
    use crossbeam_channel::RecvTimeoutError;
    while !s.shutdown.load(Ordering::Relaxed) {
        s.crypto_heartbeats[id].store(s.now_ms(), Ordering::Relaxed);
        match s.crypto_rx.recv_timeout(IDLE_WAIT) {
            Ok(job) => {
                process(s, job);
                if s.crypto_rx.is_empty() {
                    send::read_opportunistically(s);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Runs a queued job the way [`pipeline::decide`] picked: `inline` by
/// this thread now, else by a crypto worker.
pub(crate) fn submit(s: &Shared, job: Arc<pipeline::Job>, inline: bool) {
    if inline {
        bump(&s.stats.batches_inline, 1);
        process(s, job);
    } else {
        bump(&s.stats.batches_worker, 1);
        if let Err(e) = s.crypto_tx.send(job) {
            process(s, e.0);
        }
    }
}

/// Seals or opens one job, marks it done, and drains its peer's queue.
fn process(s: &Shared, job: Arc<pipeline::Job>) {
    let (dir, peer) = {
        let mut d = job.data.lock();
        match d.dir {
            pipeline::Dir::Tx => send::seal_job(s, &mut d),
            pipeline::Dir::Rx => receive::open_job(s, &mut d),
        }
        (d.dir, d.peer.clone())
    };
    job.mark_done();
    drop(job);
    let Some(peer) = peer else { return };
    match dir {
        pipeline::Dir::Tx => peer.tx.drain(|j| send::finish_job(s, j)),
        pipeline::Dir::Rx => peer.rx.drain(|j| {
            receive::finish_job(s, &mut j.data.lock());
            s.jobs.recycle(j, &s.rx_bufs);
        }),
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawning a device thread")
}

impl Shared {
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn heartbeat(&self, worker: usize) {
        self.heartbeats[worker].store(self.now_ms(), Ordering::Relaxed);
    }

    /// Workers whose last heartbeat is older than `max_age_ms` ("crypto"
    /// when any crypto worker is).
    pub fn stalled_workers(&self, max_age_ms: u64) -> Vec<&'static str> {
        let now = self.now_ms();
        let stale = |hb: &AtomicU64| now.saturating_sub(hb.load(Ordering::Relaxed)) > max_age_ms;
        let mut out: Vec<&'static str> = WORKERS
            .iter()
            .zip(&self.heartbeats)
            .filter(|(_, hb)| stale(hb))
            .map(|(name, _)| *name)
            .collect();
        if self.crypto_heartbeats.iter().any(stale) {
            out.push("crypto");
        }
        out
    }

    pub fn is_under_load(&self) -> bool {
        self.now_ms() < self.under_load_until.load(Ordering::Relaxed)
    }

    pub fn new_peer_id(&self) -> u64 {
        self.next_peer_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn current_udp(&self) -> Option<Arc<dyn Udp>> {
        self.udp.read().clone()
    }

    /// A random receiver index not yet in use.
    pub fn alloc_index(&self, peer: &Arc<Peer>) -> u32 {
        let mut rng = rand::thread_rng();
        let mut idx = self.index.write();
        loop {
            let i = rng.next_u32();
            if let std::collections::hash_map::Entry::Vacant(v) = idx.entry(i) {
                v.insert(IndexEntry {
                    peer: peer.clone(),
                    keypair: None,
                });
                return i;
            }
        }
    }
}
