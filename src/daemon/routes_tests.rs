use super::*;

fn p(s: &str) -> Prefix {
    crate::config::parse_cidr(s).unwrap()
}

fn set(items: &[&str]) -> BTreeSet<Prefix> {
    items.iter().map(|s| p(s)).collect()
}

fn want(iface: &[&str], peers: &[&str], table: RouteTable, allow_default: bool) -> Desired {
    let iface: Vec<Prefix> = iface.iter().map(|s| p(s)).collect();
    let peers: Vec<Prefix> = peers.iter().map(|s| p(s)).collect();
    desired_routes(&iface, &peers, table, allow_default)
}

#[test]
fn normalise_clears_host_bits_v4_and_v6() {
    assert_eq!(normalise(p("10.244.1.7/24")), p("10.244.1.0/24"));
    assert_eq!(normalise(p("10.100.0.7/32")), p("10.100.0.7/32"));
    assert_eq!(normalise(p("192.168.3.4/0")), p("0.0.0.0/0"));
    assert_eq!(normalise(p("fd00:244::1/64")), p("fd00:244::/64"));
    assert_eq!(
        normalise(p("fd00:244:1:2:3::9/127")),
        p("fd00:244:1:2:3::8/127")
    );
    assert_eq!(normalise(p("2001:db8::1/0")), p("::/0"));
}

#[test]
fn interface_prefix_covers_peers_inside_it_in_the_main_table() {
    let d = want(
        &["10.100.0.5/16", "fd00:100::5/64"],
        &[
            "10.100.0.7/32",
            "10.100.0.0/16",
            "10.244.1.0/24",
            "fd00:100::7/128",
            "fd00:244::/64",
            // Wider than the interface's prefix: not covered.
            "10.0.0.0/8",
        ],
        RouteTable::Auto,
        false,
    );
    assert_eq!(
        d.routes,
        set(&["10.244.1.0/24", "fd00:244::/64", "10.0.0.0/8"])
    );
    assert!(d.skipped_defaults.is_empty());
    // Table 254 named as a number is the main table too.
    let d = want(
        &["10.100.0.5/16"],
        &["10.100.0.7/32"],
        RouteTable::Id(254),
        false,
    );
    assert!(d.routes.is_empty());
}

#[test]
fn another_table_routes_every_prefix() {
    let d = want(
        &["10.100.0.5/16"],
        &["10.100.0.7/32", "10.244.1.0/24"],
        RouteTable::Id(1234),
        false,
    );
    assert_eq!(d.routes, set(&["10.100.0.7/32", "10.244.1.0/24"]));
}

#[test]
fn families_do_not_cover_each_other() {
    // ::/96 would "contain" 10.x as a number; the family check keeps it out.
    let d = want(&["::/96"], &["10.244.1.0/24"], RouteTable::Auto, false);
    assert_eq!(d.routes, set(&["10.244.1.0/24"]));
}

#[test]
fn default_routes_need_the_opt_in() {
    let peers = ["0.0.0.0/0", "::/0", "10.244.1.9/0", "10.244.1.0/24"];
    let d = want(&["10.100.0.5/16"], &peers, RouteTable::Auto, false);
    assert_eq!(d.routes, set(&["10.244.1.0/24"]));
    assert_eq!(d.skipped_defaults, set(&["0.0.0.0/0", "::/0"]));
    let d = want(&["10.100.0.5/16"], &peers, RouteTable::Auto, true);
    assert_eq!(d.routes, set(&["0.0.0.0/0", "::/0", "10.244.1.0/24"]));
    assert!(d.skipped_defaults.is_empty());
}

#[test]
fn table_off_wants_nothing() {
    let d = want(
        &["10.100.0.5/16"],
        &["10.244.1.0/24", "0.0.0.0/0"],
        RouteTable::Off,
        false,
    );
    assert_eq!(d, Desired::default());
}

#[test]
fn prefixes_from_several_peers_make_one_route() {
    let d = want(
        &[],
        &[
            "10.244.1.0/24",
            "10.244.1.5/24",
            "10.244.1.0/24",
            "fd00::1/64",
            "fd00::/64",
        ],
        RouteTable::Auto,
        false,
    );
    assert_eq!(d.routes, set(&["10.244.1.0/24", "fd00::/64"]));
}

#[test]
fn diff_adds_the_missing_and_deletes_the_stale() {
    let installed = set(&["10.244.1.0/24", "10.244.2.0/24", "fd00::/64"]);
    let desired = set(&["10.244.2.0/24", "10.244.3.0/24", "fd00:1::/64"]);
    let d = diff(&installed, &desired);
    assert_eq!(d.add, vec![p("10.244.3.0/24"), p("fd00:1::/64")]);
    assert_eq!(d.delete, vec![p("10.244.1.0/24"), p("fd00::/64")]);
    assert_eq!(diff(&desired, &desired), Diff::default());
}

#[test]
fn table_off_never_touches_the_kernel() {
    // No such interface: any netlink work would fail, so Ok proves none ran.
    let mut rs = RouteSync::new("pm-no-such-if", RouteTable::Off, false);
    assert_eq!(rs.sync(&[], &[p("10.244.1.0/24")]), Ok(()));
    assert_eq!(rs.clear(), Ok(()));
}

#[test]
fn nothing_to_change_needs_no_interface() {
    let mut rs = RouteSync::new("pm-no-such-if", RouteTable::Auto, false);
    assert_eq!(
        rs.sync(&[p("10.100.0.5/16")], &[p("10.100.0.7/32")]),
        Ok(())
    );
    assert!(rs.installed().is_empty());
    let err = rs.sync(&[], &[p("10.244.1.0/24")]).unwrap_err();
    assert!(err.contains("no interface named pm-no-such-if"), "{err}");
    assert!(rs.installed().is_empty());
}
