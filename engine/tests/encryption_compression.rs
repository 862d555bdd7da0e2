//! Encryption at rest and compression of put records, on real files: round trips,
//! key rotation across restarts, missing and wrong keys, authentication failures, and
//! a scan of every byte on disk for plaintext.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use millrace_engine::config::{
    Compression, EncryptionConfig, FileChannelConfig, KeySource, SpillableChannelConfig,
};
use millrace_engine::crypto::KeyError;
use millrace_engine::file::RecoveryPath;
use millrace_engine::inspect::{scan_channel, ChannelScan, InspectError, NoProgress, RecordBody};
use millrace_engine::record::{
    seal_record, SegmentHeader, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use millrace_engine::storage::RealFs;
use millrace_engine::{
    Channel, ChannelError, ChannelHealth, Event, FileChannel, OpenError, SpillableChannel,
};

/// A string no encoder would produce by chance: if it is on disk, plaintext leaked.
const MARKER: &str = "PLAINTEXT-MARKER-5c1d9e27";
/// Bytes of a key file.
const KEY_BYTES: usize = 32;
/// The put payload's clear event count and the nonce come before the ciphertext.
const CIPHERTEXT_OFFSET_IN_RECORD: usize = RECORD_HEADER_BYTES + 4 + 24;

/// Writes a 32-byte key file whose bytes depend on `seed`, and returns its path.
fn write_key(root: &Path, key_id: &str, seed: u8) -> PathBuf {
    let dir = root.join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{key_id}.key"));
    let key: Vec<u8> = (0..KEY_BYTES as u8)
        .map(|index| index.wrapping_mul(37).wrapping_add(seed.wrapping_mul(101)))
        .collect();
    std::fs::write(&path, key).unwrap();
    path
}

/// Encryption with `active` sealing new segments and each listed id read from
/// `<root>/keys/<id>.key`.
fn encryption(root: &Path, active: &str, key_ids: &[&str]) -> EncryptionConfig {
    EncryptionConfig {
        active_key_id: active.to_string(),
        keys: key_ids
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    KeySource::KeyFile(root.join("keys").join(format!("{id}.key"))),
                )
            })
            .collect(),
    }
}

fn config(
    root: &Path,
    encryption: Option<EncryptionConfig>,
    compression: Compression,
) -> FileChannelConfig {
    let mut config = test_config(root, 1);
    config.encryption = encryption;
    config.compression = compression;
    config
}

fn event_with_marker(index: usize) -> Event {
    Event::from_body(format!(
        "2026-03-01T10:00:{:02}.000Z INFO  [worker-{}] {MARKER} request {index} path=/api/v1/items status=200",
        index % 60,
        index % 4
    ))
    .with_header("marker", MARKER)
    .with_header("index", index.to_string())
}

/// Puts `events` in transactions of `batch` and commits each.
fn put_events(channel: &dyn Channel, events: &[Event], batch: usize) {
    for chunk in events.chunks(batch) {
        let mut transaction = channel.begin().unwrap();
        for event in chunk {
            transaction.put(event.clone()).unwrap();
        }
        transaction.commit().unwrap();
    }
}

fn open_err(config: &FileChannelConfig) -> OpenError {
    match FileChannel::open("c1", config.clone()) {
        Ok(_) => panic!("the channel opened, but it should not have"),
        Err(error) => error,
    }
}

fn checkpoint_file(root: &Path) -> PathBuf {
    root.join("checkpoint").join("checkpoint")
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Names and sizes of every file under `dir`, to show that nothing changed.
fn disk_state(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut state: Vec<(PathBuf, u64)> = files_under(dir)
        .into_iter()
        .map(|path| {
            let len = std::fs::metadata(&path).unwrap().len();
            (path, len)
        })
        .collect();
    state.sort();
    state
}

/// Files under `root` that contain `needle`: every data and checkpoint file (the key
/// files under `<root>/keys` are left out).
fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|path| !path.starts_with(root.join("keys")))
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap();
            bytes.windows(needle.len()).any(|window| window == needle)
        })
        .collect()
}

