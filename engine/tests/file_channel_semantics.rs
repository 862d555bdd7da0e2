//! Flume's file channel semantics, on real files.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use millrace_engine::config::FileChannelConfig;
use millrace_engine::record::{PUT_EVENT_COUNT_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use millrace_engine::storage::{SimFs, Storage};
use millrace_engine::{Channel, ChannelError, ChannelHealth, Event, FileChannel, OpenError};

#[test]
fn takes_return_events_in_put_commit_order() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 1);
    let channel = open(root.path(), &config);
    put_committed(&channel, &["a", "b"]);
    put_committed(&channel, &["c"]);
    put_committed(&channel, &["d", "e", "f"]);
    assert_eq!(take_committed(&channel, 4), ["a", "b", "c", "d"]);
    assert_eq!(take_committed(&channel, 10), ["e", "f"]);
}

#[test]
fn a_take_on_an_empty_channel_returns_nothing_at_once() {
    let root = tempfile::tempdir().unwrap();
    let channel = open(root.path(), &test_config(root.path(), 1));
    let mut transaction = channel.begin().unwrap();
    let started = Instant::now();
    assert!(transaction.take().unwrap().is_none());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_waiting_take_wakes_when_a_put_commits() {
    let root = tempfile::tempdir().unwrap();
    let channel = Arc::new(open(root.path(), &test_config(root.path(), 1)));
    let producer = {
        let channel = Arc::clone(&channel);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            put_committed(channel.as_ref(), &["late"]);
        })
    };
    let mut transaction = channel.begin().unwrap();
    let event = transaction
        .take_waiting(Duration::from_secs(10))
        .unwrap()
        .expect("the put arrives within the wait");
    assert_eq!(body_text(&event), "late");
    transaction.commit().unwrap();
    producer.join().unwrap();
}

#[test]
fn a_rolled_back_take_returns_its_events_to_the_head_in_order() {
    let root = tempfile::tempdir().unwrap();
    let channel = open(root.path(), &test_config(root.path(), 1));
    put_committed(&channel, &["1", "2", "3", "4"]);
    let mut transaction = channel.begin().unwrap();
    assert_eq!(body_text(&transaction.take().unwrap().unwrap()), "1");
    assert_eq!(body_text(&transaction.take().unwrap().unwrap()), "2");
    transaction.rollback().unwrap();
    assert_eq!(take_committed(&channel, 10), ["1", "2", "3", "4"]);
}

#[test]
fn dropping_an_open_transaction_rolls_it_back() {
    let root = tempfile::tempdir().unwrap();
    let channel = open(root.path(), &test_config(root.path(), 1));
    put_committed(&channel, &["kept"]);
    {
        let mut transaction = channel.begin().unwrap();
        transaction.put(event("dropped")).unwrap();
        assert!(transaction.take().unwrap().is_some());
    }
    assert_eq!(peek_all(&channel), ["kept"]);
    assert_eq!(channel.stats().channel_size, 1);
}

#[test]
fn rolled_back_puts_never_appear_even_after_restart() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 1);
    {
        let channel = open(root.path(), &config);
        put_committed(&channel, &["committed"]);
        let mut transaction = channel.begin().unwrap();
        transaction.put(event("rolled-back")).unwrap();
        transaction.rollback().unwrap();
        assert_eq!(peek_all(&channel), ["committed"]);
    }
    let channel = open(root.path(), &config);
    assert_eq!(peek_all(&channel), ["committed"]);
}

#[test]
fn a_full_channel_refuses_a_put_after_keep_alive_naming_capacity_and_size() {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 1);
    config.capacity = 3;
    config.transaction_capacity = 3;
    let channel = open(root.path(), &config);
    put_committed(&channel, &["1", "2"]);
    let mut transaction = channel.begin().unwrap();
    transaction.put(event("3")).unwrap();
    let started = Instant::now();
    let error = transaction.put(event("4")).unwrap_err();
    assert!(started.elapsed() >= config.keep_alive);
    assert!(matches!(
        error,
        ChannelError::ChannelFull {
            capacity: 3,
            size: 3,
            ..
        }
    ));
    let message = error.to_string();
    assert!(message.contains("channel c1"), "{message}");
    assert!(message.contains("capacity 3"), "{message}");
    assert!(message.contains("3 queued or reserved"), "{message}");
}

