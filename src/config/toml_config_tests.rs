use super::*;
use crate::noise::keys::parse_base64_key;
use std::collections::HashMap;
use std::net::IpAddr;

const PK1: &str = "4nhsls0q7klSqPEh+VPMNSDd8fQGZoZospgUcqfAHiU=";
const PK2: &str = "Itut9G5WkuOcS9FOYJaud7rkmy2sZ+h7M5o2DR2Fqyc=";

const GOLDEN: &str = r#"# PhantomMesh test config
[interface]
name = "pm0"
private_key_file = "keys/private.key"   # relative: resolved next to this file
listen_port = 51820
addresses = ["10.100.0.1/24", "fd00:100::1/64"]
mtu = 1420
fwmark = 51

[admin]
listen = "127.0.0.1:9586"
token_file = "/etc/phantommesh/admin.token"
allow_unauthenticated = true

[[peer]]
public_key = "4nhsls0q7klSqPEh+VPMNSDd8fQGZoZospgUcqfAHiU="
preshared_key_file = "peer1.psk"
endpoint = "192.0.2.1:51820"
allowed_ips = ["10.100.0.2/32", "fd00:100::2/128"]
persistent_keepalive = 25
probe = "fd00:100::2"

[[peer]]
public_key = "Itut9G5WkuOcS9FOYJaud7rkmy2sZ+h7M5o2DR2Fqyc="
endpoint = "[2001:db8::1]:51820"
allowed_ips = ["10.100.0.3"]
persistent_keepalive = 0
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn parse_at(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("/etc/phantommesh/phantommesh.toml"))
}

#[test]
fn golden() {
    let cfg = parse_at(GOLDEN).unwrap();
    let expected = Config {
        interface: InterfaceConfig {
            name: "pm0".into(),
            private_key: KeySource::File("/etc/phantommesh/keys/private.key".into()),
            listen_port: Some(51820),
            fwmark: Some(51),
            addresses: vec![(ip("10.100.0.1"), 24), (ip("fd00:100::1"), 64)],
            mtu: Some(1420),
            table: RouteTable::Auto,
            allow_default_route: false,
            user: None,
            drop_privileges: None,
        },
        peers: vec![
            PeerConfig {
                public_key: parse_base64_key(PK1).unwrap(),
                preshared_key: Some(KeySource::File("/etc/phantommesh/peer1.psk".into())),
                endpoint: Some("192.0.2.1:51820".into()),
                allowed_ips: vec![(ip("10.100.0.2"), 32), (ip("fd00:100::2"), 128)],
                persistent_keepalive: Some(25),
                probe: Some(ip("fd00:100::2")),
            },
            PeerConfig {
                public_key: parse_base64_key(PK2).unwrap(),
                preshared_key: None,
                endpoint: Some("[2001:db8::1]:51820".into()),
                allowed_ips: vec![(ip("10.100.0.3"), 32)],
                persistent_keepalive: None,
                probe: None,
            },
        ],
        admin: AdminConfig {
            listen: "127.0.0.1:9586".into(),
            token_file: Some("/etc/phantommesh/admin.token".into()),
            allow_unauthenticated: true,
        },
        mesh: None,
        tuning: Default::default(),
    };
    assert_eq!(cfg, expected);
}

#[test]
fn minimal_uses_defaults() {
    let cfg = parse_at("[interface]\nname = \"wg0\"\nprivate_key_file = \"/k\"\n").unwrap();
    assert_eq!(cfg.admin, AdminConfig::default());
    assert!(cfg.peers.is_empty());
    assert_eq!(cfg.interface.listen_port, None);
    assert_eq!(cfg.interface.mtu, None);
    assert_eq!(cfg.interface.private_key, KeySource::File("/k".into()));
}

#[test]
fn relative_paths_follow_the_config_directory() {
    let text =
        "[interface]\nname = \"wg0\"\nprivate_key_file = \"a/k\"\n[admin]\ntoken_file = \"t\"\n";
    let cfg = parse(text, Path::new("conf/pm.toml")).unwrap();
    assert_eq!(
        cfg.interface.private_key,
        KeySource::File("conf/a/k".into())
    );
    assert_eq!(cfg.admin.token_file, Some("conf/t".into()));
    // A bare file name (config in the working directory) stays relative.
    let cfg = parse(text, Path::new("pm.toml")).unwrap();
    assert_eq!(cfg.interface.private_key, KeySource::File("a/k".into()));
}

