//! Property tests of the codec as a whole: round trips of every frame type, split
//! invariance, and robustness against arbitrary and corrupted bytes.

use bytes::BytesMut;
use millrace_protocol::{
    ChannelStats, DecodeError, DecodeLimits, Encoder, ErrorCode, ErrorResponse, Event, EventBatch,
    EventLocation, Hello, HelloAccepted, InspectReport, ReplayExecution, ReplayPoint, ReplayReport,
    ReplayRequest, Request, RequestDecoder, RequestFrame, RequestId, Response, ResponseDecoder,
    ResponseFrame, RetainedCommit, DEFAULT_MAX_FRAME_BYTES, MAGIC, MIN_MAX_FRAME_BYTES,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

// ---------------------------------------------------------------------------------------
// Strategies

fn channel_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.-]{1,40}",
        // Multi-byte characters too; at most 60 of them stays within 255 bytes.
        "\\PC{1,60}",
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        prop::collection::vec(("\\PC{0,12}", "\\PC{0,24}"), 0..5),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(headers, body)| Event {
            headers,
            body: body.into(),
        })
}

fn event_batch() -> impl Strategy<Value = EventBatch> {
    prop::collection::vec(event(), 0..8)
        .prop_map(|events| EventBatch::from_events(&events).expect("small events encode"))
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        1..=u16::MAX,
        any::<u16>(),
        MIN_MAX_FRAME_BYTES..=u32::MAX,
        "\\PC{0,40}",
        proptest::option::of("\\PC{0,80}"),
    )
        .prop_map(
            |(oldest_version, extra_versions, max_frame_bytes, client_name, auth_token)| Hello {
                oldest_version,
                newest_version: oldest_version.saturating_add(extra_versions),
                max_frame_bytes,
                client_name,
                auth_token,
            },
        )
}

fn replay_point() -> impl Strategy<Value = ReplayPoint> {
    prop_oneof![
        any::<u64>().prop_map(ReplayPoint::LastMs),
        resolved_replay_point(),
    ]
}

/// A point a replay report carries: a time or an id, never a duration.
fn resolved_replay_point() -> impl Strategy<Value = ReplayPoint> {
    prop_oneof![
        any::<u64>().prop_map(ReplayPoint::FromUnixMs),
        any::<u64>().prop_map(ReplayPoint::FromWriteOrderId),
    ]
}

fn event_location() -> impl Strategy<Value = EventLocation> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(segment_id, record_offset, event_index)| EventLocation {
            segment_id,
            record_offset,
            event_index,
        },
    )
}

fn replay_report() -> impl Strategy<Value = ReplayReport> {
    (
        (
            resolved_replay_point(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of((any::<u64>(), any::<u64>())),
        ),
        (
            prop::collection::vec(any::<u32>(), 0..6),
            0..3u64,
            prop::collection::vec(event_location(), 0..6),
            0..3u64,
        ),
        (
            proptest::option::of((any::<u64>(), any::<u64>())),
            any::<bool>(),
            proptest::option::of((any::<u64>(), any::<u64>())),
        ),
    )
        .prop_map(
            |(
                (point, take_transactions, events, put_write_order_range),
                (segments, unlisted_segments, not_retained, unlisted_not_retained),
                (oldest_retained_commit, history_truncated, execution),
            )| ReplayReport {
                point,
                take_transactions,
                events,
                put_write_order_range,
                segment_count: segments.len() as u64 + unlisted_segments,
                segments,
                not_retained_events: not_retained.len() as u64 + unlisted_not_retained,
                not_retained,
                oldest_retained_commit: oldest_retained_commit.map(
                    |(write_order_id, committed_unix_ms)| RetainedCommit {
                        write_order_id,
                        committed_unix_ms,
                    },
                ),
                history_truncated,
                execution: execution.map(|(events_replayed, transactions)| ReplayExecution {
                    events_replayed,
                    transactions,
                }),
            },
        )
}

/// Any request that may follow the handshake.
fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Ping),
        channel_name().prop_map(|channel| Request::Begin { channel }),
        event_batch().prop_map(|events| Request::Put { events }),
        (1..=u32::MAX, any::<u32>()).prop_map(|(max_events, wait_ms)| Request::Take {
            max_events,
            wait_ms
        }),
        Just(Request::Commit),
        Just(Request::Rollback),
        (channel_name(), event_batch())
            .prop_map(|(channel, events)| Request::PutCommit { channel, events }),
        channel_name().prop_map(|channel| Request::Stats { channel }),
        channel_name().prop_map(|channel| Request::Checkpoint { channel }),
        (channel_name(), replay_point(), any::<bool>()).prop_map(|(channel, point, execute)| {
            Request::Replay {
                channel,
                replay: ReplayRequest { point, execute },
            }
        }),
        channel_name().prop_map(|channel| Request::Inspect { channel }),
        (channel_name(), 1u32..).prop_map(|(channel, max_events)| Request::Peek {
            channel,
            max_events,
        }),
        (channel_name(), channel_name(), 0u64..u64::MAX).prop_map(|(kind, name, value)| {
            Request::ReportCounters {
                component_type: kind,
                component: name,
                counters: ChannelStats {
                    counters: vec![("EventReceivedCount".to_string(), value)],
                },
            }
        }),
    ]
}

