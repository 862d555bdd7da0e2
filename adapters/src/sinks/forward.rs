//! The `forward` sink: puts taken events into a channel of another channeld (tiering).
//!
//! The downstream put-and-commit is atomic and durable before the upstream take commits,
//! so an event is always in at least one of the two channels; a crash between the two
//! commits delivers the batch twice (at-least-once, as Flume's Avro sink).
//!
//! An event that the downstream server can never accept — larger than its frame limit —
//! is reported as a [`SinkError::BadEvent`] before anything is sent, so the runner can
//! set it aside (dead-letter channel) and forward the rest instead of blocking the flow.

use std::time::Duration;

use millrace_client::{ClientOptions, Event};
use millrace_config::{values, ComponentSettings};
use millrace_protocol::encoded_event_bytes;

use super::{SinkError, DEFAULT_BATCH_SIZE};
use crate::connection::Connection;
use crate::delivery::is_transient;

/// Room a `PutCommit` frame needs besides its events: frame header, channel name and
/// batch header (generous).
const PUT_COMMIT_FRAME_OVERHEAD_BYTES: usize = 512;

/// Flume's Avro sink default connect timeout, used by `forward`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(20_000);

/// A forward sink's keys: the downstream channeld and channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    /// `hostname:port`.
    pub address: String,
    /// `authToken`.
    pub auth_token: Option<String>,
    /// `remoteChannel`.
    pub remote_channel: String,
    /// `connect-timeout`.
    pub connect_timeout: Duration,
}

impl ForwardTarget {
    /// Reads a forward sink's keys; `remoteChannel` defaults to `own_channel`, the
    /// channel the sink takes from. The target and the batch size.
    pub(crate) fn read(
        keys: &mut ComponentSettings<'_>,
        own_channel: &str,
    ) -> Option<(u64, ForwardTarget)> {
        let hostname = keys.required_text("hostname", "the downstream channeld's host");
        let port = keys.port("port");
        let remote_channel = keys.text_or("remoteChannel", own_channel);
        let batch_size = keys.count_or("batch-size", DEFAULT_BATCH_SIZE);
        let auth_token = keys.text("authToken");
        let connect_timeout = keys.parsed_or(
            "connect-timeout",
            DEFAULT_CONNECT_TIMEOUT,
            values::positive_milliseconds,
        );
        let host = hostname?;
        let address = if host.contains(':') {
            format!("[{host}]:{}", port?)
        } else {
            format!("{host}:{}", port?)
        };
        let target = ForwardTarget {
            address,
            auth_token,
            remote_channel,
            connect_timeout,
        };
        Some((batch_size, target))
    }
}

/// Where a forward sink delivers.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// The downstream server's options (`hostname`, `port`, `authToken`).
    pub options: ClientOptions,
    /// `remoteChannel`: the downstream channel.
    pub remote_channel: String,
}

/// Puts events into a downstream channeld.
#[derive(Debug)]
pub struct ForwardSink {
    connection: Connection,
    remote_channel: String,
}

impl ForwardSink {
    /// Not connected until the first batch.
    pub fn new(settings: ForwardSettings) -> Self {
        ForwardSink {
            connection: Connection::new(settings.options),
            remote_channel: settings.remote_channel,
        }
    }

    fn failure(&self, source: millrace_client::ClientError) -> SinkError {
        SinkError::Forward {
            address: self.connection.address().to_string(),
            channel: self.remote_channel.clone(),
            source: Box::new(source),
        }
    }

    /// Forwards `events` in one downstream transaction.
    pub async fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        let max_frame_bytes = match self.connection.client().await {
            Ok(client) => client.server().max_frame_bytes as usize,
            Err(error) => {
                self.connection.forget_if_broken(&error);
                return Err(self.failure(error));
            }
        };
        let oversized = events.iter().position(|event| {
            encoded_event_bytes(&event.headers, event.body.len()).map_or(true, |bytes| {
                bytes + PUT_COMMIT_FRAME_OVERHEAD_BYTES > max_frame_bytes
            })
        });
        if let Some(index) = oversized {
            return Err(SinkError::BadEvent {
                index,
                reason: format!(
                    "its {} body bytes do not fit the {max_frame_bytes}-byte frames of {}",
                    events[index].body.len(),
                    self.connection.address()
                ),
            });
        }
        match self
            .connection
            .put_and_commit(&self.remote_channel, events)
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if events.len() == 1 && !is_transient(&error) => Err(SinkError::BadEvent {
                index: 0,
                reason: format!(
                    "{} refused it on channel {}: {error}",
                    self.connection.address(),
                    self.remote_channel
                ),
            }),
            Err(error) => Err(self.failure(error)),
        }
    }

    /// Closes the downstream connection.
    pub fn close(&mut self) {
        self.connection.close();
    }
}
