//! Presence (§0.9, §1.3, §4.6) as pure data structures: no clock (callers pass `now`), no network.
//!
//! - [`LocalConnections`]: one frontend's live sockets, each with the status its client reported
//!   (`online` at login, `away` from the client's idle detection), folded into per-user [`Counts`].
//! - [`Aggregate`]: every frontend's per-user counts, each frontend under a **lease**. A frontend renews
//!   its lease with every report it sends (deltas on change, a full snapshot every heartbeat); a frontend
//!   that falls silent (crashed, partitioned) loses all its entries when the lease runs out, so its users
//!   do not stay online forever. A snapshot is sent in chunks tagged with a new `epoch`; the chunk marked
//!   `end` drops that frontend's entries from older epochs (users no longer connected there), which also
//!   repairs a lost delta.
//! - The user's status: [`effective`] combines the connection status (any `online` ⇒ online, else any
//!   `away` ⇒ away, else offline) with the [`Manual`] status the user chose (`busy`/`away` override,
//!   `offline` = invisible, `online` = automatic).
//!
//! Manual statuses travel with the reports and keep the newest by `at`, so a frontend that learns of a
//! user late (new frontend, lost message) converges without reading the store.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::ids::{Millis, UserId};
use crate::limits::check_chars;
use crate::Result;

/// Longest status text (`statusText`) in characters.
pub const MAX_STATUS_TEXT_CHARS: usize = 120;

/// A user's status, with Rocket.Chat's wire codes (0 offline, 1 online, 2 away, 3 busy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Offline,
    Online,
    Away,
    Busy,
}

impl Status {
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Status::Offline => 0,
            Status::Online => 1,
            Status::Away => 2,
            Status::Busy => 3,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Offline => "offline",
            Status::Online => "online",
            Status::Away => "away",
            Status::Busy => "busy",
        }
    }

    /// Accepts the names and RC's `invisible` (= offline).
    #[must_use]
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "offline" | "invisible" => Some(Status::Offline),
            "online" => Some(Status::Online),
            "away" => Some(Status::Away),
            "busy" => Some(Status::Busy),
            _ => None,
        }
    }
}

/// The status a user chose (`statusDefault`, `statusText`), with when it was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manual {
    pub status: Status,
    #[serde(default)]
    pub text: String,
    pub at: Millis,
}

impl Manual {
    /// Checks the text length.
    pub fn validate(&self) -> Result<()> {
        check_chars("message", &self.text, MAX_STATUS_TEXT_CHARS)
    }
}

/// Live connections of one user on one frontend, by reported status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub online: u32,
    pub away: u32,
}

impl Counts {
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.online == 0 && self.away == 0
    }

    fn add(self, other: Counts) -> Counts {
        Counts { online: self.online.saturating_add(other.online), away: self.away.saturating_add(other.away) }
    }

    /// Any online ⇒ online, else any away ⇒ away, else offline.
    #[must_use]
    pub fn connection_status(self) -> Status {
        if self.online > 0 {
            Status::Online
        } else if self.away > 0 {
            Status::Away
        } else {
            Status::Offline
        }
    }
}

/// The user status (§4.6 step 2): offline without a live connection, else the manual status unless it
/// is `online` (automatic), else the connection status. A manual `offline` is "invisible".
#[must_use]
pub fn effective(connection: Status, manual: Option<&Manual>) -> Status {
    if connection == Status::Offline {
        return Status::Offline;
    }
    match manual.map(|m| m.status) {
        None | Some(Status::Online) => connection,
        Some(chosen) => chosen,
    }
}

/// What a connection reports: online (active) or away (idle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnStatus {
    Online,
    Away,
}

/// One frontend's sockets and their users.
#[derive(Debug, Default)]
pub struct LocalConnections {
    sockets: HashMap<u64, (UserId, ConnStatus)>,
    users: HashMap<UserId, Counts>,
}

impl LocalConnections {
    fn bump(&mut self, uid: &UserId, status: ConnStatus, up: bool) {
        let c = self.users.entry(uid.clone()).or_default();
        let field = match status {
            ConnStatus::Online => &mut c.online,
            ConnStatus::Away => &mut c.away,
        };
        *field = if up { field.saturating_add(1) } else { field.saturating_sub(1) };
        if c.is_empty() {
            self.users.remove(uid);
        }
    }

