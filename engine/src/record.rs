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
//!   9  u8  flags            put records only: bit 0 compressed, bit 1 encrypted
//!  10  u16 reserved         zero
//!  12  u32 write_round      the dir writer's write+sync round that wrote the record
//!  16  u64 transaction_id
//!  24  u64 write_order_id   one monotonic sequence per channel, across all data dirs
//!  32  payload
//!
//!
//! put payload (flags select the optional parts):
//!   u32 event_count            always in clear: recovery builds pointers without a key
//!   [u8; 24] nonce             encrypted only
//!   sealed body:               ciphertext of the next part when encrypted, else the part
//!     compressed: u32 events_bytes, then an LZ4 block of the events
//!     otherwise:  the events
//!   [u8; 16] tag               encrypted only: AES-256-GCM tag over the body and the
//!                              associated data (see [`put_associated_data`])
//! ```
//!
//! Do not reorder or resize these fields: files written by earlier builds would stop
//! validating. New meaning goes into `flags` and the reserved bytes, or a new version.

use bytes::Bytes;

use crate::crypto::{
    KeyRing, NoncesExhausted, RecordKey, Sealer, KEY_CHECK_BYTES, NONCE_BYTES, TAG_BYTES,
};
use crate::event::Event;

/// How put records are compressed (Millrace extension `compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// `none`: events are stored as encoded.
    #[default]
    None,
    /// `lz4`: each put record's events are compressed as one LZ4 block.
    Lz4,
}

impl Compression {
    /// The value as written in a configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        }
    }
}

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
/// The longest key id a segment header can name.
pub const MAX_KEY_ID_BYTES: usize = 32;
/// Record flag: the put payload's events are an LZ4 block.
pub const FLAG_COMPRESSED: u8 = 1 << 0;
/// Record flag: the put payload is sealed with the segment's key.
pub const FLAG_ENCRYPTED: u8 = 1 << 1;
/// Every flag this build knows; a record with another bit set is refused.
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_ENCRYPTED;
/// Bytes of the event count that starts every put payload.
pub const PUT_EVENT_COUNT_BYTES: usize = 4;
/// Bytes of the uncompressed length before a compressed body.
const UNCOMPRESSED_LENGTH_BYTES: usize = 4;
/// The most a put payload adds around its encoded events: the event count, a nonce and a
/// tag. (A compressed body is kept only when it is smaller than the events, length
/// prefix included, so compression adds nothing.)
pub const MAX_PUT_ENVELOPE_BYTES: usize = PUT_EVENT_COUNT_BYTES + NONCE_BYTES + TAG_BYTES;
/// Longest associated data of a sealed put record (see [`put_associated_data`]).
const MAX_ASSOCIATED_DATA_BYTES: usize = 4 + 4 + 16 + PUT_EVENT_COUNT_BYTES + 1 + MAX_KEY_ID_BYTES;
/// Bytes of one event pointer inside a take record.
pub const POINTER_BYTES: usize = 12;
/// Bytes of a commit record's payload.
pub const COMMIT_PAYLOAD_BYTES: usize = 20;

const SEGMENT_HEADER_CRC_OFFSET: usize = SEGMENT_HEADER_BYTES - 4;
const SEGMENT_CIPHER_OFFSET: usize = 24;
const SEGMENT_KEY_ID_LENGTH_OFFSET: usize = 25;
const SEGMENT_KEY_ID_OFFSET: usize = 26;
const SEGMENT_KEY_CHECK_OFFSET: usize = SEGMENT_KEY_ID_OFFSET + MAX_KEY_ID_BYTES;
const RECORD_CRC_OFFSET: usize = 4;
const RECORD_FLAGS_OFFSET: usize = 9;
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

/// How a segment's put records are sealed (the header's `cipher` byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SegmentCipher {
    /// 0: put records are in clear.
    None = 0,
    /// 1: every put record is sealed with AES-256-GCM under a subkey of the key the
    /// header names (see [`crate::crypto`])
    /// names.
    Aes256Gcm = 1,
}

