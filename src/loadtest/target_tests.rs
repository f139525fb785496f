use super::*;
use crate::uapi::protocol::{AllowedIpChange, SetParser};
use std::os::unix::net::UnixListener;

fn entries(n: usize) -> Vec<PeerEntry> {
    (0..n)
        .map(|i| PeerEntry {
            public_key: crate::cli::keys::public_key(&crate::loadtest::setup::private_key(
                Some("t"),
                i as u32,
            )),
            addr: format!("10.250.0.{}", i + 2).parse().unwrap(),
        })
        .collect()
}

/// Feeds a set message through the daemon's own UAPI parser.
fn parse_set(msg: &str) -> crate::uapi::protocol::DeviceSet {
    let mut lines = msg.lines();
    assert_eq!(lines.next(), Some("set=1"));
    let mut p = SetParser::new();
    let mut ended = false;
    for l in lines {
        if l.is_empty() {
            ended = true;
            break;
        }
        p.feed(l).unwrap();
    }
    assert!(ended && msg.ends_with("\n\n"), "terminated by a blank line");
    p.finish()
}

#[test]
fn add_and_remove_messages_parse_as_intended() {
    let e = entries(3);
    let set = parse_set(&add_peers_message(&e));
    assert_eq!(set.peers.len(), 3);
    for (p, want) in set.peers.iter().zip(&e) {
        assert_eq!(p.public_key, want.public_key);
        assert!(p.replace_allowed_ips && !p.remove);
        assert_eq!(p.allowed_ips, vec![AllowedIpChange::Add(want.addr, 32)]);
        assert_eq!(
            p.endpoint, None,
            "the target learns endpoints from handshakes"
        );
    }
    let set = parse_set(&remove_peers_message(&e));
    assert!(set.peers.iter().all(|p| p.remove));
    assert_eq!(set.peers[2].public_key, e[2].public_key);
    let v6 = PeerEntry {
        public_key: [1; 32],
        addr: "fd00::2".parse().unwrap(),
    };
    assert!(add_peers_message(&[v6]).contains("allowed_ip=fd00::2/128\n"));
}

#[test]
fn peer_file_and_removal_script() {
    let e = entries(150);
    let f = peer_file(&e);
    assert_eq!(f.matches("[Peer]").count(), 150);
    assert!(f.contains(&format!(
        "PublicKey = {}\nAllowedIPs = 10.250.0.2/32\n",
        encode_base64_key(&e[0].public_key)
    )));
    assert!(!f.contains("PrivateKey"), "no secrets in the file");
    let s = removal_script(&e);
    assert_eq!(s.matches(" remove").count(), 150);
    assert_eq!(
        s.lines().filter(|l| l.starts_with("wg set")).count(),
        2,
        "chunks of 100"
    );
}

#[test]
fn get_replies_yield_the_public_key_and_port_only() {
    let private = crate::cli::keys::generate_private_key();
    let reply = format!(
        "private_key={}\nlisten_port=51820\npublic_key={}\nallowed_ip=10.0.0.2/32\npublic_key={}\nerrno=0\n",
        hex::encode(private),
        hex::encode([7u8; 32]),
        hex::encode([8u8; 32])
    );
    let info = parse_get(&reply);
    assert_eq!(
        info.public_key,
        Some(crate::cli::keys::public_key(&private))
    );
    assert_eq!((info.listen_port, info.peers), (51820, 2));
    assert_eq!(listed_keys(&reply), vec![[7u8; 32], [8u8; 32]]);
    assert_eq!(parse_errno(&reply), Some(0));
    assert_eq!(parse_errno("errno=-22\n"), Some(-22));
    assert_eq!(parse_errno("nothing"), None);
    assert_eq!(parse_get("errno=0\n"), TargetInfo::default());
}

#[test]
fn talks_to_a_uapi_socket() {
    let dir = std::env::temp_dir().join(format!("pm-lt-uapi-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("t.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let mut got = Vec::new();
        for answer in ["errno=0\n\n", "errno=-22\n\n", "listen_port=9\nerrno=0\n\n"] {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut req = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap() == 0 || l == "\n" {
                    break;
                }
                req.push_str(&l);
            }
            got.push(req);
            (&s).write_all(answer.as_bytes()).unwrap();
        }
        // One more connection for the credentials check.
        let _ = listener.accept();
        got
    });
    let u = Uapi::new(&path);
    let e = entries(2);
    u.set(&add_peers_message(&e)).unwrap();
    let err = u.set(&remove_peers_message(&e)).unwrap_err();
    assert!(err.to_string().contains("errno=-22"));
    assert_eq!(parse_get(&u.get().unwrap()).listen_port, 9);
    assert_eq!(u.listener_pid().unwrap(), std::process::id());
    let got = server.join().unwrap();
    assert!(got[0].starts_with("set=1\npublic_key="));
    assert!(got[1].contains("remove=true"));
    assert_eq!(got[2], "get=1\n");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(Uapi::new(&dir.join("missing.sock")).get().is_err());
}
