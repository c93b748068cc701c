//! Size and shape limits of §7.2, in one place. Rate limits (§7.1) are enforced by the frontend, which
//! owns the clocks and the per-connection state; only the numbers live here.

/// `Message_MaxAllowedSize`: characters (Unicode scalar values) of a message text.
pub const MAX_MESSAGE_CHARS: usize = 5_000;
/// Attachments on one message.
pub const MAX_ATTACHMENTS: usize = 10;
/// Serialized JSON size of one attachment, bytes.
pub const MAX_ATTACHMENT_JSON_BYTES: usize = 16 * 1024;
/// Mentions (users plus `@all`/`@here`) in one message.
pub const MAX_MENTIONS: usize = 50;
/// Distinct emoji reactions on one message.
pub const MAX_REACTION_KINDS: usize = 50;
/// Length of one reaction emoji name (`:thumbsup:` style), bytes.
pub const MAX_EMOJI_BYTES: usize = 64;
/// `DirectMesssage_maxUsers`: participants of a DM, including the caller.
pub const MAX_DM_USERS: usize = 8;
/// Room and user names: characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Display names (`fname`, `name`): characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 128;
/// Room topic: characters.
pub const MAX_TOPIC_CHARS: usize = 1_000;
/// Room description and announcement: characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
/// Email address: bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Status text: characters.
pub const MAX_STATUS_TEXT_CHARS: usize = 120;
/// Personal access token label: characters.
pub const MAX_TOKEN_NAME_CHARS: usize = 64;
/// Client message id (idempotency key): bytes.
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 64;
/// Password length, bytes (bounds the hashing work per request).
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Password length, bytes.
pub const MAX_PASSWORD_BYTES: usize = 1_024;
/// Members added in one call (`room.addMembers`, `room.create*`).
pub const MAX_MEMBERS_PER_CALL: usize = 500;
/// `message.history` page size.
pub const MAX_HISTORY_PAGE: usize = 100;
/// `message.sync` page size.
pub const MAX_SYNC_PAGE: usize = 500;
/// `message.search` results.
pub const MAX_SEARCH_RESULTS: usize = 100;
/// Search query: characters.
pub const MAX_SEARCH_QUERY_CHARS: usize = 256;
/// Pages of members, rooms, users.
pub const MAX_LIST_PAGE: usize = 200;

/// The JSON data of one socket RPC or REST body, bytes (§7.2: a message of 5,000 characters is at most
/// 20,000 bytes of UTF-8; the node's frame limit stays the outer bound for plain pub/sub).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Checks that `v` serializes to at most `limit` bytes of JSON, without building the text: counting
/// stops at the first byte over. The error carries the bytes counted so far (more than `limit`).
pub fn check_json_size(field: &'static str, v: &serde_json::Value, limit: usize) -> crate::Result<()> {
    struct Counter {
        n: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter { n: 0, limit };
    if serde_json::to_writer(&mut c, v).is_err() {
        return Err(crate::ChatError::TooLong { field, limit, got: c.n });
    }
    Ok(())
}

/// Checks a character count against a limit.
pub fn check_chars(field: &'static str, s: &str, limit: usize) -> crate::Result<()> {
    let got = s.chars().count();
    if got > limit {
        return Err(crate::ChatError::TooLong { field, limit, got });
    }
    Ok(())
}

/// Clamps a requested page size into `1..=max` (0 or absent means `max`).
pub fn page(requested: Option<usize>, max: usize) -> usize {
    match requested {
        Some(n) if n > 0 => n.min(max),
        _ => max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_not_bytes_are_counted() {
        assert!(check_chars("msg", &"é".repeat(MAX_MESSAGE_CHARS), MAX_MESSAGE_CHARS).is_ok());
        let err = check_chars("msg", &"é".repeat(MAX_MESSAGE_CHARS + 1), MAX_MESSAGE_CHARS).unwrap_err();
        assert!(matches!(err, crate::ChatError::TooLong { got: 5001, .. }));
    }

    #[test]
    fn json_size_is_counted_up_to_the_first_byte_over() {
        let v = serde_json::json!({ "msg": "x".repeat(100) });
        let exact = serde_json::to_vec(&v).unwrap().len();
        assert!(check_json_size("data", &v, exact).is_ok());
        let err = check_json_size("data", &v, exact - 1).unwrap_err();
        assert!(matches!(err, crate::ChatError::TooLong { field: "data", got, .. } if got > exact - 1));
        let big = serde_json::json!({ "msg": "é".repeat(MAX_REQUEST_BYTES) });
        assert!(check_json_size("data", &big, MAX_REQUEST_BYTES).is_err());
    }

    #[test]
    fn pages_are_clamped() {
        assert_eq!(page(None, 100), 100);
        assert_eq!(page(Some(0), 100), 100);
        assert_eq!(page(Some(5), 100), 5);
        assert_eq!(page(Some(1_000_000), 100), 100);
    }
}
