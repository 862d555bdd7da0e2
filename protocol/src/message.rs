//! Requests and responses: what each frame type carries, with its payload layout, and
//! the payload encoders and parsers side by side.
//!
//! Payload layouts (after the 9-byte frame header; `str8` is a `u8` length and UTF-8
//! bytes, `str16` a `u16` length and UTF-8 bytes, `batch` the event batch of
//! [`crate::event`]):
//!
//! ```text
//! 0x01 Hello          oldest_version: u16 | newest_version: u16 | max_frame_bytes: u32
//!                     | client_name: str8 | has_auth_token: u8 (0 or 1) | [auth_token: str16]
//! 0x02 Ping           (empty)
//! 0x03 Begin          channel: str8
//! 0x04 Put            batch
//! 0x05 Take           max_events: u32 (>= 1) | wait_ms: u32
//! 0x06 Commit         (empty)
//! 0x07 Rollback       (empty)
//! 0x08 PutCommit      channel: str8 | batch
//! 0x09 Stats          channel: str8
//! 0x0A Checkpoint     channel: str8
//! 0x0B Replay         channel: str8 | point | execute: u8      (see [`crate::operator`])
//! 0x0C Inspect        channel: str8
//! 0x0D ReportCounters component_type: str8 | component: str8
//!                     | counter_count: u8 | (name: str8 | value: u64) × counter_count
//! 0x0E Peek           channel: str8 | max_events: u32 (>= 1)
//!
//! 0x80 Error          code: u16 | channel: str8 (empty = none) | message: str16
//!                     | field_count: u8 | (name: str8 | value: u64) × field_count
//! 0x81 HelloAccepted  version: u16 | max_frame_bytes: u32 | server_name: str8
//! 0x82 Ok             (empty)
//! 0x83 Events         batch (answers Take and Peek)
//! 0x84 StatsReply     counter_count: u8 | (name: str8 | value: u64) × counter_count
//! 0x85 Pong           (empty)
//! 0x86 ReplayReport   the plan and outcome              (see [`crate::operator`])
//! 0x87 InspectReport  report: str32, JSON               (see [`crate::operator`])
//! ```
//!
//! DO NOT reorder fields or change their widths without bumping `PROTOCOL_VERSION`, and
//! never change `Hello` or `HelloAccepted`: every version must be able to read them.

use bytes::Bytes;

use crate::error::{EncodeError, Malformation};
use crate::error_response::{ErrorResponse, MAX_ERROR_FIELDS};
use crate::event::EventBatch;
use crate::frame::{FrameType, FRAME_HEADER_BYTES};
use crate::limits::{
    validate_channel_name, DEFAULT_MAX_FRAME_BYTES, LARGEST_HELLO_FRAME_BYTES,
    MAX_AUTH_TOKEN_BYTES, MAX_PEER_NAME_BYTES, MIN_MAX_FRAME_BYTES, NEWEST_SUPPORTED_VERSION,
    OLDEST_SUPPORTED_VERSION,
};
use crate::operator::{InspectReport, ReplayReport, ReplayRequest};
use crate::wire::{
    check_length, put_short_string, put_string, put_u16, put_u32, put_u64, put_u8, OutputBuffer,
    Reader, LONGEST_SHORT_STRING_BYTES, LONGEST_STRING_BYTES, MAX_SHORT_STRING_BYTES,
};

/// The most counters one stats reply carries (the count is a `u8`).
pub const MAX_STATS_COUNTERS: usize = u8::MAX as usize;

/// Bytes of a `u64` value in stats counters and error fields.
const U64_BYTES: usize = 8;

/// The largest `Error` frame: longest channel and message, 255 fields with longest names.
const LARGEST_ERROR_FRAME_BYTES: usize = FRAME_HEADER_BYTES
    + 2
    + LONGEST_SHORT_STRING_BYTES
    + LONGEST_STRING_BYTES
    + 1
    + MAX_ERROR_FIELDS * (LONGEST_SHORT_STRING_BYTES + U64_BYTES);
