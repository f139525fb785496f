//! What the fuzz targets share: fixed identities, a deterministic random
//! source, and helpers that build well-formed handshake messages (with a
//! valid MAC1) so that mutations get past the MAC into the handshake code.
use phantommesh::noise::cookie::CookieGenerator;
use phantommesh::noise::handshake::{Identity, PeerKeys};
use phantommesh::noise::keys::{PublicKey, StaticSecretKey};
use rand_core::{CryptoRng, RngCore};
use std::time::Instant;

/// The responder ("device") and initiator ("peer") of every harness.
pub const RESPONDER_SECRET: [u8; 32] = [0x11; 32];
pub const INITIATOR_SECRET: [u8; 32] = [0x22; 32];
/// A preshared key used where a target wants one.
pub const PSK: [u8; 32] = [0x33; 32];

pub fn identity(secret: [u8; 32]) -> Identity {
    Identity::new(StaticSecretKey::from(secret))
}

pub fn public(secret: [u8; 32]) -> PublicKey {
    PublicKey::from(&StaticSecretKey::from(secret))
}

/// `local`'s handshake material for a peer whose secret is `remote`.
pub fn peer_keys(local: &Identity, remote: [u8; 32], psk: [u8; 32]) -> PeerKeys {
    PeerKeys::new(local, public(remote), psk).expect("fixed keys are not of low order")
}

/// Writes MAC1 (and a zero MAC2) into `msg` as a sender to `to` would, so
/// that the receiver's MAC1 check passes whatever else `msg` holds.
pub fn add_mac1(msg: &mut [u8], to: &PublicKey) {
    CookieGenerator::new(to).add_macs(msg, Instant::now());
}

/// A deterministic "random" source (splitmix64), seeded from the input, so
/// that a crash reproduces from its input alone. Not for real keys.
pub struct FuzzRng(pub u64);

impl RngCore for FuzzRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

// The handshake asks for a CryptoRng; the harness's determinism is the point.
impl CryptoRng for FuzzRng {}

/// Lines of `data` as text (lossy), for the text-protocol targets.
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}
