//! The `sc-codec-min-bin` codec: MessagePack binary frames with compressed keys.
//!
//! `sc-codec-min-bin` rewrites packets before encoding them with msgpack-lite:
//! `{event:"#publish", data:{channel,data}, cid?}` becomes `{p:[channel,data,cid?]}`,
//! other events become `{e:[event,data,cid?]}`, and responses become
//! `{r:[rid,error,data]}`. Absent fields (JavaScript `undefined`) travel as nil.
//! Binary values decode into the `{"base64":true,"data":…}` shape that the
//! JSON codec uses for binary, and that shape encodes back into MessagePack
//! binary, so binary payloads survive a trip between two MessagePack clients.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Number, Value};

use super::{packets_from_value, DecodeError, Fields, Outbound, Packet};
use crate::limits::MAX_VALUE_DEPTH;

pub fn decode(frame: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let mut rd = Reader { buf: frame, pos: 0 };
    let value = rd.value(MAX_VALUE_DEPTH).ok_or(DecodeError::MessagePack)?;
    if rd.pos != frame.len() {
        return Err(DecodeError::MessagePack);
    }
    packets_from_value(value, expand)
}

/// Undoes `sc-codec-min-bin`'s key compression for one packet.
fn expand(mut map: Map<String, Value>) -> Fields {
    let mut take = |key: &str| match map.remove(key) {
        Some(Value::Array(items)) => Some(items),
        Some(_) => {
            // A compressed key that is not an array: mark the packet invalid
            // (a non-string event) rather than reinterpret it.
            map.insert("event".into(), Value::Null);
            None
        }
        None => None,
    };
    if let Some(e) = take("e") {
        let mut it = e.into_iter();
        return Fields { event: it.next(), data: it.next(), cid: it.next(), ..Fields::default() };
    }
    if let Some(p) = take("p") {
        let mut it = p.into_iter();
        let mut data = Map::new();
        if let Some(channel) = it.next() {
            data.insert("channel".into(), channel);
        }
        if let Some(d) = it.next() {
            data.insert("data".into(), d);
        }
        return Fields {
            event: Some(Value::String("#publish".into())),
            data: Some(Value::Object(data)),
            cid: it.next(),
            ..Fields::default()
        };
    }
    if let Some(r) = take("r") {
        let mut it = r.into_iter();
        return Fields { rid: it.next(), error: it.next(), data: it.next(), ..Fields::default() };
    }
    Fields::from_object(map)
}

/// A strict MessagePack reader straight into JSON values. It refuses what
/// msgpack-lite refuses (the reserved byte 0xc1, extension types we have no
/// meaning for), what JSON cannot carry (invalid UTF-8, map keys other than
/// strings and integers), nesting past `MAX_VALUE_DEPTH`, and any length
/// that runs past the end of the frame, so a short frame can never make it
/// allocate much.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }

    fn len(&mut self, bytes: usize) -> Option<usize> {
        Some(match bytes {
            1 => usize::from(self.u8()?),
            2 => usize::from(u16::from_be_bytes(self.be()?)),
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    fn str(&mut self, len: usize) -> Option<String> {
        std::str::from_utf8(self.take(len)?).ok().map(str::to_owned)
    }

    fn array(&mut self, len: usize, depth: usize) -> Option<Value> {
        // Every element takes at least one byte: a length past the frame is a lie.
        if len > self.buf.len() - self.pos {
            return None;
        }
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value(depth - 1)?);
        }
        Some(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Option<Value> {
        if len > (self.buf.len() - self.pos) / 2 {
            return None;
        }
        let mut map = Map::with_capacity(len);
        for _ in 0..len {
            let key = match self.value(depth - 1)? {
                Value::String(s) => s,
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                _ => return None,
            };
            let value = self.value(depth - 1)?;
            map.insert(key, value);
        }
        Some(Value::Object(map))
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth == 0 {
            return None;
        }
        let m = self.u8()?;
        Some(match m {
            0x00..=0x7f => Value::from(m),
            0x80..=0x8f => return self.map(usize::from(m & 0x0f), depth),
            0x90..=0x9f => return self.array(usize::from(m & 0x0f), depth),
            0xa0..=0xbf => Value::String(self.str(usize::from(m & 0x1f))?),
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let len = self.len(1 << (m - 0xc4))?;
                binary_marker(self.take(len)?)
            }
            0xca => float(f64::from(f32::from_be_bytes(self.be()?))),
            0xcb => float(f64::from_be_bytes(self.be()?)),
            0xcc => Value::from(self.u8()?),
            0xcd => Value::from(u16::from_be_bytes(self.be()?)),
            0xce => Value::from(u32::from_be_bytes(self.be()?)),
            0xcf => Value::from(u64::from_be_bytes(self.be()?)),
            0xd0 => Value::from(i8::from_be_bytes(self.be()?)),
            0xd1 => Value::from(i16::from_be_bytes(self.be()?)),
            0xd2 => Value::from(i32::from_be_bytes(self.be()?)),
            0xd3 => Value::from(i64::from_be_bytes(self.be()?)),
            0xd9..=0xdb => {
                let len = self.len(1 << (m - 0xd9))?;
                Value::String(self.str(len)?)
            }
            0xdc | 0xdd => {
                let len = self.len(if m == 0xdc { 2 } else { 4 })?;
                return self.array(len, depth);
            }
            0xde | 0xdf => {
                let len = self.len(if m == 0xde { 2 } else { 4 })?;
                return self.map(len, depth);
            }
            0xe0..=0xff => Value::from(i64::from(m as i8)),
            // 0xc1 (never used) and extension types (0xc7-0xc9, 0xd4-0xd8).
            _ => return None,
        })
    }
}

/// JSON has no NaN or infinity; JavaScript's `JSON.stringify` writes them as null.
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn binary_marker(bytes: &[u8]) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("base64".into(), Value::Bool(true));
    m.insert("data".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)));
    Value::Object(m)
}

