//! The run itself: resolve the target, make and register the peers, start
//! the workers, report progress and intervals, then judge, print and clean
//! up (peers removed however the run ended, unless `--keep`).
use super::conclude::{conclude, Outcome};
use super::monitor::Monitor;
use super::probe::{ProbeKind, Tracker};
use super::sim::{ProbeConfig, SimPeer};
use super::stats::{Counters, PeerResult, Stats};
use super::target::{self, PeerEntry, Uapi};
use super::worker::{self, Schedule, Shared};
use super::{net, setup, LoadtestArgs, EXIT_PASS};
use crate::gates::table::group_thousands;
use crate::gates::{GatesConfig, Histogram, MetricKind};
use crate::noise::handshake::Identity;
use crate::noise::keys::{PublicKey, StaticSecretKey};
use crate::noise::peer::PeerState;
use parking_lot::Mutex;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Removes the registered peers when dropped, however the run ends.
struct Registration<'a> {
    uapi: &'a Uapi,
    peers: Vec<PeerEntry>,
    keep: bool,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.keep || self.peers.is_empty() {
            return;
        }
        if let Err(e) = self.uapi.set(&target::remove_peers_message(&self.peers)) {
            eprintln!("phantommesh loadtest: could not remove the test peers: {e}");
        }
    }
}

fn n(v: u64) -> String {
    group_thousands(&v.to_string())
}

