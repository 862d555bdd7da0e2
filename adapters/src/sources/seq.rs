//! The `seq` source: the numbers 0, 1, 2, … as event bodies (Flume's
//! `SequenceGeneratorSource`), used by Flume's shipped template and many examples.
//!
//! Each body is the counter in decimal ASCII, without headers. Batches of `batchSize`
//! are committed; the counter moves past a batch only once it is committed, so a retry
//! sends the same numbers again. Unlike Flume, a full channel does not make the source
//! spin: the batch waits and is retried (250 ms doubling to 4 s). After `totalEvents`
//! events the source stays idle (it keeps running, as in Flume). The counter starts at
//! 0 again when the source restarts, as in Flume.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use millrace_client::Event;
use millrace_config::{values, ComponentSettings};
use tracing::info;

use super::{SourceError, BATCH_SIZE_KEY};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::delivery::ChannelProcessor;

/// Flume's default `totalEvents` (`Long.MAX_VALUE`).
pub const DEFAULT_TOTAL_EVENTS: u64 = i64::MAX as u64;
/// Flume's default `batchSize`.
pub const DEFAULT_BATCH_SIZE: u64 = 1;
/// How long the source sleeps at a time once every event is sent.
const DONE_SLEEP: Duration = Duration::from_secs(3600);

/// How a seq source is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqSettings {
    /// `totalEvents`.
    pub total_events: u64,
    /// `batchSize`.
    pub batch_size: usize,
}

impl SeqSettings {
    /// Reads a seq source's keys.
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> Option<SeqSettings> {
        let total_events = keys.parsed_or(
            "totalEvents",
            DEFAULT_TOTAL_EVENTS,
            values::non_negative_integer,
        );
        let batch_size = keys.count_or(BATCH_SIZE_KEY, DEFAULT_BATCH_SIZE);
        let pollable = "a pollable source's backoff; Millrace's seq waits 250 ms doubling up to \
                        4 s when the channel is full instead";
        for backoff in ["backoffSleepIncrement", "maxBackoffSleep"] {
            if keys
                .parsed(backoff, values::positive_milliseconds)
                .is_some()
            {
                keys.warn(backoff, pollable);
            }
        }
        Some(SeqSettings {
            total_events,
            batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
        })
    }
}

/// Sends the sequence until `totalEvents` or `stop`.
pub async fn run(
    settings: SeqSettings,
    mut processor: ChannelProcessor,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
) -> Result<(), SourceError> {
    let mut next: u64 = 0;
    let batch_size = settings.batch_size.max(1) as u64;
    while next < settings.total_events {
        let end = next.saturating_add(batch_size).min(settings.total_events);
        let events: Vec<Event> = (next..end)
            .map(|number| Event::new(Bytes::from(number.to_string())))
            .collect();
        counters::increment(&counters.append_batches_received);
        counters::add(&counters.events_received, events.len());
        let mut delivery = processor.prepare(events);
        match processor.attempt_patiently(&mut delivery, &mut stop).await {
            Ok(Ok(())) => counters::increment(&counters.append_batches_accepted),
            Ok(Err(refused)) => return Err(refused.into()),
            Err(_stopped) => return Ok(()),
        }
        next = end;
        // Let the stop signal and other tasks in between batches.
        tokio::task::yield_now().await;
        if stop.is_raised() {
            return Ok(());
        }
    }
    info!(
        total_events = settings.total_events,
        "seq source sent every event; idle until stopped"
    );
    while stop.sleep(DONE_SLEEP).await {}
    Ok(())
}
