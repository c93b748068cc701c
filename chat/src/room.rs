//! Rooms (§1.4) and subscriptions (§1.5), and the membership rules that do not need the permission
//! table: DM keys, the last-owner rule, what a new room looks like. A subscription is the single source
//! of truth for "is a member" (and so for reading a private room).

use serde::{Deserialize, Serialize};

use crate::ids::{Millis, RoomId, UserId};
use crate::limits::{
    check_chars, MAX_DESCRIPTION_CHARS, MAX_DISPLAY_NAME_CHARS, MAX_DM_USERS, MAX_MEMBERS_PER_CALL, MAX_TOPIC_CHARS,
};
use crate::roles::Role;
use crate::unread::{MentionCounts, ReadState, RoomCounters, Unread};
use crate::user::validate_name;
use crate::{ChatError, Result};

/// Room type (`t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoomType {
    /// Public channel.
    #[serde(rename = "c")]
    Channel,
    /// Private group.
    #[serde(rename = "p")]
    Group,
    /// Direct message (1:1 or up to `DirectMesssage_maxUsers` people).
    #[serde(rename = "d")]
    Direct,
}

impl RoomType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomType::Channel => "c",
            RoomType::Group => "p",
            RoomType::Direct => "d",
        }
    }

    pub fn parse(s: &str) -> Option<RoomType> {
        match s {
            "c" => Some(RoomType::Channel),
            "p" => Some(RoomType::Group),
            "d" => Some(RoomType::Direct),
            _ => None,
        }
    }

    /// Private rooms are invisible to non-members (§7.4).
    pub fn is_private(self) -> bool {
        self != RoomType::Channel
    }
}

/// A room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    pub id: RoomId,
    pub t: RoomType,
    /// Slug, unique case-insensitively among channels and groups; `None` for DMs.
    pub name: Option<String>,
    pub fname: String,
    pub topic: String,
    pub description: String,
    pub announcement: String,
    pub creator: UserId,
    /// Sorted participant ids, unique: opening a DM is idempotent.
    pub dm_key: Option<String>,
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub read_only: bool,
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub react_when_read_only: bool,
    /// Readable, no new messages.
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub archived: bool,
    /// New users auto-join.
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub default: bool,
    pub users_count: u64,
    pub counters: RoomCounters,
    pub last_message_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A user's membership of a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub rid: RoomId,
    pub uid: UserId,
    pub username: String,
    pub t: RoomType,
    /// Room roles (`owner`, `moderator`), valid only in this room.
    pub roles: Vec<Role>,
    pub joined_at: Millis,
    /// Shown in the sidebar (DMs can be hidden).
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub open: bool,
    pub read: ReadState,
    pub mentions: MentionCounts,
    #[serde(deserialize_with = "crate::serde_util::lenient_bool")]
    pub favorite: bool,
    pub notify: NotifyLevel,
    /// RC `disableNotifications` (a muted room): no notification from this room at all, mentions included.
    #[serde(default, deserialize_with = "crate::serde_util::lenient_bool")]
    pub disable_notifications: bool,
    /// RC `muteGroupMentions`: `@all` and `@here` do not notify this member.
    #[serde(default, deserialize_with = "crate::serde_util::lenient_bool")]
    pub mute_group_mentions: bool,
    pub updated_at: Millis,
}

impl Subscription {
    /// A new member of `room`, caught up to its counters (earlier history is not unread).
    pub fn new_member(room: &Room, user: &crate::user::User, roles: Vec<Role>, now: Millis) -> Subscription {
        Subscription {
            rid: room.id.clone(),
            uid: user.id.clone(),
            username: user.username.clone(),
            t: room.t,
            roles,
            joined_at: now,
            open: true,
            read: ReadState::caught_up(room.counters),
            mentions: MentionCounts::default(),
            favorite: false,
            notify: NotifyLevel::Default,
            disable_notifications: false,
            mute_group_mentions: false,
            updated_at: now,
        }
    }

