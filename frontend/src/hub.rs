//! The local subscription table: which sockets of this node want which channels.
//!
//! Plain data under sharded mutexes; no `.await` ever happens under a lock.
//! `subscribe` and `unsubscribe` report the first and last local subscriber
//! of a channel, which is exactly when a clustered node must add or drop its
//! interest upstream. `publish` hands one shared [`Publication`] to every
//! subscriber's queue without waiting.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::outbox::{Outgoing, Publication, PushError, SessionHandle};

type Shard = HashMap<Arc<str>, HashMap<u64, SessionHandle>>;

/// Channel → local subscribers.
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// The channel had no local subscriber before.
    First,
    Added,
    /// This socket was already subscribed; nothing changed.
    Already,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The channel has no local subscriber left.
    Last,
    Removed,
    /// This socket was not subscribed; nothing changed.
    NotSubscribed,
}

/// What one publish reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fanout {
    pub queued: usize,
    /// Subscribers whose queue was full; they are being closed.
    pub slow: usize,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(64)
    }
}

impl Hub {
    #[must_use]
    pub fn new(shards: usize) -> Self {
        Self { shards: (0..shards.max(1)).map(|_| Mutex::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one(channel) as usize % self.shards.len();
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn subscribe(&self, channel: &str, handle: &SessionHandle) -> Subscribed {
        let mut shard = self.shard(channel);
        let (subs, first) = match shard.get_mut(channel) {
            Some(subs) => (subs, false),
            None => (shard.entry(Arc::from(channel)).or_default(), true),
        };
        if subs.insert(handle.id, handle.clone()).is_some() {
            Subscribed::Already
        } else if first {
            Subscribed::First
        } else {
            Subscribed::Added
        }
    }

    pub fn unsubscribe(&self, channel: &str, socket: u64) -> Unsubscribed {
        let mut shard = self.shard(channel);
        let Some(subs) = shard.get_mut(channel) else {
            return Unsubscribed::NotSubscribed;
        };
        if subs.remove(&socket).is_none() {
            return Unsubscribed::NotSubscribed;
        }
        if subs.is_empty() {
            shard.remove(channel);
            Unsubscribed::Last
        } else {
            Unsubscribed::Removed
        }
    }

    /// Queues the publication to every local subscriber of its channel.
    pub fn publish(&self, publication: &Arc<Publication>) -> Fanout {
        let shard = self.shard(&publication.channel);
        let mut out = Fanout::default();
        if let Some(subs) = shard.get(&*publication.channel) {
            for handle in subs.values() {
                match handle.push(Outgoing::Publication(publication.clone())) {
                    Ok(()) => out.queued += 1,
                    Err(PushError::SlowConsumer) => out.slow += 1,
                    Err(PushError::Closed) => {}
                }
            }
        }
        out
    }

    /// The handle of one subscriber, if it is subscribed.
    #[must_use]
    pub fn subscriber(&self, channel: &str, socket: u64) -> Option<SessionHandle> {
        self.shard(channel).get(channel).and_then(|s| s.get(&socket)).cloned()
    }

    #[must_use]
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.shard(channel).get(channel).map_or(0, HashMap::len)
    }

    /// Every channel with at least one local subscriber.
    #[must_use]
    pub fn channels(&self) -> Vec<Arc<str>> {
        self.shards
            .iter()
            .flat_map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Channels with at least one local subscriber.
    #[must_use]
    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_subscriber_are_reported() {
        let hub = Hub::new(4);
        let (a, _ra, _) = SessionHandle::new(1, 8);
        let (b, _rb, _) = SessionHandle::new(2, 8);
        assert_eq!(hub.subscribe("x", &a), Subscribed::First);
        assert_eq!(hub.subscribe("x", &b), Subscribed::Added);
        assert_eq!(hub.subscribe("x", &a), Subscribed::Already);
        assert_eq!(hub.unsubscribe("x", 1), Unsubscribed::Removed);
        assert_eq!(hub.unsubscribe("x", 1), Unsubscribed::NotSubscribed);
        assert_eq!(hub.unsubscribe("x", 2), Unsubscribed::Last);
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn publish_reaches_each_subscriber_once_with_the_same_publication() {
        let hub = Hub::new(4);
        let (a, mut ra, _) = SessionHandle::new(1, 8);
        let (b, mut rb, _) = SessionHandle::new(2, 8);
        let (c, mut rc, _) = SessionHandle::new(3, 8);
        hub.subscribe("x", &a);
        hub.subscribe("x", &a);
        hub.subscribe("x", &b);
        hub.subscribe("y", &c);
        let p = Publication::new("x".into(), None);
        assert_eq!(hub.publish(&p), Fanout { queued: 2, slow: 0 });
        for rx in [&mut ra, &mut rb] {
            let Ok(Outgoing::Publication(got)) = rx.try_recv() else { panic!("nothing queued") };
            assert!(Arc::ptr_eq(&got, &p));
            assert!(rx.try_recv().is_err());
        }
        assert!(rc.try_recv().is_err());
    }

    #[test]
    fn a_full_subscriber_is_counted_slow_and_others_still_receive() {
        let hub = Hub::new(1);
        let (a, _ra, _) = SessionHandle::new(1, 1);
        let (b, mut rb, _) = SessionHandle::new(2, 8);
        hub.subscribe("x", &a);
        hub.subscribe("x", &b);
        hub.publish(&Publication::new("x".into(), None));
        assert_eq!(hub.publish(&Publication::new("x".into(), None)), Fanout { queued: 1, slow: 1 });
        assert!(rb.try_recv().is_ok() && rb.try_recv().is_ok());
    }
}
