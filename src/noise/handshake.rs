//! Noise_IKpsk2 handshake: creating and consuming initiations and responses.
//!
//! MAC1/MAC2 are not written here: see [`super::cookie::CookieGenerator::add_macs`].
use super::constants::{
    CONSTRUCTION, IDENTIFIER, INITIATION_LEN, MESSAGE_INITIATION, MESSAGE_RESPONSE, RESPONSE_LEN,
};
use super::kdf::{hash, kdf1, kdf2, kdf3};
use super::keys::{PublicKey, StaticSecretKey};
use super::tai64n::Tai64n;
use rand_core::CryptoRngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use std::fmt;
use x25519_dalek::SharedSecret;
use zeroize::{Zeroize, Zeroizing};

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
    secret: StaticSecretKey,
    public: PublicKey,
    /// HASH(CONSTRUCTION): every handshake's first chaining key.
    initial_ck: [u8; 32],
    /// HASH(HASH(ck || IDENTIFIER) || own public): a responder's first hash.
    responder_h: [u8; 32],
    /// HASH(ck || IDENTIFIER), mixed with a peer's key for initiations to it.
    identifier_h: [u8; 32],
}

impl Identity {
    pub fn new(secret: StaticSecretKey) -> Self {
        let public = PublicKey::from(&secret);
        let initial_ck = hash(&[CONSTRUCTION]);
        let identifier_h = hash(&[&initial_ck, IDENTIFIER]);
        let responder_h = hash(&[&identifier_h, public.as_bytes()]);
        Identity {
            secret,
            public,
            initial_ck,
            responder_h,
            identifier_h,
        }
    }
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
    pub fn secret(&self) -> &StaticSecretKey {
        &self.secret
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &hex::encode(self.public.as_bytes()))
            .finish_non_exhaustive()
    }
}

/// Per-peer precomputed handshake material.
pub struct PeerKeys {
    remote: PublicKey,
    psk: [u8; 32],
    /// DH(own static, remote static), the same for every handshake.
    static_static: [u8; 32],
    /// HASH(HASH(ck || IDENTIFIER) || remote static): an initiator's first hash.
    initiator_h: [u8; 32],
}

impl PeerKeys {
    /// Fails with LowOrderKey when DH(local, remote) is all zeros.
    pub fn new(
        identity: &Identity,
        remote: PublicKey,
        psk: [u8; 32],
    ) -> Result<Self, HandshakeError> {
        let ss = dh(&identity.secret, &remote)?;
        Ok(PeerKeys {
            remote,
            psk,
            static_static: ss.to_bytes(),
            initiator_h: hash(&[&identity.identifier_h, remote.as_bytes()]),
        })
    }
    pub fn remote_static(&self) -> &PublicKey {
        &self.remote
    }
    pub fn preshared_key(&self) -> &[u8; 32] {
        &self.psk
    }
    pub fn set_preshared_key(&mut self, psk: [u8; 32]) {
        self.psk.zeroize();
        self.psk = psk;
    }
}

impl Drop for PeerKeys {
    fn drop(&mut self) {
        self.psk.zeroize();
        self.static_static.zeroize();
    }
}

impl fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerKeys")
            .field("remote", &hex::encode(self.remote.as_bytes()))
            .finish_non_exhaustive()
    }
}

/// Initiator state kept between sending an initiation and its response.
pub struct InitiatorState {
    ck: [u8; 32],
    h: [u8; 32],
    ephemeral: StaticSecretKey,
    local_index: u32,
}

impl InitiatorState {
    pub fn local_index(&self) -> u32 {
        self.local_index
    }
}

impl Drop for InitiatorState {
    fn drop(&mut self) {
        self.ck.zeroize();
        self.h.zeroize();
        // The ephemeral StaticSecret zeroizes itself.
    }
}

impl fmt::Debug for InitiatorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitiatorState")
            .field("local_index", &self.local_index)
            .finish_non_exhaustive()
    }
}

/// Result of consuming an initiation, before the peer's own checks
/// (timestamp replay, flood) and before the response is created.
pub struct ConsumedInitiation {
    pub remote_static: PublicKey,
    pub sender_index: u32,
    pub timestamp: Tai64n,
    ck: [u8; 32],
    h: [u8; 32],
    remote_ephemeral: PublicKey,
}

impl Drop for ConsumedInitiation {
    fn drop(&mut self) {
        self.ck.zeroize();
        self.h.zeroize();
    }
}

impl fmt::Debug for ConsumedInitiation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumedInitiation")
            .field("remote_static", &hex::encode(self.remote_static.as_bytes()))
            .field("sender_index", &self.sender_index)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

/// Transport keys derived by a completed handshake. Zeroed on drop.
pub struct SessionKeys {
    pub send: [u8; 32],
    pub recv: [u8; 32],
    pub local_index: u32,
    pub remote_index: u32,
    pub is_initiator: bool,
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.send.zeroize();
        self.recv.zeroize();
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("is_initiator", &self.is_initiator)
            .finish_non_exhaustive()
    }
}

