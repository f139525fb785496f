//! Trust anchors for the admin clients' TLS: the system's CA certificates
//! or a `--ca-file` PEM bundle. An error is a message for the user (the
//! client reports it as a usage error: nothing was asked of the node yet).
use std::path::Path;
use ureq::tls::Certificate;

/// The system's CA certificates (as OpenSSL finds them; `SSL_CERT_FILE`
/// and `SSL_CERT_DIR` override).
pub(crate) fn system_roots() -> Result<Vec<Certificate<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    let certs: Vec<_> = found
        .certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if certs.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "no system CA certificates found{why}: install ca-certificates or pass --ca-file"
        ));
    }
    Ok(certs)
}

/// Every certificate in a PEM file, each checked to be a usable trust
/// anchor.
pub fn load_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let bad = |why: String| format!("--ca-file {}: {why}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.len() > 16 << 20 {
        return Err(bad("larger than 16 MiB".into()));
    }
    let mut out = Vec::new();
    for c in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let c = c.map_err(|e| bad(format!("not a PEM certificate bundle: {e}")))?;
        let mut store = rustls::RootCertStore::empty();
        store
            .add(c.clone())
            .map_err(|e| bad(format!("certificate {}: {e}", out.len() + 1)))?;
        out.push(Certificate::from_der(c.as_ref()).to_owned());
    }
    if out.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(out)
}
