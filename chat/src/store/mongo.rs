//! The MongoDB backend (official `mongodb` driver), for clusters where several frontends share one
//! store. It applies §5's model: one collection per entity with §5.1's indexes, the per-room `seq` from a
//! `findOneAndUpdate` `$inc` on the room (§5.3 step 2), unread from counters, `$text` search.
//!
//! Documents are the domain structs serialized with serde (camelCase), plus `_id` and the lower-cased
//! copies that carry case-insensitive unique indexes (`usernameLower`, `emailLower`, `nameLower`); that
//! works on servers without collation support. Times are integer milliseconds, except `expireAt` on
//! sessions, a BSON date for the TTL index.
//!
//! No multi-document transactions: the send path is §5.3's sequence of single-document atomic writes
//! (room counter, message insert, thread root, sender's read counters, mention counters). A crash
//! between them leaves a `seq` hole or a stale counter, never a duplicate `seq`. Read-modify-write of a
//! message (edit, reactions, pins, delete) is guarded by `updatedAt` (optimistic concurrency, retried),
//! and each write moves `updatedAt` strictly forward. The last-owner check on leave/kick is a read
//! followed by a write, so two owners leaving at the same instant could both succeed (documented gap).
//! The MongoDB features relied on are listed in the crate README.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::ids::{now_ms, MessageId, Millis, RoomId, SessionId, UserId};
use crate::integration::{Delivery, Integration, IntegrationKind};
use crate::limits::{
    page, MAX_HISTORY_PAGE, MAX_LIST_PAGE, MAX_MESSAGE_CHARS, MAX_SEARCH_QUERY_CHARS, MAX_SEARCH_RESULTS, MAX_SYNC_PAGE,
};
use crate::message::{Mention, Message, NewMessage};
use crate::permissions::{Permission, PermissionTable};
use crate::presence::Manual;
use crate::roles::{validate_global_roles, validate_room_roles, Role};
use crate::room::{
    check_owner_handover, creator_roles, NewRoom, NotifyLevel, Room, RoomPatch, RoomType, Subscription,
    SubscriptionPrefs,
};
use crate::store::{
    quoted_terms, Created, ImportBatch, ImportOutcome, ImportProgress, MemberState, NewSession, Page, SearchQuery,
    Session, SessionKind, Store, SubscriptionDelta,
};
use crate::unread::{ReadState, Seq};
use crate::user::{NewUser, User};
use crate::{ChatError, Result};

mod import;
mod live;

/// Optimistic-concurrency retries for read-modify-write of one message.
const MODIFY_RETRIES: usize = 16;

fn err(op: &'static str) -> impl FnOnce(MongoError) -> ChatError {
    move |e| ChatError::storage(op, e)
}

fn is_duplicate(e: &MongoError) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(im) => im.write_errors.as_ref().is_some_and(|ws| ws.iter().any(|w| w.code == 11000)),
        _ => e.to_string().contains("E11000") || e.to_string().to_lowercase().contains("duplicate key"),
    }
}

