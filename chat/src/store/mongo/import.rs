//! `Store::import` for MongoDB. There is no multi-document transaction (the store does not use them),
//! so the batch is written as a sequence of writes that are each idempotent by id: users, rooms and
//! memberships are inserted when absent; a room's new messages (those whose derived `_id` is absent)
//! get a `seq` range from one `$inc` on the room's counter and are inserted in chunks; then thread roots,
//! the room's `lastMessageAt` and the members' read counters are updated.
//!
//! An import interrupted half-way (process killed, server gone) leaves what it wrote; running it again
//! writes the rest and nothing twice. What can stay behind: `seq` numbers taken by the interrupted
//! run but never used (a hole, as after a crashed send), and, when the interruption fell between a
//! room's message inserts and its read-counter update, that room's imported messages counted unread
//! for its members until they open it. Validation happens before the first write, as for SQLite.

use std::collections::{HashMap, HashSet};

use mongodb::bson::doc;
use mongodb::options::ReturnDocument;

use super::{err, is_duplicate, n, sub_doc, MongoStore, MsgDoc, RoomDoc, UserDoc};
use crate::ids::{now_ms, MessageId, Millis, RoomId, UserId};
use crate::message::Message;
use crate::store::{ImportBatch, ImportOutcome, ImportProgress, Store};
use crate::unread::ReadState;
use crate::{ChatError, Result};

const OP: &str = "import";
/// Messages per `insert_many` and per existence query.
const CHUNK: usize = 1_000;