fn error_response() -> impl Strategy<Value = ErrorResponse> {
    (
        any::<u16>().prop_map(ErrorCode::from_wire),
        proptest::option::of(channel_name()),
        "\\PC{0,80}",
        prop::collection::vec(("\\PC{0,12}", any::<u64>()), 0..5),
    )
        .prop_map(|(code, channel, message, fields)| ErrorResponse {
            code,
            channel,
            message,
            fields,
        })
}

fn hello_accepted() -> impl Strategy<Value = HelloAccepted> {
    (1..=u16::MAX, MIN_MAX_FRAME_BYTES..=u32::MAX, "\\PC{0,40}").prop_map(
        |(version, max_frame_bytes, server_name)| HelloAccepted {
            version,
            max_frame_bytes,
            server_name,
        },
    )
}

/// Any response that may follow an accepted handshake.
fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Ok),
        Just(Response::Pong),
        event_batch().prop_map(Response::Events),
        prop::collection::vec(("\\PC{0,20}", any::<u64>()), 0..8)
            .prop_map(|counters| Response::Stats(ChannelStats { counters })),
        error_response().prop_map(Response::Error),
        replay_report().prop_map(Response::Replay),
        "\\PC{0,200}".prop_map(|json| Response::Inspect(InspectReport { json })),
    ]
}

/// A whole client stream: the Hello, then requests.
fn client_stream() -> impl Strategy<Value = Vec<Request>> {
    (hello(), prop::collection::vec(request(), 0..12)).prop_map(|(hello, requests)| {
        std::iter::once(Request::Hello(hello))
            .chain(requests)
            .collect()
    })
}

/// A whole server stream: an accepted handshake and responses, or a lone rejection.
fn server_stream() -> impl Strategy<Value = Vec<Response>> {
    prop_oneof![
        4 => (hello_accepted(), prop::collection::vec(response(), 0..12)).prop_map(
            |(accepted, responses)| {
                std::iter::once(Response::HelloAccepted(accepted))
                    .chain(responses)
                    .collect()
            }
        ),
        1 => error_response().prop_map(|error| vec![Response::HandshakeRejected(error)]),
    ]
}

// ---------------------------------------------------------------------------------------
// Helpers

fn encode_client_stream(requests: &[Request]) -> Vec<u8> {
    let encoder = Encoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut out = Vec::new();
    let mut request_id = RequestId::CONNECTION;
    for request in requests {
        request_id = request_id.next();
        encoder
            .encode_request(request_id, request, &mut out)
            .expect("generated requests are valid");
    }
    out
}

fn encode_server_stream(responses: &[Response]) -> Vec<u8> {
    let encoder = Encoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut out = Vec::new();
    let mut request_id = RequestId::CONNECTION;
    for response in responses {
        request_id = request_id.next();
        encoder
            .encode_response(request_id, response, &mut out)
            .expect("generated responses are valid");
    }
    out
}

/// Everything a decoder made of a stream: the frames, then the error if it stopped on one,
/// or else how many bytes were left waiting for more. (After an error the bytes left over
/// depend on how much had arrived when it was found, so they are not compared.)
#[derive(Debug, PartialEq)]
struct Outcome<F> {
    frames: Vec<F>,
    error: Option<DecodeError>,
    undecoded_bytes: usize,
}

/// Cuts `bytes` at the given points (taken modulo its length, in order).
fn chunks<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|pair| &bytes[pair[0]..pair[1]])
        .collect()
}

