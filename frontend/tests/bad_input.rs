//! One node, raw clients sending what no real client would: every bad input
//! gets the documented reply error or close code, is counted, and leaves the
//! node serving other sockets.

mod support;

use std::time::Duration;

use frontend::stats::Refusal;
use frontend::Config;
use futures_util::{SinkExt, StreamExt};
use protocol::{codes, limits, Codec};
use serde_json::{json, Value};
use support::{Client, TestNode, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// A node on `Config::for_test()` changed by `tweak`, with the demo RPCs (`echo`, `fail`).
async fn node_with(tweak: impl FnOnce(&mut Config)) -> TestNode {
    let mut config = Config::for_test();
    tweak(&mut config);
    TestNode::start(config, frontend::demo_app()).await
}

fn refused(node: &TestNode, why: Refusal) -> u64 {
    node.node.stats.refused(why)
}

fn total_refused(node: &TestNode) -> u64 {
    Refusal::ALL.iter().map(|w| refused(node, *w)).sum()
}

/// Sends a packet that carries a numeric `cid` and waits for its reply.
async fn reply_to(c: &mut Client, packet: Value) -> Value {
    let cid = packet["cid"].as_u64().expect("packet has a numeric cid");
    c.send(packet).await;
    c.next_matching(|p| p["rid"] == cid).await
}

/// The `error.name` of a reply, failing if the reply is not an error.
fn error_name(reply: &Value) -> &str {
    reply["error"]["name"].as_str().unwrap_or_else(|| panic!("expected an error reply, got {reply}"))
}

/// Proves the socket still answers invokes.
async fn assert_usable(c: &mut Client) {
    let r = c.invoke("echo", json!("still usable")).await;
    assert_eq!(r["data"], "still usable", "socket no longer usable: {r}");
}

/// A fresh handshaken client sends `m` and waits for the server to close it.
async fn close_code_after(addr: std::net::SocketAddr, codec: Codec, m: Message) -> u16 {
    let mut c = Client::handshake(addr, codec).await;
    c.send_raw(m).await;
    c.closed_with().await
}

fn json_frame(v: &Value) -> Message {
    Message::text(v.to_string())
}

fn min_bin_frame(v: &Value) -> Message {
    Message::Binary(Bytes::from(support::min_bin_encode(v)))
}

// 1. Frame size.

#[tokio::test]
async fn a_frame_over_the_size_limit_is_closed_with_1009_on_both_codecs() {
    let node = node_with(|c| c.limits.max_frame_bytes = 1024).await;
    let big = json!({"event": "echo", "data": "x".repeat(2000), "cid": 7});

    let mut text = Client::handshake(node.json, Codec::Json).await;
    let under = text.invoke("echo", json!("y".repeat(900))).await;
    assert!(under.get("error").is_none(), "a frame under the limit is served: {under}");
    text.send_raw(json_frame(&big)).await;
    assert_eq!(text.closed_with().await, codes::MESSAGE_TOO_BIG.code);
    assert_eq!(refused(&node, Refusal::FrameTooBig), 1);

    let code = close_code_after(node.min_bin, Codec::MinBin, min_bin_frame(&big)).await;
    assert_eq!(code, codes::MESSAGE_TOO_BIG.code);
    assert_eq!(refused(&node, Refusal::FrameTooBig), 2);

    // Fragments each under the limit that add up to a message over it.
    let mut frag = Client::handshake(node.json, Codec::Json).await;
    let payload = big.to_string().into_bytes();
    let parts: Vec<&[u8]> = payload.chunks(700).collect();
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 { OpCode::Data(OpData::Text) } else { OpCode::Data(OpData::Continue) };
        let frame = Frame::message(Bytes::copy_from_slice(part), opcode, i + 1 == parts.len());
        frag.ws.feed(Message::Frame(frame)).await.expect("feed a fragment");
    }
    frag.ws.flush().await.expect("flush");
    assert_eq!(frag.closed_with().await, codes::MESSAGE_TOO_BIG.code);
    assert_eq!(refused(&node, Refusal::FrameTooBig), 3);
    node.assert_still_serves().await;
}

// 2. Channel name length.

