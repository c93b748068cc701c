//! Presence and typing operations (§0.9, §2.3, §4.2, §4.6). The aggregation itself is
//! [`crate::presence`], run by each frontend; the service checks who may do what and keeps the one
//! persisted piece, the user's manual status.

use serde_json::json;

use super::{event, publish_room, refusal, Caller, Outcome, Service};
use crate::ids::{now_ms, UserId};
use crate::limits::MAX_LIST_PAGE;
use crate::presence::{Manual, Status};
use crate::roles::Role;
use crate::user::User;
use crate::{ChatError, Result};

/// Prefix of a user's presence channel: `presence/<uid>`.
pub const PRESENCE_CHANNEL_PREFIX: &str = "presence/";

/// `presence/<uid>`.
#[must_use]
pub fn presence_channel(uid: &UserId) -> String {
    format!("{PRESENCE_CHANNEL_PREFIX}{uid}")
}

impl Service {
    /// `typing {rid, typing}`: members only (a non-member of a private room gets "room not found", of a
    /// public channel "not allowed"); published on `room/<rid>`, never stored. Rate bounds are the
    /// transport's (per socket or user).
    pub async fn typing(&self, caller: &Caller, rid: &crate::ids::RoomId, active: bool) -> Result<Outcome<()>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        if sub.is_none() {
            return Err(refusal(&room, None, ChatError::NotAllowed { reason: "only members type in a room" }));
        }
        if room.archived {
            return Err(ChatError::RoomArchived);
        }
        let data = json!({ "rid": rid, "uid": user.id, "username": user.username, "typing": active });
        Ok(Outcome::new((), vec![publish_room(rid, event("typing", data))]))
    }

    /// `setUserStatus {status, message}`: stores the manual status (`online` = automatic again).
    pub async fn set_status(&self, caller: &Caller, status: Status, text: Option<String>) -> Result<(User, Manual)> {
        let (user, _) = self.authenticate(caller).await?;
        let manual = Manual { status, text: text.unwrap_or_default(), at: now_ms() };
        manual.validate()?;
        self.store.set_user_status(&user.id, &manual).await?;
        Ok((user, manual))
    }

    /// The manual status stored for a user (read at login so every frontend learns it).
    pub async fn stored_status(&self, uid: &UserId) -> Result<Option<Manual>> {
        self.store.user_status(uid).await
    }

    /// May `caller` watch `uid`'s presence? Any user with a live session, except guests, who see only
    /// users they share a room with (§4.2 †). Unknown users are "not found".
    pub async fn check_presence(&self, caller: &Caller, uid: &UserId) -> Result<()> {
        let (me, _) = self.authenticate(caller).await?;
        if me.id == *uid {
            return Ok(());
        }
        let target = self.store.get_user(uid).await?.ok_or(ChatError::NotFound { what: "user" })?;
        if !me.roles.contains(&Role::Guest) || me.roles.contains(&Role::User) || me.roles.contains(&Role::Admin) {
            return Ok(());
        }
        let mine = self.store.subscriptions_for_user(&me.id, None).await?.update;
        for s in mine.iter().take(MAX_LIST_PAGE) {
            if self.store.get_subscription(&s.subscription.rid, &target.id).await?.is_some() {
                return Ok(());
            }
        }
        Err(ChatError::NotFound { what: "user" })
    }
}
