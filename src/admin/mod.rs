//! The admin HTTP server: health for the kubelet, `/tunnel-test` smoke
//! tests, Prometheus `/metrics`, and `/gates` go-live verdicts.
//!
//! It runs on its own thread and runtime, answers from state the engine
//! already keeps (atomics, short locks), and can never take the tunnel down:
//! if its address is taken it logs that and the daemon carries on.
//! Endpoints that trigger work (`/tunnel-test`) run one at a time, are
//! bounded in time, and take a bearer token when one is configured; off
//! loopback a token is required and guards the keys too (see [`auth`]).
pub mod auth;
pub mod gates;
pub mod handshake_limit;
pub mod health;
pub mod mesh;
pub mod peer_probe;
pub mod probe;
pub mod routes;
pub mod server;
pub mod tunnel_test;

use crate::device::Device;
use crate::mesh::MeshState;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tunnel_test::TestReport;

/// Environment variable naming the admin address in the wireguard-go-style
/// mode (`off` disables the server).
pub const ADMIN_ENV: &str = "PHANTOMMESH_ADMIN_LISTEN";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9586";

/// Everything the admin endpoints read.
pub struct AdminState {
    pub dev: Arc<Device>,
    pub ifname: String,
    pub uapi_listening: AtomicBool,
    pub config_applied: AtomicBool,
    /// The last self test (startup, then periodic).
    pub self_test: Mutex<Option<TestReport>>,
    /// Bearer token: `/tunnel-test` always needs it, `/metrics` and
    /// `/mesh` off loopback (see [`auth`]).
    pub token: Option<Vec<u8>>,
    /// Set when the server listens on a non-loopback address.
    pub off_loopback: AtomicBool,
    /// When each peer last had a handshake forced by `/tunnel-test?peer=`.
    pub forced_handshakes: handshake_limit::ForcedHandshakes,
    /// Held while a tunnel test runs.
    pub test_busy: AtomicBool,
    pub tests_run: AtomicU64,
    pub tests_failed: AtomicU64,
    pub gates: gates::GateState,
    /// Per-peer probe addresses (`probe` in the TOML config) that
    /// `/tunnel-test?peer=` pings after the handshake.
    pub probe_addresses: RwLock<HashMap<[u8; 32], IpAddr>>,
    pub server_stats: Arc<server::ServerStats>,
    /// Mesh membership, when run mode has a `[mesh]` section (set once).
    mesh: OnceLock<Arc<MeshState>>,
}

impl AdminState {
    pub fn new(
        dev: Arc<Device>,
        ifname: &str,
        token: Option<Vec<u8>>,
        gates_cfg: crate::gates::GatesConfig,
    ) -> Arc<AdminState> {
        let gates = gates::GateState::new(gates_cfg, &dev.counters());
        Arc::new(AdminState {
            gates,
            dev,
            ifname: ifname.to_string(),
            uapi_listening: AtomicBool::new(false),
            config_applied: AtomicBool::new(false),
            self_test: Mutex::new(None),
            token,
            off_loopback: AtomicBool::new(false),
            forced_handshakes: Default::default(),
            test_busy: AtomicBool::new(false),
            tests_run: AtomicU64::new(0),
            tests_failed: AtomicU64::new(0),
            probe_addresses: RwLock::new(HashMap::new()),
            server_stats: Arc::default(),
            mesh: OnceLock::new(),
        })
    }

    /// Attaches the mesh agent's state: `/mesh`, the `mesh` readiness
    /// check, the mesh metrics and the `mesh` gate's data appear, and the
    /// probe thread starts (see [`mesh`]). Only the first call counts.
    pub fn set_mesh(self: &Arc<Self>, m: Arc<MeshState>) {
        if self.attach_mesh(m.clone()) {
            mesh::spawn_probes(self.clone(), m);
        }
    }

    /// [`Self::set_mesh`] without the probe thread; false if one was set.
    pub fn attach_mesh(&self, m: Arc<MeshState>) -> bool {
        self.mesh.set(m).is_ok()
    }

    pub fn mesh(&self) -> Option<&Arc<MeshState>> {
        self.mesh.get()
    }

    /// `/mesh` now; None without a mesh.
    pub fn mesh_view(&self) -> Option<mesh::MeshView> {
        let m = self.mesh()?;
        Some(mesh::view(
            m,
            &self.dev,
            std::time::Instant::now(),
            std::time::SystemTime::now(),
        ))
    }

