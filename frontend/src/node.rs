//! The state one frontend node shares among its connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::acl::{AccessControl, AllowAll};
use crate::auth::TokenAuth;
use crate::config::Config;
use crate::handlers::Handlers;
use crate::http::HttpApp;
use crate::hub::Hub;
use crate::hub::Subscribed;
use crate::metrics::{Histograms, Metrics};
use crate::outbox::{Outgoing, Publication, SessionHandle};
use crate::registry::Registry;
use crate::stats::Stats;
use crate::upstream::{PublishError, Upstream};
use serde_json::Value;
use tokio::sync::mpsc;

/// What the application plugs into a node: access control, custom events, and HTTP routes.
#[derive(Clone)]
pub struct App {
    pub acl: Arc<dyn AccessControl>,
    pub handlers: Handlers,
    /// Paths served over plain HTTP beside `/health`, `/ready`, `/metrics` (the chat's REST API).
    pub http: Option<Arc<dyn HttpApp>>,
}

impl Default for App {
    fn default() -> Self {
        Self { acl: Arc::new(AllowAll), handlers: Handlers::new(), http: None }
    }
}

/// Read buffer each socket starts with, allocated and zero-filled when it
/// opens. tungstenite's default (128 KiB) would make an idle socket cost far
/// more than its state; 1 KiB holds the frames clients send most (pongs,
/// subscribes, small publishes), and a larger frame reserves its full length
/// when its header arrives (it is then read 1 KiB per call).
const WS_READ_BUFFER: usize = 1024;
/// Bytes tungstenite gathers before writing; a turn's frames go out in one write.
const WS_WRITE_BUFFER: usize = 64 * 1024;

/// Messages on a channel the application listens to (see [`Node::listen`]).
pub struct Listener {
    rx: mpsc::Receiver<Outgoing>,
}

impl Listener {
    /// The next message, or `None` once the listener was dropped from the channel.
    pub async fn recv(&mut self) -> Option<Arc<Publication>> {
        loop {
            match self.rx.recv().await? {
                Outgoing::Publication(p) => return Some(p),
                Outgoing::KickOut(_) => {}
            }
        }
    }
}

pub struct Node {
    pub config: Config,
    pub hub: Arc<Hub>,
    /// Present in cluster mode: brokers, the state server, resharding.
    pub upstream: Option<Arc<Upstream>>,
    pub auth: TokenAuth,
    pub acl: Arc<dyn AccessControl>,
    pub handlers: Handlers,
    pub http: Option<Arc<dyn HttpApp>>,
    pub stats: Arc<Stats>,
    pub metrics: Metrics,
    pub registry: Registry,
    pub(crate) ws_config: WebSocketConfig,
    next_socket: AtomicU64,
}

impl Node {
    /// Builds the node. Without an auth key in `config`, a random one is used
    /// and a warning says what that breaks.
    #[must_use]
    pub fn new(config: Config, app: App) -> Arc<Self> {
        let key = config.auth_key.clone().unwrap_or_else(|| {
            tracing::warn!(
                "no auth key set (--auth-key / SOCKETCLUSTER_AUTH_KEY): using a random key. \
                 Tokens issued now will be refused after a restart and by every other node."
            );
            TokenAuth::random_key()
        });
        let max = config.limits.max_frame_bytes;
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(WS_WRITE_BUFFER)
            // A turn's batch plus one more frame may sit in the buffer; beyond that the writer waits.
            .max_write_buffer_size(WS_WRITE_BUFFER + max.max(WS_WRITE_BUFFER) * 2)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let hub = Arc::new(Hub::default());
        let histograms = Histograms::default();
        let stats = Arc::new(Stats::default());
        let upstream = config.cluster.clone().map(|c| {
            Arc::new(Upstream::new(c, hub.clone(), stats.clone(), histograms.reshard_prepare_seconds.clone()))
        });
        let metrics = Metrics::new(stats.clone(), hub.clone(), upstream.clone(), histograms);
        Arc::new(Self {
            auth: TokenAuth::new(&key, config.auth_default_expiry),
            config,
            hub,
            upstream,
            acl: app.acl,
            handlers: app.handlers,
            http: app.http,
            stats,
            metrics,
            registry: Registry::default(),
            ws_config,
            next_socket: AtomicU64::new(1),
        })
    }

    pub(crate) fn next_socket_id(&self) -> u64 {
        self.next_socket.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes on a channel from the server side (an application event,
    /// not a client's `#publish`): through the owning broker in a cluster,
    /// straight to local subscribers otherwise. Access-control hooks for
    /// inbound publishes do not apply; outbound ones do, per recipient.
    pub async fn publish(&self, channel: &str, data: Option<Value>) -> Result<(), PublishError> {
        match &self.upstream {
            Some(up) => up.publish(channel, data.as_ref(), true).await,
            None => {
                self.hub.publish(&Publication::new(channel.into(), data));
                Ok(())
            }
        }
    }

    /// Subscribes the application itself to a channel, cluster-wide: every
    /// message published on it anywhere arrives on the returned listener
    /// (e.g. revocations every frontend must act on). Bounded like a
    /// socket's queue; a listener that falls behind is dropped from the
    /// channel and its receiver ends.
    pub async fn listen(&self, channel: &str) -> Listener {
        let (handle, rx, _control) = SessionHandle::new(self.next_socket_id(), self.config.limits.outbound_queue);
        let first = self.hub.subscribe(channel, &handle) == Subscribed::First;
        if let (true, Some(up)) = (first, &self.upstream) {
            up.subscribed(channel).await;
        }
        Listener { rx }
    }
}
