//! One fabric link: a frontend's TCP connection to this broker.
//!
//! The connection's task checks `Hello` (key compared in constant time,
//! version), then reads and handles frames in order; a second task writes.
//! Everything toward the peer (`Welcome`, fan-out `Message`s, acks, `Pong`)
//! goes through one bounded queue of encoded frames, so what the reader
//! answers is ordered after everything it caused earlier. The writer sends
//! what is queued in one write per turn (up to [`WRITE_BUDGET`] bytes). A full
//! queue means the peer does not keep up: the link is closed and counted,
//! never waited for and never buffered without bound. When the link ends,
//! its interest goes with it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use protocol::fabric::{self, FabricFrame};
use protocol::framing::{self, FrameError, MAX_FRAME_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::node::Node;
use crate::router::{Kill, KillReason, LinkHandle};
use crate::stats::{Closure, Refusal};

/// Bytes the writer gathers into one write (a single larger frame goes alone).
pub const WRITE_BUDGET: usize = 256 * 1024;
/// Room the reader makes before each read.
const READ_CHUNK: usize = 8 * 1024;
/// Time the writer gets to flush what is queued once the link ends (e.g. a `Refused`).
const FLUSH_GRACE: Duration = Duration::from_secs(1);
/// Largest first frame. `framing::decode` reserves room for a whole frame as
/// soon as its length prefix arrives, so an unauthenticated peer must not be
/// able to ask for `MAX_FRAME_BYTES`; a `Hello` is a few dozen bytes.
const HELLO_MAX_BYTES: usize = 64 * 1024;
/// Time given to write `Refused` to a peer refused at `Hello`.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one accepted connection until it ends or `close` is cancelled.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    node: Arc<Node>,
    close: CancellationToken,
    tracker: TaskTracker,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);

    let first = tokio::select! {
        () = close.cancelled() => return,
        r = tokio::time::timeout(node.config.hello_timeout, read_frame(&mut rd, &mut buf, HELLO_MAX_BYTES)) => r,
    };
    let frontend = match check_hello(first, &node) {
        Ok(Some(frontend)) => frontend,
        Ok(None) => return,
        Err((why, reason)) => {
            warn!(%peer, reason = why.name(), detail = %reason, "fabric link refused");
            node.stats.refuse(why);
            let mut out = BytesMut::new();
            framing::encode(&FabricFrame::Refused { reason }, &mut out);
            let _ = tokio::time::timeout(REFUSE_WRITE_TIMEOUT, wr.write_all(&out)).await;
            return;
        }
    };

    let id = node.next_link_id();
    tracing::Span::current().record("link", id.0).record("frontend", frontend.as_str());
    let (handle, rx) = LinkHandle::new(id, node.config.link_queue);
    handle.push(encode(&FabricFrame::Welcome { node: node.config.id.clone() }));
    node.router.add_link(handle.clone());
    node.stats.links_welcomed.fetch_add(1, Ordering::Relaxed);
    node.stats.links_open.fetch_add(1, Ordering::Relaxed);
    info!(%peer, "fabric link welcomed");
    let writer = tracker.spawn(write_loop(wr, rx, handle.kill.clone(), node.clone()).in_current_span());

    let end = read_loop(&mut rd, &mut buf, &handle, &node, &close).await;
    match &end {
        End::PeerClosed => debug!("peer closed the link"),
        End::ReadFailed(e) => debug!(error = %e, "reading failed"),
        End::PeerRefused(reason) => info!(%reason, "peer refused the link"),
        End::Shutdown => debug!("closing: broker shutting down"),
        End::Violation(why, detail) => {
            warn!(%peer, reason = why.name(), %detail, "closing fabric link");
            node.stats.close(*why);
            handle.push(encode(&FabricFrame::Refused { reason: detail.clone() }));
        }
        End::Killed => match handle.kill.reason() {
            Some(KillReason::Closure(why)) => {
                warn!(%peer, reason = why.name(), "closing fabric link");
                node.stats.close(why);
            }
            Some(KillReason::WriteFailed) | None => debug!("writer stopped"),
        },
    }
    let channels = node.router.remove_link(id);
    node.stats.links_open.fetch_sub(1, Ordering::Relaxed);
    debug!(channels, "link interest removed");

    // The writer ends once every sender is gone and the queue is flushed (or
    // at once if the link was killed); it gets a bounded time for that.
    let kill = handle.kill.clone();
    drop(handle);
    let mut writer = writer;
    if tokio::time::timeout(FLUSH_GRACE, &mut writer).await.is_err() {
        kill.stop();
        let _ = writer.await;
    }
}

