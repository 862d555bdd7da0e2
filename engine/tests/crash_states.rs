//! Simulated power loss at every I/O step.
//!
//! Each workload is a seeded sequence of transactions (puts, takes, mixed, rolled back)
//! on a file channel with two data dirs and segments small enough to roll inside the
//! workload. For every mutating I/O operation N of the workload, the workload is run
//! again on a fresh [`SimFs`] that stops the process at N, and the disk is rebuilt as a
//! power loss would leave it: unsynced data dropped, the last writes torn at random
//! bytes, or everything kept (a process crash). The channel must then open, and:
//! - every acknowledged put is present unless an acknowledged take removed it;
//! - no acknowledged take is delivered again;
//! - nothing rolled back, and nothing never put, appears; nothing appears twice;
//! - every unacknowledged transaction is all-or-nothing;
//! - events come out in put order;
//! - recovering the recovered disk again gives the same channel.
//!
//! A quarter of the workloads seal their put records with a key, and another quarter
//! also compress them, so torn and dropped writes of sealed records are covered too.
//!
//! A failure prints the workload seed, the crash point and the mode, which replay it.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use millrace_engine::config::{Compression, EncryptionConfig, FileChannelConfig, KeySource};
use millrace_engine::storage::{CrashMode, SimFs, SimFsOptions, Storage};
use millrace_engine::{Channel, ChannelHealth, Event, FileChannel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Workloads in the default run; each contributes (I/O steps + 1) × modes crash states.
/// `MILLRACE_CRASH_WORKLOADS=N` runs more (the long form).
const DEFAULT_WORKLOAD_COUNT: u64 = 52;
/// Torn images built per crash point (each with its own random tear).
const TORN_IMAGES_PER_POINT: u64 = 4;
/// The default run must check at least this many crash states (the reliability bar's
/// figure for the default CI run).
const MIN_CRASH_STATES: u64 = 20_000;
/// Small segments so that every workload rolls inside.
const MAX_FILE_SIZE_BYTES: u64 = 1024;
/// Event bodies are padded to this many bytes.
const BODY_BYTES: usize = 120;

#[derive(Debug, Clone)]
enum Step {
    Put(Vec<u32>),
    Take(usize),
    PutAndTake(Vec<u32>, usize),
    RolledBackPut(Vec<u32>),
    RolledBackTake(usize),
    /// Checkpoint and cleanup, in the middle of the workload.
    Checkpoint,
}

fn workload(seed: u64) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut next_id = 0u32;
    let mut ids = |count: usize| {
        let batch: Vec<u32> = (next_id..next_id + count as u32).collect();
        next_id += count as u32;
        batch
    };
    // Three opening puts of 4 × 128 bytes: the first dir must roll by the third.
    let mut steps = vec![Step::Put(ids(4)), Step::Put(ids(4)), Step::Put(ids(4))];
    let step_count = rng.random_range(5..8);
    for _ in 0..step_count {
        let count = rng.random_range(1..5);
        steps.push(match rng.random_range(0..12) {
            0..=4 => Step::Put(ids(count)),
            5 | 6 => Step::Take(count),
            7 => Step::PutAndTake(ids(count), rng.random_range(1..3)),
            8 => Step::RolledBackPut(ids(count)),
            9 => Step::RolledBackTake(count),
            _ => Step::Checkpoint,
        });
    }
    steps
}

fn body(id: u32) -> Vec<u8> {
    format!("{id:0width$}", width = BODY_BYTES).into_bytes()
}

fn id_of(event: &Event) -> u32 {
    std::str::from_utf8(&event.body).unwrap().parse().unwrap()
}

/// The key file of the workloads that encrypt (keys are read from the real disk, not
/// the simulated one), written by the test that runs them.
static KEY_FILE: OnceLock<PathBuf> = OnceLock::new();
/// Seeds with this remainder modulo four encrypt; the next remainder also compresses.
const ENCRYPTED_SEED_REMAINDER: u64 = 2;
const COMPRESSED_SEED_REMAINDER: u64 = 3;

/// Odd workload seeds run with dual checkpoints; seeds 2 and 3 modulo 4 encrypt, and
/// seeds 3 modulo 4 also compress.
fn config_for(seed: u64) -> FileChannelConfig {
    let mut config = config();
    if seed % 2 == 1 {
        config.use_dual_checkpoints = true;
        config.backup_checkpoint_dir = Some(PathBuf::from("/sim/backup"));
    }
    if seed % 4 == ENCRYPTED_SEED_REMAINDER || seed % 4 == COMPRESSED_SEED_REMAINDER {
        let key_file = KEY_FILE.get().expect("the test wrote the key file").clone();
        config.encryption = Some(EncryptionConfig {
            active_key_id: "crash-key".to_string(),
            keys: BTreeMap::from([("crash-key".to_string(), KeySource::KeyFile(key_file))]),
        });
    }
    if seed % 4 == COMPRESSED_SEED_REMAINDER {
        config.compression = Compression::Lz4;
    }
    config
}

