//! The log's on-disk layout: segment header, record frame and record payloads.
//!
//! Constraints the layout serves:
//! - every byte that matters is covered by a CRC32C, and the segment id is folded into
//!   each record's CRC, so stale bytes in a reused or preallocated file never validate;
//! - the length is checked against [`MAX_RECORD_BYTES`] before anything is allocated;
//! - a zero length means end of data (preallocated space is zeros);
//! - the committing thread encodes records and computes the CRC of their bulk; the dir
//!   writer only stamps the write round and folds in 20 header bytes and the segment id,
//!   so the single writer thread never re-reads payload bytes.
//!
//! Everything is little-endian. See `docs/format.md` for the diagrams and the argument
//! for why the commit protocol is safe.
//!
//! ```text
//! segment file = SegmentHeader (128 bytes) | record | record | ... | zeros (preallocated)
//!
//! record:
//!   0  u32 record_bytes     whole record, header included; 0 = end of data
//!   4  u32 crc32c           over [16..record_bytes) ++ [0..4) ++ [8..16) ++ segment_id (u32)
//!   8  u8  kind             1 put, 2 take, 3 commit, 4 rollback (reserved, never written)
//!   9  u8  flags            bit 0 compressed, bit 1 encrypted (reserved for later; 0 now)
//!  10  u16 reserved         zero
//!  12  u32 write_round      the dir writer's write+sync round that wrote the record
//!  16  u64 transaction_id
//!  24  u64 write_order_id   one monotonic sequence per channel, across all data dirs
//!  32  payload
//! ```
//!
//! Do not reorder or resize these fields: files written by earlier builds would stop
//! validating. New meaning goes into `flags` and the reserved bytes, or a new version.

use bytes::Bytes;

use crate::event::Event;

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MLRCSEG\0";
/// The segment format version this build writes and reads.
pub const SEGMENT_FORMAT_VERSION: u16 = 1;
/// Bytes reserved for the segment header; records start here.
pub const SEGMENT_HEADER_BYTES: usize = 128;
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 32;
/// Hard ceiling on one record, checked before allocating, so that a damaged length field
/// can never make recovery allocate gigabytes.
pub const MAX_RECORD_BYTES: u32 = 64 * 1024 * 1024;
/// The longest key id a segment header can name (encryption, a later issue).
pub const MAX_KEY_ID_BYTES: usize = 32;
/// Bytes of one event pointer inside a take record.
pub const POINTER_BYTES: usize = 12;
/// Bytes of a commit record's payload.
pub const COMMIT_PAYLOAD_BYTES: usize = 20;

const SEGMENT_HEADER_CRC_OFFSET: usize = SEGMENT_HEADER_BYTES - 4;
const RECORD_CRC_OFFSET: usize = 4;
const RECORD_ROUND_OFFSET: usize = 12;
/// The header bytes the dir writer folds into the CRC after the bulk: length, then
/// kind/flags/reserved/round.
const RECORD_SEALED_HEADER_RANGE: std::ops::Range<usize> = 8..16;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Events put by a transaction (a batch).
    Put = 1,
    /// Pointers to events a transaction took.
    Take = 2,
    /// The end of a transaction: it is committed once this record is durable.
    Commit = 3,
    /// Reserved: Millrace writes nothing for a rolled-back transaction (see docs/format.md).
    Rollback = 4,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Take),
            3 => Some(RecordKind::Commit),
            4 => Some(RecordKind::Rollback),
            _ => None,
        }
    }
}

/// Where an event lives: the put record holding it, and its index within that record.
/// Twelve bytes, so a queue of ten million events costs 120 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventPointer {
    /// The segment (unique across a channel's data dirs).
    pub segment_id: u32,
    /// Byte offset of the put record in the segment.
    pub record_offset: u32,
    /// Index of the event within the record.
    pub event_index: u32,
}

/// The fixed fields of a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's id; also in its file name and folded into every record's CRC.
    pub segment_id: u32,
    /// When the segment was created.
    pub created_unix_ms: u64,
    /// Cipher of the segment's records (0 = none). Reserved for encryption.
    pub cipher: u8,
    /// The key id records were encrypted with (empty when unencrypted).
    pub key_id: String,
}

