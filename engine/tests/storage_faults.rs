//! The channel's storage going wrong under it: a directory removed or replaced while the
//! channel runs, a segment that cannot be created, a disk that fills up — on the
//! simulated disk and on real files.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use millrace_engine::config::{FileChannelConfig, MIN_MINIMUM_REQUIRED_SPACE_BYTES};
use millrace_engine::storage::{SimFs, SimFsOptions, Storage};
use millrace_engine::{Channel, ChannelError, ChannelHealth, FileChannel};

/// ENOSPC and EACCES as Linux numbers them.
const ENOSPC: i32 = 28;
const EACCES: i32 = 13;
/// Longest wait for the background thread (it runs once a second) to notice something.
const BACKGROUND_DEADLINE: Duration = Duration::from_secs(20);

fn sim_config(dual: bool) -> FileChannelConfig {
    let mut config =
        FileChannelConfig::new(vec![PathBuf::from("/sim/data")], PathBuf::from("/sim/cp"));
    config.capacity = 100_000;
    config.transaction_capacity = 1_000;
    config.keep_alive = Duration::ZERO;
    config.minimum_required_space_bytes = MIN_MINIMUM_REQUIRED_SPACE_BYTES;
    if dual {
        config.use_dual_checkpoints = true;
        config.backup_checkpoint_dir = Some(PathBuf::from("/sim/backup"));
    }
    config
}

fn open_sim(disk: &SimFs, config: FileChannelConfig) -> FileChannel {
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    FileChannel::open_with_storage("c1", config, storage).expect("open on the simulated disk")
}

/// Puts the bodies in one transaction and commits it.
fn put_and_commit(channel: &dyn Channel, bodies: &[&str]) -> Result<(), ChannelError> {
    let mut transaction = channel.begin()?;
    for body in bodies {
        transaction.put(event(body))?;
    }
    transaction.commit()
}

fn failure_reason(channel: &dyn Channel) -> String {
    match channel.health() {
        ChannelHealth::Failed { reason } => reason,
        other => panic!("expected a failed channel, got {other:?}"),
    }
}

/// Checks that `error` says the directory `dir` (a `role` directory) moved, with `detail`.
fn assert_directory_lost(error: &ChannelError, role: &str, dir: &Path, detail: &str) {
    match error {
        ChannelError::DirectoryLost {
            role: lost_role,
            dir: lost_dir,
            detail: lost_detail,
            ..
        } => {
            assert_eq!(*lost_role, role, "{error}");
            assert_eq!(lost_dir, dir, "{error}");
            assert!(lost_detail.contains(detail), "{error}");
        }
        other => panic!("expected DirectoryLost for {}, got {other}", dir.display()),
    }
}

/// After a failure: a put is refused (and counted as a put error), so is a take.
fn assert_refuses_puts_and_takes(channel: &dyn Channel) {
    let errors_before = channel.stats().event_put_error_count;
    let mut transaction = channel.begin().expect("a failed channel still begins");
    assert!(matches!(
        transaction.put(event("refused")),
        Err(ChannelError::Failed { .. })
    ));
    assert!(matches!(
        transaction.take(),
        Err(ChannelError::Failed { .. })
    ));
    drop(transaction);
    assert_eq!(channel.stats().event_put_error_count, errors_before + 1);
}

/// Opens a channel on the simulated disk, commits a put, does `change` to the disk, checks
/// that the next put's commit fails saying the data directory was lost (with `detail`),
/// and returns the channel.
fn commit_after_the_data_directory(change: impl FnOnce(&SimFs), detail: &str) -> FileChannel {
    let disk = SimFs::default();
    let channel = open_sim(&disk, sim_config(false));
    put_and_commit(&channel, &["before"]).unwrap();
    change(&disk);
    let error = put_and_commit(&channel, &["after"]).unwrap_err();
    assert_directory_lost(&error, "data", Path::new("/sim/data"), detail);
    channel
}

#[test]
fn a_data_directory_removed_under_a_running_channel_fails_the_next_commit_and_all_after() {
    let channel = commit_after_the_data_directory(
        |disk| disk.remove_dir_all(Path::new("/sim/data")),
        "no longer at its path",
    );
    let reason = failure_reason(&channel);
    assert!(
        reason.contains("data directory /sim/data was removed or replaced"),
        "{reason}"
    );
    let stats = channel.stats();
    assert_eq!(stats.event_put_success_count, 1);
    assert_eq!(stats.event_put_error_count, 1, "the refused commit counts");
    assert_refuses_puts_and_takes(&channel);
}

