//! Server and client sessions: the worked bytes of `docs/avro.md` §8 exactly, and the
//! handshake paths (BOTH, CLIENT, NONE and resend, pings, errors) on both sides.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{one_frame, serve, server};
use millrace_avro::{
    binary, AvroFlumeEvent, CallLimits, CallOutcome, ClientError, ClientProtocolCache,
    ClientSession, ClientStep, Compression, FrameLimits, HandshakeMatch, HandshakeRequest,
    HandshakeResponse, Inbound, Md5Hash, Message, Outbound, RequestProblem, ServerSession,
    ServerStep, Status, FLUME_PROTOCOL_JSON, FLUME_PROTOCOL_MD5, KNOWN_COMPATIBLE_PROTOCOLS,
};

const FLUME_HASH: [u8; 16] = [
    0x86, 0xaa, 0xda, 0xe2, 0xc4, 0x54, 0x74, 0xc0, 0xfe, 0x93, 0xff, 0xd0, 0xf2, 0x35, 0x0a, 0x65,
];

/// The first request of a Java Flume client on a new connection: `appendBatch` of one
/// event with headers `{k: v}` and body `hi`.
fn reference_first_request() -> Vec<u8> {
    [
        &[0x00, 0x00, 0x00, 0x01][..], // serial 1
        &[0x00, 0x00, 0x00, 0x02],     // 2 buffers
        &[0x00, 0x00, 0x00, 0x30],     // buffer 1: 48 bytes
        &FLUME_HASH,                   // clientHash
        &[0x00],                       // clientProtocol = null
        &FLUME_HASH,                   // serverHash
        &[0x02, 0x00],                 // meta = {} (union branch 1, empty map)
        &[0x00],                       // call metadata {}
        &[
            0x16, 0x61, 0x70, 0x70, 0x65, 0x6e, 0x64, 0x42, 0x61, 0x74, 0x63, 0x68,
        ], // "appendBatch"
        &[0x00, 0x00, 0x00, 0x0b],     // buffer 2: 11 bytes
        &[
            0x02, 0x02, 0x02, 0x6b, 0x02, 0x76, 0x00, 0x04, 0x68, 0x69, 0x00,
        ],
    ]
    .concat()
}

const REFERENCE_FIRST_RESPONSE: [u8; 27] = [
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
];

const REFERENCE_LATER_FAILED_RESPONSE: [u8; 23] = [
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x02,
];

fn reference_event() -> AvroFlumeEvent {
    AvroFlumeEvent::new("hi").with_header("k", "v")
}

/// A request message as Python's stateless `Requestor` writes it: a handshake with null
/// meta, then the call.
fn handshake_request_message(request: &HandshakeRequest, call: &[u8]) -> Bytes {
    let mut message = Vec::new();
    request.encode(&mut message);
    message.extend_from_slice(call);
    Bytes::from(message)
}

/// Call bytes after the handshake: empty meta, `appendBatch` of `events`.
fn append_batch_call(events: &[AvroFlumeEvent]) -> Vec<u8> {
    let mut call = vec![0x00];
    binary::write_str(&mut call, "appendBatch");
    binary::write_length(&mut call, events.len());
    for event in events {
        event.encode(&mut call);
    }
    if !events.is_empty() {
        call.push(0);
    }
    call
}

fn expect_call(step: ServerStep) -> (Message, millrace_avro::Reply) {
    match step {
        ServerStep::Call { message, reply, .. } => (message, reply),
        other => panic!("expected a call, got {other:?}"),
    }
}

#[test]
fn a_java_clients_first_request_decodes_from_the_reference_bytes_and_gets_the_reference_answer() {
    let frame = one_frame(&reference_first_request());
    assert_eq!(frame.serial, 1);
    let mut session = server();
    let (message, reply) = expect_call(session.receive(&frame.message).unwrap());
    assert_eq!(message, Message::AppendBatch(vec![reference_event()]));
    assert_eq!(
        reply.handshake().map(|handshake| handshake.matched),
        Some(HandshakeMatch::Both)
    );
    assert!(session.is_established());
    let mut response = Vec::new();
    reply
        .encode(
            frame.serial,
            &CallOutcome::Status(Status::Ok),
            &mut response,
        )
        .unwrap();
    assert_eq!(response, REFERENCE_FIRST_RESPONSE);
}

