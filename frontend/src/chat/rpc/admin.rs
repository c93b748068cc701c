//! Administration methods: room settings, archive, delete and room roles; user activation, roles and
//! the user list; personal access tokens; logging another user out; permissions and settings; the
//! cluster view (`getClusterStatus`, ours). Names and parameters follow Rocket.Chat's methods
//! (`saveRoomSettings`, `addRoomOwner`, …).

use std::sync::Arc;

use ::chat::ids::UserId;
use ::chat::permissions::Permission;
use ::chat::roles::Role;
use ::chat::service::admin::RoomSettings;
use ::chat::service::Caller;
use ::chat::ChatError;
use serde_json::{json, Value};

use super::params::{invalid, Params};
use crate::chat::Chat;

/// The methods [`call`] answers.
pub const METHODS: &[&str] = &[
    "saveRoomSettings",
    "archiveRoom",
    "unarchiveRoom",
    "eraseRoom",
    "addRoomOwner",
    "removeRoomOwner",
    "addRoomModerator",
    "removeRoomModerator",
    "setUserActiveStatus",
    "setUserRoles",
    "getUsers",
    "logoutUser",
    "generatePersonalAccessToken",
    "getPersonalAccessTokens",
    "removePersonalAccessToken",
    "permissions.get",
    "permissions.update",
    "settings.get",
    "settings.set",
    "getClusterStatus",
];

/// Keys `saveRoomSettings` understands (Rocket.Chat's), besides `rid`. Anything else is refused rather
/// than ignored, so a typo never looks like a saved change.
const ROOM_SETTING_KEYS: &[&str] =
    &["roomName", "fname", "roomTopic", "roomDescription", "roomAnnouncement", "readOnly", "reactWhenReadOnly"];

/// Runs `name` if it is one of [`METHODS`].
pub async fn call(chat: &Arc<Chat>, caller: &Caller, name: &str, p: &Params) -> Option<Result<Value, ChatError>> {
    if !METHODS.contains(&name) {
        return None;
    }
    Some(run(chat, caller, name, p).await)
}

fn opt_bool(p: &Params, key: &'static str) -> Result<Option<bool>, ChatError> {
    match p.0.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(key, "must be a boolean")),
    }
}

fn user_id(p: &Params) -> Result<UserId, ChatError> {
    Ok(UserId::from(p.str("userId")?))
}

fn opt_user_id(p: &Params) -> Result<Option<UserId>, ChatError> {
    Ok(p.opt_str("userId")?.map(UserId::from))
}

fn roles(p: &Params, key: &'static str) -> Result<Vec<Role>, ChatError> {
    p.strings(key)?.iter().map(|r| Role::parse(r).ok_or_else(|| invalid(key, "unknown role"))).collect()
}

fn room_settings(p: &Params) -> Result<RoomSettings, ChatError> {
    if p.0.keys().any(|k| k != "rid" && !ROOM_SETTING_KEYS.contains(&k.as_str())) {
        return Err(invalid("settings", "unknown room setting"));
    }
    let owned = |key| -> Result<Option<String>, ChatError> { Ok(p.opt_str(key)?.map(str::to_owned)) };
    Ok(RoomSettings {
        name: owned("roomName")?,
        fname: owned("fname")?,
        topic: owned("roomTopic")?,
        description: owned("roomDescription")?,
        announcement: owned("roomAnnouncement")?,
        read_only: opt_bool(p, "readOnly")?,
        react_when_read_only: opt_bool(p, "reactWhenReadOnly")?,
    })
}

/// `permissions: [{_id, roles}]`, Rocket.Chat's shape.
fn permission_changes(p: &Params) -> Result<Vec<(Permission, Vec<Role>)>, ChatError> {
    let Some(Value::Array(items)) = p.0.get("permissions") else {
        return Err(invalid("permissions", "must be a list of {_id, roles}"));
    };
    if items.len() > Permission::ALL.len() {
        return Err(ChatError::TooLong { field: "permissions", limit: Permission::ALL.len(), got: items.len() });
    }
    items
        .iter()
        .map(|item| {
            let Value::Object(m) = item else { return Err(invalid("permissions", "must be a list of {_id, roles}")) };
            let item = Params(m.clone());
            let perm = Permission::parse(item.str("_id")?).ok_or_else(|| invalid("_id", "unknown permission"))?;
            Ok((perm, roles(&item, "roles")?))
        })
        .collect()
}

