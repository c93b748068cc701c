//! Prometheus metrics of one broker (`GET /metrics` on the admin port), with
//! `prometheus-client`, in the same pattern as the frontend's.
//!
//! Each broker owns its registry (no process-wide default registry), so
//! several brokers can share a test process. Counters stay where they are
//! counted ([`Stats`](crate::stats::Stats), plain atomics on the fan-out
//! path); a collector reads them, the interest table's sizes and the
//! membership status at scrape time. The fan-out latency histogram is a
//! `prometheus-client` histogram, observed by the link that handled the
//! publish.
//!
//! The registry holds an `Arc<Node>` while the node does not hold the
//! registry (only the histogram), so there is no reference cycle.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::node::Node;
use crate::stats::{Closure, Refusal};

/// Content type of the exposition, as the frontend serves it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The fan-out latency histogram: a publish frame decoded → its message
/// queued toward the last interested link. 5 µs to ~0.65 s.
#[must_use]
pub fn fanout_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_005, 2.0, 18))
}

/// Reads the broker's counters, interest and status at scrape time.
struct NodeCollector {
    node: Arc<Node>,
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
        let node = &self.node;
        let s = &node.stats;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(&mut e, "links", "Welcomed fabric links open", s.links_open.load(Ordering::Relaxed))?;
        counter(&mut e, "links_accepted", "Fabric connections accepted", r(&s.links_accepted))?;
        counter(&mut e, "links_welcomed", "Fabric links welcomed after a valid Hello", r(&s.links_welcomed))?;
        gauge(&mut e, "channels", "Channels with at least one interested link", node.router.channels() as i64)?;
        gauge(&mut e, "subscriptions", "Interest entries: (link, channel) pairs", node.router.subscriptions() as i64)?;
        counter(&mut e, "publishes_in", "Publish frames received from frontends", r(&s.publishes_in))?;
        counter(
            &mut e,
            "messages_out",
            "Message frames queued toward links (one per interested link per publish)",
            r(&s.messages_out),
        )?;
        counter(&mut e, "frames_out", "Frames of any kind written to links", r(&s.frames_out))?;
        counter(&mut e, "writes", "Write calls on fabric links (one per writer turn)", r(&s.writes))?;
        counter(&mut e, "bytes_in", "Bytes read from welcomed fabric links", r(&s.bytes_in))?;
        counter(&mut e, "bytes_out", "Bytes written to fabric links", r(&s.bytes_out))?;
        counter(&mut e, "accept_errors", "Failed accepts (e.g. out of file descriptors)", r(&s.accept_errors))?;
        counter(
            &mut e,
            "control_sessions",
            "Sessions with the state server that were welcomed",
            r(&s.control_sessions),
        )?;

        let c = ConstCounter::new(0u64);
        let mut family =
            e.encode_descriptor("links_refused", "Fabric links refused at Hello, by reason", None, c.metric_type())?;
        for why in Refusal::ALL {
            ConstCounter::new(s.refused(why)).encode(family.encode_family(&[("reason", why.name())])?)?;
        }
        let mut family = e.encode_descriptor(
            "links_closed",
            "Welcomed fabric links the broker closed, by reason (slow_link: its queue was full)",
            None,
            c.metric_type(),
        )?;
        for why in Closure::ALL {
            ConstCounter::new(s.closed(why)).encode(family.encode_family(&[("reason", why.name())])?)?;
        }

        let st = &node.status;
        gauge(
            &mut e,
            "ready",
            "1 while in service: not leaving, and standalone or in the slot table",
            st.ready().into(),
        )?;
        gauge(&mut e, "leaving", "1 once the broker started leaving (SIGTERM)", st.leaving().into())?;
        gauge(
            &mut e,
            "in_slot_table",
            "1 while the last committed slot table holds this broker",
            st.in_table().into(),
        )?;
        gauge(
            &mut e,
            "state_server_connected",
            "1 while the link to the state server is up and welcomed",
            st.connected().into(),
        )?;
        gauge(&mut e, "slot_table_epoch", "Epoch of the last committed slot table seen", st.epoch() as i64)?;
        Ok(())
    }
}

/// The broker's registry.
pub struct Metrics {
    registry: Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers `node`'s collector and its fan-out histogram.
    #[must_use]
    pub fn new(node: Arc<Node>) -> Self {
        let mut registry = Registry::with_prefix("broker");
        registry.register(
            "fanout_seconds",
            "Publish frame decoded to its message queued toward the last interested link (publishes with at \
             least one target)",
            node.fanout_seconds.clone(),
        );
        registry.register_collector(Box::new(NodeCollector { node }));
        Self { registry }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::interest::LinkId;
    use crate::router::LinkHandle;

    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_exposition_reads_the_counters_interest_and_status_at_scrape_time() {
        let node = Arc::new(Node::new(Config::for_test(), "127.0.0.1:1".into()));
        let metrics = Metrics::new(node.clone());
        let before = metrics.render();
        assert_eq!(value(&before, "broker_publishes_in_total"), 0.0);
        assert_eq!(value(&before, "broker_ready"), 1.0, "standalone: ready");

        node.stats.publishes_in.fetch_add(3, Ordering::Relaxed);
        node.stats.refuse(Refusal::WrongKey);
        node.stats.close(Closure::SlowLink);
        let (h, _rx) = LinkHandle::new(LinkId(1), 4);
        node.router.add_link(h);
        node.router.subscribe(LinkId(1), "a");
        node.router.subscribe(LinkId(1), "b");
        node.fanout_seconds.observe(0.000_1);

        let after = metrics.render();
        assert_eq!(value(&after, "broker_publishes_in_total"), 3.0);
        assert_eq!(value(&after, "broker_links_refused_total{reason=\"wrong_key\"}"), 1.0);
        assert_eq!(value(&after, "broker_links_refused_total{reason=\"hello_timeout\"}"), 0.0);
        assert_eq!(value(&after, "broker_links_closed_total{reason=\"slow_link\"}"), 1.0);
        assert_eq!(value(&after, "broker_channels"), 2.0);
        assert_eq!(value(&after, "broker_subscriptions"), 2.0);
        assert_eq!(value(&after, "broker_fanout_seconds_count"), 1.0);
        assert!(after.contains("# TYPE broker_fanout_seconds histogram"), "{after}");
        assert!(after.contains("# TYPE broker_links gauge"), "{after}");
    }

    #[test]
    fn two_brokers_in_one_process_have_their_own_registries() {
        let a = Arc::new(Node::new(Config::for_test(), "127.0.0.1:1".into()));
        let b = Arc::new(Node::new(Config::for_test(), "127.0.0.1:2".into()));
        let (ma, mb) = (Metrics::new(a.clone()), Metrics::new(b));
        a.stats.publishes_in.fetch_add(5, Ordering::Relaxed);
        assert_eq!(value(&ma.render(), "broker_publishes_in_total"), 5.0);
        assert_eq!(value(&mb.render(), "broker_publishes_in_total"), 0.0);
    }
}
