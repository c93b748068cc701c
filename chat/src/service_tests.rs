use super::*;
use crate::store::sqlite::SqliteStore;

const PW: &str = "correct horse battery";

struct Fixture {
    _dir: tempfile::TempDir,
    svc: Service,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("chat.db")).await.unwrap();
    let svc = Service::new(Arc::new(store)).await.unwrap();
    Fixture { _dir: dir, svc }
}

impl Fixture {
    async fn admin(&self) -> Caller {
        self.svc.bootstrap_admin("root", PW).await.unwrap();
        self.login("root").await
    }

    async fn user(&self, admin: &Caller, name: &str) -> Caller {
        let input = UserInput { username: name.into(), name: None, email: None, password: PW.into(), roles: None };
        self.svc.create_user(admin, input).await.unwrap();
        self.login(name).await
    }

    async fn login(&self, name: &str) -> Caller {
        let l = self.svc.login(name, PW, None).await.unwrap();
        Caller { uid: l.user.id, sid: l.session.id }
    }
}

fn send_input(rid: &RoomId, msg: &str, cmid: Option<&str>) -> SendInput {
    SendInput { rid: rid.clone(), msg: msg.into(), client_msg_id: cmid.map(Into::into), tmid: None, tshow: false }
}

#[tokio::test]
async fn bootstrap_login_resume_and_logout() {
    let f = fixture().await;
    let (admin, created) = f.svc.bootstrap_admin("root", PW).await.unwrap();
    assert!(created && admin.roles.contains(&Role::Admin));
    let (_, again) = f.svc.bootstrap_admin("root", "another password").await.unwrap();
    assert!(!again, "an existing admin is kept as is");
    assert!(matches!(f.svc.login("root", "wrong password", None).await, Err(ChatError::Unauthenticated)));
    assert!(matches!(f.svc.login("nobody", PW, None).await, Err(ChatError::Unauthenticated)));
    let login = f.svc.login("root", PW, None).await.unwrap();
    let secret = login.token.clone().unwrap();
    let resumed = f.svc.resume(&secret).await.unwrap();
    assert_eq!(resumed.session.id, login.session.id);
    assert!(resumed.token.is_none());
    let caller = Caller { uid: login.user.id.clone(), sid: login.session.id.clone() };
    let out = f.svc.logout(&caller).await.unwrap();
    assert!(out
        .effects
        .contains(&Effect::CloseSessions { uid: caller.uid.clone(), sessions: vec![caller.sid.clone()] }));
    assert!(matches!(f.svc.resume(&secret).await, Err(ChatError::Unauthenticated)));
    assert!(matches!(f.svc.authenticate(&caller).await, Err(ChatError::Unauthenticated)));
}

#[tokio::test]
async fn registration_is_a_setting_and_only_admins_create_users() {
    let f = fixture().await;
    let admin = f.admin().await;
    let input = || UserInput {
        username: "eve".into(),
        name: None,
        email: None,
        password: PW.into(),
        roles: Some(vec![Role::Admin]),
    };
    assert!(matches!(f.svc.register(input()).await, Err(ChatError::NotAllowed { .. })));
    f.svc.set_setting_as_operator("Accounts_RegistrationForm", json!(true)).await.unwrap();
    let eve = f.svc.register(input()).await.unwrap();
    assert_eq!(eve.roles, vec![Role::User], "open registration never grants roles");
    let eve = f.login("eve").await;
    let other = UserInput { username: "mallory".into(), ..input() };
    assert!(matches!(f.svc.create_user(&eve, other.clone()).await, Err(ChatError::NotAllowed { .. })));
    assert!(f.svc.create_user(&admin, other).await.is_ok());
}

#[tokio::test]
async fn private_rooms_are_invisible_to_non_members() {
    let f = fixture().await;
    let admin = f.admin().await;
    let alice = f.user(&admin, "alice").await;
    let bob = f.user(&admin, "bob").await;
    let group = f.svc.create_room(&alice, RoomType::Group, "secret", &[], false).await.unwrap().value;
    let missing = RoomId::from("NoSuchRoom1234567");
    for rid in [&group.id, &missing] {
        let e = f.svc.history(&bob, rid, None, None).await.unwrap_err();
        assert!(matches!(e, ChatError::NotFound { what: "room" }), "{e:?}");
        let e = f.svc.send(&bob, send_input(rid, "hi", None)).await.unwrap_err();
        assert!(matches!(e, ChatError::NotFound { what: "room" }), "{e:?}");
        let e = f.svc.join(&bob, rid).await.unwrap_err();
        assert!(matches!(e, ChatError::NotFound { what: "room" }), "{e:?}");
        let e = f.svc.remove_member(&bob, rid, "alice").await.unwrap_err();
        assert!(matches!(e, ChatError::NotFound { what: "room" }), "{e:?}");
        let e = f.svc.check_channel(Some(&bob), &room_channel(rid)).await.unwrap().unwrap_err();
        assert!(matches!(e, ChatError::NotFound { what: "room" }), "{e:?}");
    }
    let m = f.svc.send(&alice, send_input(&group.id, "psst", None)).await.unwrap().value.message;
    let e = f.svc.edit(&bob, &m.id, "x").await.unwrap_err();
    assert!(matches!(e, ChatError::NotFound { what: "message" }), "{e:?}");
    let e = f.svc.delete(&bob, &MessageId::from("NoSuchMessage1234")).await.unwrap_err();
    assert!(matches!(e, ChatError::NotFound { what: "message" }), "{e:?}");
    assert!(f.svc.check_channel(Some(&alice), &room_channel(&group.id)).await.unwrap().is_ok());
    assert!(f.svc.check_channel(Some(&alice), &user_channel(&alice.uid)).await.unwrap().is_ok());
    assert!(f.svc.check_channel(Some(&alice), &user_channel(&bob.uid)).await.unwrap().is_err());
    assert!(f.svc.check_channel(None, &user_channel(&bob.uid)).await.unwrap().is_err());
    assert!(f.svc.check_channel(Some(&alice), "news").await.is_none());
}

