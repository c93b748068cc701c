//! Authorization: who may call which §2.1 method on what (§3), as one pure function,
//! [`Policy::authorize`]. It reads the permission table, the settings, the caller's global roles, the
//! caller's subscription to the room (membership and room roles) and, for message methods, the stored
//! message (its `rid` decides, never the client's claim, §7.5).
//!
//! Invariant (§7.4): for a private group or DM, a caller without a subscription gets
//! [`ChatError::NotFound`] for every refusal, exactly as for a room that does not exist, so no answer
//! reveals that the room exists. (The stored message's room must also be passed for message methods:
//! a message of another room is `NotFound` too.) Admins may still delete, archive or edit such a room by id (their
//! global permissions), but never read it.

use serde::{Deserialize, Serialize};

use crate::ids::{Millis, UserId};
use crate::message::Message;
use crate::permissions::{Permission, PermissionTable};
use crate::roles::Role;
use crate::room::{check_owner_handover, Room, RoomType, Subscription};
use crate::settings::Settings;
use crate::user::User;
use crate::{ChatError, Result};

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: UserId,
    /// Global roles.
    pub roles: Vec<Role>,
}

impl Actor {
    /// The actor for an account; deactivated accounts act on nothing.
    pub fn from_user(user: &User) -> Result<Actor> {
        if !user.active {
            return Err(ChatError::Deactivated);
        }
        Ok(Actor { id: user.id.clone(), roles: user.roles.clone() })
    }
}

/// A room as seen by the caller: the room and the caller's own subscription, if any.
#[derive(Clone, Copy, Debug)]
pub struct RoomView<'a> {
    pub room: &'a Room,
    pub sub: Option<&'a Subscription>,
}

impl<'a> RoomView<'a> {
    fn member(&self) -> bool {
        self.sub.is_some()
    }

    fn room_roles(self) -> &'a [Role] {
        self.sub.map(|s| s.roles.as_slice()).unwrap_or(&[])
    }
}

/// A §2.1 method with the facts its rule needs. Methods without a room (`Create*`, admin methods)
/// ignore the room argument of [`Policy::authorize`].
#[derive(Clone, Copy, Debug)]
pub enum Method<'a> {
    // Account and global.
    /// Log in, resume, log out, `me.get`, set own status, presence, search (scoped by the store).
    SelfService,
    CreatePersonalToken,
    UserSearch,
    CreateChannel,
    CreateGroup,
    OpenDirect,
    Directory,
    ManageIncomingIntegrations,
    ManageOutgoingIntegrations,
    AdminCreateUser,
    AdminEditUser,
    AdminSetActive,
    AdminSetRoles,
    AdminIssueToken,
    AdminSetPermission,
    AdminLogoutUser,
    AdminListUsers,
    AdminViewSettings,
    AdminEditSettings,
    AdminViewCluster,
    // Room.
    /// `room.get`, `room.members`, `message.history`, `message.sync`, `thread.*` reads, `listPinned`.
    ReadRoom,
    JoinRoom,
    /// `owners`: owners of the room, the caller included.
    LeaveRoom {
        owners: u64,
    },
    AddMembers,
    /// `target`: the member to remove; `owners` as for leave.
    RemoveMember {
        target: &'a Subscription,
        owners: u64,
    },
    UpdateRoom,
    SetReadOnly,
    SetReactWhenReadOnly,
    /// Grant or revoke `owner`/`moderator` on `target`.
    SetRole {
        role: Role,
        add: bool,
        target: &'a Subscription,
        owners: u64,
    },
    Archive,
    Unarchive,
    DeleteRoom,
    /// `subscription.markRead`, `subscription.setPrefs`, `typing.set`, `thread.follow`.
    MemberSelf,
    /// `message.send`: `all`/`here` when the text uses `@all`/`@here`; `impersonate` with alias/avatar.
    Send {
        all: bool,
        here: bool,
        impersonate: bool,
    },
    // Message (the room argument must be the message's room).
    Edit {
        message: &'a Message,
        now: Millis,
    },
    Delete {
        message: &'a Message,
        now: Millis,
    },
    React {
        message: &'a Message,
    },
    Pin {
        message: &'a Message,
    },
}

/// The permission table and settings a decision reads.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    pub permissions: &'a PermissionTable,
    pub settings: &'a Settings,
}

