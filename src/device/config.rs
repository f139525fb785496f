//! Applying configuration to a running device (UAPI `set`, config files,
//! SIGHUP) and reading it back (UAPI `get`).
//!
//! A set operation is parsed whole before anything is applied, so a
//! malformed request changes nothing. Updating an existing peer keeps its
//! sessions: that is what lets `wg syncconf` and SIGHUP reloads run without
//! dropping traffic.
use super::peer::{Peer, PeerRef};
use super::{Device, Shared};
use crate::noise::cookie::CookieChecker;
use crate::noise::handshake::Identity;
use crate::noise::keys::{PublicKey, StaticSecretKey};
use crate::noise::peer::PeerState;
use rand::RngCore;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use zeroize::Zeroize;

mod types;
pub use types::{
    AllowedIpChange, DeviceInfo, DeviceSet, PeerInfo, PeerSet, SetError, SetErrorKind,
};

fn err(kind: SetErrorKind, message: impl Into<String>) -> SetError {
    SetError::new(kind, message)
}

impl Device {
    /// Applies a parsed set operation.
    pub fn apply(&self, set: &DeviceSet) -> Result<(), SetError> {
        apply(&self.shared, set)
    }
    /// Binds the UDP socket on `port` (0 = any) with `fwmark`; keeps the
    /// old socket on failure.
    pub fn rebind(&self, port: u16, fwmark: u32) -> Result<(), SetError> {
        rebind(&self.shared, port, fwmark)
    }
    /// The device lines of a get reply.
    pub fn info(&self) -> DeviceInfo {
        let st = self.shared.settings.lock();
        DeviceInfo {
            private_key: st.private_key,
            listen_port: st.listen_port,
            fwmark: st.fwmark,
        }
    }
    /// Every configured peer, in the order they were added (self-test
    /// peers excluded).
    pub(super) fn peers(&self) -> Vec<Arc<Peer>> {
        let mut v: Vec<_> = self
            .shared
            .peers
            .read()
            .values()
            .filter(|p| !p.is_hidden())
            .cloned()
            .collect();
        v.sort_by_key(|p| p.id);
        v
    }
    /// The public keys of the configured peers, in the order they were
    /// added (self-test peers excluded).
    pub fn peer_keys(&self) -> Vec<[u8; 32]> {
        self.peers().iter().map(|p| p.public_key).collect()
    }
    /// How many peers are configured (self-test peers excluded).
    pub fn peer_count(&self) -> usize {
        let peers = self.shared.peers.read();
        peers.values().filter(|p| !p.is_hidden()).count()
    }
    /// Every configured peer with its get-reply state, reading the
    /// allowed-IPs table once (not once per peer). The preshared key is
    /// not copied out: `preshared_key` is all zeros (see
    /// [`Device::peer_infos_with_psk`]).
    pub fn peer_infos(&self) -> Vec<PeerInfo> {
        self.peer_infos_inner(false)
    }
    /// As [`Device::peer_infos`], with each preshared key: only for the
    /// UAPI `get`, which must answer it.
    pub fn peer_infos_with_psk(&self) -> Vec<PeerInfo> {
        self.peer_infos_inner(true)
    }
    /// The UDP port in use (0 until bound), without copying the key out.
    pub fn listen_port(&self) -> u16 {
        self.shared.settings.lock().listen_port
    }
    fn peer_infos_inner(&self, with_psk: bool) -> Vec<PeerInfo> {
        let peers = self.peers();
        let mut prefixes: std::collections::HashMap<u64, Vec<(std::net::IpAddr, u8)>> =
            std::collections::HashMap::new();
        for (ip, cidr, p) in self.shared.allowed_ips.read().entries() {
            prefixes.entry(p.0.id).or_default().push((ip, cidr));
        }
        peers
            .into_iter()
            .map(|p| {
                let mut info = peer_state_info(&p, with_psk);
                info.allowed_ips = prefixes.remove(&p.id).unwrap_or_default();
                info
            })
            .collect()
    }
    /// One visible peer's get-reply state.
    pub fn peer_info(&self, public_key: &[u8; 32]) -> Option<PeerInfo> {
        Some(peer_info(&self.shared, &self.visible_peer(public_key)?))
    }
    /// Offloads of the TUN and the UDP socket now in use.
    pub fn offloads(&self) -> Vec<(&'static str, bool)> {
        let mut v = self.shared.tun.features().offloads();
        if let Some(u) = self.shared.current_udp() {
            v.extend(u.offloads());
        }
        v
    }
    pub fn public_key(&self) -> Option<[u8; 32]> {
        self.shared
            .identity
            .read()
            .as_ref()
            .map(|i| *i.public_key().as_bytes())
    }
}

