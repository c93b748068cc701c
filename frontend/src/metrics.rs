//! Prometheus metrics of one node (`GET /metrics`), with `prometheus-client`.
//!
//! Each node owns its registry (no process-wide default registry), so several
//! nodes can share a test process. Counters live where they are counted
//! ([`Stats`], [`UpstreamStats`]) as plain atomics; a collector reads them at
//! scrape time. Latency histograms are `prometheus-client` histograms,
//! observed on the paths they time.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::hub::Hub;
use crate::stats::{Refusal, Stats};
use crate::upstream::Upstream;

/// Latency histograms, observed where the work happens.
#[derive(Clone, Debug)]
pub struct Histograms {
    /// Client `#publish` with a cid: received → acknowledged (in a cluster,
    /// after the owning broker fanned it out).
    pub publish_ack_seconds: Histogram,
    /// Client `#subscribe`: received → acknowledged (in a cluster, after the
    /// owning broker confirmed the first local subscriber's interest).
    pub subscribe_ack_seconds: Histogram,
    /// Reshard prepare: `Prepare` received → `PrepareAck` sent.
    pub reshard_prepare_seconds: Histogram,
}

impl Default for Histograms {
    fn default() -> Self {
        // 50 µs to ~6.5 s.
        let buckets = || Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        Self { publish_ack_seconds: buckets(), subscribe_ack_seconds: buckets(), reshard_prepare_seconds: buckets() }
    }
}

/// Reads the node's counters at scrape time.
struct NodeCollector {
    stats: Arc<Stats>,
    hub: Arc<Hub>,
    upstream: Option<Arc<Upstream>>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCollector")
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

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        gauge(&mut e, "sockets", "Open client sockets", s.sockets_open.load(Ordering::Relaxed))?;
        counter(&mut e, "sockets_accepted", "TCP connections accepted", r(&s.sockets_accepted))?;
        counter(&mut e, "handshakes", "Completed SocketCluster handshakes", r(&s.handshakes))?;
        gauge(
            &mut e,
            "subscribed_channels",
            "Channels with at least one local subscriber",
            self.hub.channel_count() as i64,
        )?;
        counter(&mut e, "publishes_in", "Publishes accepted from clients", r(&s.publishes_in))?;
        counter(&mut e, "packets_out", "Packets written to clients", r(&s.packets_out))?;
        counter(&mut e, "frames_out", "WebSocket messages written to clients (a batch is one)", r(&s.frames_out))?;
        counter(
            &mut e,
            "publish_encodes",
            "Publications encoded for a codec (one per publish per codec)",
            r(&s.publish_encodes),
        )?;
        counter(&mut e, "accept_errors", "Failed accepts (e.g. out of file descriptors)", r(&s.accept_errors))?;
        let c = ConstCounter::new(0u64);
        let mut family =
            e.encode_descriptor("refused", "Inputs refused or sockets closed, by reason", None, c.metric_type())?;
        for why in Refusal::ALL {
            let labels = [("reason", why.name())];
            ConstCounter::new(s.refused(why)).encode(family.encode_family(&labels)?)?;
        }
        if let Some(up) = &self.upstream {
            let u = up.stats();
            counter(&mut e, "upstream_published", "Publishes sent to owning brokers", r(&u.published))?;
            counter(&mut e, "upstream_messages_in", "Messages received from brokers", r(&u.messages_in))?;
            counter(&mut e, "upstream_publish_failures", "Publishes with no live owner", r(&u.publish_failures))?;
            counter(&mut e, "upstream_bad_payloads", "Undecodable payloads from brokers", r(&u.bad_payloads))?;
            counter(
                &mut e,
                "brokers_declared_dead",
                "Brokers this node routed around (link lost or silent)",
                r(&u.brokers_declared_dead),
            )?;
            counter(&mut e, "reshards_prepared", "Reshard prepares handled", r(&u.reshards_prepared))?;
            gauge(&mut e, "slot_table_epoch", "Epoch of the committed slot table", r(&u.epoch) as i64)?;
            let (up_links, known) = up.link_counts();
            gauge(&mut e, "fabric_links_up", "Fabric links to brokers that are up", up_links as i64)?;
            gauge(&mut e, "fabric_links", "Fabric links to brokers this node needs", known as i64)?;
        }
        Ok(())
    }
}

/// The node's registry.
pub struct Metrics {
    registry: Registry,
    pub histograms: Histograms,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    #[must_use]
    pub fn new(stats: Arc<Stats>, hub: Arc<Hub>, upstream: Option<Arc<Upstream>>, histograms: Histograms) -> Self {
        let mut registry = Registry::with_prefix("frontend");
        registry.register_collector(Box::new(NodeCollector { stats, hub, upstream }));
        registry.register(
            "publish_ack_seconds",
            "Client publish (with cid) received to acknowledged",
            histograms.publish_ack_seconds.clone(),
        );
        registry.register(
            "subscribe_ack_seconds",
            "Client subscribe received to acknowledged",
            histograms.subscribe_ack_seconds.clone(),
        );
        registry.register(
            "reshard_prepare_seconds",
            "Reshard Prepare received to PrepareAck sent",
            histograms.reshard_prepare_seconds.clone(),
        );
        Self { registry, histograms }
    }

    /// The text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}
