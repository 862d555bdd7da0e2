//! What can be wrong with received bytes ([`DecodeError`]).
//!
//! Distinct from `ErrorResponse`, the error *frame* a server sends when a request fails;
//! `DecodeError::to_error_response` (in `error_response`) turns the first into the
//! second.

use thiserror::Error;

use crate::error::Malformation;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
