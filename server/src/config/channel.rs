//! Channel keys: from `AGENT.channels.NAME.*` to the engine's typed channel settings.
//!
//! Every Flume channel key is read under Flume's name, into
//! [`millrace_engine::config::ChannelConfig`], which starts from Flume's real defaults.
//! Each channel type has one table of the keys it accepts (`FILE_KEYS`, `MEMORY_KEYS`,
//! `SPILLABLE_KEYS`); a spillable channel also accepts every file key
//! for its overflow. A key in no table is an error, as is a value its reader refuses.
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
    key_id_problem, ChannelConfig, Compression, ConfigError as EngineConfigError, EncryptionConfig,
    FileChannelConfig, KeySource, MemoryChannelConfig, SpillableChannelConfig,
    DEFAULT_MAX_FILE_SIZE_BYTES, MIN_MAX_FILE_SIZE_BYTES,
};

use crate::config::error::{expected_one_of, Diagnostics};
use crate::config::setting::{Component, ComponentSetting, RawSetting};
use crate::config::values::{self, Expected};

/// Flume's memory channel counts body bytes in slots of this size
/// (`MemoryChannel.byteCapacitySlotSize`). A `byteCapacity` that leaves less than one
/// slot after the buffer percentage makes Flume switch the byte limit off; Millrace
/// refuses it instead.
pub const MEMORY_BYTE_SLOT_SIZE_BYTES: u64 = 100;

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
}

impl ChannelKind {
    /// Every kind, in documentation order.
    pub const ALL: [ChannelKind; 3] = [
        ChannelKind::Memory,
        ChannelKind::File,
        ChannelKind::Spillable,
    ];

    /// Flume's alias for the type (`type = file`).
    pub fn alias(self) -> &'static str {
        match self {
            ChannelKind::File => "file",
            ChannelKind::Memory => "memory",
            ChannelKind::Spillable => "spillablememory",
        }
    }

    /// Flume's Java class for the type, also accepted as `type`.
    pub fn class_name(self) -> &'static str {
        match self {
            ChannelKind::File => "org.apache.flume.channel.file.FileChannel",
            ChannelKind::Memory => "org.apache.flume.channel.MemoryChannel",
            ChannelKind::Spillable => "org.apache.flume.channel.SpillableMemoryChannel",
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
        }
    }
}

const CHANNEL_TYPE_EXPECTED: &str =
    "a channel type: memory, file or spillablememory (or Flume's class name for one of them)";

/// Warnings a key reader attaches to the key it read.
type Notes = Vec<String>;

/// One accepted channel key and how it is read into a draft.
struct KeyHandler<Draft: 'static> {
    name: &'static str,
    apply: fn(&mut Draft, &str, &mut Notes) -> Result<(), Expected>,
}

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

fn note_unexpanded_home(path: &Path, notes: &mut Notes) {
    if path.starts_with("~") {
        notes.push(format!(
            "\"~\" is not expanded (Flume does not expand it either): this names a directory \
             called \"~\" under the working directory, {:?}",
            path.display().to_string()
        ));
    }
}

fn note_not_acted_on_when_true(enabled: bool, what_happens: &str, notes: &mut Notes) {
    if enabled {
        notes.push(format!("accepted but not acted on: {what_happens}"));
    }
}

