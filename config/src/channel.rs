//! Channel keys: from `AGENT.channels.NAME.*` to the engine's typed channel settings.
//!
//! Every Flume channel key is read under Flume's name, into
//! [`millrace_engine::config::ChannelConfig`], which starts from Flume's real defaults.
//! Each channel type reads its keys with a [`ComponentSettings`] next to the draft that
//! holds them (`read_memory_keys`, `read_file_keys`, `read_spillable_keys`); a spillable
//! channel also reads every file key for its overflow. A key no reader reads is an
//! error, as is a value its reader refuses, and [`channel_key_names`] is what the readers
//! read.
//!
//! Where Flume bends a value, Millrace either refuses it or says so:
//!
//! - Flume replaces a zero, negative or unparsable number by the default with a log line.
//!   Millrace refuses it.
//! - Flume clamps `maxFileSize` to its ceiling and raises `minimumRequiredSpace` and
//!   `checkpointInterval` to their floors. Millrace accepts such values with a warning
//!   and applies the same limits (the engine's `effective_*` helpers; `maxFileSize` is
//!   clamped here because the engine refuses values above the ceiling).
//! - Keys Flume reads but Millrace does not act on (`compressBackupCheckpoint`,
//!   `use-log-replay-v1`, `use-fast-replay`) are accepted with a warning.
//! - `encryption.*` is read into the engine's [`EncryptionConfig`]. Flume's Java
//!   keystore (`keyProvider = JCEKSFILE`, `keyStoreFile`, `keyStorePasswordFile`) is
//!   refused with an explanation of what to use instead; Flume's `AESCTRNOPADDING`
//!   cipher is mapped to Millrace's authenticated cipher with a warning.
//!
//! After the keys, rules spanning several keys are checked here with line numbers
//! (`transactionCapacity` within capacity, dual checkpoints, distinct directories, byte
//! capacity large enough for one slot), then the engine's own `validate()` runs as the
//! final authority. Directories shared between channels are checked by the agent, which
//! sees all channels.

use std::path::{Component as PathComponent, Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use millrace_engine::config::{
    key_id_problem, usable_byte_slots, ChannelConfig, Compression,
    ConfigError as EngineConfigError, EncryptionConfig, FileChannelConfig, KafkaChannelConfig,
    KeySource, MemoryChannelConfig, SpillableChannelConfig, DEFAULT_KAFKA_CHANNEL_GROUP_ID,
    DEFAULT_KAFKA_CHANNEL_TOPIC, DEFAULT_KAFKA_POLL_TIMEOUT, DEFAULT_KAFKA_TRANSACTION_CAPACITY,
    DEFAULT_MAX_FILE_SIZE_BYTES, MEMORY_BYTE_SLOT_SIZE_BYTES, MIN_MAX_FILE_SIZE_BYTES,
};

use crate::component_settings::{ComponentSettings, KeyListing};
use crate::error::Diagnostics;
use crate::setting::{Component, RawSetting};
use crate::unprovided::{instead_of, ComponentRole};
use crate::values::{self, Expected};

const PERCENT: u64 = 100;

/// The channel types Millrace implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// `file`: durable, on disk.
    File,
    /// `memory`: lost on crash.
    Memory,
    /// `spillablememory`: memory first, then a file overflow.
    Spillable,
    /// `kafka`: a Kafka topic, shared by every channeld (and Flume agent) in its group.
    Kafka,
}

impl ChannelKind {
    /// Every kind, in documentation order.
    pub const ALL: [ChannelKind; 4] = [
        ChannelKind::Memory,
        ChannelKind::File,
        ChannelKind::Spillable,
        ChannelKind::Kafka,
    ];

    /// The kind of channel `config` configures.
    pub fn of(config: &ChannelConfig) -> ChannelKind {
        match config {
            ChannelConfig::File(_) => ChannelKind::File,
            ChannelConfig::Memory(_) => ChannelKind::Memory,
            ChannelConfig::Spillable(_) => ChannelKind::Spillable,
            ChannelConfig::Kafka(_) => ChannelKind::Kafka,
        }
    }

    /// Flume's alias for the type (`type = file`).
    pub fn alias(self) -> &'static str {
        match self {
            ChannelKind::File => "file",
            ChannelKind::Memory => "memory",
            ChannelKind::Spillable => "spillablememory",
            ChannelKind::Kafka => "kafka",
        }
    }

    /// Flume's Java class for the type, also accepted as `type`.
    pub fn class_name(self) -> &'static str {
        match self {
            ChannelKind::File => "org.apache.flume.channel.file.FileChannel",
            ChannelKind::Memory => "org.apache.flume.channel.MemoryChannel",
            ChannelKind::Spillable => "org.apache.flume.channel.SpillableMemoryChannel",
            ChannelKind::Kafka => "org.apache.flume.channel.kafka.KafkaChannel",
        }
    }

    /// Reads a `type` value. Flume compares both aliases and class names ignoring case
    /// (`FlumeConfiguration.getKnownChannel`), and so does Millrace.
    pub fn from_type_name(type_name: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|kind| {
            type_name.eq_ignore_ascii_case(kind.alias())
                || type_name.eq_ignore_ascii_case(kind.class_name())
        })
    }

    fn label(self) -> &'static str {
        match self {
            ChannelKind::File => "a file channel key",
            ChannelKind::Memory => "a memory channel key",
            ChannelKind::Spillable => "a spillable memory channel key",
            ChannelKind::Kafka => "a Kafka channel key",
        }
    }
}

const CHANNEL_TYPE_EXPECTED: &str =
    "a channel type: memory, file, spillablememory or kafka (or Flume's class name for one of \
     them)";

/// A file channel (or spillable overflow) being read. Directories stay `None` until the
/// end so that unset ones can default to `<base>/<channel>/…`.
struct FileDraft {
    config: FileChannelConfig,
    checkpoint_dir: Option<PathBuf>,
    data_dirs: Option<Vec<PathBuf>>,
}

impl FileDraft {
    fn new() -> Self {
        FileDraft {
            config: FileChannelConfig::new(Vec::new(), PathBuf::new()),
            checkpoint_dir: None,
            data_dirs: None,
        }
    }
}

struct SpillableDraft {
    config: SpillableChannelConfig,
    overflow: FileDraft,
}

