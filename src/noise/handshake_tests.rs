use super::*;
use crate::noise::cookie::{CookieChecker, CookieGenerator};
use crate::noise::keypair::Keypair;
use crate::noise::messages::{message_type, MessageType};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn identity(seed: u8) -> Identity {
    let mut bytes = [0u8; 32];
    rng(u64::from(seed) + 1000).fill_bytes(&mut bytes);
    Identity::new(StaticSecretKey::from(bytes))
}

fn ts(secs: u64) -> Tai64n {
    Tai64n::from_system_time(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs))
}

/// Small-order points of Curve25519 (u-coordinates), including 0, 1 and
/// non-canonical encodings of them (u + p).
fn small_order_points() -> Vec<[u8; 32]> {
    let hexes = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    hexes
        .iter()
        .map(|h| hex::decode(h).unwrap().try_into().unwrap())
        .collect()
}

struct Pair {
    a: Identity,
    b: Identity,
    a_peer_b: PeerKeys,
    b_peer_a: PeerKeys,
}

fn pair(psk: [u8; 32]) -> Pair {
    let a = identity(1);
    let b = identity(2);
    let a_peer_b = PeerKeys::new(&a, *b.public_key(), psk).unwrap();
    let b_peer_a = PeerKeys::new(&b, *a.public_key(), psk).unwrap();
    Pair {
        a,
        b,
        a_peer_b,
        b_peer_a,
    }
}

/// A complete handshake a -> b; returns (initiation, response, a's keys, b's keys).
fn handshake(p: &Pair, seed: u64) -> ([u8; 148], [u8; 92], SessionKeys, SessionKeys) {
    let mut r = rng(seed);
    let (state, init) = create_initiation(&p.a, &p.a_peer_b, 0x1111, ts(1), &mut r).unwrap();
    let consumed = consume_initiation(&p.b, &init, |k| {
        (k == p.a.public_key()).then_some(&p.b_peer_a)
    })
    .unwrap();
    assert_eq!(consumed.remote_static, *p.a.public_key());
    assert_eq!(consumed.sender_index, 0x1111);
    assert_eq!(consumed.timestamp, ts(1));
    let (resp, b_keys) = create_response(&p.b_peer_a, &consumed, 0x2222, &mut r).unwrap();
    let a_keys = consume_response(&p.a, &p.a_peer_b, &state, &resp).unwrap();
    (init, resp, a_keys, b_keys)
}

#[test]
fn handshake_roundtrip_derives_matching_keys() {
    let p = pair([0; 32]);
    let (init, resp, a, b) = handshake(&p, 1);
    assert_eq!(message_type(&init), Ok(MessageType::Initiation));
    assert_eq!(message_type(&resp), Ok(MessageType::Response));
    assert_eq!(a.send, b.recv);
    assert_eq!(a.recv, b.send);
    assert_ne!(a.send, a.recv);
    assert!(a.is_initiator && !b.is_initiator);
    assert_eq!((a.local_index, a.remote_index), (0x1111, 0x2222));
    assert_eq!((b.local_index, b.remote_index), (0x2222, 0x1111));
    // A second handshake uses fresh ephemerals and yields fresh keys.
    let (init2, _, a2, _) = handshake(&p, 2);
    assert_ne!(init[8..40], init2[8..40]);
    assert_ne!(a.send, a2.send);
}

#[test]
fn message_sizes_from_real_messages() {
    let p = pair([7; 32]);
    let (init, resp, a, b) = handshake(&p, 3);
    assert_eq!(init.len(), 148);
    assert_eq!(resp.len(), 92);
    let (ka, kb) = (
        Keypair::new(a, Instant::now()),
        Keypair::new(b, Instant::now()),
    );
    let mut buf = [0u8; 64];
    let n = ka.seal(ka.next_counter().unwrap(), &mut buf, 0);
    assert_eq!(n, 32, "keepalive");
    assert_eq!(message_type(&buf[..n]), Ok(MessageType::Data));
    assert_eq!(kb.open(&mut buf[..n]), Ok(0));
    // And the other direction with a payload.
    buf[16..21].copy_from_slice(b"hello");
    let n = kb.seal(kb.next_counter().unwrap(), &mut buf, 5);
    assert_eq!(n, 37);
    assert_eq!(ka.open(&mut buf[..n]), Ok(5));
    assert_eq!(&buf[16..21], b"hello");
}

