//! What one broker's tasks share: its config, routing table, counters and
//! membership status. One per broker, never global, so several brokers can
//! run in one process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::metrics::histogram::Histogram;

use crate::config::Config;
use crate::interest::LinkId;
use crate::router::Router;
use crate::stats::Stats;

#[derive(Debug)]
pub struct Node {
    pub config: Config,
    /// `host:port` frontends reach the fabric port at, as told to the state server.
    pub advertise_addr: String,
    pub router: Router,
    pub stats: Stats,
    pub status: Status,
    /// Publish frame decoded → message queued toward the last interested link.
    pub fanout_seconds: Histogram,
    next_link: AtomicU64,
}

impl Node {
    #[must_use]
    pub fn new(config: Config, advertise_addr: String) -> Self {
        let status = Status::new(config.state_server.is_none());
        Self {
            config,
            advertise_addr,
            router: Router::default(),
            stats: Stats::default(),
            status,
            fanout_seconds: crate::metrics::fanout_histogram(),
            next_link: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_link_id(&self) -> LinkId {
        LinkId(self.next_link.fetch_add(1, Ordering::Relaxed))
    }
}

/// Where the broker stands in the cluster, as `/ready` and `/health` report it.
#[derive(Debug)]
pub struct Status {
    /// No state server configured: always in service until it leaves.
    standalone: bool,
    /// Set once on shutdown; never cleared.
    leaving: AtomicBool,
    /// Whether the last table the state server sent (welcome or commit) holds this broker.
    /// Kept while the state server is unreachable: nodes run on the last committed table.
    in_table: AtomicBool,
    /// Currently connected to the state server and welcomed.
    connected: AtomicBool,
    /// Epoch of the last committed table seen (0: none).
    epoch: AtomicU64,
}

impl Status {
    fn new(standalone: bool) -> Self {
        Self {
            standalone,
            leaving: AtomicBool::new(false),
            in_table: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
        }
    }

    /// In service: not leaving, and standalone or in the committed slot table.
    #[must_use]
    pub fn ready(&self) -> bool {
        !self.leaving() && (self.standalone || self.in_table.load(Ordering::SeqCst))
    }

    #[must_use]
    pub fn standalone(&self) -> bool {
        self.standalone
    }

    #[must_use]
    pub fn leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    pub(crate) fn set_leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    #[must_use]
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
    }

    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    #[must_use]
    pub fn in_table(&self) -> bool {
        self.in_table.load(Ordering::SeqCst)
    }

    pub(crate) fn set_table(&self, epoch: u64, in_table: bool) {
        self.epoch.store(epoch, Ordering::SeqCst);
        self.in_table.store(in_table, Ordering::SeqCst);
    }
}
