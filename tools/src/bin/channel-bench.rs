//! `channel-bench`: measure a channel through channeld (or in-process with `--embedded`).
//!
//! ```text
//! channel-bench --server ADDR --channel NAME --mode put|take|mixed --events N --size BYTES
//!               --batch B --producers P --consumers C [--json]
//! channel-bench --embedded -f FILE -n AGENT --channel NAME ...
//! ```
//!
//! Producers commit batches of `--batch` events of `--size` bytes (put-and-commit over the
//! network), each keeping up to `--pipeline` of them in flight; consumers take and
//! commit batches. `put` runs only producers, `take` only
//! consumers (on a channel filled beforehand), `mixed` both at once. Reports events/s,
//! MB/s and commit latency percentiles (hdrhistogram); `--json` prints one line with
//! `events_per_sec`, `mb_per_sec`, `p50_us`, `p99_us`, `p999_us`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use millrace_client::{Client, ClientOptions, Event, Request, Response, DEFAULT_SERVER_ADDRESS};
use millrace_engine::Channel;
use millrace_protocol::EventBatch;
use std::io::IsTerminal;

/// How long a consumer waits for events before checking whether the run is over.
const TAKE_WAIT: Duration = Duration::from_millis(200);
/// Latencies above this are recorded as this (hdrhistogram's bound), in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Significant figures the histogram keeps.
const HISTOGRAM_SIGNIFICANT_FIGURES: u8 = 3;
/// How often the progress bar is refreshed.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Put,
    Take,
    Mixed,
}

/// Measure a Millrace channel.
#[derive(Debug, Parser)]
#[command(
    name = "channel-bench",
    version,
    about = "channel-bench: measure a Millrace channel's throughput and commit latency, \
             through channeld or in-process"
)]
struct Args {
    /// channeld's protocol address.
    #[arg(long, default_value = DEFAULT_SERVER_ADDRESS)]
    server: String,
    /// The channel.
    #[arg(long, default_value = "default")]
    channel: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Put)]
    mode: Mode,
    /// Events to move in total.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Body size of each event, in bytes.
    #[arg(long = "size", default_value_t = 256)]
    size_bytes: usize,
    /// Events per transaction.
    #[arg(long, default_value_t = 100)]
    batch: u32,
    /// Concurrent producers (one connection each).
    #[arg(long, default_value_t = 4)]
    producers: u32,
    /// Transactions each producer or consumer keeps in flight on its connection
    /// (pipelined: the server starts the commits in order and answers each once durable).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pipeline: u32,
    /// Concurrent consumers (one connection each).
    #[arg(long, default_value_t = 4)]
    consumers: u32,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
    /// Drive the engine in-process (no network) with the channel from `-f`/`-n`.
    #[arg(long, requires_all = ["conf_file", "agent"])]
    embedded: bool,
    /// Flume agent configuration (with `--embedded`).
    #[arg(short = 'f', long = "conf-file")]
    conf_file: Option<std::path::PathBuf>,
    /// The agent (with `--embedded`).
    #[arg(short = 'n', long = "name")]
    agent: Option<String>,
    /// The server's shared token.
    #[arg(long, env = "MILLRACE_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
}

/// What every worker shares.
struct Shared {
    latencies: Mutex<Histogram<u64>>,
    moved: AtomicU64,
}

impl Shared {
    fn record(&self, started: Instant, events: u64) {
        let micros = (started.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latencies
            .lock()
            .expect("histogram lock")
            .saturating_record(micros);
        self.moved.fetch_add(events, Ordering::Relaxed);
    }
}

fn body(size_bytes: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![b'x'; size_bytes])
}

fn main() {
    millrace_clidocs::write_if_requested::<Args>();
    let args = Args::parse();
    if let Err(message) = run(&args) {
        eprintln!("channel-bench: {message}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let shared = Arc::new(Shared {
        latencies: Mutex::new(
            Histogram::new_with_max(MAX_LATENCY_US, HISTOGRAM_SIGNIFICANT_FIGURES)
                .map_err(|error| error.to_string())?,
        ),
        moved: AtomicU64::new(0),
    });
    let target = match args.mode {
        Mode::Put | Mode::Take => args.events,
        Mode::Mixed => args.events * 2,
    };
    let progress = progress_bar(target);
    let ticker = {
        let shared = Arc::clone(&shared);
        let progress = progress.clone();
        std::thread::spawn(move || loop {
            let moved = shared.moved.load(Ordering::Relaxed);
            progress.set_position(moved);
            if moved >= target || progress.is_finished() {
                return;
            }
            std::thread::sleep(PROGRESS_TICK);
        })
    };
    let started = Instant::now();
    if args.embedded {
        run_embedded(args, &shared)?;
    } else {
        run_network(args, &shared)?;
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let _ = ticker.join();
    report(args, &shared, elapsed);
    Ok(())
}

fn progress_bar(target: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(target);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec}") {
        bar.set_style(style);
    }
    bar
}

