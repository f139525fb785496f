use super::probe::{self, Proto};
use super::*;
use crate::io::linux_tun::test_support::{in_netns, privileged};
use std::os::unix::fs::PermissionsExt;

fn os(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("pm-preflight-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn assert_level(c: &Check, level: Level, needle: &str) {
    assert_eq!(c.level, level, "{}", c.line());
    assert!(c.detail.contains(needle), "{:?} lacks {needle:?}", c.line());
}

#[test]
fn lines_and_summary() {
    let ok = Check::pass("TUN device", "/dev/net/tun usable");
    assert_eq!(ok.line(), "✅ TUN device: /dev/net/tun usable");
    let bad = Check::fail("CAP_NET_ADMIN", "missing (run as root or add NET_ADMIN)");
    assert_eq!(
        bad.line(),
        "❌ CAP_NET_ADMIN: missing (run as root or add NET_ADMIN)"
    );
    let skip = Check::skip("Admin address", "admin server off");
    assert_eq!(skip.line(), "✅ Admin address: skipped (admin server off)");
    let warn = Check::new("MTU", Level::Warn, "1420 (default)");
    assert_eq!(
        summary(&[ok.clone(), ok.clone()]),
        "Preflight: PASSED (2 checks)"
    );
    assert_eq!(
        summary(&[ok.clone(), warn.clone(), skip.clone()]),
        "Preflight: PASSED (3 checks, 1 warning, 1 skipped)"
    );
    assert_eq!(
        summary(&[ok, bad.clone(), warn, skip, bad]),
        "Preflight: FAILED (2 of 5 checks failed)"
    );
}

#[test]
fn tun_device_check() {
    assert_level(
        &tun_device(TUN_PATH, &Ok(())),
        Level::Pass,
        "/dev/net/tun usable",
    );
    assert_level(
        &tun_device(TUN_PATH, &Err(os(libc::ENOENT))),
        Level::Fail,
        "missing",
    );
    assert_level(
        &tun_device(TUN_PATH, &Err(os(libc::EACCES))),
        Level::Fail,
        "permission denied",
    );
    assert_level(
        &tun_device(TUN_PATH, &Err(os(libc::EPERM))),
        Level::Fail,
        "permission denied",
    );
    assert_level(
        &tun_device(TUN_PATH, &Err(os(libc::ENODEV))),
        Level::Fail,
        "no TUN driver",
    );
    assert_level(
        &tun_device(TUN_PATH, &Err(os(libc::EIO))),
        Level::Fail,
        "read/write",
    );
    // The real probe of a file that cannot be opened read/write.
    let e = probe::open_rw(Path::new("/nonexistent/net/tun"));
    assert_level(&tun_device("/x", &e), Level::Fail, "missing");
}

#[test]
fn cap_net_admin_check() {
    let status = |eff: &str| {
        format!("Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t{eff}\nCapEff:\t{eff}\nCapBnd:\t000001ffffffffff\n")
    };
    assert_eq!(cap_eff(&status("000001fffeffffff")), Some(0x1fffeffffff));
    assert_level(
        &cap_net_admin(Some(&status("000001fffeffffff"))),
        Level::Pass,
        "effective",
    );
    // Exactly bit 12 decides.
    assert_level(
        &cap_net_admin(Some(&status("0000000000001000"))),
        Level::Pass,
        "effective",
    );
    let c = cap_net_admin(Some(&status("0000000000000fff")));
    assert_eq!(
        c.line(),
        "❌ CAP_NET_ADMIN: missing (run as root or add NET_ADMIN)"
    );
    assert_level(
        &cap_net_admin(Some(&status("00000000a80425fb"))),
        Level::Fail,
        "missing",
    );
    assert_level(
        &cap_net_admin(Some("Name:\tx\n")),
        Level::Fail,
        "cannot read",
    );
    assert_level(
        &cap_net_admin(Some("CapEff:\tzz\n")),
        Level::Fail,
        "cannot read",
    );
    assert_level(&cap_net_admin(None), Level::Fail, "cannot read");
}

const KEY: &str = "YNqHbfBQKaGvzefSSuW3Wn5QsvaB6yfp4FgrZ1R8+EU=";

#[test]
fn config_check() {
    assert_level(&config(None), Level::Skip, "no config checked");
    let p = Path::new("/etc/pm.toml");
    let text = "[interface]\nname = \"pm0\"\nprivate_key_file = \"k\"\n[[peer]]\npublic_key = \"4nhsls0q7klSqPEh+VPMNSDd8fQGZoZospgUcqfAHiU=\"\n";
    let ok = crate::config::toml_config::parse(text, p);
    assert_level(
        &config(Some((p, &ok))),
        Level::Pass,
        "/etc/pm.toml valid (interface pm0, 1 peer)",
    );
    let bad = crate::config::toml_config::parse(
        "[interface]\nname = \"pm0\"\nmtu = 100\nprivate_key_file = \"k\"\n",
        p,
    );
    let c = config(Some((p, &bad)));
    assert_level(&c, Level::Fail, "/etc/pm.toml:3:");
    assert!(c.detail.contains("mtu"), "{}", c.line());
}

fn insecure(path: &str) -> KeyError {
    KeyError::InsecureMode {
        path: path.into(),
        mode: 0o644,
    }
}

#[test]
fn private_key_check() {
    let path = PathBuf::from("/etc/pm/key");
    assert_level(
        &private_key(&KeyFacts::NotConfigured),
        Level::Skip,
        "no valid config",
    );
    let present = |mode, content| KeyFacts::Present {
        path: path.clone(),
        mode,
        content,
    };
    assert_level(
        &private_key(&present(Ok(()), Ok(()))),
        Level::Pass,
        "/etc/pm/key present",
    );
    assert_level(
        &private_key(&present(Err(insecure("/etc/pm/key")), Ok(()))),
        Level::Fail,
        "chmod 600",
    );
    let garbage = KeyError::Io {
        path: "/etc/pm/key".into(),
        source: io::Error::new(io::ErrorKind::InvalidData, "key is not 32 bytes of base64"),
    };
    assert_level(
        &private_key(&present(Ok(()), Err(garbage))),
        Level::Fail,
        "not a base64 WireGuard key",
    );
    let denied = KeyError::Io {
        path: "/etc/pm/key".into(),
        source: os(libc::EACCES),
    };
    assert_level(
        &private_key(&present(Ok(()), Err(denied))),
        Level::Fail,
        "ermission denied",
    );
    let missing = |w| KeyFacts::Missing {
        path: path.clone(),
        dir: PathBuf::from("/etc"),
        dir_writable: w,
    };
    assert_level(
        &private_key(&missing(true)),
        Level::Pass,
        "will be generated on first start",
    );
    assert_level(
        &private_key(&missing(false)),
        Level::Fail,
        "/etc is not writable",
    );
    let inline = |mode| KeyFacts::Inline {
        config: PathBuf::from("/etc/wg0.conf"),
        mode,
    };
    assert_level(
        &private_key(&inline(Ok(()))),
        Level::Pass,
        "inline in /etc/wg0.conf",
    );
    assert_level(
        &private_key(&inline(Err(insecure("/etc/wg0.conf")))),
        Level::Fail,
        "readable by others",
    );
    let u = KeyFacts::Unreadable {
        path: path.clone(),
        error: "Permission denied".into(),
    };
    assert_level(
        &private_key(&u),
        Level::Fail,
        "/etc/pm/key: Permission denied",
    );
}

/// The probe on real files: modes, content, a missing key in a new directory.
#[test]
fn key_facts_probe() {
    let d = temp_dir("keys");
    let cfg_for = |key: &Path| {
        let text = format!(
            "[interface]\nname = \"pm0\"\nprivate_key_file = \"{}\"\n",
            key.display()
        );
        crate::config::toml_config::parse(&text, &d.join("pm.toml")).unwrap()
    };
    let judge = |key: &Path| private_key(&probe::key_facts(Some(&cfg_for(key)), None));
    let key = d.join("key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_level(&judge(&key), Level::Pass, "owner-only");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_level(&judge(&key), Level::Fail, "chmod 600");
    std::fs::write(&key, "not a key\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_level(&judge(&key), Level::Fail, "not a base64");
    // Missing, two directory levels that do not exist yet: the daemon
    // would create them under `d`, which is writable.
    let c = judge(&d.join("new/sub/key"));
    assert_level(&c, Level::Pass, "will be generated");
    match probe::key_facts(Some(&cfg_for(&d.join("new/sub/key"))), None) {
        KeyFacts::Missing { dir, .. } => assert_eq!(dir, d),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        probe::key_facts(None, None),
        KeyFacts::NotConfigured
    ));
    let _ = std::fs::remove_dir_all(&d);
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))
}
fn v4(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port))
}