/// Why a segment header did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentHeaderError {
    /// The file is shorter than a header.
    #[error("file is {len} bytes, shorter than the {SEGMENT_HEADER_BYTES}-byte segment header")]
    TooShort {
        /// The file's length.
        len: usize,
    },
    /// The magic bytes are wrong.
    #[error("bad magic {found:02x?}, expected {SEGMENT_MAGIC:02x?}")]
    BadMagic {
        /// The bytes found.
        found: [u8; 8],
    },
    /// The header checksum does not match.
    #[error("header checksum {stored:#010x} does not match computed {computed:#010x}")]
    Checksum {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// A version this build cannot read.
    #[error("segment format version {found} is not supported (this build reads {SEGMENT_FORMAT_VERSION})")]
    Version {
        /// The version found.
        found: u16,
    },
    /// A field holds an impossible value.
    #[error("{0}")]
    Invalid(String),
}

impl SegmentHeader {
    /// Encodes the header into its fixed 128 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..10].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
        out[12..16].copy_from_slice(&self.segment_id.to_le_bytes());
        out[16..24].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        out[24] = self.cipher;
        let key_id = self.key_id.as_bytes();
        let key_id_len = key_id.len().min(MAX_KEY_ID_BYTES);
        out[25] = key_id_len as u8;
        out[26..26 + key_id_len].copy_from_slice(&key_id[..key_id_len]);
        let crc = crc32c::crc32c(&out[..SEGMENT_HEADER_CRC_OFFSET]);
        out[SEGMENT_HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header.
    pub fn decode(bytes: &[u8]) -> Result<Self, SegmentHeaderError> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(SegmentHeaderError::TooShort { len: bytes.len() });
        }
        let bytes = &bytes[..SEGMENT_HEADER_BYTES];
        let magic: [u8; 8] = bytes[0..8].try_into().expect("8 bytes");
        if magic != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::BadMagic { found: magic });
        }
        let stored = read_u32(bytes, SEGMENT_HEADER_CRC_OFFSET);
        let computed = crc32c::crc32c(&bytes[..SEGMENT_HEADER_CRC_OFFSET]);
        if stored != computed {
            return Err(SegmentHeaderError::Checksum { stored, computed });
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(SegmentHeaderError::Version { found: version });
        }
        let key_id_len = bytes[25] as usize;
        if key_id_len > MAX_KEY_ID_BYTES {
            return Err(SegmentHeaderError::Invalid(format!(
                "key id length {key_id_len} exceeds {MAX_KEY_ID_BYTES}"
            )));
        }
        let key_id = std::str::from_utf8(&bytes[26..26 + key_id_len])
            .map_err(|_| SegmentHeaderError::Invalid("key id is not UTF-8".into()))?
            .to_string();
        Ok(SegmentHeader {
            segment_id: read_u32(bytes, 12),
            created_unix_ms: read_u64(bytes, 16),
            cipher: bytes[24],
            key_id,
        })
    }
}

/// Appends one record (header placeholder, payload written by `write_payload`) to `buf`
/// and returns the record's start offset in `buf`. The CRC field holds the CRC of the
/// bulk until [`seal_record`] completes it.
pub fn encode_record(
    buf: &mut Vec<u8>,
    kind: RecordKind,
    transaction_id: u64,
    write_order_id: u64,
    write_payload: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    write_payload(buf);
    let record_bytes = (buf.len() - start) as u32;
    let record = &mut buf[start..];
    record[0..4].copy_from_slice(&record_bytes.to_le_bytes());
    record[8] = kind as u8;
    record[16..24].copy_from_slice(&transaction_id.to_le_bytes());
    record[24..32].copy_from_slice(&write_order_id.to_le_bytes());
    let bulk_crc = crc32c::crc32c(&record[16..]);
    record[RECORD_CRC_OFFSET..RECORD_CRC_OFFSET + 4].copy_from_slice(&bulk_crc.to_le_bytes());
    start
}

