//! A worker thread: owns a shard of the simulated peers and their sockets,
//! starts them on the ramp's schedule, sends their probes on time, reads
//! what the target answers (epoll over the shard's sockets, batched
//! receive), runs the protocol timers, and merges its measurements into the
//! shared [`Stats`] every [`FLUSH_EVERY`].
use super::net::{recv_batch, Epoll, RecvBufs};
use super::sim::{ProbeConfig, SimPeer};
use super::stats::{Counters, PeerResult, Stats};
use crate::gates::Histogram;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How often every peer's timers and probe timeouts are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(10);

/// The run's timing, shared by all workers.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The run's time zero: the first peer starts here.
    pub origin: Instant,
    pub ramp: Duration,
    /// Probing stops here (unless stopped earlier).
    pub end: Instant,
    /// Probes per second per peer.
    pub rate: f64,
    /// Bulk packets per second per peer (0: none).
    pub bulk_rate: f64,
    /// Total number of peers (for the ramp's spacing).
    pub peers: usize,
}

impl Schedule {
    pub fn ramp_end(&self) -> Instant {
        self.origin + self.ramp
    }

    /// When peer `index` (0-based, over all workers) sends its first
    /// initiation: evenly spread over the ramp.
    pub fn start_of(&self, index: usize) -> Instant {
        if self.peers <= 1 {
            return self.origin;
        }
        self.origin + self.ramp.mul_f64(index as f64 / self.peers as f64)
    }
}

/// Measurements shared with the main thread: the run's totals, and the
/// current interval's counters and RTTs (taken and reset by the main
/// thread at each interval line).
pub struct Shared {
    pub probe: ProbeConfig,
    pub schedule: Schedule,
    pub stop: AtomicBool,
    pub total: Mutex<Stats>,
    pub interval: Mutex<(Counters, Histogram)>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Probe,
    Bulk,
}

