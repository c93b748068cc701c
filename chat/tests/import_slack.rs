//! `chat import slack`: a small Slack export written here (channels, a private group, a DM, an mpim,
//! threads, reactions, an edit, files, a join message, a message by an unknown user, a bot message)
//! imported into a real SQLite file; then what a user of the chat would check. Bad archives must leave
//! the store exactly as it was. The binary is run end to end for its output and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: helpers outside #[test]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chat::ids::RoomId;
use chat::import::{apply, plan, slack};
use chat::room::RoomType;
use chat::store::sqlite::SqliteStore;
use chat::store::{Page, SearchQuery, Store};
use serde_json::json;

type Entries = Vec<(String, String)>;

fn zip_bytes(entries: &Entries) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in entries {
        w.start_file(name.as_str(), zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(content.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn write_zip(path: &Path, entries: &Entries) {
    std::fs::write(path, zip_bytes(entries)).unwrap();
}

fn day(messages: serde_json::Value) -> String {
    serde_json::to_string_pretty(&messages).unwrap()
}

const ROOT_TS: &str = "1704103200.000100";

/// The test workspace: alice, bob, carol, dave (deleted), a bot user.
fn export() -> Entries {
    let users = json!([
        {"id": "U1", "name": "alice", "real_name": "Alice Liddell", "profile": {"email": "alice@example.org"}},
        {"id": "U2", "name": "bob", "profile": {"real_name": "Bob Builder", "email": "bob@example.org"}},
        {"id": "U3", "name": "carol", "real_name": "Carol C"},
        {"id": "U4", "name": "dave", "real_name": "Dave Gone", "deleted": true},
        {"id": "U5", "name": "deploybot", "real_name": "Deploy Bot", "is_bot": true}
    ]);
    let channels = json!([
        {"id": "C1", "name": "general", "created": 1_704_067_200, "creator": "U1", "members": ["U1", "U2", "U3"],
         "topic": {"value": "All &amp; everything"}, "purpose": {"value": "Company-wide"}},
        {"id": "C2", "name": "random", "created": 1_704_067_300, "creator": "U2", "members": ["U1", "U2"]}
    ]);
    let groups =
        json!([{"id": "G1", "name": "secret", "created": 1_704_067_400, "creator": "U3", "members": ["U1", "U3"]}]);
    let dms = json!([{"id": "D1", "created": 1_704_067_500, "members": ["U1", "U2"]}]);
    let mpims = json!([{"id": "G2", "name": "mpdm-alice--bob--carol-1", "created": 1_704_067_600, "creator": "U1",
                        "members": ["U1", "U2", "U3"]}]);
    let general_1 = json!([
        {"type": "message", "subtype": "channel_join", "user": "U3", "text": "<@U3> has joined the channel", "ts": "1704103100.000100"},
        {"type": "message", "user": "U1", "ts": ROOT_TS, "thread_ts": ROOT_TS, "reply_count": 2,
         "text": "Welcome <@U2> to <#C2|random>, see <https://example.org/docs|the docs> &amp; <!here>",
         "reactions": [{"name": "tada", "users": ["U2", "U3"], "count": 2}, {"name": "+1", "users": ["U2"], "count": 1}]},
        {"type": "message", "user": "U2", "ts": "1704103260.000200", "thread_ts": ROOT_TS, "text": "thanks!"},
        {"type": "message", "user": "U3", "ts": "1704103320.000300", "thread_ts": ROOT_TS, "text": "glad to be here"},
        {"type": "message", "user": "U2", "ts": "1704103380.000400", "text": "fixed the typo",
         "edited": {"user": "U2", "ts": "1704103400.000000"}},
        {"type": "message", "user": "U1", "ts": "1704103440.000500", "text": "the plan",
         "files": [{"id": "F1", "name": "plan.pdf", "title": "Plan", "mimetype": "application/pdf", "size": 52_431,
                    "url_private": "https://files.slack.com/files-pri/T1-F1/plan.pdf"}]},
        {"type": "message", "user": "U9", "ts": "1704103500.000600", "text": "who am I"},
        {"type": "message", "subtype": "bot_message", "bot_id": "B1", "username": "ci", "ts": "1704103560.000700", "text": "build passed"}
    ]);
    let general_2 = json!([{"type": "message", "user": "U3", "ts": "1704189600.000100", "text": "rhubarb for lunch"}]);
    vec![
        ("users.json".into(), users.to_string()),
        ("channels.json".into(), channels.to_string()),
        ("groups.json".into(), groups.to_string()),
        ("dms.json".into(), dms.to_string()),
        ("mpims.json".into(), mpims.to_string()),
        ("general/2024-01-01.json".into(), day(general_1)),
        ("general/2024-01-02.json".into(), day(general_2)),
        (
            "random/2024-01-01.json".into(),
            day(json!([{"user": "U2", "ts": "1704103000.000100", "text": "random thought"}])),
        ),
        (
            "secret/2024-01-01.json".into(),
            day(json!([{"user": "U3", "ts": "1704103000.000200", "text": "private plans"}])),
        ),
        ("D1/2024-01-01.json".into(), day(json!([{"user": "U1", "ts": "1704103000.000300", "text": "hi bob"}]))),
        (
            "mpdm-alice--bob--carol-1/2024-01-01.json".into(),
            day(json!([{"user": "U3", "ts": "1704103000.000400", "text": "the three of us"}])),
        ),
    ]
}

async fn import(store: &dyn Store, entries: &Entries) -> Result<chat::import::Summary, chat::import::ImportError> {
    let archive = slack::parse(&zip_bytes(entries), &mut |_, _| {})?;
    apply::run(store, &archive, Arc::new(|_| {})).await
}

/// Every row of every table, in a fixed order: equal dumps mean an unchanged store.
fn dump(db: &Path) -> String {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'messages_fts%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = String::new();
    for t in tables {
        let mut stmt = c.prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1, 2")).unwrap();
        let cols = stmt.column_count();
        let rows: Vec<String> = stmt
            .query_map([], |r| {
                Ok((0..cols).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.push_str(&format!("== {t} ({} rows)\n{}\n", rows.len(), rows.join("\n")));
    }
    out
}

#[tokio::test]
async fn a_slack_export_is_imported_with_rooms_members_threads_reactions_edits_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("chat.db")).await.unwrap();
    let s = import(&store, &export()).await.unwrap();
    assert_eq!((s.users.imported, s.rooms.imported, s.members.imported), (5, 5, 12));
    assert_eq!((s.messages.imported, s.thread_replies.imported, s.reactions.imported), (10, 2, 3));
    assert_eq!((s.edits.imported, s.file_references.imported), (1, 1));
    assert_eq!(s.skipped["unsupported subtype channel_join"], 1);
    assert_eq!(s.skipped["author not in users.json"], 1);
    assert_eq!(s.skipped["bot or integration message without a user"], 1);
    assert!(s.to_string().contains("no file was downloaded"), "{s}");

    // Users: deactivated, no password, Slack names kept.
    let alice = store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(
        (alice.name.as_str(), alice.email.as_deref(), alice.active),
        ("Alice Liddell", Some("alice@example.org"), false)
    );
    assert_eq!(store.password_hash(&alice.id).await.unwrap(), None);
    let bob = store.user_by_username("bob").await.unwrap().unwrap();
    assert_eq!(bob.name, "Bob Builder");
    let carol = store.user_by_username("carol").await.unwrap().unwrap();
    let bot = store.user_by_username("deploybot").await.unwrap().unwrap();
    assert_eq!(bot.kind, chat::user::UserKind::Bot);

    // Rooms and members.
    let general = store.room_by_name("general").await.unwrap().unwrap();
    assert_eq!(
        (general.t, general.topic.as_str(), general.description.as_str()),
        (RoomType::Channel, "All & everything", "Company-wide")
    );
    assert_eq!(general.created_at, 1_704_067_200_000);
    assert_eq!(general.users_count, 3);
    let owner = store.get_subscription(&general.id, &alice.id).await.unwrap().unwrap();
    assert!(owner.is_owner(), "the Slack creator owns the channel");
    assert!(!store.get_subscription(&general.id, &bob.id).await.unwrap().unwrap().is_owner());
    let secret = store.room_by_name("secret").await.unwrap().unwrap();
    assert_eq!(secret.t, RoomType::Group);
    assert!(store.get_subscription(&secret.id, &carol.id).await.unwrap().unwrap().is_owner());
    assert!(store.get_subscription(&secret.id, &bob.id).await.unwrap().is_none(), "bob is not in the private group");
    let mpim = store.room_by_name("mpdm-alice--bob--carol-1").await.unwrap().unwrap();
    assert_eq!((mpim.t, mpim.users_count), (RoomType::Group, 3));
    let dms: Vec<_> =
        store.rooms_for_user(&bob.id, None).await.unwrap().into_iter().filter(|r| r.t == RoomType::Direct).collect();
    assert_eq!(dms.len(), 1);
    assert_eq!(store.history(&dms[0].id, Page::Latest { limit: 10 }).await.unwrap()[0].msg, "hi bob");

    // Messages: converted text, original times, ascending seq, threads, reactions, edits, files.
    let timeline = store.history(&general.id, Page::Latest { limit: 50 }).await.unwrap();
    let texts: Vec<&str> = timeline.iter().map(|m| m.msg.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Welcome @bob to #random, see [the docs](https://example.org/docs) & @here",
            "fixed the typo",
            "the plan",
            "rhubarb for lunch"
        ]
    );
    assert!(timeline.windows(2).all(|w| w[0].seq < w[1].seq && w[0].ts <= w[1].ts));
    let root = &timeline[0];
    assert_eq!(root.ts, 1_704_103_200_000);
    assert_eq!(root.u.username, "alice");
    assert_eq!(root.mentions.iter().map(|m| m.username.as_str()).collect::<Vec<_>>(), ["bob"]);
    assert_eq!(root.reactions[":tada:"], vec![bob.id.clone(), carol.id.clone()]);
    assert_eq!(root.reactions[":+1:"], vec![bob.id.clone()]);
    assert_eq!((root.tcount, root.tlm), (2, Some(1_704_103_320_000)));
    let replies = store.thread_messages(&root.id, 0, 10).await.unwrap();
    assert_eq!(
        replies.iter().map(|m| (m.msg.as_str(), m.u.username.as_str())).collect::<Vec<_>>(),
        [("thanks!", "bob"), ("glad to be here", "carol")]
    );
    assert!(replies.iter().all(|m| m.tmid.as_ref() == Some(&root.id)));
    let edited = &timeline[1];
    assert_eq!((edited.edited_at, edited.edited_by.as_ref()), (Some(1_704_103_400_000), Some(&bob.id)));
    let file = &timeline[2].attachments[0];
    assert_eq!(file["title"], "plan.pdf");
    assert_eq!(file["title_link"], "https://files.slack.com/files-pri/T1-F1/plan.pdf");
    assert_eq!((file["size"].as_u64(), file["contentType"].as_str()), (Some(52_431), Some("application/pdf")));

    // The live system's view: search finds imported text, imported history is not unread.
    let q = |reader: &chat::ids::UserId, text: &str| SearchQuery {
        reader: reader.clone(),
        preview_room: None,
        room: None,
        text: text.into(),
        limit: 10,
    };
    let found = store.search_messages(&q(&alice.id, "rhubarb")).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rid, general.id);
    assert!(store.search_messages(&q(&bob.id, "private")).await.unwrap().is_empty(), "bob cannot search the group");
    let general = store.get_room(&general.id).await.unwrap().unwrap();
    assert_eq!(general.counters.msg_count, 6);
    for uid in [&alice.id, &bob.id, &carol.id] {
        let sub = store.get_subscription(&general.id, uid).await.unwrap().unwrap();
        assert_eq!(sub.unread(general.counters).messages, 0, "imported history counts as read");
        assert_eq!(sub.read.last_read_seq, 6);
    }

    // Re-run: nothing twice.
    let again = import(&store, &export()).await.unwrap();
    assert!(again.nothing_new(), "{again}");
    assert_eq!((again.users.present, again.rooms.present, again.messages.present), (5, 5, 10));
    assert!(again.to_string().contains("already present"));
    assert_eq!(store.get_room(&general.id).await.unwrap().unwrap().counters.msg_count, 6);
    assert_eq!(store.count_users().await.unwrap(), 5);
}

#[tokio::test]
async fn a_later_larger_export_adds_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("chat.db")).await.unwrap();
    import(&store, &export()).await.unwrap();
    let mut later = export();
    later.push((
        "general/2024-01-03.json".into(),
        day(json!([
            {"user": "U2", "ts": "1704276000.000100", "text": "a new day"},
            {"user": "U1", "ts": "1704276060.000200", "thread_ts": ROOT_TS, "text": "late reply"}
        ])),
    ));
    let s = import(&store, &later).await.unwrap();
    assert_eq!((s.messages.imported, s.messages.present, s.users.imported, s.rooms.imported), (2, 10, 0, 0));
    let general = store.room_by_name("general").await.unwrap().unwrap();
    assert_eq!(general.counters.msg_count, 8);
    let timeline = store.history(&general.id, Page::Latest { limit: 50 }).await.unwrap();
    assert_eq!(timeline.last().unwrap().msg, "a new day");
    assert_eq!(timeline[0].tcount, 3, "the late reply joined its thread");
}

