//! UAPI text: the operation line and the lines of a `set`, as a client
//! sends them; and the `get` formatting of what a set asked for, which must
//! only produce `key=value` lines.
#![no_main]
use libfuzzer_sys::fuzz_target;
use phantommesh::uapi::protocol::*;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let Some(first) = lines.next() else { return };
    let _ = parse_operation(first);
    let mut p = SetParser::new();
    let mut failed = None;
    for l in lines {
        if l.is_empty() {
            break;
        }
        match p.feed(l) {
            Ok(()) => assert!(failed.is_none(), "a line accepted after an error"),
            Err(e) => {
                assert!(e.errno == EINVAL || e.errno == EPROTO, "{e:?}");
                // Errors stick: the same one again.
                if let Some(f) = &failed {
                    assert_eq!(&e, f);
                }
                failed = Some(e);
            }
        }
    }
    if failed.is_some() {
        return;
    }
    let set = p.finish();
    let mut out = String::new();
    format_device(
        &DeviceInfo {
            private_key: set.private_key,
            listen_port: set.listen_port.unwrap_or(0),
            fwmark: set.fwmark.unwrap_or(0),
        },
        &mut out,
    );
    for peer in &set.peers {
        let info = PeerInfo {
            public_key: peer.public_key,
            preshared_key: peer.preshared_key.unwrap_or([0; 32]),
            endpoint: peer.endpoint,
            persistent_keepalive_interval: peer.persistent_keepalive_interval.unwrap_or(0),
            allowed_ips: peer
                .allowed_ips
                .iter()
                .filter_map(|c| match c {
                    AllowedIpChange::Add(a, p) => Some((*a, *p)),
                    AllowedIpChange::Remove(..) => None,
                })
                .collect(),
            ..Default::default()
        };
        format_peer(&info, &mut out);
    }
    // The reply's lines read back as a set wherever set has the same key.
    let mut again = SetParser::new();
    for l in out.lines() {
        assert!(l.contains('='), "{l:?}");
        let key = l.split_once('=').unwrap().0;
        if matches!(
            key,
            "private_key"
                | "listen_port"
                | "fwmark"
                | "public_key"
                | "preshared_key"
                | "protocol_version"
                | "endpoint"
                | "persistent_keepalive_interval"
                | "allowed_ip"
        ) {
            again
                .feed(l)
                .unwrap_or_else(|e| panic!("get line {l:?} does not parse: {e}"));
        }
    }
});