#[test]
fn a_put_waiting_for_capacity_succeeds_when_a_take_commits() {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 1);
    config.capacity = 2;
    config.transaction_capacity = 2;
    config.keep_alive = Duration::from_secs(10);
    let channel = Arc::new(open(root.path(), &config));
    put_committed(channel.as_ref(), &["1", "2"]);
    let consumer = {
        let channel = Arc::clone(&channel);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            take_committed(channel.as_ref(), 1)
        })
    };
    put_committed(channel.as_ref(), &["3"]);
    assert_eq!(consumer.join().unwrap(), ["1"]);
    assert_eq!(take_committed(channel.as_ref(), 2), ["2", "3"]);
}

#[test]
fn transaction_capacity_is_enforced_at_put_and_at_take() {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 1);
    config.transaction_capacity = 2;
    let channel = open(root.path(), &config);
    let mut transaction = channel.begin().unwrap();
    transaction.put(event("1")).unwrap();
    transaction.put(event("2")).unwrap();
    let error = transaction.put(event("3")).unwrap_err();
    assert!(matches!(
        error,
        ChannelError::TransactionFull {
            transaction_capacity: 2,
            operation: "put",
            ..
        }
    ));
    assert!(error.to_string().contains("channel c1"));
    assert!(error.to_string().contains("2 puts"));
    transaction.commit().unwrap();
    put_committed(&channel, &["3"]);
    let mut transaction = channel.begin().unwrap();
    transaction.take().unwrap();
    transaction.take().unwrap();
    assert!(matches!(
        transaction.take().unwrap_err(),
        ChannelError::TransactionFull {
            operation: "take",
            ..
        }
    ));
}

#[test]
fn an_event_larger_than_a_segment_allows_is_refused_with_both_sizes() {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 1);
    config.max_file_size_bytes = 4096;
    let channel = open(root.path(), &config);
    let mut transaction = channel.begin().unwrap();
    let error = transaction
        .put(Event::from_body(vec![7u8; 5000]))
        .unwrap_err();
    assert!(matches!(error, ChannelError::EventTooLarge { .. }));
    assert!(error.to_string().contains("5008 bytes"), "{error}");
}

#[test]
fn restart_after_a_clean_close_keeps_untaken_events_in_order() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 1);
    {
        let channel = open(root.path(), &config);
        for batch in 0..10 {
            let names = bodies(batch * 10..batch * 10 + 10, "e");
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        assert_eq!(take_committed(&channel, 25), bodies(0..25, "e"));
        channel.close().unwrap();
    }
    let channel = open(root.path(), &config);
    assert_eq!(channel.stats().channel_size, 75);
    assert_eq!(peek_all(&channel), bodies(25..100, "e"));
    assert_eq!(channel.recovery_report().unwrap().events_recovered, 75);
}

#[test]
fn three_data_dirs_are_all_used_and_replayed_in_write_order() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 3);
    let expected = {
        let channel = Arc::new(open(root.path(), &config));
        let producers: Vec<_> = (0..3)
            .map(|producer| {
                let channel = Arc::clone(&channel);
                std::thread::spawn(move || {
                    for index in 0..100 {
                        let body = format!("p{producer}-{index:03}");
                        put_committed(channel.as_ref(), &[&body]);
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        take_committed(channel.as_ref(), 30);
        let live_order = peek_all(channel.as_ref());
        assert_eq!(live_order.len(), 270);
        for (_, stats) in channel.dir_stats() {
            assert!(
                stats
                    .transactions
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0,
                "every data dir takes transactions"
            );
        }
        live_order
    };
    let channel = open(root.path(), &config);
    assert_eq!(
        peek_all(&channel),
        expected,
        "replay merges dirs in write order"
    );
    for producer in 0..3 {
        let own: Vec<&String> = expected
            .iter()
            .filter(|body| body.starts_with(&format!("p{producer}-")))
            .collect();
        let mut sorted = own.clone();
        sorted.sort();
        assert_eq!(own, sorted, "each producer's events keep their order");
    }
}

#[test]
fn a_small_max_file_size_rolls_segments_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 2);
    config.max_file_size_bytes = 2048;
    let names = bodies(0..500, "rolled-event-");
    {
        let channel = open(root.path(), &config);
        for chunk in names.chunks(5) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        // About 195 bytes per transaction, 100 transactions, 1920 usable bytes a segment.
        assert!(
            channel.segment_paths().len() >= 9,
            "segments roll at maxFileSize"
        );
        for (_, path) in channel.segment_paths() {
            assert!(std::fs::metadata(&path).unwrap().len() <= 2048);
        }
    }
    let channel = open(root.path(), &config);
    assert_eq!(peek_all(&channel), names);
}

#[test]
fn a_second_open_of_the_same_dirs_is_refused_naming_the_dir() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 2);
    let _first = open(root.path(), &config);
    let error = FileChannel::open("c1", config.clone())
        .err()
        .expect("locked");
    assert!(matches!(error, OpenError::Locked { .. }));
    let message = error.to_string();
    assert!(
        message.contains(&config.data_dirs[0].display().to_string()),
        "{message}"
    );
    assert!(message.contains("locked by another process"), "{message}");
}

