//! Which proxy, if any, the admin clients use for a URL: the environment
//! variables curl reads, with curl's `NO_PROXY` matching.
//!
//! - `https://` URLs: `https_proxy`, then `HTTPS_PROXY`;
//! - `http://` URLs: `http_proxy`, then `HTTP_PROXY`;
//! - either, when the above are unset: `all_proxy`, then `ALL_PROXY`.
//!
//! Empty values count as unset. `no_proxy` (then `NO_PROXY`) is a list of
//! entries separated by commas or white space, compared without regard to
//! case:
//! - `*` alone: no proxy for any host;
//! - a name: that host and every name under it (`example.com` and
//!   `.example.com` both match `example.com` and `a.example.com`; so does
//!   `*.example.com`);
//! - an IP address (`10.0.0.5`, `::1` or `[::1]`): that address;
//! - a CIDR block (`10.0.0.0/8`, `fd00::/8`): the IP addresses in it.
//!
//! Unlike curl, loopback hosts (`localhost`, `*.localhost`, 127.0.0.0/8,
//! `::1`) are never proxied: a proxy cannot reach this machine's loopback.
use std::net::IpAddr;

/// One `NO_PROXY` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    All,
    /// Lower-case, without leading dots or `*.` and without a trailing dot.
    Domain(String),
    Ip(IpAddr),
    Cidr(IpAddr, u8),
}

/// The proxy settings read from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// (variable name, value) for https:// URLs.
    pub https: Option<(String, String)>,
    /// (variable name, value) for http:// URLs.
    pub http: Option<(String, String)>,
    no_proxy: Vec<Entry>,
}

impl ProxyEnv {
    /// Reads the process environment.
    pub fn from_env() -> ProxyEnv {
        ProxyEnv::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Reads the variables through `get` (for tests).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> ProxyEnv {
        let first = |names: &[&str]| {
            names.iter().find_map(|n| {
                get(n)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .map(|v| (n.to_string(), v))
            })
        };
        let all = first(&["all_proxy", "ALL_PROXY"]);
        ProxyEnv {
            https: first(&["https_proxy", "HTTPS_PROXY"]).or_else(|| all.clone()),
            http: first(&["http_proxy", "HTTP_PROXY"]).or(all),
            no_proxy: first(&["no_proxy", "NO_PROXY"])
                .map(|(_, v)| parse_no_proxy(&v))
                .unwrap_or_default(),
        }
    }

    /// The (variable, proxy URL) to use for `host` over `https` or plain
    /// http; `None` for a direct connection.
    pub fn for_host(&self, https: bool, host: &str) -> Option<(&str, &str)> {
        let (var, value) = if https { &self.https } else { &self.http }.as_ref()?;
        if is_loopback_host(host) || self.bypass(host) {
            return None;
        }
        Some((var, value))
    }

    /// Whether `NO_PROXY` names `host`.
    pub fn bypass(&self, host: &str) -> bool {
        let host = normalize(host);
        let ip = host.parse::<IpAddr>().ok();
        self.no_proxy.iter().any(|e| match (e, ip) {
            (Entry::All, _) => true,
            (Entry::Ip(a), Some(ip)) => canonical(*a) == canonical(ip),
            (Entry::Cidr(net, len), Some(ip)) => in_cidr(ip, *net, *len),
            (Entry::Domain(d), None) => {
                host == *d
                    || (host.ends_with(d.as_str()) && host[..host.len() - d.len()].ends_with('.'))
            }
            _ => false,
        })
    }
}

/// `localhost`, a name under `.localhost` (RFC 6761), or a loopback IP.
pub fn is_loopback_host(host: &str) -> bool {
    let h = normalize(host);
    if h == "localhost" || h.ends_with(".localhost") {
        return true;
    }
    h.parse::<IpAddr>()
        .is_ok_and(|ip| canonical(ip).is_loopback())
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they map.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_canonical(),
        v4 => v4,
    }
}

