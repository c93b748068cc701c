//! `connect`: N idle connections opened at a ramp rate and held. Reports the
//! handshake latency (TCP connect + upgrade + `#handshake` reply), how many
//! opened, how many the server dropped while held, and, given the servers'
//! pids, their RSS per connection from `/proc/<pid>/status`: sampled before
//! the ramp, once every socket is open, and at the end of the hold (after
//! the server's first pings, so per-socket state it allocates lazily counts).
//!
//! Held sockets answer pings and nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{start_workers, Common};
use crate::client::{self, Target};
use crate::progress::Progress;
use crate::report::{default_dir, Report};
use crate::stats::{self, Latency};
use crate::sys;
use crate::workers::{Down, Tick, Up, WorkerIo};

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open, over all generator processes.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,
    /// Ramp rate: new connections per second, over all processes.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds to hold the connections once all are open.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Handshakes in flight at once, per process.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
}

#[derive(Default)]
struct Shared {
    conns: AtomicU64,
    failed: AtomicU64,
    settled: AtomicU64,
    closed: AtomicU64,
    /// (whole run, current second)
    hist: Mutex<Option<(Histogram<u64>, Histogram<u64>)>>,
    samples: Mutex<Vec<String>>,
    per_url: Mutex<Vec<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one worker sends when its ramp is over.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RampDone {
    opened: u64,
    failed: u64,
    per_url: Vec<u64>,
    hist: String,
    errors: Vec<String>,
    open_fds: Option<usize>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct WorkerFinal {
    open_at_end: u64,
    closed_by_server: u64,
    cpu_us: u64,
}

/// One worker's share: sockets `index, index + K, …` of N.
pub async fn worker(a: Args, mut io: WorkerIo) {
    let mut targets = Vec::new();
    for u in &a.common.urls {
        match Target::resolve(u).await {
            Ok(t) => targets.push(t),
            Err(e) => return io.send(Up::Fatal(format!("{e:#}"))),
        }
    }
    let shared = Arc::new(Shared::default());
    *lock(&shared.hist) = Some((stats::hist(), stats::hist()));
    *lock(&shared.per_url) = vec![0; targets.len()];
    let stop = CancellationToken::new();
    let ticker = {
        let (shared, up, stop) = (shared.clone(), io.up.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            while !stop.is_cancelled() {
                every.tick().await;
                let hist = lock(&shared.hist).as_mut().map(|(_, w)| {
                    let e = stats::encode(w);
                    w.reset();
                    e
                });
                let t = Tick {
                    conns: shared.conns.load(Ordering::Relaxed),
                    errors: shared.failed.load(Ordering::Relaxed) + shared.closed.load(Ordering::Relaxed),
                    hist: hist.unwrap_or_default(),
                    ..Tick::default()
                };
                if up.send(Up::Tick(t)).is_err() {
                    break;
                }
            }
        })
    };
    io.send(Up::Ready(json!({})));
    if let Down::Finish = io.next().await {
        stop.cancel();
        return;
    }
    let (k, i) = (io.count.max(1), io.index);
    let mine: Vec<usize> = (i..a.connections).step_by(k).collect();
    let rate = (a.rate / k as f64).max(0.001);
    let sem = Arc::new(Semaphore::new(a.in_flight.max(1)));
    let start = tokio::time::Instant::now();
    for (j, &g) in mine.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_secs_f64(j as f64 / rate)).await;
        let Ok(permit) = sem.clone().acquire_owned().await else { break };
        let (shared, stop) = (shared.clone(), stop.clone());
        let u = g % targets.len();
        let target = targets[u].clone();
        let src = client::source_ip(g, a.common.source_ips);
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = client::connect(&target, src).await;
            drop(permit);
            match r {
                Ok(ws) => {
                    let us = t0.elapsed().as_micros() as u64;
                    if let Some((all, win)) = lock(&shared.hist).as_mut() {
                        stats::record(all, us);
                        stats::record(win, us);
                    }
                    lock(&shared.per_url)[u] += 1;
                    shared.conns.fetch_add(1, Ordering::Relaxed);
                    shared.settled.fetch_add(1, Ordering::Relaxed);
                    hold(ws, &shared, &stop).await;
                }
                Err(e) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    shared.settled.fetch_add(1, Ordering::Relaxed);
                    let mut s = lock(&shared.samples);
                    if s.len() < 10 {
                        s.push(format!("{e:#}"));
                    }
                }
            }
        });
    }
    // Every handshake ends within its own timeout.
    let settle_by = tokio::time::Instant::now() + client::REPLY_WAIT + Duration::from_secs(5);
    while shared.settled.load(Ordering::Relaxed) < mine.len() as u64 && tokio::time::Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = RampDone {
        opened: shared.conns.load(Ordering::Relaxed),
        failed: shared.failed.load(Ordering::Relaxed),
        per_url: lock(&shared.per_url).clone(),
        hist: lock(&shared.hist).as_ref().map(|(all, _)| stats::encode(all)).unwrap_or_default(),
        errors: lock(&shared.samples).clone(),
        open_fds: sys::open_fds(),
    };
    io.send(Up::Done(serde_json::to_value(done).unwrap_or_default()));
    while !matches!(io.next().await, Down::Finish) {}
    let fin = WorkerFinal {
        open_at_end: shared.conns.load(Ordering::Relaxed),
        closed_by_server: shared.closed.load(Ordering::Relaxed),
        cpu_us: sys::self_cpu().as_micros() as u64,
    };
    // Report before letting go of the sockets: closing thousands of them at
    // once keeps this runtime busy, and the report must not wait behind that.
    io.send(Up::Final(serde_json::to_value(fin).unwrap_or_default()));
    stop.cancel();
    ticker.abort();
}

