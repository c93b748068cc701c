//! HS256 auth tokens, as SocketCluster issues and checks them.
//!
//! A token's payload is any JSON object. The server adds `iat`, and `exp`
//! unless the payload sets one. Checking honours `exp` and `nbf` against the
//! caller's clock (passed in, so the rules are testable without waiting).
//! Only HS256 is accepted: a token whose header says `none` or any other
//! algorithm is invalid.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use protocol::error::{iso8601_utc, names};
use protocol::ScError;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A token the socket is authenticated with.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthToken {
    /// The signed JWT as the client holds it.
    pub signed: String,
    /// The payload (what `socket.authToken` shows client-side).
    pub claims: Map<String, Value>,
}

impl AuthToken {
    /// Expiry in seconds since the epoch, if the token has one.
    #[must_use]
    pub fn expiry(&self) -> Option<i64> {
        self.claims.get("exp").and_then(Value::as_i64)
    }

    #[must_use]
    pub fn is_expired(&self, now_secs: i64) -> bool {
        self.expiry().is_some_and(|exp| exp <= now_secs)
    }
}

/// Signs and checks tokens with one HS256 key.
pub struct TokenAuth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    default_expiry: Duration,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth").field("default_expiry", &self.default_expiry).finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl TokenAuth {
    #[must_use]
    pub fn new(key: &[u8], default_expiry: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Time claims are checked by `verify` against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            default_expiry,
        }
    }

    /// A random 32-byte key, for a node started without one.
    #[must_use]
    pub fn random_key() -> Vec<u8> {
        use rand::RngCore;
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    }

    /// Checks a signed token. The error is the one SocketCluster sends.
    pub fn verify(&self, signed: &str, now: i64) -> Result<AuthToken, ScError> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(signed, &self.decoding, &self.validation)
            .map_err(|e| ScError::new(names::AUTH_TOKEN_INVALID, invalid_reason(&e)).with("isBadToken", true))?;
        let token = AuthToken { signed: signed.to_owned(), claims: data.claims };
        if let Some(exp) = token.expiry() {
            if exp <= now {
                return Err(ScError::new(names::AUTH_TOKEN_EXPIRED, "jwt expired")
                    .with("expiry", iso8601_utc(exp))
                    .with("isBadToken", true));
            }
        }
        if let Some(nbf) = token.claims.get("nbf").and_then(Value::as_i64) {
            if nbf > now {
                return Err(ScError::new(names::AUTH_TOKEN_NOT_BEFORE, "jwt not active")
                    .with("date", iso8601_utc(nbf))
                    .with("isBadToken", false));
            }
        }
        Ok(token)
    }

    /// Signs a payload, adding `iat` and a default `exp` when it has none.
    pub fn sign(&self, mut claims: Map<String, Value>, now: i64) -> Result<AuthToken, ScError> {
        claims.insert("iat".into(), now.into());
        if !claims.contains_key("exp") {
            claims.insert("exp".into(), (now + self.default_expiry.as_secs() as i64).into());
        }
        let signed = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ScError::new(names::AUTH_TOKEN, format!("failed to sign token: {e}")))?;
        Ok(AuthToken { signed, claims })
    }
}

fn invalid_reason(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "invalid signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "invalid algorithm",
        _ => "invalid token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn signed_tokens_verify_and_carry_the_payload() {
        let auth = TokenAuth::new(b"k", Duration::from_secs(60));
        let t = auth.sign(claims(json!({"username": "alice"})), NOW).unwrap();
        assert_eq!(t.expiry(), Some(NOW + 60));
        let back = auth.verify(&t.signed, NOW + 1).unwrap();
        assert_eq!(back.claims["username"], "alice");
    }

    #[test]
    fn expired_tokens_are_refused_with_the_expiry() {
        let auth = TokenAuth::new(b"k", Duration::from_secs(60));
        let t = auth.sign(claims(json!({"exp": NOW - 5})), NOW).unwrap();
        let e = auth.verify(&t.signed, NOW).unwrap_err();
        assert_eq!(e.name, "AuthTokenExpiredError");
        assert_eq!(e.extra["expiry"], iso8601_utc(NOW - 5));
    }

    #[test]
    fn wrong_key_is_refused() {
        let t = TokenAuth::new(b"other", Duration::from_secs(60)).sign(Map::new(), NOW).unwrap();
        let e = TokenAuth::new(b"k", Duration::from_secs(60)).verify(&t.signed, NOW).unwrap_err();
        assert_eq!(e.name, "AuthTokenInvalidError");
        assert_eq!(e.extra["isBadToken"], true);
    }

    #[test]
    fn alg_none_is_refused() {
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!("{}.{}.", b64(json!({"alg":"none","typ":"JWT"})), b64(json!({"username":"mallory"})));
        let e = TokenAuth::new(b"k", Duration::from_secs(60)).verify(&token, NOW).unwrap_err();
        assert_eq!(e.name, "AuthTokenInvalidError");
    }

    #[test]
    fn not_yet_valid_tokens_are_refused_but_not_bad() {
        let auth = TokenAuth::new(b"k", Duration::from_secs(60));
        let t = auth.sign(claims(json!({"nbf": NOW + 100})), NOW).unwrap();
        let e = auth.verify(&t.signed, NOW).unwrap_err();
        assert_eq!(e.name, "AuthTokenNotBeforeError");
        assert_eq!(e.extra["isBadToken"], false);
    }
}
