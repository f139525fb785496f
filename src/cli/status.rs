//! `phantommesh status [--url URL] [--json] [--token-file F] [--ca-file PEM]
//! [--insecure]` (see [`crate::cli::remote`]): what
//! `wg show` prints, plus health and the go-live gates, read only from a
//! running daemon's admin API (`/metrics`, `/livez?verbose`,
//! `/readyz?verbose`, `/gates`). Those endpoints carry no secrets (no
//! private or preshared keys, no endpoints), so neither does this output.
//!
//! Exit codes ([`crate::cli::exit`]): 0 reachable and healthy with every gate passing; 1 reachable
//! but a health check or a gate fails; 2 a usage or config error (a bad
//! URL, CA file or token file, a token refused over plain HTTP); 3
//! unreachable, or an endpoint could not be read (the state is unknown,
//! which must not read as a pass).
use crate::cli::exit;
use crate::cli::remote::RemoteArgs;
use crate::gates::fetch::{self, Client, ErrorKind, Url};
use crate::gates::table::format_number;
use crate::gates::{Report, Unit};
use crate::metrics::parse::{self, Parsed};
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whole-exchange timeout per request.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub const EXIT_OK: i32 = exit::OK;
pub const EXIT_UNHEALTHY: i32 = exit::CHECK_FAILED;
pub const EXIT_USAGE: i32 = exit::USAGE;
pub const EXIT_UNREACHABLE: i32 = exit::UNREACHABLE;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerStatus {
    pub public_key: String,
    pub allowed_ips: Vec<String>,
    /// Unix time; `None` when there was never a handshake.
    pub latest_handshake_timestamp_seconds: Option<u64>,
    /// Relative to this command's clock; `None` when never.
    pub latest_handshake_seconds_ago: Option<i64>,
    pub transfer_rx_bytes: u64,
    pub transfer_tx_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub ok: bool,
    pub checks: Vec<HealthCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailingMetric {
    pub name: String,
    pub label: String,
    /// `actual` against `target`, in the gate's units ("no data" when none).
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateStatus {
    pub name: String,
    pub title: String,
    pub pass: bool,
    pub failing: Vec<FailingMetric>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gates {
    pub pass: bool,
    pub window_seconds: f64,
    pub gates: Vec<GateStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub url: String,
    pub reachable: bool,
    pub interface: Option<String>,
    pub public_key: Option<String>,
    pub listening_port: Option<u16>,
    /// Configured peers (`phantommesh_peers`); can exceed `peers.len()`.
    pub peer_count: Option<u64>,
    /// Per-peer series were left out by the daemon (too many peers).
    pub peers_truncated: bool,
    pub peers: Vec<PeerStatus>,
    pub live: Option<Health>,
    pub ready: Option<Health>,
    pub gates: Option<Gates>,
    /// Live and ready.
    pub healthy: bool,
    /// Endpoints that could not be read.
    pub errors: Vec<String>,
    /// One of the errors is a usage or config error (not in the JSON).
    #[serde(skip)]
    pub usage_error: bool,
}

impl Status {
    /// Nothing known yet about the daemon at `url`.
    pub fn new(url: &str) -> Status {
        Status {
            url: url.to_string(),
            reachable: false,
            interface: None,
            public_key: None,
            listening_port: None,
            peer_count: None,
            peers_truncated: false,
            peers: Vec::new(),
            live: None,
            ready: None,
            gates: None,
            healthy: false,
            errors: Vec::new(),
            usage_error: false,
        }
    }

    pub fn exit_code(&self) -> i32 {
        if self.usage_error {
            EXIT_USAGE
        } else if !self.reachable || !self.errors.is_empty() {
            EXIT_UNREACHABLE
        } else if !self.healthy || !self.gates.as_ref().is_some_and(|g| g.pass) {
            EXIT_UNHEALTHY
        } else {
            EXIT_OK
        }
    }
}

/// Interface, key, port and peers from a scrape. `now` is Unix seconds.
pub fn from_metrics(status: &mut Status, m: &Parsed, now: u64) {
    if let Some(info) = m.samples("phantommesh_device_info").next() {
        status.interface = info.label("interface").map(str::to_string);
        status.public_key = info
            .label("public_key")
            .filter(|k| !k.is_empty())
            .map(str::to_string);
    }
    let gauge = |name: &str| m.samples(name).next().map(|s| s.value);
    status.listening_port = gauge("phantommesh_listen_port")
        .filter(|p| (1.0..=65535.0).contains(p))
        .map(|p| p as u16);
    status.peer_count = gauge("phantommesh_peers").map(|n| n.max(0.0) as u64);
    status.peers_truncated = gauge("phantommesh_peer_metrics_truncated").is_some_and(|v| v != 0.0);

    let by_key = |name: &str, key: &str| {
        m.samples(name)
            .find(|s| s.label("public_key") == Some(key))
            .map(|s| s.value)
    };
    let mut peers: Vec<PeerStatus> = Vec::new();
    // Every peer has all three exporter series; any of them names it.
    for s in m
        .samples("wireguard_received_bytes_total")
        .chain(m.samples("wireguard_sent_bytes_total"))
        .chain(m.samples("wireguard_latest_handshake_seconds"))
    {
        let Some(key) = s.label("public_key") else {
            continue;
        };
        if peers.iter().any(|p| p.public_key == key) {
            continue;
        }
        let count = |v: Option<f64>| {
            v.filter(|v| v.is_finite() && *v > 0.0)
                .map_or(0, |v| v as u64)
        };
        let hs = count(by_key("wireguard_latest_handshake_seconds", key));
        let hs = (hs > 0).then_some(hs);
        peers.push(PeerStatus {
            public_key: key.to_string(),
            allowed_ips: s
                .label("allowed_ips")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            latest_handshake_timestamp_seconds: hs,
            latest_handshake_seconds_ago: hs.map(|t| now as i64 - t as i64),
            transfer_rx_bytes: count(by_key("wireguard_received_bytes_total", key)),
            transfer_tx_bytes: count(by_key("wireguard_sent_bytes_total", key)),
        });
    }
    // As wg show: most recent handshake first, never-handshaken last.
    peers.sort_by_key(|p| std::cmp::Reverse(p.latest_handshake_timestamp_seconds));
    status.peers = peers;
}

/// A verbose `/livez` or `/readyz` answer: 200 is healthy, 500 is not;
/// anything else is not a health answer (`Err`).
pub fn parse_health(http_status: u16, body: &str) -> Result<Health, String> {
    if http_status != 200 && http_status != 500 {
        return Err(format!("HTTP {http_status}: {}", one_line(body)));
    }
    let mut checks = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("[+]") {
            let name = rest.strip_suffix(" ok").unwrap_or(rest);
            checks.push(HealthCheck {
                name: name.to_string(),
                ok: true,
                reason: None,
            });
        } else if let Some(rest) = line.strip_prefix("[-]") {
            let (name, reason) = match rest.split_once(" failed") {
                Some((n, r)) => (n, r.trim_start_matches(':').trim()),
                None => (rest, ""),
            };
            checks.push(HealthCheck {
                name: name.to_string(),
                ok: false,
                reason: (!reason.is_empty()).then(|| reason.to_string()),
            });
        }
    }
    Ok(Health {
        ok: http_status == 200 && checks.iter().all(|c| c.ok),
        checks,
    })
}

fn with_unit(v: f64, unit: Unit) -> String {
    let n = format_number(v);
    match unit {
        Unit::Percent => format!("{n}%"),
        Unit::Ms => format!("{n}ms"),
        Unit::PerSecond => format!("{n}/s"),
        Unit::Checks => n,
    }
}

/// Each gate's verdict with its failing metrics.
pub fn summarize_gates(r: &Report) -> Gates {
    let gates = r
        .gates
        .iter()
        .map(|g| GateStatus {
            name: g.name.clone(),
            title: g.title.clone(),
            pass: g.pass,
            failing: g
                .metrics
                .iter()
                .filter(|m| !m.pass)
                .map(|m| {
                    let mut notes = Vec::new();
                    let value = match (m.actual, m.target.unit) {
                        (Some(a), Unit::Checks) => format!(
                            "{}/{} passing",
                            format_number(a),
                            format_number(m.target.value)
                        ),
                        (a, unit) => {
                            notes.push(format!(
                                "target {}{}",
                                m.target.op.symbol(),
                                with_unit(m.target.value, unit)
                            ));
                            a.map_or_else(|| crate::gates::NO_DATA.into(), |a| with_unit(a, unit))
                        }
                    };
                    // "no data" is already the value; other reasons add to it.
                    if let Some(r) = m.reason.as_deref().filter(|r| !r.is_empty()) {
                        if m.actual.is_some() || r != crate::gates::NO_DATA {
                            notes.push(r.to_string());
                        }
                    }
                    let detail = if notes.is_empty() {
                        value
                    } else {
                        format!("{value} ({})", notes.join("; "))
                    };
                    FailingMetric {
                        name: m.name.clone(),
                        label: m.label.clone(),
                        detail,
                    }
                })
                .collect(),
        })
        .collect();
    Gates {
        pass: r.pass,
        window_seconds: r.window_seconds,
        gates,
    }
}

/// `1.50 KiB`, as wg show prints transfer counters.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

/// `1 minute, 5 seconds ago`, as wg show prints handshake ages.
pub fn ago(seconds: i64) -> String {
    if seconds < 0 {
        return "in the future (clocks differ)".into();
    }
    if seconds == 0 {
        return "now".into();
    }
    let mut left = seconds as u64;
    let mut parts = Vec::new();
    for (size, unit) in [
        (365 * 86_400, "year"),
        (86_400, "day"),
        (3600, "hour"),
        (60, "minute"),
        (1, "second"),
    ] {
        let n = left / size;
        left %= size;
        if n > 0 {
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
        }
    }
    format!("{} ago", parts.join(", "))
}

fn one_line(body: &str) -> String {
    let s: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = s.chars().take(120).collect();
    if s.chars().count() > 120 {
        out.push_str("...");
    }
    out
}

/// The text rendering, wg show style.
pub fn render_text(s: &Status) -> String {
    let mut o = String::new();
    let mut line = |t: String| {
        o.push_str(&t);
        o.push('\n');
    };
    if !s.reachable {
        line(format!("{}: unreachable", s.url));
        return o;
    }
    line(format!(
        "interface: {}",
        s.interface.as_deref().unwrap_or("(unknown)")
    ));
    if let Some(k) = &s.public_key {
        line(format!("  public key: {k}"));
    }
    if let Some(p) = s.listening_port {
        line(format!("  listening port: {p}"));
    }
    if let Some(n) = s.peer_count {
        line(format!("  peers: {n}"));
    }
    if s.peers_truncated {
        line("  (per-peer details omitted by the daemon: more peers than its series limit)".into());
    }
    for p in &s.peers {
        line(String::new());
        line(format!("peer: {}", p.public_key));
        let ips = if p.allowed_ips.is_empty() {
            "(none)".to_string()
        } else {
            p.allowed_ips.join(", ")
        };
        line(format!("  allowed ips: {ips}"));
        if let Some(a) = p.latest_handshake_seconds_ago {
            line(format!("  latest handshake: {}", ago(a)));
        }
        if p.transfer_rx_bytes > 0 || p.transfer_tx_bytes > 0 {
            line(format!(
                "  transfer: {} received, {} sent",
                human_bytes(p.transfer_rx_bytes),
                human_bytes(p.transfer_tx_bytes)
            ));
        }
    }
    line(String::new());
    line("health:".into());
    for (name, h) in [("livez", &s.live), ("readyz", &s.ready)] {
        let Some(h) = h else {
            line(format!("  {name}: unknown"));
            continue;
        };
        line(format!("  {name}: {}", if h.ok { "ok" } else { "failed" }));
        for c in &h.checks {
            match (&c.reason, c.ok) {
                (_, true) => line(format!("    [+]{} ok", c.name)),
                (Some(r), false) => line(format!("    [-]{} failed: {r}", c.name)),
                (None, false) => line(format!("    [-]{} failed", c.name)),
            }
        }
    }
    if let Some(g) = &s.gates {
        line(String::new());
        line(format!(
            "gates: {} (window {} s)",
            if g.pass { "PASS" } else { "FAIL" },
            format_number(g.window_seconds)
        ));
        for gate in &g.gates {
            let mark = if gate.pass { "✅" } else { "❌" };
            if gate.failing.is_empty() {
                line(format!("  {mark} {} ({})", gate.name, gate.title));
            } else {
                let f: Vec<String> = gate
                    .failing
                    .iter()
                    .map(|m| format!("{} {}", m.label, m.detail))
                    .collect();
                line(format!(
                    "  {mark} {} ({}): {}",
                    gate.name,
                    gate.title,
                    f.join("; ")
                ));
            }
        }
    }
    o
}

/// `base` with its path replaced by `base`'s path + `path` (which may carry
/// a query).
fn endpoint(base: &Url, path: &str) -> Url {
    let prefix = base
        .path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    Url {
        path: format!("{prefix}{path}"),
        ..base.clone()
    }
}

/// Reads the four endpoints (in parallel) and assembles the status.
pub fn collect(
    url: &str,
    client: &Client,
    token: Option<&str>,
    timeout: Duration,
    now: u64,
) -> Status {
    let mut st = Status::new(url);
    let base = match Url::parse(url) {
        Ok(u) => u,
        Err(e) => {
            st.errors.push(e.to_string());
            st.usage_error = true;
            return st;
        }
    };
    let paths = ["/metrics", "/livez?verbose", "/readyz?verbose", "/gates"];
    let answers: Vec<Result<fetch::Response, fetch::FetchError>> = std::thread::scope(|sc| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| {
                let u = endpoint(&base, p);
                sc.spawn(move || client.get(&u, token, timeout))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(fetch::FetchError::unreachable(format!(
                        "{url}: request thread panicked"
                    )))
                })
            })
            .collect()
    });
    st.reachable = answers.iter().any(|a| a.is_ok());
    st.usage_error = answers
        .iter()
        .any(|a| matches!(a, Err(e) if e.kind == ErrorKind::Usage));
    if !st.reachable {
        // One message is enough: every request failed the same way.
        if let Some(Err(e)) = answers.into_iter().next() {
            st.errors.push(e.to_string());
        }
        return st;
    }
    let mut it = answers.into_iter().zip(paths);
    let mut next = || it.next();
    let body = |r: &fetch::Response| String::from_utf8_lossy(&r.body).into_owned();

    if let Some((a, p)) = next() {
        match a {
            Ok(r) if r.status == 200 => match parse::parse(&body(&r)) {
                Ok(m) => from_metrics(&mut st, &m, now),
                Err(e) => st
                    .errors
                    .push(format!("{p}: not a valid Prometheus exposition: {e}")),
            },
            Ok(r) => st
                .errors
                .push(format!("{p}: HTTP {}: {}", r.status, one_line(&body(&r)))),
            Err(e) => st.errors.push(e.to_string()),
        }
    }
    for slot in 0..2 {
        let Some((a, p)) = next() else { break };
        let h = match a {
            Ok(r) => parse_health(r.status, &body(&r)).map_err(|e| format!("{p}: {e}")),
            Err(e) => Err(e.to_string()),
        };
        match h {
            Ok(h) if slot == 0 => st.live = Some(h),
            Ok(h) => st.ready = Some(h),
            Err(e) => st.errors.push(e),
        }
    }
    if let Some((a, p)) = next() {
        match a {
            Ok(r) => match serde_json::from_slice::<Report>(&r.body) {
                Ok(rep) => st.gates = Some(summarize_gates(&rep)),
                Err(e) => st
                    .errors
                    .push(format!("{p}: HTTP {}: not a gates report ({e})", r.status)),
            },
            Err(e) => st.errors.push(e.to_string()),
        }
    }
    st.healthy = st.live.as_ref().is_some_and(|h| h.ok) && st.ready.as_ref().is_some_and(|h| h.ok);
    st
}

/// Entry point of `phantommesh status`.
pub fn run(url: &str, json: bool, remote: &RemoteArgs) -> i32 {
    remote.run("phantommesh status", |client, token, out, err| {
        run_with(url, json, client, token, TIMEOUT, out, err)
    })
}

/// [`run`] with the client, timeout and streams given (for tests).
pub fn run_with(
    url: &str,
    json: bool,
    client: &Client,
    token: Option<&str>,
    timeout: Duration,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let st = collect(url, client, token, timeout, now);
    for e in &st.errors {
        let _ = writeln!(err, "phantommesh status: {e}");
    }
    if json {
        match serde_json::to_string_pretty(&st) {
            Ok(t) => {
                let _ = writeln!(out, "{t}");
            }
            Err(e) => {
                let _ = writeln!(err, "phantommesh status: cannot encode JSON: {e}");
                return EXIT_UNREACHABLE;
            }
        }
    } else if st.reachable {
        let _ = write!(out, "{}", render_text(&st));
    }
    let _ = out.flush();
    st.exit_code()
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
