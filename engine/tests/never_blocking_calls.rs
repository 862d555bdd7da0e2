//! The never-blocking calls (`try_put`, `try_take_many`, `try_commit_pipelined`) of every
//! channel type: they do what their blocking forms do when nothing would wait, and hand
//! back, unchanged, what would.

mod common;

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use common::*;
use millrace_engine::config::{FileChannelConfig, MemoryChannelConfig, SpillableChannelConfig};
use millrace_engine::{
    Channel, ChannelError, CommitAttempt, Event, FileChannel, MemoryChannel, PutAttempt,
    SpillableChannel, TakeStop, Transaction,
};

/// A byte capacity no memory-channel test here reaches.
const AMPLE_BYTE_CAPACITY_BYTES: u64 = 1 << 30;

/// One channel of each type, named for assertion messages.
fn every_channel_type(root: &Path) -> Vec<(&'static str, Box<dyn Channel>)> {
    let file = open(&root.join("file"), &test_config(&root.join("file"), 1));
    let memory = MemoryChannel::open("m1", memory_config(1_000, 100)).expect("open memory");
    let spillable =
        SpillableChannel::open("s1", spill_config(&root.join("spill"), 2)).expect("open spillable");
    vec![
        ("file", Box::new(file)),
        ("memory", Box::new(memory)),
        ("spillable", Box::new(spillable)),
    ]
}

fn memory_config(capacity: u64, transaction_capacity: u64) -> MemoryChannelConfig {
    MemoryChannelConfig {
        capacity,
        transaction_capacity,
        keep_alive: Duration::from_millis(50),
        byte_capacity_bytes: Some(AMPLE_BYTE_CAPACITY_BYTES),
        ..MemoryChannelConfig::default()
    }
}

/// A spillable channel whose memory tier holds `memory_capacity` events.
fn spill_config(root: &Path, memory_capacity: u64) -> SpillableChannelConfig {
    let overflow = FileChannelConfig::new(vec![root.join("data")], root.join("checkpoint"));
    let mut config = SpillableChannelConfig::new(overflow);
    config.memory_capacity = memory_capacity;
    config.overflow_capacity = 1_000;
    config.overflow_timeout = Duration::ZERO;
    config.byte_capacity_bytes = Some(AMPLE_BYTE_CAPACITY_BYTES);
    config
}

fn accept_all() -> impl FnMut(&Event) -> bool {
    |_| true
}

fn texts(events: &[Event]) -> Vec<String> {
    events.iter().map(body_text).collect()
}

/// Puts each batch in its own committed transaction.
fn put_batches(channel: &dyn Channel, batches: &[&[&str]]) {
    for batch in batches {
        put_committed(channel, batch);
    }
}

#[test]
fn try_take_many_takes_in_put_commit_order_and_says_when_the_channel_is_empty() {
    let root = tempfile::tempdir().unwrap();
    for (kind, channel) in every_channel_type(root.path()) {
        // Three commits: on the spillable channel (memory tier of 2) they land in
        // memory, then the overflow, then memory again.
        put_batches(channel.as_ref(), &[&["a", "b"], &["c", "d", "e"], &["f"]]);
        let mut transaction = channel.begin().unwrap();
        let mut taken = Vec::new();
        let stop = transaction
            .try_take_many(10, &mut accept_all(), &mut taken)
            .unwrap();
        assert_eq!(texts(&taken), ["a", "b", "c", "d", "e", "f"], "{kind}");
        assert_eq!(stop, TakeStop::Empty, "{kind}");
        transaction.commit().unwrap();
        assert_eq!(channel.stats().channel_size, 0, "{kind}");
    }
}

#[test]
fn try_take_many_stops_at_max_events_and_the_next_call_goes_on_from_there() {
    let root = tempfile::tempdir().unwrap();
    for (kind, channel) in every_channel_type(root.path()) {
        put_batches(channel.as_ref(), &[&["1", "2", "3", "4", "5"]]);
        let mut transaction = channel.begin().unwrap();
        let mut taken = Vec::new();
        let stop = transaction
            .try_take_many(2, &mut accept_all(), &mut taken)
            .unwrap();
        assert_eq!(
            (texts(&taken), stop),
            (vec!["1".into(), "2".into()], TakeStop::Limit),
            "{kind}"
        );
        let stop = transaction
            .try_take_many(10, &mut accept_all(), &mut taken)
            .unwrap();
        assert_eq!(texts(&taken), ["1", "2", "3", "4", "5"], "{kind}");
        assert_eq!(stop, TakeStop::Empty, "{kind}");
        transaction.commit().unwrap();
    }
}

