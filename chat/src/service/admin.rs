//! Administration (§2.1 admin rows, §1.2 tokens, §1.7 permissions, §1.10 settings, §7.3 revocation):
//! room settings, archive, delete and room roles; user activation, roles and the user list; personal
//! access tokens; logging another user out; the permission table and the settings.
//!
//! Same rules as the rest of the service: authenticate, authorize with the policy (so a non-member of
//! a private room is told "no such room" for every refusal, §7.4), write, then return the effects.
//! Revocations (deactivation, admin logout, a removed token) close the affected sockets on every
//! frontend through [`Effect::CloseSessions`]; a room deletion kicks every former member's live
//! subscription through [`Effect::Kick`]; permission and settings edits reach the other frontends'
//! caches through [`Effect::ReloadPolicy`].

use serde::Serialize;
use serde_json::{json, Value};

use super::{event, publish_room, publish_user, refusal, subscription_changed, Caller, Effect, Outcome, Service};
use crate::auth;
use crate::ids::{validate_id, Millis, SessionId, UserId};
use crate::limits::{check_chars, MAX_LIST_PAGE};
use crate::message::SystemType;
use crate::permissions::{Permission, PermissionTable};
use crate::policy::{Method, Policy, RoomView};
use crate::roles::{validate_global_roles, Role};
use crate::room::{Room, RoomPatch, RoomType, Subscription};
use crate::settings::{Settings, PUBLIC};
use crate::store::{NewSession, Session, SessionKind};
use crate::user::{User, UserKind};
use crate::{ChatError, Result};

/// Personal access tokens one user may hold: each is a bearer credential to audit, so keep the list short.
pub const MAX_PERSONAL_TOKENS: usize = 50;
/// Characters in a token's name.
pub const MAX_TOKEN_NAME_CHARS: usize = 64;

/// `saveRoomSettings`: fields to change; `None` leaves one as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomSettings {
    /// New slug (channels and groups; unique).
    pub name: Option<String>,
    /// Display name.
    pub fname: Option<String>,
    pub topic: Option<String>,
    pub description: Option<String>,
    pub announcement: Option<String>,
    /// Needs `set-readonly`.
    pub read_only: Option<bool>,
    /// Needs `set-react-when-readonly`.
    pub react_when_read_only: Option<bool>,
}

impl RoomSettings {
    fn descriptive(&self) -> bool {
        self.name.is_some()
            || self.fname.is_some()
            || self.topic.is_some()
            || self.description.is_some()
            || self.announcement.is_some()
    }
}

/// A personal access token as its owner (or an admin) sees it: never the secret, never its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalToken {
    pub id: SessionId,
    pub name: String,
    pub last_four: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
}

impl PersonalToken {
    fn of(s: &Session) -> PersonalToken {
        PersonalToken {
            id: s.id.clone(),
            name: s.name.clone().unwrap_or_default(),
            last_four: s.last_four.clone(),
            created_at: s.created_at,
            last_used_at: s.last_used_at,
        }
    }
}

/// A token just created: `secret` is shown this once and never stored.
#[derive(Clone, Debug)]
pub struct IssuedPersonalToken {
    pub token: PersonalToken,
    pub user_id: UserId,
    pub secret: String,
}

fn revoked(uid: &UserId, sessions: Vec<SessionId>) -> Vec<Effect> {
    if sessions.is_empty() {
        return Vec::new();
    }
    vec![
        publish_user(uid, event("session.revoked", json!({ "sessions": sessions }))),
        Effect::CloseSessions { uid: uid.clone(), sessions },
    ]
}

fn room_updated(room: &Room) -> Effect {
    publish_room(&room.id, event("room.updated", json!({ "rid": room.id, "room": room })))
}

impl Service {
    /// Re-reads the permission table and the settings from the store: another frontend changed them.
    pub async fn reload_policy(&self) -> Result<()> {
        let permissions = PermissionTable::with_overrides(self.store.permission_overrides().await?)?;
        let settings = Settings::from_pairs(self.store.settings().await?)?;
        *self.permissions.write().unwrap_or_else(std::sync::PoisonError::into_inner) = permissions;
        *self.settings.write().unwrap_or_else(std::sync::PoisonError::into_inner) = settings;
        Ok(())
    }