/// A record in a segment: its offset and bytes.
fn records_of(segment: &Path) -> Vec<(usize, Vec<u8>)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut records = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset + 4 <= bytes.len() {
        let length = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        if length == 0 {
            break;
        }
        records.push((offset, bytes[offset..offset + length].to_vec()));
        offset += length;
    }
    records
}

const PUT_KIND: u8 = 1;

/// Flips one ciphertext byte of the first put record in `segment`; with `fix_crc`
/// recomputes the record's CRC as an attacker could, so only the tag can notice.
/// Returns the record's offset.
fn flip_ciphertext_byte(segment: &Path, fix_crc: bool) -> u64 {
    let bytes = std::fs::read(segment).unwrap();
    let header = SegmentHeader::decode(&bytes[..SEGMENT_HEADER_BYTES]).unwrap();
    let (offset, mut record) = records_of(segment)
        .into_iter()
        .find(|(_, record)| record[8] == PUT_KIND)
        .expect("a put record");
    record[CIPHERTEXT_OFFSET_IN_RECORD + 3] ^= 0x40;
    if fix_crc {
        let bulk_crc = crc32c::crc32c(&record[16..]);
        record[4..8].copy_from_slice(&bulk_crc.to_le_bytes());
        let write_round = u32::from_le_bytes(record[12..16].try_into().unwrap());
        seal_record(&mut record, write_round, header.segment_id);
    }
    let mut bytes = std::fs::read(segment).unwrap();
    bytes[offset..offset + record.len()].copy_from_slice(&record);
    std::fs::write(segment, bytes).unwrap();
    offset as u64
}

/// A read-only scan of the stopped channel `c1` (what `channelctl inspect` reads).
fn scan(config: &FileChannelConfig) -> ChannelScan {
    scan_channel(&RealFs::auto(), "c1", config, &NoProgress).unwrap()
}

/// The key id each segment of `dir` needs (`None` for a segment in clear), oldest first.
fn segment_key_ids(config: &FileChannelConfig, dir: &Path) -> Vec<Option<String>> {
    scan(config)
        .segments
        .iter()
        .filter(|segment| segment.path.parent() == Some(dir))
        .map(|segment| {
            let header = segment.header.as_ref().expect("a valid segment header");
            header.required_key_id().map(str::to_string)
        })
        .collect()
}

fn only_segment(config: &FileChannelConfig) -> PathBuf {
    let segments = scan(config).segments;
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments[0].path.clone()
}

/// Writes events, then checks they come back identical after a restart from the
/// checkpoint and after a full replay.
fn assert_round_trip(config: &FileChannelConfig, root: &Path, events: &[Event], batch: usize) {
    {
        let channel = open(root, config);
        put_events(&channel, events, batch);
        assert_eq!(peek_events(&channel), events, "before restart");
    }
    {
        let channel = open(root, config);
        assert_eq!(
            channel.recovery_report().unwrap().path,
            RecoveryPath::Checkpoint
        );
        assert_eq!(peek_events(&channel), events, "after restart");
    }
    std::fs::remove_file(checkpoint_file(root)).unwrap();
    let channel = open(root, config);
    assert_eq!(
        channel.recovery_report().unwrap().path,
        RecoveryPath::FullReplay
    );
    assert_eq!(peek_events(&channel), events, "after a full replay");
    let mut transaction = channel.begin().unwrap();
    for expected in events {
        assert_eq!(transaction.take().unwrap().as_ref(), Some(expected));
    }
    assert_eq!(transaction.take().unwrap(), None);
    transaction.commit().unwrap();
}

fn marker_events(count: usize) -> Vec<Event> {
    (0..count).map(event_with_marker).collect()
}

#[test]
fn encrypted_events_round_trip_with_headers_across_restarts_and_full_replay() {
    let root = tempfile::tempdir().unwrap();
    write_key(root.path(), "k1", 1);
    let config = config(
        root.path(),
        Some(encryption(root.path(), "k1", &["k1"])),
        Compression::None,
    );
    assert_round_trip(&config, root.path(), &marker_events(250), 40);
}

#[test]
fn compressed_events_round_trip_across_restarts_and_full_replay() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), None, Compression::Lz4);
    assert_round_trip(&config, root.path(), &marker_events(250), 40);
}

