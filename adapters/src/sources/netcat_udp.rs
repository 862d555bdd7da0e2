//! The `netcatudp` source: one event per UDP datagram (Flume's `NetcatUdpSource`).
//!
//! The body is the datagram up to (not including) its first `\n`; what follows the `\n`
//! is not delivered, as in Flume, and is counted in `EventReadFail` with a warning so it
//! is not dropped silently. A `\r` is kept. `remoteAddress` names a header that gets the
//! sender's address in Java's form (`/10.0.0.5:51234`); unset, no header is added (Flume
//! adds one under a null name, which breaks serialization downstream).
//!
//! Unlike Flume (whose Netty buffer cuts datagrams at 2048 bytes), datagrams up to the
//! largest UDP payload are read whole. Datagrams already waiting are delivered together;
//! UDP has no back-pressure, so what the channel cannot take now (full, unreachable) is
//! counted in `ChannelWriteFail`, logged and dropped, as Flume does.

use std::net::SocketAddr;
use std::sync::Arc;

use millrace_client::Event;
use millrace_config::ComponentSettings;
use tracing::warn;

use super::{serve_datagrams, DatagramListener, ProcessorFactory, SourceError};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};

/// The largest UDP payload.
const MAX_DATAGRAM_BYTES: usize = 65_535;
/// Datagrams delivered together at most.
const DATAGRAMS_PER_DELIVERY: usize = 100;

/// How a netcatudp source is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetcatUdpSettings {
    /// `bind`; every interface when absent.
    pub bind: String,
    /// `port`.
    pub port: u16,
    /// `remoteAddress`: the header for the sender's address.
    pub remote_address_header: Option<String>,
}

impl NetcatUdpSettings {
    /// Reads a netcatudp source's keys.
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> Option<NetcatUdpSettings> {
        let bind = keys.text_or("bind", "0.0.0.0");
        let port = keys.port("port");
        let remote_address_header = keys.text("remoteAddress");
        if keys.is_set("remoteAddressHeader") {
            keys.unknown(
                "remoteAddressHeader",
                "remoteAddress: Flume's User Guide names this key remoteAddressHeader, but \
                 Flume reads remoteAddress"
                    .to_string(),
            );
        }
        Some(NetcatUdpSettings {
            bind,
            port: port?,
            remote_address_header,
        })
    }
}

/// Java's text for a socket address: `/10.0.0.5:51234`.
fn java_socket_address(peer: SocketAddr) -> String {
    format!("/{}:{}", peer.ip(), peer.port())
}

/// Receives datagrams until `stop` is raised.
pub async fn run(
    settings: NetcatUdpSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    stop: StopSignal,
) -> Result<(), SourceError> {
    let listener = DatagramListener {
        source_type: "netcatudp",
        host: &settings.bind,
        port: settings.port,
        buffer_bytes: MAX_DATAGRAM_BYTES,
        batch_size: DATAGRAMS_PER_DELIVERY,
    };
    let event_counters = Arc::clone(&counters);
    serve_datagrams(listener, processors, counters, stop, |bytes, peer| {
        Some(datagram_event(bytes, peer, &settings, &event_counters))
    })
    .await
}

fn datagram_event(
    bytes: &[u8],
    peer: SocketAddr,
    settings: &NetcatUdpSettings,
    counters: &SourceCounters,
) -> Event {
    counters::increment(&counters.events_received);
    let body = match bytes.iter().position(|&byte| byte == b'\n') {
        Some(newline) => {
            let after = bytes.len() - newline - 1;
            if after > 0 {
                counters::increment(&counters.event_read_failures);
                warn!(%peer, dropped_bytes = after, "netcatudp keeps a datagram up to its first newline; the rest is not delivered");
            }
            &bytes[..newline]
        }
        None => bytes,
    };
    let event = Event::new(body.to_vec());
    match &settings.remote_address_header {
        Some(header) => event.with_header(header.clone(), java_socket_address(peer)),
        None => event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_is_cut_at_its_first_newline_and_carries_the_senders_address() {
        let settings = NetcatUdpSettings {
            bind: "127.0.0.1".into(),
            port: 0,
            remote_address_header: Some("remote".into()),
        };
        let counters = SourceCounters::default();
        let peer: SocketAddr = "10.0.0.5:51234".parse().unwrap();
        let event = datagram_event(b"hello\r\nworld\n", peer, &settings, &counters);
        assert_eq!(&event.body[..], b"hello\r");
        assert_eq!(event.header("remote"), Some("/10.0.0.5:51234"));
        assert_eq!(
            counters
                .event_read_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let whole = datagram_event(b"no newline", peer, &settings, &counters);
        assert_eq!(&whole.body[..], b"no newline");
    }
}