/// Completes a record encoded by [`encode_record`] for its place on disk: stamps the
/// write round and folds the header and the segment id into the CRC.
pub fn seal_record(record: &mut [u8], write_round: u32, segment_id: u32) {
    record[RECORD_ROUND_OFFSET..RECORD_ROUND_OFFSET + 4]
        .copy_from_slice(&write_round.to_le_bytes());
    let bulk_crc = read_u32(record, RECORD_CRC_OFFSET);
    let crc = fold_header_crc(bulk_crc, record, segment_id);
    record[RECORD_CRC_OFFSET..RECORD_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

fn fold_header_crc(bulk_crc: u32, record: &[u8], segment_id: u32) -> u32 {
    let crc = crc32c::crc32c_append(bulk_crc, &record[0..4]);
    let crc = crc32c::crc32c_append(crc, &record[RECORD_SEALED_HEADER_RANGE]);
    crc32c::crc32c_append(crc, &segment_id.to_le_bytes())
}

/// The length field of the record starting at `bytes[0]`, if four bytes are there.
pub fn peek_record_bytes(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= 4).then(|| read_u32(bytes, 0))
}

/// A record's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Whole record length.
    pub record_bytes: u32,
    /// What the record says.
    pub kind: RecordKind,
    /// Reserved flag bits.
    pub flags: u8,
    /// The writer round that wrote it.
    pub write_round: u32,
    /// The transaction.
    pub transaction_id: u64,
    /// The record's write-order id.
    pub write_order_id: u64,
}

/// Why the bytes at an offset are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A zero length: the end of the written data.
    #[error("end of data")]
    EndOfData,
    /// The length field is impossible.
    #[error("record length {record_bytes} is outside {RECORD_HEADER_BYTES}..={max_bytes}")]
    BadLength {
        /// The length read.
        record_bytes: u32,
        /// The most this position allows.
        max_bytes: u64,
    },
    /// Fewer bytes are available than the header or the length field needs.
    #[error("record needs {needed_bytes} bytes, only {available_bytes} remain")]
    Truncated {
        /// Bytes the record needs.
        needed_bytes: u64,
        /// Bytes present.
        available_bytes: u64,
    },
    /// The checksum does not match.
    #[error("checksum {stored:#010x} does not match computed {computed:#010x}")]
    Checksum {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// The kind byte or a reserved field is invalid (only possible with a matching CRC
    /// when written by a different build).
    #[error("{0}")]
    Invalid(String),
}

/// Decodes and verifies the record at the start of `bytes` (which may hold more after
/// it). Returns the header and the payload slice.
pub fn decode_record(bytes: &[u8], segment_id: u32) -> Result<(RecordHeader, &[u8]), RecordError> {
    if bytes.len() < 4 {
        return Err(if bytes.iter().all(|&byte| byte == 0) {
            RecordError::EndOfData
        } else {
            RecordError::Truncated {
                needed_bytes: 4,
                available_bytes: bytes.len() as u64,
            }
        });
    }
    let record_bytes = read_u32(bytes, 0);
    if record_bytes == 0 {
        return Err(RecordError::EndOfData);
    }
    if (record_bytes as usize) < RECORD_HEADER_BYTES || record_bytes > MAX_RECORD_BYTES {
        return Err(RecordError::BadLength {
            record_bytes,
            max_bytes: u64::from(MAX_RECORD_BYTES),
        });
    }
    if bytes.len() < record_bytes as usize {
        return Err(RecordError::Truncated {
            needed_bytes: u64::from(record_bytes),
            available_bytes: bytes.len() as u64,
        });
    }
    let record = &bytes[..record_bytes as usize];
    let stored = read_u32(record, RECORD_CRC_OFFSET);
    let computed = fold_header_crc(crc32c::crc32c(&record[16..]), record, segment_id);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let kind = RecordKind::from_byte(record[8])
        .ok_or_else(|| RecordError::Invalid(format!("unknown record kind {}", record[8])))?;
    if record[10] != 0 || record[11] != 0 {
        return Err(RecordError::Invalid(
            "reserved header bytes are not zero".into(),
        ));
    }
    let header = RecordHeader {
        record_bytes,
        kind,
        flags: record[9],
        write_round: read_u32(record, RECORD_ROUND_OFFSET),
        transaction_id: read_u64(record, 16),
        write_order_id: read_u64(record, 24),
    };
    Ok((header, &record[RECORD_HEADER_BYTES..]))
}

