//! The admin plane's mesh view, health, metrics and probes, over real
//! devices on the in-memory backends.
use super::*;
use crate::admin::health::{self, Kind};
use crate::io::mem::MemNetwork;

use crate::device::test_node::TestNode as Node;

fn ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p
}

/// A and B with a completed handshake; B is a mesh member of A's.
fn pair(net: &MemNetwork, port: u16) -> (Node, Node) {
    let a = Node::new(net, "192.0.2.1", port, [0x11; 32]);
    let b = Node::new(net, "192.0.2.2", port + 1, [0x22; 32]);
    a.add_peer(&b, None, true, &[("10.100.0.2", 32), ("10.244.1.0", 24)]);
    b.add_peer(&a, None, false, &[("10.100.0.1", 32)]);
    let pkt = ipv4([10, 100, 0, 1], [10, 100, 0, 2]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no handshake");
        a.tun.inject(&pkt);
        if b.tun.recv_timeout(Duration::from_millis(300)).is_some() {
            return (a, b);
        }
    }
}

fn member(name: &str, key: [u8; 32], addrs: &[&str], allowed: &[(&str, u8)]) -> Member {
    Member {
        name: name.into(),
        public_key: key,
        endpoint: None,
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        allowed_ips: allowed
            .iter()
            .map(|(a, c)| (a.parse().unwrap(), *c))
            .collect(),
    }
}

fn admin(dev: &Arc<Device>, ifname: &str) -> Arc<AdminState> {
    AdminState::new(
        dev.clone(),
        ifname,
        None,
        crate::gates::GatesConfig::default(),
    )
}

const C_KEY: [u8; 32] = [0x33; 32];

/// A's admin state with members b (handshaken, probed ok) and c (no peer
/// in the device, never probed).
fn mesh_setup(a: &Node, b: &Node) -> (Arc<AdminState>, Arc<MeshState>) {
    let st = admin(&a.dev, "pm-nonexistent0");
    let mesh = Arc::new(MeshState::new("node-a", "/phantommesh"));
    mesh.set_own_addresses(vec!["10.100.0.1".parse().unwrap()]);
    let mut mb = member("node-b", b.public(), &["10.100.0.2"], &[("10.244.1.0", 24)]);
    mb.endpoint = Some("192.0.2.2:7001".into());
    let mc = member("node-c", C_KEY, &["10.100.0.3", "fd10::3"], &[]);
    mesh.set_members(vec![mc, mb]);
    mesh.record_probe(
        b.public(),
        ProbeResult {
            at: Instant::now(),
            rtt: Some(Duration::from_micros(1500)),
        },
    );
    assert!(st.attach_mesh(mesh.clone()));
    assert!(!st.attach_mesh(mesh.clone()), "set once");
    (st, mesh)
}

