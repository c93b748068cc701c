//! One frontend node in-process on port 0, and a raw WebSocket client that
//! speaks SocketCluster packets by hand, so tests can send what no real
//! client would.

#![allow(dead_code, clippy::unwrap_used)]

pub mod chat;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use frontend::{App, Config, Frontend, Node};
use futures_util::{SinkExt, StreamExt};
use protocol::Codec;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestNode {
    pub json: SocketAddr,
    pub min_bin: SocketAddr,
    pub node: Arc<Node>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestNode {
    pub async fn start(config: Config, app: App) -> TestNode {
        let fe = Frontend::bind(config, app).await.expect("binds");
        let json = fe.addr(Codec::Json).expect("json listener");
        let min_bin = fe.addr(Codec::MinBin).expect("min-bin listener");
        let node = fe.node();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(fe.run(shutdown.clone()));
        TestNode { json, min_bin, node, shutdown, task: Some(task) }
    }

    pub async fn default() -> TestNode {
        Self::start(Config::for_test(), frontend::demo_app()).await
    }

    pub fn addr(&self, codec: Codec) -> SocketAddr {
        match codec {
            Codec::Json => self.json,
            Codec::MinBin => self.min_bin,
        }
    }

    /// Stops the node and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t).await.expect("node stops").unwrap();
        }
    }

    /// A subscriber on `watch` and a publisher: proves the node still serves
    /// other sockets after something bad happened on one.
    pub async fn assert_still_serves(&self) {
        let mut sub = Client::handshake(self.json, Codec::Json).await;
        sub.subscribe("watch").await;
        let mut publisher = Client::handshake(self.min_bin, Codec::MinBin).await;
        let ack = publisher.invoke("#publish", json!({"channel": "watch", "data": "still here"})).await;
        assert!(ack.get("error").is_none(), "publish refused: {ack}");
        let got = sub.next_event("#publish").await;
        assert_eq!(got["data"], json!({"channel": "watch", "data": "still here"}));
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A hand-driven SocketCluster client.
pub struct Client {
    pub ws: Ws,
    pub codec: Codec,
    next_cid: u64,
    inbox: VecDeque<Value>,
    /// Answer server pings (set false to play a dead peer).
    pub answer_pings: bool,
}

impl Client {
    /// Opens the WebSocket, sends nothing.
    pub async fn connect(addr: SocketAddr, codec: Codec) -> Client {
        let url = format!("ws://{addr}/socketcluster/");
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connects");
        Client { ws, codec, next_cid: 1, inbox: VecDeque::new(), answer_pings: true }
    }

    /// Connects and completes `#handshake`; returns the client.
    pub async fn handshake(addr: SocketAddr, codec: Codec) -> Client {
        let mut c = Client::connect(addr, codec).await;
        let reply = c.invoke("#handshake", json!({"authToken": null})).await;
        assert!(reply["data"]["id"].is_string(), "bad handshake reply {reply}");
        c
    }

    /// Encodes a packet given in its uncompressed JSON form with this client's codec.
    pub fn encode(&self, packet: &Value) -> Message {
        match self.codec {
            Codec::Json => Message::text(packet.to_string()),
            Codec::MinBin => Message::Binary(Bytes::from(min_bin_encode(packet))),
        }
    }

    pub async fn send(&mut self, packet: Value) {
        let m = self.encode(&packet);
        self.send_raw(m).await;
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// Sends an invoke and waits for its reply packet (`{rid, data?, error?}`).
    pub async fn invoke(&mut self, event: &str, data: Value) -> Value {
        let cid = self.next_cid;
        self.next_cid += 1;
        self.send(json!({"event": event, "data": data, "cid": cid})).await;
        self.next_matching(|p| p["rid"] == cid).await
    }

    pub async fn transmit(&mut self, event: &str, data: Value) {
        self.send(json!({"event": event, "data": data})).await;
    }

    pub async fn subscribe(&mut self, channel: &str) {
        let r = self.invoke("#subscribe", json!({"channel": channel})).await;
        assert!(r.get("error").is_none(), "subscribe {channel} refused: {r}");
    }

    pub async fn next_event(&mut self, event: &str) -> Value {
        self.next_matching(|p| p["event"] == event).await
    }

    /// The next packet for which `pred` holds; earlier others are dropped.
    /// Fails after `WAIT` in all (pings do not extend the wait).
    pub async fn next_matching(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let p = tokio::time::timeout_at(deadline, self.next_packet())
                .await
                .expect("the expected packet in time")
                .unwrap_or_else(|| panic!("connection closed while waiting"));
            if pred(&p) {
                return p;
            }
        }
    }

    /// The next packet (batches are split), or `None` once the server closed.
    pub async fn next_packet(&mut self) -> Option<Value> {
        loop {
            if let Some(p) = self.inbox.pop_front() {
                return Some(p);
            }
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("a packet in time");
            let value = match msg? {
                Ok(Message::Text(t)) if t.is_empty() => {
                    if self.answer_pings {
                        self.ws.send(Message::text("")).await.ok()?;
                    }
                    continue;
                }
                Ok(Message::Text(t)) => serde_json::from_str(&t).expect("server sent JSON"),
                Ok(Message::Binary(b)) => min_bin_decode(&b),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            };
            match value {
                Value::Array(items) => self.inbox.extend(items),
                v => self.inbox.push_back(v),
            }
        }
    }

    /// Reads until the server closes; returns the close code (1005 for a
    /// close frame without one, 1006 for a dropped connection).
    pub async fn closed_with(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.expect("closed in time");
            match msg {
                None | Some(Err(_)) => return 1006,
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(Message::Text(t))) if t.is_empty() && self.answer_pings => {
                    let _ = self.ws.send(Message::text("")).await;
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Uncompressed packet → `sc-codec-min-bin` bytes (the client-side encoding).
pub fn min_bin_encode(packet: &Value) -> Vec<u8> {
    let compressed = match packet {
        Value::Array(items) => Value::Array(items.iter().map(compress).collect()),
        p => compress(p),
    };
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &to_rmpv(&compressed)).unwrap();
    out
}

fn compress(p: &Value) -> Value {
    let cid = p.get("cid").cloned();
    if p["event"] == "#publish" && !p["data"].is_null() {
        let mut arr = vec![p["data"]["channel"].clone(), p["data"]["data"].clone()];
        arr.extend(cid);
        json!({ "p": arr })
    } else if let Some(e) = p.get("event") {
        let mut arr = vec![e.clone(), p.get("data").cloned().unwrap_or(Value::Null)];
        arr.extend(cid);
        json!({ "e": arr })
    } else {
        p.clone()
    }
}

fn to_rmpv(v: &Value) -> rmpv::Value {
    match v {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => rmpv::Value::from(u),
            (_, Some(i)) => rmpv::Value::from(i),
            _ => rmpv::Value::F64(n.as_f64().unwrap()),
        },
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::Array(a) => rmpv::Value::Array(a.iter().map(to_rmpv).collect()),
        Value::Object(m) => {
            rmpv::Value::Map(m.iter().map(|(k, v)| (rmpv::Value::from(k.as_str()), to_rmpv(v))).collect())
        }
    }
}

/// Server bytes → uncompressed packets, as `sc-codec-min-bin` decodes them.
pub fn min_bin_decode(bytes: &[u8]) -> Value {
    let v = rmpv::decode::read_value(&mut &bytes[..]).expect("server sent MessagePack");
    let v = from_rmpv(v);
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(expand).collect()),
        p => expand(p),
    }
}

