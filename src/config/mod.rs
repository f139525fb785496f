//! Configuration files: the daemon's TOML config and wg-quick `.conf` files.
//! Pure parsers: text in, a typed [`Config`] or a positioned error out.
pub mod toml_config;
pub mod wgquick;

use std::net::IpAddr;
use std::path::PathBuf;

/// Where a key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Base64 key given inline (wg-quick `.conf`).
    Inline([u8; 32]),
    /// A file holding the base64 key (TOML `private_key_file`).
    File(PathBuf),
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: [u8; 32],
    pub preshared_key: Option<KeySource>,
    /// `host:port` or `[v6]:port`, resolved when applied.
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<(IpAddr, u8)>,
    pub persistent_keepalive: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `host:port`, or "off".
    pub listen: String,
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: "127.0.0.1:9586".into(), token_file: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub interface: InterfaceConfig,
    pub peers: Vec<PeerConfig>,
    pub admin: AdminConfig,
}

/// A config error that names the file, the line (1-based; 0 when not tied to
/// a line) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Loads a config file: `.conf` files as wg-quick format, anything else as
/// TOML; then applies `PHANTOMMESH_*` environment overrides (see
/// [`toml_config::apply_env`]).
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let _ = path;
    todo!()
}
