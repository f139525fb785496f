//! The way out: the one function that puts sealed datagrams on the wire.
//!
//! Data packets (sealed in place, inline or by a crypto worker),
//! keepalives, handshake messages and cookie replies all leave through
//! [`transmit`], so batching (one `sendmmsg` for many peers' single
//! datagrams, one GSO send for a peer's run) and the sticky-source rule
//! (a source the kernel refuses is forgotten, the datagram goes without
//! it) live in one place, as in the kernel's `wg_socket_send_*`.
use super::peer::Peer;
use super::{bump, Shared};
use crate::io::{Endpoint, MAX_BATCH};
use smallvec::SmallVec;

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
