//! Presence across the cluster (§4.6), around the pure [`chat::presence`] structures.
//!
//! Each frontend tracks its own sockets ([`LocalConnections`]) and tells the others over the control
//! channel: a delta whenever a user's counts here change, and a full snapshot every heartbeat (which
//! also renews this frontend's lease). Every frontend keeps the same [`Aggregate`] and, when a user's
//! status changes in it, delivers a `presence` event to **its own** subscribers of `presence/<uid>`
//! only (a local publish). So no event is sent twice, and when a frontend dies each survivor turns that
//! frontend's users offline by itself once the lease runs out, with nobody having to speak for the dead.
//!
//! Control messages (on `sys/internal`): `{type: "presence", report}` ([`Report`]) and
//! `{type: "presence.manual", uid, manual}` when a user chooses a status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::chat::ids::{new_id, now_ms, UserId};
use ::chat::presence::{Aggregate, Changes, ConnStatus, LocalConnections, Manual, Report, Status, UserReport};
use serde_json::{json, Value};

/// Users per control message of a snapshot.
const SNAPSHOT_CHUNK: usize = 500;

/// How often a frontend reports, and how long the others trust its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceTiming {
    pub heartbeat: Duration,
    /// Longer than a few heartbeats, so one lost message does not flap users offline.
    pub lease: Duration,
}

impl Default for PresenceTiming {
    fn default() -> Self {
        PresenceTiming { heartbeat: Duration::from_secs(5), lease: Duration::from_secs(20) }
    }
}

#[derive(Debug)]
pub(crate) struct Presence {
    node_id: String,
    timing: PresenceTiming,
    local: Mutex<LocalConnections>,
    agg: Mutex<Aggregate>,
    epoch: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `presence` event clients get on `presence/<uid>`.
pub(crate) fn presence_event(uid: &UserId, status: Status, manual: Option<&Manual>) -> Value {
    json!({
        "type": "presence", "v": ::chat::service::EVENT_VERSION, "at": now_ms(),
        "uid": uid, "status": status.as_str(), "code": status.code(),
        "statusText": manual.map(|m| m.text.as_str()).unwrap_or_default(),
    })
}

impl Presence {
    pub(crate) fn new(timing: PresenceTiming) -> Self {
        let node_id = new_id();
        let lease = i64::try_from(timing.lease.as_millis()).unwrap_or(i64::MAX);
        Presence {
            agg: Mutex::new(Aggregate::new(node_id.clone(), lease)),
            node_id,
            timing,
            local: Mutex::new(LocalConnections::default()),
            epoch: AtomicU64::new(1),
        }
    }

    pub(crate) fn timing(&self) -> PresenceTiming {
        self.timing
    }

    /// The report of `users`' counts here, applied to our own aggregate at once; returns the status
    /// changes and the control message for the other frontends.
    fn own_delta(&self, local: &LocalConnections, users: Vec<UserId>) -> (Changes, Option<Value>) {
        if users.is_empty() {
            return (Vec::new(), None);
        }
        let mut agg = lock(&self.agg);
        let report = Report {
            node: self.node_id.clone(),
            epoch: self.epoch.load(Ordering::Relaxed),
            end: false,
            users: users
                .into_iter()
                .map(|uid| UserReport { counts: local.counts(&uid), manual: agg.manual(&uid).cloned(), uid })
                .collect(),
        };
        let message = json!({ "type": "presence", "report": report });
        (agg.report(report, now_ms()), Some(message))
    }

    /// Socket `key` is now `uid`'s (or nobody's: logged out, token expired, closed). Returns status
    /// changes, the control message, and the user if it just got its first socket here (its stored
    /// manual status may need loading).
    pub(crate) fn socket_user(&self, key: u64, uid: Option<&UserId>) -> (Changes, Option<Value>, Option<UserId>) {
        let mut local = lock(&self.local);
        let changed = local.set_user(key, uid);
        let first = uid.filter(|u| changed.contains(u) && local.counts(u).online + local.counts(u).away == 1);
        let first = first.filter(|u| lock(&self.agg).manual(u).is_none()).cloned();
        let (changes, message) = self.own_delta(&local, changed);
        (changes, message, first)
    }

    /// The client of socket `key` reports online/away.
    pub(crate) fn socket_status(&self, key: u64, status: ConnStatus) -> (Changes, Option<Value>) {
        let mut local = lock(&self.local);
        let changed: Vec<UserId> = local.set_status(key, status).into_iter().collect();
        self.own_delta(&local, changed)
    }

