//! The `avro` sink: sends each taken batch as one Flume Avro RPC `appendBatch` to an
//! avro source (Flume's, or Millrace's), so Millrace feeds downstream Flume agents and
//! chains with itself using the Flume User Guide's configurations.
//!
//! The take commits only when the downstream answers `OK`. `FAILED`, a system error, no
//! answer within the timeout, or a lost connection fail the batch: the runner rolls the
//! take back and backs off (1 s more per consecutive failure, up to 5 s, as Flume's
//! SinkRunner), and the same events are sent again — at-least-once, never lost.
//!
//! Where Millrace differs from Flume's `AvroSink`:
//! - `FAILED` keeps the connection (the answer arrived, the connection is healthy); Flume
//!   closes it and reconnects. Timeouts, lost connections and protocol errors close it.
//! - `connect-timeout` and `request-timeout` are honoured as given; Flume silently
//!   replaces values below 1000 ms with 20000 ms.
//! - `maxIoWorkers` has no effect (Flume 1.10 and later ignore it too) and is accepted
//!   with a warning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_avro::{
    CallLimits, CallOutcome, ClientError, ClientSession, ClientStep, Compression, FrameLimits,
    Inbound, Md5Hash, Outbound, Status, DEFAULT_COMPRESSION_LEVEL, FLUME_PROTOCOL_MD5,
    JAVA_BUFFER_BYTES, MAX_COMPRESSION_LEVEL,
};
use millrace_client::Event;
use millrace_config::values::{self, Expected};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::SinkError;
use crate::counters::{self, SinkCounters};
use crate::sinks::DEFAULT_BATCH_SIZE as DEFAULT_SINK_BATCH_SIZE;
use crate::sources::avro::plan_compression_type;
use crate::sources::host_port;
use millrace_config::ComponentSettings;

/// Flume's default `connect-timeout` and `request-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(20_000);
/// How much room each socket read offers.
const READ_CHUNK_BYTES: usize = 8 * JAVA_BUFFER_BYTES;

/// Where and how an avro sink sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroSinkSettings {
    /// `hostname`.
    pub hostname: String,
    /// `port`.
    pub port: u16,
    /// `connect-timeout`: the TCP connect and the first call on a connection (which
    /// carries the handshake).
    pub connect_timeout: Duration,
    /// `request-timeout`: each later call's answer.
    pub request_timeout: Duration,
    /// `reset-connection-interval`: reconnect before a batch once the connection is this
    /// old; `None` never.
    pub reset_connection_interval: Option<Duration>,
    /// `compression-type` and `compression-level`.
    pub compression: Compression,
}

impl AvroSinkSettings {
    /// `hostname:port`.
    pub fn address(&self) -> String {
        host_port(&self.hostname, self.port)
    }
}

/// Reads an avro sink's keys; returns its batch size and settings.
pub fn plan(keys: &mut ComponentSettings<'_>) -> Option<(u64, AvroSinkSettings)> {
    let hostname = keys.required_text("hostname", "the downstream avro source's host");
    let port = keys.port("port");
    let batch = keys.count_or("batch-size", DEFAULT_SINK_BATCH_SIZE);
    let connect_timeout = keys.parsed_or(
        "connect-timeout",
        DEFAULT_TIMEOUT,
        values::positive_milliseconds,
    );
    let request_timeout = keys.parsed_or(
        "request-timeout",
        DEFAULT_TIMEOUT,
        values::positive_milliseconds,
    );
    let reset_connection_interval = keys.seconds_or("reset-connection-interval", Duration::ZERO);
    let level = keys.parsed_or("compression-level", DEFAULT_COMPRESSION_LEVEL, |value| {
        values::non_negative_integer(value)
            .ok()
            .and_then(|level| u32::try_from(level).ok())
            .filter(|level| *level <= MAX_COMPRESSION_LEVEL)
            .ok_or_else(|| Expected::new(format!("a zlib level from 0 to {MAX_COMPRESSION_LEVEL}")))
    });
    let compression = plan_compression_type(keys, level);
    if keys
        .parsed("maxIoWorkers", values::positive_integer)
        .is_some()
    {
        keys.accept_with_warning(
            "maxIoWorkers",
            "has no effect: each Millrace avro sink uses one connection (Flume 1.10 and later \
             ignore it too)",
        );
    }
    keys.choice_or("client.type", "default", &["default"]);
    refuse_client_tls(keys);
    Some((
        batch,
        AvroSinkSettings {
            hostname: hostname?,
            port: port?,
            connect_timeout,
            request_timeout,
            reset_connection_interval: (!reset_connection_interval.is_zero())
                .then_some(reset_connection_interval),
            compression,
        },
    ))
}