fn share(total: u64, workers: u32, index: u32) -> u64 {
    let workers = u64::from(workers.max(1));
    total / workers + u64::from(u64::from(index) < total % workers)
}

fn run_network(args: &Args, shared: &Arc<Shared>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let options = || {
            let options = ClientOptions::new(args.server.clone());
            match &args.auth_token {
                Some(token) => options.with_auth_token(token.clone()),
                None => options,
            }
        };
        let mut tasks = Vec::new();
        if args.mode != Mode::Take {
            for index in 0..args.producers {
                let events = share(args.events, args.producers, index);
                let (shared, options, channel) =
                    (Arc::clone(shared), options(), args.channel.clone());
                let (batch, size) = (u64::from(args.batch), args.size_bytes);
                let pipeline = args.pipeline as usize;
                tasks.push(tokio::spawn(async move {
                    let mut client = Client::connect(options)
                        .await
                        .map_err(|error| error.to_string())?;
                    let payload = body(size);
                    let mut remaining = events;
                    // Each request in flight: when it was sent and how many events it holds.
                    let mut in_flight: VecDeque<(Instant, u64)> = VecDeque::new();
                    while remaining > 0 || !in_flight.is_empty() {
                        while remaining > 0 && in_flight.len() < pipeline {
                            let count = remaining.min(batch);
                            let batch_events: Vec<Event> =
                                (0..count).map(|_| Event::new(payload.clone())).collect();
                            let request = Request::PutCommit {
                                channel: channel.clone(),
                                events: EventBatch::from_events(&batch_events)
                                    .map_err(|error| error.to_string())?,
                            };
                            client.send(&request).map_err(|error| error.to_string())?;
                            in_flight.push_back((Instant::now(), count));
                            remaining -= count;
                        }
                        client.flush().await.map_err(|error| error.to_string())?;
                        let answer = client.receive().await.map_err(|error| error.to_string())?;
                        let (started, count) =
                            in_flight.pop_front().expect("an answer per request");
                        match answer.response {
                            Response::Ok => shared.record(started, count),
                            other => return Err(format!("put-commit refused: {other:?}")),
                        }
                    }
                    Ok::<(), String>(())
                }));
            }
        }
        if args.mode != Mode::Put {
            for index in 0..args.consumers {
                let events = share(args.events, args.consumers, index);
                let (shared, options, channel) =
                    (Arc::clone(shared), options(), args.channel.clone());
                let (batch, pipeline) = (args.batch, args.pipeline as usize);
                tasks.push(tokio::spawn(async move {
                    let mut client = Client::connect(options)
                        .await
                        .map_err(|error| error.to_string())?;
                    let mut remaining = events;
                    // Begin, Take and Commit in one flight, and up to `pipeline` such
                    // batches in flight: their take commits share syncs.
                    // Each batch in flight: when it was sent and how many it asked for. What
                    // is asked for never exceeds what is left to take.
                    let mut in_flight: VecDeque<(Instant, u64)> = VecDeque::new();
                    let mut outstanding = 0u64;
                    while remaining > 0 || !in_flight.is_empty() {
                        while remaining > outstanding && in_flight.len() < pipeline {
                            let max_events = u64::from(batch).min(remaining - outstanding);
                            for request in [
                                Request::Begin {
                                    channel: channel.clone(),
                                },
                                Request::Take {
                                    max_events: max_events as u32,
                                    wait_ms: TAKE_WAIT.as_millis() as u32,
                                },
                                Request::Commit,
                            ] {
                                client.send(&request).map_err(|error| error.to_string())?;
                            }
                            in_flight.push_back((Instant::now(), max_events));
                            outstanding += max_events;
                        }
                        client.flush().await.map_err(|error| error.to_string())?;
                        let mut answers = Vec::with_capacity(3);
                        for _ in 0..3 {
                            let answer =
                                client.receive().await.map_err(|error| error.to_string())?;
                            answers.push(answer.response);
                        }
                        let (started, asked) = in_flight.pop_front().expect("an answer per batch");
                        outstanding -= asked;
                        let taken = match answers.as_slice() {
                            [Response::Ok, Response::Events(events), Response::Ok] => events.len(),
                            other => return Err(format!("take refused: {other:?}")),
                        };
                        if taken > 0 {
                            shared.record(started, taken as u64);
                            remaining -= taken as u64;
                        }
                    }
                    Ok::<(), String>(())
                }));
            }
        }
        for task in tasks {
            task.await.map_err(|error| error.to_string())??;
        }
        Ok(())
    })
}