#[test]
fn psk_mismatch_fails_at_the_initiator() {
    let a = identity(1);
    let b = identity(2);
    let a_peer_b = PeerKeys::new(&a, *b.public_key(), [1; 32]).unwrap();
    let mut b_peer_a = PeerKeys::new(&b, *a.public_key(), [0; 32]).unwrap();
    let mut r = rng(4);
    let (state, init) = create_initiation(&a, &a_peer_b, 1, ts(0), &mut r).unwrap();
    // The psk is only mixed into the response: the initiation still opens.
    let consumed = consume_initiation(&b, &init, |_| Some(&b_peer_a)).unwrap();
    let (resp, _) = create_response(&b_peer_a, &consumed, 2, &mut r).unwrap();
    assert_eq!(
        consume_response(&a, &a_peer_b, &state, &resp).err(),
        Some(HandshakeError::DecryptFailed)
    );
    // With the right psk set afterwards, the next handshake completes.
    b_peer_a.set_preshared_key([1; 32]);
    assert_eq!(b_peer_a.preshared_key(), &[1; 32]);
    let (resp, _) = create_response(&b_peer_a, &consumed, 2, &mut r).unwrap();
    assert!(consume_response(&a, &a_peer_b, &state, &resp).is_ok());
}

#[test]
fn unknown_peer_and_wrong_responder() {
    let p = pair([0; 32]);
    let mut r = rng(5);
    let (_, init) = create_initiation(&p.a, &p.a_peer_b, 1, ts(0), &mut r).unwrap();
    assert_eq!(
        consume_initiation(&p.b, &init, |_| None).err(),
        Some(HandshakeError::UnknownPeer)
    );
    // A lookup returning some other peer is not trusted.
    let other = PeerKeys::new(&p.b, *identity(3).public_key(), [0; 32]).unwrap();
    assert_eq!(
        consume_initiation(&p.b, &init, |_| Some(&other)).err(),
        Some(HandshakeError::UnknownPeer)
    );
    // The initiation is for b: c cannot open it.
    let c = identity(3);
    let c_peer_a = PeerKeys::new(&c, *p.a.public_key(), [0; 32]).unwrap();
    assert_eq!(
        consume_initiation(&c, &init, |_| Some(&c_peer_a)).err(),
        Some(HandshakeError::DecryptFailed)
    );
    // create_response refuses a peer that is not the initiator.
    let consumed = consume_initiation(&p.b, &init, |_| Some(&p.b_peer_a)).unwrap();
    assert_eq!(
        create_response(&other, &consumed, 2, &mut r).err(),
        Some(HandshakeError::UnknownPeer)
    );
}

#[test]
fn response_to_another_index_is_refused() {
    let p = pair([0; 32]);
    let mut r = rng(6);
    let (state, init) = create_initiation(&p.a, &p.a_peer_b, 77, ts(0), &mut r).unwrap();
    assert_eq!(state.local_index(), 77);
    let consumed = consume_initiation(&p.b, &init, |_| Some(&p.b_peer_a)).unwrap();
    let (mut resp, _) = create_response(&p.b_peer_a, &consumed, 2, &mut r).unwrap();
    resp[8..12].copy_from_slice(&78u32.to_le_bytes());
    assert_eq!(
        consume_response(&p.a, &p.a_peer_b, &state, &resp).err(),
        Some(HandshakeError::WrongIndex)
    );
}

#[test]
fn low_order_keys_are_rejected() {
    let a = identity(1);
    for point in small_order_points() {
        let pk = PublicKey::from(point);
        assert_eq!(
            PeerKeys::new(&a, pk, [0; 32]).err(),
            Some(HandshakeError::LowOrderKey),
            "{}",
            hex::encode(point)
        );
    }
}

#[test]
fn low_order_ephemerals_are_rejected() {
    let p = pair([0; 32]);
    let mut r = rng(7);
    let (state, init) = create_initiation(&p.a, &p.a_peer_b, 1, ts(0), &mut r).unwrap();
    let consumed = consume_initiation(&p.b, &init, |_| Some(&p.b_peer_a)).unwrap();
    let (resp, _) = create_response(&p.b_peer_a, &consumed, 2, &mut r).unwrap();
    for point in small_order_points() {
        let mut bad_init = init;
        bad_init[8..40].copy_from_slice(&point);
        assert_eq!(
            consume_initiation(&p.b, &bad_init, |_| Some(&p.b_peer_a)).err(),
            Some(HandshakeError::LowOrderKey)
        );
        let mut bad_resp = resp;
        bad_resp[12..44].copy_from_slice(&point);
        assert_eq!(
            consume_response(&p.a, &p.a_peer_b, &state, &bad_resp).err(),
            Some(HandshakeError::LowOrderKey)
        );
    }
}

