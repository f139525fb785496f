use super::*;
use std::net::TcpListener;
use std::thread::JoinHandle;

use crate::gates::fetch_stub::{http, serve};

fn client() -> Client {
    Client::new(&Default::default()).unwrap()
}

use crate::gates::fetch_stub::gates_report as report;

fn passing() -> String {
    report(0.012)
}

/// Fails "technical" (P99 < 200 ms) but not "performance" (<= 200 ms).
fn failing() -> String {
    report(0.2)
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn run_urls(urls: &[String], gate: Option<&str>, json: bool, token: Option<&str>) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(
        urls,
        gate,
        json,
        &client(),
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

fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

#[test]
fn passing_node_exits_0_and_prints_tables() {
    let (url, h) = serve(vec![http("200 OK", &passing())]);
    let r = run_urls(std::slice::from_ref(&url), None, false, None);
    assert_eq!(r.code, EXIT_PASS, "{}{}", r.out, r.err);
    assert!(
        r.out
            .starts_with("Gate 2: Performance Validation ✅ PASSED\n"),
        "{}",
        r.out
    );
    assert!(r
        .out
        .contains("P99 Latency             ≤200ms      12ms       ✅ PASS   94.0%"));
    assert!(r.out.contains("Result: PASS"));
    assert_eq!(r.err, "");
    let reqs = h.join().unwrap();
    assert!(
        reqs[0].starts_with("GET /gates HTTP/1.1\r\n"),
        "{}",
        reqs[0]
    );
    let head = reqs[0].to_ascii_lowercase();
    assert!(head.contains(&format!("host: {}\r\n", url.trim_start_matches("http://"))));
    assert!(!head.contains("authorization"));
}

#[test]
fn failing_node_exits_1() {
    let (url, h) = serve(vec![http("200 OK", &failing())]);
    let r = run_urls(&[url], None, false, None);
    assert_eq!(r.code, EXIT_FAIL, "{}{}", r.out, r.err);
    assert!(r.out.contains("Technical Success Criteria ❌ FAILED"));
    assert!(r
        .out
        .contains("P99 Latency             <200ms      200ms      ❌ FAIL   0.0%"));
    assert!(r.out.ends_with("Result: FAIL\n\n"));
    h.join().unwrap();
}

#[test]
fn gate_filter_and_token() {
    let (url, h) = serve(vec![
        http("200 OK", &failing()),
        http("200 OK", &failing()),
        http("200 OK", &failing()),
    ]);
    let urls = [format!("{url}/")];
    let r = run_urls(&urls, Some("performance"), false, Some("s3cret\n"));
    assert_eq!(r.code, EXIT_PASS, "{}{}", r.out, r.err);
    assert!(!r.out.contains("Technical"));
    assert_eq!(
        run_urls(&urls, Some("technical"), false, None).code,
        EXIT_FAIL
    );
    let r = run_urls(&urls, Some("security"), false, None);
    assert_eq!(r.code, EXIT_USAGE);
    assert!(
        r.err
            .contains("no gate \"security\" in the report (it has: performance, technical, mesh)"),
        "{}",
        r.err
    );
    let reqs = h.join().unwrap();
    assert!(
        reqs[0].contains("authorization: Bearer s3cret\r\n"),
        "{}",
        reqs[0]
    );
    assert!(!reqs[1].to_ascii_lowercase().contains("authorization"));
}

#[test]
fn several_nodes_print_a_summary() {
    let (a, ha) = serve(vec![http("200 OK", &passing())]);
    let (b, hb) = serve(vec![http("200 OK", &failing())]);
    let r = run_urls(&[a.clone(), format!("{b}/gates")], None, false, None);
    assert_eq!(r.code, EXIT_FAIL);
    assert!(
        r.out.starts_with(&format!("== {a} ==\n\nGate 2")),
        "{}",
        r.out
    );
    assert!(r.out.contains(&format!("== {b}/gates ==\n")));
    assert!(
        r.out.ends_with("1/2 nodes passing, 1 failing\n"),
        "{}",
        r.out
    );
    ha.join().unwrap();
    hb.join().unwrap();
}

#[test]
fn unreachable_node_exits_3_even_when_others_fail() {
    let dead = dead_url();
    let r = run_urls(std::slice::from_ref(&dead), None, false, None);
    assert_eq!(r.code, EXIT_UNREACHABLE);
    assert!(r.err.contains("cannot connect to 127.0.0.1:"), "{}", r.err);
    let (b, hb) = serve(vec![http("200 OK", &failing())]);
    let r = run_urls(&[b, dead.clone()], None, false, None);
    assert_eq!(r.code, EXIT_UNREACHABLE);
    assert!(
        r.out
            .ends_with("0/2 nodes passing, 1 failing, 1 unreachable or invalid\n"),
        "{}",
        r.out
    );
    hb.join().unwrap();
    // A usage error (a token refused over plain HTTP) wins over both.
    let far = "http://192.0.2.1:9586".to_string();
    let r = run_urls(&[dead, far], None, false, Some("tok"));
    assert_eq!(r.code, EXIT_USAGE, "{}", r.err);
    assert!(
        r.err.contains("refusing to send the bearer token"),
        "{}",
        r.err
    );
}

#[test]
fn garbage_answers_exit_3_a_rejected_token_2() {
    let (url, h) = serve(vec![
        http("200 OK", "<html>hello</html>"),
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(),
        http("401 Unauthorized", "missing bearer token"),
        http("200 OK", "{\"pass\": true}"),
    ]);
    let urls = [url];
    let r = run_urls(&urls, None, false, None);
    assert_eq!(r.code, EXIT_UNREACHABLE);
    assert!(
        r.err.contains("the answer is not a gates report"),
        "{}",
        r.err
    );
    let r = run_urls(&urls, None, false, None);
    assert_eq!(r.code, EXIT_UNREACHABLE);
    assert!(r.err.contains("malformed HTTP response"), "{}", r.err);
    let r = run_urls(&urls, None, false, None);
    assert_eq!(r.code, EXIT_USAGE);
    assert!(
        r.err
            .contains("HTTP 401 (check the token): missing bearer token"),
        "{}",
        r.err
    );
    // A bare {"pass": true} is not a report: no silent pass.
    assert_eq!(run_urls(&urls, None, false, None).code, EXIT_UNREACHABLE);
    h.join().unwrap();
    let r = run_urls(&["ftp://x".into()], None, false, None);
    assert_eq!(r.code, EXIT_USAGE);
    assert!(r.err.contains("only http:// and https://"), "{}", r.err);
    assert_eq!(run_urls(&[], None, false, None).code, EXIT_USAGE);
}

#[test]
fn non_2xx_with_a_report_is_read_as_the_report() {
    let chunked = {
        let body = failing();
        let (a, b) = body.split_at(body.len() / 2);
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
    };
    let (url, h) = serve(vec![chunked.into_bytes()]);
    assert_eq!(run_urls(&[url], None, false, None).code, EXIT_FAIL);
    h.join().unwrap();
}

#[test]
fn silent_server_times_out() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        drop(s);
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let start = std::time::Instant::now();
    let code = run_with(
        &[url],
        None,
        false,
        &client(),
        None,
        Duration::from_millis(300),
        &mut out,
        &mut err,
    );
    assert_eq!(code, EXIT_UNREACHABLE);
    assert!(start.elapsed() < Duration::from_millis(1200));
    assert!(
        String::from_utf8_lossy(&err).contains("timed out"),
        "{}",
        String::from_utf8_lossy(&err)
    );
    h.join().unwrap();
}

#[test]
fn json_output() {
    let (a, ha) = serve(vec![http("200 OK", &passing()), http("200 OK", &passing())]);
    // One shape whatever the number of nodes.
    let r = run_urls(std::slice::from_ref(&a), None, true, None);
    assert_eq!(r.code, EXIT_PASS);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["pass"], true);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(v["nodes"][0]["error"], serde_json::Value::Null);
    let rep: Report = serde_json::from_value(v["nodes"][0]["report"].clone()).unwrap();
    assert!(rep.pass);
    let dead = dead_url();
    let r = run_urls(&[a.clone(), dead.clone()], Some("technical"), true, None);
    assert_eq!(r.code, EXIT_UNREACHABLE);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["pass"], false);
    assert_eq!(v["nodes"][0]["url"], a.as_str());
    assert_eq!(v["nodes"][0]["pass"], true);
    assert_eq!(v["nodes"][0]["report"]["gates"][0]["name"], "technical");
    assert_eq!(
        v["nodes"][0]["report"]["gates"].as_array().unwrap().len(),
        1
    );
    assert_eq!(v["nodes"][1]["pass"], false);
    assert_eq!(v["nodes"][1]["report"], serde_json::Value::Null);
    assert!(v["nodes"][1]["error"]
        .as_str()
        .unwrap()
        .contains("cannot connect"));
    // One unreachable node in JSON mode: the same shape, with the error.
    let r = run_urls(&[dead], None, true, None);
    assert_eq!(r.code, EXIT_UNREACHABLE);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["pass"], false);
    assert!(v["nodes"][0]["error"]
        .as_str()
        .unwrap()
        .contains("cannot connect"));
    assert!(r.err.contains("cannot connect"));
    ha.join().unwrap();
}

