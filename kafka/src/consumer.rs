//! The Kafka source's consumer: batches of events read from Kafka, and their offsets
//! committed once the channel holds them.
//!
//! # The commit rule
//!
//! [`EventConsumer::next_batch`] reads up to `batchSize` records within
//! `batchDurationMillis` and remembers, per partition, the offset after the last one.
//! Automatic commits and offset stores are off (forced); the source commits those offsets
//! with [`EventConsumer::commit`] only after the channel committed the batch. So:
//! - a crash (or `kill -9`) before the offset commit reads the batch again on restart:
//!   duplicates, at most the uncommitted batch per partition, never a loss;
//! - a rebalance that moves a partition away before its offsets are committed hands its
//!   records to the new owner, who reads them again from the committed offset; the late
//!   commit may then fail (it is logged and counted), which again only duplicates.
//!
//! # Headers (Flume's, `docs/adapters.md`)
//!
//! `timestamp`, `partition`, `offset` and the `topicHeader` are set only when the event
//! lacks them (so the headers of a Flume-format record survive); `key` is always set
//! from a non-null record key; `header.<flume> = <kafka>` copies record headers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use millrace_protocol::Event;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::producer::KEY_HEADER;
use crate::record::decode_value;
use crate::settings::KafkaSourceSettings;
use crate::KafkaError;

/// The header holding the record's partition.
pub const PARTITION_HEADER: &str = "partition";
/// The header holding the record's offset.
pub const OFFSET_HEADER: &str = "offset";
/// The header holding the record's timestamp, in epoch milliseconds.
pub const TIMESTAMP_HEADER: &str = "timestamp";

/// Records read from Kafka, not yet committed.
#[derive(Debug, Default)]
pub struct ConsumedBatch {
    /// The events, in the order read (each partition's in offset order).
    pub events: Vec<Event>,
    /// Records skipped because their value is not an `AvroFlumeEvent` datum (with
    /// `useFlumeEventFormat`); each is logged with its topic, partition and offset.
    pub undecodable: usize,
    /// Per (topic, partition): the offset after the last record read.
    next_offsets: BTreeMap<(String, i32), i64>,
}

impl ConsumedBatch {
    /// Whether nothing was read (no events and nothing skipped).
    pub fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }
}

/// A Kafka consumer configured from a Kafka source's keys, in its consumer group.
pub struct EventConsumer {
    settings: KafkaSourceSettings,
    consumer: Arc<StreamConsumer>,
}

impl std::fmt::Debug for EventConsumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EventConsumer")
            .field("settings", &self.settings)
            .finish()
    }
}

impl EventConsumer {
    /// Creates the consumer and subscribes it (librdkafka joins the group in the
    /// background).
    pub fn new(settings: KafkaSourceSettings) -> Result<EventConsumer, KafkaError> {
        let consumer: StreamConsumer =
            settings
                .consumer
                .client_config()
                .create()
                .map_err(|source| KafkaError::Create {
                    role: "consumer",
                    bootstrap_servers: settings.bootstrap_servers.clone(),
                    source,
                })?;
        let subscription = settings.topics.subscription();
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| KafkaError::Subscribe {
                topics: subscription.join(","),
                source,
            })?;
        info!(bootstrap_servers = %settings.bootstrap_servers, topics = %subscription.join(","), group = %settings.group_id, "Kafka consumer subscribed");
        Ok(EventConsumer {
            settings,
            consumer: Arc::new(consumer),
        })
    }

    /// Reads up to `batchSize` records, waiting at most `batchDurationMillis` in all.
    /// Read errors (a broker away, a rebalance) are logged and waited out: librdkafka
    /// reconnects and resumes from the current position.
    pub async fn next_batch(&mut self) -> ConsumedBatch {
        let mut batch = ConsumedBatch::default();
        let deadline = Instant::now() + self.settings.batch_duration;
        while batch.events.len() < self.settings.batch_size {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let message = match tokio::time::timeout(remaining, self.consumer.recv()).await {
                Err(_elapsed) => break,
                Ok(Err(error)) => {
                    warn!(%error, "reading from Kafka failed; waiting for librdkafka to recover");
                    tokio::time::sleep(remaining.min(READ_ERROR_PAUSE)).await;
                    continue;
                }
                Ok(Ok(message)) => message,
            };
            batch.next_offsets.insert(
                (message.topic().to_string(), message.partition()),
                message.offset() + 1,
            );
            match self.event_of(&message) {
                Some(event) => batch.events.push(event),
                None => batch.undecodable += 1,
            }
        }
        batch
    }

    /// The event a record carries, with Flume's headers; `None` (logged) when its value
    /// does not decode.
    fn event_of(&self, message: &BorrowedMessage<'_>) -> Option<Event> {
        let settings = &self.settings;
        let value = Bytes::copy_from_slice(message.payload().unwrap_or_default());
        let mut event = match decode_value(value, settings.use_flume_event_format) {
            Ok(event) => event,
            Err(error) => {
                warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %error, "skipping a record whose value is not an AvroFlumeEvent (useFlumeEventFormat = true); counted in EventReadFail");
                return None;
            }
        };
        if let Some(timestamp_ms) = message.timestamp().to_millis() {
            set_if_absent(&mut event, TIMESTAMP_HEADER, || timestamp_ms.to_string());
        }
        if settings.set_topic_header {
            set_if_absent(&mut event, &settings.topic_header, || {
                message.topic().to_string()
            });
        }
        set_if_absent(&mut event, PARTITION_HEADER, || {
            message.partition().to_string()
        });
        set_if_absent(&mut event, OFFSET_HEADER, || message.offset().to_string());
        if let Some(key) = message.key() {
            set_header(
                &mut event,
                KEY_HEADER,
                String::from_utf8_lossy(key).into_owned(),
            );
        }
        if let Some(headers) = message.headers() {
            for (flume, kafka) in &settings.headers.pairs {
                let value = headers
                    .iter()
                    .filter(|header| header.key == kafka)
                    .filter_map(|header| header.value)
                    .last();
                if let Some(value) = value {
                    set_header(
                        &mut event,
                        flume,
                        String::from_utf8_lossy(value).into_owned(),
                    );
                }
            }
        }
        Some(event)
    }

    /// Commits the offsets after `batch`: call only once the channel committed its
    /// events. A failure (the partition moved to another member in a rebalance, the
    /// coordinator away) is returned; the records will then be read again by whoever owns
    /// the partition, so it costs duplicates, not events.
    pub async fn commit(&self, batch: &ConsumedBatch) -> Result<(), rdkafka::error::KafkaError> {
        if batch.next_offsets.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &batch.next_offsets {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        let consumer = Arc::clone(&self.consumer);
        tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .unwrap_or_else(|join_error| {
                Err(rdkafka::error::KafkaError::Canceled).inspect_err(|_| {
                    warn!(%join_error, "the offset commit task did not finish");
                })
            })
    }

    /// The source's settings.
    pub fn settings(&self) -> &KafkaSourceSettings {
        &self.settings
    }
}

/// How long to pause after a read error before reading again.
const READ_ERROR_PAUSE: Duration = Duration::from_millis(100);

fn set_if_absent(event: &mut Event, name: &str, value: impl FnOnce() -> String) {
    if event.header(name).is_none() {
        event.headers.push((name.to_string(), value()));
    }
}

fn set_header(event: &mut Event, name: &str, value: String) {
    match event.headers.iter_mut().find(|(known, _)| known == name) {
        Some(entry) => entry.1 = value,
        None => event.headers.push((name.to_string(), value)),
    }
}