fn n(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserDoc {
    #[serde(rename = "_id")]
    key: String,
    #[serde(flatten)]
    user: User,
    username_lower: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_lower: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_hash: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionDoc {
    #[serde(rename = "_id")]
    key: String,
    #[serde(flatten)]
    session: Session,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire_at: Option<DateTime>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomDoc {
    #[serde(rename = "_id")]
    key: String,
    #[serde(flatten)]
    room: Room,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name_lower: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dm: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SubDoc {
    #[serde(rename = "_id")]
    key: String,
    #[serde(flatten)]
    sub: Subscription,
    #[serde(rename = "isOwner", deserialize_with = "crate::serde_util::lenient_bool")]
    is_owner: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MsgDoc {
    #[serde(rename = "_id")]
    key: String,
    #[serde(flatten)]
    msg: Message,
    #[serde(rename = "cmid", default, skip_serializing_if = "Option::is_none")]
    client_key: Option<String>,
}

impl MsgDoc {
    fn new(msg: Message) -> MsgDoc {
        MsgDoc { key: msg.id.0.clone(), client_key: msg.client_msg_id.clone(), msg }
    }
}

fn sub_key(rid: &RoomId, uid: &UserId) -> String {
    format!("{rid}:{uid}")
}

fn sub_doc(sub: Subscription) -> SubDoc {
    SubDoc { key: sub_key(&sub.rid, &sub.uid), is_owner: sub.is_owner(), sub }
}

/// Handle to the MongoDB store; cheap to clone (the driver pools connections).
#[derive(Clone, Debug)]
pub struct MongoStore {
    db: Database,
}

impl MongoStore {
    /// Connects to `uri`, uses database `db_name` and creates the §5.1 indexes (idempotent).
    pub async fn connect(uri: &str, db_name: &str) -> Result<MongoStore> {
        let client = Client::with_uri_str(uri).await.map_err(err("connect"))?;
        let store = MongoStore { db: client.database(db_name) };
        store.create_indexes().await?;
        Ok(store)
    }

    fn users(&self) -> Collection<UserDoc> {
        self.db.collection("users")
    }
    fn sessions(&self) -> Collection<SessionDoc> {
        self.db.collection("sessions")
    }
    fn rooms(&self) -> Collection<RoomDoc> {
        self.db.collection("rooms")
    }
    fn subs(&self) -> Collection<SubDoc> {
        self.db.collection("subscriptions")
    }
    fn messages(&self) -> Collection<MsgDoc> {
        self.db.collection("messages")
    }
    fn raw(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    async fn create_indexes(&self) -> Result<()> {
        // Explicit names in MongoDB's default scheme (`field_1_other_-1`), so a restart can skip indexes
        // that exist (the stand-in does not accept re-creating an identical index).
        fn idx(keys: Document, opts: Option<IndexOptions>) -> IndexModel {
            let name = keys.iter().map(|(k, v)| format!("{k}_{}", v.to_string().trim_matches('"'))).collect::<Vec<_>>();
            let mut opts = opts.unwrap_or_default();
            opts.name = Some(name.join("_"));
            IndexModel::builder().keys(keys).options(opts).build()
        }
        let unique = || IndexOptions::builder().unique(true).build();
        let unique_sparse = || IndexOptions::builder().unique(true).sparse(true).build();
        let partial = |f: Document| IndexOptions::builder().partial_filter_expression(f).build();
        let plan: Vec<(&str, Vec<IndexModel>)> = vec![
            (
                "users",
                vec![
                    idx(doc! {"usernameLower": 1}, Some(unique())),
                    idx(doc! {"emailLower": 1}, Some(unique_sparse())),
                    idx(doc! {"roles": 1}, None),
                    idx(doc! {"active": 1, "kind": 1}, None),
                    idx(doc! {"updatedAt": 1}, None),
                ],
            ),
            (
                "sessions",
                vec![
                    idx(doc! {"tokenHash": 1}, Some(unique())),
                    idx(doc! {"userId": 1, "kind": 1}, None),
                    idx(
                        doc! {"expireAt": 1},
                        Some(IndexOptions::builder().expire_after(std::time::Duration::from_secs(0)).build()),
                    ),
                ],
            ),
            (
                "rooms",
                vec![
                    idx(doc! {"nameLower": 1}, Some(unique_sparse())),
                    idx(doc! {"dm": 1}, Some(unique_sparse())),
                    idx(doc! {"t": 1, "lastMessageAt": -1}, None),
                    idx(doc! {"default": 1}, None),
                    idx(doc! {"updatedAt": 1}, None),
                ],
            ),
            (
                "subscriptions",
                vec![
                    idx(doc! {"rid": 1, "uid": 1}, Some(unique())),
                    idx(doc! {"uid": 1, "updatedAt": 1}, None),
                    idx(doc! {"rid": 1, "isOwner": 1}, None),
                ],
            ),
            (
                "messages",
                vec![
                    idx(doc! {"rid": 1, "seq": 1}, Some(unique())),
                    idx(doc! {"rid": 1, "timeline": 1, "seq": 1}, None),
                    idx(doc! {"rid": 1, "updatedAt": 1}, None),
                    idx(doc! {"tmid": 1, "seq": 1}, Some(partial(doc! {"tmid": {"$type": "string"}}))),
                    idx(doc! {"rid": 1, "tlm": -1}, Some(partial(doc! {"tcount": {"$gt": 0}}))),
                    idx(doc! {"rid": 1, "pinnedAt": -1}, Some(partial(doc! {"pinned": true}))),
                    idx(
                        doc! {"u._id": 1, "cmid": 1},
                        Some(
                            IndexOptions::builder()
                                .unique(true)
                                .partial_filter_expression(doc! {"cmid": {"$type": "string"}})
                                .build(),
                        ),
                    ),
                    idx(doc! {"u._id": 1, "ts": 1}, None),
                    idx(doc! {"msg": "text"}, None),
                ],
            ),
            ("trash", vec![idx(doc! {"collection": 1, "uid": 1, "deletedAt": 1}, None)]),
            ("integrations", vec![idx(doc! {"type": 1, "createdAt": 1}, None)]),
            (
                "integration_history",
                vec![
                    idx(doc! {"integrationId": 1, "createdAt": -1}, None),
                    idx(
                        doc! {"expireAt": 1},
                        Some(IndexOptions::builder().expire_after(std::time::Duration::from_secs(0)).build()),
                    ),
                ],
            ),
        ];
        for (coll, models) in plan {
            // Skip indexes whose key pattern exists (the stand-in names indexes its own way, so names
            // cannot be compared).
            let existing: Vec<Document> = match self.raw(coll).list_indexes().await {
                Ok(cursor) => cursor.try_collect::<Vec<IndexModel>>().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            }
            .into_iter()
            .map(|m| m.keys)
            .collect();
            let (text, plain): (Vec<IndexModel>, Vec<IndexModel>) = models
                .into_iter()
                .filter(|m| !existing.contains(&m.keys))
                .partition(|m| m.keys.values().any(|v| v.as_str() == Some("text")));
            if !plain.is_empty() {
                self.raw(coll).create_indexes(plain).await.map_err(err("create_indexes"))?;
            }
            for model in text {
                // Real MongoDB re-creates an identical text index as a no-op; the stand-in neither lists
                // text indexes nor accepts re-creating one. A working `$text` query proves it exists.
                if let Err(e) = self.raw(coll).create_index(model).await {
                    let probe = self.raw(coll).find_one(doc! {"$text": {"$search": "probe"}}).await;
                    if probe.is_err() {
                        return Err(ChatError::storage("create_indexes", e));
                    }
                }
            }
        }
        Ok(())
    }

    async fn require_room(&self, id: &RoomId) -> Result<Room> {
        self.get_room(id).await?.ok_or_else(|| ChatError::not_found("room"))
    }

    async fn collect<T>(&self, cursor: mongodb::Cursor<T>, op: &'static str) -> Result<Vec<T>>
    where
        T: serde::de::DeserializeOwned + Send + Sync + Unpin,
    {
        cursor.try_collect().await.map_err(err(op))
    }

    async fn find_messages(&self, filter: Document, sort: Document, limit: usize) -> Result<Vec<Message>> {
        let cursor =
            self.messages().find(filter).sort(sort).limit(n(limit as u64)).await.map_err(err("find_messages"))?;
        Ok(self.collect(cursor, "find_messages").await?.into_iter().map(|d| d.msg).collect())
    }

    async fn sub_state(&self, rid: &RoomId, uid: &UserId) -> Result<Option<Subscription>> {
        let found = self.subs().find_one(doc! {"_id": sub_key(rid, uid)}).await.map_err(err("get_subscription"))?;
        Ok(found.map(|d| d.sub))
    }

    async fn owners(&self, rid: &RoomId) -> Result<u64> {
        let c = self
            .subs()
            .count_documents(doc! {"rid": rid.as_str(), "isOwner": true})
            .await
            .map_err(err("count_owners"))?;
        Ok(c)
    }

    /// Read-modify-write of one message, guarded by its `updatedAt`.
    async fn modify(
        &self,
        id: &MessageId,
        mut f: impl FnMut(&mut Message, Millis) -> Result<bool> + Send,
    ) -> Result<Message> {
        for _ in 0..MODIFY_RETRIES {
            let mut m = self.get_message(id).await?.ok_or_else(|| ChatError::not_found("message"))?;
            let before = m.updated_at;
            let now = now_ms().max(before + 1);
            if !f(&mut m, now)? {
                return Ok(m);
            }
            m.updated_at = now;
            let r = self
                .messages()
                .replace_one(doc! {"_id": id.as_str(), "updatedAt": before}, MsgDoc::new(m.clone()))
                .await
                .map_err(err("modify_message"))?;
            if r.matched_count == 1 {
                return Ok(m);
            }
        }
        Err(ChatError::storage("modify_message", std::io::Error::other("too much contention on one message")))
    }
}

fn bson_roles(roles: &[Role]) -> Bson {
    Bson::Array(roles.iter().map(|r| Bson::String(r.as_str().to_owned())).collect())
}

#[async_trait]
impl Store for MongoStore {
    async fn create_user(&self, new: NewUser) -> Result<User> {
        new.validate()?;
        let now = now_ms();
        let user = User {
            id: UserId::generate(),
            username: new.username,
            name: new.name,
            email: new.email,
            kind: new.kind,
            roles: new.roles,
            active: true,
            created_at: now,
            updated_at: now,
        };
        let lower = user.username.to_lowercase();
        let email_lower = user.email.as_ref().map(|e| e.to_lowercase());
        if self.users().find_one(doc! {"usernameLower": &lower}).await.map_err(err("create_user"))?.is_some() {
            return Err(ChatError::Conflict { what: "username" });
        }
        if let Some(e) = &email_lower {
            if self.users().find_one(doc! {"emailLower": e}).await.map_err(err("create_user"))?.is_some() {
                return Err(ChatError::Conflict { what: "email" });
            }
        }
        let docu = UserDoc {
            key: user.id.0.clone(),
            user: user.clone(),
            username_lower: lower,
            email_lower,
            password_hash: new.password_hash,
        };
        match self.users().insert_one(docu).await {
            Ok(_) => Ok(user),
            Err(e) if is_duplicate(&e) => Err(ChatError::Conflict { what: "username or email" }),
            Err(e) => Err(ChatError::storage("create_user", e)),
        }
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        Ok(self.users().find_one(doc! {"_id": id.as_str()}).await.map_err(err("get_user"))?.map(|d| d.user))
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        let f = doc! {"usernameLower": username.to_lowercase()};
        Ok(self.users().find_one(f).await.map_err(err("get_user"))?.map(|d| d.user))
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let f = doc! {"emailLower": email.to_lowercase()};
        Ok(self.users().find_one(f).await.map_err(err("get_user"))?.map(|d| d.user))
    }

    async fn users_by_usernames(&self, usernames: &[String]) -> Result<Vec<User>> {
        let lower: Vec<String> =
            usernames.iter().take(crate::limits::MAX_MENTIONS * 2).map(|u| u.to_lowercase()).collect();
        let cursor =
            self.users().find(doc! {"usernameLower": {"$in": lower}}).await.map_err(err("users_by_usernames"))?;
        Ok(self.collect(cursor, "users_by_usernames").await?.into_iter().map(|d| d.user).collect())
    }

    async fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<User>> {
        // A range on the lower-cased name instead of a regex: index-friendly and injection-free.
        let lo = prefix.to_lowercase();
        let hi = format!("{lo}\u{10FFFF}");
        let cursor = self
            .users()
            .find(doc! {"active": true, "usernameLower": {"$gte": &lo, "$lt": hi}})
            .sort(doc! {"usernameLower": 1})
            .limit(n(page(Some(limit), MAX_LIST_PAGE) as u64))
            .await
            .map_err(err("search_users"))?;
        Ok(self.collect(cursor, "search_users").await?.into_iter().map(|d| d.user).collect())
    }

    async fn count_users(&self) -> Result<u64> {
        self.users().count_documents(doc! {}).await.map_err(err("count_users"))
    }

    async fn list_users(&self, after: Option<&str>, limit: usize) -> Result<Vec<User>> {
        let filter = match after {
            Some(a) => doc! {"usernameLower": {"$gt": a.to_lowercase()}},
            None => doc! {},
        };
        let cursor = self
            .users()
            .find(filter)
            .sort(doc! {"usernameLower": 1})
            .limit(n(page(Some(limit), MAX_LIST_PAGE) as u64))
            .await
            .map_err(err("list_users"))?;
        Ok(self.collect(cursor, "list_users").await?.into_iter().map(|d| d.user).collect())
    }

    async fn set_user_active(&self, id: &UserId, active: bool) -> Result<Vec<SessionId>> {
        let r = self
            .users()
            .update_one(doc! {"_id": id.as_str()}, doc! {"$set": {"active": active, "updatedAt": now_ms()}})
            .await
            .map_err(err("set_user_active"))?;
        if r.matched_count == 0 {
            return Err(ChatError::not_found("user"));
        }
        if active {
            return Ok(Vec::new());
        }
        self.revoke_user_sessions(id, None).await
    }

    async fn set_user_roles(&self, id: &UserId, roles: Vec<Role>) -> Result<User> {
        validate_global_roles(&roles)?;
        let r = self
            .users()
            .update_one(doc! {"_id": id.as_str()}, doc! {"$set": {"roles": bson_roles(&roles), "updatedAt": now_ms()}})
            .await
            .map_err(err("set_user_roles"))?;
        if r.matched_count == 0 {
            return Err(ChatError::not_found("user"));
        }
        self.get_user(id).await?.ok_or_else(|| ChatError::not_found("user"))
    }

    async fn set_password_hash(&self, id: &UserId, hash: &str) -> Result<()> {
        let r = self
            .users()
            .update_one(doc! {"_id": id.as_str()}, doc! {"$set": {"passwordHash": hash, "updatedAt": now_ms()}})
            .await
            .map_err(err("set_password_hash"))?;
        if r.matched_count == 0 {
            return Err(ChatError::not_found("user"));
        }
        Ok(())
    }

    async fn password_hash(&self, id: &UserId) -> Result<Option<String>> {
        let d = self.users().find_one(doc! {"_id": id.as_str()}).await.map_err(err("password_hash"))?;
        Ok(d.and_then(|d| d.password_hash))
    }

    async fn create_session(&self, new: NewSession) -> Result<Session> {
        if let Some(name) = &new.name {
            crate::limits::check_chars("name", name, crate::limits::MAX_TOKEN_NAME_CHARS)?;
        }
        if self.get_user(&new.user_id).await?.is_none() {
            return Err(ChatError::not_found("user"));
        }
        let s = Session {
            id: SessionId::generate(),
            user_id: new.user_id,
            kind: new.kind,
            token_hash: new.token_hash,
            name: new.name,
            last_four: new.last_four,
            created_at: now_ms(),
            last_used_at: None,
            expires_at: new.expires_at,
            client: new.client,
        };
        let expire_at = s.expires_at.filter(|e| *e < 253_402_300_799_000).map(DateTime::from_millis);
        let d = SessionDoc { key: s.id.0.clone(), session: s.clone(), expire_at };
        self.sessions().insert_one(d).await.map_err(err("create_session"))?;
        Ok(s)
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>> {
        let d = self.sessions().find_one(doc! {"_id": id.as_str()}).await.map_err(err("get_session"))?;
        Ok(d.map(|d| d.session))
    }

    async fn session_by_token_hash(&self, hash: &str) -> Result<Option<Session>> {
        let d = self.sessions().find_one(doc! {"tokenHash": hash}).await.map_err(err("get_session"))?;
        Ok(d.map(|d| d.session))
    }

    async fn touch_session(&self, id: &SessionId, at: Millis) -> Result<()> {
        self.sessions()
            .update_one(doc! {"_id": id.as_str()}, doc! {"$set": {"lastUsedAt": at}})
            .await
            .map_err(err("touch_session"))?;
        Ok(())
    }

    async fn list_sessions(&self, user: &UserId, kind: Option<SessionKind>) -> Result<Vec<Session>> {
        let mut f = doc! {"userId": user.as_str()};
        if let Some(k) = kind {
            f.insert("kind", k.as_str());
        }
        let cursor = self
            .sessions()
            .find(f)
            .sort(doc! {"createdAt": 1, "_id": 1})
            .limit(n(MAX_LIST_PAGE as u64))
            .await
            .map_err(err("list_sessions"))?;
        Ok(self.collect(cursor, "list_sessions").await?.into_iter().map(|d| d.session).collect())
    }

    async fn revoke_session(&self, id: &SessionId) -> Result<bool> {
        let r = self.sessions().delete_one(doc! {"_id": id.as_str()}).await.map_err(err("revoke_session"))?;
        Ok(r.deleted_count > 0)
    }

    async fn revoke_user_sessions(&self, user: &UserId, keep: Option<&SessionId>) -> Result<Vec<SessionId>> {
        let mut f = doc! {"userId": user.as_str()};
        if let Some(k) = keep {
            f.insert("_id", doc! {"$ne": k.as_str()});
        }
        let cursor = self.sessions().find(f).await.map_err(err("revoke_user_sessions"))?;
        let ids: Vec<SessionId> =
            self.collect(cursor, "revoke_user_sessions").await?.into_iter().map(|d| d.session.id).collect();
        let id_list: Vec<&str> = ids.iter().map(SessionId::as_str).collect();
        self.sessions().delete_many(doc! {"_id": {"$in": id_list}}).await.map_err(err("revoke_user_sessions"))?;
        Ok(ids)
    }

    async fn create_room(&self, new: NewRoom) -> Result<Created<Room>> {
        if let Some(key) = &new.dm_key {
            if let Some(d) = self.rooms().find_one(doc! {"dm": key}).await.map_err(err("create_room"))? {
                return Ok(Created { value: d.room, created: false });
            }
        }
        let name_lower = new.name.as_ref().map(|n| n.to_lowercase());
        if let Some(nl) = &name_lower {
            if self.rooms().find_one(doc! {"nameLower": nl}).await.map_err(err("create_room"))?.is_some() {
                return Err(ChatError::Conflict { what: "room name" });
            }
        }
        let mut people = Vec::with_capacity(new.members.len() + 1);
        for uid in std::iter::once(&new.creator).chain(&new.members) {
            people.push(self.get_user(uid).await?.ok_or_else(|| ChatError::not_found("user"))?);
        }
        let now = now_ms();
        let room = Room {
            id: RoomId::generate(),
            t: new.t,
            name: new.name,
            fname: new.fname,
            topic: String::new(),
            description: String::new(),
            announcement: String::new(),
            creator: new.creator.clone(),
            dm_key: new.dm_key.clone(),
            read_only: new.read_only,
            react_when_read_only: false,
            archived: false,
            default: false,
            users_count: people.len() as u64,
            counters: Default::default(),
            last_message_at: None,
            created_at: now,
            updated_at: now,
        };
        let d = RoomDoc { key: room.id.0.clone(), room: room.clone(), name_lower, dm: new.dm_key.clone() };
        if let Err(e) = self.rooms().insert_one(d).await {
            if !is_duplicate(&e) {
                return Err(ChatError::storage("create_room", e));
            }
            if let Some(key) = &new.dm_key {
                if let Some(d) = self.rooms().find_one(doc! {"dm": key}).await.map_err(err("create_room"))? {
                    return Ok(Created { value: d.room, created: false });
                }
            }
            return Err(ChatError::Conflict { what: "room name" });
        }
        let subs: Vec<SubDoc> = people
            .iter()
            .map(|u| {
                let roles = if u.id == new.creator { creator_roles(room.t) } else { Vec::new() };
                sub_doc(Subscription::new_member(&room, u, roles, now))
            })
            .collect();
        self.subs().insert_many(subs).await.map_err(err("create_room"))?;
        Ok(Created { value: room, created: true })
    }

    async fn get_room(&self, id: &RoomId) -> Result<Option<Room>> {
        Ok(self.rooms().find_one(doc! {"_id": id.as_str()}).await.map_err(err("get_room"))?.map(|d| d.room))
    }

    async fn room_by_name(&self, name: &str) -> Result<Option<Room>> {
        let f = doc! {"nameLower": name.to_lowercase()};
        Ok(self.rooms().find_one(f).await.map_err(err("room_by_name"))?.map(|d| d.room))
    }

    async fn rooms_for_user(&self, user: &UserId, updated_since: Option<Millis>) -> Result<Vec<Room>> {
        let rids = self.subscribed_rids(user).await?;
        let mut f = doc! {"_id": {"$in": rids}};
        if let Some(since) = updated_since {
            f.insert("updatedAt", doc! {"$gte": since});
        }
        let cursor = self.rooms().find(f).sort(doc! {"_id": 1}).await.map_err(err("rooms_for_user"))?;
        Ok(self.collect(cursor, "rooms_for_user").await?.into_iter().map(|d| d.room).collect())
    }

    async fn directory(&self, term: &str, after: Option<&str>, limit: usize) -> Result<Vec<Room>> {
        let term = term.to_lowercase();
        let mut range = doc! {};
        if let Some(a) = after {
            range.insert("$gt", a.to_lowercase());
        } else {
            range.insert("$gte", "");
        }
        let cursor = self
            .rooms()
            .find(doc! {"t": "c", "nameLower": range})
            .sort(doc! {"nameLower": 1})
            .await
            .map_err(err("directory"))?;
        let limit = page(Some(limit), MAX_LIST_PAGE);
        // Substring match done here rather than with a server regex (portable, no pattern injection);
        // the scan is bounded by the number of public channels.
        let mut out = Vec::new();
        let mut cursor = cursor;
        while let Some(d) = cursor.try_next().await.map_err(err("directory"))? {
            if d.name_lower.as_deref().is_some_and(|n| n.contains(&term)) {
                out.push(d.room);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn update_room(&self, id: &RoomId, patch: RoomPatch) -> Result<Room> {
        patch.validate()?;
        let mut set = doc! {"updatedAt": now_ms()};
        if let Some(v) = patch.name {
            if self.require_room(id).await?.t == RoomType::Direct {
                return Err(ChatError::invalid("name", "a direct message has no name"));
            }
            let lower = v.to_lowercase();
            // Checked first because nx-27017 answers a findAndModify that breaks a unique index with
            // no document instead of a duplicate-key error; the index still decides a race on MongoDB.
            let taken = doc! {"nameLower": &lower, "_id": {"$ne": id.as_str()}};
            if self.rooms().find_one(taken).await.map_err(err("update_room"))?.is_some() {
                return Err(ChatError::Conflict { what: "room name" });
            }
            set.insert("nameLower", lower);
            set.insert("name", v);
        }
        if let Some(v) = patch.fname {
            set.insert("fname", v);
        }
        if let Some(v) = patch.topic {
            set.insert("topic", v);
        }
        if let Some(v) = patch.description {
            set.insert("description", v);
        }
        if let Some(v) = patch.announcement {
            set.insert("announcement", v);
        }
        if let Some(v) = patch.read_only {
            set.insert("readOnly", v);
        }
        if let Some(v) = patch.react_when_read_only {
            set.insert("reactWhenReadOnly", v);
        }
        if let Some(v) = patch.default {
            set.insert("default", v);
        }
        // The unique `nameLower` index decides a rename race.
        match self
            .rooms()
            .find_one_and_update(doc! {"_id": id.as_str()}, doc! {"$set": set})
            .return_document(ReturnDocument::After)
            .await
        {
            Ok(found) => found.map(|d| d.room).ok_or_else(|| ChatError::not_found("room")),
            Err(e) if is_duplicate(&e) => Err(ChatError::Conflict { what: "room name" }),
            Err(e) => Err(err("update_room")(e)),
        }
    }

    async fn set_archived(&self, id: &RoomId, archived: bool) -> Result<Room> {
        self.rooms()
            .find_one_and_update(
                doc! {"_id": id.as_str()},
                doc! {"$set": {"archived": archived, "updatedAt": now_ms()}},
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(err("set_archived"))?
            .map(|d| d.room)
            .ok_or_else(|| ChatError::not_found("room"))
    }

    async fn delete_room(&self, id: &RoomId) -> Result<Vec<UserId>> {
        self.require_room(id).await?;
        let cursor =
            self.subs().find(doc! {"rid": id.as_str()}).sort(doc! {"uid": 1}).await.map_err(err("delete_room"))?;
        let members: Vec<UserId> = self.collect(cursor, "delete_room").await?.into_iter().map(|d| d.sub.uid).collect();
        let now = now_ms();
        let mut trash: Vec<Document> = members
            .iter()
            .map(|u| doc! {"collection": "subscriptions", "rid": id.as_str(), "uid": u.as_str(), "deletedAt": now})
            .collect();
        trash.push(doc! {"collection": "rooms", "rid": id.as_str(), "uid": Bson::Null, "deletedAt": now});
        self.raw("trash").insert_many(trash).await.map_err(err("delete_room"))?;
        self.messages().delete_many(doc! {"rid": id.as_str()}).await.map_err(err("delete_room"))?;
        self.subs().delete_many(doc! {"rid": id.as_str()}).await.map_err(err("delete_room"))?;
        self.rooms().delete_one(doc! {"_id": id.as_str()}).await.map_err(err("delete_room"))?;
        Ok(members)
    }

    async fn add_member(&self, room: &RoomId, user: &UserId, roles: Vec<Role>) -> Result<Created<Subscription>> {
        validate_room_roles(&roles)?;
        if let Some(sub) = self.sub_state(room, user).await? {
            return Ok(Created { value: sub, created: false });
        }
        let r = self.require_room(room).await?;
        let u = self.get_user(user).await?.ok_or_else(|| ChatError::not_found("user"))?;
        let sub = Subscription::new_member(&r, &u, roles, now_ms());
        match self.subs().insert_one(sub_doc(sub.clone())).await {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {
                let existing = self.sub_state(room, user).await?.ok_or_else(|| ChatError::not_found("subscription"))?;
                return Ok(Created { value: existing, created: false });
            }
            Err(e) => return Err(ChatError::storage("add_member", e)),
        }
        self.rooms()
            .update_one(doc! {"_id": room.as_str()}, doc! {"$inc": {"usersCount": 1_i64}})
            .await
            .map_err(err("add_member"))?;
        Ok(Created { value: sub, created: true })
    }

    async fn remove_member(&self, room: &RoomId, user: &UserId) -> Result<bool> {
        let Some(sub) = self.sub_state(room, user).await? else { return Ok(false) };
        check_owner_handover(&sub, self.owners(room).await?)?;
        let r = self.subs().delete_one(doc! {"_id": sub_key(room, user)}).await.map_err(err("remove_member"))?;
        if r.deleted_count == 0 {
            return Ok(false);
        }
        self.rooms()
            .update_one(doc! {"_id": room.as_str()}, doc! {"$inc": {"usersCount": -1_i64}})
            .await
            .map_err(err("remove_member"))?;
        self.raw("trash")
            .insert_one(
                doc! {"collection": "subscriptions", "rid": room.as_str(), "uid": user.as_str(), "deletedAt": now_ms()},
            )
            .await
            .map_err(err("remove_member"))?;
        Ok(true)
    }

    async fn set_member_role(&self, room: &RoomId, user: &UserId, role: Role, add: bool) -> Result<Subscription> {
        validate_room_roles(&[role])?;
        let mut sub = self.sub_state(room, user).await?.ok_or_else(|| ChatError::not_found("subscription"))?;
        if add {
            if !sub.roles.contains(&role) {
                sub.roles.push(role);
            }
        } else {
            if role == Role::Owner {
                check_owner_handover(&sub, self.owners(room).await?)?;
            }
            sub.roles.retain(|r| *r != role);
        }
        sub.updated_at = now_ms();
        self.subs()
            .update_one(
                doc! {"_id": sub_key(room, user)},
                doc! {"$set": {"roles": bson_roles(&sub.roles), "isOwner": sub.is_owner(), "updatedAt": sub.updated_at}},
            )
            .await
            .map_err(err("set_member_role"))?;
        Ok(sub)
    }

    async fn get_subscription(&self, room: &RoomId, user: &UserId) -> Result<Option<Subscription>> {
        self.sub_state(room, user).await
    }

    async fn list_members(&self, room: &RoomId, after: Option<&UserId>, limit: usize) -> Result<Vec<Subscription>> {
        let mut f = doc! {"rid": room.as_str()};
        if let Some(a) = after {
            f.insert("uid", doc! {"$gt": a.as_str()});
        }
        let cursor = self
            .subs()
            .find(f)
            .sort(doc! {"uid": 1})
            .limit(n(page(Some(limit), MAX_LIST_PAGE) as u64))
            .await
            .map_err(err("list_members"))?;
        Ok(self.collect(cursor, "list_members").await?.into_iter().map(|d| d.sub).collect())
    }

    async fn count_owners(&self, room: &RoomId) -> Result<u64> {
        self.owners(room).await
    }

    async fn subscriptions_for_user(&self, user: &UserId, updated_since: Option<Millis>) -> Result<SubscriptionDelta> {
        let mut f = doc! {"uid": user.as_str()};
        if let Some(since) = updated_since {
            f.insert("updatedAt", doc! {"$gte": since});
        }
        let cursor = self.subs().find(f).sort(doc! {"rid": 1}).await.map_err(err("subscriptions_for_user"))?;
        let subs: Vec<Subscription> =
            self.collect(cursor, "subscriptions_for_user").await?.into_iter().map(|d| d.sub).collect();
        let mut update = Vec::with_capacity(subs.len());
        for sub in subs {
            if let Some(room) = self.get_room(&sub.rid).await? {
                update.push(MemberState { subscription: sub, counters: room.counters });
            }
        }
        let remove = match updated_since {
            None => Vec::new(),
            Some(since) => {
                let current = self.subscribed_rids(user).await?;
                let cursor = self
                    .raw("trash")
                    .find(doc! {"collection": "subscriptions", "uid": user.as_str(), "deletedAt": {"$gte": since}})
                    .await
                    .map_err(err("subscriptions_for_user"))?;
                let mut rids: Vec<RoomId> = self
                    .collect(cursor, "subscriptions_for_user")
                    .await?
                    .into_iter()
                    .filter_map(|d| d.get_str("rid").ok().map(RoomId::from))
                    .filter(|r| !current.iter().any(|c| c == r.as_str()))
                    .collect();
                rids.sort();
                rids.dedup();
                rids
            }
        };
        Ok(SubscriptionDelta { update, remove })
    }

    async fn mark_read(&self, room: &RoomId, user: &UserId) -> Result<MemberState> {
        let r = self.require_room(room).await?;
        let read = ReadState::caught_up(r.counters);
        let updated = self
            .subs()
            .find_one_and_update(
                doc! {"_id": sub_key(room, user)},
                doc! {"$set": {
                    "read.readMsgCount": n(read.read_msg_count),
                    "read.readRootCount": n(read.read_root_count),
                    "read.lastReadSeq": n(read.last_read_seq),
                    "mentions.userMentions": 0_i64,
                    "mentions.groupMentions": 0_i64,
                    "updatedAt": now_ms(),
                }},
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(err("mark_read"))?
            .ok_or_else(|| ChatError::not_found("subscription"))?;
        Ok(MemberState { subscription: updated.sub, counters: r.counters })
    }

    async fn set_subscription_prefs(
        &self,
        room: &RoomId,
        user: &UserId,
        prefs: SubscriptionPrefs,
    ) -> Result<Subscription> {
        let current = self.sub_state(room, user).await?.ok_or_else(|| ChatError::not_found("subscription"))?;
        let mut next = current.clone();
        if !prefs.apply(&mut next) {
            return Ok(current);
        }
        // Only the fields the change names are written, each with one atomic `$set`.
        let mut set = doc! {"updatedAt": now_ms().max(current.updated_at + 1)};
        if let Some(v) = prefs.notify {
            set.insert("notify", v.as_str());
        }
        if let Some(v) = prefs.open {
            set.insert("open", v);
        }
        if let Some(v) = prefs.favorite {
            set.insert("favorite", v);
        }
        if let Some(v) = prefs.disable_notifications {
            set.insert("disableNotifications", v);
        }
        if let Some(v) = prefs.mute_group_mentions {
            set.insert("muteGroupMentions", v);
        }
        let updated = self
            .subs()
            .find_one_and_update(doc! {"_id": sub_key(room, user)}, doc! {"$set": set})
            .return_document(ReturnDocument::After)
            .await
            .map_err(err("set_subscription_prefs"))?
            .ok_or_else(|| ChatError::not_found("subscription"))?;
        Ok(updated.sub)
    }

    async fn members_with_notify(&self, room: &RoomId, level: NotifyLevel, limit: usize) -> Result<Vec<Subscription>> {
        let cursor = self
            .subs()
            .find(doc! {"rid": room.as_str(), "notify": level.as_str()})
            .sort(doc! {"uid": 1})
            .limit(n(page(Some(limit), MAX_LIST_PAGE) as u64))
            .await
            .map_err(err("members_with_notify"))?;
        Ok(self.collect(cursor, "members_with_notify").await?.into_iter().map(|d| d.sub).collect())
    }

    async fn import(&self, batch: ImportBatch, progress: ImportProgress) -> Result<ImportOutcome> {
        import::import(self, batch, progress).await
    }

    async fn insert_message(&self, new: NewMessage) -> Result<Created<Message>> {
        new.validate(MAX_MESSAGE_CHARS * 10)?;
        if let Some(key) = &new.client_msg_id {
            if let Some(existing) = self.existing_by_client_id(&new.u.id, key).await? {
                if existing.rid != new.rid {
                    return Err(ChatError::invalid("clientMsgId", "already used for another room"));
                }
                return Ok(Created { value: existing, created: false });
            }
        }
        let room = self.require_room(&new.rid).await?;
        if let Some(tmid) = &new.tmid {
            let root = self.get_message(tmid).await?.ok_or_else(|| ChatError::not_found("message"))?;
            if root.rid != room.id {
                return Err(ChatError::not_found("thread"));
            }
            if root.tmid.is_some() {
                return Err(ChatError::invalid("tmid", "replies go to the thread root"));
            }
            root.ensure_live()?;
        }
        let timeline = new.timeline();
        let now = now_ms();
        // §5.3 step 2: the room's counter is the sequence.
        let bumped = self
            .rooms()
            .find_one_and_update(
                doc! {"_id": room.id.as_str()},
                doc! {
                    "$inc": {"counters.msgCount": 1_i64, "counters.rootCount": i64::from(timeline)},
                    "$set": {"lastMessageAt": now},
                },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(err("insert_message"))?
            .ok_or_else(|| ChatError::not_found("room"))?;
        let seq = bumped.room.counters.msg_count;
        let msg = Message {
            id: MessageId::generate(),
            rid: new.rid,
            seq,
            u: new.u,
            msg: new.msg,
            t: new.t,
            ts: now,
            updated_at: now,
            edited_at: None,
            edited_by: None,
            tmid: new.tmid,
            tshow: new.tshow,
            timeline,
            tcount: 0,
            tlm: None,
            replies: Vec::new(),
            mentions: new.mentions,
            group_mention: new.group_mention,
            reactions: Default::default(),
            pinned: false,
            pinned_at: None,
            pinned_by: None,
            attachments: new.attachments,
            client_msg_id: new.client_msg_id,
            deleted_at: None,
        };
        if let Err(e) = self.messages().insert_one(MsgDoc::new(msg.clone())).await {
            // A concurrent retry won the idempotency key: return its message, leave a seq hole.
            if is_duplicate(&e) {
                if let Some(key) = &msg.client_msg_id {
                    if let Some(existing) = self.existing_by_client_id(&msg.u.id, key).await? {
                        return Ok(Created { value: existing, created: false });
                    }
                }
            }
            return Err(ChatError::storage("insert_message", e));
        }
        if let Some(tmid) = &msg.tmid {
            self.messages()
                .update_one(
                    doc! {"_id": tmid.as_str()},
                    doc! {
                        "$inc": {"tcount": 1_i64},
                        "$set": {"tlm": now, "updatedAt": now},
                        "$addToSet": {"replies": msg.u.id.as_str()},
                    },
                )
                .await
                .map_err(err("insert_message"))?;
        }
        let own = sub_key(&msg.rid, &msg.u.id);
        self.subs()
            .update_one(
                doc! {"_id": &own},
                doc! {"$inc": {"read.readMsgCount": 1_i64, "read.readRootCount": i64::from(timeline)}},
            )
            .await
            .map_err(err("insert_message"))?;
        self.subs()
            .update_one(doc! {"_id": &own, "read.lastReadSeq": n(seq - 1)}, doc! {"$set": {"read.lastReadSeq": n(seq)}})
            .await
            .map_err(err("insert_message"))?;
        let mentioned: Vec<&str> = msg.mentions.iter().filter(|m| m.id != msg.u.id).map(|m| m.id.as_str()).collect();
        if !mentioned.is_empty() {
            self.subs()
                .update_many(
                    doc! {"rid": msg.rid.as_str(), "uid": {"$in": mentioned}},
                    doc! {"$inc": {"mentions.userMentions": 1_i64}, "$set": {"updatedAt": now}},
                )
                .await
                .map_err(err("insert_message"))?;
        }
        if msg.group_mention {
            self.subs()
                .update_many(
                    doc! {"rid": msg.rid.as_str(), "uid": {"$ne": msg.u.id.as_str()}},
                    doc! {"$inc": {"mentions.groupMentions": 1_i64}, "$set": {"updatedAt": now}},
                )
                .await
                .map_err(err("insert_message"))?;
        }
        Ok(Created { value: msg, created: true })
    }

    async fn get_message(&self, id: &MessageId) -> Result<Option<Message>> {
        Ok(self.messages().find_one(doc! {"_id": id.as_str()}).await.map_err(err("get_message"))?.map(|d| d.msg))
    }

    async fn edit_message(
        &self,
        id: &MessageId,
        text: &str,
        editor: &UserId,
        mentions: Vec<Mention>,
    ) -> Result<Message> {
        self.modify(id, |m, now| m.edit(text, editor, mentions.clone(), now)).await
    }

    async fn delete_message(&self, id: &MessageId) -> Result<Message> {
        self.modify(id, |m, now| {
            let was = m.is_deleted();
            m.tombstone(now);
            Ok(!was)
        })
        .await
    }

    async fn set_reaction(&self, id: &MessageId, emoji: &str, user: &UserId, on: bool) -> Result<Message> {
        self.modify(id, |m, _| m.react(emoji, user, on)).await
    }

    async fn set_pinned(&self, id: &MessageId, by: &UserId, on: bool) -> Result<Message> {
        self.modify(id, |m, now| m.pin(by, on, now)).await
    }

    async fn history(&self, room: &RoomId, p: Page) -> Result<Vec<Message>> {
        let rid = room.as_str();
        let (filter, desc, limit) = match p {
            Page::Latest { limit } => (doc! {"rid": rid, "timeline": true}, true, limit),
            Page::Before { seq, limit } => (doc! {"rid": rid, "timeline": true, "seq": {"$lt": n(seq)}}, true, limit),
            Page::After { seq, limit } => (doc! {"rid": rid, "timeline": true, "seq": {"$gt": n(seq)}}, false, limit),
        };
        let limit = page(Some(limit), MAX_HISTORY_PAGE);
        let mut out = self.find_messages(filter, doc! {"seq": if desc { -1 } else { 1 }}, limit).await?;
        if desc {
            out.reverse();
        }
        Ok(out)
    }

    async fn messages_after(&self, room: &RoomId, after: Seq, limit: usize) -> Result<Vec<Message>> {
        let f = doc! {"rid": room.as_str(), "seq": {"$gt": n(after)}};
        self.find_messages(f, doc! {"seq": 1}, page(Some(limit), MAX_SYNC_PAGE + 1)).await
    }

    async fn messages_updated_since(
        &self,
        room: &RoomId,
        since: Millis,
        up_to: Seq,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let f = doc! {"rid": room.as_str(), "updatedAt": {"$gte": since}, "seq": {"$lte": n(up_to)}};
        self.find_messages(f, doc! {"seq": 1}, page(Some(limit), MAX_SYNC_PAGE + 1)).await
    }

    async fn thread_messages(&self, root: &MessageId, after: Seq, limit: usize) -> Result<Vec<Message>> {
        let f = doc! {"tmid": root.as_str(), "seq": {"$gt": n(after)}};
        self.find_messages(f, doc! {"seq": 1}, page(Some(limit), MAX_HISTORY_PAGE)).await
    }

    async fn thread_roots(&self, room: &RoomId, before_tlm: Option<Millis>, limit: usize) -> Result<Vec<Message>> {
        let mut f = doc! {"rid": room.as_str(), "tcount": {"$gt": 0_i64}};
        if let Some(before) = before_tlm {
            f.insert("tlm", doc! {"$lt": before});
        }
        self.find_messages(f, doc! {"tlm": -1}, page(Some(limit), MAX_HISTORY_PAGE)).await
    }

    async fn pinned_messages(&self, room: &RoomId, limit: usize) -> Result<Vec<Message>> {
        let f = doc! {"rid": room.as_str(), "pinned": true};
        self.find_messages(f, doc! {"pinnedAt": -1}, page(Some(limit), MAX_HISTORY_PAGE)).await
    }

    async fn search_messages(&self, q: &SearchQuery) -> Result<Vec<Message>> {
        crate::limits::check_chars("text", &q.text, MAX_SEARCH_QUERY_CHARS)?;
        let terms = quoted_terms(&q.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let mut rids = self.subscribed_rids(&q.reader).await?;
        if let Some(p) = &q.preview_room {
            if self.get_room(p).await?.is_some_and(|r| r.t == RoomType::Channel) {
                rids.push(p.0.clone());
            }
        }
        if let Some(only) = &q.room {
            rids.retain(|r| r == only.as_str());
        }
        if rids.is_empty() {
            return Ok(Vec::new());
        }
        let f = doc! {
            "$text": {"$search": terms.join(" ")},
            "rid": {"$in": rids},
            "deletedAt": Bson::Null,
            "t": Bson::Null,
        };
        self.find_messages(f, doc! {"ts": -1}, page(Some(q.limit), MAX_SEARCH_RESULTS)).await
    }

    async fn permission_overrides(&self) -> Result<Vec<(Permission, Vec<Role>)>> {
        let cursor = self.raw("permissions").find(doc! {}).sort(doc! {"_id": 1}).await.map_err(err("permissions"))?;
        let docs = self.collect(cursor, "permissions").await?;
        let mut out = Vec::new();
        for d in docs {
            let Some(perm) = d.get_str("_id").ok().and_then(Permission::parse) else { continue };
            let roles = d
                .get_array("roles")
                .map(|a| a.iter().filter_map(|b| b.as_str().and_then(Role::parse)).collect())
                .unwrap_or_default();
            out.push((perm, roles));
        }
        Ok(out)
    }

    async fn set_permission(&self, perm: Permission, roles: Vec<Role>) -> Result<()> {
        PermissionTable::default().set(perm, roles.clone())?;
        self.raw("permissions")
            .replace_one(doc! {"_id": perm.as_str()}, doc! {"_id": perm.as_str(), "roles": bson_roles(&roles)})
            .upsert(true)
            .await
            .map_err(err("set_permission"))?;
        Ok(())
    }

    async fn settings(&self) -> Result<Vec<(String, serde_json::Value)>> {
        let cursor = self.raw("settings").find(doc! {}).sort(doc! {"_id": 1}).await.map_err(err("settings"))?;
        let docs = self.collect(cursor, "settings").await?;
        let mut out = Vec::new();
        for d in docs {
            let (Ok(key), Ok(raw)) = (d.get_str("_id"), d.get_str("json")) else { continue };
            let value = serde_json::from_str(raw).map_err(|e| ChatError::storage("settings", e))?;
            out.push((key.to_owned(), value));
        }
        Ok(out)
    }

    async fn set_setting(&self, key: &str, value: serde_json::Value) -> Result<()> {
        if key.is_empty() || key.len() > 128 {
            return Err(ChatError::invalid("key", "must be 1 to 128 bytes"));
        }
        // Stored as JSON text: keeps integer/float/bool types exact across both backends.
        let raw = serde_json::to_string(&value).map_err(|e| ChatError::storage("set_setting", e))?;
        self.raw("settings")
            .replace_one(doc! {"_id": key}, doc! {"_id": key, "json": raw})
            .upsert(true)
            .await
            .map_err(err("set_setting"))?;
        Ok(())
    }

    async fn user_status(&self, user: &UserId) -> Result<Option<Manual>> {
        live::user_status(self, user).await
    }
    async fn set_user_status(&self, user: &UserId, status: &Manual) -> Result<()> {
        live::set_user_status(self, user, status).await
    }
    async fn create_integration(&self, integration: &Integration) -> Result<()> {
        live::create_integration(self, integration).await
    }
    async fn get_integration(&self, id: &str) -> Result<Option<Integration>> {
        live::get_integration(self, id).await
    }
    async fn list_integrations(&self, kind: Option<IntegrationKind>, limit: usize) -> Result<Vec<Integration>> {
        live::list_integrations(self, kind, limit).await
    }
    async fn delete_integration(&self, id: &str) -> Result<bool> {
        live::delete_integration(self, id).await
    }
    async fn record_delivery(&self, delivery: &Delivery) -> Result<()> {
        live::record_delivery(self, delivery).await
    }
    async fn deliveries(&self, integration_id: &str, limit: usize) -> Result<Vec<Delivery>> {
        live::deliveries(self, integration_id, limit).await
    }
}

impl MongoStore {
    async fn subscribed_rids(&self, user: &UserId) -> Result<Vec<String>> {
        let cursor = self.subs().find(doc! {"uid": user.as_str()}).await.map_err(err("subscribed_rids"))?;
        Ok(self.collect(cursor, "subscribed_rids").await?.into_iter().map(|d| d.sub.rid.0).collect())
    }

    async fn existing_by_client_id(&self, author: &UserId, key: &str) -> Result<Option<Message>> {
        let f = doc! {"u._id": author.as_str(), "cmid": key};
        Ok(self.messages().find_one(f).await.map_err(err("insert_message"))?.map(|d| d.msg))
    }
}