#[tokio::test]
async fn a_channel_name_over_the_limit_gets_limit_exceeded_on_subscribe_and_publish() {
    let node = node_with(|c| c.limits.max_channel_name_bytes = 16).await;
    let mut c = Client::handshake(node.json, Codec::Json).await;
    let long = "c".repeat(17);
    let r = reply_to(&mut c, json!({"event": "#subscribe", "data": {"channel": long}, "cid": 20})).await;
    assert_eq!(error_name(&r), "LimitExceededError");
    assert_eq!(r["error"]["limit"], 16);
    let r = reply_to(&mut c, json!({"event": "#publish", "data": {"channel": long, "data": 1}, "cid": 21})).await;
    assert_eq!(error_name(&r), "LimitExceededError");
    assert_eq!(refused(&node, Refusal::LimitExceeded), 2);
    assert_eq!(node.node.hub.subscriber_count(&long), 0);
    // Exactly at the limit is fine.
    c.subscribe(&"c".repeat(16)).await;
    assert_usable(&mut c).await;
    assert_eq!(refused(&node, Refusal::LimitExceeded), 2);
    node.assert_still_serves().await;
}

// 3. Subscription count.

#[tokio::test]
async fn a_subscription_over_the_limit_is_refused_and_earlier_ones_still_deliver() {
    let node = node_with(|c| c.limits.max_subscriptions = 3).await;
    let mut c = Client::handshake(node.min_bin, Codec::MinBin).await;
    for ch in ["a", "b", "c"] {
        c.subscribe(ch).await;
    }
    let r = c.invoke("#subscribe", json!({"channel": "d"})).await;
    assert_eq!(error_name(&r), "LimitExceededError");
    assert_eq!(r["error"]["limit"], 3);
    assert_eq!(refused(&node, Refusal::LimitExceeded), 1);
    // Subscribing again to a channel it has is not a new subscription.
    c.subscribe("a").await;
    assert_eq!(refused(&node, Refusal::LimitExceeded), 1);
    assert_eq!(node.node.hub.subscriber_count("d"), 0);

    let mut publisher = Client::handshake(node.json, Codec::Json).await;
    for ch in ["d", "a", "b", "c"] {
        let ack = publisher.invoke("#publish", json!({"channel": ch, "data": ch})).await;
        assert!(ack.get("error").is_none(), "{ack}");
    }
    for ch in ["a", "b", "c"] {
        let p = c.next_event("#publish").await;
        assert_eq!(p["data"], json!({"channel": ch, "data": ch}), "nothing on d, then a, b, c in order");
    }
    node.assert_still_serves().await;
}

// 4. Inbound rate.

#[tokio::test]
async fn invokes_over_the_inbound_rate_get_rate_limit_errors_and_a_flooder_is_closed_with_4103() {
    let rate = 20u32;
    let node = node_with(|c| c.limits.inbound_rate = rate).await;
    let mut c = Client::handshake(node.json, Codec::Json).await;

    // One frame of 30 invokes: the handshake took one token of the burst of 20.
    let batch: Vec<Value> = (100..130).map(|cid| json!({"event": "echo", "data": cid, "cid": cid})).collect();
    c.send(Value::Array(batch)).await;
    let mut served = 0;
    let mut limited = 0;
    for cid in 100..130 {
        let p = c.next_packet().await.expect("a reply");
        assert_eq!(p["rid"], cid, "replies in order");
        if p.get("error").is_some() {
            assert_eq!(error_name(&p), "RateLimitError");
            limited += 1;
        } else {
            assert_eq!(limited, 0, "once refused, the rest of the burst is refused too: {p}");
            assert_eq!(p["data"], cid);
            served += 1;
        }
    }
    assert!((rate - 1..=rate).contains(&served), "the burst is the rate minus the handshake, served {served}");
    assert_eq!(refused(&node, Refusal::RateLimited), limited);

    // The bucket refills: after a pause (1 token per 50 ms) the socket is served again.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_usable(&mut c).await;

    // Now flood with transmits, one frame each, written in one go.
    for i in 0..(3 * rate) {
        c.ws.feed(json_frame(&json!({"event": "echo", "data": i}))).await.expect("feed");
    }
    c.ws.flush().await.expect("flush");
    assert_eq!(c.closed_with().await, codes::RATE_LIMITED.code);
    assert!(
        refused(&node, Refusal::RateLimited) >= limited + u64::from(rate),
        "at least `rate` refusals in a row before the close: {}",
        refused(&node, Refusal::RateLimited)
    );
    node.assert_still_serves().await;
}

