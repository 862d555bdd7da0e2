//! Restart time of a file channel holding many queued events.
//!
//! ```text
//! cargo run --release -p millrace-benches --example restart_time -- --events 1000000 [--drop-caches]
//! ```
//!
//! Fills a channel with `--events` events of `--body-bytes`, then measures three restarts:
//! after a clean stop (checkpoint on close), after a stop without a final checkpoint while
//! a recent checkpoint exists (what a crash leaves), and with no checkpoint at all (a full
//! replay, reported in MB/s of log read). `--drop-caches` (root) empties the page cache
//! before each restart so reads come from the disk.

use std::path::{Path, PathBuf};
use std::time::Instant;

use millrace_engine::config::FileChannelConfig;
use millrace_engine::{Channel, Event, FileChannel};

struct Options {
    events: u64,
    body_bytes: usize,
    batch: u64,
    dir: PathBuf,
    drop_caches: bool,
}

fn parse_options() -> Options {
    let mut options = Options {
        events: 1_000_000,
        body_bytes: 256,
        batch: 1_000,
        dir: std::env::current_dir().unwrap().join("restart-bench-data"),
        drop_caches: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--events" => options.events = value().parse().expect("--events N"),
            "--body-bytes" => options.body_bytes = value().parse().expect("--body-bytes N"),
            "--batch" => options.batch = value().parse().expect("--batch N"),
            "--dir" => options.dir = PathBuf::from(value()),
            "--drop-caches" => options.drop_caches = true,
            other => panic!("unknown flag {other}"),
        }
    }
    options
}

fn config(options: &Options) -> FileChannelConfig {
    let mut config = FileChannelConfig::new(
        vec![options.dir.join("data")],
        options.dir.join("checkpoint"),
    );
    config.capacity = options.events * 2;
    config.transaction_capacity = options.batch;
    config
}

fn drop_caches(enabled: bool) {
    if enabled {
        // SAFETY of intent: needs root; writes back dirty pages first.
        let _ = std::process::Command::new("sync").status();
        if std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_err() {
            eprintln!("cannot drop caches (needs root); reads may come from the page cache");
        }
    }
}

fn reopen(options: &Options, label: &str) -> FileChannel {
    drop_caches(options.drop_caches);
    let started = Instant::now();
    let channel = FileChannel::open("bench", config(options)).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let report = channel.recovery_report().unwrap();
    let megabytes = report.bytes_replayed as f64 / 1e6;
    println!(
        "{label}: {seconds:.3} s, path {}, {} records / {megabytes:.1} MB replayed{}, {} events",
        report.path.as_str(),
        report.records_replayed,
        if report.bytes_replayed > 0 {
            format!(" ({:.0} MB/s)", megabytes / seconds)
        } else {
            String::new()
        },
        report.events_recovered,
    );
    channel
}

fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("data"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|meta| meta.len())
        .sum()
}

fn main() {
    let options = parse_options();
    let _ = std::fs::remove_dir_all(&options.dir);
    let body = vec![b'e'; options.body_bytes];
    {
        let channel = FileChannel::open("bench", config(&options)).unwrap();
        let started = Instant::now();
        let mut written = 0;
        while written < options.events {
            let mut transaction = channel.begin().unwrap();
            for _ in 0..options.batch.min(options.events - written) {
                transaction.put(Event::from_body(body.clone())).unwrap();
                written += 1;
            }
            transaction.commit().unwrap();
        }
        println!(
            "filled {} events of {} bytes in {:.1} s; log {:.1} MB",
            options.events,
            options.body_bytes,
            started.elapsed().as_secs_f64(),
            log_bytes(&options.dir) as f64 / 1e6
        );
    }
    drop(reopen(&options, "restart after a clean stop"));
    {
        // Reopen with checkpointOnClose off so that this restart's stop leaves the log
        // after the checkpoint in place, like a crash.
        let mut crash_config = config(&options);
        crash_config.checkpoint_on_close = false;
        let channel = FileChannel::open("bench", crash_config).unwrap();
        channel.checkpoint_now().unwrap();
        let mut transaction = channel.begin().unwrap();
        for _ in 0..options.batch {
            transaction.put(Event::from_body(body.clone())).unwrap();
        }
        transaction.commit().unwrap();
        channel.close().unwrap();
    }
    drop(reopen(
        &options,
        "restart after a crash with a recent checkpoint",
    ));
    std::fs::remove_file(options.dir.join("checkpoint").join("checkpoint")).unwrap();
    drop(reopen(&options, "restart with no checkpoint (full replay)"));
    let _ = std::fs::remove_dir_all(&options.dir);
}
