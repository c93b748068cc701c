//! From a parsed Slack [`Archive`] and what the store already has ([`Existing`]) to one
//! [`ImportBatch`]: the mapping Slack → ours, decided in one place. Pure.
//!
//! Decisions (the README has the table):
//! - Users become **deactivated** accounts without a password (`kind = bot` for Slack bots). A Slack
//!   user whose e-mail matches an existing account is **linked** to that account instead. Usernames and
//!   room names keep Slack's when free; a taken name gets `-slack`, `-slack-2`, … (then a derived one).
//! - Channels → public channels, groups → private groups, DMs → DMs, **mpims → private groups** named
//!   after Slack's `mpdm-…` name (a Slack mpim holds up to 9 people, more than our DM limit, and
//!   a group keeps working when people are added later). The Slack creator becomes owner when a member.
//! - Messages keep author and original `ts`; `thread_ts ≠ ts` → reply to the root (`thread_broadcast`
//!   → also shown in the channel); a reply whose root is neither in the archive nor stored stays in the
//!   channel. Reactions keep their users, `edited` becomes the edit mark, `files` become attachments
//!   linking to the Slack URL (nothing is downloaded). Markup is converted by [`markup`].
//! - Skipped: membership and room events (`channel_join`, `channel_topic`, …), other unsupported
//!   subtypes, bot messages without a user, messages by users not in `users.json`, deleted-message
//!   placeholders (`tombstone`), empty messages, repeated `ts`, everything in a conversation that is not
//!   imported (a DM without two known people).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::markup::{self, Names};
use super::slack::{ts_millis, Archive, ConversationKind, SlackConversation, SlackFile, SlackMessage, SlackUser};
use super::{derived_id, Summary};
use crate::ids::{MessageId, Millis, RoomId, UserId};
use crate::limits::{
    MAX_ATTACHMENTS, MAX_DESCRIPTION_CHARS, MAX_DISPLAY_NAME_CHARS, MAX_EMOJI_BYTES, MAX_MENTIONS, MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS, MAX_REACTION_KINDS, MAX_TOPIC_CHARS,
};
use crate::message::{Mention, Message, UserRef};
use crate::roles::Role;
use crate::room::{dm_key, Room, RoomType, Subscription};
use crate::store::ImportBatch;
use crate::unread::RoomCounters;
use crate::user::{validate_email, validate_username, User, UserKind};

/// Longest imported text; longer ones are cut (Slack's own limit is 40,000).
pub const MAX_IMPORTED_CHARS: usize = MAX_MESSAGE_CHARS * 10;
/// Name variants tried before falling back to a derived one.
const NAME_SUFFIXES: usize = 9;

/// What the store already holds, as far as the import cares; filled read-only by `apply::resolve`.
#[derive(Clone, Debug, Default)]
pub struct Existing {
    /// Users by id (earlier imports, by derived id).
    pub users: HashMap<UserId, User>,
    /// Accounts by lower-cased e-mail.
    pub by_email: HashMap<String, User>,
    /// Lower-cased usernames taken.
    pub usernames: HashSet<String>,
    /// Rooms by id (earlier imports).
    pub rooms: HashMap<RoomId, Room>,
    /// Lower-cased room names taken.
    pub room_names: HashSet<String>,
    /// DM rooms by `dm_key`.
    pub dms: HashMap<String, RoomId>,
    /// Thread roots outside the archive that the store has (a later export's replies to older roots).
    pub messages: HashSet<MessageId>,
}

/// A Slack user on our side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedUser {
    pub user: User,
    /// Not in the store yet: part of the batch.
    pub new: bool,
    /// Linked to an existing account by e-mail.
    pub linked: bool,
}

/// Per-message figures for the summary, parallel to `ImportBatch::messages`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageStats {
    pub id: MessageId,
    pub reply: bool,
    pub reactions: u64,
    pub edited: bool,
    pub files: u64,
}

