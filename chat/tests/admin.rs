//! The administration operations (`service/admin.rs`) on a SQLite store: what each one changes, what
//! it refuses without storing anything, and the effects the frontends must carry out (publish, kick,
//! close sessions, reload the policy).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chat::ids::RoomId;
use chat::message::SystemType;
use chat::permissions::Permission;
use chat::roles::Role;
use chat::room::RoomType;
use chat::service::admin::RoomSettings;
use chat::service::{room_channel, user_channel, Caller, Effect, SendInput, Service, UserInput};
use chat::store::sqlite::SqliteStore;
use chat::store::Store;
use chat::ChatError;
use serde_json::json;

const PW: &str = "correct horse battery";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    svc: Service,
    admin: Caller,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("chat.db")).await.unwrap());
    let svc = Service::new(store.clone()).await.unwrap();
    svc.bootstrap_admin("root", PW).await.unwrap();
    let l = svc.login("root", PW, None).await.unwrap();
    Fixture { _dir: dir, store, svc, admin: Caller { uid: l.user.id, sid: l.session.id } }
}

impl Fixture {
    async fn user(&self, name: &str, role: Role) -> Caller {
        let input =
            UserInput { username: name.into(), name: None, email: None, password: PW.into(), roles: Some(vec![role]) };
        self.svc.create_user(&self.admin, input).await.unwrap();
        self.login(name).await
    }

    async fn login(&self, name: &str) -> Caller {
        let l = self.svc.login(name, PW, None).await.unwrap();
        Caller { uid: l.user.id, sid: l.session.id }
    }

    /// Another frontend: a second service over the same store.
    async fn other_frontend(&self) -> Service {
        Service::new(self.store.clone()).await.unwrap()
    }
}

