//! The command line's clap definitions, apart from `main` so that the
//! completions and the man page (`Cli::command()`) are built from the same
//! source as the parser. Which form an invocation takes (a subcommand, or
//! wireguard-go's `[-f] IFNAME`) is decided before clap, in
//! [`crate::cli::dispatch`].
use crate::cli::logging::LogFormat;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Top-level usage: both ways to run the daemon, then the subcommands.
const USAGE: &str = "phantommesh [-f|--foreground] [--] IFNAME
       phantommesh run --config FILE [--check]
       phantommesh <COMMAND> [OPTIONS]";

const ABOUT: &str = "Userspace WireGuard daemon with go-live gates";

const LONG_ABOUT: &str = "\
Userspace WireGuard daemon with go-live gates.

Two ways to run the daemon:
  phantommesh [-f|--foreground] IFNAME
      wireguard-go's command line (what wg-quick runs with
      WG_QUICK_USERSPACE_IMPLEMENTATION=phantommesh): creates the TUN
      IFNAME, serves /var/run/wireguard/IFNAME.sock for `wg`, and forks
      into the background once the device is ready unless -f is given.
      A first argument that is not a subcommand is taken as IFNAME, but
      one within two edits of a subcommand (`stauts`) is refused as a
      typo (exit 2, nothing created); `phantommesh -- NAME` or
      `phantommesh -f NAME` always takes NAME as the interface.
  phantommesh run --config FILE
      the operator's mode: a TOML config (or a wg-quick .conf); creates
      and configures the interface, re-reads the file on SIGHUP.
      `run --check --config FILE` only validates the file.";

/// Environment variables the binary honours (after the exit codes).
pub const ENV_HELP: &str = "\
Environment:
  PHANTOMMESH_CONFIG             config file of `run`, `mesh leave` (--config)
  PHANTOMMESH_LOG_FORMAT         text|json, log format of `run`
  RUST_LOG, LOG_LEVEL            log level (LOG_LEVEL: verbose|debug|error|silent)
  WG_PROCESS_FOREGROUND=1        wireguard-go form: stay in the foreground (-f)
  WG_TUN_FD, WG_UAPI_FD          wireguard-go form: inherited TUN and UAPI fds
  PHANTOMMESH_ADMIN_LISTEN       admin API address (default 127.0.0.1:9586; off)
  PHANTOMMESH_ADMIN_TOKEN_FILE   admin bearer token file (needed off loopback)
  PHANTOMMESH_ADMIN_ALLOW_UNAUTHENTICATED=1
                                 wireguard-go form: admin API off loopback
                                 without a token (run mode: [admin]
                                 allow_unauthenticated = true)
  PHANTOMMESH_INTERFACE, PHANTOMMESH_PRIVATE_KEY_FILE, PHANTOMMESH_LISTEN_PORT,
  PHANTOMMESH_MTU, PHANTOMMESH_ADDRESSES
                                 override the config's [interface] keys
  PHANTOMMESH_NODE_NAME, PHANTOMMESH_ADVERTISE_ENDPOINT,
  PHANTOMMESH_MESH_ENDPOINTS, PHANTOMMESH_MESH_ALLOWED_IPS
                                 override the config's [mesh] keys
  PHANTOMMESH_GATES=FILE         gates config instead of the built-in one
  PHANTOMMESH_SELF_TEST_INTERVAL seconds between self tunnel tests (60)
  PHANTOMMESH_WORKERS=N          crypto workers (one per core)
  PHANTOMMESH_IO_THREADS=N       I/O threads (1 on up to 2 cores, else 2)
  PHANTOMMESH_UDP_RCVBUF=BYTES   UDP receive buffer (256 KiB)
  PHANTOMMESH_OFFLOAD=off        every kernel offload off
  PHANTOMMESH_PACKET_METRICS=off no packet-path latency sampling";

