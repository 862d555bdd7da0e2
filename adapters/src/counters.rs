//! Flume's source and sink counters, with Flume's attribute names.
//!
//! Each adapter bumps its counters as it works; the agent reports them to channeld,
//! which serves them on `/metrics` as `SOURCE.<name>` and `SINK.<name>`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which kind of component a counter set belongs to (Flume's `Type` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// A source: `SOURCE.<name>`.
    Source,
    /// A sink: `SINK.<name>`.
    Sink,
}

impl ComponentKind {
    /// Flume's `Type` value and metrics prefix.
    pub fn flume_type(self) -> &'static str {
        match self {
            ComponentKind::Source => "SOURCE",
            ComponentKind::Sink => "SINK",
        }
    }
}

macro_rules! counter_set {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* $field:ident => $flume:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: AtomicU64,)*
        }

        impl $name {
            /// Every counter with its Flume attribute name.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$(($flume, self.$field.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counter_set! {
    /// Flume's `SourceCounter`.
    SourceCounters {
        /// Events read from the outside.
        events_received => "EventReceivedCount",
        /// Events committed to every required channel.
        events_accepted => "EventAcceptedCount",
        /// Single-event appends received (netcat lines, syslog messages).
        appends_received => "AppendReceivedCount",
        /// Single-event appends committed.
        appends_accepted => "AppendAcceptedCount",
        /// Batches received (spooldir reads, exec batches, HTTP requests).
        append_batches_received => "AppendBatchReceivedCount",
        /// Batches committed.
        append_batches_accepted => "AppendBatchAcceptedCount",
        /// Client connections open now (netcat, syslogtcp, http).
        open_connections => "OpenConnectionCount",
        /// Puts the channel refused or that failed on the way.
        channel_write_failures => "ChannelWriteFail",
        /// Input that could not be read or parsed.
        event_read_failures => "EventReadFail",
        /// Any other failure.
        generic_processing_failures => "GenericProcessingFail",
    }
}

counter_set! {
    /// Flume's `SinkCounter`.
    SinkCounters {
        /// Connections (or files) opened.
        connections_created => "ConnectionCreatedCount",
        /// Connections (or files) closed.
        connections_closed => "ConnectionClosedCount",
        /// Connections (or files) that could not be opened.
        connections_failed => "ConnectionFailedCount",
        /// Takes that found the channel empty.
        batches_empty => "BatchEmptyCount",
        /// Takes that returned fewer events than the batch size.
        batches_underflow => "BatchUnderflowCount",
        /// Takes that returned a full batch.
        batches_complete => "BatchCompleteCount",
        /// Events taken for delivery.
        events_drain_attempted => "EventDrainAttemptCount",
        /// Events delivered and committed.
        events_drain_succeeded => "EventDrainSuccessCount",
        /// Takes or commits the channel refused.
        channel_read_failures => "ChannelReadFail",
        /// Deliveries that failed.
        event_write_failures => "EventWriteFail",
        /// Events moved to the dead-letter channel (a Millrace addition).
        events_dead_lettered => "EventDeadLetterCount",
        /// Events a failed batch had delivered anyway, sent again with the retried batch:
        /// the duplicates a failure cost (a Millrace addition; the Kafka sink counts
        /// the records Kafka acknowledged in a batch that failed).
        events_sent_again => "EventSentAgainCount",
    }
}

/// Adds `amount` to a counter.
pub fn add(counter: &AtomicU64, amount: usize) {
    counter.fetch_add(amount as u64, Ordering::Relaxed);
}

/// Adds one to a counter.
pub fn increment(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Takes one from a gauge such as `OpenConnectionCount`.
pub fn decrement(counter: &AtomicU64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}
