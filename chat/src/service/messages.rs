//! Message features beyond send/edit/delete (§2.1): reactions, pins, thread replies, the pinned list and
//! full-text search. Each write is authorized by the stored message's room (never the client's claim,
//! §7.5), stored, and then published as `message.updated` on `room/<rid>` with only the changed fields
//! (§2.3). Reads follow the reader rule: members, or a public channel with `preview-c-room`; for a
//! private room a non-member gets the same `NotFound` as for an unknown id (§7.4). Also here: the
//! notifications a new message causes, honouring each member's per-room preferences, and the calls that
//! change those preferences.

use std::collections::BTreeMap;

use serde_json::json;

use super::{
    as_message_error, event, message_new, publish_room, publish_user, refusal, subscription_changed, user_ref, Caller,
    Effect, Outcome, Service,
};
use crate::ids::{MessageId, RoomId, UserId};
use crate::limits::{self, MAX_DM_USERS, MAX_HISTORY_PAGE, MAX_LIST_PAGE, MAX_SEARCH_RESULTS};
use crate::message::{validate_emoji, Message, NewMessage, SystemType};
use crate::policy::{Method, RoomView};
use crate::room::{NotifyCause, NotifyLevel, Room, RoomType, Subscription, SubscriptionPrefs};
use crate::store::{MemberState, SearchQuery};
use crate::unread::Seq;
use crate::Result;

/// Thread participants (besides the thread's author) a reply notifies at most.
pub const MAX_THREAD_NOTIFIED: usize = 50;

/// Characters of the message text a `notification` carries.
pub const NOTIFICATION_EXCERPT_CHARS: usize = 200;

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

    /// `getThreadsList`: the room's thread roots, latest reply first; `before_tlm` pages to older ones.
    pub async fn thread_roots(
        &self,
        caller: &Caller,
        rid: &RoomId,
        before_tlm: Option<crate::ids::Millis>,
        limit: Option<usize>,
    ) -> Result<Vec<Message>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::ReadRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        self.store.thread_roots(rid, before_tlm, limits::page(limit, MAX_HISTORY_PAGE)).await
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
        self.take_search_token(&actor)?;
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

    // ------------------------------------------------------------ notifications and preferences

    /// What a new message causes for members besides `message.new`: a `notification` on `user/<uid>`
    /// for each member who wants one (§2.3), and hidden DMs shown again.
    ///
    /// Who is considered, and why (the strongest reason counts): every DM participant (`dm`); each
    /// mentioned member (`mention`; a mention of a non-member notifies nobody, §7.4); for a thread reply,
    /// the thread's author and up to [`MAX_THREAD_NOTIFIED`] earlier repliers (`thread`); every member on
    /// `@all`/`@here` (`all`); members whose level is `all` (`message`). The last two are room-wide, so
    /// they happen only in rooms of at most `Notifications_Max_Room_Members` members (RC default 100; 0
    /// means up to [`MAX_LIST_PAGE`]), as RC stops "all messages" notifications above it: larger rooms
    /// notify mentions only. Each candidate's own preferences then decide
    /// ([`Subscription::wants_notification`]). The sender is never notified.
    ///
    /// Cost per message: nothing extra in a DM (its member list is read anyway); one indexed read of the
    /// room's `all`-level members in a small room; one read per mention (≤ 50); for a reply, the root and
    /// one read per participant (≤ 51).
    pub(super) async fn member_effects(&self, room: &Room, m: &Message) -> Result<Vec<Effect>> {
        let cap = match self.settings().notifications_max_room_members {
            0 => MAX_LIST_PAGE,
            n => n.min(MAX_LIST_PAGE),
        };
        let small = room.users_count <= cap as u64;
        let mut effects = Vec::new();
        let mut candidates: BTreeMap<UserId, (NotifyCause, Subscription)> = BTreeMap::new();
        let mut consider = |cause: NotifyCause, sub: Subscription| {
            if sub.uid == m.u.id {
                return;
            }
            match candidates.get(&sub.uid) {
                Some((had, _)) if *had >= cause => {}
                _ => {
                    candidates.insert(sub.uid.clone(), (cause, sub));
                }
            }
        };
        if room.t == RoomType::Direct {
            for mut sub in self.store.list_members(&room.id, None, MAX_DM_USERS * 4).await? {
                if !sub.open {
                    // A hidden DM comes back to its member's sidebar when someone writes (RC does the same).
                    let shown = SubscriptionPrefs { open: Some(true), ..SubscriptionPrefs::default() };
                    sub = self.store.set_subscription_prefs(&room.id, &sub.uid, shown).await?;
                    effects.push(subscription_changed(&sub.uid, "updated", &room.id, json!({ "subscription": sub })));
                }
                consider(NotifyCause::Direct, sub);
            }
        } else if m.group_mention && small {
            for sub in self.store.list_members(&room.id, None, cap).await? {
                consider(NotifyCause::GroupMention, sub);
            }
        } else if small {
            for sub in self.store.members_with_notify(&room.id, NotifyLevel::All, cap).await? {
                consider(NotifyCause::Message, sub);
            }
        }
        if let Some(tmid) = &m.tmid {
            // The thread's author and the earlier repliers (the root lists them; bounded so a huge thread
            // costs a bounded number of reads per reply).
            if let Some(root) = self.store.get_message(tmid).await? {
                let mut people = vec![root.u.id.clone()];
                people.extend(root.replies.iter().take(MAX_THREAD_NOTIFIED).cloned());
                for uid in people {
                    if uid == m.u.id {
                        continue;
                    }
                    if let Some(sub) = self.store.get_subscription(&room.id, &uid).await? {
                        consider(NotifyCause::Thread, sub);
                    }
                }
            }
        }
        for mention in &m.mentions {
            if mention.id == m.u.id {
                continue;
            }
            if let Some(sub) = self.store.get_subscription(&room.id, &mention.id).await? {
                consider(NotifyCause::Mention, sub);
            }
        }
        let excerpt: String = m.msg.chars().take(NOTIFICATION_EXCERPT_CHARS).collect();
        for (uid, (cause, sub)) in candidates {
            if !sub.wants_notification(cause) {
                continue;
            }
            let data = json!({
                "kind": cause.as_str(), "rid": m.rid, "messageId": m.id, "seq": m.seq,
                "sender": { "_id": m.u.id, "username": m.u.username }, "text": excerpt,
            });
            effects.push(publish_user(&uid, event("notification", data)));
        }
        Ok(effects)
    }

    /// `saveNotificationSettings`, `hideRoom` (`open = false`), `openRoom`, `toggleFavorite`: the caller
    /// changes their own subscription; their devices hear of it with `subscription.changed`.
    pub async fn save_subscription_prefs(
        &self,
        caller: &Caller,
        rid: &RoomId,
        prefs: SubscriptionPrefs,
    ) -> Result<Outcome<MemberState>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::MemberSelf, Some(RoomView { room: &room, sub: sub.as_ref() }))
            .map_err(|e| refusal(&room, sub.as_ref(), e))?;
        let subscription = self.store.set_subscription_prefs(rid, &actor.id, prefs).await?;
        let changed = sub.as_ref() != Some(&subscription);
        let state = MemberState { subscription, counters: room.counters };
        let effects = if changed {
            vec![subscription_changed(
                &actor.id,
                "updated",
                rid,
                json!({ "subscription": state.subscription, "unread": state.unread() }),
            )]
        } else {
            Vec::new()
        };
        Ok(Outcome::new(state, effects))
    }
}