#[test]
fn the_lock_is_released_on_close() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 1);
    let first = open(root.path(), &config);
    first.close().unwrap();
    assert_eq!(first.health(), ChannelHealth::Closed);
    assert!(matches!(
        first.begin().err(),
        Some(ChannelError::Closed { .. })
    ));
    drop(open(root.path(), &config));
}

#[test]
fn counters_follow_flume_semantics() {
    let root = tempfile::tempdir().unwrap();
    let channel = open(root.path(), &test_config(root.path(), 1));
    put_committed(&channel, &["1", "2", "3"]);
    let mut transaction = channel.begin().unwrap();
    transaction.put(event("x")).unwrap();
    transaction.rollback().unwrap();
    take_committed(&channel, 2); // two takes that find events, no empty take
    let mut transaction = channel.begin().unwrap();
    assert!(transaction.take().unwrap().is_some());
    assert!(transaction.take().unwrap().is_none());
    let stats = channel.stats();
    assert_eq!(stats.event_put_attempt_count, 4);
    assert_eq!(stats.event_put_success_count, 3);
    assert_eq!(stats.event_take_attempt_count, 4);
    assert_eq!(stats.event_take_success_count, 2);
    assert_eq!(stats.channel_size, 1, "an in-flight take still counts");
    assert_eq!(stats.channel_capacity, 100_000);
}

/// A channel on a simulated disk holding three events in one put record, closed cleanly,
/// then reopened with a byte of that record's events flipped: the reopen reads nothing
/// of the log (the checkpoint covers it), so only a take finds the damage.
fn channel_over_a_corrupt_put_record() -> FileChannel {
    let disk = SimFs::default();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let config = FileChannelConfig::new(vec![PathBuf::from("/sim/data")], "/sim/cp".into());
    {
        let channel = open_on(&storage, &config).unwrap();
        put_committed(&channel, &["first", "second", "third"]);
        channel.close().unwrap();
    }
    let data_dir = Path::new("/sim/data");
    let segment = disk
        .list_dir(data_dir)
        .unwrap()
        .into_iter()
        .find(|name| name.starts_with("segment-"))
        .expect("a segment");
    let first_event_byte = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + PUT_EVENT_COUNT_BYTES;
    disk.modify_file(&data_dir.join(segment), |bytes| {
        bytes[first_event_byte] ^= 0x01
    })
    .unwrap();
    open_on(&storage, &config).unwrap()
}

#[test]
fn a_take_that_fails_on_a_corrupt_record_counts_the_attempt_as_well_as_the_error() {
    // The take a blocking caller makes.
    let channel = channel_over_a_corrupt_put_record();
    let mut transaction = channel.begin().unwrap();
    assert!(matches!(
        transaction.take(),
        Err(ChannelError::Corruption { .. })
    ));
    let stats = channel.stats();
    assert_eq!(stats.event_take_error_count, 1);
    assert_eq!(stats.event_take_attempt_count, 1);

    // The never-blocking run of takes the server makes first.
    let channel = channel_over_a_corrupt_put_record();
    let mut transaction = channel.begin().unwrap();
    let mut taken = Vec::new();
    assert!(matches!(
        transaction.try_take_many(10, &mut |_| true, &mut taken),
        Err(ChannelError::Corruption { .. })
    ));
    assert!(taken.is_empty());
    let stats = channel.stats();
    assert_eq!(stats.event_take_error_count, 1);
    assert_eq!(
        stats.event_take_attempt_count, 1,
        "Flume counts the attempt of a take that fails"
    );
}

/// Environment variable that turns this test binary into the child of
/// `restart_after_the_process_is_killed_keeps_every_committed_event`.
const CHILD_DIR_VARIABLE: &str = "MILLRACE_TEST_CHILD_DIR";

