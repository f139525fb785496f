use super::*;
use crate::noise::messages::{message_type, MessageType};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

fn key(b: u8) -> PublicKey {
    PublicKey::from(&x25519_dalek::StaticSecret::from([b; 32]))
}

/// A 148-byte "initiation" with random-looking content and sender index 0x0a0b0c0d.
fn initiation(fill: u8) -> [u8; 148] {
    let mut m = [fill; 148];
    m[0..4].copy_from_slice(&1u32.to_le_bytes());
    m[4..8].copy_from_slice(&0x0a0b_0c0du32.to_le_bytes());
    m
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::from(a).into(), port)
}

#[test]
fn mac1_written_by_generator_validates_at_checker() {
    let responder = key(1);
    let mut checker = CookieChecker::new(&responder);
    let mut gen = CookieGenerator::new(&responder);
    let now = Instant::now();
    let mut m = initiation(0x55);
    assert!(!checker.check_mac1(&m));
    gen.add_macs(&mut m, now);
    assert!(checker.check_mac1(&m));
    // No cookie yet: mac2 is zero and does not validate.
    assert_eq!(&m[132..148], &[0u8; 16]);
    assert!(!checker.check_mac2(&m, v4([10, 0, 0, 1], 51820), now, &mut rng()));
    // A checker for another key rejects it.
    assert!(!CookieChecker::new(&key(2)).check_mac1(&m));
    // Works for the response length too.
    let mut r = [0x33u8; 92];
    gen.add_macs(&mut r, now);
    assert!(checker.check_mac1(&r));
}

#[test]
fn mac1_covers_every_byte_before_it() {
    let responder = key(1);
    let checker = CookieChecker::new(&responder);
    let mut gen = CookieGenerator::new(&responder);
    let mut m = initiation(0x11);
    gen.add_macs(&mut m, Instant::now());
    for i in 0..132 {
        let mut t = m;
        t[i] ^= 1;
        assert!(!checker.check_mac1(&t), "byte {i}");
    }
}

#[test]
fn short_messages_do_not_panic() {
    let mut checker = CookieChecker::new(&key(1));
    let mut gen = CookieGenerator::new(&key(1));
    let now = Instant::now();
    for len in 0..40 {
        let mut m = vec![0u8; len];
        gen.add_macs(&mut m, now);
        let _ = checker.check_mac1(&m);
        let _ = checker.check_mac2(&m, v4([1, 2, 3, 4], 5), now, &mut rng());
        let reply = checker.create_reply(&m, v4([1, 2, 3, 4], 5), now, &mut rng());
        assert_eq!(message_type(&reply), Ok(MessageType::CookieReply));
    }
}

/// Full exchange: a message without mac2 gets a reply; the generator's next
/// message carries a mac2 that is valid for that source only.
fn cookie_roundtrip(src: SocketAddr, others: &[SocketAddr]) {
    let responder = key(9);
    let mut checker = CookieChecker::new(&responder);
    let mut gen = CookieGenerator::new(&responder);
    let mut rng = rng();
    let t0 = Instant::now();

    let mut m = initiation(0x42);
    gen.add_macs(&mut m, t0);
    let reply = checker.create_reply(&m, src, t0, &mut rng);
    assert_eq!(reply.len(), 64);
    assert_eq!(message_type(&reply), Ok(MessageType::CookieReply));
    assert_eq!(
        &reply[4..8],
        &m[4..8],
        "reply is addressed to the sender index"
    );
    gen.consume_reply(&reply, t0).unwrap();
    // A reply is consumed once.
    assert_eq!(gen.consume_reply(&reply, t0), Err(CookieError::Unexpected));

    let mut m2 = initiation(0x43);
    gen.add_macs(&mut m2, t0 + Duration::from_secs(1));
    assert_ne!(&m2[132..148], &[0u8; 16]);
    assert!(checker.check_mac1(&m2));
    assert!(checker.check_mac2(&m2, src, t0 + Duration::from_secs(2), &mut rng));
    for other in others {
        assert!(
            !checker.check_mac2(&m2, *other, t0 + Duration::from_secs(2), &mut rng),
            "{other}"
        );
    }
    // mac2 covers mac1 and everything before it.
    for i in [0usize, 8, 100, 116, 131] {
        let mut t = m2;
        t[i] ^= 1;
        assert!(
            !checker.check_mac2(&t, src, t0 + Duration::from_secs(2), &mut rng),
            "byte {i}"
        );
    }
}

#[test]
fn cookie_roundtrip_ipv4() {
    let src = v4([192, 0, 2, 7], 40000);
    cookie_roundtrip(
        src,
        &[
            v4([192, 0, 2, 7], 40001),
            v4([192, 0, 2, 8], 40000),
            v4([7, 2, 0, 192], 16540),
        ],
    );
}

#[test]
fn cookie_roundtrip_ipv6() {
    let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let other: Ipv6Addr = "2001:db8::2".parse().unwrap();
    cookie_roundtrip(
        SocketAddr::new(ip.into(), 51820),
        &[
            SocketAddr::new(ip.into(), 51821),
            SocketAddr::new(other.into(), 51820),
        ],
    );
}

#[test]
fn ipv4_mapped_source_is_the_ipv4_source() {
    let responder = key(3);
    let mut checker = CookieChecker::new(&responder);
    let mut gen = CookieGenerator::new(&responder);
    let mut rng = rng();
    let now = Instant::now();
    let plain = v4([198, 51, 100, 1], 1234);
    let mapped = SocketAddr::new(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped().into(), 1234);
    let mut m = initiation(1);
    gen.add_macs(&mut m, now);
    gen.consume_reply(&checker.create_reply(&m, mapped, now, &mut rng), now)
        .unwrap();
    gen.add_macs(&mut m, now);
    assert!(checker.check_mac2(&m, plain, now, &mut rng));
    assert!(checker.check_mac2(&m, mapped, now, &mut rng));
}

