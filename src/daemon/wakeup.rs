//! What the main thread sleeps on: a self-pipe that signal handlers (via
//! signal-hook), an inotify watch on the UAPI socket's directory and any
//! other thread (a [`Waker`]) write to, so an idle daemon's main thread
//! wakes for events instead of polling every 100 ms.
//!
//! The pipe only says "look again": which signals came is kept in flags the
//! handlers set, and the socket file is checked by whoever was woken, so a
//! coalesced or spurious wake-up loses nothing.
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::SigId;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Wakes a [`Wakeup`]'s sleeper from any thread.
#[derive(Clone, Debug)]
pub struct Waker(Arc<UnixStream>);

impl Waker {
    pub fn wake(&self) {
        // A full pipe already holds a wake-up; nothing else can fail here
        // that the sleeper would need to hear about.
        let _ = (&*self.0).write(&[1]);
    }
}

/// Signals seen since the last [`Wakeup::take_signals`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// SIGINT or SIGTERM (the last one to arrive).
    pub stop: Option<i32>,
    /// At least one SIGHUP (several coalesce into one reload).
    pub hup: bool,
}

pub struct Wakeup {
    rx: UnixStream,
    tx: Arc<UnixStream>,
    stop: Arc<AtomicUsize>,
    hup: Arc<AtomicBool>,
    ids: Vec<SigId>,
    watch: Option<RecommendedWatcher>,
}

impl Wakeup {
    /// Installs the SIGINT, SIGTERM and SIGHUP handlers (removed on drop).
    pub fn new() -> Result<Wakeup, String> {
        let (rx, tx) = UnixStream::pair().map_err(|e| format!("self-pipe: {e}"))?;
        rx.set_nonblocking(true)
            .and_then(|_| tx.set_nonblocking(true))
            .map_err(|e| format!("self-pipe: {e}"))?;
        let mut w = Wakeup {
            rx,
            tx: Arc::new(tx),
            stop: Arc::new(AtomicUsize::new(0)),
            hup: Arc::new(AtomicBool::new(false)),
            ids: Vec::new(),
            watch: None,
        };
        let err = |e: std::io::Error| format!("cannot install signal handlers: {e}");
        for sig in [SIGINT, SIGTERM] {
            let id = signal_hook::flag::register_usize(sig, w.stop.clone(), sig as usize);
            w.ids.push(id.map_err(err)?);
        }
        w.ids
            .push(signal_hook::flag::register(SIGHUP, w.hup.clone()).map_err(err)?);
        // After the flags: a handler sets its flag before it writes the pipe,
        // so the woken thread always finds the flag set.
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let tx = w.tx.try_clone().map_err(err)?;
            w.ids
                .push(signal_hook::low_level::pipe::register(sig, tx).map_err(err)?);
        }
        Ok(w)
    }

    pub fn waker(&self) -> Waker {
        Waker(self.tx.clone())
    }

    /// Wakes the sleeper on any change in `file`'s directory (the UAPI
    /// socket being deleted or replaced); the woken thread checks the file.
    pub fn watch_dir_of(&mut self, file: &Path) -> Result<(), String> {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let waker = self.waker();
        let mut w = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
            waker.wake();
        })
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        w.watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        self.watch = Some(w);
        Ok(())
    }

    /// Sleeps until woken or `timeout` passes; true when woken. Drains the
    /// pipe, so wake-ups that came together count once.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut fds = [libc::pollfd {
            fd: self.rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a valid array of one pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if n <= 0 {
            // Timeout, or EINTR from a signal whose byte is now in the pipe
            // (the next wait returns at once).
            return n < 0;
        }
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
        true
    }

    /// The signals that came since the last call.
    pub fn take_signals(&self) -> Signals {
        let stop = self.stop.swap(0, Ordering::AcqRel);
        Signals {
            stop: (stop != 0).then_some(stop as i32),
            hup: self.hup.swap(false, Ordering::AcqRel),
        }
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waker_wakes_and_wake_ups_coalesce() {
        let w = Wakeup::new().unwrap();
        let k = w.waker();
        assert!(!w.wait(Duration::ZERO));
        k.wake();
        k.wake();
        let t = std::thread::spawn(move || k.wake());
        assert!(w.wait(Duration::from_secs(30)));
        t.join().unwrap();
        // Whatever is left of the three is drained by one more wait.
        w.wait(Duration::ZERO);
        assert!(!w.wait(Duration::ZERO));
    }

    #[test]
    fn a_sighup_wakes_and_is_reported_once() {
        let w = Wakeup::new().unwrap();
        // SAFETY: raising a signal this process handles (registered above).
        unsafe { libc::raise(SIGHUP) };
        assert!(w.wait(Duration::from_secs(30)));
        assert_eq!(
            w.take_signals(),
            Signals {
                stop: None,
                hup: true
            }
        );
        assert_eq!(w.take_signals(), Signals::default());
    }

    #[test]
    fn a_change_in_the_watched_directory_wakes() {
        let dir = std::env::temp_dir().join(format!("pm-wakeup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("wg0.sock");
        std::fs::write(&sock, b"").unwrap();
        let mut w = Wakeup::new().unwrap();
        w.watch_dir_of(&sock).unwrap();
        std::fs::remove_file(&sock).unwrap();
        assert!(w.wait(Duration::from_secs(30)), "no wake-up for the delete");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
