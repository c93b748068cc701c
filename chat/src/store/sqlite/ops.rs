//! The SQLite backend's operations: plain synchronous functions over one connection, each write in one
//! transaction. They run only on the store's worker thread (see `mod.rs`), which also serializes them,
//! so a read-check-write inside a transaction cannot race another writer of this process.

use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::rows::{self, i, to_json, MSG_COLS, ROOM_COLS, SESSION_COLS, SUB_COLS, SUB_COL_COUNT, USER_COLS};
use crate::ids::{now_ms, MessageId, Millis, RoomId, SessionId, UserId};
use crate::limits::{page, MAX_LIST_PAGE, MAX_MESSAGE_CHARS, MAX_SEARCH_QUERY_CHARS, MAX_SEARCH_RESULTS};
use crate::message::{Message, NewMessage};
use crate::permissions::Permission;
use crate::roles::{validate_global_roles, validate_room_roles, Role};
use crate::room::{
    check_owner_handover, creator_roles, NewRoom, NotifyLevel, Room, RoomPatch, RoomType, Subscription,
    SubscriptionPrefs,
};
use crate::store::{
    quoted_terms, Created, MemberState, NewSession, Page, SearchQuery, Session, SessionKind, SubscriptionDelta,
};
use crate::unread::{MentionCounts, ReadState, Seq};
use crate::user::{NewUser, User};
use crate::{ChatError, Result};

/// Shorthand: wrap a rusqlite error with the operation name.
pub trait Ctx<T> {
    fn ctx(self, op: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, op: &'static str) -> Result<T> {
        self.map_err(|e| ChatError::storage(op, e))
    }
}

fn tx<'c>(conn: &'c mut Connection, op: &'static str) -> Result<Transaction<'c>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).ctx(op)
}

// ---------------------------------------------------------------- users

pub fn create_user(conn: &mut Connection, new: NewUser) -> Result<User> {
    const OP: &str = "create_user";
    new.validate()?;
    let tx = tx(conn, OP)?;
    let lower = new.username.to_lowercase();
    let taken: bool =
        tx.query_row("SELECT EXISTS(SELECT 1 FROM users WHERE username_lower = ?1)", [&lower], |r| r.get(0)).ctx(OP)?;
    if taken {
        return Err(ChatError::Conflict { what: "username" });
    }
    let email_lower = new.email.as_ref().map(|e| e.to_lowercase());
    if let Some(e) = &email_lower {
        let taken: bool =
            tx.query_row("SELECT EXISTS(SELECT 1 FROM users WHERE email_lower = ?1)", [e], |r| r.get(0)).ctx(OP)?;
        if taken {
            return Err(ChatError::Conflict { what: "email" });
        }
    }
    let now = now_ms();
    let user = User {
        id: UserId::generate(),
        username: new.username,
        name: new.name,
        email: new.email,
        kind: new.kind,
        roles: new.roles,
        active: true,
        created_at: now,
        updated_at: now,
    };
    insert_user_row(&tx, &user, new.password_hash.as_deref()).ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(user)
}

/// Writes a new `users` row (sign-up and import share it; the caller checked the name is free).
pub(super) fn insert_user_row(tx: &Connection, user: &User, password_hash: Option<&str>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO users (id, username, username_lower, name, email, email_lower, kind, roles, active, \
         password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            user.id.as_str(),
            user.username,
            user.username.to_lowercase(),
            user.name,
            user.email,
            user.email.as_ref().map(|e| e.to_lowercase()),
            user.kind.as_str(),
            to_json(&user.roles),
            user.active,
            password_hash,
            user.created_at,
            user.updated_at
        ],
    )?;
    Ok(())
}

fn user_where(conn: &Connection, clause: &str, arg: &str) -> Result<Option<User>> {
    conn.query_row(&format!("SELECT {USER_COLS} FROM users WHERE {clause}"), [arg], rows::user)
        .optional()
        .ctx("get_user")
}

pub fn get_user(conn: &Connection, id: &UserId) -> Result<Option<User>> {
    user_where(conn, "id = ?1", id.as_str())
}

pub fn user_by_username(conn: &Connection, username: &str) -> Result<Option<User>> {
    user_where(conn, "username_lower = ?1", &username.to_lowercase())
}

pub fn user_by_email(conn: &Connection, email: &str) -> Result<Option<User>> {
    user_where(conn, "email_lower = ?1", &email.to_lowercase())
}

pub fn users_by_usernames(conn: &Connection, usernames: &[String]) -> Result<Vec<User>> {
    let mut out = Vec::new();
    for name in usernames.iter().take(crate::limits::MAX_MENTIONS * 2) {
        if let Some(u) = user_by_username(conn, name)? {
            out.push(u);
        }
    }
    Ok(out)
}

pub fn search_users(conn: &Connection, prefix: &str, limit: usize) -> Result<Vec<User>> {
    let pattern = format!("{}%", escape_like(&prefix.to_lowercase()));
    let mut st = conn
        .prepare(&format!(
            "SELECT {USER_COLS} FROM users WHERE active = 1 AND username_lower LIKE ?1 ESCAPE '\\' \
             ORDER BY username_lower LIMIT ?2"
        ))
        .ctx("search_users")?;
    let rows =
        st.query_map(params![pattern, i(page(Some(limit), MAX_LIST_PAGE) as u64)], rows::user).ctx("search_users")?;
    rows.collect::<rusqlite::Result<_>>().ctx("search_users")
}

