//! Rate limits of §7.1 as a pure data structure: token buckets keyed by user, username or address, with
//! the clock passed in (milliseconds), so the rules are tested without sleeping.
//!
//! A bucket holds up to `burst` tokens and gains `refill` tokens every `per_ms` milliseconds
//! (continuously, not in steps). An action takes one token; an empty bucket refuses with the time until
//! the next token. A key whose bucket has refilled completely is forgotten, because a full bucket and no
//! bucket mean the same; that keeps the table to the keys that acted recently, and at most
//! [`KeyedLimiter::max_keys`] of them (see [`KeyedLimiter::take`] for what happens beyond).
//!
//! Scope: the state lives in the process that calls it (each frontend), so a cluster of N frontends
//! lets a client that spreads its requests over every node do up to N times the configured rate. That is
//! the accepted approximation: a shared counter would put a store round trip on every message.

use std::collections::HashMap;
use std::hash::Hash;

use crate::ids::Millis;

/// `refill` tokens every `per_ms` milliseconds, at most `burst` saved up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub refill: u32,
    pub per_ms: u32,
    pub burst: u32,
}

impl Rate {
    /// No limit at all (a rate of 0 tokens, or a burst of 0, turns a limit off).
    pub fn is_off(&self) -> bool {
        self.refill == 0 || self.per_ms == 0 || self.burst == 0
    }

    /// Tokens gained per millisecond.
    fn per_milli(&self) -> f64 {
        f64::from(self.refill) / f64::from(self.per_ms)
    }
}

/// Refused: try again in `retry_after_ms` milliseconds (at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Millis,
}

impl Bucket {
    /// Tokens at `now` (time never runs backwards here: an earlier `now` counts as no time passing).
    fn level(&self, rate: &Rate, now: Millis) -> f64 {
        let elapsed = now.saturating_sub(self.at).max(0) as f64;
        (self.tokens + elapsed * rate.per_milli()).min(f64::from(rate.burst))
    }
}

