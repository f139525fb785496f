//! Wire formats of the four WireGuard messages (little-endian fields).
//!
//! ```text
//! initiation  148 B: type(4) sender(4) ephemeral(32) static(32+16) timestamp(12+16) mac1(16) mac2(16)
//! response     92 B: type(4) sender(4) receiver(4) ephemeral(32) empty(0+16) mac1(16) mac2(16)
//! cookie reply 64 B: type(4) receiver(4) nonce(24) cookie(16+16)
//! data       >= 32 B: type(4) receiver(4) counter(8) ciphertext(n) tag(16)
//! ```

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Initiation,
    Response,
    CookieReply,
    Data,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("unknown message type")]
    UnknownType,
    #[error("wrong length for message type")]
    BadLength,
}

/// Classifies a datagram: type byte 1..=4 followed by three zero bytes, the
/// exact length for handshake messages, at least 32 bytes for data.
pub fn message_type(buf: &[u8]) -> Result<MessageType, MessageError> {
    let _ = buf;
    todo!()
}

/// Receiver index of a response (bytes 8..12), cookie reply (4..8) or data
/// message (4..8). The caller has classified the message already.
pub fn receiver_index(kind: MessageType, buf: &[u8]) -> u32 {
    let _ = (kind, buf);
    todo!()
}

/// Sender index of an initiation or response (bytes 4..8).
pub fn sender_index(buf: &[u8]) -> u32 {
    let _ = buf;
    todo!()
}

/// Counter of a data message (bytes 8..16).
pub fn data_counter(buf: &[u8]) -> u64 {
    let _ = buf;
    todo!()
}

/// Length an inner packet of `len` bytes is padded to: the next multiple of
/// PADDING_MULTIPLE, but never beyond `mtu` (and never below `len`).
pub fn padded_len(len: usize, mtu: usize) -> usize {
    let _ = (len, mtu);
    todo!()
}
