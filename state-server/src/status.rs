//! The HTTP port: `GET /status` (JSON), `GET /` (an HTML view of the same
//! that refreshes itself every 2 s), `GET /health` (200 while the process
//! serves), `GET /ready` (200 once the rebuild window is over, 503 before)
//! and `GET /metrics` (Prometheus text, see [`crate::metrics`]).
//!
//! Deliberately tiny: one request per connection, a bounded request head, a
//! timeout, a bounded number of connections at once. The state comes from the
//! core as a snapshot, so the page never holds anything the core needs.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use crate::cluster_state::Status;
use crate::metrics::{self, Metrics};
use crate::server::CoreMsg;

/// Largest request head accepted.
const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;
/// Time a request has to arrive and be answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP connections served at once; more are dropped.
const MAX_CONNECTIONS: usize = 64;
/// How often the HTML view reloads itself, in seconds.
const REFRESH_SECS: u32 = 2;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Html,
    Json,
    Health,
    Ready,
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

pub(crate) async fn serve(
    listener: TcpListener,
    core: mpsc::Sender<CoreMsg>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    debug!(%peer, "too many HTTP connections; dropping one");
                    continue;
                };
                let (core, metrics) = (core.clone(), metrics.clone());
                let span = tracing::debug_span!("http", %peer);
                tracker.spawn(
                    async move {
                        if tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, core, &metrics)).await.is_err() {
                            debug!("request timed out");
                        }
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                warn!(error = %e, "HTTP accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

async fn handle(mut stream: TcpStream, core: mpsc::Sender<CoreMsg>, metrics: &Metrics) {
    let route = match read_route(&mut stream).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            debug!(error = %e, "reading the request failed");
            return;
        }
    };
    debug!(?route, "request");
    let result = match route {
        Route::Health => respond(&mut stream, 200, "text/plain", "ok\n").await,
        Route::NotFound => respond(&mut stream, 404, "text/plain", "not found\n").await,
        Route::MethodNotAllowed => respond(&mut stream, 405, "text/plain", "method not allowed\n").await,
        Route::BadRequest => respond(&mut stream, 400, "text/plain", "bad request\n").await,
        Route::Metrics => {
            let status = snapshot(&core).await;
            respond(&mut stream, 200, metrics::CONTENT_TYPE, &metrics.render(status)).await
        }
        Route::Ready | Route::Json | Route::Html => {
            let status = snapshot(&core).await;
            match (status, route) {
                (None, _) => respond(&mut stream, 503, "text/plain", "shutting down\n").await,
                (Some(s), Route::Ready) if s.rebuilding => {
                    respond(&mut stream, 503, "text/plain", "rebuilding\n").await
                }
                (Some(_), Route::Ready) => respond(&mut stream, 200, "text/plain", "ready\n").await,
                (Some(s), Route::Json) => {
                    let body = serde_json::to_string(&s).unwrap_or_else(|_| "{}".into());
                    respond(&mut stream, 200, "application/json", &body).await
                }
                (Some(s), _) => respond(&mut stream, 200, "text/html; charset=utf-8", &render_html(&s)).await,
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "writing the response failed");
    }
}

/// The core's status snapshot; `None` once the core is gone (shutting down).
async fn snapshot(core: &mpsc::Sender<CoreMsg>) -> Option<Status> {
    let (tx, rx) = oneshot::channel();
    match core.send(CoreMsg::Status(tx)).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    }
}

/// Reads one request head; `None` when the peer closes first.
async fn read_route<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Option<Route>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return Ok(Some(route(req.method, req.path))),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {}
            _ => return Ok(Some(Route::BadRequest)),
        }
    }
}

fn route(method: Option<&str>, target: Option<&str>) -> Route {
    let path = target.unwrap_or("/").split('?').next().unwrap_or("/");
    let route = match path {
        "/" => Route::Html,
        "/status" => Route::Json,
        "/health" => Route::Health,
        "/ready" => Route::Ready,
        "/metrics" => Route::Metrics,
        _ => Route::NotFound,
    };
    match method {
        Some("GET") => route,
        _ if route == Route::NotFound => route,
        _ => Route::MethodNotAllowed,
    }
}

async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// Escapes text for HTML (node ids and addresses come from peers).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "never".into(), |v| format!("{v} ms ago"))
}

/// A reported count, or a dash when the node did not report (down, or a version-1 node).
fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

