//! Reading a Slack workspace export: the zip's bytes in, a validated [`Archive`] out. Pure (no file or
//! network I/O; the caller reads the zip).
//!
//! Layout of an export: `users.json`, `channels.json` (public), optionally `groups.json` (private),
//! `dms.json`, `mpims.json`, and one folder per conversation holding one JSON array of messages per day
//! (`<folder>/<YYYY-MM-DD>.json`). Channel and group folders are named after the conversation, DM folders
//! after its id, mpim folders after its name; a folder matching any conversation's name or id is
//! accepted. Everything is parsed before anything is written, and any problem (not a zip, a missing
//! `users.json`/`channels.json`, malformed JSON, a message file of an unknown conversation, a message
//! without a valid `ts`) is an [`ImportError`] naming the file inside the archive (and for JSON the line
//! and column). Other top-level files (`integration_logs.json`, `canvases.json`, …) and non-JSON files are
//! ignored.
//!
//! Bounds: each entry is read up to [`MAX_ENTRY_BYTES`] uncompressed (a zip bomb stops there with an
//! error), and the archive holds at most [`MAX_ENTRIES`] entries.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use serde::Deserialize;

use super::ImportError;

/// Largest uncompressed size of one file in the archive.
pub const MAX_ENTRY_BYTES: u64 = 256 * 1024 * 1024;
/// Most entries an archive may have.
pub const MAX_ENTRIES: usize = 1_000_000;

/// A Slack user (`users.json`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct SlackUser {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub real_name: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub profile: SlackProfile,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct SlackProfile {
    #[serde(default)]
    pub real_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

impl SlackUser {
    /// The display name: `real_name`, else the profile's, else the handle.
    pub fn display_name(&self) -> &str {
        [self.real_name.as_deref(), self.profile.real_name.as_deref(), self.profile.display_name.as_deref()]
            .into_iter()
            .flatten()
            .find(|n| !n.trim().is_empty())
            .unwrap_or(&self.name)
    }
}

/// `{"value": …}` of a topic or purpose.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct SlackText {
    #[serde(default)]
    pub value: String,
}

/// Which list a conversation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// `channels.json`: public.
    Channel,
    /// `groups.json`: private.
    Group,
    /// `dms.json`: two people.
    Dm,
    /// `mpims.json`: a multi-person DM.
    Mpim,
}

impl ConversationKind {
    pub fn file(self) -> &'static str {
        match self {
            ConversationKind::Channel => "channels.json",
            ConversationKind::Group => "groups.json",
            ConversationKind::Dm => "dms.json",
            ConversationKind::Mpim => "mpims.json",
        }
    }
}

/// A channel, group, DM or mpim as listed in the export.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct SlackConversation {
    pub id: String,
    /// Absent for DMs.
    #[serde(default)]
    pub name: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub creator: Option<String>,
    #[serde(default)]
    pub is_archived: bool,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub topic: Option<SlackText>,
    #[serde(default)]
    pub purpose: Option<SlackText>,
    #[serde(skip, default = "default_kind")]
    pub kind: ConversationKind,
}

fn default_kind() -> ConversationKind {
    ConversationKind::Channel
}

/// `edited: {user, ts}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct SlackEdited {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub ts: Option<String>,
}

/// `reactions: [{name, users, count}]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct SlackReaction {
    pub name: String,
    #[serde(default)]
    pub users: Vec<String>,
}

/// A file shared in a message; only the reference is kept (the export does not contain the bytes).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct SlackFile {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub mimetype: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub url_private: Option<String>,
    /// `tombstone` (deleted) or `hidden_by_limit` files carry no name or URL.
    #[serde(default)]
    pub mode: Option<String>,
}

/// One message of a daily file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct SlackMessage {
    #[serde(default)]
    pub subtype: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub bot_id: Option<String>,
    #[serde(default)]
    pub text: String,
    pub ts: String,
    #[serde(default)]
    pub thread_ts: Option<String>,
    #[serde(default)]
    pub edited: Option<SlackEdited>,
    #[serde(default)]
    pub reactions: Vec<SlackReaction>,
    #[serde(default)]
    pub files: Vec<SlackFile>,
}

/// A parsed export. Messages are grouped by conversation (same index as `conversations`) and sorted by
/// `ts` (ties keep file order).
#[derive(Clone, Debug, Default)]
pub struct Archive {
    pub users: Vec<SlackUser>,
    pub conversations: Vec<SlackConversation>,
    pub messages: Vec<Vec<SlackMessage>>,
    /// Daily message files read.
    pub message_files: usize,
}

impl Archive {
    pub fn message_count(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }
}

/// Slack's `ts` (`"1700000000.123456"`, seconds with microseconds) in milliseconds; `None` if malformed.
pub fn ts_millis(ts: &str) -> Option<i64> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let millis: i64 = format!("{:0<3}", frac.get(..3.min(frac.len())).unwrap_or("")).parse().ok()?;
    secs.checked_mul(1000)?.checked_add(millis)
}