/// The first frame, judged: `Ok(Some(frontend))` welcomes, `Ok(None)` is a
/// peer that left (nothing to answer), `Err` is a refusal and its reason.
fn check_hello(
    first: Result<Result<Option<FabricFrame>, ReadError>, tokio::time::error::Elapsed>,
    node: &Node,
) -> Result<Option<String>, (Refusal, String)> {
    let frame = match first {
        Err(_) => {
            let ms = node.config.hello_timeout.as_millis();
            return Err((Refusal::HelloTimeout, format!("no Hello within {ms} ms")));
        }
        Ok(Err(ReadError::Io(e))) => {
            debug!(error = %e, "reading Hello failed");
            return Ok(None);
        }
        Ok(Err(ReadError::Frame(e))) => return Err(frame_refusal(&e)),
        Ok(Ok(None)) => return Ok(None),
        Ok(Ok(Some(frame))) => frame,
    };
    match frame {
        FabricFrame::Hello { key, node: frontend, version } => {
            if !framing::keys_match(key.as_bytes(), node.config.cluster_key.as_bytes()) {
                Err((Refusal::WrongKey, "wrong cluster key".into()))
            } else if version != fabric::VERSION {
                Err((
                    Refusal::WrongVersion,
                    format!("fabric version {version} not supported; this broker speaks {}", fabric::VERSION),
                ))
            } else {
                Ok(Some(frontend))
            }
        }
        other => Err((Refusal::NotHello, format!("expected Hello first, got {}", frame_name(&other)))),
    }
}

fn frame_refusal(e: &FrameError) -> (Refusal, String) {
    match e {
        FrameError::TooBig { .. } => (Refusal::FrameTooBig, e.to_string()),
        FrameError::Malformed(_) => (Refusal::MalformedFrame, e.to_string()),
    }
}

#[derive(Debug)]
enum ReadError {
    Io(std::io::Error),
    Frame(FrameError),
}

/// Reads until one whole frame of at most `max` bytes is buffered; `Ok(None)` on a clean end of stream.
/// Cancel-safe: bytes read so far stay in `buf`.
async fn read_frame(rd: &mut OwnedReadHalf, buf: &mut BytesMut, max: usize) -> Result<Option<FabricFrame>, ReadError> {
    loop {
        if let Some(frame) = framing::decode(buf, max).map_err(ReadError::Frame)? {
            return Ok(Some(frame));
        }
        buf.reserve(READ_CHUNK);
        if rd.read_buf(buf).await.map_err(ReadError::Io)? == 0 {
            return Ok(None);
        }
    }
}

/// Why a welcomed link's reader stopped.
#[derive(Debug)]
enum End {
    PeerClosed,
    ReadFailed(std::io::Error),
    PeerRefused(String),
    Shutdown,
    /// The peer broke the protocol: answered with `Refused`, counted.
    Violation(Closure, String),
    /// Stopped from elsewhere (slow link, failed write); the reason is in the link's `Kill`.
    Killed,
}