fn base(extra_interface: &str) -> String {
    format!("[interface]\nname = \"pm0\"\nprivate_key_file = \"k\"\n{extra_interface}")
}

/// Asserts the error's rendered text: file, line and a message fragment.
fn assert_err(text: &str, line: usize, fragment: &str) {
    let e = parse(text, Path::new("config/bad.toml")).unwrap_err();
    assert_eq!(e.line, line, "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("config/bad.toml:{line}: ")),
        "{shown}"
    );
    assert!(shown.contains(fragment), "{shown:?} lacks {fragment:?}");
}

#[test]
fn syntax_and_schema_errors() {
    assert_err("[interface\nname = 1\n", 1, "invalid table header");
    assert_err(&base("mtu = 1420\ntypo = 1\n"), 5, "unknown field `typo`");
    assert_err(
        "[interfaces]\nname = \"x\"\n",
        1,
        "unknown field `interfaces`",
    );
    assert_err(
        "\n[interface]\nname = \"pm0\"\n",
        2,
        "missing field `private_key_file` in [interface]",
    );
    assert_err(
        &base("[[peer]]\nendpoint = \"h:1\"\n"),
        4,
        "missing field `public_key` in [[peer]]",
    );
    assert_err(&base("listen_port = \"x\"\n"), 4, "invalid type");
    assert_err(&base("name = \"again\"\n"), 4, "duplicate key `name`");
    assert_err(
        &base("[admin]\nlisten = \"127.0.0.1:1\"\nextra = true\n"),
        6,
        "unknown field `extra`",
    );
}

#[test]
fn value_errors_name_the_line() {
    let peer = |body: &str| base(&format!("\n[[peer]]\npublic_key = \"{PK1}\"\n{body}"));
    assert_err(
        &peer("allowed_ips = [\"10.0.0.0/8\",\n  \"10.0.0.0/33\"]\n"),
        8,
        "invalid CIDR \"10.0.0.0/33\" in allowed_ips",
    );
    assert_err(&peer("allowed_ips = [\"fd00::/129\"]\n"), 7, "invalid CIDR");
    assert_err(&peer("allowed_ips = [\"10.0.0/8\"]\n"), 7, "invalid CIDR");
    assert_err(&base("addresses = [\"10.0.0.1/+8\"]\n"), 4, "in addresses");
    assert_err(
        &base("").replace("pm0", "this-name-is-too-long"),
        2,
        "invalid interface name",
    );
    assert_err(
        &base("").replace("pm0", "bad/name"),
        2,
        "invalid interface name",
    );
    assert_err(
        &base("").replace("\"k\"", "\"\""),
        3,
        "private_key_file must not be empty",
    );
    assert_err(
        &base("listen_port = 65536\n"),
        4,
        "listen_port 65536 out of range",
    );
    assert_err(&base("listen_port = -1\n"), 4, "out of range");
    assert_err(&base("fwmark = 4294967296\n"), 4, "fwmark");
    assert_err(&base("mtu = 575\n"), 4, "mtu 575 out of range 576..=65535");
    assert_err(&base("mtu = 65536\n"), 4, "out of range");
    assert_err(
        &base("mtu = 1000\naddresses = [\"fd00::1/64\"]\n"),
        4,
        "below 1280, the minimum with an IPv6 address",
    );
    assert_err(
        &peer("persistent_keepalive = 70000\n"),
        7,
        "persistent_keepalive 70000",
    );
    assert_err(&peer("endpoint = \"192.0.2.1\"\n"), 7, "invalid endpoint");
    assert_err(
        &peer("endpoint = \"192.0.2.1:0\"\n"),
        7,
        "port must be 1..=65535",
    );
    assert_err(
        &peer("endpoint = \"2001:db8::1:51820\"\n"),
        7,
        "[addr]:port",
    );
    assert_err(
        &peer("endpoint = \"[2001:db8::1:51820\"\n"),
        7,
        "missing ']'",
    );
    assert_err(
        &base("[admin]\nlisten = \"localhost\"\n"),
        5,
        "invalid admin listen address",
    );
    assert_err(
        &base("\n[[peer]]\npublic_key = \"abc\"\n"),
        6,
        "invalid public_key",
    );
    assert_err(
        &peer("allowed_ips = [\"10.0.0.0/24\"]\nprobe = \"10.0.1.1\"\n"),
        8,
        "probe 10.0.1.1 is not in the peer's allowed_ips",
    );
    assert_err(
        &peer("probe = \"10.0.0.1\"\n"),
        7,
        "not in the peer's allowed_ips",
    );
    assert_err(
        &peer("allowed_ips = [\"10.0.0.0/24\"]\nprobe = \"10.0.0.0/24\"\n"),
        8,
        "invalid probe \"10.0.0.0/24\": expected one IP address",
    );
    assert_err(
        &peer("allowed_ips = [\"0.0.0.0/0\"]\nprobe = \"224.0.0.1\"\n"),
        8,
        "not a unicast address",
    );
    assert_err(
        &peer("allowed_ips = [\"::/0\"]\nprobe = \"::1\"\n"),
        8,
        "not a unicast address",
    );
    assert_err(
        &peer("allowed_ips = [\"10.0.0.0/8\"]\nprobe = \"fd00::1\"\n"),
        8,
        "not in the peer's allowed_ips",
    );
    let dup = format!(
        "{}\n[[peer]]\npublic_key = \"{PK1}\"\n\n[[peer]]\npublic_key = \"{PK2}\"\n\n[[peer]]\npublic_key = \"{PK1}\"\n",
        base("")
    );
    assert_err(
        &dup,
        12,
        "duplicate peer public_key (first given on line 6)",
    );
}

