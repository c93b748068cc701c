//! Wire formats shared by every node of the cluster.
//!
//! This crate is a pure codec: it turns bytes into typed frames and typed
//! frames into bytes, and holds the tables every node must agree on (close
//! codes, error shapes, default limits). It never opens a socket, never spawns
//! a task and never reads the clock, so every rule in it is testable with plain
//! `#[test]` functions.

pub mod client;
pub mod codes;
pub mod error;
pub mod limits;

pub use client::{Codec, DecodeError, Outbound, Packet, PacketKind, Request};
pub use codes::CloseCode;
pub use error::ScError;
pub mod control;
pub mod fabric;
pub mod framing;
pub mod hash;
pub mod slots;
