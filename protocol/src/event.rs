//! Events on the wire: their layout, an owned [`Event`], a borrowing [`EventView`] and the
//! [`EventBatch`] that `Put`, `PutCommit` and `Events` frames carry.
//!
//! ```text
//! event batch
//! +--------------------+-----------------------------------------+
//! | event_count: u32   | event × event_count                     |
//! +--------------------+-----------------------------------------+
//!
//! event
//! +--------------------+------------------------------------------+-----------------+-------------+
//! | header_count: u16  | header × header_count                    | body_len: u32   | body        |
//! |                    | key_len: u16, key (UTF-8),               |                 | body_len    |
//! |                    | value_len: u16, value (UTF-8)            |                 | bytes       |
//! +--------------------+------------------------------------------+-----------------+-------------+
//! ```
//!
//! Headers are a list in the sender's order; the protocol neither sorts nor deduplicates
//! them. An event with no headers and an empty body is six bytes.
//!
//! Decoding a batch validates every event once (bounds and UTF-8) and allocates nothing:
//! the batch keeps the frame's [`Bytes`] and hands out views into it, and
//! [`EventBatch::shared_events`] gives owned events whose bodies share that allocation.

use std::fmt;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::error::{EncodeError, Malformation};
use crate::wire::{put_string, put_u16, put_u32, OutputBuffer, Reader, MAX_STRING_BYTES};

/// Bytes of an event's header count.
const HEADER_COUNT_BYTES: usize = 2;
/// Bytes of an event's body length.
const BODY_LENGTH_BYTES: usize = 4;
/// Bytes of the length in front of a header key or value.
const HEADER_STRING_LENGTH_BYTES: usize = 2;
/// Bytes of a batch's event count.
pub(crate) const EVENT_COUNT_BYTES: usize = 4;
/// The smallest event on the wire: no headers, empty body.
pub const MIN_EVENT_BYTES: usize = HEADER_COUNT_BYTES + BODY_LENGTH_BYTES;

/// The most headers one event carries (the count is a `u16`).
pub const MAX_HEADERS_PER_EVENT: usize = u16::MAX as usize;
/// The longest header key or value (its length is a `u16`).
pub const MAX_HEADER_STRING_BYTES: usize = MAX_STRING_BYTES;
/// The longest body the layout can describe (its length is a `u32`). In practice the
/// receiver's `max_frame_bytes` is the tighter bound.
pub const MAX_BODY_BYTES: usize = u32::MAX as usize;

/// Headers of an event that has none, for the `push` methods:
/// `writer.push(NO_HEADERS, body)`.
pub const NO_HEADERS: [(&str, &str); 0] = [];

/// An event owned by the caller: string headers in order and a byte body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// Headers in the order they are sent.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub body: Bytes,
}

impl Event {
    /// An event with this body and no headers.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Event {
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Appends a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// The value of the first header with this key.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header_key, _)| header_key == key)
            .map(|(_, value)| value.as_str())
    }
}

/// Anything that can be read as one header: `(K, V)` for string-like `K` and `V`, and
/// references to those. It lets the encoders take a `&[(String, String)]`, a
/// `&BTreeMap<String, String>` or a view's headers without converting them first.
pub trait HeaderPair {
    /// The header's key.
    fn key(&self) -> &str;
    /// The header's value.
    fn value(&self) -> &str;
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderPair for (K, V) {
    fn key(&self) -> &str {
        self.0.as_ref()
    }

    fn value(&self) -> &str {
        self.1.as_ref()
    }
}

impl<T: HeaderPair + ?Sized> HeaderPair for &T {
    fn key(&self) -> &str {
        (**self).key()
    }

