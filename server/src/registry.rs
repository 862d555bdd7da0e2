//! The channels channeld serves, by name.
//!
//! # Constraints
//!
//! - **Any channel type behind one trait.** Sessions, metrics and health see only
//!   `Arc<dyn Channel>`; channels are opened by `millrace_ops::open_channel`, the one
//!   place that names concrete types, where a new type is one match arm. The operations
//!   only a file channel's log supports (online inspect and replay) get the file channel
//!   that opener opened ([`ChannelEntry::file_channel`]), never a downcast.
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
use std::sync::{Arc, OnceLock};

use millrace_engine::config::ChannelConfig;
use millrace_engine::storage::Storage;
use millrace_engine::{Channel, ChannelHealth, FileChannel, OpenError};
use millrace_ops::{open_channel, OpenedChannel};
use parking_lot::RwLock;
use thiserror::Error;
use tracing::{error, info};

use crate::commit_timing::{CommitTimes, TimedChannel};
use crate::config::ChannelKind;

/// What opens one configured channel. Runs on a blocking thread.
pub type ChannelOpener = Box<dyn FnOnce() -> Result<OpenedChannel, OpenError> + Send>;

/// How to open a configured channel on `storage`, on a blocking thread.
fn channel_opener(name: &str, config: &ChannelConfig, storage: Arc<dyn Storage>) -> ChannelOpener {
    let (name, config) = (name.to_string(), config.clone());
    Box::new(move || open_channel(&name, config, storage))
}

/// The free-space guard a configured channel applies to its data dirs.
fn space_guard_bytes(config: &ChannelConfig) -> Option<u64> {
    match config {
        ChannelConfig::File(file) => Some(file.effective_minimum_required_space_bytes()),
        ChannelConfig::Spillable(spillable) => {
            Some(spillable.overflow.effective_minimum_required_space_bytes())
        }
        ChannelConfig::Memory(_) | ChannelConfig::Kafka(_) => None,
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
    /// The channel as a file channel, once opened, when it is one.
    file_channel: OnceLock<Arc<FileChannel>>,
    /// How long its commits take (the channel is wrapped in a
    /// [`TimedChannel`](crate::commit_timing::TimedChannel) when it opens).
    commit_times: Arc<CommitTimes>,
    /// `minimumRequiredSpace` as the engine applies it, for channels with data dirs.
    minimum_required_space_bytes: Option<u64>,
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

    /// Its commit latency figures.
    pub fn commit_times(&self) -> &CommitTimes {
        &self.commit_times
    }

    /// The free-space guard of its data dirs (`None` for a memory channel).
    pub fn minimum_required_space_bytes(&self) -> Option<u64> {
        self.minimum_required_space_bytes
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

    /// The channel as the file channel it is, once open: for the operations only a
    /// file channel's log supports (online inspect and replay). `None` for memory and
    /// spillable channels, and until the channel is open.
    pub fn file_channel(&self) -> Option<Arc<FileChannel>> {
        self.file_channel.get().cloned()
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
    component_counters: parking_lot::Mutex<BTreeMap<String, ReportedComponent>>,
}

/// Most adapter components whose counters are kept (a bound against a client that
/// reports endless made-up names).
pub const MAX_REPORTED_COMPONENTS: usize = 1_024;

/// The component types an adapter may report, Flume's `MonitoredCounterGroup.Type`
/// names less `CHANNEL` (the server's own objects: channels are reported by the server,
/// never by a client) and `OTHER`.
pub const ADAPTER_COMPONENT_TYPES: [&str; 6] = [
    "SOURCE",
    "SINK",
    "SINK_PROCESSOR",
    "CHANNEL_PROCESSOR",
    "INTERCEPTOR",
    "SERIALIZER",
];

/// Identifies a protocol connection for as long as it is open (numbered from 1 as they
/// are accepted), so that a component's counters belong to the connection reporting
/// them.
pub type ConnectionId = u64;

/// The latest counters an adapter reported for one component, and the connection that
/// reports them (`None` once it closed: the next connection to report takes over).
struct ReportedComponent {
    owner: Option<ConnectionId>,
    counters: Vec<(String, u64)>,
}

/// Why a `ReportCounters` is not recorded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReportRefusal {
    /// The type is not one of [`ADAPTER_COMPONENT_TYPES`] (a `CHANNEL` report would
    /// overwrite a real channel's metrics).
    #[error(
        "component type {} is not an adapter's; expected one of {}",
        crate::logging::Untrusted(.component_type),
        ADAPTER_COMPONENT_TYPES.join(", ")
    )]
    NotAnAdapterType {
        /// The type reported.
        component_type: String,
    },
    /// A component or counter name that a Flume configuration could not give: empty,
    /// or holding a dot, white space or a control character.
    #[error(
        "{what} name \"{}\" is not a component name: it must be 1 to 255 printable \
         characters without dots or white space",
        crate::logging::Untrusted(.name)
    )]
    InvalidName {
        /// `component` or `counter`.
        what: &'static str,
        /// The name reported.
        name: String,
    },
    /// Another open connection reports this component.
    #[error(
        "{} is reported by another open connection; only it may update these counters",
        crate::logging::Untrusted(.key)
    )]
    ReportedElsewhere {
        /// `TYPE.name`.
        key: String,
    },
    /// The table already holds [`MAX_REPORTED_COMPONENTS`] and this one is new.
    #[error("already keeping counters of {max_components} components")]
    TableFull {
        /// [`MAX_REPORTED_COMPONENTS`].
        max_components: usize,
    },
}

