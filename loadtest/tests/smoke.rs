//! A few seconds of every scenario, small numbers, against a cluster the
//! test starts itself (`testkit`: real state-server, broker and frontend
//! processes from the workspace build; `cargo build --workspace --bins`
//! first). Each test checks the report: the counts add up, and nothing is
//! lost where nothing may be lost (steady fan-out, churn, planned reshard).

use std::path::Path;

use serde_json::Value;
use testkit::Cluster;

fn argv(words: &[&str], out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::iter::once("loadtest").chain(words.iter().copied()).map(str::to_owned).collect();
    v.extend(["--quiet".to_owned(), "--out".to_owned(), out.display().to_string()]);
    v
}

async fn run(words: &[&str], out: &Path) -> loadtest::Report {
    loadtest::run(argv(words, out)).await.expect("the scenario runs").expect("a report")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Every step: delivered + lost = expected = published × subscribers per
/// channel; nothing lost, duplicated or out of order; every step held.
fn assert_clean_steps(results: &Value, subs_per_channel: u64) {
    let steps = results["steps"].as_array().expect("steps");
    assert!(!steps.is_empty());
    for s in steps {
        let (published, expected, delivered, lost) =
            (u(&s["published"]), u(&s["expected"]), u(&s["delivered"]), u(&s["lost"]));
        assert!(published > 0, "nothing published: {s:#}");
        assert_eq!(expected, published * subs_per_channel, "{s:#}");
        assert_eq!(delivered + lost, expected, "{s:#}");
        assert_eq!((lost, u(&s["duplicated"]), u(&s["out_of_order"]), u(&s["unexpected"])), (0, 0, 0, 0), "{s:#}");
        assert_eq!(s["latency"]["count"].as_u64(), Some(delivered), "one latency per delivery: {s:#}");
        assert_eq!(s["held"], Value::Bool(true), "{s:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_holds_and_counts_every_connection() {
    let cluster = Cluster::builder().brokers(1).frontends(2).start().await;
    let out = tempfile::tempdir().expect("tempdir");
    let (a, b) = (cluster.frontend_url(0), cluster.frontend_url(1));
    let r = run(
        &["connect", "--url", &a, "--url", &b, "-n", "300", "--rate", "300", "--hold", "1.5", "--source-ips", "3"],
        out.path(),
    )
    .await;
    let res = &r.results;
    assert_eq!((u(&res["opened"]), u(&res["failed"])), (300, 0), "{res:#}");
    assert_eq!(u(&res["open_after_hold"]), 300, "{res:#}");
    assert_eq!(res["per_url"], serde_json::json!([150, 150]));
    assert_eq!(u(&res["handshake"]["count"]), 300);
    assert!(out.path().join("report.json").is_file() && out.path().join("plot.svg").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_two_frontends_delivers_every_message_once_in_order() {
    let cluster = Cluster::builder().brokers(2).frontends(2).start().await;
    let out = tempfile::tempdir().expect("tempdir");
    let (a, b) = (cluster.frontend_url(0), cluster.frontend_url(1));
    let r = run(
        &[
            "fanout",
            "--url",
            &a,
            "--url",
            &b,
            "--publishers",
            "3",
            "--subscribers",
            "30",
            "--channels",
            "10",
            "--rate",
            "300,600",
            "--duration",
            "2",
            "--p99-limit-ms",
            "1000",
            "--source-ips",
            "2",
        ],
        out.path(),
    )
    .await;
    assert_clean_steps(&r.results, 3);
    assert_eq!(r.results["steps"].as_array().map(Vec::len), Some(2));
    assert!(r.timeline.len() >= 4, "a point per second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_split_over_two_generator_processes_adds_up() {
    let cluster = Cluster::builder().brokers(2).frontends(2).start().await;
    let out = tempfile::tempdir().expect("tempdir");
    let (a, b) = (cluster.frontend_url(0), cluster.frontend_url(1));
    let exe = env!("CARGO_BIN_EXE_loadtest");
    let r = run(
        &[
            "fanout",
            "--url",
            &a,
            "--url",
            &b,
            "--publishers",
            "4",
            "--subscribers",
            "40",
            "--channels",
            "20",
            "--subs-per-channel",
            "4",
            "--rate",
            "400",
            "--duration",
            "2",
            "--p99-limit-ms",
            "1000",
            "--procs",
            "2",
            "--exe",
            exe,
        ],
        out.path(),
    )
    .await;
    assert_clean_steps(&r.results, 4);
    let ready = r.results["workers_ready"].as_array().expect("two workers");
    assert_eq!(ready.len(), 2);
    assert_eq!(ready.iter().map(|w| u(&w["subscribers"])).sum::<u64>(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_loses_nothing_for_steady_subscribers_and_leaks_nothing_after_unsubscribe() {
    let cluster = Cluster::builder().brokers(2).frontends(2).start().await;
    let out = tempfile::tempdir().expect("tempdir");
    let (a, b) = (cluster.frontend_url(0), cluster.frontend_url(1));
    let r = run(
        &[
            "churn",
            "--url",
            &a,
            "--url",
            &b,
            "--publishers",
            "2",
            "--subscribers",
            "20",
            "--channels",
            "10",
            "--rate",
            "400",
            "--duration",
            "3",
            "--churn-rate",
            "20",
            "--churn-life",
            "0.5",
            "--p99-limit-ms",
            "1000",
        ],
        out.path(),
    )
    .await;
    assert_clean_steps(&r.results, 2);
    let c = &r.results["steps"][0]["churn"];
    assert!(u(&c["started"]) >= 50, "{c:#}");
    assert_eq!(u(&c["completed"]), u(&c["started"]), "{c:#}");
    assert_eq!(u(&c["unsubscribed"]), u(&c["started"]), "{c:#}");
    assert!(u(&c["received"]) > 0, "{c:#}");
    assert_eq!((u(&c["gaps"]), u(&c["after_unsubscribe"])), (0, 0), "{c:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_loses_nothing_on_planned_changes_and_dates_the_loss_of_a_kill() {
    let out = tempfile::tempdir().expect("tempdir");
    let r = run(
        &[
            "reshard",
            "--brokers",
            "2",
            "--frontends",
            "2",
            "--schedule",
            "1:add,3:term:0,5:kill:1",
            "--publishers",
            "2",
            "--subscribers",
            "20",
            "--channels",
            "20",
            "--rate",
            "400",
            "--duration",
            "7",
            "--p99-limit-ms",
            "5000",
        ],
        out.path(),
    )
    .await;
    let res = &r.results;
    let step = &res["step"];
    let events = res["events"].as_array().expect("events");
    assert_eq!(events.len(), 3, "{res:#}");
    let charged: u64 = events.iter().map(|e| u(&e["lost"])).sum::<u64>() + u(&res["lost_before_any_event"]);
    assert_eq!(charged, u(&step["lost"]), "every lost message is charged to one event: {res:#}");
    assert_eq!(u(&step["delivered"]) + u(&step["lost"]), u(&step["expected"]), "{step:#}");
    assert_eq!(u(&events[0]["lost"]), 0, "a broker joining loses nothing: {res:#}");
    assert_eq!(u(&events[1]["lost"]), 0, "a broker leaving on SIGTERM loses nothing: {res:#}");
    assert_eq!(u(&step["duplicated"]), 0, "{step:#}");
    assert_eq!(
        r.markers
            .iter()
            .filter(|m| m.label.starts_with("add") || m.label.starts_with("term") || m.label.starts_with("kill"))
            .count(),
        3
    );
}

/// Two frontends of a cluster with the chat on one SQLite store and open
/// registration (users by `registerUser`, rooms by the run's owner user): every
/// acknowledged message reaches every member of its room exactly once and in
/// `seq` order; a second run over the same store reuses the users (session
/// tokens from the cache, no new accounts) and rooms and adds up the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_delivers_every_message_to_every_member_once_in_order_and_reruns_reuse_the_setup() {
    let store = tempfile::tempdir().expect("tempdir");
    // The second frontend starts once the first has created (migrated) the store: two at once race.
    let mut cluster = Cluster::builder()
        .brokers(1)
        .frontends(1)
        .frontend_arg("--store")
        .frontend_arg(format!("sqlite:{}", store.path().join("chat.db").display()))
        .frontend_arg("--open-registration")
        .frontend_arg("true")
        .start()
        .await;
    cluster.add_frontend().await;
    let (a, b) = (cluster.frontend_url(0), cluster.frontend_url(1));
    let cache = store.path().join("tokens.json");
    let cache = cache.display().to_string();
    let words = [
        "chat",
        "--url",
        &a,
        "--url",
        &b,
        "--token-cache",
        &cache,
        "--users",
        "8",
        "--rooms",
        "3",
        "--rooms-per-user",
        "2",
        "--posters",
        "0.5",
        // 4 posters at 4 msg/s each: under the chat's per-user limit (5/s sustained).
        "--rate",
        "16",
        "--duration",
        "2",
        "--readers",
        "0.25",
        "--read-every",
        "0.5",
    ];
    for run_no in 0..2 {
        let out = tempfile::tempdir().expect("tempdir");
        let r = run(&words, out.path()).await;
        let res = &r.results;
        assert_eq!((u(&res["connected"]), u(&res["closed"])), (8, 0), "run {run_no}: {res:#}");
        let (posted, acked, expected, delivered) =
            (u(&res["posted"]), u(&res["acked"]), u(&res["expected"]), u(&res["delivered"]));
        assert!(posted >= 24, "run {run_no}: 16/s for 2 s: {res:#}");
        assert_eq!((acked, u(&res["failed"]), u(&res["unacked"]), u(&res["skipped"])), (posted, 0, 0, 0), "{res:#}");
        // 8 users × 2 rooms over 3 rooms: 6, 5 and 5 members; each message reaches all of its room's.
        assert!(expected >= posted * 5 && expected <= posted * 6, "run {run_no}: {res:#}");
        assert_eq!((delivered, u(&res["lost"])), (expected, 0), "run {run_no}: {res:#}");
        assert_eq!((u(&res["duplicated"]), u(&res["out_of_order"]), u(&res["unexpected"])), (0, 0, 0), "{res:#}");
        assert_eq!(res["deliver_latency"]["count"].as_u64(), Some(delivered), "one latency per delivery");
        assert_eq!(res["ack_latency"]["count"].as_u64(), Some(acked), "one latency per acknowledgement");
        assert!(u(&res["reads_ok"]) >= 4 && u(&res["reads_failed"]) == 0, "2 readers every 0.5 s: {res:#}");
        // The cluster's four processes were not given: nothing measured, nothing made up.
        assert_eq!(res["server"]["processes"], serde_json::json!([]), "{res:#}");
        assert!(out.path().join("report.json").is_file());
        if run_no == 1 {
            assert_eq!(u(&res["other_messages"]), 0, "the second run joins no room anew: {res:#}");
        }
    }
    let tokens: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(&cache).expect("token cache")).expect("JSON");
    assert_eq!(tokens.len(), 8);
}
