use super::*;
use crate::gates::{evaluate, GatesConfig, Resources, Summary};
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

const K1: &str = "Oq8j+3jDeWQCBA2MUndqtuI6Gojfkhgrdk1tHzg6jWU=";
const K2: &str = "gelknyF3PEghBeQ589zRcwwmXHUw8qnRlpBvE2Qt/3o=";
const K3: &str = "4nhsls0q7klSqPEh+VPMNSDd8fQGZoZospgUcqfAHiU=";
const OWN: &str = "EfN4eaBRVLhemVDYvGM43NI4I1QwUUZ/myMeqJmMAnc=";
const NOW: u64 = 1_795_736_300;

/// Hand-written like the daemon's scrape: K2 never handshook, K3 most recently.
fn metrics_body() -> String {
    let peer = |name: &str, v: [&str; 3]| {
        [
            (K1, "10.77.0.2/32,fd00:77::2/128", v[0]),
            (K2, "10.77.0.3/32", v[1]),
            (K3, "", v[2]),
        ]
        .iter()
        .map(|(k, ips, val)| {
            format!("{name}{{interface=\"pm0\",public_key=\"{k}\",allowed_ips=\"{ips}\"}} {val}\n")
        })
        .collect::<String>()
    };
    format!(
        "# HELP phantommesh_device_info Device.\n# TYPE phantommesh_device_info gauge\n\
         phantommesh_device_info{{interface=\"pm0\",public_key=\"{OWN}\"}} 1\n\
         # HELP phantommesh_listen_port Port.\n# TYPE phantommesh_listen_port gauge\nphantommesh_listen_port 51820\n\
         # HELP phantommesh_peers Peers.\n# TYPE phantommesh_peers gauge\nphantommesh_peers 3\n\
         # HELP phantommesh_peer_metrics_truncated T.\n# TYPE phantommesh_peer_metrics_truncated gauge\nphantommesh_peer_metrics_truncated 0\n\
         # HELP wireguard_sent_bytes_total Sent.\n# TYPE wireguard_sent_bytes_total counter\n{}\
         # HELP wireguard_received_bytes_total Received.\n# TYPE wireguard_received_bytes_total counter\n{}\
         # HELP wireguard_latest_handshake_seconds Handshake.\n# TYPE wireguard_latest_handshake_seconds gauge\n{}",
        peer("wireguard_sent_bytes_total", ["532", "0", "1610612736"]),
        peer("wireguard_received_bytes_total", ["1536", "0", "5242880"]),
        peer("wireguard_latest_handshake_seconds", ["1795736238", "0", "1795736295"]),
    )
}

const LIVE_OK: &str = "[+]ping ok\n[+]packet-loops ok\nlivez check passed\n";
const READY_OK: &str =
    "[+]tun ok\n[+]udp ok\n[+]config ok\n[+]uapi ok\n[+]self-test ok\nreadyz check passed\n";
const READY_BAD: &str = "[+]tun ok\n[+]udp ok\n[+]config ok\n[+]uapi ok\n[-]self-test failed: no reply from peer 10.77.0.2\nreadyz check failed\n";

use crate::gates::fetch_stub::gates_report as report;

use crate::gates::fetch_stub::http;

type Routes = HashMap<&'static str, Vec<u8>>;

/// An HTTP server on 127.0.0.1 answering `n` connections by request path
/// (the client asks in parallel, so order is not fixed); returns the
/// request heads it saw.
fn serve(routes: Routes, n: usize) -> (String, JoinHandle<Vec<String>>) {
    crate::gates::fetch_stub::serve_fn(n, move |head| {
        let path = crate::gates::fetch_stub::path_of(head);
        routes
            .get(path)
            .cloned()
            .unwrap_or_else(|| http("404 Not Found", "not found\n"))
    })
}

