//! EIO from `fdatasync` in the real channeld, injected by `strace`: the channel stops
//! (fail-stop), and nothing it acknowledged is lost.
//!
//! channeld runs under `strace -f -e trace=fdatasync -e inject=fdatasync:error=EIO:when=N+`
//! with the pwrite log writer (`MILLRACE_IO_BACKEND=pwrite`; the io_uring writer syncs
//! inside the ring, where no `fdatasync` system call is made). Only segment writes use
//! `fdatasync` (checkpoints and directories use `fsync`), so sync number N is the Nth
//! group commit of the log writer. Three producers put batches until the failure, then
//! try a few more batches each. The test checks:
//! - the commits of the failing round are not acknowledged;
//! - `/health` answers 503 with the channel `unhealthy`, naming `fdatasync`, the segment
//!   file and the errno;
//! - every batch begun after a producer saw the failure is refused, and so is a take;
//! - channeld never calls `fdatasync` again after the failure (no retry-and-trust);
//! - after a `kill -9` and a restart without strace, every acknowledged event is there
//!   exactly once, in each producer's order, and each unacknowledged batch is there whole
//!   or not at all.
//!
//! Skipped, with one line saying what is missing, where strace is missing or may not
//! trace; with `CI=true` that is a failure (`millrace_e2e::prerequisites`).
//! `MILLRACE_EIO_FAILING_SYNC=N` picks the first failing sync (default 40) and
//! `MILLRACE_EIO_SEED` the batch sizes; a failure prints both.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace_client::{Client, ClientOptions};
use millrace_e2e::{
    drain_channel, events_with_bodies, file_channels_config, require, strace_wrapper, Server,
    ServerSetup, AGENT,
};
use rand::{Rng, SeedableRng};

/// The first `fdatasync` that fails, counting from 1, unless `MILLRACE_EIO_FAILING_SYNC`
/// says otherwise.
const DEFAULT_FAILING_SYNC_NUMBER: u64 = 40;
const PRODUCERS: usize = 3;
/// Batches each producer still tries after its first refusal.
const ATTEMPTS_AFTER_FIRST_REFUSAL: usize = 3;
/// A producer stops here even if nothing failed (strace then injected nothing).
const MAX_BATCHES_PER_PRODUCER: usize = 2_000;
const MAX_BATCH_EVENTS: usize = 20;
/// The errno strace injects, as Rust's `io::Error` prints it.
const EIO_TEXT: &str = "os error 5";

struct Batch {
    producer: usize,
    bodies: Vec<String>,
    /// Whether some producer had already seen a refusal when this batch was begun.
    begun_after_a_refusal: bool,
    /// `None` when acknowledged, else the error the producer got.
    refusal: Option<String>,
}

fn body(producer: usize, sequence: u64) -> String {
    format!("p{producer}-{sequence:08}")
}

fn producer_and_sequence(body: &str) -> (usize, u64) {
    let (producer, sequence) = body
        .strip_prefix('p')
        .and_then(|rest| rest.split_once('-'))
        .unwrap_or_else(|| panic!("not an event of this test: {body:?}"));
    (producer.parse().unwrap(), sequence.parse().unwrap())
}

