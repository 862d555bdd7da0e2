//! The error frame: a typed code, the channel it concerns, a message for people and numeric
//! fields for programs.
//!
//! ```text
//! Error payload (frame type 0x80)
//! +------------+--------------------+---------------------+-------------+----------------------------+
//! | code: u16  | channel: u8 + utf8 | message: u16 + utf8 | fields: u8  | fields × (name: u8 + utf8, |
//! |            | (0 bytes = none)   |                     |             |           value: u64)      |
//! +------------+--------------------+---------------------+-------------+----------------------------+
//! ```
//!
//! The hundreds digit of a code is its [`ErrorClass`], so a client can act on a code that
//! a newer server introduced without knowing it.

use std::fmt;

use crate::decode_error::DecodeError;
use crate::error::{EncodeError, Malformation};
use crate::limits::{validate_channel_name, NEWEST_SUPPORTED_VERSION, OLDEST_SUPPORTED_VERSION};
use crate::wire::{
    put_short_string, put_string, put_u16, put_u64, put_u8, OutputBuffer, Reader,
    MAX_SHORT_STRING_BYTES, MAX_STRING_BYTES,
};

/// The most numeric fields one error carries (their count is a `u8`).
pub const MAX_ERROR_FIELDS: usize = u8::MAX as usize;

/// What a failed request means for the client, from the hundreds digit of the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// `1xx`: a transient shortage (channel full, disk space low). The transaction was
    /// rolled back; the same transaction can succeed later. The connection stays open.
    Retryable,
    /// `2xx`: the request cannot succeed as sent (unknown channel, no transaction, too
    /// large a transaction, an unhealthy channel, a server fault). The connection stays
    /// open.
    RequestFailed,
    /// `3xx`: the server closes the connection after this frame.
    ConnectionClosing,
}

/// Typed error codes. DO NOT renumber: the values are on the wire and in operators'
/// scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Code 101: The channel holds `capacity` events (or, for a memory channel, its
    /// `byteCapacity`); the put or commit would exceed it.
    ChannelFull,
    /// Code 102: A data directory cannot take the transaction above `minimumRequiredSpace`
    /// (or the disk ran out of space anyway); puts are refused until space returns, takes
    /// still work, the channel stays healthy.
    InsufficientSpace,
    /// Code 201: The transaction would hold more events than the channel's
    /// `transactionCapacity`.
    TransactionTooLarge,
    /// Code 202: No channel by that name on this server.
    UnknownChannel,
    /// Code 203: `Put`, `Take`, `Commit` or `Rollback` without an open transaction.
    NoTransaction,
    /// Code 204: `Begin` or `PutCommit` while the connection already has a transaction open.
    TransactionAlreadyOpen,
    /// Code 205: The channel failed (an fsync or other I/O error, a directory removed under
    /// it, corruption, a failed replay) and refuses work until an operator intervenes; the
    /// server's health report says so too, and the message says why.
    ChannelUnhealthy,
    /// Code 206: A fault inside the server; the message says what.
    Internal,
    /// Code 207: The request does not apply to the channel's type (a replay or an inspect
    /// report of a memory channel, which keeps no log).
    NotSupported,
    /// Code 208: A `ReportCounters` the server does not record: a component type other
    /// than an adapter's (`SOURCE`, `SINK`, …), a component name a Flume configuration
    /// could not give, a component another connection is reporting, or one past the
    /// server's table of components.
    ReportRefused,
    /// Code 301: The client broke the protocol (a malformed frame, a request before the
    /// handshake).
    ProtocolViolation,
    /// Code 302: A frame larger than the server's `max_frame_bytes`.
    FrameTooLarge,
    /// Code 303: The auth token is missing or wrong.
    Unauthorized,
    /// Code 304: No protocol version in common.
    UnsupportedVersion,
    /// Code 305: The server is at its connection limit.
    TooManyConnections,
    /// Code 306: The server is stopping.
    ShuttingDown,
    /// Code 307: A frame was not completed within the frame-completion deadline, or the
    /// connection sat idle past the idle timeout.
    TimedOut,
    /// A code this version does not know (from a newer server). Its class still follows
    /// from the hundreds digit.
    Unrecognized(u16),
}

