//! Users (§1.1): the account record without secrets, plus name and email rules. The password hash is
//! never part of [`User`]; stores hand it out only through `Store::password_hash`.

use serde::{Deserialize, Serialize};

use crate::ids::{Millis, UserId};
use crate::limits::{check_chars, MAX_DISPLAY_NAME_CHARS, MAX_EMAIL_BYTES, MAX_NAME_CHARS};
use crate::roles::{validate_global_roles, Role};
use crate::{ChatError, Result};

/// `user` or `bot` account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    User,
    Bot,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::User => "user",
            UserKind::Bot => "bot",
        }
    }

    pub fn parse(s: &str) -> Option<UserKind> {
        match s {
            "user" => Some(UserKind::User),
            "bot" => Some(UserKind::Bot),
            _ => None,
        }
    }
}

/// A user account as the domain sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    /// Unique case-insensitively; stored with the case the user chose.
    pub username: String,
    pub name: String,
    /// Unique case-insensitively when present.
    pub email: Option<String>,
    pub kind: UserKind,
    /// Global roles only (validated on write).
    pub roles: Vec<Role>,
    /// False: cannot log in, all sessions revoked, still shown as author.
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub active: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Input for creating a user.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub name: String,
    pub email: Option<String>,
    pub kind: UserKind,
    pub roles: Vec<Role>,
    /// Argon2 PHC string from [`crate::auth::hash_password`]; `None` for token-only bots.
    pub password_hash: Option<String>,
}

impl NewUser {
    /// Checks every field; stores call this before writing.
    pub fn validate(&self) -> Result<()> {
        validate_username(&self.username)?;
        check_chars("name", &self.name, MAX_DISPLAY_NAME_CHARS)?;
        if let Some(email) = &self.email {
            validate_email(email)?;
        }
        validate_global_roles(&self.roles)?;
        if self.kind == UserKind::Bot && !self.roles.contains(&Role::Bot) {
            return Err(ChatError::invalid("roles", "a bot account needs the bot role"));
        }
        Ok(())
    }
}

/// Room and user names: 1–64 characters of `[0-9a-zA-Z-_.]` (RC's default pattern).
pub fn validate_name(field: &'static str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(ChatError::invalid(field, "must not be empty"));
    }
    check_chars(field, s, MAX_NAME_CHARS)?;
    if !s.bytes().all(is_name_byte) {
        return Err(ChatError::invalid(field, "must contain only [0-9a-zA-Z-_.]"));
    }
    Ok(())
}

pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// Usernames follow the name rules; `all` and `here` are reserved for group mentions.
pub fn validate_username(s: &str) -> Result<()> {
    validate_name("username", s)?;
    if s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case("here") {
        return Err(ChatError::invalid("username", "reserved for group mentions"));
    }
    Ok(())
}

/// A deliberately loose email check: one `@`, something on both sides, no whitespace, bounded.
pub fn validate_email(s: &str) -> Result<()> {
    if s.len() > MAX_EMAIL_BYTES {
        return Err(ChatError::TooLong { field: "email", limit: MAX_EMAIL_BYTES, got: s.len() });
    }
    let mut parts = s.split('@');
    let ok = match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) => {
            !local.is_empty() && !domain.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        _ => false,
    };
    if !ok {
        return Err(ChatError::invalid("email", "not an email address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_user(username: &str) -> NewUser {
        NewUser {
            username: username.into(),
            name: "Alice".into(),
            email: Some("alice@example.org".into()),
            kind: UserKind::User,
            roles: vec![Role::User],
            password_hash: None,
        }
    }

    #[test]
    fn usernames_follow_the_rc_charset() {
        assert!(new_user("alice.b-c_1").validate().is_ok());
        assert!(new_user("").validate().is_err());
        assert!(new_user("al ice").validate().is_err());
        assert!(new_user("élise").validate().is_err());
        assert!(new_user(&"a".repeat(65)).validate().is_err());
        assert!(new_user("ALL").validate().is_err());
        assert!(new_user("here").validate().is_err());
    }

    #[test]
    fn emails_are_loosely_checked() {
        assert!(validate_email("a@b").is_ok());
        assert!(validate_email("ab").is_err());
        assert!(validate_email("a@b@c").is_err());
        assert!(validate_email("a @b").is_err());
        assert!(validate_email(&format!("{}@b", "a".repeat(260))).is_err());
    }

    #[test]
    fn bots_need_the_bot_role() {
        let mut u = new_user("robot");
        u.kind = UserKind::Bot;
        assert!(u.validate().is_err());
        u.roles = vec![Role::Bot];
        assert!(u.validate().is_ok());
    }
}
