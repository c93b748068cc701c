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
//!
//! With reconnecting clients (`LoadConfig::reconnect`), two more things are
//! tracked. A publish whose publisher socket was closed before its
//! acknowledgement came (or that the cluster refused) is **unconfirmed**: the
//! cluster may or may not have taken it (at most once), so a subscriber
//! missing it is counted in `unconfirmed_missed`, not in `lost`. A subscriber
//! whose socket the server closed and that reconnected and resubscribed is
//! **interrupted**. Per stream, its **gap** runs from the publish time of
//! the last message it received before the socket closed (delivery on a
//! stream is in order, so everything before that arrived or was already
//! lost) to the moment every resubscription was acknowledged (a message
//! published after that reaches the owning broker after the subscription).
//! What a stream misses inside a gap is lost and counted apart in
//! `lost_in_gaps`, so "subscribers on the remaining nodes lose nothing, and
//! moved subscribers lose only what was published while they moved" reads
//! `lost == lost_in_gaps` (`Report::lost_outside_gaps() == 0`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
    /// Publish-time windows in which the subscriber was moving (see the
    /// module doc): from, and until (`None` while it is still reconnecting).
    gaps: Vec<(u64, Option<u64>)>,
}

impl Stream {
    fn in_gap(&self, t: u64) -> bool {
        self.gaps.iter().any(|&(from, until)| t >= from && until.is_none_or(|u| t <= u))
    }
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
    /// Times the server closed its socket and it reconnected and resubscribed.
    reconnects: u32,
    /// Meter time (µs) its socket was lost, while it is reconnecting.
    down_since: Option<u64>,
    /// Each reconnection: socket lost → every subscription acknowledged again.
    gaps: Vec<Duration>,
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

    /// Notes that the server closed the socket at `at_us` (meter time) and
    /// that the subscriber is reconnecting.
    pub fn record_interrupted(&mut self, at_us: u64) {
        if self.down_since.is_some() {
            return;
        }
        self.down_since = Some(at_us);
        for s in self.streams.iter_mut().flatten() {
            s.gaps.push((s.max_t, None));
        }
    }

    /// Notes that the subscriber is connected to `frontend` again with every
    /// subscription acknowledged, at `at_us`.
    pub fn record_resumed(&mut self, frontend: usize, at_us: u64) {
        self.frontend = frontend;
        self.reconnects += 1;
        if let Some(t) = self.down_since.take() {
            self.gaps.push(Duration::from_micros(at_us.saturating_sub(t)));
        }
        for s in self.streams.iter_mut().flatten() {
            if let Some(gap) = s.gaps.last_mut().filter(|g| g.1.is_none()) {
                gap.1 = Some(at_us);
            }
        }
    }

