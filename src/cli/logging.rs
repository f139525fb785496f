//! tracing set-up: human-readable on a terminal, JSON lines for Kubernetes.
//! Level: `RUST_LOG` if set, else wireguard-go's `LOG_LEVEL`
//! (verbose|debug -> debug, error -> error, silent -> off), else info.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat) {
    let _ = format;
    todo!()
}
