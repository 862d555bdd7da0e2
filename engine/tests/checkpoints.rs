//! Checkpoints, the restart matrix, segment cleanup, retention and the space guard.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use millrace_engine::config::FileChannelConfig;
use millrace_engine::file::RecoveryPath;
use millrace_engine::storage::{SimFs, SimFsOptions, Storage};
use millrace_engine::{Channel, ChannelError, ChannelHealth, Event, FileChannel};
use millrace_prerequisites::{require, running_as_root, skip, tool_on_path, Missing};

fn config_with(root: &Path, dual: bool) -> FileChannelConfig {
    let mut config = test_config(root, 2);
    config.max_file_size_bytes = 4096;
    if dual {
        config.use_dual_checkpoints = true;
        config.backup_checkpoint_dir = Some(root.join("backup"));
    }
    config
}

fn segment_count(config: &FileChannelConfig) -> usize {
    config
        .data_dirs
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("segment-")
        })
        .count()
}

#[test]
fn restart_after_a_clean_close_replays_nothing() {
    let root = tempfile::tempdir().unwrap();
    let config = config_with(root.path(), false);
    let names = bodies(0..300, "clean-");
    {
        let channel = open(root.path(), &config);
        for chunk in names.chunks(10) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        take_committed(&channel, 100);
    }
    let channel = open(root.path(), &config);
    let report = channel.recovery_report().unwrap();
    assert_eq!(report.path, RecoveryPath::Checkpoint);
    assert_eq!(report.records_replayed, 0, "{report:?}");
    assert_eq!(report.segments_scanned, 0, "{report:?}");
    assert_eq!(peek_all(&channel), names[100..]);
}

/// One row of Flume's restart matrix: what happens to the checkpoint between the stop
/// and the restart.
#[derive(Debug, Clone, Copy)]
enum Damage {
    None,
    PrimaryDeleted,
    PrimaryEmptied,
    BothDeleted,
    PrimaryTruncated,
    PrimaryByteFlipped,
    QueueRegionDamaged,
    StrayEmptySegment,
    CapacityChanged,
}

fn expected_path(damage: Damage, dual: bool) -> RecoveryPath {
    match damage {
        Damage::None | Damage::StrayEmptySegment | Damage::CapacityChanged => {
            RecoveryPath::Checkpoint
        }
        Damage::BothDeleted => RecoveryPath::FullReplay,
        _ if dual => RecoveryPath::BackupCheckpoint,
        _ => RecoveryPath::FullReplay,
    }
}

fn damage_checkpoint(config: &FileChannelConfig, damage: Damage) {
    let primary = config.checkpoint_dir.join("checkpoint");
    let modify = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = std::fs::read(&primary).unwrap();
        change(&mut bytes);
        std::fs::write(&primary, bytes).unwrap();
    };
    match damage {
        Damage::None | Damage::CapacityChanged => {}
        Damage::PrimaryDeleted => std::fs::remove_file(&primary).unwrap(),
        Damage::PrimaryEmptied => std::fs::write(&primary, b"").unwrap(),
        Damage::BothDeleted => {
            std::fs::remove_file(&primary).unwrap();
            if let Some(backup) = &config.backup_checkpoint_dir {
                std::fs::remove_file(backup.join("checkpoint")).unwrap();
            }
        }
        Damage::PrimaryTruncated => modify(&|bytes| bytes.truncate(bytes.len() / 2)),
        Damage::PrimaryByteFlipped => modify(&|bytes| bytes[20] ^= 0x40),
        // The header is 64 bytes; the queue of pointers follows.
        Damage::QueueRegionDamaged => modify(&|bytes| bytes[64 + 5] ^= 0x01),
        Damage::StrayEmptySegment => {
            std::fs::write(config.data_dirs[0].join("segment-0000009999.log"), b"").unwrap()
        }
    }
}