#[test]
fn accepted_edge_values() {
    let cfg = parse_at(&base(
        "mtu = 576\nlisten_port = 0\naddresses = [\"10.0.0.1\"]\n[admin]\nlisten = \"off\"\n",
    ))
    .unwrap();
    assert_eq!(cfg.interface.mtu, Some(576));
    assert_eq!(cfg.interface.listen_port, Some(0));
    assert_eq!(cfg.interface.addresses, vec![(ip("10.0.0.1"), 32)]);
    assert_eq!(cfg.admin.listen, "off");
    let cfg = parse_at(&base("mtu = 1280\naddresses = [\"::1/128\"]\n")).unwrap();
    assert_eq!(cfg.interface.mtu, Some(1280));
    let cfg = parse_at(&base(&format!(
        "\n[[peer]]\npublic_key = \"{PK1}\"\nendpoint = \"vpn.example.com:51820\"\n"
    )))
    .unwrap();
    assert_eq!(
        cfg.peers[0].endpoint.as_deref(),
        Some("vpn.example.com:51820")
    );
    // A probe anywhere in a covering prefix, IPv4 or IPv6.
    let cfg = parse_at(&base(&format!(
        "\n[[peer]]\npublic_key = \"{PK1}\"\nallowed_ips = [\"10.9.0.0/16\", \"0.0.0.0/0\"]\nprobe = \"192.0.2.7\"\n\n[[peer]]\npublic_key = \"{PK2}\"\nallowed_ips = [\"fd00:9::/48\"]\nprobe = \"fd00:9:0:1::5\"\n"
    )))
    .unwrap();
    assert_eq!(cfg.peers[0].probe, Some(ip("192.0.2.7")));
    assert_eq!(cfg.peers[1].probe, Some(ip("fd00:9:0:1::5")));
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn env_overrides_apply() {
    let mut cfg = parse_at(GOLDEN).unwrap();
    apply_env(
        &mut cfg,
        env_of(&[
            ("PHANTOMMESH_INTERFACE", "wg7"),
            ("PHANTOMMESH_PRIVATE_KEY_FILE", "rel/key"),
            ("PHANTOMMESH_LISTEN_PORT", "4000"),
            ("PHANTOMMESH_MTU", "1380"),
            ("PHANTOMMESH_ADDRESSES", "10.9.0.1/16, fd09::1/64"),
            ("PHANTOMMESH_ADMIN_LISTEN", "10.1.2.3:9586"),
            ("PHANTOMMESH_ADMIN_TOKEN_FILE", "/run/token"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.interface.name, "wg7");
    assert_eq!(cfg.interface.private_key, KeySource::File("rel/key".into()));
    assert_eq!(cfg.interface.listen_port, Some(4000));
    assert_eq!(cfg.interface.mtu, Some(1380));
    assert_eq!(
        cfg.interface.addresses,
        vec![(ip("10.9.0.1"), 16), (ip("fd09::1"), 64)]
    );
    assert_eq!(cfg.admin.listen, "10.1.2.3:9586");
    assert_eq!(cfg.admin.token_file, Some("/run/token".into()));
    // Peers are not touched by the environment.
    assert_eq!(cfg.peers, parse_at(GOLDEN).unwrap().peers);
}

#[test]
fn empty_env_values_count_as_unset() {
    let mut cfg = parse_at(GOLDEN).unwrap();
    let before = cfg.clone();
    let vars: Vec<(&str, &str)> = ENV_VARS.iter().map(|v| (*v, "")).collect();
    apply_env(&mut cfg, env_of(&vars)).unwrap();
    assert_eq!(cfg, before);
}

#[test]
fn bad_env_values_name_the_variable() {
    let cases = [
        (
            "PHANTOMMESH_INTERFACE",
            "way-too-long-name-x",
            "invalid interface name",
        ),
        ("PHANTOMMESH_LISTEN_PORT", "70000", "invalid port"),
        ("PHANTOMMESH_LISTEN_PORT", "-1", "invalid port"),
        ("PHANTOMMESH_MTU", "abc", "invalid mtu"),
        ("PHANTOMMESH_MTU", "1000", "below 1280"),
        (
            "PHANTOMMESH_ADDRESSES",
            "10.0.0.1/24,nope",
            "invalid CIDR \"nope\"",
        ),
        (
            "PHANTOMMESH_ADMIN_LISTEN",
            "0.0.0.0",
            "invalid admin listen address",
        ),
    ];
    for (var, val, fragment) in cases {
        let mut cfg = parse_at(GOLDEN).unwrap();
        let e = apply_env(&mut cfg, env_of(&[(var, val)])).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("environment: {var}: ")),
            "{shown}"
        );
        assert!(shown.contains(fragment), "{shown:?} lacks {fragment:?}");
    }
}

#[test]
fn env_addresses_recheck_the_file_mtu() {
    let mut cfg = parse_at(&base("mtu = 1000\naddresses = [\"10.0.0.1/24\"]\n")).unwrap();
    let e = apply_env(&mut cfg, env_of(&[("PHANTOMMESH_ADDRESSES", "fd00::1/64")])).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("environment: PHANTOMMESH_ADDRESSES: mtu 1000"),
        "{e}"
    );
    // With an MTU override too, the MTU is what is judged.
    let mut cfg = parse_at(&base("mtu = 1000\n")).unwrap();
    apply_env(
        &mut cfg,
        env_of(&[
            ("PHANTOMMESH_ADDRESSES", "fd00::1/64"),
            ("PHANTOMMESH_MTU", "1400"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.interface.mtu, Some(1400));
}

#[test]
fn shipped_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/phantommesh.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = parse(&text, &path).unwrap();
    assert_eq!(cfg.interface.name, "pm0");
    assert!(!cfg.peers.is_empty());
    assert_eq!(cfg.admin.listen, "127.0.0.1:9586");
}

#[test]
fn tuning_keys_parse_and_bad_values_name_their_line() {
    let text = format!(
        "{}[tuning]\nworkers = 3\nio_threads = 2\npacket_metrics = false\noffload = false\nudp_recv_buffer = 65536\ninline_batch = 0\n",
        base("")
    );
    let cfg = parse_at(&text).unwrap();
    assert_eq!(
        cfg.tuning,
        TuningConfig {
            workers: Some(3),
            io_threads: Some(2),
            packet_metrics: Some(false),
            offload: Some(false),
            udp_recv_buffer: Some(65536),
            inline_batch: Some(0),
        }
    );
    assert_eq!(parse_at(&base("")).unwrap().tuning, TuningConfig::default());
    let lines = base("").lines().count();
    for (kv, fragment) in [
        ("workers = 0", "[tuning] workers 0 out of range 1..=256"),
        ("io_threads = 9", "[tuning] io_threads 9 out of range 1..=8"),
        (
            "inline_batch = 5000",
            "[tuning] inline_batch 5000 out of range 0..=4096",
        ),
        (
            "udp_recv_buffer = 100",
            "[tuning] udp_recv_buffer 100 out of range",
        ),
    ] {
        assert_err(
            &format!("{}[tuning]\n{kv}\n", base("")),
            lines + 2,
            fragment,
        );
    }
    assert!(parse_at(&format!("{}[tuning]\nthreads = 2\n", base(""))).is_err());
}
