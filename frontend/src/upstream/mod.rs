//! The frontend's upstream side: interest at brokers, publishes to owners,
//! and the reshard protocol with the state server.
//!
//! One mutex guards the routing state ([`routing::Routing`]), the links to
//! brokers and the interest held at each; nothing awaits under it (frames
//! are pushed onto bounded link queues with `try_send`). Whether this node
//! wants a channel at all is read from the hub at the moment of deciding,
//! so concurrent first-subscribe and last-unsubscribe calls cannot leave
//! stale interest behind, whatever order they arrive in.

mod control;
mod link;
pub mod routing;
pub mod status;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::histogram::Histogram;
use protocol::control::NodeLoad;
use protocol::fabric::FabricFrame;
use protocol::framing;
use protocol::slots::SlotTable;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::hub::Hub;
use crate::outbox::Publication;
use crate::stats::Stats;
use routing::Routing;
use status::StatusRequests;

/// How the frontend joins a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id, as the state server and brokers see it.
    pub node_id: String,
    /// `host:port` of the state server's control port.
    pub state_server: String,
    /// Shared secret of every link in the cluster.
    pub cluster_key: String,
    /// How long old subscriptions are kept after a commit.
    pub drain: Duration,
    /// Ping interval on fabric links.
    pub fabric_heartbeat: Duration,
    /// A broker silent this long is treated as dead.
    pub fabric_timeout: Duration,
    /// Heartbeat interval on the control link (silent for 3 of them: reconnect).
    pub control_heartbeat: Duration,
}

impl ClusterConfig {
    #[must_use]
    pub fn for_test(state_server: String, cluster_key: String) -> Self {
        Self {
            node_id: format!("frontend-{:08x}", rand::random::<u32>()),
            state_server,
            cluster_key,
            drain: Duration::from_millis(500),
            fabric_heartbeat: Duration::from_millis(200),
            fabric_timeout: Duration::from_millis(1000),
            control_heartbeat: Duration::from_millis(200),
        }
    }
}

/// Why a publish could not be handed to its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("no broker is available for this channel")]
    NoBroker,
    #[error("the channel's broker did not confirm in time")]
    Timeout,
}

/// Counters of the upstream side.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    pub published: AtomicU64,
    pub messages_in: AtomicU64,
    pub bad_payloads: AtomicU64,
    pub publish_failures: AtomicU64,
    pub brokers_declared_dead: AtomicU64,
    pub epoch: AtomicU64,
    pub reshards_prepared: AtomicU64,
}

/// Time a publisher waits for its broker's confirmation.
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a first subscriber waits for the broker to confirm the subscription.
const SUBSCRIBE_BARRIER_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a prepare waits for links to new brokers and their barriers.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(5);

/// Exponential back-off with full jitter: 100 ms doubling up to 5 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(100).saturating_mul(1 << attempt.min(6)).min(Duration::from_secs(5));
    cap.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

pub struct Upstream {
    inner: Arc<Inner>,
}

/// Counts the application adds to this node's load report (distinct chat users).
type UserCount = Box<dyn Fn() -> u64 + Send + Sync>;

