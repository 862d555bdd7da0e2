//! Segment space reserved ahead of the writer is overwritten with zeros by a helper
//! thread, off the commit path (`engine/src/file/zero_ahead.rs`). The zeros must never
//! land on a record: every committed event reads back after a restart, with committers
//! racing the helper through small segments that roll often.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{open_on, peek_all, put_committed, test_config};
use millrace_engine::storage::{IoBackend, RealFs, Storage};
use millrace_engine::Channel;

/// Small segments, so that the run rolls through several and the helper is handed each.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
const COMMITTERS: usize = 4;
/// How long the helper may take to zero its first step on a busy machine.
const ZEROING_DEADLINE: Duration = Duration::from_secs(30);

fn body(committer: usize, commit: usize, body_bytes: usize) -> String {
    let tag = format!("{committer}-{commit}-");
    format!("{tag}{}", "x".repeat(body_bytes - tag.len()))
}

#[test]
fn small_commits_racing_the_zeroing_helper_all_read_back_after_a_restart() {
    commits_racing_the_zeroing_helper_all_read_back_after_a_restart(1_500, 1_000);
}

/// Large commits move the writer through a segment faster than the helper zeroes it, so
/// their writes meet the helper's in flight.
#[test]
fn large_commits_racing_the_zeroing_helper_all_read_back_after_a_restart() {
    commits_racing_the_zeroing_helper_all_read_back_after_a_restart(100, 256 * 1024);
}

fn commits_racing_the_zeroing_helper_all_read_back_after_a_restart(
    commits_per_committer: usize,
    body_bytes: usize,
) {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 1);
    config.max_file_size_bytes = SEGMENT_BYTES;
    config.capacity = 100_000;
    let storage: Arc<dyn Storage> = Arc::new(RealFs::new(IoBackend::Pwrite));
    let channel = Arc::new(open_on(&storage, &config).unwrap());

    let zeroed = |channel: &dyn Channel| -> u64 {
        channel
            .dir_stats()
            .iter()
            .map(|(_, stats)| stats.bytes_zeroed_ahead.load(Ordering::Relaxed))
            .sum()
    };
    // The first segment's reservation is zeroed before any load: then the committers
    // race the helper through the later reservations and segments.
    let deadline = Instant::now() + ZEROING_DEADLINE;
    put_committed(&*channel, &[&body(COMMITTERS, 0, body_bytes)]);
    while zeroed(&*channel) == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing was zeroed ahead within {ZEROING_DEADLINE:?} on a real file system"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let committers: Vec<_> = (0..COMMITTERS)
        .map(|committer| {
            let channel = Arc::clone(&channel);
            std::thread::spawn(move || {
                for commit in 0..commits_per_committer {
                    put_committed(&*channel, &[&body(committer, commit, body_bytes)]);
                }
            })
        })
        .collect();
    for committer in committers {
        committer.join().unwrap();
    }
    let segments_created: u64 = channel
        .dir_stats()
        .iter()
        .map(|(_, stats)| stats.segments_created.load(Ordering::Relaxed))
        .sum();
    assert!(
        segments_created > 1,
        "the run should roll segments, created {segments_created}"
    );
    let before_restart = peek_all(&*channel);
    channel.close().unwrap();
    drop(channel);

    let reopened = open_on(&storage, &config).unwrap();
    let after_restart = peek_all(&reopened);
    assert_eq!(after_restart.len(), COMMITTERS * commits_per_committer + 1);
    assert_eq!(after_restart, before_restart);
    let mut expected: Vec<String> = (0..COMMITTERS)
        .flat_map(|committer| {
            (0..commits_per_committer).map(move |commit| body(committer, commit, body_bytes))
        })
        .chain([body(COMMITTERS, 0, body_bytes)])
        .collect();
    let mut found = after_restart;
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    reopened.close().unwrap();
}
