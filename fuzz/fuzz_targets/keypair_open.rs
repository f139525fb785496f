//! `Keypair::open` on data messages: arbitrary bytes, and real messages
//! sealed by the other side with bytes flipped. A real message opens once,
//! to its plaintext; a modified one never; a replay never.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use phantommesh::noise::handshake::SessionKeys;
use phantommesh::noise::keypair::{Keypair, OpenError};
use phantommesh::noise::replay::COUNTER_WINDOW_SIZE;
use std::time::Instant;

#[derive(Arbitrary, Debug)]
enum Msg {
    Raw(Vec<u8>),
    Sealed {
        counter: u16,
        plaintext: Vec<u8>,
        flips: Vec<(u16, u8)>,
        pad_to: u8,
    },
    Sealed64 {
        counter: u64,
        plaintext: Vec<u8>,
    },
}

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

fn seal(kp: &Keypair, counter: u64, plaintext: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 16 + plaintext.len() + 16];
    buf[16..16 + plaintext.len()].copy_from_slice(plaintext);
    let n = kp.seal(counter, &mut buf, plaintext.len());
    buf.truncate(n);
    buf
}

fuzz_target!(|msgs: Vec<Msg>| {
    let (sender, receiver) = pair();
    let mut opened = std::collections::HashSet::new();
    // One past the largest counter opened.
    let mut next = 0u64;
    for m in msgs.into_iter().take(64) {
        match m {
            Msg::Raw(mut b) => {
                if let Ok(n) = receiver.open(&mut b) {
                    panic!("forged message of {} bytes opened ({n})", b.len());
                }
            }
            Msg::Sealed {
                counter,
                plaintext,
                flips,
                pad_to,
            } => {
                let counter = u64::from(counter);
                let mut plaintext = plaintext;
                plaintext.resize(plaintext.len().max(usize::from(pad_to)), 0);
                let real = seal(&sender, counter, &plaintext);
                let mut b = real.clone();
                for (at, x) in flips {
                    let at = usize::from(at) % b.len();
                    b[at] ^= x;
                }
                // Flips may cancel out. (No memcmp: libFuzzer would learn
                // the sealed bytes from it and replay them as a Raw message.)
                let modified = b.iter().zip(&real).fold(0u8, |d, (x, y)| d | (x ^ y)) != 0;
                match receiver.open(&mut b) {
                    Ok(n) => {
                        assert!(!modified, "a modified message opened");
                        assert!(opened.insert(counter), "counter {counter} opened twice");
                        assert_eq!(&b[16..16 + n], &plaintext[..]);
                        next = next.max(counter + 1);
                    }
                    Err(OpenError::Replay) => {
                        let too_old = counter + 1 + COUNTER_WINDOW_SIZE < next;
                        assert!(opened.contains(&counter) || too_old || modified);
                    }
                    Err(e) => assert!(modified, "a real message failed: {e:?}"),
                }
            }
            Msg::Sealed64 { counter, plaintext } => {
                let mut b = seal(&sender, counter, &plaintext);
                if receiver.open(&mut b).is_ok() {
                    assert!(opened.insert(counter), "counter {counter} opened twice");
                    next = next.max(counter + 1);
                }
            }
        }
    }
});