/// Events committed before and after a checkpoint, with takes on both sides and an open
/// take at the stop; the channel stops without a final checkpoint (as after a crash), so
/// a restart needs the checkpoint plus the log after it.
fn run_matrix_case(damage: Damage, dual: bool) {
    let root = tempfile::tempdir().unwrap();
    let mut config = config_with(root.path(), dual);
    config.checkpoint_on_close = false;
    let names = bodies(0..400, "m-");
    {
        let channel = open(root.path(), &config);
        for chunk in names[..200].chunks(20) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        assert_eq!(take_committed(&channel, 50), names[..50]);
        channel.checkpoint_now().unwrap();
        for chunk in names[200..].chunks(20) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        assert_eq!(take_committed(&channel, 30), names[50..80]);
        // An open take at the stop: its events must come back.
        let mut in_flight = channel.begin().unwrap();
        assert!(in_flight.take().unwrap().is_some());
        std::mem::forget(in_flight);
        channel.close().unwrap();
    }
    damage_checkpoint(&config, damage);
    if let Damage::CapacityChanged = damage {
        config.capacity = 500;
        config.transaction_capacity = 500;
    }
    let channel = FileChannel::open("c1", config.clone())
        .unwrap_or_else(|error| panic!("{damage:?}, dual {dual}: {error}"));
    let report = channel.recovery_report().unwrap();
    assert_eq!(
        report.path,
        expected_path(damage, dual),
        "{damage:?}, dual {dual}: {report:?}"
    );
    assert_eq!(
        peek_all(&channel),
        names[80..],
        "{damage:?}, dual {dual}: every committed event exactly once, in order"
    );
}

#[test]
fn the_restart_matrix_recovers_every_committed_event_exactly_once() {
    let cases = [
        Damage::None,
        Damage::PrimaryDeleted,
        Damage::PrimaryEmptied,
        Damage::BothDeleted,
        Damage::PrimaryTruncated,
        Damage::PrimaryByteFlipped,
        Damage::QueueRegionDamaged,
        Damage::StrayEmptySegment,
        Damage::CapacityChanged,
    ];
    for dual in [false, true] {
        for damage in cases {
            run_matrix_case(damage, dual);
        }
    }
}

#[test]
fn a_restart_with_a_checkpoint_reads_only_the_log_after_it() {
    let root = tempfile::tempdir().unwrap();
    let mut config = config_with(root.path(), false);
    config.checkpoint_on_close = false;
    {
        let channel = open(root.path(), &config);
        for index in 0..200 {
            put_committed(&channel, &[&format!("before-{index}")]);
        }
        channel.checkpoint_now().unwrap();
        put_committed(&channel, &["after"]);
        channel.close().unwrap();
    }
    let channel = open(root.path(), &config);
    let report = channel.recovery_report().unwrap();
    assert_eq!(report.path, RecoveryPath::Checkpoint);
    assert!(report.segments_skipped > 0, "{report:?}");
    assert_eq!(
        report.transactions_committed, 1,
        "only the commit after the checkpoint: {report:?}"
    );
    assert_eq!(peek_all(&channel).len(), 201);
}

fn steady_load(channel: &FileChannel, rounds: usize) -> usize {
    let mut max_segments = 0;
    for round in 0..rounds {
        let names = bodies(round * 10..round * 10 + 10, "steady-");
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        put_committed(channel, &refs);
        take_committed(channel, 10);
        if round % 20 == 19 {
            channel.checkpoint_now().unwrap();
            max_segments = max_segments.max(channel.segment_paths().len());
        }
    }
    max_segments
}

