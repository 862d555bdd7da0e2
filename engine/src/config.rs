//! Channel settings, with Flume's key names and Flume's real defaults.
//!
//! The defaults here are the ones Flume's code applies (not the User Guide's stale table):
//! `docs/configuration.md` lists every key with its default. Each field's doc names the
//! Flume key it comes from. Millrace extensions are marked as such.
//!
//! These structs are plain data: parsing the properties file is the server's job, and
//! [`FileChannelConfig::validate`] checks the cross-field rules that every caller needs.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::crypto::{EncryptionConfig, KeySource};
pub use crate::record::Compression;
use crate::record::MAX_KEY_ID_BYTES;

/// Flume's `capacity` default for a file channel.
pub const DEFAULT_FILE_CAPACITY: u64 = 1_000_000;
/// Flume's `transactionCapacity` default for a file channel (FLUME-2267 raised it from 1000).
pub const DEFAULT_FILE_TRANSACTION_CAPACITY: u64 = 10_000;
/// Flume's `keep-alive` default: how long a put waits for capacity.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(3);
/// Flume's `checkpointInterval` default.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(30_000);
/// Flume floors `checkpointInterval` at one second.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1_000);
/// Flume's `maxFileSize` default and ceiling: `Integer.MAX_VALUE - 500 MiB`.
pub const DEFAULT_MAX_FILE_SIZE_BYTES: u64 = 1_623_195_647;
/// Flume's `minimumRequiredSpace` default (500 MiB).
pub const DEFAULT_MINIMUM_REQUIRED_SPACE_BYTES: u64 = 524_288_000;
/// Flume raises any smaller `minimumRequiredSpace` to 1 MiB.
pub const MIN_MINIMUM_REQUIRED_SPACE_BYTES: u64 = 1_048_576;
/// Flume's `fsyncInterval` default (used only when `fsyncPerTransaction = false`).
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(5);
/// Smallest `maxFileSize` Millrace accepts: a segment must hold its header and at least
/// a few small records, or every transaction would roll a new file.
pub const MIN_MAX_FILE_SIZE_BYTES: u64 = 1_024;

/// Flume's `capacity` default for a memory channel.
pub const DEFAULT_MEMORY_CAPACITY: u64 = 100;
/// Flume's `transactionCapacity` default for a memory channel.
pub const DEFAULT_MEMORY_TRANSACTION_CAPACITY: u64 = 100;
/// Flume's `byteCapacityBufferPercentage` default.
pub const DEFAULT_BYTE_CAPACITY_BUFFER_PERCENTAGE: u8 = 20;
/// Flume's memory channel counts body bytes in slots of this size
/// (`MemoryChannel.byteCapacitySlotSize`): an event costs its body length in slots,
/// rounded up, and at least one slot even when the body is empty (FLUME-1622).
pub const MEMORY_BYTE_SLOT_SIZE_BYTES: u64 = 100;
/// A whole, in percent: `byteCapacityBufferPercentage` must stay below it, or no byte
/// would be left for bodies.
const FULL_PERCENT: u64 = 100;
/// Flume's `memoryCapacity` default for the spillable channel.
pub const DEFAULT_SPILLABLE_MEMORY_CAPACITY: u64 = 10_000;
/// Flume's `overflowCapacity` default for the spillable channel.
pub const DEFAULT_OVERFLOW_CAPACITY: u64 = 100_000_000;
/// Flume's `overflowTimeout` default.
pub const DEFAULT_OVERFLOW_TIMEOUT: Duration = Duration::from_secs(3);
/// Flume's `overflowDeactivationThreshold` default, in percent of free memory slots.
pub const DEFAULT_OVERFLOW_DEACTIVATION_THRESHOLD_PERCENT: u8 = 5;
/// Flume's `avgEventSize` default, the byte-slot size of the spillable channel.
pub const DEFAULT_AVG_EVENT_SIZE_BYTES: u64 = 500;
/// Millrace extension `fileMode`: files holding events are readable and writable by their
/// owner only (directories `0700`).
pub const DEFAULT_FILE_MODE: u32 = 0o600;
/// The bits `fileMode` may hold: read and write for owner, group and others (no execute,
/// no set-id or sticky bits: these are data files).
const ALLOWED_FILE_MODE_BITS: u32 = 0o666;
/// The bits `fileMode` must hold: the channel reads and writes its own files.
const REQUIRED_FILE_MODE_BITS: u32 = 0o600;

