//! The command line's clap definitions, apart from `main` so that the
//! completions and the man page (`Cli::command()`) are built from the same
//! source as the parser.
use crate::cli::logging::LogFormat;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "phantommesh",
    version,
    about = "Userspace WireGuard daemon with go-live gates"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the daemon from a config file (TOML, or a wg-quick .conf).
    Run {
        #[arg(short, long, env = "PHANTOMMESH_CONFIG")]
        config: PathBuf,
        /// Log format: text for terminals, json for log collectors.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PHANTOMMESH_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Check a node's go-live gates through its admin API and print the
    /// runbook's table; exit 1 if any gate fails, 2 if a node is unreachable.
    Gate {
        /// Admin base URLs, e.g. http://127.0.0.1:9586 (several: every node).
        /// A name with several addresses (a headless Service such as
        /// http://phantommesh.phantommesh.svc:9586) checks each address.
        #[arg(long = "url", required = true, num_args = 1..)]
        urls: Vec<String>,
        /// Only this gate.
        #[arg(long)]
        gate: Option<String>,
        #[arg(long)]
        json: bool,
        /// File holding the admin bearer token.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Pre-deployment checks of this node, one line each; exit 1 on any failure.
    Preflight {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Interface, peers, health and gates of a running daemon, from its admin API.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:9586")]
        url: String,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Mesh membership: `mesh status` (this node's view of the mesh, from its
    /// admin API) and `mesh leave` (free this node's address and record).
    Mesh {
        #[command(subcommand)]
        cmd: MeshCmd,
    },
    /// Drive N simulated WireGuard peers against an interface and print the
    /// runbook's Gate 2 table.
    Loadtest(crate::loadtest::LoadtestArgs),
    /// Print a new private key (base64), like `wg genkey`.
    Genkey,
    /// Read a private key on stdin, print its public key, like `wg pubkey`.
    Pubkey,
    /// Print a new preshared key, like `wg genpsk`.
    Genpsk,
}

#[derive(Subcommand)]
pub enum MeshCmd {
    /// Members as a table (name, address, endpoint, handshake age, probe
    /// RTT, ok); exit 1 if a member is unhealthy or the store is down, 2 if
    /// the daemon is unreachable or has no mesh.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:9586")]
        url: String,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Free this node's tunnel address and record in the store (before
    /// removing the node for good).
    Leave {
        #[arg(short, long, env = "PHANTOMMESH_CONFIG")]
        config: PathBuf,
    },
}
