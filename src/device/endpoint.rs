//! Where each peer is: its endpoint, learnt from authenticated packets
//! (roaming) or set by configuration, and the connected UDP socket the
//! device asks for once an authenticated packet confirmed an address (see
//! `Udp::connect`: on Linux it saves a route lookup per datagram each way).
use super::peer::Peer;
use super::Shared;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// At most one connect per peer per interval: a peer flapping between two
/// addresses (two paths, a NAT rebinding back and forth) must not cost a
/// socket per packet.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

/// A peer's address, and whether the UDP socket was asked for a socket
/// connected to it.
#[derive(Default)]
pub struct Endpoint {
    pub addr: Option<SocketAddr>,
    /// The UDP socket generation (`Shared::udp_generation`, from 1) asked
    /// to connect to `addr`; 0 when none was. A new socket (listen port
    /// change) has a new generation, so the peer asks it again.
    pub connected: u64,
    /// When a connect was last asked for.
    pub connected_at: Option<Instant>,
}

impl Endpoint {
    /// The address a connected socket may exist for.
    pub fn connected_addr(&self) -> Option<SocketAddr> {
        self.addr.filter(|_| self.connected != 0)
    }
}

impl Peer {
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint.lock().addr
    }
}

impl Shared {
    /// An authenticated packet of `peer` came from `src`: it becomes the
    /// endpoint (roaming), and on the first such packet per address and
    /// socket the socket is asked to connect to it. Once settled, this is
    /// one lock and two compares per batch.
    pub fn learn_endpoint(&self, peer: &Peer, src: SocketAddr) {
        let generation = self.udp_generation.load(Ordering::Relaxed);
        let (old, connect) = {
            let mut e = peer.endpoint.lock();
            if e.addr == Some(src) && e.connected == generation {
                return;
            }
            let mut old = None;
            if e.addr != Some(src) {
                old = e.connected_addr();
                e.addr = Some(src);
                e.connected = 0;
            }
            let now = Instant::now();
            let connect = generation != 0
                && e.connected_at
                    .is_none_or(|t| now.duration_since(t) >= RECONNECT_INTERVAL);
            if connect {
                e.connected = generation;
                e.connected_at = Some(now);
            }
            (old, connect)
        };
        if old.is_none() && !connect {
            return;
        }
        if let Some(udp) = self.current_udp() {
            if let Some(old) = old {
                udp.disconnect(old);
            }
            if connect {
                udp.connect(src);
            }
        }
    }

    /// Configuration sets `peer`'s endpoint. Not connected until a packet
    /// from there authenticates (the address may be wrong or stale).
    pub fn configure_endpoint(&self, peer: &Peer, addr: SocketAddr) {
        let old = {
            let mut e = peer.endpoint.lock();
            if e.addr == Some(addr) {
                return;
            }
            let old = e.connected_addr();
            e.addr = Some(addr);
            e.connected = 0;
            old
        };
        self.disconnect(old);
    }

    /// `peer` is gone: gives up its connected socket.
    pub fn forget_endpoint(&self, peer: &Peer) {
        let old = {
            let mut e = peer.endpoint.lock();
            let old = e.connected_addr();
            e.connected = 0;
            old
        };
        self.disconnect(old);
    }

    fn disconnect(&self, addr: Option<SocketAddr>) {
        if let (Some(addr), Some(udp)) = (addr, self.current_udp()) {
            udp.disconnect(addr);
        }
    }
}
