//! The admin HTTP port: `GET /health` (200, JSON counters and status),
//! `GET /ready` (200 in service, 503 otherwise), `GET /metrics` (Prometheus
//! text, see [`crate::metrics`]). One request per connection, head size and read time bounded; this
//! is for probes and scrapers, not a general web server.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use crate::metrics::Metrics;
use crate::node::Node;

const MAX_HEAD_BYTES: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the admin port until `stop` is cancelled.
pub(crate) async fn run(
    listener: TcpListener,
    node: Arc<Node>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let span = tracing::debug_span!("admin", %peer);
                let (node, metrics) = (node.clone(), metrics.clone());
                tracker.spawn(
                    async move {
                        if tokio::time::timeout(REQUEST_TIMEOUT, serve(stream, &node, &metrics)).await.is_err() {
                            debug!("admin request timed out");
                        }
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

async fn serve(mut stream: TcpStream, node: &Node, metrics: &Metrics) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let path = loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                if req.method != Some("GET") {
                    return respond(&mut stream, 405, "Method Not Allowed", "text/plain", "GET only\n").await;
                }
                let target = req.path.unwrap_or("/");
                break target.split_once('?').map_or(target, |(p, _)| p).to_owned();
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {}
            _ => return respond(&mut stream, 400, "Bad Request", "text/plain", "bad request\n").await,
        }
    };
    match path.as_str() {
        "/health" => {
            let body = health(node).to_string();
            respond(&mut stream, 200, "OK", "application/json", &body).await;
        }
        "/ready" => {
            if node.status.ready() {
                respond(&mut stream, 200, "OK", "text/plain", "ready\n").await;
            } else {
                let why = if node.status.leaving() { "leaving\n" } else { "not in the slot table\n" };
                respond(&mut stream, 503, "Service Unavailable", "text/plain", why).await;
            }
        }
        "/metrics" => {
            let body = metrics.render();
            respond(&mut stream, 200, "OK", crate::metrics::CONTENT_TYPE, &body).await;
        }
        _ => respond(&mut stream, 404, "Not Found", "text/plain", "not found\n").await,
    }
}

/// The `/health` document.
#[must_use]
pub fn health(node: &Node) -> serde_json::Value {
    let status = &node.status;
    json!({
        "status": "ok",
        "node": node.config.id,
        "advertise_addr": node.advertise_addr,
        "ready": status.ready(),
        "leaving": status.leaving(),
        "standalone": status.standalone(),
        "state_server": {
            "connected": status.connected(),
            "epoch": status.epoch(),
            "in_table": status.in_table(),
        },
        "links": node.router.links(),
        "channels": node.router.channels(),
        "subscriptions": node.router.subscriptions(),
        "stats": node.stats.snapshot(),
    })
}

async fn respond(stream: &mut TcpStream, status: u16, reason: &str, content_type: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
