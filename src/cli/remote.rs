//! The options every admin-API client command shares (`gate`, `status`,
//! `mesh status`): the bearer token file, the CA bundle for `https://`,
//! and `--insecure`; and the client they make.
use crate::cli::exit;
use crate::gates::fetch::{Client, ClientOptions, FetchError};
use std::io::Write;
use std::path::PathBuf;

/// How to reach a node's admin API.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteArgs {
    /// File holding the admin bearer token (the admin server's
    /// token_file). It is sent over https://, or over plain http:// only to
    /// a loopback address unless --insecure is given.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA certificates to trust for https:// URLs, instead
    /// of the system's (like curl --cacert). Proxies: HTTPS_PROXY,
    /// HTTP_PROXY and NO_PROXY are honoured.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Allow sending the token over plain http:// to a non-loopback
    /// address (it crosses the network in clear). Certificate checks for
    /// https:// stay on: there is no way to turn them off.
    #[arg(long)]
    pub insecure: bool,
}

impl RemoteArgs {
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
        }
    }

    /// The client (the CA file read now) and the token (read now).
    pub fn connect(&self) -> Result<(Client, Option<String>), FetchError> {
        let client = Client::new(&self.options())?;
        let token = match &self.token_file {
            None => None,
            Some(p) => Some(token_from_file(p).map_err(FetchError::usage)?),
        };
        Ok((client, token))
    }

    /// A client command's entry point: connects (a client that cannot be
    /// made, say an unreadable token or CA file, is reported as
    /// `{what}: ...` and gives its exit code) and runs `f` with the
    /// client, the token and the process's locked stdout and stderr.
    pub fn run(
        &self,
        what: &str,
        f: impl FnOnce(&Client, Option<&str>, &mut dyn Write, &mut dyn Write) -> i32,
    ) -> i32 {
        let (client, token) = match self.connect() {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{what}: {e}");
                return exit::of_fetch_error(&e);
            }
        };
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        f(
            &client,
            token.as_deref(),
            &mut stdout.lock(),
            &mut stderr.lock(),
        )
    }
}

// The admin server reads its token file the same way; the reader lives
// there, below the CLI.
pub use crate::admin::auth::token_from_file;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::fetch::ErrorKind;

    #[test]
    fn token_and_ca_errors_are_usage() {
        let dir = std::env::temp_dir().join(format!("pm-remote-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tok = dir.join("token");
        std::fs::write(&tok, "  s3cret\n").unwrap();
        let args = RemoteArgs {
            token_file: Some(tok.clone()),
            ..RemoteArgs::default()
        };
        assert_eq!(args.connect().unwrap().1.as_deref(), Some("s3cret"));
        std::fs::write(&tok, "\n").unwrap();
        let e = args.connect().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Usage);
        assert!(e.message.contains("empty"), "{e}");
        std::fs::write(&tok, "x".repeat(5000)).unwrap();
        let e = args.connect().unwrap_err();
        assert!(e.message.contains("larger than 4 KiB") && !e.message.contains("xxx"));
        let missing = RemoteArgs {
            token_file: Some(dir.join("missing")),
            ..RemoteArgs::default()
        };
        assert_eq!(missing.connect().unwrap_err().kind, ErrorKind::Usage);
        let bad_ca = RemoteArgs {
            ca_file: Some(dir.join("missing.pem")),
            ..RemoteArgs::default()
        };
        let e = bad_ca.connect().unwrap_err();
        assert_eq!(e.kind, ErrorKind::Usage);
        assert!(e.message.contains("--ca-file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            remote: RemoteArgs,
        }
        let c = Cmd::try_parse_from([
            "x",
            "--ca-file",
            "/ca.pem",
            "--insecure",
            "--token-file",
            "/t",
        ])
        .unwrap();
        assert_eq!(
            c.remote,
            RemoteArgs {
                token_file: Some("/t".into()),
                ca_file: Some("/ca.pem".into()),
                insecure: true,
            }
        );
        let c = Cmd::try_parse_from(["x"]).unwrap();
        assert_eq!(c.remote, RemoteArgs::default());
    }
}
