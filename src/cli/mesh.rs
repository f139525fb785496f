//! `phantommesh mesh status [--url URL] [--json] [--token-file F]
//! [--ca-file PEM] [--insecure]`: a
//! node's view of the mesh (its `/mesh`) as a table, one member a row;
//! `phantommesh mesh leave --config FILE`: frees this node's address and
//! record in the store (before a node is taken away for good).
//!
//! Exit codes of `status` ([`crate::cli::exit`]): 0 when the store is up,
//! the node has its view and every member is healthy; 1 when the store is
//! down, the node has no view yet, or a member is unhealthy; 2 for a usage
//! or config error (a bad URL, CA file or token file, a token refused over
//! plain HTTP or rejected, a daemon without a mesh: HTTP 404); 3 when the
//! daemon cannot be asked or answers something else (the state is unknown,
//! which must not read as a pass). `leave`: 0 left, 2 config error, 1 the
//! store refused or failed.
use crate::cli::exit;
use crate::cli::remote::RemoteArgs;
use crate::gates::fetch::{self, Client, ErrorKind, Url};
use serde::Deserialize;
use std::io::Write;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const EXIT_OK: i32 = exit::OK;
pub const EXIT_UNHEALTHY: i32 = exit::CHECK_FAILED;
pub const EXIT_USAGE: i32 = exit::USAGE;
pub const EXIT_UNREACHABLE: i32 = exit::UNREACHABLE;

/// `/mesh` as read back (fields the daemon adds later are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MeshStatus {
    pub node: String,
    pub prefix: String,
    pub store_up: bool,
    pub started: bool,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    #[serde(default)]
    pub conflicts: u64,
    #[serde(default)]
    pub sync_errors: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MemberStatus {
    pub name: String,
    pub public_key: String,
    pub endpoint: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    pub handshake_age_seconds: Option<f64>,
    pub last_probe: Option<ProbeStatus>,
    pub healthy: bool,
    #[serde(default)]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct ProbeStatus {
    pub ok: bool,
    pub rtt_ms: Option<f64>,
    pub age_seconds: f64,
}

impl MeshStatus {
    pub fn unhealthy(&self) -> usize {
        self.members.iter().filter(|m| !m.healthy).count()
    }

    pub fn exit_code(&self) -> i32 {
        if self.store_up && self.started && self.unhealthy() == 0 {
            EXIT_OK
        } else {
            EXIT_UNHEALTHY
        }
    }
}

/// `45s`, `3m05s`, `2h07m`, `3d04h`.
pub fn short_age(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn rtt_cell(p: &Option<ProbeStatus>) -> String {
    match p {
        None => "-".into(),
        Some(ProbeStatus {
            rtt_ms: Some(ms), ..
        }) => format!("{}ms", crate::gates::table::format_number(*ms)),
        Some(_) => "lost".into(),
    }
}

/// The table, with a heading line and the unhealthy members' reasons.
pub fn render_table(s: &MeshStatus) -> String {
    let mut o = String::new();
    let addrs = if s.addresses.is_empty() {
        "no address yet".to_string()
    } else {
        s.addresses.join(", ")
    };
    o.push_str(&format!(
        "node {} ({addrs}), prefix {}, store {}{}\n",
        s.node,
        s.prefix,
        if s.store_up { "up" } else { "DOWN" },
        if s.started {
            ""
        } else {
            ", no view of the mesh yet"
        },
    ));
    o.push_str(&format!(
        "{} members, {} healthy; {} conflicts, {} sync errors\n",
        s.members.len(),
        s.members.len() - s.unhealthy(),
        s.conflicts,
        s.sync_errors
    ));
    if s.members.is_empty() {
        return o;
    }
    const HEAD: [&str; 6] = ["NAME", "ADDRESS", "ENDPOINT", "HANDSHAKE", "RTT", "OK"];
    let rows: Vec<[String; 6]> = s
        .members
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.addresses.first().cloned().unwrap_or_else(|| "-".into()),
                m.endpoint.clone().unwrap_or_else(|| "-".into()),
                m.handshake_age_seconds
                    .map_or_else(|| "never".into(), |a| format!("{} ago", short_age(a))),
                rtt_cell(&m.last_probe),
                if m.healthy { "yes" } else { "NO" }.into(),
            ]
        })
        .collect();
    let mut widths = HEAD.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    o.push('\n');
    let mut push = |cells: [&str; 6]| {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            line.push_str(c);
            if i + 1 < cells.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        o.push_str(line.trim_end());
        o.push('\n');
    };
    push(HEAD);
    for r in &rows {
        push([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]);
    }
    let problems: Vec<String> = s
        .members
        .iter()
        .filter(|m| !m.healthy)
        .map(|m| {
            format!(
                "  {}: {}",
                m.name,
                m.problem.as_deref().unwrap_or("unhealthy")
            )
        })
        .collect();
    if !problems.is_empty() {
        o.push_str("\nunhealthy:\n");
        for p in problems {
            o.push_str(&p);
            o.push('\n');
        }
    }
    o
}