/// A one-shot server on a given loopback address.
fn serve_on(addr: &str, responses: Vec<Vec<u8>>) -> Option<JoinHandle<Vec<String>>> {
    let l = TcpListener::bind(addr).ok()?;
    let answers = std::sync::Mutex::new(responses.clone().into_iter());
    Some(crate::gates::fetch_stub::serve_on(
        l,
        responses.len(),
        None,
        move |_| answers.lock().unwrap().next().unwrap_or_default(),
    ))
}

fn fake_dns(host: &str, _port: u16) -> std::io::Result<Vec<std::net::IpAddr>> {
    let ips: &[&str] = match host {
        "phantommesh.phantommesh.svc" => &["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.3"],
        "one.svc" => &["127.0.0.1"],
        "v6.svc" => &["::1", "127.0.0.1"],
        _ => return Err(std::io::Error::other("no such host")),
    };
    Ok(ips.iter().map(|s| s.parse().unwrap()).collect())
}

#[test]
fn names_with_several_addresses_expand_to_nodes() {
    let urls = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let t = expand_urls(
        &urls(&[
            "http://phantommesh.phantommesh.svc:9586",
            "http://10.0.0.9:9586",
            "one.svc:9000/gates",
            "http://v6.svc/x/gates",
            "http://nx.svc:9586",
            "https://bad",
        ]),
        &fake_dns,
        &|_| false,
    );
    let got: Vec<(&str, Option<&str>)> = t
        .iter()
        .map(|t| (t.url.as_str(), t.from.as_deref()))
        .collect();
    let svc = Some("http://phantommesh.phantommesh.svc:9586");
    assert_eq!(
        got,
        [
            ("http://127.0.0.1:9586", svc),
            ("http://127.0.0.2:9586", svc),
            ("http://127.0.0.3:9586", svc),
            ("http://10.0.0.9:9586", None),
            ("one.svc:9000/gates", None),
            ("http://[::1]:9586/x/gates", Some("http://v6.svc/x/gates")),
            (
                "http://127.0.0.1:9586/x/gates",
                Some("http://v6.svc/x/gates")
            ),
            ("http://nx.svc:9586", None),
            ("https://bad", None),
        ]
    );
    // The system resolver leaves a one-address name alone.
    let local = expand_urls(&urls(&["http://127.0.0.1:1"]), &system_resolver, &|_| false);
    assert_eq!(local[0].url, "http://127.0.0.1:1");
    // Each address is connected to under the name; https stays https.
    let t = expand_urls(
        &urls(&["https://phantommesh.phantommesh.svc:9586/gates"]),
        &fake_dns,
        &|_| false,
    );
    assert_eq!(t.len(), 3);
    assert_eq!(t[1].url, "https://127.0.0.2:9586/gates");
    let u = t[1].fetch_url().unwrap();
    assert_eq!(
        u.to_string(),
        "https://phantommesh.phantommesh.svc:9586/gates (at 127.0.0.2)"
    );
    // A name a proxy resolves is asked once, as given.
    let t = expand_urls(
        &urls(&["http://phantommesh.phantommesh.svc:9586"]),
        &fake_dns,
        &|_| true,
    );
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].from.as_deref(), t[0].addr), (None, None));
}