fn normalize(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_no_proxy(v: &str) -> Vec<Entry> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            if s == "*" {
                return Some(Entry::All);
            }
            if let Some((net, len)) = s.split_once('/') {
                let net: IpAddr = normalize(net).parse().ok()?;
                let len: u8 = len.parse().ok()?;
                let max = if canonical(net).is_ipv4() { 32 } else { 128 };
                return (len <= max).then_some(Entry::Cidr(net, len));
            }
            let n = normalize(s);
            if let Ok(ip) = n.parse::<IpAddr>() {
                return Some(Entry::Ip(ip));
            }
            let d = n.trim_start_matches("*.").trim_start_matches('.');
            (!d.is_empty()).then(|| Entry::Domain(d.to_string()))
        })
        .collect()
}

fn in_cidr(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (canonical(ip), canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = len.min(32);
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyEnv::from_lookup(&move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn variables_by_scheme_lower_case_first() {
        let e = env(&[
            ("HTTPS_PROXY", "http://upper:3128"),
            ("https_proxy", "http://lower:3128"),
            ("HTTP_PROXY", "http://plain:8080"),
        ]);
        assert_eq!(
            e.for_host(true, "node1"),
            Some(("https_proxy", "http://lower:3128"))
        );
        assert_eq!(
            e.for_host(false, "node1"),
            Some(("HTTP_PROXY", "http://plain:8080"))
        );
        // ALL_PROXY only fills in; an empty value is unset.
        let e = env(&[
            ("ALL_PROXY", "http://all:1"),
            ("https_proxy", " "),
            ("http_proxy", "http://h:2"),
        ]);
        assert_eq!(e.for_host(true, "n"), Some(("ALL_PROXY", "http://all:1")));
        assert_eq!(e.for_host(false, "n"), Some(("http_proxy", "http://h:2")));
        assert_eq!(env(&[]).for_host(true, "n"), None);
        assert_eq!(
            env(&[("HTTP_PROXY", "http://p:1")]).for_host(true, "n"),
            None
        );
    }

    #[test]
    fn loopback_is_never_proxied() {
        let e = env(&[("HTTPS_PROXY", "http://p:1"), ("HTTP_PROXY", "http://p:1")]);
        for h in [
            "localhost",
            "LOCALHOST.",
            "admin.localhost",
            "127.0.0.1",
            "127.3.2.1",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(e.for_host(true, h), None, "{h} proxied");
            assert_eq!(e.for_host(false, h), None, "{h} proxied");
        }
        for h in [
            "10.0.0.1",
            "node1",
            "localhost.example.com",
            "::2",
            "128.0.0.1",
        ] {
            assert!(e.for_host(true, h).is_some(), "{h} not proxied");
        }
    }

    #[test]
    fn no_proxy_matches_as_curl() {
        let e = env(&[
            ("HTTPS_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                "example.com, .svc.cluster.local,*.internal 10.1.2.3,192.168.0.0/16,[fd00::1],fd10::/16,",
            ),
        ]);
        for h in [
            "example.com",
            "EXAMPLE.COM.",
            "a.b.example.com",
            "svc.cluster.local",
            "pm.ns.svc.cluster.local",
            "x.internal",
            "internal",
            "10.1.2.3",
            "192.168.44.5",
            "::ffff:192.168.0.1",
            "fd00::1",
            "[fd10:1::5]",
        ] {
            assert!(e.bypass(h), "{h} not bypassed");
            assert_eq!(e.for_host(true, h), None);
        }
        for h in [
            "badexample.com",
            "example.com.evil",
            "com",
            "10.1.2.4",
            "192.169.0.1",
            "fd00::2",
            "fd11::1",
            "node1",
        ] {
            assert!(!e.bypass(h), "{h} bypassed");
            assert!(e.for_host(true, h).is_some());
        }
        // Lower case wins over upper case; `*` is everything.
        let e = env(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("no_proxy", "*"),
            ("NO_PROXY", "nothing"),
        ]);
        assert!(e.bypass("anything.at.all") && e.bypass("10.0.0.1"));
        // Entries that are not hosts are ignored, not fatal.
        let e = env(&[("NO_PROXY", "10.0.0.0/99,/8,*.,.,x/y")]);
        assert!(!e.bypass("10.0.0.1") && !e.bypass("x"));
        // /0 matches every address of the family only.
        let e = env(&[("NO_PROXY", "0.0.0.0/0")]);
        assert!(e.bypass("203.0.113.9") && !e.bypass("2001:db8::1") && !e.bypass("name"));
    }
}
