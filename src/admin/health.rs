//! kube-apiserver-style health endpoints: `/livez`, `/readyz`, `/healthz`.
//!
//! Each is a list of named checks. `ok` with 200 when all pass; `?verbose`
//! lists `[+]name ok` lines; a failure answers 500 with `[-]name failed:
//! reason`; `?exclude=name` skips checks; `/readyz/<name>` runs one check.
//! Liveness never depends on remote peers: it only asks whether this
//! process's packet loops are turning.
use super::AdminState;
use crate::io::LinkState;
use std::sync::atomic::Ordering;

/// A worker that has not looped for this long is stuck (loops wake at least
/// every 200 ms).
pub const WORKER_STALL_MS: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Live,
    Ready,
    Health,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Kind::Live => "livez",
            Kind::Ready => "readyz",
            Kind::Health => "healthz",
        }
    }
    pub fn checks(self) -> &'static [&'static str] {
        const LIVE: &[&str] = &["ping", "packet-loops"];
        const READY: &[&str] = &["tun", "udp", "config", "uapi", "self-test"];
        const ALL: &[&str] = &[
            "ping",
            "packet-loops",
            "tun",
            "udp",
            "config",
            "uapi",
            "self-test",
        ];
        match self {
            Kind::Live => LIVE,
            Kind::Ready => READY,
            Kind::Health => ALL,
        }
    }

    /// The checks of this kind on this node: [`Self::checks`], plus `mesh`
    /// for readiness (and health) when a mesh is configured.
    pub fn checks_for(self, st: &AdminState) -> Vec<&'static str> {
        let mut v = self.checks().to_vec();
        if self != Kind::Live && st.mesh().is_some() {
            v.push("mesh");
        }
        v
    }
}

/// Why the `mesh` check fails before the agent had a view to start from.
pub const MESH_NOT_STARTED: &str =
    "no view of the mesh yet (store unreachable at start and no cache)";

/// Runs one named check.
pub fn check(st: &AdminState, name: &str) -> Result<(), String> {
    let dev = &st.dev;
    match name {
        "ping" => Ok(()),
        "packet-loops" => {
            let h = dev.health(WORKER_STALL_MS);
            if h.closed {
                Err("device is shut down".into())
            } else if h.stalled_workers.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "no heartbeat for {} s from: {}",
                    WORKER_STALL_MS / 1000,
                    h.stalled_workers.join(", ")
                ))
            }
        }
        "tun" => match dev.link_state() {
            LinkState::Gone => Err(format!("interface {} is gone", st.ifname)),
            LinkState::Down => Err(format!("interface {} is down", st.ifname)),
            LinkState::Up => Ok(()),
        },
        "udp" if dev.udp_bound() => Ok(()),
        "udp" => Err("no UDP socket bound".into()),
        "config" => {
            if dev.public_key().is_none() {
                Err("no private key configured".into())
            } else if !st.config_applied.load(Ordering::Relaxed) {
                Err("configuration not applied yet".into())
            } else {
                Ok(())
            }
        }
        "uapi" => {
            if st.uapi_listening.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("UAPI socket not listening".into())
            }
        }
        // Local only: whether this node knows its address and its peers
        // (from the store or its cache), never whether they are up.
        "mesh" => match st.mesh() {
            None => Err("no mesh configured".into()),
            Some(m) if m.started() => Ok(()),
            Some(_) => Err(MESH_NOT_STARTED.into()),
        },
        "self-test" if st.link_returned_since_self_test() => {
            Err("the link came up since the last self test; it runs again now".into())
        }
        "self-test" => match st.self_test.lock().as_ref() {
            None => Err("not run yet".into()),
            Some(r) if r.ok => Ok(()),
            Some(r) => Err(r.errors.first().cloned().unwrap_or_else(|| "failed".into())),
        },
        other => Err(format!("unknown check {other}")),
    }
}

/// Query options of a health request.
#[derive(Debug, Default)]
pub struct Options {
    pub verbose: bool,
    pub exclude: Vec<String>,
}

/// Parses `verbose` and (repeatable) `exclude=name` from a raw query.
pub fn parse_query(query: Option<&str>) -> Result<Options, String> {
    let mut o = Options::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "verbose" => o.verbose = v.is_empty() || v == "true" || v == "1",
            "exclude" => o.exclude.push(v.to_string()),
            _ => return Err(format!("unknown query parameter {k:?}")),
        }
    }
    Ok(o)
}

/// Evaluates `kind` (or one check of it) and renders the body. Returns
/// (healthy, body).
pub fn evaluate(
    st: &AdminState,
    kind: Kind,
    only: Option<&str>,
    opts: &Options,
) -> Result<(bool, String), String> {
    let all = kind.checks_for(st);
    let names: Vec<&str> = match only {
        Some(n) if all.contains(&n) => vec![n],
        Some(n) => return Err(format!("no check named {n:?} in /{}", kind.path())),
        None => all
            .into_iter()
            .filter(|n| !opts.exclude.iter().any(|e| e == n))
            .collect(),
    };
    let mut ok = true;
    let mut lines = String::new();
    for n in names {
        match check(st, n) {
            Ok(()) => lines.push_str(&format!("[+]{n} ok\n")),
            Err(reason) => {
                ok = false;
                lines.push_str(&format!("[-]{n} failed: {reason}\n"));
            }
        }
    }
    let body = if ok && !opts.verbose {
        "ok".to_string()
    } else if ok {
        format!("{lines}{} check passed\n", kind.path())
    } else {
        format!("{lines}{} check failed\n", kind.path())
    };
    Ok((ok, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let o = parse_query(Some("verbose&exclude=tun&exclude=udp")).unwrap();
        assert!(o.verbose);
        assert_eq!(o.exclude, vec!["tun", "udp"]);
        assert!(!parse_query(None).unwrap().verbose);
        assert!(parse_query(Some("bogus=1")).is_err());
    }
}
