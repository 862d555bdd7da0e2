//! Errors of the codec itself: what can be wrong with received bytes ([`DecodeError`]) and
//! what cannot be put on the wire ([`EncodeError`]).
//!
//! These are distinct from [`ErrorResponse`], the error *frame* a server sends when a
//! request fails; [`DecodeError::to_error_response`] turns the first into the second.

use thiserror::Error;

use crate::error_response::ErrorResponse;
use crate::frame::{FrameType, RequestId, FRAME_TYPE_BYTES, REQUEST_ID_BYTES};
use crate::sniff::LooksLike;

/// Why received bytes cannot be decoded.
///
/// Every decode error is fatal for the connection: after it the byte stream cannot be
/// trusted to be in step with frame boundaries, so the decoder keeps returning the same
/// error. The server answers with [`to_error_response`](Self::to_error_response) (or, for
/// [`NotMillrace`](Self::NotMillrace), with [`LooksLike::hint_reply`]) and closes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The peer's first bytes are not the Millrace magic: it speaks another protocol
    /// (an HTTP request sent to the protocol port, a TLS client, a port scanner).
    /// `first_bytes` are the bytes that decided it, at most eight.
    #[error(
        "peer does not speak the Millrace protocol: its first bytes \"{}\" look like {looks_like}",
        .first_bytes.escape_ascii()
    )]
    NotMillrace {
        /// The protocol the first bytes resemble.
        looks_like: LooksLike,
        /// The bytes that decided it.
        first_bytes: Vec<u8>,
    },

    /// A length prefix announces a frame larger than the decoder's `max_frame_bytes`.
    /// Raised as soon as the four length bytes arrive, before any of the frame is
    /// buffered.
    #[error(
        "frame of {frame_bytes} bytes (length prefix included) exceeds max_frame_bytes \
         {max_frame_bytes}"
    )]
    FrameTooLarge {
        /// The size the length prefix announced, plus the prefix itself.
        frame_bytes: u64,
        /// The decoder's limit.
        max_frame_bytes: u32,
    },

    /// A client's first frame (its `Hello`, read before it is authenticated) announces
    /// more than the server's `max_hello_frame_bytes`. Raised as soon as the four length
    /// bytes arrive, so an unauthenticated peer never makes the server buffer more than
    /// a handshake needs.
    #[error(
        "first frame of {frame_bytes} bytes (length prefix included) exceeds the \
         {max_hello_frame_bytes} bytes a Hello may have before the client is authenticated"
    )]
    HelloTooLarge {
        /// The size the length prefix announced, plus the prefix itself.
        frame_bytes: u64,
        /// The decoder's limit for the first frame.
        max_hello_frame_bytes: u32,
    },

    /// A length prefix smaller than the frame type and request id that every frame has.
    #[error(
        "length prefix {length_prefix} is shorter than the {} bytes of frame type and \
         request id every frame carries",
        FRAME_TYPE_BYTES + REQUEST_ID_BYTES
    )]
    FrameTooShort {
        /// The length prefix received.
        length_prefix: u32,
    },

    /// A frame type byte this protocol version does not define.
    #[error("unknown frame type 0x{frame_type:02x} (request id {request_id})")]
    UnknownFrameType {
        /// The byte received.
        frame_type: u8,
        /// The frame's request id.
        request_id: RequestId,
    },

    /// A known frame type where it is not allowed: a response sent to the server, a
    /// request before the handshake, a second `Hello`, anything after a handshake
    /// rejection.
    #[error("unexpected {frame_type} frame (request id {request_id}): expected {expected}")]
    UnexpectedFrame {
        /// The frame type received.
        frame_type: FrameType,
        /// The frame's request id.
        request_id: RequestId,
        /// What the decoder expected instead.
        expected: &'static str,
    },

    /// A frame whose payload does not match its type's layout.
    #[error("malformed {frame_type} frame (request id {request_id}): {problem}")]
    Malformed {
        /// The frame type received.
        frame_type: FrameType,
        /// The frame's request id.
        request_id: RequestId,
        /// What is wrong with the payload.
        problem: Malformation,
    },
}

impl DecodeError {
    /// The request id of the frame that failed, when its header could be read.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            DecodeError::UnknownFrameType { request_id, .. }
            | DecodeError::UnexpectedFrame { request_id, .. }
            | DecodeError::Malformed { request_id, .. } => Some(*request_id),
            DecodeError::NotMillrace { .. }
            | DecodeError::FrameTooLarge { .. }
            | DecodeError::HelloTooLarge { .. }
            | DecodeError::FrameTooShort { .. } => None,
        }
    }

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

/// What is wrong inside a frame's payload. `field` names the field as `docs/protocol.md`
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Malformation {
    /// The payload ends inside this field, or a length inside it points past the end.
    #[error("{field} is cut short by the end of the frame")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A string field holds bytes that are not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The string field.
        field: &'static str,
    },
    /// Bytes left after the last field of the frame's layout.
    #[error("{trailing_bytes} bytes are left over after the last field")]
    TrailingBytes {
        /// How many.
        trailing_bytes: usize,
    },
    /// A field whose value is outside what the protocol allows.
    #[error("{field} is {value}, expected {expected}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value received.
        value: u64,
        /// What is allowed.
        expected: &'static str,
    },
}

/// Why a message cannot be encoded. The output buffer is left exactly as it was before the
/// call that failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The frame would be larger than the receiving peer accepts (its announced
    /// `max_frame_bytes`), or than a length prefix can describe.
    #[error(
        "frame of {frame_bytes} bytes would exceed the receiver's max_frame_bytes \
         {max_frame_bytes}"
    )]
    FrameTooLarge {
        /// The size the frame would have, length prefix included.
        frame_bytes: u64,
        /// The receiver's limit.
        max_frame_bytes: u32,
    },

    /// An event batch frame that already holds events has no room for the next one.
    /// Finish this frame and push the event into a new one (for a `Put`; a `PutCommit`
    /// must fit in one frame, so use `Begin`, several `Put`s and `Commit` instead).
    #[error(
        "batch frame is full: the next event needs {event_bytes} bytes but only \
         {remaining_bytes} of max_frame_bytes {max_frame_bytes} are left"
    )]
    BatchFull {
        /// Encoded size of the event that did not fit.
        event_bytes: u64,
        /// Room left in the frame.
        remaining_bytes: u64,
        /// The receiver's limit.
        max_frame_bytes: u32,
    },

    /// A string or body longer than its length field can describe.
    #[error("{field} is {len_bytes} bytes, longer than the {max_bytes} bytes the wire allows")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len_bytes: usize,
        /// The most its length field can describe.
        max_bytes: usize,
    },

    /// A list with more entries than its count field can describe.
    #[error("{field} has {count} entries, more than the {max_count} the wire allows")]
    TooManyEntries {
        /// The list.
        field: &'static str,
        /// Its length.
        count: usize,
        /// The most its count field can describe.
        max_count: usize,
    },

    /// A value the receiver would reject (an empty channel name, a take of zero events, a
    /// version range that is empty).
    #[error("{field} is {value}, expected {expected}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// What is allowed.
        expected: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_response::{fields, ErrorCode};

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

    #[test]
    fn not_millrace_message_shows_the_first_bytes_escaped() {
        let error = DecodeError::NotMillrace {
            looks_like: LooksLike::Tls,
            first_bytes: vec![0x16, 0x03],
        };
        assert_eq!(
            error.to_string(),
            "peer does not speak the Millrace protocol: its first bytes \"\\x16\\x03\" look like \
             a TLS handshake (the Millrace protocol is plain TCP)"
        );
    }
}
