//! The operations of §2.1 over one [`Store`], with every permission check, shared by the transports
//! (socket RPCs now, REST later). An operation authenticates the caller (session still valid, account
//! active), authorizes with [`Policy`], writes through the store, and returns its result together with
//! the [`Effect`]s the transport must carry out afterwards, in order: events to publish on `room/<id>` and
//! `user/<id>` (always *after* the write, §0.6), and cluster-wide actions (cut a member's live room
//! subscription, close a revoked session's sockets). The service itself never talks to the network, so
//! it is tested on a store alone.
//!
//! Invisibility (§7.4): every refusal about a private room the caller is not a member of is
//! `NotFound { what: "room" }`, the same error as for an id that does not exist; refusals about a message
//! of such a room are `NotFound { what: "message" }`, the same as for an unknown message id.

use std::sync::{Arc, OnceLock, RwLock};

use serde::Serialize;
use serde_json::{json, Value};

use crate::auth;
use crate::ids::{now_ms, validate_id, MessageId, Millis, RoomId, SessionId, UserId};
use crate::limits::{self, MAX_HISTORY_PAGE, MAX_LIST_PAGE, MAX_MEMBERS_PER_CALL};
use crate::mentions;
use crate::message::{Mention, Message, NewMessage, SystemType, UserRef};
use crate::permissions::PermissionTable;
use crate::policy::{Actor, Method, Policy, RoomView};
use crate::roles::Role;
use crate::room::{NewRoom, Room, RoomType, Subscription};
use crate::settings::Settings;
use crate::store::{MemberState, NewSession, Page, Session, SessionKind, Store, SubscriptionDelta, SyncResult};
use crate::unread::Seq;
use crate::user::{NewUser, User, UserKind};
use crate::{ChatError, Result};

mod abuse;
pub mod admin;
mod integrations;
mod live;
mod messages;

pub use integrations::CreatedIntegration;
pub use live::{presence_channel, PRESENCE_CHANNEL_PREFIX};
pub use messages::SearchInput;

/// Prefix of a room's event channel: `room/<rid>`.
pub const ROOM_CHANNEL_PREFIX: &str = "room/";
/// Prefix of a user's private channel: `user/<uid>`.
pub const USER_CHANNEL_PREFIX: &str = "user/";
/// Version of the event envelope (§4.3).
pub const EVENT_VERSION: u32 = 1;

/// `room/<rid>`.
pub fn room_channel(rid: &RoomId) -> String {
    format!("{ROOM_CHANNEL_PREFIX}{rid}")
}

/// `user/<uid>`.
pub fn user_channel(uid: &UserId) -> String {
    format!("{USER_CHANNEL_PREFIX}{uid}")
}

/// Something the transport must do after an operation succeeded.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "camelCase")]
pub enum Effect {
    /// Publish `data` on `channel` (server-side; clients cannot publish there).
    Publish { channel: String, data: Value },
    /// On every frontend, remove `uid`'s sockets from `room/<rid>` (`#kickOut`).
    Kick { rid: RoomId, uid: UserId },
    /// On every frontend, close the sockets authenticated with one of `sessions`.
    CloseSessions { uid: UserId, sessions: Vec<SessionId> },
    /// On every other frontend, reload the permission table and the settings from the store (an admin
    /// changed them here; this service has the new values already).
    ReloadPolicy,
}

/// A result and what to do about it.
#[derive(Clone, Debug)]
pub struct Outcome<T> {
    pub value: T,
    pub effects: Vec<Effect>,
}

impl<T> Outcome<T> {
    fn new(value: T, effects: Vec<Effect>) -> Self {
        Outcome { value, effects }
    }
}

/// Who calls: the user and session carried by the socket's short-lived token (or a REST token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: UserId,
    pub sid: SessionId,
}

/// A successful login or resume.
#[derive(Clone, Debug)]
pub struct Login {
    pub user: User,
    pub session: Session,
    /// The session's bearer secret: returned by a password login only, once, never stored.
    pub token: Option<String>,
}

/// Input of [`Service::create_user`] and [`Service::register`].
#[derive(Clone, Debug)]
pub struct UserInput {
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub password: String,
    /// Global roles; `None` = `user`. Ignored by open registration.
    pub roles: Option<Vec<Role>>,
}

