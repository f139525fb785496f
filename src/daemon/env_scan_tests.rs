//! No module below the daemon (and the CLI) reads the environment: the
//! daemon reads it once, checks it, and passes values down (see
//! [`super::options`]). This scans the source tree for `env::var` outside
//! `daemon/`, `cli/`, `main.rs` and test files.
use std::path::{Path, PathBuf};

/// Files still allowed to read the environment, and why.
const EXCEPTIONS: [(&str, &str); 2] = [
    (
        "gates/fetch_proxy.rs",
        "the admin clients' HTTPS_PROXY/NO_PROXY convention, read where the CLI's HTTP client is built (ProxyEnv::from_lookup for tests)",
    ),
    (
        "io/linux_tun/test_support.rs",
        "PHANTOMMESH_SKIP_PRIVILEGED in a #[cfg(test)] module: a test gate, not product behaviour",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_below_the_daemon_reads_the_environment() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "scanned {} files under src/", files.len());
    let mut found = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let skip = rel.starts_with("daemon/")
            || rel.starts_with("cli/")
            || rel == "main.rs"
            || rel.ends_with("_tests.rs")
            || rel.contains("/tests/")
            || rel.ends_with("/tests.rs")
            || EXCEPTIONS.iter().any(|(e, _)| *e == rel);
        if skip {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && code.contains("env::var") {
                found.push(format!("src/{rel}:{}: {}", i + 1, code));
            }
        }
    }
    assert!(
        found.is_empty(),
        "environment read below the daemon (read it in src/daemon/options.rs and pass the value down):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_exception_still_needs_to_be_one() {
    // An exception that no longer reads the environment should be removed.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (rel, why) in EXCEPTIONS {
        let text = std::fs::read_to_string(src.join(rel)).unwrap_or_default();
        assert!(
            text.contains("env::var"),
            "src/{rel} no longer reads the environment; drop its exception ({why})"
        );
    }
}