#[test]
fn mesh_json_shape() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 53100);
    let (st, mesh) = mesh_setup(&a, &b);
    mesh.set_store_up(true);
    mesh.set_started();
    mesh.count_conflict();
    mesh.count_sync_error();
    mesh.count_sync_error();
    let v = serde_json::to_value(st.mesh_view().unwrap()).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        [
            "addresses",
            "conflicts",
            "members",
            "node",
            "prefix",
            "started",
            "store_up",
            "sync_errors"
        ]
    );
    assert_eq!(v["node"], "node-a");
    assert_eq!(v["prefix"], "/phantommesh");
    assert_eq!(v["store_up"], true);
    assert_eq!(v["started"], true);
    assert_eq!(v["addresses"], serde_json::json!(["10.100.0.1"]));
    assert_eq!(v["conflicts"], 1);
    assert_eq!(v["sync_errors"], 2);
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let (mb, mc) = (&members[0], &members[1]);
    assert_eq!(
        keys(mb),
        [
            "addresses",
            "allowed_ips",
            "endpoint",
            "handshake_age_seconds",
            "healthy",
            "last_probe",
            "name",
            "problem",
            "public_key"
        ]
    );
    assert_eq!(mb["name"], "node-b");
    assert_eq!(
        mb["public_key"],
        crate::noise::keys::encode_base64_key(&b.public())
    );
    assert_eq!(mb["endpoint"], "192.0.2.2:7001");
    assert_eq!(mb["addresses"], serde_json::json!(["10.100.0.2"]));
    assert_eq!(mb["allowed_ips"], serde_json::json!(["10.244.1.0/24"]));
    let age = mb["handshake_age_seconds"].as_f64().unwrap();
    assert!((0.0..30.0).contains(&age), "{age}");
    assert_eq!(mb["last_probe"]["ok"], true);
    assert_eq!(mb["last_probe"]["rtt_ms"], 1.5);
    assert!(mb["last_probe"]["age_seconds"].as_f64().unwrap() < 30.0);
    assert_eq!(mb["healthy"], true);
    assert_eq!(mb["problem"], serde_json::Value::Null);

    assert_eq!(mc["name"], "node-c");
    assert_eq!(mc["endpoint"], serde_json::Value::Null);
    assert_eq!(
        mc["addresses"],
        serde_json::json!(["10.100.0.3", "fd10::3"])
    );
    assert_eq!(mc["allowed_ips"], serde_json::json!([]));
    assert_eq!(mc["handshake_age_seconds"], serde_json::Value::Null);
    assert_eq!(mc["last_probe"], serde_json::Value::Null);
    assert_eq!(mc["healthy"], false);
    assert_eq!(mc["problem"], "no handshake yet");

    // An unanswered probe reads ok false, rtt null.
    mesh.record_probe(
        C_KEY,
        ProbeResult {
            at: Instant::now(),
            rtt: None,
        },
    );
    let v = serde_json::to_value(st.mesh_view().unwrap()).unwrap();
    assert_eq!(v["members"][1]["last_probe"]["ok"], false);
    assert_eq!(
        v["members"][1]["last_probe"]["rtt_ms"],
        serde_json::Value::Null
    );

    // No secrets: neither node's private key in any encoding.
    let text = serde_json::to_string(&v).unwrap();
    for secret in [a.secret, b.secret] {
        assert!(!text.contains(&crate::noise::keys::encode_base64_key(&secret)));
        assert!(!text.contains(&hex::encode(secret)));
    }
}

/// `/mesh` through the real router and server: 200 with the view, 404
/// with a clear message on a node without a mesh.
#[test]
fn mesh_endpoint_routes() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 53110);
    let (st, _mesh) = mesh_setup(&a, &b);
    let plain = admin(&b.dev, "pm-nonexistent1");
    let get = |st: &Arc<AdminState>, path: &str| {
        let addr = crate::admin::serve(st.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let url = crate::gates::fetch::Url::parse(&format!("http://{addr}{path}")).unwrap();
        crate::gates::fetch::get(&url, None, Duration::from_secs(5)).unwrap()
    };
    let r = get(&st, "/mesh");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["node"], "node-a");
    assert_eq!(v["members"][0]["name"], "node-b");
    let r = get(&plain, "/mesh");
    assert_eq!(r.status, 404);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("no mesh configured"),
        "{v}"
    );
    // The mesh gate through /gates/mesh: c is unhealthy, so 503.
    let r = get(&st, "/gates/mesh");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let r = get(&plain, "/gates/mesh");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn readiness_mesh_check_is_local() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 53120);
    let plain = admin(&a.dev, "pm-nonexistent0");
    let opts = health::Options {
        verbose: true,
        exclude: vec![],
    };
    // No mesh: no check, and asking for it is a 404.
    let (_, body) = health::evaluate(&plain, Kind::Ready, None, &opts).unwrap();
    assert!(!body.contains("mesh"), "{body}");
    assert!(health::evaluate(&plain, Kind::Ready, Some("mesh"), &opts).is_err());

    let (st, mesh) = mesh_setup(&a, &b);
    assert_eq!(
        Kind::Ready.checks_for(&st).last(),
        Some(&"mesh"),
        "readiness"
    );
    assert!(Kind::Health.checks_for(&st).contains(&"mesh"));
    assert!(!Kind::Live.checks_for(&st).contains(&"mesh"), "liveness");
    let (ok, body) = health::evaluate(&st, Kind::Ready, Some("mesh"), &opts).unwrap();
    assert!(!ok);
    assert_eq!(
        body,
        "[-]mesh failed: no view of the mesh yet (store unreachable at start and no cache)\nreadyz check failed\n"
    );
    let (_, all) = health::evaluate(&st, Kind::Ready, None, &opts).unwrap();
    assert!(
        all.contains("[-]mesh failed: no view of the mesh yet"),
        "{all}"
    );
    // Started (from the store or the cache): ok, with the store down
    // and every member unreachable.
    mesh.set_started();
    mesh.set_store_up(false);
    mesh.set_members(vec![member("node-x", [0x44; 32], &["10.100.0.9"], &[])]);
    let (ok, body) = health::evaluate(&st, Kind::Ready, Some("mesh"), &opts).unwrap();
    assert!(ok, "{body}");
    assert_eq!(body, "[+]mesh ok\nreadyz check passed\n");
    let (_, all) = health::evaluate(&st, Kind::Ready, None, &opts).unwrap();
    assert!(all.contains("[+]mesh ok\n"), "{all}");
    // ?exclude=mesh works like for any check.
    let ex = health::Options {
        verbose: true,
        exclude: vec!["mesh".into()],
    };
    let (_, all) = health::evaluate(&st, Kind::Ready, None, &ex).unwrap();
    assert!(!all.contains("mesh"), "{all}");
}