/// Exact order of Slack timestamps: seconds, then the fraction as microseconds (several messages can
/// share a millisecond).
pub fn ts_order(ts: &str) -> (i64, u64) {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    let micros = format!("{:0<6}", frac.get(..6.min(frac.len())).unwrap_or("")).parse().unwrap_or(0);
    (secs.parse().unwrap_or(0), micros)
}

/// Parses the whole export. `progress(done, total)` is called after each entry is read.
pub fn parse(zip_bytes: &[u8], progress: &mut dyn FnMut(usize, usize)) -> Result<Archive, ImportError> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(|e| ImportError::NotZip { reason: e.to_string() })?;
    if zip.len() > MAX_ENTRIES {
        return Err(ImportError::NotZip { reason: format!("more than {MAX_ENTRIES} entries") });
    }
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    // Some tools zip the export inside a top folder: find where users.json lives.
    let root = names
        .iter()
        .filter(|n| n.rsplit('/').next() == Some("users.json"))
        .min_by_key(|n| n.matches('/').count())
        .map(|n| n[..n.len() - "users.json".len()].to_owned())
        .ok_or(ImportError::Missing { file: "users.json".into() })?;
    let total = names.len();
    let mut done = 0usize;
    let mut read = |zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str| -> Result<Vec<u8>, ImportError> {
        let entry = zip.by_name(name).map_err(|e| ImportError::Invalid { file: name.into(), reason: e.to_string() })?;
        let mut buf = Vec::with_capacity(usize::try_from(entry.size().min(MAX_ENTRY_BYTES)).unwrap_or(0));
        entry
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ImportError::Invalid { file: name.into(), reason: format!("cannot be read: {e}") })?;
        if buf.len() as u64 > MAX_ENTRY_BYTES {
            return Err(ImportError::Invalid {
                file: name.into(),
                reason: format!("larger than {} MiB uncompressed", MAX_ENTRY_BYTES / 1024 / 1024),
            });
        }
        done += 1;
        progress(done, total);
        Ok(buf)
    };

    let users_file = format!("{root}users.json");
    let users: Vec<SlackUser> = json(&users_file, &read(&mut zip, &users_file)?)?;
    let mut conversations = Vec::new();
    for kind in [ConversationKind::Channel, ConversationKind::Group, ConversationKind::Dm, ConversationKind::Mpim] {
        let file = format!("{root}{}", kind.file());
        if !names.contains(&file) {
            if kind == ConversationKind::Channel {
                return Err(ImportError::Missing { file: "channels.json".into() });
            }
            continue;
        }
        let mut list: Vec<SlackConversation> = json(&file, &read(&mut zip, &file)?)?;
        for c in &mut list {
            c.kind = kind;
        }
        conversations.extend(list);
    }
    check_unique(&users_file, users.iter().map(|u| u.id.as_str()), "user id")?;
    check_unique(
        "channels.json/groups.json/dms.json/mpims.json",
        conversations.iter().map(|c| c.id.as_str()),
        "conversation id",
    )?;

    // Folder → conversation: names first (channels, groups, mpims), then ids (DMs, and exports that use ids).
    let mut by_folder: HashMap<&str, usize> = HashMap::new();
    for (i, c) in conversations.iter().enumerate() {
        by_folder.entry(c.id.as_str()).or_insert(i);
    }
    for (i, c) in conversations.iter().enumerate() {
        if let Some(n) = c.name.as_deref() {
            by_folder.insert(n, i);
        }
    }
    let mut messages: Vec<Vec<SlackMessage>> = vec![Vec::new(); conversations.len()];
    let mut message_files = 0;
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    for name in sorted {
        let Some(rel) = name.strip_prefix(&root) else { continue };
        let Some((folder, file)) = rel.split_once('/') else { continue };
        if file.is_empty() || file.contains('/') || !file.ends_with(".json") {
            continue;
        }
        let Some(&conv) = by_folder.get(folder) else {
            return Err(ImportError::UnknownConversation { file: name.clone() });
        };
        let day: Vec<SlackMessage> = json(name, &read(&mut zip, name)?)?;
        for (i, m) in day.iter().enumerate() {
            if ts_millis(&m.ts).is_none() {
                return Err(ImportError::Invalid {
                    file: name.clone(),
                    reason: format!("message {} has an invalid ts {:?}", i + 1, m.ts),
                });
            }
        }
        messages[conv].extend(day);
        message_files += 1;
    }
    for list in &mut messages {
        // Stable: equal ts keep file order (file names sort by date).
        list.sort_by_key(|m| ts_order(&m.ts));
    }
    Ok(Archive { users, conversations, messages, message_files })
}

fn json<T: serde::de::DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, ImportError> {
    serde_json::from_slice(bytes).map_err(|e| ImportError::Json {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
    })
}

