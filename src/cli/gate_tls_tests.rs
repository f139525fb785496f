//! `gate` against HTTPS nodes: the several-address fan-out keeps the name
//! for TLS and Host, and a proxied name is asked once, through the proxy.
use super::*;
use crate::gates::fetch::{ClientOptions, ProxyEnv};
use crate::gates::fetch_stub::{connect_proxy, http, serve_on, TestPki};
use std::net::TcpListener;

use crate::gates::fetch_stub::gates_report as report;

/// Listeners on 127.0.0.1 and 127.0.0.2 with one port number.
fn two_loopback_listeners() -> (u16, TcpListener, TcpListener) {
    for _ in 0..20 {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = TcpListener::bind(("127.0.0.2", port)) {
            return (port, a, b);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

fn client(pki: &TestPki, tag: &str, proxies: &[(&str, String)]) -> Client {
    let vars = proxies.to_vec();
    let env =
        ProxyEnv::from_lookup(&move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()));
    let opts = ClientOptions {
        ca_file: Some(pki.ca_file(tag)),
        insecure: false,
    };
    Client::with_proxies(&opts, env).unwrap()
}

fn dns(host: &str, _: u16) -> std::io::Result<Vec<IpAddr>> {
    assert_eq!(host, "nodes.test");
    Ok(vec![
        "127.0.0.1".parse().unwrap(),
        "127.0.0.2".parse().unwrap(),
    ])
}

#[test]
fn https_name_with_two_addresses_checks_each_under_the_name() {
    let pki = TestPki::new(&["nodes.test"]);
    let (port, a, b) = two_loopback_listeners();
    let pass = report(0.012);
    let ha = serve_on(a, 1, Some(pki.server.clone()), move |_| {
        http("200 OK", &pass)
    });
    let fail = report(0.2);
    let hb = serve_on(b, 1, Some(pki.server.clone()), move |_| {
        http("200 OK", &fail)
    });
    let c = client(&pki, "fanout", &[]);
    let ask = Ask {
        client: &c,
        token: Some("tok"),
        timeout: Duration::from_secs(5),
    };
    let url = format!("https://nodes.test:{port}");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_resolving(
        std::slice::from_ref(&url),
        None,
        false,
        &ask,
        &dns,
        &mut out,
        &mut err,
    );
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, EXIT_FAIL, "{out}{}", String::from_utf8_lossy(&err));
    assert!(out.starts_with(&format!("== https://127.0.0.1:{port} (from {url}) ==\n")));
    assert!(out.contains(&format!("== https://127.0.0.2:{port} (from {url}) ==\n")));
    assert!(out.ends_with("1/2 nodes passing, 1 failing\n"), "{out}");
    for h in [ha, hb] {
        let head = h.join().unwrap().remove(0).to_ascii_lowercase();
        assert!(
            head.contains(&format!("\r\nhost: nodes.test:{port}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\nauthorization: bearer tok\r\n"), "{head}");
    }
    let _ = std::fs::remove_dir_all(pki.ca_file("fanout").parent().unwrap());
}

#[test]
fn a_proxied_name_is_asked_once_through_the_proxy() {
    let pki = TestPki::new(&["nodes.test"]);
    let (port, a, _b) = two_loopback_listeners();
    let pass = report(0.012);
    let ha = serve_on(a, 1, Some(pki.server.clone()), move |_| {
        http("200 OK", &pass)
    });
    let (proxy, connects) = connect_proxy(1, ([127, 0, 0, 1], port).into());
    let c = client(&pki, "proxied", &[("HTTPS_PROXY", proxy)]);
    let ask = Ask {
        client: &c,
        token: None,
        timeout: Duration::from_secs(5),
    };
    let url = format!("https://nodes.test:{port}/gates");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_resolving(
        std::slice::from_ref(&url),
        None,
        true,
        &ask,
        &dns,
        &mut out,
        &mut err,
    );
    assert_eq!(code, EXIT_PASS, "{}", String::from_utf8_lossy(&err));
    // One node: the name itself, asked through the proxy.
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1);
    let rep: Report = serde_json::from_value(v["nodes"][0]["report"].clone()).unwrap();
    assert!(rep.pass);
    assert_eq!(
        connects.join().unwrap(),
        [format!("CONNECT nodes.test:{port} HTTP/1.1")]
    );
    ha.join().unwrap();
    let _ = std::fs::remove_dir_all(pki.ca_file("proxied").parent().unwrap());
}
