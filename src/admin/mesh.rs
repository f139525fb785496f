//! The admin plane's side of mesh membership: `/mesh`, the `mesh`
//! readiness check's data, the `mesh_peers` gate input, the mesh metrics,
//! and the echo probes of mesh members through the tunnel.
//!
//! The mesh agent owns [`MeshState`] and writes it; everything here reads
//! it, plus the device (handshake times of the members' peers). The only
//! thing written back is each member's last probe.
//!
//! **Probes.** A companion thread of the self test (`pm-meshprobe`, started
//! by [`super::AdminState::set_mesh`]) wakes every [`PROBE_INTERVAL`] and
//! pings a sample of members: the [`sample_size`] members probed longest
//! ago (never-probed ones first), [`ECHOES`] ICMP echo requests each to the
//! member's first tunnel address of a family the interface has, on a socket
//! bound to the interface ([`super::peer_probe`]), all members of a round in
//! parallel and the round bounded by [`ROUND_BUDGET`]. The sample is a
//! quarter of the members (at most [`MAX_SAMPLE`]), so every member of a
//! mesh of up to 64 is probed every 20 s (a 32-node mesh: 8 members every
//! 5 s, under 5 echo requests a second from a node, and as many to it).
//! Not the self test's own thread: that one runs every 30 s or more while
//! passing, which would probe 32 nodes only every few minutes, and a round
//! held up by dead members must never delay the self test that readiness
//! waits for. Only addresses the mesh state lists for a member, and that
//! the device routes to that member's peer, are ever probed.
use super::peer_probe;
use super::probe::interface_addresses;
use super::AdminState;
use crate::device::Device;
use crate::gates::MeshHealth;
use crate::mesh::status::{Convergence, CONVERGENCE_BUCKETS};
use crate::mesh::{Member, MeshState, ProbeResult};
use crate::metrics::render::MeshMetrics;
use crate::metrics::HistogramSnapshot;
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A member is healthy with a handshake at most this old...
pub const HANDSHAKE_FRESH: Duration = Duration::from_secs(180);
/// ...and an answered probe within this many probe cycles.
pub const PROBE_CYCLES_FRESH: u32 = 3;
/// Never less than this, so a small mesh does not flap on one late round.
pub const MIN_PROBE_FRESH: Duration = Duration::from_secs(30);
/// How often the probe thread starts a round.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Rounds to cover every member (while the sample stays under its cap).
pub const ROTATION_ROUNDS: usize = 4;
/// At most this many members per round.
pub const MAX_SAMPLE: usize = 16;
/// Echo requests per member and round (one answer makes it reachable).
pub const ECHOES: usize = 3;
/// A round never takes longer (echoes wait up to 1 s each).
pub const ROUND_BUDGET: Duration = Duration::from_secs(4);

/// Members probed per round: a quarter of them, 1 to [`MAX_SAMPLE`].
pub fn sample_size(members: usize) -> usize {
    members.div_ceil(ROTATION_ROUNDS).clamp(1, MAX_SAMPLE)
}

/// Time to probe every member once.
pub fn probe_cycle(members: usize) -> Duration {
    let rounds = members.max(1).div_ceil(sample_size(members));
    PROBE_INTERVAL * rounds as u32
}

/// How recent an answered probe must be for a member to count as healthy.
pub fn probe_freshness(members: usize) -> Duration {
    (probe_cycle(members) * PROBE_CYCLES_FRESH).max(MIN_PROBE_FRESH)
}

/// Indices into `candidates` of the `k` probed longest ago (never-probed
/// first, then oldest; ties keep the candidates' order).
pub fn pick_sample(candidates: &[Option<Instant>], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..candidates.len()).collect();
    // None sorts before Some.
    idx.sort_by_key(|&i| candidates[i]);
    idx.truncate(k);
    idx
}

/// Whether the interface has a usable (not link-local) IPv4 / IPv6 address.
fn families(ifname: &str) -> (bool, bool) {
    let addrs = interface_addresses(ifname);
    let usable = |v6: bool| {
        addrs.iter().any(|(a, _)| {
            a.is_ipv6() == v6
                && match a {
                    IpAddr::V4(v) => !v.is_link_local(),
                    IpAddr::V6(v) => !v.is_unicast_link_local(),
                }
        })
    };
    (usable(false), usable(true))
}

