//! The chat domain ([`chat::service::Service`]) wired into a frontend node: socket RPCs named after
//! Rocket.Chat's methods ([`rpc`]), an access-control layer that guards the chat channels ([`acl`]), and
//! the cluster-wide control channel that carries kicks and session revocations to every frontend.
//!
//! Channels: `room/<rid>` (room events; members only), `user/<uid>` (that user only), and
//! [`CONTROL_CHANNEL`] (frontends only: clients can neither subscribe nor publish to `sys/…`). Clients
//! never publish into `room/` or `user/`; every chat write is an RPC, stored first and then published
//! server-side with [`Node::publish`].
//!
//! Which local sockets belong to which user and session is learned from their auth tokens whenever a
//! hook sees them (handshake, subscribe, custom event) and at login ([`sockets::Sockets`]). A socket
//! can only enter `room/<rid>` through the subscribe hook, so every socket a kick must reach is known.
//!
//! The same operations are served over HTTP by [`rest`] (Rocket.Chat's REST names, uploads and
//! downloads), on the node's ports.

pub mod acl;
pub mod hooks_http;
pub mod presence;
mod ratebound;
pub mod rest;
pub mod rpc;
mod sockets;
pub mod web;
pub mod webhooks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use ::chat::files::FileStore;
use ::chat::ids::{RoomId, SessionId, UserId};
use ::chat::presence::{Changes, ConnStatus, Manual};
use ::chat::service::{presence_channel, room_channel, Caller, Effect, Service, ROOM_CHANNEL_PREFIX};
use ::chat::ChatError;
use protocol::codes::{self, CloseCode};
use protocol::ScError;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::acl::{AccessControl, SocketInfo};
use crate::config::Args;
use crate::error::ConfigError;
use crate::node::{App, Node};
use crate::outbox::Publication;
use presence::{presence_event, Presence, PresenceTiming};
use ratebound::KeyedBuckets;
use sockets::Sockets;
use webhooks::{WebhookConfig, Webhooks};

/// Store used by `--chat` without `--store`: a SQLite file under the working directory.
pub const DEFAULT_STORE: &str = "sqlite:./data/chat.db";
/// Where frontends tell each other about kicks and revocations. Clients can neither subscribe nor publish here.
pub const CONTROL_CHANNEL: &str = "sys/internal";
/// Channel prefixes reserved for the server.
pub const SERVER_ONLY_PREFIXES: [&str; 4] = ["room/", "user/", "sys/", "presence/"];
/// Environment variable holding the `--bootstrap-admin` password (there is no default password).
pub const ADMIN_PASSWORD_ENV: &str = "CHAT_ADMIN_PASSWORD";
/// Close code for the sockets of a revoked session (logout): 1000, "the server ends a session for
/// good", so `socketcluster-client` does not reconnect by itself. (A dedicated 45xx code would need a
/// row in `protocol::codes`, whose table is the only one sockets can close with.)
pub const SESSION_REVOKED: CloseCode = codes::NORMAL;

/// Time a logging-out socket gets to receive its reply before it is closed.
pub const CLOSE_AFTER_REPLY: Duration = Duration::from_millis(250);
/// Control messages waiting to be published (presence reports); beyond this they are dropped — the next
/// heartbeat's snapshot repairs what a dropped delta missed.
const CONTROL_QUEUE: usize = 4096;
/// Typing events per user and room: a burst of 3, then one per 3 s (§7.1); the excess is dropped.
const TYPING_BURST: u32 = 3;
const TYPING_EVERY: Duration = Duration::from_secs(3);
/// Presence reports (online/away) per socket: a burst of 5, then one per 10 s (§7.1).
const STATUS_BURST: u32 = 5;
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// Keys each rate table tracks at most.
const RATE_KEYS: usize = 100_000;

