//! Presence, typing and webhooks over sockets and HTTP: one in-process node with a temporary SQLite
//! store, raw clients, and tiny local HTTP receivers for outgoing webhooks.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat::integration::Backoff;
use chat::integration::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use protocol::Codec;
use serde_json::{json, Value};
use support::chat::{admin_and_users, login, ChatNode};
use support::{call, call_err, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The tests of this file run one at a time: each hashes several passwords (argon2, slow in debug
/// builds), and on a loaded machine parallel hashing pushes single replies past the client's wait.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A chat node whose webhooks retry fast; `allow_private_targets` switches off the guard against
/// loopback targets (the test receivers listen on 127.0.0.1).
async fn start_with(allow_private_targets: bool) -> ChatNode {
    support::chat::start_with(|cc| {
        cc.webhooks.allow_private_targets = allow_private_targets;
        cc.webhooks.backoff = Backoff { base: Duration::from_millis(20), max: Duration::from_millis(100) };
        cc.webhooks.timeout = Duration::from_secs(5);
    })
    .await
}

/// The next `presence` event on `presence/<uid>`.
async fn next_presence(c: &mut Client, uid: &str) -> Value {
    let channel = format!("presence/{uid}");
    let p = c.next_matching(|p| p["event"] == "#publish" && p["data"]["channel"] == channel).await;
    p["data"]["data"].clone()
}

#[tokio::test]
async fn a_watcher_sees_a_user_go_online_away_busy_and_offline_when_the_last_socket_closes() {
    let _serial = SERIAL.lock().await;
    let n = start_with(false).await;
    let (_admin, mut us) = admin_and_users(&n, &["alice", "bob"]).await;
    let bob = us.pop().unwrap();
    let alice = us.pop().unwrap();
    let alice_id = alice.id.clone();
    drop(alice); // alice's first socket closes: offline
    let mut bob = bob;
    bob.c.subscribe(&format!("presence/{alice_id}")).await;
    let now = call(&mut bob.c, "getUserPresence", json!({"uids": [alice_id]})).await;
    assert_eq!(now["users"][0]["status"], "offline");

    let mut a1 = login(&n, "alice").await;
    let ev = next_presence(&mut bob.c, &alice_id).await;
    assert_eq!((ev["status"].as_str(), ev["code"].as_u64()), (Some("online"), Some(1)));
    assert_eq!(ev["uid"], alice_id.as_str());

    let mut a2 = login(&n, "alice").await;
    call(&mut a1.c, "UserPresence:away", json!({})).await;
    // a2 is still online: no change. Then a2 goes away too: away.
    call(&mut a2.c, "UserPresence:away", json!({})).await;
    let ev = next_presence(&mut bob.c, &alice_id).await;
    assert_eq!(ev["status"], "away", "away only once every connection is away: {ev}");
    call(&mut a2.c, "UserPresence:online", json!({})).await;
    assert_eq!(next_presence(&mut bob.c, &alice_id).await["status"], "online");

    let set = call(&mut a1.c, "setUserStatus", json!({"status": "busy", "message": "in a call"})).await;
    assert_eq!(set["status"], "busy");
    let ev = next_presence(&mut bob.c, &alice_id).await;
    assert_eq!((ev["status"].as_str(), ev["statusText"].as_str()), (Some("busy"), Some("in a call")));

    drop(a1);
    // Busy while one socket remains; offline when the last one closes.
    let now = call(&mut bob.c, "getUserPresence", json!({"uid": alice_id})).await;
    assert_eq!(now["users"][0]["status"], "busy");
    drop(a2);
    let ev = next_presence(&mut bob.c, &alice_id).await;
    assert_eq!(ev["status"], "offline");

    // The manual status survives reconnecting: it was stored.
    let _a3 = login(&n, "alice").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let ev = next_presence(&mut bob.c, &alice_id).await;
        seen.push(ev["status"].as_str().unwrap().to_owned());
        if ev["status"] == "busy" {
            break;
        }
    }
    assert_eq!(seen.last().map(String::as_str), Some("busy"), "stored status restored: {seen:?}");
}

#[tokio::test]
async fn presence_channels_need_a_login_and_refuse_client_publishes() {
    let _serial = SERIAL.lock().await;
    let n = start_with(false).await;
    let (mut admin, _) = admin_and_users(&n, &[]).await;
    let mut anon = Client::handshake(n.node.json, Codec::Json).await;
    let r = anon.invoke("#subscribe", json!({"channel": format!("presence/{}", admin.id)})).await;
    assert_eq!(r["error"]["error"], "error-unauthorized", "{r}");
    let r = admin
        .c
        .invoke("#publish", json!({"channel": format!("presence/{}", admin.id), "data": {"status": "online"}}))
        .await;
    assert_eq!(r["error"]["error"], "error-not-allowed", "{r}");
    let r = admin.c.invoke("#subscribe", json!({"channel": "presence/NoSuchUser1234567"})).await;
    assert_eq!(r["error"]["error"], "error-not-found", "{r}");
    let e = call_err(&mut admin.c, "setUserStatus", json!({"status": "sleepy"})).await;
    assert_eq!(e["error"], "error-invalid-param");
}

#[tokio::test]
async fn typing_reaches_members_is_refused_to_non_members_and_is_rate_bounded() {
    let _serial = SERIAL.lock().await;
    let n = start_with(false).await;
    let (_admin, mut us) = admin_and_users(&n, &["alice", "bob", "eve"]).await;
    let mut eve = us.pop().unwrap();
    let mut bob = us.pop().unwrap();
    let mut alice = us.pop().unwrap();
    let room = call(&mut alice.c, "createPrivateGroup", json!({"name": "team", "members": ["bob"]})).await;
    let rid = room["room"]["id"].as_str().unwrap().to_owned();
    bob.c.subscribe(&format!("room/{rid}")).await;

    assert_eq!(call(&mut alice.c, "typing", json!({"rid": rid, "typing": true})).await["sent"], true);
    let ev = bob.c.next_matching(|p| p["event"] == "#publish" && p["data"]["data"]["type"] == "typing").await;
    let ev = &ev["data"]["data"];
    assert_eq!((ev["username"].as_str(), ev["typing"].as_bool()), (Some("alice"), Some(true)));
    assert_eq!(ev["uid"], alice.id.as_str());

    let e = call_err(&mut eve.c, "typing", json!({"rid": rid, "typing": true})).await;
    assert_eq!(e["error"], "error-not-found", "a private room's outsider learns nothing");

    // Burst of 3 per user and room: the 4th and later within 3 s are dropped.
    let mut sent = Vec::new();
    for _ in 0..4 {
        sent.push(call(&mut alice.c, "typing", json!({"rid": rid, "typing": false})).await["sent"].clone());
    }
    assert_eq!(sent, [json!(true), json!(true), json!(false), json!(false)]);

    // Typing is never stored.
    let history = call(&mut alice.c, "loadHistory", json!({"rid": rid})).await;
    assert_eq!(history["messages"], json!([]), "nothing stored");
}

/// One received request: lower-cased headers and the raw body.
type Received = (Vec<(String, String)>, Vec<u8>);

/// A tiny HTTP receiver: answers with `statuses` in turn (then 200), and keeps every request's
/// headers and body.
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(statuses: Vec<u16>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        let mut statuses = statuses.into_iter();
        for _ in 0..50 {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (headers, body) = loop {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "request cut short");
                buf.extend_from_slice(&chunk[..n]);
                let mut h = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut h);
                if let httparse::Status::Complete(len) = req.parse(&buf).unwrap() {
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    let cl: usize = headers.iter().find(|(k, _)| k == "content-length").unwrap().1.parse().unwrap();
                    while buf.len() < len + cl {
                        let n = s.read(&mut chunk).await.unwrap();
                        assert!(n > 0, "body cut short");
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    break (headers, buf[len..len + cl].to_vec());
                }
            };
            seen.lock().unwrap().push((headers, body));
            let code = statuses.next().unwrap_or(200);
            let resp = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    Receiver { url, requests }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(k, _)| k == &name.to_ascii_lowercase()).map_or("", |(_, v)| v.as_str())
}