    /// Socket `key` is now authenticated as `uid` (`None`: not at all, or closed). A socket that stays
    /// with the same user keeps its status; a new one starts online. Returns the users whose counts
    /// changed.
    pub fn set_user(&mut self, key: u64, uid: Option<&UserId>) -> Vec<UserId> {
        match (self.sockets.get(&key), uid) {
            (Some((old, _)), Some(new)) if old == new => return Vec::new(),
            (None, None) => return Vec::new(),
            _ => {}
        }
        let mut changed = Vec::new();
        if let Some((old, status)) = self.sockets.remove(&key) {
            self.bump(&old, status, false);
            changed.push(old);
        }
        if let Some(uid) = uid {
            self.sockets.insert(key, (uid.clone(), ConnStatus::Online));
            self.bump(uid, ConnStatus::Online, true);
            changed.push(uid.clone());
        }
        changed
    }

    /// The client of socket `key` reports `status`. Returns its user if that changed the counts.
    pub fn set_status(&mut self, key: u64, status: ConnStatus) -> Option<UserId> {
        let (uid, old) = self.sockets.get(&key).cloned()?;
        if old == status {
            return None;
        }
        self.bump(&uid, old, false);
        self.bump(&uid, status, true);
        self.sockets.insert(key, (uid.clone(), status));
        Some(uid)
    }

    /// Drops the sockets for which `open` is false; returns the users whose counts changed.
    pub fn retain(&mut self, open: impl Fn(u64) -> bool) -> Vec<UserId> {
        let closed: Vec<u64> = self.sockets.keys().copied().filter(|k| !open(*k)).collect();
        let mut changed = Vec::new();
        for key in closed {
            changed.extend(self.set_user(key, None));
        }
        changed
    }

    /// This user's counts here (zero when not connected).
    #[must_use]
    pub fn counts(&self, uid: &UserId) -> Counts {
        self.users.get(uid).copied().unwrap_or_default()
    }

    /// Every connected user with counts.
    pub fn users(&self) -> impl Iterator<Item = (&UserId, Counts)> {
        self.users.iter().map(|(u, c)| (u, *c))
    }

    #[must_use]
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

/// One user's entry in a frontend's report. `counts` zero = no longer connected there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReport {
    pub uid: UserId,
    #[serde(flatten)]
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<Manual>,
}

/// A frontend's report (a delta, or one chunk of a snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub node: String,
    pub epoch: u64,
    /// Last chunk of the snapshot of `epoch`: entries of older epochs are gone.
    #[serde(default)]
    pub end: bool,
    pub users: Vec<UserReport>,
}

#[derive(Debug, Default)]
struct NodeEntry {
    expires_at: Millis,
    /// Per user: counts and the epoch they were last reported in.
    users: HashMap<UserId, (Counts, u64)>,
}

/// Users whose status changed, with the new status.
pub type Changes = Vec<(UserId, Status)>;

/// The cluster-wide view one frontend keeps: every frontend's counts under a lease, and manual statuses.
#[derive(Debug)]
pub struct Aggregate {
    own: String,
    lease: Millis,
    nodes: HashMap<String, NodeEntry>,
    manual: HashMap<UserId, Manual>,
}

impl Aggregate {
    /// The view of frontend `own` (whose entries never expire); other frontends' entries live `lease`
    /// milliseconds past their latest report.
    #[must_use]
    pub fn new(own: impl Into<String>, lease: Millis) -> Aggregate {
        Aggregate { own: own.into(), lease, nodes: HashMap::new(), manual: HashMap::new() }
    }

    fn counts(&self, uid: &UserId) -> Counts {
        self.nodes.values().filter_map(|n| n.users.get(uid)).fold(Counts::default(), |acc, (c, _)| acc.add(*c))
    }

    /// The user's status now.
    #[must_use]
    pub fn status(&self, uid: &UserId) -> Status {
        effective(self.counts(uid).connection_status(), self.manual.get(uid))
    }

    /// The manual status known for a connected user.
    #[must_use]
    pub fn manual(&self, uid: &UserId) -> Option<&Manual> {
        self.manual.get(uid)
    }

    /// Records a manual status unless a newer one is known; returns whether it was taken.
    fn take_manual(&mut self, uid: &UserId, m: Manual) -> bool {
        match self.manual.get(uid) {
            Some(old) if old.at > m.at || *old == m => false,
            _ => {
                self.manual.insert(uid.clone(), m);
                true
            }
        }
    }

    /// Runs `f`, then reports the users in `touched` whose status changed, and forgets manual statuses
    /// of users no longer connected anywhere (they are reloaded with the next login).
    fn tracking(&mut self, touched: &[UserId], f: impl FnOnce(&mut Self)) -> Changes {
        let before: Vec<Status> = touched.iter().map(|u| self.status(u)).collect();
        f(self);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (uid, old) in touched.iter().zip(before) {
            if !seen.insert(uid) {
                continue;
            }
            let new = self.status(uid);
            if new != old {
                out.push((uid.clone(), new));
            }
            if self.counts(uid).is_empty() {
                self.manual.remove(uid);
            }
        }
        out
    }

