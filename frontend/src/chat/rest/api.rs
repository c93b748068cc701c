//! `/api/v1/<endpoint>`: Rocket.Chat's REST names, as one table ([`ENDPOINTS`]) onto the chat methods
//! of [`rpc::call`] — the same operations, checks and effects as the socket invokes. A row names the
//! HTTP verb (GET reads the query string, POST a JSON body), the method, how parameters are renamed or
//! resolved ([`P`]), and how the method's answer is reshaped for Rocket.Chat clients. A method added to
//! `rpc::call` later gets its REST endpoint with one row. Only `login` and `logout` are handled here,
//! because they create or end the credentials themselves.
//!
//! Parameters not named in a row pass through unchanged (query values as strings). Rooms are addressed
//! by `roomId` (or `rid`), by `roomName`, or for `chat.postMessage` by `channel` (`#name`, or
//! `@username` for the direct message with that user, opened if needed). A name that does not resolve,
//! and a private room the caller is not in, give the same 404.
//!
//! [`rpc::call`]: crate::chat::rpc::call

use ::chat::ids::UserId;
use ::chat::service::Caller;
use ::chat::ChatError;
use serde_json::{json, Map, Value};

use super::conn::Conn;
use super::{parse_query, unknown_endpoint, Reply, Rest, RestError};
use crate::chat::rpc::{self, Params};

/// HTTP verb of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Parameters from the query string.
    Get,
    /// Parameters from a JSON object body.
    Post,
}

