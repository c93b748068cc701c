//! The fan-out path: the interest table, sharded and locked, and the queues
//! of the welcomed links it routes to.
//!
//! Nothing here awaits, and no lock is held across an `.await` (there is none
//! to hold it across): a publish takes one interest shard's lock to copy out
//! its targets, then the link registry's read lock to push the encoded frame
//! onto each target's queue with `try_send`. The two locks are never held
//! together. A full queue never blocks the publisher: that link is told to
//! close as a slow link, and everyone else still gets the message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::interest::{Interest, LinkId};
use crate::stats::Closure;

/// Interest shards: publishes on channels in different shards never contend.
const SHARDS: usize = 16;

/// Why a link was told to stop, set once by whoever stops it first.
#[derive(Debug, Default)]
pub struct Kill {
    /// 0: not killed; otherwise 1 + the `Closure` index, or `WRITE_FAILED`.
    reason: AtomicU8,
    token: CancellationToken,
}

const WRITE_FAILED: u8 = u8::MAX;

/// Why a link's tasks were told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// The broker closes the link (counted under this closure).
    Closure(Closure),
    /// Writing to the peer failed: it is gone, nothing to count.
    WriteFailed,
}

impl Kill {
    fn set(&self, code: u8) -> bool {
        let first = self.reason.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok();
        self.token.cancel();
        first
    }

    /// Stops the link for `why`; returns false if it was already stopped.
    pub fn close(&self, why: Closure) -> bool {
        let i = Closure::ALL.iter().position(|c| *c == why).unwrap_or(0);
        self.set(i as u8 + 1)
    }

    pub fn write_failed(&self) {
        self.set(WRITE_FAILED);
    }

    /// Stops the link's writer without a reason (the link ended normally and
    /// its writer had no time left to flush).
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// Resolves once the link was told to stop.
    pub async fn killed(&self) {
        self.token.cancelled().await;
    }

    #[must_use]
    pub fn reason(&self) -> Option<KillReason> {
        match self.reason.load(Ordering::Acquire) {
            0 => None,
            WRITE_FAILED => Some(KillReason::WriteFailed),
            i => Closure::ALL.get(usize::from(i) - 1).copied().map(KillReason::Closure),
        }
    }
}

/// How the router and the link's own reader reach one link's writer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LinkHandle {
    pub id: LinkId,
    tx: mpsc::Sender<Bytes>,
    pub kill: Arc<Kill>,
}

impl LinkHandle {
    /// A handle and the receiving end of its queue of `capacity` frames.
    #[must_use]
    pub fn new(id: LinkId, capacity: usize) -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { id, tx, kill: Arc::new(Kill::default()) }, rx)
    }

    /// Queues one encoded frame without waiting. A full queue stops the link
    /// as a slow link and returns false; so does a link that is gone.
    pub fn push(&self, frame: Bytes) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kill.close(Closure::SlowLink);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The interest table and the registry of welcomed links.
#[derive(Debug)]
pub struct Router {
    shards: Box<[Mutex<Interest>]>,
    links: RwLock<HashMap<LinkId, LinkHandle>>,
}

