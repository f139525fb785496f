//! `phantommesh run --check --config FILE`: validates a config as `run`
//! would read it, without touching the system: no interface, no sockets,
//! no store, nothing written (a missing private key file, which `run`
//! would generate, is only reported). For CI pipelines and admission.
//!
//! It reads the file (TOML or wg-quick `.conf`) with the `PHANTOMMESH_*`
//! overrides, the private and preshared key files, the admin token file,
//! the gates config (`PHANTOMMESH_GATES`) and the files `[mesh]` names,
//! and prints what it found, one line each. Every error names its source
//! (`file:line`, a key file's path, an environment variable). Keys and
//! tokens never appear in the output: public keys and paths only.
//!
//! Exit: 0 valid, 2 not (see [`crate::cli::exit`]).
use crate::cli::exit::{self, Failure};
use crate::cli::keys::{check_key_file_mode, encode_base64_key, public_key, read_key_file};
use crate::config::{self, Config, KeySource, RouteTable};
use std::io::Write;
use std::path::Path;

/// What a valid config holds: the lines to print and the warnings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

/// Entry point of `run --check`: prints the findings (stdout) or the
/// error (stderr); returns the exit code.
pub fn run(path: &Path) -> i32 {
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    run_with(path, &mut stdout.lock(), &mut stderr.lock())
}

/// [`run`] with the streams given (for tests).
pub fn run_with(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match validate(path) {
        Ok(found) => {
            for l in &found.lines {
                let _ = writeln!(out, "{l}");
            }
            for w in &found.warnings {
                let _ = writeln!(out, "warning: {w}");
            }
            let _ = writeln!(out, "{}: config OK", path.display());
            let _ = out.flush();
            exit::OK
        }
        Err(f) => {
            let _ = writeln!(err, "phantommesh run --check: {f}");
            f.code
        }
    }
}

/// Reads and checks everything `run` would read before it touches the
/// system.
pub fn validate(path: &Path) -> Result<Found, Failure> {
    let (cfg, warnings) = config::load_with_warnings(path, &|k| std::env::var(k).ok())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut found = Found {
        warnings,
        ..Found::default()
    };
    let format = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("conf"))
    {
        "wg-quick .conf"
    } else {
        "TOML"
    };
    found
        .lines
        .push(format!("config: {} ({format})", path.display()));
    found.lines.push(interface_line(&cfg));
    found.lines.push(private_key_line(
        &cfg.interface.private_key,
        &mut found.warnings,
    )?);
    found.lines.push(format!("peers: {}", cfg.peers.len()));
    for p in &cfg.peers {
        found.lines.push(peer_line(p)?);
    }
    found.lines.push(admin_line(&cfg, &mut found.warnings)?);
    let opts = crate::daemon::options::device_options(&cfg.tuning, |k| std::env::var(k).ok())
        .map_err(Failure::usage)?;
    found.lines.push(format!(
        "tuning: {}",
        crate::daemon::options::describe(&opts)
    ));
    found.lines.push(gates_line()?);
    if let Some(m) = &cfg.mesh {
        found.lines.push(mesh_line(m)?);
    }
    found.lines.push(privileges_line(path, &cfg)?);
    Ok(found)
}

/// The privilege drop `run` would do after set-up (user, capabilities
/// kept and why).
fn privileges_line(path: &Path, cfg: &Config) -> Result<String, Failure> {
    use crate::daemon::privdrop;
    let opts = privdrop::options(cfg.interface.user.as_deref(), cfg.interface.drop_privileges)
        .map_err(Failure::usage)?;
    if !opts.enabled {
        return Ok(format!("privileges: no drop ({})", opts.source));
    }
    let icmp = cfg.mesh.is_some() || cfg.peers.iter().any(|p| p.probe.is_some());
    let plan = privdrop::plan(
        &opts,
        cfg.interface.listen_port.unwrap_or(0),
        &privdrop::run_mode_files(path, cfg),
        icmp,
    )
    .map_err(Failure::usage)?;
    Ok(format!("privileges: {}", privdrop::describe(&plan)))
}

