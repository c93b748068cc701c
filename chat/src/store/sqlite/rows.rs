//! Row ↔ domain mapping for the SQLite backend. Column lists are constants so every query selects the
//! same shape the mappers read.

use rusqlite::types::Type;
use rusqlite::Row;
use serde::de::DeserializeOwned;

use crate::ids::{MessageId, RoomId, SessionId, UserId};
use crate::message::{Message, SystemType, UserRef};
use crate::room::{NotifyLevel, Room, RoomType, Subscription};
use crate::store::{Session, SessionKind};
use crate::unread::{MentionCounts, ReadState, RoomCounters};
use crate::user::{User, UserKind};

pub const USER_COLS: &str = "id, username, name, email, kind, roles, active, created_at, updated_at";
pub const SESSION_COLS: &str =
    "id, user_id, kind, token_hash, name, last_four, created_at, last_used_at, expires_at, client";
pub const ROOM_COLS: &str = "rooms.id, rooms.t, rooms.name, rooms.fname, rooms.topic, rooms.description, \
    rooms.announcement, rooms.creator, rooms.dm_key, rooms.read_only, rooms.react_when_read_only, rooms.archived, \
    rooms.is_default, rooms.users_count, rooms.msg_count, rooms.root_count, rooms.last_message_at, \
    rooms.created_at, rooms.updated_at";
pub const SUB_COLS: &str = "subscriptions.rid, subscriptions.uid, subscriptions.username, subscriptions.t, \
    subscriptions.roles, subscriptions.joined_at, subscriptions.open, subscriptions.read_msg_count, \
    subscriptions.read_root_count, subscriptions.last_read_seq, subscriptions.user_mentions, \
    subscriptions.group_mentions, subscriptions.favorite, subscriptions.notify, subscriptions.updated_at, \
    subscriptions.disable_notifications, subscriptions.mute_group_mentions";
/// Columns in [`SUB_COLS`]; what a query selects after them starts at this index.
pub const SUB_COL_COUNT: usize = 17;
pub const MSG_COLS: &str = "m.id, m.rid, m.seq, m.author_id, m.author_username, m.author_name, m.msg, m.t, m.ts, \
    m.updated_at, m.edited_at, m.edited_by, m.tmid, m.tshow, m.timeline, m.tcount, m.tlm, m.replies, m.mentions, \
    m.group_mention, m.reactions, m.pinned, m.pinned_at, m.pinned_by, m.attachments, m.client_msg_id, m.deleted_at";

fn bad(idx: usize, what: &'static str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, what.into())
}

pub fn json<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    serde_json::from_str(&s).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serializing our own plain data types cannot fail; fall back to an empty JSON value defensively.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn u64_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| bad(idx, "negative counter"))
}

pub fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn user(row: &Row<'_>) -> rusqlite::Result<User> {
    let kind: String = row.get(4)?;
    Ok(User {
        id: UserId(row.get(0)?),
        username: row.get(1)?,
        name: row.get(2)?,
        email: row.get(3)?,
        kind: UserKind::parse(&kind).ok_or_else(|| bad(4, "user kind"))?,
        roles: json(row, 5)?,
        active: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

pub fn session(row: &Row<'_>) -> rusqlite::Result<Session> {
    let kind: String = row.get(2)?;
    Ok(Session {
        id: SessionId(row.get(0)?),
        user_id: UserId(row.get(1)?),
        kind: SessionKind::parse(&kind).ok_or_else(|| bad(2, "session kind"))?,
        token_hash: row.get(3)?,
        name: row.get(4)?,
        last_four: row.get(5)?,
        created_at: row.get(6)?,
        last_used_at: row.get(7)?,
        expires_at: row.get(8)?,
        client: row.get(9)?,
    })
}

fn room_type(row: &Row<'_>, idx: usize) -> rusqlite::Result<RoomType> {
    let t: String = row.get(idx)?;
    RoomType::parse(&t).ok_or_else(|| bad(idx, "room type"))
}

pub fn room(row: &Row<'_>) -> rusqlite::Result<Room> {
    Ok(Room {
        id: RoomId(row.get(0)?),
        t: room_type(row, 1)?,
        name: row.get(2)?,
        fname: row.get(3)?,
        topic: row.get(4)?,
        description: row.get(5)?,
        announcement: row.get(6)?,
        creator: UserId(row.get(7)?),
        dm_key: row.get(8)?,
        read_only: row.get(9)?,
        react_when_read_only: row.get(10)?,
        archived: row.get(11)?,
        default: row.get(12)?,
        users_count: u64_col(row, 13)?,
        counters: RoomCounters { msg_count: u64_col(row, 14)?, root_count: u64_col(row, 15)? },
        last_message_at: row.get(16)?,
        created_at: row.get(17)?,
        updated_at: row.get(18)?,
    })
}

/// Reads a subscription starting at column `o`.
pub fn subscription_at(row: &Row<'_>, o: usize) -> rusqlite::Result<Subscription> {
    let notify: String = row.get(o + 13)?;
    Ok(Subscription {
        rid: RoomId(row.get(o)?),
        uid: UserId(row.get(o + 1)?),
        username: row.get(o + 2)?,
        t: room_type(row, o + 3)?,
        roles: json(row, o + 4)?,
        joined_at: row.get(o + 5)?,
        open: row.get(o + 6)?,
        read: ReadState {
            read_msg_count: u64_col(row, o + 7)?,
            read_root_count: u64_col(row, o + 8)?,
            last_read_seq: u64_col(row, o + 9)?,
        },
        mentions: MentionCounts { user_mentions: u64_col(row, o + 10)?, group_mentions: u64_col(row, o + 11)? },
        favorite: row.get(o + 12)?,
        notify: NotifyLevel::parse(&notify).ok_or_else(|| bad(o + 13, "notify level"))?,
        updated_at: row.get(o + 14)?,
        disable_notifications: row.get(o + 15)?,
        mute_group_mentions: row.get(o + 16)?,
    })
}

pub fn subscription(row: &Row<'_>) -> rusqlite::Result<Subscription> {
    subscription_at(row, 0)
}

pub fn message(row: &Row<'_>) -> rusqlite::Result<Message> {
    let t: Option<String> = row.get(7)?;
    let t = match t {
        Some(s) => Some(SystemType::parse(&s).ok_or_else(|| bad(7, "message type"))?),
        None => None,
    };
    Ok(Message {
        id: MessageId(row.get(0)?),
        rid: RoomId(row.get(1)?),
        seq: u64_col(row, 2)?,
        u: UserRef { id: UserId(row.get(3)?), username: row.get(4)?, name: row.get(5)? },
        msg: row.get(6)?,
        t,
        ts: row.get(8)?,
        updated_at: row.get(9)?,
        edited_at: row.get(10)?,
        edited_by: row.get::<_, Option<String>>(11)?.map(UserId),
        tmid: row.get::<_, Option<String>>(12)?.map(MessageId),
        tshow: row.get(13)?,
        timeline: row.get(14)?,
        tcount: u64_col(row, 15)?,
        tlm: row.get(16)?,
        replies: json(row, 17)?,
        mentions: json(row, 18)?,
        group_mention: row.get(19)?,
        reactions: json(row, 20)?,
        pinned: row.get(21)?,
        pinned_at: row.get(22)?,
        pinned_by: row.get::<_, Option<String>>(23)?.map(UserId),
        attachments: json(row, 24)?,
        client_msg_id: row.get(25)?,
        deleted_at: row.get(26)?,
    })
}
