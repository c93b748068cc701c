//! A whole cluster of real processes on 127.0.0.1: one state server, M
//! brokers, N frontends, each bound on port 0 and found through its ports
//! file, with short timers so faults play out in a second or two.
//!
//! `start` returns only once the cluster is in service: the state server's
//! `/status` has every broker in the slot table, every frontend connected
//! and no reshard running, and every frontend and broker answers `/ready`.
//!
//! Operations have exact meanings: `kill_*` is SIGKILL (no drain), `stop_broker`
//! is SIGTERM (a graceful leave, awaited to its exit), `stop_frontend` is
//! SIGTERM (a drain: sockets closed with 1005 over the drain window, awaited
//! to its exit), `pause_broker` / `resume_broker` are SIGSTOP / SIGCONT (a
//! hang with no FIN), `restart_*` starts the same binary on the same ports.
//! Node indices never change: a killed node keeps its index, and
//! `add_broker` / `add_frontend` append.
//!
//! Clusters in one test binary run one at a time (a process-wide lock held
//! from `start` to drop): cluster tests measure timing on a small machine, and
//! two clusters under load at once would measure each other.
//!
//! When the cluster is dropped during a panic, it prints every node's log
//! tail and keeps its directory of logs (set `TESTKIT_KEEP_LOGS=1` to keep it
//! always).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use protocol::slots::{BrokerInfo, SlotTable};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::http;
use crate::process::{bin_path, Process};
use crate::scrape::Scrape;
use crate::wait::{try_wait_until, wait_until};

/// One cluster at a time per test binary.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// How long `start` (and a restart) may take to reach service.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of the harness's status polls.
pub const POLL: Duration = Duration::from_millis(25);

/// The timers given to the nodes. The defaults are short, so faults resolve
/// fast; each maps to one flag.
#[derive(Clone, Debug)]
pub struct Timers {
    /// State server `--settle-up-ms`: batching of joins.
    pub settle_up: Duration,
    /// State server `--settle-down-ms`: batching of leaves and deaths.
    pub settle_down: Duration,
    /// State server `--heartbeat-ms`.
    pub heartbeat: Duration,
    /// State server `--grace-ms`: time an unreachable broker has before removal.
    pub grace: Duration,
    /// State server `--prepare-timeout-ms`.
    pub prepare_timeout: Duration,
    /// State server `--rebuild-wait-ms`: no table change this long after start.
    pub rebuild_wait: Duration,
    /// Frontend `--drain-ms`: old subscriptions kept after a commit.
    pub drain: Duration,
    /// Frontend `--fabric-heartbeat-ms`.
    pub fabric_heartbeat: Duration,
    /// Frontend `--fabric-timeout-ms`: a silent broker is dead after this.
    pub fabric_timeout: Duration,
    /// Frontend `--control-heartbeat-ms`.
    pub control_heartbeat: Duration,
    /// Broker `--heartbeat-ms`.
    pub broker_heartbeat: Duration,
    /// Broker `--link-timeout-ms`.
    pub link_timeout: Duration,
    /// Broker `--leave-drain-ms`.
    pub leave_drain: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        let ms = Duration::from_millis;
        Timers {
            settle_up: ms(200),
            settle_down: ms(100),
            heartbeat: ms(200),
            grace: ms(1000),
            prepare_timeout: ms(2000),
            rebuild_wait: ms(1000),
            drain: ms(500),
            fabric_heartbeat: ms(200),
            // Long enough that a healthy broker starved of CPU by parallel tests
            // (several clusters under load on 2 cores) is not declared dead.
            fabric_timeout: ms(2000),
            control_heartbeat: ms(200),
            broker_heartbeat: ms(200),
            link_timeout: ms(2000),
            leave_drain: ms(500),
        }
    }
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Builds and starts a [`Cluster`].
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    brokers: usize,
    frontends: usize,
    timers: Timers,
    frontend_args: Vec<String>,
    broker_args: Vec<String>,
    drain_window: Option<Duration>,
}

