//! Errors of the codec's building blocks: what is wrong inside a received payload
//! ([`Malformation`]) and what cannot be put on the wire ([`EncodeError`]). What can be
//! wrong with a received stream as a whole is `DecodeError` (`decode_error`).

use thiserror::Error;

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
