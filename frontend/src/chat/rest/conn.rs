//! One REST request on a connection: the body (by `Content-Length` only, in bounded pieces, each read
//! under an idle timeout), and the response (JSON, or a file streamed out). One request per
//! connection: every response says `Connection: close` (keep-alive is not offered; REST clients here
//! are bots and scripts, and the WebSocket is the long-lived surface).
//!
//! Framing rules, each a clear error and never a panic: `Transfer-Encoding` (chunked or any other) is
//! refused with 411 (send `Content-Length`); a `Content-Length` that is not one plain number, or
//! repeated with different values, is 400; a body that stops before its length is 400; a peer silent
//! for longer than the idle timeout is 408.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::RestError;
use crate::http::{Head, HttpConnection};

/// Largest piece of a body handed out at once (and the read buffer's size).
pub const READ_CHUNK: usize = 64 * 1024;
/// After answering early (an error before the whole body arrived), at most this much more of the body
/// is read and dropped, for at most [`LINGER_TIME`], so the peer sees the answer instead of a reset.
const LINGER_BYTES: u64 = 4 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A request being answered.
pub struct Conn {
    stream: TcpStream,
    pub head: Head,
    pub peer: std::net::SocketAddr,
    /// Bytes read past the head and not handed out yet.
    pending: Vec<u8>,
    /// Body bytes not handed out yet (`Content-Length` minus what was consumed).
    remaining: u64,
    /// The body's framing was invalid (the answer says so; nothing more is read).
    framing: Option<RestError>,
    idle: Duration,
    answered: bool,
    /// The client waits for `100 Continue` before it sends the body (`Expect: 100-continue`, what curl
    /// sends for uploads); sent when the body is first read, so a refusal before that costs no upload.
    expect_continue: bool,
}

/// The body length the head declares, or the framing error to answer with.
fn body_length(head: &Head) -> Result<u64, RestError> {
    if head.header("transfer-encoding").is_some() {
        return Err(RestError::http(
            411,
            "error-length-required",
            "send the body with Content-Length (chunked is not accepted)",
        ));
    }
    let mut length = None;
    for (_, v) in head.headers.iter().filter(|(n, _)| n == "content-length") {
        let v = v.trim();
        let n = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) { v.parse::<u64>().ok() } else { None };
        match (n, length) {
            (None, _) => return Err(RestError::http(400, "error-bad-request", "invalid Content-Length")),
            (Some(n), Some(prev)) if n != prev => {
                return Err(RestError::http(400, "error-bad-request", "conflicting Content-Length headers"))
            }
            (Some(n), _) => length = Some(n),
        }
    }
    Ok(length.unwrap_or(0))
}

