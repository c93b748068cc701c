//! Chat RPCs: SocketCluster invokes named after Rocket.Chat's methods, with one JSON object as data.
//! Each runs one [`Service`](::chat::service::Service) operation as the socket's user (claims `uid`
//! and `sid` of the token `login` set), then carries out its effects (publish after store). Errors are
//! `{name: "ChatError", message, error: <stable id>}`; see [`METHODS`] for the list.

use std::sync::Arc;

use ::chat::ids::{MessageId, RoomId, UserId};
use ::chat::roles::Role;
use ::chat::room::RoomType;
use ::chat::service::{Caller, SendInput, UserInput};
use ::chat::settings::Settings;
use ::chat::store::MemberState;
use ::chat::ChatError;
use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::{to_sc_error, Chat};
use crate::auth::now_secs;
use crate::handlers::{Context, Handler, HandlerResult, Handlers};

/// Every chat RPC, by its event name.
pub const METHODS: &[&str] = &[
    "registerUser",
    "login",
    "logout",
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

/// The handlers of [`METHODS`].
#[must_use]
pub fn handlers(chat: &Arc<Chat>) -> Handlers {
    let mut h = Handlers::new();
    for name in METHODS {
        h.register(name, Method { chat: chat.clone(), name });
    }
    h
}

struct Method {
    chat: Arc<Chat>,
    name: &'static str,
}

#[async_trait]
impl Handler for Method {
    async fn call(&self, ctx: &mut Context<'_>, data: Option<Value>) -> HandlerResult {
        let params = match data {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(to_sc_error(&invalid("data", "must be an object"))),
        };
        dispatch(&self.chat, self.name, ctx, &Params(params)).await.map(Some).map_err(|e| to_sc_error(&e))
    }
}

fn invalid(field: &'static str, reason: &'static str) -> ChatError {
    ChatError::Invalid { field, reason }
}

struct Params(Map<String, Value>);

impl Params {
    fn opt_str(&self, key: &'static str) -> Result<Option<&str>, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(key, "must be a string")),
        }
    }

    fn str(&self, key: &'static str) -> Result<&str, ChatError> {
        self.opt_str(key)?.ok_or_else(|| invalid(key, "is required"))
    }

    fn opt_u64(&self, key: &'static str) -> Result<Option<u64>, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| invalid(key, "must be a non-negative integer")),
        }
    }

    fn opt_i64(&self, key: &'static str) -> Result<Option<i64>, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| invalid(key, "must be an integer")),
        }
    }

    fn bool(&self, key: &'static str) -> Result<bool, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(key, "must be a boolean")),
        }
    }

    fn strings(&self, key: &'static str) -> Result<Vec<String>, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| invalid(key, "must be a list of strings")))
                .collect(),
            Some(_) => Err(invalid(key, "must be a list of strings")),
        }
    }

    fn rid(&self) -> Result<RoomId, ChatError> {
        Ok(RoomId::from(self.str("rid")?))
    }

    /// `msgId`, or Rocket.Chat's `_id`.
    fn msg_id(&self) -> Result<MessageId, ChatError> {
        let id = match self.opt_str("msgId")? {
            Some(id) => id,
            None => self.str("_id")?,
        };
        Ok(MessageId::from(id))
    }

    fn limit(&self) -> Result<Option<usize>, ChatError> {
        Ok(self.opt_u64("limit")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
    }

    fn user_input(&self) -> Result<UserInput, ChatError> {
        let roles = match self.0.get("roles") {
            None | Some(Value::Null) => None,
            Some(_) => Some(
                self.strings("roles")?
                    .iter()
                    .map(|r| Role::parse(r).ok_or_else(|| invalid("roles", "unknown role")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(UserInput {
            username: self.str("username")?.to_owned(),
            name: self.opt_str("name")?.map(str::to_owned),
            email: self.opt_str("email")?.map(str::to_owned),
            password: self.str("password")?.to_owned(),
            roles,
        })
    }
}

/// A subscription as clients get it: the stored fields plus derived unread state.
fn member_json(state: &MemberState, settings: &Settings) -> Value {
    let unread = state.unread();
    let mut v = serde_json::to_value(&state.subscription).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("unread".into(), unread.messages.into());
        m.insert("userMentions".into(), unread.user_mentions.into());
        m.insert("groupMentions".into(), unread.group_mentions.into());
        m.insert("alert".into(), unread.alert().into());
        m.insert("badge".into(), unread.badge(state.subscription.t, settings).into());
        m.insert("lastSeq".into(), state.counters.msg_count.into());
    }
    v
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

async fn dispatch(chat: &Arc<Chat>, name: &str, ctx: &mut Context<'_>, p: &Params) -> Result<Value, ChatError> {
    let svc = chat.service().clone();
    match name {
        "registerUser" => {
            let user = svc.register(p.user_input()?).await?;
            return Ok(json!({ "user": user }));
        }
        "login" => return login(chat, ctx, p).await,
        _ => {}
    }
    let caller = Chat::caller(&ctx.socket).ok_or(ChatError::Unauthenticated)?;
    let settings = svc.settings();
    let value = match name {
        "logout" => {
            let out = svc.logout(&caller).await?;
            // This socket is deauthenticated now and closed once its reply is out; closing it from
            // inside its own handler could drop the reply. The session's other sockets close at once.
            ctx.remove_auth_token();
            chat.sockets.note(ctx.socket.key, None);
            chat.apply(out.effects).await;
            chat.close_after_reply(ctx.socket.key);
            json!({})
        }
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

/// `login {user|username, password}` or `login {resume}`: authenticates the socket with a short-lived
/// token carrying `uid` and `sid`. Only a password login returns the session's bearer `token`.
async fn login(chat: &Arc<Chat>, ctx: &mut Context<'_>, p: &Params) -> Result<Value, ChatError> {
    let svc = chat.service();
    let login = match p.opt_str("resume")? {
        Some(secret) => svc.resume(secret).await?,
        None => {
            let user = match p.0.get("user") {
                Some(Value::Object(u)) => u.get("username").and_then(Value::as_str).unwrap_or_default(),
                Some(Value::String(u)) => u,
                _ => p.str("username")?,
            };
            svc.login(user, p.str("password")?, Some(ctx.socket.remote.to_string())).await?
        }
    };
    let exp = now_secs() + i64::try_from(chat.token_ttl().as_secs()).unwrap_or(i64::MAX / 2);
    let mut claims = Map::new();
    claims.insert("uid".into(), login.user.id.as_str().into());
    claims.insert("sid".into(), login.session.id.as_str().into());
    claims.insert("username".into(), login.user.username.clone().into());
    claims.insert("exp".into(), exp.into());
    ctx.set_auth_token(claims);
    chat.note_login(ctx.socket.key, Caller { uid: login.user.id.clone(), sid: login.session.id.clone() });
    Ok(json!({
        "id": login.user.id,
        "username": login.user.username,
        "roles": login.user.roles,
        "sessionId": login.session.id,
        "token": login.token,
        "tokenExpires": login.session.expires_at,
        "socketTokenExpires": exp,
    }))
}