/// Chat settings from the command line.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// `sqlite:<path>` or `mongodb://…`.
    pub store: String,
    /// Lifetime of the socket token a chat login issues; the client renews it with `login {resume}`.
    pub token_ttl: Duration,
    /// `(username, password)` of the first admin, created at start if missing.
    pub bootstrap_admin: Option<(String, String)>,
    /// Sets `Accounts_RegistrationForm` (open registration) at start when given.
    pub open_registration: Option<bool>,
    /// Presence heartbeat and lease between frontends.
    pub presence: PresenceTiming,
    /// Outgoing webhook delivery (SSRF guard, timeouts, retries).
    pub webhooks: WebhookConfig,
    /// Largest REST JSON body (uploads are bounded by `FileUpload_MaxFileSize` instead).
    pub rest_max_body_bytes: usize,
    /// Longest silence of a REST client before 408.
    pub rest_idle_timeout: Duration,
    /// Keep uploads in this directory instead of the store's default (beside the SQLite file, or
    /// GridFS with MongoDB).
    pub files_dir: Option<std::path::PathBuf>,
    /// The browser client: embedded (default), from a directory (`--web-dir`), or off (`--no-web`).
    pub web: web::WebSource,
}

impl ChatConfig {
    /// A config for `store` with the defaults.
    #[must_use]
    pub fn new(store: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            token_ttl: Duration::from_secs(900),
            bootstrap_admin: None,
            open_registration: None,
            presence: PresenceTiming::default(),
            webhooks: WebhookConfig::default(),
            rest_max_body_bytes: rest::DEFAULT_MAX_BODY_BYTES,
            rest_idle_timeout: rest::DEFAULT_IDLE_TIMEOUT,
            files_dir: None,
            web: web::WebSource::Embedded,
        }
    }

    /// The chat is on when `--store` or `--chat` is given. `admin_password` is the value of
    /// [`ADMIN_PASSWORD_ENV`].
    pub fn from_args(a: &Args, admin_password: Option<String>) -> Result<Option<ChatConfig>, ConfigError> {
        let store = match (&a.store, a.chat) {
            (Some(s), _) => s.clone(),
            (None, true) => DEFAULT_STORE.to_owned(),
            (None, false) => {
                if a.bootstrap_admin.is_some() {
                    return Err(ConfigError::new("--bootstrap-admin", "needs the chat (--chat or --store)"));
                }
                return Ok(None);
            }
        };
        if !(store.starts_with("sqlite:") || store.starts_with("mongodb://") || store.starts_with("mongodb+srv://")) {
            return Err(ConfigError::new("--store", "expected sqlite:<path> or mongodb://…"));
        }
        if a.demo_rpc {
            return Err(ConfigError::new("--demo-rpc", "cannot be combined with the chat (both define `login`)"));
        }
        if a.chat_token_ttl_secs == 0 {
            return Err(ConfigError::new("--chat-token-ttl-secs", "must be greater than 0"));
        }
        if a.rest_max_body_bytes == 0 {
            return Err(ConfigError::new("--rest-max-body-bytes", "must be greater than 0"));
        }
        if a.no_web && a.web_dir.is_some() {
            return Err(ConfigError::new("--web-dir", "cannot be combined with --no-web"));
        }
        if let Some(dir) = &a.web_dir {
            if !dir.join("index.html").is_file() {
                return Err(ConfigError::new("--web-dir", format!("{} has no index.html", dir.display())));
            }
        }
        if a.rest_idle_timeout_secs == 0 {
            return Err(ConfigError::new("--rest-idle-timeout-secs", "must be greater than 0"));
        }
        let bootstrap_admin = match &a.bootstrap_admin {
            None => None,
            Some(name) => match admin_password.filter(|p| !p.is_empty()) {
                Some(p) => Some((name.clone(), p)),
                None => {
                    return Err(ConfigError::new(
                        "--bootstrap-admin",
                        format!("needs the admin's password in the environment variable {ADMIN_PASSWORD_ENV}"),
                    ))
                }
            },
        };
        Ok(Some(ChatConfig {
            store,
            token_ttl: Duration::from_secs(a.chat_token_ttl_secs),
            bootstrap_admin,
            open_registration: a.open_registration,
            presence: PresenceTiming {
                heartbeat: Duration::from_millis(a.presence_heartbeat_ms.max(50)),
                lease: Duration::from_millis(a.presence_heartbeat_ms.max(50).saturating_mul(4)),
            },
            webhooks: WebhookConfig {
                allow_private_targets: a.webhooks_allow_private_targets,
                ..WebhookConfig::default()
            },
            rest_max_body_bytes: a.rest_max_body_bytes,
            rest_idle_timeout: Duration::from_secs(a.rest_idle_timeout_secs),
            files_dir: a.files_dir.clone(),
            web: match (&a.web_dir, a.no_web) {
                (_, true) => web::WebSource::Off,
                (Some(dir), false) => web::WebSource::Dir(dir.clone()),
                (None, false) => web::WebSource::Embedded,
            },
        }))
    }
}

