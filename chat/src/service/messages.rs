//! Message features beyond send/edit/delete (§2.1): reactions, pins, thread replies, the pinned list and
//! full-text search. Each write is authorized by the stored message's room (never the client's claim,
//! §7.5), stored, and then published as `message.updated` on `room/<rid>` with only the changed fields
//! (§2.3). Reads follow the reader rule: members, or a public channel with `preview-c-room`; for a
//! private room a non-member gets the same `NotFound` as for an unknown id (§7.4).

use serde_json::json;

use super::{as_message_error, event, message_new, publish_room, user_ref, Caller, Effect, Outcome, Service};
use crate::ids::{MessageId, RoomId};
use crate::limits::{self, MAX_HISTORY_PAGE, MAX_SEARCH_RESULTS};
use crate::message::{validate_emoji, Message, NewMessage, SystemType};
use crate::policy::{Method, RoomView};
use crate::room::RoomType;
use crate::store::SearchQuery;
use crate::unread::Seq;
use crate::Result;

/// Characters of the pinned message copied into the "message pinned" system message.
pub const PIN_EXCERPT_CHARS: usize = 1_000;

/// Input of [`Service::search`].
#[derive(Clone, Debug)]
pub struct SearchInput {
    /// Words, all required (quoted: no search operators).
    pub text: String,
    /// Only this room (which the caller must be able to read); all the caller's rooms when `None`.
    pub rid: Option<RoomId>,
    pub limit: Option<usize>,
}

fn message_updated(m: &Message, fields: serde_json::Value) -> Effect {
    let mut data = json!({ "rid": m.rid, "id": m.id, "seq": m.seq, "updatedAt": m.updated_at });
    if let (serde_json::Value::Object(d), serde_json::Value::Object(f)) = (&mut data, fields) {
        d.extend(f);
    }
    publish_room(&m.rid, event("message.updated", data))
}

impl Service {
    /// `setReaction`: toggles the caller's `emoji` on a message (`should_react` forces on or off, as
    /// Rocket.Chat's `shouldReact`). Members only; in a read-only room only if reactions are allowed
    /// there. Publishes the message's new `reactions` when they changed.
    pub async fn set_reaction(
        &self,
        caller: &Caller,
        mid: &MessageId,
        emoji: &str,
        should_react: Option<bool>,
    ) -> Result<Outcome<Message>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (m, room, sub) = self.message_context(&actor, mid).await?;
        self.authorize(&actor, Method::React { message: &m }, Some(RoomView { room: &room, sub: sub.as_ref() }))
            .map_err(as_message_error)?;
        validate_emoji(emoji)?;
        let has = m.reactions.get(emoji).is_some_and(|users| users.contains(&actor.id));
        let on = should_react.unwrap_or(!has);
        if on == has {
            return Ok(Outcome::new(m, Vec::new()));
        }
        let updated = self.store.set_reaction(mid, emoji, &actor.id, on).await?;
        let effect = message_updated(&updated, json!({ "reactions": updated.reactions }));
        Ok(Outcome::new(updated, vec![effect]))
    }

    /// `pinMessage` / `unpinMessage` (`pin-message`; `Message_AllowPinning`). Pinning also posts a
    /// `message_pinned` system message quoting the pinned one, as Rocket.Chat does; unpinning does not.
    pub async fn set_pinned(&self, caller: &Caller, mid: &MessageId, on: bool) -> Result<Outcome<Message>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (m, room, sub) = self.message_context(&actor, mid).await?;
        self.authorize(&actor, Method::Pin { message: &m }, Some(RoomView { room: &room, sub: sub.as_ref() }))
            .map_err(as_message_error)?;
        if m.pinned == on {
            return Ok(Outcome::new(m, Vec::new()));
        }
        let updated = self.store.set_pinned(mid, &actor.id, on).await?;
        let mut effects = vec![message_updated(
            &updated,
            json!({ "pinned": updated.pinned, "pinnedAt": updated.pinned_at, "pinnedBy": updated.pinned_by }),
        )];
        if on {
            let excerpt: String = updated.msg.chars().take(PIN_EXCERPT_CHARS).collect();
            let mut note = NewMessage::text(room.id.clone(), user_ref(&user), "");
            note.t = Some(SystemType::MessagePinned);
            note.attachments = vec![json!({
                "messageId": updated.id, "text": excerpt, "authorName": updated.u.username, "ts": updated.ts,
            })];
            let pinned_note = self.store.insert_message(note).await?.value;
            effects.push(message_new(&pinned_note));
        }
        Ok(Outcome::new(updated, effects))
    }

    /// `getThreadMessages`: replies to thread root `tmid` with `seq > after`, ascending, for readers of
    /// the root's room.
    pub async fn thread_messages(
        &self,
        caller: &Caller,
        tmid: &MessageId,
        after: Option<Seq>,
        limit: Option<usize>,
    ) -> Result<Vec<Message>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (root, room, sub) = self.message_context(&actor, tmid).await?;
        self.authorize(&actor, Method::ReadRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))
            .map_err(as_message_error)?;
        self.store.thread_messages(&root.id, after.unwrap_or(0), limits::page(limit, MAX_HISTORY_PAGE)).await
    }

    /// `getPinnedMessages`: the room's pinned messages, newest pin first.
    pub async fn pinned_messages(&self, caller: &Caller, rid: &RoomId, limit: Option<usize>) -> Result<Vec<Message>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::ReadRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        self.store.pinned_messages(rid, limits::page(limit, MAX_HISTORY_PAGE)).await
    }

    /// `messageSearch`: messages containing every word, only from rooms the caller may read: the rooms
    /// they are in, or the one public channel named by `rid` when they may preview it. A private room
    /// the caller is not in is `NotFound`, exactly like an unknown room (§7.4).
    pub async fn search(&self, caller: &Caller, input: SearchInput) -> Result<Vec<Message>> {
        let (_, actor) = self.authenticate(caller).await?;
        limits::check_chars("text", &input.text, limits::MAX_SEARCH_QUERY_CHARS)?;
        let mut preview_room = None;
        if let Some(rid) = &input.rid {
            let (room, sub) = self.room_and_sub(&actor, rid).await?;
            self.authorize(&actor, Method::ReadRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
            if sub.is_none() && room.t == RoomType::Channel {
                preview_room = Some(rid.clone());
            }
        }
        let query = SearchQuery {
            reader: actor.id.clone(),
            preview_room,
            room: input.rid,
            text: input.text,
            limit: limits::page(input.limit, MAX_SEARCH_RESULTS),
        };
        self.store.search_messages(&query).await
    }
}