/// The member's first tunnel address of a family the interface has.
pub fn probe_target(m: &Member, (v4, v6): (bool, bool)) -> Option<IpAddr> {
    m.addresses
        .iter()
        .copied()
        .find(|a| if a.is_ipv6() { v6 } else { v4 })
}

/// Last handshake age of each key's (visible) device peer; None when the
/// device has no such peer or it never completed a handshake.
pub fn handshake_ages(dev: &Device, keys: &[[u8; 32]], now: SystemTime) -> Vec<Option<Duration>> {
    dev.peer_snapshots(keys)
        .into_iter()
        .map(|p| {
            let t = p?.last_handshake?;
            Some(now.duration_since(t).unwrap_or(Duration::ZERO))
        })
        .collect()
}

/// Why a member is not healthy; None when it is: a handshake within
/// [`HANDSHAKE_FRESH`] and a probe answered within `fresh`.
pub fn member_problem(
    handshake_age: Option<Duration>,
    probe: Option<ProbeResult>,
    now: Instant,
    fresh: Duration,
) -> Option<String> {
    match handshake_age {
        None => return Some("no handshake yet".into()),
        Some(a) if a > HANDSHAKE_FRESH => {
            return Some(format!("no handshake in {} s", HANDSHAKE_FRESH.as_secs()))
        }
        Some(_) => {}
    }
    match probe {
        None => Some("not probed yet".into()),
        Some(p) if now.saturating_duration_since(p.at) > fresh => {
            Some(format!("no probe in {} s", fresh.as_secs()))
        }
        Some(p) if p.rtt.is_none() => Some("last probe unanswered".into()),
        Some(_) => None,
    }
}

/// One member in `/mesh`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub name: String,
    /// Base64.
    pub public_key: String,
    /// What its record advertises, else where the device last heard it.
    pub endpoint: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub allowed_ips: Vec<String>,
    pub handshake_age_seconds: Option<f64>,
    pub last_probe: Option<ProbeView>,
    /// As the `mesh` gate counts it.
    pub healthy: bool,
    /// Why not healthy.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeView {
    pub ok: bool,
    pub rtt_ms: Option<f64>,
    pub age_seconds: f64,
}

/// `/mesh`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeshView {
    pub node: String,
    pub prefix: String,
    pub store_up: bool,
    pub started: bool,
    pub addresses: Vec<IpAddr>,
    pub members: Vec<MemberView>,
    pub conflicts: u64,
    pub sync_errors: u64,
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The mesh as `/mesh` shows it, with each member's health.
pub fn view(mesh: &MeshState, dev: &Device, now: Instant, wall: SystemTime) -> MeshView {
    let members = mesh.members();
    let keys: Vec<[u8; 32]> = members.iter().map(|m| m.public_key).collect();
    let ages = handshake_ages(dev, &keys, wall);
    let endpoints: Vec<Option<String>> = dev
        .peer_snapshots(&keys)
        .into_iter()
        .map(|p| p?.endpoint.map(|e| e.to_string()))
        .collect();
    let fresh = probe_freshness(members.len());
    let views = members
        .into_iter()
        .zip(ages)
        .zip(endpoints)
        .map(|((m, age), seen_at)| {
            let probe = mesh.probe(&m.public_key);
            let problem = member_problem(age, probe, now, fresh);
            MemberView {
                public_key: crate::noise::keys::encode_base64_key(&m.public_key),
                endpoint: m.endpoint.clone().or(seen_at),
                addresses: m.addresses.clone(),
                allowed_ips: m
                    .allowed_ips
                    .iter()
                    .map(|(ip, len)| format!("{ip}/{len}"))
                    .collect(),
                handshake_age_seconds: age.map(|a| round3(a.as_secs_f64())),
                last_probe: probe.map(|p| ProbeView {
                    ok: p.rtt.is_some(),
                    rtt_ms: p.rtt.map(|r| round3(r.as_secs_f64() * 1000.0)),
                    age_seconds: round3(now.saturating_duration_since(p.at).as_secs_f64()),
                }),
                healthy: problem.is_none(),
                problem,
                name: m.name,
            }
        })
        .collect();
    MeshView {
        node: mesh.node_name.clone(),
        prefix: mesh.prefix.clone(),
        store_up: mesh.store_up(),
        started: mesh.started(),
        addresses: mesh.own_addresses(),
        members: views,
        conflicts: mesh.conflicts(),
        sync_errors: mesh.sync_errors(),
    }
}

