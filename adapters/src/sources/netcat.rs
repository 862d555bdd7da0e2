//! The `netcat` source: one event per line received on a TCP port.
//!
//! As Flume's `NetcatSource`: each `\n`-terminated line is one event (a `\r` before the
//! `\n` is kept) committed in its own transaction, then answered `OK` (unless
//! `ack-every-event = false`); a refused put is answered `FAILED: <reason>` and the
//! connection goes on; a line longer than `max-line-length` (newline included) is
//! answered `FAILED: Event exceeds the maximum length (N chars, including newline)` and
//! the connection is closed.
//!
//! Bytes after the last `\n` when the sender closes are not an event, as in Flume (its
//! reader only hands on complete lines): a line cut short by a sender that stopped in
//! the middle of it must not pass for a whole one. Unlike Flume, dropping it is not
//! silent: the sender is answered `FAILED: Incomplete line (N bytes) at end of input:
//! not delivered, end each line with a newline`, the source counts it in `EventReadFail`
//! and logs a warning. (The sender has only closed its writing half, so it can still
//! read the answer, as `nc -q` does.)

use std::net::SocketAddr;
use std::sync::Arc;

use millrace_client::Event;
use millrace_config::ComponentSettings;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::{
    host_port, listen_tcp, serve_connections, ListenerLimits, ProcessorFactory, SourceError,
};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};

/// Flume's default `max-line-length`.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 512;

/// How a netcat source is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetcatSettings {
    /// `bind`; empty means the loopback address, as Java resolves `""`.
    pub bind: String,
    /// `port`.
    pub port: u16,
    /// `max-line-length`: the longest line accepted, newline included.
    pub max_line_length: usize,
    /// `ack-every-event`: answer `OK` per committed line.
    pub ack_every_event: bool,
    /// `maxConnections` and `idleTimeout`.
    pub listener: ListenerLimits,
}

impl NetcatSettings {
    /// Reads a netcat source's keys (Flume's `NetcatSource`).
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> Option<NetcatSettings> {
        let bind = keys.text_or("bind", "");
        let port = keys.port("port");
        let max_line_length = keys.count_or("max-line-length", DEFAULT_MAX_LINE_LENGTH as u64);
        let ack_every_event = keys.boolean_or("ack-every-event", true);
        keys.choice_or("encoding", "utf-8", &["utf-8"]);
        let listener = ListenerLimits::read(keys);
        Some(NetcatSettings {
            bind,
            port: port?,
            max_line_length: usize::try_from(max_line_length).unwrap_or(usize::MAX),
            ack_every_event,
            listener,
        })
    }
}

/// Accepts connections until `stop` is raised.
pub async fn run(
    settings: NetcatSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    stop: StopSignal,
) -> Result<(), SourceError> {
    let host = if settings.bind.is_empty() {
        "127.0.0.1"
    } else {
        settings.bind.as_str()
    };
    let listener = listen_tcp(&host_port(host, settings.port), "netcat").await?;
    let settings = Arc::new(settings);
    let connection_counters = Arc::clone(&counters);
    let connection_stop = stop.clone();
    let limits = settings.listener;
    serve_connections(listener, "netcat", limits, counters, stop, move |stream, peer| {
        let settings = Arc::clone(&settings);
        let processors = processors.clone();
        let counters = Arc::clone(&connection_counters);
        let stop = connection_stop.clone();
        async move { serve_connection(stream, peer, &settings, processors, &counters, stop).await }
    })
    .await
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    settings: &NetcatSettings,
    processors: ProcessorFactory,
    counters: &SourceCounters,
    mut stop: StopSignal,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut processor = processors.build();
    let mut line = Vec::with_capacity(settings.max_line_length);
    loop {
        line.clear();
        let read = tokio::select! {
            read = settings.listener.read_or_idle(read_bounded_line(&mut reader, &mut line, settings.max_line_length)) => match read? {
                Some(read) => read,
                None => {
                    debug!(%peer, "netcat client idle past idleTimeout; disconnected");
                    break;
                }
            },
            () = stop.raised() => break,
        };
        match read {
            LineRead::End => break,
            LineRead::Unterminated => {
                counters::increment(&counters.event_read_failures);
                warn!(%peer, incomplete_line_bytes = line.len(), "input ended in the middle of a line; not delivered, answered FAILED");
                let message = format!(
                    "FAILED: Incomplete line ({} bytes) at end of input: not delivered, end \
                     each line with a newline\n",
                    line.len()
                );
                // The sender may have closed both halves: nothing more to tell it then.
                let _ = writer.write_all(message.as_bytes()).await;
                break;
            }
            LineRead::TooLong => {
                counters::increment(&counters.event_read_failures);
                let message = format!(
                    "FAILED: Event exceeds the maximum length ({} chars, including newline)\n",
                    settings.max_line_length
                );
                writer.write_all(message.as_bytes()).await?;
                warn!(%peer, max_line_length = settings.max_line_length, "line too long; closing the connection");
                break;
            }
            LineRead::Line => {
                counters::increment(&counters.events_received);
                counters::increment(&counters.appends_received);
                let event = Event::new(line.clone());
                match processor.deliver(std::slice::from_ref(&event)).await {
                    Ok(()) => {
                        counters::increment(&counters.appends_accepted);
                        if settings.ack_every_event {
                            writer.write_all(b"OK\n").await?;
                        }
                    }
                    Err(error) => {
                        writer
                            .write_all(format!("FAILED: {error}\n").as_bytes())
                            .await?;
                    }
                }
            }
        }
    }
    processor.close();
    writer.shutdown().await
}

