//! Sinks: where taken events are delivered before the take commits.
//!
//! Every sink follows take → write → commit. [`Sink::write`] returns only once the batch
//! is delivered as far as the sink can make it (written, flushed and synced to a file;
//! committed by a downstream channeld); the runner commits the take after it and rolls it
//! back when it fails, so a failing sink never loses an event.

pub mod avro;
mod forward;
pub mod kafka;
mod logger;
mod rolling_file;

use millrace_client::{ClientError, Event};
use millrace_config::{values, ComponentSettings};
use thiserror::Error;

use crate::file_problem::FileProblem;

pub use avro::{AvroSink, AvroSinkSettings};
pub use forward::{ForwardSettings, ForwardSink, ForwardTarget};
pub use kafka::KafkaSink;
pub use logger::{format_flume_event, LoggerSink, DEFAULT_MAX_BYTES_TO_LOG};
pub use rolling_file::{
    RollingFileSettings, RollingFileSink, SPOOLING_DIRECTORY_SINK_ALIAS,
    SPOOLING_DIRECTORY_SINK_CLASS,
};

/// Flume's default sink batch size.
pub const DEFAULT_BATCH_SIZE: u64 = 100;

/// What a sink does with the events it takes, as its keys configure it.
#[derive(Debug, Clone)]
pub enum SinkKindPlan {
    /// `logger`.
    Logger(LoggerSink),
    /// `null`.
    Null,
    /// `file_roll` or the spooling-directory sink.
    RollingFile(RollingFileSettings),
    /// `forward`.
    Forward(ForwardTarget),
    /// `avro`.
    Avro(AvroSinkSettings),
    /// `kafka`.
    Kafka(Box<millrace_kafka::KafkaSinkSettings>),
}

/// Reads a null sink's keys (Flume's `NullSink`): its batch size.
pub(crate) fn read_null_sink(keys: &mut ComponentSettings<'_>) -> u64 {
    if keys
        .parsed("logEveryNEvents", values::positive_integer)
        .is_some()
    {
        keys.accept_with_warning(
            "logEveryNEvents",
            "accepted but not acted on: Millrace's null sink logs no progress lines (its \
             counters are on /metrics)",
        );
    }
    keys.count_or("batchSize", DEFAULT_BATCH_SIZE)
}

/// Why a sink could not deliver (part of) a batch.
#[derive(Debug, Error)]
pub enum SinkError {
    /// This one event can never be delivered by this sink (it is refused for what it
    /// is, not for the state of the destination). Nothing of the batch was delivered.
    #[error("event {index} of the batch cannot be delivered: {reason}")]
    BadEvent {
        /// Its position in the batch.
        index: usize,
        /// Why it is refused.
        reason: String,
    },
    /// A file could not be created, written, synced or moved.
    #[error("{0}")]
    File(#[from] FileProblem),
    /// The sink cannot start as configured or as it finds its directory.
    #[error("{0}")]
    CannotStart(String),
    /// The downstream channeld refused the batch or could not be reached.
    #[error("forwarding to {address} channel {channel} failed: {source}")]
    Forward {
        /// The downstream server.
        address: String,
        /// The downstream channel.
        channel: String,
        /// Why.
        #[source]
        source: Box<ClientError>,
    },
    /// The downstream avro source did not accept the batch.
    #[error("avro sink to {address}: {source}")]
    Avro {
        /// The downstream `hostname:port`.
        address: String,
        /// Why.
        #[source]
        source: Box<avro::AvroSinkError>,
    },
    /// Kafka did not acknowledge every record of the batch.
    #[error("kafka sink: {0}")]
    Kafka(#[source] Box<millrace_kafka::SendError>),
    /// Writing to standard output failed.
    #[error("cannot write to standard output: {0}")]
    Stdout(#[source] std::io::Error),
}

/// One configured sink.
#[derive(Debug)]
pub enum Sink {
    /// `logger`: Flume's `Event: { headers:{…} body: … }` lines on standard output.
    Logger(LoggerSink),
    /// `null`: takes and discards.
    Null,
    /// `file_roll` and the spooling-directory file sink.
    RollingFile(RollingFileSink),
    /// `forward`: puts into a channel of another channeld.
    Forward(ForwardSink),
    /// `avro`: Flume's Avro RPC to an avro source.
    Avro(AvroSink),
    /// `kafka`: records in a Kafka topic (boxed: its settings and producer are large).
    Kafka(Box<KafkaSink>),
}

impl Sink {
    /// Prepares the destination (directories, connections) before the first take.
    pub async fn start(&mut self) -> Result<(), SinkError> {
        match self {
            Sink::Logger(_) | Sink::Null | Sink::Forward(_) | Sink::Avro(_) => Ok(()),
            Sink::RollingFile(sink) => sink.start(),
            Sink::Kafka(sink) => sink.start(),
        }
    }

    /// Delivers `events`; see [`SinkError::BadEvent`] for a partial delivery.
    pub async fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        match self {
            Sink::Logger(sink) => sink.write(events),
            Sink::Null => Ok(()),
            Sink::RollingFile(sink) => sink.write(events),
            Sink::Forward(sink) => sink.write(events).await,
            Sink::Avro(sink) => sink.write(events).await,
            Sink::Kafka(sink) => sink.write(events).await,
        }
    }

    /// Periodic work between batches (rolling files on their interval).
    pub async fn tick(&mut self) -> Result<(), SinkError> {
        match self {
            Sink::RollingFile(sink) => sink.roll_if_due(),
            _ => Ok(()),
        }
    }

    /// Finishes cleanly: closes and moves the current file, closes connections.
    pub async fn stop(&mut self) -> Result<(), SinkError> {
        match self {
            Sink::RollingFile(sink) => sink.stop(),
            Sink::Forward(sink) => {
                sink.close();
                Ok(())
            }
            Sink::Avro(sink) => {
                sink.close();
                Ok(())
            }
            Sink::Kafka(sink) => {
                sink.stop();
                Ok(())
            }
            Sink::Logger(_) | Sink::Null => Ok(()),
        }
    }
}