#[test]
fn segment_files_stay_bounded_under_steady_put_and_take() {
    let root = tempfile::tempdir().unwrap();
    let config = config_with(root.path(), false);
    let channel = open(root.path(), &config);
    let max_segments = steady_load(&channel, 600);
    let created: u64 = channel
        .dir_stats()
        .iter()
        .map(|(_, stats)| {
            stats
                .segments_created
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(created > 50, "the load spans many segments ({created})");
    assert!(max_segments <= 8, "at most {max_segments} segments at once");
    drop(channel);
    assert!(segment_count(&config) <= 8);
}

#[test]
fn one_event_left_untaken_does_not_pin_newer_segments() {
    let root = tempfile::tempdir().unwrap();
    let config = config_with(root.path(), false);
    let channel = open(root.path(), &config);
    put_committed(&channel, &["stuck"]);
    // A sink that took the oldest event and never finishes: the event stays in the
    // channel (in flight) while everything after it flows through.
    let mut holder = channel.begin().unwrap();
    assert_eq!(body_text(&holder.take().unwrap().unwrap()), "stuck");
    let max_segments = steady_load(&channel, 600);
    assert!(
        max_segments <= 10,
        "at most {max_segments} segments with one stuck event"
    );
    holder.rollback().unwrap();
    assert_eq!(peek_all(&channel), ["stuck"]);
    drop(channel);
    let channel = open(root.path(), &config);
    assert_eq!(peek_all(&channel), ["stuck"]);
}

#[test]
fn a_full_replay_after_cleanup_brings_back_each_event_exactly_once() {
    let root = tempfile::tempdir().unwrap();
    let config = config_with(root.path(), false);
    let expected = {
        let channel = open(root.path(), &config);
        put_committed(&channel, &["old-survivor"]);
        // Held while a long stretch of traffic passes and its segments are cleaned up,
        // then returned: its segment survives, the ones around it do not.
        let mut holder = channel.begin().unwrap();
        holder.take().unwrap().unwrap();
        steady_load(&channel, 200);
        holder.rollback().unwrap();
        put_committed(&channel, &["new-survivor"]);
        channel.checkpoint_now().unwrap();
        peek_all(&channel)
    };
    assert_eq!(expected, ["old-survivor", "new-survivor"]);
    std::fs::remove_file(config.checkpoint_dir.join("checkpoint")).unwrap();
    let channel = open(root.path(), &config);
    assert_eq!(
        channel.recovery_report().unwrap().path,
        RecoveryPath::FullReplay
    );
    assert_eq!(
        peek_all(&channel),
        expected,
        "no taken event comes back, none is lost"
    );
}

#[test]
fn retention_keeps_taken_segments_until_it_expires() {
    let root = tempfile::tempdir().unwrap();
    let mut config = config_with(root.path(), false);
    config.retention_bytes = 64 * 1024;
    let channel = open(root.path(), &config);
    steady_load(&channel, 300);
    let retained: u64 = channel
        .segment_paths()
        .iter()
        .map(|(_, path)| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0))
        .sum();
    assert!(
        channel.segment_paths().len() > 8,
        "retention keeps more than cleanup alone"
    );
    assert!(
        retained <= 64 * 1024 + 2 * 4096 * 2,
        "about retentionBytes kept: {retained}"
    );
}

fn sim_config() -> FileChannelConfig {
    let mut config =
        FileChannelConfig::new(vec![PathBuf::from("/sim/data")], PathBuf::from("/sim/cp"));
    config.capacity = 1_000;
    config.transaction_capacity = 100;
    config.keep_alive = Duration::ZERO;
    config.minimum_required_space_bytes = 10 * 1024 * 1024;
    config
}

#[test]
fn below_the_space_guard_puts_are_refused_and_takes_commits_and_checkpoints_go_on() {
    let disk = SimFs::default();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let channel = FileChannel::open_with_storage("c1", sim_config(), Arc::clone(&storage)).unwrap();
    put_committed(&channel, &["a", "b", "c"]);
    disk.set_available_space_bytes(5 * 1024 * 1024);
    channel.refresh_free_space();
    let mut transaction = channel.begin().unwrap();
    let error = transaction.put(event("refused")).unwrap_err();
    match &error {
        ChannelError::InsufficientSpace {
            dir,
            available_bytes,
            required_bytes,
            ..
        } => {
            assert_eq!(dir, Path::new("/sim/cp"), "the checkpoint dir is short too");
            assert_eq!(*available_bytes, 5 * 1024 * 1024);
            assert_eq!(*required_bytes, 10 * 1024 * 1024);
        }
        other => panic!("expected InsufficientSpace, got {other}"),
    }
    assert!(error.to_string().contains("/sim/cp"), "{error}");
    drop(transaction);
    assert!(matches!(channel.health(), ChannelHealth::ReadOnly { .. }));
    assert_eq!(take_committed(&channel, 2), ["a", "b"]);
    let mut transaction = channel.begin().unwrap();
    transaction.take().unwrap();
    transaction.rollback().unwrap();
    channel.checkpoint_now().unwrap();
    disk.set_available_space_bytes(1 << 40);
    channel.refresh_free_space();
    assert_eq!(channel.health(), ChannelHealth::Open);
    put_committed(&channel, &["accepted-again"]);
    assert_eq!(peek_all(&channel), ["c", "accepted-again"]);
}

#[test]
fn takes_commit_on_a_disk_with_room_for_their_records_but_not_for_a_segment_reservation() {
    let disk = SimFs::default();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let mut config = sim_config();
    config.max_file_size_bytes = 16 * 1024;
    let channel = FileChannel::open_with_storage("c1", config, Arc::clone(&storage)).unwrap();
    let bodies = bodies(0..1_000, &"x".repeat(100));
    for batch in bodies.chunks(100) {
        put_committed(
            &channel,
            &batch.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    let segments_created = || -> u64 {
        channel
            .dir_stats()
            .iter()
            .map(|(_, stats)| stats.segments_created.load(Ordering::Relaxed))
            .sum()
    };
    let segments_before_takes = segments_created();
    // Less room than one segment's reservation (16 KiB), plenty for take records.
    disk.set_options(SimFsOptions {
        largest_allocation_bytes: Some(1024),
        ..SimFsOptions::default()
    });
    let mut taken = Vec::new();
    while taken.len() < bodies.len() {
        let batch = take_committed(&channel, 50);
        assert!(
            !batch.is_empty(),
            "a take came back empty after {}",
            taken.len()
        );
        taken.extend(batch);
    }
    assert_eq!(taken, bodies);
    assert!(
        segments_created() > segments_before_takes,
        "the take records rolled into a new segment"
    );
}

#[test]
fn a_channel_opened_below_the_space_guard_starts_read_only() {
    let disk = SimFs::default();
    disk.set_available_space_bytes(1024);
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let channel = FileChannel::open_with_storage("c1", sim_config(), storage).unwrap();
    match channel.health() {
        ChannelHealth::ReadOnly { reason } => {
            assert!(reason.contains("1024 bytes usable"), "{reason}")
        }
        other => panic!("expected read-only, got {other:?}"),
    }
    let mut transaction = channel.begin().unwrap();
    assert!(matches!(
        transaction.put(Event::from_body("x")),
        Err(ChannelError::InsufficientSpace { .. })
    ));
}

/// Set by `space_guard_on_a_small_real_filesystem` for the child it runs inside a private
/// mount namespace with a tmpfs mounted here.
const TMPFS_DIR_VARIABLE: &str = "MILLRACE_TEST_TMPFS_DIR";
/// Size of that tmpfs.
const TMPFS_SIZE_BYTES: u64 = 6 * 1024 * 1024;

#[test]
fn child_fills_a_small_real_filesystem() {
    let Ok(dir) = std::env::var(TMPFS_DIR_VARIABLE) else {
        return; // Only does something when started by the test below.
    };
    let root = PathBuf::from(dir);
    let mut config = FileChannelConfig::new(vec![root.join("data")], root.join("cp"));
    config.capacity = 1_000_000;
    config.transaction_capacity = 1_000;
    config.keep_alive = Duration::ZERO;
    config.max_file_size_bytes = 512 * 1024;
    config.minimum_required_space_bytes = 1024 * 1024;
    let channel = FileChannel::open("small", config).unwrap();
    let body = vec![b'x'; 1000];
    let mut committed = 0usize;
    let refusal = loop {
        let mut transaction = channel.begin().unwrap();
        let mut failure = None;
        for _ in 0..50 {
            if let Err(error) = transaction.put(Event::from_body(body.clone())) {
                failure = Some(error);
                break;
            }
        }
        if let Some(error) = failure {
            break error;
        }
        match transaction.commit() {
            Ok(()) => committed += 50,
            Err(error) => break error,
        }
        channel.refresh_free_space();
        assert!(committed < 10_000, "the guard never refused a put");
    };
    assert!(
        matches!(refusal, ChannelError::InsufficientSpace { .. }),
        "refused with the space error: {refusal}"
    );
    println!("filled: {committed} events committed, then: {refusal}");
    // Takes and commits go on below the guard.
    let mut drained = 0;
    loop {
        let mut transaction = channel.begin().unwrap();
        let mut taken = 0;
        while taken < 100 && transaction.take().unwrap().is_some() {
            taken += 1;
        }
        transaction.commit().unwrap();
        drained += taken;
        if taken == 0 {
            break;
        }
    }
    assert_eq!(drained, committed, "every committed event is taken back");
    // A checkpoint lets cleanup free the segments; puts are accepted again.
    channel.checkpoint_now().unwrap();
    channel.refresh_free_space();
    put_committed(&channel, &["after-space-returned"]);
    assert_eq!(take_committed(&channel, 10), ["after-space-returned"]);
    println!("space returned: puts accepted again");
}

/// What lets root mount a tmpfs in a private mount namespace.
const MOUNT_NAMESPACE_HOW_TO_GET: &str =
    "run as root on a host or in a container allowed to mount (docker run --privileged)";

/// `unshare`, when this process may make a private mount namespace with it; else what
/// is missing.
fn private_mount_namespace() -> Result<PathBuf, Missing> {
    running_as_root("mount a tmpfs in a private mount namespace")?;
    let unshare = tool_on_path("unshare", "apt-get install util-linux")?;
    let probe = Command::new(&unshare)
        .args(["--mount", "--propagation", "private", "true"])
        .output();
    match probe {
        Ok(output) if output.status.success() => Ok(unshare),
        Ok(output) => Err(Missing::new(
            format!(
                "a private mount namespace ({})",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            MOUNT_NAMESPACE_HOW_TO_GET,
        )),
        Err(error) => Err(Missing::new(
            format!("a runnable unshare ({error})"),
            "apt-get install util-linux",
        )),
    }
}

#[test]
fn space_guard_on_a_small_real_filesystem() {
    let Some(unshare) = require(private_mount_namespace()) else {
        return;
    };
    let mount_point = tempfile::tempdir().unwrap();
    let script = format!(
        "mount -t tmpfs -o size={TMPFS_SIZE_BYTES} millrace-test \"$0\" && exec \"$1\" --exact child_fills_a_small_real_filesystem --nocapture --test-threads=1"
    );
    let output = Command::new(unshare)
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(mount_point.path())
        .arg(std::env::current_exe().unwrap())
        .env(TMPFS_DIR_VARIABLE, mount_point.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("mount") && !stdout.contains("filled") {
        skip(&Missing::new(
            format!(
                "a tmpfs mount in a private mount namespace ({})",
                stderr.trim()
            ),
            MOUNT_NAMESPACE_HOW_TO_GET,
        ));
        return;
    }
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("filled:"), "{stdout}");
    assert!(stdout.contains("puts accepted again"), "{stdout}");
    // The child's lines may follow the test harness's own text on the same line.
    for line in stdout.lines() {
        for marker in ["filled:", "space returned:"] {
            if let Some(start) = line.find(marker) {
                println!("{}", &line[start..]);
            }
        }
    }
}

#[test]
fn a_checkpoint_lists_events_held_by_open_takes_in_their_put_order_places() {
    let root = tempfile::tempdir().unwrap();
    let mut config = config_with(root.path(), false);
    config.checkpoint_on_close = false;
    let events = bodies(1..7, "e");
    {
        let channel = open(root.path(), &config);
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        put_committed(&channel, &refs);
        let take = |count: usize| {
            let mut transaction = channel.begin().unwrap();
            let taken: Vec<String> = (0..count)
                .map(|_| body_text(&transaction.take().unwrap().unwrap()))
                .collect();
            (transaction, taken)
        };
        let (a, _) = take(2); // e1, e2
        let (b, taken_by_b) = take(1); // e3
        assert_eq!(taken_by_b, ["e3"]);
        a.rollback().unwrap();
        let (c, taken_by_c) = take(2); // e1, e2 again, taken after e3
        assert_eq!(taken_by_c, ["e1", "e2"]);
        channel.checkpoint_now().unwrap();
        // A crash with B and C open: neither commits nor rolls back, and the stop writes
        // no checkpoint, so the restart rebuilds the queue from the one above.
        std::mem::forget(b);
        std::mem::forget(c);
        channel.close().unwrap();
    }
    let channel = open(root.path(), &config);
    assert_eq!(
        channel.recovery_report().unwrap().path,
        RecoveryPath::Checkpoint
    );
    assert_eq!(peek_all(&channel), events);
}

#[test]
fn a_failed_backup_write_keeps_the_segments_the_older_backup_needs() {
    let root = tempfile::tempdir().unwrap();
    let config = config_with(root.path(), true);
    let backup_dir = config.backup_checkpoint_dir.clone().unwrap();
    // Bodies large enough that each 4 KiB segment holds only a few transactions, so the
    // segments of the first events are closed (and cleanup candidates) by the end.
    let padding = "x".repeat(150);
    let taken_later = bodies(0..60, &format!("{padding}-taken-later-"));
    let kept = bodies(0..60, &format!("{padding}-kept-"));
    {
        let channel = open(root.path(), &config);
        for chunk in taken_later.chunks(10) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        let first = channel.checkpoint_now().unwrap();
        assert!(first.backup_written);
        // From here on the backup slot cannot be written: a directory sits where its
        // temporary file goes (this works whatever the user's permissions).
        std::fs::create_dir(backup_dir.join("checkpoint.tmp")).unwrap();
        assert_eq!(take_committed(&channel, 100), taken_later);
        for chunk in kept.chunks(10) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        let second = channel.checkpoint_now().unwrap();
        assert!(!second.backup_written);
        assert_eq!(channel.stats().checkpoint_backup_write_error_count, 1);
        channel.close().unwrap();
    }
    let segments_at_the_stop = segment_count(&config);
    // The primary is lost; the backup still holds the first checkpoint, whose queue
    // points into the segments of the events taken since.
    std::fs::remove_file(config.checkpoint_dir.join("checkpoint")).unwrap();
    std::fs::remove_dir(backup_dir.join("checkpoint.tmp")).unwrap();
    let channel = open(root.path(), &config);
    let report = channel.recovery_report().unwrap();
    assert_eq!(report.path, RecoveryPath::BackupCheckpoint, "{report:?}");
    assert_eq!(peek_all(&channel), kept, "nothing lost, nothing taken back");
    // Once both slots hold a new checkpoint (this one, or the one a start that replayed
    // records writes at once), nothing pins those segments any more. (No segment is
    // created meanwhile: a writer opens one only to write.)
    let report = channel.checkpoint_now().unwrap();
    assert!(report.backup_written);
    assert!(
        segment_count(&config) < segments_at_the_stop,
        "the old backup's segments go once it is replaced ({segments_at_the_stop} at the stop)"
    );
    assert_eq!(peek_all(&channel), kept);
}