/// X25519, refusing an all-zero result: the other key is of small order, and
/// the "shared" secret would be known to everyone.
fn dh(secret: &StaticSecretKey, public: &PublicKey) -> Result<SharedSecret, HandshakeError> {
    let shared = secret.diffie_hellman(public);
    if shared.was_contributory() {
        Ok(shared)
    } else {
        Err(HandshakeError::LowOrderKey)
    }
}

fn ephemeral(rng: &mut impl CryptoRngCore) -> StaticSecretKey {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let secret = StaticSecretKey::from(bytes);
    bytes.zeroize();
    secret
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("ChaCha20 key is 32 bytes"))
}

/// AEAD(key, 0, plaintext, ad) into `out` (plaintext length + 16). Every
/// handshake key is used exactly once, so the nonce is always zero.
fn seal(key: &[u8; 32], ad: &[u8], plaintext: &[u8], out: &mut [u8]) {
    let (body, tag_out) = out.split_at_mut(plaintext.len());
    body.copy_from_slice(plaintext);
    let tag = aead_key(key)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(ad), body)
        .expect("ChaCha20-Poly1305 seal of a short handshake field");
    tag_out.copy_from_slice(tag.as_ref());
}

/// Inverse of [`seal`]: `ciphertext` is at most 48 bytes (a static key and tag).
fn open(
    key: &[u8; 32],
    ad: &[u8],
    ciphertext: &[u8],
    out: &mut [u8],
) -> Result<(), HandshakeError> {
    let mut buf = [0u8; 48];
    let buf = &mut buf[..ciphertext.len()];
    buf.copy_from_slice(ciphertext);
    let res =
        aead_key(key).open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(ad), buf);
    let ok = match res {
        Ok(plain) => {
            out.copy_from_slice(plain);
            Ok(())
        }
        Err(_) => Err(HandshakeError::DecryptFailed),
    };
    buf.zeroize();
    ok
}

fn mix_hash(h: &mut [u8; 32], data: &[u8]) {
    *h = hash(&[h.as_slice(), data]);
}

/// (ck, k) = KDF2(ck, input): returns the one-time AEAD key.
fn mix_key(ck: &mut [u8; 32], input: &[u8]) -> Zeroizing<[u8; 32]> {
    let (next, k) = kdf2(ck, input);
    *ck = next;
    Zeroizing::new(k)
}

/// (ck, tau, k) = KDF3(ck, psk); h = HASH(h || tau): returns k.
fn mix_psk(ck: &mut [u8; 32], h: &mut [u8; 32], psk: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let (next, mut tau, k) = kdf3(ck, psk);
    *ck = next;
    mix_hash(h, &tau);
    tau.zeroize();
    Zeroizing::new(k)
}

/// Builds an initiation (mac1/mac2 left zero).
pub fn create_initiation(
    identity: &Identity,
    peer: &PeerKeys,
    local_index: u32,
    timestamp: Tai64n,
    rng: &mut impl CryptoRngCore,
) -> Result<(InitiatorState, [u8; 148]), HandshakeError> {
    let mut msg = [0u8; INITIATION_LEN];
    msg[0..4].copy_from_slice(&MESSAGE_INITIATION.to_le_bytes());
    msg[4..8].copy_from_slice(&local_index.to_le_bytes());

    let mut ck = Zeroizing::new(identity.initial_ck);
    let mut h = Zeroizing::new(peer.initiator_h);

    let e = ephemeral(rng);
    let e_pub = PublicKey::from(&e);
    msg[8..40].copy_from_slice(e_pub.as_bytes());
    *ck = kdf1(&ck, e_pub.as_bytes());
    mix_hash(&mut h, e_pub.as_bytes());

    let k = mix_key(&mut ck, dh(&e, &peer.remote)?.as_bytes());
    seal(&k, &h[..], identity.public.as_bytes(), &mut msg[40..88]);
    mix_hash(&mut h, &msg[40..88]);

    let k = mix_key(&mut ck, &peer.static_static);
    seal(&k, &h[..], &timestamp.0, &mut msg[88..116]);
    mix_hash(&mut h, &msg[88..116]);

    Ok((
        InitiatorState {
            ck: *ck,
            h: *h,
            ephemeral: e,
            local_index,
        },
        msg,
    ))
}

