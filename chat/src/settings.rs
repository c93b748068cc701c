//! Workspace settings (§1.10) with Rocket.Chat's names and defaults. Stored as key → JSON value; a
//! change is applied to a copy and validated as a whole before it is accepted.

use serde::{Deserialize, Serialize};

use crate::{ChatError, Result};

/// What an unread badge counts (`Unread_Count`, `Unread_Count_DM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnreadCount {
    AllMessages,
    UserMentionsOnly,
    GroupMentionsOnly,
    UserAndGroupMentionsOnly,
}

/// Settings every authenticated user may read (clients need them to behave: limits, what is allowed);
/// the rest need `view-privileged-setting`.
pub const PUBLIC: &[&str] = &[
    "Message_MaxAllowedSize",
    "Message_AllowEditing",
    "Message_AllowEditing_BlockEditInMinutes",
    "Message_AllowDeleting",
    "Message_AllowDeleting_BlockDeleteInMinutes",
    "Message_AllowPinning",
    "Message_ShowDeletedStatus",
    "DirectMesssage_maxUsers",
    "FileUpload_MaxFileSize",
    "FileUpload_MediaTypeBlackList",
    "Accounts_RegistrationForm",
    "Unread_Count",
    "Unread_Count_DM",
];

/// The settings the chat domain reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    #[serde(rename = "Message_MaxAllowedSize")]
    pub message_max_allowed_size: usize,
    #[serde(rename = "Message_AllowEditing")]
    pub message_allow_editing: bool,
    /// 0 = no limit.
    #[serde(rename = "Message_AllowEditing_BlockEditInMinutes")]
    pub message_block_edit_in_minutes: u32,
    #[serde(rename = "Message_AllowDeleting")]
    pub message_allow_deleting: bool,
    /// 0 = no limit.
    #[serde(rename = "Message_AllowDeleting_BlockDeleteInMinutes")]
    pub message_block_delete_in_minutes: u32,
    #[serde(rename = "Message_AllowPinning")]
    pub message_allow_pinning: bool,
    #[serde(rename = "Message_ShowDeletedStatus")]
    pub message_show_deleted_status: bool,
    #[serde(rename = "DirectMesssage_maxUsers")]
    pub direct_message_max_users: usize,
    /// Members above which `@all` notifies nobody (0 = no limit).
    #[serde(rename = "Message_MaxAll")]
    pub message_max_all: usize,
    #[serde(rename = "FileUpload_MaxFileSize")]
    pub file_upload_max_file_size: u64,
    #[serde(rename = "FileUpload_MediaTypeBlackList")]
    pub file_upload_media_type_black_list: String,
    /// Comma-separated media types (`type/*` allowed); empty = every type not black-listed.
    #[serde(rename = "FileUpload_MediaTypeWhiteList")]
    pub file_upload_media_type_white_list: String,
    #[serde(rename = "FileUpload_ProtectFiles")]
    pub file_upload_protect_files: bool,
    #[serde(rename = "FileUpload_Restrict_to_room_members")]
    pub file_upload_restrict_to_room_members: bool,
    #[serde(rename = "Accounts_LoginExpiration")]
    pub accounts_login_expiration_days: u32,
    /// Open registration: anyone may create an account (off by default; admins create users).
    #[serde(rename = "Accounts_RegistrationForm")]
    pub accounts_open_registration: bool,
    #[serde(rename = "Notifications_Max_Room_Members")]
    pub notifications_max_room_members: usize,
    #[serde(rename = "Unread_Count")]
    pub unread_count: UnreadCount,
    #[serde(rename = "Unread_Count_DM")]
    pub unread_count_dm: UnreadCount,
    #[serde(rename = "SSRF_Allowlist")]
    pub ssrf_allowlist: String,
    /// Messages a user may send per second, sustained (§7.1; RC hard-codes 5/s). 0 = no limit.
    /// Holders of `send-many-messages` are not limited.
    #[serde(rename = "Message_RateLimit_PerSecond")]
    pub message_rate_limit_per_second: u32,
    /// Messages a user may send in a burst above the sustained rate.
    #[serde(rename = "Message_RateLimit_Burst")]
    pub message_rate_limit_burst: u32,
    /// Failed logins for one username from one address before it must wait (RC
    /// `Block_Multiple_Failed_Logins_*`); they come back one by one over the period below. 0 = no limit.
    #[serde(rename = "Block_Multiple_Failed_Logins_Attempts_Until_Block_by_User")]
    pub failed_logins_by_user: u32,
    #[serde(rename = "Block_Multiple_Failed_Logins_Time_To_Unblock_By_User_In_Minutes")]
    pub failed_logins_by_user_minutes: u32,
    /// Failed logins from one address, whatever the username. 0 = no limit, the default: frontends see
    /// the proxy's address when nginx or an Ingress is in front, and then this limit would be shared by
    /// every user (RC's default, 50, assumes it sees client addresses). Set it where clients connect directly.
    #[serde(rename = "Block_Multiple_Failed_Logins_Attempts_Until_Block_By_Ip")]
    pub failed_logins_by_ip: u32,
    #[serde(rename = "Block_Multiple_Failed_Logins_Time_To_Unblock_By_Ip_In_Minutes")]
    pub failed_logins_by_ip_minutes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            message_max_allowed_size: crate::limits::MAX_MESSAGE_CHARS,
            message_allow_editing: true,
            message_block_edit_in_minutes: 0,
            message_allow_deleting: true,
            message_block_delete_in_minutes: 0,
            message_allow_pinning: true,
            message_show_deleted_status: false,
            direct_message_max_users: crate::limits::MAX_DM_USERS,
            message_max_all: 0,
            file_upload_max_file_size: 100 * 1024 * 1024,
            file_upload_media_type_black_list: "image/svg+xml".into(),
            file_upload_media_type_white_list: String::new(),
            file_upload_protect_files: true,
            file_upload_restrict_to_room_members: true,
            accounts_login_expiration_days: 90,
            accounts_open_registration: false,
            notifications_max_room_members: 100,
            unread_count: UnreadCount::UserAndGroupMentionsOnly,
            unread_count_dm: UnreadCount::AllMessages,
            ssrf_allowlist: String::new(),
            message_rate_limit_per_second: 5,
            message_rate_limit_burst: 10,
            failed_logins_by_user: 10,
            failed_logins_by_user_minutes: 15,
            failed_logins_by_ip: 0,
            failed_logins_by_ip_minutes: 15,
        }
    }
}

