//! Helpers shared by the session and property tests.

#![allow(dead_code)]

use std::sync::Arc;

use millrace_avro::{
    CallLimits, CallOutcome, ClientProtocolCache, Compression, FrameLimits, Inbound, Message,
    NettyFrame, ServerSession, ServerStep, Status,
};

/// A server session for a new connection with its own protocol cache.
pub fn server() -> ServerSession {
    ServerSession::new(
        Arc::new(ClientProtocolCache::default()),
        CallLimits::default(),
    )
}

/// Every whole frame in `bytes`, which must end on a frame boundary.
pub fn frames(bytes: &[u8]) -> Vec<NettyFrame> {
    let mut inbound = Inbound::new(FrameLimits::default(), Compression::None);
    inbound.read_buffer().extend_from_slice(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = inbound.next_frame().expect("valid framing") {
        frames.push(frame);
    }
    assert!(!inbound.has_partial_frame(), "no bytes left over");
    frames
}

/// The single frame in `bytes`.
pub fn one_frame(bytes: &[u8]) -> NettyFrame {
    let mut all = frames(bytes);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

/// Executes the call in the request frame `request` through `session`, answering
/// `status`; returns the call and the answer's bytes.
pub fn serve_call(
    session: &mut ServerSession,
    request: &[u8],
    status: Status,
) -> (Message, Vec<u8>) {
    let frame = one_frame(request);
    let ServerStep::Call { message, reply, .. } =
        session.receive(&frame.message).expect("a valid request")
    else {
        panic!("a known client's call is executed");
    };
    let mut response = Vec::new();
    reply
        .encode(frame.serial, &CallOutcome::Status(status), &mut response)
        .expect("an answer encodes");
    (message, response)
}

/// Answers the request frame in `request` through `session` (a call with `status`, or
/// a handshake alone); returns the answer's bytes.
pub fn serve(session: &mut ServerSession, request: &[u8], status: Status) -> Vec<u8> {
    let frame = one_frame(request);
    let mut response = Vec::new();
    match session.receive(&frame.message).expect("a valid request") {
        ServerStep::Call { reply, .. } => {
            reply.encode(frame.serial, &CallOutcome::Status(status), &mut response)
        }
        ServerStep::HandshakeOnly { reply } => {
            reply.encode_handshake_only(frame.serial, &mut response)
        }
    }
    .expect("an answer encodes");
    response
}