#[tokio::test]
async fn kick_cuts_membership_and_asks_for_the_live_subscription_to_be_cut() {
    let f = fixture().await;
    let admin = f.admin().await;
    let alice = f.user(&admin, "alice").await;
    let bob = f.user(&admin, "bob").await;
    let room = f.svc.create_room(&alice, RoomType::Group, "team", &["bob".into()], false).await.unwrap();
    let rid = room.value.id;
    assert!(room
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Publish { channel, .. } if *channel == user_channel(&bob.uid))));
    // A plain member may not kick.
    assert!(matches!(f.svc.remove_member(&bob, &rid, "alice").await, Err(ChatError::NotAllowed { .. })));
    let out = f.svc.remove_member(&alice, &rid, "bob").await.unwrap();
    assert!(out.effects.contains(&Effect::Kick { rid: rid.clone(), uid: bob.uid.clone() }));
    assert!(matches!(f.svc.history(&bob, &rid, None, None).await, Err(ChatError::NotFound { what: "room" })));
    assert!(matches!(f.svc.remove_member(&alice, &rid, "bob").await, Err(ChatError::NotFound { what: "member" })));
    // The last owner cannot leave.
    assert!(matches!(f.svc.leave(&alice, &rid).await, Err(ChatError::LastOwner)));
}

#[tokio::test]
async fn sends_are_idempotent_and_unread_goes_up_and_back_to_zero() {
    let f = fixture().await;
    let admin = f.admin().await;
    let alice = f.user(&admin, "alice").await;
    let bob = f.user(&admin, "bob").await;
    let rid = f.svc.create_room(&alice, RoomType::Channel, "general", &[], false).await.unwrap().value.id;
    f.svc.join(&bob, &rid).await.unwrap();
    let first = f.svc.send(&alice, send_input(&rid, "hello @bob", Some("c-1"))).await.unwrap();
    assert!(first.value.created);
    assert!(first.effects.iter().any(|e| matches!(e, Effect::Publish { channel, data } if *channel == user_channel(&bob.uid) && data["type"] == "notification")));
    let retry = f.svc.send(&alice, send_input(&rid, "hello @bob", Some("c-1"))).await.unwrap();
    assert!(!retry.value.created && retry.effects.is_empty());
    assert_eq!(retry.value.message.id, first.value.message.id);
    f.svc.send(&alice, send_input(&rid, "second", Some("c-2"))).await.unwrap();
    let history = f.svc.history(&bob, &rid, None, None).await.unwrap();
    let texts: Vec<_> = history.iter().filter(|m| m.t.is_none()).map(|m| m.msg.as_str()).collect();
    assert_eq!(texts, ["hello @bob", "second"]);
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq));

    let unread = |d: SubscriptionDelta| d.update.iter().find(|s| s.subscription.rid == rid).unwrap().unread();
    let u = unread(f.svc.subscriptions(&bob, None).await.unwrap());
    assert_eq!((u.messages, u.user_mentions), (2, 1));
    assert_eq!(unread(f.svc.subscriptions(&alice, None).await.unwrap()).messages, 1, "bob's join message");
    f.svc.mark_read(&bob, &rid).await.unwrap();
    let u = unread(f.svc.subscriptions(&bob, None).await.unwrap());
    assert_eq!((u.messages, u.user_mentions), (0, 0));

    // Edit and delete: own messages yes, others' no.
    let mid = first.value.message.id;
    assert!(matches!(f.svc.edit(&bob, &mid, "nope").await, Err(ChatError::NotAllowed { .. })));
    let edited = f.svc.edit(&alice, &mid, "hello all").await.unwrap().value;
    assert_eq!(edited.msg, "hello all");
    let deleted = f.svc.delete(&alice, &mid).await.unwrap();
    assert!(deleted.value.is_deleted() && deleted.effects.len() == 1);
    let sync = f.svc.sync(&bob, &rid, deleted.value.seq, 0, None).await.unwrap();
    assert!(sync.deleted.iter().any(|m| m.id == mid));
}

#[tokio::test]
async fn direct_messages_are_reused_and_notify_the_peer() {
    let f = fixture().await;
    let admin = f.admin().await;
    let alice = f.user(&admin, "alice").await;
    let bob = f.user(&admin, "bob").await;
    let dm = f.svc.open_direct(&alice, &["bob".into()]).await.unwrap();
    let again = f.svc.open_direct(&bob, &["alice".into()]).await.unwrap();
    assert_eq!(dm.value.id, again.value.id);
    assert!(again.effects.is_empty());
    let sent = f.svc.send(&alice, send_input(&dm.value.id, "hi", None)).await.unwrap();
    assert!(sent.effects.iter().any(
        |e| matches!(e, Effect::Publish { channel, data } if *channel == user_channel(&bob.uid) && data["kind"] == "dm")
    ));
    assert!(matches!(f.svc.open_direct(&alice, &["ghost".into()]).await, Err(ChatError::NotFound { what: "user" })));
}
