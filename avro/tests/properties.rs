//! Property tests: round trips of events, calls and frames whatever their contents and
//! however the stream is cut, and decoders that never panic on arbitrary bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use millrace_avro::{
    decode_event_datum, encode_event_datum, AvroFlumeEvent, CallLimits, ClientProtocolCache,
    ClientSession, Compression, FrameLimits, Inbound, Message, NettyFrame, Outbound, ServerSession,
    ServerStep, Status,
};
use proptest::prelude::*;

mod common;

fn arb_event() -> impl Strategy<Value = AvroFlumeEvent> {
    (
        proptest::collection::btree_map("\\PC{0,8}", "\\PC{0,16}", 0..6),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(headers, body): (BTreeMap<String, String>, Vec<u8>)| AvroFlumeEvent {
                headers: headers.into_iter().collect(),
                body: Bytes::from(body),
            },
        )
}

fn arb_events() -> impl Strategy<Value = Vec<AvroFlumeEvent>> {
    proptest::collection::vec(arb_event(), 0..20)
}

fn arb_compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        (0u32..=9).prop_map(|level| Compression::Deflate { level })
    ]
}

/// Feeds `wire` to a new inbound pipeline in pieces of the given sizes (cycled);
/// returns the frames and the first error's text.
fn decode_in_pieces(
    wire: &[u8],
    compression: Compression,
    sizes: &[usize],
) -> (Vec<NettyFrame>, Option<String>) {
    let mut inbound = Inbound::new(FrameLimits::default(), compression);
    let mut frames = Vec::new();
    let mut offset = 0;
    let mut size_index = 0;
    while offset < wire.len() {
        let size = sizes
            .get(size_index % sizes.len().max(1))
            .copied()
            .unwrap_or(wire.len())
            .max(1);
        size_index += 1;
        let end = (offset + size).min(wire.len());
        inbound.read_buffer().extend_from_slice(&wire[offset..end]);
        offset = end;
        loop {
            match inbound.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Some(error.to_string())),
            }
        }
    }
    (frames, None)
}

/// The wire bytes of a client's requests for these batches, each answered OK by a
/// server session in between (so later requests carry no handshake), and the events
/// that server received.
fn conversation(
    batches: &[Vec<AvroFlumeEvent>],
    compression: Compression,
) -> (Vec<u8>, Vec<Vec<AvroFlumeEvent>>) {
    let mut client = ClientSession::new(CallLimits::default());
    let mut server = common::server();
    let mut outbound = Outbound::new(compression).unwrap();
    let mut wire = Vec::new();
    let mut received = Vec::new();
    for batch in batches {
        let mut request = Vec::new();
        client.append_batch_events(batch, &mut request).unwrap();
        wire.extend_from_slice(outbound.wire_bytes(&request).unwrap());
        let (message, answer) = common::serve_call(&mut server, &request, Status::Ok);
        received.push(message.into_events());
        client.receive(&common::one_frame(&answer)).unwrap();
    }
    (wire, received)
}

proptest! {
    #[test]
    fn any_event_survives_the_datum_round_trip(event in arb_event()) {
        let datum = Bytes::from(encode_event_datum(&event));
        prop_assert_eq!(decode_event_datum(&datum, &CallLimits::default()).unwrap(), event);
    }

    #[test]
    fn any_batches_arrive_intact_however_the_stream_is_cut(
        batches in proptest::collection::vec(arb_events(), 1..5),
        compression in arb_compression(),
        sizes in proptest::collection::vec(1usize..200, 1..8),
    ) {
        let (wire, received) = conversation(&batches, compression);
        prop_assert_eq!(&received, &batches);
        let (frames, error) = decode_in_pieces(&wire, compression, &sizes);
        prop_assert_eq!(error, None);
        let mut server = ServerSession::new(Arc::new(ClientProtocolCache::default()), CallLimits::default());
        for (frame, batch) in frames.iter().zip(&batches) {
            let ServerStep::Call { message, .. } = server.receive(&frame.message).unwrap() else {
                panic!("a known client's call is executed");
            };
            prop_assert_eq!(message, Message::AppendBatch(batch.clone()));
        }
        prop_assert_eq!(frames.len(), batches.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_the_same_whatever_the_cut(
        valid_prefix in any::<bool>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..2048),
        compression in arb_compression(),
        sizes in proptest::collection::vec(1usize..300, 1..8),
    ) {
        let mut wire = Vec::new();
        if valid_prefix {
            let (prefix, _) = conversation(&[vec![AvroFlumeEvent::new("x")]], Compression::None);
            wire.extend_from_slice(&prefix);
        }
        wire.extend_from_slice(&garbage);
        let wire = match compression {
            Compression::None => wire,
            deflate => Outbound::new(deflate).unwrap().wire_bytes(&wire).unwrap().to_vec(),
        };
        let whole = decode_in_pieces(&wire, compression, &[wire.len()]);
        let cut = decode_in_pieces(&wire, compression, &sizes);
        prop_assert_eq!(&whole, &cut);
        let mut server = ServerSession::new(Arc::new(ClientProtocolCache::default()), CallLimits::default());
        let mut client = ClientSession::new(CallLimits::default());
        for frame in &whole.0 {
            let _ = server.receive(&frame.message);
            let _ = client.receive(frame);
        }
    }

    #[test]
    fn arbitrary_message_bytes_never_panic_either_session(
        message in proptest::collection::vec(any::<u8>(), 0..512),
        serial in any::<i32>(),
    ) {
        let message = Bytes::from(message);
        let mut server = ServerSession::new(Arc::new(ClientProtocolCache::default()), CallLimits::default());
        let _ = server.receive(&message);
        let mut client = ClientSession::new(CallLimits::default());
        let mut request = Vec::new();
        client.append_batch_events(&[], &mut request).unwrap();
        let _ = client.receive(&NettyFrame { serial, message: message.clone() });
        let _ = client.receive(&NettyFrame { serial: 1, message });
        let _ = decode_event_datum(&Bytes::from(request), &CallLimits::default());
    }
}
