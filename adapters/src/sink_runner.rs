//! Running sinks: take a batch, deliver it, then commit — alone or in a sink group.
//!
//! A delivery failure rolls the take back, so the channel gives the same events again
//! (at-least-once). An event that a sink refuses for what it is ([`SinkError::BadEvent`])
//! would block the flow forever; when the sink has a dead-letter channel, the event goes
//! there after `deadLetter.maxAttempts` refusals — put and committed before the take
//! commits, so it is never lost — and the rest of the batch flows on.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_client::{ClientError, Event};
use millrace_config::{SinkProcessor, SinkSelector};
use rand::Rng;
use thiserror::Error;
use tracing::{error, info, warn};

use crate::connection::{Connection, StopSignal};
use crate::counters::{self, SinkCounters};
use crate::sinks::{Sink, SinkError};

/// How long a take waits for the first event before the runner looks at its timers.
pub const TAKE_WAIT: Duration = Duration::from_millis(500);
/// Flume's SinkRunner back-off step after a failed or empty batch, and its ceiling.
const BACKOFF_STEP: Duration = Duration::from_millis(1_000);
const MAX_BACKOFF: Duration = Duration::from_millis(5_000);
/// Header names on a dead-lettered event (Millrace additions).
pub const DEAD_LETTER_SINK_HEADER: &str = "millrace.deadLetter.sink";
/// The channel the event was taken from.
pub const DEAD_LETTER_CHANNEL_HEADER: &str = "millrace.deadLetter.channel";
/// Why the sink refused it.
pub const DEAD_LETTER_REASON_HEADER: &str = "millrace.deadLetter.reason";
/// How many times it was refused.
pub const DEAD_LETTER_ATTEMPTS_HEADER: &str = "millrace.deadLetter.attempts";
/// Most refused events remembered between batches.
const MAX_REMEMBERED_REFUSALS: usize = 10_000;

/// Where refused events go.
#[derive(Debug)]
pub struct DeadLetter {
    /// `deadLetter.channel`: a channel on the same channeld.
    pub channel: String,
    /// `deadLetter.maxAttempts`: refusals before an event is set aside.
    pub max_attempts: u32,
    /// Its own connection, so the take's transaction stays open meanwhile.
    pub connection: Connection,
}

/// Why one batch did not complete.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// The channel could not be reached, or refused the take or its commit.
    #[error("sink {sink}: channel {channel}: {source}")]
    Channel {
        /// The sink.
        sink: String,
        /// Its channel.
        channel: String,
        /// Why.
        #[source]
        source: Box<ClientError>,
    },
    /// The sink could not deliver; the take was rolled back.
    #[error("sink {sink}: {source}")]
    Delivery {
        /// The sink.
        sink: String,
        /// Why.
        #[source]
        source: SinkError,
    },
    /// A refused event could not be put on the dead-letter channel.
    #[error("sink {sink}: cannot put a refused event on dead-letter channel {channel}: {source}")]
    DeadLetter {
        /// The sink.
        sink: String,
        /// The dead-letter channel.
        channel: String,
        /// Why.
        #[source]
        source: Box<ClientError>,
    },
    /// Every sink of a group failed or is backing off.
    #[error("sink group {group}: no sink could take the batch")]
    NoSinkAvailable {
        /// The group.
        group: String,
    },
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Events were delivered and their take committed.
    Delivered(usize),
    /// The channel had nothing within [`TAKE_WAIT`].
    Empty,
}

/// One sink and its channel.
#[derive(Debug)]
pub struct SinkRunner {
    /// The sink's name.
    pub name: String,
    channel: String,
    batch_size: u32,
    connection: Connection,
    sink: Sink,
    counters: Arc<SinkCounters>,
    dead_letter: Option<DeadLetter>,
    refusals: HashMap<u64, u32>,
}

fn fingerprint(event: &Event) -> u64 {
    let mut hasher = DefaultHasher::new();
    event.headers.hash(&mut hasher);
    event.body.hash(&mut hasher);
    hasher.finish()
}

impl SinkRunner {
    /// A runner for `sink` taking up to `batch_size` events at a time from `channel`.
    pub fn new(
        name: String,
        channel: String,
        batch_size: u32,
        connection: Connection,
        sink: Sink,
        counters: Arc<SinkCounters>,
        dead_letter: Option<DeadLetter>,
    ) -> Self {
        SinkRunner {
            name,
            channel,
            batch_size,
            connection,
            sink,
            counters,
            dead_letter,
            refusals: HashMap::new(),
        }
    }

