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
//!
//! With [`LoadConfig::reconnect`], clients behave like `socketcluster-client`
//! behind a load balancer: when the server closes a socket (a frontend
//! draining on SIGTERM closes with 1005) or it drops, the client reconnects
//! at once, then with back-off, to one of the load's endpoints
//! ([`LoadGen::set_endpoints`]: the frontends a load balancer would route to,
//! avoiding the one it was on when it can), and a subscriber resubscribes
//! to all its channels. Publishers then use acknowledged publishes, so
//! what a closed socket dropped is known as unconfirmed rather than
//! counted as lost (see [`crate::meter`]). Every reconnection is bounded in
//! time; a client that cannot reconnect is reported as failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// First and longest pause between reconnection attempts (the first attempt is at once).
const RECONNECT_PAUSE_MIN: Duration = Duration::from_millis(50);
const RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// Longest a client may take to reconnect (and resubscribe) after losing its socket.
pub const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a publisher waits, at the end, for the acknowledgements of what it sent.
const ACK_DRAIN: Duration = Duration::from_secs(6);
/// First `cid` of a reconnecting publisher's publishes (below are the handshake's).
const FIRST_PUBLISH_CID: u64 = 1_000;

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
    /// Clients reconnect (and resubscribe) when their socket is closed, and
    /// publishers use acknowledged publishes; see the module doc.
    pub reconnect: bool,
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
            reconnect: false,
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

    /// Clients reconnect and resubscribe when the server closes their socket
    /// (see the module doc).
    #[must_use]
    pub fn reconnect(mut self, on: bool) -> Self {
        self.reconnect = on;
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
    endpoints: Arc<Endpoints>,
}

/// Where reconnecting clients go: (frontend index, WebSocket URL), round robin.
#[derive(Debug, Default)]
pub struct Endpoints {
    list: Mutex<Vec<(usize, String)>>,
    next: AtomicUsize,
}

impl Endpoints {
    fn set(&self, list: Vec<(usize, String)>) {
        *self.list.lock().unwrap_or_else(PoisonError::into_inner) = list;
    }

    /// The next endpoint other than `avoid`, or `avoid` itself if it is the only one.
    fn pick(&self, avoid: usize) -> Option<(usize, String)> {
        let list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        let others: Vec<&(usize, String)> = list.iter().filter(|(fe, _)| *fe != avoid).collect();
        let pool: Vec<&(usize, String)> = if others.is_empty() { list.iter().collect() } else { others };
        let n = pool.len();
        (n > 0).then(|| pool[self.next.fetch_add(1, Ordering::Relaxed) % n].clone())
    }