impl ErrorCode {
    /// Every code this version defines.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::ChannelFull,
        ErrorCode::InsufficientSpace,
        ErrorCode::TransactionTooLarge,
        ErrorCode::UnknownChannel,
        ErrorCode::NoTransaction,
        ErrorCode::TransactionAlreadyOpen,
        ErrorCode::ChannelUnhealthy,
        ErrorCode::Internal,
        ErrorCode::NotSupported,
        ErrorCode::ReportRefused,
        ErrorCode::ProtocolViolation,
        ErrorCode::FrameTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TooManyConnections,
        ErrorCode::ShuttingDown,
        ErrorCode::TimedOut,
    ];

    /// The code's number on the wire.
    pub fn to_wire(self) -> u16 {
        match self {
            ErrorCode::ChannelFull => 101,
            ErrorCode::InsufficientSpace => 102,
            ErrorCode::TransactionTooLarge => 201,
            ErrorCode::UnknownChannel => 202,
            ErrorCode::NoTransaction => 203,
            ErrorCode::TransactionAlreadyOpen => 204,
            ErrorCode::ChannelUnhealthy => 205,
            ErrorCode::Internal => 206,
            ErrorCode::NotSupported => 207,
            ErrorCode::ReportRefused => 208,
            ErrorCode::ProtocolViolation => 301,
            ErrorCode::FrameTooLarge => 302,
            ErrorCode::Unauthorized => 303,
            ErrorCode::UnsupportedVersion => 304,
            ErrorCode::TooManyConnections => 305,
            ErrorCode::ShuttingDown => 306,
            ErrorCode::TimedOut => 307,
            ErrorCode::Unrecognized(code) => code,
        }
    }

    /// The code for a number on the wire; numbers this version does not define become
    /// [`ErrorCode::Unrecognized`].
    pub fn from_wire(code: u16) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|known| known.to_wire() == code)
            .unwrap_or(ErrorCode::Unrecognized(code))
    }

    /// What the client should do about it. Unrecognized codes outside `100..=399` count
    /// as [`ErrorClass::RequestFailed`].
    pub fn class(self) -> ErrorClass {
        match self.to_wire() / 100 {
            1 => ErrorClass::Retryable,
            3 => ErrorClass::ConnectionClosing,
            _ => ErrorClass::RequestFailed,
        }
    }

    /// The name used in messages and logs, e.g. `CHANNEL_FULL`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ChannelFull => "CHANNEL_FULL",
            ErrorCode::InsufficientSpace => "INSUFFICIENT_SPACE",
            ErrorCode::TransactionTooLarge => "TRANSACTION_TOO_LARGE",
            ErrorCode::UnknownChannel => "UNKNOWN_CHANNEL",
            ErrorCode::NoTransaction => "NO_TRANSACTION",
            ErrorCode::TransactionAlreadyOpen => "TRANSACTION_ALREADY_OPEN",
            ErrorCode::ChannelUnhealthy => "CHANNEL_UNHEALTHY",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::NotSupported => "NOT_SUPPORTED",
            ErrorCode::ReportRefused => "REPORT_REFUSED",
            ErrorCode::ProtocolViolation => "PROTOCOL_VIOLATION",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::TimedOut => "TIMED_OUT",
            ErrorCode::Unrecognized(_) => "UNRECOGNIZED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Unrecognized(code) => write!(f, "UNRECOGNIZED({code})"),
            known => f.write_str(known.name()),
        }
    }
}

