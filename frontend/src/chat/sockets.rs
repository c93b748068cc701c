//! Which local sockets are authenticated as which chat user and session, so a kick or a revocation
//! reaches them. Entries come from the auth tokens hooks see; sockets that closed are pruned lazily
//! against the node's registry (socket keys are never reused, so a stale entry is only memory).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use ::chat::ids::{SessionId, UserId};
use ::chat::service::Caller;

/// Entries beyond the count at the last prune before the next prune.
const PRUNE_SLACK: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct Sockets {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<u64, Caller>,
    by_user: HashMap<UserId, HashSet<u64>>,
    size_after_prune: usize,
}

impl Inner {
    fn forget(&mut self, key: u64) {
        if let Some(old) = self.by_key.remove(&key) {
            if let Some(keys) = self.by_user.get_mut(&old.uid) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.by_user.remove(&old.uid);
                }
            }
        }
    }
}

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Socket `key` is now authenticated as `caller` (or not at all).
    pub(crate) fn note(&self, key: u64, caller: Option<Caller>) {
        let mut inner = self.lock();
        if inner.by_key.get(&key) == caller.as_ref() {
            return;
        }
        inner.forget(key);
        if let Some(c) = caller {
            inner.by_user.entry(c.uid.clone()).or_default().insert(key);
            inner.by_key.insert(key, c);
        }
    }

    pub(crate) fn of_user(&self, uid: &UserId) -> Vec<u64> {
        self.lock().by_user.get(uid).map(|k| k.iter().copied().collect()).unwrap_or_default()
    }

    pub(crate) fn of_sessions(&self, sessions: &[SessionId]) -> Vec<u64> {
        self.lock().by_key.iter().filter(|(_, c)| sessions.contains(&c.sid)).map(|(k, _)| *k).collect()
    }

    pub(crate) fn needs_prune(&self) -> bool {
        let inner = self.lock();
        inner.by_key.len() > inner.size_after_prune * 2 + PRUNE_SLACK
    }

    /// Drops the sockets for which `open` is false.
    pub(crate) fn prune(&self, open: impl Fn(u64) -> bool) {
        let mut inner = self.lock();
        let closed: Vec<u64> = inner.by_key.keys().copied().filter(|k| !open(*k)).collect();
        for key in closed {
            inner.forget(key);
        }
        inner.size_after_prune = inner.by_key.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(u: &str, s: &str) -> Option<Caller> {
        Some(Caller { uid: UserId::from(u), sid: SessionId::from(s) })
    }

    #[test]
    fn sockets_follow_their_latest_identity_and_are_pruned() {
        let s = Sockets::default();
        s.note(1, caller("u1", "s1"));
        s.note(2, caller("u1", "s2"));
        s.note(3, caller("u2", "s3"));
        let mut keys = s.of_user(&UserId::from("u1"));
        keys.sort_unstable();
        assert_eq!(keys, [1, 2]);
        assert_eq!(s.of_sessions(&[SessionId::from("s3")]), [3]);
        s.note(2, caller("u2", "s4"));
        assert_eq!(s.of_user(&UserId::from("u1")), [1]);
        s.note(1, None);
        assert!(s.of_user(&UserId::from("u1")).is_empty());
        s.prune(|k| k != 3);
        assert_eq!(s.of_user(&UserId::from("u2")), [2]);
        assert!(!s.needs_prune());
    }
}
