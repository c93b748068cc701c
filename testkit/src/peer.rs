//! A raw TCP peer for the fabric and control ports: sends length-prefixed
//! MessagePack frames built with `protocol::framing` (or any bytes at all),
//! reads frames back, and tells when the node hung up. For bad-input tests
//! that play a frontend or a node no real one would be.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use protocol::framing::{self, MAX_FRAME_BYTES};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a read ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<T> {
    Frame(T),
    /// The node closed the connection (EOF or reset).
    Closed,
}

pub struct RawPeer {
    stream: TcpStream,
    buf: BytesMut,
    addr: SocketAddr,
}

impl RawPeer {
    /// Connects.
    ///
    /// # Errors
    /// When the connection fails within 5 s.
    pub async fn connect(addr: SocketAddr) -> Result<RawPeer, String> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| format!("{addr}: connect timed out"))?
            .map_err(|e| format!("{addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(RawPeer { stream, buf: BytesMut::new(), addr })
    }

    /// Sends one frame.
    ///
    /// # Errors
    /// When the write fails (the node hung up).
    pub async fn send<T: Serialize>(&mut self, frame: &T) -> Result<(), String> {
        let mut out = BytesMut::new();
        framing::encode(frame, &mut out);
        self.send_raw(&out).await
    }

    /// Sends bytes as they are.
    ///
    /// # Errors
    /// When the write fails (the node hung up).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).await.map_err(|e| format!("{}: write: {e}", self.addr))
    }

    /// Reads the next frame.
    ///
    /// # Errors
    /// When nothing arrives within `within`, or the bytes are not a frame.
    pub async fn recv<T: DeserializeOwned>(&mut self, within: Duration) -> Result<Read<T>, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match framing::decode::<T>(&mut self.buf, MAX_FRAME_BYTES) {
                Ok(Some(f)) => return Ok(Read::Frame(f)),
                Ok(None) => {}
                Err(e) => return Err(format!("{}: bad frame from the node: {e}", self.addr)),
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| format!("{}: nothing received within {within:?}", self.addr))?;
            match n {
                Ok(0) | Err(_) => return Ok(Read::Closed),
                Ok(_) => {}
            }
        }
    }

    /// Reads (and drops) everything until the node closes the connection.
    ///
    /// # Errors
    /// When it is still open after `within`.
    pub async fn wait_closed(&mut self, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| format!("{}: still open after {within:?}", self.addr))?;
            if matches!(n, Ok(0) | Err(_)) {
                return Ok(());
            }
        }
    }

    /// The underlying socket (to stop reading it, or split it).
    #[must_use]
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}
