//! Flume's event record, `AvroFlumeEvent`, and its use as a plain Avro datum (the Kafka
//! channel's `parseAsFlumeEvent`, the Kafka sink's and source's `useFlumeEventFormat`).
//!
//! ```text
//! record org.apache.flume.source.avro.AvroFlumeEvent {
//!   map<string> headers;   blocks of (string key, string value), ended by 00
//!   bytes       body;      long length, then the bytes
//! }
//!
//! headers {k: v}, body "hi":   02  02 6b  02 76  00   04 68 69
//!                              one  "k"   "v"  end   "hi"
//! ```
//!
//! Decoding keeps headers in the order they arrived, except that a key seen again
//! replaces the earlier value in place (Java reads the map into a `HashMap`, so its last
//! value wins too). Header values cannot be null on this wire: a client protocol that
//! declares them nullable (`["null","string"]`) has a different layout and is refused at
//! the handshake (see [`check_protocol_compatible`](crate::check_protocol_compatible)).

use std::collections::HashMap;

use bytes::Bytes;

use crate::binary::{write_blocks, write_bytes, write_str, Reader, ValueError};
use crate::limits::CallLimits;

/// The smallest encoded header: an empty key and an empty value, one byte each.
pub(crate) const MIN_HEADER_BYTES: usize = 2;
/// The smallest encoded event: an empty map (`00`) and an empty body (`00`).
pub(crate) const MIN_EVENT_BYTES: usize = 2;
/// Up to this many headers, duplicates are found by comparing with each earlier key;
/// beyond it, through a hash map, so a hostile event cannot cost quadratic time.
const LINEAR_DUPLICATE_SCAN_HEADERS: usize = 16;

/// One Flume event as Avro RPC and the Kafka components carry it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AvroFlumeEvent {
    /// Headers in the order received (a repeated key keeps its first place and its last
    /// value).
    pub headers: Vec<(String, String)>,
    /// The body; when decoded, a slice of the received message, not a copy.
    pub body: Bytes,
}

impl AvroFlumeEvent {
    /// An event with this body and no headers.
    pub fn new(body: impl Into<Bytes>) -> Self {
        AvroFlumeEvent {
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Appends a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Appends this event's Avro encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_event(
            self.headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
            &self.body,
            out,
        );
    }
}

/// Appends the Avro encoding of an event given as borrowed parts: any header iterator that
/// can be walked twice (once to count, once to write) and a body. Lets a sink encode the
/// events it took without building [`AvroFlumeEvent`]s first.
pub fn encode_event<I, K, V>(headers: I, body: &[u8], out: &mut Vec<u8>)
where
    I: IntoIterator<Item = (K, V)>,
    I::IntoIter: Clone,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let headers = headers.into_iter();
    let count = headers.clone().count();
    write_blocks(out, count, |out| {
        for (key, value) in headers {
            write_str(out, key.as_ref());
            write_str(out, value.as_ref());
        }
    });
    write_bytes(out, body);
}

/// Counts headers across the events of one call against [`CallLimits::max_headers_per_call`].
#[derive(Debug)]
pub(crate) struct HeaderBudget {
    used: usize,
    max: usize,
}

impl HeaderBudget {
    pub(crate) fn new(limits: &CallLimits) -> Self {
        HeaderBudget {
            used: 0,
            max: limits.max_headers_per_call,
        }
    }
}

/// Reads one `AvroFlumeEvent`.
pub(crate) fn read_event(
    reader: &mut Reader<'_>,
    limits: &CallLimits,
    budget: &mut HeaderBudget,
) -> Result<AvroFlumeEvent, ValueError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let headers_offset = reader.position();
    let count = reader.read_blocks(
        "event.headers",
        limits.max_headers_per_event,
        MIN_HEADER_BYTES,
        &mut headers,
        |reader| {
            let key = reader.read_string("event.headers key", limits.max_string_bytes)?;
            let value = reader.read_string("event.headers value", limits.max_string_bytes)?;
            Ok((key, value))
        },
    )?;
    // The per-event cap bounds what one event may allocate; the call's cap is checked
    // once the event's headers are counted.
    budget.used += count;
    if budget.used > budget.max {
        return Err(ValueError::TooManyItems {
            field: "headers of all events in the call",
            offset: headers_offset,
            count: budget.used as u64,
            max_count: budget.max as u64,
        });
    }
    remove_duplicate_keys(&mut headers);
    let body = reader.read_bytes("event.body", usize::MAX)?;
    Ok(AvroFlumeEvent { headers, body })
}

