//! A lean SocketCluster protocol v2 client for load: a WebSocket over a TCP
//! socket bound to a chosen source address, `#handshake`, pipelined
//! `#subscribe`, and the ping answer. It deliberately does not decode what a
//! subscriber receives (see [`crate::stamp::Scanner`]) and keeps small
//! buffers, so one generator process holds thousands of sockets.
//!
//! Works against our frontends and against socketcluster-server (SCC).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// Longest wait for one setup reply (handshake, subscribe, unsubscribe acks).
pub const REPLY_WAIT: Duration = Duration::from_secs(15);
/// Most packets in one batch frame we send (our frontend refuses batches over 256).
pub const MAX_BATCH: usize = 100;

/// An endpoint: its `ws://` URL and the address it resolves to.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
}

impl Target {
    /// Parses `ws://host:port/path` (only plain `ws`, IPv4 loopback-style hosts).
    ///
    /// # Errors
    /// When the URL is not `ws://`, has no port or the host does not resolve.
    pub async fn resolve(url: &str) -> Result<Target> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow!("{url}: only ws:// URLs are supported"))?;
        let hostport = rest.split('/').next().unwrap_or_default();
        let addr = tokio::net::lookup_host(hostport)
            .await
            .with_context(|| format!("{url}: cannot resolve {hostport}"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| anyhow!("{url}: {hostport} has no IPv4 address"))?;
        Ok(Target { url: url.to_owned(), addr })
    }
}

/// The source address of socket number `i` when sockets are spread over `n`
/// loopback addresses: 127.0.0.1, 127.0.0.2, … 127.0.0.n.
#[must_use]
pub fn source_ip(i: usize, n: u8) -> Ipv4Addr {
    let n = usize::from(n.max(1));
    Ipv4Addr::new(127, 0, 0, 1 + u8::try_from(i % n).unwrap_or(0))
}

/// Small buffers: an idle socket costs little, a busy one grows as needed.
#[must_use]
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// Opens the TCP connection from `src` and upgrades it.
///
/// # Errors
/// When the bind, the connection or the upgrade fails.
pub async fn open(target: &Target, src: Ipv4Addr) -> Result<Ws> {
    let sock = TcpSocket::new_v4().context("socket")?;
    sock.bind(SocketAddr::V4(SocketAddrV4::new(src, 0))).with_context(|| format!("bind {src}"))?;
    let stream = sock.connect(target.addr).await.with_context(|| format!("connect {} from {src}", target.addr))?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(ws_config()))
        .await
        .with_context(|| format!("upgrade {}", target.url))?;
    Ok(ws)
}

/// Whether `text` is a server ping; answers it. Protocol v2 pings with an
/// empty frame, v1 with `#1`.
///
/// # Errors
/// When the answer cannot be sent.
pub async fn answer_ping(ws: &mut Ws, text: &str) -> Result<bool> {
    let pong = match text {
        "" => "",
        "#1" => "#2",
        _ => return Ok(false),
    };
    ws.send(Message::text(pong)).await?;
    Ok(true)
}

/// Splits a frame into its packets (a batch is a JSON array).
fn packets(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(v) => vec![v],
        Err(_) => Vec::new(),
    }
}

/// Reads until every `cid` in `pending` has its reply; other packets are
/// passed to `other`. Returns the error replies as `(cid, error)`.
///
/// # Errors
/// When the socket closes or the replies do not come within [`REPLY_WAIT`].
pub async fn await_replies(
    ws: &mut Ws,
    pending: &mut std::collections::HashSet<u64>,
    mut other: impl FnMut(&str),
) -> Result<Vec<(u64, Value)>> {
    let deadline = tokio::time::Instant::now() + REPLY_WAIT;
    let mut errors = Vec::new();
    while !pending.is_empty() {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("{} replies missing after {REPLY_WAIT:?}", pending.len()))?;
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => bail!("closed by the server: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("read: {e}"),
            None => bail!("closed by the server"),
        };
        if answer_ping(ws, text.as_str()).await? {
            continue;
        }
        let mut unmatched = false;
        for p in packets(text.as_str()) {
            match p.get("rid").and_then(Value::as_u64) {
                Some(rid) if pending.remove(&rid) => {
                    if let Some(e) = p.get("error") {
                        errors.push((rid, e.clone()));
                    }
                }
                _ => unmatched = true,
            }
        }
        if unmatched {
            other(text.as_str());
        }
    }
    Ok(errors)
}

/// Sends `#handshake` (cid 1) and waits for its reply.
///
/// # Errors
/// When the reply is an error or does not come.
pub async fn handshake(ws: &mut Ws) -> Result<()> {
    ws.send(Message::text(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##)).await?;
    let mut pending = std::collections::HashSet::from([1]);
    let errors = await_replies(ws, &mut pending, |_| {}).await?;
    if let Some((_, e)) = errors.first() {
        bail!("handshake refused: {e}");
    }
    Ok(())
}

/// Subscribes to `channels` with cids from `*next_cid`, pipelined in batch
/// frames, and waits for every acknowledgement; frames that are not replies
/// (early publishes) go to `other`.
///
/// # Errors
/// When a subscription is refused or not acknowledged in time.
pub async fn subscribe(ws: &mut Ws, channels: &[String], next_cid: &mut u64, other: impl FnMut(&str)) -> Result<()> {
    let mut pending = std::collections::HashSet::new();
    for chunk in channels.chunks(MAX_BATCH) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|ch| {
                let cid = *next_cid;
                *next_cid += 1;
                pending.insert(cid);
                json!({"event": "#subscribe", "data": {"channel": ch}, "cid": cid})
            })
            .collect();
        let frame = if batch.len() == 1 { batch[0].to_string() } else { Value::Array(batch).to_string() };
        ws.send(Message::text(frame)).await?;
    }
    let errors = await_replies(ws, &mut pending, other).await?;
    if let Some((_, e)) = errors.first() {
        bail!("{} of {} subscriptions refused, e.g. {e}", errors.len(), channels.len());
    }
    Ok(())
}

/// Opens, upgrades and hand-shakes, within [`REPLY_WAIT`].
///
/// # Errors
/// As [`open`] and [`handshake`], or on timeout.
pub async fn connect(target: &Target, src: Ipv4Addr) -> Result<Ws> {
    tokio::time::timeout(REPLY_WAIT, async {
        let mut ws = open(target, src).await?;
        handshake(&mut ws).await?;
        Ok(ws)
    })
    .await
    .map_err(|_| anyhow!("{}: no handshake within {REPLY_WAIT:?}", target.url))?
}