/// Encoded size of one event inside a put record.
pub fn encoded_event_bytes(event: &Event) -> usize {
    4 + 4
        + event
            .headers
            .iter()
            .map(|(key, value)| 8 + key.len() + value.len())
            .sum::<usize>()
        + event.body.len()
}

/// Put payload: `u32 event_count`, then per event `u32 event_bytes` (what follows for this
/// event), `u32 header_count`, per header `u32 key_len, key, u32 value_len, value`, and the
/// body filling the rest of the event.
pub fn encode_put_payload<'a>(buf: &mut Vec<u8>, events: impl ExactSizeIterator<Item = &'a Event>) {
    buf.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for event in events {
        let event_bytes = encoded_event_bytes(event) - 4;
        buf.extend_from_slice(&(event_bytes as u32).to_le_bytes());
        buf.extend_from_slice(&(event.headers.len() as u32).to_le_bytes());
        for (key, value) in &event.headers {
            buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
            buf.extend_from_slice(value.as_bytes());
        }
        buf.extend_from_slice(&event.body);
    }
}

/// Why a payload did not decode (its CRC matched, so this means a bug or a foreign file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed payload: {0}")]
pub struct PayloadError(pub String);

fn malformed(what: impl Into<String>) -> PayloadError {
    PayloadError(what.into())
}

/// The number of events in a put payload.
pub fn put_event_count(payload: &[u8]) -> Result<u32, PayloadError> {
    if payload.len() < 4 {
        return Err(malformed("put payload shorter than its event count"));
    }
    Ok(read_u32(payload, 0))
}

/// Decodes every event of a put payload. `payload` must be the payload part of `record`
/// so that bodies can share the record's buffer instead of being copied.
pub fn decode_put_payload(
    record: &Bytes,
    payload_offset: usize,
) -> Result<Vec<Event>, PayloadError> {
    let payload = &record[payload_offset..];
    let count = put_event_count(payload)? as usize;
    // Each event takes at least 8 bytes, so a count beyond that is malformed; checking
    // it first bounds the allocation below.
    if count > payload.len() / 8 {
        return Err(malformed(format!(
            "event count {count} does not fit the payload"
        )));
    }
    let mut events = Vec::with_capacity(count);
    let mut cursor = payload_offset + 4;
    for index in 0..count {
        let event_bytes = read_len(record, cursor, "event length")?;
        let event_end = cursor + 4 + event_bytes;
        if event_end > record.len() {
            return Err(malformed(format!("event {index} runs past the record")));
        }
        let mut field = cursor + 4;
        let header_count = read_len(record, field, "header count")?;
        field += 4;
        let mut event = Event::default();
        for _ in 0..header_count {
            let key = read_string(record, &mut field, event_end)?;
            let value = read_string(record, &mut field, event_end)?;
            event.headers.insert(key, value);
        }
        if field > event_end {
            return Err(malformed(format!(
                "event {index} headers run past the event"
            )));
        }
        event.body = record.slice(field..event_end);
        events.push(event);
        cursor = event_end;
    }
    if cursor != record.len() {
        return Err(malformed("bytes left over after the last event"));
    }
    Ok(events)
}

fn read_len(bytes: &[u8], offset: usize, what: &str) -> Result<usize, PayloadError> {
    if offset + 4 > bytes.len() {
        return Err(malformed(format!("{what} runs past the record")));
    }
    Ok(read_u32(bytes, offset) as usize)
}

fn read_string(record: &[u8], cursor: &mut usize, limit: usize) -> Result<String, PayloadError> {
    let len = read_len(record, *cursor, "header field length")?;
    let start = *cursor + 4;
    let end = start + len;
    if end > limit {
        return Err(malformed("header field runs past the event"));
    }
    *cursor = end;
    String::from_utf8(record[start..end].to_vec()).map_err(|_| malformed("header is not UTF-8"))
}

