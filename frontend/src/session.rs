//! One client WebSocket: the SocketCluster protocol state machine and its loop.
//!
//! A session owns its socket and runs on one task. Each turn it waits for
//! one thing — an inbound message, items in its outbound queue, the ping
//! timer, a close request (slow consumer, kick, the node draining) — handles it, and writes everything the
//! turn produced with one flush. Inbound packets are handled strictly in
//! order, like SocketCluster's per-socket middleware stream.
//!
//! Invariants: `subscriptions` and the hub agree on this socket's channels
//! (the hub is updated first, and cleaned on exit); nothing a client sends
//! can end the task other than by a close code; nothing here blocks on
//! another socket.

mod rate;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::codes::{self, CloseCode};
use protocol::error::names;
use protocol::{Codec, Outbound, PacketKind, Request, ScError};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::acl::{SocketInfo, UpgradeRequest, Verdict};
use crate::auth::{now_secs, AuthToken};
use crate::handlers::{Context, SocketAction};
use crate::hub::{Subscribed, Unsubscribed};
use crate::node::Node;
use crate::outbox::{Control, Kick, Outgoing, Publication, SessionHandle};
use crate::stats::Refusal;
use rate::TokenBucket;

/// Outbound items handled per turn before writing, so one busy socket
/// cannot keep its task from reading and pinging.
const OUTBOUND_PER_TURN: usize = 256;
/// Time given to the close handshake before the TCP connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(crate) struct Params {
    pub node: Arc<Node>,
    pub codec: Codec,
    pub remote: SocketAddr,
    pub request: UpgradeRequest,
}

/// What a turn decided about the socket's future.
enum Flow {
    Continue,
    Close(CloseCode),
    /// The peer closed or the connection broke: nothing more to send.
    Gone,
}

/// Something to write this turn.
enum Pending {
    Packet(Bytes),
    Ping,
}

struct Session {
    node: Arc<Node>,
    codec: Codec,
    remote: SocketAddr,
    request: UpgradeRequest,
    handle: SessionHandle,
    /// The id clients see (`socket.id`).
    id: String,
    handshaken: bool,
    auth: Option<AuthToken>,
    subscriptions: HashSet<Arc<str>>,
    rate: TokenBucket,
    /// Packets refused by the rate limit since the last accepted one.
    rate_strikes: u32,
    last_heard: Instant,
    pending: Vec<Pending>,
    /// Close requests from other tasks (slow consumer, kick, logout).
    control: Arc<Control>,
    /// Whether this socket was already counted as a slow consumer (the
    /// overflow can be seen both by the loop and by a blocked write).
    slow_counted: bool,
    /// This socket's outbound queue (publications, kicks).
    rx: mpsc::Receiver<Outgoing>,
}

pub(crate) async fn run<S>(mut ws: WebSocketStream<S>, p: Params)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let node = p.node;
    let limits = node.config.limits.clone();
    let (handle, rx, control) = SessionHandle::new(node.next_socket_id(), limits.outbound_queue);
    node.registry.insert(handle.clone());
    node.stats.sockets_open.fetch_add(1, Ordering::Relaxed);
    tracing::Span::current().record("socket", handle.id);

    let mut s = Session {
        id: client_id(),
        codec: p.codec,
        remote: p.remote,
        request: p.request,
        handle,
        handshaken: false,
        auth: None,
        subscriptions: HashSet::new(),
        rate: TokenBucket::new(limits.inbound_rate, Instant::now()),
        rate_strikes: 0,
        last_heard: Instant::now(),
        pending: Vec::new(),
        control: control.clone(),
        slow_counted: false,
        rx,
        node,
    };
    let handshake_deadline = tokio::time::sleep(s.node.config.handshake_timeout);
    tokio::pin!(handshake_deadline);
    let period = s.node.config.ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let flow = tokio::select! {
            biased;
            code = control.close_requested() => {
                if code == codes::SLOW_CONSUMER {
                    s.count_slow_consumer();
                }
                Flow::Close(code)
            }
            // Before the socket's reads: a client that never stops sending would otherwise
            // never be pinged, and socketcluster-client drops an unpinged socket as stale.
            _ = ping.tick(), if s.handshaken => s.on_ping_tick(),
            // Boxed: a packet's handling (hooks, handlers, upstream calls) is the
            // largest state of this loop, and an idle socket should not carry
            // room for it in its task; one allocation per frame is cheap next to it.
            msg = ws.next() => Box::pin(s.on_message(msg)).await,
            item = s.rx.recv() => match item {
                Some(item) => { s.on_outgoing(item); Flow::Continue }
                None => Flow::Gone,
            },
            () = &mut handshake_deadline, if !s.handshaken => {
                s.node.stats.refuse(Refusal::HandshakeTimeout);
                Flow::Close(codes::HANDSHAKE_TIMEOUT)
            }
        };
        if s.write_pending(&mut ws).await.is_err() {
            break;
        }
        match flow {
            Flow::Continue => {}
            Flow::Gone => break,
            Flow::Close(code) => {
                Box::pin(close(&mut ws, code)).await;
                break;
            }
        }
    }
    s.leave_all();
}

