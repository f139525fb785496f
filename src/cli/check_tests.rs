use super::*;
use std::fs;
use std::path::PathBuf;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pm-check-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

const PRIV: &str = "WB7g0wZGHz+kj2BGgTyVdR36taFGX+z5gEiOWGXIQnQ=";
const PEER: &str = "4nhsls0q7klSqPEh+VPMNSDd8fQGZoZospgUcqfAHiU=";
const PSK: &str = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=";

fn write_key(path: &Path, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, format!("{key}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn check(path: &Path) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(path, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// A full TOML config in `d`: key, preshared key, token, [mesh] with a CA.
fn full_config(d: &Path) -> PathBuf {
    write_key(&d.join("private.key"), PRIV);
    write_key(&d.join("peer.psk"), PSK);
    fs::write(d.join("admin.token"), "s3cret-token\n").unwrap();
    fs::write(d.join("ca.pem"), "not checked for content\n").unwrap();
    let p = d.join("pm.toml");
    fs::write(
        &p,
        format!(
            "[interface]\nname = \"pmchk0\"\nprivate_key_file = \"private.key\"\n\
             listen_port = 51820\naddresses = [\"10.100.0.1/24\"]\n\n\
             [admin]\nlisten = \"127.0.0.1:9586\"\ntoken_file = \"admin.token\"\n\n\
             [mesh]\nstore = \"etcd\"\nendpoints = [\"https://127.0.0.1:2379\"]\n\
             ca_file = \"ca.pem\"\nnode_name = \"node-a\"\nnetwork = \"10.100.0.0/16\"\n\n\
             [[peer]]\npublic_key = \"{PEER}\"\npreshared_key_file = \"peer.psk\"\n\
             allowed_ips = [\"10.100.0.2/32\"]\nendpoint = \"192.0.2.1:51820\"\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn a_full_config_is_described_without_secrets() {
    let d = temp_dir("full");
    let p = full_config(&d);
    let (code, out, err) = check(&p);
    assert_eq!(code, exit::OK, "{out}{err}");
    let public = encode_base64_key(&public_key(
        &crate::cli::keys::parse_base64_key(PRIV).unwrap(),
    ));
    for want in [
        "(TOML)",
        "interface: pmchk0, listen port 51820, addresses 10.100.0.1/24",
        &format!("(public key {public})"),
        "peers: 1",
        &format!("peer {PEER}: allowed ips 10.100.0.2/32, endpoint 192.0.2.1:51820"),
        "preshared key",
        "admin: listen 127.0.0.1:9586, bearer token from",
        "gates: ",
        "mesh: etcd at https://127.0.0.1:2379, node node-a",
        "config OK",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    for secret in [PRIV, PSK, "s3cret-token"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
}

#[test]
fn a_missing_private_key_is_reported_not_generated() {
    let d = temp_dir("nokey");
    let p = d.join("pm.toml");
    fs::write(
        &p,
        "[interface]\nname = \"pmchk1\"\nprivate_key_file = \"keys/private.key\"\n",
    )
    .unwrap();
    let (code, out, err) = check(&p);
    assert_eq!(code, exit::OK, "{out}{err}");
    assert!(out.contains("does not exist yet"), "{out}");
    assert!(!d.join("keys").exists(), "--check created a directory");
}

#[test]
fn every_error_names_its_source_and_exits_2() {
    let d = temp_dir("bad");
    let good = full_config(&d);
    let text = fs::read_to_string(&good).unwrap();
    type Spoil = Box<dyn Fn()>;
    let cases: Vec<(&str, String, Spoil)> = vec![
        (
            "syntax",
            text.replace("10.100.0.1/24", "10.100.0.1/33"),
            Box::new(|| {}),
        ),
        ("missing file", String::new(), Box::new(|| {})),
        ("bad key", text.clone(), {
            let k = d.join("private.key");
            Box::new(move || fs::write(&k, "nonsense\n").unwrap())
        }),
        ("bad psk", text.clone(), {
            let k = d.join("peer.psk");
            Box::new(move || fs::write(&k, "short\n").unwrap())
        }),
        ("no token", text.clone(), {
            let k = d.join("admin.token");
            Box::new(move || fs::remove_file(&k).unwrap())
        }),
        ("no ca", text.clone(), {
            let k = d.join("ca.pem");
            Box::new(move || fs::remove_file(&k).unwrap())
        }),
    ];
    let wants = [
        "pm.toml:5: ",
        "cannot read config file",
        "private key file",
        "preshared key file",
        "admin token file",
        "mesh.ca_file",
    ];
    for ((name, body, spoil), want) in cases.into_iter().zip(wants) {
        full_config(&d);
        spoil();
        let p = d.join("pm.toml");
        if name == "missing file" {
            fs::remove_file(&p).unwrap();
        } else {
            fs::write(&p, body).unwrap();
        }
        let (code, out, err) = check(&p);
        assert_eq!(code, exit::USAGE, "{name}: {out}{err}");
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
        assert!(!out.contains("config OK"), "{name}: {out}");
        assert!(!err.contains(PRIV) && !err.contains(PSK), "{name}: {err}");
    }
}

#[test]
fn a_wg_quick_file_is_checked_too() {
    let d = temp_dir("conf");
    let p = d.join("wgchk0.conf");
    fs::write(
        &p,
        format!("[Interface]\nPrivateKey = {PRIV}\nDNS = 1.1.1.1\n[Peer]\nPublicKey = {PEER}\nAllowedIPs = 10.0.0.2/32\n"),
    )
    .unwrap();
    let (code, out, err) = check(&p);
    assert_eq!(code, exit::OK, "{out}{err}");
    assert!(out.contains("(wg-quick .conf)"), "{out}");
    assert!(out.contains("interface: wgchk0"), "{out}");
    assert!(out.contains("private key: inline"), "{out}");
    assert!(out.contains("warning: "), "{out}");
    assert!(!out.contains(PRIV), "{out}");
}

#[test]
fn an_admin_api_off_loopback_needs_a_token_or_the_opt_out() {
    let d = temp_dir("auth");
    write_key(&d.join("private.key"), PRIV);
    fs::write(d.join("admin.token"), "s3cret-token\n").unwrap();
    let p = d.join("pm.toml");
    let cfg = |admin: &str| {
        fs::write(
            &p,
            format!(
                "[interface]\nname = \"pmchk1\"\nprivate_key_file = \"private.key\"\n\
                 [admin]\nlisten = \"10.1.2.3:9586\"\n{admin}"
            ),
        )
        .unwrap();
        check(&p)
    };
    let (code, out, err) = cfg("");
    assert_eq!(code, exit::USAGE, "{out}{err}");
    for want in [
        "10.1.2.3:9586",
        "[admin] token_file",
        "allow_unauthenticated = true",
    ] {
        assert!(err.contains(want), "{want:?} missing in {err}");
    }
    let (code, out, err) = cfg("allow_unauthenticated = true\n");
    assert_eq!(code, exit::OK, "{out}{err}");
    assert!(out.contains("warning: admin API on 10.1.2.3:9586"), "{out}");
    let (code, out, err) = cfg("token_file = \"admin.token\"\n");
    assert_eq!(code, exit::OK, "{out}{err}");
    assert!(!out.contains("warning: admin API"), "{out}");
    assert!(!out.contains("s3cret-token"), "{out}");
}

#[test]
fn the_planned_privilege_drop_is_reported() {
    let d = temp_dir("privs");
    let p = full_config(&d);
    let (code, out, _) = check(&p);
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("privileges: "))
        .unwrap_or_else(|| panic!("no privileges line in {out}"));
    assert!(line.contains("CAP_NET_ADMIN"), "{line}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(line.contains("to uid 65534 gid 65534 [default]"), "{line}");
    }
    let text = fs::read_to_string(&p).unwrap();
    fs::write(
        &p,
        text.replacen("[interface]\n", "[interface]\ndrop_privileges = false\n", 1),
    )
    .unwrap();
    let (code, out, _) = check(&p);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("privileges: no drop ([interface] drop_privileges)"),
        "{out}"
    );
    fs::remove_dir_all(&d).unwrap();
}
