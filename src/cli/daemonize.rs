//! wireguard-go-style backgrounding: without `-f` the process forks; the
//! parent waits until the child reports the device ready (exit 0) or failed
//! (exit 1, with the child's message), so `wg-quick up` can go on at once.
//! Must be called before any thread is started.

/// Held by the child; tells the waiting parent how start-up went.
pub struct Readiness {
    // owner: fill in (pipe write end)
}

impl Readiness {
    pub fn ready(self) {
        todo!()
    }
    pub fn failed(self, message: &str) {
        let _ = message;
        todo!()
    }
}

/// Forks. In the parent: waits for the child's verdict and exits the
/// process (never returns). In the child: detaches (setsid, stdin from
/// /dev/null) and returns the [`Readiness`] handle.
pub fn daemonize() -> std::io::Result<Readiness> {
    todo!()
}
