//! Inbound: UDP -> open (crypto workers) -> source check -> TUN.
//!
//! Handshake messages are copied to the bounded handshake queue and handled
//! by another thread, so a flood of initiations costs this loop one copy per
//! message and never a Diffie-Hellman. Data messages are resolved to their
//! session under one read of the index table, and each run of the same
//! session takes the one way [`pipeline::decide`] picks (opened in place,
//! as a job done inline, or as a job for the crypto workers); sources are
//! checked after decryption, and the peer's runs are delivered to the TUN
//! in the order they arrived.
use super::handshake::Queued;
use super::peer::Peer;
use super::pipeline::{self, restore_len, Dir, JobData, RxOutcome, Seen, Way};
use super::{bump, Shared, UNDER_LOAD_THRESHOLD};
use crate::io::{RecvMeta, Udp, MAX_BATCH};
use crate::noise::constants::DATA_HEADER_LEN;
use crate::noise::keypair::{Keypair, OpenError};
use crate::noise::messages::{message_type, receiver_index, MessageType};
use crate::noise::peer::keypair_usable;
use smallvec::SmallVec;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The receiving side's batch: behind a lock in [`Shared`] so that either
/// I/O thread may receive with it (see [`super::io_loop`]); only one thread
/// at a time produces inbound jobs.
pub struct Receiver {
    storage: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    resolved: Vec<Option<(Arc<Peer>, Arc<Keypair>)>>,
    scratch: JobData,
    /// Slots before this may have lent their buffer to a job (see TunReader).
    lent: usize,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            storage: (0..MAX_BATCH).map(|_| Vec::new()).collect(),
            meta: vec![RecvMeta::default(); MAX_BATCH],
            resolved: vec![None; MAX_BATCH],
            scratch: JobData::default(),
            lent: MAX_BATCH,
        }
    }
}

impl Receiver {
    /// Receives what `udp` has queued now (one batch) and queues it; then
    /// sends whatever the kernel answered at once (see
    /// [`super::send::read_opportunistically`]): the I/O loop's UDP half.
    /// Err: the socket is closed (a rebind or shutdown).
    pub fn pass(&mut self, s: &Shared, udp: &dyn Udp) -> std::io::Result<usize> {
        if !s
            .rx_bufs
            .fill(&mut self.storage[..self.lent], Duration::from_millis(200))
        {
            return Ok(0);
        }
        self.lent = 0;
        // The buffers go as they are: the socket touches only the slots it
        // fills (a lone datagram, one), where a list of 128 slices would
        // cost an idle tunnel's cold caches ~80 lines per receive.
        let n = udp.recv_ready(&mut self.storage, &mut self.meta)?;
        if n > 0 {
            self.lent = n;
            let started = s.sample_packets.then(Instant::now);
            super::wire::with_deferred_sends(s, || {
                dispatch_batch(
                    s,
                    &mut self.storage,
                    &self.meta[..n],
                    &mut self.resolved,
                    started,
                    &mut self.scratch,
                );
                super::send::read_opportunistically(s);
            });
        }
        Ok(n)
    }
}

/// Classifies a batch, resolves data messages to sessions under one read
/// lock, and queues each run of one session as a job (its buffers move into
/// the job).
fn dispatch_batch(
    s: &Shared,
    storage: &mut [Vec<u8>],
    meta: &[RecvMeta],
    resolved: &mut [Option<(Arc<Peer>, Arc<Keypair>)>],
    started: Option<Instant>,
    scratch: &mut JobData,
) {
    {
        let index = s.index.read();
        for (i, m) in meta.iter().enumerate() {
            let msg = &storage[i][..m.len];
            resolved[i] = None;
            match message_type(msg) {
                Ok(MessageType::Data) => {
                    let idx = receiver_index(MessageType::Data, msg);
                    match index
                        .get(&idx)
                        .and_then(|e| Some((e.peer.clone(), e.keypair.clone()?)))
                    {
                        Some(pair) => resolved[i] = Some(pair),
                        None => bump(&s.stats.drop_no_session, 1),
                    }
                }
                Ok(_) => enqueue_handshake(s, msg, m),
                Err(_) => bump(&s.stats.drop_malformed, 1),
            }
        }
    }
    let n = meta.len();
    let mut i = 0;
    while i < n {
        let Some((peer, kp)) = resolved[i].take() else {
            i += 1;
            continue;
        };
        // The run: the following datagrams of the same session.
        let mut j = i + 1;
        while j < n && matches!(&resolved[j], Some((_, k)) if Arc::ptr_eq(k, &kp)) {
            resolved[j] = None;
            j += 1;
        }
        // This thread is the only producer of inbound jobs, so a peer idle
        // now stays idle until the run is delivered.
        let inline = match pipeline::decide(s, j - i, &peer.rx, || Some(())) {
            Way::InPlace(()) => {
                open_in_place(
                    s,
                    &mut storage[i..j],
                    &meta[i..j],
                    peer,
                    kp,
                    started,
                    scratch,
                );
                i = j;
                continue;
            }
            Way::Inline => true,
            Way::Worker => false,
        };
        let job = s.jobs.get(Dir::Rx);
        {
            let mut d = job.data.lock();
            for (slot, m) in storage[i..j].iter_mut().zip(&meta[i..j]) {
                d.bufs.push(std::mem::take(slot));
                d.lens.push(m.len);
                d.srcs.push(seen(m));
            }
            d.peer = Some(peer.clone());
            d.keypair = Some(kp);
            d.started = started;
        }
        peer.rx.push(job.clone());
        super::submit(s, job, inline);
        i = j;
    }
}

