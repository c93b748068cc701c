//! Errors an operator sees. Clients never see these: they get SocketCluster
//! error objects and close codes (see `protocol::codes`).

use std::net::SocketAddr;

/// A flag with a bad value; the message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(flag: &'static str, problem: impl Into<String>) -> Self {
        Self { flag, problem: problem.into() }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr} (set --host/--port): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the ports file {path}: {source}")]
    PortsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