impl Default for Router {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), links: RwLock::default() }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under the lock cannot leave `Interest` half-updated in a way
    // that matters more than stopping the fan-out would.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Router {
    fn shard(&self, channel: &str) -> &Mutex<Interest> {
        &self.shards[(protocol::hash::channel_hash(channel) % SHARDS as u64) as usize]
    }

    /// Makes a welcomed link reachable by publishes.
    pub fn add_link(&self, handle: LinkHandle) {
        self.links.write().unwrap_or_else(PoisonError::into_inner).insert(handle.id, handle);
    }

    /// Forgets a link and all its interest. Returns how many channels it had.
    pub fn remove_link(&self, id: LinkId) -> usize {
        self.links.write().unwrap_or_else(PoisonError::into_inner).remove(&id);
        self.shards.iter().map(|s| lock(s).remove_link(id)).sum()
    }

    pub fn subscribe(&self, id: LinkId, channel: &str) -> bool {
        lock(self.shard(channel)).subscribe(id, channel)
    }

    pub fn unsubscribe(&self, id: LinkId, channel: &str) -> bool {
        lock(self.shard(channel)).unsubscribe(id, channel)
    }

    /// The links interested in `channel`, copied out of the shard.
    #[must_use]
    pub fn targets(&self, channel: &str) -> Vec<LinkId> {
        lock(self.shard(channel)).targets(channel).collect()
    }

    /// Pushes `frame` onto the queue of each of `targets` still registered.
    /// Returns how many queues took it.
    pub fn deliver(&self, targets: &[LinkId], frame: &Bytes) -> usize {
        let links = self.links.read().unwrap_or_else(PoisonError::into_inner);
        targets.iter().filter_map(|id| links.get(id)).filter(|h| h.push(frame.clone())).count()
    }

    /// Channels with at least one interested link.
    #[must_use]
    pub fn channels(&self) -> usize {
        self.shards.iter().map(|s| lock(s).channels()).sum()
    }

    /// (link, channel) pairs.
    #[must_use]
    pub fn subscriptions(&self) -> usize {
        self.shards.iter().map(|s| lock(s).subscriptions()).sum()
    }

    /// Welcomed links registered.
    #[must_use]
    pub fn links(&self) -> usize {
        self.links.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reaches_each_interested_queue_once_and_no_other() {
        let r = Router::default();
        let (a, mut ra) = LinkHandle::new(LinkId(1), 4);
        let (b, mut rb) = LinkHandle::new(LinkId(2), 4);
        let (c, mut rc) = LinkHandle::new(LinkId(3), 4);
        for h in [a, b, c] {
            r.add_link(h);
        }
        r.subscribe(LinkId(1), "x");
        r.subscribe(LinkId(2), "x");
        r.subscribe(LinkId(3), "y");
        let frame = Bytes::from_static(b"frame");
        assert_eq!(r.deliver(&r.targets("x"), &frame), 2);
        assert_eq!(ra.try_recv().unwrap(), frame);
        assert_eq!(rb.try_recv().unwrap(), frame);
        assert!(ra.try_recv().is_err() && rb.try_recv().is_err() && rc.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_stops_that_link_as_slow_and_not_the_others() {
        let r = Router::default();
        let (slow, _rs) = LinkHandle::new(LinkId(1), 1);
        let (fast, mut rf) = LinkHandle::new(LinkId(2), 8);
        let slow_kill = slow.kill.clone();
        r.add_link(slow);
        r.add_link(fast);
        r.subscribe(LinkId(1), "x");
        r.subscribe(LinkId(2), "x");
        let frame = Bytes::from_static(b"f");
        assert_eq!(r.deliver(&r.targets("x"), &frame), 2);
        assert_eq!(r.deliver(&r.targets("x"), &frame), 1);
        assert_eq!(slow_kill.reason(), Some(KillReason::Closure(Closure::SlowLink)));
        assert!(rf.try_recv().is_ok() && rf.try_recv().is_ok());
    }

    #[test]
    fn a_removed_link_gets_nothing_and_its_interest_is_gone() {
        let r = Router::default();
        let (a, mut ra) = LinkHandle::new(LinkId(1), 4);
        r.add_link(a);
        for c in ["x", "y", "z"] {
            r.subscribe(LinkId(1), c);
        }
        assert_eq!(r.subscriptions(), 3);
        assert_eq!(r.remove_link(LinkId(1)), 3);
        assert_eq!(r.channels(), 0);
        assert_eq!(r.links(), 0);
        assert_eq!(r.deliver(&[LinkId(1)], &Bytes::from_static(b"f")), 0);
        assert!(ra.try_recv().is_err());
    }

    #[test]
    fn the_first_kill_reason_wins() {
        let k = Kill::default();
        assert!(k.close(Closure::LinkTimeout));
        assert!(!k.close(Closure::SlowLink));
        k.write_failed();
        assert_eq!(k.reason(), Some(KillReason::Closure(Closure::LinkTimeout)));
    }
}
