//! One conformance suite for every `Store` backend. Each behaviour is an `async fn` over a [`Harness`]
//! (which opens, and re-opens, a store at one place); the `suite!` macro instantiates every behaviour
//! as a test per backend. SQLite runs always, on a temp dir. MongoDB runs when `MONGODB_URI` is set
//! (a real server, or `nx-27017` in CI); otherwise its tests print a note and pass. Each Mongo test uses
//! a fresh database named `chat_test_<random>`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: behaviours are plain async fns outside #[test]

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chat::ids::{MessageId, RoomId, UserId};
use chat::message::{Mention, NewMessage, SystemType, UserRef};
use chat::permissions::Permission;
use chat::roles::Role;
use chat::room::{NewRoom, NotifyLevel, RoomPatch, RoomType, SubscriptionPrefs};
use chat::store::{NewSession, Page, SearchQuery, SessionKind, Store};
use chat::user::{NewUser, User, UserKind};
use chat::ChatError;

/// Where a backend's data lives for one test; `open` may be called again to re-open the same data.
#[async_trait]
pub trait Harness: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;
}

// ------------------------------------------------------------------ helpers

async fn user(s: &dyn Store, name: &str) -> User {
    user_with(s, name, vec![Role::User]).await
}

async fn user_with(s: &dyn Store, name: &str, roles: Vec<Role>) -> User {
    s.create_user(NewUser {
        username: name.into(),
        name: name.to_uppercase(),
        email: Some(format!("{name}@example.org")),
        kind: UserKind::User,
        roles,
        password_hash: None,
    })
    .await
    .expect("create user")
}

fn uref(u: &User) -> UserRef {
    UserRef { id: u.id.clone(), username: u.username.clone(), name: u.name.clone() }
}

async fn group(s: &dyn Store, owner: &User, name: &str, members: &[&User]) -> RoomId {
    let new = NewRoom::group(owner.id.clone(), name, members.iter().map(|u| u.id.clone()).collect(), false).unwrap();
    s.create_room(new).await.expect("create group").value.id
}

async fn channel(s: &dyn Store, owner: &User, name: &str, members: &[&User]) -> RoomId {
    let new = NewRoom::channel(owner.id.clone(), name, members.iter().map(|u| u.id.clone()).collect(), false).unwrap();
    s.create_room(new).await.expect("create channel").value.id
}

async fn say(s: &dyn Store, rid: &RoomId, who: &User, text: &str) -> chat::message::Message {
    s.insert_message(NewMessage::text(rid.clone(), uref(who), text)).await.expect("insert").value
}

fn seqs(ms: &[chat::message::Message]) -> Vec<u64> {
    ms.iter().map(|m| m.seq).collect()
}

// ------------------------------------------------------------------ behaviours

pub async fn users_are_unique_case_insensitively(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "Alice").await;
    let dup = s
        .create_user(NewUser {
            username: "alice".into(),
            name: "x".into(),
            email: None,
            kind: UserKind::User,
            roles: vec![Role::User],
            password_hash: None,
        })
        .await;
    assert!(matches!(dup, Err(ChatError::Conflict { what: "username" })), "{dup:?}");
    let dup_mail = s
        .create_user(NewUser {
            username: "alice2".into(),
            name: "x".into(),
            email: Some("ALICE@example.org".into()),
            kind: UserKind::User,
            roles: vec![Role::User],
            password_hash: None,
        })
        .await;
    assert!(matches!(dup_mail, Err(ChatError::Conflict { what: "email" })), "{dup_mail:?}");
    assert_eq!(s.user_by_username("ALICE").await.unwrap().unwrap().id, alice.id);
    assert_eq!(s.user_by_email("alice@EXAMPLE.org").await.unwrap().unwrap().id, alice.id);
    assert_eq!(s.get_user(&alice.id).await.unwrap().unwrap(), alice);
    assert!(s.get_user(&UserId::from("nobody")).await.unwrap().is_none());
    assert_eq!(s.count_users().await.unwrap(), 1);
    let bob = user(&*s, "bob").await;
    let found = s.users_by_usernames(&["BOB".into(), "ghost".into(), "alice".into()]).await.unwrap();
    let ids: BTreeSet<_> = found.iter().map(|u| u.id.clone()).collect();
    assert_eq!(ids, [alice.id.clone(), bob.id.clone()].into_iter().collect());
    let prefix = s.search_users("bo", 10).await.unwrap();
    assert_eq!(prefix.len(), 1);
    assert_eq!(prefix[0].id, bob.id);
    let updated = s.set_user_roles(&bob.id, vec![Role::Admin, Role::User]).await.unwrap();
    assert_eq!(updated.roles, vec![Role::Admin, Role::User]);
    assert!(s.set_user_roles(&bob.id, vec![Role::Owner]).await.is_err());
}

pub async fn password_hashes_are_stored_apart_from_the_user(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    assert_eq!(s.password_hash(&alice.id).await.unwrap(), None);
    let phc = chat::auth::hash_password("correct horse").unwrap();
    s.set_password_hash(&alice.id, &phc).await.unwrap();
    let stored = s.password_hash(&alice.id).await.unwrap().unwrap();
    assert!(chat::auth::verify_password("correct horse", &stored));
    assert!(matches!(s.set_password_hash(&UserId::from("ghost"), &phc).await, Err(ChatError::NotFound { .. })));
}

pub async fn sessions_are_found_by_token_hash_and_revoked(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let mut ids = Vec::new();
    for (i, kind) in [SessionKind::Login, SessionKind::Login, SessionKind::Pat].into_iter().enumerate() {
        let tok = chat::auth::issue_token();
        let sess = s
            .create_session(NewSession {
                user_id: alice.id.clone(),
                kind,
                token_hash: tok.hash.clone(),
                name: (kind == SessionKind::Pat).then(|| "ci bot".to_owned()),
                last_four: tok.last_four.clone(),
                expires_at: (kind == SessionKind::Login).then_some(i64::MAX - i as i64),
                client: None,
            })
            .await
            .unwrap();
        let found = s.session_by_token_hash(&chat::auth::hash_token(&tok.secret)).await.unwrap().unwrap();
        assert_eq!(found, sess);
        ids.push(sess.id);
    }
    let bob_tok = chat::auth::issue_token();
    let bob_sess = s
        .create_session(NewSession {
            user_id: bob.id.clone(),
            kind: SessionKind::Login,
            token_hash: bob_tok.hash,
            name: None,
            last_four: bob_tok.last_four,
            expires_at: None,
            client: Some("test".into()),
        })
        .await
        .unwrap();
    assert_eq!(s.list_sessions(&alice.id, None).await.unwrap().len(), 3);
    assert_eq!(s.list_sessions(&alice.id, Some(SessionKind::Pat)).await.unwrap().len(), 1);
    s.touch_session(&ids[0], 42).await.unwrap();
    assert_eq!(s.get_session(&ids[0]).await.unwrap().unwrap().last_used_at, Some(42));

    assert!(s.revoke_session(&ids[0]).await.unwrap());
    assert!(!s.revoke_session(&ids[0]).await.unwrap());
    assert!(s.get_session(&ids[0]).await.unwrap().is_none());

    let revoked = s.revoke_user_sessions(&alice.id, Some(&ids[1])).await.unwrap();
    assert_eq!(revoked, vec![ids[2].clone()]);
    let revoked = s.revoke_user_sessions(&alice.id, None).await.unwrap();
    assert_eq!(revoked, vec![ids[1].clone()]);
    assert!(s.list_sessions(&alice.id, None).await.unwrap().is_empty());
    assert!(s.get_session(&bob_sess.id).await.unwrap().is_some(), "other users keep their sessions");

    let revoked = s.set_user_active(&bob.id, false).await.unwrap();
    assert_eq!(revoked, vec![bob_sess.id.clone()]);
    assert!(!s.get_user(&bob.id).await.unwrap().unwrap().active);
    assert!(s.set_user_active(&bob.id, true).await.unwrap().is_empty());
}

