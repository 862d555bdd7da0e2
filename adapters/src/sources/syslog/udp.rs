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
use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::{message_event, SyslogSettings};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::sources::{bind_failure, host_port, receive_datagrams, ProcessorFactory, SourceError};

/// Receives datagrams until `stop` is raised.
pub async fn run(
    settings: SyslogSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
) -> Result<(), SourceError> {
    let address = host_port(&settings.host, settings.port);
    let socket = UdpSocket::bind(&address)
        .await
        .map_err(bind_failure(&address))?;
    let local = socket.local_addr().map_err(bind_failure(&address))?;
    info!(address = %local, "syslogudp source listening");
    let mut processor = processors.build();
    // One byte more than a message may have, to tell a cut datagram.
    let mut datagram = vec![0_u8; settings.event_size_bytes + 1];
    let batch_size = settings.batch_size.max(1);
    let mut events = Vec::with_capacity(batch_size);
    loop {
        let receiving = receive_datagrams(
            &socket,
            &mut datagram,
            batch_size,
            &mut stop,
            &counters,
            "syslog",
            |bytes, peer| {
                if let Some(event) = datagram_event(bytes, peer, &settings, &counters) {
                    events.push(event);
                }
            },
        );
        if !receiving.await {
            break;
        }
        if events.is_empty() {
            continue;
        }
        counters::increment(&counters.append_batches_received);
        match processor.deliver(&events).await {
            Ok(()) => counters::increment(&counters.append_batches_accepted),
            Err(error) => warn!(
                %error,
                "the channel did not take all syslog datagrams; the rest are dropped (UDP cannot wait)"
            ),
        }
        events.clear();
    }
    processor.close();
    Ok(())
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
