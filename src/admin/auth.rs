//! Who may ask the admin API what.
//!
//! Health endpoints are always open (the kubelet has no token). With a
//! token configured, `/tunnel-test` needs it everywhere (it triggers work
//! and forces handshakes). Off loopback, `/metrics` and `/mesh` need it too:
//! they publish this node's and its peers' public keys and endpoints, and a
//! peer's public key is what makes MAC1 a barrier against handshake floods.
//! `/gates` answers aggregate verdicts only (rates, latencies, loss; no key,
//! no address), and rollout tools' webhooks poll it, so it stays open.
//!
//! Listening off loopback without a token is refused unless the operator
//! says `allow_unauthenticated`, so a node IP never serves keys by accident.
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::path::Path;
use subtle::ConstantTimeEq;

/// The token file in wg-mode (run mode reads it as an override of
/// `[admin] token_file`).
pub const TOKEN_FILE_ENV: &str = "PHANTOMMESH_ADMIN_TOKEN_FILE";
/// wg-mode's `[admin] allow_unauthenticated = true` ("1" or "true").
pub const ALLOW_UNAUTHENTICATED_ENV: &str = "PHANTOMMESH_ADMIN_ALLOW_UNAUTHENTICATED";

/// Whether an address is reachable only from this host.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// What the server needs before it may listen on `listen`: Ok(None) when
/// it is fine, Ok(Some(warning)) when unauthenticated access off loopback
/// was allowed explicitly, Err(message) when a token is missing. `keys`
/// names the settings in the mode's own words.
pub fn listen_rule(
    listen: Option<SocketAddr>,
    has_token: bool,
    allow_unauthenticated: bool,
    keys: &SettingNames,
) -> Result<Option<String>, String> {
    let Some(addr) = listen.filter(|a| !is_loopback(a)) else {
        return Ok(None);
    };
    if has_token {
        return Ok(None);
    }
    if allow_unauthenticated {
        return Ok(Some(format!(
            "admin API on {addr} (not loopback) without a token ({} is set): \
             anyone who can reach it reads /metrics and /mesh (this node's and \
             its peers' public keys) and runs /tunnel-test",
            keys.allow
        )));
    }
    Err(format!(
        "admin API on {addr} is not a loopback address and has no token: set {} \
         to a file holding a bearer token, or set {} to serve it without one \
         (or listen on 127.0.0.1)",
        keys.token, keys.allow
    ))
}

/// How a mode names its token and opt-out settings in messages.
pub struct SettingNames {
    pub token: &'static str,
    pub allow: &'static str,
}

pub const RUN_MODE_NAMES: SettingNames = SettingNames {
    token: "[admin] token_file (or PHANTOMMESH_ADMIN_TOKEN_FILE)",
    allow: "[admin] allow_unauthenticated = true",
};

pub const WG_MODE_NAMES: SettingNames = SettingNames {
    token: "PHANTOMMESH_ADMIN_TOKEN_FILE",
    allow: "PHANTOMMESH_ADMIN_ALLOW_UNAUTHENTICATED=1",
};

/// Reads a bearer token file (as the admin server's `token_file`):
/// trimmed, at most 4 KiB, never echoed in errors.
pub fn token_from_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4097).read_to_string(&mut text))
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    if text.len() > 4096 {
        return Err(format!("{}: token file larger than 4 KiB", path.display()));
    }
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("{}: token file is empty", path.display()));
    }
    Ok(t.to_string())
}

/// Reads the admin token file (trimmed, non-empty, at most 4 KiB), logging
/// the key-file mode warning when it is open to group or others. Errors
/// name the file, never its content.
pub fn load_token(path: &Path) -> Result<Vec<u8>, String> {
    if let Some(w) = crate::config::insecure_mode_warning(path, "admin token file") {
        tracing::warn!("{w}");
    }
    token_from_file(path)
        .map(String::into_bytes)
        .map_err(|e| format!("admin token file {e}"))
}

/// Whether an environment flag is on ("1", "true", "yes").
pub fn env_flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
    })
}

/// Checks `Authorization: Bearer <token>` against `want`, in constant
/// time; true when no token is configured.
pub fn bearer_ok(want: Option<&[u8]>, headers: &HeaderMap) -> bool {
    let Some(want) = want else { return true };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(got.as_bytes().ct_eq(want))
}

/// 401 with the challenge; the body never repeats what was sent.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        "{\"ok\":false,\"error\":\"bearer token required\"}\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn loopback_needs_nothing_and_other_addresses_need_a_token() {
        let n = &RUN_MODE_NAMES;
        assert_eq!(listen_rule(a("127.0.0.1:9586"), false, false, n), Ok(None));
        assert_eq!(listen_rule(a("[::1]:9586"), false, false, n), Ok(None));
        assert_eq!(
            listen_rule(a("[::ffff:127.0.0.1]:9586"), false, false, n),
            Ok(None)
        );
        assert_eq!(listen_rule(None, false, false, n), Ok(None), "off");
        for addr in ["10.1.2.3:9586", "0.0.0.0:9586", "[::]:9586"] {
            let e = listen_rule(a(addr), false, false, n).unwrap_err();
            assert!(e.contains("[admin] token_file"), "{e}");
            assert!(e.contains("allow_unauthenticated"), "{e}");
            assert_eq!(listen_rule(a(addr), true, false, n), Ok(None));
            let w = listen_rule(a(addr), false, true, n).unwrap().unwrap();
            assert!(w.contains("public keys"), "{w}");
        }
        let e = listen_rule(a("10.0.0.1:1"), false, false, &WG_MODE_NAMES).unwrap_err();
        assert!(e.contains("PHANTOMMESH_ADMIN_TOKEN_FILE"), "{e}");
    }

    #[test]
    fn bearer_check() {
        let mut h = HeaderMap::new();
        assert!(bearer_ok(None, &h));
        assert!(!bearer_ok(Some(b"s3cret"), &h));
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(!bearer_ok(Some(b"s3cret"), &h));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(bearer_ok(Some(b"s3cret"), &h));
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!bearer_ok(Some(b"s3cret"), &h));
    }

    #[test]
    fn env_flags() {
        assert!(env_flag(Some("1")) && env_flag(Some("true")) && env_flag(Some("YES")));
        assert!(!env_flag(None) && !env_flag(Some("0")) && !env_flag(Some("")));
    }
}
