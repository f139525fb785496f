//! `phantommesh run --config FILE`: the operator's mode. Reads a TOML (or
//! wg-quick `.conf`) file, creates and configures the interface itself
//! (addresses, MTU, link up), and re-applies the file on SIGHUP as
//! `wg syncconf` would: only the difference, keeping live sessions.
use super::file_watch::FileWatch;
use super::notify::{self, Kind, Notifier};
use super::routes::RouteSync;
use super::{mesh_peers, wait_events, Event, StopReason, EXIT_SETUP_FAILED};
use crate::cli::keys::{
    encode_base64_key, load_or_generate_private_key, public_key, read_key_file,
};
use crate::cli::logging::{self, LogFormat};
use crate::config::{self, Config, KeySource, MeshConfig};
use crate::device::Device;
use crate::io::linux_bind::LinuxBind;
use crate::io::linux_tun;
use crate::mesh::{AgentParams, Member, MeshState, MeshUpdate};
use crate::uapi::protocol::{AllowedIpChange, DeviceSet, PeerSet};
use crate::uapi::server::UapiServer;
use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

/// The admin address and token: a token file that cannot be read, or a
/// non-loopback address without a token or the opt-out, is a config error
/// (see [`crate::admin::auth`]); the opt-out is warned about once.
fn admin_settings(cfg: &Config) -> Result<(Option<std::net::SocketAddr>, Option<Vec<u8>>), String> {
    let listen = crate::admin::parse_listen(&cfg.admin.listen)?;
    let token = match &cfg.admin.token_file {
        Some(p) => Some(crate::admin::auth::load_token(p)?),
        None => None,
    };
    let warning = crate::admin::auth::listen_rule(
        listen,
        token.is_some(),
        cfg.admin.allow_unauthenticated,
        &crate::admin::auth::RUN_MODE_NAMES,
    )?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    Ok((listen, token))
}

