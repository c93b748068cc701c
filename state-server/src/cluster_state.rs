//! The state server's brain, as a pure state machine: membership events and
//! the current time go in, frames to send and links to close come out.
//!
//! It owns the committed slot table, what it knows of every node, the changes
//! waiting to be batched, and the reshard in progress. It never awaits, never
//! reads the clock and never touches a socket: `server` feeds it events and a
//! `Tick` at [`ClusterState::next_wakeup`], and carries out the actions.
//!
//! Invariants:
//! - the committed epoch only grows: by exactly one per reshard, or to the
//!   highest epoch a node reports;
//! - at most one reshard is in progress, and its table is `committed.epoch + 1`;
//! - nothing changes the table during the rebuild window after start;
//! - pending changes are derived from the node records against the table that
//!   will be committed next, so a change is never applied twice or lost.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use protocol::control::{ControlFrame, NodeLoad, Role};
use protocol::slots::{BrokerInfo, SlotTable};
use serde::Serialize;
use tracing::{info, warn};

/// Identifies one accepted control connection (a node that reconnects gets a new one).
pub type ConnId = u64;

/// A node that sends nothing for this many heartbeat intervals is disconnected.
pub const SILENT_HEARTBEATS: u32 = 3;
/// Most nodes (brokers and frontends, connected or remembered) tracked at once.
pub const MAX_NODES: usize = 4096;
/// Most slots in a table a node reports; a larger one is ignored.
pub const MAX_SLOTS: usize = 1024;
/// Longest node id or broker address accepted.
pub const MAX_NAME_BYTES: usize = 256;
/// Reshards started back to back within one event (a reshard with no frontend
/// to wait for commits at once); a bound, not a limit ever reached in practice.
const MAX_RESHARDS_PER_EVENT: usize = 4;

/// The timers of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Batches joining brokers: a reshard starts this long after the first pending join.
    pub settle_up: Duration,
    /// Batches leaving and dead brokers: a reshard starts this long after the first pending removal.
    pub settle_down: Duration,
    /// Interval of heartbeats to every node.
    pub heartbeat: Duration,
    /// Time an unreachable broker has to come back before it is removed.
    pub grace: Duration,
    /// Longest wait for the frontends' `PrepareAck`s.
    pub prepare_timeout: Duration,
    /// Time after start during which the table does not change.
    pub rebuild_wait: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            settle_up: Duration::from_millis(500),
            settle_down: Duration::from_millis(200),
            heartbeat: Duration::from_millis(1000),
            grace: Duration::from_millis(3000),
            prepare_timeout: Duration::from_millis(3000),
            rebuild_wait: Duration::from_millis(2000),
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A node passed the `Hello` checks on link `conn`.
    NodeConnected { node: String, conn: ConnId, peer: String, role: Role, committed: Option<SlotTable> },
    /// The node's current link is gone.
    NodeDisconnected { node: String },
    /// The node sent a frame (any frame counts as a heartbeat).
    Heartbeat { node: String },
    /// The node reported its load (version 2); also a heartbeat.
    Load { node: String, load: NodeLoad },
    /// A broker asks to be taken out of the table.
    Leave { node: String },
    /// A frontend has prepared `epoch`.
    PrepareAck { node: String, epoch: u64 },
    /// Time passed.
    Tick,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `frame` on the node's current link.
    Send { node: String, frame: ControlFrame },
    /// Close link `conn`, after sending `Refused{reason}` when there is a reason.
    Close { conn: ConnId, reason: Option<String> },
}

#[derive(Debug)]
struct Broker {
    /// Fabric address frontends reach it at (latest reported).
    addr: String,
    /// Current link; `None` while unreachable, or not yet seen since a rebuild.
    conn: Option<ConnId>,
    /// `None` until it connects to this server.
    last_seen: Option<Instant>,
    /// When it became unreachable; it is removed `grace` later.
    down_since: Option<Instant>,
    /// Asked to leave; sticky while it is in the table.
    leaving: bool,
    /// Order of arrival: joins take slots in this order.
    arrival: u64,
    /// Highest committed epoch it is known to hold.
    epoch: u64,
    /// Latest load it reported on its current link (`None`: none yet, a version-1 node, or down).
    load: Option<NodeLoad>,
}

#[derive(Debug)]
struct Frontend {
    peer: String,
    conn: Option<ConnId>,
    last_seen: Instant,
    down_since: Option<Instant>,
    epoch: u64,
    /// As for brokers.
    load: Option<NodeLoad>,
}

#[derive(Debug)]
struct Reshard {
    /// The prepared table: `committed.epoch + 1`.
    target: SlotTable,
    started: Instant,
    deadline: Instant,
    /// Frontends connected at the start that have neither acked nor gone.
    waiting: BTreeSet<String>,
}

/// What the state machine has done since it started, for metrics.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReshardCounters {
    /// Reshards started (`Prepare` sent, or committed at once with no frontend).
    pub started: u64,
    /// Reshards committed.
    pub committed: u64,
    /// Commits that went ahead because the prepare timeout passed with frontends still not acknowledging.
    pub prepare_timeouts: u64,
    /// Reshards dropped before their commit (a node reported a newer table, or shutdown).
    pub aborted: u64,
    /// Tables adopted from what a node reported (after a restart).
    pub adopted: u64,
}

/// Most reshard durations kept until [`ClusterState::take_reshard_durations`] collects them.
const MAX_PENDING_DURATIONS: usize = 64;

/// Membership, the committed table and the reshard in progress.
#[derive(Debug)]
pub struct ClusterState {
    timing: Timing,
    /// End of the rebuild window (start + `rebuild_wait`).
    rebuild_end: Instant,
    /// True until the first event at or after `rebuild_end`.
    rebuilding: bool,
    committed: SlotTable,
    brokers: BTreeMap<String, Broker>,
    frontends: BTreeMap<String, Frontend>,
    reshard: Option<Reshard>,
    /// When the settle-up delay of the first pending join (or address change) ends.
    up_due: Option<Instant>,
    /// When the settle-down delay of the first pending leave or removal ends.
    down_due: Option<Instant>,
    next_heartbeat: Instant,
    arrivals: u64,
    counters: ReshardCounters,
    /// Prepare → commit of each reshard committed since the last collection.
    durations: Vec<Duration>,
}