/// Keeps the first place and the last value of every key, as a Java `HashMap` would keep
/// the last value.
fn remove_duplicate_keys(headers: &mut Vec<(String, String)>) {
    if headers.len() < 2 {
        return;
    }
    if headers.len() <= LINEAR_DUPLICATE_SCAN_HEADERS {
        let mut index = 1;
        while index < headers.len() {
            if let Some(first) = headers[..index]
                .iter()
                .position(|(key, _)| *key == headers[index].0)
            {
                let (_, value) = headers.remove(index);
                headers[first].1 = value;
            } else {
                index += 1;
            }
        }
        return;
    }
    let mut first_place: HashMap<String, usize> = HashMap::with_capacity(headers.len());
    let mut kept: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (key, value) in headers.drain(..) {
        match first_place.get(&key) {
            Some(&place) => kept[place].1 = value,
            None => {
                first_place.insert(key.clone(), kept.len());
                kept.push((key, value));
            }
        }
    }
    *headers = kept;
}

/// Encodes one event as Flume's Kafka components write a record value with
/// `useFlumeEventFormat` / `parseAsFlumeEvent`: the bare Avro datum, with no container
/// header, no single-object marker, no schema and no length prefix.
pub fn encode_event_datum(event: &AvroFlumeEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.body.len() + MIN_EVENT_BYTES);
    event.encode(&mut out);
    out
}

/// Decodes a Kafka record value written as a bare `AvroFlumeEvent` datum. The body is a
/// slice of `value`. Unlike Flume (which ignores them), bytes after the datum are an
/// error: they mean the value is not what the writer's schema says.
pub fn decode_event_datum(
    value: &Bytes,
    limits: &CallLimits,
) -> Result<AvroFlumeEvent, ValueError> {
    let mut reader = Reader::new(value);
    let mut budget = HeaderBudget::new(limits);
    let event = read_event(&mut reader, limits, &mut budget)?;
    reader.finish("the AvroFlumeEvent datum")?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_datum_encodes_to_its_worked_bytes() {
        let event = AvroFlumeEvent::new("hi").with_header("k", "v");
        assert_eq!(
            encode_event_datum(&event),
            [0x02, 0x02, 0x6b, 0x02, 0x76, 0x00, 0x04, 0x68, 0x69]
        );
        let decoded = decode_event_datum(
            &Bytes::from(encode_event_datum(&event)),
            &CallLimits::default(),
        )
        .unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn an_event_without_headers_is_an_empty_map_then_the_body() {
        assert_eq!(
            encode_event_datum(&AvroFlumeEvent::new(&b""[..])),
            [0x00, 0x00]
        );
    }

    #[test]
    fn a_repeated_header_key_keeps_its_first_place_and_its_last_value() {
        // {a: 1, b: 2, a: 3} in one block.
        let datum = Bytes::from_static(&[
            0x06, 0x02, b'a', 0x02, b'1', 0x02, b'b', 0x02, b'2', 0x02, b'a', 0x02, b'3', 0x00,
            0x00,
        ]);
        let event = decode_event_datum(&datum, &CallLimits::default()).unwrap();
        assert_eq!(
            event.headers,
            [
                ("a".to_string(), "3".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
    }

    #[test]
    fn many_repeated_keys_are_deduplicated_the_same_way_through_the_hash_map() {
        let mut headers: Vec<(String, String)> = (0..40)
            .map(|i| (format!("k{}", i % 20), i.to_string()))
            .collect();
        remove_duplicate_keys(&mut headers);
        let expected: Vec<(String, String)> = (0..20)
            .map(|i| (format!("k{i}"), (i + 20).to_string()))
            .collect();
        assert_eq!(headers, expected);
    }

    #[test]
    fn headers_over_the_per_event_cap_are_refused_naming_it() {
        let limits = CallLimits {
            max_headers_per_event: 2,
            ..CallLimits::default()
        };
        let event = AvroFlumeEvent::new("x")
            .with_header("a", "1")
            .with_header("b", "2")
            .with_header("c", "3");
        let error =
            decode_event_datum(&Bytes::from(encode_event_datum(&event)), &limits).unwrap_err();
        assert_eq!(
            error,
            ValueError::TooManyItems {
                field: "event.headers",
                offset: 0,
                count: 3,
                max_count: 2
            }
        );
    }

    #[test]
    fn a_datum_with_trailing_bytes_is_refused() {
        let datum = Bytes::from_static(&[0x00, 0x02, b'x', 0xff]);
        assert_eq!(
            decode_event_datum(&datum, &CallLimits::default()),
            Err(ValueError::TrailingBytes {
                after: "the AvroFlumeEvent datum",
                trailing_bytes: 1
            })
        );
    }
}
