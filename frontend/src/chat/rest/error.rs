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
    /// For 429: when to try again (also sent as `Retry-After`, in whole seconds).
    pub retry_after_ms: Option<u64>,
}

impl RestError {
    /// An error of the HTTP layer.
    pub fn http(status: u16, error_type: &'static str, message: impl Into<String>) -> Self {
        RestError { status, error_type, message: message.into(), field: None, limit: None, retry_after_ms: None }
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
        if let Some(ms) = self.retry_after_ms {
            v["retryAfterMs"] = ms.into();
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
            ChatError::TooManyRequests { .. } => 429,
            ChatError::Storage { .. } => 500,
            ChatError::Unavailable => 503,
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
        let retry_after_ms = match &e {
            ChatError::TooManyRequests { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        };
        RestError { status, error_type: e.id(), message, field, limit, retry_after_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_errors_keep_their_id_and_get_the_matching_status() {
        let cases = [
            (ChatError::Unauthenticated, 401, "error-unauthorized"),
            (ChatError::NotFound { what: "room" }, 404, "error-not-found"),
            (ChatError::NotAllowed { reason: "x" }, 403, "error-not-allowed"),
            (ChatError::Invalid { field: "rid", reason: "is required" }, 400, "error-invalid-param"),
            (ChatError::TooLong { field: "msg", limit: 5000, got: 6000 }, 400, "error-too-long"),
            (ChatError::TooLong { field: "file", limit: 10, got: 11 }, 413, "error-too-long"),
            (ChatError::TooManyRequests { retry_after_ms: 1500 }, 429, "error-too-many-requests"),
            (ChatError::storage("op", std::io::Error::other("disk on fire")), 500, "error-internal"),
        ];
        for (e, status, id) in cases {
            let r = RestError::from(e);
            assert_eq!((r.status, r.error_type), (status, id));
            let v = r.to_json();
            assert_eq!((v["success"].clone(), v["errorType"].clone()), (json!(false), json!(id)));
            assert!(!v["error"].as_str().unwrap_or_default().contains("fire"), "store details stay in the log");
        }
        let r = RestError::from(ChatError::TooManyRequests { retry_after_ms: 1500 });
        assert_eq!(r.to_json()["retryAfterMs"], 1500);
        assert_eq!(RestError::from(ChatError::Invalid { field: "rid", reason: "x" }).to_json()["field"], "rid");
    }
}
