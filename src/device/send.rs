//! Outbound: TUN -> routing lookup -> seal (crypto workers) -> UDP.
//!
//! The TUN reader routes a batch under one read lock, takes each run's
//! session and send counters in order, and hands the run to the pipeline
//! ([`super::pipeline`]) as one job. Packets are read at `HEADROOM` into
//! pooled buffers so the data header is written in front of them and the
//! tag behind them: sealing is in place and nothing is allocated per packet.
use super::peer::Peer;
use super::pipeline::{Dir, Job, JobData};
use super::{bump, Shared};
use crate::io::{Endpoint, MAX_BATCH};
use crate::noise::constants::{AEAD_TAG_LEN, DATA_HEADER_LEN, KEEPALIVE_LEN};
use crate::noise::keypair::Keypair;
use crate::noise::messages::padded_len;
use smallvec::SmallVec;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
/// Room in front of each inner packet for the data header.
pub const HEADROOM: usize = DATA_HEADER_LEN;
/// One buffer: the largest IP packet plus header, padding and tag.
pub const BUF_LEN: usize = HEADROOM + 65_535 + 16 + AEAD_TAG_LEN;

/// Destination address of an inner IP packet, or None if it is malformed.
pub fn destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let a: [u8; 4] = pkt[16..20].try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(a)))
        }
        6 if pkt.len() >= 40 => {
            let a: [u8; 16] = pkt[24..40].try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// The TUN reader's batch: behind a lock in [`Shared`] so that another
/// thread may read with the same buffers and in the same order (see
/// [`read_opportunistically`]).
pub struct TunReader {
    storage: Vec<Vec<u8>>,
    /// Slots before this may have lent their buffer out (to a job) since
    /// the last refill; the rest still hold theirs.
    lent: usize,
    sizes: Vec<usize>,
    targets: Vec<Option<Arc<Peer>>>,
}

impl TunReader {
    pub fn new(batch: usize) -> Self {
        let batch = batch.clamp(1, MAX_BATCH);
        TunReader {
            storage: (0..batch).map(|_| Vec::new()).collect(),
            lent: batch,
            sizes: vec![0; batch],
            targets: vec![None; batch],
        }
    }
}

/// The TUN reader loop (where the I/O cannot be polled together, see
/// [`super::io_loop`]). Where the TUN can wait apart from reading, the wait
/// is done without the reader lock.
pub fn run(s: &Shared) {
    let split = s.tun.can_read_ready();
    while !s.shutdown.load(Ordering::Relaxed) {
        s.heartbeat(super::HB_SEND);
        let r = if split {
            match s.tun.wait_readable(Duration::from_millis(200)) {
                Ok(false) => continue,
                Ok(true) => read_ready_batch(s),
                Err(e) => Err(e),
            }
        } else {
            with_deferred_sends(s, || {
                read_and_dispatch(s, &mut s.tun_reader.lock(), false, PATIENCE)
            })
        };
        if let Err(e) = r {
            if !keep_reading_after(s, &e) {
                return;
            }
        }
    }
}

/// Reads and queues what the TUN has queued now (one batch).
pub fn read_ready_batch(s: &Shared) -> std::io::Result<usize> {
    with_deferred_sends(s, || {
        read_and_dispatch(s, &mut s.tun_reader.lock(), true, PATIENCE)
    })
}

/// After a failed TUN read: false when reading should stop (shutdown, or
/// the device is gone, which is recorded); otherwise logs and pauses.
pub fn keep_reading_after(s: &Shared, e: &std::io::Error) -> bool {
    if s.shutdown.load(Ordering::Relaxed) {
        return false;
    }
    if !s.tun.exists() {
        tracing::info!(error = %e, "TUN device is gone");
        s.tun_gone.store(true, Ordering::SeqCst);
        return false;
    }
    tracing::warn!(error = %e, "TUN read failed");
    std::thread::sleep(Duration::from_millis(10));
    true
}

/// How long the reader waits for buffers when all are in flight.
const PATIENCE: Duration = Duration::from_millis(200);

/// After inbound packets reached the TUN: whatever the kernel answered at
/// once (echo replies, ACKs) is already queued on the TUN, so read and send
/// it from this thread, one batch for everything just written, instead of
/// waking the reader for it. Skipped when the reader is busy (it will see
/// the packets itself).
pub fn read_opportunistically(s: &Shared) {
    if !s.tun.can_read_ready() || !s.tun_written.swap(false, Ordering::Relaxed) {
        return;
    }
    if let Some(mut r) = s.tun_reader.try_lock() {
        with_deferred_sends(s, || {
            let _ = read_and_dispatch(s, &mut r, true, Duration::ZERO);
        });
    }
}

/// Reads one batch (`ready_only`: only what is queued now) and queues it.
///
/// Reading what is queued now starts with one read syscall: a lone packet
/// for an idle peer is then sealed and sent before the reader looks for
/// more (that look, usually EAGAIN, would otherwise delay every idle
/// packet by a syscall). Anything else joins what the rest of the read
/// finds, so a busy reader batches as before, with no extra syscall.
fn read_and_dispatch(
    s: &Shared,
    r: &mut TunReader,
    ready_only: bool,
    patience: Duration,
) -> std::io::Result<usize> {
    // Buffers of the last batch went to jobs; take fresh ones (waits while
    // every buffer is in flight: back-pressure, bounded memory).
    // Only the slots the last batch used can be empty: an idle tunnel's
    // lone packet then touches one slot instead of the whole batch.
    if !s.tx_bufs.fill(&mut r.storage[..r.lent], patience) {
        return Ok(0);
    }
    r.lent = 0;
    if !ready_only {
        let n = s.tun.read(&mut r.storage, &mut r.sizes, HEADROOM)?;
        r.lent = n;
        dispatch_read(s, r, 0, n, s.sample_packets.then(Instant::now));
        return Ok(n);
    }
    let first = s.tun.slots_per_read().clamp(1, r.storage.len());
    let n = s
        .tun
        .read_ready(&mut r.storage[..first], &mut r.sizes[..first], HEADROOM)?;
    if n == 0 {
        return Ok(0);
    }
    let started = s.sample_packets.then(Instant::now);
    let mut from = 0;
    if n == 1 {
        if let Some(peer) = route_one(s, r) {
            if send_in_place(s, &peer, &mut r.storage[0], r.sizes[0], started) {
                from = 1;
            } else {
                r.targets[0] = Some(peer);
            }
        } else {
            from = 1;
        }
    }
    // The rest of what is queued; a failure here is met again by the next read.
    let more = match s
        .tun
        .read_ready(&mut r.storage[n..], &mut r.sizes[n..], HEADROOM)
    {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "TUN read after the first packet failed");
            0
        }
    };
    let total = n + more;
    r.lent = total;
    dispatch_read(s, r, from, total, started);
    Ok(total)
}

