//! The unit of data a channel carries: string headers and a byte body, as in Flume.

use std::collections::BTreeMap;

use bytes::Bytes;

/// An event: a map of string headers plus an opaque body.
///
/// Headers are kept sorted by key so that an event encodes to the same bytes every time.
/// The body is a [`Bytes`], so handing an event to several readers does not copy it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// String headers (Flume's `Map<String, String>`).
    pub headers: BTreeMap<String, String>,
    /// The payload.
    pub body: Bytes,
}

impl Event {
    /// An event with the given body and no headers.
    pub fn from_body(body: impl Into<Bytes>) -> Self {
        Event {
            headers: BTreeMap::new(),
            body: body.into(),
        }
    }

    /// Adds a header, replacing any earlier value under the same key.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// Bytes of header keys, header values and body: what the event costs to store,
    /// not counting framing.
    pub fn content_bytes(&self) -> usize {
        self.headers
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum::<usize>()
            + self.body.len()
    }
}