/// Every single-bit flip of an initiation is caught: by MAC1 (type, sender
/// index, everything before it), by MAC2 when a cookie is in use, and by the
/// AEADs for the ephemeral, static and timestamp fields on their own.
#[test]
fn tampered_initiation_is_rejected() {
    let p = pair([3; 32]);
    let mut r = rng(8);
    let now = Instant::now();
    let src: SocketAddr = "192.0.2.1:51820".parse().unwrap();
    let mut checker = CookieChecker::new(p.b.public_key());
    let mut gen = CookieGenerator::new(p.b.public_key());
    let (_, mut init) = create_initiation(&p.a, &p.a_peer_b, 1, ts(0), &mut r).unwrap();
    gen.add_macs(&mut init, now);
    gen.consume_reply(&checker.create_reply(&init, src, now, &mut r), now)
        .unwrap();
    gen.add_macs(&mut init, now);
    assert!(checker.check_mac1(&init) && checker.check_mac2(&init, src, now, &mut r));

    for i in 0..init.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = init;
            t[i] ^= bit;
            let consumed = consume_initiation(&p.b, &t, |_| Some(&p.b_peer_a));
            if (8..116).contains(&i) {
                assert!(consumed.is_err(), "byte {i}");
            }
            let accepted = checker.check_mac1(&t)
                && checker.check_mac2(&t, src, now, &mut r)
                && consumed.is_ok();
            assert!(!accepted, "byte {i} bit {bit:#x}");
        }
    }
}

#[test]
fn tampered_response_is_rejected() {
    let p = pair([3; 32]);
    let mut r = rng(9);
    let now = Instant::now();
    let (state, init) = create_initiation(&p.a, &p.a_peer_b, 1, ts(0), &mut r).unwrap();
    let consumed = consume_initiation(&p.b, &init, |_| Some(&p.b_peer_a)).unwrap();
    let (mut resp, _) = create_response(&p.b_peer_a, &consumed, 2, &mut r).unwrap();
    // Response MACs are keyed by the initiator's public key.
    let checker = CookieChecker::new(p.a.public_key());
    CookieGenerator::new(p.a.public_key()).add_macs(&mut resp, now);
    assert!(checker.check_mac1(&resp));
    for i in 0..(resp.len() - 16) {
        let mut t = resp;
        t[i] ^= 0x04;
        let consumed = consume_response(&p.a, &p.a_peer_b, &state, &t);
        if (8..60).contains(&i) {
            assert!(consumed.is_err(), "byte {i}");
        }
        assert!(!checker.check_mac1(&t), "byte {i}");
    }
}

#[test]
fn random_garbage_never_panics() {
    let p = pair([0; 32]);
    let mut r = rng(10);
    let (state, _) = create_initiation(&p.a, &p.a_peer_b, 5, ts(0), &mut r).unwrap();
    for _ in 0..300 {
        let mut init = [0u8; 148];
        r.fill_bytes(&mut init);
        assert!(consume_initiation(&p.b, &init, |_| Some(&p.b_peer_a)).is_err());
        let mut resp = [0u8; 92];
        r.fill_bytes(&mut resp);
        resp[8..12].copy_from_slice(&5u32.to_le_bytes());
        assert!(consume_response(&p.a, &p.a_peer_b, &state, &resp).is_err());
    }
}

#[test]
fn timestamp_is_carried_and_whitened() {
    let p = pair([0; 32]);
    let mut r = rng(11);
    let now = SystemTime::now();
    let stamp = Tai64n::from_system_time(now);
    let (_, init) = create_initiation(&p.a, &p.a_peer_b, 1, stamp, &mut r).unwrap();
    let consumed = consume_initiation(&p.b, &init, |_| Some(&p.b_peer_a)).unwrap();
    assert_eq!(consumed.timestamp, stamp);
    assert_eq!(
        u32::from_be_bytes(consumed.timestamp.0[8..].try_into().unwrap()) % (1 << 24),
        0
    );
}

#[test]
fn debug_output_has_no_secrets() {
    let p = pair([0xab; 32]);
    let (_, _, a, _) = handshake(&p, 12);
    let send_hex = hex::encode(a.send);
    for text in [
        format!("{:?}", p.a),
        format!("{:?}", p.a_peer_b),
        format!("{a:?}"),
    ] {
        assert!(
            !text.contains(&send_hex) && !text.contains("abababab"),
            "{text}"
        );
    }
}
