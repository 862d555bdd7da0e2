//! `compression-type = deflate` as Flume does it, and the two byte pipelines of a
//! connection built on it ([`Inbound`], [`Outbound`]).
//!
//! Flume puts Netty's `JZlibEncoder`/`JZlibDecoder` outside the frame codec: **one zlib
//! stream per connection per direction** (RFC 1950 wrapper, window 15), each outgoing
//! frame compressed and flushed with `Z_SYNC_FLUSH` so the peer can decode it at once;
//! the stream is only finished when the connection closes. The serial, count and lengths
//! are compressed too. The first bytes from a compressing peer are the zlib header,
//! `78 9c` at level 6.
//!
//! ```text
//! socket bytes -> [inflate, at most max_frame_bytes undecoded] -> FrameDecoder -> frames
//! frames -> [deflate, Z_SYNC_FLUSH per frame] -> socket bytes
//! ```
//!
//! Decompression bombs: the inflater stops when the inflated bytes waiting to be decoded
//! reach [`FrameLimits::max_frame_bytes`]. Since the frame decoder refuses any frame
//! larger than that as soon as its lengths are read, a connection never holds more than
//! one frame's worth of inflated bytes, whatever the compression ratio; compressed input
//! that cannot be inflated yet stays where it is until frames are taken out.

use bytes::BytesMut;
use flate2::{Compress, Compression as Level, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

use crate::framing::{FrameDecoder, FrameError, NettyFrame};
use crate::limits::FrameLimits;

/// Flume's avro source compresses at this level; it is also the sink's default
/// (`compression-level`).
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;
/// The highest zlib level.
pub const MAX_COMPRESSION_LEVEL: u32 = 9;
/// How much output room to offer zlib per call while inflating.
const INFLATE_CHUNK_BYTES: usize = 64 * 1024;
/// Extra output room per deflate call beyond the input's size (zlib's worst case adds a
/// few bytes per 16 KiB block plus the flush marker).
const DEFLATE_SLACK_BYTES: usize = 64;

/// Whether a connection's bytes are zlib-compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Frames go on the wire as they are (`compression-type = none`, the default).
    None,
    /// One zlib stream per direction (`compression-type = deflate`); `level` is used for
    /// what this side sends.
    Deflate {
        /// 0 to 9.
        level: u32,
    },
}

/// What went wrong in a zlib stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompressionError {
    /// A level outside 0 to 9.
    #[error("compression level {level} is outside 0 to {MAX_COMPRESSION_LEVEL}")]
    InvalidLevel {
        /// The level asked for.
        level: u32,
    },
    /// The peer's bytes are not a valid zlib stream (for example: the peer does not
    /// compress, or compresses with another wrapper).
    #[error(
        "the peer's zlib stream is corrupt (is compression-type the same at both ends?): {problem}"
    )]
    Corrupt {
        /// zlib's message.
        problem: String,
    },
    /// Bytes after the end of the peer's zlib stream.
    #[error(
        "bytes arrived after the peer finished its zlib stream at compressed byte {stream_bytes}"
    )]
    AfterStreamEnd {
        /// The length of the finished stream.
        stream_bytes: u64,
    },
    /// Compressing failed (zlib refused our own input; never expected).
    #[error("compressing a frame failed: {problem}")]
    Deflate {
        /// zlib's message.
        problem: String,
    },
}

/// The compressing half: one zlib stream for everything this side sends.
#[derive(Debug)]
pub struct Deflater {
    stream: Compress,
}

impl Deflater {
    /// A new stream at `level` (0 to 9), zlib wrapper.
    pub fn new(level: u32) -> Result<Self, CompressionError> {
        if level > MAX_COMPRESSION_LEVEL {
            return Err(CompressionError::InvalidLevel { level });
        }
        Ok(Deflater {
            stream: Compress::new(Level::new(level), true),
        })
    }

