//! The `logger` sink: each event as one line in Flume's `LoggerSink` format,
//!
//! ```text
//! Event: { headers:{file=/var/tmp/sink/1408896413071-6} body: 64 69 6E 67                                     ding }
//! ```
//!
//! The body shows its first `maxBytesToLog` bytes (16 by default) as Flume's
//! `EventHelper.dumpEvent` does, through commons-io's `HexDump.dump`: rows of 16 bytes,
//! each an 8-digit upper-case hex offset, then 16 columns of upper-case hex, then the
//! printable ASCII of the row's bytes (`.` for the rest). The first row's offset
//! (`00000000`) is dropped, later rows keep theirs (`00000010`, `00000020`, …), and rows
//! are separated by a line break:
//!
//! ```text
//! Event: { headers:{} body: 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66 0123456789abcdef
//! 00000010 67 68                                           gh }
//! ```
//!
//! Lines go to standard output, which channeld shares with the adapters it starts.

use std::fmt::Write as _;
use std::io::Write as _;

use millrace_client::Event;
use millrace_config::{values, ComponentSettings};

use super::{SinkError, DEFAULT_BATCH_SIZE};

/// Flume's default `maxBytesToLog`.
pub const DEFAULT_MAX_BYTES_TO_LOG: usize = 16;
/// Bytes in one hex dump row (commons-io `HexDump`).
const HEX_DUMP_ROW_BYTES: usize = 16;
/// Hex digits of a row's offset (commons-io `HexDump`).
const HEX_DUMP_OFFSET_DIGITS: usize = 8;
/// First and last printable ASCII bytes.
const PRINTABLE_ASCII: std::ops::RangeInclusive<u8> = b' '..=b'~';

/// Writes events to standard output.
#[derive(Debug, Clone)]
pub struct LoggerSink {
    /// `maxBytesToLog`: how much of each body is shown.
    pub max_bytes_to_log: usize,
}

impl LoggerSink {
    /// Reads a logger sink's keys (Flume's `LoggerSink`): the sink and its batch size.
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> (u64, LoggerSink) {
        let max_bytes = keys.parsed_or(
            "maxBytesToLog",
            DEFAULT_MAX_BYTES_TO_LOG as u64,
            values::non_negative_integer,
        );
        let batch_size = keys.count_or("batchSize", DEFAULT_BATCH_SIZE);
        let sink = LoggerSink {
            max_bytes_to_log: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        };
        (batch_size, sink)
    }

    /// Writes and flushes one line per event.
    pub fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let mut text = String::new();
        for event in events {
            text.push_str(&format_flume_event(event, self.max_bytes_to_log));
            text.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(SinkError::Stdout)
    }
}

/// One event as Flume's `LoggerSink` prints it, without the log prefix.
pub fn format_flume_event(event: &Event, max_bytes_to_log: usize) -> String {
    let headers = event
        .headers
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ");
    let shown = &event.body[..event.body.len().min(max_bytes_to_log)];
    let mut body = String::new();
    for (row_index, row) in shown.chunks(HEX_DUMP_ROW_BYTES).enumerate() {
        if row_index > 0 {
            // Flume strips only the first row's offset ("00000000").
            let offset = row_index * HEX_DUMP_ROW_BYTES;
            let _ = write!(body, "\n{offset:0width$X}", width = HEX_DUMP_OFFSET_DIGITS);
        }
        for column in 0..HEX_DUMP_ROW_BYTES {
            match row.get(column) {
                Some(byte) => {
                    let _ = write!(body, " {byte:02X}");
                }
                None => body.push_str("   "),
            }
        }
        body.push(' ');
        body.extend(row.iter().map(|&byte| {
            if PRINTABLE_ASCII.contains(&byte) {
                char::from(byte)
            } else {
                '.'
            }
        }));
    }
    format!("Event: {{ headers:{{{headers}}} body:{body} }}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_body_prints_as_flumes_padded_hex_row() {
        let event = Event::new("ding").with_header("file", "/var/tmp/sink/1408896413071-6");
        assert_eq!(
            format_flume_event(&event, DEFAULT_MAX_BYTES_TO_LOG),
            format!(
                "Event: {{ headers:{{file=/var/tmp/sink/1408896413071-6}} body: 64 69 6E 67{} ding }}",
                " ".repeat(36)
            )
        );
    }

    #[test]
    fn only_max_bytes_to_log_of_the_body_are_shown_and_unprintables_are_dots() {
        let event = Event::new(&b"a\tbcdefghijklmnopqrstuvwxyz"[..]);
        let line = format_flume_event(&event, 4);
        assert_eq!(
            line,
            format!(
                "Event: {{ headers:{{}} body: 61 09 62 63{} a.bc }}",
                " ".repeat(36)
            )
        );
    }

    #[test]
    fn rows_after_the_first_keep_flumes_hex_offset() {
        let event = Event::new(&b"0123456789abcdef0123456789ABCDEF\x00tail"[..]);
        assert_eq!(
            format_flume_event(&event, 64),
            format!(
                "Event: {{ headers:{{}} body: 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66 0123456789abcdef\n\
                 00000010 30 31 32 33 34 35 36 37 38 39 41 42 43 44 45 46 0123456789ABCDEF\n\
                 00000020 00 74 61 69 6C{} .tail }}",
                " ".repeat(33)
            )
        );
    }

    #[test]
    fn offsets_past_255_rows_stay_eight_upper_case_hex_digits() {
        let body = vec![b'z'; 4096 + 1];
        let dump = format_flume_event(&Event::new(body), 4096 + 1);
        let last_row = dump.lines().last().unwrap();
        assert!(last_row.starts_with("00001000 7A "), "{last_row}");
        assert!(dump.lines().nth(10).unwrap().starts_with("000000A0 "));
    }

    #[test]
    fn an_empty_body_prints_nothing_after_body() {
        assert_eq!(
            format_flume_event(&Event::new(""), DEFAULT_MAX_BYTES_TO_LOG),
            "Event: { headers:{} body: }"
        );
    }
}