async fn history_until(admin: &mut Client, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let h = call(admin, "integrations.history", json!({"integrationId": id})).await;
        if done(&h["history"]) {
            return h["history"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("delivery history did not reach the expected state");
}

#[tokio::test]
async fn outgoing_webhooks_are_signed_and_retried_with_their_history_recorded() {
    let _serial = SERIAL.lock().await;
    let n = start_with(true).await;
    let (mut admin, mut us) = admin_and_users(&n, &["alice", "hookbot"]).await;
    let _bot = us.pop().unwrap();
    let mut alice = us.pop().unwrap();
    let room = call(&mut alice.c, "createChannel", json!({"name": "builds"})).await;
    let rid = room["room"]["id"].as_str().unwrap().to_owned();

    let rx = receiver(vec![500, 500]).await;
    let e = call_err(
        &mut alice.c,
        "integrations.create",
        json!({"type": "webhook-outgoing", "name": "x", "username": "hookbot", "urls": [rx.url]}),
    )
    .await;
    assert_eq!(e["error"], "error-not-allowed", "only admins manage integrations");
    let created = call(
        &mut admin.c,
        "integrations.create",
        json!({"type": "webhook-outgoing", "name": "ci", "rid": rid, "username": "hookbot",
               "urls": [rx.url], "triggerWords": ["!build"], "retryCount": 3}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["integration"]["id"].as_str().unwrap().to_owned();
    assert!(created["integration"].get("secret").is_none(), "the secret is shown once, not in the record");

    call(&mut alice.c, "sendMessage", json!({"rid": rid, "msg": "no trigger here"})).await;
    let sent = call(&mut alice.c, "sendMessage", json!({"rid": rid, "msg": "!build main"})).await;
    let history = history_until(&mut admin.c, &id, |h| h[0]["status"] == "success").await;
    assert_eq!(history.as_array().unwrap().len(), 1, "only the triggering message was delivered: {history}");
    let d = &history[0];
    assert_eq!((d["attempts"].as_u64(), d["responseCode"].as_u64()), (Some(3), Some(200)), "{d}");
    assert_eq!(d["messageId"], sent["message"]["id"]);

    let requests = rx.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "500, 500, then 200");
    for (headers, body) in &requests {
        // What a receiver does: recompute the signature over the raw body and the timestamp.
        let ts: i64 = header(headers, TIMESTAMP_HEADER).parse().unwrap();
        assert_eq!(header(headers, SIGNATURE_HEADER), sign(&secret, ts, body));
        assert_ne!(header(headers, SIGNATURE_HEADER), sign("wrong secret", ts, body));
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!((payload["text"].as_str(), payload["trigger_word"].as_str()), (Some("!build main"), Some("!build")));
        assert_eq!(payload["channel_id"], rid.as_str());
        assert_eq!(payload["user_name"], "alice");
    }

    let list = call(&mut admin.c, "integrations.list", json!({})).await;
    assert!(list["integrations"][0].get("secret").is_none());
    call(&mut admin.c, "integrations.remove", json!({"integrationId": id})).await;
    let e = call_err(&mut admin.c, "integrations.history", json!({"integrationId": id})).await;
    assert_eq!(e["error"], "error-not-found");
}

#[tokio::test]
async fn the_guard_refuses_a_private_target_when_on() {
    let _serial = SERIAL.lock().await;
    let n = start_with(false).await;
    let (mut admin, mut us) = admin_and_users(&n, &["alice", "hookbot"]).await;
    let mut alice = us.remove(0);
    let room = call(&mut alice.c, "createChannel", json!({"name": "general"})).await;
    let rid = room["room"]["id"].as_str().unwrap().to_owned();
    let rx = receiver(vec![]).await;
    let created = call(
        &mut admin.c,
        "integrations.create",
        json!({"type": "outgoing", "name": "leak", "username": "hookbot", "urls": [rx.url]}),
    )
    .await;
    let id = created["integration"]["id"].as_str().unwrap().to_owned();
    call(&mut alice.c, "sendMessage", json!({"rid": rid, "msg": "anything"})).await;
    let history = history_until(&mut admin.c, &id, |h| h[0]["status"] == "refused").await;
    assert_eq!(history[0]["attempts"], 1, "not retried");
    assert!(history[0]["error"].as_str().unwrap().contains("not public"), "{history}");
    assert!(rx.requests.lock().unwrap().is_empty(), "nothing reached the private receiver");
}

/// One HTTP request to the node's port; returns the status and the JSON body.
async fn http_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, json_body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(json_body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_incoming_webhook_posts_into_the_room_and_a_wrong_token_is_not_found() {
    let _serial = SERIAL.lock().await;
    let n = start_with(false).await;
    let (mut admin, mut us) = admin_and_users(&n, &["alice", "hookbot"]).await;
    let mut alice = us.remove(0);
    let room = call(&mut alice.c, "createChannel", json!({"name": "alerts", "members": ["hookbot"]})).await;
    let rid = room["room"]["id"].as_str().unwrap().to_owned();
    alice.c.subscribe(&format!("room/{rid}")).await;
    let created = call(
        &mut admin.c,
        "integrations.create",
        json!({"type": "webhook-incoming", "name": "deploys", "rid": rid, "username": "hookbot"}),
    )
    .await;
    let url = created["url"].as_str().unwrap().to_owned();
    let id = created["integration"]["id"].as_str().unwrap().to_owned();
    assert!(created["integration"].get("tokenHash").is_none(), "the token's hash is never shown");

    let (status, reply) = http_post(n.node.json, &url, r#"{"text": "deploy finished"}"#).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], true);
    let ev = alice.c.next_matching(|p| p["event"] == "#publish" && p["data"]["data"]["type"] == "message.new").await;
    let m = &ev["data"]["data"]["message"];
    assert_eq!((m["msg"].as_str(), m["u"]["username"].as_str()), (Some("deploy finished"), Some("hookbot")));

    let wrong_token = http_post(n.node.json, &format!("/hooks/{id}/not-the-token"), r#"{"text": "x"}"#).await;
    let wrong_id =
        http_post(n.node.json, &format!("/hooks/NoSuchHook1234567/{}", "a".repeat(64)), r#"{"text": "x"}"#).await;
    assert_eq!(wrong_token.0, 404);
    assert_eq!(wrong_token, wrong_id, "a wrong token and an unknown id get the same answer");
    let (status, _) = http_post(n.node.json, &url, "not json").await;
    assert_eq!(status, 400);
    let history = call(&mut alice.c, "loadHistory", json!({"rid": rid})).await;
    let texts: Vec<&str> = history["messages"].as_array().unwrap().iter().filter_map(|m| m["msg"].as_str()).collect();
    assert_eq!(texts, ["deploy finished"], "nothing stored for the refused posts");
}
