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
//!
//! 0x80 Error          code: u16 | channel: str8 (empty = none) | message: str16
//!                     | field_count: u8 | (name: str8 | value: u64) × field_count
//! 0x81 HelloAccepted  version: u16 | max_frame_bytes: u32 | server_name: str8
//! 0x82 Ok             (empty)
//! 0x83 Events         batch
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
    DEFAULT_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES, NEWEST_SUPPORTED_VERSION,
    OLDEST_SUPPORTED_VERSION,
};
use crate::operator::{InspectReport, ReplayReport, ReplayRequest};
use crate::wire::{
    put_short_string, put_string, put_u16, put_u32, put_u64, put_u8, OutputBuffer, Reader,
    MAX_SHORT_STRING_BYTES, MAX_STRING_BYTES, SHORT_STRING_LENGTH_BYTES, STRING_LENGTH_BYTES,
};

/// The longest channel name (its length is a `u8`).
pub const MAX_CHANNEL_NAME_BYTES: usize = MAX_SHORT_STRING_BYTES;
/// The longest client or server name in the handshake.
pub const MAX_PEER_NAME_BYTES: usize = MAX_SHORT_STRING_BYTES;
/// The longest auth token (its length is a `u16`).
pub const MAX_AUTH_TOKEN_BYTES: usize = MAX_STRING_BYTES;
/// The most counters one stats reply carries (the count is a `u8`).
pub const MAX_STATS_COUNTERS: usize = u8::MAX as usize;

/// Bytes of a `u64` value in stats counters and error fields.
const U64_BYTES: usize = 8;
/// Bytes of a `str8` at its longest.
const LONGEST_SHORT_STRING_BYTES: usize = SHORT_STRING_LENGTH_BYTES + MAX_SHORT_STRING_BYTES;
/// Bytes of a `str16` at its longest.
const LONGEST_STRING_BYTES: usize = STRING_LENGTH_BYTES + MAX_STRING_BYTES;

/// The largest `Hello` frame but for its token's bytes: the header, both versions,
/// `max_frame_bytes`, the longest client name, the token flag and the token's length
/// field (276 bytes).
pub const HELLO_FRAME_BYTES_BEFORE_TOKEN: usize =
    FRAME_HEADER_BYTES + 2 + 2 + 4 + LONGEST_SHORT_STRING_BYTES + 1 + STRING_LENGTH_BYTES;
/// The largest `Hello` frame the protocol can carry: longest client name and auth token
/// (65 811 bytes).
pub const LARGEST_HELLO_FRAME_BYTES: usize = HELLO_FRAME_BYTES_BEFORE_TOKEN + MAX_STRING_BYTES;
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

/// Checks a channel name: 1 to [`MAX_CHANNEL_NAME_BYTES`] bytes of UTF-8.
pub fn validate_channel_name(channel: &str) -> Result<(), EncodeError> {
    if channel.is_empty() {
        return Err(EncodeError::InvalidValue {
            field: "channel length",
            value: 0,
            expected: "a channel name of 1 to 255 bytes",
        });
    }
    check_length("channel", channel, MAX_CHANNEL_NAME_BYTES)
}

fn check_length(field: &'static str, text: &str, max_bytes: usize) -> Result<(), EncodeError> {
    if text.len() > max_bytes {
        return Err(EncodeError::FieldTooLong {
            field,
            len_bytes: text.len(),
            max_bytes,
        });
    }
    Ok(())
}

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
            | Request::Inspect { channel } => Some(channel),
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
                if *max_events == 0 {
                    return Err(EncodeError::InvalidValue {
                        field: "max_events",
                        value: 0,
                        expected: "at least 1",
                    });
                }
                put_u32(out, *max_events);
                put_u32(out, *wait_ms);
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
            FrameType::Take => {
                let max_events = reader.u32("max_events")?;
                if max_events == 0 {
                    return Err(Malformation::InvalidValue {
                        field: "max_events",
                        value: 0,
                        expected: "at least 1",
                    });
                }
                Request::Take {
                    max_events,
                    wait_ms: reader.u32("wait_ms")?,
                }
            }
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
            | FrameType::ReportCounters => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::{RequestDecoder, ResponseDecoder};
    use crate::encoder::Encoder;
    use crate::error::DecodeError;
    use crate::error_response::{ErrorCode, ErrorResponse};
    use crate::event::Event;
    use crate::frame::{RequestId, MAGIC};
    use crate::limits::DecodeLimits;
    use crate::operator::{
        EventLocation, ReplayExecution, ReplayPoint, RetainedCommit,
        MAX_LISTED_NOT_RETAINED_EVENTS, MAX_LISTED_REPLAY_SEGMENTS,
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
}