/// The batch to write and what the summary needs to report it.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub batch: ImportBatch,
    pub stats: Vec<MessageStats>,
    /// Slack users mapped (new, present or linked).
    pub users_total: u64,
    pub users_linked: u64,
    /// Rooms mapped (new or present).
    pub rooms_total: u64,
    /// Sizes of the batch's lists, kept for the summary once the batch has been handed to the store.
    pub users_new: u64,
    pub rooms_new: u64,
    pub members_planned: u64,
    /// Skips and notes; the counts are filled in by [`Plan::summary`].
    pub summary: Summary,
}

impl Plan {
    /// The summary once the store said what it created (`None`: a dry run, counted as all new).
    pub fn summary(&self, outcome: Option<&crate::store::ImportOutcome>) -> Summary {
        use super::Count;
        let mut s = self.summary.clone();
        let created: Option<HashSet<&MessageId>> = outcome.map(|o| o.messages.iter().collect());
        let split = |total: u64, imported: u64| Count { imported, present: total.saturating_sub(imported) };
        let (users, rooms, members) = match outcome {
            Some(o) => (o.users, o.rooms, o.members),
            None => (self.users_new, self.rooms_new, self.members_planned),
        };
        s.users = split(self.users_total, users);
        s.users_linked = self.users_linked;
        s.rooms = split(self.rooms_total, rooms);
        s.members = split(self.members_planned, members);
        for st in &self.stats {
            let new = created.as_ref().is_none_or(|c| c.contains(&st.id));
            let add = |c: &mut Count, n: u64| {
                if new {
                    c.imported += n;
                } else {
                    c.present += n;
                }
            };
            add(&mut s.messages, 1);
            add(&mut s.thread_replies, u64::from(st.reply));
            add(&mut s.reactions, st.reactions);
            add(&mut s.edits, u64::from(st.edited));
            add(&mut s.file_references, st.files);
        }
        s
    }
}

/// Keeps `[0-9a-zA-Z-_.]`, replaces the rest by `_`, at most `max` characters; `fallback` when empty.
pub fn sanitize_name(s: &str, max: usize, fallback: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii() && crate::user::is_name_byte(c as u8) { c } else { '_' }).take(max).collect();
    if out.trim_matches('_').is_empty() {
        out = fallback.chars().filter(|c| c.is_ascii_alphanumeric()).take(max).collect();
    }
    out
}

/// Names to try for `base`, in order: itself, `-slack`, `-slack-2`, … (each within 64 characters).
pub fn name_candidates(base: &str) -> Vec<String> {
    let stem: String = base.chars().take(MAX_NAME_CHARS - "-slack-10".len()).collect();
    let mut v = vec![base.to_owned(), format!("{stem}-slack")];
    v.extend((2..=NAME_SUFFIXES).map(|i| format!("{stem}-slack-{i}")));
    v
}