fn config() -> FileChannelConfig {
    let root = PathBuf::from("/sim");
    let mut config = FileChannelConfig::new(
        vec![root.join("data0"), root.join("data1")],
        root.join("checkpoint"),
    );
    config.capacity = 1_000;
    config.transaction_capacity = 100;
    config.keep_alive = Duration::ZERO;
    config.max_file_size_bytes = MAX_FILE_SIZE_BYTES;
    config
}

/// What the workload saw acknowledged.
#[derive(Debug, Default)]
struct Outcome {
    put: HashSet<u32>,
    taken: HashSet<u32>,
    rolled_back: HashSet<u32>,
    /// Transactions whose commit failed: their put ids and their taken ids.
    unacknowledged: Vec<(Vec<u32>, Vec<u32>)>,
    segments_created: u64,
}

fn run_workload(storage: Arc<dyn Storage>, steps: &[Step], seed: u64) -> Outcome {
    let mut outcome = Outcome::default();
    let Ok(channel) = FileChannel::open_with_storage("c1", config_for(seed), storage) else {
        return outcome;
    };
    for step in steps {
        if let Step::Checkpoint = step {
            let _ = channel.checkpoint();
            continue;
        }
        // The workload ends where the simulated process stopped: the channel has failed
        // (it still begins transactions, and refuses their work) or closed.
        if let ChannelHealth::Failed { .. } = channel.health() {
            break;
        }
        let Ok(mut transaction) = channel.begin() else {
            break;
        };
        let (put_ids, take_count, commit) = match step {
            Step::Put(ids) => (ids.clone(), 0, true),
            Step::Take(count) => (Vec::new(), *count, true),
            Step::PutAndTake(ids, count) => (ids.clone(), *count, true),
            Step::RolledBackPut(ids) => (ids.clone(), 0, false),
            Step::RolledBackTake(count) => (Vec::new(), *count, false),
            Step::Checkpoint => unreachable!("handled above"),
        };
        let mut taken_ids = Vec::new();
        for _ in 0..take_count {
            match transaction.take() {
                Ok(Some(event)) => taken_ids.push(id_of(&event)),
                _ => break,
            }
        }
        let refused = put_ids
            .iter()
            .any(|&id| transaction.put(Event::from_body(body(id))).is_err());
        if refused {
            // The channel failed meanwhile (a stop in the background checkpoint): this
            // transaction never commits, so none of its puts may come back.
            outcome.rolled_back.extend(&put_ids);
            break;
        }
        if !commit {
            transaction.rollback().unwrap();
            outcome.rolled_back.extend(&put_ids);
            continue;
        }
        match transaction.commit() {
            Ok(()) => {
                outcome.put.extend(&put_ids);
                outcome.taken.extend(&taken_ids);
            }
            Err(_) => outcome.unacknowledged.push((put_ids, taken_ids)),
        }
    }
    outcome.segments_created = channel
        .dir_stats()
        .iter()
        .map(|(_, stats)| {
            stats
                .segments_created
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    let _ = channel.close();
    outcome
}

fn recovered_ids(storage: Arc<dyn Storage>, seed: u64) -> Result<Vec<u32>, String> {
    let channel = FileChannel::open_with_storage("c1", config_for(seed), storage)
        .map_err(|error| format!("open failed: {error}"))?;
    let mut transaction = channel.begin().map_err(|error| error.to_string())?;
    let mut ids = Vec::new();
    while let Some(event) = transaction.take().map_err(|error| error.to_string())? {
        ids.push(id_of(&event));
    }
    transaction.rollback().unwrap();
    channel.close().map_err(|error| error.to_string())?;
    Ok(ids)
}

fn check(outcome: &Outcome, recovered: &[u32]) -> Result<(), String> {
    let present: HashSet<u32> = recovered.iter().copied().collect();
    if present.len() != recovered.len() {
        return Err(format!("an event appears twice: {recovered:?}"));
    }
    if !recovered.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(format!("events out of put order: {recovered:?}"));
    }
    let possible: HashSet<u32> = outcome
        .put
        .iter()
        .chain(outcome.unacknowledged.iter().flat_map(|(puts, _)| puts))
        .copied()
        .collect();
    if let Some(id) = present.iter().find(|id| !possible.contains(id)) {
        let origin = if outcome.rolled_back.contains(id) {
            "rolled back"
        } else {
            "never put"
        };
        return Err(format!("event {id} appeared but was {origin}"));
    }
    // Each unacknowledged transaction either landed whole (puts present, takes gone) or
    // not at all (puts absent, takes back in the channel).
    let mut taken_by_landed = HashSet::new();
    for (puts, takes) in &outcome.unacknowledged {
        let puts_present = puts.iter().filter(|id| present.contains(id)).count();
        let takes_present = takes.iter().filter(|id| present.contains(id)).count();
        let landed = puts_present == puts.len() && takes_present == 0;
        let vanished = puts_present == 0 && takes_present == takes.len();
        if !landed && !vanished {
            return Err(format!(
                "unacknowledged transaction half applied: {puts_present} of puts {puts:?} and \
                 {takes_present} of takes {takes:?} present"
            ));
        }
        if landed {
            taken_by_landed.extend(takes.iter().copied());
        }
    }
    for id in outcome.put.difference(&outcome.taken) {
        if !present.contains(id) && !taken_by_landed.contains(id) {
            return Err(format!("acknowledged put {id} was lost"));
        }
    }
    if let Some(id) = outcome.taken.iter().find(|id| present.contains(id)) {
        return Err(format!("acknowledged take of {id} was delivered again"));
    }
    Ok(())
}

#[test]
fn every_crash_point_of_small_workloads_recovers_exactly_the_acknowledged_transactions() {
    let workload_count = std::env::var("MILLRACE_CRASH_WORKLOADS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_WORKLOAD_COUNT);
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("crash-key.key");
    std::fs::write(&key_file, [0x5a; 32]).unwrap();
    KEY_FILE.set(key_file).unwrap();
    let mut crash_states = 0u64;
    for seed in 0..workload_count {
        let steps = workload(seed);
        let dry_run = SimFs::default();
        let dry_outcome = run_workload(Arc::new(dry_run.clone()), &steps, seed);
        let total_ops = dry_run.mutating_ops();
        // Compressed workloads shrink their repetitive bodies below what rolls a
        // segment in every dir; the other workloads cover rolling.
        let compressed = seed % 4 == COMPRESSED_SEED_REMAINDER;
        assert!(
            compressed || dry_outcome.segments_created >= 3,
            "workload {seed} rolls a segment inside ({} segments)",
            dry_outcome.segments_created
        );
        for crash_point in 0..=total_ops {
            let disk = SimFs::new(SimFsOptions {
                crash_after_ops: Some(crash_point),
                ..SimFsOptions::default()
            });
            let outcome = run_workload(Arc::new(disk.clone()), &steps, seed);
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 1_000_003 + crash_point);
            let mut modes = vec![CrashMode::DropUnsynced, CrashMode::KeepUnsynced];
            modes.extend((0..TORN_IMAGES_PER_POINT).map(|_| CrashMode::TornLastWrite));
            for mode in modes {
                let image = disk.crash_image(mode, &mut rng);
                let context = format!(
                    "workload seed {seed}, crash after op {crash_point} of {total_ops}, {mode:?}, steps {steps:?}"
                );
                let first = recovered_ids(Arc::new(image.clone()), seed)
                    .unwrap_or_else(|error| panic!("{context}: {error}"));
                if let Err(violation) = check(&outcome, &first) {
                    panic!("{context}: {violation}\noutcome {outcome:?}\nrecovered {first:?}");
                }
                let second = recovered_ids(Arc::new(image), seed)
                    .unwrap_or_else(|error| panic!("{context}, second recovery: {error}"));
                assert_eq!(first, second, "{context}: recovering twice differs");
                crash_states += 1;
            }
        }
    }
    println!("crash states checked: {crash_states} ({workload_count} workloads, 2 data dirs, {MAX_FILE_SIZE_BYTES}-byte segments)");
    if workload_count >= DEFAULT_WORKLOAD_COUNT {
        assert!(
            crash_states >= MIN_CRASH_STATES,
            "only {crash_states} crash states"
        );
    }
}

#[test]
fn a_failed_fsync_stops_the_channel_and_acknowledges_nothing_after_it() {
    let disk = SimFs::default();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let channel = FileChannel::open_with_storage("c1", config(), Arc::clone(&storage)).unwrap();
    common::put_committed(&channel, &["before"]);
    disk.set_options(SimFsOptions {
        fail_syncs_from_op: Some(disk.mutating_ops()),
        ..SimFsOptions::default()
    });
    let mut transaction = channel.begin().unwrap();
    transaction.put(common::event("during")).unwrap();
    let error = transaction.commit().unwrap_err().to_string();
    assert!(
        error.contains("fsync") || error.contains("fdatasync"),
        "{error}"
    );
    assert!(error.contains("/sim/data"), "names the file: {error}");
    disk.set_options(SimFsOptions::default());
    match channel.health() {
        millrace_engine::ChannelHealth::Failed { reason } => {
            assert!(reason.contains("Input/output error"), "{reason}")
        }
        other => panic!("expected a failed channel, got {other:?}"),
    }
    let mut refused = channel.begin().unwrap();
    assert!(
        refused.put(common::event("after")).is_err() && refused.take().is_err(),
        "nothing is accepted after the failure"
    );
    drop(refused);
    drop(channel);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let image = disk.crash_image(CrashMode::DropUnsynced, &mut rng);
    let recovered = recovered_ids_of_text(Arc::new(image));
    assert_eq!(recovered, ["before"]);
}

fn recovered_ids_of_text(storage: Arc<dyn Storage>) -> Vec<String> {
    let channel = FileChannel::open_with_storage("c1", config(), storage).unwrap();
    common::peek_all(&channel)
}