pub fn run(a: &LoadtestArgs) -> Result<i32, String> {
    if a.peers == 0 || a.peers > 65_000 {
        return Err("--peers must be between 1 and 65000".into());
    }
    if !(a.rate > 0.0 && a.rate <= 10_000.0) {
        return Err("--rate must be above 0 and at most 10000 per second".into());
    }
    let (net_addr, prefix) = setup::parse_cidr(&a.range)?;
    let target_ip = a
        .target_ip
        .unwrap_or_else(|| setup::first_host(net_addr, prefix));
    let addrs = setup::peer_addresses(net_addr, prefix, target_ip, a.peers)?;
    let secrets: Vec<[u8; 32]> = (0..a.peers as u32)
        .map(|i| setup::private_key(a.seed.as_deref(), i))
        .collect();
    let identities: Vec<Identity> = secrets
        .into_iter()
        .map(|s| Identity::new(StaticSecretKey::from(s)))
        .collect();
    let entries: Vec<PeerEntry> = identities
        .iter()
        .zip(&addrs)
        .map(|(id, &addr)| PeerEntry {
            public_key: *id.public_key().as_bytes(),
            addr,
        })
        .collect();

    if let Some(path) = &a.write_peers {
        std::fs::write(path, target::peer_file(&entries))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let script = std::path::PathBuf::from(format!("{}.remove.sh", path.display()));
        std::fs::write(&script, target::removal_script(&entries))
            .map_err(|e| format!("{}: {e}", script.display()))?;
        println!(
            "Wrote {} peers to {} (apply: wg addconf IFNAME {}; remove: sh {} IFNAME).",
            a.peers,
            path.display(),
            path.display(),
            script.display()
        );
        if a.seed.is_none() {
            println!("No --seed given: these keys are random, so only this file knows them; use --seed to run against them later.");
        }
        return Ok(EXIT_PASS);
    }

    // The target: key, endpoint, process.
    let uapi = a.uapi.as_deref().map(Uapi::new);
    let info = match &uapi {
        Some(u) => {
            Some(target::parse_get(&u.get().map_err(|e| {
                format!("cannot read the target's UAPI: {e}")
            })?))
        }
        None => None,
    };
    let target_key = match (&a.target_key, info.as_ref().and_then(|i| i.public_key)) {
        (Some(k), _) => crate::cli::keys::parse_base64_key(k)
            .map_err(|_| "--target-key is not a base64 key".to_string())?,
        (None, Some(k)) => k,
        (None, None) if uapi.is_some() => {
            return Err("the target has no private key configured".into())
        }
        (None, None) => {
            return Err("give --uapi, or --target-key and --endpoint for a remote target".into())
        }
    };
    let endpoint = match (&a.endpoint, &info) {
        (Some(e), _) => e
            .to_socket_addrs()
            .map_err(|err| format!("--endpoint {e}: {err}"))?
            .next()
            .ok_or_else(|| format!("--endpoint {e}: no address"))?,
        (None, Some(i)) if i.listen_port != 0 => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, i.listen_port))
        }
        _ => return Err("--endpoint is required (the target reports no listen port)".into()),
    };
    let target_pid = a
        .target_pid
        .or_else(|| uapi.as_ref().and_then(|u| u.listener_pid().ok()));

    let gates_cfg = GatesConfig::load(a.gates.as_deref()).map_err(|e| e.to_string())?;
    let mut gate = gates_cfg
        .gate(&a.gate)
        .cloned()
        .ok_or_else(|| format!("no gate {:?} in the gates config", a.gate))?;
    for (m, v) in [
        (MetricKind::SuccessRate, &a.success_target),
        (MetricKind::ErrorRate, &a.error_target),
        (MetricKind::P50Latency, &a.p50_target),
        (MetricKind::P99Latency, &a.p99_target),
        (MetricKind::Throughput, &a.throughput_target),
    ] {
        if let Some(v) = v {
            setup::override_target(&mut gate, m, v)?;
        }
    }

    let kind = a.udp_echo.map_or(ProbeKind::Icmp, ProbeKind::UdpEcho);
    let probe_dst = a.udp_echo.map_or(target_ip, |e| e.ip());
    if probe_dst.is_ipv4() != target_ip.is_ipv4() || addrs[0].is_ipv4() != probe_dst.is_ipv4() {
        return Err("the probe destination and the peer range must be the same IP version".into());
    }
    let probe_cfg = ProbeConfig {
        kind,
        target: probe_dst,
        size: a.probe_size.clamp(8, 1400),
        timeout: a.probe_timeout,
        bulk_size: if a.bulk > 0.0 {
            a.bulk_size.clamp(8, 1400)
        } else {
            0
        },
    };

    // Sockets: one per peer, each its own source port.
    net::raise_nofile(a.peers as u64 + 256)
        .map_err(|e| format!("cannot raise the descriptor limit: {e}"))?;
    let binds: Vec<IpAddr> = if a.bind.is_empty() {
        vec![if endpoint.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        }]
    } else {
        a.bind.clone()
    };
    let in_flight = (a.rate * a.probe_timeout.as_secs_f64() * 2.0).ceil() as usize + 16;
    let mut peers = Vec::with_capacity(a.peers);
    for (i, id) in identities.into_iter().enumerate() {
        let bind = SocketAddr::new(binds[i % binds.len()], 0);
        let sock = net::peer_socket(bind, endpoint).map_err(|e| {
            format!("peer {i}: cannot open a UDP socket from {bind} to {endpoint}: {e}")
        })?;
        let state = PeerState::new(
            Some(&id),
            PublicKey::from(target_key),
            [0u8; 32],
            rand::random(),
        );
        peers.push(SimPeer::new(
            i as u32,
            addrs[i],
            id,
            state,
            sock,
            Tracker::new(in_flight),
        ));
    }

    // Register, and make sure the peers go away again.
    let _registration = match &uapi {
        Some(u) => {
            u.set(&target::add_peers_message(&entries))
                .map_err(|e| format!("cannot register the peers: {e}"))?;
            Some(Registration {
                uapi: u,
                peers: entries.clone(),
                keep: a.keep,
            })
        }
        None => None,
    };

    let header = format!(
        "PhantomMesh load test: {} peers -> {} (target {}), {} to {}, {}/s each, ramp {}s, duration {}s{}",
        n(a.peers as u64),
        endpoint,
        target_pid.map_or("pid unknown".into(), |p| format!("pid {p}")),
        match kind {
            ProbeKind::Icmp => "ICMP echo".to_string(),
            ProbeKind::UdpEcho(e) => format!("UDP echo via {e}"),
        },
        probe_dst,
        a.rate,
        a.ramp.as_secs_f64(),
        a.duration.as_secs_f64(),
        if a.bulk > 0.0 { format!(", bulk {}/s x {} B", a.bulk, probe_cfg.bulk_size) } else { String::new() },
    );
    if a.json {
        eprintln!("{header}");
    } else {
        println!("{header}\n");
    }

    let ctx = RunContext {
        a,
        gates_cfg: &gates_cfg,
        gate: &gate,
        target_pid,
        header: &header,
    };
    execute(&ctx, peers, probe_cfg)
}

