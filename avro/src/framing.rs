//! Netty framing: how Avro's `NettyTransceiver` and `NettyServer` (Flume's avro sink and
//! source) cut a TCP stream into messages. This is not the Avro specification's "Message
//! Framing" (which ends a message with a zero-length buffer and has no serial).
//!
//! ```text
//! +--------------+-------------+-------------------+-------+-------------------+
//! | serial: i32  | count: i32  | length: i32       | bytes | length, bytes ... |
//! | (big-endian) | (buffers)   | (buffer 1, >= 0)  |       | (count buffers)   |
//! +--------------+-------------+-------------------+-------+-------------------+
//! ```
//!
//! All integers are signed 32-bit big-endian. A client picks the serial; the server
//! echoes it. The buffers are an arbitrary cut of one Avro message (Java cuts at 8 KiB,
//! and a value may straddle two buffers); only their concatenation means anything.
//!
//! [`FrameDecoder`] checks every number against [`FrameLimits`] the moment its four
//! bytes are there, before buffering on its account: a negative count or length, a
//! count of zero (Java would stall on it), too many buffers, a buffer or a frame too
//! large. It remembers how far it has scanned, so a frame arriving in many reads is
//! scanned once. A complete frame's buffers are joined in place in the caller's buffer
//! (one `memmove`, no allocation) and handed out as one [`Bytes`] that event bodies
//! then slice.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

use crate::limits::FrameLimits;

/// Bytes of each of the frame's integers.
const INT_BYTES: usize = 4;
/// Bytes before the first buffer's length: serial and count.
const FRAME_HEAD_BYTES: usize = 2 * INT_BYTES;

/// One frame: its serial and its buffers joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NettyFrame {
    /// The request's serial (echoed in the response).
    pub serial: i32,
    /// The Avro message: all buffers concatenated.
    pub message: Bytes,
}

/// Why a byte stream is not acceptable Netty framing. Every one is final: the stream is
/// out of step and the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A buffer count below zero.
    #[error("frame {serial} announces a negative buffer count {count}")]
    NegativeCount {
        /// The frame's serial.
        serial: i32,
        /// The count received.
        count: i32,
    },
    /// A buffer count of zero: no message at all (Java would wait forever on such a frame).
    #[error("frame {serial} announces no buffers")]
    NoBuffers {
        /// The frame's serial.
        serial: i32,
    },
    /// More buffers than the cap.
    #[error("frame {serial} announces {count} buffers, more than the limit {max_buffers}")]
    TooManyBuffers {
        /// The frame's serial.
        serial: i32,
        /// The count received.
        count: i32,
        /// The cap.
        max_buffers: usize,
    },
    /// A buffer length below zero.
    #[error("frame {serial}: buffer {buffer_index} has a negative length {length}")]
    NegativeLength {
        /// The frame's serial.
        serial: i32,
        /// Which buffer (from 0).
        buffer_index: usize,
        /// The length received.
        length: i32,
    },
    /// A buffer longer than the cap.
    #[error("frame {serial}: buffer {buffer_index} is {length_bytes} bytes, more than the limit {max_buffer_bytes}")]
    BufferTooLarge {
        /// The frame's serial.
        serial: i32,
        /// Which buffer (from 0).
        buffer_index: usize,
        /// The length received.
        length_bytes: usize,
        /// The cap.
        max_buffer_bytes: usize,
    },
    /// The frame would be larger on the wire than the cap.
    #[error("frame {serial} would take at least {frame_bytes} bytes, more than the limit {max_frame_bytes}")]
    FrameTooLarge {
        /// The frame's serial.
        serial: i32,
        /// Its size so far, with the buffer that crossed the cap.
        frame_bytes: usize,
        /// The cap.
        max_frame_bytes: usize,
    },
}

/// How far the decoder has scanned the frame at the front of the buffer.
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    /// The frame's serial and buffer count, once read.
    head: Option<(i32, usize)>,
    /// Buffers whose length has been read.
    buffers_seen: usize,
    /// Offset just past the last buffer whose length has been read (its bytes may not
    /// all be there yet).
    scanned_to: usize,
    /// Sum of the lengths read.
    message_bytes: usize,
}

