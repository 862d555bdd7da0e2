//! How recovery treats the end of a log: every prefix of a segment, torn tails, and damage
//! in the middle.

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use millrace_engine::config::FileChannelConfig;
use millrace_engine::record::{decode_record, RecordKind, SEGMENT_HEADER_BYTES};
use millrace_engine::storage::{CrashMode, SimFs, Storage};
use millrace_engine::{Channel, FileChannel, OpenError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Transactions written before the prefix sweep.
const PREFIX_SWEEP_TRANSACTIONS: usize = 120;

fn sim_config() -> FileChannelConfig {
    let mut config =
        FileChannelConfig::new(vec![PathBuf::from("/sim/data")], PathBuf::from("/sim/cp"));
    config.capacity = 10_000;
    config.transaction_capacity = 1_000;
    config.max_file_size_bytes = 1024 * 1024;
    // These tests are about reading the log: no checkpoint lets a restart skip it.
    config.checkpoint_on_close = false;
    config
}

/// The shared test config, without a checkpoint at close (see `sim_config`).
fn log_only_config(root: &Path, dir_count: usize) -> FileChannelConfig {
    let mut config = test_config(root, dir_count);
    config.checkpoint_on_close = false;
    config
}

/// A committed transaction as the test saw it.
enum Committed {
    Put(Vec<String>),
    Take(usize),
}

/// Byte offsets where each commit record ends, in file order.
fn commit_record_ends(segment: &[u8], segment_id: u32) -> Vec<u64> {
    let mut ends = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while let Ok((header, _)) = decode_record(&segment[offset..], segment_id) {
        offset += header.record_bytes as usize;
        if header.kind == RecordKind::Commit {
            ends.push(offset as u64);
        }
    }
    ends
}

fn expected_queue(committed: &[Committed], complete: usize) -> Vec<String> {
    let mut queue = VecDeque::new();
    for transaction in &committed[..complete] {
        match transaction {
            Committed::Put(bodies) => queue.extend(bodies.iter().cloned()),
            Committed::Take(count) => {
                queue.drain(..*count);
            }
        }
    }
    queue.into()
}

#[test]
fn every_prefix_of_the_last_segment_recovers_exactly_the_transactions_committed_inside_it() {
    let disk = SimFs::default();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let mut committed = Vec::new();
    {
        let channel =
            FileChannel::open_with_storage("c1", sim_config(), Arc::clone(&storage)).unwrap();
        let mut next = 0;
        for index in 0..PREFIX_SWEEP_TRANSACTIONS {
            if index % 4 == 3 {
                let taken = take_committed(&channel, 2);
                committed.push(Committed::Take(taken.len()));
            } else {
                let count = 1 + index % 3;
                let names: Vec<String> = (next..next + count)
                    .map(|id| format!("event-{id}"))
                    .collect();
                next += count;
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                put_committed(&channel, &refs);
                committed.push(Committed::Put(names));
            }
        }
        channel.close().unwrap();
    }
    let segment_path = Path::new("/sim/data/segment-0000000001.log");
    let segment = disk.read_file(segment_path).unwrap();
    let ends = commit_record_ends(&segment, 1);
    assert_eq!(
        ends.len(),
        PREFIX_SWEEP_TRANSACTIONS,
        "one segment holds every transaction"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for prefix_len in 0..=segment.len() {
        let image = disk.crash_image(CrashMode::KeepUnsynced, &mut rng);
        image
            .modify_file(segment_path, |bytes| bytes.truncate(prefix_len))
            .unwrap();
        let complete = ends.iter().filter(|&&end| end <= prefix_len as u64).count();
        let channel = FileChannel::open_with_storage("c1", sim_config(), Arc::new(image))
            .unwrap_or_else(|error| panic!("prefix of {prefix_len} bytes: {error}"));
        assert_eq!(
            peek_all(&channel),
            expected_queue(&committed, complete),
            "prefix of {prefix_len} bytes holds {complete} complete transactions"
        );
    }
    println!(
        "prefixes checked: {} of a segment holding {PREFIX_SWEEP_TRANSACTIONS} transactions",
        segment.len() + 1
    );
}

fn only_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    segments.sort();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.pop().unwrap()
}

fn record_starts(segment: &[u8], segment_id: u32) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while let Ok((header, _)) = decode_record(&segment[offset..], segment_id) {
        starts.push(offset);
        offset += header.record_bytes as usize;
    }
    starts
}

#[test]
fn a_torn_tail_on_real_files_is_truncated_with_its_file_and_offset_reported() {
    let root = tempfile::tempdir().unwrap();
    let config = log_only_config(root.path(), 1);
    let names = bodies(0..10, "t");
    {
        let channel = open(root.path(), &config);
        for name in &names {
            put_committed(&channel, &[name]);
        }
    }
    let segment_path = only_segment(&config.data_dirs[0]);
    let mut bytes = std::fs::read(&segment_path).unwrap();
    let clean_len = bytes.len() as u64;
    // The beginning of one more record, cut off mid-way: a write the crash interrupted.
    let starts = record_starts(&bytes, 1);
    let partial = bytes[starts[0]..starts[0] + 20].to_vec();
    bytes.extend_from_slice(&partial);
    std::fs::write(&segment_path, &bytes).unwrap();
    let channel = open(root.path(), &config);
    assert_eq!(peek_all(&channel), names);
    let report = channel.recovery_report().unwrap();
    assert_eq!(report.truncated_tails.len(), 1);
    assert_eq!(report.truncated_tails[0].file, segment_path);
    assert_eq!(report.truncated_tails[0].offset, clean_len);
    assert_eq!(report.truncated_tails[0].discarded_bytes, 20);
    assert_eq!(std::fs::metadata(&segment_path).unwrap().len(), clean_len);
}

