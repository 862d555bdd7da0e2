//! Restart time of a file channel holding many queued events.
//!
//! ```text
//! cargo run --release -p millrace-benches --example restart_time -- --events 1000000 [--drop-caches] [--memory]
//! ```
//!
//! Fills a channel with `--events` events of `--body-bytes`, then measures three restarts:
//! after a clean stop (checkpoint on close), after a stop without a final checkpoint while
//! a recent checkpoint exists (what a crash leaves), and with no checkpoint at all (a full
//! replay, reported in MB/s of log read). `--drop-caches` (root) empties the page cache
//! before each restart so reads come from the disk.
//!
//! `--memory` reports the process's resident memory (`VmRSS`, Linux) before the channel
//! opens, after the fill, and after each restart, as bytes per queued event above the
//! figure before the open; the peak (`VmHWM`) is reported too, and reset before each
//! restart where the kernel allows it, so each peak belongs to one phase.

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
    memory: bool,
}

fn parse_options() -> Options {
    let mut options = Options {
        events: 1_000_000,
        body_bytes: 256,
        batch: 1_000,
        dir: std::env::current_dir().unwrap().join("restart-bench-data"),
        drop_caches: false,
        memory: false,
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
            "--memory" => options.memory = true,
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

/// `/proc/PID/status` gives sizes in kibibytes.
const STATUS_UNIT_BYTES: u64 = 1024;
/// Written to `/proc/self/clear_refs`, resets the peak resident size (`VmHWM`) to the
/// current one (Linux 4.0 and later).
const CLEAR_REFS_RESET_PEAK: &str = "5";
const MEGABYTE_BYTES: f64 = 1e6;

/// A field of `/proc/self/status` given in kibibytes, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kibibytes: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kibibytes * STATUS_UNIT_BYTES)
}

/// Resident memory figures against the process's resident size before the first open.
struct MemoryProbe {
    enabled: bool,
    baseline_bytes: u64,
}

impl MemoryProbe {
    fn start(enabled: bool) -> Self {
        let baseline_bytes = if enabled {
            status_bytes("VmRSS:").unwrap_or_else(|| {
                eprintln!("no VmRSS in /proc/self/status; memory figures are unavailable");
                0
            })
        } else {
            0
        };
        MemoryProbe {
            enabled,
            baseline_bytes,
        }
    }

    /// Starts a new phase: the peak from here on is this phase's.
    fn reset_peak(&self) {
        if self.enabled && std::fs::write("/proc/self/clear_refs", CLEAR_REFS_RESET_PEAK).is_err() {
            eprintln!("cannot reset VmHWM; the next peak may be an earlier phase's");
        }
    }

    fn report(&self, label: &str, queued_events: u64) {
        if !self.enabled {
            return;
        }
        let (Some(resident_bytes), Some(peak_bytes)) =
            (status_bytes("VmRSS:"), status_bytes("VmHWM:"))
        else {
            return;
        };
        let per_event = |bytes: u64| {
            bytes.saturating_sub(self.baseline_bytes) as f64 / queued_events.max(1) as f64
        };
        println!(
            "memory {label}: {queued_events} queued, resident {:.1} MB ({:.1} B/event above \
             the {:.1} MB before the first open), peak {:.1} MB ({:.1} B/event)",
            resident_bytes as f64 / MEGABYTE_BYTES,
            per_event(resident_bytes),
            self.baseline_bytes as f64 / MEGABYTE_BYTES,
            peak_bytes as f64 / MEGABYTE_BYTES,
            per_event(peak_bytes),
        );
    }
}

fn reopen(options: &Options, label: &str, memory: &MemoryProbe) -> FileChannel {
    drop_caches(options.drop_caches);
    memory.reset_peak();
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
    memory.report(label, channel.queued_events());
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
    let memory = MemoryProbe::start(options.memory);
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
        memory.report("after the fill", channel.queued_events());
    }
    drop(reopen(&options, "restart after a clean stop", &memory));
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
        &memory,
    ));
    std::fs::remove_file(options.dir.join("checkpoint").join("checkpoint")).unwrap();
    drop(reopen(
        &options,
        "restart with no checkpoint (full replay)",
        &memory,
    ));
    let _ = std::fs::remove_dir_all(&options.dir);
}
