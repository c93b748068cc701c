//! What travels toward one socket: the bounded queue other tasks push into,
//! and the shared, encode-once publication.
//!
//! A [`Publication`] is created once per publish and shared by `Arc` among
//! all local subscribers. Its wire bytes are made lazily, at most once per
//! codec, by whichever subscriber needs them first; the others clone the
//! same `Bytes`. Nothing here blocks: a full queue means the socket is a
//! slow consumer, and it is told to close rather than buffered without bound.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use protocol::codes::CloseCode;
use protocol::{Codec, Outbound};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

/// A message on a channel, encoded at most once per codec.
#[derive(Debug)]
pub struct Publication {
    pub channel: Arc<str>,
    pub data: Option<Value>,
    encoded: [OnceLock<Bytes>; 2],
}

impl Publication {
    #[must_use]
    pub fn new(channel: Arc<str>, data: Option<Value>) -> Arc<Self> {
        Arc::new(Self { channel, data, encoded: [OnceLock::new(), OnceLock::new()] })
    }

    /// The `#publish` packet in `codec`, encoding it on first use.
    pub fn encoded(&self, codec: Codec, encodes: &AtomicU64) -> Bytes {
        self.encoded[codec.index()]
            .get_or_init(|| {
                encodes.fetch_add(1, Ordering::Relaxed);
                codec.encode(&Outbound::Publish { channel: &self.channel, data: self.data.as_ref() })
            })
            .clone()
    }
}

/// One item in a socket's outbound queue. Kept at two words: tokio's bounded
/// queue allocates its first block of 32 slots when the socket opens, so every
/// byte here costs every idle socket 32 bytes (the rare kick is boxed).
#[derive(Debug)]
pub enum Outgoing {
    Publication(Arc<Publication>),
    /// Remove the socket from a channel and tell it with `#kickOut`.
    KickOut(Box<Kick>),
}

/// A `#kickOut`: the channel and the reason given to the client.
#[derive(Debug)]
pub struct Kick {
    pub channel: String,
    pub message: Option<String>,
}

/// Out-of-band requests to a socket's task: they must get through even when
/// its queue is full.
#[derive(Debug, Default)]
pub struct Control {
    close_code: AtomicU16,
    notify: Notify,
}

impl Control {
    /// Asks the socket to close with `code`. The first request wins.
    pub fn request_close(&self, code: CloseCode) {
        if self.close_code.compare_exchange(0, code.code, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.notify.notify_one();
        }
    }

    /// Resolves once a close was requested, with its code.
    pub async fn close_requested(&self) -> CloseCode {
        loop {
            let code = self.close_code.load(Ordering::Acquire);
            if code != 0 {
                return CloseCode::from_code(code).unwrap_or(protocol::codes::INTERNAL_ERROR);
            }
            self.notify.notified().await;
        }
    }
}

/// How other tasks reach one socket. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: u64,
    tx: mpsc::Sender<Outgoing>,
    control: Arc<Control>,
}

/// Why a push did not reach the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue was full: the socket has been told to close as a slow consumer.
    SlowConsumer,
    /// The socket is gone.
    Closed,
}

impl SessionHandle {
    /// A handle and the receiving end of its queue of `capacity` items.
    #[must_use]
    pub fn new(id: u64, capacity: usize) -> (Self, mpsc::Receiver<Outgoing>, Arc<Control>) {
        let (tx, rx) = mpsc::channel(capacity);
        let control = Arc::new(Control::default());
        (Self { id, tx, control: control.clone() }, rx, control)
    }

    /// Queues an item without waiting. A full queue closes the socket with
    /// `SLOW_CONSUMER`: its client reconnects and resubscribes, which is
    /// better than unbounded memory or silently missing messages.
    pub fn push(&self, item: Outgoing) -> Result<(), PushError> {
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.control.request_close(protocol::codes::SLOW_CONSUMER);
                Err(PushError::SlowConsumer)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PushError::Closed),
        }
    }

    pub fn close(&self, code: CloseCode) {
        self.control.request_close(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_queue_slot_is_two_words() {
        // Every idle socket pays 32 slots of its queue up front (see `Outgoing`).
        assert_eq!(std::mem::size_of::<Outgoing>(), 2 * std::mem::size_of::<usize>());
    }

    #[test]
    fn a_publication_is_encoded_once_per_codec() {
        let encodes = AtomicU64::new(0);
        let p = Publication::new("c".into(), Some(json!({"x": 1})));
        let a = p.encoded(Codec::Json, &encodes);
        for _ in 0..100 {
            assert_eq!(p.encoded(Codec::Json, &encodes), a);
        }
        assert_eq!(encodes.load(Ordering::Relaxed), 1);
        p.encoded(Codec::MinBin, &encodes);
        p.encoded(Codec::MinBin, &encodes);
        assert_eq!(encodes.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_full_queue_requests_a_slow_consumer_close() {
        let (h, _rx, control) = SessionHandle::new(1, 2);
        let p = Publication::new("c".into(), None);
        assert_eq!(h.push(Outgoing::Publication(p.clone())), Ok(()));
        assert_eq!(h.push(Outgoing::Publication(p.clone())), Ok(()));
        assert_eq!(h.push(Outgoing::Publication(p)), Err(PushError::SlowConsumer));
        assert_eq!(control.close_requested().await, protocol::codes::SLOW_CONSUMER);
    }
}