/// A channel's keys as read, before the rules that span them are checked (the drafts
/// holding file settings are boxed: they are several times a memory channel's size).
enum ChannelDraft {
    Memory(MemoryChannelConfig),
    /// The file channel and its `encryption.*` keys.
    File(Box<FileDraft>, Vec<RawSetting>),
    /// The spillable channel and its overflow's `encryption.*` keys.
    Spillable(Box<SpillableDraft>, Vec<RawSetting>),
    /// The Kafka channel.
    Kafka(Box<KafkaChannelConfig>),
}

fn note_unexpanded_home(keys: &mut ComponentSettings<'_>, key: &str, path: &Path) {
    if path.starts_with("~") {
        keys.warn(
            key,
            format!(
                "\"~\" is not expanded (Flume does not expand it either): this names a \
                 directory called \"~\" under the working directory, {:?}",
                path.display().to_string()
            ),
        );
    }
}

/// Reads a boolean Flume acts on and Millrace does not, warning when it is switched on.
fn read_not_acted_on_when_true(keys: &mut ComponentSettings<'_>, key: &str, what_happens: &str) {
    if keys.parsed(key, values::boolean) == Some(true) {
        keys.warn(key, format!("accepted but not acted on: {what_happens}"));
    }
}

/// `key` read by `reader` into `target`, when set and accepted.
fn read_into<T>(
    keys: &mut ComponentSettings<'_>,
    key: &str,
    target: &mut T,
    reader: impl FnOnce(&str) -> Result<T, Expected>,
) {
    if let Some(value) = keys.parsed(key, reader) {
        *target = value;
    }
}

/// Whose file keys [`read_file_keys`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKeysOf {
    /// A file channel's.
    FileChannel,
    /// A spillable channel's overflow: `capacity` and `keep-alive` are the spillable
    /// channel's own keys ([`read_spillable_keys`]).
    SpillableOverflow,
}

/// The keys of a file channel, in documentation order; a spillable channel reads them
/// for its overflow.
fn read_file_keys(keys: &mut ComponentSettings<'_>, draft: &mut FileDraft, of: FileKeysOf) {
    if let Some(directory) = keys.parsed("checkpointDir", values::directory) {
        note_unexpanded_home(keys, "checkpointDir", &directory);
        draft.checkpoint_dir = Some(directory);
    }
    if let Some(directories) = keys.parsed("dataDirs", values::directory_list) {
        for directory in &directories {
            note_unexpanded_home(keys, "dataDirs", directory);
        }
        draft.data_dirs = Some(directories);
    }
    let config = &mut draft.config;
    read_into(
        keys,
        "useDualCheckpoints",
        &mut config.use_dual_checkpoints,
        values::boolean,
    );
    if let Some(directory) = keys.parsed("backupCheckpointDir", values::directory) {
        note_unexpanded_home(keys, "backupCheckpointDir", &directory);
        config.backup_checkpoint_dir = Some(directory);
    }
    read_not_acted_on_when_true(
        keys,
        "compressBackupCheckpoint",
        "Millrace writes the backup checkpoint uncompressed",
    );
    if of == FileKeysOf::FileChannel {
        read_into(
            keys,
            "capacity",
            &mut config.capacity,
            values::positive_integer,
        );
    }
    read_into(
        keys,
        "transactionCapacity",
        &mut config.transaction_capacity,
        values::positive_integer,
    );
    if let Some(interval) = keys.parsed("checkpointInterval", values::positive_milliseconds) {
        config.checkpoint_interval = interval;
        let effective = config.effective_checkpoint_interval();
        if effective != interval {
            keys.warn(
                "checkpointInterval",
                format!(
                    "raised to {} ms, the floor Flume applies as well",
                    effective.as_millis()
                ),
            );
        }
    }
    let max_file_size = keys.parsed("maxFileSize", |value| {
        let requested = values::positive_integer(value)?;
        if requested < MIN_MAX_FILE_SIZE_BYTES {
            return Err(Expected::new(format!(
                "at least {MIN_MAX_FILE_SIZE_BYTES} bytes (a segment must hold its header and \
                 a few records)"
            )));
        }
        Ok(requested)
    });
    if let Some(requested) = max_file_size {
        if requested > DEFAULT_MAX_FILE_SIZE_BYTES {
            keys.warn(
                "maxFileSize",
                format!(
                    "lowered to {DEFAULT_MAX_FILE_SIZE_BYTES} bytes, the ceiling Flume applies \
                     as well"
                ),
            );
        }
        config.max_file_size_bytes = requested.min(DEFAULT_MAX_FILE_SIZE_BYTES);
    }
    if let Some(space) = keys.parsed("minimumRequiredSpace", values::non_negative_integer) {
        config.minimum_required_space_bytes = space;
        let effective = config.effective_minimum_required_space_bytes();
        if effective != space {
            keys.warn(
                "minimumRequiredSpace",
                format!("raised to {effective} bytes, the floor Flume applies as well"),
            );
        }
    }
    if of == FileKeysOf::FileChannel {
        read_into(
            keys,
            "keep-alive",
            &mut config.keep_alive,
            values::non_negative_seconds,
        );
    }
    read_not_acted_on_when_true(
        keys,
        "use-log-replay-v1",
        "Millrace has a single replay procedure; Flume's v1 log replay does not apply",
    );
    read_not_acted_on_when_true(
        keys,
        "use-fast-replay",
        "Millrace has a single replay procedure; Flume's fast replay does not apply",
    );
    read_into(
        keys,
        "fsyncPerTransaction",
        &mut config.fsync_per_transaction,
        values::boolean,
    );
    read_into(
        keys,
        "fsyncInterval",
        &mut config.fsync_interval,
        values::positive_seconds,
    );
    read_into(
        keys,
        "checkpointOnClose",
        &mut config.checkpoint_on_close,
        values::boolean,
    );
    read_into(
        keys,
        "retentionTime",
        &mut config.retention_time,
        values::non_negative_milliseconds,
    );
    read_into(
        keys,
        "retentionBytes",
        &mut config.retention_bytes,
        values::non_negative_integer,
    );
    read_into(keys, "fileMode", &mut config.file_mode, values::file_mode);
    read_into(keys, "compression", &mut config.compression, |value| {
        [Compression::None, Compression::Lz4]
            .into_iter()
            .find(|compression| value.eq_ignore_ascii_case(compression.name()))
            .ok_or_else(|| Expected::new("none or lz4"))
    });
}

