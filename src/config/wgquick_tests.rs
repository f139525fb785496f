use super::*;
use crate::noise::keys::parse_base64_key;
use std::path::Path;

const PRIV: &str = "WB7g0wZGHz+kj2BGgTyVdR36taFGX+z5gEiOWGXIQnQ=";
const PK1: &str = "4nhsls0q7klSqPEh+VPMNSDd8fQGZoZospgUcqfAHiU=";
const PK2: &str = "Itut9G5WkuOcS9FOYJaud7rkmy2sZ+h7M5o2DR2Fqyc=";
const PSK: &str = "Zu2AUSyk20IWvURfW6URLotex720Aym8ZTiCcPdp0Vw=";

fn key(s: &str) -> [u8; 32] {
    parse_base64_key(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn parse_wg0(text: &str) -> Result<WgQuickConfig, ConfigError> {
    parse(text, Path::new("/etc/wireguard/wg0.conf"))
}

#[test]
fn golden() {
    // Mixed case, odd spacing, comments, repeated list keys, CRLF line ends.
    let text = format!(
        "# top comment\r\n\
         [Interface]\r\n\
         privatekey={PRIV}\r\n\
         ListenPort = 51820 # trailing comment\r\n\
         FwMark = 0x10\r\n\
         Address = 10.100.0.1/24 , fd00:100::1/64\r\n\
         ADDRESS = 10.100.1.1\r\n\
         MTU = 1420\r\n\
         DNS = 1.1.1.1, example.com\r\n\
         Table = off\r\n\
         PostUp = iptables -A FORWARD -i %i -j ACCEPT\r\n\
         \r\n\
         [peer]\r\n\
         PublicKey = {PK1}\r\n\
         PresharedKey = {PSK}\r\n\
         Endpoint = vpn.example.com:51820\r\n\
         AllowedIPs = 10.100.0.2/32, fd00:100::2/128\r\n\
         AllowedIPs = 192.168.0.0/16\r\n\
         PersistentKeepalive = 25\r\n\
         [ Peer ]\r\n\
         Public Key = {PK2}\r\n\
         Endpoint = [2001:db8::1]:51820\r\n\
         AllowedIPs =\r\n\
         PersistentKeepalive = off\r\n"
    );
    let parsed = parse_wg0(&text).unwrap();
    let expected = Config {
        interface: InterfaceConfig {
            name: "wg0".into(),
            private_key: KeySource::Inline(key(PRIV)),
            listen_port: Some(51820),
            fwmark: Some(16),
            addresses: vec![
                (ip("10.100.0.1"), 24),
                (ip("fd00:100::1"), 64),
                (ip("10.100.1.1"), 32),
            ],
            mtu: Some(1420),
            table: RouteTable::Off,
            allow_default_route: false,
            user: None,
            drop_privileges: None,
        },
        peers: vec![
            PeerConfig {
                public_key: key(PK1),
                preshared_key: Some(KeySource::Inline(key(PSK))),
                endpoint: Some("vpn.example.com:51820".into()),
                allowed_ips: vec![
                    (ip("10.100.0.2"), 32),
                    (ip("fd00:100::2"), 128),
                    (ip("192.168.0.0"), 16),
                ],
                persistent_keepalive: Some(25),
                probe: None,
            },
            PeerConfig {
                public_key: key(PK2),
                preshared_key: None,
                endpoint: Some("[2001:db8::1]:51820".into()),
                allowed_ips: vec![],
                persistent_keepalive: None,
                probe: None,
            },
        ],
        admin: AdminConfig::default(),
        mesh: None,
        tuning: Default::default(),
    };
    assert_eq!(parsed.config, expected);
    let ignored: Vec<(usize, &str)> = parsed
        .ignored
        .iter()
        .map(|k| (k.line, k.key.as_str()))
        .collect();
    assert_eq!(ignored, vec![(9, "DNS"), (11, "PostUp")]);
    let w = parsed.ignored[1].warning("wg0.conf");
    assert!(w.starts_with("wg0.conf:11: ignoring PostUp"), "{w}");
    // The hook's command line is not repeated in the warning.
    assert!(!w.contains("iptables"));
}

#[test]
fn scalar_keys_take_the_last_value_and_interface_sections_merge() {
    let text = format!(
        "[Interface]\nListenPort = 1\n[Peer]\nPublicKey = {PK1}\n[Interface]\nPrivateKey = {PRIV}\nListenPort = 2\n"
    );
    let c = parse_wg0(&text).unwrap().config;
    assert_eq!(c.interface.listen_port, Some(2));
    assert_eq!(c.peers.len(), 1);
}

#[test]
fn fwmark_and_keepalive_forms() {
    let with = |iface: &str, peer: &str| {
        parse_wg0(&format!(
            "[Interface]\nPrivateKey = {PRIV}\n{iface}\n[Peer]\nPublicKey = {PK1}\n{peer}\n"
        ))
    };
    assert_eq!(
        with("FwMark = off", "").unwrap().config.interface.fwmark,
        Some(0)
    );
    assert_eq!(
        with("FwMark = 4294967295", "")
            .unwrap()
            .config
            .interface
            .fwmark,
        Some(u32::MAX)
    );
    assert_eq!(
        with("FwMark = 0xFFffFFff", "")
            .unwrap()
            .config
            .interface
            .fwmark,
        Some(u32::MAX)
    );
    assert_eq!(
        with("", "PersistentKeepalive = 0").unwrap().config.peers[0].persistent_keepalive,
        None
    );
    assert_eq!(
        with("", "PersistentKeepalive = 65535")
            .unwrap()
            .config
            .peers[0]
            .persistent_keepalive,
        Some(65535)
    );
}

fn assert_err_in(path: &str, text: &str, line: usize, fragment: &str) {
    let e = parse(text, Path::new(path)).unwrap_err();
    assert_eq!(e.line, line, "{e}");
    let shown = e.to_string();
    let prefix = if line == 0 {
        format!("{path}: ")
    } else {
        format!("{path}:{line}: ")
    };
    assert!(shown.starts_with(&prefix), "{shown}");
    assert!(shown.contains(fragment), "{shown:?} lacks {fragment:?}");
}

fn assert_err(text: &str, line: usize, fragment: &str) {
    assert_err_in("conf/wg9.conf", text, line, fragment);
}

#[test]
fn every_error_names_file_and_line() {
    let iface = format!("[Interface]\nPrivateKey = {PRIV}\n");
    let peer = |body: &str| format!("{iface}[Peer]\nPublicKey = {PK1}\n{body}\n");
    assert_err(
        &format!("ListenPort = 1\n{iface}"),
        1,
        "outside of an [Interface] or [Peer] section",
    );
    assert_err(&format!("{iface}[Peers]\n"), 3, "unknown section [Peers]");
    assert_err(&format!("{iface}[Peer\n"), 3, "malformed section header");
    assert_err(&format!("{iface}ListenPort\n"), 3, "expected Key = Value");
    assert_err(
        &format!("{iface}PublicKey = {PK1}\n"),
        3,
        "unknown key PublicKey in [Interface]",
    );
    assert_err(
        &peer("Address = 10.0.0.1/32"),
        5,
        "unknown key Address in [Peer]",
    );
    // `wg setconf` would refuse it too: probes are a TOML-only setting.
    assert_err(
        &peer("ProbeAddress = 10.0.0.1"),
        5,
        "unknown key ProbeAddress in [Peer]",
    );
    assert_err("[Interface]\nPrivateKey = short\n", 2, "invalid PrivateKey");
    assert_err(
        &format!("{iface}ListenPort = 65536\n"),
        3,
        "invalid ListenPort",
    );
    assert_err(
        &format!("{iface}ListenPort = -1\n"),
        3,
        "invalid ListenPort",
    );
    assert_err(&format!("{iface}FwMark = 0x\n"), 3, "invalid FwMark");
    assert_err(
        &format!("{iface}FwMark = 4294967296\n"),
        3,
        "invalid FwMark",
    );
    assert_err(
        &format!("{iface}Address = 10.0.0.1/24, 10.0.0.300/24\n"),
        3,
        "invalid CIDR \"10.0.0.300/24\" in Address",
    );
    assert_err(&format!("{iface}MTU = 1420x\n"), 3, "invalid MTU");
    assert_err(&format!("{iface}MTU = 500\n"), 3, "mtu 500 out of range");
    // The IPv6 minimum is judged against addresses given after the MTU too.
    assert_err(
        &format!("{iface}MTU = 1200\nAddress = fd00::1/64\n"),
        3,
        "below 1280",
    );
    assert_err(&peer("PresharedKey = nope"), 5, "invalid PresharedKey");
    assert_err(
        &peer("AllowedIPs = 10.0.0.0/8, 10.0.0.0/33"),
        5,
        "invalid CIDR \"10.0.0.0/33\" in AllowedIPs",
    );
    assert_err(&peer("Endpoint = 192.0.2.1"), 5, "invalid endpoint");
    assert_err(&peer("Endpoint = [::1]:99999"), 5, "port must be 1..=65535");
    assert_err(
        &peer("PersistentKeepalive = 65536"),
        5,
        "invalid PersistentKeepalive",
    );
    assert_err(
        &peer("PersistentKeepalive = on"),
        5,
        "invalid PersistentKeepalive",
    );
    assert_err(
        &format!("{iface}\n[Peer]\nEndpoint = h:1\n"),
        4,
        "[Peer] has no PublicKey",
    );
    assert_err(
        &format!("{}[Peer]\nPublicKey = {PK1}\n", peer("")),
        7,
        "duplicate peer PublicKey (first given on line 4)",
    );
    assert_err(
        "# nothing\n[Interface]\nListenPort = 1\n",
        2,
        "[Interface] has no PrivateKey",
    );
    assert_err(
        &format!("[Peer]\nPublicKey = {PK1}\n"),
        0,
        "no [Interface] section",
    );
    assert_err_in(
        "/etc/wireguard/name-longer-than-15.conf",
        &iface,
        0,
        "invalid interface name \"name-longer-than-15\"",
    );
}

#[test]
fn interface_name_is_the_file_stem() {
    assert_eq!(
        interface_name_from_path(Path::new("/etc/wireguard/wg0.conf")).unwrap(),
        "wg0"
    );
    assert_eq!(
        interface_name_from_path(Path::new("a.b_c=d+e-f.conf")).unwrap(),
        "a.b_c=d+e-f"
    );
    assert!(interface_name_from_path(Path::new("/x/.conf")).is_err());
    assert!(interface_name_from_path(Path::new("/x/wg 0.conf")).is_err());
}

#[test]
fn shipped_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example-wg0.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = parse(&text, &path).unwrap();
    let c = &parsed.config;
    assert_eq!(c.interface.name, "example-wg0");
    assert_eq!(c.interface.private_key, KeySource::Inline(key(PRIV)));
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.peers[1].allowed_ips.len(), 2);
    assert_eq!(parsed.ignored.len(), 1);
    assert_eq!(parsed.ignored[0].key, "SaveConfig");
}

#[test]
fn wg_tool_accepts_the_same_keys() {
    // The public key we derive for the example's private key must be the one
    // `wg pubkey` derives, when wg is installed.
    let wg = Path::new("/usr/bin/wg");
    if !wg.exists() {
        eprintln!("skipping: /usr/bin/wg not installed");
        return;
    }
    use std::io::Write;
    let mut child = std::process::Command::new(wg)
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PRIV.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let theirs = key(std::str::from_utf8(&out.stdout).unwrap());
    assert_eq!(crate::cli::keys::public_key(&key(PRIV)), theirs);
}
