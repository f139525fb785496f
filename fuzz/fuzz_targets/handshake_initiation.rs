//! `consume_initiation` on structure-aware initiations with a valid MAC1
//! for the fixed responder: either fields chosen by the fuzzer, or a real
//! initiation (made by the crate's own code) with bytes flipped. A real one
//! must be accepted; one with a flipped encrypted or ephemeral byte never.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use phantommesh::noise::constants::{INITIATION_LEN, MESSAGE_INITIATION};
use phantommesh::noise::cookie::CookieChecker;
use phantommesh::noise::handshake::{consume_initiation, create_initiation, Identity, PeerKeys};
use phantommesh::noise::tai64n::Tai64n;
use phantommesh_fuzz::*;
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
enum Input {
    Fields {
        sender_index: u32,
        ephemeral: [u8; 32],
        encrypted_static: [u8; 48],
        encrypted_timestamp: [u8; 28],
        lookup: u8,
    },
    Real {
        seed: u64,
        sender_index: u32,
        timestamp: [u8; 12],
        flips: Vec<(u8, u8)>,
        lookup: u8,
    },
}

struct Fixed {
    responder: Identity,
    initiator: Identity,
    /// The responder's view of the initiator, and of someone else.
    peer: PeerKeys,
    other: PeerKeys,
    /// The initiator's view of the responder.
    to_responder: PeerKeys,
    checker: CookieChecker,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let responder = identity(RESPONDER_SECRET);
        let initiator = identity(INITIATOR_SECRET);
        Fixed {
            peer: peer_keys(&responder, INITIATOR_SECRET, PSK),
            other: peer_keys(&responder, [0x44; 32], PSK),
            to_responder: peer_keys(&initiator, RESPONDER_SECRET, PSK),
            checker: CookieChecker::new(responder.public_key()),
            responder,
            initiator,
        }
    })
}

fuzz_target!(|inp: Input| {
    let f = fixed();
    let mut msg = [0u8; INITIATION_LEN];
    let (lookup, expect) = match inp {
        Input::Fields {
            sender_index,
            ephemeral,
            encrypted_static,
            encrypted_timestamp,
            lookup,
        } => {
            msg[0..4].copy_from_slice(&MESSAGE_INITIATION.to_le_bytes());
            msg[4..8].copy_from_slice(&sender_index.to_le_bytes());
            msg[8..40].copy_from_slice(&ephemeral);
            msg[40..88].copy_from_slice(&encrypted_static);
            msg[88..116].copy_from_slice(&encrypted_timestamp);
            (lookup, None)
        }
        Input::Real {
            seed,
            sender_index,
            timestamp,
            flips,
            lookup,
        } => {
            let (_, m) = create_initiation(
                &f.initiator,
                &f.to_responder,
                sender_index,
                Tai64n(timestamp),
                &mut FuzzRng(seed),
            )
            .expect("real initiation");
            msg = m;
            for (at, x) in flips {
                msg[4 + usize::from(at) % 112] ^= x;
            }
            // Flips may cancel out: compare the authenticated bytes.
            let intact = msg[8..116] == m[8..116];
            // The sender index is not authenticated: a flipped one is read as is.
            let index = u32::from_le_bytes(msg[4..8].try_into().unwrap());
            (lookup, Some((intact, index, timestamp)))
        }
    };
    add_mac1(&mut msg, f.responder.public_key());
    assert!(
        f.checker.check_mac1(&msg),
        "MAC1 written by the sender's code"
    );
    let res = consume_initiation(&f.responder, &msg, |_| match lookup % 3 {
        0 => Some(&f.peer),
        1 => Some(&f.other),
        _ => None,
    });
    if let Some((intact, index, timestamp)) = expect {
        match (&res, lookup % 3) {
            (Ok(c), 0) => {
                assert!(intact, "a modified initiation was accepted");
                assert_eq!(c.sender_index, index);
                assert_eq!(c.timestamp.0, timestamp);
                assert_eq!(
                    c.remote_static.as_bytes(),
                    f.initiator.public_key().as_bytes()
                );
            }
            (Ok(_), _) => panic!("accepted for the wrong peer"),
            (Err(e), 0) => assert!(!intact, "a real initiation was refused: {e:?}"),
            (Err(_), _) => {}
        }
    } else if let Ok(c) = &res {
        // Without the initiator's keys nobody makes one that decrypts...
        // unless the fuzzer found the encryption of a real one.
        assert_eq!(lookup % 3, 0);
        assert_eq!(
            c.remote_static.as_bytes(),
            f.initiator.public_key().as_bytes()
        );
    }
});
