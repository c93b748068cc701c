//! Persistence. [`Store`] is what the §2.1 MVP methods need from a database, and nothing about who may
//! call them: authorization is [`crate::policy`]'s job and happens before a store call. A store does
//! keep the invariants that need atomicity, because only it can: unique usernames, emails, room names and
//! DM keys; a dense, strictly increasing `seq` per room; idempotent sends by `(author, clientMsgId)`;
//! the last-owner rule on leave, kick and role change; counters instead of per-member writes (§5.3).
//!
//! The trait is object-safe (`#[async_trait]`), so the frontend holds an `Arc<dyn Store>` and picks the
//! backend from its configuration at run time; the cost is one boxed future per call, which is small
//! next to a database round trip. Backends: [`sqlite`] (embedded default) and, with the `mongodb`
//! feature, `mongo`. One conformance suite (`tests/conformance.rs`) runs against every backend.
//!
//! Conventions: lists are bounded by an explicit `limit` that backends clamp to [`crate::limits`];
//! message lists are in ascending `seq` order; `updated_since` filters are inclusive (`>=`) so a client
//! using a small overlap never misses a write with the same millisecond.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, Millis, RoomId, SessionId, UserId};
use crate::integration::{Delivery, Integration, IntegrationKind};
use crate::message::{Mention, Message, NewMessage};
use crate::permissions::Permission;
use crate::presence::Manual;
use crate::roles::Role;
use crate::room::{NewRoom, NotifyLevel, Room, RoomPatch, Subscription, SubscriptionPrefs};
use crate::unread::{RoomCounters, Seq, Unread};
use crate::user::{NewUser, User};
use crate::Result;

pub mod mongo;
pub mod sqlite;

/// A value and whether this call created it (false: it existed, e.g. an idempotent retry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created<T> {
    pub value: T,
    pub created: bool,
}

/// Interactive login or personal access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Login,
    Pat,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Login => "login",
            SessionKind::Pat => "pat",
        }
    }

    pub fn parse(s: &str) -> Option<SessionKind> {
        match s {
            "login" => Some(SessionKind::Login),
            "pat" => Some(SessionKind::Pat),
            _ => None,
        }
    }
}

/// A session or personal access token (§1.2). Only the token's hash is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub kind: SessionKind,
    pub token_hash: String,
    /// PAT label.
    pub name: Option<String>,
    pub last_four: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    /// `None`: valid until revoked (PATs).
    pub expires_at: Option<Millis>,
    /// User agent / address at creation.
    pub client: Option<String>,
}

impl Session {
    /// Still usable at `now`?
    pub fn is_valid_at(&self, now: Millis) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// Input for [`Store::create_session`].
#[derive(Clone, Debug)]
pub struct NewSession {
    pub user_id: UserId,
    pub kind: SessionKind,
    pub token_hash: String,
    pub name: Option<String>,
    pub last_four: String,
    pub expires_at: Option<Millis>,
    pub client: Option<String>,
}

/// A subscription with its room's counters, so unread can be derived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    pub subscription: Subscription,
    pub counters: RoomCounters,
}

impl MemberState {
    pub fn unread(&self) -> Unread {
        self.subscription.unread(self.counters)
    }
}

/// `subscription.list(updatedSince)`: changed subscriptions and rooms the user is no longer in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionDelta {
    pub update: Vec<MemberState>,
    pub remove: Vec<RoomId>,
}

/// A page of a room's timeline (thread-only replies excluded), by `seq`. Results are ascending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// The newest `limit` messages.
    Latest { limit: usize },
    /// The newest `limit` messages with `seq < before`.
    Before { seq: Seq, limit: usize },
    /// The oldest `limit` messages with `seq > after`.
    After { seq: Seq, limit: usize },
}

