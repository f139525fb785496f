//! The WireGuard protocol core: sans-IO.
//!
//! Nothing in this module reads a clock, touches a socket or a TUN device.
//! Callers pass `now: Instant` (a virtual clock in tests), wall-clock
//! timestamps where the protocol needs them (TAI64N), and a random source.
//! Functions return bytes to send and state changes; the `device` layer does
//! the I/O.
//!
//! One concept per file, as in the kernel's drivers/net/wireguard:
//! - [`constants`]: whitepaper constants with the whitepaper's names.
//! - [`kdf`]: BLAKE2s hash, HMAC, HKDF (KDF1/2/3) and the keyed MAC.
//! - [`tai64n`]: the timestamp inside initiations.
//! - [`messages`]: wire formats of the four message types.
//! - [`handshake`]: Noise_IKpsk2 initiation and response.
//! - [`cookie`]: MAC1/MAC2, cookie replies (device checker, peer generator).
//! - [`replay`]: the 8192-bit sliding replay window.
//! - [`keypair`]: a transport session: keys, counters, seal/open.
//! - [`timers`]: the per-peer timer state machine.
//! - [`peer`]: one peer's protocol state: handshake + keypairs + timers.

pub mod constants;
pub mod cookie;
pub mod driver;
pub mod handshake;
pub mod kdf;
pub mod keypair;
pub mod messages;
pub mod peer;
pub mod replay;
pub mod tai64n;
pub mod timers;

pub use keys::{PublicKey, StaticSecretKey};

/// Key types shared by the whole crate, and their text form (base64, as
/// `wg` prints keys), so every layer parses keys the one way.
pub mod keys {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    pub use x25519_dalek::{PublicKey, StaticSecret as StaticSecretKey};
    use zeroize::Zeroizing;

    /// Parses a base64 key (surrounding whitespace allowed); None unless
    /// it is exactly 32 bytes.
    pub fn parse_base64_key(s: &str) -> Option<[u8; 32]> {
        let s = s.trim();
        // wg accepts exactly 44 characters ending in '='; the standard
        // engine also rejects non-zero trailing bits, as wg does.
        if s.len() != 44 {
            return None;
        }
        let mut out = Zeroizing::new([0u8; 33]);
        match STANDARD.decode_slice(s, &mut out[..]) {
            Ok(32) => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&out[..32]);
                Some(k)
            }
            _ => None,
        }
    }

    pub fn encode_base64_key(key: &[u8; 32]) -> String {
        STANDARD.encode(key)
    }
}
