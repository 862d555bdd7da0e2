//! Durable put throughput with encryption and with compression, against plain.
//!
//! Four producer threads each commit transactions of 100 events of 256 bytes to one
//! file channel on the real disk (a temporary directory under the working directory,
//! or `MILLRACE_BENCH_DIR`); every commit is acknowledged after its `fdatasync`. The
//! bodies are text-like (log lines), so the same runs show what LZ4 saves. Three parts:
//! - `encode_put_record_100x256B/*`: the committer's CPU cost per put record, no I/O;
//! - `durable_put_100x256B_batches_4_producers/*`: Criterion's measurement of each case;
//! - `durable_put_interleaved`: the cases measured in alternation (see
//!   [`durable_puts_interleaved`] for why), printing the median throughput of each and
//!   the bytes its writer wrote per event, from `dir_stats()`.
//!
//! Targets (issue 10): encryption costs at most 15% of plain throughput; LZ4 cuts the
//! bytes written for text-like events by at least 2x.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use millrace_engine::config::{Compression, EncryptionConfig, FileChannelConfig, KeySource};
use millrace_engine::crypto::{RecordKey, Sealer, NONCE_PREFIX_BYTES};
use millrace_engine::record::{encode_put_record, PutEncoding};
use millrace_engine::{Channel, Event, FileChannel};

/// Concurrent producers.
const PRODUCERS: usize = 4;
/// Events per transaction.
const EVENTS_PER_BATCH: usize = 100;
/// Bytes of each event body.
const BODY_BYTES: usize = 256;
/// Distinct bodies the producers cycle through.
const DISTINCT_BODIES: usize = 4096;
/// Bytes of the benchmark's key file.
const KEY_BYTES: usize = 32;
/// The channel never fills during a run.
const CAPACITY_EVENTS: u64 = 500_000_000;
/// Rounds of the interleaved comparison.
const INTERLEAVED_ROUNDS: usize = 24;
/// Time each case gets per round of the interleaved comparison.
const INTERLEAVED_SLICE: Duration = Duration::from_millis(500);
const LOWER_QUARTILE: f64 = 0.25;
const MEDIAN: f64 = 0.5;
const UPPER_QUARTILE: f64 = 0.75;
/// The interleaved comparison's name, which a benchmark filter can select.
const INTERLEAVED_NAME: &str = "durable_put_interleaved";
/// Criterion options that take a value, so the filter is not mistaken for one.
const OPTIONS_WITH_VALUE: [&str; 8] = [
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--save-baseline",
    "--baseline",
    "--output-format",
    "--noise-threshold",
    "--significance-level",
];

/// One configuration measured.
struct Case {
    name: &'static str,
    encrypted: bool,
    compression: Compression,
}

const CASES: [Case; 4] = [
    Case {
        name: "plain",
        encrypted: false,
        compression: Compression::None,
    },
    Case {
        name: "encrypted",
        encrypted: true,
        compression: Compression::None,
    },
    Case {
        name: "lz4",
        encrypted: false,
        compression: Compression::Lz4,
    },
    Case {
        name: "lz4_encrypted",
        encrypted: true,
        compression: Compression::Lz4,
    },
];

