//! A minimal HTTP/1.1 `GET` for the nodes' admin endpoints (`/health`,
//! `/ready`, `/status`): one request per connection, bounded in time and
//! size. Not a general client: no redirects, no chunked bodies (the nodes
//! answer with `Content-Length` and close).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest response accepted.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    /// The body as JSON.
    ///
    /// # Errors
    /// When the body is not JSON; the error quotes it.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("{e} in body {:?}", self.body))
    }
}

/// `GET http://{addr}{path}`.
///
/// # Errors
/// Connection failures, timeouts and unparsable responses, as text.
pub async fn get(addr: impl std::fmt::Display, path: &str) -> Result<Response, String> {
    let addr = addr.to_string();
    tokio::time::timeout(REQUEST_TIMEOUT, get_inner(&addr, path))
        .await
        .map_err(|_| format!("GET http://{addr}{path}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))
}

async fn get_inner(addr: &str, path: &str) -> Result<Response, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE_BYTES {
            return Err("response too large".into());
        }
        if let Some(r) = parse(&buf, false)? {
            return Ok(r);
        }
    }
    parse(&buf, true)?.ok_or_else(|| format!("connection closed mid-response after {} bytes", buf.len()))
}

/// A whole response, `None` while more bytes are needed (`eof`: the peer
/// closed, so a body without a length is complete).
fn parse(buf: &[u8], eof: bool) -> Result<Option<Response>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = &buf[head_len..];
    match len {
        Some(n) if body.len() < n => Ok(None),
        Some(n) => Ok(Some(Response { status, body: String::from_utf8_lossy(&body[..n]).into_owned() })),
        // No length: the body runs to the end of the connection.
        None if eof => Ok(Some(Response { status, body: String::from_utf8_lossy(body).into_owned() })),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_content_length() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "{}"));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", true).unwrap().is_none());
    }
}
