//! Steady load over a cluster, measured: P publisher sockets and S subscriber
//! sockets over C channels at a target total rate, for a bounded time.
//!
//! - Channel `i` is named `<prefix>/<i>`; it has exactly one publisher
//!   (socket `i % P`) and one subscriber (socket `i % S`), so per-channel
//!   order is a per-publisher order and can be checked.
//! - Publishers use fire-and-forget `#publish` (no `cid`): a message the
//!   cluster drops is simply never delivered, and the meter sees the gap.
//!   They send what is due every few milliseconds, in batch frames.
//! - Subscribers are on other frontends than publishers by default (the
//!   first frontend subscribes, the second publishes), so every message
//!   crosses the fabric.
//! - `start` returns once every subscription is acknowledged (each ack means
//!   the owning broker confirmed), then the publishers start.
//! - At the end, the run waits (bounded) for deliveries still in flight
//!   before it counts anything lost.
//!
//! Observers are extra subscriber sockets that are not measured: they hold
//! interest on frontends a test is about to kill.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::slots::SlotTable;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Client, Ws, MAX_BATCH};
use crate::cluster::Cluster;
use crate::meter::{Meter, Report, Stamp, SubscriberLog};
use crate::wait::try_wait_until;

/// Interval between publisher sends.
const TICK: Duration = Duration::from_millis(5);
/// Most messages one publisher sends in one tick (catching up after a stall is bounded too).
const MAX_PER_TICK: u64 = 2_000;
/// Longest a whole load run may last, whatever the configuration says.
pub const MAX_DURATION: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub channels: usize,
    /// Messages per second over all publishers.
    pub rate: u64,
    /// How long publishers run (unless stopped earlier); at most [`MAX_DURATION`].
    pub duration: Duration,
    pub publishers: usize,
    pub subscribers: usize,
    /// Frontends the publishers connect to, round robin.
    pub publisher_frontends: Vec<usize>,
    /// Frontends the subscribers connect to, round robin.
    pub subscriber_frontends: Vec<usize>,
    /// One unmeasured observer per entry, subscribed to every channel.
    pub observer_frontends: Vec<usize>,
    /// Channel name prefix.
    pub prefix: String,
    /// Longest wait for in-flight deliveries at the end.
    pub drain_timeout: Duration,
    /// The end wait stops early once nothing new arrived for this long.
    pub quiet: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            channels: 500,
            rate: 5_000,
            duration: Duration::from_secs(6),
            publishers: 2,
            subscribers: 4,
            publisher_frontends: vec![1],
            subscriber_frontends: vec![0],
            observer_frontends: Vec::new(),
            prefix: format!("load-{:08x}", rand::random::<u32>()),
            drain_timeout: Duration::from_secs(5),
            quiet: Duration::from_millis(1500),
        }
    }
}

impl LoadConfig {
    #[must_use]
    pub fn channels(mut self, n: usize) -> Self {
        self.channels = n;
        self
    }

    #[must_use]
    pub fn rate(mut self, per_second: u64) -> Self {
        self.rate = per_second;
        self
    }

    #[must_use]
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }

    #[must_use]
    pub fn publishers(mut self, n: usize) -> Self {
        self.publishers = n;
        self
    }

    #[must_use]
    pub fn subscribers(mut self, n: usize) -> Self {
        self.subscribers = n;
        self
    }

    #[must_use]
    pub fn publisher_frontends(mut self, f: Vec<usize>) -> Self {
        self.publisher_frontends = f;
        self
    }

    #[must_use]
    pub fn subscriber_frontends(mut self, f: Vec<usize>) -> Self {
        self.subscriber_frontends = f;
        self
    }

    #[must_use]
    pub fn observer_frontends(mut self, f: Vec<usize>) -> Self {
        self.observer_frontends = f;
        self
    }

    /// Connects every socket, subscribes, and starts publishing.
    ///
    /// # Panics
    /// When a socket cannot connect or a subscription is not acknowledged.
    pub async fn start(self, cluster: &Cluster) -> LoadGen {
        LoadGen::start(self, cluster).await
    }
}

