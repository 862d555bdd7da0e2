//! The frame envelope: the magic preamble, the 9-byte frame header, frame types and request
//! ids, and the internal writer that lays a frame into an [`OutputBuffer`].
//!
//! ```text
//! preamble (first bytes of each direction only)
//! +------+------+------+------+
//! | 0x89 | 'M'  | 'R'  | 'C'  |
//! +------+------+------+------+
//!
//! every frame
//! +---------------------------+------------+---------------------------+-----------------+
//! | length: u32 LE            | type: u8   | request_id: u32 LE        | payload         |
//! | bytes after this field    |            | echoed by the response    | length - 5 bytes|
//! +---------------------------+------------+---------------------------+-----------------+
//! ```
//!
//! DO NOT reorder or resize these fields: the handshake frames must stay readable by every
//! protocol version, so the header layout is frozen.

use std::fmt;

use crate::error::EncodeError;
use crate::wire::{put_u32, put_u8, OutputBuffer};

/// The first four bytes each side sends on a new connection.
///
/// `0x89` first, as in PNG's signature: its high bit is set, so no text protocol (HTTP,
/// SMTP, Redis, a `telnet` user) starts with it; it is not a TLS record type
/// (`0x14..=0x17`); and it is a UTF-8 continuation byte, so it cannot start valid UTF-8
/// text either. A peer whose first byte differs is certainly not a Millrace peer, and the
/// decoder can tell at once. `MRC` (Millrace) makes the magic readable in a hex dump.
pub const MAGIC: [u8; 4] = [0x89, b'M', b'R', b'C'];

/// Bytes of the length prefix in front of every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;
/// Bytes of the frame type.
pub const FRAME_TYPE_BYTES: usize = 1;
/// Bytes of the request id.
pub const REQUEST_ID_BYTES: usize = 4;
/// Bytes of the whole frame header: length prefix, frame type, request id.
pub const FRAME_HEADER_BYTES: usize = LENGTH_PREFIX_BYTES + FRAME_TYPE_BYTES + REQUEST_ID_BYTES;

/// Identifies a request on a connection. The client picks it (counting up from 1 is the
/// convention); the server copies it into the response, so a pipelining client can check
/// that responses arrive in the order it sent the requests.
///
/// The server uses [`RequestId::CONNECTION`] (0) for an error that is not the answer to a
/// request it could read, such as a handshake rejection for too many connections or an
/// unreadable frame header, so clients should not use 0 themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RequestId(pub u32);

impl RequestId {
    /// The id of errors that answer no particular request.
    pub const CONNECTION: RequestId = RequestId(0);