/// The largest `StatsReply` frame: 255 counters with longest names.
const LARGEST_STATS_FRAME_BYTES: usize =
    FRAME_HEADER_BYTES + 1 + MAX_STATS_COUNTERS * (LONGEST_SHORT_STRING_BYTES + U64_BYTES);

// The promise behind MIN_MAX_FRAME_BYTES: a handshake, an error and a stats reply always
// fit, whatever limit the peer chose. Checked when the crate compiles.
const _: () = assert!(LARGEST_HELLO_FRAME_BYTES <= MIN_MAX_FRAME_BYTES as usize);
const _: () = assert!(LARGEST_ERROR_FRAME_BYTES <= MIN_MAX_FRAME_BYTES as usize);
const _: () = assert!(LARGEST_STATS_FRAME_BYTES <= MIN_MAX_FRAME_BYTES as usize);

const NO_AUTH_TOKEN: u8 = 0;
const HAS_AUTH_TOKEN: u8 = 1;

fn parse_channel(reader: &mut Reader<'_>) -> Result<String, Malformation> {
    match reader.short_string("channel")? {
        "" => Err(Malformation::InvalidValue {
            field: "channel length",
            value: 0,
            expected: "a channel name of 1 to 255 bytes",
        }),
        channel => Ok(channel.to_owned()),
    }
}

/// What `max_events` of a `Take` or a `Peek` must be.
const MAX_EVENTS_EXPECTED: &str = "at least 1";

/// `max_events` of a `Take` or a `Peek` as read: zero asks for nothing and is refused.
fn parse_max_events(reader: &mut Reader<'_>) -> Result<u32, Malformation> {
    match reader.u32("max_events")? {
        0 => Err(Malformation::InvalidValue {
            field: "max_events",
            value: 0,
            expected: MAX_EVENTS_EXPECTED,
        }),
        max_events => Ok(max_events),
    }
}

/// `max_events` of a `Take` or a `Peek` about to be sent.
fn check_max_events(max_events: u32) -> Result<(), EncodeError> {
    if max_events == 0 {
        return Err(EncodeError::InvalidValue {
            field: "max_events",
            value: 0,
            expected: MAX_EVENTS_EXPECTED,
        });
    }
    Ok(())
}

fn parse_max_frame_bytes(reader: &mut Reader<'_>) -> Result<u32, Malformation> {
    let max_frame_bytes = reader.u32("max_frame_bytes")?;
    if max_frame_bytes < MIN_MAX_FRAME_BYTES {
        return Err(Malformation::InvalidValue {
            field: "max_frame_bytes",
            value: u64::from(max_frame_bytes),
            expected: "at least MIN_MAX_FRAME_BYTES (262144)",
        });
    }
    Ok(max_frame_bytes)
}

fn check_max_frame_bytes(max_frame_bytes: u32) -> Result<(), EncodeError> {
    if max_frame_bytes < MIN_MAX_FRAME_BYTES {
        return Err(EncodeError::InvalidValue {
            field: "max_frame_bytes",
            value: u64::from(max_frame_bytes),
            expected: "at least MIN_MAX_FRAME_BYTES (262144)",
        });
    }
    Ok(())
}

/// The client's handshake. Sent first, right after [`MAGIC`](crate::MAGIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Oldest protocol version the client speaks (at least 1).
    pub oldest_version: u16,
    /// Newest protocol version the client speaks (at least `oldest_version`).
    pub newest_version: u16,
    /// Largest frame the client accepts, length prefix included (at least
    /// [`MIN_MAX_FRAME_BYTES`]). The server keeps every response, including `Events`,
    /// within it.
    pub max_frame_bytes: u32,
    /// Who is connecting, for the server's logs (may be empty).
    pub client_name: String,
    /// The shared secret, when the server requires one.
    pub auth_token: Option<String>,
}

