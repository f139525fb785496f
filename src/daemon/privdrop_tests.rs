use super::*;
use crate::daemon::privdrop_sys::{
    parse_status, CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, CAP_NET_RAW,
};

#[test]
fn user_specs_parse() {
    let u = UserSpec::parse("nobody").unwrap();
    assert_eq!((u.user.as_str(), u.group), ("nobody", None));
    let u = UserSpec::parse("65534:65534").unwrap();
    assert_eq!(
        (u.user.as_str(), u.group.as_deref()),
        ("65534", Some("65534"))
    );
    let u = UserSpec::parse("phantom-mesh:net_grp").unwrap();
    assert_eq!(u.group.as_deref(), Some("net_grp"));
    for bad in [
        "", ":", "a:", ":g", "a b", "a:b:c", "x;rm", "root", "0", "0:5", "é",
    ] {
        assert!(UserSpec::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn numeric_specs_resolve_without_passwd() {
    assert_eq!(
        UserSpec::parse("65534:65534").unwrap().resolve(),
        Ok((65534, 65534))
    );
    assert_eq!(
        UserSpec::parse("12345:777").unwrap().resolve(),
        Ok((12345, 777))
    );
    // A number not in passwd and no group: the same number.
    assert_eq!(
        UserSpec::parse("4000123").unwrap().resolve(),
        Ok((4000123, 4000123))
    );
    assert!(
        UserSpec::parse("12345:0").unwrap().resolve().is_err(),
        "gid 0"
    );
    assert!(UserSpec::parse("no-such-user-pm")
        .unwrap()
        .resolve()
        .is_err());
    assert!(UserSpec::parse("65534:no-such-group-pm")
        .unwrap()
        .resolve()
        .is_err());
}

#[test]
fn bools() {
    for t in ["1", "true", "YES", "on"] {
        assert_eq!(parse_bool(t), Ok(true));
    }
    for f in ["0", "false", "No", "off"] {
        assert_eq!(parse_bool(f), Ok(false));
    }
    assert!(parse_bool("maybe").is_err());
}

#[test]
fn capabilities_only_as_needed() {
    let caps = |port, files: &[PathBuf], raw| -> Vec<u32> {
        choose_caps(port, files, raw)
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    };
    assert_eq!(caps(51820, &[], false), [CAP_NET_ADMIN]);
    assert_eq!(caps(0, &[], false), [CAP_NET_ADMIN], "random port");
    assert_eq!(caps(1024, &[], false), [CAP_NET_ADMIN]);
    assert_eq!(caps(500, &[], false), [CAP_NET_ADMIN, CAP_NET_BIND_SERVICE]);
    assert_eq!(caps(51820, &[], true), [CAP_NET_ADMIN, CAP_NET_RAW]);
    let f = [PathBuf::from("/etc/x.key"), PathBuf::from("/etc/y")];
    let c = choose_caps(51820, &f, false);
    assert_eq!(c.last().unwrap().0, CAP_DAC_READ_SEARCH);
    assert!(c.last().unwrap().1.contains("/etc/x.key"), "names the file");
    assert_eq!(mask(&c), (1 << 12) | (1 << 2));
    assert_eq!(cap_name(CAP_NET_RAW), "CAP_NET_RAW");
}

#[test]
fn permission_bits() {
    // owner, group, other classes; the first matching class decides.
    assert!(may(0o600, 5, 6, 5, 9, 4));
    assert!(!may(0o600, 5, 6, 7, 6, 4));
    assert!(may(0o640, 5, 6, 7, 6, 4));
    assert!(
        !may(0o604, 5, 6, 7, 6, 4),
        "group class denies though other allows"
    );
    assert!(may(0o604, 5, 6, 7, 8, 4));
    assert!(may(0o711, 0, 0, 7, 8, 1));
    assert!(!may(0o700, 0, 0, 7, 8, 1));
}

#[test]
fn readable_by_follows_the_directories() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pm-privdrop-{}", std::process::id()));
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let f = sub.join("f");
    std::fs::write(&f, "x").unwrap();
    let set =
        |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let other = (uid.wrapping_add(4242), gid.wrapping_add(4242));
    set(&dir, 0o755);
    set(&sub, 0o755);
    set(&f, 0o644);
    assert!(readable_by(&f, other.0, other.1));
    set(&f, 0o600);
    assert!(!readable_by(&f, other.0, other.1), "file mode");
    assert!(readable_by(&f, uid, gid), "owner");
    set(&f, 0o644);
    set(&sub, 0o700);
    assert!(
        !readable_by(&f, other.0, other.1),
        "directory without search"
    );
    assert!(
        readable_by(&sub.join("missing"), other.0, other.1),
        "missing: nothing to keep"
    );
    set(&sub, 0o755);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ping_group_range() {
    assert!(
        !ping_range_covers("1\t0\n", 65534),
        "the kernel's default: nobody"
    );
    assert!(
        ping_range_covers("0\t2147483647\n", 65534),
        "systemd's default"
    );
    assert!(ping_range_covers("65534 65534", 65534));
    assert!(!ping_range_covers("100 200", 65534));
    assert!(!ping_range_covers("", 65534));
}

#[test]
fn run_mode_files_lists_everything_reread() {
    let text = r#"
[interface]
name = "wg0"
private_key_file = "k/priv.key"
[admin]
token_file = "/etc/pm/token"
[[peer]]
public_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
preshared_key_file = "/etc/pm/psk"
"#;
    let cfg = crate::config::toml_config::parse(text, Path::new("/etc/pm/pm.toml")).unwrap();
    let files = run_mode_files(Path::new("/etc/pm/pm.toml"), &cfg);
    let want: Vec<PathBuf> = ["/etc/pm/pm.toml", "/etc/pm/k/priv.key", "/etc/pm/psk"]
        .iter()
        .map(PathBuf::from)
        .collect();
    // Not the admin token: it is read once, before the drop, so a token
    // only root can read must not keep CAP_DAC_READ_SEARCH.
    assert_eq!(files, want);
}

#[test]
fn toml_user_keys() {
    let base = "[interface]\nname = \"wg0\"\nprivate_key_file = \"k\"\n";
    let p = Path::new("/x.toml");
    let cfg = crate::config::toml_config::parse(
        &format!("{base}user = \"nobody:nogroup\"\ndrop_privileges = false\n"),
        p,
    )
    .unwrap();
    assert_eq!(cfg.interface.user.as_deref(), Some("nobody:nogroup"));
    assert_eq!(cfg.interface.drop_privileges, Some(false));
    let e = crate::config::toml_config::parse(&format!("{base}user = \"root\"\n"), p).unwrap_err();
    assert_eq!(e.line, 4, "{e}");
}

#[test]
fn status_lines_parse() {
    let s = "Name:\tpm-io-0\nUid:\t65534\t65534\t65534\t65534\nCapPrm:\t0000000000001000\nCapEff:\t0000000000001000\nCapBnd:\t0000000000003000\nNoNewPrivs:\t1\n";
    let t = parse_status(7, s);
    assert_eq!(t.uids, "65534\t65534\t65534\t65534");
    assert_eq!((t.cap_eff, t.cap_prm, t.cap_bnd), (0x1000, 0x1000, 0x3000));
    assert!(t.no_new_privs);
    assert_eq!(
        parse_status(1, "").cap_eff,
        u64::MAX,
        "unknown reads as everything"
    );
}

#[test]
fn describe_names_user_and_caps() {
    let p = Plan {
        ids: Some((65534, 65534)),
        keep: choose_caps(51820, &[], true),
        unreadable: vec![],
        source: "default".into(),
    };
    let d = describe(&p);
    assert!(d.contains("uid 65534 gid 65534"), "{d}");
    assert!(
        d.contains("CAP_NET_ADMIN") && d.contains("CAP_NET_RAW"),
        "{d}"
    );
    assert!(!d.contains("DAC"), "{d}");
}
