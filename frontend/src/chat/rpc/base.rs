//! The first slice of chat methods: accounts, rooms, membership, messages, history, read state.

use std::sync::Arc;

use ::chat::ids::{MessageId, UserId};
use ::chat::room::RoomType;
use ::chat::service::{Caller, SendInput};
use ::chat::ChatError;
use serde_json::{json, Value};

use super::params::{invalid, Params};
use super::{member_json, to_json};
use crate::chat::Chat;

/// The methods [`call`] answers.
pub const METHODS: &[&str] = &[
    "me",
    "createUser",
    "createChannel",
    "createPrivateGroup",
    "createDirectMessage",
    "getRoomInfo",
    "getRoomMembers",
    "joinRoom",
    "leaveRoom",
    "addUserToRoom",
    "addUsersToRoom",
    "removeUserFromRoom",
    "sendMessage",
    "updateMessage",
    "deleteMessage",
    "loadHistory",
    "syncMessages",
    "readMessages",
    "rooms.get",
    "subscriptions.get",
];

/// Runs `name` if it is one of [`METHODS`].
pub async fn call(chat: &Arc<Chat>, caller: &Caller, name: &str, p: &Params) -> Option<Result<Value, ChatError>> {
    if !METHODS.contains(&name) {
        return None;
    }
    Some(run(chat, caller, name, p).await)
}

async fn run(chat: &Arc<Chat>, caller: &Caller, name: &str, p: &Params) -> Result<Value, ChatError> {
    let svc = chat.service().clone();
    let settings = svc.settings();
    let caller = caller.clone();
    let value = match name {
        "me" => to_json(&svc.authenticate(&caller).await?.0),
        "createUser" => json!({ "user": svc.create_user(&caller, p.user_input()?).await? }),
        "createChannel" | "createPrivateGroup" => {
            let t = if name == "createChannel" { RoomType::Channel } else { RoomType::Group };
            let out = svc.create_room(&caller, t, p.str("name")?, &p.strings("members")?, p.bool("readOnly")?).await?;
            chat.apply(out.effects).await;
            json!({ "room": out.value })
        }
        "createDirectMessage" => {
            let mut usernames = p.strings("usernames")?;
            if let Some(u) = p.opt_str("username")? {
                usernames.push(u.to_owned());
            }
            let out = svc.open_direct(&caller, &usernames).await?;
            chat.apply(out.effects).await;
            json!({ "room": out.value })
        }
        "getRoomInfo" => {
            let (room, state) = svc.room_info(&caller, &p.rid()?).await?;
            json!({ "room": room, "subscription": state.map(|s| member_json(&s, &settings)) })
        }
        "getRoomMembers" => {
            let after = p.opt_str("after")?.map(UserId::from);
            let members = svc.members(&caller, &p.rid()?, after.as_ref(), p.limit()?).await?;
            json!({ "members": members })
        }
        "joinRoom" => {
            let out = svc.join(&caller, &p.rid()?).await?;
            chat.apply(out.effects).await;
            json!({ "subscription": out.value })
        }
        "leaveRoom" => {
            let out = svc.leave(&caller, &p.rid()?).await?;
            chat.apply(out.effects).await;
            json!({})
        }
        "addUserToRoom" | "addUsersToRoom" => {
            let mut users = p.strings("users")?;
            if let Some(u) = p.opt_str("username")? {
                users.push(u.to_owned());
            }
            if users.is_empty() {
                return Err(invalid("users", "is required"));
            }
            let out = svc.add_members(&caller, &p.rid()?, &users).await?;
            chat.apply(out.effects).await;
            json!({ "added": out.value })
        }
        "removeUserFromRoom" => {
            let out = svc.remove_member(&caller, &p.rid()?, p.str("username")?).await?;
            chat.apply(out.effects).await;
            json!({})
        }
        "sendMessage" => {
            let input = SendInput {
                rid: p.rid()?,
                msg: p.str("msg")?.to_owned(),
                client_msg_id: p.opt_str("clientMsgId")?.map(str::to_owned),
                tmid: p.opt_str("tmid")?.map(MessageId::from),
                tshow: p.bool("tshow")?,
            };
            let out = svc.send(&caller, input).await?;
            chat.apply(out.effects).await;
            json!({ "message": out.value.message, "created": out.value.created })
        }
        "updateMessage" => {
            let out = svc.edit(&caller, &p.msg_id()?, p.str("msg")?).await?;
            chat.apply(out.effects).await;
            json!({ "message": out.value })
        }
        "deleteMessage" => {
            let out = svc.delete(&caller, &p.msg_id()?).await?;
            chat.apply(out.effects).await;
            let m = out.value;
            json!({ "_id": m.id, "rid": m.rid, "seq": m.seq, "deletedAt": m.deleted_at })
        }
        "loadHistory" => {
            let messages = svc.history(&caller, &p.rid()?, p.opt_u64("before")?, p.limit()?).await?;
            json!({ "messages": messages })
        }
        "syncMessages" => {
            let after = p.opt_u64("afterSeq")?.unwrap_or(0);
            let since = p.opt_i64("updatedSince")?.unwrap_or(0);
            to_json(&svc.sync(&caller, &p.rid()?, after, since, p.limit()?).await?)
        }
        "readMessages" => {
            let out = svc.mark_read(&caller, &p.rid()?).await?;
            let state = member_json(&out.value, &settings);
            chat.apply(out.effects).await;
            json!({ "subscription": state })
        }
        "rooms.get" => json!({ "update": svc.rooms(&caller, p.opt_i64("updatedSince")?).await? }),
        "subscriptions.get" => {
            let delta = svc.subscriptions(&caller, p.opt_i64("updatedSince")?).await?;
            let update: Vec<Value> = delta.update.iter().map(|s| member_json(s, &settings)).collect();
            json!({ "update": update, "remove": delta.remove })
        }
        _ => return Err(invalid("event", "unknown chat method")),
    };
    Ok(value)
}
