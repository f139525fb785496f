//! wireguard-go-style backgrounding: without `-f` the process forks; the
//! parent waits until the child reports the device ready (exit 0) or failed
//! (exit 1, with the child's message), so `wg-quick up` can go on at once.
//! Must be called before any thread is started.
//!
//! The verdict travels over a pipe: one byte `R` (ready), or `F` followed
//! by the message. End-of-file with no verdict means the child died or
//! dropped its [`Readiness`] without reporting.
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const READY: u8 = b'R';
const FAILED: u8 = b'F';

/// Held by the child; tells the waiting parent how start-up went.
/// Dropping it without a verdict makes the parent exit 1.
pub struct Readiness {
    pipe: Option<OwnedFd>,
}

impl Readiness {
    pub fn ready(mut self) {
        self.send(&[READY]);
    }
    pub fn failed(mut self, message: &str) {
        let mut buf = Vec::with_capacity(message.len() + 1);
        buf.push(FAILED);
        buf.extend_from_slice(message.as_bytes());
        self.send(&buf);
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Some(fd) = self.pipe.take() {
            // If the parent is gone (killed) there is nobody to tell; Rust
            // ignores SIGPIPE, so this is just an EPIPE we drop.
            let _ = File::from(fd).write_all(bytes);
        }
    }
}

/// Forks. In the parent: waits for the child's verdict and exits the
/// process (never returns). In the child: detaches (setsid, stdin from
/// /dev/null) and returns the [`Readiness`] handle.
pub fn daemonize() -> std::io::Result<Readiness> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid 2-element array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by us alone.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the caller guarantees no other thread exists, so the child
    // inherits a consistent process (no locks held elsewhere).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read_end);
            let readiness = Readiness {
                pipe: Some(write_end),
            };
            if let Err(e) = detach() {
                let msg = format!("phantommesh: cannot detach from the terminal: {e}");
                readiness.failed(&msg);
                return Err(e);
            }
            Ok(readiness)
        }
        pid => {
            drop(write_end);
            let (code, message) = wait_for_verdict(File::from(read_end), pid);
            if let Some(m) = message {
                // Straight to fd 2: eprintln! output can be captured (test harness).
                let _ = writeln!(io::stderr(), "{}", m.trim_end());
            }
            std::process::exit(code)
        }
    }
}

