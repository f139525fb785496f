//! The main thread's view of a running test: a progress bar on a terminal
//! (plain lines otherwise), interval lines with target samples, and the
//! record of both for the verdict.
use super::output;
use super::soak::{self, Interval, ProcSample};
use super::stats::Counters;
use super::worker::Shared;
use crate::gates::table::group_thousands;
use crate::gates::{GateSpec, GatesConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

fn n(v: u64) -> String {
    group_thousands(&v.to_string())
}

pub struct Monitor<'a> {
    pub gates_cfg: &'a GatesConfig,
    pub gate: &'a GateSpec,
    pub target_pid: Option<u32>,
    pub origin: Instant,
    pub peers: usize,
    /// Interval lines go to stderr (stdout carries JSON).
    pub json: bool,
    pub interval: Duration,
    pub progress_every: Duration,
    total_secs: f64,
    bar: Option<ProgressBar>,
    interval_start: Instant,
    last_progress: Instant,
    last_counters: Counters,
    last_rate_at: Instant,
    pub samples: Vec<(f64, ProcSample)>,
    pub intervals: Vec<Interval>,
    pub lines: Vec<String>,
}

impl<'a> Monitor<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gates_cfg: &'a GatesConfig,
        gate: &'a GateSpec,
        target_pid: Option<u32>,
        origin: Instant,
        total: Duration,
        peers: usize,
        tty: bool,
        json: bool,
        interval: Duration,
        progress_every: Duration,
    ) -> Monitor<'a> {
        let total_secs = total.as_secs_f64();
        let bar = tty.then(|| {
            let pb = ProgressBar::with_draw_target(
                Some(total_secs.ceil() as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len}s {msg}",
            ) {
                pb.set_style(style.progress_chars("=> "));
            }
            pb
        });
        let now = Instant::now();
        let mut m = Monitor {
            gates_cfg,
            gate,
            target_pid,
            origin,
            peers,
            json,
            interval,
            progress_every,
            total_secs,
            bar,
            interval_start: origin,
            last_progress: now,
            last_counters: Counters::default(),
            last_rate_at: now,
            samples: Vec::new(),
            intervals: Vec::new(),
            lines: Vec::new(),
        };
        m.sample(now);
        m
    }

    fn sample(&mut self, at: Instant) -> Option<(f64, ProcSample)> {
        let s = self.target_pid.and_then(soak::sample)?;
        let entry = (at.saturating_duration_since(self.origin).as_secs_f64(), s);
        self.samples.push(entry);
        Some(entry)
    }

    fn print(&self, line: &str) {
        let emit = || {
            if self.json {
                eprintln!("{line}")
            } else {
                println!("{line}")
            }
        };
        match &self.bar {
            Some(b) => b.suspend(emit),
            None => emit(),
        }
    }

    /// Whether an interval line is due at `now`.
    pub fn interval_due(&self, now: Instant) -> bool {
        now >= self.origin && now.duration_since(self.interval_start) >= self.interval
    }

    /// Closes the interval at `end`: takes the workers' interval counters,
    /// samples the target, judges and prints the line.
    pub fn take_interval(&mut self, shared: &Shared, end: Instant) {
        let (c, h) = {
            let mut iv = shared.interval.lock();
            std::mem::take(&mut *iv)
        };
        let len = end
            .saturating_duration_since(self.interval_start)
            .as_secs_f64();
        self.interval_start = end;
        let pass = output::interval_passes(self.gates_cfg, self.gate, &c, &h, len);
        let end_s = end.saturating_duration_since(self.origin).as_secs_f64();
        let mut iv = output::build_interval(&c, &h, end_s, len, pass);
        let prev = self.samples.last().copied();
        if let Some(s) = self.sample(end) {
            iv.target = Some(s.1);
            iv.target_cpu = prev.and_then(|p| soak::cpu_cores(&p, &s));
        }
        let line = output::interval_line(&iv);
        self.print(&line);
        self.lines.push(line);
        self.intervals.push(iv);
    }

    /// At the end: the last, partial interval (if it is at least a second
    /// long, or the only one), else just a final target sample.
    pub fn finish(&mut self, shared: &Shared, probe_end: Instant) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let end = probe_end.max(self.interval_start);
        if end.duration_since(self.interval_start) >= Duration::from_secs(1)
            || self.intervals.is_empty()
        {
            self.take_interval(shared, end);
        } else {
            self.sample(Instant::now());
        }
    }

    /// Updates the bar, or prints a plain progress line when one is due.
    pub fn progress(&mut self, c: &Counters, now: Instant) {
        let since = now.duration_since(self.last_rate_at).as_secs_f64();
        let rate = if since > 0.0 {
            c.probes_answered
                .saturating_sub(self.last_counters.probes_answered) as f64
                / since
        } else {
            0.0
        };
        let msg = format!(
            "peers {}/{} up, {} probes, {} failed, {}/s",
            n(c.peers_established),
            n(self.peers as u64),
            n(c.probes_sent),
            n(c.probe_failures()),
            n(rate.round() as u64)
        );
        let elapsed = now.saturating_duration_since(self.origin);
        if let Some(b) = &self.bar {
            b.set_position(elapsed.as_secs().min(self.total_secs as u64));
            b.set_message(msg);
        } else if !self.progress_every.is_zero()
            && now.duration_since(self.last_progress) >= self.progress_every
        {
            self.last_progress = now;
            eprintln!(
                "loadtest: {:.0}s/{:.0}s {msg}",
                elapsed.as_secs_f64(),
                self.total_secs
            );
        } else {
            return;
        }
        self.last_counters = *c;
        self.last_rate_at = now;
    }
}
