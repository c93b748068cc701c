//! The admin pages' cluster view (`getClusterStatus`) on a real cluster: two frontend processes on one
//! chat store, two brokers. Each frontend reports its load to the state server with its heartbeats;
//! an admin on either frontend sees both frontends with their real socket and user counts, the brokers
//! and the slot table, through the frontend's control link. A plain user is refused. With the state
//! server gone, the answer comes at once from the frontend's own table, marked stale.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use testkit::{Client, Cluster};

const PW: &str = "correct horse battery";
const ADMIN: &str = "root";

async fn call(c: &mut Client, event: &str, data: Value) -> Value {
    let r = c.invoke(event, data).await.unwrap_or_else(|e| panic!("{event}: {e}"));
    assert!(r.get("error").is_none(), "{event} failed: {r}");
    r["data"].clone()
}

async fn logged_in(url: &str, username: &str, register: bool) -> Client {
    let mut c = Client::handshake(url).await.unwrap_or_else(|e| panic!("connect: {e}"));
    if register {
        call(&mut c, "registerUser", json!({"username": username, "password": PW})).await;
    }
    call(&mut c, "login", json!({"user": username, "password": PW})).await;
    c
}

fn frontend<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["frontends"].as_array()?.iter().find(|f| f["id"] == id)
}

/// `(connections, users)` the state server last heard from frontend `id`.
fn load(status: &Value, id: &str) -> Option<(u64, u64)> {
    let l = &frontend(status, id)?["load"];
    Some((l["connections"].as_u64()?, l["users"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_both_frontends_with_their_connections_the_brokers_and_the_slots() {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let db = std::env::temp_dir().join(format!("chat-cluster-view-{}-{nanos}.db", std::process::id()));
    // The frontends inherit the environment: the first admin's password (one test per binary).
    std::env::set_var("CHAT_ADMIN_PASSWORD", PW);
    let mut cluster = Cluster::builder()
        .brokers(2)
        .frontends(1)
        .frontend_arg("--store")
        .frontend_arg(format!("sqlite:{}", db.display()))
        .frontend_arg("--open-registration")
        .frontend_arg("true")
        .frontend_arg("--bootstrap-admin")
        .frontend_arg(ADMIN)
        .start()
        .await;
    // The second frontend starts after the first migrated the shared store.
    let f1 = cluster.add_frontend().await;
    cluster.wait_in_service(Duration::from_secs(15)).await;
    let (id0, id1) = (cluster.frontend_id(0).to_owned(), cluster.frontend_id(f1).to_owned());

    // f0: the admin and bob (2 sockets, 2 users). f1: carol and two anonymous sockets (3 sockets, 1 user).
    let mut admin = logged_in(&cluster.frontend_url(0), ADMIN, false).await;
    let mut bob = logged_in(&cluster.frontend_url(0), "bob", true).await;
    let _carol = logged_in(&cluster.frontend_url(f1), "carol", true).await;
    let mut anonymous = Vec::new();
    for _ in 0..2 {
        anonymous.push(Client::handshake(&cluster.frontend_url(f1)).await.unwrap_or_else(|e| panic!("connect: {e}")));
    }

    // Loads arrive with the next heartbeats.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = call(&mut admin, "getClusterStatus", json!({})).await;
        if load(&s, &id0) == Some((2, 2)) && load(&s, &id1) == Some((3, 1)) {
            break s;
        }
        assert!(Instant::now() < deadline, "loads f0 (2 sockets, 2 users) and f1 (3, 1) never shown; last: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("cluster view: {status}");
    assert_eq!(status["stale"], false);
    assert_eq!(status["thisFrontend"], id0.as_str());
    assert_eq!(status["epoch"], cluster.epoch().await);
    let frontends = status["frontends"].as_array().unwrap_or_else(|| panic!("frontends: {status}"));
    assert_eq!(frontends.len(), 2, "{status}");
    assert!(frontends.iter().all(|f| f["connected"] == true), "{status}");
    // The slot table as the state server committed it, slot by slot, and both brokers connected.
    let table = cluster.slot_table().await;
    let slots: Vec<(u64, String, String)> = status["slots"]
        .as_array()
        .unwrap_or_else(|| panic!("slots: {status}"))
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
            (s["slot"].as_u64().unwrap_or(u64::MAX), text("id"), text("addr"))
        })
        .collect();
    let want: Vec<(u64, String, String)> =
        table.slots.iter().enumerate().map(|(i, b)| (i as u64, b.id.clone(), b.addr.clone())).collect();
    assert_eq!(slots, want);
    assert_eq!(slots.len(), 2);
    let brokers = status["brokers"].as_array().unwrap_or_else(|| panic!("brokers: {status}"));
    assert_eq!(brokers.len(), 2);
    assert!(brokers.iter().all(|b| b["connected"] == true), "{status}");

    // A socket that closes is no longer counted.
    anonymous.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = call(&mut admin, "getClusterStatus", json!({})).await;
        if load(&s, &id1) == Some((2, 1)) {
            break;
        }
        assert!(Instant::now() < deadline, "f1 never went down to 2 sockets; last: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A plain user is refused.
    let r = bob.invoke("getClusterStatus", json!({})).await.unwrap_or_else(|e| panic!("invoke: {e}"));
    assert_eq!(r["error"]["error"], "error-not-allowed", "{r}");

    // The state server goes: the admin still gets an answer, at once, from f0's own table.
    cluster.kill_state_server();
    let asked = Instant::now();
    let s = call(&mut admin, "getClusterStatus", json!({})).await;
    let took = asked.elapsed();
    println!("stale answer in {} ms: {s}", took.as_millis());
    assert!(took < Duration::from_secs(3), "never hangs: {took:?}");
    assert_eq!(s["stale"], true, "{s}");
    assert!(s["staleReason"].as_str().is_some_and(|r| !r.is_empty()), "{s}");
    assert_eq!(s["slots"].as_array().map(Vec::len), Some(2), "{s}");
    assert_eq!(s["epoch"], status["epoch"]);
    assert_eq!(load(&s, &id0), Some((2, 2)), "its own row, counted locally: {s}");
    let _ = std::fs::remove_file(&db);
}
