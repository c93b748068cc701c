//! SocketCluster client protocol v2: packets and their two codecs.
//!
//! A WebSocket message carries one packet or an array of packets (a batch).
//! Packets are events (`{event, data}`), requests (`{event, data, cid}`) or
//! responses (`{rid, error?, data?}`). Pings and pongs are empty *text*
//! frames under both codecs and never reach a decoder: the session answers
//! them first.
//!
//! Decoding is two steps: the codec turns bytes into [`serde_json::Value`]s
//! (the MessagePack codec also expands `sc-codec-min-bin`'s compressed keys),
//! then [`Packet::from_fields`] checks field types. A packet with wrong field
//! types still yields its `cid`, so the caller can answer it with an error
//! instead of dropping it.

pub mod json;
pub mod min_bin;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::ScError;
use crate::limits;

/// A request number chosen by the sender, echoed as `rid` in the reply.
pub type Cid = u64;

/// The wire format of a listener. Fixed per listener: SocketCluster clients
/// cannot negotiate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `sc-formatter`: JSON text frames (the default).
    Json,
    /// `sc-codec-min-bin`: MessagePack binary frames with compressed keys.
    MinBin,
}

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::Json, Codec::MinBin];

    /// Decodes one WebSocket message (already known not to be a ping/pong).
    pub fn decode(self, frame: &[u8]) -> Result<Vec<Packet>, DecodeError> {
        match self {
            Codec::Json => json::decode(frame),
            Codec::MinBin => min_bin::decode(frame),
        }
    }

    /// Encodes one outbound packet into the bytes of one WebSocket message.
    #[must_use]
    pub fn encode(self, packet: &Outbound<'_>) -> Bytes {
        match self {
            Codec::Json => json::encode(packet),
            Codec::MinBin => min_bin::encode(packet),
        }
    }

    /// Joins already encoded packets into one batch message (an array).
    #[must_use]
    pub fn encode_batch(self, frames: &[Bytes]) -> Bytes {
        match self {
            Codec::Json => json::encode_batch(frames),
            Codec::MinBin => min_bin::encode_batch(frames),
        }
    }

    /// Whether messages of this codec travel as binary WebSocket frames.
    #[must_use]
    pub fn is_binary(self) -> bool {
        matches!(self, Codec::MinBin)
    }

    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Codec::Json => 0,
            Codec::MinBin => 1,
        }
    }
}

/// A frame that could not be decoded at all: no packet, no cid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not valid JSON")]
    Json,
    #[error("frame is not valid MessagePack")]
    MessagePack,
    #[error("frame holds more than {max} packets")]
    TooManyPackets { max: usize },
    #[error("frame is empty")]
    Empty,
}

/// One decoded packet.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// Present when the sender expects a reply. Only a non-negative integer
    /// counts: SocketCluster treats a packet with any other `cid` as a transmit.
    pub cid: Option<Cid>,
    pub kind: PacketKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PacketKind {
    Request(Request),
    /// A reply to a request the server sent.
    Response {
        rid: Cid,
        error: Option<Value>,
        data: Option<Value>,
    },
    /// Well-formed bytes but not a valid packet; answer with the error if there is a cid.
    Invalid(ScError),
}

/// What a client asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Handshake {
        auth_token: Option<String>,
    },
    Subscribe {
        channel: String,
        data: Option<Value>,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        data: Option<Value>,
    },
    /// `None` when the client sent `null` or nothing.
    Authenticate {
        token: Option<String>,
    },
    RemoveAuthToken,
    /// Any event not starting with `#`: the application's own.
    Custom {
        event: String,
        data: Option<Value>,
    },
}

impl Request {
    /// The event name as on the wire.
    #[must_use]
    pub fn event_name(&self) -> &str {
        match self {
            Request::Handshake { .. } => "#handshake",
            Request::Subscribe { .. } => "#subscribe",
            Request::Unsubscribe { .. } => "#unsubscribe",
            Request::Publish { .. } => "#publish",
            Request::Authenticate { .. } => "#authenticate",
            Request::RemoveAuthToken => "#removeAuthToken",
            Request::Custom { event, .. } => event,
        }
    }
}

/// The raw fields of a packet, whichever codec carried them.
#[derive(Default)]
pub(crate) struct Fields {
    pub event: Option<Value>,
    pub data: Option<Value>,
    pub cid: Option<Value>,
    pub rid: Option<Value>,
    pub error: Option<Value>,
}

impl Fields {
    pub(crate) fn from_object(mut map: Map<String, Value>) -> Fields {
        Fields {
            event: map.remove("event"),
            data: map.remove("data"),
            cid: map.remove("cid"),
            rid: map.remove("rid"),
            error: map.remove("error"),
        }
    }
}

