//! MAC1/MAC2 checks and cookie replies. Arbitrary bytes through every check
//! (no panic at any length), and the real exchange with fuzzed messages,
//! sources and tampering: a reply made by the checker for a message is
//! consumed by the sender of that message, whose next MAC2 then passes for
//! the same source only; a tampered reply never is.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use phantommesh::noise::cookie::{CookieChecker, CookieError, CookieGenerator};
use phantommesh_fuzz::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Arbitrary, Debug)]
struct Input {
    msg: Vec<u8>,
    src: ([u8; 16], bool, u16),
    other_src: ([u8; 16], bool, u16),
    seed: u64,
    reply: [u8; 64],
    flip: Option<(u8, u8)>,
    /// Seconds between the reply and the next message.
    later: u8,
}

fn addr((ip, v4, port): ([u8; 16], bool, u16)) -> SocketAddr {
    let ip = if v4 {
        IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(ip))
    };
    SocketAddr::new(ip, port)
}

fuzz_target!(|inp: Input| {
    let responder = public(RESPONDER_SECRET);
    let mut checker = CookieChecker::new(&responder);
    let mut rng = FuzzRng(inp.seed);
    let now = Instant::now();
    let (src, other) = (addr(inp.src), addr(inp.other_src));

    // Raw bytes: any length, any content.
    let _ = checker.check_mac1(&inp.msg);
    let _ = checker.check_mac2(&inp.msg, src, now, &mut rng);
    let _ = checker.create_reply(&inp.msg, src, now, &mut rng);
    let mut gen = CookieGenerator::new(&responder);
    assert_eq!(
        gen.consume_reply(&inp.reply, now),
        Err(CookieError::Unexpected)
    );

    // The exchange, on a message of at least the two MACs.
    let mut msg = inp.msg.clone();
    msg.resize(msg.len().max(32), 0);
    gen.add_macs(&mut msg, now);
    assert!(checker.check_mac1(&msg));
    let mut reply = checker.create_reply(&msg, src, now, &mut rng);
    let tampered = match inp.flip {
        Some((at, x)) if x != 0 && at % 64 >= 8 => {
            reply[usize::from(at % 64)] ^= x;
            true
        }
        _ => false,
    };
    // The fuzzer's own reply first. It can decrypt only if it is a real
    // one for this MAC1 (libFuzzer learns earlier runs' replies from the
    // comparisons here): then it uses up the message, and the checker's
    // reply finds nothing to answer.
    let early = gen.consume_reply(&inp.reply, now);
    let res = gen.consume_reply(&reply, now);
    if early.is_ok() {
        assert_eq!(
            res,
            Err(CookieError::Unexpected),
            "two replies to one message"
        );
        return;
    }
    if tampered {
        assert_eq!(res, Err(CookieError::DecryptFailed));
        return;
    }
    assert_eq!(res, Ok(()));
    assert_eq!(
        gen.consume_reply(&reply, now),
        Err(CookieError::Unexpected),
        "consumed twice"
    );
    let later = now + Duration::from_secs(u64::from(inp.later));
    gen.add_macs(&mut msg, later);
    let same = src.ip().to_canonical() == other.ip().to_canonical() && src.port() == other.port();
    // Within the cookie's validity and the secret's age, MAC2 holds for the
    // source the cookie was made for.
    if inp.later < 115 {
        assert!(
            checker.check_mac2(&msg, src, later, &mut rng),
            "MAC2 of a fresh cookie"
        );
        assert_eq!(checker.check_mac2(&msg, other, later, &mut rng), same);
    }
});
