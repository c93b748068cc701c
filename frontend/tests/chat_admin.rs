//! The administration methods over sockets (one in-process node, temporary SQLite store, raw
//! clients): revocations close the affected sockets, erasing a room cuts live subscriptions, a bot logs
//! in with a personal access token, and a representative part of the §3 matrix answered on the socket
//! surface (the whole matrix runs through the service in `chat/tests/permission_matrix.rs`).

#![allow(clippy::unwrap_used)]

mod support;

use frontend::chat::SESSION_REVOKED;
use serde_json::{json, Value};
use support::chat::{connect, expect_removed, login, start, ChatNode, User, PW};
use support::{call, call_err, Client};

const MISSING: &str = "NoSuchRoom0000000";

/// The admin's socket, after creating `accounts` (`(username, role)`).
async fn admin_with(n: &ChatNode, accounts: &[(&str, &str)]) -> User {
    let mut admin = login(n, "root").await;
    for (name, role) in accounts {
        call(&mut admin.c, "createUser", json!({"username": name, "password": PW, "roles": [role]})).await;
    }
    admin
}

fn id_of(v: &Value) -> String {
    v["room"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn deactivating_a_user_closes_their_open_socket_and_keeps_them_out() {
    let n = start().await;
    let mut admin = admin_with(&n, &[("alice", "user"), ("bob", "user")]).await;
    let mut alice = login(&n, "alice").await;
    alice.c.subscribe(&format!("user/{}", alice.id)).await;
    let mut bob = login(&n, "bob").await;

    let e = call_err(&mut bob.c, "setUserActiveStatus", json!({"userId": alice.id, "activeStatus": false})).await;
    assert_eq!(e["error"], "error-not-allowed");
    let e = call_err(&mut admin.c, "setUserActiveStatus", json!({"userId": alice.id})).await;
    assert_eq!(e["error"], "error-invalid-param");
    let out = call(&mut admin.c, "setUserActiveStatus", json!({"userId": alice.id, "activeStatus": false})).await;
    assert_eq!(out["user"]["active"], false);
    assert_eq!(alice.c.closed_with().await, SESSION_REVOKED.code);

    let mut again = connect(&n).await;
    let e = call_err(&mut again, "login", json!({"user": "alice", "password": PW})).await;
    assert_eq!(e["error"], "error-unauthorized");
    call(&mut bob.c, "me", json!({})).await;
    let users = call(&mut admin.c, "getUsers", json!({})).await;
    let listed = users["users"].as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap().clone();
    assert_eq!(listed["active"], false);
    assert!(listed.get("passwordHash").is_none() && !users.to_string().contains("argon2"));

    call(&mut admin.c, "setUserActiveStatus", json!({"userId": alice.id, "activeStatus": true})).await;
    login(&n, "alice").await;
}

#[tokio::test]
async fn admin_logout_closes_every_socket_of_that_user_only() {
    let n = start().await;
    let mut admin = admin_with(&n, &[("alice", "user"), ("bob", "user")]).await;
    let mut laptop = login(&n, "alice").await;
    let mut phone = login(&n, "alice").await;
    let mut bob = login(&n, "bob").await;
    let e = call_err(&mut bob.c, "logoutUser", json!({"userId": laptop.id})).await;
    assert_eq!(e["error"], "error-not-allowed");
    let out = call(&mut admin.c, "logoutUser", json!({"userId": laptop.id})).await;
    assert_eq!(out["revoked"], 2);
    assert_eq!(laptop.c.closed_with().await, SESSION_REVOKED.code);
    assert_eq!(phone.c.closed_with().await, SESSION_REVOKED.code);
    call(&mut bob.c, "me", json!({})).await;
    call(&mut admin.c, "me", json!({})).await;
}

#[tokio::test]
async fn erasing_a_room_cuts_every_members_live_subscription() {
    let n = start().await;
    let mut admin = admin_with(&n, &[("alice", "user"), ("bob", "user"), ("carol", "user")]).await;
    let mut alice = login(&n, "alice").await;
    let mut bob = login(&n, "bob").await;
    let mut carol = login(&n, "carol").await;
    let group = call(&mut alice.c, "createPrivateGroup", json!({"name": "team", "members": ["bob"]})).await;
    let gid = id_of(&group);
    let channel = format!("room/{gid}");
    bob.c.subscribe(&channel).await;
    bob.c.subscribe(&format!("user/{}", bob.id)).await;

    // A plain member may not delete the group; an outsider cannot tell it exists.
    let e = call_err(&mut bob.c, "eraseRoom", json!({"rid": gid})).await;
    assert_eq!(e["error"], "error-not-allowed");
    let hidden = call_err(&mut carol.c, "eraseRoom", json!({"rid": gid})).await;
    let missing = call_err(&mut carol.c, "eraseRoom", json!({"rid": MISSING})).await;
    assert_eq!(hidden, missing);

    call(&mut alice.c, "eraseRoom", json!({"rid": gid})).await;
    expect_removed(&mut bob.c, &channel, &gid).await;
    let e = bob.c.invoke("#subscribe", json!({"channel": channel})).await;
    assert_eq!(e["error"]["error"], "error-not-found");
    let e = call_err(&mut admin.c, "getRoomInfo", json!({"rid": gid})).await;
    assert_eq!(e["error"], "error-not-found");
}

#[tokio::test]
async fn a_bot_logs_in_with_a_personal_access_token_until_it_is_removed() {
    let n = start().await;
    let mut admin = admin_with(&n, &[("robo", "bot")]).await;
    let users = call(&mut admin.c, "getUsers", json!({})).await;
    let robo = users["users"].as_array().unwrap().iter().find(|u| u["username"] == "robo").unwrap()["id"].clone();
    let issued = call(&mut admin.c, "generatePersonalAccessToken", json!({"tokenName": "ci", "userId": robo})).await;
    let secret = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(issued["userId"], robo);

    let mut bot = connect(&n).await;
    let e = call_err(&mut bot, "generatePersonalAccessToken", json!({"tokenName": "mine"})).await;
    assert_eq!(e["error"], "error-unauthorized", "not logged in yet");
    let me = call(&mut bot, "login", json!({"resume": secret})).await;
    assert_eq!(me["id"], robo);
    assert!(me["token"].is_null() && me["tokenExpires"].is_null(), "{me}");
    bot.subscribe(&format!("user/{}", robo.as_str().unwrap())).await;
    let room = call(&mut bot, "createChannel", json!({"name": "builds"})).await;
    call(&mut bot, "sendMessage", json!({"rid": id_of(&room), "msg": "build green"})).await;
    let e = call_err(&mut bot, "generatePersonalAccessToken", json!({"tokenName": "mine"})).await;
    assert_eq!(e["error"], "error-not-allowed", "bots get their tokens from an admin");
    let listed = call(&mut bot, "getPersonalAccessTokens", json!({})).await;
    assert_eq!(listed["tokens"][0]["name"], "ci");
    assert!(!listed.to_string().contains(&secret));

    call(&mut admin.c, "removePersonalAccessToken", json!({"tokenName": "ci", "userId": robo})).await;
    assert_eq!(bot.closed_with().await, SESSION_REVOKED.code);
    let mut again = connect(&n).await;
    let e = call_err(&mut again, "login", json!({"resume": secret})).await;
    assert_eq!(e["error"], "error-unauthorized");
}

/// A part of §3 on the socket surface: one row per method, one cell per role, the error id checked.
#[tokio::test]
async fn the_permission_matrix_holds_on_the_socket_surface() {
    let n = start().await;
    let mut admin = admin_with(
        &n,
        &[("olivia", "user"), ("mo", "user"), ("ursula", "user"), ("gus", "guest"), ("robo", "bot"), ("hope", "user")],
    )
    .await;
    let users = call(&mut admin.c, "getUsers", json!({})).await;
    let uid = |name: &str| {
        users["users"].as_array().unwrap().iter().find(|u| u["username"] == name).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let token =
        call(&mut admin.c, "generatePersonalAccessToken", json!({"tokenName": "t", "userId": uid("robo")})).await;
    let mut bot = connect(&n).await;
    call(&mut bot, "login", json!({"resume": token["token"]})).await;
    let owner = login(&n, "olivia").await.c;
    let mo = login(&n, "mo").await.c;
    let user = login(&n, "ursula").await.c;
    let guest = login(&n, "gus").await.c;
    let mut hope = login(&n, "hope").await.c;
    let mut cols: Vec<(&str, Client)> =
        vec![("admin", admin.c), ("owner", owner), ("moderator", mo), ("user", user), ("guest", guest), ("bot", bot)];

    /// A private group of olivia with everyone but hope, mo as moderator.
    async fn group(cols: &mut [(&str, Client)], uid_mo: &str, name: String) -> String {
        let members = json!(["root", "mo", "ursula", "gus", "robo"]);
        let owner = &mut cols[1].1;
        let g = call(owner, "createPrivateGroup", json!({"name": name, "members": members})).await;
        let gid = id_of(&g);
        call(owner, "addRoomModerator", json!({"rid": gid, "userId": uid_mo})).await;
        gid
    }

    const Y: Option<&str> = None;
    const NA: Option<&str> = Some("error-not-allowed");
    let rows: [(&str, [Option<&str>; 6]); 5] = [
        ("eraseRoom", [Y, Y, NA, NA, NA, NA]),
        ("archiveRoom", [Y, Y, NA, NA, NA, NA]),
        ("saveRoomSettings", [Y, Y, Y, NA, NA, NA]),
        ("addRoomOwner", [Y, Y, NA, NA, NA, NA]),
        ("removeUserFromRoom", [Y, Y, Y, NA, NA, NA]),
    ];
    let mut failures = Vec::new();
    let mut k = 0;
    for (method, want) in rows {
        for (i, w) in want.iter().enumerate() {
            k += 1;
            let gid = group(&mut cols, &uid("mo"), format!("g{k}")).await;
            let data = match method {
                "saveRoomSettings" => json!({"rid": gid, "roomTopic": "new topic"}),
                "addRoomOwner" => json!({"rid": gid, "userId": uid("ursula")}),
                "removeUserFromRoom" => json!({"rid": gid, "username": "robo"}),
                _ => json!({"rid": gid}),
            };
            let (col, c) = &mut cols[i];
            // The bot is the kicked member in its own row's cell; kick the guest instead there.
            let data = if method == "removeUserFromRoom" && *col == "bot" {
                json!({"rid": gid, "username": "gus"})
            } else {
                data
            };
            let r = c.invoke(method, data).await;
            let got = r.get("error").map(|e| e["error"].as_str().unwrap_or_default().to_owned());
            if got.as_deref() != *w {
                failures.push(format!("{method} as {col}: expected {w:?}, got {r}"));
            }
        }
    }
    // Global admin methods: only the admin.
    let admin_rows: [(&str, Value); 4] = [
        ("setUserActiveStatus", json!({"userId": uid("hope"), "activeStatus": true})),
        ("setUserRoles", json!({"userId": uid("hope"), "roles": ["user"]})),
        ("permissions.update", json!({"permissions": [{"_id": "create-c", "roles": ["admin", "user", "bot"]}]})),
        ("settings.set", json!({"_id": "Message_AllowPinning", "value": true})),
    ];
    for (method, data) in admin_rows {
        for (i, (col, c)) in cols.iter_mut().enumerate() {
            let r = c.invoke(method, data.clone()).await;
            let got = r.get("error").map(|e| e["error"].as_str().unwrap_or_default().to_owned());
            let want = if i == 0 { None } else { Some("error-not-allowed") };
            if got.as_deref() != want {
                failures.push(format!("{method} as {col}: expected {want:?}, got {r}"));
            }
        }
    }
    // A private group nobody of the columns is in: every column, the admin included, gets exactly
    // the answer for a room that does not exist.
    let hidden = id_of(&call(&mut hope, "createPrivateGroup", json!({"name": "hidden"})).await);
    for (col, c) in &mut cols {
        for method in ["getRoomInfo", "loadHistory", "getRoomMembers", "syncMessages", "#subscribe"] {
            let (a, b) = if method == "#subscribe" {
                (json!({"channel": format!("room/{hidden}")}), json!({"channel": format!("room/{MISSING}")}))
            } else {
                (json!({"rid": hidden}), json!({"rid": MISSING}))
            };
            let real = c.invoke(method, a).await;
            let missing = c.invoke(method, b).await;
            if real.get("error").is_none() || real["error"] != missing["error"] {
                failures.push(format!("{method} as {col}: {real} differs from a missing room's {missing}"));
            }
            if real["error"]["error"] != "error-not-found" {
                failures.push(format!("{method} as {col}: expected error-not-found, got {real}"));
            }
        }
    }
    assert!(failures.is_empty(), "socket matrix mismatches:\n{}", failures.join("\n"));

    // Anyone reads the permission table and the public settings; privileged settings are the admin's.
    let (_, guest) = &mut cols[4];
    let perms = call(guest, "permissions.get", json!({})).await;
    assert!(perms["permissions"].as_array().unwrap().iter().any(|p| p["_id"] == "delete-p"));
    let settings = call(guest, "settings.get", json!({})).await.to_string();
    assert!(settings.contains("Message_MaxAllowedSize") && !settings.contains("SSRF_Allowlist"), "{settings}");
    let (_, admin) = &mut cols[0];
    assert!(call(admin, "settings.get", json!({})).await.to_string().contains("SSRF_Allowlist"));
}
