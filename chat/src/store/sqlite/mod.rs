//! The embedded SQLite backend: one database file on disk in WAL mode, FTS5 for search, versioned
//! migrations ([`schema`]).
//!
//! Threading: the connection lives on one dedicated OS thread. Async callers send it boxed jobs through
//! a bounded queue ([`QUEUE_DEPTH`]; a full queue makes callers wait, which is the backpressure) and
//! await the answer on a oneshot channel, so no SQLite call ever blocks the Tokio runtime. One thread
//! also serializes writers, which is what SQLite allows anyway, and makes each read-check-write
//! transaction race-free within the process. The thread ends when the last [`SqliteStore`] clone is
//! dropped. Readers share that thread too; separate read connections are a later optimisation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::ids::{MessageId, Millis, RoomId, SessionId, UserId};
use crate::integration::{Delivery, Integration, IntegrationKind};
use crate::message::{Mention, Message, NewMessage};
use crate::permissions::Permission;
use crate::presence::Manual;
use crate::roles::Role;
use crate::room::{NewRoom, NotifyLevel, Room, RoomPatch, Subscription, SubscriptionPrefs};
use crate::store::{
    Created, ImportBatch, ImportOutcome, ImportProgress, MemberState, NewSession, Page, SearchQuery, Session,
    SessionKind, Store, SubscriptionDelta,
};
use crate::unread::Seq;
use crate::user::{NewUser, User};
use crate::{ChatError, Result};

mod import;
mod live;
mod ops;
mod rows;
pub mod schema;

