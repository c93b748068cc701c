//! The control link against a scripted fake state server: a TcpListener in
//! the test speaking `ControlFrame`s.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker::Config;
use bytes::BytesMut;
use protocol::control::{self, ControlFrame, Role};
use protocol::framing::{self, MAX_FRAME_BYTES};
use protocol::slots::{BrokerInfo, SlotTable};
use support::{http_get, message, publish, TestBroker, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A fake state server's listener.
struct FakeStateServer {
    listener: TcpListener,
}

impl FakeStateServer {
    async fn bind() -> Self {
        Self { listener: TcpListener::bind("127.0.0.1:0").await.unwrap() }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// The next connection, as a raw stream.
    async fn accept_raw(&self) -> Connection {
        let (stream, _) =
            tokio::time::timeout(WAIT, self.listener.accept()).await.expect("the broker connects").unwrap();
        Connection { stream, buf: BytesMut::new() }
    }

    /// The next connection, served by a task that answers heartbeats, so the
    /// test only sees (and sends) the frames that matter.
    async fn accept(&self) -> Session {
        let mut conn = self.accept_raw().await;
        let (to_broker, mut outbox) = mpsc::channel::<ControlFrame>(16);
        let (inbox, from_broker) = mpsc::channel::<ControlFrame>(16);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    f = outbox.recv() => match f {
                        Some(f) => conn.send(&f).await,
                        None => return,
                    },
                    f = conn.try_recv() => match f {
                        // A load report is a heartbeat too (control protocol 2).
                        Some(ControlFrame::Heartbeat | ControlFrame::Load { .. }) => {
                            conn.send(&ControlFrame::Heartbeat).await;
                        }
                        Some(f) => {
                            if inbox.send(f).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                }
            }
        });
        Session { to_broker, from_broker }
    }
}

struct Connection {
    stream: TcpStream,
    buf: BytesMut,
}

impl Connection {
    async fn send(&mut self, frame: &ControlFrame) {
        let mut out = BytesMut::new();
        framing::encode(frame, &mut out);
        let _ = self.stream.write_all(&out).await;
    }

