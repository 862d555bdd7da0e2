//! The caps a receiver enforces on a peer's bytes, with their defaults.
//!
//! Flume's own decoder checks almost nothing (a buffer length is trusted up to the JVM's
//! heap), so every number here is Millrace's. The defaults accept anything a Flume client
//! sends in practice (batches of 10,000 events of 1 KiB fit) and bound what one
//! connection can make the receiver hold: see `docs/avro.md` §6 for the arithmetic.

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Default for the largest Netty frame accepted, on the wire (serial, count, length
/// prefixes and buffers): 16 MiB, the same as channeld's own `max_frame_bytes`, so one
/// Avro call always fits the channel transactions it becomes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * MIB;

/// The buffer size Java's `ByteBufferOutputStream` cuts a message into; a Java peer's
/// frame of N bytes has about N / 8 KiB buffers.
pub const JAVA_BUFFER_BYTES: usize = 8 * KIB;

/// Room for the handful of short buffers (handshake, metadata, status) a Java peer sends
/// besides its full 8 KiB ones.
const BUFFER_COUNT_SLACK: usize = 64;

/// Default for the most buffers one frame may have: enough for a frame of
/// [`DEFAULT_MAX_FRAME_BYTES`] cut into Java's 8 KiB buffers, with room to spare.
pub const DEFAULT_MAX_BUFFERS_PER_FRAME: usize =
    DEFAULT_MAX_FRAME_BYTES / JAVA_BUFFER_BYTES + BUFFER_COUNT_SLACK;

/// Default for the most events one `appendBatch` may carry. Flume's batch sizes are
/// usually 100 to 10,000; each decoded event costs about 60 bytes of bookkeeping besides
/// its headers, so this bounds a call's event list to about 6 MB however small the
/// events are on the wire.
pub const DEFAULT_MAX_EVENTS_PER_CALL: usize = 100_000;

/// Default for the most headers one event may carry. Real events carry a handful; the
/// channel protocol's own limit is 65,535.
pub const DEFAULT_MAX_HEADERS_PER_EVENT: usize = 4_096;

/// Default for the most headers all events of one call may carry together. A decoded
/// header costs about 50 bytes besides its text even when the wire spends 2 bytes on it,
/// so this, not the frame size, bounds a call's header bookkeeping (about 50 MB).
pub const DEFAULT_MAX_HEADERS_PER_CALL: usize = 1_000_000;

/// Default for the longest header key or value, message name or metadata key: 65,535
/// bytes, the channel protocol's own limit for header strings, so an accepted event can
/// always be stored.
pub const DEFAULT_MAX_STRING_BYTES: usize = u16::MAX as usize;

/// Default for the longest protocol text (`clientProtocol`, `serverProtocol`): Flume's is
/// 1,334 bytes; 64 KiB leaves room for any protocol a client could mean.
pub const DEFAULT_MAX_PROTOCOL_TEXT_BYTES: usize = 64 * KIB;

/// Default for the most entries of a metadata map (handshake or call `meta`). Flume sends
/// none.
pub const DEFAULT_MAX_META_ENTRIES: usize = 64;

/// Caps on Netty framing: what [`FrameDecoder`](crate::FrameDecoder) and the inflater
/// enforce before buffering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The largest frame on the wire, all prefixes included. Also the most inflated bytes
    /// a compressed connection may hold undecoded.
    pub max_frame_bytes: usize,
    /// The most buffers a frame may have.
    pub max_buffers_per_frame: usize,
    /// The longest single buffer.
    pub max_buffer_bytes: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_buffers_per_frame: DEFAULT_MAX_BUFFERS_PER_FRAME,
            max_buffer_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

/// Caps on the Avro values inside a message: what the handshake, call and event decoders
/// enforce before allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// The most events in one `appendBatch`.
    pub max_events_per_call: usize,
    /// The most headers on one event.
    pub max_headers_per_event: usize,
    /// The most headers on all events of one call together.
    pub max_headers_per_call: usize,
    /// The longest header key or value, message name, metadata key or error text.
    pub max_string_bytes: usize,
    /// The longest protocol text in a handshake.
    pub max_protocol_text_bytes: usize,
    /// The most entries in a metadata map.
    pub max_meta_entries: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            max_events_per_call: DEFAULT_MAX_EVENTS_PER_CALL,
            max_headers_per_event: DEFAULT_MAX_HEADERS_PER_EVENT,
            max_headers_per_call: DEFAULT_MAX_HEADERS_PER_CALL,
            max_string_bytes: DEFAULT_MAX_STRING_BYTES,
            max_protocol_text_bytes: DEFAULT_MAX_PROTOCOL_TEXT_BYTES,
            max_meta_entries: DEFAULT_MAX_META_ENTRIES,
        }
    }
}
