//! Sequential reads of one segment through a buffer of [`SCAN_CHUNK_BYTES`], asking the
//! system to read ahead, and the record checks every reader of a whole segment makes:
//! recovery's replay and the read-only scans of `inspect` (which must see records
//! exactly as recovery does, so both use this).

use std::io;
use std::sync::Arc;

use crate::record::{
    decode_record, peek_record_bytes, RecordError, RecordHeader, MAX_RECORD_BYTES,
    RECORD_HEADER_BYTES,
};
use crate::storage::StorageFile;

/// Bytes read from a segment at a time.
const SCAN_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Chunks asked of the kernel ahead of the one being parsed, so reading and parsing
/// overlap.
const PREFETCH_CHUNKS: usize = 4;
/// Bytes of a record's length field, the first thing a record holds.
const LENGTH_FIELD_BYTES: usize = 4;

/// What the bytes at an offset of a segment are, by the record checks (length, CRC,
/// header fields); payloads are not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordProbe {
    /// A record that passes its checks; its payload follows the header.
    Valid(RecordHeader),
    /// A zero length field, or fewer bytes than a length field before the end of the
    /// file, all zero: the end of the written data.
    EndOfData,
    /// Fewer bytes than a record header before the end of the file, not all zero.
    PartialHeader {
        /// The bytes left.
        available_bytes: usize,
    },
    /// A length field no record can have.
    ImpossibleLength(u32),
    /// A record that fails its checks.
    Invalid(RecordError),
}

/// Buffered positional reads of a segment.
pub(crate) struct ChunkReader {
    file: Arc<dyn StorageFile>,
    pub(crate) file_len: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
}

impl ChunkReader {
    pub(crate) fn new(file: Arc<dyn StorageFile>, file_len: u64) -> Self {
        ChunkReader {
            file,
            file_len,
            buffer: Vec::new(),
            buffer_start: 0,
        }
    }

    /// Up to `wanted` bytes at `offset` (fewer only at the end of the file).
    pub(crate) fn bytes_at(&mut self, offset: u64, wanted: usize) -> io::Result<&[u8]> {
        let available = self.file_len.saturating_sub(offset).min(wanted as u64) as usize;
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if offset < self.buffer_start || offset + available as u64 > buffer_end {
            let read_len = self
                .file_len
                .saturating_sub(offset)
                .min(SCAN_CHUNK_BYTES.max(available) as u64) as usize;
            self.buffer.resize(read_len, 0);
            self.file.read_exact_at(&mut self.buffer, offset)?;
            self.buffer_start = offset;
            // Let the disk fetch what comes next while this chunk is parsed.
            let next = offset + read_len as u64;
            if next < self.file_len {
                self.file
                    .prefetch(next, (SCAN_CHUNK_BYTES * PREFETCH_CHUNKS) as u64);
            }
        }
        let start = (offset - self.buffer_start) as usize;
        Ok(&self.buffer[start..start + available])
    }

    /// The payload of the valid record `header` at `offset` (see [`Self::probe_record`]).
    pub(crate) fn payload_at(&mut self, offset: u64, header: &RecordHeader) -> io::Result<&[u8]> {
        self.bytes_at(
            offset + RECORD_HEADER_BYTES as u64,
            header.record_bytes as usize - RECORD_HEADER_BYTES,
        )
    }

    /// Checks the record at `offset` of segment `segment_id`.
    pub(crate) fn probe_record(&mut self, offset: u64, segment_id: u32) -> io::Result<RecordProbe> {
        let head = self.bytes_at(offset, RECORD_HEADER_BYTES)?;
        let record_bytes = match peek_record_bytes(head) {
            None if head.iter().all(|&byte| byte == 0) => return Ok(RecordProbe::EndOfData),
            None => {
                return Ok(RecordProbe::PartialHeader {
                    available_bytes: head.len(),
                })
            }
            Some(0) => return Ok(RecordProbe::EndOfData),
            Some(length) => length,
        };
        if (record_bytes as usize) < RECORD_HEADER_BYTES || record_bytes > MAX_RECORD_BYTES {
            return Ok(RecordProbe::ImpossibleLength(record_bytes));
        }
        let bytes = self.bytes_at(offset, record_bytes as usize)?;
        Ok(match decode_record(bytes, segment_id) {
            Ok((header, _)) => RecordProbe::Valid(header),
            Err(error) => RecordProbe::Invalid(error),
        })
    }

    /// The offset of the first non-zero byte at or after `offset`, if any.
    pub(crate) fn first_nonzero_at_or_after(&mut self, mut offset: u64) -> io::Result<Option<u64>> {
        while offset < self.file_len {
            let chunk = self.bytes_at(offset, SCAN_CHUNK_BYTES)?;
            if let Some(position) = chunk.iter().position(|&byte| byte != 0) {
                return Ok(Some(offset + position as u64));
            }
            offset += chunk.len() as u64;
        }
        Ok(None)
    }

    /// The first valid record at or after `start` that `accept` (given its header and
    /// payload) accepts, with its offset. Every byte position is tried: a damaged length
    /// field says nothing about where the next record starts.
    pub(crate) fn next_record_at_or_after(
        &mut self,
        start: u64,
        segment_id: u32,
        mut accept: impl FnMut(&RecordHeader, &[u8]) -> bool,
    ) -> io::Result<Option<(u64, RecordHeader)>> {
        let mut position = start;
        while position + RECORD_HEADER_BYTES as u64 <= self.file_len {
            let Some(next_nonzero) = self.first_nonzero_at_or_after(position)? else {
                break;
            };
            position = next_nonzero;
            let head = self.bytes_at(position, LENGTH_FIELD_BYTES)?;
            let plausible = peek_record_bytes(head).is_some_and(|length| {
                length as usize >= RECORD_HEADER_BYTES
                    && length <= MAX_RECORD_BYTES
                    && position + u64::from(length) <= self.file_len
            });
            if plausible {
                if let RecordProbe::Valid(header) = self.probe_record(position, segment_id)? {
                    if accept(&header, self.payload_at(position, &header)?) {
                        return Ok(Some((position, header)));
                    }
                }
            }
            position += 1;
        }
        Ok(None)
    }
}