    /// The next frame; `None` once the broker closed the link. Cancel-safe.
    async fn try_recv(&mut self) -> Option<ControlFrame> {
        loop {
            if let Some(f) = framing::decode(&mut self.buf, MAX_FRAME_BYTES).unwrap() {
                return Some(f);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

struct Session {
    to_broker: mpsc::Sender<ControlFrame>,
    from_broker: mpsc::Receiver<ControlFrame>,
}

impl Session {
    async fn send(&self, frame: ControlFrame) {
        self.to_broker.send(frame).await.unwrap();
    }

    /// The next frame other than a heartbeat.
    async fn recv(&mut self) -> ControlFrame {
        tokio::time::timeout(WAIT, self.from_broker.recv()).await.expect("a frame in time").expect("link open")
    }
}

fn config(state: &FakeStateServer) -> Config {
    Config {
        state_server: Some(state.addr().to_string()),
        heartbeat: Duration::from_millis(100),
        leave_drain: Duration::from_millis(300),
        ..Config::for_test()
    }
}

fn table(epoch: u64, brokers: &[(&str, &str)]) -> SlotTable {
    SlotTable {
        epoch,
        slots: brokers.iter().map(|(id, addr)| BrokerInfo { id: (*id).into(), addr: (*addr).into() }).collect(),
    }
}

async fn wait_ready(admin: SocketAddr, want: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _) = http_get(admin, "/ready").await;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "/ready stayed {status}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_broker_joins_with_hello_and_leaves_after_a_commit_without_it_plus_the_drain() {
    let state = FakeStateServer::bind().await;
    let cfg = config(&state);
    let drain = cfg.leave_drain;
    let mut b = TestBroker::start(cfg).await;
    let mut session = state.accept().await;

    let advertised = b.fabric.to_string();
    match session.recv().await {
        ControlFrame::Hello { key, node, role, version, committed } => {
            assert_eq!(key, "test-key");
            assert_eq!(node, b.id);
            assert_eq!(role, Role::Broker { addr: advertised.clone() });
            assert_eq!(version, control::VERSION);
            assert_eq!(committed, None);
        }
        other => panic!("expected Hello, got {other:?}"),
    }
    assert_eq!(http_get(b.admin, "/ready").await.0, 503, "not ready before it is in the table");
    let with_it = table(1, &[("other", "127.0.0.1:1"), (&b.id, &advertised)]);
    session.send(ControlFrame::Welcome { table: with_it }).await;
    wait_ready(b.admin, 200).await;

    let mut link = b.link().await;
    link.subscribe("c").await;
    let task = b.task();
    b.shutdown.cancel();
    assert_eq!(session.recv().await, ControlFrame::Leave);
    wait_ready(b.admin, 503).await;

    // Until the state server commits a table without it, the broker keeps serving.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the broker left before the commit");
    link.send(&publish("c", b"still", Some(1))).await;
    assert_eq!(link.recv().await, message("c", b"still"));

    let committed_at = Instant::now();
    session.send(ControlFrame::Commit { table: table(2, &[("other", "127.0.0.1:1")]) }).await;
    tokio::time::timeout(WAIT, task).await.expect("stops after the commit and the drain").unwrap();
    let took = committed_at.elapsed();
    assert!(took >= drain, "stopped {took:?} after the commit, before the drain of {drain:?}");
    let rest = link.until_closed().await;
    assert_eq!(rest.first(), Some(&protocol::fabric::FabricFrame::PublishAck { id: 1 }));
}

#[tokio::test]
async fn the_broker_reconnects_with_its_committed_table_when_the_state_server_goes_away() {
    let state = FakeStateServer::bind().await;
    let b = TestBroker::start(config(&state)).await;
    let mut session = state.accept().await;
    assert!(matches!(session.recv().await, ControlFrame::Hello { committed: None, .. }));
    let t = table(3, &[(&b.id, &b.fabric.to_string())]);
    session.send(ControlFrame::Welcome { table: t.clone() }).await;
    wait_ready(b.admin, 200).await;
    drop(session);

    let mut session = state.accept().await;
    assert!(matches!(session.recv().await, ControlFrame::Hello { committed: Some(c), .. } if c == t));
    assert_eq!(http_get(b.admin, "/ready").await.0, 200, "still in the last committed table");
    let t4 = table(4, &[("other", "127.0.0.1:1"), (&b.id, &b.fabric.to_string())]);
    session.send(ControlFrame::Welcome { table: t4 }).await;
    session.send(ControlFrame::Commit { table: table(5, &[("other", "127.0.0.1:1")]) }).await;
    wait_ready(b.admin, 503).await;
}

#[tokio::test]
async fn a_silent_state_server_is_dropped_and_a_refusal_retried() {
    let state = FakeStateServer::bind().await;
    let b = TestBroker::start(config(&state)).await;

    // Welcomed, then never a word: dropped after three heartbeat intervals.
    let mut silent = state.accept_raw().await;
    assert!(matches!(silent.try_recv().await, Some(ControlFrame::Hello { .. })));
    silent.send(&ControlFrame::Welcome { table: SlotTable::default() }).await;
    let started = Instant::now();
    while let Some(f) = silent.try_recv().await {
        assert!(matches!(f, ControlFrame::Load { .. }), "heartbeats (load reports at version 2), got {f:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(250), "dropped after {:?}", started.elapsed());

    // Refused: logged, and tried again with back-off.
    let mut refused = state.accept_raw().await;
    assert!(matches!(refused.try_recv().await, Some(ControlFrame::Hello { .. })));
    refused.send(&ControlFrame::Refused { reason: "wrong key".into() }).await;
    let mut again = state.accept().await;
    assert!(matches!(again.recv().await, ControlFrame::Hello { .. }));
    drop(b);
}

#[tokio::test]
async fn without_a_commit_the_broker_leaves_after_the_leave_timeout() {
    let state = FakeStateServer::bind().await;
    let cfg = Config { leave_timeout: Duration::from_millis(400), ..config(&state) };
    let mut b = TestBroker::start(cfg).await;
    let mut session = state.accept().await;
    assert!(matches!(session.recv().await, ControlFrame::Hello { .. }));
    session.send(ControlFrame::Welcome { table: table(1, &[(&b.id, &b.fabric.to_string())]) }).await;
    wait_ready(b.admin, 200).await;
    let task = b.task();
    let started = Instant::now();
    b.shutdown.cancel();
    assert_eq!(session.recv().await, ControlFrame::Leave);
    tokio::time::timeout(WAIT, task).await.expect("stops after the leave timeout").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(700), "stopped after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_broker_that_never_joined_the_table_leaves_after_the_drain_only() {
    let state = FakeStateServer::bind().await;
    let mut b = TestBroker::start(config(&state)).await;
    let mut session = state.accept().await;
    assert!(matches!(session.recv().await, ControlFrame::Hello { .. }));
    session.send(ControlFrame::Welcome { table: table(1, &[("other", "127.0.0.1:1")]) }).await;
    support::wait_until("welcomed", || b.node.status.epoch() == 1).await;
    let task = b.task();
    let started = Instant::now();
    b.shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.expect("stops").unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "stopped after {:?}", started.elapsed());
}

#[tokio::test]
async fn the_broker_reports_its_links_and_channels_in_place_of_heartbeats() {
    let state = FakeStateServer::bind().await;
    let b = TestBroker::start(config(&state)).await;
    let mut conn = state.accept_raw().await;
    assert!(matches!(conn.try_recv().await, Some(ControlFrame::Hello { version: control::VERSION, .. })));
    conn.send(&ControlFrame::Welcome { table: table(1, &[(&b.id, &b.fabric.to_string())]) }).await;
    let mut link = b.link().await;
    link.subscribe("a").await;
    link.subscribe("b").await;
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout(WAIT, conn.try_recv()).await.expect("a frame in time") {
            Some(ControlFrame::Load { load }) if load.connections == 1 && load.channels == 2 => break,
            Some(ControlFrame::Load { .. }) => {}
            other => panic!("a version-2 link carries load reports, got {other:?}"),
        }
        conn.send(&ControlFrame::Heartbeat).await;
        assert!(Instant::now() < deadline, "no load report with 1 link and 2 channels");
    }
}

#[tokio::test]
async fn against_a_version_1_state_server_the_broker_says_hello_again_at_version_1_and_only_heartbeats() {
    let state = FakeStateServer::bind().await;
    let b = TestBroker::start(config(&state)).await;
    let mut conn = state.accept_raw().await;
    assert!(matches!(conn.try_recv().await, Some(ControlFrame::Hello { version: control::VERSION, .. })));
    conn.send(&ControlFrame::Refused { reason: "control protocol version 2; this server speaks 1".into() }).await;
    drop(conn);
    let mut conn = state.accept_raw().await;
    assert!(matches!(conn.try_recv().await, Some(ControlFrame::Hello { version: control::MIN_VERSION, .. })));
    conn.send(&ControlFrame::Welcome { table: table(1, &[(&b.id, &b.fabric.to_string())]) }).await;
    wait_ready(b.admin, 200).await;
    for _ in 0..5 {
        let f = tokio::time::timeout(WAIT, conn.try_recv()).await.expect("a frame in time");
        assert_eq!(f, Some(ControlFrame::Heartbeat), "a version-1 server gets version-1 frames only");
        conn.send(&ControlFrame::Heartbeat).await;
    }
}
