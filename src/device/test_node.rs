//! A device on the in-memory backends, for unit tests elsewhere in the
//! crate (the admin plane's and the metrics' tests drive real devices
//! through it).
use super::Device;
use crate::device::config::{AllowedIpChange, DeviceSet, PeerSet};
use crate::io::mem::{MemNetwork, MemTun, MemTunHandle};
use crate::noise::keys::{PublicKey, StaticSecretKey};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub(crate) struct TestNode {
    pub dev: Arc<Device>,
    pub tun: MemTunHandle,
    pub secret: [u8; 32],
    pub addr: SocketAddr,
}

pub(crate) fn public_of(secret: [u8; 32]) -> [u8; 32] {
    *PublicKey::from(&StaticSecretKey::from(secret)).as_bytes()
}

impl TestNode {
    /// A device at `ip:port` on `net`, with private key `secret`.
    pub fn new(net: &MemNetwork, ip: &str, port: u16, secret: [u8; 32]) -> TestNode {
        let (tun, handle) = MemTun::new(&format!("wgm{port}"), 1420);
        let ip: IpAddr = ip.parse().unwrap();
        let dev = Device::new(tun, Arc::new(net.bind(ip)));
        dev.apply(&DeviceSet {
            private_key: Some(secret),
            listen_port: Some(port),
            ..Default::default()
        })
        .unwrap();
        TestNode {
            dev,
            tun: handle,
            secret,
            addr: SocketAddr::new(ip, port),
        }
    }

    pub fn public(&self) -> [u8; 32] {
        public_of(self.secret)
    }

    /// Configures `other` as a peer (with its endpoint when `endpoint`).
    pub fn add_peer(
        &self,
        other: &TestNode,
        psk: Option<[u8; 32]>,
        endpoint: bool,
        allowed: &[(&str, u8)],
    ) {
        let peer = PeerSet {
            public_key: other.public(),
            preshared_key: psk,
            endpoint: endpoint.then_some(other.addr),
            allowed_ips: allowed
                .iter()
                .map(|(a, c)| AllowedIpChange::Add(a.parse().unwrap(), *c))
                .collect(),
            ..Default::default()
        };
        self.dev
            .apply(&DeviceSet {
                peers: vec![peer],
                ..Default::default()
            })
            .unwrap();
    }
}