/// How one REST parameter reaches the method.
#[derive(Clone, Copy, Debug)]
pub enum P {
    /// `from` is passed as `to`, unchanged.
    Rename(&'static str, &'static str),
    /// `from` (a number, or a string of digits in a query) is passed as the integer `to`.
    Int(&'static str, &'static str),
    /// `from` (a boolean, or `true`/`false` in a query) is passed as the boolean `to`.
    Bool(&'static str, &'static str),
    /// `from` (a list, or a comma-separated string) is passed as the list of strings `to`.
    List(&'static str, &'static str),
    /// The room, from `roomId`/`rid`, `roomName` or `channel`, is passed as `rid`.
    Room,
    /// A user, from `userId` or `username`, is passed as the username `username`.
    User,
    /// The object `from` (Rocket.Chat's `message` of `chat.sendMessage`) is merged into the parameters.
    Flatten(&'static str),
}

/// One REST endpoint.
pub struct Endpoint {
    pub verb: Verb,
    /// The name after `/api/v1/`.
    pub name: &'static str,
    /// The [`rpc::call`] method.
    pub method: &'static str,
    pub params: &'static [P],
    /// Reshapes the method's answer (`success: true` is added afterwards).
    pub reply: fn(Value) -> Value,
}

const fn get(name: &'static str, method: &'static str, params: &'static [P], reply: fn(Value) -> Value) -> Endpoint {
    Endpoint { verb: Verb::Get, name, method, params, reply }
}

const fn post(name: &'static str, method: &'static str, params: &'static [P], reply: fn(Value) -> Value) -> Endpoint {
    Endpoint { verb: Verb::Post, name, method, params, reply }
}

/// The answer as the method gave it.
fn same(v: Value) -> Value {
    v
}

fn rename_key(mut v: Value, from: &str, to: &str) -> Value {
    if let Value::Object(m) = &mut v {
        if let Some(x) = m.remove(from) {
            m.insert(to.to_owned(), x);
        }
    }
    v
}

fn as_channel(v: Value) -> Value {
    rename_key(v, "room", "channel")
}

fn as_group(v: Value) -> Value {
    rename_key(v, "room", "group")
}

/// `chat.postMessage`: Rocket.Chat answers `{ts, channel, message}`.
fn posted(v: Value) -> Value {
    let message = v.get("message").cloned().unwrap_or_default();
    json!({ "ts": message["ts"], "channel": message["rid"], "message": message })
}

fn rooms_of_type(v: &Value, t: &str) -> Vec<Value> {
    v["update"].as_array().map(|a| a.iter().filter(|r| r["t"] == t).cloned().collect()).unwrap_or_default()
}

fn joined_channels(v: Value) -> Value {
    let channels = rooms_of_type(&v, "c");
    json!({ "count": channels.len(), "channels": channels })
}

fn joined_groups(v: Value) -> Value {
    let groups = rooms_of_type(&v, "p");
    json!({ "count": groups.len(), "groups": groups })
}

const ROOM: &[P] = &[P::Room];
const HISTORY: &[P] = &[P::Room, P::Int("count", "limit"), P::Int("before", "before")];
const MEMBERS: &[P] = &[P::Room, P::Int("count", "limit")];
const CREATE: &[P] = &[P::List("members", "members"), P::Bool("readOnly", "readOnly")];
const ROOM_USER: &[P] = &[P::Room, P::User];
const SINCE: &[P] = &[P::Int("updatedSince", "updatedSince")];

/// Every `/api/v1` endpoint but `login` and `logout` (and `rooms.upload/<rid>`, which streams a file).
/// A method added to `rpc::call` gets its endpoint here, with one row.
pub const ENDPOINTS: &[Endpoint] = &[
    get("me", "me", &[], same),
    post("users.create", "createUser", &[P::List("roles", "roles")], same),
    post("chat.postMessage", "sendMessage", &[P::Room, P::Rename("text", "msg")], posted),
    post("chat.sendMessage", "sendMessage", &[P::Flatten("message"), P::Room, P::Rename("_id", "clientMsgId")], same),
    post("chat.update", "updateMessage", &[P::Rename("text", "msg")], same),
    post("chat.delete", "deleteMessage", &[], same),
    post("chat.react", "setReaction", &[], same),
    post("chat.pinMessage", "pinMessage", &[], same),
    post("chat.unPinMessage", "unpinMessage", &[], same),
    get(
        "chat.getThreadMessages",
        "getThreadMessages",
        &[P::Int("afterSeq", "afterSeq"), P::Int("count", "limit")],
        same,
    ),
    get("chat.getPinnedMessages", "getPinnedMessages", MEMBERS, same),
    get("chat.search", "messageSearch", &[P::Room, P::Rename("searchText", "text"), P::Int("count", "limit")], same),
    get(
        "chat.syncMessages",
        "syncMessages",
        &[P::Room, P::Int("afterSeq", "afterSeq"), P::Int("lastUpdate", "updatedSince"), P::Int("count", "limit")],
        same,
    ),
    post("channels.create", "createChannel", CREATE, as_channel),
    get("channels.history", "loadHistory", HISTORY, same),
    get("channels.info", "getRoomInfo", ROOM, as_channel),
    post("channels.join", "joinRoom", ROOM, same),
    post("channels.leave", "leaveRoom", ROOM, same),
    post("channels.invite", "addUserToRoom", ROOM_USER, same),
    post("channels.kick", "removeUserFromRoom", ROOM_USER, same),
    get("channels.members", "getRoomMembers", MEMBERS, same),
    get("channels.list.joined", "rooms.get", &[], joined_channels),
    post("groups.create", "createPrivateGroup", CREATE, as_group),
    get("groups.history", "loadHistory", HISTORY, same),
    get("groups.info", "getRoomInfo", ROOM, as_group),
    post("groups.leave", "leaveRoom", ROOM, same),
    post("groups.invite", "addUserToRoom", ROOM_USER, same),
    post("groups.kick", "removeUserFromRoom", ROOM_USER, same),
    get("groups.members", "getRoomMembers", MEMBERS, same),
    get("groups.list", "rooms.get", &[], joined_groups),
    post("im.create", "createDirectMessage", &[P::List("usernames", "usernames")], same),
    get("im.history", "loadHistory", HISTORY, same),
    get("im.members", "getRoomMembers", MEMBERS, same),
    post("rooms.leave", "leaveRoom", ROOM, same),
    get("rooms.get", "rooms.get", SINCE, same),
    get("rooms.info", "getRoomInfo", ROOM, same),
    get("subscriptions.get", "subscriptions.get", SINCE, same),
    post("subscriptions.read", "readMessages", ROOM, same),
    post("rooms.saveNotification", "saveNotificationSettings", &[P::Room, P::Flatten("notifications")], same),
    post("rooms.favorite", "toggleFavorite", &[P::Room, P::Bool("favorite", "favorite")], same),
    post("rooms.hide", "hideRoom", ROOM, same),
    post("channels.open", "openRoom", ROOM, same),
    post("channels.close", "hideRoom", ROOM, same),
    post("groups.open", "openRoom", ROOM, same),
    post("groups.close", "hideRoom", ROOM, same),
    post("im.open", "openRoom", ROOM, same),
    post("im.close", "hideRoom", ROOM, same),
    post("users.setStatus", "setUserStatus", &[], same),
    get("users.getPresence", "getUserPresence", &[P::Rename("userId", "uid"), P::List("userIds", "uids")], same),
    post("channels.delete", "eraseRoom", ROOM, same),
    post("groups.delete", "eraseRoom", ROOM, same),
    post("rooms.delete", "eraseRoom", ROOM, same),
    post("rooms.saveRoomSettings", "saveRoomSettings", ROOM, same),
    post("channels.archive", "archiveRoom", ROOM, same),
    post("channels.unarchive", "unarchiveRoom", ROOM, same),
    post("groups.archive", "archiveRoom", ROOM, same),
    post("groups.unarchive", "unarchiveRoom", ROOM, same),
    post("channels.addOwner", "addRoomOwner", ROOM, same),
    post("channels.removeOwner", "removeRoomOwner", ROOM, same),
    post("channels.addModerator", "addRoomModerator", ROOM, same),
    post("channels.removeModerator", "removeRoomModerator", ROOM, same),
    post("groups.addOwner", "addRoomOwner", ROOM, same),
    post("groups.removeOwner", "removeRoomOwner", ROOM, same),
    post("groups.addModerator", "addRoomModerator", ROOM, same),
    post("groups.removeModerator", "removeRoomModerator", ROOM, same),
    post("users.setActiveStatus", "setUserActiveStatus", &[P::Bool("activeStatus", "activeStatus")], same),
    get("users.list", "getUsers", &[P::Int("count", "limit")], same),
    post("users.logout", "logoutUser", &[], same),
    post("users.generatePersonalAccessToken", "generatePersonalAccessToken", &[], same),
    get("users.getPersonalAccessTokens", "getPersonalAccessTokens", &[], same),
    post("users.removePersonalAccessToken", "removePersonalAccessToken", &[], same),
    get("permissions.listAll", "permissions.get", &[], same),
    post("permissions.update", "permissions.update", &[], same),
    post("integrations.create", "integrations.create", &[P::Room], same),
    get("integrations.list", "integrations.list", &[], same),
    post("integrations.remove", "integrations.remove", &[], same),
    get("integrations.history", "integrations.history", &[P::Int("count", "limit")], same),
];

/// Answers `/api/v1/<name>`.
pub async fn serve(rest: &Rest, conn: &mut Conn, name: &str) -> Result<Reply, RestError> {
    let verb = match conn.head.method.as_str() {
        "GET" => Verb::Get,
        "POST" => Verb::Post,
        _ => return Err(RestError::http(405, "error-method-not-allowed", "use GET or POST")),
    };
    if name == "login" || name == "logout" {
        if verb != Verb::Post {
            return Err(RestError::http(405, "error-method-not-allowed", "use POST"));
        }
        return if name == "login" { login(rest, conn).await } else { logout(rest, conn).await };
    }
    if let Some(rid) = name.strip_prefix("rooms.upload/") {
        if verb != Verb::Post {
            return Err(RestError::http(405, "error-method-not-allowed", "use POST"));
        }
        return super::files::upload(rest, conn, rid).await;
    }
    let Some(endpoint) = ENDPOINTS.iter().find(|e| e.name == name) else { return Err(unknown_endpoint()) };
    if endpoint.verb != verb {
        let want = if endpoint.verb == Verb::Get { "use GET" } else { "use POST" };
        return Err(RestError::http(405, "error-method-not-allowed", want));
    }
    // Credentials before the body: an anonymous client cannot make the node read a large body.
    let caller = rest.authenticate(&conn.head, false).await?;
    let raw = match verb {
        Verb::Get => parse_query(&conn.head.query).into_iter().map(|(k, v)| (k, Value::String(v))).collect(),
        Verb::Post => conn.json_body(rest.config().max_body_bytes).await?,
    };
    let params = map_params(rest, &caller, endpoint.params, raw).await?;
    let value = rpc::call(rest.chat(), &caller, endpoint.method, &params).await?;
    Ok(Reply::Json(200, (endpoint.reply)(value)))
}

fn string_of(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// Applies a row's parameter rules to the raw parameters.
async fn map_params(
    rest: &Rest,
    caller: &Caller,
    rules: &[P],
    mut raw: Map<String, Value>,
) -> Result<Params, RestError> {
    for rule in rules {
        match *rule {
            P::Rename(from, to) => {
                if let Some(v) = raw.remove(from) {
                    raw.insert(to.to_owned(), v);
                }
            }
            P::Int(from, to) => {
                if let Some(v) = raw.remove(from) {
                    let n = match &v {
                        Value::String(s) => s.trim().parse::<i64>().map(Value::from).ok(),
                        Value::Number(_) | Value::Null => Some(v.clone()),
                        _ => None,
                    };
                    raw.insert(
                        to.to_owned(),
                        n.ok_or(ChatError::Invalid { field: from, reason: "must be an integer" })?,
                    );
                }
            }
            P::Bool(from, to) => {
                if let Some(v) = raw.remove(from) {
                    let b = match &v {
                        Value::String(s) if s == "true" => Some(Value::Bool(true)),
                        Value::String(s) if s == "false" => Some(Value::Bool(false)),
                        Value::Bool(_) | Value::Null => Some(v.clone()),
                        _ => None,
                    };
                    raw.insert(
                        to.to_owned(),
                        b.ok_or(ChatError::Invalid { field: from, reason: "must be a boolean" })?,
                    );
                }
            }
            P::List(from, to) => {
                if let Some(v) = raw.remove(from) {
                    let list = match v {
                        Value::String(s) => {
                            s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(Value::from).collect()
                        }
                        other => other,
                    };
                    raw.insert(to.to_owned(), list);
                }
            }
            P::Flatten(from) => match raw.remove(from) {
                Some(Value::Object(inner)) => raw.extend(inner),
                None | Some(Value::Null) => {}
                Some(_) => return Err(ChatError::Invalid { field: from, reason: "must be an object" }.into()),
            },
            P::Room => {
                let rid = resolve_room(rest, caller, &mut raw).await?;
                if let Some(rid) = rid {
                    raw.insert("rid".into(), rid.into());
                }
            }
            P::User => {
                if let Some(uid) = raw.remove("userId") {
                    let uid =
                        string_of(&uid).ok_or(ChatError::Invalid { field: "userId", reason: "must be a string" })?;
                    let user = rest.chat().service().store().get_user(&UserId::from(uid)).await?;
                    let user = user.ok_or(ChatError::NotFound { what: "user" })?;
                    raw.insert("username".into(), user.username.into());
                }
            }
        }
    }
    Ok(Params(raw))
}

/// The room a request names: `roomId` or `rid` as is; `roomName` or `channel: "#name"` looked up by
/// name; `channel: "@username"` the direct message with that user (opened if needed, as Rocket.Chat
/// does). `None` if the request names no room (the method then says `rid` is required).
async fn resolve_room(rest: &Rest, caller: &Caller, raw: &mut Map<String, Value>) -> Result<Option<String>, RestError> {
    if let Some(v) = raw.remove("roomId").or_else(|| raw.remove("rid")) {
        return Ok(string_of(&v).map(str::to_owned));
    }
    let (name, direct) = match (raw.remove("roomName"), raw.remove("channel")) {
        (Some(v), _) => (string_of(&v).map(str::to_owned), false),
        (None, Some(v)) => match string_of(&v) {
            Some(c) if c.starts_with('@') => (Some(c[1..].to_owned()), true),
            Some(c) => (Some(c.trim_start_matches('#').to_owned()), false),
            None => (None, false),
        },
        (None, None) => return Ok(None),
    };
    let Some(name) = name.filter(|n| !n.is_empty()) else { return Ok(None) };
    if direct {
        let p = Params(Map::from_iter([("username".to_owned(), Value::String(name))]));
        let dm = rpc::call(rest.chat(), caller, "createDirectMessage", &p).await?;
        return Ok(dm["room"]["id"].as_str().map(str::to_owned));
    }
    match rest.chat().service().store().room_by_name(&name).await? {
        Some(room) => Ok(Some(room.id.0)),
        None => Err(ChatError::NotFound { what: "room" }.into()),
    }
}

/// `POST /api/v1/login` with `{user|username, password}` (or `{resume: token}`): a session for scripts.
/// Rocket.Chat's answer: `{status: "success", data: {userId, authToken, me}}`.
async fn login(rest: &Rest, conn: &mut Conn) -> Result<Reply, RestError> {
    let body = Params(conn.json_body(rest.config().max_body_bytes).await?);
    let svc = rest.chat().service();
    let login = match body.opt_str("resume")? {
        Some(token) => svc.resume(token).await?,
        None => {
            let user = match body.0.get("user") {
                Some(Value::String(u)) => u.as_str(),
                Some(Value::Object(u)) => u.get("username").and_then(Value::as_str).unwrap_or_default(),
                _ => body.str("username")?,
            };
            svc.login(user, body.str("password")?, Some(conn.peer.to_string())).await?
        }
    };
    let token = match login.token {
        Some(t) => t,
        // A resume proves the token; hand the same one back, as Rocket.Chat does.
        None => body.str("resume")?.to_owned(),
    };
    Ok(Reply::Json(
        200,
        json!({
            "status": "success",
            "data": { "userId": login.user.id, "authToken": token, "me": login.user },
        }),
    ))
}

/// `POST /api/v1/logout`: ends the session of the credentials used (its sockets close everywhere).
async fn logout(rest: &Rest, conn: &mut Conn) -> Result<Reply, RestError> {
    let caller = rest.authenticate(&conn.head, false).await?;
    let out = rest.chat().service().logout(&caller).await?;
    rest.chat().apply(out.effects).await;
    Ok(Reply::Json(200, json!({ "status": "success", "data": { "message": "You've been logged out!" } })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_listed_once_and_names_a_chat_method() {
        let methods: Vec<&str> = rpc::methods().collect();
        for (i, e) in ENDPOINTS.iter().enumerate() {
            assert!(methods.contains(&e.method), "{} maps to unknown method {}", e.name, e.method);
            assert!(ENDPOINTS[..i].iter().all(|o| o.name != e.name), "{} listed twice", e.name);
            assert!(!["login", "logout"].contains(&e.name));
        }
    }

    #[test]
    fn answers_are_reshaped_the_rocket_chat_way() {
        assert_eq!(as_channel(json!({"room": {"id": "r"}})), json!({"channel": {"id": "r"}}));
        let m = json!({"message": {"ts": 5, "rid": "r", "msg": "hi"}});
        assert_eq!(posted(m), json!({"ts": 5, "channel": "r", "message": {"ts": 5, "rid": "r", "msg": "hi"}}));
        let rooms = json!({"update": [{"t": "c", "id": "a"}, {"t": "p", "id": "b"}, {"t": "d", "id": "c"}]});
        assert_eq!(joined_channels(rooms.clone())["channels"], json!([{"t": "c", "id": "a"}]));
        assert_eq!(joined_groups(rooms)["count"], 1);
    }
}
