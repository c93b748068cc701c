//! A state server in-process on port 0, fake nodes speaking hand-written
//! control frames over real TCP, and a tiny HTTP GET.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use protocol::control::{ControlFrame, Role, VERSION};
use protocol::framing::{decode, encode, MAX_FRAME_BYTES};
use protocol::slots::SlotTable;
use state_server::{Config, StateServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(5);
pub const KEY: &str = "test-cluster-key";

pub struct TestServer {
    pub addr: SocketAddr,
    pub http: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let server = StateServer::bind(config).await.expect("binds");
        let (addr, http) = (server.addr(), server.http_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        TestServer { addr, http, shutdown, task: Some(task) }
    }

    pub async fn default() -> TestServer {
        Self::start(Config::for_test(KEY)).await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(WAIT, t).await.expect("server stops").unwrap();
        }
    }

    pub async fn status(&self) -> serde_json::Value {
        let (code, body) = get(self.http, "/status").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `/status` until `check` holds; fails with the last status seen.
    pub async fn wait_status(&self, what: &str, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.status().await;
            if check(&s) {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last status: {s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn hello(key: &str, node: &str, role: Role, committed: Option<SlotTable>) -> ControlFrame {
    ControlFrame::Hello { key: key.into(), node: node.into(), role, version: VERSION, committed }
}

pub fn broker_role(id: &str) -> Role {
    Role::Broker { addr: format!("{id}.test:9000") }
}

/// A node over real TCP. It answers every `Heartbeat` by itself (a live
/// node); every other frame it receives is queued for the test.
pub struct FakeNode {
    pub name: String,
    out: mpsc::UnboundedSender<ControlFrame>,
    inbox: mpsc::UnboundedReceiver<ControlFrame>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeNode {
    /// Connects and sends `first` (normally a `Hello`).
    pub async fn connect(addr: SocketAddr, name: &str, first: ControlFrame) -> FakeNode {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<ControlFrame>();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(f) = out_rx.recv().await {
                let mut buf = BytesMut::new();
                encode(&f, &mut buf);
                if wr.write_all(&buf).await.is_err() {
                    return;
                }
            }
        });
        let answer = out.clone();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            loop {
                while let Some(f) = decode::<ControlFrame>(&mut buf, MAX_FRAME_BYTES).unwrap() {
                    if f == ControlFrame::Heartbeat {
                        let _ = answer.send(ControlFrame::Heartbeat);
                    } else if inbox_tx.send(f).is_err() {
                        return;
                    }
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        out.send(first).unwrap();
        FakeNode { name: name.into(), out, inbox, tasks: vec![writer, reader] }
    }

    /// Connects with a good `Hello` and checks the `Welcome`; returns its table.
    pub async fn join(addr: SocketAddr, name: &str, role: Role, committed: Option<SlotTable>) -> (FakeNode, SlotTable) {
        let mut n = FakeNode::connect(addr, name, hello(KEY, name, role, committed)).await;
        match n.recv().await {
            Some(ControlFrame::Welcome { table }) => (n, table),
            other => panic!("{name}: expected Welcome, got {other:?}"),
        }
    }

    pub fn send(&self, f: ControlFrame) {
        let _ = self.out.send(f);
    }

    /// The next frame other than a heartbeat; `None` when the server closed the link.
    pub async fn recv(&mut self) -> Option<ControlFrame> {
        tokio::time::timeout(WAIT, self.inbox.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: no frame within {WAIT:?}", self.name))
    }

    /// Asserts nothing but heartbeats arrives for `d`.
    pub async fn expect_quiet(&mut self, d: Duration) {
        if let Ok(f) = tokio::time::timeout(d, self.inbox.recv()).await {
            panic!("{}: expected nothing, got {f:?}", self.name);
        }
    }

    pub async fn expect_prepare(&mut self) -> SlotTable {
        match self.recv().await {
            Some(ControlFrame::Prepare { table }) => table,
            other => panic!("{}: expected Prepare, got {other:?}", self.name),
        }
    }

    pub async fn expect_commit(&mut self) -> SlotTable {
        match self.recv().await {
            Some(ControlFrame::Commit { table }) => table,
            other => panic!("{}: expected Commit, got {other:?}", self.name),
        }
    }

    /// Drops the connection abruptly.
    pub fn kill(self) {}
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn ids(t: &SlotTable) -> Vec<&str> {
    t.slots.iter().map(|b| b.id.as_str()).collect()
}

/// `GET path`; returns the status code and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.expect("response in time").unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    (code, body.to_owned())
}
