//! Outbound: TUN -> routing lookup -> encrypt -> UDP, one batch at a time.
//!
//! Packets are read at `HEADROOM` into reusable buffers so the data header
//! is written in front of them and the tag behind them: encryption is in
//! place and nothing is allocated per packet. Consecutive packets for the
//! same peer form one run: one session lookup, one `send` call.
use super::peer::Peer;
use super::{bump, Shared};
use crate::io::MAX_BATCH;
use crate::noise::constants::{AEAD_TAG_LEN, DATA_HEADER_LEN, KEEPALIVE_LEN, MAX_STAGED_PACKETS};
use crate::noise::keypair::Keypair;
use crate::noise::messages::padded_len;
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

/// The TUN reader loop.
pub fn run(s: &Shared) {
    let batch = s.tun.batch_size().clamp(1, MAX_BATCH);
    let mut storage: Vec<Vec<u8>> = (0..batch).map(|_| vec![0u8; BUF_LEN]).collect();
    let mut sizes = vec![0usize; batch];
    let mut targets: Vec<Option<Arc<Peer>>> = vec![None; batch];
    while !s.shutdown.load(Ordering::Relaxed) {
        s.heartbeat(super::HB_SEND);
        let n = {
            let mut bufs: Vec<&mut [u8]> = storage.iter_mut().map(|b| &mut b[..]).collect();
            match s.tun.read(&mut bufs, &mut sizes, HEADROOM) {
                Ok(n) => n,
                Err(e) => {
                    if s.shutdown.load(Ordering::Relaxed) {
                        return;
                    }
                    if !s.tun.exists() {
                        tracing::info!(error = %e, "TUN device is gone");
                        s.tun_gone.store(true, Ordering::SeqCst);
                        return;
                    }
                    tracing::warn!(error = %e, "TUN read failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        };
        if n == 0 {
            continue;
        }
        let started = s.sample_packets.then(Instant::now);
        route_batch(s, &storage[..n], &sizes[..n], &mut targets[..n]);
        let mut i = 0;
        while i < n {
            let mut j = i + 1;
            while j < n && same_peer(&targets[i], &targets[j]) {
                j += 1;
            }
            match targets[i].take() {
                Some(peer) => send_run(s, &peer, &mut storage[i..j], &sizes[i..j]),
                None => bump(&s.stats.drop_no_route, (j - i) as u64),
            }
            for t in &mut targets[i..j] {
                *t = None;
            }
            i = j;
        }
        if let Some(t) = started {
            s.hist.tx_packet.observe(t.elapsed());
        }
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

/// Encrypts and sends packets that all go to `peer`; stages them and starts
/// a handshake when there is no usable session.
fn send_run(s: &Shared, peer: &Arc<Peer>, bufs: &mut [Vec<u8>], sizes: &[usize]) {
    let now = Instant::now();
    let kp = peer.state.lock().sending_keypair(now).cloned();
    let Some(kp) = kp else {
        stage(peer, bufs, sizes);
        s.with_peer(peer, |st, env, out| st.need_session(env, out));
        return;
    };
    let mtu = s.mtu.load(Ordering::Relaxed);
    let mut sealed = 0;
    for (buf, &len) in bufs.iter_mut().zip(sizes) {
        if seal_one(&kp, buf, len, mtu).is_none() {
            break;
        }
        sealed += 1;
    }
    if sealed < bufs.len() {
        // Counter exhausted: the rest waits for a new session.
        stage(peer, &bufs[sealed..], &sizes[sealed..]);
        s.with_peer(peer, |st, env, out| st.need_session(env, out));
    }
    if sealed > 0 {
        let slices: Vec<&[u8]> = bufs[..sealed]
            .iter()
            .zip(sizes)
            .map(|(b, &len)| &b[..sealed_len(len, mtu)])
            .collect();
        if s.send_to_peer(peer, &slices) {
            bump(&s.stats.tx_packets, sealed as u64);
            bump(
                &s.stats.tx_bytes,
                sizes[..sealed].iter().sum::<usize>() as u64,
            );
        }
        s.with_peer(peer, |st, env, out| st.on_sent(env, &kp, true, out));
    }
}

fn sealed_len(len: usize, mtu: usize) -> usize {
    HEADROOM + padded_len(len, mtu) + AEAD_TAG_LEN
}

/// Pads and seals the packet at `buf[HEADROOM..HEADROOM + len]` in place.
fn seal_one(kp: &Keypair, buf: &mut [u8], len: usize, mtu: usize) -> Option<usize> {
    let counter = kp.next_counter()?;
    let plen = padded_len(len, mtu);
    buf[HEADROOM + len..HEADROOM + plen].fill(0);
    Some(kp.seal(counter, buf, plen))
}

fn stage(peer: &Peer, bufs: &[Vec<u8>], sizes: &[usize]) {
    let mut q = peer.staged.lock();
    for (b, &len) in bufs.iter().zip(sizes) {
        if q.len() >= MAX_STAGED_PACKETS {
            q.pop_front();
        }
        q.push_back(b[HEADROOM..HEADROOM + len].to_vec());
    }
}

/// Sends staged packets on the current session. False when nothing was sent.
pub fn flush_staged(s: &Shared, peer: &Arc<Peer>) -> bool {
    let staged: Vec<Vec<u8>> = peer.staged.lock().drain(..).collect();
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
    send_run(s, peer, &mut bufs, &sizes);
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