impl Hello {
    /// A hello offering every version this crate speaks, accepting frames up to
    /// [`DEFAULT_MAX_FRAME_BYTES`], without a token.
    pub fn new(client_name: impl Into<String>) -> Self {
        Hello {
            oldest_version: OLDEST_SUPPORTED_VERSION,
            newest_version: NEWEST_SUPPORTED_VERSION,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            client_name: client_name.into(),
            auth_token: None,
        }
    }

    /// Adds an auth token.
    pub fn with_auth_token(mut self, auth_token: impl Into<String>) -> Self {
        self.auth_token = Some(auth_token.into());
        self
    }

    fn write<O: OutputBuffer + ?Sized>(&self, out: &mut O) -> Result<(), EncodeError> {
        if self.oldest_version == 0 || self.oldest_version > self.newest_version {
            return Err(EncodeError::InvalidValue {
                field: "oldest_version",
                value: u64::from(self.oldest_version),
                expected: "at least 1 and at most newest_version",
            });
        }
        check_max_frame_bytes(self.max_frame_bytes)?;
        check_length("client_name", &self.client_name, MAX_PEER_NAME_BYTES)?;
        if let Some(token) = &self.auth_token {
            check_length("auth_token", token, MAX_AUTH_TOKEN_BYTES)?;
        }
        put_u16(out, self.oldest_version);
        put_u16(out, self.newest_version);
        put_u32(out, self.max_frame_bytes);
        put_short_string(out, &self.client_name);
        match &self.auth_token {
            None => put_u8(out, NO_AUTH_TOKEN),
            Some(token) => {
                put_u8(out, HAS_AUTH_TOKEN);
                put_string(out, token);
            }
        }
        Ok(())
    }

    fn parse(reader: &mut Reader<'_>) -> Result<Self, Malformation> {
        let oldest_version = reader.u16("oldest_version")?;
        let newest_version = reader.u16("newest_version")?;
        if oldest_version == 0 || oldest_version > newest_version {
            return Err(Malformation::InvalidValue {
                field: "oldest_version",
                value: u64::from(oldest_version),
                expected: "at least 1 and at most newest_version",
            });
        }
        let max_frame_bytes = parse_max_frame_bytes(reader)?;
        let client_name = reader.short_string("client_name")?.to_owned();
        let auth_token = match reader.u8("has_auth_token")? {
            NO_AUTH_TOKEN => None,
            HAS_AUTH_TOKEN => Some(reader.string("auth_token")?.to_owned()),
            other => {
                return Err(Malformation::InvalidValue {
                    field: "has_auth_token",
                    value: u64::from(other),
                    expected: "0 or 1",
                })
            }
        };
        Ok(Hello {
            oldest_version,
            newest_version,
            max_frame_bytes,
            client_name,
            auth_token,
        })
    }
}

/// The server's handshake when it accepts the client. Sent first, right after
/// [`MAGIC`](crate::MAGIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloAccepted {
    /// The protocol version of the rest of the connection.
    pub version: u16,
    /// Largest request frame the server accepts, length prefix included (at least
    /// [`MIN_MAX_FRAME_BYTES`]). A `Put` or `PutCommit` must fit in it.
    pub max_frame_bytes: u32,
    /// The server's name and version, for the client's logs.
    pub server_name: String,
}

impl HelloAccepted {
    fn write<O: OutputBuffer + ?Sized>(&self, out: &mut O) -> Result<(), EncodeError> {
        if self.version == 0 {
            return Err(EncodeError::InvalidValue {
                field: "version",
                value: 0,
                expected: "at least 1",
            });
        }
        check_max_frame_bytes(self.max_frame_bytes)?;
        check_length("server_name", &self.server_name, MAX_PEER_NAME_BYTES)?;
        put_u16(out, self.version);
        put_u32(out, self.max_frame_bytes);
        put_short_string(out, &self.server_name);
        Ok(())
    }

