//! What the device-pair test files share: a whole device on the in-memory
//! network, with its TUN handle and its keys.
// Each test file is its own crate and uses part of this.
#![allow(dead_code)]
use phantommesh::device::config::{AllowedIpChange, DeviceSet, PeerSet};
use phantommesh::device::options::{DeviceOptions, SMALL_BATCH};
use phantommesh::device::Device;
use phantommesh::io::mem::{MemNetwork, MemTun, MemTunHandle};
use phantommesh::noise::keys::{PublicKey, StaticSecretKey};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub struct Node {
    pub dev: Arc<Device>,
    pub tun: MemTunHandle,
    pub secret: [u8; 32],
    pub ip: IpAddr,
    pub port: u16,
}

impl Node {
    /// A device at `ip:port` on `net` with `workers` crypto workers and the
    /// private key `[seed; 32]`. Runs of more than [`SMALL_BATCH`] packets
    /// go to the workers whatever the machine's cores (the daemon's default
    /// on two cores keeps every run inline), so the tests cover the
    /// workers' hand-offs and ordering everywhere.
    pub fn new(net: &MemNetwork, ip: &str, port: u16, seed: u8, workers: usize) -> Node {
        Self::with_inline_batch(net, ip, port, seed, workers, SMALL_BATCH)
    }

    /// As [`Node::new`], with the reader doing runs of up to
    /// `inline_batch` packets itself.
    pub fn with_inline_batch(
        net: &MemNetwork,
        ip: &str,
        port: u16,
        seed: u8,
        workers: usize,
        inline_batch: usize,
    ) -> Node {
        let (tun, handle) = MemTun::new(&format!("mem{seed}"), 1420);
        let ip: IpAddr = ip.parse().unwrap();
        let opts = DeviceOptions {
            workers,
            inline_batch,
            ..Default::default()
        };
        let dev = Device::with_options(tun, Arc::new(net.bind(ip)), opts);
        let secret = [seed; 32];
        dev.apply(&DeviceSet {
            private_key: Some(secret),
            listen_port: Some(port),
            ..Default::default()
        })
        .unwrap();
        Node {
            dev,
            tun: handle,
            secret,
            ip,
            port,
        }
    }

    pub fn public(&self) -> [u8; 32] {
        *PublicKey::from(&StaticSecretKey::from(self.secret)).as_bytes()
    }

    pub fn endpoint(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// Adds `other` as a peer with `allowed` (address, prefix length)
    /// pairs, its endpoint when `endpoint`, and a persistent keepalive.
    pub fn add_peer(
        &self,
        other: &Node,
        endpoint: bool,
        allowed: &[(&str, u8)],
        keepalive: Option<u16>,
    ) {
        self.dev
            .apply(&DeviceSet {
                peers: vec![PeerSet {
                    public_key: other.public(),
                    endpoint: endpoint.then(|| other.endpoint()),
                    allowed_ips: allowed
                        .iter()
                        .map(|(a, c)| AllowedIpChange::Add(a.parse().unwrap(), *c))
                        .collect(),
                    persistent_keepalive_interval: keepalive,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .unwrap();
    }
}