    fn value(&self) -> &str {
        (**self).value()
    }
}

/// The size of an `Events` (or `Put`) frame carrying one event of `event_bytes` (as
/// [`encoded_event_bytes`] gives it), length prefix included: the largest frame a peer
/// must accept for that event to travel at all.
pub fn single_event_frame_bytes(event_bytes: usize) -> u64 {
    (crate::frame::FRAME_HEADER_BYTES + EVENT_COUNT_BYTES + event_bytes) as u64
}

/// The encoded size of an event with these headers and a body of `body_bytes`, after
/// checking that every length fits its field. Iterates `headers` once.
pub fn encoded_event_bytes<H>(headers: H, body_bytes: usize) -> Result<usize, EncodeError>
where
    H: IntoIterator,
    H::Item: HeaderPair,
{
    let mut header_count = 0usize;
    let mut total_bytes = HEADER_COUNT_BYTES + BODY_LENGTH_BYTES;
    for header in headers {
        header_count += 1;
        for (field, text) in [
            ("header key", header.key()),
            ("header value", header.value()),
        ] {
            if text.len() > MAX_HEADER_STRING_BYTES {
                return Err(EncodeError::FieldTooLong {
                    field,
                    len_bytes: text.len(),
                    max_bytes: MAX_HEADER_STRING_BYTES,
                });
            }
            total_bytes += HEADER_STRING_LENGTH_BYTES + text.len();
        }
    }
    if header_count > MAX_HEADERS_PER_EVENT {
        return Err(EncodeError::TooManyEntries {
            field: "headers",
            count: header_count,
            max_count: MAX_HEADERS_PER_EVENT,
        });
    }
    if body_bytes > MAX_BODY_BYTES {
        return Err(EncodeError::FieldTooLong {
            field: "body",
            len_bytes: body_bytes,
            max_bytes: MAX_BODY_BYTES,
        });
    }
    Ok(total_bytes + body_bytes)
}

/// Writes an event whose lengths [`encoded_event_bytes`] has checked.
pub(crate) fn write_event<O, H>(out: &mut O, headers: H, body: &[u8])
where
    O: OutputBuffer + ?Sized,
    H: IntoIterator,
    H::Item: HeaderPair,
    H::IntoIter: Clone,
{
    let headers = headers.into_iter();
    put_u16(out, headers.clone().count() as u16);
    for header in headers {
        put_string(out, header.key());
        put_string(out, header.value());
    }
    put_u32(out, body.len() as u32);
    out.append_bytes(body);
}

/// One event inside a received batch, borrowed from the frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    header_count: u16,
    /// The header entries, after the count.
    encoded_headers: &'a [u8],
    body: &'a [u8],
    /// The whole event as it is on the wire.
    encoded: &'a [u8],
}

impl<'a> EventView<'a> {
    /// The headers in wire order.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            reader: Reader::new(self.encoded_headers),
            remaining: self.header_count,
        }
    }

    /// The value of the first header with this key.
    pub fn header(&self, key: &str) -> Option<&'a str> {
        self.headers()
            .find(|(header_key, _)| *header_key == key)
            .map(|(_, value)| value)
    }

    /// How many headers the event has.
    pub fn header_count(&self) -> usize {
        usize::from(self.header_count)
    }

    /// The body.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The event exactly as it is on the wire (see the module doc), for copying it
    /// onwards without decoding it.
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// An owned copy.
    pub fn to_event(&self) -> Event {
        Event {
            headers: self
                .headers()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
            body: Bytes::copy_from_slice(self.body),
        }
    }
}

impl fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventView")
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body", &format_args!("\"{}\"", self.body.escape_ascii()))
            .finish()
    }
}

/// The headers of an [`EventView`], as `(key, value)` in wire order.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    reader: Reader<'a>,
    remaining: u16,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // The batch was validated when it was decoded or built, so these reads succeed;
        // if they did not, the iterator would end instead of panicking.
        let key = self.reader.string("header key").ok()?;
        let value = self.reader.string("header value").ok()?;
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = usize::from(self.remaining);
        (remaining, Some(remaining))
    }
}

