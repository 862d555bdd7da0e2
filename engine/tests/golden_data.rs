//! Golden data directories: small channels written by an earlier build in the on-disk
//! format of `docs/format.md` (segments version 1, checkpoints version 1), committed
//! under `tests/golden/format-v1/`, with the encryption keys they need beside them. Every
//! build must open them and find exactly the events they hold, headers, bodies and
//! order, so a change to the format cannot silently break data already on disk.
//!
//! One workload, four directories: `plain`, `encrypted` (keys rotated part-way, from a
//! key file to a password-derived key), `compressed` (LZ4) and `dual-checkpoints`. Each
//! ends with a checkpoint followed by two more transactions in the log, so opening one
//! reads a checkpoint *and* replays records. `tests/golden/README.md` says how the
//! directories were generated (`write_golden_data_directories`, ignored by default) and
//! when to add new ones.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use millrace_engine::config::{Compression, EncryptionConfig, FileChannelConfig, KeySource};
use millrace_engine::file::RecoveryPath;
use millrace_engine::record::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use millrace_engine::{Channel, Event, FileChannel};

/// The golden directories of on-disk format version 1.
const GOLDEN_FORMAT_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/format-v1");
/// Set to an empty (or missing) directory to write a fresh set of golden directories
/// there (see `write_golden_data_directories`).
const GOLDEN_OUT_VARIABLE: &str = "MILLRACE_GOLDEN_OUT";
/// Events the workload puts, in put order.
const GOLDEN_EVENT_COUNT: usize = 28;
/// Events taken for good by the workload: the channel holds the rest.
const TAKEN_EVENT_COUNT: usize = 9;
/// Transactions committed after the last checkpoint (a put and a take).
const TRANSACTIONS_AFTER_CHECKPOINT: u64 = 2;
/// Small segments, so every directory holds several (they are trimmed when closed).
const GOLDEN_MAX_FILE_SIZE_BYTES: u64 = 2048;
/// The largest a golden directory may grow: they are committed to the repository.
const GOLDEN_DIRECTORY_MAX_BYTES: u64 = 64 * 1024;
/// The directory lock every open creates; not part of the golden data.
const LOCK_FILE_NAME: &str = "millrace.lock";
/// The key that seals the first part of the encrypted directory (a key file: 64
/// hexadecimal digits) and the one that seals the rest (derived from a password).
const FIRST_KEY_ID: &str = "k1";
const SECOND_KEY_ID: &str = "k2";
/// Fixtures for the encrypted directory, committed beside it (test keys, nothing else
/// is sealed with them).
const FIRST_KEY_HEX: &str = "4d696c6c7261636520676f6c64656e2064617461206b6579206f6e652021212e";
const SECOND_KEY_PASSWORD: &str = "millrace golden data, second key";
/// Byte offsets in the segment header and record header (`docs/format.md`).
const SEGMENT_CIPHER_OFFSET: usize = 24;
const SEGMENT_KEY_ID_LENGTH_OFFSET: usize = 25;
const SEGMENT_KEY_ID_OFFSET: usize = 26;
const RECORD_KIND_OFFSET: usize = 8;
const RECORD_FLAGS_OFFSET: usize = 9;
const PUT_RECORD_KIND: u8 = 1;
const FLAG_COMPRESSED: u8 = 1 << 0;
const FLAG_ENCRYPTED: u8 = 1 << 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Plain,
    Encrypted,
    Compressed,
    DualCheckpoints,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Plain,
        Variant::Encrypted,
        Variant::Compressed,
        Variant::DualCheckpoints,
    ];

    fn dir_name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Encrypted => "encrypted",
            Variant::Compressed => "compressed",
            Variant::DualCheckpoints => "dual-checkpoints",
        }
    }
}

/// The `index`-th event of the workload: headers of several shapes (an empty value,
/// non-ASCII text) and bodies that are empty, compressible text, every byte value, or
/// short.
fn golden_event(index: usize) -> Event {
    let body: Vec<u8> = match index % 4 {
        0 => Vec::new(),
        1 => format!("event {index} says the same thing again; ")
            .repeat(8)
            .into_bytes(),
        2 => (0..=255u8)
            .map(|byte| byte.wrapping_add(index as u8))
            .collect(),
        _ => format!("short body {index}").into_bytes(),
    };
    let mut event = Event::from_body(body)
        .with_header("index", index.to_string())
        .with_header("source", "golden");
    if index.is_multiple_of(3) {
        event = event.with_header("empty", "");
    }
    if index.is_multiple_of(5) {
        event = event.with_header("note", "grüße ✓ 日本");
    }
    event
}

