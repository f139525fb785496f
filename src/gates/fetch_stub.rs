//! Test servers for the admin clients' tests: a stub HTTP server (plain or
//! TLS, with a throwaway CA from rcgen) and an HTTP CONNECT proxy, each on
//! a loopback port, each a thread that returns what it saw.
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A canned HTTP/1.1 answer with a Content-Length.
pub fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads a request head (up to the blank line) from `s`.
pub fn read_head(s: &mut dyn Read) -> String {
    let mut req = Vec::new();
    let mut b = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") && req.len() < 64 * 1024 {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(_) => req.push(b[0]),
        }
    }
    String::from_utf8_lossy(&req).into_owned()
}

/// The request path of a head ("GET /x HTTP/1.1" -> "/x").
pub fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

/// Answers `n` connections on `listener`, each with `answer(head)`
/// (wrapped in TLS by `tls` when given); returns the heads seen.
pub fn serve_on(
    listener: TcpListener,
    n: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
    answer: impl Fn(&str) -> Vec<u8> + Send + 'static,
) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..n {
            let Ok((s, _)) = listener.accept() else { break };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut stream: Box<dyn ReadWrite> = match &tls {
                None => Box::new(s),
                Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
                    Ok(c) => Box::new(rustls::StreamOwned::new(c, s)),
                    Err(_) => continue,
                },
            };
            let head = read_head(&mut stream);
            if head.is_empty() {
                // A client that gave up (e.g. refused the certificate).
                seen.push(head);
                continue;
            }
            let resp = answer(&head);
            let _ = stream.write_all(&resp);
            let _ = stream.flush();
            seen.push(head);
        }
        seen
    })
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// [`serve_on`] a fresh 127.0.0.1 port, plain HTTP: (`http://addr`, heads).
pub fn serve_fn(
    n: usize,
    answer: impl Fn(&str) -> Vec<u8> + Send + 'static,
) -> (String, JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (url, serve_on(l, n, None, answer))
}

/// One canned answer per connection, in order.
pub fn serve(responses: Vec<Vec<u8>>) -> (String, JoinHandle<Vec<String>>) {
    let answers = std::sync::Mutex::new(responses.clone().into_iter());
    serve_fn(responses.len(), move |_| {
        answers.lock().unwrap().next().unwrap_or_default()
    })
}

/// A throwaway CA and a server certificate it signed.
pub struct TestPki {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn new(names: &[&str]) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "phantommesh test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        TestPki {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }

    /// Writes the CA certificate to a fresh file; returns its path.
    pub fn ca_file(&self, tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pm-fetch-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.ca_pem).unwrap();
        p
    }

    /// [`serve_on`] a fresh 127.0.0.1 port over TLS: (port, heads).
    pub fn serve(
        &self,
        n: usize,
        answer: impl Fn(&str) -> Vec<u8> + Send + 'static,
    ) -> (u16, JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (port, serve_on(l, n, Some(self.server.clone()), answer))
    }
}

/// An HTTP CONNECT proxy on 127.0.0.1 for `n` connections that tunnels
/// every CONNECT to `backend`, whatever host it names; returns
/// (`http://addr`, the CONNECT request lines seen).
pub fn connect_proxy(n: usize, backend: SocketAddr) -> (String, JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..n {
            let Ok((mut c, _)) = l.accept() else { break };
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let head = read_head(&mut c);
            seen.push(head.lines().next().unwrap_or("").to_string());
            if !head.starts_with("CONNECT ") {
                let _ =
                    c.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            let Ok(mut b) = TcpStream::connect(backend) else {
                let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
                continue;
            };
            let _ = c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let (mut c2, mut b2) = (c.try_clone().unwrap(), b.try_clone().unwrap());
            let up = std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut b2);
                let _ = b2.shutdown(std::net::Shutdown::Write);
            });
            let _ = std::io::copy(&mut b, &mut c);
            let _ = c.shutdown(std::net::Shutdown::Both);
            let _ = up.join();
        }
        seen
    });
    (url, h)
}

/// A `/gates` report as a node serves it (JSON): traffic healthy, P99
/// latency `p99` seconds, the resource and local checks passing.
pub fn gates_report(p99: f64) -> String {
    use crate::gates::{evaluate, GatesConfig, Resources, Summary};
    let mut s = Summary {
        window_seconds: 300.0,
        span_seconds: 300.0,
        attempts: 1000,
        successes: 1000,
        packets: 100_000,
        requests: 60_000,
        latency_samples: 1000,
        p50_seconds: Some(0.004),
        p99_seconds: Some(p99),
        ..Summary::default()
    };
    s.derive_rates();
    let r = Resources {
        memory: Some(0.2),
        cpu: Some(0.1),
    };
    evaluate(&GatesConfig::default(), &s, &r, &[("tun", true)]).to_json()
}