// 5. Handshake.

#[tokio::test]
async fn a_socket_without_a_handshake_in_time_is_closed_with_4005() {
    let node = node_with(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    let mut c = Client::connect(node.json, Codec::Json).await;
    assert_eq!(c.closed_with().await, codes::HANDSHAKE_TIMEOUT.code);
    assert!(started.elapsed() >= Duration::from_millis(250), "closed too early: {:?}", started.elapsed());
    assert_eq!(refused(&node, Refusal::HandshakeTimeout), 1);
    node.assert_still_serves().await;
}

#[tokio::test]
async fn a_packet_other_than_handshake_first_is_closed_with_4009() {
    let node = TestNode::default().await;
    let mut c = Client::connect(node.json, Codec::Json).await;
    c.send(json!({"event": "echo", "data": 1, "cid": 1})).await;
    assert_eq!(c.closed_with().await, codes::MESSAGE_BEFORE_HANDSHAKE.code);
    let mut b = Client::connect(node.min_bin, Codec::MinBin).await;
    b.send(json!({"event": "#subscribe", "data": {"channel": "early"}, "cid": 1})).await;
    assert_eq!(b.closed_with().await, codes::MESSAGE_BEFORE_HANDSHAKE.code);
    assert_eq!(refused(&node, Refusal::BeforeHandshake), 2);
    assert_eq!(node.node.hub.subscriber_count("early"), 0);
    node.assert_still_serves().await;
}

#[tokio::test]
async fn a_handshake_without_a_numeric_cid_is_closed_with_4008() {
    let node = TestNode::default().await;
    for cid in [None, Some(json!("1")), Some(json!(-1))] {
        let mut c = Client::connect(node.json, Codec::Json).await;
        let mut packet = json!({"event": "#handshake", "data": {"authToken": null}});
        if let Some(cid) = cid {
            packet["cid"] = cid;
        }
        c.send(packet.clone()).await;
        assert_eq!(c.closed_with().await, codes::HANDSHAKE_REJECTED.code, "{packet}");
    }
    assert_eq!(refused(&node, Refusal::HandshakeRejected), 3);
    assert_eq!(node.node.stats.handshakes.load(std::sync::atomic::Ordering::Relaxed), 0);
    node.assert_still_serves().await;
}

// 6. Slow consumer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped_while_others_get_every_message() {
    let node = node_with(|c| {
        c.limits.outbound_queue = 4;
        c.limits.max_frame_bytes = 512 * 1024;
    })
    .await;
    // Never read after subscribing.
    let mut slow = Client::handshake(node.json, Codec::Json).await;
    slow.subscribe("firehose").await;
    let mut normal = Client::handshake(node.min_bin, Codec::MinBin).await;
    normal.subscribe("firehose").await;
    let mut publisher = Client::handshake(node.json, Codec::Json).await;

    let pad = "x".repeat(200 * 1024);
    let mut sent = 0u64;
    let mut after_drop = 0;
    // Publish until the slow socket is dropped (it leaves the channel), then a few more.
    while after_drop < 5 {
        assert!(sent < 400, "the slow subscriber was never dropped after {sent} messages of 200 KB");
        let ack = publisher.invoke("#publish", json!({"channel": "firehose", "data": {"i": sent, "pad": pad}})).await;
        assert!(ack.get("error").is_none(), "{ack}");
        let got = normal.next_event("#publish").await;
        assert_eq!(got["data"]["data"]["i"], sent, "the normal subscriber gets every message, in order");
        sent += 1;
        if node.node.hub.subscriber_count("firehose") == 1 {
            after_drop += 1;
        }
    }
    let code = slow.closed_with().await;
    assert!(
        code == codes::SLOW_CONSUMER.code || code == 1006,
        "the slow socket ends with 4104 or a dropped connection, got {code}"
    );
    // Counted once, whichever path noticed it (inside a blocked write, or in the session loop).
    assert_eq!(refused(&node, Refusal::SlowConsumer), 1);
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.node.stats.sockets_open.load(std::sync::atomic::Ordering::Relaxed) != 2 {
        assert!(tokio::time::Instant::now() < deadline, "the slow socket's session ends; normal and publisher stay");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The normal subscriber is untouched.
    let ack = publisher.invoke("#publish", json!({"channel": "firehose", "data": {"i": sent}})).await;
    assert!(ack.get("error").is_none(), "{ack}");
    assert_eq!(normal.next_event("#publish").await["data"]["data"]["i"], sent);
    node.assert_still_serves().await;
}

/// The other way a queue overflows: many publishes in one turn of the
/// publisher, before the subscriber's task runs at all. The close code gets
/// through, and the refusal is counted.
#[tokio::test]
async fn a_subscriber_whose_queue_overflows_in_one_burst_is_closed_with_4104_and_counted() {
    let node = node_with(|c| c.limits.outbound_queue = 4).await;
    let mut slow = Client::handshake(node.json, Codec::Json).await;
    slow.subscribe("burst").await;
    let mut publisher = Client::handshake(node.json, Codec::Json).await;
    let batch: Vec<Value> =
        (0..6).map(|i| json!({"event": "#publish", "data": {"channel": "burst", "data": i}})).collect();
    publisher.send(Value::Array(batch)).await;
    assert_eq!(slow.closed_with().await, codes::SLOW_CONSUMER.code);
    assert_eq!(refused(&node, Refusal::SlowConsumer), 1);
    node.assert_still_serves().await;
}

// 7. Undecodable frames.

#[tokio::test]
async fn a_malformed_frame_is_closed_with_4100_on_both_codecs() {
    let node = TestNode::default().await;
    let code = close_code_after(node.json, Codec::Json, Message::text(r#"{"event":"echo","cid":1"#)).await;
    assert_eq!(code, codes::MALFORMED_FRAME.code);
    let bad_min_bin: [&[u8]; 4] = [
        // A fixarray of two holding one element: truncated.
        &[0x92, 0x01],
        // A fixstr of one byte that is not UTF-8.
        &[0xa1, 0xff],
        // A whole value (1) followed by trailing bytes.
        &[0x01, 0x02],
        // An extension type, which JSON cannot carry.
        &[0xd4, 0x01, 0x00],
    ];
    for bytes in bad_min_bin {
        let code = close_code_after(node.min_bin, Codec::MinBin, Message::Binary(Bytes::from_static(bytes))).await;
        assert_eq!(code, codes::MALFORMED_FRAME.code, "{bytes:x?}");
    }
    assert_eq!(refused(&node, Refusal::MalformedFrame), 1 + bad_min_bin.len() as u64);
    node.assert_still_serves().await;
}

/// msgpack-lite (under sc-codec-min-bin) throws on 0xc1, the byte MessagePack never uses.
#[tokio::test]

async fn the_reserved_messagepack_byte_is_a_malformed_frame() {
    let node = TestNode::default().await;
    let code = close_code_after(node.min_bin, Codec::MinBin, Message::Binary(Bytes::from_static(&[0xc1]))).await;
    assert_eq!(code, codes::MALFORMED_FRAME.code);
    assert_eq!(refused(&node, Refusal::MalformedFrame), 1);
    node.assert_still_serves().await;
}

// 8. Frame type against the listener's codec.

#[tokio::test]
async fn a_frame_of_the_wrong_type_for_the_listener_is_closed_with_1003() {
    let node = TestNode::default().await;
    let packet = json!({"event": "echo", "data": 1, "cid": 50});
    let code = close_code_after(node.json, Codec::Json, min_bin_frame(&packet)).await;
    assert_eq!(code, codes::UNSUPPORTED_DATA.code, "binary on the JSON listener");
    let code = close_code_after(node.min_bin, Codec::MinBin, json_frame(&packet)).await;
    assert_eq!(code, codes::UNSUPPORTED_DATA.code, "non-empty text on the min-bin listener");
    assert_eq!(refused(&node, Refusal::UnsupportedData), 2);
    node.assert_still_serves().await;
}

// 9. Unknown events.

#[tokio::test]
async fn an_unknown_event_invoke_gets_unknown_event_error_and_a_transmit_is_closed_with_4102() {
    let node = TestNode::default().await;
    let mut c = Client::handshake(node.json, Codec::Json).await;
    let r = c.invoke("noSuchEvent", json!({"x": 1})).await;
    assert_eq!(error_name(&r), "UnknownEventError");
    assert_usable(&mut c).await;
    let r = c.invoke("#noSuchProtocolEvent", json!(null)).await;
    assert_eq!(error_name(&r), "UnknownEventError");
    assert_usable(&mut c).await;
    assert_eq!(refused(&node, Refusal::UnknownEvent), 2);

    c.transmit("noSuchEvent", json!(1)).await;
    assert_eq!(c.closed_with().await, codes::UNKNOWN_EVENT.code);
    let mut b = Client::handshake(node.min_bin, Codec::MinBin).await;
    b.transmit("#noSuchProtocolEvent", json!(1)).await;
    assert_eq!(b.closed_with().await, codes::UNKNOWN_EVENT.code);
    assert_eq!(refused(&node, Refusal::UnknownEvent), 4);
    node.assert_still_serves().await;
}

// 10. Wrong field types.

fn wrongly_typed_packets() -> Vec<Value> {
    vec![
        json!({"event": "#subscribe", "data": "bare-string"}),
        json!({"event": "#subscribe", "data": 42}),
        json!({"event": "#subscribe", "data": {"channel": 42}}),
        json!({"event": "#publish", "data": "not an object"}),
        json!({"event": "#authenticate", "data": 12345}),
        json!({"event": 7, "data": null}),
    ]
}

#[tokio::test]
async fn a_wrongly_typed_invoke_gets_invalid_action_error_and_the_socket_stays_usable() {
    let node = TestNode::default().await;
    let mut c = Client::handshake(node.json, Codec::Json).await;
    let packets = wrongly_typed_packets();
    for (cid, mut packet) in (300u64..).zip(packets.clone()) {
        packet["cid"] = json!(cid);
        let r = reply_to(&mut c, packet.clone()).await;
        assert_eq!(error_name(&r), "InvalidActionError", "{packet}");
        assert_usable(&mut c).await;
    }
    assert_eq!(refused(&node, Refusal::InvalidPacket), packets.len() as u64);
    assert_eq!(node.node.hub.channel_count(), 0, "nothing was subscribed");
    node.assert_still_serves().await;
}

#[tokio::test]
async fn a_wrongly_typed_transmit_is_closed_with_4101() {
    let node = TestNode::default().await;
    let packets = wrongly_typed_packets();
    for packet in &packets {
        let code = close_code_after(node.json, Codec::Json, json_frame(packet)).await;
        assert_eq!(code, codes::INVALID_PACKET.code, "{packet}");
    }
    // The same on the min-bin listener (compressed `e` form).
    let code =
        close_code_after(node.min_bin, Codec::MinBin, min_bin_frame(&json!({"event": "#subscribe", "data": 42}))).await;
    assert_eq!(code, codes::INVALID_PACKET.code);
    // A packet that is not an object at all.
    let code = close_code_after(node.json, Codec::Json, Message::text("42")).await;
    assert_eq!(code, codes::INVALID_PACKET.code);
    assert_eq!(refused(&node, Refusal::InvalidPacket), packets.len() as u64 + 2);
    node.assert_still_serves().await;
}

// 11. Pings.

/// Reads `c` for `period`, answering pings; fails on anything else. Returns the pings seen.
async fn answer_pings_for(c: &mut Client, period: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + period;
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(deadline, c.ws.next()).await {
            Err(_) => return pings,
            Ok(Some(Ok(Message::Text(t)))) if t.is_empty() => {
                pings += 1;
                c.ws.send(Message::text("")).await.expect("pong");
            }
            Ok(other) => panic!("a live client got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_with_4001_and_one_that_answers_stays() {
    let node = node_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_millis(400);
    })
    .await;
    let mut dead = Client::handshake(node.json, Codec::Json).await;
    dead.answer_pings = false;
    let mut live = Client::handshake(node.min_bin, Codec::MinBin).await;
    let started = tokio::time::Instant::now();
    let (code, pings) = tokio::join!(dead.closed_with(), answer_pings_for(&mut live, Duration::from_millis(1000)));
    assert_eq!(code, codes::PONG_TIMEOUT.code);
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(pings >= 5, "pinged every 100 ms for 1 s, saw {pings}");
    assert_usable(&mut live).await;
    assert_eq!(refused(&node, Refusal::PongTimeout), 1);
    node.assert_still_serves().await;
}

/// A socket whose client never stops sending still gets its pings and its deliveries: inbound
/// frames always being ready must not starve the ping timer (socketcluster-client drops a socket
/// that goes unpinged for `pingTimeout`, however busy it is) nor its channel's messages.
#[tokio::test]
async fn a_client_that_sends_without_pause_is_still_pinged() {
    let node = node_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_secs(5);
        c.limits.inbound_rate = 1_000_000;
    })
    .await;
    let mut c = Client::handshake(node.json, Codec::Json).await;
    c.subscribe("flood").await;
    let (mut sink, mut stream) = c.ws.split();
    let flood = Duration::from_millis(1000);
    let writer = tokio::spawn(async move {
        let until = tokio::time::Instant::now() + flood;
        let mut sent = 0u64;
        // Batches of transmits keep the socket's read side always ready; bounded by time and count.
        let batch = Message::text(
            serde_json::to_string(&vec![json!({"event": "#publish", "data": {"channel": "flood", "data": 1}}); 64])
                .unwrap(),
        );
        while tokio::time::Instant::now() < until && sent < 2_000_000 {
            sink.send(batch.clone()).await.expect("flood frame");
            sent += 64;
        }
        (sink, sent)
    });
    let (mut pings, mut delivered) = (0, 0u64);
    let deadline = tokio::time::Instant::now() + flood;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, stream.next()).await {
        match &m {
            Message::Text(t) if t.is_empty() => pings += 1,
            Message::Text(t) => delivered += t.matches("#publish").count() as u64,
            Message::Close(frame) => panic!("a busy client was closed: {frame:?}"),
            _ => {}
        }
    }
    let (_sink, sent) = writer.await.expect("writer");
    assert!(sent > 10_000, "the flood should keep the socket busy, sent only {sent}");
    assert!(pings >= 3, "pinged every 100 ms during a 1 s flood of {sent} packets, saw {pings}");
    assert!(delivered > 0, "its own channel's messages reach it while it floods");
    node.assert_still_serves().await;
}

