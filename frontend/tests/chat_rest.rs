//! The chat's REST surface: one in-process node with a temporary SQLite store, a hand-written HTTP
//! client (so tests can send what no library would), and raw socket clients for the other surface.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::Codec;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::chat::{ChatNode, PW};
use support::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);

async fn start_with(max_body: usize) -> ChatNode {
    support::chat::start_with(|cc| cc.rest_max_body_bytes = max_body).await
}

async fn start() -> ChatNode {
    start_with(frontend::chat::rest::DEFAULT_MAX_BODY_BYTES).await
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads a response head; returns status, headers and the bytes read past the head.
async fn read_head(s: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk)).await.expect("answer in time").unwrap();
        assert!(n > 0, "connection closed before a response head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(len) = r.parse(&buf).unwrap() {
            let hs = r
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            return (r.code.unwrap(), hs, buf[len..].to_vec());
        }
    }
}

async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let (status, headers, mut body) = read_head(&mut s).await;
    tokio::time::timeout(WAIT, s.read_to_end(&mut body)).await.unwrap().unwrap();
    Resp { status, headers, body }
}

/// Credentials of a REST session.
#[derive(Clone)]
struct Auth {
    uid: String,
    token: String,
}

fn request(method: &str, path: &str, auth: Option<&Auth>, body: Option<&Value>) -> Vec<u8> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    if let Some(a) = auth {
        head.push_str(&format!("X-Auth-Token: {}\r\nX-User-Id: {}\r\n", a.token, a.uid));
    }
    if method == "POST" {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.as_bytes());
    raw
}

async fn get(n: &ChatNode, path: &str, auth: Option<&Auth>) -> Resp {
    send_raw(n.addr(), &request("GET", path, auth, None)).await
}

async fn post(n: &ChatNode, path: &str, auth: Option<&Auth>, body: Value) -> Resp {
    send_raw(n.addr(), &request("POST", path, auth, Some(&body))).await
}

/// A call that must succeed; returns its JSON.
async fn ok(r: Resp) -> Value {
    let v = r.json();
    assert_eq!((r.status, &v["success"]), (200, &json!(true)), "{v}");
    v
}

async fn login(n: &ChatNode, user: &str) -> Auth {
    let v = ok(post(n, "/api/v1/login", None, json!({"user": user, "password": PW})).await).await;
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["me"]["username"], user);
    Auth { uid: v["data"]["userId"].as_str().unwrap().into(), token: v["data"]["authToken"].as_str().unwrap().into() }
}

/// The admin creates each account over REST; each logs in over REST.
async fn users(n: &ChatNode, names: &[&str]) -> Vec<Auth> {
    let root = login(n, "root").await;
    let mut out = Vec::new();
    for name in names {
        let v = ok(post(n, "/api/v1/users.create", Some(&root), json!({"username": name, "password": PW})).await).await;
        assert_eq!(v["user"]["username"], *name);
        out.push(login(n, name).await);
    }
    out
}