/// The chat layer of one frontend node.
pub struct Chat {
    me: Weak<Chat>,
    service: Arc<Service>,
    token_ttl: Duration,
    rest: rest::RestConfig,
    node: OnceLock<Weak<Node>>,
    pub(crate) sockets: Sockets,
    presence: Presence,
    webhooks: Arc<Webhooks>,
    control_tx: OnceLock<mpsc::Sender<Value>>,
    control_dropped: AtomicU64,
    pub(crate) typing_limits: KeyedBuckets<(String, String)>,
    pub(crate) status_limits: KeyedBuckets<u64>,
    pub(crate) hook_limits: KeyedBuckets<String>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").field("token_ttl", &self.token_ttl).finish_non_exhaustive()
    }
}

/// A control message between frontends.
fn control(kind: &str, fields: Value) -> Value {
    let mut v = fields;
    v["type"] = kind.into();
    v
}

impl Chat {
    /// Opens the store, loads the service, and applies the start-up flags (first admin, registration).
    pub async fn start(config: &ChatConfig) -> Result<Arc<Chat>, ChatError> {
        let store = ::chat::store::open(&config.store).await?;
        let service = Arc::new(Service::new(store).await?);
        if let Some(open) = config.open_registration {
            service.set_setting_as_operator("Accounts_RegistrationForm", open.into()).await?;
        }
        if let Some((username, password)) = &config.bootstrap_admin {
            let (user, created) = service.bootstrap_admin(username, password).await?;
            if created {
                info!(username = %user.username, "created the first admin");
            } else {
                info!(username = %user.username, "admin exists; --bootstrap-admin left it unchanged");
            }
        }
        let files = ::chat::files::open(&config.store, config.files_dir.as_deref()).await?;
        Ok(Self::with_files(service, config, Some(files)))
    }

    /// The chat layer over an existing service, with the defaults of [`ChatConfig::new`] (no uploads).
    #[must_use]
    pub fn with_service(service: Arc<Service>, token_ttl: Duration) -> Arc<Chat> {
        let mut config = ChatConfig::new(String::new());
        config.token_ttl = token_ttl;
        Self::with_config(service, &config)
    }

    /// The chat layer over an existing service, with `config`'s token lifetime, presence timing,
    /// webhook and REST settings, and no uploads.
    #[must_use]
    pub fn with_config(service: Arc<Service>, config: &ChatConfig) -> Arc<Chat> {
        Self::with_files(service, config, None)
    }

    /// [`Chat::with_config`] with uploads kept in `files`.
    #[must_use]
    pub fn with_files(service: Arc<Service>, config: &ChatConfig, files: Option<Arc<dyn FileStore>>) -> Arc<Chat> {
        let rest = rest::RestConfig {
            max_body_bytes: config.rest_max_body_bytes,
            idle_timeout: config.rest_idle_timeout,
            files,
            web: config.web.clone(),
        };
        Arc::new_cyclic(|me| Chat {
            me: me.clone(),
            service,
            token_ttl: config.token_ttl,
            rest,
            node: OnceLock::new(),
            sockets: Sockets::default(),
            presence: Presence::new(config.presence),
            webhooks: Arc::new(Webhooks::new(config.webhooks.clone())),
            control_tx: OnceLock::new(),
            control_dropped: AtomicU64::new(0),
            typing_limits: KeyedBuckets::new(TYPING_BURST, TYPING_EVERY, RATE_KEYS),
            status_limits: KeyedBuckets::new(STATUS_BURST, STATUS_EVERY, RATE_KEYS),
            hook_limits: KeyedBuckets::new(hooks_http::HOOK_BURST, hooks_http::HOOK_EVERY, RATE_KEYS),
        })
    }

