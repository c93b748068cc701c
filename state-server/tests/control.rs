//! The state server on port 0 against fake brokers and frontends over real TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use protocol::control::{ControlFrame, NodeLoad, Role};
use state_server::Config;
use support::{broker_role, get, hello, ids, FakeNode, TestServer, KEY};

#[tokio::test]
async fn a_wrong_key_is_refused_and_counted_while_a_good_node_still_works() {
    let server = TestServer::default().await;
    let (mut good, table) = FakeNode::join(server.addr, "f1", Role::Frontend, None).await;
    assert_eq!(table.epoch, 0);

    let mut bad = FakeNode::connect(server.addr, "bad", hello("wrong-key", "x", Role::Frontend, None)).await;
    match bad.recv().await {
        Some(ControlFrame::Refused { reason }) => assert!(reason.contains("key"), "{reason}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(bad.recv().await, None, "the link closes");

    let mut old = hello(KEY, "y", Role::Frontend, None);
    if let ControlFrame::Hello { version, .. } = &mut old {
        *version = 99;
    }
    let mut bad = FakeNode::connect(server.addr, "old", old).await;
    assert!(matches!(bad.recv().await, Some(ControlFrame::Refused { reason }) if reason.contains("version")));

    let mut bad = FakeNode::connect(server.addr, "rude", ControlFrame::Leave).await;
    assert!(matches!(bad.recv().await, Some(ControlFrame::Refused { reason }) if reason.contains("Hello")));

    let s = server.wait_status("3 refusals", |s| s["refused_links"] == 3).await;
    assert_eq!(s["frontends"].as_array().unwrap().len(), 1, "refused nodes are not registered: {s}");
    let (status, metrics) = get(server.http, "/metrics").await;
    assert_eq!(status, 200);
    for (reason, n) in [("wrong_key", 1), ("wrong_version", 1), ("not_hello", 1), ("hello_timeout", 0)] {
        let line = format!("state_server_links_refused_total{{reason=\"{reason}\"}} {n}\n");
        assert!(metrics.contains(&line), "no `{}` in\n{metrics}", line.trim());
    }
    assert!(metrics.contains("state_server_nodes{role=\"frontend\",state=\"connected\"} 1\n"), "{metrics}");
    assert!(metrics.contains("state_server_node_up{role=\"frontend\",node=\"f1\"} 1\n"), "{metrics}");

    // The good node still takes part in a reshard.
    let (_b1, _) = FakeNode::join(server.addr, "b1", broker_role("b1"), None).await;
    let t = good.expect_prepare().await;
    good.send(ControlFrame::PrepareAck { epoch: t.epoch });
    assert_eq!(good.expect_commit().await.epoch, 1);
    let (_, metrics) = get(server.http, "/metrics").await;
    for line in [
        "state_server_slot_table_epoch 1\n",
        "state_server_reshards_started_total 1\n",
        "state_server_reshards_committed_total 1\n",
        "state_server_prepare_timeouts_total 0\n",
        "state_server_reshard_seconds_count 1\n",
        "state_server_nodes{role=\"broker\",state=\"connected\"} 1\n",
    ] {
        assert!(metrics.contains(line), "no `{}` in\n{metrics}", line.trim());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_broker_joins_and_is_committed_at_epoch_1_after_the_frontend_prepares() {
    let server = TestServer::default().await;
    let (mut f1, _) = FakeNode::join(server.addr, "f1", Role::Frontend, None).await;
    let (mut b1, _) = FakeNode::join(server.addr, "b1", broker_role("b1"), None).await;

    let prepared = f1.expect_prepare().await;
    assert_eq!(prepared.epoch, 1);
    assert_eq!(ids(&prepared), ["b1"]);
    assert_eq!(prepared.slots[0].addr, "b1.test:9000");
    let s = server.status().await;
    assert_eq!(s["reshard"]["epoch"], 1, "{s}");
    assert_eq!(s["reshard"]["waiting_for"], serde_json::json!(["f1"]), "{s}");
    b1.expect_quiet(Duration::from_millis(200)).await;

    f1.send(ControlFrame::PrepareAck { epoch: 1 });
    assert_eq!(f1.expect_commit().await, prepared);
    assert_eq!(b1.expect_commit().await, prepared);

    // A second broker: epoch 2, in the next slot.
    let (mut b2, table) = FakeNode::join(server.addr, "b2", broker_role("b2"), None).await;
    assert_eq!(table, prepared, "Welcome carries the committed table");
    let prepared = f1.expect_prepare().await;
    assert_eq!((prepared.epoch, ids(&prepared)), (2, vec!["b1", "b2"]));
    f1.send(ControlFrame::PrepareAck { epoch: 2 });
    for n in [&mut f1, &mut b1, &mut b2] {
        assert_eq!(n.expect_commit().await, prepared, "{}", n.name);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_broker_that_disconnects_is_removed_after_grace() {
    let server = TestServer::default().await;
    let (mut f1, _) = FakeNode::join(server.addr, "f1", Role::Frontend, None).await;
    let (b1, _) = FakeNode::join(server.addr, "b1", broker_role("b1"), None).await;
    let (mut b2, _) = FakeNode::join(server.addr, "b2", broker_role("b2"), None).await;
    let t = f1.expect_prepare().await;
    assert_eq!(ids(&t), ["b1", "b2"], "two joins in one settle window: one reshard");
    f1.send(ControlFrame::PrepareAck { epoch: t.epoch });
    f1.expect_commit().await;
    b2.expect_commit().await;

    b1.kill();
    server.wait_status("b1 disconnected", |s| s["brokers"][0]["connected"] == false).await;
    let t = f1.expect_prepare().await;
    assert_eq!((t.epoch, ids(&t)), (2, vec!["b2"]));
    f1.send(ControlFrame::PrepareAck { epoch: 2 });
    assert_eq!(f1.expect_commit().await, t);
    assert_eq!(b2.expect_commit().await, t);
    server.wait_status("b1 forgotten", |s| s["brokers"].as_array().unwrap().len() == 1).await;
    server.stop().await;
}

#[tokio::test]
async fn a_broker_that_reconnects_within_grace_changes_nothing() {
    let mut config = Config::for_test(KEY);
    config.timing.grace = Duration::from_millis(1500);
    let server = TestServer::start(config).await;
    let (mut f1, _) = FakeNode::join(server.addr, "f1", Role::Frontend, None).await;
    let (b1, _) = FakeNode::join(server.addr, "b1", broker_role("b1"), None).await;
    let t = f1.expect_prepare().await;
    f1.send(ControlFrame::PrepareAck { epoch: t.epoch });
    f1.expect_commit().await;

    b1.kill();
    server.wait_status("b1 disconnected", |s| s["brokers"][0]["connected"] == false).await;
    let (_b1, table) = FakeNode::join(server.addr, "b1", broker_role("b1"), Some(t.clone())).await;
    assert_eq!(table, t);
    f1.expect_quiet(Duration::from_millis(2000)).await;
    assert_eq!(server.status().await["epoch"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_graceful_leave_is_committed_and_the_leaver_is_told() {
    let server = TestServer::default().await;
    let (mut f1, _) = FakeNode::join(server.addr, "f1", Role::Frontend, None).await;
    let (mut b1, _) = FakeNode::join(server.addr, "b1", broker_role("b1"), None).await;
    let (_b2, _) = FakeNode::join(server.addr, "b2", broker_role("b2"), None).await;
    let t = f1.expect_prepare().await;
    f1.send(ControlFrame::PrepareAck { epoch: t.epoch });
    f1.expect_commit().await;
    b1.expect_commit().await;

    b1.send(ControlFrame::Leave);
    let t = f1.expect_prepare().await;
    assert_eq!((t.epoch, ids(&t)), (2, vec!["b2"]));
    f1.send(ControlFrame::PrepareAck { epoch: 2 });
    assert_eq!(b1.expect_commit().await, t, "the leaver sees the table without itself");
    let s = server.status().await;
    assert_eq!(s["brokers"][0]["leaving"], true, "{s}");
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_adopts_the_nodes_table_and_moves_nothing() {
    let server = TestServer::default().await;
    let (mut f1, _) = FakeNode::join(server.addr, "f1", Role::Frontend, None).await;
    let (_b1, _) = FakeNode::join(server.addr, "b1", broker_role("b1"), None).await;
    let t1 = f1.expect_prepare().await;
    f1.send(ControlFrame::PrepareAck { epoch: 1 });
    f1.expect_commit().await;
    let (_b2, _) = FakeNode::join(server.addr, "b2", broker_role("b2"), None).await;
    let t2 = f1.expect_prepare().await;
    f1.send(ControlFrame::PrepareAck { epoch: 2 });
    assert_eq!(f1.expect_commit().await, t2);
    assert_eq!(t1.epoch + 1, t2.epoch);
    server.stop().await;
    assert_eq!(f1.recv().await, None, "links close on shutdown");

    let mut config = Config::for_test(KEY);
    config.timing.rebuild_wait = Duration::from_millis(500);
    let server = TestServer::start(config).await;
    assert_eq!(get(server.http, "/ready").await.0, 503, "not ready while rebuilding");
    // Nodes reconnect reporting what they committed; b1 lags an epoch behind.
    let (mut b1, table) = FakeNode::join(server.addr, "b1", broker_role("b1"), Some(t1.clone())).await;
    assert_eq!(table, t1);
    let (mut f1, table) = FakeNode::join(server.addr, "f1", Role::Frontend, Some(t2.clone())).await;
    assert_eq!(table, t2, "the highest epoch wins");
    assert_eq!(b1.expect_commit().await, t2, "a node behind catches up");
    let (mut b2, table) = FakeNode::join(server.addr, "b2", broker_role("b2"), Some(t2.clone())).await;
    assert_eq!(table, t2);
    assert_eq!(server.status().await["rebuilding"], true);

    // Past the rebuild window, grace and settle delays: no change at all.
    for n in [&mut f1, &mut b1, &mut b2] {
        n.expect_quiet(Duration::from_millis(400)).await;
    }
    f1.expect_quiet(Duration::from_millis(800)).await;
    let s = server.status().await;
    assert_eq!(s["epoch"], 2, "{s}");
    assert_eq!(s["rebuilding"], false, "{s}");
    assert!(s["reshard"].is_null(), "{s}");
    assert_eq!(get(server.http, "/ready").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn brokers_of_the_adopted_table_that_never_come_back_are_removed_after_the_window() {
    let mut config = Config::for_test(KEY);
    config.timing.rebuild_wait = Duration::from_millis(300);
    let server = TestServer::start(config).await;
    let old = protocol::slots::SlotTable::default()
        .join(protocol::slots::BrokerInfo { id: "b1".into(), addr: "b1.test:9000".into() })
        .join(protocol::slots::BrokerInfo { id: "gone".into(), addr: "gone.test:9000".into() });
    let (mut f1, _) = FakeNode::join(server.addr, "f1", Role::Frontend, Some(old.clone())).await;
    let (_b1, _) = FakeNode::join(server.addr, "b1", broker_role("b1"), Some(old.clone())).await;
    let t = f1.expect_prepare().await;
    assert_eq!((t.epoch, ids(&t)), (old.epoch + 1, vec!["b1"]));
    server.stop().await;
}

#[tokio::test]
async fn status_json_html_health_and_ready() {
    let server = TestServer::default().await;
    let (mut f1, _) = FakeNode::join(server.addr, "f1", Role::Frontend, None).await;
    let (_b1, _) = FakeNode::join(server.addr, "b1<script>", broker_role("b1"), None).await;
    let t = f1.expect_prepare().await;
    f1.send(ControlFrame::PrepareAck { epoch: t.epoch });
    f1.expect_commit().await;

    let s = server.wait_status("epoch 1", |s| s["epoch"] == 1).await;
    assert_eq!(s["slots"], serde_json::json!([{"slot": 0, "id": "b1<script>", "addr": "b1.test:9000"}]));
    let b = &s["brokers"][0];
    assert_eq!((&b["id"], &b["connected"], &b["leaving"]), (&"b1<script>".into(), &true.into(), &false.into()));
    assert!(b["last_seen_ms"].is_u64(), "{s}");
    let f = &s["frontends"][0];
    assert_eq!(f["id"], "f1");
    assert!(f["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{s}");
    assert_eq!(f["connected"], true);
    assert!(s["reshard"].is_null());
    assert_eq!(s["refused_links"], 0);
    assert_eq!(s["rebuilding"], false);

    let (code, html) = get(server.http, "/").await;
    assert_eq!(code, 200);
    assert!(html.contains("http-equiv=\"refresh\" content=\"2\""), "{html}");
    assert!(html.contains("b1&lt;script&gt;") && !html.contains("<script>"), "{html}");
    assert!(html.contains("f1"));
    assert_eq!(get(server.http, "/health").await.0, 200);
    assert_eq!(get(server.http, "/ready").await.0, 200);
    assert_eq!(get(server.http, "/nope").await.0, 404);
    server.stop().await;
}

#[tokio::test]
async fn a_frontend_that_never_acks_delays_the_commit_only_until_the_prepare_timeout() {
    let mut config = Config::for_test(KEY);
    config.timing.prepare_timeout = Duration::from_millis(400);
    let server = TestServer::start(config).await;
    let (mut f1, _) = FakeNode::join(server.addr, "f1", Role::Frontend, None).await;
    let (mut b1, _) = FakeNode::join(server.addr, "b1", broker_role("b1"), None).await;
    let t = f1.expect_prepare().await;
    let started = tokio::time::Instant::now();
    assert_eq!(b1.expect_commit().await, t);
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(f1.expect_commit().await, t);
    server.stop().await;
}

#[tokio::test]
async fn load_reports_show_in_the_status_and_a_node_can_ask_for_it_on_its_link() {
    let server = TestServer::default().await;
    let (f1, _) = FakeNode::join(server.addr, "f1", Role::Frontend, None).await;
    let load = NodeLoad { connections: 12, users: 3, channels: 40 };
    f1.send(ControlFrame::Load { load });
    // A version-1 node (no load reports, no status requests) is still welcomed beside it.
    let mut v1 = FakeNode::connect(
        server.addr,
        "f-old",
        ControlFrame::Hello {
            key: KEY.into(),
            node: "f-old".into(),
            role: Role::Frontend,
            version: 1,
            committed: None,
        },
    )
    .await;
    assert!(matches!(v1.recv().await, Some(ControlFrame::Welcome { .. })));

    let s = server
        .wait_status("f1's load", |s| {
            s["frontends"].as_array().is_some_and(|f| f.iter().any(|f| f["id"] == "f1" && !f["load"].is_null()))
        })
        .await;
    let f =
        |s: &serde_json::Value, id: &str| s["frontends"].as_array().unwrap().iter().find(|f| f["id"] == id).cloned();
    assert_eq!(f(&s, "f1").unwrap()["load"], serde_json::json!({"connections": 12, "users": 3, "channels": 40}));
    assert_eq!(f(&s, "f-old").unwrap()["load"], serde_json::Value::Null);

    // Over the control link: the same document, answered under the request's id.
    let mut f1 = f1;
    f1.send(ControlFrame::StatusRequest { id: 77 });
    let (id, json) = match f1.recv().await {
        Some(ControlFrame::StatusReply { id, json }) => (id, json),
        other => panic!("expected StatusReply, got {other:?}"),
    };
    assert_eq!(id, 77);
    let over_link: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(f(&over_link, "f1").unwrap()["load"]["connections"], 12);
    assert_eq!(over_link["frontends"].as_array().unwrap().len(), 2);
    assert_eq!(over_link["epoch"], 0);

    // The HTML page shows the counts.
    let (code, html) = get(server.http, "/").await;
    assert_eq!(code, 200);
    assert!(html.contains("<td>12</td><td>3</td><td>40</td>"), "{html}");
    server.stop().await;
}
