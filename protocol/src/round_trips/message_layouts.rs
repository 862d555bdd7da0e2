//! Each message's payload layout, written by the encoder and read back by the decoders:
//! round trips, frozen layouts, and malformed payloads named by their field.

use crate::decode_error::DecodeError;
use crate::decoder::{RequestDecoder, ResponseDecoder};
use crate::encoder::Encoder;
use crate::error::{EncodeError, Malformation};
use crate::error_response::{ErrorCode, ErrorResponse};
use crate::event::{Event, EventBatch};
use crate::frame::{FrameType, RequestId, FRAME_HEADER_BYTES, MAGIC};
use crate::limits::{DecodeLimits, DEFAULT_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES};
use crate::message::*;
use crate::operator::{
    EventLocation, InspectReport, ReplayExecution, ReplayPoint, ReplayReport, ReplayRequest,
    RetainedCommit, MAX_LISTED_NOT_RETAINED_EVENTS, MAX_LISTED_REPLAY_SEGMENTS,
};

fn hello() -> Hello {
    Hello::new("unit-test")
}

fn accepted() -> HelloAccepted {
    HelloAccepted {
        version: 1,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        server_name: "channeld 0.1.0".into(),
    }
}

fn encode_requests(requests: &[Request]) -> Vec<u8> {
    let encoder = Encoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut out = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        encoder
            .encode_request(RequestId(index as u32 + 1), request, &mut out)
            .unwrap();
    }
    out
}

fn decode_requests(mut input: &[u8]) -> Result<Vec<Request>, DecodeError> {
    let mut decoder = RequestDecoder::new(DecodeLimits::default());
    let mut requests = Vec::new();
    while let Some((frame, used)) = decoder.decode_slice(input)? {
        requests.push(frame.request);
        input = &input[used..];
    }
    assert!(input.is_empty(), "{} bytes left undecoded", input.len());
    Ok(requests)
}

fn encode_responses(responses: &[Response]) -> Vec<u8> {
    let encoder = Encoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut out = Vec::new();
    for (index, response) in responses.iter().enumerate() {
        encoder
            .encode_response(RequestId(index as u32 + 1), response, &mut out)
            .unwrap();
    }
    out
}

fn decode_responses(mut input: &[u8]) -> Result<Vec<Response>, DecodeError> {
    let mut decoder = ResponseDecoder::new(DecodeLimits::default());
    let mut responses = Vec::new();
    while let Some((frame, used)) = decoder.decode_slice(input)? {
        responses.push(frame.response);
        input = &input[used..];
    }
    assert!(input.is_empty(), "{} bytes left undecoded", input.len());
    Ok(responses)
}

/// Encodes `request` after a Hello and checks it decodes to itself.
fn assert_request_round_trips(request: Request) {
    let requests = [Request::Hello(hello()), request];
    assert_eq!(
        decode_requests(&encode_requests(&requests)),
        Ok(requests.to_vec())
    );
}

/// Encodes `response` after a HelloAccepted and checks it decodes to itself.
fn assert_response_round_trips(response: Response) {
    let responses = [Response::HelloAccepted(accepted()), response];
    assert_eq!(
        decode_responses(&encode_responses(&responses)),
        Ok(responses.to_vec())
    );
}