/// Routes the lone packet in slot 0 (counting a drop when it has no peer).
fn route_one(s: &Shared, r: &mut TunReader) -> Option<Arc<Peer>> {
    route_batch(s, &r.storage[..1], &r.sizes[..1], &mut r.targets[..1]);
    let peer = r.targets[0].take();
    if peer.is_none() {
        bump(&s.stats.drop_no_route, 1);
    }
    peer
}

/// Queues packets `from..to` of the reader's batch, one job per run of one
/// peer. Slots whose peer is already known (`targets`) are not routed again.
fn dispatch_read(s: &Shared, r: &mut TunReader, from: usize, to: usize, started: Option<Instant>) {
    if from >= to {
        return;
    }
    let (storage, sizes, targets) = (&mut r.storage, &r.sizes, &mut r.targets);
    let known = usize::from(targets[from].is_some());
    route_batch(
        s,
        &storage[from + known..to],
        &sizes[from + known..to],
        &mut targets[from + known..to],
    );
    if to - from == 1 {
        if let Some(peer) = targets[from].take() {
            // A known target already failed the in-place send: do not retry.
            if known == 1 || !send_in_place(s, &peer, &mut storage[from], sizes[from], started) {
                dispatch(s, &peer, &mut storage[from..to], &sizes[from..to], started);
            }
        } else {
            bump(&s.stats.drop_no_route, 1);
        }
        return;
    }
    let mut i = from;
    while i < to {
        let mut j = i + 1;
        while j < to && same_peer(&targets[i], &targets[j]) {
            j += 1;
        }
        match targets[i].take() {
            Some(peer) => dispatch(s, &peer, &mut storage[i..j], &sizes[i..j], started),
            None => bump(&s.stats.drop_no_route, (j - i) as u64),
        }
        for t in &mut targets[i..j] {
            *t = None;
        }
        i = j;
    }
}

