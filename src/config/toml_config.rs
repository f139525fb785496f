//! The daemon's own TOML config (`/etc/phantommesh/phantommesh.toml`).
//!
//! Unknown keys are errors so a typo cannot silently drop a setting. Every
//! error names the file and line: serde's errors carry byte spans, and values
//! are read as [`Spanned`] so semantic checks (CIDRs, keys, ranges) can point
//! at the offending line too.
use super::{
    find_duplicate, line_of, parse_cidr, parse_key, parse_u64, resolve_relative, validate_endpoint,
    validate_interface_name, validate_mtu, validate_probe, AdminConfig, Config, ConfigError,
    InterfaceConfig, KeySource, PeerConfig, RouteTable,
};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    interface: RawInterface,
    admin: Option<RawAdmin>,
    #[serde(default)]
    peer: Vec<RawPeer>,
    mesh: Option<super::mesh_config::RawMesh>,
    tuning: Option<RawTuning>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTuning {
    workers: Option<Spanned<i64>>,
    io_threads: Option<Spanned<i64>>,
    packet_metrics: Option<bool>,
    offload: Option<bool>,
    udp_recv_buffer: Option<Spanned<i64>>,
    inline_batch: Option<Spanned<i64>>,
}

/// `[tuning]`: the data path's knobs; None leaves the default (and the
/// environment, which overrides the file: see `daemon::options`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TuningConfig {
    /// Crypto workers, 1..=256 (default: one per core).
    pub workers: Option<usize>,
    /// I/O threads, 1..=8 (default: 1 on up to two cores, else 2).
    pub io_threads: Option<usize>,
    /// Packet-path latency sampling (default on).
    pub packet_metrics: Option<bool>,
    /// Kernel offloads, TUN and UDP (default on).
    pub offload: Option<bool>,
    /// UDP receive buffer in bytes, 4096..=1073741824 (default 262144).
    pub udp_recv_buffer: Option<usize>,
    /// Longest run of packets the reader seals or opens itself, 0..=4096
    /// (default: all on up to two cores, else 4).
    pub inline_batch: Option<usize>,
}

/// The `[tuning]` keys with a number value and their bounds (also used for
/// the environment's values, so both sources accept the same).
pub const TUNING_RANGES: [(&str, usize, usize); 4] = [
    ("workers", 1, crate::device::options::MAX_WORKERS),
    ("io_threads", 1, crate::device::options::MAX_IO_THREADS),
    (
        "udp_recv_buffer",
        crate::device::options::MIN_UDP_RECV_BUFFER,
        crate::device::options::MAX_UDP_RECV_BUFFER,
    ),
    ("inline_batch", 0, crate::device::options::MAX_INLINE_BATCH),
];

/// Checks `v` against `key`'s bounds in [`TUNING_RANGES`].
pub fn tuning_number(key: &str, v: i64) -> Result<usize, String> {
    let (_, lo, hi) = TUNING_RANGES
        .iter()
        .find(|(k, ..)| *k == key)
        .copied()
        .unwrap_or((key, 0, usize::MAX));
    usize::try_from(v)
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| format!("[tuning] {key} {v} out of range {lo}..={hi}"))
}