/// Settings of a file channel (`type = file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChannelConfig {
    /// `dataDirs`: one or more directories; each transaction goes to one of them.
    pub data_dirs: Vec<PathBuf>,
    /// `checkpointDir`.
    pub checkpoint_dir: PathBuf,
    /// `useDualCheckpoints`.
    pub use_dual_checkpoints: bool,
    /// `backupCheckpointDir`: required when `use_dual_checkpoints`, must differ from
    /// `checkpoint_dir`.
    pub backup_checkpoint_dir: Option<PathBuf>,
    /// `capacity`: the most events the channel holds (queued, being taken, and reserved by
    /// open puts).
    pub capacity: u64,
    /// `transactionCapacity`: the most puts, and the most takes, in one transaction.
    pub transaction_capacity: u64,
    /// `keep-alive`: how long a put waits for capacity before failing.
    pub keep_alive: Duration,
    /// `checkpointInterval`.
    pub checkpoint_interval: Duration,
    /// `checkpointOnClose`.
    pub checkpoint_on_close: bool,
    /// `maxFileSize`: a segment is rolled before it would grow past this.
    pub max_file_size_bytes: u64,
    /// `minimumRequiredSpace`: puts are refused when a directory's usable space would drop
    /// below this.
    pub minimum_required_space_bytes: u64,
    /// `fsyncPerTransaction`: when true a commit is acknowledged only after its records
    /// are synced; when false the ack comes first and a background sync runs every
    /// `fsync_interval`.
    pub fsync_per_transaction: bool,
    /// `fsyncInterval`.
    pub fsync_interval: Duration,
    /// Millrace extension `retentionTime`: keep fully taken segments this long so that a
    /// channel can be replayed (rewound). Zero keeps nothing, as Flume does.
    pub retention_time: Duration,
    /// Millrace extension `retentionBytes`: keep at most this many bytes of fully taken
    /// segments for replay. Zero keeps nothing.
    pub retention_bytes: u64,
    /// `encryption.*`: encrypt put records with an authenticated cipher. `None` writes
    /// them in clear (segments written earlier with a key still need that key).
    pub encryption: Option<EncryptionConfig>,
    /// Millrace extension `compression`: compress each put record (a batch of events)
    /// before it is encrypted, keeping the compressed form only when it is smaller.
    pub compression: Compression,
    /// Millrace extension `fileMode`: permission bits of the files the channel creates
    /// (segments, checkpoints and their temp files, lock files); directories it creates
    /// get the same bits plus search (execute) wherever read is allowed. The umask can
    /// only take bits away. Default [`DEFAULT_FILE_MODE`] (`0600`, directories `0700`).
    pub file_mode: u32,
}

impl EncryptionConfig {
    /// Checks the key ids: the active key is listed, and every id fits a segment header.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.keys.is_empty() {
            return Err(ConfigError::invalid(
                "encryption.keyProvider.keys",
                "at least one key id",
            ));
        }
        for key_id in self.keys.keys() {
            if let Some(problem) = key_id_problem(key_id) {
                return Err(ConfigError::Invalid {
                    key: "encryption.keyProvider.keys",
                    expected: format!("{problem}, got {key_id:?}"),
                });
            }
        }
        if !self.keys.contains_key(&self.active_key_id) {
            let listed: Vec<&str> = self.keys.keys().map(String::as_str).collect();
            return Err(ConfigError::Invalid {
                key: "encryption.activeKey",
                expected: format!(
                    "a key id listed in encryption.keyProvider.keys ({}), got {:?}",
                    listed.join(" "),
                    self.active_key_id
                ),
            });
        }
        Ok(())
    }
}

