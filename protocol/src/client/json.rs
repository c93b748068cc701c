//! The default codec (`sc-formatter`): every message is JSON text.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::Value;

use super::{packets_from_value, Cid, DecodeError, Fields, Outbound, Packet};
use crate::error::ScError;

pub fn decode(frame: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let value: Value = serde_json::from_slice(frame).map_err(|_| DecodeError::Json)?;
    packets_from_value(value, Fields::from_object)
}

#[derive(Serialize)]
struct ReplyOk<'a> {
    rid: Cid,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

#[derive(Serialize)]
struct ReplyErr<'a> {
    rid: Cid,
    error: &'a ScError,
}

#[derive(Serialize)]
struct Event<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

#[derive(Serialize)]
struct Publish<'a> {
    event: &'static str,
    data: PublishData<'a>,
}

#[derive(Serialize)]
struct PublishData<'a> {
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

pub fn encode(packet: &Outbound<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(64).writer();
    // Serialising these types into memory cannot fail: every key is a string
    // and `Value` holds no non-finite floats.
    let _ = match *packet {
        Outbound::Reply { rid, result: Ok(data) } => serde_json::to_writer(&mut out, &ReplyOk { rid, data }),
        Outbound::Reply { rid, result: Err(error) } => serde_json::to_writer(&mut out, &ReplyErr { rid, error }),
        Outbound::Event { event, data } => serde_json::to_writer(&mut out, &Event { event, data }),
        Outbound::Publish { channel, data } => {
            serde_json::to_writer(&mut out, &Publish { event: "#publish", data: PublishData { channel, data } })
        }
    };
    out.into_inner().freeze()
}

/// `[a,b,c]` from already encoded packets.
pub fn encode_batch(frames: &[Bytes]) -> Bytes {
    let len = frames.iter().map(Bytes::len).sum::<usize>() + frames.len() + 1;
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(b'[');
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(f);
    }
    out.put_u8(b']');
    out.freeze()
}
