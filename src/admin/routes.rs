//! HTTP routes of the admin server.
use super::health::{self, Kind};
use super::tunnel_test::{DEFAULT_PROBES, MAX_PROBES};
use super::AdminState;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

type St = State<Arc<AdminState>>;

/// Largest request body accepted (no endpoint needs one).
pub const MAX_BODY: usize = 4096;

pub fn router(st: Arc<AdminState>) -> Router {
    Router::new()
        .route(
            "/livez",
            get(|s: St, q: RawQuery| health_route(s, q, Kind::Live, None)),
        )
        .route(
            "/readyz",
            get(|s: St, q: RawQuery| health_route(s, q, Kind::Ready, None)),
        )
        .route(
            "/healthz",
            get(|s: St, q: RawQuery| health_route(s, q, Kind::Health, None)),
        )
        .route(
            "/livez/{name}",
            get(|s: St, q: RawQuery, Path(n): Path<String>| {
                health_route(s, q, Kind::Live, Some(n))
            }),
        )
        .route(
            "/readyz/{name}",
            get(|s: St, q: RawQuery, Path(n): Path<String>| {
                health_route(s, q, Kind::Ready, Some(n))
            }),
        )
        .route(
            "/healthz/{name}",
            get(|s: St, q: RawQuery, Path(n): Path<String>| {
                health_route(s, q, Kind::Health, Some(n))
            }),
        )
        .route("/tunnel-test", get(tunnel_test).post(tunnel_test))
        .route("/metrics", get(metrics))
        .route("/mesh", get(mesh))
        .route("/gates", get(|s: St| gates(s, None)))
        .route(
            "/gates/{name}",
            get(|s: St, Path(n): Path<String>| gates(s, Some(n))),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        // The server reads every body before routing (see server.rs);
        // this keeps handlers bounded if the router is served otherwise.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(st)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let s = serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".into());
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        s + "\n",
    )
        .into_response()
}

fn error_json(status: StatusCode, msg: &str) -> Response {
    json(status, &serde_json::json!({ "ok": false, "error": msg }))
}

async fn health_route(
    State(st): St,
    RawQuery(q): RawQuery,
    kind: Kind,
    only: Option<String>,
) -> Response {
    let opts = match health::parse_query(q.as_deref()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e + "\n"),
    };
    match health::evaluate(&st, kind, only.as_deref(), &opts) {
        Ok((true, body)) => text(StatusCode::OK, body),
        Ok((false, body)) => text(StatusCode::INTERNAL_SERVER_ERROR, body),
        Err(e) => text(StatusCode::NOT_FOUND, e + "\n"),
    }
}

/// Whether the request may read the token-protected endpoints: always
/// for `/tunnel-test` (`always`), off loopback only for the ones that
/// publish keys (see [`super::auth`]).
fn authorized(st: &AdminState, headers: &HeaderMap, always: bool) -> bool {
    let needed = always || st.off_loopback.load(std::sync::atomic::Ordering::Relaxed);
    !needed || super::auth::bearer_ok(st.token.as_deref(), headers)
}

pub(crate) struct TestQuery {
    pub(crate) peer: Option<[u8; 32]>,
    pub(crate) probes: usize,
}

pub(crate) fn parse_test_query(q: Option<&str>) -> Result<TestQuery, String> {
    let mut t = TestQuery {
        peer: None,
        probes: DEFAULT_PROBES,
    };
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "peer" => {
                let key = crate::noise::keys::parse_base64_key(&v)
                    .ok_or_else(|| "peer must be a base64 WireGuard public key".to_string())?;
                t.peer = Some(key);
            }
            "probes" => {
                t.probes = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PROBES).contains(n))
                    .ok_or_else(|| format!("probes must be 1..={MAX_PROBES}"))?;
            }
            _ => return Err(format!("unknown query parameter {k:?}")),
        }
    }
    Ok(t)
}

/// Minimal %XX decoding (base64 keys arrive with %2B / %3D, or '+' kept).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn tunnel_test(State(st): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if !authorized(&st, &headers, true) {
        return super::auth::unauthorized();
    }
    let q = match parse_test_query(q.as_deref()) {
        Ok(q) => q,
        Err(e) => return error_json(StatusCode::BAD_REQUEST, &e),
    };
    if let Some(k) = q.peer {
        let known = st.dev.peer_snapshot(&k).is_some();
        if !known {
            return error_json(
                StatusCode::NOT_FOUND,
                "unknown peer: only configured peers can be tested",
            );
        }
        if let Some(addr) = st.probe_address(&k) {
            if let Err(e) = super::tunnel_test::check_probe_route(&st.dev, &k, addr) {
                return error_json(StatusCode::BAD_REQUEST, &e);
            }
        }
    }
    let st2 = st.clone();
    let res = tokio::task::spawn_blocking(move || st2.run_test(q.peer, q.probes)).await;
    match res {
        Ok(Some(rep)) => json(
            if rep.ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            &rep,
        ),
        Ok(None) => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::RETRY_AFTER, "5"),
                (header::CONTENT_TYPE, "application/json"),
            ],
            "{\"ok\":false,\"error\":\"a tunnel test is already running\"}\n",
        )
            .into_response(),
        Err(_) => error_json(StatusCode::INTERNAL_SERVER_ERROR, "tunnel test aborted"),
    }
}

