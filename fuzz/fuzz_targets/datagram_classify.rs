//! Message classification of raw datagrams: type, exact lengths, and the
//! index/counter fields read from whatever the classification accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use phantommesh::noise::constants::*;
use phantommesh::noise::messages::*;

fuzz_target!(|data: &[u8]| {
    match message_type(data) {
        Ok(kind) => {
            assert_eq!(&data[1..4], &[0, 0, 0]);
            let want = match kind {
                MessageType::Initiation => data.len() == INITIATION_LEN,
                MessageType::Response => data.len() == RESPONSE_LEN,
                MessageType::CookieReply => data.len() == COOKIE_REPLY_LEN,
                MessageType::Data => data.len() >= KEEPALIVE_LEN,
            };
            assert!(want, "{kind:?} accepted at length {}", data.len());
            let idx = receiver_index(kind, data);
            if kind == MessageType::Initiation {
                assert_eq!(idx, 0);
            }
            let _ = sender_index(data);
            if kind == MessageType::Data {
                let c = data_counter(data);
                assert_eq!(c.to_le_bytes(), data[8..16]);
            }
        }
        Err(MessageError::BadLength) => {
            assert!((1..=4).contains(&data[0]));
        }
        Err(MessageError::UnknownType) => {}
    }
    // Padding never shrinks a packet and never passes the MTU unless the
    // packet already does.
    if data.len() >= 4 {
        let len = u16::from_le_bytes([data[0], data[1]]) as usize;
        let mtu = u16::from_le_bytes([data[2], data[3]]) as usize;
        let p = padded_len(len, mtu);
        assert!(p >= len);
        assert!(p <= mtu.max(len));
        if p < mtu {
            assert_eq!(p % PADDING_MULTIPLE, 0);
        }
    }
});
