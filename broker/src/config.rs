//! Command-line flags (with environment fallbacks) and the validated
//! [`Config`] a broker runs on. Where SocketCluster's cluster (scc-broker,
//! scc-state) already has an environment variable with the same meaning,
//! its name is accepted, so existing deployments keep working.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rand::Rng;

use crate::error::Error;

/// Port of the state server when only its host is given (scc-state's default).
pub const DEFAULT_STATE_SERVER_PORT: u16 = 7777;

/// A fabric broker of the pub/sub cluster.
///
/// Frontends connect to the fabric port (TCP, length-prefixed MessagePack),
/// say which channels they want, and publish; the broker fans each publish
/// out to the links interested in its channel and to no one else. With
/// `--state-server` it joins the cluster's slot table and leaves it gracefully
/// on SIGTERM; without it, it runs standalone. `/health`, `/ready` and
/// `/metrics` answer on the admin port.
#[derive(Debug, Parser)]
#[command(name = "broker", version, about, long_about)]
pub struct Args {
    /// Unique, stable id of this broker in the slot table [default: broker-<8 random hex digits>].
    #[arg(long, env = "BROKER_ID")]
    pub id: Option<String>,

    /// Address to listen on (fabric and admin ports).
    #[arg(long, env = "BROKER_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Fabric port frontends connect to (0 picks a free port).
    #[arg(long, env = "SCC_BROKER_SERVER_PORT", default_value_t = 8888)]
    pub port: u16,

    /// `host:port` frontends reach the fabric port at, as announced to the state
    /// server [default: the bound address, with 0.0.0.0 replaced by 127.0.0.1].
    #[arg(long, env = "BROKER_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Port of the admin HTTP server: /health, /ready, /metrics (0 picks a free port).
    #[arg(long, env = "BROKER_ADMIN_PORT", default_value_t = 8889)]
    pub admin_port: u16,

    /// State server as `host:port`. Without it (and without --state-server-host)
    /// the broker runs standalone and is always ready.
    #[arg(long, env = "SCC_STATE_SERVER", conflicts_with = "state_server_host")]
    pub state_server: Option<String>,

    /// State server host (alternative to --state-server).
    #[arg(long, env = "SCC_STATE_SERVER_HOST")]
    pub state_server_host: Option<String>,

    /// State server port, with --state-server-host.
    #[arg(long, env = "SCC_STATE_SERVER_PORT", default_value_t = DEFAULT_STATE_SERVER_PORT)]
    pub state_server_port: u16,

    /// Shared secret of the cluster; frontends and the state server must present the same. Required.
    #[arg(long, env = "SCC_AUTH_KEY", hide_env_values = true)]
    pub cluster_key: Option<String>,

    /// Interval between heartbeats to the state server, in milliseconds. The link
    /// is dropped and re-established after 3 intervals without a word from it.
    #[arg(long, env = "BROKER_HEARTBEAT_MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,

    /// A fabric link silent for longer than this is closed, in milliseconds
    /// (frontends ping every second).
    #[arg(long, env = "BROKER_LINK_TIMEOUT_MS", default_value_t = 3000)]
    pub link_timeout_ms: u64,

    /// Frames queued toward one fabric link before it is closed as a slow link.
    #[arg(long, env = "BROKER_LINK_QUEUE", default_value_t = 65_536)]
    pub link_queue: usize,

    /// After leaving the slot table on SIGTERM, keep serving links this long, in milliseconds.
    #[arg(long, env = "BROKER_LEAVE_DRAIN_MS", default_value_t = 1000)]
    pub leave_drain_ms: u64,

    /// Longest wait on SIGTERM for the state server to commit a table without
    /// this broker, in milliseconds; then the broker drains and exits anyway.
    #[arg(long, env = "BROKER_LEAVE_TIMEOUT_MS", default_value_t = 30_000)]
    pub leave_timeout_ms: u64,

    /// After binding, write the bound addresses as JSON to this file
    /// (`{"fabric":"127.0.0.1:P","admin":"127.0.0.1:Q"}`), for tests and scripts using port 0.
    #[arg(long, env = "BROKER_PORTS_FILE")]
    pub ports_file: Option<PathBuf>,

    /// Log as JSON lines (for Kubernetes) instead of text. Levels come from RUST_LOG.
    #[arg(long, env = "BROKER_LOG_JSON")]
    pub log_json: bool,
}

/// The validated configuration of a broker.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: String,
    pub fabric_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// `None`: derived from the bound fabric address.
    pub advertise_addr: Option<String>,
    /// `host:port`; `None` runs standalone.
    pub state_server: Option<String>,
    pub cluster_key: String,
    pub heartbeat: Duration,
    pub link_timeout: Duration,
    /// Time a new fabric link has to send `Hello`.
    pub hello_timeout: Duration,
    pub link_queue: usize,
    pub leave_drain: Duration,
    pub leave_timeout: Duration,
}

impl Config {
    /// Loopback on port 0 for both ports, standalone, short leave timers: what tests start.
    #[must_use]
    pub fn for_test() -> Self {
        let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self {
            id: random_id(),
            fabric_addr: lo,
            admin_addr: lo,
            advertise_addr: None,
            state_server: None,
            cluster_key: "test-key".into(),
            heartbeat: Duration::from_millis(200),
            link_timeout: Duration::from_millis(3000),
            hello_timeout: Duration::from_secs(5),
            link_queue: 65_536,
            leave_drain: Duration::from_millis(200),
            leave_timeout: Duration::from_secs(5),
        }
    }
}

