//! # Flume's Avro RPC, sans IO
//!
//! The bytes of Apache Flume's avro source and sink (Avro IPC over Netty framing, with
//! optional zlib) and of its `AvroFlumeEvent` datum (the Kafka components'
//! `useFlumeEventFormat`). Like `millrace-protocol`, this crate takes and gives bytes: no
//! sockets, no tasks, no engine. `docs/avro.md` is the full description; this is the
//! summary.
//!
//! ## Constraints
//!
//! * **Hostile input.** Anyone who can reach an avro source can send it bytes. Every
//!   count and length is checked against a cap ([`FrameLimits`], [`CallLimits`]) and
//!   against the bytes that are actually there *before* anything is allocated on its
//!   account; inflation stops at one frame's worth; nothing panics on any input.
//! * **Throughput.** The avro source's target is 500,000 events/s (appendBatch of 100 ×
//!   256 bytes from 4 connections), with the channel's work on the same two cores. A
//!   frame's buffers are joined in place in the read buffer, and every event body is a
//!   [`Bytes`](bytes::Bytes) slice of it: bodies are never copied by decoding. Requests
//!   are written straight into the output buffer, event by event.
//! * **Interoperability.** The bytes are those of Avro Java 1.7.4 to 1.11 as Flume uses
//!   them, checked against Apache Avro's own Python implementation in the tests.
//!
//! ## Why not the `apache-avro` crate
//!
//! The wire here is a fixed layout of four small records (handshake request and
//! response, call, `AvroFlumeEvent`), not arbitrary schemas: the handful of encoding
//! rules it needs ([`binary`]) is less code than adapting a general library, and a
//! general library gives up what matters here. `apache-avro` decodes into its generic
//! `Value` tree, allocating for every string, byte array, map and record before the
//! caller can look at a count, so a hostile `bytes` length or block count is allocated
//! (or at best bounded by a global knob) rather than checked against a per-field cap;
//! bodies come out as owned `Vec<u8>` copies instead of slices of the frame; and it has
//! no IPC (handshake, call format, Netty framing) at all. Writing the layout by hand,
//! as the house rules ask for wire layouts, keeps every cap next to the value it guards
//! and the hot path free of per-value allocation.
//!
//! ## The bytes, in one picture
//!
//! ```text
//! TCP stream (zlib-wrapped per direction when compression-type = deflate)
//!   frame:    serial i32 BE | count i32 BE | (length i32 BE, bytes) x count
//!   message:  the frame's buffers joined
//! request:  [HandshakeRequest]  meta map<bytes>  name string  params
//! response: [HandshakeResponse] meta map<bytes>  error boolean  Status | ["string"]
//! event:    headers map<string>  body bytes
//! ```
//!
//! ## Using it
//!
//! ```
//! use std::sync::Arc;
//! use millrace_avro::{
//!     AvroFlumeEvent, CallLimits, CallOutcome, ClientProtocolCache, ClientSession, ClientStep,
//!     Compression, FrameLimits, Inbound, Message, ServerSession, ServerStep, Status,
//! };
//!
//! // The sink's side: one appendBatch request, first on its connection.
//! let mut client = ClientSession::new(CallLimits::default());
//! let mut request = Vec::new();
//! let events = [AvroFlumeEvent::new("hi").with_header("k", "v")];
//! let serial = client.append_batch_events(&events, &mut request)?;
//!
//! // The source's side: frames from the bytes, then the session says what to do.
//! let cache = Arc::new(ClientProtocolCache::default());
//! let mut server = ServerSession::new(cache, CallLimits::default());
//! let mut inbound = Inbound::new(FrameLimits::default(), Compression::None);
//! inbound.read_buffer().extend_from_slice(&request);
//! let frame = inbound.next_frame()?.expect("a whole frame");
//! let ServerStep::Call { message, reply, .. } = server.receive(&frame.message)? else {
//!     panic!("a known client gets its call executed");
//! };
//! assert_eq!(message, Message::AppendBatch(events.to_vec()));
//! let mut response = Vec::new();
//! reply.encode(frame.serial, &CallOutcome::Status(Status::Ok), &mut response)?;
//!
//! // Back at the sink.
//! let mut inbound = Inbound::new(FrameLimits::default(), Compression::None);
//! inbound.read_buffer().extend_from_slice(&response);
//! let frame = inbound.next_frame()?.expect("a whole frame");
//! let outcome = CallOutcome::Status(Status::Ok);
//! assert_eq!(client.receive(&frame)?, ClientStep::Answered { serial, outcome });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binary;
mod call;
mod client;
mod compression;
mod event;
mod framing;
mod handshake;
mod ip_filter;
mod limits;
mod protocol_text;
mod server;

pub use binary::ValueError;
pub use call::{CallOutcome, Message, Status, APPEND, APPEND_BATCH};
pub use client::{AppendBatchWriter, ClientError, ClientSession, ClientStep};
pub use compression::{
    Compression, CompressionError, Deflater, Inbound, InboundError, Inflater, Outbound,
    DEFAULT_COMPRESSION_LEVEL, MAX_COMPRESSION_LEVEL,
};
pub use event::{decode_event_datum, encode_event, encode_event_datum, AvroFlumeEvent};
pub use framing::{
    encode_frame, FrameDecoder, FrameEncodeError, FrameError, FrameWriter, NettyFrame,
};
pub use handshake::{
    HandshakeMatch, HandshakeRequest, HandshakeResponse, Md5Hash, Meta, MD5_BYTES,
};
pub use ip_filter::{
    java_host_address, Access, HostLookup, IpFilterError, IpFilterRule, IpFilterRules,
};
pub use limits::{
    CallLimits, FrameLimits, DEFAULT_MAX_BUFFERS_PER_FRAME, DEFAULT_MAX_EVENTS_PER_CALL,
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_HEADERS_PER_CALL, DEFAULT_MAX_HEADERS_PER_EVENT,
    DEFAULT_MAX_META_ENTRIES, DEFAULT_MAX_PROTOCOL_TEXT_BYTES, DEFAULT_MAX_STRING_BYTES,
    JAVA_BUFFER_BYTES,
};
pub use protocol_text::{
    check_protocol_compatible, ClientProtocolCache, IncompatibleProtocol, KnownProtocol,
    DEFAULT_MAX_LEARNED_CLIENT_PROTOCOLS, FLUME_PROTOCOL_JSON, FLUME_PROTOCOL_MD5,
    KNOWN_COMPATIBLE_PROTOCOLS,
};
pub use server::{Reply, RequestError, RequestProblem, ServerSession, ServerStep};