fn detach() -> io::Result<()> {
    // SAFETY: plain syscall; fails only if we already lead a process group,
    // which a freshly forked child never does.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    let devnull = File::open("/dev/null")?;
    // SAFETY: both descriptors are open; dup2 atomically replaces fd 0.
    if unsafe { libc::dup2(devnull.as_raw_fd(), libc::STDIN_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the child's verdict: the exit code for the parent and what to
/// print on stderr.
fn wait_for_verdict(mut pipe: File, child: libc::pid_t) -> (i32, Option<String>) {
    let mut first = [0u8; 1];
    let n = loop {
        match pipe.read(&mut first) {
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return (
                    1,
                    Some(format!("phantommesh: reading the daemon's status: {e}")),
                )
            }
        }
    };
    if n == 1 && first[0] == READY {
        return (0, None);
    }
    if n == 1 {
        let mut rest = Vec::new();
        let _ = pipe.read_to_end(&mut rest);
        let mut msg = String::from_utf8_lossy(&rest).into_owned();
        if first[0] != FAILED {
            msg = format!("phantommesh: garbled status from the daemon: {msg}");
        }
        return (1, Some(msg));
    }
    let how = child_exit(child).unwrap_or_default();
    (
        1,
        Some(format!(
            "phantommesh: the daemon exited before it was ready{how}"
        )),
    )
}

/// Describes the child's exit if it ends within a second; the pipe can
/// also close because the child dropped its handle while still running.
fn child_exit(child: libc::pid_t) -> Option<String> {
    for _ in 0..20 {
        let mut status = 0;
        // SAFETY: child is our own child pid; status is a valid out-pointer.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            if libc::WIFEXITED(status) {
                return Some(format!(" (exit status {})", libc::WEXITSTATUS(status)));
            }
            if libc::WIFSIGNALED(status) {
                return Some(format!(" (killed by signal {})", libc::WTERMSIG(status)));
            }
            return None;
        }
        if r < 0 {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[cfg(test)]
mod tests {
    //! `daemonize` forks the calling process, so each case runs it inside a
    //! fresh copy of this test binary (selected with an env var), and the
    //! test checks that copy's exit status and stderr.
    use super::*;
    use std::path::PathBuf;
    use std::process::{Command, Output, Stdio};
    use std::time::Instant;

    const MODE: &str = "PM_DAEMONIZE_TEST_MODE";
    const MARKER: &str = "PM_DAEMONIZE_TEST_MARKER";

    #[test]
    #[ignore = "helper run by the tests below in a child process"]
    fn child_entry() {
        let Ok(mode) = std::env::var(MODE) else {
            return;
        };
        let marker = PathBuf::from(std::env::var(MARKER).unwrap());
        let readiness = daemonize().expect("daemonize");
        // Only the daemon child gets here. Never return into the harness.
        // SAFETY: getpid/getsid have no preconditions.
        let (pid, sid) = unsafe { (libc::getpid(), libc::getsid(0)) };
        let stdin = std::fs::read_link("/proc/self/fd/0").unwrap_or_default();
        let facts = format!("pid={pid} sid={sid} stdin={}\n", stdin.display());
        std::fs::write(&marker, facts).unwrap();
        match mode.as_str() {
            "ready" => {
                readiness.ready();
                std::thread::sleep(Duration::from_secs(2));
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&marker)
                    .unwrap();
                let _ = f.write_all(b"done\n");
            }
            "fail" => readiness.failed("phantommesh: cannot open /dev/net/tun: boom"),
            "drop" => drop(readiness),
            _ => {
                std::mem::forget(readiness);
                // SAFETY: exits this process immediately, as a crash would.
                unsafe { libc::_exit(3) }
            }
        }
        // SAFETY: as above; skips the harness's own reporting in this child.
        unsafe { libc::_exit(0) }
    }

    fn marker_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pm-daemonize-{tag}-{}", std::process::id()))
    }

    fn spawn(mode: &str, marker: &PathBuf, stdout: Stdio) -> std::process::Child {
        let _ = std::fs::remove_file(marker);
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cli::daemonize::tests::child_entry",
                "--ignored",
                "--nocapture",
            ])
            .arg("--test-threads=1")
            .env(MODE, mode)
            .env(MARKER, marker)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run(mode: &str) -> (Output, String) {
        let marker = marker_path(mode);
        let out = spawn(mode, &marker, Stdio::piped())
            .wait_with_output()
            .unwrap();
        let facts = std::fs::read_to_string(&marker).unwrap_or_default();
        let _ = std::fs::remove_file(&marker);
        (out, facts)
    }

    #[test]
    fn ready_parent_exits_zero_while_daemon_keeps_running_detached() {
        let marker = marker_path("ready");
        let mut child = spawn("ready", &marker, Stdio::null());
        // The daemon shares our stderr pipe, so wait on the parent process
        // alone rather than for end-of-file on its output.
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        let facts = std::fs::read_to_string(&marker).unwrap();
        assert!(
            !facts.contains("done"),
            "parent waited for the daemon to finish: {facts}"
        );
        let field = |k: &str| {
            facts
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(field("pid="), field("sid="), "setsid did not run: {facts}");
        assert_ne!(field("pid="), child.id().to_string());
        assert_eq!(field("stdin="), "/dev/null");
        // The daemon goes on after the parent left.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&marker).unwrap().contains("done") {
            assert!(Instant::now() < deadline, "daemon did not continue");
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(&marker);
    }

    #[test]
    fn failure_message_reaches_parent_stderr_with_exit_one() {
        let (out, facts) = run("fail");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot open /dev/net/tun: boom"), "{err}");
        assert!(
            facts.starts_with("pid="),
            "daemon child did not run: {facts}"
        );
    }

    #[test]
    fn daemon_death_without_verdict_is_exit_one() {
        let (out, _) = run("die");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("exited before it was ready (exit status 3)"),
            "{err}"
        );
    }

    #[test]
    fn dropped_handle_without_verdict_is_exit_one() {
        let (out, _) = run("drop");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("exited before it was ready"), "{err}");
    }
}
