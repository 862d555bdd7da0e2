//! Entry points for the fuzz targets in `fuzz/` and their stable smoke tests. Each feeds
//! arbitrary bytes to a decoder the engine trusts with data from disk, through the same
//! path a real start takes, and drains whatever opens. They must never panic, hang, or
//! allocate without bound; errors are fine.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::channel::Channel;
use crate::config::FileChannelConfig;
use crate::file::FileChannel;
use crate::record::SegmentHeader;
use crate::storage::{CrashMode, FileMode, SimFs, Storage, StorageFile};

/// The most events a fuzz input may drain, so that an input cannot make a run slow.
const MAX_DRAINED_EVENTS: usize = 10_000;
/// `maxFileSize` of the fuzzed channel: larger than any fuzz input, small enough that the
/// simulated disk's preallocation stays cheap.
const FUZZ_MAX_FILE_SIZE_BYTES: u64 = 1024 * 1024;

fn fuzz_config() -> FileChannelConfig {
    let mut config =
        FileChannelConfig::new(vec![PathBuf::from("/fuzz/data")], PathBuf::from("/fuzz/cp"));
    config.capacity = 1_000_000;
    config.transaction_capacity = MAX_DRAINED_EVENTS as u64;
    config.keep_alive = Duration::ZERO;
    config.max_file_size_bytes = FUZZ_MAX_FILE_SIZE_BYTES;
    config.checkpoint_on_close = false;
    config
}

fn write_file(disk: &SimFs, path: &str, bytes: &[u8]) {
    let path = PathBuf::from(path);
    let file: Arc<dyn StorageFile> = disk
        .create_file(&path, FileMode::PRIVATE)
        .expect("fresh sim disk");
    file.write_all_at(bytes, 0).expect("sim write");
}

fn open_and_drain(disk: SimFs) {
    let Ok(channel) = FileChannel::open_with_storage("fuzz", fuzz_config(), Arc::new(disk)) else {
        return;
    };
    if let Ok(mut transaction) = channel.begin() {
        for _ in 0..MAX_DRAINED_EVENTS {
            match transaction.take() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = transaction.rollback();
    }
    let _ = channel.close();
}

/// Recovers a channel whose only segment is a valid header followed by `bytes` (or, when
/// the first byte is odd, `bytes` alone, header included).
pub fn recover_segment_bytes(bytes: &[u8]) {
    let disk = SimFs::default();
    disk.create_dir_all(&PathBuf::from("/fuzz/data"), FileMode::PRIVATE)
        .expect("sim dir");
    disk.create_dir_all(&PathBuf::from("/fuzz/cp"), FileMode::PRIVATE)
        .expect("sim dir");
    let raw = bytes.first().is_some_and(|first| first % 2 == 1);
    let mut segment = Vec::new();
    if !raw {
        let header = SegmentHeader::new(1, 0, None);
        segment.extend_from_slice(&header.encode());
    }
    segment.extend_from_slice(bytes.get(1..).unwrap_or_default());
    write_file(&disk, "/fuzz/data/segment-0000000001.log", &segment);
    open_and_drain(disk);
}

/// Decodes `bytes` as a checkpoint, then starts a small valid channel whose checkpoint
/// file holds `bytes`.
pub fn load_checkpoint_bytes(bytes: &[u8]) {
    let _ = crate::file::checkpoint::Checkpoint::decode(bytes);
    static BASE: OnceLock<SimFs> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let disk = SimFs::default();
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let channel = FileChannel::open_with_storage("fuzz", fuzz_config(), storage)
            .expect("a fresh sim channel opens");
        for index in 0..3u8 {
            let mut transaction = channel.begin().expect("begin");
            transaction
                .put(crate::Event::from_body(vec![index; 16]))
                .expect("put");
            transaction.commit().expect("commit");
        }
        let _ = channel.close();
        disk
    });
    // A copy of the base disk: every byte kept.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let disk = base.crash_image(CrashMode::KeepUnsynced, &mut rng);
    let _ = disk.remove_file(&PathBuf::from("/fuzz/cp/checkpoint"));
    write_file(&disk, "/fuzz/cp/checkpoint", bytes);
    open_and_drain(disk);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_segment_bytes_never_panic_recovery(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            recover_segment_bytes(&bytes);
        }

        #[test]
        fn arbitrary_checkpoint_bytes_never_panic_a_start(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            load_checkpoint_bytes(&bytes);
        }
    }
}
