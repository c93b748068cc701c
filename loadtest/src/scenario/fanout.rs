//! `fanout` (and `churn`): P publisher sockets, S subscriber sockets, C
//! channels, each channel subscribed by K sockets and published to by one
//! publisher (`c % P`), so per-channel order is a per-publisher order and is
//! checked.
//!
//! A run is one or more **steps**, one per `--rate`: every publisher sends
//! its share of the rate for `--duration` seconds (`0` = as fast as its
//! socket takes them), then the subscribers drain until nothing arrives for
//! `--quiet-after` seconds (at most `--drain`). A step is **held** when
//! nothing was lost or duplicated, no socket was dropped, the publishers
//! kept their rate, and p99 stayed under `--p99-limit-ms`; steps stop at the
//! first that is not held unless `--keep-going`.
//!
//! Counting, per (subscriber socket, channel) stream and per step:
//! delivered = distinct sequence numbers received; lost = published on the
//! channel but never received by the end of the drain; duplicated = a
//! sequence number received again; out of order = a first reception below
//! one already received. Latency = receive time − publish time, both on the
//! machine's monotonic clock (publishers and subscribers may be in different
//! processes). Messages of an earlier step arriving late are counted apart.
//!
//! With `--churn-rate R` (the `churn` scenario), extra sockets connect,
//! subscribe to one random channel, read for `--churn-life` seconds,
//! unsubscribe (acknowledged) and leave, R per second, during every step;
//! they count their own gaps and anything received after the unsubscribe
//! was acknowledged, and are not part of the loss count above.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{start_workers, Common};
use crate::client::{self, Target, Ws};
use crate::progress::Progress;
use crate::report::{default_dir, Report};
use crate::stamp::{push_publish, Scanner, Stamp};
use crate::stats::{self, Latency};
use crate::sys;
use crate::workers::{Down, Tick, Up, WorkerIo, WorkerSet};

/// Publisher send interval when rate-limited.
const TICK: Duration = Duration::from_millis(2);
/// Most messages one publisher sends in one turn (catching up after a stall is bounded too).
const MAX_PER_TURN: u64 = 5_000;
/// Highest sequence number a stream tracks (a bound against a bogus stamp).
const MAX_SEQ: u64 = 64_000_000;
/// Longest step, whatever the arguments say.
pub const MAX_STEP: Duration = Duration::from_secs(600);

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Publisher sockets (at most one per channel is used).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Subscriber sockets.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Channels.
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
    /// Subscriber sockets per channel (default: subscribers ÷ channels, at least 1).
    #[arg(long)]
    pub subs_per_channel: Option<usize>,
    /// Message size: bytes of the published string.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Published msg/s over all publishers; a comma-separated list runs steps; 0 = as fast as the sockets take them.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub rate: Vec<u64>,
    /// Seconds each step publishes.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// A step is held only with p99 under this (ms).
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,
    /// Run every step even after one is not held.
    #[arg(long)]
    pub keep_going: bool,
    /// Stop after this many steps in a row not held (a noisy machine can fail one step).
    #[arg(long, default_value_t = 1)]
    pub max_failures: usize,
    /// Longest wait for deliveries after the publishers stop (s).
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// The drain ends once nothing has arrived for this long (s).
    #[arg(long, default_value_t = 1.0)]
    pub quiet_after: f64,
    /// Pause between steps (s).
    #[arg(long, default_value_t = 1.0)]
    pub pause: f64,
    /// Most publishes in one frame (a SocketCluster batch).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Churning sockets started per second during each step (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub churn_rate: f64,
    /// Seconds a churning socket stays subscribed.
    #[arg(long, default_value_t = 2.0)]
    pub churn_life: f64,
    /// Channel name prefix (default: random per run).
    #[arg(long)]
    pub prefix: Option<String>,
}

impl Args {
    #[must_use]
    pub fn subs_per_channel(&self) -> usize {
        self.subs_per_channel.unwrap_or((self.subscribers / self.channels.max(1)).max(1)).min(self.subscribers.max(1))
    }
}

/// Which socket does what, the same in every worker.
pub struct Plan {
    pub names: Vec<String>,
    /// Channels of each subscriber socket.
    pub sub_channels: Vec<Vec<u32>>,
    /// Channels of each publisher socket.
    pub pub_channels: Vec<Vec<u32>>,
}

impl Plan {
    #[must_use]
    pub fn new(a: &Args, prefix: &str) -> Plan {
        let c = a.channels.max(1);
        let s = a.subscribers;
        let k = a.subs_per_channel();
        let p = a.publishers.clamp(1, c);
        let names = (0..c).map(|i| format!("{prefix}/{i}")).collect();
        let mut sub_channels = vec![Vec::new(); s];
        if s > 0 {
            for ch in 0..c {
                for j in 0..k {
                    sub_channels[(ch * k + j) % s].push(ch as u32);
                }
            }
        }
        let mut pub_channels = vec![Vec::new(); p];
        for ch in 0..c {
            pub_channels[ch % p].push(ch as u32);
        }
        Plan { names, sub_channels, pub_channels }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The parent's order to run one step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Go {
    pub step: u32,
    pub rate: u64,
    pub start_us: u64,
    pub end_us: u64,
    pub drain_ms: u64,
    pub quiet_ms: u64,
    /// Keep every publish time, to date the lost messages (one process only).
    pub track_times: bool,
}

/// One worker's result of one step.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepDone {
    pub step: u32,
    /// Per channel: messages this worker published.
    pub published: Vec<u64>,
    /// Per channel: this worker's subscriber streams.
    pub streams: Vec<u32>,
    /// Per channel: distinct messages those streams received.
    pub unique: Vec<u64>,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub unexpected: u64,
    pub late: u64,
    pub malformed: u64,
    pub hist: String,
    /// How far behind schedule publishers sent (µs).
    pub lag_hist: String,
    pub cpu_us: u64,
    pub shortfall: u64,
    pub closed_subscribers: u64,
    pub dead_publishers: u64,
    pub errors: Vec<String>,
    /// (publish time in ms on the monotonic clock, lost messages published then), when tracking.
    pub lost_ms: Vec<(u64, u64)>,
    pub churn: ChurnStats,
}

