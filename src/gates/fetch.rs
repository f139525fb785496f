//! The admin clients' HTTP(S) GET (`phantommesh gate`, `status`,
//! `mesh status`): ureq over rustls (the ring provider), blocking, every
//! exchange under one deadline, the body bounded.
//!
//! - `https://` is verified against the system's CA certificates, or only
//!   against the `--ca-file` PEM bundle when one is given (as curl's
//!   `--cacert`). Certificate verification cannot be turned off.
//! - Proxies come from the environment ([`fetch_proxy`](super::fetch_proxy):
//!   `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, as curl reads them), through
//!   HTTP CONNECT.
//! - A bearer token is never sent over plain HTTP to anything but a
//!   loopback address unless the caller allows it (`--insecure`).
//! - Redirects are not followed (a token must not follow one).
//!
//! Errors carry an [`ErrorKind`]: the node could not be reached (exit 3),
//! or the request itself is wrong (exit 2).
pub use super::fetch_proxy::{is_loopback_host, ProxyEnv};
pub use super::fetch_trust::load_ca_file;
use super::fetch_trust::system_roots;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// The admin server's default port (prometheus_wireguard_exporter's), for
/// `http://` URLs without one; `https://` defaults to 443.
pub const DEFAULT_PORT: u16 = 9586;
/// Largest response body accepted.
pub const MAX_RESPONSE: usize = 4 << 20;

/// What went wrong, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Name resolution, connect, proxy, TLS handshake (an untrusted or
    /// mismatched certificate too), timeout, or an answer that is not
    /// HTTP or too large: the node's state is unknown.
    Unreachable,
    /// The request cannot be made as asked: a bad URL, an unreadable CA
    /// file, a bad proxy variable, a token refused over plain HTTP.
    Usage,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    pub kind: ErrorKind,
    pub message: String,
}

impl FetchError {
    pub fn usage(message: impl Into<String>) -> FetchError {
        FetchError {
            kind: ErrorKind::Usage,
            message: message.into(),
        }
    }
    pub fn unreachable(message: impl Into<String>) -> FetchError {
        FetchError {
            kind: ErrorKind::Unreachable,
            message: message.into(),
        }
    }
}

/// `http://` or `https://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// `http[s]://host[:port][/path]`, also `host:port` (plain http).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Starts with '/'.
    pub path: String,
    /// Connect to this address instead of resolving `host` (one address
    /// of a name with several); the Host header and TLS name stay `host`.
    pub connect_to: Option<IpAddr>,
}

impl Url {
    /// Parses a URL; a missing port is [`DEFAULT_PORT`] for http, 443 for
    /// https.
    pub fn parse(s: &str) -> Result<Url, FetchError> {
        let bad = |why: &str| FetchError::usage(format!("invalid URL {s:?}: {why}"));
        let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if s.contains("://") {
            return Err(bad("only http:// and https:// URLs are supported"));
        } else {
            (Scheme::Http, s)
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        if authority.contains('@') || authority.contains(char::is_whitespace) {
            return Err(bad("invalid host"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address in [ ]"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(bad("IPv6 addresses must be written [addr]:port"))
                }
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let host_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':');
        if !host.bytes().all(host_ok) {
            return Err(bad("invalid host"));
        }
        let port = match port {
            None if scheme == Scheme::Https => 443,
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(bad("port must be 1..=65535")),
            },
        };
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if path
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80)
        {
            return Err(bad("invalid path"));
        }
        Ok(Url {
            scheme,
            host,
            port,
            path,
            connect_to: None,
        })
    }

