//! Encoding into a caller-owned buffer: whole messages with [`Encoder`], and event batches
//! one event at a time, straight into the outgoing buffer, with [`EventBatchWriter`].
//!
//! Every encode either appends one complete frame (the magic first, for the handshake
//! frames) or fails and leaves the buffer exactly as it was.

use crate::error::EncodeError;
use crate::event::{encoded_event_bytes, write_event, Event, EventView, HeaderPair};
use crate::frame::{FrameType, FrameWriter, RequestId};
use crate::limits::MIN_MAX_FRAME_BYTES;
use crate::message::{validate_channel_name, Request, Response};
use crate::wire::{put_short_string, put_u32, OutputBuffer};

/// Encodes frames for one connection, keeping each within the receiving peer's
/// `max_frame_bytes`.
///
/// Before the handshake the peer's limit is unknown, and [`Encoder::default`] assumes
/// [`MIN_MAX_FRAME_BYTES`], which every peer accepts. After it, set the limit the peer
/// announced: the server takes [`Hello::max_frame_bytes`](crate::Hello::max_frame_bytes),
/// the client [`HelloAccepted::max_frame_bytes`](crate::HelloAccepted::max_frame_bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    peer_max_frame_bytes: u32,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            peer_max_frame_bytes: MIN_MAX_FRAME_BYTES,
        }
    }
}

impl Encoder {
    /// An encoder for a peer that accepts frames up to `peer_max_frame_bytes`, length
    /// prefix included.
    pub fn new(peer_max_frame_bytes: u32) -> Self {
        Encoder {
            peer_max_frame_bytes,
        }
    }

    /// The receiving peer's frame limit.
    pub fn peer_max_frame_bytes(&self) -> u32 {
        self.peer_max_frame_bytes
    }

    /// Sets the receiving peer's frame limit, once the handshake has announced it.
    pub fn set_peer_max_frame_bytes(&mut self, peer_max_frame_bytes: u32) {
        self.peer_max_frame_bytes = peer_max_frame_bytes;
    }

    /// Appends `request` as one frame (a `Hello` is preceded by the magic). Returns the
    /// bytes appended.
    pub fn encode_request<O: OutputBuffer + ?Sized>(
        &self,
        request_id: RequestId,
        request: &Request,
        out: &mut O,
    ) -> Result<usize, EncodeError> {
        let with_preamble = matches!(request, Request::Hello(_));
        let mut frame = FrameWriter::start(
            out,
            request.frame_type(),
            request_id,
            with_preamble,
            self.peer_max_frame_bytes,
        );
        request.write_payload(frame.out())?;
        frame.finish()
    }

    /// Appends `response` as one frame (`HelloAccepted` and `HandshakeRejected` are
    /// preceded by the magic). Returns the bytes appended.
    pub fn encode_response<O: OutputBuffer + ?Sized>(
        &self,
        request_id: RequestId,
        response: &Response,
        out: &mut O,
    ) -> Result<usize, EncodeError> {
        let mut frame = FrameWriter::start(
            out,
            response.frame_type(),
            request_id,
            response.is_handshake(),
            self.peer_max_frame_bytes,
        );
        response.write_payload(frame.out())?;
        frame.finish()
    }