    /// Compresses `frame` and flushes (`Z_SYNC_FLUSH`), appending to `out`: the peer can
    /// inflate the whole frame from what was appended.
    pub fn compress_frame(
        &mut self,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        let mut consumed = 0;
        loop {
            out.reserve(frame.len() - consumed + DEFLATE_SLACK_BYTES);
            let before_in = self.stream.total_in();
            self.stream
                .compress_vec(&frame[consumed..], out, FlushCompress::Sync)
                .map_err(|error| CompressionError::Deflate {
                    problem: error.to_string(),
                })?;
            consumed += (self.stream.total_in() - before_in) as usize;
            // Done when all input is in and zlib did not fill the room it was given (so
            // the flush is complete).
            if consumed == frame.len() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

/// The inflating half: one zlib stream for everything the peer sends.
#[derive(Debug)]
pub struct Inflater {
    stream: Decompress,
    /// The peer finished its stream (it only does so when closing).
    finished: bool,
    /// The last call filled all the room it was given, so zlib may hold more output.
    may_hold_output: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            stream: Decompress::new(true),
            finished: false,
            may_hold_output: false,
        }
    }
}

impl Inflater {
    /// Inflates from the front of `input` into `out` until `out` holds `max_out_bytes`
    /// or zlib has nothing more to give without more input; removes what it consumed
    /// from `input`. Safe to call again with nothing new (it finishes what the last call
    /// had no room for).
    pub fn inflate(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        max_out_bytes: usize,
    ) -> Result<(), CompressionError> {
        loop {
            if out.len() >= max_out_bytes || (input.is_empty() && !self.may_hold_output) {
                return Ok(());
            }
            if self.finished {
                return match input.len() {
                    0 => Ok(()),
                    _ => Err(CompressionError::AfterStreamEnd {
                        stream_bytes: self.stream.total_in(),
                    }),
                };
            }
            let room = (max_out_bytes - out.len()).min(INFLATE_CHUNK_BYTES);
            let start = out.len();
            out.resize(start + room, 0);
            let (before_in, before_out) = (self.stream.total_in(), self.stream.total_out());
            let status = self
                .stream
                .decompress(input, &mut out[start..], FlushDecompress::None)
                .map_err(|error| CompressionError::Corrupt {
                    problem: error.to_string(),
                });
            let consumed = (self.stream.total_in() - before_in) as usize;
            let produced = (self.stream.total_out() - before_out) as usize;
            out.truncate(start + produced);
            let _ = input.split_to(consumed);
            // zlib may keep inflated bytes back when the room ran out: ask again even
            // without new input.
            self.may_hold_output = produced == room;
            match status? {
                Status::StreamEnd => self.finished = true,
                Status::Ok | Status::BufError if consumed == 0 && produced == 0 => return Ok(()),
                Status::Ok | Status::BufError => {}
            }
        }
    }
}

/// Why received bytes cannot be turned into frames.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InboundError {
    /// The framing is wrong.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The zlib stream is wrong.
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

/// Everything one connection receives: optional inflation, then framing.
///
/// Read socket bytes into [`read_buffer`](Self::read_buffer) (no more than a read's
/// worth at a time), then call [`next_frame`](Self::next_frame) until it returns `None`.
/// Memory stays bounded: at most `max_frame_bytes` of frame bytes plus what one read
/// brought.
#[derive(Debug)]
pub struct Inbound {
    inflater: Option<Inflater>,
    /// A zlib fault, reported once the frames inflated before it are taken.
    inflate_error: Option<CompressionError>,
    compressed: BytesMut,
    plain: BytesMut,
    decoder: FrameDecoder,
}

impl Inbound {
    /// A pipeline for a new connection.
    pub fn new(limits: FrameLimits, compression: Compression) -> Self {
        Inbound {
            inflater: matches!(compression, Compression::Deflate { .. }).then(Inflater::default),
            inflate_error: None,
            compressed: BytesMut::new(),
            plain: BytesMut::new(),
            decoder: FrameDecoder::new(limits),
        }
    }