/// Names of the numeric fields the server attaches to errors. A client reads them with
/// [`ErrorResponse::field`]; new names may appear in later versions.
pub mod fields {
    /// The channel's `capacity` in events.
    pub const CAPACITY: &str = "capacity";
    /// Events in the channel when the error happened.
    pub const SIZE: &str = "size";
    /// A memory channel's byte capacity (`byteCapacity`, less the header buffer).
    pub const BYTE_CAPACITY: &str = "byte_capacity";
    /// Body bytes held by a memory channel when the error happened.
    pub const USED_BYTES: &str = "used_bytes";
    /// The channel's `transactionCapacity`.
    pub const TRANSACTION_CAPACITY: &str = "transaction_capacity";
    /// Events the transaction would have held.
    pub const ATTEMPTED_EVENTS: &str = "attempted_events";
    /// Usable bytes in the data directory (`f_bavail × f_frsize`).
    pub const AVAILABLE_BYTES: &str = "available_bytes";
    /// The channel's `minimumRequiredSpace`.
    pub const REQUIRED_BYTES: &str = "required_bytes";
    /// Size of the offending frame, length prefix included.
    pub const FRAME_BYTES: &str = "frame_bytes";
    /// The receiver's frame limit.
    pub const MAX_FRAME_BYTES: &str = "max_frame_bytes";
    /// Oldest version the client offered.
    pub const OFFERED_OLDEST_VERSION: &str = "offered_oldest_version";
    /// Newest version the client offered.
    pub const OFFERED_NEWEST_VERSION: &str = "offered_newest_version";
    /// Oldest version the server speaks.
    pub const OLDEST_SUPPORTED_VERSION: &str = "oldest_supported_version";
    /// Newest version the server speaks.
    pub const NEWEST_SUPPORTED_VERSION: &str = "newest_supported_version";
    /// The server's connection limit.
    pub const MAX_CONNECTIONS: &str = "max_connections";
    /// The deadline or timeout that expired, in milliseconds.
    pub const LIMIT_MS: &str = "limit_ms";
}

/// A failed request as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// What went wrong, as a type.
    pub code: ErrorCode,
    /// The channel concerned, if any (1 to 255 bytes).
    pub channel: Option<String>,
    /// What went wrong, for people: names the channel and the limit or resource with its
    /// numbers. At most [`MAX_STRING_BYTES`] bytes.
    pub message: String,
    /// The numbers in the message, for programs (names from [`fields`]). At most
    /// [`MAX_ERROR_FIELDS`], each name at most 255 bytes.
    pub fields: Vec<(String, u64)>,
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorResponse {}