/// `broker-` and 8 random hex digits.
#[must_use]
pub fn random_id() -> String {
    format!("broker-{:08x}", rand::rng().random::<u32>())
}

impl TryFrom<&Args> for Config {
    type Error = Error;

    fn try_from(a: &Args) -> Result<Self, Error> {
        let cluster_key = match a.cluster_key.as_deref() {
            None | Some("") => {
                return Err(Error::config(
                    "--cluster-key",
                    "required (or set SCC_AUTH_KEY): the shared secret frontends and the state server present",
                ))
            }
            Some(k) => k.to_owned(),
        };
        let id = match a.id.as_deref() {
            None => random_id(),
            Some("") => return Err(Error::config("--id", "must not be empty")),
            Some(id) => id.to_owned(),
        };
        if a.advertise_addr.as_deref().is_some_and(|s| !looks_like_host_port(s)) {
            return Err(Error::config("--advertise-addr", "must be host:port"));
        }
        let state_server = match (&a.state_server, &a.state_server_host) {
            (Some(s), _) if !looks_like_host_port(s) => {
                return Err(Error::config("--state-server", "must be host:port"));
            }
            (Some(s), _) => Some(s.clone()),
            (None, Some(h)) if h.is_empty() => return Err(Error::config("--state-server-host", "must not be empty")),
            (None, Some(h)) => Some(join_host_port(h, a.state_server_port)),
            (None, None) => None,
        };
        let positive = |flag: &'static str, v: u64| {
            if v == 0 {
                Err(Error::config(flag, "must be greater than 0"))
            } else {
                Ok(Duration::from_millis(v))
            }
        };
        if a.link_queue == 0 {
            return Err(Error::config("--link-queue", "must be greater than 0"));
        }
        let heartbeat = positive("--heartbeat-ms", a.heartbeat_ms)?;
        let link_timeout = positive("--link-timeout-ms", a.link_timeout_ms)?;
        Ok(Config {
            id,
            fabric_addr: SocketAddr::new(a.host, a.port),
            admin_addr: SocketAddr::new(a.host, a.admin_port),
            advertise_addr: a.advertise_addr.clone(),
            state_server,
            cluster_key,
            heartbeat,
            link_timeout,
            hello_timeout: Duration::from_secs(5),
            link_queue: a.link_queue,
            leave_drain: Duration::from_millis(a.leave_drain_ms),
            leave_timeout: positive("--leave-timeout-ms", a.leave_timeout_ms)?,
        })
    }
}

/// `host:port` with a non-empty host and a numeric port (the host is resolved later).
fn looks_like_host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The address to announce for a listener bound at `bound`: an unspecified
/// IP (0.0.0.0 or ::) becomes loopback, which is right for one machine;
/// anything reachable from elsewhere needs `--advertise-addr`.
#[must_use]
pub fn advertise_for(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, Error> {
        let a = Args::try_parse_from(std::iter::once("broker").chain(args.iter().copied())).expect("parses");
        Config::try_from(&a)
    }

    #[test]
    fn the_cluster_key_is_required_and_the_error_names_the_flag() {
        let e = parse(&[]).unwrap_err();
        assert!(e.to_string().contains("--cluster-key"), "{e}");
        assert!(e.to_string().contains("SCC_AUTH_KEY"), "{e}");
    }

    #[test]
    fn defaults() {
        let c = parse(&["--cluster-key", "k"]).unwrap();
        assert_eq!(c.fabric_addr.port(), 8888);
        assert_eq!(c.admin_addr.port(), 8889);
        assert!(c.state_server.is_none());
        assert!(c.id.starts_with("broker-") && c.id.len() == "broker-".len() + 8, "{}", c.id);
        assert_eq!(c.link_timeout, Duration::from_millis(3000));
        assert_eq!(c.link_queue, 65_536);
        assert_eq!(c.leave_timeout, Duration::from_secs(30));
    }

    #[test]
    fn the_state_server_is_host_port_or_host_and_port() {
        let c = parse(&["--cluster-key", "k", "--state-server", "state:9000"]).unwrap();
        assert_eq!(c.state_server.as_deref(), Some("state:9000"));
        let c = parse(&["--cluster-key", "k", "--state-server-host", "state"]).unwrap();
        assert_eq!(c.state_server.as_deref(), Some("state:7777"));
        let c = parse(&["--cluster-key", "k", "--state-server-host", "state", "--state-server-port", "1"]).unwrap();
        assert_eq!(c.state_server.as_deref(), Some("state:1"));
        let e = parse(&["--cluster-key", "k", "--state-server", "state"]).unwrap_err();
        assert!(e.to_string().contains("--state-server"), "{e}");
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (flag, value) in [("--heartbeat-ms", "0"), ("--link-timeout-ms", "0"), ("--link-queue", "0")] {
            let e = parse(&["--cluster-key", "k", flag, value]).unwrap_err();
            assert!(e.to_string().contains(flag), "{e}");
        }
        let e = parse(&["--cluster-key", "k", "--advertise-addr", "nohost"]).unwrap_err();
        assert!(e.to_string().contains("--advertise-addr"), "{e}");
    }

    #[test]
    fn unspecified_addresses_are_advertised_as_loopback() {
        assert_eq!(advertise_for("0.0.0.0:81".parse().unwrap()), "127.0.0.1:81");
        assert_eq!(advertise_for("[::]:81".parse().unwrap()), "[::1]:81");
        assert_eq!(advertise_for("10.0.0.2:81".parse().unwrap()), "10.0.0.2:81");
    }
}
