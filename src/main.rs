//! The `phantommesh` binary. Two ways to run the daemon share it:
//! - `phantommesh [-f|--foreground] IFNAME`: wireguard-go's command line
//!   (any first argument that is not a subcommand is taken as this form);
//! - `phantommesh run --config FILE`: the operator's config-file mode;
//!
//! plus the key tools `genkey`, `pubkey`, `genpsk`.
use clap::{Parser, Subcommand};
use phantommesh::cli::keys;
use phantommesh::cli::logging::LogFormat;
use phantommesh::cli::remote::RemoteArgs;
use phantommesh::daemon::{run_mode, wg_mode};
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "phantommesh",
    version,
    about = "Userspace WireGuard daemon with go-live gates"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon from a config file (TOML, or a wg-quick .conf).
    Run {
        #[arg(short, long, env = "PHANTOMMESH_CONFIG")]
        config: PathBuf,
        /// Log format: text for terminals, json for log collectors.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PHANTOMMESH_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Check a node's go-live gates through its admin API and print the
    /// runbook's table; exit 1 if any gate fails, 2 on a usage or config
    /// error, 3 if a node is unreachable.
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
        #[command(flatten)]
        remote: RemoteArgs,
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
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Mesh membership: `mesh status` (this node's view of the mesh, from its
    /// admin API) and `mesh leave` (free this node's address and record).
    Mesh {
        #[command(subcommand)]
        cmd: MeshCmd,
    },
    /// Drive N simulated WireGuard peers against an interface and print the
    /// runbook's Gate 2 table.
    Loadtest(phantommesh::loadtest::LoadtestArgs),
    /// Print a new private key (base64), like `wg genkey`.
    Genkey,
    /// Read a private key on stdin, print its public key, like `wg pubkey`.
    Pubkey,
    /// Print a new preshared key, like `wg genpsk`.
    Genpsk,
}

#[derive(Subcommand)]
enum MeshCmd {
    /// Members as a table (name, address, endpoint, handshake age, probe
    /// RTT, ok); exit 1 if a member is unhealthy or the store is down, 2 on
    /// a usage or config error, 3 if the daemon is unreachable or has no mesh.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:9586")]
        url: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Free this node's tunnel address and record in the store (before
    /// removing the node for good).
    Leave {
        #[arg(short, long, env = "PHANTOMMESH_CONFIG")]
        config: PathBuf,
    },
}

const SUBCOMMANDS: &[&str] = &[
    "run",
    "gate",
    "preflight",
    "status",
    "mesh",
    "loadtest",
    "genkey",
    "pubkey",
    "genpsk",
    "help",
    "--help",
    "-h",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let first = args.first().map(String::as_str);
    if matches!(first, Some("--version" | "-v" | "-V" | "version")) {
        println!(
            "phantommesh v{}\n\nUserspace WireGuard daemon for Linux (wireguard-go compatible).",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    if !first.is_some_and(|f| SUBCOMMANDS.contains(&f)) {
        let env_fg = std::env::var("WG_PROCESS_FOREGROUND").is_ok_and(|v| v == "1");
        match wg_mode::parse_args(&args, env_fg) {
            Ok(a) => std::process::exit(wg_mode::main(a)),
            Err(usage) => {
                eprintln!("{usage}");
                std::process::exit(1);
            }
        }
    }
    let code = match Cli::parse().cmd {
        Cmd::Run { config, log_format } => run_mode::main(&config, log_format),
        Cmd::Gate {
            urls,
            gate,
            json,
            remote,
        } => phantommesh::cli::gate::run(&urls, gate.as_deref(), json, &remote),
        Cmd::Preflight { config } => phantommesh::cli::preflight::run(config.as_deref()),
        Cmd::Status { url, json, remote } => phantommesh::cli::status::run(&url, json, &remote),
        Cmd::Mesh {
            cmd: MeshCmd::Status { url, json, remote },
        } => phantommesh::cli::mesh::run_status(&url, json, &remote),
        Cmd::Mesh {
            cmd: MeshCmd::Leave { config },
        } => phantommesh::cli::mesh::run_leave(&config),
        Cmd::Loadtest(args) => phantommesh::loadtest::run(args),
        Cmd::Genkey => print_key(keys::generate_private_key()),
        Cmd::Genpsk => print_key(keys::generate_preshared_key()),
        Cmd::Pubkey => {
            let mut s = String::new();
            if std::io::stdin().take(1024).read_to_string(&mut s).is_err() {
                eprintln!("pubkey: cannot read stdin");
                1
            } else {
                match keys::parse_base64_key(&s) {
                    Ok(k) => print_key(keys::public_key(&k)),
                    Err(_) => {
                        eprintln!("pubkey: Key is not the correct length or format");
                        1
                    }
                }
            }
        }
    };
    std::process::exit(code);
}

fn print_key(k: [u8; 32]) -> i32 {
    let mut out = std::io::stdout();
    if writeln!(out, "{}", keys::encode_base64_key(&k)).is_err() {
        return 1;
    }
    0
}
