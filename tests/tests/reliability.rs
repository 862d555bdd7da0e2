//! Nothing acknowledged is ever lost: `kill -9` of the real channeld at random moments
//! under concurrent producers and consumers, checked like Jepsen's total-queue.
//!
//! Producers put batches of 1–100 events and log every acknowledged put; consumers take
//! batches and log every acknowledged take. Segments are small and checkpoints frequent,
//! so rolls, checkpoints and cleanup happen during the run. After the last cycle the
//! channel is drained. Every event is then classified:
//! - **lost**: its put was acknowledged, and no take ever returned it (neither an
//!   acknowledged take, nor one in doubt: a take whose commit may have reached the disk
//!   just before the crash);
//! - **unexpected**: it was delivered, but never offered by a producer;
//! - **duplicated**: more than one acknowledged take returned it;
//! - **recovered**: its put was not acknowledged (in flight at a crash) but it was
//!   delivered.
//!
//! Lost, unexpected and duplicated must be zero. An event taken by a take whose commit was
//! not acknowledged may be delivered again — that is at-least-once, and allowed.
//!
//! `MILLRACE_KILL_CYCLES=N` runs N cycles (default 30; the long form uses 1,000). A failure
//! prints the seed, which replays the same kill timings.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace_client::{Client, ClientOptions, Event};
use millrace_e2e::{drain_channel, file_channels_config, Server, ServerSetup};
use rand::{Rng, SeedableRng};

/// Kill cycles in the default run.
const DEFAULT_KILL_CYCLES: u64 = 30;
const PRODUCERS: usize = 2;
const CONSUMERS: usize = 2;
/// The longest a cycle runs before the kill.
const MAX_CYCLE_MS: u64 = 1_500;
/// The shortest.
const MIN_CYCLE_MS: u64 = 200;
/// Small segments so the log rolls and cleanup has work during the run.
const CHANNEL_SETTINGS: &str = "a1.channels.c1.maxFileSize = 262144\n\
                                a1.channels.c1.checkpointInterval = 1000\n\
                                a1.channels.c1.transactionCapacity = 1000\n";

#[derive(Default)]
struct History {
    offered: HashSet<String>,
    acknowledged_puts: HashSet<String>,
    /// Event → how many acknowledged takes returned it.
    acknowledged_takes: HashMap<String, u64>,
    /// Events returned by takes whose commit was not acknowledged (the server died): the
    /// commit may or may not have reached the disk, so each may be consumed or come back.
    in_doubt_takes: HashSet<String>,
}