impl Policy<'_> {
    /// `can(actor, permission, room)`: any of the actor's global roles, or of its room roles in `room`.
    pub fn can(&self, actor: &Actor, perm: Permission, room: Option<RoomView<'_>>) -> bool {
        let room_roles = room.map(|r| r.room_roles()).unwrap_or(&[]);
        self.permissions.grants(perm, &actor.roles, room_roles)
    }

    /// `canReadRoom`: a member, or a public channel and `preview-c-room`.
    pub fn can_read(&self, actor: &Actor, room: RoomView<'_>) -> bool {
        room.member() || (room.room.t == RoomType::Channel && self.can(actor, Permission::PreviewCRoom, Some(room)))
    }

    /// Decides one call. `room` is required for room and message methods.
    pub fn authorize(&self, actor: &Actor, method: Method<'_>, room: Option<RoomView<'_>>) -> Result<()> {
        let Some(view) = room else {
            return self.authorize_global(actor, method);
        };
        if let Some(sub) = view.sub {
            if sub.uid != actor.id || sub.rid != view.room.id {
                return Err(ChatError::invalid("subscription", "not the caller's subscription to this room"));
            }
        }
        // Every rule checks permission or membership before room state, so a non-member of a private
        // room who is refused is always refused with `NotAllowed`; only a caller who passed the
        // permission check (an admin acting by id) can see a state error such as `LastOwner`.
        match self.authorize_room(actor, method, view) {
            Err(ChatError::NotAllowed { .. }) if view.room.t.is_private() && !view.member() => {
                Err(ChatError::not_found("room"))
            }
            other => other,
        }
    }

    fn require(&self, actor: &Actor, perm: Permission, room: Option<RoomView<'_>>) -> Result<()> {
        if self.can(actor, perm, room) {
            Ok(())
        } else {
            Err(ChatError::not_allowed(perm.as_str()))
        }
    }

    fn authorize_global(&self, actor: &Actor, method: Method<'_>) -> Result<()> {
        let perm = match method {
            Method::SelfService => return Ok(()),
            Method::CreatePersonalToken => Permission::CreatePersonalAccessTokens,
            Method::UserSearch => Permission::ViewOutsideRoom,
            Method::CreateChannel => Permission::CreateC,
            Method::CreateGroup => Permission::CreateP,
            Method::OpenDirect => Permission::CreateD,
            Method::Directory => Permission::ViewCRoom,
            Method::ManageIncomingIntegrations => Permission::ManageIncomingIntegrations,
            Method::ManageOutgoingIntegrations => Permission::ManageOutgoingIntegrations,
            Method::AdminCreateUser => Permission::CreateUser,
            Method::AdminEditUser => Permission::EditOtherUserInfo,
            Method::AdminSetActive => Permission::EditOtherUserActiveStatus,
            Method::AdminSetRoles => Permission::AssignRoles,
            Method::AdminIssueToken => Permission::UserGenerateAccessToken,
            Method::AdminSetPermission => Permission::AccessPermissions,
            Method::AdminLogoutUser => Permission::LogoutOtherUser,
            Method::AdminListUsers => Permission::ViewUserAdministration,
            Method::AdminViewSettings => Permission::ViewPrivilegedSetting,
            Method::AdminEditSettings => Permission::EditPrivilegedSetting,
            Method::AdminViewCluster => Permission::ViewCluster,
            _ => return Err(ChatError::invalid("room", "this method needs a room")),
        };
        self.require(actor, perm, None)
    }

    fn authorize_room(&self, actor: &Actor, method: Method<'_>, v: RoomView<'_>) -> Result<()> {
        let room = v.room;
        let member = v.member();
        let writable = || if room.archived { Err(ChatError::RoomArchived) } else { Ok(()) };
        let reader = || if self.can_read(actor, v) { Ok(()) } else { Err(ChatError::not_allowed("not a reader")) };
        let need_member = || if member { Ok(()) } else { Err(ChatError::not_allowed("not a member")) };
        let not_direct = |why| if room.t == RoomType::Direct { Err(ChatError::not_allowed(why)) } else { Ok(()) };
        match method {
            Method::ReadRoom => reader(),
            Method::JoinRoom => {
                if member {
                    return Ok(());
                }
                if room.t != RoomType::Channel {
                    return Err(ChatError::not_allowed("only public channels can be joined"));
                }
                self.require(actor, Permission::ViewCRoom, Some(v))?;
                writable()
            }
            Method::LeaveRoom { owners } => {
                need_member()?;
                not_direct("a direct message is hidden, not left")?;
                let perm = if room.t == RoomType::Channel { Permission::LeaveC } else { Permission::LeaveP };
                self.require(actor, perm, Some(v))?;
                match v.sub {
                    Some(sub) => check_owner_handover(sub, owners),
                    None => Ok(()),
                }
            }
            Method::AddMembers => {
                not_direct("open a new direct message instead")?;
                let joined = member && self.can(actor, Permission::AddUserToJoinedRoom, Some(v));
                let any = room.t == RoomType::Channel && self.can(actor, Permission::AddUserToAnyCRoom, Some(v));
                if !(joined || any) {
                    return Err(ChatError::not_allowed(Permission::AddUserToJoinedRoom.as_str()));
                }
                writable()
            }
            Method::RemoveMember { target, owners } => {
                not_direct("members of a direct message cannot be removed")?;
                self.require(actor, Permission::RemoveUser, Some(v))?;
                if target.rid != room.id {
                    return Err(ChatError::invalid("uid", "not a member of this room"));
                }
                if target.uid == actor.id {
                    return Err(ChatError::invalid("uid", "use leave to remove yourself"));
                }
                check_owner_handover(target, owners)
            }
            Method::UpdateRoom => {
                self.require(actor, Permission::EditRoom, Some(v))?;
                writable()
            }
            Method::SetReadOnly => {
                self.require(actor, Permission::SetReadonly, Some(v))?;
                writable()
            }
            Method::SetReactWhenReadOnly => {
                self.require(actor, Permission::SetReactWhenReadonly, Some(v))?;
                writable()
            }
            Method::SetRole { role, add, target, owners } => {
                not_direct("direct messages have no room roles")?;
                let perm = match role {
                    Role::Owner => Permission::SetOwner,
                    Role::Moderator => Permission::SetModerator,
                    _ => return Err(ChatError::invalid("role", "only owner and moderator are room roles")),
                };
                self.require(actor, perm, Some(v))?;
                writable()?;
                if target.rid != room.id {
                    return Err(ChatError::invalid("uid", "room roles can only be given to members"));
                }
                if role == Role::Owner && !add {
                    check_owner_handover(target, owners)?;
                }
                Ok(())
            }
            Method::Archive => self.require(actor, Permission::ArchiveRoom, Some(v)),
            Method::Unarchive => self.require(actor, Permission::UnarchiveRoom, Some(v)),
            Method::DeleteRoom => {
                let perm = match room.t {
                    RoomType::Channel => Permission::DeleteC,
                    RoomType::Group => Permission::DeleteP,
                    RoomType::Direct => Permission::DeleteD,
                };
                self.require(actor, perm, Some(v))
            }
            Method::MemberSelf => need_member(),
            Method::Send { all, here, impersonate } => {
                need_member()?;
                writable()?;
                if room.read_only {
                    self.require(actor, Permission::PostReadonly, Some(v)).map_err(|_| ChatError::ReadOnly)?;
                }
                if all {
                    self.require(actor, Permission::MentionAll, Some(v))?;
                }
                if here {
                    self.require(actor, Permission::MentionHere, Some(v))?;
                }
                if impersonate {
                    self.require(actor, Permission::MessageImpersonate, Some(v))?;
                }
                Ok(())
            }
            Method::Edit { message, now } => {
                self.same_room(message, room)?;
                reader()?;
                writable()?;
                message.ensure_live()?;
                if message.t.is_some() {
                    return Err(ChatError::not_allowed("system messages cannot be edited"));
                }
                let own = message.u.id == actor.id;
                let by_permission = self.can(actor, Permission::EditMessage, Some(v));
                if !(by_permission || (own && member && self.settings.message_allow_editing)) {
                    return Err(ChatError::not_allowed(Permission::EditMessage.as_str()));
                }
                self.window(actor, v, "edit", self.settings.message_block_edit_in_minutes, message.ts, now)
            }
            Method::Delete { message, now } => {
                self.same_room(message, room)?;
                reader()?;
                if self.can(actor, Permission::ForceDeleteMessage, Some(v)) {
                    return Ok(());
                }
                let own = message.u.id == actor.id && member;
                let allowed = self.can(actor, Permission::DeleteMessage, Some(v))
                    || (own && self.can(actor, Permission::DeleteOwnMessage, Some(v)));
                if !allowed {
                    return Err(ChatError::not_allowed(Permission::DeleteMessage.as_str()));
                }
                if !self.settings.message_allow_deleting {
                    return Err(ChatError::not_allowed("Message_AllowDeleting"));
                }
                self.window(actor, v, "delete", self.settings.message_block_delete_in_minutes, message.ts, now)
            }
            Method::React { message } => {
                self.same_room(message, room)?;
                need_member()?;
                writable()?;
                message.ensure_live()?;
                if room.read_only && !room.react_when_read_only {
                    self.require(actor, Permission::PostReadonly, Some(v)).map_err(|_| ChatError::ReadOnly)?;
                }
                Ok(())
            }
            Method::Pin { message } => {
                self.same_room(message, room)?;
                reader()?;
                writable()?;
                message.ensure_live()?;
                if !self.settings.message_allow_pinning {
                    return Err(ChatError::not_allowed("Message_AllowPinning"));
                }
                self.require(actor, Permission::PinMessage, Some(v))
            }
            _ => self.authorize_global(actor, method),
        }
    }

    fn same_room(&self, message: &Message, room: &Room) -> Result<()> {
        if message.rid != room.id {
            return Err(ChatError::not_found("message"));
        }
        Ok(())
    }

    fn window(
        &self,
        actor: &Actor,
        v: RoomView<'_>,
        action: &'static str,
        minutes: u32,
        ts: Millis,
        now: Millis,
    ) -> Result<()> {
        if minutes == 0 || self.can(actor, Permission::BypassTimeLimitEditAndDelete, Some(v)) {
            return Ok(());
        }
        if now.saturating_sub(ts) > i64::from(minutes) * 60_000 {
            return Err(ChatError::WindowPassed { action, minutes });
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