/// Take payload: `u32 count`, then `count` pointers of 12 bytes
/// (`u32 segment_id, u32 record_offset, u32 event_index`).
pub fn encode_take_payload(buf: &mut Vec<u8>, pointers: &[EventPointer]) {
    buf.extend_from_slice(&(pointers.len() as u32).to_le_bytes());
    for pointer in pointers {
        buf.extend_from_slice(&pointer.segment_id.to_le_bytes());
        buf.extend_from_slice(&pointer.record_offset.to_le_bytes());
        buf.extend_from_slice(&pointer.event_index.to_le_bytes());
    }
}

/// Decodes a take payload.
pub fn decode_take_payload(payload: &[u8]) -> Result<Vec<EventPointer>, PayloadError> {
    let count = put_event_count(payload)? as usize;
    if payload.len() != 4 + count * POINTER_BYTES {
        return Err(malformed(format!(
            "take payload of {} bytes cannot hold {count} pointers",
            payload.len()
        )));
    }
    Ok(payload[4..]
        .chunks_exact(POINTER_BYTES)
        .map(|chunk| EventPointer {
            segment_id: read_u32(chunk, 0),
            record_offset: read_u32(chunk, 4),
            event_index: read_u32(chunk, 8),
        })
        .collect())
}

/// What a commit record vouches for, so recovery can tell a complete transaction from one
/// that lost records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitSummary {
    /// Put records of the transaction.
    pub put_records: u32,
    /// Events in those put records.
    pub put_events: u32,
    /// Events taken (in the take records).
    pub take_events: u32,
    /// When the transaction committed (the committer's clock), so that a replay can
    /// rewind to a point in time.
    pub committed_unix_ms: u64,
}

impl CommitSummary {
    /// The counts a commit vouches for, without the time (what recovery compares).
    pub fn counts(&self) -> (u32, u32, u32) {
        (self.put_records, self.put_events, self.take_events)
    }

