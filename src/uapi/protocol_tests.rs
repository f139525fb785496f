use super::*;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

const PRIV: &str = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a";
const PUB1: &str = "b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33";
const PSK1: &str = "188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52";
const PUB2: &str = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376";
const PUB3: &str = "662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58";
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn key(h: &str) -> [u8; 32] {
    let mut k = [0u8; 32];
    hex::decode_to_slice(h, &mut k).unwrap();
    k
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Feeds a whole operation body (the lines after `set=1`, up to and
/// without the empty line).
fn parse(body: &str) -> Result<DeviceSet, UapiError> {
    let mut p = SetParser::new();
    for line in body.lines() {
        p.feed(line)?;
    }
    Ok(p.finish())
}

#[test]
fn operations() {
    assert_eq!(parse_operation("get=1"), Ok(Operation::Get));
    assert_eq!(parse_operation("set=1"), Ok(Operation::Set));
    assert_eq!(parse_operation("set=1\n"), Ok(Operation::Set));
    for bad in ["get=2", "", "get", "GET=1", "set=1\n\n", " get=1", "get=1 "] {
        assert_eq!(parse_operation(bad).unwrap_err().errno, EINVAL, "{bad:?}");
    }
}

#[test]
fn setconf_whole_device() {
    // What `wg setconf` writes (wireguard-tools ipc-uapi.h), two peers and
    // one removal.
    let body = format!(
        "private_key={PRIV}\n\
         listen_port=51820\n\
         fwmark=4660\n\
         replace_peers=true\n\
         public_key={PUB1}\n\
         preshared_key={PSK1}\n\
         endpoint=192.0.2.7:51820\n\
         persistent_keepalive_interval=25\n\
         replace_allowed_ips=true\n\
         allowed_ip=10.0.0.2/32\n\
         allowed_ip=192.168.0.0/16\n\
         public_key={PUB2}\n\
         endpoint=[2001:db8::7]:4500\n\
         replace_allowed_ips=true\n\
         allowed_ip=fd00::2/128\n\
         allowed_ip=0.0.0.0/0\n\
         public_key={PUB3}\n\
         remove=true\n"
    );
    let want = DeviceSet {
        private_key: Some(key(PRIV)),
        listen_port: Some(51820),
        fwmark: Some(4660),
        replace_peers: true,
        peers: vec![
            PeerSet {
                public_key: key(PUB1),
                preshared_key: Some(key(PSK1)),
                endpoint: Some("192.0.2.7:51820".parse().unwrap()),
                persistent_keepalive_interval: Some(25),
                replace_allowed_ips: true,
                allowed_ips: vec![
                    AllowedIpChange::Add(ip("10.0.0.2"), 32),
                    AllowedIpChange::Add(ip("192.168.0.0"), 16),
                ],
                ..PeerSet::default()
            },
            PeerSet {
                public_key: key(PUB2),
                endpoint: Some(SocketAddr::V6(SocketAddrV6::new(
                    "2001:db8::7".parse().unwrap(),
                    4500,
                    0,
                    0,
                ))),
                replace_allowed_ips: true,
                allowed_ips: vec![
                    AllowedIpChange::Add(ip("fd00::2"), 128),
                    AllowedIpChange::Add(ip("0.0.0.0"), 0),
                ],
                ..PeerSet::default()
            },
            PeerSet {
                public_key: key(PUB3),
                remove: true,
                ..PeerSet::default()
            },
        ],
    };
    assert_eq!(parse(&body), Ok(want));
}

#[test]
fn set_peer_allowed_ip_add_and_remove() {
    // `wg set wg0 peer PUB1 allowed-ips +fd00::/64,-10.0.0.0/24` style, plus
    // update_only from a controller that must not create peers.
    let body = format!(
        "public_key={PUB1}\n\
         update_only=true\n\
         allowed_ip=-10.0.0.0/24\n\
         allowed_ip=fd00::/64\n\
         allowed_ip=-fd00::1/128\n\
         protocol_version=1\n"
    );
    let set = parse(&body).unwrap();
    assert_eq!(set.private_key, None);
    assert_eq!(set.listen_port, None);
    assert!(!set.replace_peers);
    assert_eq!(
        set.peers,
        vec![PeerSet {
            public_key: key(PUB1),
            update_only: true,
            allowed_ips: vec![
                AllowedIpChange::Remove(ip("10.0.0.0"), 24),
                AllowedIpChange::Add(ip("fd00::"), 64),
                AllowedIpChange::Remove(ip("fd00::1"), 128),
            ],
            ..PeerSet::default()
        }]
    );
}

#[test]
fn clearing_values_and_case() {
    let body = format!(
        "private_key={ZERO}\n\
         listen_port=0\n\
         fwmark=0\n\
         public_key={}\n\
         preshared_key={ZERO}\n\
         persistent_keepalive_interval=0\n\
         public_key={PUB1}\n\
         persistent_keepalive_interval=65535\n\
         endpoint=[::ffff:192.0.2.1]:1\n",
        PUB2.to_uppercase()
    );
    let set = parse(&body).unwrap();
    assert_eq!(set.private_key, Some([0; 32]));
    assert_eq!(set.listen_port, Some(0));
    assert_eq!(set.fwmark, Some(0));
    assert_eq!(set.peers[0].public_key, key(PUB2));
    assert_eq!(set.peers[0].preshared_key, Some([0; 32]));
    assert_eq!(set.peers[0].persistent_keepalive_interval, Some(0));
    assert_eq!(set.peers[1].persistent_keepalive_interval, Some(65535));
    let mapped = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped();
    assert_eq!(
        set.peers[1].endpoint,
        Some(SocketAddr::V6(SocketAddrV6::new(mapped, 1, 0, 0)))
    );
}

#[test]
fn replace_allowed_ips_drops_earlier_lines_of_the_section() {
    // wireguard-go applies lines in order: a replace after some allowed_ip
    // lines removes those too.
    let body = format!(
        "public_key={PUB1}\n\
         allowed_ip=10.0.0.1/32\n\
         replace_allowed_ips=true\n\
         allowed_ip=10.0.0.2/32\n"
    );
    let set = parse(&body).unwrap();
    assert!(set.peers[0].replace_allowed_ips);
    assert_eq!(
        set.peers[0].allowed_ips,
        vec![AllowedIpChange::Add(ip("10.0.0.2"), 32)]
    );
}

#[test]
fn malformed_lines_give_their_errno() {
    let peer = format!("public_key={PUB1}");
    let cases: &[(&[&str], &str, i32)] = &[
        // (lines before, failing line, errno)
        (&[], "listen_port", EPROTO),
        (&[], "", EPROTO),
        (&[&peer], "endpoint", EPROTO),
        (&[], "unknown_key=1", EINVAL),
        (&[], "=1", EINVAL),
        (&[&peer], "unknown_key=1", EINVAL),
        (&[&peer], "listen_port=1", EINVAL),
        (&[&peer], "private_key=0", EINVAL),
        (&[&peer], "replace_peers=true", EINVAL),
        (&[], "endpoint=192.0.2.1:1", EINVAL),
        (&[], "allowed_ip=10.0.0.0/8", EINVAL),
        (&[], "protocol_version=1", EINVAL),
        (&[], "last_handshake_time_sec=0", EINVAL),
        (&[&peer], "rx_bytes=0", EINVAL),
        (&[], "private_key=abc", EINVAL),
        (&[], "private_key=", EINVAL),
        (&[], "private_key=0g", EINVAL),
        (&[], "listen_port=65536", EINVAL),
        (&[], "listen_port=-1", EINVAL),
        (&[], "listen_port=+1", EINVAL),
        (&[], "listen_port=", EINVAL),
        (&[], "listen_port= 1", EINVAL),
        (&[], "listen_port=0x10", EINVAL),
        (&[], "fwmark=4294967296", EINVAL),
        (&[], "fwmark=-1", EINVAL),
        (&[], "replace_peers=false", EINVAL),
        (&[], "replace_peers=1", EINVAL),
        (&[], "replace_peers=TRUE", EINVAL),
        (&[], "public_key=", EINVAL),
        (&[], "public_key=b85996fecc9c7f1f", EINVAL),
        (&[&peer], "update_only=false", EINVAL),
        (&[&peer], "remove=1", EINVAL),
        (&[&peer], "replace_allowed_ips=yes", EINVAL),
        (&[&peer], "preshared_key=1234", EINVAL),
        (&[&peer], "endpoint=192.0.2.1", EINVAL),
        (&[&peer], "endpoint=192.0.2.1:", EINVAL),
        (&[&peer], "endpoint=192.0.2.1:65536", EINVAL),
        (&[&peer], "endpoint=2001:db8::1:51820", EINVAL),
        (&[&peer], "endpoint=[fe80::1%eth0]:51820", EINVAL),
        (&[&peer], "endpoint=[fe80::1%2]:51820", EINVAL),
        (&[&peer], "endpoint=vpn.example.com:51820", EINVAL),
        (&[&peer], "endpoint=", EINVAL),
        (&[&peer], "persistent_keepalive_interval=65536", EINVAL),
        (&[&peer], "persistent_keepalive_interval=-1", EINVAL),
        (&[&peer], "persistent_keepalive_interval=off", EINVAL),
        (&[&peer], "allowed_ip=10.0.0.1", EINVAL),
        (&[&peer], "allowed_ip=10.0.0.0/33", EINVAL),
        (&[&peer], "allowed_ip=fd00::/129", EINVAL),
        (&[&peer], "allowed_ip=10.0.0.0/-1", EINVAL),
        (&[&peer], "allowed_ip=10.0.0.0/+8", EINVAL),
        (&[&peer], "allowed_ip=10.0.0.0/08", EINVAL),
        (&[&peer], "allowed_ip=10.0.0.0/", EINVAL),
        (&[&peer], "allowed_ip=010.0.0.0/8", EINVAL),
        (&[&peer], "allowed_ip=fe80::%eth0/64", EINVAL),
        (&[&peer], "allowed_ip=-", EINVAL),
        (&[&peer], "allowed_ip=--10.0.0.0/8", EINVAL),
        (&[&peer], "allowed_ip=", EINVAL),
        (&[&peer], "protocol_version=2", EPROTO),
        (&[&peer], "protocol_version=", EPROTO),
        (&[&peer], "protocol_version=01", EPROTO),
    ];
    for (before, line, errno) in cases {
        let mut p = SetParser::new();
        for ok in *before {
            p.feed(ok).unwrap();
        }
        let err = p.feed(line).expect_err(line);
        assert_eq!(err.errno, *errno, "{line:?}: {err}");
    }
    // Bad hex of the right length.
    let mut p = SetParser::new();
    let bad = format!("private_key={}g", &PRIV[..63]);
    assert_eq!(p.feed(&bad).unwrap_err().errno, EINVAL);
}

#[test]
fn error_is_sticky_and_keeps_secrets_out() {
    let mut p = SetParser::new();
    let line = format!("private_key={}", &PRIV[..62]);
    let err = p.feed(&line).unwrap_err();
    assert!(!err.to_string().contains(&PRIV[..62]), "{err}");
    // Later valid lines keep answering the first error.
    assert_eq!(p.feed("listen_port=1"), Err(err.clone()));
    assert_eq!(p.feed(&format!("public_key={PUB1}")), Err(err));
}

#[test]
fn format_device_golden() {
    let mut out = String::new();
    format_device(
        &DeviceInfo {
            private_key: Some(key(PRIV)),
            listen_port: 51820,
            fwmark: 4660,
        },
        &mut out,
    );
    assert_eq!(
        out,
        format!("private_key={PRIV}\nlisten_port=51820\nfwmark=4660\n")
    );

    let mut out = String::new();
    format_device(
        &DeviceInfo {
            private_key: None,
            listen_port: 51820,
            fwmark: 0,
        },
        &mut out,
    );
    assert_eq!(out, "listen_port=51820\n");

    let mut out = String::from("keep\n");
    format_device(
        &DeviceInfo {
            private_key: Some([0; 32]),
            listen_port: 0,
            fwmark: 1,
        },
        &mut out,
    );
    assert_eq!(
        out, "keep\nfwmark=1\n",
        "appends; zero key and port omitted"
    );
}

#[test]
fn format_peer_golden() {
    let mut out = String::new();
    format_peer(
        &PeerInfo {
            public_key: key(PUB1),
            preshared_key: key(PSK1),
            endpoint: Some("192.0.2.7:51820".parse().unwrap()),
            last_handshake_time_sec: 1_700_000_000,
            last_handshake_time_nsec: 123_456_789,
            tx_bytes: 1_234_567,
            rx_bytes: 89,
            persistent_keepalive_interval: 25,
            allowed_ips: vec![(ip("10.0.0.2"), 32), (ip("fd00::"), 64)],
        },
        &mut out,
    );
    let want = format!(
        "public_key={PUB1}\n\
         preshared_key={PSK1}\n\
         protocol_version=1\n\
         endpoint=192.0.2.7:51820\n\
         last_handshake_time_sec=1700000000\n\
         last_handshake_time_nsec=123456789\n\
         tx_bytes=1234567\n\
         rx_bytes=89\n\
         persistent_keepalive_interval=25\n\
         allowed_ip=10.0.0.2/32\n\
         allowed_ip=fd00::/64\n"
    );
    assert_eq!(out, want);

    let v6 = SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7),
        4500,
        0,
        0,
    ));
    let mut out = String::new();
    format_peer(
        &PeerInfo {
            public_key: key(PUB2),
            endpoint: Some(v6),
            ..PeerInfo::default()
        },
        &mut out,
    );
    let want = format!(
        "public_key={PUB2}\n\
         protocol_version=1\n\
         endpoint=[2001:db8::7]:4500\n\
         last_handshake_time_sec=0\n\
         last_handshake_time_nsec=0\n\
         tx_bytes=0\n\
         rx_bytes=0\n\
         persistent_keepalive_interval=0\n"
    );
    assert_eq!(out, want);

    // No endpoint: the line is left out entirely.
    let mut out = String::new();
    format_peer(
        &PeerInfo {
            public_key: key(PUB3),
            allowed_ips: vec![(ip("0.0.0.0"), 0)],
            ..PeerInfo::default()
        },
        &mut out,
    );
    assert!(!out.contains("endpoint="));
    assert!(!out.contains("preshared_key="));
    assert!(out.starts_with(&format!("public_key={PUB3}\nprotocol_version=1\nlast_")));
    assert!(out.ends_with("persistent_keepalive_interval=0\nallowed_ip=0.0.0.0/0\n"));
}

