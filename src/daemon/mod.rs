//! Process lifecycle shared by both ways of running the daemon: the
//! wireguard-go-compatible `phantommesh [-f] IFNAME` ([`wg_mode`]) and the
//! operator's `phantommesh run --config FILE` ([`run_mode`]).
pub mod file_watch;
pub mod inherited_fd;
pub mod mesh_peers;
pub mod notify;
pub mod options;
pub mod privdrop;
pub mod privdrop_sys;
pub mod routes;
pub mod run_mode;
pub mod wakeup;
pub mod wg_mode;

#[cfg(test)]
#[path = "env_scan_tests.rs"]
mod env_scan_tests;

use crate::device::Device;
use crate::uapi::server::UapiServer;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Exit code for set-up failures (wireguard-go's ExitSetupFailed).
pub const EXIT_SETUP_FAILED: i32 = 1;

/// Why the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Signal(i32),
    TunGone,
    SocketGone,
}

/// What [`wait_events`] hands its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Hup,
    /// A moment to look at other inputs (mesh updates, a changed config
    /// file): after every wake-up, and at least every `tick` given to
    /// [`wait_events`].
    Tick,
}

/// How long the main thread sleeps with nothing to wake it: the longest a
/// deleted interface goes unnoticed (the device flags it; it cannot wake us).
pub const IDLE_TICK: Duration = Duration::from_secs(1);
/// After a wake-up, look again this soon for a while: a config file change
/// is read only once it settled (see [`file_watch`]).
pub const BUSY_TICK: Duration = Duration::from_millis(100);
const BUSY_FOR: Duration = Duration::from_secs(1);

/// Blocks until a stop condition; calls `on_hup` for each SIGHUP.
pub fn wait(dev: &Device, uapi: &UapiServer, mut on_hup: impl FnMut()) -> StopReason {
    let wake = match wakeup::Wakeup::new() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot wait for events");
            return StopReason::Signal(0);
        }
    };
    wait_events(dev, uapi, wake, |e| {
        if e == Event::Hup {
            on_hup()
        }
        IDLE_TICK
    })
}

/// Blocks until a stop condition, sleeping on `wake` (signals, the UAPI
/// socket's directory, and whatever else holds its [`wakeup::Waker`]);
/// calls `on_event` for each SIGHUP and after each wake-up. `on_event`
/// returns the longest sleep it allows before the next [`Event::Tick`].
pub fn wait_events(
    dev: &Device,
    uapi: &UapiServer,
    mut wake: wakeup::Wakeup,
    mut on_event: impl FnMut(Event) -> Duration,
) -> StopReason {
    if let Err(e) = wake.watch_dir_of(uapi.path()) {
        // Still correct, only slower: the file is checked every tick.
        tracing::warn!(error = %e, "the UAPI socket's deletion is noticed only by polling");
    }
    let mut busy_until = std::time::Instant::now();
    loop {
        let sigs = wake.take_signals();
        if let Some(sig) = sigs.stop {
            tracing::info!(signal = sig, "shutting down on signal");
            return StopReason::Signal(sig);
        }
        let mut tick = IDLE_TICK;
        if sigs.hup {
            tick = tick.min(on_event(Event::Hup));
        }
        if dev.tun_gone() {
            tracing::info!("interface was deleted; shutting down");
            return StopReason::TunGone;
        }
        if !uapi.file_present() {
            tracing::info!(path = %uapi.path().display(), "UAPI socket was deleted; shutting down");
            return StopReason::SocketGone;
        }
        tick = tick.min(on_event(Event::Tick));
        let now = std::time::Instant::now();
        let timeout = if now < busy_until {
            tick.min(BUSY_TICK)
        } else {
            tick
        };
        if wake.wait(timeout) {
            busy_until = std::time::Instant::now() + BUSY_FOR;
        }
    }
}

/// Self-test period while passing (PHANTOMMESH_SELF_TEST_INTERVAL seconds
/// overrides it; 0 disables periodic tests after the first).
pub fn self_test_interval() -> Duration {
    let secs = std::env::var("PHANTOMMESH_SELF_TEST_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(60);
    if secs == 0 {
        Duration::from_secs(u64::MAX / 4)
    } else {
        Duration::from_secs(secs)
    }
}

/// Creates the admin state, starts the self tests and, when `listen` is
/// set, the HTTP server. A busy address is logged; the tunnel runs on.
pub fn start_admin(
    dev: &std::sync::Arc<Device>,
    ifname: &str,
    listen: Option<std::net::SocketAddr>,
    token: Option<Vec<u8>>,
    gates: crate::gates::GatesConfig,
) -> std::sync::Arc<crate::admin::AdminState> {
    let st = crate::admin::AdminState::new(dev.clone(), ifname, token, gates);
    st.uapi_listening.store(true, Ordering::Relaxed);
    crate::admin::spawn_self_tests(st.clone(), self_test_interval());
    crate::admin::spawn_gate_ticker(st.clone());
    if let Some(addr) = listen {
        let _ = crate::admin::serve(st.clone(), addr);
    }
    st
}