fn parse_tuning(
    raw: RawTuning,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<TuningConfig, ConfigError> {
    let num = |key: &str, v: Option<Spanned<i64>>| {
        v.map(|v| tuning_number(key, *v.get_ref()).map_err(|m| at(v.span(), m)))
            .transpose()
    };
    Ok(TuningConfig {
        workers: num("workers", raw.workers)?,
        io_threads: num("io_threads", raw.io_threads)?,
        packet_metrics: raw.packet_metrics,
        offload: raw.offload,
        udp_recv_buffer: num("udp_recv_buffer", raw.udp_recv_buffer)?,
        inline_batch: num("inline_batch", raw.inline_batch)?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Spanned<String>,
    private_key_file: Spanned<String>,
    listen_port: Option<Spanned<i64>>,
    fwmark: Option<Spanned<i64>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
    /// "auto", "off", or a table number (a string or an integer).
    table: Option<Spanned<toml::Value>>,
    allow_default_route: Option<bool>,
    user: Option<Spanned<String>>,
    drop_privileges: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    allow_unauthenticated: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    public_key: Spanned<String>,
    preshared_key_file: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    #[serde(default)]
    allowed_ips: Vec<Spanned<String>>,
    persistent_keepalive: Option<Spanned<i64>>,
    probe: Option<Spanned<String>>,
}

/// The environment variables [`apply_env`] reads.
pub const ENV_VARS: [&str; 7] = [
    "PHANTOMMESH_INTERFACE",
    "PHANTOMMESH_PRIVATE_KEY_FILE",
    "PHANTOMMESH_LISTEN_PORT",
    "PHANTOMMESH_MTU",
    "PHANTOMMESH_ADDRESSES",
    "PHANTOMMESH_ADMIN_LISTEN",
    "PHANTOMMESH_ADMIN_TOKEN_FILE",
];

/// Parses TOML config text. `path` names the file in errors, and relative
/// key/token file paths are resolved against its directory. Reads no files.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(text, s.start));
        let mut msg = e.message().trim_end().replace('\n', "; ");
        // Serde points a missing field at its table's header; say which table.
        let header = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
        let header = header.split('#').next().unwrap_or("").trim();
        if msg.starts_with("missing field") && header.starts_with('[') {
            msg = format!("{msg} in {header}");
        }
        ConfigError::new(&file, line, msg)
    })?;
    let at = |span: std::ops::Range<usize>, msg: String| {
        ConfigError::new(&file, line_of(text, span.start), msg)
    };
    let nonempty_path = |v: &Spanned<String>, what: &str| -> Result<PathBuf, ConfigError> {
        if v.get_ref().is_empty() {
            return Err(at(v.span(), format!("{what} must not be empty")));
        }
        Ok(resolve_relative(path, v.get_ref()))
    };

    let ri = raw.interface;
    validate_interface_name(ri.name.get_ref()).map_err(|m| at(ri.name.span(), m))?;
    let private_key_file = nonempty_path(&ri.private_key_file, "private_key_file")?;
    let listen_port = ri
        .listen_port
        .map(|v| {
            u16::try_from(*v.get_ref()).map_err(|_| {
                at(
                    v.span(),
                    format!("listen_port {} out of range 0..=65535", v.get_ref()),
                )
            })
        })
        .transpose()?;
    let fwmark = ri
        .fwmark
        .map(|v| {
            u32::try_from(*v.get_ref()).map_err(|_| {
                at(
                    v.span(),
                    format!("fwmark {} out of range 0..=4294967295", v.get_ref()),
                )
            })
        })
        .transpose()?;
    let addresses = cidr_list(&ri.addresses, "addresses", &at)?;
    let mtu = ri
        .mtu
        .map(|v| validate_mtu(*v.get_ref(), &addresses).map_err(|m| at(v.span(), m)))
        .transpose()?;
    let table = match &ri.table {
        None => RouteTable::Auto,
        Some(v) => {
            let text = match v.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                other => other.to_string(),
            };
            RouteTable::parse(&text).map_err(|m| at(v.span(), m))?
        }
    };
    let interface = InterfaceConfig {
        name: ri.name.into_inner(),
        private_key: KeySource::File(private_key_file),
        listen_port,
        fwmark,
        addresses,
        mtu,
        table,
        allow_default_route: ri.allow_default_route.unwrap_or(false),
        user: match &ri.user {
            Some(u) => {
                super::user::UserSpec::parse(u.get_ref()).map_err(|m| at(u.span(), m))?;
                Some(u.get_ref().clone())
            }
            None => None,
        },
        drop_privileges: ri.drop_privileges,
    };

    let mut admin = AdminConfig::default();
    if let Some(ra) = raw.admin {
        if let Some(l) = ra.listen {
            validate_admin_listen(l.get_ref()).map_err(|m| at(l.span(), m))?;
            admin.listen = l.into_inner();
        }
        if let Some(t) = ra.token_file {
            admin.token_file = Some(nonempty_path(&t, "token_file")?);
        }
        admin.allow_unauthenticated = ra.allow_unauthenticated.unwrap_or(false);
    }

    let mut peers: Vec<PeerConfig> = Vec::with_capacity(raw.peer.len());
    let mut key_lines = Vec::with_capacity(raw.peer.len());
    for rp in raw.peer {
        let pk_span = rp.public_key.span();
        let public_key =
            parse_key(rp.public_key.get_ref(), "public_key").map_err(|m| at(pk_span.clone(), m))?;
        if let Some(i) = find_duplicate(&peers, &public_key) {
            return Err(at(
                pk_span,
                format!(
                    "duplicate peer public_key (first given on line {})",
                    key_lines[i]
                ),
            ));
        }
        key_lines.push(line_of(text, pk_span.start));
        let preshared_key = rp
            .preshared_key_file
            .map(|p| nonempty_path(&p, "preshared_key_file").map(KeySource::File))
            .transpose()?;
        if let Some(e) = &rp.endpoint {
            validate_endpoint(e.get_ref()).map_err(|m| at(e.span(), m))?;
        }
        let allowed_ips = cidr_list(&rp.allowed_ips, "allowed_ips", &at)?;
        let persistent_keepalive = match rp.persistent_keepalive {
            None => None,
            Some(v) => match u16::try_from(*v.get_ref()) {
                Ok(0) => None,
                Ok(k) => Some(k),
                Err(_) => {
                    let msg = format!(
                        "persistent_keepalive {} out of range 0..=65535",
                        v.get_ref()
                    );
                    return Err(at(v.span(), msg));
                }
            },
        };
        let probe = match &rp.probe {
            None => None,
            Some(v) => {
                let ip: IpAddr = v.get_ref().parse().map_err(|_| {
                    at(
                        v.span(),
                        format!(
                            "invalid probe {:?}: expected one IP address (no prefix length)",
                            v.get_ref()
                        ),
                    )
                })?;
                validate_probe(ip, &allowed_ips).map_err(|m| at(v.span(), m))?;
                Some(ip)
            }
        };
        peers.push(PeerConfig {
            public_key,
            preshared_key,
            endpoint: rp.endpoint.map(Spanned::into_inner),
            allowed_ips,
            persistent_keepalive,
            probe,
        });
    }
    let mesh = raw
        .mesh
        .map(|m| super::mesh_config::parse(m, text, path, &at))
        .transpose()?;
    let tuning = raw
        .tuning
        .map(|t| parse_tuning(t, &at))
        .transpose()?
        .unwrap_or_default();
    Ok(Config {
        interface,
        peers,
        admin,
        mesh,
        tuning,
    })
}

