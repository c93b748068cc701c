//! A broker on port 0 driven over TCP with hand-written fabric frames.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::stats::{Closure, Refusal};
use broker::Config;
use bytes::Bytes;
use protocol::fabric::{self, FabricFrame};
use support::{encoded, message, publish, wait_until, Link, TestBroker};

#[tokio::test]
async fn a_wrong_key_is_refused_and_counted_while_a_good_link_keeps_working() {
    let b = TestBroker::default().await;
    let mut good = b.link().await;
    good.subscribe("c").await;

    let mut bad = Link::connect(b.fabric).await;
    bad.hello("not-the-key").await;
    let frames = bad.until_closed().await;
    assert!(matches!(&frames[..], [FabricFrame::Refused { reason }] if reason.contains("key")), "{frames:?}");
    assert_eq!(b.node.stats.refused(Refusal::WrongKey), 1);

    good.send(&publish("c", b"1", Some(9))).await;
    assert_eq!(good.recv().await, message("c", b"1"));
    assert_eq!(good.recv().await, FabricFrame::PublishAck { id: 9 });
}

#[tokio::test]
async fn a_wrong_version_or_a_first_frame_other_than_hello_is_refused() {
    let b = TestBroker::default().await;
    let mut old = Link::connect(b.fabric).await;
    old.send(&FabricFrame::Hello { key: "test-key".into(), node: "f".into(), version: fabric::VERSION + 1 }).await;
    assert!(matches!(&old.until_closed().await[..], [FabricFrame::Refused { .. }]));
    assert_eq!(b.node.stats.refused(Refusal::WrongVersion), 1);

    let mut rude = Link::connect(b.fabric).await;
    rude.send(&FabricFrame::Subscribe { channel: "c".into() }).await;
    assert!(matches!(&rude.until_closed().await[..], [FabricFrame::Refused { .. }]));
    assert_eq!(b.node.stats.refused(Refusal::NotHello), 1);
    b.assert_still_serves().await;
}

#[tokio::test]
async fn a_link_that_says_nothing_is_refused_after_the_hello_timeout() {
    let b = TestBroker::start(Config { hello_timeout: Duration::from_millis(200), ..Config::for_test() }).await;
    let mut mute = Link::connect(b.fabric).await;
    assert!(matches!(&mute.until_closed().await[..], [FabricFrame::Refused { .. }]));
    assert_eq!(b.node.stats.refused(Refusal::HelloTimeout), 1);
}

