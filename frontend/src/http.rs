//! The HTTP side of a listener: reads one request head, answers `/health`
//! itself, and accepts WebSocket upgrades on the configured path.
//!
//! Reading the head ourselves (rather than inside the WebSocket library)
//! lets one port serve both, bounds the head's size, and keeps a plain
//! `TcpStream` with no extra buffering layer under every idle socket.
//!
//! Any other path the application claims ([`HttpApp::claims`], e.g. the chat's REST API) is handed
//! over whole, with the parsed head and the bytes read past it, to [`HttpApp::serve`]; the node
//! knows nothing about bodies or routes beyond its own.

use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;

use crate::acl::UpgradeRequest;

/// Largest request head accepted.
const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;

/// What a connection turned out to be.
pub enum Request {
    /// A valid upgrade on our path; the 101 response has not been sent yet.
    WebSocket {
        request: UpgradeRequest,
        key: String,
        /// Bytes read past the head (a client that did not wait for the 101).
        leftover: Vec<u8>,
    },
    /// `GET /health`.
    Health,
    /// `GET /ready`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// A request on a path the application's [`HttpApp`] claims.
    App { head: Head, leftover: Vec<u8> },
    /// Anything else: answer with this status and close.
    Refuse { status: u16, reason: &'static str },
    /// The peer closed before sending a whole head.
    Gone,
}

/// A parsed request head, owned, for an application route.
#[derive(Clone, Debug)]
pub struct Head {
    pub method: String,
    /// The path, without the query, not percent-decoded.
    pub path: String,
    /// The raw query string (after `?`), possibly empty.
    pub query: String,
    /// Header names lower-cased; values that are not UTF-8 are dropped.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (lower-case), trimmed.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim())
    }
}

/// A connection handed to the application after its head was read.
pub struct HttpConnection {
    pub stream: TcpStream,
    pub head: Head,
    /// Bytes read past the head (the start of the body).
    pub leftover: Vec<u8>,
    pub peer: SocketAddr,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
}

/// HTTP routes of the application, served on the same ports as the WebSockets.
#[async_trait]
pub trait HttpApp: Send + Sync + 'static {
    /// Whether a request for `path` is the application's (checked after the node's own paths).
    fn claims(&self, path: &str) -> bool;
    /// Answers the request (and any that follow on the connection); owns the connection from here.
    async fn serve(&self, conn: HttpConnection);
}

/// Reads and classifies one request head; paths `app` claims become [`Request::App`].
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    ws_path: &str,
    app: Option<&dyn HttpApp>,
) -> std::io::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Request::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => return Ok(classify(&req, ws_path, app, buf[len..].to_vec())),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => continue,
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Ok(Request::Refuse { status: 431, reason: "Request Header Fields Too Large" })
            }
            Err(_) => return Ok(Request::Refuse { status: 400, reason: "Bad Request" }),
        }
    }
}

fn header<'a>(req: &'a httparse::Request<'_, '_>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn classify(req: &httparse::Request<'_, '_>, ws_path: &str, app: Option<&dyn HttpApp>, leftover: Vec<u8>) -> Request {
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let ours = ["/health", "/ready", "/metrics", ws_path, ws_path.trim_end_matches('/')];
    if app.is_some_and(|a| !ours.contains(&path) && a.claims(path)) {
        let head = Head {
            method: req.method.unwrap_or_default().to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: req
                .headers
                .iter()
                .filter_map(|h| Some((h.name.to_ascii_lowercase(), std::str::from_utf8(h.value).ok()?.to_owned())))
                .collect(),
        };
        return Request::App { head, leftover };
    }
    if req.method != Some("GET") {
        return Request::Refuse { status: 405, reason: "Method Not Allowed" };
    }
    if path == "/health" {
        return Request::Health;
    }
    if path == "/ready" {
        return Request::Ready;
    }
    if path == "/metrics" {
        return Request::Metrics;
    }
    if path != ws_path && path != ws_path.trim_end_matches('/') {
        return Request::Refuse { status: 404, reason: "Not Found" };
    }
    let upgrade = has_token(header(req, "upgrade"), "websocket") && has_token(header(req, "connection"), "upgrade");
    let key = header(req, "sec-websocket-key");
    match (upgrade, key, header(req, "sec-websocket-version")) {
        (true, Some(key), Some("13")) => Request::WebSocket {
            request: UpgradeRequest {
                path: path.to_owned(),
                query: query.to_owned(),
                origin: header(req, "origin").map(str::to_owned),
                user_agent: header(req, "user-agent").map(str::to_owned),
            },
            key: key.to_owned(),
            leftover,
        },
        _ => Request::Refuse { status: 400, reason: "Bad Request" },
    }
}

/// Answers a plain HTTP request and leaves the connection to be closed.
pub async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

/// Completes the WebSocket upgrade.
pub async fn accept_upgrade<S: AsyncWrite + Unpin>(stream: &mut S, key: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn classify_bytes(raw: &str) -> Request {
        let mut s = raw.as_bytes();
        read_request(&mut s, "/socketcluster/", None).await.unwrap()
    }

    const UPGRADE: &str = "GET /socketcluster/?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://x\r\n\r\n";

    #[tokio::test]
    async fn upgrades_on_the_path_only() {
        match classify_bytes(UPGRADE).await {
            Request::WebSocket { request, key, leftover } => {
                assert_eq!(request.query, "x=1");
                assert_eq!(request.origin.as_deref(), Some("http://x"));
                assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
                assert!(leftover.is_empty());
            }
            _ => panic!("not an upgrade"),
        }
        let other = UPGRADE.replace("/socketcluster/", "/elsewhere");
        assert!(matches!(classify_bytes(&other).await, Request::Refuse { status: 404, .. }));
    }

    #[tokio::test]
    async fn health_and_bad_requests() {
        assert!(matches!(classify_bytes("GET /health HTTP/1.1\r\n\r\n").await, Request::Health));
        assert!(matches!(
            classify_bytes("GET /socketcluster/ HTTP/1.1\r\n\r\n").await,
            Request::Refuse { status: 400, .. }
        ));
        assert!(matches!(classify_bytes("\x01\x02garbage\r\n\r\n").await, Request::Refuse { status: 400, .. }));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(10_000));
        assert!(matches!(classify_bytes(&huge).await, Request::Refuse { status: 431, .. }));
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
