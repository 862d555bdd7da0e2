//! The Kafka sink's producer: one batch of events in, every record acknowledged (or the
//! batch failed) out.
//!
//! # The delivery rule
//!
//! [`EventProducer::send_batch`] returns `Ok` only when Kafka acknowledged every record
//! of the batch (with the default `acks = all`: written to every in-sync replica). The
//! sink's runner commits the take after that, and rolls it back on any error, so an event
//! leaves the channel only once Kafka holds it. Records of a failed batch that Kafka did
//! acknowledge are sent again with the retried batch: those duplicates are reported in
//! [`SendError::Delivery::acknowledged`] so the sink can count them. Within one batch,
//! librdkafka's idempotent producer removes the duplicates of its own internal retries
//! and keeps each partition's records in send order.
//!
//! A record the sink cannot make (a `partitionIdHeader` value that is not a partition
//! number) fails the batch before anything is sent, naming the event.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use millrace_protocol::Event;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use thiserror::Error;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::record::encode_value;
use crate::settings::KafkaSinkSettings;
use crate::KafkaError;

/// How long to wait before queueing again when librdkafka's local queue is full (it
/// drains as brokers acknowledge; a batch is far smaller than the queue's default of
/// 100,000 records, so this happens only when Kafka is slower than the channel).
const QUEUE_FULL_RETRY_DELAY: Duration = Duration::from_millis(10);
/// How long a clean stop waits for records still in flight.
const FLUSH_ON_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The event header whose value becomes the record key (Flume's `key`).
pub const KEY_HEADER: &str = "key";

/// Why a batch was not delivered.
#[derive(Debug, Error)]
pub enum SendError {
    /// This event cannot become a record; nothing of the batch was sent.
    #[error("event {index} of the batch: {reason}")]
    BadEvent {
        /// Its position in the batch.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Some records were not acknowledged.
    #[error(
        "{failed} of {events} records were not acknowledged by Kafka ({acknowledged} were, \
         and will be sent again with the batch); first error: {first_error}"
    )]
    Delivery {
        /// Records in the batch.
        events: usize,
        /// Records Kafka acknowledged anyway.
        acknowledged: usize,
        /// Records that failed.
        failed: usize,
        /// The first failure, from librdkafka.
        first_error: String,
    },
}

/// The delivery reports of one batch: librdkafka's poll thread counts each record in,
/// and the batch's sender wakes when none is pending. One shared count per batch instead
/// of a future per record.
#[derive(Debug, Default)]
struct BatchDeliveries {
    state: Mutex<DeliveryCount>,
    all_reported: Notify,
}

#[derive(Debug, Default)]
struct DeliveryCount {
    pending: usize,
    acknowledged: usize,
    first_error: Option<String>,
}

impl BatchDeliveries {
    fn expecting(records: usize) -> Arc<BatchDeliveries> {
        let deliveries = Arc::new(BatchDeliveries::default());
        deliveries.state.lock().pending = records;
        deliveries
    }

    fn report(&self, outcome: Result<(), String>) {
        let mut count = self.state.lock();
        count.pending = count.pending.saturating_sub(1);
        match outcome {
            Ok(()) => count.acknowledged += 1,
            Err(error) => {
                count.first_error.get_or_insert(error);
            }
        }
        if count.pending == 0 {
            self.all_reported.notify_one();
        }
    }

    /// Waits until every record of the batch is reported; returns how many were
    /// acknowledged and the first error.
    async fn all(&self) -> (usize, Option<String>) {
        loop {
            let reported = self.all_reported.notified();
            {
                let count = self.state.lock();
                if count.pending == 0 {
                    return (count.acknowledged, count.first_error.clone());
                }
            }
            reported.await;
        }
    }
}

/// The sink producer's context: each delivery report goes to its batch.
struct SinkContext;

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Arc<BatchDeliveries>;

    fn delivery(&self, result: &DeliveryResult<'_>, deliveries: Arc<BatchDeliveries>) {
        deliveries.report(match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.to_string()),
        });
    }
}

/// A Kafka producer configured from a Kafka sink's keys.
pub struct EventProducer {
    settings: KafkaSinkSettings,
    producer: ThreadedProducer<SinkContext>,
    /// Whether `kafka.topic` holds `%{header}` escapes.
    topic_has_escapes: bool,
    value: Vec<u8>,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EventProducer")
            .field("settings", &self.settings)
            .finish()
    }
}

/// One planned record: where it goes.
struct Destination<'e> {
    topic: Cow<'e, str>,
    partition: Option<i32>,
    timestamp_ms: Option<i64>,
}

impl EventProducer {
    /// Creates the producer (librdkafka connects in the background).
    pub fn new(settings: KafkaSinkSettings) -> Result<EventProducer, KafkaError> {
        let producer = settings
            .producer
            .client_config()
            .create_with_context(SinkContext)
            .map_err(|source| KafkaError::Create {
                role: "producer",
                bootstrap_servers: settings.bootstrap_servers.clone(),
                source,
            })?;
        info!(bootstrap_servers = %settings.bootstrap_servers, topic = %settings.topic, "Kafka producer created");
        Ok(EventProducer {
            topic_has_escapes: settings.topic.contains("%{"),
            settings,
            producer,
            value: Vec::new(),
        })
    }