#[tokio::test]
async fn a_slack_user_with_the_email_of_an_existing_account_is_linked_and_taken_names_get_a_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("chat.db")).await.unwrap();
    let new = |username: &str, email: &str| chat::user::NewUser {
        username: username.into(),
        name: username.into(),
        email: Some(email.into()),
        kind: chat::user::UserKind::User,
        roles: vec![chat::roles::Role::User],
        password_hash: None,
    };
    let ally = store.create_user(new("ally", "ALICE@example.org")).await.unwrap();
    store.create_user(new("carol", "someone-else@example.org")).await.unwrap();
    let s = import(&store, &export()).await.unwrap();
    assert_eq!((s.users.imported, s.users_linked), (4, 1));
    assert!(store.get_user(&ally.id).await.unwrap().unwrap().active, "a linked account is left as it was");
    assert!(store.user_by_username("carol-slack").await.unwrap().is_some());
    let general = store.room_by_name("general").await.unwrap().unwrap();
    let first = &store.history(&general.id, Page::Latest { limit: 1 }).await.unwrap()[0];
    assert_eq!(first.msg, "rhubarb for lunch");
    assert_eq!(first.u.username, "carol-slack");
    assert!(store.get_subscription(&general.id, &ally.id).await.unwrap().unwrap().is_owner());
}

