//! `reshard`: a fan-out over a cluster this command starts itself (the
//! `testkit` harness: real `state-server`, `broker` and `frontend`
//! processes on 127.0.0.1), while brokers are added, stopped with SIGTERM
//! (a planned leave), SIGKILLed, and paused with SIGSTOP / resumed with
//! SIGCONT on a schedule. Every publish time is kept, so each lost message
//! is dated and charged to the event before it; per event the report gives
//! the messages lost and the loss window (first to last lost publish).
//!
//! One generator process (the loss dating needs every publish time).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::json;
use testkit::{Cluster, Timers};

use super::fanout::{self, Session};
use crate::report::{default_dir, Report};
use crate::sys;

#[derive(clap::Args, Debug, Clone, Serialize)]
#[group(id = "ReshardArgs")]
pub struct Args {
    #[command(flatten)]
    pub fanout: fanout::Args,
    /// Brokers at the start.
    #[arg(long, default_value_t = 3)]
    pub brokers: usize,
    /// Frontends (subscribers and publishers are spread over them).
    #[arg(long, default_value_t = 2)]
    pub frontends: usize,
    /// Events, comma separated: `<seconds>:<action>[:<broker index>]`, action one of
    /// add, term (SIGTERM: planned leave), kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT).
    #[arg(long, default_value = "4:add,9:term:0,14:kill:1,19:pause:2,27:resume:2")]
    pub schedule: String,
    /// The nodes' own default timers instead of the harness's short ones.
    #[arg(long)]
    pub production_timers: bool,
    /// Directory with the state-server, broker and frontend binaries (default: beside this executable if they are there).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// One scheduled change to the cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub at_s: f64,
    pub action: Action,
    pub broker: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Add,
    Term,
    Kill,
    Pause,
    Resume,
}

/// Parses `4:add,9:term:0,…`.
///
/// # Errors
/// On an unknown action, a missing broker index, or times out of order.
pub fn parse_schedule(s: &str) -> Result<Vec<Event>> {
    let mut out: Vec<Event> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let f: Vec<&str> = part.split(':').collect();
        let at_s: f64 =
            f.first().and_then(|t| t.trim_end_matches('s').parse().ok()).ok_or_else(|| anyhow!("{part}: bad time"))?;
        let action = match f.get(1).copied() {
            Some("add") => Action::Add,
            Some("term") => Action::Term,
            Some("kill") => Action::Kill,
            Some("pause" | "stop") => Action::Pause,
            Some("resume" | "cont") => Action::Resume,
            other => bail!("{part}: unknown action {other:?} (add, term, kill, pause, resume)"),
        };
        let broker = match f.get(2) {
            Some(b) => Some(b.parse().with_context(|| format!("{part}: bad broker index"))?),
            None if action == Action::Add => None,
            None => bail!("{part}: {action:?} needs a broker index"),
        };
        if out.last().is_some_and(|e| e.at_s > at_s) {
            bail!("{part}: events must be in time order");
        }
        out.push(Event { at_s, action, broker });
    }
    Ok(out)
}

/// The nodes' own defaults (their `--help`).
#[must_use]
pub fn production_timers() -> Timers {
    let ms = Duration::from_millis;
    Timers {
        settle_up: ms(500),
        settle_down: ms(200),
        heartbeat: ms(1000),
        grace: ms(3000),
        prepare_timeout: ms(3000),
        rebuild_wait: ms(2000),
        drain: ms(1000),
        fabric_heartbeat: ms(500),
        fabric_timeout: ms(2000),
        control_heartbeat: ms(1000),
        broker_heartbeat: ms(1000),
        link_timeout: ms(3000),
        leave_drain: ms(1000),
    }
}