pub(super) async fn import(s: &MongoStore, batch: ImportBatch, progress: ImportProgress) -> Result<ImportOutcome> {
    batch.validate()?;
    let now = now_ms();
    let mut out = ImportOutcome::default();

    for u in &batch.users {
        if s.users().find_one(doc! {"_id": u.id.as_str()}).await.map_err(err(OP))?.is_some() {
            continue;
        }
        let mut user = u.clone();
        user.created_at = now;
        user.updated_at = now;
        let d = UserDoc {
            key: user.id.0.clone(),
            username_lower: user.username.to_lowercase(),
            email_lower: user.email.as_ref().map(|e| e.to_lowercase()),
            password_hash: None,
            user,
        };
        match s.users().insert_one(d).await {
            Ok(_) => out.users += 1,
            Err(e) if is_duplicate(&e) => return Err(ChatError::Conflict { what: "username or email" }),
            Err(e) => return Err(ChatError::storage(OP, e)),
        }
    }

    for r in &batch.rooms {
        if s.rooms().find_one(doc! {"_id": r.id.as_str()}).await.map_err(err(OP))?.is_some() {
            continue;
        }
        let mut room = r.clone();
        room.counters = Default::default();
        room.users_count = 0;
        room.last_message_at = None;
        room.updated_at = now;
        let d = RoomDoc {
            key: room.id.0.clone(),
            name_lower: room.name.as_ref().map(|n| n.to_lowercase()),
            dm: room.dm_key.clone(),
            room,
        };
        match s.rooms().insert_one(d).await {
            Ok(_) => out.rooms += 1,
            Err(e) if is_duplicate(&e) => return Err(ChatError::Conflict { what: "room name" }),
            Err(e) => return Err(ChatError::storage(OP, e)),
        }
    }

    let mut touched: HashSet<RoomId> = HashSet::new();
    for m in &batch.members {
        let key = super::sub_key(&m.rid, &m.uid);
        if s.subs().find_one(doc! {"_id": &key}).await.map_err(err(OP))?.is_some() {
            continue;
        }
        let room = s.require_room(&m.rid).await?;
        let mut sub = m.clone();
        sub.read = ReadState::caught_up(room.counters);
        sub.updated_at = now;
        match s.subs().insert_one(sub_doc(sub)).await {
            Ok(_) => out.members += 1,
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(ChatError::storage(OP, e)),
        }
        touched.insert(m.rid.clone());
    }

    // Rooms in first-appearance order, each with its messages in batch order.
    let mut order: Vec<RoomId> = Vec::new();
    let mut per_room: HashMap<RoomId, Vec<&Message>> = HashMap::new();
    for m in &batch.messages {
        per_room
            .entry(m.rid.clone())
            .or_insert_with(|| {
                order.push(m.rid.clone());
                Vec::new()
            })
            .push(m);
    }
    let mut handled = 0u64;
    for rid in order {
        let msgs = per_room.remove(&rid).unwrap_or_default();
        handled += msgs.len() as u64;
        let mut present: HashSet<String> = HashSet::new();
        for chunk in msgs.chunks(CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|m| m.id.as_str()).collect();
            let found = s.raw("messages").find(doc! {"_id": {"$in": ids}}).projection(doc! {"_id": 1}).await;
            let docs: Vec<mongodb::bson::Document> =
                futures_util::TryStreamExt::try_collect(found.map_err(err(OP))?).await.map_err(err(OP))?;
            present.extend(docs.iter().filter_map(|d| d.get_str("_id").ok().map(str::to_owned)));
        }
        let new: Vec<&Message> = msgs.into_iter().filter(|m| !present.contains(m.id.as_str())).collect();
        if new.is_empty() {
            progress(handled);
            continue;
        }
        let added = new.len() as u64;
        let added_root = new.iter().filter(|m| m.timeline).count() as u64;
        // One `$inc` reserves the seq range for all of the room's new messages.
        let before = s
            .rooms()
            .find_one_and_update(
                doc! {"_id": rid.as_str()},
                doc! {"$inc": {"counters.msgCount": n(added), "counters.rootCount": n(added_root)}},
            )
            .return_document(ReturnDocument::Before)
            .await
            .map_err(err(OP))?
            .ok_or_else(|| ChatError::not_found("room"))?
            .room;
        let mut next = before.counters.msg_count;
        let mut last: Option<Millis> = before.last_message_at;
        let mut roots: HashMap<&MessageId, (u64, Millis, Vec<&UserId>)> = HashMap::new();
        let docs: Vec<MsgDoc> = new
            .iter()
            .map(|m| {
                next += 1;
                last = Some(last.map_or(m.ts, |t| t.max(m.ts)));
                if let Some(tmid) = &m.tmid {
                    let e = roots.entry(tmid).or_insert((0, m.ts, Vec::new()));
                    e.0 += 1;
                    e.1 = e.1.max(m.ts);
                    if !e.2.contains(&&m.u.id) {
                        e.2.push(&m.u.id);
                    }
                }
                let mut m = (*m).clone();
                m.seq = next;
                m.tcount = 0;
                m.tlm = None;
                m.replies = Vec::new();
                MsgDoc::new(m)
            })
            .collect();
        for chunk in docs.chunks(CHUNK) {
            s.messages().insert_many(chunk.to_vec()).await.map_err(err(OP))?;
        }
        out.messages.extend(new.iter().map(|m| m.id.clone()));
        for (tmid, (count, tlm, users)) in roots {
            let root = s.get_message(tmid).await?.ok_or_else(|| ChatError::not_found("thread"))?;
            let mut replies = root.replies.clone();
            for u in users {
                if !replies.contains(u) {
                    replies.push(u.clone());
                }
            }
            let tlm = root.tlm.map_or(tlm, |t| t.max(tlm));
            let replies: Vec<&str> = replies.iter().map(UserId::as_str).collect();
            s.messages()
                .update_one(
                    doc! {"_id": tmid.as_str()},
                    doc! {"$inc": {"tcount": n(count)}, "$set": {"tlm": tlm, "replies": replies, "updatedAt": now.max(root.updated_at)}},
                )
                .await
                .map_err(err(OP))?;
        }
        s.rooms()
            .update_one(doc! {"_id": rid.as_str()}, doc! {"$set": {"lastMessageAt": last}})
            .await
            .map_err(err(OP))?;
        // Imported history is not unread (see `ImportBatch::messages`).
        s.subs()
            .update_many(
                doc! {"rid": rid.as_str()},
                doc! {"$inc": {"read.readMsgCount": n(added), "read.readRootCount": n(added_root)}, "$set": {"updatedAt": now}},
            )
            .await
            .map_err(err(OP))?;
        s.subs()
            .update_many(
                doc! {"rid": rid.as_str(), "read.lastReadSeq": n(before.counters.msg_count)},
                doc! {"$set": {"read.lastReadSeq": n(before.counters.msg_count + added)}},
            )
            .await
            .map_err(err(OP))?;
        touched.insert(rid);
        progress(handled);
    }

    for rid in touched {
        let count = s.subs().count_documents(doc! {"rid": rid.as_str()}).await.map_err(err(OP))?;
        s.rooms()
            .update_one(doc! {"_id": rid.as_str()}, doc! {"$set": {"usersCount": n(count), "updatedAt": now}})
            .await
            .map_err(err(OP))?;
    }
    Ok(out)
}