pub fn list_users(conn: &Connection, after: Option<&str>, limit: usize) -> Result<Vec<User>> {
    let after = after.map(str::to_lowercase);
    let mut st = conn
        .prepare(&format!(
            "SELECT {USER_COLS} FROM users WHERE (?1 IS NULL OR username_lower > ?1) ORDER BY username_lower LIMIT ?2"
        ))
        .ctx("list_users")?;
    let rows =
        st.query_map(params![after, i(page(Some(limit), MAX_LIST_PAGE) as u64)], rows::user).ctx("list_users")?;
    rows.collect::<rusqlite::Result<_>>().ctx("list_users")
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

pub fn count_users(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0)).ctx("count_users")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub fn set_user_active(conn: &mut Connection, id: &UserId, active: bool) -> Result<Vec<SessionId>> {
    const OP: &str = "set_user_active";
    let tx = tx(conn, OP)?;
    let n = tx
        .execute("UPDATE users SET active = ?2, updated_at = ?3 WHERE id = ?1", params![id.as_str(), active, now_ms()])
        .ctx(OP)?;
    if n == 0 {
        return Err(ChatError::not_found("user"));
    }
    let revoked = if active { Vec::new() } else { revoke_sessions_in(&tx, id, None)? };
    tx.commit().ctx(OP)?;
    Ok(revoked)
}

pub fn set_user_roles(conn: &mut Connection, id: &UserId, roles: Vec<Role>) -> Result<User> {
    const OP: &str = "set_user_roles";
    validate_global_roles(&roles)?;
    let n = conn
        .execute(
            "UPDATE users SET roles = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.as_str(), to_json(&roles), now_ms()],
        )
        .ctx(OP)?;
    if n == 0 {
        return Err(ChatError::not_found("user"));
    }
    get_user(conn, id)?.ok_or_else(|| ChatError::not_found("user"))
}

pub fn set_password_hash(conn: &Connection, id: &UserId, hash: &str) -> Result<()> {
    let n = conn
        .execute(
            "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.as_str(), hash, now_ms()],
        )
        .ctx("set_password_hash")?;
    if n == 0 {
        return Err(ChatError::not_found("user"));
    }
    Ok(())
}

pub fn password_hash(conn: &Connection, id: &UserId) -> Result<Option<String>> {
    conn.query_row("SELECT password_hash FROM users WHERE id = ?1", [id.as_str()], |r| r.get(0))
        .optional()
        .map(Option::flatten)
        .ctx("password_hash")
}

// ---------------------------------------------------------------- sessions

pub fn create_session(conn: &Connection, new: NewSession) -> Result<Session> {
    const OP: &str = "create_session";
    if let Some(name) = &new.name {
        crate::limits::check_chars("name", name, crate::limits::MAX_TOKEN_NAME_CHARS)?;
    }
    if get_user(conn, &new.user_id)?.is_none() {
        return Err(ChatError::not_found("user"));
    }
    let s = Session {
        id: SessionId::generate(),
        user_id: new.user_id,
        kind: new.kind,
        token_hash: new.token_hash,
        name: new.name,
        last_four: new.last_four,
        created_at: now_ms(),
        last_used_at: None,
        expires_at: new.expires_at,
        client: new.client,
    };
    conn.execute(
        &format!("INSERT INTO sessions ({SESSION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            s.id.as_str(),
            s.user_id.as_str(),
            s.kind.as_str(),
            s.token_hash,
            s.name,
            s.last_four,
            s.created_at,
            s.last_used_at,
            s.expires_at,
            s.client
        ],
    )
    .ctx(OP)?;
    Ok(s)
}

pub fn session_where(conn: &Connection, clause: &str, arg: &str) -> Result<Option<Session>> {
    conn.query_row(&format!("SELECT {SESSION_COLS} FROM sessions WHERE {clause}"), [arg], rows::session)
        .optional()
        .ctx("get_session")
}

pub fn touch_session(conn: &Connection, id: &SessionId, at: Millis) -> Result<()> {
    conn.execute("UPDATE sessions SET last_used_at = ?2 WHERE id = ?1", params![id.as_str(), at])
        .ctx("touch_session")?;
    Ok(())
}

pub fn list_sessions(conn: &Connection, user: &UserId, kind: Option<SessionKind>) -> Result<Vec<Session>> {
    let mut st = conn
        .prepare(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = ?1 AND (?2 IS NULL OR kind = ?2) \
             ORDER BY created_at, id LIMIT {MAX_LIST_PAGE}"
        ))
        .ctx("list_sessions")?;
    let rows =
        st.query_map(params![user.as_str(), kind.map(SessionKind::as_str)], rows::session).ctx("list_sessions")?;
    rows.collect::<rusqlite::Result<_>>().ctx("list_sessions")
}

pub fn revoke_session(conn: &Connection, id: &SessionId) -> Result<bool> {
    Ok(conn.execute("DELETE FROM sessions WHERE id = ?1", [id.as_str()]).ctx("revoke_session")? > 0)
}

fn revoke_sessions_in(tx: &Transaction<'_>, user: &UserId, keep: Option<&SessionId>) -> Result<Vec<SessionId>> {
    const OP: &str = "revoke_user_sessions";
    let keep = keep.map(SessionId::as_str);
    let mut st =
        tx.prepare("DELETE FROM sessions WHERE user_id = ?1 AND (?2 IS NULL OR id <> ?2) RETURNING id").ctx(OP)?;
    let ids = st.query_map(params![user.as_str(), keep], |r| r.get::<_, String>(0).map(SessionId)).ctx(OP)?;
    ids.collect::<rusqlite::Result<_>>().ctx(OP)
}

