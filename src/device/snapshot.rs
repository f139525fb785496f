//! The device's read-only face: what the admin plane, the metrics scrape
//! and the daemon may know about a running device, copied out as plain
//! values so no caller holds a device lock or reaches into [`Shared`].
//!
//! Every read here is cheap enough for a scrape: counters are relaxed
//! loads, a peer lookup takes the peer table's read lock once, and the
//! histograms are shared (`Arc`), not copied.
use super::histogram::DeviceHistograms;
use super::peer::Peer;
use super::{Device, Shared, Stats};
use crate::io::LinkState;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The device counters ([`Stats`]) at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Inner (plaintext) bytes delivered to the TUN / read from it and sent.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub drop_bad_mac: u64,
    pub drop_replay: u64,
    pub drop_decrypt: u64,
    pub drop_no_route: u64,
    pub drop_source_check: u64,
    pub drop_rate_limited: u64,
    pub drop_malformed: u64,
    pub drop_no_session: u64,
    pub drop_queue_full: u64,
    pub cookie_replies_sent: u64,
    pub handshakes_initiated: u64,
    pub handshakes_completed: u64,
    pub handshakes_failed: u64,
}

impl Stats {
    /// Every counter, each read once (relaxed: the counters are
    /// independent, a scrape needs no single instant across them).
    pub fn snapshot(&self) -> Counters {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            rx_packets: l(&self.rx_packets),
            tx_packets: l(&self.tx_packets),
            rx_bytes: l(&self.rx_bytes),
            tx_bytes: l(&self.tx_bytes),
            drop_bad_mac: l(&self.drop_bad_mac),
            drop_replay: l(&self.drop_replay),
            drop_decrypt: l(&self.drop_decrypt),
            drop_no_route: l(&self.drop_no_route),
            drop_source_check: l(&self.drop_source_check),
            drop_rate_limited: l(&self.drop_rate_limited),
            drop_malformed: l(&self.drop_malformed),
            drop_no_session: l(&self.drop_no_session),
            drop_queue_full: l(&self.drop_queue_full),
            cookie_replies_sent: l(&self.cookie_replies_sent),
            handshakes_initiated: l(&self.handshakes_initiated),
            handshakes_completed: l(&self.handshakes_completed),
            handshakes_failed: l(&self.handshakes_failed),
        }
    }
}

/// One visible peer as the admin plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub last_handshake: Option<SystemTime>,
    /// A session usable for sending right now.
    pub has_session: bool,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

impl PeerSnapshot {
    fn of(peer: &Peer) -> PeerSnapshot {
        let (last_handshake, has_session) = {
            let st = peer.state.lock();
            (
                st.last_handshake(),
                st.sending_keypair(Instant::now()).is_some(),
            )
        };
        PeerSnapshot {
            public_key: peer.public_key,
            endpoint: peer.endpoint(),
            last_handshake,
            has_session,
            tx_bytes: peer.tx_bytes.load(Ordering::Relaxed),
            rx_bytes: peer.rx_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Whether the device's threads and I/O are alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// [`Device::close`] ran.
    pub closed: bool,
    /// The TUN went away; the owner should exit.
    pub tun_gone: bool,
    /// A UDP socket is bound.
    pub udp_bound: bool,
    /// Worker threads (named as in [`super::WORKERS`], "crypto" for any crypto
    /// worker) without a heartbeat for longer than asked.
    pub stalled_workers: Vec<&'static str>,
    /// The TUN's link state as last looked at, and how often it came up.
    pub link_last: Option<LinkState>,
    pub link_ups: u64,
}

impl Device {
    /// The device counters now.
    pub fn counters(&self) -> Counters {
        self.shared.stats.snapshot()
    }

    /// One visible peer (self-test peers are not).
    pub fn peer_snapshot(&self, public_key: &[u8; 32]) -> Option<PeerSnapshot> {
        let peer = self.visible_peer(public_key)?;
        Some(PeerSnapshot::of(&peer))
    }

    /// Each key's visible peer, in the order asked, with one look at the
    /// peer table.
    pub fn peer_snapshots(&self, keys: &[[u8; 32]]) -> Vec<Option<PeerSnapshot>> {
        let peers = self.shared.peers.read();
        keys.iter()
            .map(|k| {
                let p = peers.get(k).filter(|p| !p.is_hidden())?;
                Some(PeerSnapshot::of(p))
            })
            .collect()
    }

    pub(super) fn visible_peer(&self, public_key: &[u8; 32]) -> Option<Arc<Peer>> {
        let peer = self.shared.peers.read().get(public_key).cloned()?;
        (!peer.is_hidden()).then_some(peer)
    }

    /// The public key of the peer the allowed-IPs table routes `addr` to.
    pub fn route_of(&self, addr: IpAddr) -> Option<[u8; 32]> {
        self.shared
            .allowed_ips
            .read()
            .lookup(addr)
            .map(|p| p.0.public_key)
    }

    /// The first of `candidates` that no peer routes.
    pub fn first_unrouted(&self, candidates: impl IntoIterator<Item = IpAddr>) -> Option<IpAddr> {
        let table = self.shared.allowed_ips.read();
        candidates.into_iter().find(|c| table.lookup(*c).is_none())
    }

    /// Live sessions: receiver indices with keys.
    pub fn session_count(&self) -> usize {
        self.shared
            .index
            .read()
            .values()
            .filter(|e| e.keypair.is_some())
            .count()
    }

    /// Receiver indices in use (sessions and pending handshakes).
    pub fn index_count(&self) -> usize {
        self.shared.index.read().len()
    }

    /// True while the handshake queue is under load (cookies required).
    pub fn is_under_load(&self) -> bool {
        self.shared.is_under_load()
    }

    /// The latency histograms the device records into.
    pub fn histograms(&self) -> Arc<DeviceHistograms> {
        self.shared.hist.clone()
    }

    /// Records one tunnel test's round trip.
    pub fn observe_tunnel_test_rtt(&self, rtt: Duration) {
        self.shared.hist.tunnel_test_rtt.observe(rtt);
    }

    /// The TUN's name.
    pub fn tun_name(&self) -> &str {
        self.shared.tun.name()
    }

    /// Set when the TUN went away; the owner should exit.
    pub fn tun_gone(&self) -> bool {
        self.shared.tun_gone.load(Ordering::SeqCst)
    }

    /// How often the link came up, as seen by [`Device::link_state`].
    pub fn link_ups(&self) -> u64 {
        self.shared.link.ups()
    }

    /// The link state as last looked at (None before any look).
    pub fn last_link_state(&self) -> Option<LinkState> {
        self.shared.link.last()
    }

    /// Whether a UDP socket is bound now.
    pub fn udp_bound(&self) -> bool {
        self.shared.current_udp().is_some()
    }

    /// Workers without a heartbeat for longer than `max_age_ms`.
    pub fn stalled_workers(&self, max_age_ms: u64) -> Vec<&'static str> {
        self.shared.stalled_workers(max_age_ms)
    }

    /// Whether the device is alive, workers judged against `stall_ms`.
    pub fn health(&self, stall_ms: u64) -> Health {
        let s: &Shared = &self.shared;
        Health {
            closed: self.is_closed(),
            tun_gone: self.tun_gone(),
            udp_bound: self.udp_bound(),
            stalled_workers: s.stalled_workers(stall_ms),
            link_last: s.link.last(),
            link_ups: s.link.ups(),
        }
    }
}
