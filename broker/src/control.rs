//! The link to the state server: join, heartbeats, committed tables, leave.
//!
//! One task owns the connection. It connects with exponential back-off and
//! jitter (reset once welcomed), says `Hello` with the last committed table it
//! saw (so a restarted state server can adopt the highest epoch), then
//! heartbeats and remembers each `Commit`. Nothing from the state server for
//! three heartbeat intervals means the link is dead: it reconnects. Losing
//! the state server never stops the fabric: links keep being served on what
//! they subscribed.
//!
//! Leaving: once asked to leave, the task sends `Leave` (again after every
//! reconnect) and signals `left` when the state server's table no longer
//! holds this broker. It does not decide how long to keep serving; the
//! server does (leave timeout, drain delay).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::control::{self, ControlFrame, Role};
use protocol::framing::{self, MAX_FRAME_BYTES};
use protocol::slots::SlotTable;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::node::Node;

/// First and longest pause between connection attempts (before jitter).
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Heartbeat intervals without a frame from the state server before the link is dropped.
const MISSED_HEARTBEATS: u32 = 3;

/// Signals between the server and the control task.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    /// Cancelled by the server: leave the slot table.
    pub leave: CancellationToken,
    /// Cancelled by the control task: leaving and a table without this broker was seen.
    pub left: CancellationToken,
    /// Cancelled by the server: stop now.
    pub stop: CancellationToken,
}

/// Exponential back-off with jitter: each pause is drawn from
/// `[current/2, current]`, and `current` doubles up to the maximum.
#[derive(Debug)]
pub struct Backoff {
    current: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    #[must_use]
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { current: min, min, max }
    }

    /// The next pause.
    pub fn next_pause(&mut self) -> Duration {
        let half = self.current / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
        let pause = half + Duration::from_millis(jitter);
        self.current = (self.current * 2).min(self.max);
        pause
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// What the task remembers across connections.
struct State {
    /// Last table welcomed or committed by the state server.
    committed: Option<SlotTable>,
    /// Control protocol version of the next `Hello`: [`control::VERSION`], or
    /// [`control::MIN_VERSION`] right after a refusal (a version-1 state server refuses version 2;
    /// see `protocol::control`). Back to `VERSION` for every later connection.
    version: u32,
}

/// Runs the control link to `addr` until `signals.stop` is cancelled.
pub async fn run(node: Arc<Node>, addr: String, signals: Signals) {
    let mut state = State { committed: None, version: control::VERSION };
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        let welcomed = tokio::select! {
            () = signals.stop.cancelled() => return,
            r = session(&node, &addr, &signals, &mut state, &mut backoff) => r,
        };
        node.status.set_connected(false);
        if matches!(welcomed, Err(SessionEnd::Refused)) && state.version > control::MIN_VERSION {
            info!(
                version = state.version,
                "refused; saying Hello again with control protocol {}",
                control::MIN_VERSION
            );
            state.version = control::MIN_VERSION;
            continue;
        }
        state.version = control::VERSION;
        match welcomed {
            Err(SessionEnd::Frame(e)) => warn!(error = %e, "bad frame from the state server: reconnecting"),
            Err(SessionEnd::Io(e)) => debug!(error = %e, "state server link failed"),
            Err(e) => debug!(error = ?e, "state server link ended"),
            Ok(()) => {}
        }
        let pause = backoff.next_pause();
        debug!(pause_ms = pause.as_millis() as u64, "reconnecting to the state server");
        tokio::select! {
            () = signals.stop.cancelled() => return,
            () = sleep(pause) => {}
        }
    }
}

