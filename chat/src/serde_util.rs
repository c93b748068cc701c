//! Serde helpers shared by the stored types.

use serde::{Deserialize, Deserializer};

/// Reads a boolean that a store may hand back as an integer (0 or 1). Real MongoDB and SQLite's
/// mapping keep booleans, but the `nx-27017` stand-in turns a boolean written by `$set` into an
/// integer; accepting both keeps the documents readable on either.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum AnyBool {
        Bool(bool),
        Int(i64),
    }
    match AnyBool::deserialize(d)? {
        AnyBool::Bool(b) => Ok(b),
        AnyBool::Int(0) => Ok(false),
        AnyBool::Int(1) => Ok(true),
        AnyBool::Int(_) => Err(serde::de::Error::custom("expected a boolean")),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::lenient_bool")]
        b: bool,
    }

    #[test]
    fn booleans_and_zero_one_are_accepted() {
        assert!(serde_json::from_str::<T>(r#"{"b": true}"#).unwrap().b);
        assert!(serde_json::from_str::<T>(r#"{"b": 1}"#).unwrap().b);
        assert!(!serde_json::from_str::<T>(r#"{"b": 0}"#).unwrap().b);
        assert!(serde_json::from_str::<T>(r#"{"b": 2}"#).is_err());
    }
}