    /// Starts the sink.
    pub async fn start(&mut self) -> Result<(), ProcessError> {
        self.sink.start().await.map_err(|source| {
            counters::increment(&self.counters.connections_failed);
            ProcessError::Delivery {
                sink: self.name.clone(),
                source,
            }
        })?;
        counters::increment(&self.counters.connections_created);
        Ok(())
    }

    /// Stops the sink (closes and moves its file, closes connections).
    pub async fn stop(&mut self) {
        if let Err(error) = self.sink.stop().await {
            error!(sink = %self.name, %error, "stopping the sink failed");
        }
        counters::increment(&self.counters.connections_closed);
        self.connection.close();
    }

    fn channel_error(&mut self, source: ClientError) -> ProcessError {
        self.connection.forget_if_broken(&source);
        counters::increment(&self.counters.channel_read_failures);
        ProcessError::Channel {
            sink: self.name.clone(),
            channel: self.channel.clone(),
            source: Box::new(source),
        }
    }

    /// Takes one batch, delivers it and commits the take.
    pub async fn process(&mut self) -> Result<Status, ProcessError> {
        if let Err(source) = self.sink.tick().await {
            return Err(ProcessError::Delivery {
                sink: self.name.clone(),
                source,
            });
        }
        let taken = match self.connection.client().await {
            Ok(client) => {
                client
                    .begin_and_take(&self.channel, self.batch_size, TAKE_WAIT)
                    .await
            }
            Err(error) => Err(error),
        };
        let events = match taken {
            Ok(events) => events,
            Err(error) => {
                self.rollback().await;
                return Err(self.channel_error(error));
            }
        };
        self.count_batch(events.len());
        if events.is_empty() {
            return match self.commit().await {
                Ok(()) => Ok(Status::Empty),
                Err(error) => Err(self.channel_error(error)),
            };
        }
        if let Err(failure) = self.deliver(&events).await {
            self.rollback().await;
            return Err(failure);
        }
        match self.commit().await {
            Ok(()) => {
                counters::add(&self.counters.events_drain_succeeded, events.len());
                if self.refusals.len() > MAX_REMEMBERED_REFUSALS {
                    self.refusals.clear();
                }
                Ok(Status::Delivered(events.len()))
            }
            Err(error) => Err(self.channel_error(error)),
        }
    }

    fn count_batch(&self, taken: usize) {
        let counters = &self.counters;
        counters::add(&counters.events_drain_attempted, taken);
        if taken == 0 {
            counters::increment(&counters.batches_empty);
        } else if taken < self.batch_size as usize {
            counters::increment(&counters.batches_underflow);
        } else {
            counters::increment(&counters.batches_complete);
        }
    }

    async fn commit(&mut self) -> Result<(), ClientError> {
        self.connection.client().await?.commit().await
    }

    async fn rollback(&mut self) {
        if !self.connection.is_connected() {
            return;
        }
        let outcome = match self.connection.client().await {
            Ok(client) => client.rollback().await,
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            // The server rolls back a transaction whose connection closes.
            warn!(sink = %self.name, %error, "rollback failed; dropping the connection");
            self.connection.close();
        }
    }