#[test]
fn compressed_and_encrypted_events_round_trip_including_transactions_of_several_records() {
    let root = tempfile::tempdir().unwrap();
    write_key(root.path(), "k1", 1);
    let config = config(
        root.path(),
        Some(encryption(root.path(), "k1", &["k1"])),
        Compression::Lz4,
    );
    // 4000 events of about 1 KiB in one transaction need several ~1 MiB put records.
    let mut events: Vec<Event> = (0..4000)
        .map(|index| {
            let mut event = event_with_marker(index);
            event.body = format!(
                "{}{}",
                String::from_utf8_lossy(&event.body),
                "x".repeat(900)
            )
            .into_bytes()
            .into();
            event
        })
        .collect();
    events.push(Event::from_body(Vec::new()));
    assert_round_trip(&config, root.path(), &events, 5000);
}

#[test]
fn rotating_the_active_key_across_restarts_keeps_older_segments_readable() {
    let root = tempfile::tempdir().unwrap();
    write_key(root.path(), "k1", 1);
    write_key(root.path(), "k2", 2);
    let mut first = test_config(root.path(), 2);
    first.encryption = Some(encryption(root.path(), "k1", &["k1"]));
    let mut rotated = first.clone();
    rotated.encryption = Some(encryption(root.path(), "k2", &["k1", "k2"]));
    let old_events = marker_events(60);
    let new_events: Vec<Event> = (60..120).map(event_with_marker).collect();
    {
        let channel = open(root.path(), &first);
        put_events(&channel, &old_events, 10);
    }
    {
        let channel = open(root.path(), &rotated);
        put_events(&channel, &new_events, 10);
        assert_eq!(peek_events(&channel).len(), 120);
    }
    let mut key_ids: Vec<String> = rotated
        .data_dirs
        .iter()
        .flat_map(|dir| segment_key_ids(&rotated, dir))
        .map(|key_id| key_id.expect("every segment is encrypted"))
        .collect();
    key_ids.sort();
    key_ids.dedup();
    assert_eq!(key_ids, ["k1", "k2"], "segments of both keys are on disk");

    std::fs::remove_file(checkpoint_file(root.path())).unwrap();
    let all: Vec<Event> = old_events.iter().chain(&new_events).cloned().collect();
    {
        let channel = open(root.path(), &rotated);
        assert_eq!(
            peek_events(&channel),
            all,
            "mixed segments after a full replay"
        );
        let mut transaction = channel.begin().unwrap();
        for expected in &all[..70] {
            assert_eq!(transaction.take().unwrap().as_ref(), Some(expected));
        }
        transaction.commit().unwrap();
    }
    let channel = open(root.path(), &rotated);
    assert_eq!(peek_events(&channel), all[70..]);
}

#[test]
fn a_key_missing_from_the_configuration_stops_the_open_naming_key_and_segment_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    write_key(root.path(), "k1", 1);
    write_key(root.path(), "k2", 2);
    let written = config(
        root.path(),
        Some(encryption(root.path(), "k1", &["k1"])),
        Compression::Lz4,
    );
    let events = marker_events(50);
    {
        let channel = open(root.path(), &written);
        put_events(&channel, &events, 10);
    }
    let segment = only_segment(&written);
    let before = disk_state(root.path());

    let without_k1 = config(
        root.path(),
        Some(encryption(root.path(), "k2", &["k2"])),
        Compression::Lz4,
    );
    let error = open_err(&without_k1);
    match &error {
        OpenError::SegmentKeyMissing {
            segment: named,
            key_id,
            configured_key_ids,
            ..
        } => {
            assert_eq!(named, &segment);
            assert_eq!(key_id, "k1");
            assert_eq!(configured_key_ids, "k2");
        }
        other => panic!("expected SegmentKeyMissing, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("\"k1\"") && message.contains(&segment.display().to_string()));

    let unencrypted = config(root.path(), None, Compression::None);
    assert!(matches!(
        open_err(&unencrypted),
        OpenError::SegmentKeyMissing { ref key_id, .. } if key_id == "k1"
    ));
    assert_eq!(
        disk_state(root.path()),
        before,
        "failed opens changed nothing"
    );

    let restored = config(
        root.path(),
        Some(encryption(root.path(), "k2", &["k1", "k2"])),
        Compression::Lz4,
    );
    let channel = open(root.path(), &restored);
    assert_eq!(peek_events(&channel), events);
}