    fn parse(reader: &mut Reader<'_>) -> Result<Self, Malformation> {
        let version = reader.u16("version")?;
        if version == 0 {
            return Err(Malformation::InvalidValue {
                field: "version",
                value: 0,
                expected: "at least 1",
            });
        }
        let max_frame_bytes = parse_max_frame_bytes(reader)?;
        let server_name = reader.short_string("server_name")?.to_owned();
        Ok(HelloAccepted {
            version,
            max_frame_bytes,
            server_name,
        })
    }
}

/// Names of the counters in a [`ChannelStats`]: Flume's channel attribute names, as
/// `/metrics` reports them.
pub mod counters {
    /// Events in the channel (queued plus taken but not yet committed).
    pub const CHANNEL_SIZE: &str = "ChannelSize";
    /// The channel's `capacity`.
    pub const CHANNEL_CAPACITY: &str = "ChannelCapacity";
    /// Put calls, failed ones included.
    pub const EVENT_PUT_ATTEMPT_COUNT: &str = "EventPutAttemptCount";
    /// Events in committed put transactions.
    pub const EVENT_PUT_SUCCESS_COUNT: &str = "EventPutSuccessCount";
    /// Take calls, empty ones included.
    pub const EVENT_TAKE_ATTEMPT_COUNT: &str = "EventTakeAttemptCount";
    /// Events in committed take transactions.
    pub const EVENT_TAKE_SUCCESS_COUNT: &str = "EventTakeSuccessCount";
}

/// A channel's counters, as `(name, value)` in the server's order. The six names in
/// [`counters`] are always present; servers may add more (a file channel's error counts,
/// for instance), and clients ignore names they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelStats {
    /// The counters.
    pub counters: Vec<(String, u64)>,
}

impl ChannelStats {
    /// Adds a counter.
    pub fn with_counter(mut self, name: impl Into<String>, value: u64) -> Self {
        self.counters.push((name.into(), value));
        self
    }

    /// The value of a counter, if present.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(counter, _)| counter == name)
            .map(|(_, value)| *value)
    }

    /// `ChannelSize`.
    pub fn size(&self) -> Option<u64> {
        self.get(counters::CHANNEL_SIZE)
    }

    /// `ChannelCapacity`.
    pub fn capacity(&self) -> Option<u64> {
        self.get(counters::CHANNEL_CAPACITY)
    }

    fn write<O: OutputBuffer + ?Sized>(&self, out: &mut O) -> Result<(), EncodeError> {
        if self.counters.len() > MAX_STATS_COUNTERS {
            return Err(EncodeError::TooManyEntries {
                field: "counters",
                count: self.counters.len(),
                max_count: MAX_STATS_COUNTERS,
            });
        }
        for (name, _) in &self.counters {
            check_length("counter name", name, MAX_SHORT_STRING_BYTES)?;
        }
        put_u8(out, self.counters.len() as u8);
        for (name, value) in &self.counters {
            put_short_string(out, name);
            put_u64(out, *value);
        }
        Ok(())
    }

    fn parse(reader: &mut Reader<'_>) -> Result<Self, Malformation> {
        let count = usize::from(reader.u8("counter count")?);
        // At most 255 entries: bounded by the count's width.
        let mut counters = Vec::with_capacity(count);
        for _ in 0..count {
            let name = reader.short_string("counter name")?.to_owned();
            let value = reader.u64("counter value")?;
            counters.push((name, value));
        }
        Ok(ChannelStats { counters })
    }
}