    /// Where bytes read from the socket go.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        if self.inflater.is_some() {
            &mut self.compressed
        } else {
            &mut self.plain
        }
    }

    /// Whether bytes of an unfinished frame (or compressed input) are held: a peer that
    /// closes now cut a frame short.
    pub fn has_partial_frame(&self) -> bool {
        !self.plain.is_empty() || !self.compressed.is_empty()
    }

    /// The next complete frame, or `None` until more bytes are read. Frames that arrived
    /// before a fault in the stream are all delivered before the fault is reported, so
    /// the result does not depend on how the stream was cut into reads.
    pub fn next_frame(&mut self) -> Result<Option<NettyFrame>, InboundError> {
        if let Some(frame) = self.decoder.decode(&mut self.plain)? {
            return Ok(Some(frame));
        }
        if let Some(inflater) = &mut self.inflater {
            if self.inflate_error.is_none() {
                let max_frame_bytes = self.decoder.limits().max_frame_bytes;
                if let Err(error) =
                    inflater.inflate(&mut self.compressed, &mut self.plain, max_frame_bytes)
                {
                    self.inflate_error = Some(error);
                }
                if let Some(frame) = self.decoder.decode(&mut self.plain)? {
                    return Ok(Some(frame));
                }
            }
            if let Some(error) = &self.inflate_error {
                return Err(error.clone().into());
            }
        }
        Ok(None)
    }
}

/// Everything one connection sends: framed bytes, deflated when asked.
#[derive(Debug)]
pub struct Outbound {
    deflater: Option<Deflater>,
    wire: Vec<u8>,
}

impl Outbound {
    /// A pipeline for a new connection.
    pub fn new(compression: Compression) -> Result<Self, CompressionError> {
        let deflater = match compression {
            Compression::None => None,
            Compression::Deflate { level } => Some(Deflater::new(level)?),
        };
        Ok(Outbound {
            deflater,
            wire: Vec::new(),
        })
    }

