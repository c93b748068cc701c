//! Command-line flags (with environment fallbacks) and the validated `Config`
//! the server runs on. Where SocketCluster's cluster state server already has
//! a variable with the same meaning (`SCC_STATE_SERVER_HOST`,
//! `SCC_STATE_SERVER_PORT`, `SCC_AUTH_KEY`), its name is used.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::cluster_state::Timing;
use crate::error::Error;

pub const ENV_HOST: &str = "SCC_STATE_SERVER_HOST";
pub const ENV_PORT: &str = "SCC_STATE_SERVER_PORT";
pub const ENV_HTTP_PORT: &str = "STATE_SERVER_HTTP_PORT";
pub const ENV_CLUSTER_KEY: &str = "SCC_AUTH_KEY";

/// Time a new control link has to send its `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster's state server: membership, the broker slot table and its
/// epoch, and two-phase reshards.
///
/// Brokers and frontends connect to the control port and present the cluster
/// key. Joins, graceful leaves and dead brokers are batched over a settle
/// delay into one new slot table (epoch + 1), prepared on every frontend and
/// then committed to every node. After a restart the server adopts the highest
/// table the nodes report and changes nothing for --rebuild-wait-ms, so its
/// restart moves no channel. The HTTP port serves `/` (a status page),
/// `/status` (JSON), `/health` and `/ready` (200 once the rebuild window is over).
#[derive(Debug, Parser)]
#[command(name = "state-server", version, about, long_about)]
pub struct Args {
    /// Address to listen on (control and HTTP ports).
    #[arg(long, env = ENV_HOST, default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Control port nodes connect to (0 picks a free port).
    #[arg(long, env = ENV_PORT, default_value_t = 7777)]
    pub port: u16,

    /// HTTP port for /, /status, /health and /ready (0 picks a free port).
    #[arg(long, env = ENV_HTTP_PORT, default_value_t = 7778)]
    pub http_port: u16,

    /// Shared secret every node presents in its Hello. Required.
    #[arg(long, env = ENV_CLUSTER_KEY, hide_env_values = true)]
    pub cluster_key: Option<String>,

    /// Delay that batches joining brokers into one reshard, in milliseconds.
    #[arg(long, env = "STATE_SERVER_SETTLE_UP_MS", default_value_t = 500)]
    pub settle_up_ms: u64,

    /// Delay that batches leaving and dead brokers into one reshard, in milliseconds.
    #[arg(long, env = "STATE_SERVER_SETTLE_DOWN_MS", default_value_t = 200)]
    pub settle_down_ms: u64,

    /// Interval of heartbeats to every node, in milliseconds. A node that sends
    /// nothing for 3 intervals is disconnected.
    #[arg(long, env = "STATE_SERVER_HEARTBEAT_MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,

    /// Time a disconnected broker has to come back before it is removed from
    /// the table, in milliseconds.
    #[arg(long, env = "STATE_SERVER_GRACE_MS", default_value_t = 3000)]
    pub grace_ms: u64,

    /// Longest wait for every frontend's PrepareAck before committing anyway, in milliseconds.
    #[arg(long, env = "STATE_SERVER_PREPARE_TIMEOUT_MS", default_value_t = 3000)]
    pub prepare_timeout_ms: u64,

    /// Time after start during which the table is not changed while nodes
    /// reconnect and report their committed tables, in milliseconds.
    #[arg(long, env = "STATE_SERVER_REBUILD_WAIT_MS", default_value_t = 2000)]
    pub rebuild_wait_ms: u64,

    /// After binding, write the bound addresses as JSON to this file
    /// (`{"control":"host:port","http":"host:port"}`), for tests and scripts using port 0.
    #[arg(long, env = "STATE_SERVER_PORTS_FILE")]
    pub ports_file: Option<PathBuf>,

    /// Log as JSON lines (for Kubernetes) instead of text. Levels come from RUST_LOG.
    #[arg(long, env = "STATE_SERVER_LOG_JSON")]
    pub log_json: bool,
}

/// The validated configuration of a state server.
#[derive(Clone, Debug)]
pub struct Config {
    pub control_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub cluster_key: Vec<u8>,
    pub timing: Timing,
    pub hello_timeout: Duration,
}

