//! Test machinery for cluster tests: a [`Cluster`] of real `state-server`,
//! `broker` and `frontend` processes on 127.0.0.1, a raw SocketCluster
//! [`Client`], a [`LoadGen`] with its loss [`meter`], [`wait_until`], and
//! [`Scrape`] for the nodes' `/metrics`.
//!
//! The binaries are the workspace's own builds (`cargo build --workspace
//! --bins`); see [`process::bin_path`] for where they are looked up.
//!
//! Nothing here sleeps for a fixed time to wait for a condition: waits poll a
//! condition and fail with the last state they observed. Every load loop is
//! bounded in count and in time. Every child process is killed when its
//! handle is dropped, panics included.

pub mod client;
pub mod cluster;
pub mod http;
pub mod load;
pub mod meter;
pub mod peer;
pub mod process;
pub mod scrape;
pub mod wait;

pub use client::Client;
pub use cluster::{Cluster, ClusterBuilder, Status, Timers};
pub use load::{LoadConfig, LoadGen};
pub use meter::{Meter, Report, Stamp};
pub use peer::{RawPeer, Read};
pub use scrape::Scrape;
pub use wait::{try_wait_until, wait_until};
