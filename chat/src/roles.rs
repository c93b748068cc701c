//! Roles after Rocket.Chat's model: global roles live on the user (`admin`, `user`, `guest`, `bot`), room
//! roles on the subscription (`owner`, `moderator`) and count only in that room (§1.7).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A role, global or room-scoped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Owner,
    Moderator,
    User,
    Guest,
    Bot,
}

/// Where a role is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleScope {
    /// On the user document (`Users` in Rocket.Chat).
    Global,
    /// On a subscription, valid only in its room (`Subscriptions`).
    Room,
}

impl Role {
    /// Every role, in display order (the columns of §3).
    pub const ALL: [Role; 6] = [Role::Admin, Role::Owner, Role::Moderator, Role::User, Role::Guest, Role::Bot];

    /// Where the role can be held.
    pub fn scope(self) -> RoleScope {
        match self {
            Role::Owner | Role::Moderator => RoleScope::Room,
            Role::Admin | Role::User | Role::Guest | Role::Bot => RoleScope::Global,
        }
    }

    /// The role's id as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::Moderator => "moderator",
            Role::User => "user",
            Role::Guest => "guest",
            Role::Bot => "bot",
        }
    }

    /// Parses a role id.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a set of global roles for a user: non-empty, only global roles, no duplicates, and `guest`
/// never combined with `user` (a guest is a user-type account with `guest` *instead of* `user`).
pub fn validate_global_roles(roles: &[Role]) -> crate::Result<()> {
    if roles.is_empty() {
        return Err(crate::ChatError::invalid("roles", "a user needs at least one global role"));
    }
    if roles.iter().any(|r| r.scope() != RoleScope::Global) {
        return Err(crate::ChatError::invalid("roles", "owner and moderator are room roles"));
    }
    if roles.contains(&Role::Guest) && roles.contains(&Role::User) {
        return Err(crate::ChatError::invalid("roles", "guest replaces user, it is not added to it"));
    }
    let mut sorted = roles.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != roles.len() {
        return Err(crate::ChatError::invalid("roles", "duplicate role"));
    }
    Ok(())
}

/// Checks room roles on a subscription: only `owner`/`moderator`, no duplicates.
pub fn validate_room_roles(roles: &[Role]) -> crate::Result<()> {
    if roles.iter().any(|r| r.scope() != RoleScope::Room) {
        return Err(crate::ChatError::invalid("roles", "only owner and moderator are room roles"));
    }
    if roles.len() == 2 && roles[0] == roles[1] {
        return Err(crate::ChatError::invalid("roles", "duplicate role"));
    }
    if roles.len() > 2 {
        return Err(crate::ChatError::invalid("roles", "duplicate role"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_ids_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        assert_eq!(Role::parse("leader"), None);
    }

    #[test]
    fn global_role_sets_are_checked() {
        assert!(validate_global_roles(&[Role::User]).is_ok());
        assert!(validate_global_roles(&[Role::Admin, Role::User]).is_ok());
        assert!(validate_global_roles(&[]).is_err());
        assert!(validate_global_roles(&[Role::Owner]).is_err());
        assert!(validate_global_roles(&[Role::Guest, Role::User]).is_err());
        assert!(validate_global_roles(&[Role::User, Role::User]).is_err());
    }

    #[test]
    fn room_role_sets_are_checked() {
        assert!(validate_room_roles(&[]).is_ok());
        assert!(validate_room_roles(&[Role::Owner, Role::Moderator]).is_ok());
        assert!(validate_room_roles(&[Role::Owner, Role::Owner]).is_err());
        assert!(validate_room_roles(&[Role::Admin]).is_err());
    }
}