impl Config {
    /// Loopback, port 0 for both listeners, short timers: what tests start.
    #[must_use]
    pub fn for_test(cluster_key: &str) -> Self {
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            control_addr: lo,
            http_addr: lo,
            cluster_key: cluster_key.as_bytes().to_vec(),
            timing: Timing {
                settle_up: Duration::from_millis(50),
                settle_down: Duration::from_millis(50),
                heartbeat: Duration::from_millis(200),
                grace: Duration::from_millis(300),
                prepare_timeout: Duration::from_millis(1000),
                rebuild_wait: Duration::ZERO,
            },
            hello_timeout: Duration::from_secs(2),
        }
    }
}

impl TryFrom<&Args> for Config {
    type Error = Error;

    fn try_from(a: &Args) -> Result<Self, Error> {
        let cluster_key = match a.cluster_key.as_deref() {
            None => {
                return Err(Error::config(
                    "--cluster-key",
                    format!("required (or set {ENV_CLUSTER_KEY}): the secret every node presents"),
                ))
            }
            Some("") => return Err(Error::config("--cluster-key", "must not be empty")),
            Some(k) => k.as_bytes().to_vec(),
        };
        if a.port != 0 && a.port == a.http_port {
            return Err(Error::config("--http-port", "must differ from --port"));
        }
        let positive = |flag: &'static str, v: u64| {
            if v == 0 {
                Err(Error::config(flag, "must be greater than 0"))
            } else {
                Ok(Duration::from_millis(v))
            }
        };
        Ok(Config {
            control_addr: SocketAddr::new(a.host, a.port),
            http_addr: SocketAddr::new(a.host, a.http_port),
            cluster_key,
            timing: Timing {
                settle_up: Duration::from_millis(a.settle_up_ms),
                settle_down: Duration::from_millis(a.settle_down_ms),
                heartbeat: positive("--heartbeat-ms", a.heartbeat_ms)?,
                grace: Duration::from_millis(a.grace_ms),
                prepare_timeout: positive("--prepare-timeout-ms", a.prepare_timeout_ms)?,
                rebuild_wait: Duration::from_millis(a.rebuild_wait_ms),
            },
            hello_timeout: HELLO_TIMEOUT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, Error> {
        let a = Args::try_parse_from(std::iter::once("state-server").chain(args.iter().copied())).expect("parses");
        Config::try_from(&a)
    }

    #[test]
    fn defaults() {
        let c = parse(&["--cluster-key", "k"]).unwrap();
        assert_eq!(c.control_addr.port(), 7777);
        assert_eq!(c.http_addr.port(), 7778);
        assert_eq!(c.timing.settle_up, Duration::from_millis(500));
        assert_eq!(c.timing.settle_down, Duration::from_millis(200));
        assert_eq!(c.timing.heartbeat, Duration::from_secs(1));
        assert_eq!(c.timing.grace, Duration::from_secs(3));
        assert_eq!(c.timing.prepare_timeout, Duration::from_secs(3));
        assert_eq!(c.timing.rebuild_wait, Duration::from_secs(2));
        assert_eq!(c.cluster_key, b"k");
    }

    #[test]
    fn the_cluster_key_is_required_and_the_error_names_the_flag() {
        // The variable may be set in the environment the tests run in.
        if std::env::var_os(ENV_CLUSTER_KEY).is_some() {
            return;
        }
        let e = parse(&[]).unwrap_err();
        assert!(e.to_string().contains("--cluster-key"), "{e}");
        assert!(e.to_string().contains(ENV_CLUSTER_KEY), "{e}");
        let e = parse(&["--cluster-key", ""]).unwrap_err();
        assert!(e.to_string().contains("--cluster-key"), "{e}");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse(&["--cluster-key", "k", "--heartbeat-ms", "0"]).unwrap_err();
        assert!(e.to_string().contains("--heartbeat-ms"), "{e}");
        let e = parse(&["--cluster-key", "k", "--port", "9000", "--http-port", "9000"]).unwrap_err();
        assert!(e.to_string().contains("--http-port"), "{e}");
        assert!(parse(&["--cluster-key", "k", "--port", "0", "--http-port", "0"]).is_ok());
    }
}
