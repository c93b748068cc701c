//! Every node's `/metrics` counts what happened: a scrape of every node
//! (frontends on their JSON port, brokers on their admin port, the state
//! server on its HTTP port), a small exact load (one subscriber, N
//! acknowledged publishes on one channel from another frontend), one bad
//! input per node, then a second scrape; the counters moved by exactly the
//! expected amounts, and the gauges agree with each other and with the state
//! server's `/status`.

use std::time::Duration;

use protocol::control::{self, ControlFrame, Role};
use protocol::fabric::{self, FabricFrame};
use serde_json::json;
use testkit::{wait_until, Client, Cluster, RawPeer, Read, Scrape};

const N: u64 = 50;
const CHANNEL: &str = "metrics/exact";
const WAIT: Duration = Duration::from_secs(5);

struct Scrapes {
    frontends: Vec<Scrape>,
    brokers: Vec<Scrape>,
    state: Scrape,
}

async fn scrape_all(cluster: &Cluster) -> Scrapes {
    let mut frontends = Vec::new();
    for i in 0..cluster.frontend_count() {
        frontends.push(cluster.scrape_frontend(i).await);
    }
    let mut brokers = Vec::new();
    for i in 0..cluster.broker_count() {
        brokers.push(cluster.scrape_broker(i).await);
    }
    Scrapes { frontends, brokers, state: cluster.scrape_state_server().await }
}

/// Asserts `after[series] - before[series] == want`, naming the node.
fn assert_delta(node: &str, before: &Scrape, after: &Scrape, series: &str, want: f64) {
    let got = after.delta(before, series);
    assert_eq!(got, want, "{node}: {series} moved by {got}, want {want}\nbefore:\n{before}\nafter:\n{after}");
}