    /// Delivers `events`, setting aside refused events when a dead-letter channel is
    /// configured and they were refused often enough.
    async fn deliver(&mut self, events: &[Event]) -> Result<(), ProcessError> {
        let mut remaining = events.to_vec();
        loop {
            let failure = match self.sink.write(&remaining).await {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            counters::increment(&self.counters.event_write_failures);
            let SinkError::BadEvent { index, reason } = &failure else {
                return Err(ProcessError::Delivery {
                    sink: self.name.clone(),
                    source: failure,
                });
            };
            let refused = remaining[*index].clone();
            let attempts = {
                let count = self.refusals.entry(fingerprint(&refused)).or_insert(0);
                *count += 1;
                *count
            };
            let Some(dead_letter) = self.dead_letter.as_mut() else {
                error!(
                    sink = %self.name,
                    attempts,
                    %reason,
                    "an event is refused and blocks the flow; configure deadLetter.channel to set such events aside"
                );
                return Err(ProcessError::Delivery {
                    sink: self.name.clone(),
                    source: failure,
                });
            };
            if attempts < dead_letter.max_attempts {
                warn!(sink = %self.name, attempts, max_attempts = dead_letter.max_attempts, %reason, "event refused; will retry");
                return Err(ProcessError::Delivery {
                    sink: self.name.clone(),
                    source: failure,
                });
            }
            let set_aside = refused
                .with_header(DEAD_LETTER_SINK_HEADER, self.name.clone())
                .with_header(DEAD_LETTER_CHANNEL_HEADER, self.channel.clone())
                .with_header(DEAD_LETTER_REASON_HEADER, reason.clone())
                .with_header(DEAD_LETTER_ATTEMPTS_HEADER, attempts.to_string());
            let dead_letter_channel = dead_letter.channel.clone();
            if let Err(source) = dead_letter
                .connection
                .put_and_commit(&dead_letter_channel, std::slice::from_ref(&set_aside))
                .await
            {
                return Err(ProcessError::DeadLetter {
                    sink: self.name.clone(),
                    channel: dead_letter_channel,
                    source: Box::new(source),
                });
            }
            info!(sink = %self.name, channel = %dead_letter_channel, attempts, %reason, "refused event moved to the dead-letter channel");
            counters::increment(&self.counters.events_dead_lettered);
            let index = *index;
            self.refusals.remove(&fingerprint(&remaining[index]));
            remaining.remove(index);
            if remaining.is_empty() {
                return Ok(());
            }
        }
    }
}

/// Per-sink state of a group's processor.
#[derive(Debug, Default, Clone)]
struct Penalty {
    sequential_failures: u32,
    until: Option<Instant>,
}

impl Penalty {
    fn is_active(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// Flume's cool-down: `min(ceiling, 2^failures × 1 s)`.
    fn fail(&mut self, now: Instant, ceiling: Duration) {
        self.sequential_failures = self.sequential_failures.saturating_add(1);
        let exponent = self.sequential_failures.min(20);
        let cool_down = BACKOFF_STEP.saturating_mul(1 << exponent).min(ceiling);
        self.until = Some(now + cool_down);
    }

    fn succeed(&mut self) {
        self.sequential_failures = 0;
        self.until = None;
    }
}

/// How a group picks its sink.
#[derive(Debug, Clone)]
enum Policy {
    Failover {
        max_penalty: Duration,
    },
    LoadBalance {
        random: bool,
        backoff: bool,
        max_backoff: Duration,
    },
}

/// Sinks that share one processor: `failover` or `load_balance`.
#[derive(Debug)]
pub struct SinkGroupRunner {
    name: String,
    /// For failover: highest priority first. For load balancing: as listed.
    sinks: Vec<SinkRunner>,
    penalties: Vec<Penalty>,
    policy: Policy,
    next_round_robin: usize,
}

impl SinkGroupRunner {
    /// A group from its processor settings; `sinks` in the group's listed order.
    pub fn new(name: String, mut sinks: Vec<SinkRunner>, processor: &SinkProcessor) -> Self {
        let policy = match processor {
            SinkProcessor::Failover {
                priorities,
                max_penalty,
            } => {
                let priority_of = |sink: &SinkRunner| {
                    priorities
                        .iter()
                        .find(|(name, _)| *name == sink.name)
                        .map_or(0, |(_, priority)| *priority)
                };
                // Stable: equal priorities keep the listed order.
                sinks.sort_by_key(|sink| std::cmp::Reverse(priority_of(sink)));
                Policy::Failover {
                    max_penalty: *max_penalty,
                }
            }
            SinkProcessor::LoadBalance {
                selector,
                backoff,
                max_backoff,
            } => Policy::LoadBalance {
                random: matches!(selector, SinkSelector::Random),
                backoff: *backoff,
                max_backoff: *max_backoff,
            },
            SinkProcessor::Default | SinkProcessor::Custom { .. } => Policy::Failover {
                max_penalty: Duration::ZERO,
            },
        };
        let penalties = vec![Penalty::default(); sinks.len()];
        SinkGroupRunner {
            name,
            sinks,
            penalties,
            policy,
            next_round_robin: 0,
        }
    }

