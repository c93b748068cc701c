//! Which brokers a frontend publishes to and holds interest at: pure data.
//!
//! The frontend knows the committed slot table, the table being prepared (if
//! a reshard is under way), the brokers it has seen die since the last
//! commit, and the tables it has just left (kept for the drain delay).
//!
//! - Publishes go to the channel's owner in the committed table; only a
//!   channel whose owner is dead goes to its owner in `committed.without(dead)`
//!   (by the leave rule, the broker in the last slot). Channels of live
//!   brokers never move without the state server's two-phase reshard, so a
//!   failure costs only the dead broker's channels.
//! - Interest is held at the owner in every table that still matters: the
//!   effective one, the prepared one, and each draining one. That is
//!   make-before-break: the new owner is subscribed before anyone publishes
//!   to it, and the old one is kept until messages in flight have drained.
//!
//! Every frontend applies the same `without(dead)` rule, so they agree on
//! where a dead broker's channels went without asking anyone.

use std::collections::BTreeSet;
use std::time::Instant;

use protocol::slots::{BrokerInfo, SlotTable};

#[derive(Debug, Default)]
pub struct Routing {
    committed: SlotTable,
    prepared: Option<SlotTable>,
    /// Brokers of the committed table this frontend saw die (link lost or silent).
    dead: BTreeSet<String>,
    /// Tables left behind at a commit, with when to forget them.
    draining: Vec<(Instant, SlotTable)>,
}

impl Routing {
    #[must_use]
    pub fn committed(&self) -> &SlotTable {
        &self.committed
    }

    #[must_use]
    pub fn prepared(&self) -> Option<&SlotTable> {
        self.prepared.as_ref()
    }

    #[must_use]
    pub fn dead(&self) -> &BTreeSet<String> {
        &self.dead
    }

    /// The table publishes follow: the committed one without dead brokers.
    #[must_use]
    pub fn effective(&self) -> SlotTable {
        self.without_dead(&self.committed)
    }

    fn without_dead(&self, t: &SlotTable) -> SlotTable {
        let dead: Vec<&str> = self.dead.iter().map(String::as_str).collect();
        t.without(&dead)
    }

    /// Where a publish on `channel` goes.
    #[must_use]
    pub fn publish_owner(&self, channel: &str) -> Option<BrokerInfo> {
        route(&self.committed, &self.dead, channel)
    }

    /// The routing as it stands, to compare against after a change.
    #[must_use]
    pub fn snapshot(&self) -> (SlotTable, BTreeSet<String>) {
        (self.committed.clone(), self.dead.clone())
    }

    /// Every broker that should hold this frontend's interest in `channel`.
    #[must_use]
    pub fn interest_owners(&self, channel: &str) -> BTreeSet<String> {
        let mut owners = BTreeSet::new();
        let mut add = |t: &SlotTable| {
            if let Some(b) = route(t, &self.dead, channel) {
                owners.insert(b.id.clone());
            }
        };
        add(&self.committed);
        if let Some(p) = &self.prepared {
            add(p);
        }
        for (_, t) in &self.draining {
            add(t);
        }
        owners
    }

    /// Every broker this frontend needs a link to.
    #[must_use]
    pub fn known_brokers(&self) -> Vec<BrokerInfo> {
        let mut seen = BTreeSet::new();
        let tables =
            std::iter::once(&self.committed).chain(self.prepared.iter()).chain(self.draining.iter().map(|(_, t)| t));
        tables.flat_map(|t| t.slots.iter()).filter(|b| seen.insert(b.id.clone())).cloned().collect()
    }

    /// A table arrived at connect time (`Welcome`): adopt it if it is newer.
    pub fn welcome(&mut self, table: SlotTable, now: Instant, drain_until: Instant) -> bool {
        if table.epoch > self.committed.epoch {
            self.commit(table, now, drain_until);
            true
        } else {
            false
        }
    }

    pub fn prepare(&mut self, table: SlotTable) {
        if table.epoch > self.committed.epoch {
            self.prepared = Some(table);
        }
    }

    /// Makes `table` the committed one; the table routed by until now drains until `drain_until`.
    pub fn commit(&mut self, table: SlotTable, now: Instant, drain_until: Instant) {
        if table.epoch <= self.committed.epoch {
            return;
        }
        // Drained by `route` like any table, so a dead broker's channels stay where they went.
        let old = self.committed.clone();
        self.prepared = self.prepared.take().filter(|p| p.epoch > table.epoch);
        // A broker the new table still lists stays dead until its link proves otherwise.
        self.dead.retain(|id| table.contains(id));
        self.committed = table;
        self.expire(now);
        if !old.is_empty() {
            self.draining.push((drain_until, old));
        }
    }

