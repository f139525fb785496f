//! MAC1/MAC2 and cookie replies (whitepaper section 5.4.7, kernel cookie.c).
use super::keys::PublicKey;
use rand_core::CryptoRngCore;
use std::net::SocketAddr;
use std::time::Instant;

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
    // owner: fill in
}

impl CookieChecker {
    /// `own` is the device's static public key.
    pub fn new(own: &PublicKey) -> Self {
        let _ = own;
        todo!()
    }
    /// MAC1 over an initiation or response (whole message, any of the two lengths).
    pub fn check_mac1(&self, msg: &[u8]) -> bool {
        let _ = msg;
        todo!()
    }
    /// MAC2 = MAC(cookie for `src`, msg up to mac2). Rotates the secret if stale.
    pub fn check_mac2(&mut self, msg: &[u8], src: SocketAddr, now: Instant, rng: &mut impl CryptoRngCore) -> bool {
        let _ = (msg, src, now, rng);
        todo!()
    }
    /// Cookie reply to `msg` (an initiation or response) from `src`.
    pub fn create_reply(
        &mut self,
        msg: &[u8],
        src: SocketAddr,
        now: Instant,
        rng: &mut impl CryptoRngCore,
    ) -> [u8; 64] {
        let _ = (msg, src, now, rng);
        todo!()
    }
}

/// Peer side: writes MAC1/MAC2 into outgoing handshake messages and keeps the
/// last cookie received from this peer.
pub struct CookieGenerator {
    // owner: fill in
}

impl CookieGenerator {
    /// `remote` is the peer's static public key.
    pub fn new(remote: &PublicKey) -> Self {
        let _ = remote;
        todo!()
    }
    /// Writes MAC1, and MAC2 when a cookie younger than COOKIE_VALIDITY is held
    /// (zeros otherwise); remembers MAC1 for a cookie reply's AD.
    pub fn add_macs(&mut self, msg: &mut [u8], now: Instant) {
        let _ = (msg, now);
        todo!()
    }
    /// Consumes a cookie reply to the last message we sent.
    pub fn consume_reply(&mut self, msg: &[u8; 64], now: Instant) -> Result<(), CookieError> {
        let _ = (msg, now);
        todo!()
    }
}