/// A small run for a peer with nothing in flight, done by the receiver
/// itself with no job and no queue; the buffers go back to their slots.
/// On an idle tunnel every packet arrives to cold caches, so touching less
/// memory (no job, no pool round trip) is what shortens its way through.
fn open_in_place(
    s: &Shared,
    slots: &mut [Vec<u8>],
    meta: &[RecvMeta],
    peer: Arc<Peer>,
    kp: Arc<Keypair>,
    started: Option<Instant>,
    d: &mut JobData,
) {
    bump(&s.stats.batches_inline, 1);
    d.dir = Dir::Rx;
    for (slot, m) in slots.iter_mut().zip(meta) {
        d.bufs.push(std::mem::take(slot));
        d.lens.push(m.len);
        d.srcs.push(seen(m));
    }
    d.peer = Some(peer);
    d.keypair = Some(kp);
    d.started = started;
    open_job(s, d);
    finish_job(s, d);
    for (slot, mut b) in slots.iter_mut().zip(d.bufs.drain(..)) {
        restore_len(&mut b);
        *slot = b;
    }
    d.clear_keeping_bufs();
}

/// Crypto-worker half: decrypts every datagram of the job in place and
/// applies cryptokey routing to what comes out (the inner source must be one
/// of the sender's allowed IPs).
pub(crate) fn open_job(s: &Shared, d: &mut JobData) {
    // Borrowed, not cloned: each clone is an atomic on a line the other
    // threads also touch, and this runs for every inbound batch.
    let (Some(peer), Some(kp)) = (d.peer.as_ref(), d.keypair.as_ref()) else {
        return;
    };
    d.outcomes.clear();
    if !keypair_usable(kp, Instant::now()) {
        bump(&s.stats.drop_no_session, d.bufs.len() as u64);
        d.outcomes.resize(d.bufs.len(), RxOutcome::Dropped);
        return;
    }
    let table = s.allowed_ips.read();
    for (buf, &len) in d.bufs.iter_mut().zip(&d.lens) {
        let outcome = match kp.open(&mut buf[..len]) {
            Ok(0) => RxOutcome::Deliver(0),
            Ok(n) => {
                let inner = &buf[DATA_HEADER_LEN..DATA_HEADER_LEN + n];
                let (inner_len, ok) = inner_packet_len(inner);
                if !ok {
                    bump(&s.stats.drop_malformed, 1);
                    RxOutcome::Authentic
                } else {
                    let owner = match source(inner) {
                        Some(IpAddr::V4(a)) => table.lookup_v4(a.octets()),
                        Some(IpAddr::V6(a)) => table.lookup_v6(a.octets()),
                        None => None,
                    };
                    if owner.map(|p| p.0.id) == Some(peer.id) {
                        RxOutcome::Deliver(inner_len)
                    } else {
                        bump(&s.stats.drop_source_check, 1);
                        RxOutcome::Authentic
                    }
                }
            }
            Err(OpenError::Replay) => {
                bump(&s.stats.drop_replay, 1);
                RxOutcome::Dropped
            }
            Err(_) => {
                bump(&s.stats.drop_decrypt, 1);
                RxOutcome::Dropped
            }
        };
        d.outcomes.push(outcome);
    }
}

