//! `phantommesh loadtest`: N simulated WireGuard peers (default 1,000)
//! against a target interface, and the runbook's Gate 2 table.
//!
//! Each simulated peer has its own keys and its own UDP source port and is
//! a real initiator built on the protocol core ([`sim`]). Peers are spread
//! over worker threads, one per core ([`worker`]), each polling its shard's
//! sockets. The peers are registered on the target through its UAPI socket
//! and removed at the end ([`target`]), or written to a `wg addconf` file
//! for a remote target. After a handshake, each peer sends probes through
//! the tunnel at `--rate` per second (ICMP echo to the target's interface
//! address by default, so the target kernel answers). The result is
//! evaluated with the same gate code as `/gates` ([`output`]), plus the
//! handshake requirement and the soak checks ([`soak`]); `--report` writes
//! an HTML page ([`page`]) with charts ([`report`], [`chart`]).
//!
//! Exit codes ([`crate::cli::exit`]): 0 pass, 1 a gate or check failed,
//! 2 the run could not be set up (options, target, UAPI socket), 130 on a
//! second Ctrl-C.
pub mod chart;
pub mod net;
pub mod output;
pub mod page;
pub mod probe;
pub mod report;
pub mod setup;
pub mod sim;
pub mod soak;
pub mod stats;
pub mod target;
pub mod worker;

mod conclude;
mod monitor;
mod runner;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const EXIT_PASS: i32 = crate::cli::exit::OK;
pub const EXIT_FAIL: i32 = crate::cli::exit::CHECK_FAILED;
pub const EXIT_SETUP: i32 = crate::cli::exit::USAGE;

fn duration(s: &str) -> Result<Duration, String> {
    setup::duration_arg(s)
}

/// Command-line arguments of `phantommesh loadtest`. The options live
/// behind a box (and are reached through `Deref`) so the CLI's subcommand
/// enum stays small.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadtestArgs {
    #[command(flatten)]
    pub options: Box<Options>,
}

impl std::ops::Deref for LoadtestArgs {
    type Target = Options;
    fn deref(&self) -> &Options {
        &self.options
    }
}

/// The options of `phantommesh loadtest`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// UAPI socket of the target interface (/var/run/wireguard/IFNAME.sock):
    /// peers are registered there and removed at the end; the target's key,
    /// port and process come from it.
    #[arg(long)]
    pub uapi: Option<PathBuf>,
    /// The target's WireGuard listen address (default: 127.0.0.1 and the
    /// listen port the UAPI reports).
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Option<String>,
    /// The target's public key (base64), when there is no --uapi.
    #[arg(long)]
    pub target_key: Option<String>,
    /// Address to probe through the tunnel (default: the range's first host).
    #[arg(long)]
    pub target_ip: Option<std::net::IpAddr>,
    /// Test range the peers take their addresses from.
    #[arg(long, default_value = "10.250.0.0/16")]
    pub range: String,
    /// Simulated peers.
    #[arg(long, default_value_t = 1000)]
    pub peers: usize,
    /// Load time after the ramp (any length: 30s, 10m, 72h).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub duration: Duration,
    /// Peers start evenly over this time.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub ramp: Duration,
    /// Probes per second per peer.
    #[arg(long, default_value_t = 25.0)]
    pub rate: f64,
    /// Probe payload bytes.
    #[arg(long, default_value_t = 56)]
    pub probe_size: usize,
    /// A probe without a reply after this long is lost.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub probe_timeout: Duration,
    /// Probe with UDP datagrams to this echo service behind the target
    /// instead of ICMP echo.
    #[arg(long, value_name = "ADDR:PORT")]
    pub udp_echo: Option<SocketAddr>,
    /// Bulk packets per second per peer (echoed like probes; for
    /// throughput in bytes).
    #[arg(long, default_value_t = 0.0)]
    pub bulk: f64,
    /// Payload bytes of a bulk packet.
    #[arg(long, default_value_t = 1280)]
    pub bulk_size: usize,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Local source addresses, used in turn by the peers.
    #[arg(long, value_delimiter = ',')]
    pub bind: Vec<std::net::IpAddr>,
    /// Derive the peers' keys from this text, so `--write-peers` and a later
    /// run agree (test keys only: anyone with the seed has them).
    #[arg(long)]
    pub seed: Option<String>,
    /// Write the peers as a `wg addconf` file (and FILE.remove.sh) and exit.
    #[arg(long, value_name = "FILE")]
    pub write_peers: Option<PathBuf>,
    /// Leave the peers registered on the target afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Gates config (default: the built-in config/gates.toml).
    #[arg(long, value_name = "FILE")]
    pub gates: Option<PathBuf>,
    /// Gate to evaluate.
    #[arg(long, default_value = "performance")]
    pub gate: String,
    /// Override the gate's success rate target (`99.9%` or `>= 99.9%`).
    #[arg(long)]
    pub success_target: Option<String>,
    /// Override the gate's error rate target (`0.1%`).
    #[arg(long)]
    pub error_target: Option<String>,
    /// Override the gate's P50 target (`2ms`).
    #[arg(long)]
    pub p50_target: Option<String>,
    /// Override the gate's P99 target (`5ms`).
    #[arg(long)]
    pub p99_target: Option<String>,
    /// Override the gate's throughput target (`20000/s`).
    #[arg(long)]
    pub throughput_target: Option<String>,
    /// Every first handshake must complete within this time after the ramp.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub handshake_deadline: Duration,
    /// Soak interval: a line and a target sample this often.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub interval: Duration,
    /// Memory baseline time (default: the ramp plus one interval, and at
    /// least the ramp plus REKEY_AFTER_TIME plus 10 s, so every peer's
    /// first rekey is done).
    #[arg(long, value_parser = duration)]
    pub warmup: Option<Duration>,
    /// Allowed growth of the target's memory after warm-up, percent.
    #[arg(long, default_value_t = 10.0)]
    pub mem_growth: f64,
    /// Allowed slope of the target's memory after warm-up (least-squares
    /// fit, judged over at least 10 minutes), percent of the baseline per
    /// hour.
    #[arg(long, default_value_t = 5.0)]
    pub mem_slope: f64,
    /// Descriptors the target may gain after warm-up.
    #[arg(long, default_value_t = 2)]
    pub fd_slack: u64,
    /// The target's process (default: the process owning the UAPI socket).
    #[arg(long)]
    pub target_pid: Option<u32>,
    /// Print the result as JSON on stdout (interval lines go to stderr);
    /// the same as `--output json`.
    #[arg(long)]
    pub json: bool,
    /// Output format: table (the Gate 2 table) or json (see --json).
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<crate::cli::output::OutputFormat>,
    /// Write a self-contained HTML report with charts.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Without a terminal, a progress line on stderr this often (0: none).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub progress_every: Duration,
}

pub fn run(mut args: LoadtestArgs) -> i32 {
    if args.output == Some(crate::cli::output::OutputFormat::Json) {
        args.options.json = true;
    }
    match runner::run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("phantommesh loadtest: {e}");
            EXIT_SETUP
        }
    }
}
