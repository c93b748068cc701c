//! The frontend's link to the state server: hello with the last committed
//! table, then welcome, prepare/commit and heartbeats; reconnect with
//! back-off and jitter whenever the link breaks or goes quiet. While the
//! state server is away, the node keeps routing by its last committed table.
//!
//! Versions: the node says `Hello` with control protocol [`control::VERSION`] (2: load reports in
//! place of heartbeats, status questions). A version-1 state server refuses that; the node then says
//! `Hello` again at once with [`control::MIN_VERSION`] and sends only version-1 frames on that link.
//! Every new connection tries version 2 first again (an upgraded server comes back through a restart,
//! which breaks the link).

use std::sync::Arc;

use bytes::BytesMut;
use protocol::control::{self, ControlFrame, Role};
use protocol::framing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{backoff, Inner};

/// How one connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// The state server welcomed us; the link broke or went quiet later.
    AfterWelcome,
    /// `Refused` before any `Welcome`.
    Refused,
    /// Anything else before a `Welcome`.
    BeforeWelcome,
}

pub(super) async fn run(inner: Arc<Inner>) {
    let mut attempt = 0u32;
    let mut version = control::VERSION;
    loop {
        let connected = tokio::select! {
            () = inner.shutdown.cancelled() => return,
            r = TcpStream::connect(&inner.config.state_server) => r,
        };
        match connected {
            Ok(stream) => {
                let ended = serve(&inner, stream, version).await;
                inner.status.link_down();
                if ended == Ended::Refused && version > control::MIN_VERSION {
                    info!(
                        version,
                        "state server refused us; saying Hello again with control protocol {}",
                        control::MIN_VERSION
                    );
                    version = control::MIN_VERSION;
                    continue;
                }
                version = control::VERSION;
                if ended == Ended::AfterWelcome {
                    attempt = 0;
                }
            }
            Err(e) => debug!(error = %e, addr = %inner.config.state_server, "state server unreachable"),
        }
        if inner.shutdown.is_cancelled() {
            return;
        }
        attempt += 1;
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff(attempt)) => {}
        }
    }
}

/// Serves one connection, saying `Hello` at `version`.
async fn serve(inner: &Arc<Inner>, stream: TcpStream, version: u32) -> Ended {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<ControlFrame>(64);
    let hello = ControlFrame::Hello {
        key: inner.config.cluster_key.clone(),
        node: inner.config.node_id.clone(),
        role: Role::Frontend,
        version,
        committed: inner.committed(),
    };
    let _ = tx.try_send(hello);
    let writer_task = tokio::spawn(async move {
        let mut out = BytesMut::new();
        while let Some(f) = rx.recv().await {
            out.clear();
            framing::encode(&f, &mut out);
            while let Ok(f) = rx.try_recv() {
                framing::encode(&f, &mut out);
            }
            if writer.write_all(&out).await.is_err() {
                break;
            }
        }
    });

    let heartbeat = inner.config.control_heartbeat;
    let mut tick = tokio::time::interval(heartbeat);
    let mut last_heard = Instant::now();
    let mut buf = BytesMut::with_capacity(4096);
    let mut welcomed = false;
    let mut refused = false;
    'conn: loop {
        loop {
            match framing::decode::<ControlFrame>(&mut buf, framing::MAX_FRAME_BYTES) {
                Ok(Some(f)) => {
                    last_heard = Instant::now();
                    match f {
                        ControlFrame::Welcome { table } => {
                            welcomed = true;
                            info!(epoch = table.epoch, brokers = table.len(), version, "joined the cluster");
                            inner.status.link_up(version, tx.clone());
                            inner.on_welcome(table);
                        }
                        ControlFrame::Prepare { table } => {
                            let (inner, tx) = (inner.clone(), tx.clone());
                            tokio::spawn(async move {
                                let epoch = table.epoch;
                                inner.prepare(table).await;
                                let _ = tx.send(ControlFrame::PrepareAck { epoch }).await;
                            });
                        }
                        ControlFrame::Commit { table } => inner.commit(table),
                        ControlFrame::Refused { reason } => {
                            if version > control::MIN_VERSION && !welcomed {
                                info!(%reason, version, "state server refused us");
                            } else {
                                warn!(%reason, "state server refused us (check --cluster-key)");
                            }
                            refused = !welcomed;
                            break 'conn;
                        }
                        ControlFrame::StatusReply { id, json } => inner.status.on_reply(id, json),
                        ControlFrame::Heartbeat => {}
                        other => debug!(frame = ?other, "unexpected frame from the state server"),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "bad frame from the state server");
                    break 'conn;
                }
            }
        }
        tokio::select! {
            () = inner.shutdown.cancelled() => break,
            r = reader.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if last_heard.elapsed() > heartbeat * 3 {
                    warn!("state server silent; reconnecting");
                    break;
                }
                // Version 2: the load report is the heartbeat (a version-1 server cannot decode it).
                let beat = if version >= 2 && welcomed {
                    ControlFrame::Load { load: inner.load() }
                } else {
                    ControlFrame::Heartbeat
                };
                let _ = tx.try_send(beat);
            }
        }
    }
    drop(tx);
    writer_task.abort();
    if welcomed {
        warn!("lost the state server; routing by the last committed table");
        Ended::AfterWelcome
    } else if refused {
        Ended::Refused
    } else {
        Ended::BeforeWelcome
    }
}
