//! `phantommesh gate URL...`: reads each node's `/gates` report and prints
//! it as the runbook's tables (or JSON).
//!
//! Exit codes ([`crate::cli::exit`]): 0 when every gate on every node
//! passes; 1 when a gate
//! fails; 2 for a usage or config error (a bad URL, CA file or token file,
//! a token refused over plain HTTP, a token the node rejects, no such
//! gate); 3 when a node cannot be reached or does not answer with a gates
//! report. 2 wins over 3 over 1: a rollout must not read "some node
//! unknown" as a plain failure or a pass.
//!
//! `-o json` prints one document whatever the number of nodes:
//! `{"pass": bool, "nodes": [{"url", "from"?, "pass", "report", "error"}]}`
//! (the README has the field types).
//!
//! A URL whose host name resolves to several addresses (a Kubernetes
//! headless Service: `http://phantommesh.phantommesh.svc:9586`) stands for
//! every node behind it: each address is checked as a node of its own,
//! connected to by address while the Host header and the TLS server name
//! stay the name. Through a proxy the name is asked once (the proxy
//! resolves it); NO_PROXY the name to check each address.
use crate::cli::exit;
use crate::cli::remote::RemoteArgs;
use crate::gates::fetch::{Client, ErrorKind, Url};
use crate::gates::{render_report, Report};
use serde::Serialize;
use std::io::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

/// Resolves a host name to its addresses (the system resolver, or a fake).
pub type Resolver<'a> = &'a dyn Fn(&str, u16) -> std::io::Result<Vec<IpAddr>>;

/// The system resolver (getaddrinfo).
pub fn system_resolver(host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
    Ok((host, port).to_socket_addrs()?.map(|a| a.ip()).collect())
}

/// One node to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As shown: the URL given, or for one address of a name the URL
    /// with that address.
    pub url: String,
    /// The URL given, when its name resolved to several addresses and this
    /// is one of them.
    pub from: Option<String>,
    /// That address: connected to for `from`'s name.
    pub addr: Option<IpAddr>,
}

impl Target {
    /// The URL to fetch: `from` pinned to `addr`, or `url`.
    pub fn fetch_url(&self) -> Result<Url, crate::gates::fetch::FetchError> {
        match (&self.from, self.addr) {
            (Some(from), Some(ip)) => {
                let mut u = Url::parse(from)?;
                u.connect_to = Some(ip);
                Ok(u)
            }
            _ => Url::parse(&self.url),
        }
    }
}

