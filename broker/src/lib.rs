//! A fabric broker of the pub/sub cluster.
//!
//! Frontends connect over TCP (length-prefixed MessagePack, see
//! `protocol::fabric`), say `Hello` with the cluster key, subscribe to the
//! channels they have local subscribers for, and publish. The broker keeps
//! each link's interest ([`interest`], pure, behind the sharded [`router`])
//! and fans each publish out, encoded once, to the interested links' bounded
//! queues ([`link`]). With a state server it joins the slot table and leaves
//! it gracefully ([`control`]). `main.rs` only parses flags and calls
//! [`Broker::bind`] then [`Broker::run`]; tests do the same in-process.

pub mod admin;
pub mod config;
pub mod control;
pub mod error;
pub mod interest;
pub mod link;
pub mod metrics;
pub mod node;
pub mod router;
pub mod server;
pub mod stats;

pub use config::{Args, Config};
pub use error::Error;
pub use node::{Node, Status};
pub use server::Broker;