/// The first candidate nobody holds (case-insensitive), claiming it; a derived name when all are taken.
fn claim(base: &str, taken: &mut HashSet<String>, derived: &str, valid: impl Fn(&str) -> bool) -> String {
    let pick = name_candidates(base)
        .into_iter()
        .find(|n| valid(n) && !taken.contains(&n.to_lowercase()))
        .unwrap_or_else(|| format!("slack-{}", derived.to_lowercase()));
    taken.insert(pick.to_lowercase());
    pick
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The message id of `ts` in Slack conversation `conv`.
pub fn message_id(conv: &str, ts: &str) -> MessageId {
    MessageId(derived_id("message", &format!("{conv}/{ts}")))
}

pub fn user_id(slack: &str) -> UserId {
    UserId(derived_id("user", slack))
}

pub fn room_id(slack: &str) -> RoomId {
    RoomId(derived_id("room", slack))
}

fn valid_email(u: &SlackUser) -> Option<String> {
    u.profile.email.as_deref().map(str::trim).filter(|e| validate_email(e).is_ok()).map(str::to_owned)
}

/// Slack users → accounts. Deterministic for a given archive and store.
pub fn map_users(archive: &Archive, existing: &Existing, summary: &mut Summary) -> HashMap<String, MappedUser> {
    let mut taken = existing.usernames.clone();
    let mut emails: HashSet<String> = HashSet::new();
    let mut out = HashMap::new();
    for su in &archive.users {
        let id = user_id(&su.id);
        if let Some(user) = existing.users.get(&id) {
            out.insert(su.id.clone(), MappedUser { user: user.clone(), new: false, linked: false });
            continue;
        }
        let email = valid_email(su);
        if let Some(user) = email.as_ref().and_then(|e| existing.by_email.get(&e.to_lowercase())) {
            out.insert(su.id.clone(), MappedUser { user: user.clone(), new: false, linked: true });
            continue;
        }
        let base = sanitize_name(&su.name, MAX_NAME_CHARS, &su.id);
        let username = claim(&base, &mut taken, id.as_str(), |n| validate_username(n).is_ok());
        if username != base {
            summary.note("username taken or not allowed: imported under another name");
        }
        let email = match email {
            Some(e) if emails.insert(e.to_lowercase()) => Some(e),
            Some(_) => {
                summary.note("e-mail shared by two Slack users: kept on the first only");
                None
            }
            None => None,
        };
        let bot = su.is_bot;
        let user = User {
            id,
            username,
            name: cut(su.display_name(), MAX_DISPLAY_NAME_CHARS),
            email,
            kind: if bot { UserKind::Bot } else { UserKind::User },
            roles: vec![if bot { Role::Bot } else { Role::User }],
            active: false,
            created_at: 0,
            updated_at: 0,
        };
        out.insert(su.id.clone(), MappedUser { user, new: true, linked: false });
    }
    out
}

/// A conversation on our side.
#[derive(Clone, Debug)]
struct MappedRoom {
    room: Room,
    new: bool,
    members: Vec<UserId>,
}

struct NameTables<'a> {
    users: &'a HashMap<String, MappedUser>,
    rooms: HashMap<String, String>,
}

impl Names for NameTables<'_> {
    fn username(&self, id: &str) -> Option<&str> {
        self.users.get(id).map(|u| u.user.username.as_str())
    }
    fn room(&self, id: &str) -> Option<&str> {
        self.rooms.get(id).map(String::as_str)
    }
}

fn map_room(
    conv: &SlackConversation,
    users: &HashMap<String, MappedUser>,
    existing: &Existing,
    taken: &mut HashSet<String>,
    summary: &mut Summary,
) -> Option<MappedRoom> {
    let mut members: Vec<UserId> = Vec::new();
    for m in &conv.members {
        match users.get(m) {
            Some(u) if !members.contains(&u.user.id) => members.push(u.user.id.clone()),
            Some(_) => {}
            None => summary.skip("membership of a user not in users.json"),
        }
    }
    let created_at = conv.created.saturating_mul(1000);
    if conv.kind == ConversationKind::Dm {
        if members.len() < 2 {
            summary.skip("DM without two known people (e.g. a self DM)");
            return None;
        }
        let key = dm_key(&members);
        let id = existing.dms.get(&key).cloned().unwrap_or_else(|| room_id(&conv.id));
        if let Some(room) = existing.rooms.get(&id) {
            return Some(MappedRoom { room: room.clone(), new: false, members });
        }
        if existing.dms.contains_key(&key) {
            summary.note("DM merged into the existing DM of the same people");
            let room = Room { id, ..blank_room(RoomType::Direct, members[0].clone(), created_at) };
            return Some(MappedRoom { room, new: false, members });
        }
        let mut room = blank_room(RoomType::Direct, members[0].clone(), created_at);
        room.id = id;
        room.dm_key = Some(key);
        return Some(MappedRoom { room, new: true, members });
    }
    let id = room_id(&conv.id);
    if let Some(room) = existing.rooms.get(&id) {
        return Some(MappedRoom { room: room.clone(), new: false, members });
    }
    let creator = conv.creator.as_ref().and_then(|c| users.get(c)).map(|u| u.user.id.clone());
    let Some(creator) = creator.or_else(|| members.first().cloned()) else {
        summary.skip("conversation without any known member or creator");
        return None;
    };
    let t = if conv.kind == ConversationKind::Channel { RoomType::Channel } else { RoomType::Group };
    let slack_name = conv.name.clone().unwrap_or_else(|| conv.id.clone());
    let base = sanitize_name(&slack_name, MAX_NAME_CHARS, &conv.id);
    let name = claim(&base, taken, id.as_str(), |n| crate::user::validate_name("name", n).is_ok());
    if name != base {
        summary.note("room name taken or not allowed: imported under another name");
    }
    let mut room = blank_room(t, creator, created_at);
    room.id = id;
    room.fname = cut(&slack_name, MAX_DISPLAY_NAME_CHARS);
    room.name = Some(name);
    room.topic = cut(&conv.topic.as_ref().map(|t| markup::unescape(&t.value)).unwrap_or_default(), MAX_TOPIC_CHARS);
    room.description =
        cut(&conv.purpose.as_ref().map(|t| markup::unescape(&t.value)).unwrap_or_default(), MAX_DESCRIPTION_CHARS);
    room.archived = conv.is_archived;
    Some(MappedRoom { room, new: true, members })
}

