//! Memory channel throughput: producers commit batches of 100 events of 256 bytes while
//! consumers take and commit batches of up to 100, with 1 producer + 1 consumer and
//! 4 + 4. One iteration is one batch from every producer, all of it taken and committed;
//! throughput is reported in events.
//!
//! Bodies are one static buffer shared by every event (cloning a static `Bytes` copies
//! nothing), so the figures measure the channel, not the allocator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use millrace_engine::config::{FileChannelConfig, MemoryChannelConfig, SpillableChannelConfig};
use millrace_engine::{Channel, Event, MemoryChannel, SpillableChannel};

/// Events per transaction, on both sides.
const BATCH_EVENTS: u64 = 100;
/// Body size of every event.
const BODY_BYTES: usize = 256;
static BODY: [u8; BODY_BYTES] = [7u8; BODY_BYTES];
/// (producers, consumers) measured.
const THREAD_PAIRS: [(usize, usize); 2] = [(1, 1), (4, 4)];
/// Room for 100 batches: enough that producers rarely wait, small enough to stay in cache
/// more than a million-event queue would.
const CAPACITY_EVENTS: u64 = 100 * BATCH_EVENTS;
/// A byte capacity the benchmark never reaches (10,000 events of 256 bytes use ~3 MB).
const BYTE_CAPACITY_BYTES: u64 = 1 << 30;
/// How long an idle consumer waits for an event before checking whether it is done.
const CONSUMER_POLL: Duration = Duration::from_millis(1);

fn memory_channel(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("memory_channel");
    for (producers, consumers) in THREAD_PAIRS {
        let channel = Arc::new(
            MemoryChannel::open(
                "bench",
                MemoryChannelConfig {
                    capacity: CAPACITY_EVENTS,
                    transaction_capacity: BATCH_EVENTS,
                    byte_capacity_bytes: Some(BYTE_CAPACITY_BYTES),
                    ..MemoryChannelConfig::default()
                },
            )
            .unwrap(),
        );
        group.throughput(Throughput::Elements(producers as u64 * BATCH_EVENTS));
        group.bench_function(
            BenchmarkId::new(
                "put_take_100_event_batches_256_bytes",
                format!("{producers}p{consumers}c"),
            ),
            |bench| bench.iter_custom(|iterations| run(&channel, producers, consumers, iterations)),
        );
    }
    group.finish();
}

/// Moves `iterations` batches per producer through the channel; returns the time from
/// the common start until the last event's take committed.
fn run<C: Channel + 'static>(
    channel: &Arc<C>,
    producers: usize,
    consumers: usize,
    iterations: u64,
) -> Duration {
    let target_events = producers as u64 * iterations * BATCH_EVENTS;
    let taken_events = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(producers + consumers + 1));
    let mut threads = Vec::new();
    for _ in 0..producers {
        let channel = Arc::clone(channel);
        let start = Arc::clone(&start);
        threads.push(std::thread::spawn(move || {
            let body = Bytes::from_static(&BODY);
            start.wait();
            for _ in 0..iterations {
                let mut transaction = channel.begin().unwrap();
                for _ in 0..BATCH_EVENTS {
                    transaction.put(Event::from_body(body.clone())).unwrap();
                }
                transaction.commit().unwrap();
            }
        }));
    }
    for _ in 0..consumers {
        let channel = Arc::clone(channel);
        let start = Arc::clone(&start);
        let taken_events = Arc::clone(&taken_events);
        threads.push(std::thread::spawn(move || {
            start.wait();
            while taken_events.load(Ordering::Relaxed) < target_events {
                let mut transaction = channel.begin().unwrap();
                let mut taken = 0;
                if transaction.take_waiting(CONSUMER_POLL).unwrap().is_some() {
                    taken += 1;
                    while taken < BATCH_EVENTS && transaction.take().unwrap().is_some() {
                        taken += 1;
                    }
                }
                transaction.commit().unwrap();
                taken_events.fetch_add(taken, Ordering::Relaxed);
            }
        }));
    }
    start.wait();
    let started = Instant::now();
    for thread in threads {
        thread.join().unwrap();
    }
    started.elapsed()
}

/// Memory tier of the spillable benchmark: ten batches, so bursts spill to disk.
const SPILL_MEMORY_CAPACITY_EVENTS: u64 = 10 * BATCH_EVENTS;

/// The spillable channel with a small memory tier: producers outrun consumers in bursts,
/// so part of every run goes through the durable overflow (fsync per spilled commit).
fn spillable_channel(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("spillable_channel");
    group.measurement_time(Duration::from_secs(5));
    for (producers, consumers) in THREAD_PAIRS {
        let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
        let mut overflow =
            FileChannelConfig::new(vec![dir.path().join("data")], dir.path().join("cp"));
        overflow.transaction_capacity = BATCH_EVENTS;
        let mut config = SpillableChannelConfig::new(overflow);
        config.memory_capacity = SPILL_MEMORY_CAPACITY_EVENTS;
        config.overflow_timeout = Duration::ZERO;
        config.byte_capacity_bytes = Some(BYTE_CAPACITY_BYTES);
        let channel = Arc::new(SpillableChannel::open("bench", config).unwrap());
        group.throughput(Throughput::Elements(producers as u64 * BATCH_EVENTS));
        group.bench_function(
            BenchmarkId::new(
                "put_take_100_event_batches_256_bytes",
                format!("{producers}p{consumers}c"),
            ),
            |bench| bench.iter_custom(|iterations| run(&channel, producers, consumers, iterations)),
        );
        println!(
            "spillable {producers}p{consumers}c: {} segments written by the overflow",
            channel
                .dir_stats()
                .iter()
                .map(|(_, stats)| stats.segments_created.load(Ordering::Relaxed))
                .sum::<u64>()
        );
    }
    group.finish();
}

criterion_group!(benches, memory_channel, spillable_channel);
criterion_main!(benches);
