//! Mention parsing: `@username`, `@all`, `@here` and `#channel` in a message text. Pure text work; the
//! caller resolves usernames to members (a mention of a non-member notifies nobody and reveals nothing,
//! §7.4). Text inside backtick code spans is ignored. An `@` glued to a preceding word (`a@b.org`) is not
//! a mention.

use crate::limits::MAX_MENTIONS;
use crate::user::is_name_byte;
use crate::{ChatError, Result};

/// Mentions found in one text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedMentions {
    /// Mentioned usernames, first occurrence order, de-duplicated case-insensitively.
    pub usernames: Vec<String>,
    pub all: bool,
    pub here: bool,
    /// Mentioned room names.
    pub channels: Vec<String>,
}

impl ParsedMentions {
    /// Number of mentions that notify someone (users plus `@all` / `@here`).
    pub fn count(&self) -> usize {
        self.usernames.len() + usize::from(self.all) + usize::from(self.here)
    }
}

/// Parses the mentions of `text`; more than [`MAX_MENTIONS`] is refused.
pub fn parse(text: &str) -> Result<ParsedMentions> {
    let bytes = text.as_bytes();
    let mut out = ParsedMentions::default();
    let mut in_code = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'`' {
            in_code = !in_code;
            i += 1;
            continue;
        }
        if in_code || (b != b'@' && b != b'#') {
            i += 1;
            continue;
        }
        let glued =
            text[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c.is_ascii() && is_name_byte(c as u8));
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && is_name_byte(bytes[end]) {
            end += 1;
        }
        i = end.max(start);
        let runs_on = text[end..].chars().next().is_some_and(char::is_alphanumeric);
        if glued || runs_on {
            continue;
        }
        // Names are ASCII, so slicing at these byte offsets is on char boundaries.
        let name = text[start..end].trim_end_matches('.');
        if name.is_empty() || name.len() > crate::limits::MAX_NAME_CHARS {
            continue;
        }
        if b == b'#' {
            if !out.channels.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                out.channels.push(name.to_owned());
            }
        } else if name.eq_ignore_ascii_case("all") {
            out.all = true;
        } else if name.eq_ignore_ascii_case("here") {
            out.here = true;
        } else if !out.usernames.iter().any(|u| u.eq_ignore_ascii_case(name)) {
            out.usernames.push(name.to_owned());
        }
        if out.count() > MAX_MENTIONS {
            return Err(ChatError::TooLong { field: "mentions", limit: MAX_MENTIONS, got: out.count() });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_groups_and_channels() {
        let m = parse("hi @alice and @Bob.smith, see #general. @all @here @ALICE").unwrap();
        assert_eq!(m.usernames, vec!["alice", "Bob.smith"]);
        assert_eq!(m.channels, vec!["general"]);
        assert!(m.all && m.here);
        assert_eq!(m.count(), 4);
    }

    #[test]
    fn ignores_emails_code_and_bare_signs() {
        let m = parse("mail bob@example.org, `@carol` and ```@dave``` @ # @.").unwrap();
        assert_eq!(m, ParsedMentions::default());
    }

    #[test]
    fn handles_non_ascii_neighbours() {
        let m = parse("é@x ñ @zoë @ok").unwrap();
        assert_eq!(m.usernames, vec!["ok"]);
    }

    #[test]
    fn too_many_mentions_are_refused() {
        let text: String = (0..=MAX_MENTIONS).map(|i| format!("@u{i} ")).collect();
        assert!(matches!(parse(&text), Err(ChatError::TooLong { field: "mentions", .. })));
        let ok: String = (0..MAX_MENTIONS).map(|i| format!("@u{i} ")).collect();
        assert_eq!(parse(&ok).unwrap().count(), MAX_MENTIONS);
    }
}
