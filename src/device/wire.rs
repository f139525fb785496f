//! The way out: the one function that puts sealed datagrams on the wire.
//!
//! Data packets (sealed in place, inline or by a crypto worker),
//! keepalives, handshake messages and cookie replies all leave through
//! [`transmit`], so batching (one `sendmmsg` for many peers' single
//! datagrams, one GSO send for a peer's run) and the sticky-source rule
//! (a source the kernel refuses is forgotten, the datagram goes without
//! it) live in one place, as in the kernel's `wg_socket_send_*`.
//!
//! Sealed jobs a thread finishes while it handles a batch are held back
//! and sent together at its end ([`with_deferred_sends`]).
use super::peer::Peer;
use super::pipeline::HEADROOM;
use super::pipeline::{Job, JobData};
use super::{bump, Shared};
use crate::io::{Endpoint, MAX_BATCH};
use crate::noise::constants::AEAD_TAG_LEN;
use crate::noise::messages::padded_len;
use smallvec::SmallVec;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Consecutive datagrams for one endpoint.
pub(crate) struct Run<'a> {
    /// Whose they are: a refused sticky source is forgotten on this peer.
    /// None for replies to strangers (cookie replies).
    pub peer: Option<&'a Peer>,
    pub ep: Endpoint,
    /// How many of the datagrams, from where the previous run ended.
    pub count: usize,
}