/// The state as the status page shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    pub epoch: u64,
    pub slots: Vec<SlotStatus>,
    pub brokers: Vec<BrokerStatus>,
    pub frontends: Vec<FrontendStatus>,
    pub reshard: Option<ReshardStatus>,
    /// Filled in by the server, which sees every refusal.
    pub refused_links: u64,
    pub rebuilding: bool,
    /// Reshards since this server started.
    pub reshards: ReshardCounters,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SlotStatus {
    pub slot: usize,
    pub id: String,
    pub addr: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BrokerStatus {
    pub id: String,
    pub addr: String,
    pub connected: bool,
    /// `None`: not seen since this server started.
    pub last_seen_ms: Option<u64>,
    pub leaving: bool,
    /// Latest load reported on its current link; `None` when it is down or never reported (version 1).
    pub load: Option<NodeLoad>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FrontendStatus {
    pub id: String,
    pub peer: String,
    pub connected: bool,
    pub last_seen_ms: u64,
    /// As for brokers: open client sockets, chat users, channels with local subscribers.
    pub load: Option<NodeLoad>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReshardStatus {
    pub epoch: u64,
    pub waiting_for: Vec<String>,
    pub started_ms_ago: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why a reported table cannot be adopted, if it cannot.
fn table_problem(t: &SlotTable) -> Option<&'static str> {
    if t.slots.len() > MAX_SLOTS {
        return Some("too many slots");
    }
    let ids: BTreeSet<&str> = t.slots.iter().map(|b| b.id.as_str()).collect();
    if ids.len() != t.slots.len() {
        return Some("a broker id appears twice");
    }
    if t.slots.iter().any(|b| b.id.is_empty() || b.id.len() > MAX_NAME_BYTES || b.addr.len() > MAX_NAME_BYTES) {
        return Some("bad broker id or address");
    }
    if t.epoch == 0 && !t.slots.is_empty() {
        return Some("epoch 0 with brokers");
    }
    None
}

impl ClusterState {
    /// A server that has just started at `now` with the empty table (epoch 0).
    #[must_use]
    pub fn new(timing: Timing, now: Instant) -> Self {
        Self {
            timing,
            rebuild_end: now + timing.rebuild_wait,
            rebuilding: !timing.rebuild_wait.is_zero(),
            committed: SlotTable::default(),
            brokers: BTreeMap::new(),
            frontends: BTreeMap::new(),
            reshard: None,
            up_due: None,
            down_due: None,
            next_heartbeat: now + timing.heartbeat,
            arrivals: 0,
            counters: ReshardCounters::default(),
            durations: Vec::new(),
        }
    }

    #[must_use]
    pub fn committed(&self) -> &SlotTable {
        &self.committed
    }

    /// The table being prepared, if a reshard is in progress.
    #[must_use]
    pub fn preparing(&self) -> Option<&SlotTable> {
        self.reshard.as_ref().map(|r| &r.target)
    }

    #[must_use]
    pub fn is_rebuilding(&self, now: Instant) -> bool {
        self.rebuilding && now < self.rebuild_end
    }

    /// The current link of `node`, where `Action::Send` for it goes.
    #[must_use]
    pub fn conn_of(&self, node: &str) -> Option<ConnId> {
        self.brokers.get(node).and_then(|b| b.conn).or_else(|| self.frontends.get(node).and_then(|f| f.conn))
    }

    /// Drops the reshard in progress (on shutdown): nodes keep the committed
    /// table, and frontends drop their prepared one when the next `Prepare`
    /// or `Commit` comes. Returns the epoch that was being prepared.
    pub fn abort_reshard(&mut self) -> Option<u64> {
        let epoch = self.reshard.take().map(|r| r.target.epoch);
        if epoch.is_some() {
            self.counters.aborted += 1;
        }
        epoch
    }

    /// What the state machine has done since it started.
    #[must_use]
    pub fn counters(&self) -> ReshardCounters {
        self.counters
    }

    /// How long each reshard committed since the last call took, from its
    /// start (prepare) to its commit, oldest first. At most the last 64 are
    /// kept between calls.
    pub fn take_reshard_durations(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.durations)
    }

    /// The next instant something is due (a `Tick` should be delivered then).
    #[must_use]
    pub fn next_wakeup(&self, now: Instant) -> Instant {
        let silent = self.timing.heartbeat * SILENT_HEARTBEATS;
        let grace = self.timing.grace;
        let brokers = self.brokers.values().flat_map(|b| {
            [b.conn.and(b.last_seen).map(|t| t + silent), b.down_since.map(|t| t + grace)].into_iter().flatten()
        });
        let frontends = self.frontends.values().map(|f| match f.down_since {
            Some(t) => t + grace,
            None => f.last_seen + silent,
        });
        [
            Some(self.next_heartbeat),
            self.rebuilding.then_some(self.rebuild_end),
            self.up_due,
            self.down_due,
            self.reshard.as_ref().map(|r| r.deadline),
        ]
        .into_iter()
        .flatten()
        .chain(brokers)
        .chain(frontends)
        .filter(|t| *t > now)
        .min()
        .unwrap_or(self.next_heartbeat.max(now + self.timing.heartbeat))
    }

    /// Applies `event` at `now` and returns what to send and close, in order.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::NodeConnected { node, conn, peer, role, committed } => {
                self.connected(node, conn, peer, role, committed, now, &mut out);
            }
            Event::NodeDisconnected { node } => self.disconnected(&node, now),
            Event::Heartbeat { node } => self.seen(&node, now),
            Event::Load { node, load } => {
                self.seen(&node, now);
                if let Some(b) = self.brokers.get_mut(&node).filter(|b| b.conn.is_some()) {
                    b.load = Some(load);
                } else if let Some(f) = self.frontends.get_mut(&node).filter(|f| f.conn.is_some()) {
                    f.load = Some(load);
                }
            }
            Event::Leave { node } => {
                self.seen(&node, now);
                if let Some(b) = self.brokers.get_mut(&node) {
                    if !b.leaving {
                        info!(broker = %node, "broker asks to leave");
                    }
                    b.leaving = true;
                }
            }
            Event::PrepareAck { node, epoch } => {
                self.seen(&node, now);
                if let Some(r) = self.reshard.as_mut().filter(|r| r.target.epoch == epoch) {
                    r.waiting.remove(&node);
                }
            }
            Event::Tick => {}
        }
        self.advance(now, &mut out);
        out
    }

    /// The state for the status page, as of `now`.
    #[must_use]
    pub fn status(&self, now: Instant) -> Status {
        let ago = |t: Instant| ms(now.saturating_duration_since(t));
        Status {
            epoch: self.committed.epoch,
            slots: self
                .committed
                .slots
                .iter()
                .enumerate()
                .map(|(slot, b)| SlotStatus { slot, id: b.id.clone(), addr: b.addr.clone() })
                .collect(),
            brokers: self
                .brokers
                .iter()
                .map(|(id, b)| BrokerStatus {
                    id: id.clone(),
                    addr: b.addr.clone(),
                    connected: b.conn.is_some(),
                    last_seen_ms: b.last_seen.map(ago),
                    leaving: b.leaving,
                    load: b.load,
                })
                .collect(),
            frontends: self
                .frontends
                .iter()
                .map(|(id, f)| FrontendStatus {
                    id: id.clone(),
                    peer: f.peer.clone(),
                    connected: f.conn.is_some(),
                    last_seen_ms: ago(f.last_seen),
                    load: f.load,
                })
                .collect(),
            reshard: self.reshard.as_ref().map(|r| ReshardStatus {
                epoch: r.target.epoch,
                waiting_for: r.waiting.iter().cloned().collect(),
                started_ms_ago: ago(r.started),
            }),
            refused_links: 0,
            rebuilding: self.is_rebuilding(now),
            reshards: self.counters,
        }
    }

    /// The table the next reshard starts from: the prepared one, else the committed one.
    fn base(&self) -> &SlotTable {
        self.reshard.as_ref().map_or(&self.committed, |r| &r.target)
    }

    #[allow(clippy::too_many_arguments)]
    fn connected(
        &mut self,
        node: String,
        conn: ConnId,
        peer: String,
        role: Role,
        committed: Option<SlotTable>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let refuse = |out: &mut Vec<Action>, reason: String| out.push(Action::Close { conn, reason: Some(reason) });
        if node.is_empty() || node.len() > MAX_NAME_BYTES {
            return refuse(out, format!("node id must be 1 to {MAX_NAME_BYTES} bytes"));
        }
        if let Role::Broker { addr } = &role {
            if addr.is_empty() || addr.len() > MAX_NAME_BYTES {
                return refuse(out, format!("broker address must be 1 to {MAX_NAME_BYTES} bytes"));
            }
        }
        // One id, one role: `Send{node}` must name one link.
        let is_broker = matches!(role, Role::Broker { .. });
        if is_broker {
            if let Some(f) = self.frontends.get(&node) {
                if f.conn.is_some() {
                    return refuse(out, format!("node id {node} is taken by a frontend"));
                }
                self.frontends.remove(&node);
            }
        } else if let Some(b) = self.brokers.get(&node) {
            if b.conn.is_some() || self.committed.contains(&node) || self.base().contains(&node) {
                return refuse(out, format!("node id {node} is taken by a broker"));
            }
            self.brokers.remove(&node);
        }
        let known = self.brokers.contains_key(&node) || self.frontends.contains_key(&node);
        if !known && self.brokers.len() + self.frontends.len() >= MAX_NODES {
            return refuse(out, format!("too many nodes (limit {MAX_NODES})"));
        }

        let reported = committed.as_ref().map_or(0, |t| t.epoch);
        if let Some(table) = committed.filter(|t| t.epoch > self.committed.epoch) {
            match table_problem(&table) {
                Some(problem) => warn!(%node, epoch = table.epoch, problem, "ignoring the table a node reports"),
                None => self.adopt(table, &node, now, out),
            }
        }

        let old = match role {
            Role::Broker { addr } => {
                self.arrivals += 1;
                let in_table = self.committed.contains(&node) || self.base().contains(&node);
                let b = self.brokers.entry(node.clone()).or_insert_with(|| Broker {
                    addr: addr.clone(),
                    conn: None,
                    last_seen: None,
                    down_since: None,
                    leaving: false,
                    arrival: 0,
                    epoch: 0,
                    load: None,
                });
                let old = b.conn.replace(conn);
                if old.is_none() && !in_table {
                    // A new join (or a broker that left and came back): last in line.
                    b.arrival = self.arrivals;
                    b.leaving = false;
                }
                if b.addr != addr {
                    info!(broker = %node, old = %b.addr, new = %addr, "broker reports a new address");
                    b.addr = addr;
                }
                b.last_seen = Some(now);
                b.down_since = None;
                b.epoch = reported;
                info!(broker = %node, %peer, reconnect = in_table, "broker connected");
                old
            }
            Role::Frontend => {
                let f = self.frontends.entry(node.clone()).or_insert_with(|| Frontend {
                    peer: peer.clone(),
                    conn: None,
                    last_seen: now,
                    down_since: None,
                    epoch: 0,
                    load: None,
                });
                let old = f.conn.replace(conn);
                f.peer = peer;
                f.last_seen = now;
                f.down_since = None;
                f.epoch = reported;
                info!(frontend = %node, peer = %f.peer, "frontend connected");
                old
            }
        };
        if let Some(old) = old.filter(|c| *c != conn) {
            warn!(%node, "node connected again; closing its previous link");
            out.push(Action::Close { conn: old, reason: None });
        }
        out.push(Action::Send { node: node.clone(), frame: ControlFrame::Welcome { table: self.committed.clone() } });
        self.set_epoch(&node, self.committed.epoch);
        if let Some(r) = self.reshard.as_ref().filter(|_| !is_broker) {
            out.push(Action::Send { node, frame: ControlFrame::Prepare { table: r.target.clone() } });
        }
    }

    /// Takes `table` (higher than ours) as the committed table: the highest epoch wins.
    fn adopt(&mut self, table: SlotTable, from: &str, now: Instant, out: &mut Vec<Action>) {
        info!(epoch = table.epoch, previous = self.committed.epoch, node = %from, "adopting the table a node reports");
        self.counters.adopted += 1;
        if let Some(epoch) = self.abort_reshard() {
            warn!(epoch, "a node reports a newer table: dropping the reshard in progress");
        }
        let down_since = now.max(self.rebuild_end);
        for b in &table.slots {
            self.brokers.entry(b.id.clone()).or_insert_with(|| Broker {
                addr: b.addr.clone(),
                conn: None,
                last_seen: None,
                down_since: Some(down_since),
                leaving: false,
                arrival: 0,
                epoch: 0,
                load: None,
            });
        }
        self.brokers.retain(|id, b| b.conn.is_some() || table.contains(id));
        self.committed = table;
        // Nodes that connected earlier with an older table catch up.
        let behind: Vec<String> = self
            .brokers
            .iter()
            .filter(|(_, b)| b.conn.is_some() && b.epoch < self.committed.epoch)
            .map(|(id, _)| id.clone())
            .chain(
                self.frontends
                    .iter()
                    .filter(|(_, f)| f.conn.is_some() && f.epoch < self.committed.epoch)
                    .map(|(id, _)| id.clone()),
            )
            .filter(|id| id != from)
            .collect();
        for node in behind {
            out.push(Action::Send {
                node: node.clone(),
                frame: ControlFrame::Commit { table: self.committed.clone() },
            });
            self.set_epoch(&node, self.committed.epoch);
        }
    }

    fn set_epoch(&mut self, node: &str, epoch: u64) {
        if let Some(b) = self.brokers.get_mut(node) {
            b.epoch = epoch;
        } else if let Some(f) = self.frontends.get_mut(node) {
            f.epoch = epoch;
        }
    }

    fn seen(&mut self, node: &str, now: Instant) {
        if let Some(b) = self.brokers.get_mut(node).filter(|b| b.conn.is_some()) {
            b.last_seen = Some(now);
        } else if let Some(f) = self.frontends.get_mut(node).filter(|f| f.conn.is_some()) {
            f.last_seen = now;
        }
    }

    fn disconnected(&mut self, node: &str, now: Instant) {
        if let Some(b) = self.brokers.get_mut(node).filter(|b| b.conn.is_some()) {
            info!(broker = %node, grace_ms = ms(self.timing.grace), "broker disconnected");
            b.conn = None;
            b.down_since = Some(now);
            b.load = None;
        } else if let Some(f) = self.frontends.get_mut(node).filter(|f| f.conn.is_some()) {
            info!(frontend = %node, "frontend disconnected");
            f.conn = None;
            f.down_since = Some(now);
            f.load = None;
            if let Some(r) = self.reshard.as_mut() {
                r.waiting.remove(node);
            }
        }
    }

    /// Connected brokers not in the next table, in order of arrival.
    fn pending_joins(&self) -> Vec<BrokerInfo> {
        let base = self.base();
        let mut joins: Vec<(u64, BrokerInfo)> = self
            .brokers
            .iter()
            .filter(|(id, b)| b.conn.is_some() && !b.leaving && !base.contains(id))
            .map(|(id, b)| (b.arrival, BrokerInfo { id: id.clone(), addr: b.addr.clone() }))
            .collect();
        joins.sort_by_key(|(arrival, _)| *arrival);
        joins.into_iter().map(|(_, b)| b).collect()
    }

    /// Brokers in the next table that asked to leave or whose grace is over.
    fn pending_gone(&self, now: Instant) -> Vec<String> {
        let grace = self.timing.grace;
        self.base()
            .slots
            .iter()
            .filter(|s| match self.brokers.get(&s.id) {
                Some(b) => b.leaving || b.down_since.is_some_and(|t| now >= t + grace),
                None => true,
            })
            .map(|s| s.id.clone())
            .collect()
    }

    /// Connected brokers in the next table that report a different address.
    fn pending_moves(&self) -> bool {
        self.base().slots.iter().any(|s| self.brokers.get(&s.id).is_some_and(|b| b.conn.is_some() && b.addr != s.addr))
    }

    /// Everything time-driven, then the reshard machinery.
    fn advance(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.rebuilding && now >= self.rebuild_end {
            self.rebuilding = false;
            info!(epoch = self.committed.epoch, brokers = self.committed.len(), "rebuild window over");
        }
        self.expire(now, out);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.timing.heartbeat;
            for node in self.connected_nodes() {
                out.push(Action::Send { node, frame: ControlFrame::Heartbeat });
            }
        }
        for _ in 0..MAX_RESHARDS_PER_EVENT {
            if self.reshard.as_ref().is_some_and(|r| r.waiting.is_empty() || now >= r.deadline) {
                self.commit(now, out);
            }
            // Timers run during a reshard too: a change noticed meanwhile is
            // due a settle delay after it was noticed, not after the commit.
            self.update_timers(now);
            let due = |t: Option<Instant>| t.is_some_and(|t| now >= t);
            if self.reshard.is_some() || self.rebuilding || !(due(self.up_due) || due(self.down_due)) {
                break;
            }
            self.start_reshard(now, out);
        }
    }

    /// Closes silent links; forgets nodes gone for longer than the grace period.
    fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        let silent = self.timing.heartbeat * SILENT_HEARTBEATS;
        let mut gone = Vec::new();
        for (id, b) in &self.brokers {
            if let (Some(conn), Some(seen)) = (b.conn, b.last_seen) {
                if now >= seen + silent {
                    gone.push((id.clone(), conn));
                }
            }
        }
        for (id, f) in &self.frontends {
            if let Some(conn) = f.conn.filter(|_| now >= f.last_seen + silent) {
                gone.push((id.clone(), conn));
            }
        }
        for (id, conn) in gone {
            warn!(node = %id, silent_ms = ms(silent), "node sent nothing for 3 heartbeats; closing its link");
            out.push(Action::Close { conn, reason: None });
            self.disconnected(&id, now);
        }
        let grace = self.timing.grace;
        let over = |t: Option<Instant>| t.is_some_and(|t| now >= t + grace);
        self.frontends.retain(|_, f| !over(f.down_since));
        let keep: BTreeSet<String> =
            self.committed.slots.iter().chain(&self.base().slots).map(|b| b.id.clone()).collect();
        self.brokers.retain(|id, b| keep.contains(id) || !over(b.down_since));
    }

    fn connected_nodes(&self) -> Vec<String> {
        let brokers = self.brokers.iter().filter(|(_, b)| b.conn.is_some()).map(|(id, _)| id.clone());
        let frontends = self.frontends.iter().filter(|(_, f)| f.conn.is_some()).map(|(id, _)| id.clone());
        brokers.chain(frontends).collect()
    }

    /// Starts (or keeps, or stops) the settle timers from what is pending now.
    fn update_timers(&mut self, now: Instant) {
        if self.rebuilding {
            return;
        }
        if self.pending_joins().is_empty() && !self.pending_moves() {
            self.up_due = None;
        } else {
            self.up_due.get_or_insert(now + self.timing.settle_up);
        }
        if self.pending_gone(now).is_empty() {
            self.down_due = None;
        } else {
            self.down_due.get_or_insert(now + self.timing.settle_down);
        }
    }

    fn start_reshard(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.up_due = None;
        self.down_due = None;
        if self.reshard.is_some() {
            return;
        }
        let gone = self.pending_gone(now);
        let joins = self.pending_joins();
        let gone_ids: Vec<&str> = gone.iter().map(String::as_str).collect();
        let mut target = self.committed.without(&gone_ids);
        for b in joins.iter().cloned() {
            target = target.join(b);
        }
        for slot in &mut target.slots {
            if let Some(b) = self.brokers.get(&slot.id).filter(|b| b.conn.is_some()) {
                slot.addr.clone_from(&b.addr);
            }
        }
        if target.slots == self.committed.slots {
            return;
        }
        target.epoch = self.committed.epoch + 1;
        let joined: Vec<&str> = joins.iter().map(|b| b.id.as_str()).collect();
        let waiting: BTreeSet<String> =
            self.frontends.iter().filter(|(_, f)| f.conn.is_some()).map(|(id, _)| id.clone()).collect();
        info!(epoch = target.epoch, ?joined, removed = ?gone, frontends = waiting.len(), "reshard: preparing");
        for node in &waiting {
            out.push(Action::Send { node: node.clone(), frame: ControlFrame::Prepare { table: target.clone() } });
        }
        self.reshard = Some(Reshard { target, started: now, deadline: now + self.timing.prepare_timeout, waiting });
        self.counters.started += 1;
    }

    fn commit(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(r) = self.reshard.take() else { return };
        if r.waiting.is_empty() {
            info!(epoch = r.target.epoch, "reshard: every frontend prepared; committing");
        } else {
            warn!(epoch = r.target.epoch, waiting_for = ?r.waiting, "reshard: prepare timeout; committing anyway");
            self.counters.prepare_timeouts += 1;
        }
        self.counters.committed += 1;
        if self.durations.len() >= MAX_PENDING_DURATIONS {
            self.durations.remove(0);
        }
        self.durations.push(now.saturating_duration_since(r.started));
        self.committed = r.target;
        for node in self.connected_nodes() {
            out.push(Action::Send {
                node: node.clone(),
                frame: ControlFrame::Commit { table: self.committed.clone() },
            });
            self.set_epoch(&node, self.committed.epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing { rebuild_wait: Duration::ZERO, ..Timing::default() }
    }

    /// The state machine with a fake clock, and nodes that answer heartbeats
    /// unless they are told to hang.
    struct Sim {
        s: ClusterState,
        t0: Instant,
        now: Instant,
        next_conn: ConnId,
        hung: BTreeSet<String>,
    }

    impl Sim {
        fn new(timing: Timing) -> Self {
            let t0 = Instant::now();
            Sim { s: ClusterState::new(timing, t0), t0, now: t0, next_conn: 0, hung: BTreeSet::new() }
        }

        fn ev(&mut self, e: Event) -> Vec<Action> {
            let actions = self.s.on_event(e, self.now);
            self.answer(&actions)
        }

        /// Live nodes answer every heartbeat at once.
        fn answer(&mut self, actions: &[Action]) -> Vec<Action> {
            let mut all = actions.to_vec();
            for a in actions {
                if let Action::Send { node, frame: ControlFrame::Heartbeat } = a {
                    if !self.hung.contains(node) {
                        all.extend(self.s.on_event(Event::Heartbeat { node: node.clone() }, self.now));
                    }
                }
            }
            all
        }

        /// Moves the clock to `ms` after start, ticking at every wakeup on the way.
        fn until(&mut self, ms: u64) -> Vec<Action> {
            let end = self.t0 + Duration::from_millis(ms);
            let mut out = Vec::new();
            loop {
                let next = self.s.next_wakeup(self.now);
                assert!(next > self.now, "wakeup not in the future");
                if next > end {
                    break;
                }
                self.now = next;
                out.extend(self.ev(Event::Tick));
            }
            self.now = end;
            out.extend(self.ev(Event::Tick));
            out
        }

        fn connect(&mut self, node: &str, role: Role, committed: Option<SlotTable>) -> Vec<Action> {
            self.next_conn += 1;
            let conn = self.next_conn;
            self.ev(Event::NodeConnected { node: node.into(), conn, peer: format!("10.0.0.1:{conn}"), role, committed })
        }

        fn broker(&mut self, id: &str) -> Vec<Action> {
            self.connect(id, Role::Broker { addr: addr(id) }, None)
        }

        fn frontend(&mut self, id: &str) -> Vec<Action> {
            self.connect(id, Role::Frontend, None)
        }
    }

    fn addr(id: &str) -> String {
        format!("{id}.local:9000")
    }

    fn table(epoch: u64, ids: &[&str]) -> SlotTable {
        SlotTable { epoch, slots: ids.iter().map(|id| BrokerInfo { id: (*id).into(), addr: addr(id) }).collect() }
    }

    fn ids(t: &SlotTable) -> Vec<&str> {
        t.slots.iter().map(|b| b.id.as_str()).collect()
    }

    fn frames_to<'a>(actions: &'a [Action], to: &str) -> Vec<&'a ControlFrame> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { node, frame } if node == to && *frame != ControlFrame::Heartbeat => Some(frame),
                _ => None,
            })
            .collect()
    }

    fn prepares(actions: &[Action]) -> Vec<(&str, &SlotTable)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { node, frame: ControlFrame::Prepare { table } } => Some((node.as_str(), table)),
                _ => None,
            })
            .collect()
    }

    fn commits(actions: &[Action]) -> Vec<(&str, &SlotTable)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { node, frame: ControlFrame::Commit { table } } => Some((node.as_str(), table)),
                _ => None,
            })
            .collect()
    }

    /// Starts with `brokers` committed at epoch `brokers.len()` and one frontend `f1`.
    fn steady(brokers: &[&str]) -> Sim {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        for b in brokers {
            sim.broker(b);
        }
        let a = sim.until(600);
        let p = prepares(&a);
        assert_eq!(p.len(), 1, "{a:?}");
        let epoch = p[0].1.epoch;
        sim.ev(Event::PrepareAck { node: "f1".into(), epoch });
        assert_eq!(ids(sim.s.committed()), brokers);
        assert_eq!(sim.s.committed().epoch, 1);
        sim
    }

    #[test]
    fn a_node_is_welcomed_with_the_committed_table() {
        let mut sim = Sim::new(timing());
        let a = sim.frontend("f1");
        assert_eq!(frames_to(&a, "f1"), [&ControlFrame::Welcome { table: SlotTable::default() }]);
        assert_eq!(sim.s.conn_of("f1"), Some(1));
    }

    #[test]
    fn a_join_is_prepared_acked_and_committed_at_epoch_plus_one() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.frontend("f2");
        sim.broker("b1");
        // Nothing before the settle-up delay.
        let a = sim.until(499);
        assert!(prepares(&a).is_empty(), "{a:?}");
        let a = sim.until(500);
        let p = prepares(&a);
        assert_eq!(p.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["f1", "f2"], "Prepare goes to frontends only");
        assert_eq!(*p[0].1, table(1, &["b1"]));
        assert!(commits(&a).is_empty());
        assert_eq!(sim.s.status(sim.now).reshard.unwrap().waiting_for, ["f1", "f2"]);

        let a = sim.ev(Event::PrepareAck { node: "f1".into(), epoch: 1 });
        assert!(commits(&a).is_empty(), "f2 has not acked yet");
        let a = sim.ev(Event::PrepareAck { node: "f2".into(), epoch: 2 });
        assert!(commits(&a).is_empty(), "an ack for another epoch does not count");
        let a = sim.ev(Event::PrepareAck { node: "f2".into(), epoch: 1 });
        let c = commits(&a);
        assert_eq!(c.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["b1", "f1", "f2"], "Commit goes to every node");
        assert!(c.iter().all(|(_, t)| **t == table(1, &["b1"])));
        assert_eq!(*sim.s.committed(), table(1, &["b1"]));
        assert!(sim.s.status(sim.now).reshard.is_none());
    }

    #[test]
    fn reshards_are_counted_and_timed_from_prepare_to_commit() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.broker("b1");
        sim.until(500);
        assert_eq!(sim.s.counters(), ReshardCounters { started: 1, ..ReshardCounters::default() });
        sim.until(620);
        sim.ev(Event::PrepareAck { node: "f1".into(), epoch: 1 });
        let c = sim.s.counters();
        assert_eq!((c.started, c.committed, c.prepare_timeouts, c.aborted), (1, 1, 0, 0));
        assert_eq!(sim.s.take_reshard_durations(), [Duration::from_millis(120)]);
        assert!(sim.s.take_reshard_durations().is_empty(), "each duration is collected once");
        assert_eq!(sim.s.status(sim.now).reshards, c);

        // A second broker: f1 never acks, so the commit waits for the prepare timeout.
        sim.broker("b2");
        // Joined at 620 ms: prepared at 1,120 ms, committed on the timeout at 4,120 ms.
        sim.until(4_119);
        assert_eq!(sim.s.counters().committed, 1);
        sim.until(4_120);
        let c = sim.s.counters();
        assert_eq!((c.started, c.committed, c.prepare_timeouts), (2, 2, 1));
        let took = sim.s.take_reshard_durations();
        assert_eq!(took, [timing().prepare_timeout]);
    }

    #[test]
    fn a_reshard_dropped_for_a_newer_reported_table_is_counted_as_aborted() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.broker("b1");
        sim.until(500);
        assert!(sim.s.preparing().is_some());
        sim.connect("f2", Role::Frontend, Some(table(7, &["b9"])));
        let c = sim.s.counters();
        assert_eq!((c.started, c.committed, c.aborted, c.adopted), (1, 0, 1, 1));
        assert!(sim.s.take_reshard_durations().is_empty());
    }

    #[test]
    fn joins_in_the_settle_window_go_in_one_reshard_in_order_of_arrival() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.broker("b2");
        sim.now += Duration::from_millis(100);
        sim.broker("b1");
        let a = sim.until(1000);
        let p = prepares(&a);
        assert_eq!(p.len(), 1);
        assert_eq!(*p[0].1, table(1, &["b2", "b1"]), "exactly one epoch for two joins");
    }

    #[test]
    fn the_reshard_commits_on_prepare_timeout_when_a_frontend_never_acks() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.frontend("f2");
        sim.broker("b1");
        sim.until(500);
        sim.ev(Event::PrepareAck { node: "f1".into(), epoch: 1 });
        let a = sim.until(3499);
        assert!(commits(&a).is_empty());
        let a = sim.until(3500);
        assert_eq!(commits(&a).len(), 3, "{a:?}");
        assert_eq!(sim.s.committed().epoch, 1);
    }

    #[test]
    fn without_frontends_a_reshard_commits_at_once() {
        let mut sim = Sim::new(timing());
        sim.broker("b1");
        let a = sim.until(500);
        assert_eq!(commits(&a), [("b1", &table(1, &["b1"]))]);
    }

    #[test]
    fn a_frontend_that_disconnects_is_not_waited_for() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.frontend("f2");
        sim.broker("b1");
        sim.until(500);
        sim.ev(Event::PrepareAck { node: "f1".into(), epoch: 1 });
        let a = sim.ev(Event::NodeDisconnected { node: "f2".into() });
        assert_eq!(commits(&a).iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["b1", "f1"]);
    }

    #[test]
    fn a_graceful_leave_uses_the_last_slot_rule() {
        let mut sim = steady(&["b0", "b1", "b2", "b3"]);
        let t = sim.now;
        sim.ev(Event::Leave { node: "b1".into() });
        assert!(sim.s.status(sim.now).brokers.iter().any(|b| b.id == "b1" && b.leaving));
        let a = sim.until(ms(t - sim.t0) + 199);
        assert!(prepares(&a).is_empty(), "settle-down delay first");
        let a = sim.until(ms(t - sim.t0) + 200);
        let p = prepares(&a);
        assert_eq!(ids(p[0].1), ["b0", "b3", "b2"], "the last broker takes the leaver's slot");
        assert_eq!(p[0].1.epoch, 2);
        let a = sim.ev(Event::PrepareAck { node: "f1".into(), epoch: 2 });
        let c = commits(&a);
        assert!(c.iter().any(|(n, _)| *n == "b1"), "the leaver learns it is out (and drains)");
        assert_eq!(ids(sim.s.committed()), ["b0", "b3", "b2"]);
        // It stays listed as leaving until it disconnects, then is forgotten after grace.
        sim.ev(Event::NodeDisconnected { node: "b1".into() });
        let now = ms(sim.now - sim.t0);
        let a = sim.until(now + 4000);
        assert!(prepares(&a).is_empty() && commits(&a).is_empty(), "{a:?}");
        assert!(sim.s.status(sim.now).brokers.iter().all(|b| b.id != "b1"));
    }

    #[test]
    fn two_brokers_dying_in_the_settle_window_are_removed_in_one_reshard() {
        let mut sim = steady(&["b0", "b1", "b2", "b3"]);
        let t = ms(sim.now - sim.t0);
        sim.ev(Event::NodeDisconnected { node: "b3".into() });
        sim.now += Duration::from_millis(150);
        sim.ev(Event::NodeDisconnected { node: "b1".into() });
        // b3's grace ends at t+3000, the settle-down delay at t+3200; b1's grace at t+3150.
        let a = sim.until(t + 3199);
        assert!(prepares(&a).is_empty(), "{a:?}");
        let a = sim.until(t + 3200);
        let p = prepares(&a);
        assert_eq!(p.len(), 1);
        assert_eq!(*p[0].1, table(1, &["b0", "b1", "b2", "b3"]).without(&["b1", "b3"]));
        assert_eq!(ids(p[0].1), ["b0", "b2"]);
        assert_eq!(p[0].1.epoch, 2);
    }

    #[test]
    fn a_broker_that_reconnects_within_grace_changes_nothing() {
        let mut sim = steady(&["b0", "b1"]);
        let t = ms(sim.now - sim.t0);
        sim.ev(Event::NodeDisconnected { node: "b1".into() });
        assert!(!sim.s.status(sim.now).brokers[1].connected);
        sim.until(t + 2900);
        let a = sim.broker("b1");
        assert_eq!(frames_to(&a, "b1"), [&ControlFrame::Welcome { table: table(1, &["b0", "b1"]) }]);
        let a = sim.until(t + 10_000);
        assert!(prepares(&a).is_empty() && commits(&a).is_empty(), "{a:?}");
        assert_eq!(sim.s.committed().epoch, 1);
    }

    #[test]
    fn a_silent_broker_is_closed_then_removed_after_grace() {
        let mut sim = steady(&["b0", "b1"]);
        let t = ms(sim.now - sim.t0);
        sim.hung.insert("b1".into());
        let a = sim.until(t + 3500);
        assert!(a.iter().any(|a| matches!(a, Action::Close { reason: None, .. })), "{a:?}");
        assert!(prepares(&a).is_empty());
        let a = sim.until(t + 7000);
        assert_eq!(ids(prepares(&a)[0].1), ["b0"]);
    }

    #[test]
    fn a_second_link_for_the_same_node_replaces_the_first() {
        let mut sim = steady(&["b0"]);
        let old = sim.s.conn_of("b0").unwrap();
        let a = sim.broker("b0");
        assert!(a.contains(&Action::Close { conn: old, reason: None }));
        assert_ne!(sim.s.conn_of("b0"), Some(old));
        let a = sim.until(10_000);
        assert!(prepares(&a).is_empty());
    }

    #[test]
    fn a_frontend_connecting_mid_reshard_gets_welcome_then_prepare_and_is_not_waited_for() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.broker("b1");
        sim.until(500);
        let a = sim.frontend("f2");
        assert_eq!(
            frames_to(&a, "f2"),
            [
                &ControlFrame::Welcome { table: SlotTable::default() },
                &ControlFrame::Prepare { table: table(1, &["b1"]) }
            ]
        );
        let a = sim.ev(Event::PrepareAck { node: "f1".into(), epoch: 1 });
        assert_eq!(commits(&a).len(), 3);
    }

    #[test]
    fn changes_during_a_reshard_wait_for_the_next_one() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.broker("b1");
        sim.until(500);
        sim.broker("b2");
        let a = sim.until(1200);
        assert!(prepares(&a).is_empty(), "one reshard at a time");
        let a = sim.ev(Event::PrepareAck { node: "f1".into(), epoch: 1 });
        let p = prepares(&a);
        assert_eq!(commits(&a)[0].1.epoch, 1);
        assert_eq!(*p[0].1, table(2, &["b1", "b2"]), "the next reshard starts right after the commit");
    }

    #[test]
    fn a_join_and_a_leave_go_in_one_reshard() {
        let mut sim = steady(&["b0", "b1", "b2"]);
        sim.ev(Event::Leave { node: "b0".into() });
        sim.broker("b3");
        let t = ms(sim.now - sim.t0);
        let a = sim.until(t + 1000);
        let p = prepares(&a);
        assert_eq!(p.len(), 1);
        assert_eq!(ids(p[0].1), ["b2", "b1", "b3"]);
        assert_eq!(p[0].1.epoch, 2);
    }

    #[test]
    fn a_broker_that_joins_and_dies_before_the_reshard_is_not_added() {
        let mut sim = Sim::new(timing());
        sim.broker("b1");
        sim.ev(Event::NodeDisconnected { node: "b1".into() });
        let a = sim.until(5000);
        assert!(commits(&a).is_empty(), "{a:?}");
        assert!(sim.s.status(sim.now).brokers.is_empty(), "forgotten after grace");
    }

    #[test]
    fn a_restart_adopts_the_highest_epoch_and_changes_nothing() {
        let committed = table(7, &["b0", "b1", "b2"]);
        let older = table(6, &["b0", "b1"]);
        let mut sim = Sim::new(Timing::default());
        // A frontend that missed the last commit reports first...
        let a = sim.connect("f1", Role::Frontend, Some(older.clone()));
        assert_eq!(frames_to(&a, "f1"), [&ControlFrame::Welcome { table: older.clone() }]);
        // ...then a broker with the newest table: adopted, and f1 catches up.
        let a = sim.connect("b2", Role::Broker { addr: addr("b2") }, Some(committed.clone()));
        assert_eq!(frames_to(&a, "b2"), [&ControlFrame::Welcome { table: committed.clone() }]);
        assert_eq!(frames_to(&a, "f1"), [&ControlFrame::Commit { table: committed.clone() }]);
        // Lower epochs reported later do not win.
        sim.connect("b0", Role::Broker { addr: addr("b0") }, Some(older));
        sim.connect("b1", Role::Broker { addr: addr("b1") }, Some(committed.clone()));
        assert!(sim.s.is_rebuilding(sim.now));
        let a = sim.until(20_000);
        assert!(prepares(&a).is_empty() && commits(&a).is_empty(), "{a:?}");
        assert_eq!(*sim.s.committed(), committed);
        assert!(!sim.s.status(sim.now).rebuilding);
    }

    #[test]
    fn nothing_changes_during_the_rebuild_window() {
        let mut sim = Sim::new(Timing::default());
        sim.connect("b0", Role::Broker { addr: addr("b0") }, Some(table(3, &["b0", "b1"])));
        sim.broker("b9");
        sim.ev(Event::Leave { node: "b0".into() });
        let a = sim.until(1999);
        assert!(prepares(&a).is_empty() && commits(&a).is_empty(), "{a:?}");
        // After the window: b9 joins and b0 leaves (settle-down, 200 ms); b1,
        // which never came back, is removed after grace counted from the end
        // of the window, in a later reshard.
        let a = sim.until(2200);
        let c = commits(&a);
        assert_eq!(c.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["b0", "b9"], "the leaver learns it is out");
        assert_eq!(ids(c[0].1), ["b1", "b9"]);
        assert_eq!(c[0].1.epoch, 4);
        let a = sim.until(4999);
        assert!(commits(&a).is_empty());
        let a = sim.until(5200);
        let c = commits(&a);
        assert_eq!(ids(c[0].1), ["b9"]);
        assert_eq!(c[0].1.epoch, 5);
    }

    #[test]
    fn a_broker_with_a_new_address_is_updated_in_place() {
        let mut sim = steady(&["b0", "b1"]);
        sim.ev(Event::NodeDisconnected { node: "b0".into() });
        sim.connect("b0", Role::Broker { addr: "elsewhere:1".into() }, None);
        let t = ms(sim.now - sim.t0);
        let a = sim.until(t + 500);
        let p = prepares(&a);
        assert_eq!(ids(p[0].1), ["b0", "b1"], "no channel moves");
        assert_eq!(p[0].1.slots[0].addr, "elsewhere:1");
        assert_eq!(p[0].1.epoch, 2);
    }

    #[test]
    fn bad_hellos_are_refused_by_the_state_machine() {
        let mut sim = steady(&["b0"]);
        let a = sim.connect("b0", Role::Frontend, None);
        assert!(matches!(&a[..], [Action::Close { reason: Some(r), .. }] if r.contains("taken")), "{a:?}");
        let a = sim.connect("", Role::Frontend, None);
        assert!(matches!(&a[..], [Action::Close { reason: Some(_), .. }]), "{a:?}");
        let dup = SlotTable { epoch: 9, slots: vec![table(1, &["x"]).slots[0].clone(); 2] };
        sim.connect("f9", Role::Frontend, Some(dup));
        assert_eq!(sim.s.committed().epoch, 1, "a table with a duplicate id is not adopted");
    }

    #[test]
    fn heartbeats_go_to_every_node_each_interval() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.broker("b1");
        let a = sim.until(999);
        assert!(!a.iter().any(|a| matches!(a, Action::Send { frame: ControlFrame::Heartbeat, .. })));
        let a = sim.until(1000);
        let hb: Vec<_> = a
            .iter()
            .filter_map(|a| match a {
                Action::Send { node, frame: ControlFrame::Heartbeat } => Some(node.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(hb, ["b1", "f1"]);
    }

    #[test]
    fn status_reports_nodes_and_the_reshard() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.broker("b1");
        sim.until(600);
        let s = sim.s.status(sim.now);
        assert_eq!(s.epoch, 0);
        assert_eq!(s.brokers[0].last_seen_ms, Some(600));
        assert_eq!(s.frontends[0].peer, "10.0.0.1:1");
        let r = s.reshard.unwrap();
        assert_eq!((r.epoch, r.started_ms_ago), (1, 100));
    }

    #[test]
    fn the_latest_load_of_each_node_is_shown_until_its_link_goes() {
        let mut sim = Sim::new(timing());
        sim.frontend("f1");
        sim.frontend("f2");
        sim.broker("b1");
        let load = |connections, users, channels| NodeLoad { connections, users, channels };
        sim.ev(Event::Load { node: "f1".into(), load: load(3, 2, 9) });
        sim.ev(Event::Load { node: "f1".into(), load: load(5, 4, 9) });
        sim.ev(Event::Load { node: "b1".into(), load: load(2, 0, 11) });
        let s = sim.s.status(sim.now);
        let f: Vec<_> = s.frontends.iter().map(|f| (f.id.as_str(), f.load)).collect();
        assert_eq!(f, [("f1", Some(load(5, 4, 9))), ("f2", None)]);
        assert_eq!(s.brokers[0].load, Some(load(2, 0, 11)));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["frontends"][0]["load"], serde_json::json!({"connections": 5, "users": 4, "channels": 9}));

        // A load report is a heartbeat: neither frontend answers heartbeats, only f1 reports its
        // load, and 4 s (over 3 heartbeat intervals) pass.
        sim.hung.extend(["f1".to_owned(), "f2".to_owned()]);
        for t in (500..=4000).step_by(500) {
            sim.ev(Event::Load { node: "f1".into(), load: load(6, 4, 9) });
            sim.until(t);
        }
        let s = sim.s.status(sim.now);
        assert!(s.frontends[0].connected && s.frontends[0].last_seen_ms <= 500);
        assert!(!s.frontends[1].connected, "the silent frontend is dropped");

        // A frontend that goes down has no load: its sockets are unknown, not still open.
        sim.ev(Event::NodeDisconnected { node: "f1".into() });
        let s = sim.s.status(sim.now);
        assert!(!s.frontends[0].connected);
        assert_eq!(s.frontends[0].load, None);
        // A report on no live link (a replaced link's last words) is not kept.
        sim.ev(Event::Load { node: "f1".into(), load: load(1, 1, 1) });
        assert_eq!(sim.s.status(sim.now).frontends[0].load, None);
    }
}
