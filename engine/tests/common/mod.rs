//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use millrace_engine::config::FileChannelConfig;
use millrace_engine::storage::Storage;
use millrace_engine::{Channel, Event, FileChannel, OpenError};

/// A file channel config over `dir_count` data dirs under `root`, with small limits
/// suitable for tests.
pub fn test_config(root: &Path, dir_count: usize) -> FileChannelConfig {
    let data_dirs: Vec<PathBuf> = (0..dir_count)
        .map(|index| root.join(format!("data{index}")))
        .collect();
    let mut config = FileChannelConfig::new(data_dirs, root.join("checkpoint"));
    config.capacity = 100_000;
    config.transaction_capacity = 10_000;
    config.keep_alive = Duration::from_millis(50);
    config
}

pub fn open(root: &Path, config: &FileChannelConfig) -> FileChannel {
    FileChannel::open("c1", config.clone())
        .unwrap_or_else(|error| panic!("opening channel under {}: {error}", root.display()))
}

pub fn open_on(
    storage: &Arc<dyn Storage>,
    config: &FileChannelConfig,
) -> Result<FileChannel, OpenError> {
    FileChannel::open_with_storage("c1", config.clone(), Arc::clone(storage))
}

pub fn event(body: &str) -> Event {
    Event::from_body(body.as_bytes().to_vec())
}

pub fn body_text(event: &Event) -> String {
    String::from_utf8(event.body.to_vec()).expect("test bodies are UTF-8")
}

/// Puts the bodies in one transaction and commits it.
pub fn put_committed(channel: &dyn Channel, bodies: &[&str]) {
    let mut transaction = channel.begin().expect("begin");
    for body in bodies {
        transaction.put(event(body)).expect("put");
    }
    transaction.commit().expect("commit");
}

/// Takes up to `max` events in one transaction and commits it; returns their bodies.
pub fn take_committed(channel: &dyn Channel, max: usize) -> Vec<String> {
    let mut transaction = channel.begin().expect("begin");
    let mut bodies = Vec::new();
    while bodies.len() < max {
        match transaction.take().expect("take") {
            Some(event) => bodies.push(body_text(&event)),
            None => break,
        }
    }
    transaction.commit().expect("commit");
    bodies
}

/// Every event in the channel, in order, without removing any (taken, then rolled back).
pub fn peek_events(channel: &dyn Channel) -> Vec<Event> {
    let mut transaction = channel.begin().expect("begin");
    let mut events = Vec::new();
    while let Some(event) = transaction.take().expect("take") {
        events.push(event);
    }
    transaction.rollback().expect("rollback");
    events
}

/// The bodies of every event in the channel, in order, without removing any.
pub fn peek_all(channel: &dyn Channel) -> Vec<String> {
    peek_events(channel).iter().map(body_text).collect()
}

pub fn bodies(range: std::ops::Range<usize>, prefix: &str) -> Vec<String> {
    range.map(|index| format!("{prefix}{index}")).collect()
}

/// Which of two open take transactions rolls back first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackOrder {
    AThenB,
    BThenA,
}

/// The bodies `two_open_takes_rolled_back` puts: "e1" to "e7".
pub fn seven_events() -> Vec<String> {
    (1..=7).map(|number| format!("e{number}")).collect()
}

/// Commits "e1" to "e7" in transactions of `put_batches` events each (they must add up
/// to 7), then opens transaction A, which takes e1–e2, and B, which takes e3–e5, and
/// rolls both back in `order`. Returns the channel's events afterwards, in take order.
pub fn two_open_takes_rolled_back(
    channel: &dyn Channel,
    put_batches: &[usize],
    order: RollbackOrder,
) -> Vec<String> {
    let events = seven_events();
    assert_eq!(put_batches.iter().sum::<usize>(), events.len());
    let mut start = 0;
    for &batch in put_batches {
        let refs: Vec<&str> = events[start..start + batch]
            .iter()
            .map(String::as_str)
            .collect();
        put_committed(channel, &refs);
        start += batch;
    }
    let take = |count: usize| {
        let mut transaction = channel.begin().expect("begin");
        let taken: Vec<String> = (0..count)
            .map(|_| body_text(&transaction.take().expect("take").expect("an event")))
            .collect();
        (transaction, taken)
    };
    let (a, taken_by_a) = take(2);
    let (b, taken_by_b) = take(3);
    assert_eq!(taken_by_a, events[..2]);
    assert_eq!(taken_by_b, events[2..5]);
    match order {
        RollbackOrder::AThenB => {
            a.rollback().expect("rollback A");
            b.rollback().expect("rollback B");
        }
        RollbackOrder::BThenA => {
            b.rollback().expect("rollback B");
            a.rollback().expect("rollback A");
        }
    }
    peek_all(channel)
}
