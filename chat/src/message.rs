//! Messages (§1.6): the stored shape, validation of what a client sends (text length, client message id,
//! attachments, emoji), and the tombstone rule. Assigning `seq` and writing happen in the store; this
//! module decides what is acceptable to write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, Millis, RoomId, UserId};
use crate::limits::{
    MAX_ATTACHMENTS, MAX_ATTACHMENT_JSON_BYTES, MAX_CLIENT_MSG_ID_BYTES, MAX_EMOJI_BYTES, MAX_MESSAGE_CHARS,
};
use crate::unread::Seq;
use crate::{ChatError, Result};

/// Author, denormalized onto the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    #[serde(rename = "_id")]
    pub id: UserId,
    pub username: String,
    pub name: String,
}

/// System message types (`t`); user messages have none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SystemType {
    #[serde(rename = "uj")]
    UserJoined,
    #[serde(rename = "ul")]
    UserLeft,
    #[serde(rename = "au")]
    UserAdded,
    #[serde(rename = "ru")]
    UserRemoved,
    #[serde(rename = "r")]
    RoomRenamed,
    #[serde(rename = "room_changed_topic")]
    TopicChanged,
    #[serde(rename = "subscription-role-added")]
    RoleAdded,
    #[serde(rename = "subscription-role-removed")]
    RoleRemoved,
    #[serde(rename = "room-archived")]
    RoomArchived,
    #[serde(rename = "room-unarchived")]
    RoomUnarchived,
    #[serde(rename = "message_pinned")]
    MessagePinned,
    /// A tombstone.
    #[serde(rename = "rm")]
    Removed,
}

impl SystemType {
    pub const ALL: [SystemType; 12] = [
        SystemType::UserJoined,
        SystemType::UserLeft,
        SystemType::UserAdded,
        SystemType::UserRemoved,
        SystemType::RoomRenamed,
        SystemType::TopicChanged,
        SystemType::RoleAdded,
        SystemType::RoleRemoved,
        SystemType::RoomArchived,
        SystemType::RoomUnarchived,
        SystemType::MessagePinned,
        SystemType::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SystemType::UserJoined => "uj",
            SystemType::UserLeft => "ul",
            SystemType::UserAdded => "au",
            SystemType::UserRemoved => "ru",
            SystemType::RoomRenamed => "r",
            SystemType::TopicChanged => "room_changed_topic",
            SystemType::RoleAdded => "subscription-role-added",
            SystemType::RoleRemoved => "subscription-role-removed",
            SystemType::RoomArchived => "room-archived",
            SystemType::RoomUnarchived => "room-unarchived",
            SystemType::MessagePinned => "message_pinned",
            SystemType::Removed => "rm",
        }
    }

    pub fn parse(s: &str) -> Option<SystemType> {
        SystemType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A mentioned member, resolved by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    #[serde(rename = "_id")]
    pub id: UserId,
    pub username: String,
}

/// A stored message. A deleted message stays as a tombstone: `t = rm`, text and attachments cleared,
/// `deleted_at` set, `seq` kept (so sync can report it and the sequence has no unexplained hole).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub rid: RoomId,
    pub seq: Seq,
    pub u: UserRef,
    pub msg: String,
    pub t: Option<SystemType>,
    pub ts: Millis,
    pub updated_at: Millis,
    pub edited_at: Option<Millis>,
    pub edited_by: Option<UserId>,
    /// Thread root id for a reply.
    pub tmid: Option<MessageId>,
    /// Reply also shown in the channel.
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub tshow: bool,
    /// Part of the room's main timeline (not a thread-only reply).
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub timeline: bool,
    /// On a thread root: reply count, last reply time, participants.
    pub tcount: u64,
    pub tlm: Option<Millis>,
    pub replies: Vec<UserId>,
    /// Resolved user mentions.
    pub mentions: Vec<Mention>,
    /// `@all` or `@here` used.
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub group_mention: bool,
    /// Emoji → user ids who reacted, in reaction order.
    pub reactions: BTreeMap<String, Vec<UserId>>,
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub pinned: bool,
    pub pinned_at: Option<Millis>,
    pub pinned_by: Option<UserId>,
    /// Slack-compatible attachments, opaque JSON objects, size-checked.
    pub attachments: Vec<serde_json::Value>,
    pub client_msg_id: Option<String>,
    pub deleted_at: Option<Millis>,
}

impl Message {
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// Refuses writes to a tombstone.
    pub fn ensure_live(&self) -> Result<()> {
        if self.is_deleted() {
            return Err(ChatError::MessageDeleted);
        }
        Ok(())
    }

    /// Turns the message into its tombstone (idempotent).
    pub fn tombstone(&mut self, now: Millis) {
        if self.deleted_at.is_some() {
            return;
        }
        self.msg.clear();
        self.attachments.clear();
        self.mentions.clear();
        self.reactions.clear();
        self.group_mention = false;
        self.pinned = false;
        self.pinned_at = None;
        self.pinned_by = None;
        self.t = Some(SystemType::Removed);
        self.deleted_at = Some(now);
        self.updated_at = now;
    }

