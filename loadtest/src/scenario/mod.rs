//! The scenarios, one clap subcommand each. Every scenario is bounded in
//! count and time and stops by itself; each returns a [`Report`].
//!
//! Adding one: write `scenario/<name>.rs` with an `Args`
//! struct that flattens [`Common`], a `worker(args, io)` that runs one
//! worker's share of the sockets against [`crate::workers::WorkerIo`], and a
//! `run(args, argv)` that starts the workers with [`start_workers`], drives
//! steps, and merges what they send; then add a variant to [`Command`].

pub mod chat;
pub mod connect;
pub mod fanout;
pub mod reshard;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::report::Report;
use crate::workers::{WorkerIo, WorkerSet};

/// Load tests for any SocketCluster-protocol endpoint (ours or SCC).
#[derive(Parser, Debug, Clone)]
#[command(name = "loadtest", version, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Open N idle connections at a ramp rate, hold them; handshake latency and server RSS per connection.
    Connect(connect::Args),
    /// P publishers, S subscribers over C channels at one or more rates; loss, order and latency.
    Fanout(fanout::Args),
    /// A fan-out while sockets connect, subscribe, unsubscribe and leave at a rate.
    Churn(fanout::Args),
    /// A fan-out over a cluster it starts, while brokers are added, stopped, killed and paused on a schedule.
    Reshard(reshard::Args),
    /// Chat users on the frontends' chat (login, join rooms, post, read): loss, order, post→ack and post→delivery latency, server CPU and RSS.
    Chat(chat::Args),
    /// Print the SCC-vs-ours table of a `scripts/bench-vs-scc` output directory.
    Table { dir: PathBuf },
    /// Wait until the machine is quiet: busy CPU (all processes) under --max-busy cores for 3 s in a row.
    WaitQuiet {
        /// Busy cores allowed (servers idle between runs use ~0).
        #[arg(long, default_value_t = 0.25)]
        max_busy: f64,
        /// Give up waiting after this many seconds (and go on).
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
    },
    /// Draw a report's plot again (report.json -> SVG).
    Plot { report: PathBuf, svg: PathBuf },
    /// Print the value at a JSON pointer of a report (for scripts).
    JsonGet { file: PathBuf, pointer: String },
}

/// Options every scenario has.
#[derive(Args, Debug, Clone, Serialize)]
pub struct Common {
    /// Endpoint(s); sockets are spread over them round robin.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8000/socketcluster/")]
    pub urls: Vec<String>,
    /// Generator processes (each holds at most ~19,000 sockets: the open-files limit).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Spread client sockets over the source addresses 127.0.0.1 ..= 127.0.0.N (past the ephemeral-port limit).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,
    /// Server process id(s) to measure (RSS, CPU); repeatable, in the order of --url when one per URL.
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Name of the system under test, for the report (e.g. ours, scc).
    #[arg(long, default_value = "ours")]
    pub label: String,
    /// Output directory for report.json and plot.svg (default: target/loadtest/<scenario>-<label>-<params>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Tokio worker threads per process (0: all cores, 1 in worker processes).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Executable to start worker processes from (default: this one).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub exe: Option<PathBuf>,
    /// Internal: run as worker number I of --procs.
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub worker: Option<usize>,
}

impl Command {
    #[must_use]
    pub fn common(&self) -> Option<&Common> {
        match self {
            Command::Connect(a) => Some(&a.common),
            Command::Fanout(a) | Command::Churn(a) => Some(&a.common),
            Command::Reshard(a) => Some(&a.fanout.common),
            Command::Chat(a) => Some(&a.common),
            Command::Table { .. } | Command::JsonGet { .. } | Command::WaitQuiet { .. } | Command::Plot { .. } => None,
        }
    }
}

