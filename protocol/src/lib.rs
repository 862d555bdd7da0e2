//! # The Millrace wire protocol, sans IO
//!
//! Encoders and decoders for the binary protocol between Millrace clients and `channeld`.
//! This crate knows nothing about sockets, tasks or the storage engine: callers hand it
//! bytes and buffers. `docs/protocol.md` is the full specification; this is the summary.
//!
//! ## Constraints
//!
//! * **Hostile input.** A decoder sees bytes from anyone who can connect. It must never
//!   panic, never allocate or wait on a length it has not checked against
//!   [`DecodeLimits::max_frame_bytes`], and must tell a wrong protocol (HTTP, TLS) from a
//!   broken Millrace peer by the first bytes.
//! * **Partial reads.** TCP delivers bytes in arbitrary pieces; decoding gives the same
//!   frames whatever the pieces.
//! * **Throughput.** The put path targets a million events a second. A received batch is
//!   validated once and then read in place ([`EventView`]) or handed out with bodies that
//!   share the frame's allocation ([`EventBatch::shared_events`]); an outgoing batch is
//!   written event by event straight into the caller's buffer ([`EventBatchWriter`]).
//! * **Pipelining.** A client may send many requests without waiting; the server answers
//!   each exactly once, in order, echoing its [`RequestId`].
//!
//! ## The bytes
//!
//! All integers little-endian. Each side's first frame is preceded by the 4-byte
//! [`MAGIC`], `89 4D 52 43`.
//!
//! ```text
//! client: [MAGIC][Hello frame][request frame][request frame] ...
//! server: [MAGIC][HelloAccepted frame or Error frame][response frame] ...
//!
//! frame:
//! +----------------------+-----------+------------------------+------------------------+
//! | length: u32          | type: u8  | request_id: u32        | payload                |
//! | (bytes after itself) |           |                        | (length - 5 bytes)     |
//! +----------------------+-----------+------------------------+------------------------+
//! ```
//!
//! Request types are `0x01..=0x0C`, response types `0x80..=0x87`; payload layouts are in
//! [`message`], [`event`] and [`operator`]. There is no checksum: TCP's checksum and the link layer's
//! CRC cover transport, the engine checksums what it stores, and TLS (when wanted) is
//! better added by a tunnel than by a homemade CRC. See `docs/protocol.md`.
//!
//! ## Using it
//!
//! ```
//! use bytes::BytesMut;
//! use millrace_protocol::{
//!     DecodeLimits, Encoder, Event, EventBatch, Hello, Request, RequestDecoder, RequestId,
//! };
//!
//! // Client side: handshake, then a pipelined put-and-commit.
//! let encoder = Encoder::default();
//! let mut outgoing = BytesMut::new();
//! encoder.encode_request(RequestId(1), &Request::Hello(Hello::new("example")), &mut outgoing)?;
//! let mut batch = encoder.put_commit_writer(&mut outgoing, RequestId(2), "default")?;
//! batch.push([("host", "web-1")], b"hello")?;
//! batch.finish()?;
//!
//! // Server side: decode whatever has arrived.
//! let mut decoder = RequestDecoder::new(DecodeLimits::default());
//! let hello = decoder.decode(&mut outgoing)?.expect("a complete Hello");
//! assert!(matches!(hello.request, Request::Hello(_)));
//! let put = decoder.decode(&mut outgoing)?.expect("a complete PutCommit");
//! let expected = EventBatch::from_events(&[Event::new("hello").with_header("host", "web-1")])?;
//! assert_eq!(put.request, Request::PutCommit { channel: "default".into(), events: expected });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode_error;
mod decoder;
mod encoder;
mod error;
mod error_response;
pub mod event;
mod frame;
mod limits;
pub mod message;
pub mod operator;
#[cfg(test)]
mod round_trips;
mod sniff;
mod wire;

pub use decode_error::DecodeError;
pub use decoder::{RequestDecoder, RequestFrame, ResponseDecoder, ResponseFrame};
pub use encoder::{Encoder, EventBatchWriter};
pub use error::{EncodeError, Malformation};
pub use error_response::{fields, ErrorClass, ErrorCode, ErrorResponse, MAX_ERROR_FIELDS};
pub use event::{
    encoded_event_bytes, single_event_frame_bytes, Event, EventBatch, EventBatchBuilder, EventIter,
    EventView, HeaderPair, Headers, SharedEvents, MAX_BODY_BYTES, MAX_HEADERS_PER_EVENT,
    MAX_HEADER_STRING_BYTES, MIN_EVENT_BYTES, NO_HEADERS,
};
pub use frame::{
    FrameType, RequestId, FRAME_HEADER_BYTES, FRAME_TYPE_BYTES, LENGTH_PREFIX_BYTES, MAGIC,
    REQUEST_ID_BYTES,
};
pub use limits::{
    negotiate_version, validate_channel_name, DecodeLimits, InvalidLimit,
    DEFAULT_FRAME_COMPLETION_DEADLINE_MS, DEFAULT_HANDSHAKE_DEADLINE_MS,
    DEFAULT_HELLO_TOKEN_ALLOWANCE_BYTES, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_HELLO_FRAME_BYTES, DEFAULT_MAX_TAKE_WAIT_MS,
    HELLO_FRAME_BYTES_BEFORE_TOKEN, LARGEST_HELLO_FRAME_BYTES, MAX_AUTH_TOKEN_BYTES,
    MAX_CHANNEL_NAME_BYTES, MAX_PEER_NAME_BYTES, MIN_MAX_FRAME_BYTES, NEWEST_SUPPORTED_VERSION,
    OLDEST_SUPPORTED_VERSION, PROTOCOL_VERSION,
};
pub use message::{
    counters, ChannelStats, Hello, HelloAccepted, Request, Response, MAX_STATS_COUNTERS,
};
pub use operator::{
    EventLocation, InspectReport, ReplayExecution, ReplayPoint, ReplayReport, ReplayRequest,
    RetainedCommit, MAX_LISTED_NOT_RETAINED_EVENTS, MAX_LISTED_REPLAY_SEGMENTS,
};
pub use sniff::{LooksLike, LONGEST_SIGNATURE_BYTES};
pub use wire::{OutputBuffer, MAX_SHORT_STRING_BYTES, MAX_STRING_BYTES};
