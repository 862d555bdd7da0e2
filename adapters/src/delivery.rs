//! The source side of a flow: a channel selector picks each event's channels, and the
//! [`ChannelProcessor`] puts each channel's share in its own transaction, as Flume's
//! `ChannelProcessor` does.
//!
//! Required channels are written in the order the source lists them; the first failure
//! stops the batch and is returned (channels before it stay committed, so a retry by the
//! source duplicates there — Flume's at-least-once). Failures on optional channels are
//! only logged.

use std::sync::Arc;

use millrace_client::{ClientError, ErrorCode, Event};
use millrace_server::config::{ChannelSelector, LoadBalancingPolicy};
use rand::Rng;
use thiserror::Error;
use tracing::warn;

use crate::connection::{Connection, RetryDelay, StopSignal, MAX_RETRY_DELAY};
use crate::counters::{self, SourceCounters};
use crate::interceptors::Interceptor;

/// A required channel did not take its share of a batch.
#[derive(Debug, Error)]
#[error("Unable to put batch on required channel: {channel}: {source}")]
pub struct DeliveryError {
    /// The channel that refused or could not be reached.
    pub channel: String,
    /// Why.
    #[source]
    pub source: Box<ClientError>,
}

impl DeliveryError {
    /// Whether trying the same batch again later can succeed (channel full, server
    /// restarting, connection lost) rather than being refused again for its content.
    pub fn is_transient(&self) -> bool {
        is_transient(&self.source)
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

/// Puts a source's events on its channels.
pub struct ChannelProcessor {
    channels: Vec<String>,
    selector: ChannelSelector,
    connection: Connection,
    counters: Arc<SourceCounters>,
    next_balanced_channel: usize,
    interceptors: Vec<Interceptor>,
}

impl ChannelProcessor {
    /// For a source writing to `channels` (in its `channels` order) through `selector`.
    pub fn new(
        channels: Vec<String>,
        selector: ChannelSelector,
        connection: Connection,
        counters: Arc<SourceCounters>,
    ) -> Self {
        ChannelProcessor {
            channels,
            selector,
            connection,
            counters,
            next_balanced_channel: 0,
            interceptors: Vec::new(),
        }
    }

    /// Adds headers with these interceptors, in order, before routing each event.
    pub fn with_interceptors(mut self, interceptors: Vec<Interceptor>) -> Self {
        self.interceptors = interceptors;
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

    /// Puts `events` on their channels: every required channel's share committed, or the
    /// first failure. Counts the batch in the source's counters.
    pub async fn deliver(&mut self, events: &[Event]) -> Result<(), DeliveryError> {
        if events.is_empty() {
            return Ok(());
        }
        let intercepted: Vec<Event>;
        let events = if self.interceptors.is_empty() {
            events
        } else {
            intercepted = events
                .iter()
                .map(|event| {
                    let mut event = event.clone();
                    for interceptor in &self.interceptors {
                        interceptor.apply(&mut event);
                    }
                    event
                })
                .collect();
            &intercepted
        };
        let mut required: Vec<Vec<Event>> = vec![Vec::new(); self.channels.len()];
        let mut optional: Vec<Vec<Event>> = vec![Vec::new(); self.channels.len()];
        for event in events {
            let route = self.route(event);
            for index in route.required {
                required[index].push(event.clone());
            }
            for index in route.optional {
                optional[index].push(event.clone());
            }
        }
        for (index, share) in required.iter().enumerate() {
            if share.is_empty() {
                continue;
            }
            let channel = self.channels[index].clone();
            if let Err(source) = self.connection.put_and_commit(&channel, share).await {
                counters::increment(&self.counters.channel_write_failures);
                return Err(DeliveryError {
                    channel,
                    source: Box::new(source),
                });
            }
        }
        for (index, share) in optional.iter().enumerate() {
            if share.is_empty() {
                continue;
            }
            let channel = &self.channels[index];
            if let Err(error) = self.connection.put_and_commit(channel, share).await {
                warn!(%channel, %error, "optional channel did not take its events");
            }
        }
        counters::add(&self.counters.events_accepted, events.len());
        Ok(())
    }

    /// Delivers `events`, waiting and retrying (250 ms doubling to 4 s) while the failure
    /// is transient, so a full channel slows the source down instead of losing events.
    /// Events refused for their content come back as the error.
    pub async fn deliver_patiently(
        &mut self,
        events: &[Event],
        stop: &mut StopSignal,
    ) -> Result<Result<(), DeliveryError>, Stopped> {
        let mut delay = RetryDelay::up_to(MAX_RETRY_DELAY);
        loop {
            match self.deliver(events).await {
                Ok(()) => return Ok(Ok(())),
                Err(error) if error.is_transient() => {
                    let wait = delay.next_delay();
                    warn!(%error, retry_in_ms = wait.as_millis() as u64, "delivery refused; retrying");
                    if !stop.sleep(wait).await {
                        return Err(Stopped);
                    }
                }
                Err(error) => return Ok(Err(error)),
            }
        }
    }

    /// Closes the connection to channeld.
    pub fn close(&mut self) {
        self.connection.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_client::ClientOptions;
    use millrace_server::config::HeaderRoute;

    fn processor(channels: &[&str], selector: ChannelSelector) -> ChannelProcessor {
        ChannelProcessor::new(
            channels.iter().map(|name| name.to_string()).collect(),
            selector,
            Connection::new(ClientOptions::new("127.0.0.1:1")),
            Arc::default(),
        )
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