fn routes(metrics: &str, live: Vec<u8>, ready: Vec<u8>, gates: &str) -> Routes {
    HashMap::from([
        ("/metrics", http("200 OK", metrics)),
        ("/livez?verbose", live),
        ("/readyz?verbose", ready),
        ("/gates", http("200 OK", gates)),
    ])
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn status(url: &str, json: bool, token: Option<&str>) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let client = crate::gates::fetch::Client::new(&Default::default()).unwrap();
    let code = run_with(
        url,
        json,
        &client,
        token,
        Duration::from_secs(3),
        &mut out,
        &mut err,
    );
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

#[test]
fn units_like_wg_show() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(1023), "1023 B");
    assert_eq!(human_bytes(1536), "1.50 KiB");
    assert_eq!(human_bytes(5 << 20), "5.00 MiB");
    assert_eq!(human_bytes(3 << 29), "1.50 GiB");
    assert_eq!(human_bytes(2 << 40), "2.00 TiB");
    assert_eq!(human_bytes(4096 << 40), "4096.00 TiB");
    assert_eq!(ago(5), "5 seconds ago");
    assert_eq!(ago(1), "1 second ago");
    assert_eq!(ago(62), "1 minute, 2 seconds ago");
    assert_eq!(ago(3600), "1 hour ago");
    assert_eq!(
        ago(2 * 86_400 + 3 * 3600 + 61),
        "2 days, 3 hours, 1 minute, 1 second ago"
    );
    assert_eq!(ago(0), "now");
    assert!(ago(-3).contains("future"));
}

#[test]
fn health_bodies() {
    let h = parse_health(200, LIVE_OK).unwrap();
    assert!(h.ok);
    assert_eq!(
        h.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["ping", "packet-loops"]
    );
    let h = parse_health(500, READY_BAD).unwrap();
    assert!(!h.ok);
    let bad = h.checks.iter().find(|c| !c.ok).unwrap();
    assert_eq!(
        (bad.name.as_str(), bad.reason.as_deref()),
        ("self-test", Some("no reply from peer 10.77.0.2"))
    );
    assert!(!parse_health(500, "[-]tun failed\n").unwrap().checks[0].ok);
    assert!(parse_health(404, "not found")
        .unwrap_err()
        .contains("HTTP 404"));
    // A 200 is healthy even when not verbose.
    assert!(parse_health(200, "ok").unwrap().ok);
}

#[test]
fn peers_from_metrics() {
    let m = parse::parse(&metrics_body()).unwrap();
    let mut st = Status::new("http://127.0.0.1:9586");
    from_metrics(&mut st, &m, NOW);
    assert_eq!(st.interface.as_deref(), Some("pm0"));
    assert_eq!(st.public_key.as_deref(), Some(OWN));
    assert_eq!(
        (st.listening_port, st.peer_count, st.peers_truncated),
        (Some(51820), Some(3), false)
    );
    let keys: Vec<&str> = st.peers.iter().map(|p| p.public_key.as_str()).collect();
    assert_eq!(
        keys,
        [K3, K1, K2],
        "most recent handshake first, never last"
    );
    let p1 = &st.peers[1];
    assert_eq!(p1.allowed_ips, ["10.77.0.2/32", "fd00:77::2/128"]);
    assert_eq!(p1.latest_handshake_seconds_ago, Some(62));
    assert_eq!((p1.transfer_rx_bytes, p1.transfer_tx_bytes), (1536, 532));
    assert_eq!(st.peers[2].latest_handshake_timestamp_seconds, None);
    assert!(st.peers[0].allowed_ips.is_empty());
}

