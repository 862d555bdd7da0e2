//! Every single-byte flip of every file of a small channel is detected: the channel
//! refuses to open (corruption named with its file), fails the take that reaches the
//! damage, or — when the flip hit a checkpoint, or the final write of the newest segment —
//! recovers without it. No flip ever yields an altered event, and nothing panics.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use millrace_engine::config::FileChannelConfig;
use millrace_engine::storage::{CrashMode, SimFs, Storage};
use millrace_engine::{Channel, Event, FileChannel, OpenError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Event bodies of the swept channel.
const EVENT_COUNT: usize = 24;

fn config(dual: bool) -> FileChannelConfig {
    let mut config = FileChannelConfig::new(
        vec![PathBuf::from("/sim/d0"), PathBuf::from("/sim/d1")],
        PathBuf::from("/sim/cp"),
    );
    config.max_file_size_bytes = 1024;
    config.capacity = 1_000;
    config.transaction_capacity = 100;
    if dual {
        config.use_dual_checkpoints = true;
        config.backup_checkpoint_dir = Some(PathBuf::from("/sim/backup"));
    }
    config
}

fn body(index: usize) -> String {
    format!("event-{index:03}-{}", "x".repeat(40))
}

/// Builds the channel: puts in several transactions, some takes, a checkpoint in the
/// middle, a clean close. Returns the disk and the bodies expected in the channel.
fn build(dual: bool) -> (SimFs, Vec<String>) {
    let disk = SimFs::default();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let channel = FileChannel::open_with_storage("c1", config(dual), storage).unwrap();
    for chunk in (0..EVENT_COUNT).collect::<Vec<_>>().chunks(3) {
        let mut transaction = channel.begin().unwrap();
        for &index in chunk {
            transaction
                .put(Event::from_body(body(index).into_bytes()))
                .unwrap();
        }
        transaction.commit().unwrap();
        if chunk[0] == 9 {
            channel.checkpoint_now().unwrap();
        }
    }
    let mut transaction = channel.begin().unwrap();
    for _ in 0..4 {
        transaction.take().unwrap();
    }
    transaction.commit().unwrap();
    channel.close().unwrap();
    (disk, (4..EVENT_COUNT).map(body).collect())
}

fn files(disk: &SimFs, dual: bool) -> Vec<PathBuf> {
    let mut dirs = vec!["/sim/d0", "/sim/d1", "/sim/cp"];
    if dual {
        dirs.push("/sim/backup");
    }
    dirs.iter()
        .flat_map(|dir| {
            disk.list_dir(Path::new(dir))
                .unwrap()
                .into_iter()
                .map(move |name| Path::new(dir).join(name))
        })
        .collect()
}

#[derive(Default, Debug)]
struct Tally {
    flips: u64,
    refused_to_open: u64,
    take_failed: u64,
    recovered_whole: u64,
    recovered_without_tail: u64,
}

fn sweep(dual: bool) -> Tally {
    let (disk, expected) = build(dual);
    let expected_set: HashSet<&String> = expected.iter().collect();
    let mut tally = Tally::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for path in files(&disk, dual) {
        let len = disk.read_file(&path).unwrap().len();
        for position in 0..len {
            tally.flips += 1;
            let image = disk.crash_image(CrashMode::KeepUnsynced, &mut rng);
            image
                .modify_file(&path, |bytes| bytes[position] ^= 0x01)
                .unwrap();
            let context = format!("flip at {} offset {position} (dual {dual})", path.display());
            let channel = match FileChannel::open_with_storage("c1", config(dual), Arc::new(image))
            {
                Ok(channel) => channel,
                Err(OpenError::Corruption { file, .. }) => {
                    assert_eq!(
                        file, path,
                        "{context}: the corruption names the damaged file"
                    );
                    tally.refused_to_open += 1;
                    continue;
                }
                Err(other) => panic!("{context}: unexpected open error {other}"),
            };
            let mut transaction = channel.begin().unwrap();
            let mut recovered = Vec::new();
            let mut failed = false;
            loop {
                match transaction.take() {
                    Ok(Some(event)) => {
                        recovered.push(String::from_utf8(event.body.to_vec()).unwrap())
                    }
                    Ok(None) => break,
                    Err(error) => {
                        assert!(error.to_string().contains("corrupt"), "{context}: {error}");
                        failed = true;
                        break;
                    }
                }
            }
            for event in &recovered {
                assert!(
                    expected_set.contains(event),
                    "{context}: an altered event was delivered: {event}"
                );
            }
            if failed {
                tally.take_failed += 1;
            } else if recovered == expected {
                tally.recovered_whole += 1;
            } else {
                let truncated = !channel
                    .recovery_report()
                    .unwrap()
                    .truncated_tails
                    .is_empty();
                assert!(
                    truncated && expected.starts_with(&recovered),
                    "{context}: recovered {recovered:?}, expected {expected:?} or a reported torn tail"
                );
                tally.recovered_without_tail += 1;
            }
        }
    }
    tally
}

#[test]
fn every_single_byte_flip_is_detected_and_never_delivers_an_altered_event() {
    for dual in [false, true] {
        let tally = sweep(dual);
        println!("corruption sweep (dual checkpoints {dual}): {tally:?}");
        assert!(tally.flips > 1_000);
    }
}