// 12. Batches.

#[tokio::test]
async fn a_batch_is_processed_in_order() {
    let node = TestNode::default().await;
    let mut c = Client::handshake(node.json, Codec::Json).await;
    c.send(json!([
        {"event": "echo", "data": "first", "cid": 10},
        {"event": "#subscribe", "data": {"channel": "b"}, "cid": 11},
        {"event": "#publish", "data": {"channel": "b", "data": "x"}, "cid": 12},
        {"event": "fail", "data": {"message": "no"}, "cid": 13},
        {"event": "#unsubscribe", "data": "b", "cid": 14},
        {"event": "#unsubscribe", "data": "b", "cid": 15},
        {"event": "echo", "data": "last", "cid": 16},
    ]))
    .await;
    let mut got = Vec::new();
    for _ in 0..8 {
        got.push(c.next_packet().await.expect("a packet"));
    }
    assert_eq!(
        got[..6],
        [
            json!({"rid": 10, "data": "first"}),
            json!({"rid": 11}),
            json!({"event": "#publish", "data": {"channel": "b", "data": "x"}}),
            json!({"rid": 12}),
            json!({"rid": 13, "error": {"name": "DemoError", "message": "no"}}),
            json!({"rid": 14}),
        ]
    );
    assert_eq!(got[6]["rid"], 15);
    assert_eq!(error_name(&got[6]), "InvalidActionError", "unsubscribed by the packet before");
    assert_eq!(got[7], json!({"rid": 16, "data": "last"}));

    // A full batch on the min-bin listener: every reply, in order.
    let mut b = Client::handshake(node.min_bin, Codec::MinBin).await;
    let max = limits::MAX_PACKETS_PER_FRAME as u64;
    b.send(Value::Array((1..=max).map(|cid| json!({"event": "echo", "data": cid, "cid": cid})).collect())).await;
    for cid in 1..=max {
        assert_eq!(b.next_packet().await.expect("a reply"), json!({"rid": cid, "data": cid}));
    }
    assert_eq!(total_refused(&node), 0);
    node.assert_still_serves().await;
}

