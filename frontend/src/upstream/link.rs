//! One fabric link to a broker: connect, say hello, then stream frames both
//! ways until the link breaks or goes silent, and reconnect with back-off.
//!
//! Writes are batched: the writer takes everything queued (up to a byte
//! budget) and writes it with one call. A broker that does not answer pings
//! within the link timeout is treated exactly like one whose link broke.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::fabric::{self, FabricFrame};
use protocol::framing;
use protocol::slots::BrokerInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{backoff, Inner};

/// Frames queued toward one broker before the link counts as stuck.
pub(super) const LINK_QUEUE: usize = 65_536;
/// Bytes gathered into one write.
const WRITE_BUDGET: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn run(inner: Arc<Inner>, broker: BrokerInfo, cancel: CancellationToken) {
    let mut attempt = 0u32;
    loop {
        let outcome = tokio::select! {
            () = cancel.cancelled() => return,
            r = connect(&inner, &broker) => r,
        };
        match outcome {
            Ok(stream) => {
                attempt = 0;
                info!(broker = %broker.id, addr = %broker.addr, "fabric link up");
                serve(&inner, &broker, stream, &cancel).await;
                inner.link_down(&broker.id);
                warn!(broker = %broker.id, "fabric link down");
            }
            Err(e) => debug!(broker = %broker.id, error = %e, "fabric connect failed"),
        }
        attempt += 1;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff(attempt)) => {}
        }
    }
}

async fn connect(inner: &Inner, broker: &BrokerInfo) -> std::io::Result<(TcpStream, BytesMut)> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&broker.addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    let mut out = BytesMut::new();
    let hello = FabricFrame::Hello {
        key: inner.config.cluster_key.clone(),
        node: inner.config.node_id.clone(),
        version: fabric::VERSION,
    };
    framing::encode(&hello, &mut out);
    stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let reply = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            if let Some(f) = framing::decode::<FabricFrame>(&mut buf, framing::MAX_FRAME_BYTES)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                return Ok::<_, std::io::Error>(f);
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no welcome"))??;
    match reply {
        FabricFrame::Welcome { .. } => Ok((stream, buf)),
        FabricFrame::Refused { reason } => {
            warn!(broker = %broker.id, %reason, "broker refused our link (check --cluster-key)");
            Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, reason))
        }
        other => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected {other:?}"))),
    }
}

async fn serve(
    inner: &Arc<Inner>,
    broker: &BrokerInfo,
    (stream, mut buf): (TcpStream, BytesMut),
    cancel: &CancellationToken,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(LINK_QUEUE);
    let link_cancel = cancel.child_token();
    inner.link_up(&broker.id, tx.clone(), link_cancel.clone());

    let write_cancel = link_cancel.clone();
    let writer_task = tokio::spawn(async move {
        let mut batch = BytesMut::with_capacity(WRITE_BUDGET);
        loop {
            let first = tokio::select! {
                () = write_cancel.cancelled() => break,
                f = rx.recv() => match f { Some(f) => f, None => break },
            };
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BUDGET {
                match rx.try_recv() {
                    Ok(f) => batch.extend_from_slice(&f),
                    Err(_) => break,
                }
            }
            if writer.write_all(&batch).await.is_err() {
                break;
            }
        }
        write_cancel.cancel();
    });

    let heartbeat = inner.config.fabric_heartbeat;
    let timeout = inner.config.fabric_timeout;
    let mut ping = tokio::time::interval(heartbeat);
    let mut last_heard = Instant::now();
    let mut ping_frame = BytesMut::new();
    framing::encode(&FabricFrame::Ping, &mut ping_frame);
    let ping_frame = ping_frame.freeze();
    loop {
        // Frames already buffered (e.g. read together with the Welcome) first.
        loop {
            match framing::decode::<FabricFrame>(&mut buf, framing::MAX_FRAME_BYTES) {
                Ok(Some(frame)) => {
                    last_heard = Instant::now();
                    inner.on_fabric_frame(&broker.id, frame);
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(broker = %broker.id, error = %e, "bad frame from broker; dropping the link");
                    link_cancel.cancel();
                    break;
                }
            }
        }
        tokio::select! {
            () = link_cancel.cancelled() => break,
            r = reader.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > timeout {
                    warn!(broker = %broker.id, silent_ms = last_heard.elapsed().as_millis() as u64, "broker stopped answering; treating it as dead");
                    break;
                }
                if tx.try_send(ping_frame.clone()).is_err() {
                    warn!(broker = %broker.id, "fabric queue full; dropping the link");
                    break;
                }
            }
        }
    }
    link_cancel.cancel();
    let _ = writer_task.await;
}