/// What every golden directory holds: the events not taken, in put order.
fn expected_events() -> Vec<Event> {
    (TAKEN_EVENT_COUNT..GOLDEN_EVENT_COUNT)
        .map(golden_event)
        .collect()
}

/// The configuration a variant's directory `root` was written (and is read) with;
/// `active_key_id` matters only for the encrypted one.
fn golden_config(variant: Variant, root: &Path, active_key_id: &str) -> FileChannelConfig {
    let mut config = FileChannelConfig::new(
        vec![root.join("data0"), root.join("data1")],
        root.join("checkpoint"),
    );
    config.capacity = 1_000;
    config.transaction_capacity = 100;
    config.max_file_size_bytes = GOLDEN_MAX_FILE_SIZE_BYTES;
    config.minimum_required_space_bytes = 1_048_576;
    // No periodic checkpoint while the workload runs: only the ones it asks for.
    config.checkpoint_interval = std::time::Duration::from_secs(3_600);
    match variant {
        Variant::Plain => {}
        Variant::Compressed => config.compression = Compression::Lz4,
        Variant::DualCheckpoints => {
            config.use_dual_checkpoints = true;
            config.backup_checkpoint_dir = Some(root.join("backup"));
        }
        Variant::Encrypted => {
            let keys = root.join("keys");
            config.encryption = Some(EncryptionConfig {
                active_key_id: active_key_id.to_string(),
                keys: [
                    (
                        FIRST_KEY_ID.to_string(),
                        KeySource::KeyFile(keys.join(format!("{FIRST_KEY_ID}.key"))),
                    ),
                    (
                        SECOND_KEY_ID.to_string(),
                        KeySource::PasswordFile(keys.join(format!("{SECOND_KEY_ID}.password"))),
                    ),
                ]
                .into_iter()
                .collect(),
            });
        }
    }
    config
}

fn put_events(channel: &FileChannel, indexes: std::ops::Range<usize>) {
    let mut transaction = channel.begin().unwrap();
    for index in indexes {
        transaction.put(golden_event(index)).unwrap();
    }
    transaction.commit().unwrap();
}

fn take_events(channel: &FileChannel, count: usize, commit: bool) {
    let mut transaction = channel.begin().unwrap();
    for _ in 0..count {
        transaction.take().unwrap().expect("an event to take");
    }
    if commit {
        transaction.commit().unwrap();
    } else {
        transaction.rollback().unwrap();
    }
}

/// Writes one golden directory: puts in several transactions, takes (committed and
/// rolled back), a clean stop and a reopen (which rotates the encrypted directory's key),
/// more of both, a checkpoint, then a put and a take after it and a stop without a
/// checkpoint.
fn write_golden_directory(variant: Variant, root: &Path) {
    if variant == Variant::Encrypted {
        let keys = root.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(keys.join(format!("{FIRST_KEY_ID}.key")), FIRST_KEY_HEX).unwrap();
        std::fs::write(
            keys.join(format!("{SECOND_KEY_ID}.password")),
            SECOND_KEY_PASSWORD,
        )
        .unwrap();
    }
    {
        let channel = FileChannel::open("golden", golden_config(variant, root, FIRST_KEY_ID))
            .expect("open for writing");
        put_events(&channel, 0..4);
        put_events(&channel, 4..8);
        put_events(&channel, 8..12);
        take_events(&channel, 3, true); // 0, 1, 2 taken for good
        take_events(&channel, 2, false); // 3, 4 back at the head
        channel.close().unwrap(); // checkpointOnClose
    }
    let mut config = golden_config(variant, root, SECOND_KEY_ID);
    config.checkpoint_on_close = false;
    let channel = FileChannel::open("golden", config).expect("reopen for writing");
    put_events(&channel, 12..16);
    put_events(&channel, 16..20);
    put_events(&channel, 20..24);
    take_events(&channel, 4, true); // 3 to 6
    channel.checkpoint_now().unwrap();
    put_events(&channel, 24..28);
    take_events(&channel, 2, true); // 7, 8
    channel.close().unwrap();
    drop(channel);
    remove_lock_files(root);
}