/// A running load.
pub struct LoadGen {
    config: LoadConfig,
    meter: Arc<Meter>,
    stop: watch::Sender<bool>,
    publishers: Vec<JoinHandle<()>>,
    /// Subscribers and observers; stopped after the end wait.
    readers: Vec<JoinHandle<()>>,
    reader_stop: watch::Sender<bool>,
    observed: Vec<Arc<Mutex<ObserverLog>>>,
    started: Instant,
}

/// What an unmeasured observer saw.
#[derive(Debug, Default)]
pub struct ObserverLog {
    pub frontend: usize,
    pub messages: u64,
    pub closed: Option<String>,
}

impl LoadGen {
    #[must_use]
    pub fn builder() -> LoadConfig {
        LoadConfig::default()
    }

    async fn start(config: LoadConfig, cluster: &Cluster) -> LoadGen {
        assert!(config.channels > 0 && config.publishers > 0 && config.subscribers > 0, "empty load: {config:?}");
        assert!(config.duration <= MAX_DURATION, "load runs are bounded by {MAX_DURATION:?}");
        let names: Vec<String> = (0..config.channels).map(|i| format!("{}/{i}", config.prefix)).collect();
        let meter = Arc::new(Meter::new(names.clone()));
        let (reader_stop, reader_rx) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);