fn permissions_json(list: &[(Permission, Vec<Role>)]) -> Value {
    let items: Vec<Value> = list.iter().map(|(p, r)| json!({ "_id": p.as_str(), "roles": r })).collect();
    json!({ "permissions": items })
}

async fn run(chat: &Arc<Chat>, caller: &Caller, name: &str, p: &Params) -> Result<Value, ChatError> {
    let svc = chat.service().clone();
    let value = match name {
        "saveRoomSettings" => {
            let out = svc.save_room_settings(caller, &p.rid()?, room_settings(p)?).await?;
            chat.apply(out.effects).await;
            json!({ "room": out.value })
        }
        "archiveRoom" | "unarchiveRoom" => {
            let out = svc.set_archived(caller, &p.rid()?, name == "archiveRoom").await?;
            chat.apply(out.effects).await;
            json!({ "room": out.value })
        }
        "eraseRoom" => {
            let rid = p.rid()?;
            let out = svc.erase_room(caller, &rid).await?;
            chat.apply(out.effects).await;
            json!({ "rid": rid })
        }
        "addRoomOwner" | "removeRoomOwner" | "addRoomModerator" | "removeRoomModerator" => {
            let role = if name.ends_with("Owner") { Role::Owner } else { Role::Moderator };
            let out = svc.set_room_role(caller, &p.rid()?, &user_id(p)?, role, name.starts_with("add")).await?;
            chat.apply(out.effects).await;
            json!({ "subscription": out.value })
        }
        "setUserActiveStatus" => {
            let active = opt_bool(p, "activeStatus")?.ok_or_else(|| invalid("activeStatus", "is required"))?;
            let out = svc.set_user_active(caller, &user_id(p)?, active).await?;
            chat.apply(out.effects).await;
            json!({ "user": out.value })
        }
        "setUserRoles" => {
            let out = svc.set_user_roles(caller, &user_id(p)?, roles(p, "roles")?).await?;
            chat.apply(out.effects).await;
            json!({ "user": out.value })
        }
        "getUsers" => json!({ "users": svc.list_users(caller, p.opt_str("after")?, p.limit()?).await? }),
        "logoutUser" => {
            let out = svc.logout_user(caller, &user_id(p)?).await?;
            let revoked = out.value.len();
            chat.apply(out.effects).await;
            json!({ "revoked": revoked })
        }
        "generatePersonalAccessToken" => {
            let issued = svc.create_personal_token(caller, p.str("tokenName")?, opt_user_id(p)?.as_ref()).await?;
            let mut v = serde_json::to_value(&issued.token).unwrap_or_default();
            v["token"] = issued.secret.into();
            v["userId"] = issued.user_id.as_str().into();
            v
        }
        "getPersonalAccessTokens" => json!({ "tokens": svc.personal_tokens(caller, opt_user_id(p)?.as_ref()).await? }),
        "removePersonalAccessToken" => {
            let out = svc.remove_personal_token(caller, p.str("tokenName")?, opt_user_id(p)?.as_ref()).await?;
            chat.apply(out.effects).await;
            json!({})
        }
        "permissions.get" => permissions_json(&svc.permissions_list(caller).await?),
        "permissions.update" => {
            let out = svc.update_permissions(caller, permission_changes(p)?).await?;
            chat.apply(out.effects).await;
            permissions_json(&out.value)
        }
        "settings.get" => {
            let items: Vec<Value> =
                svc.settings_list(caller).await?.into_iter().map(|(k, v)| json!({ "_id": k, "value": v })).collect();
            json!({ "settings": items })
        }
        "settings.set" => {
            let value = p.0.get("value").cloned().ok_or_else(|| invalid("value", "is required"))?;
            let out = svc.set_setting(caller, p.str("_id")?, value).await?;
            chat.apply(out.effects).await;
            json!({})
        }
        "getClusterStatus" => {
            svc.authorize_view_cluster(caller).await?;
            chat.cluster_status().await
        }
        _ => return Err(invalid("event", "unknown chat method")),
    };
    Ok(value)
}
