//! Errors an operator sees: bad flags, ports that cannot be bound, a ports
//! file that cannot be written. Peers never see these; a fabric link that
//! misbehaves is answered with `Refused` and counted (see `stats`), and the
//! task serving it ends on its own without reaching the accept loop.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag (or its environment variable) with a bad or missing value; the message names it.
    #[error("{flag}: {problem}")]
    Config { flag: &'static str, problem: String },
    #[error("cannot listen for {what} on {addr} (set {flag}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the ports file {} (--ports-file): {source}", path.display())]
    PortsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn config(flag: &'static str, problem: impl Into<String>) -> Self {
        Error::Config { flag, problem: problem.into() }
    }
}