#[test]
fn cookie_layout_is_address_then_big_endian_port() {
    let mut checker = CookieChecker::new(&key(4));
    let mut rng = rng();
    let now = Instant::now();
    let c = checker.cookie(v4([10, 1, 2, 3], 0x1234), now, &mut rng);
    assert_eq!(c, mac(&checker.secret, &[&[10, 1, 2, 3, 0x12, 0x34]]));
    let ip: Ipv6Addr = "fe80::42".parse().unwrap();
    let c6 = checker.cookie(SocketAddr::new(ip.into(), 0xabcd), now, &mut rng);
    assert_eq!(c6, mac(&checker.secret, &[&ip.octets(), &[0xab, 0xcd]]));
}

#[test]
fn secret_rotation_invalidates_old_cookies() {
    let responder = key(5);
    let mut checker = CookieChecker::new(&responder);
    let mut gen = CookieGenerator::new(&responder);
    let mut rng = rng();
    let src = v4([203, 0, 113, 9], 9999);
    let t0 = Instant::now();
    let mut m = initiation(2);
    gen.add_macs(&mut m, t0);
    gen.consume_reply(&checker.create_reply(&m, src, t0, &mut rng), t0)
        .unwrap();
    gen.add_macs(&mut m, t0 + Duration::from_secs(100));
    assert!(checker.check_mac2(&m, src, t0 + Duration::from_secs(119), &mut rng));
    // The secret is 120 s old now: a fresh one makes the old cookie useless.
    assert!(!checker.check_mac2(&m, src, t0 + COOKIE_SECRET_MAX_AGE, &mut rng));
    // A new reply after rotation works again.
    let t1 = t0 + Duration::from_secs(121);
    gen.add_macs(&mut m, t1);
    gen.consume_reply(&checker.create_reply(&m, src, t1, &mut rng), t1)
        .unwrap();
    gen.add_macs(&mut m, t1);
    assert!(checker.check_mac2(&m, src, t1, &mut rng));
}

#[test]
fn generator_stops_using_cookie_after_validity() {
    let responder = key(6);
    let mut checker = CookieChecker::new(&responder);
    let mut gen = CookieGenerator::new(&responder);
    let mut rng = rng();
    let src = v4([203, 0, 113, 10], 1);
    let t0 = Instant::now();
    let mut m = initiation(3);
    gen.add_macs(&mut m, t0);
    gen.consume_reply(&checker.create_reply(&m, src, t0, &mut rng), t0)
        .unwrap();
    gen.add_macs(&mut m, t0 + COOKIE_VALIDITY - Duration::from_millis(1));
    assert_ne!(&m[132..148], &[0u8; 16]);
    gen.add_macs(&mut m, t0 + COOKIE_VALIDITY);
    assert_eq!(&m[132..148], &[0u8; 16]);
    assert_eq!(
        COOKIE_VALIDITY,
        COOKIE_SECRET_MAX_AGE - crate::noise::constants::COOKIE_SECRET_LATENCY
    );
}

#[test]
fn replies_are_checked() {
    let responder = key(7);
    let mut checker = CookieChecker::new(&responder);
    let mut rng = rng();
    let src = v4([1, 1, 1, 1], 53);
    let now = Instant::now();
    let mut m = initiation(4);

    // Nothing sent yet: a reply is unexpected.
    let mut fresh = CookieGenerator::new(&responder);
    let stray = checker.create_reply(&m, src, now, &mut rng);
    assert_eq!(
        fresh.consume_reply(&stray, now),
        Err(CookieError::Unexpected)
    );

    let mut gen = CookieGenerator::new(&responder);
    gen.add_macs(&mut m, now);
    let reply = checker.create_reply(&m, src, now, &mut rng);
    // Any flipped byte of nonce or ciphertext fails; the generator keeps waiting.
    for i in 8..64 {
        let mut t = reply;
        t[i] ^= 0x20;
        assert_eq!(
            gen.consume_reply(&t, now),
            Err(CookieError::DecryptFailed),
            "byte {i}"
        );
    }
    // A reply to an older message (different mac1 as AD) fails.
    let mut newer = initiation(5);
    gen.add_macs(&mut newer, now);
    assert_eq!(
        gen.consume_reply(&reply, now),
        Err(CookieError::DecryptFailed)
    );
    // A reply encrypted under another responder's key fails.
    let mut other = CookieChecker::new(&key(8));
    assert_eq!(
        gen.consume_reply(&other.create_reply(&newer, src, now, &mut rng), now),
        Err(CookieError::DecryptFailed)
    );
    gen.consume_reply(&checker.create_reply(&newer, src, now, &mut rng), now)
        .unwrap();
}

#[test]
fn nonces_are_random() {
    let mut checker = CookieChecker::new(&key(1));
    let mut rng = rng();
    let now = Instant::now();
    let m = initiation(0);
    let a = checker.create_reply(&m, v4([1, 2, 3, 4], 1), now, &mut rng);
    let b = checker.create_reply(&m, v4([1, 2, 3, 4], 1), now, &mut rng);
    assert_ne!(a[8..32], b[8..32]);
    assert_ne!(a[32..], b[32..]);
}