/// A name behind which two daemons answer (127.0.0.1 and 127.0.0.2, same
/// port): both are checked, one row each, and one failing fails the run.
#[test]
fn gate_checks_every_address_of_a_name() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let Some(h1) = serve_on(
        &format!("127.0.0.1:{port}"),
        vec![http("200 OK", &passing()), http("200 OK", &passing())],
    ) else {
        eprintln!("port {port} taken again; skipped");
        return;
    };
    let Some(h2) = serve_on(
        &format!("127.0.0.2:{port}"),
        vec![http("200 OK", &failing()), http("200 OK", &failing())],
    ) else {
        eprintln!("cannot bind 127.0.0.2 here; skipped");
        return;
    };
    let dns = |host: &str, _: u16| -> std::io::Result<Vec<std::net::IpAddr>> {
        assert_eq!(host, "nodes.svc");
        Ok(vec![
            "127.0.0.1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
        ])
    };
    let url = format!("http://nodes.svc:{port}");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_resolving(
        std::slice::from_ref(&url),
        None,
        false,
        &Ask {
            client: &client(),
            token: None,
            timeout: Duration::from_secs(3),
        },
        &dns,
        &mut out,
        &mut err,
    );
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, EXIT_FAIL, "{out}{}", String::from_utf8_lossy(&err));
    assert!(
        out.starts_with(&format!(
            "== http://127.0.0.1:{port} (from {url}) ==\n\nGate 2"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("== http://127.0.0.2:{port} (from {url}) ==\n")));
    assert!(out.ends_with("1/2 nodes passing, 1 failing\n"), "{out}");
    // JSON: a node per address, with the name it came from.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_resolving(
        std::slice::from_ref(&url),
        Some("performance"),
        true,
        &Ask {
            client: &client(),
            token: None,
            timeout: Duration::from_secs(3),
        },
        &dns,
        &mut out,
        &mut err,
    );
    assert_eq!(code, EXIT_PASS, "{}", String::from_utf8_lossy(&err));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["pass"], true);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(v["nodes"][1]["url"], format!("http://127.0.0.2:{port}"));
    assert_eq!(v["nodes"][1]["from"], url.as_str());
    let r1 = h1.join().unwrap();
    let r2 = h2.join().unwrap();
    assert!(r1[0].starts_with("GET /gates HTTP/1.1\r\n"));
    // Connected to by address, asked under the name.
    assert!(
        r2[0].contains(&format!("host: nodes.svc:{port}\r\n")),
        "{}",
        r2[0]
    );
}
