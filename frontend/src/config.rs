//! Command-line flags (with environment fallbacks) and the validated `Config`
//! the node runs on. Where SocketCluster already has an environment variable
//! with the same meaning, its name is used, so existing deployments keep working.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use protocol::{limits, Codec};

use crate::error::ConfigError;
use crate::upstream::ClusterConfig;

/// A SocketCluster-compatible WebSocket frontend node.
///
/// Speaks the SocketCluster client protocol v2 (as `socketcluster-client`
/// v14–v20 do), with JSON on the main port and, optionally, `sc-codec-min-bin`
/// MessagePack on a second port. `/health` answers on every port.
#[derive(Debug, Parser)]
#[command(name = "frontend", version, about, long_about = None)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "SOCKETCLUSTER_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port of the JSON listener (0 picks a free port).
    #[arg(long, env = "SOCKETCLUSTER_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Port of an extra listener speaking sc-codec-min-bin (MessagePack); off when unset.
    #[arg(long, env = "FRONTEND_MIN_BIN_PORT")]
    pub min_bin_port: Option<u16>,

    /// WebSocket path clients connect to.
    #[arg(long, env = "SOCKETCLUSTER_WS_ENGINE_PATH", default_value = "/socketcluster/")]
    pub path: String,

    /// Secret for signing and checking HS256 auth tokens. Without it the node
    /// makes up a random key: tokens then die with the process and are refused
    /// by every other node.
    #[arg(long, env = "SOCKETCLUSTER_AUTH_KEY", hide_env_values = true)]
    pub auth_key: Option<String>,

    /// Lifetime of tokens the server signs, in seconds, unless the payload sets `exp`.
    #[arg(long, env = "SOCKETCLUSTER_AUTH_DEFAULT_EXPIRY", default_value_t = limits::AUTH_DEFAULT_EXPIRY.as_secs())]
    pub auth_default_expiry_secs: u64,

    /// Interval between server pings, in milliseconds.
    #[arg(long, env = "SOCKETCLUSTER_PING_INTERVAL", default_value_t = ms(limits::PING_INTERVAL))]
    pub ping_interval_ms: u64,

    /// Time a client has to answer, in milliseconds (advertised in the handshake).
    /// A client that sends nothing for this long is closed with 4001.
    #[arg(long, env = "SOCKETCLUSTER_PING_TIMEOUT", default_value_t = ms(limits::PING_TIMEOUT))]
    pub ping_timeout_ms: u64,

    /// Time a new connection has to send its HTTP upgrade and `#handshake`,
    /// in milliseconds (then closed with 4005).
    #[arg(long, env = "SOCKETCLUSTER_HANDSHAKE_TIMEOUT", default_value_t = ms(limits::HANDSHAKE_TIMEOUT))]
    pub handshake_timeout_ms: u64,

    /// Largest WebSocket message accepted, in bytes (larger: close 1009).
    #[arg(long, env = "FRONTEND_MAX_FRAME_BYTES", default_value_t = limits::MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,

    /// Longest channel name, in bytes.
    #[arg(long, env = "FRONTEND_MAX_CHANNEL_NAME_BYTES", default_value_t = limits::MAX_CHANNEL_NAME_BYTES)]
    pub max_channel_name_bytes: usize,

    /// Channels one socket may subscribe to.
    #[arg(long, env = "SOCKETCLUSTER_SOCKET_CHANNEL_LIMIT", default_value_t = limits::MAX_SUBSCRIPTIONS_PER_SOCKET)]
    pub max_subscriptions: usize,

    /// Packets per second one socket may send (bursts up to the same number).
    /// Packets over it are refused; a socket that keeps flooding is closed with 4103.
    #[arg(long, env = "FRONTEND_INBOUND_RATE", default_value_t = limits::INBOUND_PACKETS_PER_SECOND)]
    pub inbound_rate: u32,

    /// Messages queued toward one socket before it is closed as a slow consumer
    /// (4104; a peer that has stopped reading altogether is dropped instead,
    /// since no close frame can reach it).
    #[arg(long, env = "FRONTEND_OUTBOUND_QUEUE", default_value_t = limits::OUTBOUND_QUEUE_FRAMES)]
    pub outbound_queue: usize,

    /// Most packets sent to a client in one batch frame (1 turns batching off).
    #[arg(long, env = "FRONTEND_OUTBOUND_BATCH", default_value_t = 32)]
    pub outbound_batch: usize,

    /// Whether clients may `#publish` (SocketCluster's allowClientPublish).
    #[arg(long, env = "SOCKETCLUSTER_ALLOW_CLIENT_PUBLISH", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_client_publish: bool,

    /// Channels starting with this prefix need an authenticated socket to
    /// subscribe or publish. Repeatable; comma-separated in the environment.
    #[arg(long = "auth-required-prefix", env = "FRONTEND_AUTH_REQUIRED_PREFIXES", value_delimiter = ',')]
    pub auth_required_prefixes: Vec<String>,

    /// Register demonstration RPCs (`echo`, `fail`, `login`): for trying the
    /// node out and for the compatibility suite. `login` hands a token to
    /// anyone, so never turn this on in production.
    #[arg(long, env = "FRONTEND_DEMO_RPC")]
    pub demo_rpc: bool,

    /// Chat store: `sqlite:<path>` or `mongodb://host:port/<db>`. Setting it turns the chat on
    /// (accounts, rooms, messages as socket RPCs; `room/…`, `user/…` channels guarded).
    #[arg(long, env = "CHAT_STORE")]
    pub store: Option<String>,

    /// Turn the chat on with the default store, `sqlite:./data/chat.db` (relative to the working
    /// directory), unless --store names another.
    #[arg(long, env = "CHAT_ENABLED")]
    pub chat: bool,

    /// Create this admin account at start if it does not exist (an existing admin is left as is).
    /// The password is read from the environment variable CHAT_ADMIN_PASSWORD; there is no default.
    #[arg(long, env = "CHAT_BOOTSTRAP_ADMIN")]
    pub bootstrap_admin: Option<String>,

    /// Lifetime of the socket token a chat login sets, in seconds; clients renew it with `login {resume}`.
    #[arg(long, env = "CHAT_TOKEN_TTL_SECS", default_value_t = 900)]
    pub chat_token_ttl_secs: u64,

    /// Store the open-registration setting (`Accounts_RegistrationForm`) at start: `true` lets anyone
    /// create an account with `registerUser`. Unset: keep the stored value (default closed).
    #[arg(long, env = "CHAT_OPEN_REGISTRATION")]
    pub open_registration: Option<bool>,

    /// How often this frontend reports its users' connections to the other frontends, in ms; the others
    /// drop its users four heartbeats after its last report (it crashed or was cut off).
    #[arg(long, env = "CHAT_PRESENCE_HEARTBEAT_MS", default_value_t = 5000)]
    pub presence_heartbeat_ms: u64,

    /// Let outgoing webhooks reach private, loopback and link-local addresses (off: refused, the SSRF
    /// guard). For receivers on an internal network, or tests.
    #[arg(long, env = "CHAT_WEBHOOKS_ALLOW_PRIVATE_TARGETS")]
    pub webhooks_allow_private_targets: bool,

    /// Largest JSON body of a chat REST request, in bytes (larger: 413 before it is read). Uploads
    /// are bounded by the `FileUpload_MaxFileSize` setting instead.
    #[arg(long, env = "CHAT_REST_MAX_BODY_BYTES", default_value_t = chat::limits::MAX_REQUEST_BYTES)]
    pub rest_max_body_bytes: usize,

    /// A chat REST client silent for this long while sending its request or reading the answer is
    /// cut off (408), in seconds.
    #[arg(long, env = "CHAT_REST_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub rest_idle_timeout_secs: u64,

    /// Keep uploaded files in this directory. Default: `uploads/` beside the SQLite database, or
    /// GridFS (bucket `uploads`) in the MongoDB database.
    #[arg(long, env = "CHAT_FILES_DIR")]
    pub files_dir: Option<PathBuf>,

    /// Serve the browser chat client's files from this directory (the repository's `web/static`) instead
    /// of the copy built into the binary: edit and reload without rebuilding. Needs the chat.
    #[arg(long, env = "CHAT_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Do not serve the browser chat client (`/` and `/web/…`).
    #[arg(long, env = "CHAT_NO_WEB")]
    pub no_web: bool,

    /// After binding, write the bound addresses as JSON to this file
    /// (`{"json":"host:port","min_bin":"host:port"}`), for tests and scripts using port 0.
    #[arg(long, env = "FRONTEND_PORTS_FILE")]
    pub ports_file: Option<PathBuf>,

    /// Time given to connections to close on SIGTERM before they are dropped, in milliseconds.
    #[arg(long, env = "FRONTEND_SHUTDOWN_TIMEOUT", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,

    /// On SIGTERM, sockets are closed (with 1005: clients reconnect at once,
    /// to another node) spread evenly over at most this window (at most 10 ms
    /// apart), in milliseconds, so a rolling update moves users without a
    /// thundering herd. 0 closes all at once.
    #[arg(long, env = "FRONTEND_DRAIN_WINDOW_MS", default_value_t = 5000)]
    pub drain_window_ms: u64,

    /// This node's id in the cluster (default: `frontend-` and 8 random hex digits).
    #[arg(long, env = "FRONTEND_ID")]
    pub id: Option<String>,

    /// The state server's control address (`host:port`). Set it to run as part
    /// of a cluster; without it the node serves alone (local pub/sub).
    #[arg(long, env = "SCC_STATE_SERVER")]
    pub state_server: Option<String>,

    /// Shared secret of every link in the cluster (needed with --state-server).
    #[arg(long, env = "SCC_AUTH_KEY", hide_env_values = true)]
    pub cluster_key: Option<String>,

    /// After a reshard commits, how long old subscriptions are kept so
    /// messages in flight still arrive, in milliseconds.
    #[arg(long, env = "FRONTEND_DRAIN_MS", default_value_t = 1000)]
    pub drain_ms: u64,

    /// Ping interval on links to brokers, in milliseconds.
    #[arg(long, env = "FRONTEND_FABRIC_HEARTBEAT_MS", default_value_t = 500)]
    pub fabric_heartbeat_ms: u64,

    /// A broker silent this long is treated as dead and its channels rerouted, in milliseconds.
    #[arg(long, env = "FRONTEND_FABRIC_TIMEOUT_MS", default_value_t = 2000)]
    pub fabric_timeout_ms: u64,

    /// Heartbeat interval on the link to the state server, in milliseconds.
    #[arg(long, env = "FRONTEND_CONTROL_HEARTBEAT_MS", default_value_t = 1000)]
    pub control_heartbeat_ms: u64,

    /// Log as JSON lines (for Kubernetes) instead of text. Levels come from RUST_LOG.
    #[arg(long, env = "FRONTEND_LOG_JSON")]
    pub log_json: bool,
}

