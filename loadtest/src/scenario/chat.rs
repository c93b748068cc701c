//! `chat`: the team chat of the frontends under load. U users (one socket
//! each) in R public channels, each user a member of K of them and
//! subscribed to their `room/<rid>` channels and its own `user/<uid>`; a
//! fraction of the users post (`sendMessage`) at a total rate, some mark a
//! room read (`readMessages`) periodically, everyone receives.
//!
//! Setup is idempotent, so re-runs against the same store reuse everything:
//! users `<prefix>-u<i>` are created by the admin (`createUser`) or, without
//! `--admin`, by open registration (`registerUser`); an existing one is
//! kept. Rooms `<prefix>-r<j>` are created by the admin (or by the user
//! `<prefix>-owner`) when it is not yet a member of one by that name. A
//! password login costs an argon2 verification on the server (tens of ms),
//! so the users' session tokens are kept in `--token-cache` and later runs
//! log in with `login {resume}`; joining a room one is in already is free.
//!
//! A posted message's text is a [`crate::stamp`] payload: step, stream
//! (poster × R + room), the poster's sequence number in that room and the
//! post time on the machine's monotonic clock. Receivers find it with a byte
//! scan of `message.new` (the `"msg":"` of the stored message, and the
//! message's `"seq":` just before it, the room's sequence number).
//!
//! Counting: acknowledged = `sendMessage` answered with the stored message;
//! expected = Σ over rooms of acknowledged × members of the room (the poster
//! included: it is subscribed too); delivered = distinct stamps received;
//! lost = expected − delivered; duplicated = a stamp received again; out of
//! order = a room `seq` below one the member already received. Latencies:
//! post → acknowledgement at the poster, post → delivery at every member.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use memchr::memmem;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{start_workers, Common};
use crate::client::{self, Target, Ws};
use crate::progress::Progress;
use crate::report::{default_dir, Report};
use crate::stamp::{push_payload, Scanner, Stamp};
use crate::stats::{self, Latency};
use crate::sys;
use crate::workers::{Down, Tick, Up, WorkerIo};

/// Most users, rooms and rooms per user a run takes.
pub const MAX_USERS: usize = 100_000;
pub const MAX_ROOMS: usize = 10_000;
pub const MAX_ROOMS_PER_USER: usize = 100;
/// Longest posting phase, whatever the arguments say.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Invokes one socket may have unanswered; past it a due post is skipped (and counted).
const MAX_IN_FLIGHT: usize = 64;
/// Sockets the setup creates accounts and logs users in over (each argon2 call is ~one core for tens of ms).
const SETUP_SOCKETS: usize = 4;
/// Sockets setting up (connect, login, join, subscribe) at once per worker.
const SETUP_CONCURRENCY: usize = 64;
/// Longest wait for one answer during setup (account creation queues behind argon2).
const SETUP_REPLY_WAIT: Duration = Duration::from_secs(60);
/// The stamp's step in this scenario (one posting phase per run).
const STEP: u32 = 1;

const MSG_MARK: &[u8] = br#""msg":""#;
const SEQ_MARK: &[u8] = br#""seq":"#;
const PUBLISH_PREFIX: &str = r##"{"event":"#publish""##;

#[derive(clap::Args, Debug, Clone, Serialize)]
#[group(id = "ChatArgs")]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Users, one socket each.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Public channels.
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Rooms each user is a member of (and subscribed to).
    #[arg(long, default_value_t = 3)]
    pub rooms_per_user: usize,
    /// Fraction of the users who post.
    #[arg(long, default_value_t = 0.1)]
    pub posters: f64,
    /// Messages per second over all posters.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Seconds of posting.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Characters of each message's text.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Fraction of the users who mark one of their rooms read every --read-every seconds.
    #[arg(long, default_value_t = 0.1)]
    pub readers: f64,
    /// Seconds between two `readMessages` of a reader.
    #[arg(long, default_value_t = 5.0)]
    pub read_every: f64,
    /// Longest wait for deliveries after posting stops (s).
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// The drain ends once nothing has arrived for this long (s).
    #[arg(long, default_value_t = 1.0)]
    pub quiet_after: f64,
    /// Names of the users and rooms: `<prefix>-u<i>`, `<prefix>-r<j>` (the same prefix reuses them).
    #[arg(long, default_value = "lt")]
    pub prefix: String,
    /// Admin username that creates users and rooms (without it: open registration, rooms by `<prefix>-owner`).
    #[arg(long)]
    pub admin: Option<String>,
    /// The admin's password.
    #[arg(long, env = "LOADTEST_ADMIN_PASSWORD", hide_env_values = true)]
    #[serde(skip)]
    pub admin_password: Option<String>,
    /// Password of the load users.
    #[arg(long, default_value = "loadtest-password")]
    #[serde(skip)]
    pub user_password: String,
    /// JSON file keeping the users' session tokens between runs (re-runs skip the argon2 logins).
    #[arg(long)]
    pub token_cache: Option<PathBuf>,
    /// Start a local cluster (testkit: state server, brokers, frontends with the chat, open registration) instead of --url.
    #[arg(long)]
    pub local: bool,
    /// Brokers of the --local cluster.
    #[arg(long, default_value_t = 1)]
    pub brokers: usize,
    /// Frontends of the --local cluster (all on one store).
    #[arg(long, default_value_t = 1)]
    pub frontends: usize,
    /// Store of the --local cluster (default: `sqlite:<output dir>/chat.db`).
    #[arg(long)]
    pub store: Option<String>,
    /// Directory with the state-server, broker and frontend binaries (default: beside this executable if they are there).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Internal: the setup (room ids, tokens) for worker processes.
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub setup_file: Option<PathBuf>,
}