#[test]
fn healthy_node_prints_like_wg_show_and_exits_0() {
    let (url, h) = serve(
        routes(
            &metrics_body(),
            http("200 OK", LIVE_OK),
            http("200 OK", READY_OK),
            &report(0.012),
        ),
        4,
    );
    let r = status(&url, false, None);
    assert_eq!(r.code, EXIT_OK, "{}{}", r.out, r.err);
    assert_eq!(r.err, "");
    let age = |t: u64| {
        ago(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - t as i64)
    };
    let expected_head = format!(
        "interface: pm0\n  public key: {OWN}\n  listening port: 51820\n  peers: 3\n\n\
         peer: {K3}\n  allowed ips: (none)\n  latest handshake: {}\n  transfer: 5.00 MiB received, 1.50 GiB sent\n\n\
         peer: {K1}\n  allowed ips: 10.77.0.2/32, fd00:77::2/128\n  latest handshake: {}\n  transfer: 1.50 KiB received, 532 B sent\n\n\
         peer: {K2}\n  allowed ips: 10.77.0.3/32\n\n\
         health:\n  livez: ok\n    [+]ping ok\n    [+]packet-loops ok\n  readyz: ok\n    [+]tun ok\n",
        age(1795736295),
        age(1795736238)
    );
    assert!(
        r.out.starts_with(&expected_head),
        "{}\n---\n{expected_head}",
        r.out
    );
    assert!(r.out.contains("\ngates: PASS (window 300 s)\n  ✅ performance (Gate 2: Performance Validation)\n  ✅ technical (Technical Success Criteria)\n"), "{}", r.out);
    let reqs = h.join().unwrap();
    let mut lines: Vec<&str> = reqs.iter().map(|r| r.lines().next().unwrap()).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "GET /gates HTTP/1.1",
            "GET /livez?verbose HTTP/1.1",
            "GET /metrics HTTP/1.1",
            "GET /readyz?verbose HTTP/1.1"
        ]
    );
    assert!(reqs
        .iter()
        .all(|r| !r.to_ascii_lowercase().contains("authorization")));
}

#[test]
fn failing_readiness_exits_1() {
    let (url, h) = serve(
        routes(
            &metrics_body(),
            http("200 OK", LIVE_OK),
            http("500 Internal Server Error", READY_BAD),
            &report(0.012),
        ),
        4,
    );
    let r = status(&url, false, None);
    assert_eq!(r.code, EXIT_UNHEALTHY, "{}{}", r.out, r.err);
    assert!(r.out.contains("  readyz: failed\n"), "{}", r.out);
    assert!(
        r.out
            .contains("    [-]self-test failed: no reply from peer 10.77.0.2\n"),
        "{}",
        r.out
    );
    h.join().unwrap();
}

#[test]
fn failing_gate_names_the_metric_and_exits_1() {
    // P99 of exactly 200 ms fails "technical" (< 200) but not "performance" (<= 200).
    let (url, h) = serve(
        routes(
            &metrics_body(),
            http("200 OK", LIVE_OK),
            http("200 OK", READY_OK),
            &report(0.2),
        ),
        4,
    );
    let r = status(&url, false, None);
    assert_eq!(r.code, EXIT_UNHEALTHY, "{}{}", r.out, r.err);
    assert!(
        r.out.contains(
            "gates: FAIL (window 300 s)\n  ✅ performance (Gate 2: Performance Validation)\n"
        ),
        "{}",
        r.out
    );
    assert!(
        r.out.contains(
            "  ❌ technical (Technical Success Criteria): P99 Latency 200ms (target <200ms)"
        ),
        "{}",
        r.out
    );
    h.join().unwrap();
}

#[test]
fn json_has_the_same_data() {
    let (url, h) = serve(
        routes(
            &metrics_body(),
            http("200 OK", LIVE_OK),
            http("500 Internal Server Error", READY_BAD),
            &report(0.2),
        ),
        4,
    );
    let r = status(&url, true, Some("s3cret-token"));
    assert_eq!(r.code, EXIT_UNHEALTHY, "{}{}", r.out, r.err);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["reachable"], true);
    assert_eq!(v["interface"], "pm0");
    assert_eq!(v["listening_port"], 51820);
    assert_eq!(v["healthy"], false);
    assert_eq!(v["peers"].as_array().unwrap().len(), 3);
    assert_eq!(v["peers"][1]["public_key"], K1);
    assert_eq!(v["peers"][1]["allowed_ips"][1], "fd00:77::2/128");
    assert_eq!(
        v["peers"][1]["latest_handshake_timestamp_seconds"],
        1795736238u64
    );
    assert_eq!(v["peers"][0]["transfer_tx_bytes"], 1610612736u64);
    assert_eq!(
        v["peers"][2]["latest_handshake_timestamp_seconds"],
        serde_json::Value::Null
    );
    assert_eq!(
        v["ready"]["checks"][4]["reason"],
        "no reply from peer 10.77.0.2"
    );
    assert_eq!(v["gates"]["pass"], false);
    assert_eq!(v["gates"]["gates"][1]["failing"][0]["name"], "p99_latency");
    // The token goes to the server and nowhere else.
    let reqs = h.join().unwrap();
    assert!(reqs
        .iter()
        .all(|q| q.contains("authorization: Bearer s3cret-token\r\n")));
    assert!(!r.out.contains("s3cret") && !r.err.contains("s3cret"));
}

fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

#[test]
fn unreachable_exits_3_usage_errors_2() {
    let url = dead_url();
    let r = status(&url, false, None);
    assert_eq!(r.code, EXIT_UNREACHABLE);
    assert_eq!(r.out, "");
    assert!(r.err.contains("cannot connect"), "{}", r.err);
    let r = status(&url, true, None);
    assert_eq!(r.code, EXIT_UNREACHABLE);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["reachable"], false);
    assert!(v["errors"][0].as_str().unwrap().contains("cannot connect"));
    let r = status("ftp://127.0.0.1:1", false, None);
    assert_eq!(r.code, EXIT_USAGE);
    assert!(r.err.contains("only http:// and https://"), "{}", r.err);
    // TEST-NET-1: refused before any connection is tried.
    let r = status("http://192.0.2.1:9586", true, Some("s3cret-token"));
    assert_eq!(r.code, EXIT_USAGE, "{}", r.err);
    assert!(
        r.err.contains("refusing to send the bearer token"),
        "{}",
        r.err
    );
    assert!(!r.out.contains("s3cret") && !r.err.contains("s3cret"));
}

/// Reachable, but an endpoint is missing or garbled: the state is unknown.
#[test]
fn unreadable_endpoint_exits_3() {
    let mut rs = routes(
        &metrics_body(),
        http("200 OK", LIVE_OK),
        http("200 OK", READY_OK),
        &report(0.012),
    );
    rs.remove("/gates");
    let (url, h) = serve(rs, 4);
    let r = status(&url, false, None);
    assert_eq!(r.code, EXIT_UNREACHABLE, "{}{}", r.out, r.err);
    assert!(
        r.err.contains("/gates: HTTP 404: not a gates report"),
        "{}",
        r.err
    );
    assert!(
        r.out.starts_with("interface: pm0\n"),
        "what was read is still shown: {}",
        r.out
    );
    h.join().unwrap();

    let rs = routes(
        "garbage{\n",
        http("200 OK", LIVE_OK),
        http("200 OK", READY_OK),
        &report(0.012),
    );
    let (url, h) = serve(rs, 4);
    let r = status(&url, false, None);
    assert_eq!(r.code, EXIT_UNREACHABLE, "{}{}", r.out, r.err);
    assert!(
        r.err
            .contains("/metrics: not a valid Prometheus exposition"),
        "{}",
        r.err
    );
    h.join().unwrap();
}

/// A base URL with a path prefix keeps it for every endpoint.
#[test]
fn url_prefix_is_kept() {
    let base = Url::parse("http://10.0.0.1:9000/admin/?x=1").unwrap();
    assert_eq!(
        endpoint(&base, "/readyz?verbose").to_string(),
        "http://10.0.0.1:9000/admin/readyz?verbose"
    );
    let base = Url::parse("127.0.0.1").unwrap();
    assert_eq!(
        endpoint(&base, "/metrics").to_string(),
        "http://127.0.0.1:9586/metrics"
    );
}

