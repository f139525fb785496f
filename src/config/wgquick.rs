//! wg-quick `.conf` files (`/etc/wireguard/wg0.conf`): the `wg setconf`
//! format plus wg-quick's own `[Interface]` keys.
//!
//! Read the way `wg` reads them: section names and keys are
//! case-insensitive, `#` starts a comment anywhere on a line, a later
//! scalar key overrides an earlier one, list keys (Address, AllowedIPs)
//! may repeat and accumulate. `Table` is read (run mode installs routes as
//! wg-quick does); wg-quick's hook and host settings (DNS,
//! Pre/PostUp/Down, SaveConfig) are accepted and reported in
//! [`WgQuickConfig::ignored`] so the daemon can warn that it does not act
//! on them. The interface name is the file stem, as wg-quick derives it.
use super::{
    find_duplicate, parse_cidr, parse_key, parse_u64, validate_endpoint, validate_interface_name,
    validate_mtu, AdminConfig, Config, ConfigError, InterfaceConfig, KeySource, PeerConfig,
    RouteTable,
};
use std::net::IpAddr;
use std::path::Path;

/// A wg-quick-only key that was accepted but is not acted on by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    pub line: usize,
    /// The key as written in the file.
    pub key: String,
}

impl IgnoredKey {
    /// A log line for the daemon, e.g. `wg0.conf:9: ignoring PostUp ...`.
    pub fn warning(&self, file: &str) -> String {
        format!(
            "{file}:{}: ignoring {}: a wg-quick setting, not applied by the daemon (use wg-quick for it)",
            self.line, self.key
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgQuickConfig {
    pub config: Config,
    /// wg-quick keys present in the file that the daemon ignores, in file order.
    pub ignored: Vec<IgnoredKey>,
}

/// The interface name wg-quick would use for this file: its stem
/// (`/etc/wireguard/wg0.conf` -> `wg0`).
pub fn interface_name_from_path(path: &Path) -> Result<String, ConfigError> {
    let file = path.display().to_string();
    let fname = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
    // Strip ".conf" by hand: file_stem would keep ".conf" whole as a dotfile name.
    let stem = match fname.len().checked_sub(5) {
        Some(cut) if fname.is_char_boundary(cut) && fname[cut..].eq_ignore_ascii_case(".conf") => {
            &fname[..cut]
        }
        _ => path.file_stem().and_then(|s| s.to_str()).unwrap_or(""),
    };
    validate_interface_name(stem)
        .map_err(|m| ConfigError::new(&file, 0, format!("{m} (taken from the file name)")))?;
    Ok(stem.to_string())
}

#[derive(Default)]
struct PeerBuilder {
    header_line: usize,
    public_key: Option<[u8; 32]>,
    public_key_line: usize,
    preshared_key: Option<[u8; 32]>,
    endpoint: Option<String>,
    allowed_ips: Vec<(IpAddr, u8)>,
    persistent_keepalive: Option<u16>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Interface,
    Peer,
}

/// Parses `.conf` text. `path` names the file in errors and gives the
/// interface name. Reads no files.
pub fn parse(text: &str, path: &Path) -> Result<WgQuickConfig, ConfigError> {
    let file = path.display().to_string();
    let name = interface_name_from_path(path)?;
    let err = |line: usize, msg: String| ConfigError::new(&file, line, msg);

    let mut section = Section::None;
    let mut interface_line = None;
    let mut private_key = None;
    let mut listen_port = None;
    let mut fwmark = None;
    let mut addresses = Vec::new();
    let mut mtu: Option<(i64, usize)> = None;
    let mut ignored = Vec::new();
    let mut table = RouteTable::Auto;
    let mut builders: Vec<PeerBuilder> = Vec::new();

    for (idx, raw_line) in text.lines().enumerate() {
        let ln = idx + 1;
        let line = raw_line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let inner = rest
                .strip_suffix(']')
                .ok_or_else(|| err(ln, format!("malformed section header {line:?}")))?
                .trim();
            if inner.eq_ignore_ascii_case("interface") {
                section = Section::Interface;
                interface_line.get_or_insert(ln);
            } else if inner.eq_ignore_ascii_case("peer") {
                section = Section::Peer;
                builders.push(PeerBuilder {
                    header_line: ln,
                    ..Default::default()
                });
            } else {
                return Err(err(ln, format!("unknown section [{inner}]")));
            }
            continue;
        }
        let (key_raw, value) = line
            .split_once('=')
            .ok_or_else(|| err(ln, "expected Key = Value".into()))?;
        // wg drops all whitespace from a line before matching keys.
        let key: String = key_raw.chars().filter(|c| !c.is_whitespace()).collect();
        let lkey = key.to_ascii_lowercase();
        let value = value.trim();
        match section {
            Section::None => {
                return Err(err(
                    ln,
                    format!("{key} outside of an [Interface] or [Peer] section"),
                ))
            }
            Section::Interface => match lkey.as_str() {
                "privatekey" => {
                    private_key = Some(parse_key(value, "PrivateKey").map_err(|m| err(ln, m))?)
                }
                "listenport" => {
                    let p = parse_u64(value).and_then(|p| u16::try_from(p).ok());
                    listen_port = Some(p.ok_or_else(|| {
                        err(
                            ln,
                            format!("invalid ListenPort {value:?}: expected 0..=65535"),
                        )
                    })?);
                }
                "fwmark" => fwmark = Some(parse_fwmark(value).map_err(|m| err(ln, m))?),
                "address" => addresses.extend(cidr_list(value, "Address").map_err(|m| err(ln, m))?),
                "mtu" => {
                    let m = parse_u64(value).and_then(|m| i64::try_from(m).ok());
                    let m = m.ok_or_else(|| err(ln, format!("invalid MTU {value:?}")))?;
                    mtu = Some((m, ln));
                }
                "table" => {
                    table = RouteTable::parse(value).map_err(|m| err(ln, m))?;
                }
                "dns" | "preup" | "postup" | "predown" | "postdown" | "saveconfig" => {
                    ignored.push(IgnoredKey {
                        line: ln,
                        key: key.clone(),
                    })
                }
                _ => return Err(err(ln, format!("unknown key {key} in [Interface]"))),
            },
            Section::Peer => {
                let b = builders
                    .last_mut()
                    .expect("a [Peer] header pushed a builder");
                match lkey.as_str() {
                    "publickey" => {
                        b.public_key = Some(parse_key(value, "PublicKey").map_err(|m| err(ln, m))?);
                        b.public_key_line = ln;
                    }
                    "presharedkey" => {
                        b.preshared_key =
                            Some(parse_key(value, "PresharedKey").map_err(|m| err(ln, m))?)
                    }
                    "allowedips" => b
                        .allowed_ips
                        .extend(cidr_list(value, "AllowedIPs").map_err(|m| err(ln, m))?),
                    "endpoint" => {
                        validate_endpoint(value).map_err(|m| err(ln, m))?;
                        b.endpoint = Some(value.to_string());
                    }
                    "persistentkeepalive" => {
                        b.persistent_keepalive = parse_keepalive(value).map_err(|m| err(ln, m))?
                    }
                    _ => return Err(err(ln, format!("unknown key {key} in [Peer]"))),
                }
            }
        }
    }

    let private_key = match (private_key, interface_line) {
        (Some(k), _) => k,
        (None, Some(l)) => return Err(err(l, "[Interface] has no PrivateKey".into())),
        (None, None) => return Err(err(0, "no [Interface] section".into())),
    };
    let mtu = mtu
        .map(|(m, ln)| validate_mtu(m, &addresses).map_err(|msg| err(ln, msg)))
        .transpose()?;

    let mut peers: Vec<PeerConfig> = Vec::with_capacity(builders.len());
    let mut key_lines = Vec::with_capacity(builders.len());
    for b in builders {
        let public_key = b
            .public_key
            .ok_or_else(|| err(b.header_line, "[Peer] has no PublicKey".into()))?;
        if let Some(i) = find_duplicate(&peers, &public_key) {
            return Err(err(
                b.public_key_line,
                format!(
                    "duplicate peer PublicKey (first given on line {})",
                    key_lines[i]
                ),
            ));
        }
        key_lines.push(b.public_key_line);
        peers.push(PeerConfig {
            public_key,
            preshared_key: b.preshared_key.map(KeySource::Inline),
            endpoint: b.endpoint,
            allowed_ips: b.allowed_ips,
            persistent_keepalive: b.persistent_keepalive,
            // wg-quick hands unknown [Peer] keys to `wg setconf`, which
            // refuses them: a probe key would break the file for wg-quick.
            probe: None,
        });
    }

    Ok(WgQuickConfig {
        config: Config {
            interface: InterfaceConfig {
                name,
                private_key: KeySource::Inline(private_key),
                listen_port,
                fwmark,
                addresses,
                mtu,
                table,
                // wg-quick itself installs default routes (with policy
                // routing); run mode asks for the TOML opt-in.
                allow_default_route: false,
                user: None,
                drop_privileges: None,
            },
            peers,
            admin: AdminConfig::default(),
            mesh: None,
            tuning: Default::default(),
        },
        ignored,
    })
}

/// A comma list; empty items are skipped, so `AllowedIPs =` means none.
fn cidr_list(value: &str, key: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_cidr(s).map_err(|m| format!("{m} in {key}")))
        .collect()
}

/// `off`, decimal, or `0x` hex, as `wg` accepts.
fn parse_fwmark(v: &str) -> Result<u32, String> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None => parse_u64(v).and_then(|n| u32::try_from(n).ok()),
    };
    n.ok_or_else(|| format!("invalid FwMark {v:?}: expected off, a number or 0x hex"))
}

/// `off` or 0..=65535 seconds; `off` and 0 both mean no keepalive.
fn parse_keepalive(v: &str) -> Result<Option<u16>, String> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match parse_u64(v).and_then(|n| u16::try_from(n).ok()) {
        Some(0) => Ok(None),
        Some(n) => Ok(Some(n)),
        None => Err(format!(
            "invalid PersistentKeepalive {v:?}: expected off or 0..=65535"
        )),
    }
}

#[cfg(test)]
#[path = "wgquick_tests.rs"]
mod tests;