    /// The sink's settings.
    pub fn settings(&self) -> &KafkaSinkSettings {
        &self.settings
    }

    /// Sends `events` and waits for every acknowledgement; `Ok` only when Kafka
    /// acknowledged all of them. Safe to call again with the same events after an error.
    pub async fn send_batch(&mut self, events: &[Event]) -> Result<(), SendError> {
        let destinations = events
            .iter()
            .enumerate()
            .map(|(index, event)| self.destination(index, event))
            .collect::<Result<Vec<_>, _>>()?;
        let deliveries = BatchDeliveries::expecting(events.len());
        for (event, destination) in events.iter().zip(&destinations) {
            self.value.clear();
            encode_value(event, self.settings.use_flume_event_format, &mut self.value);
            let headers = self.record_headers(event);
            if let Err(error) = self
                .enqueue(event, destination, headers, &self.value, &deliveries)
                .await
            {
                deliveries.report(Err(error.to_string()));
            }
        }
        let (acknowledged, first_error) = deliveries.all().await;
        if acknowledged == events.len() {
            return Ok(());
        }
        Err(SendError::Delivery {
            events: events.len(),
            acknowledged,
            failed: events.len() - acknowledged,
            first_error: first_error.unwrap_or_default(),
        })
    }

    /// Queues one record, its report counted in `deliveries`, waiting while librdkafka's
    /// local queue is full.
    async fn enqueue(
        &self,
        event: &Event,
        destination: &Destination<'_>,
        headers: Option<OwnedHeaders>,
        value: &[u8],
        deliveries: &Arc<BatchDeliveries>,
    ) -> Result<(), RdKafkaError> {
        let key = event.header(KEY_HEADER);
        loop {
            let mut record: BaseRecord<'_, str, [u8], Arc<BatchDeliveries>> =
                BaseRecord::with_opaque_to(&destination.topic, Arc::clone(deliveries))
                    .payload(value);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(partition) = destination.partition {
                record = record.partition(partition);
            }
            if let Some(timestamp_ms) = destination.timestamp_ms {
                record = record.timestamp(timestamp_ms);
            }
            if let Some(headers) = &headers {
                record = record.headers(headers.clone());
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(QUEUE_FULL_RETRY_DELAY).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// The topic, partition and timestamp of event `index`, as Flume's sink picks them.
    fn destination<'e>(
        &self,
        index: usize,
        event: &'e Event,
    ) -> Result<Destination<'e>, SendError> {
        let settings = &self.settings;
        let topic = match event.header(&settings.topic_header) {
            Some(topic) if settings.allow_topic_override => Cow::Borrowed(topic),
            _ if settings.allow_topic_override && self.topic_has_escapes => {
                Cow::Owned(replace_header_escapes(&settings.topic, event))
            }
            _ => Cow::Owned(settings.topic.clone()),
        };
        let header_partition = settings
            .partition_id_header
            .as_deref()
            .and_then(|header| Some((header, event.header(header)?)));
        let partition = match header_partition {
            Some((header, value)) => Some(
                value
                    .trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|p| *p >= 0)
                    .ok_or_else(|| SendError::BadEvent {
                        index,
                        reason: format!(
                        "header {header} (partitionIdHeader) is {value:?}, not a partition number"
                    ),
                    })?,
            ),
            None => settings.default_partition_id,
        };
        let timestamp_ms = settings.timestamp_header.as_deref().and_then(|header| {
            let value = event.header(header)?;
            match value.trim().parse::<i64>() {
                Ok(timestamp_ms) => Some(timestamp_ms),
                Err(_) => {
                    warn!(header, value, "timestampHeader value is not epoch milliseconds; the record gets the send time");
                    None
                }
            }
        });
        Ok(Destination {
            topic,
            partition,
            timestamp_ms,
        })
    }

    /// The record headers `header.*` copies from the event, if any.
    fn record_headers(&self, event: &Event) -> Option<OwnedHeaders> {
        let mut headers: Option<OwnedHeaders> = None;
        for (flume, kafka) in &self.settings.headers.pairs {
            if let Some(value) = event.header(flume) {
                headers = Some(headers.unwrap_or_default().insert(Header {
                    key: kafka,
                    value: Some(value.as_bytes()),
                }));
            }
        }
        headers
    }

    /// Waits (up to 10 s) for records still in flight; for a clean stop.
    pub fn close(&self) {
        if let Err(error) = self.producer.flush(FLUSH_ON_CLOSE_TIMEOUT) {
            warn!(%error, "Kafka producer: records still in flight at stop");
        }
    }
}

/// `template` with each `%{name}` replaced by the event's header `name` (empty when the
/// event lacks it), as Flume's `BucketPath` does for the topic.
pub fn replace_header_escapes(template: &str, event: &Event) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("%{") {
        let Some(length) = rest[start + 2..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 2..start + 2 + length];
        out.push_str(event.header(name).unwrap_or(""));
        rest = &rest[start + 2 + length + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_escapes_in_the_topic_take_the_events_header_values() {
        let event = Event::new("x").with_header("app", "billing");
        assert_eq!(
            replace_header_escapes("logs-%{app}-%{missing}", &event),
            "logs-billing-"
        );
        assert_eq!(replace_header_escapes("plain", &event), "plain");
        assert_eq!(replace_header_escapes("open-%{app", &event), "open-%{app");
    }
}
