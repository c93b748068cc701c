//! One node, raw clients: the protocol behaviours a SocketCluster app relies on.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use protocol::Codec;
use serde_json::json;
use support::{Client, TestNode};

#[tokio::test]
async fn a_publish_reaches_subscribers_on_both_codecs_and_is_encoded_once_per_codec() {
    let node = TestNode::default().await;
    let mut json_subs = Vec::new();
    let mut bin_subs = Vec::new();
    for _ in 0..5 {
        let mut c = Client::handshake(node.json, Codec::Json).await;
        c.subscribe("news").await;
        json_subs.push(c);
        let mut b = Client::handshake(node.min_bin, Codec::MinBin).await;
        b.subscribe("news").await;
        bin_subs.push(b);
    }
    let before = node.node.stats.publish_encodes.load(std::sync::atomic::Ordering::Relaxed);
    let mut publisher = Client::handshake(node.json, Codec::Json).await;
    let ack = publisher.invoke("#publish", json!({"channel": "news", "data": {"n": 1, "s": "é"}})).await;
    assert!(ack.get("error").is_none(), "{ack}");
    for c in json_subs.iter_mut().chain(bin_subs.iter_mut()) {
        let p = c.next_event("#publish").await;
        assert_eq!(p["data"], json!({"channel": "news", "data": {"n": 1, "s": "é"}}));
    }
    let after = node.node.stats.publish_encodes.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after - before, 2, "one encode per codec, not per subscriber");
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_kick_out_is_sent() {
    let node = TestNode::default().await;
    let mut a = Client::handshake(node.json, Codec::Json).await;
    a.subscribe("x").await;
    a.subscribe("marker").await;
    let r = a.invoke("#unsubscribe", json!("x")).await;
    assert!(r.get("error").is_none());
    let r = a.invoke("#unsubscribe", json!("x")).await;
    assert_eq!(r["error"]["name"], "InvalidActionError");
    let mut b = Client::handshake(node.json, Codec::Json).await;
    b.invoke("#publish", json!({"channel": "x", "data": 1})).await;
    b.invoke("#publish", json!({"channel": "marker", "data": 2})).await;
    let p = a.next_event("#publish").await;
    assert_eq!(p["data"]["channel"], "marker", "nothing on x after unsubscribe");
}

#[tokio::test]
async fn the_application_can_kick_a_socket_out_of_a_channel() {
    let seen = Arc::new(Mutex::new(None));
    let mut app = frontend::demo_app();
    let s = seen.clone();
    app.handlers.register_fn("whoami", move |ctx, _| {
        *s.lock().unwrap() = Some(ctx.socket.key);
        Ok(None)
    });
    let node = TestNode::start(frontend::Config::for_test(), app).await;
    let mut a = Client::handshake(node.json, Codec::Json).await;
    a.subscribe("room").await;
    a.invoke("whoami", json!(null)).await;
    let key = seen.lock().unwrap().expect("handler ran");
    node.node.registry.kick_out(key, "room", Some("bye".into())).unwrap();
    let k = a.next_event("#kickOut").await;
    assert_eq!(k["data"], json!({"channel": "room", "message": "bye"}));
    assert_eq!(node.node.hub.subscriber_count("room"), 0);
}

#[tokio::test]
async fn a_publisher_subscribed_to_its_channel_gets_its_message_before_the_ack() {
    let node = TestNode::default().await;
    let mut a = Client::handshake(node.min_bin, Codec::MinBin).await;
    a.subscribe("self").await;
    a.send(json!({"event": "#publish", "data": {"channel": "self", "data": "mine"}, "cid": 99})).await;
    let first = a.next_packet().await.unwrap();
    assert_eq!(first["event"], "#publish", "got {first}");
    let second = a.next_packet().await.unwrap();
    assert_eq!(second["rid"], 99);
}

#[tokio::test]
async fn shutdown_spreads_closes_over_the_drain_window() {
    let mut config = frontend::Config::for_test();
    config.drain_window = std::time::Duration::from_millis(600);
    let node = TestNode::start(config, frontend::demo_app()).await;
    let mut clients = Vec::new();
    for _ in 0..60 {
        clients.push(Client::handshake(node.json, Codec::Json).await);
    }
    let t0 = std::time::Instant::now();
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                assert_eq!(c.closed_with().await, 1005);
                t0.elapsed()
            })
        })
        .collect();
    node.stop().await;
    let mut closed_at = Vec::new();
    for w in waits {
        closed_at.push(w.await.unwrap());
    }
    closed_at.sort();
    let spread = closed_at[59] - closed_at[0];
    assert!(spread >= std::time::Duration::from_millis(300), "closes spread over the window: {spread:?}");
}

#[tokio::test]
async fn shutdown_closes_sockets_so_clients_reconnect_at_once() {
    let node = TestNode::default().await;
    let mut a = Client::handshake(node.json, Codec::Json).await;
    node.stop().await;
    assert_eq!(a.closed_with().await, 1005);
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let node = TestNode::default().await;
    let before = scrape(node.json).await;
    let mut a = Client::handshake(node.json, Codec::Json).await;
    a.subscribe("m").await;
    a.subscribe("n").await;
    for i in 0..3 {
        // Our own copy arrives before the ack (and is skipped by `invoke`).
        a.invoke("#publish", json!({"channel": "m", "data": i})).await;
    }
    let r = a.invoke("nope", json!(null)).await;
    assert_eq!(r["error"]["name"], "UnknownEventError");
    let after = scrape(node.json).await;
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    assert_eq!(delta("frontend_handshakes_total"), 1.0);
    assert_eq!(delta("frontend_publishes_in_total"), 3.0);
    assert_eq!(delta("frontend_publish_encodes_total"), 3.0, "one JSON encode per publish");
    assert_eq!(delta("frontend_refused_total{reason=\"unknown_event\"}"), 1.0);
    assert_eq!(delta("frontend_publish_ack_seconds_count"), 3.0);
    assert_eq!(delta("frontend_subscribe_ack_seconds_count"), 2.0);
    assert_eq!(metric(&after, "frontend_sockets"), 1.0);
    assert_eq!(metric(&after, "frontend_subscribed_channels"), 2.0);
}

#[tokio::test]
async fn the_application_can_publish_and_listen_server_side() {
    let node = TestNode::default().await;
    let mut listener = node.node.listen("sys/revocations").await;
    let mut a = Client::handshake(node.json, Codec::Json).await;
    a.subscribe("room/1").await;
    node.node.publish("room/1", Some(json!({"text": "hi"}))).await.unwrap();
    assert_eq!(a.next_event("#publish").await["data"]["data"], json!({"text": "hi"}));
    a.invoke("#publish", json!({"channel": "sys/revocations", "data": {"user": "u1"}})).await;
    let p = tokio::time::timeout(support::WAIT, listener.recv()).await.unwrap().unwrap();
    assert_eq!(p.data, Some(json!({"user": "u1"})));
}