/// Jobs waiting for the database thread before callers are made to wait.
pub const QUEUE_DEPTH: usize = 1024;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the SQLite store; cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    path: Arc<PathBuf>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies migrations and starts the worker.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("chat-sqlite".into())
            .spawn(move || {
                let mut conn = match open_connection(&thread_path) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if ready_tx.send(Ok(())).is_err() {
                    return;
                }
                while let Some(job) = rx.blocking_recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| ChatError::storage("open", e))?;
        ready_rx.await.map_err(|_| ChatError::Unavailable)??;
        Ok(SqliteStore { jobs, path: Arc::new(path) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(job).await.map_err(|_| ChatError::Unavailable)?;
        rx.await.map_err(|_| ChatError::Unavailable)?
    }
}

/// How often, and how far apart, opening retries a file another process holds locked (50 × 100 ms).
const OPEN_RETRIES: u32 = 50;
const OPEN_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

fn open_connection(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path).map_err(|e| ChatError::storage("open", e))?;
    // The busy timeout first: switching a new file to WAL needs a lock another process opening the same
    // file may hold for a moment. SQLite does not always call the busy handler for that switch (two
    // processes creating the same file at once got SQLITE_BUSY straight away), so retry it, bounded.
    let mut attempt = 0;
    loop {
        match conn.execute_batch(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        ) {
            Ok(()) => break,
            Err(e) if attempt < OPEN_RETRIES && is_busy(&e) => {
                attempt += 1;
                std::thread::sleep(OPEN_RETRY_PAUSE);
            }
            Err(e) => return Err(ChatError::storage("open", e)),
        }
    }
    schema::migrate(&mut conn)?;
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, new: NewUser) -> Result<User> {
        self.call(move |c| ops::create_user(c, new)).await
    }
    async fn get_user(&self, id: &UserId) -> Result<Option<User>> {
        let id = id.clone();
        self.call(move |c| ops::get_user(c, &id)).await
    }
    async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        let u = username.to_owned();
        self.call(move |c| ops::user_by_username(c, &u)).await
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let e = email.to_owned();
        self.call(move |c| ops::user_by_email(c, &e)).await
    }
    async fn users_by_usernames(&self, usernames: &[String]) -> Result<Vec<User>> {
        let names = usernames.to_vec();
        self.call(move |c| ops::users_by_usernames(c, &names)).await
    }
    async fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<User>> {
        let p = prefix.to_owned();
        self.call(move |c| ops::search_users(c, &p, limit)).await
    }
    async fn count_users(&self) -> Result<u64> {
        self.call(|c| ops::count_users(c)).await
    }
    async fn list_users(&self, after: Option<&str>, limit: usize) -> Result<Vec<User>> {
        let after = after.map(str::to_owned);
        self.call(move |c| ops::list_users(c, after.as_deref(), limit)).await
    }
    async fn set_user_active(&self, id: &UserId, active: bool) -> Result<Vec<SessionId>> {
        let id = id.clone();
        self.call(move |c| ops::set_user_active(c, &id, active)).await
    }
    async fn set_user_roles(&self, id: &UserId, roles: Vec<Role>) -> Result<User> {
        let id = id.clone();
        self.call(move |c| ops::set_user_roles(c, &id, roles)).await
    }
    async fn set_password_hash(&self, id: &UserId, hash: &str) -> Result<()> {
        let (id, hash) = (id.clone(), hash.to_owned());
        self.call(move |c| ops::set_password_hash(c, &id, &hash)).await
    }
    async fn password_hash(&self, id: &UserId) -> Result<Option<String>> {
        let id = id.clone();
        self.call(move |c| ops::password_hash(c, &id)).await
    }

    async fn create_session(&self, new: NewSession) -> Result<Session> {
        self.call(move |c| ops::create_session(c, new)).await
    }
    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>> {
        let id = id.clone();
        self.call(move |c| ops::session_where(c, "id = ?1", id.as_str())).await
    }
    async fn session_by_token_hash(&self, hash: &str) -> Result<Option<Session>> {
        let h = hash.to_owned();
        self.call(move |c| ops::session_where(c, "token_hash = ?1", &h)).await
    }
    async fn touch_session(&self, id: &SessionId, at: Millis) -> Result<()> {
        let id = id.clone();
        self.call(move |c| ops::touch_session(c, &id, at)).await
    }
    async fn list_sessions(&self, user: &UserId, kind: Option<SessionKind>) -> Result<Vec<Session>> {
        let user = user.clone();
        self.call(move |c| ops::list_sessions(c, &user, kind)).await
    }
    async fn revoke_session(&self, id: &SessionId) -> Result<bool> {
        let id = id.clone();
        self.call(move |c| ops::revoke_session(c, &id)).await
    }
    async fn revoke_user_sessions(&self, user: &UserId, keep: Option<&SessionId>) -> Result<Vec<SessionId>> {
        let (user, keep) = (user.clone(), keep.cloned());
        self.call(move |c| ops::revoke_user_sessions(c, &user, keep.as_ref())).await
    }

    async fn create_room(&self, new: NewRoom) -> Result<Created<Room>> {
        self.call(move |c| ops::create_room(c, new)).await
    }
    async fn get_room(&self, id: &RoomId) -> Result<Option<Room>> {
        let id = id.clone();
        self.call(move |c| ops::get_room(c, &id)).await
    }
    async fn room_by_name(&self, name: &str) -> Result<Option<Room>> {
        let n = name.to_owned();
        self.call(move |c| ops::room_by_name(c, &n)).await
    }
    async fn rooms_for_user(&self, user: &UserId, updated_since: Option<Millis>) -> Result<Vec<Room>> {
        let user = user.clone();
        self.call(move |c| ops::rooms_for_user(c, &user, updated_since)).await
    }
    async fn directory(&self, term: &str, after: Option<&str>, limit: usize) -> Result<Vec<Room>> {
        let (term, after) = (term.to_owned(), after.map(str::to_owned));
        self.call(move |c| ops::directory(c, &term, after.as_deref(), limit)).await
    }
    async fn update_room(&self, id: &RoomId, patch: RoomPatch) -> Result<Room> {
        let id = id.clone();
        self.call(move |c| ops::update_room(c, &id, patch)).await
    }
    async fn set_archived(&self, id: &RoomId, archived: bool) -> Result<Room> {
        let id = id.clone();
        self.call(move |c| ops::set_archived(c, &id, archived)).await
    }
    async fn delete_room(&self, id: &RoomId) -> Result<Vec<UserId>> {
        let id = id.clone();
        self.call(move |c| ops::delete_room(c, &id)).await
    }

    async fn add_member(&self, room: &RoomId, user: &UserId, roles: Vec<Role>) -> Result<Created<Subscription>> {
        let (room, user) = (room.clone(), user.clone());
        self.call(move |c| ops::add_member(c, &room, &user, roles)).await
    }
    async fn remove_member(&self, room: &RoomId, user: &UserId) -> Result<bool> {
        let (room, user) = (room.clone(), user.clone());
        self.call(move |c| ops::remove_member(c, &room, &user)).await
    }
    async fn set_member_role(&self, room: &RoomId, user: &UserId, role: Role, add: bool) -> Result<Subscription> {
        let (room, user) = (room.clone(), user.clone());
        self.call(move |c| ops::set_member_role(c, &room, &user, role, add)).await
    }
    async fn get_subscription(&self, room: &RoomId, user: &UserId) -> Result<Option<Subscription>> {
        let (room, user) = (room.clone(), user.clone());
        self.call(move |c| ops::get_subscription(c, &room, &user)).await
    }
    async fn list_members(&self, room: &RoomId, after: Option<&UserId>, limit: usize) -> Result<Vec<Subscription>> {
        let (room, after) = (room.clone(), after.cloned());
        self.call(move |c| ops::list_members(c, &room, after.as_ref(), limit)).await
    }
    async fn count_owners(&self, room: &RoomId) -> Result<u64> {
        let room = room.clone();
        self.call(move |c| ops::count_owners(c, &room)).await
    }
    async fn subscriptions_for_user(&self, user: &UserId, updated_since: Option<Millis>) -> Result<SubscriptionDelta> {
        let user = user.clone();
        self.call(move |c| ops::subscriptions_for_user(c, &user, updated_since)).await
    }
    async fn mark_read(&self, room: &RoomId, user: &UserId) -> Result<MemberState> {
        let (room, user) = (room.clone(), user.clone());
        self.call(move |c| ops::mark_read(c, &room, &user)).await
    }
    async fn set_subscription_prefs(
        &self,
        room: &RoomId,
        user: &UserId,
        prefs: SubscriptionPrefs,
    ) -> Result<Subscription> {
        let (room, user) = (room.clone(), user.clone());
        self.call(move |c| ops::set_subscription_prefs(c, &room, &user, &prefs)).await
    }
    async fn members_with_notify(&self, room: &RoomId, level: NotifyLevel, limit: usize) -> Result<Vec<Subscription>> {
        let room = room.clone();
        self.call(move |c| ops::members_with_notify(c, &room, level, limit)).await
    }

    async fn import(&self, batch: ImportBatch, progress: ImportProgress) -> Result<ImportOutcome> {
        self.call(move |c| import::import(c, batch, &progress)).await
    }

    async fn insert_message(&self, new: NewMessage) -> Result<Created<Message>> {
        self.call(move |c| ops::insert_message(c, new)).await
    }
    async fn get_message(&self, id: &MessageId) -> Result<Option<Message>> {
        let id = id.clone();
        self.call(move |c| ops::get_message(c, &id)).await
    }
    async fn edit_message(
        &self,
        id: &MessageId,
        text: &str,
        editor: &UserId,
        mentions: Vec<Mention>,
    ) -> Result<Message> {
        let (id, text, editor) = (id.clone(), text.to_owned(), editor.clone());
        self.call(move |c| ops::modify_message(c, &id, |m, now| m.edit(&text, &editor, mentions, now))).await
    }
    async fn delete_message(&self, id: &MessageId) -> Result<Message> {
        let id = id.clone();
        self.call(move |c| {
            ops::modify_message(c, &id, |m, now| {
                let was = m.is_deleted();
                m.tombstone(now);
                Ok(!was)
            })
        })
        .await
    }
    async fn set_reaction(&self, id: &MessageId, emoji: &str, user: &UserId, on: bool) -> Result<Message> {
        let (id, emoji, user) = (id.clone(), emoji.to_owned(), user.clone());
        self.call(move |c| ops::modify_message(c, &id, |m, _| m.react(&emoji, &user, on))).await
    }
    async fn set_pinned(&self, id: &MessageId, by: &UserId, on: bool) -> Result<Message> {
        let (id, by) = (id.clone(), by.clone());
        self.call(move |c| ops::modify_message(c, &id, |m, now| m.pin(&by, on, now))).await
    }
    async fn history(&self, room: &RoomId, page: Page) -> Result<Vec<Message>> {
        let room = room.clone();
        self.call(move |c| ops::history(c, &room, page)).await
    }
    async fn messages_after(&self, room: &RoomId, after: Seq, limit: usize) -> Result<Vec<Message>> {
        let room = room.clone();
        self.call(move |c| ops::messages_after(c, &room, after, limit)).await
    }
    async fn messages_updated_since(
        &self,
        room: &RoomId,
        since: Millis,
        up_to: Seq,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let room = room.clone();
        self.call(move |c| ops::messages_updated_since(c, &room, since, up_to, limit)).await
    }
    async fn thread_messages(&self, root: &MessageId, after: Seq, limit: usize) -> Result<Vec<Message>> {
        let root = root.clone();
        self.call(move |c| ops::thread_messages(c, &root, after, limit)).await
    }
    async fn thread_roots(&self, room: &RoomId, before_tlm: Option<Millis>, limit: usize) -> Result<Vec<Message>> {
        let room = room.clone();
        self.call(move |c| ops::thread_roots(c, &room, before_tlm, limit)).await
    }
    async fn pinned_messages(&self, room: &RoomId, limit: usize) -> Result<Vec<Message>> {
        let room = room.clone();
        self.call(move |c| ops::pinned_messages(c, &room, limit)).await
    }
    async fn search_messages(&self, query: &SearchQuery) -> Result<Vec<Message>> {
        let q = query.clone();
        self.call(move |c| ops::search_messages(c, &q)).await
    }

    async fn permission_overrides(&self) -> Result<Vec<(Permission, Vec<Role>)>> {
        self.call(|c| ops::permission_overrides(c)).await
    }
    async fn set_permission(&self, perm: Permission, roles: Vec<Role>) -> Result<()> {
        // Validate against the table's invariants before persisting.
        crate::permissions::PermissionTable::default().set(perm, roles.clone())?;
        self.call(move |c| ops::set_permission(c, perm, roles)).await
    }
    async fn settings(&self) -> Result<Vec<(String, serde_json::Value)>> {
        self.call(|c| ops::settings(c)).await
    }
    async fn set_setting(&self, key: &str, value: serde_json::Value) -> Result<()> {
        let key = key.to_owned();
        self.call(move |c| ops::set_setting(c, &key, &value)).await
    }

    async fn user_status(&self, user: &UserId) -> Result<Option<Manual>> {
        let user = user.clone();
        self.call(move |c| live::user_status(c, &user)).await
    }
    async fn set_user_status(&self, user: &UserId, status: &Manual) -> Result<()> {
        let (user, status) = (user.clone(), status.clone());
        self.call(move |c| live::set_user_status(c, &user, &status)).await
    }
    async fn create_integration(&self, integration: &Integration) -> Result<()> {
        let i = integration.clone();
        self.call(move |c| live::create_integration(c, &i)).await
    }
    async fn get_integration(&self, id: &str) -> Result<Option<Integration>> {
        let id = id.to_owned();
        self.call(move |c| live::get_integration(c, &id)).await
    }
    async fn list_integrations(&self, kind: Option<IntegrationKind>, limit: usize) -> Result<Vec<Integration>> {
        self.call(move |c| live::list_integrations(c, kind, limit)).await
    }
    async fn delete_integration(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| live::delete_integration(c, &id)).await
    }
    async fn record_delivery(&self, delivery: &Delivery) -> Result<()> {
        let d = delivery.clone();
        self.call(move |c| live::record_delivery(c, &d)).await
    }
    async fn deliveries(&self, integration_id: &str, limit: usize) -> Result<Vec<Delivery>> {
        let id = integration_id.to_owned();
        self.call(move |c| live::deliveries(c, &id, limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::UserKind;

    /// Two frontends sharing one store may start at the same moment: every opener of a fresh file must
    /// come up (one migrates, the others wait for its lock and find the schema there), and they see
    /// each other's writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_openers_of_one_fresh_file_all_come_up_and_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let opens: Vec<_> = (0..4).map(|_| tokio::spawn(SqliteStore::open(path.clone()))).collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().expect("every opener comes up"));
        }
        let new = NewUser {
            username: "shared".into(),
            name: "Shared".into(),
            email: None,
            kind: UserKind::User,
            roles: vec![Role::User],
            password_hash: None,
        };
        let user = stores[0].create_user(new).await.unwrap();
        for s in &stores[1..] {
            assert_eq!(s.user_by_username("shared").await.unwrap().map(|u| u.id), Some(user.id.clone()));
        }
    }
}