#[test]
fn a_later_failed_answer_matches_the_reference_bytes() {
    let mut session = server();
    session
        .receive(&one_frame(&reference_first_request()).message)
        .unwrap();
    // The second request on the connection carries no handshake.
    let second = Bytes::from(append_batch_call(&[reference_event()]));
    let (_, reply) = expect_call(session.receive(&second).unwrap());
    assert_eq!(reply.handshake(), None);
    let mut response = Vec::new();
    reply
        .encode(2, &CallOutcome::Status(Status::Failed), &mut response)
        .unwrap();
    assert_eq!(response, REFERENCE_LATER_FAILED_RESPONSE);
}

#[test]
fn a_system_error_answer_is_flag_one_union_zero_then_the_text() {
    let mut session = server();
    session
        .receive(&one_frame(&reference_first_request()).message)
        .unwrap();
    let mut unknown = vec![0x00];
    binary::write_str(&mut unknown, "drop");
    let error = session.receive(&Bytes::from(unknown)).unwrap_err();
    assert_eq!(
        error.problem,
        RequestProblem::UnknownMessage {
            name: "drop".into()
        }
    );
    let mut response = Vec::new();
    error.encode_reply(5, &mut response).unwrap();
    let text = b"No such remote message: drop";
    let payload = [&[0x01, 0x00, text.len() as u8 * 2][..], text].concat();
    let expected = [
        &[0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0][..],
        &(payload.len() as i32).to_be_bytes(),
        &payload,
    ]
    .concat();
    assert_eq!(response, expected);
}

#[test]
fn our_client_writes_the_reference_request_byte_for_byte() {
    let mut client = ClientSession::new(CallLimits::default());
    let mut out = Vec::new();
    let serial = client
        .append_batch_events(&[reference_event()], &mut out)
        .unwrap();
    assert_eq!(serial, 1);
    assert_eq!(out, reference_first_request());
    let step = client
        .receive(&one_frame(&REFERENCE_FIRST_RESPONSE))
        .unwrap();
    assert_eq!(
        step,
        ClientStep::Answered {
            serial: 1,
            outcome: CallOutcome::Status(Status::Ok)
        }
    );
    assert!(client.is_established());
    let mut second = Vec::new();
    assert_eq!(
        client
            .append_batch_events(&[reference_event()], &mut second)
            .unwrap(),
        2
    );
    let frame = one_frame(&second);
    assert_eq!(
        &frame.message[..],
        &append_batch_call(&[reference_event()])[..],
        "no handshake after BOTH"
    );
    assert_eq!(
        client
            .receive(&one_frame(&REFERENCE_LATER_FAILED_RESPONSE))
            .unwrap(),
        ClientStep::Answered {
            serial: 2,
            outcome: CallOutcome::Status(Status::Failed)
        }
    );
}

#[test]
fn an_unknown_client_gets_none_with_the_server_protocol_and_succeeds_on_its_resend() {
    let client_text = FLUME_PROTOCOL_JSON.replace("AvroSourceProtocol", "SomeOtherBuild");
    let client_hash = Md5Hash::of_text(&client_text);
    let mut session = server();
    let first = HandshakeRequest {
        client_hash,
        client_protocol: None,
        server_hash: client_hash,
        meta: None,
    };
    let call = append_batch_call(&[reference_event()]);
    let ServerStep::HandshakeOnly { reply } = session
        .receive(&handshake_request_message(&first, &call))
        .unwrap()
    else {
        panic!("NONE executes nothing");
    };
    let none = reply.handshake().unwrap();
    assert_eq!(none.matched, HandshakeMatch::None);
    assert_eq!(none.server_protocol.as_deref(), Some(FLUME_PROTOCOL_JSON));
    assert_eq!(none.server_hash, Some(FLUME_PROTOCOL_MD5));
    assert!(
        !session.is_established(),
        "after NONE a handshake is still expected"
    );
    let mut answer = Vec::new();
    reply.encode_handshake_only(1, &mut answer).unwrap();
    let answer = one_frame(&answer);
    let mut reader = binary::Reader::new(&answer.message);
    assert_eq!(
        &HandshakeResponse::decode(&mut reader, &CallLimits::default()).unwrap(),
        none
    );
    reader.finish("the NONE answer").unwrap();

    let resend = HandshakeRequest {
        client_protocol: Some(client_text),
        server_hash: FLUME_PROTOCOL_MD5,
        ..first
    };
    let (message, reply) = expect_call(
        session
            .receive(&handshake_request_message(&resend, &call))
            .unwrap(),
    );
    assert_eq!(message.event_count(), 1);
    assert_eq!(reply.handshake().unwrap().matched, HandshakeMatch::Both);
    assert!(session.is_established());
}