impl Settings {
    /// Defaults overlaid with stored key/value pairs. Unknown keys are kept out (they may belong to a
    /// newer version); a stored value of the wrong type is an error naming nothing secret.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, serde_json::Value)>) -> Result<Settings> {
        let mut obj = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Err(ChatError::invalid("settings", "defaults do not serialize")),
        };
        for (k, v) in pairs {
            if obj.contains_key(&k) {
                obj.insert(k, v);
            }
        }
        let s: Settings = serde_json::from_value(serde_json::Value::Object(obj))
            .map_err(|_| ChatError::invalid("settings", "a stored value has the wrong type"))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks one change (`key`, `value`) against the current settings; returns the new settings.
    pub fn with(&self, key: &str, value: serde_json::Value) -> Result<Settings> {
        let mut obj = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Err(ChatError::invalid("settings", "settings do not serialize")),
        };
        if !obj.contains_key(key) {
            return Err(ChatError::not_found("setting"));
        }
        obj.insert(key.to_owned(), value);
        let s: Settings = serde_json::from_value(serde_json::Value::Object(obj))
            .map_err(|_| ChatError::invalid("value", "wrong type for this setting"))?;
        s.validate()?;
        Ok(s)
    }

    /// Every setting as `(key, value)`, by key.
    pub fn pairs(&self) -> Vec<(String, serde_json::Value)> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => {
                let mut v: Vec<_> = m.into_iter().collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            }
            _ => Vec::new(),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.message_max_allowed_size == 0 || self.message_max_allowed_size > crate::limits::MAX_MESSAGE_CHARS * 10 {
            return Err(ChatError::invalid("Message_MaxAllowedSize", "must be 1..=50000"));
        }
        if !(2..=crate::limits::MAX_DM_USERS * 4).contains(&self.direct_message_max_users) {
            return Err(ChatError::invalid("DirectMesssage_maxUsers", "must be 2..=32"));
        }
        if self.message_rate_limit_per_second > 0 && self.message_rate_limit_burst == 0 {
            return Err(ChatError::invalid("Message_RateLimit_Burst", "must be at least 1 when a rate is set"));
        }
        if (self.failed_logins_by_user > 0 && self.failed_logins_by_user_minutes == 0)
            || (self.failed_logins_by_ip > 0 && self.failed_logins_by_ip_minutes == 0)
        {
            return Err(ChatError::invalid(
                "Block_Multiple_Failed_Logins",
                "the unblock time must be at least 1 minute",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_rc_defaults() {
        let s = Settings::default();
        assert_eq!(s.message_max_allowed_size, 5000);
        assert_eq!(s.direct_message_max_users, 8);
        assert_eq!(s.accounts_login_expiration_days, 90);
        assert!(!s.accounts_open_registration);
    }

    #[test]
    fn stored_pairs_override_known_keys_only() {
        let s = Settings::from_pairs([
            ("Message_AllowEditing".to_owned(), json!(false)),
            ("Some_Future_Key".to_owned(), json!(1)),
        ])
        .unwrap();
        assert!(!s.message_allow_editing);
    }

    #[test]
    fn changes_are_type_checked_and_validated() {
        let s = Settings::default();
        assert!(s.with("Message_AllowEditing", json!("yes")).is_err());
        assert!(s.with("Nope", json!(1)).is_err());
        assert!(s.with("DirectMesssage_maxUsers", json!(1)).is_err());
        assert_eq!(s.with("Unread_Count", json!("all_messages")).unwrap().unread_count, UnreadCount::AllMessages);
    }
}