/// Values the admin layer adds to the device's own metrics.
pub fn metrics_extra(st: &AdminState) -> crate::metrics::Extra {
    use std::sync::atomic::Ordering::Relaxed;
    let checks: Vec<(String, bool)> = Kind::Health
        .checks_for(st)
        .into_iter()
        .map(|n| (n.to_string(), health::check(st, n).is_ok()))
        .collect();
    let ok = |kind: Kind| {
        kind.checks_for(st)
            .iter()
            .all(|n| checks.iter().any(|(c, ok)| c == n && *ok))
    };
    let report = st.gates.report(st);
    crate::metrics::Extra {
        interface: st.ifname.clone(),
        live: Some(ok(Kind::Live)),
        ready: Some(ok(Kind::Ready)),
        gates: report
            .gates
            .iter()
            .map(|g| (g.name.clone(), g.pass))
            .collect(),
        health_checks: checks,
        tunnel_tests_run: st.tests_run.load(Relaxed),
        tunnel_tests_failed: st.tests_failed.load(Relaxed),
        histograms: Some(st.dev.histograms()),
        offloads: st
            .dev
            .offloads()
            .into_iter()
            .map(|(n, on)| (n.to_string(), on))
            .collect(),
        mesh: st.mesh().map(|m| super::mesh::metrics(m)),
        process: Some(crate::metrics::ProcessStats::read()),
        ..Default::default()
    }
}

async fn metrics(State(st): St, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers, false) {
        return super::auth::unauthorized();
    }
    // Rendering walks every peer: keep it off the async worker.
    let body = tokio::task::spawn_blocking(move || {
        let mut out = String::with_capacity(16 * 1024);
        crate::metrics::render(&mut out, &st.dev, &metrics_extra(&st));
        out
    })
    .await
    .unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// `/mesh`: this node's view of the mesh and each member's health (JSON);
/// 404 when no mesh is configured. Public keys only, nothing secret.
async fn mesh(State(st): St, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers, false) {
        return super::auth::unauthorized();
    }
    // Reads every member's peer: keep it off the async worker.
    let view = tokio::task::spawn_blocking(move || st.mesh_view()).await;
    match view {
        Ok(Some(v)) => json(StatusCode::OK, &v),
        Ok(None) => error_json(
            StatusCode::NOT_FOUND,
            "no mesh configured: this node runs without a [mesh] section",
        ),
        Err(_) => error_json(StatusCode::INTERNAL_SERVER_ERROR, "mesh view failed"),
    }
}

/// `/gates`: 200 with every verdict (Argo Rollouts reads the JSON; a non-2xx
/// would count as an error, not a failure). `/gates/<name>`: 200 when that
/// gate passes, 503 when not (Flagger webhooks go by status).
async fn gates(State(st): St, name: Option<String>) -> Response {
    let report = tokio::task::spawn_blocking(move || st.gates.report(&st)).await;
    let Ok(report) = report else {
        return error_json(StatusCode::INTERNAL_SERVER_ERROR, "gate evaluation failed");
    };
    match name {
        None => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            report.to_json() + "\n",
        )
            .into_response(),
        Some(n) => match report.only(&n) {
            Some(r) => {
                let status = if r.pass {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (
                    status,
                    [(header::CONTENT_TYPE, "application/json")],
                    r.to_json() + "\n",
                )
                    .into_response()
            }
            None => error_json(StatusCode::NOT_FOUND, &format!("no gate named {n:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_query_validation() {
        assert_eq!(parse_test_query(None).unwrap().probes, DEFAULT_PROBES);
        assert_eq!(parse_test_query(Some("probes=5")).unwrap().probes, 5);
        assert!(parse_test_query(Some("probes=0")).is_err());
        assert!(parse_test_query(Some("probes=100000")).is_err());
        assert!(parse_test_query(Some("probes=abc")).is_err());
        assert!(parse_test_query(Some("peer=notakey")).is_err());
        assert!(
            parse_test_query(Some("target=10.0.0.1")).is_err(),
            "no address from the request"
        );
        let k = "4nhsls0q7klSqPEh%2BVPMNSDd8fQGZoZospgUcqfAHiU%3D";
        assert!(parse_test_query(Some(&format!("peer={k}")))
            .unwrap()
            .peer
            .is_some());
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%2Bb%3D"), "a+b=");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(
            percent_decode("%é1"),
            "%é1",
            "multi-byte text after % must not panic"
        );
    }
}
