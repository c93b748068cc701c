//! Bind, then run: the broker's entry points, its accept loop, and the
//! order of a graceful leave.
//!
//! [`Broker::bind`] takes the ports (port 0 allowed; the bound addresses are
//! readable right after), [`Broker::run`] serves until its shutdown token is
//! cancelled and then leaves: `/ready` turns 503, the state server is asked
//! to take this broker out of the slot table, links keep being served until
//! a committed table without it arrives (bounded by the leave timeout) and
//! for the drain delay after, and only then are links closed. `main` and the
//! tests call the same two functions; nothing here is process-wide.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::config::{advertise_for, Config};
use crate::control::{self, Signals};
use crate::error::Error;
use crate::link;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::stats::Stats;
use crate::{admin, Status};

/// First and longest pause of the accept loop after an error (e.g. out of file descriptors).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Time tasks get to end once links are closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound, not yet running, broker.
pub struct Broker {
    node: Arc<Node>,
    metrics: Arc<Metrics>,
    fabric: TcpListener,
    admin: TcpListener,
    fabric_addr: SocketAddr,
    admin_addr: SocketAddr,
}

impl Broker {
    /// Binds the fabric and admin ports.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        let fabric = TcpListener::bind(config.fabric_addr).await.map_err(|source| Error::Bind {
            what: "fabric links",
            addr: config.fabric_addr,
            flag: "--host/--port",
            source,
        })?;
        let admin = TcpListener::bind(config.admin_addr).await.map_err(|source| Error::Bind {
            what: "admin HTTP",
            addr: config.admin_addr,
            flag: "--host/--admin-port",
            source,
        })?;
        let bound = |l: &TcpListener, addr: SocketAddr, what, flag| {
            l.local_addr().map_err(|source| Error::Bind { what, addr, flag, source })
        };
        let fabric_addr = bound(&fabric, config.fabric_addr, "fabric links", "--host/--port")?;
        let admin_addr = bound(&admin, config.admin_addr, "admin HTTP", "--host/--admin-port")?;
        let advertise = config.advertise_addr.clone().unwrap_or_else(|| advertise_for(fabric_addr));
        let node = Arc::new(Node::new(config, advertise));
        let metrics = Arc::new(Metrics::new(node.clone()));
        Ok(Self { node, metrics, fabric, admin, fabric_addr, admin_addr })
    }

    /// The bound fabric address (the port is real even if 0 was asked for).
    #[must_use]
    pub fn fabric_addr(&self) -> SocketAddr {
        self.fabric_addr
    }

    #[must_use]
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    #[must_use]
    pub fn id(&self) -> &str {
        &self.node.config.id
    }

    /// The `host:port` announced to the state server.
    #[must_use]
    pub fn advertise_addr(&self) -> &str {
        &self.node.advertise_addr
    }

    /// The broker's shared state: counters, status, routing table. Stays
    /// readable while and after it runs.
    #[must_use]
    pub fn node(&self) -> Arc<Node> {
        self.node.clone()
    }

    /// The broker's Prometheus registry (what `/metrics` renders).
    #[must_use]
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.node.stats
    }

    #[must_use]
    pub fn status(&self) -> &Status {
        &self.node.status
    }

    /// Writes `{"fabric":"host:port","admin":"host:port"}` to `path`
    /// atomically (a temporary file, then a rename). An unspecified bound IP
    /// is written as loopback, so the file gives addresses one can connect to.
    pub fn write_ports_file(&self, path: &Path) -> Result<(), Error> {
        let body = serde_json::json!({
            "fabric": advertise_for(self.fabric_addr),
            "admin": advertise_for(self.admin_addr),
        })
        .to_string();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| Error::PortsFile { path: path.to_owned(), source })
    }

    /// Serves until `shutdown` is cancelled, then leaves gracefully (see the module doc).
    pub async fn run(self, shutdown: CancellationToken) {
        self.run_until(shutdown, CancellationToken::new()).await;
    }

    /// Like [`run`](Self::run), but cancelling `kill` closes every link at
    /// once, whatever stage of leaving the broker is in: the in-process
    /// stand-in for SIGKILL.
    pub async fn run_until(self, shutdown: CancellationToken, kill: CancellationToken) {
        let span = tracing::info_span!("broker", node = %self.node.config.id, role = "broker");
        self.serve(shutdown, kill).instrument(span).await;
    }

    async fn serve(self, shutdown: CancellationToken, kill: CancellationToken) {
        let Broker { node, metrics, fabric, admin, fabric_addr, admin_addr } = self;
        let tracker = TaskTracker::new();
        // Cancelled when links are to be closed: after the drain, or on kill.
        let close = kill.child_token();
        let signals = Signals::default();
        info!(%fabric_addr, %admin_addr, advertise = %node.advertise_addr, "broker listening");
        tracker.spawn(accept_loop(fabric, node.clone(), close.clone(), tracker.clone()).in_current_span());
        tracker.spawn(admin::run(admin, node.clone(), metrics, close.clone(), tracker.clone()).in_current_span());
        if let Some(addr) = node.config.state_server.clone() {
            tracker.spawn(control::run(node.clone(), addr, signals.clone()).in_current_span());
        }

        tokio::select! {
            () = shutdown.cancelled() => {}
            () = close.cancelled() => {}
        }
        if !close.is_cancelled() {
            leave(&node, &signals, &close).await;
        }
        info!(links = node.router.links(), "closing fabric links");
        close.cancel();
        signals.stop.cancel();
        tracker.close();
        if tokio::time::timeout(CLOSE_TIMEOUT, tracker.wait()).await.is_err() {
            warn!(tasks = tracker.len(), "tasks did not end in time after closing");
        }
        info!("broker stopped");
    }
}

/// Leaves the slot table (if there is a state server) and drains; returns
/// early if `close` is cancelled (killed).
async fn leave(node: &Node, signals: &Signals, close: &CancellationToken) {
    if node.config.state_server.is_some() {
        info!("leaving: waiting for a committed slot table without this broker");
        control::leaving_now(node, signals);
        let timeout = node.config.leave_timeout;
        tokio::select! {
            () = close.cancelled() => return,
            () = signals.left.cancelled() => info!("out of the slot table"),
            () = tokio::time::sleep(timeout) => warn!(
                timeout_ms = timeout.as_millis() as u64,
                "leave timeout: no committed table without this broker arrived; draining anyway"
            ),
        }
    } else {
        node.status.set_leaving();
    }
    let drain = node.config.leave_drain;
    info!(drain_ms = drain.as_millis() as u64, "draining");
    tokio::select! {
        () = close.cancelled() => {}
        () = tokio::time::sleep(drain) => {}
    }
}

async fn accept_loop(listener: TcpListener, node: Arc<Node>, close: CancellationToken, tracker: TaskTracker) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            () = close.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                node.stats.links_accepted.fetch_add(1, Ordering::Relaxed);
                let span = tracing::debug_span!(
                    "link",
                    %peer,
                    link = tracing::field::Empty,
                    frontend = tracing::field::Empty
                );
                let serve = link::serve(stream, peer, node.clone(), close.clone(), tracker.clone());
                tracker.spawn(serve.instrument(span));
            }
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE) or a transient
                // error: pause rather than spin, and say so.
                node.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    () = close.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}
