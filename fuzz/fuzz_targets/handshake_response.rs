//! `consume_response` on structure-aware responses with a valid MAC1 for
//! the fixed initiator: fields chosen by the fuzzer, or a real response
//! (the crate's own responder answering a real initiation) with bytes
//! flipped. A real one must give the responder's keys in reverse; one with
//! a flipped ephemeral or encrypted byte never passes.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use phantommesh::noise::constants::{MESSAGE_RESPONSE, RESPONSE_LEN};
use phantommesh::noise::cookie::CookieChecker;
use phantommesh::noise::handshake::*;
use phantommesh::noise::tai64n::Tai64n;
use phantommesh_fuzz::*;
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
struct Input {
    local_index: u32,
    seed: u64,
    body: Body,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Fields {
        sender_index: u32,
        receiver_index: Option<u32>,
        ephemeral: [u8; 32],
        empty: [u8; 16],
    },
    Real {
        responder_seed: u64,
        responder_index: u32,
        flips: Vec<(u8, u8)>,
    },
}

struct Fixed {
    responder: Identity,
    initiator: Identity,
    peer: PeerKeys,
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
            to_responder: peer_keys(&initiator, RESPONDER_SECRET, PSK),
            checker: CookieChecker::new(initiator.public_key()),
            responder,
            initiator,
        }
    })
}

fuzz_target!(|inp: Input| {
    let f = fixed();
    let (state, init) = create_initiation(
        &f.initiator,
        &f.to_responder,
        inp.local_index,
        Tai64n([7; 12]),
        &mut FuzzRng(inp.seed),
    )
    .expect("initiation");
    let mut msg = [0u8; RESPONSE_LEN];
    let mut expect = None;
    match inp.body {
        Body::Fields {
            sender_index,
            receiver_index,
            ephemeral,
            empty,
        } => {
            msg[0..4].copy_from_slice(&MESSAGE_RESPONSE.to_le_bytes());
            msg[4..8].copy_from_slice(&sender_index.to_le_bytes());
            let r = receiver_index.unwrap_or(inp.local_index);
            msg[8..12].copy_from_slice(&r.to_le_bytes());
            msg[12..44].copy_from_slice(&ephemeral);
            msg[44..60].copy_from_slice(&empty);
        }
        Body::Real {
            responder_seed,
            responder_index,
            flips,
        } => {
            let consumed = consume_initiation(&f.responder, &init, |_| Some(&f.peer))
                .expect("real initiation");
            let (m, keys) = create_response(
                &f.peer,
                &consumed,
                responder_index,
                &mut FuzzRng(responder_seed),
            )
            .expect("real response");
            msg = m;
            for (at, x) in flips {
                msg[4 + usize::from(at) % 56] ^= x;
            }
            // Flips may cancel out: compare the authenticated bytes.
            let intact = msg[12..60] == m[12..60];
            let index_ok = msg[8..12] == inp.local_index.to_le_bytes();
            expect = Some((intact, index_ok, keys));
        }
    }
    add_mac1(&mut msg, f.initiator.public_key());
    assert!(f.checker.check_mac1(&msg));
    let res = consume_response(&f.initiator, &f.to_responder, &state, &msg);
    if let Err(HandshakeError::WrongIndex) = res {
        assert_ne!(msg[8..12], inp.local_index.to_le_bytes());
    }
    if let Some((intact, index_ok, keys)) = expect {
        match res {
            Ok(k) => {
                assert!(intact && index_ok, "a modified response was accepted");
                assert_eq!(k.send, keys.recv);
                assert_eq!(k.recv, keys.send);
                assert_eq!(
                    k.remote_index,
                    u32::from_le_bytes(msg[4..8].try_into().unwrap())
                );
                assert_eq!(k.local_index, inp.local_index);
            }
            Err(e) => assert!(!(intact && index_ok), "a real response was refused: {e:?}"),
        }
    }
});