pub fn peer_info(s: &Shared, peer: &Arc<Peer>) -> PeerInfo {
    let mut info = peer_state_info(peer, true);
    info.allowed_ips = s.allowed_ips.read().prefixes_of(&PeerRef(peer.clone()));
    info
}

/// Everything of a peer's get reply but its allowed IPs; the preshared
/// key only when `with_psk` (all zeros otherwise).
fn peer_state_info(peer: &Arc<Peer>, with_psk: bool) -> PeerInfo {
    let (psk, pka, last) = {
        let st = peer.state.lock();
        (
            if with_psk {
                *st.preshared_key()
            } else {
                [0; 32]
            },
            st.persistent_keepalive(),
            st.last_handshake(),
        )
    };
    let (sec, nsec) = last
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0));
    PeerInfo {
        public_key: peer.public_key,
        preshared_key: psk,
        endpoint: peer.endpoint(),
        last_handshake_time_sec: sec,
        last_handshake_time_nsec: nsec,
        tx_bytes: peer.tx_bytes.load(Ordering::Relaxed),
        rx_bytes: peer.rx_bytes.load(Ordering::Relaxed),
        persistent_keepalive_interval: pka,
        allowed_ips: Vec::new(),
    }
}

fn apply(s: &Shared, set: &DeviceSet) -> Result<(), SetError> {
    if let Some(key) = set.private_key {
        set_private_key(s, key);
    }
    if set.listen_port.is_some() || set.fwmark.is_some() {
        let (port, mark) = {
            let st = s.settings.lock();
            (
                set.listen_port.unwrap_or(st.listen_port),
                set.fwmark.unwrap_or(st.fwmark),
            )
        };
        rebind(s, port, mark)?;
    }
    if set.replace_peers {
        replace_peers(s);
    }
    for p in &set.peers {
        apply_peer(s, p)?;
    }
    Ok(())
}

/// Binds the UDP socket on `port` (0 = any). Keeps the old socket on failure.
fn rebind(s: &Shared, port: u16, fwmark: u32) -> Result<(), SetError> {
    {
        let mut st = s.settings.lock();
        let udp = s.current_udp();
        if let Some(u) = udp.filter(|_| port == st.listen_port) {
            // Same port: only the mark may change, on the live socket (a
            // rebind would race the old socket for the port).
            if st.fwmark != fwmark {
                u.set_fwmark(fwmark)
                    .map_err(|e| err(SetErrorKind::Io, e.to_string()))?;
                st.fwmark = fwmark;
            }
            return Ok(());
        }
    }
    let udp = s.bind.open(port, fwmark).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::AddrInUse {
            SetErrorKind::AddrInUse
        } else {
            SetErrorKind::Io
        };
        err(kind, format!("cannot bind UDP port {port}: {e}"))
    })?;
    let actual = udp.port();
    if let Some(old) = s.udp.write().replace(udp) {
        old.close();
    }
    s.udp_generation.fetch_add(1, Ordering::Relaxed);
    s.io_wake.ring();
    let mut st = s.settings.lock();
    st.listen_port = actual;
    st.fwmark = fwmark;
    let offloads: Vec<String> = s
        .current_udp()
        .map(|u| u.offloads())
        .unwrap_or_default()
        .iter()
        .map(|(n, on)| format!("{n}={on}"))
        .collect();
    tracing::info!(port = actual, offloads = %offloads.join(","), "listening for WireGuard on UDP");
    Ok(())
}

fn set_private_key(s: &Shared, key: [u8; 32]) {
    let key = zeroize::Zeroizing::new(key);
    let key = &*key;
    let identity = if *key == [0u8; 32] {
        None
    } else {
        Some(Arc::new(Identity::new(StaticSecretKey::from(*key))))
    };
    {
        let mut st = s.settings.lock();
        if st.private_key == Some(*key) || (st.private_key.is_none() && identity.is_none()) {
            return;
        }
        st.private_key.zeroize();
        st.private_key = identity.as_ref().map(|_| *key);
    }
    // A peer with our own public key would be talking to itself.
    if let Some(id) = &identity {
        remove_peer(s, id.public_key().as_bytes());
    }
    *s.cookie_checker.lock() = identity
        .as_ref()
        .map(|id| CookieChecker::new(id.public_key()));
    *s.identity.write() = identity.clone();
    let peers: Vec<_> = s.peers.read().values().cloned().collect();
    for p in peers {
        let mut st = p.state.lock();
        s.update_locked(&p, &mut st, |st, out| {
            st.set_identity(identity.as_deref(), out)
        });
    }
}