pub fn main(path: &Path, format: LogFormat) -> i32 {
    logging::init(format);
    // Watch before the first read: a change in between then costs one
    // extra reload instead of being missed.
    let watch = match FileWatch::new(path) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("config changes need SIGHUP: {e}");
            None
        }
    };
    let cfg = match config::load_with_warnings(path, &|k| std::env::var(k).ok()) {
        Ok((c, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            c
        }
        Err(e) => {
            tracing::error!("invalid config: {e}");
            eprintln!("phantommesh: {e}");
            return EXIT_SETUP_FAILED;
        }
    };
    let set = match device_set(&cfg, &[]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("phantommesh: {e}");
            return EXIT_SETUP_FAILED;
        }
    };
    // Before any interface exists: a refused admin setting leaves nothing.
    let (listen, token) = match admin_settings(&cfg) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("phantommesh: {e}");
            return EXIT_SETUP_FAILED;
        }
    };
    // Checked by `run` before this (cli::check), so an error here is rare:
    // the environment changed in between.
    let opts = match super::options::device_options(&cfg.tuning, |k| std::env::var(k).ok()) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("phantommesh: {e}");
            return EXIT_SETUP_FAILED;
        }
    };
    tracing::info!("tuning: {}", super::options::describe(&opts));
    let name = cfg.interface.name.clone();
    let tun = match crate::io::create_tun(&name, opts.offload) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(interface = %name, error = %e, "cannot create TUN");
            eprintln!("phantommesh: cannot create TUN {name}: {e}");
            return EXIT_SETUP_FAILED;
        }
    };
    if let Err(e) = configure_link(&cfg, &[]) {
        tracing::error!("{e}");
        return EXIT_SETUP_FAILED;
    }
    let bind = LinuxBind::with_options(super::options::udp_options(&opts));
    let dev = Device::with_options(tun, Arc::new(bind), opts);
    if cfg.interface.listen_port.is_none() {
        let _ = dev.rebind(0, 0);
    }
    if let Err(e) = dev.apply(&set) {
        tracing::error!(error = %e, "cannot apply config");
        return EXIT_SETUP_FAILED;
    }
    let uapi = match UapiServer::bind(&name).and_then(|u| u.serve(dev.clone()).map(|_| u)) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "cannot open UAPI socket");
            return EXIT_SETUP_FAILED;
        }
    };
    let key = dev
        .public_key()
        .map(|k| encode_base64_key(&k))
        .unwrap_or_default();
    tracing::info!(interface = %name, peers = cfg.peers.len(), public_key = %key, "device started");
    let gates = match crate::admin::load_gates(std::env::var(crate::admin::GATES_ENV).ok()) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("invalid gates config: {e}");
            return EXIT_SETUP_FAILED;
        }
    };
    let admin = super::start_admin(&dev, &name, listen, token, gates);
    admin.set_probe_addresses(probe_addresses(&cfg));
    let mesh = match &cfg.mesh {
        Some(m) => match start_mesh(m, &cfg, &dev) {
            Ok(run) => Some(run),
            Err(e) => {
                tracing::error!("{e}");
                return EXIT_SETUP_FAILED;
            }
        },
        None => None,
    };
    if let Some(m) = &mesh {
        admin.set_mesh(m.state.clone());
    }
    admin
        .config_applied
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut routes = RouteSync::new(
        &name,
        cfg.interface.table,
        cfg.interface.allow_default_route,
    );
    sync_routes(&mut routes, &cfg);
    // Connected to NOTIFY_SOCKET before the drop, which may bar its path.
    let mut sd = Notifier::from_env();
    // Everything privileged is set up: drop to the configured user.
    super::privdrop::drop_after_setup(
        super::privdrop::options(cfg.interface.user.as_deref(), cfg.interface.drop_privileges),
        dev.listen_port(),
        &super::privdrop::run_mode_files(path, &cfg),
        cfg.mesh.is_some() || cfg.peers.iter().any(|p| p.probe.is_some()),
        uapi.path(),
        cfg.mesh
            .as_ref()
            .map(|m| mesh_cache_path(m, &cfg))
            .as_deref(),
    );
    let mut run = Running {
        watch,
        routes,
        path: path.to_path_buf(),
        file: cfg.clone(),
        applied: cfg,
        mesh,
        mesh_update: None,
        mesh_applied: HashMap::new(),
        hold: mesh_peers::KeepaliveHold::new(public_key(&set.private_key.unwrap_or_default())),
        private: zeroize::Zeroizing::new(set.private_key.unwrap_or_default()),
    };
    let wake = match super::wakeup::Wakeup::new() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("{e}");
            dev.close();
            return EXIT_SETUP_FAILED;
        }
    };
    if let Some(w) = &run.watch {
        w.set_waker(wake.waker());
    }
    // Mesh updates and the keepalive hold are looked at on ticks.
    let mesh_tick = if run.mesh.is_some() {
        super::BUSY_TICK
    } else {
        super::IDLE_TICK
    };
    let reason = wait_events(&dev, &uapi, wake, |ev| {
        if ev == Event::Hup {
            sd.reloading();
        }
        let result = match ev {
            Event::Hup => run.reload(&dev),
            Event::Tick => run.tick(&dev),
        };
        match &result {
            Ok(true) => admin.set_probe_addresses(probe_addresses(&run.applied)),
            Ok(false) => {}
            Err(e) => tracing::error!("config reload failed, keeping the running config: {e}"),
        }
        match (ev, result) {
            (Event::Hup, Ok(_)) => sd.reloaded(&format!(
                "config reloaded, peers: {}",
                run.applied.peers.len()
            )),
            (Event::Hup, Err(e)) => {
                sd.reloaded(&format!("reload failed, running config kept: {e}"))
            }
            (Event::Tick, _) => sd.tick(
                std::time::Instant::now(),
                || notify::admin_checks(&admin, Kind::Ready),
                || notify::admin_checks(&admin, Kind::Live),
            ),
        }
        mesh_tick.min(sd.tick_within())
    });
    tracing::info!(?reason, "stopping");
    sd.stopping(&match reason {
        StopReason::Signal(s) => format!("stopping on signal {s}"),
        StopReason::TunGone => "stopping: the interface was deleted".into(),
        StopReason::SocketGone => "stopping: the UAPI socket was deleted".into(),
    });
    if let Some(m) = &run.mesh {
        m.handle.stop();
    }
    if let Err(e) = run.routes.clear() {
        tracing::warn!("removing routes: {e}");
    }
    dev.close();
    super::privdrop::release_uapi_socket(uapi.path());
    drop(uapi);
    0
}

/// The mesh agent of a running daemon.
struct MeshRun {
    handle: crate::mesh::AgentHandle,
    updates: std::sync::mpsc::Receiver<MeshUpdate>,
    state: Arc<MeshState>,
    keepalive: u16,
}

fn start_mesh(m: &MeshConfig, cfg: &Config, dev: &Device) -> Result<MeshRun, String> {
    let private = load_key(&cfg.interface.private_key, false)?;
    let cache_path = mesh_cache_path(m, cfg);
    let params = AgentParams {
        mesh: m.clone(),
        public_key: public_key(&private),
        listen_port: dev.listen_port(),
        cache_path,
    };
    let state = Arc::new(MeshState::new(&m.node_name, &m.prefix));
    let (handle, updates) = crate::mesh::start(params, state.clone())?;
    tracing::info!(node = %m.node_name, prefix = %m.prefix, endpoints = ?m.endpoints, "mesh agent started");
    Ok(MeshRun {
        handle,
        updates,
        state,
        keepalive: m.persistent_keepalive,
    })
}

