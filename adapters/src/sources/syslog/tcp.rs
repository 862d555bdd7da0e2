//! `syslogtcp`: syslog messages over TCP connections.
//!
//! Framing: a message ends at `\n` (empty lines are skipped, as in Flume), or, when the
//! sender uses octet counting (RFC 6587: `LEN SP <PRI>…`), after `LEN` bytes. A message
//! longer than `eventSize` is cut there and marked `Incomplete`; the rest of it (up to
//! its newline or its counted length) is skipped.
//!
//! Each connection reads what the socket has, cuts it into messages and delivers them
//! (at most `batchSize` per transaction, fewer when the channel's `transactionCapacity`
//! is smaller) before reading on. While the channel is full it waits and retries the
//! messages not yet committed, and stops reading meanwhile: the sender is slowed down by
//! TCP flow control and nothing is lost.
//!
//! The listener serves at most `maxConnections` senders and disconnects one silent for
//! `idleTimeout`; all senders share the source's few connections to channeld (see
//! [`crate::pool`]), so many senders cannot take channeld's connection slots.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{debug, error};

use super::{message_event, SyslogSettings};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::sources::{host_port, listen_tcp, serve_connections, ProcessorFactory, SourceError};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Most digits an octet count may have (up to 999 999 999 bytes).
const MAX_OCTET_COUNT_DIGITS: usize = 9;

/// Accepts connections until `stop` is raised.
pub async fn run(
    settings: SyslogSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    stop: StopSignal,
) -> Result<(), SourceError> {
    let listener = listen_tcp(&host_port(&settings.host, settings.port), "syslogtcp").await?;
    let settings = Arc::new(settings);
    let connection_counters = Arc::clone(&counters);
    let connection_stop = stop.clone();
    let limits = settings.listener;
    serve_connections(
        listener,
        "syslogtcp",
        limits,
        counters,
        stop,
        move |stream, peer| {
            let settings = Arc::clone(&settings);
            let processors = processors.clone();
            let counters = Arc::clone(&connection_counters);
            let stop = connection_stop.clone();
            async move {
                serve_connection(stream, peer, &settings, &processors, &counters, None, stop).await
            }
        },
    )
    .await
}

/// Reads one sender's messages and delivers them; `extra_header` is added to every
/// event (the local port, for `multiport_syslogtcp`'s `portHeader`).
pub(crate) async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    settings: &SyslogSettings,
    processors: &ProcessorFactory,
    counters: &SourceCounters,
    extra_header: Option<&(String, String)>,
    mut stop: StopSignal,
) -> std::io::Result<()> {
    let mut processor = processors.build();
    let mut framer = MessageFramer::new(settings.event_size_bytes);
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut events = Vec::new();
    loop {
        buffer.reserve(READ_CHUNK_BYTES);
        let read_bytes = tokio::select! {
            read = settings.listener.read_or_idle(stream.read_buf(&mut buffer)) => match read? {
                Some(read_bytes) => read_bytes,
                None => {
                    debug!(%peer, "syslog sender idle past idleTimeout; disconnected");
                    break;
                }
            },
            () = stop.raised() => break,
        };
        let input_ended = read_bytes == 0;
        while let Some(frame) = framer.next_message(&mut buffer, input_ended) {
            let mut event =
                message_event(&frame.message, frame.truncated, peer, settings, counters);
            if let Some(header) = extra_header {
                event.headers.push(header.clone());
            }
            events.push(event);
        }
        for batch in events.chunks(settings.batch_size.max(1)) {
            counters::increment(&counters.append_batches_received);
            match processor.deliver_patiently(batch, &mut stop).await {
                Ok(Ok(())) => counters::increment(&counters.append_batches_accepted),
                Ok(Err(refused)) => error!(
                    %peer,
                    error = %refused,
                    "the channel refused syslog messages; they are lost (configure deadLetter.channel to keep refused messages)"
                ),
                Err(_stopped) => {
                    processor.close();
                    return Ok(());
                }
            }
        }
        events.clear();
        if input_ended {
            break;
        }
    }
    processor.close();
    Ok(())
}