/// `message.search`: full-text query limited to rooms the reader may read.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    /// Results come only from rooms this user is subscribed to…
    pub reader: UserId,
    /// …plus this public channel, when the caller holds `preview-c-room` (checked by the policy; the
    /// store still ignores it unless it is a channel).
    pub preview_room: Option<RoomId>,
    /// Restrict to one room (still subject to the rule above).
    pub room: Option<RoomId>,
    /// Words; every word must match. At most `MAX_SEARCH_QUERY_CHARS` characters.
    pub text: String,
    pub limit: usize,
}

/// `message.sync` answer (§4.7 step 4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResult {
    /// Messages with `seq > afterSeq`, ascending (thread replies included).
    pub messages: Vec<Message>,
    /// Older messages (`seq ≤ afterSeq`) changed since `updatedSince`: edits, reactions, pins.
    pub updated: Vec<Message>,
    /// Older messages deleted since `updatedSince` (tombstones).
    pub deleted: Vec<Message>,
    /// Too much happened: drop the room cache and load the newest page.
    pub reset: bool,
}

/// Everything one import writes (see `crate::import`), applied by [`Store::import`]. Ids are chosen by
/// the importer (derived from the source's ids), which is what makes a re-run idempotent.
#[derive(Clone, Debug, Default)]
pub struct ImportBatch {
    /// Inserted when their id is absent (no password; `active` as given). A username or e-mail held by
    /// another id is a `Conflict` and nothing is written (SQLite).
    pub users: Vec<User>,
    /// Inserted when their id is absent, with zero counters; `users_count` is recounted.
    pub rooms: Vec<Room>,
    /// Inserted when `(rid, uid)` is absent, caught up to the room's counters at that point.
    pub members: Vec<Subscription>,
    /// In the order to number them (by original `ts` within a room). Inserted when their id is absent,
    /// with the room's next `seq`; `seq`, `tcount`, `tlm` and `replies` are computed by the store (a new
    /// reply bumps its root, which must be stored or earlier in the batch). Imported history is not
    /// unread: every member's read counters move on by the messages added to the room (a member who had
    /// read everything stays caught up; live unread messages stay unread), and mention counters are not
    /// touched.
    pub messages: Vec<Message>,
}

impl ImportBatch {
    /// The field rules of the normal write paths, checked before anything is written.
    pub fn validate(&self) -> Result<()> {
        for u in &self.users {
            crate::user::validate_username(&u.username)?;
            crate::limits::check_chars("name", &u.name, crate::limits::MAX_DISPLAY_NAME_CHARS)?;
            if let Some(e) = &u.email {
                crate::user::validate_email(e)?;
            }
            crate::roles::validate_global_roles(&u.roles)?;
        }
        for r in &self.rooms {
            if let Some(n) = &r.name {
                crate::user::validate_name("name", n)?;
            }
            if (r.t == crate::room::RoomType::Direct) != r.dm_key.is_some() {
                return Err(crate::ChatError::invalid("dmKey", "DMs and only DMs have a dmKey"));
            }
        }
        for m in &self.messages {
            crate::message::validate_text(&m.msg, crate::limits::MAX_MESSAGE_CHARS * 10, !m.attachments.is_empty())?;
            crate::message::validate_attachments(&m.attachments)?;
            for emoji in m.reactions.keys() {
                crate::message::validate_emoji(emoji)?;
            }
            if m.tmid.is_none() && !m.timeline {
                return Err(crate::ChatError::invalid("timeline", "only thread replies can be off the timeline"));
            }
        }
        Ok(())
    }
}

impl ImportBatch {
    /// Splits into batches of at most `max_messages` messages (at least 1), in order; the first also
    /// carries the users, rooms and members. Applying them one after the other is the same as applying
    /// the whole batch, because a thread root always comes before its replies.
    pub fn split(mut self, max_messages: usize) -> Vec<ImportBatch> {
        let max = max_messages.max(1);
        let mut messages = std::mem::take(&mut self.messages).into_iter().peekable();
        let mut out = vec![self];
        let mut first = true;
        while messages.peek().is_some() {
            let chunk: Vec<Message> = messages.by_ref().take(max).collect();
            if first {
                first = false;
                if let Some(b) = out.first_mut() {
                    b.messages = chunk;
                }
            } else {
                out.push(ImportBatch { messages: chunk, ..Default::default() });
            }
        }
        out
    }
}