/// Removes every configured peer, with one pass over the routing table.
fn replace_peers(s: &Shared) {
    let removed: Vec<Arc<Peer>> = {
        let mut peers = s.peers.write();
        let keys: Vec<_> = peers
            .values()
            .filter(|p| !p.is_hidden())
            .map(|p| p.public_key)
            .collect();
        keys.iter().filter_map(|k| peers.remove(k)).collect()
    };
    let ids: std::collections::HashSet<u64> = removed.iter().map(|p| p.id).collect();
    for peer in &removed {
        unpin(s, peer);
        let mut st = peer.state.lock();
        s.update_locked(peer, &mut st, PeerState::shutdown);
        drop(st);
        peer.staged.lock().clear();
    }
    s.allowed_ips.write().retain(|p| !ids.contains(&p.0.id));
}

/// A removed peer's endpoint no longer gets its own socket (io::peer_sockets).
fn unpin(s: &Shared, peer: &Peer) {
    if let (Some(udp), Some(dst)) = (s.current_udp(), peer.endpoint()) {
        udp.unpin(dst);
    }
}

fn remove_peer(s: &Shared, key: &[u8; 32]) {
    let Some(peer) = s.peers.write().remove(key) else {
        return;
    };
    unpin(s, &peer);
    {
        let mut st = peer.state.lock();
        peer.removed.store(true, Ordering::Release);
        s.update_locked(&peer, &mut st, PeerState::shutdown);
    }
    s.allowed_ips
        .write()
        .remove_by_value(&PeerRef(peer.clone()));
    peer.staged.lock().clear();
}

impl Device {
    /// Adds a peer that UAPI clients and metrics never see (the admin
    /// plane's self test), hidden from the moment it exists.
    pub fn add_hidden_peer(&self, set: &PeerSet) -> Result<(), SetError> {
        apply_peer_as(&self.shared, set, true)
    }
}

fn apply_peer(s: &Shared, p: &PeerSet) -> Result<(), SetError> {
    apply_peer_as(s, p, false)
}

fn apply_peer_as(s: &Shared, p: &PeerSet, hidden: bool) -> Result<(), SetError> {
    let own = s
        .identity
        .read()
        .as_ref()
        .map(|i| *i.public_key().as_bytes());
    if own == Some(p.public_key) {
        // wireguard-go ignores a peer section naming the device itself.
        return Ok(());
    }
    if p.remove {
        remove_peer(s, &p.public_key);
        return Ok(());
    }
    let existing = s.peers.read().get(&p.public_key).cloned();
    let peer = match existing {
        Some(peer) => peer,
        None if p.update_only => return Ok(()),
        None => {
            let identity = s.identity.read().clone();
            let state = PeerState::new(
                identity.as_deref(),
                PublicKey::from(p.public_key),
                [0u8; 32],
                rand::rngs::OsRng.next_u64(),
            );
            let peer = Arc::new(Peer::new(
                s.new_peer_id(),
                p.public_key,
                state,
                s.staged_budget.clone(),
            ));
            peer.hidden
                .store(hidden, std::sync::atomic::Ordering::Relaxed);
            s.peers.write().insert(p.public_key, peer.clone());
            peer
        }
    };
    if let Some(psk) = p.preshared_key {
        peer.state.lock().set_preshared_key(psk);
    }
    if let Some(ep) = p.endpoint {
        peer.set_endpoint(ep);
    }
    {
        let mut table = s.allowed_ips.write();
        let me = PeerRef(peer.clone());
        if p.replace_allowed_ips {
            table.remove_by_value(&me);
        }
        for change in &p.allowed_ips {
            match *change {
                AllowedIpChange::Add(ip, cidr) => {
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    if cidr > max {
                        return Err(err(
                            SetErrorKind::Invalid,
                            format!("invalid prefix length /{cidr}"),
                        ));
                    }
                    table.insert(ip, cidr, me.clone());
                }
                AllowedIpChange::Remove(ip, cidr) => {
                    table.remove(ip, cidr, &me);
                }
            }
        }
    }
    if let Some(secs) = p.persistent_keepalive_interval {
        s.with_peer(&peer, |st, env, out| {
            st.set_persistent_keepalive(env, secs, out)
        });
        if s.identity.read().is_none() {
            peer.state.lock().timers.persistent_keepalive_interval = secs;
        }
    }
    Ok(())
}