#[test]
fn child_process_that_commits_until_killed() {
    let Ok(root) = std::env::var(CHILD_DIR_VARIABLE) else {
        return; // Only does something when started by the test below.
    };
    let root = std::path::PathBuf::from(root);
    let config = test_config(&root, 2);
    let channel = open(&root, &config);
    for index in 0.. {
        put_committed(&channel, &[&format!("k{index}")]);
        println!("committed {index}");
    }
}

#[test]
fn restart_after_the_process_is_killed_keeps_every_committed_event() {
    let root = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_that_commits_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VARIABLE, root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut last_committed = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(index) = line.strip_prefix("committed ") {
            last_committed = Some(index.parse::<usize>().unwrap());
            if last_committed >= Some(200) {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no clean stop
    child.wait().unwrap();
    let acknowledged = last_committed.expect("the child committed") + 1;
    let channel = open(root.path(), &test_config(root.path(), 2));
    let recovered = peek_all(&channel);
    assert!(recovered.len() >= acknowledged);
    assert_eq!(
        recovered[..acknowledged],
        bodies(0..acknowledged, "k")[..],
        "every acknowledged event is back, in order"
    );
}

#[test]
fn pipelined_commits_take_effect_in_the_order_they_were_started_whatever_order_they_finish() {
    let root = tempfile::tempdir().unwrap();
    let channel = open(root.path(), &test_config(root.path(), 2));
    let mut pending = Vec::new();
    for batch in 0..6 {
        let mut transaction = channel.begin().unwrap();
        for index in 0..3 {
            transaction
                .put(Event::from_body(format!("{batch}-{index}")))
                .unwrap();
        }
        pending.push(transaction.commit_pipelined().unwrap());
    }
    // Finish the later ones first: visibility still follows the start order.
    for commit in pending.into_iter().rev() {
        commit.finish().unwrap();
    }
    let expected: Vec<String> = (0..6)
        .flat_map(|batch| (0..3).map(move |index| format!("{batch}-{index}")))
        .collect();
    assert_eq!(take_committed(&channel, 100), expected);
    drop(channel);
    let reopened = open(root.path(), &test_config(root.path(), 2));
    assert_eq!(
        take_committed(&reopened, 100),
        Vec::<String>::new(),
        "takes were committed"
    );
}

#[test]
fn a_pipelined_commit_dropped_unfinished_still_completes() {
    let root = tempfile::tempdir().unwrap();
    let channel = open(root.path(), &test_config(root.path(), 1));
    let mut transaction = channel.begin().unwrap();
    transaction.put(Event::from_body("kept")).unwrap();
    drop(transaction.commit_pipelined().unwrap());
    put_committed(&channel, &["after"]);
    assert_eq!(take_committed(&channel, 10), ["kept", "after"]);
}

#[test]
fn two_open_takes_rolled_back_in_either_order_return_their_events_in_put_order() {
    for order in [RollbackOrder::AThenB, RollbackOrder::BThenA] {
        let root = tempfile::tempdir().unwrap();
        let config = test_config(root.path(), 2);
        let channel = open(root.path(), &config);
        assert_eq!(
            two_open_takes_rolled_back(&channel, &[2, 3, 2], order),
            seven_events(),
            "{order:?}"
        );
        // The order is the one a restart finds too (the close checkpoints the queue).
        channel.close().unwrap();
        drop(channel);
        assert_eq!(
            peek_all(&open(root.path(), &config)),
            seven_events(),
            "{order:?}"
        );
    }
}

#[test]
fn peek_after_restart_reads_the_head_from_the_segments_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 2);
    {
        let channel = open(root.path(), &config);
        for batch in 0..4 {
            let names = bodies(batch * 5..batch * 5 + 5, "e");
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            put_committed(&channel, &refs);
        }
        assert_eq!(take_committed(&channel, 3), bodies(0..3, "e"));
        channel.close().unwrap();
    }
    let channel = open(root.path(), &config);
    let before = channel.stats();
    let peeked = channel
        .peek(4, &mut |_| true)
        .expect("a file channel peeks")
        .expect("peek");
    assert_eq!(
        peeked.iter().map(body_text).collect::<Vec<_>>(),
        bodies(3..7, "e")
    );
    let mut admitted = 0;
    let bounded = channel
        .peek(100, &mut |_| {
            admitted += 1;
            admitted <= 2
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        bounded.len(),
        2,
        "the first event admit refuses ends the peek"
    );
    let after = channel.stats();
    assert_eq!(after.channel_size, before.channel_size);
    assert_eq!(
        after.event_take_attempt_count,
        before.event_take_attempt_count
    );
    assert_eq!(take_committed(&channel, 100), bodies(3..20, "e"));
}