    /// Does this member want a `notification` for a message that reaches them because of `cause`?
    /// Muted (`disableNotifications`) or level `nothing`: never. Level `all`: always. Level `mentions`
    /// (and `default`, which is `mentions`): direct messages, mentions of them and replies in their
    /// threads; `@all`/`@here` unless `muteGroupMentions`. RC's `shouldNotifyDesktop` decides the same way.
    pub fn wants_notification(&self, cause: NotifyCause) -> bool {
        if self.disable_notifications {
            return false;
        }
        match self.notify {
            NotifyLevel::Nothing => false,
            NotifyLevel::All => true,
            NotifyLevel::Default | NotifyLevel::Mentions => match cause {
                NotifyCause::Direct | NotifyCause::Mention | NotifyCause::Thread => true,
                NotifyCause::GroupMention => !self.mute_group_mentions,
                NotifyCause::Message => false,
            },
        }
    }

    pub fn is_owner(&self) -> bool {
        self.roles.contains(&Role::Owner)
    }

    /// Unread state against the room's current counters.
    pub fn unread(&self, room: RoomCounters) -> Unread {
        Unread::compute(room, self.read, self.mentions)
    }
}

/// Per-room notification preference (`notify.desktop` etc., collapsed to one level for the MVP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyLevel {
    /// Follow the user's default.
    #[default]
    Default,
    All,
    Mentions,
    Nothing,
}

impl NotifyLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyLevel::Default => "default",
            NotifyLevel::All => "all",
            NotifyLevel::Mentions => "mentions",
            NotifyLevel::Nothing => "nothing",
        }
    }

    pub fn parse(s: &str) -> Option<NotifyLevel> {
        [NotifyLevel::Default, NotifyLevel::All, NotifyLevel::Mentions, NotifyLevel::Nothing]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

/// Why a message could notify a member (the `kind` of the `notification` event, §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotifyCause {
    /// Any message in a room whose member chose level `all`.
    Message,
    /// `@all` or `@here`.
    GroupMention,
    /// A reply in a thread the member started or replied to.
    Thread,
    /// `@username`.
    Mention,
    /// A message in a direct message.
    Direct,
}

impl NotifyCause {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyCause::Message => "message",
            NotifyCause::GroupMention => "all",
            NotifyCause::Thread => "thread",
            NotifyCause::Mention => "mention",
            NotifyCause::Direct => "dm",
        }
    }
}

/// A member's change of their own preferences (`saveNotificationSettings`, `hideRoom`, `openRoom`,
/// `toggleFavorite`); `None` leaves a field unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionPrefs {
    pub notify: Option<NotifyLevel>,
    pub open: Option<bool>,
    pub favorite: Option<bool>,
    pub disable_notifications: Option<bool>,
    pub mute_group_mentions: Option<bool>,
}

impl SubscriptionPrefs {
    pub fn is_empty(&self) -> bool {
        *self == SubscriptionPrefs::default()
    }

    /// Applies the change; returns whether anything changed (`updated_at` is the caller's).
    pub fn apply(&self, sub: &mut Subscription) -> bool {
        let before = sub.clone();
        if let Some(n) = self.notify {
            sub.notify = n;
        }
        if let Some(o) = self.open {
            sub.open = o;
        }
        if let Some(f) = self.favorite {
            sub.favorite = f;
        }
        if let Some(d) = self.disable_notifications {
            sub.disable_notifications = d;
        }
        if let Some(m) = self.mute_group_mentions {
            sub.mute_group_mentions = m;
        }
        *sub != before
    }
}

/// Input for creating a room. Build it with [`NewRoom::channel`], [`NewRoom::group`] or
/// [`NewRoom::direct`], which validate.
#[derive(Clone, Debug)]
pub struct NewRoom {
    pub t: RoomType,
    pub name: Option<String>,
    pub fname: String,
    pub creator: UserId,
    /// Other initial members (the creator is added by the store, as owner for `c`/`p`).
    pub members: Vec<UserId>,
    pub read_only: bool,
    pub dm_key: Option<String>,
}

impl NewRoom {
    /// A public channel.
    pub fn channel(creator: UserId, name: &str, members: Vec<UserId>, read_only: bool) -> Result<NewRoom> {
        Self::named(RoomType::Channel, creator, name, members, read_only)
    }

    /// A private group.
    pub fn group(creator: UserId, name: &str, members: Vec<UserId>, read_only: bool) -> Result<NewRoom> {
        Self::named(RoomType::Group, creator, name, members, read_only)
    }