fn run_embedded(args: &Args, shared: &Arc<Shared>) -> Result<(), String> {
    let (file, agent) = (
        args.conf_file.as_ref().expect("clap requires it"),
        args.agent.as_ref().expect("clap requires it"),
    );
    let config = millrace_config::load_agent_config(
        file,
        agent,
        std::path::Path::new(millrace_config::DEFAULT_DATA_BASE_DIR),
    )
    .map_err(|errors| errors.messages().join("\n"))?;
    let channel_config = config
        .channel(&args.channel)
        .ok_or_else(|| format!("no channel {} in {}", args.channel, file.display()))?
        .clone();
    let channel: Arc<dyn Channel> = millrace_ops::open_channel(
        &args.channel,
        channel_config,
        Arc::new(millrace_engine::storage::RealFs::auto()),
    )
    .map_err(|error| error.to_string())?
    .channel;
    let mut threads = Vec::new();
    if args.mode != Mode::Take {
        for index in 0..args.producers {
            let events = share(args.events, args.producers, index);
            let (shared, channel) = (Arc::clone(shared), Arc::clone(&channel));
            let (batch, size) = (u64::from(args.batch), args.size_bytes);
            threads.push(std::thread::spawn(move || -> Result<(), String> {
                let payload = body(size);
                let mut remaining = events;
                while remaining > 0 {
                    let count = remaining.min(batch);
                    let started = Instant::now();
                    let mut transaction = channel.begin().map_err(|error| error.to_string())?;
                    for _ in 0..count {
                        transaction
                            .put(millrace_engine::Event::from_body(payload.clone()))
                            .map_err(|error| error.to_string())?;
                    }
                    transaction.commit().map_err(|error| error.to_string())?;
                    shared.record(started, count);
                    remaining -= count;
                }
                Ok(())
            }));
        }
    }
    if args.mode != Mode::Put {
        for index in 0..args.consumers {
            let events = share(args.events, args.consumers, index);
            let (shared, channel) = (Arc::clone(shared), Arc::clone(&channel));
            let batch = u64::from(args.batch);
            threads.push(std::thread::spawn(move || -> Result<(), String> {
                let mut remaining = events;
                while remaining > 0 {
                    let started = Instant::now();
                    let mut transaction = channel.begin().map_err(|error| error.to_string())?;
                    let mut taken = 0;
                    while taken < batch.min(remaining) {
                        match transaction
                            .take_waiting(TAKE_WAIT)
                            .map_err(|error| error.to_string())?
                        {
                            Some(_) => taken += 1,
                            None => break,
                        }
                    }
                    transaction.commit().map_err(|error| error.to_string())?;
                    if taken > 0 {
                        shared.record(started, taken);
                        remaining -= taken;
                    }
                }
                Ok(())
            }));
        }
    }
    for thread in threads {
        thread
            .join()
            .map_err(|_| "a worker panicked".to_string())??;
    }
    channel.close().map_err(|error| error.to_string())
}

fn report(args: &Args, shared: &Shared, elapsed: Duration) {
    let moved = shared.moved.load(Ordering::Relaxed);
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let events_per_sec = moved as f64 / seconds;
    let mb_per_sec = events_per_sec * args.size_bytes as f64 / 1e6;
    let latencies = shared.latencies.lock().expect("histogram lock");
    let (p50, p99, p999) = (
        latencies.value_at_quantile(0.50),
        latencies.value_at_quantile(0.99),
        latencies.value_at_quantile(0.999),
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "mode": format!("{:?}", args.mode).to_lowercase(),
                "embedded": args.embedded,
                "events": moved,
                "size_bytes": args.size_bytes,
                "batch": args.batch,
                "producers": args.producers,
                "consumers": args.consumers,
                "seconds": seconds,
                "events_per_sec": events_per_sec.round(),
                "mb_per_sec": (mb_per_sec * 10.0).round() / 10.0,
                "p50_us": p50,
                "p99_us": p99,
                "p999_us": p999,
                "commits": latencies.len(),
            })
        );
    } else {
        println!(
            "{moved} events in {seconds:.2} s: {events_per_sec:.0} events/s, {mb_per_sec:.1} MB/s; \
             commit latency p50 {p50} us, p99 {p99} us, p99.9 {p999} us ({} commits)",
            latencies.len()
        );
    }
}
