//! `phantommesh [-f|--foreground] IFNAME`: wireguard-go's command line, so
//! `wg-quick` (WG_QUICK_USERSPACE_IMPLEMENTATION) and scripts written for
//! wireguard-go run unchanged.
use super::inherited_fd::{validate_tun_fd, validate_uapi_fd};
use super::{wait, EXIT_SETUP_FAILED};
use crate::cli::daemonize::{daemonize, Readiness};
use crate::cli::logging::{self, LogFormat};
use crate::device::Device;
use crate::io::linux_bind::LinuxBind;
use crate::io::linux_tun::{self, LinuxTun};
use crate::io::Tun;
use crate::uapi::server::UapiServer;
use std::sync::Arc;

/// MTU of a fresh interface, as wireguard-go's DefaultMTU.
pub const DEFAULT_MTU: u16 = 1420;

/// Parsed wireguard-go-style arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct WgArgs {
    pub foreground: bool,
    pub ifname: String,
}

pub const USAGE: &str = "Usage: phantommesh [-f/--foreground] INTERFACE-NAME\n       phantommesh run --config FILE\n       phantommesh genkey | pubkey | genpsk\n       phantommesh --version";

/// Parses `[-f|--foreground] IFNAME` (WG_PROCESS_FOREGROUND=1 also means -f).
pub fn parse_args(args: &[String], env_foreground: bool) -> Result<WgArgs, String> {
    let (foreground, rest) = match args {
        [f, rest @ ..] if f == "-f" || f == "--foreground" => (true, rest),
        rest => (env_foreground, rest),
    };
    match rest {
        [name] if !name.starts_with('-') => Ok(WgArgs {
            foreground,
            ifname: name.clone(),
        }),
        _ => Err(USAGE.to_string()),
    }
}

/// Runs the daemon; returns the process exit code.
pub fn main(args: WgArgs) -> i32 {
    // Before the fork: a bad value is a usage error the caller sees.
    let opts = match super::options::device_options(&Default::default(), |k| std::env::var(k).ok())
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("phantommesh: {e}");
            return crate::cli::exit::USAGE;
        }
    };
    // Fork before any thread exists; the parent waits for our verdict.
    let readiness = if args.foreground {
        None
    } else {
        match daemonize() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("phantommesh: cannot daemonize: {e}");
                return EXIT_SETUP_FAILED;
            }
        }
    };
    logging::init(LogFormat::Text);
    tracing::info!("tuning: {}", super::options::describe(&opts));
    match start(&args.ifname, opts) {
        Ok((dev, uapi)) => {
            if let Some(r) = readiness {
                r.ready();
                quiet_unless_asked();
            }
            tracing::info!(interface = %args.ifname, "device started");
            let (listen, token) = admin_from_env(|k| std::env::var(k).ok());
            let gates = crate::admin::load_gates(std::env::var(crate::admin::GATES_ENV).ok())
                .unwrap_or_else(|e| {
                    tracing::error!("{e}; using the built-in gates");
                    crate::gates::GatesConfig::load(None).expect("built-in gates parse")
                });
            let admin = super::start_admin(&dev, dev.tun_name(), listen, token, gates);
            // Configuration arrives over UAPI in this mode.
            admin
                .config_applied
                .store(true, std::sync::atomic::Ordering::Relaxed);
            // Set up: drop privileges (env PHANTOMMESH_USER and
            // PHANTOMMESH_DROP_PRIVILEGES; no files are re-read here and no
            // peer has a probe address).
            super::privdrop::drop_after_setup(
                super::privdrop::options(None, None),
                dev.listen_port(),
                &[],
                false,
                uapi.path(),
                None,
            );
            let reason = wait(&dev, &uapi, || {
                tracing::info!("SIGHUP ignored without --config")
            });
            tracing::info!(?reason, "stopping");
            dev.close();
            super::privdrop::release_uapi_socket(uapi.path());
            drop(uapi);
            0
        }
        Err(msg) => {
            tracing::error!("{msg}");
            fail(readiness, &msg)
        }
    }
}

/// The admin address and token from the environment. This mode must never
/// take the tunnel down over its admin API (wg-quick and scripts start it):
/// a bad address, an unreadable token file or a non-loopback address
/// without a token or the opt-out disables the server, logged as an error.
fn admin_from_env(
    get: impl Fn(&str) -> Option<String>,
) -> (Option<std::net::SocketAddr>, Option<Vec<u8>>) {
    use crate::admin::auth;
    let listen =
        get(crate::admin::ADMIN_ENV).unwrap_or_else(|| crate::admin::DEFAULT_LISTEN.into());
    let disabled = |e: String| {
        tracing::error!("{e}; admin server disabled");
        (None, None)
    };
    let listen = match crate::admin::parse_listen(&listen) {
        Ok(l) => l,
        Err(e) => return disabled(e),
    };
    let token = match get(auth::TOKEN_FILE_ENV).filter(|p| !p.is_empty()) {
        Some(p) => match auth::load_token(std::path::Path::new(&p)) {
            Ok(t) => Some(t),
            Err(e) => return disabled(format!("{}: {e}", auth::TOKEN_FILE_ENV)),
        },
        None => None,
    };
    let allow = auth::env_flag(get(auth::ALLOW_UNAUTHENTICATED_ENV).as_deref());
    match auth::listen_rule(listen, token.is_some(), allow, &auth::WG_MODE_NAMES) {
        Ok(warning) => {
            if let Some(w) = warning {
                tracing::warn!("{w}");
            }
            (listen, token)
        }
        Err(e) => disabled(e),
    }
}