/// Keys of a file channel; the spillable channel applies them to its overflow.
static FILE_KEYS: &[KeyHandler<FileDraft>] = &[
    KeyHandler {
        name: "checkpointDir",
        apply: |draft, value, notes| {
            let directory = values::directory(value)?;
            note_unexpanded_home(&directory, notes);
            draft.checkpoint_dir = Some(directory);
            Ok(())
        },
    },
    KeyHandler {
        name: "dataDirs",
        apply: |draft, value, notes| {
            let directories = values::directory_list(value)?;
            for directory in &directories {
                note_unexpanded_home(directory, notes);
            }
            draft.data_dirs = Some(directories);
            Ok(())
        },
    },
    KeyHandler {
        name: "useDualCheckpoints",
        apply: |draft, value, _| {
            draft.config.use_dual_checkpoints = values::boolean(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "backupCheckpointDir",
        apply: |draft, value, notes| {
            let directory = values::directory(value)?;
            note_unexpanded_home(&directory, notes);
            draft.config.backup_checkpoint_dir = Some(directory);
            Ok(())
        },
    },
    KeyHandler {
        name: "compressBackupCheckpoint",
        apply: |_, value, notes| {
            let enabled = values::boolean(value)?;
            note_not_acted_on_when_true(
                enabled,
                "Millrace writes the backup checkpoint uncompressed",
                notes,
            );
            Ok(())
        },
    },
    KeyHandler {
        name: "capacity",
        apply: |draft, value, _| {
            draft.config.capacity = values::positive_integer(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "transactionCapacity",
        apply: |draft, value, _| {
            draft.config.transaction_capacity = values::positive_integer(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "checkpointInterval",
        apply: |draft, value, notes| {
            draft.config.checkpoint_interval = values::positive_milliseconds(value)?;
            let effective = draft.config.effective_checkpoint_interval();
            if effective != draft.config.checkpoint_interval {
                notes.push(format!(
                    "raised to {} ms, the floor Flume applies as well",
                    effective.as_millis()
                ));
            }
            Ok(())
        },
    },
    KeyHandler {
        name: "maxFileSize",
        apply: |draft, value, notes| {
            let requested = values::positive_integer(value)?;
            if requested < MIN_MAX_FILE_SIZE_BYTES {
                return Err(Expected::new(format!(
                    "at least {MIN_MAX_FILE_SIZE_BYTES} bytes (a segment must hold its header \
                     and a few records)"
                )));
            }
            if requested > DEFAULT_MAX_FILE_SIZE_BYTES {
                notes.push(format!(
                    "lowered to {DEFAULT_MAX_FILE_SIZE_BYTES} bytes, the ceiling Flume applies \
                     as well"
                ));
            }
            draft.config.max_file_size_bytes = requested.min(DEFAULT_MAX_FILE_SIZE_BYTES);
            Ok(())
        },
    },
    KeyHandler {
        name: "minimumRequiredSpace",
        apply: |draft, value, notes| {
            draft.config.minimum_required_space_bytes = values::non_negative_integer(value)?;
            let effective = draft.config.effective_minimum_required_space_bytes();
            if effective != draft.config.minimum_required_space_bytes {
                notes.push(format!(
                    "raised to {effective} bytes, the floor Flume applies as well"
                ));
            }
            Ok(())
        },
    },
    KeyHandler {
        name: "keep-alive",
        apply: |draft, value, _| {
            draft.config.keep_alive = values::non_negative_seconds(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "use-log-replay-v1",
        apply: |_, value, notes| {
            let enabled = values::boolean(value)?;
            note_not_acted_on_when_true(
                enabled,
                "Millrace has a single replay procedure; Flume's v1 log replay does not apply",
                notes,
            );
            Ok(())
        },
    },
    KeyHandler {
        name: "use-fast-replay",
        apply: |_, value, notes| {
            let enabled = values::boolean(value)?;
            note_not_acted_on_when_true(
                enabled,
                "Millrace has a single replay procedure; Flume's fast replay does not apply",
                notes,
            );
            Ok(())
        },
    },
    KeyHandler {
        name: "fsyncPerTransaction",
        apply: |draft, value, _| {
            draft.config.fsync_per_transaction = values::boolean(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "fsyncInterval",
        apply: |draft, value, _| {
            draft.config.fsync_interval = values::positive_seconds(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "checkpointOnClose",
        apply: |draft, value, _| {
            draft.config.checkpoint_on_close = values::boolean(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "retentionTime",
        apply: |draft, value, _| {
            draft.config.retention_time = values::non_negative_milliseconds(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "retentionBytes",
        apply: |draft, value, _| {
            draft.config.retention_bytes = values::non_negative_integer(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "fileMode",
        apply: |draft, value, _| {
            draft.config.file_mode = values::file_mode(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "compression",
        apply: |draft, value, _| {
            draft.config.compression = [Compression::None, Compression::Lz4]
                .into_iter()
                .find(|compression| value.eq_ignore_ascii_case(compression.name()))
                .ok_or_else(|| Expected::new("none or lz4"))?;
            Ok(())
        },
    },
];

/// Keys of a memory channel.
static MEMORY_KEYS: &[KeyHandler<MemoryChannelConfig>] = &[
    KeyHandler {
        name: "capacity",
        apply: |config, value, _| {
            config.capacity = values::positive_integer(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "transactionCapacity",
        apply: |config, value, _| {
            config.transaction_capacity = values::positive_integer(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "keep-alive",
        apply: |config, value, _| {
            config.keep_alive = values::non_negative_seconds(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "byteCapacity",
        apply: |config, value, _| {
            config.byte_capacity_bytes = Some(values::positive_integer(value)?);
            Ok(())
        },
    },
    KeyHandler {
        name: "byteCapacityBufferPercentage",
        apply: |config, value, _| {
            config.byte_capacity_buffer_percentage = values::percentage_below_full(value)?;
            Ok(())
        },
    },
];

/// Keys of a spillable memory channel's own; any other file key goes to its overflow.
static SPILLABLE_KEYS: &[KeyHandler<SpillableDraft>] = &[
    KeyHandler {
        name: "memoryCapacity",
        apply: |draft, value, _| {
            draft.config.memory_capacity = values::non_negative_integer(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "overflowCapacity",
        apply: |draft, value, _| {
            draft.config.overflow_capacity = values::non_negative_integer(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "overflowTimeout",
        apply: |draft, value, _| {
            draft.config.overflow_timeout = values::non_negative_seconds(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "overflowDeactivationThreshold",
        apply: |draft, value, _| {
            draft.config.overflow_deactivation_threshold_percent = values::percentage(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "byteCapacity",
        apply: |draft, value, _| {
            draft.config.byte_capacity_bytes = Some(values::positive_integer(value)?);
            Ok(())
        },
    },
    KeyHandler {
        name: "byteCapacityBufferPercentage",
        apply: |draft, value, _| {
            draft.config.byte_capacity_buffer_percentage = values::percentage_below_full(value)?;
            Ok(())
        },
    },
    KeyHandler {
        name: "avgEventSize",
        apply: |draft, value, _| {
            draft.config.avg_event_size_bytes = values::positive_integer(value)?;
            Ok(())
        },
    },
    // Flume overwrites these two before configuring the overflow file channel.
    KeyHandler {
        name: "capacity",
        apply: |_, value, notes| {
            values::positive_integer(value)?;
            notes.push(
                "has no effect on a spillable channel (Flume overrides it too): the overflow \
                 holds overflowCapacity events and memory holds memoryCapacity"
                    .to_string(),
            );
            Ok(())
        },
    },
    KeyHandler {
        name: "keep-alive",
        apply: |_, value, notes| {
            values::non_negative_seconds(value)?;
            notes.push(
                "has no effect on a spillable channel (Flume forces the overflow's keep-alive \
                 to 0): overflowTimeout governs how long a commit waits"
                    .to_string(),
            );
            Ok(())
        },
    },
];

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

/// Every key a channel type accepts, `type` first, as written in documentation.
pub fn channel_key_names(kind: ChannelKind) -> Vec<&'static str> {
    let mut names = vec!["type"];
    match kind {
        ChannelKind::Memory => names.extend(MEMORY_KEYS.iter().map(|key| key.name)),
        ChannelKind::File => names.extend(FILE_KEYS.iter().map(|key| key.name)),
        ChannelKind::Spillable => {
            names.extend(SPILLABLE_KEYS.iter().map(|key| key.name));
            for file_key in FILE_KEYS {
                if !names.contains(&file_key.name) {
                    names.push(file_key.name);
                }
            }
        }
    }
    if kind != ChannelKind::Memory {
        names.extend(ENCRYPTION_KEYS);
        names.push(PASSWORD_FILE_PATTERN);
        names.push(KEY_FILE_PATTERN);
    }
    names
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
/// broken); a channel whose only problems are unknown keys comes back as the other keys
/// make it, for the checks that span components (see `read_keys`).
pub(crate) fn parse_channel(
    channel: &Component,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<ParsedChannel> {
    let Some(type_setting) = channel.get("type") else {
        diagnostics.missing_key(
            Some(channel.declared_line),
            &channel.full_key("type"),
            CHANNEL_TYPE_EXPECTED,
        );
        return None;
    };
    let Some(kind) = ChannelKind::from_type_name(&type_setting.value) else {
        diagnostics.bad_value(
            type_setting.line,
            &type_setting.key,
            CHANNEL_TYPE_EXPECTED,
            &type_setting.value,
        );
        return None;
    };
    match kind {
        ChannelKind::Memory => parse_memory(channel, diagnostics),
        ChannelKind::File => parse_file(channel, base_dir, diagnostics),
        ChannelKind::Spillable => parse_spillable(channel, base_dir, diagnostics),
    }
}

/// Outcome of offering one key to a channel type's tables.
enum KeyOutcome {
    Read,
    Refused(Expected),
    Unknown,
}

fn run_handler<Draft>(
    handlers: &'static [KeyHandler<Draft>],
    draft: &mut Draft,
    setting: &ComponentSetting,
    notes: &mut Notes,
) -> Option<KeyOutcome> {
    let handler = handlers
        .iter()
        .find(|handler| handler.name == setting.sub_key)?;
    Some(match (handler.apply)(draft, &setting.value, notes) {
        Ok(()) => KeyOutcome::Read,
        Err(expected) => KeyOutcome::Refused(expected),
    })
}

/// Offers every key but `type` to `read_key`, recording errors and warnings. Returns
/// whether every value offered was accepted.
///
/// An unknown key does not count: it has no effect (as in Flume), so the channel is
/// what the other keys say, and the checks that span keys and components still judge
/// it in the same run. A refused value does: its default would stand in for what the
/// user wrote, and later checks would judge a value nobody meant.
fn read_keys(
    channel: &Component,
    kind: ChannelKind,
    diagnostics: &mut Diagnostics,
    mut read_key: impl FnMut(&ComponentSetting, &mut Notes) -> KeyOutcome,
) -> bool {
    let known_names = channel_key_names(kind);
    let mut all_accepted = true;
    for setting in channel.settings.iter().filter(|s| s.sub_key != "type") {
        let mut notes = Notes::new();
        match read_key(setting, &mut notes) {
            KeyOutcome::Read => {}
            KeyOutcome::Refused(expected) => {
                all_accepted = false;
                diagnostics.bad_value(setting.line, &setting.key, &expected.0, &setting.value);
            }
            KeyOutcome::Unknown => {
                let expected =
                    expected_one_of(&setting.sub_key, kind.label(), known_names.iter().copied());
                diagnostics.unknown_key(setting.line, &setting.key, expected);
            }
        }
        for note in notes {
            diagnostics.warn(setting.line, &setting.key, note);
        }
    }
    all_accepted
}

fn parse_memory(channel: &Component, diagnostics: &mut Diagnostics) -> Option<ParsedChannel> {
    let mut config = MemoryChannelConfig::default();
    let all_accepted = read_keys(
        channel,
        ChannelKind::Memory,
        diagnostics,
        |setting, notes| {
            run_handler(MEMORY_KEYS, &mut config, setting, notes).unwrap_or(KeyOutcome::Unknown)
        },
    );
    if !all_accepted {
        return None;
    }
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

fn parse_file(
    channel: &Component,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<ParsedChannel> {
    let mut draft = FileDraft::new();
    let mut encryption = Vec::new();
    let all_accepted = read_keys(channel, ChannelKind::File, diagnostics, |setting, notes| {
        if is_encryption_key(&setting.sub_key) {
            encryption.push(setting.to_raw());
            return KeyOutcome::Read;
        }
        run_handler(FILE_KEYS, &mut draft, setting, notes).unwrap_or(KeyOutcome::Unknown)
    });
    if !all_accepted {
        return None;
    }
    let errors_before = diagnostics.error_count();
    draft.config.encryption = read_encryption(channel, &encryption, diagnostics);
    let finished = finish_file(draft, channel, base_dir, FileRole::Channel, diagnostics);
    let (config, directories) = finished?;
    (diagnostics.error_count() == errors_before).then_some(ParsedChannel {
        config: ChannelConfig::File(config),
        directories,
    })
}

fn parse_spillable(
    channel: &Component,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<ParsedChannel> {
    let mut draft = SpillableDraft {
        config: SpillableChannelConfig::new(FileChannelConfig::new(Vec::new(), PathBuf::new())),
        overflow: FileDraft::new(),
    };
    let mut encryption = Vec::new();
    let all_accepted = read_keys(
        channel,
        ChannelKind::Spillable,
        diagnostics,
        |setting, notes| {
            if is_encryption_key(&setting.sub_key) {
                encryption.push(setting.to_raw());
                return KeyOutcome::Read;
            }
            run_handler(SPILLABLE_KEYS, &mut draft, setting, notes)
                .or_else(|| run_handler(FILE_KEYS, &mut draft.overflow, setting, notes))
                .unwrap_or(KeyOutcome::Unknown)
        },
    );
    if !all_accepted {
        return None;
    }
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
    overflow.config.encryption = read_encryption(channel, &encryption, diagnostics);
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
    let usable_percent = u128::from(PERCENT - u64::from(buffer_percentage));
    let usable_bytes = u128::from(byte_capacity_bytes) * usable_percent / u128::from(PERCENT);
    if usable_bytes >= u128::from(slot_size_bytes) {
        return;
    }
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
        ];
        for (name, kind) in table {
            assert_eq!(ChannelKind::from_type_name(name), Some(kind), "{name}");
        }
        for unsupported in [
            "jdbc",
            "org.apache.flume.channel.kafka.KafkaChannel",
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
        assert!(names.contains(&"checkpointDir"));
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
