//! Offline inspection and repair of a file channel on real files: inspect, verify,
//! salvage, checkpoint rebuild and replay.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use millrace_engine::config::FileChannelConfig;
use millrace_engine::file::RecoveryPath;
use millrace_engine::inspect::{
    execute_replay, plan_replay, rebuild_checkpoint, salvage, scan_channel, ChannelScan,
    DamageKind, InspectError, NoProgress, RecordBody, ReplayPoint, Severity, SlotState, Verdict,
};
use millrace_engine::storage::{RealFs, Storage};
use millrace_engine::{Channel, ChannelError, Event, FileChannel};

const CHANNEL: &str = "c1";

fn storage() -> Arc<dyn Storage> {
    Arc::new(RealFs::auto())
}

/// One data dir and large segments, so that every record lands in one known segment.
fn single_segment_config(root: &Path) -> FileChannelConfig {
    test_config(root, 1)
}

fn scan(config: &FileChannelConfig) -> ChannelScan {
    scan_channel(storage().as_ref(), CHANNEL, config, &NoProgress).expect("scan")
}

/// Five transactions of three events each (`t{transaction}-{event}`), then one take
/// transaction of the first four events; closed cleanly.
fn five_put_transactions_and_one_take(root: &Path, config: &FileChannelConfig) {
    let channel = open(root, config);
    for transaction in 0..5 {
        let bodies: Vec<String> = (0..3)
            .map(|event| format!("t{transaction}-{event}"))
            .collect();
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        put_committed(&channel, &refs);
    }
    assert_eq!(take_committed(&channel, 4).len(), 4);
    channel.close().unwrap();
}

fn all_bodies_after(skip: usize) -> Vec<String> {
    (0..5)
        .flat_map(|transaction| (0..3).map(move |event| format!("t{transaction}-{event}")))
        .skip(skip)
        .collect()
}

fn only_segment(config: &FileChannelConfig) -> PathBuf {
    let scan = scan(config);
    assert_eq!(scan.segments.len(), 1, "expected one segment");
    scan.segments[0].path.clone()
}

/// Offset of the `nth` put record of the only segment.
fn put_record_offset(config: &FileChannelConfig, nth: usize) -> u64 {
    scan(config).segments[0]
        .records
        .iter()
        .filter(|record| matches!(record.body, RecordBody::Put { .. }))
        .nth(nth)
        .expect("put record")
        .offset
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

mod inspecting_a_stopped_channel {
    use super::*;

    #[test]
    fn reports_segments_records_queue_and_checkpoint_without_changing_a_byte() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        five_put_transactions_and_one_take(root.path(), &config);
        let segment = only_segment(&config);
        let before = std::fs::read(&segment).unwrap();

        let scan = scan(&config);
        assert_eq!(scan.verdict(), Verdict::Clean, "{:?}", scan.problems());
        let figures = scan.segment_figures(&scan.segments[0]);
        assert_eq!(figures.put_records, 5);
        assert_eq!(figures.take_records, 1);
        assert_eq!(figures.commit_records, 6);
        assert_eq!(figures.write_order_range, Some((1, 12)));
        assert_eq!(figures.live_events, 11);
        assert!(figures.commit_time_range_unix_ms.is_some());
        let queue = scan.queue_summary();
        assert_eq!(queue.depth, 11);
        assert!(queue.oldest_event_committed_unix_ms <= queue.newest_event_committed_unix_ms);
        match &scan.checkpoints[0].state {
            SlotState::Valid(summary) => {
                assert_eq!(summary.queued_events, 11);
                assert_eq!(summary.covered_write_order_id, 13);
            }
            other => panic!("primary checkpoint not valid: {other:?}"),
        }
        let dirs = scan.data_dirs(storage().as_ref());
        assert_eq!(dirs[0].segment_count, 1);
        assert!(dirs[0].available_bytes.is_some());
        assert_eq!(std::fs::read(&segment).unwrap(), before);
    }

    #[test]
    fn dumps_queued_events_with_headers_from_a_write_order_id_and_up_to_a_limit() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        {
            let channel = open(root.path(), &config);
            let mut transaction = channel.begin().unwrap();
            transaction
                .put(Event::from_body("first").with_header("host", "a"))
                .unwrap();
            transaction.commit().unwrap();
            put_committed(&channel, &["second", "third", "fourth"]);
        }
        let scan = scan(&config);
        let all = scan.read_events(storage().as_ref(), None, 10).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(
            all[0].event.headers.get("host").map(String::as_str),
            Some("a")
        );
        assert_eq!(&all[0].event.body[..], b"first");
        let second_put_id = all[1].source.put_write_order_id;
        let later = scan
            .read_events(storage().as_ref(), Some(second_put_id), 2)
            .unwrap();
        let bodies: Vec<&[u8]> = later.iter().map(|dumped| &dumped.event.body[..]).collect();
        assert_eq!(bodies, vec![&b"second"[..], &b"third"[..]]);
        assert_eq!(later[0].position, 1);
    }
}