/// The same import on MongoDB (`MONGODB_URI`, e.g. `nx-27017` in `scripts/test`; skipped without it):
/// same counts and contents, and a re-run writes nothing.
#[tokio::test]
async fn the_same_export_imports_into_mongodb_once() {
    let Ok(uri) = std::env::var("MONGODB_URI") else {
        eprintln!("note: MONGODB_URI is not set; skipping the MongoDB import test");
        return;
    };
    let db = format!("chat_import_{}", chat::ids::new_id());
    let store = chat::store::mongo::MongoStore::connect(&uri, &db).await.unwrap();
    let s = import(&store, &export()).await.unwrap();
    assert_eq!((s.users.imported, s.rooms.imported, s.members.imported, s.messages.imported), (5, 5, 12, 10));
    let general = store.room_by_name("general").await.unwrap().unwrap();
    assert_eq!((general.counters.msg_count, general.users_count), (6, 3));
    let timeline = store.history(&general.id, Page::Latest { limit: 50 }).await.unwrap();
    assert_eq!(timeline.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 4, 5, 6]);
    assert_eq!(timeline[0].tcount, 2);
    assert_eq!(store.thread_messages(&timeline[0].id, 0, 10).await.unwrap().len(), 2);
    let alice = store.user_by_username("alice").await.unwrap().unwrap();
    assert!(!alice.active);
    let sub = store.get_subscription(&general.id, &alice.id).await.unwrap().unwrap();
    assert_eq!(sub.unread(general.counters).messages, 0);
    let again = import(&store, &export()).await.unwrap();
    assert!(again.nothing_new(), "{again}");
    assert_eq!(store.get_room(&general.id).await.unwrap().unwrap().counters.msg_count, 6);
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chat"))
}