    /// The bytes to write for `frames` (one or more whole frames): `frames` itself
    /// without compression, else their deflated, flushed form.
    pub fn wire_bytes<'a>(&'a mut self, frames: &'a [u8]) -> Result<&'a [u8], CompressionError> {
        match &mut self.deflater {
            None => Ok(frames),
            Some(deflater) => {
                self.wire.clear();
                deflater.compress_frame(frames, &mut self.wire)?;
                Ok(&self.wire)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::framing::encode_frame;

    #[test]
    fn each_frame_is_flushed_so_the_peer_inflates_it_at_once() {
        let mut outbound = Outbound::new(Compression::Deflate { level: 6 }).unwrap();
        let mut inbound = Inbound::new(FrameLimits::default(), Compression::Deflate { level: 6 });
        for serial in 1..=3 {
            let mut frame = Vec::new();
            encode_frame(serial, &[b"hello hello hello", b"world"], &mut frame).unwrap();
            let wire = outbound.wire_bytes(&frame).unwrap().to_vec();
            if serial == 1 {
                assert_eq!(&wire[..2], [0x78, 0x9c], "the zlib header of level 6");
            }
            assert_eq!(
                &wire[wire.len() - 4..],
                [0x00, 0x00, 0xff, 0xff],
                "a sync flush marker"
            );
            inbound.read_buffer().extend_from_slice(&wire);
            let decoded = inbound.next_frame().unwrap().unwrap();
            assert_eq!(
                (decoded.serial, &decoded.message[..]),
                (serial, &b"hello hello helloworld"[..])
            );
            assert_eq!(inbound.next_frame().unwrap(), None);
        }
    }

    #[test]
    fn a_decompression_bomb_never_inflates_past_the_frame_limit() {
        // 64 MiB of zeros compress to about 64 KiB.
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Level::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        let limits = FrameLimits {
            max_frame_bytes: 1 << 20,
            ..FrameLimits::default()
        };
        let mut inbound = Inbound::new(limits, Compression::Deflate { level: 6 });
        inbound.read_buffer().extend_from_slice(&bomb);
        // Zeros read as serial 0 and a buffer count of 0: refused at once.
        assert_eq!(
            inbound.next_frame(),
            Err(InboundError::Frame(FrameError::NoBuffers { serial: 0 }))
        );
        assert!(inbound.plain.len() <= limits.max_frame_bytes);
        assert!(
            !inbound.compressed.is_empty(),
            "the rest of the bomb was never inflated"
        );
    }

    #[test]
    fn inflation_stops_at_the_cap_and_resumes_as_frames_are_taken() {
        let mut outbound = Outbound::new(Compression::Deflate { level: 1 }).unwrap();
        let mut frames = Vec::new();
        for serial in 0..100 {
            encode_frame(serial, &[&[7u8; 1000]], &mut frames).unwrap();
        }
        let wire = outbound.wire_bytes(&frames).unwrap().to_vec();
        let limits = FrameLimits {
            max_frame_bytes: 4096,
            ..FrameLimits::default()
        };
        let mut inbound = Inbound::new(limits, Compression::Deflate { level: 6 });
        inbound.read_buffer().extend_from_slice(&wire);
        for serial in 0..100 {
            let frame = inbound.next_frame().unwrap().unwrap();
            assert_eq!(frame.serial, serial);
            assert!(inbound.plain.len() <= limits.max_frame_bytes);
        }
        assert_eq!(inbound.next_frame().unwrap(), None);
    }

    /// Decodes a deflated stream fed in pieces of `piece_bytes`: the frames' serials and
    /// the error that ended it.
    fn decode_in_pieces(wire: &[u8], piece_bytes: usize) -> (Vec<i32>, Option<InboundError>) {
        let mut inbound = Inbound::new(FrameLimits::default(), Compression::Deflate { level: 6 });
        let mut frames = Vec::new();
        for piece in wire.chunks(piece_bytes) {
            inbound.read_buffer().extend_from_slice(piece);
            loop {
                match inbound.next_frame() {
                    Ok(Some(frame)) => frames.push(frame.serial),
                    Ok(None) => break,
                    Err(error) => return (frames, Some(error)),
                }
            }
        }
        (frames, None)
    }

    fn one_frame(serial: i32) -> Vec<u8> {
        let mut frame = Vec::new();
        encode_frame(serial, &[b"before the fault"], &mut frame).unwrap();
        frame
    }

    #[test]
    fn frames_before_a_fault_in_the_zlib_stream_are_delivered_however_the_stream_is_cut() {
        let mut wire = Outbound::new(Compression::Deflate { level: 6 })
            .unwrap()
            .wire_bytes(&one_frame(1))
            .unwrap()
            .to_vec();
        // A deflate block header with the reserved block type 3: invalid.
        wire.extend_from_slice(&[0x07, 0xff, 0xff, 0xff]);
        let whole = decode_in_pieces(&wire, wire.len());
        assert_eq!(whole.0, [1]);
        assert!(
            matches!(
                whole.1,
                Some(InboundError::Compression(CompressionError::Corrupt { .. }))
            ),
            "{:?}",
            whole.1
        );
        assert_eq!(decode_in_pieces(&wire, 1), whole);
    }

    #[test]
    fn bytes_after_a_finished_zlib_stream_are_the_same_error_however_the_stream_is_cut() {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Level::new(6));
        encoder.write_all(&one_frame(4)).unwrap();
        let mut wire = encoder.finish().unwrap();
        let stream_bytes = wire.len() as u64;
        wire.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let whole = decode_in_pieces(&wire, wire.len());
        assert_eq!(
            whole,
            (
                vec![4],
                Some(InboundError::Compression(
                    CompressionError::AfterStreamEnd { stream_bytes }
                ))
            )
        );
        for piece_bytes in [1, 3, 7] {
            assert_eq!(
                decode_in_pieces(&wire, piece_bytes),
                whole,
                "pieces of {piece_bytes}"
            );
        }
    }

    #[test]
    fn uncompressed_bytes_on_a_deflate_connection_are_a_clear_error() {
        let mut inbound = Inbound::new(FrameLimits::default(), Compression::Deflate { level: 6 });
        let mut frame = Vec::new();
        encode_frame(1, &[b"x"], &mut frame).unwrap();
        inbound.read_buffer().extend_from_slice(&frame);
        assert!(matches!(
            inbound.next_frame(),
            Err(InboundError::Compression(CompressionError::Corrupt { .. }))
        ));
    }

    #[test]
    fn levels_above_nine_are_refused() {
        assert_eq!(
            Deflater::new(10).unwrap_err(),
            CompressionError::InvalidLevel { level: 10 }
        );
    }
}