mod verifying {
    use super::*;

    #[test]
    fn a_clean_channel_has_no_problems() {
        let root = tempfile::tempdir().unwrap();
        let mut config = test_config(root.path(), 2);
        config.max_file_size_bytes = 4096;
        config.retention_time = std::time::Duration::from_secs(3600);
        config.use_dual_checkpoints = true;
        config.backup_checkpoint_dir = Some(root.path().join("backup"));
        {
            let channel = open(root.path(), &config);
            for chunk in bodies(0..600, "clean-event-with-a-longer-body-").chunks(7) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                put_committed(&channel, &refs);
            }
            take_committed(&channel, 150);
        }
        let scan = scan(&config);
        assert!(scan.segments.len() > 2, "several segments expected");
        assert_eq!(scan.problems(), vec![]);
        assert_eq!(scan.verdict(), Verdict::Clean);
        assert_eq!(scan.queue_summary().depth, 450);
        assert_eq!(scan.checkpoints.len(), 2);
    }

    #[test]
    fn a_flipped_byte_in_the_middle_of_a_segment_is_corruption_at_that_record() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        five_put_transactions_and_one_take(root.path(), &config);
        let segment = only_segment(&config);
        let damaged_record = put_record_offset(&config, 2);
        flip_byte(&segment, damaged_record + 40);

        let scan = scan(&config);
        assert_eq!(scan.verdict(), Verdict::Damaged);
        let problems = scan.problems();
        let corruption = problems
            .iter()
            .find(|problem| problem.kind == "corruption")
            .expect("corruption reported");
        assert_eq!(corruption.file, segment);
        assert_eq!(corruption.offset, Some(damaged_record));
        assert_eq!(corruption.severity, Severity::Error);
        assert!(
            corruption.detail.contains("checksum"),
            "{}",
            corruption.detail
        );
        // Resync: the records after the damage are still found.
        assert_eq!(scan.segment_figures(&scan.segments[0]).commit_records, 6);
        let lost = problems
            .iter()
            .find(|problem| problem.kind == "lost-records")
            .expect("the damaged transaction is named");
        assert!(
            lost.detail.contains("missing 3 put events"),
            "{}",
            lost.detail
        );
        // Once a restart has to read the segment (no checkpoint covers it), it refuses
        // too: verify agrees with recovery.
        std::fs::remove_file(config.checkpoint_dir.join("checkpoint")).unwrap();
        assert!(FileChannel::open(CHANNEL, config.clone()).is_err());
    }

    #[test]
    fn every_damaged_record_is_reported_not_just_the_first() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        five_put_transactions_and_one_take(root.path(), &config);
        let segment = only_segment(&config);
        let first = put_record_offset(&config, 1);
        let second = put_record_offset(&config, 3);
        flip_byte(&segment, first + 36);
        flip_byte(&segment, second + 36);
        let offsets: Vec<Option<u64>> = scan(&config)
            .problems()
            .iter()
            .filter(|problem| problem.kind == "corruption")
            .map(|problem| problem.offset)
            .collect();
        assert_eq!(offsets, vec![Some(first), Some(second)]);
    }

    #[test]
    fn a_torn_tail_is_a_warning_at_the_offset_where_the_last_write_was_cut() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        five_put_transactions_and_one_take(root.path(), &config);
        let segment = only_segment(&config);
        let last = scan(&config).segments[0].records.last().unwrap().offset;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.set_len(last + 10).unwrap();

        let scan = scan(&config);
        assert_eq!(scan.verdict(), Verdict::RepairsItself);
        let problems = scan.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, "torn-tail");
        assert_eq!(problems[0].file, segment);
        assert_eq!(problems[0].offset, Some(last));
        assert_eq!(
            scan.segments[0].damaged_regions[0].kind,
            DamageKind::TornTail
        );
    }

    #[test]
    fn a_damaged_checkpoint_is_reported_with_its_file_and_offset() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        five_put_transactions_and_one_take(root.path(), &config);
        let checkpoint = config.checkpoint_dir.join("checkpoint");
        let length = std::fs::metadata(&checkpoint).unwrap().len();
        flip_byte(&checkpoint, 70);

        let scan = scan(&config);
        let problems = scan.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, "checkpoint-unusable");
        assert_eq!(problems[0].file, checkpoint);
        assert_eq!(problems[0].offset, Some(length - 4));
        assert!(
            problems[0].detail.contains("checksum"),
            "{}",
            problems[0].detail
        );
        assert_eq!(scan.verdict(), Verdict::RepairsItself);
    }
}

