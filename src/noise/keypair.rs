//! A transport session ("keypair" in the kernel): two AEAD keys, the send
//! counter and the receive replay window. Shared across data-path threads as
//! `Arc<Keypair>`: sending takes a counter atomically, receiving locks only
//! this keypair's replay window, briefly.
use super::constants::{AEAD_TAG_LEN, DATA_HEADER_LEN, MESSAGE_DATA, REJECT_AFTER_MESSAGES};
use super::handshake::SessionKeys;
use super::replay::ReplayWindow;
use parking_lot::Mutex;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
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
    send: LessSafeKey,
    recv: LessSafeKey,
    /// Next counter to hand out; may run past REJECT_AFTER_MESSAGES by the
    /// number of racing callers, never further (see `next_counter`).
    send_counter: AtomicU64,
    replay: Mutex<ReplayWindow>,
}

/// The 96-bit AEAD nonce: 32 zero bits, then the 64-bit counter little-endian.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("ChaCha20 key is 32 bytes"))
}

impl Keypair {
    pub fn new(keys: SessionKeys, now: Instant) -> Self {
        // `keys` zeroes its copy when dropped at the end of this function.
        Keypair {
            local_index: keys.local_index,
            remote_index: keys.remote_index,
            is_initiator: keys.is_initiator,
            created: now,
            send: aead_key(&keys.send),
            recv: aead_key(&keys.recv),
            send_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::new()),
        }
    }
    /// Takes the next send counter; None once REJECT_AFTER_MESSAGES is reached.
    pub fn next_counter(&self) -> Option<u64> {
        // The load keeps an exhausted keypair from counting on towards a wrap
        // (and nonce reuse) however often it is asked; the fetch_add keeps the
        // common path a single atomic instruction.
        if self.send_counter.load(Ordering::Relaxed) >= REJECT_AFTER_MESSAGES {
            return None;
        }
        let c = self.send_counter.fetch_add(1, Ordering::Relaxed);
        (c < REJECT_AFTER_MESSAGES).then_some(c)
    }
    /// Counter values handed out so far.
    pub fn sent_messages(&self) -> u64 {
        self.send_counter
            .load(Ordering::Relaxed)
            .min(REJECT_AFTER_MESSAGES)
    }
    /// `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + plaintext_len]` holds the padded
    /// plaintext and `buf` has AEAD_TAG_LEN bytes after it. Writes header and
    /// tag; returns the message length.
    ///
    /// Panics if `buf` is shorter than that: buffer sizing is the caller's
    /// invariant, not input.
    pub fn seal(&self, counter: u64, buf: &mut [u8], plaintext_len: usize) -> usize {
        let body_end = DATA_HEADER_LEN + plaintext_len;
        let total = body_end + AEAD_TAG_LEN;
        assert!(buf.len() >= total, "seal buffer too short");
        buf[0..4].copy_from_slice(&MESSAGE_DATA.to_le_bytes());
        buf[4..8].copy_from_slice(&self.remote_index.to_le_bytes());
        buf[8..16].copy_from_slice(&counter.to_le_bytes());
        let tag: Tag = self
            .send
            .seal_in_place_separate_tag(
                nonce(counter),
                Aad::empty(),
                &mut buf[DATA_HEADER_LEN..body_end],
            )
            .expect("data message within ChaCha20-Poly1305 limits");
        buf[body_end..total].copy_from_slice(tag.as_ref());
        total
    }
    /// Decrypts a data message in place; the plaintext is then at
    /// `msg[DATA_HEADER_LEN..DATA_HEADER_LEN + n]`; returns n.
    ///
    /// The type and receiver fields are not covered by the AEAD; a message
    /// whose fields do not name this keypair fails as `Auth`.
    pub fn open(&self, msg: &mut [u8]) -> Result<usize, OpenError> {
        if msg.len() < DATA_HEADER_LEN + AEAD_TAG_LEN {
            return Err(OpenError::TooShort);
        }
        let header: &[u8; DATA_HEADER_LEN] = msg[..DATA_HEADER_LEN].try_into().expect("16 bytes");
        if header[0..4] != MESSAGE_DATA.to_le_bytes()
            || header[4..8] != self.local_index.to_le_bytes()
        {
            return Err(OpenError::Auth);
        }
        let counter = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        // Cheap rejection of replays and stale counters before any crypto.
        if !self.replay.lock().can_accept(counter) {
            return Err(OpenError::Replay);
        }
        let n = self
            .recv
            .open_in_place(nonce(counter), Aad::empty(), &mut msg[DATA_HEADER_LEN..])
            .map_err(|_| OpenError::Auth)?
            .len();
        // Authentic, but a concurrent copy of the same message may have won.
        if !self.replay.lock().check_and_mark(counter) {
            return Err(OpenError::Replay);
        }
        Ok(n)
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("is_initiator", &self.is_initiator)
            .field("sent_messages", &self.sent_messages())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Keypair, Keypair) {
        let now = Instant::now();
        let a = SessionKeys {
            send: [1; 32],
            recv: [2; 32],
            local_index: 10,
            remote_index: 20,
            is_initiator: true,
        };
        let b = SessionKeys {
            send: [2; 32],
            recv: [1; 32],
            local_index: 20,
            remote_index: 10,
            is_initiator: false,
        };
        (Keypair::new(a, now), Keypair::new(b, now))
    }

    fn seal_msg(k: &Keypair, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; DATA_HEADER_LEN + payload.len() + AEAD_TAG_LEN];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + payload.len()].copy_from_slice(payload);
        let c = k.next_counter().unwrap();
        let n = k.seal(c, &mut buf, payload.len());
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn keypair_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Keypair>();
    }

    #[test]
    fn seal_open_roundtrip_and_layout() {
        let (a, b) = pair();
        let msg = seal_msg(&a, b"0123456789abcdef");
        assert_eq!(msg.len(), 16 + 16 + 16);
        assert_eq!(&msg[0..4], &4u32.to_le_bytes());
        assert_eq!(&msg[4..8], &20u32.to_le_bytes());
        assert_eq!(&msg[8..16], &0u64.to_le_bytes());
        assert_ne!(&msg[16..32], b"0123456789abcdef");
        let mut m = msg.clone();
        assert_eq!(b.open(&mut m), Ok(16));
        assert_eq!(&m[16..32], b"0123456789abcdef");
        // Replays are refused before and after decryption.
        let mut m = msg.clone();
        assert_eq!(b.open(&mut m), Err(OpenError::Replay));
        // The second message carries counter 1.
        let msg2 = seal_msg(&a, b"");
        assert_eq!(msg2.len(), crate::noise::constants::KEEPALIVE_LEN);
        assert_eq!(&msg2[8..16], &1u64.to_le_bytes());
        let mut m = msg2.clone();
        assert_eq!(b.open(&mut m), Ok(0));
        assert_eq!(a.sent_messages(), 2);
    }

    #[test]
    fn nonce_layout_is_le_counter_after_four_zero_bytes() {
        // Independently build the expected ciphertext with a raw ring key.
        let (a, _) = pair();
        let counter = 0x0102_0304_0506_0708u64;
        let mut buf = vec![0u8; 32 + 5];
        buf[16..21].copy_from_slice(b"hello");
        a.seal(counter, &mut buf, 5);
        let mut raw = *b"hello";
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
        let tag = aead_key(&[1; 32])
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::empty(), &mut raw)
            .unwrap();
        assert_eq!(&buf[16..21], &raw);
        assert_eq!(&buf[21..37], tag.as_ref());
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let (a, b) = pair();
        let msg = seal_msg(&a, b"some payload bytes");
        for i in 0..msg.len() {
            for bit in [0x01u8, 0x80] {
                let mut m = msg.clone();
                m[i] ^= bit;
                assert!(b.open(&mut m).is_err(), "byte {i} bit {bit:#x}");
            }
        }
        // The untouched message still opens: failures did not mark the counter.
        let mut m = msg.clone();
        assert!(b.open(&mut m).is_ok());
    }

    #[test]
    fn short_and_wrong_key_messages() {
        let (a, b) = pair();
        for len in 0..32 {
            let mut m = vec![4u8; len];
            assert_eq!(b.open(&mut m), Err(OpenError::TooShort));
        }
        // A message sealed by `b` is not for `b`.
        let mut own = seal_msg(&b, b"x");
        own[4..8].copy_from_slice(&20u32.to_le_bytes());
        assert_eq!(b.open(&mut own), Err(OpenError::Auth));
        let _ = a;
    }

    #[test]
    fn out_of_order_within_window_and_too_old() {
        let (a, b) = pair();
        let msgs: Vec<Vec<u8>> = (0..10).map(|_| seal_msg(&a, b"p")).collect();
        for i in [5usize, 3, 9, 0, 1] {
            let mut m = msgs[i].clone();
            assert!(b.open(&mut m).is_ok(), "{i}");
        }
        let mut m = msgs[3].clone();
        assert_eq!(b.open(&mut m), Err(OpenError::Replay));
        // Jump far ahead: counter 0..10 fall out of the window.
        let mut far = vec![0u8; 33];
        a.seal(100_000, &mut far, 1);
        assert!(b.open(&mut far).is_ok());
        let mut m = msgs[2].clone();
        assert_eq!(b.open(&mut m), Err(OpenError::Replay));
    }

    #[test]
    fn counter_exhaustion() {
        let (a, _) = pair();
        a.send_counter
            .store(REJECT_AFTER_MESSAGES - 2, Ordering::Relaxed);
        assert_eq!(a.next_counter(), Some(REJECT_AFTER_MESSAGES - 2));
        assert_eq!(a.next_counter(), Some(REJECT_AFTER_MESSAGES - 1));
        for _ in 0..100_000 {
            assert_eq!(a.next_counter(), None);
        }
        assert_eq!(a.sent_messages(), REJECT_AFTER_MESSAGES);
        // Exhaustion does not creep toward a wrap.
        assert_eq!(
            a.send_counter.load(Ordering::Relaxed),
            REJECT_AFTER_MESSAGES
        );
    }

    #[test]
    fn concurrent_counters_are_unique() {
        let (a, _) = pair();
        let a = std::sync::Arc::new(a);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || {
                    (0..10_000)
                        .map(|_| a.next_counter().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40_000);
        assert_eq!(*all.last().unwrap(), 39_999);
    }
}