#[test]
fn gate_reads_the_mesh() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 53130);
    let plain = admin(&a.dev, "pm-nonexistent0");
    let g = |st: &AdminState| st.gates.report(st).gate("mesh").unwrap().metrics[0].clone();
    let m = g(&plain);
    assert!(m.pass);
    assert_eq!(m.reason.as_deref(), Some(crate::gates::NOT_APPLICABLE));

    let (st, mesh) = mesh_setup(&a, &b);
    mesh.set_store_up(true);
    let m = g(&st);
    assert!(!m.pass);
    assert_eq!(m.actual, Some(50.0));
    assert_eq!(
        m.reason.as_deref(),
        Some("1 of 2 members unhealthy: node-c: no handshake yet")
    );
    // Only b left: 100 %.
    let mb = mesh
        .members()
        .into_iter()
        .find(|m| m.name == "node-b")
        .unwrap();
    mesh.set_members(vec![mb]);
    assert!(g(&st).pass);
    // The store going away fails the gate.
    mesh.set_store_up(false);
    let m = g(&st);
    assert!(!m.pass);
    assert_eq!(m.reason.as_deref(), Some("mesh store unreachable"));
    // A mesh of one with the store up passes.
    mesh.set_store_up(true);
    mesh.set_members(vec![]);
    let m = g(&st);
    assert!(m.pass && m.actual == Some(100.0), "{m:?}");
}