    /// The frontend indices clients may reconnect to.
    #[must_use]
    pub fn frontends(&self) -> Vec<usize> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(fe, _)| *fe).collect()
    }
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
        let endpoints = Arc::new(Endpoints::default());
        endpoints.set((0..cluster.frontend_count()).map(|i| (i, cluster.frontend_url(i))).collect());
        let reconnect = config.reconnect.then(|| endpoints.clone());
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
                Ok::<_, String>((c, log, chans))
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
            let (client, log, chans) = match s.await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => panic!("load subscriber did not start: {e}"),
                Err(e) => panic!("load subscriber task failed: {e}"),
            };
            let sub = Subscriber { log, channels: chans, reconnect: reconnect.clone(), meter: meter.clone() };
            readers.push(tokio::spawn(subscriber(client.ws, sub, reader_rx.clone())));
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
            conns.push(tokio::spawn(async move { Client::handshake(&url).await.map(|c| (fe, c)) }));
        }
        let started = Instant::now();
        let end = started + config.duration;
        let mut publishers = Vec::new();
        let base = config.rate / config.publishers as u64;
        for (p, conn) in conns.into_iter().enumerate() {
            let (fe, client) = match conn.await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => panic!("load publisher did not start: {e}"),
                Err(e) => panic!("load publisher task failed: {e}"),
            };
            let rate = base + u64::from((p as u64) < config.rate % config.publishers as u64);
            let mine: Vec<u32> = (0..config.channels as u32).filter(|c| *c as usize % config.publishers == p).collect();
            let reconnect = reconnect.clone().map(|e| (e, fe));
            let task = publisher(client.ws, mine, rate, end, meter.clone(), stop_rx.clone(), reconnect);
            publishers.push(tokio::spawn(task));
        }
        LoadGen { config, meter, stop, publishers, readers, reader_stop, observed, started, endpoints }
    }

    /// Sets the frontends reconnecting clients go to, as a load balancer
    /// would: take a frontend out before stopping it, add a new one once it
    /// is ready. (At start: every frontend of the cluster.)
    pub fn set_endpoints(&self, cluster: &Cluster, frontends: &[usize]) {
        self.endpoints.set(frontends.iter().map(|&i| (i, cluster.frontend_url(i))).collect());
    }

    /// The frontends reconnecting clients go to.
    #[must_use]
    pub fn endpoints(&self) -> Vec<usize> {
        self.endpoints.frontends()
    }

    /// Waits until every subscriber is connected and subscribed and no
    /// publisher is reconnecting.
    ///
    /// # Panics
    /// When that does not happen within `timeout`, with who is not.
    pub async fn wait_clients_connected(&self, timeout: Duration) {
        let meter = &self.meter;
        crate::wait::wait_until(timeout, Duration::from_millis(20), || async move { meter.clients_connected() }).await;
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

/// Connects to an endpoint (other than `avoid` when there is one) and
/// subscribes to `channels`, at once and then with back-off, for at most
/// [`RECONNECT_TIMEOUT`]; gives up early when `stop` changes.
async fn reconnect_client(
    endpoints: &Endpoints,
    avoid: usize,
    channels: &[String],
    stop: &mut watch::Receiver<bool>,
) -> Result<(usize, Client), String> {
    let deadline = Instant::now() + RECONNECT_TIMEOUT;
    let mut pause = RECONNECT_PAUSE_MIN;
    let mut last;
    loop {
        if let Some((fe, url)) = endpoints.pick(avoid) {
            let attempt = async {
                let mut c = Client::handshake(&url).await?;
                if !channels.is_empty() {
                    c.subscribe_all(channels).await?;
                }
                Ok::<_, String>(c)
            };
            tokio::select! {
                _ = stop.changed() => return Err("stopped while reconnecting".into()),
                r = tokio::time::timeout_at(deadline, attempt) => match r {
                    Ok(Ok(c)) => return Ok((fe, c)),
                    Ok(Err(e)) => last = e,
                    Err(_) => last = format!("{url}: attempt cut at the reconnect deadline"),
                },
            }
        } else {
            last = "no endpoint to reconnect to".into();
        }
        if Instant::now() + pause >= deadline {
            return Err(format!("could not reconnect within {RECONNECT_TIMEOUT:?}: {last}"));
        }
        tokio::select! {
            _ = stop.changed() => return Err("stopped while reconnecting".into()),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RECONNECT_PAUSE_MAX);
    }
}

/// What one turn of a publisher's loop came to.
enum Turn {
    Send,
    Idle,
    Stop,
    Lost(String),
}

/// Sends what is due every tick until `end` or a stop. With `reconnect`
/// (the endpoints and the frontend it starts on), publishes are
/// acknowledged and a lost socket is replaced (see the module doc).
async fn publisher(
    mut ws: Ws,
    channels: Vec<u32>,
    rate: u64,
    end: Instant,
    meter: Arc<Meter>,
    mut stop: watch::Receiver<bool>,
    reconnect: Option<(Arc<Endpoints>, usize)>,
) {
    let names = meter.names().clone();
    let acked = reconnect.is_some();
    let mut frontend = reconnect.as_ref().map_or(0, |r| r.1);
    // Publishes sent and not acknowledged yet, by cid.
    let mut pending: HashMap<u64, Stamp> = HashMap::new();
    let mut next_cid = FIRST_PUBLISH_CID;
    let start = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sent: u64 = 0;
    let mut next = 0usize;
    loop {
        let turn = tokio::select! {
            _ = tick.tick() => Turn::Send,
            _ = stop.changed() => Turn::Stop,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) if t.is_empty() => match ws.send(Message::text("")).await {
                    Ok(()) => Turn::Idle,
                    Err(_) => Turn::Lost("publisher socket closed (answering a ping)".into()),
                },
                Some(Ok(Message::Text(t))) => {
                    if acked {
                        on_replies(&t, &mut pending, &meter);
                    }
                    Turn::Idle
                }
                Some(Ok(Message::Close(f))) => Turn::Lost(format!("publisher socket closed by the server: {f:?}")),
                None | Some(Err(_)) => Turn::Lost("publisher socket dropped".into()),
                // Replies to nothing (fire-and-forget publishes carry no cid): ignore.
                Some(Ok(_)) => Turn::Idle,
            },
        };
        let why = match turn {
            Turn::Stop => break,
            Turn::Idle => continue,
            Turn::Lost(why) => why,
            Turn::Send => {
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
                match send_batches(&mut ws, &stamps, &names, acked.then_some(&mut next_cid), &mut pending).await {
                    Ok(()) => continue,
                    Err(e) => format!("publisher socket failed: {e}"),
                }
            }
        };
        // The socket is gone.
        let Some((endpoints, _)) = &reconnect else {
            meter.record_publisher_error(why);
            return;
        };
        meter.record_unconfirmed(pending.drain().map(|(_, s)| s));
        meter.record_publisher_down();
        match reconnect_client(endpoints, frontend, &[], &mut stop).await {
            Ok((fe, c)) => {
                frontend = fe;
                ws = c.ws;
                meter.record_publisher_reconnected();
            }
            Err(e) => {
                meter.record_publisher_error(format!("{why}; then {e}"));
                return;
            }
        }
    }
    if acked && !pending.is_empty() {
        drain_acks(&mut ws, &mut pending, &meter).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// Sends `stamps` as batch frames; with `cids`, each publish gets the next
/// cid and is remembered in `pending` until its acknowledgement.
async fn send_batches(
    ws: &mut Ws,
    stamps: &[Stamp],
    names: &[String],
    mut cids: Option<&mut u64>,
    pending: &mut HashMap<u64, Stamp>,
) -> Result<(), String> {
    for chunk in stamps.chunks(MAX_BATCH) {
        let first = match cids.as_deref_mut() {
            Some(next) => {
                let first = *next;
                for (k, s) in chunk.iter().enumerate() {
                    pending.insert(first + k as u64, *s);
                }
                *next += chunk.len() as u64;
                Some(first)
            }
            None => None,
        };
        ws.feed(Message::text(batch(chunk, names, first))).await.map_err(|e| e.to_string())?;
    }
    ws.flush().await.map_err(|e| e.to_string())
}

/// Settles the acknowledgements in one text frame: a reply with an error is
/// a refused publish.
fn on_replies(text: &str, pending: &mut HashMap<u64, Stamp>, meter: &Meter) {
    let packets = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(v) => vec![v],
        Err(_) => return,
    };
    for p in packets {
        let Some(stamp) = p.get("rid").and_then(Value::as_u64).and_then(|rid| pending.remove(&rid)) else {
            continue;
        };
        if let Some(e) = p.get("error") {
            meter.record_refused_publish(stamp, e.to_string());
        }
    }
}