#[test]
fn an_unreadable_key_file_stops_the_open_naming_key_and_file_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let key_file = write_key(root.path(), "k1", 1);
    let config = config(
        root.path(),
        Some(encryption(root.path(), "k1", &["k1"])),
        Compression::None,
    );
    let events = marker_events(30);
    {
        let channel = open(root.path(), &config);
        put_events(&channel, &events, 7);
    }
    let data_before = disk_state(&root.path().join("data0"));
    let moved_away = root.path().join("k1.key.elsewhere");
    std::fs::rename(&key_file, &moved_away).unwrap();
    let error = open_err(&config);
    match &error {
        OpenError::Key {
            source: KeyError::Unreadable { key_id, file, .. },
            ..
        } => {
            assert_eq!(key_id, "k1");
            assert_eq!(file, &key_file);
        }
        other => panic!("expected an unreadable key, got {other:?}"),
    }
    assert!(error.to_string().contains(&key_file.display().to_string()));

    std::fs::write(&key_file, b"not a key").unwrap();
    let error = open_err(&config);
    assert!(
        matches!(
            &error,
            OpenError::Key {
                source: KeyError::NotAKey { key_id, found_bytes: 9, .. },
                ..
            } if key_id == "k1"
        ),
        "{error}"
    );
    assert_eq!(disk_state(&root.path().join("data0")), data_before);

    std::fs::rename(&moved_away, &key_file).unwrap();
    let channel = open(root.path(), &config);
    assert_eq!(peek_events(&channel), events);
}

#[test]
fn a_replaced_key_file_is_refused_at_open_before_any_event_is_served() {
    let root = tempfile::tempdir().unwrap();
    let key_file = write_key(root.path(), "k1", 1);
    let original_key = std::fs::read(&key_file).unwrap();
    let config = config(
        root.path(),
        Some(encryption(root.path(), "k1", &["k1"])),
        Compression::None,
    );
    let events = marker_events(20);
    {
        let channel = open(root.path(), &config);
        put_events(&channel, &events, 5);
    }
    let segment = only_segment(&config);
    write_key(root.path(), "k1", 99);
    match open_err(&config) {
        OpenError::SegmentKeyMismatch {
            segment: named,
            key_id,
            key_file: named_file,
            ..
        } => {
            assert_eq!(named, segment);
            assert_eq!(key_id, "k1");
            assert_eq!(named_file, key_file);
        }
        other => panic!("expected SegmentKeyMismatch, got {other:?}"),
    }
    std::fs::write(&key_file, original_key).unwrap();
    let channel = open(root.path(), &config);
    assert_eq!(peek_events(&channel), events);
}

#[test]
fn a_key_derived_from_a_password_file_opens_the_channel_again_and_a_wrong_password_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let password_file = root.path().join("k1.password");
    std::fs::write(&password_file, "correct horse battery staple\n").unwrap();
    let mut config = test_config(root.path(), 1);
    config.encryption = Some(EncryptionConfig {
        active_key_id: "k1".to_string(),
        keys: BTreeMap::from([(
            "k1".to_string(),
            KeySource::PasswordFile(password_file.clone()),
        )]),
    });
    let events = marker_events(20);
    {
        let channel = open(root.path(), &config);
        put_events(&channel, &events, 5);
    }
    assert!(files_containing(root.path(), MARKER.as_bytes()).is_empty());
    std::fs::write(&password_file, "wrong horse").unwrap();
    assert!(matches!(
        open_err(&config),
        OpenError::SegmentKeyMismatch { .. }
    ));
    std::fs::write(&password_file, "correct horse battery staple").unwrap();
    let channel = open(root.path(), &config);
    assert_eq!(peek_events(&channel), events);
}

