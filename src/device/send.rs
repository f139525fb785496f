//! Outbound: TUN -> routing lookup -> seal (crypto workers) -> UDP.
//!
//! The I/O loop reads the TUN ([`read_ready_batch`]), routes the batch
//! under one read lock, and sends each peer's run the one way
//! [`pipeline::decide`] picks: in place, as a job done inline, or as a job
//! for the crypto workers. Every sealed packet leaves through
//! [`super::wire::transmit`]. Packets are read at `HEADROOM` into
//! pooled buffers so the data header is written in front of them and the
//! tag behind them: sealing is in place and nothing is allocated per packet.
use super::peer::Peer;
use super::pipeline::{self, Dir, Job, JobData, Way};
pub use super::pipeline::{BUF_LEN, HEADROOM};
use super::wire::{self, count_sent_packets, sealed_len, transmit, with_deferred_sends, Run};
use super::{bump, Shared};
use crate::io::{Endpoint, MAX_BATCH};
use crate::noise::constants::{AEAD_TAG_LEN, KEEPALIVE_LEN};
use crate::noise::keypair::Keypair;
use crate::noise::messages::padded_len;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// What the reader knows of one packet of its batch.
#[derive(Clone, Default)]
enum Target {
    /// Not routed yet.
    #[default]
    Unrouted,
    /// Routed to this peer; its way (see [`pipeline::decide`]) is taken
    /// with its run.
    Peer(Arc<Peer>),
    /// Taken care of already: sent in place, or dropped (no route).
    Done,
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
    targets: Vec<Target>,
    /// Slots one read syscall fills ([`crate::io::TunFeatures`]).
    slots_per_read: usize,
}

impl TunReader {
    pub fn new(slots_per_read: usize) -> Self {
        TunReader {
            storage: (0..MAX_BATCH).map(|_| Vec::new()).collect(),
            lent: MAX_BATCH,
            sizes: vec![0; MAX_BATCH],
            targets: vec![Target::Unrouted; MAX_BATCH],
            slots_per_read: slots_per_read.clamp(1, MAX_BATCH),
        }
    }
}

/// Reads and queues what the TUN has queued now (one batch): the I/O
/// loop's TUN half.
pub fn read_ready_batch(s: &Shared) -> std::io::Result<usize> {
    with_deferred_sends(s, || {
        read_and_dispatch(s, &mut s.tun_reader.lock(), PATIENCE)
    })
}

/// After a failed TUN read: false when reading should stop (shutdown, or
/// the device is gone, which is recorded); otherwise logs and pauses.
pub fn keep_reading_after(s: &Shared, e: &std::io::Error) -> bool {
    if s.shutdown.load(Ordering::Relaxed) {
        return false;
    }
    if s.tun.link_state() == crate::io::LinkState::Gone {
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
/// waking the I/O loop for it. Skipped when the reader is busy (it will
/// see the packets itself).
pub fn read_opportunistically(s: &Shared) {
    if !s.tun_written.swap(false, Ordering::Relaxed) {
        return;
    }
    if let Some(mut r) = s.tun_reader.try_lock() {
        with_deferred_sends(s, || {
            let _ = read_and_dispatch(s, &mut r, Duration::ZERO);
        });
    }
}

/// Reads what is queued now (one batch) and queues it.
///
/// The read starts with one syscall's worth: a lone packet for an idle peer
/// is then sealed and sent in place before the reader looks for more (that
/// look, usually EAGAIN, would otherwise delay every idle packet by a
/// syscall). Anything else joins what the rest of the read finds, so a busy
/// reader batches as before, with no extra syscall.
fn read_and_dispatch(s: &Shared, r: &mut TunReader, patience: Duration) -> std::io::Result<usize> {
    // Buffers of the last batch went to jobs; take fresh ones (waits while
    // every buffer is in flight: back-pressure, bounded memory).
    // Only the slots the last batch used can be empty: an idle tunnel's
    // lone packet then touches one slot instead of the whole batch.
    if !s.tx_bufs.fill(&mut r.storage[..r.lent], patience) {
        return Ok(0);
    }
    r.lent = 0;
    let first = r.slots_per_read;
    let n = s
        .tun
        .read(&mut r.storage[..first], &mut r.sizes[..first], HEADROOM)?;
    if n == 0 {
        return Ok(0);
    }
    let started = s.sample_packets.then(Instant::now);
    if n == 1 {
        route(s, r, 0, 1);
        if let Target::Peer(peer) = &r.targets[0] {
            let peer = peer.clone();
            if dispatch(s, &peer, &mut r.storage[..1], &r.sizes[..1], started, true) {
                r.targets[0] = Target::Done;
            }
        }
    }
    // The rest of what is queued; a failure here is met again by the next read.
    let more = match s.tun.read(&mut r.storage[n..], &mut r.sizes[n..], HEADROOM) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "TUN read after the first packet failed");
            0
        }
    };
    let total = n + more;
    r.lent = total;
    dispatch_read(s, r, total, started);
    Ok(total)
}