    fn named(t: RoomType, creator: UserId, name: &str, members: Vec<UserId>, ro: bool) -> Result<NewRoom> {
        validate_name("name", name)?;
        let members = dedup_members(&creator, members)?;
        Ok(NewRoom {
            t,
            name: Some(name.to_owned()),
            fname: name.to_owned(),
            creator,
            members,
            read_only: ro,
            dm_key: None,
        })
    }

    /// A DM between `creator` and `others` (at most `max_users` people in all, the creator included).
    pub fn direct(creator: UserId, others: Vec<UserId>, max_users: usize) -> Result<NewRoom> {
        let members = dedup_members(&creator, others)?;
        if members.is_empty() {
            return Err(ChatError::invalid("userIds", "a direct message needs another participant"));
        }
        let max = max_users.min(MAX_DM_USERS * 4);
        if members.len() + 1 > max {
            return Err(ChatError::TooLong { field: "userIds", limit: max, got: members.len() + 1 });
        }
        let mut all = members.clone();
        all.push(creator.clone());
        let key = dm_key(&all);
        Ok(NewRoom {
            t: RoomType::Direct,
            name: None,
            fname: String::new(),
            creator,
            members,
            read_only: false,
            dm_key: Some(key),
        })
    }
}

fn dedup_members(creator: &UserId, members: Vec<UserId>) -> Result<Vec<UserId>> {
    if members.len() > MAX_MEMBERS_PER_CALL {
        return Err(ChatError::TooLong { field: "members", limit: MAX_MEMBERS_PER_CALL, got: members.len() });
    }
    let mut out: Vec<UserId> = Vec::with_capacity(members.len());
    for m in members {
        crate::ids::validate_id("members", m.as_str())?;
        if &m != creator && !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// The DM key: sorted, de-duplicated participant ids joined by `,`.
pub fn dm_key(participants: &[UserId]) -> String {
    let mut ids: Vec<&str> = participants.iter().map(UserId::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.join(",")
}

/// Editable descriptive fields (`room.update`); `None` leaves a field unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomPatch {
    /// New slug (channels and groups only; unique like at creation: `Conflict` when taken).
    pub name: Option<String>,
    pub fname: Option<String>,
    pub topic: Option<String>,
    pub description: Option<String>,
    pub announcement: Option<String>,
    pub read_only: Option<bool>,
    pub react_when_read_only: Option<bool>,
    pub default: Option<bool>,
}

impl RoomPatch {
    pub fn validate(&self) -> Result<()> {
        if let Some(n) = &self.name {
            validate_name("name", n)?;
        }
        if let Some(f) = &self.fname {
            if f.trim().is_empty() {
                return Err(ChatError::invalid("fname", "must not be empty"));
            }
            check_chars("fname", f, MAX_DISPLAY_NAME_CHARS)?;
        }
        if let Some(t) = &self.topic {
            check_chars("topic", t, MAX_TOPIC_CHARS)?;
        }
        if let Some(d) = &self.description {
            check_chars("description", d, MAX_DESCRIPTION_CHARS)?;
        }
        if let Some(a) = &self.announcement {
            check_chars("announcement", a, MAX_DESCRIPTION_CHARS)?;
        }
        Ok(())
    }
}

/// The last-owner rule (§3, RC `error-you-are-last-owner`): a member holding `owner` may not leave, or
/// drop the role, while they are the room's only owner. `owners` counts owners including `sub`.
pub fn check_owner_handover(sub: &Subscription, owners: u64) -> Result<()> {
    if sub.is_owner() && owners <= 1 {
        return Err(ChatError::LastOwner);
    }
    Ok(())
}

/// Room roles the creator gets: owner of channels and groups, nothing in DMs (DMs have no owners).
pub fn creator_roles(t: RoomType) -> Vec<Role> {
    match t {
        RoomType::Channel | RoomType::Group => vec![Role::Owner],
        RoomType::Direct => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> UserId {
        UserId::from(s)
    }

    fn member(t: RoomType, roles: Vec<Role>) -> Subscription {
        Subscription {
            rid: RoomId::from("r"),
            uid: uid("a"),
            username: "a".into(),
            t,
            roles,
            joined_at: 0,
            open: true,
            read: ReadState::default(),
            mentions: MentionCounts::default(),
            favorite: false,
            notify: NotifyLevel::Default,
            disable_notifications: false,
            mute_group_mentions: false,
            updated_at: 0,
        }
    }

    #[test]
    fn dm_key_is_order_independent() {
        assert_eq!(dm_key(&[uid("b"), uid("a")]), dm_key(&[uid("a"), uid("b")]));
        assert_eq!(dm_key(&[uid("a"), uid("a"), uid("b")]), "a,b");
    }

    #[test]
    fn direct_rooms_are_bounded_and_need_a_peer() {
        assert!(NewRoom::direct(uid("a"), vec![uid("a")], 8).is_err());
        let ok = NewRoom::direct(uid("a"), (1..8).map(|i| uid(&format!("u{i}"))).collect(), 8).unwrap();
        assert_eq!(ok.members.len(), 7);
        let err = NewRoom::direct(uid("a"), (1..9).map(|i| uid(&format!("u{i}"))).collect(), 8).unwrap_err();
        assert!(matches!(err, ChatError::TooLong { limit: 8, got: 9, .. }));
        let dup = NewRoom::direct(uid("b"), vec![uid("a"), uid("a"), uid("b")], 8).unwrap();
        assert_eq!(dup.dm_key.as_deref(), Some("a,b"));
    }

    #[test]
    fn named_rooms_validate_their_name_and_drop_the_creator_from_members() {
        assert!(NewRoom::channel(uid("a"), "bad name", vec![], false).is_err());
        let r = NewRoom::group(uid("a"), "team", vec![uid("a"), uid("b"), uid("b")], true).unwrap();
        assert_eq!(r.members, vec![uid("b")]);
        assert!(r.read_only);
        assert_eq!(creator_roles(RoomType::Group), vec![Role::Owner]);
        assert!(creator_roles(RoomType::Direct).is_empty());
    }

    #[test]
    fn last_owner_must_hand_over() {
        let mut s = member(RoomType::Group, vec![Role::Owner]);
        assert!(matches!(check_owner_handover(&s, 1), Err(ChatError::LastOwner)));
        assert!(check_owner_handover(&s, 2).is_ok());
        s.roles.clear();
        assert!(check_owner_handover(&s, 1).is_ok());
    }

    #[test]
    fn notifications_follow_the_members_level_mute_and_group_mention_choice() {
        let mut s = member(RoomType::Channel, vec![]);
        use NotifyCause::*;
        let wants =
            |s: &Subscription| [Message, GroupMention, Thread, Mention, Direct].map(|c| s.wants_notification(c));
        assert_eq!(wants(&s), [false, true, true, true, true], "default = mentions");
        s.mute_group_mentions = true;
        assert_eq!(wants(&s), [false, false, true, true, true]);
        s.notify = NotifyLevel::All;
        assert_eq!(wants(&s), [true; 5]);
        s.notify = NotifyLevel::Nothing;
        assert_eq!(wants(&s), [false; 5]);
        s.notify = NotifyLevel::All;
        s.disable_notifications = true;
        assert_eq!(wants(&s), [false; 5], "a muted room never notifies");
    }

    #[test]
    fn preference_changes_report_whether_anything_changed() {
        let mut s = member(RoomType::Direct, vec![]);
        assert!(SubscriptionPrefs::default().is_empty());
        assert!(!SubscriptionPrefs { open: Some(true), ..Default::default() }.apply(&mut s));
        let hide = SubscriptionPrefs { open: Some(false), notify: Some(NotifyLevel::Nothing), ..Default::default() };
        assert!(hide.apply(&mut s));
        assert_eq!((s.open, s.notify), (false, NotifyLevel::Nothing));
        assert!(!hide.apply(&mut s));
    }

    #[test]
    fn patches_are_bounded() {
        assert!(RoomPatch { topic: Some("x".repeat(1001)), ..Default::default() }.validate().is_err());
        assert!(RoomPatch { fname: Some("  ".into()), ..Default::default() }.validate().is_err());
        assert!(RoomPatch { fname: Some("Team".into()), ..Default::default() }.validate().is_ok());
    }
}