/// What the churning sockets did in one step.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChurnStats {
    pub started: u64,
    pub connected: u64,
    pub subscribed: u64,
    pub unsubscribed: u64,
    pub completed: u64,
    pub failed: u64,
    pub received: u64,
    /// Messages missing between two a churner received.
    pub gaps: u64,
    pub out_of_order: u64,
    /// Messages of its channel received after the unsubscribe was acknowledged.
    pub after_unsubscribe: u64,
    pub handshake_hist: String,
    pub subscribe_hist: String,
    pub errors: Vec<String>,
}

impl ChurnStats {
    fn add(&mut self, o: &ChurnStats) {
        self.started += o.started;
        self.connected += o.connected;
        self.subscribed += o.subscribed;
        self.unsubscribed += o.unsubscribed;
        self.completed += o.completed;
        self.failed += o.failed;
        self.received += o.received;
        self.gaps += o.gaps;
        self.out_of_order += o.out_of_order;
        self.after_unsubscribe += o.after_unsubscribe;
        for e in &o.errors {
            if self.errors.len() < 10 {
                self.errors.push(e.clone());
            }
        }
    }
}

#[derive(Default)]
struct Stream {
    bits: Vec<u64>,
    unique: u64,
    max: Option<u64>,
}

struct SubState {
    step: u32,
    streams: Vec<(u32, Stream)>,
    dup: u64,
    ooo: u64,
    unexpected: u64,
    late: u64,
    malformed: u64,
    closed: Option<String>,
}

impl SubState {
    fn record(&mut self, s: Stamp) {
        if s.step != self.step {
            self.late += 1;
            return;
        }
        let Ok(i) = self.streams.binary_search_by_key(&s.ch, |(c, _)| *c) else {
            self.unexpected += 1;
            return;
        };
        if s.seq >= MAX_SEQ {
            self.unexpected += 1;
            return;
        }
        let st = &mut self.streams[i].1;
        let w = (s.seq / 64) as usize;
        if st.bits.len() <= w {
            st.bits.resize(w + 1, 0);
        }
        let mask = 1u64 << (s.seq % 64);
        if st.bits[w] & mask != 0 {
            self.dup += 1;
            return;
        }
        st.bits[w] |= mask;
        st.unique += 1;
        match st.max {
            Some(m) if s.seq < m => self.ooo += 1,
            _ => st.max = Some(s.seq),
        }
    }

    fn reset(&mut self, step: u32) {
        self.step = step;
        for (_, s) in &mut self.streams {
            *s = Stream::default();
        }
        self.dup = 0;
        self.ooo = 0;
        self.unexpected = 0;
        self.late = 0;
        self.malformed = 0;
    }
}

struct Rec {
    step: Histogram<u64>,
    window: Histogram<u64>,
    lag: Histogram<u64>,
}

struct Shared {
    published: AtomicU64,
    delivered: AtomicU64,
    conns: AtomicU64,
    errors: AtomicU64,
    rec: Mutex<Rec>,
    samples: Mutex<Vec<String>>,
    churn: Mutex<(ChurnStats, Histogram<u64>, Histogram<u64>)>,
}

impl Shared {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = lock(&self.samples);
        if s.len() < 10 {
            s.push(e);
        }
    }
}

struct PubCmd {
    step: u32,
    rate: f64,
    start_us: u64,
    end_us: u64,
    track: bool,
}

#[derive(Default)]
struct PubDone {
    counts: Vec<(u32, u64)>,
    shortfall: u64,
    times: Vec<(u32, Vec<u64>)>,
    dead: bool,
}

fn until(us: u64) -> tokio::time::Instant {
    let now = sys::now_us();
    tokio::time::Instant::now() + Duration::from_micros(us.saturating_sub(now))
}