/// Routes the unrouted packets of slots `from..to` (counting drops), under
/// one read lock of the table.
fn route(s: &Shared, r: &mut TunReader, from: usize, to: usize) {
    let table = s.allowed_ips.read();
    let slots = r.storage[from..to].iter().zip(&r.sizes[from..to]);
    for ((buf, &len), t) in slots.zip(&mut r.targets[from..to]) {
        if !matches!(t, Target::Unrouted) {
            continue;
        }
        let pkt = &buf[HEADROOM..HEADROOM + len];
        let peer = match destination(pkt) {
            Some(IpAddr::V4(a)) => table.lookup_v4(a.octets()).map(|p| p.0.clone()),
            Some(IpAddr::V6(a)) => table.lookup_v6(a.octets()).map(|p| p.0.clone()),
            None => {
                bump(&s.stats.drop_malformed, 1);
                *t = Target::Done;
                continue;
            }
        };
        *t = match peer {
            Some(p) => Target::Peer(p),
            None => {
                bump(&s.stats.drop_no_route, 1);
                Target::Done
            }
        };
    }
}

/// Queues packets `0..to` of the reader's batch, one run per peer; every
/// slot is left [`Target::Unrouted`] for the next read.
fn dispatch_read(s: &Shared, r: &mut TunReader, to: usize, started: Option<Instant>) {
    route(s, r, 0, to);
    let mut i = 0;
    while i < to {
        let Target::Peer(peer) = std::mem::take(&mut r.targets[i]) else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < to && matches!(&r.targets[j], Target::Peer(p) if p.id == peer.id) {
            r.targets[j] = Target::Unrouted;
            j += 1;
        }
        dispatch(
            s,
            &peer,
            &mut r.storage[i..j],
            &r.sizes[i..j],
            started,
            false,
        );
        i = j;
    }
}

/// Sends packets that all go to `peer` the way [`pipeline::decide`] picks:
/// in place (the buffer stays in its slot), or as one job (the buffers move
/// into it, leaving empty slots behind). Without a usable session the
/// packets are staged (copied; the buffers stay) and a handshake is
/// started. With `in_place_only`, any other way leaves the packets
/// untouched and answers false; otherwise the answer is true.
fn dispatch(
    s: &Shared,
    peer: &Arc<Peer>,
    slots: &mut [Vec<u8>],
    sizes: &[usize],
    started: Option<Instant>,
    in_place_only: bool,
) -> bool {
    let kp = peer.state.lock().sending_keypair(Instant::now()).cloned();
    let Some(kp) = kp else {
        stage(s, peer, slots, sizes);
        s.with_peer(peer, |st, env, out| st.need_session(env, out));
        return true;
    };
    let ep = peer.full_endpoint();
    // In place: one packet, to a known endpoint, with no sends held back
    // by this thread (it would overtake them). The counter is taken while
    // the queue is idle, so no queued packet of this peer is older.
    let way = pipeline::decide(s, slots.len(), &peer.tx, || {
        let held = wire::holding();
        if slots.len() != 1 || ep.is_none() || held {
            return None;
        }
        kp.next_counter()
    });
    let inline = match (way, ep) {
        (Way::InPlace(counter), Some(ep)) => {
            send_in_place(s, peer, &kp, counter, ep, &mut slots[0], sizes[0], started);
            return true;
        }
        _ if in_place_only => return false,
        (Way::Worker, _) => false,
        _ => true,
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
        return true;
    }
    super::submit(s, job, inline);
    true
}

/// A lone packet sealed in its read buffer and sent at once (see
/// [`Way::InPlace`]).
#[allow(clippy::too_many_arguments)]
fn send_in_place(
    s: &Shared,
    peer: &Arc<Peer>,
    kp: &Arc<Keypair>,
    counter: u64,
    ep: Endpoint,
    buf: &mut [u8],
    len: usize,
    started: Option<Instant>,
) {
    bump(&s.stats.batches_inline, 1);
    let mtu = s.mtu.load(Ordering::Relaxed);
    seal_packet(kp, counter, buf, len, mtu);
    s.with_peer(peer, |st, env, out| st.on_sent(env, kp, true, out));
    let wire = sealed_len(len, mtu);
    let run = Run {
        peer: Some(peer),
        ep,
        count: 1,
    };
    transmit(s, &[&buf[..wire]], &[run], &mut |_| {
        count_sent_packets(s, peer, 1, len, wire, started)
    });
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
    let job = match wire::defer(job) {
        None => return,
        Some(job) => job,
    };
    wire::send_jobs(s, std::slice::from_ref(&job));
    s.jobs.recycle(job, &s.tx_bufs);
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
    dispatch(s, peer, &mut bufs, &sizes, None, false)
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
