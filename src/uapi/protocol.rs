//! UAPI text protocol: `get=1\n\n` and `set=1\n` + `key=value` lines + `\n`.
//! Replies end with `errno=N\n\n`. Pure functions: text in, typed value or
//! error (with the errno to answer) out.
//!
//! Behaviour follows wireguard-go's device/uapi.go: a line without `=` is
//! EPROTO, every unknown key or malformed value is EINVAL, flag keys accept
//! only `true`, numbers are plain decimal. Two deliberate differences: a
//! `protocol_version` other than 1 is EPROTO (as the cross-platform spec
//! says; wireguard-go answers EINVAL), and IPv6 zone ids (`%eth0`) are
//! rejected in endpoints and allowed IPs. Error messages never carry key
//! material.
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

// The values a set operation parses into and a get reply formats are the
// device's own configuration types; this module only translates text.
pub use crate::device::config::{
    AllowedIpChange, DeviceInfo, DeviceSet, PeerInfo, PeerSet, SetError, SetErrorKind,
};

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

impl From<SetError> for UapiError {
    fn from(e: SetError) -> UapiError {
        let errno = match e.kind {
            SetErrorKind::Invalid => EINVAL,
            SetErrorKind::AddrInUse => EADDRINUSE,
            SetErrorKind::Io => EIO,
        };
        UapiError {
            errno,
            message: e.message,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Get,
    Set,
}

/// Parses the first line of an operation (`get=1` or `set=1`), with or
/// without its newline. Anything else is EINVAL (wireguard-go closes the
/// connection instead of answering).
pub fn parse_operation(line: &str) -> Result<Operation, UapiError> {
    match line.strip_suffix('\n').unwrap_or(line) {
        "get=1" => Ok(Operation::Get),
        "set=1" => Ok(Operation::Set),
        _ => Err(invalid("invalid UAPI operation")),
    }
}

fn invalid(message: impl Into<String>) -> UapiError {
    UapiError {
        errno: EINVAL,
        message: message.into(),
    }
}

fn proto(message: impl Into<String>) -> UapiError {
    UapiError {
        errno: EPROTO,
        message: message.into(),
    }
}

/// Incremental parser for the lines of one set operation (so a huge
/// operation streams in without buffering the text).
///
/// It records what was asked, in order; applying it (creating peers,
/// `update_only`, ignoring what follows `remove=true` in a section, skipping
/// the device's own public key) is the caller's job. After an error every
/// further `feed` returns that error again, so a caller may keep feeding
/// until the terminating empty line and answer once.
#[derive(Default)]
pub struct SetParser {
    set: DeviceSet,
    /// The section being filled; `None` while still on device keys.
    peer: Option<PeerSet>,
    failed: Option<UapiError>,
}

impl SetParser {
    pub fn new() -> Self {
        Self::default()
    }
    /// Feeds one `key=value` line (without the newline). Unknown keys,
    /// malformed values, device keys after a peer section, and peer keys
    /// before any `public_key=` are EINVAL; `protocol_version` other than 1
    /// is EPROTO; a line without `=` is EPROTO. Hex keys are 64 lowercase or
    /// uppercase hex digits.
    pub fn feed(&mut self, line: &str) -> Result<(), UapiError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.feed_line(line.strip_suffix('\n').unwrap_or(line));
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn feed_line(&mut self, line: &str) -> Result<(), UapiError> {
        let Some((key, value)) = line.split_once('=') else {
            return Err(proto("failed to parse line: no '='"));
        };
        if key == "public_key" {
            let public_key = parse_key(value).ok_or_else(|| invalid("invalid public_key"))?;
            if let Some(done) = self.peer.take() {
                self.set.peers.push(done);
            }
            self.peer = Some(PeerSet {
                public_key,
                ..PeerSet::default()
            });
            return Ok(());
        }
        match &mut self.peer {
            None => device_line(&mut self.set, key, value),
            Some(peer) => peer_line(peer, key, value),
        }
    }

    /// Ends the operation (the empty line).
    pub fn finish(mut self) -> DeviceSet {
        if let Some(done) = self.peer.take() {
            self.set.peers.push(done);
        }
        self.set
    }
}

fn device_line(set: &mut DeviceSet, key: &str, value: &str) -> Result<(), UapiError> {
    match key {
        "private_key" => {
            set.private_key = Some(parse_key(value).ok_or_else(|| invalid("invalid private_key"))?);
        }
        "listen_port" => {
            let port = parse_decimal(value)
                .and_then(|v| u16::try_from(v).ok())
                .ok_or_else(|| invalid(format!("invalid listen_port: {value:?}")))?;
            set.listen_port = Some(port);
        }
        "fwmark" => {
            let mark = parse_decimal(value)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| invalid(format!("invalid fwmark: {value:?}")))?;
            set.fwmark = Some(mark);
        }
        "replace_peers" => set.replace_peers = parse_true(key, value)?,
        _ => return Err(invalid(format!("invalid UAPI device key: {key:?}"))),
    }
    Ok(())
}

fn peer_line(peer: &mut PeerSet, key: &str, value: &str) -> Result<(), UapiError> {
    match key {
        "update_only" => peer.update_only = parse_true(key, value)?,
        "remove" => peer.remove = parse_true(key, value)?,
        "replace_allowed_ips" => {
            // Ordered against allowed_ip lines: it clears what came before.
            peer.replace_allowed_ips = parse_true(key, value)?;
            peer.allowed_ips.clear();
        }
        "preshared_key" => {
            let psk = parse_key(value).ok_or_else(|| invalid("invalid preshared_key"))?;
            peer.preshared_key = Some(psk);
        }
        "endpoint" => {
            peer.endpoint = Some(
                parse_endpoint(value)
                    .ok_or_else(|| invalid(format!("invalid endpoint: {value:?}")))?,
            );
        }
        "persistent_keepalive_interval" => {
            let secs = parse_decimal(value)
                .and_then(|v| u16::try_from(v).ok())
                .ok_or_else(|| {
                    invalid(format!("invalid persistent_keepalive_interval: {value:?}"))
                })?;
            peer.persistent_keepalive_interval = Some(secs);
        }
        "allowed_ip" => {
            let change = match value.strip_prefix('-') {
                Some(prefix) => parse_prefix(prefix).map(|(a, c)| AllowedIpChange::Remove(a, c)),
                None => parse_prefix(value).map(|(a, c)| AllowedIpChange::Add(a, c)),
            };
            let change = change.ok_or_else(|| invalid(format!("invalid allowed_ip: {value:?}")))?;
            peer.allowed_ips.push(change);
        }
        "protocol_version" => {
            if value != "1" {
                return Err(proto(format!("invalid protocol_version: {value:?}")));
            }
        }
        _ => return Err(invalid(format!("invalid UAPI peer key: {key:?}"))),
    }
    Ok(())
}

/// Flags are set by `true` and nothing else (wireguard-go).
fn parse_true(key: &str, value: &str) -> Result<bool, UapiError> {
    if value == "true" {
        Ok(true)
    } else {
        Err(invalid(format!("invalid value for {key}: {value:?}")))
    }
}

/// Plain decimal digits only: no sign, no spaces, not empty (Go's
/// `strconv.ParseUint(s, 10, n)`; Rust's `from_str` would accept `+1`).
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_key(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(s, &mut key).ok()?;
    Some(key)
}

/// `a.b.c.d:port` or `[v6]:port`; no host names, no zone ids.
fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    if s.contains('%') {
        return None;
    }
    s.parse().ok()
}

