//! Incoming webhooks over HTTP (§6): `POST /hooks/<integrationId>/<token>` with a JSON body
//! `{text, attachments?}` posts into the integration's room as its user. Independent of the HTTP
//! server: the router hands over the path and the body and writes back the status and JSON.
//!
//! Answers (RC-shaped): `200 {success: true, message}`; `404 {success: false, error: "error-not-found"}`
//! for an unknown id, a wrong token or a disabled integration alike; `400` for a bad body; `403` when
//! the integration's user may not post there (left the room, read-only, archived); `429` above
//! [`HOOK_BURST`] posts at once / one per [`HOOK_EVERY`] per integration (§7.1); `500` for store failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::chat::ChatError;
use serde_json::{json, Value};

use super::Chat;

/// Path prefix of incoming webhooks.
pub const HOOKS_PREFIX: &str = "/hooks/";
/// Largest accepted body.
pub const MAX_HOOK_BODY: usize = 64 * 1024;
/// Posts per integration at once, then one per [`HOOK_EVERY`].
pub const HOOK_BURST: u32 = 10;
pub const HOOK_EVERY: Duration = Duration::from_secs(1);

/// Whether `path` (without query) is an incoming webhook route.
#[must_use]
pub fn is_hook_path(path: &str) -> bool {
    path.starts_with(HOOKS_PREFIX)
}

fn failure(status: u16, error: &str, message: &str) -> (u16, Value) {
    (status, json!({ "success": false, "error": error, "message": message }))
}

fn status_of(e: &ChatError) -> u16 {
    match e {
        ChatError::NotFound { .. } | ChatError::Unauthenticated | ChatError::Deactivated => 404,
        ChatError::Invalid { .. } | ChatError::TooLong { .. } => 400,
        ChatError::Storage { .. } | ChatError::Unavailable => 500,
        _ => 403,
    }
}

/// Handles `POST <path>` with `body`; returns the HTTP status and the JSON to send.
pub async fn handle(chat: &Arc<Chat>, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let Some(rest) = path.strip_prefix(HOOKS_PREFIX) else {
        return failure(404, "error-not-found", "not found");
    };
    let mut parts = rest.trim_end_matches('/').split('/');
    let (Some(id), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return failure(404, "error-not-found", "integration not found");
    };
    if method != "POST" {
        return failure(405, "error-method-not-allowed", "use POST");
    }
    if body.len() > MAX_HOOK_BODY {
        return failure(413, "error-too-long", "body too large");
    }
    if !chat.hook_limits.allow(&id.to_owned(), Instant::now()) {
        return failure(429, "error-too-many-requests", "too many requests for this integration");
    }
    let data: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return failure(400, "error-invalid-param", "the body must be a JSON object"),
    };
    match chat.service().post_incoming(id, token, &data).await {
        Ok(out) => {
            let message = out.value.message.clone();
            chat.apply(out.effects).await;
            (200, json!({ "success": true, "message": message }))
        }
        Err(e) => {
            let shown = if status_of(&e) == 404 { "integration not found".to_owned() } else { e.to_string() };
            let id = if status_of(&e) == 404 { "error-not-found" } else { e.id() };
            if status_of(&e) == 500 {
                tracing::warn!(error = %e, "incoming webhook failed");
                return failure(500, "error-internal", "internal error");
            }
            failure(status_of(&e), id, &shown)
        }
    }
}
