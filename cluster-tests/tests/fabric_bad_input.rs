//! Bad input on the cluster's internal ports, from a raw TCP peer, while the
//! cluster carries steady load: each bad peer is refused or disconnected and
//! counted, and no client message is lost meanwhile.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::control::{self, ControlFrame, Role};
use protocol::fabric::{self, FabricFrame};
use protocol::framing;
use serde_json::Value;
use testkit::{wait_until, Cluster, LoadGen, RawPeer, Read};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(5);

async fn cluster_under_load() -> (Cluster, LoadGen) {
    let cluster = Cluster::builder().brokers(2).frontends(2).start().await;
    let load = LoadGen::builder()
        .channels(500)
        .rate(5_000)
        .duration(Duration::from_secs(4))
        .publishers(2)
        .subscribers(4)
        .publisher_frontends(vec![1])
        .subscriber_frontends(vec![0])
        .start(&cluster)
        .await;
    load.wait_delivered(2_000, Duration::from_secs(10)).await;
    (cluster, load)
}

/// The load ran to its end with every message delivered exactly once.
async fn assert_cluster_kept_delivering(load: LoadGen, what: &str) {
    let report = load.finish().await;
    println!("{what}: {report}");
    report.assert_exact();
}

fn counter(doc: &Value, path: &[&str]) -> u64 {
    path.iter().fold(doc, |v, k| &v[*k]).as_u64().unwrap_or_else(|| panic!("no counter {path:?} in {doc}"))
}

/// A fabric peer with the right key, welcomed by broker `i`.
async fn welcomed_fabric_peer(cluster: &Cluster, i: usize, name: &str) -> RawPeer {
    let mut peer = RawPeer::connect(cluster.broker_fabric(i)).await.expect("connects");
    let hello = FabricFrame::Hello { key: cluster.cluster_key().into(), node: name.into(), version: fabric::VERSION };
    peer.send(&hello).await.expect("sends Hello");
    match peer.recv::<FabricFrame>(WAIT).await.expect("an answer to Hello") {
        Read::Frame(FabricFrame::Welcome { .. }) => peer,
        other => panic!("a peer with the right key is welcomed, got {other:?}"),
    }
}

/// The node answers with `Refused` (or nothing) and hangs up.
async fn assert_fabric_refused_and_closed(peer: &mut RawPeer, what: &str) {
    loop {
        match peer.recv::<FabricFrame>(WAIT).await {
            Ok(Read::Frame(FabricFrame::Refused { reason })) => println!("{what}: refused ({reason})"),
            Ok(Read::Frame(FabricFrame::Pong)) => continue,
            Ok(Read::Frame(other)) => panic!("{what}: expected Refused and a hang-up, got {other:?}"),
            Ok(Read::Closed) => return,
            Err(e) => panic!("{what}: {e}"),
        }
        peer.wait_closed(WAIT).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        return;
    }
}