fn blank_room(t: RoomType, creator: UserId, created_at: Millis) -> Room {
    Room {
        id: RoomId(String::new()),
        t,
        name: None,
        fname: String::new(),
        topic: String::new(),
        description: String::new(),
        announcement: String::new(),
        creator,
        dm_key: None,
        read_only: false,
        react_when_read_only: false,
        archived: false,
        default: false,
        users_count: 0,
        counters: RoomCounters::default(),
        last_message_at: None,
        created_at,
        updated_at: created_at,
    }
}

/// Subtypes imported as ordinary messages; every other subtype is skipped.
const KEPT_SUBTYPES: &[&str] = &["thread_broadcast", "me_message", "file_share", "bot_message"];

/// Builds the whole plan.
pub fn plan(archive: &Archive, existing: &Existing) -> Plan {
    let mut p = Plan::default();
    let users = map_users(archive, existing, &mut p.summary);
    p.users_total = users.len() as u64;
    p.users_linked = users.values().filter(|u| u.linked).count() as u64;
    let mut new_users: Vec<&MappedUser> = users.values().filter(|u| u.new).collect();
    new_users.sort_by(|a, b| a.user.username.cmp(&b.user.username));
    p.batch.users = new_users.into_iter().map(|u| u.user.clone()).collect();

    let by_id: HashMap<&UserId, &MappedUser> = users.values().map(|u| (&u.user.id, u)).collect();
    let mut taken = existing.room_names.clone();
    let rooms: Vec<Option<MappedRoom>> =
        archive.conversations.iter().map(|c| map_room(c, &users, existing, &mut taken, &mut p.summary)).collect();
    let names = NameTables {
        users: &users,
        rooms: archive
            .conversations
            .iter()
            .zip(&rooms)
            .filter_map(|(c, r)| Some((c.id.clone(), r.as_ref()?.room.name.clone()?)))
            .collect(),
    };

    for ((conv, mapped), msgs) in archive.conversations.iter().zip(&rooms).zip(&archive.messages) {
        let Some(mapped) = mapped else {
            for _ in msgs {
                p.summary.skip("message of a conversation that is not imported");
            }
            continue;
        };
        p.rooms_total += 1;
        if mapped.new {
            p.batch.rooms.push(mapped.room.clone());
        }
        let owner = matches!(mapped.room.t, RoomType::Channel | RoomType::Group).then_some(&mapped.room.creator);
        for uid in &mapped.members {
            let Some(u) = by_id.get(uid) else { continue };
            let roles = if Some(uid) == owner { vec![Role::Owner] } else { Vec::new() };
            p.batch.members.push(Subscription::new_member(&mapped.room, &u.user, roles, mapped.room.created_at));
        }
        plan_messages(conv, &mapped.room, msgs, &users, &names, existing, &mut p);
    }
    p.users_new = p.batch.users.len() as u64;
    p.rooms_new = p.batch.rooms.len() as u64;
    p.members_planned = p.batch.members.len() as u64;
    p
}