/// Starts the workers of a run: in-process for one, child processes for more.
///
/// # Errors
/// When a worker process cannot be started.
pub fn start_workers<F, Fut>(common: &Common, argv: &[String], extra: &[String], local: F) -> Result<WorkerSet>
where
    F: FnOnce(WorkerIo) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if common.procs <= 1 {
        Ok(WorkerSet::in_process(local))
    } else {
        // argv[0] is the program; the children get the subcommand onwards.
        WorkerSet::spawn(common.procs, argv.get(1..).unwrap_or_default(), extra, common.exe.as_deref())
    }
}

/// Runs the command line `argv` (program name first): a worker's share when
/// `--worker` is given (its results go up stdout), otherwise the whole run,
/// whose report is written and returned.
///
/// # Errors
/// When the run cannot be carried out.
pub async fn run(argv: Vec<String>) -> Result<Option<Report>> {
    let cli = Cli::try_parse_from(&argv)?;
    match &cli.command {
        Command::Table { dir } => {
            print!("{}", crate::table::table(dir)?);
            return Ok(None);
        }
        Command::JsonGet { file, pointer } => {
            println!("{}", crate::table::json_get(file, pointer)?);
            return Ok(None);
        }
        Command::Plot { report, svg } => {
            let text = std::fs::read_to_string(report)?;
            let r: Report = serde_json::from_str(&text)?;
            let title = format!("{} ({}), {} cores", r.scenario, r.label, r.machine.cores);
            crate::plot::draw(svg, &title, &r.timeline, &r.markers)?;
            return Ok(None);
        }
        Command::WaitQuiet { max_busy, timeout } => {
            wait_quiet(*max_busy, std::time::Duration::from_secs_f64(*timeout)).await;
            return Ok(None);
        }
        _ => {}
    }
    let common = cli.command.common().cloned().unwrap_or_else(|| unreachable!("scenarios have common options"));
    if let Some(index) = common.worker {
        let (io, writer) = WorkerIo::stdio(index, common.procs.max(1));
        match cli.command {
            Command::Connect(a) => connect::worker(a, io).await,
            Command::Fanout(a) | Command::Churn(a) => fanout::worker(a, io).await,
            Command::Reshard(a) => fanout::worker(a.fanout, io).await,
            Command::Chat(a) => chat::worker(a, io, None).await,
            Command::Table { .. } | Command::JsonGet { .. } | Command::WaitQuiet { .. } | Command::Plot { .. } => {}
        }
        // The parent waits up to 30 s for a worker's last report; give its writer as long.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(25), writer).await;
        return Ok(None);
    }
    let report = match cli.command {
        Command::Connect(a) => connect::run(a, &argv).await?,
        Command::Fanout(a) => fanout::run(a, &argv, "fanout").await?,
        Command::Churn(mut a) => {
            if a.churn_rate <= 0.0 {
                a.churn_rate = 50.0;
            }
            fanout::run(a, &argv, "churn").await?
        }
        Command::Reshard(a) => reshard::run(a, &argv).await?,
        Command::Chat(a) => chat::run(a, &argv).await?,
        Command::Table { .. } | Command::JsonGet { .. } | Command::WaitQuiet { .. } | Command::Plot { .. } => {
            return Ok(None)
        }
    };
    Ok(Some(report))
}

/// Waits until the whole machine stays under `max_busy` busy cores for 3 s
/// in a row (other people's builds skew a 2-core benchmark), or `timeout`.
pub async fn wait_quiet(max_busy: f64, timeout: std::time::Duration) {
    let start = std::time::Instant::now();
    let mut quiet_for = 0;
    let mut said = false;
    while start.elapsed() < timeout {
        let a = crate::sys::machine_busy();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let busy = crate::sys::machine_busy().zip(a).map_or(0.0, |(b, a)| b.saturating_sub(a).as_secs_f64());
        if busy <= max_busy {
            quiet_for += 1;
            if quiet_for >= 3 {
                return;
            }
        } else {
            quiet_for = 0;
            if !said {
                eprintln!("waiting for a quiet machine (busy {busy:.2} cores > {max_busy})...");
                said = true;
            }
        }
    }
    eprintln!("machine still busy after {timeout:?}: measuring anyway (see other_cpu_cores in the reports)");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