/// Waits until a counter of broker `i`'s `/health` reaches `min`.
async fn wait_broker_counter(cluster: &Cluster, i: usize, path: &[&str], min: u64) -> u64 {
    wait_until(WAIT, Duration::from_millis(20), || async move {
        let h = cluster.broker_health(i).await;
        let n = counter(&h, path);
        if n >= min {
            Ok(n)
        } else {
            Err(format!("{path:?} = {n} in {h}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fabric_peer_with_a_wrong_cluster_key_is_refused_and_counted_while_the_cluster_keeps_delivering() {
    let (cluster, load) = cluster_under_load().await;
    let mut peer = RawPeer::connect(cluster.broker_fabric(0)).await.expect("connects");
    let hello =
        FabricFrame::Hello { key: "not-the-cluster-key".into(), node: "intruder".into(), version: fabric::VERSION };
    peer.send(&hello).await.expect("sends Hello");
    assert_fabric_refused_and_closed(&mut peer, "wrong key").await;
    wait_broker_counter(&cluster, 0, &["stats", "refused_links", "wrong_key"], 1).await;
    let h = cluster.broker_health(0).await;
    assert_eq!(counter(&h, &["stats", "links_open"]), 2, "only the two frontends are linked: {h}");
    assert_cluster_kept_delivering(load, "wrong fabric key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_on_a_fabric_link_get_the_peer_disconnected_while_the_cluster_keeps_delivering() {
    let (cluster, load) = cluster_under_load().await;
    // A length prefix followed by bytes that are no MessagePack value (0xc1 is never used).
    let garbage = [&8u32.to_be_bytes()[..], &[0xc1; 8]].concat();

    let mut before_hello = RawPeer::connect(cluster.broker_fabric(0)).await.expect("connects");
    before_hello.send_raw(&garbage).await.expect("sends");
    assert_fabric_refused_and_closed(&mut before_hello, "garbage instead of Hello").await;
    wait_broker_counter(&cluster, 0, &["stats", "refused_links", "malformed_frame"], 1).await;

    let mut after_hello = welcomed_fabric_peer(&cluster, 0, "garbage-after-hello").await;
    after_hello.send_raw(&garbage).await.expect("sends");
    assert_fabric_refused_and_closed(&mut after_hello, "garbage after Hello").await;
    wait_broker_counter(&cluster, 0, &["stats", "closed_links", "malformed_frame"], 1).await;

    // Text from the wrong protocol entirely.
    let mut http = RawPeer::connect(cluster.broker_fabric(1)).await.expect("connects");
    http.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("sends");
    assert_fabric_refused_and_closed(&mut http, "an HTTP request").await;

    assert_cluster_kept_delivering(load, "garbage on fabric links").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_length_prefix_on_a_fabric_link_gets_the_peer_disconnected_while_the_cluster_keeps_delivering() {
    let (cluster, load) = cluster_under_load().await;

    let mut before_hello = RawPeer::connect(cluster.broker_fabric(0)).await.expect("connects");
    before_hello.send_raw(&u32::MAX.to_be_bytes()).await.expect("sends");
    assert_fabric_refused_and_closed(&mut before_hello, "4 GiB prefix instead of Hello").await;
    wait_broker_counter(&cluster, 0, &["stats", "refused_links", "frame_too_big"], 1).await;

    let mut after_hello = welcomed_fabric_peer(&cluster, 0, "oversized-after-hello").await;
    let just_over = u32::try_from(framing::MAX_FRAME_BYTES + 1).expect("fits");
    after_hello.send_raw(&just_over.to_be_bytes()).await.expect("sends");
    assert_fabric_refused_and_closed(&mut after_hello, "prefix one byte over the limit after Hello").await;
    wait_broker_counter(&cluster, 0, &["stats", "closed_links", "frame_too_big"], 1).await;

    assert_cluster_kept_delivering(load, "oversized fabric frames").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fabric_peer_that_stops_reading_a_busy_channel_is_disconnected_as_slow_while_the_cluster_keeps_delivering() {
    let (cluster, load) = cluster_under_load().await;
    let busy = "bad-input/busy";

    // The slow peer subscribes, confirms the subscription with a barrier, then
    // never reads again; it keeps pinging so it is slow, not silent.
    let mut slow = welcomed_fabric_peer(&cluster, 0, "slow-reader").await;
    slow.send(&FabricFrame::Subscribe { channel: busy.into() }).await.expect("subscribes");
    slow.send(&FabricFrame::Barrier { id: 1 }).await.expect("barrier");
    loop {
        match slow.recv::<FabricFrame>(WAIT).await.expect("barrier answered") {
            Read::Frame(FabricFrame::BarrierAck { id: 1 }) => break,
            Read::Frame(_) => {}
            Read::Closed => panic!("the broker closed the slow peer before it was slow"),
        }
    }
    let (mut slow_rd, mut slow_wr) = slow.into_stream().into_split();
    let pinger = tokio::spawn(async move {
        let mut ping = BytesMut::new();
        framing::encode(&FabricFrame::Ping, &mut ping);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        for _ in 0..150 {
            tick.tick().await;
            if slow_wr.write_all(&ping).await.is_err() {
                return;
            }
        }
    });

    // Another peer makes the channel busy: 200-byte messages as fast as the
    // broker takes them, bounded in count and time, until the broker gives up
    // on the slow peer.
    let mut publisher = welcomed_fabric_peer(&cluster, 0, "busy-publisher").await;
    let mut batch = BytesMut::new();
    let payload = Bytes::from(vec![b'x'; 200]);
    for _ in 0..1_000 {
        framing::encode(
            &FabricFrame::Publish { channel: busy.into(), payload: payload.clone(), ack: None },
            &mut batch,
        );
    }
    let batch = batch.freeze();
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut slow_closed = 0;
    while sent < 2_000_000 && started.elapsed() < Duration::from_secs(30) {
        publisher.send_raw(&batch).await.expect("the publishing peer is not the slow one");
        sent += 1_000;
        if sent % 20_000 == 0 {
            slow_closed = counter(&cluster.broker_health(0).await, &["stats", "closed_links", "slow_link"]);
            if slow_closed > 0 {
                break;
            }
        }
    }
    println!("slow peer: closed as slow after {sent} messages on {busy} in {:?}", started.elapsed());
    assert!(slow_closed >= 1, "the slow peer was never disconnected ({sent} messages sent)");

    // Its socket is closed: what was buffered drains, then EOF or reset.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            match slow_rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the slow peer's connection is still open");
    pinger.abort();
    let h = cluster.broker_health(0).await;
    assert_eq!(counter(&h, &["stats", "links_open"]), 3, "the two frontends and the publishing peer remain: {h}");
    assert_cluster_kept_delivering(load, "slow fabric peer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_peer_with_a_wrong_cluster_key_is_refused_by_the_state_server_while_the_cluster_keeps_delivering() {
    let (cluster, load) = cluster_under_load().await;
    let before = cluster.status().await;
    let mut peer = RawPeer::connect(cluster.state_control()).await.expect("connects");
    let hello = ControlFrame::Hello {
        key: "not-the-cluster-key".into(),
        node: "intruder".into(),
        role: Role::Frontend,
        version: control::VERSION,
        committed: None,
    };
    peer.send(&hello).await.expect("sends Hello");
    match peer.recv::<ControlFrame>(WAIT).await.expect("an answer or a hang-up") {
        Read::Frame(ControlFrame::Refused { reason }) => {
            println!("wrong control key: refused ({reason})");
            peer.wait_closed(WAIT).await.expect("closed after Refused");
        }
        Read::Closed => {}
        Read::Frame(other) => panic!("a wrong key must be refused, got {other:?}"),
    }
    let after = cluster.wait_for_status(WAIT, "the refusal counted", |s| s.refused_links > before.refused_links).await;
    assert!(after.frontends.iter().all(|f| f.id != "intruder"), "the intruder is not a member: {after:#?}");
    assert_eq!((after.epoch, after.table()), (before.epoch, before.table()), "nothing changed");
    assert_cluster_kept_delivering(load, "wrong control key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_on_the_control_port_get_the_peer_disconnected_while_the_cluster_keeps_delivering()
{
    let (cluster, load) = cluster_under_load().await;
    let before = cluster.status().await;
    let garbage = [&8u32.to_be_bytes()[..], &[0xc1; 8]].concat();
    for (what, bytes) in [("garbage", garbage), ("4 GiB prefix", u32::MAX.to_be_bytes().to_vec())] {
        let mut peer = RawPeer::connect(cluster.state_control()).await.expect("connects");
        peer.send_raw(&bytes).await.expect("sends");
        match peer.recv::<ControlFrame>(WAIT).await {
            Ok(Read::Frame(ControlFrame::Refused { reason })) => {
                println!("{what} on the control port: refused ({reason})");
                peer.wait_closed(WAIT).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            Ok(Read::Closed) => {}
            Ok(Read::Frame(other)) => panic!("{what}: expected a refusal, got {other:?}"),
            Err(e) => panic!("{what}: {e}"),
        }
    }
    let after = cluster.status().await;
    assert_eq!((after.epoch, after.table()), (before.epoch, before.table()), "nothing changed");
    assert_cluster_kept_delivering(load, "bad control frames").await;
}
