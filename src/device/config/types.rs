//! The device's configuration vocabulary: what a set operation asks for
//! ([`DeviceSet`], [`PeerSet`]), what a get reads back ([`DeviceInfo`],
//! [`PeerInfo`]), and why a set was refused ([`SetError`]).
//!
//! These live with the device, not with the UAPI text protocol, so the
//! device depends on nothing above it: the UAPI parser, the config files
//! and the admin plane all translate into these types (and the UAPI server
//! maps a [`SetErrorKind`] to its errno).
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use zeroize::Zeroize;

/// Why a set operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetErrorKind {
    /// A value the device cannot take (the UAPI answers EINVAL).
    Invalid,
    /// The UDP port is taken (EADDRINUSE).
    AddrInUse,
    /// The socket could not be opened or changed (EIO).
    Io,
}

/// A refused set operation, with a message for the log (never key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SetError {
    pub kind: SetErrorKind,
    pub message: String,
}

impl SetError {
    pub fn new(kind: SetErrorKind, message: impl Into<String>) -> SetError {
        SetError {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedIpChange {
    Add(IpAddr, u8),
    Remove(IpAddr, u8),
}

/// One `public_key=` section of a set operation. `Debug` hides the
/// preshared key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PeerSet {
    pub public_key: [u8; 32],
    pub remove: bool,
    pub update_only: bool,
    /// All zeros clears the preshared key.
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive_interval: Option<u16>,
    pub replace_allowed_ips: bool,
    /// In the order given.
    pub allowed_ips: Vec<AllowedIpChange>,
}

/// A whole set operation, in order. `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DeviceSet {
    /// All zeros removes the private key.
    pub private_key: Option<[u8; 32]>,
    pub listen_port: Option<u16>,
    pub fwmark: Option<u32>,
    pub replace_peers: bool,
    pub peers: Vec<PeerSet>,
}

/// Device state for a get reply. `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    pub private_key: Option<[u8; 32]>,
    pub listen_port: u16,
    pub fwmark: u32,
}

/// One peer's state for a get reply. `Debug` hides the preshared key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PeerInfo {
    pub public_key: [u8; 32],
    pub preshared_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    /// Unix epoch; (0, 0) when never.
    pub last_handshake_time_sec: u64,
    pub last_handshake_time_nsec: u32,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub persistent_keepalive_interval: u16,
    pub allowed_ips: Vec<(IpAddr, u8)>,
}

/// What `Debug` prints in place of a secret key, as `wg show` does.
const HIDDEN: &str = "(hidden)";

/// A public key in hex for `Debug` (it is no secret).
struct HexKey<'a>(&'a [u8; 32]);

impl fmt::Debug for HexKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// `Some("(hidden)")` / `None`: shows whether a secret is set, never its bytes.
fn hidden<T>(key: &Option<T>) -> Option<&'static str> {
    key.as_ref().map(|_| HIDDEN)
}

impl fmt::Debug for PeerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerSet")
            .field("public_key", &HexKey(&self.public_key))
            .field("remove", &self.remove)
            .field("update_only", &self.update_only)
            .field("preshared_key", &hidden(&self.preshared_key))
            .field("endpoint", &self.endpoint)
            .field(
                "persistent_keepalive_interval",
                &self.persistent_keepalive_interval,
            )
            .field("replace_allowed_ips", &self.replace_allowed_ips)
            .field("allowed_ips", &self.allowed_ips)
            .finish()
    }
}

impl fmt::Debug for DeviceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSet")
            .field("private_key", &hidden(&self.private_key))
            .field("listen_port", &self.listen_port)
            .field("fwmark", &self.fwmark)
            .field("replace_peers", &self.replace_peers)
            .field("peers", &self.peers)
            .finish()
    }
}

impl fmt::Debug for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceInfo")
            .field("private_key", &hidden(&self.private_key))
            .field("listen_port", &self.listen_port)
            .field("fwmark", &self.fwmark)
            .finish()
    }
}

impl fmt::Debug for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let psk = (self.preshared_key != [0; 32]).then_some(HIDDEN);
        f.debug_struct("PeerInfo")
            .field("public_key", &HexKey(&self.public_key))
            .field("preshared_key", &psk)
            .field("endpoint", &self.endpoint)
            .field("last_handshake_time_sec", &self.last_handshake_time_sec)
            .field("last_handshake_time_nsec", &self.last_handshake_time_nsec)
            .field("tx_bytes", &self.tx_bytes)
            .field("rx_bytes", &self.rx_bytes)
            .field(
                "persistent_keepalive_interval",
                &self.persistent_keepalive_interval,
            )
            .field("allowed_ips", &self.allowed_ips)
            .finish()
    }
}

// The private key copied for a get reply is zeroed when dropped. (The
// other structs are built with `..Default::default()`, which a Drop impl
// forbids: the UAPI server zeroes their keys itself.)
impl Drop for DeviceInfo {
    fn drop(&mut self) {
        self.private_key.zeroize();
    }
}