async fn hold(mut ws: client::Ws, shared: &Shared, stop: &CancellationToken) {
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            () = &mut cancelled => return,
        };
        match m {
            Some(Ok(Message::Text(t))) => {
                if client::answer_ping(&mut ws, t.as_str()).await.is_err() {
                    break;
                }
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    shared.conns.fetch_sub(1, Ordering::Relaxed);
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

/// Runs the whole scenario and writes its report.
///
/// # Errors
/// When the workers cannot be started or do not report in time.
pub async fn run(a: Args, argv: &[String]) -> Result<Report> {
    if a.common.urls.is_empty() {
        bail!("give at least one --url");
    }
    let machine = sys::Machine::describe();
    let started_unix = sys::unix_secs();
    let k = a.common.procs.max(1);
    let mut progress = Progress::new(k, a.common.quiet);
    let local = a.clone();
    let mut set = start_workers(&a.common, argv, &[], move |io| worker(local, io))?;
    set.gather("ready", Duration::from_secs(30), &mut progress, |u| match u {
        Up::Ready(v) => Some(v.clone()),
        _ => None,
    })
    .await?;
    let rss = |pids: &[u32]| pids.iter().map(|&p| sys::rss_bytes(p)).collect::<Vec<_>>();
    let rss_before = rss(&a.common.pids);
    let t0 = Instant::now();
    progress.mark(progress.elapsed(), "ramp");
    set.broadcast(&Down::Go(json!({})));
    let ramp_bound = Duration::from_secs_f64(a.connections as f64 / a.rate.max(0.001)) + Duration::from_secs(60);
    let dones = set
        .gather("ramp done", ramp_bound, &mut progress, |u| match u {
            Up::Done(v) => Some(v.clone()),
            _ => None,
        })
        .await?;
    let ramp_s = t0.elapsed().as_secs_f64();
    let rss_connected = rss(&a.common.pids);
    progress.mark(progress.elapsed(), "all open: hold");
    set.pump(Duration::from_secs_f64(a.hold.max(0.0)), &mut progress).await;
    let rss_held = rss(&a.common.pids);
    set.broadcast(&Down::Finish);
    let finals = set
        .gather("final", Duration::from_secs(30), &mut progress, |u| match u {
            Up::Final(v) => Some(v.clone()),
            _ => None,
        })
        .await?;
    set.close().await;

    let dones: Vec<RampDone> = dones.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
    let finals: Vec<WorkerFinal> = finals.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
    let mut hist = stats::hist();
    for d in &dones {
        stats::merge_encoded(&mut hist, &d.hist);
    }
    let opened: u64 = dones.iter().map(|d| d.opened).sum();
    let failed: u64 = dones.iter().map(|d| d.failed).sum();
    let open_after_hold: u64 = finals.iter().map(|f| f.open_at_end).sum();
    let closed: u64 = finals.iter().map(|f| f.closed_by_server).sum();
    let mut per_url = vec![0u64; a.common.urls.len()];
    for d in &dones {
        for (slot, n) in per_url.iter_mut().zip(&d.per_url) {
            *slot += n;
        }
    }
    let one_per_url = a.common.pids.len() == a.common.urls.len();
    let servers: Vec<Value> = a
        .common
        .pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let conns = if one_per_url { per_url[i] } else { opened };
            let per = |after: Option<u64>| match (rss_before[i], after) {
                (Some(b), Some(x)) if conns > 0 => Some((x as f64 - b as f64) / conns as f64),
                _ => None,
            };
            json!({
                "pid": pid,
                "connections": conns,
                "rss_before_bytes": rss_before[i],
                "rss_all_open_bytes": rss_connected[i],
                "rss_after_hold_bytes": rss_held[i],
                "bytes_per_conn_all_open": per(rss_connected[i]),
                "bytes_per_conn_after_hold": per(rss_held[i]),
            })
        })
        .collect();
    let delta: i64 = (0..a.common.pids.len()).filter_map(|i| Some(rss_held[i]? as i64 - rss_before[i]? as i64)).sum();
    let gen_cpu_us: u64 = finals.iter().map(|f| f.cpu_us).sum();
    let lat = Latency::of(&hist);
    let results = json!({
        "requested": a.connections,
        "opened": opened,
        "failed": failed,
        "open_after_hold": open_after_hold,
        "closed_by_server_during_hold": closed,
        "per_url": per_url,
        "ramp_seconds": ramp_s,
        "achieved_rate_per_s": opened as f64 / ramp_s.max(1e-3),
        "handshake": lat,
        "servers": servers,
        "rss_per_conn_bytes": (opened > 0 && !a.common.pids.is_empty()).then(|| delta as f64 / opened as f64),
        "generator": { "procs": k, "cpu_seconds": gen_cpu_us as f64 / 1e6, "open_fds_per_proc": dones.iter().map(|d| d.open_fds).collect::<Vec<_>>() },
        "errors": dones.iter().flat_map(|d| d.errors.iter().cloned()).take(10).collect::<Vec<_>>(),
    });
    if !a.common.quiet {
        eprintln!(
            "connect: {opened} of {} open ({failed} failed) in {ramp_s:.1} s; handshake p50 {:.2} ms p99 {:.2} ms; \
             {open_after_hold} still open after {} s; RSS per connection {}",
            a.connections,
            lat.p50_ms,
            lat.p99_ms,
            a.hold,
            results["rss_per_conn_bytes"].as_f64().map_or("n/a".into(), |b| format!("{:.0} bytes", b)),
        );
    }
    let mut report = Report {
        scenario: "connect".into(),
        label: a.common.label.clone(),
        started_unix,
        argv: argv.to_vec(),
        params: serde_json::to_value(&a)?,
        machine,
        results,
        timeline: std::mem::take(&mut progress.timeline),
        markers: std::mem::take(&mut progress.markers),
        dir: None,
    };
    let dir =
        a.common.out.clone().unwrap_or_else(|| default_dir("connect", &a.common.label, &format!("n{}", a.connections)));
    report.write(&dir)?;
    Ok(report)
}
