//! The server side of one connection: handshake state and request decoding, as Java's
//! `Responder` on a stateful `NettyServer` connection behaves (Flume's avro source).
//!
//! ```text
//!            request with HandshakeRequest
//!  Expecting ----------------------------> answer BOTH / CLIENT, execute the call --> Established
//!  handshake                               answer NONE only (call not executed)  --> Expecting
//!                                                                                    handshake
//!  Established: requests carry no handshake; answers carry none.
//! ```
//!
//! Rules (`docs/avro.md` §4): the client's protocol is known when its hash is in the
//! shared [`ClientProtocolCache`] (Flume's four renderings are pre-seeded), or when it
//! sent its protocol text, the text hashes to the `clientHash` it claims, and the text
//! passes [`check_protocol_compatible`]. Then the answer is `BOTH` when the client guessed
//! the server's hash and `CLIENT` otherwise (with the server's protocol and hash); an
//! unknown client gets `NONE` and must resend with its text. A text that is not
//! compatible is an error, answered with `CLIENT` and a system error naming the
//! difference, so that a Java client raises it instead of resending forever.

use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use crate::binary::{Reader, ValueError};
use crate::call::{encode_response, read_call, CallBody, CallOutcome, Message};
use crate::framing::{encode_frame, FrameEncodeError};
use crate::handshake::{HandshakeMatch, HandshakeRequest, HandshakeResponse, Md5Hash, Meta};
use crate::limits::CallLimits;
use crate::protocol_text::{
    check_protocol_compatible, ClientProtocolCache, IncompatibleProtocol, FLUME_PROTOCOL_JSON,
    FLUME_PROTOCOL_MD5,
};

/// What precedes the answer to one request: the handshake answer, when the request
/// carried a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    // Boxed: a `NONE` or `CLIENT` answer carries the protocol text, and replies travel
    // inside results and errors.
    handshake: Option<Box<HandshakeResponse>>,
}

impl Reply {
    /// The handshake answer this reply starts with, if any.
    pub fn handshake(&self) -> Option<&HandshakeResponse> {
        self.handshake.as_deref()
    }

    /// Appends the response frame for a call: this reply's handshake answer, then the
    /// outcome, in Java's three buffers.
    pub fn encode(
        &self,
        serial: i32,
        outcome: &CallOutcome,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameEncodeError> {
        encode_response(serial, self.handshake.as_deref(), outcome, out)
    }

    /// Appends a response frame holding only the handshake answer (for `NONE` and for a
    /// ping): one buffer, empty when there is no handshake answer.
    pub fn encode_handshake_only(
        &self,
        serial: i32,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameEncodeError> {
        let mut handshake = Vec::new();
        if let Some(response) = &self.handshake {
            response.encode(&mut handshake);
        }
        encode_frame(serial, &[&handshake], out)
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Execute the call, then send `reply.encode(serial, &outcome, …)`.
    Call {
        /// Call metadata (Flume sends none).
        meta: Meta,
        /// The message and its events.
        message: Message,
        /// How the answer starts.
        reply: Reply,
    },
    /// Execute nothing and send `reply.encode_handshake_only(serial, …)`: the client's
    /// protocol is unknown (`NONE`; it will resend), or the request was a ping.
    HandshakeOnly {
        /// The answer.
        reply: Reply,
    },
}

/// Why a request cannot be served, and how to tell the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{problem}")]
pub struct RequestError {
    /// What went wrong.
    pub problem: RequestProblem,
    /// How the answer must start (the handshake answer already decided, if any).
    pub reply: Reply,
}

impl RequestError {
    /// Appends an Avro system-error response naming the problem, which a Java or Python
    /// client raises as an exception. Whether to close the connection afterwards is the
    /// caller's choice: framing is intact, but the peer is confused or hostile.
    pub fn encode_reply(&self, serial: i32, out: &mut Vec<u8>) -> Result<(), FrameEncodeError> {
        self.reply.encode(
            serial,
            &CallOutcome::SystemError(self.problem.to_string()),
            out,
        )
    }
}

/// What is wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestProblem {
    /// The bytes are not a handshake and call of this protocol.
    #[error("malformed Avro request: {0}")]
    Malformed(#[from] ValueError),
    /// A well-formed call of a message Flume's protocol does not have.
    #[error("No such remote message: {name}")]
    UnknownMessage {
        /// Its name.
        name: String,
    },
    /// The client's protocol text does not hash to the hash it claims.
    #[error(
        "the client protocol text hashes to {text_hash}, but the handshake claims {client_hash}"
    )]
    ClientHashMismatch {
        /// The claimed hash.
        client_hash: Md5Hash,
        /// The text's hash.
        text_hash: Md5Hash,
    },
    /// The client's protocol is not Flume's.
    #[error("client protocol {client_hash} is not compatible with Flume's AvroSourceProtocol: {problem}")]
    IncompatibleClientProtocol {
        /// The client's hash.
        client_hash: Md5Hash,
        /// What differs.
        #[source]
        problem: IncompatibleProtocol,
    },
}

/// The server's state for one connection.
#[derive(Debug)]
pub struct ServerSession {
    cache: Arc<ClientProtocolCache>,
    limits: CallLimits,
    established: bool,
}

impl ServerSession {
    /// A session for a new connection, sharing `cache` with the endpoint's others.
    pub fn new(cache: Arc<ClientProtocolCache>, limits: CallLimits) -> Self {
        ServerSession {
            cache,
            limits,
            established: false,
        }
    }