/// Reads and validates one event; returns it and the range of its body in the reader's
/// input.
fn parse_event<'a>(
    reader: &mut Reader<'a>,
    input: &'a [u8],
) -> Result<(EventView<'a>, Range<usize>), Malformation> {
    let event_start = reader.position();
    let header_count = reader.u16("header count")?;
    let headers_start = reader.position();
    for _ in 0..header_count {
        reader.string("header key")?;
        reader.string("header value")?;
    }
    let headers_end = reader.position();
    let body_len = reader.u32("body length")? as usize;
    let body_start = reader.position();
    let body = reader.take(body_len, "body")?;
    let event_end = reader.position();
    let view = EventView {
        header_count,
        encoded_headers: &input[headers_start..headers_end],
        body,
        encoded: &input[event_start..event_end],
    };
    Ok((view, body_start..event_end))
}

/// The events of a `Put`, `PutCommit` or `Events` frame: validated, encoded, and cheap to
/// clone (the bytes are shared).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EventBatch {
    event_count: u32,
    /// The events back to back, without the count.
    encoded: Bytes,
}

impl EventBatch {
    /// A batch with no events.
    pub fn new() -> Self {
        EventBatch::default()
    }

    /// Encodes owned events into a batch.
    pub fn from_events<'e>(
        events: impl IntoIterator<Item = &'e Event>,
    ) -> Result<Self, EncodeError> {
        let mut builder = EventBatchBuilder::new();
        for event in events {
            builder.push_event(event)?;
        }
        Ok(builder.build())
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.event_count as usize
    }

    /// True when the batch holds no events.
    pub fn is_empty(&self) -> bool {
        self.event_count == 0
    }

    /// Borrowing views of the events, in order. Allocates nothing.
    pub fn iter(&self) -> EventIter<'_> {
        EventIter {
            reader: Reader::new(&self.encoded),
            input: &self.encoded,
            remaining: self.event_count,
        }
    }

    /// Owned events, in order, whose bodies share this batch's bytes (no copy); only the
    /// header strings are allocated.
    pub fn shared_events(&self) -> SharedEvents<'_> {
        SharedEvents {
            views: self.iter(),
            encoded: &self.encoded,
        }
    }

    /// The same batch in a buffer of its own: its bytes copied out of whatever larger
    /// buffer they were decoded from (a connection's read buffer, say), so that events
    /// kept from it hold on to their own batch only, not to the buffer around it.
    pub fn unshared(&self) -> EventBatch {
        EventBatch {
            event_count: self.event_count,
            encoded: Bytes::copy_from_slice(&self.encoded),
        }
    }

    /// All events as owned values (bodies shared, as in [`shared_events`](Self::shared_events)).
    pub fn to_events(&self) -> Vec<Event> {
        self.shared_events().collect()
    }

    /// The events back to back as on the wire, without the leading count.
    pub fn encoded_events(&self) -> &[u8] {
        &self.encoded
    }

    /// Bytes this batch takes in a frame: the count plus the events.
    pub fn encoded_bytes(&self) -> usize {
        EVENT_COUNT_BYTES + self.encoded.len()
    }

    pub(crate) fn write<O: OutputBuffer + ?Sized>(&self, out: &mut O) {
        put_u32(out, self.event_count);
        out.append_bytes(&self.encoded);
    }

    /// Reads and validates a batch from `reader`, which reads `payload`; the batch keeps a
    /// slice of `payload` instead of copying.
    pub(crate) fn parse<'a>(
        reader: &mut Reader<'a>,
        payload: &'a Bytes,
    ) -> Result<Self, Malformation> {
        let event_count = reader.u32("event count")?;
        let events_start = reader.position();
        // No allocation depends on event_count: every event takes at least
        // MIN_EVENT_BYTES, so a count larger than the payload can hold ends in
        // `Truncated` after at most payload/MIN_EVENT_BYTES iterations.
        for _ in 0..event_count {
            parse_event(reader, payload)?;
        }
        Ok(EventBatch {
            event_count,
            encoded: payload.slice(events_start..reader.position()),
        })
    }
}

impl fmt::Debug for EventBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'b> IntoIterator for &'b EventBatch {
    type Item = EventView<'b>;
    type IntoIter = EventIter<'b>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Views of a batch's events, in order.
#[derive(Debug, Clone)]
pub struct EventIter<'b> {
    reader: Reader<'b>,
    input: &'b [u8],
    remaining: u32,
}

