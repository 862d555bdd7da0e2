//! Flume's Kafka components on librdkafka: the keys of `KafkaSink` and `KafkaSource`, the
//! record layout they read and write, and the delivery rules that make them lossless.
//!
//! # Constraints
//!
//! - **Flume's keys, Flume's bytes.** A Flume agent's Kafka sink or source section runs
//!   unchanged (`kafka.bootstrap.servers`, `kafka.topic`, `flumeBatchSize`,
//!   `kafka.producer.*`, …). With `useFlumeEventFormat` a record value is the bare Avro
//!   datum of one `AvroFlumeEvent` (encoded by `millrace-avro`, the codec of the avro
//!   source and sink), so Flume and Millrace share a topic.
//! - **Nothing acknowledged is lost.** The sink's take commits only after Kafka has
//!   acknowledged every record of the batch ([`producer::EventProducer::send_batch`]); the
//!   source commits a partition's offsets only after the channel committed the events
//!   read from it ([`consumer::EventConsumer`]). Both are at-least-once: a failure
//!   between the two commits sends or reads a batch again, and that is counted.
//! - **No Kafka client unless configured.** Reading keys ([`settings`]) checks each
//!   pass-through property against librdkafka's own table without creating a client;
//!   clients are made only when a Kafka sink or source starts, so channeld and
//!   channel-agent without Kafka in their configuration never open a broker connection
//!   or start a librdkafka thread.
//!
//! ```text
//! channel ──take──► KafkaSink ──produce (acks=all, idempotent)──► topic
//!        ◄─commit── after every delivery report is a success
//!
//! topic ──poll──► KafkaSource ──put+commit──► channel
//!       ◄─commit offsets (offset+1 per partition) after the channel commit
//! ```

pub mod channel;
pub mod consumer;
pub mod producer;
pub mod properties;
pub mod record;
pub mod settings;

pub use channel::KafkaChannel;
pub use consumer::{ConsumedBatch, EventConsumer};
pub use producer::{EventProducer, SendError};
pub use record::{decode_value, encode_value, RecordValueError};
pub use settings::{KafkaSinkSettings, KafkaSourceSettings, TopicSelection};

use thiserror::Error;

/// Why a Kafka client could not be made or used.
#[derive(Debug, Error)]
pub enum KafkaError {
    /// librdkafka refused the client's properties or could not start the client.
    #[error("cannot create the Kafka {role} for {bootstrap_servers}: {source}")]
    Create {
        /// `producer` or `consumer`.
        role: &'static str,
        /// `kafka.bootstrap.servers`.
        bootstrap_servers: String,
        /// librdkafka's reason.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Subscribing to the topics failed.
    #[error("cannot subscribe to {topics}: {source}")]
    Subscribe {
        /// The topics or the pattern.
        topics: String,
        /// librdkafka's reason.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Reading from Kafka failed with an error that is not transient.
    #[error("reading from Kafka failed: {0}")]
    Consume(#[source] rdkafka::error::KafkaError),
}