    /// Whether a handshake was answered `BOTH` or `CLIENT`: from then on requests carry
    /// no handshake.
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// Decodes one request message (a frame's joined buffers) and says what to do.
    /// Event bodies are slices of `message`.
    pub fn receive(&mut self, message: &Bytes) -> Result<ServerStep, RequestError> {
        let mut reader = Reader::new(message);
        let mut reply = Reply { handshake: None };
        let fail = |problem: RequestProblem, reply: &Reply| RequestError {
            problem,
            reply: reply.clone(),
        };
        if !self.established {
            let request = HandshakeRequest::decode(&mut reader, &self.limits)
                .map_err(|error| fail(RequestProblem::Malformed(error), &reply))?;
            let (response, problem) = self.answer_handshake(&request);
            let matched = response.matched;
            reply.handshake = Some(Box::new(response));
            if let Some(problem) = problem {
                return Err(fail(problem, &reply));
            }
            if matched == HandshakeMatch::None {
                return Ok(ServerStep::HandshakeOnly { reply });
            }
            self.established = true;
        }
        match read_call(&mut reader, &self.limits)
            .map_err(|error| fail(RequestProblem::Malformed(error), &reply))?
        {
            CallBody::Ping => Ok(ServerStep::HandshakeOnly { reply }),
            CallBody::Call { meta, message } => Ok(ServerStep::Call {
                meta,
                message,
                reply,
            }),
            CallBody::Unknown { name } => {
                Err(fail(RequestProblem::UnknownMessage { name }, &reply))
            }
        }
    }

    /// The handshake answer, and the problem that makes the request fail, if any.
    fn answer_handshake(
        &self,
        request: &HandshakeRequest,
    ) -> (HandshakeResponse, Option<RequestProblem>) {
        let with_server_protocol = |matched| HandshakeResponse {
            matched,
            server_protocol: Some(FLUME_PROTOCOL_JSON.to_string()),
            server_hash: Some(FLUME_PROTOCOL_MD5),
            meta: None,
        };
        let mut client_known = self.cache.contains(&request.client_hash);
        if let (false, Some(text)) = (client_known, &request.client_protocol) {
            let text_hash = Md5Hash::of_text(text);
            let problem = if text_hash != request.client_hash {
                Some(RequestProblem::ClientHashMismatch {
                    client_hash: request.client_hash,
                    text_hash,
                })
            } else {
                check_protocol_compatible(text).err().map(|problem| {
                    RequestProblem::IncompatibleClientProtocol {
                        client_hash: request.client_hash,
                        problem,
                    }
                })
            };
            if problem.is_some() {
                return (with_server_protocol(HandshakeMatch::Client), problem);
            }
            // Past the cache's cap the client is still served on this connection.
            self.cache.learn(request.client_hash);
            client_known = true;
        }
        let response = match (client_known, request.server_hash == FLUME_PROTOCOL_MD5) {
            (false, _) => with_server_protocol(HandshakeMatch::None),
            (true, true) => HandshakeResponse {
                matched: HandshakeMatch::Both,
                server_protocol: None,
                server_hash: None,
                meta: None,
            },
            (true, false) => with_server_protocol(HandshakeMatch::Client),
        };
        (response, None)
    }
}