#[test]
fn an_event_the_caller_refuses_stays_at_the_head_for_the_next_take() {
    let root = tempfile::tempdir().unwrap();
    for (kind, channel) in every_channel_type(root.path()) {
        put_batches(channel.as_ref(), &[&["short", "a much longer body", "x"]]);
        let mut transaction = channel.begin().unwrap();
        let mut taken = Vec::new();
        // A budget of 10 body bytes: "short" fits, the next one does not.
        let mut budget_bytes = 10usize;
        let mut within_budget = |event: &Event| {
            let fits = event.body.len() <= budget_bytes;
            if fits {
                budget_bytes -= event.body.len();
            }
            fits
        };
        let stop = transaction
            .try_take_many(10, &mut within_budget, &mut taken)
            .unwrap();
        assert_eq!(
            (texts(&taken), stop),
            (vec!["short".into()], TakeStop::Limit),
            "{kind}"
        );
        transaction.commit().unwrap();
        assert_eq!(
            take_committed(channel.as_ref(), 10),
            ["a much longer body", "x"],
            "{kind}: the refused event is next"
        );
    }
}

#[test]
fn try_take_many_stops_at_transaction_capacity_and_then_fails_as_take_does() {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 1);
    config.transaction_capacity = 3;
    let file = open(root.path(), &config);
    let memory = MemoryChannel::open("m1", memory_config(100, 3)).unwrap();
    for (kind, channel) in [("file", &file as &dyn Channel), ("memory", &memory)] {
        put_batches(channel, &[&["1", "2"], &["3", "4", "5"]]);
        let mut transaction = channel.begin().unwrap();
        let mut taken = Vec::new();
        let stop = transaction
            .try_take_many(10, &mut accept_all(), &mut taken)
            .unwrap();
        assert_eq!((taken.len(), stop), (3, TakeStop::Limit), "{kind}");
        let full = transaction.try_take_many(10, &mut accept_all(), &mut taken);
        assert!(
            matches!(
                full,
                Err(ChannelError::TransactionFull {
                    transaction_capacity: 3,
                    ..
                })
            ),
            "{kind}: {full:?}"
        );
        transaction.commit().unwrap();
        assert_eq!(take_committed(channel, 10), ["4", "5"], "{kind}");
    }
}

#[test]
fn a_rolled_back_batch_of_takes_returns_to_the_head_in_its_order() {
    let root = tempfile::tempdir().unwrap();
    for (kind, channel) in every_channel_type(root.path()) {
        put_batches(channel.as_ref(), &[&["a", "b"], &["c", "d", "e"]]);
        let mut transaction = channel.begin().unwrap();
        let mut taken = Vec::new();
        let _ = transaction
            .try_take_many(4, &mut accept_all(), &mut taken)
            .unwrap();
        assert_eq!(taken.len(), 4, "{kind}");
        transaction.rollback().unwrap();
        assert_eq!(
            peek_all(channel.as_ref()),
            ["a", "b", "c", "d", "e"],
            "{kind}"
        );
    }
}

#[test]
fn take_attempts_count_each_event_taken_and_the_look_that_found_nothing() {
    let root = tempfile::tempdir().unwrap();
    for (kind, channel) in every_channel_type(root.path()) {
        put_batches(channel.as_ref(), &[&["a", "b", "c"]]);
        let before = channel.stats().event_take_attempt_count;
        let mut transaction = channel.begin().unwrap();
        let mut taken = Vec::new();
        let _ = transaction
            .try_take_many(10, &mut accept_all(), &mut taken)
            .unwrap();
        transaction.commit().unwrap();
        let stats = channel.stats();
        assert_eq!(stats.event_take_attempt_count - before, 4, "{kind}");
        assert_eq!(stats.event_take_success_count, 3, "{kind}");
    }
}

#[test]
fn after_a_restart_a_file_channel_takes_what_the_page_cache_holds_without_blocking() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 1);
    put_committed(&open(root.path(), &config), &["a", "b", "c"]);
    // Reopened, the record cache is empty: the events come from the segment file, which
    // the page cache still holds after the write.
    let channel = open(root.path(), &config);
    let mut transaction = channel.begin().unwrap();
    let mut taken = Vec::new();
    let stop = transaction
        .try_take_many(10, &mut accept_all(), &mut taken)
        .unwrap();
    if stop == TakeStop::WouldBlock && taken.is_empty() && !nowait_reads_work_here(root.path()) {
        println!("skipped: this file system refuses RWF_NOWAIT reads, so every read may block");
        return;
    }
    assert_eq!(
        (texts(&taken), stop),
        (vec!["a".into(), "b".into(), "c".into()], TakeStop::Empty)
    );
    transaction.commit().unwrap();
}