/// A Hello followed by one hand-made frame.
fn hello_then_frame(frame_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = encode_requests(&[Request::Hello(hello())]);
    bytes.extend_from_slice(&(5 + payload.len() as u32).to_le_bytes());
    bytes.push(frame_type);
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn malformation_of(result: Result<Vec<Request>, DecodeError>) -> Malformation {
    match result {
        Err(DecodeError::Malformed { problem, .. }) => problem,
        other => panic!("expected a malformed frame, got {other:?}"),
    }
}

#[test]
fn hello_layout_is_frozen() {
    let hello = Hello {
        oldest_version: 1,
        newest_version: 2,
        max_frame_bytes: 0x0100_0000,
        client_name: "cli".into(),
        auth_token: Some("tok".into()),
    };
    let bytes = encode_requests(&[Request::Hello(hello)]);
    let expected: Vec<u8> = [
        &MAGIC[..],
        &[23, 0, 0, 0],               // length: the 23 bytes after it
        &[0x01],                      // type Hello
        &[1, 0, 0, 0],                // request id 1
        &[1, 0, 2, 0],                // versions 1..=2
        &[0, 0, 0, 1],                // max_frame_bytes 16 MiB
        &[3, b'c', b'l', b'i'],       // client name
        &[1, 3, 0, b't', b'o', b'k'], // auth token present, "tok"
    ]
    .concat();
    assert_eq!(bytes, expected);
}

#[test]
fn hello_round_trips_with_and_without_an_auth_token() {
    let with_token = hello().with_auth_token("s3cret");
    for hello in [hello(), with_token] {
        let requests = [Request::Hello(hello)];
        assert_eq!(
            decode_requests(&encode_requests(&requests)),
            Ok(requests.to_vec())
        );
    }
}

#[test]
fn hello_with_an_empty_version_range_is_malformed() {
    let mut bad = hello();
    bad.oldest_version = 3;
    bad.newest_version = 2;
    assert!(matches!(
        Encoder::default().encode_request(RequestId(1), &Request::Hello(bad), &mut Vec::new()),
        Err(EncodeError::InvalidValue {
            field: "oldest_version",
            ..
        })
    ));
    let mut bytes = encode_requests(&[Request::Hello(hello())]);
    bytes[13] = 3; // oldest_version, after magic and header
    assert!(matches!(
        malformation_of(decode_requests(&bytes)),
        Malformation::InvalidValue {
            field: "oldest_version",
            value: 3,
            ..
        }
    ));
}

#[test]
fn hello_announcing_a_frame_limit_below_the_minimum_is_malformed() {
    let mut bytes = encode_requests(&[Request::Hello(hello())]);
    bytes[17..21].copy_from_slice(&1024u32.to_le_bytes());
    assert!(matches!(
        malformation_of(decode_requests(&bytes)),
        Malformation::InvalidValue {
            field: "max_frame_bytes",
            value: 1024,
            ..
        }
    ));
}

#[test]
fn hello_auth_token_flag_must_be_zero_or_one() {
    let mut bytes = encode_requests(&[Request::Hello(hello())]);
    let flag_offset = bytes.len() - 1;
    bytes[flag_offset] = 2;
    assert!(matches!(
        malformation_of(decode_requests(&bytes)),
        Malformation::InvalidValue {
            field: "has_auth_token",
            value: 2,
            ..
        }
    ));
}

#[test]
fn payloadless_requests_round_trip() {
    assert_request_round_trips(Request::Ping);
    assert_request_round_trips(Request::Commit);
    assert_request_round_trips(Request::Rollback);
}

#[test]
fn payloadless_request_with_a_payload_is_malformed() {
    let bytes = hello_then_frame(FrameType::Commit.as_byte(), &[0]);
    assert_eq!(
        malformation_of(decode_requests(&bytes)),
        Malformation::TrailingBytes { trailing_bytes: 1 }
    );
}

#[test]
fn begin_stats_and_checkpoint_round_trip_their_channel() {
    assert_request_round_trips(Request::Begin {
        channel: "c1".into(),
    });
    assert_request_round_trips(Request::Stats {
        channel: "file-channel".into(),
    });
    assert_request_round_trips(Request::Checkpoint {
        channel: "x".repeat(255),
    });
}

#[test]
fn begin_with_an_empty_channel_name_is_malformed() {
    let bytes = hello_then_frame(FrameType::Begin.as_byte(), &[0]);
    assert!(matches!(
        malformation_of(decode_requests(&bytes)),
        Malformation::InvalidValue {
            field: "channel length",
            ..
        }
    ));
}

#[test]
fn put_round_trips_its_events() {
    let events =
        EventBatch::from_events(&[Event::new("one").with_header("a", "1"), Event::new("two")])
            .unwrap();
    assert_request_round_trips(Request::Put { events });
    assert_request_round_trips(Request::Put {
        events: EventBatch::new(),
    });
}

#[test]
fn take_round_trips_count_and_wait() {
    assert_request_round_trips(Request::Take {
        max_events: 100,
        wait_ms: 1_000,
    });
    assert_request_round_trips(Request::Take {
        max_events: u32::MAX,
        wait_ms: 0,
    });
}

#[test]
fn take_of_zero_events_is_malformed() {
    let bytes = hello_then_frame(FrameType::Take.as_byte(), &[0; 8]);
    assert!(matches!(
        malformation_of(decode_requests(&bytes)),
        Malformation::InvalidValue {
            field: "max_events",
            value: 0,
            ..
        }
    ));
}

#[test]
fn peek_round_trips_channel_and_count() {
    for max_events in [1, 10, u32::MAX] {
        assert_request_round_trips(Request::Peek {
            channel: "c1".into(),
            max_events,
        });
    }
}

#[test]
fn peek_of_zero_events_is_malformed_and_is_not_sent() {
    let mut payload = vec![2, b'c', b'1'];
    payload.extend_from_slice(&0u32.to_le_bytes());
    let bytes = hello_then_frame(FrameType::Peek.as_byte(), &payload);
    assert!(matches!(
        malformation_of(decode_requests(&bytes)),
        Malformation::InvalidValue {
            field: "max_events",
            value: 0,
            ..
        }
    ));
    let refused = Encoder::default().encode_request(
        RequestId(1),
        &Request::Peek {
            channel: "c1".into(),
            max_events: 0,
        },
        &mut Vec::new(),
    );
    assert!(refused.is_err(), "{refused:?}");
}

#[test]
fn take_cut_short_names_the_missing_field() {
    let bytes = hello_then_frame(FrameType::Take.as_byte(), &[1, 0, 0, 0]);
    assert_eq!(
        malformation_of(decode_requests(&bytes)),
        Malformation::Truncated { field: "wait_ms" }
    );
}

#[test]
fn put_commit_round_trips_channel_and_events() {
    let events = EventBatch::from_events(&[Event::new("x").with_header("k", "v")]).unwrap();
    assert_request_round_trips(Request::PutCommit {
        channel: "c1".into(),
        events,
    });
}

#[test]
fn hello_accepted_round_trips() {
    let responses = [Response::HelloAccepted(accepted())];
    assert_eq!(
        decode_responses(&encode_responses(&responses)),
        Ok(responses.to_vec())
    );
}

#[test]
fn hello_accepted_with_version_zero_is_malformed() {
    let mut bytes = encode_responses(&[Response::HelloAccepted(accepted())]);
    bytes[13] = 0;
    assert!(matches!(
        decode_responses(&bytes),
        Err(DecodeError::Malformed {
            problem: Malformation::InvalidValue {
                field: "version",
                ..
            },
            ..
        })
    ));
}

#[test]
fn handshake_rejection_is_an_error_frame_after_the_magic() {
    let rejection = Response::HandshakeRejected(ErrorResponse::unsupported_version(9, 9));
    let bytes = encode_responses(std::slice::from_ref(&rejection));
    assert_eq!(bytes[..4], MAGIC);
    assert_eq!(bytes[8], FrameType::Error.as_byte());
    assert_eq!(decode_responses(&bytes), Ok(vec![rejection]));
}

#[test]
fn ok_pong_events_and_stats_round_trip() {
    assert_response_round_trips(Response::Ok);
    assert_response_round_trips(Response::Pong);
    assert_response_round_trips(Response::Events(EventBatch::new()));
    assert_response_round_trips(Response::Events(
        EventBatch::from_events(&[Event::new("body").with_header("h", "v")]).unwrap(),
    ));
    assert_response_round_trips(Response::Stats(
        ChannelStats::default()
            .with_counter(counters::CHANNEL_SIZE, 42)
            .with_counter(counters::CHANNEL_CAPACITY, 1_000_000)
            .with_counter("EventPutErrorCount", 0),
    ));
}

#[test]
fn error_after_the_handshake_round_trips_with_its_fields() {
    assert_response_round_trips(Response::Error(ErrorResponse::channel_full("c1", 100, 100)));
    assert_response_round_trips(Response::Error(ErrorResponse::no_transaction()));
}

#[test]
fn error_code_from_a_newer_server_decodes_as_unrecognized() {
    let error = ErrorResponse::new(ErrorCode::Unrecognized(150), "new kind of full");
    let responses = [Response::HelloAccepted(accepted()), Response::Error(error)];
    let decoded = decode_responses(&encode_responses(&responses)).unwrap();
    match &decoded[1] {
        Response::Error(error) => {
            assert_eq!(error.code, ErrorCode::Unrecognized(150));
            assert_eq!(error.class(), crate::ErrorClass::Retryable);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn stats_accessors_find_flume_counters_by_name() {
    let stats = ChannelStats::default()
        .with_counter(counters::CHANNEL_SIZE, 7)
        .with_counter(counters::CHANNEL_CAPACITY, 10)
        .with_counter(counters::EVENT_PUT_SUCCESS_COUNT, 3);
    assert_eq!(stats.size(), Some(7));
    assert_eq!(stats.capacity(), Some(10));
    assert_eq!(stats.get(counters::EVENT_PUT_SUCCESS_COUNT), Some(3));
    assert_eq!(stats.get(counters::EVENT_TAKE_SUCCESS_COUNT), None);
}

fn sample_replay_report() -> ReplayReport {
    ReplayReport {
        point: ReplayPoint::FromUnixMs(1_767_225_000_000),
        take_transactions: 2,
        events: 15,
        put_write_order_range: Some((23, 27)),
        segment_count: 2,
        segments: vec![3, 4],
        not_retained_events: 1,
        not_retained: vec![EventLocation {
            segment_id: 1,
            record_offset: 312,
            event_index: 4,
        }],
        oldest_retained_commit: Some(RetainedCommit {
            write_order_id: 2,
            committed_unix_ms: 1_767_224_400_000,
        }),
        history_truncated: false,
        execution: Some(ReplayExecution {
            events_replayed: 15,
            transactions: 1,
        }),
    }
}

#[test]
fn replay_and_inspect_requests_round_trip() {
    for point in [
        ReplayPoint::LastMs(900_000),
        ReplayPoint::FromUnixMs(1_767_225_600_000),
        ReplayPoint::FromWriteOrderId(u64::MAX),
    ] {
        for execute in [false, true] {
            assert_request_round_trips(Request::Replay {
                channel: "c1".into(),
                replay: ReplayRequest { point, execute },
            });
        }
    }
    assert_request_round_trips(Request::Inspect {
        channel: "c1".into(),
    });
}

#[test]
fn replay_request_layout_is_channel_point_kind_value_and_execute_flag() {
    let request = Request::Replay {
        channel: "c1".into(),
        replay: ReplayRequest {
            point: ReplayPoint::LastMs(900_000),
            execute: true,
        },
    };
    let mut out = Vec::new();
    Encoder::default()
        .encode_request(RequestId(2), &request, &mut out)
        .unwrap();
    let expected: Vec<u8> = [
        &[18, 0, 0, 0][..],        // length
        &[0x0B],                   // type Replay
        &[2, 0, 0, 0],             // request id
        &[2, b'c', b'1'],          // channel
        &[1],                      // point kind: last_ms
        &900_000u64.to_le_bytes(), // point value
        &[1],                      // execute
    ]
    .concat();
    assert_eq!(out, expected);
}

#[test]
fn replay_point_kind_and_execute_flag_outside_their_values_are_malformed() {
    let mut payload = vec![2, b'c', b'1', 4];
    payload.extend_from_slice(&0u64.to_le_bytes());
    payload.push(0);
    assert!(matches!(
        malformation_of(decode_requests(&hello_then_frame(
            FrameType::Replay.as_byte(),
            &payload
        ))),
        Malformation::InvalidValue {
            field: "point kind",
            value: 4,
            ..
        }
    ));
    payload[3] = 3;
    *payload.last_mut().unwrap() = 2;
    assert!(matches!(
        malformation_of(decode_requests(&hello_then_frame(
            FrameType::Replay.as_byte(),
            &payload
        ))),
        Malformation::InvalidValue {
            field: "execute",
            value: 2,
            ..
        }
    ));
}

#[test]
fn replay_and_inspect_reports_round_trip() {
    assert_response_round_trips(Response::Replay(sample_replay_report()));
    let planned_only = ReplayReport {
        point: ReplayPoint::FromWriteOrderId(1),
        take_transactions: 0,
        events: 0,
        put_write_order_range: None,
        segment_count: 0,
        segments: Vec::new(),
        not_retained_events: 0,
        not_retained: Vec::new(),
        oldest_retained_commit: None,
        history_truncated: true,
        execution: None,
    };
    assert_response_round_trips(Response::Replay(planned_only));
    assert_response_round_trips(Response::Inspect(InspectReport {
        json: r#"{"channel":"c1","queue":{"depth":3}}"#.into(),
    }));
}

#[test]
fn a_replay_report_must_carry_a_resolved_point() {
    let mut report = sample_replay_report();
    report.point = ReplayPoint::LastMs(60_000);
    let mut out = Vec::new();
    assert!(matches!(
        Encoder::default().encode_response(RequestId(2), &Response::Replay(report), &mut out),
        Err(EncodeError::InvalidValue {
            field: "point kind",
            ..
        })
    ));
    assert!(out.is_empty(), "a refused frame leaves nothing behind");
    let mut bytes = encode_responses(&[
        Response::HelloAccepted(accepted()),
        Response::Replay(sample_replay_report()),
    ]);
    let point_kind_offset = bytes.len()
        - encode_responses(&[Response::Replay(sample_replay_report())]).len()
        + FRAME_HEADER_BYTES;
    bytes[point_kind_offset] = 1;
    assert!(matches!(
        decode_responses(&bytes),
        Err(DecodeError::Malformed {
            problem: Malformation::InvalidValue {
                field: "point kind",
                value: 1,
                ..
            },
            ..
        })
    ));
}

#[test]
fn a_replay_report_listing_more_than_it_counts_or_its_cap_is_refused() {
    let mut overcounted = sample_replay_report();
    overcounted.not_retained_events = 0;
    assert!(matches!(
        Encoder::default().encode_response(
            RequestId(2),
            &Response::Replay(overcounted),
            &mut Vec::new()
        ),
        Err(EncodeError::InvalidValue {
            field: "not_retained",
            ..
        })
    ));
    let mut over_cap = sample_replay_report();
    over_cap.segments = vec![7; MAX_LISTED_REPLAY_SEGMENTS + 1];
    over_cap.segment_count = u64::MAX;
    assert!(matches!(
        Encoder::default().encode_response(
            RequestId(2),
            &Response::Replay(over_cap),
            &mut Vec::new()
        ),
        Err(EncodeError::TooManyEntries {
            field: "segments",
            ..
        })
    ));
}

#[test]
fn the_largest_replay_report_fits_the_smallest_frame_limit() {
    let mut largest = sample_replay_report();
    largest.segments = vec![u32::MAX; MAX_LISTED_REPLAY_SEGMENTS];
    largest.segment_count = u64::MAX;
    largest.not_retained = vec![
        EventLocation {
            segment_id: u32::MAX,
            record_offset: u32::MAX,
            event_index: u32::MAX,
        };
        MAX_LISTED_NOT_RETAINED_EVENTS
    ];
    largest.not_retained_events = u64::MAX;
    let mut out = Vec::new();
    let frame_bytes = Encoder::new(MIN_MAX_FRAME_BYTES)
        .encode_response(RequestId(2), &Response::Replay(largest), &mut out)
        .unwrap();
    assert!(frame_bytes <= MIN_MAX_FRAME_BYTES as usize);
    assert_eq!(
        frame_bytes, 102_506,
        "the size docs/protocol.md §7.6 and §10 give"
    );
}

#[test]
fn an_inspect_report_that_is_not_utf8_is_malformed() {
    let mut bytes = encode_responses(&[
        Response::HelloAccepted(accepted()),
        Response::Inspect(InspectReport { json: "{}".into() }),
    ]);
    let last = bytes.len() - 1;
    bytes[last] = 0xFF;
    assert!(matches!(
        decode_responses(&bytes),
        Err(DecodeError::Malformed {
            problem: Malformation::InvalidUtf8 { field: "report" },
            ..
        })
    ));
}

#[test]
fn requests_report_the_channel_they_name() {
    assert_eq!(
        Request::Begin {
            channel: "c1".into()
        }
        .channel(),
        Some("c1")
    );
    assert_eq!(Request::Commit.channel(), None);
}
