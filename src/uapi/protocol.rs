//! UAPI text protocol: `get=1\n\n` and `set=1\n` + `key=value` lines + `\n`.
//! Replies end with `errno=N\n\n`. Pure functions: text in, typed value or
//! error (with the errno to answer) out.
use std::net::{IpAddr, SocketAddr};

pub const EINVAL: i32 = 22;
pub const EPROTO: i32 = 71;
pub const EADDRINUSE: i32 = 98;
pub const EIO: i32 = 5;

/// An error answered as `errno=-N`, with a message for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (errno {errno})")]
pub struct UapiError {
    pub errno: i32,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Get,
    Set,
}

/// Parses the first line of an operation (`get=1` or `set=1`).
pub fn parse_operation(line: &str) -> Result<Operation, UapiError> {
    let _ = line;
    todo!()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedIpChange {
    Add(IpAddr, u8),
    Remove(IpAddr, u8),
}

/// One `public_key=` section of a set operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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

/// A whole set operation, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceSet {
    /// All zeros removes the private key.
    pub private_key: Option<[u8; 32]>,
    pub listen_port: Option<u16>,
    pub fwmark: Option<u32>,
    pub replace_peers: bool,
    pub peers: Vec<PeerSet>,
}

/// Incremental parser for the lines of one set operation (so a huge
/// operation streams in without buffering the text).
#[derive(Default)]
pub struct SetParser {
    // owner: fill in
}

impl SetParser {
    pub fn new() -> Self {
        todo!()
    }
    /// Feeds one `key=value` line (without the newline). Unknown keys,
    /// malformed values, device keys after a peer section, and peer keys
    /// before any `public_key=` are EINVAL; `protocol_version` other than 1
    /// is EPROTO. Hex keys are 64 lowercase or uppercase hex digits.
    pub fn feed(&mut self, line: &str) -> Result<(), UapiError> {
        let _ = line;
        todo!()
    }
    /// Ends the operation (the empty line).
    pub fn finish(self) -> DeviceSet {
        todo!()
    }
}

/// Device state for a get reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    pub private_key: Option<[u8; 32]>,
    pub listen_port: u16,
    pub fwmark: u32,
}

/// One peer's state for a get reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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

/// Appends the device lines of a get reply (wireguard-go's order:
/// private_key (if set), listen_port, fwmark (if non-zero)).
pub fn format_device(dev: &DeviceInfo, out: &mut String) {
    let _ = (dev, out);
    todo!()
}

/// Appends one peer's lines of a get reply, in wireguard-go's order:
/// public_key, preshared_key (only if non-zero), protocol_version=1,
/// endpoint (if any; `[v6]:port`), last_handshake_time_sec,
/// last_handshake_time_nsec, tx_bytes, rx_bytes,
/// persistent_keepalive_interval, allowed_ip (each).
pub fn format_peer(peer: &PeerInfo, out: &mut String) {
    let _ = (peer, out);
    todo!()
}