    /// The order to try the sinks in for the next batch.
    fn attempt_order(&mut self) -> Vec<usize> {
        let count = self.sinks.len();
        let now = Instant::now();
        match &self.policy {
            Policy::Failover { .. } => (0..count)
                .filter(|&index| !self.penalties[index].is_active(now))
                .collect(),
            Policy::LoadBalance {
                random, backoff, ..
            } => {
                let start = if *random {
                    rand::rng().random_range(0..count)
                } else {
                    let start = self.next_round_robin % count;
                    self.next_round_robin = start + 1;
                    start
                };
                (0..count)
                    .map(|offset| (start + offset) % count)
                    .filter(|&index| !*backoff || !self.penalties[index].is_active(now))
                    .collect()
            }
        }
    }

    /// Delivers one batch through the first sink that manages it.
    pub async fn process(&mut self) -> Result<Status, ProcessError> {
        for index in self.attempt_order() {
            match self.sinks[index].process().await {
                Ok(status) => {
                    if self.penalties[index].sequential_failures > 0 {
                        info!(group = %self.name, sink = %self.sinks[index].name, "sink is back");
                    }
                    self.penalties[index].succeed();
                    return Ok(status);
                }
                Err(failure) => {
                    let ceiling = match &self.policy {
                        Policy::Failover { max_penalty } => *max_penalty,
                        Policy::LoadBalance { max_backoff, .. } => *max_backoff,
                    };
                    warn!(group = %self.name, error = %failure, "sink failed; trying the next");
                    self.penalties[index].fail(Instant::now(), ceiling);
                }
            }
        }
        Err(ProcessError::NoSinkAvailable {
            group: self.name.clone(),
        })
    }

    /// Starts every sink; one that cannot start is penalised, not fatal.
    pub async fn start(&mut self) -> Result<(), ProcessError> {
        let mut started = 0;
        let mut last_failure = None;
        for index in 0..self.sinks.len() {
            match self.sinks[index].start().await {
                Ok(()) => started += 1,
                Err(failure) => {
                    error!(group = %self.name, error = %failure, "sink cannot start");
                    self.penalties[index].fail(Instant::now(), Duration::MAX);
                    last_failure = Some(failure);
                }
            }
        }
        match (started, last_failure) {
            (0, Some(failure)) => Err(failure),
            _ => Ok(()),
        }
    }

    /// Stops every sink.
    pub async fn stop(&mut self) {
        for sink in &mut self.sinks {
            sink.stop().await;
        }
    }
}

/// A single sink or a group, run the same way.
#[derive(Debug)]
pub enum SinkUnit {
    /// A sink outside any group (Flume's default processor).
    Single(Box<SinkRunner>),
    /// A sink group.
    Group(Box<SinkGroupRunner>),
}

impl SinkUnit {
    /// Starts, processes batches until `stop` is raised, then stops. Failed batches back
    /// off as Flume's SinkRunner does: 1 s more per consecutive failure, up to 5 s.
    pub async fn run(mut self, mut stop: StopSignal) -> Result<(), ProcessError> {
        match &mut self {
            SinkUnit::Single(sink) => sink.start().await?,
            SinkUnit::Group(group) => group.start().await?,
        }
        let mut consecutive_failures: u32 = 0;
        while !stop.is_raised() {
            let outcome = match &mut self {
                SinkUnit::Single(sink) => sink.process().await,
                SinkUnit::Group(group) => group.process().await,
            };
            match outcome {
                Ok(_) => consecutive_failures = 0,
                Err(failure) => {
                    consecutive_failures = consecutive_failures.saturating_add(1);
                    let wait = BACKOFF_STEP
                        .saturating_mul(consecutive_failures)
                        .min(MAX_BACKOFF);
                    warn!(error = %failure, retry_in_ms = wait.as_millis() as u64, "batch failed; backing off");
                    if !stop.sleep(wait).await {
                        break;
                    }
                }
            }
        }
        match &mut self {
            SinkUnit::Single(sink) => sink.stop().await,
            SinkUnit::Group(group) => group.stop().await,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sink_cools_down_twice_as_long_each_time_up_to_the_ceiling() {
        let mut penalty = Penalty::default();
        let now = Instant::now();
        let ceiling = Duration::from_secs(30);
        let mut cool_downs = Vec::new();
        for _ in 0..6 {
            penalty.fail(now, ceiling);
            cool_downs.push(penalty.until.unwrap() - now);
        }
        let seconds: Vec<u64> = cool_downs.iter().map(Duration::as_secs).collect();
        assert_eq!(seconds, [2, 4, 8, 16, 30, 30]);
        assert!(penalty.is_active(now));
        penalty.succeed();
        assert!(!penalty.is_active(now));
    }
}