pub fn revoke_user_sessions(conn: &mut Connection, user: &UserId, keep: Option<&SessionId>) -> Result<Vec<SessionId>> {
    let tx = tx(conn, "revoke_user_sessions")?;
    let ids = revoke_sessions_in(&tx, user, keep)?;
    tx.commit().ctx("revoke_user_sessions")?;
    Ok(ids)
}

// ---------------------------------------------------------------- rooms

pub fn get_room(conn: &Connection, id: &RoomId) -> Result<Option<Room>> {
    conn.query_row(&format!("SELECT {ROOM_COLS} FROM rooms WHERE id = ?1"), [id.as_str()], rows::room)
        .optional()
        .ctx("get_room")
}

fn require_room(conn: &Connection, id: &RoomId) -> Result<Room> {
    get_room(conn, id)?.ok_or_else(|| ChatError::not_found("room"))
}

pub fn room_by_name(conn: &Connection, name: &str) -> Result<Option<Room>> {
    conn.query_row(&format!("SELECT {ROOM_COLS} FROM rooms WHERE name_lower = ?1"), [name.to_lowercase()], rows::room)
        .optional()
        .ctx("room_by_name")
}

pub fn create_room(conn: &mut Connection, new: NewRoom) -> Result<Created<Room>> {
    const OP: &str = "create_room";
    let tx = tx(conn, OP)?;
    if let Some(key) = &new.dm_key {
        let existing = tx
            .query_row(&format!("SELECT {ROOM_COLS} FROM rooms WHERE dm_key = ?1"), [key], rows::room)
            .optional()
            .ctx(OP)?;
        if let Some(room) = existing {
            return Ok(Created { value: room, created: false });
        }
    }
    let name_lower = new.name.as_ref().map(|n| n.to_lowercase());
    if let Some(n) = &name_lower {
        let taken: bool =
            tx.query_row("SELECT EXISTS(SELECT 1 FROM rooms WHERE name_lower = ?1)", [n], |r| r.get(0)).ctx(OP)?;
        if taken {
            return Err(ChatError::Conflict { what: "room name" });
        }
    }
    let mut people = Vec::with_capacity(new.members.len() + 1);
    for uid in std::iter::once(&new.creator).chain(&new.members) {
        let user = get_user(&tx, uid)?.ok_or_else(|| ChatError::not_found("user"))?;
        people.push(user);
    }
    let now = now_ms();
    let room = Room {
        id: RoomId::generate(),
        t: new.t,
        name: new.name,
        fname: new.fname,
        topic: String::new(),
        description: String::new(),
        announcement: String::new(),
        creator: new.creator.clone(),
        dm_key: new.dm_key,
        read_only: new.read_only,
        react_when_read_only: false,
        archived: false,
        default: false,
        users_count: people.len() as u64,
        counters: Default::default(),
        last_message_at: None,
        created_at: now,
        updated_at: now,
    };
    insert_room_row(&tx, &room).ctx(OP)?;
    for user in &people {
        let roles = if user.id == new.creator { creator_roles(room.t) } else { Vec::new() };
        insert_subscription(&tx, &room, user, roles, now)?;
    }
    tx.commit().ctx(OP)?;
    Ok(Created { value: room, created: true })
}

fn insert_subscription(
    tx: &Transaction<'_>,
    room: &Room,
    user: &User,
    roles: Vec<Role>,
    now: Millis,
) -> Result<Subscription> {
    let sub = Subscription::new_member(room, user, roles, now);
    insert_subscription_row(tx, &sub).ctx("insert_subscription")?;
    Ok(sub)
}

/// Writes a new `rooms` row from every field of `room` (creation and import share it).
pub(super) fn insert_room_row(tx: &Connection, room: &Room) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO rooms (id, t, name, name_lower, fname, topic, description, announcement, creator, dm_key, \
         read_only, react_when_read_only, archived, is_default, users_count, msg_count, root_count, last_message_at, \
         created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        params![
            room.id.as_str(),
            room.t.as_str(),
            room.name,
            room.name.as_ref().map(|n| n.to_lowercase()),
            room.fname,
            room.topic,
            room.description,
            room.announcement,
            room.creator.as_str(),
            room.dm_key,
            room.read_only,
            room.react_when_read_only,
            room.archived,
            room.default,
            i(room.users_count),
            i(room.counters.msg_count),
            i(room.counters.root_count),
            room.last_message_at,
            room.created_at,
            room.updated_at
        ],
    )?;
    Ok(())
}

/// Writes a new membership row: open, no mentions, not a favourite (joining and import share it).
pub(super) fn insert_subscription_row(tx: &Connection, sub: &Subscription) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO subscriptions (rid, uid, username, t, roles, is_owner, joined_at, open, read_msg_count, \
         read_root_count, last_read_seq, user_mentions, group_mentions, favorite, notify, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9, ?10, 0, 0, 0, ?11, ?12)",
        params![
            sub.rid.as_str(),
            sub.uid.as_str(),
            sub.username,
            sub.t.as_str(),
            to_json(&sub.roles),
            sub.is_owner(),
            sub.joined_at,
            i(sub.read.read_msg_count),
            i(sub.read.read_root_count),
            i(sub.read.last_read_seq),
            sub.notify.as_str(),
            sub.updated_at
        ],
    )?;
    Ok(())
}

pub fn rooms_for_user(conn: &Connection, user: &UserId, since: Option<Millis>) -> Result<Vec<Room>> {
    let mut st = conn
        .prepare(&format!(
            "SELECT {ROOM_COLS} FROM subscriptions JOIN rooms ON rooms.id = subscriptions.rid \
             WHERE subscriptions.uid = ?1 AND (?2 IS NULL OR rooms.updated_at >= ?2) ORDER BY rooms.id"
        ))
        .ctx("rooms_for_user")?;
    let rows = st.query_map(params![user.as_str(), since], rows::room).ctx("rooms_for_user")?;
    rows.collect::<rusqlite::Result<_>>().ctx("rooms_for_user")
}