    /// Replaces the probe addresses (at start and on every config reload).
    pub fn set_probe_addresses(&self, probes: HashMap<[u8; 32], IpAddr>) {
        *self.probe_addresses.write() = probes;
    }

    pub fn probe_address(&self, public_key: &[u8; 32]) -> Option<IpAddr> {
        self.probe_addresses.read().get(public_key).copied()
    }

    /// Runs a tunnel test unless one is running (then None).
    pub fn run_test(&self, peer: Option<[u8; 32]>, probes: usize) -> Option<TestReport> {
        self.run_test_recording(peer, probes, true)
    }

    /// The periodic self test. A failure is repeated once at once, and
    /// readiness takes only the repeat's verdict: one echo lost on a busy
    /// machine must not make a healthy node unready for a whole interval.
    /// Both runs count in the metrics and the gates' window.
    pub fn run_periodic_self_test(&self, probes: usize) -> Option<TestReport> {
        match self.run_test_recording(None, probes, false)? {
            r if r.ok => Some(r),
            _ => self.run_test_recording(None, probes, true),
        }
    }

    /// Runs a test; a self test's report becomes readiness's verdict when
    /// it passed or `record_failure` is set.
    fn run_test_recording(
        &self,
        peer: Option<[u8; 32]>,
        probes: usize,
        record_failure: bool,
    ) -> Option<TestReport> {
        let _busy = BusyFlag::claim(&self.test_busy)?;
        let link_ups = self.link_ups_now();
        let mut rep = match peer {
            Some(k) => {
                let handshake = match self.forced_handshakes.claim(&k, std::time::Instant::now()) {
                    Ok(()) => tunnel_test::Handshake::Force,
                    Err(retry_after) => tunnel_test::Handshake::Reuse { retry_after },
                };
                let probe = self
                    .probe_address(&k)
                    .map(|address| tunnel_test::PeerProbe {
                        address,
                        count: probes,
                    });
                tunnel_test::peer_test_probing(
                    &self.dev,
                    &self.ifname,
                    k,
                    probe,
                    handshake,
                    Duration::from_secs(5),
                )
            }
            None => tunnel_test::self_test(&self.dev, &self.ifname, probes),
        };
        rep.link_ups = link_ups;
        self.tests_run.fetch_add(1, Ordering::Relaxed);
        let (sent, received, rtts) = rep.totals();
        self.gates.record_test(sent, received, &rtts);
        for d in &rtts {
            self.dev.observe_tunnel_test_rtt(*d);
        }
        if !rep.ok {
            self.tests_failed.fetch_add(1, Ordering::Relaxed);
        }
        if peer.is_none() && (rep.ok || record_failure) {
            *self.self_test.lock() = Some(rep.clone());
        }
        Some(rep)
    }

    /// The device's count of link returns, after a look at the link.
    fn link_ups_now(&self) -> u64 {
        self.dev.link_state();
        self.dev.link_ups()
    }

    /// Whether the link came back up since the recorded self test started
    /// (then that verdict is stale and a new test is due at once).
    pub fn link_returned_since_self_test(&self) -> bool {
        let ups = self.link_ups_now();
        self.self_test
            .lock()
            .as_ref()
            .is_some_and(|r| r.link_ups != ups)
    }
}

/// How often the self-test thread looks whether the link came back: the
/// device notices link changes on its timer thread's chores (once a
/// second, [`crate::device::timers::HOUSEKEEPING`]), so looking more often
/// would only wake an idle daemon for nothing.
const LINK_LOOK: Duration = crate::device::timers::HOUSEKEEPING;

/// Starts the periodic self test: soon after start, then every `interval`
/// while passing and every 10 s while failing (so readiness recovers fast),
/// and at once whenever the link comes back up (a test that overlapped a
/// down link, or one from before it, says nothing about the node now).
pub fn spawn_self_tests(st: Arc<AdminState>, interval: Duration) {
    let _ = std::thread::Builder::new().name("pm-selftest".into()).spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        // Log a failure when it starts or changes, not every retry.
        let mut last_failure: Option<Vec<String>> = None;
        loop {
            if st.dev.is_closed() {
                return;
            }
            let ups = st.link_ups_now();
            let wait = match st.run_periodic_self_test(tunnel_test::DEFAULT_PROBES) {
                Some(r) if r.ok => {
                    if last_failure.take().is_some() {
                        tracing::info!("self tunnel test passes again");
                    }
                    interval
                }
                Some(r) => {
                    if last_failure.as_ref() != Some(&r.errors) {
                        tracing::warn!(errors = ?r.errors, "self tunnel test failed; readiness is false until it passes");
                        last_failure = Some(r.errors.clone());
                    }
                    Duration::from_secs(10).min(interval)
                }
                None => Duration::from_secs(1),
            };
            let until = std::time::Instant::now() + wait;
            // Shutdown (the thread is not joined) and a returned link are
            // noticed within LINK_LOOK.
            loop {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                if st.dev.is_closed() {
                    return;
                }
                if st.link_ups_now() != ups {
                    tracing::debug!("link came up: self test at once");
                    break;
                }
                std::thread::sleep(left.min(LINK_LOOK));
            }
        }
    });
}

