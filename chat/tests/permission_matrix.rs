//! The §3 permission matrix, end to end: every role × every operation of the table, performed through
//! the [`Service`] on a real SQLite store, asserting that it is allowed or refused with the right error
//! id. One row per §3 row (some §3 rows get several, e.g. channel and group, or the last-owner case),
//! one cell per role; each cell runs on fresh rooms so cells cannot influence each other.
//!
//! Columns: `admin` (global admin, a plain member of the rooms it acts on unless the row says
//! otherwise), `owner` and `moderator` (global `user`s holding that room role in the room acted on),
//! `user` (a plain member), `guest` and `bot` (members with those global roles; the bot authenticates
//! with a personal access token an admin issued). "–" cells of §3 (global permissions for the room-role
//! columns) follow the holder's global role, `user`.
//!
//! Rows whose operation has no service method in this crate yet are decided by the same policy and
//! covered at that level by `policy::tests::every_role_times_every_method_matches_the_section_3_matrix`:
//! user directory/search, set own status, typing, uploads, posting as an alias, rate-limit bypass,
//! integrations. The send rate limit (§7.1) is switched off here: this test is about permissions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chat::ids::{MessageId, RoomId};
use chat::message::{NewMessage, UserRef};
use chat::permissions::Permission;
use chat::roles::Role;
use chat::room::RoomType;
use chat::service::admin::RoomSettings;
use chat::service::{room_channel, Caller, SearchInput, SendInput, Service, UserInput};
use chat::store::sqlite::SqliteStore;
use chat::ChatError;
use serde_json::json;

const PW: &str = "correct horse battery";

/// A §3 column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Admin,
    Owner,
    Moderator,
    User,
    Guest,
    Bot,
}

const COLS: [Col; 6] = [Col::Admin, Col::Owner, Col::Moderator, Col::User, Col::Guest, Col::Bot];

/// What a cell expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Allowed,
    /// Refused with this error id.
    Refused(&'static str),
}

const Y: Want = Want::Allowed;
/// Lacks the permission (or membership) and may know the room exists.
const NA: Want = Want::Refused("error-not-allowed");
/// The same answer as for a room that does not exist (§7.4).
const NF: Want = Want::Refused("error-not-found");
const LAST_OWNER: Want = Want::Refused("error-you-are-last-owner");
const READ_ONLY: Want = Want::Refused("error-room-read-only");
const ARCHIVED: Want = Want::Refused("error-room-archived");

struct Actor {
    caller: Caller,
    username: String,
}

/// The accounts every cell uses. Only rooms are created per cell.
struct World {
    _dir: tempfile::TempDir,
    svc: Service,
    admin: Actor,
    owner: Actor,
    moderator: Actor,
    user: Actor,
    guest: Actor,
    bot: Actor,
    /// The bot's token secret (for the log-in row).
    bot_token: String,
    /// A plain user who is the subject of member operations (removed, promoted, DM peer).
    extra: Actor,
    /// A user who is never a member of the cell's rooms (the one added by "add members"); also the
    /// target of user administration.
    spare: Actor,
    /// Creator of rooms none of the columns belongs to (invisibility rows).
    host: Actor,
    counter: AtomicU64,
}

type Cell<'a> = Pin<Box<dyn Future<Output = Result<(), ChatError>> + Send + 'a>>;
type Op = for<'a> fn(&'a World, Col) -> Cell<'a>;

struct Row {
    /// The §3 operation (and the permission id it needs).
    op: &'static str,
    /// admin, owner, moderator, user, guest, bot.
    want: [Want; 6],
    run: Op,
}

