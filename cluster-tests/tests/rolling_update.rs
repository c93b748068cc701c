//! A rolling update under steady load: every broker, then every frontend, is
//! replaced one at a time, the way a Deployment with `maxSurge: 1,
//! maxUnavailable: 0` does it: start the new node, wait until it is in
//! service, then SIGTERM the old one.
//!
//! - A broker leaves through the two-phase reshard: nothing is lost.
//! - A frontend is first taken out of the load balancer's endpoints (as
//!   Kubernetes takes a terminating pod out of a Service), then drains: its
//!   sockets are closed with 1005 over the drain window, and its clients
//!   reconnect at once to the remaining frontends and resubscribe.
//!
//! What must hold: subscribers that keep their socket lose nothing, and a
//! subscriber that moves loses only what was published while it moved (its
//! gap, see `testkit::meter`); nothing is duplicated or reordered; and at the
//! end every client is connected and subscribed to new nodes only, with
//! every channel flowing. Publishes whose publisher socket was closed before
//! their acknowledgement are unconfirmed (at most once), not counted as lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use testkit::{Cluster, LoadGen};

const CHANNELS: usize = 300;
const RATE: u64 = 3_000;
const PUBLISHERS: usize = 3;
const SUBSCRIBERS: usize = 6;
const DRAIN_WINDOW: Duration = Duration::from_millis(1_000);
/// Longest one replacement may take to settle (join or leave committed, clients back).
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// The whole test, cluster start included.
const TEST_BUDGET: Duration = Duration::from_secs(90);

/// Every subscriber stream has received a message published after now.
async fn flowing(load: &LoadGen) -> Duration {
    let t = load.meter().now_us();
    load.wait_received_since(t, &load.all_channels(), Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_of_every_broker_and_frontend_under_load_loses_nothing_for_clients_that_stay() {
    let started = Instant::now();
    let mut cluster = Cluster::builder().brokers(2).frontends(3).drain_window(DRAIN_WINDOW).start().await;
    // Channel i: publisher on frontend i % 3, subscriber on frontend (i + 1) % 3,
    // so every message crosses the fabric and every frontend holds both kinds of client.
    let load = LoadGen::builder()
        .channels(CHANNELS)
        .rate(RATE)
        .duration(Duration::from_secs(55))
        .publishers(PUBLISHERS)
        .subscribers(SUBSCRIBERS)
        .publisher_frontends(vec![0, 1, 2])
        .subscriber_frontends(vec![1, 2, 0])
        .reconnect(true)
        .start(&cluster)
        .await;
    load.wait_delivered(RATE, Duration::from_secs(10)).await;
    let mut steps = Vec::new();

    // Brokers: a new one joins, then the old one leaves on SIGTERM.
    for old in 0..2 {
        let t0 = Instant::now();
        let old_id = cluster.broker_id(old).to_owned();
        let new = cluster.add_broker().await;
        let new_id = cluster.broker_id(new).to_owned();
        cluster
            .wait_for_status(STEP_TIMEOUT, "the new broker committed", |s| s.slot_ids().contains(&new_id) && s.quiet())
            .await;
        let exit = cluster.stop_broker(old).await;
        assert!(exit.success(), "{old_id}: a graceful leave exits 0, got {exit:?}\n{}", cluster.log(&old_id));
        let status = cluster.wait_in_service(STEP_TIMEOUT).await;
        assert!(!status.slot_ids().contains(&old_id), "{old_id} left the table: {status:?}");
        let resumed = flowing(&load).await;
        steps.push(format!(
            "{old_id} → {new_id} {} ms (flowing {} ms after)",
            t0.elapsed().as_millis(),
            resumed.as_millis()
        ));
    }

    // Frontends: a new one is ready, the load balancer swaps them, the old one drains.
    let mut live: Vec<usize> = vec![0, 1, 2];
    for old in 0..3 {
        let t0 = Instant::now();
        let new = cluster.add_frontend().await;
        live.retain(|&i| i != old);
        live.push(new);
        load.set_endpoints(&cluster, &live);
        let exit = cluster.stop_frontend(old).await;
        let drained = t0.elapsed();
        assert!(exit.success(), "f{old}: a drain exits 0, got {exit:?}\n{}", cluster.log(&format!("f{old}")));
        load.wait_clients_connected(STEP_TIMEOUT).await;
        cluster.wait_in_service(STEP_TIMEOUT).await;
        let resumed = flowing(&load).await;
        steps.push(format!(
            "f{old} → f{new} {} ms (exited after {} ms, flowing {} ms after)",
            t0.elapsed().as_millis(),
            drained.as_millis(),
            resumed.as_millis()
        ));
    }

    // The end state: every client connected and subscribed, on new nodes only.
    flowing(&load).await;
    load.wait_clients_connected(STEP_TIMEOUT).await;
    let status = cluster.status().await;
    let want_brokers: BTreeSet<String> = ["b2", "b3"].map(str::to_owned).into();
    assert_eq!(status.slot_ids(), want_brokers, "{status:?}");
    for f in ["f3", "f4", "f5"] {
        assert!(status.frontend_connected(f), "{f} connected: {status:?}");
    }
    for f in ["f0", "f1", "f2"] {
        assert!(!status.frontend_connected(f), "{f} is gone: {status:?}");
    }
    let mut sockets = 0.0;
    for &i in &live {
        sockets += cluster.scrape_frontend(i).await.value("frontend_sockets");
    }
    assert_eq!(sockets, (PUBLISHERS + SUBSCRIBERS) as f64, "every client is connected to a new frontend");

    let report = load.stop().await;
    println!(
        "FIGURE rolling update (2 brokers, 3 frontends replaced one by one, {CHANNELS} channels at {RATE} msg/s, \
         drain window {} ms): lost outside the moving clients' gaps {}, lost in gaps {} (by {} subscribers that \
         moved, {} reconnections, longest {} ms), unconfirmed publishes {} ({} publisher reconnections); took {} ms\n  \
         steps: {}\n  {report}",
        DRAIN_WINDOW.as_millis(),
        report.lost_outside_gaps(),
        report.lost_in_gaps,
        report.interrupted_subscribers,
        report.subscriber_reconnects,
        report.max_reconnect_gap.as_millis(),
        report.unconfirmed,
        report.publisher_reconnects,
        started.elapsed().as_millis(),
        steps.join("; "),
    );
    assert_eq!(report.lost_outside_gaps(), 0, "a subscriber lost messages while it kept its socket: {report}");
    assert_eq!(
        (report.duplicated, report.out_of_order, report.unexpected, report.refused_publishes),
        (0, 0, 0, 0),
        "{report}"
    );
    assert!(report.publisher_errors.is_empty() && report.subscriber_errors.is_empty(), "clients failed: {report}");
    assert_eq!(report.interrupted_subscribers, SUBSCRIBERS, "every subscriber was on a replaced frontend: {report}");
    assert!(report.publisher_reconnects >= PUBLISHERS as u64, "every publisher moved: {report}");
    assert!(report.delivered > 0 && report.rate() >= RATE as f64 * 0.8, "the load kept its rate: {report}");
    assert!(started.elapsed() < TEST_BUDGET, "took {:?}", started.elapsed());
}
