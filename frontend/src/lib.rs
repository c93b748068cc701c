//! A SocketCluster-compatible frontend node.
//!
//! The node holds client WebSockets, speaks SocketCluster protocol v2 (JSON
//! or `sc-codec-min-bin`), authenticates with HS256 tokens, asks the
//! application's [`acl::AccessControl`] hooks before every action, runs the
//! application's custom-event [`handlers`], and fans publishes out to local
//! subscribers through the [`hub`]. `main.rs` only parses flags and calls
//! [`Frontend::bind`] then [`Frontend::run`]; tests do the same in-process.

pub mod acl;
pub mod auth;
pub mod chat;
pub mod config;
pub mod demo;
pub mod error;
pub mod handlers;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod outbox;
pub mod registry;
pub mod server;
mod session;
pub mod stats;
pub mod upstream;

pub use config::{Args, Config};

/// An app with the demonstration RPCs and no access control, for trials and tests.
#[must_use]
pub fn demo_app() -> App {
    App { handlers: demo::handlers(), ..App::default() }
}
pub use node::{App, Node};
pub use server::Frontend;
