//! Process lifecycle shared by both ways of running the daemon: the
//! wireguard-go-compatible `phantommesh [-f] IFNAME` ([`wg_mode`]) and the
//! operator's `phantommesh run --config FILE` ([`run_mode`]).
pub mod file_watch;
pub mod inherited_fd;
pub mod mesh_peers;
pub mod notify;
pub mod privdrop;
pub mod privdrop_sys;
pub mod routes;
pub mod run_mode;
pub mod wg_mode;

use crate::device::Device;
use crate::uapi::server::UapiServer;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
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
    /// Every 100 ms: a moment to look at other inputs (mesh updates, a
    /// changed config file).
    Tick,
}

/// Blocks until a stop condition; calls `on_hup` for each SIGHUP.
pub fn wait(dev: &Device, uapi: &UapiServer, mut on_hup: impl FnMut()) -> StopReason {
    wait_events(dev, uapi, |e| {
        if e == Event::Hup {
            on_hup()
        }
    })
}

/// Blocks until a stop condition; calls `on_event` for each SIGHUP and
/// every 100 ms.
pub fn wait_events(dev: &Device, uapi: &UapiServer, mut on_event: impl FnMut(Event)) -> StopReason {
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return StopReason::Signal(0);
        }
    };
    loop {
        for sig in signals.pending() {
            if sig == SIGHUP {
                on_event(Event::Hup);
            } else {
                tracing::info!(signal = sig, "shutting down on signal");
                return StopReason::Signal(sig);
            }
        }
        if dev.tun_gone() {
            tracing::info!("interface was deleted; shutting down");
            return StopReason::TunGone;
        }
        if !uapi.file_present() {
            tracing::info!(path = %uapi.path().display(), "UAPI socket was deleted; shutting down");
            return StopReason::SocketGone;
        }
        on_event(Event::Tick);
        std::thread::sleep(Duration::from_millis(100));
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