pub async fn rooms_are_created_listed_updated_archived_and_deleted(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let carol = user(&*s, "carol").await;
    let general = channel(&*s, &alice, "general", &[&bob]).await;
    let secret = group(&*s, &alice, "secret", &[&bob]).await;
    let dup = s.create_room(NewRoom::group(bob.id.clone(), "SECRET", vec![], false).unwrap()).await;
    assert!(matches!(dup, Err(ChatError::Conflict { .. })), "{dup:?}");
    let missing = s.create_room(NewRoom::group(bob.id.clone(), "x", vec![UserId::from("ghost")], false).unwrap()).await;
    assert!(matches!(missing, Err(ChatError::NotFound { .. })), "{missing:?}");

    let room = s.get_room(&general).await.unwrap().unwrap();
    assert_eq!((room.t, room.users_count, room.name.as_deref()), (RoomType::Channel, 2, Some("general")));
    assert_eq!(s.room_by_name("GENERAL").await.unwrap().unwrap().id, general);
    let owner = s.get_subscription(&general, &alice.id).await.unwrap().unwrap();
    assert_eq!(owner.roles, vec![Role::Owner]);
    assert!(s.get_subscription(&general, &bob.id).await.unwrap().unwrap().roles.is_empty());
    assert_eq!(s.count_owners(&general).await.unwrap(), 1);

    let dm1 = s.create_room(NewRoom::direct(alice.id.clone(), vec![carol.id.clone()], 8).unwrap()).await.unwrap();
    let dm2 = s.create_room(NewRoom::direct(carol.id.clone(), vec![alice.id.clone()], 8).unwrap()).await.unwrap();
    assert!(dm1.created && !dm2.created);
    assert_eq!(dm1.value.id, dm2.value.id);
    assert!(s.get_subscription(&dm1.value.id, &carol.id).await.unwrap().unwrap().roles.is_empty());

    let mine: BTreeSet<_> = s.rooms_for_user(&alice.id, None).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(mine, [general.clone(), secret.clone(), dm1.value.id.clone()].into_iter().collect());
    let carols: Vec<_> = s.rooms_for_user(&carol.id, None).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(carols, vec![dm1.value.id.clone()]);
    let dir = s.directory("gen", None, 10).await.unwrap();
    assert_eq!(dir.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![general.clone()]);
    assert!(s.directory("secret", None, 10).await.unwrap().is_empty(), "groups never appear in the directory");
    assert!(s.directory("", Some("general"), 10).await.unwrap().is_empty());

    let before = s.get_room(&general).await.unwrap().unwrap().updated_at;
    let patch = RoomPatch { topic: Some("news".into()), read_only: Some(true), ..Default::default() };
    let updated = s.update_room(&general, patch).await.unwrap();
    assert_eq!((updated.topic.as_str(), updated.read_only), ("news", true));
    assert!(updated.updated_at >= before);
    assert!(s.rooms_for_user(&bob.id, Some(updated.updated_at)).await.unwrap().iter().any(|r| r.id == general));
    assert!(s.set_archived(&general, true).await.unwrap().archived);
    assert!(!s.set_archived(&general, false).await.unwrap().archived);

    say(&*s, &secret, &alice, "to be deleted").await;
    let t0 = chat::ids::now_ms();
    let former: BTreeSet<_> = s.delete_room(&secret).await.unwrap().into_iter().collect();
    assert_eq!(former, [alice.id.clone(), bob.id.clone()].into_iter().collect());
    assert!(s.get_room(&secret).await.unwrap().is_none());
    assert!(s.get_subscription(&secret, &bob.id).await.unwrap().is_none());
    assert!(s.history(&secret, Page::Latest { limit: 10 }).await.unwrap().is_empty());
    let delta = s.subscriptions_for_user(&bob.id, Some(t0)).await.unwrap();
    assert_eq!(delta.remove, vec![secret.clone()]);
    assert!(matches!(s.delete_room(&secret).await, Err(ChatError::NotFound { .. })));
}

pub async fn membership_keeps_an_owner(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let carol = user(&*s, "carol").await;
    let rid = group(&*s, &alice, "team", &[&bob]).await;

    let added = s.add_member(&rid, &carol.id, vec![]).await.unwrap();
    assert!(added.created);
    assert!(!s.add_member(&rid, &carol.id, vec![]).await.unwrap().created);
    assert_eq!(s.get_room(&rid).await.unwrap().unwrap().users_count, 3);
    let members = s.list_members(&rid, None, 2).await.unwrap();
    assert_eq!(members.len(), 2);
    let rest = s.list_members(&rid, Some(&members[1].uid), 10).await.unwrap();
    assert_eq!(rest.len(), 1);

    assert!(matches!(s.remove_member(&rid, &alice.id).await, Err(ChatError::LastOwner)));
    assert!(matches!(s.set_member_role(&rid, &alice.id, Role::Owner, false).await, Err(ChatError::LastOwner)));
    let bob_sub = s.set_member_role(&rid, &bob.id, Role::Owner, true).await.unwrap();
    assert!(bob_sub.is_owner());
    assert_eq!(s.count_owners(&rid).await.unwrap(), 2);
    let alice_sub = s.set_member_role(&rid, &alice.id, Role::Moderator, true).await.unwrap();
    assert_eq!(alice_sub.roles, vec![Role::Owner, Role::Moderator]);
    assert!(s.remove_member(&rid, &alice.id).await.unwrap());
    assert!(!s.remove_member(&rid, &alice.id).await.unwrap());
    assert_eq!(s.get_room(&rid).await.unwrap().unwrap().users_count, 2);
    assert!(matches!(s.set_member_role(&rid, &alice.id, Role::Owner, true).await, Err(ChatError::NotFound { .. })));
    assert!(s.set_member_role(&rid, &carol.id, Role::Admin, true).await.is_err());
}