/// Flume's client TLS keys: `ssl = true` is refused; the others have no effect without it.
const CLIENT_TLS_SETTINGS: &[&str] = &[
    "trust-all-certs",
    "truststore",
    "truststore-password",
    "truststore-type",
    "exclude-protocols",
    "include-protocols",
    "exclude-cipher-suites",
    "include-cipher-suites",
];

fn refuse_client_tls(keys: &mut ComponentSettings<'_>) {
    keys.parsed_or("ssl", (), |value| match values::boolean(value)? {
        false => Ok(()),
        true => Err(Expected::new(
            "false (the avro sink does not do TLS; use a TLS tunnel such as stunnel)",
        )),
    });
    for setting in CLIENT_TLS_SETTINGS {
        keys.accept_with_warning(
            setting,
            "a TLS setting; ssl is off, so it has no effect, as in Flume with ssl off",
        );
    }
}

/// Why a batch was not accepted downstream.
#[derive(Debug, Error)]
pub enum AvroSinkError {
    /// No connection within `connect-timeout`, or it was refused.
    #[error("cannot connect within {timeout_ms} ms: {problem}")]
    Connect {
        /// `connect-timeout`.
        timeout_ms: u128,
        /// Why.
        problem: String,
    },
    /// No answer within the timeout; the connection was closed.
    #[error("no answer to an appendBatch of {events} events within {timeout_ms} ms")]
    Timeout {
        /// The batch size.
        events: usize,
        /// The timeout that ran out.
        timeout_ms: u128,
    },
    /// The downstream answered with a status other than `OK`.
    #[error("the downstream answered {status} to an appendBatch of {events} events")]
    NotOk {
        /// Its status.
        status: Status,
        /// The batch size.
        events: usize,
    },
    /// The downstream answered with an Avro system error.
    #[error("the downstream answered with an error: {text}")]
    Remote {
        /// Its text.
        text: String,
    },
    /// The bytes of the exchange broke the protocol (ours to encode or theirs to read).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection failed or closed.
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ClientError> for AvroSinkError {
    fn from(error: ClientError) -> Self {
        AvroSinkError::Protocol(error.to_string())
    }
}

/// One open connection and its protocol state.
struct AvroConnection {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    inbound: Inbound,
    outbound: Outbound,
    session: ClientSession,
    opened: Instant,
}

/// Sends batches to a downstream avro source.
pub struct AvroSink {
    settings: AvroSinkSettings,
    counters: Arc<SinkCounters>,
    /// Boxed: a connection's buffers and zlib state are large, and sinks live in an enum.
    connection: Option<Box<AvroConnection>>,
    /// The server's protocol hash, learned by an earlier connection.
    server_hash: Md5Hash,
    request: Vec<u8>,
}

impl std::fmt::Debug for AvroSink {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AvroSink")
            .field("settings", &self.settings)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl AvroSink {
    /// Not connected until the first batch.
    pub fn new(settings: AvroSinkSettings, counters: Arc<SinkCounters>) -> Self {
        AvroSink {
            settings,
            counters,
            connection: None,
            server_hash: FLUME_PROTOCOL_MD5,
            request: Vec::new(),
        }
    }

    /// Closes the connection, if any.
    pub fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.server_hash = connection.session.server_hash();
            counters::increment(&self.counters.connections_closed);
        }
    }

