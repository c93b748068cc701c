//! The loss meter: what was published, what each subscriber got, and what
//! that means (delivered, lost, duplicated, out of order, the loss window).
//!
//! Every published message carries a [`Stamp`]: its channel index, its
//! sequence number on that channel and its publish time in microseconds since
//! the meter started. Each channel has exactly one publisher, so the meter
//! hands out sequence numbers itself at publish time and keeps every
//! message's publish time; a message that never arrives is therefore known
//! by its publish time too, which is what the loss window is made of.
//!
//! Definitions, per (subscriber, channel) stream:
//! - **delivered**: distinct sequence numbers received;
//! - **lost**: published but never received by the end (a gap later filled
//!   is not lost, it is out of order);
//! - **duplicated**: receptions of a sequence number already received;
//! - **out of order**: first receptions of a sequence number lower than one
//!   already received;
//! - **loss window**: from the publish time of the first lost message to that
//!   of the last one, over the whole run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a publisher puts in every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Channel index.
    pub ch: u32,
    /// Sequence number on that channel, from 0.
    pub seq: u64,
    /// Publish time, microseconds since the meter started.
    pub t: u64,
}

/// Highest sequence number a stream tracks (a bound against a bogus stamp).
const MAX_SEQ: u64 = 50_000_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one subscriber socket received on one channel.
#[derive(Debug, Default)]
struct Stream {
    /// Receptions per sequence number (saturating).
    received: Vec<u8>,
    max_seq: Option<u64>,
    unique: u64,
    duplicated: u64,
    out_of_order: u64,
    /// Latest publish time among the messages received.
    max_t: u64,
}

/// What one subscriber socket received.
#[derive(Debug)]
pub struct SubscriberLog {
    /// Which frontend it is connected to.
    pub frontend: usize,
    /// Channel index → stream; only channels it subscribed to.
    streams: Vec<Option<Stream>>,
    /// Messages on channels it did not subscribe to, or with bad stamps.
    unexpected: u64,
    /// Why it stopped receiving before the end of the run, if it did.
    closed: Option<String>,
}

impl SubscriberLog {
    /// Records one received message.
    pub fn record(&mut self, channel: &str, stamp: Stamp, names: &[String]) {
        let idx = stamp.ch as usize;
        let stream = match self.streams.get_mut(idx) {
            Some(Some(s)) if names.get(idx).is_some_and(|n| n == channel) && stamp.seq < MAX_SEQ => s,
            _ => {
                self.unexpected += 1;
                return;
            }
        };
        let seq = usize::try_from(stamp.seq).unwrap_or(usize::MAX);
        if stream.received.len() <= seq {
            stream.received.resize(seq + 1, 0);
        }
        if stream.received[seq] > 0 {
            stream.duplicated += 1;
        } else {
            stream.unique += 1;
            if stream.max_seq.is_some_and(|m| stamp.seq < m) {
                stream.out_of_order += 1;
            }
        }
        stream.received[seq] = stream.received[seq].saturating_add(1);
        stream.max_seq = stream.max_seq.max(Some(stamp.seq));
        stream.max_t = stream.max_t.max(stamp.t);
    }

    /// Records a message that is not a well-formed stamp.
    pub fn record_unexpected(&mut self) {
        self.unexpected += 1;
    }

    /// Notes that the socket closed before the end of the run.
    pub fn record_closed(&mut self, why: String) {
        self.closed.get_or_insert(why);
    }
}

/// The shared record of one load run.
pub struct Meter {
    start: Instant,
    names: Arc<Vec<String>>,
    /// Per channel: the publish time of each sequence number.
    published: Mutex<Vec<Vec<u64>>>,
    subscribers: Mutex<Vec<Arc<Mutex<SubscriberLog>>>>,
    /// Publisher sockets that failed, and why.
    publisher_errors: Mutex<Vec<String>>,
}

impl Meter {
    #[must_use]
    pub fn new(names: Vec<String>) -> Meter {
        let n = names.len();
        Meter {
            start: Instant::now(),
            names: Arc::new(names),
            published: Mutex::new(vec![Vec::new(); n]),
            subscribers: Mutex::new(Vec::new()),
            publisher_errors: Mutex::new(Vec::new()),
        }
    }

    /// Channel names, by index.
    #[must_use]
    pub fn names(&self) -> &Arc<Vec<String>> {
        &self.names
    }

    /// Microseconds since the meter started: the clock of every stamp.
    #[must_use]
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A stamp time as a duration since the start.
    #[must_use]
    pub fn at(t: u64) -> Duration {
        Duration::from_micros(t)
    }

