//! Webhook integrations (§1.8, §6): incoming webhooks (a secret URL that posts as a user into a room)
//! and outgoing webhooks (an HTTP POST of each matching message, HMAC-signed, retried with backoff),
//! plus their delivery history. Pure: validation, trigger matching, the payload, the signature and the
//! retry schedule. Delivery itself (HTTP, queue, SSRF guard at connect time) is the frontend's.
//!
//! Secrets: an incoming webhook's URL token is stored as SHA-256 only (like session tokens) and shown
//! once at creation. An outgoing webhook's signing secret must be stored as is (HMAC needs it); it is
//! shown at creation and never listed again ([`Integration::redacted`]).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::ids::{Millis, RoomId, UserId};
use crate::limits::check_chars;
use crate::message::Message;
use crate::room::{Room, RoomType};
use crate::{ChatError, Result};

/// Integration name: characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Alias shown instead of the user's name: characters.
pub const MAX_ALIAS_CHARS: usize = 64;
/// Outgoing: target URLs per integration.
pub const MAX_URLS: usize = 5;
/// Outgoing: URL length in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Outgoing: trigger words per integration, and characters per word.
pub const MAX_TRIGGER_WORDS: usize = 20;
pub const MAX_TRIGGER_WORD_CHARS: usize = 64;
/// Outgoing: attempts per delivery at most (first try + retries).
pub const MAX_ATTEMPTS: u32 = 10;
/// Default attempts per delivery.
pub const DEFAULT_ATTEMPTS: u32 = 4;
/// Integrations listed per call.
pub const MAX_INTEGRATIONS: usize = 500;
/// Delivery history records per query.
pub const MAX_HISTORY: usize = 200;
/// How long delivery records are kept.
pub const HISTORY_TTL_MS: Millis = 7 * 24 * 3600 * 1000;
/// Header with the request's Unix time in seconds (part of the signed string).
pub const TIMESTAMP_HEADER: &str = "X-Chat-Request-Timestamp";
/// Header with `v0=<hex HMAC-SHA256>` of `v0:{timestamp}:{body}` (Slack's scheme, §6).
pub const SIGNATURE_HEADER: &str = "X-Chat-Signature";

/// Incoming (`webhook-incoming`) or outgoing (`webhook-outgoing`), RC's type names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntegrationKind {
    #[serde(rename = "webhook-incoming")]
    Incoming,
    #[serde(rename = "webhook-outgoing")]
    Outgoing,
}

impl IntegrationKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationKind::Incoming => "webhook-incoming",
            IntegrationKind::Outgoing => "webhook-outgoing",
        }
    }

    /// Also accepts `incoming`/`outgoing`.
    #[must_use]
    pub fn parse(s: &str) -> Option<IntegrationKind> {
        match s {
            "webhook-incoming" | "incoming" => Some(IntegrationKind::Incoming),
            "webhook-outgoing" | "outgoing" => Some(IntegrationKind::Outgoing),
            _ => None,
        }
    }
}

