//! The payload every published message carries, and the scanner that finds
//! it in a received frame without parsing the JSON around it.
//!
//! A payload is the JSON string `"<step>.<ch>.<seq>.<t>."` padded with `x`
//! to the message size: the step of the run, the channel's index, its
//! sequence number on that channel (from 0 in every step) and the publish
//! time in microseconds on the machine's monotonic clock
//! ([`crate::sys::now_us`]). The size is the length of that string.
//!
//! The scanner looks for `"data":"`: in a SocketCluster `#publish` push the
//! outer `data` is an object and only the inner one, our payload, is a
//! string, so every match is a payload. Channel names never contain a quote.

use std::fmt::Write;

use memchr::memmem;

/// What a publisher stamps into a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub step: u32,
    pub ch: u32,
    pub seq: u64,
    /// Publish time, µs on the monotonic clock.
    pub t: u64,
}

/// Appends the payload string's contents (no quotes), padded to `size` bytes.
pub fn push_payload(out: &mut String, s: &Stamp, size: usize) {
    let start = out.len();
    let _ = write!(out, "{}.{}.{}.{}.", s.step, s.ch, s.seq, s.t);
    let written = out.len() - start;
    out.extend(std::iter::repeat_n('x', size.saturating_sub(written)));
}

/// Appends one `#publish` transmit (no `cid`: fire and forget).
pub fn push_publish(out: &mut String, channel: &str, s: &Stamp, size: usize) {
    out.push_str(r##"{"event":"#publish","data":{"channel":""##);
    out.push_str(channel);
    out.push_str(r#"","data":""#);
    push_payload(out, s, size);
    out.push_str(r#""}}"#);
}

const MARK: &[u8] = br#""data":""#;

/// Finds payloads in received frames.
pub struct Scanner {
    finder: memmem::Finder<'static>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner { finder: memmem::Finder::new(MARK) }
    }
}

impl Scanner {
    /// A scanner for payloads that follow `mark` instead of `"data":"` (the
    /// chat scenario's stamps are the `"msg":"` of a stored message).
    #[must_use]
    pub fn after(mark: &'static [u8]) -> Scanner {
        Scanner { finder: memmem::Finder::new(mark) }
    }

    /// Like [`Scanner::scan`], also giving where each match starts in `frame`;
    /// `f` gets `None` for a match that is not a well-formed stamp.
    pub fn scan_at(&self, frame: &[u8], mut f: impl FnMut(usize, Option<Stamp>)) {
        let len = self.finder.needle().len();
        for pos in self.finder.find_iter(frame) {
            f(pos, parse(&frame[pos + len..]));
        }
    }

    /// Calls `f` for every well-formed payload in `frame`; returns how many
    /// matches were not well-formed stamps.
    pub fn scan(&self, frame: &[u8], mut f: impl FnMut(Stamp)) -> u64 {
        let mut bad = 0;
        let len = self.finder.needle().len();
        for pos in self.finder.find_iter(frame) {
            match parse(&frame[pos + len..]) {
                Some(s) => f(s),
                None => bad += 1,
            }
        }
        bad
    }
}

/// Reads a stamp at the start of `b` (a payload's contents, without the quote).
#[must_use]
pub fn parse_payload(b: &[u8]) -> Option<Stamp> {
    parse(b)
}

fn parse(b: &[u8]) -> Option<Stamp> {
    let mut fields = [0u64; 4];
    let mut i = 0;
    for field in &mut fields {
        let start = i;
        let mut v: u64 = 0;
        while let Some(&c) = b.get(i) {
            if c.is_ascii_digit() {
                v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                i += 1;
            } else {
                break;
            }
        }
        if i == start || b.get(i) != Some(&b'.') {
            return None;
        }
        i += 1;
        *field = v;
    }
    Some(Stamp {
        step: u32::try_from(fields[0]).ok()?,
        ch: u32::try_from(fields[1]).ok()?,
        seq: fields[2],
        t: fields[3],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_payload_is_found_again_in_a_batch_frame_and_has_the_requested_size() {
        let a = Stamp { step: 3, ch: 17, seq: 123_456, t: 987_654_321 };
        let b = Stamp { step: 3, ch: 2, seq: 0, t: 1 };
        let mut one = String::new();
        push_payload(&mut one, &a, 100);
        assert_eq!(one.len(), 100);
        let mut frame = String::from("[");
        push_publish(&mut frame, "load/17", &a, 100);
        frame.push(',');
        push_publish(&mut frame, "load/2", &b, 10);
        frame.push(']');
        let mut got = Vec::new();
        let bad = Scanner::default().scan(frame.as_bytes(), |s| got.push(s));
        assert_eq!((bad, got), (0, vec![a, b]));
        let v: serde_json::Value = serde_json::from_str(&frame).expect("valid JSON");
        assert_eq!(v[0]["data"]["data"].as_str().map(str::len), Some(100));
    }

    #[test]
    fn replies_and_malformed_payloads_are_not_taken_for_stamps() {
        let mut got = 0;
        let bad = Scanner::default().scan(br#"{"rid":3}{"event":"x","data":"1.2.3"}"#, |_| got += 1);
        assert_eq!((bad, got), (1, 0));
    }
}
