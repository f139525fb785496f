//! MAC1/MAC2 and cookie replies (whitepaper section 5.4.7, kernel cookie.c).
use super::constants::{
    COOKIE_REPLY_LEN, COOKIE_SECRET_MAX_AGE, COOKIE_VALIDITY, LABEL_COOKIE, LABEL_MAC1,
    MESSAGE_COOKIE_REPLY,
};
use super::kdf::{hash, mac};
use super::keys::PublicKey;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand_core::CryptoRngCore;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// MAC1 and MAC2 are the last 32 bytes of a handshake message.
const MACS_LEN: usize = 32;
const MAC_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("no handshake message awaits a cookie")]
    Unexpected,
    #[error("cookie reply failed to decrypt")]
    DecryptFailed,
}

/// Device side: validates MAC1/MAC2 of incoming handshake messages and makes
/// cookie replies. The cookie secret rotates every COOKIE_SECRET_MAX_AGE.
pub struct CookieChecker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    secret: [u8; 32],
    /// None until first needed: `new` has no clock and no random source.
    secret_born: Option<Instant>,
}

impl CookieChecker {
    /// `own` is the device's static public key.
    pub fn new(own: &PublicKey) -> Self {
        CookieChecker {
            mac1_key: hash(&[LABEL_MAC1, own.as_bytes()]),
            cookie_key: hash(&[LABEL_COOKIE, own.as_bytes()]),
            secret: [0; 32],
            secret_born: None,
        }
    }
    /// MAC1 over an initiation or response (whole message, any of the two lengths).
    pub fn check_mac1(&self, msg: &[u8]) -> bool {
        let Some(mac1_at) = msg.len().checked_sub(MACS_LEN) else {
            return false;
        };
        let want = mac(&self.mac1_key, &[&msg[..mac1_at]]);
        bool::from(want.ct_eq(&msg[mac1_at..mac1_at + MAC_LEN]))
    }
    /// MAC2 = MAC(cookie for `src`, msg up to mac2). Rotates the secret if stale.
    pub fn check_mac2(
        &mut self,
        msg: &[u8],
        src: SocketAddr,
        now: Instant,
        rng: &mut impl CryptoRngCore,
    ) -> bool {
        if msg.len() < MACS_LEN {
            return false;
        }
        let mac2_at = msg.len() - MAC_LEN;
        let mut cookie = self.cookie(src, now, rng);
        let want = mac(&cookie, &[&msg[..mac2_at]]);
        cookie.zeroize();
        bool::from(want.ct_eq(&msg[mac2_at..]))
    }
    /// Cookie reply to `msg` (an initiation or response) from `src`.
    ///
    /// `msg` should have passed MAC1 (so it is a full handshake message); a
    /// shorter buffer yields a reply nobody can decrypt rather than a panic.
    pub fn create_reply(
        &mut self,
        msg: &[u8],
        src: SocketAddr,
        now: Instant,
        rng: &mut impl CryptoRngCore,
    ) -> [u8; 64] {
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        reply[0..4].copy_from_slice(&MESSAGE_COOKIE_REPLY.to_le_bytes());
        // The reply is addressed by the sender index of the message it answers.
        if let Some(sender) = msg.get(4..8) {
            reply[4..8].copy_from_slice(sender);
        }
        let mac1 = match msg.len().checked_sub(MACS_LEN) {
            Some(at) => &msg[at..at + MAC_LEN],
            None => &[0u8; MAC_LEN][..],
        };
        rng.fill_bytes(&mut reply[8..32]);

        let cookie = self.cookie(src, now, rng);
        let (head, sealed) = reply.split_at_mut(32);
        let nonce = XNonce::from_slice(&head[8..32]);
        let (body, tag_out) = sealed.split_at_mut(MAC_LEN);
        body.copy_from_slice(&cookie);
        let tag = XChaCha20Poly1305::new((&self.cookie_key).into())
            .encrypt_in_place_detached(nonce, mac1, body)
            .expect("XChaCha20-Poly1305 of 16 bytes");
        tag_out.copy_from_slice(&tag);
        reply
    }

