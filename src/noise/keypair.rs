//! A transport session ("keypair" in the kernel): two AEAD keys, the send
//! counter and the receive replay window. Shared across data-path threads as
//! `Arc<Keypair>`: sending takes a counter atomically, receiving locks only
//! this keypair's replay window, briefly.
use super::handshake::SessionKeys;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("message too short")]
    TooShort,
    #[error("counter replayed or too old")]
    Replay,
    #[error("authentication failed")]
    Auth,
}

pub struct Keypair {
    pub local_index: u32,
    pub remote_index: u32,
    pub is_initiator: bool,
    pub created: Instant,
    // owner: ring LessSafeKey send/recv, AtomicU64 send counter, Mutex<ReplayWindow>
}

impl Keypair {
    pub fn new(keys: SessionKeys, now: Instant) -> Self {
        let _ = (keys, now);
        todo!()
    }
    /// Takes the next send counter; None once REJECT_AFTER_MESSAGES is reached.
    pub fn next_counter(&self) -> Option<u64> {
        todo!()
    }
    /// Counter values handed out so far.
    pub fn sent_messages(&self) -> u64 {
        todo!()
    }
    /// `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + plaintext_len]` holds the padded
    /// plaintext and `buf` has AEAD_TAG_LEN bytes after it. Writes header and
    /// tag; returns the message length.
    pub fn seal(&self, counter: u64, buf: &mut [u8], plaintext_len: usize) -> usize {
        let _ = (counter, buf, plaintext_len);
        todo!()
    }
    /// Decrypts a data message in place; the plaintext is then at
    /// `msg[DATA_HEADER_LEN..DATA_HEADER_LEN + n]`; returns n.
    pub fn open(&self, msg: &mut [u8]) -> Result<usize, OpenError> {
        let _ = msg;
        todo!()
    }
}
