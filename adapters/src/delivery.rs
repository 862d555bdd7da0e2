//! The source side of a flow: a channel selector picks each event's channels, and the
//! [`ChannelProcessor`] puts each channel's share in transactions sized to what the
//! channel allows, as Flume's `ChannelProcessor` does.
//!
//! ## Rules
//!
//! - **A source never drops what it accepted because of its own batching.** A share larger
//!   than a channel's `transactionCapacity` is split: the limit is learned from the
//!   `TRANSACTION_TOO_LARGE` refusal (its `transaction_capacity` field; the refused
//!   transaction was rolled back), remembered in the source's [`ServerPool`], and the
//!   share is put in transactions of at most that many events.
//! - **Progress is kept across retries.** A delivery remembers how much of each channel's
//!   share is committed; a retry after a transient failure (channel full, connection lost)
//!   sends only the rest, so nothing is delivered twice by the retry itself.
//! - **Refused events are isolated and never dropped quietly.** When a transaction is
//!   refused for what its events are (an event too large for the channel or the frame
//!   limit), its events are put one by one; each event still refused goes to the source's
//!   dead-letter channel (`deadLetter.channel`, with headers saying why), or, without one,
//!   comes back in [`DeliveryError`] for the source to return to its sender.
//! - **Required and optional channels.** Required channels are written in the order the
//!   source lists them; the first failure stops the attempt. Optional channels get one
//!   attempt per delivery; their failures are only logged (Flume's rule).
//! - **All or nothing, when asked.** [`ChannelProcessor::deliver_whole`] puts each share in
//!   one transaction and refuses (rather than splits) a share over the channel's limit, for
//!   sources whose client expects an all-or-nothing answer (HTTP).

use std::sync::Arc;

use millrace_client::{fields, ClientError, ErrorCode, Event};
use millrace_config::{ChannelSelector, LoadBalancingPolicy};
use rand::Rng;
use thiserror::Error;
use tracing::{error, warn};

use crate::connection::{RetryDelay, StopSignal, MAX_RETRY_DELAY};
use crate::counters::{self, SourceCounters};
use crate::interceptors::{intercept_all, Interceptor};
use crate::pool::ServerPool;

/// Header naming the source that set an event aside (Millrace addition).
pub const DEAD_LETTER_SOURCE_HEADER: &str = "millrace.deadLetter.source";
/// Header naming the channel that refused the event.
pub const DEAD_LETTER_CHANNEL_HEADER: &str = "millrace.deadLetter.channel";
/// Header saying why it was refused.
pub const DEAD_LETTER_REASON_HEADER: &str = "millrace.deadLetter.reason";
/// Header naming the interceptor that failed on the event (instead of a channel).
pub const DEAD_LETTER_INTERCEPTOR_HEADER: &str = "millrace.deadLetter.interceptor";

/// Why a delivery did not complete.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// A required channel did not take its share (or the rest of it): the channel or the
    /// server failed, or refused the request itself (an unknown channel, a wrong token).
    #[error("Unable to put batch on required channel: {channel}: {source}")]
    Channel {
        /// The channel that refused or could not be reached.
        channel: String,
        /// Why.
        #[source]
        source: Box<ClientError>,
    },
    /// Events refused for what they are, with no dead-letter channel to take them. The
    /// other events are committed.
    #[error("{} event(s) refused by channel {channel}: {reason}", refused.len())]
    Refused {
        /// The channel that refused the first of them.
        channel: String,
        /// Why the first of them was refused.
        reason: String,
        /// Their positions in the delivered batch.
        refused: Vec<usize>,
    },
    /// [`ChannelProcessor::deliver_whole`]: the events are more than one transaction of
    /// `channel` may hold; nothing was committed.
    #[error(
        "{events} events are more than channel {channel} takes in one transaction \
         (transactionCapacity {transaction_capacity}); nothing was committed"
    )]
    TooManyEvents {
        /// The channel.
        channel: String,
        /// Its `transactionCapacity`.
        transaction_capacity: usize,
        /// Events of the batch for that channel.
        events: usize,
    },
}

impl DeliveryError {
    /// Whether trying the same batch again later can succeed (channel full, server
    /// restarting, connection lost) rather than being refused again for its content.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Channel { source, .. } => is_transient(source),
            DeliveryError::Refused { .. } | DeliveryError::TooManyEvents { .. } => false,
        }
    }
}

