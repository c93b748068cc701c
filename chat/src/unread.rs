//! Sequence numbers and unread arithmetic from counters (§5.3). A room keeps two counters: `msg_count`
//! (every message; its value after an increment *is* the new message's `seq`) and `root_count`
//! (timeline messages only, for collapsed-thread unread). A member keeps a snapshot of them taken at
//! "mark read" plus mention counters. Unread is the difference, so posting a message writes the room,
//! the message and the sender's own subscription, never the other members' (except the mentioned).
//!
//! Invariants: `seq` values of a room are strictly increasing and never reused; a member's snapshot never
//! exceeds the room's counters (the `saturating_sub` only guards a corrupt store).

use serde::{Deserialize, Serialize};

use crate::room::RoomType;
use crate::settings::{Settings, UnreadCount};

/// Per-room message sequence number, starting at 1.
pub type Seq = u64;

/// The room's counters (`rooms.msgCount`, `rooms.rootCount`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomCounters {
    /// Every message ever assigned a `seq`; equals the last assigned `seq`.
    pub msg_count: u64,
    /// Timeline (non-thread-only) messages.
    pub root_count: u64,
}

impl RoomCounters {
    /// Assigns the next `seq`. `timeline` is false for thread replies not shown in the channel.
    pub fn assign(&mut self, timeline: bool) -> Seq {
        self.msg_count += 1;
        if timeline {
            self.root_count += 1;
        }
        self.msg_count
    }
}

/// A member's read snapshot (`readMsgCount`, `readRootCount`, `lastReadSeq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadState {
    pub read_msg_count: u64,
    pub read_root_count: u64,
    /// Highest `seq` the member has read up to (for "seen by" and the unread marker).
    pub last_read_seq: Seq,
}

impl ReadState {
    /// Everything up to `room` read: used on join and on mark read.
    pub fn caught_up(room: RoomCounters) -> ReadState {
        ReadState { read_msg_count: room.msg_count, read_root_count: room.root_count, last_read_seq: room.msg_count }
    }

    /// The sender's own message never counts as unread for the sender. If the sender had read everything
    /// before, the read marker moves onto the new message too.
    pub fn advance_own(&mut self, seq: Seq, timeline: bool) {
        self.read_msg_count += 1;
        if timeline {
            self.read_root_count += 1;
        }
        if self.last_read_seq + 1 == seq {
            self.last_read_seq = seq;
        }
    }
}

/// Mention counters on a subscription (`userMentions`, `groupMentions`), reset by mark read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MentionCounts {
    pub user_mentions: u64,
    pub group_mentions: u64,
}

/// Derived unread state of one member in one room (never stored).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unread {
    /// All unread messages, thread replies included.
    pub messages: u64,
    /// Unread timeline messages (collapsed-threads mode).
    pub root_messages: u64,
    pub user_mentions: u64,
    pub group_mentions: u64,
}

impl Unread {
    /// Computes unread from the room's counters and the member's snapshot.
    pub fn compute(room: RoomCounters, read: ReadState, mentions: MentionCounts) -> Unread {
        Unread {
            messages: room.msg_count.saturating_sub(read.read_msg_count),
            root_messages: room.root_count.saturating_sub(read.read_root_count),
            user_mentions: mentions.user_mentions,
            group_mentions: mentions.group_mentions,
        }
    }

    /// The badge number RC shows by default: DMs count every message (`Unread_Count_DM`), channels and
    /// groups only mentions (`Unread_Count`). Threads collapsed: only timeline messages count.
    pub fn badge(&self, t: RoomType, settings: &Settings) -> u64 {
        let mode = if t == RoomType::Direct { settings.unread_count_dm } else { settings.unread_count };
        match mode {
            UnreadCount::AllMessages => self.root_messages,
            UnreadCount::UserAndGroupMentionsOnly => self.user_mentions + self.group_mentions,
            UnreadCount::UserMentionsOnly => self.user_mentions,
            UnreadCount::GroupMentionsOnly => self.group_mentions,
        }
    }

    /// The bold "new activity" flag.
    pub fn alert(&self) -> bool {
        self.messages > 0
    }
}

/// What a client should do with a live event carrying `incoming`, given the last `seq` it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// Next in line: apply.
    InOrder,
    /// Already seen (at-least-once delivery): ignore.
    Duplicate,
    /// Something between is missing: apply and schedule a `message.sync` from `last_seen`.
    Gap { missing: u64 },
}

/// Gap detection of §4.7 step 6.
pub fn check_seq(last_seen: Seq, incoming: Seq) -> SeqCheck {
    if incoming <= last_seen {
        SeqCheck::Duplicate
    } else if incoming == last_seen + 1 {
        SeqCheck::InOrder
    } else {
        SeqCheck::Gap { missing: incoming - last_seen - 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_dense_and_thread_replies_skip_the_root_counter() {
        let mut c = RoomCounters::default();
        assert_eq!(c.assign(true), 1);
        assert_eq!(c.assign(false), 2);
        assert_eq!(c.assign(true), 3);
        assert_eq!(c, RoomCounters { msg_count: 3, root_count: 2 });
    }

    #[test]
    fn unread_goes_up_with_others_messages_and_back_to_zero_on_mark_read() {
        let mut room = RoomCounters::default();
        let mut alice = ReadState::caught_up(room);
        let mut bob = ReadState::caught_up(room);
        for _ in 0..3 {
            let seq = room.assign(true);
            alice.advance_own(seq, true);
        }
        let seq = room.assign(false);
        alice.advance_own(seq, false);
        let none = MentionCounts::default();
        assert_eq!(Unread::compute(room, alice, none).messages, 0);
        assert_eq!(alice.last_read_seq, 4);
        let u = Unread::compute(room, bob, none);
        assert_eq!((u.messages, u.root_messages), (4, 3));
        assert!(u.alert());
        bob = ReadState::caught_up(room);
        assert_eq!(Unread::compute(room, bob, none), Unread::default());
    }

    #[test]
    fn own_message_after_unread_ones_keeps_the_marker() {
        let mut room = RoomCounters::default();
        let mut alice = ReadState::caught_up(room);
        room.assign(true);
        let seq = room.assign(true);
        alice.advance_own(seq, true);
        assert_eq!(alice.last_read_seq, 0);
        assert_eq!(Unread::compute(room, alice, MentionCounts::default()).messages, 1);
    }

    #[test]
    fn badges_follow_rc_defaults() {
        let s = Settings::default();
        let u = Unread { messages: 7, root_messages: 5, user_mentions: 1, group_mentions: 2 };
        assert_eq!(u.badge(RoomType::Direct, &s), 5);
        assert_eq!(u.badge(RoomType::Channel, &s), 3);
        assert_eq!(u.badge(RoomType::Group, &s), 3);
    }

    #[test]
    fn gaps_are_detected() {
        assert_eq!(check_seq(4, 5), SeqCheck::InOrder);
        assert_eq!(check_seq(4, 4), SeqCheck::Duplicate);
        assert_eq!(check_seq(4, 2), SeqCheck::Duplicate);
        assert_eq!(check_seq(4, 8), SeqCheck::Gap { missing: 3 });
    }
}
