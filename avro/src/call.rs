//! The call format (Avro specification, "Call Format") for Flume's two messages.
//!
//! ```text
//! request message  = [HandshakeRequest]  map<bytes> meta  string name  params
//!                    params of "append":      AvroFlumeEvent
//!                    params of "appendBatch": array<AvroFlumeEvent>
//!                    name "" is a handshake-only ping (no params)
//! response message = [HandshakeResponse] map<bytes> meta  boolean error  then
//!                    error = 00: Status (enum int: OK 00, FAILED 02, UNKNOWN 04)
//!                    error = 01: union ["string"] -> 00, then the error text
//! ```
//!
//! The handshake records lead only until the connection is established (see
//! [`ServerSession`](crate::ServerSession), [`ClientSession`](crate::ClientSession)).
//! Java writes a response as three buffers, `[handshake or empty] [meta] [flag and
//! status]`, and a request as `[handshake, meta, name] [params]`; so do these encoders.

use std::fmt;

use crate::binary::{write_bool, write_int, write_str, write_union_branch, Reader, ValueError};
use crate::event::{read_event, AvroFlumeEvent, HeaderBudget, MIN_EVENT_BYTES};
use crate::framing::{encode_frame, FrameEncodeError};
use crate::handshake::{read_meta, write_meta, HandshakeResponse, Meta};
use crate::limits::CallLimits;

/// The name of Flume's single-event message.
pub const APPEND: &str = "append";
/// The name of Flume's batch message.
pub const APPEND_BATCH: &str = "appendBatch";

/// Flume's `Status` enum, the answer to both messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The events are committed to every required channel.
    Ok,
    /// Nothing was accepted; the sender retries.
    Failed,
    /// Declared by Flume, never sent by it; a client treats it as a failure.
    Unknown,
}

impl Status {
    const SYMBOLS: [Status; 3] = [Status::Ok, Status::Failed, Status::Unknown];

    fn index(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Failed => 1,
            Status::Unknown => 2,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Status::Ok => "OK",
            Status::Failed => "FAILED",
            Status::Unknown => "UNKNOWN",
        })
    }
}

/// What a call answered: a status, or an Avro system error (Java's
/// `AvroRemoteException`, raised by the client as an exception).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// A normal answer.
    Status(Status),
    /// A system error with its text.
    SystemError(String),
}

/// A call's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `append(event)`.
    Append(AvroFlumeEvent),
    /// `appendBatch(events)`.
    AppendBatch(Vec<AvroFlumeEvent>),
}

impl Message {
    /// The message's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Append(_) => APPEND,
            Message::AppendBatch(_) => APPEND_BATCH,
        }
    }

    /// How many events it carries.
    pub fn event_count(&self) -> usize {
        match self {
            Message::Append(_) => 1,
            Message::AppendBatch(events) => events.len(),
        }
    }

    /// Its events, in order.
    pub fn into_events(self) -> Vec<AvroFlumeEvent> {
        match self {
            Message::Append(event) => vec![event],
            Message::AppendBatch(events) => events,
        }
    }
}

/// What follows the handshake in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallBody {
    /// A handshake-only ping (empty message name).
    Ping,
    /// A call of Flume's.
    Call {
        /// Call metadata (Flume sends none).
        meta: Meta,
        /// The message and its parameters.
        message: Message,
    },
    /// A well-formed call of a message this protocol does not have.
    Unknown {
        /// Its name.
        name: String,
    },
}

/// Reads the call after any handshake: metadata, name, parameters; the message must end
/// there.
pub(crate) fn read_call(
    reader: &mut Reader<'_>,
    limits: &CallLimits,
) -> Result<CallBody, ValueError> {
    let meta = read_meta(reader, "call.meta", limits)?;
    let name = reader.read_str("call.message", limits.max_string_bytes)?;
    let body = match name {
        "" => CallBody::Ping,
        APPEND => {
            let mut budget = HeaderBudget::new(limits);
            let event = read_event(reader, limits, &mut budget)?;
            CallBody::Call {
                meta,
                message: Message::Append(event),
            }
        }
        APPEND_BATCH => {
            let mut budget = HeaderBudget::new(limits);
            let mut events = Vec::new();
            reader.read_blocks(
                "appendBatch.events",
                limits.max_events_per_call,
                MIN_EVENT_BYTES,
                &mut events,
                |reader| read_event(reader, limits, &mut budget),
            )?;
            CallBody::Call {
                meta,
                message: Message::AppendBatch(events),
            }
        }
        other => {
            // Its parameters cannot be read without its schema; they are not looked at.
            return Ok(CallBody::Unknown {
                name: other.to_string(),
            });
        }
    };
    reader.finish("the call's parameters")?;
    Ok(body)
}

/// Writes a response frame as Java does: `[handshake or empty] [meta {}] [flag, value]`.
pub(crate) fn encode_response(
    serial: i32,
    handshake: Option<&HandshakeResponse>,
    outcome: &CallOutcome,
    out: &mut Vec<u8>,
) -> Result<(), FrameEncodeError> {
    /// The only branch of the system-error union `["string"]`.
    const SYSTEM_ERROR_BRANCH: usize = 0;
    // Responses are small: the three buffers are built apart, then framed.
    let mut handshake_buffer = Vec::new();
    if let Some(handshake) = handshake {
        handshake.encode(&mut handshake_buffer);
    }
    let mut meta_buffer = Vec::new();
    write_meta(&mut meta_buffer, &[]);
    let mut outcome_buffer = Vec::new();
    match outcome {
        CallOutcome::Status(status) => {
            write_bool(&mut outcome_buffer, false);
            write_int(&mut outcome_buffer, status.index());
        }
        CallOutcome::SystemError(text) => {
            write_bool(&mut outcome_buffer, true);
            write_union_branch(&mut outcome_buffer, SYSTEM_ERROR_BRANCH);
            write_str(&mut outcome_buffer, text);
        }
    }
    encode_frame(
        serial,
        &[&handshake_buffer, &meta_buffer, &outcome_buffer],
        out,
    )
}

/// Reads a call response after any handshake.
pub(crate) fn read_response(
    reader: &mut Reader<'_>,
    limits: &CallLimits,
) -> Result<CallOutcome, ValueError> {
    read_meta(reader, "response.meta", limits)?;
    let outcome = if reader.read_bool("response.error")? {
        reader.read_union_branch("response.systemError", 1)?;
        CallOutcome::SystemError(reader.read_string("response.systemError", usize::MAX)?)
    } else {
        CallOutcome::Status(
            Status::SYMBOLS[reader.read_enum("response.status", Status::SYMBOLS.len())?],
        )
    };
    reader.finish("the response")?;
    Ok(outcome)
}

/// Appends call metadata (empty, as Java and Python send) and the message name.
pub(crate) fn write_call_head(out: &mut Vec<u8>, name: &str) {
    write_meta(out, &[]);
    write_str(out, name);
}
