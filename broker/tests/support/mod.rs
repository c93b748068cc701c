//! One broker in-process on port 0, and a hand-driven fabric link that
//! writes `FabricFrame`s (or any bytes) itself, so tests can send what no
//! real frontend would.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::{Broker, Config, Node};
use bytes::{Bytes, BytesMut};
use protocol::fabric::{self, FabricFrame};
use protocol::framing::{self, MAX_FRAME_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestBroker {
    pub fabric: SocketAddr,
    pub admin: SocketAddr,
    pub id: String,
    pub node: Arc<Node>,
    pub shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestBroker {
    pub async fn start(config: Config) -> TestBroker {
        let b = Broker::bind(config).await.expect("binds");
        let (fabric, admin, id, node) = (b.fabric_addr(), b.admin_addr(), b.id().to_owned(), b.node());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(b.run(shutdown.clone()));
        TestBroker { fabric, admin, id, node, shutdown, task: Some(task) }
    }

    pub async fn default() -> TestBroker {
        Self::start(Config::for_test()).await
    }

    pub async fn link(&self) -> Link {
        Link::welcomed(self.fabric, "test-key").await
    }

    /// Takes the run task, to await its end.
    pub fn task(&mut self) -> tokio::task::JoinHandle<()> {
        self.task.take().expect("running")
    }

    /// Stops the broker and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t).await.expect("broker stops").unwrap();
        }
    }

    /// A subscriber and a publisher on new links: proves the broker still
    /// serves others after something bad happened on one link.
    pub async fn assert_still_serves(&self) {
        let mut sub = self.link().await;
        sub.subscribe("watch").await;
        let mut publisher = self.link().await;
        publisher
            .send(&FabricFrame::Publish {
                channel: "watch".into(),
                payload: Bytes::from_static(b"\"still here\""),
                ack: Some(1),
            })
            .await;
        assert_eq!(publisher.recv().await, FabricFrame::PublishAck { id: 1 });
        assert_eq!(sub.recv().await, message("watch", b"\"still here\""));
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn message(channel: &str, payload: &'static [u8]) -> FabricFrame {
    FabricFrame::Message { channel: channel.into(), payload: Bytes::from_static(payload) }
}

pub fn publish(channel: &str, payload: &'static [u8], ack: Option<u64>) -> FabricFrame {
    FabricFrame::Publish { channel: channel.into(), payload: Bytes::from_static(payload), ack }
}

pub fn encoded(frame: &FabricFrame) -> Bytes {
    let mut out = BytesMut::new();
    framing::encode(frame, &mut out);
    out.freeze()
}

/// A fabric link driven by hand.
pub struct Link {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Link {
    pub async fn connect(addr: SocketAddr) -> Link {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Link { stream, buf: BytesMut::new() }
    }

    /// Connects, says `Hello` with `key`, and expects `Welcome`.
    pub async fn welcomed(addr: SocketAddr, key: &str) -> Link {
        let mut link = Self::connect(addr).await;
        link.hello(key).await;
        match link.recv().await {
            FabricFrame::Welcome { node } => assert!(node.starts_with("broker-"), "{node}"),
            other => panic!("expected Welcome, got {other:?}"),
        }
        link
    }

    pub async fn hello(&mut self, key: &str) {
        self.send(&FabricFrame::Hello { key: key.into(), node: "test-frontend".into(), version: fabric::VERSION })
            .await;
    }

    pub async fn send(&mut self, frame: &FabricFrame) {
        self.send_raw(&encoded(frame)).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Subscribes and waits until the broker has it in place (a barrier).
    pub async fn subscribe(&mut self, channel: &str) {
        self.send(&FabricFrame::Subscribe { channel: channel.into() }).await;
        self.barrier(u64::MAX).await;
    }

    pub async fn barrier(&mut self, id: u64) {
        self.send(&FabricFrame::Barrier { id }).await;
        assert_eq!(self.recv().await, FabricFrame::BarrierAck { id });
    }

    /// The next whole frame as raw bytes, length prefix included; `None` at end of stream.
    pub async fn try_recv_raw(&mut self) -> Option<Bytes> {
        let read = async {
            loop {
                if self.buf.len() >= 4 {
                    let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                    assert!(len <= MAX_FRAME_BYTES, "frame of {len} bytes from the broker");
                    if self.buf.len() >= 4 + len {
                        return Some(self.buf.split_to(4 + len).freeze());
                    }
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(WAIT, read).await.expect("a frame or the end of the stream in time")
    }

    pub async fn recv_raw(&mut self) -> Bytes {
        self.try_recv_raw().await.expect("a frame, not the end of the stream")
    }

    pub async fn try_recv(&mut self) -> Option<FabricFrame> {
        let raw = self.try_recv_raw().await?;
        let mut buf = BytesMut::from(&raw[..]);
        Some(framing::decode(&mut buf, MAX_FRAME_BYTES).unwrap().unwrap())
    }

    pub async fn recv(&mut self) -> FabricFrame {
        self.try_recv().await.expect("a frame, not the end of the stream")
    }

    /// Reads until the broker closes the link; returns what came before.
    pub async fn until_closed(&mut self) -> Vec<FabricFrame> {
        let mut frames = Vec::new();
        while let Some(f) = self.try_recv().await {
            frames.push(f);
        }
        frames
    }

    /// Asserts that nothing arrives for a short while.
    pub async fn assert_quiet(&mut self) {
        let r = tokio::time::timeout(Duration::from_millis(200), self.stream.read_buf(&mut self.buf)).await;
        assert!(r.is_err() && self.buf.is_empty(), "unexpected bytes: {:?}", self.buf);
    }
}

/// Polls `cond` until it holds, or fails after `WAIT`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET path` on `addr`: the status and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out)).await.unwrap().unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}