        // Subscribers, all at once.
        let mut setups = Vec::new();
        for s in 0..config.subscribers {
            let fe = config.subscriber_frontends[s % config.subscriber_frontends.len()];
            let url = cluster.frontend_url(fe);
            let mine: Vec<u32> =
                (0..config.channels as u32).filter(|c| *c as usize % config.subscribers == s).collect();
            let chans: Vec<String> = mine.iter().map(|&c| names[c as usize].clone()).collect();
            let log = meter.add_subscriber(fe, &mine);
            setups.push(tokio::spawn(async move {
                let mut c = Client::handshake(&url).await?;
                c.subscribe_all(&chans).await?;
                Ok::<_, String>((c, log))
            }));
        }
        let mut observer_setups = Vec::new();
        for &fe in &config.observer_frontends {
            let url = cluster.frontend_url(fe);
            let chans = names.clone();
            observer_setups.push(tokio::spawn(async move {
                let mut c = Client::handshake(&url).await?;
                for chunk in chans.chunks(1000) {
                    c.subscribe_all(chunk).await?;
                }
                Ok::<_, String>((fe, c))
            }));
        }
        let mut readers = Vec::new();
        for s in setups {
            let (client, log) = match s.await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => panic!("load subscriber did not start: {e}"),
                Err(e) => panic!("load subscriber task failed: {e}"),
            };
            let names = meter.names().clone();
            readers.push(tokio::spawn(subscriber(client.ws, log, names, reader_rx.clone())));
        }
        let mut observed = Vec::new();
        for s in observer_setups {
            let (fe, client) = match s.await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => panic!("load observer did not start: {e}"),
                Err(e) => panic!("load observer task failed: {e}"),
            };
            let log = Arc::new(Mutex::new(ObserverLog { frontend: fe, ..ObserverLog::default() }));
            observed.push(log.clone());
            readers.push(tokio::spawn(observer(client.ws, log, reader_rx.clone())));
        }

        // Publishers.
        let mut conns = Vec::new();
        for p in 0..config.publishers {
            let fe = config.publisher_frontends[p % config.publisher_frontends.len()];
            let url = cluster.frontend_url(fe);
            conns.push(tokio::spawn(async move { Client::handshake(&url).await }));
        }
        let started = Instant::now();
        let end = started + config.duration;
        let mut publishers = Vec::new();
        let base = config.rate / config.publishers as u64;
        for (p, conn) in conns.into_iter().enumerate() {
            let client = match conn.await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => panic!("load publisher did not start: {e}"),
                Err(e) => panic!("load publisher task failed: {e}"),
            };
            let rate = base + u64::from((p as u64) < config.rate % config.publishers as u64);
            let mine: Vec<u32> = (0..config.channels as u32).filter(|c| *c as usize % config.publishers == p).collect();
            publishers.push(tokio::spawn(publisher(client.ws, mine, rate, end, meter.clone(), stop_rx.clone())));
        }
        LoadGen { config, meter, stop, publishers, readers, reader_stop, observed, started }
    }

    #[must_use]
    pub fn config(&self) -> &LoadConfig {
        &self.config
    }

    #[must_use]
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// Channel names, by index.
    #[must_use]
    pub fn channel_names(&self) -> &[String] {
        self.meter.names()
    }

    /// Indices of the channels `table` gives to broker `id`.
    #[must_use]
    pub fn channels_owned_by(&self, table: &SlotTable, id: &str) -> Vec<u32> {
        self.meter
            .names()
            .iter()
            .enumerate()
            .filter(|(_, n)| table.owner(n).is_some_and(|b| b.id == id))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Waits until `n` distinct messages have been delivered in all (steady
    /// state reached).
    ///
    /// # Panics
    /// When that does not happen within `timeout`.
    pub async fn wait_delivered(&self, n: u64, timeout: Duration) {
        let meter = &self.meter;
        crate::wait::wait_until(timeout, Duration::from_millis(20), || async move {
            let d = meter.delivered();
            if d >= n {
                Ok(())
            } else {
                Err(format!("{d} of {n} delivered; {}", meter.report()))
            }
        })
        .await;
    }

    /// Waits until every subscriber stream of `channels` has received a
    /// message published at or after `t` (meter time); returns how long after
    /// `t` that happened.
    ///
    /// # Panics
    /// When that does not happen within `within`, with the streams still behind.
    pub async fn wait_received_since(&self, t: u64, channels: &[u32], within: Duration) -> Duration {
        let meter = &self.meter;
        crate::wait::wait_until(within, Duration::from_millis(10), || async move { meter.received_since(t, channels) })
            .await;
        Duration::from_micros(meter.now_us().saturating_sub(t))
    }

    /// Indices of every channel.
    #[must_use]
    pub fn all_channels(&self) -> Vec<u32> {
        (0..self.config.channels as u32).collect()
    }

    /// Time since the publishers started.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// What the observers saw so far.
    #[must_use]
    pub fn observers(&self) -> Vec<(usize, u64, Option<String>)> {
        self.observed
            .iter()
            .map(|o| {
                let o = o.lock().unwrap_or_else(PoisonError::into_inner);
                (o.frontend, o.messages, o.closed.clone())
            })
            .collect()
    }

    /// Lets the publishers run to the end of the configured duration, then
    /// waits for deliveries in flight and reports.
    pub async fn finish(self) -> Report {
        self.end(false).await
    }

    /// Stops the publishers now, waits for deliveries in flight and reports.
    pub async fn stop(self) -> Report {
        self.end(true).await
    }

    async fn end(mut self, now: bool) -> Report {
        if now {
            let _ = self.stop.send(true);
        }
        let bound = self.config.duration.saturating_sub(self.started.elapsed()) + Duration::from_secs(10);
        for p in std::mem::take(&mut self.publishers) {
            if tokio::time::timeout(bound, p).await.is_err() {
                self.meter.record_publisher_error("publisher task did not end in time".into());
            }
        }
        let duration = self.started.elapsed().min(self.config.duration);

        // In-flight deliveries: done when nothing is outstanding, or nothing
        // new arrived for `quiet`, or the drain timeout passed.
        let meter = self.meter.clone();
        let quiet = self.config.quiet;
        let mut last = (meter.delivered(), Instant::now());
        let _ = try_wait_until(self.config.drain_timeout, Duration::from_millis(20), || {
            let delivered = meter.delivered();
            let outstanding = meter.outstanding();
            if delivered != last.0 {
                last = (delivered, Instant::now());
            }
            let quiet_for = last.1.elapsed();
            async move {
                if outstanding == 0 || quiet_for >= quiet {
                    Ok(())
                } else {
                    Err(outstanding)
                }
            }
        })
        .await;

        let _ = self.reader_stop.send(true);
        for r in std::mem::take(&mut self.readers) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
        let mut report = self.meter.report();
        report.duration = duration;
        report
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        for t in self.publishers.iter().chain(&self.readers) {
            t.abort();
        }
    }
}

/// Sends what is due every tick until `end` or a stop.
async fn publisher(
    mut ws: Ws,
    channels: Vec<u32>,
    rate: u64,
    end: Instant,
    meter: Arc<Meter>,
    mut stop: watch::Receiver<bool>,
) {
    let names = meter.names().clone();
    let start = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sent: u64 = 0;
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) if t.is_empty() => {
                    if ws.send(Message::text("")).await.is_err() {
                        meter.record_publisher_error("publisher socket closed (answering a ping)".into());
                        return;
                    }
                    continue;
                }
                Some(Ok(Message::Close(f))) => {
                    meter.record_publisher_error(format!("publisher socket closed by the server: {f:?}"));
                    return;
                }
                None | Some(Err(_)) => {
                    meter.record_publisher_error("publisher socket dropped".into());
                    return;
                }
                // Replies to nothing (publishes carry no cid): ignore.
                Some(Ok(_)) => continue,
            },
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        let elapsed = u64::try_from(now.duration_since(start).as_micros()).unwrap_or(u64::MAX);
        let due = rate.saturating_mul(elapsed) / 1_000_000;
        let n = due.saturating_sub(sent).min(MAX_PER_TICK);
        if n == 0 {
            continue;
        }
        let chans = (0..n).map(|k| channels[(next + k as usize) % channels.len()]);
        let stamps = meter.stamp(chans);
        next = (next + n as usize) % channels.len();
        sent += n;
        for chunk in stamps.chunks(MAX_BATCH) {
            if let Err(e) = ws.feed(Message::text(batch(chunk, &names))).await {
                meter.record_publisher_error(format!("publisher socket failed: {e}"));
                return;
            }
        }
        if let Err(e) = ws.flush().await {
            meter.record_publisher_error(format!("publisher socket failed: {e}"));
            return;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// One batch frame of fire-and-forget publishes.
fn batch(stamps: &[Stamp], names: &[String]) -> String {
    let mut out = String::with_capacity(stamps.len() * 96);
    out.push('[');
    for (i, s) in stamps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Channel names are `<prefix>/<i>`: nothing to escape.
        out.push_str(&format!(
            r##"{{"event":"#publish","data":{{"channel":"{}","data":{{"ch":{},"seq":{},"t":{}}}}}}}"##,
            names[s.ch as usize], s.ch, s.seq, s.t
        ));
    }
    out.push(']');
    out
}