async fn producer(
    address: String,
    producer: usize,
    seed: u64,
    refusal_seen: Arc<AtomicBool>,
    batches: Arc<Mutex<Vec<Batch>>>,
) {
    let mut client = Client::connect(ClientOptions::new(address))
        .await
        .expect("connect to channeld");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut sequence = 0u64;
    let mut refusals = 0;
    for _ in 0..MAX_BATCHES_PER_PRODUCER {
        let bodies: Vec<String> = (0..rng.random_range(1..=MAX_BATCH_EVENTS))
            .map(|_| {
                sequence += 1;
                body(producer, sequence)
            })
            .collect();
        let events = events_with_bodies(&bodies);
        let begun_after_a_refusal = refusal_seen.load(Ordering::SeqCst);
        let refusal = match client.put_and_commit("c1", &events).await {
            Ok(()) => None,
            Err(error) => {
                refusal_seen.store(true, Ordering::SeqCst);
                refusals += 1;
                if error.breaks_connection() && client.reconnect().await.is_err() {
                    refusals = ATTEMPTS_AFTER_FIRST_REFUSAL + 1;
                }
                Some(error.to_string())
            }
        };
        batches.lock().unwrap().push(Batch {
            producer,
            bodies,
            begun_after_a_refusal,
            refusal,
        });
        if refusals > ATTEMPTS_AFTER_FIRST_REFUSAL {
            return;
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

#[test]
fn eio_from_fdatasync_fails_the_channel_and_loses_nothing_acknowledged() {
    let failing_sync_number =
        env_number("MILLRACE_EIO_FAILING_SYNC").unwrap_or(DEFAULT_FAILING_SYNC_NUMBER);
    let seed = env_number("MILLRACE_EIO_SEED").unwrap_or_else(|| rand::rng().random());
    let replay = format!(
        "replay: MILLRACE_EIO_FAILING_SYNC={failing_sync_number} MILLRACE_EIO_SEED={seed} \
         cargo test -p millrace-e2e --test fsync_failure -- --nocapture"
    );
    let strace_log = tempfile::Builder::new()
        .prefix("millrace-e2e-strace-")
        .suffix(".log")
        .tempfile()
        .expect("a file for strace's output");
    let strace_log_path = strace_log.path().to_path_buf();
    let injection = format!("fdatasync:error=EIO:when={failing_sync_number}+");
    let Some(wrapper) = require(strace_wrapper(&strace_log_path, "fdatasync", &injection)) else {
        return;
    };
    let config = file_channels_config(
        &["c1"],
        &format!("{AGENT}.channels.c1.transactionCapacity = {MAX_BATCH_EVENTS}\n"),
    );
    let mut server = Server::start(
        ServerSetup::with_config(config)
            .wrapped_in(&wrapper)
            .env("MILLRACE_IO_BACKEND", "pwrite"),
    );
    let strace_output = || std::fs::read_to_string(&strace_log_path).unwrap_or_default();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let batches = Arc::new(Mutex::new(Vec::new()));
    let refusal_seen = Arc::new(AtomicBool::new(false));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            runtime.spawn(producer(
                server.protocol_address().to_string(),
                id,
                rng.random(),
                Arc::clone(&refusal_seen),
                Arc::clone(&batches),
            ))
        })
        .collect();
    for task in producers {
        runtime.block_on(task).unwrap();
    }
    let batches = Arc::try_unwrap(batches)
        .ok()
        .expect("the producers are done")
        .into_inner()
        .unwrap();

    let acknowledged: Vec<&Batch> = batches
        .iter()
        .filter(|batch| batch.refusal.is_none())
        .collect();
    let refused: Vec<&Batch> = batches
        .iter()
        .filter(|batch| batch.refusal.is_some())
        .collect();
    assert!(
        !refused.is_empty(),
        "strace injected no EIO into {} batches; {replay}\nstrace:\n{}",
        batches.len(),
        strace_output()
    );
    assert!(
        !acknowledged.is_empty(),
        "the very first commit failed, so nothing tests the restart; raise \
         MILLRACE_EIO_FAILING_SYNC; {replay}\nchanneld:\n{}",
        server.stderr()
    );
    let injected = strace_output().matches("(INJECTED)").count();
    assert!(injected > 0, "strace's log shows no injection; {replay}");
    // Every later fdatasync fails too, so a retry would show up as a second injection.
    assert_eq!(
        injected,
        1,
        "channeld called fdatasync again after it failed (retry-and-trust); {replay}\nstrace:\n{}",
        strace_output()
    );
    for batch in &refused {
        let refusal = batch.refusal.as_deref().unwrap();
        assert!(
            refusal.contains("CHANNEL_UNHEALTHY")
                && refusal.contains("fdatasync of")
                && refusal.contains(EIO_TEXT),
            "producer {} was refused without the fdatasync failure: {refusal}; {replay}",
            batch.producer
        );
    }
    let acknowledged_after_a_refusal: Vec<&&Batch> = acknowledged
        .iter()
        .filter(|batch| batch.begun_after_a_refusal)
        .collect();
    assert!(
        acknowledged_after_a_refusal.is_empty(),
        "{} batches begun after a refusal were acknowledged (the first: {:?}); {replay}",
        acknowledged_after_a_refusal.len(),
        acknowledged_after_a_refusal[0].bodies
    );

    let (status, health) = server.http_json("/health");
    let channel_health = &health["channels"]["c1"];
    let reason = channel_health["reason"].as_str().unwrap_or_default();
    assert_eq!(status, 503, "{health}; {replay}");
    assert_eq!(channel_health["state"], "unhealthy", "{health}; {replay}");
    // The configuration names the data directory relative to channeld's directory.
    assert!(
        reason.contains("fdatasync of")
            && reason.contains("c1/data/segment-")
            && reason.contains(EIO_TEXT),
        "/health must name the operation, the segment file and the errno: {reason}; {replay}"
    );
    let take = runtime.block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address())).await?;
        client.begin("c1").await?;
        client.take(10, Duration::ZERO).await
    });
    match take {
        Err(error) => assert!(
            error.to_string().contains("CHANNEL_UNHEALTHY"),
            "a take on the failed channel is refused as unhealthy: {error}; {replay}"
        ),
        Ok(events) => panic!(
            "a take on the failed channel returned {} events; {replay}",
            events.len()
        ),
    }

    // A supervisor's restart: channeld (and strace with it) dies, and starts again on the
    // same disk without the fault.
    server.kill_9();
    server.setup_mut().wrapper.clear();
    server.restart();
    let (status, health) = server.http_json("/health");
    assert_eq!(
        status, 200,
        "the restarted channel serves: {health}; {replay}"
    );
    let delivered = runtime.block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .expect("connect to the restarted channeld");
        drain_channel(&mut client, "c1", 1_000).await
    });

    let mut delivery_counts: HashMap<&str, u64> = HashMap::new();
    for body in &delivered {
        *delivery_counts.entry(body.as_str()).or_default() += 1;
    }
    let offered: HashSet<&str> = batches
        .iter()
        .flat_map(|batch| batch.bodies.iter().map(String::as_str))
        .collect();
    let lost: Vec<&str> = acknowledged
        .iter()
        .flat_map(|batch| batch.bodies.iter().map(String::as_str))
        .filter(|body| !delivery_counts.contains_key(body))
        .collect();
    let unexpected: Vec<&str> = delivery_counts
        .keys()
        .copied()
        .filter(|body| !offered.contains(body))
        .collect();
    let duplicated: Vec<&str> = delivery_counts
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(body, _)| *body)
        .collect();
    let partly_recovered: Vec<&&Batch> = refused
        .iter()
        .filter(|batch| {
            let present = batch
                .bodies
                .iter()
                .filter(|body| delivery_counts.contains_key(body.as_str()))
                .count();
            present != 0 && present != batch.bodies.len()
        })
        .collect();
    let recovered_batches = refused
        .iter()
        .filter(|batch| delivery_counts.contains_key(batch.bodies[0].as_str()))
        .count();
    let mut last_sequence: HashMap<usize, u64> = HashMap::new();
    let mut out_of_order = Vec::new();
    for body in &delivered {
        let (producer, sequence) = producer_and_sequence(body);
        let previous = last_sequence.insert(producer, sequence).unwrap_or(0);
        if sequence <= previous {
            out_of_order.push(body.as_str());
        }
    }
    let acknowledged_events: usize = acknowledged.iter().map(|batch| batch.bodies.len()).sum();
    println!(
        "fdatasync EIO under strace (first failing sync {failing_sync_number}, seed {seed}): \
         {} batches ({acknowledged_events} events) acknowledged before the failure, {} \
         refused ({} of them begun after a refusal was seen), fdatasync calls failed \
         {injected}; after the restart {} events delivered, {recovered_batches} unacknowledged batches came \
         back whole; lost {}, unexpected {}, duplicated {}, partly recovered {}, out of order \
         {}",
        acknowledged.len(),
        refused.len(),
        refused
            .iter()
            .filter(|batch| batch.begun_after_a_refusal)
            .count(),
        delivered.len(),
        lost.len(),
        unexpected.len(),
        duplicated.len(),
        partly_recovered.len(),
        out_of_order.len(),
    );
    assert!(
        lost.is_empty(),
        "lost {:?}; {replay}",
        &lost[..lost.len().min(10)]
    );
    assert!(unexpected.is_empty(), "unexpected {unexpected:?}; {replay}");
    assert!(duplicated.is_empty(), "duplicated {duplicated:?}; {replay}");
    assert!(
        partly_recovered.is_empty(),
        "unacknowledged batches came back in part: {:?}; {replay}",
        partly_recovered
            .iter()
            .map(|batch| &batch.bodies)
            .collect::<Vec<_>>()
    );
    assert!(
        out_of_order.is_empty(),
        "events out of their producer's order: {out_of_order:?}; {replay}"
    );
}