#[test]
fn a_ciphertext_byte_flipped_under_a_valid_crc_is_reported_as_corruption_and_never_delivered() {
    let root = tempfile::tempdir().unwrap();
    write_key(root.path(), "k1", 1);
    let config = config(
        root.path(),
        Some(encryption(root.path(), "k1", &["k1"])),
        Compression::None,
    );
    {
        let channel = open(root.path(), &config);
        put_events(&channel, &marker_events(30), 10);
    }
    let segment = only_segment(&config);
    let damaged_offset = flip_ciphertext_byte(&segment, true);

    // Replay reads only the clear event count, so the channel opens; the take that
    // reaches the damaged record fails instead of handing out altered bytes.
    let channel = open(root.path(), &config);
    let mut transaction = channel.begin().unwrap();
    match transaction.take() {
        Err(ChannelError::Corruption {
            file,
            offset,
            detail,
            ..
        }) => {
            assert_eq!(file, segment);
            assert_eq!(offset, damaged_offset);
            assert!(detail.contains("authentication"), "{detail}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(matches!(
        transaction.take(),
        Err(ChannelError::Failed { .. })
    ));
    drop(transaction);
    assert!(matches!(channel.health(), ChannelHealth::Failed { .. }));
}

#[test]
fn a_ciphertext_byte_flipped_before_later_records_stops_the_open_as_corruption() {
    let root = tempfile::tempdir().unwrap();
    write_key(root.path(), "k1", 1);
    let config = config(
        root.path(),
        Some(encryption(root.path(), "k1", &["k1"])),
        Compression::Lz4,
    );
    {
        let channel = open(root.path(), &config);
        put_events(&channel, &marker_events(30), 10);
    }
    let segment = only_segment(&config);
    let damaged_offset = flip_ciphertext_byte(&segment, false);
    std::fs::remove_file(checkpoint_file(root.path())).unwrap();
    match open_err(&config) {
        OpenError::Corruption { file, offset, .. } => {
            assert_eq!(file, segment);
            assert_eq!(offset, damaged_offset);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn no_plaintext_body_or_header_bytes_reach_the_data_or_checkpoint_files() {
    for compression in [Compression::None, Compression::Lz4] {
        let root = tempfile::tempdir().unwrap();
        write_key(root.path(), "k1", 1);
        let mut config = config(
            root.path(),
            Some(encryption(root.path(), "k1", &["k1"])),
            compression,
        );
        config.max_file_size_bytes = 64 * 1024;
        {
            let channel = open(root.path(), &config);
            put_events(&channel, &marker_events(600), 25);
            take_committed(&channel, 150);
            // A checkpoint with takes in flight, then a clean close (another checkpoint).
            let mut open_take = channel.begin().unwrap();
            open_take.take().unwrap().unwrap();
            channel.checkpoint_now().unwrap();
            open_take.rollback().unwrap();
        }
        assert!(checkpoint_file(root.path()).exists());
        assert!(
            files_containing(root.path(), MARKER.as_bytes()).is_empty(),
            "{compression:?}: the marker is on disk"
        );
        assert!(files_containing(root.path(), b"/api/v1/items").is_empty());
        let channel = open(root.path(), &config);
        assert_eq!(peek_events(&channel).len(), 450);
    }
}

#[test]
fn the_plaintext_scan_finds_the_marker_when_nothing_is_encrypted() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), None, Compression::None);
    {
        let channel = open(root.path(), &config);
        put_events(&channel, &marker_events(10), 10);
    }
    assert!(!files_containing(root.path(), MARKER.as_bytes()).is_empty());
}

#[test]
fn segments_written_in_clear_stay_readable_after_encryption_is_enabled() {
    let root = tempfile::tempdir().unwrap();
    write_key(root.path(), "k1", 1);
    let plain = config(root.path(), None, Compression::None);
    let encrypted = config(
        root.path(),
        Some(encryption(root.path(), "k1", &["k1"])),
        Compression::Lz4,
    );
    let events = marker_events(40);
    {
        let channel = open(root.path(), &plain);
        put_events(&channel, &events[..20], 10);
    }
    {
        let channel = open(root.path(), &encrypted);
        put_events(&channel, &events[20..], 10);
    }
    let needs = segment_key_ids(&encrypted, &encrypted.data_dirs[0]);
    assert_eq!(needs, [None, Some("k1".to_string())]);
    std::fs::remove_file(checkpoint_file(root.path())).unwrap();
    let channel = open(root.path(), &encrypted);
    assert_eq!(peek_events(&channel), events);
}

#[test]
fn lz4_at_least_halves_the_bytes_written_for_text_like_events() {
    let written_bytes = |compression: Compression| {
        let root = tempfile::tempdir().unwrap();
        let config = config(root.path(), None, compression);
        let channel = open(root.path(), &config);
        put_events(&channel, &marker_events(2000), 100);
        channel
            .dir_stats()
            .iter()
            .map(|(_, stats)| {
                stats
                    .bytes_written
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum::<u64>()
    };
    let plain = written_bytes(Compression::None);
    let compressed = written_bytes(Compression::Lz4);
    assert!(
        compressed * 2 <= plain,
        "lz4 wrote {compressed} bytes, plain {plain}"
    );
}

#[test]
fn inspection_names_each_segments_key_and_reading_events_back_authenticates_them() {
    let root = tempfile::tempdir().unwrap();
    write_key(root.path(), "k1", 1);
    let encryption = encryption(root.path(), "k1", &["k1"]);
    let config = config(root.path(), Some(encryption.clone()), Compression::Lz4);
    let events = marker_events(30);
    {
        let channel = open(root.path(), &config);
        put_events(&channel, &events, 10);
        take_committed(&channel, 5);
    }
    let scanned = scan(&config);
    assert_eq!(scanned.segments.len(), 1, "{:?}", scanned.segments);
    let segment = &scanned.segments[0];
    let header = segment.header.as_ref().expect("a valid segment header");
    assert_eq!(header.required_key_id(), Some("k1"));
    let figures = scanned.segment_figures(segment);
    assert_eq!(figures.put_records, 3);
    assert_eq!(figures.commit_records, 4);
    let (mut put_events_counted, mut take_events_counted) = (0, 0);
    for record in &segment.records {
        match &record.body {
            RecordBody::Put { event_count } => put_events_counted += event_count,
            RecordBody::Take { pointers } => take_events_counted += pointers.len(),
            RecordBody::Commit(_) | RecordBody::Rollback => {}
        }
    }
    assert_eq!((put_events_counted, take_events_counted), (30, 5));
    assert!(scanned.problems().is_empty(), "{:?}", scanned.problems());

    // Reading the queued events back opens (and so authenticates) all three put records.
    let read_back = scanned
        .read_events(&RealFs::auto(), None, usize::MAX)
        .unwrap();
    let read_back: Vec<Event> = read_back.into_iter().map(|dumped| dumped.event).collect();
    assert_eq!(read_back, events[5..]);

    let mut without_keys = config.clone();
    without_keys.encryption = None;
    let refused = scan(&without_keys)
        .read_events(&RealFs::auto(), None, 1)
        .expect_err("sealed events cannot be read without their key");
    assert!(refused.to_string().contains("\"k1\""), "{refused}");

    let damaged_offset = flip_ciphertext_byte(&segment.path, true);
    match scan(&config).read_events(&RealFs::auto(), None, usize::MAX) {
        Err(InspectError::UnreadableEvent { offset, detail, .. }) => {
            assert_eq!(offset, damaged_offset);
            assert!(detail.contains("authentication"), "{detail}");
        }
        other => panic!("the altered record must fail to open, got {other:?}"),
    }
}

#[test]
fn a_spillable_channels_overflow_is_encrypted_and_compressed_on_disk() {
    let root = tempfile::tempdir().unwrap();
    write_key(root.path(), "k1", 1);
    let mut config = SpillableChannelConfig::new(config(
        root.path(),
        Some(encryption(root.path(), "k1", &["k1"])),
        Compression::Lz4,
    ));
    config.memory_capacity = 0;
    config.overflow_capacity = 10_000;
    let events = marker_events(300);
    {
        let channel = SpillableChannel::open("s1", config.clone()).unwrap();
        put_events(&channel, &events, 50);
        assert_eq!(channel.overflow_events(), 300);
    }
    assert!(files_containing(root.path(), MARKER.as_bytes()).is_empty());
    let channel = SpillableChannel::open("s1", config).unwrap();
    assert_eq!(peek_events(&channel), events);
}
