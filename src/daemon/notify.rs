//! systemd's notify protocol for `Type=notify` units (sd_notify(3)), driven
//! from the daemon's main loop.
//!
//! - `READY=1` once, when readiness (the `/readyz` checks) first passes;
//! - `STATUS=...` when the state worth showing in `systemctl status` changes
//!   (readiness re-checked at most once a second after READY);
//! - `RELOADING=1` (with `MONOTONIC_USEC`) before a SIGHUP reload and
//!   `READY=1` after it;
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, from the main loop's tick and
//!   only while the liveness checks pass: a hung main loop or stalled packet
//!   loops stop the pings, and systemd restarts the service;
//! - `STOPPING=1` on shutdown.
//!
//! Without `NOTIFY_SOCKET` it does nothing at all (no check is evaluated).
pub use crate::admin::health::Kind;
use sd_notify::NotifyState;
use std::time::{Duration, Instant};

/// Where the messages go: systemd's socket, or a test's recorder.
pub trait Sink {
    fn send(&mut self, states: &[NotifyState<'_>]);
}

/// `NOTIFY_SOCKET`: a datagram socket connected at start, while the daemon
/// still runs as root (after the privilege drop it may not be allowed to
/// reach the socket's path), else the sd-notify crate's fresh socket per
/// message. A failed send is logged once (systemd gone or a wrong path) and
/// does not stop the daemon.
pub struct Systemd {
    warned: bool,
    sock: Option<std::os::unix::net::UnixDatagram>,
}

impl Systemd {
    fn connect() -> Option<std::os::unix::net::UnixDatagram> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let addr = match path.as_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name).ok()?,
            None => SocketAddr::from_pathname(&path).ok()?,
        };
        let sock = UnixDatagram::unbound().ok()?;
        sock.connect_addr(&addr).ok()?;
        Some(sock)
    }

    fn send_connected(&self, states: &[NotifyState<'_>]) -> std::io::Result<()> {
        let Some(sock) = &self.sock else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
        sock.send(msg.as_bytes()).map(|_| ())
    }
}

impl Sink for Systemd {
    fn send(&mut self, states: &[NotifyState<'_>]) {
        // The connected socket first; a fresh one if that fails (systemd
        // re-executed and made a new socket).
        if let Err(e) = self
            .send_connected(states)
            .or_else(|_| sd_notify::notify(states))
        {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!(error = %e, "cannot notify the service manager");
            }
        }
    }
}

/// How often readiness is re-evaluated for STATUS once READY was sent.
const STATUS_EVERY: Duration = Duration::from_secs(1);

pub struct Notifier<S: Sink> {
    sink: Option<S>,
    /// Half the watchdog timeout, when systemd asked for pings.
    ping_every: Option<Duration>,
    last_ping: Option<Instant>,
    /// Liveness failed at the last ping due (logged once per failure).
    live_failing: bool,
    last_check: Option<Instant>,
    ready_sent: bool,
    /// The last STATUS sent.
    status: String,
    /// The last reload's outcome, shown after the readiness state.
    note: String,
}

impl Notifier<Systemd> {
    /// From the environment systemd sets: disabled without
    /// `NOTIFY_SOCKET`; pings when `WATCHDOG_USEC` is set (and
    /// `WATCHDOG_PID`, if set, is this process).
    pub fn from_env() -> Self {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Notifier::new(None, None);
        }
        Notifier::new(
            Some(Systemd {
                warned: false,
                sock: Systemd::connect(),
            }),
            sd_notify::watchdog_enabled(),
        )
    }
}

