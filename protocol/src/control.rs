//! Frames between a node (broker or frontend) and the state server.
//!
//! A node connects and sends `Hello` with the cluster key, its role, and the
//! last slot table it committed (so a restarted state server can rebuild its
//! state: the highest committed epoch wins). The state server answers
//! `Welcome` with the current table. A change of table is two-phase:
//! `Prepare(e+1)` to every frontend, which subscribes its channels at their
//! new owners and answers `PrepareAck`, then `Commit(e+1)` to every node.
//!
//! Version 2 adds load reports (`Load`, sent in place of `Heartbeat`) and a
//! status request (`StatusRequest` → `StatusReply`). Frames are MessagePack
//! enums, so a peer that does not know a variant cannot decode it and drops
//! the link: a node sends version-2 frames only on a link whose `Hello` said
//! version 2 and was welcomed, and a version-1 server refuses a version-2
//! `Hello` — the node then says `Hello` again with version 1 (see
//! [`MIN_VERSION`]).

use serde::{Deserialize, Serialize};

use crate::slots::SlotTable;

/// Version of the control protocol this code speaks, sent in `Hello`.
pub const VERSION: u32 = 2;
/// Oldest version still accepted: a server welcomes `MIN_VERSION..=VERSION`
/// and sends a version-1 node nothing it cannot decode; a node refused at
/// `VERSION` says `Hello` again at `MIN_VERSION` (an older server).
pub const MIN_VERSION: u32 = 1;

/// Most bytes of a `StatusReply`'s JSON: a status of `MAX_NODES` nodes is far
/// below this; a larger one is not sent (the asker times out and answers from
/// what it knows).
pub const MAX_STATUS_JSON_BYTES: usize = 192 * 1024;

/// A node's load, as it reports it (version 2). Counts, not rates: what an
/// operator compares across nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Frontend: open client sockets. Broker: open fabric links.
    pub connections: u64,
    /// Frontend: distinct authenticated chat users on its sockets (0 without the chat). Broker: 0.
    pub users: u64,
    /// Frontend: channels with local subscribers. Broker: channels some link is interested in.
    pub channels: u64,
}

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
    /// Node → state server (version 2): its current load; also a heartbeat.
    Load { load: NodeLoad },
    /// Node → state server (version 2): asks for the cluster status; `id` names the reply.
    StatusRequest { id: u64 },
    /// State server → the asking node (version 2): the status as the JSON `/status` serves.
    /// JSON rather than typed fields so the status can grow without a new frame version.
    StatusReply { id: u64, json: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{decode, encode};
    use bytes::BytesMut;

    fn round_trip(f: &ControlFrame) -> ControlFrame {
        let mut buf = BytesMut::new();
        encode(f, &mut buf);
        let back = decode::<ControlFrame>(&mut buf, 1 << 20).unwrap().unwrap();
        assert!(buf.is_empty());
        back
    }

    #[test]
    fn version_two_frames_round_trip() {
        let frames = [
            ControlFrame::Load { load: NodeLoad { connections: 3, users: 2, channels: 7 } },
            ControlFrame::StatusRequest { id: u64::MAX },
            ControlFrame::StatusReply { id: 9, json: r#"{"epoch":4}"#.into() },
        ];
        for f in &frames {
            assert_eq!(&round_trip(f), f);
        }
    }

    /// Variants are encoded by name, so the version-1 frames are the same bytes as before and
    /// version-1 peers still read them; only the new names are unknown to them.
    #[test]
    fn version_one_frames_keep_their_encoding() {
        let mut buf = BytesMut::new();
        encode(&ControlFrame::Heartbeat, &mut buf);
        encode(&ControlFrame::PrepareAck { epoch: 5 }, &mut buf);
        assert_eq!(&buf[..], b"\0\0\0\x0a\xa9Heartbeat\0\0\0\x0e\x81\xaaPrepareAck\x91\x05".as_slice());
    }

    #[test]
    fn a_hello_carries_the_version_where_version_one_did() {
        let hello = ControlFrame::Hello {
            key: "k".into(),
            node: "f1".into(),
            role: Role::Frontend,
            version: MIN_VERSION,
            committed: None,
        };
        assert_eq!(round_trip(&hello), hello);
    }
}
