//! Renders a device's state as a Prometheus scrape.
//!
//! Everything is read from state the engine already keeps: relaxed atomics,
//! and per peer its state lock once plus the allowed-IPs table as a reader
//! (both through [`Device::peer_infos`]). No keys but public ones leave here:
//! `peer_infos` does not copy the preshared key out.
use super::exposition::{MetricType, Value, Writer};
use super::histogram::{DeviceHistograms, HistogramSnapshot};
use super::process::ProcessStats;
use crate::device::Device;
use base64::Engine;
use std::collections::HashSet;
use std::fmt::Write;
use std::sync::Arc;

/// Above this many peers, per-peer series are left out.
pub const DEFAULT_MAX_PEER_SERIES: usize = 1000;
/// At most this many prefixes go into one `allowed_ips` label.
pub const DEFAULT_MAX_ALLOWED_IPS_IN_LABEL: usize = 100;

/// What the admin layer knows that the device does not.
#[derive(Debug, Clone)]
pub struct Extra {
    /// Interface name for the `interface` label; empty means the TUN's name.
    pub interface: String,
    /// Build version for `phantommesh_build_info`.
    pub version: String,
    /// Overall liveness / readiness, if known.
    pub live: Option<bool>,
    pub ready: Option<bool>,
    /// Individual health checks, by name, and whether they pass.
    pub health_checks: Vec<(String, bool)>,
    /// Go-live gates, by name, and whether they passed.
    pub gates: Vec<(String, bool)>,
    /// Offload features (TSO, USO, UDP GSO/GRO...) and whether they are on.
    pub offloads: Vec<(String, bool)>,
    pub tunnel_tests_run: u64,
    pub tunnel_tests_failed: u64,
    /// Per-peer series are emitted only up to this many peers (cardinality
    /// bound); above it, none are and `phantommesh_peer_metrics_truncated` is 1.
    pub max_peer_series: usize,
    /// Longer allowed-IPs lists are cut in the `allowed_ips` label.
    pub max_allowed_ips_in_label: usize,
    /// The latency histograms; their families are omitted when None.
    pub histograms: Option<Arc<DeviceHistograms>>,
    /// Mesh membership; its families are omitted when no mesh is configured.
    pub mesh: Option<MeshMetrics>,
    /// The `process_*` families (CPU, memory, descriptors, start time);
    /// omitted when None.
    pub process: Option<ProcessStats>,
}

/// What the mesh agent reports, for the `phantommesh_mesh_*` families.
#[derive(Debug, Clone)]
pub struct MeshMetrics {
    /// Members applied as peers (this node excluded).
    pub peers: usize,
    pub store_up: bool,
    pub sync_errors: u64,
    pub conflicts: u64,
    /// Seconds from a membership change to its application.
    pub convergence: HistogramSnapshot,
}

impl Default for Extra {
    fn default() -> Self {
        Extra {
            interface: String::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            live: None,
            ready: None,
            health_checks: Vec::new(),
            gates: Vec::new(),
            offloads: Vec::new(),
            tunnel_tests_run: 0,
            tunnel_tests_failed: 0,
            max_peer_series: DEFAULT_MAX_PEER_SERIES,
            max_allowed_ips_in_label: DEFAULT_MAX_ALLOWED_IPS_IN_LABEL,
            histograms: None,
            mesh: None,
            process: None,
        }
    }
}

/// A per-peer family: name, type, help, and how to read its value.
type PeerColumn = (
    &'static str,
    MetricType,
    &'static str,
    fn(&PeerRow) -> Value,
);

struct PeerRow {
    public_key: String,
    rx_bytes: u64,
    tx_bytes: u64,
    handshake_sec: u64,
    handshake_nsec: u32,
    allowed_ips: String,
}

/// Appends the whole scrape for `dev` to `out`.
pub fn render(out: &mut String, dev: &Device, extra: &Extra) {
    render_with(out, dev, extra.histograms.as_deref(), extra);
}

