use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::error::ScError;

fn decode_one(codec: Codec, frame: &[u8]) -> Packet {
    let mut packets = codec.decode(frame).expect("decodes");
    assert_eq!(packets.len(), 1);
    packets.remove(0)
}

fn request(p: &Packet) -> &Request {
    match &p.kind {
        PacketKind::Request(r) => r,
        other => panic!("not a request: {other:?}"),
    }
}

// Golden frames: each one as captured in the reference document.

#[test]
fn golden_json_handshake() {
    let p = decode_one(Codec::Json, br##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##);
    assert_eq!(p.cid, Some(1));
    assert_eq!(request(&p), &Request::Handshake { auth_token: None });
}

#[test]
fn golden_json_handshake_reply() {
    let data = json!({"id":"p-IFE3na8FO4JHAlAAAA","pingTimeout":30000,"isAuthenticated":false});
    let frame = Codec::Json.encode(&Outbound::Reply { rid: 1, result: Ok(Some(&data)) });
    // Key order inside `data` follows serde_json's map (sorted, or insertion
    // order when a dependency turns on `preserve_order`); JSON does not care.
    assert!(frame.starts_with(br##"{"rid":1,"data":{"##), "{}", String::from_utf8_lossy(&frame));
    let back: serde_json::Value = serde_json::from_slice(&frame).unwrap();
    assert_eq!(back, json!({"rid": 1, "data": data}));
}

#[test]
fn golden_json_subscribe_with_data_and_ack() {
    let p = decode_one(
        Codec::Json,
        br##"{"event":"#subscribe","data":{"channel":"withdata","data":{"since":5}},"cid":3}"##,
    );
    assert_eq!(request(&p), &Request::Subscribe { channel: "withdata".into(), data: Some(json!({"since":5})) });
    assert_eq!(&Codec::Json.encode(&Outbound::Reply { rid: 2, result: Ok(None) })[..], br##"{"rid":2}"##);
}

#[test]
fn golden_json_publish_transmit_and_invoke() {
    let t = decode_one(Codec::Json, br##"{"event":"#publish","data":{"channel":"news","data":"tp"}}"##);
    assert_eq!(t.cid, None);
    assert_eq!(request(&t), &Request::Publish { channel: "news".into(), data: Some(json!("tp")) });
    let i = decode_one(Codec::Json, br##"{"event":"#publish","data":{"channel":"news","data":"ip"},"cid":4}"##);
    assert_eq!(i.cid, Some(4));
}

#[test]
fn golden_json_publish_push() {
    let data = json!({"x":1});
    let frame = Codec::Json.encode(&Outbound::Publish { channel: "foo", data: Some(&data) });
    assert_eq!(&frame[..], br##"{"event":"#publish","data":{"channel":"foo","data":{"x":1}}}"##);
    let bare = Codec::Json.encode(&Outbound::Publish { channel: "c1", data: None });
    assert_eq!(&bare[..], br##"{"event":"#publish","data":{"channel":"c1"}}"##);
}

#[test]
fn golden_json_unsubscribe_both_forms() {
    let t = decode_one(Codec::Json, br##"{"event":"#unsubscribe","data":"withdata"}"##);
    assert_eq!((t.cid, request(&t)), (None, &Request::Unsubscribe { channel: "withdata".into() }));
    let i = decode_one(Codec::Json, br##"{"event":"#unsubscribe","data":"foo","cid":11}"##);
    assert_eq!(i.cid, Some(11));
}

#[test]
fn golden_json_kick_out_and_remove_auth_token() {
    let data = json!({"channel":"foo","message":"bye"});
    let f = Codec::Json.encode(&Outbound::Event { event: "#kickOut", data: Some(&data) });
    assert_eq!(&f[..], br##"{"event":"#kickOut","data":{"channel":"foo","message":"bye"}}"##);
    let r = Codec::Json.encode(&Outbound::Event { event: "#removeAuthToken", data: None });
    assert_eq!(&r[..], br##"{"event":"#removeAuthToken"}"##);
}

#[test]
fn golden_json_error_reply() {
    let e = ScError::new("MyError", "nope");
    let f = Codec::Json.encode(&Outbound::Reply { rid: 6, result: Err(&e) });
    assert_eq!(&f[..], br##"{"rid":6,"error":{"message":"nope","name":"MyError"}}"##);
}

#[test]
fn golden_json_batch() {
    let ps = Codec::Json
        .decode(br##"[{"event":"echo","data":"b1","cid":9},{"event":"echo","data":"b2","cid":10}]"##)
        .unwrap();
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[1].cid, Some(10));
    assert_eq!(request(&ps[0]), &Request::Custom { event: "echo".into(), data: Some(json!("b1")) });
}

#[test]
fn golden_json_authenticate() {
    let p = decode_one(Codec::Json, br##"{"event":"#authenticate","data":"a.b.c","cid":12}"##);
    assert_eq!(request(&p), &Request::Authenticate { token: Some("a.b.c".into()) });
    let n = decode_one(Codec::Json, br##"{"event":"#authenticate","data":null,"cid":12}"##);
    assert_eq!(request(&n), &Request::Authenticate { token: None });
}

#[test]
fn golden_min_bin_handshake_from_the_real_client() {
    let mut frame = vec![0x81, 0xa1, b'e', 0x93, 0xaa];
    frame.extend_from_slice(b"#handshake");
    frame.extend_from_slice(&[0x81, 0xa9]);
    frame.extend_from_slice(b"authToken");
    frame.extend_from_slice(&[0xc0, 0x01]);
    let p = decode_one(Codec::MinBin, &frame);
    assert_eq!(p.cid, Some(1));
    assert_eq!(request(&p), &Request::Handshake { auth_token: None });
}

#[test]
fn golden_min_bin_reply_and_push() {
    let ok = Codec::MinBin.encode(&Outbound::Reply { rid: 2, result: Ok(None) });
    assert_eq!(&ok[..], &[0x81, 0xa1, b'r', 0x93, 0x02, 0xc0, 0xc0]);
    let data = json!(1);
    let push = Codec::MinBin.encode(&Outbound::Publish { channel: "a", data: Some(&data) });
    assert_eq!(&push[..], &[0x81, 0xa1, b'p', 0x92, 0xa1, b'a', 0x01]);
}

#[test]
fn min_bin_expands_compressed_publish_with_cid() {
    // {p: ["news", "ip", 4]}
    let frame = [0x81, 0xa1, b'p', 0x93, 0xa4, b'n', b'e', b'w', b's', 0xa2, b'i', b'p', 0x04];
    let p = decode_one(Codec::MinBin, &frame);
    assert_eq!(p.cid, Some(4));
    assert_eq!(request(&p), &Request::Publish { channel: "news".into(), data: Some(json!("ip")) });
}

#[test]
fn min_bin_binary_survives_a_round_trip_and_shows_as_base64_in_json() {
    // {e: ["bin", <bin 01 02 03>]}
    let frame = [0x81, 0xa1, b'e', 0x92, 0xa3, b'b', b'i', b'n', 0xc4, 0x03, 1, 2, 3];
    let p = decode_one(Codec::MinBin, &frame);
    let Request::Custom { data: Some(data), .. } = request(&p) else { panic!() };
    assert_eq!(data, &json!({"base64": true, "data": "AQID"}));
    let back = Codec::MinBin.encode(&Outbound::Event { event: "bin", data: Some(data) });
    assert_eq!(&back[..], &frame[..]);
}

#[test]
fn wrong_field_types_keep_the_cid() {
    let p = decode_one(Codec::Json, br##"{"event":"#subscribe","data":"bare","cid":7}"##);
    assert_eq!(p.cid, Some(7));
    assert!(matches!(p.kind, PacketKind::Invalid(ref e) if e.name == "InvalidActionError"));
    let q = decode_one(Codec::Json, br##"{"event":"#nope","cid":8}"##);
    assert!(matches!(q.kind, PacketKind::Invalid(ref e) if e.name == "UnknownEventError"));
}

#[test]
fn string_cid_means_transmit() {
    let p = decode_one(Codec::Json, br##"{"event":"echo","data":1,"cid":"5"}"##);
    assert_eq!(p.cid, None);
}

#[test]
fn undecodable_frames_are_errors() {
    assert_eq!(Codec::Json.decode(b"{nope"), Err(DecodeError::Json));
    assert_eq!(Codec::Json.decode(b"[]"), Err(DecodeError::Empty));
    assert_eq!(Codec::MinBin.decode(&[0x92, 0x01]), Err(DecodeError::MessagePack));
    // A valid value followed by trailing garbage.
    assert_eq!(Codec::MinBin.decode(&[0xc0, 0xc0]), Err(DecodeError::MessagePack));
    let many = format!("[{}]", vec!["{}"; 1000].join(","));
    assert!(matches!(Codec::Json.decode(many.as_bytes()), Err(DecodeError::TooManyPackets { .. })));
}

#[test]
fn min_bin_refuses_what_msgpack_lite_refuses_and_lying_lengths() {
    for frame in [
        &[0xc1][..],                         // the reserved byte
        &[0x81, 0xa1, b'e', 0xc1][..],       // ... inside a value
        &[0xd4, 0x01, 0x00][..],             // an extension type
        &[0xdd, 0xff, 0xff, 0xff, 0xff][..], // an array claiming 4 G elements
        &[0xdf, 0xff, 0xff, 0xff, 0xff][..], // a map claiming 4 G entries
        &[0xdb, 0xff, 0xff, 0xff, 0xff][..], // a string running past the frame
        &[0xa2, 0xff, 0xfe][..],             // invalid UTF-8
    ] {
        assert_eq!(Codec::MinBin.decode(frame), Err(DecodeError::MessagePack), "{frame:x?}");
    }
    let mut deep = vec![0x91; 100];
    deep.push(0xc0);
    assert_eq!(Codec::MinBin.decode(&deep), Err(DecodeError::MessagePack), "nesting past the limit");
}

#[test]
fn min_bin_decodes_every_scalar_form_like_msgpack_lite() {
    // [-1, -33, 200, 70000, 1.5f32, true, false, nil, "x"(str8)]
    let frame = [
        0x81, 0xa1, b'e', 0x92, 0xa1, b'v', 0x99, 0xff, 0xd0, 0xdf, 0xcc, 200, 0xce, 0, 1, 0x11, 0x70, 0xca, 0x3f,
        0xc0, 0, 0, 0xc3, 0xc2, 0xc0, 0xd9, 1, b'x',
    ];
    let p = decode_one(Codec::MinBin, &frame);
    let Request::Custom { data: Some(data), .. } = request(&p) else { panic!() };
    assert_eq!(data, &json!([-1, -33, 200, 70000, 1.5, true, false, null, "x"]));
}

#[test]
fn batches_join_encoded_packets() {
    for codec in Codec::ALL {
        let a = json!("a");
        let frames = [
            codec.encode(&Outbound::Publish { channel: "x", data: Some(&a) }),
            codec.encode(&Outbound::Reply { rid: 3, result: Ok(None) }),
        ];
        let ps = codec.decode(&codec.encode_batch(&frames)).unwrap();
        assert_eq!(ps.len(), 2, "{codec:?}");
        assert!(matches!(ps[1].kind, PacketKind::Response { rid: 3, .. }));
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z]{0,8}", inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for codec in Codec::ALL {
            let _ = codec.decode(&bytes);
        }
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_frames(
        data in arb_json(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
    ) {
        for codec in Codec::ALL {
            let mut frame = codec.encode(&Outbound::Publish { channel: "ch", data: Some(&data) }).to_vec();
            for (i, b) in &flips {
                let at = i.index(frame.len());
                frame[at] = *b;
            }
            let _ = codec.decode(&frame);
        }
    }

    #[test]
    fn publish_round_trips_through_both_codecs(channel in ".{0,64}", data in arb_json()) {
        for codec in Codec::ALL {
            let frame = codec.encode(&Outbound::Publish { channel: &channel, data: Some(&data) });
            let p = decode_one(codec, &frame);
            prop_assert_eq!(p.cid, None);
            prop_assert_eq!(request(&p), &Request::Publish { channel: channel.clone(), data: Some(data.clone()) });
        }
    }

    #[test]
    fn replies_round_trip(rid in any::<u32>(), data in arb_json(), msg in ".{0,30}") {
        for codec in Codec::ALL {
            let p = decode_one(codec, &codec.encode(&Outbound::Reply { rid: rid.into(), result: Ok(Some(&data)) }));
            prop_assert_eq!(&p.kind, &PacketKind::Response { rid: rid.into(), error: None, data: Some(data.clone()) });
            let err = ScError::new("E", msg.clone());
            let p = decode_one(codec, &codec.encode(&Outbound::Reply { rid: rid.into(), result: Err(&err) }));
            let PacketKind::Response { error: Some(e), .. } = p.kind else { panic!("no error") };
            prop_assert_eq!(e, err.to_value());
        }
    }
}
