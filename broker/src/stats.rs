//! Counters of one broker. Plain atomics, owned by the broker (no global
//! registry, so several brokers can share a process): cheap on the fan-out
//! path, read by `/health`, `/metrics` (see [`crate::metrics`]) and tests.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde_json::{json, Map, Value};

/// Why a fabric link was refused at `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    WrongKey,
    WrongVersion,
    /// The first frame was a valid frame, but not `Hello`.
    NotHello,
    /// No whole frame within the hello timeout.
    HelloTimeout,
    FrameTooBig,
    MalformedFrame,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::WrongKey,
        Refusal::WrongVersion,
        Refusal::NotHello,
        Refusal::HelloTimeout,
        Refusal::FrameTooBig,
        Refusal::MalformedFrame,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Refusal::WrongKey => "wrong_key",
            Refusal::WrongVersion => "wrong_version",
            Refusal::NotHello => "not_hello",
            Refusal::HelloTimeout => "hello_timeout",
            Refusal::FrameTooBig => "frame_too_big",
            Refusal::MalformedFrame => "malformed_frame",
        }
    }
}

/// Why the broker closed a welcomed fabric link (a peer closing its end, or
/// the broker shutting down, is not counted here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closure {
    FrameTooBig,
    MalformedFrame,
    /// A frame only a broker sends (`Hello` again, `Message`, acks…).
    UnexpectedFrame,
    /// Its queue was full: it did not read fast enough.
    SlowLink,
    /// Nothing arrived for the link timeout.
    LinkTimeout,
}

impl Closure {
    pub const ALL: [Closure; 5] = [
        Closure::FrameTooBig,
        Closure::MalformedFrame,
        Closure::UnexpectedFrame,
        Closure::SlowLink,
        Closure::LinkTimeout,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Closure::FrameTooBig => "frame_too_big",
            Closure::MalformedFrame => "malformed_frame",
            Closure::UnexpectedFrame => "unexpected_frame",
            Closure::SlowLink => "slow_link",
            Closure::LinkTimeout => "link_timeout",
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Welcomed links now open.
    pub links_open: AtomicI64,
    pub links_accepted: AtomicU64,
    pub links_welcomed: AtomicU64,
    pub publishes_in: AtomicU64,
    /// `Message` frames queued toward links (one per interested link per publish).
    pub messages_out: AtomicU64,
    /// Frames of any kind queued toward links.
    pub frames_out: AtomicU64,
    /// Write calls on fabric links: one per writer turn, whatever number of frames it carries.
    pub writes: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Bytes read from welcomed links (their `Hello` excluded).
    pub bytes_in: AtomicU64,
    pub accept_errors: AtomicU64,
    /// Connections to the state server that were welcomed.
    pub control_sessions: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    closed: [AtomicU64; Closure::ALL.len()],
}

impl Stats {
    pub fn refuse(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    #[must_use]
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    pub fn close(&self, why: Closure) {
        self.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    #[must_use]
    pub fn closed(&self, why: Closure) -> u64 {
        self.closed[why as usize].load(Ordering::Relaxed)
    }

    /// All counters as JSON.
    #[must_use]
    pub fn snapshot(&self) -> Value {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let refused: Map<String, Value> =
            Refusal::ALL.iter().map(|w| (w.name().to_owned(), self.refused(*w).into())).collect();
        let closed: Map<String, Value> =
            Closure::ALL.iter().map(|w| (w.name().to_owned(), self.closed(*w).into())).collect();
        json!({
            "links_open": self.links_open.load(Ordering::Relaxed),
            "links_accepted": r(&self.links_accepted),
            "links_welcomed": r(&self.links_welcomed),
            "publishes_in": r(&self.publishes_in),
            "messages_out": r(&self.messages_out),
            "frames_out": r(&self.frames_out),
            "writes": r(&self.writes),
            "bytes_out": r(&self.bytes_out),
            "bytes_in": r(&self.bytes_in),
            "accept_errors": r(&self.accept_errors),
            "control_sessions": r(&self.control_sessions),
            "refused_links": refused,
            "closed_links": closed,
        })
    }
}
