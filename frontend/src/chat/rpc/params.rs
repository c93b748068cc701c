//! Typed access to a method's parameters, shared by every surface (socket invokes, REST).

use ::chat::ids::{MessageId, RoomId};
use ::chat::roles::Role;
use ::chat::service::UserInput;
use ::chat::ChatError;
use serde_json::{Map, Value};

pub fn invalid(field: &'static str, reason: &'static str) -> ChatError {
    ChatError::Invalid { field, reason }
}

/// The JSON object a method receives (socket `data`, or a REST body/query), with typed accessors.
pub struct Params(pub Map<String, Value>);

impl Params {
    pub fn opt_str(&self, key: &'static str) -> Result<Option<&str>, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(key, "must be a string")),
        }
    }

    pub fn str(&self, key: &'static str) -> Result<&str, ChatError> {
        self.opt_str(key)?.ok_or_else(|| invalid(key, "is required"))
    }

    pub fn opt_u64(&self, key: &'static str) -> Result<Option<u64>, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| invalid(key, "must be a non-negative integer")),
        }
    }

    pub fn opt_i64(&self, key: &'static str) -> Result<Option<i64>, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| invalid(key, "must be an integer")),
        }
    }

    pub fn bool(&self, key: &'static str) -> Result<bool, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(key, "must be a boolean")),
        }
    }

    pub fn strings(&self, key: &'static str) -> Result<Vec<String>, ChatError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| invalid(key, "must be a list of strings")))
                .collect(),
            Some(_) => Err(invalid(key, "must be a list of strings")),
        }
    }

    pub fn rid(&self) -> Result<RoomId, ChatError> {
        Ok(RoomId::from(self.str("rid")?))
    }

    /// `msgId`, or Rocket.Chat's `_id`.
    pub fn msg_id(&self) -> Result<MessageId, ChatError> {
        let id = match self.opt_str("msgId")? {
            Some(id) => id,
            None => self.str("_id")?,
        };
        Ok(MessageId::from(id))
    }

    pub fn limit(&self) -> Result<Option<usize>, ChatError> {
        Ok(self.opt_u64("limit")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
    }

    pub fn user_input(&self) -> Result<UserInput, ChatError> {
        let roles = match self.0.get("roles") {
            None | Some(Value::Null) => None,
            Some(_) => Some(
                self.strings("roles")?
                    .iter()
                    .map(|r| Role::parse(r).ok_or_else(|| invalid("roles", "unknown role")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(UserInput {
            username: self.str("username")?.to_owned(),
            name: self.opt_str("name")?.map(str::to_owned),
            email: self.opt_str("email")?.map(str::to_owned),
            password: self.str("password")?.to_owned(),
            roles,
        })
    }
}