#[test]
fn a_data_directory_replaced_by_an_empty_one_fails_the_next_commit() {
    let channel = commit_after_the_data_directory(
        |disk| disk.replace_dir(Path::new("/sim/data")),
        "now names another directory",
    );
    assert_refuses_puts_and_takes(&channel);
}

#[test]
fn a_checkpoint_directory_removed_under_a_running_channel_fails_the_next_take_commit() {
    for (dual, removed, role) in [
        (false, "/sim/cp", "checkpoint"),
        (true, "/sim/backup", "backup checkpoint"),
    ] {
        let disk = SimFs::default();
        let channel = open_sim(&disk, sim_config(dual));
        put_and_commit(&channel, &["a", "b"]).unwrap();
        let mut transaction = channel.begin().unwrap();
        assert!(transaction.take().unwrap().is_some());
        disk.remove_dir_all(Path::new(removed));
        let error = transaction.commit().unwrap_err();
        assert_directory_lost(&error, role, Path::new(removed), "no longer at its path");
        assert_eq!(channel.stats().event_take_success_count, 0);
        let error = channel.checkpoint_now().unwrap_err();
        assert!(matches!(error, ChannelError::Failed { .. }), "{error}");
        assert_refuses_puts_and_takes(&channel);
    }
}

#[test]
fn a_checkpoint_of_a_channel_whose_checkpoint_directory_was_removed_fails_the_channel() {
    let disk = SimFs::default();
    let channel = open_sim(&disk, sim_config(false));
    put_and_commit(&channel, &["a"]).unwrap();
    disk.remove_dir_all(Path::new("/sim/cp"));
    let error = channel.checkpoint_now().unwrap_err();
    assert_directory_lost(
        &error,
        "checkpoint",
        Path::new("/sim/cp"),
        "no longer at its path",
    );
    assert!(failure_reason(&channel).contains("/sim/cp"));
}

#[test]
fn an_idle_channel_reports_a_removed_directory_without_waiting_for_a_commit() {
    let disk = SimFs::default();
    let channel = open_sim(&disk, sim_config(false));
    put_and_commit(&channel, &["a"]).unwrap();
    disk.remove_dir_all(Path::new("/sim/data"));
    let deadline = Instant::now() + BACKGROUND_DEADLINE;
    while channel.health() == ChannelHealth::Open && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let reason = failure_reason(&channel);
    assert!(reason.contains("data directory /sim/data"), "{reason}");
    assert_refuses_puts_and_takes(&channel);
}

#[test]
fn directories_removed_or_replaced_on_a_real_disk_fail_the_next_commit() {
    // Replaced: moved away, and a new directory made at the path.
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 1);
    let channel = open(root.path(), &config);
    put_committed(&channel, &["before"]);
    let data_dir = &config.data_dirs[0];
    std::fs::rename(data_dir, root.path().join("moved-away")).unwrap();
    std::fs::create_dir(data_dir).unwrap();
    let error = put_and_commit(&channel, &["after"]).unwrap_err();
    assert_directory_lost(&error, "data", data_dir, "now names another directory");
    assert_refuses_puts_and_takes(&channel);
    drop(channel);

    // Removed: `rm -rf` of the checkpoint directory.
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 2);
    let channel = open(root.path(), &config);
    put_committed(&channel, &["before"]);
    std::fs::remove_dir_all(&config.checkpoint_dir).unwrap();
    let error = put_and_commit(&channel, &["after"]).unwrap_err();
    assert_directory_lost(
        &error,
        "checkpoint",
        &config.checkpoint_dir,
        "No such file or directory",
    );
    assert_refuses_puts_and_takes(&channel);
}

#[test]
fn a_segment_that_cannot_be_created_fails_the_channel_naming_the_file_and_the_errno() {
    let disk = SimFs::default();
    let channel = open_sim(&disk, sim_config(false));
    disk.set_options(SimFsOptions {
        create_errno: Some(EACCES),
        ..SimFsOptions::default()
    });
    let error = put_and_commit(&channel, &["refused"]).unwrap_err();
    match &error {
        ChannelError::Io {
            file, operation, ..
        } => {
            assert_eq!(*operation, "create");
            assert_eq!(file, Path::new("/sim/data/segment-0000000001.log"));
        }
        other => panic!("expected the create's I/O error, got {other}"),
    }
    // Fail-stop, as the error's code (CHANNEL_UNHEALTHY) says: not retried, and nothing
    // accepted once the cause is gone either.
    let reason = failure_reason(&channel);
    assert!(
        reason.contains("create of /sim/data/segment-0000000001.log")
            && reason.contains("Permission denied"),
        "{reason}"
    );
    disk.set_options(SimFsOptions::default());
    assert_refuses_puts_and_takes(&channel);
}

