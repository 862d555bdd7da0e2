//! `syslogudp`: one syslog message per UDP datagram.
//!
//! A datagram longer than `eventSize` is cut and marked `Incomplete`; one final `\n`
//! is dropped. Datagrams already waiting in the socket are delivered together (up to
//! `batchSize`) in one attempt, split to fit the channel's `transactionCapacity`. UDP
//! has no back-pressure — a sender never waits for us — so messages the channel cannot
//! take now (full, unreachable) are counted in `ChannelWriteFail`, logged and dropped,
//! as in Flume; waiting would only move the loss into the kernel's receive buffer.
//! Messages refused for what they are go to `deadLetter.channel` when there is one.

use std::net::SocketAddr;
use std::sync::Arc;

use millrace_client::Event;

use super::{message_event, SyslogSettings};
use crate::connection::StopSignal;
use crate::counters::SourceCounters;
use crate::sources::{serve_datagrams, DatagramListener, ProcessorFactory, SourceError};

/// Receives datagrams until `stop` is raised.
pub async fn run(
    settings: SyslogSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    stop: StopSignal,
) -> Result<(), SourceError> {
    let listener = DatagramListener {
        source_type: "syslogudp",
        host: &settings.host,
        port: settings.port,
        // One byte more than a message may have, to tell a cut datagram.
        buffer_bytes: settings.event_size_bytes + 1,
        batch_size: settings.batch_size,
    };
    let event_counters = Arc::clone(&counters);
    serve_datagrams(listener, processors, counters, stop, |bytes, peer| {
        datagram_event(bytes, peer, &settings, &event_counters)
    })
    .await
}

/// The event of one datagram; `None` for an empty one.
fn datagram_event(
    bytes: &[u8],
    peer: SocketAddr,
    settings: &SyslogSettings,
    counters: &SourceCounters,
) -> Option<Event> {
    let truncated = bytes.len() > settings.event_size_bytes;
    let message = if truncated {
        &bytes[..settings.event_size_bytes]
    } else {
        bytes.strip_suffix(b"\n").unwrap_or(bytes)
    };
    if message.is_empty() {
        return None;
    }
    Some(message_event(message, truncated, peer, settings, counters))
}