#[derive(Parser)]
#[command(
    name = "phantommesh",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    override_usage = USAGE,
    after_help = "See `phantommesh --help` for the exit codes and the environment.",
    after_long_help = help_tail(),
    arg_required_else_help = true,
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The exit codes, then the environment (`--help`'s closing part).
pub fn help_tail() -> String {
    format!("{}\n\n{ENV_HELP}", crate::cli::exit::HELP)
}

pub use super::output::{OutputArgs, OutputFormat};

/// Admin base URL help, shared by `status` and `mesh status`.
const URL_HELP: &str = "Admin API base URL of the daemon (http://HOST:PORT or https://HOST:PORT)";

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the daemon from a config file (TOML, or a wg-quick .conf); with
    /// --check, only validate the file.
    #[command(after_help = crate::cli::exit::HELP)]
    Run {
        /// Config file: TOML, or a wg-quick .conf (by its extension).
        #[arg(short, long, env = "PHANTOMMESH_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// Log format: text for terminals, json for log collectors.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PHANTOMMESH_LOG_FORMAT")]
        log_format: LogFormat,
        /// Validate the config (syntax, key and token files readable, the
        /// admin and mesh sections) without touching the system: no
        /// interface, no sockets, no store. Exit 0 or 2.
        #[arg(long)]
        check: bool,
        /// After set-up, drop to USER[:GROUP] (name or number; default
        /// 65534:65534, nobody) keeping only the needed capabilities.
        #[arg(long, value_name = "USER[:GROUP]")]
        user: Option<String>,
        /// Keep running with the starting privileges (no drop).
        #[arg(long)]
        no_drop_privileges: bool,
    },
    /// Check nodes' go-live gates through their admin API and print the
    /// runbook's tables.
    #[command(after_help = crate::cli::exit::HELP)]
    Gate {
        /// Admin base URLs, e.g. http://127.0.0.1:9586 (several: every node).
        /// A name with several addresses (a headless Service such as
        /// http://phantommesh.phantommesh.svc:9586) checks each address.
        #[arg(long = "url", required = true, num_args = 1.., value_name = "URL")]
        urls: Vec<String>,
        /// Only this gate (performance, technical, mesh, ...).
        #[arg(long, value_name = "NAME")]
        gate: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        remote: crate::cli::remote::RemoteArgs,
    },
    /// Pre-deployment checks of this node (TUN, capabilities, config, key,
    /// ports, offloads, MTU), one line each.
    #[command(after_help = crate::cli::exit::HELP)]
    Preflight {
        /// Config file to check (default: /etc/phantommesh/phantommesh.toml
        /// when it exists).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Interface, peers, health and gates of a running daemon, from its
    /// admin API.
    #[command(after_help = crate::cli::exit::HELP)]
    Status {
        #[arg(long, default_value = "http://127.0.0.1:9586", value_name = "URL", help = URL_HELP)]
        url: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        remote: crate::cli::remote::RemoteArgs,
    },
    /// Mesh membership: `mesh status` (this node's view of the mesh, from its
    /// admin API) and `mesh leave` (free this node's address and record).
    Mesh {
        #[command(subcommand)]
        cmd: MeshCmd,
    },
    /// Drive N simulated WireGuard peers against an interface and print the
    /// runbook's Gate 2 table.
    #[command(after_help = crate::cli::exit::HELP)]
    Loadtest(crate::loadtest::LoadtestArgs),
    /// Print a new private key (base64), like `wg genkey`.
    Genkey,
    /// Read a private key on stdin, print its public key, like `wg pubkey`.
    Pubkey,
    /// Print a new preshared key, like `wg genpsk`.
    Genpsk,
    /// Print a shell completion script, e.g.
    /// `phantommesh completions bash > /etc/bash_completion.d/phantommesh`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, e.g.
    /// `phantommesh manpage > /usr/local/share/man/man1/phantommesh.1`.
    Manpage {
        /// Write phantommesh.1 and one page per subcommand
        /// (phantommesh-gate.1, ...) into this existing directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum MeshCmd {
    /// Members as a table (name, address, endpoint, handshake age, probe
    /// RTT, ok); exit 1 if a member is unhealthy or the store is down.
    #[command(after_help = crate::cli::exit::HELP)]
    Status {
        #[arg(long, default_value = "http://127.0.0.1:9586", value_name = "URL", help = URL_HELP)]
        url: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        remote: crate::cli::remote::RemoteArgs,
    },
    /// Free this node's tunnel address and record in the store (before
    /// removing the node for good).
    #[command(after_help = crate::cli::exit::HELP)]
    Leave {
        /// The node's config file (its [mesh] section names the store).
        #[arg(short, long, env = "PHANTOMMESH_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand and every option of every subcommand, recursively.
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path} --{id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                out.push(p.clone());
            }
            walk(sub, &p, out);
        }
    }

    #[test]
    fn every_option_and_command_has_a_description() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "phantommesh", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn help_shows_both_forms_the_exit_codes_and_the_environment() {
        let help = Cli::command().render_long_help().to_string();
        for want in [
            "phantommesh [-f|--foreground] [--] IFNAME",
            "phantommesh run --config FILE",
            "Exit codes",
            "3  a node cannot be reached",
            "PHANTOMMESH_ADMIN_LISTEN",
            "PHANTOMMESH_ADMIN_ALLOW_UNAUTHENTICATED",
            "WG_PROCESS_FOREGROUND",
            "did you mean",
        ] {
            assert!(
                help.contains(want) || help.contains(&want.replace("did you mean", "typo")),
                "{want:?} missing in --help:\n{help}"
            );
        }
    }

    #[test]
    fn json_and_output_json_are_the_same() {
        let parse = |a: &[&str]| match Cli::try_parse_from(a).unwrap().cmd {
            Cmd::Status { output, .. } => output.is_json(),
            _ => unreachable!(),
        };
        assert!(!parse(&["phantommesh", "status"]));
        assert!(parse(&["phantommesh", "status", "--json"]));
        assert!(parse(&["phantommesh", "status", "-o", "json"]));
        assert!(parse(&["phantommesh", "status", "--output=json"]));
        assert!(!parse(&["phantommesh", "status", "-o", "table"]));
        let e = Cli::try_parse_from(["phantommesh", "status", "-o", "yaml"])
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), crate::cli::exit::USAGE);
    }
}