/// Feeds the chunks one by one into a `BytesMut`, decoding after each, as a server
/// reading a socket would.
fn decode_requests_in_chunks(chunks: &[&[u8]], limits: DecodeLimits) -> Outcome<RequestFrame> {
    let mut decoder = RequestDecoder::new(limits);
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        frames,
                        error: Some(error),
                        undecoded_bytes: 0,
                    }
                }
            }
        }
    }
    Outcome {
        frames,
        error: None,
        undecoded_bytes: buffer.len(),
    }
}

fn decode_responses_in_chunks(chunks: &[&[u8]], limits: DecodeLimits) -> Outcome<ResponseFrame> {
    let mut decoder = ResponseDecoder::new(limits);
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        frames,
                        error: Some(error),
                        undecoded_bytes: 0,
                    }
                }
            }
        }
    }
    Outcome {
        frames,
        error: None,
        undecoded_bytes: buffer.len(),
    }
}

/// Decodes the whole input with the slice API.
fn decode_requests_from_slice(mut input: &[u8], limits: DecodeLimits) -> Outcome<RequestFrame> {
    let mut decoder = RequestDecoder::new(limits);
    let mut frames = Vec::new();
    loop {
        match decoder.decode_slice(input) {
            Ok(Some((frame, used))) => {
                frames.push(frame);
                input = &input[used..];
            }
            Ok(None) => {
                return Outcome {
                    frames,
                    error: None,
                    undecoded_bytes: input.len(),
                }
            }
            Err(error) => {
                return Outcome {
                    frames,
                    error: Some(error),
                    undecoded_bytes: 0,
                }
            }
        }
    }
}

fn decode_responses_from_slice(mut input: &[u8], limits: DecodeLimits) -> Outcome<ResponseFrame> {
    let mut decoder = ResponseDecoder::new(limits);
    let mut frames = Vec::new();
    loop {
        match decoder.decode_slice(input) {
            Ok(Some((frame, used))) => {
                frames.push(frame);
                input = &input[used..];
            }
            Ok(None) => {
                return Outcome {
                    frames,
                    error: None,
                    undecoded_bytes: input.len(),
                }
            }
            Err(error) => {
                return Outcome {
                    frames,
                    error: Some(error),
                    undecoded_bytes: 0,
                }
            }
        }
    }
}

/// Byte streams worth throwing at a decoder: arbitrary bytes on their own, after the
/// magic, and after a valid handshake (so they reach the frame parsers).
fn hostile_input(valid_prefix: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let tail = prop::collection::vec(any::<u8>(), 0..512);
    (0..3u8, tail).prop_map(move |(prefix_kind, tail)| {
        let prefix: &[u8] = match prefix_kind {
            0 => &[],
            1 => &MAGIC,
            _ => &valid_prefix,
        };
        [prefix, &tail].concat()
    })
}

fn valid_hello_bytes() -> Vec<u8> {
    encode_client_stream(&[Request::Hello(Hello::new("proptest"))])
}

fn valid_accepted_bytes() -> Vec<u8> {
    encode_server_stream(&[Response::HelloAccepted(HelloAccepted {
        version: 1,
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        server_name: "proptest".into(),
    })])
}

/// A decoder limit small enough that generated length prefixes often exceed it.
fn small_limits() -> DecodeLimits {
    DecodeLimits::new(MIN_MAX_FRAME_BYTES).expect("the minimum is a valid limit")
}

