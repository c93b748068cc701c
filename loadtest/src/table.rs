//! `loadtest table DIR`: the side-by-side table of a `scripts/bench-vs-scc`
//! run, in Markdown, from `DIR/<system>/<case>/report.json` (systems `scc`
//! and `ours`). A missing report shows as "—", so a partial run still prints.
//!
//! `loadtest json-get FILE /json/pointer` prints one value of a report, for
//! scripts.

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

fn load(dir: &Path, system: &str, case: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(system).join(case).join("report.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn num(v: Option<&Value>, ptr: &str) -> Option<f64> {
    v?.pointer(ptr)?.as_f64()
}

/// `12,345`
#[must_use]
pub fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn cell(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "—".to_owned(), f)
}

fn ratio(ours: Option<f64>, scc: Option<f64>) -> String {
    match (ours, scc) {
        (Some(o), Some(s)) if s > 0.0 => format!("{:.1}×", o / s),
        _ => "—".to_owned(),
    }
}

/// The held step with the highest delivered rate, as a JSON object.
fn max_held(r: Option<&Value>) -> Option<&Value> {
    r?.pointer("/results/steps")?.as_array()?.iter().filter(|s| s["held"].as_bool() == Some(true)).max_by(|a, b| {
        a["delivered_per_s"].as_f64().unwrap_or(0.0).total_cmp(&b["delivered_per_s"].as_f64().unwrap_or(0.0))
    })
}

/// The first step not held (where the system fell over), for context.
fn first_failed(r: Option<&Value>) -> Option<&Value> {
    r?.pointer("/results/steps")?.as_array()?.iter().find(|s| s["held"].as_bool() == Some(false))
}