mod salvaging {
    use super::*;

    #[test]
    fn salvage_keeps_every_event_outside_the_damaged_record_and_names_what_was_lost() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        five_put_transactions_and_one_take(root.path(), &config);
        let segment = only_segment(&config);
        let damaged_record = put_record_offset(&config, 2);
        flip_byte(&segment, damaged_record + 40);
        let before = std::fs::read(&segment).unwrap();

        let scan = scan(&config);
        let destination = root.path().join("salvaged");
        let report = salvage(&storage(), &scan, &destination, &NoProgress).unwrap();
        assert_eq!(report.events_salvaged, 8);
        assert_eq!(report.lost_put_events, 3);
        assert_eq!(report.damaged_transactions.len(), 1);
        let loss = report.damaged_transactions[0].loss.as_ref().unwrap();
        assert_eq!(loss.cause.as_ref().unwrap().file, segment);
        assert_eq!(loss.cause.as_ref().unwrap().offset, damaged_record);
        assert_eq!(report.missing_write_order_ids.len(), 1);
        assert_eq!(
            (
                report.missing_write_order_ids[0].1,
                report.missing_write_order_ids[0].2
            ),
            (5, 5),
            "the third transaction's put record had write-order id 5"
        );
        assert_eq!(
            std::fs::read(&segment).unwrap(),
            before,
            "the source is only read"
        );

        let salvaged = FileChannel::open(CHANNEL, report.destination.clone()).unwrap();
        let mut expected = all_bodies_after(4);
        expected.retain(|body| !body.starts_with("t2-"));
        assert_eq!(peek_all(&salvaged), expected);
    }

    #[test]
    fn salvage_refuses_a_destination_that_holds_files() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        five_put_transactions_and_one_take(root.path(), &config);
        let destination = root.path().join("busy");
        std::fs::create_dir_all(&destination).unwrap();
        std::fs::write(destination.join("something"), b"x").unwrap();
        let error = salvage(&storage(), &scan(&config), &destination, &NoProgress).unwrap_err();
        assert!(error.to_string().contains("not empty"), "{error}");
    }
}

mod rebuilding_the_checkpoint {
    use super::*;

    #[test]
    fn after_both_checkpoints_are_deleted_a_rebuild_lets_the_channel_start_from_a_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        let mut config = test_config(root.path(), 2);
        config.use_dual_checkpoints = true;
        config.backup_checkpoint_dir = Some(root.path().join("backup"));
        five_put_transactions_and_one_take(root.path(), &config);
        std::fs::remove_file(config.checkpoint_dir.join("checkpoint")).unwrap();
        std::fs::remove_file(root.path().join("backup/checkpoint")).unwrap();

        let report = rebuild_checkpoint(&storage(), CHANNEL, &config).unwrap();
        assert_eq!(report.recovery.path, RecoveryPath::FullReplay);
        assert_eq!(report.recovery.events_recovered, 11);
        assert!(report.moved_aside.is_empty());
        assert!(report.checkpoint.backup_written);

        let channel = open(root.path(), &config);
        let recovery = channel.recovery_report().unwrap();
        assert_eq!(recovery.path, RecoveryPath::Checkpoint);
        assert_eq!(recovery.records_replayed, 0, "{recovery:?}");
        assert_eq!(peek_all(&channel), all_bodies_after(4));
    }

    #[test]
    fn a_damaged_checkpoint_is_moved_aside_not_deleted() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        five_put_transactions_and_one_take(root.path(), &config);
        flip_byte(&config.checkpoint_dir.join("checkpoint"), 20);
        let report = rebuild_checkpoint(&storage(), CHANNEL, &config).unwrap();
        assert_eq!(report.moved_aside.len(), 1);
        assert!(report.moved_aside[0].1.exists());
        assert_eq!(scan(&config).verdict(), Verdict::Clean);
    }

    #[test]
    fn a_rebuild_refuses_a_channel_that_is_open() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        let channel = open(root.path(), &config);
        put_committed(&channel, &["a"]);
        let error = rebuild_checkpoint(&storage(), CHANNEL, &config).unwrap_err();
        assert!(error.to_string().contains("locked"), "{error}");
        drop(channel);
    }
}

