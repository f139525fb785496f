//! The `phantommesh` binary. Two ways to run the daemon share it:
//! - `phantommesh [-f|--foreground] [--] IFNAME`: wireguard-go's command
//!   line (a first argument that is not a subcommand, nor a typo of one, is
//!   taken as this form: see `cli::dispatch`);
//! - `phantommesh run --config FILE`: the operator's config-file mode;
//!
//! plus the reporting commands (`gate`, `status`, `mesh`, `preflight`,
//! `loadtest`), the key tools `genkey`, `pubkey`, `genpsk`, and
//! `completions` and `manpage`. Exit codes: `cli::exit`.
use clap::{CommandFactory, Parser};
use phantommesh::cli::args::{Cli, Cmd, MeshCmd};
use phantommesh::cli::dispatch::{self, Route};
use phantommesh::cli::exit;
use phantommesh::cli::keys;
use phantommesh::daemon::{run_mode, wg_mode};
use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
    {
        Ok(a) => a,
        Err(bad) => {
            eprintln!("phantommesh: argument {bad:?} is not valid UTF-8");
            std::process::exit(exit::USAGE);
        }
    };
    match dispatch::route(&args) {
        Route::Version => {
            println!(
                "phantommesh v{}\n\nUserspace WireGuard daemon for Linux (wireguard-go compatible).",
                env!("CARGO_PKG_VERSION")
            );
            return;
        }
        Route::Typo { given, suggestion } => {
            eprintln!("{}", dispatch::typo_message(&given, &suggestion));
            std::process::exit(exit::USAGE);
        }
        Route::WireGuardGo(wg_args) => {
            let env_fg = std::env::var("WG_PROCESS_FOREGROUND").is_ok_and(|v| v == "1");
            match wg_mode::parse_args(&wg_args, env_fg) {
                Ok(a) => std::process::exit(wg_mode::main(a)),
                Err(usage) => {
                    eprintln!("{usage}");
                    std::process::exit(exit::USAGE);
                }
            }
        }
        Route::Clap => {}
    }
    let code = match Cli::parse().cmd {
        Cmd::Run {
            config,
            check: true,
            user,
            no_drop_privileges,
            ..
        } => {
            phantommesh::daemon::privdrop::set_cli(user, no_drop_privileges);
            phantommesh::cli::check::run(&config)
        }
        Cmd::Run {
            config,
            log_format,
            user,
            no_drop_privileges,
            ..
        } => match phantommesh::cli::check::validate(&config) {
            Ok(_) => {
                phantommesh::daemon::privdrop::set_cli(user, no_drop_privileges);
                run_mode::main(&config, log_format)
            }
            Err(f) => {
                eprintln!("phantommesh: {f}");
                f.code
            }
        },
        Cmd::Gate {
            urls,
            gate,
            output,
            remote,
        } => phantommesh::cli::gate::run(&urls, gate.as_deref(), output.is_json(), &remote),
        Cmd::Preflight { config, output } => {
            phantommesh::cli::preflight::run(config.as_deref(), output.is_json())
        }
        Cmd::Status {
            url,
            output,
            remote,
        } => phantommesh::cli::status::run(&url, output.is_json(), &remote),
        Cmd::Mesh {
            cmd:
                MeshCmd::Status {
                    url,
                    output,
                    remote,
                },
        } => phantommesh::cli::mesh::run_status(&url, output.is_json(), &remote),
        Cmd::Mesh {
            cmd: MeshCmd::Leave { config },
        } => phantommesh::cli::mesh::run_leave(&config),
        Cmd::Loadtest(args) => phantommesh::loadtest::run(args),
        Cmd::Genkey => print_key(keys::generate_private_key()),
        Cmd::Genpsk => print_key(keys::generate_preshared_key()),
        Cmd::Pubkey => pubkey(),
        Cmd::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "phantommesh", &mut buf);
            write_out("completions", &buf)
        }
        Cmd::Manpage { dir: Some(dir) } => {
            if !dir.is_dir() {
                eprintln!("phantommesh manpage: {} is not a directory", dir.display());
                exit::USAGE
            } else {
                match clap_mangen::generate_to(Cli::command(), &dir) {
                    Ok(()) => exit::OK,
                    Err(e) => {
                        eprintln!("phantommesh manpage: writing into {}: {e}", dir.display());
                        exit::CHECK_FAILED
                    }
                }
            }
        }
        Cmd::Manpage { dir: None } => {
            let mut buf = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut buf) {
                Ok(()) => write_out("manpage", &buf),
                Err(e) => {
                    eprintln!("phantommesh manpage: {e}");
                    exit::CHECK_FAILED
                }
            }
        }
    };
    std::process::exit(code);
}

/// `pubkey`: a private key on stdin, its public key on stdout; input that
/// is not a key is a usage error (exit 2).
fn pubkey() -> i32 {
    let mut s = String::new();
    if std::io::stdin().take(1024).read_to_string(&mut s).is_err() {
        eprintln!("pubkey: cannot read stdin");
        return exit::USAGE;
    }
    match keys::parse_base64_key(&s) {
        Ok(k) => print_key(keys::public_key(&k)),
        Err(_) => {
            eprintln!("pubkey: Key is not the correct length or format");
            exit::USAGE
        }
    }
}

/// Writes generated text to stdout (a closed pipe is an error, not a panic).
fn write_out(what: &str, buf: &[u8]) -> i32 {
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("phantommesh {what}: cannot write: {e}");
            exit::CHECK_FAILED
        }
    }
}

fn print_key(k: [u8; 32]) -> i32 {
    let mut out = std::io::stdout();
    if writeln!(out, "{}", keys::encode_base64_key(&k)).is_err() {
        return exit::CHECK_FAILED;
    }
    exit::OK
}