#[test]
fn damage_followed_by_valid_records_refuses_to_start_naming_file_and_offset() {
    let root = tempfile::tempdir().unwrap();
    let config = log_only_config(root.path(), 1);
    {
        let channel = open(root.path(), &config);
        for name in bodies(0..10, "m") {
            put_committed(&channel, &[&name]);
        }
        // One commit per write round: the records after the damage below come from
        // several later rounds, which a power loss cannot have left behind a torn write.
    }
    let segment_path = only_segment(&config.data_dirs[0]);
    let mut bytes = std::fs::read(&segment_path).unwrap();
    let starts = record_starts(&bytes, 1);
    let damaged_record = starts[starts.len() / 2];
    bytes[damaged_record + 40] ^= 0x01;
    std::fs::write(&segment_path, &bytes).unwrap();
    let error = FileChannel::open("c1", config.clone())
        .err()
        .expect("corruption");
    match &error {
        OpenError::Corruption { file, offset, .. } => {
            assert_eq!(file, &segment_path);
            assert_eq!(*offset, damaged_record as u64);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&segment_path.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("offset {damaged_record}")),
        "{message}"
    );
    // Nothing was changed: the file is as the damage left it.
    assert_eq!(std::fs::read(&segment_path).unwrap(), bytes);
}

#[test]
fn damage_in_an_older_segment_is_corruption_even_at_its_end() {
    let root = tempfile::tempdir().unwrap();
    let config = log_only_config(root.path(), 1);
    {
        let channel = open(root.path(), &config);
        put_committed(&channel, &["first-session"]);
    }
    {
        let channel = open(root.path(), &config);
        put_committed(&channel, &["second-session"]);
    }
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&config.data_dirs[0])
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    segments.sort();
    assert_eq!(segments.len(), 2, "each session writes its own segment");
    let older = &segments[0];
    let mut bytes = std::fs::read(older).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(older, &bytes).unwrap();
    // Without a checkpoint to skip the old segment, the full replay must find the damage.
    let _ = std::fs::remove_file(config.checkpoint_dir.join("checkpoint"));
    let error = FileChannel::open("c1", config.clone())
        .err()
        .expect("corruption");
    assert!(
        matches!(error, OpenError::Corruption { ref file, .. } if file == older),
        "{error}"
    );
}

#[test]
fn a_segment_whose_creation_never_finished_is_removed() {
    let root = tempfile::tempdir().unwrap();
    let config = log_only_config(root.path(), 1);
    {
        let channel = open(root.path(), &config);
        put_committed(&channel, &["kept"]);
    }
    let stray = config.data_dirs[0].join("segment-0000000099.log");
    std::fs::write(&stray, vec![0u8; 4096]).unwrap();
    let channel = open(root.path(), &config);
    assert_eq!(peek_all(&channel), ["kept"]);
    assert_eq!(
        channel
            .recovery_report()
            .unwrap()
            .removed_unfinished_segments,
        vec![stray.clone()]
    );
    assert!(!stray.exists());
    put_committed(&channel, &["after"]);
    drop(channel);
    let channel = open(root.path(), &config);
    assert_eq!(
        peek_all(&channel),
        ["kept", "after"],
        "new segments get ids after the stray one"
    );
}

/// Found by the real-ext4 power-loss test with outagefs's zero-filled writes
/// (`tests/tests/power_loss_ext4.rs`): a disk that rewrites a segment's first block and
/// loses power between zeroing it and writing it leaves a segment that looks like one
/// whose creation never finished. Recovery used to remove it, find the checkpoint that
/// names it unusable, and replay the remaining log: the segment's acknowledged events
/// were gone without a word.
#[test]
fn a_segment_a_checkpoint_names_is_corruption_when_its_header_and_data_are_gone() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 1);
    {
        let channel = open(root.path(), &config);
        put_committed(&channel, &["acknowledged-1", "acknowledged-2"]);
        // Closing writes a checkpoint whose queue points into the segment.
    }
    let segment_path = only_segment(&config.data_dirs[0]);
    let length = std::fs::metadata(&segment_path).unwrap().len();
    std::fs::write(&segment_path, vec![0u8; length as usize]).unwrap();
    let error = FileChannel::open("c1", config.clone())
        .err()
        .expect("the destroyed segment must be reported");
    match &error {
        OpenError::Corruption { file, offset, .. } => {
            assert_eq!(file, &segment_path);
            assert_eq!(*offset, 0);
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(error.to_string().contains("checkpoint"), "{error}");
    assert!(segment_path.exists(), "the evidence is kept");
}