#[test]
fn the_learned_protocol_is_shared_by_the_endpoints_connections() {
    let cache = Arc::new(ClientProtocolCache::default());
    let client_text = FLUME_PROTOCOL_JSON.replace("AvroSourceProtocol", "SomeOtherBuild");
    let client_hash = Md5Hash::of_text(&client_text);
    let call = append_batch_call(&[]);
    let with_text = HandshakeRequest {
        client_hash,
        client_protocol: Some(client_text),
        server_hash: FLUME_PROTOCOL_MD5,
        meta: None,
    };
    let mut first = ServerSession::new(cache.clone(), CallLimits::default());
    expect_call(
        first
            .receive(&handshake_request_message(&with_text, &call))
            .unwrap(),
    );
    let without_text = HandshakeRequest {
        client_protocol: None,
        ..with_text
    };
    let mut second = ServerSession::new(cache, CallLimits::default());
    let (message, reply) = expect_call(
        second
            .receive(&handshake_request_message(&without_text, &call))
            .unwrap(),
    );
    assert_eq!(message, Message::AppendBatch(Vec::new()));
    assert_eq!(reply.handshake().unwrap().matched, HandshakeMatch::Both);
}

#[test]
fn each_known_rendering_is_served_at_once_both_or_client_by_the_servers_hash_guess() {
    for known in KNOWN_COMPATIBLE_PROTOCOLS {
        let mut session = server();
        let request = HandshakeRequest {
            client_hash: known.md5,
            client_protocol: None,
            server_hash: known.md5,
            meta: None,
        };
        let (_, reply) = expect_call(
            session
                .receive(&handshake_request_message(
                    &request,
                    &append_batch_call(&[]),
                ))
                .unwrap(),
        );
        let handshake = reply.handshake().unwrap();
        if known.md5 == FLUME_PROTOCOL_MD5 {
            assert_eq!(handshake.matched, HandshakeMatch::Both);
            assert_eq!(handshake.server_protocol, None);
        } else {
            // Python's client, for one, guesses its own hash first.
            assert_eq!(
                handshake.matched,
                HandshakeMatch::Client,
                "{}",
                known.presented_by
            );
            assert_eq!(handshake.server_hash, Some(FLUME_PROTOCOL_MD5));
        }
    }
}

