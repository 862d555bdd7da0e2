//! File descriptors: channeld raises its soft `RLIMIT_NOFILE` to the hard limit at start,
//! then checks that what its listeners may hold and what its channels need fit in it.
//!
//! # Constraints
//!
//! - **Client floods never take the channels' descriptors.** A commit that cannot create
//!   its next segment, or a checkpoint that cannot create its temporary file, fails the
//!   channel's work for everyone. So sockets are bounded by construction — the protocol
//!   listener holds at most `maxConnections` sessions plus [`REFUSALS_IN_FLIGHT`]
//!   connections being refused, the HTTP listener at most `httpMaxConnections` plus the
//!   one it is accepting — and the accept loops stop accepting at those bounds (new
//!   connections wait in the kernel's backlog) instead of running into `EMFILE`.
//! - **Refuse to start rather than fail later.** If those bounds plus the channels'
//!   reserve ([`channel_descriptors`]) and the server's own ([`SERVER_DESCRIPTORS`]) do
//!   not fit the limit, channeld exits with 78 (`EX_CONFIG`) and every number, rather
//!   than start and fail its first commit under load.
//!
//! ```text
//!   RLIMIT_NOFILE (soft, raised to hard)
//!   ├── protocol sockets   maxConnections + REFUSALS_IN_FLIGHT
//!   ├── HTTP sockets       httpMaxConnections + 1
//!   ├── channels           per file channel: locks, segments, rings, checkpoint files
//!   ├── adapters           per source/sink process channeld supervises
//!   └── channeld itself    stdio, epoll, signals, listeners, /proc reads
//! ```

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use thiserror::Error;

use crate::config::{AgentConfig, ServerSettings};
use millrace_engine::config::{ChannelConfig, FileChannelConfig};

/// Connections over `maxConnections` that may be in the middle of their refusal (the
/// `TOO_MANY_CONNECTIONS` answer and the short linger that lets the client read it) at
/// once. Further connections wait in the kernel's backlog until one is done.
pub const REFUSALS_IN_FLIGHT: u64 = 64;

/// The HTTP listener may hold one connection over its cap: the one it accepted while
/// it closes the oldest idle connection to make room.
pub const HTTP_CONNECTIONS_OVER_THE_CAP: u64 = 1;

/// Descriptors channeld needs for itself whatever its configuration: standard streams,
/// the runtime's epoll and wake-up descriptors, the signal pipe, both listening sockets,
/// the ready file, `/proc` and configuration reads, the I/O backend probe, and room for
/// the runtime's and libraries' own. Generous on purpose: running short costs a failed
/// commit, running long costs nothing.
pub const SERVER_DESCRIPTORS: u64 = 64;

/// Segment files a data directory may hold open at once: the active segment, the one
/// preallocated ahead, and the older ones whose events are still queued, in flight or
/// retained. A channel with a larger backlog of segments than this needs a higher limit
/// (the hard limit of most systems is far above what this check asks for).
pub const SEGMENT_DESCRIPTORS_PER_DATA_DIR: u64 = 64;

/// Per data directory besides its segments: its lock file, the writer's io_uring
/// instance, and the directory itself opened to sync it after a segment is created.
const DESCRIPTORS_PER_DATA_DIR: u64 = 3;

/// Per checkpoint directory: its lock file, the temporary checkpoint file being
/// written, the directory opened to sync the rename, and the checkpoint being read.
const DESCRIPTORS_PER_CHECKPOINT_DIR: u64 = 4;

/// Per adapter process channeld supervises: its pidfd and the pipe used while it is
/// being started.
const DESCRIPTORS_PER_ADAPTER: u64 = 3;

/// Permits of a semaphore bounding `count` sockets (a count larger than a semaphore can
/// hold is no bound at all).
pub fn semaphore_permits(count: u64) -> usize {
    usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(tokio::sync::Semaphore::MAX_PERMITS)
}

/// What the descriptor limit has to hold, with the limit itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// The soft `RLIMIT_NOFILE` after raising it (`u64::MAX` when unlimited).
    pub limit: u64,
    /// The soft limit channeld was started with.
    pub started_with: u64,
    /// `maxConnections` + [`REFUSALS_IN_FLIGHT`].
    pub protocol_sockets: u64,
    /// `httpMaxConnections` + [`HTTP_CONNECTIONS_OVER_THE_CAP`].
    pub http_sockets: u64,
    /// [`channel_descriptors`] of every configured channel.
    pub channels: u64,
    /// 3 per supervised source or sink process (`DESCRIPTORS_PER_ADAPTER`).
    pub adapters: u64,
    /// [`SERVER_DESCRIPTORS`].
    pub server: u64,
}

impl DescriptorBudget {
    /// Everything added up.
    pub fn needed(&self) -> u64 {
        self.protocol_sockets + self.http_sockets + self.channels + self.adapters + self.server
    }

    /// The largest `maxConnections` that would fit, or 0 when even none would.
    pub fn largest_max_connections(&self) -> u64 {
        let others = self.http_sockets + self.channels + self.adapters + self.server;
        self.limit
            .saturating_sub(others)
            .saturating_sub(REFUSALS_IN_FLIGHT)
    }
}

