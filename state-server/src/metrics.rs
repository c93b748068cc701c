//! Prometheus metrics of the state server (`GET /metrics` on the HTTP port),
//! with `prometheus-client`, in the same pattern as the frontend's and the
//! broker's: one registry per server (no process-wide default registry), a
//! collector that reads the server's state at scrape time, and a histogram
//! observed where the work happens.
//!
//! All membership state lives in the core task, so a scrape first asks the
//! core for a [`Status`] snapshot (as `/status` does), hands it to the
//! collector, then encodes; refusals are counted by the links themselves in
//! atomics; reshard durations are observed by the core when a reshard commits.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::cluster_state::Status;

/// Content type of the exposition, as the frontend serves it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why a control link was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    WrongKey,
    WrongVersion,
    /// The first frame was a valid frame, but not `Hello`.
    NotHello,
    /// No whole frame within the hello timeout.
    HelloTimeout,
    /// The first frame was too big or undecodable.
    BadFrame,
    /// More control connections than `MAX_LINKS` at once.
    TooManyLinks,
    /// A valid `Hello` the state machine turned down: a bad node id or
    /// address, an id taken by the other role, or too many nodes.
    Rejected,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::WrongKey,
        Refusal::WrongVersion,
        Refusal::NotHello,
        Refusal::HelloTimeout,
        Refusal::BadFrame,
        Refusal::TooManyLinks,
        Refusal::Rejected,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Refusal::WrongKey => "wrong_key",
            Refusal::WrongVersion => "wrong_version",
            Refusal::NotHello => "not_hello",
            Refusal::HelloTimeout => "hello_timeout",
            Refusal::BadFrame => "bad_frame",
            Refusal::TooManyLinks => "too_many_links",
            Refusal::Rejected => "rejected",
        }
    }
}

/// Refused control links, by reason. Shared by the links, the accept loop and the core.
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; Refusal::ALL.len()]);