/// Reads pushes into the subscriber's log until stopped or closed.
async fn subscriber(
    mut ws: Ws,
    log: Arc<Mutex<SubscriberLog>>,
    names: Arc<Vec<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let closed = |why: String| log.lock().unwrap_or_else(PoisonError::into_inner).record_closed(why);
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) if t.is_empty() => {
                if ws.send(Message::text("")).await.is_err() {
                    closed("socket closed (answering a ping)".into());
                    return;
                }
                continue;
            }
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => {
                closed(format!("closed by the server: {f:?}"));
                return;
            }
            None | Some(Err(_)) => {
                closed("connection dropped".into());
                return;
            }
            Some(Ok(_)) => continue,
        };
        let packets = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => items,
            Ok(v) => vec![v],
            Err(_) => {
                log.lock().unwrap_or_else(PoisonError::into_inner).record_unexpected();
                continue;
            }
        };
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        for p in packets {
            if p["event"] != "#publish" {
                continue;
            }
            let channel = p["data"]["channel"].as_str().unwrap_or_default();
            match serde_json::from_value::<Stamp>(p["data"]["data"].clone()) {
                Ok(stamp) => log.record(channel, stamp, &names),
                Err(_) => log.record_unexpected(),
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// Counts pushes until stopped or closed.
async fn observer(mut ws: Ws, log: Arc<Mutex<ObserverLog>>, mut stop: watch::Receiver<bool>) {
    let record = |f: &dyn Fn(&mut ObserverLog)| f(&mut log.lock().unwrap_or_else(PoisonError::into_inner));
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            msg = ws.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(t))) if t.is_empty() => {
                let _ = ws.send(Message::text("")).await;
            }
            Some(Ok(Message::Text(t))) => {
                let n = match serde_json::from_str::<Value>(&t) {
                    Ok(Value::Array(items)) => items.len() as u64,
                    _ => 1,
                };
                record(&|o| o.messages += n);
            }
            Some(Ok(Message::Close(f))) => {
                record(&|o| o.closed = Some(format!("closed by the server: {f:?}")));
                return;
            }
            None | Some(Err(_)) => {
                record(&|o| o.closed = Some("connection dropped".into()));
                return;
            }
            Some(Ok(_)) => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}