/// At the end of a run: waits (bounded) for the acknowledgements still due.
/// What is still unacknowledged after that, or when the socket closes
/// meanwhile, is unconfirmed; a socket still open with acknowledgements
/// missing is reported as a publisher error.
async fn drain_acks(ws: &mut Ws, pending: &mut HashMap<u64, Stamp>, meter: &Meter) {
    let deadline = Instant::now() + ACK_DRAIN;
    let mut open = true;
    while !pending.is_empty() {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Text(t)))) if t.is_empty() => {
                let _ = ws.send(Message::text("")).await;
            }
            Ok(Some(Ok(Message::Text(t)))) => on_replies(&t, pending, meter),
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => {
                open = false;
                break;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
    if open && !pending.is_empty() {
        meter.record_publisher_error(format!("{} publishes unacknowledged {ACK_DRAIN:?} after the end", pending.len()));
    }
    meter.record_unconfirmed(pending.drain().map(|(_, s)| s));
}

/// One batch frame of publishes: fire-and-forget, or invokes with
/// consecutive cids from `first_cid`.
fn batch(stamps: &[Stamp], names: &[String], first_cid: Option<u64>) -> String {
    let mut out = String::with_capacity(stamps.len() * 112);
    out.push('[');
    for (i, s) in stamps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Channel names are `<prefix>/<i>`: nothing to escape.
        out.push_str(&format!(
            r##"{{"event":"#publish","data":{{"channel":"{}","data":{{"ch":{},"seq":{},"t":{}}}}}"##,
            names[s.ch as usize], s.ch, s.seq, s.t
        ));
        match first_cid {
            Some(cid) => out.push_str(&format!(r#","cid":{}}}"#, cid + i as u64)),
            None => out.push('}'),
        }
    }
    out.push(']');
    out
}

/// A measured subscriber's task state.
struct Subscriber {
    log: Arc<Mutex<SubscriberLog>>,
    /// Its channels, to resubscribe after a reconnection.
    channels: Vec<String>,
    /// Where to reconnect to, when it does.
    reconnect: Option<Arc<Endpoints>>,
    meter: Arc<Meter>,
}

/// Reads pushes into the subscriber's log until stopped or closed; with
/// reconnection on, a lost socket is replaced and the channels subscribed again.
async fn subscriber(mut ws: Ws, sub: Subscriber, mut stop: watch::Receiver<bool>) {
    let names = sub.meter.names().clone();
    let log = &sub.log;
    loop {
        let Some(why) = read_pushes(&mut ws, log, &names, &mut stop).await else { break };
        let Some(endpoints) = &sub.reconnect else {
            lock(log).record_closed(why);
            return;
        };
        let from = {
            let mut l = lock(log);
            l.record_interrupted(sub.meter.now_us());
            l.frontend
        };
        match reconnect_client(endpoints, from, &sub.channels, &mut stop).await {
            Ok((fe, mut client)) => {
                // Pushes that arrived while the subscriptions were being acknowledged.
                let early = client.take_inbox();
                let mut l = lock(log);
                record_pushes(&mut l, early, &names);
                l.record_resumed(fe, sub.meter.now_us());
                ws = client.ws;
            }
            Err(e) => {
                lock(log).record_closed(format!("{why}; then {e}"));
                return;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records every `#publish` push among `packets`.
fn record_pushes(log: &mut SubscriberLog, packets: Vec<Value>, names: &[String]) {
    for p in packets {
        if p["event"] != "#publish" {
            continue;
        }
        let channel = p["data"]["channel"].as_str().unwrap_or_default();
        match serde_json::from_value::<Stamp>(p["data"]["data"].clone()) {
            Ok(stamp) => log.record(channel, stamp, names),
            Err(_) => log.record_unexpected(),
        }
    }
}

/// Reads pushes into the log until `stop` changes (`None`) or the socket is
/// lost (why).
async fn read_pushes(
    ws: &mut Ws,
    log: &Mutex<SubscriberLog>,
    names: &[String],
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => return None,
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) if t.is_empty() => {
                if ws.send(Message::text("")).await.is_err() {
                    return Some("socket closed (answering a ping)".into());
                }
                continue;
            }
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => return Some(format!("closed by the server: {f:?}")),
            None | Some(Err(_)) => return Some("connection dropped".into()),
            Some(Ok(_)) => continue,
        };
        let packets = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => items,
            Ok(v) => vec![v],
            Err(_) => {
                lock(log).record_unexpected();
                continue;
            }
        };
        record_pushes(&mut lock(log), packets, names);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_json_arrays_of_publishes_with_or_without_cids() {
        let names = vec!["p/0".to_owned(), "p/1".to_owned()];
        let stamps = [Stamp { ch: 0, seq: 4, t: 9 }, Stamp { ch: 1, seq: 0, t: 10 }];
        let plain: Value = serde_json::from_str(&batch(&stamps, &names, None)).expect("JSON");
        assert_eq!(
            plain,
            serde_json::json!([
                {"event": "#publish", "data": {"channel": "p/0", "data": {"ch": 0, "seq": 4, "t": 9}}},
                {"event": "#publish", "data": {"channel": "p/1", "data": {"ch": 1, "seq": 0, "t": 10}}},
            ])
        );
        let acked: Value = serde_json::from_str(&batch(&stamps, &names, Some(7))).expect("JSON");
        assert_eq!(acked[0]["cid"], 7);
        assert_eq!(acked[1]["cid"], 8);
        assert_eq!(acked[1]["data"]["data"]["seq"], 0);
    }

    #[test]
    fn acknowledgements_settle_pending_publishes_and_errors_count_as_refused() {
        let meter = Meter::new(vec!["c".into()]);
        let st = meter.stamp([0, 0, 0].into_iter());
        let mut pending: HashMap<u64, Stamp> = [(1, st[0]), (2, st[1]), (3, st[2])].into_iter().collect();
        on_replies(r#"[{"rid":1},{"rid":2,"error":{"name":"X"}}]"#, &mut pending, &meter);
        on_replies(r#"{"rid":99}"#, &mut pending, &meter);
        assert_eq!(pending.keys().copied().collect::<Vec<_>>(), [3]);
        let r = meter.report();
        assert_eq!((r.refused_publishes, r.unconfirmed), (1, 1));
    }

    #[test]
    fn endpoints_avoid_the_frontend_a_client_left_unless_it_is_the_only_one() {
        let e = Endpoints::default();
        assert!(e.pick(0).is_none());
        e.set(vec![(0, "a".into())]);
        assert_eq!(e.pick(0).map(|p| p.0), Some(0));
        e.set(vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]);
        let picked: Vec<usize> = (0..4).filter_map(|_| e.pick(1).map(|p| p.0)).collect();
        assert!(picked.iter().all(|&fe| fe != 1), "{picked:?}");
        assert!(picked.contains(&0) && picked.contains(&2), "round robin: {picked:?}");
    }
}