impl SegmentCipher {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(SegmentCipher::None),
            1 => Some(SegmentCipher::Aes256Gcm),
            _ => None,
        }
    }

    /// A name for people (`channelctl inspect`).
    pub fn name(self) -> &'static str {
        match self {
            SegmentCipher::None => "none",
            SegmentCipher::Aes256Gcm => "aes-256-gcm",
        }
    }
}

/// The fixed fields of a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's id; also in its file name and folded into every record's CRC.
    pub segment_id: u32,
    /// When the segment was created.
    pub created_unix_ms: u64,
    /// How the segment's put records are sealed.
    pub cipher: SegmentCipher,
    /// The id of the key records were sealed with (empty when unencrypted).
    pub key_id: String,
    /// The key's check value (zeros when unencrypted): tells the right key from another
    /// key under the same id without decrypting anything.
    pub key_check: [u8; KEY_CHECK_BYTES],
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
    /// The header of a new segment whose records are sealed with `key`, or in clear.
    pub fn new(segment_id: u32, created_unix_ms: u64, key: Option<&RecordKey>) -> Self {
        match key {
            None => SegmentHeader {
                segment_id,
                created_unix_ms,
                cipher: SegmentCipher::None,
                key_id: String::new(),
                key_check: [0; KEY_CHECK_BYTES],
            },
            Some(key) => SegmentHeader {
                segment_id,
                created_unix_ms,
                cipher: SegmentCipher::Aes256Gcm,
                key_id: key.id().to_string(),
                key_check: key.check(),
            },
        }
    }

    /// The id of the key the segment's records need, if they are encrypted.
    pub fn required_key_id(&self) -> Option<&str> {
        (self.cipher != SegmentCipher::None).then_some(self.key_id.as_str())
    }

    /// Encodes the header into its fixed 128 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..10].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
        out[12..16].copy_from_slice(&self.segment_id.to_le_bytes());
        out[16..24].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        out[SEGMENT_CIPHER_OFFSET] = self.cipher as u8;
        let key_id = self.key_id.as_bytes();
        let key_id_len = key_id.len().min(MAX_KEY_ID_BYTES);
        out[SEGMENT_KEY_ID_LENGTH_OFFSET] = key_id_len as u8;
        out[SEGMENT_KEY_ID_OFFSET..SEGMENT_KEY_ID_OFFSET + key_id_len]
            .copy_from_slice(&key_id[..key_id_len]);
        out[SEGMENT_KEY_CHECK_OFFSET..SEGMENT_KEY_CHECK_OFFSET + KEY_CHECK_BYTES]
            .copy_from_slice(&self.key_check);
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
        let cipher_byte = bytes[SEGMENT_CIPHER_OFFSET];
        let cipher = SegmentCipher::from_byte(cipher_byte).ok_or_else(|| {
            SegmentHeaderError::Invalid(format!(
                "cipher {cipher_byte} is not one this build knows (0 none, 1 aes-256-gcm)"
            ))
        })?;
        let key_id_len = bytes[SEGMENT_KEY_ID_LENGTH_OFFSET] as usize;
        if key_id_len > MAX_KEY_ID_BYTES {
            return Err(SegmentHeaderError::Invalid(format!(
                "key id length {key_id_len} exceeds {MAX_KEY_ID_BYTES}"
            )));
        }
        if (cipher == SegmentCipher::None) != (key_id_len == 0) {
            return Err(SegmentHeaderError::Invalid(format!(
                "cipher {} with a key id of {key_id_len} bytes",
                cipher.name()
            )));
        }
        let key_id =
            std::str::from_utf8(&bytes[SEGMENT_KEY_ID_OFFSET..SEGMENT_KEY_ID_OFFSET + key_id_len])
                .map_err(|_| SegmentHeaderError::Invalid("key id is not UTF-8".into()))?
                .to_string();
        let key_check = bytes[SEGMENT_KEY_CHECK_OFFSET..SEGMENT_KEY_CHECK_OFFSET + KEY_CHECK_BYTES]
            .try_into()
            .expect("16 bytes");
        Ok(SegmentHeader {
            segment_id: read_u32(bytes, 12),
            created_unix_ms: read_u64(bytes, 16),
            cipher,
            key_id,
            key_check,
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
    /// [`FLAG_COMPRESSED`] and [`FLAG_ENCRYPTED`] (put records only).
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
    let flags = record[RECORD_FLAGS_OFFSET];
    if flags & !KNOWN_FLAGS != 0 {
        return Err(RecordError::Invalid(format!(
            "flags {flags:#04x} set bits this build does not know"
        )));
    }
    if flags != 0 && kind != RecordKind::Put {
        return Err(RecordError::Invalid(format!(
            "flags {flags:#04x} on a {kind:?} record; only put records are compressed or encrypted"
        )));
    }
    let header = RecordHeader {
        record_bytes,
        kind,
        flags,
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

/// Put payload in clear and uncompressed: `u32 event_count`, then per event
/// `u32 event_bytes` (what follows for this event), `u32 header_count`, per header
/// `u32 key_len, key, u32 value_len, value`, and the body filling the rest of the event.
pub fn encode_put_payload<'a>(buf: &mut Vec<u8>, events: impl ExactSizeIterator<Item = &'a Event>) {
    buf.extend_from_slice(&(events.len() as u32).to_le_bytes());
    encode_events(buf, events);
}

/// The events of a put payload, without the count in front.
fn encode_events<'a>(buf: &mut Vec<u8>, events: impl Iterator<Item = &'a Event>) {
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

/// How a committer stores put records: compressed or not, sealed or not.
#[derive(Debug, Clone, Copy)]
pub struct PutEncoding<'a> {
    /// Compression tried on each record's events.
    pub compression: Compression,
    /// The sealer of this channel open (active key, nonces), when the channel encrypts.
    pub sealing: Option<&'a Sealer>,
}

impl PutEncoding<'_> {
    /// Neither compressed nor encrypted.
    pub const PLAIN: PutEncoding<'static> = PutEncoding {
        compression: Compression::None,
        sealing: None,
    };
}