fn plan_messages(
    conv: &SlackConversation,
    room: &Room,
    msgs: &[SlackMessage],
    users: &HashMap<String, MappedUser>,
    names: &NameTables<'_>,
    existing: &Existing,
    p: &mut Plan,
) {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut planned: HashSet<MessageId> = HashSet::new();
    for m in msgs {
        if !seen.insert(m.ts.as_str()) {
            p.summary.skip("second message with the same ts in a conversation");
            continue;
        }
        if let Some(st) = m.subtype.as_deref().filter(|s| !KEPT_SUBTYPES.contains(s)) {
            p.summary.skip(match st {
                "tombstone" => "deleted-message placeholder (subtype tombstone)".to_owned(),
                _ => format!("unsupported subtype {st}"),
            });
            continue;
        }
        let Some(author) = m.user.as_deref() else {
            p.summary.skip(if m.bot_id.is_some() {
                "bot or integration message without a user"
            } else {
                "message without a user"
            });
            continue;
        };
        let Some(author) = users.get(author) else {
            p.summary.skip("author not in users.json");
            continue;
        };
        let Some(ts) = ts_millis(&m.ts) else { continue };
        let converted = markup::convert(&m.text, names);
        // NUL is the one character our messages refuse; Slack text should never hold one.
        let mut text = if converted.text.contains('\0') { converted.text.replace('\0', "") } else { converted.text };
        if text.chars().count() > MAX_IMPORTED_CHARS {
            text = cut(&text, MAX_IMPORTED_CHARS);
            p.summary.note("text longer than 50,000 characters cut");
        }
        let mut attachments: Vec<serde_json::Value> = m.files.iter().filter_map(file_reference).collect();
        if m.files.len() > attachments.len() {
            for _ in attachments.len()..m.files.len() {
                p.summary.skip("file without a name or URL (deleted or hidden in Slack)");
            }
        }
        if attachments.len() > MAX_ATTACHMENTS {
            attachments.truncate(MAX_ATTACHMENTS);
            p.summary.note("more than 10 files on a message: the first 10 kept");
        }
        if text.trim().is_empty() && attachments.is_empty() {
            p.summary.skip("empty message");
            continue;
        }
        let id = message_id(&conv.id, &m.ts);
        let mut tmid = None;
        if let Some(root_ts) = m.thread_ts.as_deref().filter(|t| *t != m.ts) {
            let root = message_id(&conv.id, root_ts);
            if planned.contains(&root) || existing.messages.contains(&root) {
                tmid = Some(root);
            } else {
                p.summary.note("reply whose thread root is not imported: kept in the channel");
            }
        }
        let tshow = tmid.is_some() && m.subtype.as_deref() == Some("thread_broadcast");
        let mut reactions: BTreeMap<String, Vec<UserId>> = BTreeMap::new();
        let mut reaction_count = 0;
        for r in &m.reactions {
            let emoji = emoji_name(&r.name);
            if !reactions.contains_key(&emoji) && reactions.len() >= MAX_REACTION_KINDS {
                p.summary.skip("reaction beyond 50 kinds on one message");
                continue;
            }
            for u in &r.users {
                match users.get(u) {
                    Some(mu) => {
                        let list = reactions.entry(emoji.clone()).or_default();
                        if !list.contains(&mu.user.id) {
                            list.push(mu.user.id.clone());
                            reaction_count += 1;
                        }
                    }
                    None => p.summary.skip("reaction by a user not in users.json"),
                }
            }
        }
        let edited_at = m.edited.as_ref().and_then(|e| e.ts.as_deref()).and_then(ts_millis);
        let edited_by = edited_at.map(|_| {
            m.edited
                .as_ref()
                .and_then(|e| e.user.as_ref())
                .and_then(|u| users.get(u))
                .map_or_else(|| author.user.id.clone(), |u| u.user.id.clone())
        });
        let mentions: Vec<Mention> = converted
            .users
            .iter()
            .filter_map(|u| users.get(u))
            .take(MAX_MENTIONS)
            .map(|u| Mention { id: u.user.id.clone(), username: u.user.username.clone() })
            .collect();
        let files = attachments.len() as u64;
        planned.insert(id.clone());
        p.stats.push(MessageStats {
            id: id.clone(),
            reply: tmid.is_some(),
            reactions: reaction_count,
            edited: edited_at.is_some(),
            files,
        });
        let timeline = tmid.is_none() || tshow;
        p.batch.messages.push(Message {
            id,
            rid: room.id.clone(),
            seq: 0,
            u: UserRef {
                id: author.user.id.clone(),
                username: author.user.username.clone(),
                name: author.user.name.clone(),
            },
            msg: text,
            t: None,
            ts,
            updated_at: edited_at.map_or(ts, |e| e.max(ts)),
            edited_at,
            edited_by,
            tmid,
            tshow,
            timeline,
            tcount: 0,
            tlm: None,
            replies: Vec::new(),
            mentions,
            group_mention: converted.group_mention,
            reactions,
            pinned: false,
            pinned_at: None,
            pinned_by: None,
            attachments,
            client_msg_id: None,
            deleted_at: None,
        });
    }
}