pub fn directory(conn: &Connection, term: &str, after: Option<&str>, limit: usize) -> Result<Vec<Room>> {
    let pattern = format!("%{}%", escape_like(&term.to_lowercase()));
    let mut st = conn
        .prepare(&format!(
            "SELECT {ROOM_COLS} FROM rooms WHERE t = 'c' AND name_lower LIKE ?1 ESCAPE '\\' \
             AND (?2 IS NULL OR name_lower > ?2) ORDER BY name_lower LIMIT ?3"
        ))
        .ctx("directory")?;
    let after = after.map(str::to_lowercase);
    let rows = st
        .query_map(params![pattern, after, i(page(Some(limit), MAX_LIST_PAGE) as u64)], rows::room)
        .ctx("directory")?;
    rows.collect::<rusqlite::Result<_>>().ctx("directory")
}

pub fn update_room(conn: &mut Connection, id: &RoomId, patch: RoomPatch) -> Result<Room> {
    const OP: &str = "update_room";
    patch.validate()?;
    let tx = tx(conn, OP)?;
    let mut room = require_room(&tx, id)?;
    if let Some(v) = patch.name {
        if room.t == RoomType::Direct {
            return Err(ChatError::invalid("name", "a direct message has no name"));
        }
        let lower = v.to_lowercase();
        let taken: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM rooms WHERE name_lower = ?1 AND id <> ?2)",
                params![lower, id.as_str()],
                |r| r.get(0),
            )
            .ctx(OP)?;
        if taken {
            return Err(ChatError::Conflict { what: "room name" });
        }
        tx.execute("UPDATE rooms SET name = ?2, name_lower = ?3 WHERE id = ?1", params![id.as_str(), v, lower])
            .ctx(OP)?;
        room.name = Some(v);
    }
    if let Some(v) = patch.fname {
        room.fname = v;
    }
    if let Some(v) = patch.topic {
        room.topic = v;
    }
    if let Some(v) = patch.description {
        room.description = v;
    }
    if let Some(v) = patch.announcement {
        room.announcement = v;
    }
    if let Some(v) = patch.read_only {
        room.read_only = v;
    }
    if let Some(v) = patch.react_when_read_only {
        room.react_when_read_only = v;
    }
    if let Some(v) = patch.default {
        room.default = v;
    }
    room.updated_at = now_ms();
    tx.execute(
        "UPDATE rooms SET fname = ?2, topic = ?3, description = ?4, announcement = ?5, read_only = ?6, \
         react_when_read_only = ?7, is_default = ?8, updated_at = ?9 WHERE id = ?1",
        params![
            id.as_str(),
            room.fname,
            room.topic,
            room.description,
            room.announcement,
            room.read_only,
            room.react_when_read_only,
            room.default,
            room.updated_at
        ],
    )
    .ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(room)
}

pub fn set_archived(conn: &mut Connection, id: &RoomId, archived: bool) -> Result<Room> {
    let n = conn
        .execute(
            "UPDATE rooms SET archived = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.as_str(), archived, now_ms()],
        )
        .ctx("set_archived")?;
    if n == 0 {
        return Err(ChatError::not_found("room"));
    }
    require_room(conn, id)
}

pub fn delete_room(conn: &mut Connection, id: &RoomId) -> Result<Vec<UserId>> {
    const OP: &str = "delete_room";
    let tx = tx(conn, OP)?;
    require_room(&tx, id)?;
    let now = now_ms();
    let members: Vec<UserId> = {
        let mut st = tx.prepare("SELECT uid FROM subscriptions WHERE rid = ?1 ORDER BY uid").ctx(OP)?;
        let rows = st.query_map([id.as_str()], |r| r.get::<_, String>(0).map(UserId)).ctx(OP)?;
        rows.collect::<rusqlite::Result<_>>().ctx(OP)?
    };
    tx.execute(
        "INSERT INTO trash (collection, rid, uid, deleted_at) SELECT 'subscriptions', rid, uid, ?2 FROM subscriptions WHERE rid = ?1",
        params![id.as_str(), now],
    )
    .ctx(OP)?;
    tx.execute(
        "INSERT INTO trash (collection, rid, uid, deleted_at) VALUES ('rooms', ?1, NULL, ?2)",
        params![id.as_str(), now],
    )
    .ctx(OP)?;
    tx.execute("DELETE FROM messages WHERE rid = ?1", [id.as_str()]).ctx(OP)?;
    tx.execute("DELETE FROM subscriptions WHERE rid = ?1", [id.as_str()]).ctx(OP)?;
    tx.execute("DELETE FROM rooms WHERE id = ?1", [id.as_str()]).ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(members)
}

// ---------------------------------------------------------------- subscriptions

pub fn get_subscription(conn: &Connection, room: &RoomId, user: &UserId) -> Result<Option<Subscription>> {
    conn.query_row(
        &format!("SELECT {SUB_COLS} FROM subscriptions WHERE rid = ?1 AND uid = ?2"),
        params![room.as_str(), user.as_str()],
        rows::subscription,
    )
    .optional()
    .ctx("get_subscription")
}