#[test]
fn a_file_channel_hands_back_a_take_whose_record_is_not_in_memory() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 1);
    put_committed(&open(root.path(), &config), &["a", "b", "c"]);
    let channel = open(root.path(), &config);
    if !evict_from_page_cache(&root.path().join("data0")) {
        println!("skipped: this file system keeps the segments in memory whatever we ask");
        return;
    }
    let mut transaction = channel.begin().unwrap();
    let mut taken = Vec::new();
    let stop = transaction
        .try_take_many(10, &mut accept_all(), &mut taken)
        .unwrap();
    assert_eq!((taken.len(), stop), (0, TakeStop::WouldBlock));
    // The blocking take reads the record; the rest then come from the record cache.
    assert_eq!(body_text(&transaction.take().unwrap().unwrap()), "a");
    let stop = transaction
        .try_take_many(10, &mut accept_all(), &mut taken)
        .unwrap();
    assert_eq!(
        (texts(&taken), stop),
        (vec!["b".into(), "c".into()], TakeStop::Empty)
    );
    transaction.commit().unwrap();
    assert_eq!(channel.stats().channel_size, 0);
}

/// Drops the clean pages of every file in `dir` from the page cache; true when the
/// file system then refuses a `RWF_NOWAIT` read of them (so the eviction took).
fn evict_from_page_cache(dir: &Path) -> bool {
    let mut evicted_any = false;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "log") {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        file.sync_all().unwrap();
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
        let mut byte = [0u8; 1];
        let slices = &mut [std::io::IoSliceMut::new(&mut byte)];
        let nowait = rustix::io::ReadWriteFlags::NOWAIT;
        let evicted = matches!(
            rustix::io::preadv2(file.as_fd(), slices, 0, nowait),
            Err(rustix::io::Errno::AGAIN)
        );
        if evicted {
            // The probe's miss starts a readahead, which would bring the file back into
            // the page cache behind our back. Read the file through (waiting for that
            // readahead to land) and drop it again: pages that are clean and idle go.
            std::fs::read(&path).unwrap();
            let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
        }
        evicted_any |= evicted;
    }
    evicted_any
}

/// Whether a `RWF_NOWAIT` read of a file just written in `dir` succeeds.
fn nowait_reads_work_here(dir: &Path) -> bool {
    let path = dir.join("nowait-probe");
    std::fs::write(&path, b"probe").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut buffer = [0u8; 5];
    let slices = &mut [std::io::IoSliceMut::new(&mut buffer)];
    let read = rustix::io::preadv2(file.as_fd(), slices, 0, rustix::io::ReadWriteFlags::NOWAIT);
    matches!(read, Ok(5))
}

#[test]
fn try_put_hands_the_event_back_when_a_file_channel_is_full() {
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 1);
    config.capacity = 2;
    config.transaction_capacity = 2;
    let channel = open(root.path(), &config);
    put_committed(&channel, &["1", "2"]);
    let mut transaction = channel.begin().unwrap();
    match transaction.try_put(event("3")).unwrap() {
        PutAttempt::WouldBlock(returned) => assert_eq!(body_text(&returned), "3"),
        PutAttempt::Added => panic!("a full channel took a put without waiting"),
    }
    transaction.commit().unwrap();
    assert_eq!(take_committed(&channel, 2), ["1", "2"]);
    assert_eq!(channel.stats().channel_size, 0, "nothing was put");
}

#[test]
fn try_put_adds_the_event_when_there_is_room() {
    let root = tempfile::tempdir().unwrap();
    for (kind, channel) in every_channel_type(root.path()) {
        let mut transaction = channel.begin().unwrap();
        assert!(
            matches!(transaction.try_put(event("x")).unwrap(), PutAttempt::Added),
            "{kind}"
        );
        transaction.commit().unwrap();
        assert_eq!(take_committed(channel.as_ref(), 10), ["x"], "{kind}");
    }
}

