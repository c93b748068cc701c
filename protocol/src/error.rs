//! SocketCluster's error object, as it travels in a reply's `error` field.
//!
//! SocketCluster "dehydrates" an error into `message`, `name` and any custom
//! fields (`statusCode`, `isBadToken`, `expiry`, …); stacks are never sent.
//! `socketcluster-client` rehydrates it into an `Error` with those properties.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Error names the frontend uses, as `socketcluster-client` and apps know them.
pub mod names {
    pub const INVALID_ACTION: &str = "InvalidActionError";
    pub const INVALID_ARGUMENTS: &str = "InvalidArgumentsError";
    pub const AUTH_TOKEN_EXPIRED: &str = "AuthTokenExpiredError";
    pub const AUTH_TOKEN_INVALID: &str = "AuthTokenInvalidError";
    pub const AUTH_TOKEN_NOT_BEFORE: &str = "AuthTokenNotBeforeError";
    pub const AUTH_TOKEN: &str = "AuthTokenError";
    pub const SILENT_MIDDLEWARE_BLOCKED: &str = "SilentMiddlewareBlockedError";
    pub const HANDSHAKE_DENIED: &str = "HandshakeDenied";
    pub const AUTH_REQUIRED: &str = "AuthRequiredError";
    pub const RATE_LIMITED: &str = "RateLimitError";
    pub const LIMIT_EXCEEDED: &str = "LimitExceededError";
    pub const UNKNOWN_EVENT: &str = "UnknownEventError";
    pub const INTERNAL: &str = "InternalError";
    pub const BROKER_UNAVAILABLE: &str = "BrokerUnavailableError";
}

/// An error as sent to a client: `message`, `name`, then custom fields.
#[derive(Clone, Debug, PartialEq)]
pub struct ScError {
    pub name: String,
    pub message: String,
    /// Custom fields, e.g. `isBadToken` or `statusCode`.
    pub extra: Map<String, Value>,
}

impl ScError {
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self { name: name.into(), message: message.into(), extra: Map::new() }
    }

    /// Adds a custom field.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn invalid_action(message: impl Into<String>) -> Self {
        Self::new(names::INVALID_ACTION, message)
    }

    pub fn invalid_arguments(message: impl Into<String>) -> Self {
        Self::new(names::INVALID_ARGUMENTS, message)
    }

    /// What a hook's block without a reason looks like to the client.
    pub fn silently_blocked(action: &str) -> Self {
        Self::new(names::SILENT_MIDDLEWARE_BLOCKED, format!("The {action} AGAction was blocked by inbound middleware"))
            .with("type", "inbound")
    }

    /// Converts to the JSON value carried in a reply.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut map = Map::with_capacity(self.extra.len() + 2);
        map.insert("message".into(), Value::String(self.message.clone()));
        map.insert("name".into(), Value::String(self.name.clone()));
        for (k, v) in &self.extra {
            if k != "message" && k != "name" {
                map.insert(k.clone(), v.clone());
            }
        }
        Value::Object(map)
    }
}

impl std::fmt::Display for ScError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for ScError {}

impl Serialize for ScError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("message", &self.message)?;
        map.serialize_entry("name", &self.name)?;
        for (k, v) in &self.extra {
            if k != "message" && k != "name" {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// Formats seconds since the Unix epoch as an ISO-8601 UTC timestamp with
/// milliseconds, the shape of JavaScript's `Date.toJSON()` that SocketCluster
/// puts in `AuthTokenExpiredError.expiry`.
#[must_use]
pub fn iso8601_utc(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_message_then_name_then_custom_fields() {
        let e = ScError::new("MyError", "nope").with("isBadToken", true);
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"message":"nope","name":"MyError","isBadToken":true}"#);
        assert_eq!(serde_json::to_value(&e).unwrap(), e.to_value());
    }

    #[test]
    fn iso_dates_match_javascript() {
        // new Date(1795444530000).toJSON() === "2026-11-23T14:35:30.000Z"
        assert_eq!(iso8601_utc(1_795_444_530), "2026-11-23T14:35:30.000Z");
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00.000Z");
    }
}
