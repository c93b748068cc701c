//! Every open socket of this node by id, so the application can reach one
//! socket (kick it out of a channel, close it) without holding its task.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use protocol::codes::CloseCode;

use crate::outbox::{Kick, Outgoing, PushError, SessionHandle};

#[derive(Debug, Default)]
pub struct Registry {
    sockets: Mutex<HashMap<u64, SessionHandle>>,
}

impl Registry {
    pub(crate) fn insert(&self, handle: SessionHandle) {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner).insert(handle.id, handle);
    }

    pub(crate) fn remove(&self, id: u64) {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    #[must_use]
    pub fn get(&self, id: u64) -> Option<SessionHandle> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes a socket from a channel and sends it `#kickOut`.
    pub fn kick_out(&self, id: u64, channel: &str, message: Option<String>) -> Result<(), PushError> {
        let handle = self.get(id).ok_or(PushError::Closed)?;
        handle.push(Outgoing::KickOut(Box::new(Kick { channel: channel.to_owned(), message })))
    }

    /// Every open socket.
    #[must_use]
    pub fn handles(&self) -> Vec<SessionHandle> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Closes one socket with `code`.
    pub fn close(&self, id: u64, code: CloseCode) -> bool {
        self.get(id).map(|h| h.close(code)).is_some()
    }
}
