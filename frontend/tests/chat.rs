//! The chat over sockets: one in-process node with a temporary SQLite store, raw clients.

#![allow(clippy::unwrap_used)]

mod support;

use frontend::chat::SESSION_REVOKED;
use protocol::Codec;
use serde_json::{json, Value};
use support::chat::{create_accounts, expect_removed, start, ChatNode, PW};
use support::{call, call_err, Client};

struct User {
    c: Client,
    id: String,
    /// The session's bearer secret (for `login {resume}`).
    secret: String,
    /// The signed socket token `login` set.
    jwt: String,
}

async fn login(n: &ChatNode, username: &str) -> User {
    let mut c = Client::handshake(n.node.json, Codec::Json).await;
    let cid_reply = c.invoke("login", json!({"user": username, "password": PW})).await;
    assert!(cid_reply.get("error").is_none(), "login failed: {cid_reply}");
    let data = cid_reply["data"].clone();
    // `#setAuthToken` is sent before the reply; `invoke` skipped it, so ask who we are instead.
    let me = call(&mut c, "me", json!({})).await;
    assert_eq!(me["username"], username);
    let jwt = n.node.node.auth.sign(
        serde_json::from_value(json!({"uid": data["id"], "sid": data["sessionId"], "username": username})).unwrap(),
        frontend::auth::now_secs(),
    );
    User {
        c,
        id: data["id"].as_str().unwrap().to_owned(),
        secret: data["token"].as_str().unwrap().to_owned(),
        jwt: jwt.unwrap().signed,
    }
}

/// Admin creates the accounts, then each logs in on its own socket.
async fn users(n: &ChatNode, names: &[&str]) -> Vec<User> {
    let mut admin = login(n, "root").await;
    create_accounts(&mut admin.c, names).await;
    let mut out = Vec::new();
    for name in names {
        out.push(login(n, name).await);
    }
    out
}

async fn next_publish(c: &mut Client, channel: &str) -> Value {
    let p = c.next_matching(|p| p["event"] == "#publish" && p["data"]["channel"] == channel).await;
    p["data"]["data"].clone()
}