fn table(html: &mut String, title: &str, head: &[&str], rows: Vec<Vec<String>>) {
    let _ = write!(html, "<h2>{title}</h2>");
    if rows.is_empty() {
        html.push_str("<p>none</p>");
        return;
    }
    html.push_str("<table><tr>");
    for h in head {
        let _ = write!(html, "<th>{h}</th>");
    }
    html.push_str("</tr>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
}

/// The status page: the same as `/status`, as tables.
#[must_use]
pub fn render_html(s: &Status) -> String {
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>state server: epoch {}</title><style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style></head><body><h1>State server</h1>",
        s.epoch
    );
    let _ = write!(
        html,
        "<p>Committed epoch <b>{}</b>{}; refused links: {}.</p>",
        s.epoch,
        if s.rebuilding { " (rebuilding: no change until nodes have reported)" } else { "" },
        s.refused_links
    );
    let r = &s.reshards;
    let _ = write!(
        html,
        "<p>Reshards since start: {} started, {} committed ({} on the prepare timeout), {} aborted; {} tables \
         adopted from nodes.</p>",
        r.started, r.committed, r.prepare_timeouts, r.aborted, r.adopted
    );
    match &s.reshard {
        None => html.push_str("<p>No reshard in progress.</p>"),
        Some(r) => {
            let waiting: Vec<String> = r.waiting_for.iter().map(|f| esc(f)).collect();
            let _ = write!(
                html,
                "<p>Reshard to epoch <b>{}</b> started {} ms ago; waiting for: {}.</p>",
                r.epoch,
                r.started_ms_ago,
                if waiting.is_empty() { "nobody".into() } else { waiting.join(", ") }
            );
        }
    }
    let slots = s.slots.iter().map(|b| vec![b.slot.to_string(), esc(&b.id), esc(&b.addr)]).collect();
    table(&mut html, "Slots", &["slot", "broker", "address"], slots);
    let brokers = s
        .brokers
        .iter()
        .map(|b| {
            vec![
                esc(&b.id),
                esc(&b.addr),
                if b.connected { "yes" } else { "no" }.into(),
                ms(b.last_seen_ms),
                if b.leaving { "yes" } else { "" }.into(),
                count(b.load.map(|l| l.connections)),
                count(b.load.map(|l| l.channels)),
            ]
        })
        .collect();
    let head = ["id", "address", "connected", "last seen", "leaving", "frontend links", "channels"];
    table(&mut html, "Brokers", &head, brokers);
    let frontends = s
        .frontends
        .iter()
        .map(|f| {
            vec![
                esc(&f.id),
                esc(&f.peer),
                if f.connected { "yes" } else { "no" }.into(),
                ms(Some(f.last_seen_ms)),
                count(f.load.map(|l| l.connections)),
                count(f.load.map(|l| l.users)),
                count(f.load.map(|l| l.channels)),
            ]
        })
        .collect();
    let head = ["id", "peer", "connected", "last seen", "connections", "chat users", "channels"];
    table(&mut html, "Frontends", &head, frontends);
    html.push_str("</body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_state::{BrokerStatus, FrontendStatus, ReshardStatus, SlotStatus};
    use protocol::control::NodeLoad;

    #[test]
    fn routes() {
        assert_eq!(route(Some("GET"), Some("/status?x=1")), Route::Json);
        assert_eq!(route(Some("GET"), Some("/")), Route::Html);
        assert_eq!(route(Some("GET"), Some("/ready")), Route::Ready);
        assert_eq!(route(Some("GET"), Some("/metrics")), Route::Metrics);
        assert_eq!(route(Some("POST"), Some("/status")), Route::MethodNotAllowed);
        assert_eq!(route(Some("GET"), Some("/nope")), Route::NotFound);
    }

    #[tokio::test]
    async fn bad_and_oversized_heads_are_bad_requests() {
        let mut garbage: &[u8] = b"\x01\x02\r\n\r\n";
        assert_eq!(read_route(&mut garbage).await.unwrap(), Some(Route::BadRequest));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(10_000));
        assert_eq!(read_route(&mut huge.as_bytes()).await.unwrap(), Some(Route::BadRequest));
    }

    #[test]
    fn the_page_escapes_what_peers_sent_and_refreshes_itself() {
        let s = Status {
            epoch: 3,
            slots: vec![SlotStatus { slot: 0, id: "<b1>".into(), addr: "a&b".into() }],
            brokers: vec![BrokerStatus {
                id: "<b1>".into(),
                addr: "a&b".into(),
                connected: true,
                last_seen_ms: Some(12),
                leaving: false,
                load: Some(NodeLoad { connections: 0, users: 0, channels: 41 }),
            }],
            frontends: vec![FrontendStatus {
                id: "f1".into(),
                peer: "p".into(),
                connected: true,
                last_seen_ms: 3,
                load: Some(NodeLoad { connections: 1234, users: 56, channels: 78 }),
            }],
            reshard: Some(ReshardStatus { epoch: 4, waiting_for: vec!["f\"1".into()], started_ms_ago: 5 }),
            refused_links: 2,
            rebuilding: false,
            reshards: crate::cluster_state::ReshardCounters::default(),
        };
        let html = render_html(&s);
        assert!(html.contains("http-equiv=\"refresh\" content=\"2\""));
        assert!(html.contains("&lt;b1&gt;") && !html.contains("<b1>"));
        assert!(html.contains("a&amp;b"));
        assert!(html.contains("f&quot;1"));
        assert!(html.contains("12 ms ago"));
        assert!(html.contains("<td>1234</td><td>56</td><td>78</td>"), "frontend load: {html}");
        assert!(html.contains("<td>41</td>"), "broker channels: {html}");
    }
}