#[test]
fn an_incompatible_client_protocol_is_refused_with_client_and_a_system_error() {
    let text = FLUME_PROTOCOL_JSON.replace(r#""type":"bytes""#, r#""type":"string""#);
    let request = HandshakeRequest {
        client_hash: Md5Hash::of_text(&text),
        client_protocol: Some(text),
        server_hash: FLUME_PROTOCOL_MD5,
        meta: None,
    };
    let mut session = server();
    let error = session
        .receive(&handshake_request_message(
            &request,
            &append_batch_call(&[]),
        ))
        .unwrap_err();
    assert!(
        matches!(
            error.problem,
            RequestProblem::IncompatibleClientProtocol { .. }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("the body field is string, expected bytes"),
        "{error}"
    );
    assert_eq!(
        error.reply.handshake().unwrap().matched,
        HandshakeMatch::Client
    );
    assert!(!session.is_established());

    // A client whose text does not hash to its claimed hash is refused too.
    let lying = HandshakeRequest {
        client_hash: Md5Hash::of_text("something else"),
        client_protocol: Some(FLUME_PROTOCOL_JSON.replace("AvroSourceProtocol", "X")),
        server_hash: FLUME_PROTOCOL_MD5,
        meta: None,
    };
    let error = server()
        .receive(&handshake_request_message(&lying, &append_batch_call(&[])))
        .unwrap_err();
    assert!(
        matches!(error.problem, RequestProblem::ClientHashMismatch { .. }),
        "{error}"
    );
}

#[test]
fn a_ping_gets_the_handshake_answer_alone() {
    let request = HandshakeRequest {
        client_hash: FLUME_PROTOCOL_MD5,
        client_protocol: None,
        server_hash: FLUME_PROTOCOL_MD5,
        meta: Some(Vec::new()),
    };
    let ping = [0x00, 0x00]; // empty meta, empty name
    let mut session = server();
    let ServerStep::HandshakeOnly { reply } = session
        .receive(&handshake_request_message(&request, &ping))
        .unwrap()
    else {
        panic!("a ping executes nothing");
    };
    let mut answer = Vec::new();
    reply.encode_handshake_only(9, &mut answer).unwrap();
    assert_eq!(answer, [0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 0]);
    assert!(session.is_established());
}

#[test]
fn a_handshake_on_an_established_connection_is_malformed() {
    let mut session = server();
    session
        .receive(&one_frame(&reference_first_request()).message)
        .unwrap();
    // Python's stateless Requestor does this; Java's stateful server misreads it too.
    let error = session
        .receive(&one_frame(&reference_first_request()).message)
        .unwrap_err();
    assert!(
        matches!(error.problem, RequestProblem::Malformed(_)),
        "{error}"
    );
    assert_eq!(error.reply.handshake(), None);
}

#[test]
fn batches_in_several_blocks_with_negative_counts_are_read() {
    let mut session = server();
    session
        .receive(&one_frame(&reference_first_request()).message)
        .unwrap();
    let first = AvroFlumeEvent::new(vec![0u8, 255]).with_header("a", "1");
    let second = AvroFlumeEvent::new("second");
    let mut call = vec![0x00];
    binary::write_str(&mut call, "appendBatch");
    // Block 1: count -1 with its byte size; block 2: count 1; then the end.
    let mut first_bytes = Vec::new();
    first.encode(&mut first_bytes);
    binary::write_long(&mut call, -1);
    binary::write_length(&mut call, first_bytes.len());
    call.extend_from_slice(&first_bytes);
    binary::write_long(&mut call, 1);
    second.encode(&mut call);
    call.push(0);
    let (message, _) = expect_call(session.receive(&Bytes::from(call)).unwrap());
    assert_eq!(message, Message::AppendBatch(vec![first, second]));
}

#[test]
fn an_append_of_one_event_round_trips() {
    let mut client = ClientSession::new(CallLimits::default());
    let mut out = Vec::new();
    let event = AvroFlumeEvent::new(vec![1u8, 2, 3]).with_header("host", "web-1");
    client.append_event(&event, &mut out).unwrap();
    let (message, _) = expect_call(server().receive(&one_frame(&out).message).unwrap());
    assert_eq!(message, Message::Append(event));
}

#[test]
fn our_client_resends_with_its_protocol_after_none_and_remembers_the_servers_hash() {
    // A server that knows only the hash of Flume's development line (Java's Responder
    // knows only its own): it answers our released hash with NONE.
    let development_hash = KNOWN_COMPATIBLE_PROTOCOLS[1].md5;
    let mut client = ClientSession::new(CallLimits::default());
    let mut first = Vec::new();
    client
        .append_batch_events(&[reference_event()], &mut first)
        .unwrap();
    let frame = one_frame(&first);
    let none = HandshakeResponse {
        matched: HandshakeMatch::None,
        server_protocol: Some(FLUME_PROTOCOL_JSON.replace("AvroSourceProtocol", "Development")),
        server_hash: Some(development_hash),
        meta: None,
    };
    let mut handshake_only = Vec::new();
    none.encode(&mut handshake_only);
    let mut answer = Vec::new();
    millrace_avro::encode_frame(frame.serial, &[&handshake_only], &mut answer).unwrap();
    assert_eq!(
        client.receive(&one_frame(&answer)).unwrap(),
        ClientStep::Resend { serial: 1 }
    );
    assert_eq!(client.server_hash(), development_hash);
    assert!(!client.is_established());

    let mut resend = Vec::new();
    assert_eq!(
        client
            .append_batch_events(&[reference_event()], &mut resend)
            .unwrap(),
        2
    );
    let resend = one_frame(&resend);
    let mut reader = binary::Reader::new(&resend.message);
    let handshake = HandshakeRequest::decode(&mut reader, &CallLimits::default()).unwrap();
    assert_eq!(handshake.client_hash, FLUME_PROTOCOL_MD5);
    assert_eq!(
        handshake.client_protocol.as_deref(),
        Some(FLUME_PROTOCOL_JSON)
    );
    assert_eq!(handshake.server_hash, development_hash);

    // A second NONE after sending our text is a failed handshake.
    let mut again = Vec::new();
    millrace_avro::encode_frame(2, &[&handshake_only], &mut again).unwrap();
    assert_eq!(
        client.receive(&one_frame(&again)),
        Err(ClientError::HandshakeFailed { serial: 2 })
    );
}

#[test]
fn a_stale_server_hash_guess_costs_our_client_only_a_client_answer() {
    // A client session told a stale server hash (say, from a server since replaced).
    let mut client =
        ClientSession::with_server_hash(CallLimits::default(), Md5Hash::of_text("stale"));
    let mut session = server();
    let mut request = Vec::new();
    client
        .append_batch_events(&[reference_event()], &mut request)
        .unwrap();
    // Our client's hash is known, so the stale guess only costs a CLIENT answer.
    let response = serve(&mut session, &request, Status::Ok);
    assert_eq!(
        client.receive(&one_frame(&response)).unwrap(),
        ClientStep::Answered {
            serial: 1,
            outcome: CallOutcome::Status(Status::Ok)
        }
    );
    assert_eq!(client.server_hash(), FLUME_PROTOCOL_MD5);
    assert!(client.is_established() && session.is_established());
}

#[test]
fn before_the_handshake_is_answered_nothing_else_may_be_sent_and_after_it_answers_match_by_serial()
{
    let mut client = ClientSession::new(CallLimits::default());
    let mut session = server();
    let mut first = Vec::new();
    client.append_batch_events(&[], &mut first).unwrap();
    let mut blocked = Vec::new();
    assert_eq!(
        client.append_batch_events(&[], &mut blocked),
        Err(ClientError::HandshakeInFlight { serial: 1 })
    );
    assert!(blocked.is_empty());
    client
        .receive(&one_frame(&serve(&mut session, &first, Status::Ok)))
        .unwrap();
    // Pipelined: three requests, answered out of order.
    let mut requests = Vec::new();
    for _ in 0..3 {
        let mut request = Vec::new();
        client
            .append_batch_events(&[reference_event()], &mut request)
            .unwrap();
        requests.push(request);
    }
    assert_eq!(client.in_flight(), 3);
    for (index, status) in [(2, Status::Failed), (0, Status::Ok), (1, Status::Ok)] {
        let answer = client
            .receive(&one_frame(&serve(&mut session, &requests[index], status)))
            .unwrap();
        assert_eq!(
            answer,
            ClientStep::Answered {
                serial: index as i32 + 2,
                outcome: CallOutcome::Status(status)
            }
        );
    }
    assert_eq!(
        client.receive(&one_frame(&REFERENCE_LATER_FAILED_RESPONSE)),
        Err(ClientError::UnexpectedSerial { serial: 2 })
    );
}

#[test]
fn a_batch_writer_given_the_wrong_number_of_events_leaves_nothing_behind() {
    let mut client = ClientSession::new(CallLimits::default());
    let mut out = b"earlier".to_vec();
    let mut writer = client.append_batch(&mut out, 2).unwrap();
    writer.push([("a", "b")], b"one").unwrap();
    assert_eq!(
        writer.finish(),
        Err(ClientError::EventCountMismatch {
            announced: 2,
            pushed: 1
        })
    );
    assert_eq!(out, b"earlier");
    let mut writer = client.append_batch(&mut out, 0).unwrap();
    assert!(writer.push([("a", "b")], b"extra").is_err());
    assert_eq!(client.in_flight(), 0);
    // The session is untouched: the next request is still serial 1 with a handshake.
    let mut next = Vec::new();
    assert_eq!(
        client
            .append_batch_events(&[reference_event()], &mut next)
            .unwrap(),
        1
    );
    assert_eq!(next, reference_first_request());
}

#[test]
fn client_and_server_talk_through_deflate_streams() {
    let compression = Compression::Deflate { level: 6 };
    let mut client = ClientSession::new(CallLimits::default());
    let mut session = server();
    let (mut client_out, mut server_out) = (
        Outbound::new(compression).unwrap(),
        Outbound::new(compression).unwrap(),
    );
    let (mut client_in, mut server_in) = (
        Inbound::new(FrameLimits::default(), compression),
        Inbound::new(FrameLimits::default(), compression),
    );
    for round in 0..5u8 {
        let events: Vec<AvroFlumeEvent> = (0..10u8)
            .map(|index| {
                AvroFlumeEvent::new(vec![round, index]).with_header("round", round.to_string())
            })
            .collect();
        let mut request = Vec::new();
        client.append_batch_events(&events, &mut request).unwrap();
        let wire = client_out.wire_bytes(&request).unwrap().to_vec();
        server_in.read_buffer().extend_from_slice(&wire);
        let frame = server_in
            .next_frame()
            .unwrap()
            .expect("a whole frame after each flush");
        let (message, reply) = expect_call(session.receive(&frame.message).unwrap());
        assert_eq!(message, Message::AppendBatch(events));
        let mut response = Vec::new();
        reply
            .encode(
                frame.serial,
                &CallOutcome::Status(Status::Ok),
                &mut response,
            )
            .unwrap();
        client_in
            .read_buffer()
            .extend_from_slice(server_out.wire_bytes(&response).unwrap());
        let answer = client_in.next_frame().unwrap().unwrap();
        assert!(matches!(
            client.receive(&answer).unwrap(),
            ClientStep::Answered {
                outcome: CallOutcome::Status(Status::Ok),
                ..
            }
        ));
    }
}
