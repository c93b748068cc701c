//! Importing another chat's history (issue 8): today a Slack workspace export.
//!
//! Three steps, so that a bad archive never changes the store:
//! 1. [`slack::parse`] reads the whole zip into an [`slack::Archive`] (pure, bytes in); any malformed
//!    file stops here with an [`ImportError`] naming it.
//! 2. [`apply::resolve`] looks up, **read-only**, what the store already has (earlier imports, accounts
//!    with the same e-mail, taken names), then [`plan::plan`] (pure) turns archive + lookups into one
//!    [`crate::store::ImportBatch`] and the [`Summary`] of what it contains and what it skips.
//! 3. [`crate::store::Store::import`] writes the batch: SQLite in one transaction (all or nothing);
//!    MongoDB document by document, each write idempotent, so a re-run completes an interrupted import.
//!
//! Idempotency comes from ids derived from Slack's ([`derived_id`]): a user from its Slack id, a room
//! from its conversation id, a message from conversation id + `ts`. Re-importing the same archive finds
//! everything present and writes nothing; a later, larger export adds only what is new.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::ChatError;

pub mod apply;
pub mod markup;
pub mod plan;
pub mod slack;

/// Why an import stopped. Archive errors name the file inside the zip.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("not a readable zip archive: {reason}")]
    NotZip { reason: String },
    #[error("{file}: missing from the archive")]
    Missing { file: String },
    #[error("{file}: malformed JSON at line {line}, column {column}: {reason}")]
    Json { file: String, line: usize, column: usize, reason: String },
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error(
        "{file}: message file of a conversation that is not in channels.json, groups.json, dms.json or mpims.json"
    )]
    UnknownConversation { file: String },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("store: {0}")]
    Store(#[from] ChatError),
}

impl ImportError {
    /// Stable error id, in the style of [`ChatError::id`].
    pub fn id(&self) -> &'static str {
        match self {
            ImportError::NotZip { .. } => "error-import-not-zip",
            ImportError::Missing { .. } => "error-import-missing-file",
            ImportError::Json { .. } => "error-import-malformed-json",
            ImportError::Invalid { .. } => "error-import-invalid",
            ImportError::UnknownConversation { .. } => "error-import-unknown-conversation",
            ImportError::Io { .. } => "error-import-io",
            ImportError::Store(e) => e.id(),
        }
    }
}

/// Length of derived ids: the same 17 base62 characters as generated ones.
const DERIVED_ID_LEN: usize = crate::ids::ID_LEN;
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A stable id for something imported: SHA-256 of `slack`, the kind and the Slack key, as 17 base62
/// characters. The same Slack object always maps to the same id, which is what makes re-imports
/// idempotent without a mapping table. (The slight bias of `byte % 62` does not matter for ~101 bits.)
pub fn derived_id(kind: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"slack\0");
    h.update(kind.as_bytes());
    h.update(b"\0");
    h.update(key.as_bytes());
    h.finalize().iter().take(DERIVED_ID_LEN).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

/// How many of a kind of thing the import holds: `imported` new now, `present` already in the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub imported: u64,
    pub present: u64,
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.present == 0 {
            write!(f, "{}", self.imported)
        } else {
            write!(f, "{} ({} already present)", self.imported, self.present)
        }
    }
}

/// What an import did (or, for a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub users: Count,
    /// Slack users linked to an existing account with the same e-mail instead of a new one.
    pub users_linked: u64,
    pub rooms: Count,
    pub members: Count,
    pub messages: Count,
    /// Thread replies among `messages`.
    pub thread_replies: Count,
    /// Individual reactions (emoji × user) on the messages.
    pub reactions: Count,
    pub edits: Count,
    /// Files kept as references to their Slack URL (not downloaded).
    pub file_references: Count,
    /// Not imported, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Imported with a change, by what changed (renamed for a taken name, reply kept in the channel…).
    pub notes: BTreeMap<String, u64>,
}

impl Summary {
    pub fn skip(&mut self, reason: impl Into<String>) {
        *self.skipped.entry(reason.into()).or_default() += 1;
    }

    pub fn note(&mut self, what: impl Into<String>) {
        *self.notes.entry(what.into()).or_default() += 1;
    }

    /// True when the store already held everything (a re-run).
    pub fn nothing_new(&self) -> bool {
        [self.users, self.rooms, self.members, self.messages].iter().all(|c| c.imported == 0)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "users:           {}", self.users)?;
        if self.users_linked > 0 {
            writeln!(f, "  linked to existing accounts by e-mail: {}", self.users_linked)?;
        }
        writeln!(f, "rooms:           {}", self.rooms)?;
        writeln!(f, "memberships:     {}", self.members)?;
        writeln!(f, "messages:        {}", self.messages)?;
        writeln!(f, "thread replies:  {}", self.thread_replies)?;
        writeln!(f, "reactions:       {}", self.reactions)?;
        writeln!(f, "edits:           {}", self.edits)?;
        writeln!(f, "file references: {} (links to the Slack URLs; no file was downloaded)", self.file_references)?;
        if self.skipped.is_empty() {
            writeln!(f, "skipped:         none")?;
        } else {
            writeln!(f, "skipped:")?;
            for (reason, n) in &self.skipped {
                writeln!(f, "  {n:>8}  {reason}")?;
            }
        }
        if !self.notes.is_empty() {
            writeln!(f, "notes:")?;
            for (what, n) in &self.notes {
                writeln!(f, "  {n:>8}  {what}")?;
            }
        }
        if self.nothing_new() {
            writeln!(f, "everything in the archive was already present; nothing was written")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_valid_and_distinct() {
        let a = derived_id("user", "U1");
        assert_eq!(a, derived_id("user", "U1"));
        assert_eq!(a.len(), crate::ids::ID_LEN);
        assert!(crate::ids::validate_id("id", &a).is_ok());
        assert_ne!(a, derived_id("room", "U1"));
        assert_ne!(a, derived_id("user", "U2"));
    }

    #[test]
    fn error_ids_are_distinct() {
        let all = [
            ImportError::NotZip { reason: String::new() },
            ImportError::Missing { file: String::new() },
            ImportError::Json { file: String::new(), line: 1, column: 1, reason: String::new() },
            ImportError::Invalid { file: String::new(), reason: String::new() },
            ImportError::UnknownConversation { file: String::new() },
            ImportError::Io { path: String::new(), reason: String::new() },
        ];
        let mut ids: Vec<_> = all.iter().map(ImportError::id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
    }
}
