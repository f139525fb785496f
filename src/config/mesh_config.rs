//! The `[mesh]` section of the TOML config: where the membership store is,
//! and what this node publishes there. Parsed here into a typed
//! [`MeshConfig`]; the `mesh` module acts on it.
use super::{parse_cidr, resolve_relative, ConfigError};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Default seconds until a silent node's record expires.
pub const DEFAULT_LEASE_TTL: u32 = 15;
/// Default keepalive towards mesh peers (NAT and conntrack entries stay
/// open, and a restarted peer learns our endpoint again).
pub const DEFAULT_KEEPALIVE: u16 = 25;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMesh {
    store: Spanned<String>,
    endpoints: Spanned<Vec<Spanned<String>>>,
    ca_file: Option<Spanned<String>>,
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    node_name: Option<Spanned<String>>,
    advertise_endpoint: Option<Spanned<String>>,
    /// One CIDR, or a list (one IPv4 and one IPv6 at most).
    network: Spanned<toml::Value>,
    #[serde(default)]
    allowed_ips: Vec<Spanned<String>>,
    lease_ttl: Option<Spanned<i64>>,
    persistent_keepalive: Option<Spanned<i64>>,
    cache_file: Option<Spanned<String>>,
}

/// `[mesh]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    /// etcd client URLs (`http://` or `https://`).
    pub endpoints: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Key prefix of this mesh, without a trailing `/`.
    pub prefix: String,
    pub node_name: String,
    /// `host:port` (or a bare host, then the listen port is added) that
    /// peers dial; None publishes no endpoint (peers learn it when this
    /// node sends first).
    pub advertise_endpoint: Option<String>,
    /// Tunnel address pools: at most one IPv4 and one IPv6 network.
    pub network: Vec<(IpAddr, u8)>,
    /// Extra prefixes this node routes (its pod CIDR).
    pub allowed_ips: Vec<(IpAddr, u8)>,
    pub lease_ttl: u32,
    pub persistent_keepalive: u16,
    /// Where the last view of the mesh is kept for restarts without the
    /// store. None: `mesh-cache.json` beside the private key file.
    pub cache_file: Option<PathBuf>,
}

/// Environment variables that override `[mesh]` keys.
pub const MESH_ENV_VARS: [&str; 4] = [
    "PHANTOMMESH_NODE_NAME",
    "PHANTOMMESH_ADVERTISE_ENDPOINT",
    "PHANTOMMESH_MESH_ALLOWED_IPS",
    "PHANTOMMESH_MESH_ENDPOINTS",
];

pub(super) fn parse(
    raw: RawMesh,
    text: &str,
    path: &Path,
    at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<MeshConfig, ConfigError> {
    if raw.store.get_ref() != "etcd" {
        return Err(at(
            raw.store.span(),
            format!(
                "unknown mesh store {:?}: the only store is \"etcd\"",
                raw.store.get_ref()
            ),
        ));
    }
    let mut endpoints = Vec::new();
    for e in raw.endpoints.get_ref() {
        validate_store_url(e.get_ref()).map_err(|m| at(e.span(), m))?;
        endpoints.push(e.get_ref().clone());
    }
    if endpoints.is_empty() {
        return Err(at(
            raw.endpoints.span(),
            "mesh endpoints must name at least one etcd URL".into(),
        ));
    }
    let file = |v: &Option<Spanned<String>>, what: &str| -> Result<Option<PathBuf>, ConfigError> {
        match v {
            None => Ok(None),
            Some(v) if v.get_ref().is_empty() => {
                Err(at(v.span(), format!("{what} must not be empty")))
            }
            Some(v) => Ok(Some(resolve_relative(path, v.get_ref()))),
        }
    };
    let ca_file = file(&raw.ca_file, "ca_file")?;
    let cert_file = file(&raw.cert_file, "cert_file")?;
    let key_file = file(&raw.key_file, "key_file")?;
    if cert_file.is_some() != key_file.is_some() {
        let span = raw
            .cert_file
            .as_ref()
            .or(raw.key_file.as_ref())
            .map(|v| v.span())
            .unwrap_or(0..0);
        return Err(at(span, "cert_file and key_file go together".into()));
    }
    let password_file = file(&raw.password_file, "password_file")?;
    if raw.username.is_some() != password_file.is_some() {
        let span = raw
            .username
            .as_ref()
            .or(raw.password_file.as_ref())
            .map(|v| v.span())
            .unwrap_or(0..0);
        return Err(at(span, "username and password_file go together".into()));
    }
    let prefix = match &raw.prefix {
        None => "/phantommesh/default".to_string(),
        Some(p) => validate_prefix(p.get_ref()).map_err(|m| at(p.span(), m))?,
    };
    let node_name = match &raw.node_name {
        Some(n) => {
            validate_node_name(n.get_ref()).map_err(|m| at(n.span(), m))?;
            n.get_ref().clone()
        }
        None => host_name(),
    };
    if let Some(e) = &raw.advertise_endpoint {
        validate_advertise(e.get_ref()).map_err(|m| at(e.span(), m))?;
    }
    let network = parse_network(raw.network.get_ref()).map_err(|m| at(raw.network.span(), m))?;
    let allowed_ips = raw
        .allowed_ips
        .iter()
        .map(|v| parse_cidr(v.get_ref()).map_err(|m| at(v.span(), format!("{m} in allowed_ips"))))
        .collect::<Result<Vec<_>, _>>()?;
    let lease_ttl = match &raw.lease_ttl {
        None => DEFAULT_LEASE_TTL,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(t @ 2..=3600) => t,
            _ => {
                return Err(at(
                    v.span(),
                    format!("lease_ttl {} out of range 2..=3600 seconds", v.get_ref()),
                ))
            }
        },
    };
    let persistent_keepalive = match &raw.persistent_keepalive {
        None => DEFAULT_KEEPALIVE,
        Some(v) => u16::try_from(*v.get_ref()).map_err(|_| {
            at(
                v.span(),
                format!(
                    "persistent_keepalive {} out of range 0..=65535",
                    v.get_ref()
                ),
            )
        })?,
    };
    let cache_file = file(&raw.cache_file, "cache_file")?;
    let _ = text;
    Ok(MeshConfig {
        endpoints,
        ca_file,
        cert_file,
        key_file,
        username: raw.username.map(Spanned::into_inner),
        password_file,
        prefix,
        node_name,
        advertise_endpoint: raw.advertise_endpoint.map(Spanned::into_inner),
        network,
        allowed_ips,
        lease_ttl,
        persistent_keepalive,
        cache_file,
    })
}