/// A Slack reaction name (`tada`) as the `:tada:` key live reactions use (clients send Rocket.Chat's
/// `:name:` form, so a later click on an imported reaction joins it instead of adding a second one),
/// within our rules (no `.`, no leading `$`, ≤ 64 bytes).
fn emoji_name(name: &str) -> String {
    let mut e: String = name
        .trim_matches(':')
        .trim_start_matches('$')
        .replace('.', "_")
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    while e.len() > MAX_EMOJI_BYTES - 2 {
        e.pop();
    }
    if e.is_empty() {
        e.push('_');
    }
    format!(":{e}:")
}

/// A Slack file as an RC-shaped attachment that links to the original (`title_link`); `None` for files
/// Slack no longer shows (deleted or hidden by the plan limit: no name or URL).
fn file_reference(f: &SlackFile) -> Option<serde_json::Value> {
    let url = f.url_private.as_deref().filter(|u| !u.is_empty())?;
    let name = f.name.as_deref().or(f.title.as_deref()).filter(|n| !n.is_empty())?;
    let mut a = serde_json::json!({
        "type": "file",
        "title": cut(name, 1000),
        "title_link": cut(url, 4000),
        "title_link_download": false,
        "imported": "slack",
    });
    if let Some(id) = &f.id {
        a["slackFileId"] = cut(id, 64).into();
    }
    if let Some(size) = f.size {
        a["size"] = size.into();
    }
    if let Some(t) = &f.mimetype {
        a["contentType"] = cut(t, 255).into();
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::super::slack::{SlackEdited, SlackProfile, SlackReaction, SlackText};
    use super::*;

    fn user(id: &str, name: &str, email: Option<&str>) -> SlackUser {
        SlackUser {
            id: id.into(),
            name: name.into(),
            real_name: Some(format!("{name} Real")),
            profile: SlackProfile { email: email.map(Into::into), ..Default::default() },
            ..Default::default()
        }
    }

    fn conv(id: &str, name: Option<&str>, kind: ConversationKind, members: &[&str]) -> SlackConversation {
        SlackConversation {
            id: id.into(),
            name: name.map(Into::into),
            created: 1_600_000_000,
            creator: members.first().map(|m| (*m).to_owned()),
            is_archived: false,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            topic: Some(SlackText { value: "the &lt;topic&gt;".into() }),
            purpose: Some(SlackText { value: "why".into() }),
            kind,
        }
    }

    fn msg(user: Option<&str>, text: &str, ts: &str) -> SlackMessage {
        SlackMessage { user: user.map(Into::into), text: text.into(), ts: ts.into(), ..Default::default() }
    }

    fn archive() -> Archive {
        let mut root = msg(Some("U1"), "root <@U2>", "100.000001");
        root.reactions = vec![
            SlackReaction { name: "+1".into(), users: vec!["U1".into(), "U2".into(), "U9".into()] },
            SlackReaction { name: "flag.us".into(), users: vec!["U2".into()] },
        ];
        root.edited = Some(SlackEdited { user: Some("U1".into()), ts: Some("150.0".into()) });
        let mut reply = msg(Some("U2"), "reply", "101.0");
        reply.thread_ts = Some("100.000001".into());
        let mut orphan = msg(Some("U2"), "orphan", "102.0");
        orphan.thread_ts = Some("50.0".into());
        let mut join = msg(Some("U2"), "<@U2> has joined", "99.0");
        join.subtype = Some("channel_join".into());
        let mut bot = msg(None, "deploy done", "103.0");
        bot.subtype = Some("bot_message".into());
        bot.bot_id = Some("B1".into());
        let mut file = msg(Some("U1"), "", "104.0");
        file.files = vec![SlackFile {
            id: Some("F1".into()),
            name: Some("plan.pdf".into()),
            mimetype: Some("application/pdf".into()),
            size: Some(1234),
            url_private: Some("https://files.slack.com/F1/plan.pdf".into()),
            ..Default::default()
        }];
        Archive {
            users: vec![user("U1", "alice", Some("a@x.org")), user("U2", "bob", None)],
            conversations: vec![
                conv("C1", Some("general"), ConversationKind::Channel, &["U1", "U2", "U7"]),
                conv("D1", None, ConversationKind::Dm, &["U1", "U2"]),
                conv("D2", None, ConversationKind::Dm, &["U1"]),
                conv("G1", Some("mpdm-alice--bob-1"), ConversationKind::Mpim, &["U1", "U2"]),
            ],
            messages: vec![
                vec![
                    join,
                    root,
                    reply,
                    orphan,
                    bot,
                    file,
                    msg(Some("U8"), "ghost", "105.0"),
                    msg(Some("U1"), "dup", "105.0"),
                ],
                vec![msg(Some("U1"), "d\u{0}m", "200.0")],
                vec![msg(Some("U1"), "note to self", "300.0")],
                vec![msg(Some("U2"), "group chat", "400.0")],
            ],
            message_files: 4,
        }
    }

    #[test]
    fn users_become_deactivated_accounts_with_slack_names() {
        let p = plan(&archive(), &Existing::default());
        let names: Vec<(&str, &str, Option<&str>, bool)> = p
            .batch
            .users
            .iter()
            .map(|u| (u.username.as_str(), u.name.as_str(), u.email.as_deref(), u.active))
            .collect();
        assert_eq!(names, [("alice", "alice Real", Some("a@x.org"), false), ("bob", "bob Real", None, false)]);
        assert_eq!(p.batch.users[0].id, user_id("U1"));
    }

    #[test]
    fn rooms_map_by_kind_with_members_and_owner() {
        let p = plan(&archive(), &Existing::default());
        let rooms: Vec<(RoomType, Option<&str>)> = p.batch.rooms.iter().map(|r| (r.t, r.name.as_deref())).collect();
        assert_eq!(
            rooms,
            [
                (RoomType::Channel, Some("general")),
                (RoomType::Direct, None),
                (RoomType::Group, Some("mpdm-alice--bob-1"))
            ]
        );
        assert_eq!(p.batch.rooms[0].topic, "the <topic>");
        assert_eq!(p.batch.rooms[0].description, "why");
        assert_eq!(p.batch.rooms[1].dm_key.as_deref(), Some(dm_key(&[user_id("U1"), user_id("U2")]).as_str()));
        let general: Vec<(&UserId, &Vec<Role>)> =
            p.batch.members.iter().filter(|s| s.rid == room_id("C1")).map(|s| (&s.uid, &s.roles)).collect();
        assert_eq!(general, [(&user_id("U1"), &vec![Role::Owner]), (&user_id("U2"), &vec![])]);
        assert_eq!(p.summary.skipped["membership of a user not in users.json"], 1);
        assert_eq!(p.summary.skipped["DM without two known people (e.g. a self DM)"], 1);
        assert_eq!(p.summary.skipped["message of a conversation that is not imported"], 1);
    }

    #[test]
    fn messages_keep_time_threads_reactions_edits_and_files() {
        let p = plan(&archive(), &Existing::default());
        let general: Vec<&Message> = p.batch.messages.iter().filter(|m| m.rid == room_id("C1")).collect();
        let texts: Vec<&str> = general.iter().map(|m| m.msg.as_str()).collect();
        assert_eq!(texts, ["root @bob", "reply", "orphan", ""]);
        let root = general[0];
        assert_eq!(root.id, message_id("C1", "100.000001"));
        assert_eq!(root.ts, 100_000);
        assert_eq!(root.mentions, vec![Mention { id: user_id("U2"), username: "bob".into() }]);
        assert_eq!(root.reactions[":+1:"], vec![user_id("U1"), user_id("U2")]);
        assert_eq!(root.reactions[":flag_us:"], vec![user_id("U2")]);
        assert_eq!(
            (root.edited_at, root.edited_by.clone(), root.updated_at),
            (Some(150_000), Some(user_id("U1")), 150_000)
        );
        assert_eq!(general[1].tmid.as_ref(), Some(&root.id));
        assert!(!general[1].timeline);
        assert_eq!(general[2].tmid, None, "a reply to a root outside the archive stays in the channel");
        assert_eq!(general[3].attachments[0]["title_link"], "https://files.slack.com/F1/plan.pdf");
        assert_eq!(general[3].attachments[0]["size"], 1234);
        p.batch.validate().unwrap();
        let s = p.summary(None);
        assert_eq!((s.messages.imported, s.thread_replies.imported, s.reactions.imported), (6, 1, 3));
        assert_eq!((s.edits.imported, s.file_references.imported), (1, 1));
        assert_eq!(s.skipped["unsupported subtype channel_join"], 1);
        assert_eq!(s.skipped["bot or integration message without a user"], 1);
        assert_eq!(s.skipped["author not in users.json"], 1);
        assert_eq!(s.skipped["second message with the same ts in a conversation"], 1);
        assert_eq!(s.skipped["reaction by a user not in users.json"], 1);
        assert_eq!(s.notes["reply whose thread root is not imported: kept in the channel"], 1);
    }

    #[test]
    fn text_the_store_would_refuse_is_cleaned_so_the_batch_validates() {
        let p = plan(&archive(), &Existing::default());
        let dm = p.batch.messages.iter().find(|m| m.rid == room_id("D1")).unwrap();
        assert_eq!(dm.msg, "dm");
        p.batch.validate().unwrap();
    }

    #[test]
    fn a_second_plan_against_the_first_import_reuses_every_id() {
        let a = archive();
        let first = plan(&a, &Existing::default());
        let mut existing = Existing::default();
        for u in &first.batch.users {
            existing.users.insert(u.id.clone(), u.clone());
            existing.usernames.insert(u.username.to_lowercase());
        }
        for r in &first.batch.rooms {
            existing.rooms.insert(r.id.clone(), r.clone());
        }
        let second = plan(&a, &existing);
        assert!(second.batch.users.is_empty() && second.batch.rooms.is_empty());
        let ids = |p: &Plan| p.batch.messages.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&first), ids(&second));
        assert_eq!(first.batch.members, second.batch.members);
    }

    #[test]
    fn taken_names_get_a_suffix_and_matching_emails_link() {
        let mut existing = Existing::default();
        existing.usernames.insert("bob".into());
        existing.room_names.insert("general".into());
        let alice = User {
            id: UserId::from("existing-alice"),
            username: "alice2".into(),
            name: "Alice".into(),
            email: Some("A@x.org".into()),
            kind: UserKind::User,
            roles: vec![Role::User],
            active: true,
            created_at: 0,
            updated_at: 0,
        };
        existing.by_email.insert("a@x.org".into(), alice.clone());
        let p = plan(&archive(), &existing);
        assert_eq!(p.batch.users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["bob-slack"]);
        assert_eq!(p.users_linked, 1);
        assert_eq!(p.batch.rooms[0].name.as_deref(), Some("general-slack"));
        let root = &p.batch.messages[0];
        assert_eq!(root.u.id, alice.id);
        assert_eq!(root.msg, "root @bob-slack");
    }

    #[test]
    fn names_are_sanitized_and_candidates_bounded() {
        assert_eq!(sanitize_name("général chat", 64, "C1"), "g_n_ral_chat");
        assert_eq!(sanitize_name("日本", 64, "C1X"), "C1X");
        let c = name_candidates(&"x".repeat(64));
        assert!(c.iter().all(|n| n.len() <= 64));
        assert_eq!(c.len(), 10);
        assert_eq!(emoji_name("tada"), ":tada:");
        assert_eq!(emoji_name("flag.us"), ":flag_us:");
        assert_eq!(emoji_name("$x"), ":x:");
        assert_eq!(emoji_name("a\u{7}b c"), ":abc:");
    }
}
