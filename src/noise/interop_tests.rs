//! Differential tests against boringtun 0.7's `Tunn`, an independent
//! implementation: handshakes both ways, data both ways, cookies both ways.
use super::*;
use crate::noise::constants::DATA_OVERHEAD;
use crate::noise::cookie::{CookieChecker, CookieGenerator};
use crate::noise::keypair::Keypair;
use crate::noise::messages::{message_type, padded_len, MessageType};
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

const MTU: usize = 1420;
const TUNN_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20));

fn secret(rng: &mut ChaCha20Rng) -> StaticSecretKey {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    StaticSecretKey::from(b)
}

/// A minimal IPv4/UDP packet with `payload_len` bytes of payload; Tunn checks
/// the version and total-length fields of what it decrypts.
fn ipv4_packet(payload_len: usize, fill: u8) -> Vec<u8> {
    let total = 20 + 8 + payload_len;
    let mut p = vec![fill; total];
    p[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let sum = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    p[10..12].copy_from_slice(&(!((sum & 0xffff) + (sum >> 16)) as u16).to_be_bytes());
    p[20..22].copy_from_slice(&1234u16.to_be_bytes());
    p[22..24].copy_from_slice(&5678u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    p
}

fn network(r: TunnResult<'_>) -> Vec<u8> {
    match r {
        TunnResult::WriteToNetwork(b) => b.to_vec(),
        other => panic!("expected a datagram, got {other:?}"),
    }
}

/// Our keypair seals, Tunn decapsulates.
fn send_to_tunn(ours: &Keypair, tunn: &mut Tunn, packet: &[u8]) {
    let padded = padded_len(packet.len(), MTU);
    let mut buf = vec![0u8; padded + DATA_OVERHEAD];
    buf[16..16 + packet.len()].copy_from_slice(packet);
    let n = ours.seal(ours.next_counter().unwrap(), &mut buf, padded);
    assert_eq!(n, padded + 32);
    assert_eq!(message_type(&buf[..n]), Ok(MessageType::Data));
    let mut dst = vec![0u8; 2048];
    match tunn.decapsulate(Some(TUNN_IP), &buf[..n], &mut dst) {
        TunnResult::WriteToTunnelV4(p, src) => {
            assert_eq!(p, packet);
            assert_eq!(src, Ipv4Addr::new(10, 0, 0, 1));
        }
        other => panic!("Tunn rejected our data: {other:?}"),
    }
}

/// Tunn encapsulates, our keypair opens.
fn receive_from_tunn(ours: &Keypair, tunn: &mut Tunn, packet: &[u8]) {
    let mut dst = vec![0u8; 2048];
    let mut msg = network(tunn.encapsulate(packet, &mut dst));
    assert_eq!(message_type(&msg), Ok(MessageType::Data));
    let n = ours.open(&mut msg).expect("our keypair opens Tunn's data");
    assert!(n >= packet.len());
    assert_eq!(&msg[16..16 + packet.len()], packet);
    // Replaying it is refused.
    let mut again = network(tunn.encapsulate(packet, &mut dst));
    let copy = again.clone();
    ours.open(&mut again).unwrap();
    let mut replay = copy;
    assert!(ours.open(&mut replay).is_err());
}

fn data_both_ways(ours: &Keypair, tunn: &mut Tunn) {
    for (i, len) in [0usize, 1, 15, 16, 100, 555, 1000, 1392]
        .into_iter()
        .enumerate()
    {
        send_to_tunn(ours, tunn, &ipv4_packet(len, i as u8));
        receive_from_tunn(ours, tunn, &ipv4_packet(len, 0x80 | i as u8));
    }
}

#[test]
fn we_initiate_tunn_responds() {
    let mut rng = ChaCha20Rng::seed_from_u64(100);
    let psk = [0x5a; 32];
    let ours = Identity::new(secret(&mut rng));
    let their_secret = secret(&mut rng);
    let their_pub = PublicKey::from(&their_secret);
    let mut tunn = Tunn::new(their_secret, *ours.public_key(), Some(psk), None, 7, None);

    let peer = PeerKeys::new(&ours, their_pub, psk).unwrap();
    let mut gen = CookieGenerator::new(&their_pub);
    let now = Instant::now();
    let stamp = Tai64n::from_system_time(SystemTime::now());
    let (state, mut init) = create_initiation(&ours, &peer, 0xdead_beef, stamp, &mut rng).unwrap();
    gen.add_macs(&mut init, now);
    assert_eq!(init.len(), 148);

    let mut dst = vec![0u8; 2048];
    let resp = network(tunn.decapsulate(Some(TUNN_IP), &init, &mut dst));
    assert_eq!(resp.len(), 92);
    assert_eq!(message_type(&resp), Ok(MessageType::Response));
    // Tunn's MAC1 on the response is keyed by our public key.
    assert!(CookieChecker::new(ours.public_key()).check_mac1(&resp));
    let keys = consume_response(&ours, &peer, &state, resp.as_slice().try_into().unwrap()).unwrap();
    assert_eq!(keys.local_index, 0xdead_beef);
    let keypair = Keypair::new(keys, now);
    // Tunn (responder) only sends once our first data confirmed the session.
    data_both_ways(&keypair, &mut tunn);
}

#[test]
fn tunn_initiates_we_respond() {
    let mut rng = ChaCha20Rng::seed_from_u64(200);
    let psk = [0xa5; 32];
    let ours = Identity::new(secret(&mut rng));
    let their_secret = secret(&mut rng);
    let their_pub = PublicKey::from(&their_secret);
    let mut tunn = Tunn::new(their_secret, *ours.public_key(), Some(psk), None, 9, None);
    let peer = PeerKeys::new(&ours, their_pub, psk).unwrap();
    let checker = CookieChecker::new(ours.public_key());
    let mut gen = CookieGenerator::new(&their_pub);
    let now = Instant::now();

    let mut dst = vec![0u8; 2048];
    let init = network(tunn.format_handshake_initiation(&mut dst, false));
    assert_eq!(message_type(&init), Ok(MessageType::Initiation));
    assert!(checker.check_mac1(&init));
    let init: [u8; 148] = init.try_into().unwrap();
    let consumed =
        consume_initiation(&ours, &init, |k| (k == &their_pub).then_some(&peer)).unwrap();
    assert_eq!(consumed.remote_static, their_pub);
    let (mut resp, keys) = create_response(&peer, &consumed, 0x0102_0304, &mut rng).unwrap();
    gen.add_macs(&mut resp, now);
    let keypair = Keypair::new(keys, now);

    // Tunn confirms the session with a keepalive.
    let mut keepalive = network(tunn.decapsulate(Some(TUNN_IP), &resp, &mut dst));
    assert_eq!(keepalive.len(), 32);
    assert_eq!(keypair.open(&mut keepalive), Ok(0));
    data_both_ways(&keypair, &mut tunn);
}

#[test]
fn no_psk_interop() {
    let mut rng = ChaCha20Rng::seed_from_u64(300);
    let ours = Identity::new(secret(&mut rng));
    let their_secret = secret(&mut rng);
    let their_pub = PublicKey::from(&their_secret);
    let mut tunn = Tunn::new(their_secret, *ours.public_key(), None, None, 1, None);
    let peer = PeerKeys::new(&ours, their_pub, [0; 32]).unwrap();
    let (state, mut init) = create_initiation(
        &ours,
        &peer,
        5,
        Tai64n::from_system_time(SystemTime::now()),
        &mut rng,
    )
    .unwrap();
    CookieGenerator::new(&their_pub).add_macs(&mut init, Instant::now());
    let mut dst = vec![0u8; 2048];
    let resp = network(tunn.decapsulate(None, &init, &mut dst));
    let keys = consume_response(&ours, &peer, &state, resp.as_slice().try_into().unwrap()).unwrap();
    data_both_ways(&Keypair::new(keys, Instant::now()), &mut tunn);
}

/// Tunn's rate limiter with limit 0 is always "under load": our initiation
/// gets a cookie reply, which our generator must decrypt; the retried
/// initiation then carries a MAC2 Tunn accepts.
#[test]
fn cookie_reply_from_tunn_is_consumed() {
    let mut rng = ChaCha20Rng::seed_from_u64(400);
    let ours = Identity::new(secret(&mut rng));
    let their_secret = secret(&mut rng);
    let their_pub = PublicKey::from(&their_secret);
    let limiter = Arc::new(RateLimiter::new(&their_pub, 0));
    let mut tunn = Tunn::new(
        their_secret,
        *ours.public_key(),
        None,
        None,
        3,
        Some(limiter),
    );
    let peer = PeerKeys::new(&ours, their_pub, [0; 32]).unwrap();
    let mut gen = CookieGenerator::new(&their_pub);
    let now = Instant::now();

    let (state, mut init) = create_initiation(
        &ours,
        &peer,
        0x77,
        Tai64n::from_system_time(SystemTime::now()),
        &mut rng,
    )
    .unwrap();
    gen.add_macs(&mut init, now);
    let mut dst = vec![0u8; 2048];
    let reply = network(tunn.decapsulate(Some(TUNN_IP), &init, &mut dst));
    assert_eq!(message_type(&reply), Ok(MessageType::CookieReply));
    assert_eq!(&reply[4..8], &0x77u32.to_le_bytes());
    gen.consume_reply(reply.as_slice().try_into().unwrap(), now)
        .unwrap();

    gen.add_macs(&mut init, now);
    let resp = network(tunn.decapsulate(Some(TUNN_IP), &init, &mut dst));
    assert_eq!(message_type(&resp), Ok(MessageType::Response));
    assert!(consume_response(&ours, &peer, &state, resp.as_slice().try_into().unwrap()).is_ok());
}

/// The other way: our checker answers Tunn's initiation with a cookie reply;
/// Tunn decrypts it, and its next initiation carries a MAC2 our checker
/// accepts for that source address (and not for another).
#[test]
fn our_cookie_reply_is_consumed_by_tunn() {
    let mut rng = ChaCha20Rng::seed_from_u64(500);
    let ours = Identity::new(secret(&mut rng));
    let their_secret = secret(&mut rng);
    let mut tunn = Tunn::new(their_secret, *ours.public_key(), None, None, 4, None);
    let mut checker = CookieChecker::new(ours.public_key());
    let now = Instant::now();
    let src: SocketAddr = "203.0.113.5:51820".parse().unwrap();

    let mut dst = vec![0u8; 2048];
    let init = network(tunn.format_handshake_initiation(&mut dst, false));
    assert!(checker.check_mac1(&init));
    assert!(!checker.check_mac2(&init, src, now, &mut rng));
    let reply = checker.create_reply(&init, src, now, &mut rng);
    match tunn.decapsulate(Some(src.ip()), &reply, &mut dst) {
        TunnResult::Done => {}
        other => panic!("Tunn rejected our cookie reply: {other:?}"),
    }
    let init2 = network(tunn.format_handshake_initiation(&mut dst, true));
    assert!(checker.check_mac1(&init2));
    assert!(checker.check_mac2(&init2, src, now, &mut rng));
    assert!(!checker.check_mac2(&init2, "203.0.113.5:51821".parse().unwrap(), now, &mut rng));
    assert!(!checker.check_mac2(&init2, "203.0.113.6:51820".parse().unwrap(), now, &mut rng));
}