    pub(crate) fn rest_config(&self) -> &rest::RestConfig {
        &self.rest
    }

    #[must_use]
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The app to build the node with: chat RPCs, chat channel rules in front of `inner` (which
    /// still decides about every other channel and event), and the REST API.
    #[must_use]
    pub fn app(self: &Arc<Self>, inner: Arc<dyn AccessControl>) -> App {
        App {
            acl: Arc::new(acl::ChatAcl::new(self.clone(), inner)),
            handlers: rpc::handlers(self),
            http: Some(Arc::new(rest::Rest::new(self.clone()))),
        }
    }

    /// Connects the chat to its node, once it is built: from then on effects are published, and the
    /// control channel is listened to (returns once the listener is registered).
    pub async fn attach(self: &Arc<Self>, node: &Arc<Node>) {
        if self.node.set(Arc::downgrade(node)).is_err() {
            warn!("chat attached twice; keeping the first node");
            return;
        }
        if let Some(up) = &node.upstream {
            // Chat users count in this frontend's load report (the admin pages' cluster view).
            let chat = Arc::downgrade(self);
            up.set_user_count(move || chat.upgrade().map_or(0, |c| c.presence.local_user_count() as u64));
        }
        let mut listener = node.listen(CONTROL_CHANNEL).await;
        let chat = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(p) = listener.recv().await {
                let Some(chat) = chat.upgrade() else { break };
                if let Some(data) = &p.data {
                    chat.on_control(data);
                }
            }
        });
        // One publisher for control messages made in synchronous hooks, so they leave in order.
        let (tx, mut rx) = mpsc::channel::<Value>(CONTROL_QUEUE);
        let _ = self.control_tx.set(tx);
        let weak_node = Arc::downgrade(node);
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let Some(node) = weak_node.upgrade() else { break };
                if let Err(e) = node.publish(CONTROL_CHANNEL, Some(message)).await {
                    warn!(error = %e, "chat control publish failed");
                }
            }
        });
        // Presence heartbeat: snapshot (renews this frontend's lease), expire silent frontends, and
        // forget sockets that closed unseen.
        let chat = Arc::downgrade(self);
        let every = self.presence.timing().heartbeat;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(chat) = chat.upgrade() else { break };
                let Some(node) = chat.node() else { break };
                let (changes, message) = chat.presence.retain(|k| node.registry.get(k).is_some());
                chat.presence_out(changes, message);
                let (changes, messages) = chat.presence.tick();
                chat.deliver_presence(&changes);
                for m in messages {
                    chat.send_control(m);
                }
            }
        });
        self.webhooks.start(self.service.clone());
    }

    /// Queues a control message for the other frontends (never waits).
    fn send_control(&self, message: Value) {
        let Some(tx) = self.control_tx.get() else { return };
        if tx.try_send(message).is_err() {
            let n = self.control_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(dropped = n, "chat control queue full: presence updates dropped until the next snapshot");
            }
        }
    }

    /// Delivers status changes to this frontend's subscribers of `presence/<uid>` (each frontend
    /// delivers to its own, from its own copy of the aggregate).
    fn deliver_presence(&self, changes: &Changes) {
        let Some(node) = self.node() else { return };
        for (uid, status) in changes {
            let (_, manual) = self.presence.status(uid);
            let data = presence_event(uid, *status, manual.as_ref());
            node.hub.publish(&Publication::new(presence_channel(uid).into(), Some(data)));
        }
    }

    fn presence_out(&self, changes: Changes, message: Option<Value>) {
        self.deliver_presence(&changes);
        if let Some(m) = message {
            self.send_control(m);
        }
    }

    /// Socket `key` is now `caller`'s (or nobody's): the kick/revoke map and presence follow.
    pub(crate) fn note_socket(&self, key: u64, caller: Option<Caller>) {
        let uid = caller.as_ref().map(|c| c.uid.clone());
        self.sockets.note(key, caller);
        let (changes, message, first) = self.presence.socket_user(key, uid.as_ref());
        self.presence_out(changes, message);
        if let Some(uid) = first {
            self.load_manual_status(uid);
        }
    }

    /// A socket closed.
    pub(crate) fn disconnected(&self, key: u64) {
        self.note_socket(key, None);
        self.status_limits.forget(&key);
    }

    /// Loads a user's stored manual status (first socket of that user here) and tells every frontend.
    fn load_manual_status(&self, uid: ::chat::ids::UserId) {
        let Some(chat) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            match chat.service.stored_status(&uid).await {
                Ok(Some(m)) => chat.choose_status(&uid, m),
                Ok(None) => {}
                Err(e) => warn!(error = %e, "loading a user's status failed"),
            }
        });
    }

    /// A manual status was chosen (or loaded): apply here, tell the others.
    pub(crate) fn choose_status(&self, uid: &::chat::ids::UserId, manual: Manual) {
        let changes = self.presence.set_manual(uid, manual.clone());
        self.deliver_presence(&changes);
        self.send_control(control("presence.manual", json!({ "uid": uid, "manual": manual })));
    }

    /// The client of socket `key` reports online or away; false when over the rate bound.
    pub(crate) fn report_status(&self, key: u64, status: ConnStatus) -> bool {
        if !self.status_limits.allow(&key, Instant::now()) {
            return false;
        }
        let (changes, message) = self.presence.socket_status(key, status);
        self.presence_out(changes, message);
        true
    }

    /// A user's status as this frontend sees the cluster.
    pub(crate) fn user_presence(&self, uid: &::chat::ids::UserId) -> Value {
        let (status, manual) = self.presence.status(uid);
        presence_event(uid, status, manual.as_ref())
    }

    /// Outgoing webhook messages dropped because the delivery queue was full.
    #[must_use]
    pub fn webhooks_dropped(&self) -> u64 {
        self.webhooks.dropped()
    }

    fn node(&self) -> Option<Arc<Node>> {
        self.node.get().and_then(Weak::upgrade)
    }

    /// `getClusterStatus` (the caller is authorized): the state server's view through this frontend's
    /// control link, this frontend's own view marked `stale` when the state server cannot answer, or
    /// this node alone when it runs without a cluster (`standalone: true`).
    pub(crate) async fn cluster_status(&self) -> Value {
        let Some(node) = self.node() else { return json!({ "standalone": true, "stale": true }) };
        if let Some(up) = &node.upstream {
            return up.cluster_status().await;
        }
        let load = protocol::control::NodeLoad {
            connections: u64::try_from(node.stats.sockets_open.load(Ordering::Relaxed)).unwrap_or(0),
            users: self.presence.local_user_count() as u64,
            channels: node.hub.channel_count() as u64,
        };
        json!({
            "standalone": true,
            "epoch": 0,
            "slots": [],
            "brokers": [],
            "frontends": [{ "id": "standalone", "peer": "", "connected": true, "last_seen_ms": 0, "load": load }],
            "reshard": null,
            "stale": false,
            "thisFrontend": "standalone",
        })
    }

    /// The chat identity in a socket's auth token (claims `uid` and `sid`).
    #[must_use]
    pub fn caller(socket: &SocketInfo<'_>) -> Option<Caller> {
        let claims = &socket.auth?.claims;
        let uid = claims.get("uid")?.as_str()?;
        let sid = claims.get("sid")?.as_str()?;
        Some(Caller { uid: UserId::from(uid), sid: SessionId::from(sid) })
    }

    /// Records which user and session a socket is (or no longer is) authenticated as.
    pub(crate) fn track(&self, socket: &SocketInfo<'_>) -> Option<Caller> {
        let caller = Self::caller(socket);
        self.note_socket(socket.key, caller.clone());
        if self.sockets.needs_prune() {
            if let Some(node) = self.node() {
                self.sockets.prune(|key| node.registry.get(key).is_some());
            }
        }
        caller
    }

    /// Carries out an operation's effects: publishes events, and sends kicks and revocations to every
    /// frontend (this one included, at once).
    pub async fn apply(&self, effects: Vec<Effect>) {
        let Some(node) = self.node() else {
            warn!("chat effects before the node is attached are dropped");
            return;
        };
        for effect in effects {
            let (channel, data) = match effect {
                Effect::Publish { channel, data } => {
                    if channel.starts_with(ROOM_CHANNEL_PREFIX) && data["type"] == "message.new" {
                        self.webhooks.offer(&data["message"]);
                    }
                    (channel, data)
                }
                Effect::Kick { rid, uid } => {
                    self.kick_local(&node, &rid, &uid);
                    (CONTROL_CHANNEL.to_owned(), control("kick", json!({ "rid": rid, "uid": uid })))
                }
                Effect::CloseSessions { uid, sessions } => {
                    self.close_local(&node, &sessions);
                    (CONTROL_CHANNEL.to_owned(), control("revoke", json!({ "uid": uid, "sessions": sessions })))
                }
                // This node's service has the new table already; the others re-read the store.
                Effect::ReloadPolicy => (CONTROL_CHANNEL.to_owned(), control("reload", json!({}))),
            };
            if let Err(e) = node.publish(&channel, Some(data)).await {
                // Stored already: clients catch up with syncMessages / subscriptions.get.
                warn!(error = %e, channel, "chat publish failed");
            }
        }
    }

    fn on_control(&self, data: &Value) {
        let Some(node) = self.node() else { return };
        match data.get("type").and_then(Value::as_str) {
            Some("kick") => {
                let (Some(rid), Some(uid)) = (data["rid"].as_str(), data["uid"].as_str()) else { return };
                self.kick_local(&node, &RoomId::from(rid), &UserId::from(uid));
            }
            Some("revoke") => {
                let sessions: Vec<SessionId> = data["sessions"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).map(SessionId::from).collect())
                    .unwrap_or_default();
                self.close_local(&node, &sessions);
            }
            Some("presence") => match serde_json::from_value(data["report"].clone()) {
                Ok(report) => {
                    let changes = self.presence.on_report(report);
                    self.deliver_presence(&changes);
                }
                Err(e) => warn!(error = %e, "bad presence report"),
            },
            Some("presence.manual") => {
                let (Some(uid), Ok(manual)) =
                    (data["uid"].as_str(), serde_json::from_value::<Manual>(data["manual"].clone()))
                else {
                    return;
                };
                let changes = self.presence.set_manual(&::chat::ids::UserId::from(uid), manual);
                self.deliver_presence(&changes);
            }
            Some("reload") => {
                let service = self.service.clone();
                tokio::spawn(async move {
                    if let Err(e) = service.reload_policy().await {
                        warn!(error = %e, "reloading permissions and settings failed");
                    }
                });
            }
            other => warn!(?other, "unknown chat control message"),
        }
    }

    /// Takes this node's sockets of `uid` out of `room/<rid>`. A socket that is not subscribed ignores
    /// the kick; one whose subscribe is in flight handles it right after, in order.
    fn kick_local(&self, node: &Node, rid: &RoomId, uid: &UserId) {
        let channel = room_channel(rid);
        for key in self.sockets.of_user(uid) {
            let _ = node.registry.kick_out(key, &channel, Some("removed from the room".into()));
        }
    }

    fn close_local(&self, node: &Node, sessions: &[SessionId]) {
        for key in self.sockets.of_sessions(sessions) {
            node.registry.close(key, SESSION_REVOKED);
        }
    }

    /// Closes a socket with [`SESSION_REVOKED`] after [`CLOSE_AFTER_REPLY`], for a socket whose own
    /// RPC (logout) asked for it: a close requested while the node writes that socket's turn may drop
    /// the turn's frames, the reply included.
    pub(crate) fn close_after_reply(&self, key: u64) {
        let Some(node) = self.node() else { return };
        tokio::spawn(async move {
            tokio::time::sleep(CLOSE_AFTER_REPLY).await;
            node.registry.close(key, SESSION_REVOKED);
        });
    }

    pub(crate) fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    pub(crate) fn note_login(&self, key: u64, caller: Caller) {
        self.note_socket(key, Some(caller));
    }
}

