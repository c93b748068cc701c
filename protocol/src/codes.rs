//! WebSocket close codes the frontend sends, in one table.
//!
//! `socketcluster-client` decides what to do after a close from the code
//! alone: 4000, 4001 and 1005 reconnect at once; 1000 and every code from 4500
//! up never reconnect; everything else reconnects after its back-off
//! (10–20 s, growing). Each code below says which of these it triggers, so an
//! operator can tell what clients will do. A retired code is never reused.

/// What `socketcluster-client` does after the server closes with a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconnect {
    /// Reconnects at once (codes 4000, 4001 and 1005).
    Immediately,
    /// Reconnects after its randomised, growing back-off.
    WithBackoff,
    /// Does not reconnect (1000, and every code from 4500 up).
    Never,
}

/// One row of the close-code table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseCode {
    pub code: u16,
    pub name: &'static str,
    pub reconnect: Reconnect,
    /// When the frontend sends it.
    pub meaning: &'static str,
}

macro_rules! close_codes {
    ($($(#[$doc:meta])* $ident:ident = $code:literal, $reconnect:ident, $meaning:literal;)*) => {
        $( $(#[$doc])* pub const $ident: CloseCode = CloseCode {
            code: $code,
            name: stringify!($ident),
            reconnect: Reconnect::$reconnect,
            meaning: $meaning,
        }; )*

        /// Every code the frontend may send, in ascending order.
        pub const ALL: &[CloseCode] = &[$($ident),*];
    };
}

close_codes! {
    /// The client asked to close, or the server ends a session for good.
    NORMAL = 1000, Never, "normal closure";
    /// A binary frame on a JSON listener, or a text frame other than a pong
    /// on a MessagePack listener.
    UNSUPPORTED_DATA = 1003, WithBackoff, "frame type does not match the listener's codec";
    /// Sent as a close frame *without* a status code, which clients report as
    /// 1005: the node is shutting down or draining, reconnect (to another node)
    /// at once.
    RESTART = 1005, Immediately, "node shutting down; reconnect now";
    /// A frame over the configured size limit.
    MESSAGE_TOO_BIG = 1009, WithBackoff, "frame over the size limit";
    /// A fault on the server side that is not the client's doing.
    INTERNAL_ERROR = 1011, WithBackoff, "internal server error";
    /// The client stopped answering pings within the advertised `pingTimeout`.
    PONG_TIMEOUT = 4001, Immediately, "no pong within pingTimeout";
    /// No `#handshake` arrived within the handshake timeout.
    HANDSHAKE_TIMEOUT = 4005, WithBackoff, "no #handshake before the timeout";
    /// The handshake was refused (no numeric `cid`, or blocked by access control).
    HANDSHAKE_REJECTED = 4008, WithBackoff, "handshake rejected";
    /// A packet other than `#handshake` arrived before the handshake.
    MESSAGE_BEFORE_HANDSHAKE = 4009, WithBackoff, "packet before #handshake";
    /// A frame that is not valid JSON or MessagePack (no cid could be read).
    MALFORMED_FRAME = 4100, WithBackoff, "undecodable frame";
    /// A packet with wrong field types and no `cid` to answer.
    INVALID_PACKET = 4101, WithBackoff, "packet with wrong field types and no cid";
    /// A transmit (no `cid`) of an event the node does not know.
    UNKNOWN_EVENT = 4102, WithBackoff, "unknown event without cid";
    /// The socket kept sending past its inbound rate limit.
    RATE_LIMITED = 4103, WithBackoff, "inbound rate limit exceeded";
    /// The socket's outbound queue filled up: it reads slower than it is sent to.
    SLOW_CONSUMER = 4104, WithBackoff, "outbound queue full (slow consumer)";
}

impl CloseCode {
    /// Looks a code up in the table.
    #[must_use]
    pub fn from_code(code: u16) -> Option<CloseCode> {
        ALL.iter().copied().find(|c| c.code == code)
    }

    /// Whether the code travels in the close frame. 1005 must not be sent on
    /// the wire (RFC 6455 §7.4.1): it is signalled by a close frame with no body.
    #[must_use]
    pub fn is_sent_without_status(self) -> bool {
        self.code == RESTART.code
    }
}

/// The reconnect rule of `socketcluster-client` v14–v20, for any code.
#[must_use]
pub fn client_reconnect_rule(code: u16) -> Reconnect {
    match code {
        4000 | 4001 | 1005 => Reconnect::Immediately,
        1000 => Reconnect::Never,
        c if c >= 4500 => Reconnect::Never,
        _ => Reconnect::WithBackoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_sorted() {
        for pair in ALL.windows(2) {
            assert!(pair[0].code < pair[1].code, "{:?} then {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn documented_reconnect_matches_what_the_client_does() {
        for c in ALL {
            assert_eq!(c.reconnect, client_reconnect_rule(c.code), "{}", c.name);
        }
    }

    #[test]
    fn lookup_finds_every_code() {
        assert_eq!(CloseCode::from_code(4001), Some(PONG_TIMEOUT));
        assert_eq!(CloseCode::from_code(4444), None);
    }
}