/// Whether a failed request can succeed later as sent: a full channel, low disk space,
/// an unhealthy channel awaiting its operator, a lost connection, a server restarting.
/// Refusals of the request itself (an unknown channel, a batch or event too large, a
/// wrong token, an event that cannot be encoded) are permanent.
pub fn is_transient(error: &ClientError) -> bool {
    match error {
        ClientError::Encode(_) | ClientError::InvalidOption(_) => false,
        _ => !matches!(
            error.code(),
            Some(
                ErrorCode::TransactionTooLarge
                    | ErrorCode::UnknownChannel
                    | ErrorCode::FrameTooLarge
                    | ErrorCode::Unauthorized
                    | ErrorCode::UnsupportedVersion
            )
        ),
    }
}

/// What a failed put says about the events in it.
#[derive(Debug, PartialEq, Eq)]
enum PutFailure {
    /// The transaction held more events than the channel allows: this many at most.
    OverTransactionLimit(usize),
    /// Some event of it is refused for what it is (too large for the channel's log or
    /// for the frame limit, not encodable).
    EventRefused,
    /// Anything else: transient, or a refusal of the request itself.
    Other,
}

fn classify(error: &ClientError, events: usize) -> PutFailure {
    if let ClientError::Encode(_) = error {
        return PutFailure::EventRefused;
    }
    match error.code() {
        Some(ErrorCode::TransactionTooLarge) => {
            let limit = error
                .server_error()
                .and_then(|refusal| refusal.field(fields::TRANSACTION_CAPACITY))
                .and_then(|limit| usize::try_from(limit).ok());
            match limit {
                Some(limit) if limit < events => PutFailure::OverTransactionLimit(limit),
                // No limit named: the event itself is too large for the channel.
                _ => PutFailure::EventRefused,
            }
        }
        Some(ErrorCode::FrameTooLarge) => PutFailure::EventRefused,
        _ => PutFailure::Other,
    }
}

/// The stop signal was raised while a delivery was being retried.
#[derive(Debug, Error)]
#[error("stopped while delivering")]
pub struct Stopped;

/// Which channels one event goes to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Route {
    required: Vec<usize>,
    optional: Vec<usize>,
}

/// One channel's events of a delivery and how far they are committed.
#[derive(Debug)]
struct Share {
    channel: usize,
    required: bool,
    events: Vec<Event>,
    /// Each event's position in the delivered batch.
    positions: Vec<usize>,
    /// Events from the front that are committed, or refused and set aside.
    done: usize,
}

/// An event a channel (or an interceptor) refused, waiting for the dead-letter channel.
#[derive(Debug)]
struct RefusedEvent {
    position: usize,
    /// The channel that refused it; for an interceptor's failure, the interceptor.
    channel: String,
    /// Whether an interceptor (named by `channel`) refused it rather than a channel.
    by_interceptor: bool,
    reason: String,
    event: Event,
}

/// A delivery in progress: survives failed attempts so a retry resumes it.
#[derive(Debug)]
pub struct PendingDelivery {
    shares: Vec<Share>,
    refused: Vec<RefusedEvent>,
    /// Refused events already committed on the dead-letter channel (or reported).
    dead_lettered: usize,
    event_count: usize,
    /// Whether the accepted events are counted already.
    counted: bool,
}

impl PendingDelivery {
    /// Events in the delivery.
    pub fn len(&self) -> usize {
        self.event_count
    }

    /// Whether it has no events.
    pub fn is_empty(&self) -> bool {
        self.event_count == 0
    }
}

/// Where a source's refused events go: `deadLetter.channel` on the same channeld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDeadLetter {
    /// The channel.
    pub channel: String,
    /// The source's name, for the header.
    pub source: String,
}

/// Puts a source's events on its channels.
pub struct ChannelProcessor {
    channels: Vec<String>,
    selector: ChannelSelector,
    pool: Arc<ServerPool>,
    counters: Arc<SourceCounters>,
    next_balanced_channel: usize,
    interceptors: Vec<Interceptor>,
    dead_letter: Option<SourceDeadLetter>,
}

impl ChannelProcessor {
    /// For a source writing to `channels` (in its `channels` order) through `selector`,
    /// over connections from `pool`.
    pub fn new(
        channels: Vec<String>,
        selector: ChannelSelector,
        pool: Arc<ServerPool>,
        counters: Arc<SourceCounters>,
    ) -> Self {
        ChannelProcessor {
            channels,
            selector,
            pool,
            counters,
            next_balanced_channel: 0,
            interceptors: Vec::new(),
            dead_letter: None,
        }
    }

