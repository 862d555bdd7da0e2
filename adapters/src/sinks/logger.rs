//! The `logger` sink: each event as one line in Flume's `LoggerSink` format,
//!
//! ```text
//! Event: { headers:{file=/var/tmp/sink/1408896413071-6} body: 64 69 6E 67                                     ding }
//! ```
//!
//! The body shows its first `maxBytesToLog` bytes (16 by default) as a hex dump row:
//! 16 columns of upper-case hex, then the printable ASCII of the shown bytes, `.` for
//! the rest. Lines go to standard output, which channeld shares with the adapters it
//! starts.

use std::fmt::Write as _;
use std::io::Write as _;

use millrace_client::Event;

use super::SinkError;

/// Flume's default `maxBytesToLog`.
pub const DEFAULT_MAX_BYTES_TO_LOG: usize = 16;
/// Bytes in one hex dump row (commons-io `HexDump`).
const HEX_DUMP_ROW_BYTES: usize = 16;
/// First and last printable ASCII bytes.
const PRINTABLE_ASCII: std::ops::RangeInclusive<u8> = b' '..=b'~';

/// Writes events to standard output.
#[derive(Debug, Clone)]
pub struct LoggerSink {
    /// `maxBytesToLog`: how much of each body is shown.
    pub max_bytes_to_log: usize,
}

impl LoggerSink {
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
    for row in shown.chunks(HEX_DUMP_ROW_BYTES) {
        if !body.is_empty() {
            body.push('\n');
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
    fn an_empty_body_prints_nothing_after_body() {
        assert_eq!(
            format_flume_event(&Event::new(""), DEFAULT_MAX_BYTES_TO_LOG),
            "Event: { headers:{} body: }"
        );
    }
}