    /// Marks a broker dead. Returns whether routing changed.
    pub fn broker_died(&mut self, id: &str) -> bool {
        let listed = self.committed.contains(id) || self.prepared.as_ref().is_some_and(|p| p.contains(id));
        listed && self.dead.insert(id.to_owned())
    }

    /// Drops draining tables whose time is up. Returns whether any was dropped.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.draining.len();
        self.draining.retain(|(until, _)| *until > now);
        self.draining.len() != before
    }

    /// When the next draining table expires.
    #[must_use]
    pub fn next_expiry(&self) -> Option<Instant> {
        self.draining.iter().map(|(t, _)| *t).min()
    }
}

/// The owner of `channel` in `table`, or, if that broker is dead, its owner
/// once the dead brokers have left by the leave rule.
#[must_use]
pub fn route(table: &SlotTable, dead: &BTreeSet<String>, channel: &str) -> Option<BrokerInfo> {
    let owner = table.owner(channel)?;
    if !dead.contains(&owner.id) {
        return Some(owner.clone());
    }
    let gone: Vec<&str> = dead.iter().map(String::as_str).collect();
    table.without(&gone).owner(channel).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn b(i: usize) -> BrokerInfo {
        BrokerInfo { id: format!("b{i}"), addr: format!("127.0.0.1:{i}") }
    }

    fn table(n: usize) -> SlotTable {
        (0..n).fold(SlotTable::default(), |t, i| t.join(b(i)))
    }

    /// A channel that `from` owns and `to` owns after the change.
    fn moving_channel(from: &SlotTable, to: &SlotTable) -> String {
        (0..10_000).map(|i| format!("c{i}")).find(|c| from.owner(c) != to.owner(c)).unwrap()
    }

    #[test]
    fn prepare_adds_the_new_owner_and_commit_keeps_the_old_until_drained() {
        let now = Instant::now();
        let mut r = Routing::default();
        r.welcome(table(1), now, now);
        let next = table(1).join(b(1));
        let c = moving_channel(&table(1), &next);
        assert_eq!(r.interest_owners(&c), BTreeSet::from(["b0".to_owned()]));
        r.prepare(next.clone());
        assert_eq!(r.interest_owners(&c), BTreeSet::from(["b0".to_owned(), "b1".to_owned()]));
        assert_eq!(r.publish_owner(&c).unwrap().id, "b0", "publishes switch only at commit");
        let drain = now + Duration::from_secs(1);
        r.commit(next, now, drain);
        assert_eq!(r.publish_owner(&c).unwrap().id, "b1");
        assert_eq!(r.interest_owners(&c).len(), 2, "old owner kept while draining");
        assert!(r.expire(drain));
        assert_eq!(r.interest_owners(&c), BTreeSet::from(["b1".to_owned()]));
    }

    #[test]
    fn a_dead_broker_is_routed_around_by_the_leave_rule() {
        let now = Instant::now();
        let mut r = Routing::default();
        r.welcome(table(3), now, now);
        assert!(r.broker_died("b0"));
        assert!(!r.broker_died("b0"));
        assert_eq!(r.effective().slots, table(3).leave("b0").slots);
        let t = table(3);
        for i in 0..1000 {
            let c = format!("x{i}");
            let was = &t.owner(&c).unwrap().id;
            let now_ = r.publish_owner(&c).unwrap().id;
            if was == "b0" {
                assert_eq!(now_, "b2", "{c}: a dead broker's channels go to the last slot's broker");
            } else {
                assert_eq!(&now_, was, "{c}: live brokers keep their channels until a two-phase commit");
            }
        }
        // The state server later commits the leave: the dead broker's channels stay where they went.
        r.commit(table(3).leave("b0"), now, now);
        assert!(r.dead().is_empty());
        for i in 0..1000 {
            let c = format!("x{i}");
            if t.owner(&c).unwrap().id == "b0" {
                assert_eq!(r.publish_owner(&c).unwrap().id, "b2");
            }
        }
    }

    #[test]
    fn frontends_that_learn_of_deaths_in_different_orders_agree() {
        let now = Instant::now();
        let (mut a, mut z) = (Routing::default(), Routing::default());
        a.welcome(table(5), now, now);
        z.welcome(table(5), now, now);
        a.broker_died("b1");
        a.broker_died("b3");
        z.broker_died("b3");
        z.broker_died("b1");
        assert_eq!(a.effective(), z.effective());
        for i in 0..1000 {
            let c = format!("x{i}");
            assert_eq!(a.publish_owner(&c), z.publish_owner(&c));
        }
    }

    #[test]
    fn stale_tables_are_ignored() {
        let now = Instant::now();
        let mut r = Routing::default();
        r.welcome(table(2), now, now);
        assert!(!r.welcome(table(1), now, now));
        r.commit(table(1), now, now);
        assert_eq!(r.committed().len(), 2);
    }
}
