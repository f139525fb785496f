//! Noise_IKpsk2 handshake: creating and consuming initiations and responses.
//!
//! MAC1/MAC2 are not written here: see [`super::cookie::CookieGenerator::add_macs`].
use super::keys::{PublicKey, StaticSecretKey};
use super::tai64n::Tai64n;
use rand_core::CryptoRngCore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("public key is of low order")]
    LowOrderKey,
    #[error("decryption failed")]
    DecryptFailed,
    #[error("unknown peer")]
    UnknownPeer,
    #[error("wrong receiver index")]
    WrongIndex,
}

/// The device's own static identity (shared by all peers).
pub struct Identity {
    // owner: fill in (secret, public, precomputed hashes)
}

impl Identity {
    pub fn new(secret: StaticSecretKey) -> Self {
        let _ = secret;
        todo!()
    }
    pub fn public_key(&self) -> &PublicKey {
        todo!()
    }
    pub fn secret(&self) -> &StaticSecretKey {
        todo!()
    }
}

/// Per-peer precomputed handshake material.
pub struct PeerKeys {
    // owner: remote static, psk, DH(s_local, S_remote)
}

impl PeerKeys {
    /// Fails with LowOrderKey when DH(local, remote) is all zeros.
    pub fn new(identity: &Identity, remote: PublicKey, psk: [u8; 32]) -> Result<Self, HandshakeError> {
        let _ = (identity, remote, psk);
        todo!()
    }
    pub fn remote_static(&self) -> &PublicKey {
        todo!()
    }
    pub fn preshared_key(&self) -> &[u8; 32] {
        todo!()
    }
    pub fn set_preshared_key(&mut self, psk: [u8; 32]) {
        let _ = psk;
        todo!()
    }
}

/// Initiator state kept between sending an initiation and its response.
pub struct InitiatorState {
    // owner: ck, h, ephemeral secret, local index
}

impl InitiatorState {
    pub fn local_index(&self) -> u32 {
        todo!()
    }
}

/// Result of consuming an initiation, before the peer's own checks
/// (timestamp replay, flood) and before the response is created.
pub struct ConsumedInitiation {
    pub remote_static: PublicKey,
    pub sender_index: u32,
    pub timestamp: Tai64n,
    // owner: ck, h, remote ephemeral
}

/// Transport keys derived by a completed handshake. Zeroed on drop.
pub struct SessionKeys {
    pub send: [u8; 32],
    pub recv: [u8; 32],
    pub local_index: u32,
    pub remote_index: u32,
    pub is_initiator: bool,
}

/// Builds an initiation (mac1/mac2 left zero).
pub fn create_initiation(
    identity: &Identity,
    peer: &PeerKeys,
    local_index: u32,
    timestamp: Tai64n,
    rng: &mut impl CryptoRngCore,
) -> Result<(InitiatorState, [u8; 148]), HandshakeError> {
    let _ = (identity, peer, local_index, timestamp, rng);
    todo!()
}

/// Decrypts an initiation's static key, looks the peer up by it, and decrypts
/// the timestamp. MAC1 must have been checked by the caller.
pub fn consume_initiation<'a>(
    identity: &Identity,
    msg: &[u8; 148],
    lookup: impl FnOnce(&PublicKey) -> Option<&'a PeerKeys>,
) -> Result<ConsumedInitiation, HandshakeError> {
    let _ = (identity, msg, lookup);
    todo!()
}

/// Builds the response to a consumed initiation (mac1/mac2 left zero) and the
/// responder's transport keys.
pub fn create_response(
    peer: &PeerKeys,
    init: &ConsumedInitiation,
    local_index: u32,
    rng: &mut impl CryptoRngCore,
) -> Result<([u8; 92], SessionKeys), HandshakeError> {
    let _ = (peer, init, local_index, rng);
    todo!()
}

/// Consumes a response to our initiation; yields the initiator's transport keys.
pub fn consume_response(
    identity: &Identity,
    peer: &PeerKeys,
    state: &InitiatorState,
    msg: &[u8; 92],
) -> Result<SessionKeys, HandshakeError> {
    let _ = (identity, peer, state, msg);
    todo!()
}
