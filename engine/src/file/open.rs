//! Opening a file channel: lock every directory, load the keys, recover the queue from
//! the newest valid checkpoint (or a full replay), then start one writer per data
//! directory and the background thread. Each step is a function below, in that order.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::info;

use super::checkpoint::{CheckpointState, CHECKPOINT_FILE_NAME};
use super::dir_watch::{DirRole, DirWatch};
use super::file_channel::FileChannel;
use super::health::Health;
use super::maintenance;
use super::queue::{EventQueue, QueueState};
use super::recovery::{recover, RecoveredSegment, RecoveryInput};
use super::segments::{SegmentHandle, SegmentMeta, SegmentRegistry, LOCK_FILE_NAME};
use super::shared::{DataDir, MaintenanceHandle, Shared};
use super::space::SpaceGuard;
use super::writer::{DirWriterHandle, WriterSettings};
use crate::channel::ChannelCounters;
use crate::clock::unix_time_ms;
use crate::config::FileChannelConfig;
use crate::crypto::{KeyRing, Sealer};
use crate::error::OpenError;
use crate::figures::RecoveryProgress;
use crate::record::{
    MAX_PUT_ENVELOPE_BYTES, MAX_RECORD_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::storage::{DirLock, RealFs, Storage};

/// Where a channel open's nonce prefix comes from, as error messages name it.
const OS_RANDOM_SOURCE: &str = "the operating system's random generator (getrandom)";

impl FileChannel {
    /// Opens (creating if needed) the channel on the real filesystem, writing with
    /// io_uring where this process may use it ([`RealFs::auto`]). To choose the I/O
    /// backend, pass a [`RealFs`] to [`FileChannel::open_with_storage`].
    pub fn open(name: &str, config: FileChannelConfig) -> Result<Self, OpenError> {
        Self::open_with_storage(name, config, Arc::new(RealFs::auto()))
    }

    /// Opens the channel on the given storage.
    pub fn open_with_storage(
        name: &str,
        config: FileChannelConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, OpenError> {
        Self::open_with_progress(name, config, storage, Arc::new(RecoveryProgress::default()))
    }

    /// Opens the channel: locks every data directory, recovers from the newest valid
    /// checkpoint (or a full replay), and starts one writer per directory plus the
    /// background checkpoint thread. `progress` can be read from another thread while
    /// this runs.
    pub fn open_with_progress(
        name: &str,
        config: FileChannelConfig,
        storage: Arc<dyn Storage>,
        progress: Arc<RecoveryProgress>,
    ) -> Result<Self, OpenError> {
        config.validate().map_err(|source| OpenError::Config {
            channel: name.to_string(),
            source,
        })?;
        let checkpoint_dirs = checkpoint_dirs(&config);
        let locks = lock_dirs(name, &config, storage.as_ref(), &checkpoint_dirs)?;
        let checkpoint_files: Vec<PathBuf> = checkpoint_dirs
            .iter()
            .map(|dir| dir.join(CHECKPOINT_FILE_NAME))
            .collect();
        let (keys, sealer) = load_keys(name, &config)?;
        let recovered = recover(&RecoveryInput {
            channel: name,
            storage: storage.as_ref(),
            data_dirs: &config.data_dirs,
            checkpoint_files: checkpoint_files.clone(),
            tolerate_tail_damage: !config.fsync_per_transaction,
            progress: &progress,
            keys: keys.as_deref(),
        })?;
        let registry = register_segments(keys.clone(), recovered.segments);
        let space = Arc::new(SpaceGuard::new(
            config.effective_minimum_required_space_bytes(),
            &config.data_dirs,
            &checkpoint_dirs,
        ));
        space.refresh(storage.as_ref());
        let health = Arc::new(Health::default());
        let dir_watch = watch_dirs(name, storage.as_ref(), &config, &checkpoint_dirs, &health)?;
        let next_segment_id = Arc::new(AtomicU32::new(recovered.next_segment_id));
        let dirs = spawn_writers(name, &config.data_dirs, |dir_index, dir| WriterSettings {
            channel: name.to_string(),
            dir_index,
            dir: dir.to_path_buf(),
            space: Arc::clone(&space),
            storage: Arc::clone(&storage),
            registry: Arc::clone(&registry),
            next_segment_id: Arc::clone(&next_segment_id),
            max_file_size_bytes: config.max_file_size_bytes,
            fsync_per_transaction: config.fsync_per_transaction,
            fsync_interval: config.fsync_interval,
            health: Arc::clone(&health),
            dir_watch: Arc::clone(&dir_watch),
            file_modes: config.file_modes(),
            segment_key: keys.as_ref().map(|keys| Arc::clone(keys.active())),
        })?;
        let state = QueueState::recovered(
            recovered.queue,
            recovered.next_write_order_id,
            recovered.outlives,
        );
        info!(
            channel = name,
            events = state.queue.len(),
            data_dirs = config.data_dirs.len(),
            recovery = recovered.report.path.as_str(),
            "file channel open"
        );
        let replayed_records = recovered.report.records_replayed;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            storage,
            dirs,
            registry,
            queue: EventQueue::new(state),
            next_transaction_id: AtomicU64::new(recovered.next_transaction_id),
            open_transactions: AtomicU64::new(0),
            next_write_order_id: AtomicU64::new(recovered.next_write_order_id),
            next_segment_id,
            stripe_cursor: AtomicUsize::new(0),
            max_event_bytes: max_event_bytes(config.max_file_size_bytes),
            health,
            dir_watch,
            space,
            counters: ChannelCounters::started_now(),
            closed: AtomicBool::new(false),
            locks: Mutex::new(locks),
            recovery: recovered.report,
            checkpoint_files,
            checkpoints: Mutex::new(CheckpointState {
                sequence: recovered.checkpoint_sequence,
                slot_needs: recovered.slot_needs,
            }),
            maintenance: MaintenanceHandle::default(),
            config,
            sealer,
        });
        maintenance::start(&shared, replayed_records > 0).map_err(|source| {
            io_error(
                name,
                &shared.config.checkpoint_dir,
                "start checkpoint thread",
                source,
            )
        })?;
        Ok(FileChannel { shared })
    }
}