fn same_peer(a: &Option<Arc<Peer>>, b: &Option<Arc<Peer>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.id == b.id,
        (None, None) => true,
        _ => false,
    }
}

/// Picks each packet's peer by longest-prefix match of its destination,
/// under one read lock for the whole batch.
fn route_batch(s: &Shared, bufs: &[Vec<u8>], sizes: &[usize], targets: &mut [Option<Arc<Peer>>]) {
    let table = s.allowed_ips.read();
    for ((buf, &len), t) in bufs.iter().zip(sizes).zip(targets.iter_mut()) {
        let pkt = &buf[HEADROOM..HEADROOM + len];
        *t = match destination(pkt) {
            Some(IpAddr::V4(a)) => table.lookup_v4(a.octets()).map(|p| p.0.clone()),
            Some(IpAddr::V6(a)) => table.lookup_v6(a.octets()).map(|p| p.0.clone()),
            None => {
                bump(&s.stats.drop_malformed, 1);
                None
            }
        };
    }
}

/// Queues packets that all go to `peer` as one job: the buffers move into
/// it (leaving empty slots behind). Without a usable session the packets are
/// staged (copied; the buffers stay) and a handshake is started.
fn dispatch(
    s: &Shared,
    peer: &Arc<Peer>,
    slots: &mut [Vec<u8>],
    sizes: &[usize],
    started: Option<Instant>,
) {
    let kp = peer.state.lock().sending_keypair(Instant::now()).cloned();
    let Some(kp) = kp else {
        stage(s, peer, slots, sizes);
        s.with_peer(peer, |st, env, out| st.need_session(env, out));
        return;
    };
    let job = s.jobs.get(Dir::Tx);
    let taken = {
        let mut d = job.data.lock();
        d.peer = Some(peer.clone());
        d.keypair = Some(kp.clone());
        d.started = started;
        // Counters are taken under the queue's lock: queue order is counter
        // order, so the peer sees them ascending.
        peer.tx.push_with(|q| {
            for (slot, &len) in slots.iter_mut().zip(sizes) {
                let Some(c) = kp.next_counter() else { break };
                d.counters.push(c);
                d.lens.push(len);
                d.bufs.push(std::mem::take(slot));
            }
            if !d.bufs.is_empty() {
                q.push_back(job.clone());
            }
            d.bufs.len()
        })
    };
    if taken < slots.len() {
        // Counter exhausted: the rest waits for a new session.
        stage(s, peer, &slots[taken..], &sizes[taken..]);
        s.with_peer(peer, |st, env, out| st.need_session(env, out));
    }
    if taken == 0 {
        s.jobs.recycle(job, &s.tx_bufs);
        return;
    }
    super::submit(s, job, taken);
}

/// A lone packet for a peer with nothing queued or in flight, sealed and sent
/// by the reader itself: no job, no queue, no pool round trip (the buffer
/// stays in its slot). On an idle tunnel each packet meets cold caches, and
/// touching less memory is what shortens its way through. False when the
/// pipeline is needed (busy peer or workers, held-back sends, no session).
fn send_in_place(
    s: &Shared,
    peer: &Arc<Peer>,
    buf: &mut [u8],
    len: usize,
    started: Option<Instant>,
) -> bool {
    if !s.crypto_rx.is_empty() || DEFERRED.with(|q| !q.borrow().jobs.is_empty()) {
        return false;
    }
    let Some(ep) = peer.full_endpoint() else {
        return false;
    };
    let kp = peer.state.lock().sending_keypair(Instant::now()).cloned();
    let Some(kp) = kp else { return false };
    // The counter is taken only while the queue is idle, so no queued
    // packet of this peer can be older than this one.
    let Some(Some(counter)) = peer.tx.when_idle(|| kp.next_counter()) else {
        return false;
    };
    let mtu = s.mtu.load(Ordering::Relaxed);
    seal_packet(&kp, counter, buf, len, mtu);
    s.with_peer(peer, |st, env, out| st.on_sent(env, &kp, true, out));
    let wire = sealed_len(len, mtu);
    let Some(udp) = s.current_udp() else {
        return true;
    };
    if super::send_from_peer(&*udp, peer, &[&buf[..wire]], ep) {
        count_sent_packets(s, peer, 1, len, wire, started);
    }
    true
}

