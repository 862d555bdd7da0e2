//! Opening a configured channel: the one place outside the engine that names its
//! concrete channel types. A new channel type is one arm here.

use std::sync::Arc;

use millrace_engine::config::ChannelConfig;
use millrace_engine::storage::Storage;
use millrace_engine::{Channel, FileChannel, MemoryChannel, OpenError, SpillableChannel};
use millrace_kafka::KafkaChannel;

/// A channel just opened: as every user sees it, and as the file channel it is, when it
/// is one (for the operations only a file channel's log supports, online inspect and
/// replay, without a downcast).
pub struct OpenedChannel {
    /// The channel.
    pub channel: Arc<dyn Channel>,
    /// The same channel when it is a file channel.
    pub file_channel: Option<Arc<FileChannel>>,
}

impl OpenedChannel {
    fn other(channel: Arc<dyn Channel>) -> Self {
        OpenedChannel {
            channel,
            file_channel: None,
        }
    }
}

/// Opens the channel `config` describes under `name`, on `storage` (a file channel's log
/// and a spillable channel's overflow), recovering a file channel's log, which can take a
/// while: call it where blocking is fine.
pub fn open_channel(
    name: &str,
    config: ChannelConfig,
    storage: Arc<dyn Storage>,
) -> Result<OpenedChannel, OpenError> {
    Ok(match config {
        ChannelConfig::File(file_config) => {
            let file_channel =
                Arc::new(FileChannel::open_with_storage(name, file_config, storage)?);
            OpenedChannel {
                channel: Arc::clone(&file_channel) as Arc<dyn Channel>,
                file_channel: Some(file_channel),
            }
        }
        ChannelConfig::Memory(memory_config) => {
            OpenedChannel::other(Arc::new(MemoryChannel::open(name, memory_config)?))
        }
        ChannelConfig::Spillable(spillable_config) => OpenedChannel::other(Arc::new(
            SpillableChannel::open_with_storage(name, spillable_config, storage)?,
        )),
        ChannelConfig::Kafka(kafka_config) => {
            OpenedChannel::other(Arc::new(KafkaChannel::open(name, kafka_config)?))
        }
    })
}
