//! MongoDB operations for presence (the user's manual status, collection `user_status`) and webhook
//! integrations (`integrations`, `integration_history` with a TTL index on `expireAt`). Documents are
//! the domain structs in camelCase plus `_id`.

use mongodb::bson::{self, doc, DateTime, Document};

use super::{err, MongoStore};
use crate::ids::UserId;
use crate::integration::{Delivery, Integration, IntegrationKind, HISTORY_TTL_MS};
use crate::presence::Manual;
use crate::{ChatError, Result};

fn to_doc<T: serde::Serialize>(v: &T, id: &str, op: &'static str) -> Result<Document> {
    let mut d = bson::to_document(v).map_err(|e| ChatError::storage(op, e))?;
    d.insert("_id", id);
    Ok(d)
}

fn from_doc<T: serde::de::DeserializeOwned>(d: Document, op: &'static str) -> Result<T> {
    bson::from_document(d).map_err(|e| ChatError::storage(op, e))
}

pub(super) async fn user_status(s: &MongoStore, uid: &UserId) -> Result<Option<Manual>> {
    const OP: &str = "user_status";
    let d = s.raw("user_status").find_one(doc! {"_id": uid.as_str()}).await.map_err(err(OP))?;
    d.map(|d| from_doc(d, OP)).transpose()
}

pub(super) async fn set_user_status(s: &MongoStore, uid: &UserId, m: &Manual) -> Result<()> {
    const OP: &str = "set_user_status";
    m.validate()?;
    s.raw("user_status")
        .replace_one(doc! {"_id": uid.as_str()}, to_doc(m, uid.as_str(), OP)?)
        .upsert(true)
        .await
        .map_err(err(OP))?;
    Ok(())
}

pub(super) async fn create_integration(s: &MongoStore, i: &Integration) -> Result<()> {
    const OP: &str = "create_integration";
    s.raw("integrations").insert_one(to_doc(i, &i.id, OP)?).await.map_err(err(OP))?;
    Ok(())
}

pub(super) async fn get_integration(s: &MongoStore, id: &str) -> Result<Option<Integration>> {
    const OP: &str = "get_integration";
    let d = s.raw("integrations").find_one(doc! {"_id": id}).await.map_err(err(OP))?;
    d.map(|d| from_doc(d, OP)).transpose()
}

pub(super) async fn list_integrations(
    s: &MongoStore,
    kind: Option<IntegrationKind>,
    limit: usize,
) -> Result<Vec<Integration>> {
    const OP: &str = "list_integrations";
    let filter = match kind {
        Some(k) => doc! {"type": k.as_str()},
        None => doc! {},
    };
    let cursor = s
        .raw("integrations")
        .find(filter)
        .sort(doc! {"createdAt": 1, "_id": 1})
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .await
        .map_err(err(OP))?;
    s.collect(cursor, OP).await?.into_iter().map(|d| from_doc(d, OP)).collect()
}

pub(super) async fn delete_integration(s: &MongoStore, id: &str) -> Result<bool> {
    const OP: &str = "delete_integration";
    let r = s.raw("integrations").delete_one(doc! {"_id": id}).await.map_err(err(OP))?;
    s.raw("integration_history").delete_many(doc! {"integrationId": id}).await.map_err(err(OP))?;
    Ok(r.deleted_count > 0)
}

pub(super) async fn record_delivery(s: &MongoStore, d: &Delivery) -> Result<()> {
    const OP: &str = "record_delivery";
    let mut document = to_doc(d, &d.id, OP)?;
    // TTL index on `expireAt` drops old records (§1.8 "TTL-expired").
    document.insert("expireAt", DateTime::from_millis(d.created_at.saturating_add(HISTORY_TTL_MS)));
    s.raw("integration_history")
        .replace_one(doc! {"_id": d.id.as_str()}, document)
        .upsert(true)
        .await
        .map_err(err(OP))?;
    Ok(())
}

pub(super) async fn deliveries(s: &MongoStore, integration_id: &str, limit: usize) -> Result<Vec<Delivery>> {
    const OP: &str = "deliveries";
    let cursor = s
        .raw("integration_history")
        .find(doc! {"integrationId": integration_id})
        .sort(doc! {"createdAt": -1, "_id": -1})
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .await
        .map_err(err(OP))?;
    s.collect(cursor, OP).await?.into_iter().map(|d| from_doc(d, OP)).collect()
}