/// Pads the packet in `buf[HEADROOM..HEADROOM + len]` and seals it in place.
fn seal_packet(kp: &Keypair, counter: u64, buf: &mut [u8], len: usize, mtu: usize) {
    let plen = padded_len(len, mtu);
    buf[HEADROOM + len..HEADROOM + plen].fill(0);
    kp.seal(counter, buf, plen);
}

/// Crypto-worker half: pads and seals every packet of the job in place.
pub(crate) fn seal_job(s: &Shared, d: &mut JobData) {
    let Some(kp) = d.keypair.clone() else { return };
    let mtu = s.mtu.load(Ordering::Relaxed);
    for ((buf, &len), &counter) in d.bufs.iter_mut().zip(&d.lens).zip(&d.counters) {
        seal_packet(&kp, counter, buf, len, mtu);
    }
}

/// In-order half: runs the peer's send timers and sends the sealed job
/// (one batched send), or keeps it for the thread's deferred send (see
/// [`with_deferred_sends`]). Recycles the job once sent.
pub(crate) fn finish_job(s: &Shared, job: Arc<Job>) {
    {
        let d = job.data.lock();
        let (Some(peer), Some(kp)) = (d.peer.clone(), d.keypair.clone()) else {
            drop(d);
            s.jobs.recycle(job, &s.tx_bufs);
            return;
        };
        drop(d);
        s.with_peer(&peer, |st, env, out| st.on_sent(env, &kp, true, out));
    }
    let job = match DEFERRED.with(|q| q.borrow_mut().defer(job)) {
        None => return,
        Some(job) => job,
    };
    send_jobs(s, std::slice::from_ref(&job));
    s.jobs.recycle(job, &s.tx_bufs);
}

/// Sealed jobs a thread holds back to send together.
#[derive(Default)]
struct Deferred {
    active: bool,
    jobs: Vec<Arc<Job>>,
}

impl Deferred {
    /// Keeps the job if deferring is on; hands it back otherwise.
    fn defer(&mut self, job: Arc<Job>) -> Option<Arc<Job>> {
        if self.active {
            self.jobs.push(job);
            None
        } else {
            Some(job)
        }
    }
}

thread_local! {
    static DEFERRED: std::cell::RefCell<Deferred> = std::cell::RefCell::new(Deferred::default());
}

/// Runs `f` with this thread's sends held back, then sends them together:
/// a reader batch that reaches many peers (a reply each) costs one
/// `sendmmsg` instead of one syscall per peer. Nested calls join the
/// outermost one.
pub fn with_deferred_sends<R>(s: &Shared, f: impl FnOnce() -> R) -> R {
    let outer = DEFERRED.with(|q| !std::mem::replace(&mut q.borrow_mut().active, true));
    let r = f();
    if outer {
        let mut jobs = DEFERRED.with(|q| {
            let mut q = q.borrow_mut();
            q.active = false;
            std::mem::take(&mut q.jobs)
        });
        if !jobs.is_empty() {
            send_jobs(s, &jobs);
            for j in jobs.drain(..) {
                s.jobs.recycle(j, &s.tx_bufs);
            }
        }
        // Give the (now empty) vector back so its capacity is reused.
        DEFERRED.with(|q| {
            let mut q = q.borrow_mut();
            if q.jobs.is_empty() {
                q.jobs = jobs;
            }
        });
    }
    r
}

