use super::*;
use crate::admin::mesh::{MemberView, MeshView, ProbeView};
use std::net::TcpListener;

/// What the daemon serves (the same struct `/mesh` serializes).
fn view() -> MeshView {
    MeshView {
        node: "node-a".into(),
        prefix: "/phantommesh".into(),
        store_up: true,
        started: true,
        addresses: vec!["10.100.0.1".parse().unwrap()],
        members: vec![
            MemberView {
                name: "node-b".into(),
                public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
                endpoint: Some("192.0.2.2:51820".into()),
                addresses: vec!["10.100.0.2".parse().unwrap()],
                allowed_ips: vec!["10.244.1.0/24".into()],
                handshake_age_seconds: Some(12.4),
                last_probe: Some(ProbeView {
                    ok: true,
                    rtt_ms: Some(0.512),
                    age_seconds: 3.0,
                }),
                healthy: true,
                problem: None,
            },
            MemberView {
                name: "node-c".into(),
                public_key: "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=".into(),
                endpoint: None,
                addresses: vec!["fd10::3".parse().unwrap()],
                allowed_ips: vec![],
                handshake_age_seconds: Some(185.0),
                last_probe: Some(ProbeView {
                    ok: false,
                    rtt_ms: None,
                    age_seconds: 7.0,
                }),
                healthy: false,
                problem: Some("no handshake in 180 s".into()),
            },
        ],
        conflicts: 0,
        sync_errors: 2,
    }
}

fn status() -> MeshStatus {
    serde_json::from_value(serde_json::to_value(view()).unwrap()).unwrap()
}

#[test]
fn table_rendering() {
    let t = render_table(&status());
    let want = "\
node node-a (10.100.0.1), prefix /phantommesh, store up
2 members, 1 healthy; 0 conflicts, 2 sync errors

NAME    ADDRESS     ENDPOINT         HANDSHAKE  RTT     OK
node-b  10.100.0.2  192.0.2.2:51820  12s ago    0.51ms  yes
node-c  fd10::3     -                3m05s ago  lost    NO

unhealthy:
  node-c: no handshake in 180 s
";
    assert_eq!(t, want, "\n{t}");
    let mut s = status();
    s.store_up = false;
    s.started = false;
    s.members.clear();
    s.addresses.clear();
    assert_eq!(
        render_table(&s),
        "node node-a (no address yet), prefix /phantommesh, store DOWN, no view of the mesh yet\n\
         0 members, 0 healthy; 0 conflicts, 2 sync errors\n"
    );
    // Never probed, never handshaken.
    let mut s = status();
    s.members[0].last_probe = None;
    s.members[0].handshake_age_seconds = None;
    let t = render_table(&s);
    assert!(
        t.contains("node-b  10.100.0.2  192.0.2.2:51820  never      -     yes"),
        "{t}"
    );
}

#[test]
fn ages_and_exit_codes() {
    assert_eq!(short_age(0.4), "0s");
    assert_eq!(short_age(59.0), "59s");
    assert_eq!(short_age(60.0), "1m00s");
    assert_eq!(short_age(3599.0), "59m59s");
    assert_eq!(short_age(7325.0), "2h02m");
    assert_eq!(short_age(90_000.0), "1d01h");
    assert_eq!(short_age(-1.0), "?");
    let mut s = status();
    assert_eq!(s.exit_code(), EXIT_UNHEALTHY);
    s.members.retain(|m| m.healthy);
    assert_eq!(s.exit_code(), EXIT_OK);
    s.store_up = false;
    assert_eq!(s.exit_code(), EXIT_UNHEALTHY);
    s.store_up = true;
    s.started = false;
    assert_eq!(s.exit_code(), EXIT_UNHEALTHY);
    // Fields the daemon may add later are ignored.
    let mut v = serde_json::to_value(view()).unwrap();
    v["future"] = serde_json::json!(1);
    v["members"][0]["future"] = serde_json::json!("x");
    assert!(serde_json::from_value::<MeshStatus>(v).is_ok());
}

use crate::gates::fetch_stub::{http, serve};

fn run(url: &str, json: bool, token: Option<&str>) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let client = crate::gates::fetch::Client::new(&Default::default()).unwrap();
    let code = run_status_with(
        url,
        json,
        &client,
        token,
        Duration::from_secs(3),
        &mut out,
        &mut err,
    );
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn status_over_http() {
    let unhealthy = serde_json::to_string(&view()).unwrap();
    let mut good = view();
    good.members.truncate(1);
    let good = serde_json::to_string(&good).unwrap();
    let (url, h) = serve(vec![
        http("200 OK", &unhealthy),
        http("200 OK", &good),
        http("200 OK", &good),
        http(
            "404 Not Found",
            "{\"ok\":false,\"error\":\"no mesh configured: this node runs without a [mesh] section\"}",
        ),
        http("200 OK", "{\"pass\":true}"),
    ]);
    let (code, out, err) = run(&url, false, Some("tok"));
    assert_eq!(code, EXIT_UNHEALTHY, "{out}{err}");
    assert!(out.contains("node-c  fd10::3"), "{out}");
    let (code, out, _) = run(&format!("{url}/mesh"), false, None);
    assert_eq!(code, EXIT_OK);
    assert!(out.contains("1 members, 1 healthy"), "{out}");
    let (code, out, _) = run(&url, true, None);
    assert_eq!(code, EXIT_OK);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["members"][0]["name"], "node-b");
    let (code, out, err) = run(&url, false, None);
    assert_eq!(code, EXIT_USAGE, "a daemon without a mesh");
    assert_eq!(out, "");
    assert!(
        err.contains("HTTP 404: no mesh configured: this node runs without a [mesh] section"),
        "{err}"
    );
    let (code, _, err) = run(&url, false, None);
    assert_eq!(code, EXIT_UNREACHABLE);
    assert!(err.contains("not a mesh status"), "{err}");
    let reqs = h.join().unwrap();
    assert!(reqs[0].starts_with("GET /mesh HTTP/1.1\r\n"), "{}", reqs[0]);
    assert!(reqs[0].contains("authorization: Bearer tok\r\n"));
    assert!(reqs[1].starts_with("GET /mesh HTTP/1.1\r\n"), "{}", reqs[1]);
    // Nobody listening.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    assert_eq!(run(&dead, false, None).0, EXIT_UNREACHABLE);
}
