//! The client side of one connection (Millrace's avro sink), as Java's `Requestor` on a
//! stateful `NettyTransceiver` behaves (Flume's avro sink and RPC client).
//!
//! ```text
//!  Fresh --first request, with HandshakeRequest--> AwaitingHandshake
//!  AwaitingHandshake --BOTH / CLIENT + response--> Established (no more handshakes)
//!  AwaitingHandshake --NONE (call not executed)--> Fresh, now sending our protocol text:
//!                                                  the caller resends the same call
//!  NONE again after sending our text: the handshake failed
//! ```
//!
//! The client presents Flume's released protocol and hash ([`FLUME_PROTOCOL_MD5`]), as a
//! released Flume agent does, so a Flume 1.6 to 1.11 source answers `BOTH` at once, and
//! a source of another rendering answers `NONE` and learns the text on the resend. The
//! server's hash learned from a `CLIENT` or `NONE` answer is kept
//! ([`server_hash`](ClientSession::server_hash)) so that the next connection to the same
//! server can start with it.
//!
//! Until the first handshake is answered only one request may be in flight (Java holds a
//! lock for this, AVRO-1122); afterwards requests may be pipelined, and answers are
//! matched to them by serial, in any order.

use std::collections::VecDeque;

use thiserror::Error;

use crate::binary::{write_length, Reader, ValueError};
use crate::call::{read_response, write_call_head, CallOutcome, APPEND, APPEND_BATCH};
use crate::event::{encode_event, AvroFlumeEvent};
use crate::framing::{FrameEncodeError, FrameWriter, NettyFrame};
use crate::handshake::{HandshakeMatch, HandshakeRequest, HandshakeResponse, Md5Hash};
use crate::limits::CallLimits;
use crate::protocol_text::{
    check_protocol_compatible, IncompatibleProtocol, FLUME_PROTOCOL_JSON, FLUME_PROTOCOL_MD5,
};

/// What an answer means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// The call with this serial was answered.
    Answered {
        /// The request's serial.
        serial: i32,
        /// The status or system error.
        outcome: CallOutcome,
    },
    /// The server did not know our protocol (`NONE`) and did not execute the call with
    /// this serial: encode the same call again (it now carries our protocol text) and
    /// send it.
    Resend {
        /// The unexecuted request's serial.
        serial: i32,
    },
}

/// Why a request cannot be encoded or an answer cannot be used. After an error from
/// [`ClientSession::receive`] the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// A request was started while the first request's handshake is unanswered.
    #[error("request {serial}'s handshake is not answered yet; wait for it before sending more")]
    HandshakeInFlight {
        /// The unanswered request.
        serial: i32,
    },
    /// A batch writer got a different number of events than it announced.
    #[error("appendBatch announced {announced} events but {pushed} were pushed")]
    EventCountMismatch {
        /// The count given when starting.
        announced: usize,
        /// The events pushed.
        pushed: usize,
    },
    /// An answer whose serial matches no request in flight.
    #[error("an answer with serial {serial} matches no request in flight")]
    UnexpectedSerial {
        /// The answer's serial.
        serial: i32,
    },
    /// The answer's bytes cannot be read.
    #[error("malformed answer to request {serial}: {problem}")]
    Malformed {
        /// The request's serial.
        serial: i32,
        /// What is wrong.
        #[source]
        problem: ValueError,
    },
    /// The server answered `NONE` although we had sent our protocol text.
    #[error("handshake failed: the server answered NONE to request {serial} although it carried our protocol")]
    HandshakeFailed {
        /// The request's serial.
        serial: i32,
    },
    /// A `CLIENT` or `NONE` answer without the server's protocol and hash.
    #[error("the server answered {matched} to request {serial} without its protocol and hash")]
    MissingServerProtocol {
        /// The request's serial.
        serial: i32,
        /// The answer.
        matched: HandshakeMatch,
    },
    /// The server's protocol is not Flume's.
    #[error("server protocol {server_hash} is not compatible with Flume's AvroSourceProtocol: {problem}")]
    IncompatibleServerProtocol {
        /// The server's hash.
        server_hash: Md5Hash,
        /// What differs.
        #[source]
        problem: IncompatibleProtocol,
    },
    /// The request cannot be framed.
    #[error(transparent)]
    Frame(#[from] FrameEncodeError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    /// The next request carries a handshake.
    Needed,
    /// A request carrying a handshake is unanswered.
    InFlight { serial: i32 },
    /// Requests carry none.
    Established,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    serial: i32,
    with_handshake: bool,
}

