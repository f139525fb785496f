//! Configuration files: the daemon's TOML config and wg-quick `.conf` files.
//! Pure parsers: text in, a typed [`Config`] or a positioned error out.
pub mod mesh_config;
pub mod toml_config;
pub mod user;
pub mod wgquick;

pub use mesh_config::MeshConfig;
pub use toml_config::TuningConfig;

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Where a key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Base64 key given inline (wg-quick `.conf`).
    Inline([u8; 32]),
    /// A file holding the base64 key (TOML `private_key_file`).
    File(PathBuf),
}

// Private and preshared keys must not reach logs through `{:?}` of a config.
impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Inline(_) => f.write_str("Inline(<redacted>)"),
            KeySource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    pub private_key: KeySource,
    pub listen_port: Option<u16>,
    pub fwmark: Option<u32>,
    /// Addresses to assign, with prefix length.
    pub addresses: Vec<(IpAddr, u8)>,
    pub mtu: Option<u16>,
    /// Which routing table run mode puts the peers' allowed IPs in
    /// (wg-quick's `Table`).
    pub table: RouteTable,
    /// Whether a peer's `0.0.0.0/0` or `::/0` may become a route. Off by
    /// default: a default route through the tunnel cuts a node off from
    /// everything else when the peer is wrong.
    pub allow_default_route: bool,
    /// Run mode's privilege drop target (`[interface] user`), checked with
    /// [`user::UserSpec::parse`].
    pub user: Option<String>,
    /// `[interface] drop_privileges` (None: the default, on).
    pub drop_privileges: Option<bool>,
}

/// wg-quick's `Table`: `auto` (the main table), `off` (no routes) or a
/// table number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteTable {
    #[default]
    Auto,
    Off,
    Id(u32),
}

impl RouteTable {
    /// Parses `auto`, `off`, `main` (254) or a table number (1..2^32-1).
    pub fn parse(s: &str) -> Result<RouteTable, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(RouteTable::Auto),
            "off" => Ok(RouteTable::Off),
            "main" => Ok(RouteTable::Id(254)),
            v => match parse_u64(v).and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n > 0 => Ok(RouteTable::Id(n)),
                _ => Err(format!(
                    "invalid table {s:?}: expected \"auto\", \"off\" or a table number"
                )),
            },
        }
    }

    /// The kernel table routes go into, or None when routes are off.
    pub fn id(self) -> Option<u32> {
        match self {
            RouteTable::Auto => Some(254),
            RouteTable::Off => None,
            RouteTable::Id(n) => Some(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: [u8; 32],
    pub preshared_key: Option<KeySource>,
    /// `host:port` or `[v6]:port`, resolved when applied.
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<(IpAddr, u8)>,
    /// Seconds; `None` when off (both parsers map `0` and `off` to `None`).
    pub persistent_keepalive: Option<u16>,
    /// An address behind the peer that `/tunnel-test?peer=` pings through
    /// the tunnel (TOML `probe`; wg-quick files have no such key).
    pub probe: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `host:port`, or "off".
    pub listen: String,
    pub token_file: Option<PathBuf>,
    /// Serve off loopback without a token (logged as a warning).
    pub allow_unauthenticated: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9586".into(),
            token_file: None,
            allow_unauthenticated: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub interface: InterfaceConfig,
    pub peers: Vec<PeerConfig>,
    pub admin: AdminConfig,
    /// `[mesh]`: membership through a store (TOML only).
    pub mesh: Option<MeshConfig>,
    /// `[tuning]`: the data path's knobs (TOML only; unset = default).
    pub tuning: TuningConfig,
}

/// A config error that names the file, the line (1-based; 0 when not tied to
/// a line) and the problem. Displayed as `file:line: message`, or
/// `file: message` when the line is 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            line,
            message: message.into(),
        }
    }

    fn render(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.file, self.message)
        } else {
            format!("{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// Looks an environment variable up. The daemon and the CLI pass the
/// process's (`&|k| std::env::var(k).ok()`): nothing here reads it itself.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Loads a config file: `.conf` files as wg-quick format, anything else as
/// TOML; then applies `PHANTOMMESH_*` environment overrides looked up
/// through `env` (see [`toml_config::apply_env`]).
pub fn load(path: &std::path::Path, env: EnvLookup) -> Result<Config, ConfigError> {
    load_with_warnings(path, env).map(|(cfg, _)| cfg)
}

/// [`load`], also returning warnings the daemon should log: for `.conf`
/// files, the wg-quick keys (DNS, Table, PostUp, ...) that were accepted
/// but are not acted on by the daemon.
pub fn load_with_warnings(
    path: &Path,
    env: EnvLookup,
) -> Result<(Config, Vec<String>), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&file, 0, format!("cannot read config file: {e}")))?;
    let (mut cfg, warnings) = if is_wg_quick(path) {
        let parsed = wgquick::parse(&text, path)?;
        let mut warnings: Vec<String> = parsed.ignored.iter().map(|k| k.warning(&file)).collect();
        // A .conf holds the private key inline: the key-file rule applies.
        warnings.extend(insecure_mode_warning(
            path,
            "config file with a private key",
        ));
        (parsed.config, warnings)
    } else {
        (toml_config::parse(&text, path)?, Vec::new())
    };
    toml_config::apply_env(&mut cfg, env)?;
    Ok((cfg, warnings))
}