    /// Adds headers with these interceptors, in order, before routing each event.
    pub fn with_interceptors(mut self, interceptors: Vec<Interceptor>) -> Self {
        self.interceptors = interceptors;
        self
    }

    /// Puts events the channels refuse on this dead-letter channel.
    pub fn with_dead_letter(mut self, dead_letter: Option<SourceDeadLetter>) -> Self {
        self.dead_letter = dead_letter;
        self
    }

    fn channel_index(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|channel| channel == name)
    }

    fn indices(&self, names: &[String]) -> Vec<usize> {
        names
            .iter()
            .filter_map(|name| self.channel_index(name))
            .collect()
    }

    fn route(&mut self, event: &Event) -> Route {
        match &self.selector {
            ChannelSelector::Multiplexing {
                header,
                mappings,
                optional,
                default,
            } => {
                let value = event
                    .header(header)
                    .map(str::trim)
                    .filter(|value| !value.is_empty());
                let mapped = value.and_then(|value| {
                    mappings
                        .iter()
                        .find(|route| route.header_value == value)
                        .map(|route| route.channels.clone())
                });
                let required = self.indices(mapped.as_deref().unwrap_or(default));
                let optional = value
                    .and_then(|value| optional.iter().find(|route| route.header_value == value))
                    .map(|route| self.indices(&route.channels))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|index| !required.contains(index))
                    .collect();
                Route { required, optional }
            }
            ChannelSelector::LoadBalancing { policy } => {
                let count = self.channels.len();
                let chosen = match policy {
                    LoadBalancingPolicy::RoundRobin => {
                        let chosen = self.next_balanced_channel % count;
                        self.next_balanced_channel = chosen + 1;
                        chosen
                    }
                    LoadBalancingPolicy::Random => rand::rng().random_range(0..count),
                };
                Route {
                    required: vec![chosen],
                    optional: Vec::new(),
                }
            }
            ChannelSelector::Replicating { optional } => {
                let optional = self.indices(optional);
                let required = (0..self.channels.len())
                    .filter(|index| !optional.contains(index))
                    .collect();
                Route { required, optional }
            }
            // Refused when the agent is planned; every channel, should one get here.
            ChannelSelector::Custom { .. } => Route {
                required: (0..self.channels.len()).collect(),
                optional: Vec::new(),
            },
        }
    }

    /// Intercepts and routes `events` into a delivery to make with [`attempt`]. Takes the
    /// events, so a batch going to one channel is not copied.
    ///
    /// [`attempt`]: Self::attempt
    pub fn prepare(&mut self, events: Vec<Event>) -> PendingDelivery {
        let (events, refused) = if self.interceptors.is_empty() {
            (events, Vec::new())
        } else {
            let intercepted = intercept_all(&self.interceptors, events);
            let refused: Vec<RefusedEvent> = intercepted
                .failures
                .into_iter()
                .enumerate()
                .map(|(index, failure)| RefusedEvent {
                    position: intercepted.events.len() + index,
                    channel: failure.interceptor,
                    by_interceptor: true,
                    reason: failure.error.to_string(),
                    event: failure.event,
                })
                .collect();
            (intercepted.events, refused)
        };
        let event_count = events.len() + refused.len();
        let routes: Vec<Route> = events.iter().map(|event| self.route(event)).collect();
        let mut shares: Vec<Share> = Vec::new();
        let single_channel = routes.first().and_then(|first| {
            (first.optional.is_empty()
                && first.required.len() == 1
                && routes.iter().all(|route| route == first))
            .then(|| first.required[0])
        });
        if let Some(channel) = single_channel {
            shares.push(Share {
                channel,
                required: true,
                positions: (0..events.len()).collect(),
                events,
                done: 0,
            });
        } else {
            for required in [true, false] {
                for channel in 0..self.channels.len() {
                    let mut share = Share {
                        channel,
                        required,
                        events: Vec::new(),
                        positions: Vec::new(),
                        done: 0,
                    };
                    for (position, (event, route)) in events.iter().zip(&routes).enumerate() {
                        let listed = if required {
                            &route.required
                        } else {
                            &route.optional
                        };
                        if listed.contains(&channel) {
                            share.events.push(event.clone());
                            share.positions.push(position);
                        }
                    }
                    if !share.events.is_empty() {
                        shares.push(share);
                    }
                }
            }
        }
        PendingDelivery {
            shares,
            refused,
            dead_lettered: 0,
            event_count,
            counted: false,
        }
    }

    /// One put-and-commit on a pooled connection.
    async fn put(&self, channel: &str, events: &[Event]) -> Result<(), ClientError> {
        let mut pooled = self.pool.checkout().await?;
        let outcome = pooled.client().put_and_commit(channel, events).await;
        if let Err(error) = &outcome {
            pooled.forget_if_broken(error);
        }
        outcome
    }

    /// Commits the rest of one share: in transactions of at most the channel's learned
    /// limit, isolating refused events. `whole`: one transaction or a refusal.
    async fn deliver_share(
        &self,
        share: &mut Share,
        refused: &mut Vec<RefusedEvent>,
        whole: bool,
    ) -> Result<(), DeliveryError> {
        let channel = self.channels[share.channel].clone();
        while share.done < share.events.len() {
            let remaining = share.events.len() - share.done;
            let limit = self.pool.transaction_limit(&channel).unwrap_or(usize::MAX);
            if whole && remaining > limit {
                return Err(DeliveryError::TooManyEvents {
                    channel,
                    transaction_capacity: limit,
                    events: remaining,
                });
            }
            let size = remaining.min(limit);
            let chunk = &share.events[share.done..share.done + size];
            let error = match self.put(&channel, chunk).await {
                Ok(()) => {
                    share.done += size;
                    continue;
                }
                Err(error) => error,
            };
            match classify(&error, size) {
                PutFailure::OverTransactionLimit(limit) => {
                    self.pool.learn_transaction_limit(&channel, limit);
                }
                PutFailure::EventRefused if size > 1 && !whole => {
                    // Find the refused events: the rest of this chunk one at a time.
                    for _ in 0..size {
                        self.deliver_one(share, &channel, refused).await?;
                    }
                }
                PutFailure::EventRefused if !whole => {
                    self.set_aside(share, &channel, error.to_string(), refused);
                }
                _ => {
                    counters::increment(&self.counters.channel_write_failures);
                    return Err(DeliveryError::Channel {
                        channel,
                        source: Box::new(error),
                    });
                }
            }
        }
        Ok(())
    }

    /// Puts the next event of `share` alone; sets it aside if refused for what it is.
    async fn deliver_one(
        &self,
        share: &mut Share,
        channel: &str,
        refused: &mut Vec<RefusedEvent>,
    ) -> Result<(), DeliveryError> {
        let event = std::slice::from_ref(&share.events[share.done]);
        match self.put(channel, event).await {
            Ok(()) => {
                share.done += 1;
                Ok(())
            }
            Err(error) if classify(&error, 1) == PutFailure::EventRefused => {
                self.set_aside(share, channel, error.to_string(), refused);
                Ok(())
            }
            Err(error) => {
                counters::increment(&self.counters.channel_write_failures);
                Err(DeliveryError::Channel {
                    channel: channel.to_string(),
                    source: Box::new(error),
                })
            }
        }
    }

    fn set_aside(
        &self,
        share: &mut Share,
        channel: &str,
        reason: String,
        refused: &mut Vec<RefusedEvent>,
    ) {
        counters::increment(&self.counters.channel_write_failures);
        let event = share.events[share.done].clone();
        refused.push(RefusedEvent {
            position: share.positions[share.done],
            channel: channel.to_string(),
            by_interceptor: false,
            reason,
            event,
        });
        share.done += 1;
    }

    /// Puts refused events on the dead-letter channel, or reports them.
    async fn dispose_of_refused(
        &self,
        delivery: &mut PendingDelivery,
    ) -> Result<(), DeliveryError> {
        if delivery.dead_lettered == delivery.refused.len() {
            return Ok(());
        }
        let Some(dead_letter) = &self.dead_letter else {
            let first = &delivery.refused[0];
            error!(
                refused_events = delivery.refused.len(),
                channel = %first.channel,
                reason = %first.reason,
                "events refused by their channel and no deadLetter.channel is configured"
            );
            let refused = delivery
                .refused
                .iter()
                .map(|event| event.position)
                .collect();
            let error = DeliveryError::Refused {
                channel: first.channel.clone(),
                reason: first.reason.clone(),
                refused,
            };
            delivery.dead_lettered = delivery.refused.len();
            return Err(error);
        };
        while delivery.dead_lettered < delivery.refused.len() {
            let refusal = &delivery.refused[delivery.dead_lettered];
            let refused_by_header = if refusal.by_interceptor {
                DEAD_LETTER_INTERCEPTOR_HEADER
            } else {
                DEAD_LETTER_CHANNEL_HEADER
            };
            let event = refusal
                .event
                .clone()
                .with_header(DEAD_LETTER_SOURCE_HEADER, dead_letter.source.clone())
                .with_header(refused_by_header, refusal.channel.clone())
                .with_header(DEAD_LETTER_REASON_HEADER, refusal.reason.clone());
            if let Err(source) = self
                .put(&dead_letter.channel, std::slice::from_ref(&event))
                .await
            {
                counters::increment(&self.counters.channel_write_failures);
                return Err(DeliveryError::Channel {
                    channel: dead_letter.channel.clone(),
                    source: Box::new(source),
                });
            }
            warn!(
                refused_by = %refusal.channel,
                by_interceptor = refusal.by_interceptor,
                dead_letter_channel = %dead_letter.channel,
                reason = %refusal.reason,
                "a refused event was put on the dead-letter channel"
            );
            delivery.dead_lettered += 1;
        }
        Ok(())
    }

    async fn attempt_with(
        &mut self,
        delivery: &mut PendingDelivery,
        whole: bool,
    ) -> Result<(), DeliveryError> {
        let mut refused = std::mem::take(&mut delivery.refused);
        let mut outcome = Ok(());
        for share in delivery.shares.iter_mut().filter(|share| share.required) {
            outcome = self.deliver_share(share, &mut refused, whole).await;
            if outcome.is_err() {
                break;
            }
        }
        if outcome.is_ok() {
            for share in delivery.shares.iter_mut().filter(|share| !share.required) {
                if share.done < share.events.len() {
                    let channel = &self.channels[share.channel];
                    // Flume's rule for optional channels: failures, refusals included,
                    // are only logged.
                    let mut refused_here = Vec::new();
                    if let Err(error) = self.deliver_share(share, &mut refused_here, whole).await {
                        warn!(%channel, %error, "optional channel did not take its events");
                    }
                    if !refused_here.is_empty() {
                        warn!(%channel, refused_events = refused_here.len(), reason = %refused_here[0].reason, "optional channel refused events");
                    }
                    share.done = share.events.len();
                }
            }
        }
        delivery.refused = refused;
        outcome?;
        if !delivery.counted {
            delivery.counted = true;
            let refused = delivery.refused.len();
            counters::add(
                &self.counters.events_accepted,
                delivery.event_count.saturating_sub(refused),
            );
        }
        self.dispose_of_refused(delivery).await
    }

    /// One attempt at the rest of `delivery`: every required channel's share committed,
    /// or the first failure (what was committed stays committed and is not sent again
    /// by the next attempt). Counts the accepted events in the source's counters.
    pub async fn attempt(&mut self, delivery: &mut PendingDelivery) -> Result<(), DeliveryError> {
        self.attempt_with(delivery, false).await
    }

    /// Puts `events` on their channels, splitting them to fit each channel's
    /// transactions: every required channel's share committed, or the first failure.
    pub async fn deliver(&mut self, events: &[Event]) -> Result<(), DeliveryError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut delivery = self.prepare(events.to_vec());
        self.attempt(&mut delivery).await
    }

    /// Puts `events` on each required channel in one transaction, all or none: a share
    /// larger than the channel's transaction limit is refused with
    /// [`DeliveryError::TooManyEvents`] (nothing committed), and an event refused for
    /// what it is fails the whole share.
    pub async fn deliver_whole(&mut self, events: Vec<Event>) -> Result<(), DeliveryError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut delivery = self.prepare(events);
        self.attempt_with(&mut delivery, true).await
    }

    /// Delivers `events`, waiting and retrying (250 ms doubling to 4 s) the part not yet
    /// committed while the failure is transient, so a full channel slows the source down
    /// instead of losing events. Events refused for what they are go to the dead-letter
    /// channel, or come back as the error.
    pub async fn deliver_patiently(
        &mut self,
        events: &[Event],
        stop: &mut StopSignal,
    ) -> Result<Result<(), DeliveryError>, Stopped> {
        let mut delivery = self.prepare(events.to_vec());
        self.attempt_patiently(&mut delivery, stop).await
    }

    /// [`deliver_patiently`](Self::deliver_patiently) for a prepared delivery.
    pub async fn attempt_patiently(
        &mut self,
        delivery: &mut PendingDelivery,
        stop: &mut StopSignal,
    ) -> Result<Result<(), DeliveryError>, Stopped> {
        let mut delay = RetryDelay::up_to(MAX_RETRY_DELAY);
        loop {
            match self.attempt(delivery).await {
                Ok(()) => return Ok(Ok(())),
                Err(error) if error.is_transient() => {
                    let wait = delay.next_delay();
                    warn!(%error, retry_in_ms = wait.as_millis() as u64, "delivery refused; retrying the events not yet committed");
                    if !stop.sleep(wait).await {
                        return Err(Stopped);
                    }
                }
                Err(error) => return Ok(Err(error)),
            }
        }
    }

    /// Kept for the sources' shape: connections belong to the shared pool, which closes
    /// them when idle.
    pub fn close(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_client::{ClientOptions, ErrorResponse};
    use millrace_config::HeaderRoute;

    fn processor(channels: &[&str], selector: ChannelSelector) -> ChannelProcessor {
        ChannelProcessor::new(
            channels.iter().map(|name| name.to_string()).collect(),
            selector,
            ServerPool::new(ClientOptions::new("127.0.0.1:1"), 1),
            Arc::default(),
        )
    }

    fn server_error(error: ErrorResponse) -> ClientError {
        ClientError::Server { error }
    }

    #[test]
    fn a_transaction_too_large_refusal_names_the_limit_to_split_to() {
        let refusal = server_error(ErrorResponse::transaction_too_large("c1", 10, 50));
        assert_eq!(classify(&refusal, 50), PutFailure::OverTransactionLimit(10));
        let event_too_large = server_error(ErrorResponse::new(
            ErrorCode::TransactionTooLarge,
            "event of 9 bytes is too large",
        ));
        assert_eq!(classify(&event_too_large, 3), PutFailure::EventRefused);
        let full = server_error(ErrorResponse::channel_full("c1", 10, 10));
        assert_eq!(classify(&full, 3), PutFailure::Other);
    }

    #[test]
    fn a_batch_for_one_channel_is_moved_into_its_share_and_others_are_split_by_route() {
        let mut single = processor(
            &["c1"],
            ChannelSelector::Replicating {
                optional: Vec::new(),
            },
        );
        let delivery = single.prepare(vec![Event::new("a"), Event::new("b")]);
        assert_eq!(delivery.shares.len(), 1);
        assert_eq!(delivery.shares[0].positions, [0, 1]);
        let mut replicating = processor(
            &["c1", "c2", "c3"],
            ChannelSelector::Replicating {
                optional: vec!["c2".into()],
            },
        );
        let delivery = replicating.prepare(vec![Event::new("a"), Event::new("b")]);
        let shares: Vec<(usize, bool, usize)> = delivery
            .shares
            .iter()
            .map(|share| (share.channel, share.required, share.events.len()))
            .collect();
        assert_eq!(shares, [(0, true, 2), (2, true, 2), (1, false, 2)]);
    }

    #[test]
    fn replicating_requires_every_channel_but_the_optional_ones() {
        let mut processor = processor(
            &["c1", "c2", "c3"],
            ChannelSelector::Replicating {
                optional: vec!["c2".into()],
            },
        );
        let route = processor.route(&Event::new("x"));
        assert_eq!(route.required, [0, 2]);
        assert_eq!(route.optional, [1]);
    }

    #[test]
    fn multiplexing_follows_the_header_and_falls_back_to_the_default() {
        let mut processor = processor(
            &["c1", "c2", "c3"],
            ChannelSelector::Multiplexing {
                header: "state".into(),
                mappings: vec![HeaderRoute {
                    header_value: "CA".into(),
                    channels: vec!["c1".into()],
                }],
                optional: vec![HeaderRoute {
                    header_value: "CA".into(),
                    channels: vec!["c1".into(), "c3".into()],
                }],
                default: vec!["c2".into()],
            },
        );
        let mapped = processor.route(&Event::new("x").with_header("state", "CA"));
        assert_eq!(mapped.required, [0]);
        assert_eq!(mapped.optional, [2]);
        let blank = processor.route(&Event::new("x").with_header("state", " "));
        assert_eq!(blank.required, [1]);
        let unmapped = processor.route(&Event::new("x").with_header("state", "NY"));
        assert_eq!(unmapped.required, [1]);
        assert!(unmapped.optional.is_empty());
    }

    #[test]
    fn load_balancing_round_robin_sends_each_event_to_the_next_channel() {
        let mut processor = processor(
            &["c1", "c2"],
            ChannelSelector::LoadBalancing {
                policy: LoadBalancingPolicy::RoundRobin,
            },
        );
        let chosen: Vec<Vec<usize>> = (0..4)
            .map(|_| processor.route(&Event::new("x")).required)
            .collect();
        assert_eq!(chosen, [vec![0], vec![1], vec![0], vec![1]]);
    }
}