    /// Applies a frontend's report (its own included) received at `now`.
    pub fn report(&mut self, r: Report, now: Millis) -> Changes {
        let mut touched: Vec<UserId> = r.users.iter().map(|u| u.uid.clone()).collect();
        if r.end {
            if let Some(n) = self.nodes.get(&r.node) {
                touched.extend(n.users.iter().filter(|(_, (_, e))| *e < r.epoch).map(|(u, _)| u.clone()));
            }
        }
        let lease = self.lease;
        self.tracking(&touched, |agg| {
            for u in &r.users {
                if let Some(m) = &u.manual {
                    agg.take_manual(&u.uid, m.clone());
                }
            }
            let node = agg.nodes.entry(r.node).or_default();
            node.expires_at = now.saturating_add(lease);
            for u in r.users {
                if u.counts.is_empty() {
                    node.users.remove(&u.uid);
                } else {
                    node.users.insert(u.uid, (u.counts, r.epoch));
                }
            }
            if r.end {
                node.users.retain(|_, (_, e)| *e >= r.epoch);
            }
        })
    }

    /// A manual status chosen now; `uid` may be connected anywhere.
    pub fn set_manual(&mut self, uid: &UserId, m: Manual) -> Changes {
        self.tracking(std::slice::from_ref(uid), |agg| {
            agg.take_manual(uid, m);
        })
    }

    /// Drops the frontends whose lease ran out before `now` (never this frontend itself).
    pub fn expire(&mut self, now: Millis) -> Changes {
        let own = self.own.clone();
        let dead: Vec<String> =
            self.nodes.iter().filter(|(n, e)| **n != own && e.expires_at < now).map(|(n, _)| n.clone()).collect();
        if dead.is_empty() {
            return Vec::new();
        }
        let touched: Vec<UserId> =
            dead.iter().filter_map(|n| self.nodes.get(n)).flat_map(|e| e.users.keys().cloned()).collect();
        self.tracking(&touched, |agg| {
            for n in &dead {
                agg.nodes.remove(n);
            }
        })
    }

    /// Frontends with entries (this one included once it reported).
    #[must_use]
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> UserId {
        UserId::from(s)
    }

