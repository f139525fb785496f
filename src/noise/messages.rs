//! Wire formats of the four WireGuard messages (little-endian fields).
//!
//! ```text
//! initiation  148 B: type(4) sender(4) ephemeral(32) static(32+16) timestamp(12+16) mac1(16) mac2(16)
//! response     92 B: type(4) sender(4) receiver(4) ephemeral(32) empty(0+16) mac1(16) mac2(16)
//! cookie reply 64 B: type(4) receiver(4) nonce(24) cookie(16+16)
//! data       >= 32 B: type(4) receiver(4) counter(8) ciphertext(n) tag(16)
//! ```

use super::constants::*;

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
    let Some(&[t, r0, r1, r2]) = buf.first_chunk::<4>() else {
        return Err(MessageError::UnknownType);
    };
    if r0 != 0 || r1 != 0 || r2 != 0 {
        return Err(MessageError::UnknownType);
    }
    let (kind, len_ok) = match u32::from(t) {
        MESSAGE_INITIATION => (MessageType::Initiation, buf.len() == INITIATION_LEN),
        MESSAGE_RESPONSE => (MessageType::Response, buf.len() == RESPONSE_LEN),
        MESSAGE_COOKIE_REPLY => (MessageType::CookieReply, buf.len() == COOKIE_REPLY_LEN),
        MESSAGE_DATA => (MessageType::Data, buf.len() >= KEEPALIVE_LEN),
        _ => return Err(MessageError::UnknownType),
    };
    if len_ok {
        Ok(kind)
    } else {
        Err(MessageError::BadLength)
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4).map_or(0, |b| {
        u32::from_le_bytes(b.try_into().expect("4-byte slice"))
    })
}

/// Receiver index of a response (bytes 8..12), cookie reply (4..8) or data
/// message (4..8). The caller has classified the message already.
///
/// An initiation has no receiver index; it (and a buffer too short for the
/// field) yields 0, which is never allocated as a local index.
pub fn receiver_index(kind: MessageType, buf: &[u8]) -> u32 {
    match kind {
        MessageType::Initiation => 0,
        MessageType::Response => u32_at(buf, 8),
        MessageType::CookieReply | MessageType::Data => u32_at(buf, 4),
    }
}

/// Sender index of an initiation or response (bytes 4..8).
pub fn sender_index(buf: &[u8]) -> u32 {
    u32_at(buf, 4)
}

/// Counter of a data message (bytes 8..16).
pub fn data_counter(buf: &[u8]) -> u64 {
    buf.get(8..16).map_or(0, |b| {
        u64::from_le_bytes(b.try_into().expect("8-byte slice"))
    })
}

/// Length an inner packet of `len` bytes is padded to: the next multiple of
/// PADDING_MULTIPLE, but never beyond `mtu` (and never below `len`).
pub fn padded_len(len: usize, mtu: usize) -> usize {
    let aligned = len
        .checked_next_multiple_of(PADDING_MULTIPLE)
        .unwrap_or(len);
    aligned.min(mtu).max(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        if len > 0 {
            v[0] = t;
        }
        v
    }

    #[test]
    fn classifies_exact_lengths() {
        assert_eq!(message_type(&msg(1, 148)), Ok(MessageType::Initiation));
        assert_eq!(message_type(&msg(2, 92)), Ok(MessageType::Response));
        assert_eq!(message_type(&msg(3, 64)), Ok(MessageType::CookieReply));
        assert_eq!(message_type(&msg(4, 32)), Ok(MessageType::Data));
        assert_eq!(message_type(&msg(4, 1500)), Ok(MessageType::Data));
        for (t, len) in [
            (1, 147),
            (1, 149),
            (2, 91),
            (2, 93),
            (3, 63),
            (3, 65),
            (4, 31),
        ] {
            assert_eq!(
                message_type(&msg(t, len)),
                Err(MessageError::BadLength),
                "{t} {len}"
            );
        }
    }

    #[test]
    fn rejects_unknown_types_and_reserved_bytes() {
        assert_eq!(message_type(&msg(0, 148)), Err(MessageError::UnknownType));
        assert_eq!(message_type(&msg(5, 148)), Err(MessageError::UnknownType));
        assert_eq!(message_type(&[]), Err(MessageError::UnknownType));
        assert_eq!(message_type(&[1, 0, 0]), Err(MessageError::UnknownType));
        for i in 1..4 {
            let mut m = msg(1, 148);
            m[i] = 1;
            assert_eq!(message_type(&m), Err(MessageError::UnknownType));
        }
    }

    #[test]
    fn index_and_counter_fields() {
        let mut m = msg(2, 92);
        m[4..8].copy_from_slice(&0x1122_3344u32.to_le_bytes());
        m[8..12].copy_from_slice(&0x5566_7788u32.to_le_bytes());
        assert_eq!(sender_index(&m), 0x1122_3344);
        assert_eq!(receiver_index(MessageType::Response, &m), 0x5566_7788);
        assert_eq!(receiver_index(MessageType::Data, &m), 0x1122_3344);
        assert_eq!(receiver_index(MessageType::CookieReply, &m), 0x1122_3344);
        let mut d = msg(4, 32);
        d[8..16].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(data_counter(&d), 0x0102_0304_0506_0708);
        // Short buffers never panic.
        assert_eq!(sender_index(&[1, 0]), 0);
        assert_eq!(data_counter(&[4, 0, 0, 0]), 0);
        assert_eq!(receiver_index(MessageType::Response, &[2, 0, 0, 0]), 0);
    }

    #[test]
    fn padding() {
        assert_eq!(padded_len(0, 1420), 0);
        assert_eq!(padded_len(1, 1420), 16);
        assert_eq!(padded_len(16, 1420), 16);
        assert_eq!(padded_len(17, 1420), 32);
        assert_eq!(padded_len(1419, 1420), 1420);
        assert_eq!(padded_len(1415, 1420), 1420);
        assert_eq!(padded_len(1420, 1420), 1420);
        // Larger than the MTU (e.g. a GSO super-packet): never shrink.
        assert_eq!(padded_len(1500, 1420), 1500);
        assert_eq!(padded_len(usize::MAX, 1420), usize::MAX);
    }
}