/// Builds the Markdown table.
///
/// # Errors
/// When `dir` does not exist.
pub fn table(dir: &Path) -> Result<String> {
    if !dir.is_dir() {
        anyhow::bail!("{}: no such directory", dir.display());
    }
    let get = |sys: &str, case: &str| load(dir, sys, case);
    let mut t = String::new();
    let any = ["ours", "scc"].iter().find_map(|s| ["fanout-100x10", "connect-idle"].iter().find_map(|c| get(s, c)));
    if let Some(m) = any.as_ref().and_then(|r| r.get("machine")) {
        let _ = writeln!(
            t,
            "Machine: {} cores ({}), {:.0} GiB; load average at the start of a run: {}. Generator on the same machine.\n",
            m["cores"],
            m["cpu_model"].as_str().unwrap_or("?"),
            m["mem_total_bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 30),
            m["loadavg_at_start"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(t, "| measure | SCC | ours | ours ÷ SCC |");
    let _ = writeln!(t, "|---|---:|---:|---:|");
    let mut row = |name: &str, s: String, o: String, r: String| {
        let _ = writeln!(t, "| {name} | {s} | {o} | {r} |");
    };
    let rate = |x: f64| thousands(x);
    let ms = |x: f64| format!("{x:.2} ms");
    for (case, name) in [
        ("fanout-100x10", "fan-out 100 channels × 10 subscribers, 10 publishers, 100 B"),
        ("fanout-1x1000", "fan-out 1 channel × 1,000 subscribers, 1 publisher, 100 B"),
    ] {
        let (s, o) = (get("scc", case), get("ours", case));
        let (sm, om) = (max_held(s.as_ref()), max_held(o.as_ref()));
        let (sd, od) = (num(sm, "/delivered_per_s"), num(om, "/delivered_per_s"));
        row(
            &format!("{name}: highest delivered msg/s held (p99 < 50 ms, no loss)"),
            cell(sd, rate),
            cell(od, rate),
            ratio(od, sd),
        );
        row(
            "  p99 at that rate",
            cell(num(sm, "/latency/p99_ms"), ms),
            cell(num(om, "/latency/p99_ms"), ms),
            String::new(),
        );
        let fail = |r: Option<&Value>| {
            first_failed(r).map_or_else(
                || "none failed".to_owned(),
                |f| {
                    format!(
                        "{} pub/s: {}",
                        thousands(f["target_rate"].as_f64().unwrap_or(0.0)),
                        f["verdict"].as_str().unwrap_or("")
                    )
                },
            )
        };
        if s.is_some() || o.is_some() {
            row("  next step up", fail(s.as_ref()), fail(o.as_ref()), String::new());
        }
        let (sc, oc) = (num(sm, "/server_cpu_us_per_msg"), num(om, "/server_cpu_us_per_msg"));
        row(
            "  server CPU per delivered msg (all nodes)",
            cell(sc, |x| format!("{x:.2} µs")),
            cell(oc, |x| format!("{x:.2} µs")),
            ratio(oc, sc),
        );
        row(
            "  other work on the machine during that step (cores)",
            cell(num(sm, "/other_cpu_cores"), |x| format!("{x:.2}")),
            cell(num(om, "/other_cpu_cores"), |x| format!("{x:.2}")),
            String::new(),
        );
        row(
            "  generator CPU per delivered msg",
            cell(num(sm, "/generator_cpu_us_per_msg"), |x| format!("{x:.2} µs")),
            cell(num(om, "/generator_cpu_us_per_msg"), |x| format!("{x:.2} µs")),
            String::new(),
        );
    }
    {
        let case = "fanout-100x10-half";
        let (s, o) = (get("scc", case), get("ours", case));
        let step = |r: Option<&Value>| r.and_then(|r| r.pointer("/results/steps/0").cloned());
        let (ss, os) = (step(s.as_ref()), step(o.as_ref()));
        let label = |st: Option<&Value>| {
            num(st, "/delivered_per_s").map(|d| format!("{} msg/s: ", thousands(d))).unwrap_or_default()
        };
        row(
            "100 × 10 at half of each one's highest rate: p50 / p99 / p99.9",
            cell(num(ss.as_ref(), "/latency/p99_ms"), |_| {
                format!(
                    "{}{:.2} / {:.2} / {:.2} ms",
                    label(ss.as_ref()),
                    num(ss.as_ref(), "/latency/p50_ms").unwrap_or(0.0),
                    num(ss.as_ref(), "/latency/p99_ms").unwrap_or(0.0),
                    num(ss.as_ref(), "/latency/p999_ms").unwrap_or(0.0)
                )
            }),
            cell(num(os.as_ref(), "/latency/p99_ms"), |_| {
                format!(
                    "{}{:.2} / {:.2} / {:.2} ms",
                    label(os.as_ref()),
                    num(os.as_ref(), "/latency/p50_ms").unwrap_or(0.0),
                    num(os.as_ref(), "/latency/p99_ms").unwrap_or(0.0),
                    num(os.as_ref(), "/latency/p999_ms").unwrap_or(0.0)
                )
            }),
            String::new(),
        );
    }
    {
        let (s, o) = (get("scc", "connect-idle"), get("ours", "connect-idle"));
        let per = |r: Option<&Value>| num(r, "/results/servers/0/bytes_per_conn_after_hold");
        let (sp, op) = (per(s.as_ref()), per(o.as_ref()));
        row(
            "idle connections: frontend RSS per connection (one frontend, held 10 s)",
            cell(sp, |x| format!("{:.1} KB", x / 1000.0)),
            cell(op, |x| format!("{:.1} KB", x / 1000.0)),
            ratio(op, sp),
        );
        row(
            "  handshake p50 / p99 (ramp 1,000/s)",
            cell(num(s.as_ref(), "/results/handshake/p99_ms"), |_| {
                format!(
                    "{:.2} / {:.2} ms",
                    num(s.as_ref(), "/results/handshake/p50_ms").unwrap_or(0.0),
                    num(s.as_ref(), "/results/handshake/p99_ms").unwrap_or(0.0)
                )
            }),
            cell(num(o.as_ref(), "/results/handshake/p99_ms"), |_| {
                format!(
                    "{:.2} / {:.2} ms",
                    num(o.as_ref(), "/results/handshake/p50_ms").unwrap_or(0.0),
                    num(o.as_ref(), "/results/handshake/p99_ms").unwrap_or(0.0)
                )
            }),
            String::new(),
        );
    }
    for (case, name) in [
        ("connect-one-frontend", "idle connections held by one frontend"),
        ("connect-cluster", "idle connections held by the cluster"),
    ] {
        let o = get("ours", case);
        if let Some(o) = o.as_ref() {
            let frontends = o.pointer("/results/per_url").and_then(Value::as_array).map_or(0, Vec::len);
            let procs = o.pointer("/results/generator/procs").and_then(Value::as_u64).unwrap_or(1);
            let rss = num(Some(o), "/results/rss_per_conn_bytes");
            row(
                &format!("{name} ({frontends} frontend(s), generator in {procs} processes)"),
                "—".into(),
                format!(
                    "{} of {} (RSS {}/conn, handshake p99 {:.1} ms)",
                    thousands(num(Some(o), "/results/open_after_hold").unwrap_or(0.0)),
                    thousands(num(Some(o), "/results/requested").unwrap_or(0.0)),
                    rss.map_or("n/a".into(), |b| format!("{:.1} KB", b / 1000.0)),
                    num(Some(o), "/results/handshake/p99_ms").unwrap_or(0.0)
                ),
                String::new(),
            );
        }
    }
    if let Some(r) = get("ours", "reshard") {
        for e in r.pointer("/results/events").and_then(Value::as_array).into_iter().flatten() {
            let w = e["loss_window_ms"].as_u64().map_or("no loss window".to_owned(), |w| format!("window {w} ms"));
            row(
                &format!(
                    "reshard under load: {} {}",
                    e["action"].as_str().unwrap_or("?"),
                    e["broker_id"].as_str().unwrap_or("")
                ),
                "—".into(),
                format!("{} lost, {w}", thousands(e["lost"].as_f64().unwrap_or(0.0))),
                String::new(),
            );
        }
    }
    Ok(t)
}

/// Prints the value at `pointer` in the JSON file (strings bare).
///
/// # Errors
/// When the file cannot be read or the pointer has no value.
pub fn json_get(file: &Path, pointer: &str) -> Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let v: Value = serde_json::from_str(&text)?;
    let x = v.pointer(pointer).with_context(|| format!("{}: nothing at {pointer}", file.display()))?;
    Ok(match x {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}