/// A stored integration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: IntegrationKind,
    pub name: String,
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub enabled: bool,
    /// Incoming: the room posted into. Outgoing: the room watched (`None`: every public channel).
    pub rid: Option<RoomId>,
    /// Incoming: posts as this user. Outgoing: loop prevention (its own messages never trigger).
    pub user_id: UserId,
    pub username: String,
    pub alias: Option<String>,
    /// Incoming: SHA-256 of the URL token.
    pub token_hash: Option<String>,
    /// Outgoing: where to POST.
    pub urls: Vec<String>,
    pub trigger_words: Vec<String>,
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub trigger_anywhere: bool,
    /// Outgoing: HMAC-SHA256 signing secret (stored as is: signing needs it).
    pub secret: Option<String>,
    /// Outgoing: attempts per delivery (1 = no retry).
    pub attempts: u32,
    pub created_by: UserId,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Integration {
    /// As admins see it in lists: no token hash, no signing secret.
    #[must_use]
    pub fn redacted(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Value::Object(m) = &mut v {
            m.remove("tokenHash");
            m.remove("secret");
        }
        v
    }

    /// The trigger that makes message `m` in `room` fire this outgoing webhook: `Some(None)` for a match
    /// without trigger words, `Some(Some(word))` for a trigger word, `None` for no match.
    /// Never fires on system messages, tombstones, or the integration's own user (loop prevention).
    #[must_use]
    pub fn trigger(&self, room: &Room, m: &Message) -> Option<Option<String>> {
        if self.kind != IntegrationKind::Outgoing || !self.enabled || m.t.is_some() || m.deleted_at.is_some() {
            return None;
        }
        if m.u.id == self.user_id {
            return None;
        }
        match &self.rid {
            Some(rid) if *rid != room.id => return None,
            None if room.t != RoomType::Channel => return None,
            _ => {}
        }
        if self.trigger_words.is_empty() {
            return Some(None);
        }
        let text = m.msg.trim_start();
        let first = text.split_whitespace().next().unwrap_or("");
        for w in &self.trigger_words {
            let hit = if self.trigger_anywhere { text.split_whitespace().any(|t| t == w) } else { first == w };
            if hit {
                return Some(Some(w.clone()));
            }
        }
        None
    }
}

/// Input of an integration's creation (validated by [`NewIntegration::validate`]).
#[derive(Clone, Debug)]
pub struct NewIntegration {
    pub kind: IntegrationKind,
    pub name: String,
    pub enabled: bool,
    pub rid: Option<RoomId>,
    /// Incoming: posts as this user. Outgoing: its messages never trigger.
    pub username: String,
    pub alias: Option<String>,
    pub urls: Vec<String>,
    pub trigger_words: Vec<String>,
    pub trigger_anywhere: bool,
    /// Attempts per delivery (first try included); `None` = [`DEFAULT_ATTEMPTS`].
    pub attempts: Option<u32>,
}