impl Args {
    /// Refuses numbers out of bounds.
    ///
    /// # Errors
    /// When a count or fraction is out of its range.
    pub fn check(&self) -> Result<()> {
        if self.users == 0 || self.users > MAX_USERS {
            bail!("--users must be 1..={MAX_USERS}");
        }
        if self.rooms == 0 || self.rooms > MAX_ROOMS {
            bail!("--rooms must be 1..={MAX_ROOMS}");
        }
        if self.rooms_per_user == 0 || self.rooms_per_user > self.rooms.min(MAX_ROOMS_PER_USER) {
            bail!("--rooms-per-user must be 1..={}", self.rooms.min(MAX_ROOMS_PER_USER));
        }
        if !(0.0..=1.0).contains(&self.posters) || !(0.0..=1.0).contains(&self.readers) {
            bail!("--posters and --readers are fractions (0..=1)");
        }
        if !(24..=5000).contains(&self.size) {
            bail!("--size must be 24..=5000 (the stamp needs ~24 characters; 5,000 is the server's limit)");
        }
        if self.read_every <= 0.0 || self.duration <= 0.0 {
            bail!("--duration and --read-every must be positive");
        }
        if self.prefix.is_empty() || self.prefix.len() > 40 || !self.prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("--prefix must be 1..=40 letters or digits");
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who is in which room, who posts and who reads; the same in every process.
pub struct Plan {
    pub users: Vec<String>,
    pub rooms: Vec<String>,
    /// Rooms of each user (indices, distinct).
    pub user_rooms: Vec<Vec<u32>>,
    /// Members of each room.
    pub members: Vec<u64>,
    /// Rank among the posters, for posters.
    pub poster: Vec<Option<usize>>,
    pub poster_count: usize,
    /// Rank among the readers, for readers.
    pub reader: Vec<Option<usize>>,
    pub reader_count: usize,
}

/// `count` of `n` indices spread evenly, shifted by `offset`.
fn spread(n: usize, count: usize, offset: usize) -> Vec<Option<usize>> {
    let mut v = vec![None; n];
    for j in 0..count.min(n) {
        v[(j * n / count + offset) % n] = Some(j);
    }
    v
}

impl Plan {
    #[must_use]
    pub fn new(a: &Args) -> Plan {
        let (u, r, k) = (a.users, a.rooms.max(1), a.rooms_per_user.clamp(1, a.rooms.max(1)));
        let users = (0..u).map(|i| format!("{}-u{i}", a.prefix)).collect();
        let rooms = (0..r).map(|j| format!("{}-r{j}", a.prefix)).collect();
        // User i is in rooms i·k .. i·k+k (mod r): consecutive, so distinct, and every room gets u·k/r members.
        let user_rooms: Vec<Vec<u32>> = (0..u).map(|i| (0..k).map(|x| ((i * k + x) % r) as u32).collect()).collect();
        let mut members = vec![0u64; r];
        for rs in &user_rooms {
            for &room in rs {
                members[room as usize] += 1;
            }
        }
        let poster_count = ((u as f64 * a.posters).round() as usize).min(u);
        let reader_count = ((u as f64 * a.readers).round() as usize).min(u);
        Plan {
            users,
            rooms,
            user_rooms,
            members,
            poster: spread(u, poster_count, 0),
            poster_count,
            reader: spread(u, reader_count, 1),
            reader_count,
        }
    }
}

/// What the parent prepared: room ids by index and a session token per user.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Setup {
    pub rids: Vec<String>,
    pub tokens: Vec<Option<String>>,
    /// Distinguishes this run's client message ids from earlier runs' (the server keeps them for retries).
    pub run: u32,
}

// ------------------------------------------------------------------ invokes

/// A socket used for request/answer calls during setup.
struct Rpc {
    ws: Ws,
    cid: u64,
}

impl Rpc {
    async fn open(target: &Target, src: std::net::Ipv4Addr) -> Result<Rpc> {
        Ok(Rpc { ws: client::connect(target, src).await?, cid: 1 })
    }

    /// Invokes `event` and waits for its answer: `Ok(Ok(data))`, or `Ok(Err(error))` for an error answer.
    async fn call(&mut self, event: &str, data: Value) -> Result<std::result::Result<Value, Value>> {
        self.cid += 1;
        let cid = self.cid;
        self.ws.send(Message::text(json!({"event": event, "data": data, "cid": cid}).to_string())).await?;
        let deadline = tokio::time::Instant::now() + SETUP_REPLY_WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("{event}: no answer within {SETUP_REPLY_WAIT:?}"))?;
            let text = match m {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => bail!("{event}: closed by the server: {f:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("{event}: read: {e}"),
                None => bail!("{event}: closed by the server"),
            };
            if client::answer_ping(&mut self.ws, text.as_str()).await? {
                continue;
            }
            for p in packets(text.as_str()) {
                if p.get("rid").and_then(Value::as_u64) == Some(cid) {
                    return Ok(match p.get("error") {
                        Some(e) => Err(e.clone()),
                        None => Ok(p.get("data").cloned().unwrap_or(Value::Null)),
                    });
                }
            }
        }
    }

    /// `login` with a password; the session token.
    async fn login(&mut self, user: &str, password: &str) -> Result<String> {
        match self.call("login", json!({"user": user, "password": password})).await? {
            Ok(v) => v["token"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("login {user}: no token in {v}")),
            Err(e) => bail!("login {user}: {e}"),
        }
    }
}

fn packets(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(v) => vec![v],
        Err(_) => Vec::new(),
    }
}

fn error_id(e: &Value) -> &str {
    e["error"].as_str().unwrap_or_default()
}

// ------------------------------------------------------------------ setup (parent)

fn load_cache(path: Option<&Path>) -> HashMap<String, String> {
    path.and_then(|p| std::fs::read_to_string(p).ok()).and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
}

