//! RouteSync against a real kernel, in a network namespace of its own (root
//! needed; PHANTOMMESH_SKIP_PRIVILEGED=1 skips it, anything else without
//! root fails). The host's routes are never touched: RouteSync runs on a
//! thread that has entered the namespace, and `ip -n` reads it back.
use phantommesh::config::RouteTable;
use phantommesh::daemon::routes::{Prefix, RouteSync};
use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

const IF: &str = "pm0";

fn privileged(test: &str) -> bool {
    if std::env::var("PHANTOMMESH_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("skipping {test}: PHANTOMMESH_SKIP_PRIVILEGED=1");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("{test} needs root (CAP_NET_ADMIN, network namespaces); run as root or set PHANTOMMESH_SKIP_PRIVILEGED=1 to skip it");
    }
    true
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named namespace (`ip netns add`), deleted on drop, also after a failure.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("pm-routes-{}", std::process::id());
        // Left over by a killed run of this pid: start clean.
        if std::path::Path::new("/run/netns").join(&name).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
        ip(&["netns", "add", &name]);
        Netns(name)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn sysctl(&self, setting: &str) {
        let ok = Command::new("ip")
            .args(["netns", "exec", &self.0, "sysctl", "-qw", setting])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "sysctl -w {setting} in {}", self.0);
    }

    /// The routes of `table` that the kernel did not make itself, as
    /// (destination, line); `v6` picks the family.
    fn routes(&self, v6: bool, table: &str) -> Vec<(String, String)> {
        let family = if v6 { "-6" } else { "-4" };
        self.ip(&[family, "route", "show", "table", table])
            .lines()
            .filter(|l| !l.contains("proto kernel"))
            .map(|l| {
                (
                    l.split_whitespace().next().unwrap_or("").to_string(),
                    l.to_string(),
                )
            })
            .collect()
    }

    /// Asserts the non-kernel routes of `table`: exactly `ours` (through
    /// pm0, proto static) plus `foreign`.
    fn expect(&self, v6: bool, table: &str, ours: &[&str], foreign: &[&str]) {
        let got = self.routes(v6, table);
        let dsts: BTreeSet<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
        let want: BTreeSet<&str> = ours.iter().chain(foreign).copied().collect();
        assert_eq!(dsts, want, "table {table} (v6: {v6}): {got:#?}");
        for (dst, line) in &got {
            if ours.contains(&dst.as_str()) {
                assert!(
                    line.contains("dev pm0") && line.contains("proto static"),
                    "{line}"
                );
                if !v6 {
                    assert!(line.contains("scope link"), "{line}");
                }
            }
        }
    }

    /// Runs `f` on a thread that has entered the namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on this thread only, with a namespace descriptor.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            let here = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
            let there = std::fs::metadata(&path).unwrap();
            assert_eq!(
                (here.dev(), here.ino()),
                (there.dev(), there.ino()),
                "not inside the test namespace"
            );
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// `rs.sync(iface, peers)` inside the namespace; hands `rs` back.
    fn sync(
        &self,
        mut rs: RouteSync,
        iface: &[Prefix],
        peers: &[Prefix],
    ) -> (RouteSync, Result<(), String>) {
        let (iface, peers) = (iface.to_vec(), peers.to_vec());
        self.run(move || {
            let r = rs.sync(&iface, &peers);
            (rs, r)
        })
    }

    /// `rs.clear()` inside the namespace; hands `rs` back.
    fn clear(&self, mut rs: RouteSync) -> (RouteSync, Result<(), String>) {
        self.run(move || {
            let r = rs.clear();
            (rs, r)
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn p(s: &str) -> Prefix {
    let (a, l) = s.split_once('/').unwrap();
    (a.parse().unwrap(), l.parse().unwrap())
}

fn prefixes(items: &[&str]) -> Vec<Prefix> {
    items.iter().map(|s| p(s)).collect()
}

#[test]
fn route_sync_in_a_namespace() {
    if !privileged("route_sync_in_a_namespace") {
        return;
    }
    let ns = Netns::new();
    // A persistent TUN, as the daemon's own interface is (kernels built
    // without the dummy driver have TUN all the same). With no process
    // attached it has no carrier; routes on it are accepted ("linkdown").
    ns.ip(&["tuntap", "add", "dev", IF, "mode", "tun"]);
    ns.ip(&["addr", "add", "10.100.0.5/16", "dev", IF]);
    ns.ip(&["-6", "addr", "add", "fd00:100::5/64", "dev", IF, "nodad"]);
    ns.ip(&["link", "set", IF, "up"]);
    // Someone else's route through pm0 (never to be deleted), and one that
    // a previous run left (to be adopted on EEXIST).
    ns.ip(&["route", "add", "10.246.0.0/16", "dev", IF]);
    ns.ip(&[
        "route",
        "add",
        "10.245.0.0/16",
        "dev",
        IF,
        "proto",
        "static",
    ]);
    let foreign = ["10.246.0.0/16"];

    let iface = prefixes(&["10.100.0.5/16", "fd00:100::5/64"]);
    let all = prefixes(&[
        "10.100.0.7/32",
        "10.244.1.0/24",
        "10.245.0.0/16",
        "fd00:244::/64",
        "0.0.0.0/0",
    ]);
    let main = RouteSync::new(IF, RouteTable::Auto, false);
    let (main, r) = ns.sync(main, &iface, &all);
    assert_eq!(r, Ok(()));
    ns.expect(false, "main", &["10.244.1.0/24", "10.245.0.0/16"], &foreign);
    ns.expect(true, "main", &["fd00:244::/64"], &[]);

    // Fewer peers: their routes go, including the adopted one; the foreign
    // route stays. A second identical sync changes nothing.
    let fewer = prefixes(&["10.100.0.7/32", "fd00:244::/64"]);
    let (main, r) = ns.sync(main, &iface, &fewer);
    assert_eq!(r, Ok(()));
    let (main, r) = ns.sync(main, &iface, &fewer);
    assert_eq!(r, Ok(()));
    ns.expect(false, "main", &[], &foreign);
    ns.expect(true, "main", &["fd00:244::/64"], &[]);
    let (main, r) = ns.clear(main);
    assert_eq!((r, main.installed().len()), (Ok(()), 0));
    ns.expect(false, "main", &[], &foreign);
    ns.expect(true, "main", &[], &[]);

    // One route the kernel refuses (IPv6 off on pm0) does not stop the
    // others, is named in the error, and is tried again on the next sync.
    ns.sysctl(&format!("net.ipv6.conf.{IF}.disable_ipv6=1"));
    let two = prefixes(&["10.244.1.0/24", "fd00:244::/64"]);
    let (main, r) = ns.sync(main, &iface, &two);
    let err = r.expect_err("an IPv6 route on an interface without IPv6");
    assert!(
        err.starts_with("1 route change(s) on pm0 failed: add fd00:244::/64:"),
        "{err}"
    );
    ns.expect(false, "main", &["10.244.1.0/24"], &foreign);
    ns.sysctl(&format!("net.ipv6.conf.{IF}.disable_ipv6=0"));
    ns.ip(&["-6", "addr", "add", "fd00:100::5/64", "dev", IF, "nodad"]);
    let (main, r) = ns.sync(main, &iface, &two);
    assert_eq!(r, Ok(()));
    ns.expect(true, "main", &["fd00:244::/64"], &[]);
    let (_, r) = ns.clear(main);
    assert_eq!(r, Ok(()));

    // Table 1234 (only fits RTA_TABLE) with the default route opted in:
    // no interface coverage there, so the /32 gets a route too.
    let t = RouteSync::new(IF, RouteTable::Id(1234), true);
    let (t, r) = ns.sync(t, &iface, &all);
    assert_eq!(r, Ok(()));
    ns.expect(
        false,
        "1234",
        &["default", "10.100.0.7", "10.244.1.0/24", "10.245.0.0/16"],
        &[],
    );
    ns.expect(true, "1234", &["fd00:244::/64"], &[]);
    ns.expect(false, "main", &[], &foreign);
    let (_, r) = ns.clear(t);
    assert_eq!(r, Ok(()));
    ns.expect(false, "1234", &[], &[]);
    ns.expect(true, "1234", &[], &[]);

    // Shutdown after the interface is gone: its routes went with it.
    let t = RouteSync::new(IF, RouteTable::Id(1234), false);
    let (t, r) = ns.sync(t, &iface, &all);
    assert_eq!((r, t.installed().len()), (Ok(()), 4));
    ns.ip(&["link", "del", IF]);
    let (t, r) = ns.clear(t);
    assert_eq!((r, t.installed().len()), (Ok(()), 0));
    ns.expect(false, "main", &[], &[]);
}
