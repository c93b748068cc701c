//! Planned reshards under steady load lose nothing: a broker joining, a
//! broker leaving on SIGTERM, and the state server being killed and
//! restarted. Each test runs 500 channels at 5,000 msg/s (publishers on one
//! frontend, subscribers on the other) across the change, and requires every
//! message delivered exactly once and in order.

use std::collections::BTreeSet;
use std::time::Duration;

use protocol::slots::SlotTable;
use testkit::{Cluster, LoadConfig, LoadGen};

const CHANNELS: usize = 500;
const RATE: u64 = 5_000;
/// Time for a reshard to commit once it is triggered (settle, prepare, commit).
const RESHARD_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Channels whose owner differs between two tables.
fn moved(load: &LoadGen, before: &SlotTable, after: &SlotTable) -> Vec<u32> {
    load.channel_names()
        .iter()
        .enumerate()
        .filter(|(_, c)| before.owner(c).map(|b| &b.id) != after.owner(c).map(|b| &b.id))
        .map(|(i, _)| i as u32)
        .collect()
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// One second of steady traffic delivered before the change.
async fn steady(load: &LoadGen) {
    load.wait_delivered(RATE, Duration::from_secs(10)).await;
}

/// Traffic on `channels` published after `t` has been delivered: the new owners carry it.
async fn flowing_since(load: &LoadGen, t: u64, channels: &[u32]) {
    load.wait_received_since(t, channels, Duration::from_secs(5)).await;
}

fn assert_steady_rate(report: &testkit::Report) {
    assert!(report.rate() >= RATE as f64 * 0.9, "the load generator fell behind its rate: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_joining_under_steady_load_loses_duplicates_and_reorders_no_message() {
    let mut cluster = Cluster::builder().brokers(2).frontends(2).start().await;
    let before = cluster.slot_table().await;
    let load = steady_load().start(&cluster).await;
    steady(&load).await;

    let i = cluster.add_broker().await;
    let new_id = cluster.broker_id(i).to_owned();
    let status = cluster
        .wait_for_status(RESHARD_TIMEOUT, "the new broker committed", |s| {
            s.slot_ids() == ids(&["b0", "b1", "b2"]) && s.quiet()
        })
        .await;
    let t_commit = load.meter().now_us();
    let after = status.table();
    assert_eq!(after.epoch, before.epoch + 1, "one reshard, one epoch: {before:?} → {after:?}");
    let moved = moved(&load, &before, &after);
    assert!(!moved.is_empty(), "no channel moved to {new_id}");
    assert!(
        moved.iter().all(|&c| after.owner(&load.channel_names()[c as usize]).is_some_and(|b| b.id == new_id)),
        "a join moves channels only to the new broker"
    );
    flowing_since(&load, t_commit, &moved).await;

    let report = load.finish().await;
    println!("broker join ({} of {CHANNELS} channels moved to {new_id}): {report}", moved.len());
    report.assert_exact();
    assert_steady_rate(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_leaving_on_sigterm_under_steady_load_loses_duplicates_and_reorders_no_message() {
    let mut cluster = Cluster::builder().brokers(3).frontends(2).start().await;
    let before = cluster.slot_table().await;
    let load = steady_load().start(&cluster).await;
    steady(&load).await;

    // Slot 0's broker leaves: its channels and the last slot's move.
    let exit = cluster.stop_broker(0).await;
    assert!(exit.success(), "a graceful leave exits 0, got {exit:?}\n{}", cluster.log("b0"));
    let status = cluster
        .wait_for_status(RESHARD_TIMEOUT, "the leave committed", |s| s.slot_ids() == ids(&["b1", "b2"]) && s.quiet())
        .await;
    let t_commit = load.meter().now_us();
    let after = status.table();
    let moved = moved(&load, &before, &after);
    assert!(!moved.is_empty(), "the leaver's channels moved");
    flowing_since(&load, t_commit, &moved).await;

    let report = load.finish().await;
    println!("broker leave on SIGTERM ({} of {CHANNELS} channels moved): {report}", moved.len());
    report.assert_exact();
    assert_steady_rate(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_server_killed_and_restarted_under_steady_load_loses_nothing_and_moves_no_channel() {
    let mut cluster = Cluster::builder().brokers(2).frontends(2).start().await;
    let before = cluster.status().await;
    let load = steady_load().start(&cluster).await;
    steady(&load).await;

    cluster.kill_state_server();
    // With the state server gone, every channel keeps flowing.
    let t_kill = load.meter().now_us();
    let all: Vec<u32> = (0..CHANNELS as u32).collect();
    flowing_since(&load, t_kill, &all).await;

    cluster.restart_state_server().await;
    let after = cluster.wait_in_service(Duration::from_secs(15)).await;
    assert_eq!(after.epoch, before.epoch, "a restart must not change the epoch: {before:#?} → {after:#?}");
    assert_eq!(after.table(), before.table(), "a restart must not move any channel");
    let t_back = load.meter().now_us();
    flowing_since(&load, t_back, &all).await;

    let report = load.finish().await;
    println!("state server SIGKILL + restart (epoch {} kept): {report}", after.epoch);
    report.assert_exact();
    assert_steady_rate(&report);
    assert_eq!(cluster.epoch().await, before.epoch, "nothing resharded after the restart either");
}