/// As [`render`], with the histograms passed separately (for when the
/// device owns them).
pub fn render_with(out: &mut String, dev: &Device, hist: Option<&DeviceHistograms>, extra: &Extra) {
    let st = dev.counters();
    let b64 = base64::engine::general_purpose::STANDARD;
    let interface = if extra.interface.is_empty() {
        dev.tun_name().to_string()
    } else {
        extra.interface.clone()
    };
    let mut w = Writer::new(out);
    use MetricType::{Counter, Gauge, Histogram};

    w.family(
        "phantommesh_build_info",
        Gauge,
        "Build information; always 1.",
    );
    w.sample(
        "phantommesh_build_info",
        &[("version", &extra.version)],
        1u64,
    );
    let own_key = dev.public_key().map(|k| b64.encode(k)).unwrap_or_default();
    w.family(
        "phantommesh_device_info",
        Gauge,
        "The device's interface and public key; always 1.",
    );
    w.sample(
        "phantommesh_device_info",
        &[("interface", &interface), ("public_key", &own_key)],
        1u64,
    );
    w.single(
        "phantommesh_listen_port",
        Gauge,
        "UDP port the device listens on (0 until bound).",
        // Not dev.info(): that copies the private key out.
        u64::from(dev.listen_port()),
    );

    let peer_count = dev.peer_count();
    let sessions = dev.session_count();
    w.single("phantommesh_peers", Gauge, "Configured peers.", peer_count);
    w.single(
        "phantommesh_sessions",
        Gauge,
        "Live sessions (receiver indices with keys).",
        sessions,
    );
    w.single(
        "phantommesh_under_load",
        Gauge,
        "1 while the handshake queue is under load (cookies required).",
        dev.is_under_load(),
    );

    w.family(
        "phantommesh_packets_total",
        Counter,
        "Data packets by direction.",
    );
    for (dir, c) in [("rx", st.rx_packets), ("tx", st.tx_packets)] {
        w.sample("phantommesh_packets_total", &[("direction", dir)], c);
    }
    w.family(
        "phantommesh_packets_dropped_total",
        Counter,
        "Packets dropped, by reason.",
    );
    let drops: [(&str, u64); 9] = [
        ("bad_mac", st.drop_bad_mac),
        ("replay", st.drop_replay),
        ("decrypt", st.drop_decrypt),
        ("no_route", st.drop_no_route),
        ("source_check", st.drop_source_check),
        ("rate_limited", st.drop_rate_limited),
        ("malformed", st.drop_malformed),
        ("no_session", st.drop_no_session),
        ("queue_full", st.drop_queue_full),
    ];
    for (reason, c) in drops {
        w.sample(
            "phantommesh_packets_dropped_total",
            &[("reason", reason)],
            c,
        );
    }
    w.family(
        "phantommesh_handshakes_total",
        Counter,
        "Handshakes by outcome.",
    );
    for (outcome, c) in [
        ("initiated", st.handshakes_initiated),
        ("completed", st.handshakes_completed),
        ("failed", st.handshakes_failed),
    ] {
        w.sample("phantommesh_handshakes_total", &[("outcome", outcome)], c);
    }
    w.single(
        "phantommesh_cookie_replies_sent_total",
        Counter,
        "Cookie replies sent while under load.",
        st.cookie_replies_sent,
    );

    // Per-peer series, bounded.
    let truncated = peer_count > extra.max_peer_series;
    w.single(
        "phantommesh_peer_metrics_truncated",
        Gauge,
        "1 when there are more peers than the per-peer series limit, so per-peer series are omitted.",
        truncated,
    );
    let rows: Vec<PeerRow> = if truncated {
        Vec::new()
    } else {
        dev.peer_infos()
            .into_iter()
            .map(|info| PeerRow {
                public_key: b64.encode(info.public_key),
                rx_bytes: info.rx_bytes,
                tx_bytes: info.tx_bytes,
                handshake_sec: info.last_handshake_time_sec,
                handshake_nsec: info.last_handshake_time_nsec,
                allowed_ips: join_prefixes(&info.allowed_ips, extra.max_allowed_ips_in_label),
            })
            .collect()
    };
    let per_peer: [PeerColumn; 3] = [
        (
            "phantommesh_peer_receive_bytes_total",
            Counter,
            "Bytes received from the peer.",
            |r| r.rx_bytes.into(),
        ),
        (
            "phantommesh_peer_transmit_bytes_total",
            Counter,
            "Bytes sent to the peer.",
            |r| r.tx_bytes.into(),
        ),
        (
            "phantommesh_peer_last_handshake_timestamp_seconds",
            Gauge,
            "Unix time of the peer's last completed handshake (0 if never).",
            |r| (r.handshake_sec as f64 + f64::from(r.handshake_nsec) / 1e9).into(),
        ),
    ];
    for (name, kind, help, get) in per_peer {
        w.family(name, kind, help);
        for r in &rows {
            w.sample(name, &[("public_key", &r.public_key)], get(r));
        }
    }
    // prometheus_wireguard_exporter's names, so existing dashboards work.
    let compat: [PeerColumn; 3] = [
        (
            "wireguard_sent_bytes_total",
            Counter,
            "Bytes sent to the peer",
            |r| r.tx_bytes.into(),
        ),
        (
            "wireguard_received_bytes_total",
            Counter,
            "Bytes received from the peer",
            |r| r.rx_bytes.into(),
        ),
        (
            "wireguard_latest_handshake_seconds",
            Gauge,
            "Unix time of the last handshake with the peer (0 if never)",
            |r| r.handshake_sec.into(),
        ),
    ];
    for (name, kind, help, get) in compat {
        w.family(name, kind, help);
        for r in &rows {
            let labels = [
                ("interface", interface.as_str()),
                ("public_key", &r.public_key),
                ("allowed_ips", &r.allowed_ips),
            ];
            w.sample(name, &labels, get(r));
        }
    }

    if let Some(h) = hist {
        let name = "phantommesh_packet_processing_seconds";
        w.family(name, Histogram, "Per-packet processing time (sampled): rx is UDP receive to TUN write, tx is TUN read to UDP send.");
        w.histogram(name, &[("direction", "rx")], &h.rx_packet.snapshot());
        w.histogram(name, &[("direction", "tx")], &h.tx_packet.snapshot());
        let name = "phantommesh_handshake_duration_seconds";
        w.family(
            name,
            Histogram,
            "Time from sending a handshake initiation to the session being established.",
        );
        w.histogram(name, &[], &h.handshake.snapshot());
        let name = "phantommesh_tunnel_test_rtt_seconds";
        w.family(name, Histogram, "Round-trip time measured by tunnel tests.");
        w.histogram(name, &[], &h.tunnel_test_rtt.snapshot());
    }

    if let Some(live) = extra.live {
        w.single(
            "phantommesh_live",
            Gauge,
            "1 when the liveness checks pass.",
            live,
        );
    }
    if let Some(ready) = extra.ready {
        w.single(
            "phantommesh_ready",
            Gauge,
            "1 when the readiness checks pass.",
            ready,
        );
    }
    named(
        &mut w,
        "phantommesh_health_check_passed",
        "check",
        "1 when the named health check passes.",
        &extra.health_checks,
    );
    named(
        &mut w,
        "phantommesh_gate_passed",
        "gate",
        "1 when the named go-live gate passed.",
        &extra.gates,
    );
    named(
        &mut w,
        "phantommesh_offload_enabled",
        "feature",
        "1 when the named offload feature is active.",
        &extra.offloads,
    );
    if let Some(m) = &extra.mesh {
        render_mesh(&mut w, m);
    }
    w.single(
        "phantommesh_tunnel_tests_total",
        Counter,
        "Tunnel tests run.",
        extra.tunnel_tests_run,
    );
    w.single(
        "phantommesh_tunnel_test_failures_total",
        Counter,
        "Tunnel tests that failed.",
        extra.tunnel_tests_failed,
    );
    if let Some(p) = &extra.process {
        super::process::render(&mut w, p);
    }
}