    fn rep(node: &str, epoch: u64, end: bool, users: &[(&str, u32, u32)]) -> Report {
        Report {
            node: node.into(),
            epoch,
            end,
            users: users
                .iter()
                .map(|(u, on, away)| UserReport {
                    uid: uid(u),
                    counts: Counts { online: *on, away: *away },
                    manual: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_connection_status_is_the_best_of_the_connections_and_a_manual_status_overrides_it() {
        assert_eq!(Counts { online: 1, away: 3 }.connection_status(), Status::Online);
        assert_eq!(Counts { online: 0, away: 1 }.connection_status(), Status::Away);
        assert_eq!(Counts::default().connection_status(), Status::Offline);
        let m = |status| Manual { status, text: String::new(), at: 1 };
        assert_eq!(effective(Status::Online, Some(&m(Status::Busy))), Status::Busy);
        assert_eq!(effective(Status::Online, Some(&m(Status::Away))), Status::Away);
        assert_eq!(effective(Status::Away, Some(&m(Status::Online))), Status::Away, "online = automatic");
        assert_eq!(effective(Status::Online, Some(&m(Status::Offline))), Status::Offline, "invisible");
        assert_eq!(effective(Status::Offline, Some(&m(Status::Busy))), Status::Offline, "no connection");
        assert_eq!(Status::parse("invisible"), Some(Status::Offline));
        assert_eq!([Status::Offline, Status::Online, Status::Away, Status::Busy].map(Status::code), [0, 1, 2, 3]);
    }

    #[test]
    fn local_connections_count_sockets_per_user_and_status() {
        let mut l = LocalConnections::default();
        assert_eq!(l.set_user(1, Some(&uid("a"))), [uid("a")]);
        assert!(l.set_user(1, Some(&uid("a"))).is_empty(), "same user again changes nothing");
        l.set_user(2, Some(&uid("a")));
        assert_eq!(l.counts(&uid("a")), Counts { online: 2, away: 0 });
        assert_eq!(l.set_status(2, ConnStatus::Away), Some(uid("a")));
        assert_eq!(l.set_status(2, ConnStatus::Away), None);
        assert_eq!(l.counts(&uid("a")), Counts { online: 1, away: 1 });
        assert_eq!(l.set_user(2, Some(&uid("b"))), [uid("a"), uid("b")], "re-login as someone else");
        assert_eq!(l.counts(&uid("a")), Counts { online: 1, away: 0 });
        assert_eq!(l.counts(&uid("b")), Counts { online: 1, away: 0 });
        assert_eq!(l.retain(|k| k != 1), [uid("a")]);
        assert_eq!(l.counts(&uid("a")), Counts::default());
        assert_eq!(l.user_count(), 1);
        assert!(l.set_status(99, ConnStatus::Away).is_none(), "unknown socket");
        assert!(l.set_user(99, None).is_empty());
    }

    #[test]
    fn the_aggregate_sums_frontends_and_reports_only_real_changes() {
        let mut a = Aggregate::new("me", 1000);
        assert_eq!(a.report(rep("me", 1, false, &[("a", 0, 1)]), 0), [(uid("a"), Status::Away)]);
        assert_eq!(a.report(rep("f2", 1, false, &[("a", 1, 0)]), 0), [(uid("a"), Status::Online)]);
        assert!(a.report(rep("f2", 1, false, &[("a", 2, 0)]), 0).is_empty(), "still online");
        assert_eq!(a.report(rep("f2", 1, false, &[("a", 0, 0)]), 0), [(uid("a"), Status::Away)]);
        assert_eq!(a.report(rep("me", 1, false, &[("a", 0, 0)]), 0), [(uid("a"), Status::Offline)]);
        assert_eq!(a.status(&uid("nobody")), Status::Offline);
    }

    #[test]
    fn a_silent_frontend_loses_its_users_when_its_lease_runs_out() {
        let mut a = Aggregate::new("me", 1000);
        a.report(rep("me", 1, false, &[("both", 1, 0)]), 0);
        a.report(rep("f2", 1, false, &[("both", 1, 0), ("only2", 1, 0), ("away2", 0, 1)]), 0);
        assert!(a.expire(1000).is_empty(), "lease still running at its last millisecond");
        a.report(rep("f2", 1, false, &[]), 900); // a heartbeat renews the lease
        assert!(a.expire(1800).is_empty());
        let mut gone = a.expire(1901);
        gone.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        assert_eq!(gone, [(uid("away2"), Status::Offline), (uid("only2"), Status::Offline)]);
        assert_eq!(a.status(&uid("both")), Status::Online, "still connected here");
        assert_eq!(a.nodes(), 1);
        assert!(a.expire(1_000_000).is_empty(), "this frontend's own entries never expire");
    }

    #[test]
    fn the_end_of_a_snapshot_drops_users_missing_from_it() {
        let mut a = Aggregate::new("me", 1000);
        a.report(rep("f2", 1, false, &[("x", 1, 0), ("y", 1, 0)]), 0);
        // Snapshot of epoch 2 in two chunks; "y" left and its delta was lost.
        assert!(a.report(rep("f2", 2, false, &[("x", 1, 0)]), 10).is_empty());
        assert_eq!(a.status(&uid("y")), Status::Online, "not before the last chunk");
        assert_eq!(
            a.report(rep("f2", 2, true, &[("z", 0, 1)]), 10),
            [(uid("z"), Status::Away), (uid("y"), Status::Offline)]
        );
        assert_eq!(a.status(&uid("x")), Status::Online);
    }

    #[test]
    fn manual_statuses_keep_the_newest_and_are_forgotten_with_the_last_connection() {
        let mut a = Aggregate::new("me", 1000);
        let busy = Manual { status: Status::Busy, text: "in a call".into(), at: 5 };
        assert!(a.set_manual(&uid("a"), busy.clone()).is_empty(), "offline users stay offline");
        let mut r = rep("me", 1, false, &[("a", 1, 0)]);
        r.users[0].manual = Some(busy.clone());
        assert_eq!(a.report(r, 0), [(uid("a"), Status::Busy)]);
        let older = Manual { status: Status::Away, text: String::new(), at: 4 };
        assert!(a.set_manual(&uid("a"), older).is_empty(), "an older choice arriving late is ignored");
        assert_eq!(a.manual(&uid("a")), Some(&busy));
        let auto = Manual { status: Status::Online, text: String::new(), at: 6 };
        assert_eq!(a.set_manual(&uid("a"), auto), [(uid("a"), Status::Online)]);
        assert_eq!(a.report(rep("me", 1, false, &[("a", 0, 0)]), 0), [(uid("a"), Status::Offline)]);
        assert!(a.manual(&uid("a")).is_none());
    }

    #[test]
    fn reports_round_trip_as_compact_json() {
        let mut r = rep("f1", 3, true, &[("u1", 2, 1)]);
        r.users[0].manual = Some(Manual { status: Status::Busy, text: "x".into(), at: 9 });
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["users"][0]["online"], 2);
        assert_eq!(v["users"][0]["manual"]["status"], "busy");
        assert_eq!(serde_json::from_value::<Report>(v).unwrap(), r);
    }
}