/// The real renderer's scrape of two devices that handshook over the
/// in-memory network reads back as the devices' state.
#[test]
fn reads_the_real_renderer() {
    use crate::device::Device;
    use crate::io::mem::{MemNetwork, MemTun};
    use crate::uapi::protocol::{AllowedIpChange, DeviceSet, PeerSet};
    use base64::Engine;
    let b64 = |k: &[u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
    let net = MemNetwork::new();
    let mk = |ip: &str, port: u16, secret: [u8; 32]| {
        let (tun, handle) = MemTun::new(&format!("pms{port}"), 1420);
        let dev = Device::new(tun, Arc::new(net.bind(ip.parse().unwrap())));
        dev.apply(&DeviceSet {
            private_key: Some(secret),
            listen_port: Some(port),
            ..Default::default()
        })
        .unwrap();
        (dev, handle)
    };
    let (sa, sb) = ([0x31; 32], [0x42; 32]);
    let (pa, pb) = (
        crate::cli::keys::public_key(&sa),
        crate::cli::keys::public_key(&sb),
    );
    let (a, ta) = mk("192.0.2.1", 41000, sa);
    let (b, tb) = mk("192.0.2.2", 41001, sb);
    let peer = |key, endpoint: Option<&str>, ips: &[(&str, u8)]| DeviceSet {
        peers: vec![PeerSet {
            public_key: key,
            endpoint: endpoint.map(|e| e.parse().unwrap()),
            allowed_ips: ips
                .iter()
                .map(|(ip, c)| AllowedIpChange::Add(ip.parse().unwrap(), *c))
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    a.apply(&peer(
        pb,
        Some("192.0.2.2:41001"),
        &[("10.0.0.2", 32), ("fd00::2", 128)],
    ))
    .unwrap();
    b.apply(&peer(pa, None, &[("10.0.0.1", 32)])).unwrap();
    let mut pkt = vec![
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    pkt.extend_from_slice(&[0; 8]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        ta.inject(&pkt);
        if tb.recv_timeout(Duration::from_millis(300)).is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no packet crossed");
    }
    let mut body = String::new();
    crate::metrics::render(
        &mut body,
        &a,
        &crate::metrics::Extra {
            interface: "pma".into(),
            ..Default::default()
        },
    );
    let (url, h) = serve(
        routes(
            &body,
            http("200 OK", LIVE_OK),
            http("200 OK", READY_OK),
            &report(0.012),
        ),
        4,
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let client = crate::gates::fetch::Client::new(&Default::default()).unwrap();
    let st = collect(&url, &client, None, Duration::from_secs(3), now);
    h.join().unwrap();
    assert_eq!(st.errors, Vec::<String>::new());
    assert_eq!(st.interface.as_deref(), Some("pma"));
    assert_eq!(st.public_key.as_deref(), Some(b64(&pa).as_str()));
    assert_eq!(st.listening_port, Some(41000));
    assert_eq!(st.peers.len(), 1);
    let p = &st.peers[0];
    assert_eq!(p.public_key, b64(&pb));
    assert_eq!(p.allowed_ips, ["10.0.0.2/32", "fd00::2/128"]);
    let age = p
        .latest_handshake_seconds_ago
        .expect("a handshake happened");
    assert!((0..=15).contains(&age), "{age}");
    assert!(p.transfer_tx_bytes > 0, "{p:?}");
    a.close();
    b.close();
}

#[test]
fn gate_summary_names_failing_metrics() {
    let mut s = Summary {
        window_seconds: 300.0,
        span_seconds: 300.0,
        attempts: 1000,
        successes: 1000,
        packets: 100_000,
        requests: 60_000,
        latency_samples: 1000,
        p50_seconds: Some(0.004),
        p99_seconds: Some(0.25),
        ..Summary::default()
    };
    s.derive_rates();
    let r = Resources {
        memory: Some(0.2),
        cpu: None,
    };
    let checks = [("tun", false), ("udp", true)];
    let g = summarize_gates(&evaluate(&GatesConfig::default(), &s, &r, &checks));
    assert!(!g.pass);
    let perf = &g.gates[0];
    assert_eq!((perf.name.as_str(), perf.pass), ("performance", false));
    assert_eq!(perf.failing.len(), 1, "{perf:?}");
    assert_eq!(perf.failing[0].label, "P99 Latency");
    assert_eq!(perf.failing[0].detail, "250ms (target ≤200ms)");
    let tech: Vec<(&str, &str)> = g.gates[1]
        .failing
        .iter()
        .map(|m| (m.name.as_str(), m.detail.as_str()))
        .collect();
    assert_eq!(
        tech,
        [
            ("p99_latency", "250ms (target <200ms)"),
            ("cpu", "no data (target <80%)"),
            ("health", "1/2 passing (failing: tun)"),
        ]
    );
}