/// Appends one put record holding `events`, compressed and sealed as `encoding` says,
/// and returns its start offset in `buf`. As with [`encode_record`], the CRC field
/// holds the CRC of the bulk until [`seal_record`] completes it.
///
/// Compression runs first and is kept only when it makes the record smaller; sealing
/// then encrypts the (possibly compressed) events in place and appends the tag. The
/// event count stays in clear, covered by the tag through the associated data.
pub fn encode_put_record(
    buf: &mut Vec<u8>,
    transaction_id: u64,
    write_order_id: u64,
    events: &[Event],
    encoding: PutEncoding<'_>,
) -> Result<usize, NoncesExhausted> {
    let nonce = match encoding.sealing {
        Some(sealer) => Some(sealer.next_nonce()?),
        None => None,
    };
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    buf.extend_from_slice(&(events.len() as u32).to_le_bytes());
    if let Some(nonce) = &nonce {
        buf.extend_from_slice(nonce);
    }
    let body_start = buf.len();
    let mut flags = 0;
    match encoding.compression {
        Compression::None => encode_events(buf, events.iter()),
        Compression::Lz4 => {
            if compress_events(buf, events) {
                flags |= FLAG_COMPRESSED;
            }
        }
    }
    if nonce.is_some() {
        flags |= FLAG_ENCRYPTED;
    }
    let tag_bytes = if nonce.is_some() { TAG_BYTES } else { 0 };
    let record_bytes = (buf.len() + tag_bytes - start) as u32;
    {
        let record = &mut buf[start..];
        record[0..4].copy_from_slice(&record_bytes.to_le_bytes());
        record[8] = RecordKind::Put as u8;
        record[RECORD_FLAGS_OFFSET] = flags;
        record[16..24].copy_from_slice(&transaction_id.to_le_bytes());
        record[24..32].copy_from_slice(&write_order_id.to_le_bytes());
    }
    if let (Some(nonce), Some(sealer)) = (nonce, encoding.sealing) {
        let (head, body) = buf.split_at_mut(body_start);
        let associated_data = put_associated_data(&head[start..], sealer.key().id());
        let tag = sealer.seal(&nonce, associated_data.as_slice(), body);
        buf.extend_from_slice(&tag);
    }
    let record = &mut buf[start..];
    let bulk_crc = crc32c::crc32c(&record[16..]);
    record[RECORD_CRC_OFFSET..RECORD_CRC_OFFSET + 4].copy_from_slice(&bulk_crc.to_le_bytes());
    Ok(start)
}

