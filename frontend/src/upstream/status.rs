//! The cluster as the state server sees it, for admin pages: asked over the control link
//! (`StatusRequest` → `StatusReply`, control protocol version 2), and answered from this node's own
//! view (`stale: true`) whenever the state server cannot say — link down, a version-1 server that does
//! not know the frames, no reply in time, or too many questions already waiting. The caller never
//! waits longer than [`STATUS_TIMEOUT`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use protocol::control::{ControlFrame, NodeLoad};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// Longest wait for the state server's answer.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Questions waiting for an answer at once; one more is answered from the local view at once.
pub const MAX_WAITING: usize = 16;

/// Why the answer comes from this node's own view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// No link to the state server (down, unreachable, or not welcomed yet).
    NoLink,
    /// The state server speaks control protocol version 1: no status over the link.
    OldServer,
    /// [`MAX_WAITING`] questions are already waiting.
    Busy,
    /// No answer within [`STATUS_TIMEOUT`] (or the link went meanwhile).
    Timeout,
}

impl Unavailable {
    /// What the reply's `staleReason` says.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Unavailable::NoLink => "state server unreachable",
            Unavailable::OldServer => "state server too old to report the cluster (control protocol 1)",
            Unavailable::Busy => "too many status requests waiting",
            Unavailable::Timeout => "state server did not answer in time",
        }
    }
}

/// The control link as status questions see it.
enum Link {
    Down,
    Version1,
    /// A welcomed version-2 link and its outbound queue.
    Version2(mpsc::Sender<ControlFrame>),
}

/// Questions in flight on the control link.
pub(super) struct StatusRequests {
    next_id: AtomicU64,
    inner: Mutex<Requests>,
}

struct Requests {
    link: Link,
    waiting: HashMap<u64, oneshot::Sender<String>>,
}

impl Default for StatusRequests {
    fn default() -> Self {
        Self { next_id: AtomicU64::new(1), inner: Mutex::new(Requests { link: Link::Down, waiting: HashMap::new() }) }
    }
}

impl StatusRequests {
    fn lock(&self) -> MutexGuard<'_, Requests> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A link was welcomed at `version`; `tx` is its outbound queue.
    pub(super) fn link_up(&self, version: u32, tx: mpsc::Sender<ControlFrame>) {
        self.lock().link = if version >= 2 { Link::Version2(tx) } else { Link::Version1 };
    }

    /// The link ended: questions waiting on it get their local answer now.
    pub(super) fn link_down(&self) {
        let mut r = self.lock();
        r.link = Link::Down;
        r.waiting.clear();
    }

    /// A `StatusReply` arrived; one for a question that gave up meanwhile is dropped.
    pub(super) fn on_reply(&self, id: u64, json: String) {
        if let Some(tx) = self.lock().waiting.remove(&id) {
            let _ = tx.send(json);
        }
    }

    /// Asks the state server; the status JSON, or why not.
    pub(super) async fn ask(&self) -> Result<String, Unavailable> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = {
            let mut r = self.lock();
            let tx = match &r.link {
                Link::Down => return Err(Unavailable::NoLink),
                Link::Version1 => return Err(Unavailable::OldServer),
                Link::Version2(tx) => tx.clone(),
            };
            if r.waiting.len() >= MAX_WAITING {
                return Err(Unavailable::Busy);
            }
            if tx.try_send(ControlFrame::StatusRequest { id }).is_err() {
                return Err(Unavailable::Busy);
            }
            let (reply_tx, reply_rx) = oneshot::channel();
            r.waiting.insert(id, reply_tx);
            reply_rx
        };
        let answer = tokio::time::timeout(STATUS_TIMEOUT, rx).await;
        // Whatever happened, the question no longer waits.
        self.lock().waiting.remove(&id);
        match answer {
            Ok(Ok(json)) => Ok(json),
            Ok(Err(_)) | Err(_) => Err(Unavailable::Timeout),
        }
    }
}

/// This node's row: what it would report to the state server.
pub(super) fn this_frontend(id: &str, load: NodeLoad, connected: bool) -> Value {
    json!({ "id": id, "peer": "", "connected": connected, "last_seen_ms": 0, "load": load })
}

/// The state server's answer, marked fresh and naming this node.
pub(super) fn fresh(json: &str, this: &str) -> Option<Value> {
    let mut v: Value = serde_json::from_str(json).ok()?;
    let obj = v.as_object_mut()?;
    obj.insert("stale".into(), false.into());
    obj.insert("thisFrontend".into(), this.into());
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(r: &StatusRequests) -> mpsc::Receiver<ControlFrame> {
        let (tx, rx) = mpsc::channel(4);
        r.link_up(2, tx);
        rx
    }

    #[tokio::test]
    async fn an_answer_reaches_the_question_with_its_id() {
        let r = std::sync::Arc::new(StatusRequests::default());
        let mut link = up(&r);
        let asking = tokio::spawn({
            let r = r.clone();
            async move { r.ask().await }
        });
        let Some(ControlFrame::StatusRequest { id }) = link.recv().await else { panic!("no request") };
        r.on_reply(id + 1000, "{\"wrong\":1}".into());
        r.on_reply(id, "{\"epoch\":3}".into());
        assert_eq!(asking.await.unwrap(), Ok("{\"epoch\":3}".into()));
    }

    #[tokio::test]
    async fn without_a_version_2_link_the_answer_is_local_at_once() {
        let r = StatusRequests::default();
        assert_eq!(r.ask().await, Err(Unavailable::NoLink));
        let (tx, _rx) = mpsc::channel(4);
        r.link_up(1, tx);
        assert_eq!(r.ask().await, Err(Unavailable::OldServer));
    }

    /// Real time: STATUS_TIMEOUT (2 s) passes once in each of these two tests.
    #[tokio::test]
    async fn silence_times_out_and_a_lost_link_answers_at_once() {
        let r = std::sync::Arc::new(StatusRequests::default());
        let _link = up(&r);
        let started = tokio::time::Instant::now();
        assert_eq!(r.ask().await, Err(Unavailable::Timeout));
        assert!(started.elapsed() >= STATUS_TIMEOUT);
        assert!(r.lock().waiting.is_empty());

        let asking = tokio::spawn({
            let r = r.clone();
            async move { r.ask().await }
        });
        while r.lock().waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = tokio::time::Instant::now();
        r.link_down();
        assert_eq!(asking.await.unwrap(), Err(Unavailable::Timeout));
        assert!(started.elapsed() < STATUS_TIMEOUT);
    }

    #[tokio::test]
    async fn questions_waiting_at_once_are_bounded() {
        let r = std::sync::Arc::new(StatusRequests::default());
        let (tx, _rx) = mpsc::channel(MAX_WAITING * 2);
        r.link_up(2, tx);
        let waiting: Vec<_> = (0..MAX_WAITING)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move { r.ask().await })
            })
            .collect();
        for _ in 0..200 {
            if r.lock().waiting.len() == MAX_WAITING {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(r.lock().waiting.len(), MAX_WAITING);
        assert_eq!(r.ask().await, Err(Unavailable::Busy));
        for w in waiting {
            assert_eq!(w.await.unwrap(), Err(Unavailable::Timeout));
        }
    }

    #[test]
    fn a_fresh_answer_names_this_frontend_and_garbage_is_refused() {
        let v = fresh("{\"epoch\":2,\"frontends\":[]}", "f1").unwrap();
        assert_eq!(v, json!({"epoch": 2, "frontends": [], "stale": false, "thisFrontend": "f1"}));
        assert!(fresh("[1]", "f1").is_none());
        assert!(fresh("{", "f1").is_none());
    }
}