/// One message cut out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its bytes, without the delimiter.
    pub message: Bytes,
    /// Whether it was cut at `eventSize`.
    pub truncated: bool,
}

/// What to skip before the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    /// The rest of an over-long line.
    ToNewline,
    /// The rest of an over-long octet-counted message.
    Bytes(usize),
}

/// How the message at the front of the buffer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `LEN SP` then `LEN` bytes.
    OctetCounted {
        header_bytes: usize,
        message_bytes: usize,
    },
    /// Up to the next `\n`.
    NewlineDelimited,
    /// Only digits so far: more bytes are needed to tell.
    Undecided,
}

fn framing_of(buffer: &[u8]) -> Framing {
    let digits = buffer
        .iter()
        .take(MAX_OCTET_COUNT_DIGITS + 1)
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 || digits > MAX_OCTET_COUNT_DIGITS || buffer[0] == b'0' {
        return Framing::NewlineDelimited;
    }
    match (buffer.get(digits), buffer.get(digits + 1)) {
        (None, _) | (Some(b' '), None) => Framing::Undecided,
        (Some(b' '), Some(b'<')) => {
            let count = std::str::from_utf8(&buffer[..digits])
                .ok()
                .and_then(|text| text.parse().ok());
            match count {
                Some(message_bytes) => Framing::OctetCounted {
                    header_bytes: digits + 1,
                    message_bytes,
                },
                None => Framing::NewlineDelimited,
            }
        }
        _ => Framing::NewlineDelimited,
    }
}

/// Cuts a TCP byte stream into syslog messages of at most `max_message_bytes`.
#[derive(Debug)]
pub struct MessageFramer {
    max_message_bytes: usize,
    skip: Skip,
}

impl MessageFramer {
    /// Messages longer than `max_message_bytes` are cut.
    pub fn new(max_message_bytes: usize) -> Self {
        MessageFramer {
            max_message_bytes: max_message_bytes.max(1),
            skip: Skip::Nothing,
        }
    }

    /// The next whole message in `buffer`, removed from it; `None` until more bytes
    /// arrive. Once `input_ended`, what is left is the last message.
    pub fn next_message(&mut self, buffer: &mut BytesMut, input_ended: bool) -> Option<Frame> {
        if !self.skip_leftovers(buffer) {
            return None;
        }
        let blank_lines = buffer.iter().take_while(|&&byte| byte == b'\n').count();
        buffer.advance(blank_lines);
        if buffer.is_empty() {
            return None;
        }
        match framing_of(buffer) {
            Framing::Undecided if !input_ended => None,
            Framing::OctetCounted {
                header_bytes,
                message_bytes,
            } => self.octet_counted(buffer, header_bytes, message_bytes, input_ended),
            Framing::Undecided | Framing::NewlineDelimited => {
                self.newline_delimited(buffer, input_ended)
            }
        }
    }

    /// Drops what is left of a cut message; `false` while there is more to drop.
    fn skip_leftovers(&mut self, buffer: &mut BytesMut) -> bool {
        match self.skip {
            Skip::Nothing => true,
            Skip::ToNewline => match buffer.iter().position(|&byte| byte == b'\n') {
                Some(newline) => {
                    buffer.advance(newline + 1);
                    self.skip = Skip::Nothing;
                    true
                }
                None => {
                    buffer.clear();
                    false
                }
            },
            Skip::Bytes(remaining) => {
                let dropped = remaining.min(buffer.len());
                buffer.advance(dropped);
                if dropped < remaining {
                    self.skip = Skip::Bytes(remaining - dropped);
                    false
                } else {
                    self.skip = Skip::Nothing;
                    true
                }
            }
        }
    }

