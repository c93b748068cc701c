//! SQLite operations for presence (the user's manual status) and webhook integrations with their
//! delivery history. Integrations and deliveries are configuration-sized records read whole, so each
//! is one JSON document column next to the columns it is looked up and ordered by.

use rusqlite::{params, Connection, OptionalExtension};

use super::ops::Ctx;
use crate::ids::{Millis, UserId};
use crate::integration::{Delivery, Integration, IntegrationKind, HISTORY_TTL_MS};
use crate::presence::{Manual, Status};
use crate::{ChatError, Result};

/// Appended to `schema::MIGRATIONS`.
pub const MIGRATION: &str = r#"
CREATE TABLE user_status (
    uid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    text TEXT NOT NULL,
    at INTEGER NOT NULL
);

CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX integrations_by_kind ON integrations(kind, created_at);

CREATE TABLE integration_history (
    id TEXT PRIMARY KEY,
    integration_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX integration_history_by_integration ON integration_history(integration_id, created_at);
CREATE INDEX integration_history_by_age ON integration_history(created_at);
"#;

fn json<T: serde::Serialize>(v: &T, op: &'static str) -> Result<String> {
    serde_json::to_string(v).map_err(|e| ChatError::storage(op, e))
}

fn parse<T: serde::de::DeserializeOwned>(s: &str, op: &'static str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| ChatError::storage(op, e))
}

pub fn set_user_status(conn: &Connection, uid: &UserId, m: &Manual) -> Result<()> {
    m.validate()?;
    conn.execute(
        "INSERT INTO user_status (uid, status, text, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(uid) DO UPDATE SET status = excluded.status, text = excluded.text, at = excluded.at",
        params![uid.as_str(), m.status.as_str(), m.text, m.at],
    )
    .ctx("set_user_status")?;
    Ok(())
}

pub fn user_status(conn: &Connection, uid: &UserId) -> Result<Option<Manual>> {
    const OP: &str = "user_status";
    let row = conn
        .query_row("SELECT status, text, at FROM user_status WHERE uid = ?1", [uid.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Millis>(2)?))
        })
        .optional()
        .ctx(OP)?;
    row.map(|(s, text, at)| {
        let status = Status::parse(&s)
            .ok_or_else(|| ChatError::storage(OP, std::io::Error::other(format!("unknown status {s}"))))?;
        Ok(Manual { status, text, at })
    })
    .transpose()
}

pub fn create_integration(conn: &Connection, i: &Integration) -> Result<()> {
    const OP: &str = "create_integration";
    conn.execute(
        "INSERT INTO integrations (id, kind, created_at, doc) VALUES (?1, ?2, ?3, ?4)",
        params![i.id, i.kind.as_str(), i.created_at, json(i, OP)?],
    )
    .ctx(OP)?;
    Ok(())
}

pub fn get_integration(conn: &Connection, id: &str) -> Result<Option<Integration>> {
    const OP: &str = "get_integration";
    let doc: Option<String> =
        conn.query_row("SELECT doc FROM integrations WHERE id = ?1", [id], |r| r.get(0)).optional().ctx(OP)?;
    doc.map(|d| parse(&d, OP)).transpose()
}

pub fn list_integrations(conn: &Connection, kind: Option<IntegrationKind>, limit: usize) -> Result<Vec<Integration>> {
    const OP: &str = "list_integrations";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut st = conn
        .prepare("SELECT doc FROM integrations WHERE ?1 IS NULL OR kind = ?1 ORDER BY created_at, id LIMIT ?2")
        .ctx(OP)?;
    let docs = st.query_map(params![kind.map(IntegrationKind::as_str), limit], |r| r.get::<_, String>(0)).ctx(OP)?;
    docs.map(|d| parse(&d.ctx(OP)?, OP)).collect()
}

pub fn delete_integration(conn: &mut Connection, id: &str) -> Result<bool> {
    const OP: &str = "delete_integration";
    let tx = conn.transaction().ctx(OP)?;
    let n = tx.execute("DELETE FROM integrations WHERE id = ?1", [id]).ctx(OP)?;
    tx.execute("DELETE FROM integration_history WHERE integration_id = ?1", [id]).ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(n > 0)
}

/// Inserts or replaces a delivery record, and drops records older than [`HISTORY_TTL_MS`].
pub fn record_delivery(conn: &mut Connection, d: &Delivery) -> Result<()> {
    const OP: &str = "record_delivery";
    let tx = conn.transaction().ctx(OP)?;
    tx.execute(
        "INSERT INTO integration_history (id, integration_id, created_at, doc) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
        params![d.id, d.integration_id, d.created_at, json(d, OP)?],
    )
    .ctx(OP)?;
    tx.execute("DELETE FROM integration_history WHERE created_at < ?1", [d.updated_at - HISTORY_TTL_MS]).ctx(OP)?;
    tx.commit().ctx(OP)?;
    Ok(())
}

/// Newest first.
pub fn deliveries(conn: &Connection, integration_id: &str, limit: usize) -> Result<Vec<Delivery>> {
    const OP: &str = "deliveries";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut st = conn
        .prepare(
            "SELECT doc FROM integration_history WHERE integration_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2",
        )
        .ctx(OP)?;
    let docs = st.query_map(params![integration_id, limit], |r| r.get::<_, String>(0)).ctx(OP)?;
    docs.map(|d| parse(&d.ctx(OP)?, OP)).collect()
}
