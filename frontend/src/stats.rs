//! Counters of one node. Plain atomics: cheap on the hot path, read by
//! `/health`, tests and benchmarks (Prometheus export comes with the metrics work).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde_json::{json, Map, Value};

/// Why the node refused a client's input or closed its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    MalformedFrame,
    InvalidPacket,
    UnknownEvent,
    RateLimited,
    FrameTooBig,
    UnsupportedData,
    HandshakeTimeout,
    PongTimeout,
    BeforeHandshake,
    HandshakeRejected,
    LimitExceeded,
    SlowConsumer,
    BadHttpRequest,
}

impl Refusal {
    pub const ALL: [Refusal; 13] = [
        Refusal::MalformedFrame,
        Refusal::InvalidPacket,
        Refusal::UnknownEvent,
        Refusal::RateLimited,
        Refusal::FrameTooBig,
        Refusal::UnsupportedData,
        Refusal::HandshakeTimeout,
        Refusal::PongTimeout,
        Refusal::BeforeHandshake,
        Refusal::HandshakeRejected,
        Refusal::LimitExceeded,
        Refusal::SlowConsumer,
        Refusal::BadHttpRequest,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Refusal::MalformedFrame => "malformed_frame",
            Refusal::InvalidPacket => "invalid_packet",
            Refusal::UnknownEvent => "unknown_event",
            Refusal::RateLimited => "rate_limited",
            Refusal::FrameTooBig => "frame_too_big",
            Refusal::UnsupportedData => "unsupported_data",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::PongTimeout => "pong_timeout",
            Refusal::BeforeHandshake => "before_handshake",
            Refusal::HandshakeRejected => "handshake_rejected",
            Refusal::LimitExceeded => "limit_exceeded",
            Refusal::SlowConsumer => "slow_consumer",
            Refusal::BadHttpRequest => "bad_http_request",
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub sockets_open: AtomicI64,
    pub sockets_accepted: AtomicU64,
    pub handshakes: AtomicU64,
    pub publishes_in: AtomicU64,
    /// Packets written to clients (replies, pushes, events).
    pub packets_out: AtomicU64,
    /// WebSocket messages written (a batch is one).
    pub frames_out: AtomicU64,
    /// Publications encoded into a codec: one per publish per codec in use.
    pub publish_encodes: AtomicU64,
    pub accept_errors: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
}

impl Stats {
    pub fn refuse(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    #[must_use]
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// All counters as JSON.
    #[must_use]
    pub fn snapshot(&self) -> Value {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let refused: Map<String, Value> =
            Refusal::ALL.iter().map(|w| (w.name().to_owned(), self.refused(*w).into())).collect();
        json!({
            "sockets_open": self.sockets_open.load(Ordering::Relaxed),
            "sockets_accepted": r(&self.sockets_accepted),
            "handshakes": r(&self.handshakes),
            "publishes_in": r(&self.publishes_in),
            "packets_out": r(&self.packets_out),
            "frames_out": r(&self.frames_out),
            "publish_encodes": r(&self.publish_encodes),
            "accept_errors": r(&self.accept_errors),
            "refused": refused,
        })
    }
}