#[test]
fn formatted_keys_parse_back() {
    // The hex a get emits is what a set accepts.
    let mut out = String::new();
    format_device(
        &DeviceInfo {
            private_key: Some(key(PRIV)),
            listen_port: 1,
            fwmark: 2,
        },
        &mut out,
    );
    let set = parse(&out).unwrap();
    assert_eq!(set.private_key, Some(key(PRIV)));
    assert_eq!(set.listen_port, Some(1));
    assert_eq!(set.fwmark, Some(2));
}

/// Every spelling of a key that a `Debug` print could leak: hex, base64 and
/// the byte array.
fn leaks(text: &str, k: &[u8; 32]) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(k);
    text.contains(&hex::encode(k)) || text.contains(&b64) || text.contains(&format!("{k:?}"))
}

#[test]
fn debug_hides_private_and_preshared_keys() {
    let set = parse(&format!(
        "private_key={PRIV}\npublic_key={PUB1}\npreshared_key={PSK1}\nendpoint=10.0.0.1:51820"
    ))
    .unwrap();
    let text = format!("{set:?}");
    assert!(!leaks(&text, &key(PRIV)), "{text}");
    assert!(!leaks(&text, &key(PSK1)), "{text}");
    assert!(text.contains("(hidden)"), "{text}");
    // The public key and the rest stay readable.
    assert!(text.contains(PUB1), "{text}");
    assert!(text.contains("10.0.0.1:51820"), "{text}");
    let alt = format!("{set:#?}");
    assert!(
        !leaks(&alt, &key(PRIV)) && !leaks(&alt, &key(PSK1)),
        "{alt}"
    );

    let dev = DeviceInfo {
        private_key: Some(key(PRIV)),
        ..Default::default()
    };
    let text = format!("{dev:?}");
    assert!(
        !leaks(&text, &key(PRIV)) && text.contains("(hidden)"),
        "{text}"
    );
    let peer = PeerInfo {
        public_key: key(PUB1),
        preshared_key: key(PSK1),
        ..Default::default()
    };
    let text = format!("{peer:?}");
    assert!(
        !leaks(&text, &key(PSK1)) && text.contains("(hidden)"),
        "{text}"
    );
    assert!(text.contains(PUB1), "{text}");
    // No key set: nothing claims one is hidden.
    let text = format!("{:?}", PeerInfo::default());
    assert!(!text.contains("(hidden)"), "{text}");
}