/// Cuts `message` to at most `max_bytes`, on a character boundary.
fn truncate_on_char_boundary(mut message: String, max_bytes: usize) -> String {
    if message.len() > max_bytes {
        let mut cut = max_bytes;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

impl ErrorResponse {
    /// An error with a code and a message (cut to [`MAX_STRING_BYTES`] if longer).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorResponse {
            code,
            channel: None,
            message: truncate_on_char_boundary(message.into(), MAX_STRING_BYTES),
            fields: Vec::new(),
        }
    }

    /// Names the channel the error concerns.
    pub fn for_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Attaches a numeric field.
    pub fn with_field(mut self, name: impl Into<String>, value: u64) -> Self {
        self.fields.push((name.into(), value));
        self
    }

    /// The value of a numeric field, if present.
    pub fn field(&self, name: &str) -> Option<u64> {
        self.fields
            .iter()
            .find(|(field_name, _)| field_name == name)
            .map(|(_, value)| *value)
    }

    /// What the client should do about it.
    pub fn class(&self) -> ErrorClass {
        self.code.class()
    }

    /// The channel is at its event capacity.
    pub fn channel_full(channel: &str, capacity: u64, size: u64) -> Self {
        ErrorResponse::new(
            ErrorCode::ChannelFull,
            format!(
                "channel '{channel}' is full: {size} events queued, capacity {capacity}. \
                 Sinks are not keeping up with sources, or capacity is too small; the \
                 transaction was rolled back, retry later"
            ),
        )
        .for_channel(channel)
        .with_field(fields::CAPACITY, capacity)
        .with_field(fields::SIZE, size)
    }

    /// A memory channel is at its byte capacity.
    pub fn channel_bytes_full(channel: &str, byte_capacity: u64, used_bytes: u64) -> Self {
        ErrorResponse::new(
            ErrorCode::ChannelFull,
            format!(
                "channel '{channel}' is full: event bodies use {used_bytes} of \
                 byte_capacity {byte_capacity} bytes (byteCapacity less \
                 byteCapacityBufferPercentage); the transaction was rolled back, retry later"
            ),
        )
        .for_channel(channel)
        .with_field(fields::BYTE_CAPACITY, byte_capacity)
        .with_field(fields::USED_BYTES, used_bytes)
    }

    /// The transaction would exceed the channel's `transactionCapacity`.
    pub fn transaction_too_large(
        channel: &str,
        transaction_capacity: u64,
        attempted_events: u64,
    ) -> Self {
        ErrorResponse::new(
            ErrorCode::TransactionTooLarge,
            format!(
                "transaction on channel '{channel}' would hold {attempted_events} events, \
                 more than transactionCapacity {transaction_capacity}; commit smaller \
                 batches or raise transactionCapacity. The transaction was rolled back"
            ),
        )
        .for_channel(channel)
        .with_field(fields::TRANSACTION_CAPACITY, transaction_capacity)
        .with_field(fields::ATTEMPTED_EVENTS, attempted_events)
    }

    /// A data directory is below `minimumRequiredSpace`.
    pub fn insufficient_space(
        channel: &str,
        directory: &str,
        available_bytes: u64,
        required_bytes: u64,
    ) -> Self {
        ErrorResponse::new(
            ErrorCode::InsufficientSpace,
            format!(
                "channel '{channel}' refuses puts: usable space in {directory} is \
                 {available_bytes} bytes, below minimumRequiredSpace {required_bytes} bytes. \
                 Takes still work; puts resume when space is freed"
            ),
        )
        .for_channel(channel)
        .with_field(fields::AVAILABLE_BYTES, available_bytes)
        .with_field(fields::REQUIRED_BYTES, required_bytes)
    }

    /// The channel has failed; `reason` names the cause (errno and file for an fsync
    /// failure).
    pub fn channel_unhealthy(channel: &str, reason: &str) -> Self {
        ErrorResponse::new(
            ErrorCode::ChannelUnhealthy,
            format!("channel '{channel}' is unhealthy and refuses work: {reason}"),
        )
        .for_channel(channel)
    }

    /// No channel by that name.
    pub fn unknown_channel(channel: &str) -> Self {
        ErrorResponse::new(
            ErrorCode::UnknownChannel,
            format!("no channel named '{channel}' on this server"),
        )
        .for_channel(channel)
    }

    /// A transaction operation without an open transaction.
    pub fn no_transaction() -> Self {
        ErrorResponse::new(
            ErrorCode::NoTransaction,
            "no open transaction on this connection: send Begin first (a failed Put, Take \
             or Commit rolls its transaction back)",
        )
    }

    /// `Begin` or `PutCommit` while a transaction is open on `open_channel`.
    pub fn transaction_already_open(open_channel: &str) -> Self {
        ErrorResponse::new(
            ErrorCode::TransactionAlreadyOpen,
            format!(
                "a transaction on channel '{open_channel}' is already open on this \
                 connection; commit or roll it back first (one transaction per connection, \
                 open more connections for concurrency)"
            ),
        )
        .for_channel(open_channel)
    }

    /// The client broke the protocol.
    pub fn protocol_violation(detail: impl fmt::Display) -> Self {
        ErrorResponse::new(
            ErrorCode::ProtocolViolation,
            format!("protocol violation, closing the connection: {detail}"),
        )
    }

    /// A frame larger than the server accepts.
    pub fn frame_too_large(frame_bytes: u64, max_frame_bytes: u32) -> Self {
        ErrorResponse::new(
            ErrorCode::FrameTooLarge,
            format!(
                "frame of {frame_bytes} bytes exceeds max_frame_bytes {max_frame_bytes}; \
                 send smaller batches. Closing the connection"
            ),
        )
        .with_field(fields::FRAME_BYTES, frame_bytes)
        .with_field(fields::MAX_FRAME_BYTES, u64::from(max_frame_bytes))
    }

    /// A client's first frame larger than a `Hello` may be before authentication.
    /// Fields as for [`frame_too_large`](Self::frame_too_large), `max_frame_bytes` being
    /// the handshake limit.
    pub fn hello_too_large(frame_bytes: u64, max_hello_frame_bytes: u32) -> Self {
        ErrorResponse::new(
            ErrorCode::FrameTooLarge,
            format!(
                "first frame of {frame_bytes} bytes exceeds the {max_hello_frame_bytes} bytes \
                 a Hello may have before the client is authenticated; closing the connection"
            ),
        )
        .with_field(fields::FRAME_BYTES, frame_bytes)
        .with_field(fields::MAX_FRAME_BYTES, u64::from(max_hello_frame_bytes))
    }

    /// A report (`what`, e.g. "inspect report") on `channel` that does not fit the
    /// client's frame limit. Closes the connection, as any frame too large does.
    pub fn report_too_large(
        channel: &str,
        what: &str,
        frame_bytes: u64,
        max_frame_bytes: u32,
    ) -> Self {
        ErrorResponse::new(
            ErrorCode::FrameTooLarge,
            format!(
                "the {what} of channel '{channel}' takes a frame of {frame_bytes} bytes, more \
                 than the client's max_frame_bytes {max_frame_bytes}; reconnect announcing a \
                 larger max_frame_bytes. Closing the connection"
            ),
        )
        .for_channel(channel)
        .with_field(fields::FRAME_BYTES, frame_bytes)
        .with_field(fields::MAX_FRAME_BYTES, u64::from(max_frame_bytes))
    }

    /// The auth token is missing or wrong.
    pub fn unauthorized() -> Self {
        ErrorResponse::new(
            ErrorCode::Unauthorized,
            "auth token missing or wrong (see the server's authToken setting); closing the \
             connection",
        )
    }

    /// No version in common with the client's offer.
    pub fn unsupported_version(offered_oldest: u16, offered_newest: u16) -> Self {
        ErrorResponse::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "client offers protocol versions {offered_oldest}..={offered_newest}, this \
                 server speaks {OLDEST_SUPPORTED_VERSION}..={NEWEST_SUPPORTED_VERSION}; \
                 closing the connection"
            ),
        )
        .with_field(fields::OFFERED_OLDEST_VERSION, u64::from(offered_oldest))
        .with_field(fields::OFFERED_NEWEST_VERSION, u64::from(offered_newest))
        .with_field(
            fields::OLDEST_SUPPORTED_VERSION,
            u64::from(OLDEST_SUPPORTED_VERSION),
        )
        .with_field(
            fields::NEWEST_SUPPORTED_VERSION,
            u64::from(NEWEST_SUPPORTED_VERSION),
        )
    }

    /// The server is at its connection limit.
    pub fn too_many_connections(max_connections: u32) -> Self {
        ErrorResponse::new(
            ErrorCode::TooManyConnections,
            format!(
                "server is at its limit of {max_connections} connections (maxConnections); \
                 closing the connection"
            ),
        )
        .with_field(fields::MAX_CONNECTIONS, u64::from(max_connections))
    }

    /// The server is stopping.
    pub fn shutting_down() -> Self {
        ErrorResponse::new(
            ErrorCode::ShuttingDown,
            "server is shutting down; any open transaction was rolled back",
        )
    }

    /// A deadline expired; `what` names it (e.g. "frame-completion deadline").
    pub fn timed_out(what: &str, limit_ms: u64) -> Self {
        ErrorResponse::new(
            ErrorCode::TimedOut,
            format!("{what} of {limit_ms} ms expired; closing the connection"),
        )
        .with_field(fields::LIMIT_MS, limit_ms)
    }

    /// `request` (e.g. "replay") does not apply to `channel`, a channel of type
    /// `channel_type` (Flume's alias, e.g. `memory`); `why` says what it would need.
    pub fn not_supported(channel: &str, channel_type: &str, request: &str, why: &str) -> Self {
        ErrorResponse::new(
            ErrorCode::NotSupported,
            format!("{request} is not supported for {channel_type} channel '{channel}': {why}"),
        )
        .for_channel(channel)
    }

    /// A `ReportCounters` for `component_type.component` that the server does not
    /// record; `why` says what is wrong with it.
    pub fn report_refused(component_type: &str, component: &str, why: &str) -> Self {
        ErrorResponse::new(
            ErrorCode::ReportRefused,
            format!(
                "counters of {}.{} not recorded: {why}",
                component_type.escape_debug(),
                component.escape_debug()
            ),
        )
    }

    /// A fault inside the server.
    pub fn internal(detail: impl fmt::Display) -> Self {
        ErrorResponse::new(ErrorCode::Internal, format!("internal error: {detail}"))
    }

    pub(crate) fn validate(&self) -> Result<(), EncodeError> {
        if let Some(channel) = &self.channel {
            validate_channel_name(channel)?;
        }
        if self.message.len() > MAX_STRING_BYTES {
            return Err(EncodeError::FieldTooLong {
                field: "message",
                len_bytes: self.message.len(),
                max_bytes: MAX_STRING_BYTES,
            });
        }
        if self.fields.len() > MAX_ERROR_FIELDS {
            return Err(EncodeError::TooManyEntries {
                field: "fields",
                count: self.fields.len(),
                max_count: MAX_ERROR_FIELDS,
            });
        }
        for (name, _) in &self.fields {
            if name.len() > MAX_SHORT_STRING_BYTES {
                return Err(EncodeError::FieldTooLong {
                    field: "field name",
                    len_bytes: name.len(),
                    max_bytes: MAX_SHORT_STRING_BYTES,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn write<O: OutputBuffer + ?Sized>(&self, out: &mut O) -> Result<(), EncodeError> {
        self.validate()?;
        put_u16(out, self.code.to_wire());
        put_short_string(out, self.channel.as_deref().unwrap_or(""));
        put_string(out, &self.message);
        put_u8(out, self.fields.len() as u8);
        for (name, value) in &self.fields {
            put_short_string(out, name);
            put_u64(out, *value);
        }
        Ok(())
    }

    pub(crate) fn parse(reader: &mut Reader<'_>) -> Result<Self, Malformation> {
        let code = ErrorCode::from_wire(reader.u16("code")?);
        let channel = match reader.short_string("channel")? {
            "" => None,
            channel => Some(channel.to_owned()),
        };
        let message = reader.string("message")?.to_owned();
        let field_count = usize::from(reader.u8("field count")?);
        // At most 255 entries: bounded by the count's width, whatever the payload says.
        let mut fields = Vec::with_capacity(field_count);
        for _ in 0..field_count {
            let name = reader.short_string("field name")?.to_owned();
            let value = reader.u64("field value")?;
            fields.push((name, value));
        }
        Ok(ErrorResponse {
            code,
            channel,
            message,
            fields,
        })
    }
}

impl DecodeError {
    /// The error frame to send before closing: `FrameTooLarge` for an oversized length
    /// prefix (of any frame, or of a `Hello` beyond the handshake limit),
    /// `ProtocolViolation` for everything else. Its message is this error's text.
    pub fn to_error_response(&self) -> ErrorResponse {
        let message = self.to_string();
        match self {
            DecodeError::FrameTooLarge {
                frame_bytes,
                max_frame_bytes,
            } => ErrorResponse::frame_too_large(*frame_bytes, *max_frame_bytes),
            DecodeError::HelloTooLarge {
                frame_bytes,
                max_hello_frame_bytes,
            } => ErrorResponse::hello_too_large(*frame_bytes, *max_hello_frame_bytes),
            _ => ErrorResponse::protocol_violation(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameType, RequestId};

    #[test]
    fn every_code_round_trips_through_its_number() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.to_wire()), code);
        }
        assert_eq!(ErrorCode::from_wire(150), ErrorCode::Unrecognized(150));
    }

    #[test]
    fn class_follows_the_hundreds_digit_even_for_unknown_codes() {
        assert_eq!(ErrorCode::ChannelFull.class(), ErrorClass::Retryable);
        assert_eq!(ErrorCode::InsufficientSpace.class(), ErrorClass::Retryable);
        assert_eq!(ErrorCode::UnknownChannel.class(), ErrorClass::RequestFailed);
        assert_eq!(
            ErrorCode::Unauthorized.class(),
            ErrorClass::ConnectionClosing
        );
        assert_eq!(ErrorCode::Unrecognized(199).class(), ErrorClass::Retryable);
        assert_eq!(
            ErrorCode::Unrecognized(399).class(),
            ErrorClass::ConnectionClosing
        );
        assert_eq!(
            ErrorCode::Unrecognized(7).class(),
            ErrorClass::RequestFailed
        );
    }

    #[test]
    fn channel_full_names_the_channel_capacity_and_size() {
        let error = ErrorResponse::channel_full("c1", 10_000, 10_000);
        assert_eq!(error.channel.as_deref(), Some("c1"));
        assert!(error.message.contains("'c1'"));
        assert!(error.message.contains("capacity 10000"));
        assert_eq!(error.field(fields::CAPACITY), Some(10_000));
        assert_eq!(error.field(fields::SIZE), Some(10_000));
    }

    #[test]
    fn transaction_too_large_names_transaction_capacity() {
        let error = ErrorResponse::transaction_too_large("c1", 100, 150);
        assert!(error.message.contains("transactionCapacity 100"));
        assert_eq!(error.field(fields::TRANSACTION_CAPACITY), Some(100));
        assert_eq!(error.code.class(), ErrorClass::RequestFailed);
    }

    #[test]
    fn insufficient_space_names_directory_available_and_required() {
        let error = ErrorResponse::insufficient_space("c1", "/data/c1", 4096, 524_288_000);
        assert!(error.message.contains("/data/c1"));
        assert!(error.message.contains("4096 bytes"));
        assert!(error.message.contains("524288000"));
        assert_eq!(error.field(fields::AVAILABLE_BYTES), Some(4096));
        assert_eq!(error.field(fields::REQUIRED_BYTES), Some(524_288_000));
    }

    #[test]
    fn unsupported_version_reports_both_ranges() {
        let error = ErrorResponse::unsupported_version(7, 9);
        assert_eq!(error.field(fields::OFFERED_OLDEST_VERSION), Some(7));
        assert_eq!(
            error.field(fields::NEWEST_SUPPORTED_VERSION),
            Some(u64::from(NEWEST_SUPPORTED_VERSION))
        );
    }

    #[test]
    fn not_supported_names_the_request_the_channel_and_its_type() {
        let error = ErrorResponse::not_supported("m1", "memory", "replay", "it keeps no log");
        assert_eq!(error.code.to_wire(), 207);
        assert_eq!(error.class(), ErrorClass::RequestFailed);
        assert_eq!(error.channel.as_deref(), Some("m1"));
        assert_eq!(
            error.message,
            "replay is not supported for memory channel 'm1': it keeps no log"
        );
    }

    #[test]
    fn overlong_message_is_cut_on_a_character_boundary() {
        let error = ErrorResponse::new(ErrorCode::Internal, "é".repeat(MAX_STRING_BYTES));
        assert!(error.message.len() <= MAX_STRING_BYTES);
        assert!(error.validate().is_ok());
    }

    #[test]
    fn error_payload_round_trips() {
        let error = ErrorResponse::insufficient_space("c1", "/d", 1, 2);
        let mut out = Vec::new();
        error.write(&mut out).unwrap();
        let mut reader = Reader::new(&out);
        assert_eq!(ErrorResponse::parse(&mut reader), Ok(error));
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn empty_channel_name_is_refused_on_encode() {
        let error = ErrorResponse::internal("x").for_channel("");
        assert!(error.write(&mut Vec::new()).is_err());
    }

    #[test]
    fn oversized_frame_becomes_a_frame_too_large_response_with_both_sizes() {
        let error = DecodeError::FrameTooLarge {
            frame_bytes: 1_195_725_860,
            max_frame_bytes: 16_777_216,
        };
        let response = error.to_error_response();
        assert_eq!(response.code, ErrorCode::FrameTooLarge);
        assert_eq!(response.field(fields::FRAME_BYTES), Some(1_195_725_860));
        assert_eq!(response.field(fields::MAX_FRAME_BYTES), Some(16_777_216));
    }

    #[test]
    fn malformed_frame_becomes_a_protocol_violation_naming_the_field() {
        let error = DecodeError::Malformed {
            frame_type: FrameType::Take,
            request_id: RequestId(9),
            problem: Malformation::Truncated { field: "wait_ms" },
        };
        let response = error.to_error_response();
        assert_eq!(response.code, ErrorCode::ProtocolViolation);
        assert!(response.message.contains("wait_ms"), "{}", response.message);
        assert!(response.message.contains("Take"), "{}", response.message);
        assert_eq!(error.request_id(), Some(RequestId(9)));
    }
}