/// Splits Netty frames off the front of a byte stream. Sans IO: it is handed the bytes
/// that have arrived and never reads or waits.
///
/// Contract: between calls the caller only appends to the buffer (the decoder removes
/// the frames it returns); the frames and the error do not depend on how the stream was
/// cut into reads. After an error it returns the same error forever.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: FrameLimits,
    scan: Scan,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder for a new connection.
    pub fn new(limits: FrameLimits) -> Self {
        FrameDecoder {
            limits,
            scan: Scan::default(),
            failed: None,
        }
    }

    /// The caps in force.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// Takes the next complete frame off the front of `buffer`; `None` when more bytes are
    /// needed. The frame's message shares `buffer`'s allocation.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<NettyFrame>, FrameError> {
        let Some((serial, frame_bytes)) = self.scan(buffer)? else {
            return Ok(None);
        };
        let message_bytes = self.scan.message_bytes;
        let buffers = self.scan.head.map_or(0, |(_, count)| count);
        self.scan = Scan::default();
        let mut frame = buffer.split_to(frame_bytes);
        if buffers == 1 {
            frame.advance(FRAME_HEAD_BYTES + INT_BYTES);
        } else {
            join_buffers_in_place(&mut frame, buffers);
        }
        debug_assert_eq!(frame.len(), message_bytes);
        Ok(Some(NettyFrame {
            serial,
            message: frame.freeze(),
        }))
    }

    /// Like [`decode`](Self::decode) but reads from a slice it does not consume: returns
    /// the frame (its message copied once) and how many bytes it took.
    pub fn decode_slice(
        &mut self,
        input: &[u8],
    ) -> Result<Option<(NettyFrame, usize)>, FrameError> {
        let Some((serial, frame_bytes)) = self.scan(input)? else {
            return Ok(None);
        };
        let buffers = self.scan.head.map_or(0, |(_, count)| count);
        self.scan = Scan::default();
        let mut frame = BytesMut::from(&input[..frame_bytes]);
        join_buffers_in_place(&mut frame, buffers);
        Ok(Some((
            NettyFrame {
                serial,
                message: frame.freeze(),
            },
            frame_bytes,
        )))
    }

    /// Scans as far as `input` allows; `Some((serial, frame_bytes))` once the frame at
    /// the front is complete.
    fn scan(&mut self, input: &[u8]) -> Result<Option<(i32, usize)>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.scan_unchecked(input);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn scan_unchecked(&mut self, input: &[u8]) -> Result<Option<(i32, usize)>, FrameError> {
        let limits = self.limits;
        let (serial, count) = match self.scan.head {
            Some(head) => head,
            None => {
                let (Some(serial), Some(count)) = (read_i32(input, 0), read_i32(input, INT_BYTES))
                else {
                    return Ok(None);
                };
                let count = match count {
                    ..0 => return Err(FrameError::NegativeCount { serial, count }),
                    0 => return Err(FrameError::NoBuffers { serial }),
                    count if count as usize > limits.max_buffers_per_frame => {
                        return Err(FrameError::TooManyBuffers {
                            serial,
                            count,
                            max_buffers: limits.max_buffers_per_frame,
                        })
                    }
                    count => count as usize,
                };
                let head_and_prefixes = FRAME_HEAD_BYTES + count * INT_BYTES;
                if head_and_prefixes > limits.max_frame_bytes {
                    return Err(FrameError::FrameTooLarge {
                        serial,
                        frame_bytes: head_and_prefixes,
                        max_frame_bytes: limits.max_frame_bytes,
                    });
                }
                self.scan = Scan {
                    head: Some((serial, count)),
                    buffers_seen: 0,
                    scanned_to: FRAME_HEAD_BYTES,
                    message_bytes: 0,
                };
                (serial, count)
            }
        };
        while self.scan.buffers_seen < count {
            let Some(length) = read_i32(input, self.scan.scanned_to) else {
                return Ok(None);
            };
            let buffer_index = self.scan.buffers_seen;
            if length < 0 {
                return Err(FrameError::NegativeLength {
                    serial,
                    buffer_index,
                    length,
                });
            }
            let length_bytes = length as usize;
            if length_bytes > limits.max_buffer_bytes {
                return Err(FrameError::BufferTooLarge {
                    serial,
                    buffer_index,
                    length_bytes,
                    max_buffer_bytes: limits.max_buffer_bytes,
                });
            }
            // The frame's size as far as known: head, all the length prefixes, the
            // buffers seen and this one.
            let frame_bytes =
                FRAME_HEAD_BYTES + count * INT_BYTES + self.scan.message_bytes + length_bytes;
            if frame_bytes > limits.max_frame_bytes {
                return Err(FrameError::FrameTooLarge {
                    serial,
                    frame_bytes,
                    max_frame_bytes: limits.max_frame_bytes,
                });
            }
            self.scan.buffers_seen += 1;
            self.scan.scanned_to += INT_BYTES + length_bytes;
            self.scan.message_bytes += length_bytes;
        }
        if input.len() < self.scan.scanned_to {
            return Ok(None);
        }
        Ok(Some((serial, self.scan.scanned_to)))
    }
}