    /// Drops sockets that closed without the hook noticing (safety net).
    pub(crate) fn retain(&self, open: impl Fn(u64) -> bool) -> (Changes, Option<Value>) {
        let mut local = lock(&self.local);
        let changed = local.retain(open);
        self.own_delta(&local, changed)
    }

    /// A manual status chosen (here or on another frontend), or loaded from the store.
    pub(crate) fn set_manual(&self, uid: &UserId, m: Manual) -> Changes {
        lock(&self.agg).set_manual(uid, m)
    }

    /// Another frontend's report.
    pub(crate) fn on_report(&self, report: Report) -> Changes {
        if report.node == self.node_id {
            return Vec::new(); // our own, applied when it was made
        }
        lock(&self.agg).report(report, now_ms())
    }

    /// Heartbeat: the snapshot messages (a new epoch; the last chunk ends it) and the users whose
    /// frontends went silent.
    pub(crate) fn tick(&self) -> (Changes, Vec<Value>) {
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed) + 1;
        let reports: Vec<Report> = {
            let local = lock(&self.local);
            let agg = lock(&self.agg);
            let users: Vec<UserReport> = local
                .users()
                .map(|(uid, counts)| UserReport { uid: uid.clone(), counts, manual: agg.manual(uid).cloned() })
                .collect();
            let mut chunks: Vec<Vec<UserReport>> = users.chunks(SNAPSHOT_CHUNK).map(<[UserReport]>::to_vec).collect();
            if chunks.is_empty() {
                chunks.push(Vec::new()); // still renews the lease
            }
            let n = chunks.len();
            chunks
                .into_iter()
                .enumerate()
                .map(|(i, users)| Report { node: self.node_id.clone(), epoch, end: i + 1 == n, users })
                .collect()
        };
        let messages = reports.into_iter().map(|r| json!({ "type": "presence", "report": r })).collect();
        (lock(&self.agg).expire(now_ms()), messages)
    }

    /// Current status and manual status of a user, as this frontend sees the cluster.
    pub(crate) fn status(&self, uid: &UserId) -> (Status, Option<Manual>) {
        let agg = lock(&self.agg);
        (agg.status(uid), agg.manual(uid).cloned())
    }

    /// Distinct users with a socket on this frontend.
    pub(crate) fn local_user_count(&self) -> usize {
        lock(&self.local).user_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> UserId {
        UserId::from(s)
    }

    #[test]
    fn two_frontends_converge_through_their_messages_and_a_silent_one_expires() {
        let timing = PresenceTiming { heartbeat: Duration::from_millis(10), lease: Duration::from_millis(30) };
        let (f1, f2) = (Presence::new(timing), Presence::new(timing));
        let deliver = |to: &Presence, m: Value| to.on_report(serde_json::from_value(m["report"].clone()).unwrap());

        let (changes, msg, first) = f1.socket_user(1, Some(&uid("a")));
        assert_eq!(changes, [(uid("a"), Status::Online)]);
        assert_eq!(first, Some(uid("a")), "first socket here: load the stored manual status");
        assert_eq!(deliver(&f2, msg.unwrap()), [(uid("a"), Status::Online)]);

        let (_, msg) = f1.socket_status(1, ConnStatus::Away);
        assert_eq!(deliver(&f2, msg.unwrap()), [(uid("a"), Status::Away)]);

        let (_, msg, first) = f2.socket_user(7, Some(&uid("a")));
        assert_eq!(first, Some(uid("a")), "no manual status known on f2 either: it loads the stored one");
        assert_eq!(deliver(&f1, msg.unwrap()), [(uid("a"), Status::Online)]);
        let (_, msg, first) = f2.socket_user(8, Some(&uid("a")));
        assert_eq!(first, None, "a second socket of the same user loads nothing");
        assert!(deliver(&f1, msg.unwrap()).is_empty(), "still online");

        // f2 falls silent: f1 turns a back to away (its own socket) once the lease ran out.
        std::thread::sleep(Duration::from_millis(50));
        let (changes, snapshot) = f1.tick();
        assert_eq!(changes, [(uid("a"), Status::Away)]);
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0]["report"]["end"], true);

        // f1's socket closes: a delta says so, and f2 (its own socket counted) stays online.
        let (changes, msg, _) = f1.socket_user(1, None);
        assert_eq!(changes, [(uid("a"), Status::Offline)]);
        assert!(deliver(&f2, msg.unwrap()).is_empty(), "f2 still has a's socket");
        assert_eq!(f2.status(&uid("a")).0, Status::Online);
    }
}