/// Runs the binary; (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).env_remove("CHAT_STORE").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_or_partial_archives_name_the_file_and_leave_the_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let store_arg = format!("sqlite:{}", db.display());
    let good = dir.path().join("good.zip");
    write_zip(&good, &export());
    let (code, _, err) = run(&["import", "slack", good.to_str().unwrap(), "--store", &store_arg]);
    assert_eq!(code, 0, "{err}");
    let before = dump(&db);
    assert!(before.contains("== messages (10 rows)"), "{before}");

    // Each bad archive also carries something new (a user, a day), which must not be written either.
    let mut with_new = export();
    with_new[0].1 = with_new[0].1.replace("]", r#",{"id": "U6", "name": "erin"}]"#);
    with_new
        .push(("general/2024-01-05.json".into(), day(json!([{"user": "U6", "ts": "1704450000.0", "text": "new"}]))));
    let mut malformed = with_new.clone();
    malformed.push((
        "random/2024-01-09.json".into(),
        "[\n  {\"user\": \"U1\", \"ts\": \"1704790000.0\",\n   \"text\": oops}\n]".into(),
    ));
    let mut unknown = with_new.clone();
    unknown.push(("nowhere/2024-01-01.json".into(), "[]".into()));
    let missing_users: Entries = with_new.iter().filter(|(n, _)| n != "users.json").cloned().collect();
    let missing_channels: Entries = with_new.iter().filter(|(n, _)| n != "channels.json").cloned().collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed.zip", zip_bytes(&malformed), "random/2024-01-09.json: malformed JSON at line 3, column"),
        ("unknown.zip", zip_bytes(&unknown), "nowhere/2024-01-01.json: message file of a conversation"),
        ("missing-users.zip", zip_bytes(&missing_users), "users.json: missing from the archive"),
        ("missing-channels.zip", zip_bytes(&missing_channels), "channels.json: missing from the archive"),
        (
            "truncated.zip",
            {
                let b = zip_bytes(&with_new);
                b[..b.len() * 2 / 3].to_vec()
            },
            "not a readable zip archive",
        ),
        ("not-a-zip.zip", b"users.json,channels.json\n".to_vec(), "not a readable zip archive"),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, out, err) = run(&["import", "slack", path.to_str().unwrap(), "--store", &store_arg]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(err.contains(expected), "{name}: expected {expected:?} in:\n{err}");
        assert!(err.contains("the store is unchanged"), "{name}: {err}");
        assert_eq!(dump(&db), before, "{name}: the store changed");
    }
    let (code, _, err) =
        run(&["import", "slack", dir.path().join("absent.zip").to_str().unwrap(), "--store", &store_arg]);
    assert_eq!(code, 1);
    assert!(err.contains("absent.zip"), "{err}");
}

