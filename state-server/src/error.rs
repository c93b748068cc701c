//! The crate's one error type. Operators see these in logs and at start-up;
//! nodes never do (a refused node gets `ControlFrame::Refused` with a short
//! reason, built in `link`).

use std::net::SocketAddr;

use protocol::framing::FrameError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag (or its environment variable) has a bad value; the message names it.
    #[error("{flag}: {problem}")]
    Config { flag: &'static str, problem: String },
    #[error("cannot listen on {addr} (set {flag}): {source}")]
    Bind {
        addr: SocketAddr,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the ports file {path} (--ports-file): {source}")]
    PortsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A control link failed reading or writing.
    #[error("link with {peer}: {source}")]
    Link {
        peer: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A node sent a frame that is too big or not a control frame.
    #[error("link with {peer}: bad frame: {source}")]
    BadFrame {
        peer: SocketAddr,
        #[source]
        source: FrameError,
    },
    /// A node did not read what we sent it in time.
    #[error("link with {peer}: write timed out")]
    WriteTimeout { peer: SocketAddr },
}

impl Error {
    pub fn config(flag: &'static str, problem: impl Into<String>) -> Self {
        Self::Config { flag, problem: problem.into() }
    }
}
