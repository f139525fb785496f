use super::*;
use crate::gates::fetch_stub::{connect_proxy, http, serve, serve_fn, TestPki};
use std::net::TcpListener;
use std::path::Path;

const T: Duration = Duration::from_secs(5);

fn client(ca: Option<&Path>, insecure: bool, proxies: &[(&str, &str)]) -> Client {
    let vars: Vec<(String, String)> = proxies
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env =
        ProxyEnv::from_lookup(&move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
    let opts = ClientOptions {
        ca_file: ca.map(Path::to_path_buf),
        insecure,
    };
    Client::with_proxies(&opts, env).unwrap()
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

#[test]
fn urls() {
    let u = url("http://127.0.0.1:9586").gates();
    assert_eq!(u.to_string(), "http://127.0.0.1:9586/gates");
    let u = url("http://node1/").gates();
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("node1", 9586, "/gates")
    );
    let u = url("10.0.0.5:9000/gates").gates();
    assert_eq!(u.to_string(), "http://10.0.0.5:9000/gates");
    let u = url("http://[::1]:9586/admin/?x=1").gates();
    assert_eq!(u.to_string(), "http://[::1]:9586/admin/gates?x=1");
    let u = url("https://node1.example");
    assert_eq!(
        (u.scheme, u.port, u.path.as_str()),
        (Scheme::Https, 443, "/")
    );
    let mut u = url("https://pm.svc:9586/gates");
    u.connect_to = Some("10.0.0.7".parse().unwrap());
    assert_eq!(u.to_string(), "https://pm.svc:9586/gates (at 10.0.0.7)");
    assert_eq!(u.as_uri(), "https://pm.svc:9586/gates");
    for bad in [
        "ftp://n",
        "http://",
        "https://",
        "http://::1:9586",
        "http://n:0",
        "http://n:+5",
        "http://n:70000",
        "http://u@n",
        "http://[::1",
        "http://[nope]:1",
        "http://n/a b",
        "http://n/\u{e9}",
        "http://n%41/",
    ] {
        let e = Url::parse(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Usage, "{bad}");
        assert_eq!(e.kind, ErrorKind::Usage);
    }
}

#[test]
fn loopback_targets() {
    for s in [
        "http://127.0.0.1",
        "http://localhost:1",
        "http://[::1]:1",
        "http://127.9.9.9",
    ] {
        assert!(url(s).is_loopback(), "{s}");
    }
    for s in ["http://10.0.0.1", "http://node1", "http://[::2]:1"] {
        assert!(!url(s).is_loopback(), "{s}");
    }
    // The address connected to decides, not the name.
    let mut u = url("http://pm.svc:1");
    u.connect_to = Some("127.0.0.2".parse().unwrap());
    assert!(u.is_loopback());
    let mut u = url("http://localhost:1");
    u.connect_to = Some("192.0.2.1".parse().unwrap());
    assert!(!u.is_loopback());
}

/// A token goes in clear only to loopback, or anywhere with --insecure.
#[test]
fn plaintext_token_rule() {
    // TEST-NET-1 (RFC 5737): never a real host, and never connected to
    // here: the refusal comes before any connection, and the requests that
    // are made go through a loopback proxy.
    let far = url("http://192.0.2.1:9/gates");
    let e = client(None, false, &[])
        .get(&far, Some("s3cret"), T)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Usage, "{e}");
    assert!(
        e.message
            .contains("refusing to send the bearer token over plain HTTP"),
        "{e}"
    );
    assert!(
        e.message.contains("--insecure") && !e.message.contains("s3cret"),
        "{e}"
    );
    // No token, or --insecure: the request is made. It goes through a
    // CONNECT proxy on loopback to a stub on loopback, so nothing leaves
    // this machine.
    let (backend, heads) = serve(vec![http("200 OK", "{}"), http("200 OK", "{}")]);
    let backend = backend.trim_start_matches("http://").parse().unwrap();
    let (proxy, connects) = connect_proxy(2, backend);
    let via = [("HTTP_PROXY", proxy.as_str())];
    let r = client(None, false, &via).get(&far, None, T).unwrap();
    assert_eq!(r.status, 200);
    let r = client(None, true, &via)
        .get(&far, Some("s3cret"), T)
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        connects.join().unwrap(),
        [
            "CONNECT 192.0.2.1:9 HTTP/1.1",
            "CONNECT 192.0.2.1:9 HTTP/1.1"
        ]
    );
    let heads: Vec<String> = heads
        .join()
        .unwrap()
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    assert!(!heads[0].contains("authorization"), "{}", heads[0]);
    assert!(
        heads[1].contains("\r\nauthorization: bearer s3cret\r\n"),
        "{}",
        heads[1]
    );
    // Loopback: sent without --insecure.
    let (base, seen) = serve(vec![http("200 OK", "{}")]);
    let r = client(None, false, &[])
        .get(&url(&base), Some(" s3cret\n"), T)
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
    let head = seen.join().unwrap().remove(0).to_ascii_lowercase();
    assert!(
        head.contains("\r\nauthorization: bearer s3cret\r\n"),
        "{head}"
    );
}