    /// The cookie a source must hold: MAC(secret, source address bytes ||
    /// source port), as the kernel computes it (address 4 or 16 bytes in
    /// network order, then the port big-endian).
    ///
    /// The layout only has to be stable within this checker: peers treat the
    /// cookie as an opaque MAC key. An IPv4-mapped IPv6 source (dual-stack
    /// socket) counts as the IPv4 address, so both sockets agree.
    fn cookie(&mut self, src: SocketAddr, now: Instant, rng: &mut impl CryptoRngCore) -> [u8; 16] {
        let stale = self
            .secret_born
            .is_none_or(|born| now.saturating_duration_since(born) >= COOKIE_SECRET_MAX_AGE);
        if stale {
            rng.fill_bytes(&mut self.secret);
            self.secret_born = Some(now);
        }
        let port = src.port().to_be_bytes();
        match src.ip().to_canonical() {
            IpAddr::V4(ip) => mac(&self.secret, &[&ip.octets(), &port]),
            IpAddr::V6(ip) => mac(&self.secret, &[&ip.octets(), &port]),
        }
    }
}

impl Drop for CookieChecker {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// Peer side: writes MAC1/MAC2 into outgoing handshake messages and keeps the
/// last cookie received from this peer.
pub struct CookieGenerator {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    /// The peer's cookie and when we received it.
    cookie: Option<([u8; 16], Instant)>,
    /// MAC1 of the last message sent, until a cookie reply to it arrives.
    last_mac1: Option<[u8; 16]>,
}

impl CookieGenerator {
    /// `remote` is the peer's static public key.
    pub fn new(remote: &PublicKey) -> Self {
        CookieGenerator {
            mac1_key: hash(&[LABEL_MAC1, remote.as_bytes()]),
            cookie_key: hash(&[LABEL_COOKIE, remote.as_bytes()]),
            cookie: None,
            last_mac1: None,
        }
    }
    /// Writes MAC1, and MAC2 when a cookie younger than COOKIE_VALIDITY is held
    /// (zeros otherwise); remembers MAC1 for a cookie reply's AD.
    ///
    /// `msg` is a whole initiation or response; a buffer shorter than the two
    /// MACs is left untouched.
    pub fn add_macs(&mut self, msg: &mut [u8], now: Instant) {
        let Some(mac1_at) = msg.len().checked_sub(MACS_LEN) else {
            return;
        };
        let mac2_at = mac1_at + MAC_LEN;
        let mac1 = mac(&self.mac1_key, &[&msg[..mac1_at]]);
        msg[mac1_at..mac2_at].copy_from_slice(&mac1);
        self.last_mac1 = Some(mac1);

        let mac2 = match &self.cookie {
            Some((cookie, born)) if now.saturating_duration_since(*born) < COOKIE_VALIDITY => {
                mac(cookie, &[&msg[..mac2_at]])
            }
            _ => [0; MAC_LEN],
        };
        msg[mac2_at..].copy_from_slice(&mac2);
    }
    /// Consumes a cookie reply to the last message we sent.
    pub fn consume_reply(&mut self, msg: &[u8; 64], now: Instant) -> Result<(), CookieError> {
        let Some(mac1) = self.last_mac1 else {
            return Err(CookieError::Unexpected);
        };
        let nonce = XNonce::from_slice(&msg[8..32]);
        let mut cookie = [0u8; MAC_LEN];
        cookie.copy_from_slice(&msg[32..48]);
        let tag = Tag::from_slice(&msg[48..64]);
        if XChaCha20Poly1305::new((&self.cookie_key).into())
            .decrypt_in_place_detached(nonce, &mac1, &mut cookie, tag)
            .is_err()
        {
            cookie.zeroize();
            return Err(CookieError::DecryptFailed);
        }
        if let Some((old, _)) = &mut self.cookie {
            old.zeroize();
        }
        self.cookie = Some((cookie, now));
        // One reply per message sent: a replayed reply is not consumed twice.
        self.last_mac1 = None;
        Ok(())
    }
}

impl Drop for CookieGenerator {
    fn drop(&mut self) {
        if let Some((cookie, _)) = &mut self.cookie {
            cookie.zeroize();
        }
    }
}

#[cfg(test)]
#[path = "cookie_tests.rs"]
mod tests;