    /// Starts a `Put` frame whose events are pushed one by one straight into `out`.
    pub fn put_writer<'o, O: OutputBuffer + ?Sized>(
        &self,
        out: &'o mut O,
        request_id: RequestId,
    ) -> EventBatchWriter<'o, O> {
        let frame = FrameWriter::start(
            out,
            FrameType::Put,
            request_id,
            false,
            self.peer_max_frame_bytes,
        );
        EventBatchWriter::start(frame)
    }

    /// Starts a `PutCommit` frame on `channel` whose events are pushed one by one straight
    /// into `out`. All its events must fit in one frame.
    pub fn put_commit_writer<'o, O: OutputBuffer + ?Sized>(
        &self,
        out: &'o mut O,
        request_id: RequestId,
        channel: &str,
    ) -> Result<EventBatchWriter<'o, O>, EncodeError> {
        validate_channel_name(channel)?;
        let mut frame = FrameWriter::start(
            out,
            FrameType::PutCommit,
            request_id,
            false,
            self.peer_max_frame_bytes,
        );
        put_short_string(frame.out(), channel);
        Ok(EventBatchWriter::start(frame))
    }

    /// Starts an `Events` frame (the answer to a `Take`) whose events are pushed one by
    /// one straight into `out`. Check [`EventBatchWriter::fits`] before taking an event
    /// from the channel, so an event is never taken that the frame cannot carry.
    pub fn events_writer<'o, O: OutputBuffer + ?Sized>(
        &self,
        out: &'o mut O,
        request_id: RequestId,
    ) -> EventBatchWriter<'o, O> {
        let frame = FrameWriter::start(
            out,
            FrameType::Events,
            request_id,
            false,
            self.peer_max_frame_bytes,
        );
        EventBatchWriter::start(frame)
    }
}

/// Writes one `Put`, `PutCommit` or `Events` frame into the caller's buffer, an event at
/// a time, with no intermediate copy. Call [`finish`](Self::finish) to complete the
/// frame; dropping the writer instead removes the partial frame from the buffer.
#[must_use = "a batch frame is only complete after finish(); dropping the writer discards it"]
pub struct EventBatchWriter<'o, O: OutputBuffer + ?Sized> {
    frame: FrameWriter<'o, O>,
    /// Where the event count sits, patched on finish.
    count_offset: usize,
    event_count: u32,
}

impl<'o, O: OutputBuffer + ?Sized> EventBatchWriter<'o, O> {
    fn start(mut frame: FrameWriter<'o, O>) -> Self {
        let count_offset = frame.out().filled_bytes();
        put_u32(frame.out(), 0);
        debug_assert!(count_offset >= frame.payload_start());
        EventBatchWriter {
            frame,
            count_offset,
            event_count: 0,
        }
    }

    /// Events written so far.
    pub fn event_count(&self) -> usize {
        self.event_count as usize
    }

    /// Bytes of the frame so far, length prefix included.
    pub fn frame_bytes(&self) -> usize {
        self.frame.frame_bytes()
    }

    /// Room left in the frame, in encoded event bytes.
    pub fn remaining_bytes(&self) -> u64 {
        u64::from(self.frame.max_frame_bytes()).saturating_sub(self.frame.frame_bytes() as u64)
    }

    /// True when an event of `event_bytes` (see [`encoded_event_bytes`]) fits in the
    /// frame.
    pub fn fits(&self, event_bytes: usize) -> bool {
        event_bytes as u64 <= self.remaining_bytes() && self.event_count < u32::MAX
    }

    /// Makes room for one more event or says why not: [`EncodeError::BatchFull`] when the
    /// frame already holds events (finish it and start another),
    /// [`EncodeError::FrameTooLarge`] when the event would not fit even alone.
    fn check_room(&self, event_bytes: usize) -> Result<(), EncodeError> {
        if self.fits(event_bytes) {
            return Ok(());
        }
        if self.event_count == 0 {
            return Err(EncodeError::FrameTooLarge {
                frame_bytes: self.frame.frame_bytes() as u64 + event_bytes as u64,
                max_frame_bytes: self.frame.max_frame_bytes(),
            });
        }
        Err(EncodeError::BatchFull {
            event_bytes: event_bytes as u64,
            remaining_bytes: self.remaining_bytes(),
            max_frame_bytes: self.frame.max_frame_bytes(),
        })
    }

