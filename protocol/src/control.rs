//! Frames between a node (broker or frontend) and the state server.
//!
//! A node connects and sends `Hello` with the cluster key, its role, and the
//! last slot table it committed (so a restarted state server can rebuild its
//! state: the highest committed epoch wins). The state server answers
//! `Welcome` with the current table. A change of table is two-phase:
//! `Prepare(e+1)` to every frontend, which subscribes its channels at their
//! new owners and answers `PrepareAck`, then `Commit(e+1)` to every node.

use serde::{Deserialize, Serialize};

use crate::slots::SlotTable;

/// Version of the control protocol, checked at `Hello`.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A broker and the address frontends reach its fabric port at.
    Broker {
        addr: String,
    },
    Frontend,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlFrame {
    /// Node → state server, first frame.
    Hello { key: String, node: String, role: Role, version: u32, committed: Option<SlotTable> },
    /// State server → node: accepted; the current committed table.
    Welcome { table: SlotTable },
    /// State server → node: refused; the link closes.
    Refused { reason: String },
    /// State server → frontends: subscribe at the owners of `table`, keep the
    /// old subscriptions, then answer `PrepareAck`.
    Prepare { table: SlotTable },
    /// Frontend → state server.
    PrepareAck { epoch: u64 },
    /// State server → every node: `table` is now the table; publish to its owners.
    Commit { table: SlotTable },
    /// Broker → state server: take me out of the table (graceful leave).
    Leave,
    /// Liveness, either way.
    Heartbeat,
}