/// A backgrounded daemon writes to the terminal that started it only when
/// asked to with LOG_LEVEL or RUST_LOG, as wireguard-go does; otherwise its
/// output goes to /dev/null so `wg-quick up` leaves a quiet terminal.
fn quiet_unless_asked() {
    let asked = |v: &str| std::env::var(v).is_ok_and(|x| !x.is_empty() && x != "silent");
    if asked("LOG_LEVEL") || asked("RUST_LOG") {
        return;
    }
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the standard descriptors; `null` stays open
        // until both copies exist.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}

fn fail(readiness: Option<Readiness>, msg: &str) -> i32 {
    if let Some(r) = readiness {
        r.failed(msg);
    }
    EXIT_SETUP_FAILED
}

/// Opens the TUN (or takes WG_TUN_FD), starts the device and the UAPI socket
/// (or takes WG_UAPI_FD).
pub fn start(
    ifname: &str,
    opts: crate::device::options::DeviceOptions,
) -> Result<(Arc<Device>, UapiServer), String> {
    // Both inherited descriptors are checked before anything is set up.
    let uapi_fd = fd_from_env("WG_UAPI_FD")?;
    if let Some(fd) = uapi_fd {
        validate_uapi_fd(fd).map_err(|e| format!("WG_UAPI_FD={fd}: {e}"))?;
    }
    let tun: Arc<dyn Tun> = match fd_from_env("WG_TUN_FD")? {
        Some(fd) => {
            validate_tun_fd(fd).map_err(|e| format!("WG_TUN_FD={fd}: {e}"))?;
            Arc::new(
                LinuxTun::from_fd(fd, Some(ifname)).map_err(|e| format!("WG_TUN_FD={fd}: {e}"))?,
            )
        }
        None => {
            let t = crate::io::create_tun(ifname, opts.offload)
                .map_err(|e| format!("cannot create TUN {ifname}: {e}"))?;
            if let Err(e) = linux_tun::set_mtu(t.name(), DEFAULT_MTU.into()) {
                tracing::warn!(error = %e, "cannot set MTU");
            }
            t
        }
    };
    let real_name = tun.name().to_string();
    let bind = LinuxBind::with_options(super::options::udp_options(&opts));
    let dev = Device::with_options(tun, Arc::new(bind), opts);
    dev.rebind(0, 0).map_err(|e| e.message)?;
    let uapi = match uapi_fd {
        Some(fd) => UapiServer::from_fd(fd, &real_name),
        None => UapiServer::bind(&real_name),
    }
    .map_err(|e| format!("cannot open UAPI socket: {e}"))?;
    uapi.serve(dev.clone())
        .map_err(|e| format!("cannot serve UAPI: {e}"))?;
    Ok((dev, uapi))
}

fn fd_from_env(var: &str) -> Result<Option<i32>, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v
            .parse::<i32>()
            .map(Some)
            .map_err(|_| format!("{var}={v:?} is not a file descriptor")),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn admin_settings_from_the_environment() {
        let dir = std::env::temp_dir().join(format!("pm-wgadmin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tok = dir.join("token");
        std::fs::write(&tok, "s3cret\n").unwrap();
        let tok = tok.display().to_string();
        let env = |pairs: &'static [(&'static str, &'static str)], tok: Option<String>| {
            move |k: &str| {
                if k == crate::admin::auth::TOKEN_FILE_ENV {
                    return tok.clone();
                }
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let addr = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            admin_from_env(env(&[], None)),
            (addr("127.0.0.1:9586"), None)
        );
        let off = &[("PHANTOMMESH_ADMIN_LISTEN", "10.9.0.1:9586")];
        assert_eq!(
            admin_from_env(env(off, None)),
            (None, None),
            "no token: off"
        );
        assert_eq!(
            admin_from_env(env(off, Some(tok.clone()))),
            (addr("10.9.0.1:9586"), Some(b"s3cret".to_vec()))
        );
        assert_eq!(
            admin_from_env(env(off, Some(dir.join("missing").display().to_string()))),
            (None, None),
            "unreadable token file: off"
        );
        let allowed = &[
            ("PHANTOMMESH_ADMIN_LISTEN", "10.9.0.1:9586"),
            ("PHANTOMMESH_ADMIN_ALLOW_UNAUTHENTICATED", "1"),
        ];
        assert_eq!(
            admin_from_env(env(allowed, None)),
            (addr("10.9.0.1:9586"), None)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_wireguard_go_command_lines() {
        assert_eq!(
            parse_args(&s(&["wg0"]), false),
            Ok(WgArgs {
                foreground: false,
                ifname: "wg0".into()
            })
        );
        assert_eq!(
            parse_args(&s(&["-f", "wg0"]), false),
            Ok(WgArgs {
                foreground: true,
                ifname: "wg0".into()
            })
        );
        assert!(
            parse_args(&s(&["--foreground", "wg0"]), false)
                .unwrap()
                .foreground
        );
        assert!(
            parse_args(&s(&["wg0"]), true).unwrap().foreground,
            "WG_PROCESS_FOREGROUND"
        );
        assert!(parse_args(&s(&[]), false).is_err());
        assert!(parse_args(&s(&["-x", "wg0"]), false).is_err());
        assert!(parse_args(&s(&["wg0", "extra"]), false).is_err());
    }
}
