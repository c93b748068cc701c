//! Presence, typing and webhook integration methods (§2.3, §4.6, §1.8).
//!
//! | method | data | reply |
//! |---|---|---|
//! | `UserPresence:online`, `UserPresence:away` (socket only) | — | `{status}` this connection reports |
//! | `setUserStatus` | `status` (`online` = automatic, `away`, `busy`, `offline`/`invisible`), `message?` | `{status, message}` |
//! | `getUserPresence` | `uids: [uid]` (≤ 100) or `uid` | `{users: [{uid, status, code, statusText}]}` |
//! | `typing` | `rid, typing: bool` | `{sent}` (false: over the rate bound, dropped) |
//! | `integrations.create` | `type` (`webhook-incoming`/`webhook-outgoing`), `name`, `rid?`, `username`, `alias?`, `urls?`, `triggerWords?`, `triggerWordAnywhere?`, `retryCount?`, `enabled?` | `{integration, token, url}` (incoming) or `{integration, secret}` (outgoing), shown once |
//! | `integrations.list` | — | `{integrations}` (no secrets) |
//! | `integrations.remove` | `integrationId` | `{}` |
//! | `integrations.history` | `integrationId, limit?` | `{history}` newest first |

use std::sync::Arc;
use std::time::Instant;

use ::chat::ids::{RoomId, UserId};
use ::chat::integration::{IntegrationKind, NewIntegration};
use ::chat::presence::{ConnStatus, Status};
use ::chat::roles::Role;
use ::chat::service::Caller;
use ::chat::ChatError;
use serde_json::{json, Value};

use super::params::{invalid, Params};
use crate::chat::hooks_http::HOOKS_PREFIX;
use crate::chat::Chat;

/// Users per `getUserPresence`.
const MAX_PRESENCE_QUERY: usize = 100;

/// Methods bound to the socket they arrive on (the connection's own status).
pub const SOCKET_METHODS: &[&str] = &["UserPresence:online", "UserPresence:away"];

/// The methods [`call`] answers.
pub const METHODS: &[&str] = &[
    "setUserStatus",
    "getUserPresence",
    "typing",
    "integrations.create",
    "integrations.list",
    "integrations.remove",
    "integrations.history",
];

/// Runs a socket-bound method for socket `key`, if `name` is one.
pub async fn on_socket(chat: &Arc<Chat>, key: u64, caller: &Caller, name: &str) -> Option<Result<Value, ChatError>> {
    let status = match name {
        "UserPresence:online" => ConnStatus::Online,
        "UserPresence:away" => ConnStatus::Away,
        _ => return None,
    };
    if let Err(e) = chat.service().authenticate(caller).await {
        return Some(Err(e));
    }
    let accepted = chat.report_status(key, status);
    let shown = if status == ConnStatus::Online { "online" } else { "away" };
    Some(Ok(json!({ "status": shown, "accepted": accepted })))
}

/// Runs `name` if it is one of [`METHODS`].
pub async fn call(chat: &Arc<Chat>, caller: &Caller, name: &str, p: &Params) -> Option<Result<Value, ChatError>> {
    if !METHODS.contains(&name) {
        return None;
    }
    Some(run(chat, caller, name, p).await)
}

fn integration_id(p: &Params) -> Result<String, ChatError> {
    let id = p.str("integrationId")?;
    if id.is_empty() || id.len() > 64 {
        return Err(ChatError::NotFound { what: "integration" });
    }
    Ok(id.to_owned())
}

async fn run(chat: &Arc<Chat>, caller: &Caller, name: &str, p: &Params) -> Result<Value, ChatError> {
    let svc = chat.service().clone();
    let value = match name {
        "setUserStatus" => {
            let status = Status::parse(p.str("status")?).ok_or(invalid("status", "unknown status"))?;
            let (user, manual) = svc.set_status(caller, status, p.opt_str("message")?.map(str::to_owned)).await?;
            chat.choose_status(&user.id, manual.clone());
            json!({ "status": manual.status.as_str(), "message": manual.text })
        }
        "getUserPresence" => {
            let mut uids = p.strings("uids")?;
            if let Some(u) = p.opt_str("uid")? {
                uids.push(u.to_owned());
            }
            if uids.len() > MAX_PRESENCE_QUERY {
                return Err(ChatError::TooLong { field: "uids", limit: MAX_PRESENCE_QUERY, got: uids.len() });
            }
            let (me, _) = svc.authenticate(caller).await?;
            let guest = me.roles.contains(&Role::Guest) && !me.roles.contains(&Role::User);
            let mut users = Vec::new();
            for uid in uids {
                let uid = UserId::from(uid.as_str());
                // Guests see only users they share a room with; others anyone (§4.2).
                if guest && svc.check_presence(caller, &uid).await.is_err() {
                    continue;
                }
                users.push(chat.user_presence(&uid));
            }
            json!({ "users": users })
        }
        "typing" => {
            let rid = p.rid()?;
            let active = match p.0.get("typing") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("typing", "must be a boolean")),
            };
            let key = (caller.uid.as_str().to_owned(), rid.as_str().to_owned());
            if !chat.typing_limits.allow(&key, Instant::now()) {
                return Ok(json!({ "sent": false }));
            }
            let out = svc.typing(caller, &rid, active).await?;
            chat.apply(out.effects).await;
            json!({ "sent": true })
        }
        "integrations.create" => {
            let kind = IntegrationKind::parse(p.str("type")?).ok_or(invalid("type", "unknown integration type"))?;
            let rid = match p.opt_str("rid")? {
                Some(r) => Some(RoomId::from(r)),
                None => p.opt_str("channel")?.map(RoomId::from),
            };
            let enabled = match p.0.get("enabled") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("enabled", "must be a boolean")),
            };
            let retries = p.opt_u64("retryCount")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            let new = NewIntegration {
                kind,
                name: p.str("name")?.to_owned(),
                enabled,
                rid,
                username: p.str("username")?.to_owned(),
                alias: p.opt_str("alias")?.map(str::to_owned),
                urls: p.strings("urls")?,
                trigger_words: p.strings("triggerWords")?,
                trigger_anywhere: p.bool("triggerWordAnywhere")?,
                attempts: retries.map(|r| r.saturating_add(1)),
            };
            let created = svc.create_integration(caller, new).await?;
            let i = &created.integration;
            match i.kind {
                IntegrationKind::Incoming => json!({
                    "integration": i.redacted(),
                    "token": created.secret,
                    "url": format!("{HOOKS_PREFIX}{}/{}", i.id, created.secret),
                }),
                IntegrationKind::Outgoing => json!({ "integration": i.redacted(), "secret": created.secret }),
            }
        }
        "integrations.list" => {
            let list: Vec<Value> = svc.list_integrations(caller).await?.iter().map(|i| i.redacted()).collect();
            json!({ "integrations": list })
        }
        "integrations.remove" => {
            svc.delete_integration(caller, &integration_id(p)?).await?;
            json!({})
        }
        "integrations.history" => {
            let history = svc.integration_history(caller, &integration_id(p)?, p.limit()?).await?;
            json!({ "history": history })
        }
        _ => return Err(invalid("event", "unknown chat method")),
    };
    Ok(value)
}