/// A request from client to server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The handshake; always the first frame, preceded by the magic.
    Hello(Hello),
    /// Liveness check, answered with [`Response::Pong`].
    Ping,
    /// Opens the connection's transaction on `channel`. Answered with `Ok`.
    Begin {
        /// The channel the transaction's puts and takes apply to.
        channel: String,
    },
    /// Adds events to the open transaction. Answered with `Ok`.
    Put {
        /// The events.
        events: EventBatch,
    },
    /// Takes up to `max_events` events inside the open transaction. Answered with
    /// `Events`, possibly empty.
    Take {
        /// At most this many events (at least 1).
        max_events: u32,
        /// When the channel is empty, wait up to this long for an event (0 = do not
        /// wait). The server may clamp it.
        wait_ms: u32,
    },
    /// Commits the open transaction. Answered with `Ok` once it is durable.
    Commit,
    /// Rolls the open transaction back. Answered with `Ok`.
    Rollback,
    /// Begin, put and commit in one frame; needs no open transaction. Answered with `Ok`
    /// once durable.
    PutCommit {
        /// The channel.
        channel: String,
        /// The events, all committed or none.
        events: EventBatch,
    },
    /// Asks for a channel's counters. Answered with `StatsReply`.
    Stats {
        /// The channel.
        channel: String,
    },
    /// Asks the server to checkpoint a channel now. Answered with `Ok` when the
    /// checkpoint is durable.
    Checkpoint {
        /// The channel.
        channel: String,
    },
    /// Plans a replay of a file channel's taken events since a point, and with
    /// `execute` puts them back. Answered with `ReplayReport`.
    Replay {
        /// The channel.
        channel: String,
        /// The point and whether to execute.
        replay: ReplayRequest,
    },
    /// Asks for a live file channel's inspect report. Answered with `InspectReport`.
    Inspect {
        /// The channel.
        channel: String,
    },
    /// An adapter's counters for one source or sink, which the server publishes on its
    /// metrics as `<component_type>.<component>`. Answered with `Ok`.
    ReportCounters {
        /// Flume's component type: `SOURCE` or `SINK`.
        component_type: String,
        /// The component's name.
        component: String,
        /// Its counters, with Flume's names.
        counters: ChannelStats,
    },
    /// Asks for copies of up to `max_events` events at the head of a channel, oldest
    /// first, without taking them: needs no transaction and changes nothing. Answered
    /// with `Events` (as many as fit in one frame; possibly none).
    Peek {
        /// The channel.
        channel: String,
        /// At most this many events (at least 1). The server may clamp it.
        max_events: u32,
    },
}