struct RunContext<'a> {
    a: &'a LoadtestArgs,
    gates_cfg: &'a GatesConfig,
    gate: &'a crate::gates::GateSpec,
    target_pid: Option<u32>,
    header: &'a str,
}

fn execute(ctx: &RunContext, peers: Vec<SimPeer>, probe_cfg: ProbeConfig) -> Result<i32, String> {
    let a = ctx.a;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64)
        .min(a.peers);
    let origin = Instant::now() + Duration::from_millis(100);
    let schedule = Schedule {
        origin,
        ramp: a.ramp,
        end: origin + a.ramp + a.duration,
        rate: a.rate,
        bulk_rate: a.bulk,
        peers: a.peers,
    };
    let shared = Arc::new(Shared {
        probe: probe_cfg,
        schedule: schedule.clone(),
        stop: AtomicBool::new(false),
        total: Mutex::new(Stats::new(a.ramp + a.duration + a.probe_timeout * 2)),
        interval: Mutex::new((Counters::default(), Histogram::new())),
    });
    // First Ctrl-C: stop and report; a second one exits at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, interrupted.clone());
        let _ = signal_hook::flag::register(sig, interrupted.clone());
    }

    let mut shards: Vec<Vec<SimPeer>> = (0..threads).map(|_| Vec::new()).collect();
    for p in peers {
        let w = p.index as usize % threads;
        shards[w].push(p);
    }
    let handles: Vec<_> = shards
        .into_iter()
        .enumerate()
        .map(|(i, shard)| {
            let sh = shared.clone();
            std::thread::Builder::new()
                .name(format!("loadtest-{i}"))
                .spawn(move || {
                    let r = worker::run(shard, &sh);
                    if r.is_err() {
                        sh.stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .map_err(|e| format!("cannot start a worker thread: {e}"))
        })
        .collect::<Result<_, _>>()?;

    let tty = std::io::stderr().is_terminal() && !a.json;
    let mut mon = Monitor::new(
        ctx.gates_cfg,
        ctx.gate,
        ctx.target_pid,
        origin,
        a.ramp + a.duration,
        a.peers,
        tty,
        a.json,
        a.interval,
        a.progress_every,
    );
    let mut stopped_at: Option<Instant> = None;
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if interrupted.load(Ordering::Relaxed) && stopped_at.is_none() {
            stopped_at = Some(now);
            shared.stop.store(true, Ordering::Relaxed);
        }
        if mon.interval_due(now) && now < schedule.end && stopped_at.is_none() {
            mon.take_interval(&shared, now);
        }
        let c = shared.total.lock().counters;
        mon.progress(&c, now);
    }
    let mut results: Vec<PeerResult> = Vec::with_capacity(a.peers);
    let mut worker_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => results.extend(r),
            Ok(Err(e)) => worker_error = Some(e.to_string()),
            Err(_) => worker_error = Some("a worker thread panicked".into()),
        }
    }
    let probe_end = stopped_at.unwrap_or(schedule.end).min(schedule.end);
    mon.finish(&shared, probe_end);
    if let Some(e) = worker_error {
        return Err(format!("worker failed: {e}"));
    }
    results.sort_by_key(|r| r.index);
    let stats = shared.total.lock().clone();
    let outcome = Outcome {
        stats,
        results,
        monitor: mon,
        elapsed_s: probe_end.saturating_duration_since(origin).as_secs_f64(),
        steady_s: probe_end
            .saturating_duration_since(schedule.ramp_end())
            .as_secs_f64(),
        stopped_early: stopped_at.is_some(),
        header: ctx.header,
        threads,
    };
    conclude(a, outcome)
}