/// Why channeld cannot serve within its descriptor limit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DescriptorError {
    /// The listeners' bounds and the channels' reserve exceed the limit.
    #[error(
        "the open-file limit (RLIMIT_NOFILE) is {limit} (started with {started_with}, raised \
         to the hard limit), but channeld may need {needed}: {protocol_sockets} protocol \
         sockets (maxConnections {max_connections} + {refusals} being refused), \
         {http_sockets} HTTP sockets (httpMaxConnections {http_max_connections} + 1), \
         {channels} for the channels' files, {adapters} for adapter processes and {server} \
         for channeld itself. Lower server.maxConnections to at most {largest_max_connections} \
         or raise the limit (ulimit -n, systemd LimitNOFILE=)",
        limit = .budget.limit,
        started_with = .budget.started_with,
        needed = .budget.needed(),
        protocol_sockets = .budget.protocol_sockets,
        refusals = REFUSALS_IN_FLIGHT,
        http_sockets = .budget.http_sockets,
        channels = .budget.channels,
        adapters = .budget.adapters,
        server = .budget.server,
        largest_max_connections = .budget.largest_max_connections(),
    )]
    DoesNotFit {
        /// The budget that does not fit.
        budget: DescriptorBudget,
        /// `server.maxConnections`.
        max_connections: u64,
        /// `server.httpMaxConnections`.
        http_max_connections: u64,
    },
}

/// Descriptors a file channel (or a spillable channel's overflow) may hold: per data
/// directory its lock, ring, directory and up to [`SEGMENT_DESCRIPTORS_PER_DATA_DIR`]
/// segments; per checkpoint directory (two with `useDualCheckpoints`) its lock and the
/// files of a checkpoint being written and read.
pub fn file_channel_descriptors(config: &FileChannelConfig) -> u64 {
    let data_dirs = config.data_dirs.len() as u64;
    let checkpoint_dirs = 1 + u64::from(config.use_dual_checkpoints);
    data_dirs * (SEGMENT_DESCRIPTORS_PER_DATA_DIR + DESCRIPTORS_PER_DATA_DIR)
        + checkpoint_dirs * DESCRIPTORS_PER_CHECKPOINT_DIR
}

/// Descriptors a Kafka channel may hold: librdkafka's producer and consumer each keep a
/// socket per broker plus a few wake-up pipes per broker thread; 64 covers two clients
/// on a cluster of up to a dozen brokers.
const KAFKA_CHANNEL_DESCRIPTORS: u64 = 64;

/// Descriptors a configured channel may hold (none for a memory channel).
pub fn channel_descriptors(config: &ChannelConfig) -> u64 {
    match config {
        ChannelConfig::File(file) => file_channel_descriptors(file),
        ChannelConfig::Memory(_) => 0,
        ChannelConfig::Spillable(spillable) => file_channel_descriptors(&spillable.overflow),
        ChannelConfig::Kafka(_) => KAFKA_CHANNEL_DESCRIPTORS,
    }
}

fn limit_value(limit: Option<u64>) -> u64 {
    limit.unwrap_or(u64::MAX)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns (soft before, soft now).
/// When raising is refused the soft limit stays as it was, and the budget check below
/// judges what it is.
pub fn raise_soft_limit_to_hard() -> (u64, u64) {
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, "cannot raise the soft open-file limit to the hard limit");
        }
    }
    let after = getrlimit(Resource::Nofile);
    (limit_value(before.current), limit_value(after.current))
}

/// What `config` needs, against a soft limit of `limit` (raised from `started_with`).
pub fn budget(config: &AgentConfig, started_with: u64, limit: u64) -> DescriptorBudget {
    let settings: &ServerSettings = &config.server;
    DescriptorBudget {
        limit,
        started_with,
        protocol_sockets: settings.max_connections.saturating_add(REFUSALS_IN_FLIGHT),
        http_sockets: settings
            .http_max_connections
            .saturating_add(HTTP_CONNECTIONS_OVER_THE_CAP),
        channels: config
            .channels
            .iter()
            .map(|(_, channel)| channel_descriptors(channel))
            .sum(),
        adapters: config.adapter_components().len() as u64 * DESCRIPTORS_PER_ADAPTER,
        server: SERVER_DESCRIPTORS,
    }
}

/// Raises the soft limit and checks that `config` fits it.
pub fn check_descriptor_limit(config: &AgentConfig) -> Result<DescriptorBudget, DescriptorError> {
    let (started_with, limit) = raise_soft_limit_to_hard();
    let budget = budget(config, started_with, limit);
    if budget.needed() > budget.limit {
        return Err(DescriptorError::DoesNotFit {
            budget,
            max_connections: config.server.max_connections,
            http_max_connections: config.server.http_max_connections,
        });
    }
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;

    #[test]
    fn the_embedded_default_needs_its_connections_and_one_file_channel() {
        let config = AgentConfig::embedded_default();
        let budget = budget(&config, 1_024, 1_024);
        assert_eq!(budget.protocol_sockets, 1_024 + REFUSALS_IN_FLIGHT);
        assert_eq!(budget.http_sockets, 64 + 1);
        assert_eq!(
            budget.channels,
            SEGMENT_DESCRIPTORS_PER_DATA_DIR
                + DESCRIPTORS_PER_DATA_DIR
                + DESCRIPTORS_PER_CHECKPOINT_DIR
        );
        // The defaults do not fit the usual soft limit of 1 024: channeld raises it.
        assert!(budget.needed() > 1_024);
        assert_eq!(
            budget.largest_max_connections(),
            1_024 - budget.http_sockets - budget.channels - SERVER_DESCRIPTORS - REFUSALS_IN_FLIGHT
        );
    }

    #[test]
    fn the_refusal_names_every_number_and_the_largest_max_connections_that_fits() {
        let config = AgentConfig::embedded_default();
        let error = DescriptorError::DoesNotFit {
            budget: budget(&config, 1_024, 1_024),
            max_connections: 1_024,
            http_max_connections: 64,
        };
        let message = error.to_string();
        for number in [
            "is 1024",
            "maxConnections 1024",
            "httpMaxConnections 64",
            "at most 760",
        ] {
            assert!(
                message.contains(number),
                "{number:?} missing from {message}"
            );
        }
    }
}