#[test]
fn metrics_only_with_a_mesh() {
    let net = MemNetwork::new();
    let (a, b) = pair(&net, 53140);
    let scrape = |st: &AdminState| {
        let mut out = String::new();
        crate::metrics::render(&mut out, &st.dev, &super::super::routes::metrics_extra(st));
        let p = crate::metrics::parse::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        (out, p)
    };
    let plain = admin(&a.dev, "pm-nonexistent0");
    let (text, _) = scrape(&plain);
    assert!(!text.contains("phantommesh_mesh_"), "{text}");

    let (st, mesh) = mesh_setup(&a, &b);
    mesh.set_store_up(true);
    mesh.count_conflict();
    for _ in 0..3 {
        mesh.count_sync_error();
    }
    for ms in [30, 70, 700, 100_000] {
        mesh.observe_convergence(Duration::from_millis(ms));
    }
    let (text, p) = scrape(&st);
    assert_eq!(p.value("phantommesh_mesh_peers", &[]), Some(2.0));
    assert_eq!(p.value("phantommesh_mesh_store_up", &[]), Some(1.0));
    assert_eq!(
        p.value("phantommesh_mesh_sync_errors_total", &[]),
        Some(3.0)
    );
    assert_eq!(p.value("phantommesh_mesh_conflicts_total", &[]), Some(1.0));
    for line in [
        "# HELP phantommesh_mesh_peers Mesh members applied as peers (this node excluded).\n# TYPE phantommesh_mesh_peers gauge\n",
        "# TYPE phantommesh_mesh_store_up gauge\n",
        "# TYPE phantommesh_mesh_sync_errors_total counter\n",
        "# TYPE phantommesh_mesh_conflicts_total counter\n",
        "# TYPE phantommesh_mesh_convergence_seconds histogram\n",
        "phantommesh_mesh_convergence_seconds_bucket{le=\"0.05\"} 1\n",
        "phantommesh_mesh_convergence_seconds_bucket{le=\"0.1\"} 2\n",
        "phantommesh_mesh_convergence_seconds_bucket{le=\"0.5\"} 2\n",
        "phantommesh_mesh_convergence_seconds_bucket{le=\"1\"} 3\n",
        "phantommesh_mesh_convergence_seconds_bucket{le=\"60\"} 3\n",
        "phantommesh_mesh_convergence_seconds_bucket{le=\"+Inf\"} 4\n",
        "phantommesh_mesh_convergence_seconds_sum 100.8\n",
        "phantommesh_mesh_convergence_seconds_count 4\n",
        // The readiness check and the gate show up in their families.
        "phantommesh_health_check_passed{check=\"mesh\"} 0\n",
        "phantommesh_gate_passed{gate=\"mesh\"} 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    mesh.set_store_up(false);
    let (_, p) = scrape(&st);
    assert_eq!(p.value("phantommesh_mesh_store_up", &[]), Some(0.0));
}

#[test]
fn sample_sizes_cover_a_32_node_mesh_every_20_s() {
    assert_eq!(sample_size(0), 1);
    assert_eq!(sample_size(1), 1);
    assert_eq!(sample_size(31), 8);
    assert_eq!(sample_size(64), 16);
    assert_eq!(sample_size(1000), MAX_SAMPLE);
    assert_eq!(probe_cycle(31), Duration::from_secs(20));
    assert_eq!(probe_cycle(3), Duration::from_secs(15));
    assert_eq!(probe_cycle(1000), Duration::from_secs(5 * 63));
    assert_eq!(probe_freshness(31), Duration::from_secs(60));
    assert_eq!(probe_freshness(1), MIN_PROBE_FRESH);
    assert_eq!(probe_freshness(0), MIN_PROBE_FRESH);

    // Simulate rounds over 31 members: each is probed every 4 rounds
    // (20 s), including members that join late.
    let t0 = Instant::now();
    let mut last: Vec<Option<Instant>> = vec![None; 31];
    let mut rounds_of: Vec<Vec<usize>> = vec![Vec::new(); 31];
    for round in 0..12 {
        if round == 5 {
            last.push(None); // a member joins
            rounds_of.push(Vec::new());
        }
        let now = t0 + PROBE_INTERVAL * round as u32;
        let picked = pick_sample(&last, sample_size(last.len()));
        assert!(picked.len() <= sample_size(last.len()));
        if round == 5 {
            assert_eq!(picked[0], 31, "the newcomer goes first");
        }
        for i in picked {
            last[i] = Some(now);
            rounds_of[i].push(round);
        }
    }
    for (i, r) in rounds_of.iter().enumerate() {
        assert!(r.len() >= 2, "member {i} probed in rounds {r:?}");
        for w in r.windows(2) {
            assert!(w[1] - w[0] <= 4, "member {i} waited: {r:?}");
        }
    }
}

#[test]
fn member_health_rules() {
    let now = Instant::now() + Duration::from_secs(1000);
    let fresh = Duration::from_secs(60);
    let ok_probe = |ago: u64| {
        Some(ProbeResult {
            at: now - Duration::from_secs(ago),
            rtt: Some(Duration::from_millis(2)),
        })
    };
    let hs = |s: u64| Some(Duration::from_secs(s));
    assert_eq!(member_problem(hs(10), ok_probe(5), now, fresh), None);
    assert_eq!(member_problem(hs(180), ok_probe(60), now, fresh), None);
    assert_eq!(
        member_problem(hs(181), ok_probe(5), now, fresh).as_deref(),
        Some("no handshake in 180 s")
    );
    assert_eq!(
        member_problem(None, ok_probe(5), now, fresh).as_deref(),
        Some("no handshake yet")
    );
    assert_eq!(
        member_problem(hs(10), None, now, fresh).as_deref(),
        Some("not probed yet")
    );
    assert_eq!(
        member_problem(hs(10), ok_probe(61), now, fresh).as_deref(),
        Some("no probe in 60 s")
    );
    let lost = Some(ProbeResult { at: now, rtt: None });
    assert_eq!(
        member_problem(hs(10), lost, now, fresh).as_deref(),
        Some("last probe unanswered")
    );
}

#[test]
fn probe_targets_follow_the_interface_families() {
    let m = member("n", [1; 32], &["fd10::3", "10.100.0.3", "10.100.0.4"], &[]);
    assert_eq!(
        probe_target(&m, (true, true)),
        Some("fd10::3".parse().unwrap())
    );
    assert_eq!(
        probe_target(&m, (true, false)),
        Some("10.100.0.3".parse().unwrap())
    );
    assert_eq!(probe_target(&m, (false, false)), None);
    let v4only = member("n", [1; 32], &["10.100.0.3"], &[]);
    assert_eq!(probe_target(&v4only, (false, true)), None);
}

/// A round probes members through the interface and records the result
/// in the mesh state, the gates' window and the RTT histogram. Here the
/// "interface" is loopback and the device routes 127.0.0.1 to member b,
/// so b's echoes get real replies; c's address is routed to no peer of
/// the device, so c is never probed.
#[test]
fn probe_round_records_real_echoes() {
    if peer_probe::EchoSocket::open("lo", "127.0.0.1".parse().unwrap()).is_err() {
        eprintln!("no ICMP socket allowed here; skipped");
        return;
    }
    let net = MemNetwork::new();
    let a = Node::new(&net, "192.0.2.1", 53150, [0x11; 32]);
    let b = Node::new(&net, "192.0.2.2", 53151, [0x22; 32]);
    a.add_peer(&b, None, true, &[("127.0.0.1", 32)]);
    let st = admin(&a.dev, "lo");
    let mesh = Arc::new(MeshState::new("node-a", "/p"));
    mesh.set_members(vec![
        member("node-b", b.public(), &["127.0.0.1"], &[]),
        member("node-c", C_KEY, &["127.0.0.2"], &[]),
        member("node-d", [0x55; 32], &["fd10::9"], &[]),
    ]);
    st.attach_mesh(mesh.clone());
    let rtt_before = a.dev.histograms().tunnel_test_rtt.snapshot().count;
    let r = probe_round(&st, &mesh);
    assert_eq!((r.probed, r.answered), (1, 1), "{:?}", r.errors);
    let p = mesh.probe(&b.public()).expect("b probed");
    assert!(p.rtt.is_some());
    assert!(mesh.probe(&C_KEY).is_none(), "c is not routed to its peer");
    assert!(mesh.probe(&[0x55; 32]).is_none());
    let s = st.gates.window.summary(Instant::now());
    assert_eq!((s.attempts, s.successes), (ECHOES as u64, ECHOES as u64));
    assert_eq!(s.latency_samples, ECHOES as u64);
    assert_eq!(
        a.dev.histograms().tunnel_test_rtt.snapshot().count,
        rtt_before + ECHOES as u64
    );
    // An empty mesh probes nothing.
    mesh.set_members(vec![]);
    let r = probe_round(&st, &mesh);
    assert_eq!(r.probed, 0);
}

/// A periodic self test that fails twice (no interface, so no probe
/// route and no TUN to answer) is readiness's verdict; the repeat does not
/// hide a real failure, and both runs are counted.
#[test]
fn a_failing_periodic_self_test_is_recorded_after_its_repeat() {
    let net = MemNetwork::new();
    let a = Node::new(&net, "192.0.2.1", 47_100, [0x11; 32]);
    let st = admin(&a.dev, "pm-no-such-if");
    // A device with no key cannot pass a self test.
    a.dev
        .apply(&crate::uapi::protocol::DeviceSet {
            private_key: Some([0; 32]),
            ..Default::default()
        })
        .unwrap();
    let rep = st.run_periodic_self_test(1).unwrap();
    assert!(!rep.ok);
    assert_eq!(st.tests_run.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(
        st.tests_failed.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert!(st.self_test.lock().as_ref().is_some_and(|r| !r.ok));
}