fn texts(history: &Value) -> Vec<String> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["t"].is_null())
        .map(|m| m["msg"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn rest_login_post_and_history_round_trip_and_socket_members_see_the_post() {
    let n = start().await;
    let us = users(&n, &["alice", "bob"]).await;
    let alice = &us[0];
    let me = ok(get(&n, "/api/v1/me", Some(alice)).await).await;
    assert_eq!(me["username"], "alice");

    let created =
        ok(post(&n, "/api/v1/channels.create", Some(alice), json!({"name": "general", "members": ["bob"]})).await)
            .await;
    let rid = created["channel"]["id"].as_str().unwrap().to_owned();

    // Bob on a socket, subscribed to the room: the REST post reaches him like a socket post would.
    let mut bob = Client::handshake(n.addr(), Codec::Json).await;
    let r = bob.invoke("login", json!({"user": "bob", "password": PW})).await;
    assert!(r.get("error").is_none(), "{r}");
    bob.subscribe(&format!("room/{rid}")).await;

    let sent =
        ok(post(&n, "/api/v1/chat.postMessage", Some(alice), json!({"roomId": rid, "text": "hello from REST"})).await)
            .await;
    assert_eq!(sent["channel"], rid.as_str());
    assert_eq!(sent["message"]["msg"], "hello from REST");
    let ev = bob.next_matching(|p| p["event"] == "#publish" && p["data"]["data"]["type"] == "message.new").await;
    assert_eq!(ev["data"]["data"]["message"]["msg"], "hello from REST");
    assert_eq!(ev["data"]["data"]["seq"], sent["message"]["seq"]);

    // Addressed by name too (`#name`, `roomName`), and a socket post shows in REST history.
    ok(post(&n, "/api/v1/chat.postMessage", Some(alice), json!({"channel": "#general", "text": "second"})).await).await;
    let r = bob.invoke("sendMessage", json!({"rid": rid, "msg": "from the socket"})).await;
    assert!(r.get("error").is_none(), "{r}");
    let history = ok(get(&n, "/api/v1/channels.history?roomName=general&count=10", Some(alice)).await).await;
    assert_eq!(texts(&history), ["hello from REST", "second", "from the socket"]);
    let older = ok(get(
        &n,
        &format!("/api/v1/channels.history?roomId={rid}&before={}", sent["message"]["seq"].as_u64().unwrap() + 1),
        Some(alice),
    )
    .await)
    .await;
    assert_eq!(texts(&older), ["hello from REST"]);

    // Reactions and pins over REST (rows of the same table).
    let second = history["messages"].as_array().unwrap().iter().find(|m| m["msg"] == "second").unwrap()["id"].clone();
    let reacted =
        ok(post(&n, "/api/v1/chat.react", Some(&us[1]), json!({"messageId": second, "emoji": ":tada:"})).await).await;
    assert_eq!(reacted["message"]["reactions"][":tada:"], json!([us[1].uid]));

    // Edit and delete over REST.
    let mid = sent["message"]["id"].as_str().unwrap();
    let edited =
        ok(post(&n, "/api/v1/chat.update", Some(alice), json!({"roomId": rid, "msgId": mid, "text": "edited"})).await)
            .await;
    assert_eq!(edited["message"]["msg"], "edited");
    ok(post(&n, "/api/v1/chat.delete", Some(alice), json!({"roomId": rid, "msgId": mid})).await).await;
    let history = ok(get(&n, &format!("/api/v1/channels.history?roomId={rid}"), Some(alice)).await).await;
    assert_eq!(texts(&history), ["second", "from the socket"]);

    let joined = ok(get(&n, "/api/v1/channels.list.joined", Some(&us[1])).await).await;
    assert_eq!(joined["channels"][0]["id"], rid.as_str());
    let subs = ok(get(&n, "/api/v1/subscriptions.get", Some(&us[1])).await).await;
    assert_eq!(subs["update"][0]["rid"], rid.as_str());
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_with_an_error_type() {
    let n = start().await;
    let alice = users(&n, &["alice"]).await.remove(0);
    let cases = [
        None,
        Some(Auth { uid: alice.uid.clone(), token: "not-a-token".into() }),
        Some(Auth { uid: "SomeoneElse000000".into(), token: alice.token.clone() }),
    ];
    for auth in &cases {
        let r = get(&n, "/api/v1/me", auth.as_ref()).await;
        assert_eq!(r.status, 401);
        let v = r.json();
        assert_eq!((v["success"].clone(), v["errorType"].clone()), (json!(false), json!("error-unauthorized")), "{v}");
        let r = post(&n, "/api/v1/channels.create", auth.as_ref(), json!({"name": "x"})).await;
        assert_eq!(r.status, 401);
    }
    let r = post(&n, "/api/v1/login", None, json!({"user": "alice", "password": "wrong password!"})).await;
    assert_eq!((r.status, r.json()["errorType"].clone()), (401, json!("error-unauthorized")));

    // A bearer header works the same; after logout the token is dead.
    let bearer = format!("GET /api/v1/me HTTP/1.1\r\nAuthorization: Bearer {}\r\n\r\n", alice.token);
    assert_eq!(send_raw(n.addr(), bearer.as_bytes()).await.status, 200);
    ok(post(&n, "/api/v1/logout", Some(&alice), json!({})).await).await;
    assert_eq!(get(&n, "/api/v1/me", Some(&alice)).await.status, 401);

    // Unknown endpoints and wrong verbs are clear JSON errors too.
    let r = get(&n, "/api/v1/no.such.thing", Some(&alice)).await;
    assert_eq!((r.status, r.json()["errorType"].clone()), (404, json!("error-unknown-endpoint")));
    let r = get(&n, "/api/v1/chat.postMessage", Some(&alice)).await;
    assert_eq!((r.status, r.json()["errorType"].clone()), (405, json!("error-method-not-allowed")));
}

#[tokio::test]
async fn a_private_groups_history_is_404_to_a_non_member_like_a_missing_room() {
    let n = start().await;
    let us = users(&n, &["alice", "carol"]).await;
    let (alice, carol) = (&us[0], &us[1]);
    let g = ok(post(&n, "/api/v1/groups.create", Some(alice), json!({"name": "secret"})).await).await;
    let gid = g["group"]["id"].as_str().unwrap();
    ok(post(&n, "/api/v1/chat.postMessage", Some(alice), json!({"roomId": gid, "text": "just us"})).await).await;
    let member = ok(get(&n, &format!("/api/v1/groups.history?roomId={gid}"), Some(alice)).await).await;
    assert_eq!(texts(&member), ["just us"]);

    for path in [
        format!("/api/v1/groups.history?roomId={gid}"),
        "/api/v1/groups.history?roomName=secret".to_owned(),
        format!("/api/v1/groups.info?roomId={gid}"),
        format!("/api/v1/groups.members?roomId={gid}"),
    ] {
        let refused = get(&n, &path, Some(carol)).await;
        let missing =
            get(&n, &path.replace(gid, "NoSuchRoom0000000").replace("secret", "nosuchroom"), Some(carol)).await;
        assert_eq!(refused.status, 404, "{path}");
        assert_eq!(refused.body, missing.body, "{path}: same answer as a room that does not exist");
        assert_eq!(refused.json()["errorType"], "error-not-found");
    }
    let r = post(&n, "/api/v1/chat.postMessage", Some(carol), json!({"roomId": gid, "text": "let me in"})).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_nothing_is_stored() {
    let n = start_with(1024).await;
    let alice = users(&n, &["alice"]).await.remove(0);
    let c = ok(post(&n, "/api/v1/channels.create", Some(&alice), json!({"name": "general"})).await).await;
    let rid = c["channel"]["id"].as_str().unwrap();
    let long = "x".repeat(2000);
    let r = post(&n, "/api/v1/chat.postMessage", Some(&alice), json!({"roomId": rid, "text": long})).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["errorType"], "error-too-large");
    assert_eq!(r.json()["limit"], 1024);

    // Chunked bodies are refused (Content-Length only), so is JSON that is not an object.
    let chunked = format!(
        "POST /api/v1/chat.postMessage HTTP/1.1\r\nX-Auth-Token: {}\r\nX-User-Id: {}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        alice.token, alice.uid
    );
    let r = send_raw(n.addr(), chunked.as_bytes()).await;
    assert_eq!((r.status, r.json()["errorType"].clone()), (411, json!("error-length-required")));
    let r = post(&n, "/api/v1/chat.postMessage", Some(&alice), json!(["roomId", rid])).await;
    assert_eq!((r.status, r.json()["errorType"].clone()), (400, json!("error-invalid-body")));
    // A body shorter than announced: the client goes quiet, the node gives up (no hang, no panic).
    let short = format!(
        "POST /api/v1/chat.postMessage HTTP/1.1\r\nX-Auth-Token: {}\r\nX-User-Id: {}\r\nContent-Length: 100\r\n\r\n{{\"a\"",
        alice.token, alice.uid
    );
    let mut s = TcpStream::connect(n.addr()).await.unwrap();
    s.write_all(short.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let (status, _, _) = read_head(&mut s).await;
    assert_eq!(status, 400);

    let history = ok(get(&n, &format!("/api/v1/channels.history?roomId={rid}"), Some(&alice)).await).await;
    assert!(texts(&history).is_empty(), "nothing stored: {history}");
    n.node.assert_still_serves().await;
}

// ------------------------------------------------------------------------------------------ uploads

/// Deterministic pseudo-random bytes, generated piece by piece (never the whole file in memory).
struct Gen {
    x: u64,
}

impl Gen {
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            c.copy_from_slice(&self.x.to_le_bytes()[..c.len()]);
        }
    }
}

const BOUNDARY: &str = "----rest-test-boundary-7MA4YWxkTrZu0gW";

fn form_field(name: &str, value: &str) -> String {
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
}

/// Uploads `size` generated bytes as `name` into `rid`, streaming; returns the answer and the sha256
/// of what was sent. Writes and reads run at once, so an early answer is seen whatever happens to the
/// rest of the body.
async fn upload(n: &ChatNode, auth: &Auth, rid: &str, name: &str, media: &str, size: u64, seed: u64) -> (Resp, String) {
    let before = form_field("msg", "here it is");
    let file_head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {media}\r\n\r\n"
    );
    let after = format!("\r\n{}--{BOUNDARY}--\r\n", form_field("description", "generated"));
    let length = before.len() as u64 + file_head.len() as u64 + size + after.len() as u64;
    let head = format!(
        "POST /api/v1/rooms.upload/{rid} HTTP/1.1\r\nX-Auth-Token: {}\r\nX-User-Id: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n\r\n",
        auth.token, auth.uid
    );
    let s = TcpStream::connect(n.addr()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut g = Gen { x: seed | 1 };
        let mut buf = vec![0u8; 61 * 1024 + 7];
        let run = async {
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(before.as_bytes()).await?;
            wr.write_all(file_head.as_bytes()).await?;
            let mut left = size;
            while left > 0 {
                let k = buf.len().min(usize::try_from(left).unwrap());
                g.fill(&mut buf[..k]);
                hasher.update(&buf[..k]);
                wr.write_all(&buf[..k]).await?;
                left -= k as u64;
            }
            wr.write_all(after.as_bytes()).await
        };
        let sent = run.await.is_ok();
        (sent, hex(&hasher.finalize()))
    });
    let mut body = Vec::new();
    let head = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let k = rd.read(&mut chunk).await.unwrap();
            assert!(k > 0, "closed without an answer");
            buf.extend_from_slice(&chunk[..k]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = r.parse(&buf).unwrap() {
                let hs: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                return (r.code.unwrap(), hs, buf[len..].to_vec());
            }
        }
    };
    let (status, headers, rest) = tokio::time::timeout(Duration::from_secs(300), head).await.expect("answer in time");
    body.extend_from_slice(&rest);
    let _ = tokio::time::timeout(WAIT, rd.read_to_end(&mut body)).await;
    let (_, sha) = writer.await.unwrap();
    (Resp { status, headers, body }, sha)
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `path` with extra request headers; returns status, headers, body length and sha256,
/// hashing as the bytes arrive.
async fn download(n: &ChatNode, path: &str, headers: &str) -> (u16, Vec<(String, String)>, u64, String) {
    let mut s = TcpStream::connect(n.addr()).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\n{headers}\r\n").as_bytes()).await.unwrap();
    let (status, hs, first) = read_head(&mut s).await;
    let mut hasher = Sha256::new();
    hasher.update(&first);
    let mut total = first.len() as u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let k = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
        if k == 0 {
            break;
        }
        hasher.update(&buf[..k]);
        total += k as u64;
    }
    (status, hs, total, hex(&hasher.finalize()))
}