fn read_i32(input: &[u8], offset: usize) -> Option<i32> {
    let bytes = input.get(offset..offset + INT_BYTES)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

/// Rewrites a whole frame (head, then `buffers` length-prefixed buffers) into its joined
/// message, moving each buffer down over the prefixes before it.
fn join_buffers_in_place(frame: &mut BytesMut, buffers: usize) {
    let mut read_at = FRAME_HEAD_BYTES;
    let mut write_at = 0;
    for _ in 0..buffers {
        let length = read_i32(frame, read_at).map_or(0, |length| length as usize);
        let start = read_at + INT_BYTES;
        frame.copy_within(start..start + length, write_at);
        write_at += length;
        read_at = start + length;
    }
    frame.truncate(write_at);
}

/// Why a frame cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameEncodeError {
    /// A buffer longer than a signed 32-bit length can say.
    #[error(
        "a frame buffer of {length_bytes} bytes is longer than Netty framing's i32 lengths allow"
    )]
    BufferTooLarge {
        /// The buffer's length.
        length_bytes: usize,
    },
}

/// Writes one frame into a `Vec`, buffer by buffer, patching the count and each length in
/// place when the buffer is closed, so nothing is copied twice.
#[derive(Debug)]
pub struct FrameWriter<'o> {
    out: &'o mut Vec<u8>,
    frame_start: usize,
    /// Offset of the open buffer's length prefix.
    buffer_start: usize,
    buffers: i32,
}

impl<'o> FrameWriter<'o> {
    /// Starts a frame with this serial and opens its first buffer.
    pub fn start(out: &'o mut Vec<u8>, serial: i32) -> Self {
        let frame_start = out.len();
        out.extend_from_slice(&serial.to_be_bytes());
        out.extend_from_slice(&[0; INT_BYTES]);
        let buffer_start = out.len();
        out.extend_from_slice(&[0; INT_BYTES]);
        FrameWriter {
            out,
            frame_start,
            buffer_start,
            buffers: 1,
        }
    }

    /// Where the open buffer's bytes go.
    pub fn out(&mut self) -> &mut Vec<u8> {
        self.out
    }