impl Refusals {
    pub fn count(&self, why: Refusal) {
        self.0[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    #[must_use]
    pub fn get(&self, why: Refusal) -> u64 {
        self.0[why as usize].load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn total(&self) -> u64 {
        Refusal::ALL.iter().map(|w| self.get(*w)).sum()
    }
}

/// Reads the refusal counters and the latest status snapshot at scrape time.
struct StateCollector {
    refused: Arc<Refusals>,
    snapshot: Arc<Mutex<Option<Status>>>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn role_state(e: &mut DescriptorEncoder<'_>, s: &Status) -> std::fmt::Result {
    let g = ConstGauge::new(0i64);
    let mut family = e.encode_descriptor(
        "nodes",
        "Nodes the state server knows, by role and link state (disconnected: within their grace period, or a \
         broker of the table not seen since a restart)",
        None,
        g.metric_type(),
    )?;
    let brokers_up = s.brokers.iter().filter(|b| b.connected).count();
    let frontends_up = s.frontends.iter().filter(|f| f.connected).count();
    let rows = [
        ("broker", "connected", brokers_up),
        ("broker", "disconnected", s.brokers.len() - brokers_up),
        ("frontend", "connected", frontends_up),
        ("frontend", "disconnected", s.frontends.len() - frontends_up),
    ];
    for (role, state, n) in rows {
        ConstGauge::new(n as i64).encode(family.encode_family(&[("role", role), ("state", state)])?)?;
    }
    Ok(())
}

/// Per node: whether its control link is up, and how long ago it was last heard from.
fn link_health(e: &mut DescriptorEncoder<'_>, s: &Status) -> std::fmt::Result {
    let g = ConstGauge::new(0i64);
    let mut family =
        e.encode_descriptor("node_up", "1 while the node's control link is up, per node", None, g.metric_type())?;
    for b in &s.brokers {
        ConstGauge::new(i64::from(b.connected))
            .encode(family.encode_family(&[("role", "broker"), ("node", &b.id)])?)?;
    }
    for f in &s.frontends {
        ConstGauge::new(i64::from(f.connected))
            .encode(family.encode_family(&[("role", "frontend"), ("node", &f.id)])?)?;
    }
    let g = ConstGauge::new(0.0f64);
    let mut family = e.encode_descriptor(
        "node_last_seen_seconds",
        "Seconds since the last frame from the node (brokers not seen since a restart are left out)",
        None,
        g.metric_type(),
    )?;
    for b in &s.brokers {
        if let Some(ms) = b.last_seen_ms {
            ConstGauge::new(ms as f64 / 1000.0)
                .encode(family.encode_family(&[("role", "broker"), ("node", &b.id)])?)?;
        }
    }
    for f in &s.frontends {
        ConstGauge::new(f.last_seen_ms as f64 / 1000.0)
            .encode(family.encode_family(&[("role", "frontend"), ("node", &f.id)])?)?;
    }
    Ok(())
}

/// Per node that reported its load (control protocol 2): connections, chat users, channels.
fn node_load(e: &mut DescriptorEncoder<'_>, s: &Status) -> std::fmt::Result {
    let loads: Vec<(&str, &str, protocol::control::NodeLoad)> = s
        .brokers
        .iter()
        .filter_map(|b| b.load.map(|l| ("broker", b.id.as_str(), l)))
        .chain(s.frontends.iter().filter_map(|f| f.load.map(|l| ("frontend", f.id.as_str(), l))))
        .collect();
    type Pick = fn(&protocol::control::NodeLoad) -> u64;
    let families: [(&str, &str, Pick); 3] = [
        ("node_connections", "Reported by each node: client sockets (frontend) or fabric links (broker)", |l| {
            l.connections
        }),
        ("node_users", "Reported by each frontend: distinct authenticated chat users", |l| l.users),
        ("node_channels", "Reported by each node: channels with local subscribers or interest", |l| l.channels),
    ];
    for (name, help, pick) in families {
        let g = ConstGauge::new(0i64);
        let mut family = e.encode_descriptor(name, help, None, g.metric_type())?;
        for (role, node, load) in &loads {
            ConstGauge::new(i64::try_from(pick(load)).unwrap_or(i64::MAX))
                .encode(family.encode_family(&[("role", *role), ("node", *node)])?)?;
        }
    }
    Ok(())
}

impl Collector for StateCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = ConstCounter::new(0u64);
        let mut family =
            e.encode_descriptor("links_refused", "Control links refused, by reason", None, c.metric_type())?;
        for why in Refusal::ALL {
            ConstCounter::new(self.refused.get(why)).encode(family.encode_family(&[("reason", why.name())])?)?;
        }
        let snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(s) = snapshot.as_ref() else { return Ok(()) };
        gauge(&mut e, "slot_table_epoch", "Epoch of the committed slot table", s.epoch as i64)?;
        gauge(&mut e, "slots", "Brokers in the committed slot table", s.slots.len() as i64)?;
        role_state(&mut e, s)?;
        gauge(
            &mut e,
            "brokers_leaving",
            "Brokers that asked to leave and are still known",
            s.brokers.iter().filter(|b| b.leaving).count() as i64,
        )?;
        gauge(&mut e, "reshard_in_progress", "1 while a reshard is being prepared", i64::from(s.reshard.is_some()))?;
        gauge(
            &mut e,
            "reshard_waiting_frontends",
            "Frontends the reshard in progress still waits for",
            s.reshard.as_ref().map_or(0, |r| r.waiting_for.len() as i64),
        )?;
        gauge(
            &mut e,
            "rebuilding",
            "1 during the rebuild window after a start (no table change)",
            i64::from(s.rebuilding),
        )?;
        let r = &s.reshards;
        counter(&mut e, "reshards_started", "Reshards started (prepare sent)", r.started)?;
        counter(&mut e, "reshards_committed", "Reshards committed", r.committed)?;
        counter(
            &mut e,
            "prepare_timeouts",
            "Reshards committed on the prepare timeout, with frontends still not acknowledging",
            r.prepare_timeouts,
        )?;
        counter(&mut e, "reshards_aborted", "Reshards dropped before their commit", r.aborted)?;
        counter(&mut e, "tables_adopted", "Tables adopted from a node's report (after a restart)", r.adopted)?;
        link_health(&mut e, s)?;
        node_load(&mut e, s)
    }
}

/// The state server's registry.
pub struct Metrics {
    registry: Registry,
    snapshot: Arc<Mutex<Option<Status>>>,
    refused: Arc<Refusals>,
    /// Reshard start (prepare) to commit, observed by the core.
    pub reshard_seconds: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[must_use]
    pub fn new() -> Self {
        let refused = Arc::new(Refusals::default());
        let snapshot = Arc::new(Mutex::new(None));
        // 1 ms to ~65 s: a reshard takes a settle-free prepare round trip, or the prepare timeout.
        let reshard_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let mut registry = Registry::with_prefix("state_server");
        registry.register("reshard_seconds", "Reshard start (Prepare sent) to commit", reshard_seconds.clone());
        registry.register_collector(Box::new(StateCollector { refused: refused.clone(), snapshot: snapshot.clone() }));
        Self { registry, snapshot, refused, reshard_seconds }
    }

    /// The refusal counters, shared with the links.
    #[must_use]
    pub fn refusals(&self) -> Arc<Refusals> {
        self.refused.clone()
    }

    /// The text exposition format, with `status` as the state of the
    /// cluster (`None`: the core is gone; the last snapshot is kept).
    #[must_use]
    pub fn render(&self, status: Option<Status>) -> String {
        if let Some(s) = status {
            *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = Some(s);
        }
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_state::{BrokerStatus, FrontendStatus, ReshardCounters, ReshardStatus, SlotStatus};

    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn status() -> Status {
        let broker = |id: &str, connected, last_seen_ms| BrokerStatus {
            id: id.into(),
            addr: format!("{id}:1"),
            connected,
            last_seen_ms,
            leaving: id == "b2",
            load: None,
        };
        Status {
            epoch: 4,
            slots: vec![SlotStatus { slot: 0, id: "b1".into(), addr: "b1:1".into() }],
            brokers: vec![broker("b1", true, Some(250)), broker("b2", true, Some(10)), broker("b3", false, None)],
            frontends: vec![FrontendStatus {
                id: "f1".into(),
                peer: "p".into(),
                connected: true,
                last_seen_ms: 1500,
                load: Some(protocol::control::NodeLoad { connections: 12, users: 7, channels: 30 }),
            }],
            reshard: Some(ReshardStatus { epoch: 5, waiting_for: vec!["f1".into()], started_ms_ago: 3 }),
            refused_links: 0,
            rebuilding: false,
            reshards: ReshardCounters { started: 5, committed: 4, prepare_timeouts: 1, aborted: 0, adopted: 0 },
        }
    }

    #[test]
    fn a_scrape_shows_nodes_by_role_and_state_the_reshards_and_link_health() {
        let m = Metrics::new();
        m.refusals().count(Refusal::WrongKey);
        m.refusals().count(Refusal::WrongKey);
        m.refusals().count(Refusal::Rejected);
        m.reshard_seconds.observe(0.2);
        let text = m.render(Some(status()));
        assert_eq!(value(&text, "state_server_slot_table_epoch"), 4.0);
        assert_eq!(value(&text, "state_server_slots"), 1.0);
        assert_eq!(value(&text, "state_server_nodes{role=\"broker\",state=\"connected\"}"), 2.0);
        assert_eq!(value(&text, "state_server_nodes{role=\"broker\",state=\"disconnected\"}"), 1.0);
        assert_eq!(value(&text, "state_server_nodes{role=\"frontend\",state=\"connected\"}"), 1.0);
        assert_eq!(value(&text, "state_server_brokers_leaving"), 1.0);
        assert_eq!(value(&text, "state_server_reshard_in_progress"), 1.0);
        assert_eq!(value(&text, "state_server_reshard_waiting_frontends"), 1.0);
        assert_eq!(value(&text, "state_server_reshards_started_total"), 5.0);
        assert_eq!(value(&text, "state_server_reshards_committed_total"), 4.0);
        assert_eq!(value(&text, "state_server_prepare_timeouts_total"), 1.0);
        assert_eq!(value(&text, "state_server_links_refused_total{reason=\"wrong_key\"}"), 2.0);
        assert_eq!(value(&text, "state_server_links_refused_total{reason=\"rejected\"}"), 1.0);
        assert_eq!(value(&text, "state_server_links_refused_total{reason=\"hello_timeout\"}"), 0.0);
        assert_eq!(value(&text, "state_server_node_up{role=\"broker\",node=\"b3\"}"), 0.0);
        assert_eq!(value(&text, "state_server_node_up{role=\"frontend\",node=\"f1\"}"), 1.0);
        assert_eq!(value(&text, "state_server_node_last_seen_seconds{role=\"broker\",node=\"b1\"}"), 0.25);
        assert!(
            !text.contains("state_server_node_last_seen_seconds{role=\"broker\",node=\"b3\"}"),
            "a broker never seen has no last-seen age:\n{text}"
        );
        assert_eq!(value(&text, "state_server_node_connections{role=\"frontend\",node=\"f1\"}"), 12.0);
        assert_eq!(value(&text, "state_server_node_users{role=\"frontend\",node=\"f1\"}"), 7.0);
        assert_eq!(value(&text, "state_server_node_channels{role=\"frontend\",node=\"f1\"}"), 30.0);
        assert!(!text.contains("state_server_node_connections{role=\"broker\""), "no load reported, no row:\n{text}");
        assert_eq!(value(&text, "state_server_reshard_seconds_count"), 1.0);
        assert_eq!(m.refusals().total(), 3);
    }

    #[test]
    fn without_a_snapshot_only_the_counters_and_the_histogram_are_shown() {
        let m = Metrics::new();
        let text = m.render(None);
        assert!(text.contains("state_server_links_refused_total{reason=\"wrong_key\"} 0"), "{text}");
        assert!(text.contains("state_server_reshard_seconds_count 0"), "{text}");
        assert!(!text.contains("state_server_slot_table_epoch"), "{text}");
        // The last snapshot is kept when the core cannot answer.
        let _ = m.render(Some(status()));
        assert_eq!(value(&m.render(None), "state_server_slot_table_epoch"), 4.0);
    }
}
