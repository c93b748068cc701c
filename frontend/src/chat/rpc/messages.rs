//! Message features: reactions, pins, threads, the pinned list, search, and each member's per-room
//! preferences (notifications, hidden, favorite), with Rocket.Chat's method and parameter names
//! (`messageId`/`msgId`/`_id` for a message, `reaction`/`emoji`, `rid`/`roomId`).

use std::sync::Arc;

use ::chat::ids::{MessageId, RoomId};
use ::chat::room::{NotifyLevel, SubscriptionPrefs};
use ::chat::service::{Caller, SearchInput};
use ::chat::ChatError;
use serde_json::{json, Value};

use super::member_json;
use super::params::{invalid, Params};
use crate::chat::Chat;

/// The methods [`call`] answers.
pub const METHODS: &[&str] = &[
    "setReaction",
    "pinMessage",
    "unpinMessage",
    "getThreadMessages",
    "getThreadsList",
    "getPinnedMessages",
    "messageSearch",
    "saveNotificationSettings",
    "hideRoom",
    "openRoom",
    "toggleFavorite",
];

/// Runs `name` if it is one of [`METHODS`].
pub async fn call(chat: &Arc<Chat>, caller: &Caller, name: &str, p: &Params) -> Option<Result<Value, ChatError>> {
    if !METHODS.contains(&name) {
        return None;
    }
    Some(run(chat, caller, name, p).await)
}

/// The message a method is about: `messageId` (Rocket.Chat's REST name), `msgId`, `_id`, or
/// `message: {_id}` (Rocket.Chat's `pinMessage(message)`).
fn message_id(p: &Params) -> Result<MessageId, ChatError> {
    if let Some(id) = p.opt_str("messageId")? {
        return Ok(MessageId::from(id));
    }
    if let Some(Value::Object(m)) = p.0.get("message") {
        return match m.get("_id") {
            Some(Value::String(id)) => Ok(MessageId::from(id.as_str())),
            _ => Err(invalid("message", "must carry its _id")),
        };
    }
    p.msg_id()
}

/// `shouldReact`: absent toggles.
fn opt_bool(p: &Params, key: &'static str) -> Result<Option<bool>, ChatError> {
    match p.0.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(key, "must be a boolean")),
    }
}

/// A boolean preference: JSON `true`/`false`, or Rocket.Chat's `"1"`/`"0"`.
fn pref_bool(v: &Value, key: &'static str) -> Result<bool, ChatError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "1" => Ok(true),
        Value::String(s) if s == "0" => Ok(false),
        _ => Err(invalid(key, "must be a boolean")),
    }
}

fn pref_level(v: &Value, key: &'static str) -> Result<NotifyLevel, ChatError> {
    v.as_str().and_then(NotifyLevel::parse).ok_or_else(|| invalid(key, "must be default, all, mentions or nothing"))
}

/// `saveNotificationSettings`: Rocket.Chat's `{rid, field, value}` (one preference), or the preferences
/// by name: `desktopNotifications` (or `notify`): `all | mentions | nothing | default`,
/// `disableNotifications` (mute the room), `muteGroupMentions`.
fn notification_prefs(p: &Params) -> Result<SubscriptionPrefs, ChatError> {
    let mut named = p.0.clone();
    if let Some(field) = p.opt_str("field")? {
        let value = p.0.get("value").cloned().ok_or_else(|| invalid("value", "is required"))?;
        named.insert(field.to_owned(), value);
    }
    let mut prefs = SubscriptionPrefs::default();
    for (key, v) in &named {
        match key.as_str() {
            "desktopNotifications" => prefs.notify = Some(pref_level(v, "desktopNotifications")?),
            "notify" => prefs.notify = Some(pref_level(v, "notify")?),
            "disableNotifications" => prefs.disable_notifications = Some(pref_bool(v, "disableNotifications")?),
            "muteGroupMentions" => prefs.mute_group_mentions = Some(pref_bool(v, "muteGroupMentions")?),
            _ => {}
        }
    }
    if prefs.is_empty() {
        return Err(invalid("field", "names no notification setting"));
    }
    Ok(prefs)
}

/// `rid`, or Rocket.Chat's `roomId`.
fn room_id(p: &Params) -> Result<RoomId, ChatError> {
    match p.opt_str("roomId")? {
        Some(r) => Ok(RoomId::from(r)),
        None => p.rid(),
    }
}

async fn run(chat: &Arc<Chat>, caller: &Caller, name: &str, p: &Params) -> Result<Value, ChatError> {
    let svc = chat.service().clone();
    let value = match name {
        "setReaction" => {
            let emoji = match p.opt_str("reaction")? {
                Some(r) => r,
                None => p.str("emoji")?,
            };
            let out = svc.set_reaction(caller, &message_id(p)?, emoji, opt_bool(p, "shouldReact")?).await?;
            chat.apply(out.effects).await;
            json!({ "message": out.value })
        }
        "pinMessage" | "unpinMessage" => {
            let out = svc.set_pinned(caller, &message_id(p)?, name == "pinMessage").await?;
            chat.apply(out.effects).await;
            json!({ "message": out.value })
        }
        "getThreadMessages" => {
            let tmid = MessageId::from(p.str("tmid")?);
            let messages = svc.thread_messages(caller, &tmid, p.opt_u64("afterSeq")?, p.limit()?).await?;
            json!({ "messages": messages })
        }
        "getThreadsList" => {
            let roots = svc.thread_roots(caller, &p.rid()?, p.opt_i64("before")?, p.limit()?).await?;
            json!({ "threads": roots })
        }
        "getPinnedMessages" => json!({ "messages": svc.pinned_messages(caller, &p.rid()?, p.limit()?).await? }),
        "messageSearch" => {
            let rid = p.opt_str("rid")?.map(RoomId::from);
            let input = SearchInput { text: p.str("text")?.to_owned(), rid, limit: p.limit()? };
            json!({ "messages": svc.search(caller, input).await? })
        }
        "saveNotificationSettings" | "hideRoom" | "openRoom" | "toggleFavorite" => {
            let prefs = match name {
                "hideRoom" => SubscriptionPrefs { open: Some(false), ..SubscriptionPrefs::default() },
                "openRoom" => SubscriptionPrefs { open: Some(true), ..SubscriptionPrefs::default() },
                "toggleFavorite" => SubscriptionPrefs { favorite: Some(p.bool("favorite")?), ..Default::default() },
                _ => notification_prefs(p)?,
            };
            let out = svc.save_subscription_prefs(caller, &room_id(p)?, prefs).await?;
            let state = member_json(&out.value, &svc.settings());
            chat.apply(out.effects).await;
            json!({ "subscription": state })
        }
        _ => return Err(invalid("event", "unknown chat method")),
    };
    Ok(value)
}
