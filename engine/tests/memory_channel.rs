//! Flume's memory channel semantics: limits, waiting, rollback, counters, lifecycle and
//! concurrency. The first group follows Flume's own `TestMemoryChannel` cases.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use millrace_engine::config::MemoryChannelConfig;
use millrace_engine::{Channel, ChannelError, ChannelHealth, Event, MemoryChannel, OpenError};

/// A keep-alive short enough that tests expecting a commit to fail finish quickly.
const SHORT_KEEP_ALIVE: Duration = Duration::from_millis(50);
/// A keep-alive long enough that a commit expected to succeed after waiting never times
/// out on a loaded machine.
const LONG_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long a test lets a waiting thread settle into its wait before acting.
const SETTLE: Duration = Duration::from_millis(150);
/// A byte capacity no test reaches unless it sets its own.
const AMPLE_BYTE_CAPACITY_BYTES: u64 = 1 << 30;

fn config(capacity: u64, transaction_capacity: u64, keep_alive: Duration) -> MemoryChannelConfig {
    MemoryChannelConfig {
        capacity,
        transaction_capacity,
        keep_alive,
        byte_capacity_bytes: Some(AMPLE_BYTE_CAPACITY_BYTES),
        ..MemoryChannelConfig::default()
    }
}

fn byte_limited_config(byte_capacity_bytes: u64, buffer_percentage: u8) -> MemoryChannelConfig {
    MemoryChannelConfig {
        byte_capacity_bytes: Some(byte_capacity_bytes),
        byte_capacity_buffer_percentage: buffer_percentage,
        keep_alive: SHORT_KEEP_ALIVE,
        ..MemoryChannelConfig::default()
    }
}

fn open(config: MemoryChannelConfig) -> MemoryChannel {
    MemoryChannel::open("m1", config).expect("valid test settings")
}

fn event(body: &str) -> Event {
    Event::from_body(body.as_bytes().to_vec())
}

fn sized(body_bytes: usize) -> Event {
    Event::from_body(vec![b'x'; body_bytes])
}

fn text(event: &Event) -> String {
    String::from_utf8(event.body.to_vec()).unwrap()
}

fn put_committed(channel: &MemoryChannel, bodies: &[&str]) {
    let mut transaction = channel.begin().unwrap();
    for body in bodies {
        transaction.put(event(body)).unwrap();
    }
    transaction.commit().unwrap();
}

fn put_events(channel: &MemoryChannel, events: Vec<Event>) -> Result<(), ChannelError> {
    let mut transaction = channel.begin()?;
    for event in events {
        transaction.put(event)?;
    }
    transaction.commit()
}

/// Takes and commits up to `max` events, in as many transactions as
/// `transactionCapacity` requires; stops early when the channel is empty.
fn take_committed(channel: &MemoryChannel, max: usize) -> Vec<String> {
    let per_transaction = channel.config().transaction_capacity as usize;
    let mut bodies = Vec::new();
    loop {
        let mut transaction = channel.begin().unwrap();
        let mut taken_here = 0;
        let mut empty = false;
        while bodies.len() < max && taken_here < per_transaction {
            match transaction.take().unwrap() {
                Some(event) => {
                    bodies.push(text(&event));
                    taken_here += 1;
                }
                None => {
                    empty = true;
                    break;
                }
            }
        }
        transaction.commit().unwrap();
        if empty || bodies.len() >= max {
            return bodies;
        }
    }
}

// --- Flume's TestMemoryChannel cases -------------------------------------------------

#[test]
fn a_put_beyond_transaction_capacity_fails_at_the_put_naming_the_limit() {
    let channel = open(config(5, 2, SHORT_KEEP_ALIVE));
    let mut transaction = channel.begin().unwrap();
    transaction.put(event("a")).unwrap();
    transaction.put(event("b")).unwrap();
    let error = transaction.put(event("c")).unwrap_err();
    assert!(matches!(
        error,
        ChannelError::TransactionFull {
            transaction_capacity: 2,
            operation: "put",
            ..
        }
    ));
    let message = error.to_string();
    assert!(message.contains("channel m1"), "{message}");
    assert!(
        message.contains("2 puts, its transactionCapacity"),
        "{message}"
    );
    // The refused put does not spoil the two accepted ones.
    transaction.commit().unwrap();
    assert_eq!(take_committed(&channel, 10), ["a", "b"]);
}

