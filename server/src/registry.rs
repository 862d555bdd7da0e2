//! The channels channeld serves, by name.
//!
//! # Constraints
//!
//! - **Any channel type behind one trait.** Sessions, metrics and health see only
//!   `Arc<dyn Channel>`; the one place that knows concrete types is [`channel_opener`],
//!   where a new type (memory, spillable) is one match arm.
//! - **Refuse what cannot run before starting anything.** A configured type that this
//!   build does not implement is an error at startup ([`RegistryError`]), not a channel
//!   that fails later.
//! - **A channel that fails to open does not take the others down.** As in Flume, it stays
//!   in the registry as unhealthy with the reason: `/health` reports it, `Begin` on it
//!   fails with `CHANNEL_UNHEALTHY`, and the other channels serve. The one exception is a
//!   locked directory: another process owns the data, so channeld stops.
//! - **Opening is slow** (recovery replays the log), so it runs on a blocking thread while
//!   the HTTP listener already answers: a channel is [`ChannelState::Opening`] until then.

use std::collections::BTreeMap;
use std::sync::Arc;

use millrace_engine::config::ChannelConfig;
use millrace_engine::{
    Channel, ChannelHealth, FileChannel, MemoryChannel, OpenError, SpillableChannel,
};
use parking_lot::RwLock;
use thiserror::Error;
use tracing::{error, info};

/// What opens one configured channel. Runs on a blocking thread.
pub type ChannelOpener = Box<dyn FnOnce() -> Result<Arc<dyn Channel>, OpenError> + Send>;

/// The type a channel was configured with, as Flume's `type` alias.
pub fn type_alias(config: &ChannelConfig) -> &'static str {
    match config {
        ChannelConfig::File(_) => "file",
        ChannelConfig::Memory(_) => "memory",
        ChannelConfig::Spillable(_) => "spillablememory",
    }
}

/// How to open a channel of the configured type; the one place that names concrete
/// channel types. Adding a type is one arm here.
pub fn channel_opener(name: &str, config: &ChannelConfig) -> ChannelOpener {
    let name = name.to_string();
    match config {
        ChannelConfig::File(file_config) => {
            let file_config = file_config.clone();
            Box::new(move || {
                let channel: Arc<dyn Channel> = Arc::new(FileChannel::open(&name, file_config)?);
                Ok(channel)
            })
        }
        ChannelConfig::Memory(memory_config) => {
            let memory_config = memory_config.clone();
            Box::new(move || {
                let channel: Arc<dyn Channel> =
                    Arc::new(MemoryChannel::open(&name, memory_config)?);
                Ok(channel)
            })
        }
        ChannelConfig::Spillable(spillable_config) => {
            let spillable_config = spillable_config.clone();
            Box::new(move || {
                let channel: Arc<dyn Channel> =
                    Arc::new(SpillableChannel::open(&name, spillable_config)?);
                Ok(channel)
            })
        }
    }
}

/// Why the registry cannot be built.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// A channel's directory is locked by another process: two servers must not share
    /// data, so channeld does not start.
    #[error("{0}")]
    Locked(OpenError),
}

/// Where a channel is in its life.
#[derive(Clone)]
pub enum ChannelState {
    /// Recovering; not serving yet.
    Opening,
    /// Open (it may still have failed since: ask its [`Channel::health`]).
    Ready(Arc<dyn Channel>),
    /// Could not be opened; the reason names file and offset for corruption.
    FailedToOpen {
        /// The open error, as text.
        reason: String,
    },
}

/// One configured channel.
pub struct ChannelEntry {
    name: String,
    type_name: &'static str,
    /// True for channels with files on disk: Flume's file channel reports `Open`,
    /// `Closed`, `Unhealthy` and the error counters.
    durable: bool,
    state: RwLock<ChannelState>,
}

impl ChannelEntry {
    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Flume's alias of the channel's type (`file`, `memory`, `spillablememory`).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// True when the channel keeps files (file and spillable channels).
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// The current state.
    pub fn state(&self) -> ChannelState {
        self.state.read().clone()
    }

    /// The channel, when it is open.
    pub fn channel(&self) -> Option<Arc<dyn Channel>> {
        match &*self.state.read() {
            ChannelState::Ready(channel) => Some(Arc::clone(channel)),
            ChannelState::Opening | ChannelState::FailedToOpen { .. } => None,
        }
    }

    /// Why the channel cannot serve, or `None` when it can. The reason is what
    /// `CHANNEL_UNHEALTHY` and `/health` report.
    pub fn unavailable_reason(&self) -> Option<String> {
        match self.state() {
            ChannelState::Opening => Some("the channel is still recovering".to_string()),
            ChannelState::FailedToOpen { reason } => Some(format!("failed to open: {reason}")),
            ChannelState::Ready(channel) => match channel.health() {
                ChannelHealth::Open | ChannelHealth::ReadOnly { .. } => None,
                ChannelHealth::Failed { reason } => Some(reason),
                ChannelHealth::Closed => Some("the channel is closed".to_string()),
            },
        }
    }
}