fn expand(p: Value) -> Value {
    if let Some(r) = p.get("r") {
        let mut o = json!({"rid": r[0]});
        if !r[1].is_null() {
            o["error"] = r[1].clone();
        }
        if !r[2].is_null() {
            o["data"] = r[2].clone();
        }
        o
    } else if let Some(e) = p.get("e") {
        json!({"event": e[0], "data": e[1]})
    } else if let Some(pp) = p.get("p") {
        json!({"event": "#publish", "data": {"channel": pp[0], "data": pp[1]}})
    } else {
        p
    }
}

fn from_rmpv(v: rmpv::Value) -> Value {
    match v {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => i.as_i64().map(Value::from).or_else(|| i.as_u64().map(Value::from)).unwrap(),
        rmpv::Value::F32(f) => json!(f),
        rmpv::Value::F64(f) => json!(f),
        rmpv::Value::String(s) => Value::String(s.into_str().unwrap()),
        rmpv::Value::Binary(b) => json!({"binary": b}),
        rmpv::Value::Array(a) => Value::Array(a.into_iter().map(from_rmpv).collect()),
        rmpv::Value::Map(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), from_rmpv(v))).collect())
        }
        rmpv::Value::Ext(..) => Value::Null,
    }
}

/// Invokes `event` and returns the reply's `data`, failing the test on an error reply.
pub async fn call(c: &mut Client, event: &str, data: Value) -> Value {
    let r = c.invoke(event, data).await;
    assert!(r.get("error").is_none(), "{event} failed: {r}");
    r["data"].clone()
}

/// Invokes `event` and returns the reply's `error`, failing the test when it succeeded.
pub async fn call_err(c: &mut Client, event: &str, data: Value) -> Value {
    let r = c.invoke(event, data).await;
    assert!(r.get("error").is_some(), "{event} should fail: {r}");
    r["error"].clone()
}