/// What happened when an event was carried out.
#[derive(Clone, Debug, Serialize)]
struct Done {
    event: Event,
    /// Seconds after the step started when it was carried out.
    at_s: f64,
    /// Monotonic ms when it was carried out.
    #[serde(skip)]
    mono_ms: u64,
    broker_id: Option<String>,
    /// How long the operation took (a SIGTERM waits for the exit).
    took_ms: u64,
    note: String,
}

async fn apply(cluster: &mut Cluster, e: &Event) -> (Option<String>, String) {
    match e.action {
        Action::Add => {
            let i = cluster.add_broker().await;
            (Some(cluster.broker_id(i).to_owned()), format!("added as index {i}"))
        }
        Action::Term | Action::Kill | Action::Pause | Action::Resume => {
            let i = e.broker.unwrap_or(0);
            if i >= cluster.broker_count() {
                return (None, format!("no broker {i}"));
            }
            let id = cluster.broker_id(i).to_owned();
            if !cluster.broker_running(i) {
                return (Some(id), "not running".into());
            }
            let note = match e.action {
                Action::Term => format!("exited {:?}", cluster.stop_broker(i).await),
                Action::Kill => {
                    cluster.kill_broker(i);
                    "SIGKILL".into()
                }
                Action::Pause => {
                    cluster.pause_broker(i);
                    "SIGSTOP".into()
                }
                _ => {
                    cluster.resume_broker(i);
                    "SIGCONT".into()
                }
            };
            (Some(id), note)
        }
    }
}

