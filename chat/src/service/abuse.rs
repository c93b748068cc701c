//! The rate limits of §7.1 the service enforces itself, so every surface (socket RPCs, REST) gets them:
//! messages per user (`Message_RateLimit_*`, bypassed by `send-many-messages`), searches per user
//! ([`SEARCH_RATE`], bypassed by `api-bypass-rate-limit`), and failed logins per
//! username and address and per address (`Block_Multiple_Failed_Logins_*`). A breach is
//! [`ChatError::TooManyRequests`] with the wait in milliseconds, and nothing is stored.
//!
//! The buckets are [`crate::rate::KeyedLimiter`]s held by this process's [`Service`]: one frontend
//! counts what it sees, so a cluster of N frontends allows up to N times the rate to a client that
//! spreads its requests over all of them (the accepted approximation, see [`crate::rate`]). The rates
//! follow the current settings at every check.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::Service;
use crate::ids::{now_ms, UserId};
use crate::permissions::Permission;
use crate::policy::{Actor, Policy, RoomView};
use crate::rate::{KeyedLimiter, Limited, Rate};
use crate::settings::Settings;
use crate::{ChatError, Result};

/// Users, usernames or addresses tracked per limiter at most (see [`KeyedLimiter::take`]).
pub const MAX_TRACKED_KEYS: usize = 100_000;
/// §7.1: searches per user, 30 a minute (full-text queries are the most expensive reads, and a scraper's
/// tool).
pub const SEARCH_RATE: Rate = Rate { refill: 30, per_ms: 60_000, burst: 30 };

/// The limiters of one service (one frontend process).
#[derive(Debug)]
pub(super) struct AbuseLimits {
    send: Mutex<KeyedLimiter<UserId>>,
    search: Mutex<KeyedLimiter<UserId>>,
    /// Failed logins by (lower-cased username, address); the address is `None` when the surface has none.
    failed_by_user: Mutex<KeyedLimiter<(String, Option<IpAddr>)>>,
    failed_by_ip: Mutex<KeyedLimiter<IpAddr>>,
}

fn send_rate(s: &Settings) -> Rate {
    Rate { refill: s.message_rate_limit_per_second, per_ms: 1_000, burst: s.message_rate_limit_burst }
}

/// `attempts` failures, given back one by one over `minutes`.
fn failure_rate(attempts: u32, minutes: u32) -> Rate {
    Rate { refill: attempts, per_ms: minutes.saturating_mul(60_000), burst: attempts }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn refused(l: Limited) -> ChatError {
    ChatError::TooManyRequests { retry_after_ms: l.retry_after_ms }
}

/// The address part of a surface's `client` string (`ip:port` or a bare ip); anything else is `None`.
pub fn client_ip(client: Option<&str>) -> Option<IpAddr> {
    let c = client?;
    c.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| c.parse::<IpAddr>()).ok()
}

impl AbuseLimits {
    pub(super) fn new(s: &Settings) -> AbuseLimits {
        AbuseLimits {
            send: Mutex::new(KeyedLimiter::new(send_rate(s), MAX_TRACKED_KEYS)),
            search: Mutex::new(KeyedLimiter::new(SEARCH_RATE, MAX_TRACKED_KEYS)),
            failed_by_user: Mutex::new(KeyedLimiter::new(
                failure_rate(s.failed_logins_by_user, s.failed_logins_by_user_minutes),
                MAX_TRACKED_KEYS,
            )),
            failed_by_ip: Mutex::new(KeyedLimiter::new(
                failure_rate(s.failed_logins_by_ip, s.failed_logins_by_ip_minutes),
                MAX_TRACKED_KEYS,
            )),
        }
    }
}

/// The limiter with its rate brought up to date.
fn current<'a, K: Eq + std::hash::Hash + Clone>(
    m: &'a Mutex<KeyedLimiter<K>>,
    rate: Rate,
) -> MutexGuard<'a, KeyedLimiter<K>> {
    let mut l = lock(m);
    if l.rate() != rate {
        l.set_rate(rate);
    }
    l
}

impl Service {
    /// Takes one message from the sender's bucket, unless they hold `send-many-messages`.
    pub(super) fn take_send_token(&self, actor: &Actor, view: RoomView<'_>) -> Result<()> {
        let permissions = self.permissions();
        let settings = self.settings();
        let policy = Policy { permissions: &permissions, settings: &settings };
        if policy.can(actor, Permission::SendManyMessages, Some(view)) {
            return Ok(());
        }
        current(&self.abuse.send, send_rate(&settings)).take(&actor.id, now_ms()).map_err(refused)
    }

    /// Takes one search from the caller's bucket (`api-bypass-rate-limit` holders are not limited).
    pub(super) fn take_search_token(&self, actor: &Actor) -> Result<()> {
        let permissions = self.permissions();
        let settings = self.settings();
        let policy = Policy { permissions: &permissions, settings: &settings };
        if policy.can(actor, Permission::ApiBypassRateLimit, None) {
            return Ok(());
        }
        lock(&self.abuse.search).take(&actor.id, now_ms()).map_err(refused)
    }

    /// Refuses a login attempt while this username (from this address) or this address has used up
    /// its failures. Checked before the password, so a blocked guesser learns nothing.
    pub(super) fn check_login_rate(&self, username: &str, ip: Option<IpAddr>) -> Result<()> {
        let s = self.settings();
        let now = now_ms();
        let key = (username.to_lowercase(), ip);
        let by_user = failure_rate(s.failed_logins_by_user, s.failed_logins_by_user_minutes);
        current(&self.abuse.failed_by_user, by_user).check(&key, now).map_err(refused)?;
        if let Some(ip) = ip {
            let by_ip = failure_rate(s.failed_logins_by_ip, s.failed_logins_by_ip_minutes);
            current(&self.abuse.failed_by_ip, by_ip).check(&ip, now).map_err(refused)?;
        }
        Ok(())
    }

    /// Counts one failed login (unknown usernames count as well, so the answer does not tell them apart).
    pub(super) fn note_failed_login(&self, username: &str, ip: Option<IpAddr>) {
        let s = self.settings();
        let now = now_ms();
        let key = (username.to_lowercase(), ip);
        let by_user = failure_rate(s.failed_logins_by_user, s.failed_logins_by_user_minutes);
        // An empty bucket here only means concurrent failures raced past the check; nothing to add.
        let _ = current(&self.abuse.failed_by_user, by_user).take(&key, now);
        if let Some(ip) = ip {
            let by_ip = failure_rate(s.failed_logins_by_ip, s.failed_logins_by_ip_minutes);
            let _ = current(&self.abuse.failed_by_ip, by_ip).take(&ip, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_read_from_ip_port_or_a_bare_ip() {
        assert_eq!(client_ip(Some("127.0.0.1:4242")), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(client_ip(Some("[::1]:80")), "::1".parse().ok());
        assert_eq!(client_ip(Some("10.1.2.3")), Some(IpAddr::from([10, 1, 2, 3])));
        assert_eq!(client_ip(Some("curl/8.0")), None);
        assert_eq!(client_ip(None), None);
    }

    #[test]
    fn failures_come_back_one_by_one_over_the_unblock_period() {
        let r = failure_rate(10, 15);
        assert_eq!((r.refill, r.per_ms, r.burst), (10, 900_000, 10));
        assert!(failure_rate(0, 15).is_off());
        let s = Settings::default();
        assert_eq!(send_rate(&s), Rate { refill: 5, per_ms: 1_000, burst: 10 });
    }
}