async fn login(svc: &Service, username: &str) -> Actor {
    let l = svc.login(username, PW, None).await.unwrap();
    Actor { caller: Caller { uid: l.user.id, sid: l.session.id }, username: username.into() }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("chat.db")).await.unwrap();
    let svc = Service::new(Arc::new(store)).await.unwrap();
    svc.bootstrap_admin("root", PW).await.unwrap();
    svc.set_setting_as_operator("Message_RateLimit_PerSecond", json!(0)).await.unwrap();
    let admin = login(&svc, "root").await;
    let accounts = [
        ("olivia", Role::User),
        ("mo", Role::User),
        ("ursula", Role::User),
        ("gus", Role::Guest),
        ("robo", Role::Bot),
        ("extra", Role::User),
        ("spare", Role::User),
        ("hope", Role::User),
    ];
    for (name, role) in accounts {
        let input =
            UserInput { username: name.into(), name: None, email: None, password: PW.into(), roles: Some(vec![role]) };
        svc.create_user(&admin.caller, input).await.unwrap();
    }
    // The bot logs in the way bots do: with a personal access token an admin issued for it.
    let robo = svc.store().user_by_username("robo").await.unwrap().unwrap();
    let issued = svc.create_personal_token(&admin.caller, "ci", Some(&robo.id)).await.unwrap();
    let resumed = svc.resume(&issued.secret).await.unwrap();
    let bot = Actor { caller: Caller { uid: resumed.user.id, sid: resumed.session.id }, username: "robo".into() };
    World {
        owner: login(&svc, "olivia").await,
        moderator: login(&svc, "mo").await,
        user: login(&svc, "ursula").await,
        guest: login(&svc, "gus").await,
        extra: login(&svc, "extra").await,
        spare: login(&svc, "spare").await,
        host: login(&svc, "hope").await,
        bot,
        bot_token: issued.secret,
        admin,
        svc,
        _dir: dir,
        counter: AtomicU64::new(0),
    }
}

impl World {
    fn actor(&self, col: Col) -> &Actor {
        match col {
            Col::Admin => &self.admin,
            Col::Owner => &self.owner,
            Col::Moderator => &self.moderator,
            Col::User => &self.user,
            Col::Guest => &self.guest,
            Col::Bot => &self.bot,
        }
    }

    fn me(&self, col: Col) -> &Caller {
        &self.actor(col).caller
    }

    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// A room of `owner` with every column, `extra`, and `mo` as moderator.
    async fn room(&self, t: RoomType, read_only: bool) -> RoomId {
        let members: Vec<String> =
            ["root", "mo", "ursula", "gus", "robo", "extra"].iter().map(|s| (*s).to_owned()).collect();
        let name = self.unique("room");
        let rid = self.svc.create_room(&self.owner.caller, t, &name, &members, read_only).await.unwrap().value.id;
        self.svc
            .set_room_role(&self.owner.caller, &rid, &self.moderator.caller.uid, Role::Moderator, true)
            .await
            .unwrap();
        rid
    }

    /// A room of `hope` alone: nobody of the columns is a member.
    async fn foreign_room(&self, t: RoomType) -> RoomId {
        let name = self.unique("foreign");
        self.svc.create_room(&self.host.caller, t, &name, &[], false).await.unwrap().value.id
    }

    /// The DM between `extra` and the column's actor, opened by `extra`.
    async fn dm_with(&self, col: Col) -> RoomId {
        self.svc
            .open_direct(&self.extra.caller, std::slice::from_ref(&self.actor(col).username))
            .await
            .unwrap()
            .value
            .id
    }

    /// A message by `extra`, written straight to the store: setup, not under test.
    async fn seed(&self, rid: &RoomId, text: &str) -> MessageId {
        let author = UserRef { id: self.extra.caller.uid.clone(), username: "extra".into(), name: "extra".into() };
        self.svc.store().insert_message(NewMessage::text(rid.clone(), author, text)).await.unwrap().value.id
    }

    async fn post(&self, who: &Caller, rid: &RoomId, text: &str) -> Result<MessageId, ChatError> {
        let input = SendInput { rid: rid.clone(), msg: text.into(), client_msg_id: None, tmid: None, tshow: false };
        Ok(self.svc.send(who, input).await?.value.message.id)
    }
}