async fn read_loop(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    link: &LinkHandle,
    node: &Node,
    close: &CancellationToken,
) -> End {
    loop {
        loop {
            match framing::decode::<FabricFrame>(buf, MAX_FRAME_BYTES) {
                Ok(Some(frame)) => {
                    if let Err(end) = handle_frame(frame, link, node) {
                        return end;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let (why, detail) = frame_refusal(&e);
                    let why = if why == Refusal::FrameTooBig { Closure::FrameTooBig } else { Closure::MalformedFrame };
                    return End::Violation(why, detail);
                }
            }
        }
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            () = link.kill.killed() => return End::Killed,
            () = close.cancelled() => return End::Shutdown,
            r = tokio::time::timeout(node.config.link_timeout, rd.read_buf(buf)) => r,
        };
        match read {
            Err(_) => {
                let ms = node.config.link_timeout.as_millis();
                return End::Violation(Closure::LinkTimeout, format!("nothing received for {ms} ms"));
            }
            Ok(Ok(0)) => return End::PeerClosed,
            Ok(Ok(n)) => {
                node.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => return End::ReadFailed(e),
        }
    }
}

/// Handles one frame from a welcomed link. Everything it queues toward
/// this link is ordered after what earlier frames queued.
fn handle_frame(frame: FabricFrame, link: &LinkHandle, node: &Node) -> Result<(), End> {
    match frame {
        FabricFrame::Subscribe { channel } => {
            node.router.subscribe(link.id, &channel);
        }
        FabricFrame::Unsubscribe { channel } => {
            node.router.unsubscribe(link.id, &channel);
        }
        FabricFrame::Publish { channel, payload, ack } => {
            // The frame was decoded just before this call.
            let decoded = Instant::now();
            node.stats.publishes_in.fetch_add(1, Ordering::Relaxed);
            let targets = node.router.targets(&channel);
            if !targets.is_empty() {
                // Encoded once; every target's queue holds the same bytes.
                let frame = encode(&FabricFrame::Message { channel, payload });
                let n = node.router.deliver(&targets, &frame);
                node.stats.messages_out.fetch_add(n as u64, Ordering::Relaxed);
                node.fanout_seconds.observe(decoded.elapsed().as_secs_f64());
            }
            if let Some(id) = ack {
                link.push(encode(&FabricFrame::PublishAck { id }));
            }
        }
        FabricFrame::Barrier { id } => {
            link.push(encode(&FabricFrame::BarrierAck { id }));
        }
        FabricFrame::Ping => {
            link.push(encode(&FabricFrame::Pong));
        }
        FabricFrame::Pong => {}
        FabricFrame::Refused { reason } => return Err(End::PeerRefused(reason)),
        other @ (FabricFrame::Hello { .. }
        | FabricFrame::Welcome { .. }
        | FabricFrame::PublishAck { .. }
        | FabricFrame::Message { .. }
        | FabricFrame::BarrierAck { .. }) => {
            return Err(End::Violation(
                Closure::UnexpectedFrame,
                format!("{} is not a frame a frontend sends", frame_name(&other)),
            ));
        }
    }
    Ok(())
}

fn frame_name(frame: &FabricFrame) -> &'static str {
    match frame {
        FabricFrame::Hello { .. } => "Hello",
        FabricFrame::Welcome { .. } => "Welcome",
        FabricFrame::Refused { .. } => "Refused",
        FabricFrame::Subscribe { .. } => "Subscribe",
        FabricFrame::Unsubscribe { .. } => "Unsubscribe",
        FabricFrame::Publish { .. } => "Publish",
        FabricFrame::PublishAck { .. } => "PublishAck",
        FabricFrame::Message { .. } => "Message",
        FabricFrame::Barrier { .. } => "Barrier",
        FabricFrame::BarrierAck { .. } => "BarrierAck",
        FabricFrame::Ping => "Ping",
        FabricFrame::Pong => "Pong",
    }
}

/// One frame, length prefix included, ready to queue.
#[must_use]
pub fn encode(frame: &FabricFrame) -> Bytes {
    let mut out = BytesMut::new();
    framing::encode(frame, &mut out);
    out.freeze()
}

/// Writes what is queued toward the peer, one write per turn, until the
/// queue is closed and empty or the link is killed.
async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>, kill: Arc<Kill>, node: Arc<Node>) {
    let mut batch = BytesMut::new();
    loop {
        let first = tokio::select! {
            biased;
            () = kill.killed() => return,
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
        };
        let mut frames = 1u64;
        let out: &[u8] = if first.len() >= WRITE_BUDGET || rx.is_empty() {
            &first
        } else {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BUDGET {
                match rx.try_recv() {
                    Ok(f) => {
                        batch.extend_from_slice(&f);
                        frames += 1;
                    }
                    Err(_) => break,
                }
            }
            &batch
        };
        let written = tokio::select! {
            biased;
            () = kill.killed() => return,
            r = wr.write_all(out) => r,
        };
        if let Err(e) = written {
            debug!(error = %e, "writing failed");
            kill.write_failed();
            return;
        }
        node.stats.writes.fetch_add(1, Ordering::Relaxed);
        node.stats.frames_out.fetch_add(frames, Ordering::Relaxed);
        node.stats.bytes_out.fetch_add(out.len() as u64, Ordering::Relaxed);
        if batch.capacity() > 2 * WRITE_BUDGET {
            // A huge frame went through the batch: do not keep its memory for the link's lifetime.
            batch = BytesMut::new();
        }
    }
    let _ = wr.shutdown().await;
}
