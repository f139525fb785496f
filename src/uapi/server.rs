//! The UAPI socket: `/var/run/wireguard/IFNAME.sock`, one thread per client.
//!
//! Lines are read with a length cap so a client cannot make the daemon
//! buffer without bound; a malformed `set` is drained to its blank line and
//! answered with an errno, and the connection stays usable, as `wg` expects.
//!
//! [`Limits`] bound what clients can hold: concurrent connections (one
//! over the cap is answered `errno=-16` (EBUSY) and closed), one deadline
//! per operation (a client dripping lines cannot extend it), and the lines
//! and peers of one `set` (over either: `errno=-7` (E2BIG), and the
//! connection is closed rather than drained). Accept errors (EMFILE) back
//! off instead of spinning.
use super::protocol::{self, format_device, format_peer, Operation, SetParser, UapiError};
use crate::device::Device;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroize;

pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// Longest accepted line; a `get` reply line is far shorter, and no valid
/// `set` line comes near it.
const MAX_LINE: usize = 4096;
/// Too many connections.
pub const EBUSY: i32 = 16;
/// A set operation over its line or peer cap.
pub const E2BIG: i32 = 7;

/// What one UAPI server lets its clients hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for one operation, from its first byte to its answer (and the
    /// longest a connection may idle between operations).
    pub op_deadline: Duration,
    /// Lines of one `set` (a peer with its allowed IPs is a few lines each).
    pub max_set_lines: usize,
    /// `public_key=` sections of one `set`.
    pub max_set_peers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            op_deadline: Duration::from_secs(30),
            max_set_lines: 1_000_000,
            max_set_peers: 100_000,
        }
    }
}

/// The pause after an accept error: 10 ms, doubling to 1 s.
fn next_backoff(prev: Option<Duration>) -> Duration {
    prev.map_or(Duration::from_millis(10), |d| {
        (d * 2).min(Duration::from_secs(1))
    })
}

/// Frees a connection slot when the connection ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream whose reads share one deadline: each read waits at most for
/// what is left of it, and none starts after it.
struct DeadlineStream {
    conn: UnixStream,
    deadline: Instant,
}

impl Read for DeadlineStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "UAPI operation deadline passed",
            ));
        }
        self.conn.set_read_timeout(Some(left))?;
        self.conn.read(out)
    }
}

pub fn socket_path(ifname: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{ifname}.sock"))
}

/// A listening UAPI socket. Removes its file when dropped.
pub struct UapiServer {
    path: PathBuf,
    inode: Option<u64>,
    listener: UnixListener,
    stop: Arc<AtomicBool>,
}

impl UapiServer {
    /// Binds the socket for `ifname` (directory 0755, socket under umask
    /// 077). A stale socket nobody answers on is replaced; a live one is an
    /// error (another daemon owns the interface).
    pub fn bind(ifname: &str) -> io::Result<UapiServer> {
        let path = socket_path(ifname);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(SOCKET_DIR)?;
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running daemon", path.display()),
                ));
            }
            std::fs::remove_file(&path)?;
        }
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0o077) };
        let res = UnixListener::bind(&path);
        unsafe { libc::umask(old) };
        let listener = res?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        let inode = std::fs::metadata(&path).ok().map(|m| m.ino());
        Ok(UapiServer {
            path,
            inode,
            listener,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Takes over a listening socket handed down by WG_UAPI_FD.
    pub fn from_fd(fd: std::os::fd::RawFd, ifname: &str) -> io::Result<UapiServer> {
        use std::os::fd::FromRawFd;
        // SAFETY: the parent handed this descriptor to us to own.
        let listener = unsafe { UnixListener::from_raw_fd(fd) };
        let path = socket_path(ifname);
        let inode = std::fs::metadata(&path).ok().map(|m| m.ino());
        Ok(UapiServer {
            path,
            inode,
            listener,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False once the socket file was deleted or replaced.
    pub fn file_present(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(m) => self.inode.is_none_or(|i| m.ino() == i),
            Err(_) => false,
        }
    }

    /// Serves clients on a background thread until dropped.
    pub fn serve(&self, device: Arc<Device>) -> io::Result<()> {
        self.serve_with(device, Limits::default())
    }

    /// [`UapiServer::serve`] with explicit limits.
    pub fn serve_with(&self, device: Arc<Device>, limits: Limits) -> io::Result<()> {
        let listener = self.listener.try_clone()?;
        let stop = self.stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("pm-uapi".into())
            .spawn(move || {
                let mut backoff = None;
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let conn = match conn {
                        Ok(c) => c,
                        Err(e) => {
                            // EMFILE and the like persist: retrying at once
                            // would spin a core.
                            let pause = next_backoff(backoff);
                            backoff = Some(pause);
                            tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "UAPI accept failed; backing off");
                            std::thread::sleep(pause);
                            continue;
                        }
                    };
                    backoff = None;
                    if active.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
                        active.fetch_sub(1, Ordering::AcqRel);
                        tracing::warn!(max = limits.max_connections, "UAPI connection refused: too many connections");
                        let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                        let _ = (&conn).write_all(format!("errno=-{EBUSY}\n\n").as_bytes());
                        continue;
                    }
                    let slot = Slot(active.clone());
                    let dev = device.clone();
                    let spawned = std::thread::Builder::new()
                        .name("pm-uapi-conn".into())
                        .spawn(move || {
                            let _slot = slot;
                            if let Err(e) = handle_with(&dev, conn, &limits) {
                                tracing::debug!(error = %e, "UAPI connection ended");
                            }
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "cannot start a UAPI connection thread");
                    }
                }
            })?;
        Ok(())
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.file_present() {
            let _ = std::fs::remove_file(&self.path);
        }
        // Wake the accept loop so its thread ends.
        let _ = UnixStream::connect(&self.path);
    }
}