/// Token buckets by key, bounded to `max_keys` entries.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        KeyedLimiter { rate, max_keys: max_keys.max(1), buckets: HashMap::new() }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Changes the rate (a settings change); saved-up tokens are kept, capped at the new burst.
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = rate;
    }

    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Would an action by `key` be allowed at `now`? Takes nothing.
    pub fn check(&self, key: &K, now: Millis) -> Result<(), Limited> {
        if self.rate.is_off() {
            return Ok(());
        }
        match self.buckets.get(key) {
            Some(b) => self.verdict(b.level(&self.rate, now)),
            None => Ok(()),
        }
    }

    /// One action by `key` at `now`: takes a token, or refuses (and takes nothing).
    ///
    /// When the table is full, buckets that have refilled are dropped first; if every tracked key is
    /// still limited, the bucket of some other key is dropped to make room. That forgets one key's
    /// debt (its next actions start with a full bucket) rather than refusing a newcomer or growing
    /// without bound; reaching it takes `max_keys` distinct keys acting within one refill period.
    pub fn take(&mut self, key: &K, now: Millis) -> Result<(), Limited> {
        if self.rate.is_off() {
            return Ok(());
        }
        let rate = self.rate;
        let level = match self.buckets.get(key) {
            Some(b) => b.level(&rate, now),
            None => {
                if self.buckets.len() >= self.max_keys {
                    self.make_room(now);
                }
                f64::from(rate.burst)
            }
        };
        self.verdict(level)?;
        self.buckets.insert(key.clone(), Bucket { tokens: level - 1.0, at: now });
        Ok(())
    }

    fn verdict(&self, level: f64) -> Result<(), Limited> {
        if level >= 1.0 {
            return Ok(());
        }
        let wait = ((1.0 - level) / self.rate.per_milli()).ceil();
        Err(Limited { retry_after_ms: (wait as u64).max(1) })
    }

    /// Forgets the buckets that are full again at `now`; if none is, forgets one other.
    fn make_room(&mut self, now: Millis) {
        let rate = self.rate;
        let burst = f64::from(rate.burst);
        self.buckets.retain(|_, b| b.level(&rate, now) < burst);
        if self.buckets.len() >= self.max_keys {
            if let Some(k) = self.buckets.keys().next().cloned() {
                self.buckets.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_PER_SECOND: Rate = Rate { refill: 5, per_ms: 1000, burst: 5 };

    #[test]
    fn a_burst_is_allowed_then_the_next_action_waits_for_a_token() {
        let mut l = KeyedLimiter::new(FIVE_PER_SECOND, 100);
        for _ in 0..5 {
            l.take(&"alice", 1_000).unwrap();
        }
        let refused = l.take(&"alice", 1_000).unwrap_err();
        assert_eq!(refused.retry_after_ms, 200, "one token every 200 ms");
        assert_eq!(l.take(&"alice", 1_100).unwrap_err().retry_after_ms, 100);
        l.take(&"alice", 1_200).unwrap();
        assert!(l.take(&"alice", 1_200).is_err());
    }

    #[test]
    fn a_refused_action_takes_nothing() {
        let mut l = KeyedLimiter::new(FIVE_PER_SECOND, 100);
        for _ in 0..5 {
            l.take(&"a", 0).unwrap();
        }
        for _ in 0..100 {
            assert!(l.take(&"a", 0).is_err());
        }
        l.take(&"a", 200).unwrap();
    }

    #[test]
    fn keys_are_independent_and_check_does_not_consume() {
        let mut l = KeyedLimiter::new(Rate { refill: 1, per_ms: 10_000, burst: 2 }, 100);
        l.take(&"a", 0).unwrap();
        l.take(&"a", 0).unwrap();
        assert_eq!(l.check(&"a", 0), Err(Limited { retry_after_ms: 10_000 }));
        assert_eq!(l.check(&"b", 0), Ok(()));
        for _ in 0..10 {
            l.check(&"b", 0).unwrap();
        }
        l.take(&"b", 0).unwrap();
        l.take(&"b", 0).unwrap();
        assert!(l.take(&"b", 0).is_err());
    }

    #[test]
    fn saved_tokens_never_exceed_the_burst() {
        let mut l = KeyedLimiter::new(FIVE_PER_SECOND, 100);
        l.take(&"a", 0).unwrap();
        // An hour idle still allows only `burst` in a row.
        let later = 3_600_000;
        for _ in 0..5 {
            l.take(&"a", later).unwrap();
        }
        assert!(l.take(&"a", later).is_err());
    }

    #[test]
    fn a_clock_going_backwards_grants_nothing() {
        let mut l = KeyedLimiter::new(FIVE_PER_SECOND, 100);
        for _ in 0..5 {
            l.take(&"a", 10_000).unwrap();
        }
        assert!(l.take(&"a", 0).is_err());
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let mut l = KeyedLimiter::new(Rate { refill: 0, per_ms: 1000, burst: 5 }, 1);
        for i in 0..1000 {
            l.take(&i, 0).unwrap();
        }
        assert!(l.is_empty(), "an unlimited limiter tracks nothing");
    }

    #[test]
    fn the_table_is_bounded_and_drops_refilled_keys_first() {
        let mut l = KeyedLimiter::new(Rate { refill: 1, per_ms: 1_000, burst: 1 }, 3);
        l.take(&1, 0).unwrap();
        l.take(&2, 0).unwrap();
        l.take(&3, 500).unwrap();
        // At 1,000 ms keys 1 and 2 have refilled (forgettable); 3 has not.
        l.take(&4, 1_000).unwrap();
        assert_eq!(l.len(), 2);
        assert!(l.take(&3, 1_000).is_err(), "a limited key is kept while others can go");
        // Full of limited keys: one is dropped, the table never grows past its bound.
        l.take(&5, 1_000).unwrap();
        l.take(&6, 1_000).unwrap();
        assert!(l.len() <= 3);
        for k in 10..1_000 {
            l.take(&k, 1_000).unwrap();
        }
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn a_new_rate_applies_to_saved_tokens() {
        let mut l = KeyedLimiter::new(Rate { refill: 10, per_ms: 1_000, burst: 10 }, 10);
        l.take(&"a", 0).unwrap();
        l.set_rate(Rate { refill: 1, per_ms: 1_000, burst: 2 });
        l.take(&"a", 0).unwrap();
        l.take(&"a", 0).unwrap();
        assert!(l.take(&"a", 0).is_err(), "capped at the new burst");
        assert_eq!(l.rate().burst, 2);
    }
}