#[test]
fn bad_tokens_are_usage_errors() {
    for t in ["a\nb", "caf\u{e9}", "x\u{7f}"] {
        let e = client(None, true, &[])
            .get(&url("http://127.0.0.1:1"), Some(t), T)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Usage, "{t:?}: {e}");
        assert!(!e.message.contains(t));
    }
}

#[test]
fn answers_status_chunked_and_size_cap() {
    let chunked = b"HTTP/1.1 503 Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".to_vec();
    let to_close = b"HTTP/1.0 200 OK\r\n\r\nto the end".to_vec();
    let big = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_RESPONSE + 1
    )
    .into_bytes();
    // Chunked: no length up front, the cap stops the read.
    let mut big_chunked = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        MAX_RESPONSE + 1
    )
    .into_bytes();
    big_chunked.resize(big_chunked.len() + MAX_RESPONSE + 1, b'x');
    big_chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (base, seen) = serve(vec![chunked, to_close, big, big_chunked]);
    let c = client(None, false, &[]);
    let r = c.get(&url(&base), None, T).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (503, &b"abcde"[..]));
    let r = c.get(&url(&base), None, T).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"to the end"[..]));
    for _ in 0..2 {
        let e = c.get(&url(&base), None, T).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert!(e.message.contains("larger than"), "{e}");
    }
    let heads = seen.join().unwrap();
    assert!(heads[0].starts_with("GET / HTTP/1.1\r\n"), "{}", heads[0]);
    assert!(heads[0]
        .to_ascii_lowercase()
        .contains("\r\nhost: 127.0.0.1:"));
}