/// One connection, from connect to its end. Returns why it ended.
async fn session(
    node: &Node,
    addr: &str,
    signals: &Signals,
    state: &mut State,
    backoff: &mut Backoff,
) -> Result<(), SessionEnd> {
    let silence = node.config.heartbeat * MISSED_HEARTBEATS;
    let mut stream = match timeout(silence, TcpStream::connect(addr)).await {
        Err(_) => return Err(SessionEnd::ConnectTimeout),
        Ok(Err(e)) => {
            debug!(error = %e, %addr, "cannot reach the state server");
            return Err(SessionEnd::Io(e));
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let hello = ControlFrame::Hello {
        key: node.config.cluster_key.clone(),
        node: node.config.id.clone(),
        role: Role::Broker { addr: node.advertise_addr.clone() },
        version: state.version,
        committed: state.committed.clone(),
    };
    send(&mut stream, &hello).await?;

    let mut buf = BytesMut::with_capacity(4096);
    let first = match timeout(silence, read_frame(&mut stream, &mut buf)).await {
        Err(_) => return Err(SessionEnd::Silent),
        Ok(r) => r?,
    };
    match first {
        ControlFrame::Welcome { table } => {
            info!(%addr, epoch = table.epoch, brokers = table.len(), "welcomed by the state server");
            node.stats.control_sessions.fetch_add(1, Ordering::Relaxed);
            node.status.set_connected(true);
            backoff.reset();
            adopt(node, signals, state, table);
        }
        ControlFrame::Refused { reason } if state.version > control::MIN_VERSION => {
            info!(%addr, %reason, version = state.version, "the state server refused this broker");
            return Err(SessionEnd::Refused);
        }
        ControlFrame::Refused { reason } => {
            error!(%addr, %reason, "the state server refused this broker");
            return Err(SessionEnd::Refused);
        }
        other => {
            warn!(%addr, frame = ?other, "expected Welcome from the state server");
            return Err(SessionEnd::Protocol);
        }
    }

    // Welcomed at version 2: the load report is the heartbeat (a version-1 server cannot decode it).
    let reports_load = state.version >= 2;
    let mut leave_sent = false;
    let mut heartbeat = tokio::time::interval(node.config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    let mut deadline = Instant::now() + silence;
    loop {
        // Frames already buffered (several can arrive in one read).
        while let Some(frame) = framing::decode::<ControlFrame>(&mut buf, MAX_FRAME_BYTES).map_err(SessionEnd::Frame)? {
            deadline = Instant::now() + silence;
            match frame {
                ControlFrame::Commit { table } | ControlFrame::Welcome { table } => {
                    info!(epoch = table.epoch, brokers = table.len(), "slot table committed");
                    adopt(node, signals, state, table);
                }
                ControlFrame::Heartbeat => {}
                ControlFrame::Prepare { table } => debug!(epoch = table.epoch, "prepare (for frontends)"),
                ControlFrame::Refused { reason } => {
                    error!(%reason, "the state server refused this broker");
                    return Err(SessionEnd::Refused);
                }
                other => debug!(frame = ?other, "ignoring an unexpected frame from the state server"),
            }
        }
        let event = tokio::select! {
            () = signals.leave.cancelled(), if !leave_sent => Event::Leave,
            _ = heartbeat.tick() => Event::Heartbeat,
            () = sleep_until(deadline) => Event::Silent,
            r = stream.read_buf(&mut buf) => Event::Read(r),
        };
        match event {
            Event::Leave => {
                info!("asking the state server to take this broker out of the slot table");
                send(&mut stream, &ControlFrame::Leave).await?;
                leave_sent = true;
            }
            Event::Heartbeat if reports_load => {
                let load = control::NodeLoad {
                    connections: u64::try_from(node.stats.links_open.load(Ordering::Relaxed)).unwrap_or(0),
                    users: 0,
                    channels: node.router.channels() as u64,
                };
                send(&mut stream, &ControlFrame::Load { load }).await?;
            }
            Event::Heartbeat => send(&mut stream, &ControlFrame::Heartbeat).await?,
            Event::Silent => {
                warn!(silent_ms = silence.as_millis() as u64, "nothing from the state server: reconnecting");
                return Err(SessionEnd::Silent);
            }
            Event::Read(r) => {
                if r.map_err(SessionEnd::Io)? == 0 {
                    info!("the state server closed the link");
                    return Ok(());
                }
            }
        }
    }
}

enum Event {
    Leave,
    Heartbeat,
    Silent,
    Read(std::io::Result<usize>),
}

/// Remembers `table` as committed and, when leaving, notices that it is out.
fn adopt(node: &Node, signals: &Signals, state: &mut State, table: SlotTable) {
    let in_table = table.contains(&node.config.id);
    node.status.set_table(table.epoch, in_table);
    state.committed = Some(table);
    if node.status.leaving() && !in_table && !signals.left.is_cancelled() {
        info!("the committed slot table no longer holds this broker");
        signals.left.cancel();
    }
}

/// Called by the server when it starts leaving: if the table already lacks
/// this broker (it never joined), there is nothing to wait for.
pub(crate) fn leaving_now(node: &Node, signals: &Signals) {
    node.status.set_leaving();
    signals.leave.cancel();
    if node.status.epoch() > 0 && !node.status.in_table() {
        signals.left.cancel();
    }
}

/// Why a session with the state server ended early (logged where it
/// happens; the caller only reconnects).
#[derive(Debug)]
enum SessionEnd {
    ConnectTimeout,
    Io(std::io::Error),
    Silent,
    Refused,
    /// Something other than `Welcome` or `Refused` came first.
    Protocol,
    Frame(framing::FrameError),
    /// The state server closed before `Welcome`.
    Closed,
}

async fn send(stream: &mut TcpStream, frame: &ControlFrame) -> Result<(), SessionEnd> {
    let mut out = BytesMut::new();
    framing::encode(frame, &mut out);
    stream.write_all(&out).await.map_err(SessionEnd::Io)
}

async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<ControlFrame, SessionEnd> {
    loop {
        if let Some(frame) = framing::decode(buf, MAX_FRAME_BYTES).map_err(SessionEnd::Frame)? {
            return Ok(frame);
        }
        if stream.read_buf(buf).await.map_err(SessionEnd::Io)? == 0 {
            return Err(SessionEnd::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_with_jitter_up_to_the_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_pause();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        let second = b.next_pause();
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200), "{second:?}");
        for _ in 0..20 {
            assert!(b.next_pause() <= Duration::from_secs(2));
        }
        let capped = b.next_pause();
        assert!(capped >= Duration::from_secs(1), "{capped:?}");
        b.reset();
        assert!(b.next_pause() <= Duration::from_millis(100));
    }
}
