//! Opening a configured channel: the one place outside the engine that names its
//! concrete channel types. A new channel type is one arm here.

use std::sync::Arc;

use millrace_engine::config::ChannelConfig;
use millrace_engine::{Channel, FileChannel, MemoryChannel, OpenError, SpillableChannel};

/// Opens the channel `config` describes under `name` (recovering a file channel's log,
/// which can take a while: call it where blocking is fine).
pub fn open_channel(name: &str, config: ChannelConfig) -> Result<Arc<dyn Channel>, OpenError> {
    Ok(match config {
        ChannelConfig::File(file_config) => Arc::new(FileChannel::open(name, file_config)?),
        ChannelConfig::Memory(memory_config) => Arc::new(MemoryChannel::open(name, memory_config)?),
        ChannelConfig::Spillable(spillable_config) => {
            Arc::new(SpillableChannel::open(name, spillable_config)?)
        }
    })
}
