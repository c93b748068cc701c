//! Message features: reactions, pins, threads, the pinned list and search, with Rocket.Chat's method
//! names and parameter names (`messageId`/`msgId`/`_id` for a message, `reaction`/`emoji`).

use std::sync::Arc;

use ::chat::ids::{MessageId, RoomId};
use ::chat::service::{Caller, SearchInput};
use ::chat::ChatError;
use serde_json::{json, Value};

use super::params::{invalid, Params};
use crate::chat::Chat;

/// The methods [`call`] answers.
pub const METHODS: &[&str] =
    &["setReaction", "pinMessage", "unpinMessage", "getThreadMessages", "getPinnedMessages", "messageSearch"];

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
        "getPinnedMessages" => json!({ "messages": svc.pinned_messages(caller, &p.rid()?, p.limit()?).await? }),
        "messageSearch" => {
            let rid = p.opt_str("rid")?.map(RoomId::from);
            let input = SearchInput { text: p.str("text")?.to_owned(), rid, limit: p.limit()? };
            json!({ "messages": svc.search(caller, input).await? })
        }
        _ => return Err(invalid("event", "unknown chat method")),
    };
    Ok(value)
}