#[test]
fn a_file_already_at_a_new_segments_path_fails_the_channel() {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 1);
    config.max_file_size_bytes = 4096;
    let channel = open(root.path(), &config);
    let body = "x".repeat(3000);
    put_committed(&channel, &[&body]);
    let segments = channel.segment_paths();
    let (last_id, _) = segments.last().expect("a segment");
    let intruder = config.data_dirs[0].join(format!("segment-{:010}.log", last_id + 1));
    std::fs::write(&intruder, b"not ours").unwrap();
    let error = put_and_commit(&channel, &[&body]).unwrap_err();
    assert!(
        error.to_string().contains("File exists")
            && error.to_string().contains(&intruder.display().to_string()),
        "{error}"
    );
    assert!(failure_reason(&channel).contains("File exists"));
    assert_eq!(std::fs::read(&intruder).unwrap(), b"not ours", "left alone");
    assert_refuses_puts_and_takes(&channel);
}

#[test]
fn commits_refused_while_the_disk_is_full_use_up_no_segment_ids() {
    let disk = SimFs::default();
    let mut config = sim_config(false);
    config.max_file_size_bytes = 4096;
    let channel = open_sim(&disk, config);
    // Each commit fills most of a segment, so the next one must roll.
    let body = "x".repeat(3000);
    put_and_commit(&channel, &[&body]).unwrap();
    let faults = [
        // The segment file cannot be created.
        SimFsOptions {
            create_errno: Some(ENOSPC),
            ..SimFsOptions::default()
        },
        // It is created, but its header cannot be written (the writer removes it).
        SimFsOptions {
            no_space: true,
            ..SimFsOptions::default()
        },
    ];
    for fault in faults {
        disk.set_options(fault);
        for _ in 0..3 {
            let error = put_and_commit(&channel, &[&body]).unwrap_err();
            assert!(error.is_space_shortage(), "{error}");
        }
        assert_eq!(channel.health(), ChannelHealth::Open, "ENOSPC is not fatal");
    }
    disk.set_options(SimFsOptions::default());
    put_and_commit(&channel, &[&body]).unwrap();
    let ids: Vec<u32> = channel
        .segment_paths()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, [1, 2], "the failed rolls used up no ids");
    assert_eq!(take_committed(&channel, 10).len(), 2);
}

#[test]
fn accepted_puts_and_the_space_reserved_for_them_never_take_free_space_below_the_guard() {
    let minimum_bytes = MIN_MINIMUM_REQUIRED_SPACE_BYTES;
    let segment_bytes = 1024 * 1024;
    let disk = SimFs::new(SimFsOptions {
        // The guard, a segment, and half a segment more.
        capacity_bytes: Some(minimum_bytes + segment_bytes * 3 / 2),
        ..SimFsOptions::default()
    });
    let mut config = sim_config(false);
    config.max_file_size_bytes = segment_bytes;
    let channel = open_sim(&disk, config);
    let body = "e".repeat(1000);
    let batch: Vec<&str> = vec![body.as_str(); 20];
    let mut committed = 0;
    let refusal = loop {
        match put_and_commit(&channel, &batch) {
            Ok(()) => committed += batch.len(),
            Err(error) => break error,
        }
        let free_bytes = disk.free_space_bytes();
        assert!(
            free_bytes >= minimum_bytes,
            "after {committed} events the disk has {free_bytes} bytes free, below the \
             guard of {minimum_bytes}"
        );
        assert!(committed < 10_000, "the guard never refused a put");
    };
    assert!(
        matches!(refusal, ChannelError::InsufficientSpace { .. }),
        "{refusal}"
    );
    assert!(
        committed > 1_000,
        "the room above the guard was used: {committed} events"
    );
    // Takes go on below the guard, and everything accepted comes back.
    let mut taken = 0;
    loop {
        let batch = take_committed(&channel, 100);
        if batch.is_empty() {
            break;
        }
        taken += batch.len();
    }
    assert_eq!(taken, committed);
}
