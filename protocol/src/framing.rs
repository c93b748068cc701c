//! Length-prefixed frames for the fabric and control links.
//!
//! A frame is a 4-byte big-endian body length followed by a MessagePack body.
//! Reading is incremental: [`decode`] returns `Ok(None)` while a frame is
//! still incomplete (that is control flow, not an error), and refuses a
//! length over the limit before buffering it.

use bytes::{Buf, BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest frame body on a fabric or control link: a client frame (1 MiB
/// by default) plus room for the envelope.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooBig { len: usize, max: usize },
    #[error("frame body is not a valid message: {0}")]
    Malformed(String),
}

/// Appends one frame to `out`.
pub fn encode<T: Serialize>(frame: &T, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    // Compact form (structs as arrays). Writing into memory cannot fail for
    // our frame types.
    let _ = rmp_serde::encode::write(&mut out.writer(), frame);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Takes one whole frame off the front of `buf`, if there is one.
pub fn decode<T: DeserializeOwned>(buf: &mut BytesMut, max: usize) -> Result<Option<T>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(FrameError::TooBig { len, max });
    }
    // No reserving ahead: a peer that announces a large frame must send it
    // before this node holds memory for it.
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    let body = buf.split_to(len);
    rmp_serde::from_slice(&body).map(Some).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Compares two secrets in time that does not depend on where they differ.
#[must_use]
pub fn keys_match(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::FabricFrame;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_partial_frames_wait() {
        let mut buf = BytesMut::new();
        let f = FabricFrame::Publish { channel: "c".into(), payload: bytes::Bytes::from_static(b"{}"), ack: Some(7) };
        encode(&f, &mut buf);
        encode(&FabricFrame::Ping, &mut buf);
        let whole = buf.clone();
        let mut partial = BytesMut::from(&whole[..whole.len() - 1]);
        assert_eq!(decode::<FabricFrame>(&mut partial, MAX_FRAME_BYTES).unwrap(), Some(f.clone()));
        assert_eq!(decode::<FabricFrame>(&mut partial, MAX_FRAME_BYTES).unwrap(), None);
        assert_eq!(decode::<FabricFrame>(&mut buf, MAX_FRAME_BYTES).unwrap(), Some(f));
        assert_eq!(decode::<FabricFrame>(&mut buf, MAX_FRAME_BYTES).unwrap(), Some(FabricFrame::Ping));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_lengths_are_refused_before_buffering() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        assert!(matches!(decode::<FabricFrame>(&mut buf, 1024), Err(FrameError::TooBig { .. })));
    }

    #[test]
    fn keys_compare() {
        assert!(keys_match(b"abc", b"abc"));
        assert!(!keys_match(b"abc", b"abd"));
        assert!(!keys_match(b"abc", b"ab"));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode::<FabricFrame>(&mut buf, 1024) {}
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode::<crate::control::ControlFrame>(&mut buf, 1024) {}
        }
    }
}