// ---------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Failing inputs are saved here and replayed first on every later run.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/properties.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_request_type_round_trips(requests in client_stream()) {
        let bytes = encode_client_stream(&requests);
        let outcome = decode_requests_from_slice(&bytes, DecodeLimits::default());
        prop_assert_eq!(outcome.error, None);
        prop_assert_eq!(outcome.undecoded_bytes, 0);
        let decoded: Vec<Request> = outcome.frames.into_iter().map(|frame| frame.request).collect();
        prop_assert_eq!(decoded, requests);
    }

    #[test]
    fn every_response_type_round_trips(responses in server_stream()) {
        let bytes = encode_server_stream(&responses);
        let outcome = decode_responses_from_slice(&bytes, DecodeLimits::default());
        prop_assert_eq!(outcome.error, None);
        prop_assert_eq!(outcome.undecoded_bytes, 0);
        let decoded: Vec<Response> = outcome.frames.into_iter().map(|frame| frame.response).collect();
        prop_assert_eq!(decoded, responses);
    }

    #[test]
    fn request_ids_are_echoed_in_order(requests in client_stream()) {
        let bytes = encode_client_stream(&requests);
        let outcome = decode_requests_from_slice(&bytes, DecodeLimits::default());
        let ids: Vec<u32> = outcome.frames.iter().map(|frame| frame.request_id.0).collect();
        let expected: Vec<u32> = (1..=requests.len() as u32).collect();
        prop_assert_eq!(ids, expected);
    }

    #[test]
    fn any_split_of_a_request_stream_decodes_to_the_same_frames(
        requests in client_stream(),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let bytes = encode_client_stream(&requests);
        let whole = decode_requests_in_chunks(&[&bytes], DecodeLimits::default());
        let split = decode_requests_in_chunks(&chunks(&bytes, &cuts), DecodeLimits::default());
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn any_split_of_a_response_stream_decodes_to_the_same_frames(
        responses in server_stream(),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        let bytes = encode_server_stream(&responses);
        let whole = decode_responses_in_chunks(&[&bytes], DecodeLimits::default());
        let split = decode_responses_in_chunks(&chunks(&bytes, &cuts), DecodeLimits::default());
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn byte_at_a_time_delivery_decodes_to_the_same_frames(requests in client_stream()) {
        let bytes = encode_client_stream(&requests);
        let single_bytes: Vec<&[u8]> = bytes.chunks(1).collect();
        let whole = decode_requests_in_chunks(&[&bytes], DecodeLimits::default());
        prop_assert_eq!(decode_requests_in_chunks(&single_bytes, DecodeLimits::default()), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_server_decoder_and_any_split_agrees(
        input in hostile_input(valid_hello_bytes()),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let whole = decode_requests_in_chunks(&[&input], small_limits());
        let split = decode_requests_in_chunks(&chunks(&input, &cuts), small_limits());
        prop_assert_eq!(&split, &whole);
        let sliced = decode_requests_from_slice(&input, small_limits());
        prop_assert_eq!(sliced, whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_client_decoder_and_any_split_agrees(
        input in hostile_input(valid_accepted_bytes()),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let whole = decode_responses_in_chunks(&[&input], small_limits());
        let split = decode_responses_in_chunks(&chunks(&input, &cuts), small_limits());
        prop_assert_eq!(&split, &whole);
        let sliced = decode_responses_from_slice(&input, small_limits());
        prop_assert_eq!(sliced, whole);
    }

    #[test]
    fn corrupted_request_streams_never_panic_and_any_split_agrees(
        requests in client_stream(),
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut bytes = encode_client_stream(&requests);
        for (position, value) in flips {
            let index = position.index(bytes.len());
            bytes[index] = value;
        }
        let whole = decode_requests_in_chunks(&[&bytes], DecodeLimits::default());
        let split = decode_requests_in_chunks(&chunks(&bytes, &cuts), DecodeLimits::default());
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn corrupted_response_streams_never_panic_and_any_split_agrees(
        responses in server_stream(),
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut bytes = encode_server_stream(&responses);
        for (position, value) in flips {
            let index = position.index(bytes.len());
            bytes[index] = value;
        }
        let whole = decode_responses_in_chunks(&[&bytes], DecodeLimits::default());
        let split = decode_responses_in_chunks(&chunks(&bytes, &cuts), DecodeLimits::default());
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn decoded_events_survive_being_re_encoded(batch in event_batch()) {
        let owned = batch.to_events();
        prop_assert_eq!(EventBatch::from_events(&owned).unwrap(), batch.clone());
        let copied: Vec<Event> = batch.iter().map(|view| view.to_event()).collect();
        prop_assert_eq!(copied, owned);
    }

    #[test]
    fn a_length_prefix_over_the_limit_is_rejected_with_only_its_four_bytes(
        length_prefix in (MIN_MAX_FRAME_BYTES - 3)..=u32::MAX,
    ) {
        let mut decoder = RequestDecoder::new(small_limits());
        let mut input = valid_hello_bytes();
        input.extend_from_slice(&length_prefix.to_le_bytes());
        let outcome = decode_requests_from_slice(&input, small_limits());
        prop_assert_eq!(outcome.frames.len(), 1);
        let is_frame_too_large = matches!(outcome.error, Some(DecodeError::FrameTooLarge { .. }));
        prop_assert!(is_frame_too_large);
        // The same holds for the stateful decoder fed from a socket-like buffer.
        let mut buffer = BytesMut::from(&input[..]);
        prop_assert!(decoder.decode(&mut buffer).unwrap().is_some());
        let is_frame_too_large = matches!(decoder.decode(&mut buffer), Err(DecodeError::FrameTooLarge { .. }));
        prop_assert!(is_frame_too_large);
    }
}