/// `byteCapacity` and `byteCapacityBufferPercentage`, which the memory and the spillable
/// channel share.
fn read_byte_capacity_keys(
    keys: &mut ComponentSettings<'_>,
    byte_capacity_bytes: &mut Option<u64>,
    buffer_percentage: &mut u8,
) {
    if let Some(bytes) = keys.parsed("byteCapacity", values::positive_integer) {
        *byte_capacity_bytes = Some(bytes);
    }
    read_into(
        keys,
        "byteCapacityBufferPercentage",
        buffer_percentage,
        values::percentage_below_full,
    );
}

/// The keys of a memory channel.
fn read_memory_keys(keys: &mut ComponentSettings<'_>) -> MemoryChannelConfig {
    let mut config = MemoryChannelConfig::default();
    read_into(
        keys,
        "capacity",
        &mut config.capacity,
        values::positive_integer,
    );
    read_into(
        keys,
        "transactionCapacity",
        &mut config.transaction_capacity,
        values::positive_integer,
    );
    read_into(
        keys,
        "keep-alive",
        &mut config.keep_alive,
        values::non_negative_seconds,
    );
    read_byte_capacity_keys(
        keys,
        &mut config.byte_capacity_bytes,
        &mut config.byte_capacity_buffer_percentage,
    );
    config
}

/// The keys of a spillable memory channel: its own, then the file keys of its overflow.
fn read_spillable_keys(keys: &mut ComponentSettings<'_>) -> SpillableDraft {
    let mut config =
        SpillableChannelConfig::new(FileChannelConfig::new(Vec::new(), PathBuf::new()));
    read_into(
        keys,
        "memoryCapacity",
        &mut config.memory_capacity,
        values::non_negative_integer,
    );
    read_into(
        keys,
        "overflowCapacity",
        &mut config.overflow_capacity,
        values::non_negative_integer,
    );
    read_into(
        keys,
        "overflowTimeout",
        &mut config.overflow_timeout,
        values::non_negative_seconds,
    );
    read_into(
        keys,
        "overflowDeactivationThreshold",
        &mut config.overflow_deactivation_threshold_percent,
        values::percentage,
    );
    read_byte_capacity_keys(
        keys,
        &mut config.byte_capacity_bytes,
        &mut config.byte_capacity_buffer_percentage,
    );
    read_into(
        keys,
        "avgEventSize",
        &mut config.avg_event_size_bytes,
        values::positive_integer,
    );
    // Flume overwrites these two before configuring the overflow file channel.
    if keys.parsed("capacity", values::positive_integer).is_some() {
        keys.warn(
            "capacity",
            "has no effect on a spillable channel (Flume overrides it too): the overflow \
             holds overflowCapacity events and memory holds memoryCapacity",
        );
    }
    if keys
        .parsed("keep-alive", values::non_negative_seconds)
        .is_some()
    {
        keys.warn(
            "keep-alive",
            "has no effect on a spillable channel (Flume forces the overflow's keep-alive \
             to 0): overflowTimeout governs how long a commit waits",
        );
    }
    let mut overflow = FileDraft::new();
    read_file_keys(keys, &mut overflow, FileKeysOf::SpillableOverflow);
    SpillableDraft { config, overflow }
}

/// Kafka channel keys Flume read up to 1.11.0 and then removed.
const REMOVED_KAFKA_CHANNEL_KEYS: &[&str] = &[
    "migrateZookeeperOffsets",
    "readSmallestOffset",
    "brokerList",
    "topic",
    "groupId",
    "zookeeperConnect",
];
/// Producer properties the Kafka channel sets itself, whatever `kafka.producer.*` says.
const FORCED_KAFKA_PRODUCER_PROPERTIES: &[&str] = &["bootstrap.servers"];
/// Consumer properties the Kafka channel sets itself: offsets are committed only at take
/// commit, so automatic commits and offset stores would lose events.
const FORCED_KAFKA_CONSUMER_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
];
/// Java client properties librdkafka has no use for: the channel reads and writes keys
/// and values as bytes, as Flume's default (de)serializers do.
const JAVA_ONLY_KAFKA_PROPERTIES: &[&str] = &[
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "transactional.id",
];

/// Reads `prefix<property>` keys into `properties` (a later value of one property
/// replaces the earlier), warning about the `forced` ones and Java-only ones. librdkafka
/// checks the names and values when the channel opens (this crate does not link it).
fn read_kafka_pass_through(
    keys: &mut ComponentSettings<'_>,
    prefix: &str,
    forced: &[&str],
    properties: &mut Vec<(String, String)>,
) {
    for (property, value, _line) in keys.with_prefix(prefix) {
        let key = format!("{prefix}{property}");
        if forced.contains(&property) {
            if property != "group.id" {
                keys.warn(
                    &key,
                    format!("ignored: the Kafka channel sets {property} itself (as Flume does)"),
                );
            }
            continue;
        }
        if JAVA_ONLY_KAFKA_PROPERTIES.contains(&property) {
            keys.warn(
                &key,
                "accepted but not used: the Kafka channel reads and writes keys and values as \
                 bytes and puts through librdkafka's idempotent producer, not Kafka \
                 transactions",
            );
            continue;
        }
        set_kafka_property(properties, property, value);
    }
}

fn set_kafka_property(properties: &mut Vec<(String, String)>, name: &str, value: &str) {
    match properties.iter_mut().find(|(known, _)| known == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => properties.push((name.to_string(), value.to_string())),
    }
}

