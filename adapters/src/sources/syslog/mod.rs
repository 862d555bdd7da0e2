//! The `syslogtcp` and `syslogudp` sources: syslog messages (RFC 3164 and RFC 5424) as
//! events, with the headers Flume's `SyslogUtils` sets (see [`message`]).
//!
//! - TCP ([`tcp`]): messages end at `\n`, or come octet-counted (`LEN SP <PRI>…`, RFC
//!   6587). Each connection delivers what it has read in batches and waits while the
//!   channel is full, so a full channel slows the sender down (TCP back-pressure)
//!   instead of losing messages.
//! - UDP ([`udp`]): one datagram is one message. UDP has no back-pressure: a batch the
//!   channel cannot take now (full, unreachable) is counted in `ChannelWriteFail` and
//!   dropped, as Flume does.
//!
//! Both split a batch to fit the channel's `transactionCapacity` (see
//! [`crate::delivery`]), so a `batchSize` above it loses nothing; a message the channel
//! refuses for what it is goes to the source's `deadLetter.channel`, or is logged as an
//! error and counted in `ChannelWriteFail` (a syslog sender cannot be told).

pub mod message;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;

use chrono::Local;
use millrace_client::Event;
use millrace_config::values::Expected;
use millrace_config::ComponentSettings;
use tracing::warn;

pub use message::{KeepFields, KeptFields, SyslogStatus};

use crate::counters::{self, SourceCounters};
use crate::sources::{refuse_tls, ListenerLimits, BATCH_SIZE_KEY};

/// Flume's default `eventSize` for `syslogtcp`.
pub const DEFAULT_TCP_EVENT_SIZE_BYTES: usize = 2500;
/// Flume's fixed message limit for `syslogudp` (the largest UDP payload, RFC 5426).
pub const DEFAULT_UDP_EVENT_SIZE_BYTES: usize = 1 << 16;
/// Flume's smallest `eventSize`.
pub const MIN_EVENT_SIZE_BYTES: usize = 10;
/// Messages delivered together by default (Millrace's `batchSize`).
pub const DEFAULT_SYSLOG_BATCH_SIZE: usize = 100;

/// How a syslog source is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSettings {
    /// `host`; Flume listens on every interface when it is absent.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// `eventSize`: longer messages are cut and marked `Incomplete`.
    pub event_size_bytes: usize,
    /// `keepFields`.
    pub keep_fields: KeepFields,
    /// `clientIPHeader`: header to carry the sender's IP address.
    pub client_ip_header: Option<String>,
    /// `clientHostnameHeader`: header to carry the sender's host (its address: no
    /// reverse DNS lookup is made).
    pub client_hostname_header: Option<String>,
    /// `batchSize`: most messages put in one transaction (fewer when the channel's
    /// `transactionCapacity` is smaller).
    pub batch_size: usize,
    /// `maxConnections` and `idleTimeout` of the TCP listener (unused over UDP).
    pub listener: ListenerLimits,
}

/// Which syslog source is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyslogTransport {
    /// `syslogtcp`.
    Tcp,
    /// `syslogudp`.
    Udp,
}

impl SyslogSettings {
    /// Reads a syslog source's keys (Flume's `SyslogTcpSource`, `SyslogUDPSource`).
    pub(crate) fn read(
        keys: &mut ComponentSettings<'_>,
        transport: SyslogTransport,
    ) -> Option<SyslogSettings> {
        // Flume listens on every interface when `host` is absent.
        let host = keys.text_or("host", "0.0.0.0");
        let port = keys.port("port");
        let default_event_size = match transport {
            SyslogTransport::Tcp => DEFAULT_TCP_EVENT_SIZE_BYTES,
            SyslogTransport::Udp => DEFAULT_UDP_EVENT_SIZE_BYTES,
        };
        let event_size_bytes = keys.count_or("eventSize", default_event_size as u64);
        let keep_fields = read_keep_fields(keys);
        let client_ip_header = keys.text("clientIPHeader");
        let client_hostname_header = keys.text("clientHostnameHeader");
        let batch_size = keys.count_or(BATCH_SIZE_KEY, DEFAULT_SYSLOG_BATCH_SIZE as u64);
        let listener = match transport {
            SyslogTransport::Tcp => ListenerLimits::read(keys),
            SyslogTransport::Udp => ListenerLimits::default(),
        };
        if transport == SyslogTransport::Tcp {
            refuse_tls(keys, &["ssl"], &[]);
        }
        Some(SyslogSettings {
            host,
            port: port?,
            event_size_bytes: usize::try_from(event_size_bytes).unwrap_or(usize::MAX),
            keep_fields,
            client_ip_header,
            client_hostname_header,
            batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
            listener,
        })
    }
}

/// `keepFields` of a syslog source.
pub(crate) fn read_keep_fields(keys: &mut ComponentSettings<'_>) -> KeepFields {
    keys.parsed_or("keepFields", KeepFields::None, |value| {
        KeepFields::parse(value).map_err(|word| {
            Expected::new(format!(
                "none, all, or a space-separated list of priority, version, timestamp, \
                 hostname (not {word:?})"
            ))
        })
    })
}

/// The event for one received message from `peer`; counts it as received, and as a
/// read failure when it is `Invalid` or `Incomplete`.
pub fn message_event(
    raw: &[u8],
    truncated: bool,
    peer: SocketAddr,
    settings: &SyslogSettings,
    counters: &SourceCounters,
) -> Event {
    counters::increment(&counters.events_received);
    let parsed = message::parse_message(raw, truncated, settings.keep_fields, Local::now());
    if let Some(status) = parsed.status {
        counters::increment(&counters.event_read_failures);
        match status {
            SyslogStatus::Invalid => {
                warn!(%peer, "syslog message without a valid <PRI>; kept whole")
            }
            SyslogStatus::Incomplete => warn!(
                %peer,
                event_size_bytes = settings.event_size_bytes,
                "syslog message longer than eventSize; cut (consider a larger eventSize)"
            ),
        }
    }
    let mut event = parsed.event;
    if let Some(header) = &settings.client_ip_header {
        event = event.with_header(header.clone(), peer.ip().to_string());
    }
    if let Some(header) = &settings.client_hostname_header {
        event = event.with_header(header.clone(), peer.ip().to_string());
    }
    event
}