/// In-order half: per-session bookkeeping before delivery, as the kernel
/// does (roam, count, run timers and confirm a new session, so replies the
/// delivered packets provoke already use the right endpoint and keys), then
/// one TUN write. Each buffer is cut to its packet for the write (an
/// offloading TUN may coalesce them, GRO); the pool restores the lengths.
pub(crate) fn finish_job(s: &Shared, d: &mut JobData) {
    let (Some(peer), Some(kp)) = (d.peer.as_ref(), d.keypair.as_ref()) else {
        return;
    };
    let mut wire = 0usize;
    let mut data = false;
    let mut last_src = None;
    for ((o, &len), src) in d.outcomes.iter().zip(&d.lens).zip(&d.srcs) {
        match o {
            RxOutcome::Dropped => continue,
            RxOutcome::Deliver(n) => data |= *n > 0,
            RxOutcome::Authentic => data = true,
        }
        wire += len;
        last_src = Some(*src);
    }
    let Some(src) = last_src else { return };
    // An established peer's datagrams get a queue of their own, apart from
    // a handshake flood (io::peer_sockets); a roamed peer's old one goes.
    // Datagrams that came on that queue are pinned already: an idle
    // tunnel's every packet would otherwise pay a lookup under the
    // backend's lock (and a clone of the socket handle) for nothing.
    let moved = peer
        .set_seen_endpoint(src.ep)
        .filter(|o| o.dst != src.ep.dst);
    if moved.is_some() || !src.connected {
        if let Some(udp) = s.current_udp() {
            if let Some(old) = moved {
                udp.unpin(old.dst);
            }
            udp.pin(src.ep);
        }
    }
    peer.add_rx(wire as u64);
    s.with_peer(peer, |st, env, out| st.on_received(env, kp, data, out));
    let mut delivered = 0usize;
    let mut bytes = 0usize;
    let mut bufs: SmallVec<[&mut Vec<u8>; MAX_BATCH]> = SmallVec::new();
    for (b, o) in d.bufs.iter_mut().zip(&d.outcomes) {
        if let RxOutcome::Deliver(n) = *o {
            if n > 0 {
                b.truncate(DATA_HEADER_LEN + n);
                delivered += 1;
                bytes += n;
                bufs.push(b);
            }
        }
    }
    if delivered > 0 {
        bump(&s.stats.rx_packets, delivered as u64);
        bump(&s.stats.rx_bytes, bytes as u64);
        if let Err(e) = s.tun.write(&mut bufs, DATA_HEADER_LEN) {
            tracing::debug!(error = %e, "TUN write failed");
        } else {
            s.tun_written.store(true, Ordering::Relaxed);
        }
        if let Some(t) = d.started {
            s.hist.rx_packet.observe(t.elapsed());
        }
    }
}

/// Where a datagram came from and arrived: the endpoint it teaches once
/// authenticated.
fn seen(m: &RecvMeta) -> Seen {
    Seen {
        ep: crate::io::Endpoint {
            dst: m.src,
            src: m.local,
        },
        connected: m.connected,
    }
}

fn enqueue_handshake(s: &Shared, msg: &[u8], m: &RecvMeta) {
    let q = Queued {
        msg: msg.to_vec(),
        src: m.src,
        local: m.local,
    };
    if s.handshake_tx.len() >= UNDER_LOAD_THRESHOLD {
        s.under_load_until
            .store(s.now_ms() + 1000, Ordering::Relaxed);
    }
    if s.handshake_tx.try_send(q).is_err() {
        bump(&s.stats.drop_queue_full, 1);
    }
}

/// Length of a well-formed inner IP packet (its header's total length,
/// which trims the padding), and whether it is well formed.
pub fn inner_packet_len(pkt: &[u8]) -> (usize, bool) {
    match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 20 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            if ihl >= 20 && total >= ihl && total <= pkt.len() {
                (total, true)
            } else {
                (0, false)
            }
        }
        Some(6) if pkt.len() >= 40 => {
            let total = 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            if total <= pkt.len() {
                (total, true)
            } else {
                (0, false)
            }
        }
        _ => (0, false),
    }
}

/// Source address of a well-formed inner IP packet.
pub fn source(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let a: [u8; 4] = pkt[12..16].try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(a)))
        }
        6 if pkt.len() >= 40 => {
            let a: [u8; 16] = pkt[8..24].try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_length_trims_padding_and_rejects_bad_headers() {
        let mut v4 = vec![0u8; 48];
        v4[0] = 0x45;
        v4[2..4].copy_from_slice(&33u16.to_be_bytes());
        assert_eq!(inner_packet_len(&v4), (33, true));
        v4[2..4].copy_from_slice(&49u16.to_be_bytes());
        assert!(!inner_packet_len(&v4).1, "total length beyond the packet");
        v4[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert!(!inner_packet_len(&v4).1, "total length below the header");
        let mut v6 = vec![0u8; 64];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(inner_packet_len(&v6), (48, true));
        v6[4..6].copy_from_slice(&25u16.to_be_bytes());
        assert!(!inner_packet_len(&v6).1);
        assert!(!inner_packet_len(&[0x45; 10]).1);
        assert!(!inner_packet_len(&[]).1);
        assert!(!inner_packet_len(&[0x75; 60]).1, "unknown IP version");
    }
}
