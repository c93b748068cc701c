//! Token buckets per key, for the rate bounds of §7.1 that this frontend enforces by itself: typing
//! events per user and room, presence reports per socket, incoming webhook posts per integration.
//! Per frontend, not cluster-wide: a user's sockets usually sit on one frontend, and a bound that is
//! N times looser with N frontends still stops a flood.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// `burst` events at once, then one per `every`; at most `max_keys` keys tracked.
#[derive(Debug)]
pub(crate) struct KeyedBuckets<K> {
    burst: f64,
    every: Duration,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    pub(crate) fn new(burst: u32, every: Duration, max_keys: usize) -> Self {
        Self { burst: f64::from(burst.max(1)), every, max_keys, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key` at `now`; false = over the bound (drop the event).
    pub(crate) fn allow(&self, key: &K, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let per_sec = 1.0 / self.every.as_secs_f64().max(1e-6);
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            // Full buckets carry no information; drop them to make room.
            let (burst, every) = (self.burst, self.every);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < burst
                    && now.saturating_duration_since(b.at) < every * 2
            });
            if buckets.len() >= self.max_keys {
                return false;
            }
        }
        let b = buckets.entry(key.clone()).or_insert(Bucket { tokens: self.burst, at: now });
        b.tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub(crate) fn forget(&self, key: &K) {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let b = KeyedBuckets::new(2, Duration::from_secs(3), 10);
        let t0 = Instant::now();
        assert!(b.allow(&"k", t0));
        assert!(b.allow(&"k", t0));
        assert!(!b.allow(&"k", t0), "burst used up");
        assert!(b.allow(&"other", t0), "keys are independent");
        assert!(!b.allow(&"k", t0 + Duration::from_secs(2)));
        assert!(b.allow(&"k", t0 + Duration::from_secs(4)), "refilled after the interval");
        b.forget(&"k");
        assert!(b.allow(&"k", t0 + Duration::from_secs(4)));
    }

    #[test]
    fn the_key_table_is_bounded() {
        let b = KeyedBuckets::new(1, Duration::from_secs(60), 2);
        let t0 = Instant::now();
        assert!(b.allow(&1, t0));
        assert!(b.allow(&2, t0));
        assert!(!b.allow(&3, t0), "table full of drained buckets: refused");
        assert!(b.allow(&3, t0 + Duration::from_secs(200)), "idle, refilled buckets were dropped");
    }
}