    fn octet_counted(
        &mut self,
        buffer: &mut BytesMut,
        header_bytes: usize,
        message_bytes: usize,
        input_ended: bool,
    ) -> Option<Frame> {
        let kept_bytes = message_bytes.min(self.max_message_bytes);
        if buffer.len() < header_bytes + kept_bytes {
            if !input_ended {
                return None;
            }
            // The sender closed in the middle of a message: deliver what came.
            buffer.advance(header_bytes);
            return Some(Frame {
                message: buffer.split().freeze(),
                truncated: true,
            });
        }
        buffer.advance(header_bytes);
        let message = buffer.split_to(kept_bytes).freeze();
        let truncated = message_bytes > kept_bytes;
        if truncated {
            self.skip = Skip::Bytes(message_bytes - kept_bytes);
        }
        Some(Frame { message, truncated })
    }

    fn newline_delimited(&mut self, buffer: &mut BytesMut, input_ended: bool) -> Option<Frame> {
        let window = buffer.len().min(self.max_message_bytes + 1);
        if let Some(newline) = buffer[..window].iter().position(|&byte| byte == b'\n') {
            let message = buffer.split_to(newline).freeze();
            buffer.advance(1);
            return Some(Frame {
                message,
                truncated: false,
            });
        }
        if buffer.len() > self.max_message_bytes {
            let message = buffer.split_to(self.max_message_bytes).freeze();
            self.skip = Skip::ToNewline;
            return Some(Frame {
                message,
                truncated: true,
            });
        }
        if input_ended {
            return Some(Frame {
                message: buffer.split().freeze(),
                truncated: false,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one after the other and collects every message.
    fn frames(max_message_bytes: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut framer = MessageFramer::new(max_message_bytes);
        let mut buffer = BytesMut::new();
        let mut found = Vec::new();
        for (index, chunk) in chunks.iter().enumerate() {
            buffer.extend_from_slice(chunk);
            let last = index + 1 == chunks.len();
            while let Some(frame) = framer.next_message(&mut buffer, false) {
                found.push(frame);
            }
            if last {
                while let Some(frame) = framer.next_message(&mut buffer, true) {
                    found.push(frame);
                }
            }
        }
        found
            .into_iter()
            .map(|frame| {
                (
                    String::from_utf8(frame.message.to_vec()).unwrap(),
                    frame.truncated,
                )
            })
            .collect()
    }

    fn whole(text: &str) -> (String, bool) {
        (text.to_string(), false)
    }

    #[test]
    fn newline_delimited_messages_split_across_reads_come_out_whole() {
        assert_eq!(
            frames(100, &[b"<13>one\n<13>tw", b"o\n\n\n<13>three"]),
            [whole("<13>one"), whole("<13>two"), whole("<13>three")]
        );
    }

    #[test]
    fn octet_counted_messages_may_hold_newlines_and_follow_each_other() {
        assert_eq!(
            frames(100, &[b"8 <13>a\nbc10 <13>", b"defghi\n<13>next\n"]),
            [whole("<13>a\nbc"), whole("<13>defghi"), whole("<13>next")]
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_is_cut_and_its_rest_skipped() {
        assert_eq!(
            frames(6, &[b"<13>abcdefgh", b"ijk\n<13>ok\n<13>abcd\n"]),
            [
                ("<13>ab".to_string(), true),
                whole("<13>ok"),
                ("<13>ab".to_string(), true),
            ]
        );
    }

    #[test]
    fn an_octet_counted_message_longer_than_the_limit_is_cut_and_its_rest_skipped() {
        assert_eq!(
            frames(6, &[b"12 <13>abcde", b"fgh<13>ok\n"]),
            [("<13>ab".to_string(), true), whole("<13>ok")]
        );
    }

    #[test]
    fn digits_not_followed_by_space_and_angle_bracket_are_an_ordinary_line() {
        assert_eq!(
            frames(100, &[b"2024 was a year\n12", b"3\n"]),
            [whole("2024 was a year"), whole("123")]
        );
    }
}