/// A random 20-character id, like SocketCluster's base64id.
fn client_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}

/// Sends a close frame and waits briefly for the peer's, so the close code arrives.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, code: CloseCode) {
    let frame = (!code.is_sent_without_status())
        .then(|| CloseFrame { code: WsCloseCode::from(code.code), reason: Utf8Bytes::from_static(code.name) });
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if ws.close(frame).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

impl Session {
    fn info(&self) -> SocketInfo<'_> {
        SocketInfo {
            id: &self.id,
            key: self.handle.id,
            remote: self.remote,
            codec: self.codec,
            auth: self.auth.as_ref(),
        }
    }

    fn push(&mut self, packet: Outbound<'_>) {
        self.pending.push(Pending::Packet(self.codec.encode(&packet)));
    }

    fn reply(&mut self, cid: Option<u64>, result: Result<Option<&Value>, &ScError>) {
        if let Some(rid) = cid {
            self.push(Outbound::Reply { rid, result });
        }
    }

    fn event(&mut self, event: &str, data: Option<&Value>) {
        self.push(Outbound::Event { event, data });
    }

    /// Writes what this turn produced: consecutive packets are joined into
    /// batches, then everything goes out with one flush. A peer that does
    /// not take the bytes within `pingTimeout` is dropped.
    async fn write_pending<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        ws: &mut WebSocketStream<S>,
    ) -> Result<(), ()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let batch = self.node.config.limits.outbound_batch;
        let mut messages = Vec::with_capacity(pending.len());
        let mut run: Vec<Bytes> = Vec::new();
        for p in pending {
            match p {
                Pending::Packet(b) => {
                    run.push(b);
                    if run.len() == batch {
                        messages.push(self.message(&std::mem::take(&mut run)));
                    }
                }
                Pending::Ping => {
                    if !run.is_empty() {
                        messages.push(self.message(&std::mem::take(&mut run)));
                    }
                    messages.push(Message::Text(Utf8Bytes::from_static("")));
                }
            }
        }
        if !run.is_empty() {
            messages.push(self.message(&run));
        }
        tracing::trace!(frames = messages.len(), "writing");
        let stats = &self.node.stats;
        stats.frames_out.fetch_add(messages.len() as u64, Ordering::Relaxed);
        let write = async {
            for m in messages {
                ws.feed(m).await?;
            }
            ws.flush().await
        };
        let written = tokio::select! {
            r = tokio::time::timeout(self.node.config.ping_timeout, write) => r,
            // Stuck writing while the queue overflowed: a close frame could not get through either.
            code = self.control.close_requested() => {
                debug!(code = code.code, "close requested while the peer is not reading; dropping the connection");
                if code == codes::SLOW_CONSUMER {
                    self.count_slow_consumer();
                }
                return Err(());
            }
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                // A full write buffer means the peer stopped reading: a slow consumer too.
                if matches!(e, WsError::WriteBufferFull(..)) {
                    self.count_slow_consumer();
                }
                debug!(error = %e, "write failed");
                Err(())
            }
            Err(_) => {
                self.count_slow_consumer();
                debug!("peer stopped reading; dropping the connection");
                Err(())
            }
        }
    }

    fn count_slow_consumer(&mut self) {
        if !std::mem::replace(&mut self.slow_counted, true) {
            self.node.stats.refuse(Refusal::SlowConsumer);
        }
    }

    fn message(&self, packets: &[Bytes]) -> Message {
        self.node.stats.packets_out.fetch_add(packets.len() as u64, Ordering::Relaxed);
        let bytes = if packets.len() == 1 { packets[0].clone() } else { self.codec.encode_batch(packets) };
        match self.codec {
            Codec::MinBin => Message::Binary(bytes),
            // Our JSON encoder only writes UTF-8; the check runs once per frame, not per subscriber.
            Codec::Json => Message::Text(Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from_static(""))),
        }
    }

    async fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Flow {
        let msg = match msg {
            None => return Flow::Gone,
            Some(Ok(m)) => m,
            Some(Err(WsError::Capacity(e))) => {
                debug!(error = %e, "frame too big");
                self.node.stats.refuse(Refusal::FrameTooBig);
                return Flow::Close(codes::MESSAGE_TOO_BIG);
            }
            Some(Err(e)) => {
                debug!(error = %e, "connection error");
                return Flow::Gone;
            }
        };
        self.last_heard = Instant::now();
        let frame: &[u8] = match (&msg, self.codec) {
            // An empty text frame is a pong (or a ping: both need nothing back).
            (Message::Text(t), _) if t.is_empty() => return Flow::Continue,
            (Message::Text(t), Codec::Json) => t.as_bytes(),
            (Message::Binary(b), Codec::MinBin) => b,
            (Message::Text(_) | Message::Binary(_), _) => {
                self.node.stats.refuse(Refusal::UnsupportedData);
                return Flow::Close(codes::UNSUPPORTED_DATA);
            }
            (Message::Close(_), _) => return Flow::Gone,
            (Message::Ping(_) | Message::Pong(_) | Message::Frame(_), _) => return Flow::Continue,
        };
        let packets = match self.codec.decode(frame) {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "undecodable frame");
                self.node.stats.refuse(Refusal::MalformedFrame);
                return Flow::Close(codes::MALFORMED_FRAME);
            }
        };
        for packet in packets {
            let flow = self.on_packet(packet).await;
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
        }
        Flow::Continue
    }

    async fn on_packet(&mut self, packet: protocol::Packet) -> Flow {
        tracing::trace!(?packet, "packet in");
        let cid = packet.cid;
        if !self.rate.take(Instant::now()) {
            self.node.stats.refuse(Refusal::RateLimited);
            self.rate_strikes += 1;
            if self.rate_strikes >= self.node.config.limits.inbound_rate {
                return Flow::Close(codes::RATE_LIMITED);
            }
            let e = ScError::new(names::RATE_LIMITED, "too many packets; slow down");
            self.reply(cid, Err(&e));
            return Flow::Continue;
        }
        self.rate_strikes = 0;
        if !self.handshaken && !matches!(packet.kind, PacketKind::Request(Request::Handshake { .. })) {
            self.node.stats.refuse(Refusal::BeforeHandshake);
            return Flow::Close(codes::MESSAGE_BEFORE_HANDSHAKE);
        }
        self.expire_auth();
        match packet.kind {
            PacketKind::Request(r) => self.on_request(cid, r).await,
            // Replies to server invokes; this node sends none that wait for one.
            PacketKind::Response { .. } => Flow::Continue,
            PacketKind::Invalid(e) => {
                let (why, code) = if e.name == names::UNKNOWN_EVENT {
                    (Refusal::UnknownEvent, codes::UNKNOWN_EVENT)
                } else {
                    (Refusal::InvalidPacket, codes::INVALID_PACKET)
                };
                self.node.stats.refuse(why);
                match cid {
                    Some(_) => {
                        self.reply(cid, Err(&e));
                        Flow::Continue
                    }
                    None => Flow::Close(code),
                }
            }
        }
    }

    async fn on_request(&mut self, cid: Option<u64>, request: Request) -> Flow {
        match request {
            Request::Handshake { auth_token } => self.on_handshake(cid, auth_token).await,
            Request::Subscribe { channel, data } => {
                let started = Instant::now();
                let result = self.subscribe(channel, data).await;
                self.node.metrics.histograms.subscribe_ack_seconds.observe(started.elapsed().as_secs_f64());
                self.reply(cid, result.as_ref().map(Option::as_ref));
                Flow::Continue
            }
            Request::Unsubscribe { channel } => {
                if self.unsubscribe(&channel) {
                    self.reply(cid, Ok(None));
                } else {
                    let e = ScError::invalid_action(format!(
                        "Failed to unsubscribe socket from the {channel} channel because it was not subscribed"
                    ));
                    self.reply(cid, Err(&e));
                }
                Flow::Continue
            }
            Request::Publish { channel, data } => {
                let started = Instant::now();
                let result = self.publish(cid, channel, data).await;
                if cid.is_some() {
                    self.node.metrics.histograms.publish_ack_seconds.observe(started.elapsed().as_secs_f64());
                }
                self.reply(cid, result.as_ref().map(|()| None));
                Flow::Continue
            }
            Request::Authenticate { token } => {
                self.on_authenticate(cid, token.as_deref());
                Flow::Continue
            }
            Request::RemoveAuthToken => {
                self.auth = None;
                self.reply(cid, Ok(None));
                Flow::Continue
            }
            Request::Custom { event, data } => self.on_custom(cid, event, data).await,
        }
    }

    async fn on_handshake(&mut self, cid: Option<u64>, token: Option<String>) -> Flow {
        if cid.is_none() {
            self.node.stats.refuse(Refusal::HandshakeRejected);
            return Flow::Close(codes::HANDSHAKE_REJECTED);
        }
        let mut auth_error = None;
        if let Some(token) = token {
            match self.node.auth.verify(&token, now_secs()) {
                Ok(t) => self.auth = Some(t),
                Err(e) => {
                    self.auth = None;
                    auth_error = Some(e);
                }
            }
        }
        let mut extra = Map::new();
        match self.node.acl.handshake(self.info(), &self.request).await {
            Verdict::Allow => {}
            Verdict::Rewrite(fields) => extra = fields,
            Verdict::Block(e) => {
                self.node.stats.refuse(Refusal::HandshakeRejected);
                self.reply(cid, Err(&e));
                let code = e
                    .extra
                    .get("statusCode")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok())
                    .filter(|c| (4000..5000).contains(c))
                    .map_or(codes::HANDSHAKE_REJECTED, |code| CloseCode { code, ..codes::HANDSHAKE_REJECTED });
                return Flow::Close(code);
            }
        }
        let mut data = Map::new();
        data.insert("id".into(), self.id.clone().into());
        data.insert("pingTimeout".into(), (self.node.config.ping_timeout.as_millis() as u64).into());
        data.insert("isAuthenticated".into(), self.auth.is_some().into());
        if let Some(e) = &auth_error {
            data.insert("authError".into(), e.to_value());
        }
        for (k, v) in extra {
            data.entry(k).or_insert(v);
        }
        self.reply(cid, Ok(Some(&Value::Object(data))));
        if auth_error.is_some() {
            self.event("#removeAuthToken", None);
        }
        if !self.handshaken {
            self.handshaken = true;
            self.node.stats.handshakes.fetch_add(1, Ordering::Relaxed);
        }
        Flow::Continue
    }

    fn check_channel(&self, channel: &str) -> Result<(), ScError> {
        let max = self.node.config.limits.max_channel_name_bytes;
        if channel.is_empty() {
            return Err(ScError::invalid_action("channel name must not be empty"));
        }
        if channel.len() > max {
            self.node.stats.refuse(Refusal::LimitExceeded);
            return Err(
                ScError::new(names::LIMIT_EXCEEDED, format!("channel name longer than {max} bytes")).with("limit", max)
            );
        }
        Ok(())
    }

    async fn subscribe(&mut self, channel: String, data: Option<Value>) -> Result<Option<Value>, ScError> {
        self.check_channel(&channel)?;
        if self.subscriptions.contains(channel.as_str()) {
            return Ok(None);
        }
        let max = self.node.config.limits.max_subscriptions;
        if self.subscriptions.len() >= max {
            self.node.stats.refuse(Refusal::LimitExceeded);
            return Err(ScError::new(names::LIMIT_EXCEEDED, format!("socket already has {max} subscriptions"))
                .with("limit", max));
        }
        let ack = match self.node.acl.subscribe(self.info(), &channel, data.as_ref()).await {
            Verdict::Allow => None,
            Verdict::Rewrite(v) => Some(v),
            Verdict::Block(e) => return Err(e),
        };
        let channel: Arc<str> = channel.into();
        let first = self.node.hub.subscribe(&channel, &self.handle) == Subscribed::First;
        self.subscriptions.insert(channel.clone());
        if let (true, Some(up)) = (first, &self.node.upstream) {
            up.subscribed(&channel).await;
        }
        Ok(ack)
    }

    fn unsubscribe(&mut self, channel: &str) -> bool {
        if !self.subscriptions.remove(channel) {
            return false;
        }
        self.hub_unsubscribe(channel);
        true
    }

    async fn publish(&mut self, cid: Option<u64>, channel: String, data: Option<Value>) -> Result<(), ScError> {
        if !self.node.config.allow_client_publish {
            return Err(ScError::invalid_action("Client publish feature is disabled"));
        }
        self.check_channel(&channel)?;
        let data = match self.node.acl.publish_in(self.info(), &channel, data.as_ref()).await {
            Verdict::Allow => data,
            Verdict::Rewrite(v) => Some(v),
            Verdict::Block(e) => return Err(e),
        };
        self.node.stats.publishes_in.fetch_add(1, Ordering::Relaxed);
        if let Some(up) = &self.node.upstream {
            // Every publish goes through the channel's owner, so every
            // subscriber in the cluster sees one order. With a cid, wait for
            // the owner: then our own copy (if we subscribe) is queued too.
            let confirm = cid.is_some();
            let result = up.publish(&channel, data.as_ref(), confirm).await;
            if confirm && self.subscriptions.contains(channel.as_str()) {
                while let Ok(item) = self.rx.try_recv() {
                    self.outgoing(item);
                }
            }
            return result.map_err(|e| ScError::new(names::BROKER_UNAVAILABLE, e.to_string()));
        }
        let publication = Publication::new(channel.into(), data);
        self.node.hub.publish(&publication);
        if self.subscriptions.contains(&publication.channel) {
            // SocketCluster delivers a publisher its own message before the
            // ack: take what is queued for this socket, our copy included, now.
            while let Ok(item) = self.rx.try_recv() {
                self.outgoing(item);
            }
        }
        Ok(())
    }

    fn on_authenticate(&mut self, cid: Option<u64>, token: Option<&str>) {
        let result = match token {
            None => Err(ScError::new(names::AUTH_TOKEN_INVALID, "jwt must be provided").with("isBadToken", true)),
            Some(t) => self.node.auth.verify(t, now_secs()),
        };
        match result {
            Ok(t) => {
                self.auth = Some(t);
                self.reply(cid, Ok(Some(&json!({"isAuthenticated": true, "authError": null}))));
            }
            Err(e) if e.extra.get("isBadToken") == Some(&Value::Bool(false)) => {
                self.auth = None;
                let data = json!({"isAuthenticated": false, "authError": e.to_value()});
                self.reply(cid, Ok(Some(&data)));
            }
            Err(e) => {
                self.auth = None;
                self.reply(cid, Err(&e));
                self.event("#removeAuthToken", None);
            }
        }
    }

    async fn on_custom(&mut self, cid: Option<u64>, event: String, data: Option<Value>) -> Flow {
        let Some(handler) = self.node.handlers.get(&event).cloned() else {
            self.node.stats.refuse(Refusal::UnknownEvent);
            if cid.is_none() {
                return Flow::Close(codes::UNKNOWN_EVENT);
            }
            let e = ScError::new(names::UNKNOWN_EVENT, format!("no handler for event {event}"));
            self.reply(cid, Err(&e));
            return Flow::Continue;
        };
        let data = match self.node.acl.event(self.info(), &event, data.as_ref()).await {
            Verdict::Allow => data,
            Verdict::Rewrite(v) => Some(v),
            Verdict::Block(e) => {
                self.reply(cid, Err(&e));
                return Flow::Continue;
            }
        };
        let mut ctx = Context::new(self.info());
        let result = handler.call(&mut ctx, data).await;
        for action in ctx.into_actions() {
            self.apply(action);
        }
        self.reply(cid, result.as_ref().map(Option::as_ref));
        Flow::Continue
    }

    fn apply(&mut self, action: SocketAction) {
        match action {
            SocketAction::SetAuthToken(claims) => match self.node.auth.sign(claims, now_secs()) {
                Ok(token) => {
                    self.event("#setAuthToken", Some(&json!({ "token": token.signed })));
                    self.auth = Some(token);
                }
                Err(e) => tracing::error!(error = %e, "signing a token failed"),
            },
            SocketAction::RemoveAuthToken => {
                if self.auth.take().is_some() {
                    self.event("#removeAuthToken", None);
                }
            }
        }
    }

    /// Drops an expired token and tells the client, as SocketCluster does on
    /// every inbound packet and every ping.
    fn expire_auth(&mut self) {
        if self.auth.as_ref().is_some_and(|t| t.is_expired(now_secs())) {
            self.auth = None;
            self.event("#removeAuthToken", None);
        }
    }

    fn on_outgoing(&mut self, first: Outgoing) {
        self.outgoing(first);
        for _ in 1..OUTBOUND_PER_TURN {
            match self.rx.try_recv() {
                Ok(item) => self.outgoing(item),
                Err(_) => break,
            }
        }
    }

    fn outgoing(&mut self, item: Outgoing) {
        match item {
            Outgoing::Publication(p) => {
                // Queued before an unsubscribe: the client would drop it anyway.
                if !self.subscriptions.contains(&p.channel) {
                    return;
                }
                let acl = &self.node.acl;
                let bytes = if acl.filters_publish_out() {
                    match acl.publish_out(self.info(), &p.channel, p.data.as_ref()) {
                        Verdict::Allow => p.encoded(self.codec, &self.node.stats.publish_encodes),
                        Verdict::Rewrite(v) => {
                            self.codec.encode(&Outbound::Publish { channel: &p.channel, data: Some(&v) })
                        }
                        Verdict::Block(_) => return,
                    }
                } else {
                    p.encoded(self.codec, &self.node.stats.publish_encodes)
                };
                self.pending.push(Pending::Packet(bytes));
            }
            Outgoing::KickOut(kick) => {
                let Kick { channel, message } = *kick;
                if self.unsubscribe(&channel) {
                    self.event("#kickOut", Some(&json!({ "channel": channel, "message": message })));
                }
            }
        }
    }

    fn on_ping_tick(&mut self) -> Flow {
        if self.last_heard.elapsed() > self.node.config.ping_timeout {
            self.node.stats.refuse(Refusal::PongTimeout);
            return Flow::Close(codes::PONG_TIMEOUT);
        }
        self.expire_auth();
        self.pending.push(Pending::Ping);
        Flow::Continue
    }

    /// Leaves a channel in the hub, and upstream when it was the last local subscriber.
    fn hub_unsubscribe(&self, channel: &str) {
        if self.node.hub.unsubscribe(channel, self.handle.id) == Unsubscribed::Last {
            if let Some(up) = &self.node.upstream {
                up.unsubscribed(channel);
            }
        }
    }

    /// Removes the socket from every channel and from the registry.
    fn leave_all(&mut self) {
        for channel in std::mem::take(&mut self.subscriptions) {
            self.hub_unsubscribe(&channel);
        }
        self.node.registry.remove(self.handle.id);
        self.node.stats.sockets_open.fetch_sub(1, Ordering::Relaxed);
        self.node.acl.disconnected(self.info());
    }
}