/// The `mesh_peers` gate's input.
pub fn health(view: &MeshView) -> MeshHealth {
    let unhealthy: Vec<String> = view
        .members
        .iter()
        .filter_map(|m| m.problem.as_ref().map(|p| format!("{}: {p}", m.name)))
        .collect();
    MeshHealth {
        store_up: view.store_up,
        members: view.members.len(),
        healthy: view.members.len() - unhealthy.len(),
        unhealthy,
    }
}

/// Cumulative buckets of the convergence histogram.
pub fn convergence_snapshot(c: &Convergence) -> HistogramSnapshot {
    let mut running = 0u64;
    let cumulative = c
        .buckets
        .iter()
        .map(|n| {
            running += n;
            running
        })
        .collect();
    HistogramSnapshot {
        bounds: CONVERGENCE_BUCKETS.to_vec(),
        cumulative,
        sum: c.sum_seconds,
        count: c.count,
    }
}

/// The mesh's metric values.
pub fn metrics(mesh: &MeshState) -> MeshMetrics {
    MeshMetrics {
        peers: mesh.members().len(),
        store_up: mesh.store_up(),
        sync_errors: mesh.sync_errors(),
        conflicts: mesh.conflicts(),
        convergence: convergence_snapshot(&mesh.convergence()),
    }
}

/// What one round did (for logs and tests).
#[derive(Debug, Default)]
pub struct Round {
    /// Members probed (at least one echo sent).
    pub probed: usize,
    /// Of those, members that answered.
    pub answered: usize,
    /// Members that could not be probed at all, with why.
    pub errors: Vec<String>,
}

/// Probes one sample of members and records the results: in the mesh
/// state, the gates' window (success rate, latency) and the tunnel-test
/// RTT histogram.
pub fn probe_round(st: &AdminState, mesh: &MeshState) -> Round {
    let mut round = Round::default();
    let members = mesh.members();
    if members.is_empty() {
        return round;
    }
    let fam = families(&st.ifname);
    // Only members the device routes to through their own peer.
    let targets: Vec<([u8; 32], IpAddr)> = members
        .iter()
        .filter_map(|m| {
            let a = probe_target(m, fam)?;
            super::tunnel_test::check_probe_route(&st.dev, &m.public_key, a)
                .ok()
                .map(|()| (m.public_key, a))
        })
        .collect();
    let last: Vec<Option<Instant>> = targets
        .iter()
        .map(|(k, _)| mesh.probe(k).map(|p| p.at))
        .collect();
    let picked: Vec<([u8; 32], IpAddr)> = pick_sample(&last, sample_size(members.len()))
        .into_iter()
        .map(|i| targets[i])
        .collect();
    let deadline = Instant::now() + ROUND_BUDGET;
    let ifname = st.ifname.as_str();
    let results: Vec<([u8; 32], Instant, peer_probe::PingOutcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = picked
            .iter()
            .map(|&(k, a)| {
                s.spawn(move || {
                    let at = Instant::now();
                    (k, at, peer_probe::ping_through(ifname, a, ECHOES, deadline))
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (key, at, o) in results {
        if o.sent == 0 {
            round.errors.extend(o.errors);
            continue;
        }
        let mut rtts = o.rtts.clone();
        rtts.sort();
        let rtt = (!rtts.is_empty()).then(|| super::tunnel_test::quantile(&rtts, 0.5));
        mesh.record_probe(key, ProbeResult { at, rtt });
        st.gates.record_test(o.sent, o.received, &o.rtts);
        for d in &o.rtts {
            st.dev.observe_tunnel_test_rtt(*d);
        }
        round.probed += 1;
        round.answered += usize::from(rtt.is_some());
    }
    round
}

/// Starts the probe thread; it ends with the device.
pub fn spawn_probes(st: Arc<AdminState>, mesh: Arc<MeshState>) {
    let _ = std::thread::Builder::new()
        .name("pm-meshprobe".into())
        .spawn(move || {
            let mut last_errors: Vec<String> = Vec::new();
            loop {
                if st.dev.is_closed() {
                    return;
                }
                let started = Instant::now();
                let r = probe_round(&st, &mesh);
                if r.errors != last_errors {
                    if !r.errors.is_empty() {
                        tracing::warn!(errors = ?r.errors, "cannot probe some mesh members");
                    }
                    last_errors = r.errors;
                }
                let until = started + PROBE_INTERVAL;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    if st.dev.is_closed() {
                        return;
                    }
                    std::thread::sleep(left.min(Duration::from_secs(1)));
                }
            }
        });
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;