fn remove_lock_files(root: &Path) {
    for entry in walk(root) {
        if entry.file_name().is_some_and(|name| name == LOCK_FILE_NAME) {
            std::fs::remove_file(entry).unwrap();
        }
    }
}

/// Every file under `root`.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A private copy of a golden directory to open (opening writes a lock file and, after
/// replaying records, a checkpoint): directories 0700, files 0600, as the engine makes
/// its own.
fn copy_of(variant: Variant) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let source = Path::new(GOLDEN_FORMAT_V1).join(variant.dir_name());
    assert!(
        source.is_dir(),
        "{} is missing (see tests/golden/README.md)",
        source.display()
    );
    let copy = tempfile::tempdir().unwrap();
    for file in walk(&source) {
        let target = copy.path().join(file.strip_prefix(&source).unwrap());
        let parent = target.parent().unwrap();
        std::fs::create_dir_all(parent).unwrap();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::copy(&file, &target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Directories that hold no file (none today) would not be copied; the channel
    // creates its directories anyway.
    copy
}

fn open_golden(variant: Variant, root: &Path) -> FileChannel {
    FileChannel::open("golden", golden_config(variant, root, SECOND_KEY_ID)).unwrap_or_else(
        |error| {
            panic!(
                "{}: the golden directory does not open: {error}",
                variant.dir_name()
            )
        },
    )
}

fn assert_exact_events(variant: Variant, channel: &FileChannel) {
    let events = common::peek_events(channel);
    let expected = expected_events();
    assert_eq!(
        events.len(),
        expected.len(),
        "{}: event count",
        variant.dir_name()
    );
    for (position, (event, expected)) in events.iter().zip(&expected).enumerate() {
        assert_eq!(
            event,
            expected,
            "{}: event {position} differs (headers or body)",
            variant.dir_name()
        );
    }
}

#[test]
fn every_golden_directory_opens_from_its_checkpoint_with_its_exact_events() {
    for variant in Variant::ALL {
        let copy = copy_of(variant);
        let channel = open_golden(variant, copy.path());
        let report = channel.recovery_report().unwrap();
        assert_eq!(
            report.path,
            RecoveryPath::Checkpoint,
            "{variant:?}: {report:?}"
        );
        assert!(
            report.unusable_checkpoints.is_empty(),
            "{variant:?}: {report:?}"
        );
        assert!(report.segments_skipped > 0, "{variant:?}: {report:?}");
        assert_eq!(
            report.transactions_committed, TRANSACTIONS_AFTER_CHECKPOINT,
            "{variant:?}: only the log after the checkpoint is applied: {report:?}"
        );
        assert!(report.truncated_tails.is_empty(), "{variant:?}: {report:?}");
        assert_exact_events(variant, &channel);
    }
}

#[test]
fn every_golden_directory_gives_the_same_events_by_a_full_replay_of_its_log() {
    for variant in Variant::ALL {
        let copy = copy_of(variant);
        for dir in ["checkpoint", "backup"] {
            let checkpoint = copy.path().join(dir).join("checkpoint");
            if checkpoint.exists() {
                std::fs::remove_file(checkpoint).unwrap();
            }
        }
        let channel = open_golden(variant, copy.path());
        let report = channel.recovery_report().unwrap();
        assert_eq!(
            report.path,
            RecoveryPath::FullReplay,
            "{variant:?}: {report:?}"
        );
        assert_exact_events(variant, &channel);
    }
}

#[test]
fn the_golden_dual_checkpoint_directory_opens_from_its_backup_when_the_primary_is_lost() {
    let variant = Variant::DualCheckpoints;
    let copy = copy_of(variant);
    std::fs::remove_file(copy.path().join("checkpoint/checkpoint")).unwrap();
    let channel = open_golden(variant, copy.path());
    let report = channel.recovery_report().unwrap();
    assert_eq!(report.path, RecoveryPath::BackupCheckpoint, "{report:?}");
    assert_eq!(report.transactions_committed, TRANSACTIONS_AFTER_CHECKPOINT);
    assert_exact_events(variant, &channel);
}

/// What a segment file says about itself: its key id (if sealed) and the flags of its
/// put records, read by the layout in `docs/format.md`.
struct SegmentFacts {
    key_id: Option<String>,
    put_record_flags: Vec<u8>,
}

fn segment_facts(path: &Path) -> SegmentFacts {
    let bytes = std::fs::read(path).unwrap();
    let key_id = (bytes[SEGMENT_CIPHER_OFFSET] != 0).then(|| {
        let length = bytes[SEGMENT_KEY_ID_LENGTH_OFFSET] as usize;
        String::from_utf8(bytes[SEGMENT_KEY_ID_OFFSET..SEGMENT_KEY_ID_OFFSET + length].to_vec())
            .unwrap()
    });
    let mut put_record_flags = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset + RECORD_HEADER_BYTES <= bytes.len() {
        let record_bytes =
            u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        if record_bytes == 0 {
            break;
        }
        if bytes[offset + RECORD_KIND_OFFSET] == PUT_RECORD_KIND {
            put_record_flags.push(bytes[offset + RECORD_FLAGS_OFFSET]);
        }
        offset += record_bytes;
    }
    SegmentFacts {
        key_id,
        put_record_flags,
    }
}

#[test]
fn the_golden_directories_are_small_and_hold_what_their_names_say() {
    for variant in Variant::ALL {
        let root = Path::new(GOLDEN_FORMAT_V1).join(variant.dir_name());
        let files = walk(&root);
        let total_bytes: u64 = files
            .iter()
            .map(|file| file.metadata().unwrap().len())
            .sum();
        assert!(
            total_bytes <= GOLDEN_DIRECTORY_MAX_BYTES,
            "{variant:?}: {total_bytes} bytes"
        );
        assert!(
            files
                .iter()
                .all(|file| file.file_name().unwrap() != LOCK_FILE_NAME),
            "{variant:?}: no lock files"
        );
        let segments: Vec<SegmentFacts> = files
            .iter()
            .filter(|file| {
                file.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("segment-")
            })
            .map(|file| segment_facts(file))
            .collect();
        assert!(segments.len() > 2, "{variant:?}: several segments");
        let flags: Vec<u8> = segments
            .iter()
            .flat_map(|segment| segment.put_record_flags.iter().copied())
            .collect();
        assert!(!flags.is_empty(), "{variant:?}: put records");
        let key_ids: BTreeSet<Option<String>> = segments
            .iter()
            .map(|segment| segment.key_id.clone())
            .collect();
        match variant {
            Variant::Plain | Variant::DualCheckpoints => {
                assert!(
                    flags.iter().all(|&flag| flag == 0),
                    "{variant:?}: {flags:?}"
                );
                assert_eq!(key_ids, BTreeSet::from([None]));
            }
            Variant::Compressed => {
                assert!(flags.contains(&FLAG_COMPRESSED), "{variant:?}: {flags:?}");
                assert!(flags.iter().all(|&flag| flag & FLAG_ENCRYPTED == 0));
                assert_eq!(key_ids, BTreeSet::from([None]));
            }
            Variant::Encrypted => {
                assert!(
                    flags.iter().all(|&flag| flag == FLAG_ENCRYPTED),
                    "{variant:?}: {flags:?}"
                );
                assert_eq!(
                    key_ids,
                    BTreeSet::from([
                        Some(FIRST_KEY_ID.to_string()),
                        Some(SECOND_KEY_ID.to_string())
                    ]),
                    "segments sealed with both keys"
                );
            }
        }
        let backup = root.join("backup/checkpoint");
        assert_eq!(
            backup.exists(),
            variant == Variant::DualCheckpoints,
            "{variant:?}: a backup checkpoint only with dual checkpoints"
        );
    }
}

/// Writes a fresh set of golden directories into the directory named by
/// `MILLRACE_GOLDEN_OUT` (missing or empty). Ignored by default; see
/// `tests/golden/README.md`.
#[test]
#[ignore = "writes golden data; run by hand with MILLRACE_GOLDEN_OUT set"]
fn write_golden_data_directories() {
    let out = std::env::var_os(GOLDEN_OUT_VARIABLE).unwrap_or_else(|| {
        panic!("set {GOLDEN_OUT_VARIABLE} to the (missing or empty) directory to write into")
    });
    let out = PathBuf::from(out);
    if out.exists() {
        assert!(
            std::fs::read_dir(&out).unwrap().next().is_none(),
            "{} is not empty: golden data is never overwritten in place",
            out.display()
        );
    }
    for variant in Variant::ALL {
        write_golden_directory(variant, &out.join(variant.dir_name()));
    }
}
