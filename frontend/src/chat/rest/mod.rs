//! The chat over plain HTTP, on the frontend's ports beside the WebSocket: Rocket.Chat's REST names and
//! auth headers for bots and scripts ([`api`], one table onto the socket RPCs' [`rpc::call`]), and
//! files ([`files`]: `rooms.upload` in, `/file-upload/…` out), and incoming webhooks
//! (`/hooks/<id>/<token>`, answered by [`hooks_http`]). The node hands over every request on a
//! path in [`PREFIXES`] ([`crate::http::HttpApp`]); [`conn`] reads the body and writes the answer.
//!
//! [`rpc::call`]: super::rpc::call

use std::sync::Arc;
use std::time::Duration;

use ::chat::files::FileStore;
use ::chat::service::Caller;
use async_trait::async_trait;
use serde_json::Value;
use tracing::debug;

pub mod api;
pub mod conn;
pub mod error;
pub mod files;
pub mod multipart;

use super::hooks_http::{self, HOOKS_PREFIX};
use super::web::{self, WebSource};
use super::Chat;
use crate::http::{Head, HttpApp, HttpConnection};
use conn::Conn;
pub use error::RestError;

/// Default for `--rest-max-body-bytes`: §7.2's request size, the bound socket RPC data has too.
pub const DEFAULT_MAX_BODY_BYTES: usize = ::chat::limits::MAX_REQUEST_BYTES;
/// Default idle timeout of a REST connection (no byte from a slow client for this long: 408).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The chat's HTTP routes, by path prefix. **Another chat HTTP surface** adds its prefix here and its
/// arm in [`Rest::route`]; nothing else changes. (The browser client's routes, `/` and
/// [`web::WEB_PREFIX`], are claimed by [`web::claims`] unless `--no-web`.)
pub const PREFIXES: &[&str] = &["/api/v1/", "/file-upload/", HOOKS_PREFIX];

/// REST settings.
#[derive(Clone)]
pub struct RestConfig {
    /// Largest JSON body (uploads have their own limit, `FileUpload_MaxFileSize`).
    pub max_body_bytes: usize,
    /// Longest silence of a client while it sends its request or reads the answer.
    pub idle_timeout: Duration,
    /// Where uploads go; `None`: uploads are refused (503).
    pub files: Option<Arc<dyn FileStore>>,
    /// Where the browser client's files come from (or `Off`).
    pub web: WebSource,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            files: None,
            web: WebSource::Embedded,
        }
    }
}

impl std::fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("idle_timeout", &self.idle_timeout)
            .field("files", &self.files.is_some())
            .field("web", &self.web)
            .finish()
    }
}

/// What a route answered.
pub enum Reply {
    /// A JSON document with this status (`success: true` is added to objects on 200).
    Json(u16, Value),
    /// The route wrote its answer itself (a file).
    Sent,
}

/// The chat's HTTP surface of one node.
pub struct Rest {
    chat: Arc<Chat>,
}

impl Rest {
    #[must_use]
    pub fn new(chat: Arc<Chat>) -> Rest {
        Rest { chat }
    }

    pub(crate) fn chat(&self) -> &Arc<Chat> {
        &self.chat
    }

    pub(crate) fn config(&self) -> &RestConfig {
        self.chat.rest_config()
    }

    /// The chat HTTP router: one arm per prefix of [`PREFIXES`].
    async fn route(&self, conn: &mut Conn) -> Result<Reply, RestError> {
        let path = conn.head.path.clone();
        if let Some(endpoint) = path.strip_prefix("/api/v1/") {
            return api::serve(self, conn, endpoint).await;
        }
        if let Some(rest) = path.strip_prefix("/file-upload/") {
            return files::download(self, conn, rest).await;
        }
        if path.starts_with(HOOKS_PREFIX) {
            // Incoming webhooks: the secret in the path is the credential; their module owns the rest.
            let body = conn.body(hooks_http::MAX_HOOK_BODY).await?;
            let (status, answer) = hooks_http::handle(&self.chat, &conn.head.method, &path, &body).await;
            return Ok(Reply::Json(status, answer));
        }
        if web::claims(&path) {
            return web::serve(&self.config().web, conn).await;
        }
        Err(unknown_endpoint())
    }

    /// The caller a request's credentials name: `X-Auth-Token` with `X-User-Id` (Rocket.Chat), or
    /// `Authorization: Bearer <token>`; with `cookies`, also Rocket.Chat's `rc_token`/`rc_uid` cookies
    /// and query parameters (what a browser sends for an `<img src>`). The token is a login token or a
    /// personal access token; the session is checked in the store on every request.
    pub(crate) async fn authenticate(&self, head: &Head, cookies: bool) -> Result<Caller, RestError> {
        let mut token = head.header("x-auth-token").map(str::to_owned);
        let mut uid = head.header("x-user-id").map(str::to_owned);
        if token.is_none() {
            token = head
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
                .map(|t| t.trim().to_owned());
        }
        if token.is_none() && cookies {
            let jar = head.header("cookie").unwrap_or_default();
            let cookie = |name: &str| {
                jar.split(';').filter_map(|c| c.trim().split_once('=')).find(|(n, _)| *n == name).map(|(_, v)| v)
            };
            let query = parse_query(&head.query);
            let param = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            token = cookie("rc_token").map(str::to_owned).or_else(|| param("rc_token"));
            uid = cookie("rc_uid").map(str::to_owned).or_else(|| param("rc_uid"));
        }
        let token = token.filter(|t| !t.is_empty()).ok_or_else(RestError::unauthorized)?;
        let login = self.chat.service().resume(&token).await?;
        if uid.as_deref().is_some_and(|u| u != login.user.id.as_str()) {
            return Err(RestError::unauthorized());
        }
        Ok(Caller { uid: login.user.id, sid: login.session.id })
    }
}

fn unknown_endpoint() -> RestError {
    RestError::http(404, "error-unknown-endpoint", "no such endpoint")
}

#[async_trait]
impl HttpApp for Rest {
    fn claims(&self, path: &str) -> bool {
        PREFIXES.iter().any(|p| path.starts_with(p)) || (self.config().web != WebSource::Off && web::claims(path))
    }

    async fn serve(&self, c: HttpConnection) {
        let mut conn = Conn::new(c, self.config().idle_timeout);
        let reply = self.route(&mut conn).await;
        let written = match reply {
            Ok(Reply::Json(status, mut v)) => {
                if let (200, Value::Object(m)) = (status, &mut v) {
                    m.insert("success".into(), true.into());
                }
                conn.respond_json(status, &v).await
            }
            Ok(Reply::Sent) => Ok(()),
            // A stream that failed after its head was sent can only be cut short.
            Err(_) if conn.answered() => Ok(()),
            Err(e) => conn.respond_error(&e).await,
        };
        if let Err(e) = written {
            debug!(error = %e, peer = %conn.peer, "writing a REST answer failed");
        }
        conn.close().await;
    }
}

/// `a=1&b=x%20y` → pairs, percent-decoded (`+` is a space); pairs that do not decode to UTF-8 are dropped.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Percent-decoding for query strings and path segments; `None` for bad escapes or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_decoded_and_bad_escapes_dropped() {
        let q = parse_query("roomName=caf%C3%A9&count=5&text=a+b&bad=%zz&flag&=x");
        assert_eq!(
            q,
            vec![
                ("roomName".to_owned(), "café".to_owned()),
                ("count".to_owned(), "5".to_owned()),
                ("text".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
                (String::new(), "x".to_owned()),
            ]
        );
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
