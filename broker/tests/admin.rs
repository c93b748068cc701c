//! The admin port of a standalone broker, its graceful stop, and the ports file.

mod support;

use std::time::{Duration, Instant};

use broker::{Broker, Config};
use protocol::fabric::FabricFrame;
use support::{http_get, message, publish, TestBroker, WAIT};

#[tokio::test]
async fn a_standalone_broker_is_healthy_and_ready() {
    let b = TestBroker::default().await;
    let mut link = b.link().await;
    link.subscribe("c").await;

    let (status, body) = http_get(b.admin, "/health").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["node"], b.id.as_str());
    assert_eq!(health["ready"], true);
    assert_eq!(health["standalone"], true);
    assert_eq!(health["subscriptions"], 1);
    assert_eq!(health["stats"]["links_open"], 1);
    assert_eq!(health["stats"]["refused_links"]["wrong_key"], 0);
    assert_eq!(health["stats"]["closed_links"]["slow_link"], 0);

    assert_eq!(http_get(b.admin, "/ready").await.0, 200);
    let (status, metrics) = http_get(b.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("broker_links_refused_total{reason=\"wrong_key\"} 0"), "{metrics}");
    assert_eq!(http_get(b.admin, "/nope").await.0, 404);
}

#[tokio::test]
async fn a_stopping_standalone_broker_turns_unready_serves_through_the_drain_then_closes_links() {
    let drain = Duration::from_millis(500);
    let mut b = TestBroker::start(Config { leave_drain: drain, ..Config::for_test() }).await;
    let mut link = b.link().await;
    link.subscribe("c").await;
    let task = b.task();

    let stopped_at = Instant::now();
    b.shutdown.cancel();
    let (status, body) = http_get(b.admin, "/ready").await;
    assert_eq!((status, body.as_str()), (503, "leaving\n"));
    link.send(&publish("c", b"draining", Some(1))).await;
    assert_eq!(link.recv().await, message("c", b"draining"));
    assert_eq!(link.recv().await, FabricFrame::PublishAck { id: 1 });

    tokio::time::timeout(WAIT, task).await.expect("stops after the drain").unwrap();
    assert!(stopped_at.elapsed() >= drain, "stopped after {:?}", stopped_at.elapsed());
    assert!(link.until_closed().await.is_empty());
}

#[tokio::test]
async fn the_ports_file_holds_the_bound_addresses() {
    let b = Broker::bind(Config::for_test()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("broker-ports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ports.json");
    b.write_ports_file(&path).unwrap();
    let ports: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(ports["fabric"], b.fabric_addr().to_string());
    assert_eq!(ports["admin"], b.admin_addr().to_string());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_killed_broker_closes_its_links_at_once_even_while_draining() {
    let config = Config { leave_drain: Duration::from_secs(30), ..Config::for_test() };
    let b = Broker::bind(config).await.unwrap();
    let fabric = b.fabric_addr();
    let (shutdown, kill) = (tokio_util::sync::CancellationToken::new(), tokio_util::sync::CancellationToken::new());
    let task = tokio::spawn(b.run_until(shutdown.clone(), kill.clone()));
    let mut link = support::Link::welcomed(fabric, "test-key").await;
    link.subscribe("c").await;
    shutdown.cancel();
    link.send(&FabricFrame::Ping).await;
    assert_eq!(link.recv().await, FabricFrame::Pong, "still serving while draining");
    let killed_at = Instant::now();
    kill.cancel();
    tokio::time::timeout(WAIT, task).await.expect("stops at once").unwrap();
    assert!(killed_at.elapsed() < Duration::from_secs(2), "took {:?}", killed_at.elapsed());
    assert!(link.until_closed().await.is_empty());
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test]
async fn metrics_count_fabric_traffic_refusals_and_interest() {
    let b = TestBroker::default().await;
    let (_, before) = http_get(b.admin, "/metrics").await;
    let mut sub_a = b.link().await;
    let mut sub_b = b.link().await;
    sub_a.subscribe("m").await;
    sub_b.subscribe("m").await;
    sub_b.subscribe("n").await;
    let mut publisher = b.link().await;
    for i in 1..=3 {
        publisher.send(&publish("m", b"x", Some(i))).await;
        assert_eq!(publisher.recv().await, FabricFrame::PublishAck { id: i });
    }
    publisher.send(&publish("nobody", b"x", Some(9))).await;
    assert_eq!(publisher.recv().await, FabricFrame::PublishAck { id: 9 });
    let mut wrong = support::Link::connect(b.fabric).await;
    wrong.hello("not-the-key").await;
    assert!(matches!(wrong.recv().await, FabricFrame::Refused { .. }));

    let (status, after) = http_get(b.admin, "/metrics").await;
    assert_eq!(status, 200);
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    assert_eq!(delta("broker_publishes_in_total"), 4.0);
    assert_eq!(delta("broker_messages_out_total"), 6.0, "3 publishes × 2 interested links");
    assert_eq!(delta("broker_fanout_seconds_count"), 3.0, "publishes with no target are not timed");
    assert_eq!(delta("broker_links_refused_total{reason=\"wrong_key\"}"), 1.0);
    assert_eq!(delta("broker_links_welcomed_total"), 3.0);
    assert!(delta("broker_bytes_in_total") > 0.0 && delta("broker_bytes_out_total") > 0.0, "{after}");
    assert_eq!(metric(&after, "broker_links"), 3.0);
    assert_eq!(metric(&after, "broker_channels"), 2.0);
    assert_eq!(metric(&after, "broker_subscriptions"), 3.0);
    assert_eq!(metric(&after, "broker_ready"), 1.0);
    assert_eq!(metric(&after, "broker_leaving"), 0.0);
    assert_eq!(metric(&after, "broker_links_closed_total{reason=\"slow_link\"}"), 0.0);
}
