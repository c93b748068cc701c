//! Versioned migrations. `PRAGMA user_version` holds the number of applied migrations; each migration
//! runs in its own transaction together with the version bump, so a crash leaves the previous version.
//! Migrations are append-only: never edit a released one, add the next.
//!
//! §5's MongoDB model applied to tables: JSON text columns hold the arrays and maps MongoDB would keep
//! inside the document (`roles`, `reactions`, `mentions`, `replies`, `attachments`); lower-cased copies
//! of names carry the case-insensitive unique indexes; `messages_fts` is an external-content FTS5 index
//! over `messages.msg` kept current by triggers.

use rusqlite::Connection;

use crate::{ChatError, Result};

/// Migration `i` brings the database from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    username_lower TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    email TEXT,
    email_lower TEXT UNIQUE,
    kind TEXT NOT NULL,
    roles TEXT NOT NULL,
    active INTEGER NOT NULL,
    password_hash TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX users_active ON users(active, kind);
CREATE INDEX users_updated ON users(updated_at);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT,
    last_four TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at INTEGER,
    client TEXT
);
CREATE INDEX sessions_user ON sessions(user_id, kind);
CREATE INDEX sessions_expiry ON sessions(expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    t TEXT NOT NULL,
    name TEXT,
    name_lower TEXT UNIQUE,
    fname TEXT NOT NULL,
    topic TEXT NOT NULL,
    description TEXT NOT NULL,
    announcement TEXT NOT NULL,
    creator TEXT NOT NULL,
    dm_key TEXT UNIQUE,
    read_only INTEGER NOT NULL,
    react_when_read_only INTEGER NOT NULL,
    archived INTEGER NOT NULL,
    is_default INTEGER NOT NULL,
    users_count INTEGER NOT NULL,
    msg_count INTEGER NOT NULL,
    root_count INTEGER NOT NULL,
    last_message_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX rooms_t_last ON rooms(t, last_message_at DESC);
CREATE INDEX rooms_default ON rooms(is_default) WHERE is_default = 1;
CREATE INDEX rooms_updated ON rooms(updated_at);

CREATE TABLE subscriptions (
    rid TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    uid TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    t TEXT NOT NULL,
    roles TEXT NOT NULL,
    is_owner INTEGER NOT NULL,
    joined_at INTEGER NOT NULL,
    open INTEGER NOT NULL,
    read_msg_count INTEGER NOT NULL,
    read_root_count INTEGER NOT NULL,
    last_read_seq INTEGER NOT NULL,
    user_mentions INTEGER NOT NULL,
    group_mentions INTEGER NOT NULL,
    favorite INTEGER NOT NULL,
    notify TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (rid, uid)
) WITHOUT ROWID;
CREATE INDEX subscriptions_user ON subscriptions(uid, updated_at);
CREATE INDEX subscriptions_owners ON subscriptions(rid, is_owner);

CREATE TABLE messages (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    rid TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    author_id TEXT NOT NULL,
    author_username TEXT NOT NULL,
    author_name TEXT NOT NULL,
    msg TEXT NOT NULL,
    t TEXT,
    ts INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    edited_at INTEGER,
    edited_by TEXT,
    tmid TEXT,
    tshow INTEGER NOT NULL,
    timeline INTEGER NOT NULL,
    tcount INTEGER NOT NULL,
    tlm INTEGER,
    replies TEXT NOT NULL,
    mentions TEXT NOT NULL,
    group_mention INTEGER NOT NULL,
    reactions TEXT NOT NULL,
    pinned INTEGER NOT NULL,
    pinned_at INTEGER,
    pinned_by TEXT,
    attachments TEXT NOT NULL,
    client_msg_id TEXT,
    deleted_at INTEGER,
    UNIQUE (rid, seq)
);
CREATE UNIQUE INDEX messages_client ON messages(author_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_timeline ON messages(rid, seq) WHERE timeline = 1;
CREATE INDEX messages_updated ON messages(rid, updated_at);
CREATE INDEX messages_thread ON messages(tmid, seq) WHERE tmid IS NOT NULL;
CREATE INDEX messages_threads_by_tlm ON messages(rid, tlm DESC) WHERE tcount > 0;
CREATE INDEX messages_pinned ON messages(rid, pinned_at) WHERE pinned = 1;
CREATE INDEX messages_author ON messages(author_id, ts);

CREATE VIRTUAL TABLE messages_fts USING fts5(msg, content='messages', content_rowid='pk');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, msg) VALUES (new.pk, new.msg);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, msg) VALUES ('delete', old.pk, old.msg);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF msg ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, msg) VALUES ('delete', old.pk, old.msg);
    INSERT INTO messages_fts(rowid, msg) VALUES (new.pk, new.msg);
END;

CREATE TABLE permissions (
    id TEXT PRIMARY KEY,
    roles TEXT NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE trash (
    collection TEXT NOT NULL,
    rid TEXT NOT NULL,
    uid TEXT,
    deleted_at INTEGER NOT NULL
);
CREATE INDEX trash_user ON trash(collection, uid, deleted_at);
"#,
    // 2: per-room notification preferences beside `notify` (RC `disableNotifications`, `muteGroupMentions`).
    r#"
ALTER TABLE subscriptions ADD COLUMN disable_notifications INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN mute_group_mentions INTEGER NOT NULL DEFAULT 0;
"#,
    // 3: presence (manual status) and webhook integrations with their delivery history.
    super::live::MIGRATION,
];

/// Applies the pending migrations; refuses a database written by a newer version.
///
/// Several processes may open the same file at the same moment (two frontends sharing one store, both
/// started at once). Each step therefore takes the write lock first (`BEGIN IMMEDIATE`, waiting up to
/// the connection's busy timeout) and reads the version under that lock: the process that waits finds
/// the migration done and moves on, instead of running it a second time ("table already exists").
pub fn migrate(conn: &mut Connection) -> Result<()> {
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| ChatError::storage("migrate", e))?;
        let current: usize = tx
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| ChatError::storage("migrate", e))?
            .try_into()
            .map_err(|_| ChatError::invalid("database", "negative schema version"))?;
        if current > MIGRATIONS.len() {
            return Err(ChatError::invalid("database", "written by a newer version of this program"));
        }
        // Each pass applies one migration and raises the version, so the loop ends after at most
        // `MIGRATIONS.len()` passes.
        let Some(sql) = MIGRATIONS.get(current) else { return Ok(()) };
        tx.execute_batch(sql).map_err(|e| ChatError::storage("migrate", e))?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", current + 1))
            .map_err(|e| ChatError::storage("migrate", e))?;
        tx.commit().map_err(|e| ChatError::storage("migrate", e))?;
        tracing::info!(version = current + 1, "chat store migrated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_refuse_newer_databases() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        c.execute_batch("PRAGMA user_version = 99").unwrap();
        assert!(migrate(&mut c).is_err());
    }

    #[test]
    fn fts5_is_compiled_in() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        let n: i64 =
            c.query_row("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'x'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }
}