/// The keys of a Kafka channel, with Flume's names and defaults (`docs/kafka.md`).
fn read_kafka_keys(keys: &mut ComponentSettings<'_>) -> KafkaChannelConfig {
    let bootstrap_servers = keys
        .required_text(
            "kafka.bootstrap.servers",
            "the Kafka brokers to start from, host:port[,host:port…]",
        )
        .unwrap_or_default();
    let topic = keys.text_or("kafka.topic", DEFAULT_KAFKA_CHANNEL_TOPIC);
    let group_id = keys.text_or("kafka.consumer.group.id", DEFAULT_KAFKA_CHANNEL_GROUP_ID);
    let parse_as_flume_event = keys.boolean_or("parseAsFlumeEvent", true);
    let code_spelling = keys.parsed("kafka.pollTimeout", values::positive_milliseconds);
    let guide_spelling = keys.parsed("pollTimeout", values::positive_milliseconds);
    if guide_spelling.is_some() {
        keys.warn(
            "pollTimeout",
            "the Flume User Guide's spelling, which Flume itself ignores; Millrace reads it \
             as kafka.pollTimeout",
        );
    }
    let poll_timeout = code_spelling
        .or(guide_spelling)
        .unwrap_or(DEFAULT_KAFKA_POLL_TIMEOUT);
    let default_partition_id = keys.parsed("defaultPartitionId", values::partition_number);
    let partition_id_header = keys.text("partitionIdHeader");
    let transaction_capacity = keys.parsed_or(
        "transactionCapacity",
        DEFAULT_KAFKA_TRANSACTION_CAPACITY,
        values::positive_integer,
    );
    let capacity = keys.parsed_or("capacity", 0, values::positive_integer);
    if capacity > 0 {
        keys.warn(
            "capacity",
            "reported as ChannelCapacity only: the Kafka topic holds the events and its \
             retention bounds them (Flume's Kafka channel has no capacity either)",
        );
    }
    for key in REMOVED_KAFKA_CHANNEL_KEYS {
        keys.accept_with_warning(
            key,
            "removed after Flume 1.11 and not used: offsets are read from Kafka only, and \
             the kafka.* keys name the brokers, topic and group",
        );
    }
    let mut producer_properties = Vec::new();
    set_kafka_property(&mut producer_properties, "acks", "all");
    read_kafka_pass_through(
        keys,
        "kafka.producer.",
        FORCED_KAFKA_PRODUCER_PROPERTIES,
        &mut producer_properties,
    );
    let acks_all = producer_properties
        .iter()
        .any(|(name, value)| name == "acks" && matches!(value.as_str(), "all" | "-1"));
    if !producer_properties
        .iter()
        .any(|(name, _)| name == "enable.idempotence")
    {
        set_kafka_property(
            &mut producer_properties,
            "enable.idempotence",
            if acks_all { "true" } else { "false" },
        );
    }
    set_kafka_property(
        &mut producer_properties,
        "bootstrap.servers",
        &bootstrap_servers,
    );
    let mut consumer_properties = Vec::new();
    set_kafka_property(&mut consumer_properties, "auto.offset.reset", "earliest");
    read_kafka_pass_through(
        keys,
        "kafka.consumer.",
        FORCED_KAFKA_CONSUMER_PROPERTIES,
        &mut consumer_properties,
    );
    set_kafka_property(
        &mut consumer_properties,
        "bootstrap.servers",
        &bootstrap_servers,
    );
    set_kafka_property(&mut consumer_properties, "group.id", &group_id);
    set_kafka_property(&mut consumer_properties, "enable.auto.commit", "false");
    set_kafka_property(
        &mut consumer_properties,
        "enable.auto.offset.store",
        "false",
    );
    KafkaChannelConfig {
        bootstrap_servers,
        topic,
        group_id,
        parse_as_flume_event,
        poll_timeout,
        default_partition_id,
        partition_id_header,
        transaction_capacity,
        capacity,
        producer_properties,
        consumer_properties,
    }
}

/// The `encryption.*` keys of a file or spillable channel, in file order, for
/// [`read_encryption`].
fn read_encryption_keys(keys: &mut ComponentSettings<'_>) -> Vec<RawSetting> {
    let mut listed = ENCRYPTION_KEYS.to_vec();
    listed.extend([PASSWORD_FILE_PATTERN, KEY_FILE_PATTERN]);
    keys.matching(&listed, is_encryption_key)
}

/// Reads the keys of a channel of `kind` (its `type` already read).
fn read_channel_keys(keys: &mut ComponentSettings<'_>, kind: ChannelKind) -> ChannelDraft {
    match kind {
        ChannelKind::Memory => ChannelDraft::Memory(read_memory_keys(keys)),
        ChannelKind::File => {
            let mut draft = Box::new(FileDraft::new());
            read_file_keys(keys, &mut draft, FileKeysOf::FileChannel);
            ChannelDraft::File(draft, read_encryption_keys(keys))
        }
        ChannelKind::Spillable => {
            let draft = Box::new(read_spillable_keys(keys));
            ChannelDraft::Spillable(draft, read_encryption_keys(keys))
        }
        ChannelKind::Kafka => ChannelDraft::Kafka(Box::new(read_kafka_keys(keys))),
    }
}

/// The encryption keys of Flume's file channel (`EncryptionConfiguration`), read into
/// the engine's [`EncryptionConfig`] by [`read_encryption`].
const ENCRYPTION_KEYS: [&str; 6] = [
    ACTIVE_KEY,
    CIPHER_PROVIDER,
    KEY_PROVIDER,
    KEY_STORE_FILE,
    KEY_STORE_PASSWORD_FILE,
    KEY_IDS,
];
const ACTIVE_KEY: &str = "encryption.activeKey";
const CIPHER_PROVIDER: &str = "encryption.cipherProvider";
const KEY_PROVIDER: &str = "encryption.keyProvider";
const KEY_STORE_FILE: &str = "encryption.keyProvider.keyStoreFile";
const KEY_STORE_PASSWORD_FILE: &str = "encryption.keyProvider.keyStorePasswordFile";
const KEY_IDS: &str = "encryption.keyProvider.keys";
const KEY_SOURCE_PREFIX: &str = "encryption.keyProvider.keys.";
/// Flume's per-key password file; Millrace derives the key from the password.
const PASSWORD_FILE_SUFFIX: &str = ".passwordFile";
/// Millrace extension: a file holding the key itself.
const KEY_FILE_SUFFIX: &str = ".keyFile";
/// How the per-key source keys are written in documentation and messages.
const PASSWORD_FILE_PATTERN: &str = "encryption.keyProvider.keys.<id>.passwordFile";
const KEY_FILE_PATTERN: &str = "encryption.keyProvider.keys.<id>.keyFile";
/// Flume's Java keystore provider, which Millrace refuses with an explanation.
const JCEKS_KEY_PROVIDER: &str = "JCEKSFILE";
/// Millrace's key provider: one file per key.
const KEY_FILE_PROVIDER: &str = "KEYFILE";
/// Millrace's cipher.
const AES_GCM_CIPHER_PROVIDER: &str = "AES256GCM";
/// Flume's cipher, mapped to Millrace's with a warning.
const FLUME_CIPHER_PROVIDER: &str = "AESCTRNOPADDING";
/// What to use instead of a Java keystore, for messages.
const INSTEAD_OF_KEYSTORE: &str = "Millrace does not read Java keystores; give each key id \
     its own file with encryption.keyProvider.keys.<id>.keyFile (32 random bytes or 64 hex \
     digits) or encryption.keyProvider.keys.<id>.passwordFile (a password the key is \
     derived from)";