impl<S: Sink> Notifier<S> {
    /// `sink` None disables everything; `watchdog` is the whole timeout.
    pub fn new(sink: Option<S>, watchdog: Option<Duration>) -> Self {
        Notifier {
            sink,
            ping_every: watchdog.filter(|d| !d.is_zero()).map(|d| d / 2),
            last_ping: None,
            live_failing: false,
            last_check: None,
            ready_sent: false,
            status: String::new(),
            note: String::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    pub fn ready_sent(&self) -> bool {
        self.ready_sent
    }

    /// The longest the main loop may sleep before the next [`Notifier::tick`]:
    /// often until READY went out, then a quarter of the ping interval (so
    /// a ping is never late by more than that), else no limit of ours.
    pub fn tick_within(&self) -> Duration {
        if self.sink.is_none() {
            return Duration::MAX;
        }
        if !self.ready_sent {
            return Duration::from_millis(100);
        }
        self.ping_every
            .map_or(STATUS_EVERY, |p| (p / 4).min(STATUS_EVERY))
    }

    /// One turn of the main loop. `ready` and `live` run the readiness and
    /// liveness checks (Err names the first failure); they are called only
    /// when needed.
    pub fn tick(
        &mut self,
        now: Instant,
        ready: impl FnOnce() -> Result<(), String>,
        live: impl FnOnce() -> Result<(), String>,
    ) {
        if self.sink.is_none() {
            return;
        }
        if let Some(every) = self.ping_every {
            if self.last_ping.is_none_or(|t| now >= t + every) {
                match live() {
                    Ok(()) => {
                        self.send(&[NotifyState::Watchdog]);
                        self.last_ping = Some(now);
                        self.live_failing = false;
                    }
                    Err(e) => {
                        // Retried each tick; systemd acts when it runs out.
                        if !std::mem::replace(&mut self.live_failing, true) {
                            tracing::warn!("liveness failing, watchdog not pinged: {e}");
                        }
                    }
                }
            }
        }
        if self.ready_sent && self.last_check.is_some_and(|t| now < t + STATUS_EVERY) {
            return;
        }
        self.last_check = Some(now);
        let state = ready();
        let status = self.compose(&state);
        if state.is_ok() && !self.ready_sent {
            self.ready_sent = true;
            self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
            self.status = status;
        } else {
            self.set_status(status);
        }
    }

    /// Before a SIGHUP reload.
    pub fn reloading(&mut self) {
        if self.sink.is_none() {
            return;
        }
        let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading")];
        // systemd 253+ wants the reload's start time with RELOADING=1.
        if let Ok(t) = NotifyState::monotonic_usec_now() {
            states.push(t);
        }
        self.send(&states);
        self.status = "reloading".into();
    }

    /// After a SIGHUP reload (`outcome` says what happened). READY=1 only
    /// if it had been sent: a reload does not make a starting daemon ready.
    pub fn reloaded(&mut self, outcome: &str) {
        if self.sink.is_none() {
            return;
        }
        self.note = outcome.to_string();
        // The readiness part is re-evaluated at the next tick.
        let status = if self.ready_sent {
            format!("ready; {outcome}")
        } else {
            format!("starting; {outcome}")
        };
        if self.ready_sent {
            self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        } else {
            self.send(&[NotifyState::Status(&status)]);
        }
        self.status = status;
        self.last_check = None;
    }

    /// On shutdown, once.
    pub fn stopping(&mut self, why: &str) {
        if let Some(mut sink) = self.sink.take() {
            sink.send(&[NotifyState::Stopping, NotifyState::Status(why)]);
        }
    }

    fn compose(&self, state: &Result<(), String>) -> String {
        let mut s = match state {
            Ok(()) => "ready".to_string(),
            Err(e) => format!("not ready: {e}"),
        };
        if !self.note.is_empty() {
            s.push_str("; ");
            s.push_str(&self.note);
        }
        s
    }

    fn set_status(&mut self, s: String) {
        if s != self.status {
            self.send(&[NotifyState::Status(&s)]);
            self.status = s;
        }
    }

    fn send(&mut self, states: &[NotifyState<'_>]) {
        if let Some(sink) = self.sink.as_mut() {
            sink.send(states);
        }
    }
}

/// Runs the admin plane's checks of `kind` (what `/readyz` or `/livez`
/// answers); Err names the first that fails.
pub fn admin_checks(st: &crate::admin::AdminState, kind: Kind) -> Result<(), String> {
    for name in kind.checks_for(st) {
        crate::admin::health::check(st, name).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