pub async fn seq_is_strictly_increasing_per_room_under_concurrent_inserts(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let r1 = group(&*s, &alice, "one", &[&bob]).await;
    let r2 = group(&*s, &alice, "two", &[&bob]).await;
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let s = Arc::clone(&s);
        let who = if t % 2 == 0 { uref(&alice) } else { uref(&bob) };
        let rid = if t < TASKS / 2 + 2 { r1.clone() } else { r2.clone() };
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let m =
                    s.insert_message(NewMessage::text(rid.clone(), who.clone(), format!("t{t} m{i}"))).await.unwrap();
                got.push((rid.clone(), m.value.seq));
            }
            got
        }));
    }
    let mut per_room: std::collections::BTreeMap<RoomId, Vec<u64>> = Default::default();
    for h in handles {
        let got = h.await.unwrap();
        // Each task's own inserts come back with increasing seq.
        let mine: Vec<_> = got.iter().map(|(_, s)| *s).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        for (rid, seq) in got {
            per_room.entry(rid).or_default().push(seq);
        }
    }
    for (rid, mut all) in per_room {
        all.sort_unstable();
        let n = all.len() as u64;
        assert_eq!(all, (1..=n).collect::<Vec<_>>(), "dense and unique in {rid}");
        let stored = s.messages_after(&rid, 0, 500).await.unwrap();
        assert_eq!(seqs(&stored), (1..=n).collect::<Vec<_>>());
        assert_eq!(s.get_room(&rid).await.unwrap().unwrap().counters.msg_count, n);
    }
}

pub async fn a_retry_with_the_same_client_message_id_returns_the_same_message(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let rid = group(&*s, &alice, "team", &[&bob]).await;
    let mut m = NewMessage::text(rid.clone(), uref(&alice), "once");
    m.client_msg_id = Some("c-1".into());
    let first = s.insert_message(m.clone()).await.unwrap();
    assert!(first.created);
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (s, m) = (Arc::clone(&s), m.clone());
        handles.push(tokio::spawn(async move { s.insert_message(m).await.unwrap() }));
    }
    for h in handles {
        let again = h.await.unwrap();
        assert!(!again.created);
        assert_eq!(again.value, first.value);
    }
    assert_eq!(s.get_room(&rid).await.unwrap().unwrap().counters.msg_count, 1, "no seq consumed by retries");
    // The key is per author: bob may use the same one.
    let mut other = NewMessage::text(rid.clone(), uref(&bob), "mine");
    other.client_msg_id = Some("c-1".into());
    let b = s.insert_message(other).await.unwrap();
    assert!(b.created);
    assert_eq!(b.value.seq, 2);
    let mut long = NewMessage::text(rid.clone(), uref(&bob), "x".repeat(60_000));
    long.client_msg_id = Some("c-2".into());
    assert!(matches!(s.insert_message(long).await, Err(ChatError::TooLong { .. })));
    assert_eq!(s.get_room(&rid).await.unwrap().unwrap().counters.msg_count, 2, "nothing stored half-way");
}

pub async fn deleted_messages_remain_as_tombstones(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let rid = group(&*s, &alice, "team", &[]).await;
    let m = say(&*s, &rid, &alice, "secret plans").await;
    let mut m2 = s.set_reaction(&m.id, ":+1:", &alice.id, true).await.unwrap();
    assert_eq!(m2.reactions.get(":+1:").map(Vec::len), Some(1));
    m2 = s.set_pinned(&m.id, &alice.id, true).await.unwrap();
    assert!(m2.pinned);
    let t = s.delete_message(&m.id).await.unwrap();
    assert!(t.is_deleted());
    assert_eq!((t.msg.as_str(), t.t, t.seq, t.pinned), ("", Some(SystemType::Removed), m.seq, false));
    assert!(t.reactions.is_empty());
    let again = s.delete_message(&m.id).await.unwrap();
    assert_eq!(again.deleted_at, t.deleted_at, "delete is idempotent");
    let page = s.history(&rid, Page::Latest { limit: 10 }).await.unwrap();
    assert_eq!(page.len(), 1);
    assert!(page[0].is_deleted());
    assert!(matches!(s.edit_message(&m.id, "x", &alice.id, vec![]).await, Err(ChatError::MessageDeleted)));
    assert!(matches!(s.set_reaction(&m.id, ":x:", &alice.id, true).await, Err(ChatError::MessageDeleted)));
    assert!(matches!(s.set_pinned(&m.id, &alice.id, true).await, Err(ChatError::MessageDeleted)));
    assert!(s.pinned_messages(&rid, 10).await.unwrap().is_empty());
    let q = SearchQuery { reader: alice.id.clone(), preview_room: None, room: None, text: "plans".into(), limit: 10 };
    assert!(s.search_messages(&q).await.unwrap().is_empty(), "tombstones are not searchable");
    assert!(matches!(s.delete_message(&MessageId::from("ghost")).await, Err(ChatError::NotFound { .. })));
}

pub async fn edits_reactions_pins_and_threads_are_stored(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let rid = group(&*s, &alice, "team", &[&bob]).await;
    let root = say(&*s, &rid, &alice, "root").await;
    let edited = s.edit_message(&root.id, "root v2", &alice.id, vec![]).await.unwrap();
    assert_eq!(edited.msg, "root v2");
    assert_eq!(edited.edited_by.as_ref(), Some(&alice.id));
    assert!(edited.edited_at.is_some());
    s.set_reaction(&root.id, ":tada:", &alice.id, true).await.unwrap();
    let r = s.set_reaction(&root.id, ":tada:", &bob.id, true).await.unwrap();
    assert_eq!(r.reactions[":tada:"], vec![alice.id.clone(), bob.id.clone()]);
    let r = s.set_reaction(&root.id, ":tada:", &alice.id, false).await.unwrap();
    assert_eq!(r.reactions[":tada:"], vec![bob.id.clone()]);
    s.set_pinned(&root.id, &bob.id, true).await.unwrap();
    let pinned = s.pinned_messages(&rid, 10).await.unwrap();
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0].pinned_by.as_ref(), Some(&bob.id));

    let mut reply = NewMessage::text(rid.clone(), uref(&bob), "reply");
    reply.tmid = Some(root.id.clone());
    let reply = s.insert_message(reply).await.unwrap().value;
    assert!(!reply.timeline);
    let mut shown = NewMessage::text(rid.clone(), uref(&alice), "shown reply");
    shown.tmid = Some(root.id.clone());
    shown.tshow = true;
    let shown = s.insert_message(shown).await.unwrap().value;
    let root_now = s.get_message(&root.id).await.unwrap().unwrap();
    assert_eq!(root_now.tcount, 2);
    assert_eq!(root_now.replies, vec![bob.id.clone(), alice.id.clone()]);
    assert!(root_now.tlm.is_some());
    let thread = s.thread_messages(&root.id, 0, 10).await.unwrap();
    assert_eq!(thread.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![reply.id.clone(), shown.id.clone()]);
    let mut nested = NewMessage::text(rid.clone(), uref(&bob), "nested");
    nested.tmid = Some(reply.id.clone());
    assert!(s.insert_message(nested).await.is_err(), "replies attach to the root");
    let other = group(&*s, &bob, "other", &[]).await;
    let mut cross = NewMessage::text(other, uref(&bob), "cross");
    cross.tmid = Some(root.id.clone());
    assert!(matches!(s.insert_message(cross).await, Err(ChatError::NotFound { .. })));
}