/// Sends `datagrams` in order, split into `runs`. Runs of one datagram go
/// out together in one multi-destination send, so many peers' single
/// packets cost one syscall; a longer run is one batch to its endpoint
/// (GSO where the socket has it). `sent(i)` hears each run `i` that the
/// socket accepted. Nothing happens without a socket (none bound yet).
pub(crate) fn transmit(
    s: &Shared,
    datagrams: &[&[u8]],
    runs: &[Run<'_>],
    sent: &mut dyn FnMut(usize),
) {
    let Some(udp) = s.current_udp() else { return };
    bump(&s.stats.wire_datagrams, datagrams.len() as u64);
    let mut singles: SmallVec<[(&[u8], Endpoint); MAX_BATCH]> = SmallVec::new();
    let mut owners: SmallVec<[usize; MAX_BATCH]> = SmallVec::new();
    let flush = |singles: &mut SmallVec<[(&[u8], Endpoint); MAX_BATCH]>,
                 owners: &mut SmallVec<[usize; MAX_BATCH]>,
                 sent: &mut dyn FnMut(usize)| {
        if singles.is_empty() {
            return;
        }
        let mut forget = |i: usize| {
            if let (Some(&run), Some((_, ep))) = (owners.get(i), singles.get(i)) {
                if let Some(p) = runs[run].peer {
                    p.clear_source(ep.src);
                }
            }
        };
        // A lone one (an idle tunnel's packet) takes the plainer call.
        let res = match singles.as_slice() {
            [(buf, ep)] => udp.send_from(&[buf], *ep).map(|rejected| {
                if rejected {
                    forget(0);
                }
            }),
            _ => udp.send_many_from(singles, &mut forget),
        };
        match res {
            Ok(()) => owners.iter().for_each(|&run| sent(run)),
            Err(e) => tracing::trace!(error = %e, "UDP send failed"),
        }
        singles.clear();
        owners.clear();
    };
    let mut at = 0;
    for (i, run) in runs.iter().enumerate() {
        let Some(bufs) = datagrams.get(at..at + run.count) else {
            break;
        };
        at += run.count;
        if let [one] = bufs {
            singles.push((one, run.ep));
            owners.push(i);
            if singles.len() == MAX_BATCH {
                flush(&mut singles, &mut owners, sent);
            }
            continue;
        }
        // Order: earlier singles (maybe this peer's) leave first.
        flush(&mut singles, &mut owners, sent);
        match udp.send_from(bufs, run.ep) {
            Ok(rejected) => {
                if rejected {
                    if let Some(p) = run.peer {
                        p.clear_source(run.ep.src);
                    }
                }
                sent(i);
            }
            Err(e) => tracing::trace!(error = %e, "UDP send failed"),
        }
    }
    flush(&mut singles, &mut owners, sent);
}

/// Sealed jobs a thread holds back to send together.
#[derive(Default)]
struct Deferred {
    active: bool,
    jobs: Vec<Arc<Job>>,
}

/// Keeps a sealed job for this thread's deferred send when one is open
/// (see [`with_deferred_sends`]); hands it back otherwise.
pub(crate) fn defer(job: Arc<Job>) -> Option<Arc<Job>> {
    DEFERRED.with(|q| {
        let mut q = q.borrow_mut();
        if q.active {
            q.jobs.push(job);
            None
        } else {
            Some(job)
        }
    })
}

/// Whether this thread holds sealed jobs back: a packet sent at once
/// would overtake them.
pub(crate) fn holding() -> bool {
    DEFERRED.with(|q| !q.borrow().jobs.is_empty())
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

/// Sends sealed jobs in order through [`transmit`]: each job is one run
/// (single-datagram jobs of many peers share one send), in chunks of at
/// most [`MAX_BATCH`] datagrams.
pub(crate) fn send_jobs(s: &Shared, jobs: &[Arc<Job>]) {
    let mtu = s.mtu.load(Ordering::Relaxed);
    let guards: SmallVec<[_; MAX_BATCH]> = jobs.iter().map(|j| j.data.lock()).collect();
    let mut datagrams: SmallVec<[&[u8]; MAX_BATCH]> = SmallVec::new();
    let mut runs: SmallVec<[Run; MAX_BATCH]> = SmallVec::new();
    // Per run: its job, the job's packets it carries, and its wire bytes.
    let mut owners: SmallVec<[(&JobData, usize, usize, usize); MAX_BATCH]> = SmallVec::new();
    let flush =
        |datagrams: &mut SmallVec<[&[u8]; MAX_BATCH]>,
         runs: &mut SmallVec<[Run; MAX_BATCH]>,
         owners: &mut SmallVec<[(&JobData, usize, usize, usize); MAX_BATCH]>| {
            transmit(s, datagrams, runs, &mut |i| {
                let (d, from, to, wire) = owners[i];
                if let Some(p) = d.peer.as_ref() {
                    let bytes = d.lens[from..to].iter().sum::<usize>();
                    count_sent_packets(s, p, to - from, bytes, wire, d.started);
                }
            });
            datagrams.clear();
            runs.clear();
            owners.clear();
        };
    for d in guards.iter() {
        let Some(peer) = d.peer.as_ref() else {
            continue;
        };
        let Some(ep) = peer.full_endpoint() else {
            continue;
        };
        let mut from = 0;
        while from < d.bufs.len() {
            if datagrams.len() == MAX_BATCH {
                flush(&mut datagrams, &mut runs, &mut owners);
            }
            let to = d.bufs.len().min(from + MAX_BATCH - datagrams.len());
            let mut wire = 0;
            for (b, &len) in d.bufs[from..to].iter().zip(&d.lens[from..to]) {
                let n = sealed_len(len, mtu);
                wire += n;
                datagrams.push(&b[..n]);
            }
            runs.push(Run {
                peer: Some(peer),
                ep,
                count: to - from,
            });
            owners.push((d, from, to, wire));
            from = to;
        }
    }
    flush(&mut datagrams, &mut runs, &mut owners);
}

/// Counts packets sent to `peer`: inner bytes for the device, wire bytes
/// for the peer, and the packet latency when sampled.
pub(super) fn count_sent_packets(
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

pub(super) fn sealed_len(len: usize, mtu: usize) -> usize {
    HEADROOM + padded_len(len, mtu) + AEAD_TAG_LEN
}

impl Shared {
    /// Sends already-built datagrams (handshake messages, keepalives) to
    /// the peer's endpoint, if it has one, through [`transmit`].
    /// True when the socket took them.
    pub fn send_to_peer(&self, peer: &Peer, bufs: &[&[u8]]) -> bool {
        let Some(ep) = peer.full_endpoint() else {
            return false;
        };
        let run = Run {
            peer: Some(peer),
            ep,
            count: bufs.len(),
        };
        let mut sent = false;
        transmit(self, bufs, &[run], &mut |_| sent = true);
        if sent {
            peer.add_tx(bufs.iter().map(|b| b.len() as u64).sum());
        }
        sent
    }
}