fn closes(effects: &[Effect], who: &Caller) -> Vec<chat::ids::SessionId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::CloseSessions { uid, sessions } if *uid == who.uid => Some(sessions.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn published(effects: &[Effect], channel: &str, kind: &str) -> bool {
    effects.iter().any(|e| matches!(e, Effect::Publish { channel: c, data } if c == channel && data["type"] == kind))
}

#[tokio::test]
async fn personal_access_tokens_authenticate_until_removed_and_are_never_shown_again() {
    let f = fixture().await;
    let alice = f.user("alice", Role::User).await;
    let guest = f.user("gus", Role::Guest).await;
    let bot = f.user("robo", Role::Bot).await;

    let issued = f.svc.create_personal_token(&alice, " deploy ", None).await.unwrap();
    assert_eq!(issued.token.name, "deploy");
    assert_eq!(issued.secret.len(), 64);
    assert!(issued.secret.ends_with(&issued.token.last_four));
    let dup = f.svc.create_personal_token(&alice, "deploy", None).await.unwrap_err();
    assert_eq!(dup.id(), "error-duplicate");
    assert_eq!(f.svc.create_personal_token(&alice, "  ", None).await.unwrap_err().id(), "error-invalid-param");

    // The token logs in (a socket's `login {resume}`), does not expire, and the list never shows it.
    let session = f.svc.resume(&issued.secret).await.unwrap().session;
    assert_eq!(session.id, issued.token.id);
    assert!(session.expires_at.is_none(), "personal access tokens live until removed");
    let listed = f.svc.personal_tokens(&alice, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    let shown = serde_json::to_string(&listed).unwrap();
    assert!(!shown.contains(&issued.secret) && !shown.contains("tokenHash"), "{shown}");
    assert!(listed[0].last_used_at.is_some(), "resume records the use");

    // Logging a token-authenticated socket out keeps the token.
    let as_token = Caller { uid: alice.uid.clone(), sid: session.id.clone() };
    let out = f.svc.logout(&as_token).await.unwrap();
    assert!(out.effects.is_empty());
    assert!(f.svc.resume(&issued.secret).await.is_ok());

    // Guests and bots cannot make their own; an admin issues one for the bot.
    assert_eq!(f.svc.create_personal_token(&guest, "x", None).await.unwrap_err().id(), "error-not-allowed");
    assert_eq!(f.svc.create_personal_token(&bot, "x", None).await.unwrap_err().id(), "error-not-allowed");
    let for_bot = f.svc.create_personal_token(&f.admin, "ci", Some(&bot.uid)).await.unwrap();
    assert_eq!(for_bot.user_id, bot.uid);
    assert_eq!(f.svc.resume(&for_bot.secret).await.unwrap().user.id, bot.uid);
    // Everyone may see and drop their own; nobody but an admin touches other people's.
    assert_eq!(f.svc.personal_tokens(&bot, None).await.unwrap().len(), 1);
    assert_eq!(f.svc.personal_tokens(&alice, Some(&bot.uid)).await.unwrap_err().id(), "error-not-allowed");
    assert_eq!(f.svc.remove_personal_token(&alice, "ci", Some(&bot.uid)).await.unwrap_err().id(), "error-not-allowed");
    assert_eq!(f.svc.personal_tokens(&f.admin, Some(&bot.uid)).await.unwrap().len(), 1);

    let removed = f.svc.remove_personal_token(&alice, "deploy", None).await.unwrap();
    assert_eq!(closes(&removed.effects, &alice), vec![issued.token.id.clone()], "its sockets close everywhere");
    assert!(matches!(f.svc.resume(&issued.secret).await, Err(ChatError::Unauthenticated)));
    assert!(matches!(f.svc.authenticate(&as_token).await, Err(ChatError::Unauthenticated)));
    assert_eq!(f.svc.remove_personal_token(&alice, "deploy", None).await.unwrap_err().id(), "error-not-found");
    f.svc.authenticate(&alice).await.expect("the password session is untouched");
}

#[tokio::test]
async fn deactivation_revokes_every_session_and_token_and_blocks_login_until_reactivated() {
    let f = fixture().await;
    let alice = f.user("alice", Role::User).await;
    let second = f.login("alice").await;
    let token = f.svc.create_personal_token(&alice, "script", None).await.unwrap();
    let bob = f.user("bob", Role::User).await;

    assert_eq!(f.svc.set_user_active(&bob, &alice.uid, false).await.unwrap_err().id(), "error-not-allowed");
    let out = f.svc.set_user_active(&f.admin, &alice.uid, false).await.unwrap();
    assert!(!out.value.active);
    let mut closed = closes(&out.effects, &alice);
    closed.sort();
    let mut expected = vec![alice.sid.clone(), second.sid.clone(), token.token.id.clone()];
    expected.sort();
    assert_eq!(closed, expected, "every session and token, closed on every frontend");
    assert!(published(&out.effects, &user_channel(&alice.uid), "session.revoked"));
    assert!(matches!(f.svc.login("alice", PW, None).await, Err(ChatError::Unauthenticated)));
    assert!(matches!(f.svc.resume(&token.secret).await, Err(ChatError::Unauthenticated)));
    assert!(matches!(f.svc.authenticate(&second).await, Err(ChatError::Unauthenticated)));
    f.svc.authenticate(&bob).await.expect("other users are untouched");
    // Still listed for admins (to reactivate), hidden from nobody else's directory concerns here.
    let listed = f.svc.list_users(&f.admin, None, None).await.unwrap();
    assert!(listed.iter().any(|u| u.username == "alice" && !u.active));
    assert_eq!(f.svc.list_users(&bob, None, None).await.unwrap_err().id(), "error-not-allowed");

    assert_eq!(f.svc.set_user_active(&f.admin, &f.admin.uid, false).await.unwrap_err().id(), "error-invalid-param");
    let back = f.svc.set_user_active(&f.admin, &alice.uid, true).await.unwrap();
    assert!(back.value.active && back.effects.is_empty());
    f.login("alice").await;
    assert!(f.svc.resume(&token.secret).await.is_err(), "reactivation does not bring revoked tokens back");
}

#[tokio::test]
async fn admin_logout_revokes_all_of_one_users_sessions() {
    let f = fixture().await;
    let alice = f.user("alice", Role::User).await;
    let phone = f.login("alice").await;
    let bob = f.user("bob", Role::User).await;
    assert_eq!(f.svc.logout_user(&bob, &alice.uid).await.unwrap_err().id(), "error-not-allowed");
    let out = f.svc.logout_user(&f.admin, &alice.uid).await.unwrap();
    assert_eq!(out.value.len(), 2);
    let mut closed = closes(&out.effects, &alice);
    closed.sort();
    let mut expected = vec![alice.sid.clone(), phone.sid.clone()];
    expected.sort();
    assert_eq!(closed, expected);
    assert!(f.svc.authenticate(&alice).await.is_err() && f.svc.authenticate(&phone).await.is_err());
    f.svc.authenticate(&bob).await.unwrap();
    f.login("alice").await; // still active: may log in again
    let e = f.svc.logout_user(&f.admin, &chat::ids::UserId::from("NoSuchUser0000000")).await.unwrap_err();
    assert_eq!(e.id(), "error-not-found");
}

#[tokio::test]
async fn erasing_a_room_tells_and_kicks_every_member_and_frees_its_name() {
    let f = fixture().await;
    let alice = f.user("alice", Role::User).await;
    let bob = f.user("bob", Role::User).await;
    let room = f.svc.create_room(&alice, RoomType::Group, "team", &["bob".into()], false).await.unwrap().value;
    f.svc
        .send(&bob, SendInput { rid: room.id.clone(), msg: "hi".into(), client_msg_id: None, tmid: None, tshow: false })
        .await
        .unwrap();
    let out = f.svc.erase_room(&alice, &room.id).await.unwrap();
    assert!(published(&out.effects, &room_channel(&room.id), "room.deleted"));
    for who in [&alice, &bob] {
        assert!(out.effects.contains(&Effect::Kick { rid: room.id.clone(), uid: who.uid.clone() }));
        assert!(published(&out.effects, &user_channel(&who.uid), "subscription.changed"));
        let e = f.svc.history(who, &room.id, None, None).await.unwrap_err();
        assert!(matches!(e, ChatError::NotFound { what: "room" }), "{e:?}");
    }
    assert!(f.svc.subscriptions(&bob, None).await.unwrap().update.is_empty());
    f.svc.create_room(&bob, RoomType::Group, "team", &[], false).await.expect("the name is free again");
}

#[tokio::test]
async fn room_settings_change_together_or_not_at_all() {
    let f = fixture().await;
    let alice = f.user("alice", Role::User).await;
    let mo = f.user("mo", Role::User).await;
    let room = f.svc.create_room(&alice, RoomType::Channel, "general", &["mo".into()], false).await.unwrap().value;
    f.svc.set_room_role(&alice, &room.id, &mo.uid, Role::Moderator, true).await.unwrap();

    // A moderator may edit the topic but not make the room read-only: asking for both stores neither.
    let both = RoomSettings { topic: Some("news".into()), read_only: Some(true), ..RoomSettings::default() };
    assert_eq!(f.svc.save_room_settings(&mo, &room.id, both).await.unwrap_err().id(), "error-not-allowed");
    let (now, _) = f.svc.room_info(&alice, &room.id).await.unwrap();
    assert_eq!((now.topic.as_str(), now.read_only), ("", false));

    let change = RoomSettings { name: Some("lobby".into()), topic: Some("news".into()), ..RoomSettings::default() };
    let out = f.svc.save_room_settings(&mo, &room.id, change).await.unwrap();
    assert_eq!((out.value.name.as_deref(), out.value.topic.as_str()), (Some("lobby"), "news"));
    assert!(published(&out.effects, &room_channel(&room.id), "room.updated"));
    let history = f.svc.history(&alice, &room.id, None, None).await.unwrap();
    assert!(history.iter().any(|m| m.t == Some(SystemType::RoomRenamed) && m.msg == "lobby"));
    assert!(history.iter().any(|m| m.t == Some(SystemType::TopicChanged) && m.msg == "news"));

    f.svc.create_room(&alice, RoomType::Group, "taken", &[], false).await.unwrap();
    let clash = RoomSettings { name: Some("TAKEN".into()), ..RoomSettings::default() };
    assert_eq!(f.svc.save_room_settings(&alice, &room.id, clash).await.unwrap_err().id(), "error-duplicate");
    let nothing = f.svc.save_room_settings(&alice, &room.id, RoomSettings::default()).await.unwrap_err();
    assert_eq!(nothing.id(), "error-invalid-param");
    let dm = f.svc.open_direct(&alice, &["mo".into()]).await.unwrap().value;
    let dm_name = RoomSettings { name: Some("ours".into()), ..RoomSettings::default() };
    assert_eq!(f.svc.save_room_settings(&f.admin, &dm.id, dm_name).await.unwrap_err().id(), "error-invalid-param");

    // Archived: readable, no changes, no messages; only an admin unarchives.
    let archived = f.svc.set_archived(&alice, &room.id, true).await.unwrap();
    assert!(archived.value.archived);
    assert!(f.svc.set_archived(&alice, &room.id, true).await.unwrap().effects.is_empty(), "already archived");
    let topic = RoomSettings { topic: Some("x".into()), ..RoomSettings::default() };
    assert_eq!(f.svc.save_room_settings(&alice, &room.id, topic).await.unwrap_err().id(), "error-room-archived");
    f.svc.history(&mo, &room.id, None, None).await.expect("still readable");
    assert_eq!(f.svc.set_archived(&alice, &room.id, false).await.unwrap_err().id(), "error-not-allowed");
    assert!(!f.svc.set_archived(&f.admin, &room.id, false).await.unwrap().value.archived);
}

#[tokio::test]
async fn room_roles_go_to_members_only_and_a_room_keeps_an_owner() {
    let f = fixture().await;
    let alice = f.user("alice", Role::User).await;
    let bob = f.user("bob", Role::User).await;
    let carol = f.user("carol", Role::User).await;
    let group = f.svc.create_room(&alice, RoomType::Group, "team", &["bob".into()], false).await.unwrap().value;

    // A non-member is "not a member" to the owner, and the room does not exist for an outsider.
    let e = f.svc.set_room_role(&alice, &group.id, &carol.uid, Role::Owner, true).await.unwrap_err();
    assert!(matches!(e, ChatError::NotFound { what: "member" }), "{e:?}");
    let e = f.svc.set_room_role(&carol, &group.id, &bob.uid, Role::Owner, true).await.unwrap_err();
    assert!(matches!(e, ChatError::NotFound { what: "room" }), "{e:?}");
    assert_eq!(
        f.svc.set_room_role(&alice, &group.id, &bob.uid, Role::Admin, true).await.unwrap_err().id(),
        "error-invalid-param"
    );

    let out = f.svc.set_room_role(&alice, &group.id, &bob.uid, Role::Owner, true).await.unwrap();
    assert!(out.value.roles.contains(&Role::Owner));
    assert!(published(&out.effects, &user_channel(&bob.uid), "subscription.changed"));
    assert!(f.svc.set_room_role(&alice, &group.id, &bob.uid, Role::Owner, true).await.unwrap().effects.is_empty());
    // Two owners: alice may step down and leave; then bob is the last owner and must stay one.
    f.svc.set_room_role(&alice, &group.id, &alice.uid, Role::Owner, false).await.unwrap();
    f.svc.leave(&alice, &group.id).await.unwrap();
    // An admin acts on the room by id without being a member, and meets the same rule.
    let e = f.svc.set_room_role(&f.admin, &group.id, &bob.uid, Role::Owner, false).await.unwrap_err();
    assert!(matches!(e, ChatError::LastOwner), "{e:?}");
    assert!(matches!(f.svc.leave(&bob, &group.id).await, Err(ChatError::LastOwner)));
    assert!(matches!(
        f.svc.set_room_role(&bob, &group.id, &bob.uid, Role::Owner, false).await,
        Err(ChatError::LastOwner)
    ));
}

#[tokio::test]
async fn permission_and_settings_edits_apply_at_once_and_reach_other_frontends_on_reload() {
    let f = fixture().await;
    let gus = f.user("gus", Role::Guest).await;
    let other = f.other_frontend().await;
    assert_eq!(
        f.svc.create_room(&gus, RoomType::Channel, "g1", &[], false).await.unwrap_err().id(),
        "error-not-allowed"
    );

    // A batch with one bad change stores nothing.
    let bad = vec![
        (Permission::CreateC, vec![Role::Admin, Role::User, Role::Guest]),
        (Permission::AccessPermissions, vec![Role::User]),
    ];
    assert_eq!(f.svc.update_permissions(&f.admin, bad).await.unwrap_err().id(), "error-invalid-param");
    assert!(f.store.permission_overrides().await.unwrap().is_empty());
    assert_eq!(
        f.svc.update_permissions(&gus, vec![(Permission::CreateC, vec![])]).await.unwrap_err().id(),
        "error-not-allowed"
    );

    let out = f
        .svc
        .update_permissions(&f.admin, vec![(Permission::CreateC, vec![Role::Admin, Role::User, Role::Guest])])
        .await
        .unwrap();
    assert_eq!(out.effects, vec![Effect::ReloadPolicy]);
    f.svc.create_room(&gus, RoomType::Channel, "g1", &[], false).await.expect("this frontend: at once");
    assert!(other.create_room(&gus, RoomType::Channel, "g2", &[], false).await.is_err(), "not reloaded yet");
    other.reload_policy().await.unwrap();
    other.create_room(&gus, RoomType::Channel, "g2", &[], false).await.expect("after the reload");
    let listed = other.permissions_list(&gus).await.unwrap();
    assert!(listed.iter().any(|(p, r)| *p == Permission::CreateC && r.contains(&Role::Guest)));

    // Settings: type-checked, admin only, applied here at once and elsewhere on reload.
    assert_eq!(
        f.svc.set_setting(&gus, "Message_MaxAllowedSize", json!(10)).await.unwrap_err().id(),
        "error-not-allowed"
    );
    assert_eq!(
        f.svc.set_setting(&f.admin, "Message_MaxAllowedSize", json!("ten")).await.unwrap_err().id(),
        "error-invalid-param"
    );
    assert_eq!(f.svc.set_setting(&f.admin, "No_Such_Setting", json!(1)).await.unwrap_err().id(), "error-not-found");
    let out = f.svc.set_setting(&f.admin, "Message_MaxAllowedSize", json!(10)).await.unwrap();
    assert_eq!(out.effects, vec![Effect::ReloadPolicy]);
    let rid: RoomId = f.svc.create_room(&f.admin, RoomType::Channel, "limits", &[], false).await.unwrap().value.id;
    let long = || SendInput { rid: rid.clone(), msg: "x".repeat(11), client_msg_id: None, tmid: None, tshow: false };
    assert_eq!(f.svc.send(&f.admin, long()).await.unwrap_err().id(), "error-too-long");
    assert!(other.send(&f.admin, long()).await.is_ok(), "not reloaded yet");
    other.reload_policy().await.unwrap();
    assert_eq!(other.send(&f.admin, long()).await.unwrap_err().id(), "error-too-long");
    // And after a restart.
    let restarted = Service::new(f.store.clone()).await.unwrap();
    assert_eq!(restarted.settings().message_max_allowed_size, 10);
}

#[tokio::test]
async fn global_roles_are_replaced_by_admins_within_the_rules() {
    let f = fixture().await;
    let alice = f.user("alice", Role::User).await;
    let bot = f.user("robo", Role::Bot).await;
    assert_eq!(
        f.svc.set_user_roles(&alice, &alice.uid, vec![Role::Admin]).await.unwrap_err().id(),
        "error-not-allowed"
    );
    let out = f.svc.set_user_roles(&f.admin, &alice.uid, vec![Role::Admin, Role::User]).await.unwrap();
    assert_eq!(out.value.roles, vec![Role::Admin, Role::User]);
    assert!(published(&out.effects, &user_channel(&alice.uid), "user.updated"));
    f.svc.list_users(&alice, None, None).await.expect("alice is an admin now, with her existing session");
    for (who, roles) in [
        (&alice, vec![Role::Owner]),
        (&alice, vec![Role::Guest, Role::User]),
        (&alice, vec![Role::Bot]),
        (&bot, vec![Role::User]),
    ] {
        let e = f.svc.set_user_roles(&f.admin, &who.uid, roles.clone()).await.unwrap_err();
        assert_eq!(e.id(), "error-invalid-param", "{roles:?}");
    }
    let e = f.svc.set_user_roles(&f.admin, &f.admin.uid, vec![Role::User]).await.unwrap_err();
    assert_eq!(e.id(), "error-invalid-param", "an admin cannot demote themselves");
    f.svc.set_user_roles(&alice, &f.admin.uid, vec![Role::User]).await.expect("another admin can");
}
