//! The chat domain of the cluster: a team chat in the style of Rocket.Chat (spec:
//! `shared/reference/chat-domain.md`).
//!
//! Pure modules (no I/O, no clock, no runtime): [`ids`], [`roles`], [`permissions`], [`policy`],
//! [`user`], [`room`], [`message`], [`mentions`], [`unread`], [`settings`], [`limits`], [`rate`], [`auth`],
//! [`presence`] (aggregation), [`integration`] (webhooks: triggers, payload, signature, backoff),
//! [`netguard`] (which addresses outgoing webhooks may reach).
//! Storage: the [`store::Store`] trait and its backends ([`store::sqlite`], [`store::mongo`], chosen by
//! [`store::open`]). Uploaded files: [`files`] (disk or GridFS). Operations with their permission checks and the events they cause: [`service`].
//! Transport (socket events, REST) belongs to the frontend, which calls the service and carries out the
//! effects it returns.

pub mod auth;
pub mod error;
pub mod files;
pub mod ids;
pub mod import;
pub mod integration;
pub mod limits;
pub mod mentions;
pub mod message;
pub mod netguard;
pub mod permissions;
pub mod policy;
pub mod presence;
pub mod rate;
pub mod roles;
pub mod room;
mod serde_util;
pub mod service;
pub mod settings;
pub mod store;
pub mod unread;
pub mod user;

pub use error::{ChatError, Result};
