//! Noticing that the config file changed, so run mode can apply an updated
//! Kubernetes ConfigMap without a signal.
//!
//! Kubernetes mounts a ConfigMap key as `DIR/FILE -> ..data/FILE`, where
//! `..data` is a symlink to a timestamped directory that the kubelet swaps
//! atomically (a new directory, a new `..data_tmp` link renamed over
//! `..data`). Nothing is ever written to the file itself, so a watch on the
//! file would see nothing (or lose track of it after the first swap). A
//! non-recursive inotify watch on `DIR` sees the rename, and it also sees
//! plain rewrites and editors' write-then-rename in the same directory.
//!
//! Events only say "look again": the file counts as changed when the bytes
//! read through its path hash differently from the last ones seen. A touch,
//! a rewrite with the same bytes or a change to another file in `DIR` is no
//! change, and the several events of one save make one change.
use blake2::{Blake2s256, Digest};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the directory must have been quiet before the file is read: a
/// rewrite in place is a truncate and then writes, and reading in between
/// would report a half-written file (which the reload would then refuse).
const SETTLE: Duration = Duration::from_millis(50);

/// What the inotify thread tells the poller.
#[derive(Debug)]
struct Pending {
    /// Something happened in the directory since the file was last hashed.
    dirty: bool,
    last_event: Instant,
    /// Events counted, for tests to know the watch has seen a step.
    events: u64,
    /// Wakes the main loop on each event (see [`FileWatch::set_waker`]).
    waker: Option<super::wakeup::Waker>,
}

/// Watches one file through its directory; see the module docs.
pub struct FileWatch {
    path: PathBuf,
    pending: Arc<Mutex<Pending>>,
    last_seen: Mutex<[u8; 32]>,
    // Dropping the watcher ends the watch and its thread.
    _watcher: RecommendedWatcher,
}

impl FileWatch {
    /// Starts watching `path`'s directory and records the file's current
    /// contents, so only later changes count. Create it before reading the
    /// config for the first time: a change in between then shows up as one
    /// (harmless) extra reload instead of being missed.
    pub fn new(path: &Path) -> Result<FileWatch, String> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let pending = Arc::new(Mutex::new(Pending {
            dirty: false,
            last_event: Instant::now(),
            events: 0,
            waker: None,
        }));
        let sink = pending.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Opening or reading (our own hashing, too) changes nothing; a
            // close after writing does. A watch error (queue overflow) may
            // hide a change, so it counts as one to look at.
            if let Ok(ev) = &res {
                if matches!(ev.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write))
                {
                    return;
                }
            }
            let mut p = sink.lock();
            p.dirty = true;
            p.last_event = Instant::now();
            p.events += 1;
            if let Some(w) = &p.waker {
                w.wake();
            }
        })
        .map_err(|e| format!("cannot watch {}: {e}", path.display()))?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch directory {}: {e}", dir.display()))?;
        // A symlink to a file in another directory (not Kubernetes' layout,
        // whose target is below `dir`) can be rewritten where it lives.
        if let (Ok(real), Ok(real_dir)) = (path.canonicalize(), dir.canonicalize()) {
            if let Some(target_dir) = real.parent().filter(|t| !t.starts_with(&real_dir)) {
                if let Err(e) = watcher.watch(target_dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(path = %target_dir.display(), error = %e, "cannot watch the config file's target directory; changes made there are noticed only through the link's directory");
                }
            }
        }
        let hash = hash_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(FileWatch {
            path: path.to_path_buf(),
            pending,
            last_seen: Mutex::new(hash),
            _watcher: watcher,
        })
    }

    /// Whether the file's contents differ from the last seen, counting every
    /// event since the last call. Never blocks on the watch: it reads the
    /// file only after events, once they have settled. A file that cannot be
    /// read right now (between a delete and a create) is looked at again on
    /// the next call.
    pub fn changed(&self) -> bool {
        {
            let mut p = self.pending.lock();
            if !p.dirty || p.last_event.elapsed() < SETTLE {
                return false;
            }
            p.dirty = false;
        }
        let hash = match hash_file(&self.path) {
            Ok(h) => h,
            Err(_) => {
                self.pending.lock().dirty = true;
                return false;
            }
        };
        let mut last = self.last_seen.lock();
        if *last == hash {
            return false;
        }
        *last = hash;
        true
    }

    /// Wakes the main loop on each event in the directory, so it needs no
    /// fast polling to notice a change.
    pub fn set_waker(&self, w: super::wakeup::Waker) {
        self.pending.lock().waker = Some(w);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    Ok(Blake2s256::digest(std::fs::read(path)?).into())
}

#[cfg(test)]
#[path = "file_watch_tests.rs"]
mod tests;
