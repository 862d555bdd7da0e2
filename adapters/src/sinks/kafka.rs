//! The Kafka sink (`org.apache.flume.sink.kafka.KafkaSink`, alias `kafka`): each taken
//! batch becomes Kafka records; the take commits only after Kafka acknowledged every
//! one of them, and rolls back on any delivery error (the runner then backs off and
//! takes the same events again). Keys, record layout and delivery rules are
//! `millrace-kafka`'s; this module only joins them to the sink runner.
//!
//! The producer is created when the sink starts, so reading a configuration
//! (`channelctl validate`) never makes a Kafka client.

use std::sync::Arc;

use millrace_client::Event;
use millrace_kafka::{EventProducer, KafkaSinkSettings, SendError};
use tracing::warn;

use super::SinkError;
use crate::counters::{self, SinkCounters};

/// Sends batches to Kafka.
#[derive(Debug)]
pub struct KafkaSink {
    settings: KafkaSinkSettings,
    counters: Arc<SinkCounters>,
    producer: Option<EventProducer>,
}

impl KafkaSink {
    /// No Kafka client until [`start`](Self::start).
    pub fn new(settings: KafkaSinkSettings, counters: Arc<SinkCounters>) -> Self {
        KafkaSink {
            settings,
            counters,
            producer: None,
        }
    }

    /// Creates the producer.
    pub fn start(&mut self) -> Result<(), SinkError> {
        if self.producer.is_none() {
            let producer = EventProducer::new(self.settings.clone())
                .map_err(|error| SinkError::CannotStart(error.to_string()))?;
            counters::increment(&self.counters.connections_created);
            self.producer = Some(producer);
        }
        Ok(())
    }

    /// Sends `events`; `Ok` only when Kafka acknowledged all of them.
    pub async fn write(&mut self, events: &[Event]) -> Result<(), SinkError> {
        self.start()?;
        let producer = self.producer.as_mut().expect("started above");
        match producer.send_batch(events).await {
            Ok(()) => Ok(()),
            Err(SendError::BadEvent { index, reason }) => {
                Err(SinkError::BadEvent { index, reason })
            }
            Err(error @ SendError::Delivery { acknowledged, .. }) => {
                counters::add(&self.counters.events_sent_again, acknowledged);
                warn!(%error, "Kafka sink: batch not acknowledged; rolling the take back and starting a new producer");
                // A new producer for the retry: some errors leave an idempotent producer
                // unusable (a fatal error), and every record of this one is settled.
                self.producer = None;
                counters::increment(&self.counters.connections_closed);
                Err(SinkError::Kafka(Box::new(error)))
            }
        }
    }

    /// Waits for records in flight and drops the producer.
    pub fn stop(&mut self) {
        if let Some(producer) = self.producer.take() {
            producer.close();
            counters::increment(&self.counters.connections_closed);
        }
    }
}