/// The client's state for one connection.
#[derive(Debug)]
pub struct ClientSession {
    limits: CallLimits,
    server_hash: Md5Hash,
    send_protocol: bool,
    handshake: Handshake,
    next_serial: i32,
    in_flight: VecDeque<InFlight>,
}

/// Java clients number requests from 1.
const FIRST_SERIAL: i32 = 1;

impl ClientSession {
    /// A session for a new connection to a server whose hash is not known: the first
    /// handshake guesses Flume's released hash.
    pub fn new(limits: CallLimits) -> Self {
        Self::with_server_hash(limits, FLUME_PROTOCOL_MD5)
    }

    /// A session for a new connection to a server whose hash an earlier connection
    /// learned.
    pub fn with_server_hash(limits: CallLimits, server_hash: Md5Hash) -> Self {
        ClientSession {
            limits,
            server_hash,
            send_protocol: false,
            handshake: Handshake::Needed,
            next_serial: FIRST_SERIAL,
            in_flight: VecDeque::new(),
        }
    }

    /// The server's hash as last learned (or guessed).
    pub fn server_hash(&self) -> Md5Hash {
        self.server_hash
    }

    /// Whether the handshake is done (requests carry none).
    pub fn is_established(&self) -> bool {
        self.handshake == Handshake::Established
    }

    /// How many requests await an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Starts an `appendBatch` of exactly `event_count` events, written into `out` as one
    /// frame. Push the events, then [`finish`](AppendBatchWriter::finish).
    pub fn append_batch<'s, 'o>(
        &'s mut self,
        out: &'o mut Vec<u8>,
        event_count: usize,
    ) -> Result<AppendBatchWriter<'s, 'o>, ClientError> {
        let (frame, serial, with_handshake) = self.begin_request(out, APPEND_BATCH)?;
        let mut writer = AppendBatchWriter {
            session: self,
            frame,
            serial,
            with_handshake,
            announced: event_count,
            pushed: 0,
        };
        if event_count > 0 {
            write_length(writer.frame.out(), event_count);
        }
        Ok(writer)
    }

    /// Appends an `append` request for one event given as parts; returns its serial.
    pub fn append<I, K, V>(
        &mut self,
        headers: I,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<i32, ClientError>
    where
        I: IntoIterator<Item = (K, V)>,
        I::IntoIter: Clone,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let (mut frame, serial, with_handshake) = self.begin_request(out, APPEND)?;
        encode_event(headers, body, frame.out());
        frame.finish()?;
        self.register(serial, with_handshake);
        Ok(serial)
    }

    /// Appends an `append` request for `event`; returns its serial.
    pub fn append_event(
        &mut self,
        event: &AvroFlumeEvent,
        out: &mut Vec<u8>,
    ) -> Result<i32, ClientError> {
        self.append(
            event
                .headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
            &event.body,
            out,
        )
    }

    /// Appends an `appendBatch` request for `events`; returns its serial.
    pub fn append_batch_events(
        &mut self,
        events: &[AvroFlumeEvent],
        out: &mut Vec<u8>,
    ) -> Result<i32, ClientError> {
        let mut writer = self.append_batch(out, events.len())?;
        for event in events {
            writer.push_event(event)?;
        }
        writer.finish()
    }