/// True for a name Flume could give a component (or a counter): printable, no white
/// space, no dot (the separator of Flume's property keys and of `TYPE.name`).
fn is_component_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|character| {
            !character.is_control()
                && !character.is_whitespace()
                && character != '.'
                && character.escape_debug().len() == character.len_utf8()
        })
}

impl ChannelRegistry {
    /// Registers the configured channels in [`ChannelState::Opening`], with their openers,
    /// on the real filesystem with io_uring where it can be used ([`RealFs::auto`](millrace_engine::storage::RealFs::auto)). The
    /// unit tests' shorthand; channeld passes its storage to [`ChannelRegistry::plan_on`].
    #[cfg(test)]
    pub fn plan(channels: &[(String, ChannelConfig)]) -> (ChannelRegistry, Vec<ChannelOpener>) {
        Self::plan_on(channels, Arc::new(millrace_engine::storage::RealFs::auto()))
    }

    /// Registers the configured channels in [`ChannelState::Opening`], with openers that
    /// open them on `storage` (channeld's: the real filesystem with `server.ioBackend`).
    pub fn plan_on(
        channels: &[(String, ChannelConfig)],
        storage: Arc<dyn Storage>,
    ) -> (ChannelRegistry, Vec<ChannelOpener>) {
        let mut entries = Vec::with_capacity(channels.len());
        let mut openers = Vec::with_capacity(channels.len());
        for (name, config) in channels {
            let opener = channel_opener(name, config, Arc::clone(&storage));
            entries.push(Arc::new(ChannelEntry {
                name: name.clone(),
                type_name: ChannelKind::of(config).alias(),
                // The Kafka channel is durable, but in Kafka: no log of channeld's own.
                durable: !matches!(config, ChannelConfig::Memory(_) | ChannelConfig::Kafka(_)),
                state: RwLock::new(ChannelState::Opening),
                file_channel: OnceLock::new(),
                commit_times: Arc::default(),
                minimum_required_space_bytes: space_guard_bytes(config),
            }));
            openers.push(opener);
        }
        let registry = ChannelRegistry {
            entries,
            component_counters: parking_lot::Mutex::new(BTreeMap::new()),
        };
        (registry, openers)
    }

    /// Records the latest counters connection `reporter` reported for
    /// `<component_type>.<component>`. Refused for a type that is not an adapter's, a
    /// name Flume could not give, a component another open connection reports, or a
    /// new component when the table is full.
    pub fn record_component_counters(
        &self,
        reporter: ConnectionId,
        component_type: &str,
        component: &str,
        counters: Vec<(String, u64)>,
    ) -> Result<(), ReportRefusal> {
        if !ADAPTER_COMPONENT_TYPES.contains(&component_type) {
            return Err(ReportRefusal::NotAnAdapterType {
                component_type: component_type.to_string(),
            });
        }
        let names = std::iter::once(("component", component))
            .chain(counters.iter().map(|(name, _)| ("counter", name.as_str())));
        for (what, name) in names {
            if !is_component_name(name) {
                return Err(ReportRefusal::InvalidName {
                    what,
                    name: name.to_string(),
                });
            }
        }
        let key = format!("{component_type}.{component}");
        let mut table = self.component_counters.lock();
        let table_full = table.len() >= MAX_REPORTED_COMPONENTS;
        match table.get_mut(&key) {
            Some(reported) => match reported.owner {
                Some(owner) if owner != reporter => {
                    return Err(ReportRefusal::ReportedElsewhere { key });
                }
                _ => {
                    reported.owner = Some(reporter);
                    reported.counters = counters;
                }
            },
            None if table_full => {
                return Err(ReportRefusal::TableFull {
                    max_components: MAX_REPORTED_COMPONENTS,
                });
            }
            None => {
                table.insert(
                    key,
                    ReportedComponent {
                        owner: Some(reporter),
                        counters,
                    },
                );
            }
        }
        Ok(())
    }