fn io_error(
    channel: &str,
    path: &Path,
    operation: &'static str,
    source: std::io::Error,
) -> OpenError {
    OpenError::Io {
        channel: channel.to_string(),
        path: path.to_path_buf(),
        operation,
        source,
    }
}

/// The checkpoint directory, then the backup one when `useDualCheckpoints`.
fn checkpoint_dirs(config: &FileChannelConfig) -> Vec<PathBuf> {
    let mut checkpoint_dirs = vec![config.checkpoint_dir.clone()];
    if config.use_dual_checkpoints {
        checkpoint_dirs.extend(config.backup_checkpoint_dir.clone());
    }
    checkpoint_dirs
}

/// Creates every data and checkpoint directory and takes its lock file, so that a second
/// process cannot open the channel.
fn lock_dirs(
    channel: &str,
    config: &FileChannelConfig,
    storage: &dyn Storage,
    checkpoint_dirs: &[PathBuf],
) -> Result<Vec<Box<dyn DirLock>>, OpenError> {
    let file_modes = config.file_modes();
    let mut locks = Vec::new();
    for dir in config.data_dirs.iter().chain(checkpoint_dirs) {
        storage
            .create_dir_all(dir, file_modes)
            .map_err(|source| io_error(channel, dir, "create directory", source))?;
        let lock_file = dir.join(LOCK_FILE_NAME);
        match storage.lock_file(&lock_file, file_modes) {
            Ok(lock) => locks.push(lock),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(OpenError::Locked {
                    channel: channel.to_string(),
                    dir: dir.clone(),
                    lock_file,
                })
            }
            Err(source) => return Err(io_error(channel, &lock_file, "lock", source)),
        }
    }
    Ok(locks)
}

/// The configured keys, and what this open seals put records with (the active key and
/// fresh nonces); both `None` when the channel does not encrypt.
fn load_keys(
    channel: &str,
    config: &FileChannelConfig,
) -> Result<(Option<Arc<KeyRing>>, Option<Sealer>), OpenError> {
    let Some(encryption) = &config.encryption else {
        return Ok((None, None));
    };
    let keys = Arc::new(KeyRing::load(encryption).map_err(|source| OpenError::Key {
        channel: channel.to_string(),
        source,
    })?);
    let sealer = Sealer::from_os_random(Arc::clone(keys.active())).map_err(|source| {
        io_error(
            channel,
            Path::new(OS_RANDOM_SOURCE),
            "read (for this open's nonce prefix)",
            source,
        )
    })?;
    Ok((Some(keys), Some(sealer)))
}

/// Registers the segments recovery found; none of them is ever appended to again.
fn register_segments(
    keys: Option<Arc<KeyRing>>,
    segments: Vec<RecoveredSegment>,
) -> Arc<SegmentRegistry> {
    let registry = Arc::new(SegmentRegistry::with_keys(keys));
    let opened_at_ms = unix_time_ms();
    for segment in segments {
        let meta = SegmentMeta::default();
        meta.max_write_order_id
            .store(segment.max_write_order_id, Ordering::Relaxed);
        // A recovered segment is never appended to again.
        meta.close(segment.size_bytes, opened_at_ms);
        registry.insert(
            segment.segment_id,
            SegmentHandle {
                path: segment.path,
                file: segment.file,
                meta: Arc::new(meta),
                header: Arc::new(segment.header),
            },
        );
    }
    registry
}

/// Holds every directory of the channel open, to notice one removed or replaced.
fn watch_dirs(
    channel: &str,
    storage: &dyn Storage,
    config: &FileChannelConfig,
    checkpoint_dirs: &[PathBuf],
    health: &Arc<Health>,
) -> Result<Arc<DirWatch>, OpenError> {
    let checkpoint_roles = [DirRole::Checkpoint, DirRole::BackupCheckpoint];
    let dirs = config
        .data_dirs
        .iter()
        .map(|dir| (DirRole::Data, dir.clone()))
        .chain(
            checkpoint_roles
                .into_iter()
                .zip(checkpoint_dirs.iter().cloned()),
        );
    Ok(Arc::new(DirWatch::open(
        channel,
        storage,
        dirs,
        Arc::clone(health),
    )?))
}

/// Starts one writer thread per data directory, with the settings `settings_for` gives
/// the directory (by index).
fn spawn_writers(
    channel: &str,
    data_dirs: &[PathBuf],
    settings_for: impl Fn(usize, &Path) -> WriterSettings,
) -> Result<Vec<DataDir>, OpenError> {
    let mut dirs = Vec::with_capacity(data_dirs.len());
    for (dir_index, dir) in data_dirs.iter().enumerate() {
        let writer = DirWriterHandle::spawn(settings_for(dir_index, dir))
            .map_err(|source| io_error(channel, dir, "start writer thread", source))?;
        dirs.push(DataDir {
            path: dir.clone(),
            writer,
        });
    }
    Ok(dirs)
}

/// The largest event one put record can hold in a segment of `max_file_size_bytes`.
fn max_event_bytes(max_file_size_bytes: u64) -> u64 {
    let max_record_bytes =
        (max_file_size_bytes - SEGMENT_HEADER_BYTES as u64).min(u64::from(MAX_RECORD_BYTES));
    max_record_bytes - (RECORD_HEADER_BYTES + MAX_PUT_ENVELOPE_BYTES) as u64
}
