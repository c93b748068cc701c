//! Listeners and the accept loop: bind first (port 0 allowed, addresses
//! readable afterwards), then run until the shutdown token is cancelled.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use protocol::Codec;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::config::Config;
use crate::error::Error;
use crate::http::{self, Request};
use crate::node::{App, Node};
use crate::session;
use crate::stats::Refusal;

/// First and longest pause of the accept loop after an error (e.g. out of file descriptors).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest pause between two socket closes while draining.
const MAX_CLOSE_GAP: Duration = Duration::from_millis(10);

/// A bound, not yet running, frontend node.
pub struct Frontend {
    node: Arc<Node>,
    listeners: Vec<(TcpListener, Codec)>,
}

impl Frontend {
    /// Binds every listener in the config.
    pub async fn bind(config: Config, app: App) -> Result<Self, Error> {
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let listener = TcpListener::bind(l.addr).await.map_err(|source| Error::Bind { addr: l.addr, source })?;
            listeners.push((listener, l.codec));
        }
        Ok(Self { node: Node::new(config, app), listeners })
    }

    /// The bound address of each listener, with its codec.
    #[must_use]
    pub fn local_addrs(&self) -> Vec<(Codec, SocketAddr)> {
        self.listeners.iter().filter_map(|(l, c)| l.local_addr().ok().map(|a| (*c, a))).collect()
    }

    /// The address of the first listener with `codec`.
    #[must_use]
    pub fn addr(&self, codec: Codec) -> Option<SocketAddr> {
        self.local_addrs().into_iter().find(|(c, _)| *c == codec).map(|(_, a)| a)
    }

    #[must_use]
    pub fn node(&self) -> Arc<Node> {
        self.node.clone()
    }

    /// Serves until `shutdown` is cancelled, then closes every socket with a
    /// code that makes clients reconnect at once, and waits (bounded) for
    /// them to finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        // The cluster side (broker links, control link) stops only once the
        // sockets are drained: a socket still open during the drain window
        // keeps publishing and receiving until its turn to be closed comes.
        let upstream_stop = CancellationToken::new();
        if let Some(up) = &self.node.upstream {
            info!(node = up.node_id(), "cluster mode: joining through the state server");
            up.start(&upstream_stop);
        }
        for (listener, codec) in self.listeners {
            let addr = listener.local_addr().ok();
            info!(?addr, ?codec, path = %self.node.config.path, "listening");
            tracker.spawn(accept_loop(listener, codec, self.node.clone(), shutdown.clone(), tracker.clone()));
        }
        shutdown.cancelled().await;
        tracker.close();
        let open = self.node.stats.sockets_open.load(Ordering::Relaxed);
        let window = self.node.config.drain_window;
        info!(open, window_ms = window.as_millis() as u64, "draining: not ready, not accepting, closing sockets");
        let deadline = tokio::time::Instant::now() + self.node.config.shutdown_timeout;
        drain(&self.node, window).await;
        if tokio::time::timeout_at(deadline, tracker.wait()).await.is_err() {
            warn!(left = tracker.len(), "shutdown timeout: dropping connections that did not close");
        }
        upstream_stop.cancel();
        if let Some(up) = &self.node.upstream {
            up.stopped().await;
        }
    }
}

/// Closes every socket with `RESTART` (clients reconnect at once, through
/// the load balancer to another node), spread evenly over at most `window`, then
/// sweeps up any socket that opened meanwhile.
async fn drain(node: &Node, window: Duration) {
    let handles = node.registry.handles();
    if !handles.is_empty() && !window.is_zero() {
        // A few sockets need no spreading: at most MAX_CLOSE_GAP between two closes.
        let gap = (window / handles.len() as u32).min(MAX_CLOSE_GAP);
        let mut tick = tokio::time::interval(gap.max(Duration::from_millis(1)));
        // With more sockets than milliseconds in the window, close several per tick.
        let per_tick = (Duration::from_millis(1).as_nanos() / gap.as_nanos().max(1)).max(1) as usize;
        for chunk in handles.chunks(per_tick) {
            tick.tick().await;
            for h in chunk {
                h.close(protocol::codes::RESTART);
            }
        }
    }
    for h in node.registry.handles() {
        h.close(protocol::codes::RESTART);
    }
}

async fn accept_loop(
    listener: TcpListener,
    codec: Codec,
    node: Arc<Node>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                node.stats.sockets_accepted.fetch_add(1, Ordering::Relaxed);
                let span = tracing::debug_span!("conn", %peer, ?codec, socket = tracing::field::Empty);
                tracker.spawn(connection(stream, peer, codec, node.clone(), shutdown.clone()).instrument(span));
            }
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE) or a transient
                // error: pause rather than spin, and say so.
                node.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    codec: Codec,
    node: Arc<Node>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let head = tokio::select! {
        () = shutdown.cancelled() => return,
        r = tokio::time::timeout(
            node.config.handshake_timeout,
            http::read_request(&mut stream, &node.config.path, node.http.as_deref()),
        ) => r,
    };
    let (request, key, leftover) = match head {
        Err(_) => {
            node.stats.refuse(Refusal::HandshakeTimeout);
            return;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "reading the request failed");
            return;
        }
        Ok(Ok(Request::Gone)) => return,
        Ok(Ok(Request::Health)) => {
            let body = serde_json::json!({"status": "ok", "stats": node.stats.snapshot()}).to_string();
            let _ = http::respond(&mut stream, 200, "OK", "application/json", &body).await;
            return;
        }
        Ok(Ok(Request::Metrics)) => {
            let body = node.metrics.render();
            let _ = http::respond(&mut stream, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", &body).await;
            return;
        }
        Ok(Ok(Request::Ready)) => {
            // Ready: not shutting down, and in cluster mode joined with live broker links.
            let ready = !shutdown.is_cancelled() && node.upstream.as_ref().is_none_or(|u| u.is_ready());
            let (status, reason) = if ready { (200, "OK") } else { (503, "Service Unavailable") };
            let body = serde_json::json!({"ready": ready}).to_string();
            let _ = http::respond(&mut stream, status, reason, "application/json", &body).await;
            return;
        }
        Ok(Ok(Request::App { head, leftover })) => {
            if let Some(app) = &node.http {
                app.serve(http::HttpConnection { stream, head, leftover, peer, shutdown }).await;
            }
            return;
        }
        Ok(Ok(Request::Refuse { status, reason })) => {
            node.stats.refuse(Refusal::BadHttpRequest);
            let _ = http::respond(&mut stream, status, reason, "text/plain", reason).await;
            return;
        }
        Ok(Ok(Request::WebSocket { request, key, leftover })) => (request, key, leftover),
    };
    if let Err(e) = http::accept_upgrade(&mut stream, &key).await {
        debug!(error = %e, "writing the upgrade response failed");
        return;
    }
    let mut ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(node.ws_config)).await;
    if shutdown.is_cancelled() {
        // Accepted just as the node began draining: the drain sweep may have passed already.
        let _ = ws.close(None).await;
        return;
    }
    session::run(ws, session::Params { node, codec, remote: peer, request }).await;
}