#[test]
fn the_binary_imports_prints_progress_and_a_summary_and_a_rerun_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/chat.db");
    let zip = dir.path().join("export.zip");
    write_zip(&zip, &export());
    let store_arg = db.to_str().unwrap();

    let (code, out, err) = run(&["import", "slack", zip.to_str().unwrap(), "--store", store_arg, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dry run: nothing was written"), "{out}");
    assert!(out.contains("messages:        10"), "{out}");
    assert!(!db.exists(), "a dry run creates no database");

    let (code, out, err) = run(&["import", "slack", zip.to_str().unwrap(), "--store", store_arg]);
    assert_eq!(code, 0, "{err}");
    // Not a terminal: one plain line per step.
    assert!(err.contains("archive ok: 5 users, 5 conversations, 13 messages in 6 daily files"), "{err}");
    assert!(err.contains("importing into sqlite:"), "{err}");
    assert!(err.lines().any(|l| l.starts_with('[') && l.ends_with(" s] done")), "{err}");
    assert!(!err.contains('\r'), "no terminal redraws when stderr is not a terminal: {err:?}");
    for line in [
        "users:           5",
        "rooms:           5",
        "messages:        10",
        "thread replies:  2",
        "reactions:       3",
        "edits:           1",
        "file references: 1",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    assert!(out.contains("unsupported subtype channel_join"), "{out}");
    assert!(out.contains("messages/s"), "{out}");
    assert!(out.contains("deactivated"), "{out}");

    let (code, out, err) = run(&["import", "slack", zip.to_str().unwrap(), "--store", store_arg, "--chunk", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("messages:        0 (10 already present)"), "{out}");
    assert!(out.contains("nothing was written"), "{out}");

    // An imported account gets a password and is activated from the command line.
    let out = bin()
        .args(["user", "set-password", "alice", "--activate", "--store", store_arg])
        .env("CHAT_USER_PASSWORD", "correct horse battery")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("password set for alice (active)"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let alice = store.user_by_username("alice").await.unwrap().unwrap();
        assert!(alice.active);
        let hash = store.password_hash(&alice.id).await.unwrap().unwrap();
        assert!(chat::auth::verify_password("correct horse battery", &hash));
        let bob = store.user_by_username("bob").await.unwrap().unwrap();
        assert!(!bob.active, "the others stay deactivated");
    });
    let out = bin()
        .args(["user", "set-password", "nobody", "--store", store_arg])
        .env("CHAT_USER_PASSWORD", "long enough pw")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user \"nobody\""));

    let (code, out, _) = run(&["import", "slack", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("deactivated") && out.contains("--dry-run") && out.contains("sqlite:./data/chat.db"), "{out}");
    let (code, _, err) = run(&["import", "slack"]);
    assert_eq!(code, 2, "a usage error: {err}");
}

/// The rows that a chunked import must reproduce exactly (times of the import itself left out).
fn numbering(db: &Path) -> String {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut out = String::new();
    for sql in [
        "SELECT id, rid, seq, tcount, tlm, replies, timeline FROM messages ORDER BY id",
        "SELECT rid, uid, roles, read_msg_count, read_root_count, last_read_seq FROM subscriptions ORDER BY rid, uid",
        "SELECT id, msg_count, root_count, last_message_at, users_count FROM rooms ORDER BY id",
    ] {
        let mut stmt = c.prepare(sql).unwrap();
        let cols = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..cols).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        out.push_str(&rows.join("\n"));
        out.push('\n');
    }
    out
}