/// `base` (`http://host:port`, or already `.../mesh`) with path `/mesh`.
fn mesh_url(base: &str) -> Result<Url, fetch::FetchError> {
    let mut u = Url::parse(base)?;
    let p = u.path.split('?').next().unwrap_or("").trim_end_matches('/');
    u.path = if p.ends_with("/mesh") {
        p.to_string()
    } else {
        format!("{p}/mesh")
    };
    Ok(u)
}

/// Reads `/mesh`: the parsed status and the raw JSON.
pub fn fetch_status(
    base: &str,
    client: &Client,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(MeshStatus, serde_json::Value), fetch::FetchError> {
    let url = mesh_url(base)?;
    let resp = client.get(&url, token, timeout)?;
    let unknown = fetch::FetchError::unreachable;
    if resp.status != 200 {
        let msg = serde_json::from_slice::<serde_json::Value>(&resp.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).trim().to_string());
        let (kind, hint) = match resp.status {
            401 | 403 => (ErrorKind::Usage, " (check the token)"),
            // A daemon without [mesh] (or no /mesh at all): asking it is
            // the caller's mistake, not an outage.
            404 => (ErrorKind::Usage, ""),
            _ => (ErrorKind::Unreachable, ""),
        };
        return Err(fetch::FetchError {
            kind,
            message: format!("{url}: HTTP {}{hint}: {msg}", resp.status),
        });
    }
    let raw: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| unknown(format!("{url}: the answer is not JSON ({e})")))?;
    let status: MeshStatus = serde_json::from_value(raw.clone())
        .map_err(|e| unknown(format!("{url}: the answer is not a mesh status ({e})")))?;
    Ok((status, raw))
}

/// Entry point of `mesh status`.
pub fn run_status(url: &str, json: bool, remote: &RemoteArgs) -> i32 {
    remote.run("phantommesh mesh status", |client, token, out, err| {
        run_status_with(url, json, client, token, TIMEOUT, out, err)
    })
}

/// [`run_status`] with the client, timeout and streams given (for tests).
pub fn run_status_with(
    url: &str,
    json: bool,
    client: &Client,
    token: Option<&str>,
    timeout: Duration,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let (status, raw) = match fetch_status(url, client, token, timeout) {
        Ok(x) => x,
        Err(e) => {
            let _ = writeln!(err, "phantommesh mesh status: {e}");
            return exit::of_fetch_error(&e);
        }
    };
    if json {
        let text = serde_json::to_string_pretty(&raw).unwrap_or_default();
        let _ = writeln!(out, "{text}");
    } else {
        let _ = write!(out, "{}", render_table(&status));
    }
    let _ = out.flush();
    status.exit_code()
}

/// Entry point of `mesh leave`: 0 when the node left, 1 otherwise.
pub fn run_leave(config: &std::path::Path) -> i32 {
    let cfg = match crate::config::load(config, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("phantommesh mesh leave: {e}");
            return EXIT_USAGE;
        }
    };
    let Some(mesh) = cfg.mesh else {
        eprintln!(
            "phantommesh mesh leave: {} has no [mesh] section",
            config.display()
        );
        return EXIT_USAGE;
    };
    match crate::mesh::leave(&mesh) {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("phantommesh mesh leave: {e}");
            1
        }
    }
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;