pub async fn history_pages_by_seq_in_both_directions(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let rid = group(&*s, &alice, "team", &[]).await;
    let mut first = None;
    for i in 1..=25 {
        let m = say(&*s, &rid, &alice, &format!("m{i}")).await;
        first.get_or_insert(m.id);
    }
    // A thread-only reply (seq 26) is not on the timeline; a shown one (27) is.
    let mut reply = NewMessage::text(rid.clone(), uref(&alice), "hidden reply");
    reply.tmid = first.clone();
    s.insert_message(reply).await.unwrap();
    let mut shown = NewMessage::text(rid.clone(), uref(&alice), "shown reply");
    shown.tmid = first;
    shown.tshow = true;
    s.insert_message(shown).await.unwrap();

    let latest = s.history(&rid, Page::Latest { limit: 10 }).await.unwrap();
    assert_eq!(seqs(&latest), (17..=25).chain([27]).collect::<Vec<_>>());
    let older = s.history(&rid, Page::Before { seq: 17, limit: 10 }).await.unwrap();
    assert_eq!(seqs(&older), (7..=16).collect::<Vec<_>>());
    let oldest = s.history(&rid, Page::Before { seq: 7, limit: 10 }).await.unwrap();
    assert_eq!(seqs(&oldest), (1..=6).collect::<Vec<_>>());
    let newer = s.history(&rid, Page::After { seq: 20, limit: 10 }).await.unwrap();
    assert_eq!(seqs(&newer), vec![21, 22, 23, 24, 25, 27]);
    let capped = s.history(&rid, Page::After { seq: 0, limit: 1000 }).await.unwrap();
    assert_eq!(capped.len(), 26, "timeline excludes the thread-only reply");
    assert!(s.history(&rid, Page::After { seq: 27, limit: 10 }).await.unwrap().is_empty());
    let all = s.messages_after(&rid, 24, 10).await.unwrap();
    assert_eq!(seqs(&all), vec![25, 26, 27], "catch-up includes thread replies");
}

pub async fn sync_reports_new_changed_and_deleted_messages(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let rid = group(&*s, &alice, "team", &[]).await;
    let a = say(&*s, &rid, &alice, "a").await;
    let b = say(&*s, &rid, &alice, "b").await;
    let _c = say(&*s, &rid, &alice, "c").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let since = chat::ids::now_ms();
    s.edit_message(&a.id, "a2", &alice.id, vec![]).await.unwrap();
    s.delete_message(&b.id).await.unwrap();
    let d = say(&*s, &rid, &alice, "d").await;
    let r = s.sync(&rid, 3, since, 100).await.unwrap();
    assert!(!r.reset);
    assert_eq!(seqs(&r.messages), vec![d.seq]);
    assert_eq!(r.updated.iter().map(|m| m.msg.as_str()).collect::<Vec<_>>(), vec!["a2"]);
    assert_eq!(r.deleted.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![b.id.clone()]);
    let reset = s.sync(&rid, 0, since, 2).await.unwrap();
    assert!(reset.reset, "more new messages than the limit asks for a reset");
}

pub async fn search_finds_only_messages_in_rooms_the_reader_may_read(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let eve = user(&*s, "eve").await;
    let secret = group(&*s, &alice, "secret", &[&bob]).await;
    let public = channel(&*s, &alice, "public", &[]).await;
    let in_secret = say(&*s, &secret, &alice, "the banana is in the vault").await;
    let in_public = say(&*s, &public, &alice, "banana bread recipe").await;
    say(&*s, &secret, &alice, "nothing to see").await;
    let q = |reader: &User, preview: Option<&RoomId>, room: Option<&RoomId>, text: &str| SearchQuery {
        reader: reader.id.clone(),
        preview_room: preview.cloned(),
        room: room.cloned(),
        text: text.into(),
        limit: 10,
    };
    let ids = |ms: Vec<chat::message::Message>| ms.into_iter().map(|m| m.id).collect::<BTreeSet<_>>();
    let alice_hits = ids(s.search_messages(&q(&alice, None, None, "banana")).await.unwrap());
    assert_eq!(alice_hits, [in_secret.id.clone(), in_public.id.clone()].into_iter().collect());
    let bob_hits = ids(s.search_messages(&q(&bob, None, None, "banana")).await.unwrap());
    assert_eq!(bob_hits, [in_secret.id.clone()].into_iter().collect());
    assert!(s.search_messages(&q(&eve, None, None, "banana")).await.unwrap().is_empty());
    assert!(
        s.search_messages(&q(&eve, Some(&secret), Some(&secret), "banana")).await.unwrap().is_empty(),
        "a private group cannot be previewed"
    );
    let preview = ids(s.search_messages(&q(&eve, Some(&public), Some(&public), "banana")).await.unwrap());
    assert_eq!(preview, [in_public.id.clone()].into_iter().collect());
    let scoped = ids(s.search_messages(&q(&alice, None, Some(&public), "banana")).await.unwrap());
    assert_eq!(scoped, [in_public.id.clone()].into_iter().collect());
    let both_words = ids(s.search_messages(&q(&alice, None, None, "banana vault")).await.unwrap());
    assert_eq!(both_words, [in_secret.id.clone()].into_iter().collect());
    assert!(s.search_messages(&q(&alice, None, None, "\" OR *")).await.is_ok(), "operators are plain text");
    s.remove_member(&secret, &bob.id).await.unwrap();
    assert!(s.search_messages(&q(&bob, None, None, "banana")).await.unwrap().is_empty(), "access ends with membership");
}