/// Applies `PHANTOMMESH_NODE_NAME`, `PHANTOMMESH_ADVERTISE_ENDPOINT`,
/// `PHANTOMMESH_MESH_ALLOWED_IPS` (comma list) and
/// `PHANTOMMESH_MESH_ENDPOINTS` (comma list). Empty values count as unset.
pub(super) fn apply_env(
    mesh: &mut MeshConfig,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let err =
        |name: &str, msg: String| ConfigError::new("environment", 0, format!("{name}: {msg}"));
    if let Some(v) = get("PHANTOMMESH_NODE_NAME") {
        validate_node_name(&v).map_err(|m| err("PHANTOMMESH_NODE_NAME", m))?;
        mesh.node_name = v;
    }
    if let Some(v) = get("PHANTOMMESH_ADVERTISE_ENDPOINT") {
        validate_advertise(&v).map_err(|m| err("PHANTOMMESH_ADVERTISE_ENDPOINT", m))?;
        mesh.advertise_endpoint = Some(v);
    }
    if let Some(v) = get("PHANTOMMESH_MESH_ALLOWED_IPS") {
        mesh.allowed_ips = comma_list(&v)
            .map(parse_cidr)
            .collect::<Result<_, _>>()
            .map_err(|m| err("PHANTOMMESH_MESH_ALLOWED_IPS", m))?;
    }
    if let Some(v) = get("PHANTOMMESH_MESH_ENDPOINTS") {
        let list: Vec<String> = comma_list(&v).map(str::to_string).collect();
        for u in &list {
            validate_store_url(u).map_err(|m| err("PHANTOMMESH_MESH_ENDPOINTS", m))?;
        }
        if list.is_empty() {
            return Err(err("PHANTOMMESH_MESH_ENDPOINTS", "no URL given".into()));
        }
        mesh.endpoints = list;
    }
    Ok(())
}

fn comma_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn validate_store_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("invalid etcd endpoint {u:?}: expected http://HOST:PORT or https://HOST:PORT")
        })?;
    if rest.is_empty() || rest.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(format!(
            "invalid etcd endpoint {u:?}: expected SCHEME://HOST:PORT"
        ));
    }
    Ok(())
}

fn validate_prefix(p: &str) -> Result<String, String> {
    let trimmed = p.trim_end_matches('/');
    if !trimmed.starts_with('/') || trimmed.len() < 2 || trimmed.contains(char::is_whitespace) {
        return Err(format!(
            "invalid mesh prefix {p:?}: expected an absolute key path such as \"/phantommesh/default\""
        ));
    }
    Ok(trimmed.to_string())
}

/// Node names become etcd key segments: DNS-label characters only, so no
/// name can reach outside its own key.
pub fn validate_node_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !n.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid node_name {n:?}: 1 to 253 characters from [a-zA-Z0-9._-]"
        ))
    }
}

/// `host:port`, `[v6]:port`, or a bare host or address (the listen port is
/// added when it is published).
fn validate_advertise(e: &str) -> Result<(), String> {
    if e.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if !e.contains(':') && !e.is_empty() && !e.contains(char::is_whitespace) {
        return Ok(());
    }
    super::validate_endpoint(e).map_err(|m| m.replace("endpoint", "advertise_endpoint"))
}

fn parse_network(v: &toml::Value) -> Result<Vec<(IpAddr, u8)>, String> {
    let items: Vec<&str> = match v {
        toml::Value::String(s) => vec![s.as_str()],
        toml::Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or("network entries must be strings".to_string())
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("network must be a CIDR string or a list of them".into()),
    };
    let mut out: Vec<(IpAddr, u8)> = Vec::new();
    for s in items {
        let (ip, len) = parse_cidr(s).map_err(|m| format!("{m} in network"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if max - len < 2 {
            return Err(format!(
                "network {s} is too small to allocate addresses from"
            ));
        }
        if out.iter().any(|(o, _)| o.is_ipv4() == ip.is_ipv4()) {
            return Err("network takes at most one IPv4 and one IPv6 prefix".into());
        }
        out.push((ip, len));
    }
    if out.is_empty() {
        return Err("network must name at least one prefix".into());
    }
    Ok(out)
}

/// This machine's host name (the default node name).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // or truncates, and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
#[path = "mesh_config_tests.rs"]
mod tests;