/// Runs one shard until the schedule ends or `stop` is set, then waits up
/// to the probe timeout for replies in flight. Returns each peer's results.
pub fn run(mut peers: Vec<SimPeer>, shared: &Shared) -> std::io::Result<Vec<PeerResult>> {
    let sch = &shared.schedule;
    let cfg = &shared.probe;
    let origin = sch.origin;
    let steady_from = sch.ramp_end();
    let mut epoll = Epoll::new(peers.len())?;
    for (slot, p) in peers.iter().enumerate() {
        epoll.add(p.sock.as_raw_fd(), slot as u64)?;
    }
    let starts: Vec<Instant> = peers
        .iter()
        .map(|p| sch.start_of(p.index as usize))
        .collect();
    let mut order: Vec<usize> = (0..peers.len()).collect();
    order.sort_by_key(|&i| starts[i]);
    let mut next_start = 0;
    let mut scheduled = vec![false; peers.len()];
    let mut heap: BinaryHeap<Reverse<(Instant, Job, usize)>> = BinaryHeap::new();
    let period = Duration::from_secs_f64(1.0 / sch.rate.max(1e-3));
    let bulk_period = (sch.bulk_rate > 0.0).then(|| Duration::from_secs_f64(1.0 / sch.bulk_rate));
    let mut local = Stats::new(sch.end.saturating_duration_since(origin) + cfg.timeout * 2);
    local.timeline.width = shared.total.lock().timeline.width;
    let mut bufs = RecvBufs::default();
    let mut ready = Vec::new();
    let mut last_sweep = Instant::now();
    let mut last_flush = Instant::now();
    let mut end = sch.end;
    let mut drain_until: Option<Instant> = None;
    let mut rng_state = rand::random::<u64>() | 1;
    loop {
        let now = Instant::now();
        if drain_until.is_none() && (now >= end || shared.stop.load(Ordering::Relaxed)) {
            end = end.min(now);
            drain_until = Some(now + cfg.timeout + Duration::from_millis(20));
        }
        if let Some(d) = drain_until {
            let pending: u64 = peers.iter().map(|p| p.probes_pending()).sum();
            // Bulk packets go to the same echo target but are not tracked
            // one by one: also wait (to the same deadline) until as many
            // came back as were sent, or the last ones in flight would be
            // counted as lost.
            let c = &local.counters;
            let bulk_out = c.bulk_sent.saturating_sub(c.bulk_received);
            if now >= d || (pending == 0 && bulk_out == 0) {
                break;
            }
        }
        let sending = drain_until.is_none();
        // First initiations, on the ramp's schedule.
        while sending && next_start < order.len() && starts[order[next_start]] <= now {
            peers[order[next_start]].start(now, origin, &mut local);
            next_start += 1;
        }
        // Due probes and bulk packets.
        while let Some(Reverse((t, job, slot))) = heap.peek().copied() {
            if t > now || !sending {
                break;
            }
            heap.pop();
            let p = &mut peers[slot];
            let next = match job {
                Job::Probe => {
                    p.send_probe(cfg, now, origin, &mut local);
                    t + period
                }
                Job::Bulk => {
                    p.send_bulk(cfg, now, origin, &mut local);
                    t + bulk_period.unwrap_or(period)
                }
            };
            // A worker that fell more than a second behind skips the
            // backlog instead of bursting it out.
            let next = if next + Duration::from_secs(1) < now {
                now
            } else {
                next
            };
            heap.push(Reverse((next, job, slot)));
        }
        // What arrived.
        let wait = next_wake(&heap, &order, &starts, next_start, last_sweep, sending)
            .map_or(SWEEP_EVERY, |t| t.saturating_duration_since(Instant::now()));
        let timeout_ms = wait.min(SWEEP_EVERY).as_micros().div_ceil(1000) as i32;
        epoll.wait(timeout_ms, &mut ready)?;
        let now = Instant::now();
        for &token in &ready {
            let slot = token as usize;
            let p = &mut peers[slot];
            let n = recv_batch(p.sock.as_raw_fd(), &mut bufs)?;
            for i in 0..n {
                let len = bufs.lens[i];
                p.receive(
                    &mut bufs.data[i][..len],
                    bufs.stamps[i],
                    cfg,
                    now,
                    origin,
                    steady_from,
                    &mut local,
                );
            }
            if !scheduled[slot] && p.established.is_some() && sending {
                scheduled[slot] = true;
                // A random phase spreads the peers' probes over the period.
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                let phase = period.mul_f64((rng_state % 10_000) as f64 / 10_000.0);
                heap.push(Reverse((now + phase, Job::Probe, slot)));
                if let Some(bp) = bulk_period {
                    heap.push(Reverse((
                        now + bp.mul_f64((rng_state % 997) as f64 / 997.0),
                        Job::Bulk,
                        slot,
                    )));
                }
            }
        }
        if now.duration_since(last_sweep) >= SWEEP_EVERY {
            last_sweep = now;
            for p in peers.iter_mut() {
                p.tick(cfg, now, origin, &mut local);
            }
        }
        if now.duration_since(last_flush) >= FLUSH_EVERY {
            last_flush = now;
            flush(shared, &mut local);
        }
    }
    // Whatever is still in flight after the drain is lost.
    let now = Instant::now();
    for p in peers.iter_mut() {
        p.tick(cfg, now, origin, &mut local);
    }
    let leftover: u64 = peers.iter().map(|p| p.probes_pending()).sum();
    if leftover > 0 {
        let at = now.saturating_duration_since(origin);
        local.count(at, |c| c.probes_lost += leftover);
    }
    flush(shared, &mut local);
    Ok(peers
        .into_iter()
        .map(|p| {
            let pending = p.probes_pending();
            let mut r = p.finish();
            r.probes_lost += pending;
            r
        })
        .collect())
}

fn next_wake(
    heap: &BinaryHeap<Reverse<(Instant, Job, usize)>>,
    order: &[usize],
    starts: &[Instant],
    next_start: usize,
    last_sweep: Instant,
    sending: bool,
) -> Option<Instant> {
    let mut t = last_sweep + SWEEP_EVERY;
    if sending {
        if let Some(Reverse((h, _, _))) = heap.peek() {
            t = t.min(*h);
        }
        if let Some(&i) = order.get(next_start) {
            t = t.min(starts[i]);
        }
    }
    Some(t)
}

/// Moves the worker's measurements into the run's totals and the current
/// interval.
fn flush(shared: &Shared, local: &mut Stats) {
    {
        let mut iv = shared.interval.lock();
        iv.0.add(&local.counters);
        iv.1.merge(&local.rtt);
    }
    shared.total.lock().merge(local);
    local.clear();
}