pub fn add_member(
    conn: &mut Connection,
    room: &RoomId,
    user: &UserId,
    roles: Vec<Role>,
) -> Result<Created<Subscription>> {
    const OP: &str = "add_member";
    validate_room_roles(&roles)?;
    let tx = tx(conn, OP)?;
    if let Some(sub) = get_subscription(&tx, room, user)? {
        return Ok(Created { value: sub, created: false });
    }
    let r = require_room(&tx, room)?;
    let u = get_user(&tx, user)?.ok_or_else(|| ChatError::not_found("user"))?;
    let sub = insert_subscription(&tx, &r, &u, roles, now_ms())?;
    tx.execute("UPDATE rooms SET users_count = users_count + 1 WHERE id = ?1", [room.as_str()]).ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(Created { value: sub, created: true })
}

pub fn count_owners(conn: &Connection, room: &RoomId) -> Result<u64> {
    let n: i64 = conn
        .query_row("SELECT count(*) FROM subscriptions WHERE rid = ?1 AND is_owner = 1", [room.as_str()], |r| r.get(0))
        .ctx("count_owners")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub fn remove_member(conn: &mut Connection, room: &RoomId, user: &UserId) -> Result<bool> {
    const OP: &str = "remove_member";
    let tx = tx(conn, OP)?;
    let Some(sub) = get_subscription(&tx, room, user)? else { return Ok(false) };
    check_owner_handover(&sub, count_owners(&tx, room)?)?;
    tx.execute("DELETE FROM subscriptions WHERE rid = ?1 AND uid = ?2", params![room.as_str(), user.as_str()])
        .ctx(OP)?;
    tx.execute("UPDATE rooms SET users_count = users_count - 1 WHERE id = ?1", [room.as_str()]).ctx(OP)?;
    tx.execute(
        "INSERT INTO trash (collection, rid, uid, deleted_at) VALUES ('subscriptions', ?1, ?2, ?3)",
        params![room.as_str(), user.as_str(), now_ms()],
    )
    .ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(true)
}

pub fn set_member_role(
    conn: &mut Connection,
    room: &RoomId,
    user: &UserId,
    role: Role,
    add: bool,
) -> Result<Subscription> {
    const OP: &str = "set_member_role";
    validate_room_roles(&[role])?;
    let tx = tx(conn, OP)?;
    let mut sub = get_subscription(&tx, room, user)?.ok_or_else(|| ChatError::not_found("subscription"))?;
    if add {
        if !sub.roles.contains(&role) {
            sub.roles.push(role);
        }
    } else {
        if role == Role::Owner {
            check_owner_handover(&sub, count_owners(&tx, room)?)?;
        }
        sub.roles.retain(|r| *r != role);
    }
    sub.updated_at = now_ms();
    tx.execute(
        "UPDATE subscriptions SET roles = ?3, is_owner = ?4, updated_at = ?5 WHERE rid = ?1 AND uid = ?2",
        params![room.as_str(), user.as_str(), to_json(&sub.roles), sub.is_owner(), sub.updated_at],
    )
    .ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(sub)
}

pub fn list_members(
    conn: &Connection,
    room: &RoomId,
    after: Option<&UserId>,
    limit: usize,
) -> Result<Vec<Subscription>> {
    let mut st = conn
        .prepare(&format!(
            "SELECT {SUB_COLS} FROM subscriptions WHERE rid = ?1 AND (?2 IS NULL OR uid > ?2) ORDER BY uid LIMIT ?3"
        ))
        .ctx("list_members")?;
    let rows = st
        .query_map(
            params![room.as_str(), after.map(UserId::as_str), i(page(Some(limit), MAX_LIST_PAGE) as u64)],
            rows::subscription,
        )
        .ctx("list_members")?;
    rows.collect::<rusqlite::Result<_>>().ctx("list_members")
}

pub fn set_subscription_prefs(
    conn: &mut Connection,
    room: &RoomId,
    user: &UserId,
    prefs: &SubscriptionPrefs,
) -> Result<Subscription> {
    const OP: &str = "set_subscription_prefs";
    let tx = tx(conn, OP)?;
    let mut sub = get_subscription(&tx, room, user)?.ok_or_else(|| ChatError::not_found("subscription"))?;
    if !prefs.apply(&mut sub) {
        return Ok(sub);
    }
    sub.updated_at = now_ms();
    tx.execute(
        "UPDATE subscriptions SET notify = ?3, open = ?4, favorite = ?5, disable_notifications = ?6, \
         mute_group_mentions = ?7, updated_at = ?8 WHERE rid = ?1 AND uid = ?2",
        params![
            room.as_str(),
            user.as_str(),
            sub.notify.as_str(),
            sub.open,
            sub.favorite,
            sub.disable_notifications,
            sub.mute_group_mentions,
            sub.updated_at
        ],
    )
    .ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(sub)
}

pub fn members_with_notify(
    conn: &Connection,
    room: &RoomId,
    level: NotifyLevel,
    limit: usize,
) -> Result<Vec<Subscription>> {
    let mut st = conn
        .prepare(&format!("SELECT {SUB_COLS} FROM subscriptions WHERE rid = ?1 AND notify = ?2 ORDER BY uid LIMIT ?3"))
        .ctx("members_with_notify")?;
    let rows = st
        .query_map(
            params![room.as_str(), level.as_str(), i(page(Some(limit), MAX_LIST_PAGE) as u64)],
            rows::subscription,
        )
        .ctx("members_with_notify")?;
    rows.collect::<rusqlite::Result<_>>().ctx("members_with_notify")
}

fn member_state(row: &rusqlite::Row<'_>) -> rusqlite::Result<MemberState> {
    let subscription = rows::subscription_at(row, 0)?;
    let msg: i64 = row.get(SUB_COL_COUNT)?;
    let root: i64 = row.get(SUB_COL_COUNT + 1)?;
    Ok(MemberState {
        subscription,
        counters: crate::unread::RoomCounters {
            msg_count: u64::try_from(msg).unwrap_or(0),
            root_count: u64::try_from(root).unwrap_or(0),
        },
    })
}

pub fn subscriptions_for_user(conn: &Connection, user: &UserId, since: Option<Millis>) -> Result<SubscriptionDelta> {
    const OP: &str = "subscriptions_for_user";
    let mut st = conn
        .prepare(&format!(
            "SELECT {SUB_COLS}, rooms.msg_count, rooms.root_count FROM subscriptions \
             JOIN rooms ON rooms.id = subscriptions.rid \
             WHERE subscriptions.uid = ?1 AND (?2 IS NULL OR subscriptions.updated_at >= ?2) ORDER BY subscriptions.rid"
        ))
        .ctx(OP)?;
    let update = st
        .query_map(params![user.as_str(), since], member_state)
        .ctx(OP)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx(OP)?;
    let remove = match since {
        None => Vec::new(),
        Some(since) => {
            let mut st = conn
                .prepare(
                    "SELECT DISTINCT rid FROM trash WHERE collection = 'subscriptions' AND uid = ?1 AND deleted_at >= ?2 \
                     AND rid NOT IN (SELECT rid FROM subscriptions WHERE uid = ?1) ORDER BY rid",
                )
                .ctx(OP)?;
            let rows = st.query_map(params![user.as_str(), since], |r| r.get::<_, String>(0).map(RoomId)).ctx(OP)?;
            rows.collect::<rusqlite::Result<_>>().ctx(OP)?
        }
    };
    Ok(SubscriptionDelta { update, remove })
}

pub fn mark_read(conn: &mut Connection, room: &RoomId, user: &UserId) -> Result<MemberState> {
    const OP: &str = "mark_read";
    let tx = tx(conn, OP)?;
    let r = require_room(&tx, room)?;
    let mut sub = get_subscription(&tx, room, user)?.ok_or_else(|| ChatError::not_found("subscription"))?;
    sub.read = ReadState::caught_up(r.counters);
    sub.mentions = MentionCounts::default();
    sub.updated_at = now_ms();
    tx.execute(
        "UPDATE subscriptions SET read_msg_count = ?3, read_root_count = ?4, last_read_seq = ?5, user_mentions = 0, \
         group_mentions = 0, updated_at = ?6 WHERE rid = ?1 AND uid = ?2",
        params![
            room.as_str(),
            user.as_str(),
            i(sub.read.read_msg_count),
            i(sub.read.read_root_count),
            i(sub.read.last_read_seq),
            sub.updated_at
        ],
    )
    .ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(MemberState { subscription: sub, counters: r.counters })
}

// ---------------------------------------------------------------- messages

fn message_where(conn: &Connection, clause: &str, args: impl rusqlite::Params) -> Result<Option<Message>> {
    conn.query_row(&format!("SELECT {MSG_COLS} FROM messages m WHERE {clause}"), args, rows::message)
        .optional()
        .ctx("get_message")
}

pub fn get_message(conn: &Connection, id: &MessageId) -> Result<Option<Message>> {
    message_where(conn, "m.id = ?1", [id.as_str()])
}

fn require_message(conn: &Connection, id: &MessageId) -> Result<Message> {
    get_message(conn, id)?.ok_or_else(|| ChatError::not_found("message"))
}

pub fn insert_message(conn: &mut Connection, new: NewMessage) -> Result<Created<Message>> {
    const OP: &str = "insert_message";
    new.validate(MAX_MESSAGE_CHARS * 10)?;
    let tx = tx(conn, OP)?;
    if let Some(key) = &new.client_msg_id {
        if let Some(existing) =
            message_where(&tx, "m.author_id = ?1 AND m.client_msg_id = ?2", params![new.u.id.as_str(), key])?
        {
            if existing.rid != new.rid {
                return Err(ChatError::invalid("clientMsgId", "already used for another room"));
            }
            return Ok(Created { value: existing, created: false });
        }
    }
    let mut room = require_room(&tx, &new.rid)?;
    let root = match &new.tmid {
        Some(tmid) => {
            let root = require_message(&tx, tmid)?;
            if root.rid != new.rid {
                return Err(ChatError::not_found("thread"));
            }
            if root.tmid.is_some() {
                return Err(ChatError::invalid("tmid", "replies go to the thread root"));
            }
            root.ensure_live()?;
            Some(root)
        }
        None => None,
    };
    let timeline = new.timeline();
    let seq = room.counters.assign(timeline);
    let now = now_ms();
    tx.execute(
        "UPDATE rooms SET msg_count = ?2, root_count = ?3, last_message_at = ?4 WHERE id = ?1",
        params![room.id.as_str(), i(room.counters.msg_count), i(room.counters.root_count), now],
    )
    .ctx(OP)?;
    let msg = Message {
        id: MessageId::generate(),
        rid: new.rid,
        seq,
        u: new.u,
        msg: new.msg,
        t: new.t,
        ts: now,
        updated_at: now,
        edited_at: None,
        edited_by: None,
        tmid: new.tmid,
        tshow: new.tshow,
        timeline,
        tcount: 0,
        tlm: None,
        replies: Vec::new(),
        mentions: new.mentions,
        group_mention: new.group_mention,
        reactions: Default::default(),
        pinned: false,
        pinned_at: None,
        pinned_by: None,
        attachments: new.attachments,
        client_msg_id: new.client_msg_id,
        deleted_at: None,
    };
    insert_message_row(&tx, &msg).ctx(OP)?;
    if let Some(mut root) = root {
        root.tcount += 1;
        root.tlm = Some(now);
        if !root.replies.contains(&msg.u.id) {
            root.replies.push(msg.u.id.clone());
        }
        root.updated_at = now;
        save_message(&tx, &root)?;
    }
    if let Some(mut sub) = get_subscription(&tx, &msg.rid, &msg.u.id)? {
        sub.read.advance_own(seq, timeline);
        tx.execute(
            "UPDATE subscriptions SET read_msg_count = ?3, read_root_count = ?4, last_read_seq = ?5 \
             WHERE rid = ?1 AND uid = ?2",
            params![
                msg.rid.as_str(),
                msg.u.id.as_str(),
                i(sub.read.read_msg_count),
                i(sub.read.read_root_count),
                i(sub.read.last_read_seq)
            ],
        )
        .ctx(OP)?;
    }
    for m in msg.mentions.iter().filter(|m| m.id != msg.u.id) {
        tx.execute(
            "UPDATE subscriptions SET user_mentions = user_mentions + 1, updated_at = ?3 WHERE rid = ?1 AND uid = ?2",
            params![msg.rid.as_str(), m.id.as_str(), now],
        )
        .ctx(OP)?;
    }
    if msg.group_mention {
        tx.execute(
            "UPDATE subscriptions SET group_mentions = group_mentions + 1, updated_at = ?3 WHERE rid = ?1 AND uid <> ?2",
            params![msg.rid.as_str(), msg.u.id.as_str(), now],
        )
        .ctx(OP)?;
    }
    tx.commit().ctx(OP)?;
    Ok(Created { value: msg, created: true })
}

/// Writes a new `messages` row from every field of `msg` (posting and import share it; a cached
/// statement, since an import writes thousands in a row).
pub(super) fn insert_message_row(tx: &Connection, msg: &Message) -> rusqlite::Result<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO messages ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
             ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
            MSG_COLS.replace("m.", "")
        )
    });
    tx.prepare_cached(&SQL)?.execute(params![
        msg.id.as_str(),
        msg.rid.as_str(),
        i(msg.seq),
        msg.u.id.as_str(),
        msg.u.username,
        msg.u.name,
        msg.msg,
        msg.t.map(|t| t.as_str()),
        msg.ts,
        msg.updated_at,
        msg.edited_at,
        msg.edited_by.as_ref().map(UserId::as_str),
        msg.tmid.as_ref().map(MessageId::as_str),
        msg.tshow,
        msg.timeline,
        i(msg.tcount),
        msg.tlm,
        to_json(&msg.replies),
        to_json(&msg.mentions),
        msg.group_mention,
        to_json(&msg.reactions),
        msg.pinned,
        msg.pinned_at,
        msg.pinned_by.as_ref().map(UserId::as_str),
        to_json(&msg.attachments),
        msg.client_msg_id,
        msg.deleted_at
    ])?;
    Ok(())
}

