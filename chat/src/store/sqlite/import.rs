//! `Store::import` for SQLite: the whole [`ImportBatch`] in **one** `BEGIN IMMEDIATE` transaction, so an
//! error anywhere (a name taken meanwhile, a full disk) rolls everything back and the store is unchanged.
//!
//! The cost is that the write lock is held for the whole import: other processes on the same file (a
//! running frontend) wait up to their busy timeout (5 s) for each write. Measured figures are in the
//! crate README. Counters are kept in memory during the transaction and written once per room and per
//! thread root at the end, instead of once per message.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension};

use super::ops::{
    get_message, get_room, insert_message_row, insert_room_row, insert_subscription_row, insert_user_row, Ctx,
};
use super::rows::{i, to_json};
use crate::ids::{now_ms, MessageId, Millis, RoomId, UserId};
use crate::message::Message;
use crate::room::{Room, Subscription};
use crate::store::{ImportBatch, ImportOutcome, ImportProgress};
use crate::unread::{ReadState, RoomCounters};
use crate::user::User;
use crate::{ChatError, Result};

const OP: &str = "import";
/// Progress is reported every this many messages.
const PROGRESS_EVERY: usize = 1_000;

/// A room's counters before and during the import.
struct RoomState {
    before: RoomCounters,
    now: RoomCounters,
    last_message_at: Option<Millis>,
}

/// A thread root's reply bookkeeping, written once at the end.
struct RootState {
    tcount: u64,
    tlm: Option<Millis>,
    replies: Vec<UserId>,
    /// Stored before this import: its `updatedAt` moves so syncing clients see the new replies.
    stored: bool,
}

pub fn import(conn: &mut Connection, batch: ImportBatch, progress: &ImportProgress) -> Result<ImportOutcome> {
    batch.validate()?;
    let now = now_ms();
    // A big import touches far more pages than the default 2 MB page cache holds, and a transaction
    // whose dirty pages spill is slower; allow up to 256 MiB for this transaction, then restore.
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).ctx(OP)?;
    conn.execute_batch("PRAGMA cache_size = -262144").ctx(OP)?;
    let result = import_in_transaction(conn, batch, progress, now);
    conn.execute_batch(&format!("PRAGMA cache_size = {cache}")).ctx(OP)?;
    result
}