#[tokio::test]
async fn a_publish_reaches_the_interested_links_with_identical_bytes_and_no_one_else() {
    let b = TestBroker::default().await;
    let mut one = b.link().await;
    let mut two = b.link().await;
    let mut other = b.link().await;
    one.subscribe("room/1").await;
    two.subscribe("room/1").await;
    other.subscribe("room/2").await;

    let mut publisher = b.link().await;
    publisher.send(&publish("room/1", b"{\"text\":\"hi\"}", Some(1))).await;
    assert_eq!(publisher.recv().await, FabricFrame::PublishAck { id: 1 });

    let (a, c) = (one.recv_raw().await, two.recv_raw().await);
    assert_eq!(a, c, "every interested link gets the same bytes");
    assert_eq!(a, encoded(&message("room/1", b"{\"text\":\"hi\"}")));
    other.assert_quiet().await;
    publisher.assert_quiet().await;
    assert_eq!(b.node.stats.messages_out.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn the_publish_ack_comes_after_the_publishers_own_message() {
    let b = TestBroker::default().await;
    let mut link = b.link().await;
    link.subscribe("mine").await;
    link.send(&publish("mine", b"42", Some(7))).await;
    assert_eq!(link.recv().await, message("mine", b"42"));
    assert_eq!(link.recv().await, FabricFrame::PublishAck { id: 7 });
}

#[tokio::test]
async fn answers_keep_the_order_of_the_frames_that_caused_them() {
    let b = TestBroker::default().await;
    let mut link = b.link().await;
    let mut burst = Vec::new();
    for f in [
        FabricFrame::Subscribe { channel: "c".into() },
        FabricFrame::Ping,
        publish("c", b"1", Some(1)),
        FabricFrame::Barrier { id: 2 },
        publish("c", b"2", None),
        FabricFrame::Barrier { id: 3 },
    ] {
        burst.extend_from_slice(&encoded(&f));
    }
    link.send_raw(&burst).await;
    let expected = [
        FabricFrame::Pong,
        message("c", b"1"),
        FabricFrame::PublishAck { id: 1 },
        FabricFrame::BarrierAck { id: 2 },
        message("c", b"2"),
        FabricFrame::BarrierAck { id: 3 },
    ];
    for want in expected {
        assert_eq!(link.recv().await, want);
    }
}

#[tokio::test]
async fn a_barrier_ack_means_the_subscriptions_before_it_are_in_place() {
    let b = TestBroker::default().await;
    let mut sub = b.link().await;
    let mut publisher = b.link().await;
    let mut burst = encoded(&FabricFrame::Subscribe { channel: "x".into() }).to_vec();
    burst.extend_from_slice(&encoded(&FabricFrame::Barrier { id: 5 }));
    sub.send_raw(&burst).await;
    assert_eq!(sub.recv().await, FabricFrame::BarrierAck { id: 5 });
    publisher.send(&publish("x", b"now", None)).await;
    assert_eq!(sub.recv().await, message("x", b"now"));
}

#[tokio::test]
async fn unsubscribing_or_closing_a_link_removes_its_interest() {
    let b = TestBroker::default().await;
    let mut link = b.link().await;
    let mut publisher = b.link().await;
    link.subscribe("a").await;
    link.subscribe("b").await;
    link.send(&FabricFrame::Unsubscribe { channel: "a".into() }).await;
    link.barrier(1).await;
    publisher.send(&publish("a", b"gone", None)).await;
    publisher.barrier(2).await;
    link.assert_quiet().await;
    assert_eq!(b.node.router.subscriptions(), 1);

    drop(link);
    wait_until("the closed link's interest is gone", || b.node.router.subscriptions() == 0).await;
    assert_eq!(b.node.router.channels(), 0);
    wait_until("the link is gone", || b.node.stats.links_open.load(Ordering::Relaxed) == 1).await;
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_the_link_and_are_counted() {
    let b = TestBroker::default().await;

    // A well-framed body that is not MessagePack of a frame.
    let mut garbage = b.link().await;
    garbage.send_raw(b"\x00\x00\x00\x05hello").await;
    assert!(matches!(&garbage.until_closed().await[..], [FabricFrame::Refused { .. }]));
    assert_eq!(b.node.stats.closed(Closure::MalformedFrame), 1);

    // A length prefix over the limit: refused before anything is buffered.
    let mut huge = b.link().await;
    huge.send_raw(&u32::MAX.to_be_bytes()).await;
    assert!(matches!(&huge.until_closed().await[..], [FabricFrame::Refused { .. }]));
    assert_eq!(b.node.stats.closed(Closure::FrameTooBig), 1);

    // Something that is not the fabric at all, before Hello.
    let mut http = Link::connect(b.fabric).await;
    http.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(matches!(&http.until_closed().await[..], [FabricFrame::Refused { .. }]));
    assert_eq!(b.node.stats.refused(Refusal::FrameTooBig), 1);

    // Before Hello, even a length under the fabric limit is refused if no Hello is that big.
    let mut greedy = Link::connect(b.fabric).await;
    greedy.send_raw(&(1024u32 * 1024).to_be_bytes()).await;
    assert!(matches!(&greedy.until_closed().await[..], [FabricFrame::Refused { .. }]));
    assert_eq!(b.node.stats.refused(Refusal::FrameTooBig), 2);

    // A frame only a broker sends.
    let mut confused = b.link().await;
    confused.send(&message("c", b"x")).await;
    assert!(matches!(&confused.until_closed().await[..], [FabricFrame::Refused { .. }]));
    assert_eq!(b.node.stats.closed(Closure::UnexpectedFrame), 1);

    b.assert_still_serves().await;
}

#[tokio::test]
async fn a_silent_link_is_closed_after_the_link_timeout_and_a_pinging_one_is_not() {
    let config = Config { link_timeout: Duration::from_millis(300), ..Config::for_test() };
    let b = TestBroker::start(config).await;
    let mut silent = b.link().await;
    let mut pinging = b.link().await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pinging.send(&FabricFrame::Ping).await;
        assert_eq!(pinging.recv().await, FabricFrame::Pong);
    }
    assert!(matches!(&silent.until_closed().await[..], [FabricFrame::Refused { .. }]));
    assert_eq!(b.node.stats.closed(Closure::LinkTimeout), 1);
    pinging.send(&FabricFrame::Ping).await;
    assert_eq!(pinging.recv().await, FabricFrame::Pong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_stops_reading_is_closed_as_slow_and_the_others_keep_receiving() {
    let b = TestBroker::start(Config { link_queue: 64, ..Config::for_test() }).await;
    let mut slow = b.link().await;
    slow.subscribe("flood").await;
    let mut fast = b.link().await;
    fast.subscribe("flood").await;
    let mut publisher = b.link().await;

    // The fast link reads each message before the next is published, so
    // only the slow link's queue can fill.
    let payload = Bytes::from(vec![b'x'; 64 * 1024]);
    let mut sent = 0;
    while b.node.stats.closed(Closure::SlowLink) == 0 {
        assert!(sent < 2_000, "no slow link after {sent} messages of 64 KiB");
        publisher.send(&FabricFrame::Publish { channel: "flood".into(), payload: payload.clone(), ack: None }).await;
        assert!(matches!(fast.recv().await, FabricFrame::Message { .. }));
        sent += 1;
    }
    assert_eq!(b.node.stats.closed(Closure::SlowLink), 1);

    // The slow link gets what was already on its way, then the end of the stream.
    let got = slow.until_closed().await;
    assert!(got.len() < sent, "the slow link got {} of {sent}", got.len());
    assert!(got.iter().all(|f| matches!(f, FabricFrame::Message { .. })));

    publisher.send(&publish("flood", b"after", Some(1))).await;
    assert_eq!(publisher.recv().await, FabricFrame::PublishAck { id: 1 });
    assert_eq!(fast.recv().await, message("flood", b"after"));
    wait_until("the slow link's interest is gone", || b.node.router.subscriptions() == 1).await;
    b.assert_still_serves().await;
}

#[tokio::test]
async fn queued_frames_go_out_in_few_writes() {
    let b = TestBroker::default().await;
    let mut sub = b.link().await;
    sub.subscribe("c").await;
    let mut publisher = b.link().await;
    let (writes, frames) =
        (b.node.stats.writes.load(Ordering::Relaxed), b.node.stats.frames_out.load(Ordering::Relaxed));
    let mut burst = Vec::new();
    for _ in 0..1_000 {
        burst.extend_from_slice(&encoded(&publish("c", b"m", None)));
    }
    publisher.send_raw(&burst).await;
    for _ in 0..1_000 {
        assert_eq!(sub.recv().await, message("c", b"m"));
    }
    let writes = b.node.stats.writes.load(Ordering::Relaxed) - writes;
    let frames = b.node.stats.frames_out.load(Ordering::Relaxed) - frames;
    assert!(frames >= 1_000);
    assert!(writes * 10 <= frames, "{writes} writes for {frames} frames");
}
