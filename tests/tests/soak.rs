//! Soak: the real channeld under steady concurrent load for a while, watched from outside.
//!
//! Two producers put paced batches (1–40 events of 1 KiB, one batch per producer every
//! 10 ms: about 4,000 events and 4 MB a second in all) and two consumers take and
//! commit as fast as the events come. Segments are 256 KiB and checkpoints run every
//! second, so the log rolls several times a second and cleanup deletes segments all the
//! time. Every second (every 1/600 of the run when it is longer than 10 minutes) the test
//! samples channeld's resident memory (`VmRSS` in `/proc/PID/status`), its open file
//! descriptors (`/proc/PID/fd`), the bytes and segment files in the channel's
//! directories, and the queue depth (`/metrics`); every 5 seconds (or 1/120 of the run)
//! it asks for a checkpoint and times it (channeld does not expose the background
//! checkpoints' durations; an explicit one runs the same code under the same load).
//!
//! ## The rules
//!
//! The run is cut into a **warm-up** (the first twelfth, at least 20 s: the file
//! channel's take cache — up to 64 MiB of recent put batches, kept so that consumers
//! that keep up never read the disk — fills in about 16 s at this load, and the
//! allocator and the runtime's threads settle), a **baseline window** right after it
//! and a **final window** at the end (each a twelfth of the run, at least 10 s). Then:
//! - **memory**: the final window's median RSS is at most 10% above the baseline
//!   window's median (medians, so a single sample taken during a burst does not decide;
//!   a drop is fine, only growth is a leak);
//! - **file descriptors**: the final window's largest count is at most the largest seen
//!   between the warm-up and the final window, plus 8;
//! - **disk**: the final window's largest data-directory size is at most the largest
//!   seen between the warm-up and the final window, plus 8 segments. (Segments, and the
//!   descriptors that read them, come and go in cleanup cycles that can outlast a
//!   window, so these two are held against the whole steady part before the final
//!   window; a leak still shows, as growth beyond every earlier peak.)
//! - **events**, checked like Jepsen's total-queue at the end, after a drain: every put
//!   was acknowledged (nothing crashes here), and every event was delivered exactly once
//!   with its bytes intact — lost 0, unexpected 0 (a damaged body counts as unexpected),
//!   duplicated 0.
//!
//! `MILLRACE_SOAK_SECONDS=N` runs N seconds (default 60; the long form is 3,600).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace_client::{Client, ClientOptions, Event};
use millrace_e2e::{
    dir_usage, drain_channel, file_channels_config, wait_until, Server, ServerSetup,
};
use rand::{Rng, SeedableRng};

const DEFAULT_SOAK_SECONDS: u64 = 60;
const PRODUCERS: usize = 2;
const CONSUMERS: usize = 2;
const BODY_BYTES: usize = 1_024;
const MAX_BATCH_EVENTS: usize = 40;
/// Each producer puts one batch per this interval.
const PRODUCER_PACE: Duration = Duration::from_millis(10);
const MAX_TAKE_EVENTS: u32 = 200;
const TAKE_WAIT: Duration = Duration::from_millis(50);
const MAX_FILE_SIZE_BYTES: u64 = 262_144;
/// At most this many samples (and a twelfth of them checkpoint timings) in a long run.
const MAX_SAMPLES: u64 = 600;
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
const SAMPLES_PER_CHECKPOINT: u64 = 5;
const MIN_WARM_UP: Duration = Duration::from_secs(20);
const MIN_WINDOW: Duration = Duration::from_secs(10);
/// The run is cut into this many parts: the warm-up and each window are one part.
const PARTS: u32 = 12;
const RSS_GROWTH_LIMIT_PERCENT: u64 = 10;
const FD_SLACK: usize = 8;
const DISK_SLACK_SEGMENTS: u64 = 8;
/// Longest wait for the consumers to empty the channel after the producers stop.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

fn channel_settings() -> String {
    format!(
        "a1.channels.c1.maxFileSize = {MAX_FILE_SIZE_BYTES}\n\
         a1.channels.c1.checkpointInterval = 1000\n\
         a1.channels.c1.transactionCapacity = 1000\n"
    )
}

fn body(producer: usize, sequence: u64) -> String {
    let mut body = format!("p{producer}-{sequence:012}-");
    let filler = char::from(b'a' + (sequence % 26) as u8);
    body.extend(std::iter::repeat_n(filler, BODY_BYTES - body.len()));
    body
}

