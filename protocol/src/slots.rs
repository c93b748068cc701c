//! The slot table: broker ids by slot, and the rules for joining and leaving.
//!
//! A channel's owner is `slots[jump_consistent_hash(channel_hash(channel), n)]`.
//! A joining broker takes the next slot (only ~1/n of channels move, all to
//! it). A leaving broker's slot is taken by the broker in the last slot, and
//! the last slot disappears: only the leaver's and the last broker's
//! channels move, instead of every channel after the hole.

use serde::{Deserialize, Serialize};

use crate::hash::{channel_hash, jump_consistent_hash};

/// A broker as the cluster knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Stable, unique id; what ownership is decided by.
    pub id: String,
    /// Where frontends reach its fabric port (`host:port`).
    pub addr: String,
}

/// Broker by slot, with the epoch it was committed at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotTable {
    /// Grows by one with every change; 0 is the empty table nobody committed.
    pub epoch: u64,
    pub slots: Vec<BrokerInfo>,
}

impl SlotTable {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The slot that owns `channel`, if there is any broker.
    #[must_use]
    pub fn slot_of(&self, channel: &str) -> Option<usize> {
        let n = u32::try_from(self.slots.len()).ok().filter(|n| *n > 0)?;
        Some(jump_consistent_hash(channel_hash(channel), n) as usize)
    }

    /// The broker that owns `channel`.
    #[must_use]
    pub fn owner(&self, channel: &str) -> Option<&BrokerInfo> {
        self.slot_of(channel).map(|s| &self.slots[s])
    }

    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        self.slots.iter().any(|b| b.id == id)
    }

    /// The table after `broker` joins (next slot, next epoch). Joining twice changes nothing.
    #[must_use]
    pub fn join(&self, broker: BrokerInfo) -> SlotTable {
        if self.contains(&broker.id) {
            return self.clone();
        }
        let mut slots = self.slots.clone();
        slots.push(broker);
        SlotTable { epoch: self.epoch + 1, slots }
    }

    /// The table after `id` leaves: the last slot's broker takes its slot.
    /// Leaving when absent changes nothing.
    #[must_use]
    pub fn leave(&self, id: &str) -> SlotTable {
        let Some(i) = self.slots.iter().position(|b| b.id == id) else {
            return self.clone();
        };
        let mut slots = self.slots.clone();
        slots.swap_remove(i);
        SlotTable { epoch: self.epoch + 1, slots }
    }

    /// The table after every broker in `gone` leaves, applied from the
    /// highest slot down. Every node that knows the same table and the same
    /// set gets the same result, whatever order it learnt of the departures
    /// in: this is how frontends reroute around dead brokers on their own.
    #[must_use]
    pub fn without(&self, gone: &[&str]) -> SlotTable {
        let mut slots: Vec<usize> =
            self.slots.iter().enumerate().filter(|(_, b)| gone.contains(&b.id.as_str())).map(|(i, _)| i).collect();
        slots.sort_unstable_by(|a, b| b.cmp(a));
        let mut table = self.clone();
        for i in slots {
            let id = self.slots[i].id.clone();
            table = table.leave(&id);
        }
        if table.slots != self.slots {
            table.epoch = self.epoch + 1;
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(i: usize) -> BrokerInfo {
        BrokerInfo { id: format!("b{i}"), addr: format!("127.0.0.1:{}", 9000 + i) }
    }

    fn table(n: usize) -> SlotTable {
        (0..n).fold(SlotTable::default(), |t, i| t.join(broker(i)))
    }

    fn channels() -> impl Iterator<Item = String> {
        (0..20_000).map(|i| format!("room/{i}"))
    }

    #[test]
    fn joining_moves_channels_only_to_the_new_broker() {
        let before = table(4);
        let after = before.join(broker(4));
        assert_eq!(after.epoch, before.epoch + 1);
        let mut moved = 0;
        for c in channels() {
            let (a, b) = (before.owner(&c).unwrap(), after.owner(&c).unwrap());
            if a != b {
                assert_eq!(b.id, "b4");
                moved += 1;
            }
        }
        assert!((3_000..5_000).contains(&moved), "{moved} of 20000 moved, ~1/5 expected");
    }

    #[test]
    fn leaving_moves_exactly_the_channels_of_the_leaver_and_of_the_last_broker() {
        let before = table(5);
        let after = before.leave("b1");
        assert_eq!(after.slots.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), ["b0", "b4", "b2", "b3"]);
        for c in channels() {
            let (a, b) = (&before.owner(&c).unwrap().id, &after.owner(&c).unwrap().id);
            if a == "b1" {
                assert_eq!(b, "b4", "{c}: the leaver's channels go to the last broker");
            } else if a == "b4" {
                assert_ne!(b, "b1");
            } else {
                assert_eq!(a, b, "{c} moved although neither the leaver's nor the last broker's");
            }
        }
    }

    #[test]
    fn leaving_the_last_slot_moves_only_its_channels() {
        let before = table(3);
        let after = before.leave("b2");
        for c in channels() {
            let a = &before.owner(&c).unwrap().id;
            if a != "b2" {
                assert_eq!(a, &after.owner(&c).unwrap().id);
            }
        }
    }

    #[test]
    fn removing_several_brokers_does_not_depend_on_the_order_they_are_named() {
        let t = table(6);
        assert_eq!(t.without(&["b1", "b4"]), t.without(&["b4", "b1"]));
        assert_eq!(t.without(&["b1", "b4"]).epoch, t.epoch + 1);
        assert_eq!(t.without(&["nobody"]), t);
    }

    #[test]
    fn an_empty_table_owns_nothing() {
        assert!(SlotTable::default().owner("x").is_none());
    }
}