    /// The same node's `/gates`: a base URL gets `/gates` appended, a URL
    /// already naming `/gates` is kept.
    pub fn gates(mut self) -> Url {
        let (p, query) = match self.path.split_once('?') {
            Some((p, q)) => (p.to_string(), format!("?{q}")),
            None => (self.path.clone(), String::new()),
        };
        let p = p.trim_end_matches('/');
        self.path = if p.ends_with("/gates") {
            format!("{p}{query}")
        } else {
            format!("{p}/gates{query}")
        };
        self
    }

    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::Https
    }

    /// `host:port`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without the [`connect_to`](Url::connect_to) note.
    pub fn as_uri(&self) -> String {
        let scheme = if self.is_https() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }

    /// Whether the connection goes to a loopback address.
    pub fn is_loopback(&self) -> bool {
        match self.connect_to {
            Some(ip) => super::fetch_proxy::canonical(ip).is_loopback(),
            None => is_loopback_host(&self.host),
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_uri())?;
        match self.connect_to {
            Some(ip) => write!(f, " (at {ip})"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// How the client trusts servers and treats tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// PEM bundle to trust instead of the system's CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Allow a bearer token over plain HTTP to a non-loopback address.
    /// Never turns certificate verification off.
    pub insecure: bool,
}

/// A configured client: trust anchors, the token rule, the proxies.
#[derive(Debug)]
pub struct Client {
    /// From `--ca-file`, or the system's, loaded on first https use.
    roots: OnceLock<Result<Arc<Vec<Certificate<'static>>>, FetchError>>,
    insecure: bool,
    proxies: ProxyEnv,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl Client {
    /// Reads the CA file now (a bad one is an error before any request)
    /// and the proxy variables.
    pub fn new(opts: &ClientOptions) -> Result<Client, FetchError> {
        Client::with_proxies(opts, ProxyEnv::from_env())
    }

    /// [`Client::new`] with the proxy settings given.
    pub fn with_proxies(opts: &ClientOptions, proxies: ProxyEnv) -> Result<Client, FetchError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = OnceLock::new();
        if let Some(path) = &opts.ca_file {
            let certs = load_ca_file(path).map_err(FetchError::usage)?;
            let _ = roots.set(Ok(Arc::new(certs)));
        }
        Ok(Client {
            roots,
            insecure: opts.insecure,
            proxies,
            provider,
        })
    }

    /// The proxy variable and URL used for `url`, if any.
    pub fn proxy_for(&self, url: &Url) -> Option<(&str, &str)> {
        if url.is_loopback() {
            return None;
        }
        self.proxies.for_host(url.is_https(), &url.host)
    }

    /// GETs `url` with an optional bearer token; `timeout` bounds the
    /// whole exchange (resolve, connect, proxy, TLS, request, body).
    pub fn get(
        &self,
        url: &Url,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Response, FetchError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        if let Some(t) = token {
            if t.bytes().any(|b| b.is_ascii_control() || b >= 0x80) {
                return Err(FetchError::usage(
                    "the token contains control or non-ASCII characters",
                ));
            }
            if !url.is_https() && !url.is_loopback() && !self.insecure {
                return Err(FetchError::usage(format!(
                    "{url}: refusing to send the bearer token over plain HTTP to a \
                     non-loopback address; use https:// or pass --insecure"
                )));
            }
        }
        let proxy = match self.proxy_for(url) {
            None => None,
            Some((var, value)) => {
                if url.connect_to.is_some() {
                    return Err(FetchError::usage(format!(
                        "{url}: one address of a name cannot be asked through the proxy in {var}"
                    )));
                }
                Some(parse_proxy(var, value)?)
            }
        };
        let roots = match (url.is_https(), &proxy) {
            (false, None) => Arc::new(Vec::new()),
            _ => self
                .roots
                .get_or_init(|| system_roots().map(Arc::new).map_err(FetchError::usage))
                .clone()?,
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(roots))
            .unversioned_rustls_crypto_provider(self.provider.clone())
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(concat!("phantommesh/", env!("CARGO_PKG_VERSION")))
            .accept("application/json")
            .max_response_header_size(64 * 1024)
            .proxy(proxy)
            .tls_config(tls)
            .build();
        let agent = match url.connect_to {
            Some(ip) => ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::new(),
                Pinned(SocketAddr::new(ip, url.port)),
            ),
            None => ureq::Agent::new_with_config(config),
        };
        let mut req = agent.get(url.as_uri());
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().map_err(|e| classify(url, e))?;
        let status = resp.status().as_u16();
        if let Some(n) = resp
            .body()
            .content_length()
            .filter(|n| *n > MAX_RESPONSE as u64)
        {
            return Err(FetchError::unreachable(format!(
                "{url}: answer of {n} bytes, larger than {MAX_RESPONSE}"
            )));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE as u64)
            .read_to_vec()
            .map_err(|e| classify(url, e))?;
        Ok(Response { status, body })
    }
}

/// GETs `url` with a default client (system roots, proxies from the
/// environment, no plain-HTTP token beyond loopback).
pub fn get(url: &Url, token: Option<&str>, timeout: Duration) -> Result<Response, FetchError> {
    Client::new(&ClientOptions::default())?.get(url, token, timeout)
}

/// Resolves every name to one fixed address (the request's host is the
/// only name resolved without a proxy).
#[derive(Debug)]
struct Pinned(SocketAddr);

impl ureq::unversioned::resolver::Resolver for Pinned {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let mut v = self.empty();
        v.push(self.0);
        Ok(v)
    }
}

fn parse_proxy(var: &str, value: &str) -> Result<ureq::Proxy, FetchError> {
    let lower = value.to_ascii_lowercase();
    let value = if lower.contains("://") {
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(FetchError::usage(format!(
                "{var}: only http:// and https:// proxies are supported"
            )));
        }
        value.to_string()
    } else {
        format!("http://{value}")
    };
    // The value may hold a password: name the variable, not the value.
    ureq::Proxy::new(&value).map_err(|_| FetchError::usage(format!("{var}: not a valid proxy URL")))
}

/// A ureq error as a [`FetchError`] of the right kind.
fn classify(url: &Url, e: ureq::Error) -> FetchError {
    use ureq::Error as E;
    let unreachable = |what: String| FetchError::unreachable(format!("{url}: {what}"));
    match e {
        E::BadUri(_) | E::Http(_) | E::InvalidProxyUrl | E::RequireHttpsOnly(_) => {
            FetchError::usage(format!("{url}: {e}"))
        }
        E::HostNotFound => unreachable(format!("cannot resolve {}", url.host)),
        E::Timeout(t) => unreachable(format!("timed out ({t})")),
        E::ConnectionFailed => unreachable(format!("cannot connect to {}", url.authority())),
        E::ConnectProxyFailed(why) => unreachable(format!("the proxy refused: {why}")),
        E::Tls(why) => unreachable(format!("TLS: {why}")),
        E::Rustls(r) => unreachable(format!("TLS handshake failed: {r}")),
        E::Pem(p) => FetchError::usage(format!("{url}: bad PEM: {p}")),
        E::BodyExceedsLimit(n) => unreachable(format!("answer larger than {n} bytes")),
        E::LargeResponseHeader(..) => unreachable("response headers too large".into()),
        E::Protocol(p) => unreachable(format!("malformed HTTP response: {p}")),
        E::Io(io) => {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                unreachable(format!("TLS handshake failed: {r}"))
            } else {
                use std::io::ErrorKind as K;
                unreachable(match io.kind() {
                    K::TimedOut | K::WouldBlock => "timed out".into(),
                    K::ConnectionRefused
                    | K::ConnectionReset
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::AddrNotAvailable => {
                        format!("cannot connect to {}: {io}", url.authority())
                    }
                    _ => io.to_string(),
                })
            }
        }
        other => unreachable(other.to_string()),
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