/// One worker's share of the sockets: subscribers and publishers whose
/// number is `index` mod K.
pub async fn worker(a: Args, mut io: WorkerIo) {
    let Some(prefix) = a.prefix.clone() else {
        return io.send(Up::Fatal("a worker needs --prefix".into()));
    };
    let mut targets = Vec::new();
    for u in &a.common.urls {
        match Target::resolve(u).await {
            Ok(t) => targets.push(t),
            Err(e) => return io.send(Up::Fatal(format!("{e:#}"))),
        }
    }
    let plan = Arc::new(Plan::new(&a, &prefix));
    let (k, me) = (io.count.max(1), io.index);
    let shared = Arc::new(Shared {
        published: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        conns: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        rec: Mutex::new(Rec { step: stats::hist(), window: stats::hist(), lag: stats::hist() }),
        samples: Mutex::new(Vec::new()),
        churn: Mutex::new((ChurnStats::default(), stats::hist(), stats::hist())),
    });
    let stop = CancellationToken::new();
    let ticker = {
        let (shared, up, stop) = (shared.clone(), io.up.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !stop.is_cancelled() {
                every.tick().await;
                let hist = {
                    let mut r = lock(&shared.rec);
                    let e = stats::encode(&r.window);
                    r.window.reset();
                    e
                };
                let t = Tick {
                    conns: shared.conns.load(Ordering::Relaxed),
                    published: shared.published.load(Ordering::Relaxed),
                    delivered: shared.delivered.load(Ordering::Relaxed),
                    errors: shared.errors.load(Ordering::Relaxed),
                    hist,
                };
                if up.send(Up::Tick(t)).is_err() {
                    break;
                }
            }
        })
    };

    // Subscribers first (all acknowledged), then publishers.
    let n_subs = plan.sub_channels.len();
    let sem = Arc::new(Semaphore::new(128));
    let mut joins = Vec::new();
    for s in (me..n_subs).step_by(k) {
        let (plan, shared, stop, sem) = (plan.clone(), shared.clone(), stop.clone(), sem.clone());
        let target = targets[s % targets.len()].clone();
        let src = client::source_ip(s, a.common.source_ips);
        joins.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok()?;
            let chans = &plan.sub_channels[s];
            let names: Vec<String> = chans.iter().map(|&c| plan.names[c as usize].clone()).collect();
            let r = async {
                let mut ws = client::connect(&target, src).await?;
                let mut cid = 2;
                client::subscribe(&mut ws, &names, &mut cid, |_| {}).await?;
                anyhow::Ok(ws)
            }
            .await;
            drop(permit);
            let mut streams: Vec<(u32, Stream)> = chans.iter().map(|&c| (c, Stream::default())).collect();
            streams.sort_by_key(|(c, _)| *c);
            streams.dedup_by_key(|(c, _)| *c);
            let state = Arc::new(Mutex::new(SubState {
                step: u32::MAX,
                streams,
                dup: 0,
                ooo: 0,
                unexpected: 0,
                late: 0,
                malformed: 0,
                closed: None,
            }));
            match r {
                Ok(ws) => {
                    shared.conns.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(subscriber(ws, state.clone(), shared, stop));
                }
                Err(e) => {
                    shared.error(format!("subscriber {s}: {e:#}"));
                    lock(&state).closed = Some(format!("{e:#}"));
                }
            }
            Some(state)
        }));
    }
    let mut subs = Vec::new();
    for j in joins {
        if let Ok(Some(st)) = j.await {
            subs.push(st);
        }
    }
    let mut publishers = Vec::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<PubDone>();
    for p in (me..plan.pub_channels.len()).step_by(k) {
        let g = n_subs + p;
        let target = targets[(p + 1) % targets.len()].clone();
        let src = client::source_ip(g, a.common.source_ips);
        match client::connect(&target, src).await {
            Ok(ws) => {
                shared.conns.fetch_add(1, Ordering::Relaxed);
                let chans: Vec<(u32, String)> =
                    plan.pub_channels[p].iter().map(|&c| (c, plan.names[c as usize].clone())).collect();
                let (tx, rx) = mpsc::unbounded_channel();
                let share = chans.len() as f64 / plan.names.len() as f64;
                tokio::spawn(publisher(
                    ws,
                    chans,
                    a.size,
                    a.batch.max(1),
                    rx,
                    done_tx.clone(),
                    shared.clone(),
                    stop.clone(),
                ));
                publishers.push((tx, share));
            }
            Err(e) => shared.error(format!("publisher {p}: {e:#}")),
        }
    }
    let ready = json!({
        "subscribers": subs.iter().filter(|s| lock(s).closed.is_none()).count(),
        "publishers": publishers.len(),
        "errors": lock(&shared.samples).clone(),
    });
    io.send(Up::Ready(ready));

    loop {
        let go = match io.next().await {
            Down::Go(v) => match serde_json::from_value::<Go>(v) {
                Ok(g) => g,
                Err(e) => {
                    io.send(Up::Fatal(format!("bad step command: {e}")));
                    break;
                }
            },
            Down::Finish => break,
        };
        let done = run_step(&a, &plan, &targets, &go, &subs, &publishers, &mut done_rx, &shared, me, k).await;
        io.send(Up::Done(serde_json::to_value(done).unwrap_or_default()));
    }
    stop.cancel();
    ticker.abort();
    io.send(Up::Final(json!({ "cpu_us": sys::self_cpu().as_micros() as u64 })));
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    a: &Args,
    plan: &Arc<Plan>,
    targets: &[Target],
    go: &Go,
    subs: &[Arc<Mutex<SubState>>],
    publishers: &[(mpsc::UnboundedSender<PubCmd>, f64)],
    done_rx: &mut mpsc::UnboundedReceiver<PubDone>,
    shared: &Arc<Shared>,
    me: usize,
    k: usize,
) -> StepDone {
    let c = plan.names.len();
    for s in subs {
        lock(s).reset(go.step);
    }
    {
        let mut r = lock(&shared.rec);
        r.step.reset();
        r.lag.reset();
    }
    {
        let mut ch = lock(&shared.churn);
        *ch = (ChurnStats::default(), stats::hist(), stats::hist());
    }
    let cpu0 = sys::self_cpu();
    for (tx, share) in publishers {
        let _ = tx.send(PubCmd {
            step: go.step,
            rate: go.rate as f64 * share,
            start_us: go.start_us,
            end_us: go.end_us,
            track: go.track_times,
        });
    }
    let churn = (a.churn_rate > 0.0).then(|| {
        tokio::spawn(churn_driver(a.clone(), plan.clone(), targets.to_vec(), go.clone(), shared.clone(), me, k))
    });
    let mut published = vec![0u64; c];
    let mut times: Vec<Vec<u64>> = if go.track_times { vec![Vec::new(); c] } else { Vec::new() };
    let mut shortfall = 0;
    let mut dead = 0;
    let bound = until(go.end_us) + Duration::from_secs(30);
    for _ in 0..publishers.len() {
        match tokio::time::timeout_at(bound, done_rx.recv()).await {
            Ok(Some(d)) => {
                for (ch, n) in d.counts {
                    published[ch as usize] += n;
                }
                for (ch, t) in d.times {
                    times[ch as usize] = t;
                }
                shortfall += d.shortfall;
                dead += u64::from(d.dead);
            }
            _ => {
                shared.error("a publisher did not finish its step".into());
                dead += 1;
            }
        }
    }
    // Drain: until quiet, at most drain_ms after the end.
    let drain_end = until(go.end_us) + Duration::from_millis(go.drain_ms);
    let quiet = Duration::from_millis(go.quiet_ms);
    let mut last = shared.delivered.load(Ordering::Relaxed);
    let mut since = tokio::time::Instant::now();
    while tokio::time::Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = shared.delivered.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    if let Some(h) = churn {
        let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
    }
    let mut d = StepDone {
        step: go.step,
        published: published.clone(),
        streams: vec![0; c],
        unique: vec![0; c],
        shortfall,
        dead_publishers: dead,
        ..StepDone::default()
    };
    let mut lost_ms = std::collections::BTreeMap::<u64, u64>::new();
    for s in subs {
        let st = lock(s);
        if st.closed.is_some() {
            d.closed_subscribers += 1;
        }
        d.duplicated += st.dup;
        d.out_of_order += st.ooo;
        d.unexpected += st.unexpected;
        d.late += st.late;
        d.malformed += st.malformed;
        for (ch, stream) in &st.streams {
            let ch = *ch as usize;
            d.streams[ch] += 1;
            d.unique[ch] += stream.unique;
            if go.track_times && stream.unique < published[ch] {
                for seq in 0..published[ch] {
                    let have = stream.bits.get((seq / 64) as usize).is_some_and(|w| w & (1 << (seq % 64)) != 0);
                    if !have {
                        if let Some(t) = times[ch].get(seq as usize) {
                            *lost_ms.entry(t / 1000).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    d.lost_ms = lost_ms.into_iter().collect();
    {
        let r = lock(&shared.rec);
        d.hist = stats::encode(&r.step);
        d.lag_hist = stats::encode(&r.lag);
    }
    {
        let ch = lock(&shared.churn);
        d.churn = ch.0.clone();
        d.churn.handshake_hist = stats::encode(&ch.1);
        d.churn.subscribe_hist = stats::encode(&ch.2);
    }
    d.errors = lock(&shared.samples).clone();
    d.cpu_us = (sys::self_cpu().saturating_sub(cpu0)).as_micros() as u64;
    d
}

async fn subscriber(mut ws: Ws, state: Arc<Mutex<SubState>>, shared: Arc<Shared>, stop: CancellationToken) {
    let scanner = Scanner::default();
    let mut lat: Vec<u64> = Vec::with_capacity(64);
    // Made once: a fresh `cancelled()` per message costs a registration each.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    let reason = loop {
        let m = tokio::select! {
            biased;
            m = ws.next() => m,
            () = &mut cancelled => break None,
        };
        match m {
            Some(Ok(Message::Text(t))) => {
                let text = t.as_str();
                if text.len() <= 2 {
                    if client::answer_ping(&mut ws, text).await.is_err() {
                        break Some("pong failed".to_owned());
                    }
                    continue;
                }
                let now = sys::now_us();
                lat.clear();
                {
                    let mut st = lock(&state);
                    let step = st.step;
                    let bad = scanner.scan(text.as_bytes(), |s| {
                        if s.step == step {
                            lat.push(now.saturating_sub(s.t));
                        }
                        st.record(s);
                    });
                    st.malformed += bad;
                }
                if !lat.is_empty() {
                    shared.delivered.fetch_add(lat.len() as u64, Ordering::Relaxed);
                    let mut r = lock(&shared.rec);
                    for &l in &lat {
                        stats::record(&mut r.step, l);
                        stats::record(&mut r.window, l);
                    }
                }
            }
            Some(Ok(Message::Close(f))) => break Some(format!("closed by the server: {f:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Some(format!("read: {e}")),
            None => break Some("connection closed".to_owned()),
        }
    };
    if let Some(r) = reason {
        shared.conns.fetch_sub(1, Ordering::Relaxed);
        shared.error(format!("subscriber {r}"));
        lock(&state).closed = Some(r);
    }
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    mut ws: Ws,
    chans: Vec<(u32, String)>,
    size: usize,
    batch: usize,
    mut cmds: mpsc::UnboundedReceiver<PubCmd>,
    done: mpsc::UnboundedSender<PubDone>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut alive = true;
    loop {
        let cmd = tokio::select! {
            c = cmds.recv() => match c { Some(c) => c, None => break },
            m = ws.next(), if alive => {
                match m {
                    Some(Ok(Message::Text(t))) => {
                        if client::answer_ping(&mut ws, t.as_str()).await.is_err() { alive = false; }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        alive = false;
                        shared.conns.fetch_sub(1, Ordering::Relaxed);
                        shared.error("publisher closed by the server".into());
                    }
                    Some(Ok(_)) => {}
                }
                continue;
            }
            () = stop.cancelled() => break,
        };
        let d = if alive {
            let d = publish_step(&mut ws, &chans, size, batch, &cmd, &shared, &stop).await;
            if d.dead {
                alive = false;
                shared.conns.fetch_sub(1, Ordering::Relaxed);
            }
            d
        } else {
            PubDone { dead: true, ..PubDone::default() }
        };
        let _ = done.send(d);
    }
}

async fn publish_step(
    ws: &mut Ws,
    chans: &[(u32, String)],
    size: usize,
    batch: usize,
    cmd: &PubCmd,
    shared: &Shared,
    stop: &CancellationToken,
) -> PubDone {
    let n = chans.len();
    let mut seqs = vec![0u64; n];
    let mut times: Vec<Vec<u64>> = if cmd.track { vec![Vec::new(); n] } else { Vec::new() };
    let mut rr = 0;
    let mut sent = 0u64;
    let mut dead = false;
    tokio::time::sleep_until(until(cmd.start_us)).await;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let per_us = cmd.rate / 1e6;
    let mut lag = Vec::new();
    'run: loop {
        let now = sys::now_us();
        if now >= cmd.end_us || stop.is_cancelled() {
            break;
        }
        let elapsed = now.saturating_sub(cmd.start_us);
        let target = if cmd.rate <= 0.0 { sent + batch as u64 } else { (elapsed as f64 * per_us) as u64 + 1 };
        let mut due = target.saturating_sub(sent).min(MAX_PER_TURN);
        if cmd.rate > 0.0 && due > 0 {
            // How late the oldest message due now is.
            let intended = cmd.start_us + (sent as f64 / per_us) as u64;
            lag.push(now.saturating_sub(intended));
        }
        while due > 0 {
            let m = due.min(batch as u64);
            let mut frame = String::with_capacity((m as usize) * (size + 80) + 2);
            if m > 1 {
                frame.push('[');
            }
            for j in 0..m {
                if j > 0 {
                    frame.push(',');
                }
                let (ch, name) = &chans[rr];
                let st = Stamp { step: cmd.step, ch: *ch, seq: seqs[rr], t: now };
                push_publish(&mut frame, name, &st, size);
                if cmd.track {
                    times[rr].push(now);
                }
                seqs[rr] += 1;
                rr = (rr + 1) % n;
            }
            if m > 1 {
                frame.push(']');
            }
            if let Err(e) = ws.send(Message::text(frame)).await {
                shared.error(format!("publisher send: {e}"));
                dead = true;
                break 'run;
            }
            sent += m;
            due -= m;
            shared.published.fetch_add(m, Ordering::Relaxed);
        }
        if cmd.rate > 0.0 {
            tokio::select! {
                _ = tick.tick() => {}
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        if client::answer_ping(ws, t.as_str()).await.is_err() { dead = true; break 'run; }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        shared.error("publisher closed by the server".into());
                        dead = true;
                        break 'run;
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    if !lag.is_empty() {
        let mut r = lock(&shared.rec);
        for l in lag {
            stats::record(&mut r.lag, l);
        }
    }
    let shortfall = if cmd.rate > 0.0 { ((cmd.end_us.saturating_sub(cmd.start_us)) as f64 * per_us) as u64 } else { 0 }
        .saturating_sub(sent);
    PubDone {
        counts: chans.iter().zip(&seqs).map(|((c, _), &s)| (*c, s)).collect(),
        shortfall,
        times: if cmd.track { chans.iter().map(|(c, _)| *c).zip(times).collect() } else { Vec::new() },
        dead,
    }
}

/// Starts this worker's share of churning sockets, paced over the step.
async fn churn_driver(
    a: Args,
    plan: Arc<Plan>,
    targets: Vec<Target>,
    go: Go,
    shared: Arc<Shared>,
    me: usize,
    k: usize,
) {
    let rate = a.churn_rate / k as f64;
    if rate <= 0.0 {
        return;
    }
    let life = Duration::from_secs_f64(a.churn_life.max(0.0));
    let base = plan.sub_channels.len() + plan.pub_channels.len();
    let start = until(go.start_us);
    let span = Duration::from_micros(go.end_us.saturating_sub(go.start_us));
    let count = (span.as_secs_f64() * rate) as usize;
    let mut handles = Vec::with_capacity(count);
    for j in 0..count {
        let at = start + Duration::from_secs_f64(j as f64 / rate);
        tokio::time::sleep_until(at).await;
        let g = base + me + k * j;
        let target = targets[g % targets.len()].clone();
        let src = client::source_ip(g, a.common.source_ips);
        let ch = rand::random_range(0..plan.names.len()) as u32;
        let name = plan.names[ch as usize].clone();
        let (shared, step) = (shared.clone(), go.step);
        handles.push(tokio::spawn(async move {
            lock(&shared.churn).0.started += 1;
            let r = churner(&target, src, ch, &name, step, life, &shared).await;
            let mut c = lock(&shared.churn);
            match r {
                Ok(()) => c.0.completed += 1,
                Err(e) => {
                    c.0.failed += 1;
                    if c.0.errors.len() < 10 {
                        c.0.errors.push(format!("{e:#}"));
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = tokio::time::timeout(life + Duration::from_secs(40), h).await;
    }
}

/// What a churner saw of its channel.
#[derive(Default)]
struct Seen {
    last: Option<u64>,
    received: u64,
    gaps: u64,
    ooo: u64,
}

impl Seen {
    fn see(&mut self, s: Stamp, ch: u32, step: u32) {
        if s.ch != ch || s.step != step {
            return;
        }
        self.received += 1;
        match self.last {
            Some(l) if s.seq > l => {
                self.gaps += s.seq - l - 1;
                self.last = Some(s.seq);
            }
            Some(_) => self.ooo += 1,
            None => self.last = Some(s.seq),
        }
    }
}

async fn churner(
    target: &Target,
    src: std::net::Ipv4Addr,
    ch: u32,
    name: &str,
    step: u32,
    life: Duration,
    shared: &Shared,
) -> Result<()> {
    let scanner = Scanner::default();
    let t0 = Instant::now();
    let mut ws = client::connect(target, src).await?;
    {
        let mut c = lock(&shared.churn);
        c.0.connected += 1;
        stats::record(&mut c.1, t0.elapsed().as_micros() as u64);
    }
    let mut seen = Seen::default();
    let t1 = Instant::now();
    let mut cid = 2;
    client::subscribe(&mut ws, &[name.to_owned()], &mut cid, |text| {
        scanner.scan(text.as_bytes(), |s| seen.see(s, ch, step));
    })
    .await?;
    {
        let mut c = lock(&shared.churn);
        c.0.subscribed += 1;
        stats::record(&mut c.2, t1.elapsed().as_micros() as u64);
    }
    let end = tokio::time::Instant::now() + life;
    loop {
        let m = match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => break,
            Ok(m) => m,
        };
        match m {
            Some(Ok(Message::Text(t))) => {
                if !client::answer_ping(&mut ws, t.as_str()).await? {
                    scanner.scan(t.as_bytes(), |s| seen.see(s, ch, step));
                }
            }
            Some(Ok(Message::Close(f))) => bail!("closed by the server while subscribed: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("read: {e}"),
            None => bail!("connection closed while subscribed"),
        }
    }
    let cid_unsub = cid;
    ws.send(Message::text(json!({"event": "#unsubscribe", "data": name, "cid": cid_unsub}).to_string())).await?;
    let mut pending = HashSet::from([cid_unsub]);
    client::await_replies(&mut ws, &mut pending, |text| {
        scanner.scan(text.as_bytes(), |s| seen.see(s, ch, step));
    })
    .await?;
    lock(&shared.churn).0.unsubscribed += 1;
    // Anything of the channel after the acknowledgement is a leak.
    let mut after = 0u64;
    let quiet = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(quiet, ws.next()).await {
        if let Message::Text(t) = m {
            scanner.scan(t.as_bytes(), |s| after += u64::from(s.ch == ch && s.step == step));
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    let mut c = lock(&shared.churn);
    c.0.received += seen.received;
    c.0.gaps += seen.gaps;
    c.0.out_of_order += seen.ooo;
    c.0.after_unsubscribe += after;
    Ok(())
}

/// One step's merged result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepResult {
    pub step: u32,
    pub target_rate: u64,
    pub duration_s: f64,
    pub published: u64,
    /// Deliveries owed: Σ over channels of published × subscriber streams.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub unexpected: u64,
    pub late_from_earlier_steps: u64,
    pub published_per_s: f64,
    pub delivered_per_s: f64,
    pub latency: Latency,
    pub publisher_lag: Latency,
    /// Messages the publishers fell behind their schedule by the end.
    pub publish_shortfall: u64,
    pub closed_subscribers: u64,
    pub dead_publishers: u64,
    pub held: bool,
    /// Why not held.
    pub verdict: String,
    pub generator_cpu_s: f64,
    /// Generator CPU per delivered message (µs).
    pub generator_cpu_us_per_msg: f64,
    /// CPU of the --pid processes during the step, in cores.
    pub server_cpu_cores: Option<f64>,
    pub server_cpu_us_per_msg: Option<f64>,
    pub server_rss_bytes: Vec<Option<u64>>,
    /// CPU the rest of the machine used during the step (other work on the box), in cores.
    pub other_cpu_cores: Option<f64>,
    pub churn: Option<Value>,
    pub errors: Vec<String>,
    /// (ms on the monotonic clock, lost messages published then), when tracked.
    #[serde(skip)]
    pub lost_ms: Vec<(u64, u64)>,
}

/// Merges the workers' results of one step.
#[must_use]
pub fn merge(
    a: &Args,
    go: &Go,
    dones: &[StepDone],
    cpu_server: Option<Duration>,
    rss: Vec<Option<u64>>,
    machine_busy: Option<Duration>,
) -> StepResult {
    let c = a.channels.max(1);
    let mut published = vec![0u64; c];
    let mut streams = vec![0u64; c];
    let mut unique = vec![0u64; c];
    let mut hist = stats::hist();
    let mut lag = stats::hist();
    let mut churn = ChurnStats::default();
    let mut churn_hs = stats::hist();
    let mut churn_sub = stats::hist();
    let mut lost_ms = std::collections::BTreeMap::<u64, u64>::new();
    let mut errors = Vec::new();
    let (mut dup, mut ooo, mut unexpected, mut late, mut cpu_us, mut shortfall, mut closed, mut dead) =
        (0, 0, 0, 0, 0, 0, 0, 0);
    for d in dones {
        for i in 0..c {
            published[i] += d.published.get(i).copied().unwrap_or(0);
            streams[i] += u64::from(d.streams.get(i).copied().unwrap_or(0));
            unique[i] += d.unique.get(i).copied().unwrap_or(0);
        }
        dup += d.duplicated;
        ooo += d.out_of_order;
        unexpected += d.unexpected + d.malformed;
        late += d.late;
        cpu_us += d.cpu_us;
        shortfall += d.shortfall;
        closed += d.closed_subscribers;
        dead += d.dead_publishers;
        stats::merge_encoded(&mut hist, &d.hist);
        stats::merge_encoded(&mut lag, &d.lag_hist);
        churn.add(&d.churn);
        stats::merge_encoded(&mut churn_hs, &d.churn.handshake_hist);
        stats::merge_encoded(&mut churn_sub, &d.churn.subscribe_hist);
        for &(t, n) in &d.lost_ms {
            *lost_ms.entry(t).or_default() += n;
        }
        for e in &d.errors {
            if errors.len() < 10 && !errors.contains(e) {
                errors.push(e.clone());
            }
        }
    }
    let expected: u64 = (0..c).map(|i| published[i] * streams[i]).sum();
    let delivered: u64 = unique.iter().sum();
    let lost = expected.saturating_sub(delivered);
    let dur = go.end_us.saturating_sub(go.start_us) as f64 / 1e6;
    let total_published: u64 = published.iter().sum();
    let latency = Latency::of(&hist);
    let mut why = Vec::new();
    if lost > 0 {
        why.push(format!("{lost} lost"));
    }
    if dup > 0 {
        why.push(format!("{dup} duplicated"));
    }
    if latency.p99_ms >= a.p99_limit_ms {
        why.push(format!("p99 {:.1} ms ≥ {} ms", latency.p99_ms, a.p99_limit_ms));
    }
    if go.rate > 0 && (total_published as f64) < 0.97 * go.rate as f64 * dur {
        why.push(format!("published {:.0}/s of {}/s", total_published as f64 / dur, go.rate));
    }
    if closed > 0 || dead > 0 {
        why.push(format!("{closed} subscribers and {dead} publishers dropped"));
    }
    if delivered == 0 {
        why.push("nothing delivered".into());
    }
    let held = why.is_empty();
    let churn_v = (a.churn_rate > 0.0).then(|| {
        let mut v = serde_json::to_value(&churn).unwrap_or_default();
        v["handshake_hist"] = Value::Null;
        v["subscribe_hist"] = Value::Null;
        v["handshake"] = serde_json::to_value(Latency::of(&churn_hs)).unwrap_or_default();
        v["subscribe_ack"] = serde_json::to_value(Latency::of(&churn_sub)).unwrap_or_default();
        v
    });
    StepResult {
        step: go.step,
        target_rate: go.rate,
        duration_s: dur,
        published: total_published,
        expected,
        delivered,
        lost,
        duplicated: dup,
        out_of_order: ooo,
        unexpected,
        late_from_earlier_steps: late,
        published_per_s: total_published as f64 / dur.max(1e-3),
        delivered_per_s: delivered as f64 / dur.max(1e-3),
        latency,
        publisher_lag: Latency::of(&lag),
        publish_shortfall: shortfall,
        closed_subscribers: closed,
        dead_publishers: dead,
        held,
        verdict: if held { "held".into() } else { why.join("; ") },
        generator_cpu_s: cpu_us as f64 / 1e6,
        generator_cpu_us_per_msg: if delivered > 0 { cpu_us as f64 / delivered as f64 } else { 0.0 },
        server_cpu_cores: cpu_server.map(|d| d.as_secs_f64() / dur.max(1e-3)),
        server_cpu_us_per_msg: cpu_server.filter(|_| delivered > 0).map(|d| d.as_micros() as f64 / delivered as f64),
        server_rss_bytes: rss,
        other_cpu_cores: machine_busy.map(|busy| {
            let others = busy.as_secs_f64() - cpu_server.map_or(0.0, |d| d.as_secs_f64()) - cpu_us as f64 / 1e6;
            (others / dur.max(1e-3)).max(0.0)
        }),
        churn: churn_v,
        errors,
        lost_ms: lost_ms.into_iter().collect(),
    }
}

/// A prepared fan-out: workers connected and subscribed, ready for steps.
pub struct Session {
    pub args: Args,
    pub set: WorkerSet,
    pub progress: Progress,
    pub ready: Vec<Value>,
    step: u32,
}

impl Session {
    /// Starts the workers and waits until every socket is connected and subscribed.
    ///
    /// # Errors
    /// When workers cannot be started or do not get ready in time.
    pub async fn start(mut a: Args, argv: &[String]) -> Result<Session> {
        if a.common.urls.is_empty() {
            bail!("give at least one --url");
        }
        let prefix = a.prefix.clone().unwrap_or_else(|| format!("lt{:08x}", rand::random::<u32>()));
        a.prefix = Some(prefix.clone());
        let k = a.common.procs.max(1);
        let mut progress = Progress::new(k, a.common.quiet);
        let local = a.clone();
        let extra = ["--prefix".to_owned(), prefix];
        let mut set = start_workers(&a.common, argv, &extra, move |io| worker(local, io))?;
        let setup = Duration::from_secs(60) + Duration::from_millis((a.subscribers as u64) * 20 / k as u64);
        let ready = set
            .gather("ready", setup, &mut progress, |u| match u {
                Up::Ready(v) => Some(v.clone()),
                _ => None,
            })
            .await?;
        let subs: u64 = ready.iter().filter_map(|r| r["subscribers"].as_u64()).sum();
        let pubs: u64 = ready.iter().filter_map(|r| r["publishers"].as_u64()).sum();
        if !a.common.quiet {
            eprintln!("fanout: {subs} subscribers and {pubs} publishers connected and subscribed");
        }
        progress.mark(progress.elapsed(), "subscribed");
        Ok(Session { args: a, set, progress, ready, step: 0 })
    }

    /// Runs one step at `rate` msg/s for `duration`.
    ///
    /// # Errors
    /// When a worker fails or does not report in time.
    pub async fn step(&mut self, rate: u64, duration: Duration, track_times: bool) -> Result<(Go, StepResult)> {
        let duration = duration.min(MAX_STEP);
        self.step += 1;
        let start_us = sys::now_us() + 300_000;
        let go = Go {
            step: self.step,
            rate,
            start_us,
            end_us: start_us + duration.as_micros() as u64,
            drain_ms: (self.args.drain * 1000.0) as u64,
            quiet_ms: (self.args.quiet_after * 1000.0) as u64,
            track_times,
        };
        let pids = self.args.common.pids.clone();
        let cpu0: Option<Duration> = pids.iter().map(|&p| sys::proc_cpu(p)).sum();
        let busy0 = sys::machine_busy();
        let label =
            if rate == 0 { format!("step {}: max", self.step) } else { format!("step {}: {rate}/s", self.step) };
        self.progress.mark(self.progress.elapsed() + 0.3, label);
        self.set.broadcast(&Down::Go(serde_json::to_value(&go)?));
        let bound = duration + Duration::from_millis(go.drain_ms) + Duration::from_secs(90);
        let dones = self
            .set
            .gather("step result", bound, &mut self.progress, |u| match u {
                Up::Done(v) => Some(v.clone()),
                _ => None,
            })
            .await?;
        let cpu1: Option<Duration> = pids.iter().map(|&p| sys::proc_cpu(p)).sum();
        let busy = busy0.zip(sys::machine_busy()).map(|(a, b)| b.saturating_sub(a));
        let rss = pids.iter().map(|&p| sys::rss_bytes(p)).collect();
        let dones: Vec<StepDone> = dones.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
        let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a));
        // The step's window is start..end plus the drain; scale the machine's busy time to it.
        let r = merge(&self.args, &go, &dones, server_cpu, rss, busy);
        if !self.args.common.quiet {
            eprintln!(
                "step {} @ {}/s: published {} delivered {} ({:.0}/s) lost {} dup {} ooo {} | p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms | gen {:.2} µs/msg | {}",
                r.step,
                if rate == 0 { "max".to_owned() } else { rate.to_string() },
                r.published,
                r.delivered,
                r.delivered_per_s,
                r.lost,
                r.duplicated,
                r.out_of_order,
                r.latency.p50_ms,
                r.latency.p90_ms,
                r.latency.p99_ms,
                r.latency.p999_ms,
                r.latency.max_ms,
                r.generator_cpu_us_per_msg,
                r.verdict
            );
        }
        Ok((go, r))
    }

    /// Pauses between steps, still showing progress.
    pub async fn pause(&mut self, d: Duration) {
        self.set.pump(d, &mut self.progress).await;
    }

    /// Closes every socket and the workers; returns the generator's total CPU seconds.
    ///
    /// # Errors
    /// When the workers do not finish in time.
    pub async fn finish(mut self) -> Result<(f64, Progress)> {
        self.set.broadcast(&Down::Finish);
        let finals = self
            .set
            .gather("final", Duration::from_secs(30), &mut self.progress, |u| match u {
                Up::Final(v) => Some(v.clone()),
                _ => None,
            })
            .await?;
        self.set.close().await;
        let cpu: u64 = finals.iter().filter_map(|f| f["cpu_us"].as_u64()).sum();
        Ok((cpu as f64 / 1e6, self.progress))
    }
}

/// Runs the steps and writes the report.
///
/// # Errors
/// When the run cannot be carried out.
pub async fn run(a: Args, argv: &[String], scenario: &str) -> Result<Report> {
    let machine = sys::Machine::describe();
    let started_unix = sys::unix_secs();
    let mut session = Session::start(a, argv).await?;
    let a = session.args.clone();
    let mut steps = Vec::new();
    let rates = if a.rate.is_empty() { vec![1000] } else { a.rate.clone() };
    let mut failures = 0;
    for (i, &rate) in rates.iter().enumerate() {
        if i > 0 {
            session.pause(Duration::from_secs_f64(a.pause.max(0.0))).await;
        }
        let (_, r) = session.step(rate, Duration::from_secs_f64(a.duration.max(0.1)), false).await?;
        failures = if r.held { 0 } else { failures + 1 };
        steps.push(r);
        if failures >= a.max_failures.max(1) && !a.keep_going {
            break;
        }
    }
    let ready = std::mem::take(&mut session.ready);
    let (gen_cpu, mut progress) = session.finish().await?;
    let best = steps.iter().filter(|s| s.held).max_by(|x, y| x.delivered_per_s.total_cmp(&y.delivered_per_s));
    let results = json!({
        "steps": steps,
        "max_held": best.map(|b| json!({
            "target_rate": b.target_rate,
            "published_per_s": b.published_per_s,
            "delivered_per_s": b.delivered_per_s,
            "p99_ms": b.latency.p99_ms,
        })),
        "subs_per_channel": a.subs_per_channel(),
        "workers_ready": ready,
        "generator_cpu_s_total": gen_cpu,
    });
    let name = format!(
        "p{}-s{}-c{}-m{}-r{}",
        a.publishers,
        a.subscribers,
        a.channels,
        a.size,
        rates.iter().map(u64::to_string).collect::<Vec<_>>().join("_")
    );
    let mut report = Report {
        scenario: scenario.into(),
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
    let dir = a.common.out.clone().unwrap_or_else(|| default_dir(scenario, &a.common.label, &name));
    report.write(&dir)?;
    Ok(report)
}