/// Input of [`Service::send`].
#[derive(Clone, Debug)]
pub struct SendInput {
    pub rid: RoomId,
    pub msg: String,
    pub client_msg_id: Option<String>,
    pub tmid: Option<MessageId>,
    pub tshow: bool,
}

/// A sent message and whether this call stored it (false: an idempotent retry).
#[derive(Clone, Debug)]
pub struct Sent {
    pub message: Message,
    pub created: bool,
}

/// The chat operations over one store. Cheap to share behind an `Arc`.
pub struct Service {
    store: Arc<dyn Store>,
    permissions: RwLock<PermissionTable>,
    settings: RwLock<Settings>,
    abuse: abuse::AbuseLimits,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

/// An argon2 hash nobody's password matches, verified when a login names an unknown user so that
/// the answer takes as long as for a wrong password.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| auth::hash_password("no-such-user-dummy-password").unwrap_or_default())
}

/// Runs password hashing (argon2: ~19 MiB and tens of ms each) on a few long-lived threads, one per
/// core, fed by a bounded queue. On Tokio's blocking pool, a burst of logins spread the work over up to
/// hundreds of threads, and each thread's malloc arena kept its 19 MiB afterwards: a frontend that had
/// created 1,000 users held 1.5 GB. Here at most one hash per core runs, and the memory they keep is
/// bounded by the number of threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let Some(workers) = hash_workers() else {
        // No hashing thread could be started: Tokio's pool still does the work.
        return tokio::task::spawn_blocking(f).await.map_err(|e| ChatError::storage("argon2", e));
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        let _ = tx.send(f());
    });
    workers.send(job).await.map_err(|_| ChatError::Unavailable)?;
    rx.await.map_err(|_| ChatError::Unavailable)
}

type HashJob = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a hashing thread; callers wait (not fail) when it is full.
const HASH_QUEUE: usize = 256;

fn hash_workers() -> Option<&'static tokio::sync::mpsc::Sender<HashJob>> {
    static WORKERS: OnceLock<Option<tokio::sync::mpsc::Sender<HashJob>>> = OnceLock::new();
    WORKERS
        .get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel::<HashJob>(HASH_QUEUE);
            let rx = Arc::new(std::sync::Mutex::new(rx));
            let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            let mut started = 0;
            for i in 0..threads {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new().name(format!("chat-argon2-{i}")).spawn(move || loop {
                    // One thread at a time waits on the queue; the others wait for the lock.
                    let job = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).blocking_recv();
                    match job {
                        Some(job) => job(),
                        None => return,
                    }
                });
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) => tracing::error!(error = %e, "cannot start a password hashing thread"),
                }
            }
            (started > 0).then_some(tx)
        })
        .as_ref()
}

fn event(kind: &str, mut fields: Value) -> Value {
    if let Value::Object(m) = &mut fields {
        m.insert("type".into(), kind.into());
        m.insert("v".into(), EVENT_VERSION.into());
        m.insert("at".into(), now_ms().into());
    }
    fields
}

fn publish_room(rid: &RoomId, data: Value) -> Effect {
    Effect::Publish { channel: room_channel(rid), data }
}

fn publish_user(uid: &UserId, data: Value) -> Effect {
    Effect::Publish { channel: user_channel(uid), data }
}

fn message_new(m: &Message) -> Effect {
    publish_room(&m.rid, event("message.new", json!({ "rid": m.rid, "id": m.id, "seq": m.seq, "message": m })))
}

fn subscription_changed(uid: &UserId, action: &str, rid: &RoomId, extra: Value) -> Effect {
    let mut data = json!({ "action": action, "rid": rid });
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    publish_user(uid, event("subscription.changed", data))
}

/// `NotAllowed` for a non-member of a private room becomes the "no such room" answer.
fn refusal(room: &Room, sub: Option<&Subscription>, e: ChatError) -> ChatError {
    match e {
        ChatError::NotAllowed { .. } if room.t.is_private() && sub.is_none() => ChatError::NotFound { what: "room" },
        e => e,
    }
}

/// For methods addressed by message id: any "room not found" is "message not found".
fn as_message_error(e: ChatError) -> ChatError {
    match e {
        ChatError::NotFound { what: "room" } => ChatError::NotFound { what: "message" },
        e => e,
    }
}