/// Which kind of source a per-key key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySourceKind {
    PasswordFile,
    KeyFile,
}

/// The key id and source kind of `encryption.keyProvider.keys.<id>.passwordFile` or
/// `….keyFile`, if that is the key.
fn encryption_key_source(sub_key: &str) -> Option<(&str, KeySourceKind)> {
    let rest = sub_key.strip_prefix(KEY_SOURCE_PREFIX)?;
    let (key_id, kind) = if let Some(key_id) = rest.strip_suffix(PASSWORD_FILE_SUFFIX) {
        (key_id, KeySourceKind::PasswordFile)
    } else {
        (rest.strip_suffix(KEY_FILE_SUFFIX)?, KeySourceKind::KeyFile)
    };
    (!key_id.is_empty() && !key_id.contains('.')).then_some((key_id, kind))
}

fn is_encryption_key(sub_key: &str) -> bool {
    ENCRYPTION_KEYS.contains(&sub_key) || encryption_key_source(sub_key).is_some()
}

/// Every key a channel type accepts, `type` first, as written in documentation: what
/// its reader reads.
pub fn channel_key_names(kind: ChannelKind) -> Vec<String> {
    let mut keys = ComponentSettings::new("", "", 0, &[]);
    keys.text("type");
    read_channel_keys(&mut keys, kind);
    keys.listed_keys().to_vec()
}

/// A channel read from the file: its settings and the directories it uses (for the
/// agent's check that no two channels share one).
#[derive(Debug)]
pub(crate) struct ParsedChannel {
    pub(crate) config: ChannelConfig,
    pub(crate) directories: Vec<DirectoryUse>,
}

/// One directory a channel uses, and the key that set it (or would have).
#[derive(Debug, Clone)]
pub(crate) struct DirectoryUse {
    pub(crate) key: String,
    pub(crate) path: PathBuf,
    pub(crate) line: usize,
    /// False when the directory is Millrace's default rather than written in the file.
    pub(crate) explicit: bool,
}

/// Compares directories as written, ignoring `.` components and trailing slashes. It
/// does not resolve symlinks or `..`: two spellings of one directory are caught by the
/// directory lock at start-up instead.
pub(crate) fn normalized_directory(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| *component != PathComponent::CurDir)
        .collect()
}