/// Decrypts an initiation's static key, looks the peer up by it, and decrypts
/// the timestamp. MAC1 must have been checked by the caller.
pub fn consume_initiation<'a>(
    identity: &Identity,
    msg: &[u8; 148],
    lookup: impl FnOnce(&PublicKey) -> Option<&'a PeerKeys>,
) -> Result<ConsumedInitiation, HandshakeError> {
    let sender_index = u32::from_le_bytes(msg[4..8].try_into().expect("4 bytes"));
    let mut ck = Zeroizing::new(identity.initial_ck);
    let mut h = Zeroizing::new(identity.responder_h);

    let e_bytes: [u8; 32] = msg[8..40].try_into().expect("32 bytes");
    let remote_ephemeral = PublicKey::from(e_bytes);
    *ck = kdf1(&ck, &e_bytes);
    mix_hash(&mut h, &e_bytes);

    let k = mix_key(&mut ck, dh(&identity.secret, &remote_ephemeral)?.as_bytes());
    let mut static_bytes = [0u8; 32];
    open(&k, &h[..], &msg[40..88], &mut static_bytes)?;
    mix_hash(&mut h, &msg[40..88]);
    let remote_static = PublicKey::from(static_bytes);

    let peer = lookup(&remote_static).ok_or(HandshakeError::UnknownPeer)?;
    if peer.remote.as_bytes() != remote_static.as_bytes() {
        return Err(HandshakeError::UnknownPeer);
    }

    let k = mix_key(&mut ck, &peer.static_static);
    let mut timestamp = Tai64n::default();
    open(&k, &h[..], &msg[88..116], &mut timestamp.0)?;
    mix_hash(&mut h, &msg[88..116]);

    Ok(ConsumedInitiation {
        remote_static,
        sender_index,
        timestamp,
        ck: *ck,
        h: *h,
        remote_ephemeral,
    })
}

/// Builds the response to a consumed initiation (mac1/mac2 left zero) and the
/// responder's transport keys.
pub fn create_response(
    peer: &PeerKeys,
    init: &ConsumedInitiation,
    local_index: u32,
    rng: &mut impl CryptoRngCore,
) -> Result<([u8; 92], SessionKeys), HandshakeError> {
    if peer.remote.as_bytes() != init.remote_static.as_bytes() {
        return Err(HandshakeError::UnknownPeer);
    }
    let mut msg = [0u8; RESPONSE_LEN];
    msg[0..4].copy_from_slice(&MESSAGE_RESPONSE.to_le_bytes());
    msg[4..8].copy_from_slice(&local_index.to_le_bytes());
    msg[8..12].copy_from_slice(&init.sender_index.to_le_bytes());

    let mut ck = Zeroizing::new(init.ck);
    let mut h = Zeroizing::new(init.h);

    let e = ephemeral(rng);
    let e_pub = PublicKey::from(&e);
    msg[12..44].copy_from_slice(e_pub.as_bytes());
    *ck = kdf1(&ck, e_pub.as_bytes());
    mix_hash(&mut h, e_pub.as_bytes());

    *ck = kdf1(&ck, dh(&e, &init.remote_ephemeral)?.as_bytes());
    *ck = kdf1(&ck, dh(&e, &init.remote_static)?.as_bytes());

    let k = mix_psk(&mut ck, &mut h, &peer.psk);
    seal(&k, &h[..], &[], &mut msg[44..60]);

    let (initiator_send, responder_send) = kdf2(&ck, &[]);
    let keys = SessionKeys {
        send: responder_send,
        recv: initiator_send,
        local_index,
        remote_index: init.sender_index,
        is_initiator: false,
    };
    Ok((msg, keys))
}

/// Consumes a response to our initiation; yields the initiator's transport keys.
pub fn consume_response(
    identity: &Identity,
    peer: &PeerKeys,
    state: &InitiatorState,
    msg: &[u8; 92],
) -> Result<SessionKeys, HandshakeError> {
    let receiver = u32::from_le_bytes(msg[8..12].try_into().expect("4 bytes"));
    if receiver != state.local_index {
        return Err(HandshakeError::WrongIndex);
    }
    let remote_index = u32::from_le_bytes(msg[4..8].try_into().expect("4 bytes"));

    let mut ck = Zeroizing::new(state.ck);
    let mut h = Zeroizing::new(state.h);

    let e_bytes: [u8; 32] = msg[12..44].try_into().expect("32 bytes");
    let remote_ephemeral = PublicKey::from(e_bytes);
    *ck = kdf1(&ck, &e_bytes);
    mix_hash(&mut h, &e_bytes);

    *ck = kdf1(&ck, dh(&state.ephemeral, &remote_ephemeral)?.as_bytes());
    *ck = kdf1(&ck, dh(&identity.secret, &remote_ephemeral)?.as_bytes());

    let k = mix_psk(&mut ck, &mut h, &peer.psk);
    open(&k, &h[..], &msg[44..60], &mut [])?;

    let (initiator_send, responder_send) = kdf2(&ck, &[]);
    Ok(SessionKeys {
        send: initiator_send,
        recv: responder_send,
        local_index: state.local_index,
        remote_index,
        is_initiator: true,
    })
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "interop_tests.rs"]
mod interop_tests;
