//! Chat RPCs: SocketCluster invokes named after Rocket.Chat's methods, with one JSON object as data.
//! Each runs one [`Service`](::chat::service::Service) operation as the socket's user (claims `uid`
//! and `sid` of the token `login` set), then carries out its effects (publish after store). Errors are
//! `{name: "ChatError", message, error: <stable id>}`; see [`methods`] for the list.

use std::sync::Arc;

use ::chat::service::Caller;
use ::chat::settings::Settings;
use ::chat::store::MemberState;
use ::chat::ChatError;
use async_trait::async_trait;
use serde_json::{json, Map, Value};

mod admin;
mod base;
mod live;
mod messages;
pub mod params;

use super::{to_sc_error, Chat};
use crate::auth::now_secs;
use crate::handlers::{Context, Handler, HandlerResult, Handlers};
use params::invalid;
pub use params::Params;

/// Methods bound to the socket they arrive on.
pub const SOCKET_METHODS: &[&str] = &["registerUser", "login", "logout"];

/// Every chat RPC, by its event name: the socket-bound ones, then each submodule's.
pub fn methods() -> impl Iterator<Item = &'static str> {
    SOCKET_METHODS
        .iter()
        .chain(live::SOCKET_METHODS)
        .chain(base::METHODS)
        .chain(messages::METHODS)
        .chain(live::METHODS)
        .chain(admin::METHODS)
        .copied()
}

/// The handlers of [`methods`].
#[must_use]
pub fn handlers(chat: &Arc<Chat>) -> Handlers {
    let mut h = Handlers::new();
    for name in methods() {
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
        if let Some(d) = &data {
            // §7.2: one bound for every method's data, before any work is done for it.
            ::chat::limits::check_json_size("data", d, ::chat::limits::MAX_REQUEST_BYTES)
                .map_err(|e| to_sc_error(&e))?;
        }
        let params = match data {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(to_sc_error(&invalid("data", "must be an object"))),
        };
        dispatch(&self.chat, self.name, ctx, &Params(params)).await.map(Some).map_err(|e| to_sc_error(&e))
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

/// Methods bound to the socket itself (they set or drop its auth token); the rest go through [`call`].
async fn dispatch(chat: &Arc<Chat>, name: &str, ctx: &mut Context<'_>, p: &Params) -> Result<Value, ChatError> {
    match name {
        "registerUser" => {
            let user = chat.service().register(p.user_input()?).await?;
            return Ok(json!({ "user": user }));
        }
        "login" => return login(chat, ctx, p).await,
        _ => {}
    }
    let caller = Chat::caller(&ctx.socket).ok_or(ChatError::Unauthenticated)?;
    if name == "logout" {
        let out = chat.service().logout(&caller).await?;
        // This socket is deauthenticated now and closed once its reply is out; closing it from
        // inside its own handler could drop the reply. The session's other sockets close at once.
        ctx.remove_auth_token();
        chat.note_socket(ctx.socket.key, None);
        chat.apply(out.effects).await;
        chat.close_after_reply(ctx.socket.key);
        return Ok(json!({}));
    }
    if let Some(result) = live::on_socket(chat, ctx.socket.key, &caller, name).await {
        return result;
    }
    call(chat, &caller, name, p).await
}

/// Runs method `name` as `caller`, whatever surface it came from (socket invoke or REST), and carries
/// out its effects. Each submodule answers the methods it owns and `None` for the others.
pub async fn call(chat: &Arc<Chat>, caller: &Caller, name: &str, p: &Params) -> Result<Value, ChatError> {
    if let Some(result) = base::call(chat, caller, name, p).await {
        return result;
    }
    if let Some(result) = messages::call(chat, caller, name, p).await {
        return result;
    }
    if let Some(result) = live::call(chat, caller, name, p).await {
        return result;
    }
    if let Some(result) = admin::call(chat, caller, name, p).await {
        return result;
    }
    Err(invalid("event", "unknown chat method"))
}

/// `login {user|username, password}` or `login {resume}`: authenticates the socket with a short-lived
/// token carrying `uid` and `sid`. Only a password login returns the session's bearer `token`. `resume`
/// takes a login token or a personal access token alike (bots log in this way; the socket's `sid` is
/// then the token's id, so removing the token closes the socket).
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