impl Service {
    /// Loads the permission table and settings from the store.
    pub async fn new(store: Arc<dyn Store>) -> Result<Service> {
        let permissions = PermissionTable::with_overrides(store.permission_overrides().await?)?;
        let settings = Settings::from_pairs(store.settings().await?)?;
        let abuse = abuse::AbuseLimits::new(&settings);
        Ok(Service { store, permissions: RwLock::new(permissions), settings: RwLock::new(settings), abuse })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The settings as loaded (plus changes made through this service).
    pub fn settings(&self) -> Settings {
        self.settings.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn permissions(&self) -> PermissionTable {
        self.permissions.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Changes a setting by its RC name, without a caller: for operator flags at start-up.
    pub async fn set_setting_as_operator(&self, key: &str, value: Value) -> Result<()> {
        let next = self.settings().with(key, value.clone())?;
        self.store.set_setting(key, value).await?;
        *self.settings.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(())
    }

    fn authorize(&self, actor: &Actor, method: Method<'_>, room: Option<RoomView<'_>>) -> Result<()> {
        let permissions = self.permissions();
        let settings = self.settings();
        Policy { permissions: &permissions, settings: &settings }.authorize(actor, method, room)
    }

    // ---------------------------------------------------------------- accounts

    /// Creates the first admin, or confirms it exists (idempotent: an existing admin keeps its
    /// password). An existing non-admin account with that name is an error.
    pub async fn bootstrap_admin(&self, username: &str, password: &str) -> Result<(User, bool)> {
        if let Some(user) = self.store.user_by_username(username).await? {
            if user.roles.contains(&Role::Admin) {
                return Ok((user, false));
            }
            return Err(ChatError::Conflict { what: "username (exists and is not an admin)" });
        }
        let input = UserInput {
            username: username.to_owned(),
            name: None,
            email: None,
            password: password.to_owned(),
            roles: Some(vec![Role::Admin, Role::User]),
        };
        match self.insert_user(input).await {
            Ok(user) => Ok((user, true)),
            // Another frontend on the same store created it in the meantime (both started at once).
            Err(ChatError::Conflict { .. }) => match self.store.user_by_username(username).await? {
                Some(user) if user.roles.contains(&Role::Admin) => Ok((user, false)),
                _ => Err(ChatError::Conflict { what: "username (exists and is not an admin)" }),
            },
            Err(e) => Err(e),
        }
    }

    async fn insert_user(&self, input: UserInput) -> Result<User> {
        let roles = input.roles.unwrap_or_else(|| vec![Role::User]);
        let kind = if roles.contains(&Role::Bot) { UserKind::Bot } else { UserKind::User };
        let mut new = NewUser {
            name: input.name.unwrap_or_else(|| input.username.clone()),
            username: input.username,
            email: input.email,
            kind,
            roles,
            password_hash: None,
        };
        new.validate()?;
        auth::validate_password(&input.password)?;
        let password = input.password;
        new.password_hash = Some(blocking(move || auth::hash_password(&password)).await??);
        self.store.create_user(new).await
    }

    /// Open registration (`Accounts_RegistrationForm`): anyone may create a `user` account.
    pub async fn register(&self, mut input: UserInput) -> Result<User> {
        if !self.settings().accounts_open_registration {
            return Err(ChatError::NotAllowed { reason: "registration is closed" });
        }
        input.roles = None;
        self.insert_user(input).await
    }

    /// An admin creates an account (`create-user`), with roles (`assign-roles` for anything but `user`).
    pub async fn create_user(&self, caller: &Caller, input: UserInput) -> Result<User> {
        let (_, actor) = self.authenticate(caller).await?;
        self.authorize(&actor, Method::AdminCreateUser, None)?;
        if input.roles.as_ref().is_some_and(|r| r.as_slice() != [Role::User]) {
            self.authorize(&actor, Method::AdminSetRoles, None)?;
        }
        self.insert_user(input).await
    }

    /// Username (or e-mail) and password → a new login session. Every failure is the same
    /// `Unauthenticated`, and takes as long (an unknown user still costs one argon2 verification).
    /// Failed attempts are rate-limited per username and address (`client` as `ip:port` or ip) and per
    /// address; a blocked attempt is `TooManyRequests` before any password check.
    pub async fn login(&self, user: &str, password: &str, client: Option<String>) -> Result<Login> {
        let ip = abuse::client_ip(client.as_deref());
        self.check_login_rate(user, ip)?;
        let result = self.verify_login(user, password, client).await;
        if matches!(result, Err(ChatError::Unauthenticated)) {
            self.note_failed_login(user, ip);
        }
        result
    }

    async fn verify_login(&self, user: &str, password: &str, client: Option<String>) -> Result<Login> {
        let found = if user.contains('@') {
            self.store.user_by_email(user).await?
        } else {
            self.store.user_by_username(user).await?
        };
        let hash = match &found {
            Some(u) => self.store.password_hash(&u.id).await?,
            None => None,
        };
        let (password, known) = (password.to_owned(), hash.is_some());
        let phc = hash.unwrap_or_else(|| dummy_hash().to_owned());
        let ok = blocking(move || auth::verify_password(&password, &phc)).await?;
        let user = match found {
            Some(u) if ok && known => u,
            _ => return Err(ChatError::Unauthenticated),
        };
        if !user.active {
            return Err(ChatError::Unauthenticated);
        }
        let token = auth::issue_token();
        let days = i64::from(self.settings().accounts_login_expiration_days);
        let session = self
            .store
            .create_session(NewSession {
                user_id: user.id.clone(),
                kind: SessionKind::Login,
                token_hash: token.hash.clone(),
                name: None,
                last_four: token.last_four.clone(),
                expires_at: (days > 0).then(|| now_ms() + days * 86_400_000),
                client,
            })
            .await?;
        Ok(Login { user, session, token: Some(token.secret) })
    }

    /// A session token (login token or personal access token) → its session, if still valid.
    pub async fn resume(&self, secret: &str) -> Result<Login> {
        if secret.is_empty() || secret.len() > 256 {
            return Err(ChatError::Unauthenticated);
        }
        let session =
            self.store.session_by_token_hash(&auth::hash_token(secret)).await?.ok_or(ChatError::Unauthenticated)?;
        let now = now_ms();
        if !session.is_valid_at(now) {
            return Err(ChatError::Unauthenticated);
        }
        let user = self.store.get_user(&session.user_id).await?.ok_or(ChatError::Unauthenticated)?;
        if !user.active {
            return Err(ChatError::Unauthenticated);
        }
        self.store.touch_session(&session.id, now).await?;
        Ok(Login { user, session, token: None })
    }

    /// The caller's account and actor, if its session still exists and is valid and the account is active.
    pub async fn authenticate(&self, caller: &Caller) -> Result<(User, Actor)> {
        let session = self.store.get_session(&caller.sid).await?.ok_or(ChatError::Unauthenticated)?;
        if session.user_id != caller.uid || !session.is_valid_at(now_ms()) {
            return Err(ChatError::Unauthenticated);
        }
        let user = self.store.get_user(&caller.uid).await?.ok_or(ChatError::Unauthenticated)?;
        let actor = Actor::from_user(&user).map_err(|_| ChatError::Unauthenticated)?;
        Ok((user, actor))
    }

    /// Revokes the caller's session; its sockets are closed everywhere. A socket authenticated with a
    /// personal access token only logs itself out: the token lives until removed (`admin.rs`).
    pub async fn logout(&self, caller: &Caller) -> Result<Outcome<()>> {
        self.authenticate(caller).await?;
        if self.store.get_session(&caller.sid).await?.is_some_and(|s| s.kind == SessionKind::Pat) {
            return Ok(Outcome::new((), Vec::new()));
        }
        self.store.revoke_session(&caller.sid).await?;
        let effects = vec![
            publish_user(&caller.uid, event("session.revoked", json!({ "sessionId": caller.sid }))),
            Effect::CloseSessions { uid: caller.uid.clone(), sessions: vec![caller.sid.clone()] },
        ];
        Ok(Outcome::new((), effects))
    }

    // ---------------------------------------------------------------- rooms

    async fn resolve_usernames(&self, usernames: &[String]) -> Result<Vec<User>> {
        if usernames.len() > MAX_MEMBERS_PER_CALL {
            return Err(ChatError::TooLong { field: "members", limit: MAX_MEMBERS_PER_CALL, got: usernames.len() });
        }
        let users = self.store.users_by_usernames(usernames).await?;
        for name in usernames {
            if !users.iter().any(|u| u.username.eq_ignore_ascii_case(name)) {
                return Err(ChatError::NotFound { what: "user" });
            }
        }
        Ok(users)
    }

    /// `createChannel` / `createPrivateGroup`: the caller becomes owner; `members` are usernames.
    pub async fn create_room(
        &self,
        caller: &Caller,
        t: RoomType,
        name: &str,
        members: &[String],
        read_only: bool,
    ) -> Result<Outcome<Room>> {
        let (_, actor) = self.authenticate(caller).await?;
        let method = match t {
            RoomType::Channel => Method::CreateChannel,
            RoomType::Group => Method::CreateGroup,
            RoomType::Direct => return Err(ChatError::Invalid { field: "t", reason: "use createDirectMessage" }),
        };
        self.authorize(&actor, method, None)?;
        let ids = self.resolve_usernames(members).await?.into_iter().map(|u| u.id).collect();
        let new = match t {
            RoomType::Channel => NewRoom::channel(actor.id.clone(), name, ids, read_only)?,
            _ => NewRoom::group(actor.id.clone(), name, ids, read_only)?,
        };
        let room = self.store.create_room(new).await?.value;
        Ok(Outcome::new(room.clone(), self.membership_inserted(&room).await?))
    }

    /// `createDirectMessage(usernames)`: the existing DM of exactly these people, or a new one.
    pub async fn open_direct(&self, caller: &Caller, usernames: &[String]) -> Result<Outcome<Room>> {
        let (_, actor) = self.authenticate(caller).await?;
        self.authorize(&actor, Method::OpenDirect, None)?;
        let ids = self.resolve_usernames(usernames).await?.into_iter().map(|u| u.id).collect();
        let new = NewRoom::direct(actor.id.clone(), ids, self.settings().direct_message_max_users)?;
        let created = self.store.create_room(new).await?;
        let effects = if created.created { self.membership_inserted(&created.value).await? } else { Vec::new() };
        Ok(Outcome::new(created.value, effects))
    }

    /// `subscription.changed(inserted)` to every member of a new room.
    async fn membership_inserted(&self, room: &Room) -> Result<Vec<Effect>> {
        let members = self.store.list_members(&room.id, None, MAX_MEMBERS_PER_CALL + 1).await?;
        Ok(members
            .iter()
            .map(|s| subscription_changed(&s.uid, "inserted", &room.id, json!({ "room": room, "subscription": s })))
            .collect())
    }

    /// The room and the caller's subscription; an unknown id is `NotFound { room }`.
    async fn room_and_sub(&self, actor: &Actor, rid: &RoomId) -> Result<(Room, Option<Subscription>)> {
        validate_id("rid", rid.as_str()).map_err(|_| ChatError::NotFound { what: "room" })?;
        let room = self.store.get_room(rid).await?.ok_or(ChatError::NotFound { what: "room" })?;
        let sub = self.store.get_subscription(rid, &actor.id).await?;
        Ok((room, sub))
    }

    async fn system_message(&self, room: &Room, author: &User, t: SystemType, text: &str) -> Result<Effect> {
        let mut new = NewMessage::text(room.id.clone(), user_ref(author), text);
        new.t = Some(t);
        let m = self.store.insert_message(new).await?.value;
        Ok(message_new(&m))
    }

    /// `getRoomInfo`: a room the caller may read, with the caller's subscription.
    pub async fn room_info(&self, caller: &Caller, rid: &RoomId) -> Result<(Room, Option<MemberState>)> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::ReadRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        let state = sub.map(|subscription| MemberState { subscription, counters: room.counters });
        Ok((room, state))
    }

    /// `joinRoom`: public channels only.
    pub async fn join(&self, caller: &Caller, rid: &RoomId) -> Result<Outcome<Subscription>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::JoinRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        if let Some(sub) = sub {
            return Ok(Outcome::new(sub, Vec::new()));
        }
        let created = self.store.add_member(rid, &actor.id, Vec::new()).await?;
        let mut effects = vec![self.system_message(&room, &user, SystemType::UserJoined, &user.username).await?];
        if created.created {
            effects.push(subscription_changed(
                &actor.id,
                "inserted",
                rid,
                json!({ "room": room, "subscription": created.value }),
            ));
        }
        Ok(Outcome::new(created.value, effects))
    }

    /// `leaveRoom`: the last owner must hand over first. Cuts the caller's own live subscription too.
    pub async fn leave(&self, caller: &Caller, rid: &RoomId) -> Result<Outcome<()>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        let owners = self.store.count_owners(rid).await?;
        self.authorize(&actor, Method::LeaveRoom { owners }, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        self.store.remove_member(rid, &actor.id).await?;
        let mut effects = vec![
            subscription_changed(&actor.id, "removed", rid, json!({})),
            Effect::Kick { rid: rid.clone(), uid: actor.id.clone() },
        ];
        effects.push(self.system_message(&room, &user, SystemType::UserLeft, &user.username).await?);
        Ok(Outcome::new((), effects))
    }

    /// `addUsersToRoom`: adds members by username; returns the ids actually added.
    pub async fn add_members(
        &self,
        caller: &Caller,
        rid: &RoomId,
        usernames: &[String],
    ) -> Result<Outcome<Vec<UserId>>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::AddMembers, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        let mut added = Vec::new();
        let mut effects = Vec::new();
        for target in self.resolve_usernames(usernames).await? {
            let created = self.store.add_member(rid, &target.id, Vec::new()).await?;
            if !created.created {
                continue;
            }
            effects.push(subscription_changed(
                &target.id,
                "inserted",
                rid,
                json!({ "room": room, "subscription": created.value }),
            ));
            effects.push(self.system_message(&room, &user, SystemType::UserAdded, &target.username).await?);
            added.push(target.id);
        }
        Ok(Outcome::new(added, effects))
    }

