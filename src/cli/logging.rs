//! tracing set-up: human-readable on a terminal, JSON lines for Kubernetes.
//! Level: `RUST_LOG` if set, else wireguard-go's `LOG_LEVEL`
//! (verbose|debug -> debug, error -> error, silent -> off), else info.
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The filter directive for a `LOG_LEVEL` value (wireguard-go's names);
/// unset or unknown values give `info`.
pub fn log_level_directive(log_level: Option<&str>) -> &'static str {
    match log_level.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("verbose" | "debug") => "debug",
        Some("error") => "error",
        Some("silent") => "off",
        _ => "info",
    }
}

/// Builds the filter from the two variables' values. A `RUST_LOG` that does
/// not parse falls back to `LOG_LEVEL`, with the reason returned for the
/// caller to report.
pub fn build_filter(
    rust_log: Option<&str>,
    log_level: Option<&str>,
) -> (EnvFilter, Option<String>) {
    let mut problem = None;
    if let Some(r) = rust_log.filter(|r| !r.trim().is_empty()) {
        match EnvFilter::try_new(r) {
            Ok(f) => return (f, None),
            Err(e) => problem = Some(format!("ignoring invalid RUST_LOG {r:?}: {e}")),
        }
    }
    (EnvFilter::new(log_level_directive(log_level)), problem)
}

/// Installs the global subscriber, writing to stderr. A second call (or a
/// subscriber already installed by a test harness) is a no-op.
pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let log_level = std::env::var("LOG_LEVEL").ok();
    let (filter, problem) = build_filter(rust_log.as_deref(), log_level.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
            .is_ok(),
        LogFormat::Json => builder.json().with_ansi(false).try_init().is_ok(),
    };
    if let (true, Some(p)) = (installed, problem) {
        tracing::warn!("{p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn log_level_mapping() {
        assert_eq!(log_level_directive(Some("verbose")), "debug");
        assert_eq!(log_level_directive(Some("debug")), "debug");
        assert_eq!(log_level_directive(Some("Debug")), "debug");
        assert_eq!(log_level_directive(Some("error")), "error");
        assert_eq!(log_level_directive(Some("silent")), "off");
        assert_eq!(log_level_directive(Some("loud")), "info");
        assert_eq!(log_level_directive(None), "info");
    }

    #[test]
    fn rust_log_wins_over_log_level() {
        let (f, p) = build_filter(Some("phantommesh=trace"), Some("silent"));
        assert_eq!(f.to_string(), "phantommesh=trace");
        assert!(p.is_none());
        let (f, _) = build_filter(None, Some("silent"));
        assert_eq!(f.to_string(), "off");
        let (f, _) = build_filter(Some("  "), Some("error"));
        assert_eq!(f.to_string(), "error");
    }

    #[test]
    fn invalid_rust_log_falls_back_with_a_reason() {
        let (f, p) = build_filter(Some("foo=notalevel"), Some("debug"));
        assert_eq!(f.to_string(), "debug");
        assert!(p.unwrap().contains("RUST_LOG"));
    }

    /// Runs [`init`] in a fresh copy of this test binary (the global
    /// subscriber can only be set once per process) and returns its stderr.
    fn run_child(format: &str, env: &[(&str, &str)]) -> String {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "cli::logging::tests::child_entry",
            "--ignored",
            "--nocapture",
        ])
        .arg("--test-threads=1")
        .env("PM_LOGGING_TEST_FORMAT", format)
        .env_remove("RUST_LOG")
        .env_remove("LOG_LEVEL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "child failed: {out:?}");
        String::from_utf8(out.stderr).unwrap()
    }

    #[test]
    #[ignore = "helper run by the tests below in a child process"]
    fn child_entry() {
        let Ok(format) = std::env::var("PM_LOGGING_TEST_FORMAT") else {
            return;
        };
        init(if format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        });
        tracing::debug!(marker = "pm-debug", "debug line");
        tracing::info!(marker = "pm-info", "info line");
        tracing::error!(marker = "pm-error", "error line");
    }

    #[test]
    fn json_lines_on_stderr_at_info_by_default() {
        let err = run_child("json", &[]);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("pm-")).collect();
        assert_eq!(lines.len(), 2, "{err}");
        for l in &lines {
            assert!(l.starts_with('{') && l.ends_with('}'), "not JSON: {l}");
            assert!(!l.contains('\x1b'), "ANSI in JSON: {l}");
        }
        assert!(lines[0].contains("\"level\":\"INFO\"") && lines[0].contains("pm-info"));
        assert!(lines[1].contains("\"level\":\"ERROR\""));
    }

    #[test]
    fn text_without_ansi_when_not_a_terminal_and_log_level_applies() {
        let err = run_child("text", &[("LOG_LEVEL", "verbose")]);
        assert!(err.contains("pm-debug") && err.contains("pm-info"), "{err}");
        assert!(!err.contains('\x1b'), "ANSI escapes on a pipe: {err:?}");
        let err = run_child("text", &[("LOG_LEVEL", "error")]);
        assert!(
            !err.contains("pm-info") && err.contains("pm-error"),
            "{err}"
        );
        let err = run_child("text", &[("LOG_LEVEL", "silent"), ("RUST_LOG", "debug")]);
        assert!(err.contains("pm-debug"), "RUST_LOG must win: {err}");
    }
}