/// The mesh cache: `cache_file`, else beside the private key file.
fn mesh_cache_path(m: &MeshConfig, cfg: &Config) -> std::path::PathBuf {
    m.cache_file.clone().unwrap_or_else(|| {
        let dir = match &cfg.interface.private_key {
            KeySource::File(p) => p.parent().map(Path::to_path_buf),
            KeySource::Inline(_) => None,
        };
        dir.filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| "/var/lib/phantommesh".into())
            .join("mesh-cache.json")
    })
}

/// Routes for every peer's allowed IPs that the interface's own prefixes
/// do not cover (as wg-quick does); a failure is logged, the tunnel runs.
fn sync_routes(routes: &mut RouteSync, cfg: &Config) {
    let peers: Vec<(IpAddr, u8)> = cfg
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter().copied())
        .collect();
    if let Err(e) = routes.sync(&cfg.interface.addresses, &peers) {
        tracing::warn!("routes: {e}");
    }
}

/// What run mode applied, and where it came from.
struct Running {
    /// The config file's watch (None: only SIGHUP reloads).
    watch: Option<FileWatch>,
    routes: RouteSync,
    path: std::path::PathBuf,
    /// The config file as last read.
    file: Config,
    /// The file merged with the mesh: what the device runs.
    applied: Config,
    mesh: Option<MeshRun>,
    mesh_update: Option<MeshUpdate>,
    mesh_applied: HashMap<[u8; 32], Member>,
    /// New mesh pairs where this node lets the other start the handshake.
    hold: mesh_peers::KeepaliveHold,
    /// The interface's private key as last read (at start and on reload).
    private: zeroize::Zeroizing<[u8; 32]>,
}

