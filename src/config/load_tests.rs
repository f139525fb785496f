use super::*;
use std::fs;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pm-config-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

const PK1: &str = "4nhsls0q7klSqPEh+VPMNSDd8fQGZoZospgUcqfAHiU=";
const PRIV: &str = "WB7g0wZGHz+kj2BGgTyVdR36taFGX+z5gEiOWGXIQnQ=";

#[test]
fn load_picks_the_format_by_extension() {
    let d = temp_dir("load");
    let toml_path = d.join("pm.toml");
    fs::write(
        &toml_path,
        "[interface]\nname = \"pm0\"\nprivate_key_file = \"private.key\"\n",
    )
    .unwrap();
    let cfg = load(&toml_path, &|_| None).unwrap();
    assert_eq!(cfg.interface.name, "pm0");
    assert_eq!(
        cfg.interface.private_key,
        KeySource::File(d.join("private.key"))
    );

    let conf_path = d.join("wg3.CONF");
    fs::write(
        &conf_path,
        format!("[Interface]\nPrivateKey = {PRIV}\nDNS = 1.1.1.1\n[Peer]\nPublicKey = {PK1}\n"),
    )
    .unwrap();
    set_mode(&conf_path, 0o600);
    let (cfg, warnings) = load_with_warnings(&conf_path, &|_| None).unwrap();
    assert_eq!(cfg.interface.name, "wg3");
    assert_eq!(cfg.peers.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with(&format!("{}:3: ignoring DNS", conf_path.display())),
        "{warnings:?}"
    );

    // The same wg-quick text is not valid TOML: the extension decides.
    let as_toml = d.join("wg3.toml");
    fs::copy(&conf_path, &as_toml).unwrap();
    let e = load(&as_toml, &|_| None).unwrap_err();
    assert_eq!(e.file, as_toml.display().to_string());
    assert!(e.line >= 1, "{e}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn load_reports_unreadable_files() {
    let e = load(Path::new("/nonexistent/phantommesh.toml"), &|_| None).unwrap_err();
    assert_eq!(e.line, 0);
    let shown = e.to_string();
    assert!(
        shown.starts_with("/nonexistent/phantommesh.toml: cannot read config file"),
        "{shown}"
    );
}

#[test]
fn error_display_omits_line_zero() {
    assert_eq!(
        ConfigError::new("a.toml", 3, "bad").to_string(),
        "a.toml:3: bad"
    );
    assert_eq!(
        ConfigError::new("environment", 0, "X: bad").to_string(),
        "environment: X: bad"
    );
}

#[test]
fn cidr_forms() {
    let ok = |s: &str| parse_cidr(s).unwrap();
    assert_eq!(ok("10.0.0.0/8"), ("10.0.0.0".parse().unwrap(), 8));
    assert_eq!(ok("10.0.0.1"), ("10.0.0.1".parse().unwrap(), 32));
    assert_eq!(ok("::/0"), ("::".parse().unwrap(), 0));
    assert_eq!(ok("fd00::1"), ("fd00::1".parse().unwrap(), 128));
    for bad in [
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/+8",
        "10.0.0.0/08a",
        "10.0.0.0/0008",
        "10.0.0.0/8/8",
        "host/8",
        " 10.0.0.0/8",
    ] {
        assert!(parse_cidr(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn endpoint_forms() {
    for ok in [
        "1.2.3.4:1",
        "h:65535",
        "[::1]:51820",
        "[fe80::1%eth0]:51820",
        "a.b-c.example:80",
    ] {
        validate_endpoint(ok).unwrap();
    }
    for bad in [
        "",
        "1.2.3.4",
        ":51820",
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "1.2.3.4:x",
        "::1:51820",
        "[::1:51820",
        "[nope]:1",
        "a b:1",
        "1.2.3.4:+1",
    ] {
        assert!(validate_endpoint(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn interface_names() {
    for ok in ["wg0", "a", "a.b_c=d+e-f", "123456789012345"] {
        validate_interface_name(ok).unwrap();
    }
    for bad in [
        "",
        "1234567890123456",
        "wg 0",
        "wg/0",
        "wg0\n",
        ".",
        "..",
        "wg\u{e9}",
    ] {
        assert!(validate_interface_name(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn line_numbers_from_offsets() {
    let t = "a\nbc\n\nd";
    assert_eq!(line_of(t, 0), 1);
    assert_eq!(line_of(t, 1), 1);
    assert_eq!(line_of(t, 2), 2);
    assert_eq!(line_of(t, 6), 4);
    assert_eq!(line_of(t, 999), 4);
}

#[test]
fn debug_output_redacts_inline_keys() {
    let secret = [0xabu8; 32];
    let shown = format!("{:?}", KeySource::Inline(secret));
    assert_eq!(shown, "Inline(<redacted>)");
    let b64 = crate::noise::keys::encode_base64_key(&secret);
    let text = format!(
        "[Interface]\nPrivateKey = {b64}\n[Peer]\nPublicKey = {PK1}\nPresharedKey = {b64}\n"
    );
    let cfg = wgquick::parse(&text, Path::new("wg0.conf")).unwrap().config;
    let dump = format!("{cfg:?}");
    assert!(!dump.contains("171") && !dump.contains(&b64), "{dump}");
    // A malformed key line must not be echoed in the error either.
    let e = wgquick::parse(
        &format!("[Interface]\nPrivateKey {b64}\n"),
        Path::new("wg0.conf"),
    );
    assert!(!e.unwrap_err().to_string().contains(&b64));
}

#[test]
fn prefix_containment() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(prefix_contains((ip("10.0.0.0"), 8), ip("10.255.1.2")));
    assert!(!prefix_contains((ip("10.0.0.0"), 8), ip("11.0.0.1")));
    assert!(prefix_contains((ip("10.0.0.7"), 32), ip("10.0.0.7")));
    assert!(!prefix_contains((ip("10.0.0.7"), 32), ip("10.0.0.6")));
    assert!(prefix_contains((ip("0.0.0.0"), 0), ip("203.0.113.9")));
    // Host bits of the prefix are ignored, as the routing table does.
    assert!(prefix_contains((ip("10.1.2.3"), 16), ip("10.1.99.99")));
    assert!(prefix_contains((ip("fd00::"), 64), ip("fd00::ffff:1")));
    assert!(!prefix_contains((ip("fd00::"), 64), ip("fd00:0:0:1::1")));
    assert!(prefix_contains((ip("::"), 0), ip("2001:db8::1")));
    assert!(
        !prefix_contains((ip("0.0.0.0"), 0), ip("::ffff:10.0.0.1")),
        "families never mix"
    );
    assert!(!prefix_contains((ip("::"), 0), ip("10.0.0.1")));
}

#[test]
fn conf_and_token_files_open_to_others_get_the_key_file_warning() {
    let d = temp_dir("modes");
    let conf = d.join("wg4.conf");
    fs::write(&conf, format!("[Interface]\nPrivateKey = {PRIV}\n")).unwrap();
    for (mode, warned) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
        set_mode(&conf, mode);
        let (_, warnings) = load_with_warnings(&conf, &|_| None).unwrap();
        let hit = warnings
            .iter()
            .any(|w| w.contains("accessible by group or others") && w.contains("chmod 600"));
        assert_eq!(hit, warned, "mode {mode:o}: {warnings:?}");
    }
    // A TOML file holds no key (only key file paths): no warning.
    let toml_path = d.join("pm.toml");
    fs::write(
        &toml_path,
        "[interface]\nname = \"pm0\"\nprivate_key_file = \"private.key\"\n",
    )
    .unwrap();
    set_mode(&toml_path, 0o644);
    assert!(load_with_warnings(&toml_path, &|_| None)
        .unwrap()
        .1
        .is_empty());
    // The token file rule, as the daemon applies it.
    let token = d.join("token");
    fs::write(&token, "s3cret\n").unwrap();
    set_mode(&token, 0o644);
    let w = insecure_mode_warning(&token, "admin token file").unwrap();
    assert!(
        w.contains("admin token file") && !w.contains("s3cret"),
        "{w}"
    );
    set_mode(&token, 0o600);
    assert_eq!(insecure_mode_warning(&token, "admin token file"), None);
    fs::remove_dir_all(&d).unwrap();
}