enum LineRead {
    /// A `\n`-terminated line (the `\n` removed).
    Line,
    /// More than the limit without a newline.
    TooLong,
    /// The input ended after a line's first bytes, before its newline.
    Unterminated,
    /// The input ended between lines.
    End,
}

/// Reads one line into `line` (without its `\n`), refusing more than `max_length`
/// bytes including the newline. A last line without a newline is
/// [`LineRead::Unterminated`], not a line.
async fn read_bounded_line<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max_length: usize,
) -> std::io::Result<LineRead> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if line.is_empty() {
                LineRead::End
            } else {
                LineRead::Unterminated
            });
        }
        let room = max_length.saturating_sub(line.len());
        match available.iter().position(|&byte| byte == b'\n') {
            Some(newline) if newline < room => {
                line.extend_from_slice(&available[..newline]);
                reader.consume(newline + 1);
                return Ok(LineRead::Line);
            }
            _ if available.len() >= room => return Ok(LineRead::TooLong),
            _ => {
                let length = available.len();
                line.extend_from_slice(available);
                reader.consume(length);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max_length: usize) -> Vec<Result<String, &'static str>> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut found = Vec::new();
        loop {
            let mut line = Vec::new();
            match read_bounded_line(&mut reader, &mut line, max_length)
                .await
                .unwrap()
            {
                LineRead::Line => found.push(Ok(String::from_utf8(line).unwrap())),
                LineRead::TooLong => {
                    found.push(Err("too long"));
                    return found;
                }
                LineRead::Unterminated => {
                    found.push(Err("unterminated"));
                    return found;
                }
                LineRead::End => return found,
            }
        }
    }

    #[tokio::test]
    async fn lines_split_at_newlines_keep_carriage_returns_and_a_last_line_without_one_is_unterminated(
    ) {
        assert_eq!(
            lines(b"ding\r\ndong\nlast", 512).await,
            [
                Ok("ding\r".to_string()),
                Ok("dong".into()),
                Err("unterminated")
            ]
        );
        assert_eq!(lines(b"ding\n", 512).await, [Ok("ding".to_string())]);
    }

    #[tokio::test]
    async fn a_line_over_the_limit_including_its_newline_is_refused() {
        // "abcd\n" is 5 bytes with its newline: fits 5, not 4.
        assert_eq!(lines(b"abcd\n", 5).await, [Ok("abcd".to_string())]);
        assert_eq!(lines(b"abcd\nxy\n", 4).await, [Err("too long")]);
        assert_eq!(
            lines(b"ab\nabcdefgh", 4).await,
            [Ok("ab".to_string()), Err("too long")]
        );
    }
}
