use crate::config::toml_config::{apply_env, parse};
use crate::config::RouteTable;
use std::collections::HashMap;
use std::path::Path;

const HEAD: &str = "[interface]\nname = \"pm0\"\nprivate_key_file = \"/k\"\n";

fn mesh(body: &str) -> String {
    format!("{HEAD}[mesh]\nstore = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\"]\nnetwork = \"10.100.0.0/16\"\n{body}")
}

#[test]
fn full_section_and_defaults() {
    let cfg = parse(
        &mesh("node_name = \"a\"\nallowed_ips = [\"10.244.1.0/24\"]\nlease_ttl = 5\nca_file = \"ca.pem\"\n"),
        Path::new("/etc/pm/c.toml"),
    )
    .unwrap();
    let m = cfg.mesh.unwrap();
    assert_eq!(m.node_name, "a");
    assert_eq!(m.prefix, "/phantommesh/default");
    assert_eq!(m.lease_ttl, 5);
    assert_eq!(m.persistent_keepalive, 25);
    assert_eq!(m.ca_file.unwrap(), Path::new("/etc/pm/ca.pem"));
    assert_eq!(m.network, vec![("10.100.0.0".parse().unwrap(), 16)]);
    assert!(cfg.interface.addresses.is_empty());
    assert_eq!(cfg.interface.table, RouteTable::Auto);
    let cfg = parse(
        &mesh("network = [\"10.1.0.0/24\", \"fd00::/64\"]\n")
            .replace("network = \"10.100.0.0/16\"\n", ""),
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(cfg.mesh.unwrap().network.len(), 2);
}

#[test]
fn errors_name_the_line_and_the_problem() {
    let cases = [
        (
            mesh("").replace("\"etcd\"", "\"consul\""),
            5,
            "only store is \"etcd\"",
        ),
        (
            mesh("").replace("http://10.0.0.1:2379", "10.0.0.1:2379"),
            6,
            "invalid etcd endpoint",
        ),
        (mesh("node_name = \"../x\"\n"), 8, "invalid node_name"),
        (mesh("lease_ttl = 1\n"), 8, "lease_ttl 1 out of range"),
        (mesh("prefix = \"relative\"\n"), 8, "invalid mesh prefix"),
        (
            mesh("cert_file = \"c\"\n"),
            8,
            "cert_file and key_file go together",
        ),
        (
            mesh("").replace("10.100.0.0/16", "10.100.0.0/31"),
            7,
            "too small",
        ),
        (
            mesh("").replace("\"10.100.0.0/16\"", "[\"10.1.0.0/16\", \"10.2.0.0/16\"]"),
            7,
            "at most one IPv4",
        ),
        (
            mesh("allowed_ips = [\"10.0.0.0/33\"]\n"),
            8,
            "in allowed_ips",
        ),
        (mesh("bogus = 1\n"), 8, "unknown field"),
        (format!("{HEAD}table = \"sometimes\"\n"), 4, "invalid table"),
    ];
    for (text, line, want) in cases {
        let e = parse(&text, Path::new("c.toml")).unwrap_err();
        assert_eq!(e.line, line, "{want}: {e}");
        assert!(e.message.contains(want), "{want}: {e}");
    }
}

#[test]
fn tables_parse_like_wg_quick() {
    for (v, want) in [
        ("\"off\"", RouteTable::Off),
        ("\"main\"", RouteTable::Id(254)),
        ("1234", RouteTable::Id(1234)),
        ("\"1234\"", RouteTable::Id(1234)),
    ] {
        let cfg = parse(&format!("{HEAD}table = {v}\n"), Path::new("c.toml")).unwrap();
        assert_eq!(cfg.interface.table, want, "{v}");
    }
    assert_eq!(RouteTable::Off.id(), None);
    assert_eq!(RouteTable::Auto.id(), Some(254));
}

#[test]
fn environment_overrides_mesh_keys_and_names_bad_values() {
    let mut cfg = parse(&mesh("node_name = \"a\"\n"), Path::new("c.toml")).unwrap();
    let env: HashMap<&str, &str> = [
        ("PHANTOMMESH_NODE_NAME", "node-7"),
        ("PHANTOMMESH_ADVERTISE_ENDPOINT", "192.0.2.7"),
        (
            "PHANTOMMESH_MESH_ALLOWED_IPS",
            "10.244.7.0/24, fd00:244:7::/64",
        ),
        (
            "PHANTOMMESH_MESH_ENDPOINTS",
            "http://10.0.0.2:2379,https://10.0.0.3:2379",
        ),
    ]
    .into();
    apply_env(&mut cfg, |k| env.get(k).map(|v| v.to_string())).unwrap();
    let m = cfg.mesh.as_ref().unwrap();
    assert_eq!(m.node_name, "node-7");
    assert_eq!(m.advertise_endpoint.as_deref(), Some("192.0.2.7"));
    assert_eq!(m.allowed_ips.len(), 2);
    assert_eq!(m.endpoints.len(), 2);
    let e = apply_env(&mut cfg, |k| {
        (k == "PHANTOMMESH_MESH_ALLOWED_IPS").then(|| "10.0.0.0/99".to_string())
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("PHANTOMMESH_MESH_ALLOWED_IPS"),
        "{e}"
    );
    // Without [mesh] the mesh variables are not read.
    let mut plain = parse(HEAD, Path::new("c.toml")).unwrap();
    apply_env(&mut plain, |k| env.get(k).map(|v| v.to_string())).unwrap();
    assert!(plain.mesh.is_none());
}