fn assert_value(node: &str, scrape: &Scrape, series: &str, want: f64) {
    let got = scrape.value(series);
    assert_eq!(got, want, "{node}: {series} is {got}, want {want}\n{scrape}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_s_metrics_move_by_exactly_what_a_small_load_and_one_bad_input_per_node_did() {
    let cluster = Cluster::builder().brokers(2).frontends(2).start().await;
    let status = cluster.status().await;
    let owner_id = status.table().owner(CHANNEL).expect("an owner").id.clone();
    let owner = (0..2).find(|&i| cluster.broker_id(i) == owner_id).expect("the owner is one of ours");
    let other = 1 - owner;
    let (sub_fe, pub_fe) = (0, 1);
    let before = scrape_all(&cluster).await;

    // The load: one subscriber on f0, N acknowledged publishes from f1.
    let mut sub = Client::handshake(&cluster.frontend_url(sub_fe)).await.expect("subscriber connects");
    sub.subscribe(CHANNEL).await.expect("subscribes");
    let mut publisher = Client::handshake(&cluster.frontend_url(pub_fe)).await.expect("publisher connects");
    for i in 0..N {
        let err = publisher.publish_acked(CHANNEL, json!({"i": i})).await.expect("publish answered");
        assert!(err.is_none(), "publish {i} refused: {err:?}");
    }
    for i in 0..N {
        let (channel, data) = sub.next_publish().await.expect("a push");
        assert_eq!((channel.as_str(), &data), (CHANNEL, &json!({"i": i})), "in order, once each");
    }

    // One bad input per node: a wrong cluster key on a broker's fabric port and on
    // the state server's control port, an undecodable frame on a frontend.
    let mut peer = RawPeer::connect(cluster.broker_fabric(owner)).await.expect("connects");
    let hello = FabricFrame::Hello { key: "not-the-key".into(), node: "intruder".into(), version: fabric::VERSION };
    peer.send(&hello).await.expect("sends Hello");
    let answer = peer.recv::<FabricFrame>(WAIT).await.expect("an answer");
    assert!(matches!(answer, Read::Frame(FabricFrame::Refused { .. })), "{answer:?}");
    let mut peer = RawPeer::connect(cluster.state_control()).await.expect("connects");
    let hello = ControlFrame::Hello {
        key: "not-the-key".into(),
        node: "intruder".into(),
        role: Role::Frontend,
        version: control::VERSION,
        committed: None,
    };
    peer.send(&hello).await.expect("sends Hello");
    let answer = peer.recv::<ControlFrame>(WAIT).await.expect("an answer");
    assert!(matches!(answer, Read::Frame(ControlFrame::Refused { .. })), "{answer:?}");
    let mut bad = Client::handshake(&cluster.frontend_url(pub_fe)).await.expect("connects");
    bad.send_text("{not json".into()).await.expect("sends");
    assert!(bad.next_packet_within(WAIT).await.expect("closes in time").is_none(), "closed for a bad frame");
    // The frontend counts the bad socket as closed once its close handshake is over.
    wait_until(WAIT, Duration::from_millis(20), || async {
        let s = cluster.scrape_frontend(pub_fe).await;
        let n = s.value("frontend_sockets");
        if n == 1.0 {
            Ok(())
        } else {
            Err(format!("f1 frontend_sockets = {n}"))
        }
    })
    .await;

    let after = scrape_all(&cluster).await;
    let (fb, fa) = (&before.frontends, &after.frontends);
    let (bb, ba) = (&before.brokers, &after.brokers);
    let n = N as f64;

    // Frontends: what the publisher sent in on f1, what came out to the subscriber on f0.
    assert_delta("f1", &fb[pub_fe], &fa[pub_fe], "frontend_publishes_in_total", n);
    assert_delta("f1", &fb[pub_fe], &fa[pub_fe], "frontend_upstream_published_total", n);
    assert_delta("f1", &fb[pub_fe], &fa[pub_fe], "frontend_publish_ack_seconds_count", n);
    assert_delta("f1", &fb[pub_fe], &fa[pub_fe], "frontend_upstream_messages_in_total", 0.0);
    assert_delta("f0", &fb[sub_fe], &fa[sub_fe], "frontend_upstream_messages_in_total", n);
    assert_delta("f0", &fb[sub_fe], &fa[sub_fe], "frontend_publishes_in_total", 0.0);
    assert_delta("f0", &fb[sub_fe], &fa[sub_fe], "frontend_subscribe_ack_seconds_count", 1.0);
    assert_delta("f0", &fb[sub_fe], &fa[sub_fe], "frontend_subscribed_channels", 1.0);
    assert_delta("f0", &fb[sub_fe], &fa[sub_fe], "frontend_handshakes_total", 1.0);
    assert_delta("f1", &fb[pub_fe], &fa[pub_fe], "frontend_handshakes_total", 2.0);
    assert_delta("f1", &fb[pub_fe], &fa[pub_fe], "frontend_refused_total{reason=\"malformed_frame\"}", 1.0);
    assert_delta("f0", &fb[sub_fe], &fa[sub_fe], "frontend_refused_total{reason=\"malformed_frame\"}", 0.0);
    for (i, f) in fa.iter().enumerate() {
        let node = format!("f{i}");
        assert_delta(&node, &fb[i], f, "frontend_upstream_publish_failures_total", 0.0);
        assert_delta(&node, &fb[i], f, "frontend_brokers_declared_dead_total", 0.0);
    }

    // Brokers: every publish went through the channel's owner, once, and out to f0's link only.
    let sum = |s: &[Scrape], series: &str, t: &[Scrape]| -> f64 {
        s.iter().zip(t).map(|(a, b)| a.delta(b, series)).sum::<f64>()
    };
    assert_eq!(sum(ba, "broker_publishes_in_total", bb), n, "publishes in over every broker");
    assert_delta(&owner_id, &bb[owner], &ba[owner], "broker_publishes_in_total", n);
    assert_delta(&owner_id, &bb[owner], &ba[owner], "broker_messages_out_total", n);
    assert_delta(&owner_id, &bb[owner], &ba[owner], "broker_fanout_seconds_count", n);
    assert_delta(&owner_id, &bb[owner], &ba[owner], "broker_channels", 1.0);
    assert_delta(&owner_id, &bb[owner], &ba[owner], "broker_subscriptions", 1.0);
    assert!(ba[owner].delta(&bb[owner], "broker_bytes_in_total") > 0.0, "bytes in counted");
    assert!(ba[owner].delta(&bb[owner], "broker_bytes_out_total") > 0.0, "bytes out counted");
    let other_id = cluster.broker_id(other).to_owned();
    assert_delta(&other_id, &bb[other], &ba[other], "broker_publishes_in_total", 0.0);
    assert_delta(&other_id, &bb[other], &ba[other], "broker_messages_out_total", 0.0);
    assert_delta(&other_id, &bb[other], &ba[other], "broker_subscriptions", 0.0);
    assert_delta(&owner_id, &bb[owner], &ba[owner], "broker_links_refused_total{reason=\"wrong_key\"}", 1.0);
    assert_delta(&other_id, &bb[other], &ba[other], "broker_links_refused_total{reason=\"wrong_key\"}", 0.0);
    assert_eq!(sum(ba, "broker_links_closed_total{reason=\"slow_link\"}", bb), 0.0);

    // The state server: the wrong key, by reason; nothing resharded meanwhile.
    let (sb, sa) = (&before.state, &after.state);
    assert_delta("state server", sb, sa, "state_server_links_refused_total{reason=\"wrong_key\"}", 1.0);
    assert_delta("state server", sb, sa, "state_server_links_refused_total{reason=\"not_hello\"}", 0.0);
    assert_delta("state server", sb, sa, "state_server_reshards_started_total", 0.0);

    // Gauges agree with each other and with /status: links up, membership, the epoch.
    let status = cluster.status().await;
    let epoch = status.epoch as f64;
    assert!(epoch >= 1.0, "{status:?}");
    assert_value("state server", sa, "state_server_slot_table_epoch", epoch);
    assert_value("state server", sa, "state_server_slots", 2.0);
    assert_value("state server", sa, "state_server_nodes{role=\"broker\",state=\"connected\"}", 2.0);
    assert_value("state server", sa, "state_server_nodes{role=\"frontend\",state=\"connected\"}", 2.0);
    assert_value("state server", sa, "state_server_nodes{role=\"broker\",state=\"disconnected\"}", 0.0);
    assert_value("state server", sa, "state_server_reshard_in_progress", 0.0);
    assert_value("state server", sa, "state_server_prepare_timeouts_total", 0.0);
    let committed = sa.value("state_server_reshards_committed_total");
    assert!(committed >= 1.0, "the brokers' joins were committed: {sa}");
    assert_value("state server", sa, "state_server_reshard_seconds_count", committed);
    for i in 0..2 {
        for (role, id) in [("broker", cluster.broker_id(i)), ("frontend", cluster.frontend_id(i))] {
            assert_value("state server", sa, &format!("state_server_node_up{{role=\"{role}\",node=\"{id}\"}}"), 1.0);
        }
    }
    for (i, f) in fa.iter().enumerate() {
        let node = format!("f{i}");
        assert_value(&node, f, "frontend_slot_table_epoch", epoch);
        assert_value(&node, f, "frontend_fabric_links_up", 2.0);
        assert_value(&node, f, "frontend_fabric_links", 2.0);
        assert_value(&node, f, "frontend_sockets", 1.0);
    }
    for (i, b) in ba.iter().enumerate() {
        let node = cluster.broker_id(i).to_owned();
        assert_value(&node, b, "broker_slot_table_epoch", epoch);
        assert_value(&node, b, "broker_links", 2.0);
        assert_value(&node, b, "broker_ready", 1.0);
        assert_value(&node, b, "broker_in_slot_table", 1.0);
        assert_value(&node, b, "broker_leaving", 0.0);
        assert_value(&node, b, "broker_state_server_connected", 1.0);
    }
    println!(
        "FIGURE metrics: {N} publishes counted in on f1 ({}), on {owner_id} ({}), out to f0 ({}); epoch {epoch} on \
         every node; {committed} reshards committed",
        fa[pub_fe].value("frontend_publishes_in_total"),
        ba[owner].value("broker_publishes_in_total"),
        fa[sub_fe].value("frontend_upstream_messages_in_total"),
    );
}