    /// Registers a subscriber socket on `frontend` for `channels`.
    pub fn add_subscriber(&self, frontend: usize, channels: &[u32]) -> Arc<Mutex<SubscriberLog>> {
        let mut streams: Vec<Option<Stream>> = (0..self.names.len()).map(|_| None).collect();
        for &c in channels {
            streams[c as usize] = Some(Stream::default());
        }
        let log = Arc::new(Mutex::new(SubscriberLog { frontend, streams, unexpected: 0, closed: None }));
        lock(&self.subscribers).push(log.clone());
        log
    }

    /// Stamps the next message on each channel of `channels` (in order), recording
    /// its publish time; returns the stamps to send.
    pub fn stamp(&self, channels: impl Iterator<Item = u32>) -> Vec<Stamp> {
        let t = self.now_us();
        let mut published = lock(&self.published);
        channels
            .map(|ch| {
                let times = &mut published[ch as usize];
                let seq = times.len() as u64;
                times.push(t);
                Stamp { ch, seq, t }
            })
            .collect()
    }

    pub fn record_publisher_error(&self, why: String) {
        lock(&self.publisher_errors).push(why);
    }

    fn logs(&self) -> Vec<Arc<Mutex<SubscriberLog>>> {
        lock(&self.subscribers).clone()
    }

    /// Messages published so far.
    #[must_use]
    pub fn published(&self) -> u64 {
        lock(&self.published).iter().map(|v| v.len() as u64).sum()
    }

    /// Distinct messages delivered so far, over every subscriber.
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.logs().iter().map(|l| lock(l).streams.iter().flatten().map(|s| s.unique).sum::<u64>()).sum()
    }

    /// Messages published and not (yet) delivered, over every subscriber stream.
    #[must_use]
    pub fn outstanding(&self) -> u64 {
        let published: Vec<u64> = lock(&self.published).iter().map(|v| v.len() as u64).collect();
        let mut n = 0;
        for log in self.logs() {
            for (ch, s) in lock(&log).streams.iter().enumerate() {
                if let Some(s) = s {
                    n += published[ch].saturating_sub(s.unique);
                }
            }
        }
        n
    }

    /// `Ok` once every subscriber stream of the given channels has received a
    /// message published at or after `t`; otherwise how many have not.
    ///
    /// # Errors
    /// The streams still waiting, as a sentence.
    pub fn received_since(&self, t: u64, channels: &[u32]) -> Result<(), String> {
        let wanted: BTreeSet<u32> = channels.iter().copied().collect();
        let (mut behind, mut total) = (0, 0);
        let mut example = None;
        for log in self.logs() {
            for (ch, s) in lock(&log).streams.iter().enumerate() {
                let Some(s) = s else { continue };
                if !wanted.contains(&(ch as u32)) {
                    continue;
                }
                total += 1;
                if s.max_t < t {
                    behind += 1;
                    example.get_or_insert(format!("{} (latest publish time received {} us)", self.names[ch], s.max_t));
                }
            }
        }
        if total > 0 && behind == 0 {
            Ok(())
        } else {
            Err(format!(
                "{behind} of {total} streams have nothing published at or after {t} us yet (now {} us), e.g. {}",
                self.now_us(),
                example.unwrap_or_else(|| "none".into())
            ))
        }
    }

    /// The counts of the run so far.
    #[must_use]
    pub fn report(&self) -> Report {
        let published = lock(&self.published).clone();
        let mut r = Report {
            channels: self.names.len(),
            published: published.iter().map(|v| v.len() as u64).sum(),
            last_publish: published.iter().filter_map(|v| v.last().copied()).max().map(Meter::at),
            publisher_errors: lock(&self.publisher_errors).clone(),
            ..Report::default()
        };
        let (mut first, mut last) = (u64::MAX, 0);
        for log in self.logs() {
            let log = lock(&log);
            r.subscribers += 1;
            r.unexpected += log.unexpected;
            if let Some(why) = &log.closed {
                r.subscriber_errors.push(format!("subscriber on frontend {}: {why}", log.frontend));
            }
            for (ch, s) in log.streams.iter().enumerate() {
                let Some(s) = s else { continue };
                let times = &published[ch];
                r.expected += times.len() as u64;
                r.delivered += s.unique;
                r.duplicated += s.duplicated;
                r.out_of_order += s.out_of_order;
                for (seq, &t) in times.iter().enumerate() {
                    if s.received.get(seq).copied().unwrap_or(0) == 0 {
                        r.lost += 1;
                        *r.lost_by_channel.entry(ch as u32).or_default() += 1;
                        first = first.min(t);
                        last = last.max(t);
                    }
                }
            }
        }
        r.lost_channels = r.lost_by_channel.len();
        if r.lost > 0 {
            r.loss_window = Some((Meter::at(first), Meter::at(last)));
        }
        r
    }
}

