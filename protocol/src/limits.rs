//! Default bounds shared by nodes and tests. Every queue and every input has a
//! bound; these are the values used when the operator sets none.

use std::time::Duration;

/// Largest WebSocket message accepted from a client (1 MiB).
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Longest channel name, in bytes.
pub const MAX_CHANNEL_NAME_BYTES: usize = 256;
/// Channels one socket may be subscribed to at once.
pub const MAX_SUBSCRIPTIONS_PER_SOCKET: usize = 1000;
/// Packets per second one socket may send (a token bucket; bursts up to this many).
pub const INBOUND_PACKETS_PER_SECOND: u32 = 1000;
/// Frames queued toward one socket before it is closed as a slow consumer.
pub const OUTBOUND_QUEUE_FRAMES: usize = 1024;
/// Packets in one inbound batch frame.
pub const MAX_PACKETS_PER_FRAME: usize = 256;
/// Nesting depth of decoded MessagePack values (serde_json has its own, 128).
pub const MAX_VALUE_DEPTH: usize = 64;
/// Interval between the server's pings (SocketCluster: 8 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(8);
/// Time a client has to answer pings, advertised in the handshake (SocketCluster v19: 20 s).
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Time a new socket has to send `#handshake`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of a token the server signs when the caller gives none (SocketCluster: 1 day).
pub const AUTH_DEFAULT_EXPIRY: Duration = Duration::from_secs(86_400);