    fn close_buffer(&mut self) -> Result<(), FrameEncodeError> {
        let length_bytes = self.out.len() - self.buffer_start - INT_BYTES;
        let length = i32::try_from(length_bytes)
            .map_err(|_| FrameEncodeError::BufferTooLarge { length_bytes })?;
        self.out[self.buffer_start..self.buffer_start + INT_BYTES]
            .copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    /// Closes the open buffer and opens the next. On error the frame is left unfinished:
    /// [`abandon`](Self::abandon) it.
    pub fn next_buffer(&mut self) -> Result<(), FrameEncodeError> {
        self.close_buffer()?;
        self.buffer_start = self.out.len();
        self.out.extend_from_slice(&[0; INT_BYTES]);
        self.buffers += 1;
        Ok(())
    }

    /// Closes the last buffer and the frame. On error nothing of the frame stays in the
    /// output.
    pub fn finish(mut self) -> Result<(), FrameEncodeError> {
        if let Err(error) = self.close_buffer() {
            self.out.truncate(self.frame_start);
            return Err(error);
        }
        let count_at = self.frame_start + INT_BYTES;
        self.out[count_at..count_at + INT_BYTES].copy_from_slice(&self.buffers.to_be_bytes());
        Ok(())
    }

    /// Removes everything this writer wrote.
    pub fn abandon(self) {
        self.out.truncate(self.frame_start);
    }
}

/// Appends a frame with these buffers.
pub fn encode_frame(
    serial: i32,
    buffers: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), FrameEncodeError> {
    let mut writer = FrameWriter::start(out, serial);
    for (index, buffer) in buffers.iter().enumerate() {
        if index > 0 {
            if let Err(error) = writer.next_buffer() {
                writer.abandon();
                return Err(error);
            }
        }
        writer.out().extend_from_slice(buffer);
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_limits() -> FrameLimits {
        FrameLimits {
            max_frame_bytes: 64,
            max_buffers_per_frame: 4,
            max_buffer_bytes: 32,
        }
    }

    fn frame(serial: i32, buffers: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(serial, buffers, &mut out).unwrap();
        out
    }

    #[test]
    fn buffers_are_joined_and_the_serial_kept() {
        let bytes = frame(7, &[b"ab", b"", b"cde"]);
        assert_eq!(
            bytes,
            [
                &[0, 0, 0, 7, 0, 0, 0, 3][..],
                &[0, 0, 0, 2, b'a', b'b'],
                &[0, 0, 0, 0],
                &[0, 0, 0, 3, b'c', b'd', b'e']
            ]
            .concat()
        );
        let mut buffer = BytesMut::from(&bytes[..]);
        buffer.extend_from_slice(&frame(-1, &[b"z"]));
        let mut decoder = FrameDecoder::new(FrameLimits::default());
        let first = decoder.decode(&mut buffer).unwrap().unwrap();
        assert_eq!((first.serial, &first.message[..]), (7, &b"abcde"[..]));
        let second = decoder.decode(&mut buffer).unwrap().unwrap();
        assert_eq!((second.serial, &second.message[..]), (-1, &b"z"[..]));
        assert_eq!(decoder.decode(&mut buffer).unwrap(), None);
    }

    #[test]
    fn a_frame_arriving_byte_by_byte_decodes_once_complete() {
        let bytes = frame(3, &[b"hello", b"world"]);
        let mut decoder = FrameDecoder::new(FrameLimits::default());
        let mut buffer = BytesMut::new();
        for (index, byte) in bytes.iter().enumerate() {
            buffer.extend_from_slice(&[*byte]);
            let decoded = decoder.decode(&mut buffer).unwrap();
            assert_eq!(decoded.is_some(), index == bytes.len() - 1);
            if let Some(frame) = decoded {
                assert_eq!(&frame.message[..], b"helloworld");
            }
        }
    }

    #[test]
    fn hostile_numbers_are_refused_as_soon_as_they_arrive() {
        let cases: [(&[u8], FrameError); 6] = [
            (
                &[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
                FrameError::NegativeCount {
                    serial: 1,
                    count: -1,
                },
            ),
            (
                &[0, 0, 0, 1, 0, 0, 0, 0],
                FrameError::NoBuffers { serial: 1 },
            ),
            (
                &[0, 0, 0, 1, 0, 0, 0, 5],
                FrameError::TooManyBuffers {
                    serial: 1,
                    count: 5,
                    max_buffers: 4,
                },
            ),
            (
                &[0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0, 0, 0],
                FrameError::NegativeLength {
                    serial: 1,
                    buffer_index: 0,
                    length: i32::MIN,
                },
            ),
            (
                &[0, 0, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff],
                FrameError::BufferTooLarge {
                    serial: 1,
                    buffer_index: 0,
                    length_bytes: i32::MAX as usize,
                    max_buffer_bytes: 32,
                },
            ),
            (
                &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 30],
                FrameError::FrameTooLarge {
                    serial: 1,
                    frame_bytes: 46,
                    max_frame_bytes: 64,
                },
            ),
        ];
        for (input, expected) in cases {
            let mut decoder = FrameDecoder::new(small_limits());
            let mut buffer = BytesMut::from(input);
            let result = decoder.decode(&mut buffer);
            if let FrameError::FrameTooLarge { .. } = expected {
                // 46 bytes fit; the second buffer's 30 more do not.
                assert_eq!(result, Ok(None));
                buffer.extend_from_slice(&[0u8; 30]);
                buffer.extend_from_slice(&[0, 0, 0, 30]);
                assert_eq!(
                    decoder.decode(&mut buffer),
                    Err(FrameError::FrameTooLarge {
                        serial: 1,
                        frame_bytes: 76,
                        max_frame_bytes: 64
                    })
                );
                continue;
            }
            assert_eq!(result, Err(expected.clone()));
            assert_eq!(
                decoder.decode(&mut buffer),
                Err(expected),
                "errors are final"
            );
        }
    }

    #[test]
    fn slice_decoding_matches_buffer_decoding() {
        let bytes = [frame(1, &[b"a", b"bc"]), frame(2, &[b"d"])].concat();
        let mut decoder = FrameDecoder::new(FrameLimits::default());
        let (first, used) = decoder.decode_slice(&bytes).unwrap().unwrap();
        assert_eq!((first.serial, &first.message[..]), (1, &b"abc"[..]));
        let (second, _) = decoder.decode_slice(&bytes[used..]).unwrap().unwrap();
        assert_eq!((second.serial, &second.message[..]), (2, &b"d"[..]));
    }
}
