//! REST errors: `{success: false, error: <message>, errorType: <stable id>}` with an HTTP status.
//! Chat errors keep their `ChatError::id`; errors of the HTTP layer itself have their own ids
//! (`error-length-required`, `error-too-large`, `error-invalid-body`, `error-unknown-endpoint`, …).

use ::chat::ChatError;
use serde_json::{json, Value};
use tracing::warn;

/// An error answer.
#[derive(Clone, Debug)]
pub struct RestError {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
    /// `field` and `limit` of validation errors, as the socket surface reports them.
    pub field: Option<&'static str>,
    pub limit: Option<u64>,
}

impl RestError {
    /// An error of the HTTP layer.
    pub fn http(status: u16, error_type: &'static str, message: impl Into<String>) -> Self {
        RestError { status, error_type, message: message.into(), field: None, limit: None }
    }

    /// 413: a body (or file) longer than `limit` bytes.
    pub fn too_large(limit: u64, got: u64) -> Self {
        RestError {
            limit: Some(limit),
            ..Self::http(413, "error-too-large", format!("the body is too large: {got} > {limit} bytes"))
        }
    }

    /// 401 for a request without valid credentials.
    pub fn unauthorized() -> Self {
        Self::from(ChatError::Unauthenticated)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({ "success": false, "error": self.message, "errorType": self.error_type });
        if let Some(f) = self.field {
            v["field"] = f.into();
        }
        if let Some(l) = self.limit {
            v["limit"] = l.into();
        }
        v
    }
}

impl From<ChatError> for RestError {
    fn from(e: ChatError) -> Self {
        let status = match &e {
            ChatError::NotFound { .. } => 404,
            ChatError::NotAllowed { .. } | ChatError::ReadOnly => 403,
            ChatError::Unauthenticated | ChatError::Deactivated => 401,
            // A file past `FileUpload_MaxFileSize` is a payload too large; other lengths are input errors.
            ChatError::TooLong { field: "file", .. } => 413,
            ChatError::Storage { .. } => 500,
            ChatError::Unavailable => 503,
            // Rate-limit refusals (their id says so) are 429; every other refusal is the caller's input.
            e if e.id().contains("rate") || e.id().contains("too-many") => 429,
            _ => 400,
        };
        let message = match &e {
            ChatError::Storage { .. } | ChatError::Unavailable => {
                warn!(error = %e, source = ?std::error::Error::source(&e), "chat store failed");
                "internal error".to_owned()
            }
            e => e.to_string(),
        };
        let (field, limit) = match &e {
            ChatError::Invalid { field, .. } => (Some(*field), None),
            ChatError::TooLong { field, limit, .. } => (Some(*field), Some(*limit as u64)),
            _ => (None, None),
        };
        RestError { status, error_type: e.id(), message, field, limit }
    }
}