impl ClusterBuilder {
    #[must_use]
    pub fn brokers(mut self, n: usize) -> Self {
        self.brokers = n;
        self
    }

    #[must_use]
    pub fn frontends(mut self, n: usize) -> Self {
        self.frontends = n;
        self
    }

    /// Both settle delays.
    #[must_use]
    pub fn settle(mut self, d: Duration) -> Self {
        self.timers.settle_up = d;
        self.timers.settle_down = d;
        self
    }

    #[must_use]
    pub fn drain(mut self, d: Duration) -> Self {
        self.timers.drain = d;
        self
    }

    #[must_use]
    pub fn fabric_timeout(mut self, d: Duration) -> Self {
        self.timers.fabric_timeout = d;
        self
    }

    #[must_use]
    pub fn grace(mut self, d: Duration) -> Self {
        self.timers.grace = d;
        self
    }

    /// Every timer at once.
    #[must_use]
    pub fn timers(mut self, timers: Timers) -> Self {
        self.timers = timers;
        self
    }

    /// Frontend `--drain-window-ms`: on SIGTERM, sockets are closed spread
    /// over this window (the frontend's own default when not set).
    #[must_use]
    pub fn drain_window(mut self, d: Duration) -> Self {
        self.drain_window = Some(d);
        self
    }

    /// An extra flag for every frontend.
    #[must_use]
    pub fn frontend_arg(mut self, arg: impl Into<String>) -> Self {
        self.frontend_args.push(arg.into());
        self
    }

    /// An extra flag for every broker.
    #[must_use]
    pub fn broker_arg(mut self, arg: impl Into<String>) -> Self {
        self.broker_args.push(arg.into());
        self
    }

    /// Starts the state server, then the brokers, then the frontends, and
    /// waits until the cluster is in service.
    ///
    /// # Panics
    /// When a binary is missing, a node does not start, or the cluster is not
    /// in service within [`START_TIMEOUT`] (with every node's log tail).
    pub async fn start(self) -> Cluster {
        let serial = SERIAL.lock().await;
        let bins = ["state-server", "broker", "frontend"].map(|b| bin_path(b).unwrap_or_else(|e| panic!("{e}")));
        let dir = tempfile::Builder::new().prefix("sc-cluster-").tempdir().expect("a temporary directory");
        let dir_path = dir.path().to_path_buf();
        let cluster_key = format!("cluster-{:032x}", rand::random::<u128>());
        let auth_key = format!("auth-{:064x}", rand::random::<u128>());
        let [state_bin, broker_bin, frontend_bin] = bins;

        let args = state_args(&self.timers, &cluster_key, 0, 0);
        let mut state_proc = Process::spawn("state-server", state_bin, args, &dir_path);
        let ports = state_proc.wait_ports(START_TIMEOUT).await.unwrap_or_else(|e| panic!("{e}"));
        let control = addr(&ports, "control", state_proc.name());
        let http = addr(&ports, "http", state_proc.name());
        let state = StateNode { proc: state_proc, control, http };

        let mut cluster = Cluster {
            timers: self.timers,
            cluster_key,
            auth_key,
            broker_bin,
            frontend_bin,
            broker_args: self.broker_args,
            frontend_args: self.frontend_args,
            drain_window: self.drain_window,
            dir: Some(dir),
            dir_path,
            state,
            brokers: Vec::new(),
            frontends: Vec::new(),
            _serial: serial,
        };
        for _ in 0..self.brokers {
            cluster.spawn_broker();
        }
        for i in 0..cluster.brokers.len() {
            cluster.await_broker_ports(i).await;
        }
        for _ in 0..self.frontends {
            cluster.spawn_frontend();
        }
        for i in 0..cluster.frontends.len() {
            cluster.await_frontend_ports(i).await;
        }
        cluster.wait_in_service(START_TIMEOUT).await;
        cluster
    }
}