#[test]
fn udp_port_check() {
    let c = udp_port(51820, &[(v6(51820), Ok(())), (v4(51820), Ok(()))], None);
    assert_eq!(
        c.line(),
        "✅ UDP listen port: 51820 free on [::] and 0.0.0.0"
    );
    let c = udp_port(
        51820,
        &[(v6(51820), Err(os(libc::EADDRINUSE))), (v4(51820), Ok(()))],
        Some("pid 7 (wireguard-go)"),
    );
    assert_eq!(
        c.line(),
        "❌ UDP listen port: 51820 on [::]: in use by pid 7 (wireguard-go)"
    );
    let c = udp_port(
        51820,
        &[(v6(51820), Ok(())), (v4(51820), Err(os(libc::EADDRINUSE)))],
        None,
    );
    assert_eq!(c.line(), "❌ UDP listen port: 51820 on 0.0.0.0: in use");
    // No IPv6 on the host is not a conflict.
    let c = udp_port(
        51820,
        &[
            (v6(51820), Err(os(libc::EAFNOSUPPORT))),
            (v4(51820), Ok(())),
        ],
        None,
    );
    assert_eq!(c.line(), "✅ UDP listen port: 51820 free on 0.0.0.0");
    assert_level(
        &udp_port(500, &[(v4(500), Err(os(libc::EACCES)))], None),
        Level::Fail,
        "CAP_NET_BIND_SERVICE",
    );
    assert_level(
        &udp_port(5, &[(v6(5), Err(os(libc::EAFNOSUPPORT)))], None),
        Level::Fail,
        "no address family",
    );
}