fn cidr_list(
    items: &[Spanned<String>],
    field: &str,
    at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<Vec<(std::net::IpAddr, u8)>, ConfigError> {
    items
        .iter()
        .map(|v| parse_cidr(v.get_ref()).map_err(|m| at(v.span(), format!("{m} in {field}"))))
        .collect()
}

fn validate_admin_listen(s: &str) -> Result<(), String> {
    if s == "off" || s.parse::<SocketAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!(
            "invalid admin listen address {s:?}: expected ip:port or \"off\""
        ))
    }
}

/// Applies `PHANTOMMESH_*` overrides (see [`ENV_VARS`]) on top of a parsed
/// config. `env` looks a variable up (pass `|k| std::env::var(k).ok()`);
/// an empty value counts as unset. A bad value is an error naming the
/// variable. Override paths are taken as given (relative to the working
/// directory), like any command-line path.
pub fn apply_env(
    cfg: &mut Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let get = |name: &str| env(name).filter(|v| !v.is_empty());
    let err =
        |name: &str, msg: String| ConfigError::new("environment", 0, format!("{name}: {msg}"));

    if let Some(v) = get("PHANTOMMESH_INTERFACE") {
        validate_interface_name(&v).map_err(|m| err("PHANTOMMESH_INTERFACE", m))?;
        cfg.interface.name = v;
    }
    if let Some(v) = get("PHANTOMMESH_PRIVATE_KEY_FILE") {
        cfg.interface.private_key = KeySource::File(PathBuf::from(v));
    }
    if let Some(v) = get("PHANTOMMESH_LISTEN_PORT") {
        let port = parse_u64(&v).and_then(|p| u16::try_from(p).ok());
        let port = port.ok_or_else(|| {
            err(
                "PHANTOMMESH_LISTEN_PORT",
                format!("invalid port {v:?}: expected 0..=65535"),
            )
        })?;
        cfg.interface.listen_port = Some(port);
    }
    let addresses_set = if let Some(v) = get("PHANTOMMESH_ADDRESSES") {
        cfg.interface.addresses = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_cidr)
            .collect::<Result<_, _>>()
            .map_err(|m| err("PHANTOMMESH_ADDRESSES", m))?;
        true
    } else {
        false
    };
    let mtu_var = get("PHANTOMMESH_MTU");
    if let Some(v) = &mtu_var {
        let n = parse_u64(v)
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| {
                err(
                    "PHANTOMMESH_MTU",
                    format!("invalid mtu {v:?}: expected a number"),
                )
            })?;
        let m = validate_mtu(n, &cfg.interface.addresses).map_err(|m| err("PHANTOMMESH_MTU", m))?;
        cfg.interface.mtu = Some(m);
    } else if let (true, Some(m)) = (addresses_set, cfg.interface.mtu) {
        // New IPv6 addresses can make the file's MTU too small.
        validate_mtu(i64::from(m), &cfg.interface.addresses).map_err(|m| {
            err(
                "PHANTOMMESH_ADDRESSES",
                format!("{m} (mtu from the config)"),
            )
        })?;
    }
    if let Some(v) = get("PHANTOMMESH_ADMIN_LISTEN") {
        validate_admin_listen(&v).map_err(|m| err("PHANTOMMESH_ADMIN_LISTEN", m))?;
        cfg.admin.listen = v;
    }
    if let Some(v) = get("PHANTOMMESH_ADMIN_TOKEN_FILE") {
        cfg.admin.token_file = Some(PathBuf::from(v));
    }
    if let Some(mesh) = &mut cfg.mesh {
        super::mesh_config::apply_env(mesh, &get)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "toml_config_tests.rs"]
mod tests;
