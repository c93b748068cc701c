//! Generator processes. One process holds at most 20,000 open files (a hard
//! limit here), so a scenario runs its sockets in K workers: with `--procs 1`
//! the worker is a task in this process, otherwise the parent starts K
//! copies of its own executable (same arguments plus `--worker i`), each with
//! one Tokio runtime, and talks to them in JSON lines: commands down their
//! stdin, ticks and results up their stdout.
//!
//! The worker side is the same code either way ([`WorkerIo`]). A worker
//! exits when its stdin closes (the parent died), so no generator outlives
//! its run; the parent kills its children when dropped.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::progress::Progress;

/// Worker → parent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "t", content = "c", rename_all = "snake_case")]
pub enum Up {
    /// Set up (connected, subscribed); scenario-specific details.
    Ready(Value),
    /// Once a second: cumulative counters and the last second's latencies.
    Tick(Tick),
    /// A step is over; its result.
    Done(Value),
    /// The worker has closed everything; its last figures.
    Final(Value),
    /// The worker cannot go on.
    Fatal(String),
}

/// Parent → worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "t", content = "c", rename_all = "snake_case")]
pub enum Down {
    Go(Value),
    Finish,
}

/// One worker's counters, cumulative since it started, and the latencies
/// recorded since its previous tick.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tick {
    pub conns: u64,
    pub published: u64,
    pub delivered: u64,
    pub errors: u64,
    /// Encoded histogram (see [`crate::stats::encode`]) of the last second.
    pub hist: String,
}

/// The worker's ends of the pipe.
pub struct WorkerIo {
    pub index: usize,
    pub count: usize,
    pub up: mpsc::UnboundedSender<Up>,
    pub down: mpsc::UnboundedReceiver<Down>,
}

impl WorkerIo {
    pub fn send(&self, up: Up) {
        let _ = self.up.send(up);
    }

    /// The next command; `Finish` when the parent is gone.
    pub async fn next(&mut self) -> Down {
        self.down.recv().await.unwrap_or(Down::Finish)
    }

    /// Pipes over this process's stdin and stdout (in a worker process).
    #[must_use]
    pub fn stdio(index: usize, count: usize) -> (WorkerIo, JoinHandle<()>) {
        let (up_tx, mut up_rx) = mpsc::unbounded_channel::<Up>();
        let (down_tx, down_rx) = mpsc::unbounded_channel::<Down>();
        tokio::spawn(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(d) = serde_json::from_str::<Down>(&line) {
                    if down_tx.send(d).is_err() {
                        break;
                    }
                }
            }
            // The parent is gone or done: finish.
            let _ = down_tx.send(Down::Finish);
        });
        let writer = tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            while let Some(up) = up_rx.recv().await {
                let Ok(mut line) = serde_json::to_string(&up) else { continue };
                line.push('\n');
                if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                    break;
                }
            }
        });
        (WorkerIo { index, count, up: up_tx, down: down_rx }, writer)
    }
}

/// The parent's ends: K workers, in-process or child processes.
pub struct WorkerSet {
    downs: Vec<mpsc::UnboundedSender<Down>>,
    up: mpsc::UnboundedReceiver<(usize, Up)>,
    children: Vec<Child>,
    tasks: Vec<JoinHandle<()>>,
}

/// Where a worker process's executable is: `--exe`, else this executable.
fn exe(explicit: Option<&std::path::Path>) -> Result<std::path::PathBuf> {
    match explicit {
        Some(p) => Ok(p.to_path_buf()),
        None => std::env::current_exe().context("cannot find the loadtest executable (pass --exe)"),
    }
}