/// A chat error as the client sees it: name `ChatError`, the stable id in `error` (Rocket.Chat style),
/// and the details of validation errors. Storage failures are logged, never shown.
#[must_use]
pub fn to_sc_error(e: &ChatError) -> ScError {
    let message = match e {
        ChatError::Storage { .. } | ChatError::Unavailable => {
            warn!(error = %e, source = ?std::error::Error::source(e), "chat store failed");
            "internal error".to_owned()
        }
        e => e.to_string(),
    };
    let mut err = ScError::new("ChatError", message).with("error", e.id());
    match e {
        ChatError::Invalid { field, .. } => err = err.with("field", *field),
        ChatError::TooLong { field, limit, .. } => err = err.with("field", *field).with("limit", *limit),
        ChatError::TooManyRequests { retry_after_ms } => err = err.with("retryAfterMs", *retry_after_ms),
        _ => {}
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str], password: Option<&str>) -> Result<Option<ChatConfig>, ConfigError> {
        let a = Args::try_parse_from(std::iter::once("frontend").chain(args.iter().copied())).expect("parses");
        ChatConfig::from_args(&a, password.map(str::to_owned))
    }

    #[test]
    fn the_chat_is_off_unless_a_store_or_chat_is_given() {
        assert!(parse(&[], None).unwrap().is_none());
        assert!(parse(&["--demo-rpc"], None).unwrap().is_none());
        assert_eq!(parse(&["--chat"], None).unwrap().unwrap().store, DEFAULT_STORE);
        let c = parse(&["--store", "mongodb://127.0.0.1:27017/team"], None).unwrap().unwrap();
        assert_eq!(c.store, "mongodb://127.0.0.1:27017/team");
        assert_eq!(c.token_ttl, Duration::from_secs(900));
        assert!(parse(&["--store", "postgres://x"], None).unwrap_err().to_string().contains("--store"));
        assert!(parse(&["--chat", "--demo-rpc"], None).unwrap_err().to_string().contains("--demo-rpc"));
    }

    #[test]
    fn the_web_client_is_embedded_unless_a_directory_or_no_web_is_given() {
        assert_eq!(parse(&["--chat"], None).unwrap().unwrap().web, web::WebSource::Embedded);
        assert_eq!(parse(&["--chat", "--no-web"], None).unwrap().unwrap().web, web::WebSource::Off);
        let dir = std::env::temp_dir().join(format!("web-dir-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let arg = dir.display().to_string();
        let e = parse(&["--chat", "--web-dir", &arg], None).unwrap_err();
        assert!(e.to_string().contains("index.html"), "a folder without the page is refused: {e}");
        std::fs::write(dir.join("index.html"), "<!doctype html>").unwrap();
        assert_eq!(parse(&["--chat", "--web-dir", &arg], None).unwrap().unwrap().web, web::WebSource::Dir(dir.clone()));
        let e = parse(&["--chat", "--web-dir", &arg, "--no-web"], None).unwrap_err();
        assert!(e.to_string().contains("--no-web"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_first_admin_needs_a_password_from_the_environment() {
        let e = parse(&["--chat", "--bootstrap-admin", "root"], None).unwrap_err();
        assert!(e.to_string().contains(ADMIN_PASSWORD_ENV), "{e}");
        assert!(parse(&["--chat", "--bootstrap-admin", "root"], Some("")).is_err());
        let c = parse(&["--chat", "--bootstrap-admin", "root"], Some("s3cret-pass")).unwrap().unwrap();
        assert_eq!(c.bootstrap_admin, Some(("root".into(), "s3cret-pass".into())));
        assert!(parse(&["--bootstrap-admin", "root"], Some("s3cret-pass")).is_err(), "needs the chat on");
    }
}