pub async fn unread_counts_go_up_and_back_to_zero_after_mark_read(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let carol = user(&*s, "carol").await;
    let rid = group(&*s, &alice, "team", &[&bob, &carol]).await;
    let root = say(&*s, &rid, &alice, "one").await;
    say(&*s, &rid, &alice, "two").await;
    let mut mention = NewMessage::text(rid.clone(), uref(&alice), "hey @bob");
    mention.mentions = vec![Mention { id: bob.id.clone(), username: "bob".into() }];
    s.insert_message(mention).await.unwrap();
    let mut all = NewMessage::text(rid.clone(), uref(&carol), "@all standup");
    all.group_mention = true;
    s.insert_message(all).await.unwrap();
    let mut reply = NewMessage::text(rid.clone(), uref(&carol), "thread reply");
    reply.tmid = Some(root.id.clone());
    s.insert_message(reply).await.unwrap();

    let state = |uid: UserId| {
        let s = Arc::clone(&s);
        let rid = rid.clone();
        async move {
            let delta = s.subscriptions_for_user(&uid, None).await.unwrap();
            delta.update.into_iter().find(|m| m.subscription.rid == rid).unwrap()
        }
    };
    let b = state(bob.id.clone()).await.unread();
    assert_eq!((b.messages, b.root_messages, b.user_mentions, b.group_mentions), (5, 4, 1, 1));
    let a = state(alice.id.clone()).await.unread();
    assert_eq!((a.messages, a.root_messages, a.user_mentions, a.group_mentions), (2, 1, 0, 1), "own messages are read");
    let c = state(carol.id.clone()).await.unread();
    assert_eq!((c.messages, c.group_mentions), (3, 0));

    let read = s.mark_read(&rid, &bob.id).await.unwrap();
    assert_eq!(read.unread(), chat::unread::Unread::default());
    assert_eq!(read.subscription.read.last_read_seq, 5);
    let b = state(bob.id.clone()).await.unread();
    assert_eq!(b, chat::unread::Unread::default());
    say(&*s, &rid, &alice, "after").await;
    assert_eq!(state(bob.id.clone()).await.unread().messages, 1);

    // A member who joins later does not inherit the backlog as unread.
    let dave = user(&*s, "dave").await;
    s.add_member(&rid, &dave.id, vec![]).await.unwrap();
    assert_eq!(state(dave.id.clone()).await.unread(), chat::unread::Unread::default());
    assert!(matches!(s.mark_read(&rid, &UserId::from("ghost")).await, Err(ChatError::NotFound { .. })));
}

pub async fn subscription_deltas_follow_updated_since(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let r1 = group(&*s, &alice, "one", &[&bob]).await;
    let _r2 = group(&*s, &alice, "two", &[&bob]).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let since = chat::ids::now_ms();
    s.mark_read(&r1, &bob.id).await.unwrap();
    let delta = s.subscriptions_for_user(&bob.id, Some(since)).await.unwrap();
    assert_eq!(delta.update.iter().map(|m| m.subscription.rid.clone()).collect::<Vec<_>>(), vec![r1.clone()]);
    assert!(delta.remove.is_empty());
    s.remove_member(&r1, &bob.id).await.unwrap();
    let delta = s.subscriptions_for_user(&bob.id, Some(since)).await.unwrap();
    assert!(delta.update.is_empty());
    assert_eq!(delta.remove, vec![r1.clone()]);
    s.add_member(&r1, &bob.id, vec![]).await.unwrap();
    let delta = s.subscriptions_for_user(&bob.id, Some(since)).await.unwrap();
    assert!(delta.remove.is_empty(), "a re-join cancels the removal");
    assert_eq!(s.subscriptions_for_user(&bob.id, None).await.unwrap().update.len(), 2);
}

pub async fn permissions_and_settings_persist(h: &dyn Harness) {
    let s = h.open().await;
    assert!(s.permission_overrides().await.unwrap().is_empty());
    s.set_permission(Permission::CreateD, vec![Role::Admin, Role::User, Role::Guest]).await.unwrap();
    s.set_permission(Permission::CreateD, vec![Role::Admin, Role::Guest]).await.unwrap();
    assert!(s.set_permission(Permission::AccessPermissions, vec![Role::User]).await.is_err());
    let overrides = s.permission_overrides().await.unwrap();
    assert_eq!(overrides, vec![(Permission::CreateD, vec![Role::Admin, Role::Guest])]);
    let table = chat::permissions::PermissionTable::with_overrides(overrides).unwrap();
    assert!(!table.grants(Permission::CreateD, &[Role::User], &[]));

    s.set_setting("Message_AllowEditing", serde_json::json!(false)).await.unwrap();
    s.set_setting("Message_AllowEditing", serde_json::json!(true)).await.unwrap();
    s.set_setting("Unread_Count", serde_json::json!("all_messages")).await.unwrap();
    let settings = chat::settings::Settings::from_pairs(s.settings().await.unwrap()).unwrap();
    assert!(settings.message_allow_editing);
    assert_eq!(settings.unread_count, chat::settings::UnreadCount::AllMessages);
}

