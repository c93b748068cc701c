//! Frontends are stateless: losing one costs its own clients their
//! connection and nothing else.

use std::time::Duration;

use serde_json::json;
use testkit::{Client, Cluster, LoadGen};

const CHANNELS: usize = 500;
const RATE: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_killed_under_load_costs_subscribers_on_the_other_frontends_no_message() {
    let mut cluster = Cluster::builder().brokers(2).frontends(3).start().await;
    // Publishers on f1, measured subscribers on f2; f0 holds interest in every
    // channel at every broker through an observer, and is killed.
    let load = LoadGen::builder()
        .channels(CHANNELS)
        .rate(RATE)
        .duration(Duration::from_secs(6))
        .publishers(2)
        .subscribers(4)
        .publisher_frontends(vec![1])
        .subscriber_frontends(vec![2])
        .observer_frontends(vec![0])
        .start(&cluster)
        .await;
    load.wait_delivered(RATE, Duration::from_secs(10)).await;
    let observed = load.observers();
    assert!(observed[0].1 > 0, "the observer on f0 receives the load: {observed:?}");

    cluster.kill_frontend(0);
    let t_kill = load.meter().now_us();
    cluster.wait_for_status(Duration::from_secs(10), "f0 seen gone", |s| !s.frontend_connected("f0")).await;
    load.wait_received_since(t_kill, &load.all_channels(), Duration::from_secs(5)).await;
    let observers = load.observers();

    let report = load.finish().await;
    println!("frontend f0 SIGKILL: {report}; observer on f0 {observers:?}");
    assert!(observers[0].2.is_some(), "the observer on the killed frontend lost its connection: {observers:?}");
    report.assert_exact();
    // The brokers forgot the dead frontend's interest: one link per live frontend.
    for b in 0..2 {
        let h = cluster.broker_health(b).await;
        assert_eq!(h["stats"]["links_open"], json!(2), "broker b{b} still links the dead frontend: {h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_restarted_on_its_port_rejoins_and_serves_pub_sub_across_frontends() {
    let mut cluster = Cluster::builder().brokers(2).frontends(2).start().await;
    cluster.kill_frontend(0);
    cluster.wait_for_status(Duration::from_secs(10), "f0 seen gone", |s| !s.frontend_connected("f0")).await;
    cluster.restart_frontend(0).await;
    cluster.wait_in_service(Duration::from_secs(15)).await;

    let mut sub = Client::handshake(&cluster.frontend_url(0)).await.expect("connects to the restarted frontend");
    let channels: Vec<String> = (0..50).map(|i| format!("restart/{i}")).collect();
    sub.subscribe_all(&channels).await.expect("subscribes");
    let mut publisher = Client::handshake(&cluster.frontend_url(1)).await.expect("connects");
    for c in &channels {
        let err = publisher.publish_acked(c, json!({"on": c})).await.expect("publish answered");
        assert!(err.is_none(), "publish to {c} refused: {err:?}");
    }
    let mut got = Vec::new();
    for _ in &channels {
        got.push(sub.next_publish().await.expect("a push").0);
    }
    got.sort();
    let mut want = channels.clone();
    want.sort();
    assert_eq!(got, want, "each channel's message arrives once on the restarted frontend");
}