/// Feeds the gates' window from the device counters once a second.
pub fn spawn_gate_ticker(st: Arc<AdminState>) {
    let _ = std::thread::Builder::new()
        .name("pm-gates".into())
        .spawn(move || {
            while !st.dev.is_closed() {
                std::thread::sleep(Duration::from_secs(1));
                st.gates.tick(&st.dev.counters(), std::time::Instant::now());
            }
        });
}

/// Environment variable naming a gates file that replaces the built-in
/// config/gates.toml.
pub const GATES_ENV: &str = "PHANTOMMESH_GATES";

/// The gates config: the file `path` names (the daemon or CLI reads it from
/// PHANTOMMESH_GATES), else built in.
pub fn load_gates(path: Option<String>) -> Result<crate::gates::GatesConfig, String> {
    let path = path.filter(|p| !p.is_empty());
    crate::gates::GatesConfig::load(path.as_deref().map(std::path::Path::new))
        .map_err(|e| e.to_string())
}

/// Parses an admin address; None for "off".
pub fn parse_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("admin address {s:?} is not ip:port or \"off\""))
}

/// Connections the kernel may queue before the server accepts them. Queued
/// connections cost no descriptor; a full queue drops handshakes, which
/// costs a client a 1 s retransmission, so it is roomy for floods of
/// connections that the server then closes (see server.rs).
const LISTEN_BACKLOG: i32 = 1024;

fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std's TcpListener::bind: a restarted daemon rebinds at once.
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(LISTEN_BACKLOG)?;
    Ok(sock.into())
}

/// Serves the admin API on `addr` in a background thread. A bind failure is
/// logged and returned; the tunnel keeps running either way.
pub fn serve(st: Arc<AdminState>, addr: SocketAddr) -> Result<SocketAddr, String> {
    let std_listener = listen(addr).map_err(|e| {
        let msg = format!(
            "admin server cannot listen on {addr}: {e}; the tunnel keeps running without it"
        );
        tracing::error!("{msg}");
        msg
    })?;
    let local = std_listener.local_addr().map_err(|e| e.to_string())?;
    st.off_loopback
        .store(!auth::is_loopback(&local), Ordering::Relaxed);
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("pm-admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "admin runtime failed to start");
                    return;
                }
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                let stats = st.server_stats.clone();
                let app = routes::router(st);
                server::run(listener, app, server::Limits::default(), stats).await;
            });
        })
        .map_err(|e| e.to_string())?;
    tracing::info!(%local, "admin server listening");
    Ok(local)
}

#[cfg(test)]
#[path = "self_test_tests.rs"]
mod self_test_tests;

/// A claimed busy flag, cleared when dropped: also when the test it
/// guards panics, so that one panic cannot leave `/tunnel-test` answering
/// 429 for the rest of the process's life.
struct BusyFlag<'a>(&'a AtomicBool);

impl<'a> BusyFlag<'a> {
    /// The flag, now set; `None` when it was set already.
    fn claim(flag: &'a AtomicBool) -> Option<BusyFlag<'a>> {
        (!flag.swap(true, Ordering::AcqRel)).then_some(BusyFlag(flag))
    }
}

impl Drop for BusyFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod busy_flag_tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_a_panic_releases_it() {
        let flag = AtomicBool::new(false);
        let held = BusyFlag::claim(&flag).expect("free");
        assert!(BusyFlag::claim(&flag).is_none(), "claimed twice");
        drop(held);
        assert!(!flag.load(Ordering::Acquire));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _b = BusyFlag::claim(&flag).expect("free again");
            panic!("a test that panics");
        }));
        assert!(r.is_err());
        assert!(BusyFlag::claim(&flag).is_some(), "left busy after a panic");
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod auth_tests;
