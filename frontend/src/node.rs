//! The state one frontend node shares among its connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::acl::{AccessControl, AllowAll};
use crate::auth::TokenAuth;
use crate::config::Config;
use crate::handlers::Handlers;
use crate::hub::Hub;
use crate::metrics::{Histograms, Metrics};
use crate::registry::Registry;
use crate::stats::Stats;
use crate::upstream::Upstream;

/// What the application plugs into a node: access control and custom events.
#[derive(Clone)]
pub struct App {
    pub acl: Arc<dyn AccessControl>,
    pub handlers: Handlers,
}

impl Default for App {
    fn default() -> Self {
        Self { acl: Arc::new(AllowAll), handlers: Handlers::new() }
    }
}

/// Read buffer each socket starts with. tungstenite's default (128 KiB,
/// allocated up front) would make an idle socket cost far more than its state.
const WS_READ_BUFFER: usize = 4 * 1024;
/// Bytes tungstenite gathers before writing; a turn's frames go out in one write.
const WS_WRITE_BUFFER: usize = 64 * 1024;

pub struct Node {
    pub config: Config,
    pub hub: Arc<Hub>,
    /// Present in cluster mode: brokers, the state server, resharding.
    pub upstream: Option<Arc<Upstream>>,
    pub auth: TokenAuth,
    pub acl: Arc<dyn AccessControl>,
    pub handlers: Handlers,
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
        let upstream = config
            .cluster
            .clone()
            .map(|c| Arc::new(Upstream::new(c, hub.clone(), histograms.reshard_prepare_seconds.clone())));
        let stats = Arc::new(Stats::default());
        let metrics = Metrics::new(stats.clone(), hub.clone(), upstream.clone(), histograms);
        Arc::new(Self {
            auth: TokenAuth::new(&key, config.auth_default_expiry),
            config,
            hub,
            upstream,
            acl: app.acl,
            handlers: app.handlers,
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
}