    /// The id after this one, skipping [`RequestId::CONNECTION`] when it wraps.
    pub fn next(self) -> RequestId {
        match self.0.wrapping_add(1) {
            0 => RequestId(1),
            next => RequestId(next),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The frame type byte. Requests (client to server) use `0x01..=0x7F`, responses (server to
/// client) `0x80..=0xFF`, so a frame sent the wrong way is caught by its type alone.
///
/// DO NOT renumber: these values are on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Client handshake (always preceded by [`MAGIC`]).
    Hello = 0x01,
    /// Liveness check; answered with `Pong`.
    Ping = 0x02,
    /// Opens the connection's transaction on a channel.
    Begin = 0x03,
    /// Adds events to the open transaction.
    Put = 0x04,
    /// Takes events inside the open transaction.
    Take = 0x05,
    /// Commits the open transaction.
    Commit = 0x06,
    /// Rolls the open transaction back.
    Rollback = 0x07,
    /// Begin, put and commit in one frame.
    PutCommit = 0x08,
    /// Asks for a channel's counters.
    Stats = 0x09,
    /// Asks for a checkpoint of a channel now.
    Checkpoint = 0x0A,
    /// Plans (and optionally executes) a replay of a channel's taken events.
    Replay = 0x0B,
    /// Asks for a live channel's inspect report.
    Inspect = 0x0C,
    /// An adapter's source or sink counters, for the server's metrics.
    ReportCounters = 0x0D,
    /// Asks for copies of the events at a channel's head, without taking them.
    Peek = 0x0E,

    /// A failed request, or a rejected handshake (then preceded by [`MAGIC`]).
    Error = 0x80,
    /// Server handshake (always preceded by [`MAGIC`]).
    HelloAccepted = 0x81,
    /// Success with nothing to return.
    Ok = 0x82,
    /// Events returned by a `Take`.
    Events = 0x83,
    /// Counters returned by `Stats`.
    StatsReply = 0x84,
    /// Answer to `Ping`.
    Pong = 0x85,
    /// A replay's plan (and outcome) returned by `Replay`.
    ReplayReport = 0x86,
    /// A live channel's report returned by `Inspect`.
    InspectReport = 0x87,
}

impl FrameType {
    /// The frame type for a type byte, if this protocol version defines it.
    pub fn from_byte(byte: u8) -> Option<FrameType> {
        Some(match byte {
            0x01 => FrameType::Hello,
            0x02 => FrameType::Ping,
            0x03 => FrameType::Begin,
            0x04 => FrameType::Put,
            0x05 => FrameType::Take,
            0x06 => FrameType::Commit,
            0x07 => FrameType::Rollback,
            0x08 => FrameType::PutCommit,
            0x09 => FrameType::Stats,
            0x0A => FrameType::Checkpoint,
            0x0B => FrameType::Replay,
            0x0C => FrameType::Inspect,
            0x0D => FrameType::ReportCounters,
            0x0E => FrameType::Peek,
            0x80 => FrameType::Error,
            0x81 => FrameType::HelloAccepted,
            0x82 => FrameType::Ok,
            0x83 => FrameType::Events,
            0x84 => FrameType::StatsReply,
            0x85 => FrameType::Pong,
            0x86 => FrameType::ReplayReport,
            0x87 => FrameType::InspectReport,
            _ => return None,
        })
    }

    /// The type byte on the wire.
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    /// True for frames a client sends.
    pub fn is_request(self) -> bool {
        self.as_byte() < 0x80
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Lays one frame into an output buffer: writes the header with a placeholder length,
/// lets the caller append the payload, then patches the length on [`finish`](Self::finish).
///
/// Dropping the writer without finishing (an encode error part-way) cuts the buffer back
/// to where it was, so the buffer never holds half a frame.
pub(crate) struct FrameWriter<'o, O: OutputBuffer + ?Sized> {
    out: &'o mut O,
    /// Buffer length before anything was written (before the preamble, if any).
    rollback_bytes: usize,
    /// Offset of the length prefix.
    frame_start: usize,
    max_frame_bytes: u32,
    finished: bool,
}

impl<'o, O: OutputBuffer + ?Sized> FrameWriter<'o, O> {
    /// Starts a frame. With `with_preamble`, [`MAGIC`] is written first; it does not count
    /// towards the frame's size.
    pub(crate) fn start(
        out: &'o mut O,
        frame_type: FrameType,
        request_id: RequestId,
        with_preamble: bool,
        max_frame_bytes: u32,
    ) -> Self {
        let rollback_bytes = out.filled_bytes();
        if with_preamble {
            out.append_bytes(&MAGIC);
        }
        let frame_start = out.filled_bytes();
        put_u32(out, 0);
        put_u8(out, frame_type.as_byte());
        put_u32(out, request_id.0);
        FrameWriter {
            out,
            rollback_bytes,
            frame_start,
            max_frame_bytes,
            finished: false,
        }
    }

    pub(crate) fn out(&mut self) -> &mut O {
        self.out
    }

    /// Bytes of the frame so far, length prefix included.
    pub(crate) fn frame_bytes(&self) -> usize {
        self.out.filled_bytes() - self.frame_start
    }

    pub(crate) fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// Offset in the buffer of the first payload byte.
    pub(crate) fn payload_start(&self) -> usize {
        self.frame_start + FRAME_HEADER_BYTES
    }

    /// Checks the frame against the limit and patches its length prefix. Returns the
    /// bytes appended to the buffer, preamble included.
    pub(crate) fn finish(mut self) -> Result<usize, EncodeError> {
        let frame_bytes = self.frame_bytes();
        if frame_bytes as u64 > u64::from(self.max_frame_bytes) {
            return Err(EncodeError::FrameTooLarge {
                frame_bytes: frame_bytes as u64,
                max_frame_bytes: self.max_frame_bytes,
            });
        }
        // max_frame_bytes is a u32, so the length after the prefix fits one as well.
        let length_prefix = (frame_bytes - LENGTH_PREFIX_BYTES) as u32;
        self.out
            .overwrite_bytes(self.frame_start, &length_prefix.to_le_bytes());
        self.finished = true;
        Ok(self.out.filled_bytes() - self.rollback_bytes)
    }
}

impl<O: OutputBuffer + ?Sized> Drop for FrameWriter<'_, O> {
    fn drop(&mut self) {
        if !self.finished {
            self.out.cut_to(self.rollback_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_type_survives_its_byte() {
        for byte in 0..=u8::MAX {
            if let Some(frame_type) = FrameType::from_byte(byte) {
                assert_eq!(frame_type.as_byte(), byte);
                assert_eq!(frame_type.is_request(), byte < 0x80);
            }
        }
    }

    #[test]
    fn magic_cannot_be_mistaken_for_text_or_tls() {
        assert!(MAGIC[0] >= 0x80, "high bit set: not ASCII");
        assert!(!(0x14..=0x17).contains(&MAGIC[0]), "not a TLS record type");
        const UTF8_CONTINUATION_MASK: u8 = 0b1100_0000;
        const UTF8_CONTINUATION_BITS: u8 = 0b1000_0000;
        assert_eq!(
            MAGIC[0] & UTF8_CONTINUATION_MASK,
            UTF8_CONTINUATION_BITS,
            "a UTF-8 continuation byte cannot start text"
        );
    }

    #[test]
    fn request_ids_skip_the_connection_id_when_they_wrap() {
        assert_eq!(RequestId(7).next(), RequestId(8));
        assert_eq!(RequestId(u32::MAX).next(), RequestId(1));
    }

    #[test]
    fn finished_frame_has_its_length_patched() {
        let mut out = vec![0xEE];
        let mut writer = FrameWriter::start(&mut out, FrameType::Ping, RequestId(3), false, 64);
        writer.out().append_bytes(&[1, 2]);
        assert_eq!(writer.finish(), Ok(FRAME_HEADER_BYTES + 2));
        assert_eq!(out, [0xEE, 7, 0, 0, 0, 0x02, 3, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn oversized_frame_is_refused_and_leaves_the_buffer_as_it_was() {
        let mut out = vec![0xEE];
        let mut writer = FrameWriter::start(&mut out, FrameType::Put, RequestId(3), true, 12);
        writer.out().append_bytes(&[0; 4]);
        assert_eq!(
            writer.finish(),
            Err(EncodeError::FrameTooLarge {
                frame_bytes: 13,
                max_frame_bytes: 12
            })
        );
        assert_eq!(out, [0xEE]);
    }
}