/// Runs the scenario and writes the report.
///
/// # Errors
/// When the binaries are missing, the cluster does not start, or the run fails.
pub async fn run(a: Args, argv: &[String]) -> Result<Report> {
    let machine = sys::Machine::describe();
    let started_unix = sys::unix_secs();
    let events = parse_schedule(&a.schedule)?;
    let bin_dir = a.bin_dir.clone().or_else(|| {
        let here = std::env::current_exe().ok()?.parent()?.to_path_buf();
        here.join("broker").is_file().then_some(here)
    });
    if let Some(d) = &bin_dir {
        std::env::set_var(testkit::process::BIN_DIR_ENV, d);
    }
    for b in ["state-server", "broker", "frontend"] {
        testkit::process::bin_path(b).map_err(|e| anyhow!(e))?;
    }
    let mut builder = Cluster::builder().brokers(a.brokers.max(1)).frontends(a.frontends.max(1));
    if a.production_timers {
        builder = builder.timers(production_timers());
    }
    // The harness panics (with every node's log) when the cluster does not come up.
    let mut cluster = tokio::spawn(builder.start()).await.map_err(|e| anyhow!("cluster did not start: {e}"))?;
    if !a.fanout.common.quiet {
        eprintln!(
            "reshard: cluster up in {} ({} brokers, {} frontends)",
            cluster.dir().display(),
            a.brokers,
            a.frontends
        );
    }
    let mut fa = a.fanout.clone();
    fa.common.urls = (0..cluster.frontend_count()).map(|i| cluster.frontend_url(i)).collect();
    fa.common.procs = 1;
    let rate = fa.rate.first().copied().unwrap_or(1000).max(1);
    let last = events.last().map_or(0.0, |e| e.at_s);
    let duration = fa.duration.max(last + 6.0);
    let mut session = Session::start(fa, argv).await?;

    let base_us = sys::now_us() + 300_000;
    let t_marks = session.progress.elapsed() + 0.3;
    let sched_events = events.clone();
    let scheduler = tokio::spawn(async move {
        let mut done = Vec::new();
        for e in &sched_events {
            tokio::time::sleep_until(
                tokio::time::Instant::now()
                    + Duration::from_micros((base_us + (e.at_s * 1e6) as u64).saturating_sub(sys::now_us())),
            )
            .await;
            let t = sys::now_us();
            let (broker_id, note) = apply(&mut cluster, e).await;
            done.push(Done {
                event: e.clone(),
                at_s: t.saturating_sub(base_us) as f64 / 1e6,
                mono_ms: t / 1000,
                broker_id,
                took_ms: (sys::now_us() - t) / 1000,
                note,
            });
        }
        (cluster, done)
    });
    let step = session.step(rate, Duration::from_secs_f64(duration), true).await;
    let (cluster, done) = scheduler.await.map_err(|e| anyhow!("scheduler: {e}"))?;
    let (_, r) = step?;
    for d in &done {
        let what = match &d.broker_id {
            Some(id) => format!("{:?} {id}", d.event.action),
            None => format!("{:?}", d.event.action),
        };
        session.progress.markers.push(crate::progress::Marker { t: t_marks + d.at_s, label: what.to_lowercase() });
    }

    // Charge each lost message to the last event carried out before it was
    // published (with 250 ms of slack for messages already in flight).
    const SLACK_MS: u64 = 250;
    let mut per_event: Vec<(u64, Option<u64>, Option<u64>)> = vec![(0, None, None); done.len()];
    let mut before_any = 0u64;
    for &(t, n) in &r.lost_ms {
        match done.iter().rposition(|d| d.mono_ms <= t + SLACK_MS) {
            Some(i) => {
                let e = &mut per_event[i];
                e.0 += n;
                e.1 = Some(e.1.map_or(t, |x: u64| x.min(t)));
                e.2 = Some(e.2.map_or(t, |x: u64| x.max(t)));
            }
            None => before_any += n,
        }
    }
    let event_rows: Vec<serde_json::Value> = done
        .iter()
        .zip(&per_event)
        .map(|(d, &(lost, first, last))| {
            json!({
                "at_s": d.at_s,
                "action": d.event.action,
                "broker": d.event.broker,
                "broker_id": d.broker_id,
                "took_ms": d.took_ms,
                "note": d.note,
                "lost": lost,
                "first_lost_after_ms": first.map(|f| f as i64 - d.mono_ms as i64),
                "last_lost_after_ms": last.map(|l| l as i64 - d.mono_ms as i64),
                "loss_window_ms": first.zip(last).map(|(f, l)| l - f + 1),
            })
        })
        .collect();
    if !a.fanout.common.quiet {
        for row in &event_rows {
            eprintln!(
                "  {:>6.2}s {:<7} {:<6} lost {:>7}  window {} ms",
                row["at_s"].as_f64().unwrap_or_default(),
                row["action"].as_str().unwrap_or_default(),
                row["broker_id"].as_str().unwrap_or("-"),
                row["lost"],
                row["loss_window_ms"]
            );
        }
    }
    let (gen_cpu, mut progress) = session.finish().await?;
    drop(cluster);
    let results = json!({
        "step": r,
        "events": event_rows,
        "lost_before_any_event": before_any,
        "lost_total": r.lost,
        "generator_cpu_s_total": gen_cpu,
    });
    let mut report = Report {
        scenario: "reshard".into(),
        label: a.fanout.common.label.clone(),
        started_unix,
        argv: argv.to_vec(),
        params: serde_json::to_value(&a)?,
        machine,
        results,
        timeline: std::mem::take(&mut progress.timeline),
        markers: std::mem::take(&mut progress.markers),
        dir: None,
    };
    let name = format!("b{}-f{}-r{rate}", a.brokers, a.frontends);
    let dir = a.fanout.common.out.clone().unwrap_or_else(|| default_dir("reshard", &a.fanout.common.label, &name));
    report.write(&dir)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_reads_as_timed_actions_on_brokers() {
        let s = parse_schedule("1:add, 2.5:term:0,3s:kill:1,4:pause:2,5:resume:2").expect("valid");
        assert_eq!(s.len(), 5);
        assert_eq!(s[1], Event { at_s: 2.5, action: Action::Term, broker: Some(0) });
        assert!(parse_schedule("1:kill").is_err());
        assert!(parse_schedule("2:add,1:add").is_err());
        assert!(parse_schedule("1:explode:0").is_err());
    }
}