    async fn connect(&mut self) -> Result<(), AvroSinkError> {
        let address = self.settings.address();
        let timeout = self.settings.connect_timeout;
        let connected = tokio::time::timeout(timeout, TcpStream::connect(&address)).await;
        let stream = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                counters::increment(&self.counters.connections_failed);
                return Err(AvroSinkError::Connect {
                    timeout_ms: timeout.as_millis(),
                    problem: error.to_string(),
                });
            }
            Err(_elapsed) => {
                counters::increment(&self.counters.connections_failed);
                return Err(AvroSinkError::Connect {
                    timeout_ms: timeout.as_millis(),
                    problem: "timed out".into(),
                });
            }
        };
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let outbound = Outbound::new(self.settings.compression)
            .map_err(|error| AvroSinkError::Protocol(error.to_string()))?;
        self.connection = Some(Box::new(AvroConnection {
            reader,
            writer,
            inbound: Inbound::new(FrameLimits::default(), self.settings.compression),
            outbound,
            session: ClientSession::with_server_hash(CallLimits::default(), self.server_hash),
            opened: Instant::now(),
        }));
        counters::increment(&self.counters.connections_created);
        info!(%address, "avro sink connected");
        Ok(())
    }

    /// Sends `events` as one `appendBatch`; `Ok` only when the downstream answered `OK`.
    pub async fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let address = self.settings.address();
        match self.send(events).await {
            Ok(()) => Ok(()),
            Err(source) => {
                if !matches!(
                    source,
                    AvroSinkError::NotOk { .. } | AvroSinkError::Remote { .. }
                ) {
                    self.close();
                }
                Err(SinkError::Avro {
                    address,
                    source: Box::new(source),
                })
            }
        }
    }

    async fn send(&mut self, events: &[Event]) -> Result<(), AvroSinkError> {
        if let (Some(connection), Some(interval)) =
            (&self.connection, self.settings.reset_connection_interval)
        {
            if connection.opened.elapsed() >= interval {
                debug!("avro sink: reset-connection-interval reached; reconnecting");
                self.close();
            }
        }
        if self.connection.is_none() {
            self.connect().await?;
        }
        let settings = &self.settings;
        let connection = self.connection.as_mut().expect("connected above");
        let timeout = if connection.session.is_established() {
            settings.request_timeout
        } else {
            settings.connect_timeout
        };
        let exchange = exchange(connection, &mut self.request, events);
        let outcome = match tokio::time::timeout(timeout, exchange).await {
            Ok(outcome) => outcome?,
            Err(_elapsed) => {
                return Err(AvroSinkError::Timeout {
                    events: events.len(),
                    timeout_ms: timeout.as_millis(),
                })
            }
        };
        match outcome {
            CallOutcome::Status(Status::Ok) => Ok(()),
            CallOutcome::Status(status) => Err(AvroSinkError::NotOk {
                status,
                events: events.len(),
            }),
            CallOutcome::SystemError(text) => Err(AvroSinkError::Remote { text }),
        }
    }
}

/// Sends one `appendBatch` (again, if the server did not know our protocol) and reads
/// its answer.
async fn exchange(
    connection: &mut AvroConnection,
    request: &mut Vec<u8>,
    events: &[Event],
) -> Result<CallOutcome, AvroSinkError> {
    loop {
        request.clear();
        let mut writer = connection.session.append_batch(request, events.len())?;
        for event in events {
            writer.push(
                event
                    .headers
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str())),
                &event.body,
            )?;
        }
        let serial = writer.finish()?;
        let wire = connection
            .outbound
            .wire_bytes(request)
            .map_err(|error| AvroSinkError::Protocol(error.to_string()))?;
        connection.writer.write_all(wire).await?;
        loop {
            let frame = loop {
                match connection.inbound.next_frame() {
                    Ok(Some(frame)) => break frame,
                    Ok(None) => {}
                    Err(error) => return Err(AvroSinkError::Protocol(error.to_string())),
                }
                let buffer = connection.inbound.read_buffer();
                buffer.reserve(READ_CHUNK_BYTES);
                if connection.reader.read_buf(buffer).await? == 0 {
                    return Err(AvroSinkError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the downstream closed the connection before answering",
                    )));
                }
            };
            match connection.session.receive(&frame)? {
                ClientStep::Answered {
                    serial: answered,
                    outcome,
                } if answered == serial => return Ok(outcome),
                ClientStep::Answered { serial: other, .. } => {
                    warn!(
                        serial = other,
                        "avro sink: an answer to an earlier request; ignored"
                    );
                }
                ClientStep::Resend { .. } => break,
            }
        }
    }
}
