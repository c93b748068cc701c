//! Bind, then run: the listeners, the accept loop, and the core task that
//! owns the [`ClusterState`] and carries out its actions.
//!
//! All state lives in one task (the core); links and the status page talk to
//! it over one bounded queue, so there is no lock and no global. Each link
//! gets a bounded queue of frames from the core; a node that does not read
//! is disconnected rather than allowed to stall the core.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::control::{ControlFrame, Role, MAX_STATUS_JSON_BYTES};
use protocol::slots::SlotTable;
use tokio::net::TcpListener;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::cluster_state::{Action, ClusterState, ConnId, Event, Status, MAX_NODES};
use crate::config::Config;
use crate::error::Error;
use crate::link::{self, LinkCtx};
use crate::metrics::{Metrics, Refusal, Refusals};
use crate::status;

/// Messages queued toward the core from all links and the status page.
const CORE_QUEUE: usize = 1024;
/// Control connections open at once (with or without a `Hello` yet).
pub const MAX_LINKS: usize = MAX_NODES + 64;
/// First and longest pause of the accept loop after an error (e.g. out of file descriptors).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Time tasks get to finish after shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What links and the status page tell the core.
pub(crate) enum CoreMsg {
    /// A link passed the `Hello` checks; `tx` is its outbound queue.
    Hello {
        conn: ConnId,
        peer: SocketAddr,
        node: String,
        role: Role,
        committed: Option<SlotTable>,
        tx: mpsc::Sender<ControlFrame>,
    },
    /// A frame read after the `Hello`.
    Frame { conn: ConnId, frame: ControlFrame },
    /// The link's task has ended.
    Gone { conn: ConnId },
    /// The status page (or a metrics scrape) wants a snapshot.
    Status(oneshot::Sender<Status>),
}

/// A bound, not yet running, state server.
pub struct StateServer {
    config: Config,
    metrics: Arc<Metrics>,
    control: TcpListener,
    http: TcpListener,
    addr: SocketAddr,
    http_addr: SocketAddr,
}

impl StateServer {
    /// Binds the control and HTTP listeners (port 0 allowed).
    pub async fn bind(config: Config) -> Result<Self, Error> {
        let bind = |addr: SocketAddr, flag: &'static str| async move {
            let l = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, flag, source })?;
            let bound = l.local_addr().map_err(|source| Error::Bind { addr, flag, source })?;
            Ok::<_, Error>((l, bound))
        };
        let (control, addr) = bind(config.control_addr, "--host/--port").await?;
        let (http, http_addr) = bind(config.http_addr, "--host/--http-port").await?;
        Ok(Self { config, metrics: Arc::new(Metrics::new()), control, http, addr, http_addr })
    }

    /// The bound control address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's Prometheus registry (what `/metrics` renders).
    #[must_use]
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The bound HTTP address.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Writes `{"control":"host:port","http":"host:port"}` atomically (temp
    /// file, then rename). An unspecified host (0.0.0.0) is written as
    /// 127.0.0.1, so the file can be used to connect.
    pub fn write_ports_file(&self, path: &Path) -> Result<(), Error> {
        let reachable = |mut a: SocketAddr| {
            if a.ip().is_unspecified() {
                a.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            a.to_string()
        };
        let body = serde_json::json!({"control": reachable(self.addr), "http": reachable(self.http_addr)}).to_string();
        let err = |source| Error::PortsFile { path: path.display().to_string(), source };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Serves until `shutdown` is cancelled. On shutdown a reshard in progress
    /// is dropped (nodes keep their committed table) and every link closes.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = tracing::info_span!("state_server", role = "state-server", addr = %self.addr);
        async move {
            let (core_tx, core_rx) = mpsc::channel(CORE_QUEUE);
            let refused = self.metrics.refusals();
            let ctx = Arc::new(LinkCtx {
                key: self.config.cluster_key.clone(),
                hello_timeout: self.config.hello_timeout,
                core: core_tx.clone(),
                refused: refused.clone(),
            });
            let tracker = TaskTracker::new();
            info!(control = %self.addr, http = %self.http_addr, "listening");
            tracker.spawn(accept_loop(self.control, ctx, shutdown.clone(), tracker.clone()).in_current_span());
            tracker.spawn(
                status::serve(self.http, core_tx, self.metrics.clone(), shutdown.clone(), tracker.clone())
                    .in_current_span(),
            );
            let state = ClusterState::new(self.config.timing, now());
            run_core(core_rx, state, refused, self.metrics.clone(), shutdown).await;
            tracker.close();
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, tracker.wait()).await.is_err() {
                warn!(left = tracker.len(), "shutdown timeout: dropping tasks that did not stop");
            }
            info!("stopped");
        }
        .instrument(span)
        .await;
    }
}

