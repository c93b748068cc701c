//! Frames on a fabric link between a frontend and a broker.
//!
//! The frontend connects and sends `Hello` with the cluster key; the broker
//! answers `Welcome` or `Refused` and closes. After that, both sides stream
//! frames. Payloads are opaque bytes (the JSON of a client's publish data):
//! a broker never looks inside them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Version of the fabric protocol, checked at `Hello`.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FabricFrame {
    /// Frontend → broker, first frame.
    Hello {
        key: String,
        node: String,
        version: u32,
    },
    /// Broker → frontend: accepted; `node` is the broker's id.
    Welcome {
        node: String,
    },
    /// Either way: refused (wrong key, wrong version, bad frame); the link closes.
    Refused {
        reason: String,
    },
    /// Frontend → broker: deliver this channel's messages on this link.
    Subscribe {
        channel: String,
    },
    Unsubscribe {
        channel: String,
    },
    /// Frontend → broker: a message for the channel's subscribers. With
    /// `ack`, the broker answers `PublishAck` after fanning it out, so a
    /// message to the publishing frontend itself arrives before the ack.
    Publish {
        channel: String,
        payload: Bytes,
        ack: Option<u64>,
    },
    PublishAck {
        id: u64,
    },
    /// Broker → frontend: a message on a channel this link subscribed to.
    Message {
        channel: String,
        payload: Bytes,
    },
    /// Frontend → broker: answered with `BarrierAck` once every earlier frame
    /// on this link has been handled (e.g. subscriptions are in place).
    Barrier {
        id: u64,
    },
    BarrierAck {
        id: u64,
    },
    /// Liveness, either way; answered with `Pong`.
    Ping,
    Pong,
}