#[tokio::test]
async fn login_create_rooms_post_and_read_history() {
    let n = start().await;
    let mut bad = Client::handshake(n.node.json, Codec::Json).await;
    let e = call_err(&mut bad, "login", json!({"user": "root", "password": "wrong password"})).await;
    assert_eq!(e["error"], "error-unauthorized");
    let e = call_err(&mut bad, "createChannel", json!({"name": "x"})).await;
    assert_eq!(e["error"], "error-unauthorized", "chat methods need a login");

    let mut us = users(&n, &["alice", "bob"]).await;
    let (alice, rest) = us.split_first_mut().unwrap();
    let bob = &mut rest[0];
    let general = call(&mut alice.c, "createChannel", json!({"name": "general"})).await;
    let general = general["room"]["id"].as_str().unwrap().to_owned();
    let secret = call(&mut alice.c, "createPrivateGroup", json!({"name": "secret", "members": ["bob"]})).await;
    assert_eq!(secret["room"]["t"], "p");
    let secret = secret["room"]["id"].as_str().unwrap().to_owned();

    alice.c.subscribe(&format!("room/{general}")).await;
    call(&mut bob.c, "joinRoom", json!({"rid": general})).await;
    bob.c.subscribe(&format!("room/{secret}")).await;
    let sent = call(&mut bob.c, "sendMessage", json!({"rid": general, "msg": "hello everyone"})).await;
    assert_eq!(sent["created"], true);
    let event = alice
        .c
        .next_matching(|p| {
            p["event"] == "#publish"
                && p["data"]["data"]["type"] == "message.new"
                && p["data"]["data"]["message"]["msg"] == "hello everyone"
        })
        .await;
    assert_eq!(event["data"]["data"]["seq"], sent["message"]["seq"]);

    call(&mut alice.c, "sendMessage", json!({"rid": secret, "msg": "just us"})).await;
    let ev = next_publish(&mut bob.c, &format!("room/{secret}")).await;
    assert_eq!(ev["message"]["msg"], "just us");

    let history = call(&mut alice.c, "loadHistory", json!({"rid": general})).await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["t"].is_null())
        .map(|m| m["msg"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello everyone"]);
    let seqs: Vec<u64> = history["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let older = call(&mut alice.c, "loadHistory", json!({"rid": general, "before": seqs[seqs.len() - 1]})).await;
    assert_eq!(older["messages"].as_array().unwrap().len(), seqs.len() - 1);

    let rooms = call(&mut bob.c, "rooms.get", json!({})).await;
    assert_eq!(rooms["update"].as_array().unwrap().len(), 2);
    let edited = call(&mut bob.c, "updateMessage", json!({"msgId": sent["message"]["id"], "msg": "hello all"})).await;
    assert_eq!(edited["message"]["msg"], "hello all");
    let ev = alice.c.next_matching(|p| p["data"]["data"]["type"] == "message.updated").await;
    assert_eq!(ev["data"]["data"]["msg"], "hello all");
    call(&mut bob.c, "deleteMessage", json!({"msgId": sent["message"]["id"]})).await;
    let ev = alice.c.next_matching(|p| p["data"]["data"]["type"] == "message.deleted").await;
    assert_eq!(ev["data"]["data"]["id"], sent["message"]["id"]);
    // A plain member cannot edit someone else's message (the room's owner could).
    let theirs = call(&mut alice.c, "loadHistory", json!({"rid": secret})).await;
    let theirs = theirs["messages"].as_array().unwrap().iter().find(|m| m["msg"] == "just us").unwrap()["id"].clone();
    let e = call_err(&mut bob.c, "updateMessage", json!({"msgId": theirs, "msg": "hijack"})).await;
    assert_eq!(e["error"], "error-not-allowed");
}

#[tokio::test]
async fn a_non_member_cannot_subscribe_to_a_private_room_and_cannot_tell_it_exists() {
    let n = start().await;
    let mut us = users(&n, &["alice", "carol"]).await;
    let (alice, rest) = us.split_first_mut().unwrap();
    let carol = &mut rest[0];
    let group = call(&mut alice.c, "createPrivateGroup", json!({"name": "hidden"})).await;
    let gid = group["room"]["id"].as_str().unwrap().to_owned();

    let refused = carol.c.invoke("#subscribe", json!({"channel": format!("room/{gid}")})).await;
    let missing = carol.c.invoke("#subscribe", json!({"channel": "room/NoSuchRoom0000000"})).await;
    assert_eq!(refused["error"], missing["error"], "same error as a room that does not exist");
    assert_eq!(refused["error"]["error"], "error-not-found");
    for (event, data) in [
        ("loadHistory", json!({"rid": gid})),
        ("sendMessage", json!({"rid": gid, "msg": "let me in"})),
        ("getRoomInfo", json!({"rid": gid})),
        ("joinRoom", json!({"rid": gid})),
    ] {
        let a = call_err(&mut carol.c, event, data.clone()).await;
        let mut other = data;
        other["rid"] = json!("NoSuchRoom0000000");
        let b = call_err(&mut carol.c, event, other).await;
        assert_eq!(a, b, "{event}");
    }

    // Other users' channels, the control channel, and client publishes into chat channels.
    let e = carol.c.invoke("#subscribe", json!({"channel": format!("user/{}", alice.id)})).await;
    assert!(e.get("error").is_some(), "{e}");
    carol.c.subscribe(&format!("user/{}", carol.id)).await;
    let e = carol.c.invoke("#subscribe", json!({"channel": "sys/internal"})).await;
    assert!(e.get("error").is_some(), "{e}");
    alice.c.subscribe(&format!("room/{gid}")).await;
    let e = alice.c.invoke("#publish", json!({"channel": format!("room/{gid}"), "data": "forged"})).await;
    assert_eq!(e["error"]["error"], "error-not-allowed");
    let e = carol.c.invoke("#publish", json!({"channel": "sys/internal", "data": {"type": "revoke"}})).await;
    assert!(e.get("error").is_some(), "{e}");
    // Unauthenticated sockets get the same answer as a non-member.
    let mut anon = Client::handshake(n.node.json, Codec::Json).await;
    let e = anon.invoke("#subscribe", json!({"channel": format!("room/{gid}")})).await;
    assert_eq!(e["error"], missing["error"]);
    // Other channels are still the inner access control's business.
    anon.subscribe("news").await;
}

#[tokio::test]
async fn kick_cuts_the_members_live_subscription() {
    let n = start().await;
    let mut us = users(&n, &["alice", "bob"]).await;
    let (alice, rest) = us.split_first_mut().unwrap();
    let bob = &mut rest[0];
    let group = call(&mut alice.c, "createPrivateGroup", json!({"name": "team", "members": ["bob"]})).await;
    let gid = group["room"]["id"].as_str().unwrap().to_owned();
    let channel = format!("room/{gid}");
    bob.c.subscribe(&channel).await;
    bob.c.subscribe(&format!("user/{}", bob.id)).await;
    bob.c.subscribe("marker").await;

    let e = call_err(&mut bob.c, "removeUserFromRoom", json!({"rid": gid, "username": "alice"})).await;
    assert_eq!(e["error"], "error-not-allowed");
    call(&mut alice.c, "removeUserFromRoom", json!({"rid": gid, "username": "bob"})).await;
    expect_removed(&mut bob.c, &channel, &gid).await;

    // Nothing more from the room reaches bob; the marker published after proves it.
    call(&mut alice.c, "sendMessage", json!({"rid": gid, "msg": "after the kick"})).await;
    alice.c.invoke("#publish", json!({"channel": "marker", "data": "end"})).await;
    let next = bob.c.next_matching(|p| p["event"] == "#publish").await;
    assert_eq!(next["data"]["channel"], "marker", "got {next}");
    // And he cannot come back.
    let e = bob.c.invoke("#subscribe", json!({"channel": channel})).await;
    assert_eq!(e["error"]["error"], "error-not-found");
}

#[tokio::test]
async fn logout_closes_the_sessions_sockets_and_revokes_the_token() {
    let n = start().await;
    let mut us = users(&n, &["alice"]).await;
    let alice = &mut us[0];
    // A second socket on the same session (reconnected with the socket token), and another session.
    let mut same = Client::connect(n.node.json, Codec::Json).await;
    let hs = same.invoke("#handshake", json!({"authToken": alice.jwt})).await;
    assert_eq!(hs["data"]["isAuthenticated"], true, "{hs}");
    same.subscribe(&format!("user/{}", alice.id)).await;
    let mut other = login(&n, "alice").await;

    call(&mut alice.c, "logout", json!({})).await;
    assert_eq!(alice.c.closed_with().await, SESSION_REVOKED.code);
    assert_eq!(same.closed_with().await, SESSION_REVOKED.code);
    // The other session lives on; the revoked one cannot be resumed.
    call(&mut other.c, "me", json!({})).await;
    let e = call_err(&mut other.c, "login", json!({"resume": alice.secret})).await;
    assert_eq!(e["error"], "error-unauthorized");
    let resumed = call(&mut other.c, "login", json!({"resume": other.secret})).await;
    assert_eq!(resumed["id"], json!(alice.id));
    assert!(resumed["token"].is_null(), "resume does not hand out the secret again");
    // A socket token of the revoked session is useless even before it expires.
    let mut stale = Client::connect(n.node.json, Codec::Json).await;
    stale.invoke("#handshake", json!({"authToken": alice.jwt})).await;
    let e = call_err(&mut stale, "me", json!({})).await;
    assert_eq!(e["error"], "error-unauthorized");
}

#[tokio::test]
async fn a_retried_send_with_the_same_client_message_id_is_stored_once() {
    let n = start().await;
    let mut us = users(&n, &["alice"]).await;
    let alice = &mut us[0];
    let room = call(&mut alice.c, "createChannel", json!({"name": "retry"})).await;
    let rid = room["room"]["id"].as_str().unwrap().to_owned();
    let msg = json!({"rid": rid, "msg": "only once", "clientMsgId": "c-42"});
    let first = call(&mut alice.c, "sendMessage", msg.clone()).await;
    let second = call(&mut alice.c, "sendMessage", msg).await;
    assert_eq!((first["created"].clone(), second["created"].clone()), (json!(true), json!(false)));
    assert_eq!(first["message"]["id"], second["message"]["id"]);
    assert_eq!(first["message"]["seq"], second["message"]["seq"]);
    let history = call(&mut alice.c, "loadHistory", json!({"rid": rid})).await;
    let n_once = history["messages"].as_array().unwrap().iter().filter(|m| m["msg"] == "only once").count();
    assert_eq!(n_once, 1);
    let e = call_err(&mut alice.c, "sendMessage", json!({"rid": rid, "msg": "x".repeat(5001)})).await;
    assert_eq!(e["error"], "error-too-long");
}

#[tokio::test]
async fn unread_counts_go_up_and_back_to_zero_after_read() {
    let n = start().await;
    let mut us = users(&n, &["alice", "bob"]).await;
    let (alice, rest) = us.split_first_mut().unwrap();
    let bob = &mut rest[0];
    let room = call(&mut alice.c, "createChannel", json!({"name": "busy", "members": ["bob"]})).await;
    let rid = room["room"]["id"].as_str().unwrap().to_owned();
    let unread = |subs: &Value| {
        let s = subs["update"].as_array().unwrap().iter().find(|s| s["rid"] == json!(rid)).unwrap().clone();
        (s["unread"].as_u64().unwrap(), s["userMentions"].as_u64().unwrap(), s["alert"].as_bool().unwrap())
    };
    assert_eq!(unread(&call(&mut bob.c, "subscriptions.get", json!({})).await), (0, 0, false));
    for text in ["one", "two @bob", "three"] {
        call(&mut alice.c, "sendMessage", json!({"rid": rid, "msg": text})).await;
    }
    assert_eq!(unread(&call(&mut bob.c, "subscriptions.get", json!({})).await), (3, 1, true));
    assert_eq!(unread(&call(&mut alice.c, "subscriptions.get", json!({})).await), (0, 0, false), "own messages");
    let read = call(&mut bob.c, "readMessages", json!({"rid": rid})).await;
    assert_eq!(read["subscription"]["unread"], 0);
    assert_eq!(unread(&call(&mut bob.c, "subscriptions.get", json!({})).await), (0, 0, false));
}