    /// Encodes the 20-byte commit payload.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.put_records.to_le_bytes());
        buf.extend_from_slice(&self.put_events.to_le_bytes());
        buf.extend_from_slice(&self.take_events.to_le_bytes());
        buf.extend_from_slice(&self.committed_unix_ms.to_le_bytes());
    }

    /// Decodes a commit payload.
    pub fn decode(payload: &[u8]) -> Result<Self, PayloadError> {
        if payload.len() != COMMIT_PAYLOAD_BYTES {
            return Err(malformed(format!(
                "commit payload is {} bytes, expected {COMMIT_PAYLOAD_BYTES}",
                payload.len()
            )));
        }
        Ok(CommitSummary {
            put_records: read_u32(payload, 0),
            put_events: read_u32(payload, 4),
            take_events: read_u32(payload, 8),
            committed_unix_ms: read_u64(payload, 12),
        })
    }
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_events() -> Vec<Event> {
        vec![
            Event::from_body("first").with_header("host", "a"),
            Event::from_body(Vec::new()),
            Event::from_body(vec![0u8, 255, 7])
                .with_header("k", "")
                .with_header("z", "v"),
        ]
    }

    fn sealed_put_record(segment_id: u32) -> Vec<u8> {
        let events = sample_events();
        let mut buf = Vec::new();
        encode_record(&mut buf, RecordKind::Put, 7, 42, |buf| {
            encode_put_payload(buf, events.iter())
        });
        seal_record(&mut buf, 3, segment_id);
        buf
    }

    #[test]
    fn put_record_round_trips_with_headers_and_bodies() {
        let record = sealed_put_record(9);
        let (header, payload) = decode_record(&record, 9).unwrap();
        assert_eq!(header.kind, RecordKind::Put);
        assert_eq!(header.transaction_id, 7);
        assert_eq!(header.write_order_id, 42);
        assert_eq!(header.write_round, 3);
        assert_eq!(header.record_bytes as usize, record.len());
        assert_eq!(put_event_count(payload).unwrap(), 3);
        let events = decode_put_payload(&Bytes::from(record), RECORD_HEADER_BYTES).unwrap();
        assert_eq!(events, sample_events());
    }

    #[test]
    fn record_from_another_segment_fails_its_checksum() {
        let record = sealed_put_record(9);
        assert!(matches!(
            decode_record(&record, 10),
            Err(RecordError::Checksum { .. })
        ));
    }

    #[test]
    fn every_single_byte_flip_of_a_record_is_detected() {
        let record = sealed_put_record(1);
        for position in 0..record.len() {
            for bit in 0..8 {
                let mut damaged = record.clone();
                damaged[position] ^= 1 << bit;
                assert!(
                    decode_record(&damaged, 1).is_err(),
                    "flip of bit {bit} at byte {position} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn zero_length_means_end_of_data() {
        assert_eq!(decode_record(&[0u8; 64], 1), Err(RecordError::EndOfData));
        assert_eq!(decode_record(&[0u8; 2], 1), Err(RecordError::EndOfData));
    }

    #[test]
    fn oversized_length_is_rejected_before_reading_the_record() {
        let mut bytes = vec![0u8; 64];
        bytes[0..4].copy_from_slice(&(MAX_RECORD_BYTES + 1).to_le_bytes());
        assert!(matches!(
            decode_record(&bytes, 1),
            Err(RecordError::BadLength { .. })
        ));
    }

    #[test]
    fn segment_header_round_trips_and_detects_damage() {
        let header = SegmentHeader {
            segment_id: 12,
            created_unix_ms: 1_700_000_000_000,
            cipher: 0,
            key_id: String::new(),
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header);
        let mut damaged = bytes;
        damaged[13] ^= 1;
        assert!(matches!(
            SegmentHeader::decode(&damaged),
            Err(SegmentHeaderError::Checksum { .. })
        ));
        assert!(matches!(
            SegmentHeader::decode(&[0u8; SEGMENT_HEADER_BYTES]),
            Err(SegmentHeaderError::BadMagic { .. })
        ));
    }

    #[test]
    fn take_and_commit_payloads_round_trip() {
        let pointers = vec![
            EventPointer {
                segment_id: 1,
                record_offset: 128,
                event_index: 0,
            },
            EventPointer {
                segment_id: 4,
                record_offset: 9000,
                event_index: 77,
            },
        ];
        let mut buf = Vec::new();
        encode_take_payload(&mut buf, &pointers);
        assert_eq!(decode_take_payload(&buf).unwrap(), pointers);
        let summary = CommitSummary {
            put_records: 2,
            put_events: 300,
            take_events: 5,
            committed_unix_ms: 1_700_000_000_123,
        };
        let mut buf = Vec::new();
        summary.encode(&mut buf);
        assert_eq!(CommitSummary::decode(&buf).unwrap(), summary);
    }

    proptest! {
        #[test]
        fn arbitrary_events_round_trip(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
            header_value in "[a-z]{0,12}",
        ) {
            let events: Vec<Event> = bodies
                .into_iter()
                .map(|body| Event::from_body(body).with_header("h", header_value.clone()))
                .collect();
            let mut buf = Vec::new();
            encode_record(&mut buf, RecordKind::Put, 1, 1, |buf| encode_put_payload(buf, events.iter()));
            seal_record(&mut buf, 0, 5);
            let (_, payload) = decode_record(&buf, 5).unwrap();
            prop_assert_eq!(put_event_count(payload).unwrap() as usize, events.len());
            let decoded = decode_put_payload(&Bytes::from(buf), RECORD_HEADER_BYTES).unwrap();
            prop_assert_eq!(decoded, events);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_record(&bytes, 3);
            let _ = SegmentHeader::decode(&bytes);
            let _ = decode_take_payload(&bytes);
            let _ = CommitSummary::decode(&bytes);
            if bytes.len() >= RECORD_HEADER_BYTES {
                let _ = decode_put_payload(&Bytes::from(bytes), RECORD_HEADER_BYTES);
            }
        }
    }
}