/// Log-line bodies of exactly [`BODY_BYTES`]: a timestamp, a level, a thread, a request
/// id, a path, a status, a latency and a user agent, varying from line to line.
fn text_like_bodies() -> Vec<Bytes> {
    const LEVELS: [&str; 4] = ["INFO ", "DEBUG", "WARN ", "INFO "];
    const PATHS: [&str; 5] = [
        "/api/v1/orders",
        "/api/v1/items/search",
        "/health",
        "/api/v2/users/profile",
        "/static/app.js",
    ];
    const STATUSES: [u16; 4] = [200, 200, 404, 503];
    (0..DISTINCT_BODIES)
        .map(|index| {
            let mut line = format!(
                "2026-03-01T10:{:02}:{:02}.{:03}Z {} [worker-{}] request_id={:016x} method=GET \
                 path={} status={} latency_ms={} bytes={} user_agent=\"Mozilla/5.0 (X11; Linux \
                 x86_64) millrace-bench/1.0\"",
                (index / 3600) % 60,
                (index / 60) % 60,
                (index * 7) % 1000,
                LEVELS[index % LEVELS.len()],
                index % 16,
                (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                PATHS[index % PATHS.len()],
                STATUSES[index % STATUSES.len()],
                (index * 13) % 900,
                (index * 31) % 65_536,
            );
            line.truncate(BODY_BYTES);
            while line.len() < BODY_BYTES {
                line.push(' ');
            }
            Bytes::from(line)
        })
        .collect()
}

fn channel_for(case: &Case, root: &std::path::Path) -> FileChannel {
    let mut config = FileChannelConfig::new(vec![root.join("data")], root.join("checkpoint"));
    config.capacity = CAPACITY_EVENTS;
    config.transaction_capacity = EVENTS_PER_BATCH as u64;
    config.compression = case.compression;
    if case.encrypted {
        let key_file = root.join("bench.key");
        let key: Vec<u8> = (0..KEY_BYTES as u8).map(|byte| byte ^ 0xa5).collect();
        std::fs::write(&key_file, key).unwrap();
        config.encryption = Some(EncryptionConfig {
            active_key_id: "bench".to_string(),
            keys: [("bench".to_string(), KeySource::KeyFile(key_file))].into(),
        });
    }
    FileChannel::open("bench", config).unwrap()
}

/// Puts the next [`EVENTS_PER_BATCH`] bodies in one transaction and commits it.
fn commit_batch(channel: &dyn Channel, bodies: &[Bytes], next_body: &mut usize) {
    let mut transaction = channel.begin().unwrap();
    for _ in 0..EVENTS_PER_BATCH {
        let body = bodies[*next_body % DISTINCT_BODIES].clone();
        transaction.put(Event::from_body(body)).unwrap();
        *next_body += 1;
    }
    transaction.commit().unwrap();
}

fn durable_puts(criterion: &mut Criterion) {
    let bodies = Arc::new(text_like_bodies());
    let mut group = criterion.benchmark_group("durable_put_100x256B_batches_4_producers");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements((PRODUCERS * EVENTS_PER_BATCH) as u64));
    for case in &CASES {
        let root = tempfile::tempdir_in(bench_dir()).unwrap();
        let channel = Arc::new(channel_for(case, root.path()));
        settle_disk();
        group.bench_function(case.name, |bench| {
            bench.iter_custom(|iterations| {
                let started = Instant::now();
                let producers: Vec<_> = (0..PRODUCERS)
                    .map(|producer| {
                        let channel = Arc::clone(&channel);
                        let bodies = Arc::clone(&bodies);
                        std::thread::spawn(move || {
                            let mut next_body = producer * DISTINCT_BODIES / PRODUCERS;
                            for _ in 0..iterations {
                                commit_batch(&*channel, &bodies, &mut next_body);
                            }
                        })
                    })
                    .collect();
                for producer in producers {
                    producer.join().unwrap();
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

/// The committer-side cost alone: encoding one put record of 100 × 256-byte events in
/// each configuration, without any I/O.
fn put_record_encoding(criterion: &mut Criterion) {
    let bodies = text_like_bodies();
    let events: Vec<Event> = bodies[..EVENTS_PER_BATCH]
        .iter()
        .cloned()
        .map(Event::from_body)
        .collect();
    let key = RecordKey::from_bytes(
        "bench",
        std::path::Path::new("bench.key"),
        &[0xa5; KEY_BYTES],
    );
    let sealer = Sealer::with_prefix(Arc::new(key), [7; NONCE_PREFIX_BYTES]);
    let mut group = criterion.benchmark_group("encode_put_record_100x256B");
    group.throughput(Throughput::Elements(EVENTS_PER_BATCH as u64));
    let mut buffer = Vec::new();
    for case in &CASES {
        let encoding = PutEncoding {
            compression: case.compression,
            sealing: case.encrypted.then_some(&sealer),
        };
        group.bench_function(case.name, |bench| {
            bench.iter(|| {
                buffer.clear();
                encode_put_record(&mut buffer, 1, 1, &events, encoding).unwrap();
                buffer.len()
            })
        });
    }
    group.finish();
}

/// Criterion measures the cases one after another, each for several seconds. The
/// disk's sync latency on the project's machine swings several-fold from one minute to
/// the next (see `docs/perf.md`), which swamps what encryption costs; so the cases are
/// also compared interleaved: [`INTERLEAVED_ROUNDS`] rounds, each giving every case a
/// [`INTERLEAVED_SLICE`] of durable puts (in a rotating order), then the median
/// throughput per case. The same run reports the bytes each case's writer wrote.
fn durable_puts_interleaved(_: &mut Criterion) {
    if !filter_selects(INTERLEAVED_NAME) {
        return;
    }
    let bodies = Arc::new(text_like_bodies());
    let roots: Vec<tempfile::TempDir> = CASES
        .iter()
        .map(|_| tempfile::tempdir_in(bench_dir()).unwrap())
        .collect();
    let channels: Vec<Arc<FileChannel>> = CASES
        .iter()
        .zip(&roots)
        .map(|(case, root)| Arc::new(channel_for(case, root.path())))
        .collect();
    let mut throughputs: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    let mut events_committed = vec![0u64; CASES.len()];
    for round in 0..INTERLEAVED_ROUNDS {
        for step in 0..CASES.len() {
            let case_index = (round + step) % CASES.len();
            settle_disk();
            let (events, elapsed) = put_for(&channels[case_index], &bodies, INTERLEAVED_SLICE);
            events_committed[case_index] += events;
            throughputs[case_index].push(events as f64 / elapsed.as_secs_f64());
        }
    }
    let medians: Vec<f64> = throughputs.iter().map(|samples| median(samples)).collect();
    // Each round's throughput against plain's in the same round: a paired comparison,
    // so a slow minute of the disk (or a busy neighbour) weighs on both sides.
    let paired_ratios: Vec<Vec<f64>> = throughputs
        .iter()
        .map(|samples| {
            samples
                .iter()
                .zip(&throughputs[0])
                .map(|(sample, plain)| sample / plain)
                .collect()
        })
        .collect();
    let written: Vec<u64> = channels
        .iter()
        .map(|channel| {
            channel
                .dir_stats()
                .iter()
                .map(|(_, stats)| stats.bytes_written.load(Ordering::Relaxed))
                .sum()
        })
        .collect();
    let plain_bytes_per_event = written[0] as f64 / events_committed[0] as f64;
    println!(
        "{INTERLEAVED_NAME}: {INTERLEAVED_ROUNDS} rounds of {} ms per case",
        INTERLEAVED_SLICE.as_millis()
    );
    for (index, case) in CASES.iter().enumerate() {
        let bytes_per_event = written[index] as f64 / events_committed[index] as f64;
        let ratios = &paired_ratios[index];
        let percent = |quantile: f64| (nearest_rank(ratios, quantile) - 1.0) * 100.0;
        println!(
            "  {:<14} median {:>9.0} events/s; against plain in the same round: median \
             {:+.1}% (quartiles {:+.1}% .. {:+.1}%); {:.1} bytes written/event ({:.2}x fewer \
             than plain)",
            case.name,
            medians[index],
            percent(MEDIAN),
            percent(LOWER_QUARTILE),
            percent(UPPER_QUARTILE),
            bytes_per_event,
            plain_bytes_per_event / bytes_per_event,
        );
    }
}

/// Flushes every dirty page to disk (`sync`) outside the timed region, so that a case
/// does not pay for the writeback of the case before it: run in a fixed order, the
/// first case would otherwise have an edge over the others.
fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
}

/// Runs [`PRODUCERS`] producers committing batches until `duration` has passed; returns
/// the events committed and the time taken.
fn put_for(
    channel: &Arc<FileChannel>,
    bodies: &Arc<Vec<Bytes>>,
    duration: Duration,
) -> (u64, Duration) {
    let started = Instant::now();
    let deadline = started + duration;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let channel = Arc::clone(channel);
            let bodies = Arc::clone(bodies);
            std::thread::spawn(move || {
                let mut next_body = producer * DISTINCT_BODIES / PRODUCERS;
                let mut batches = 0u64;
                while Instant::now() < deadline {
                    commit_batch(&*channel, &bodies, &mut next_body);
                    batches += 1;
                }
                batches * EVENTS_PER_BATCH as u64
            })
        })
        .collect();
    let events = producers
        .into_iter()
        .map(|producer| producer.join().unwrap())
        .sum();
    (events, started.elapsed())
}

fn median(samples: &[f64]) -> f64 {
    nearest_rank(samples, MEDIAN)
}

/// The sample at `quantile` (0 to 1) of the sorted samples, by nearest rank.
fn nearest_rank(samples: &[f64], quantile: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (quantile * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

/// Whether the benchmark filter given on the command line (if any) selects `name`, as
/// Criterion's own filter would for a plain substring.
fn filter_selects(name: &str) -> bool {
    let mut args = std::env::args().skip(1);
    let mut filter = None;
    while let Some(arg) = args.next() {
        if arg.starts_with("--") {
            if OPTIONS_WITH_VALUE.contains(&arg.as_str()) {
                args.next();
            }
        } else {
            filter = Some(arg);
        }
    }
    filter.is_none_or(|filter| name.contains(&filter))
}

/// Benchmarks write to the working directory's disk (not a tmpfs) unless
/// `MILLRACE_BENCH_DIR` names another place.
fn bench_dir() -> PathBuf {
    std::env::var_os("MILLRACE_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::env::current_dir().unwrap())
}

criterion_group!(
    benches,
    put_record_encoding,
    durable_puts,
    durable_puts_interleaved
);
criterion_main!(benches);
