//! Secrets: argon2id password hashes (PHC strings) and random bearer tokens of which only a SHA-256 hash
//! is stored (§7.3). A token secret is shown to its owner once and never kept.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::limits::{MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};
use crate::{ChatError, Result};

/// Hashes a password with argon2id and a random salt (default parameters of the `argon2` crate).
pub fn hash_password(password: &str) -> Result<String> {
    validate_password(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| ChatError::invalid("password", "could not be hashed"))
}

/// Checks a password against a stored PHC string. A malformed stored hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Length bounds: 8 to 1,024 bytes (the upper bound caps hashing work per request).
pub fn validate_password(password: &str) -> Result<()> {
    if password.len() < MIN_PASSWORD_BYTES {
        return Err(ChatError::invalid("password", "must be at least 8 bytes"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ChatError::TooLong { field: "password", limit: MAX_PASSWORD_BYTES, got: password.len() });
    }
    Ok(())
}

/// A freshly issued bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The secret, 32 random bytes as 64 hex characters; give it to the client once.
    pub secret: String,
    /// What the store keeps (`tokenHash`).
    pub hash: String,
    /// Last four characters of the secret, for the token list UI.
    pub last_four: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken").field("hash", &self.hash).field("last_four", &self.last_four).finish()
    }
}

/// Issues a new random token.
pub fn issue_token() -> IssuedToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex(&bytes);
    let last_four = secret[secret.len() - 4..].to_owned();
    IssuedToken { hash: hash_token(&secret), secret, last_four }
}

/// SHA-256 of a token secret, hex encoded: the lookup key in `sessions.tokenHash`.
pub fn hash_token(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse!", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn password_length_is_bounded() {
        assert!(hash_password("short").is_err());
        assert!(hash_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let a = issue_token();
        let b = issue_token();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 64);
        assert_eq!(hash_token(&a.secret), a.hash);
        assert_ne!(a.hash, a.secret);
        assert!(a.secret.ends_with(&a.last_four));
        assert!(!format!("{a:?}").contains(&a.secret));
    }
}