/// Why a key id cannot name a key in a segment header, if it cannot.
pub fn key_id_problem(key_id: &str) -> Option<String> {
    if key_id.is_empty() || key_id.len() > MAX_KEY_ID_BYTES {
        return Some(format!(
            "a key id of 1 to {MAX_KEY_ID_BYTES} bytes (it is stored in each segment header)"
        ));
    }
    if key_id
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        return Some("a key id without whitespace or control characters".to_string());
    }
    None
}

/// What a `fileMode` value must be, as error messages say it.
pub const FILE_MODE_EXPECTED: &str = "octal permission bits with read and write for the \
     owner and no execute, set-id or sticky bits (such as 0600, 0640 or 0644)";

/// Whether `mode` is an acceptable `fileMode` ([`FILE_MODE_EXPECTED`]).
pub fn file_mode_is_acceptable(mode: u32) -> bool {
    mode & !ALLOWED_FILE_MODE_BITS == 0 && mode & REQUIRED_FILE_MODE_BITS == REQUIRED_FILE_MODE_BITS
}

impl FileChannelConfig {
    /// Flume's defaults, with the directories Millrace uses when none are configured:
    /// `<base>/<channel>/data` and `<base>/<channel>/checkpoint`.
    pub fn with_default_dirs(base_dir: impl Into<PathBuf>, channel_name: &str) -> Self {
        let channel_dir = base_dir.into().join(channel_name);
        Self::new(
            vec![channel_dir.join("data")],
            channel_dir.join("checkpoint"),
        )
    }

    /// Flume's defaults for everything but the directories.
    pub fn new(data_dirs: Vec<PathBuf>, checkpoint_dir: PathBuf) -> Self {
        FileChannelConfig {
            data_dirs,
            checkpoint_dir,
            use_dual_checkpoints: false,
            backup_checkpoint_dir: None,
            capacity: DEFAULT_FILE_CAPACITY,
            transaction_capacity: DEFAULT_FILE_TRANSACTION_CAPACITY,
            keep_alive: DEFAULT_KEEP_ALIVE,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_on_close: true,
            max_file_size_bytes: DEFAULT_MAX_FILE_SIZE_BYTES,
            minimum_required_space_bytes: DEFAULT_MINIMUM_REQUIRED_SPACE_BYTES,
            fsync_per_transaction: true,
            fsync_interval: DEFAULT_FSYNC_INTERVAL,
            retention_time: Duration::ZERO,
            retention_bytes: 0,
            encryption: None,
            compression: Compression::None,
            file_mode: DEFAULT_FILE_MODE,
        }
    }

    /// The permission bits of what the channel creates: `file_mode` for files, and for
    /// directories the same plus search where read is allowed.
    pub fn file_modes(&self) -> crate::storage::FileMode {
        crate::storage::FileMode::for_files(self.file_mode)
    }