fn auth_headers(a: &Auth) -> String {
    format!("X-Auth-Token: {}\r\nX-User-Id: {}\r\n", a.token, a.uid)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn an_upload_over_100_mb_streams_in_and_back_out_to_members_only() {
    let n = start().await;
    n.set("FileUpload_MaxFileSize", json!(200u64 * 1024 * 1024)).await;
    let us = users(&n, &["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (&us[0], &us[1], &us[2]);
    let g =
        ok(post(&n, "/api/v1/groups.create", Some(alice), json!({"name": "files", "members": ["bob"]})).await).await;
    let gid = g["group"]["id"].as_str().unwrap();

    let size = 100 * 1024 * 1024 + 12_345;
    let started = std::time::Instant::now();
    let (r, sent_sha) = upload(&n, alice, gid, "big data.bin", "application/octet-stream", size, 42).await;
    let up_secs = started.elapsed().as_secs_f64();
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    let att = &v["message"]["attachments"][0];
    assert_eq!(v["message"]["msg"], "here it is");
    assert_eq!(att["description"], "generated");
    assert_eq!(att["size"], size);
    assert_eq!(att["sha256"], sent_sha.as_str());
    let link = att["title_link"].as_str().unwrap().to_owned();
    assert_eq!(link, format!("/file-upload/{}/big%20data.bin", att["fileId"].as_str().unwrap()));

    // The member reads back the same bytes; headers say what they are.
    let started = std::time::Instant::now();
    let (status, hs, len, sha) = download(&n, &link, &auth_headers(bob)).await;
    let down_secs = started.elapsed().as_secs_f64();
    assert_eq!((status, len), (200, size));
    assert_eq!(sha, sent_sha, "byte-identical");
    let header = |name: &str| hs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(header("content-length"), Some(size.to_string()));
    assert_eq!(header("content-type").as_deref(), Some("application/octet-stream"));
    assert_eq!(header("content-disposition").as_deref(), Some("attachment; filename=\"big data.bin\""));
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    println!(
        "FIGURE upload {} MiB in {up_secs:.1} s, download in {down_secs:.1} s (debug build)",
        size / (1024 * 1024)
    );

    // Rocket.Chat's cookie and query credentials work for browsers.
    let cookie = format!("Cookie: rc_uid={}; rc_token={}\r\n", bob.uid, bob.token);
    assert_eq!(download(&n, &link, &cookie).await.0, 200);
    let with_query = format!("{link}?rc_uid={}&rc_token={}", bob.uid, bob.token);
    assert_eq!(download(&n, &with_query, "").await.0, 200);

    // A non-member gets the answer for a file that does not exist; no credentials: 401.
    let (refused, _, _, _) = download(&n, &link, &auth_headers(carol)).await;
    let (missing, _, _, _) = download(&n, "/file-upload/NoSuchFile0000000/x", &auth_headers(carol)).await;
    assert_eq!((refused, missing), (404, 404));
    assert_eq!(download(&n, &link, "").await.0, 401);

    // The non-member cannot upload there either, and nothing of that attempt is stored.
    let before = files_under(&n.uploads()).len();
    let (r, _) = upload(&n, carol, gid, "x.bin", "application/octet-stream", 10_000, 1).await;
    assert_eq!(r.status, 404);
    assert_eq!(files_under(&n.uploads()).len(), before);
}

#[tokio::test]
async fn an_upload_over_the_size_limit_is_refused_mid_stream_and_leaves_nothing() {
    let n = start().await;
    n.set("FileUpload_MaxFileSize", json!(1024 * 1024)).await;
    let alice = users(&n, &["alice"]).await.remove(0);
    let c = ok(post(&n, "/api/v1/channels.create", Some(&alice), json!({"name": "general"})).await).await;
    let rid = c["channel"]["id"].as_str().unwrap();

    // Declared length within the form allowance, file 20 KiB over the limit: refused mid-stream.
    let (r, _) = upload(&n, &alice, rid, "big.bin", "application/octet-stream", 1024 * 1024 + 20_000, 5).await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["errorType"], "error-too-long");
    assert_eq!(r.json()["limit"], 1024 * 1024);
    // Declared far over the limit: refused before any byte of the body is read.
    let (r, _) = upload(&n, &alice, rid, "huge.bin", "application/octet-stream", 50 * 1024 * 1024, 6).await;
    assert_eq!((r.status, r.json()["errorType"].clone()), (413, json!("error-too-large")));
    // A black-listed type (SVG, by default) is refused before its bytes are stored.
    let (r, _) = upload(&n, &alice, rid, "x.svg", "image/svg+xml", 1000, 7).await;
    assert_eq!((r.status, r.json()["errorType"].clone()), (415, json!("error-invalid-file-type")));

    assert!(files_under(&n.uploads()).is_empty(), "left behind: {:?}", files_under(&n.uploads()));
    let history = ok(get(&n, &format!("/api/v1/channels.history?roomId={rid}"), Some(&alice)).await).await;
    assert!(texts(&history).is_empty(), "no message posted: {history}");

    // Just under the limit is accepted and posted.
    let (r, sha) = upload(&n, &alice, rid, "ok.bin", "application/octet-stream", 1024 * 1024, 8).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["message"]["attachments"][0]["sha256"], sha.as_str());
    assert!(r.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    n.node.assert_still_serves().await;
}

#[tokio::test]
async fn a_client_that_waits_for_100_continue_gets_it_and_then_its_answer() {
    let n = start().await;
    let alice = users(&n, &["alice"]).await.remove(0);
    let body = json!({"name": "patient"}).to_string();
    let head = format!(
        "POST /api/v1/channels.create HTTP/1.1\r\nX-Auth-Token: {}\r\nX-User-Id: {}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        alice.token,
        alice.uid,
        body.len()
    );
    let mut s = TcpStream::connect(n.addr()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let (status, _, rest) = read_head(&mut s).await;
    assert_eq!((status, rest.len()), (100, 0), "the body is asked for before it is sent");
    s.write_all(body.as_bytes()).await.unwrap();
    let (status, _, mut answer) = read_head(&mut s).await;
    tokio::time::timeout(WAIT, s.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["channel"]["name"], "patient");
}

#[tokio::test]
async fn an_incoming_webhook_created_over_rest_posts_through_the_same_router() {
    let n = start().await;
    let root = login(&n, "root").await;
    let alice = users(&n, &["alice"]).await.remove(0);
    let bot = json!({"username": "ci-bot", "password": PW, "roles": ["bot"]});
    ok(post(&n, "/api/v1/users.create", Some(&root), bot).await).await;
    let c = json!({"name": "builds", "members": ["alice", "ci-bot"]});
    let c = ok(post(&n, "/api/v1/channels.create", Some(&root), c).await).await;
    let rid = c["channel"]["id"].as_str().unwrap();
    let hook = json!({"type": "webhook-incoming", "name": "ci", "channel": "#builds", "username": "ci-bot"});
    let hook = ok(post(&n, "/api/v1/integrations.create", Some(&root), hook).await).await;
    let url = hook["url"].as_str().unwrap().to_owned();

    let r = post(&n, &url, None, json!({"text": "build 42 passed"})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let wrong = format!("{}x", url);
    assert_eq!(post(&n, &wrong, None, json!({"text": "forged"})).await.status, 404);
    let history = ok(get(&n, &format!("/api/v1/channels.history?roomId={rid}"), Some(&alice)).await).await;
    assert_eq!(texts(&history), ["build 42 passed"]);
}

#[tokio::test]
async fn a_personal_access_token_authenticates_like_a_session_and_only_an_owner_deletes_a_group() {
    let n = start().await;
    let us = users(&n, &["alice", "bob"]).await;
    let (alice, bob) = (&us[0], &us[1]);
    let pat =
        ok(post(&n, "/api/v1/users.generatePersonalAccessToken", Some(alice), json!({"tokenName": "ci"})).await).await;
    let pat = Auth { uid: alice.uid.clone(), token: pat["token"].as_str().unwrap().to_owned() };
    assert_eq!(ok(get(&n, "/api/v1/me", Some(&pat)).await).await["username"], "alice");

    let g = ok(post(&n, "/api/v1/groups.create", Some(&pat), json!({"name": "team", "members": ["bob"]})).await).await;
    let gid = g["group"]["id"].as_str().unwrap();
    let r = post(&n, "/api/v1/groups.delete", Some(bob), json!({"roomId": gid})).await;
    assert_eq!((r.status, r.json()["errorType"].clone()), (403, json!("error-not-allowed")), "a member, not an owner");
    ok(post(&n, "/api/v1/groups.delete", Some(&pat), json!({"roomId": gid})).await).await;
    let r = get(&n, &format!("/api/v1/groups.info?roomId={gid}"), Some(alice)).await;
    assert_eq!(r.status, 404, "deleted");

    ok(post(&n, "/api/v1/users.removePersonalAccessToken", Some(alice), json!({"tokenName": "ci"})).await).await;
    assert_eq!(get(&n, "/api/v1/me", Some(&pat)).await.status, 401, "a removed token is dead");
}