    /// `removeUserFromRoom` (kick): the member's subscription goes, and so does its live channel
    /// subscription on every frontend.
    pub async fn remove_member(&self, caller: &Caller, rid: &RoomId, username: &str) -> Result<Outcome<()>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        let view = RoomView { room: &room, sub: sub.as_ref() };
        let target = match self.store.user_by_username(username).await? {
            Some(t) => self.store.get_subscription(rid, &t.id).await?.map(|s| (t, s)),
            None => None,
        };
        let Some((target_user, target_sub)) = target else {
            // Say "no such member" only to someone who could have removed one.
            let permissions = self.permissions();
            let settings = self.settings();
            let policy = Policy { permissions: &permissions, settings: &settings };
            if !policy.can(&actor, crate::permissions::Permission::RemoveUser, Some(view)) {
                return Err(refusal(&room, sub.as_ref(), ChatError::NotAllowed { reason: "remove-user" }));
            }
            return Err(ChatError::NotFound { what: "member" });
        };
        let owners = self.store.count_owners(rid).await?;
        self.authorize(&actor, Method::RemoveMember { target: &target_sub, owners }, Some(view))?;
        self.store.remove_member(rid, &target_user.id).await?;
        let effects = vec![
            subscription_changed(&target_user.id, "removed", rid, json!({})),
            Effect::Kick { rid: rid.clone(), uid: target_user.id.clone() },
            self.system_message(&room, &user, SystemType::UserRemoved, &target_user.username).await?,
        ];
        Ok(Outcome::new((), effects))
    }

    /// `rooms.get`: rooms the caller is in, changed since `updated_since` when given.
    pub async fn rooms(&self, caller: &Caller, updated_since: Option<Millis>) -> Result<Vec<Room>> {
        self.authenticate(caller).await?;
        self.store.rooms_for_user(&caller.uid, updated_since).await
    }

    /// `subscriptions.get`: the caller's subscriptions with their room counters (unread derives from them).
    pub async fn subscriptions(&self, caller: &Caller, updated_since: Option<Millis>) -> Result<SubscriptionDelta> {
        self.authenticate(caller).await?;
        self.store.subscriptions_for_user(&caller.uid, updated_since).await
    }

    /// `readMessages`: everything in the room read; the caller's other devices hear of it.
    pub async fn mark_read(&self, caller: &Caller, rid: &RoomId) -> Result<Outcome<MemberState>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::MemberSelf, Some(RoomView { room: &room, sub: sub.as_ref() }))
            .map_err(|e| refusal(&room, sub.as_ref(), e))?;
        let state = self.store.mark_read(rid, &actor.id).await?;
        let effects = vec![subscription_changed(
            &actor.id,
            "updated",
            rid,
            json!({ "subscription": state.subscription, "unread": state.unread() }),
        )];
        Ok(Outcome::new(state, effects))
    }

    /// May this caller subscribe to `channel`? Rooms: members only (a non-member, and an unknown room,
    /// get the same `NotFound { room }`). User channels: only that user. Other channels: not ours (`None`).
    pub async fn check_channel(&self, caller: Option<&Caller>, channel: &str) -> Option<Result<()>> {
        if let Some(rid) = channel.strip_prefix(ROOM_CHANNEL_PREFIX) {
            let Some(caller) = caller else { return Some(Err(ChatError::NotFound { what: "room" })) };
            return Some(self.check_room_channel(caller, &RoomId::from(rid)).await);
        }
        if let Some(uid) = channel.strip_prefix(USER_CHANNEL_PREFIX) {
            let Some(caller) = caller else { return Some(Err(ChatError::Unauthenticated)) };
            if caller.uid.as_str() != uid {
                return Some(Err(ChatError::NotAllowed { reason: "another user's channel" }));
            }
            return Some(self.authenticate(caller).await.map(|_| ()));
        }
        None
    }

    async fn check_room_channel(&self, caller: &Caller, rid: &RoomId) -> Result<()> {
        let (_, actor) = self.authenticate(caller).await.map_err(|_| ChatError::NotFound { what: "room" })?;
        let (_, sub) = self.room_and_sub(&actor, rid).await?;
        // Live events are for members only, public channels included (a non-member previews a public
        // channel with `loadHistory`); a kicked member therefore cannot subscribe again.
        if sub.is_none() {
            return Err(ChatError::NotFound { what: "room" });
        }
        Ok(())
    }

    // ---------------------------------------------------------------- messages

    async fn resolve_mentions(&self, text: &str) -> Result<(Vec<Mention>, mentions::ParsedMentions)> {
        let parsed = mentions::parse(text)?;
        let users = if parsed.usernames.is_empty() {
            Vec::new()
        } else {
            self.store.users_by_usernames(&parsed.usernames).await?
        };
        let list = users.into_iter().map(|u| Mention { id: u.id, username: u.username }).collect();
        Ok((list, parsed))
    }

    /// `sendMessage`: stored first (next `seq`; a retry with the same `clientMsgId` returns the stored
    /// message and publishes nothing), then `message.new` on `room/<rid>` and notifications on
    /// `user/<uid>` for mentioned members and DM peers.
    pub async fn send(&self, caller: &Caller, input: SendInput) -> Result<Outcome<Sent>> {
        self.send_with_attachments(caller, input, Vec::new()).await
    }

    /// May the caller post into `rid`? The same checks as [`Service::send`] (membership, archived,
    /// read-only), for a transport that wants to refuse before reading a large upload; the post itself
    /// checks again.
    pub async fn check_post(&self, caller: &Caller, rid: &RoomId) -> Result<()> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        let method = Method::Send { all: false, here: false, impersonate: false };
        self.authorize(&actor, method, Some(RoomView { room: &room, sub: sub.as_ref() }))
    }

    /// [`Service::send`] with Slack-style attachments (e.g. an uploaded file's), validated like the text.
    pub async fn send_with_attachments(
        &self,
        caller: &Caller,
        input: SendInput,
        attachments: Vec<Value>,
    ) -> Result<Outcome<Sent>> {
        let (user, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, &input.rid).await?;
        let (mentions, parsed) = self.resolve_mentions(&input.msg).await?;
        let method = Method::Send { all: parsed.all, here: parsed.here, impersonate: false };
        self.authorize(&actor, method, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        let new = NewMessage {
            rid: input.rid.clone(),
            u: user_ref(&user),
            msg: input.msg,
            t: None,
            tmid: input.tmid,
            tshow: input.tshow,
            mentions,
            group_mention: parsed.all || parsed.here,
            attachments,
            client_msg_id: input.client_msg_id,
        };
        new.validate(self.settings().message_max_allowed_size)?;
        self.take_send_token(&actor, RoomView { room: &room, sub: sub.as_ref() })?;
        let created = self.store.insert_message(new).await?;
        let message = created.value;
        if !created.created {
            return Ok(Outcome::new(Sent { message, created: false }, Vec::new()));
        }
        let mut effects = vec![message_new(&message)];
        effects.extend(self.member_effects(&room, &message).await?);
        Ok(Outcome::new(Sent { message, created: true }, effects))
    }

    /// The stored message, its room and the caller's subscription; unknown ids are `NotFound { message }`.
    async fn message_context(&self, actor: &Actor, mid: &MessageId) -> Result<(Message, Room, Option<Subscription>)> {
        validate_id("msgId", mid.as_str()).map_err(|_| ChatError::NotFound { what: "message" })?;
        let m = self.store.get_message(mid).await?.ok_or(ChatError::NotFound { what: "message" })?;
        let (room, sub) = self.room_and_sub(actor, &m.rid).await.map_err(as_message_error)?;
        Ok((m, room, sub))
    }

    /// `updateMessage`.
    pub async fn edit(&self, caller: &Caller, mid: &MessageId, text: &str) -> Result<Outcome<Message>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (m, room, sub) = self.message_context(&actor, mid).await?;
        let method = Method::Edit { message: &m, now: now_ms() };
        self.authorize(&actor, method, Some(RoomView { room: &room, sub: sub.as_ref() })).map_err(as_message_error)?;
        crate::message::validate_text(text, self.settings().message_max_allowed_size, !m.attachments.is_empty())?;
        let (mentions, _) = self.resolve_mentions(text).await?;
        let edited = self.store.edit_message(mid, text, &actor.id, mentions).await?;
        let data = event(
            "message.updated",
            json!({
                "rid": edited.rid, "id": edited.id, "seq": edited.seq, "msg": edited.msg,
                "editedAt": edited.edited_at, "editedBy": edited.edited_by, "mentions": edited.mentions,
                "updatedAt": edited.updated_at,
            }),
        );
        Ok(Outcome::new(edited.clone(), vec![publish_room(&edited.rid, data)]))
    }

    /// `deleteMessage`: leaves a tombstone with the same `seq`.
    pub async fn delete(&self, caller: &Caller, mid: &MessageId) -> Result<Outcome<Message>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (m, room, sub) = self.message_context(&actor, mid).await?;
        let method = Method::Delete { message: &m, now: now_ms() };
        self.authorize(&actor, method, Some(RoomView { room: &room, sub: sub.as_ref() })).map_err(as_message_error)?;
        let was_deleted = m.is_deleted();
        let deleted = self.store.delete_message(mid).await?;
        let effects = if was_deleted {
            Vec::new()
        } else {
            let data = event(
                "message.deleted",
                json!({ "rid": deleted.rid, "id": deleted.id, "seq": deleted.seq, "deletedAt": deleted.deleted_at }),
            );
            vec![publish_room(&deleted.rid, data)]
        };
        Ok(Outcome::new(deleted, effects))
    }

    /// `loadHistory`: the newest `limit` timeline messages below `before` (all when `None`), ascending.
    pub async fn history(
        &self,
        caller: &Caller,
        rid: &RoomId,
        before: Option<Seq>,
        limit: Option<usize>,
    ) -> Result<Vec<Message>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::ReadRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        let limit = limits::page(limit, MAX_HISTORY_PAGE);
        let page = match before {
            Some(seq) => Page::Before { seq, limit },
            None => Page::Latest { limit },
        };
        self.store.history(rid, page).await
    }

    /// `syncMessages`: what changed after `after` (new by `seq`, edits and deletions by `updatedAt`).
    pub async fn sync(
        &self,
        caller: &Caller,
        rid: &RoomId,
        after: Seq,
        updated_since: Millis,
        limit: Option<usize>,
    ) -> Result<SyncResult> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::ReadRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        self.store.sync(rid, after, updated_since, limits::page(limit, limits::MAX_SYNC_PAGE)).await
    }

    /// `getRoomMembers`.
    pub async fn members(
        &self,
        caller: &Caller,
        rid: &RoomId,
        after: Option<&UserId>,
        limit: Option<usize>,
    ) -> Result<Vec<Subscription>> {
        let (_, actor) = self.authenticate(caller).await?;
        let (room, sub) = self.room_and_sub(&actor, rid).await?;
        self.authorize(&actor, Method::ReadRoom, Some(RoomView { room: &room, sub: sub.as_ref() }))?;
        self.store.list_members(rid, after, limits::page(limit, MAX_LIST_PAGE)).await
    }
}

fn user_ref(u: &User) -> UserRef {
    UserRef { id: u.id.clone(), username: u.username.clone(), name: u.name.clone() }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