/// The clock the core reads: Tokio's, so tests may pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn accept_loop(listener: TcpListener, ctx: Arc<LinkCtx>, shutdown: CancellationToken, tracker: TaskTracker) {
    let permits = Arc::new(Semaphore::new(MAX_LINKS));
    let mut next_conn: ConnId = 0;
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    warn!(%peer, limit = MAX_LINKS, "too many control links; dropping a new one");
                    ctx.refused.count(Refusal::TooManyLinks);
                    continue;
                };
                next_conn += 1;
                let conn = next_conn;
                let span = tracing::info_span!(
                    "link",
                    conn,
                    %peer,
                    node = tracing::field::Empty,
                    role = tracing::field::Empty
                );
                let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
                tracker.spawn(
                    async move {
                        link::run(stream, peer, conn, ctx, shutdown).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// A link as the core knows it.
struct LinkHandle {
    node: String,
    peer: SocketAddr,
    tx: mpsc::Sender<ControlFrame>,
}

/// The core: owns the state, applies events, routes actions to links.
struct Core {
    state: ClusterState,
    links: HashMap<ConnId, LinkHandle>,
    refused: Arc<Refusals>,
    metrics: Arc<Metrics>,
}

async fn run_core(
    mut rx: mpsc::Receiver<CoreMsg>,
    state: ClusterState,
    refused: Arc<Refusals>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut core = Core { state, links: HashMap::new(), refused, metrics };
    loop {
        let wake = core.state.next_wakeup(now());
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            msg = rx.recv() => match msg {
                Some(msg) => core.handle(msg),
                None => break,
            },
            () = tokio::time::sleep_until(wake.into()) => core.apply(Event::Tick),
        }
    }
    match core.state.abort_reshard() {
        Some(epoch) => warn!(
            epoch,
            committed = core.state.committed().epoch,
            "shutdown: reshard aborted; nodes keep the committed table"
        ),
        None => info!(epoch = core.state.committed().epoch, "shutdown"),
    }
    // Dropping the link queues closes every link.
}

impl Core {
    fn handle(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Hello { conn, peer, node, role, committed, tx } => {
                self.links.insert(conn, LinkHandle { node: node.clone(), peer, tx });
                self.apply(Event::NodeConnected { node, conn, peer: peer.to_string(), role, committed });
            }
            CoreMsg::Frame { conn, frame } => {
                let Some(link) = self.links.get(&conn) else { return };
                if self.state.conn_of(&link.node) != Some(conn) {
                    return; // a replaced link's last words
                }
                let node = link.node.clone();
                let event = match frame {
                    ControlFrame::Heartbeat => Event::Heartbeat { node },
                    ControlFrame::Load { load } => Event::Load { node, load },
                    ControlFrame::StatusRequest { id } => {
                        self.answer_status(conn, id);
                        Event::Heartbeat { node }
                    }
                    ControlFrame::Leave => Event::Leave { node },
                    ControlFrame::PrepareAck { epoch } => Event::PrepareAck { node, epoch },
                    other => {
                        debug!(%node, frame = ?other, "unexpected frame from a node; counted as a heartbeat");
                        Event::Heartbeat { node }
                    }
                };
                self.apply(event);
            }
            CoreMsg::Gone { conn } => {
                if let Some(link) = self.links.remove(&conn) {
                    if self.state.conn_of(&link.node) == Some(conn) {
                        self.apply(Event::NodeDisconnected { node: link.node });
                    }
                }
            }
            CoreMsg::Status(reply) => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn status(&self) -> Status {
        let mut status = self.state.status(now());
        status.refused_links = self.refused.total();
        status
    }

    /// Answers a node's `StatusRequest` on its link with what `/status` serves. Never waits: a link
    /// whose queue is full gets no answer (its node times out and answers from what it knows), and
    /// the node that sent the request is the one that is not reading, so this is its problem alone.
    fn answer_status(&self, conn: ConnId, id: u64) {
        let Some(handle) = self.links.get(&conn) else { return };
        let json = match serde_json::to_string(&self.status()) {
            Ok(json) if json.len() <= MAX_STATUS_JSON_BYTES => json,
            Ok(json) => {
                warn!(bytes = json.len(), limit = MAX_STATUS_JSON_BYTES, "status too large for a StatusReply");
                return;
            }
            Err(e) => {
                warn!(error = %e, "status did not serialise");
                return;
            }
        };
        if handle.tx.try_send(ControlFrame::StatusReply { id, json }).is_err() {
            debug!(node = %handle.node, "status reply dropped: the link's queue is full or closed");
        }
    }

    fn apply(&mut self, event: Event) {
        let now = now();
        let mut queue: VecDeque<Action> = self.state.on_event(event, now).into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send { node, frame } => {
                    let Some(conn) = self.state.conn_of(&node) else { continue };
                    let Some(handle) = self.links.get(&conn) else { continue };
                    match handle.tx.try_send(frame) {
                        Ok(()) | Err(TrySendError::Closed(_)) => {}
                        Err(TrySendError::Full(_)) => {
                            warn!(%node, queue = link::OUTBOUND_QUEUE, "node is not reading; closing its link");
                            self.links.remove(&conn);
                            queue.extend(self.state.on_event(Event::NodeDisconnected { node }, now));
                        }
                    }
                }
                Action::Close { conn, reason } => {
                    let Some(handle) = self.links.remove(&conn) else { continue };
                    if let Some(reason) = reason {
                        warn!(peer = %handle.peer, node = %handle.node, %reason, "refused a control link");
                        self.refused.count(Refusal::Rejected);
                        let _ = handle.tx.try_send(ControlFrame::Refused { reason });
                    }
                    // Dropping `handle.tx` makes the link write what is queued, then close.
                }
            }
        }
        for took in self.state.take_reshard_durations() {
            self.metrics.reshard_seconds.observe(took.as_secs_f64());
        }
    }
}
