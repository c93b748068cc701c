//! A hand-driven SocketCluster protocol v2 client (JSON codec): handshake,
//! invokes with `cid`/`rid`, transmits, subscriptions (pipelined, so a
//! thousand of them cost one round trip), and pings answered with an empty
//! text frame as `socketcluster-client` does.
//!
//! Every wait is bounded by [`WAIT`]; failures are errors with context, not
//! panics, so load tasks can count a closed socket instead of dying.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest single wait of a client operation.
pub const WAIT: Duration = Duration::from_secs(10);
/// Packets per batch frame the client sends (the frontend's default limit is 256).
pub const MAX_BATCH: usize = 200;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    url: String,
    next_cid: u64,
    /// Packets received but not consumed yet (batches are split into it).
    inbox: VecDeque<Value>,
}

impl Client {
    /// Opens the WebSocket; sends nothing.
    ///
    /// # Errors
    /// When the connection or the upgrade fails or takes longer than [`WAIT`].
    pub async fn connect(url: &str) -> Result<Client, String> {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| format!("{url}: no upgrade within {WAIT:?}"))?
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Client { ws, url: url.to_owned(), next_cid: 1, inbox: VecDeque::new() })
    }

    /// Connects and completes `#handshake`.
    ///
    /// # Errors
    /// As [`Client::connect`], or when the handshake reply has no socket id.
    pub async fn handshake(url: &str) -> Result<Client, String> {
        let mut c = Client::connect(url).await?;
        let reply = c.invoke("#handshake", json!({})).await?;
        if reply["data"]["id"].is_string() {
            Ok(c)
        } else {
            Err(format!("{url}: bad handshake reply {reply}"))
        }
    }

    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one text frame.
    ///
    /// # Errors
    /// When the socket is closed.
    pub async fn send_text(&mut self, text: String) -> Result<(), String> {
        self.ws.send(Message::text(text)).await.map_err(|e| format!("{}: send: {e}", self.url))
    }

    /// Sends one packet.
    ///
    /// # Errors
    /// When the socket is closed.
    pub async fn send(&mut self, packet: &Value) -> Result<(), String> {
        self.send_text(packet.to_string()).await
    }

    /// Sends an invoke and waits for its reply packet (`{rid, data?, error?}`).
    ///
    /// # Errors
    /// When the socket closes or no reply comes within [`WAIT`].
    pub async fn invoke(&mut self, event: &str, data: Value) -> Result<Value, String> {
        let cid = self.next_cid;
        self.next_cid += 1;
        self.send(&json!({"event": event, "data": data, "cid": cid})).await?;
        self.next_matching(|p| p["rid"] == cid).await
    }

    /// Sends an event without a `cid` (no reply expected).
    ///
    /// # Errors
    /// When the socket is closed.
    pub async fn transmit(&mut self, event: &str, data: Value) -> Result<(), String> {
        self.send(&json!({"event": event, "data": data})).await
    }

    /// Publishes with an acknowledgement; returns the reply's `error`, if any.
    ///
    /// # Errors
    /// When the socket closes or no reply comes in time.
    pub async fn publish_acked(&mut self, channel: &str, data: Value) -> Result<Option<Value>, String> {
        let r = self.invoke("#publish", json!({"channel": channel, "data": data})).await?;
        Ok(r.get("error").cloned())
    }

    /// Subscribes to one channel and waits for the acknowledgement.
    ///
    /// # Errors
    /// When the subscription is refused or not acknowledged in time.
    pub async fn subscribe(&mut self, channel: &str) -> Result<(), String> {
        self.subscribe_all(&[channel.to_owned()]).await
    }

    /// Subscribes to every channel, pipelined in batch frames, and waits for
    /// every acknowledgement (each one means the owning broker confirmed).
    ///
    /// # Errors
    /// When any subscription is refused or not acknowledged within [`WAIT`].
    pub async fn subscribe_all(&mut self, channels: &[String]) -> Result<(), String> {
        let mut pending: HashMap<u64, &str> = HashMap::with_capacity(channels.len());
        for chunk in channels.chunks(MAX_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len());
            for ch in chunk {
                let cid = self.next_cid;
                self.next_cid += 1;
                pending.insert(cid, ch);
                batch.push(json!({"event": "#subscribe", "data": {"channel": ch}, "cid": cid}));
            }
            self.send(&Value::Array(batch)).await?;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut refused = Vec::new();
        while !pending.is_empty() {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let p = match self.next_packet_within(remaining).await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return Err(format!("{}: closed with {} subscriptions unacknowledged", self.url, pending.len()))
                }
                Err(e) => {
                    return Err(format!("{e} ({} of {} subscriptions unacknowledged)", pending.len(), channels.len()))
                }
            };
            let Some(rid) = p.get("rid").and_then(Value::as_u64) else {
                self.inbox.push_back(p);
                continue;
            };
            if let Some(ch) = pending.remove(&rid) {
                if let Some(e) = p.get("error") {
                    refused.push(format!("{ch}: {e}"));
                }
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {} subscriptions refused, e.g. {}", self.url, refused.len(), refused[0]))
        }
    }

    /// The next packet for which `pred` holds; others before it are dropped.
    ///
    /// # Errors
    /// When the socket closes or nothing matching arrives within [`WAIT`].
    pub async fn next_matching(&mut self, pred: impl Fn(&Value) -> bool) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_packet_within(remaining).await? {
                Some(p) if pred(&p) => return Ok(p),
                Some(_) => {}
                None => return Err(format!("{}: closed while waiting", self.url)),
            }
        }
    }

    /// The next `#publish` push as `(channel, data)`.
    ///
    /// # Errors
    /// When the socket closes or none arrives within [`WAIT`].
    pub async fn next_publish(&mut self) -> Result<(String, Value), String> {
        let p = self.next_matching(|p| p["event"] == "#publish").await?;
        Ok((p["data"]["channel"].as_str().unwrap_or_default().to_owned(), p["data"]["data"].clone()))
    }

    /// The next packet (batches are split; pings answered), `Ok(None)` once
    /// the server closed.
    ///
    /// # Errors
    /// When nothing arrives within `within`.
    pub async fn next_packet_within(&mut self, within: Duration) -> Result<Option<Value>, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(p) = self.inbox.pop_front() {
                return Ok(Some(p));
            }
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| format!("{}: nothing received within {within:?}", self.url))?;
            let value: Value = match msg {
                None | Some(Err(_) | Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(t))) if t.is_empty() => {
                    // The server's ping: answer with an empty text frame.
                    if self.ws.send(Message::text("")).await.is_err() {
                        return Ok(None);
                    }
                    continue;
                }
                Some(Ok(Message::Text(t))) => {
                    serde_json::from_str(&t).map_err(|e| format!("{}: server sent bad JSON {t:?}: {e}", self.url))?
                }
                Some(Ok(_)) => continue,
            };
            match value {
                Value::Array(items) => self.inbox.extend(items),
                v => self.inbox.push_back(v),
            }
        }
    }

    /// Packets already received but not consumed yet (e.g. publications that
    /// arrived while [`Client::subscribe_all`] waited for its acknowledgements),
    /// in order; the inbox is left empty.
    pub fn take_inbox(&mut self) -> Vec<Value> {
        self.inbox.drain(..).collect()
    }

    /// Closes the socket politely (bounded).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}
