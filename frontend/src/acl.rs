//! Access-control hooks: the places where an application decides who may do what.
//!
//! Each hook sees the socket (its id, address, auth token) and the action, and
//! returns a [`Verdict`]: allow, rewrite, or block with the error the client
//! gets. The default implementation of every hook allows, so an application
//! overrides only what it needs. Hooks run on the socket's own task, one
//! packet at a time, like SocketCluster's middleware streams: a slow hook
//! delays only that socket.

use std::net::SocketAddr;

use async_trait::async_trait;
use protocol::error::names;
use protocol::{Codec, ScError};
use serde_json::{Map, Value};

use crate::auth::AuthToken;

/// What a hook decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict<T> {
    Allow,
    /// Allow, with this value instead of the client's (see each hook for what it replaces).
    Rewrite(T),
    /// Refuse; the client gets this error if it asked for a reply.
    Block(ScError),
}

/// The socket an action comes from.
#[derive(Clone, Copy, Debug)]
pub struct SocketInfo<'a> {
    /// The id the client sees (`socket.id`).
    pub id: &'a str,
    /// The node-local number that [`crate::registry::Registry`] and the hub use.
    pub key: u64,
    pub remote: SocketAddr,
    pub codec: Codec,
    pub auth: Option<&'a AuthToken>,
}

/// The HTTP upgrade request behind a socket.
#[derive(Clone, Debug, Default)]
pub struct UpgradeRequest {
    pub path: String,
    pub query: String,
    pub origin: Option<String>,
    pub user_agent: Option<String>,
}

#[async_trait]
pub trait AccessControl: Send + Sync + 'static {
    /// On `#handshake`, after the token (if any) was checked. A block sends the
    /// error and closes with its `statusCode` field, or 4008. A rewrite adds
    /// fields to the handshake reply.
    async fn handshake(&self, _socket: SocketInfo<'_>, _request: &UpgradeRequest) -> Verdict<Map<String, Value>> {
        Verdict::Allow
    }

    /// On `#subscribe`. A rewrite becomes the `data` of the subscribe ack.
    async fn subscribe(&self, _socket: SocketInfo<'_>, _channel: &str, _data: Option<&Value>) -> Verdict<Value> {
        Verdict::Allow
    }

    /// On a client's `#publish`. A rewrite replaces the published data.
    async fn publish_in(&self, _socket: SocketInfo<'_>, _channel: &str, _data: Option<&Value>) -> Verdict<Value> {
        Verdict::Allow
    }

    /// Whether [`AccessControl::publish_out`] does anything. When false the
    /// node skips the per-recipient call and sends every recipient the same
    /// pre-encoded bytes.
    fn filters_publish_out(&self) -> bool {
        false
    }

    /// For each recipient of a publish. A rewrite replaces the data for this
    /// recipient only (and costs an encode for it); a block silently drops
    /// this copy. Synchronous: it runs once per recipient on the fan-out path.
    fn publish_out(&self, _socket: SocketInfo<'_>, _channel: &str, _data: Option<&Value>) -> Verdict<Value> {
        Verdict::Allow
    }

    /// On a custom event (transmit or invoke), before its handler. A rewrite
    /// replaces the data the handler gets.
    async fn event(&self, _socket: SocketInfo<'_>, _event: &str, _data: Option<&Value>) -> Verdict<Value> {
        Verdict::Allow
    }

    /// After the socket closed and left every channel. Synchronous and called
    /// once per socket, from its own task.
    fn disconnected(&self, _socket: SocketInfo<'_>) {}
}

/// Allows everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

#[async_trait]
impl AccessControl for AllowAll {}

/// Channels under any of the prefixes need an authenticated socket to
/// subscribe or publish (`--auth-required-prefix`).
#[derive(Clone, Debug, Default)]
pub struct AuthRequiredPrefixes {
    prefixes: Vec<String>,
}

impl AuthRequiredPrefixes {
    #[must_use]
    pub fn new(prefixes: Vec<String>) -> Self {
        Self { prefixes }
    }

    fn check<T>(&self, socket: SocketInfo<'_>, channel: &str, action: &str) -> Verdict<T> {
        if socket.auth.is_none() && self.prefixes.iter().any(|p| channel.starts_with(p.as_str())) {
            Verdict::Block(
                ScError::new(names::AUTH_REQUIRED, format!("{action} to {channel} needs an authenticated socket"))
                    .with("channel", channel),
            )
        } else {
            Verdict::Allow
        }
    }
}

#[async_trait]
impl AccessControl for AuthRequiredPrefixes {
    async fn subscribe(&self, socket: SocketInfo<'_>, channel: &str, _data: Option<&Value>) -> Verdict<Value> {
        self.check(socket, channel, "subscribe")
    }

    async fn publish_in(&self, socket: SocketInfo<'_>, channel: &str, _data: Option<&Value>) -> Verdict<Value> {
        self.check(socket, channel, "publish")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(auth: Option<&AuthToken>) -> SocketInfo<'_> {
        SocketInfo { id: "s", key: 1, remote: SocketAddr::from(([127, 0, 0, 1], 1)), codec: Codec::Json, auth }
    }

    #[tokio::test]
    async fn prefixed_channels_need_auth_and_others_do_not() {
        let acl = AuthRequiredPrefixes::new(vec!["private/".into()]);
        let token = AuthToken { signed: String::new(), claims: Map::new() };
        assert!(
            matches!(acl.subscribe(socket(None), "private/x", None).await, Verdict::Block(e) if e.name == "AuthRequiredError")
        );
        assert!(matches!(acl.publish_in(socket(None), "private/x", None).await, Verdict::Block(_)));
        assert_eq!(acl.subscribe(socket(None), "public/x", None).await, Verdict::Allow);
        assert_eq!(acl.subscribe(socket(Some(&token)), "private/x", None).await, Verdict::Allow);
    }
}
