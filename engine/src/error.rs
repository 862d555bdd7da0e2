//! Errors of the engine: [`ChannelError`] for work on an open channel, [`OpenError`] for
//! opening (and recovering) one. Every variant names the channel and the values involved,
//! so the message alone tells an operator what happened.

use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::crypto::KeyError;

/// A failure of a put, take, commit, rollback or close.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A put waited `keep-alive` for capacity and none became free.
    #[error(
        "channel {channel} is full: capacity {capacity} events, {size} queued or reserved; \
         waited {waited_ms} ms for space (a sink may be too slow or the capacity too low)"
    )]
    ChannelFull {
        /// The channel.
        channel: String,
        /// Its `capacity`.
        capacity: u64,
        /// Events queued, being taken, or reserved by open puts when the put gave up.
        size: u64,
        /// How long the put waited.
        waited_ms: u64,
    },

    /// A memory channel commit needed more body bytes than `byteCapacity` leaves free, and
    /// none were freed within `keep-alive` (or the transaction alone exceeds the limit).
    /// Bodies are counted as Flume counts them: in 100-byte slots, rounded up per event.
    #[error(
        "channel {channel} is out of byte capacity: byteCapacity {byte_capacity_bytes} bytes \
         leaves {body_limit_bytes} bytes for event bodies after byteCapacityBufferPercentage; \
         {body_bytes_in_use} in use, this commit needs {body_bytes_needed} more; \
         waited {waited_ms} ms (a sink may be too slow or byteCapacity too low)"
    )]
    ByteCapacityFull {
        /// The channel.
        channel: String,
        /// Its `byteCapacity` (configured, or the default computed from memory).
        byte_capacity_bytes: u64,
        /// Body bytes it admits: its slots after the buffer percentage, times the slot size.
        body_limit_bytes: u64,
        /// Body bytes held by queued events and by takes of open transactions.
        body_bytes_in_use: u64,
        /// Body bytes the commit adds, net of the bytes its own takes release.
        body_bytes_needed: u64,
        /// How long the commit waited.
        waited_ms: u64,
    },

    /// A transaction already holds `transactionCapacity` puts (or takes).
    #[error(
        "transaction on channel {channel} already holds {transaction_capacity} {operation}s, \
         its transactionCapacity; commit more often or raise transactionCapacity"
    )]
    TransactionFull {
        /// The channel.
        channel: String,
        /// Its `transactionCapacity`.
        transaction_capacity: u64,
        /// `put` or `take`.
        operation: &'static str,
    },

    /// An event is larger than the largest record a segment can hold.
    #[error(
        "event of {event_bytes} bytes is too large for channel {channel}: \
         at most {max_event_bytes} bytes fit in one record (maxFileSize bounds it)"
    )]
    EventTooLarge {
        /// The channel.
        channel: String,
        /// The event's encoded size.
        event_bytes: u64,
        /// The largest encoded event the channel accepts.
        max_event_bytes: u64,
    },

    /// A directory's usable space is below `minimumRequiredSpace` plus what the write needs.
    #[error(
        "channel {channel} refuses puts: {dir} has {available_bytes} bytes usable, \
         {required_bytes} bytes required (minimumRequiredSpace plus this write)"
    )]
    InsufficientSpace {
        /// The channel.
        channel: String,
        /// The directory that is short of space.
        dir: PathBuf,
        /// Usable bytes seen (`f_bavail * f_frsize`).
        available_bytes: u64,
        /// Bytes needed.
        required_bytes: u64,
    },

    /// The channel stopped after an earlier failure (fsync error, corruption) and
    /// acknowledges nothing until it is reopened.
    #[error("channel {channel} has failed and accepts no more work: {reason}")]
    Failed {
        /// The channel.
        channel: String,
        /// The original failure.
        reason: String,
    },

    /// The channel was closed by its owner.
    #[error("channel {channel} is closed")]
    Closed {
        /// The channel.
        channel: String,
    },

    /// An I/O operation failed. For writes and syncs this also fails the channel.
    #[error("channel {channel}: {operation} of {file} failed: {source}")]
    Io {
        /// The channel.
        channel: String,
        /// The file or directory involved.
        file: PathBuf,
        /// What was being done (`write`, `fdatasync`, `read`, …).
        operation: &'static str,
        /// The underlying error (errno).
        #[source]
        source: io::Error,
    },

    /// A data or checkpoint directory no longer is where the channel opened it: removed
    /// (`rm -rf`), or another directory (or file) put in its place, while the channel ran.
    /// Fails the channel: what it wrote there is in no file a restart would read.
    #[error(
        "channel {channel}: {role} directory {dir} was removed or replaced while the \
         channel was running: {detail}; the channel acknowledges nothing more, and events \
         it stored there are lost unless the directory is restored (see \
         docs/operations.md, \"A directory removed under a running channel\")"
    )]
    DirectoryLost {
        /// The channel.
        channel: String,
        /// `data`, `checkpoint` or `backup checkpoint`.
        role: &'static str,
        /// The directory as configured.
        dir: PathBuf,
        /// What the path names now.
        detail: String,
    },

    /// A channel whose events live outside this process (the Kafka channel) could not do
    /// `operation` there: the cluster is unreachable, refused a record, or an event
    /// cannot become a record. The transaction is rolled back; retrying may succeed.
    #[error("channel {channel}: {operation} failed: {reason}")]
    External {
        /// The channel.
        channel: String,
        /// What was being done (`put`, `commit`, `take`).
        operation: &'static str,
        /// What went wrong, with the values involved.
        reason: String,
    },

    /// A record read back from disk failed its checksum or framing checks.
    #[error("channel {channel}: corrupt record in {file} at offset {offset}: {detail}")]
    Corruption {
        /// The channel.
        channel: String,
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

impl ChannelError {
    /// Whether this is a lack of disk space that passes once space returns: the space
    /// guard's refusal, or ENOSPC (or EDQUOT) from a write, an allocation or a file
    /// creation. The channel keeps serving after one. A failed sync is never one, whatever
    /// its errno: it fails the channel.
    pub fn is_space_shortage(&self) -> bool {
        match self {
            ChannelError::InsufficientSpace { .. } => true,
            ChannelError::Io {
                operation, source, ..
            } => is_out_of_space(source) && !operation.contains("sync"),
            _ => false,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_out_of_space(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// A failure to open a channel.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A channel whose events live outside this process (the Kafka channel) could not be
    /// set up: its client refused the settings.
    #[error("channel {channel}: cannot open: {reason}")]
    External {
        /// The channel.
        channel: String,
        /// Why, with the values involved.
        reason: String,
    },

    /// The settings break a rule.
    #[error("channel {channel}: invalid configuration: {source}")]
    Config {
        /// The channel.
        channel: String,
        /// The broken rule.
        #[source]
        source: ConfigError,
    },

    /// Another process (or another open channel) holds the directory's lock.
    #[error(
        "channel {channel}: directory {dir} is locked by another process \
         (lock file {lock_file}); two channels cannot share a directory"
    )]
    Locked {
        /// The channel.
        channel: String,
        /// The directory.
        dir: PathBuf,
        /// The lock file.
        lock_file: PathBuf,
    },

    /// A file or directory operation failed.
    #[error("channel {channel}: {operation} of {path} failed: {source}")]
    Io {
        /// The channel.
        channel: String,
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A configured encryption key could not be loaded: its file is missing, unreadable,
    /// or does not hold a key.
    #[error("channel {channel}: {source}; nothing on disk was changed")]
    Key {
        /// The channel.
        channel: String,
        /// Which key, which file, and what is wrong.
        #[source]
        source: KeyError,
    },

    /// A segment on disk was encrypted with a key id the configuration does not list.
    #[error(
        "channel {channel}: segment {segment} was encrypted with key {key_id:?}, which is not \
         configured (configured keys: {configured_key_ids}); add it to \
         encryption.keyProvider.keys — nothing on disk was changed, and every event is \
         there once the key is back"
    )]
    SegmentKeyMissing {
        /// The channel.
        channel: String,
        /// The segment file.
        segment: PathBuf,
        /// The key id its header names.
        key_id: String,
        /// The key ids that are configured, space-separated (`none` without encryption).
        configured_key_ids: String,
    },

    /// The configured key with a segment's key id is a different key from the one the
    /// segment was encrypted with (the header's key check does not match).
    #[error(
        "channel {channel}: segment {segment} was encrypted with key {key_id:?}, but the key \
         read from {key_file} is a different key (the segment header's key check does not \
         match); restore the original key file — nothing on disk was changed"
    )]
    SegmentKeyMismatch {
        /// The channel.
        channel: String,
        /// The segment file.
        segment: PathBuf,
        /// The key id its header names.
        key_id: String,
        /// The file the configured key was read from.
        key_file: PathBuf,
    },

    /// Damage that recovery must not silently skip: a bad record followed by valid ones,
    /// a bad header, an inconsistent transaction.
    #[error(
        "channel {channel}: corruption in {file} at offset {offset}: {detail}; \
         refusing to start rather than lose committed events (see `channelctl verify`)"
    )]
    Corruption {
        /// The channel.
        channel: String,
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}
