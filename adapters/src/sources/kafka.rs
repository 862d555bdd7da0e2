//! The Kafka source (`org.apache.flume.source.kafka.KafkaSource`, alias `kafka`): reads
//! batches from Kafka topics in a consumer group, puts each batch on the channels, and
//! commits the batch's offsets only after the channels committed it. Keys, headers and
//! the commit rule are `millrace-kafka`'s ([`millrace_kafka::consumer`]).
//!
//! A batch the channels refuse for a transient reason (full, channeld away) is retried
//! as it is, without reading on, so offsets never run ahead of the channel. A batch
//! refused for what it is stops the source without committing its offsets: the records
//! are read again when the source restarts.

use std::sync::Arc;

use millrace_kafka::{EventConsumer, KafkaSourceSettings};
use tracing::warn;

use super::{ProcessorFactory, SourceError};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};

/// Runs the source until `stop` is raised or a batch is refused for good.
pub async fn run(
    settings: KafkaSourceSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
) -> Result<(), SourceError> {
    let mut consumer = EventConsumer::new(settings)?;
    let mut processor = processors.build();
    loop {
        let batch = tokio::select! {
            batch = consumer.next_batch() => batch,
            () = stop.raised() => return Ok(()),
        };
        if batch.is_empty() {
            continue;
        }
        counters::add(&counters.event_read_failures, batch.undecodable);
        counters::add(&counters.events_received, batch.events.len());
        counters::increment(&counters.append_batches_received);
        if !batch.events.is_empty() {
            match processor.deliver_patiently(&batch.events, &mut stop).await {
                Err(_stopped) => return Ok(()),
                Ok(Err(error)) => return Err(SourceError::Delivery(error)),
                Ok(Ok(())) => counters::increment(&counters.append_batches_accepted),
            }
        }
        if let Err(error) = consumer.commit(&batch).await {
            counters::increment(&counters.generic_processing_failures);
            warn!(%error, events = batch.events.len(), "Kafka source: committing offsets after the channel commit failed; these records will be read again (duplicates)");
        }
    }
}