impl Request {
    /// The frame type this request is sent as.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Request::Hello(_) => FrameType::Hello,
            Request::Ping => FrameType::Ping,
            Request::Begin { .. } => FrameType::Begin,
            Request::Put { .. } => FrameType::Put,
            Request::Take { .. } => FrameType::Take,
            Request::Commit => FrameType::Commit,
            Request::Rollback => FrameType::Rollback,
            Request::PutCommit { .. } => FrameType::PutCommit,
            Request::Stats { .. } => FrameType::Stats,
            Request::Checkpoint { .. } => FrameType::Checkpoint,
            Request::Replay { .. } => FrameType::Replay,
            Request::Inspect { .. } => FrameType::Inspect,
            Request::ReportCounters { .. } => FrameType::ReportCounters,
            Request::Peek { .. } => FrameType::Peek,
        }
    }

    /// The channel the request names, if it names one.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Request::Begin { channel }
            | Request::PutCommit { channel, .. }
            | Request::Stats { channel }
            | Request::Checkpoint { channel }
            | Request::Replay { channel, .. }
            | Request::Inspect { channel }
            | Request::Peek { channel, .. } => Some(channel),
            _ => None,
        }
    }

    pub(crate) fn write_payload<O: OutputBuffer + ?Sized>(
        &self,
        out: &mut O,
    ) -> Result<(), EncodeError> {
        match self {
            Request::Hello(hello) => hello.write(out)?,
            Request::Ping | Request::Commit | Request::Rollback => {}
            Request::Begin { channel }
            | Request::Stats { channel }
            | Request::Checkpoint { channel }
            | Request::Inspect { channel } => {
                validate_channel_name(channel)?;
                put_short_string(out, channel);
            }
            Request::Replay { channel, replay } => {
                validate_channel_name(channel)?;
                put_short_string(out, channel);
                replay.write(out);
            }
            Request::Put { events } => events.write(out),
            Request::Take {
                max_events,
                wait_ms,
            } => {
                check_max_events(*max_events)?;
                put_u32(out, *max_events);
                put_u32(out, *wait_ms);
            }
            Request::Peek {
                channel,
                max_events,
            } => {
                validate_channel_name(channel)?;
                check_max_events(*max_events)?;
                put_short_string(out, channel);
                put_u32(out, *max_events);
            }
            Request::PutCommit { channel, events } => {
                validate_channel_name(channel)?;
                put_short_string(out, channel);
                events.write(out);
            }
            Request::ReportCounters {
                component_type,
                component,
                counters,
            } => {
                check_length("component_type", component_type, MAX_SHORT_STRING_BYTES)?;
                check_length("component", component, MAX_SHORT_STRING_BYTES)?;
                put_short_string(out, component_type);
                put_short_string(out, component);
                counters.write(out)?;
            }
        }
        Ok(())
    }

    /// Parses a request payload. `payload` is the frame's payload as shared bytes, so
    /// event batches can keep a slice of it.
    pub(crate) fn parse(frame_type: FrameType, payload: &Bytes) -> Result<Self, Malformation> {
        let mut reader = Reader::new(payload);
        let request = match frame_type {
            FrameType::Hello => Request::Hello(Hello::parse(&mut reader)?),
            FrameType::Ping => Request::Ping,
            FrameType::Begin => Request::Begin {
                channel: parse_channel(&mut reader)?,
            },
            FrameType::Put => Request::Put {
                events: EventBatch::parse(&mut reader, payload)?,
            },
            FrameType::Take => Request::Take {
                max_events: parse_max_events(&mut reader)?,
                wait_ms: reader.u32("wait_ms")?,
            },
            FrameType::Peek => Request::Peek {
                channel: parse_channel(&mut reader)?,
                max_events: parse_max_events(&mut reader)?,
            },
            FrameType::Commit => Request::Commit,
            FrameType::Rollback => Request::Rollback,
            FrameType::PutCommit => Request::PutCommit {
                channel: parse_channel(&mut reader)?,
                events: EventBatch::parse(&mut reader, payload)?,
            },
            FrameType::Stats => Request::Stats {
                channel: parse_channel(&mut reader)?,
            },
            FrameType::Checkpoint => Request::Checkpoint {
                channel: parse_channel(&mut reader)?,
            },
            FrameType::Replay => Request::Replay {
                channel: parse_channel(&mut reader)?,
                replay: ReplayRequest::parse(&mut reader)?,
            },
            FrameType::Inspect => Request::Inspect {
                channel: parse_channel(&mut reader)?,
            },
            FrameType::ReportCounters => Request::ReportCounters {
                component_type: reader.short_string("component_type")?.to_owned(),
                component: reader.short_string("component")?.to_owned(),
                counters: ChannelStats::parse(&mut reader)?,
            },
            FrameType::Error
            | FrameType::HelloAccepted
            | FrameType::Ok
            | FrameType::Events
            | FrameType::StatsReply
            | FrameType::Pong
            | FrameType::ReplayReport
            | FrameType::InspectReport => {
                // The decoder checks the direction before parsing; kept total so a
                // mistake there is an error, not a panic.
                return Err(Malformation::InvalidValue {
                    field: "frame type",
                    value: u64::from(frame_type.as_byte()),
                    expected: "a request frame type",
                });
            }
        };
        reader.finish()?;
        Ok(request)
    }
}