    fn policy_can(&self, actor: &crate::policy::Actor, perm: Permission, room: Option<RoomView<'_>>) -> bool {
        let permissions = self.permissions();
        let settings = self.settings();
        Policy { permissions: &permissions, settings: &settings }.can(actor, perm, room)
    }

    // ---------------------------------------------------------------- rooms

    /// `saveRoomSettings`: name and descriptive fields need `edit-room`, read-only `set-readonly`,
    /// reactions in read-only rooms `set-react-when-readonly`; every needed permission is checked before
    /// anything is written. A rename and a topic change leave a system message.
    pub async fn save_room_settings(
        &self,
        caller: &Caller,
        rid: &crate::ids::RoomId,
        change: RoomSettings,
    ) -> Result<Outcome<Room>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        let view = Some(RoomView { room: &room, sub: sub.as_ref() });
        if change == RoomSettings::default() {
            // Say "nothing to change" only to someone who may see the room.
            self.authorize(&actor, Method::ReadRoom, view)?;
            return Err(ChatError::Invalid { field: "settings", reason: "nothing to change" });
        }
        if change.descriptive() {
            self.authorize(&actor, Method::UpdateRoom, view)?;
        }
        if change.read_only.is_some() {
            self.authorize(&actor, Method::SetReadOnly, view)?;
        }
        if change.react_when_read_only.is_some() {
            self.authorize(&actor, Method::SetReactWhenReadOnly, view)?;
        }
        if change.name.is_some() && room.t == RoomType::Direct {
            return Err(ChatError::Invalid { field: "name", reason: "a direct message has no name" });
        }
        let renamed = change.name.as_ref().filter(|n| room.name.as_deref() != Some(n.as_str())).cloned();
        let topic = change.topic.as_ref().filter(|t| **t != room.topic).cloned();
        let patch = RoomPatch {
            name: change.name,
            fname: change.fname,
            topic: change.topic,
            description: change.description,
            announcement: change.announcement,
            read_only: change.read_only,
            react_when_read_only: change.react_when_read_only,
            default: None,
        };
        patch.validate()?;
        let updated = self.store.update_room(rid, patch).await?;
        let mut effects = vec![room_updated(&updated)];
        if let Some(name) = renamed {
            effects.push(self.system_message(&updated, &user, SystemType::RoomRenamed, &name).await?);
        }
        if let Some(topic) = topic {
            effects.push(self.system_message(&updated, &user, SystemType::TopicChanged, &topic).await?);
        }
        Ok(Outcome::new(updated, effects))
    }

    /// `archiveRoom` / `unarchiveRoom`: an archived room stays readable and takes no new messages.
    /// Asking for the state the room is already in changes nothing and publishes nothing.
    pub async fn set_archived(
        &self,
        caller: &Caller,
        rid: &crate::ids::RoomId,
        archived: bool,
    ) -> Result<Outcome<Room>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        let method = if archived { Method::Archive } else { Method::Unarchive };
        self.authorize(&actor, method, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        if room.archived == archived {
            return Ok(Outcome::new(room, Vec::new()));
        }
        let updated = self.store.set_archived(rid, archived).await?;
        let t = if archived { SystemType::RoomArchived } else { SystemType::RoomUnarchived };
        let effects = vec![room_updated(&updated), self.system_message(&updated, &user, t, &user.username).await?];
        Ok(Outcome::new(updated, effects))
    }

    /// `eraseRoom`: removes the room, its subscriptions and messages (`delete-c`, `delete-p`: admin or
    /// the room's owner; `delete-d`: admin). Publishes `room.deleted` on the room's channel, tells each
    /// former member on `user/<uid>`, and cuts each one's live subscription on every frontend.
    pub async fn erase_room(&self, caller: &Caller, rid: &crate::ids::RoomId) -> Result<Outcome<Vec<UserId>>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::DeleteRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        let members = self.store.delete_room(rid).await?;
        let mut effects = vec![publish_room(rid, event("room.deleted", json!({ "rid": rid })))];
        for uid in &members {
            effects.push(subscription_changed(uid, "removed", rid, json!({ "reason": "room-deleted" })));
            effects.push(Effect::Kick { rid: rid.clone(), uid: uid.clone() });
        }
        Ok(Outcome::new(members, effects))
    }

    /// `addRoomOwner` and friends: grant or revoke `owner`/`moderator` on a member. The last owner
    /// keeps the role until someone else holds it. Granting a role the member holds changes nothing.
    pub async fn set_room_role(
        &self,
        caller: &Caller,
        rid: &crate::ids::RoomId,
        target: &UserId,
        role: Role,
        add: bool,
    ) -> Result<Outcome<Subscription>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        let view = RoomView { room: &room, sub: sub.as_ref() };
        let perm = match role {
            Role::Owner => Permission::SetOwner,
            Role::Moderator => Permission::SetModerator,
            _ => return Err(ChatError::Invalid { field: "role", reason: "only owner and moderator are room roles" }),
        };
        let target_sub = match validate_id("userId", target.as_str()) {
            Ok(()) => self.store.get_subscription(rid, target).await?,
            Err(_) => None,
        };
        let Some(target_sub) = target_sub else {
            // Say "not a member" only to someone who could have changed a member's role.
            if !self.policy_can(&actor, perm, Some(view)) {
                return Err(refusal(&room, sub.as_ref(), ChatError::NotAllowed { reason: perm.as_str() }));
            }
            return Err(ChatError::NotFound { what: "member" });
        };
        let owners = self.store.count_owners(rid).await?;
        self.authorize(&actor, Method::SetRole { role, add, target: &target_sub, owners }, Some(view))?;
        if target_sub.roles.contains(&role) == add {
            return Ok(Outcome::new(target_sub, Vec::new()));
        }
        let updated = self.store.set_member_role(rid, target, role, add).await?;
        let t = if add { SystemType::RoleAdded } else { SystemType::RoleRemoved };
        let text = format!("{} {}", updated.username, role.as_str());
        let effects = vec![
            subscription_changed(target, "updated", rid, json!({ "subscription": updated })),
            self.system_message(&room, &user, t, &text).await?,
        ];
        Ok(Outcome::new(updated, effects))
    }

    // ---------------------------------------------------------------- users

    async fn target_user(&self, uid: &UserId) -> Result<User> {
        validate_id("userId", uid.as_str()).map_err(|_| ChatError::NotFound { what: "user" })?;
        self.store.get_user(uid).await?.ok_or(ChatError::NotFound { what: "user" })
    }

    /// `setUserActiveStatus` (`edit-other-user-active-status`). Deactivation revokes every session and
    /// personal access token of the user and closes their sockets on every frontend; an admin cannot
    /// deactivate themselves (so the admins cannot all lock themselves out).
    pub async fn set_user_active(&self, caller: &Caller, uid: &UserId, active: bool) -> Result<Outcome<User>> {
        let (_, actor) = self.authenticate(caller).await?;
        self.authorize(&actor, Method::AdminSetActive, None)?;
        self.target_user(uid).await?;
        if !active && *uid == actor.id {
            return Err(ChatError::Invalid { field: "userId", reason: "you cannot deactivate yourself" });
        }
        let sessions = self.store.set_user_active(uid, active).await?;
        let user = self.target_user(uid).await?;
        Ok(Outcome::new(user, revoked(uid, sessions)))
    }

    /// `setUserRoles` (`assign-roles`): replaces the global roles. A bot account keeps `bot` and only a
    /// bot account has it; an admin cannot drop their own `admin`.
    pub async fn set_user_roles(&self, caller: &Caller, uid: &UserId, roles: Vec<Role>) -> Result<Outcome<User>> {
        let (_, actor) = self.authenticate(caller).await?;
        self.authorize(&actor, Method::AdminSetRoles, None)?;
        let target = self.target_user(uid).await?;
        validate_global_roles(&roles)?;
        if (target.kind == UserKind::Bot) != roles.contains(&Role::Bot) {
            return Err(ChatError::Invalid {
                field: "roles",
                reason: "bot is the role of bot accounts, and only theirs",
            });
        }
        if *uid == actor.id && actor.roles.contains(&Role::Admin) && !roles.contains(&Role::Admin) {
            return Err(ChatError::Invalid { field: "roles", reason: "you cannot remove your own admin role" });
        }
        let user = self.store.set_user_roles(uid, roles).await?;
        let effects = vec![publish_user(uid, event("user.updated", json!({ "uid": uid, "roles": user.roles })))];
        Ok(Outcome::new(user, effects))
    }

    /// `getUsers` (`view-user-administration`): every account, deactivated ones included, by username.
    pub async fn list_users(&self, caller: &Caller, after: Option<&str>, limit: Option<usize>) -> Result<Vec<User>> {
        let (_, actor) = self.authenticate(caller).await?;
        self.authorize(&actor, Method::AdminListUsers, None)?;
        self.store.list_users(after, crate::limits::page(limit, MAX_LIST_PAGE)).await
    }

    /// `getClusterStatus` (`view-cluster`): may the caller see the cluster? The frontend asks its state
    /// server only after this says yes (the cluster is not in the store).
    pub async fn authorize_view_cluster(&self, caller: &Caller) -> Result<()> {
        let (_, actor) = self.authenticate(caller).await?;
        self.authorize(&actor, Method::AdminViewCluster, None)
    }

    /// `logoutUser` (`logout-other-user`): revokes every session and personal access token of `uid` and
    /// closes their sockets on every frontend.
    pub async fn logout_user(&self, caller: &Caller, uid: &UserId) -> Result<Outcome<Vec<SessionId>>> {
        let (_, actor) = self.authenticate(caller).await?;
        self.authorize(&actor, Method::AdminLogoutUser, None)?;
        self.target_user(uid).await?;
        let sessions = self.store.revoke_user_sessions(uid, None).await?;
        Ok(Outcome::new(sessions.clone(), revoked(uid, sessions)))
    }

    // ---------------------------------------------------------------- personal access tokens

    /// Whose tokens a call is about: the caller's own, or (with `user-generate-access-token`) another
    /// user's.
    async fn token_owner(&self, caller: &Caller, for_user: Option<&UserId>, own: Method<'_>) -> Result<UserId> {
        let (_, actor) = self.authenticate(caller).await?;
        match for_user {
            Some(uid) if *uid != actor.id => {
                self.authorize(&actor, Method::AdminIssueToken, None)?;
                Ok(self.target_user(uid).await?.id)
            }
            _ => {
                self.authorize(&actor, own, None)?;
                Ok(actor.id)
            }
        }
    }

    /// `generatePersonalAccessToken`: a named bearer token that never expires until removed. Own tokens
    /// need `create-personal-access-tokens`; issuing one for another user (a bot) needs
    /// `user-generate-access-token`. The secret is returned once.
    pub async fn create_personal_token(
        &self,
        caller: &Caller,
        name: &str,
        for_user: Option<&UserId>,
    ) -> Result<IssuedPersonalToken> {
        let owner = self.token_owner(caller, for_user, Method::CreatePersonalToken).await?;
        let name = name.trim();
        if name.is_empty() {
            return Err(ChatError::Invalid { field: "tokenName", reason: "must not be empty" });
        }
        check_chars("tokenName", name, MAX_TOKEN_NAME_CHARS)?;
        let existing = self.store.list_sessions(&owner, Some(SessionKind::Pat)).await?;
        if existing.iter().any(|s| s.name.as_deref() == Some(name)) {
            return Err(ChatError::Conflict { what: "token name" });
        }
        if existing.len() >= MAX_PERSONAL_TOKENS {
            return Err(ChatError::TooLong { field: "tokens", limit: MAX_PERSONAL_TOKENS, got: existing.len() + 1 });
        }
        let token = auth::issue_token();
        let session = self
            .store
            .create_session(NewSession {
                user_id: owner.clone(),
                kind: SessionKind::Pat,
                token_hash: token.hash.clone(),
                name: Some(name.to_owned()),
                last_four: token.last_four.clone(),
                expires_at: None,
                client: None,
            })
            .await?;
        Ok(IssuedPersonalToken { token: PersonalToken::of(&session), user_id: owner, secret: token.secret })
    }

    /// `getPersonalAccessTokens`: anyone may list (and remove) their own tokens, whatever their
    /// permissions: giving up a credential is never refused. Other users' need `user-generate-access-token`.
    pub async fn personal_tokens(&self, caller: &Caller, for_user: Option<&UserId>) -> Result<Vec<PersonalToken>> {
        let owner = self.token_owner(caller, for_user, Method::SelfService).await?;
        let sessions = self.store.list_sessions(&owner, Some(SessionKind::Pat)).await?;
        Ok(sessions.iter().map(PersonalToken::of).collect())
    }

    /// `removePersonalAccessToken` by name: the token stops working at once and sockets authenticated
    /// with it close on every frontend.
    pub async fn remove_personal_token(
        &self,
        caller: &Caller,
        name: &str,
        for_user: Option<&UserId>,
    ) -> Result<Outcome<SessionId>> {
        let owner = self.token_owner(caller, for_user, Method::SelfService).await?;
        let sessions = self.store.list_sessions(&owner, Some(SessionKind::Pat)).await?;
        let found = sessions.into_iter().find(|s| s.name.as_deref() == Some(name.trim()));
        let Some(session) = found else { return Err(ChatError::NotFound { what: "token" }) };
        self.store.revoke_session(&session.id).await?;
        Ok(Outcome::new(session.id.clone(), revoked(&owner, vec![session.id])))
    }

    // ---------------------------------------------------------------- permissions and settings

    /// `permissions.get`: every permission with the roles holding it. Any authenticated user may read
    /// the table (clients hide what the user cannot do; the server still checks every call).
    pub async fn permissions_list(&self, caller: &Caller) -> Result<Vec<(Permission, Vec<Role>)>> {
        self.authenticate(caller).await?;
        let table = self.permissions();
        Ok(Permission::ALL.iter().map(|p| (*p, table.roles(*p).collect())).collect())
    }

    /// `permissions.update` (`access-permissions`): replaces the roles of each listed permission. The
    /// whole change is validated before anything is stored (`access-permissions` keeps `admin`).
    pub async fn update_permissions(
        &self,
        caller: &Caller,
        changes: Vec<(Permission, Vec<Role>)>,
    ) -> Result<Outcome<Vec<(Permission, Vec<Role>)>>> {
        let (_, actor) = self.authenticate(caller).await?;
        self.authorize(&actor, Method::AdminSetPermission, None)?;
        if changes.is_empty() {
            return Err(ChatError::Invalid { field: "permissions", reason: "nothing to change" });
        }
        if changes.len() > Permission::ALL.len() {
            return Err(ChatError::TooLong { field: "permissions", limit: Permission::ALL.len(), got: changes.len() });
        }
        let mut next = self.permissions();
        for (perm, roles) in &changes {
            next.set(*perm, roles.clone())?;
        }
        for (perm, roles) in &changes {
            self.store.set_permission(*perm, roles.clone()).await?;
        }
        *self.permissions.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next.clone();
        let value = changes.iter().map(|(p, _)| (*p, next.roles(*p).collect())).collect();
        Ok(Outcome::new(value, vec![Effect::ReloadPolicy]))
    }

    /// `settings.get`: every setting for holders of `view-privileged-setting`, the public ones
    /// ([`PUBLIC`]) for everyone else.
    pub async fn settings_list(&self, caller: &Caller) -> Result<Vec<(String, Value)>> {
        let (_, actor) = self.authenticate(caller).await?;
        let all = self.policy_can(&actor, Permission::ViewPrivilegedSetting, None);
        Ok(self.settings().pairs().into_iter().filter(|(k, _)| all || PUBLIC.contains(&k.as_str())).collect())
    }

    /// `settings.set` (`edit-privileged-setting`): one setting by its Rocket.Chat name, type-checked and
    /// validated with the others before it is stored.
    pub async fn set_setting(&self, caller: &Caller, key: &str, value: Value) -> Result<Outcome<()>> {
        let (_, actor) = self.authenticate(caller).await?;
        self.authorize(&actor, Method::AdminEditSettings, None)?;
        self.set_setting_as_operator(key, value).await?;
        Ok(Outcome::new((), vec![Effect::ReloadPolicy]))
    }
}