#[test]
fn unreachable_errors() {
    let c = client(None, false, &[]);
    // Refused: a port nobody listens on any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = c
        .get(&url(&format!("http://127.0.0.1:{port}")), None, T)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    // Garbage instead of HTTP.
    let (base, _h) = serve(vec![b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()]);
    let e = c.get(&url(&base), None, T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    // A server that never answers: the deadline holds.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let u = url(&format!("http://{}", l.local_addr().unwrap()));
    let t0 = std::time::Instant::now();
    let e = c.get(&u, None, Duration::from_millis(400)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(e.message.contains("timed out"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    drop(l);
}

#[test]
fn https_with_the_ca_file() {
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let ca = pki.ca_file("ok");
    let (port, seen) = pki.serve(2, |_| http("200 OK", "{\"pass\":true}"));
    let c = client(Some(&ca), false, &[]);
    let r = c
        .get(
            &url(&format!("https://localhost:{port}/gates")),
            Some("tok"),
            T,
        )
        .unwrap();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &br#"{"pass":true}"#[..])
    );
    let r = c
        .get(&url(&format!("https://127.0.0.1:{port}/x")), None, T)
        .unwrap();
    assert_eq!(r.status, 200);
    let heads = seen.join().unwrap();
    assert!(heads[0].starts_with("GET /gates HTTP/1.1\r\n"));
    let head = heads[0].to_ascii_lowercase();
    assert!(head.contains("\r\nauthorization: bearer tok\r\n"), "{head}");
    std::fs::remove_dir_all(ca.parent().unwrap()).unwrap();
}

#[test]
fn https_without_the_ca_or_for_another_name_is_unreachable() {
    let pki = TestPki::new(&["node.test"]);
    let ca = pki.ca_file("name");
    let (port, seen) = pki.serve(2, |_| http("200 OK", "{}"));
    // The system roots do not know the test CA (an empty bundle stands in
    // for them, so the machine's own roots do not matter).
    let other = TestPki::new(&["x"]);
    let other_ca = other.ca_file("other");
    let e = client(Some(&other_ca), false, &[])
        .get(&url(&format!("https://127.0.0.1:{port}")), Some("tok"), T)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(e.message.contains("TLS handshake failed"), "{e}");
    // The right CA, but the certificate is for node.test, not 127.0.0.1.
    let e = client(Some(&ca), false, &[])
        .get(&url(&format!("https://127.0.0.1:{port}")), None, T)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(
        e.message.to_lowercase().contains("not valid for name"),
        "{e}"
    );
    // Neither handshake got as far as a request.
    assert!(seen.join().unwrap().iter().all(String::is_empty));
    for p in [ca, other_ca] {
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}

/// One address of a name: TLS name and Host stay the name.
#[test]
fn pinned_address_keeps_the_name() {
    let pki = TestPki::new(&["pm.svc.test"]);
    let ca = pki.ca_file("pin");
    let (port, seen) = pki.serve(1, |_| http("200 OK", "{}"));
    let mut u = url(&format!("https://pm.svc.test:{port}/gates"));
    u.connect_to = Some("127.0.0.1".parse().unwrap());
    let r = client(Some(&ca), false, &[]).get(&u, None, T).unwrap();
    assert_eq!(r.status, 200);
    let head = seen.join().unwrap().remove(0).to_ascii_lowercase();
    assert!(
        head.contains(&format!("\r\nhost: pm.svc.test:{port}\r\n")),
        "{head}"
    );
    std::fs::remove_dir_all(ca.parent().unwrap()).unwrap();
}

#[test]
fn https_through_a_connect_proxy_and_no_proxy() {
    let pki = TestPki::new(&["node.test"]);
    let ca = pki.ca_file("proxy");
    let (port, seen) = pki.serve(1, |_| http("200 OK", "{}"));
    let (proxy, connects) = connect_proxy(1, ([127, 0, 0, 1], port).into());
    // node.test is resolved by the proxy only (the test proxy sends every
    // CONNECT to the server above).
    let u = url(&format!("https://node.test:{port}/gates"));
    let c = client(Some(&ca), false, &[("HTTPS_PROXY", proxy.as_str())]);
    assert!(c.proxy_for(&u).is_some());
    let r = c.get(&u, Some("tok"), T).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        connects.join().unwrap(),
        [format!("CONNECT node.test:{port} HTTP/1.1")]
    );
    assert!(seen.join().unwrap()[0].contains("Bearer tok"));
    // NO_PROXY: straight to node.test, which does not resolve here.
    let c = client(
        Some(&ca),
        false,
        &[("HTTPS_PROXY", proxy.as_str()), ("NO_PROXY", ".test")],
    );
    assert!(c.proxy_for(&u).is_none());
    let e = c.get(&u, None, T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    // A proxy that is not there is "unreachable" too.
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = client(
        Some(&ca),
        false,
        &[("https_proxy", &format!("http://{gone}"))],
    );
    let e = c.get(&u, None, T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    std::fs::remove_dir_all(ca.parent().unwrap()).unwrap();
}

#[test]
fn config_errors_are_usage() {
    let dir = std::env::temp_dir().join(format!("pm-fetch-{}-cfg", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = |p: &Path| ClientOptions {
        ca_file: Some(p.to_path_buf()),
        insecure: false,
    };
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let bad_b64 = dir.join("bad.pem");
    std::fs::write(
        &bad_b64,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let not_cert = dir.join("junk.pem");
    std::fs::write(
        &not_cert,
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (p, want) in [
        (dir.join("missing.pem"), "No such file"),
        (not_pem, "no PEM certificate"),
        (bad_b64, "--ca-file"),
        (not_cert, "certificate 1"),
    ] {
        let e = Client::new(&opts(&p)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Usage, "{e}");
        assert!(
            e.message.contains(want) && e.message.contains("--ca-file"),
            "{e}"
        );
    }
    // A proxy variable that is not a proxy URL; its value is not echoed.
    let c = client(None, false, &[("HTTPS_PROXY", "socks5://user:pw@p:1")]);
    let e = c.get(&url("https://node.test/"), None, T).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Usage, "{e}");
    assert!(
        e.message.contains("HTTPS_PROXY") && !e.message.contains("pw"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_fn_routes() {
    // The stub server answers by path (used by the status tests).
    let (base, seen) = serve_fn(1, |h| {
        if crate::gates::fetch_stub::path_of(h) == "/a" {
            http("200 OK", "a")
        } else {
            http("404 Not Found", "")
        }
    });
    let r = client(None, false, &[])
        .get(&url(&format!("{base}/a")), None, T)
        .unwrap();
    assert_eq!(r.body, b"a");
    assert_eq!(seen.join().unwrap().len(), 1);
}