/// Reads one declared channel, recording every problem. Returns `None` when it cannot
/// be read as written (no or an unknown `type`, a refused value, rules between its keys
/// broken).
///
/// An unknown key does not count: it has no effect (as in Flume), so the channel is
/// what the other keys say, and the checks that span keys and components still judge
/// it in the same run. A refused value does: its default would stand in for what the
/// user wrote, and later checks would judge a value nobody meant.
pub(crate) fn parse_channel(
    channel: &Component,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<ParsedChannel> {
    let file = diagnostics.file().to_string();
    let mut keys = channel.reader(&file);
    let kind = keys.required("type", CHANNEL_TYPE_EXPECTED, |type_name| {
        ChannelKind::from_type_name(type_name).ok_or_else(|| {
            Expected::new(format!(
                "{CHANNEL_TYPE_EXPECTED}; {}",
                instead_of(ComponentRole::Channel, type_name)
            ))
        })
    });
    let Some(kind) = kind else {
        diagnostics.absorb(keys.hand_on().0);
        return None;
    };
    keys.describe_unknown_keys(kind.label(), KeyListing::AsRead);
    let draft = read_channel_keys(&mut keys, kind);
    let all_accepted = !keys.refused_any_value();
    diagnostics.absorb(keys.finish());
    if !all_accepted {
        return None;
    }
    match draft {
        ChannelDraft::Memory(config) => check_memory(channel, config, diagnostics),
        ChannelDraft::File(draft, encryption) => {
            check_file(channel, *draft, &encryption, base_dir, diagnostics)
        }
        ChannelDraft::Spillable(draft, encryption) => {
            check_spillable(channel, *draft, &encryption, base_dir, diagnostics)
        }
        ChannelDraft::Kafka(config) => check_kafka(channel, *config, diagnostics),
    }
}

fn check_memory(
    channel: &Component,
    config: MemoryChannelConfig,
    diagnostics: &mut Diagnostics,
) -> Option<ParsedChannel> {
    let errors_before = diagnostics.error_count();
    check_transaction_capacity(
        channel,
        "capacity",
        config.capacity,
        config.transaction_capacity,
        diagnostics,
    );
    check_one_byte_slot(
        channel,
        config.byte_capacity_bytes,
        config.byte_capacity_buffer_percentage,
        MEMORY_BYTE_SLOT_SIZE_BYTES,
        "the 100-byte slot Flume counts bodies in",
        diagnostics,
    );
    (diagnostics.error_count() == errors_before).then_some(ParsedChannel {
        config: ChannelConfig::Memory(config),
        directories: Vec::new(),
    })
}

fn check_kafka(
    channel: &Component,
    config: KafkaChannelConfig,
    diagnostics: &mut Diagnostics,
) -> Option<ParsedChannel> {
    // Flume reads neither capacity nor transactionCapacity for this channel, so no rule
    // spans them; only the required brokers can be missing.
    let _ = (channel, diagnostics);
    (!config.bootstrap_servers.is_empty()).then_some(ParsedChannel {
        config: ChannelConfig::Kafka(config),
        directories: Vec::new(),
    })
}

fn check_file(
    channel: &Component,
    mut draft: FileDraft,
    encryption: &[RawSetting],
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<ParsedChannel> {
    let errors_before = diagnostics.error_count();
    draft.config.encryption = read_encryption(channel, encryption, diagnostics);
    let finished = finish_file(draft, channel, base_dir, FileRole::Channel, diagnostics);
    let (config, directories) = finished?;
    (diagnostics.error_count() == errors_before).then_some(ParsedChannel {
        config: ChannelConfig::File(config),
        directories,
    })
}

fn check_spillable(
    channel: &Component,
    draft: SpillableDraft,
    encryption: &[RawSetting],
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<ParsedChannel> {
    let errors_before = diagnostics.error_count();
    let SpillableDraft {
        mut config,
        mut overflow,
    } = draft;
    if config.memory_capacity == 0 && config.overflow_capacity == 0 {
        // Flume quietly restores the default overflowCapacity here.
        let key = if channel.line_of("overflowCapacity").is_some() {
            "overflowCapacity"
        } else {
            "memoryCapacity"
        };
        diagnostics.conflict(
            channel.line_of_or_declaration(key),
            &channel.full_key(key),
            "expected memoryCapacity or overflowCapacity to be positive, got 0 for both \
             (the channel could hold nothing)"
                .to_string(),
        );
    }
    check_one_byte_slot(
        channel,
        config.byte_capacity_bytes,
        config.byte_capacity_buffer_percentage,
        config.avg_event_size_bytes,
        "one avgEventSize slot",
        diagnostics,
    );
    overflow.config.encryption = read_encryption(channel, encryption, diagnostics);
    // As in Flume: the overflow's capacity is overflowCapacity and it never waits.
    overflow.config.capacity = config.overflow_capacity;
    overflow.config.keep_alive = Duration::ZERO;
    let role = if config.overflow_capacity > 0 {
        FileRole::SpillableOverflow
    } else {
        FileRole::DisabledOverflow
    };
    let (overflow_config, directories) =
        finish_file(overflow, channel, base_dir, role, diagnostics)?;
    config.overflow = overflow_config;
    (diagnostics.error_count() == errors_before).then_some(ParsedChannel {
        config: ChannelConfig::Spillable(config),
        directories,
    })
}

/// What a set of file keys configures; decides which capacity key applies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileRole {
    /// A file channel: `capacity` bounds `transactionCapacity`.
    Channel,
    /// A spillable channel's overflow: `overflowCapacity` bounds `transactionCapacity`.
    SpillableOverflow,
    /// `overflowCapacity = 0`: nothing spills, so capacity rules do not apply.
    DisabledOverflow,
}

/// Settles directories, checks the rules that span file keys, and runs the engine's
/// `validate()`. Returns `None` when a rule is broken.
fn finish_file(
    draft: FileDraft,
    channel: &Component,
    base_dir: &Path,
    role: FileRole,
    diagnostics: &mut Diagnostics,
) -> Option<(FileChannelConfig, Vec<DirectoryUse>)> {
    let errors_before = diagnostics.error_count();
    let defaults = FileChannelConfig::with_default_dirs(base_dir, &channel.name);
    let mut config = draft.config;
    config.checkpoint_dir = draft.checkpoint_dir.unwrap_or(defaults.checkpoint_dir);
    config.data_dirs = draft.data_dirs.unwrap_or(defaults.data_dirs);

    match role {
        FileRole::Channel => check_transaction_capacity(
            channel,
            "capacity",
            config.capacity,
            config.transaction_capacity,
            diagnostics,
        ),
        FileRole::SpillableOverflow => check_transaction_capacity(
            channel,
            "overflowCapacity",
            config.capacity,
            config.transaction_capacity,
            diagnostics,
        ),
        FileRole::DisabledOverflow => {}
    }
    check_dual_checkpoints(channel, &mut config, diagnostics);
    if let Some(interval_line) = channel.line_of("fsyncInterval") {
        if config.fsync_per_transaction {
            diagnostics.warn(
                interval_line,
                &channel.full_key("fsyncInterval"),
                "has no effect while fsyncPerTransaction = true (every commit is synced)",
            );
        }
    }
    let directories = directory_uses(channel, &config);
    check_directories_are_distinct(&directories, diagnostics);

    if diagnostics.error_count() == errors_before && role != FileRole::DisabledOverflow {
        if let Err(error) = config.validate() {
            report_engine_rejection(channel, role, error, diagnostics);
        }
    }
    (diagnostics.error_count() == errors_before).then_some((config, directories))
}

/// `transactionCapacity` must fit within the channel's capacity. The error goes on the
/// line the user wrote: `transactionCapacity` if set, else the capacity key.
fn check_transaction_capacity(
    channel: &Component,
    capacity_key: &str,
    capacity: u64,
    transaction_capacity: u64,
    diagnostics: &mut Diagnostics,
) {
    if transaction_capacity <= capacity {
        return;
    }
    if let Some(line) = channel.line_of("transactionCapacity") {
        diagnostics.conflict(
            line,
            &channel.full_key("transactionCapacity"),
            format!("expected at most {capacity_key} ({capacity}), got {transaction_capacity}"),
        );
    } else {
        diagnostics.conflict(
            channel.line_of_or_declaration(capacity_key),
            &channel.full_key(capacity_key),
            format!(
                "expected at least transactionCapacity ({transaction_capacity}, its default), \
                 got {capacity}"
            ),
        );
    }
}

/// `byteCapacity` must leave at least one slot after the buffer percentage; Flume would
/// otherwise treat the limit as unlimited.
fn check_one_byte_slot(
    channel: &Component,
    byte_capacity_bytes: Option<u64>,
    buffer_percentage: u8,
    slot_size_bytes: u64,
    slot_description: &str,
    diagnostics: &mut Diagnostics,
) {
    let Some(byte_capacity_bytes) = byte_capacity_bytes else {
        return;
    };
    if usable_byte_slots(byte_capacity_bytes, buffer_percentage, slot_size_bytes) > 0 {
        return;
    }
    let usable_percent = u128::from(PERCENT - u64::from(buffer_percentage));
    let minimum_bytes =
        (u128::from(slot_size_bytes) * u128::from(PERCENT)).div_ceil(usable_percent);
    diagnostics.conflict(
        channel.line_of_or_declaration("byteCapacity"),
        &channel.full_key("byteCapacity"),
        format!(
            "expected at least {minimum_bytes} bytes, enough for {slot_description} after \
             byteCapacityBufferPercentage ({buffer_percentage}%), got {byte_capacity_bytes}"
        ),
    );
}

/// `useDualCheckpoints = true` needs `backupCheckpointDir`; a backup directory without
/// dual checkpoints is ignored (as in Flume), with a warning, and cleared.
fn check_dual_checkpoints(
    channel: &Component,
    config: &mut FileChannelConfig,
    diagnostics: &mut Diagnostics,
) {
    if config.use_dual_checkpoints {
        if config.backup_checkpoint_dir.is_none() {
            diagnostics.missing_key(
                Some(channel.line_of_or_declaration("useDualCheckpoints")),
                &channel.full_key("backupCheckpointDir"),
                "a directory for the backup checkpoint because useDualCheckpoints = true",
            );
        }
    } else if config.backup_checkpoint_dir.take().is_some() {
        diagnostics.warn(
            channel.line_of_or_declaration("backupCheckpointDir"),
            &channel.full_key("backupCheckpointDir"),
            "ignored because useDualCheckpoints is not true",
        );
    }
}

/// The channel's directories in reporting order: checkpoint, data, backup.
fn directory_uses(channel: &Component, config: &FileChannelConfig) -> Vec<DirectoryUse> {
    let use_of = |sub_key: &str, path: &Path| DirectoryUse {
        key: channel.full_key(sub_key),
        path: path.to_path_buf(),
        line: channel.line_of_or_declaration(sub_key),
        explicit: channel.line_of(sub_key).is_some(),
    };
    let mut uses = vec![use_of("checkpointDir", &config.checkpoint_dir)];
    uses.extend(
        config
            .data_dirs
            .iter()
            .map(|data_dir| use_of("dataDirs", data_dir)),
    );
    if let Some(backup) = &config.backup_checkpoint_dir {
        uses.push(use_of("backupCheckpointDir", backup));
    }
    uses
}

/// Within one channel, the checkpoint, backup and every data directory must differ:
/// they hold files with the same names.
fn check_directories_are_distinct(uses: &[DirectoryUse], diagnostics: &mut Diagnostics) {
    for (index, later) in uses.iter().enumerate() {
        let normalized = normalized_directory(&later.path);
        if let Some(earlier) = uses[..index]
            .iter()
            .find(|earlier| normalized_directory(&earlier.path) == normalized)
        {
            diagnostics.bad_value(
                later.line,
                &later.key,
                &format!("a directory not already used as {}", describe_use(earlier)),
                &later.path.display().to_string(),
            );
        }
    }
}

/// "a1.channels.c1.dataDirs (line 4)", or "(default)" for a directory Millrace chose.
pub(crate) fn describe_use(directory: &DirectoryUse) -> String {
    if directory.explicit {
        format!("{} (line {})", directory.key, directory.line)
    } else {
        format!("{} (default)", directory.key)
    }
}

/// Reports a rule the engine's `validate()` enforces that the checks above missed.
fn report_engine_rejection(
    channel: &Component,
    role: FileRole,
    error: EngineConfigError,
    diagnostics: &mut Diagnostics,
) {
    match error {
        EngineConfigError::Invalid { key, expected } => {
            let sub_key = if role == FileRole::SpillableOverflow && key == "capacity" {
                "overflowCapacity"
            } else {
                key
            };
            diagnostics.conflict(
                channel.line_of_or_declaration(sub_key),
                &channel.full_key(sub_key),
                format!("expected {expected}"),
            );
        }
    }
}

/// Reads the `encryption.*` keys into the engine's settings: the active key, the key
/// ids, and each id's key or password file. Returns `None` when no encryption key is
/// set or when a rule is broken (errors recorded).
///
/// Flume's names are kept where they mean the same; where Flume's meaning cannot carry
/// over (Java keystores, AES-CTR) the key is refused or mapped with a message that says
/// what to do instead (see `docs/configuration.md`, "Encryption keys").
fn read_encryption(
    channel: &Component,
    settings: &[RawSetting],
    diagnostics: &mut Diagnostics,
) -> Option<EncryptionConfig> {
    let first = settings.first()?;
    let errors_before = diagnostics.error_count();
    let setting_of = |sub_key: &str| settings.iter().find(|setting| setting.key == sub_key);
    if let Some(provider) = setting_of(KEY_PROVIDER) {
        if provider.value.eq_ignore_ascii_case(JCEKS_KEY_PROVIDER) {
            diagnostics.bad_value(
                provider.line,
                &channel.full_key(KEY_PROVIDER),
                &format!("{KEY_FILE_PROVIDER} ({INSTEAD_OF_KEYSTORE})"),
                &provider.value,
            );
        } else if !provider.value.eq_ignore_ascii_case(KEY_FILE_PROVIDER) {
            diagnostics.bad_value(
                provider.line,
                &channel.full_key(KEY_PROVIDER),
                &format!(
                    "{KEY_FILE_PROVIDER}, the one key provider Millrace has (Flume's key \
                     provider classes do not apply)"
                ),
                &provider.value,
            );
        }
    }
    for keystore_key in [KEY_STORE_FILE, KEY_STORE_PASSWORD_FILE] {
        if let Some(setting) = setting_of(keystore_key) {
            diagnostics.conflict(
                setting.line,
                &channel.full_key(keystore_key),
                format!("expected no Java keystore setting: {INSTEAD_OF_KEYSTORE}"),
            );
        }
    }
    if let Some(cipher) = setting_of(CIPHER_PROVIDER) {
        if cipher.value.eq_ignore_ascii_case(FLUME_CIPHER_PROVIDER) {
            diagnostics.warn(
                cipher.line,
                &channel.full_key(CIPHER_PROVIDER),
                format!(
                    "Millrace encrypts with {AES_GCM_CIPHER_PROVIDER} (authenticated, a fresh \
                     subkey per channel open) instead of Flume's AES-CTR, which does not \
                     authenticate and reuses its keystream within a file; set \
                     {AES_GCM_CIPHER_PROVIDER} to silence this warning"
                ),
            );
        } else if !cipher.value.eq_ignore_ascii_case(AES_GCM_CIPHER_PROVIDER) {
            diagnostics.bad_value(
                cipher.line,
                &channel.full_key(CIPHER_PROVIDER),
                &format!(
                    "{AES_GCM_CIPHER_PROVIDER} (or Flume's {FLUME_CIPHER_PROVIDER}, which is \
                     mapped to it)"
                ),
                &cipher.value,
            );
        }
    }

    let key_ids_setting = setting_of(KEY_IDS);
    let key_ids: Vec<&str> = key_ids_setting
        .map(|setting| values::space_separated(&setting.value))
        .unwrap_or_default();
    match key_ids_setting {
        None => diagnostics.missing_key(
            Some(first.line),
            &channel.full_key(KEY_IDS),
            "the space-separated ids of every key a segment on disk may need, the active \
             one included",
        ),
        Some(setting) => {
            for key_id in &key_ids {
                if let Some(problem) = key_id_problem(key_id) {
                    diagnostics.bad_value(
                        setting.line,
                        &channel.full_key(KEY_IDS),
                        &problem,
                        key_id,
                    );
                }
            }
        }
    }
    let listed = format!(
        "a key id listed in {} ({})",
        channel.full_key(KEY_IDS),
        key_ids.join(" ")
    );
    let active_key_id = match setting_of(ACTIVE_KEY) {
        None => {
            diagnostics.missing_key(
                Some(first.line),
                &channel.full_key(ACTIVE_KEY),
                "the id of the key that encrypts new segments",
            );
            None
        }
        Some(active) => {
            if key_ids_setting.is_some() && !key_ids.contains(&active.value.as_str()) {
                diagnostics.bad_value(
                    active.line,
                    &channel.full_key(ACTIVE_KEY),
                    &listed,
                    &active.value,
                );
            }
            Some(active.value.clone())
        }
    };

    let mut sources: BTreeMap<String, (KeySource, usize)> = BTreeMap::new();
    for setting in settings {
        let Some((key_id, kind)) = encryption_key_source(&setting.key) else {
            continue;
        };
        if key_ids_setting.is_some() && !key_ids.contains(&key_id) {
            diagnostics.bad_value(
                setting.line,
                &channel.full_key(&setting.key),
                &listed,
                key_id,
            );
            continue;
        }
        let path = match values::directory(&setting.value) {
            Ok(path) => path,
            Err(_) => {
                diagnostics.bad_value(
                    setting.line,
                    &channel.full_key(&setting.key),
                    "a file path",
                    &setting.value,
                );
                continue;
            }
        };
        let source = match kind {
            KeySourceKind::PasswordFile => KeySource::PasswordFile(path),
            KeySourceKind::KeyFile => KeySource::KeyFile(path),
        };
        if let Some((_, first_line)) = sources.get(key_id) {
            diagnostics.conflict(
                setting.line,
                &channel.full_key(&setting.key),
                format!(
                    "expected one source for key {key_id}, but line {first_line} already gives \
                     one (use either keyFile or passwordFile)"
                ),
            );
            continue;
        }
        sources.insert(key_id.to_string(), (source, setting.line));
    }
    if let Some(setting) = key_ids_setting {
        for key_id in &key_ids {
            if !sources.contains_key(*key_id) && key_id_problem(key_id).is_none() {
                diagnostics.missing_key(
                    Some(setting.line),
                    &channel.full_key(&format!("{KEY_SOURCE_PREFIX}{key_id}{KEY_FILE_SUFFIX}")),
                    &format!(
                        "the file holding key {key_id} (32 random bytes or 64 hex digits), or \
                         instead {}",
                        channel.full_key(&format!(
                            "{KEY_SOURCE_PREFIX}{key_id}{PASSWORD_FILE_SUFFIX}"
                        ))
                    ),
                );
            }
        }
    }
    if diagnostics.error_count() != errors_before {
        return None;
    }
    Some(EncryptionConfig {
        active_key_id: active_key_id?,
        keys: sources
            .into_iter()
            .map(|(key_id, (source, _))| (key_id, source))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_match_flume_aliases_and_class_names_in_any_case() {
        let table = [
            ("memory", ChannelKind::Memory),
            ("MEMORY", ChannelKind::Memory),
            (
                "org.apache.flume.channel.MemoryChannel",
                ChannelKind::Memory,
            ),
            ("file", ChannelKind::File),
            ("File", ChannelKind::File),
            (
                "org.apache.flume.channel.file.FileChannel",
                ChannelKind::File,
            ),
            ("spillablememory", ChannelKind::Spillable),
            ("SPILLABLEMEMORY", ChannelKind::Spillable),
            (
                "org.apache.flume.channel.SpillableMemoryChannel",
                ChannelKind::Spillable,
            ),
            ("kafka", ChannelKind::Kafka),
            (
                "org.apache.flume.channel.kafka.KafkaChannel",
                ChannelKind::Kafka,
            ),
        ];
        for (name, kind) in table {
            assert_eq!(ChannelKind::from_type_name(name), Some(kind), "{name}");
        }
        for unsupported in [
            "jdbc",
            "org.apache.flume.channel.kafka.KafkaChannelX",
            "mem",
            "",
        ] {
            assert_eq!(ChannelKind::from_type_name(unsupported), None);
        }
    }

    #[test]
    fn per_key_source_keys_need_a_plain_key_id() {
        assert_eq!(
            encryption_key_source("encryption.keyProvider.keys.key-0.passwordFile"),
            Some(("key-0", KeySourceKind::PasswordFile))
        );
        assert_eq!(
            encryption_key_source("encryption.keyProvider.keys.key-0.keyFile"),
            Some(("key-0", KeySourceKind::KeyFile))
        );
        assert_eq!(
            encryption_key_source("encryption.keyProvider.keys..passwordFile"),
            None
        );
        assert_eq!(
            encryption_key_source("encryption.keyProvider.keys.a.b.keyFile"),
            None
        );
    }

    #[test]
    fn spillable_channels_list_their_own_keys_before_the_overflow_keys() {
        let names = channel_key_names(ChannelKind::Spillable);
        assert_eq!(names[0], "type");
        assert_eq!(names[1], "memoryCapacity");
        assert!(names.iter().any(|name| name == "checkpointDir"));
        assert_eq!(names.iter().filter(|name| **name == "capacity").count(), 1);
    }

    #[test]
    fn directories_compare_without_dot_components_or_trailing_slashes() {
        assert_eq!(
            normalized_directory(Path::new("./data/c1/")),
            normalized_directory(Path::new("data//c1"))
        );
        assert_ne!(
            normalized_directory(Path::new("/data/c1")),
            normalized_directory(Path::new("data/c1"))
        );
    }
}