    /// Appends an event given as headers and body. On error nothing is written.
    pub fn push<H>(&mut self, headers: H, body: &[u8]) -> Result<(), EncodeError>
    where
        H: IntoIterator,
        H::Item: HeaderPair,
        H::IntoIter: Clone,
    {
        let headers = headers.into_iter();
        let event_bytes = encoded_event_bytes(headers.clone(), body.len())?;
        self.check_room(event_bytes)?;
        write_event(self.frame.out(), headers, body);
        self.event_count += 1;
        Ok(())
    }

    /// Appends an owned event. On error nothing is written.
    pub fn push_event(&mut self, event: &Event) -> Result<(), EncodeError> {
        self.push(&event.headers, &event.body)
    }

    /// Appends a received event as it is, without re-encoding it. On error nothing is
    /// written.
    pub fn push_view(&mut self, event: &EventView<'_>) -> Result<(), EncodeError> {
        self.check_room(event.encoded().len())?;
        self.frame.out().append_bytes(event.encoded());
        self.event_count += 1;
        Ok(())
    }

    /// Completes the frame (patches the event count and the length). Returns the bytes
    /// the frame added to the buffer.
    pub fn finish(self) -> Result<usize, EncodeError> {
        let EventBatchWriter {
            mut frame,
            count_offset,
            event_count,
        } = self;
        frame
            .out()
            .overwrite_bytes(count_offset, &event_count.to_le_bytes());
        frame.finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::decoder::{RequestDecoder, ResponseDecoder};
    use crate::event::{EventBatch, NO_HEADERS};
    use crate::frame::MAGIC;
    use crate::limits::DecodeLimits;
    use crate::message::{Hello, HelloAccepted};

    fn server_side_decode(bytes: &[u8]) -> Vec<Request> {
        let mut decoder = RequestDecoder::new(DecodeLimits::default());
        let mut buffer = BytesMut::from(bytes);
        let mut requests = Vec::new();
        while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
            requests.push(frame.request);
        }
        assert!(buffer.is_empty());
        requests
    }