pub async fn data_survives_reopening_the_store(h: &dyn Harness) {
    let (alice, rid, m) = {
        let s = h.open().await;
        let alice = user_with(&*s, "alice", vec![Role::Admin, Role::User]).await;
        let rid = channel(&*s, &alice, "general", &[]).await;
        let m = say(&*s, &rid, &alice, "persisted words").await;
        s.set_permission(Permission::CreateC, vec![Role::Admin]).await.unwrap();
        (alice, rid, m)
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let s = h.open().await;
    assert_eq!(s.get_user(&alice.id).await.unwrap().unwrap(), alice);
    assert_eq!(s.get_message(&m.id).await.unwrap().unwrap(), m);
    assert_eq!(s.get_room(&rid).await.unwrap().unwrap().counters.msg_count, 1);
    let next = say(&*s, &rid, &alice, "after restart").await;
    assert_eq!(next.seq, 2, "seq continues after a restart");
    let q =
        SearchQuery { reader: alice.id.clone(), preview_room: None, room: None, text: "persisted".into(), limit: 5 };
    assert_eq!(s.search_messages(&q).await.unwrap().len(), 1, "the search index survives too");
    assert_eq!(s.permission_overrides().await.unwrap(), vec![(Permission::CreateC, vec![Role::Admin])]);
}

pub async fn notification_preferences_are_stored_and_members_found_by_level(h: &dyn Harness) {
    let (alice, bob, carol, rid, since) = {
        let s = h.open().await;
        let alice = user(&*s, "alice").await;
        let bob = user(&*s, "bob").await;
        let carol = user(&*s, "carol").await;
        let rid = group(&*s, &alice, "prefs", &[&bob, &carol]).await;
        let fresh = s.get_subscription(&rid, &bob.id).await.unwrap().unwrap();
        assert_eq!(
            (fresh.notify, fresh.open, fresh.favorite, fresh.disable_notifications, fresh.mute_group_mentions),
            (NotifyLevel::Default, true, false, false, false),
            "a new member has the defaults"
        );
        let since = fresh.updated_at + 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let all =
            SubscriptionPrefs { notify: Some(NotifyLevel::All), mute_group_mentions: Some(true), ..Default::default() };
        let bob_sub = s.set_subscription_prefs(&rid, &bob.id, all).await.unwrap();
        assert_eq!((bob_sub.notify, bob_sub.mute_group_mentions, bob_sub.open), (NotifyLevel::All, true, true));
        assert!(bob_sub.updated_at >= since, "a change moves updatedAt");
        let hide = SubscriptionPrefs {
            open: Some(false),
            disable_notifications: Some(true),
            favorite: Some(true),
            ..Default::default()
        };
        s.set_subscription_prefs(&rid, &carol.id, hide.clone()).await.unwrap();
        // The same change again changes nothing and keeps updatedAt.
        let before = s.get_subscription(&rid, &carol.id).await.unwrap().unwrap();
        let again = s.set_subscription_prefs(&rid, &carol.id, hide).await.unwrap();
        assert_eq!(again, before);
        let stranger = user(&*s, "dave").await;
        let e = s.set_subscription_prefs(&rid, &stranger.id, SubscriptionPrefs::default()).await;
        assert!(matches!(e, Err(ChatError::NotFound { .. })), "{e:?}");
        (alice, bob, carol, rid, since)
    };
    // Stored for good: read back after reopening.
    let s = h.open().await;
    let carol_sub = s.get_subscription(&rid, &carol.id).await.unwrap().unwrap();
    assert_eq!(
        (carol_sub.open, carol_sub.disable_notifications, carol_sub.favorite, carol_sub.notify),
        (false, true, true, NotifyLevel::Default)
    );
    let wants_all = s.members_with_notify(&rid, NotifyLevel::All, 10).await.unwrap();
    assert_eq!(wants_all.iter().map(|m| m.uid.clone()).collect::<Vec<_>>(), vec![bob.id.clone()]);
    assert!(s.members_with_notify(&rid, NotifyLevel::Nothing, 10).await.unwrap().is_empty());
    let changed = s.subscriptions_for_user(&bob.id, Some(since)).await.unwrap();
    assert_eq!(changed.update.len(), 1, "the change shows in the delta");
    assert!(s.subscriptions_for_user(&alice.id, Some(since)).await.unwrap().update.is_empty());
}

pub async fn manual_statuses_persist_per_user(h: &dyn Harness) {
    use chat::presence::{Manual, Status};
    let alice = {
        let s = h.open().await;
        let alice = user(&*s, "alice").await;
        assert_eq!(s.user_status(&alice.id).await.unwrap(), None, "never set = automatic");
        let busy = Manual { status: Status::Busy, text: "in a call".into(), at: 10 };
        s.set_user_status(&alice.id, &busy).await.unwrap();
        let away = Manual { status: Status::Away, text: String::new(), at: 11 };
        s.set_user_status(&alice.id, &away).await.unwrap();
        let long = Manual { status: Status::Busy, text: "x".repeat(1000), at: 12 };
        assert!(matches!(s.set_user_status(&alice.id, &long).await, Err(ChatError::TooLong { .. })));
        alice
    };
    let s = h.open().await;
    let got = s.user_status(&alice.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.text.as_str(), got.at), (chat::presence::Status::Away, "", 11));
}

pub async fn integrations_and_their_delivery_history_are_stored(h: &dyn Harness) {
    use chat::integration::{Delivery, DeliveryStatus, Integration, IntegrationKind};
    let s = h.open().await;
    let admin = user_with(&*s, "admin", vec![Role::Admin, Role::User]).await;
    let rid = channel(&*s, &admin, "general", &[]).await;
    let make = |id: &str, kind, at| Integration {
        id: id.into(),
        kind,
        name: format!("hook {id}"),
        enabled: true,
        rid: Some(rid.clone()),
        user_id: admin.id.clone(),
        username: admin.username.clone(),
        alias: Some("Build bot".into()),
        token_hash: (kind == IntegrationKind::Incoming).then(|| "ab".repeat(32)),
        urls: vec!["http://127.0.0.1:9/x".into()],
        trigger_words: vec!["!build".into()],
        trigger_anywhere: true,
        secret: Some("signing secret".into()),
        attempts: 3,
        created_by: admin.id.clone(),
        created_at: at,
        updated_at: at,
    };
    let incoming = make("in1", IntegrationKind::Incoming, 100);
    let outgoing = make("out1", IntegrationKind::Outgoing, 200);
    s.create_integration(&outgoing).await.unwrap();
    s.create_integration(&incoming).await.unwrap();
    assert!(s.create_integration(&incoming).await.is_err(), "ids are unique");
    assert_eq!(s.get_integration("in1").await.unwrap().unwrap(), incoming);
    assert_eq!(s.get_integration("nope").await.unwrap(), None);
    let all = s.list_integrations(None, 10).await.unwrap();
    assert_eq!(all.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["in1", "out1"], "oldest first");
    assert_eq!(s.list_integrations(Some(IntegrationKind::Outgoing), 10).await.unwrap(), vec![outgoing.clone()]);
    assert_eq!(s.list_integrations(None, 1).await.unwrap().len(), 1);

    let now = chat::ids::now_ms();
    let mut d = Delivery {
        id: "d1".into(),
        integration_id: "out1".into(),
        message_id: Some("m1".into()),
        url: "http://127.0.0.1:9/x".into(),
        status: DeliveryStatus::Pending,
        attempts: 1,
        response_code: Some(500),
        error: Some("HTTP 500".into()),
        created_at: now,
        updated_at: now,
    };
    s.record_delivery(&d).await.unwrap();
    d.status = DeliveryStatus::Success;
    d.attempts = 3;
    d.response_code = Some(200);
    d.error = None;
    s.record_delivery(&d).await.unwrap();
    let d2 = Delivery { id: "d2".into(), created_at: now + 1, updated_at: now + 1, ..d.clone() };
    s.record_delivery(&d2).await.unwrap();
    let history = s.deliveries("out1", 10).await.unwrap();
    assert_eq!(history, vec![d2.clone(), d.clone()], "one record per delivery, updated in place, newest first");
    assert_eq!(s.deliveries("out1", 1).await.unwrap(), vec![d2]);
    assert!(s.deliveries("in1", 10).await.unwrap().is_empty());

    assert!(s.delete_integration("out1").await.unwrap());
    assert!(!s.delete_integration("out1").await.unwrap());
    assert!(s.deliveries("out1", 10).await.unwrap().is_empty(), "history goes with the integration");
    assert_eq!(s.list_integrations(None, 10).await.unwrap(), vec![incoming]);
}