#[test]
fn a_take_beyond_transaction_capacity_fails_at_the_take() {
    let channel = open(config(5, 2, SHORT_KEEP_ALIVE));
    put_committed(&channel, &["a", "b"]);
    put_committed(&channel, &["c"]);
    let mut transaction = channel.begin().unwrap();
    assert!(transaction.take().unwrap().is_some());
    assert!(transaction.take().unwrap().is_some());
    let error = transaction.take().unwrap_err();
    assert!(matches!(
        error,
        ChannelError::TransactionFull {
            transaction_capacity: 2,
            operation: "take",
            ..
        }
    ));
    transaction.commit().unwrap();
    assert_eq!(take_committed(&channel, 10), ["c"]);
}

#[test]
fn a_commit_beyond_capacity_fails_at_commit_naming_the_capacity() {
    let channel = open(config(5, 3, SHORT_KEEP_ALIVE));
    put_committed(&channel, &["a", "b", "c"]);
    let mut transaction = channel.begin().unwrap();
    // Capacity is not reserved at put: all three puts are accepted.
    for body in ["d", "e", "f"] {
        transaction.put(event(body)).unwrap();
    }
    let error = transaction.commit().unwrap_err();
    assert!(
        matches!(
            error,
            ChannelError::ChannelFull {
                capacity: 5,
                size: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("capacity 5 events"), "{error}");
    assert_eq!(take_committed(&channel, 10), ["a", "b", "c"]);
}

#[test]
fn byte_capacity_of_sixteen_slots_admits_three_405_byte_bodies_and_refuses_two_more_at_commit() {
    let channel = open(byte_limited_config(2000, 20));
    assert_eq!(channel.byte_capacity_slots(), 16);
    put_events(&channel, vec![sized(405), sized(405), sized(405)]).unwrap();
    assert_eq!(channel.byte_slots_in_use(), 15);

    let mut transaction = channel.begin().unwrap();
    transaction.put(sized(405)).unwrap();
    transaction.put(sized(405)).unwrap();
    let error = transaction.commit().unwrap_err();
    match &error {
        ChannelError::ByteCapacityFull {
            byte_capacity_bytes,
            body_limit_bytes,
            body_bytes_in_use,
            body_bytes_needed,
            ..
        } => {
            assert_eq!(*byte_capacity_bytes, 2000);
            assert_eq!(*body_limit_bytes, 1600);
            assert_eq!(*body_bytes_in_use, 1500);
            assert_eq!(*body_bytes_needed, 1000);
        }
        other => panic!("expected ByteCapacityFull, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("channel m1"), "{message}");
    assert!(message.contains("byteCapacity 2000 bytes"), "{message}");
    assert_eq!(channel.queued_events(), 3);
    assert_eq!(channel.byte_slots_in_use(), 15);
}

#[test]
fn byte_slots_are_restored_after_rollbacks() {
    let channel = open(byte_limited_config(1000, 20));
    assert_eq!(channel.byte_capacity_slots(), 8);
    let eight_slots = || (0..8).map(|_| sized(100)).collect::<Vec<_>>();

    // Rolled-back puts never held slots.
    let mut transaction = channel.begin().unwrap();
    for event in eight_slots() {
        transaction.put(event).unwrap();
    }
    transaction.rollback().unwrap();
    assert_eq!(channel.byte_slots_in_use(), 0);
    put_events(&channel, eight_slots()).unwrap();
    assert_eq!(channel.byte_slots_in_use(), 8);

    // Rolled-back takes put their events, and so their slots, back: still full.
    let mut transaction = channel.begin().unwrap();
    while transaction.take().unwrap().is_some() {}
    transaction.rollback().unwrap();
    assert_eq!(channel.byte_slots_in_use(), 8);
    assert!(matches!(
        put_events(&channel, vec![sized(1)]),
        Err(ChannelError::ByteCapacityFull { .. })
    ));

    // Committed takes release them.
    assert_eq!(take_committed(&channel, 8).len(), 8);
    assert_eq!(channel.byte_slots_in_use(), 0);
    put_events(&channel, eight_slots()).unwrap();
}

#[test]
fn empty_bodies_are_accepted_and_each_costs_one_slot() {
    let channel = open(byte_limited_config(1000, 20));
    let empties = |count: usize| (0..count).map(|_| Event::default()).collect::<Vec<_>>();
    put_events(&channel, empties(8)).unwrap();
    assert_eq!(channel.byte_slots_in_use(), 8);
    assert!(matches!(
        put_events(&channel, empties(1)),
        Err(ChannelError::ByteCapacityFull { .. })
    ));
    let mut transaction = channel.begin().unwrap();
    assert_eq!(transaction.take().unwrap(), Some(Event::default()));
    transaction.commit().unwrap();
}

// --- keep-alive: commits waiting for room ----------------------------------------------

#[test]
fn a_commit_on_a_full_channel_waits_and_succeeds_when_a_take_commits() {
    let channel = Arc::new(open(config(2, 2, LONG_KEEP_ALIVE)));
    put_committed(&channel, &["a", "b"]);
    let take_committed_flag = Arc::new(AtomicBool::new(false));
    let producer = {
        let channel = Arc::clone(&channel);
        let take_committed_flag = Arc::clone(&take_committed_flag);
        thread::spawn(move || {
            put_committed(&channel, &["c"]);
            // The commit could only have gone through once the take freed a place.
            assert!(take_committed_flag.load(Ordering::SeqCst));
        })
    };
    thread::sleep(SETTLE);
    assert!(!producer.is_finished(), "the commit did not wait for room");
    let mut transaction = channel.begin().unwrap();
    assert_eq!(text(&transaction.take().unwrap().unwrap()), "a");
    take_committed_flag.store(true, Ordering::SeqCst);
    transaction.commit().unwrap();
    producer.join().unwrap();
    assert_eq!(take_committed(&channel, 10), ["b", "c"]);
}

#[test]
fn a_commit_on_a_full_channel_fails_after_keep_alive_naming_capacity_and_size() {
    let keep_alive = Duration::from_millis(200);
    let channel = open(config(2, 2, keep_alive));
    put_committed(&channel, &["a", "b"]);
    let started = Instant::now();
    let error = put_events(&channel, vec![event("c")]).unwrap_err();
    assert!(started.elapsed() >= keep_alive, "gave up before keep-alive");
    match error {
        ChannelError::ChannelFull {
            capacity,
            size,
            waited_ms,
            ..
        } => {
            assert_eq!((capacity, size), (2, 2));
            assert!(waited_ms >= 200, "waited {waited_ms} ms");
        }
        other => panic!("expected ChannelFull, got {other:?}"),
    }
}

#[test]
fn a_commit_whose_puts_alone_exceed_byte_capacity_fails_without_waiting() {
    let channel = open(MemoryChannelConfig {
        keep_alive: LONG_KEEP_ALIVE,
        ..byte_limited_config(2000, 20)
    });
    let started = Instant::now();
    // 1601 bytes need 17 slots; the channel has 16 even when empty.
    let error = put_events(&channel, vec![sized(1601)]).unwrap_err();
    assert!(matches!(error, ChannelError::ByteCapacityFull { .. }));
    assert!(started.elapsed() < LONG_KEEP_ALIVE / 10);
}

// --- takes ----------------------------------------------------------------------------

#[test]
fn takes_return_events_in_put_commit_order() {
    let channel = open(config(100, 10, SHORT_KEEP_ALIVE));
    put_committed(&channel, &["a", "b"]);
    put_committed(&channel, &["c"]);
    put_committed(&channel, &["d", "e", "f"]);
    assert_eq!(take_committed(&channel, 4), ["a", "b", "c", "d"]);
    assert_eq!(take_committed(&channel, 10), ["e", "f"]);
}

#[test]
fn a_take_on_an_empty_channel_returns_nothing_at_once() {
    let channel = open(config(100, 10, LONG_KEEP_ALIVE));
    let mut transaction = channel.begin().unwrap();
    let started = Instant::now();
    assert!(transaction.take().unwrap().is_none());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_waiting_take_returns_an_event_put_later() {
    let channel = Arc::new(open(config(100, 10, SHORT_KEEP_ALIVE)));
    let producer = {
        let channel = Arc::clone(&channel);
        thread::spawn(move || {
            thread::sleep(SETTLE);
            put_committed(&channel, &["late"]);
        })
    };
    let mut transaction = channel.begin().unwrap();
    let started = Instant::now();
    let taken = transaction.take_waiting(LONG_KEEP_ALIVE).unwrap();
    assert_eq!(taken.map(|event| text(&event)).as_deref(), Some("late"));
    assert!(started.elapsed() < LONG_KEEP_ALIVE);
    transaction.commit().unwrap();
    producer.join().unwrap();
}

#[test]
fn a_take_within_keep_alive_waits_keep_alive_then_returns_nothing() {
    let keep_alive = Duration::from_millis(200);
    let channel = open(config(100, 10, keep_alive));
    let mut transaction = channel.transaction().unwrap();
    let started = Instant::now();
    assert!(transaction.take_within_keep_alive().unwrap().is_none());
    assert!(started.elapsed() >= keep_alive);
}

// --- rollback -------------------------------------------------------------------------

#[test]
fn a_rolled_back_take_returns_its_events_to_the_head_in_order() {
    let channel = open(config(100, 10, SHORT_KEEP_ALIVE));
    put_committed(&channel, &["a", "b", "c", "d", "e"]);
    let mut first = channel.begin().unwrap();
    let mut second = channel.begin().unwrap();
    assert_eq!(text(&first.take().unwrap().unwrap()), "a");
    assert_eq!(text(&first.take().unwrap().unwrap()), "b");
    assert_eq!(text(&second.take().unwrap().unwrap()), "c");
    first.rollback().unwrap();
    assert_eq!(take_committed(&channel, 10), ["a", "b", "d", "e"]);
    second.rollback().unwrap();
    assert_eq!(take_committed(&channel, 10), ["c"]);
}

#[test]
fn dropping_an_open_transaction_rolls_it_back() {
    let channel = open(config(100, 10, SHORT_KEEP_ALIVE));
    put_committed(&channel, &["a", "b"]);
    {
        let mut transaction = channel.begin().unwrap();
        transaction.put(event("never")).unwrap();
        assert_eq!(text(&transaction.take().unwrap().unwrap()), "a");
        assert_eq!(channel.taken_events(), 1);
    }
    assert_eq!(channel.taken_events(), 0);
    assert_eq!(take_committed(&channel, 10), ["a", "b"]);
}

#[test]
fn a_failed_commit_returns_its_takes_to_the_head_and_drops_its_puts() {
    let channel = open(config(3, 3, SHORT_KEEP_ALIVE));
    put_committed(&channel, &["a", "b", "c"]);
    let mut transaction = channel.begin().unwrap();
    assert_eq!(text(&transaction.take().unwrap().unwrap()), "a");
    transaction.put(event("x")).unwrap();
    transaction.put(event("y")).unwrap();
    // Net +1 on a full channel.
    assert!(matches!(
        transaction.commit(),
        Err(ChannelError::ChannelFull { .. })
    ));
    assert_eq!(channel.taken_events(), 0);
    assert_eq!(take_committed(&channel, 10), ["a", "b", "c"]);
}

// --- mixed transactions -----------------------------------------------------------------

#[test]
fn a_mixed_transaction_needs_only_its_net_capacity() {
    let channel = open(config(3, 3, SHORT_KEEP_ALIVE));
    put_committed(&channel, &["a", "b", "c"]);
    let mut transaction = channel.begin().unwrap();
    assert_eq!(text(&transaction.take().unwrap().unwrap()), "a");
    assert_eq!(text(&transaction.take().unwrap().unwrap()), "b");
    transaction.put(event("d")).unwrap();
    transaction.put(event("e")).unwrap();
    transaction.commit().unwrap();
    assert_eq!(channel.stats().channel_size, 3);
    assert_eq!(take_committed(&channel, 10), ["c", "d", "e"]);
}

#[test]
fn byte_capacity_is_checked_on_the_net_change_of_a_mixed_transaction() {
    let channel = open(byte_limited_config(2000, 20));
    put_events(&channel, vec![sized(405), sized(405), sized(405)]).unwrap();

    // Takes 5 slots, puts 6: net +1 reaches exactly 16.
    let mut transaction = channel.begin().unwrap();
    transaction.take().unwrap().unwrap();
    transaction.put(sized(505)).unwrap();
    transaction.commit().unwrap();
    assert_eq!(channel.byte_slots_in_use(), 16);

    // Takes 5 slots, puts 7: one event each, but net +2 bytes over the limit. (Flume
    // skips the byte check when a transaction takes as many events as it puts.)
    let mut transaction = channel.begin().unwrap();
    transaction.take().unwrap().unwrap();
    transaction.put(sized(700)).unwrap();
    assert!(matches!(
        transaction.commit(),
        Err(ChannelError::ByteCapacityFull { .. })
    ));
    assert_eq!(channel.byte_slots_in_use(), 16);
    assert_eq!(channel.queued_events(), 3);
}

// --- counters -------------------------------------------------------------------------

#[test]
fn counters_are_exact_after_a_mixed_workload() {
    let channel = open(config(5, 3, SHORT_KEEP_ALIVE));
    // Queue 3. Put calls 3, committed 3.
    put_committed(&channel, &["a", "b", "c"]);
    // Put calls 5: two puts rolled back.
    let mut transaction = channel.begin().unwrap();
    transaction.put(event("x")).unwrap();
    transaction.put(event("y")).unwrap();
    transaction.rollback().unwrap();
    // Put calls 9: the 4th is beyond transactionCapacity and still counts.
    let mut transaction = channel.begin().unwrap();
    for body in ["d", "e", "f"] {
        transaction.put(event(body)).unwrap();
    }
    assert!(transaction.put(event("g")).is_err());
    transaction.rollback().unwrap();
    // Queue 5. Put calls 11, committed 5.
    put_committed(&channel, &["d", "e"]);
    // Queue 3. Take calls 2, committed 2.
    assert_eq!(take_committed(&channel, 2).len(), 2);
    // Take calls 3: one take rolled back.
    let mut transaction = channel.begin().unwrap();
    transaction.take().unwrap().unwrap();
    transaction.rollback().unwrap();
    // Queue 0. Take calls 7 (the 4th beyond transactionCapacity), committed 5.
    let mut transaction = channel.begin().unwrap();
    for _ in 0..3 {
        transaction.take().unwrap().unwrap();
    }
    assert!(transaction.take().is_err());
    transaction.commit().unwrap();
    // Take calls 8: one that finds nothing.
    assert!(take_committed(&channel, 1).is_empty());
    // Queue 1. Put calls 12, committed 6.
    put_committed(&channel, &["h"]);
    // A mixed transaction. Queue 1. Take calls 9, committed 6; put calls 13, committed 7.
    let mut transaction = channel.begin().unwrap();
    assert_eq!(text(&transaction.take().unwrap().unwrap()), "h");
    transaction.put(event("i")).unwrap();
    transaction.commit().unwrap();
    // Queue 4. Put calls 16, committed 10.
    put_committed(&channel, &["j", "k", "l"]);
    // Put calls 18; the commit fails (4 + 2 > capacity 5) and adds no success.
    assert!(put_events(&channel, vec![event("m"), event("n")]).is_err());

    let stats = channel.stats();
    assert_eq!(stats.event_put_attempt_count, 18);
    assert_eq!(stats.event_put_success_count, 10);
    assert_eq!(stats.event_take_attempt_count, 9);
    assert_eq!(stats.event_take_success_count, 6);
    assert_eq!(stats.channel_size, 4);
    assert_eq!(stats.channel_capacity, 5);
    assert_eq!(stats.channel_fill_percentage(), 80.0);
    assert!(stats.start_time_ms > 0);
    assert_eq!(stats.stop_time_ms, 0);
    assert_eq!(stats.event_put_error_count, 0);
    assert_eq!(stats.event_take_error_count, 0);
}

#[test]
fn channel_size_counts_queued_events_not_those_taken_by_open_transactions() {
    let channel = open(config(10, 10, SHORT_KEEP_ALIVE));
    put_committed(&channel, &["a", "b", "c"]);
    let mut transaction = channel.begin().unwrap();
    transaction.take().unwrap().unwrap();
    assert_eq!(channel.stats().channel_size, 2);
    transaction.rollback().unwrap();
    assert_eq!(channel.stats().channel_size, 3);
}

// --- lifecycle --------------------------------------------------------------------------

#[test]
fn a_closed_channel_discards_its_events_refuses_work_and_reports_closed() {
    let channel = open(config(10, 10, SHORT_KEEP_ALIVE));
    put_committed(&channel, &["a", "b"]);
    let mut open_transaction = channel.begin().unwrap();
    assert_eq!(channel.health(), ChannelHealth::Open);
    channel.close().unwrap();
    channel.close().unwrap();
    assert_eq!(channel.health(), ChannelHealth::Closed);
    assert_eq!(channel.queued_events(), 0);
    assert_eq!(channel.byte_slots_in_use(), 0);
    assert!(matches!(channel.begin(), Err(ChannelError::Closed { .. })));
    assert!(matches!(
        open_transaction.put(event("c")),
        Err(ChannelError::Closed { .. })
    ));
    assert!(matches!(
        open_transaction.take(),
        Err(ChannelError::Closed { .. })
    ));
    open_transaction.rollback().unwrap();
    assert!(channel.stats().stop_time_ms > 0);
}

#[test]
fn closing_wakes_a_commit_waiting_for_room_and_a_waiting_take() {
    let channel = Arc::new(open(config(1, 1, LONG_KEEP_ALIVE)));
    put_committed(&channel, &["a"]);
    let committer = {
        let channel = Arc::clone(&channel);
        thread::spawn(move || put_events(&channel, vec![event("b")]))
    };
    let mut waiting_taker = channel.begin().unwrap();
    waiting_taker.take().unwrap().unwrap();
    let taker = {
        let channel = Arc::clone(&channel);
        thread::spawn(move || {
            let mut transaction = channel.begin().unwrap();
            transaction.take_waiting(LONG_KEEP_ALIVE).map(|_| ())
        })
    };
    thread::sleep(SETTLE);
    let started = Instant::now();
    channel.close().unwrap();
    assert!(matches!(
        committer.join().unwrap(),
        Err(ChannelError::Closed { .. })
    ));
    assert!(matches!(
        taker.join().unwrap(),
        Err(ChannelError::Closed { .. })
    ));
    assert!(started.elapsed() < LONG_KEEP_ALIVE / 10);
    waiting_taker.rollback().unwrap();
}

#[test]
fn settings_that_break_a_rule_are_refused_at_open() {
    let result = MemoryChannel::open("m1", config(5, 6, SHORT_KEEP_ALIVE));
    match result {
        Err(error @ OpenError::Config { .. }) => {
            assert_eq!(
                error.to_string(),
                "channel m1: invalid configuration: transactionCapacity: \
                 expected at most capacity (5), got 6"
            );
        }
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("transactionCapacity above capacity was accepted"),
    }
}

#[test]
fn an_unset_byte_capacity_defaults_to_eighty_percent_of_memory() {
    let channel = open(MemoryChannelConfig::default());
    let byte_capacity_bytes = channel.byte_capacity_bytes();
    if let Some(memory_bytes) = millrace_engine::memory::machine_memory_bytes() {
        let expected = u128::from(memory_bytes) * 80 / 100;
        assert_eq!(u128::from(byte_capacity_bytes), expected);
    }
    // The 20% buffer and the 100-byte slot apply on top.
    let expected_slots = u128::from(byte_capacity_bytes) * 80 / 100 / 100;
    assert_eq!(u128::from(channel.byte_capacity_slots()), expected_slots);
}

// --- concurrency ------------------------------------------------------------------------

/// Producer `producer`'s event number `sequence`, as an 8-byte body.
fn numbered(producer: u32, sequence: u32) -> Event {
    let mut body = Vec::with_capacity(8);
    body.extend_from_slice(&producer.to_le_bytes());
    body.extend_from_slice(&sequence.to_le_bytes());
    Event::from_body(body)
}

fn numbers(event: &Event) -> (u32, u32) {
    let body = &event.body;
    let producer = u32::from_le_bytes(body[..4].try_into().unwrap());
    let sequence = u32::from_le_bytes(body[4..8].try_into().unwrap());
    (producer, sequence)
}

/// Runs `producers` producers of `events_per_producer` events each, in batches of
/// `batch`, and `consumers` consumers that roll back every `rollback_every`-th batch
/// (never when 0). Returns each consumer's committed events in take order.
fn run_concurrently(
    producers: u32,
    consumers: usize,
    events_per_producer: u32,
    batch: u32,
    rollback_every: u64,
) -> Vec<Vec<(u32, u32)>> {
    let total_events = u64::from(producers) * u64::from(events_per_producer);
    // Far below the total, so producers regularly wait for room at commit.
    let channel = Arc::new(open(config(1_000, u64::from(batch), LONG_KEEP_ALIVE)));
    let committed_takes = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(producers as usize + consumers));
    let producer_threads: Vec<_> = (0..producers)
        .map(|producer| {
            let channel = Arc::clone(&channel);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let mut sequence = 0;
                while sequence < events_per_producer {
                    let end = (sequence + batch).min(events_per_producer);
                    let mut transaction = channel.begin().unwrap();
                    for number in sequence..end {
                        transaction.put(numbered(producer, number)).unwrap();
                    }
                    transaction.commit().unwrap();
                    sequence = end;
                }
            })
        })
        .collect();
    let consumer_threads: Vec<_> = (0..consumers)
        .map(|_| {
            let channel = Arc::clone(&channel);
            let committed_takes = Arc::clone(&committed_takes);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                let mut taken = Vec::new();
                let mut batches = 0u64;
                while committed_takes.load(Ordering::SeqCst) < total_events {
                    let mut transaction = channel.begin().unwrap();
                    let mut events = Vec::new();
                    if let Some(event) =
                        transaction.take_waiting(Duration::from_millis(10)).unwrap()
                    {
                        events.push(numbers(&event));
                        while events.len() < batch as usize {
                            match transaction.take().unwrap() {
                                Some(event) => events.push(numbers(&event)),
                                None => break,
                            }
                        }
                    }
                    batches += 1;
                    if rollback_every > 0 && batches.is_multiple_of(rollback_every) {
                        transaction.rollback().unwrap();
                        continue;
                    }
                    transaction.commit().unwrap();
                    committed_takes.fetch_add(events.len() as u64, Ordering::SeqCst);
                    taken.extend(events);
                }
                taken
            })
        })
        .collect();
    for thread in producer_threads {
        thread.join().unwrap();
    }
    let taken: Vec<_> = consumer_threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    assert_eq!(channel.queued_events(), 0);
    assert_eq!(channel.taken_events(), 0);
    assert_eq!(channel.byte_slots_in_use(), 0);
    let stats = channel.stats();
    assert_eq!(stats.event_put_success_count, total_events);
    assert_eq!(stats.event_take_success_count, total_events);
    taken
}

