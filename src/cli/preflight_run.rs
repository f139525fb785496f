//! `phantommesh preflight`'s runner: gathers the facts from the live
//! system, runs every check and prints the lines (or the JSON document).
use super::*;

/// Looks an environment variable up.
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String>>;

/// Where the runner looks; tests point these at their own files.
pub struct Options {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// Checked when `config` is not given and this file exists.
    pub default_config: PathBuf,
    /// Environment lookup (PHANTOMMESH_ADMIN_LISTEN without a config).
    pub env: EnvLookup,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: None,
            default_config: PathBuf::from(DEFAULT_CONFIG),
            env: Box::new(|k| std::env::var(k).ok()),
        }
    }
}

/// Entry point of `phantommesh preflight`.
pub fn run(config: Option<&Path>, json: bool) -> i32 {
    let opts = Options {
        config: config.map(Path::to_path_buf),
        ..Options::default()
    };
    let stdout = io::stdout();
    run_with(&opts, json, &mut stdout.lock())
}

/// The exit code of a set of checks: 2 when the config could not be
/// loaded (a configuration error), 1 when another check failed, else 0.
pub fn exit_code(checks: &[Check]) -> i32 {
    use crate::cli::exit;
    if checks.iter().any(|c| c.name == CONFIG && c.failed()) {
        exit::USAGE
    } else if checks.iter().any(Check::failed) {
        exit::CHECK_FAILED
    } else {
        exit::OK
    }
}

/// `preflight -o json`: the document.
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    pass: bool,
    summary: String,
    checks: Vec<JsonCheck<'a>>,
}

#[derive(serde::Serialize)]
struct JsonCheck<'a> {
    name: &'a str,
    /// pass, warn, skip or fail.
    level: &'static str,
    detail: &'a str,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Pass => "pass",
            Level::Warn => "warn",
            Level::Skip => "skip",
            Level::Fail => "fail",
        }
    }
}

/// The JSON rendering of a set of checks.
pub fn render_json(checks: &[Check]) -> String {
    let doc = JsonOut {
        pass: !checks.iter().any(Check::failed),
        summary: summary(checks),
        checks: checks
            .iter()
            .map(|c| JsonCheck {
                name: c.name,
                level: c.level.as_str(),
                detail: &c.detail,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Gathers the facts, prints one line per check and the summary (or the
/// JSON document); returns the exit status.
pub fn run_with(opts: &Options, json: bool, out: &mut dyn Write) -> i32 {
    let checks = gather(opts);
    if json {
        let _ = writeln!(out, "{}", render_json(&checks));
    } else {
        for c in &checks {
            let _ = writeln!(out, "{}", c.line());
        }
        let _ = writeln!(out, "{}", summary(&checks));
    }
    let _ = out.flush();
    exit_code(&checks)
}

/// Runs every check against the live system.
pub fn gather(opts: &Options) -> Vec<Check> {
    let mut checks = vec![tun_device(TUN_PATH, &probe::open_rw(Path::new(TUN_PATH)))];
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let cap = cap_net_admin(status.as_deref());
    let have_cap = !cap.failed();
    checks.push(cap);

    let path = match &opts.config {
        Some(p) => Some(p.clone()),
        None => opts
            .default_config
            .exists()
            .then(|| opts.default_config.clone()),
    };
    let loaded = path.as_ref().map(|p| {
        (
            p.as_path(),
            crate::config::load(p, &|k| std::env::var(k).ok()),
        )
    });
    checks.push(config(loaded.as_ref().map(|(p, r)| (*p, r))));
    let cfg = loaded.as_ref().and_then(|(_, r)| r.as_ref().ok());

    checks.push(private_key(&probe::key_facts(cfg, path.as_deref())));

    checks.push(match cfg.map(|c| c.interface.listen_port) {
        None => Check::skip(
            "UDP listen port",
            "no config: the port is set later with wg",
        ),
        Some(None | Some(0)) => Check::skip(
            "UDP listen port",
            "no listen_port configured: a free port is picked at start",
        ),
        Some(Some(port)) => {
            let binds = probe::bind_udp(port);
            let holder = if binds.iter().any(|(_, r)| r.is_err()) {
                probe::port_holder(probe::Proto::Udp, port)
            } else {
                None
            };
            udp_port(port, &binds, holder.as_deref())
        }
    });

    let listen = match cfg {
        Some(c) => c.admin.listen.clone(),
        None => (opts.env)(crate::admin::ADMIN_ENV)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| crate::admin::DEFAULT_LISTEN.into()),
    };
    checks.push(if listen.eq_ignore_ascii_case("off") {
        Check::skip("Admin address", "admin server off")
    } else {
        let (bind, port) = probe::bind_tcp(&listen);
        let holder = match (&bind, port) {
            (Err(e), Some(p)) if e.kind() == io::ErrorKind::AddrInUse => {
                probe::port_holder(probe::Proto::TcpListen, p)
            }
            _ => None,
        };
        admin_address(&listen, &bind, holder.as_deref())
    });

    let (gso, gro) = probe::udp_offloads();
    checks.push(udp_gso(&gso));
    checks.push(udp_gro(&gro));
    let offload = if have_cap {
        probe::tun_offload()
    } else {
        Err("creating a TUN needs CAP_NET_ADMIN".into())
    };
    checks.push(tun_offload(&offload));

    let (m, from_config, has_v6) = match cfg {
        Some(c) => (
            c.interface.mtu.unwrap_or(DEFAULT_MTU),
            c.interface.mtu.is_some(),
            c.interface.addresses.iter().any(|(a, _)| a.is_ipv6()),
        ),
        None => (DEFAULT_MTU, false, false),
    };
    checks.push(mtu(
        m,
        from_config,
        has_v6,
        &probe::interfaces(Path::new("/sys/class/net")),
    ));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::exit;

    #[test]
    fn a_config_that_does_not_load_is_exit_2_other_failures_exit_1() {
        let ok = Check::pass("TUN device", "usable");
        let warn = Check::new("MTU", Level::Warn, "no uplink");
        let skip = Check::skip("UDP listen port", "no config");
        let bad_port = Check::fail("UDP listen port", "in use");
        let bad_config = Check::fail(CONFIG, "pm.toml:3: invalid");
        assert_eq!(exit_code(&[ok.clone(), warn.clone(), skip]), exit::OK);
        assert_eq!(
            exit_code(&[ok.clone(), bad_port.clone()]),
            exit::CHECK_FAILED
        );
        assert_eq!(exit_code(&[ok, bad_port, bad_config, warn]), exit::USAGE);
        assert_eq!(config(None).name, CONFIG);
    }

    #[test]
    fn json_lists_every_check_with_its_level() {
        let checks = [
            Check::pass("TUN device", "usable"),
            Check::new("MTU", Level::Warn, "no \"uplink\""),
            Check::skip("Admin address", "admin server off"),
            Check::fail("UDP listen port", "in use"),
        ];
        let v: serde_json::Value = serde_json::from_str(&render_json(&checks)).unwrap();
        assert_eq!(v["pass"], false);
        assert_eq!(v["summary"], summary(&checks));
        let got: Vec<(&str, &str, &str)> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap(),
                    c["level"].as_str().unwrap(),
                    c["detail"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("TUN device", "pass", "usable"),
                ("MTU", "warn", "no \"uplink\""),
                ("Admin address", "skip", "skipped (admin server off)"),
                ("UDP listen port", "fail", "in use"),
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&render_json(&checks[..3])).unwrap();
        assert_eq!(v["pass"], true);
    }
}
