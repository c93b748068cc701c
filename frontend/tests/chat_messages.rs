//! Message features and abuse limits over sockets: reactions, pins, threads, search, mention
//! notifications with per-room preferences, message and login rate limits, size limits. One in-process
//! node with a temporary SQLite store, raw clients.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Instant;

use protocol::Codec;
use serde_json::{json, Value};
use support::chat::{admin_and_users, start, ChatNode, User, PW};
use support::{call, call_err, Client};

/// The admin (first) and the named users, each logged in on its own socket.
async fn users(n: &ChatNode, names: &[&str]) -> Vec<User> {
    let (admin, rest) = admin_and_users(n, names).await;
    std::iter::once(admin).chain(rest).collect()
}

fn id(v: &Value) -> String {
    v.as_str().unwrap().to_owned()
}

async fn room(u: &mut User, method: &str, name: &str, members: &[&str]) -> String {
    id(&call(&mut u.c, method, json!({"name": name, "members": members})).await["room"]["id"])
}

async fn send(u: &mut User, rid: &str, msg: &str) -> Value {
    call(&mut u.c, "sendMessage", json!({"rid": rid, "msg": msg})).await["message"].clone()
}

fn texts(messages: &Value) -> Vec<String> {
    messages.as_array().unwrap().iter().map(|m| m["msg"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_reaction_toggles_and_another_member_sees_it_live() {
    let n = start().await;
    let mut us = users(&n, &["alice", "bob", "carol"]).await;
    let [_, alice, bob, carol] = &mut us[..] else { unreachable!() };
    let rid = room(alice, "createPrivateGroup", "team", &["bob"]).await;
    let m = send(alice, &rid, "ship it?").await;
    bob.c.subscribe(&format!("room/{rid}")).await;

    let r = call(&mut alice.c, "setReaction", json!({"messageId": m["id"], "reaction": ":+1:"})).await;
    assert_eq!(r["message"]["reactions"][":+1:"], json!([alice.id]));
    let ev = bob.c.next_matching(|p| p["data"]["data"]["type"] == "message.updated").await;
    assert_eq!(ev["data"]["channel"], format!("room/{rid}"));
    assert_eq!(ev["data"]["data"]["id"], m["id"]);
    assert_eq!(ev["data"]["data"]["reactions"][":+1:"], json!([alice.id]));

    // Bob adds his; the same call again takes it back off.
    call(&mut bob.c, "setReaction", json!({"msgId": m["id"], "emoji": ":+1:"})).await;
    let off = call(&mut bob.c, "setReaction", json!({"msgId": m["id"], "emoji": ":+1:"})).await;
    assert_eq!(off["message"]["reactions"][":+1:"], json!([alice.id]));
    let ev = bob
        .c
        .next_matching(|p| {
            p["data"]["data"]["type"] == "message.updated"
                && p["data"]["data"]["reactions"][":+1:"] == json!([alice.id])
        })
        .await;
    assert_eq!(ev["data"]["data"]["seq"], m["seq"]);
    // shouldReact = false on a reaction that is not there changes nothing.
    let same = call(&mut bob.c, "setReaction", json!({"msgId": m["id"], "emoji": ":+1:", "shouldReact": false})).await;
    assert_eq!(same["message"]["reactions"], off["message"]["reactions"]);
    let history = call(&mut bob.c, "loadHistory", json!({"rid": rid})).await;
    let stored = history["messages"].as_array().unwrap().iter().find(|x| x["id"] == m["id"]).unwrap().clone();
    assert_eq!(stored["reactions"][":+1:"], json!([alice.id]), "stored, not only published");

    let e = call_err(&mut bob.c, "setReaction", json!({"msgId": m["id"], "emoji": "bad emoji"})).await;
    assert_eq!(e["error"], "error-invalid-param");
    // A non-member cannot react, and cannot tell the message exists.
    let e = call_err(&mut carol.c, "setReaction", json!({"msgId": m["id"], "emoji": ":+1:"})).await;
    let unknown = call_err(&mut carol.c, "setReaction", json!({"msgId": "NoSuchMessage00000", "emoji": ":+1:"})).await;
    assert_eq!(e, unknown);
    assert_eq!(e["error"], "error-not-found");
}

#[tokio::test]
async fn pinning_needs_pin_message_and_the_pinned_list_shows_it() {
    let n = start().await;
    let mut us = users(&n, &["alice", "bob"]).await;
    let [_, alice, bob] = &mut us[..] else { unreachable!() };
    let rid = room(alice, "createChannel", "pins", &["bob"]).await;
    let m = send(bob, &rid, "the release checklist").await;
    bob.c.subscribe(&format!("room/{rid}")).await;

    let e = call_err(&mut bob.c, "pinMessage", json!({"messageId": m["id"]})).await;
    assert_eq!(e["error"], "error-not-allowed", "a plain user may not pin");
    let pinned = call(&mut bob.c, "getPinnedMessages", json!({"rid": rid})).await;
    assert!(pinned["messages"].as_array().unwrap().is_empty());

    let r = call(&mut alice.c, "pinMessage", json!({"message": {"_id": m["id"]}})).await;
    assert_eq!(r["message"]["pinned"], true);
    assert_eq!(r["message"]["pinnedBy"], json!(alice.id));
    let ev = bob.c.next_matching(|p| p["data"]["data"]["type"] == "message.updated").await;
    assert_eq!(ev["data"]["data"]["pinned"], true);
    let note = bob.c.next_matching(|p| p["data"]["data"]["type"] == "message.new").await;
    assert_eq!(note["data"]["data"]["message"]["t"], "message_pinned");
    assert_eq!(note["data"]["data"]["message"]["attachments"][0]["messageId"], m["id"]);

    let pinned = call(&mut bob.c, "getPinnedMessages", json!({"rid": rid})).await;
    assert_eq!(texts(&pinned["messages"]), ["the release checklist"]);
    call(&mut alice.c, "unpinMessage", json!({"messageId": m["id"]})).await;
    let pinned = call(&mut bob.c, "getPinnedMessages", json!({"rid": rid})).await;
    assert!(pinned["messages"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn thread_replies_are_listed_for_readers_only() {
    let n = start().await;
    let mut us = users(&n, &["alice", "bob", "carol"]).await;
    let [_, alice, bob, carol] = &mut us[..] else { unreachable!() };
    let rid = room(alice, "createPrivateGroup", "threads", &["bob"]).await;
    let root = send(alice, &rid, "what do we name it?").await;
    alice.c.subscribe(&format!("user/{}", alice.id)).await;
    for text in ["sc-cluster", "fabric"] {
        call(&mut bob.c, "sendMessage", json!({"rid": rid, "msg": text, "tmid": root["id"]})).await;
    }
    // The thread's author hears of each reply.
    for text in ["sc-cluster", "fabric"] {
        let note = alice.c.next_matching(|p| p["data"]["data"]["type"] == "notification").await;
        assert_eq!(
            (note["data"]["data"]["kind"].clone(), note["data"]["data"]["text"].clone()),
            (json!("thread"), json!(text))
        );
    }
    send(alice, &rid, "unrelated").await;

    let thread = call(&mut alice.c, "getThreadMessages", json!({"tmid": root["id"]})).await;
    assert_eq!(texts(&thread["messages"]), ["sc-cluster", "fabric"]);
    let first_seq = thread["messages"][0]["seq"].as_u64().unwrap();
    let rest = call(&mut alice.c, "getThreadMessages", json!({"tmid": root["id"], "afterSeq": first_seq})).await;
    assert_eq!(texts(&rest["messages"]), ["fabric"]);
    let threads = call(&mut bob.c, "getThreadsList", json!({"rid": rid})).await;
    assert_eq!(texts(&threads["threads"]), ["what do we name it?"]);
    assert_eq!(threads["threads"][0]["tcount"], 2);
    let e = call_err(&mut carol.c, "getThreadsList", json!({"rid": rid})).await;
    assert_eq!(e["error"], "error-not-found");
    // The replies are off the main timeline.
    let history = call(&mut alice.c, "loadHistory", json!({"rid": rid})).await;
    assert!(!texts(&history["messages"]).contains(&"fabric".to_owned()));

    let e = call_err(&mut carol.c, "getThreadMessages", json!({"tmid": root["id"]})).await;
    let unknown = call_err(&mut carol.c, "getThreadMessages", json!({"tmid": "NoSuchMessage00000"})).await;
    assert_eq!(e, unknown, "a non-member learns nothing about a private thread");
}

#[tokio::test]
async fn search_finds_words_only_in_rooms_the_caller_may_read() {
    let n = start().await;
    let mut us = users(&n, &["alice", "bob", "carol"]).await;
    let [_, alice, bob, carol] = &mut us[..] else { unreachable!() };
    let public = room(alice, "createChannel", "lobby", &[]).await;
    let shared = room(alice, "createPrivateGroup", "shared", &["bob"]).await;
    let secret = room(carol, "createPrivateGroup", "secret", &[]).await;
    send(alice, &public, "the zebra report is public").await;
    send(alice, &shared, "the zebra budget is shared").await;
    send(carol, &secret, "the zebra salary is secret").await;

    // A public channel bob is not in, previewed by naming it.
    let found = call(&mut bob.c, "messageSearch", json!({"text": "zebra", "rid": public})).await;
    assert_eq!(texts(&found["messages"]), ["the zebra report is public"]);
    // Everything bob may read: the group he is in; never carol's group.
    let found = call(&mut bob.c, "messageSearch", json!({"text": "zebra"})).await;
    assert_eq!(texts(&found["messages"]), ["the zebra budget is shared"]);
    let found = call(&mut bob.c, "messageSearch", json!({"text": "salary"})).await;
    assert!(found["messages"].as_array().unwrap().is_empty());
    // Naming carol's group is answered like a room that does not exist.
    let e = call_err(&mut bob.c, "messageSearch", json!({"text": "zebra", "rid": secret})).await;
    let unknown = call_err(&mut bob.c, "messageSearch", json!({"text": "zebra", "rid": "NoSuchRoom00000000"})).await;
    assert_eq!(e, unknown);
    // Carol finds her own; search operators are plain words.
    let found = call(&mut carol.c, "messageSearch", json!({"text": "zebra OR report"})).await;
    assert!(found["messages"].as_array().unwrap().is_empty(), "OR is a required word, not an operator");
    let found = call(&mut carol.c, "messageSearch", json!({"text": "salary zebra"})).await;
    assert_eq!(texts(&found["messages"]), ["the zebra salary is secret"]);
    // 30 searches a minute: carol has used 2; the 29th after them is refused.
    for _ in 0..28 {
        call(&mut carol.c, "messageSearch", json!({"text": "zebra"})).await;
    }
    let e = call_err(&mut carol.c, "messageSearch", json!({"text": "zebra"})).await;
    assert_eq!(e["error"], "error-too-many-requests");
    assert!(e["retryAfterMs"].as_u64().unwrap() <= 2_000, "one search every 2 s: {e}");
}

#[tokio::test]
async fn sending_faster_than_the_rate_limit_is_refused_and_nothing_is_stored() {
    let n = start().await;
    let svc = n.chat.service();
    svc.set_setting_as_operator("Message_RateLimit_PerSecond", json!(5)).await.unwrap();
    svc.set_setting_as_operator("Message_RateLimit_Burst", json!(5)).await.unwrap();
    let mut us = users(&n, &["alice"]).await;
    let [admin, alice] = &mut us[..] else { unreachable!() };
    let rid = room(alice, "createChannel", "flood", &[]).await;

    let started = Instant::now();
    let mut refused = None;
    for i in 0..20 {
        let r = alice.c.invoke("sendMessage", json!({"rid": rid, "msg": format!("flood {i}")})).await;
        if r.get("error").is_some() {
            refused = Some((i, r["error"].clone()));
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (i, e) = refused.expect("the limit refuses a flood");
    assert_eq!(e["error"], "error-too-many-requests");
    let retry = e["retryAfterMs"].as_u64().unwrap();
    assert!((1..=200).contains(&retry), "one message every 200 ms: {retry}");
    // The first 5 pass; the refusal comes no later than the tokens earned meanwhile allow.
    assert!(i >= 5, "refused message {i}");
    assert!(f64::from(i) <= 5.0 + 5.0 * elapsed + 1.0, "refused only at message {i} after {elapsed:.2}s");
    let history = call(&mut alice.c, "loadHistory", json!({"rid": rid})).await;
    let stored = texts(&history["messages"]);
    assert!(!stored.contains(&format!("flood {i}")), "the refused message was not stored");
    assert_eq!(stored.iter().filter(|t| t.starts_with("flood")).count(), i as usize);

    // An admin holds send-many-messages and is not limited.
    call(&mut admin.c, "joinRoom", json!({"rid": rid})).await;
    for k in 0..12 {
        send(admin, &rid, &format!("announcement {k}")).await;
    }
}

#[tokio::test]
async fn a_message_over_5000_characters_or_an_oversized_request_is_refused() {
    let n = start().await;
    let mut us = users(&n, &["alice"]).await;
    let alice = &mut us[1];
    let rid = room(alice, "createChannel", "long", &[]).await;
    let e = call_err(&mut alice.c, "sendMessage", json!({"rid": rid, "msg": "ü".repeat(5001)})).await;
    assert_eq!((e["error"].clone(), e["limit"].clone()), (json!("error-too-long"), json!(5000)));
    send(alice, &rid, &"ü".repeat(5000)).await;
    let e = call_err(&mut alice.c, "sendMessage", json!({"rid": rid, "msg": "x", "pad": "y".repeat(70_000)})).await;
    assert_eq!((e["error"].clone(), e["field"].clone()), (json!("error-too-long"), json!("data")));
    let history = call(&mut alice.c, "loadHistory", json!({"rid": rid})).await;
    let lens: Vec<usize> = texts(&history["messages"]).iter().map(|t| t.chars().count()).filter(|&l| l > 1).collect();
    assert_eq!(lens, [5000], "only the message within the limit was stored");
}

#[tokio::test]
async fn repeated_failed_logins_are_blocked_even_with_the_right_password() {
    let n = start().await;
    let svc = n.chat.service();
    svc.set_setting_as_operator("Block_Multiple_Failed_Logins_Attempts_Until_Block_by_User", json!(3)).await.unwrap();
    let _us = users(&n, &["alice"]).await;
    let mut c = Client::handshake(n.node.json, Codec::Json).await;
    for _ in 0..3 {
        let e = call_err(&mut c, "login", json!({"user": "alice", "password": "wrong password"})).await;
        assert_eq!(e["error"], "error-unauthorized");
    }
    let e = call_err(&mut c, "login", json!({"user": "alice", "password": PW})).await;
    assert_eq!(e["error"], "error-too-many-requests");
    assert!(e["retryAfterMs"].as_u64().unwrap() > 1_000, "{e}");
    // Another account from the same address is not affected (the per-address limit is off by default).
    call(&mut c, "login", json!({"user": "root", "password": PW})).await;

    // With a per-address limit, a spray over many usernames blocks the address for every account.
    svc.set_setting_as_operator("Block_Multiple_Failed_Logins_Attempts_Until_Block_By_Ip", json!(4)).await.unwrap();
    for i in 0..4 {
        let e = call_err(&mut c, "login", json!({"user": format!("guess{i}"), "password": "wrong password"})).await;
        assert_eq!(e["error"], "error-unauthorized");
    }
    let e = call_err(&mut c, "login", json!({"user": "root", "password": PW})).await;
    assert_eq!(e["error"], "error-too-many-requests");
}

/// Publishes the next marker on `marker`, after everything the previous calls published.
async fn mark(u: &mut User, step: &mut u32) -> String {
    *step += 1;
    let m = format!("step {step}");
    u.c.invoke("#publish", json!({"channel": "marker", "data": m})).await;
    m
}

/// Waits for the marker published after an action; returns every `notification` on `user/<uid>` before it.
async fn notifications_until_marker(u: &mut User, marker: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let p = u.c.next_matching(|p| p["event"] == "#publish").await;
        if p["data"]["channel"] == "marker" && p["data"]["data"] == marker {
            return seen;
        }
        if p["data"]["channel"] == format!("user/{}", u.id) && p["data"]["data"]["type"] == "notification" {
            seen.push(p["data"]["data"].clone());
        }
    }
}

#[tokio::test]
async fn a_mention_notifies_the_member_unless_their_room_preferences_say_otherwise() {
    let n = start().await;
    let mut us = users(&n, &["alice", "bob", "carol"]).await;
    let [_, alice, bob, carol] = &mut us[..] else { unreachable!() };
    let rid = room(alice, "createChannel", "dev", &["bob", "carol"]).await;
    for u in [&mut *bob, &mut *carol] {
        let own = format!("user/{}", u.id);
        u.c.subscribe(&own).await;
        u.c.subscribe("marker").await;
    }
    let mut step = 0;

    let sent = send(alice, &rid, "@bob can you review?").await;
    let m = mark(alice, &mut step).await;
    let got = notifications_until_marker(bob, &m).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0]["kind"].clone(), got[0]["messageId"].clone()), (json!("mention"), sent["id"].clone()));
    assert_eq!(got[0]["sender"]["username"], "alice");
    assert_eq!(got[0]["text"], "@bob can you review?");
    assert!(notifications_until_marker(carol, &m).await.is_empty(), "carol was not mentioned");

    // Bob chooses "nothing" for this room (Rocket.Chat's field/value form); carol chooses "all".
    let saved = call(
        &mut bob.c,
        "saveNotificationSettings",
        json!({"roomId": rid, "field": "desktopNotifications", "value": "nothing"}),
    )
    .await;
    assert_eq!(saved["subscription"]["notify"], "nothing");
    call(&mut carol.c, "saveNotificationSettings", json!({"rid": rid, "desktopNotifications": "all"})).await;
    send(alice, &rid, "@bob ping again").await;
    send(alice, &rid, "a plain message").await;
    let m = mark(alice, &mut step).await;
    assert!(notifications_until_marker(bob, &m).await.is_empty(), "bob chose nothing");
    let got = notifications_until_marker(carol, &m).await;
    let kinds: Vec<&str> = got.iter().map(|g| g["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "message"], "carol hears every message");

    // Muting the room silences even mentions; unmuting brings mentions back.
    call(&mut carol.c, "saveNotificationSettings", json!({"rid": rid, "disableNotifications": true})).await;
    send(alice, &rid, "@carol muted?").await;
    let m = mark(alice, &mut step).await;
    assert!(notifications_until_marker(carol, &m).await.is_empty());
    call(&mut carol.c, "saveNotificationSettings", json!({"rid": rid, "field": "disableNotifications", "value": "0"}))
        .await;
    send(alice, &rid, "@carol back?").await;
    let m = mark(alice, &mut step).await;
    assert_eq!(notifications_until_marker(carol, &m).await.len(), 1);

    let e = call_err(&mut bob.c, "saveNotificationSettings", json!({"rid": rid, "desktopNotifications": "loud"})).await;
    assert_eq!(e["error"], "error-invalid-param");
    let subs = call(&mut bob.c, "subscriptions.get", json!({})).await;
    let mine = subs["update"].as_array().unwrap().iter().find(|s| s["rid"] == json!(rid)).unwrap().clone();
    assert_eq!(mine["notify"], "nothing", "the preference is stored");
}

#[tokio::test]
async fn a_hidden_direct_message_comes_back_when_someone_writes() {
    let n = start().await;
    let mut us = users(&n, &["alice", "bob"]).await;
    let [_, alice, bob] = &mut us[..] else { unreachable!() };
    let dm = call(&mut alice.c, "createDirectMessage", json!({"username": "bob"})).await;
    let rid = id(&dm["room"]["id"]);
    bob.c.subscribe(&format!("user/{}", bob.id)).await;

    let hidden = call(&mut bob.c, "hideRoom", json!({"rid": rid})).await;
    assert_eq!(hidden["subscription"]["open"], false);
    let subs = call(&mut bob.c, "subscriptions.get", json!({})).await;
    assert_eq!(subs["update"][0]["open"], false);

    send(alice, &rid, "are you there?").await;
    let shown = bob
        .c
        .next_matching(|p| {
            p["data"]["data"]["type"] == "subscription.changed" && p["data"]["data"]["rid"] == json!(rid)
        })
        .await;
    assert_eq!(shown["data"]["data"]["subscription"]["open"], true);
    let note = bob.c.next_matching(|p| p["data"]["data"]["type"] == "notification").await;
    assert_eq!(note["data"]["data"]["kind"], "dm");
    let subs = call(&mut bob.c, "subscriptions.get", json!({})).await;
    assert_eq!(subs["update"][0]["open"], true);

    call(&mut bob.c, "hideRoom", json!({"rid": rid})).await;
    let opened = call(&mut bob.c, "openRoom", json!({"rid": rid})).await;
    assert_eq!(opened["subscription"]["open"], true);
    let fav = call(&mut bob.c, "toggleFavorite", json!({"rid": rid, "favorite": true})).await;
    assert_eq!(fav["subscription"]["favorite"], true);
    // Not a member: the same answer as for a room that does not exist.
    let group = room(alice, "createPrivateGroup", "private", &[]).await;
    let e = call_err(&mut bob.c, "hideRoom", json!({"rid": group})).await;
    let unknown = call_err(&mut bob.c, "hideRoom", json!({"rid": "NoSuchRoom00000000"})).await;
    assert_eq!(e, unknown);
}
