//! Unplanned broker failures under steady load (500 channels, 5,000 msg/s):
//! the frontends reroute the dead broker's channels on their own, so the loss
//! is bounded and measured. Each test prints its measured loss window and
//! lost count: these are the figures the README quotes.
//!
//! For comparison, SCC on the same kind of setup (shared/reference
//! scc-clustering.md §3.6): SIGKILL ≈ 1.0 s window, 4,269 lost; SIGSTOP ≈ 29.4 s
//! window, 125,433 lost; a broker dying while scc-state is down black-holes
//! its channels until scc-state returns.

use std::collections::BTreeSet;
use std::time::Duration;

use protocol::slots::SlotTable;
use testkit::{Cluster, LoadConfig, LoadGen, Report};

const CHANNELS: usize = 500;
const RATE: u64 = 5_000;
/// Index (and id `b1`) of the broker that fails: a middle slot.
const VICTIM: usize = 1;

fn steady_load() -> LoadConfig {
    LoadGen::builder()
        .channels(CHANNELS)
        .rate(RATE)
        .duration(Duration::from_secs(7))
        .publishers(2)
        .subscribers(4)
        .publisher_frontends(vec![1])
        .subscriber_frontends(vec![0])
}

async fn cluster() -> Cluster {
    Cluster::builder().brokers(3).frontends(2).start().await
}

/// The channels a failure of `victim` moves: its own, and those the last
/// slot's broker gives up when it takes the victim's slot
/// (`SlotTable::without`). Every other channel keeps its owner.
fn moved_by_failure(load: &LoadGen, table: &SlotTable, victim: &str) -> Vec<u32> {
    let after = table.without(&[victim]);
    load.channel_names()
        .iter()
        .enumerate()
        .filter(|(_, c)| table.owner(c).map(|b| &b.id) != after.owner(c).map(|b| &b.id))
        .map(|(i, _)| i as u32)
        .collect()
}

/// Where the losses were: (on the victim's channels, on other moved channels).
fn split_losses(report: &Report, owned: &[u32]) -> (u64, u64) {
    let owned: BTreeSet<u32> = owned.iter().copied().collect();
    report.lost_by_channel.iter().fold((0, 0), |(a, b), (c, n)| if owned.contains(c) { (a + n, b) } else { (a, b + n) })
}

/// Prints the figures the README quotes.
fn figure(what: &str, report: &Report, owned: &[u32], moved: &[u32], resumed: Duration) {
    let (on_owned, on_moved) = split_losses(report, owned);
    println!(
        "FIGURE {what}: loss window {} ms, {} messages lost on {} channels ({on_owned} on the {} channels of the \
         failed broker, {on_moved} on the {} channels the last slot's broker handed over); delivery resumed on every \
         channel of the failed broker {} ms after the fault\n  {report}",
        report.loss_window_len().as_millis(),
        report.lost,
        report.lost_channels,
        owned.len(),
        moved.len() - owned.len(),
        resumed.as_millis(),
    );
}

/// Channels that keep their owner lose nothing, and nothing is duplicated
/// or lost to a failed socket.
fn assert_losses_only_on(report: &Report, moved: &[u32]) {
    let moved: BTreeSet<u32> = moved.iter().copied().collect();
    let elsewhere: Vec<_> = report.lost_by_channel.iter().filter(|(c, _)| !moved.contains(c)).collect();
    assert!(elsewhere.is_empty(), "channels that kept their owner lost messages ({elsewhere:?}): {report}");
    assert_eq!(report.duplicated, 0, "{report}");
    assert_eq!(report.unexpected, 0, "{report}");
    assert!(report.publisher_errors.is_empty() && report.subscriber_errors.is_empty(), "sockets failed: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_with_sigkill_under_load_loses_messages_for_less_than_one_second() {
    let mut cluster = cluster().await;
    let table = cluster.slot_table().await;
    let load = steady_load().start(&cluster).await;
    let owned = load.channels_owned_by(&table, cluster.broker_id(VICTIM));
    let moved = moved_by_failure(&load, &table, cluster.broker_id(VICTIM));
    assert!(!owned.is_empty() && owned.iter().all(|c| moved.contains(c)));
    load.wait_delivered(RATE, Duration::from_secs(10)).await;

    let t_kill = load.meter().now_us();
    cluster.kill_broker(VICTIM);
    let resumed = load.wait_received_since(t_kill, &owned, Duration::from_secs(5)).await;
    cluster
        .wait_for_status(Duration::from_secs(10), "the dead broker removed", |s| {
            s.slot_ids().len() == 2 && !s.slot_ids().contains("b1") && s.quiet()
        })
        .await;

    let report = load.finish().await;
    figure("broker SIGKILL", &report, &owned, &moved, resumed);
    assert_losses_only_on(&report, &moved);
    assert!(report.loss_window_len() < Duration::from_secs(1), "loss window must be under 1 s: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_frozen_with_sigstop_under_load_has_its_traffic_rerouted_within_five_seconds() {
    let mut cluster = cluster().await;
    let table = cluster.slot_table().await;
    let load = steady_load().start(&cluster).await;
    let owned = load.channels_owned_by(&table, cluster.broker_id(VICTIM));
    let moved = moved_by_failure(&load, &table, cluster.broker_id(VICTIM));
    assert!(!owned.is_empty() && owned.iter().all(|c| moved.contains(c)));
    load.wait_delivered(RATE, Duration::from_secs(10)).await;

    let t_stop = load.meter().now_us();
    cluster.pause_broker(VICTIM);
    let resumed = load.wait_received_since(t_stop, &owned, Duration::from_secs(5)).await;

    let report = load.finish().await;
    figure("broker SIGSTOP", &report, &owned, &moved, resumed);
    assert_losses_only_on(&report, &moved);
    assert!(resumed < Duration::from_secs(5), "rerouted after {resumed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_while_the_state_server_is_down_has_its_traffic_rerouted() {
    let mut cluster = cluster().await;
    let before = cluster.status().await;
    let table = before.table();
    let load = steady_load().start(&cluster).await;
    let owned = load.channels_owned_by(&table, cluster.broker_id(VICTIM));
    let moved = moved_by_failure(&load, &table, cluster.broker_id(VICTIM));
    assert!(!owned.is_empty() && owned.iter().all(|c| moved.contains(c)));
    load.wait_delivered(RATE, Duration::from_secs(10)).await;

    cluster.kill_state_server();
    let t_kill = load.meter().now_us();
    cluster.kill_broker(VICTIM);
    let resumed = load.wait_received_since(t_kill, &owned, Duration::from_secs(5)).await;

    // The state server comes back to the table the frontends already route by.
    cluster.restart_state_server().await;
    let after = cluster.wait_in_service(Duration::from_secs(15)).await;
    assert_eq!(
        after.table().slots,
        table.without(&["b1"]).slots,
        "the committed table is the one the frontends computed"
    );

    let report = load.finish().await;
    figure("broker SIGKILL while the state server is down", &report, &owned, &moved, resumed);
    assert_losses_only_on(&report, &moved);
    assert!(resumed < Duration::from_secs(5), "rerouted after {resumed:?}");
}