/// Runs `op` on a private room the actor is not in and on an id that does not exist; the answers must
/// be the same error (id and text), which is then the cell's result.
async fn as_if_missing<F, Fut>(w: &World, t: RoomType, op: F) -> Result<(), ChatError>
where
    F: Fn(RoomId) -> Fut,
    Fut: Future<Output = Result<(), ChatError>>,
{
    let rid = match t {
        RoomType::Direct => {
            w.svc.open_direct(&w.extra.caller, std::slice::from_ref(&w.host.username)).await.unwrap().value.id
        }
        _ => w.foreign_room(t).await,
    };
    let real = op(rid).await;
    let missing = op(RoomId::from("NoSuchRoom0000000")).await;
    match (real, missing) {
        (Err(a), Err(b)) if a.id() == b.id() && a.to_string() == b.to_string() => Err(a),
        (Ok(()), Ok(())) => Ok(()),
        _ => Err(ChatError::Invalid { field: "test", reason: "answer differs from a missing room's" }),
    }
}

macro_rules! cell {
    (|$w:ident, $c:ident| $body:expr) => {{
        fn f<'a>($w: &'a World, $c: Col) -> Cell<'a> {
            Box::pin(async move { $body })
        }
        f as Op
    }};
}

fn rows() -> Vec<Row> {
    use RoomType::{Channel as C, Direct as D, Group as P};
    vec![
        // ---- accounts
        Row {
            op: "log in, resume, log out self (bot: with its personal access token)",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let secret = if c == Col::Bot {
                    w.bot_token.clone()
                } else {
                    w.svc.login(&w.actor(c).username, PW, None).await?.token.unwrap()
                };
                let l = w.svc.resume(&secret).await?;
                w.svc.logout(&Caller { uid: l.user.id, sid: l.session.id }).await.map(|_| ())
            }),
        },
        Row {
            op: "create personal access token (create-personal-access-tokens)",
            want: [Y, Y, Y, Y, NA, NA],
            run: cell!(|w, c| w.svc.create_personal_token(w.me(c), &w.unique("t"), None).await.map(|_| ())),
        },
        Row {
            op: "issue a token for another user (user-generate-access-token)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| {
                w.svc.create_personal_token(w.me(c), &w.unique("t"), Some(&w.spare.caller.uid)).await.map(|_| ())
            }),
        },
        // ---- creating rooms
        Row {
            op: "create public channel (create-c)",
            want: [Y, Y, Y, Y, NA, Y],
            run: cell!(|w, c| w.svc.create_room(w.me(c), C, &w.unique("c"), &[], false).await.map(|_| ())),
        },
        Row {
            op: "create private group (create-p)",
            want: [Y, Y, Y, Y, NA, Y],
            run: cell!(|w, c| w.svc.create_room(w.me(c), P, &w.unique("p"), &[], false).await.map(|_| ())),
        },
        Row {
            op: "open DM (create-d)",
            want: [Y, Y, Y, Y, NA, Y],
            run: cell!(|w, c| w.svc.open_direct(w.me(c), &["spare".into()]).await.map(|_| ())),
        },
        Row {
            op: "answer a DM someone else opened (view-d-room)",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.dm_with(c).await;
                w.post(w.me(c), &rid, "hello back").await.map(|_| ())
            }),
        },
        // ---- reading
        Row {
            op: "join public channel (view-c-room)",
            want: [Y, Y, Y, Y, NA, Y],
            run: cell!(|w, c| {
                let rid = w.foreign_room(C).await;
                w.svc.join(w.me(c), &rid).await.map(|_| ())
            }),
        },
        Row {
            op: "read public channel without joining (preview-c-room)",
            want: [Y, Y, Y, Y, NA, NA],
            run: cell!(|w, c| {
                let rid = w.foreign_room(C).await;
                w.svc.history(w.me(c), &rid, None, None).await.map(|_| ())
            }),
        },
        Row {
            op: "read private group as member",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.history(w.me(c), &rid, None, None).await.map(|_| ())
            }),
        },
        Row {
            op: "read DM as member",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.dm_with(c).await;
                w.svc.history(w.me(c), &rid, None, None).await.map(|_| ())
            }),
        },
        // ---- what a non-member cannot learn (§7.4; admins included, §3 "admin reads private content")
        Row {
            op: "non-member: getRoomInfo of a private group = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, P, |rid| async move { w.svc.room_info(w.me(c), &rid).await.map(|_| ()) }).await
            }),
        },
        Row {
            op: "non-member: loadHistory of a private group = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, P, |rid| async move { w.svc.history(w.me(c), &rid, None, None).await.map(|_| ()) })
                    .await
            }),
        },
        Row {
            op: "non-member: syncMessages of a private group = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, P, |rid| async move { w.svc.sync(w.me(c), &rid, 0, 0, None).await.map(|_| ()) }).await
            }),
        },
        Row {
            op: "non-member: getRoomMembers of a private group = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, P, |rid| async move { w.svc.members(w.me(c), &rid, None, None).await.map(|_| ()) })
                    .await
            }),
        },
        Row {
            op: "non-member: subscribe to room/<rid> of a private group = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, P, |rid| async move {
                    w.svc.check_channel(Some(w.me(c)), &room_channel(&rid)).await.unwrap()
                })
                .await
            }),
        },
        Row {
            op: "non-member: subscribe to room/<rid> of a DM = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, D, |rid| async move {
                    w.svc.check_channel(Some(w.me(c)), &room_channel(&rid)).await.unwrap()
                })
                .await
            }),
        },
        Row {
            op: "non-member: loadHistory of a DM = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, D, |rid| async move { w.svc.history(w.me(c), &rid, None, None).await.map(|_| ()) })
                    .await
            }),
        },
        Row {
            op: "non-member: post into or join a private group = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, P, |rid| async move {
                    let post = w.post(w.me(c), &rid, "let me in").await.map(|_| ());
                    let join = w.svc.join(w.me(c), &rid).await.map(|_| ());
                    match (post, join) {
                        (Err(a), Err(b)) if a.id() == b.id() => Err(a),
                        (p, j) => p.and(j),
                    }
                })
                .await
            }),
        },
        Row {
            op: "non-member: search in a private group = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, P, |rid| async move {
                    let input = SearchInput { text: "secret".into(), rid: Some(rid), limit: None };
                    w.svc.search(w.me(c), input).await.map(|_| ())
                })
                .await
            }),
        },
        Row {
            op: "non-member: a search of all one's rooms finds nothing of a private group",
            want: [Y; 6],
            run: cell!(|w, c| {
                let rid = w.foreign_room(P).await;
                let word = w.unique("needle").replace('-', "");
                w.post(&w.host.caller, &rid, &word).await?;
                let own =
                    w.svc.search(&w.host.caller, SearchInput { text: word.clone(), rid: None, limit: None }).await?;
                if own.is_empty() {
                    return Err(ChatError::Invalid { field: "test", reason: "the member's own search misses it" });
                }
                let hits = w.svc.search(w.me(c), SearchInput { text: word, rid: None, limit: None }).await?;
                if hits.is_empty() {
                    Ok(())
                } else {
                    Err(ChatError::Invalid { field: "test", reason: "search leaked a private message" })
                }
            }),
        },
        Row {
            op: "non-member: pinned list of a private group = missing room",
            want: [NF; 6],
            run: cell!(|w, c| {
                as_if_missing(w, P, |rid| async move { w.svc.pinned_messages(w.me(c), &rid, None).await.map(|_| ()) })
                    .await
            }),
        },
        // ---- membership
        Row {
            op: "leave channel (leave-c; the owner is not the last one here)",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                w.svc.set_room_role(&w.owner.caller, &rid, &w.extra.caller.uid, Role::Owner, true).await?;
                w.svc.leave(w.me(c), &rid).await.map(|_| ())
            }),
        },
        Row {
            op: "leave private group (leave-p; the owner is not the last one here)",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.set_room_role(&w.owner.caller, &rid, &w.extra.caller.uid, Role::Owner, true).await?;
                w.svc.leave(w.me(c), &rid).await.map(|_| ())
            }),
        },
        Row {
            op: "leave private group as its last owner (hand over first)",
            want: [Y, LAST_OWNER, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.leave(w.me(c), &rid).await.map(|_| ())
            }),
        },
        Row {
            op: "add members (add-user-to-joined-room)",
            want: [Y, Y, Y, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.add_members(w.me(c), &rid, &["spare".into()]).await.map(|_| ())
            }),
        },
        Row {
            op: "remove members (remove-user)",
            want: [Y, Y, Y, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.remove_member(w.me(c), &rid, "extra").await.map(|_| ())
            }),
        },
        // ---- room settings and roles
        Row {
            op: "edit name/topic/description/announcement (edit-room)",
            want: [Y, Y, Y, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                let change = RoomSettings {
                    name: Some(w.unique("renamed")),
                    fname: Some("Renamed".into()),
                    topic: Some("topic".into()),
                    description: Some("description".into()),
                    announcement: Some("announcement".into()),
                    ..RoomSettings::default()
                };
                w.svc.save_room_settings(w.me(c), &rid, change).await.map(|_| ())
            }),
        },
        Row {
            op: "set read-only (set-readonly)",
            want: [Y, Y, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                let change = RoomSettings { read_only: Some(true), ..RoomSettings::default() };
                w.svc.save_room_settings(w.me(c), &rid, change).await.map(|_| ())
            }),
        },
        Row {
            op: "grant owner (set-owner)",
            want: [Y, Y, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                w.svc.set_room_role(w.me(c), &rid, &w.extra.caller.uid, Role::Owner, true).await.map(|_| ())
            }),
        },
        Row {
            op: "grant moderator (set-moderator)",
            want: [Y, Y, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.set_room_role(w.me(c), &rid, &w.extra.caller.uid, Role::Moderator, true).await.map(|_| ())
            }),
        },
        Row {
            op: "revoke moderator (set-moderator)",
            want: [Y, Y, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.set_room_role(w.me(c), &rid, &w.moderator.caller.uid, Role::Moderator, false).await.map(|_| ())
            }),
        },
        Row {
            op: "revoke the only owner's role (set-owner; last-owner rule)",
            want: [LAST_OWNER, LAST_OWNER, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.set_room_role(w.me(c), &rid, &w.owner.caller.uid, Role::Owner, false).await.map(|_| ())
            }),
        },
        Row {
            op: "archive (archive-room)",
            want: [Y, Y, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                w.svc.set_archived(w.me(c), &rid, true).await.map(|_| ())
            }),
        },
        Row {
            op: "unarchive (unarchive-room)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                w.svc.set_archived(&w.owner.caller, &rid, true).await?;
                w.svc.set_archived(w.me(c), &rid, false).await.map(|_| ())
            }),
        },
        Row {
            op: "delete public channel (delete-c)",
            want: [Y, Y, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                w.svc.erase_room(w.me(c), &rid).await.map(|_| ())
            }),
        },
        Row {
            op: "delete private group (delete-p: its owner or an admin only)",
            want: [Y, Y, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.erase_room(w.me(c), &rid).await.map(|_| ())
            }),
        },
        Row {
            op: "delete a private group one is not in (admins by id; others cannot tell it exists)",
            want: [Y, NF, NF, NF, NF, NF],
            run: cell!(|w, c| {
                let rid = w.foreign_room(P).await;
                w.svc.erase_room(w.me(c), &rid).await.map(|_| ())
            }),
        },
        Row {
            op: "delete DM (delete-d)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.dm_with(c).await;
                w.svc.erase_room(w.me(c), &rid).await.map(|_| ())
            }),
        },
        // ---- messages
        Row {
            op: "post message (membership)",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                w.post(w.me(c), &rid, "hello").await.map(|_| ())
            }),
        },
        Row {
            op: "post in a read-only room (post-readonly)",
            want: [Y, Y, Y, READ_ONLY, READ_ONLY, READ_ONLY],
            run: cell!(|w, c| {
                let rid = w.room(C, true).await;
                w.post(w.me(c), &rid, "hello").await.map(|_| ())
            }),
        },
        Row {
            op: "post in an archived room (nobody)",
            want: [ARCHIVED; 6],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.set_archived(&w.owner.caller, &rid, true).await?;
                w.post(w.me(c), &rid, "hello").await.map(|_| ())
            }),
        },
        Row {
            op: "mention @all (mention-all)",
            want: [Y, Y, Y, Y, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                w.post(w.me(c), &rid, "hey @all").await.map(|_| ())
            }),
        },
        Row {
            op: "mention @here (mention-here)",
            want: [Y, Y, Y, Y, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                w.post(w.me(c), &rid, "hey @here").await.map(|_| ())
            }),
        },
        Row {
            op: "reply in a thread (membership)",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                let root = w.seed(&rid, "root").await;
                let input = SendInput { rid, msg: "reply".into(), client_msg_id: None, tmid: Some(root), tshow: false };
                w.svc.send(w.me(c), input).await.map(|_| ())
            }),
        },
        Row {
            op: "edit own message (Message_AllowEditing)",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                let mid = w.post(w.me(c), &rid, "typo").await?;
                w.svc.edit(w.me(c), &mid, "fixed").await.map(|_| ())
            }),
        },
        Row {
            op: "edit others' messages (edit-message)",
            want: [Y, Y, Y, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                let mid = w.seed(&rid, "mine").await;
                w.svc.edit(w.me(c), &mid, "yours").await.map(|_| ())
            }),
        },
        Row {
            op: "delete own message (delete-own-message)",
            want: [Y, Y, Y, Y, NA, Y],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                let mid = w.post(w.me(c), &rid, "oops").await?;
                w.svc.delete(w.me(c), &mid).await.map(|_| ())
            }),
        },
        Row {
            op: "delete others' messages (delete-message)",
            want: [Y, Y, Y, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                let mid = w.seed(&rid, "spam").await;
                w.svc.delete(w.me(c), &mid).await.map(|_| ())
            }),
        },
        Row {
            op: "react (membership)",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                let mid = w.seed(&rid, "nice").await;
                w.svc.set_reaction(w.me(c), &mid, ":tada:", Some(true)).await.map(|_| ())
            }),
        },
        Row {
            op: "react in a read-only room (post-readonly unless reactions are allowed)",
            want: [Y, Y, Y, READ_ONLY, READ_ONLY, READ_ONLY],
            run: cell!(|w, c| {
                let rid = w.room(C, true).await;
                let mid = w.seed(&rid, "announcement").await;
                w.svc.set_reaction(w.me(c), &mid, ":tada:", Some(true)).await.map(|_| ())
            }),
        },
        Row {
            op: "pin (pin-message)",
            want: [Y, Y, Y, NA, NA, NA],
            run: cell!(|w, c| {
                let rid = w.room(C, false).await;
                let mid = w.seed(&rid, "important").await;
                w.svc.set_pinned(w.me(c), &mid, true).await.map(|_| ())
            }),
        },
        Row {
            op: "list pinned messages and search a room as member",
            want: [Y, Y, Y, Y, Y, Y],
            run: cell!(|w, c| {
                let rid = w.room(P, false).await;
                w.svc.pinned_messages(w.me(c), &rid, None).await?;
                let input = SearchInput { text: "anything".into(), rid: Some(rid), limit: None };
                w.svc.search(w.me(c), input).await.map(|_| ())
            }),
        },
        // ---- users, roles, permissions, settings (admin only)
        Row {
            op: "create user (create-user)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let input =
                    UserInput { username: w.unique("new"), name: None, email: None, password: PW.into(), roles: None };
                w.svc.create_user(w.me(c), input).await.map(|_| ())
            }),
        },
        Row {
            op: "set a user's roles (assign-roles)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| w.svc.set_user_roles(w.me(c), &w.spare.caller.uid, vec![Role::User]).await.map(|_| ())),
        },
        Row {
            op: "list users, deactivated ones included (view-user-administration)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| w.svc.list_users(w.me(c), None, None).await.map(|_| ())),
        },
        Row {
            op: "see the cluster view (view-cluster)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| w.svc.authorize_view_cluster(w.me(c)).await),
        },
        Row {
            op: "reactivate a user (edit-other-user-active-status)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| w.svc.set_user_active(w.me(c), &w.spare.caller.uid, true).await.map(|_| ())),
        },
        Row {
            op: "log another user out (logout-other-user)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| {
                // `spare` has a session of its own in the world; a fresh user keeps it intact.
                let input = UserInput {
                    username: w.unique("victim"),
                    name: None,
                    email: None,
                    password: PW.into(),
                    roles: None,
                };
                let victim = w.svc.create_user(&w.admin.caller, input).await.unwrap();
                w.svc.logout_user(w.me(c), &victim.id).await.map(|_| ())
            }),
        },
        Row {
            op: "edit permissions (access-permissions)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| {
                let same = Permission::CreateC.default_roles().to_vec();
                w.svc.update_permissions(w.me(c), vec![(Permission::CreateC, same)]).await.map(|_| ())
            }),
        },
        Row {
            op: "edit settings (edit-privileged-setting)",
            want: [Y, NA, NA, NA, NA, NA],
            run: cell!(|w, c| w.svc.set_setting(w.me(c), "Message_AllowPinning", json!(true)).await.map(|_| ())),
        },
    ]
}