impl NewIntegration {
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(ChatError::invalid("name", "is required"));
        }
        check_chars("name", &self.name, MAX_NAME_CHARS)?;
        if let Some(a) = &self.alias {
            check_chars("alias", a, MAX_ALIAS_CHARS)?;
        }
        match self.kind {
            IntegrationKind::Incoming => {
                if self.rid.is_none() {
                    return Err(ChatError::invalid("channel", "an incoming webhook needs a room"));
                }
            }
            IntegrationKind::Outgoing => {
                if self.urls.is_empty() {
                    return Err(ChatError::invalid("urls", "is required"));
                }
                if self.urls.len() > MAX_URLS {
                    return Err(ChatError::TooLong { field: "urls", limit: MAX_URLS, got: self.urls.len() });
                }
                for u in &self.urls {
                    parse_http_url(u)?;
                }
                if self.trigger_words.len() > MAX_TRIGGER_WORDS {
                    let got = self.trigger_words.len();
                    return Err(ChatError::TooLong { field: "triggerWords", limit: MAX_TRIGGER_WORDS, got });
                }
                for w in &self.trigger_words {
                    check_chars("triggerWords", w, MAX_TRIGGER_WORD_CHARS)?;
                    if w.is_empty() || w.chars().any(char::is_whitespace) {
                        return Err(ChatError::invalid("triggerWords", "must be single words"));
                    }
                }
                if let Some(n) = self.attempts {
                    if n == 0 || n > MAX_ATTEMPTS {
                        return Err(ChatError::invalid("retryCount", "must be between 0 and 9 retries"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A `http://host[:port]/path` URL split for the webhook client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parses an outgoing webhook URL. Only `http://` is supported (no TLS client in this build); userinfo
/// is refused (it would be sent nowhere and hides the real host from a reader).
pub fn parse_http_url(url: &str) -> Result<HttpUrl> {
    if url.len() > MAX_URL_BYTES {
        return Err(ChatError::TooLong { field: "urls", limit: MAX_URL_BYTES, got: url.len() });
    }
    let rest = url.strip_prefix("http://").ok_or(ChatError::invalid("urls", "must start with http://"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    if authority.contains('@') || authority.is_empty() {
        return Err(ChatError::invalid("urls", "needs a host and no user info"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ChatError::invalid("urls", "contains spaces or control characters"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(ChatError::invalid("urls", "bad IPv6 host"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| ChatError::invalid("urls", "bad port"))?,
            None if after.is_empty() => 80,
            None => return Err(ChatError::invalid("urls", "bad host")),
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| ChatError::invalid("urls", "bad port"))?),
            None => (authority.to_owned(), 80),
        }
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:_".contains(c)) {
        return Err(ChatError::invalid("urls", "bad host"));
    }
    Ok(HttpUrl { host, port, path })
}

/// The JSON body of an outgoing webhook: Rocket.Chat's field names (§6).
#[must_use]
pub fn payload(room: &Room, m: &Message, trigger_word: Option<&str>) -> Value {
    json!({
        "bot": false,
        "trigger_word": trigger_word,
        "channel_id": room.id,
        "channel_name": room.name,
        "message_id": m.id,
        "seq": m.seq,
        "timestamp": m.ts,
        "user_id": m.u.id,
        "user_name": m.u.username,
        "text": m.msg,
        "tmid": m.tmid,
        "isEdited": m.edited_at.is_some(),
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`: the value of [`SIGNATURE_HEADER`]. Receivers
/// recompute it over the raw body and the [`TIMESTAMP_HEADER`], compare in constant time and reject
/// old timestamps (replays).
#[must_use]
pub fn sign(secret: &str, timestamp_secs: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(format!("v0:{timestamp_secs}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex(&mac.finalize().into_bytes()))
}

/// Equality that takes as long for every input of the same length (token hashes, signatures).
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Exponential backoff between attempts: `base · 2^(n-1)` after the n-th failed attempt, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// Wait after failed attempt `attempt` (1-based) before the next.
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).map_or(self.max, |d| d.min(self.max))
    }
}

/// Outcome of one delivery (all its attempts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Retries still to come.
    Pending,
    Success,
    /// Every attempt failed.
    Failed,
    /// The SSRF guard refused the target; not retried.
    Refused,
}

impl DeliveryStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Success => "success",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Refused => "refused",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "success" => Some(DeliveryStatus::Success),
            "failed" => Some(DeliveryStatus::Failed),
            "refused" => Some(DeliveryStatus::Refused),
            _ => None,
        }
    }
}

/// One delivery of one message to one URL (`integration_history`), updated after every attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    pub integration_id: String,
    pub message_id: Option<String>,
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::UserRef;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };
        let delays: Vec<u64> = (1..=6).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(200), Duration::from_secs(1), "no overflow on huge attempt numbers");
        assert_eq!(Backoff::default().delay(3), Duration::from_secs(4));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_version_timestamp_and_body() {
        // Expected value computed independently (Python's hmac module over the same string).
        assert_eq!(
            sign("secret", 1_700_000_000, br#"{"text":"hi"}"#),
            "v0=8e749b31007b91a17a0c34f6466f5ee6aa8bf6901cf66b9a1e5dbd5da9477e44"
        );
        let a = sign("secret", 1_700_000_000, br#"{"text":"hi"}"#);
        assert_eq!(a, sign("secret", 1_700_000_000, br#"{"text":"hi"}"#));
        assert_ne!(a, sign("secret", 1_700_000_001, br#"{"text":"hi"}"#), "timestamp is signed");
        assert_ne!(a, sign("other", 1_700_000_000, br#"{"text":"hi"}"#));
        assert_ne!(a, sign("secret", 1_700_000_000, br#"{"text":"hi!"}"#));
        assert!(constant_time_eq(a.as_bytes(), a.clone().as_bytes()));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn only_plain_http_urls_with_a_host_are_accepted() {
        let u = parse_http_url("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 8080, "/hook?x=1"));
        let u = parse_http_url("http://example.com").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("example.com", 80, "/"));
        let u = parse_http_url("http://[::1]:9/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        for bad in
            ["https://a/", "ftp://a", "http://", "http://u:p@a/", "http://a:99999/", "http://a b/", "http://a/x y"]
        {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
    }

    fn outgoing(rid: Option<&str>, words: &[&str], anywhere: bool) -> Integration {
        Integration {
            id: "i".into(),
            kind: IntegrationKind::Outgoing,
            name: "n".into(),
            enabled: true,
            rid: rid.map(RoomId::from),
            user_id: UserId::from("bot"),
            username: "bot".into(),
            alias: None,
            token_hash: None,
            urls: vec!["http://x/".into()],
            trigger_words: words.iter().map(|w| (*w).to_owned()).collect(),
            trigger_anywhere: anywhere,
            secret: Some("s".into()),
            attempts: 3,
            created_by: UserId::from("admin"),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn room(t: RoomType) -> Room {
        Room {
            id: RoomId::from("r1"),
            t,
            name: Some("general".into()),
            fname: "general".into(),
            topic: String::new(),
            description: String::new(),
            announcement: String::new(),
            creator: UserId::from("owner"),
            dm_key: None,
            read_only: false,
            react_when_read_only: false,
            archived: false,
            default: false,
            users_count: 1,
            counters: Default::default(),
            last_message_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn msg(author: &str, text: &str) -> Message {
        Message {
            id: crate::ids::MessageId::from("m1"),
            rid: RoomId::from("r1"),
            seq: 1,
            u: UserRef { id: UserId::from(author), username: author.into(), name: author.into() },
            msg: text.into(),
            t: None,
            ts: 1,
            updated_at: 1,
            edited_at: None,
            edited_by: None,
            tmid: None,
            tshow: false,
            timeline: true,
            tcount: 0,
            tlm: None,
            replies: vec![],
            mentions: vec![],
            group_mention: false,
            reactions: Default::default(),
            pinned: false,
            pinned_at: None,
            pinned_by: None,
            attachments: vec![],
            client_msg_id: None,
            deleted_at: None,
        }
    }

    #[test]
    fn triggers_match_scope_and_words_and_never_the_bots_own_messages() {
        let ch = room(RoomType::Channel);
        let grp = room(RoomType::Group);
        assert_eq!(outgoing(None, &[], false).trigger(&ch, &msg("alice", "hi")), Some(None));
        assert_eq!(outgoing(None, &[], false).trigger(&grp, &msg("alice", "hi")), None, "all = public only");
        assert_eq!(outgoing(Some("r1"), &[], false).trigger(&grp, &msg("alice", "hi")), Some(None));
        assert_eq!(outgoing(Some("r2"), &[], false).trigger(&ch, &msg("alice", "hi")), None);
        assert_eq!(outgoing(None, &[], false).trigger(&ch, &msg("bot", "hi")), None, "loop prevention");
        let words = outgoing(None, &["!deploy", "!build"], false);
        assert_eq!(words.trigger(&ch, &msg("a", "!build now")), Some(Some("!build".into())));
        assert_eq!(words.trigger(&ch, &msg("a", "please !build")), None, "prefix only");
        let anywhere = outgoing(None, &["!build"], true);
        assert_eq!(anywhere.trigger(&ch, &msg("a", "please !build")), Some(Some("!build".into())));
        let mut off = outgoing(None, &[], false);
        off.enabled = false;
        assert_eq!(off.trigger(&ch, &msg("a", "x")), None);
        let mut deleted = msg("a", "x");
        deleted.deleted_at = Some(1);
        assert_eq!(outgoing(None, &[], false).trigger(&ch, &deleted), None);
    }

    #[test]
    fn redacted_hides_the_secrets() {
        let mut i = outgoing(None, &[], false);
        i.token_hash = Some("h".into());
        let v = i.redacted();
        assert!(v.get("secret").is_none() && v.get("tokenHash").is_none());
        assert_eq!(v["type"], "webhook-outgoing");
    }
}