    /// Times it reconnected.
    #[must_use]
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// Connected and subscribed: not closed for good, not reconnecting.
    #[must_use]
    pub fn connected(&self) -> bool {
        self.closed.is_none() && self.down_since.is_none()
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
    /// Per channel: sequence numbers published but never confirmed (see the module doc).
    unconfirmed: Mutex<Vec<BTreeSet<u64>>>,
    /// Publishes the cluster answered with an error.
    refused_publishes: AtomicU64,
    /// The first few errors those publishes got.
    refusals: Mutex<Vec<String>>,
    publisher_reconnects: AtomicU64,
    /// Publishers whose socket is lost and that are reconnecting.
    publishers_down: AtomicI64,
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
            unconfirmed: Mutex::new(vec![BTreeSet::new(); n]),
            refused_publishes: AtomicU64::new(0),
            refusals: Mutex::new(Vec::new()),
            publisher_reconnects: AtomicU64::new(0),
            publishers_down: AtomicI64::new(0),
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
        let log = Arc::new(Mutex::new(SubscriberLog {
            frontend,
            streams,
            unexpected: 0,
            closed: None,
            reconnects: 0,
            down_since: None,
            gaps: Vec::new(),
        }));
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

    /// Marks publishes as unconfirmed: their publisher's socket closed before
    /// their acknowledgement came.
    pub fn record_unconfirmed(&self, stamps: impl IntoIterator<Item = Stamp>) {
        let mut unconfirmed = lock(&self.unconfirmed);
        for s in stamps {
            if let Some(set) = unconfirmed.get_mut(s.ch as usize) {
                set.insert(s.seq);
            }
        }
    }

    /// A publish the cluster answered with `error`: counted, and unconfirmed.
    pub fn record_refused_publish(&self, stamp: Stamp, error: String) {
        self.refused_publishes.fetch_add(1, Ordering::Relaxed);
        let mut refusals = lock(&self.refusals);
        if refusals.len() < 3 {
            refusals.push(error);
        }
        drop(refusals);
        self.record_unconfirmed([stamp]);
    }

    /// A publisher lost its socket and is reconnecting.
    pub fn record_publisher_down(&self) {
        self.publishers_down.fetch_add(1, Ordering::Relaxed);
    }

    /// A publisher that lost its socket is connected again.
    pub fn record_publisher_reconnected(&self) {
        self.publishers_down.fetch_sub(1, Ordering::Relaxed);
        self.publisher_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// `Ok` when every subscriber is connected and subscribed and no
    /// publisher is reconnecting; otherwise who is not, as a sentence.
    ///
    /// # Errors
    /// The clients that are not connected.
    pub fn clients_connected(&self) -> Result<(), String> {
        let down: Vec<String> = self
            .logs()
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let l = lock(l);
                (!l.connected()).then(|| format!("subscriber {i} (last on frontend {}): {:?}", l.frontend, l.closed))
            })
            .collect();
        let publishers = self.publishers_down.load(Ordering::Relaxed);
        if down.is_empty() && publishers == 0 {
            Ok(())
        } else {
            Err(format!("{publishers} publishers reconnecting; subscribers not connected: {down:?}"))
        }
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
        let unconfirmed = lock(&self.unconfirmed).clone();
        let mut r = Report {
            channels: self.names.len(),
            published: published.iter().map(|v| v.len() as u64).sum(),
            last_publish: published.iter().filter_map(|v| v.last().copied()).max().map(Meter::at),
            publisher_errors: lock(&self.publisher_errors).clone(),
            unconfirmed: unconfirmed.iter().map(|s| s.len() as u64).sum(),
            refused_publishes: self.refused_publishes.load(Ordering::Relaxed),
            refusals: lock(&self.refusals).clone(),
            publisher_reconnects: self.publisher_reconnects.load(Ordering::Relaxed),
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
            let interrupted = log.reconnects > 0 || log.down_since.is_some();
            if interrupted {
                r.interrupted_subscribers += 1;
            }
            r.subscriber_reconnects += u64::from(log.reconnects);
            r.max_reconnect_gap = log.gaps.iter().copied().fold(r.max_reconnect_gap, Duration::max);
            for (ch, s) in log.streams.iter().enumerate() {
                let Some(s) = s else { continue };
                let times = &published[ch];
                r.expected += times.len() as u64;
                r.delivered += s.unique;
                r.duplicated += s.duplicated;
                r.out_of_order += s.out_of_order;
                for (seq, &t) in times.iter().enumerate() {
                    if s.received.get(seq).copied().unwrap_or(0) == 0 {
                        if unconfirmed[ch].contains(&(seq as u64)) {
                            r.unconfirmed_missed += 1;
                            continue;
                        }
                        r.lost += 1;
                        if s.in_gap(t) {
                            r.lost_in_gaps += 1;
                        }
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
    /// Publishes never acknowledged because their publisher's socket closed
    /// first, or refused (reconnecting publishers only; see the module doc).
    pub unconfirmed: u64,
    /// Publishes the cluster answered with an error.
    pub refused_publishes: u64,
    /// The first few of those errors.
    pub refusals: Vec<String>,
    /// Deliveries of unconfirmed publishes that did not happen (not in `lost`).
    pub unconfirmed_missed: u64,
    /// Subscribers that lost their socket and reconnected at least once.
    pub interrupted_subscribers: usize,
    /// The part of `lost` inside the gaps of interrupted subscribers (see the module doc).
    pub lost_in_gaps: u64,
    pub subscriber_reconnects: u64,
    pub publisher_reconnects: u64,
    /// The longest reconnection of a subscriber: socket lost → resubscribed.
    pub max_reconnect_gap: Duration,
}

impl Report {
    /// Length of the loss window (zero with no loss, or a single loss).
    #[must_use]
    pub fn loss_window_len(&self) -> Duration {
        self.loss_window.map(|(a, b)| b.saturating_sub(a)).unwrap_or_default()
    }

    /// Losses outside the gaps of moving subscribers: on subscribers that
    /// kept their socket, or on a moved one before it lost its socket or
    /// after it had resubscribed.
    #[must_use]
    pub fn lost_outside_gaps(&self) -> u64 {
        self.lost - self.lost_in_gaps
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
        if self.subscriber_reconnects + self.publisher_reconnects + self.unconfirmed > 0 {
            write!(
                f,
                "; reconnects: {} subscribers ({} interrupted, {} lost in their gaps, longest gap {} ms), {} \
                 publishers; unconfirmed publishes {} ({} deliveries of them missed), refused {}",
                self.subscriber_reconnects,
                self.interrupted_subscribers,
                self.lost_in_gaps,
                self.max_reconnect_gap.as_millis(),
                self.publisher_reconnects,
                self.unconfirmed,
                self.unconfirmed_missed,
                self.refused_publishes,
            )?;
            if !self.refusals.is_empty() {
                write!(f, " (e.g. {})", self.refusals.join(" | "))?;
            }
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
    fn unconfirmed_publishes_are_not_lost_and_interrupted_subscribers_are_counted_apart() {
        let m = meter(1);
        let steady = m.add_subscriber(0, &[0]);
        let moved = m.add_subscriber(1, &[0]);
        let names = m.names().clone();
        m.stamp((0..6).map(|_| 0));
        // Publish times 0, 100, … 500 µs.
        lock(&m.published)[0] = (0..6).map(|i| 100 * i).collect();
        let st: Vec<Stamp> = (0..6).map(|i| Stamp { ch: 0, seq: i, t: 100 * i }).collect();
        // Seq 1 was never acknowledged; seq 3 was refused.
        m.record_unconfirmed([st[1]]);
        m.record_refused_publish(st[3], "no".into());
        for i in [0, 2, 4, 5] {
            steady.lock().unwrap().record("c0", st[i], &names);
        }
        {
            // Received 0 (t 0), lost its socket, resubscribed at t 250: 2 (t 200)
            // is in its gap; 4 (t 400) came; 5 (t 500) never did.
            let mut s = moved.lock().unwrap();
            s.record("c0", st[0], &names);
            s.record_interrupted(120);
            assert!(!s.connected());
            s.record_resumed(2, 250);
            assert!(s.connected());
            s.record("c0", st[4], &names);
        }
        assert!(m.clients_connected().is_ok());
        let r = m.report();
        assert_eq!((r.unconfirmed, r.refused_publishes, r.unconfirmed_missed), (2, 1, 4));
        assert_eq!((r.lost, r.lost_in_gaps, r.lost_outside_gaps()), (2, 1, 1), "{r}");
        assert_eq!((r.interrupted_subscribers, r.subscriber_reconnects), (1, 1));
        assert_eq!(r.max_reconnect_gap, Duration::from_micros(130));
        m.record_publisher_down();
        assert!(m.clients_connected().is_err());
        m.record_publisher_reconnected();
        assert_eq!(m.report().publisher_reconnects, 1);
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