fn check_unique<'a>(file: &str, ids: impl Iterator<Item = &'a str>, what: &str) -> Result<(), ImportError> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if id.is_empty() {
            return Err(ImportError::Invalid { file: file.into(), reason: format!("empty {what}") });
        }
        if !seen.insert(id) {
            return Err(ImportError::Invalid { file: file.into(), reason: format!("{what} {id} appears twice") });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    /// A zip with the given (name, content) entries.
    pub(crate) fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, content) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(content.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn parse_entries(entries: &[(&str, &str)]) -> Result<Archive, ImportError> {
        parse(&zip_of(entries), &mut |_, _| {})
    }

    const USERS: &str = r#"[{"id":"U1","name":"alice","real_name":"Alice A","profile":{"email":"a@x.org"}},
        {"id":"U2","name":"bob","profile":{"real_name":"Bob B"}}]"#;

    #[test]
    fn slack_timestamps_become_milliseconds() {
        assert_eq!(ts_millis("1700000000.123456"), Some(1_700_000_000_123));
        assert_eq!(ts_millis("1700000000.1"), Some(1_700_000_000_100));
        assert_eq!(ts_millis("1700000000"), Some(1_700_000_000_000));
        assert_eq!(ts_millis("17x.1"), None);
        assert_eq!(ts_millis(""), None);
        assert_eq!(ts_millis("-1.0"), None);
    }

    #[test]
    fn a_complete_export_is_read_with_messages_sorted_by_ts() {
        let a = parse_entries(&[
            ("users.json", USERS),
            ("channels.json", r#"[{"id":"C1","name":"general","members":["U1","U2"],"topic":{"value":"t"}}]"#),
            ("dms.json", r#"[{"id":"D1","members":["U1","U2"]}]"#),
            ("general/", ""),
            ("general/2024-01-02.json", r#"[{"user":"U1","text":"later","ts":"1704200000.000100"}]"#),
            (
                "general/2024-01-01.json",
                r#"[{"user":"U2","text":"b","ts":"1704100000.000200"},
                {"user":"U1","text":"a","ts":"1704100000.000100","unknown_field":[1,2]}]"#,
            ),
            ("D1/2024-01-01.json", r#"[{"user":"U1","text":"psst","ts":"1704100001.000000"}]"#),
            ("integration_logs.json", "not even json"),
            ("general/notes.txt", "ignored"),
        ])
        .unwrap();
        assert_eq!(a.users.len(), 2);
        assert_eq!(a.users[1].display_name(), "Bob B");
        assert_eq!(a.conversations.len(), 2);
        assert_eq!(a.conversations[1].kind, ConversationKind::Dm);
        let texts: Vec<&str> = a.messages[0].iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "later"]);
        assert_eq!(a.messages[1][0].text, "psst");
        assert_eq!(a.message_files, 3);
    }

    #[test]
    fn an_export_inside_a_top_folder_is_found() {
        let a = parse_entries(&[
            ("export/users.json", USERS),
            ("export/channels.json", r#"[{"id":"C1","name":"general"}]"#),
            ("export/general/2024-01-01.json", r#"[{"user":"U1","text":"a","ts":"1.0"}]"#),
        ])
        .unwrap();
        assert_eq!(a.message_count(), 1);
    }

    #[test]
    fn errors_name_the_file_and_position() {
        let err = parse(b"PK\x03\x04 definitely not a zip", &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, ImportError::NotZip { .. }), "{err}");
        let err = parse_entries(&[("channels.json", "[]")]).unwrap_err();
        assert_eq!(err.to_string(), "users.json: missing from the archive");
        let err = parse_entries(&[("users.json", USERS)]).unwrap_err();
        assert!(err.to_string().starts_with("channels.json: missing"), "{err}");
        let err = parse_entries(&[
            ("users.json", USERS),
            ("channels.json", r#"[{"id":"C1","name":"general"}]"#),
            ("general/2024-01-01.json", "[\n{\"user\":\"U1\",\"text\":\"a\",\"ts\":\"1.0\"},\n{\"user\": }\n]"),
        ])
        .unwrap_err();
        match &err {
            ImportError::Json { file, line, column, .. } => {
                assert_eq!((file.as_str(), *line, *column), ("general/2024-01-01.json", 3, 10));
            }
            other => panic!("{other}"),
        }
        let err = parse_entries(&[("users.json", USERS), ("channels.json", "[]"), ("random/2024-01-01.json", "[]")])
            .unwrap_err();
        assert!(matches!(&err, ImportError::UnknownConversation { file } if file == "random/2024-01-01.json"));
        let err = parse_entries(&[
            ("users.json", USERS),
            ("channels.json", r#"[{"id":"C1","name":"general"}]"#),
            ("general/2024-01-01.json", r#"[{"user":"U1","text":"a","ts":"yesterday"}]"#),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("general/2024-01-01.json: message 1 has an invalid ts"), "{err}");
        let err =
            parse_entries(&[("users.json", r#"[{"id":"U1"},{"id":"U1"}]"#), ("channels.json", "[]")]).unwrap_err();
        assert!(err.to_string().contains("U1 appears twice"), "{err}");
    }

    #[test]
    fn a_truncated_zip_is_refused() {
        let bytes = zip_of(&[("users.json", USERS), ("channels.json", "[]")]);
        let err = parse(&bytes[..bytes.len() / 2], &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, ImportError::NotZip { .. }), "{err}");
    }
}