/// `addr/cidr` with cidr in range for the family, written without sign or
/// leading zeros (as Go's netip.ParsePrefix). Host bits are kept: the table
/// masks them.
fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = s.split_once('/')?;
    if addr.contains('%') || (bits.len() > 1 && bits.starts_with('0')) {
        return None;
    }
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let cidr = parse_decimal(bits).filter(|&c| c <= max)?;
    Some((addr, cidr as u8))
}

/// Appends the device lines of a get reply, as wireguard-go: private_key
/// (if set and non-zero), listen_port (if non-zero: not bound yet otherwise),
/// fwmark (if non-zero).
pub fn format_device(dev: &DeviceInfo, out: &mut String) {
    if let Some(key) = &dev.private_key {
        if key != &[0u8; 32] {
            push_key(out, "private_key", key);
        }
    }
    if dev.listen_port != 0 {
        let _ = writeln!(out, "listen_port={}", dev.listen_port);
    }
    if dev.fwmark != 0 {
        let _ = writeln!(out, "fwmark={}", dev.fwmark);
    }
}

/// Appends one peer's lines of a get reply, in wireguard-go's order:
/// public_key, preshared_key (only if non-zero), protocol_version=1,
/// endpoint (if any; `[v6]:port`), last_handshake_time_sec,
/// last_handshake_time_nsec, tx_bytes, rx_bytes,
/// persistent_keepalive_interval, allowed_ip (each).
pub fn format_peer(peer: &PeerInfo, out: &mut String) {
    push_key(out, "public_key", &peer.public_key);
    if peer.preshared_key != [0u8; 32] {
        push_key(out, "preshared_key", &peer.preshared_key);
    }
    out.push_str("protocol_version=1\n");
    if let Some(ep) = &peer.endpoint {
        // SocketAddr's Display brackets IPv6 (`[v6]:port`).
        let _ = writeln!(out, "endpoint={ep}");
    }
    let _ = writeln!(
        out,
        "last_handshake_time_sec={}\nlast_handshake_time_nsec={}\ntx_bytes={}\nrx_bytes={}\npersistent_keepalive_interval={}",
        peer.last_handshake_time_sec,
        peer.last_handshake_time_nsec,
        peer.tx_bytes,
        peer.rx_bytes,
        peer.persistent_keepalive_interval,
    );
    for (addr, cidr) in &peer.allowed_ips {
        let _ = writeln!(out, "allowed_ip={addr}/{cidr}");
    }
}

fn push_key(out: &mut String, name: &str, key: &[u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(name.len() + 66);
    out.push_str(name);
    out.push('=');
    for b in key {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out.push('\n');
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