fn cidrs(list: &[(std::net::IpAddr, u8)]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(|(ip, len)| format!("{ip}/{len}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn interface_line(cfg: &Config) -> String {
    let i = &cfg.interface;
    let port = i
        .listen_port
        .filter(|p| *p != 0)
        .map_or_else(|| "any free port".to_string(), |p| p.to_string());
    let mtu = i
        .mtu
        .map_or_else(|| "1420 (default)".to_string(), |m| m.to_string());
    let table = match i.table {
        RouteTable::Auto => "auto".to_string(),
        RouteTable::Off => "off".to_string(),
        RouteTable::Id(n) => n.to_string(),
    };
    format!(
        "interface: {}, listen port {port}, addresses {}, mtu {mtu}, table {table}",
        i.name,
        cidrs(&i.addresses)
    )
}

/// The private key: inline, a readable key file, or a missing file that
/// `run` will generate (only where its directory exists or can be made).
fn private_key_line(src: &KeySource, warnings: &mut Vec<String>) -> Result<String, Failure> {
    let p = match src {
        KeySource::Inline(k) => {
            return Ok(format!(
                "private key: inline (public key {})",
                encode_base64_key(&public_key(k))
            ))
        }
        KeySource::File(p) => p,
    };
    match std::fs::metadata(p) {
        Ok(_) => {
            let k =
                read_key_file(p).map_err(|e| Failure::usage(format!("private key file {e}")))?;
            if let Err(e) = check_key_file_mode(p) {
                warnings.push(e.to_string());
            }
            Ok(format!(
                "private key: {} (public key {})",
                p.display(),
                encode_base64_key(&public_key(&k))
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // `run` creates the missing directories; one of them must be
            // a directory already.
            let mut dir = p.parent();
            while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                if d.exists() {
                    if !d.is_dir() {
                        return Err(Failure::usage(format!(
                            "private key file {}: {} is not a directory",
                            p.display(),
                            d.display()
                        )));
                    }
                    break;
                }
                dir = d.parent();
            }
            Ok(format!(
                "private key: {} does not exist yet: `run` generates it (0600)",
                p.display()
            ))
        }
        Err(e) => Err(Failure::usage(format!(
            "private key file {}: {e}",
            p.display()
        ))),
    }
}

fn peer_line(p: &config::PeerConfig) -> Result<String, Failure> {
    let mut line = format!(
        "peer {}: allowed ips {}",
        encode_base64_key(&p.public_key),
        cidrs(&p.allowed_ips)
    );
    if let Some(e) = &p.endpoint {
        line.push_str(&format!(", endpoint {e}"));
    }
    if let Some(k) = p.persistent_keepalive {
        line.push_str(&format!(", keepalive {k} s"));
    }
    match &p.preshared_key {
        Some(KeySource::File(f)) => {
            read_key_file(f).map_err(|e| Failure::usage(format!("preshared key file {e}")))?;
            line.push_str(&format!(", preshared key {}", f.display()));
        }
        Some(KeySource::Inline(_)) => line.push_str(", preshared key inline"),
        None => {}
    }
    Ok(line)
}

/// The admin address and token file, as `run` reads them: a non-loopback
/// address needs a token or `allow_unauthenticated` (then a warning).
fn admin_line(cfg: &Config, warnings: &mut Vec<String>) -> Result<String, Failure> {
    let listen = crate::admin::parse_listen(&cfg.admin.listen)
        .map_err(|e| Failure::usage(format!("admin.listen: {e}")))?;
    let Some(addr) = listen else {
        return Ok("admin: off".into());
    };
    let mut line = format!("admin: listen {addr}");
    if let Some(p) = &cfg.admin.token_file {
        let token = crate::cli::remote::token_from_file(p)
            .map_err(|e| Failure::usage(format!("admin token file {e}")))?;
        drop(token);
        line.push_str(&format!(", bearer token from {}", p.display()));
    } else {
        line.push_str(", no token");
    }
    let warning = crate::admin::auth::listen_rule(
        listen,
        cfg.admin.token_file.is_some(),
        cfg.admin.allow_unauthenticated,
        &crate::admin::auth::RUN_MODE_NAMES,
    )
    .map_err(Failure::usage)?;
    warnings.extend(warning);
    Ok(line)
}

fn gates_line() -> Result<String, Failure> {
    let source = std::env::var(crate::admin::GATES_ENV)
        .ok()
        .filter(|p| !p.is_empty());
    let gates =
        crate::admin::load_gates(std::env::var(crate::admin::GATES_ENV).ok()).map_err(|e| {
            match &source {
                Some(_) => Failure::usage(format!("{}: {e}", crate::admin::GATES_ENV)),
                None => Failure::usage(e),
            }
        })?;
    let names: Vec<&str> = gates.gates.iter().map(|g| g.name.as_str()).collect();
    Ok(format!(
        "gates: {} ({})",
        source.map_or_else(
            || "built-in".to_string(),
            |s| format!("{s} (PHANTOMMESH_GATES)")
        ),
        names.join(", ")
    ))
}

/// `[mesh]`: the parser validated its values; the files it names must be
/// readable. The store itself is not contacted.
fn mesh_line(m: &config::MeshConfig) -> Result<String, Failure> {
    for (what, f) in [
        ("mesh.ca_file", &m.ca_file),
        ("mesh.cert_file", &m.cert_file),
        ("mesh.key_file", &m.key_file),
        ("mesh.password_file", &m.password_file),
    ] {
        if let Some(p) = f {
            readable_file(p).map_err(|e| Failure::usage(format!("{what} {}: {e}", p.display())))?;
        }
    }
    Ok(format!(
        "mesh: etcd at {}, node {}, prefix {}, network {}{}",
        m.endpoints.join(", "),
        m.node_name,
        m.prefix,
        cidrs(&m.network),
        if m.ca_file.is_some() || m.cert_file.is_some() {
            ", TLS"
        } else {
            ""
        }
    ))
}

fn readable_file(p: &Path) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    f.read(&mut [0u8; 1]).map(|_| ())
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