    /// Opens a request frame: the handshake when one is due, the metadata and the name
    /// in the first buffer; the second buffer is open for the parameters.
    fn begin_request<'o>(
        &mut self,
        out: &'o mut Vec<u8>,
        name: &str,
    ) -> Result<(FrameWriter<'o>, i32, bool), ClientError> {
        if let Handshake::InFlight { serial } = self.handshake {
            return Err(ClientError::HandshakeInFlight { serial });
        }
        let serial = self.next_serial;
        let mut frame = FrameWriter::start(out, serial);
        let with_handshake = self.handshake == Handshake::Needed;
        if with_handshake {
            HandshakeRequest {
                client_hash: FLUME_PROTOCOL_MD5,
                client_protocol: self.send_protocol.then(|| FLUME_PROTOCOL_JSON.to_string()),
                server_hash: self.server_hash,
                // As Java sends it: an empty map, not null.
                meta: Some(Vec::new()),
            }
            .encode(frame.out());
        }
        write_call_head(frame.out(), name);
        if let Err(error) = frame.next_buffer() {
            frame.abandon();
            return Err(error.into());
        }
        Ok((frame, serial, with_handshake))
    }

    /// Records a request as sent.
    fn register(&mut self, serial: i32, with_handshake: bool) {
        self.next_serial = self.next_serial.wrapping_add(1);
        if with_handshake {
            self.handshake = Handshake::InFlight { serial };
        }
        self.in_flight.push_back(InFlight {
            serial,
            with_handshake,
        });
    }

    /// Reads the answer in `frame`.
    pub fn receive(&mut self, frame: &NettyFrame) -> Result<ClientStep, ClientError> {
        let serial = frame.serial;
        let position = self
            .in_flight
            .iter()
            .position(|request| request.serial == serial)
            .ok_or(ClientError::UnexpectedSerial { serial })?;
        let request = self.in_flight.remove(position).unwrap_or(InFlight {
            serial,
            with_handshake: false,
        });
        let malformed = |problem| ClientError::Malformed { serial, problem };
        let mut reader = Reader::new(&frame.message);
        if request.with_handshake {
            let response =
                HandshakeResponse::decode(&mut reader, &self.limits).map_err(malformed)?;
            if !self.accept_handshake(serial, response)? {
                reader
                    .finish("a NONE handshake answer")
                    .map_err(malformed)?;
                return Ok(ClientStep::Resend { serial });
            }
        }
        let outcome = read_response(&mut reader, &self.limits).map_err(malformed)?;
        Ok(ClientStep::Answered { serial, outcome })
    }

    /// Applies a handshake answer; true when the call response follows.
    fn accept_handshake(
        &mut self,
        serial: i32,
        response: HandshakeResponse,
    ) -> Result<bool, ClientError> {
        let matched = response.matched;
        if matched == HandshakeMatch::Both {
            self.handshake = Handshake::Established;
            self.send_protocol = false;
            return Ok(true);
        }
        if matched == HandshakeMatch::None && self.send_protocol {
            return Err(ClientError::HandshakeFailed { serial });
        }
        let (Some(text), Some(server_hash)) = (response.server_protocol, response.server_hash)
        else {
            return Err(ClientError::MissingServerProtocol { serial, matched });
        };
        check_protocol_compatible(&text).map_err(|problem| {
            ClientError::IncompatibleServerProtocol {
                server_hash,
                problem,
            }
        })?;
        self.server_hash = server_hash;
        if matched == HandshakeMatch::Client {
            self.handshake = Handshake::Established;
            self.send_protocol = false;
            Ok(true)
        } else {
            self.handshake = Handshake::Needed;
            self.send_protocol = true;
            Ok(false)
        }
    }
}

/// Writes one `appendBatch` request event by event, straight into the frame.
#[derive(Debug)]
pub struct AppendBatchWriter<'s, 'o> {
    session: &'s mut ClientSession,
    frame: FrameWriter<'o>,
    serial: i32,
    with_handshake: bool,
    announced: usize,
    pushed: usize,
}

impl AppendBatchWriter<'_, '_> {
    /// Appends one event given as parts.
    pub fn push<I, K, V>(&mut self, headers: I, body: &[u8]) -> Result<(), ClientError>
    where
        I: IntoIterator<Item = (K, V)>,
        I::IntoIter: Clone,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        if self.pushed == self.announced {
            return Err(ClientError::EventCountMismatch {
                announced: self.announced,
                pushed: self.pushed + 1,
            });
        }
        encode_event(headers, body, self.frame.out());
        self.pushed += 1;
        Ok(())
    }

    /// Appends one event.
    pub fn push_event(&mut self, event: &AvroFlumeEvent) -> Result<(), ClientError> {
        self.push(
            event
                .headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
            &event.body,
        )
    }

    /// Ends the array and the frame; returns the request's serial. On error nothing of
    /// the request stays in the output and the session is unchanged.
    pub fn finish(mut self) -> Result<i32, ClientError> {
        if self.pushed != self.announced {
            self.frame.abandon();
            return Err(ClientError::EventCountMismatch {
                announced: self.announced,
                pushed: self.pushed,
            });
        }
        // The 00 that ends the array's blocks.
        self.frame.out().push(0);
        self.frame.finish()?;
        self.session.register(self.serial, self.with_handshake);
        Ok(self.serial)
    }
}
