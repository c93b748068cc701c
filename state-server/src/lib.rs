//! The cluster's state server: membership (brokers and frontends), the
//! broker slot table and its epoch, and two-phase reshard coordination, with
//! a status page.
//!
//! [`cluster_state`] is the whole policy as a pure state machine; [`server`]
//! binds the listeners and runs the core task that feeds it; `link` runs one
//! task per node connection; [`status`] serves the HTTP port, [`metrics`]
//! renders its `/metrics`. `main.rs` only
//! parses flags and calls [`StateServer::bind`] then [`StateServer::run`];
//! tests do the same in-process.

pub mod cluster_state;
pub mod config;
pub mod error;
mod link;
pub mod metrics;
pub mod server;
pub mod status;

pub use cluster_state::{Action, ClusterState, Event, ReshardCounters, Status, Timing};
pub use config::{Args, Config};
pub use error::Error;
pub use link::MAX_CONTROL_FRAME_BYTES;
pub use server::StateServer;