fn import_in_transaction(
    conn: &mut Connection,
    batch: ImportBatch,
    progress: &ImportProgress,
    now: Millis,
) -> Result<ImportOutcome> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).ctx(OP)?;
    let mut out = ImportOutcome::default();

    for u in &batch.users {
        let exists: bool =
            tx.query_row("SELECT EXISTS(SELECT 1 FROM users WHERE id = ?1)", [u.id.as_str()], |r| r.get(0)).ctx(OP)?;
        if exists {
            continue;
        }
        let lower = u.username.to_lowercase();
        let email_lower = u.email.as_ref().map(|e| e.to_lowercase());
        let taken: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM users WHERE username_lower = ?1 OR (?2 IS NOT NULL AND email_lower = ?2))",
                params![lower, email_lower],
                |r| r.get(0),
            )
            .ctx(OP)?;
        if taken {
            return Err(ChatError::Conflict { what: "username or email" });
        }
        // The store stamps the account's creation (the plan leaves it at 0).
        let user = User { created_at: now, updated_at: now, ..u.clone() };
        insert_user_row(&tx, &user, None).ctx(OP)?;
        out.users += 1;
    }

    for r in &batch.rooms {
        if get_room(&tx, &r.id)?.is_some() {
            continue;
        }
        let name_lower = r.name.as_ref().map(|n| n.to_lowercase());
        let taken: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM rooms WHERE (?1 IS NOT NULL AND name_lower = ?1) \
                 OR (?2 IS NOT NULL AND dm_key = ?2))",
                params![name_lower, r.dm_key],
                |row| row.get(0),
            )
            .ctx(OP)?;
        if taken {
            return Err(ChatError::Conflict { what: "room name" });
        }
        // Counters start at zero (the messages below add to them) and `users_count` is recounted.
        let room = Room {
            users_count: 0,
            counters: RoomCounters::default(),
            last_message_at: None,
            updated_at: now,
            ..r.clone()
        };
        insert_room_row(&tx, &room).ctx(OP)?;
        out.rooms += 1;
    }

    let mut rooms: HashMap<RoomId, RoomState> = HashMap::new();
    let mut member_rooms: HashSet<RoomId> = HashSet::new();
    for s in &batch.members {
        load_room(&tx, &s.rid, &mut rooms)?;
        if insert_member(&tx, s, rooms.get(&s.rid).map(|r| r.now).unwrap_or_default(), now)? {
            out.members += 1;
            member_rooms.insert(s.rid.clone());
        }
    }

    let total = batch.messages.len() as u64;
    let mut roots: HashMap<MessageId, RootState> = HashMap::new();
    let mut inserted: HashSet<MessageId> = HashSet::new();
    {
        let mut exists = tx.prepare_cached("SELECT EXISTS(SELECT 1 FROM messages WHERE id = ?1)").ctx(OP)?;
        for (k, m) in batch.messages.into_iter().enumerate() {
            if k % PROGRESS_EVERY == 0 {
                progress(k as u64);
            }
            if exists.query_row([m.id.as_str()], |r| r.get::<_, bool>(0)).ctx(OP)? {
                continue;
            }
            load_room(&tx, &m.rid, &mut rooms)?;
            let Some(state) = rooms.get_mut(&m.rid) else { return Err(ChatError::not_found("room")) };
            if let Some(tmid) = &m.tmid {
                if !roots.contains_key(tmid) {
                    let root = get_message(&tx, tmid)?.ok_or_else(|| ChatError::not_found("thread"))?;
                    if root.rid != m.rid || root.tmid.is_some() {
                        return Err(ChatError::invalid("tmid", "replies go to a thread root of the same room"));
                    }
                    let stored = !inserted.contains(tmid);
                    roots.insert(
                        tmid.clone(),
                        RootState { tcount: root.tcount, tlm: root.tlm, replies: root.replies, stored },
                    );
                }
                if let Some(root) = roots.get_mut(tmid) {
                    root.tcount += 1;
                    root.tlm = Some(root.tlm.map_or(m.ts, |t| t.max(m.ts)));
                    if !root.replies.contains(&m.u.id) {
                        root.replies.push(m.u.id.clone());
                    }
                }
            }
            let seq = state.now.assign(m.timeline);
            state.last_message_at = Some(state.last_message_at.map_or(m.ts, |t| t.max(m.ts)));
            // What the store computes (seq, thread counters) or a fresh message lacks (pins, a client id).
            let row = Message {
                seq,
                t: None,
                tcount: 0,
                tlm: None,
                replies: Vec::new(),
                pinned: false,
                pinned_at: None,
                pinned_by: None,
                client_msg_id: None,
                deleted_at: None,
                ..m
            };
            insert_message_row(&tx, &row).ctx(OP)?;
            inserted.insert(row.id.clone());
            out.messages.push(row.id);
        }
    }
    progress(total);

    for (id, root) in &roots {
        tx.execute(
            "UPDATE messages SET tcount = ?2, tlm = ?3, replies = ?4, \
             updated_at = CASE WHEN ?5 THEN max(updated_at, ?6) ELSE updated_at END WHERE id = ?1",
            params![id.as_str(), i(root.tcount), root.tlm, to_json(&root.replies), root.stored, now],
        )
        .ctx(OP)?;
    }
    for (rid, st) in &rooms {
        let added = st.now.msg_count - st.before.msg_count;
        if added > 0 {
            tx.execute(
                "UPDATE rooms SET msg_count = ?2, root_count = ?3, last_message_at = ?4 WHERE id = ?1",
                params![rid.as_str(), i(st.now.msg_count), i(st.now.root_count), st.last_message_at],
            )
            .ctx(OP)?;
            // Imported history is not unread: every member moves on by what was added; who had read
            // everything stays caught up.
            tx.execute(
                "UPDATE subscriptions SET read_msg_count = read_msg_count + ?2, read_root_count = read_root_count + ?3, \
                 last_read_seq = CASE WHEN last_read_seq = ?4 THEN ?5 ELSE last_read_seq END, updated_at = ?6 \
                 WHERE rid = ?1",
                params![
                    rid.as_str(),
                    i(added),
                    i(st.now.root_count - st.before.root_count),
                    i(st.before.msg_count),
                    i(st.now.msg_count),
                    now
                ],
            )
            .ctx(OP)?;
        }
        if added > 0 || member_rooms.contains(rid) {
            tx.execute(
                "UPDATE rooms SET users_count = (SELECT count(*) FROM subscriptions WHERE rid = ?1), updated_at = ?2 \
                 WHERE id = ?1",
                params![rid.as_str(), now],
            )
            .ctx(OP)?;
        }
    }
    tx.commit().ctx(OP)?;
    Ok(out)
}

fn load_room(tx: &Connection, id: &RoomId, rooms: &mut HashMap<RoomId, RoomState>) -> Result<()> {
    if !rooms.contains_key(id) {
        let room = get_room(tx, id)?.ok_or_else(|| ChatError::not_found("room"))?;
        rooms.insert(
            id.clone(),
            RoomState { before: room.counters, now: room.counters, last_message_at: room.last_message_at },
        );
    }
    Ok(())
}

/// Inserts a membership unless it exists; a new member starts caught up to `counters`.
fn insert_member(tx: &Connection, s: &Subscription, counters: RoomCounters, now: Millis) -> Result<bool> {
    let exists = tx
        .query_row(
            "SELECT 1 FROM subscriptions WHERE rid = ?1 AND uid = ?2",
            params![s.rid.as_str(), s.uid.as_str()],
            |_| Ok(()),
        )
        .optional()
        .ctx(OP)?
        .is_some();
    if exists {
        return Ok(false);
    }
    let sub = Subscription { read: ReadState::caught_up(counters), updated_at: now, ..s.clone() };
    insert_subscription_row(tx, &sub).ctx(OP)?;
    Ok(true)
}