#[test]
fn an_import_in_chunks_numbers_and_counts_exactly_like_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("export.zip");
    write_zip(&zip, &export());
    let whole = dir.path().join("whole.db");
    let chunked = dir.path().join("chunked.db");
    let (code, _, err) = run(&["import", "slack", zip.to_str().unwrap(), "--store", whole.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) =
        run(&["import", "slack", zip.to_str().unwrap(), "--store", chunked.to_str().unwrap(), "--chunk", "2"]);
    assert_eq!(code, 0, "{err}");
    let expected = numbering(&whole);
    assert!(expected.lines().count() > 20, "{expected}");
    assert_eq!(numbering(&chunked), expected);
}

/// Writes a large export for measuring (`SLACK_EXPORT_OUT=/path/x.zip SLACK_EXPORT_MESSAGES=100000
/// cargo test -p chat --test import_slack -- --ignored big`): 20 channels, 200 users, one thread reply
/// in 10 and a reaction in 5.
#[test]
#[ignore = "a generator for the throughput measurement, not a check"]
fn big_export_generator() {
    let out = std::env::var("SLACK_EXPORT_OUT").unwrap_or_else(|_| "target/slack-export-big.zip".into());
    let total: usize = std::env::var("SLACK_EXPORT_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    write_zip(Path::new(&out), &big_export(total, 20, 200));
    eprintln!("wrote {out} ({total} messages)");
}

fn big_export(total: usize, channels: usize, users: usize) -> Entries {
    let user_list: Vec<_> = (0..users)
        .map(|i| {
            json!({"id": format!("U{i:05}"), "name": format!("user{i}"), "real_name": format!("User {i}"),
                        "profile": {"email": format!("user{i}@example.org")}})
        })
        .collect();
    let channel_list: Vec<_> = (0..channels)
        .map(|c| {
            json!({"id": format!("C{c:04}"), "name": format!("channel-{c}"), "created": 1_600_000_000,
                        "creator": "U00000", "members": (0..users).filter(|u| u % channels == c || *u == 0)
                            .map(|u| format!("U{u:05}")).collect::<Vec<_>>()})
        })
        .collect();
    let mut entries: Entries = vec![
        ("users.json".into(), json!(user_list).to_string()),
        ("channels.json".into(), json!(channel_list).to_string()),
    ];
    let per_channel = total / channels;
    let per_day = 500;
    let words = ["deploy", "review", "lunch", "meeting", "bug", "release", "coffee", "design", "rhubarb", "plan"];
    for c in 0..channels {
        let mut day_msgs = Vec::new();
        let mut root_ts = String::new();
        for k in 0..per_channel {
            let secs = 1_600_000_000 + (k as i64) * 60;
            let ts = format!("{secs}.{:06}", c);
            let author = format!("U{:05}", (k * 7 + c) % users);
            let mut m = json!({"type": "message", "user": author, "ts": ts,
                "text": format!("message {k} in channel {c} about {} and {} <@U{:05}>", words[k % 10], words[(k / 10) % 10], k % users)});
            if k % 10 == 0 {
                root_ts = ts.clone();
            } else if k % 10 == 5 {
                m["thread_ts"] = json!(root_ts);
            }
            if k % 20 == 3 {
                m["reactions"] = json!([{"name": "+1", "users": [format!("U{:05}", k % users)], "count": 1}]);
            }
            day_msgs.push(m);
            if day_msgs.len() == per_day || k + 1 == per_channel {
                let day = entries.len();
                entries.push((
                    format!("channel-{c}/2020-{:02}-{:02}.json", 1 + day / 28 % 12, 1 + day % 28),
                    json!(day_msgs).to_string(),
                ));
                day_msgs = Vec::new();
            }
        }
    }
    entries
}

#[test]
fn the_generator_writes_an_export_the_importer_reads() {
    let entries = big_export(400, 4, 10);
    let archive = slack::parse(&zip_bytes(&entries), &mut |_, _| {}).unwrap();
    assert_eq!(archive.message_count(), 400);
    let p = plan::plan(&archive, &plan::Existing::default());
    assert_eq!(p.batch.messages.len(), 400);
    assert!(p.stats.iter().filter(|s| s.reply).count() >= 30);
    let _: Vec<RoomId> = p.batch.rooms.iter().map(|r| r.id.clone()).collect();
}