    fn hello_bytes() -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::default()
            .encode_request(RequestId(1), &Request::Hello(Hello::new("test")), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn hello_is_preceded_by_the_magic() {
        assert_eq!(hello_bytes()[..4], MAGIC);
    }

    #[test]
    fn handshake_responses_are_preceded_by_the_magic_and_others_are_not() {
        let encoder = Encoder::default();
        let mut out = Vec::new();
        let accepted = Response::HelloAccepted(HelloAccepted {
            version: 1,
            max_frame_bytes: MIN_MAX_FRAME_BYTES,
            server_name: "channeld".into(),
        });
        encoder
            .encode_response(RequestId(1), &accepted, &mut out)
            .unwrap();
        assert_eq!(out[..4], MAGIC);
        out.clear();
        encoder
            .encode_response(RequestId(2), &Response::Ok, &mut out)
            .unwrap();
        assert_eq!(out, [5, 0, 0, 0, 0x82, 2, 0, 0, 0]);
    }

    #[test]
    fn put_writer_frame_decodes_as_the_same_put() {
        let events = [Event::new("a").with_header("k", "v"), Event::new("bb")];
        let mut out = hello_bytes();
        let mut writer = Encoder::default().put_writer(&mut out, RequestId(2));
        for event in &events {
            writer.push_event(event).unwrap();
        }
        assert_eq!(writer.event_count(), 2);
        writer.finish().unwrap();
        let requests = server_side_decode(&out);
        assert_eq!(
            requests[1],
            Request::Put {
                events: EventBatch::from_events(&events).unwrap()
            }
        );
    }

    #[test]
    fn put_commit_writer_writes_the_channel_before_the_events() {
        let mut out = hello_bytes();
        let mut writer = Encoder::default()
            .put_commit_writer(&mut out, RequestId(2), "c1")
            .unwrap();
        writer.push([("k", "v")], b"body").unwrap();
        writer.finish().unwrap();
        match &server_side_decode(&out)[1] {
            Request::PutCommit { channel, events } => {
                assert_eq!(channel, "c1");
                assert_eq!(events.len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn full_batch_refuses_the_next_event_without_writing_it() {
        let encoder = Encoder::new(MIN_MAX_FRAME_BYTES);
        let body = vec![7u8; 100 * 1024];
        let mut out = Vec::new();
        let mut writer = encoder.put_writer(&mut out, RequestId(1));
        writer.push(NO_HEADERS, &body).unwrap();
        writer.push(NO_HEADERS, &body).unwrap();
        let before = writer.frame_bytes();
        let refused = writer.push(NO_HEADERS, &body);
        assert!(
            matches!(refused, Err(EncodeError::BatchFull { .. })),
            "{refused:?}"
        );
        assert_eq!(writer.frame_bytes(), before);
        assert!(writer.finish().unwrap() <= MIN_MAX_FRAME_BYTES as usize);
    }

    #[test]
    fn event_larger_than_an_empty_frame_is_frame_too_large() {
        let encoder = Encoder::new(MIN_MAX_FRAME_BYTES);
        let body = vec![0u8; MIN_MAX_FRAME_BYTES as usize];
        let mut out = Vec::new();
        let mut writer = encoder.put_writer(&mut out, RequestId(1));
        let refused = writer.push(NO_HEADERS, &body);
        assert!(
            matches!(refused, Err(EncodeError::FrameTooLarge { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn dropped_batch_writer_leaves_the_buffer_as_it_was() {
        let mut out = vec![1, 2, 3];
        {
            let mut writer = Encoder::default().events_writer(&mut out, RequestId(1));
            writer.push([("k", "v")], b"x").unwrap();
        }
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn events_writer_output_decodes_on_the_client() {
        let encoder = Encoder::default();
        let mut out = Vec::new();
        encoder
            .encode_response(
                RequestId(1),
                &Response::HelloAccepted(HelloAccepted {
                    version: 1,
                    max_frame_bytes: MIN_MAX_FRAME_BYTES,
                    server_name: String::new(),
                }),
                &mut out,
            )
            .unwrap();
        let mut writer = encoder.events_writer(&mut out, RequestId(2));
        assert!(writer.fits(encoded_event_bytes([("k", "v")], 1).unwrap()));
        writer.push([("k", "v")], b"x").unwrap();
        writer.finish().unwrap();
        let mut decoder = ResponseDecoder::new(DecodeLimits::default());
        let (_, used) = decoder.decode_slice(&out).unwrap().unwrap();
        let (frame, _) = decoder.decode_slice(&out[used..]).unwrap().unwrap();
        match frame.response {
            Response::Events(events) => {
                let event = events.iter().next().unwrap();
                assert_eq!(event.header("k"), Some("v"));
                assert_eq!(event.body(), b"x");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn oversized_request_is_refused_and_leaves_the_buffer_as_it_was() {
        let events =
            EventBatch::from_events(&[Event::new(vec![0u8; MIN_MAX_FRAME_BYTES as usize])])
                .unwrap();
        let mut out = vec![9];
        let refused =
            Encoder::default().encode_request(RequestId(1), &Request::Put { events }, &mut out);
        assert!(
            matches!(refused, Err(EncodeError::FrameTooLarge { .. })),
            "{refused:?}"
        );
        assert_eq!(out, [9]);
    }

    #[test]
    fn invalid_channel_name_is_refused_on_encode() {
        let mut out = Vec::new();
        let encoder = Encoder::default();
        let empty = encoder.encode_request(
            RequestId(1),
            &Request::Begin {
                channel: String::new(),
            },
            &mut out,
        );
        assert!(
            matches!(empty, Err(EncodeError::InvalidValue { .. })),
            "{empty:?}"
        );
        let long = encoder.encode_request(
            RequestId(1),
            &Request::Stats {
                channel: "c".repeat(256),
            },
            &mut out,
        );
        assert!(
            matches!(long, Err(EncodeError::FieldTooLong { .. })),
            "{long:?}"
        );
        assert!(out.is_empty());
    }
}
