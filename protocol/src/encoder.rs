//! Encoding into a caller-owned buffer: whole messages with [`Encoder`], and event batches
//! one event at a time, straight into the outgoing buffer, with [`EventBatchWriter`].
//!
//! Every encode either appends one complete frame (the magic first, for the handshake
//! frames) or fails and leaves the buffer exactly as it was.

use crate::error::EncodeError;
use crate::event::{encoded_event_bytes, write_event, Event, EventView, HeaderPair};
use crate::frame::{FrameType, FrameWriter, RequestId};
use crate::limits::{validate_channel_name, MIN_MAX_FRAME_BYTES};
use crate::message::{Request, Response};
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
