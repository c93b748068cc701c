//! The §3 permission matrix as data. A permission is granted when any role in
//! *user.roles ∪ subscription.roles(room)* is listed on it (Rocket.Chat's rule, §1.7). The table starts
//! from the §3 defaults and an admin edits it (`admin.permission.set`); the store persists overrides.
//!
//! Invariant kept by [`PermissionTable::set`]: `access-permissions` always keeps `admin`, so an edit can
//! never lock every admin out of the table itself.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::roles::Role;
use crate::{ChatError, Result};

macro_rules! permissions {
    ($( $(#[$m:meta])* $variant:ident = $id:literal => [$($role:ident),*] ),* $(,)?) => {
        /// A permission id of §3 (Rocket.Chat's names).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Permission {
            $( $(#[$m])* $variant, )*
        }

        impl Permission {
            /// Every permission the MVP knows.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),*];

            /// The permission id as stored and sent (`create-c`, …).
            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $id,)* }
            }

            /// Parses a permission id.
            pub fn parse(s: &str) -> Option<Permission> {
                match s { $($id => Some(Permission::$variant),)* _ => None }
            }

            /// Roles holding the permission by default (§3).
            pub fn default_roles(self) -> &'static [Role] {
                match self { $(Permission::$variant => &[$(Role::$role),*],)* }
            }
        }
    };
}

permissions! {
    CreatePersonalAccessTokens = "create-personal-access-tokens" => [Admin, User],
    UserGenerateAccessToken = "user-generate-access-token" => [Admin],
    ViewOutsideRoom = "view-outside-room" => [Admin, Owner, Moderator, User],
    CreateC = "create-c" => [Admin, User, Bot],
    CreateP = "create-p" => [Admin, User, Bot],
    CreateD = "create-d" => [Admin, User, Bot],
    ViewCRoom = "view-c-room" => [Admin, User, Bot],
    /// Answer DMs others opened (guests have it, without `create-d`).
    ViewDRoom = "view-d-room" => [Admin, User, Guest, Bot],
    PreviewCRoom = "preview-c-room" => [Admin, User],
    /// † guests may leave (RC default denies).
    LeaveC = "leave-c" => [Admin, Owner, Moderator, User, Guest, Bot],
    LeaveP = "leave-p" => [Admin, Owner, Moderator, User, Guest, Bot],
    AddUserToJoinedRoom = "add-user-to-joined-room" => [Admin, Owner, Moderator],
    AddUserToAnyCRoom = "add-user-to-any-c-room" => [Admin],
    RemoveUser = "remove-user" => [Admin, Owner, Moderator],
    EditRoom = "edit-room" => [Admin, Owner, Moderator],
    SetReadonly = "set-readonly" => [Admin, Owner],
    SetReactWhenReadonly = "set-react-when-readonly" => [Admin, Owner],
    SetOwner = "set-owner" => [Admin, Owner],
    SetModerator = "set-moderator" => [Admin, Owner],
    ArchiveRoom = "archive-room" => [Admin, Owner],
    UnarchiveRoom = "unarchive-room" => [Admin],
    DeleteC = "delete-c" => [Admin, Owner],
    DeleteP = "delete-p" => [Admin, Owner],
    DeleteD = "delete-d" => [Admin],
    PostReadonly = "post-readonly" => [Admin, Owner, Moderator],
    MentionAll = "mention-all" => [Admin, Owner, Moderator, User],
    MentionHere = "mention-here" => [Admin, Owner, Moderator, User],
    EditMessage = "edit-message" => [Admin, Owner, Moderator],
    /// † bots may delete their own output (RC default denies).
    DeleteOwnMessage = "delete-own-message" => [Admin, Owner, Moderator, User, Bot],
    DeleteMessage = "delete-message" => [Admin, Owner, Moderator],
    ForceDeleteMessage = "force-delete-message" => [Admin, Owner],
    BypassTimeLimitEditAndDelete = "bypass-time-limit-edit-and-delete" => [Bot],
    PinMessage = "pin-message" => [Admin, Owner, Moderator],
    MessageImpersonate = "message-impersonate" => [Bot],
    SendManyMessages = "send-many-messages" => [Admin, Bot],
    ApiBypassRateLimit = "api-bypass-rate-limit" => [Admin, Bot],
    ManageIncomingIntegrations = "manage-incoming-integrations" => [Admin],
    ManageOutgoingIntegrations = "manage-outgoing-integrations" => [Admin],
    CreateUser = "create-user" => [Admin],
    EditOtherUserInfo = "edit-other-user-info" => [Admin],
    EditOtherUserActiveStatus = "edit-other-user-active-status" => [Admin],
    AssignRoles = "assign-roles" => [Admin],
    AccessPermissions = "access-permissions" => [Admin],
    LogoutOtherUser = "logout-other-user" => [Admin],
    /// The admin user list, deactivated accounts included (RC's name).
    ViewUserAdministration = "view-user-administration" => [Admin],
    /// Read every setting; without it only the public ones (`settings::PUBLIC`).
    ViewPrivilegedSetting = "view-privileged-setting" => [Admin],
    EditPrivilegedSetting = "edit-privileged-setting" => [Admin],
    /// The cluster view of the admin pages: frontends, brokers, slot table, connection counts (ours).
    ViewCluster = "view-cluster" => [Admin],
}