    /// Replaces the text (and its resolved mentions) of a live message; returns whether it changed.
    pub fn edit(&mut self, text: &str, editor: &UserId, mentions: Vec<Mention>, now: Millis) -> Result<bool> {
        self.ensure_live()?;
        validate_text(text, MAX_MESSAGE_CHARS * 10, !self.attachments.is_empty())?;
        self.msg = text.to_owned();
        self.mentions = mentions;
        self.edited_at = Some(now);
        self.edited_by = Some(editor.clone());
        Ok(true)
    }

    /// Pins or unpins a live message; returns whether anything changed.
    pub fn pin(&mut self, by: &UserId, on: bool, now: Millis) -> Result<bool> {
        self.ensure_live()?;
        if self.pinned == on {
            return Ok(false);
        }
        self.pinned = on;
        self.pinned_at = on.then_some(now);
        self.pinned_by = on.then(|| by.clone());
        Ok(true)
    }

    /// Adds or removes a reaction; returns whether anything changed.
    pub fn react(&mut self, emoji: &str, user: &UserId, on: bool) -> Result<bool> {
        self.ensure_live()?;
        validate_emoji(emoji)?;
        if on {
            let kinds = self.reactions.len();
            let users = self.reactions.entry(emoji.to_owned()).or_default();
            if users.contains(user) {
                return Ok(false);
            }
            if users.is_empty() && kinds >= crate::limits::MAX_REACTION_KINDS {
                self.reactions.remove(emoji);
                return Err(ChatError::TooLong {
                    field: "reactions",
                    limit: crate::limits::MAX_REACTION_KINDS,
                    got: kinds + 1,
                });
            }
            users.push(user.clone());
            Ok(true)
        } else {
            let Some(users) = self.reactions.get_mut(emoji) else { return Ok(false) };
            let before = users.len();
            users.retain(|u| u != user);
            let changed = users.len() != before;
            if users.is_empty() {
                self.reactions.remove(emoji);
            }
            Ok(changed)
        }
    }
}

/// Input for `Store::insert_message`, validated by [`NewMessage::validate`].
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub rid: RoomId,
    pub u: UserRef,
    pub msg: String,
    pub t: Option<SystemType>,
    pub tmid: Option<MessageId>,
    pub tshow: bool,
    pub mentions: Vec<Mention>,
    pub group_mention: bool,
    pub attachments: Vec<serde_json::Value>,
    /// Idempotency key, unique per author: a retry returns the stored message.
    pub client_msg_id: Option<String>,
}

impl NewMessage {
    /// A plain user message with no thread, mentions or attachments.
    pub fn text(rid: RoomId, u: UserRef, msg: impl Into<String>) -> NewMessage {
        NewMessage {
            rid,
            u,
            msg: msg.into(),
            t: None,
            tmid: None,
            tshow: false,
            mentions: Vec::new(),
            group_mention: false,
            attachments: Vec::new(),
            client_msg_id: None,
        }
    }

    /// Part of the room's main timeline?
    pub fn timeline(&self) -> bool {
        self.tmid.is_none() || self.tshow
    }

    /// Checks text length (against `max_chars`, normally `Message_MaxAllowedSize`), emptiness,
    /// attachments and the client message id. Nothing is stored when this fails.
    pub fn validate(&self, max_chars: usize) -> Result<()> {
        validate_text(&self.msg, max_chars.min(MAX_MESSAGE_CHARS * 10), !self.attachments.is_empty())?;
        validate_attachments(&self.attachments)?;
        if let Some(id) = &self.client_msg_id {
            validate_client_msg_id(id)?;
        }
        if self.t == Some(SystemType::Removed) {
            return Err(ChatError::invalid("t", "tombstones are made by delete"));
        }
        if self.tmid.is_none() && self.tshow {
            return Err(ChatError::invalid("tshow", "only thread replies can be shown in the channel"));
        }
        Ok(())
    }
}

/// Text rules: at most `max_chars` characters; not blank unless attachments carry the content.
pub fn validate_text(text: &str, max_chars: usize, has_attachments: bool) -> Result<()> {
    crate::limits::check_chars("msg", text, max_chars)?;
    if text.trim().is_empty() && !has_attachments {
        return Err(ChatError::invalid("msg", "must not be empty"));
    }
    if text.chars().any(|c| c == '\0') {
        return Err(ChatError::invalid("msg", "must not contain NUL"));
    }
    Ok(())
}

/// Client message ids: 1–64 printable ASCII characters.
pub fn validate_client_msg_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_CLIENT_MSG_ID_BYTES {
        return Err(ChatError::invalid("clientMsgId", "must be 1 to 64 characters"));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ChatError::invalid("clientMsgId", "must be printable ASCII"));
    }
    Ok(())
}

