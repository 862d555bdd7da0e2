//! The encoder's output read back by the decoders: the magic before handshakes, batch
//! writers, and what the encoder refuses without touching its buffer.

use bytes::BytesMut;

use crate::decoder::{RequestDecoder, ResponseDecoder};
use crate::encoder::Encoder;
use crate::error::EncodeError;
use crate::event::{encoded_event_bytes, Event, EventBatch, NO_HEADERS};
use crate::frame::{RequestId, MAGIC};
use crate::limits::{DecodeLimits, MIN_MAX_FRAME_BYTES};
use crate::message::{Hello, HelloAccepted, Request, Response};

fn server_side_decode(bytes: &[u8]) -> Vec<Request> {
    let mut decoder = RequestDecoder::new(DecodeLimits::default());
    let mut buffer = BytesMut::from(bytes);
    let mut requests = Vec::new();
    while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
        requests.push(frame.request);
    }
    assert!(buffer.is_empty());
    requests
}

fn hello_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::default()
        .encode_request(RequestId(1), &Request::Hello(Hello::new("test")), &mut out)
        .unwrap();
    out
}

#[test]
fn hello_is_preceded_by_the_magic() {
    assert_eq!(hello_bytes()[..4], MAGIC);
}

#[test]
fn handshake_responses_are_preceded_by_the_magic_and_others_are_not() {
    let encoder = Encoder::default();
    let mut out = Vec::new();
    let accepted = Response::HelloAccepted(HelloAccepted {
        version: 1,
        max_frame_bytes: MIN_MAX_FRAME_BYTES,
        server_name: "channeld".into(),
    });
    encoder
        .encode_response(RequestId(1), &accepted, &mut out)
        .unwrap();
    assert_eq!(out[..4], MAGIC);
    out.clear();
    encoder
        .encode_response(RequestId(2), &Response::Ok, &mut out)
        .unwrap();
    assert_eq!(out, [5, 0, 0, 0, 0x82, 2, 0, 0, 0]);
}

#[test]
fn put_writer_frame_decodes_as_the_same_put() {
    let events = [Event::new("a").with_header("k", "v"), Event::new("bb")];
    let mut out = hello_bytes();
    let mut writer = Encoder::default().put_writer(&mut out, RequestId(2));
    for event in &events {
        writer.push_event(event).unwrap();
    }
    assert_eq!(writer.event_count(), 2);
    writer.finish().unwrap();
    let requests = server_side_decode(&out);
    assert_eq!(
        requests[1],
        Request::Put {
            events: EventBatch::from_events(&events).unwrap()
        }
    );
}

#[test]
fn put_commit_writer_writes_the_channel_before_the_events() {
    let mut out = hello_bytes();
    let mut writer = Encoder::default()
        .put_commit_writer(&mut out, RequestId(2), "c1")
        .unwrap();
    writer.push([("k", "v")], b"body").unwrap();
    writer.finish().unwrap();
    match &server_side_decode(&out)[1] {
        Request::PutCommit { channel, events } => {
            assert_eq!(channel, "c1");
            assert_eq!(events.len(), 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn full_batch_refuses_the_next_event_without_writing_it() {
    let encoder = Encoder::new(MIN_MAX_FRAME_BYTES);
    let body = vec![7u8; 100 * 1024];
    let mut out = Vec::new();
    let mut writer = encoder.put_writer(&mut out, RequestId(1));
    writer.push(NO_HEADERS, &body).unwrap();
    writer.push(NO_HEADERS, &body).unwrap();
    let before = writer.frame_bytes();
    let refused = writer.push(NO_HEADERS, &body);
    assert!(
        matches!(refused, Err(EncodeError::BatchFull { .. })),
        "{refused:?}"
    );
    assert_eq!(writer.frame_bytes(), before);
    assert!(writer.finish().unwrap() <= MIN_MAX_FRAME_BYTES as usize);
}

#[test]
fn event_larger_than_an_empty_frame_is_frame_too_large() {
    let encoder = Encoder::new(MIN_MAX_FRAME_BYTES);
    let body = vec![0u8; MIN_MAX_FRAME_BYTES as usize];
    let mut out = Vec::new();
    let mut writer = encoder.put_writer(&mut out, RequestId(1));
    let refused = writer.push(NO_HEADERS, &body);
    assert!(
        matches!(refused, Err(EncodeError::FrameTooLarge { .. })),
        "{refused:?}"
    );
}

#[test]
fn dropped_batch_writer_leaves_the_buffer_as_it_was() {
    let mut out = vec![1, 2, 3];
    {
        let mut writer = Encoder::default().events_writer(&mut out, RequestId(1));
        writer.push([("k", "v")], b"x").unwrap();
    }
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn events_writer_output_decodes_on_the_client() {
    let encoder = Encoder::default();
    let mut out = Vec::new();
    encoder
        .encode_response(
            RequestId(1),
            &Response::HelloAccepted(HelloAccepted {
                version: 1,
                max_frame_bytes: MIN_MAX_FRAME_BYTES,
                server_name: String::new(),
            }),
            &mut out,
        )
        .unwrap();
    let mut writer = encoder.events_writer(&mut out, RequestId(2));
    assert!(writer.fits(encoded_event_bytes([("k", "v")], 1).unwrap()));
    writer.push([("k", "v")], b"x").unwrap();
    writer.finish().unwrap();
    let mut decoder = ResponseDecoder::new(DecodeLimits::default());
    let (_, used) = decoder.decode_slice(&out).unwrap().unwrap();
    let (frame, _) = decoder.decode_slice(&out[used..]).unwrap().unwrap();
    match frame.response {
        Response::Events(events) => {
            let event = events.iter().next().unwrap();
            assert_eq!(event.header("k"), Some("v"));
            assert_eq!(event.body(), b"x");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn oversized_request_is_refused_and_leaves_the_buffer_as_it_was() {
    let events =
        EventBatch::from_events(&[Event::new(vec![0u8; MIN_MAX_FRAME_BYTES as usize])]).unwrap();
    let mut out = vec![9];
    let refused =
        Encoder::default().encode_request(RequestId(1), &Request::Put { events }, &mut out);
    assert!(
        matches!(refused, Err(EncodeError::FrameTooLarge { .. })),
        "{refused:?}"
    );
    assert_eq!(out, [9]);
}

#[test]
fn invalid_channel_name_is_refused_on_encode() {
    let mut out = Vec::new();
    let encoder = Encoder::default();
    let empty = encoder.encode_request(
        RequestId(1),
        &Request::Begin {
            channel: String::new(),
        },
        &mut out,
    );
    assert!(
        matches!(empty, Err(EncodeError::InvalidValue { .. })),
        "{empty:?}"
    );
    let long = encoder.encode_request(
        RequestId(1),
        &Request::Stats {
            channel: "c".repeat(256),
        },
        &mut out,
    );
    assert!(
        matches!(long, Err(EncodeError::FieldTooLong { .. })),
        "{long:?}"
    );
    assert!(out.is_empty());
}