/// What [`Store::import`] created (the rest was already there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub users: u64,
    pub rooms: u64,
    pub members: u64,
    /// Ids of the messages inserted by this call.
    pub messages: Vec<MessageId>,
}

impl ImportOutcome {
    /// Adds up the outcomes of the parts of a split batch.
    pub fn merge(&mut self, other: ImportOutcome) {
        self.users += other.users;
        self.rooms += other.rooms;
        self.members += other.members;
        self.messages.extend(other.messages);
    }
}

/// Called with the number of batch messages handled so far (from the store's own thread or task).
pub type ImportProgress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// The storage contract. See the module documentation for what a backend guarantees.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- users ----
    /// Creates a user; `Conflict` on a taken username or email (case-insensitive).
    async fn create_user(&self, new: NewUser) -> Result<User>;
    async fn get_user(&self, id: &UserId) -> Result<Option<User>>;
    async fn user_by_username(&self, username: &str) -> Result<Option<User>>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// Resolves usernames (case-insensitive), e.g. for mentions; unknown names are skipped.
    async fn users_by_usernames(&self, usernames: &[String]) -> Result<Vec<User>>;
    /// Active users whose username starts with `prefix`, by username.
    async fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<User>>;
    async fn count_users(&self) -> Result<u64>;
    /// Every user, deactivated ones included (the admin list), by lower-cased username after the
    /// `after` username (keyset cursor, case-insensitive).
    async fn list_users(&self, after: Option<&str>, limit: usize) -> Result<Vec<User>>;
    /// Activates or deactivates; deactivation revokes every session and returns their ids.
    async fn set_user_active(&self, id: &UserId, active: bool) -> Result<Vec<SessionId>>;
    async fn set_user_roles(&self, id: &UserId, roles: Vec<Role>) -> Result<User>;
    async fn set_password_hash(&self, id: &UserId, hash: &str) -> Result<()>;
    async fn password_hash(&self, id: &UserId) -> Result<Option<String>>;

    // ---- sessions and tokens ----
    async fn create_session(&self, new: NewSession) -> Result<Session>;
    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>>;
    /// Looks a token up by the SHA-256 hash of its secret; expiry is the caller's check.
    async fn session_by_token_hash(&self, hash: &str) -> Result<Option<Session>>;
    async fn touch_session(&self, id: &SessionId, at: Millis) -> Result<()>;
    async fn list_sessions(&self, user: &UserId, kind: Option<SessionKind>) -> Result<Vec<Session>>;
    /// Deletes one session; false if it did not exist.
    async fn revoke_session(&self, id: &SessionId) -> Result<bool>;
    /// Deletes every session of `user` except `keep`; returns the revoked ids.
    async fn revoke_user_sessions(&self, user: &UserId, keep: Option<&SessionId>) -> Result<Vec<SessionId>>;

    // ---- rooms ----
    /// Creates the room with the creator's subscription (owner of `c`/`p`) and the other members', in
    /// one transaction. A DM whose key exists is returned with `created = false`. `Conflict` on a taken
    /// name; `NotFound` if a member does not exist.
    async fn create_room(&self, new: NewRoom) -> Result<Created<Room>>;
    async fn get_room(&self, id: &RoomId) -> Result<Option<Room>>;
    /// Channel or group by name (case-insensitive).
    async fn room_by_name(&self, name: &str) -> Result<Option<Room>>;
    /// Rooms `user` is subscribed to, changed at or after `updated_since` when given.
    async fn rooms_for_user(&self, user: &UserId, updated_since: Option<Millis>) -> Result<Vec<Room>>;
    /// Public channels whose name contains `term`, by name, after the `after` name (keyset cursor).
    async fn directory(&self, term: &str, after: Option<&str>, limit: usize) -> Result<Vec<Room>>;
    /// Applies the patch; a new `name` must be free (`Conflict`) and is refused for a DM (`Invalid`).
    async fn update_room(&self, id: &RoomId, patch: RoomPatch) -> Result<Room>;
    async fn set_archived(&self, id: &RoomId, archived: bool) -> Result<Room>;
    /// Removes the room, its subscriptions and messages; returns the former members.
    async fn delete_room(&self, id: &RoomId) -> Result<Vec<UserId>>;

    // ---- subscriptions ----
    /// Adds a member (idempotent), caught up to the room's counters (history before joining is not
    /// unread).
    async fn add_member(&self, room: &RoomId, user: &UserId, roles: Vec<Role>) -> Result<Created<Subscription>>;
    /// Removes a member; `LastOwner` if that would leave a room with members but no owner; false if the
    /// user was not a member.
    async fn remove_member(&self, room: &RoomId, user: &UserId) -> Result<bool>;
    /// Adds or removes a room role; `LastOwner` when removing the only owner's role.
    async fn set_member_role(&self, room: &RoomId, user: &UserId, role: Role, add: bool) -> Result<Subscription>;
    async fn get_subscription(&self, room: &RoomId, user: &UserId) -> Result<Option<Subscription>>;
    /// Members by user id after `after` (keyset cursor).
    async fn list_members(&self, room: &RoomId, after: Option<&UserId>, limit: usize) -> Result<Vec<Subscription>>;
    async fn count_owners(&self, room: &RoomId) -> Result<u64>;
    async fn subscriptions_for_user(&self, user: &UserId, updated_since: Option<Millis>) -> Result<SubscriptionDelta>;
    /// Read counters := room counters, mention counters := 0.
    async fn mark_read(&self, room: &RoomId, user: &UserId) -> Result<MemberState>;
    /// Applies a member's own preference change, moving `updatedAt` when something changed (so
    /// `subscriptions_for_user(since)` reports it); `NotFound { subscription }` for a non-member.
    async fn set_subscription_prefs(
        &self,
        room: &RoomId,
        user: &UserId,
        prefs: SubscriptionPrefs,
    ) -> Result<Subscription>;
    /// Members of `room` whose notification level is `level`, by user id, at most `limit`.
    async fn members_with_notify(&self, room: &RoomId, level: NotifyLevel, limit: usize) -> Result<Vec<Subscription>>;

    // ---- messages ----
    /// Assigns the next `seq` and stores the message, atomically with the room counters, the thread
    /// root's counters, the sender's read counters and the mentioned members' mention counters. A retry
    /// with the same `(author, clientMsgId)` returns the stored message with `created = false`.
    async fn insert_message(&self, new: NewMessage) -> Result<Created<Message>>;
    async fn get_message(&self, id: &MessageId) -> Result<Option<Message>>;
    async fn edit_message(
        &self,
        id: &MessageId,
        text: &str,
        editor: &UserId,
        mentions: Vec<Mention>,
    ) -> Result<Message>;
    /// Turns the message into a tombstone (idempotent).
    async fn delete_message(&self, id: &MessageId) -> Result<Message>;
    async fn set_reaction(&self, id: &MessageId, emoji: &str, user: &UserId, on: bool) -> Result<Message>;
    async fn set_pinned(&self, id: &MessageId, by: &UserId, on: bool) -> Result<Message>;
    /// A timeline page (thread-only replies excluded; tombstones included).
    async fn history(&self, room: &RoomId, page: Page) -> Result<Vec<Message>>;
    /// Every message (thread replies included) with `seq > after`, ascending.
    async fn messages_after(&self, room: &RoomId, after: Seq, limit: usize) -> Result<Vec<Message>>;
    /// Messages with `seq ≤ up_to` whose `updatedAt ≥ since`, ascending by `seq`.
    async fn messages_updated_since(
        &self,
        room: &RoomId,
        since: Millis,
        up_to: Seq,
        limit: usize,
    ) -> Result<Vec<Message>>;
    /// Replies of a thread with `seq > after`, ascending.
    async fn thread_messages(&self, root: &MessageId, after: Seq, limit: usize) -> Result<Vec<Message>>;
    async fn pinned_messages(&self, room: &RoomId, limit: usize) -> Result<Vec<Message>>;
    /// Thread roots of a room (messages with replies), latest reply first, those whose last reply is
    /// before `before_tlm` when given (keyset cursor).
    async fn thread_roots(&self, room: &RoomId, before_tlm: Option<Millis>, limit: usize) -> Result<Vec<Message>>;
    /// Full-text search, only in rooms the reader may read, tombstones excluded.
    async fn search_messages(&self, query: &SearchQuery) -> Result<Vec<Message>>;

    // ---- permissions and settings ----
    /// Stored permission rows (overrides of the §3 defaults).
    async fn permission_overrides(&self) -> Result<Vec<(Permission, Vec<Role>)>>;
    async fn set_permission(&self, perm: Permission, roles: Vec<Role>) -> Result<()>;
    async fn settings(&self) -> Result<Vec<(String, serde_json::Value)>>;
    async fn set_setting(&self, key: &str, value: serde_json::Value) -> Result<()>;

    // ---- presence and integrations (§1.1 statusDefault, §1.8) ----
    /// The status the user chose (`statusDefault`, `statusText`); `None` = never set (automatic).
    async fn user_status(&self, user: &UserId) -> Result<Option<Manual>>;
    async fn set_user_status(&self, user: &UserId, status: &Manual) -> Result<()>;
    async fn create_integration(&self, integration: &Integration) -> Result<()>;
    async fn get_integration(&self, id: &str) -> Result<Option<Integration>>;
    /// Oldest first, at most `limit`.
    async fn list_integrations(&self, kind: Option<IntegrationKind>, limit: usize) -> Result<Vec<Integration>>;
    /// Deletes the integration and its history; false if it did not exist.
    async fn delete_integration(&self, id: &str) -> Result<bool>;
    /// Inserts or replaces a delivery record (by id); records past their TTL may be dropped.
    async fn record_delivery(&self, delivery: &Delivery) -> Result<()>;
    /// An integration's deliveries, newest first.
    async fn deliveries(&self, integration_id: &str, limit: usize) -> Result<Vec<Delivery>>;

    // ---- import ----
    /// Writes an [`ImportBatch`], skipping what exists (by id). SQLite: one transaction, so an error
    /// leaves the store unchanged. MongoDB: one idempotent write after another; an interrupted import is
    /// completed by running it again (a `seq` consumed by the interrupted run may stay a hole).
    async fn import(&self, batch: ImportBatch, progress: ImportProgress) -> Result<ImportOutcome>;

    // ---- composed ----
    /// `message.sync(rid, afterSeq, updatedSince, limit)`, built from the two primitive reads.
    async fn sync(&self, room: &RoomId, after: Seq, updated_since: Millis, limit: usize) -> Result<SyncResult> {
        let limit = crate::limits::page(Some(limit), crate::limits::MAX_SYNC_PAGE);
        let mut messages = self.messages_after(room, after, limit + 1).await?;
        if messages.len() > limit {
            messages.truncate(limit);
            return Ok(SyncResult { messages, reset: true, ..SyncResult::default() });
        }
        let changed = self.messages_updated_since(room, updated_since, after, limit + 1).await?;
        if changed.len() > limit {
            return Ok(SyncResult { messages, reset: true, ..SyncResult::default() });
        }
        let (deleted, updated) = changed.into_iter().partition(Message::is_deleted);
        Ok(SyncResult { messages, updated, deleted, reset: false })
    }
}