fn render_mesh(w: &mut Writer<'_>, m: &MeshMetrics) {
    use MetricType::{Counter, Gauge, Histogram};
    w.single(
        "phantommesh_mesh_peers",
        Gauge,
        "Mesh members applied as peers (this node excluded).",
        m.peers,
    );
    w.single(
        "phantommesh_mesh_store_up",
        Gauge,
        "1 while the mesh membership store answers.",
        m.store_up,
    );
    w.single(
        "phantommesh_mesh_sync_errors_total",
        Counter,
        "Failed exchanges with the mesh membership store.",
        m.sync_errors,
    );
    w.single(
        "phantommesh_mesh_conflicts_total",
        Counter,
        "Conflicting records (addresses or names) met in the mesh store.",
        m.conflicts,
    );
    let name = "phantommesh_mesh_convergence_seconds";
    w.family(
        name,
        Histogram,
        "Time from a mesh membership change to its application to the device's peers.",
    );
    w.histogram(name, &[], &m.convergence);
}

/// A 0/1 gauge per name; a repeated name keeps its first value (a scrape
/// with duplicate series is rejected whole by Prometheus).
fn named(w: &mut Writer<'_>, family: &str, label: &str, help: &str, items: &[(String, bool)]) {
    w.family(family, MetricType::Gauge, help);
    let mut seen = HashSet::new();
    for (name, ok) in items {
        if seen.insert(name.as_str()) {
            w.sample(family, &[(label, name)], *ok);
        }
    }
}

/// `a/n,b/m,...` as `wg` prints them, cut after `max` with a count of the rest.
fn join_prefixes(prefixes: &[(std::net::IpAddr, u8)], max: usize) -> String {
    let mut s = String::new();
    for (i, (ip, cidr)) in prefixes.iter().take(max).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{ip}/{cidr}");
    }
    if prefixes.len() > max {
        let _ = write!(s, ",+{} more", prefixes.len() - max);
    }
    s
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