impl Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Permission::parse(&s).ok_or_else(|| serde::de::Error::custom("unknown permission"))
    }
}

/// Role → permission grants; the §3 defaults plus an admin's edits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PermissionTable {
    grants: BTreeMap<Permission, BTreeSet<Role>>,
}

impl Default for PermissionTable {
    fn default() -> Self {
        let grants = Permission::ALL.iter().map(|p| (*p, p.default_roles().iter().copied().collect())).collect();
        PermissionTable { grants }
    }
}

impl PermissionTable {
    /// The defaults with stored overrides applied (unknown ids in storage are skipped by the caller).
    pub fn with_overrides(overrides: impl IntoIterator<Item = (Permission, Vec<Role>)>) -> Result<Self> {
        let mut table = PermissionTable::default();
        for (perm, roles) in overrides {
            table.set(perm, roles)?;
        }
        Ok(table)
    }

    /// Replaces the roles of one permission (`admin.permission.set`).
    pub fn set(&mut self, perm: Permission, roles: Vec<Role>) -> Result<()> {
        let roles: BTreeSet<Role> = roles.into_iter().collect();
        if perm == Permission::AccessPermissions && !roles.contains(&Role::Admin) {
            return Err(ChatError::invalid("roles", "access-permissions must keep admin"));
        }
        self.grants.insert(perm, roles);
        Ok(())
    }

    /// Roles currently holding `perm`.
    pub fn roles(&self, perm: Permission) -> impl Iterator<Item = Role> + '_ {
        self.grants.get(&perm).into_iter().flatten().copied()
    }

    /// The raw check: is any of `global ∪ room` listed on `perm`?
    pub fn grants(&self, perm: Permission, global: &[Role], room: &[Role]) -> bool {
        match self.grants.get(&perm) {
            Some(set) => global.iter().chain(room).any(|r| set.contains(r)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        let mut seen = BTreeSet::new();
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(*p));
            assert!(seen.insert(p.as_str()));
        }
    }

    #[test]
    fn room_roles_count_only_when_passed() {
        let t = PermissionTable::default();
        assert!(!t.grants(Permission::DeleteP, &[Role::User], &[]));
        assert!(t.grants(Permission::DeleteP, &[Role::User], &[Role::Owner]));
        assert!(t.grants(Permission::DeleteP, &[Role::Admin], &[]));
    }

    #[test]
    fn admin_edits_take_effect_and_serialize() {
        let mut t = PermissionTable::default();
        t.set(Permission::CreateD, vec![Role::Admin, Role::User, Role::Guest]).unwrap();
        assert!(t.grants(Permission::CreateD, &[Role::Guest], &[]));
        let json = serde_json::to_string(&t).unwrap();
        let back: PermissionTable = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn access_permissions_cannot_lose_admin() {
        let mut t = PermissionTable::default();
        assert!(t.set(Permission::AccessPermissions, vec![Role::User]).is_err());
        assert!(t.grants(Permission::AccessPermissions, &[Role::Admin], &[]));
    }
}