/// Writes every mutable field of a stored message.
fn save_message(conn: &Connection, m: &Message) -> Result<()> {
    conn.execute(
        "UPDATE messages SET msg = ?2, t = ?3, updated_at = ?4, edited_at = ?5, edited_by = ?6, tcount = ?7, tlm = ?8, \
         replies = ?9, mentions = ?10, group_mention = ?11, reactions = ?12, pinned = ?13, pinned_at = ?14, \
         pinned_by = ?15, attachments = ?16, deleted_at = ?17 WHERE id = ?1",
        params![
            m.id.as_str(),
            m.msg,
            m.t.map(|t| t.as_str()),
            m.updated_at,
            m.edited_at,
            m.edited_by.as_ref().map(UserId::as_str),
            i(m.tcount),
            m.tlm,
            to_json(&m.replies),
            to_json(&m.mentions),
            m.group_mention,
            to_json(&m.reactions),
            m.pinned,
            m.pinned_at,
            m.pinned_by.as_ref().map(UserId::as_str),
            to_json(&m.attachments),
            m.deleted_at
        ],
    )
    .ctx("save_message")?;
    Ok(())
}

/// Loads, changes and saves one message in a transaction.
pub fn modify_message(
    conn: &mut Connection,
    id: &MessageId,
    f: impl FnOnce(&mut Message, Millis) -> Result<bool>,
) -> Result<Message> {
    const OP: &str = "modify_message";
    let tx = tx(conn, OP)?;
    let mut m = require_message(&tx, id)?;
    let now = now_ms();
    if f(&mut m, now)? {
        m.updated_at = now;
        save_message(&tx, &m)?;
        tx.commit().ctx(OP)?;
    }
    Ok(m)
}