fn save_cache(path: &Path, cache: &HashMap<String, String>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(cache)?).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// Runs `job` for every item over `n` sockets made by `open`, each socket taking items in turn.
async fn over_sockets<T, F, Fut>(
    items: Vec<T>,
    n: usize,
    target: &Target,
    login: Option<(String, String)>,
    job: F,
) -> Result<Vec<(T, String)>>
where
    T: Send + Clone + 'static,
    F: Fn(Rpc, T) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (Rpc, Result<String>)> + Send,
{
    let queue = Arc::new(Mutex::new(items));
    let mut tasks = Vec::new();
    for s in 0..n {
        let (queue, target, login, job) = (queue.clone(), target.clone(), login.clone(), job.clone());
        tasks.push(tokio::spawn(async move {
            let mut rpc = Rpc::open(&target, client::source_ip(s, 1)).await?;
            if let Some((u, p)) = &login {
                rpc.login(u, p).await?;
            }
            let mut out = Vec::new();
            loop {
                let Some(item) = lock(&queue).pop() else { break };
                let (back, r) = job(rpc, item.clone()).await;
                rpc = back;
                out.push((item, r?));
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| anyhow!("setup task: {e}"))??);
    }
    Ok(all)
}

/// Makes sure every user exists and has a session token, and every room exists; returns their ids and tokens.
async fn prepare(a: &Args, plan: &Plan, target: &Target, quiet: bool) -> Result<Setup> {
    let say = |s: String| {
        if !quiet {
            eprintln!("chat: {s}");
        }
    };
    let mut cache = load_cache(a.token_cache.as_deref());
    let admin = match (&a.admin, &a.admin_password) {
        (Some(u), Some(p)) => Some((u.clone(), p.clone())),
        (Some(_), None) => bail!("--admin needs its password (--admin-password or LOADTEST_ADMIN_PASSWORD)"),
        _ => None,
    };
    // A cache made against another store (a fresh --local one, say) would skip creating the users.
    if let Some(token) = plan.users.iter().find_map(|u| cache.get(u)) {
        let mut probe = Rpc::open(target, client::source_ip(0, 1)).await?;
        if probe.call("login", json!({ "resume": token })).await?.is_err() {
            say("the token cache does not fit this server; creating and logging in again".into());
            cache.clear();
        }
        let _ = probe.ws.close(None).await;
    }
    let missing: Vec<usize> = (0..plan.users.len()).filter(|&i| !cache.contains_key(&plan.users[i])).collect();
    if !missing.is_empty() {
        say(format!("creating or logging in {} users (argon2 on the server: slow the first time)", missing.len()));
        let names: Vec<String> = missing.iter().map(|&i| plan.users[i].clone()).collect();
        let pw = a.user_password.clone();
        let event = if admin.is_some() { "createUser" } else { "registerUser" };
        over_sockets(names.clone(), SETUP_SOCKETS, target, admin.clone(), move |mut rpc, name: String| {
            let pw = pw.clone();
            async move {
                let r = match rpc.call(event, json!({"username": name, "password": pw})).await {
                    Ok(Ok(_)) => Ok(String::new()),
                    Ok(Err(e)) if error_id(&e) == "error-duplicate" => Ok(String::new()),
                    Ok(Err(e)) => Err(anyhow!("{event} {name}: {e}")),
                    Err(e) => Err(e),
                };
                (rpc, r)
            }
        })
        .await?;
        let pw = a.user_password.clone();
        let tokens = over_sockets(names, SETUP_SOCKETS, target, None, move |mut rpc, name: String| {
            let pw = pw.clone();
            async move {
                let r = rpc.login(&name, &pw).await;
                (rpc, r)
            }
        })
        .await?;
        cache.extend(tokens);
        if let Some(p) = &a.token_cache {
            save_cache(p, &cache)?;
        }
    }

    // Rooms: the creator's rooms by name; the missing ones created.
    let mut rpc = Rpc::open(target, client::source_ip(0, 1)).await?;
    match &admin {
        Some((u, p)) => {
            rpc.login(u, p).await?;
        }
        None => {
            let owner = format!("{}-owner", a.prefix);
            if let Ok(Err(e)) = rpc.call("registerUser", json!({"username": owner, "password": a.user_password})).await
            {
                if error_id(&e) != "error-duplicate" {
                    bail!("registerUser {owner}: {e}");
                }
            }
            rpc.login(&owner, &a.user_password).await?;
        }
    }
    let mine = rpc.call("rooms.get", json!({})).await?.map_err(|e| anyhow!("rooms.get: {e}"))?;
    let mut by_name: HashMap<String, String> = HashMap::new();
    for r in mine["update"].as_array().into_iter().flatten() {
        if let (Some(name), Some(id)) = (r["name"].as_str(), r["id"].as_str().or(r["_id"].as_str())) {
            by_name.insert(name.to_owned(), id.to_owned());
        }
    }
    let mut rids = Vec::with_capacity(plan.rooms.len());
    let mut created = 0;
    for name in &plan.rooms {
        let rid = match by_name.get(name) {
            Some(id) => id.clone(),
            None => {
                let r = rpc
                    .call("createChannel", json!({"name": name}))
                    .await?
                    .map_err(|e| anyhow!("createChannel {name}: {e}"))?;
                created += 1;
                r["room"]["id"]
                    .as_str()
                    .or(r["room"]["_id"].as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("createChannel {name}: no id in {r}"))?
            }
        };
        rids.push(rid);
    }
    say(format!("{} rooms ({created} created)", rids.len()));
    let _ = rpc.ws.close(None).await;
    let tokens = plan.users.iter().map(|u| cache.get(u).cloned()).collect();
    Ok(Setup { rids, tokens, run: rand::random() })
}

// ------------------------------------------------------------------ the users (worker)

/// The parent's order to post.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Go {
    pub start_us: u64,
    pub end_us: u64,
    pub rate: u64,
    pub drain_ms: u64,
    pub quiet_ms: u64,
}

/// One worker's result.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Done {
    pub users: u64,
    pub closed: u64,
    pub posted: u64,
    pub acked: u64,
    /// Acknowledged with `created: false` (an idempotent retry: nothing published).
    pub not_created: u64,
    pub failed: u64,
    pub unacked: u64,
    /// Posts skipped because the socket had too many unanswered invokes.
    pub skipped: u64,
    /// Per room: acknowledged posts.
    pub acked_per_room: Vec<u64>,
    pub delivered: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Stamps of a room the receiver is not in, or of another step.
    pub unexpected: u64,
    /// Messages without a stamp (the "joined" system messages).
    pub other_messages: u64,
    pub user_events: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub ack_hist: String,
    pub deliver_hist: String,
    pub read_hist: String,
    pub cpu_us: u64,
    pub errors: Vec<String>,
}

struct Rec {
    deliver: Histogram<u64>,
    window: Histogram<u64>,
    ack: Histogram<u64>,
    read: Histogram<u64>,
}

struct Shared {
    posted: AtomicU64,
    delivered: AtomicU64,
    conns: AtomicU64,
    errors: AtomicU64,
    rec: Mutex<Rec>,
    samples: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut s = lock(&self.samples);
        if s.len() < 10 && !s.contains(&e) {
            s.push(e);
        }
    }
}

/// What one user counted.
#[derive(Default)]
struct Counts {
    posted: u64,
    acked: u64,
    not_created: u64,
    failed: u64,
    unacked: u64,
    skipped: u64,
    acked_rooms: Vec<(u32, u64)>,
    delivered: u64,
    duplicated: u64,
    out_of_order: u64,
    unexpected: u64,
    other: u64,
    user_events: u64,
    reads_ok: u64,
    reads_failed: u64,
    closed: bool,
}

/// A (poster, room) stream as one member sees it: the sequence numbers received.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
}

impl Seen {
    /// Marks `seq`; false when it was there already.
    fn mark(&mut self, seq: u64) -> bool {
        let w = (seq / 64) as usize;
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        let m = 1u64 << (seq % 64);
        let fresh = self.bits[w] & m == 0;
        self.bits[w] |= m;
        fresh
    }
}

enum Pending {
    Post { room: u32, sent_us: u64 },
    Read { sent_us: u64 },
}

struct User {
    index: usize,
    rooms: Vec<u32>,
    rids: Vec<String>,
    n_rooms: u32,
    counts: Counts,
    seen: HashMap<u32, Seen>,
    room_max: HashMap<u32, u64>,
    pending: HashMap<u64, Pending>,
    cid: u64,
}

/// The highest stream sequence number a member tracks (bounds the bitset against a bogus stamp).
const MAX_SEQ: u64 = 16_000_000;

impl User {
    fn deliver(&mut self, s: Stamp, room_seq: Option<u64>, now: u64, lat: &mut Vec<u64>) {
        let room = s.ch % self.n_rooms;
        if s.step != STEP || !self.rooms.contains(&room) || s.seq >= MAX_SEQ {
            self.counts.unexpected += 1;
            return;
        }
        if !self.seen.entry(s.ch).or_default().mark(s.seq) {
            self.counts.duplicated += 1;
            return;
        }
        self.counts.delivered += 1;
        lat.push(now.saturating_sub(s.t));
        if let Some(seq) = room_seq {
            let max = self.room_max.entry(room).or_insert(0);
            if seq < *max {
                self.counts.out_of_order += 1;
            } else {
                *max = seq;
            }
        }
    }

    /// A `#publish` frame: the stamps in it (byte scan, no JSON decoding).
    /// One `message.new` per frame: every `"seq":` in it is the message's (the event's and the stored
    /// message's, equal), whatever order the keys are written in.
    fn scan_publish(
        &mut self,
        scanner: &Scanner,
        seq_finder: &memmem::Finder<'_>,
        text: &[u8],
        now: u64,
        lat: &mut Vec<u64>,
    ) {
        let seq = seq_finder.find(text).and_then(|p| digits(&text[p + SEQ_MARK.len()..]));
        scanner.scan_at(text, |_, stamp| match stamp {
            Some(s) => self.deliver(s, seq, now, lat),
            None => self.counts.other += 1,
        });
    }

