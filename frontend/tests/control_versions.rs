//! A frontend of control protocol 2 against a state server that speaks only version 1 (a fake one that
//! behaves as the version-1 code did: it refuses any other version in `Hello`, and would drop the link on
//! a frame it cannot decode). The frontend must say `Hello` again at version 1, send that server nothing
//! but version-1 frames, and answer the cluster view from its own table.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use frontend::upstream::ClusterConfig;
use frontend::Config;
use protocol::control::{ControlFrame, MIN_VERSION, VERSION};
use protocol::framing::{decode, encode, MAX_FRAME_BYTES};
use protocol::slots::{BrokerInfo, SlotTable};
use support::TestNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "versions-key";

async fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Option<ControlFrame> {
    loop {
        if let Some(f) = decode::<ControlFrame>(buf, MAX_FRAME_BYTES).unwrap() {
            return Some(f);
        }
        match tokio::time::timeout(support::WAIT, s.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
    }
}

async fn write_frame(s: &mut TcpStream, f: &ControlFrame) {
    let mut out = BytesMut::new();
    encode(f, &mut out);
    s.write_all(&out).await.unwrap();
}

#[tokio::test]
async fn against_a_version_1_state_server_the_frontend_falls_back_and_sends_only_version_1_frames() {
    let old_server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = Config::for_test();
    config.cluster = Some(ClusterConfig::for_test(old_server.local_addr().unwrap().to_string(), KEY.into()));
    let node = TestNode::start(config, frontend::demo_app()).await;

    // First connection: Hello at version 2, refused the way a version-1 server refuses it.
    let (mut s, _) = tokio::time::timeout(support::WAIT, old_server.accept()).await.unwrap().unwrap();
    let mut buf = BytesMut::new();
    match read_frame(&mut s, &mut buf).await {
        Some(ControlFrame::Hello { version, .. }) => assert_eq!(version, VERSION),
        other => panic!("expected Hello, got {other:?}"),
    }
    let reason = format!("control protocol version {VERSION}; this server speaks 1");
    write_frame(&mut s, &ControlFrame::Refused { reason }).await;
    drop(s);

    // At once (no back-off), a second connection at version 1, which is welcomed.
    let refused = Instant::now();
    let (mut s, _) = tokio::time::timeout(support::WAIT, old_server.accept()).await.unwrap().unwrap();
    assert!(refused.elapsed() < Duration::from_secs(1), "the fallback waits for nothing");
    let mut buf = BytesMut::new();
    match read_frame(&mut s, &mut buf).await {
        Some(ControlFrame::Hello { version, key, .. }) => assert_eq!((version, key.as_str()), (MIN_VERSION, KEY)),
        other => panic!("expected Hello, got {other:?}"),
    }
    let table = SlotTable { epoch: 3, slots: vec![BrokerInfo { id: "b-old".into(), addr: "127.0.0.1:9".into() }] };
    write_frame(&mut s, &ControlFrame::Welcome { table }).await;

    // A version-1 server gets heartbeats only (control heartbeat: 200 ms in tests), never a load report.
    let mut beats = 0;
    while beats < 5 {
        match read_frame(&mut s, &mut buf).await {
            Some(ControlFrame::Heartbeat) => {
                beats += 1;
                // As the server does: heartbeats both ways, or the frontend thinks it silent.
                write_frame(&mut s, &ControlFrame::Heartbeat).await;
            }
            other => panic!("a version-1 server must get only version-1 frames, got {other:?}"),
        }
    }

    // The cluster view comes from the frontend's own table, marked stale, without waiting.
    let up = node.node.upstream.clone().unwrap();
    let asked = Instant::now();
    let view = up.cluster_status().await;
    assert!(asked.elapsed() < Duration::from_millis(500), "no question to an old server: {:?}", asked.elapsed());
    assert_eq!(view["stale"], true, "{view}");
    assert!(view["staleReason"].as_str().unwrap().contains("too old"), "{view}");
    assert_eq!(view["epoch"], 3);
    assert_eq!(view["slots"][0]["id"], "b-old");
    assert_eq!(view["frontends"][0]["id"], up.node_id());
    // Still nothing but heartbeats (no status question went out).
    for _ in 0..2 {
        assert_eq!(read_frame(&mut s, &mut buf).await, Some(ControlFrame::Heartbeat));
        write_frame(&mut s, &ControlFrame::Heartbeat).await;
    }
    node.stop().await;
}
