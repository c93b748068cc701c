//! The crate's one error type. Every variant has a stable error id (`ChatError::id`), shaped after
//! Rocket.Chat's `error-…` ids, so the REST and socket surfaces can report it without formatting.
//! `NotFound` deliberately also covers "exists but you may not see it" for private rooms (§7.4).

use std::error::Error as StdError;

/// Result alias used throughout the crate.
pub type Result<T, E = ChatError> = std::result::Result<T, E>;

/// Everything the chat domain and its stores can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The entity does not exist, or the caller may not learn that it exists.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// The caller lacks a permission (or a membership) for the operation.
    #[error("not allowed: {reason}")]
    NotAllowed { reason: &'static str },
    /// Input failed validation.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: &'static str },
    /// Input is longer than its limit (characters, bytes or items as the field says).
    #[error("{field} too long: {got} > {limit}")]
    TooLong { field: &'static str, limit: usize, got: usize },
    /// A unique key is already taken (username, email, room name).
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    /// The last owner of a room tried to leave or to drop the owner role.
    #[error("the last owner of a room must hand over ownership first")]
    LastOwner,
    /// The room is archived: readable, but nothing new may be written.
    #[error("room is archived")]
    RoomArchived,
    /// The room is read-only and the caller lacks `post-readonly`.
    #[error("room is read-only")]
    ReadOnly,
    /// The message is a tombstone; it can no longer be edited, reacted to or pinned.
    #[error("message was deleted")]
    MessageDeleted,
    /// The edit or delete window of `Message_AllowEditing_BlockEditInMinutes` / `…Delete…` has passed.
    #[error("the {action} window of {minutes} minutes has passed")]
    WindowPassed { action: &'static str, minutes: u32 },
    /// Credentials or token are wrong, expired or revoked. Never says which.
    #[error("not authenticated")]
    Unauthenticated,
    /// The account is deactivated.
    #[error("user is deactivated")]
    Deactivated,
    /// A rate limit of §7.1 was reached; nothing was done. Try again after `retry_after_ms`.
    #[error("too many requests: try again in {retry_after_ms} ms")]
    TooManyRequests { retry_after_ms: u64 },
    /// The storage backend failed.
    #[error("store failed during {op}")]
    Storage {
        op: &'static str,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The store's worker is gone (shut down or crashed).
    #[error("store is unavailable")]
    Unavailable,
}

impl ChatError {
    /// Stable machine-readable id; never reused for another meaning.
    pub fn id(&self) -> &'static str {
        match self {
            ChatError::NotFound { .. } => "error-not-found",
            ChatError::NotAllowed { .. } => "error-not-allowed",
            ChatError::Invalid { .. } => "error-invalid-param",
            ChatError::TooLong { .. } => "error-too-long",
            ChatError::Conflict { .. } => "error-duplicate",
            ChatError::LastOwner => "error-you-are-last-owner",
            ChatError::RoomArchived => "error-room-archived",
            ChatError::ReadOnly => "error-room-read-only",
            ChatError::MessageDeleted => "error-message-deleted",
            ChatError::WindowPassed { .. } => "error-action-window-passed",
            ChatError::Unauthenticated => "error-unauthorized",
            ChatError::Deactivated => "error-user-deactivated",
            ChatError::TooManyRequests { .. } => "error-too-many-requests",
            ChatError::Storage { .. } => "error-internal",
            ChatError::Unavailable => "error-unavailable",
        }
    }

    /// Wraps a backend error with the store operation it happened in.
    pub fn storage(op: &'static str, source: impl StdError + Send + Sync + 'static) -> Self {
        ChatError::Storage { op, source: Box::new(source) }
    }

    pub(crate) fn invalid(field: &'static str, reason: &'static str) -> Self {
        ChatError::Invalid { field, reason }
    }

    pub(crate) fn not_found(what: &'static str) -> Self {
        ChatError::NotFound { what }
    }

    pub(crate) fn not_allowed(reason: &'static str) -> Self {
        ChatError::NotAllowed { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_ids_are_distinct() {
        let all = [
            ChatError::not_found("room"),
            ChatError::not_allowed("x"),
            ChatError::invalid("f", "r"),
            ChatError::TooLong { field: "msg", limit: 1, got: 2 },
            ChatError::Conflict { what: "username" },
            ChatError::LastOwner,
            ChatError::RoomArchived,
            ChatError::ReadOnly,
            ChatError::MessageDeleted,
            ChatError::WindowPassed { action: "edit", minutes: 1 },
            ChatError::Unauthenticated,
            ChatError::Deactivated,
            ChatError::TooManyRequests { retry_after_ms: 1 },
            ChatError::storage("op", std::io::Error::other("x")),
            ChatError::Unavailable,
        ];
        let mut ids: Vec<_> = all.iter().map(ChatError::id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
    }
}