    /// Any other frame: replies to our invokes, and pushes in a batch.
    fn other_frame(
        &mut self,
        text: &str,
        now: u64,
        shared: &Shared,
        lat: &mut Vec<u64>,
        acks: &mut Vec<u64>,
        reads: &mut Vec<u64>,
    ) {
        for p in packets(text) {
            if let Some(rid) = p.get("rid").and_then(Value::as_u64) {
                let Some(pending) = self.pending.remove(&rid) else { continue };
                match (pending, p.get("error")) {
                    (Pending::Post { .. }, Some(e)) => {
                        self.counts.failed += 1;
                        shared.error(format!("sendMessage: {e}"));
                    }
                    (Pending::Post { room, sent_us }, None) => {
                        if p["data"]["created"] == Value::Bool(false) {
                            self.counts.not_created += 1;
                        } else {
                            self.counts.acked += 1;
                            match self.counts.acked_rooms.iter_mut().find(|(r, _)| *r == room) {
                                Some((_, n)) => *n += 1,
                                None => self.counts.acked_rooms.push((room, 1)),
                            }
                        }
                        acks.push(now.saturating_sub(sent_us));
                    }
                    (Pending::Read { .. }, Some(e)) => {
                        self.counts.reads_failed += 1;
                        shared.error(format!("readMessages: {e}"));
                    }
                    (Pending::Read { sent_us }, None) => {
                        self.counts.reads_ok += 1;
                        reads.push(now.saturating_sub(sent_us));
                    }
                }
            } else if p.get("event").and_then(Value::as_str) == Some("#publish") {
                let channel = p["data"]["channel"].as_str().unwrap_or_default();
                if channel.starts_with("user/") {
                    self.counts.user_events += 1;
                    continue;
                }
                let m = &p["data"]["data"]["message"];
                match m["msg"].as_str().and_then(|t| crate::stamp::parse_payload(t.as_bytes())) {
                    Some(s) => self.deliver(s, m["seq"].as_u64(), now, lat),
                    None => self.counts.other += 1,
                }
            }
        }
    }
}

fn digits(b: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in b.iter().take(20) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        n += 1;
    }
    (n > 0).then_some(v)
}

fn until(us: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_micros(us.saturating_sub(sys::now_us()))
}

/// Connects user `i`, logs it in (token, else password), joins its rooms and subscribes.
async fn set_up_user(a: &Args, plan: &Plan, setup: &Setup, i: usize, target: &Target) -> Result<(Ws, u64)> {
    let src = client::source_ip(i, a.common.source_ips);
    let mut rpc = Rpc::open(target, src).await?;
    let name = &plan.users[i];
    let login = match setup.tokens.get(i).cloned().flatten() {
        Some(t) => match rpc.call("login", json!({ "resume": t })).await? {
            Ok(v) => v,
            // An expired or unknown token (another store): a password login.
            Err(_) => rpc
                .call("login", json!({"user": name, "password": a.user_password}))
                .await?
                .map_err(|e| anyhow!("login {name}: {e}"))?,
        },
        None => rpc
            .call("login", json!({"user": name, "password": a.user_password}))
            .await?
            .map_err(|e| anyhow!("login {name}: {e}"))?,
    };
    let uid = login["id"].as_str().ok_or_else(|| anyhow!("login {name}: no id"))?.to_owned();
    let rooms = &plan.user_rooms[i];
    // Joins pipelined (a member already is answered at once), then the subscriptions.
    let mut pending = HashSet::new();
    let mut cid = rpc.cid;
    for &r in rooms {
        cid += 1;
        pending.insert(cid);
        let rid = &setup.rids[r as usize];
        rpc.ws.send(Message::text(json!({"event": "joinRoom", "data": {"rid": rid}, "cid": cid}).to_string())).await?;
    }
    let errors = client::await_replies(&mut rpc.ws, &mut pending, |_| {}).await?;
    if let Some((_, e)) = errors.first() {
        bail!("joinRoom as {name}: {e}");
    }
    let mut channels: Vec<String> = rooms.iter().map(|&r| format!("room/{}", setup.rids[r as usize])).collect();
    channels.push(format!("user/{uid}"));
    cid += 1;
    client::subscribe(&mut rpc.ws, &channels, &mut cid, |_| {}).await?;
    Ok((rpc.ws, cid))
}