#[test]
fn admin_address_check() {
    assert_eq!(
        admin_address("127.0.0.1:9586", &Ok(()), None).line(),
        "✅ Admin address: 127.0.0.1:9586 free"
    );
    let c = admin_address(
        "127.0.0.1:9586",
        &Err(os(libc::EADDRINUSE)),
        Some("pid 1 (x)"),
    );
    assert_eq!(
        c.line(),
        "❌ Admin address: 127.0.0.1:9586: in use by pid 1 (x)"
    );
    assert_level(
        &admin_address("10.9.9.9:9586", &Err(os(libc::EADDRNOTAVAIL)), None),
        Level::Fail,
        "not an address of this host",
    );
    let (bind, port) = probe::bind_tcp("localhost");
    assert_eq!(port, None);
    assert_level(
        &admin_address("localhost", &bind, None),
        Level::Fail,
        "not ip:port",
    );
}

#[test]
fn offload_checks() {
    assert_level(&udp_gso(&Ok(())), Level::Pass, "UDP_SEGMENT");
    assert_level(&udp_gso(&Err(os(libc::ENOPROTOOPT))), Level::Fail, "4.18");
    assert_level(&udp_gso(&Err(os(libc::EMFILE))), Level::Fail, "cannot test");
    assert_level(&udp_gro(&Ok(())), Level::Pass, "UDP_GRO");
    assert_level(&udp_gro(&Err(os(libc::ENOPROTOOPT))), Level::Fail, "5.0");

    assert_level(
        &tun_offload(&Err("creating a TUN needs CAP_NET_ADMIN".into())),
        Level::Fail,
        "cannot test: creating a TUN needs CAP_NET_ADMIN",
    );
    let t = |tso, uso| tun_offload(&Ok(TunOffload { tso, uso }));
    assert_eq!(
        t(Ok(()), Ok(())).line(),
        "✅ TUN offload: IFF_VNET_HDR with CSUM, TSO4, TSO6, USO4, USO6"
    );
    let older = t(Ok(()), Err(os(libc::EINVAL)));
    assert_level(&older, Level::Warn, "USO4/USO6 not supported (Linux 6.2+)");
    assert!(older.line().starts_with("✅"));
    assert_level(
        &t(Err(os(libc::EINVAL)), Err(os(libc::EINVAL))),
        Level::Fail,
        "refuses CSUM|TSO4|TSO6",
    );
}