/// Sends sealed jobs in order: runs of single-datagram jobs (many peers)
/// as one multi-destination batch, larger jobs each as one GSO batch.
fn send_jobs(s: &Shared, jobs: &[Arc<Job>]) {
    let Some(udp) = s.current_udp() else { return };
    let mtu = s.mtu.load(Ordering::Relaxed);
    let guards: SmallVec<[_; MAX_BATCH]> = jobs.iter().map(|j| j.data.lock()).collect();
    let mut singles: SmallVec<[(&[u8], Endpoint); MAX_BATCH]> = SmallVec::new();
    let mut single_owners: SmallVec<[(&JobData, usize); MAX_BATCH]> = SmallVec::new();
    let flush_singles =
        |singles: &mut SmallVec<[(&[u8], Endpoint); MAX_BATCH]>,
         owners: &mut SmallVec<[(&JobData, usize); MAX_BATCH]>| {
            if singles.is_empty() {
                return;
            }
            let mut forget = |i: usize| {
                if let (Some((d, _)), Some((_, ep))) = (owners.get(i), singles.get(i)) {
                    if let Some(p) = d.peer.as_ref() {
                        p.clear_source(ep.src);
                    }
                }
            };
            if udp.send_many_from(singles, &mut forget).is_ok() {
                for (d, wire) in owners.iter() {
                    count_sent(s, d, *wire);
                }
            }
            singles.clear();
            owners.clear();
        };
    for d in guards.iter() {
        let Some(peer) = d.peer.as_ref() else {
            continue;
        };
        let Some(ep) = peer.full_endpoint() else {
            continue;
        };
        if d.bufs.len() == 1 {
            let len = sealed_len(d.lens[0], mtu);
            singles.push((&d.bufs[0][..len], ep));
            single_owners.push((d, len));
            if singles.len() == MAX_BATCH {
                flush_singles(&mut singles, &mut single_owners);
            }
            continue;
        }
        // Order: this peer's earlier singles leave first.
        flush_singles(&mut singles, &mut single_owners);
        let slices: SmallVec<[&[u8]; MAX_BATCH]> = d
            .bufs
            .iter()
            .zip(&d.lens)
            .map(|(b, &len)| &b[..sealed_len(len, mtu)])
            .collect();
        if super::send_from_peer(&*udp, peer, &slices, ep) {
            count_sent(s, d, slices.iter().map(|b| b.len()).sum());
        }
    }
    flush_singles(&mut singles, &mut single_owners);
}

fn count_sent(s: &Shared, d: &JobData, wire: usize) {
    if let Some(p) = d.peer.as_ref() {
        let bytes = d.lens.iter().sum::<usize>();
        count_sent_packets(s, p, d.bufs.len(), bytes, wire, d.started);
    }
}

/// Counts packets sent to `peer`: inner bytes for the device, wire bytes
/// for the peer, and the packet latency when sampled.
fn count_sent_packets(
    s: &Shared,
    peer: &Peer,
    packets: usize,
    bytes: usize,
    wire: usize,
    started: Option<Instant>,
) {
    bump(&s.stats.tx_packets, packets as u64);
    bump(&s.stats.tx_bytes, bytes as u64);
    peer.add_tx(wire as u64);
    if let Some(t) = started {
        s.hist.tx_packet.observe(t.elapsed());
    }
}

fn sealed_len(len: usize, mtu: usize) -> usize {
    HEADROOM + padded_len(len, mtu) + AEAD_TAG_LEN
}

fn stage(s: &Shared, peer: &Peer, bufs: &[Vec<u8>], sizes: &[usize]) {
    let mut q = peer.staged.lock();
    let refused = bufs
        .iter()
        .zip(sizes)
        .filter(|(b, &len)| !q.push(&b[HEADROOM..HEADROOM + len]))
        .count();
    drop(q);
    // Over the device-wide cap: counted as a full queue.
    bump(&s.stats.drop_queue_full, refused as u64);
}

/// Sends staged packets on the current session. False when nothing was sent.
/// Rare (once per new session), so it builds its own buffers.
pub fn flush_staged(s: &Shared, peer: &Arc<Peer>) -> bool {
    let staged: Vec<Vec<u8>> = peer.staged.lock().take_all();
    if staged.is_empty() {
        return false;
    }
    let mut bufs: Vec<Vec<u8>> = Vec::with_capacity(staged.len());
    let mut sizes = Vec::with_capacity(staged.len());
    for p in staged {
        let mut b = vec![0u8; HEADROOM + p.len() + 16 + AEAD_TAG_LEN];
        b[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
        sizes.push(p.len());
        bufs.push(b);
    }
    dispatch(s, peer, &mut bufs, &sizes, None);
    true
}

/// Sends one keepalive (an empty data message) on the current session.
pub fn send_keepalive(s: &Shared, peer: &Arc<Peer>) {
    let kp = peer.state.lock().sending_keypair(Instant::now()).cloned();
    let Some(kp) = kp else { return };
    let Some(counter) = kp.next_counter() else {
        return;
    };
    let mut buf = [0u8; KEEPALIVE_LEN];
    let n = kp.seal(counter, &mut buf, 0);
    s.send_to_peer(peer, &[&buf[..n]]);
    s.with_peer(peer, |st, env, out| st.on_sent(env, &kp, false, out));
}