fn message_list(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Message>> {
    let mut st = conn.prepare(&format!("SELECT {MSG_COLS} FROM messages m WHERE {sql}")).ctx("list_messages")?;
    let rows = st.query_map(args, rows::message).ctx("list_messages")?;
    rows.collect::<rusqlite::Result<_>>().ctx("list_messages")
}

pub fn history(conn: &Connection, room: &RoomId, p: Page) -> Result<Vec<Message>> {
    let max = crate::limits::MAX_HISTORY_PAGE;
    let rid = room.as_str();
    let mut out = match p {
        Page::Latest { limit } => message_list(
            conn,
            "m.rid = ?1 AND m.timeline = 1 ORDER BY m.seq DESC LIMIT ?2",
            params![rid, i(page(Some(limit), max) as u64)],
        )?,
        Page::Before { seq, limit } => message_list(
            conn,
            "m.rid = ?1 AND m.timeline = 1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3",
            params![rid, i(seq), i(page(Some(limit), max) as u64)],
        )?,
        Page::After { seq, limit } => {
            return message_list(
                conn,
                "m.rid = ?1 AND m.timeline = 1 AND m.seq > ?2 ORDER BY m.seq ASC LIMIT ?3",
                params![rid, i(seq), i(page(Some(limit), max) as u64)],
            )
        }
    };
    out.reverse();
    Ok(out)
}

pub fn messages_after(conn: &Connection, room: &RoomId, after: Seq, limit: usize) -> Result<Vec<Message>> {
    message_list(
        conn,
        "m.rid = ?1 AND m.seq > ?2 ORDER BY m.seq ASC LIMIT ?3",
        params![room.as_str(), i(after), i(page(Some(limit), crate::limits::MAX_SYNC_PAGE + 1) as u64)],
    )
}

pub fn messages_updated_since(
    conn: &Connection,
    room: &RoomId,
    since: Millis,
    up_to: Seq,
    limit: usize,
) -> Result<Vec<Message>> {
    message_list(
        conn,
        "m.rid = ?1 AND m.updated_at >= ?2 AND m.seq <= ?3 ORDER BY m.seq ASC LIMIT ?4",
        params![room.as_str(), since, i(up_to), i(page(Some(limit), crate::limits::MAX_SYNC_PAGE + 1) as u64)],
    )
}

pub fn thread_messages(conn: &Connection, root: &MessageId, after: Seq, limit: usize) -> Result<Vec<Message>> {
    message_list(
        conn,
        "m.tmid = ?1 AND m.seq > ?2 ORDER BY m.seq ASC LIMIT ?3",
        params![root.as_str(), i(after), i(page(Some(limit), crate::limits::MAX_HISTORY_PAGE) as u64)],
    )
}

pub fn thread_roots(conn: &Connection, room: &RoomId, before: Option<Millis>, limit: usize) -> Result<Vec<Message>> {
    message_list(
        conn,
        "m.rid = ?1 AND m.tcount > 0 AND (?2 IS NULL OR m.tlm < ?2) ORDER BY m.tlm DESC LIMIT ?3",
        params![room.as_str(), before, i(page(Some(limit), crate::limits::MAX_HISTORY_PAGE) as u64)],
    )
}

pub fn pinned_messages(conn: &Connection, room: &RoomId, limit: usize) -> Result<Vec<Message>> {
    message_list(
        conn,
        "m.rid = ?1 AND m.pinned = 1 ORDER BY m.pinned_at DESC LIMIT ?2",
        params![room.as_str(), i(page(Some(limit), crate::limits::MAX_HISTORY_PAGE) as u64)],
    )
}

pub fn search_messages(conn: &Connection, q: &SearchQuery) -> Result<Vec<Message>> {
    crate::limits::check_chars("text", &q.text, MAX_SEARCH_QUERY_CHARS)?;
    let terms = quoted_terms(&q.text);
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let fts = terms.join(" ");
    let mut st = conn
        .prepare(&format!(
            "SELECT {MSG_COLS} FROM messages_fts f JOIN messages m ON m.pk = f.rowid \
             WHERE messages_fts MATCH ?1 AND m.deleted_at IS NULL AND m.t IS NULL \
             AND (m.rid IN (SELECT rid FROM subscriptions WHERE uid = ?2) \
                  OR (m.rid = ?3 AND EXISTS (SELECT 1 FROM rooms WHERE id = ?3 AND t = 'c'))) \
             AND (?4 IS NULL OR m.rid = ?4) \
             ORDER BY bm25(messages_fts), m.ts DESC LIMIT ?5"
        ))
        .ctx("search_messages")?;
    let rows = st
        .query_map(
            params![
                fts,
                q.reader.as_str(),
                q.preview_room.as_ref().map(RoomId::as_str),
                q.room.as_ref().map(RoomId::as_str),
                i(page(Some(q.limit), MAX_SEARCH_RESULTS) as u64)
            ],
            rows::message,
        )
        .ctx("search_messages")?;
    rows.collect::<rusqlite::Result<_>>().ctx("search_messages")
}

// ---------------------------------------------------------------- permissions and settings

pub fn permission_overrides(conn: &Connection) -> Result<Vec<(Permission, Vec<Role>)>> {
    const OP: &str = "permission_overrides";
    let mut st = conn.prepare("SELECT id, roles FROM permissions ORDER BY id").ctx(OP)?;
    let rows = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, rows::json::<Vec<Role>>(r, 1)?)))
        .ctx(OP)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx(OP)?;
    // Ids this version does not know (written by a newer one) are skipped, not fatal.
    Ok(rows.into_iter().filter_map(|(id, roles)| Permission::parse(&id).map(|p| (p, roles))).collect())
}

pub fn set_permission(conn: &Connection, perm: Permission, roles: Vec<Role>) -> Result<()> {
    conn.execute(
        "INSERT INTO permissions (id, roles) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET roles = excluded.roles",
        params![perm.as_str(), to_json(&roles)],
    )
    .ctx("set_permission")?;
    Ok(())
}

pub fn settings(conn: &Connection) -> Result<Vec<(String, serde_json::Value)>> {
    const OP: &str = "settings";
    let mut st = conn.prepare("SELECT key, value FROM settings ORDER BY key").ctx(OP)?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, rows::json::<serde_json::Value>(r, 1)?))).ctx(OP)?;
    rows.collect::<rusqlite::Result<_>>().ctx(OP)
}

pub fn set_setting(conn: &Connection, key: &str, value: &serde_json::Value) -> Result<()> {
    if key.is_empty() || key.len() > 128 {
        return Err(ChatError::invalid("key", "must be 1 to 128 bytes"));
    }
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, to_json(value)],
    )
    .ctx("set_setting")?;
    Ok(())
}