/// Starts the commit without blocking and finishes it; panics if it was handed back.
fn commit_without_blocking(kind: &str, transaction: Box<dyn Transaction>) {
    match transaction.try_commit_pipelined().unwrap() {
        CommitAttempt::Started(pending) => pending.finish().unwrap(),
        CommitAttempt::WouldBlock(_) => panic!("{kind}: a commit with room was handed back"),
    }
}

#[test]
fn try_commit_pipelined_commits_file_and_memory_transactions_that_need_no_wait() {
    let root = tempfile::tempdir().unwrap();
    for (kind, channel) in every_channel_type(root.path()) {
        if kind == "spillable" {
            continue;
        }
        let mut transaction = channel.begin().unwrap();
        transaction.put(event("p")).unwrap();
        commit_without_blocking(kind, transaction);
        let mut transaction = channel.begin().unwrap();
        assert!(transaction.take().unwrap().is_some(), "{kind}");
        commit_without_blocking(kind, transaction);
        assert_eq!(channel.stats().channel_size, 0, "{kind}");
        assert_eq!(channel.stats().event_take_success_count, 1, "{kind}");
    }
}

#[test]
fn a_memory_commit_that_would_wait_for_room_is_handed_back_whole() {
    let channel = MemoryChannel::open("m1", memory_config(2, 2)).unwrap();
    put_committed(&channel, &["1", "2"]);
    let mut transaction = channel.begin().unwrap();
    transaction.put(event("3")).unwrap();
    let handed_back = match transaction.try_commit_pipelined().unwrap() {
        CommitAttempt::WouldBlock(transaction) => transaction,
        CommitAttempt::Started(_) => panic!("a commit beyond capacity did not wait"),
    };
    assert_eq!(take_committed(&channel, 1), ["1"]);
    handed_back.commit().unwrap();
    assert_eq!(take_committed(&channel, 2), ["2", "3"]);
}

#[test]
fn a_file_commit_too_large_to_encode_in_a_moment_is_handed_back_and_commits_later() {
    let root = tempfile::tempdir().unwrap();
    let channel = open(root.path(), &test_config(root.path(), 1));
    let body = vec![b'z'; 64 * 1024];
    let mut transaction = channel.begin().unwrap();
    for _ in 0..32 {
        transaction.put(Event::from_body(body.clone())).unwrap();
    }
    let handed_back = match transaction.try_commit_pipelined().unwrap() {
        CommitAttempt::WouldBlock(transaction) => transaction,
        CommitAttempt::Started(_) => panic!("2 MiB of puts were encoded on the caller's thread"),
    };
    handed_back.commit_pipelined().unwrap().finish().unwrap();
    assert_eq!(channel.stats().channel_size, 32);
}

#[test]
fn a_spillable_commit_is_always_handed_back() {
    let root = tempfile::tempdir().unwrap();
    let channel = SpillableChannel::open("s1", spill_config(root.path(), 10)).unwrap();
    let mut transaction = channel.begin().unwrap();
    transaction.put(event("p")).unwrap();
    let handed_back = match transaction.try_commit_pipelined().unwrap() {
        CommitAttempt::WouldBlock(transaction) => transaction,
        CommitAttempt::Started(_) => panic!("a spillable commit may wait and must be handed back"),
    };
    handed_back.commit().unwrap();
    assert_eq!(take_committed(&channel, 10), ["p"]);
}

#[test]
fn a_file_channel_keeps_serving_after_try_calls_across_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let config = test_config(root.path(), 1);
    {
        let channel: FileChannel = open(root.path(), &config);
        let mut transaction = channel.begin().unwrap();
        for body in ["1", "2", "3"] {
            assert!(matches!(
                transaction.try_put(event(body)).unwrap(),
                PutAttempt::Added
            ));
        }
        commit_without_blocking("file", transaction);
        let mut transaction = channel.begin().unwrap();
        let mut taken = Vec::new();
        let _ = transaction
            .try_take_many(1, &mut accept_all(), &mut taken)
            .unwrap();
        commit_without_blocking("file", transaction);
    }
    let channel = open(root.path(), &config);
    assert_eq!(
        take_committed(&channel, 10),
        ["2", "3"],
        "the take of 1 was durable"
    );
}

