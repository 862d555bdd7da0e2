//! The byte-by-byte exchange in `docs/protocol.md` §15, read from the document itself and
//! checked against the codec, so the document cannot drift from the code.

use bytes::BytesMut;
use millrace_protocol::{
    DecodeLimits, Encoder, ErrorCode, Event, EventBatch, Hello, HelloAccepted, Request,
    RequestDecoder, RequestId, Response, ResponseDecoder, DEFAULT_MAX_FRAME_BYTES,
};

const PROTOCOL_MD: &str = include_str!("../../docs/protocol.md");

/// The first code block after `heading` in docs/protocol.md.
fn documented_block(heading: &str) -> &'static str {
    let after_heading = &PROTOCOL_MD[PROTOCOL_MD.find(heading).expect("heading in protocol.md")..];
    let block_start = after_heading.find("```text\n").expect("a code block") + "```text\n".len();
    let block = &after_heading[block_start..];
    &block[..block.find("```").expect("end of the code block")]
}

/// The bytes of a documented hex dump: pairs of hex digits; whatever follows three or
/// more spaces on a line is commentary.
fn hex(dump: &str) -> Vec<u8> {
    dump.lines()
        .map(|line| line.trim_start().split("   ").next().unwrap_or(""))
        .flat_map(|bytes| bytes.split_whitespace())
        .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
        .collect()
}

fn client_bytes() -> Vec<u8> {
    hex(documented_block("Client → server:"))
}

fn server_bytes() -> Vec<u8> {
    hex(documented_block("Server → client:"))
}

fn documented_requests() -> Vec<Request> {
    vec![
        Request::Hello(Hello::new("cli")),
        Request::Begin {
            channel: "c1".into(),
        },
        Request::Put {
            events: EventBatch::from_events(&[Event::new("hi").with_header("k", "v")]).unwrap(),
        },
        Request::Commit,
    ]
}

fn documented_responses() -> Vec<Response> {
    vec![
        Response::HelloAccepted(HelloAccepted {
            version: 1,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            server_name: "channeld".into(),
        }),
        Response::Ok,
        Response::Ok,
        Response::Ok,
    ]
}

#[test]
fn client_bytes_in_the_documentation_match_the_encoder() {
    let encoder = Encoder::default();
    let mut out = Vec::new();
    for (index, request) in documented_requests().iter().enumerate() {
        encoder
            .encode_request(RequestId(index as u32 + 1), request, &mut out)
            .unwrap();
    }
    assert_eq!(out, client_bytes());
}

#[test]
fn server_bytes_in_the_documentation_match_the_encoder() {
    let encoder = Encoder::default();
    let mut out = Vec::new();
    for (index, response) in documented_responses().iter().enumerate() {
        encoder
            .encode_response(RequestId(index as u32 + 1), response, &mut out)
            .unwrap();
    }
    assert_eq!(out, server_bytes());
}

#[test]
fn documented_bytes_decode_to_the_documented_messages() {
    let mut decoder = RequestDecoder::new(DecodeLimits::default());
    let mut buffer = BytesMut::from(&client_bytes()[..]);
    let mut requests = Vec::new();
    while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
        requests.push(frame.request);
    }
    assert_eq!(requests, documented_requests());

    let mut decoder = ResponseDecoder::new(DecodeLimits::default());
    let mut buffer = BytesMut::from(&server_bytes()[..]);
    let mut responses = Vec::new();
    while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
        responses.push(frame.response);
    }
    assert_eq!(responses, documented_responses());
}

#[test]
fn channel_full_code_is_the_documented_101() {
    assert_eq!(ErrorCode::ChannelFull.to_wire().to_le_bytes(), [0x65, 0x00]);
}