pub async fn thread_roots_are_listed_by_latest_reply(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let rid = group(&*s, &alice, "threads", &[]).await;
    let reply = |root: &chat::message::Message, text: &str| {
        let mut m = NewMessage::text(rid.clone(), uref(&alice), text);
        m.tmid = Some(root.id.clone());
        m
    };
    let first = say(&*s, &rid, &alice, "first root").await;
    let second = say(&*s, &rid, &alice, "second root").await;
    say(&*s, &rid, &alice, "no replies").await;
    s.insert_message(reply(&first, "a")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.insert_message(reply(&second, "b")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.insert_message(reply(&first, "c")).await.unwrap();
    let roots = s.thread_roots(&rid, None, 10).await.unwrap();
    let ids: Vec<_> = roots.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, vec![first.id.clone(), second.id.clone()], "latest reply first; no reply, no thread");
    assert_eq!(roots[0].tcount, 2);
    let older = s.thread_roots(&rid, roots[0].tlm, 10).await.unwrap();
    assert_eq!(older.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![second.id.clone()]);
    assert_eq!(s.thread_roots(&rid, None, 1).await.unwrap().len(), 1);
}

pub async fn users_are_listed_with_deactivated_ones_by_a_cursor(h: &dyn Harness) {
    let s = h.open().await;
    for name in ["Carol", "alice", "bob", "dave"] {
        user(&*s, name).await;
    }
    let carol = s.user_by_username("carol").await.unwrap().unwrap();
    s.set_user_active(&carol.id, false).await.unwrap();
    let names = |us: Vec<User>| us.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(names(s.list_users(None, 10).await.unwrap()), ["alice", "bob", "Carol", "dave"]);
    let first = s.list_users(None, 2).await.unwrap();
    assert_eq!(names(first.clone()), ["alice", "bob"]);
    let next = s.list_users(Some(&first[1].username), 2).await.unwrap();
    assert_eq!(names(next.clone()), ["Carol", "dave"], "deactivated users are listed, the cursor ignores case");
    assert!(!next[0].active);
    assert!(s.list_users(Some("DAVE"), 2).await.unwrap().is_empty());
    assert!(s.search_users("c", 10).await.unwrap().is_empty(), "the directory still hides deactivated users");
}

pub async fn rooms_are_renamed_to_free_names_only(h: &dyn Harness) {
    let s = h.open().await;
    let alice = user(&*s, "alice").await;
    let bob = user(&*s, "bob").await;
    let general = channel(&*s, &alice, "general", &[]).await;
    let team = group(&*s, &alice, "team", &[]).await;
    let rename = |n: &str| RoomPatch { name: Some(n.into()), ..Default::default() };
    let renamed = s.update_room(&general, rename("lobby")).await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("lobby"));
    assert_eq!(s.room_by_name("LOBBY").await.unwrap().unwrap().id, general);
    assert!(s.room_by_name("general").await.unwrap().is_none(), "the old name is free again");
    let e = s.update_room(&team, rename("Lobby")).await.unwrap_err();
    assert!(matches!(e, ChatError::Conflict { .. }), "{e:?}");
    assert_eq!(s.get_room(&team).await.unwrap().unwrap().name.as_deref(), Some("team"), "nothing changed");
    s.update_room(&team, rename("general")).await.unwrap();
    let same = s.update_room(&general, rename("Lobby")).await.unwrap();
    assert_eq!(same.name.as_deref(), Some("Lobby"), "a room may change the case of its own name");
    let dm = s.create_room(NewRoom::direct(alice.id.clone(), vec![bob.id.clone()], 8).unwrap()).await.unwrap().value;
    assert!(matches!(s.update_room(&dm.id, rename("dm")).await, Err(ChatError::Invalid { .. })));
    assert!(matches!(s.update_room(&general, rename("bad name")).await, Err(ChatError::Invalid { .. })));
}

fn imported_user(id: &str, name: &str) -> User {
    User {
        id: UserId::from(id),
        username: name.into(),
        name: name.to_uppercase(),
        email: Some(format!("{name}@imported.org")),
        kind: UserKind::User,
        roles: vec![Role::User],
        active: false,
        created_at: 0,
        updated_at: 0,
    }
}

fn imported_message(id: &str, rid: &RoomId, who: &User, text: &str, ts: i64) -> chat::message::Message {
    chat::message::Message {
        id: MessageId::from(id),
        rid: rid.clone(),
        seq: 0,
        u: uref(who),
        msg: text.into(),
        t: None,
        ts,
        updated_at: ts,
        edited_at: None,
        edited_by: None,
        tmid: None,
        tshow: false,
        timeline: true,
        tcount: 0,
        tlm: None,
        replies: Vec::new(),
        mentions: Vec::new(),
        group_mention: false,
        reactions: Default::default(),
        pinned: false,
        pinned_at: None,
        pinned_by: None,
        attachments: Vec::new(),
        client_msg_id: None,
        deleted_at: None,
    }
}