impl Conn {
    pub fn new(c: HttpConnection, idle: Duration) -> Conn {
        let (remaining, framing) = match body_length(&c.head) {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e)),
        };
        let mut pending = c.leftover;
        pending.truncate(usize::try_from(remaining).unwrap_or(usize::MAX));
        let expect_continue = c.head.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
        Conn {
            stream: c.stream,
            head: c.head,
            peer: c.peer,
            pending,
            remaining,
            framing,
            idle,
            answered: false,
            expect_continue,
        }
    }

    /// Body bytes still to come (the declared length before any read); the framing error if the
    /// head's framing was invalid.
    pub fn content_length(&self) -> Result<u64, RestError> {
        match &self.framing {
            Some(e) => Err(e.clone()),
            None => Ok(self.remaining),
        }
    }

    /// The next piece of the body (at most [`READ_CHUNK`] bytes), `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, RestError> {
        if let Some(e) = &self.framing {
            return Err(e.clone());
        }
        if self.remaining == 0 {
            return Ok(None);
        }
        if !self.pending.is_empty() {
            let take = self.pending.len().min(READ_CHUNK);
            let rest = self.pending.split_off(take);
            let out = std::mem::replace(&mut self.pending, rest);
            self.remaining -= out.len() as u64;
            return Ok(Some(out));
        }
        if std::mem::take(&mut self.expect_continue) {
            if let Err(e) = self.write_timed(b"HTTP/1.1 100 Continue\r\n\r\n").await {
                return Err(RestError::http(400, "error-bad-request", format!("writing 100 Continue failed: {e}")));
            }
        }
        let want = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(READ_CHUNK);
        let mut buf = vec![0u8; want];
        let n = match tokio::time::timeout(self.idle, self.stream.read(&mut buf)).await {
            Err(_) => return Err(RestError::http(408, "error-timeout", "the request body stalled")),
            Ok(Err(_)) | Ok(Ok(0)) => {
                return Err(RestError::http(400, "error-bad-request", "the request body ended early"))
            }
            Ok(Ok(n)) => n,
        };
        buf.truncate(n);
        self.remaining -= n as u64;
        Ok(Some(buf))
    }

    /// The whole body, refused with 413 without reading it when it is declared longer than `max`.
    pub async fn body(&mut self, max: usize) -> Result<Vec<u8>, RestError> {
        let length = self.content_length()?;
        if length > max as u64 {
            return Err(RestError::too_large(max as u64, length));
        }
        let mut body = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
        while let Some(c) = self.chunk().await? {
            body.extend_from_slice(&c);
        }
        Ok(body)
    }

    /// The body as a JSON object (an empty body is an empty object).
    pub async fn json_body(&mut self, max: usize) -> Result<serde_json::Map<String, Value>, RestError> {
        let body = self.body(max).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice(&body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(RestError::http(400, "error-invalid-body", "the body must be a JSON object")),
            Err(_) => Err(RestError::http(400, "error-invalid-body", "the body is not valid JSON")),
        }
    }

    async fn write_head(&mut self, status: u16, headers: &[(&str, String)], length: u64) -> std::io::Result<()> {
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {length}\r\nConnection: close\r\n\r\n"));
        self.answered = true;
        tokio::time::timeout(self.idle, self.stream.write_all(head.as_bytes()))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    /// Answers with a JSON document.
    pub async fn respond_json(&mut self, status: u16, value: &Value) -> std::io::Result<()> {
        let body = value.to_string();
        let headers = [("Content-Type", "application/json".to_owned()), ("Cache-Control", "no-store".to_owned())];
        self.write_head(status, &headers, body.len() as u64).await?;
        self.write_timed(body.as_bytes()).await?;
        self.stream.flush().await
    }

    /// Answers with an error document.
    pub async fn respond_error(&mut self, e: &RestError) -> std::io::Result<()> {
        let body = e.to_json().to_string();
        let mut headers =
            vec![("Content-Type", "application/json".to_owned()), ("Cache-Control", "no-store".to_owned())];
        if let Some(ms) = e.retry_after_ms {
            headers.push(("Retry-After", ms.div_ceil(1000).max(1).to_string()));
        }
        self.write_head(e.status, &headers, body.len() as u64).await?;
        self.write_timed(body.as_bytes()).await?;
        self.stream.flush().await
    }

    /// Answers with `body` and `headers` (`Content-Length` is added); with `send_body` false (a `HEAD`
    /// request, a 304) only the head is written, still declaring the body's length.
    pub async fn respond_bytes(
        &mut self,
        status: u16,
        headers: &[(&str, String)],
        body: &[u8],
        send_body: bool,
    ) -> std::io::Result<()> {
        self.write_head(status, headers, body.len() as u64).await?;
        if send_body {
            self.write_timed(body).await?;
        }
        self.stream.flush().await
    }

    /// Answers 200 with `length` bytes from `reader`, streamed in pieces, each write under the idle timeout.
    pub async fn respond_stream(
        &mut self,
        headers: &[(&str, String)],
        length: u64,
        reader: &mut (dyn AsyncRead + Send + Unpin),
    ) -> std::io::Result<()> {
        self.write_head(200, headers, length).await?;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut sent = 0u64;
        while sent < length {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                // The store had fewer bytes than recorded: cut the response short rather than pad it.
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            let n = n.min(usize::try_from(length - sent).unwrap_or(usize::MAX));
            self.write_timed(&buf[..n]).await?;
            sent += n as u64;
        }
        self.stream.flush().await
    }

    async fn write_timed(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(self.idle, self.stream.write_all(bytes))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    /// Whether a response was started.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Ends the connection. If body bytes were left unread (an early answer), reads and drops a bounded
    /// amount first, so the peer reads the answer rather than a connection reset.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
        if self.remaining == 0 || self.framing.is_some() {
            return;
        }
        let mut left = self.remaining.min(LINGER_BYTES);
        let mut buf = vec![0u8; READ_CHUNK];
        let drain = async {
            while left > 0 {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n as u64),
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Head {
        Head {
            method: "POST".into(),
            path: "/api/v1/x".into(),
            query: String::new(),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn framing_is_content_length_only() {
        assert_eq!(body_length(&head(&[])).unwrap(), 0);
        assert_eq!(body_length(&head(&[("content-length", " 12 ")])).unwrap(), 12);
        assert_eq!(body_length(&head(&[("content-length", "5"), ("content-length", "5")])).unwrap(), 5);
        assert_eq!(body_length(&head(&[("transfer-encoding", "chunked")])).unwrap_err().status, 411);
        for bad in ["-1", "+5", "1e3", "", "99999999999999999999999"] {
            assert_eq!(body_length(&head(&[("content-length", bad)])).unwrap_err().status, 400, "{bad}");
        }
        let two = head(&[("content-length", "5"), ("content-length", "6")]);
        assert_eq!(body_length(&two).unwrap_err().status, 400);
    }
}