impl WorkerSet {
    /// One worker, as a task of this process running `run`.
    pub fn in_process<F, Fut>(run: F) -> WorkerSet
    where
        F: FnOnce(WorkerIo) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (up_tx, mut up_rx) = mpsc::unbounded_channel::<Up>();
        let (down_tx, down_rx) = mpsc::unbounded_channel::<Down>();
        let (all_tx, all_rx) = mpsc::unbounded_channel();
        let fwd = tokio::spawn(async move {
            while let Some(u) = up_rx.recv().await {
                if all_tx.send((0, u)).is_err() {
                    break;
                }
            }
        });
        let task = tokio::spawn(run(WorkerIo { index: 0, count: 1, up: up_tx, down: down_rx }));
        WorkerSet { downs: vec![down_tx], up: all_rx, children: Vec::new(), tasks: vec![task, fwd] }
    }

    /// K worker processes: this executable with `argv` (the subcommand and
    /// its arguments) plus `--worker i` and `extra`.
    ///
    /// # Errors
    /// When a child cannot be started.
    pub fn spawn(k: usize, argv: &[String], extra: &[String], exe_path: Option<&std::path::Path>) -> Result<WorkerSet> {
        let exe = exe(exe_path)?;
        let (all_tx, all_rx) = mpsc::unbounded_channel();
        let mut set = WorkerSet { downs: Vec::new(), up: all_rx, children: Vec::new(), tasks: Vec::new() };
        for i in 0..k {
            let mut child = Command::new(&exe)
                .args(argv)
                .args(extra)
                .arg("--worker")
                .arg(i.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting worker {i}: {}", exe.display()))?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow!("worker {i}: no stdout"))?;
            let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("worker {i}: no stdin"))?;
            let tx = all_tx.clone();
            set.tasks.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Up>(&line) {
                        Ok(u) => {
                            if tx.send((i, u)).is_err() {
                                break;
                            }
                        }
                        Err(_) => eprintln!("worker {i}: {line}"),
                    }
                }
                let _ = tx.send((i, Up::Fatal(format!("worker {i} exited"))));
            }));
            let (down_tx, mut down_rx) = mpsc::unbounded_channel::<Down>();
            set.tasks.push(tokio::spawn(async move {
                while let Some(d) = down_rx.recv().await {
                    let Ok(mut line) = serde_json::to_string(&d) else { continue };
                    line.push('\n');
                    if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                        break;
                    }
                }
            }));
            set.downs.push(down_tx);
            set.children.push(child);
        }
        Ok(set)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.downs.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.downs.is_empty()
    }

    pub fn broadcast(&self, d: &Down) {
        for tx in &self.downs {
            let _ = tx.send(d.clone());
        }
    }

    /// Waits until every worker has sent a message that `pick` accepts,
    /// feeding ticks to `progress` and printing its line each second.
    ///
    /// # Errors
    /// On a worker's `Fatal`, or when not all have answered within `timeout`.
    pub async fn gather(
        &mut self,
        what: &str,
        timeout: Duration,
        progress: &mut Progress,
        pick: impl Fn(&Up) -> Option<Value>,
    ) -> Result<Vec<Value>> {
        let n = self.len();
        let mut got: Vec<Option<Value>> = vec![None; n];
        let deadline = tokio::time::Instant::now() + timeout;
        let mut second =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while got.iter().any(Option::is_none) {
            tokio::select! {
                m = self.up.recv() => {
                    let Some((i, up)) = m else { bail!("every worker is gone while waiting for {what}") };
                    match &up {
                        Up::Tick(t) => progress.absorb(i, t),
                        Up::Fatal(e) if got.get(i).is_some_and(Option::is_none) => bail!("worker {i} while waiting for {what}: {e}"),
                        other => if let Some(v) = pick(other) {
                            if let Some(slot) = got.get_mut(i) { *slot = Some(v); }
                        },
                    }
                }
                _ = second.tick() => progress.emit(),
                () = tokio::time::sleep_until(deadline) => {
                    let missing: Vec<usize> = (0..n).filter(|&i| got[i].is_none()).collect();
                    bail!("workers {missing:?} did not report {what} within {timeout:?}");
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Keeps feeding ticks to `progress` for `d`.
    pub async fn pump(&mut self, d: Duration, progress: &mut Progress) {
        let end = tokio::time::Instant::now() + d;
        let mut second =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                m = self.up.recv() => match m {
                    Some((i, Up::Tick(t))) => progress.absorb(i, &t),
                    Some(_) => {}
                    None => return,
                },
                _ = second.tick() => progress.emit(),
                () = tokio::time::sleep_until(end) => return,
            }
        }
    }

    /// Waits (bounded) for the child processes to exit, then kills what is left.
    pub async fn close(mut self) {
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), c.wait()).await.is_err() {
                let _ = c.kill().await;
            }
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}