/// Reads one line (without the newline), at most MAX_LINE bytes.
/// Ok(None) at end of stream.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<String>> {
    buf.clear();
    let n = r.take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "UAPI line too long",
        ));
    } else {
        // End of stream in the middle of a line.
        return Ok(None);
    }
    String::from_utf8(std::mem::take(buf))
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "UAPI line is not UTF-8"))
}

/// Serves one client connection: operations until it closes.
pub fn handle(dev: &Device, conn: UnixStream) -> io::Result<()> {
    handle_with(dev, conn, &Limits::default())
}

/// [`handle`] with explicit limits.
pub fn handle_with(dev: &Device, conn: UnixStream, limits: &Limits) -> io::Result<()> {
    let mut reader = BufReader::new(DeadlineStream {
        conn: conn.try_clone()?,
        deadline: Instant::now() + limits.op_deadline,
    });
    let mut writer = BufWriter::new(conn);
    let mut buf = Vec::new();
    loop {
        // One deadline for the whole operation, reading and answering.
        reader.get_mut().deadline = Instant::now() + limits.op_deadline;
        writer
            .get_ref()
            .set_write_timeout(Some(limits.op_deadline))?;
        let Some(line) = read_line(&mut reader, &mut buf)? else {
            return Ok(());
        };
        let op = match protocol::parse_operation(&line) {
            Ok(op) => op,
            Err(e) => {
                tracing::warn!(error = %e, "invalid UAPI operation");
                write!(writer, "errno=-{}\n\n", e.errno)?;
                writer.flush()?;
                return Ok(());
            }
        };
        let result = match op {
            Operation::Get => match read_line(&mut reader, &mut buf)? {
                Some(l) if l.is_empty() => write_get(dev, &mut writer),
                Some(_) => Err(UapiError {
                    errno: protocol::EINVAL,
                    message: "trailing data after get=1".into(),
                }),
                None => return Ok(()),
            },
            Operation::Set => match run_set(dev, &mut reader, &mut buf, limits)? {
                SetOutcome::Done(r) => r,
                SetOutcome::TooBig(why) => {
                    // The rest is not read: answer and close.
                    tracing::warn!("UAPI set refused: {why}");
                    write!(writer, "errno=-{E2BIG}\n\n")?;
                    writer.flush()?;
                    return Ok(());
                }
            },
        };
        match result {
            Ok(()) => writer.write_all(b"errno=0\n\n")?,
            Err(e) => {
                tracing::warn!(error = %e, "UAPI request failed");
                write!(writer, "errno=-{}\n\n", e.errno)?;
            }
        }
        writer.flush()?;
    }
}

/// Reads a set operation to its blank line, then applies it. Parse errors
/// still drain the operation so the connection stays in step.
fn run_set(
    dev: &Device,
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> io::Result<SetOutcome> {
    let mut parser = SetParser::new();
    let mut first_err: Option<UapiError> = None;
    let (mut lines, mut peers) = (0usize, 0usize);
    loop {
        let Some(line) = read_line(reader, buf)? else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "set operation not terminated",
            ));
        };
        if line.is_empty() {
            break;
        }
        lines += 1;
        peers += usize::from(line.starts_with("public_key="));
        if lines > limits.max_set_lines {
            return Ok(SetOutcome::TooBig(format!(
                "more than {} lines",
                limits.max_set_lines
            )));
        }
        if peers > limits.max_set_peers {
            return Ok(SetOutcome::TooBig(format!(
                "more than {} peers",
                limits.max_set_peers
            )));
        }
        if first_err.is_none() {
            if let Err(e) = parser.feed(&line) {
                first_err = Some(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Ok(SetOutcome::Done(Err(e)));
    }
    let mut set = parser.finish();
    let result = dev.apply(&set).map_err(UapiError::from);
    // The parsed set's key copies are zeroed (it cannot zero itself on drop).
    set.private_key.zeroize();
    for p in &mut set.peers {
        p.preshared_key.zeroize();
    }
    Ok(SetOutcome::Done(result))
}

enum SetOutcome {
    /// Read to its end and applied (or refused by the parser/device).
    Done(Result<(), UapiError>),
    /// Over a cap; the rest was left unread.
    TooBig(String),
}

/// Streams a get reply peer by peer, so thousands of peers never build one
/// giant string.
fn write_get(dev: &Device, w: &mut impl Write) -> Result<(), UapiError> {
    let io_err = |e: io::Error| UapiError {
        errno: protocol::EIO,
        message: e.to_string(),
    };
    let mut out = String::with_capacity(4096);
    format_device(&dev.info(), &mut out);
    if let Err(e) = w.write_all(out.as_bytes()) {
        out.zeroize();
        return Err(io_err(e));
    }
    let mut result = Ok(());
    for mut info in dev.peer_infos_with_psk() {
        if result.is_ok() {
            out.zeroize();
            format_peer(&info, &mut out);
            result = w.write_all(out.as_bytes()).map_err(io_err);
        }
        info.preshared_key.zeroize();
    }
    // The text held the keys in hex.
    out.zeroize();
    result
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
