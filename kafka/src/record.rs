//! A Kafka record value, as Flume's Kafka components write and read it.
//!
//! ```text
//! useFlumeEventFormat = false (the sink's and source's default):  value = the body
//! useFlumeEventFormat = true  (parseAsFlumeEvent, the channel's default):
//!     value = AvroFlumeEvent datum = map<string> headers, bytes body
//!     headers {k: v}, body "hi":  02 02 6b 02 76 00 04 68 69
//! ```
//!
//! No container header, no single-object marker, no schema, no length prefix: the
//! bare datum (see `docs/avro.md`). The encoding is `millrace-avro`'s, the one the avro
//! source and sink use.

use bytes::Bytes;
use millrace_avro::{decode_event_datum, encode_event, AvroFlumeEvent, CallLimits, ValueError};
use millrace_protocol::Event;
use thiserror::Error;

/// A record value that is not an `AvroFlumeEvent` datum.
#[derive(Debug, Error)]
#[error("the record value ({value_bytes} bytes) is not an AvroFlumeEvent datum: {source}")]
pub struct RecordValueError {
    /// The value's length.
    pub value_bytes: usize,
    /// Where decoding stopped and why.
    #[source]
    pub source: ValueError,
}

/// Appends the record value of `event` to `out`: its body, or its `AvroFlumeEvent`
/// datum when `flume_event_format`.
pub fn encode_value(event: &Event, flume_event_format: bool, out: &mut Vec<u8>) {
    if flume_event_format {
        encode_event(
            event
                .headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
            &event.body,
            out,
        );
    } else {
        out.extend_from_slice(&event.body);
    }
}

/// The event a record value holds: the value as the body (no headers), or the decoded
/// `AvroFlumeEvent` when `flume_event_format`. The body is a slice of `value`.
pub fn decode_value(value: Bytes, flume_event_format: bool) -> Result<Event, RecordValueError> {
    if !flume_event_format {
        return Ok(Event::new(value));
    }
    let value_bytes = value.len();
    let AvroFlumeEvent { headers, body } =
        decode_event_datum(&value, &record_limits()).map_err(|source| RecordValueError {
            value_bytes,
            source,
        })?;
    Ok(Event { headers, body })
}

/// What one record may hold: the avro codec's per-event header bounds, which also bound
/// what a hostile record can make us allocate.
fn record_limits() -> CallLimits {
    CallLimits::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flume_event_value_is_the_bare_avro_datum() {
        let event = Event::new("hi").with_header("k", "v");
        let mut value = Vec::new();
        encode_value(&event, true, &mut value);
        assert_eq!(
            value,
            [0x02, 0x02, 0x6b, 0x02, 0x76, 0x00, 0x04, 0x68, 0x69]
        );
        assert_eq!(decode_value(Bytes::from(value), true).unwrap(), event);
    }

    #[test]
    fn a_plain_value_is_the_body_and_loses_the_headers() {
        let event = Event::new("hi").with_header("k", "v");
        let mut value = Vec::new();
        encode_value(&event, false, &mut value);
        assert_eq!(value, b"hi");
        assert_eq!(
            decode_value(Bytes::from(value), false).unwrap(),
            Event::new("hi")
        );
    }

    #[test]
    fn a_value_that_is_not_a_datum_is_an_error_naming_its_length() {
        let error = decode_value(Bytes::from_static(b"\x02\x02k"), true).unwrap_err();
        assert_eq!(error.value_bytes, 3);
        assert!(error.to_string().contains("3 bytes"), "{error}");
    }
}
