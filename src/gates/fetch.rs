//! A minimal blocking HTTP/1.1 GET over `std::net`, for `phantommesh gate`
//! (and the load test) to read a node's `/gates`. The admin server speaks
//! plain HTTP on loopback or the pod IP, so there is no TLS; a TLS client
//! would pull in far more than this needs. Every step has a deadline and
//! the response size is bounded.
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The admin server's default port (prometheus_wireguard_exporter's).
pub const DEFAULT_PORT: u16 = 9586;
/// Largest response accepted.
pub const MAX_RESPONSE: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL {0:?}: {1}")]
    BadUrl(String, String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("{0}: {1}")]
    Io(String, String),
    #[error("{0}: malformed HTTP response: {1}")]
    Malformed(String, String),
}

/// `http://host[:port][/path]`, also `host:port` without a scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Starts with '/'.
    pub path: String,
}

impl Url {
    /// Parses a URL; a missing port is the admin server's [`DEFAULT_PORT`].
    pub fn parse(s: &str) -> Result<Url, FetchError> {
        let bad = |why: &str| FetchError::BadUrl(s.to_string(), why.to_string());
        let rest = if let Some(r) = s.strip_prefix("http://") {
            r
        } else if s.starts_with("https://") {
            return Err(bad(
                "https is not supported: the admin server speaks plain HTTP",
            ));
        } else if s.contains("://") {
            return Err(bad("only http:// URLs are supported"));
        } else {
            s
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
        let port = match port {
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
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("invalid path"));
        }
        Ok(Url { host, port, path })
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

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GETs `url` with an optional bearer token; `timeout` bounds the whole
/// exchange (connect, send, receive).
pub fn get(url: &Url, token: Option<&str>, timeout: Duration) -> Result<Response, FetchError> {
    let deadline = Instant::now() + timeout;
    let name = url.to_string();
    let io = |e: std::io::Error| FetchError::Io(name.clone(), e.to_string());
    let token = token.map(str::trim).filter(|t| !t.is_empty());
    if token.is_some_and(|t| t.bytes().any(|b| b.is_ascii_control())) {
        return Err(FetchError::Io(
            name,
            "token contains control characters".into(),
        ));
    }
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| FetchError::Connect(url.authority(), e.to_string()))?
        .collect();
    let mut last_err = String::from("no address");
    let mut stream = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last_err = "timed out".into();
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    let mut stream = stream.ok_or_else(|| FetchError::Connect(url.authority(), last_err))?;
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: phantommesh-gate\r\nAccept: application/json\r\nConnection: close\r\n",
        url.path,
        url.authority()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    let left = |d: Instant| {
        let l = d.saturating_duration_since(Instant::now());
        if l.is_zero() {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))
        } else {
            Ok(l)
        }
    };
    stream
        .set_write_timeout(Some(left(deadline).map_err(io)?))
        .map_err(io)?;
    stream.write_all(req.as_bytes()).map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        stream
            .set_read_timeout(Some(left(deadline).map_err(io)?))
            .map_err(io)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(FetchError::Io(name, "timed out".into()))
            }
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            break;
        }
        if buf.len() + n > MAX_RESPONSE {
            return Err(FetchError::Malformed(
                name,
                format!("larger than {MAX_RESPONSE} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_response(&buf).map_err(|m| FetchError::Malformed(name, m))
}

/// Parses a complete HTTP/1.x response (read until the server closed).
pub fn parse_response(buf: &[u8]) -> Result<Response, String> {
    let head_end = find(buf, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "headers are not text")?;
    let body = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP/1 status line: {:?}",
            truncate(status_line)
        ));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("bad status line: {:?}", truncate(status_line)))?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for l in lines {
        let (k, v) = l.split_once(':').ok_or("bad header line")?;
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        } else if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse().map_err(|_| "bad Content-Length")?);
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n)
            .ok_or("body shorter than Content-Length")?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n").ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        // A peer-sent size near usize::MAX must not overflow the bound.
        let end = size.checked_add(2).ok_or("bad chunk size")?;
        if b.len() < end || &b[size..end] != b"\r\n" {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[end..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:9586").unwrap().gates();
        assert_eq!(u.to_string(), "http://127.0.0.1:9586/gates");
        let u = Url::parse("http://node1/").unwrap().gates();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("node1", 9586, "/gates")
        );
        let u = Url::parse("10.0.0.5:9000/gates").unwrap().gates();
        assert_eq!(u.to_string(), "http://10.0.0.5:9000/gates");
        let u = Url::parse("http://[::1]:9586/admin/?x=1").unwrap().gates();
        assert_eq!(u.to_string(), "http://[::1]:9586/admin/gates?x=1");
        for bad in [
            "https://n:1",
            "ftp://n",
            "http://",
            "http://::1:9586",
            "http://n:0",
            "http://n:+5",
            "http://n:70000",
            "http://u@n",
            "http://[::1",
            "http://n/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(Url::parse("https://x")
            .unwrap_err()
            .to_string()
            .contains("plain HTTP"));
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let r = parse_response(
            b"HTTP/1.1 503 Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\nto the end").unwrap();
        assert_eq!(r.body, b"to the end");
        for bad in [
            &b"garbage"[..],
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            // usize::MAX: the bound check must not overflow (a panic before).
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab\r\n0\r\n\r\n",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
