//! Which fabric links want which channels: the broker's routing table.
//!
//! Pure data: no sockets, no tasks, no clock, no locks (the caller shards and
//! locks it). It keeps two indexes that always agree: channel → links and
//! link → channels, so a publish finds its targets in one lookup and a
//! closing link drops all its interest without scanning every channel. A
//! channel with no interested link has no entry at all, so the table's size
//! follows live interest, not history.

use std::collections::{HashMap, HashSet};

/// A fabric link, unique for the broker's lifetime (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Default)]
pub struct Interest {
    /// Never holds an empty set.
    by_channel: HashMap<String, HashSet<LinkId>>,
    /// Never holds an empty set; the mirror of `by_channel`.
    by_link: HashMap<LinkId, HashSet<String>>,
}

impl Interest {
    /// Records that `link` wants `channel`. Returns false if it already did.
    pub fn subscribe(&mut self, link: LinkId, channel: &str) -> bool {
        let added = match self.by_channel.get_mut(channel) {
            Some(links) => links.insert(link),
            None => {
                self.by_channel.insert(channel.to_owned(), HashSet::from([link]));
                true
            }
        };
        if !added {
            return false;
        }
        self.by_link.entry(link).or_default().insert(channel.to_owned());
        true
    }

    /// Drops `link`'s interest in `channel`. Returns false if it had none.
    pub fn unsubscribe(&mut self, link: LinkId, channel: &str) -> bool {
        let Some(links) = self.by_channel.get_mut(channel) else {
            return false;
        };
        if !links.remove(&link) {
            return false;
        }
        if links.is_empty() {
            self.by_channel.remove(channel);
        }
        if let Some(channels) = self.by_link.get_mut(&link) {
            channels.remove(channel);
            if channels.is_empty() {
                self.by_link.remove(&link);
            }
        }
        true
    }

    /// Drops all of `link`'s interest (the link closed). Returns how many channels it had.
    pub fn remove_link(&mut self, link: LinkId) -> usize {
        let Some(channels) = self.by_link.remove(&link) else {
            return 0;
        };
        for channel in &channels {
            if let Some(links) = self.by_channel.get_mut(channel) {
                links.remove(&link);
                if links.is_empty() {
                    self.by_channel.remove(channel);
                }
            }
        }
        channels.len()
    }

    /// The links a publish on `channel` goes to, in no particular order.
    pub fn targets(&self, channel: &str) -> impl Iterator<Item = LinkId> + '_ {
        self.by_channel.get(channel).into_iter().flatten().copied()
    }

    /// Whether `link` wants `channel`.
    #[must_use]
    pub fn wants(&self, link: LinkId, channel: &str) -> bool {
        self.by_channel.get(channel).is_some_and(|l| l.contains(&link))
    }

    /// Channels with at least one interested link.
    #[must_use]
    pub fn channels(&self) -> usize {
        self.by_channel.len()
    }

    /// (link, channel) pairs.
    #[must_use]
    pub fn subscriptions(&self) -> usize {
        self.by_link.values().map(HashSet::len).sum()
    }

    /// Channels `link` wants.
    #[must_use]
    pub fn channels_of(&self, link: LinkId) -> usize {
        self.by_link.get(&link).map_or(0, HashSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: LinkId = LinkId(1);
    const B: LinkId = LinkId(2);
    const C: LinkId = LinkId(3);

    fn targets(i: &Interest, channel: &str) -> Vec<LinkId> {
        let mut t: Vec<_> = i.targets(channel).collect();
        t.sort();
        t
    }

    #[test]
    fn a_publish_goes_to_interested_links_only() {
        let mut i = Interest::default();
        assert!(i.subscribe(A, "x"));
        assert!(i.subscribe(B, "x"));
        assert!(i.subscribe(C, "y"));
        assert_eq!(targets(&i, "x"), [A, B]);
        assert_eq!(targets(&i, "y"), [C]);
        assert!(targets(&i, "z").is_empty());
        assert!(i.wants(A, "x") && !i.wants(A, "y"));
    }

    #[test]
    fn subscribing_twice_counts_once_and_one_unsubscribe_undoes_it() {
        let mut i = Interest::default();
        assert!(i.subscribe(A, "x"));
        assert!(!i.subscribe(A, "x"));
        assert_eq!(i.subscriptions(), 1);
        assert!(i.unsubscribe(A, "x"));
        assert!(!i.unsubscribe(A, "x"));
        assert!(targets(&i, "x").is_empty());
    }

    #[test]
    fn unsubscribing_what_was_never_subscribed_changes_nothing() {
        let mut i = Interest::default();
        i.subscribe(A, "x");
        assert!(!i.unsubscribe(B, "x"));
        assert!(!i.unsubscribe(A, "y"));
        assert_eq!(targets(&i, "x"), [A]);
    }

    #[test]
    fn the_last_unsubscribe_forgets_the_channel() {
        let mut i = Interest::default();
        i.subscribe(A, "x");
        i.subscribe(B, "x");
        i.unsubscribe(A, "x");
        assert_eq!(i.channels(), 1);
        i.unsubscribe(B, "x");
        assert_eq!(i.channels(), 0);
        assert_eq!(i.subscriptions(), 0);
        assert_eq!(i.channels_of(B), 0);
    }

    #[test]
    fn removing_a_link_drops_all_its_interest_and_nobody_elses() {
        let mut i = Interest::default();
        for c in ["x", "y", "z"] {
            i.subscribe(A, c);
        }
        i.subscribe(B, "y");
        assert_eq!(i.remove_link(A), 3);
        assert_eq!(i.remove_link(A), 0);
        assert!(targets(&i, "x").is_empty());
        assert_eq!(targets(&i, "y"), [B]);
        assert_eq!(i.channels(), 1);
        assert_eq!(i.subscriptions(), 1);
    }

    #[test]
    fn both_indexes_agree_after_a_random_walk() {
        // A deterministic pseudo-random sequence of operations, checked
        // against a naive model after every step.
        let mut model: HashSet<(u64, String)> = HashSet::new();
        let mut i = Interest::default();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let link = LinkId(seed % 5);
            let channel = format!("c{}", (seed >> 8) % 7);
            match (seed >> 16) % 5 {
                0 | 1 => assert_eq!(i.subscribe(link, &channel), model.insert((link.0, channel))),
                2 | 3 => assert_eq!(i.unsubscribe(link, &channel), model.remove(&(link.0, channel))),
                _ => {
                    let before = model.len();
                    model.retain(|(l, _)| *l != link.0);
                    assert_eq!(i.remove_link(link), before - model.len());
                }
            }
            assert_eq!(i.subscriptions(), model.len());
            for c in 0..7 {
                let channel = format!("c{c}");
                let mut want: Vec<_> = model.iter().filter(|(_, ch)| *ch == channel).map(|(l, _)| LinkId(*l)).collect();
                want.sort();
                assert_eq!(targets(&i, &channel), want);
            }
        }
    }
}
