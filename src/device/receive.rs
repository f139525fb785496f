//! Inbound: UDP -> decrypt -> source check -> TUN, one batch at a time.
//!
//! Handshake messages are copied to the bounded handshake queue and handled
//! by another thread, so a flood of initiations costs this loop one copy per
//! message and never a Diffie-Hellman. Data messages are resolved to their
//! session under one read of the index table, decrypted in place without
//! locks, checked against the device-wide allowed-IPs table under one read,
//! and written to the TUN as one batch.
use super::handshake::Queued;
use super::peer::Peer;
use super::send::BUF_LEN;
use super::{bump, Shared, UNDER_LOAD_THRESHOLD};
use crate::io::{RecvMeta, MAX_BATCH};
use crate::noise::constants::DATA_HEADER_LEN;
use crate::noise::keypair::{Keypair, OpenError};
use crate::noise::messages::{message_type, receiver_index, MessageType};
use crate::noise::peer::keypair_usable;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One decrypted data message waiting to be delivered.
struct Opened {
    slot: usize,
    peer: Arc<Peer>,
    keypair: Arc<Keypair>,
    /// Inner packet length after trimming padding (0 = keepalive).
    inner_len: usize,
    wire_len: usize,
    src: SocketAddr,
    deliver: bool,
}

/// The UDP receive loop. Follows the socket when it is replaced (a new
/// listen port).
pub fn run(s: &Shared) {
    let mut storage: Vec<Vec<u8>> = (0..MAX_BATCH).map(|_| vec![0u8; BUF_LEN]).collect();
    let mut meta = vec![RecvMeta::default(); MAX_BATCH];
    let mut resolved: Vec<Option<(Arc<Peer>, Arc<Keypair>)>> = vec![None; MAX_BATCH];
    let mut opened: Vec<Opened> = Vec::with_capacity(MAX_BATCH);
    while !s.shutdown.load(Ordering::Relaxed) {
        s.heartbeat(super::HB_RECEIVE);
        let Some(udp) = s.current_udp() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let n = {
            let mut bufs: Vec<&mut [u8]> = storage.iter_mut().map(|b| &mut b[..]).collect();
            match udp.recv(&mut bufs, &mut meta) {
                Ok(n) => n,
                Err(_) => {
                    // Closed for a rebind or shutdown; the loop re-reads both.
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
        };
        if n > 0 {
            let started = s.sample_packets.then(Instant::now);
            if process_batch(s, &mut storage, &meta[..n], &mut resolved, &mut opened) {
                if let Some(t) = started {
                    s.hist.rx_packet.observe(t.elapsed());
                }
            }
        }
    }
}

fn process_batch(
    s: &Shared,
    storage: &mut [Vec<u8>],
    meta: &[RecvMeta],
    resolved: &mut [Option<(Arc<Peer>, Arc<Keypair>)>],
    opened: &mut Vec<Opened>,
) -> bool {
    // 1. Classify; resolve data messages to sessions under one read lock.
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
                Ok(_) => enqueue_handshake(s, msg, m.src),
                Err(_) => bump(&s.stats.drop_malformed, 1),
            }
        }
    }
    // 2. Decrypt in place, no locks but each session's replay window.
    let now = Instant::now();
    opened.clear();
    for (i, m) in meta.iter().enumerate() {
        let Some((peer, kp)) = resolved[i].take() else {
            continue;
        };
        if !keypair_usable(&kp, now) {
            bump(&s.stats.drop_no_session, 1);
            continue;
        }
        match kp.open(&mut storage[i][..m.len]) {
            Ok(n) => {
                let inner = &storage[i][DATA_HEADER_LEN..DATA_HEADER_LEN + n];
                let (inner_len, ok) = if n == 0 {
                    (0, true)
                } else {
                    inner_packet_len(inner)
                };
                if !ok {
                    bump(&s.stats.drop_malformed, 1);
                }
                opened.push(Opened {
                    slot: i,
                    peer,
                    keypair: kp,
                    inner_len,
                    wire_len: m.len,
                    src: m.src,
                    deliver: ok && n > 0,
                });
            }
            Err(OpenError::Replay) => bump(&s.stats.drop_replay, 1),
            Err(_) => bump(&s.stats.drop_decrypt, 1),
        }
    }
    if opened.is_empty() {
        return false;
    }
    // 3. Cryptokey routing, inbound: the source must belong to the sender.
    {
        let table = s.allowed_ips.read();
        for o in opened.iter_mut().filter(|o| o.deliver) {
            let inner = &storage[o.slot][DATA_HEADER_LEN..DATA_HEADER_LEN + o.inner_len];
            let owner = match source(inner) {
                Some(IpAddr::V4(a)) => table.lookup_v4(a.octets()),
                Some(IpAddr::V6(a)) => table.lookup_v6(a.octets()),
                None => None,
            };
            if owner.map(|p| p.0.id) != Some(o.peer.id) {
                o.deliver = false;
                bump(&s.stats.drop_source_check, 1);
            }
        }
    }
    // 4. Per-session bookkeeping before delivery, as the kernel does: roam,
    //    count, run timers and confirm a new session (so replies the
    //    delivered packets provoke already use the right endpoint and keys).
    let mut i = 0;
    while i < opened.len() {
        let mut j = i + 1;
        while j < opened.len() && Arc::ptr_eq(&opened[j].keypair, &opened[i].keypair) {
            j += 1;
        }
        let run = &opened[i..j];
        let peer = &run[0].peer;
        let wire: usize = run.iter().map(|o| o.wire_len).sum();
        let data = run.iter().any(|o| o.inner_len > 0);
        peer.set_endpoint(run[run.len() - 1].src);
        peer.add_rx(wire as u64);
        let kp = run[0].keypair.clone();
        s.with_peer(peer, |st, env, out| st.on_received(env, &kp, data, out));
        i = j;
    }
    // 5. One TUN write for the batch. Each buffer is cut to its packet for
    //    the write (an offloading TUN may coalesce them, GRO) and restored
    //    to full size afterwards, without reallocating.
    let mut delivered = 0usize;
    let mut bytes = 0usize;
    for o in opened.iter().filter(|o| o.deliver) {
        storage[o.slot].truncate(DATA_HEADER_LEN + o.inner_len);
        delivered += 1;
        bytes += o.inner_len;
    }
    if delivered > 0 {
        bump(&s.stats.rx_packets, delivered as u64);
        bump(&s.stats.rx_bytes, bytes as u64);
        let mut bufs: Vec<&mut Vec<u8>> =
            storage.iter_mut().filter(|b| b.len() < BUF_LEN).collect();
        if let Err(e) = s.tun.write(&mut bufs, DATA_HEADER_LEN) {
            tracing::debug!(error = %e, "TUN write failed");
        }
        for b in storage.iter_mut() {
            if b.len() != BUF_LEN {
                restore(b);
            }
        }
    }
    opened.clear();
    true
}

/// Gives a buffer back its full length. Its bytes were initialised when it
/// was allocated at BUF_LEN; truncating and coalescing never shrink the
/// allocation, so this is a length change, not a fill.
fn restore(b: &mut Vec<u8>) {
    if b.capacity() >= BUF_LEN {
        // SAFETY: u8 has no invalid values and the first BUF_LEN bytes of the
        // allocation were initialised by vec![0; BUF_LEN].
        unsafe { b.set_len(BUF_LEN) };
    } else {
        b.resize(BUF_LEN, 0);
    }
}

fn enqueue_handshake(s: &Shared, msg: &[u8], src: SocketAddr) {
    let q = Queued {
        msg: msg.to_vec(),
        src,
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