struct Inner {
    config: ClusterConfig,
    hub: Arc<Hub>,
    /// The node's counters: open sockets for the load report.
    node_stats: Arc<Stats>,
    users: OnceLock<UserCount>,
    /// Status questions to the state server in flight.
    status: StatusRequests,
    /// How long prepares take (reshard durations on this node).
    prepare_seconds: Histogram,
    stats: UpstreamStats,
    state: Mutex<State>,
    /// Wakes the drain timer when a commit adds a draining table.
    drain_changed: Notify,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct State {
    routing: Routing,
    links: HashMap<String, Link>,
    /// Where this node holds interest, per channel.
    held: HashMap<Arc<str>, BTreeSet<String>>,
    next_id: u64,
    /// Confirmations awaited (publish acks and barriers), with the broker they wait on.
    waiting: HashMap<u64, (String, oneshot::Sender<()>)>,
    /// Whether the state server has sent a table yet.
    welcomed: bool,
    /// Publishes held back at a commit, see [`Hold`].
    hold: Option<Hold>,
}

/// At a commit, publishes on channels that changed owner wait until the old
/// owners confirm (a barrier) that everything sent to them before the switch
/// has been fanned out. Only then do they go to the new owners: a
/// subscriber, which holds interest at both during the drain, then gets a
/// publisher's messages in the order they were sent.
struct Hold {
    /// The routing publishes followed before the commit (table and dead brokers).
    old: (SlotTable, BTreeSet<String>),
    /// Frames for the new owners, in publish order.
    buffered: Vec<(String, Bytes)>,
    /// The epoch whose commit started it (a later commit's hold is not this one's to release).
    epoch: u64,
}

/// Longest a commit holds publishes back for a slow old owner.
const HOLD_TIMEOUT: Duration = Duration::from_secs(1);

struct Link {
    /// Present while the link is up.
    tx: Option<mpsc::Sender<Bytes>>,
    cancel: CancellationToken,
}

fn frame(f: &FabricFrame) -> Bytes {
    let mut b = BytesMut::new();
    framing::encode(f, &mut b);
    b.freeze()
}

impl Upstream {
    #[must_use]
    pub fn new(config: ClusterConfig, hub: Arc<Hub>, node_stats: Arc<Stats>, prepare_seconds: Histogram) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                hub,
                node_stats,
                users: OnceLock::new(),
                status: StatusRequests::default(),
                prepare_seconds,
                stats: UpstreamStats::default(),
                state: Mutex::new(State::default()),
                drain_changed: Notify::new(),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Starts the control link and the drain timer; they stop with `shutdown`.
    pub fn start(&self, shutdown: &CancellationToken) {
        let inner = self.inner.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            inner.shutdown.cancel();
        });
        self.inner.tasks.spawn(control::run(self.inner.clone()));
        self.inner.tasks.spawn(drain_timer(self.inner.clone()));
    }

    /// Waits (bounded) for the upstream tasks after shutdown.
    pub async fn stopped(&self) {
        self.inner.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.tasks.wait()).await;
    }

    #[must_use]
    pub fn stats(&self) -> &UpstreamStats {
        &self.inner.stats
    }

    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// Lets the application count distinct users for the load report (set once; later calls are ignored).
    pub fn set_user_count(&self, count: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.inner.users.set(Box::new(count));
    }

    /// What this node reports to the state server with its heartbeats.
    #[must_use]
    pub fn load(&self) -> NodeLoad {
        self.inner.load()
    }

    /// The cluster for admin pages: the state server's `/status` document with `stale: false` and
    /// `thisFrontend`, or — when the state server cannot answer within [`status::STATUS_TIMEOUT`] —
    /// this node's own view (its committed table, its broker links, itself) with `stale: true` and
    /// `staleReason`.
    pub async fn cluster_status(&self) -> Value {
        let id = self.node_id();
        let why = match self.inner.status.ask().await {
            Ok(json) => match status::fresh(&json, id) {
                Some(v) => return v,
                None => {
                    warn!("the state server's status is not a JSON object");
                    status::Unavailable::Timeout
                }
            },
            Err(why) => why,
        };
        let (table, dead) = self.routing_snapshot();
        let st = self.inner.lock();
        let slots: Vec<Value> =
            table.slots.iter().enumerate().map(|(slot, b)| json!({"slot": slot, "id": b.id, "addr": b.addr})).collect();
        let brokers: Vec<Value> = table
            .slots
            .iter()
            .map(|b| {
                let up = st.links.get(&b.id).is_some_and(|l| l.tx.is_some());
                json!({"id": b.id, "addr": b.addr, "connected": up && !dead.contains(&b.id), "last_seen_ms": null,
                       "leaving": false, "load": null})
            })
            .collect();
        drop(st);
        json!({
            "epoch": table.epoch,
            "slots": slots,
            "brokers": brokers,
            "frontends": [status::this_frontend(id, self.load(), why != status::Unavailable::NoLink)],
            "reshard": null,
            "stale": true,
            "staleReason": why.reason(),
            "thisFrontend": id,
        })
    }

    /// Joined: a table with at least one broker, and a live link to every broker it routes to.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        let st = self.inner.lock();
        let eff = st.routing.effective();
        st.welcomed && !eff.is_empty() && eff.slots.iter().all(|b| st.links.get(&b.id).is_some_and(|l| l.tx.is_some()))
    }

    /// Links that are up, and links this node needs.
    #[must_use]
    pub fn link_counts(&self) -> (usize, usize) {
        let st = self.inner.lock();
        (st.links.values().filter(|l| l.tx.is_some()).count(), st.links.len())
    }

    /// The committed table and the brokers seen dead, for status pages.
    #[must_use]
    pub fn routing_snapshot(&self) -> (SlotTable, Vec<String>) {
        let st = self.inner.lock();
        (st.routing.committed().clone(), st.routing.dead().iter().cloned().collect())
    }

    /// Call after `channel` got its first local subscriber. Resolves once
    /// the owner confirmed the subscription (bounded), so a client's
    /// subscribe ack means messages published anywhere in the cluster from
    /// then on reach it.
    pub async fn subscribed(&self, channel: &str) {
        let waits = {
            let mut st = self.inner.lock();
            let added = self.inner.reconcile(&mut st, channel);
            added.into_iter().filter_map(|b| self.inner.barrier(&mut st, &b)).collect::<Vec<_>>()
        };
        for w in waits {
            let _ = tokio::time::timeout(SUBSCRIBE_BARRIER_TIMEOUT, w).await;
        }
    }

    /// Call after `channel` lost its last local subscriber.
    pub fn unsubscribed(&self, channel: &str) {
        let mut st = self.inner.lock();
        self.inner.reconcile(&mut st, channel);
    }

    /// Sends a publish to the channel's owner. With `confirm`, resolves once
    /// the owner has fanned it out (and this node's own copy, if it has
    /// local subscribers, has reached the hub).
    pub async fn publish(&self, channel: &str, data: Option<&Value>, confirm: bool) -> Result<(), PublishError> {
        let payload = match data {
            None => Bytes::new(),
            Some(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        };
        let wait = {
            let mut st = self.inner.lock();
            let Some(owner) = st.routing.publish_owner(channel) else {
                self.inner.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                return Err(PublishError::NoBroker);
            };
            let ack = confirm.then(|| {
                st.next_id += 1;
                st.next_id
            });
            let f = frame(&FabricFrame::Publish { channel: channel.to_owned(), payload, ack });
            let held_back = match &mut st.hold {
                Some(h) if routing::route(&h.old.0, &h.old.1, channel).is_some_and(|old| old.id != owner.id) => {
                    h.buffered.push((owner.id.clone(), f.clone()));
                    true
                }
                _ => false,
            };
            if !held_back && !self.inner.push(&mut st, &owner.id, f) {
                self.inner.stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                return Err(PublishError::NoBroker);
            }
            self.inner.stats.published.fetch_add(1, Ordering::Relaxed);
            ack.map(|id| {
                let (tx, rx) = oneshot::channel();
                st.waiting.insert(id, (owner.id.clone(), tx));
                rx
            })
        };
        let Some(wait) = wait else { return Ok(()) };
        match tokio::time::timeout(PUBLISH_ACK_TIMEOUT, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PublishError::NoBroker),
            Err(_) => Err(PublishError::Timeout),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes a frame onto a broker's link. False if the link is down or stuck.
    fn push(&self, st: &mut State, broker: &str, f: Bytes) -> bool {
        let Some(link) = st.links.get(broker) else { return false };
        let Some(tx) = &link.tx else { return false };
        if tx.try_send(f).is_ok() {
            return true;
        }
        warn!(broker, "fabric queue full; dropping the link");
        link.cancel.cancel();
        false
    }

    /// Sends a barrier and returns what resolves when the broker answers.
    fn barrier(&self, st: &mut State, broker: &str) -> Option<oneshot::Receiver<()>> {
        st.next_id += 1;
        let id = st.next_id;
        if !self.push(st, broker, frame(&FabricFrame::Barrier { id })) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        st.waiting.insert(id, (broker.to_owned(), tx));
        Some(rx)
    }

    /// Brings the interest held for `channel` in line with what routing and
    /// the hub want. Returns the brokers a subscription was sent to.
    fn reconcile(&self, st: &mut State, channel: &str) -> Vec<String> {
        let want: BTreeSet<String> =
            if self.hub.subscriber_count(channel) > 0 { st.routing.interest_owners(channel) } else { BTreeSet::new() };
        let held = st.held.get(channel).cloned().unwrap_or_default();
        let mut added = Vec::new();
        let mut now_held = BTreeSet::new();
        for b in want.iter() {
            if held.contains(b) {
                now_held.insert(b.clone());
            } else if self.push(st, b, frame(&FabricFrame::Subscribe { channel: channel.to_owned() })) {
                now_held.insert(b.clone());
                added.push(b.clone());
            }
        }
        for b in held.difference(&want) {
            self.push(st, b, frame(&FabricFrame::Unsubscribe { channel: channel.to_owned() }));
        }
        if now_held.is_empty() {
            st.held.remove(channel);
        } else {
            st.held.insert(Arc::from(channel), now_held);
        }
        added
    }

    fn reconcile_all(&self, st: &mut State) -> BTreeSet<String> {
        let mut channels: BTreeSet<Arc<str>> = st.held.keys().cloned().collect();
        channels.extend(self.hub.channels());
        let mut touched = BTreeSet::new();
        for c in channels {
            touched.extend(self.reconcile(st, &c));
        }
        touched
    }

    /// Opens links to brokers routing now needs and closes the others.
    fn ensure_links(self: &Arc<Self>, st: &mut State) {
        let known = st.routing.known_brokers();
        for b in &known {
            if !st.links.contains_key(&b.id) {
                let cancel = self.shutdown.child_token();
                st.links.insert(b.id.clone(), Link { tx: None, cancel: cancel.clone() });
                self.tasks.spawn(link::run(self.clone(), b.clone(), cancel));
            }
        }
        let gone: Vec<String> = st.links.keys().filter(|id| !known.iter().any(|b| &b.id == *id)).cloned().collect();
        for id in gone {
            if let Some(l) = st.links.remove(&id) {
                l.cancel.cancel();
            }
            for held in st.held.values_mut() {
                held.remove(&id);
            }
        }
    }

    fn link_up(&self, broker: &str, tx: mpsc::Sender<Bytes>, cancel: CancellationToken) {
        let mut st = self.lock();
        if let Some(l) = st.links.get_mut(broker) {
            l.tx = Some(tx);
            l.cancel = cancel;
        }
        self.reconcile_all(&mut st);
    }

    fn link_down(&self, broker: &str) {
        let mut st = self.lock();
        if let Some(l) = st.links.get_mut(broker) {
            l.tx = None;
        }
        for held in st.held.values_mut() {
            held.remove(broker);
        }
        // Dropping the senders fails whoever waits on this broker.
        st.waiting.retain(|_, (b, _)| b != broker);
        if self.shutdown.is_cancelled() {
            return;
        }
        if st.routing.broker_died(broker) {
            self.stats.brokers_declared_dead.fetch_add(1, Ordering::Relaxed);
            let table = st.routing.effective();
            info!(broker, slots = table.len(), "broker dead: routing its channels by the leave rule");
        }
        self.reconcile_all(&mut st);
    }

    fn on_fabric_frame(&self, broker: &str, f: FabricFrame) {
        match f {
            FabricFrame::Message { channel, payload } => {
                self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                let data = if payload.is_empty() {
                    None
                } else {
                    match serde_json::from_slice::<Value>(&payload) {
                        Ok(v) => Some(v),
                        Err(_) => {
                            self.stats.bad_payloads.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                };
                self.hub.publish(&Publication::new(channel.into(), data));
            }
            FabricFrame::PublishAck { id } | FabricFrame::BarrierAck { id } => {
                if let Some((_, tx)) = self.lock().waiting.remove(&id) {
                    let _ = tx.send(());
                }
            }
            FabricFrame::Pong | FabricFrame::Ping => {}
            other => debug!(broker, frame = ?other, "unexpected frame from broker"),
        }
    }

    fn on_welcome(self: &Arc<Self>, table: SlotTable) {
        let mut st = self.lock();
        st.welcomed = true;
        let now = Instant::now();
        if st.routing.welcome(table, now, now + self.config.drain) {
            self.stats.epoch.store(st.routing.committed().epoch, Ordering::Relaxed);
            self.drain_changed.notify_one();
        }
        self.ensure_links(&mut st);
        self.reconcile_all(&mut st);
    }

    /// Phase one: subscribe at the new owners, wait until they confirm.
    async fn prepare(self: &Arc<Self>, table: SlotTable) {
        let epoch = table.epoch;
        let started = Instant::now();
        {
            let mut st = self.lock();
            st.routing.prepare(table);
            self.ensure_links(&mut st);
            self.reconcile_all(&mut st);
        }
        self.stats.reshards_prepared.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + PREPARE_TIMEOUT;
        // Links to joining brokers may still be connecting: their
        // subscriptions go out when they come up. Then one barrier per
        // broker proves everything sent before it is in place.
        let waits = loop {
            {
                let mut st = self.lock();
                let brokers: Vec<String> =
                    st.routing.prepared().map(|p| p.slots.iter().map(|b| b.id.clone()).collect()).unwrap_or_default();
                let pending = brokers
                    .iter()
                    .filter(|b| !st.routing.dead().contains(*b))
                    .any(|b| st.links.get(b).is_none_or(|l| l.tx.is_none()));
                if !pending || tokio::time::Instant::now() >= deadline {
                    break brokers.iter().filter_map(|b| self.barrier(&mut st, b)).collect::<Vec<_>>();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        for w in waits {
            let _ = tokio::time::timeout_at(deadline, w).await;
        }
        self.prepare_seconds.observe(started.elapsed().as_secs_f64());
        debug!(epoch, "prepared");
    }

    /// Phase two: publish to the new owners (after the old ones confirm,
    /// see [`Hold`]); old interest drains.
    fn commit(self: &Arc<Self>, table: SlotTable) {
        let mut st = self.lock();
        let now = Instant::now();
        let epoch = table.epoch;
        self.release_hold(&mut st);
        let old = st.routing.snapshot();
        st.routing.commit(table, now, now + self.config.drain);
        if !old.0.is_empty() && st.routing.snapshot() != old {
            let waits: Vec<_> = old.0.slots.iter().filter_map(|b| self.barrier(&mut st, &b.id)).collect();
            st.hold = Some(Hold { old, buffered: Vec::new(), epoch });
            let inner = self.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + HOLD_TIMEOUT;
                for w in waits {
                    let _ = tokio::time::timeout_at(deadline, w).await;
                }
                let mut st = inner.lock();
                if st.hold.as_ref().is_some_and(|h| h.epoch == epoch) {
                    inner.release_hold(&mut st);
                }
            });
        }
        self.stats.epoch.store(st.routing.committed().epoch, Ordering::Relaxed);
        self.ensure_links(&mut st);
        self.reconcile_all(&mut st);
        info!(epoch, brokers = st.routing.committed().len(), "committed");
        self.drain_changed.notify_one();
    }

    /// Sends what a commit held back, in order.
    fn release_hold(&self, st: &mut State) {
        if let Some(h) = st.hold.take() {
            for (broker, f) in h.buffered {
                self.push(st, &broker, f);
            }
        }
    }

    fn load(&self) -> NodeLoad {
        NodeLoad {
            connections: u64::try_from(self.node_stats.sockets_open.load(Ordering::Relaxed)).unwrap_or(0),
            users: self.users.get().map_or(0, |count| count()),
            channels: self.hub.channel_count() as u64,
        }
    }

    fn committed(&self) -> Option<SlotTable> {
        let st = self.lock();
        let t = st.routing.committed();
        (t.epoch > 0).then(|| t.clone())
    }
}

/// Drops draining tables (and their interest) when their time is up.
async fn drain_timer(inner: Arc<Inner>) {
    loop {
        let next = inner.lock().routing.next_expiry();
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            () = inner.drain_changed.notified() => continue,
            () = sleep => {}
        }
        let mut st = inner.lock();
        if st.routing.expire(Instant::now()) {
            inner.ensure_links(&mut st);
            inner.reconcile_all(&mut st);
        }
    }
}
