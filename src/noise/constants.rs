//! Protocol constants, named as in the whitepaper and the kernel's messages.h.
use std::time::Duration;

pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of the random jitter added to REKEY_TIMEOUT.
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(333);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A new handshake is started when data was sent but nothing was received
/// for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT.
pub const NEW_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// The initiator rekeys on receive when its key is this old.
pub const REKEY_ON_RECEIVE_AFTER: Duration = Duration::from_secs(165);
/// All key material is zeroed after REJECT_AFTER_TIME * 3 of silence.
pub const ZERO_KEYS_AFTER: Duration = Duration::from_secs(540);
/// Retries after the first initiation before giving up (kernel: 90 s / 5 s),
/// so 1 + 19 = 20 initiations are sent in all (the retry counter is checked
/// with `>` before it is incremented).
pub const MAX_TIMER_HANDSHAKES: u32 = 18;
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// An initiator uses a received cookie for this long.
pub const COOKIE_SECRET_LATENCY: Duration = Duration::from_secs(5);
pub const COOKIE_VALIDITY: Duration = Duration::from_secs(115);
/// At most one initiation per peer is consumed per this interval.
pub const INITIATIONS_PER_SECOND: u32 = 50;
pub const HANDSHAKE_MIN_INTERVAL: Duration = Duration::from_millis(20);
pub const PADDING_MULTIPLE: usize = 16;
pub const COUNTER_BITS_TOTAL: u64 = 8192;
/// Packets staged per peer while no session exists.
pub const MAX_STAGED_PACKETS: usize = 128;

pub const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
pub const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
pub const LABEL_MAC1: &[u8] = b"mac1----";
pub const LABEL_COOKIE: &[u8] = b"cookie--";

pub const MESSAGE_INITIATION: u32 = 1;
pub const MESSAGE_RESPONSE: u32 = 2;
pub const MESSAGE_COOKIE_REPLY: u32 = 3;
pub const MESSAGE_DATA: u32 = 4;

pub const INITIATION_LEN: usize = 148;
pub const RESPONSE_LEN: usize = 92;
pub const COOKIE_REPLY_LEN: usize = 64;
/// type(4) + receiver(4) + counter(8)
pub const DATA_HEADER_LEN: usize = 16;
pub const AEAD_TAG_LEN: usize = 16;
/// Smallest data message: an empty (keepalive) payload.
pub const KEEPALIVE_LEN: usize = DATA_HEADER_LEN + AEAD_TAG_LEN;
/// Bytes a data message adds around the (padded) inner packet.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + AEAD_TAG_LEN;