fn unbound() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn addr(ports: &Value, key: &str, who: &str) -> SocketAddr {
    ports[key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{who}: ports file has no `{key}` address: {ports}"))
}

fn state_args(t: &Timers, key: &str, port: u16, http_port: u16) -> Vec<String> {
    [
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--http-port",
        &http_port.to_string(),
        "--cluster-key",
        key,
        "--settle-up-ms",
        &ms(t.settle_up),
        "--settle-down-ms",
        &ms(t.settle_down),
        "--heartbeat-ms",
        &ms(t.heartbeat),
        "--grace-ms",
        &ms(t.grace),
        "--prepare-timeout-ms",
        &ms(t.prepare_timeout),
        "--rebuild-wait-ms",
        &ms(t.rebuild_wait),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The state server's `/status` document.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Status {
    pub epoch: u64,
    pub slots: Vec<SlotStatus>,
    pub brokers: Vec<BrokerStatus>,
    pub frontends: Vec<FrontendStatus>,
    /// The reshard in progress, if any.
    pub reshard: Option<Value>,
    pub refused_links: u64,
    pub rebuilding: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SlotStatus {
    pub slot: usize,
    pub id: String,
    pub addr: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BrokerStatus {
    pub id: String,
    pub addr: String,
    pub connected: bool,
    pub last_seen_ms: Value,
    pub leaving: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct FrontendStatus {
    pub id: String,
    pub peer: Value,
    pub connected: bool,
    pub last_seen_ms: Value,
}

impl Status {
    /// The committed slot table.
    #[must_use]
    pub fn table(&self) -> SlotTable {
        let mut slots = self.slots.clone();
        slots.sort_by_key(|s| s.slot);
        SlotTable {
            epoch: self.epoch,
            slots: slots.into_iter().map(|s| BrokerInfo { id: s.id, addr: s.addr }).collect(),
        }
    }

    /// Broker ids in the slot table.
    #[must_use]
    pub fn slot_ids(&self) -> BTreeSet<String> {
        self.slots.iter().map(|s| s.id.clone()).collect()
    }

    #[must_use]
    pub fn frontend_connected(&self, id: &str) -> bool {
        self.frontends.iter().any(|f| f.id == id && f.connected)
    }

    #[must_use]
    pub fn broker_connected(&self, id: &str) -> bool {
        self.brokers.iter().any(|b| b.id == id && b.connected)
    }

    /// No reshard running and not rebuilding.
    #[must_use]
    pub fn quiet(&self) -> bool {
        self.reshard.is_none() && !self.rebuilding
    }
}

struct StateNode {
    proc: Process,
    control: SocketAddr,
    http: SocketAddr,
}

pub struct BrokerNode {
    pub id: String,
    proc: Process,
    pub fabric: SocketAddr,
    pub admin: SocketAddr,
}

pub struct FrontendNode {
    pub id: String,
    proc: Process,
    pub json: SocketAddr,
    pub min_bin: SocketAddr,
}

/// A running cluster; every process is killed when it is dropped.
pub struct Cluster {
    timers: Timers,
    cluster_key: String,
    auth_key: String,
    broker_bin: PathBuf,
    frontend_bin: PathBuf,
    broker_args: Vec<String>,
    frontend_args: Vec<String>,
    drain_window: Option<Duration>,
    /// The directory of ports files and logs; `None` once kept.
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    state: StateNode,
    brokers: Vec<BrokerNode>,
    frontends: Vec<FrontendNode>,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    #[must_use]
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            brokers: 2,
            frontends: 2,
            timers: Timers::default(),
            frontend_args: Vec::new(),
            broker_args: Vec::new(),
            drain_window: None,
        }
    }

    // ---- handles -------------------------------------------------------

    #[must_use]
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    #[must_use]
    pub fn cluster_key(&self) -> &str {
        &self.cluster_key
    }

    #[must_use]
    pub fn auth_key(&self) -> &str {
        &self.auth_key
    }

    /// The directory holding the logs and ports files.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    #[must_use]
    pub fn broker_count(&self) -> usize {
        self.brokers.len()
    }

    #[must_use]
    pub fn frontend_count(&self) -> usize {
        self.frontends.len()
    }

    #[must_use]
    pub fn broker(&self, i: usize) -> &BrokerNode {
        &self.brokers[i]
    }

    #[must_use]
    pub fn broker_id(&self, i: usize) -> &str {
        &self.brokers[i].id
    }

    /// The broker's fabric address (frontends connect there).
    #[must_use]
    pub fn broker_fabric(&self, i: usize) -> SocketAddr {
        self.brokers[i].fabric
    }

    /// `http://host:port` of the broker's admin port.
    #[must_use]
    pub fn broker_admin_url(&self, i: usize) -> String {
        format!("http://{}", self.brokers[i].admin)
    }

    #[must_use]
    pub fn frontend(&self, i: usize) -> &FrontendNode {
        &self.frontends[i]
    }

    #[must_use]
    pub fn frontend_id(&self, i: usize) -> &str {
        &self.frontends[i].id
    }

    /// `ws://host:port/socketcluster/` of the frontend's JSON listener.
    #[must_use]
    pub fn frontend_url(&self, i: usize) -> String {
        format!("ws://{}/socketcluster/", self.frontends[i].json)
    }

    /// `http://host:port` of the frontend's JSON listener (`/health`, `/ready`).
    #[must_use]
    pub fn frontend_http_url(&self, i: usize) -> String {
        format!("http://{}", self.frontends[i].json)
    }

    /// Whether the frontend's process is alive.
    #[must_use]
    pub fn frontend_running(&mut self, i: usize) -> bool {
        self.frontends[i].proc.is_running()
    }

    /// Name and process id of every running node (state server, brokers, frontends), for
    /// measuring their CPU and memory from `/proc`.
    pub fn pids(&mut self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        if self.state.proc.is_running() {
            out.extend(self.state.proc.pid().map(|p| ("state-server".to_owned(), p)));
        }
        for b in &mut self.brokers {
            if b.proc.is_running() {
                out.extend(b.proc.pid().map(|p| (format!("broker {}", b.id), p)));
            }
        }
        for f in &mut self.frontends {
            if f.proc.is_running() {
                out.extend(f.proc.pid().map(|p| (format!("frontend {}", f.id), p)));
            }
        }
        out
    }

    /// The state server's HTTP address (`/status`, `/metrics`).
    #[must_use]
    pub fn state_http(&self) -> SocketAddr {
        self.state.http
    }

    /// The state server's control address (nodes connect there).
    #[must_use]
    pub fn state_control(&self) -> SocketAddr {
        self.state.control
    }

    /// `http://host:port` of the state server's status port.
    #[must_use]
    pub fn state_url(&self) -> String {
        format!("http://{}", self.state.http)
    }

    // ---- status --------------------------------------------------------

    /// The state server's `/status`.
    ///
    /// # Errors
    /// When it does not answer 200 with a status document.
    pub async fn try_status(&self) -> Result<Status, String> {
        let r = http::get(self.state.http, "/status").await?;
        if r.status != 200 {
            return Err(format!("/status answered {}: {}", r.status, r.body));
        }
        serde_json::from_str(&r.body).map_err(|e| format!("/status is not a status document ({e}): {}", r.body))
    }

    /// The state server's `/status`, retried for a few seconds.
    ///
    /// # Panics
    /// When it cannot be read.
    pub async fn status(&self) -> Status {
        wait_until(Duration::from_secs(5), POLL, || self.try_status()).await
    }

    pub async fn epoch(&self) -> u64 {
        self.status().await.epoch
    }

    pub async fn slot_table(&self) -> SlotTable {
        self.status().await.table()
    }

    /// Waits until `/status` satisfies `pred`; returns that status.
    ///
    /// # Panics
    /// On timeout, with the last status seen.
    pub async fn wait_for_status(&self, timeout: Duration, what: &str, pred: impl Fn(&Status) -> bool) -> Status {
        let pred = &pred;
        wait_until(timeout, POLL, || async move {
            match self.try_status().await {
                Ok(s) if pred(&s) => Ok(s),
                Ok(s) => Err(format!("{what}: not yet; status {s:#?}")),
                Err(e) => Err(format!("{what}: {e}")),
            }
        })
        .await
    }

    /// A node's `GET path` answer.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn get(&self, base: &str, path: &str) -> Result<http::Response, String> {
        http::get(base.trim_start_matches("http://"), path).await
    }

    /// The broker's `/health` document.
    ///
    /// # Panics
    /// When it cannot be read.
    pub async fn broker_health(&self, i: usize) -> Value {
        let r = http::get(self.brokers[i].admin, "/health").await.unwrap_or_else(|e| panic!("{e}"));
        r.json().unwrap_or_else(|e| panic!("broker {} /health: {e}", self.brokers[i].id))
    }

    /// The frontend's `/health` document.
    ///
    /// # Panics
    /// When it cannot be read.
    pub async fn frontend_health(&self, i: usize) -> Value {
        let r = http::get(self.frontends[i].json, "/health").await.unwrap_or_else(|e| panic!("{e}"));
        r.json().unwrap_or_else(|e| panic!("frontend {} /health: {e}", self.frontends[i].id))
    }

    /// The frontend's `/metrics` (on its JSON listener).
    ///
    /// # Panics
    /// When it cannot be read.
    pub async fn scrape_frontend(&self, i: usize) -> Scrape {
        Scrape::fetch(self.frontends[i].json).await.unwrap_or_else(|e| panic!("frontend {}: {e}", self.frontends[i].id))
    }

    /// The broker's `/metrics` (on its admin port).
    ///
    /// # Panics
    /// When it cannot be read.
    pub async fn scrape_broker(&self, i: usize) -> Scrape {
        Scrape::fetch(self.brokers[i].admin).await.unwrap_or_else(|e| panic!("broker {}: {e}", self.brokers[i].id))
    }

    /// The state server's `/metrics` (on its HTTP port).
    ///
    /// # Panics
    /// When it cannot be read.
    pub async fn scrape_state_server(&self) -> Scrape {
        Scrape::fetch(self.state.http).await.unwrap_or_else(|e| panic!("state server: {e}"))
    }

    /// Ids of the brokers whose process is alive (paused ones included).
    pub fn running_broker_ids(&mut self) -> BTreeSet<String> {
        self.brokers.iter_mut().filter_map(|b| b.proc.is_running().then(|| b.id.clone())).collect()
    }

    fn running_frontends(&mut self) -> Vec<usize> {
        (0..self.frontends.len()).filter(|&i| self.frontends[i].proc.is_running()).collect()
    }

    /// Waits until the slot table holds exactly the running brokers, every
    /// running frontend is connected, nothing is being resharded, and every
    /// running node answers `/ready` with 200.
    ///
    /// # Panics
    /// On timeout, with the last state seen and every node's log tail.
    pub async fn wait_in_service(&mut self, timeout: Duration) -> Status {
        let brokers = self.running_broker_ids();
        let frontends = self.running_frontends();
        let fe_ids: Vec<String> = frontends.iter().map(|&i| self.frontends[i].id.clone()).collect();
        let mut probes: Vec<(String, SocketAddr)> =
            frontends.iter().map(|&i| (self.frontends[i].id.clone(), self.frontends[i].json)).collect();
        probes.extend(self.brokers.iter().filter(|b| brokers.contains(&b.id)).map(|b| (b.id.clone(), b.admin)));
        let (brokers, fe_ids, probes) = (&brokers, &fe_ids, &probes);
        let this = &*self;
        let r = try_wait_until(timeout, POLL, || async move {
            let s = this.try_status().await?;
            if s.slot_ids() != *brokers {
                return Err(format!("slot table {:?}, want {brokers:?}; status {s:#?}", s.slot_ids()));
            }
            if let Some(f) = fe_ids.iter().find(|f| !s.frontend_connected(f)) {
                return Err(format!("frontend {f} not connected; status {s:#?}"));
            }
            if !s.quiet() {
                return Err(format!("reshard or rebuild in progress; status {s:#?}"));
            }
            for (id, addr) in probes {
                let r = http::get(addr, "/ready").await?;
                if r.status != 200 {
                    return Err(format!("{id} /ready answered {}: {}", r.status, r.body.trim()));
                }
            }
            Ok(s)
        })
        .await;
        match r {
            Ok(s) => s,
            Err(e) => {
                self.dump_logs();
                panic!("cluster not in service: {e}");
            }
        }
    }

    // ---- operations ----------------------------------------------------

    fn broker_args_for(&self, id: &str) -> Vec<String> {
        let t = &self.timers;
        let mut args: Vec<String> = [
            "--id",
            id,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--admin-port",
            "0",
            "--state-server",
            &self.state.control.to_string(),
            "--cluster-key",
            &self.cluster_key,
            "--heartbeat-ms",
            &ms(t.broker_heartbeat),
            "--link-timeout-ms",
            &ms(t.link_timeout),
            "--leave-drain-ms",
            &ms(t.leave_drain),
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(self.broker_args.iter().cloned());
        args
    }

    fn frontend_args_for(&self, id: &str, port: u16, min_bin_port: u16) -> Vec<String> {
        let t = &self.timers;
        let mut args: Vec<String> = [
            "--id",
            id,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--min-bin-port",
            &min_bin_port.to_string(),
            "--state-server",
            &self.state.control.to_string(),
            "--cluster-key",
            &self.cluster_key,
            "--auth-key",
            &self.auth_key,
            "--demo-rpc",
            "--drain-ms",
            &ms(t.drain),
            "--fabric-heartbeat-ms",
            &ms(t.fabric_heartbeat),
            "--fabric-timeout-ms",
            &ms(t.fabric_timeout),
            "--control-heartbeat-ms",
            &ms(t.control_heartbeat),
            // Load publishers send thousands of packets a second per socket.
            "--inbound-rate",
            "1000000",
        ]
        .map(str::to_owned)
        .to_vec();
        // The demo RPCs and the chat both define `login`; a frontend runs one of them.
        if self.frontend_args.iter().any(|a| a == "--store" || a == "--chat") {
            args.retain(|a| a != "--demo-rpc");
        }
        if let Some(d) = self.drain_window {
            args.extend(["--drain-window-ms".to_owned(), ms(d)]);
            // The shutdown timeout must exceed the window (the frontend refuses to start otherwise).
            args.extend(["--shutdown-timeout-ms".to_owned(), ms(d + Duration::from_secs(5))]);
        }
        args.extend(self.frontend_args.iter().cloned());
        args
    }

    fn spawn_frontend(&mut self) -> usize {
        let id = format!("f{}", self.frontends.len());
        let args = self.frontend_args_for(&id, 0, 0);
        let proc = Process::spawn(&id, self.frontend_bin.clone(), args, &self.dir_path);
        self.frontends.push(FrontendNode { id, proc, json: unbound(), min_bin: unbound() });
        self.frontends.len() - 1
    }

    /// Waits until the frontend answers `/ready` with 200.
    async fn wait_frontend_ready(&self, i: usize) -> Result<(), String> {
        let addr = self.frontends[i].json;
        try_wait_until(START_TIMEOUT, POLL, || async move {
            match http::get(addr, "/ready").await {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("/ready answered {}: {}", r.status, r.body.trim())),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| e.to_string())
    }

    fn spawn_broker(&mut self) -> usize {
        let id = format!("b{}", self.brokers.len());
        let args = self.broker_args_for(&id);
        let proc = Process::spawn(&id, self.broker_bin.clone(), args, &self.dir_path);
        self.brokers.push(BrokerNode { id, proc, fabric: unbound(), admin: unbound() });
        self.brokers.len() - 1
    }

    async fn await_broker_ports(&mut self, i: usize) {
        match self.brokers[i].proc.wait_ports(START_TIMEOUT).await {
            Ok(ports) => {
                let b = &mut self.brokers[i];
                b.fabric = addr(&ports, "fabric", &b.id);
                b.admin = addr(&ports, "admin", &b.id);
            }
            Err(e) => {
                self.dump_logs();
                panic!("{e}");
            }
        }
    }

    async fn await_frontend_ports(&mut self, i: usize) {
        match self.frontends[i].proc.wait_ports(START_TIMEOUT).await {
            Ok(ports) => {
                let f = &mut self.frontends[i];
                f.json = addr(&ports, "json", &f.id);
                f.min_bin = addr(&ports, "min_bin", &f.id);
            }
            Err(e) => {
                self.dump_logs();
                panic!("{e}");
            }
        }
    }

    /// Starts one more broker (id `b<index>`) and waits for its ports; it
    /// joins the table through the state server (wait for that separately).
    pub async fn add_broker(&mut self) -> usize {
        let i = self.spawn_broker();
        self.await_broker_ports(i).await;
        i
    }

    /// SIGKILL: the broker dies with no leave and no drain.
    pub fn kill_broker(&mut self, i: usize) {
        self.brokers[i].proc.kill();
    }

    /// SIGTERM: a graceful leave. Waits for the process to exit and returns
    /// its exit status.
    ///
    /// # Panics
    /// When it does not exit within 20 s.
    pub async fn stop_broker(&mut self, i: usize) -> ExitStatus {
        self.brokers[i].proc.signal(Signal::SIGTERM);
        match self.brokers[i].proc.wait_exit(Duration::from_secs(20)).await {
            Ok(s) => s,
            Err(e) => {
                self.dump_logs();
                panic!("{e}");
            }
        }
    }

    /// SIGSTOP: the broker hangs with its connections open.
    pub fn pause_broker(&mut self, i: usize) {
        self.brokers[i].proc.signal(Signal::SIGSTOP);
    }

    /// SIGCONT.
    pub fn resume_broker(&mut self, i: usize) {
        self.brokers[i].proc.signal(Signal::SIGCONT);
    }

    #[must_use]
    pub fn broker_running(&mut self, i: usize) -> bool {
        self.brokers[i].proc.is_running()
    }

    /// SIGKILL the state server.
    pub fn kill_state_server(&mut self) {
        self.state.proc.kill();
    }

    /// Starts the state server again on the same ports (after a kill) and
    /// waits until it serves `/status`. Does not wait for the nodes to
    /// report back: see [`Cluster::wait_in_service`].
    ///
    /// # Panics
    /// When it cannot be started on its old ports within a few attempts.
    pub async fn restart_state_server(&mut self) {
        self.state.proc.kill();
        let args = state_args(&self.timers, &self.cluster_key, self.state.control.port(), self.state.http.port());
        let mut last = String::new();
        // The old ports are normally free at once (SO_REUSEADDR); an outgoing
        // connection may briefly hold one, hence a few attempts.
        for _ in 0..5 {
            self.state.proc.relaunch(args.clone());
            match self.state.proc.wait_ports(START_TIMEOUT).await {
                Ok(ports) => {
                    let (control, http) =
                        (addr(&ports, "control", "state-server"), addr(&ports, "http", "state-server"));
                    assert_eq!((control, http), (self.state.control, self.state.http), "restarted on other ports");
                    wait_until(Duration::from_secs(10), POLL, || self.try_status()).await;
                    return;
                }
                Err(e) => {
                    self.state.proc.kill();
                    last = e;
                }
            }
        }
        self.dump_logs();
        panic!("state server did not restart on its ports: {last}");
    }

    /// SIGKILL the frontend.
    pub fn kill_frontend(&mut self, i: usize) {
        self.frontends[i].proc.kill();
    }

    /// Starts one more frontend (id `f<index>`) on new ports and waits until
    /// it answers `/ready` (joined the cluster, links to the brokers up).
    ///
    /// # Panics
    /// When it does not start or get ready in time.
    pub async fn add_frontend(&mut self) -> usize {
        let i = self.spawn_frontend();
        self.await_frontend_ports(i).await;
        if let Err(e) = self.wait_frontend_ready(i).await {
            self.dump_logs();
            panic!("frontend {} not ready: {e}", self.frontends[i].id);
        }
        i
    }

    /// SIGTERM: the frontend turns not-ready, stops accepting and closes its
    /// sockets with 1005 spread over its drain window. Waits for the process
    /// to exit and returns its exit status.
    ///
    /// # Panics
    /// When it does not exit within 30 s.
    pub async fn stop_frontend(&mut self, i: usize) -> ExitStatus {
        self.frontends[i].proc.signal(Signal::SIGTERM);
        match self.frontends[i].proc.wait_exit(Duration::from_secs(30)).await {
            Ok(s) => s,
            Err(e) => {
                self.dump_logs();
                panic!("{e}");
            }
        }
    }

    /// Starts the frontend again on the same ports and waits for its `/ready`.
    ///
    /// # Panics
    /// When it does not start or get ready in time.
    pub async fn restart_frontend(&mut self, i: usize) {
        self.frontends[i].proc.kill();
        let (port, min_bin) = (self.frontends[i].json.port(), self.frontends[i].min_bin.port());
        let args = self.frontend_args_for(&self.frontends[i].id.clone(), port, min_bin);
        let mut last = String::new();
        for _ in 0..5 {
            self.frontends[i].proc.relaunch(args.clone());
            match self.frontends[i].proc.wait_ports(START_TIMEOUT).await {
                Ok(_) => {
                    if let Err(e) = self.wait_frontend_ready(i).await {
                        self.dump_logs();
                        panic!("frontend {} not ready after restart: {e}", self.frontends[i].id);
                    }
                    return;
                }
                Err(e) => {
                    self.frontends[i].proc.kill();
                    last = e;
                }
            }
        }
        self.dump_logs();
        panic!("frontend did not restart on its ports: {last}");
    }

    // ---- logs ----------------------------------------------------------

    fn procs(&self) -> impl Iterator<Item = &Process> {
        std::iter::once(&self.state.proc)
            .chain(self.brokers.iter().map(|b| &b.proc))
            .chain(self.frontends.iter().map(|f| &f.proc))
    }

    /// Every node's log path and last lines, on stderr.
    pub fn dump_logs(&self) {
        self.dump_log_tails(60);
    }

    pub fn dump_log_tails(&self, lines: usize) {
        eprintln!("===== cluster logs in {}", self.dir_path.display());
        for p in self.procs() {
            eprintln!("{}", p.log_tail(lines));
        }
    }

    /// The whole log of the node named `name` (`state-server`, `b0`, `f1`…).
    #[must_use]
    pub fn log(&self, name: &str) -> String {
        self.procs().find(|p| p.name() == name).map(Process::log).unwrap_or_default()
    }

    /// Keeps the log directory after the cluster is dropped; returns its path.
    pub fn keep_logs(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.dir_path.clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Frontends first, then brokers, then the state server: each kill is
        // a SIGKILL and a reap, so nothing outlives the test.
        for f in &mut self.frontends {
            f.proc.kill();
        }
        for b in &mut self.brokers {
            b.proc.kill();
        }
        self.state.proc.kill();
        if std::thread::panicking() {
            self.dump_logs();
            let dir = self.keep_logs();
            eprintln!("===== logs kept in {}", dir.display());
        } else if std::env::var_os("TESTKIT_KEEP_LOGS").is_some() {
            let dir = self.keep_logs();
            eprintln!("logs kept in {}", dir.display());
        }
    }
}
