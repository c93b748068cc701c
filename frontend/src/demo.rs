//! Demonstration RPCs behind `--demo-rpc`: enough to try a node with a real
//! client and to run the compatibility suite. `login` trusts anyone; the
//! chat layer brings real accounts.

use protocol::ScError;
use serde_json::{json, Map, Value};

use crate::handlers::Handlers;

/// Longest user name `login` accepts.
const MAX_USERNAME: usize = 64;

#[must_use]
pub fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.register_fn("echo", |_, data| Ok(data));
    h.register_fn("fail", |_, data| {
        let message = data.as_ref().and_then(|d| d.get("message")).and_then(Value::as_str).unwrap_or("demo failure");
        Err(ScError::new("DemoError", message))
    });
    h.register_fn("login", |ctx, data| {
        let username = data
            .as_ref()
            .and_then(|d| d.get("username"))
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty() && u.len() <= MAX_USERNAME)
            .ok_or_else(|| ScError::invalid_arguments("login needs a username of 1 to 64 bytes"))?;
        let mut claims = Map::new();
        claims.insert("username".into(), username.into());
        ctx.set_auth_token(claims);
        Ok(Some(json!({ "username": username })))
    });
    h
}