/// The bytes behind a `{"base64":true,"data":"…"}` object, if it is one.
fn as_binary(map: &Map<String, Value>) -> Option<Vec<u8>> {
    if map.len() != 2 || map.get("base64") != Some(&Value::Bool(true)) {
        return None;
    }
    let data = map.get("data")?.as_str()?;
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

pub fn encode(packet: &Outbound<'_>) -> Bytes {
    let mut w = Writer(Vec::with_capacity(64));
    w.map_len(1);
    match *packet {
        Outbound::Reply { rid, result } => {
            w.str("r");
            w.array_len(3);
            w.uint(rid);
            match result {
                Ok(data) => {
                    w.nil();
                    w.opt_value(data);
                }
                Err(error) => {
                    w.value(&error.to_value());
                    w.nil();
                }
            }
        }
        Outbound::Event { event, data } => {
            w.str("e");
            w.array_len(2);
            w.str(event);
            w.opt_value(data);
        }
        Outbound::Publish { channel, data } => {
            w.str("p");
            w.array_len(2);
            w.str(channel);
            w.opt_value(data);
        }
    }
    Bytes::from(w.0)
}

/// A MessagePack array from already encoded packets.
pub fn encode_batch(frames: &[Bytes]) -> Bytes {
    let mut w = Writer(Vec::with_capacity(frames.iter().map(Bytes::len).sum::<usize>() + 5));
    w.array_len(frames.len());
    for f in frames {
        w.0.extend_from_slice(f);
    }
    Bytes::from(w.0)
}

/// A minimal MessagePack writer into memory, choosing the smallest encoding
/// for every length and integer as msgpack-lite does.
struct Writer(Vec<u8>);

impl Writer {
    fn nil(&mut self) {
        self.0.push(0xc0);
    }

    fn uint(&mut self, v: u64) {
        if v < 0x80 {
            self.0.push(v as u8);
        } else if let Ok(v) = u8::try_from(v) {
            self.0.extend_from_slice(&[0xcc, v]);
        } else if let Ok(v) = u16::try_from(v) {
            self.0.push(0xcd);
            self.0.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(v) {
            self.0.push(0xce);
            self.0.extend_from_slice(&v.to_be_bytes());
        } else {
            self.0.push(0xcf);
            self.0.extend_from_slice(&v.to_be_bytes());
        }
    }

    fn sint(&mut self, v: i64) {
        if let Ok(u) = u64::try_from(v) {
            return self.uint(u);
        }
        if v >= -32 {
            self.0.push(v as u8);
        } else if let Ok(v) = i8::try_from(v) {
            self.0.extend_from_slice(&[0xd0, v as u8]);
        } else if let Ok(v) = i16::try_from(v) {
            self.0.push(0xd1);
            self.0.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.0.push(0xd2);
            self.0.extend_from_slice(&v.to_be_bytes());
        } else {
            self.0.push(0xd3);
            self.0.extend_from_slice(&v.to_be_bytes());
        }
    }

    fn len_prefixed(&mut self, len: usize, fix: Option<(u8, usize)>, m8: Option<u8>, m16: u8, m32: u8) {
        match fix {
            Some((base, max)) if len <= max => self.0.push(base | len as u8),
            _ => {
                if let (Some(m8), Ok(l)) = (m8, u8::try_from(len)) {
                    self.0.extend_from_slice(&[m8, l]);
                } else if let Ok(l) = u16::try_from(len) {
                    self.0.push(m16);
                    self.0.extend_from_slice(&l.to_be_bytes());
                } else {
                    // Lengths past u32 cannot occur: frames are bounded far below 4 GiB.
                    self.0.push(m32);
                    self.0.extend_from_slice(&(len as u32).to_be_bytes());
                }
            }
        }
    }

    fn str(&mut self, s: &str) {
        self.len_prefixed(s.len(), Some((0xa0, 31)), Some(0xd9), 0xda, 0xdb);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn bin(&mut self, b: &[u8]) {
        self.len_prefixed(b.len(), None, Some(0xc4), 0xc5, 0xc6);
        self.0.extend_from_slice(b);
    }

    fn array_len(&mut self, n: usize) {
        self.len_prefixed(n, Some((0x90, 15)), None, 0xdc, 0xdd);
    }

    fn map_len(&mut self, n: usize) {
        self.len_prefixed(n, Some((0x80, 15)), None, 0xde, 0xdf);
    }

    fn opt_value(&mut self, v: Option<&Value>) {
        match v {
            Some(v) => self.value(v),
            None => self.nil(),
        }
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.nil(),
            Value::Bool(b) => self.0.push(if *b { 0xc3 } else { 0xc2 }),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    self.uint(u);
                } else if let Some(i) = n.as_i64() {
                    self.sint(i);
                } else {
                    self.0.push(0xcb);
                    self.0.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
                }
            }
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.array_len(items.len());
                for i in items {
                    self.value(i);
                }
            }
            Value::Object(map) => {
                if let Some(bytes) = as_binary(map) {
                    return self.bin(&bytes);
                }
                self.map_len(map.len());
                for (k, v) in map {
                    self.str(k);
                    self.value(v);
                }
            }
        }
    }
}
