//! One task per control connection: checks the `Hello`, then carries frames
//! between the socket and the core (which owns all state, see `server`).
//!
//! A link never decides anything about membership. It refuses a node whose
//! first frame is not a valid `Hello` (wrong key, wrong version, anything
//! else, or nothing in time), and otherwise forwards every frame it reads to
//! the core and writes every frame the core queues for it, batched, until the
//! core drops its queue (close), the peer goes, or the server shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::control::{ControlFrame, MIN_VERSION, VERSION};
use protocol::framing::{decode, encode, keys_match};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cluster_state::ConnId;
use crate::error::Error;
use crate::metrics::{Refusal, Refusals};
use crate::server::CoreMsg;

/// Largest frame a node may send on a control link. Control frames are small
/// (the biggest is a `Hello` carrying a table of up to `MAX_SLOTS` brokers),
/// so this is well below `protocol::framing::MAX_FRAME_BYTES`.
pub const MAX_CONTROL_FRAME_BYTES: usize = 256 * 1024;
/// Frames queued toward one node before the core gives up on it as not reading.
pub const OUTBOUND_QUEUE: usize = 64;
/// Most frames written in one batch.
const WRITE_BATCH: usize = 32;
/// Longest a write may block before the link is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time given to a `Refused` frame to leave before the socket closes.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What every link shares.
pub(crate) struct LinkCtx {
    pub key: Vec<u8>,
    pub hello_timeout: Duration,
    pub core: mpsc::Sender<CoreMsg>,
    /// Links refused, by reason: by the links themselves, the accept loop or the core.
    pub refused: Arc<Refusals>,
}

/// Runs one control connection to its end.
pub(crate) async fn run(
    mut stream: TcpStream,
    peer: SocketAddr,
    conn: ConnId,
    ctx: Arc<LinkCtx>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(1024);
    let first = tokio::select! {
        () = shutdown.cancelled() => return,
        r = tokio::time::timeout(ctx.hello_timeout, read_frame(&mut stream, &mut buf, peer)) => r,
    };
    let (node, role, committed) = match first {
        Err(_) => {
            let secs = ctx.hello_timeout.as_secs_f32();
            return refuse(&mut stream, peer, &ctx, Refusal::HelloTimeout, format!("no Hello within {secs} s")).await;
        }
        Ok(Ok(None)) => {
            debug!("closed before Hello");
            return;
        }
        Ok(Err(e @ Error::BadFrame { .. })) => {
            return refuse(&mut stream, peer, &ctx, Refusal::BadFrame, e.to_string()).await
        }
        Ok(Err(e)) => {
            debug!(error = %e, "failed before Hello");
            return;
        }
        Ok(Ok(Some(ControlFrame::Hello { key, node, role, version, committed }))) => {
            if !(MIN_VERSION..=VERSION).contains(&version) {
                let reason =
                    format!("control protocol version {version}; this server speaks {MIN_VERSION} to {VERSION}");
                return refuse(&mut stream, peer, &ctx, Refusal::WrongVersion, reason).await;
            }
            if !keys_match(key.as_bytes(), &ctx.key) {
                return refuse(&mut stream, peer, &ctx, Refusal::WrongKey, "wrong cluster key".into()).await;
            }
            (node, role, committed)
        }
        Ok(Ok(Some(_))) => {
            return refuse(&mut stream, peer, &ctx, Refusal::NotHello, "the first frame must be Hello".into()).await
        }
    };
    let span = tracing::Span::current();
    span.record("node", node.as_str());
    span.record("role", if matches!(role, protocol::control::Role::Frontend) { "frontend" } else { "broker" });

    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    if ctx.core.send(CoreMsg::Hello { conn, peer, node, role, committed, tx }).await.is_err() {
        return;
    }
    match serve(&mut stream, &mut buf, rx, conn, peer, &ctx, &shutdown).await {
        Ok(()) => debug!("link closed"),
        Err(e) => info!(error = %e, "link ended"),
    }
    let _ = ctx.core.send(CoreMsg::Gone { conn }).await;
}

/// Reads one whole frame; `Ok(None)` when the peer closes first.
async fn read_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut BytesMut,
    peer: SocketAddr,
) -> Result<Option<ControlFrame>, Error> {
    loop {
        if let Some(frame) = decode(buf, MAX_CONTROL_FRAME_BYTES).map_err(|source| Error::BadFrame { peer, source })? {
            return Ok(Some(frame));
        }
        if stream.read_buf(buf).await.map_err(|source| Error::Link { peer, source })? == 0 {
            return Ok(None);
        }
    }
}

/// Answers `Refused{reason}`, closes, logs and counts.
async fn refuse(stream: &mut TcpStream, peer: SocketAddr, ctx: &LinkCtx, why: Refusal, reason: String) {
    warn!(%peer, %reason, why = why.name(), "refused a control link");
    ctx.refused.count(why);
    let mut out = BytesMut::new();
    encode(&ControlFrame::Refused { reason }, &mut out);
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await;
}

/// Forwards frames both ways until one side is done.
async fn serve(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mut rx: mpsc::Receiver<ControlFrame>,
    conn: ConnId,
    peer: SocketAddr,
    ctx: &LinkCtx,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let link = |source| Error::Link { peer, source };
    let (mut rd, mut wr) = stream.split();
    let mut out = BytesMut::new();
    // The Hello may have arrived together with more frames.
    while let Some(frame) = decode(buf, MAX_CONTROL_FRAME_BYTES).map_err(|source| Error::BadFrame { peer, source })? {
        if ctx.core.send(CoreMsg::Frame { conn, frame }).await.is_err() {
            return Ok(());
        }
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            frame = rx.recv() => {
                let Some(frame) = frame else {
                    // The core closed the link; what it queued before has been written.
                    let _ = tokio::time::timeout(REFUSE_TIMEOUT, wr.shutdown()).await;
                    return Ok(());
                };
                encode(&frame, &mut out);
                for _ in 1..WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(frame) => encode(&frame, &mut out),
                        Err(_) => break,
                    }
                }
                tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&out))
                    .await
                    .map_err(|_| Error::WriteTimeout { peer })?
                    .map_err(link)?;
                out.clear();
            }
            read = rd.read_buf(buf) => {
                if read.map_err(link)? == 0 {
                    return Ok(());
                }
                while let Some(frame) =
                    decode(buf, MAX_CONTROL_FRAME_BYTES).map_err(|source| Error::BadFrame { peer, source })?
                {
                    if ctx.core.send(CoreMsg::Frame { conn, frame }).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}