/// The channels of the running agent, in configuration order.
pub struct ChannelRegistry {
    entries: Vec<Arc<ChannelEntry>>,
    component_counters: parking_lot::Mutex<BTreeMap<String, Vec<(String, u64)>>>,
}

/// Most adapter components whose counters are kept (a bound against a client that
/// reports endless made-up names).
pub const MAX_REPORTED_COMPONENTS: usize = 1_024;

impl ChannelRegistry {
    /// Registers the configured channels in [`ChannelState::Opening`], with their openers.
    /// Fails, naming every such channel, when a type is not available.
    pub fn plan(channels: &[(String, ChannelConfig)]) -> (ChannelRegistry, Vec<ChannelOpener>) {
        let mut entries = Vec::with_capacity(channels.len());
        let mut openers = Vec::with_capacity(channels.len());
        for (name, config) in channels {
            let opener = channel_opener(name, config);
            entries.push(Arc::new(ChannelEntry {
                name: name.clone(),
                type_name: type_alias(config),
                durable: !matches!(config, ChannelConfig::Memory(_)),
                state: RwLock::new(ChannelState::Opening),
            }));
            openers.push(opener);
        }
        let registry = ChannelRegistry {
            entries,
            component_counters: parking_lot::Mutex::new(BTreeMap::new()),
        };
        (registry, openers)
    }

    /// Records the latest counters an adapter reported for `<component_type>.<component>`.
    /// Returns `false` when the table is full and the component is new.
    pub fn record_component_counters(
        &self,
        component_type: &str,
        component: &str,
        counters: Vec<(String, u64)>,
    ) -> bool {
        let key = format!("{component_type}.{component}");
        let mut table = self.component_counters.lock();
        if table.len() >= MAX_REPORTED_COMPONENTS && !table.contains_key(&key) {
            return false;
        }
        table.insert(key, counters);
        true
    }

    /// Every reported component (`SOURCE.r1`, `SINK.k1`) with its latest counters.
    pub fn component_counters(&self) -> Vec<(String, Vec<(String, u64)>)> {
        self.component_counters
            .lock()
            .iter()
            .map(|(key, counters)| (key.clone(), counters.clone()))
            .collect()
    }

    /// Opens every channel, one after another on this (blocking) thread, recording each
    /// outcome. Stops with an error only for a locked directory.
    pub fn open_all(&self, openers: Vec<ChannelOpener>) -> Result<(), RegistryError> {
        for (entry, opener) in self.entries.iter().zip(openers) {
            match opener() {
                Ok(channel) => {
                    info!(channel = %entry.name, "channel ready");
                    *entry.state.write() = ChannelState::Ready(channel);
                }
                Err(locked @ OpenError::Locked { .. }) => {
                    return Err(RegistryError::Locked(locked))
                }
                Err(open_error) => {
                    error!(channel = %entry.name, error = %open_error, "channel failed to open; serving the others");
                    *entry.state.write() = ChannelState::FailedToOpen {
                        reason: open_error.to_string(),
                    };
                }
            }
        }
        Ok(())
    }

    /// The channel named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ChannelEntry>> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Every channel, in configuration order.
    pub fn entries(&self) -> &[Arc<ChannelEntry>] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use millrace_engine::config::{FileChannelConfig, MemoryChannelConfig};

    use super::*;

    #[test]
    fn memory_and_spillable_channels_open_beside_a_file_channel() {
        let base = tempfile::tempdir().unwrap();
        let mut spillable = millrace_engine::config::SpillableChannelConfig::new(
            FileChannelConfig::with_default_dirs(base.path(), "s1"),
        );
        spillable.byte_capacity_bytes = Some(1 << 20);
        let channels = vec![
            (
                "c1".to_string(),
                ChannelConfig::File(FileChannelConfig::with_default_dirs(base.path(), "c1")),
            ),
            (
                "m1".to_string(),
                ChannelConfig::Memory(MemoryChannelConfig {
                    byte_capacity_bytes: Some(1 << 20),
                    ..MemoryChannelConfig::default()
                }),
            ),
            ("s1".to_string(), ChannelConfig::Spillable(spillable)),
        ];
        let (registry, openers) = ChannelRegistry::plan(&channels);
        registry.open_all(openers).unwrap();
        for name in ["c1", "m1", "s1"] {
            match registry.get(name).unwrap().state() {
                ChannelState::Ready(channel) => assert_eq!(channel.name(), name),
                _ => panic!("{name} did not open"),
            }
        }
    }

    #[test]
    fn planned_channels_are_opening_until_opened() {
        let base = tempfile::tempdir().unwrap();
        let channels = vec![(
            "c1".to_string(),
            ChannelConfig::File(FileChannelConfig::with_default_dirs(base.path(), "c1")),
        )];
        let (registry, openers) = ChannelRegistry::plan(&channels);
        let entry = registry.get("c1").unwrap();
        assert!(matches!(entry.state(), ChannelState::Opening));
        assert!(entry.unavailable_reason().is_some());
        registry.open_all(openers).unwrap();
        assert!(entry.channel().is_some());
        assert_eq!(entry.unavailable_reason(), None);
        assert_eq!(entry.type_name(), "file");
    }
}