/// At most 10 attachments, each a JSON object of at most 16 KiB.
pub fn validate_attachments(attachments: &[serde_json::Value]) -> Result<()> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(ChatError::TooLong { field: "attachments", limit: MAX_ATTACHMENTS, got: attachments.len() });
    }
    for a in attachments {
        if !a.is_object() {
            return Err(ChatError::invalid("attachments", "each attachment must be an object"));
        }
        let size = serde_json::to_vec(a).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_ATTACHMENT_JSON_BYTES {
            return Err(ChatError::TooLong { field: "attachment", limit: MAX_ATTACHMENT_JSON_BYTES, got: size });
        }
    }
    Ok(())
}

/// Emoji names: `:name:` or a bare name, at most 64 bytes, no whitespace or control characters, no
/// `.` and no leading `$` (they are keys of the `reactions` map, which MongoDB stores as field names).
pub fn validate_emoji(emoji: &str) -> Result<()> {
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES {
        return Err(ChatError::invalid("emoji", "must be 1 to 64 bytes"));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ChatError::invalid("emoji", "must not contain whitespace"));
    }
    if emoji.contains('.') || emoji.starts_with('$') {
        return Err(ChatError::invalid("emoji", "must not contain '.' or start with '$'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn author() -> UserRef {
        UserRef { id: UserId::from("u1"), username: "alice".into(), name: "Alice".into() }
    }

    fn stored() -> Message {
        Message {
            id: MessageId::from("m1"),
            rid: RoomId::from("r1"),
            seq: 1,
            u: author(),
            msg: "hello".into(),
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
            reactions: BTreeMap::new(),
            pinned: false,
            pinned_at: None,
            pinned_by: None,
            attachments: vec![json!({"title": "x"})],
            client_msg_id: None,
            deleted_at: None,
        }
    }

    #[test]
    fn text_is_limited_to_5000_characters() {
        let ok = NewMessage::text(RoomId::from("r"), author(), "ü".repeat(5000));
        assert!(ok.validate(5000).is_ok());
        let long = NewMessage::text(RoomId::from("r"), author(), "ü".repeat(5001));
        assert!(matches!(long.validate(5000), Err(ChatError::TooLong { limit: 5000, got: 5001, .. })));
        assert!(NewMessage::text(RoomId::from("r"), author(), "  \n").validate(5000).is_err());
    }

    #[test]
    fn client_msg_ids_are_bounded() {
        assert!(validate_client_msg_id("abc-123").is_ok());
        assert!(validate_client_msg_id("").is_err());
        assert!(validate_client_msg_id(&"x".repeat(65)).is_err());
        assert!(validate_client_msg_id("a b").is_err());
    }

    #[test]
    fn attachments_are_bounded() {
        assert!(validate_attachments(&vec![json!({}); 10]).is_ok());
        assert!(validate_attachments(&vec![json!({}); 11]).is_err());
        assert!(validate_attachments(&[json!("text")]).is_err());
        assert!(validate_attachments(&[json!({"t": "x".repeat(17 * 1024)})]).is_err());
    }

    #[test]
    fn thread_replies_are_off_the_timeline_unless_shown() {
        let mut m = NewMessage::text(RoomId::from("r"), author(), "re");
        assert!(m.timeline());
        m.tmid = Some(MessageId::from("root"));
        assert!(!m.timeline());
        m.tshow = true;
        assert!(m.timeline());
        let mut bad = NewMessage::text(RoomId::from("r"), author(), "x");
        bad.tshow = true;
        assert!(bad.validate(5000).is_err());
    }

    #[test]
    fn tombstones_clear_content_and_refuse_writes() {
        let mut m = stored();
        m.react(":+1:", &UserId::from("u2"), true).unwrap();
        m.tombstone(9);
        assert!(m.is_deleted());
        assert_eq!((m.msg.as_str(), m.attachments.len(), m.reactions.len()), ("", 0, 0));
        assert_eq!(m.t, Some(SystemType::Removed));
        assert_eq!(m.seq, 1);
        m.tombstone(10);
        assert_eq!(m.deleted_at, Some(9));
        assert!(matches!(m.react(":+1:", &UserId::from("u2"), true), Err(ChatError::MessageDeleted)));
    }

    #[test]
    fn reactions_toggle_and_are_capped() {
        let mut m = stored();
        let u = UserId::from("u2");
        assert!(m.react(":+1:", &u, true).unwrap());
        assert!(!m.react(":+1:", &u, true).unwrap());
        assert!(m.react(":+1:", &u, false).unwrap());
        assert!(m.reactions.is_empty());
        for i in 0..crate::limits::MAX_REACTION_KINDS {
            m.react(&format!(":e{i}:"), &u, true).unwrap();
        }
        assert!(m.react(":one-more:", &u, true).is_err());
        assert!(!m.reactions.contains_key(":one-more:"));
        assert!(m.react(":e0:", &UserId::from("u3"), true).unwrap());
        assert!(m.react("a b", &u, true).is_err());
        assert!(m.react(":a.b:", &u, true).is_err());
        assert!(m.react("$where", &u, true).is_err());
    }

    #[test]
    fn system_types_round_trip() {
        for t in SystemType::ALL {
            assert_eq!(SystemType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
    }
}