/// The probes themselves on this kernel (6.x): everything is supported.
#[test]
fn offload_probes_on_this_kernel() {
    let (gso, gro) = probe::udp_offloads();
    assert!(gso.is_ok() && gro.is_ok(), "{gso:?} {gro:?}");
    if !privileged("offload_probes_on_this_kernel") {
        return;
    }
    let r = in_netns(probe::tun_offload);
    let c = tun_offload(&r);
    assert_ne!(c.level, Level::Fail, "{}", c.line());
}

fn iface(name: &str, mtu: u32, kind: u32, up: bool) -> Iface {
    Iface {
        name: name.into(),
        mtu,
        kind,
        up,
    }
}

#[test]
fn mtu_check() {
    let lo = iface("lo", 65536, ARPHRD_LOOPBACK, true);
    let eth = iface("eth0", 1500, 1, true);
    let wg = iface("wg0", 9000, ARPHRD_NONE, true);
    let down = iface("ifb0", 9000, 1, false);
    let all = [lo.clone(), eth.clone(), wg, down.clone()];
    assert_eq!(
        uplink(&all),
        Some(&eth),
        "loopback, tunnels and down links are not uplinks"
    );
    assert_eq!(
        uplink(&[lo.clone(), down.clone()]),
        Some(&down),
        "down links when nothing is up"
    );
    assert_eq!(
        mtu(1420, false, false, &all).line(),
        "✅ MTU: 1420 (default) fits eth0 MTU 1500 minus 80"
    );
    let c = mtu(1421, true, false, &all);
    assert_eq!(
        c.line(),
        "❌ MTU: 1421 exceeds eth0 MTU 1500 minus 80 bytes of WireGuard overhead: set mtu <= 1420"
    );
    assert_level(
        &mtu(1420, false, false, &[iface("eth0", 1400, 1, true)]),
        Level::Fail,
        "set mtu <= 1320",
    );
    assert_level(
        &mtu(1279, true, true, &all),
        Level::Fail,
        "below 1280, the minimum with IPv6",
    );
    assert_level(&mtu(1279, true, false, &all), Level::Pass, "1279");
    assert_level(&mtu(575, true, false, &all), Level::Fail, "below 576");
    assert_level(
        &mtu(1420, false, false, &[lo]),
        Level::Warn,
        "no non-loopback interface",
    );
    assert_level(
        &mtu(1420, false, false, &[]),
        Level::Warn,
        "no non-loopback interface",
    );
}

