//! The UAPI socket: `/var/run/wireguard/IFNAME.sock`, one thread per client.
//!
//! Lines are read with a length cap so a client cannot make the daemon
//! buffer without bound; a malformed `set` is drained to its blank line and
//! answered with an errno, and the connection stays usable, as `wg` expects.
use super::protocol::{self, format_device, format_peer, Operation, SetParser, UapiError};
use crate::device::Device;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroize;

pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// Longest accepted line; a `get` reply line is far shorter, and no valid
/// `set` line comes near it.
const MAX_LINE: usize = 4096;

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
        let listener = self.listener.try_clone()?;
        let stop = self.stop.clone();
        std::thread::Builder::new()
            .name("pm-uapi".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let dev = device.clone();
                    let _ = std::thread::Builder::new()
                        .name("pm-uapi-conn".into())
                        .spawn(move || {
                            if let Err(e) = handle(&dev, conn) {
                                tracing::debug!(error = %e, "UAPI connection ended");
                            }
                        });
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
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = BufWriter::new(conn);
    let mut buf = Vec::new();
    loop {
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
            Operation::Set => run_set(dev, &mut reader, &mut buf)?,
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
) -> io::Result<Result<(), UapiError>> {
    let mut parser = SetParser::new();
    let mut first_err: Option<UapiError> = None;
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
        if first_err.is_none() {
            if let Err(e) = parser.feed(&line) {
                first_err = Some(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Ok(Err(e));
    }
    let mut set = parser.finish();
    let result = dev.apply(&set);
    // The parsed set's key copies are zeroed (it cannot zero itself on drop).
    set.private_key.zeroize();
    for p in &mut set.peers {
        p.preshared_key.zeroize();
    }
    Ok(result)
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
    for (_, mut info) in dev.peer_infos_with_psk() {
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
