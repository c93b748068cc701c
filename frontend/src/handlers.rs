//! Custom events: the RPC surface applications (and later the chat layer) add.
//!
//! A handler gets the calling socket's [`Context`] and the event's data, and
//! returns the reply data or an error. Invokes (`cid`) get the reply; transmits
//! run the handler and drop it. Side effects on the socket itself — issuing or
//! removing its auth token — are requested through the context and applied by
//! the session after the handler returns, in order, before the reply is sent.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use protocol::ScError;
use serde_json::{Map, Value};

use crate::acl::SocketInfo;

/// What a handler asked the session to do to its socket.
#[derive(Clone, Debug, PartialEq)]
pub enum SocketAction {
    /// Sign these claims and send the token with `#setAuthToken`.
    SetAuthToken(Map<String, Value>),
    /// Deauthenticate and send `#removeAuthToken`.
    RemoveAuthToken,
}

/// The calling socket, as a handler sees it.
pub struct Context<'a> {
    pub socket: SocketInfo<'a>,
    actions: Vec<SocketAction>,
}

impl<'a> Context<'a> {
    #[must_use]
    pub fn new(socket: SocketInfo<'a>) -> Self {
        Self { socket, actions: Vec::new() }
    }

    /// Authenticates the socket with a server-signed token carrying `claims`
    /// (SocketCluster's `socket.setAuthToken`).
    pub fn set_auth_token(&mut self, claims: Map<String, Value>) {
        self.actions.push(SocketAction::SetAuthToken(claims));
    }

    /// Deauthenticates the socket (SocketCluster's `socket.deauthenticate`).
    pub fn remove_auth_token(&mut self) {
        self.actions.push(SocketAction::RemoveAuthToken);
    }

    #[must_use]
    pub fn into_actions(self) -> Vec<SocketAction> {
        self.actions
    }
}

pub type HandlerResult = Result<Option<Value>, ScError>;

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn call(&self, ctx: &mut Context<'_>, data: Option<Value>) -> HandlerResult;
}

/// A handler from a plain function that needs no await.
pub struct FnHandler<F>(pub F);

#[async_trait]
impl<F> Handler for FnHandler<F>
where
    F: Fn(&mut Context<'_>, Option<Value>) -> HandlerResult + Send + Sync + 'static,
{
    async fn call(&self, ctx: &mut Context<'_>, data: Option<Value>) -> HandlerResult {
        (self.0)(ctx, data)
    }
}

/// Event name → handler.
#[derive(Clone, Default)]
pub struct Handlers {
    map: HashMap<String, Arc<dyn Handler>>,
}

impl Handlers {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a handler. Names starting with `#` are the protocol's and are refused.
    ///
    /// # Panics
    /// On a `#` name or a name registered twice: both are programming errors
    /// found at start-up, never caused by a peer.
    pub fn register(&mut self, event: &str, handler: impl Handler) -> &mut Self {
        assert!(!event.starts_with('#'), "event names starting with # are reserved: {event}");
        let previous = self.map.insert(event.to_owned(), Arc::new(handler));
        assert!(previous.is_none(), "handler for {event} registered twice");
        self
    }

    /// Registers a synchronous function as a handler.
    pub fn register_fn<F>(&mut self, event: &str, f: F) -> &mut Self
    where
        F: Fn(&mut Context<'_>, Option<Value>) -> HandlerResult + Send + Sync + 'static,
    {
        self.register(event, FnHandler(f))
    }

    #[must_use]
    pub fn get(&self, event: &str) -> Option<&Arc<dyn Handler>> {
        self.map.get(event)
    }
}