mod replaying {
    use super::*;

    fn retained_config(root: &Path) -> FileChannelConfig {
        let mut config = test_config(root, 2);
        config.max_file_size_bytes = 2048;
        config.retention_time = std::time::Duration::from_secs(3600);
        config
    }

    /// Puts and takes `early-*` events, notes the point, then puts and takes `late-*`
    /// events and puts `queued-*` ones. Returns the point as `(unix ms, write-order id)`.
    fn history(root: &Path, config: &FileChannelConfig) -> (u64, u64) {
        let channel = open(root, config);
        for chunk in bodies(0..40, "early-").chunks(5) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        assert_eq!(take_committed(&channel, 40).len(), 40);
        channel.checkpoint_now().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let point_ms = millrace_engine::clock::unix_time_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        channel.close().unwrap();
        let scan = scan(config);
        let next_id = scan
            .segments
            .iter()
            .flat_map(|segment| segment.records.iter())
            .map(|record| record.header.write_order_id)
            .max()
            .map_or(1, |max| max + 1);
        let channel = open(root, config);
        for chunk in bodies(0..30, "late-").chunks(4) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        for _ in 0..3 {
            take_committed(&channel, 10);
        }
        put_committed(&channel, &["queued-0", "queued-1"]);
        channel.close().unwrap();
        (point_ms, next_id)
    }

    fn expected_after_replay() -> Vec<String> {
        let mut expected = vec!["queued-0".to_string(), "queued-1".to_string()];
        expected.extend(bodies(0..30, "late-"));
        expected
    }

    #[test]
    fn a_plan_from_a_time_finds_exactly_the_events_taken_since_and_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let config = retained_config(root.path());
        let (point_ms, _) = history(root.path(), &config);
        let scan = scan(&config);
        let plan = plan_replay(&scan, ReplayPoint::FromUnixMs(point_ms));
        assert_eq!(plan.events.len(), 30);
        assert_eq!(plan.take_transactions, 3);
        assert!(plan.not_retained.is_empty());
        assert!(!plan.history_truncated);
        assert!(!plan.segments.is_empty());
        let channel = open(root.path(), &config);
        assert_eq!(peek_all(&channel), vec!["queued-0", "queued-1"]);
    }

    #[test]
    fn executing_a_plan_from_a_write_order_id_redelivers_the_taken_events_in_order() {
        let root = tempfile::tempdir().unwrap();
        let config = retained_config(root.path());
        let (_, point_id) = history(root.path(), &config);
        let scan = scan(&config);
        let plan = plan_replay(&scan, ReplayPoint::FromWriteOrderId(point_id));
        assert_eq!(plan.events.len(), 30);
        let outcome = execute_replay(&storage(), &scan, &plan, &NoProgress).unwrap();
        assert_eq!(outcome.events_replayed, 30);
        let channel = open(root.path(), &config);
        assert_eq!(peek_all(&channel), expected_after_replay());
    }

    #[test]
    fn a_plan_says_when_the_history_it_needs_is_no_longer_retained() {
        let root = tempfile::tempdir().unwrap();
        let mut config = retained_config(root.path());
        config.retention_time = std::time::Duration::ZERO;
        history(root.path(), &config);
        {
            // Cleanup runs after a checkpoint: with no retention it deletes the taken
            // segments.
            let channel = open(root.path(), &config);
            channel.checkpoint_now().unwrap();
        }
        let scan = scan(&config);
        let plan = plan_replay(&scan, ReplayPoint::FromUnixMs(0));
        assert!(
            plan.events.len() < 70,
            "{} events still retained",
            plan.events.len()
        );
        assert!(plan.history_truncated, "{plan:?}");
        assert!(plan.oldest_retained_commit.is_some());
    }

    #[test]
    fn an_open_channel_replays_online_through_its_own_transactions() {
        let root = tempfile::tempdir().unwrap();
        let config = retained_config(root.path());
        let (_, point_id) = history(root.path(), &config);
        let channel = open(root.path(), &config);
        let plan = channel
            .replay_plan(ReplayPoint::FromWriteOrderId(point_id))
            .unwrap();
        assert_eq!(plan.events.len(), 30);
        assert_eq!(peek_all(&channel), vec!["queued-0", "queued-1"]);
        let (_, outcome) = channel
            .replay_execute(ReplayPoint::FromWriteOrderId(point_id))
            .unwrap();
        assert_eq!(outcome.events_replayed, 30);
        assert_eq!(peek_all(&channel), expected_after_replay());
    }

    #[test]
    fn a_replay_that_fills_the_channel_part_way_says_how_many_events_it_put_back() {
        let root = tempfile::tempdir().unwrap();
        let mut config = retained_config(root.path());
        config.capacity = 6;
        config.transaction_capacity = 3;
        let channel = open(root.path(), &config);
        put_committed(&channel, &["a", "b", "c"]);
        put_committed(&channel, &["d", "e", "f"]);
        assert_eq!(take_committed(&channel, 3).len(), 3);
        assert_eq!(take_committed(&channel, 3).len(), 3);
        put_committed(&channel, &["g", "h"]);
        match channel.replay_execute(ReplayPoint::FromWriteOrderId(1)) {
            Err(InspectError::ReplayInterrupted {
                events_replayed,
                events_planned,
                transactions,
                source,
            }) => {
                assert_eq!((events_replayed, events_planned, transactions), (3, 6, 1));
                assert!(
                    matches!(source, ChannelError::ChannelFull { .. }),
                    "{source}"
                );
            }
            other => panic!("expected an interrupted replay, got {other:?}"),
        }
        let mut queue = take_committed(&channel, 3);
        queue.extend(take_committed(&channel, 3));
        assert_eq!(queue, ["g", "h", "a", "b", "c"], "the first copies stay");
    }
}

