//! Who may read what, and the forced-handshake limit, through the real
//! router and server on devices on the in-memory backends.
use super::*;
use crate::device::test_node::TestNode as Node;
use crate::io::mem::MemNetwork;
use std::io::{Read, Write};
use std::time::Instant;

const TOKEN: &str = "t0ken-that-must-never-be-echoed";

/// A GET over a plain socket: (status line and headers, body).
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A and B with a completed handshake (A initiated).
fn pair(net: &MemNetwork, port: u16) -> (Node, Node) {
    let a = Node::new(net, "192.0.2.1", port, [0x11; 32]);
    let b = Node::new(net, "192.0.2.2", port + 1, [0x22; 32]);
    a.add_peer(&b, None, true, &[("10.100.0.2", 32)]);
    b.add_peer(&a, None, false, &[("10.100.0.1", 32)]);
    (a, b)
}

fn served(
    dev: &Arc<Device>,
    token: Option<&str>,
    off_loopback: bool,
) -> (Arc<AdminState>, SocketAddr) {
    let st = AdminState::new(
        dev.clone(),
        "pm-nonexistent9",
        token.map(|t| t.as_bytes().to_vec()),
        crate::gates::GatesConfig::default(),
    );
    let addr = serve(st.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    assert!(
        !st.off_loopback.load(Ordering::Relaxed),
        "127.0.0.1 is loopback"
    );
    // The rules for a node IP, without needing one in a unit test.
    st.off_loopback.store(off_loopback, Ordering::Relaxed);
    (st, addr)
}

#[test]
fn off_loopback_keys_need_the_token_and_health_stays_open() {
    let net = MemNetwork::new();
    let (a, _b) = pair(&net, 54110);
    let (_st, addr) = served(&a.dev, Some(TOKEN), true);
    for path in ["/metrics", "/mesh", "/tunnel-test"] {
        for bad in [None, Some("wrong"), Some("")] {
            let (head, body) = get(addr, path, bad);
            assert_eq!(status(&head), 401, "{path} with {bad:?}: {head}");
            assert!(head.contains("www-authenticate: Bearer"), "{head}");
            assert!(body.contains("bearer token required"), "{body}");
        }
        let (head, body) = get(addr, path, Some(TOKEN));
        assert_ne!(status(&head), 401, "{path}: {head}{body}");
        assert!(!head.contains(TOKEN) && !body.contains(TOKEN), "{path}");
    }
    let (head, body) = get(addr, "/metrics", Some(TOKEN));
    assert_eq!(status(&head), 200);
    assert!(body.contains("phantommesh_"), "{body}");
    for path in [
        "/livez",
        "/readyz/ping",
        "/healthz?exclude=self-test",
        "/gates",
    ] {
        let (head, _) = get(addr, path, None);
        assert_ne!(status(&head), 401, "{path} must stay open: {head}");
    }
}

#[test]
fn on_loopback_only_the_tunnel_test_needs_the_token() {
    let net = MemNetwork::new();
    let (a, _b) = pair(&net, 54120);
    let (_st, addr) = served(&a.dev, Some(TOKEN), false);
    assert_eq!(status(&get(addr, "/metrics", None).0), 200);
    assert_eq!(
        status(&get(addr, "/mesh", None).0),
        404,
        "no mesh: 404, not 401"
    );
    assert_eq!(status(&get(addr, "/tunnel-test", None).0), 401);
    let (_st, addr) = served(&a.dev, None, true);
    assert_eq!(
        status(&get(addr, "/metrics", None).0),
        200,
        "allow_unauthenticated: open"
    );
}

/// Two `/tunnel-test?peer=` within 5 s: the first forces a handshake, the
/// second reports on that session and leaves the peer's handshake alone.
#[test]
fn a_second_peer_test_within_the_window_reuses_the_session() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 54130);
    let (st, addr) = served(&a.dev, Some(TOKEN), false);
    let key = crate::noise::keys::encode_base64_key(&b.public())
        .replace('+', "%2B")
        .replace('=', "%3D");
    let path = format!("/tunnel-test?peer={key}");
    let (head, body) = get(addr, &path, Some(TOKEN));
    assert_eq!(status(&head), 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["handshake"], "forced", "{v}");
    assert!(v["handshake_ms"].is_number(), "{v}");
    let last_handshake = || a.dev.peer_snapshot(&b.public()).unwrap().last_handshake;
    let first = last_handshake();
    assert!(first.is_some());
    let (head, body) = get(addr, &path, Some(TOKEN));
    assert_eq!(status(&head), 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["handshake"], "reused", "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["handshake_ms"].is_null(), "{v}");
    assert!(v["handshake_age_seconds"].as_f64().unwrap() < 5.0, "{v}");
    assert_eq!(last_handshake(), first, "no new handshake");
    // Another forced handshake once the window has passed (the clock is
    // the limiter's: claim for a moment 5 s on instead of sleeping).
    let later = Instant::now() + handshake_limit::FORCED_HANDSHAKE_INTERVAL;
    assert!(st.forced_handshakes.claim(&b.public(), later).is_ok());
}

/// Within the window and without a session there is nothing to report on:
/// an error that says when to retry, and no handshake is forced.
#[test]
fn a_reused_test_without_a_session_fails_and_says_when_to_retry() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 54140);
    let st = AdminState::new(
        a.dev.clone(),
        "pm-x",
        None,
        crate::gates::GatesConfig::default(),
    );
    st.forced_handshakes
        .claim(&b.public(), Instant::now())
        .unwrap();
    let rep = st.run_test(Some(b.public()), 1).unwrap();
    assert_eq!(rep.handshake, Some(tunnel_test::REUSED));
    assert!(!rep.ok);
    assert!(rep.errors[0].contains("retry in"), "{:?}", rep.errors);
    let peer = a.dev.peer_snapshot(&b.public()).unwrap();
    assert!(peer.last_handshake.is_none(), "no handshake forced");
}
