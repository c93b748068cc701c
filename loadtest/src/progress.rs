//! The live progress line (once a second, on stderr) and the timeline the
//! plot is drawn from: per second, connections, published and delivered
//! msg/s, and the latency percentiles of that second's deliveries.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats;
use crate::workers::Tick;

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Point {
    /// Seconds since the run started.
    pub t: f64,
    pub conns: u64,
    pub published_per_s: f64,
    pub delivered_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
}

/// Something that happened at a point of the run (a reshard event, a step).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Marker {
    pub t: f64,
    pub label: String,
}

pub struct Progress {
    start: Instant,
    last: Instant,
    /// Latest cumulative tick per worker.
    latest: Vec<Tick>,
    /// Totals at the previous line.
    prev: (u64, u64),
    window: Histogram<u64>,
    pub timeline: Vec<Point>,
    pub markers: Vec<Marker>,
    quiet: bool,
}

impl Progress {
    #[must_use]
    pub fn new(workers: usize, quiet: bool) -> Progress {
        let now = Instant::now();
        Progress {
            start: now,
            last: now,
            latest: vec![Tick::default(); workers],
            prev: (0, 0),
            window: stats::hist(),
            timeline: Vec::new(),
            markers: Vec::new(),
            quiet,
        }
    }

    /// Seconds since the start of the run.
    #[must_use]
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    #[must_use]
    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn absorb(&mut self, worker: usize, t: &Tick) {
        stats::merge_encoded(&mut self.window, &t.hist);
        if let Some(slot) = self.latest.get_mut(worker) {
            *slot = Tick { hist: String::new(), ..t.clone() };
        }
    }

    pub fn mark(&mut self, t: f64, label: impl Into<String>) {
        let label = label.into();
        if !self.quiet {
            eprintln!("[{t:6.1}s] ---- {label}");
        }
        self.markers.push(Marker { t, label });
    }

    /// Closes the current second: a timeline point and a progress line.
    pub fn emit(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-3);
        self.last = now;
        let conns = self.latest.iter().map(|t| t.conns).sum();
        let published: u64 = self.latest.iter().map(|t| t.published).sum();
        let delivered: u64 = self.latest.iter().map(|t| t.delivered).sum();
        let errors = self.latest.iter().map(|t| t.errors).sum();
        let lat = stats::Latency::of(&self.window);
        self.window.reset();
        let p = Point {
            t: now.duration_since(self.start).as_secs_f64(),
            conns,
            published_per_s: published.saturating_sub(self.prev.0) as f64 / dt,
            delivered_per_s: delivered.saturating_sub(self.prev.1) as f64 / dt,
            p50_ms: lat.p50_ms,
            p99_ms: lat.p99_ms,
            max_ms: lat.max_ms,
            errors,
        };
        self.prev = (published, delivered);
        if !self.quiet {
            eprintln!(
                "[{:6.1}s] conns {:>7} | pub {:>9.0}/s | deliv {:>10.0}/s | p50 {:>7.2} ms p99 {:>8.2} ms max {:>8.2} ms | errors {}",
                p.t, p.conns, p.published_per_s, p.delivered_per_s, p.p50_ms, p.p99_ms, p.max_ms, p.errors
            );
        }
        self.timeline.push(p);
    }
}