/// A response from server to client. Each request gets exactly one, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The server accepts the handshake; always the first frame, preceded by the magic.
    HelloAccepted(HelloAccepted),
    /// The server refuses the connection (bad version or token, too many connections,
    /// a broken first frame) and closes it. Sent instead of `HelloAccepted`, preceded by
    /// the magic, as an `Error` frame.
    HandshakeRejected(ErrorResponse),
    /// The request succeeded and returns nothing.
    Ok,
    /// The events a `Take` returned (possibly none).
    Events(EventBatch),
    /// A channel's counters.
    Stats(ChannelStats),
    /// Answer to `Ping`.
    Pong,
    /// A replay's plan, and its outcome when it was executed.
    Replay(ReplayReport),
    /// A live channel's inspect report.
    Inspect(InspectReport),
    /// The request failed. See [`ErrorResponse`] and its class for what happened to the
    /// transaction and the connection.
    Error(ErrorResponse),
}

impl Response {
    /// The frame type this response is sent as.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Response::HelloAccepted(_) => FrameType::HelloAccepted,
            Response::HandshakeRejected(_) | Response::Error(_) => FrameType::Error,
            Response::Ok => FrameType::Ok,
            Response::Events(_) => FrameType::Events,
            Response::Stats(_) => FrameType::StatsReply,
            Response::Pong => FrameType::Pong,
            Response::Replay(_) => FrameType::ReplayReport,
            Response::Inspect(_) => FrameType::InspectReport,
        }
    }

    /// True for the two handshake responses, which are preceded by the magic.
    pub fn is_handshake(&self) -> bool {
        matches!(
            self,
            Response::HelloAccepted(_) | Response::HandshakeRejected(_)
        )
    }

    pub(crate) fn write_payload<O: OutputBuffer + ?Sized>(
        &self,
        out: &mut O,
    ) -> Result<(), EncodeError> {
        match self {
            Response::HelloAccepted(accepted) => accepted.write(out),
            Response::HandshakeRejected(error) | Response::Error(error) => error.write(out),
            Response::Ok | Response::Pong => Ok(()),
            Response::Events(events) => {
                events.write(out);
                Ok(())
            }
            Response::Stats(stats) => stats.write(out),
            Response::Replay(report) => report.write(out),
            Response::Inspect(report) => {
                report.write(out);
                Ok(())
            }
        }
    }

    /// Parses a response payload. `during_handshake` selects how an `Error` frame is
    /// read: as a handshake rejection before `HelloAccepted`, as a failed request after.
    pub(crate) fn parse(
        frame_type: FrameType,
        payload: &Bytes,
        during_handshake: bool,
    ) -> Result<Self, Malformation> {
        let mut reader = Reader::new(payload);
        let response = match frame_type {
            FrameType::HelloAccepted => Response::HelloAccepted(HelloAccepted::parse(&mut reader)?),
            FrameType::Error if during_handshake => {
                Response::HandshakeRejected(ErrorResponse::parse(&mut reader)?)
            }
            FrameType::Error => Response::Error(ErrorResponse::parse(&mut reader)?),
            FrameType::Ok => Response::Ok,
            FrameType::Events => Response::Events(EventBatch::parse(&mut reader, payload)?),
            FrameType::StatsReply => Response::Stats(ChannelStats::parse(&mut reader)?),
            FrameType::Pong => Response::Pong,
            FrameType::ReplayReport => Response::Replay(ReplayReport::parse(&mut reader)?),
            FrameType::InspectReport => Response::Inspect(InspectReport::parse(&mut reader)?),
            FrameType::Hello
            | FrameType::Ping
            | FrameType::Begin
            | FrameType::Put
            | FrameType::Take
            | FrameType::Commit
            | FrameType::Rollback
            | FrameType::PutCommit
            | FrameType::Stats
            | FrameType::Checkpoint
            | FrameType::Replay
            | FrameType::Inspect
            | FrameType::ReportCounters
            | FrameType::Peek => {
                return Err(Malformation::InvalidValue {
                    field: "frame type",
                    value: u64::from(frame_type.as_byte()),
                    expected: "a response frame type",
                });
            }
        };
        reader.finish()?;
        Ok(response)
    }
}