/// One user's life after setup: wait for the go, post and read on schedule, count what arrives.
#[allow(clippy::too_many_arguments)]
async fn run_user(
    mut ws: Ws,
    mut user: User,
    plan: Arc<Plan>,
    a: Arc<Args>,
    run: u32,
    mut go_rx: watch::Receiver<Option<Go>>,
    shared: Arc<Shared>,
    collect: CancellationToken,
) -> Counts {
    let scanner = Scanner::after(MSG_MARK);
    let seq_finder = memmem::Finder::new(SEQ_MARK);
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 86_400);
    let mut go: Option<Go> = None;
    // Posting: n-th post of this poster at start + phase + n / rate.
    let (mut next_post, mut posts_sent, mut post_rate, mut post_phase) = (far, 0u64, 0.0f64, 0.0f64);
    let (mut next_read, mut reads_sent, read_period) = (far, 0u64, a.read_every.max(0.05));
    let mut room_seqs = vec![0u64; user.rooms.len()];
    let mut rr = 0usize;
    let (mut lat, mut acks, mut reads) = (Vec::new(), Vec::new(), Vec::new());
    let mut payload = String::new();
    let cancelled = collect.cancelled();
    tokio::pin!(cancelled);
    loop {
        let next = next_post.min(next_read);
        tokio::select! {
            biased;
            () = &mut cancelled => break,
            m = ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => { shared.error(format!("user socket closed by the server: {f:?}")); user.counts.closed = true; break; }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => { shared.error(format!("user socket: {e}")); user.counts.closed = true; break; }
                    None => { shared.error("user socket closed".into()); user.counts.closed = true; break; }
                };
                let t = text.as_str();
                if t.len() <= 2 {
                    if client::answer_ping(&mut ws, t).await.is_err() { user.counts.closed = true; break; }
                    continue;
                }
                let now = sys::now_us();
                lat.clear(); acks.clear(); reads.clear();
                if t.starts_with(PUBLISH_PREFIX) {
                    if t.contains(r#""channel":"user/"#) {
                        user.counts.user_events += 1;
                    } else {
                        user.scan_publish(&scanner, &seq_finder, t.as_bytes(), now, &mut lat);
                    }
                } else {
                    user.other_frame(t, now, &shared, &mut lat, &mut acks, &mut reads);
                }
                if !lat.is_empty() || !acks.is_empty() || !reads.is_empty() {
                    shared.delivered.fetch_add(lat.len() as u64, Ordering::Relaxed);
                    let mut r = lock(&shared.rec);
                    for &l in &lat { stats::record(&mut r.deliver, l); stats::record(&mut r.window, l); }
                    for &l in &acks { stats::record(&mut r.ack, l); }
                    for &l in &reads { stats::record(&mut r.read, l); }
                }
            }
            r = go_rx.changed(), if go.is_none() => {
                if r.is_err() { break; }
                let Some(g) = go_rx.borrow_and_update().clone() else { continue };
                if let Some(rank) = plan.poster[user.index].filter(|_| g.rate > 0 && plan.poster_count > 0) {
                    post_rate = g.rate as f64 / plan.poster_count as f64;
                    // Posters spread evenly over one interval, so the total rate is smooth.
                    post_phase = rank as f64 / plan.poster_count as f64 / post_rate;
                    next_post = until(g.start_us + (post_phase * 1e6) as u64);
                }
                if let Some(rank) = plan.reader[user.index] {
                    let phase = rank as f64 / plan.reader_count.max(1) as f64 * read_period;
                    next_read = until(g.start_us + (phase * 1e6) as u64);
                }
                go = Some(g);
            }
            () = tokio::time::sleep_until(next) => {
                let Some(g) = &go else { continue };
                let now = sys::now_us();
                if now >= g.end_us {
                    next_post = far;
                    next_read = far;
                    continue;
                }
                if tokio::time::Instant::now() >= next_post {
                    posts_sent += 1;
                    next_post = until(g.start_us + ((post_phase + posts_sent as f64 / post_rate) * 1e6) as u64);
                    if user.pending.len() >= MAX_IN_FLIGHT {
                        user.counts.skipped += 1;
                    } else {
                        let k = rr % user.rooms.len();
                        rr += 1;
                        let room = user.rooms[k];
                        let stream = user.index as u32 * user.n_rooms + room;
                        let stamp = Stamp { step: STEP, ch: stream, seq: room_seqs[k], t: now };
                        room_seqs[k] += 1;
                        payload.clear();
                        push_payload(&mut payload, &stamp, a.size);
                        user.cid += 1;
                        let frame = format!(
                            r#"{{"event":"sendMessage","data":{{"rid":"{}","msg":"{payload}","clientMsgId":"{run:08x}.{stream}.{}"}},"cid":{}}}"#,
                            user.rids[k], stamp.seq, user.cid
                        );
                        if let Err(e) = ws.send(Message::text(frame)).await {
                            shared.error(format!("sendMessage send: {e}"));
                            user.counts.closed = true;
                            break;
                        }
                        user.pending.insert(user.cid, Pending::Post { room, sent_us: now });
                        user.counts.posted += 1;
                        shared.posted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if tokio::time::Instant::now() >= next_read {
                    reads_sent += 1;
                    let phase = next_read;
                    next_read = phase + Duration::from_secs_f64(read_period);
                    let k = (reads_sent as usize) % user.rooms.len();
                    user.cid += 1;
                    let frame = format!(r#"{{"event":"readMessages","data":{{"rid":"{}"}},"cid":{}}}"#, user.rids[k], user.cid);
                    if let Err(e) = ws.send(Message::text(frame)).await {
                        shared.error(format!("readMessages send: {e}"));
                        user.counts.closed = true;
                        break;
                    }
                    user.pending.insert(user.cid, Pending::Read { sent_us: now });
                }
            }
        }
    }
    if user.counts.closed {
        shared.conns.fetch_sub(1, Ordering::Relaxed);
    }
    user.counts.unacked = user.pending.values().filter(|p| matches!(p, Pending::Post { .. })).count() as u64;
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    user.counts
}

/// Reads the setup a worker process was given.
fn read_setup(a: &Args) -> Result<Setup> {
    let p = a.setup_file.as_ref().ok_or_else(|| anyhow!("a chat worker needs --setup-file"))?;
    Ok(serde_json::from_slice(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)?)
}