    /// Checks the rules that span several settings. Returns the first violation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dirs.is_empty() {
            return Err(ConfigError::invalid("dataDirs", "at least one directory"));
        }
        validate_capacities(self.capacity, self.transaction_capacity)?;
        if self.max_file_size_bytes < MIN_MAX_FILE_SIZE_BYTES
            || self.max_file_size_bytes > DEFAULT_MAX_FILE_SIZE_BYTES
        {
            return Err(ConfigError::Invalid {
                key: "maxFileSize",
                expected: format!(
                    "between {MIN_MAX_FILE_SIZE_BYTES} and {DEFAULT_MAX_FILE_SIZE_BYTES} bytes, got {}",
                    self.max_file_size_bytes
                ),
            });
        }
        if self.use_dual_checkpoints {
            match &self.backup_checkpoint_dir {
                None => {
                    return Err(ConfigError::invalid(
                        "backupCheckpointDir",
                        "a directory when useDualCheckpoints = true",
                    ))
                }
                Some(backup) if backup == &self.checkpoint_dir => {
                    return Err(ConfigError::invalid(
                        "backupCheckpointDir",
                        "a directory other than checkpointDir",
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(encryption) = &self.encryption {
            encryption.validate()?;
        }
        if !file_mode_is_acceptable(self.file_mode) {
            return Err(ConfigError::Invalid {
                key: "fileMode",
                expected: format!("{FILE_MODE_EXPECTED}, got {:04o}", self.file_mode),
            });
        }
        Ok(())
    }

    /// `minimumRequiredSpace` as Flume applies it: raised to its 1 MiB floor.
    pub fn effective_minimum_required_space_bytes(&self) -> u64 {
        self.minimum_required_space_bytes
            .max(MIN_MINIMUM_REQUIRED_SPACE_BYTES)
    }

    /// `checkpointInterval` as Flume applies it: floored at one second.
    pub fn effective_checkpoint_interval(&self) -> Duration {
        self.checkpoint_interval.max(MIN_CHECKPOINT_INTERVAL)
    }
}

/// Settings of a memory channel (`type = memory`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryChannelConfig {
    /// `capacity`: the most committed events in the queue.
    pub capacity: u64,
    /// `transactionCapacity`.
    pub transaction_capacity: u64,
    /// `keep-alive`: how long a commit waits for space and a take waits for an event.
    pub keep_alive: Duration,
    /// `byteCapacity`: the most body bytes held; `None` means Flume's default, 80% of the
    /// memory available to the process (Millrace reads the machine's total memory).
    pub byte_capacity_bytes: Option<u64>,
    /// `byteCapacityBufferPercentage`: headroom for headers, which are not counted.
    pub byte_capacity_buffer_percentage: u8,
}

impl Default for MemoryChannelConfig {
    fn default() -> Self {
        MemoryChannelConfig {
            capacity: DEFAULT_MEMORY_CAPACITY,
            transaction_capacity: DEFAULT_MEMORY_TRANSACTION_CAPACITY,
            keep_alive: DEFAULT_KEEP_ALIVE,
            byte_capacity_bytes: None,
            byte_capacity_buffer_percentage: DEFAULT_BYTE_CAPACITY_BUFFER_PERCENTAGE,
        }
    }
}

impl MemoryChannelConfig {
    /// Checks the rules that span several settings. Returns the first violation.
    ///
    /// Flume replaces a non-positive `capacity` with its default and treats a
    /// `byteCapacity` that leaves less than one slot as unlimited; Millrace refuses both.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_capacities(self.capacity, self.transaction_capacity)?;
        if u64::from(self.byte_capacity_buffer_percentage) >= FULL_PERCENT {
            return Err(ConfigError::Invalid {
                key: "byteCapacityBufferPercentage",
                expected: format!(
                    "a whole percentage below {FULL_PERCENT}, got {}",
                    self.byte_capacity_buffer_percentage
                ),
            });
        }
        if let Some(byte_capacity_bytes) = self.byte_capacity_bytes {
            let slots = usable_byte_slots(
                byte_capacity_bytes,
                self.byte_capacity_buffer_percentage,
                MEMORY_BYTE_SLOT_SIZE_BYTES,
            );
            if slots == 0 {
                return Err(ConfigError::Invalid {
                    key: "byteCapacity",
                    expected: format!(
                        "enough bytes for one {MEMORY_BYTE_SLOT_SIZE_BYTES}-byte slot after \
                         byteCapacityBufferPercentage ({}%), got {byte_capacity_bytes}",
                        self.byte_capacity_buffer_percentage
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The byte slots a `byteCapacity` provides once its buffer percentage is set aside, as
/// Flume computes them: `byteCapacity × (100 − percentage) / 100 / slot size`, rounded
/// down. A percentage of 100 or more leaves no slots.
pub fn usable_byte_slots(
    byte_capacity_bytes: u64,
    buffer_percentage: u8,
    slot_size_bytes: u64,
) -> u64 {
    let usable_percent = FULL_PERCENT.saturating_sub(u64::from(buffer_percentage));
    let usable_bytes =
        u128::from(byte_capacity_bytes) * u128::from(usable_percent) / u128::from(FULL_PERCENT);
    let slots = usable_bytes / u128::from(slot_size_bytes.max(1));
    u64::try_from(slots).unwrap_or(u64::MAX)
}

/// Settings of a spillable memory channel (`type = spillablememory`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillableChannelConfig {
    /// `memoryCapacity`: events held in the memory tier; 0 sends everything to disk.
    pub memory_capacity: u64,
    /// `overflowCapacity`: events held on disk; 0 disables the overflow.
    pub overflow_capacity: u64,
    /// `overflowTimeout`: how long a commit waits for memory before spilling.
    pub overflow_timeout: Duration,
    /// `overflowDeactivationThreshold`: percent of free memory slots at which spilling
    /// stops.
    pub overflow_deactivation_threshold_percent: u8,
    /// `byteCapacity` of the memory tier (`None`: 80% of the machine's memory).
    pub byte_capacity_bytes: Option<u64>,
    /// `byteCapacityBufferPercentage`.
    pub byte_capacity_buffer_percentage: u8,
    /// `avgEventSize`: the byte-slot size of the memory tier.
    pub avg_event_size_bytes: u64,
    /// The overflow file channel. Its `capacity` is forced to `overflow_capacity` and its
    /// `keep_alive` to zero, as in Flume.
    pub overflow: FileChannelConfig,
}

impl SpillableChannelConfig {
    /// Flume's defaults around the given overflow file channel settings.
    pub fn new(overflow: FileChannelConfig) -> Self {
        SpillableChannelConfig {
            memory_capacity: DEFAULT_SPILLABLE_MEMORY_CAPACITY,
            overflow_capacity: DEFAULT_OVERFLOW_CAPACITY,
            overflow_timeout: DEFAULT_OVERFLOW_TIMEOUT,
            overflow_deactivation_threshold_percent:
                DEFAULT_OVERFLOW_DEACTIVATION_THRESHOLD_PERCENT,
            byte_capacity_bytes: None,
            byte_capacity_buffer_percentage: DEFAULT_BYTE_CAPACITY_BUFFER_PERCENTAGE,
            avg_event_size_bytes: DEFAULT_AVG_EVENT_SIZE_BYTES,
            overflow,
        }
    }
}

/// Flume's `kafka.topic` default for the Kafka channel.
pub const DEFAULT_KAFKA_CHANNEL_TOPIC: &str = "flume-channel";
/// Flume's `kafka.consumer.group.id` default for the Kafka channel.
pub const DEFAULT_KAFKA_CHANNEL_GROUP_ID: &str = "flume";
/// Flume's `kafka.pollTimeout` default: how long one poll of the consumer waits.
pub const DEFAULT_KAFKA_POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Millrace's `transactionCapacity` default for the Kafka channel (Flume's Kafka
/// channel has no bound; Millrace keeps one so that a transaction's events, held in
/// memory until its commit, stay bounded).
pub const DEFAULT_KAFKA_TRANSACTION_CAPACITY: u64 = 10_000;

/// Settings of a Kafka channel (`type = org.apache.flume.channel.kafka.KafkaChannel`,
/// alias `kafka`): plain data. The engine does not implement this channel (it knows no
/// sockets); `millrace-kafka` does, and `millrace-ops` opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaChannelConfig {
    /// `kafka.bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `kafka.topic`.
    pub topic: String,
    /// `kafka.consumer.group.id`.
    pub group_id: String,
    /// `parseAsFlumeEvent`: values are `AvroFlumeEvent` datums (else bare bodies).
    pub parse_as_flume_event: bool,
    /// `kafka.pollTimeout` (or the User Guide's `pollTimeout`).
    pub poll_timeout: Duration,
    /// `defaultPartitionId`.
    pub default_partition_id: Option<i32>,
    /// `partitionIdHeader`.
    pub partition_id_header: Option<String>,
    /// `transactionCapacity`: the most puts, and the most takes, in one transaction.
    pub transaction_capacity: u64,
    /// `capacity`, reported as `ChannelCapacity` only: the topic holds the events, and
    /// its retention (not this number) bounds them.
    pub capacity: u64,
    /// The producer's properties in order: defaults, `kafka.producer.*`, forced values.
    pub producer_properties: Vec<(String, String)>,
    /// The consumer's properties in order: defaults, `kafka.consumer.*`, forced values.
    pub consumer_properties: Vec<(String, String)>,
}

/// A channel's settings, whatever its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelConfig {
    /// `type = file`
    File(FileChannelConfig),
    /// `type = memory`
    Memory(MemoryChannelConfig),
    /// `type = spillablememory`
    Spillable(SpillableChannelConfig),
    /// `type = kafka`
    Kafka(KafkaChannelConfig),
}

impl ChannelConfig {
    /// `transactionCapacity`: the most puts, and the most takes, in one transaction (for
    /// the spillable channel, the bound of its overflow's transactions, which also bounds
    /// every put).
    pub fn transaction_capacity(&self) -> u64 {
        match self {
            ChannelConfig::File(file) => file.transaction_capacity,
            ChannelConfig::Memory(memory) => memory.transaction_capacity,
            ChannelConfig::Spillable(spillable) => spillable.overflow.transaction_capacity,
            ChannelConfig::Kafka(kafka) => kafka.transaction_capacity,
        }
    }
}

/// The rules `capacity` and `transactionCapacity` follow in every channel type: both
/// positive, and a transaction no larger than the channel.
fn validate_capacities(capacity: u64, transaction_capacity: u64) -> Result<(), ConfigError> {
    if capacity == 0 {
        return Err(ConfigError::invalid(
            "capacity",
            "a positive number of events",
        ));
    }
    if transaction_capacity == 0 {
        return Err(ConfigError::invalid(
            "transactionCapacity",
            "a positive number of events",
        ));
    }
    if transaction_capacity > capacity {
        return Err(ConfigError::Invalid {
            key: "transactionCapacity",
            expected: format!("at most capacity ({capacity}), got {transaction_capacity}"),
        });
    }
    Ok(())
}

/// A setting that breaks a rule spanning several keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The named key's value is not acceptable.
    #[error("{key}: expected {expected}")]
    Invalid {
        /// Flume's name of the key.
        key: &'static str,
        /// What would have been accepted, with the value seen.
        expected: String,
    },
}

impl ConfigError {
    fn invalid(key: &'static str, expected: &str) -> Self {
        ConfigError::Invalid {
            key,
            expected: expected.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn file_defaults_are_flumes_real_defaults() {
        let config = FileChannelConfig::with_default_dirs("base", "c1");
        assert_eq!(config.capacity, 1_000_000);
        assert_eq!(config.transaction_capacity, 10_000);
        assert_eq!(config.max_file_size_bytes, 1_623_195_647);
        assert_eq!(config.minimum_required_space_bytes, 524_288_000);
        assert_eq!(config.data_dirs, vec![PathBuf::from("base/c1/data")]);
        assert_eq!(config.checkpoint_dir, PathBuf::from("base/c1/checkpoint"));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn file_mode_defaults_to_owner_only_and_refuses_execute_bits_or_an_unwritable_owner() {
        let mut config = FileChannelConfig::with_default_dirs("base", "c1");
        assert_eq!(config.file_mode, 0o600);
        assert_eq!(config.file_modes().dir, 0o700);
        config.file_mode = 0o640;
        assert!(config.validate().is_ok());
        assert_eq!(config.file_modes().dir, 0o750);
        for refused in [0o700, 0o400, 0o4600, 0o1600, 0o601] {
            config.file_mode = refused;
            let message = config.validate().unwrap_err().to_string();
            assert!(
                message.starts_with("fileMode: expected")
                    && message.contains(&format!("{refused:04o}")),
                "{message}"
            );
        }
    }

    #[test]
    fn transaction_capacity_above_capacity_is_rejected_with_both_values() {
        let mut config = FileChannelConfig::with_default_dirs("base", "c1");
        config.capacity = 10;
        config.transaction_capacity = 11;
        let message = config.validate().unwrap_err().to_string();
        assert_eq!(
            message,
            "transactionCapacity: expected at most capacity (10), got 11"
        );
    }

    #[test]
    fn dual_checkpoints_need_a_distinct_backup_dir() {
        let mut config = FileChannelConfig::with_default_dirs("base", "c1");
        config.use_dual_checkpoints = true;
        assert!(config.validate().is_err());
        config.backup_checkpoint_dir = Some(config.checkpoint_dir.clone());
        assert!(config.validate().is_err());
        config.backup_checkpoint_dir = Some(PathBuf::from("elsewhere"));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn memory_byte_slots_follow_flumes_formula() {
        // TestMemoryChannel: 2000 bytes at 20% is 16 slots, 1000 bytes at 20% is 8.
        assert_eq!(usable_byte_slots(2000, 20, MEMORY_BYTE_SLOT_SIZE_BYTES), 16);
        assert_eq!(usable_byte_slots(1000, 20, MEMORY_BYTE_SLOT_SIZE_BYTES), 8);
        assert_eq!(usable_byte_slots(199, 0, MEMORY_BYTE_SLOT_SIZE_BYTES), 1);
        assert_eq!(
            usable_byte_slots(u64::MAX, 100, MEMORY_BYTE_SLOT_SIZE_BYTES),
            0
        );
    }

    #[test]
    fn memory_config_rejects_what_flume_would_silently_change() {
        assert!(MemoryChannelConfig::default().validate().is_ok());
        let mut config = MemoryChannelConfig {
            transaction_capacity: 101,
            ..MemoryChannelConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "transactionCapacity: expected at most capacity (100), got 101"
        );
        config.transaction_capacity = 100;
        config.byte_capacity_bytes = Some(124);
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "byteCapacity: expected enough bytes for one 100-byte slot after \
             byteCapacityBufferPercentage (20%), got 124"
        );
        config.byte_capacity_bytes = Some(125);
        assert!(config.validate().is_ok());
        config.byte_capacity_buffer_percentage = 100;
        assert!(config.validate().is_err());
    }

    #[test]
    fn encryption_needs_its_active_key_listed_and_key_ids_that_fit_a_segment_header() {
        let mut config = FileChannelConfig::with_default_dirs("base", "c1");
        let mut keys = BTreeMap::new();
        keys.insert(
            "k1".to_string(),
            KeySource::KeyFile(PathBuf::from("k1.key")),
        );
        config.encryption = Some(EncryptionConfig {
            active_key_id: "k2".to_string(),
            keys: keys.clone(),
        });
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "encryption.activeKey: expected a key id listed in encryption.keyProvider.keys \
             (k1), got \"k2\""
        );
        let long_id = "k".repeat(MAX_KEY_ID_BYTES + 1);
        keys.insert(
            long_id.clone(),
            KeySource::KeyFile(PathBuf::from("long.key")),
        );
        config.encryption = Some(EncryptionConfig {
            active_key_id: "k1".to_string(),
            keys,
        });
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains(&long_id), "{message}");
        config.encryption = Some(EncryptionConfig {
            active_key_id: "k1".to_string(),
            keys: BTreeMap::from([(
                "k1".to_string(),
                KeySource::PasswordFile(PathBuf::from("k1.password")),
            )]),
        });
        assert!(config.validate().is_ok());
    }

    #[test]
    fn minimum_required_space_is_floored_at_one_mebibyte() {
        let mut config = FileChannelConfig::with_default_dirs("base", "c1");
        config.minimum_required_space_bytes = 10;
        assert_eq!(config.effective_minimum_required_space_bytes(), 1_048_576);
    }
}