fn outcome(r: &Result<(), ChatError>) -> Want {
    match r {
        Ok(()) => Want::Allowed,
        Err(e) => Want::Refused(e.id()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_times_every_operation_of_section_3_through_the_service() {
    let w = world().await;
    let mut failures = Vec::new();
    let mut cells = 0;
    for row in rows() {
        for (col, want) in COLS.iter().zip(row.want) {
            let got = (row.run)(&w, *col).await;
            cells += 1;
            if outcome(&got) != want {
                failures.push(format!("{} as {col:?}: expected {want:?}, got {got:?}", row.op));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cells} cells differ from §3:\n{}", failures.len(), failures.join("\n"));
}

/// The rows above pass the same refusal for a hidden room and a missing one; this makes sure the
/// helper would notice a difference (a test that cannot fail proves nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invisibility_check_tells_a_leak_from_a_missing_room() {
    let w = world().await;
    // A public channel answers a non-member differently from a missing room (it can be previewed).
    let w = &w;
    let leak = as_if_missing(w, RoomType::Channel, |rid| async move {
        w.svc.history(&w.user.caller, &rid, None, None).await.map(|_| ())
    })
    .await;
    assert!(matches!(leak, Err(ChatError::Invalid { field: "test", .. })), "{leak:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_settings_are_shown_to_admins_only() {
    let w = world().await;
    let key = |list: &[(String, serde_json::Value)], k: &str| list.iter().any(|(key, _)| key == k);
    let admin = w.svc.settings_list(&w.admin.caller).await.unwrap();
    assert!(key(&admin, "SSRF_Allowlist") && key(&admin, "Message_MaxAllowedSize"));
    for col in [Col::Owner, Col::Moderator, Col::User, Col::Guest, Col::Bot] {
        let list = w.svc.settings_list(w.me(col)).await.unwrap();
        assert!(key(&list, "Message_MaxAllowedSize"), "{col:?} sees the public settings");
        assert!(!key(&list, "SSRF_Allowlist"), "{col:?} must not see privileged settings");
    }
    // Everyone may read the permission table (the server still checks every call).
    let table = w.svc.permissions_list(&w.guest.caller).await.unwrap();
    assert_eq!(table.len(), Permission::ALL.len());
}