pub async fn an_import_batch_is_written_once_with_history_read_and_threads_counted(h: &dyn Harness) {
    use chat::store::{ImportBatch, ImportProgress};
    let s = h.open().await;
    let live = user(&*s, "live").await;
    let lobby = channel(&*s, &live, "lobby", &[]).await;
    let old_root = say(&*s, &lobby, &live, "an old thread").await;
    let ann = imported_user("imp-ann", "ann");
    let ben = imported_user("imp-ben", "ben");
    let mut room = s.get_room(&lobby).await.unwrap().unwrap();
    room.id = RoomId::from("imp-room");
    room.name = Some("imported".into());
    room.topic = "from elsewhere".into();
    room.counters = Default::default();
    room.created_at = 1_000;
    let member = |rid: &RoomId, u: &User, roles: Vec<Role>| {
        let mut sub = chat::room::Subscription::new_member(&room, u, roles, 1_000);
        sub.rid = rid.clone();
        sub.t = if *rid == lobby { RoomType::Channel } else { room.t };
        sub
    };
    let root = imported_message("imp-m1", &room.id, &ann, "imported rhubarb root", 10_000);
    let mut reply = imported_message("imp-m2", &room.id, &ben, "a reply", 11_000);
    reply.tmid = Some(root.id.clone());
    reply.timeline = false;
    let mut edited = imported_message("imp-m3", &room.id, &ben, "changed later", 12_000);
    edited.edited_at = Some(13_000);
    edited.edited_by = Some(ben.id.clone());
    edited.reactions.insert("+1".into(), vec![ann.id.clone(), ben.id.clone()]);
    let mut lobby_reply = imported_message("imp-m4", &lobby, &ann, "late reply to a live thread", 14_000);
    lobby_reply.tmid = Some(old_root.id.clone());
    lobby_reply.timeline = false;
    let lobby_msg = imported_message("imp-m5", &lobby, &ann, "imported into lobby", 15_000);
    let batch = ImportBatch {
        users: vec![ann.clone(), ben.clone()],
        rooms: vec![room.clone()],
        members: vec![
            member(&room.id, &ann, vec![Role::Owner]),
            member(&room.id, &ben, vec![]),
            member(&lobby, &ann, vec![]),
        ],
        messages: vec![root.clone(), reply, edited, lobby_reply, lobby_msg],
    };
    // The live member of lobby has one unread message before the import.
    let other = user(&*s, "other").await;
    s.add_member(&lobby, &other.id, vec![]).await.unwrap();
    say(&*s, &lobby, &live, "unread for other").await;
    let before = s.get_subscription(&lobby, &other.id).await.unwrap().unwrap();
    let lobby_before = s.get_room(&lobby).await.unwrap().unwrap();
    assert_eq!(before.unread(lobby_before.counters).messages, 1);

    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen2 = seen.clone();
    let progress: ImportProgress = Arc::new(move |n| seen2.store(n, std::sync::atomic::Ordering::Relaxed));
    let out = s.import(batch.clone(), progress.clone()).await.unwrap();
    assert_eq!((out.users, out.rooms, out.members, out.messages.len()), (2, 1, 3, 5));
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 5, "progress reaches the batch size");

    let stored_ann = s.get_user(&ann.id).await.unwrap().unwrap();
    assert!(!stored_ann.active, "imported users start deactivated");
    assert_eq!(s.password_hash(&ann.id).await.unwrap(), None);
    let r = s.get_room(&room.id).await.unwrap().unwrap();
    assert_eq!(
        (r.topic.as_str(), r.users_count, r.counters.msg_count, r.counters.root_count),
        ("from elsewhere", 2, 3, 2)
    );
    assert_eq!(r.last_message_at, Some(12_000));
    let all = s.messages_after(&room.id, 0, 10).await.unwrap();
    assert_eq!(seqs(&all), [1, 2, 3]);
    assert_eq!(all.iter().map(|m| m.ts).collect::<Vec<_>>(), [10_000, 11_000, 12_000], "original times kept");
    assert_eq!(all[0].tcount, 1);
    assert_eq!(all[0].tlm, Some(11_000));
    assert_eq!(all[0].replies, vec![ben.id.clone()]);
    assert_eq!(all[2].edited_at, Some(13_000));
    assert_eq!(all[2].reactions["+1"], vec![ann.id.clone(), ben.id.clone()]);
    let history = s.history(&room.id, Page::Latest { limit: 10 }).await.unwrap();
    assert_eq!(seqs(&history), [1, 3], "the reply is in its thread, not the timeline");
    let old = s.get_message(&old_root.id).await.unwrap().unwrap();
    assert_eq!((old.tcount, old.tlm), (1, Some(14_000)));
    let owner = s.get_subscription(&room.id, &ann.id).await.unwrap().unwrap();
    assert!(owner.is_owner());
    assert_eq!(owner.unread(r.counters).messages, 0, "imported history is read");
    let lobby_after = s.get_room(&lobby).await.unwrap().unwrap();
    assert_eq!(lobby_after.counters.msg_count, lobby_before.counters.msg_count + 2);
    let other_after = s.get_subscription(&lobby, &other.id).await.unwrap().unwrap();
    assert_eq!(other_after.unread(lobby_after.counters).messages, 1, "live unread stays, imported is not added");
    let found = s
        .search_messages(&SearchQuery {
            reader: ann.id.clone(),
            preview_room: None,
            room: None,
            text: "rhubarb".into(),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(found.iter().map(|m| &m.id).collect::<Vec<_>>(), [&root.id]);

    let again = s.import(batch, progress).await.unwrap();
    assert_eq!((again.users, again.rooms, again.members, again.messages.len()), (0, 0, 0, 0));
    assert_eq!(s.get_room(&room.id).await.unwrap().unwrap().counters.msg_count, 3, "nothing twice");
    assert_eq!(s.get_message(&old_root.id).await.unwrap().unwrap().tcount, 1);

    // A taken username (another id) is refused before anything of the batch is written.
    let clash = ImportBatch {
        users: vec![imported_user("imp-x", "LIVE"), imported_user("imp-y", "yves")],
        ..Default::default()
    };
    let e = s.import(clash, Arc::new(|_| {})).await.unwrap_err();
    assert!(matches!(e, ChatError::Conflict { .. }), "{e:?}");
    assert!(s.get_user(&UserId::from("imp-y")).await.unwrap().is_none());
}

// ------------------------------------------------------------------ instantiation

macro_rules! suite {
    ($backend:ident, $harness:expr) => {
        mod $backend {
            suite!(@tests $harness;
                users_are_unique_case_insensitively,
                password_hashes_are_stored_apart_from_the_user,
                sessions_are_found_by_token_hash_and_revoked,
                rooms_are_created_listed_updated_archived_and_deleted,
                membership_keeps_an_owner,
                seq_is_strictly_increasing_per_room_under_concurrent_inserts,
                a_retry_with_the_same_client_message_id_returns_the_same_message,
                deleted_messages_remain_as_tombstones,
                edits_reactions_pins_and_threads_are_stored,
                history_pages_by_seq_in_both_directions,
                sync_reports_new_changed_and_deleted_messages,
                search_finds_only_messages_in_rooms_the_reader_may_read,
                unread_counts_go_up_and_back_to_zero_after_mark_read,
                subscription_deltas_follow_updated_since,
                permissions_and_settings_persist,
                data_survives_reopening_the_store,
                notification_preferences_are_stored_and_members_found_by_level,
                thread_roots_are_listed_by_latest_reply,
                manual_statuses_persist_per_user,
                integrations_and_their_delivery_history_are_stored,
                users_are_listed_with_deactivated_ones_by_a_cursor,
                rooms_are_renamed_to_free_names_only,
                an_import_batch_is_written_once_with_history_read_and_threads_counted,
            );
        }
    };
    (@tests $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(h) = $harness else { return };
                super::$name(&h).await;
            }
        )*
    };
}

mod sqlite_harness {
    use super::*;
    use chat::store::sqlite::SqliteStore;

    pub struct Sqlite {
        dir: tempfile::TempDir,
    }

    impl Sqlite {
        pub fn new() -> Option<Sqlite> {
            Some(Sqlite { dir: tempfile::tempdir().expect("temp dir") })
        }
    }

    #[async_trait]
    impl Harness for Sqlite {
        async fn open(&self) -> Arc<dyn Store> {
            Arc::new(SqliteStore::open(self.dir.path().join("chat.db")).await.expect("open sqlite"))
        }
    }
}

suite!(sqlite, crate::sqlite_harness::Sqlite::new());

mod mongo_harness {
    use super::*;
    use chat::store::mongo::MongoStore;

    pub struct Mongo {
        uri: String,
        db: String,
    }

    impl Mongo {
        /// `None` (and a printed note) when `MONGODB_URI` is not set.
        pub fn new() -> Option<Mongo> {
            match std::env::var("MONGODB_URI") {
                Ok(uri) if !uri.is_empty() => Some(Mongo { uri, db: format!("chat_test_{}", chat::ids::new_id()) }),
                _ => {
                    eprintln!("note: MONGODB_URI is not set; skipping the MongoDB conformance test");
                    None
                }
            }
        }
    }

    #[async_trait]
    impl Harness for Mongo {
        async fn open(&self) -> Arc<dyn Store> {
            Arc::new(MongoStore::connect(&self.uri, &self.db).await.expect("connect to MONGODB_URI"))
        }
    }
}

suite!(mongo, crate::mongo_harness::Mongo::new());
