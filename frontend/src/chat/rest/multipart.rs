//! A streaming `multipart/form-data` reader (RFC 7578) over a request body: parts come one after
//! another, each part's bytes in pieces as they arrive, so a file part of any size passes through a
//! bounded buffer (one read piece plus the delimiter's length). Part headers are bounded
//! ([`MAX_PART_HEAD_BYTES`]) and so is the number of parts ([`MAX_PARTS`]).

use super::conn::Conn;
use super::RestError;

/// Largest header block of one part.
pub const MAX_PART_HEAD_BYTES: usize = 8 * 1024;
/// Most parts in one body.
pub const MAX_PARTS: usize = 16;
/// Longest boundary (RFC 2046: 70 characters).
const MAX_BOUNDARY: usize = 70;

/// A part's headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartHead {
    /// The form field name.
    pub name: String,
    /// The file name, for a file part.
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

fn bad(message: &'static str) -> RestError {
    RestError::http(400, "error-invalid-multipart", message)
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let b = parts.filter_map(|p| p.trim().split_once('=')).find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))?.1;
    let b = b.trim().trim_matches('"');
    (!b.is_empty() && b.len() <= MAX_BOUNDARY).then(|| b.to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first delimiter (a preamble may come first).
    Start,
    /// Inside a part's content.
    InPart,
    /// Right after a delimiter: a part's headers or the closing `--` follow.
    AtDelimiter,
    Done,
}

/// Reads the parts of one body.
pub struct Multipart<'c> {
    conn: &'c mut Conn,
    /// `\r\n--<boundary>`.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: State,
    parts: usize,
}

impl<'c> Multipart<'c> {
    pub fn new(conn: &'c mut Conn, boundary: &str) -> Self {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        // The first delimiter has no CRLF before it: pretend one, so every delimiter looks the same.
        Multipart { conn, delimiter, buf: b"\r\n".to_vec(), state: State::Start, parts: 0 }
    }

    /// Reads more of the body into the buffer; a body that ends inside the multipart is an error.
    async fn fill(&mut self) -> Result<(), RestError> {
        match self.conn.chunk().await? {
            Some(c) => {
                self.buf.extend_from_slice(&c);
                Ok(())
            }
            None => Err(bad("the multipart body ended before its closing boundary")),
        }
    }

    /// Moves to the next part and returns its headers; `None` after the last part. The rest of the
    /// current part, if any, is skipped.
    pub async fn next_part(&mut self) -> Result<Option<PartHead>, RestError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Start | State::InPart => {
                    // Skip content up to the next delimiter.
                    while self.read().await?.is_some() {}
                    if self.state == State::Start {
                        // `read` reached the first delimiter from the preamble.
                        self.state = State::AtDelimiter;
                    }
                }
                State::AtDelimiter => return self.part_head().await,
            }
        }
    }

    async fn part_head(&mut self) -> Result<Option<PartHead>, RestError> {
        while self.buf.len() < 2 {
            self.fill().await?;
        }
        if self.buf.starts_with(b"--") {
            self.state = State::Done;
            return Ok(None);
        }
        self.parts += 1;
        if self.parts > MAX_PARTS {
            return Err(bad("too many parts"));
        }
        // The delimiter line may end with spaces (transport padding), then CRLF; then the headers.
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                if !self.buf[..end].iter().all(|b| *b == b' ' || *b == b'\t') {
                    return Err(bad("garbage after a boundary"));
                }
                let mut headers = [httparse::EMPTY_HEADER; 16];
                match httparse::parse_headers(&self.buf[end + 2..], &mut headers) {
                    Ok(httparse::Status::Complete((len, headers))) => {
                        let head = part_head(headers)?;
                        self.buf.drain(..end + 2 + len);
                        self.state = State::InPart;
                        return Ok(Some(head));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return Err(bad("invalid part headers")),
                }
            }
            if self.buf.len() > MAX_PART_HEAD_BYTES {
                return Err(RestError::http(431, "error-invalid-multipart", "part headers too large"));
            }
            self.fill().await?;
        }
    }

    /// The next piece of the current part's content; `None` at its end.
    pub async fn read(&mut self) -> Result<Option<Vec<u8>>, RestError> {
        if !matches!(self.state, State::InPart | State::Start) {
            return Ok(None);
        }
        loop {
            if let Some(at) = find(&self.buf, &self.delimiter) {
                let rest = self.buf.split_off(at + self.delimiter.len());
                let mut piece = std::mem::replace(&mut self.buf, rest);
                piece.truncate(at);
                if self.state == State::InPart {
                    self.state = State::AtDelimiter;
                } else {
                    // End of the preamble: dropped; the caller moves on to the first part.
                    self.state = State::AtDelimiter;
                    return Ok(None);
                }
                return Ok(if piece.is_empty() { None } else { Some(piece) });
            }
            // Everything but a possible start of the delimiter is content.
            let keep = self.delimiter.len() - 1;
            if self.buf.len() > keep {
                let tail = self.buf.split_off(self.buf.len() - keep);
                let piece = std::mem::replace(&mut self.buf, tail);
                if self.state == State::InPart {
                    return Ok(Some(piece));
                }
                // Preamble: dropped.
                continue;
            }
            self.fill().await?;
        }
    }
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn part_head(headers: &[httparse::Header<'_>]) -> Result<PartHead, RestError> {
    let mut head = PartHead::default();
    let mut named = false;
    for h in headers {
        let value = std::str::from_utf8(h.value).map_err(|_| bad("part headers must be UTF-8"))?;
        if h.name.eq_ignore_ascii_case("content-disposition") {
            let (kind, params) = value.split_once(';').unwrap_or((value, ""));
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return Err(bad("parts must be form-data"));
            }
            for (k, v) in disposition_params(params) {
                match k.to_ascii_lowercase().as_str() {
                    "name" => {
                        head.name = v;
                        named = true;
                    }
                    "filename" if head.filename.is_none() => head.filename = Some(v),
                    // RFC 5987 `filename*=UTF-8''caf%C3%A9.pdf` wins over `filename`.
                    "filename*" => {
                        if let Some(name) = v.split_once("''").and_then(|(_, n)| super::percent_decode(n)) {
                            head.filename = Some(name);
                        }
                    }
                    _ => {}
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(value.trim().to_owned());
        }
    }
    if !named {
        return Err(bad("a part has no Content-Disposition name"));
    }
    Ok(head)
}

/// `; name="a"; filename="b \"c\".txt"` → pairs, quoted strings unescaped.
fn disposition_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ';' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ';')).collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                value = std::iter::from_fn(|| chars.next_if(|c| *c != ';')).collect::<String>().trim().to_owned();
            }
        }
        out.push((key.trim().to_owned(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_come_from_the_content_type() {
        assert_eq!(boundary("multipart/form-data; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary("Multipart/Form-Data; charset=x; boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))), None);
    }

    #[test]
    fn disposition_parameters_are_unquoted() {
        let p = disposition_params(r#" name="file"; filename="a \"b\"; c.txt"; x=y"#);
        assert_eq!(
            p,
            vec![
                ("name".to_owned(), "file".to_owned()),
                ("filename".to_owned(), "a \"b\"; c.txt".to_owned()),
                ("x".to_owned(), "y".to_owned())
            ]
        );
    }
}