const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One listening socket and the codec its clients speak.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub codec: Codec,
}

/// Bounds applied to every socket.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_channel_name_bytes: usize,
    pub max_subscriptions: usize,
    pub inbound_rate: u32,
    pub outbound_queue: usize,
    pub outbound_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: limits::MAX_FRAME_BYTES,
            max_channel_name_bytes: limits::MAX_CHANNEL_NAME_BYTES,
            max_subscriptions: limits::MAX_SUBSCRIPTIONS_PER_SOCKET,
            inbound_rate: limits::INBOUND_PACKETS_PER_SECOND,
            outbound_queue: limits::OUTBOUND_QUEUE_FRAMES,
            outbound_batch: 32,
        }
    }
}

/// The validated configuration of a frontend node.
#[derive(Clone, Debug)]
pub struct Config {
    pub listeners: Vec<ListenerConfig>,
    pub path: String,
    /// `None`: a random key is made at start (and a warning logged).
    pub auth_key: Option<Vec<u8>>,
    pub auth_default_expiry: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub handshake_timeout: Duration,
    pub limits: Limits,
    pub allow_client_publish: bool,
    pub auth_required_prefixes: Vec<String>,
    pub shutdown_timeout: Duration,
    /// Sockets are closed spread over this window on shutdown.
    pub drain_window: Duration,
    /// Present when the node is part of a cluster.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Port 0 on loopback for both codecs, short timers: what tests start.
    #[must_use]
    pub fn for_test() -> Self {
        let lo = |codec| ListenerConfig { addr: SocketAddr::from(([127, 0, 0, 1], 0)), codec };
        Self {
            listeners: vec![lo(Codec::Json), lo(Codec::MinBin)],
            path: "/socketcluster/".into(),
            auth_key: Some(b"test-key".to_vec()),
            auth_default_expiry: limits::AUTH_DEFAULT_EXPIRY,
            ping_interval: Duration::from_millis(500),
            ping_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(2),
            limits: Limits::default(),
            allow_client_publish: true,
            auth_required_prefixes: Vec::new(),
            shutdown_timeout: Duration::from_secs(2),
            drain_window: Duration::ZERO,
            cluster: None,
        }
    }
}