impl Running {
    /// SIGHUP: re-reads the file and applies the difference. Ok(true)
    /// when something was applied.
    fn reload(&mut self, dev: &Device) -> Result<bool, String> {
        let cfg =
            config::load(&self.path, &|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
        if cfg.interface.name != self.file.interface.name {
            return Err(format!(
                "interface name changed from {} to {}; restart to rename",
                self.file.interface.name, cfg.interface.name
            ));
        }
        if cfg.mesh != self.file.mesh {
            tracing::warn!("the [mesh] section changed; restart the daemon to apply it");
        }
        // Never generate here: a vanished key file is an error, and the
        // running config (and key) stay.
        self.private = zeroize::Zeroizing::new(reload_key(&cfg.interface.private_key)?);
        let merged = self.merge(&cfg);
        self.apply(dev, merged)?;
        tracing::info!(peers = self.applied.peers.len(), "config reloaded");
        self.file = cfg;
        Ok(true)
    }

    /// Reloads a changed config file; applies the latest mesh update, if
    /// one came.
    fn tick(&mut self, dev: &Device) -> Result<bool, String> {
        if self.watch.as_ref().is_some_and(|w| w.changed()) {
            tracing::info!(path = %self.path.display(), "config file changed; reloading");
            return self.reload(dev);
        }
        let Some(m) = &self.mesh else {
            return Ok(false);
        };
        let now = std::time::Instant::now();
        let update = m.updates.try_iter().last();
        if update.is_none() && !self.hold.expire(now) {
            return Ok(false);
        }
        if let Some(u) = update {
            self.hold.note(&u, &self.mesh_applied, now);
            self.mesh_update = Some(u);
        }
        let merged = self.merge(&self.file.clone());
        self.apply(dev, merged)?;
        Ok(true)
    }

    fn merge(&self, file: &Config) -> Config {
        let keepalive = self.mesh.as_ref().map_or(0, |m| m.keepalive);
        mesh_peers::effective(
            file,
            self.mesh_update.as_ref(),
            keepalive,
            &self.mesh_applied,
            &self.hold,
        )
    }

    fn apply(&mut self, dev: &Device, cfg: Config) -> Result<(), String> {
        let running: Vec<[u8; 32]> = dev.peer_keys();
        let set = device_set_keyed(&cfg, &running, *self.private)?;
        configure_link(&cfg, &self.applied.interface.addresses)?;
        dev.apply(&set).map_err(|e| e.to_string())?;
        self.mesh_applied = mesh_peers::by_key(self.mesh_update.as_ref());
        let (table, default) = (cfg.interface.table, cfg.interface.allow_default_route);
        if (table, default)
            != (
                self.applied.interface.table,
                self.applied.interface.allow_default_route,
            )
        {
            if let Err(e) = self.routes.clear() {
                tracing::warn!("removing routes: {e}");
            }
            self.routes = RouteSync::new(&cfg.interface.name, table, default);
        }
        sync_routes(&mut self.routes, &cfg);
        self.applied = cfg;
        Ok(())
    }
}

/// The peers' probe addresses for `/tunnel-test?peer=`.
fn probe_addresses(cfg: &Config) -> HashMap<[u8; 32], IpAddr> {
    cfg.peers
        .iter()
        .filter_map(|p| Some((p.public_key, p.probe?)))
        .collect()
}

/// Assigns addresses (removing ones no longer configured), sets the MTU and
/// brings the link up.
fn configure_link(cfg: &Config, old_addresses: &[(std::net::IpAddr, u8)]) -> Result<(), String> {
    let name = &cfg.interface.name;
    let mtu = cfg.interface.mtu.unwrap_or(super::wg_mode::DEFAULT_MTU);
    linux_tun::set_mtu(name, mtu.into())
        .map_err(|e| format!("cannot set MTU {mtu} on {name}: {e}"))?;
    for a in old_addresses
        .iter()
        .filter(|a| !cfg.interface.addresses.contains(a))
    {
        let _ = linux_tun::del_address(name, a.0, a.1);
    }
    for &(ip, prefix) in cfg
        .interface
        .addresses
        .iter()
        .filter(|a| !old_addresses.contains(a))
    {
        linux_tun::add_address(name, ip, prefix)
            .map_err(|e| format!("cannot add {ip}/{prefix} to {name}: {e}"))?;
    }
    linux_tun::set_up(name).map_err(|e| format!("cannot bring {name} up: {e}"))
}

fn load_key(src: &KeySource, generate: bool) -> Result<[u8; 32], String> {
    match src {
        KeySource::Inline(k) => Ok(*k),
        KeySource::File(p) if generate => {
            let (key, created) = load_or_generate_private_key(p).map_err(|e| e.to_string())?;
            if created {
                tracing::info!(path = %p.display(), public_key = %encode_base64_key(&public_key(&key)), "generated a new private key");
            }
            Ok(key)
        }
        KeySource::File(p) => read_key_file(p).map_err(|e| e.to_string()),
    }
}

/// The private key on reload: read, never generated (a key file that
/// vanished is an error, and the running key stays).
fn reload_key(src: &KeySource) -> Result<[u8; 32], String> {
    load_key(src, false).map_err(|e| format!("private key: {e} (a reload never generates a key)"))
}

/// The set operation that makes a device match `cfg`: `running` peers that
/// the file no longer names are removed, the others updated in place.
pub fn device_set(cfg: &Config, running: &[[u8; 32]]) -> Result<DeviceSet, String> {
    let private = load_key(&cfg.interface.private_key, true)?;
    device_set_keyed(cfg, running, private)
}

/// [`device_set`] with the private key already read (mesh updates apply
/// often and must not touch the key file each time).
fn device_set_keyed(
    cfg: &Config,
    running: &[[u8; 32]],
    private: [u8; 32],
) -> Result<DeviceSet, String> {
    let mut set = DeviceSet {
        private_key: Some(private),
        listen_port: cfg.interface.listen_port,
        fwmark: Some(cfg.interface.fwmark.unwrap_or(0)),
        replace_peers: false,
        peers: Vec::new(),
    };
    for k in running {
        if !cfg.peers.iter().any(|p| &p.public_key == k) {
            set.peers.push(PeerSet {
                public_key: *k,
                remove: true,
                ..Default::default()
            });
        }
    }
    for p in &cfg.peers {
        let endpoint = match &p.endpoint {
            Some(e) => Some(
                e.to_socket_addrs()
                    .map_err(|err| format!("cannot resolve endpoint {e}: {err}"))?
                    .next()
                    .ok_or_else(|| format!("endpoint {e} resolved to nothing"))?,
            ),
            None => None,
        };
        let psk = match &p.preshared_key {
            Some(src) => load_key(src, false)?,
            None => [0u8; 32],
        };
        set.peers.push(PeerSet {
            public_key: p.public_key,
            preshared_key: Some(psk),
            endpoint,
            persistent_keepalive_interval: Some(p.persistent_keepalive.unwrap_or(0)),
            replace_allowed_ips: true,
            allowed_ips: p
                .allowed_ips
                .iter()
                .map(|&(ip, c)| AllowedIpChange::Add(ip, c))
                .collect(),
            ..Default::default()
        });
    }
    Ok(set)
}

#[cfg(test)]
#[path = "run_mode_tests.rs"]
mod tests;