fn assert_each_event_exactly_once(taken: &[Vec<(u32, u32)>], producers: u32, per_producer: u32) {
    let mut seen = HashSet::new();
    for event in taken.iter().flatten() {
        assert!(seen.insert(*event), "event {event:?} delivered twice");
    }
    assert_eq!(
        seen.len() as u64,
        u64::from(producers) * u64::from(per_producer)
    );
    for producer in 0..producers {
        for sequence in 0..per_producer {
            assert!(
                seen.contains(&(producer, sequence)),
                "lost {producer}/{sequence}"
            );
        }
    }
}

#[test]
fn four_producers_and_four_consumers_move_200k_events_exactly_once_in_producer_order() {
    const PRODUCERS: u32 = 4;
    const EVENTS_PER_PRODUCER: u32 = 50_000;
    let taken = run_concurrently(PRODUCERS, 4, EVENTS_PER_PRODUCER, 100, 0);
    assert_each_event_exactly_once(&taken, PRODUCERS, EVENTS_PER_PRODUCER);
    // Without rollbacks, every consumer sees each producer's events in put order.
    for consumer in &taken {
        let mut last_sequence = vec![None::<u32>; PRODUCERS as usize];
        for &(producer, sequence) in consumer {
            let last = &mut last_sequence[producer as usize];
            assert!(
                last.is_none_or(|last| last < sequence),
                "producer {producer}: {sequence} after {last:?}"
            );
            *last = Some(sequence);
        }
    }
}

#[test]
fn concurrent_rollbacks_neither_lose_nor_duplicate_events() {
    const PRODUCERS: u32 = 2;
    const EVENTS_PER_PRODUCER: u32 = 20_000;
    let taken = run_concurrently(PRODUCERS, 3, EVENTS_PER_PRODUCER, 50, 3);
    assert_each_event_exactly_once(&taken, PRODUCERS, EVENTS_PER_PRODUCER);
}

#[test]
fn two_open_takes_rolled_back_in_either_order_return_their_events_in_put_order() {
    use common::{seven_events, two_open_takes_rolled_back, RollbackOrder};
    for order in [RollbackOrder::AThenB, RollbackOrder::BThenA] {
        let channel = open(config(100, 100, SHORT_KEEP_ALIVE));
        assert_eq!(
            two_open_takes_rolled_back(&channel, &[7], order),
            seven_events(),
            "{order:?}"
        );
    }
}