impl TryFrom<&Args> for Config {
    type Error = ConfigError;

    fn try_from(a: &Args) -> Result<Self, ConfigError> {
        let mut listeners = vec![ListenerConfig { addr: SocketAddr::new(a.host, a.port), codec: Codec::Json }];
        if let Some(p) = a.min_bin_port {
            if p != 0 && p == a.port {
                return Err(ConfigError::new("--min-bin-port", "must differ from --port"));
            }
            listeners.push(ListenerConfig { addr: SocketAddr::new(a.host, p), codec: Codec::MinBin });
        }
        if !a.path.starts_with('/') {
            return Err(ConfigError::new("--path", "must start with '/'"));
        }
        let positive = |flag: &'static str, v: u64| {
            if v == 0 {
                Err(ConfigError::new(flag, "must be greater than 0"))
            } else {
                Ok(Duration::from_millis(v))
            }
        };
        let ping_interval = positive("--ping-interval-ms", a.ping_interval_ms)?;
        let ping_timeout = positive("--ping-timeout-ms", a.ping_timeout_ms)?;
        if ping_interval >= ping_timeout {
            return Err(ConfigError::new(
                "--ping-interval-ms",
                "must be below --ping-timeout-ms, or clients time out between pings",
            ));
        }
        if a.drain_window_ms >= a.shutdown_timeout_ms {
            return Err(ConfigError::new(
                "--drain-window-ms",
                "must be below --shutdown-timeout-ms, or the last sockets are dropped instead of closed",
            ));
        }
        if a.auth_key.as_deref() == Some("") {
            return Err(ConfigError::new("--auth-key", "must not be empty"));
        }
        for (flag, v) in [
            ("--max-frame-bytes", a.max_frame_bytes),
            ("--max-channel-name-bytes", a.max_channel_name_bytes),
            ("--max-subscriptions", a.max_subscriptions),
            ("--outbound-queue", a.outbound_queue),
            ("--outbound-batch", a.outbound_batch),
            ("--inbound-rate", a.inbound_rate as usize),
        ] {
            if v == 0 {
                return Err(ConfigError::new(flag, "must be greater than 0"));
            }
        }
        let cluster = match (&a.state_server, &a.cluster_key) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ConfigError::new("--cluster-key", "is needed with --state-server (env SCC_AUTH_KEY)"))
            }
            (Some(_), _) if a.auth_key.is_none() => {
                return Err(ConfigError::new(
                    "--auth-key",
                    "is needed in cluster mode, the same on every frontend, or tokens issued by one frontend \
                     are refused by the others (env SOCKETCLUSTER_AUTH_KEY)",
                ))
            }
            (Some(state_server), Some(key)) => {
                let fabric_heartbeat = positive("--fabric-heartbeat-ms", a.fabric_heartbeat_ms)?;
                let fabric_timeout = positive("--fabric-timeout-ms", a.fabric_timeout_ms)?;
                if fabric_timeout <= fabric_heartbeat {
                    return Err(ConfigError::new("--fabric-timeout-ms", "must be above --fabric-heartbeat-ms"));
                }
                Some(ClusterConfig {
                    node_id: a.id.clone().unwrap_or_else(|| format!("frontend-{:08x}", rand::random::<u32>())),
                    state_server: state_server.clone(),
                    cluster_key: key.clone(),
                    drain: Duration::from_millis(a.drain_ms),
                    fabric_heartbeat,
                    fabric_timeout,
                    control_heartbeat: positive("--control-heartbeat-ms", a.control_heartbeat_ms)?,
                })
            }
        };
        Ok(Config {
            cluster,
            listeners,
            path: a.path.clone(),
            auth_key: a.auth_key.as_ref().map(|k| k.as_bytes().to_vec()),
            auth_default_expiry: Duration::from_secs(a.auth_default_expiry_secs),
            ping_interval,
            ping_timeout,
            handshake_timeout: positive("--handshake-timeout-ms", a.handshake_timeout_ms)?,
            limits: Limits {
                max_frame_bytes: a.max_frame_bytes,
                max_channel_name_bytes: a.max_channel_name_bytes,
                max_subscriptions: a.max_subscriptions,
                inbound_rate: a.inbound_rate,
                outbound_queue: a.outbound_queue,
                outbound_batch: a.outbound_batch,
            },
            allow_client_publish: a.allow_client_publish,
            auth_required_prefixes: a.auth_required_prefixes.iter().filter(|p| !p.is_empty()).cloned().collect(),
            shutdown_timeout: Duration::from_millis(a.shutdown_timeout_ms),
            drain_window: Duration::from_millis(a.drain_window_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let a = Args::try_parse_from(std::iter::once("frontend").chain(args.iter().copied())).expect("parses");
        Config::try_from(&a)
    }

    #[test]
    fn defaults_match_socketcluster() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.path, "/socketcluster/");
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].addr.port(), 8000);
        assert!(c.auth_key.is_none());
    }

    #[test]
    fn min_bin_port_adds_a_listener() {
        let c = parse(&["--port", "0", "--min-bin-port", "0"]).unwrap();
        assert_eq!(c.listeners[1].codec, Codec::MinBin);
    }

    #[test]
    fn cluster_mode_needs_both_keys() {
        let e = parse(&["--state-server", "127.0.0.1:7777"]).unwrap_err();
        assert!(e.to_string().contains("--cluster-key"), "{e}");
        let e = parse(&["--state-server", "127.0.0.1:7777", "--cluster-key", "c"]).unwrap_err();
        assert!(e.to_string().contains("--auth-key"), "{e}");
        let c = parse(&["--state-server", "127.0.0.1:7777", "--cluster-key", "c", "--auth-key", "a", "--id", "f1"])
            .unwrap();
        assert_eq!(c.cluster.unwrap().node_id, "f1");
    }

    #[test]
    fn errors_name_the_flag() {
        let e = parse(&["--ping-interval-ms", "5000", "--ping-timeout-ms", "1000"]).unwrap_err();
        assert!(e.to_string().contains("--ping-interval-ms"), "{e}");
        let e = parse(&["--outbound-queue", "0"]).unwrap_err();
        assert!(e.to_string().contains("--outbound-queue"), "{e}");
    }
}