#[test]
fn concurrent_never_blocking_producers_and_consumers_move_every_event_exactly_once_in_order() {
    const PRODUCERS: usize = 2;
    const CONSUMERS: usize = 3;
    const BATCHES_PER_PRODUCER: usize = 200;
    const EVENTS_PER_BATCH: usize = 25;
    let root = tempfile::tempdir().unwrap();
    let mut config = test_config(root.path(), 2);
    // Small segments, so that takes cross segment and record boundaries often.
    config.max_file_size_bytes = 64 * 1024;
    let channel = std::sync::Arc::new(open(root.path(), &config));
    let total = PRODUCERS * BATCHES_PER_PRODUCER * EVENTS_PER_BATCH;
    let taken_so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let channel = std::sync::Arc::clone(&channel);
            std::thread::spawn(move || {
                for batch in 0..BATCHES_PER_PRODUCER {
                    let mut transaction = channel.begin().unwrap();
                    for index in 0..EVENTS_PER_BATCH {
                        let sequence = batch * EVENTS_PER_BATCH + index;
                        let event = event(&format!("{producer}:{sequence}"));
                        if let PutAttempt::WouldBlock(event) = transaction.try_put(event).unwrap() {
                            transaction.put(event).unwrap();
                        }
                    }
                    match transaction.try_commit_pipelined().unwrap() {
                        CommitAttempt::Started(pending) => pending.finish().unwrap(),
                        CommitAttempt::WouldBlock(transaction) => transaction.commit().unwrap(),
                    }
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let channel = std::sync::Arc::clone(&channel);
            let taken_so_far = std::sync::Arc::clone(&taken_so_far);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while taken_so_far.load(std::sync::atomic::Ordering::SeqCst) < total {
                    let mut transaction = channel.begin().unwrap();
                    let mut taken = Vec::new();
                    let stop = transaction
                        .try_take_many(40, &mut accept_all(), &mut taken)
                        .unwrap();
                    if stop == TakeStop::WouldBlock && taken.is_empty() {
                        taken.extend(transaction.take_waiting(Duration::from_millis(10)).unwrap());
                    }
                    transaction.commit().unwrap();
                    taken_so_far.fetch_add(taken.len(), std::sync::atomic::Ordering::SeqCst);
                    seen.extend(texts(&taken));
                }
                seen
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    let mut everything = std::collections::HashSet::new();
    for consumer in consumers {
        let seen = consumer.join().unwrap();
        // Each consumer sees each producer's events in the order they were put.
        let mut last_by_producer = [None::<usize>; PRODUCERS];
        for text in &seen {
            let (producer, sequence) = text.split_once(':').unwrap();
            let (producer, sequence): (usize, usize) =
                (producer.parse().unwrap(), sequence.parse().unwrap());
            let last = &mut last_by_producer[producer];
            assert!(
                last.is_none_or(|last| last < sequence),
                "{text} after {last:?}"
            );
            *last = Some(sequence);
            assert!(everything.insert(text.clone()), "{text} taken twice");
        }
    }
    assert_eq!(everything.len(), total, "every event was taken");
    assert_eq!(channel.stats().channel_size, 0);
}

/// Polls a future once with a waker that does nothing: `true` when it is ready.
fn is_ready(future: &mut (impl std::future::Future<Output = ()> + Unpin)) -> bool {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(future).poll(&mut context).is_ready()
}

#[test]
fn arrivals_wake_a_listener_registered_before_a_commit_or_a_rollback_returns_events() {
    let root = tempfile::tempdir().unwrap();
    for (kind, channel) in every_channel_type(root.path()) {
        let arrivals = channel
            .arrivals()
            .expect("every channel type signals arrivals");
        let mut before_put = arrivals.listen();
        assert!(!is_ready(&mut before_put), "{kind}: nothing arrived yet");
        put_committed(channel.as_ref(), &["a"]);
        assert!(
            is_ready(&mut before_put),
            "{kind}: a committed put wakes it"
        );

        // A take rolled back returns its event to the head: that is an arrival too.
        let mut transaction = channel.begin().unwrap();
        let mut taken = Vec::new();
        let _ = transaction
            .try_take_many(1, &mut accept_all(), &mut taken)
            .unwrap();
        assert_eq!(texts(&taken), ["a"], "{kind}");
        let mut before_rollback = arrivals.listen();
        assert!(!is_ready(&mut before_rollback), "{kind}");
        transaction.rollback().unwrap();
        assert!(
            is_ready(&mut before_rollback),
            "{kind}: a rollback wakes it"
        );

        let mut before_close = arrivals.listen();
        channel.close().unwrap();
        assert!(is_ready(&mut before_close), "{kind}: closing wakes it");
    }
}