/// Expands every URL whose host name resolves to more than one address
/// into one target per address (same port and path, duplicates dropped, in
/// the resolver's order). IP literals, names with one address, names that
/// do not resolve (the fetch reports that), names `proxied` says go
/// through a proxy, and URLs that do not parse are kept as given.
pub fn expand_urls(
    urls: &[String],
    resolve: Resolver<'_>,
    proxied: &dyn Fn(&Url) -> bool,
) -> Vec<Target> {
    let mut out = Vec::new();
    for u in urls {
        let keep = Target {
            url: u.clone(),
            from: None,
            addr: None,
        };
        let Ok(parsed) = Url::parse(u) else {
            out.push(keep);
            continue;
        };
        if parsed.host.parse::<IpAddr>().is_ok() || proxied(&parsed) {
            out.push(keep);
            continue;
        }
        let mut addrs: Vec<IpAddr> = Vec::new();
        for a in resolve(&parsed.host, parsed.port).unwrap_or_default() {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.len() < 2 {
            out.push(keep);
            continue;
        }
        let path = if parsed.path == "/" { "" } else { &parsed.path };
        let scheme = if parsed.is_https() { "https" } else { "http" };
        for a in addrs {
            let authority = match a {
                IpAddr::V4(v) => format!("{v}:{}", parsed.port),
                IpAddr::V6(v) => format!("[{v}]:{}", parsed.port),
            };
            out.push(Target {
                url: format!("{scheme}://{authority}{path}"),
                from: Some(u.clone()),
                addr: Some(a),
            });
        }
    }
    out
}

/// Whole-exchange timeout per node.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub const EXIT_PASS: i32 = exit::OK;
pub const EXIT_FAIL: i32 = exit::CHECK_FAILED;
/// Bad URL, CA or token file, refused token, no such gate.
pub const EXIT_USAGE: i32 = exit::USAGE;
/// A node that cannot be asked.
pub const EXIT_UNREACHABLE: i32 = exit::UNREACHABLE;

/// Entry point for the `gate` subcommand: `urls` are base URLs
/// (`http://127.0.0.1:9586`, `https://node1:9586`) or `/gates` URLs;
/// `gate` narrows the report to one gate; `remote` says how to connect
/// and which token to send.
pub fn run(urls: &[String], gate: Option<&str>, json: bool, remote: &RemoteArgs) -> i32 {
    remote.run("phantommesh gate", |client, token, out, err| {
        run_with(urls, gate, json, client, token, TIMEOUT, out, err)
    })
}

/// A node that could not be asked: why, and of which [`ErrorKind`].
pub type NodeError = (ErrorKind, String);

/// Fetches and parses one node's report, narrowed to `gate` if given.
pub fn fetch_report(
    url: &Url,
    gate: Option<&str>,
    client: &Client,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Report, NodeError> {
    let url = url.clone().gates();
    let resp = client
        .get(&url, token, timeout)
        .map_err(|e| (e.kind, e.message))?;
    // A gate endpoint may answer a failing report with a non-2xx status
    // (Flagger-style); the report still says what failed, so prefer it.
    let report = match serde_json::from_slice::<Report>(&resp.body) {
        Ok(r) => r,
        Err(e) if (200..300).contains(&resp.status) => {
            return Err((
                ErrorKind::Unreachable,
                format!("{url}: the answer is not a gates report ({e})"),
            ));
        }
        Err(_) => {
            let (kind, hint) = match resp.status {
                401 | 403 => (ErrorKind::Usage, " (check the token)"),
                404 => (
                    ErrorKind::Unreachable,
                    " (is this a PhantomMesh admin address?)",
                ),
                _ => (ErrorKind::Unreachable, ""),
            };
            return Err((
                kind,
                format!("{url}: HTTP {}{hint}: {}", resp.status, snippet(&resp.body)),
            ));
        }
    };
    match gate {
        None => Ok(report),
        Some(name) => report.only(name).ok_or_else(|| {
            let have: Vec<&str> = report.gates.iter().map(|g| g.name.as_str()).collect();
            (
                ErrorKind::Usage,
                format!(
                    "{url}: no gate {name:?} in the report (it has: {})",
                    have.join(", ")
                ),
            )
        }),
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(120).collect();
    if one_line.chars().count() > 120 {
        out.push_str("...");
    }
    if out.is_empty() {
        "(empty body)".into()
    } else {
        out
    }
}

#[derive(Serialize)]
struct NodeJson<'a> {
    url: &'a str,
    /// The name this address came from (several-address names only).
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    pass: bool,
    report: Option<&'a Report>,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct NodesJson<'a> {
    pass: bool,
    nodes: Vec<NodeJson<'a>>,
}

/// [`run`] with the client, timeout and output streams given (for tests).
#[allow(clippy::too_many_arguments)]
pub fn run_with(
    urls: &[String],
    gate: Option<&str>,
    json: bool,
    client: &Client,
    token: Option<&str>,
    timeout: Duration,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let ask = Ask {
        client,
        token,
        timeout,
    };
    run_resolving(urls, gate, json, &ask, &system_resolver, out, err)
}

/// How to ask each node.
pub struct Ask<'a> {
    pub client: &'a Client,
    pub token: Option<&'a str>,
    pub timeout: Duration,
}

/// [`run_with`] with the resolver given.
pub fn run_resolving(
    urls: &[String],
    gate: Option<&str>,
    json: bool,
    ask: &Ask<'_>,
    resolve: Resolver<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    if urls.is_empty() {
        let _ = writeln!(
            err,
            "phantommesh gate: no URL given (e.g. http://127.0.0.1:9586)"
        );
        return EXIT_USAGE;
    }
    let proxied = |u: &Url| ask.client.proxy_for(u).is_some();
    let targets = expand_urls(urls, resolve, &proxied);
    let froms: Vec<Option<&str>> = targets.iter().map(|t| t.from.as_deref()).collect();
    let urls: Vec<String> = targets.iter().map(|t| t.url.clone()).collect();
    let urls = urls.as_slice();
    let results: Vec<Result<Report, NodeError>> = targets
        .iter()
        .map(|t| {
            let url = t.fetch_url().map_err(|e| (e.kind, e.message))?;
            fetch_report(&url, gate, ask.client, ask.token, ask.timeout)
        })
        .collect();
    for (_, e) in results.iter().filter_map(|r| r.as_ref().err()) {
        let _ = writeln!(err, "phantommesh gate: {e}");
    }
    let errors = results.iter().filter(|r| r.is_err()).count();
    let usage_errors = results
        .iter()
        .filter(|r| matches!(r, Err((ErrorKind::Usage, _))))
        .count();
    let passing = results
        .iter()
        .filter(|r| matches!(r, Ok(rep) if rep.pass))
        .count();

    if json {
        let nodes = urls
            .iter()
            .zip(&results)
            .zip(&froms)
            .map(|((url, r), from)| NodeJson {
                url,
                from: *from,
                pass: matches!(r, Ok(rep) if rep.pass),
                report: r.as_ref().ok(),
                error: r.as_ref().err().map(|(_, e)| e.as_str()),
            })
            .collect();
        let doc = NodesJson {
            pass: passing == urls.len(),
            nodes,
        };
        match serde_json::to_string_pretty(&doc) {
            Ok(t) => {
                let _ = writeln!(out, "{t}");
            }
            Err(e) => {
                let _ = writeln!(err, "phantommesh gate: cannot encode JSON: {e}");
                return exit::CHECK_FAILED;
            }
        }
    } else {
        for ((url, r), from) in urls.iter().zip(&results).zip(&froms) {
            if let Ok(report) = r {
                match from {
                    Some(f) => {
                        let _ = writeln!(out, "== {url} (from {f}) ==\n");
                    }
                    None if urls.len() > 1 => {
                        let _ = writeln!(out, "== {url} ==\n");
                    }
                    None => {}
                }
                let _ = writeln!(out, "{}", render_report(report));
            }
        }
        if urls.len() > 1 {
            let failing = urls.len() - passing - errors;
            let mut line = format!("{passing}/{} nodes passing", urls.len());
            if failing > 0 {
                line.push_str(&format!(", {failing} failing"));
            }
            if errors > 0 {
                line.push_str(&format!(", {errors} unreachable or invalid"));
            }
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = out.flush();
    if usage_errors > 0 {
        EXIT_USAGE
    } else if errors > 0 {
        EXIT_UNREACHABLE
    } else if passing < urls.len() {
        EXIT_FAIL
    } else {
        EXIT_PASS
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "gate_tls_tests.rs"]
mod tls_tests;
