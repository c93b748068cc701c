//! The chat's access control, in front of the node's other rules:
//! - `room/<rid>`: members only; a non-member gets exactly the error of a room that does not exist;
//! - `user/<uid>`: that user only, with a live session;
//! - `sys/…`: never (frontends' control channel);
//! - `presence/<uid>`: any user with a live session (guests: users they share a room with);
//! - no client `#publish` into `room/`, `user/` or `sys/`: chat events go through the RPCs.
//!
//! Everything else is decided by the inner access control (e.g. `--auth-required-prefix`).

use std::sync::Arc;

use ::chat::ids::UserId;
use ::chat::service::PRESENCE_CHANNEL_PREFIX;
use ::chat::ChatError;
use async_trait::async_trait;
use protocol::ScError;
use serde_json::{Map, Value};

use super::{to_sc_error, Chat, SERVER_ONLY_PREFIXES};
use crate::acl::{AccessControl, SocketInfo, UpgradeRequest, Verdict};

pub struct ChatAcl {
    chat: Arc<Chat>,
    inner: Arc<dyn AccessControl>,
}

impl ChatAcl {
    #[must_use]
    pub fn new(chat: Arc<Chat>, inner: Arc<dyn AccessControl>) -> Self {
        Self { chat, inner }
    }
}

fn server_only(channel: &str) -> bool {
    SERVER_ONLY_PREFIXES.iter().any(|p| channel.starts_with(p))
}

#[async_trait]
impl AccessControl for ChatAcl {
    async fn handshake(&self, socket: SocketInfo<'_>, request: &UpgradeRequest) -> Verdict<Map<String, Value>> {
        self.chat.track(&socket);
        self.inner.handshake(socket, request).await
    }

    async fn subscribe(&self, socket: SocketInfo<'_>, channel: &str, data: Option<&Value>) -> Verdict<Value> {
        let caller = self.chat.track(&socket);
        if let Some(uid) = channel.strip_prefix(PRESENCE_CHANNEL_PREFIX) {
            let Some(caller) = caller else { return Verdict::Block(to_sc_error(&ChatError::Unauthenticated)) };
            return match self.chat.service().check_presence(&caller, &UserId::from(uid)).await {
                Ok(()) => Verdict::Allow,
                Err(e) => Verdict::Block(to_sc_error(&e)),
            };
        }
        match self.chat.service().check_channel(caller.as_ref(), channel).await {
            Some(Ok(())) => Verdict::Allow,
            Some(Err(e)) => Verdict::Block(to_sc_error(&e)),
            None if server_only(channel) => Verdict::Block(
                ScError::new("ChatError", "not allowed: reserved channel").with("error", "error-not-allowed"),
            ),
            None => self.inner.subscribe(socket, channel, data).await,
        }
    }

    async fn publish_in(&self, socket: SocketInfo<'_>, channel: &str, data: Option<&Value>) -> Verdict<Value> {
        if server_only(channel) {
            return Verdict::Block(
                ScError::new("ChatError", "not allowed: only the server publishes here; use the chat methods")
                    .with("error", "error-not-allowed"),
            );
        }
        self.inner.publish_in(socket, channel, data).await
    }

    fn filters_publish_out(&self) -> bool {
        self.inner.filters_publish_out()
    }

    fn publish_out(&self, socket: SocketInfo<'_>, channel: &str, data: Option<&Value>) -> Verdict<Value> {
        self.inner.publish_out(socket, channel, data)
    }

    async fn event(&self, socket: SocketInfo<'_>, event: &str, data: Option<&Value>) -> Verdict<Value> {
        self.chat.track(&socket);
        self.inner.event(socket, event, data).await
    }

    fn disconnected(&self, socket: SocketInfo<'_>) {
        self.chat.disconnected(socket.key);
        self.inner.disconnected(socket);
    }
}