#[test]
fn interfaces_from_sysfs() {
    let d = temp_dir("sys");
    for (name, mtu, kind, flags) in [
        ("eth0", "1500\n", "1\n", "0x1003\n"),
        ("lo", "65536\n", "772\n", "0x9\n"),
        ("ifb0", "1500\n", "1\n", "0x82\n"),
    ] {
        let p = d.join(name);
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("mtu"), mtu).unwrap();
        std::fs::write(p.join("type"), kind).unwrap();
        std::fs::write(p.join("flags"), flags).unwrap();
    }
    std::fs::create_dir(d.join("broken")).unwrap();
    let got = probe::interfaces(&d);
    assert_eq!(
        got,
        vec![
            iface("eth0", 1500, 1, true),
            iface("ifb0", 1500, 1, false),
            iface("lo", 65536, 772, true)
        ]
    );
    assert!(probe::interfaces(&d.join("nope")).is_empty());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn proc_net_tables() {
    let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
   12: 00000000:CA6C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0\n\
   13: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 0\n\
   14: garbage\n";
    assert_eq!(probe::socket_inodes(udp, 51820, Proto::Udp), vec![4242]);
    assert_eq!(probe::socket_inodes(udp, 53, Proto::Udp), vec![77]);
    assert!(probe::socket_inodes(udp, 9, Proto::Udp).is_empty());
    let tcp = "  sl  local_address rem_address   st ...\n\
   0: 0100007F:2572 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 900 1 0 100 0 0 10 0\n\
   1: 0100007F:2572 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 901 1 0 100 0 0 10 0\n";
    assert_eq!(
        probe::socket_inodes(tcp, 9586, Proto::TcpListen),
        vec![900],
        "only LISTEN sockets"
    );
}

/// A socket this process holds is traced back to this process.
#[test]
fn holder_of_a_bound_port() {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    let holder = probe::port_holder(Proto::Udp, port).expect("our own socket is found");
    assert!(
        holder.starts_with(&format!("pid {} (", std::process::id())),
        "{holder}"
    );
    drop(s);
    assert_eq!(probe::find_holder(Path::new("/proc"), &[]), None);
}

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// The whole command on this machine (as root, in a fresh network
/// namespace): passes against a good config, fails with exit 1 while the
/// configured UDP port is held.
#[test]
fn whole_run_as_root() {
    if !privileged("whole_run_as_root") {
        return;
    }
    let d = temp_dir("run");
    let key = d.join("keys/private.key");
    let cfg = d.join("phantommesh.toml");
    let run = move |hold: bool| -> (i32, String, u16) {
        let port = free_port(true);
        let admin = free_port(false);
        std::fs::write(
            &cfg,
            format!(
                "[interface]\nname = \"pmpf0\"\nprivate_key_file = \"{}\"\nlisten_port = {port}\nmtu = 1280\n\
                 addresses = [\"10.99.0.1/24\", \"fd99::1/64\"]\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
                key.display()
            ),
        )
        .unwrap();
        let held = hold.then(|| std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap());
        let opts = Options {
            config: Some(cfg.clone()),
            env: Box::new(|_| None),
            ..Options::default()
        };
        let mut out = Vec::new();
        let code = run_with(&opts, false, &mut out);
        drop(held);
        (code, String::from_utf8(out).unwrap(), port)
    };
    let (code, out, _) = in_netns({
        let run = run.clone();
        move || run(false)
    });
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 11, "{out}");
    assert!(out.lines().take(10).all(|l| l.starts_with("✅ ")), "{out}");
    assert!(
        out.contains("✅ Private key: ") && out.contains("will be generated on first start"),
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("Preflight: PASSED (10 checks"),
        "{out}"
    );

    let (code, out, port) = in_netns(move || run(true));
    assert_eq!(code, 1, "{out}");
    let want = format!(
        "❌ UDP listen port: {port} on [::]: in use by pid {} (",
        std::process::id()
    );
    assert!(out.contains(&want), "{out}");
    assert!(
        out.contains("Preflight: FAILED (1 of 10 checks failed)"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