async fn producer(address: String, id: usize, cycle: u64, seed: u64, history: Arc<Mutex<History>>) {
    let Ok(mut client) = Client::connect(ClientOptions::new(address)).await else {
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut sequence = 0u64;
    loop {
        let batch: usize = rng.random_range(1..=100);
        let bodies: Vec<String> = (0..batch)
            .map(|_| {
                sequence += 1;
                format!("c{cycle}-p{id}-{sequence}")
            })
            .collect();
        history
            .lock()
            .unwrap()
            .offered
            .extend(bodies.iter().cloned());
        let events: Vec<Event> = bodies
            .iter()
            .map(|body| Event::new(body.clone().into_bytes()))
            .collect();
        match client.put_and_commit("c1", &events).await {
            Ok(()) => history.lock().unwrap().acknowledged_puts.extend(bodies),
            Err(_) => return, // the server is gone: this batch is in doubt
        }
    }
}

async fn consumer(address: String, seed: u64, history: Arc<Mutex<History>>) {
    let Ok(mut client) = Client::connect(ClientOptions::new(address)).await else {
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    loop {
        if client.begin("c1").await.is_err() {
            return;
        }
        let max = rng.random_range(1..=100);
        let Ok(events) = client.take(max, Duration::from_millis(20)).await else {
            return;
        };
        if client.commit().await.is_err() {
            // In doubt: the commit may have reached the disk before the server died.
            let mut history = history.lock().unwrap();
            for event in events {
                history
                    .in_doubt_takes
                    .insert(String::from_utf8(event.body.to_vec()).unwrap());
            }
            return;
        }
        let mut history = history.lock().unwrap();
        for event in events {
            let body = String::from_utf8(event.body.to_vec()).unwrap();
            *history.acknowledged_takes.entry(body).or_default() += 1;
        }
    }
}

async fn drain(address: String, history: Arc<Mutex<History>>) {
    let mut client = Client::connect(ClientOptions::new(address)).await.unwrap();
    let delivered = drain_channel(&mut client, "c1", 1_000).await;
    let mut history = history.lock().unwrap();
    for body in delivered {
        *history.acknowledged_takes.entry(body).or_default() += 1;
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    let cycles = std::env::var("MILLRACE_KILL_CYCLES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_KILL_CYCLES);
    let seed: u64 = std::env::var("MILLRACE_KILL_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let history = Arc::new(Mutex::new(History::default()));
    let mut server = Server::start(ServerSetup::with_config(file_channels_config(
        &["c1"],
        CHANNEL_SETTINGS,
    )));
    let mut restart_ms = Vec::new();
    for cycle in 0..cycles {
        let address = server.protocol_address().to_string();
        let mut tasks = Vec::new();
        for id in 0..PRODUCERS {
            tasks.push(runtime.spawn(producer(
                address.clone(),
                id,
                cycle,
                rng.random(),
                Arc::clone(&history),
            )));
        }
        for _ in 0..CONSUMERS {
            tasks.push(runtime.spawn(consumer(
                address.clone(),
                rng.random(),
                Arc::clone(&history),
            )));
        }
        std::thread::sleep(Duration::from_millis(
            rng.random_range(MIN_CYCLE_MS..=MAX_CYCLE_MS),
        ));
        server.kill_9();
        for task in tasks {
            runtime.block_on(task).unwrap();
        }
        let started = Instant::now();
        server.restart();
        restart_ms.push(started.elapsed().as_millis() as u64);
    }
    runtime.block_on(drain(
        server.protocol_address().to_string(),
        Arc::clone(&history),
    ));

    let history = history.lock().unwrap();
    let delivered: HashSet<&String> = history.acknowledged_takes.keys().collect();
    let lost: Vec<&String> = history
        .acknowledged_puts
        .iter()
        .filter(|body| !delivered.contains(body) && !history.in_doubt_takes.contains(*body))
        .collect();
    let unexpected: Vec<&&String> = delivered
        .iter()
        .filter(|body| !history.offered.contains(**body))
        .collect();
    let duplicated: Vec<(&String, &u64)> = history
        .acknowledged_takes
        .iter()
        .filter(|(_, count)| **count > 1)
        .collect();
    let recovered = delivered
        .iter()
        .filter(|body| !history.acknowledged_puts.contains(**body))
        .count();
    restart_ms.sort_unstable();
    let restart_p50 = restart_ms.get(restart_ms.len() / 2).copied().unwrap_or(0);
    let restart_max = restart_ms.last().copied().unwrap_or(0);
    println!(
        "kill -9 checker (seed {seed}): cycles {cycles}, events offered {}, acknowledged puts {}, \
         delivered {}, in doubt {}, lost {}, unexpected {}, duplicated {}, recovered {recovered}, \
         restart-to-ready p50 {restart_p50} ms, max {restart_max} ms",
        history.offered.len(),
        history.acknowledged_puts.len(),
        delivered.len(),
        history.in_doubt_takes.len(),
        lost.len(),
        unexpected.len(),
        duplicated.len(),
    );
    assert!(
        history.acknowledged_puts.len() > 1_000,
        "the run did real work (seed {seed})"
    );
    assert!(
        lost.is_empty(),
        "seed {seed}: lost {:?}",
        &lost[..lost.len().min(10)]
    );
    assert!(
        unexpected.is_empty(),
        "seed {seed}: unexpected {unexpected:?}"
    );
    assert!(
        duplicated.is_empty(),
        "seed {seed}: duplicated {:?}",
        &duplicated[..duplicated.len().min(10)]
    );
}
