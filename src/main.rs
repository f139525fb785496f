//! The `phantommesh` binary. Two ways to run the daemon share it:
//! - `phantommesh [-f|--foreground] IFNAME`: wireguard-go's command line
//!   (any first argument that is not a subcommand is taken as this form);
//! - `phantommesh run --config FILE`: the operator's config-file mode;
//!
//! plus the key tools `genkey`, `pubkey`, `genpsk`.
use clap::Parser;
use phantommesh::cli::args::{Cli, Cmd, MeshCmd};
use phantommesh::cli::keys;
use phantommesh::daemon::{run_mode, wg_mode};
use std::io::{Read, Write};

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
            token_file,
        } => match read_token(token_file.as_deref()) {
            Ok(token) => phantommesh::cli::gate::run(&urls, gate.as_deref(), json, token),
            Err(code) => code,
        },
        Cmd::Preflight { config } => phantommesh::cli::preflight::run(config.as_deref()),
        Cmd::Status {
            url,
            json,
            token_file,
        } => match read_token(token_file.as_deref()) {
            Ok(token) => phantommesh::cli::status::run(&url, json, token),
            Err(code) => code,
        },
        Cmd::Mesh {
            cmd:
                MeshCmd::Status {
                    url,
                    json,
                    token_file,
                },
        } => match read_token(token_file.as_deref()) {
            Ok(token) => phantommesh::cli::mesh::run_status(&url, json, token),
            Err(code) => code,
        },
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

fn read_token(path: Option<&std::path::Path>) -> Result<Option<String>, i32> {
    let Some(p) = path else { return Ok(None) };
    match std::fs::read_to_string(p) {
        Ok(t) => Ok(Some(t.trim().to_string())),
        Err(e) => {
            eprintln!("phantommesh: cannot read token file {}: {e}", p.display());
            Err(2)
        }
    }
}

fn print_key(k: [u8; 32]) -> i32 {
    let mut out = std::io::stdout();
    if writeln!(out, "{}", keys::encode_base64_key(&k)).is_err() {
        return 1;
    }
    0
}
