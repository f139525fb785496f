//! Which of the two command lines an invocation is: wireguard-go's
//! `phantommesh [-f|--foreground] IFNAME` or a subcommand (parsed by clap).
//!
//! - A first argument that names a subcommand, or is an option other than
//!   `-f`/`--foreground`/`--`, goes to clap (`--help`, usage errors).
//! - `phantommesh -- IFNAME` and `phantommesh -f IFNAME` are always the
//!   wireguard-go form, whatever the name.
//! - Any other first argument is an interface name, unless it is within
//!   edit distance 2 (Damerau-Levenshtein, ignoring case) of a subcommand:
//!   `phantommesh stauts` is a typo, refused with "did you mean `status`?"
//!   before anything is created. A name with a digit in it (`wg0`,
//!   `mesh0`, `tun1`) is never taken for a typo: no subcommand has one,
//!   and `wg-quick` passes such names without `--`.

/// Every subcommand, for the typo check (keep in step with
/// [`crate::cli::args::Cmd`]; a unit test checks it).
pub const SUBCOMMANDS: &[&str] = &[
    "run",
    "gate",
    "preflight",
    "status",
    "mesh",
    "loadtest",
    "genkey",
    "pubkey",
    "genpsk",
    "completions",
    "manpage",
    "help",
];

/// Largest edit distance still read as a typo.
pub const MAX_TYPO_DISTANCE: usize = 2;

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `--version`, `-v`, `-V`, `version`: wireguard-go's version line.
    Version,
    /// The wireguard-go form; the arguments for `wg_mode::parse_args`
    /// (`-f` kept, a `--` taken out).
    WireGuardGo(Vec<String>),
    /// A subcommand or an option: clap parses the whole command line.
    Clap,
    /// A first argument that looks like a mistyped subcommand.
    Typo { given: String, suggestion: String },
}

/// Decides the route from the arguments (without the program name).
pub fn route(args: &[String]) -> Route {
    let Some(first) = args.first().map(String::as_str) else {
        return Route::Clap;
    };
    match first {
        "--version" | "-v" | "-V" | "version" => Route::Version,
        "--" => Route::WireGuardGo(args[1..].to_vec()),
        "-f" | "--foreground" => {
            let mut rest = vec![first.to_string()];
            let tail = &args[1..];
            let tail = match tail.first().map(String::as_str) {
                Some("--") => &tail[1..],
                _ => tail,
            };
            rest.extend(tail.iter().cloned());
            Route::WireGuardGo(rest)
        }
        f if SUBCOMMANDS.contains(&f) || f.starts_with('-') => Route::Clap,
        f => match suggest(f) {
            Some(s) => Route::Typo {
                given: f.to_string(),
                suggestion: s.to_string(),
            },
            None => Route::WireGuardGo(args.to_vec()),
        },
    }
}

/// The subcommand `word` is most likely a typo of, if any: the nearest one
/// within [`MAX_TYPO_DISTANCE`] (the first listed on a tie). Words with a
/// digit are interface names, never typos.
pub fn suggest(word: &str) -> Option<&'static str> {
    if word.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let w = word.to_lowercase();
    SUBCOMMANDS
        .iter()
        .map(|s| (strsim::damerau_levenshtein(&w, s), *s))
        .filter(|(d, _)| *d <= MAX_TYPO_DISTANCE)
        .min_by_key(|(d, _)| *d)
        .map(|(_, s)| s)
}

/// The message for [`Route::Typo`].
pub fn typo_message(given: &str, suggestion: &str) -> String {
    format!(
        "phantommesh: unknown command `{given}`: did you mean `{suggestion}`?\n\
         (to run the daemon on an interface named {given:?}: phantommesh -- {given}, or -f {given})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn typo(given: &str, suggestion: &str) -> Route {
        Route::Typo {
            given: given.into(),
            suggestion: suggestion.into(),
        }
    }

    #[test]
    fn typos_within_two_edits_are_refused() {
        for (given, want) in [
            ("stauts", "status"),
            ("statsu", "status"),
            ("stat", "status"),
            ("Status", "status"),
            ("gaet", "gate"),
            ("gat", "gate"),
            ("preflihgt", "preflight"),
            ("mseh", "mesh"),
            ("laodtest", "loadtest"),
            ("genkye", "genkey"),
            ("pubky", "pubkey"),
            ("genspk", "genpsk"),
            ("rnu", "run"),
            ("ru", "run"),
            ("completion", "completions"),
            ("mnapage", "manpage"),
            ("hlep", "help"),
        ] {
            assert_eq!(route(&args(&[given])), typo(given, want), "{given}");
        }
    }

    #[test]
    fn interface_names_take_the_wireguard_go_form() {
        for name in [
            "wg0", "mesh0", "tun1", "pm0", "p1234i1", "wgprod", "backbone",
        ] {
            assert_eq!(
                route(&args(&[name])),
                Route::WireGuardGo(args(&[name])),
                "{name}"
            );
        }
        assert_eq!(suggest("statusxyz"), None);
        assert_eq!(suggest("wireguard"), None);
    }

    #[test]
    fn dash_dash_and_foreground_always_take_the_wireguard_go_form() {
        assert_eq!(
            route(&args(&["--", "stauts"])),
            Route::WireGuardGo(args(&["stauts"]))
        );
        assert_eq!(
            route(&args(&["--", "status"])),
            Route::WireGuardGo(args(&["status"]))
        );
        assert_eq!(
            route(&args(&["-f", "stauts"])),
            Route::WireGuardGo(args(&["-f", "stauts"]))
        );
        assert_eq!(
            route(&args(&["--foreground", "--", "gate"])),
            Route::WireGuardGo(args(&["--foreground", "gate"]))
        );
    }

    #[test]
    fn subcommands_options_and_nothing_go_to_clap() {
        for a in [
            &["status"][..],
            &["gate", "--url", "x"],
            &["mesh", "status"],
            &["--help"],
            &["-h"],
            &["--bogus"],
            &[],
        ] {
            assert_eq!(route(&args(a)), Route::Clap, "{a:?}");
        }
        for v in ["--version", "-v", "-V", "version"] {
            assert_eq!(route(&args(&[v])), Route::Version);
        }
    }

    #[test]
    fn subcommand_list_matches_the_clap_definitions() {
        use clap::CommandFactory;
        let cmd = crate::cli::args::Cli::command();
        let mut defined: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        defined.push("help".into());
        defined.sort();
        let mut listed: Vec<String> = SUBCOMMANDS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(defined, listed);
    }

    #[test]
    fn the_message_suggests_and_shows_the_escape() {
        let m = typo_message("stauts", "status");
        assert!(m.contains("did you mean `status`?"), "{m}");
        assert!(m.contains("phantommesh -- stauts"), "{m}");
    }
}
