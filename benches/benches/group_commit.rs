//! Group commit: durable single-event transactions from 1, 4 and 16 concurrent
//! committers on one data dir, on the real disk, beside the plain append + fdatasync loop
//! the writer is built to beat. Each committer's transaction is acknowledged only after
//! its fdatasync, so commits per second above the plain rate come from grouping.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use millrace_engine::config::FileChannelConfig;
use millrace_engine::{Channel, Event, FileChannel};

/// Committer counts measured.
const COMMITTERS: [usize; 3] = [1, 4, 16];
/// The event body size of the single-event transactions.
const BODY_BYTES: usize = 256;
/// The baseline loop's file: far more than a measurement appends.
const BASELINE_FILE_BYTES: u64 = 1 << 30;

fn plain_fdatasync(criterion: &mut Criterion) {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("plain"))
        .unwrap();
    // Reserved with fallocate like a segment, so the loop measures data syncs, not size
    // updates.
    rustix::fs::fallocate(
        &file,
        rustix::fs::FallocateFlags::empty(),
        0,
        BASELINE_FILE_BYTES,
    )
    .unwrap();
    let body = vec![1u8; BODY_BYTES];
    let mut offset = 0u64;
    let mut group = criterion.benchmark_group("fdatasync_baseline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_256_bytes_then_fdatasync", |bench| {
        bench.iter(|| {
            file.write_all_at(&body, offset).unwrap();
            file.sync_data().unwrap();
            offset += BODY_BYTES as u64;
        })
    });
    group.finish();
}

fn group_commit(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("group_commit");
    group.measurement_time(Duration::from_secs(5));
    for committers in COMMITTERS {
        let dir = tempfile::tempdir_in(bench_dir()).unwrap();
        let mut config =
            FileChannelConfig::new(vec![dir.path().join("data")], dir.path().join("cp"));
        config.capacity = 100_000_000;
        let channel = Arc::new(FileChannel::open("bench", config).unwrap());
        group.throughput(Throughput::Elements(committers as u64));
        group.bench_with_input(
            BenchmarkId::new("single_event_commits", committers),
            &committers,
            |bench, &committers| {
                bench.iter_custom(|iterations| {
                    let started = Instant::now();
                    let threads: Vec<_> = (0..committers)
                        .map(|_| {
                            let channel = Arc::clone(&channel);
                            std::thread::spawn(move || {
                                for _ in 0..iterations {
                                    let mut transaction = channel.begin().unwrap();
                                    transaction
                                        .put(Event::from_body(vec![2u8; BODY_BYTES]))
                                        .unwrap();
                                    transaction.commit().unwrap();
                                }
                            })
                        })
                        .collect();
                    for thread in threads {
                        thread.join().unwrap();
                    }
                    started.elapsed()
                })
            },
        );
    }
    group.finish();
}

/// Benchmarks write to the working directory's disk (not a tmpfs) unless
/// `MILLRACE_BENCH_DIR` names another place.
fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("MILLRACE_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::env::current_dir().unwrap())
}

criterion_group!(benches, plain_fdatasync, group_commit);
criterion_main!(benches);
