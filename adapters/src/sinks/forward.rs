//! The `forward` sink: puts taken events into a channel of another channeld (tiering).
//!
//! The downstream put-and-commit is atomic and durable before the upstream take commits,
//! so an event is always in at least one of the two channels; a crash between the two
//! commits delivers the batch twice (at-least-once, as Flume's Avro sink).
//!
//! An event that the downstream server can never accept — larger than its frame limit —
//! is reported as a [`SinkError::BadEvent`] before anything is sent, so the runner can
//! set it aside (dead-letter channel) and forward the rest instead of blocking the flow.

use millrace_client::{ClientOptions, Event};
use millrace_protocol::encoded_event_bytes;

use super::SinkError;
use crate::connection::Connection;
use crate::delivery::is_transient;

/// Room a `PutCommit` frame needs besides its events: frame header, channel name and
/// batch header (generous).
const PUT_COMMIT_FRAME_OVERHEAD_BYTES: usize = 512;

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