/// The key-file rule for other secret files (`.conf` files, admin token
/// files): a file open to group or others gets a warning (as `wg` does for
/// key files; `preflight` fails on it). None when private or unreadable.
pub fn insecure_mode_warning(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{}: {what} is accessible by group or others (mode {mode:o}); chmod 600 it",
            path.display()
        )
    })
}

fn is_wg_quick(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("conf"))
}

// ---- validators shared by both parsers; each returns a message without position ----

pub(crate) const MIN_MTU: u16 = 576;
/// IPv6 requires every link to carry 1280-byte packets (RFC 8200).
pub(crate) const MIN_MTU_IPV6: u16 = 1280;

/// Linux interface names: at most 15 bytes (IFNAMSIZ - 1), from the set
/// wg-quick accepts; "." and ".." are refused by the kernel.
pub(crate) fn validate_interface_name(name: &str) -> Result<(), String> {
    let charset_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'=' | b'+' | b'.' | b'-'));
    if name.is_empty() || name.len() > 15 || !charset_ok || name == "." || name == ".." {
        return Err(format!(
            "invalid interface name {name:?}: 1 to 15 characters from [a-zA-Z0-9_=+.-]"
        ));
    }
    Ok(())
}

/// `addr/prefix`, or a bare address meaning a host route (as `wg` and `ip`
/// read it). Host bits are kept as written.
pub(crate) fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("invalid CIDR {s:?}");
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        // u8::from_str would accept "+8"; insist on plain digits.
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u8>().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
    };
    if prefix > max {
        return Err(bad());
    }
    Ok((ip, prefix))
}

/// Checks an endpoint's shape (`host:port`, `[v6]:port`); the host is
/// resolved later, when the config is applied.
pub(crate) fn validate_endpoint(s: &str) -> Result<(), String> {
    let bad = |why: &str| format!("invalid endpoint {s:?}: {why}");
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| bad("missing ']'"))?;
        // Allow a zone (fe80::1%eth0), as getaddrinfo does.
        let addr = inner.split('%').next().unwrap_or("");
        addr.parse::<Ipv6Addr>()
            .map_err(|_| bad("invalid IPv6 address"))?;
    } else if host.is_empty() {
        return Err(bad("empty host"));
    } else if host.contains(':') {
        return Err(bad("IPv6 addresses must be written [addr]:port"));
    } else if host.contains(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '/') {
        return Err(bad("invalid host"));
    }
    match parse_u64(port) {
        Some(1..=65535) => Ok(()),
        _ => Err(bad("port must be 1..=65535")),
    }
}

/// MTU bounds; the IPv6 minimum applies when any address is IPv6.
pub(crate) fn validate_mtu(mtu: i64, addresses: &[(IpAddr, u8)]) -> Result<u16, String> {
    let v6 = addresses.iter().any(|(a, _)| a.is_ipv6());
    let min = if v6 { MIN_MTU_IPV6 } else { MIN_MTU };
    match u16::try_from(mtu) {
        Ok(m) if m >= min => Ok(m),
        _ if v6 && (i64::from(MIN_MTU)..=65535).contains(&mtu) => Err(format!(
            "mtu {mtu} is below {MIN_MTU_IPV6}, the minimum with an IPv6 address"
        )),
        _ => Err(format!("mtu {mtu} out of range {min}..=65535")),
    }
}

pub(crate) fn parse_key(s: &str, what: &str) -> Result<[u8; 32], String> {
    crate::noise::keys::parse_base64_key(s)
        .ok_or_else(|| format!("invalid {what}: not a base64 key of 32 bytes"))
}

/// Plain decimal digits only (no sign, no spaces), as wg reads numbers.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether `prefix` (address, length) contains `ip`.
pub fn prefix_contains(prefix: (IpAddr, u8), ip: IpAddr) -> bool {
    let (bits, net, addr) = match (prefix.0, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (32, u128::from(u32::from(n)), u128::from(u32::from(a))),
        (IpAddr::V6(n), IpAddr::V6(a)) => (128, u128::from(n), u128::from(a)),
        _ => return false,
    };
    let len = u32::from(prefix.1).min(bits);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    net >> shift == addr >> shift
}

/// A peer's probe address: a unicast address its allowed IPs route to it
/// (anything else would never cross the tunnel to that peer).
pub(crate) fn validate_probe(ip: IpAddr, allowed_ips: &[(IpAddr, u8)]) -> Result<(), String> {
    let special = match ip {
        IpAddr::V4(a) => {
            a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast()
        }
        IpAddr::V6(a) => a.is_unspecified() || a.is_loopback() || a.is_multicast(),
    };
    if special {
        return Err(format!(
            "probe {ip} is not a unicast address a peer can answer from"
        ));
    }
    if !allowed_ips.iter().any(|&p| prefix_contains(p, ip)) {
        return Err(format!(
            "probe {ip} is not in the peer's allowed_ips, so it would not be routed through the tunnel to this peer"
        ));
    }
    Ok(())
}

/// Resolves a key or token file path from the config relative to the
/// config file's directory, so a config works wherever it is started from.
pub(crate) fn resolve_relative(config_path: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    match config_path.parent() {
        Some(dir) if p.is_relative() && !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// The peer whose public key was already seen, if any (index into `peers`).
pub(crate) fn find_duplicate(peers: &[PeerConfig], key: &[u8; 32]) -> Option<usize> {
    peers.iter().position(|p| &p.public_key == key)
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