/// The outcome of a load run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub channels: usize,
    pub subscribers: usize,
    /// Messages published.
    pub published: u64,
    /// Deliveries expected: over every subscriber stream, what its channel published.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Channels with at least one loss (on any subscriber).
    pub lost_channels: usize,
    /// Losses by channel index (over every subscriber).
    pub lost_by_channel: BTreeMap<u32, u64>,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Messages that do not belong to a subscription, or are not stamps.
    pub unexpected: u64,
    /// Publish times of the first and the last lost message, since the start.
    pub loss_window: Option<(Duration, Duration)>,
    /// When the last message was published, since the start.
    pub last_publish: Option<Duration>,
    /// Publisher sockets that failed before the end.
    pub publisher_errors: Vec<String>,
    /// Subscriber sockets that stopped receiving before the end.
    pub subscriber_errors: Vec<String>,
    /// How long the publishers ran.
    pub duration: Duration,
}

impl Report {
    /// Length of the loss window (zero with no loss, or a single loss).
    #[must_use]
    pub fn loss_window_len(&self) -> Duration {
        self.loss_window.map(|(a, b)| b.saturating_sub(a)).unwrap_or_default()
    }

    /// Achieved publish rate, messages per second.
    #[must_use]
    pub fn rate(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.published as f64 / secs
        } else {
            0.0
        }
    }

    /// Panics unless every expected delivery happened exactly once, in order,
    /// with every socket alive to the end.
    ///
    /// # Panics
    /// When any of that does not hold.
    pub fn assert_exact(&self) {
        assert!(self.published > 0, "nothing was published: {self}");
        assert!(
            self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0 && self.unexpected == 0,
            "delivery was not exactly once and in order: {self}"
        );
        assert_eq!(self.delivered, self.expected, "{self}");
        assert!(self.publisher_errors.is_empty() && self.subscriber_errors.is_empty(), "sockets failed: {self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published {} on {} channels in {:.1} s ({:.0}/s); {} subscribers expected {}, delivered {}, \
             lost {} (on {} channels), duplicated {}, out of order {}, unexpected {}; loss window: ",
            self.published,
            self.channels,
            self.duration.as_secs_f64(),
            self.rate(),
            self.subscribers,
            self.expected,
            self.delivered,
            self.lost,
            self.lost_channels,
            self.duplicated,
            self.out_of_order,
            self.unexpected,
        )?;
        match self.loss_window {
            Some((a, b)) => write!(
                f,
                "{} ms (publish times {:.3} s .. {:.3} s)",
                b.saturating_sub(a).as_millis(),
                a.as_secs_f64(),
                b.as_secs_f64()
            )?,
            None => write!(f, "none")?,
        }
        for e in self.publisher_errors.iter().chain(&self.subscriber_errors) {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(n: usize) -> Meter {
        Meter::new((0..n).map(|i| format!("c{i}")).collect())
    }

    #[test]
    fn counts_losses_duplicates_and_reordering() {
        let m = meter(2);
        let sub = m.add_subscriber(0, &[0, 1]);
        let stamps = m.stamp([0, 0, 0, 0, 1, 1].into_iter());
        let names = m.names().clone();
        {
            let mut s = sub.lock().unwrap();
            // Channel 0: 0, 2, 1 (late), 2 again; 3 never. Channel 1: both.
            for i in [0, 2, 1, 2, 4, 5] {
                let st = stamps[i];
                s.record(&names[st.ch as usize], st, &names);
            }
            s.record("c9", Stamp { ch: 9, seq: 0, t: 0 }, &names);
        }
        let r = m.report();
        assert_eq!((r.published, r.expected, r.delivered), (6, 6, 5));
        assert_eq!((r.lost, r.lost_channels, r.duplicated, r.out_of_order, r.unexpected), (1, 1, 1, 1, 1));
        assert_eq!(r.loss_window, Some((Meter::at(stamps[3].t), Meter::at(stamps[3].t))));
        assert_eq!(m.outstanding(), 1);
    }

    #[test]
    fn delivery_after_a_time_is_tracked_per_stream() {
        let m = meter(2);
        let sub = m.add_subscriber(0, &[0, 1]);
        let names = m.names().clone();
        let st = m.stamp([0, 1].into_iter());
        sub.lock().unwrap().record("c0", Stamp { t: 100, ..st[0] }, &names);
        assert!(m.received_since(50, &[0]).is_ok());
        assert!(m.received_since(50, &[0, 1]).is_err());
        assert!(m.received_since(150, &[0]).is_err());
    }
}