/// Appends `u32 events_bytes` and an LZ4 block of the encoded events to `buf` and
/// returns true, unless that would not be smaller than the events themselves; then the
/// events go in as they are and it returns false.
fn compress_events(buf: &mut Vec<u8>, events: &[Event]) -> bool {
    thread_local! {
        static ENCODED_EVENTS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    ENCODED_EVENTS.with(|scratch| {
        let mut encoded = scratch.borrow_mut();
        encoded.clear();
        encode_events(&mut encoded, events.iter());
        let body_start = buf.len();
        let block_start = body_start + UNCOMPRESSED_LENGTH_BYTES;
        buf.resize(
            block_start + lz4_flex::block::get_maximum_output_size(encoded.len()),
            0,
        );
        let compressed = lz4_flex::block::compress_into(&encoded, &mut buf[block_start..])
            .expect("the output holds LZ4's worst case");
        if UNCOMPRESSED_LENGTH_BYTES + compressed < encoded.len() {
            buf[body_start..block_start].copy_from_slice(&(encoded.len() as u32).to_le_bytes());
            buf.truncate(block_start + compressed);
            true
        } else {
            buf.truncate(body_start);
            buf.extend_from_slice(&encoded);
            false
        }
    })
}

/// The associated data of a sealed put record: what the tag binds besides the body.
///
/// ```text
/// record[0..4]    record_bytes
/// record[8..12]   kind, flags, reserved
/// record[16..32]  transaction_id, write_order_id
/// record[32..36]  event_count (the clear start of the payload)
/// u8 key_id_len, key_id   the key id the segment header must name
/// ```
///
/// `crc32c` and `write_round` are left out: the dir writer fills them in after sealing.
/// The segment id is left out because the committer does not know it; the CRC binds it.
pub fn put_associated_data(record_head: &[u8], key_id: &str) -> AssociatedData {
    let mut data = AssociatedData {
        bytes: [0; MAX_ASSOCIATED_DATA_BYTES],
        len: 0,
    };
    data.push(&record_head[0..4]);
    data.push(&record_head[8..12]);
    data.push(&record_head[16..RECORD_HEADER_BYTES + PUT_EVENT_COUNT_BYTES]);
    let key_id = &key_id.as_bytes()[..key_id.len().min(MAX_KEY_ID_BYTES)];
    data.push(&[key_id.len() as u8]);
    data.push(key_id);
    data
}

/// Associated data built on the stack (at most 61 bytes).
#[derive(Debug, Clone, Copy)]
pub struct AssociatedData {
    bytes: [u8; MAX_ASSOCIATED_DATA_BYTES],
    len: usize,
}

impl AssociatedData {
    fn push(&mut self, part: &[u8]) {
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Why a payload did not decode (its CRC matched, so this means a bug or a foreign file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed payload: {0}")]
pub struct PayloadError(pub String);

fn malformed(what: impl Into<String>) -> PayloadError {
    PayloadError(what.into())
}

/// The number of events in a put payload (in clear whatever the flags).
pub fn put_event_count(payload: &[u8]) -> Result<u32, PayloadError> {
    if payload.len() < PUT_EVENT_COUNT_BYTES {
        return Err(malformed("put payload shorter than its event count"));
    }
    Ok(read_u32(payload, 0))
}

/// Checks what can be checked of a put payload without its key: the flags agree with
/// the segment's cipher and the payload holds the parts they announce. Returns the
/// event count. Recovery uses this; it never decrypts.
pub fn check_put_payload(
    flags: u8,
    payload: &[u8],
    segment_cipher: SegmentCipher,
) -> Result<u32, PayloadError> {
    let count = put_event_count(payload)?;
    let encrypted = flags & FLAG_ENCRYPTED != 0;
    match (segment_cipher, encrypted) {
        (SegmentCipher::None, true) => {
            return Err(malformed(
                "an encrypted put record in a segment whose header names no key",
            ))
        }
        (SegmentCipher::Aes256Gcm, false) => {
            return Err(malformed(
                "a put record in clear in an encrypted segment (every put record of an \
                 encrypted segment is sealed)",
            ))
        }
        _ => {}
    }
    let mut needed = PUT_EVENT_COUNT_BYTES;
    if encrypted {
        needed += NONCE_BYTES + TAG_BYTES;
    }
    if flags & FLAG_COMPRESSED != 0 {
        needed += UNCOMPRESSED_LENGTH_BYTES;
    }
    if payload.len() < needed {
        return Err(malformed(format!(
            "put payload of {} bytes is shorter than the {needed} bytes its flags {flags:#04x} need",
            payload.len()
        )));
    }
    Ok(count)
}

/// Why a put record's events could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutRecordError {
    /// The record's frame or header is invalid.
    #[error("{0}")]
    Record(#[from] RecordError),
    /// The record is not a put record.
    #[error("expected a put record, found {0:?}")]
    NotAPut(RecordKind),
    /// The payload's parts are inconsistent.
    #[error("{0}")]
    Payload(#[from] PayloadError),
    /// The segment needs a key that is not loaded.
    #[error("the segment was encrypted with key {key_id:?}, which is not loaded")]
    KeyUnavailable {
        /// The segment header's key id.
        key_id: String,
    },
    /// The tag did not authenticate the record: it was altered, moved under another
    /// header, or sealed with another key.
    #[error(
        "put record failed authentication with key {key_id:?}: it was altered, moved, or \
         sealed with another key; its events are not delivered"
    )]
    Authentication {
        /// The key tried.
        key_id: String,
    },
}

/// Decodes the put record at the start of `record` (the whole record, read from the
/// segment described by `segment`): verifies the CRC, opens the seal with the key the
/// segment header names, decompresses, and decodes the events. `keys` may be `None`
/// for a segment in clear.
///
/// This is the take path's decoder and the one `channelctl inspect` and `verify` use.
pub fn decode_put_record(
    mut record: Vec<u8>,
    segment: &SegmentHeader,
    keys: Option<&KeyRing>,
) -> Result<Vec<Event>, PutRecordError> {
    let (header, payload) = decode_record(&record, segment.segment_id)?;
    if header.kind != RecordKind::Put {
        return Err(PutRecordError::NotAPut(header.kind));
    }
    let count = check_put_payload(header.flags, payload, segment.cipher)?;
    record.truncate(header.record_bytes as usize);
    let mut body = RECORD_HEADER_BYTES + PUT_EVENT_COUNT_BYTES..record.len();
    if header.flags & FLAG_ENCRYPTED != 0 {
        let unavailable = || PutRecordError::KeyUnavailable {
            key_id: segment.key_id.clone(),
        };
        let key = keys
            .ok_or_else(unavailable)?
            .key_for_segment(&segment.key_id, &segment.key_check)
            .map_err(|_| unavailable())?;
        let nonce_end = body.start + NONCE_BYTES;
        let tag_start = body.end - TAG_BYTES;
        let associated_data = put_associated_data(&record[..body.start], key.id());
        let (head, rest) = record.split_at_mut(nonce_end);
        let (sealed, tag) = rest.split_at_mut(tag_start - nonce_end);
        let nonce: &[u8; NONCE_BYTES] = head[body.start..]
            .try_into()
            .expect("the nonce ends where the sealed body starts");
        key.open(nonce, associated_data.as_slice(), sealed, tag)
            .map_err(|_| PutRecordError::Authentication {
                key_id: key.id().to_string(),
            })?;
        body = nonce_end..tag_start;
    }
    let (buffer, events_range) = if header.flags & FLAG_COMPRESSED != 0 {
        let events_bytes = read_u32(&record, body.start);
        if events_bytes > MAX_RECORD_BYTES {
            return Err(malformed(format!(
                "uncompressed length {events_bytes} exceeds {MAX_RECORD_BYTES} bytes"
            ))
            .into());
        }
        let mut events = vec![0u8; events_bytes as usize];
        let decompressed = lz4_flex::block::decompress_into(
            &record[body.start + UNCOMPRESSED_LENGTH_BYTES..body.end],
            &mut events,
        )
        .map_err(|error| malformed(format!("LZ4 block does not decompress: {error}")))?;
        if decompressed != events.len() {
            return Err(malformed(format!(
                "LZ4 block holds {decompressed} bytes, its length field says {events_bytes}"
            ))
            .into());
        }
        let len = events.len();
        (Bytes::from(events), 0..len)
    } else {
        (Bytes::from(record), body)
    };
    Ok(decode_events(&buffer, count as usize, events_range)?)
}

/// Decodes every event of a put payload in clear. `payload_offset` is where the payload
/// starts in `record`, so that bodies can share the record's buffer instead of being
/// copied.
pub fn decode_put_payload(
    record: &Bytes,
    payload_offset: usize,
) -> Result<Vec<Event>, PayloadError> {
    let count = put_event_count(&record[payload_offset..])? as usize;
    decode_events(
        record,
        count,
        payload_offset + PUT_EVENT_COUNT_BYTES..record.len(),
    )
}

/// Decodes `count` events filling `range` of `buffer` exactly.
fn decode_events(
    buffer: &Bytes,
    count: usize,
    range: std::ops::Range<usize>,
) -> Result<Vec<Event>, PayloadError> {
    // Each event takes at least 8 bytes, so a count beyond that is malformed; checking
    // it first bounds the allocation below.
    if count > range.len() / 8 {
        return Err(malformed(format!(
            "event count {count} does not fit the payload"
        )));
    }
    let record = &buffer[..range.end];
    let mut events = Vec::with_capacity(count);
    let mut cursor = range.start;
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
        event.body = buffer.slice(field..event_end);
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
    use std::sync::Arc;

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
        let header = SegmentHeader::new(12, 1_700_000_000_000, None);
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header);
        let key = test_key("k1", 3);
        let encrypted = SegmentHeader::new(13, 1_700_000_000_000, Some(&key));
        let decoded = SegmentHeader::decode(&encrypted.encode()).unwrap();
        assert_eq!(decoded.cipher, SegmentCipher::Aes256Gcm);
        assert_eq!(decoded.required_key_id(), Some("k1"));
        assert_eq!(decoded.key_check, key.check());
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

    fn test_key(id: &str, fill: u8) -> RecordKey {
        RecordKey::from_bytes(id, std::path::Path::new("test.key"), &[fill; 32])
    }

    fn text_events(count: usize) -> Vec<Event> {
        (0..count)
            .map(|index| {
                Event::from_body(format!(
                    "2026-01-01T00:00:{:02}Z INFO request path=/api/items/{index} status=200",
                    index % 60
                ))
                .with_header("host", "web-1")
            })
            .collect()
    }

    /// A sealed put record written as a writer would, with its segment header.
    fn put_record(
        events: &[Event],
        compression: Compression,
        key: Option<&Arc<RecordKey>>,
    ) -> (Vec<u8>, SegmentHeader) {
        let sealer = key.map(|key| {
            Sealer::with_prefix(Arc::clone(key), [5; crate::crypto::NONCE_PREFIX_BYTES])
        });
        let encoding = PutEncoding {
            compression,
            sealing: sealer.as_ref(),
        };
        let mut buf = Vec::new();
        encode_put_record(&mut buf, 7, 42, events, encoding).unwrap();
        seal_record(&mut buf, 1, 9);
        (buf, SegmentHeader::new(9, 0, key.map(|key| key.as_ref())))
    }

    fn ring(key: RecordKey) -> KeyRing {
        let id = key.id().to_string();
        KeyRing::from_keys(&id, vec![key]).unwrap()
    }

    #[test]
    fn put_records_round_trip_plain_compressed_encrypted_and_both() {
        let events = text_events(50);
        for compression in [Compression::None, Compression::Lz4] {
            for encrypted in [false, true] {
                let keys = ring(test_key("k1", 1));
                let key = encrypted.then(|| keys.active());
                let (record, segment) = put_record(&events, compression, key);
                let (header, payload) = decode_record(&record, 9).unwrap();
                assert_eq!(
                    header.flags & FLAG_ENCRYPTED != 0,
                    encrypted,
                    "{compression:?}"
                );
                assert_eq!(
                    header.flags & FLAG_COMPRESSED != 0,
                    compression == Compression::Lz4
                );
                assert_eq!(put_event_count(payload).unwrap(), 50);
                let decoded = decode_put_record(record, &segment, Some(&keys)).unwrap();
                assert_eq!(decoded, events, "{compression:?}, encrypted {encrypted}");
            }
        }
    }

    #[test]
    fn compression_is_kept_only_when_it_makes_the_record_smaller() {
        let random_bodies: Vec<Event> = (0..20u32)
            .map(|seed| {
                let body: Vec<u8> = (0..200u32)
                    .map(|index| {
                        (index.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) as u8
                    })
                    .map(|byte| byte.rotate_left(seed % 7))
                    .collect();
                Event::from_body(body)
            })
            .collect();
        let (plain, _) = put_record(&random_bodies, Compression::None, None);
        let (attempted, segment) = put_record(&random_bodies, Compression::Lz4, None);
        let (header, _) = decode_record(&attempted, 9).unwrap();
        if header.flags & FLAG_COMPRESSED == 0 {
            assert_eq!(attempted.len(), plain.len());
        } else {
            assert!(attempted.len() < plain.len());
        }
        assert_eq!(
            decode_put_record(attempted, &segment, None).unwrap(),
            random_bodies
        );
        let (compressed, _) = put_record(&text_events(100), Compression::Lz4, None);
        let (uncompressed, _) = put_record(&text_events(100), Compression::None, None);
        assert!(compressed.len() * 2 < uncompressed.len());
    }

    /// Recomputes the CRC of a record after a deliberate change, as an attacker could:
    /// only the tag stands in the way then.
    fn reseal_crc(record: &mut [u8], segment_id: u32) {
        let bulk = crc32c::crc32c(&record[16..]);
        record[RECORD_CRC_OFFSET..RECORD_CRC_OFFSET + 4].copy_from_slice(&bulk.to_le_bytes());
        let round = read_u32(record, RECORD_ROUND_OFFSET);
        seal_record(record, round, segment_id);
    }

    #[test]
    fn any_change_to_a_sealed_record_fails_authentication_even_with_a_valid_crc() {
        let keys = ring(test_key("k1", 1));
        let (record, segment) = put_record(&text_events(3), Compression::Lz4, Some(keys.active()));
        // Every byte the tag covers: header fields the committer knows, the clear event
        // count, the nonce, the body and the tag itself.
        let covered = (0..4).chain(8..12).chain(16..record.len());
        for position in covered {
            let mut damaged = record.clone();
            damaged[position] ^= 0x01;
            reseal_crc(&mut damaged, 9);
            let outcome = decode_put_record(damaged, &segment, Some(&keys));
            assert!(outcome.is_err(), "change at byte {position} was not caught");
        }
        let mut flags_changed = record.clone();
        flags_changed[RECORD_FLAGS_OFFSET] ^= FLAG_COMPRESSED;
        reseal_crc(&mut flags_changed, 9);
        assert!(matches!(
            decode_put_record(flags_changed, &segment, Some(&keys)),
            Err(PutRecordError::Authentication { .. })
        ));
    }

    #[test]
    fn a_sealed_record_opens_only_under_the_key_id_it_was_sealed_for() {
        let keys = ring(test_key("k1", 1));
        let (record, _) = put_record(&text_events(3), Compression::None, Some(keys.active()));
        // The same key bytes listed under another id: the associated data differs.
        let renamed = ring(test_key("k2", 1));
        let segment = SegmentHeader::new(9, 0, Some(renamed.active()));
        assert_eq!(
            decode_put_record(record.clone(), &segment, Some(&renamed)),
            Err(PutRecordError::Authentication {
                key_id: "k2".to_string()
            })
        );
        assert!(matches!(
            decode_put_record(record, &SegmentHeader::new(9, 0, Some(keys.active())), None),
            Err(PutRecordError::KeyUnavailable { .. })
        ));
    }

    #[test]
    fn segments_refuse_put_records_whose_encryption_does_not_match_their_header() {
        let keys = ring(test_key("k1", 1));
        let (clear, _) = put_record(&text_events(2), Compression::None, None);
        let encrypted_segment = SegmentHeader::new(9, 0, Some(keys.active()));
        assert!(matches!(
            decode_put_record(clear, &encrypted_segment, Some(&keys)),
            Err(PutRecordError::Payload(_))
        ));
        let (sealed, _) = put_record(&text_events(2), Compression::None, Some(keys.active()));
        assert!(matches!(
            decode_put_record(sealed, &SegmentHeader::new(9, 0, None), Some(&keys)),
            Err(PutRecordError::Payload(_))
        ));
    }

    #[test]
    fn flags_are_refused_on_records_other_than_puts_and_unknown_bits_everywhere() {
        let mut buf = Vec::new();
        encode_record(&mut buf, RecordKind::Commit, 1, 1, |buf| {
            CommitSummary::default().encode(buf)
        });
        buf[RECORD_FLAGS_OFFSET] = FLAG_ENCRYPTED;
        seal_record(&mut buf, 0, 1);
        assert!(matches!(
            decode_record(&buf, 1),
            Err(RecordError::Invalid(_))
        ));
        let (mut put, _) = put_record(&text_events(1), Compression::None, None);
        put[RECORD_FLAGS_OFFSET] = 1 << 5;
        reseal_crc(&mut put, 9);
        assert!(matches!(
            decode_record(&put, 9),
            Err(RecordError::Invalid(_))
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
        fn damaged_compressed_bodies_with_a_valid_crc_never_panic_the_decoder(
            position in 0usize..4096,
            value in any::<u8>(),
        ) {
            let (mut record, segment) = put_record(&text_events(20), Compression::Lz4, None);
            let body_start = RECORD_HEADER_BYTES + PUT_EVENT_COUNT_BYTES;
            let index = body_start + position % (record.len() - body_start);
            record[index] = value;
            reseal_crc(&mut record, 9);
            let _ = decode_put_record(record, &segment, None);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_record(&bytes, 3);
            let _ = decode_put_record(bytes.clone(), &SegmentHeader::new(3, 0, None), None);
            let _ = SegmentHeader::decode(&bytes);
            let _ = decode_take_payload(&bytes);
            let _ = CommitSummary::decode(&bytes);
            if bytes.len() >= RECORD_HEADER_BYTES {
                let _ = decode_put_payload(&Bytes::from(bytes), RECORD_HEADER_BYTES);
            }
        }
    }
}