mod inspecting_a_running_channel {
    use super::*;

    #[test]
    fn the_live_report_counts_the_queue_and_what_open_transactions_hold() {
        let root = tempfile::tempdir().unwrap();
        let config = single_segment_config(root.path());
        let channel = open(root.path(), &config);
        put_committed(&channel, &["first", "second", "third", "fourth"]);
        let mut taker = channel.begin().unwrap();
        assert!(taker.take().unwrap().is_some());
        let mut putter = channel.begin().unwrap();
        putter.put(event("pending")).unwrap();
        let _idle = channel.begin().unwrap();

        let inspection = channel.inspect_live().unwrap();
        let figures = &inspection.figures;
        assert_eq!(figures.queued_events, 3);
        assert_eq!(figures.open_transactions, 3);
        assert_eq!(figures.in_flight_taken_events, 1);
        assert_eq!(figures.in_flight_put_events, 1);
        let segment_id = inspection.scan.segments[0].segment_id;
        assert_eq!(inspection.live_events(segment_id), 4);
        let queue = inspection.queue_summary();
        assert_eq!(queue.depth, 3);
        let first_commit_ms = inspection.scan.log.committed[0].summary.committed_unix_ms;
        assert_eq!(queue.oldest_event_committed_unix_ms, Some(first_commit_ms));
        assert_eq!(inspection.data_dirs.len(), 1);
        assert_eq!(inspection.data_dirs[0].segment_count, 1);

        taker.commit().unwrap();
        putter.rollback().unwrap();
        let after = channel.live_figures();
        assert_eq!(after.open_transactions, 1, "only the idle one is left");
        assert_eq!(after.in_flight_taken_events, 0);
        assert_eq!(after.in_flight_put_events, 0);
        assert_eq!(after.live_events_by_segment.get(&segment_id), Some(&3));
    }
}

#[test]
fn inspect_dumps_an_encrypted_channels_events_with_its_key_and_names_the_key_per_segment() {
    let root = tempfile::tempdir().unwrap();
    let key_file = root.path().join("k1.key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    let mut config = single_segment_config(root.path());
    config.encryption = Some(millrace_engine::config::EncryptionConfig {
        active_key_id: "k1".to_string(),
        keys: std::collections::BTreeMap::from([(
            "k1".to_string(),
            millrace_engine::config::KeySource::KeyFile(key_file),
        )]),
    });
    {
        let channel = open(root.path(), &config);
        put_committed(&channel, &["secret-one", "secret-two"]);
    }
    let scan = scan(&config);
    for segment in &scan.segments {
        assert_eq!(
            segment.header.as_ref().unwrap().key_id,
            "k1",
            "each segment names its key"
        );
    }
    let events = scan.read_events(storage().as_ref(), None, 10).unwrap();
    let bodies: Vec<String> = events
        .iter()
        .map(|dumped| body_text(&dumped.event))
        .collect();
    assert_eq!(bodies, ["secret-one", "secret-two"]);
    let mut without_key = config.clone();
    without_key.encryption = None;
    let error = scan_channel(storage().as_ref(), CHANNEL, &without_key, &NoProgress)
        .expect("the scan itself needs no key")
        .read_events(storage().as_ref(), None, 10)
        .unwrap_err();
    assert!(
        error.to_string().contains("k1"),
        "the error names the missing key: {error}"
    );
}