/// `(producer, sequence)` when `body` is exactly what that producer sent.
fn parse_body(body: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = text.strip_prefix('p')?;
    let (producer, rest) = rest.split_once('-')?;
    let (sequence, _) = rest.split_once('-')?;
    let producer: usize = producer.parse().ok()?;
    let sequence: u64 = sequence.parse().ok()?;
    (producer < PRODUCERS && body == self::body(producer, sequence).as_bytes())
        .then_some((producer, sequence))
}

/// What the clients saw.
#[derive(Default)]
struct Ledger {
    /// Events each producer had acknowledged (its sequences 0..n).
    acknowledged: [AtomicU64; PRODUCERS],
    /// Per producer, how many times each sequence was delivered.
    delivered: Mutex<Vec<Vec<u8>>>,
    /// Bodies that no producer sent (or sent differently).
    unexpected: AtomicU64,
    put_errors: Mutex<Vec<String>>,
    take_errors: Mutex<Vec<String>>,
}

impl Ledger {
    fn record_delivery(&self, body: &[u8]) {
        match parse_body(body) {
            Some((producer, sequence)) => {
                let mut delivered = self.delivered.lock().unwrap();
                if delivered.is_empty() {
                    delivered.resize(PRODUCERS, Vec::new());
                }
                let counts = &mut delivered[producer];
                let index = sequence as usize;
                if counts.len() <= index {
                    counts.resize(index + 1, 0);
                }
                counts[index] = counts[index].saturating_add(1);
            }
            None => {
                self.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn producer(
    address: String,
    id: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    ledger: Arc<Ledger>,
) {
    let mut client = Client::connect(ClientOptions::new(address))
        .await
        .expect("a producer connects");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pace = tokio::time::interval(PRODUCER_PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        let count = rng.random_range(1..=MAX_BATCH_EVENTS) as u64;
        let events: Vec<Event> = (next..next + count)
            .map(|sequence| Event::new(body(id, sequence).into_bytes()))
            .collect();
        match client.put_and_commit("c1", &events).await {
            Ok(()) => {
                next += count;
                ledger.acknowledged[id].store(next, Ordering::Relaxed);
            }
            Err(error) => {
                ledger
                    .put_errors
                    .lock()
                    .unwrap()
                    .push(format!("producer {id} at {next}: {error}"));
                return;
            }
        }
    }
}

async fn consumer(address: String, stop: Arc<AtomicBool>, ledger: Arc<Ledger>) {
    let mut client = Client::connect(ClientOptions::new(address))
        .await
        .expect("a consumer connects");
    while !stop.load(Ordering::Relaxed) {
        let taken = async {
            client.begin("c1").await?;
            let events = client.take(MAX_TAKE_EVENTS, TAKE_WAIT).await?;
            client.commit().await?;
            Ok::<_, millrace_client::ClientError>(events)
        }
        .await;
        match taken {
            Ok(events) => {
                for event in events {
                    ledger.record_delivery(&event.body);
                }
            }
            Err(error) => {
                ledger.take_errors.lock().unwrap().push(error.to_string());
                return;
            }
        }
    }
}

/// One look at channeld from outside.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    resident_bytes: u64,
    open_fds: usize,
    data_bytes: u64,
    segments: usize,
    queued: u64,
}

fn queued_events(server: &Server) -> u64 {
    let (_, metrics) = server.http_json("/metrics");
    metrics["CHANNEL.c1"]["ChannelSize"]
        .as_str()
        .and_then(|size| size.parse().ok())
        .unwrap_or(0)
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn percentile(sorted: &[f64], percent: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() - 1) * percent / 100]
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn a_long_steady_load_keeps_memory_descriptors_and_disk_flat_and_loses_nothing() {
    let total = Duration::from_secs(
        std::env::var("MILLRACE_SOAK_SECONDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(DEFAULT_SOAK_SECONDS),
    );
    let part = total / PARTS;
    let warm_up = part.max(MIN_WARM_UP);
    let window = part.max(MIN_WINDOW);
    assert!(
        warm_up + 2 * window <= total,
        "MILLRACE_SOAK_SECONDS must leave room for a warm-up and two windows (at least 40)"
    );
    let sample_interval = (total / MAX_SAMPLES as u32).max(MIN_SAMPLE_INTERVAL);
    let seed: u64 = rand::rng().random();

    let server = Server::start(ServerSetup::with_config(file_channels_config(
        &["c1"],
        &channel_settings(),
    )));
    let channel_dir = server.directory().join("c1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ledger = Arc::new(Ledger::default());
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let address = server.protocol_address().to_string();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            runtime.spawn(producer(
                address.clone(),
                id,
                seed.wrapping_add(id as u64),
                Arc::clone(&stop_producers),
                Arc::clone(&ledger),
            ))
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            runtime.spawn(consumer(
                address.clone(),
                Arc::clone(&stop_consumers),
                Arc::clone(&ledger),
            ))
        })
        .collect();
    let mut checkpointer = runtime
        .block_on(Client::connect(ClientOptions::new(address.clone())))
        .expect("the checkpoint client connects");

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut checkpoint_ms = Vec::new();
    let mut next_sample = Duration::ZERO;
    while started.elapsed() < total {
        let (data_bytes, segments) = dir_usage(&channel_dir, ".log");
        samples.push(Sample {
            at: started.elapsed(),
            resident_bytes: server.resident_memory_bytes(),
            open_fds: server.open_fd_count(),
            data_bytes,
            segments,
            queued: queued_events(&server),
        });
        if (samples.len() as u64).is_multiple_of(SAMPLES_PER_CHECKPOINT) {
            let asked = Instant::now();
            runtime
                .block_on(checkpointer.checkpoint("c1"))
                .expect("a checkpoint under load");
            checkpoint_ms.push(asked.elapsed().as_secs_f64() * 1_000.0);
        }
        let errors =
            ledger.put_errors.lock().unwrap().len() + ledger.take_errors.lock().unwrap().len();
        assert_eq!(
            errors,
            0,
            "clients failed: puts {:?}, takes {:?}",
            ledger.put_errors.lock().unwrap(),
            ledger.take_errors.lock().unwrap()
        );
        next_sample += sample_interval;
        if let Some(pause) = next_sample.checked_sub(started.elapsed()) {
            std::thread::sleep(pause);
        }
    }
    let ran = started.elapsed();

    stop_producers.store(true, Ordering::Relaxed);
    for task in producers {
        runtime.block_on(task).unwrap();
    }
    let emptied = wait_until(DRAIN_DEADLINE, || queued_events(&server) == 0);
    stop_consumers.store(true, Ordering::Relaxed);
    for task in consumers {
        runtime.block_on(task).unwrap();
    }
    let (_, metrics) = server.http_json("/metrics");
    let mut leftover = runtime.block_on(async {
        let mut client = Client::connect(ClientOptions::new(address.clone()))
            .await
            .unwrap();
        drain_channel(&mut client, "c1", 1_000).await
    });
    for body in leftover.drain(..) {
        ledger.record_delivery(body.as_bytes());
    }
    let mut server = server;
    let stopped = server.stop_with_sigterm();

    // The events, like total-queue.
    let delivered = ledger.delivered.lock().unwrap();
    let mut acknowledged_total = 0u64;
    let mut lost = 0u64;
    let mut duplicated = 0u64;
    let mut beyond_acknowledged = 0u64;
    for producer in 0..PRODUCERS {
        let acknowledged = ledger.acknowledged[producer].load(Ordering::Relaxed);
        acknowledged_total += acknowledged;
        let counts = delivered.get(producer).map_or(&[][..], Vec::as_slice);
        for sequence in 0..acknowledged as usize {
            match counts.get(sequence).copied().unwrap_or(0) {
                0 => lost += 1,
                1 => {}
                _ => duplicated += 1,
            }
        }
        beyond_acknowledged += counts
            .iter()
            .skip(acknowledged as usize)
            .filter(|&&count| count > 0)
            .count() as u64;
    }
    let unexpected = ledger.unexpected.load(Ordering::Relaxed) + beyond_acknowledged;

    // The resources.
    let in_window = |from: Duration, to: Duration| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|sample| sample.at >= from && sample.at < to)
            .collect()
    };
    let baseline = in_window(warm_up, warm_up + window);
    let last = in_window(ran.saturating_sub(window), ran);
    assert!(
        !baseline.is_empty() && !last.is_empty(),
        "no samples in a window ({} samples)",
        samples.len()
    );
    let after_warm_up = in_window(warm_up, ran);
    let rss_baseline = median(baseline.iter().map(|s| s.resident_bytes).collect());
    let rss_final = median(last.iter().map(|s| s.resident_bytes).collect());
    let rss_max = after_warm_up
        .iter()
        .map(|s| s.resident_bytes)
        .max()
        .unwrap_or(0);
    let rss_change_percent = (rss_final as f64 - rss_baseline as f64) * 100.0 / rss_baseline as f64;
    // Segments (and the descriptors that read them) come and go in cycles of cleanup
    // that can be longer than a window: the final window is held against everything
    // between the warm-up and it.
    let earlier = in_window(warm_up, ran.saturating_sub(window));
    let fds_baseline = earlier.iter().map(|s| s.open_fds).max().unwrap_or(0);
    let fds_final = last.iter().map(|s| s.open_fds).max().unwrap_or(0);
    let disk_baseline = earlier.iter().map(|s| s.data_bytes).max().unwrap_or(0);
    let disk_final = last.iter().map(|s| s.data_bytes).max().unwrap_or(0);
    let disk_max = samples.iter().map(|s| s.data_bytes).max().unwrap_or(0);
    let segments_max = samples.iter().map(|s| s.segments).max().unwrap_or(0);
    let queued_max = samples.iter().map(|s| s.queued).max().unwrap_or(0);
    let segments_created: u64 = metrics
        .as_object()
        .map(|objects| {
            objects
                .iter()
                .filter(|(key, _)| key.starts_with("DATADIR.c1."))
                .filter_map(|(_, dir)| dir["SegmentsCreatedCount"].as_str()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    checkpoint_ms.sort_by(f64::total_cmp);
    println!(
        "soak (seed {seed}): {:.0} s under load, {} samples every {:?}, warm-up {:?}, windows \
         {:?}; {acknowledged_total} events put and acknowledged ({:.0}/s), lost {lost}, \
         unexpected {unexpected}, duplicated {duplicated}; resident memory baseline {:.1} MiB, \
         final {:.1} MiB ({rss_change_percent:+.1}%), largest after warm-up {:.1} MiB; open \
         fds at most {fds_baseline} before the final window, {fds_final} in it; data dirs at most \
         {:.2} MiB before the final window, {:.2} MiB in it, largest {:.2} MiB ({segments_max} segments at most, {segments_created} \
         created); queue at most {queued_max} events; {} explicit checkpoints under load: p50 \
         {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ran.as_secs_f64(),
        samples.len(),
        sample_interval,
        warm_up,
        window,
        acknowledged_total as f64 / ran.as_secs_f64(),
        rss_baseline as f64 / MIB,
        rss_final as f64 / MIB,
        rss_max as f64 / MIB,
        disk_baseline as f64 / MIB,
        disk_final as f64 / MIB,
        disk_max as f64 / MIB,
        checkpoint_ms.len(),
        percentile(&checkpoint_ms, 50),
        percentile(&checkpoint_ms, 99),
        checkpoint_ms.last().copied().unwrap_or(0.0),
    );
    println!("  t(s)   RSS(MiB)  fds  data(MiB)  segments  queued");
    let step = (samples.len() / 24).max(1);
    for sample in samples.iter().step_by(step) {
        println!(
            "  {:>5.0}  {:>8.1}  {:>3}  {:>9.2}  {:>8}  {:>6}",
            sample.at.as_secs_f64(),
            sample.resident_bytes as f64 / MIB,
            sample.open_fds,
            sample.data_bytes as f64 / MIB,
            sample.segments,
            sample.queued
        );
    }

    assert!(stopped.success(), "channeld stopped cleanly: {stopped}");
    assert!(
        emptied,
        "the consumers emptied the channel after the producers stopped"
    );
    assert!(acknowledged_total > 1_000, "the run did real work");
    assert_eq!(lost, 0, "seed {seed}: acknowledged events never delivered");
    assert_eq!(
        unexpected, 0,
        "seed {seed}: events delivered that nobody put"
    );
    assert_eq!(duplicated, 0, "seed {seed}: events delivered twice");
    assert!(
        rss_final * 100 <= rss_baseline * (100 + RSS_GROWTH_LIMIT_PERCENT),
        "resident memory grew {rss_change_percent:+.1}% from the baseline window to the final \
         one (limit +{RSS_GROWTH_LIMIT_PERCENT}%)"
    );
    assert!(
        fds_final <= fds_baseline + FD_SLACK,
        "open file descriptors grew from {fds_baseline} to {fds_final}"
    );
    assert!(
        disk_final <= disk_baseline + DISK_SLACK_SEGMENTS * MAX_FILE_SIZE_BYTES,
        "the data directories grew from {disk_baseline} to {disk_final} bytes"
    );
}