#[tokio::test]
async fn a_batch_over_the_packet_limit_or_empty_is_closed_with_4100() {
    let node = TestNode::default().await;
    let over = limits::MAX_PACKETS_PER_FRAME as u64 + 1;
    let batch = Value::Array(
        (1..=over).map(|cid| json!({"event": "#subscribe", "data": {"channel": "z"}, "cid": cid})).collect(),
    );
    let mut c = Client::handshake(node.json, Codec::Json).await;
    c.send(batch.clone()).await;
    // No packet of the refused frame is served: the close comes first.
    let code = loop {
        match tokio::time::timeout(WAIT, c.ws.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(Message::Text(t))) if t.is_empty() => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(code, codes::MALFORMED_FRAME.code);
    let code = close_code_after(node.min_bin, Codec::MinBin, min_bin_frame(&batch)).await;
    assert_eq!(code, codes::MALFORMED_FRAME.code);
    let code = close_code_after(node.json, Codec::Json, Message::text("[]")).await;
    assert_eq!(code, codes::MALFORMED_FRAME.code);
    assert_eq!(refused(&node, Refusal::MalformedFrame), 3);
    assert_eq!(node.node.hub.subscriber_count("z"), 0);
    node.assert_still_serves().await;
}

// 13. Non-numeric cids.

#[tokio::test]
async fn a_string_cid_is_treated_as_a_transmit() {
    let node = TestNode::default().await;
    for (addr, codec) in [(node.json, Codec::Json), (node.min_bin, Codec::MinBin)] {
        let mut c = Client::handshake(addr, codec).await;
        c.send(json!({"event": "echo", "data": "ignored", "cid": "5"})).await;
        c.send(json!({"event": "echo", "data": "ignored too", "cid": 2.5})).await;
        c.send(json!({"event": "echo", "data": "answered", "cid": 6})).await;
        let first = c.next_packet().await.expect("a reply");
        assert_eq!(first, json!({"rid": 6, "data": "answered"}), "{codec:?}: no reply to a string or fractional cid");
    }
    assert_eq!(total_refused(&node), 0);
    // As a transmit, an unknown event with a string cid closes the socket.
    let code = close_code_after(node.json, Codec::Json, json_frame(&json!({"event": "nope", "cid": "5"}))).await;
    assert_eq!(code, codes::UNKNOWN_EVENT.code);
    assert_eq!(refused(&node, Refusal::UnknownEvent), 1);
    node.assert_still_serves().await;
}

// 14. Plain HTTP on the WebSocket ports.

/// Writes `request` on a fresh TCP connection and reads the response to EOF.
async fn http_exchange(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    s.write_all(request).await.expect("write request");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.expect("response in time").expect("read response");
    let text = String::from_utf8(out).expect("UTF-8 response");
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Deterministic noise (an LCG), starting with a byte no HTTP method has.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    let mut out = vec![0x16, 0x03, 0x01];
    while out.len() < len {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        out.push((x >> 24) as u8);
    }
    out
}

#[tokio::test]
async fn garbage_http_gets_an_error_status_and_health_answers_with_json() {
    let node = TestNode::default().await;
    let upgrade = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (noise(200), 400),
        (b"GET /socketcluster/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(), 400),
        (upgrade("POST", "/socketcluster/").into_bytes(), 405),
        (upgrade("GET", "/elsewhere").into_bytes(), 404),
        (b"GET /socketcluster/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
    ];
    for (i, (request, want)) in cases.iter().enumerate() {
        let addr = if i % 2 == 0 { node.json } else { node.min_bin };
        let (status, _) = http_exchange(addr, request).await;
        assert_eq!(status, *want, "request {i}: {:?}", String::from_utf8_lossy(request));
    }
    assert_eq!(refused(&node, Refusal::BadHttpRequest), cases.len() as u64);
    for addr in [node.json, node.min_bin] {
        let (status, body) = http_exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status, 200);
        let health: Value = serde_json::from_str(&body).expect("health is JSON");
        assert_eq!(health["status"], "ok");
        assert_eq!(health["stats"]["refused"]["bad_http_request"], cases.len() as u64);
    }
    assert_eq!(total_refused(&node), cases.len() as u64);
    node.assert_still_serves().await;
}
