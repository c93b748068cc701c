//! Presence across a real cluster: two frontend processes sharing one chat store. A frontend that dies
//! cannot say that its users left; the others must turn them offline by themselves once its lease ran
//! out (`--presence-heartbeat-ms` × 4).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use testkit::{Client, Cluster};

const PW: &str = "correct horse battery";
const HEARTBEAT_MS: u64 = 200;

async fn call(c: &mut Client, event: &str, data: Value) -> Value {
    let r = c.invoke(event, data).await.unwrap_or_else(|e| panic!("{event}: {e}"));
    assert!(r.get("error").is_none(), "{event} failed: {r}");
    r["data"].clone()
}

async fn registered(url: &str, username: &str) -> (Client, String) {
    let mut c = Client::handshake(url).await.unwrap_or_else(|e| panic!("connect: {e}"));
    call(&mut c, "registerUser", json!({"username": username, "password": PW})).await;
    let me = call(&mut c, "login", json!({"user": username, "password": PW})).await;
    let id = me["id"].as_str().unwrap_or_default().to_owned();
    (c, id)
}

async fn next_status(c: &mut Client, channel: &str) -> String {
    let p = c
        .next_matching(|p| p["event"] == "#publish" && p["data"]["channel"] == channel)
        .await
        .unwrap_or_else(|e| panic!("presence event on {channel}: {e}"));
    p["data"]["data"]["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_frontend_turns_its_users_offline_on_the_other_frontend_within_the_lease() {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let db = std::env::temp_dir().join(format!("chat-presence-{}-{nanos}.db", std::process::id()));
    let mut cluster = Cluster::builder()
        .brokers(1)
        .frontends(1)
        .frontend_arg("--store")
        .frontend_arg(format!("sqlite:{}", db.display()))
        .frontend_arg("--open-registration")
        .frontend_arg("true")
        .frontend_arg("--presence-heartbeat-ms")
        .frontend_arg(HEARTBEAT_MS.to_string())
        .start()
        .await;
    // The second frontend starts after the first migrated the shared store.
    let f1 = cluster.add_frontend().await;
    cluster.wait_in_service(Duration::from_secs(15)).await;

    let (mut bob, _) = registered(&cluster.frontend_url(0), "bob").await;
    let (alice, alice_id) = registered(&cluster.frontend_url(f1), "alice").await;
    let channel = format!("presence/{alice_id}");
    // Alice (on f1) is online as f0 sees it once f1's report arrived.
    let mut seen_online = false;
    for _ in 0..50 {
        let now = call(&mut bob, "getUserPresence", json!({"uid": alice_id})).await;
        if now["users"][0]["status"] == "online" {
            seen_online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_online, "f0 learns that alice is online on f1");
    bob.subscribe(&channel).await.unwrap_or_else(|e| panic!("subscribe: {e}"));

    let killed = Instant::now();
    cluster.kill_frontend(f1);
    drop(alice);
    let status = next_status(&mut bob, &channel).await;
    let took = killed.elapsed();
    println!("alice offline on f0 {} ms after f1 was killed (lease {} ms)", took.as_millis(), HEARTBEAT_MS * 4);
    assert_eq!(status, "offline");
    assert!(took >= Duration::from_millis(HEARTBEAT_MS * 3), "not before the lease could run out: {took:?}");
    assert!(took < Duration::from_millis(HEARTBEAT_MS * 4 + 3_000), "within the lease and a heartbeat: {took:?}");
    let now = call(&mut bob, "getUserPresence", json!({"uid": alice_id})).await;
    assert_eq!(now["users"][0]["status"], "offline");
    let _ = std::fs::remove_file(&db);
}