impl<'b> EventIter<'b> {
    fn next_with_body_range(&mut self) -> Option<(EventView<'b>, Range<usize>)> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // Validated when the batch was decoded or built: cannot fail, and ends the
        // iteration instead of panicking if it ever did.
        parse_event(&mut self.reader, self.input).ok()
    }
}

impl<'b> Iterator for EventIter<'b> {
    type Item = EventView<'b>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_body_range().map(|(view, _)| view)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.remaining as usize;
        (remaining, Some(remaining))
    }
}

/// Owned events of a batch whose bodies share the batch's bytes.
#[derive(Debug, Clone)]
pub struct SharedEvents<'b> {
    views: EventIter<'b>,
    encoded: &'b Bytes,
}

impl Iterator for SharedEvents<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let (view, body_range) = self.views.next_with_body_range()?;
        Some(Event {
            headers: view
                .headers()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
            body: self.encoded.slice(body_range),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.views.size_hint()
    }
}

/// Builds an [`EventBatch`] in memory, one event at a time. To write a batch straight
/// into an outgoing buffer instead, use [`Encoder::put_writer`](crate::Encoder::put_writer).
#[derive(Debug, Default)]
pub struct EventBatchBuilder {
    event_count: u32,
    encoded: BytesMut,
}

impl EventBatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        EventBatchBuilder::default()
    }

    /// Appends an event.
    pub fn push<H>(&mut self, headers: H, body: &[u8]) -> Result<(), EncodeError>
    where
        H: IntoIterator,
        H::Item: HeaderPair,
        H::IntoIter: Clone,
    {
        let headers = headers.into_iter();
        encoded_event_bytes(headers.clone(), body.len())?;
        let event_count = self
            .event_count
            .checked_add(1)
            .ok_or(EncodeError::TooManyEntries {
                field: "events",
                count: self.event_count as usize + 1,
                max_count: u32::MAX as usize,
            })?;
        write_event(&mut self.encoded, headers, body);
        self.event_count = event_count;
        Ok(())
    }

    /// Appends an owned event.
    pub fn push_event(&mut self, event: &Event) -> Result<(), EncodeError> {
        self.push(&event.headers, &event.body)
    }

    /// Appends a received event as it is, without re-encoding it.
    pub fn push_view(&mut self, event: &EventView<'_>) -> Result<(), EncodeError> {
        let event_count = self
            .event_count
            .checked_add(1)
            .ok_or(EncodeError::TooManyEntries {
                field: "events",
                count: self.event_count as usize + 1,
                max_count: u32::MAX as usize,
            })?;
        self.encoded.extend_from_slice(event.encoded());
        self.event_count = event_count;
        Ok(())
    }

    /// Events so far.
    pub fn len(&self) -> usize {
        self.event_count as usize
    }

    /// True before the first event.
    pub fn is_empty(&self) -> bool {
        self.event_count == 0
    }

    /// The finished batch.
    pub fn build(self) -> EventBatch {
        EventBatch {
            event_count: self.event_count,
            encoded: self.encoded.freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sample_events() -> Vec<Event> {
        vec![
            Event::new("first")
                .with_header("host", "web-1")
                .with_header("timestamp", "1700000000000"),
            Event::new(Vec::new()),
            Event::new(vec![0u8, 159, 146, 150]).with_header("ünïcödé", "✓"),
        ]
    }

    fn decode(batch_bytes: Vec<u8>) -> Result<EventBatch, Malformation> {
        let payload = Bytes::from(batch_bytes);
        let mut reader = Reader::new(&payload);
        let batch = EventBatch::parse(&mut reader, &payload)?;
        reader.finish()?;
        Ok(batch)
    }

    fn encode(batch: &EventBatch) -> Vec<u8> {
        let mut out = Vec::new();
        batch.write(&mut out);
        out
    }

    #[test]
    fn empty_event_is_six_bytes() {
        assert_eq!(encoded_event_bytes(NO_HEADERS, 0), Ok(MIN_EVENT_BYTES));
        let batch = EventBatch::from_events(&[Event::default()]).unwrap();
        assert_eq!(batch.encoded_events(), [0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn event_layout_is_count_then_headers_then_body() {
        let batch = EventBatch::from_events(&[Event::new("hi").with_header("k", "v")]).unwrap();
        assert_eq!(
            encode(&batch),
            [1, 0, 0, 0, 1, 0, 1, 0, b'k', 1, 0, b'v', 2, 0, 0, 0, b'h', b'i']
        );
    }

    #[test]
    fn batch_round_trips_with_headers_in_order() {
        let events = sample_events();
        let batch = EventBatch::from_events(&events).unwrap();
        let decoded = decode(encode(&batch)).unwrap();
        assert_eq!(decoded, batch);
        assert_eq!(decoded.to_events(), events);
        assert_eq!(decoded.len(), 3);
    }

    #[test]
    fn views_borrow_headers_and_body_from_the_frame() {
        let batch = EventBatch::from_events(&sample_events()).unwrap();
        let first = batch.iter().next().unwrap();
        assert_eq!(first.header("timestamp"), Some("1700000000000"));
        assert_eq!(first.header("missing"), None);
        assert_eq!(first.header_count(), 2);
        assert_eq!(first.body(), b"first");
        let range = batch.encoded_events().as_ptr_range();
        assert!(range.contains(&first.body().as_ptr()));
    }

    #[test]
    fn shared_events_reuse_the_batch_allocation_for_bodies() {
        let batch = decode(encode(&EventBatch::from_events(&sample_events()).unwrap())).unwrap();
        let range = batch.encoded_events().as_ptr_range();
        let first = batch.shared_events().next().unwrap();
        assert!(range.contains(&first.body.as_ptr()));
    }

    #[test]
    fn btree_map_headers_can_be_encoded_directly() {
        let headers = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]);
        let mut builder = EventBatchBuilder::new();
        builder.push(&headers, b"x").unwrap();
        let batch = builder.build();
        let view = batch.iter().next().unwrap();
        assert_eq!(view.headers().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
    }

    #[test]
    fn view_can_be_copied_into_another_batch_unchanged() {
        let original = EventBatch::from_events(&sample_events()).unwrap();
        let mut builder = EventBatchBuilder::new();
        for view in &original {
            builder.push_view(&view).unwrap();
        }
        assert_eq!(builder.build(), original);
    }

    #[test]
    fn event_count_larger_than_the_payload_is_truncation() {
        assert_eq!(
            decode(vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0]),
            Err(Malformation::Truncated {
                field: "header count"
            })
        );
    }

    #[test]
    fn body_length_past_the_end_is_truncation() {
        assert_eq!(
            decode(vec![1, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, b'x']),
            Err(Malformation::Truncated { field: "body" })
        );
    }

    #[test]
    fn header_that_is_not_utf8_is_rejected() {
        assert_eq!(
            decode(vec![1, 0, 0, 0, 1, 0, 1, 0, 0xFF, 0, 0, 0, 0, 0, 0]),
            Err(Malformation::InvalidUtf8 {
                field: "header key"
            })
        );
    }

    #[test]
    fn overlong_header_value_is_refused_on_encode() {
        let long = "x".repeat(MAX_HEADER_STRING_BYTES + 1);
        let mut builder = EventBatchBuilder::new();
        assert_eq!(
            builder.push([("k", long.as_str())], b""),
            Err(EncodeError::FieldTooLong {
                field: "header value",
                len_bytes: MAX_HEADER_STRING_BYTES + 1,
                max_bytes: MAX_HEADER_STRING_BYTES
            })
        );
        assert!(builder.is_empty());
    }

    #[test]
    fn an_unshared_batch_has_the_same_events_in_bytes_of_its_own() {
        let batch = EventBatch::from_events(&sample_events()).unwrap();
        let unshared = batch.unshared();
        assert_eq!(unshared, batch);
        assert_eq!(unshared.to_events(), sample_events());
        assert_ne!(
            unshared.encoded_events().as_ptr(),
            batch.encoded_events().as_ptr(),
            "the unshared batch's bytes are a copy"
        );
    }
}
