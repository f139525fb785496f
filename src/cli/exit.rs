//! The exit codes, the same for every command (`--help` and the README list
//! them from [`HELP`]):
//!
//! - 0 [`OK`]: all is well;
//! - 1 [`CHECK_FAILED`]: a check failed (a gate, a health check, a preflight
//!   check, an unhealthy mesh member; for the daemon: it could not start);
//! - 2 [`USAGE`]: usage or configuration error (bad arguments, a bad URL, an
//!   unreadable token or config file, an invalid config, a token the node
//!   refuses, a gate or mesh the node does not have);
//! - 3 [`UNREACHABLE`]: a node cannot be reached (connection refused,
//!   timeout, or an answer that is not its admin API's).
//!
//! When a command asks several nodes, the most serious code wins:
//! 2 over 3 over 1 over 0 ([`worst`]). A node that cannot be asked must
//! never read as a plain failure, let alone a pass.
use crate::gates::fetch::{ErrorKind, FetchError};

pub const OK: i32 = 0;
pub const CHECK_FAILED: i32 = 1;
pub const USAGE: i32 = 2;
pub const UNREACHABLE: i32 = 3;

/// The exit-code paragraph of `--help` (and the README).
pub const HELP: &str = "\
Exit codes (every command):
  0  ok
  1  a check failed (gate, health check, preflight check, mesh member;
     the daemon: it could not start)
  2  usage or configuration error (bad arguments or URL, unreadable token
     or config file, invalid config, token refused, no such gate or mesh)
  3  a node cannot be reached (refused, timed out, or not an admin API)";

/// How serious a code is, for [`worst`]: unknown codes rank highest.
fn rank(code: i32) -> u8 {
    match code {
        OK => 0,
        CHECK_FAILED => 1,
        UNREACHABLE => 2,
        USAGE => 3,
        _ => 4,
    }
}

/// The more serious of two exit codes: 2 over 3 over 1 over 0.
pub fn worst(a: i32, b: i32) -> i32 {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// The exit code of a request that failed before an HTTP answer: a
/// request that cannot be made as asked (a bad URL, CA file or proxy
/// variable, a token refused over plain HTTP) is the caller's mistake (2);
/// anything on the way (DNS, connect, TLS, timeout, a garbled answer) is
/// an unreachable node (3).
pub fn of_fetch_error(e: &FetchError) -> i32 {
    match e.kind {
        ErrorKind::Usage => USAGE,
        ErrorKind::Unreachable => UNREACHABLE,
    }
}

/// The exit code of an HTTP answer that is not the one asked for: a
/// refused token is a configuration error (2); anything else means the
/// node could not be asked (3).
pub fn of_http_status(status: u16) -> i32 {
    match status {
        401 | 403 => USAGE,
        _ => UNREACHABLE,
    }
}

/// An error with the exit code it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(USAGE, message)
    }
    pub fn unreachable(message: impl Into<String>) -> Failure {
        Failure::new(UNREACHABLE, message)
    }
}

impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Failure {
        Failure::new(of_fetch_error(&e), e.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_orders_usage_over_unreachable_over_failed_over_ok() {
        let order = [OK, CHECK_FAILED, UNREACHABLE, USAGE];
        for (i, &a) in order.iter().enumerate() {
            for (j, &b) in order.iter().enumerate() {
                let want = order[i.max(j)];
                assert_eq!(worst(a, b), want, "worst({a}, {b})");
            }
        }
        assert_eq!(worst(USAGE, 130), 130);
        assert_eq!(
            [CHECK_FAILED, OK, UNREACHABLE, CHECK_FAILED]
                .into_iter()
                .fold(OK, worst),
            UNREACHABLE
        );
    }

    #[test]
    fn fetch_errors_map_to_usage_or_unreachable() {
        let bad = FetchError::usage("x://: only http:// and https:// URLs");
        assert_eq!(of_fetch_error(&bad), USAGE);
        let e = FetchError::unreachable("cannot connect to 127.0.0.1:9: refused");
        assert_eq!(of_fetch_error(&e), UNREACHABLE, "{e}");
        let f = Failure::from(e.clone());
        assert_eq!((f.code, f.message), (UNREACHABLE, e.to_string()));
    }

    #[test]
    fn http_statuses_map_to_usage_or_unreachable() {
        assert_eq!(of_http_status(401), USAGE);
        assert_eq!(of_http_status(403), USAGE);
        for s in [404, 500, 502, 503, 200] {
            assert_eq!(of_http_status(s), UNREACHABLE, "{s}");
        }
    }

    #[test]
    fn help_lists_every_code() {
        for code in ["0  ok", "1  a check failed", "2  usage", "3  a node"] {
            assert!(HELP.contains(code), "{code}");
        }
    }
}