    /// Lets go of the components connection `reporter` was reporting (it closed): their
    /// last counters stay on the metrics, and the next connection to report one of them
    /// (the adapter, reconnected) takes it over.
    pub fn release_components(&self, reporter: ConnectionId) {
        for reported in self.component_counters.lock().values_mut() {
            if reported.owner == Some(reporter) {
                reported.owner = None;
            }
        }
    }

    /// Every reported component (`SOURCE.r1`, `SINK.k1`) with its latest counters.
    pub fn component_counters(&self) -> Vec<(String, Vec<(String, u64)>)> {
        self.component_counters
            .lock()
            .iter()
            .map(|(key, reported)| (key.clone(), reported.counters.clone()))
            .collect()
    }

    /// Opens every channel, one after another on this (blocking) thread, recording each
    /// outcome. Stops with an error only for a locked directory.
    pub fn open_all(&self, openers: Vec<ChannelOpener>) -> Result<(), RegistryError> {
        for (entry, opener) in self.entries.iter().zip(openers) {
            match opener() {
                Ok(opened) => {
                    info!(channel = %entry.name, "channel ready");
                    if let Some(file_channel) = opened.file_channel {
                        let _ = entry.file_channel.set(file_channel);
                    }
                    let channel =
                        TimedChannel::wrap(opened.channel, Arc::clone(&entry.commit_times));
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

    fn empty_registry() -> ChannelRegistry {
        ChannelRegistry::plan(&[]).0
    }

    #[test]
    fn only_adapter_component_types_are_recorded() {
        let registry = empty_registry();
        for refused in ["CHANNEL", "DATADIR", "source", "OTHER", ""] {
            assert_eq!(
                registry.record_component_counters(1, refused, "c1", vec![]),
                Err(ReportRefusal::NotAnAdapterType {
                    component_type: refused.to_string()
                })
            );
        }
        assert_eq!(
            registry.record_component_counters(
                1,
                "SOURCE",
                "r1",
                vec![("EventReceivedCount".into(), 3)]
            ),
            Ok(())
        );
        assert_eq!(
            registry.component_counters(),
            vec![(
                "SOURCE.r1".to_string(),
                vec![("EventReceivedCount".to_string(), 3)]
            )]
        );
    }

    #[test]
    fn names_flume_could_not_give_are_refused() {
        let registry = empty_registry();
        for name in [
            "",
            "a.b",
            "two words",
            "line\nbreak",
            "esc\u{1b}[0m",
            "bidi\u{202e}",
        ] {
            assert!(
                matches!(
                    registry.record_component_counters(1, "SINK", name, vec![]),
                    Err(ReportRefusal::InvalidName {
                        what: "component",
                        ..
                    })
                ),
                "{name:?}"
            );
        }
        assert!(matches!(
            registry.record_component_counters(1, "SINK", "k1", vec![("bad\ncounter".into(), 1)]),
            Err(ReportRefusal::InvalidName {
                what: "counter",
                ..
            })
        ));
        assert_eq!(
            registry.record_component_counters(1, "SINK", "hdfs-sink_2", vec![]),
            Ok(())
        );
    }

    #[test]
    fn a_component_belongs_to_its_connection_until_that_one_closes() {
        let registry = empty_registry();
        registry
            .record_component_counters(1, "SINK", "k1", vec![("EventDrainSuccessCount".into(), 5)])
            .unwrap();
        assert_eq!(
            registry.record_component_counters(
                2,
                "SINK",
                "k1",
                vec![("EventDrainSuccessCount".into(), 0)]
            ),
            Err(ReportRefusal::ReportedElsewhere {
                key: "SINK.k1".to_string()
            })
        );
        registry
            .record_component_counters(1, "SINK", "k1", vec![("EventDrainSuccessCount".into(), 6)])
            .unwrap();
        registry.release_components(1);
        assert_eq!(
            registry.component_counters()[0].1,
            vec![("EventDrainSuccessCount".to_string(), 6)],
            "the last counters stay after the reporter closed"
        );
        registry
            .record_component_counters(2, "SINK", "k1", vec![("EventDrainSuccessCount".into(), 7)])
            .unwrap();
        assert!(registry
            .record_component_counters(1, "SINK", "k1", vec![])
            .is_err());
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