fn as_cid(v: Option<&Value>) -> Option<Cid> {
    v.and_then(Value::as_u64)
}

impl Packet {
    /// Types the fields of one packet.
    pub(crate) fn from_fields(f: Fields) -> Packet {
        let cid = as_cid(f.cid.as_ref());
        let kind = match (f.event, as_cid(f.rid.as_ref())) {
            (Some(Value::String(event)), _) => match parse_request(event, f.data) {
                Ok(r) => PacketKind::Request(r),
                Err(e) => PacketKind::Invalid(e),
            },
            (Some(_), _) => PacketKind::Invalid(ScError::invalid_action("event must be a string")),
            (None, Some(rid)) => PacketKind::Response { rid, error: f.error.filter(|e| !e.is_null()), data: f.data },
            (None, None) => {
                PacketKind::Invalid(ScError::invalid_action("packet has neither an event nor a numeric rid"))
            }
        };
        Packet { cid, kind }
    }

    /// A value that is not an object, inside a batch or alone.
    pub(crate) fn not_an_object() -> Packet {
        Packet { cid: None, kind: PacketKind::Invalid(ScError::invalid_action("packet must be an object")) }
    }
}

fn parse_request(event: String, data: Option<Value>) -> Result<Request, ScError> {
    Ok(match event.as_str() {
        "#handshake" => {
            let auth_token = match data {
                None | Some(Value::Null) => None,
                Some(Value::Object(mut m)) => match m.remove("authToken") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => Some(t),
                    Some(_) => return Err(ScError::invalid_action("authToken must be a string")),
                },
                Some(_) => return Err(ScError::invalid_action("#handshake data must be an object")),
            };
            Request::Handshake { auth_token }
        }
        "#subscribe" => {
            let Some(Value::Object(mut m)) = data else {
                return Err(ScError::invalid_action("Subscribe channel name was malformatted"));
            };
            let Some(Value::String(channel)) = m.remove("channel") else {
                return Err(ScError::invalid_action("Subscribe channel name was malformatted"));
            };
            Request::Subscribe { channel, data: m.remove("data") }
        }
        "#unsubscribe" => match data {
            Some(Value::String(channel)) => Request::Unsubscribe { channel },
            _ => return Err(ScError::invalid_action("Unsubscribe channel name was malformatted")),
        },
        "#publish" => {
            let Some(Value::Object(mut m)) = data else {
                return Err(ScError::invalid_action("Publish channel name was malformatted"));
            };
            let Some(Value::String(channel)) = m.remove("channel") else {
                return Err(ScError::invalid_action("Publish channel name was malformatted"));
            };
            Request::Publish { channel, data: m.remove("data") }
        }
        "#authenticate" => match data {
            None | Some(Value::Null) => Request::Authenticate { token: None },
            Some(Value::String(t)) => Request::Authenticate { token: Some(t) },
            Some(_) => return Err(ScError::invalid_action("#authenticate data must be a token string")),
        },
        "#removeAuthToken" => Request::RemoveAuthToken,
        e if e.starts_with('#') => {
            return Err(ScError::new(crate::error::names::UNKNOWN_EVENT, format!("unknown protocol event {e}")))
        }
        _ => Request::Custom { event, data },
    })
}

/// Splits a decoded frame value into packets (a batch is an array).
pub(crate) fn packets_from_value(
    value: Value,
    fields: impl Fn(Map<String, Value>) -> Fields,
) -> Result<Vec<Packet>, DecodeError> {
    let one = |v: Value| match v {
        Value::Object(m) => Packet::from_fields(fields(m)),
        _ => Packet::not_an_object(),
    };
    match value {
        Value::Array(items) => {
            if items.len() > limits::MAX_PACKETS_PER_FRAME {
                return Err(DecodeError::TooManyPackets { max: limits::MAX_PACKETS_PER_FRAME });
            }
            if items.is_empty() {
                return Err(DecodeError::Empty);
            }
            Ok(items.into_iter().map(one).collect())
        }
        v => Ok(vec![one(v)]),
    }
}

/// One packet the server sends.
#[derive(Clone, Copy, Debug)]
pub enum Outbound<'a> {
    /// `{rid, data?}` or `{rid, error}`.
    Reply { rid: Cid, result: Result<Option<&'a Value>, &'a ScError> },
    /// `{event, data?}`: a transmit to the client, e.g. `#setAuthToken`.
    Event { event: &'a str, data: Option<&'a Value> },
    /// `{event: "#publish", data: {channel, data?}}`: a message on a channel.
    Publish { channel: &'a str, data: Option<&'a Value> },
}

#[cfg(test)]
mod tests;