/// Opens the store named by `url`: `sqlite:<path>` (the file and its directory are created if missing)
/// or `mongodb://…` / `mongodb+srv://…` (database from the URI path, `chat` when absent).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(crate::ChatError::Invalid { field: "store", reason: "sqlite: needs a file path" });
        }
        let path = std::path::Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| crate::ChatError::storage("create database directory", e))?;
        }
        return Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path).await?));
    }
    if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
        let db = mongo_database_name(url).unwrap_or("chat");
        return Ok(std::sync::Arc::new(mongo::MongoStore::connect(url, db).await?));
    }
    Err(crate::ChatError::Invalid { field: "store", reason: "expected sqlite:<path> or mongodb://…" })
}

/// The database in a MongoDB URI's path (`mongodb://host:port/<db>?options`), if any.
pub(crate) fn mongo_database_name(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let db = path.split(['?', '#']).next()?;
    (!db.is_empty()).then_some(db)
}

/// The FTS query both backends use: every word quoted (so operators in user input are plain text) and
/// all required. Empty when the text has no word.
pub fn quoted_terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '_' && c != '-')
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{}\"", w.replace('"', "")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_import_batch_keeps_order_and_puts_accounts_and_rooms_first() {
        let msg = |i: u32| Message {
            id: MessageId(format!("m{i}")),
            rid: RoomId::from("r"),
            seq: 0,
            u: crate::message::UserRef { id: UserId::from("u"), username: "u".into(), name: "u".into() },
            msg: "x".into(),
            t: None,
            ts: 0,
            updated_at: 0,
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
        };
        let batch = ImportBatch { messages: (0..5).map(msg).collect(), ..Default::default() };
        let parts = batch.clone().split(2);
        let ids: Vec<Vec<&str>> = parts.iter().map(|b| b.messages.iter().map(|m| m.id.as_str()).collect()).collect();
        assert_eq!(ids, [vec!["m0", "m1"], vec!["m2", "m3"], vec!["m4"]]);
        assert_eq!(batch.clone().split(0).len(), 5);
        assert_eq!(ImportBatch::default().split(10).len(), 1, "users, rooms and members alone still go");
    }

    #[test]
    fn search_terms_are_quoted_and_bounded() {
        assert_eq!(quoted_terms("hello, \"world\" OR x*"), vec!["\"hello\"", "\"world\"", "\"OR\"", "\"x\""]);
        assert!(quoted_terms("  ...  ").is_empty());
        assert_eq!(quoted_terms(&"a ".repeat(100)).len(), 16);
    }

    #[test]
    fn mongo_database_comes_from_the_uri_path() {
        assert_eq!(mongo_database_name("mongodb://h:1/team?directConnection=true"), Some("team"));
        assert_eq!(mongo_database_name("mongodb://h:1/?directConnection=true"), None);
        assert_eq!(mongo_database_name("mongodb://h:1"), None);
        assert_eq!(mongo_database_name("mongodb+srv://u:p@h/db"), Some("db"));
    }

    #[tokio::test]
    async fn open_picks_the_backend_from_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("sub/chat.db").display());
        let store = open(&url).await.unwrap();
        assert_eq!(store.count_users().await.unwrap(), 0);
        assert!(open("sqlite:").await.is_err());
        assert!(open("postgres://x").await.is_err());
    }

    #[test]
    fn sessions_expire() {
        let s = Session {
            id: SessionId::from("s"),
            user_id: UserId::from("u"),
            kind: SessionKind::Login,
            token_hash: "h".into(),
            name: None,
            last_four: "abcd".into(),
            created_at: 0,
            last_used_at: None,
            expires_at: Some(10),
            client: None,
        };
        assert!(s.is_valid_at(9));
        assert!(!s.is_valid_at(10));
        assert!(Session { expires_at: None, ..s }.is_valid_at(i64::MAX));
    }
}