/// One worker's share of the users (`index` mod K): set up, then the posting phase on the parent's go.
pub async fn worker(a: Args, mut io: WorkerIo, setup: Option<Setup>) {
    let setup = match setup.map_or_else(|| read_setup(&a), Ok) {
        Ok(s) => Arc::new(s),
        Err(e) => return io.send(Up::Fatal(format!("{e:#}"))),
    };
    let mut targets = Vec::new();
    for u in &a.common.urls {
        match Target::resolve(u).await {
            Ok(t) => targets.push(t),
            Err(e) => return io.send(Up::Fatal(format!("{e:#}"))),
        }
    }
    if targets.is_empty() {
        return io.send(Up::Fatal("no --url".into()));
    }
    let plan = Arc::new(Plan::new(&a));
    if setup.rids.len() != plan.rooms.len() {
        return io.send(Up::Fatal("the setup does not match the plan".into()));
    }
    let a = Arc::new(a);
    let (k, me) = (io.count.max(1), io.index);
    let shared = Arc::new(Shared {
        posted: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        conns: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        rec: Mutex::new(Rec { deliver: stats::hist(), window: stats::hist(), ack: stats::hist(), read: stats::hist() }),
        samples: Mutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    let ticker = {
        let (shared, up, stop) = (shared.clone(), io.up.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !stop.is_cancelled() {
                every.tick().await;
                let hist = {
                    let mut r = lock(&shared.rec);
                    let e = stats::encode(&r.window);
                    r.window.reset();
                    e
                };
                let t = Tick {
                    conns: shared.conns.load(Ordering::Relaxed),
                    published: shared.posted.load(Ordering::Relaxed),
                    delivered: shared.delivered.load(Ordering::Relaxed),
                    errors: shared.errors.load(Ordering::Relaxed),
                    hist,
                };
                if up.send(Up::Tick(t)).is_err() {
                    break;
                }
            }
        })
    };

    let (go_tx, go_rx) = watch::channel::<Option<Go>>(None);
    let collect = CancellationToken::new();
    let sem = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<bool>();
    let mut users = Vec::new();
    let mine: Vec<usize> = (me..plan.users.len()).step_by(k).collect();
    for &i in &mine {
        let (a, plan, setup, shared, sem, ready) =
            (a.clone(), plan.clone(), setup.clone(), shared.clone(), sem.clone(), ready_tx.clone());
        let (go_rx, collect) = (go_rx.clone(), collect.clone());
        let target = targets[i % targets.len()].clone();
        users.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok();
            let r = tokio::time::timeout(SETUP_REPLY_WAIT, set_up_user(&a, &plan, &setup, i, &target)).await;
            drop(permit);
            let (ws, cid) = match r {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    shared.error(format!("user {i}: {e:#}"));
                    let _ = ready.send(false);
                    return None;
                }
                Err(_) => {
                    shared.error(format!("user {i}: setup took over {SETUP_REPLY_WAIT:?}"));
                    let _ = ready.send(false);
                    return None;
                }
            };
            shared.conns.fetch_add(1, Ordering::Relaxed);
            let _ = ready.send(true);
            let rooms = plan.user_rooms[i].clone();
            let rids = rooms.iter().map(|&r| setup.rids[r as usize].clone()).collect();
            let user = User {
                index: i,
                rooms,
                rids,
                n_rooms: plan.rooms.len() as u32,
                counts: Counts::default(),
                seen: HashMap::new(),
                room_max: HashMap::new(),
                pending: HashMap::new(),
                cid,
            };
            Some(run_user(ws, user, plan, a, setup.run, go_rx, shared, collect).await)
        }));
    }
    drop(ready_tx);
    let (mut ok, mut failed) = (0u64, 0u64);
    // One answer per user (each task keeps its sender while it runs, so the channel never closes).
    for _ in 0..mine.len() {
        let Some(r) = ready_rx.recv().await else { break };
        if r {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    io.send(Up::Ready(json!({ "users": ok, "failed": failed, "errors": lock(&shared.samples).clone() })));

    let mut done = Done::default();
    // One posting phase; `Finish` (or the parent gone) ends the worker.
    while let Down::Go(v) = io.next().await {
        let g: Go = match serde_json::from_value(v) {
            Ok(g) => g,
            Err(e) => {
                io.send(Up::Fatal(format!("bad go: {e}")));
                break;
            }
        };
        let cpu0 = sys::self_cpu();
        let _ = go_tx.send(Some(g.clone()));
        // Posting, then the drain: until quiet, at most drain_ms after the end.
        tokio::time::sleep_until(until(g.end_us)).await;
        let drain_end = until(g.end_us) + Duration::from_millis(g.drain_ms);
        let quiet = Duration::from_millis(g.quiet_ms);
        let mut last = shared.delivered.load(Ordering::Relaxed);
        let mut since = tokio::time::Instant::now();
        while tokio::time::Instant::now() < drain_end {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = shared.delivered.load(Ordering::Relaxed);
            if now != last {
                last = now;
                since = tokio::time::Instant::now();
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        collect.cancel();
        done = gather_users(std::mem::take(&mut users), &plan, &shared).await;
        done.cpu_us = sys::self_cpu().saturating_sub(cpu0).as_micros() as u64;
        io.send(Up::Done(serde_json::to_value(&done).unwrap_or_default()));
    }
    collect.cancel();
    for u in users {
        let _ = tokio::time::timeout(Duration::from_secs(5), u).await;
    }
    stop.cancel();
    ticker.abort();
    io.send(Up::Final(json!({ "cpu_us": sys::self_cpu().as_micros() as u64, "users": done.users })));
}

async fn gather_users(users: Vec<tokio::task::JoinHandle<Option<Counts>>>, plan: &Plan, shared: &Shared) -> Done {
    let mut d = Done { acked_per_room: vec![0; plan.rooms.len()], ..Done::default() };
    for u in users {
        let Ok(Ok(Some(c))) = tokio::time::timeout(Duration::from_secs(10), u).await else { continue };
        d.users += 1;
        d.closed += u64::from(c.closed);
        d.posted += c.posted;
        d.acked += c.acked;
        d.not_created += c.not_created;
        d.failed += c.failed;
        d.unacked += c.unacked;
        d.skipped += c.skipped;
        for (room, n) in c.acked_rooms {
            if let Some(slot) = d.acked_per_room.get_mut(room as usize) {
                *slot += n;
            }
        }
        d.delivered += c.delivered;
        d.duplicated += c.duplicated;
        d.out_of_order += c.out_of_order;
        d.unexpected += c.unexpected;
        d.other_messages += c.other;
        d.user_events += c.user_events;
        d.reads_ok += c.reads_ok;
        d.reads_failed += c.reads_failed;
    }
    let r = lock(&shared.rec);
    d.ack_hist = stats::encode(&r.ack);
    d.deliver_hist = stats::encode(&r.deliver);
    d.read_hist = stats::encode(&r.read);
    d.errors = lock(&shared.samples).clone();
    d
}

// ------------------------------------------------------------------ the run (parent)

/// Server processes measured: name and pid.
type Pids = Vec<(String, u32)>;

/// CPU and RSS of the server processes over the posting window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerUse {
    /// Per process: name, pid, CPU cores over the posting window, highest RSS seen, RSS when all users were connected.
    pub processes: Vec<Value>,
    pub cpu_cores_total: Option<f64>,
    pub rss_max_total_bytes: u64,
    pub rss_connected_total_bytes: u64,
    /// CPU the rest of the machine used over the window (the generator included), in cores.
    pub machine_busy_cores: Option<f64>,
}

/// Samples RSS every 500 ms until `stop`, and CPU exactly over `start_us..end_us`.
async fn sample(
    pids: Pids,
    start_us: u64,
    end_us: u64,
    stop: CancellationToken,
) -> (Vec<Option<Duration>>, Vec<u64>, Option<Duration>) {
    let cpu = |pids: &Pids| pids.iter().map(|(_, p)| sys::proc_cpu(*p)).collect::<Vec<_>>();
    let mut rss_max = vec![0u64; pids.len()];
    let take_rss = |rss_max: &mut Vec<u64>| {
        for (m, (_, p)) in rss_max.iter_mut().zip(&pids) {
            *m = (*m).max(sys::rss_bytes(*p).unwrap_or(0));
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let (mut cpu0, mut busy0, mut cpu_window, mut busy_window) = (None, None, None, None);
    let (at_start, at_end) = (until(start_us), until(end_us));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => take_rss(&mut rss_max),
            () = tokio::time::sleep_until(at_start), if cpu0.is_none() => {
                cpu0 = Some(cpu(&pids));
                busy0 = sys::machine_busy();
            }
            () = tokio::time::sleep_until(at_end), if cpu0.is_some() && cpu_window.is_none() => {
                let c1 = cpu(&pids);
                cpu_window = Some(c1.iter().zip(cpu0.iter().flatten()).map(|(b, a)| b.zip(*a).map(|(b, a)| b.saturating_sub(a))).collect::<Vec<_>>());
                busy_window = busy0.zip(sys::machine_busy()).map(|(a, b)| b.saturating_sub(a));
            }
        }
    }
    take_rss(&mut rss_max);
    (cpu_window.unwrap_or_else(|| vec![None; pids.len()]), rss_max, busy_window)
}

/// Starts the local cluster: the chat on every frontend, one store, open registration.
async fn start_local(a: &mut Args, dir: &Path) -> Result<(testkit::Cluster, Pids)> {
    let bin_dir = a.bin_dir.clone().or_else(|| {
        let here = std::env::current_exe().ok()?.parent()?.to_path_buf();
        here.join("frontend").is_file().then_some(here)
    });
    if let Some(d) = &bin_dir {
        std::env::set_var(testkit::process::BIN_DIR_ENV, d);
    }
    for b in ["state-server", "broker", "frontend"] {
        testkit::process::bin_path(b).map_err(|e| anyhow!(e))?;
    }
    std::fs::create_dir_all(dir)?;
    let store = match &a.store {
        Some(s) => s.clone(),
        None => format!("sqlite:{}", std::path::absolute(dir.join("chat.db"))?.display()),
    };
    let frontends = a.frontends.max(1);
    // Open registration: the users register themselves and a user of the run creates the rooms.
    // One frontend first: two creating (migrating) a new store at once race; the others join after.
    let builder = testkit::Cluster::builder()
        .brokers(a.brokers.max(1))
        .frontends(1)
        .timers(super::reshard::production_timers())
        .frontend_arg("--store")
        .frontend_arg(store)
        .frontend_arg("--open-registration")
        .frontend_arg("true");
    // The harness panics (with every node's log) when the cluster does not come up.
    let cluster = tokio::spawn(async move {
        let mut c = builder.start().await;
        for _ in 1..frontends {
            c.add_frontend().await;
        }
        c
    });
    let mut cluster = cluster.await.map_err(|e| anyhow!("cluster did not start: {e}"))?;
    a.common.urls = (0..cluster.frontend_count()).map(|i| cluster.frontend_url(i)).collect();
    a.admin = None;
    let pids = cluster.pids();
    Ok((cluster, pids))
}

fn hist_of(dones: &[Done], f: impl Fn(&Done) -> &str) -> Histogram<u64> {
    let mut h = stats::hist();
    for d in dones {
        stats::merge_encoded(&mut h, f(d));
    }
    h
}

/// Runs the scenario and writes the report.
///
/// # Errors
/// When the arguments are out of bounds, the setup fails, or workers do not report in time.
pub async fn run(mut a: Args, argv: &[String]) -> Result<Report> {
    a.check()?;
    let machine = sys::Machine::describe();
    let started_unix = sys::unix_secs();
    let name = format!("u{}-r{}-k{}-m{}", a.users, a.rooms, a.rooms_per_user, a.rate);
    let dir = a.common.out.clone().unwrap_or_else(|| default_dir("chat", &a.common.label, &name));
    let quiet = a.common.quiet;
    let mut pids: Pids = a.common.pids.iter().map(|&p| (format!("pid {p}"), p)).collect();
    let cluster = if a.local {
        let (c, p) = start_local(&mut a, &dir).await?;
        if !quiet {
            eprintln!(
                "chat: local cluster up in {} ({} brokers, {} frontends)",
                c.dir().display(),
                a.brokers,
                a.frontends
            );
        }
        pids.extend(p);
        Some(c)
    } else {
        None
    };
    if a.common.urls.is_empty() {
        bail!("give at least one --url, or --local");
    }
    let plan = Plan::new(&a);
    let first = Target::resolve(&a.common.urls[0]).await?;
    let t0 = std::time::Instant::now();
    let setup = prepare(&a, &plan, &first, quiet).await?;
    let setup_s = t0.elapsed().as_secs_f64();

    let k = a.common.procs.max(1);
    let mut progress = Progress::new(k, quiet);
    let setup_path = dir.join(".setup.json");
    let mut extra = Vec::new();
    if k > 1 {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&setup_path, serde_json::to_vec(&setup)?)?;
        extra = vec!["--setup-file".to_owned(), setup_path.display().to_string()];
        if a.local {
            // The children were not told the local cluster's addresses.
            for u in &a.common.urls {
                extra.extend(["--url".to_owned(), u.clone()]);
            }
        }
    }
    let local = a.clone();
    let local_setup = setup.clone();
    let mut set = start_workers(&a.common, argv, &extra, move |io| worker(local, io, Some(local_setup)))?;
    let t1 = std::time::Instant::now();
    let bound = Duration::from_secs(120) + Duration::from_millis(a.users as u64 * 20 / k as u64);
    let ready = set.gather("ready", bound, &mut progress, |u| match u {
        Up::Ready(v) => Some(v.clone()),
        _ => None,
    });
    let ready = ready.await;
    let _ = std::fs::remove_file(&setup_path);
    let ready = ready?;
    let connect_s = t1.elapsed().as_secs_f64();
    let connected: u64 = ready.iter().filter_map(|r| r["users"].as_u64()).sum();
    if !quiet {
        eprintln!("chat: {connected} of {} users logged in, joined and subscribed ({connect_s:.1} s)", a.users);
    }
    progress.mark(progress.elapsed(), "subscribed");
    let rss_connected: Vec<u64> = pids.iter().map(|(_, p)| sys::rss_bytes(*p).unwrap_or(0)).collect();
    let loadavg_before = sys::loadavg();

    let duration = Duration::from_secs_f64(a.duration).min(MAX_DURATION);
    let start_us = sys::now_us() + 500_000;
    let go = Go {
        start_us,
        end_us: start_us + duration.as_micros() as u64,
        rate: a.rate,
        drain_ms: (a.drain.max(0.0) * 1000.0) as u64,
        quiet_ms: (a.quiet_after.max(0.0) * 1000.0) as u64,
    };
    let stop_sampling = CancellationToken::new();
    let sampler = tokio::spawn(sample(pids.clone(), go.start_us, go.end_us, stop_sampling.clone()));
    progress.mark(progress.elapsed() + 0.5, format!("posting {}/s", a.rate));
    set.broadcast(&Down::Go(serde_json::to_value(&go)?));
    let bound = duration + Duration::from_millis(go.drain_ms) + Duration::from_secs(120);
    let dones = set
        .gather("result", bound, &mut progress, |u| match u {
            Up::Done(v) => Some(v.clone()),
            _ => None,
        })
        .await?;
    let loadavg_after = sys::loadavg();
    stop_sampling.cancel();
    let (cpu, rss_max, busy) = sampler.await.map_err(|e| anyhow!("sampler: {e}"))?;
    set.broadcast(&Down::Finish);
    let finals = set
        .gather("final", Duration::from_secs(30), &mut progress, |u| match u {
            Up::Final(v) => Some(v.clone()),
            _ => None,
        })
        .await?;
    set.close().await;
    drop(cluster);

    let dones: Vec<Done> = dones.into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
    let results = merge(&a, &plan, &dones, &pids, &cpu, &rss_max, &rss_connected, busy, duration);
    let gen_cpu: u64 = finals.iter().filter_map(|f| f["cpu_us"].as_u64()).sum();
    let mut results = results;
    results["setup_s"] = json!(setup_s);
    results["connect_s"] = json!(connect_s);
    results["loadavg_before"] = json!(loadavg_before);
    results["loadavg_after"] = json!(loadavg_after);
    results["generator_cpu_s_total"] = json!(gen_cpu as f64 / 1e6);
    results["workers_ready"] = json!(ready);
    if !quiet {
        let l = &results["deliver_latency"];
        eprintln!(
            "chat: posted {} acked {} delivered {} of {} (lost {}, dup {}, ooo {}) | post→deliver p50 {} p99 {} p99.9 {} max {} ms | server CPU {} cores, RSS max {:.0} MB",
            results["posted"], results["acked"], results["delivered"], results["expected"], results["lost"],
            results["duplicated"], results["out_of_order"], l["p50_ms"], l["p99_ms"], l["p999_ms"], l["max_ms"],
            results["server"]["cpu_cores_total"], results["server"]["rss_max_total_bytes"].as_f64().unwrap_or(0.0) / 1e6
        );
    }
    let mut report = Report {
        scenario: "chat".into(),
        label: a.common.label.clone(),
        started_unix,
        argv: argv.to_vec(),
        params: serde_json::to_value(&a)?,
        machine,
        results,
        timeline: std::mem::take(&mut progress.timeline),
        markers: std::mem::take(&mut progress.markers),
        dir: None,
    };
    report.write(&dir)?;
    Ok(report)
}

/// The run's figures from the workers' results and the server samples.
#[allow(clippy::too_many_arguments)]
fn merge(
    a: &Args,
    plan: &Plan,
    dones: &[Done],
    pids: &Pids,
    cpu: &[Option<Duration>],
    rss_max: &[u64],
    rss_connected: &[u64],
    busy: Option<Duration>,
    duration: Duration,
) -> Value {
    let sum = |f: fn(&Done) -> u64| dones.iter().map(f).sum::<u64>();
    let mut acked_per_room = vec![0u64; plan.rooms.len()];
    for d in dones {
        for (slot, n) in acked_per_room.iter_mut().zip(&d.acked_per_room) {
            *slot += n;
        }
    }
    let expected: u64 = acked_per_room.iter().zip(&plan.members).map(|(a, m)| a * m).sum();
    let delivered = sum(|d| d.delivered);
    let mut errors: Vec<String> = Vec::new();
    for e in dones.iter().flat_map(|d| &d.errors) {
        if errors.len() < 10 && !errors.contains(e) {
            errors.push(e.clone());
        }
    }
    let secs = duration.as_secs_f64().max(1e-3);
    let cpu_total: Option<f64> = cpu.iter().copied().sum::<Option<Duration>>().map(|d| d.as_secs_f64() / secs);
    let processes: Vec<Value> = pids
        .iter()
        .enumerate()
        .map(|(i, (name, pid))| {
            json!({
                "name": name,
                "pid": pid,
                "cpu_cores": cpu.get(i).copied().flatten().map(|d| d.as_secs_f64() / secs),
                "rss_max_bytes": rss_max.get(i),
                "rss_connected_bytes": rss_connected.get(i),
            })
        })
        .collect();
    let server = ServerUse {
        processes,
        cpu_cores_total: cpu_total,
        rss_max_total_bytes: rss_max.iter().sum(),
        rss_connected_total_bytes: rss_connected.iter().sum(),
        machine_busy_cores: busy.map(|b| b.as_secs_f64() / secs),
    };
    let members: Vec<u64> = plan.members.clone();
    json!({
        "users": a.users,
        "connected": sum(|d| d.users),
        "closed": sum(|d| d.closed),
        "rooms": a.rooms,
        "rooms_per_user": a.rooms_per_user,
        "members_per_room": { "min": members.iter().min(), "max": members.iter().max() },
        "posters": plan.poster_count,
        "readers": plan.reader_count,
        "target_rate": a.rate,
        "duration_s": secs,
        "posted": sum(|d| d.posted),
        "acked": sum(|d| d.acked),
        "not_created": sum(|d| d.not_created),
        "failed": sum(|d| d.failed),
        "unacked": sum(|d| d.unacked),
        "skipped": sum(|d| d.skipped),
        "posted_per_s": sum(|d| d.posted) as f64 / secs,
        "expected": expected,
        "delivered": delivered,
        "lost": expected.saturating_sub(delivered),
        "delivered_beyond_expected": delivered.saturating_sub(expected),
        "duplicated": sum(|d| d.duplicated),
        "out_of_order": sum(|d| d.out_of_order),
        "unexpected": sum(|d| d.unexpected),
        "other_messages": sum(|d| d.other_messages),
        "user_events": sum(|d| d.user_events),
        "reads_ok": sum(|d| d.reads_ok),
        "reads_failed": sum(|d| d.reads_failed),
        "ack_latency": Latency::of(&hist_of(dones, |d| &d.ack_hist)),
        "deliver_latency": Latency::of(&hist_of(dones, |d| &d.deliver_hist)),
        "read_latency": Latency::of(&hist_of(dones, |d| &d.read_hist)),
        "server": server,
        "generator_cpu_s": sum(|d| d.cpu_us) as f64 / 1e6,
        "typing": "not measured: no typing method on the frontends yet",
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(words: &[&str]) -> Args {
        let argv = std::iter::once("loadtest").chain(std::iter::once("chat")).chain(words.iter().copied());
        match super::super::Cli::parse_from(argv).command {
            super::super::Command::Chat(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_plan_gives_every_user_distinct_rooms_and_every_room_its_share_of_members() {
        let a =
            args(&["--users", "100", "--rooms", "7", "--rooms-per-user", "3", "--posters", "0.1", "--readers", "0.2"]);
        let p = Plan::new(&a);
        for rs in &p.user_rooms {
            let distinct: HashSet<_> = rs.iter().collect();
            assert_eq!(distinct.len(), 3);
        }
        assert_eq!(p.members.iter().sum::<u64>(), 300);
        assert!(p.members.iter().all(|&m| (42..=43).contains(&m)), "{:?}", p.members);
        assert_eq!((p.poster_count, p.poster.iter().flatten().count()), (10, 10));
        assert_eq!((p.reader_count, p.reader.iter().flatten().count()), (20, 20));
    }

    #[test]
    fn out_of_range_arguments_are_refused() {
        assert!(args(&["--rooms", "3", "--rooms-per-user", "4"]).check().is_err());
        assert!(args(&["--posters", "1.5"]).check().is_err());
        assert!(args(&["--users", "0"]).check().is_err());
        assert!(args(&["--prefix", "a b"]).check().is_err());
        assert!(args(&[]).check().is_ok());
    }

    #[test]
    fn a_message_new_push_gives_its_stamp_and_room_seq_once() {
        let a = args(&["--users", "10", "--rooms", "4", "--rooms-per-user", "2"]);
        let plan = Plan::new(&a);
        let mut u = User {
            index: 1,
            rooms: plan.user_rooms[1].clone(),
            rids: Vec::new(),
            n_rooms: 4,
            counts: Counts::default(),
            seen: HashMap::new(),
            room_max: HashMap::new(),
            pending: HashMap::new(),
            cid: 0,
        };
        let room = u.rooms[0];
        let push = |seq: u64, pseq: u64| {
            let mut text = String::new();
            push_payload(&mut text, &Stamp { step: STEP, ch: 5 * 4 + room, seq: pseq, t: 10 }, 40);
            json!({"event": "#publish", "data": {"channel": "room/x", "data": {
                "rid": "x", "id": "m", "seq": seq,
                "message": {"_id": "m", "rid": "x", "seq": seq, "u": {"_id": "a", "username": "lt-u5"}, "msg": text},
                "type": "message.new"}}})
            .to_string()
        };
        let scanner = Scanner::after(MSG_MARK);
        let finder = memmem::Finder::new(SEQ_MARK);
        let mut lat = Vec::new();
        for (seq, pseq) in [(7, 0), (9, 1), (9, 1), (8, 2)] {
            u.scan_publish(&scanner, &finder, push(seq, pseq).as_bytes(), 50, &mut lat);
        }
        assert_eq!((u.counts.delivered, u.counts.duplicated, u.counts.out_of_order), (3, 1, 1));
        assert_eq!(lat, vec![40, 40, 40]);
        // The same through the decoding path (a batch frame) counts the same way.
        let batch = format!("[{}]", push(10, 3));
        u.other_frame(
            &batch,
            60,
            &Shared {
                posted: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                conns: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                rec: Mutex::new(Rec {
                    deliver: stats::hist(),
                    window: stats::hist(),
                    ack: stats::hist(),
                    read: stats::hist(),
                }),
                samples: Mutex::new(Vec::new()),
            },
            &mut lat,
            &mut Vec::new(),
            &mut Vec::new(),
        );
        assert_eq!(u.counts.delivered, 4);
        // A system message (no stamp) is counted apart.
        let joined = push(11, 4).replace(&format!("\"msg\":\"{STEP}."), "\"msg\":\"lt-u3 joined.");
        u.scan_publish(&scanner, &finder, joined.as_bytes(), 70, &mut lat);
        assert_eq!((u.counts.delivered, u.counts.other), (4, 1));
    }
}
