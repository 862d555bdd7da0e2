//! # The file channel
//!
//! A durable channel: a write-ahead log striped over one or more data directories, an
//! in-memory queue of pointers into it, and checkpoints of that queue.
//!
//! ## Constraints
//! - A commit is acknowledged only once its records are on stable storage (one
//!   `fdatasync` per writer round; see [`writer`]), unless `fsyncPerTransaction = false`.
//! - Takes see events in put-commit order across all directories.
//! - A rolled-back take returns its events to their places at the head of the queue:
//!   put-commit order holds whatever order open transactions roll back in (each queued
//!   and in-flight event carries an order key; see `ordered_queue`).
//! - Nothing is written before commit: a transaction's puts and takes are buffered in
//!   memory (at most `transactionCapacity` of each) and written as one contiguous group —
//!   put records, a take record, the commit record — so a rolled-back transaction leaves
//!   no trace on disk and recovery needs no rollback records.
//! - Capacity is reserved at put time and waits up to `keep-alive`, as in Flume.
//! - A checkpoint never stops puts and takes for longer than it takes to copy the queue
//!   of pointers; it is written, synced and renamed outside the channel's lock.
//!
//! ## Ordering across directories
//! Each commit draws a contiguous range of write-order ids before it is written. Writers
//! of different directories finish in any order, so finished commits pass through a
//! sequencer that applies them to the queue strictly in write-order-id order — the same
//! order recovery uses — and a commit returns once it is applied. A slow directory delays
//! the visibility of later commits, never their durability.
//!
//! ## Segment accounting
//! For every segment the channel counts the queued and in-flight events that point into
//! it, and records which other segments it must outlive: a segment holding a take record
//! must outlive the segments holding the taken events' puts, and a segment holding a
//! commit record must outlive the segments holding that transaction's puts. Cleanup (see
//! [`maintenance`]) deletes a segment only when nothing points into it, a checkpoint
//! covers it, and every segment it must outlive is gone — so even a full replay of what
//! remains never resurrects a taken event or loses a committed one.
//!
//! ## Compression and encryption
//! Committers compress (LZ4, kept only when smaller) and then seal (AES-256-GCM under
//! this open's subkey of the active key) each put record on their own threads, so the
//! dir writer's work does not grow. Each new segment's header names the active key;
//! takes open a record with the key its segment names. Take and commit records hold only
//! pointers and counts and stay in clear (see `docs/design.md`, "Encryption at rest").

pub(crate) mod checkpoint;
pub(crate) mod chunk_reader;
mod dir_watch;
mod health;
mod maintenance;
pub(crate) mod recovery;
pub(crate) mod recovery_rule;
pub(crate) mod segments;
mod space;
mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tracing::info;

pub use maintenance::CheckpointReport;
pub use recovery::{RecoveryPath, RecoveryProgress, RecoveryReport, TruncatedTail};
pub use writer::DirStats;

use self::checkpoint::CHECKPOINT_FILE_NAME;
use self::dir_watch::{DirRole, DirWatch};
use self::health::Health;
use self::recovery::{recover, RecoveryInput};
use self::segments::{SegmentHandle, SegmentMeta, SegmentRegistry, LOCK_FILE_NAME};
use self::space::SpaceGuard;
use self::writer::{CommitOutcome, DirWriterHandle, RecordLocation, WriteJob, WriterSettings};
use crate::channel::{
    Channel, ChannelCounters, ChannelHealth, ChannelStats, CommitAttempt, CommitFuture,
    PendingCommit, PutAttempt, TakeStop, Transaction,
};
use crate::config::FileChannelConfig;
use crate::crypto::{KeyRing, Sealer};
use crate::error::{ChannelError, OpenError};
use crate::event::Event;
use crate::ordered_queue::OrderedQueue;
use crate::record::{
    encode_put_record, encode_record, encode_take_payload, encoded_event_bytes, CommitSummary,
    EventPointer, PutEncoding, RecordKind, MAX_PUT_ENVELOPE_BYTES, MAX_RECORD_BYTES,
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::storage::{DirLock, Storage};

/// A put record is closed once it holds this many bytes of events, so that a take reads
/// and decodes a bounded amount to reach one event.
const PUT_RECORD_TARGET_BYTES: usize = 1024 * 1024;
/// Where a channel open's nonce prefix comes from, as error messages name it.
const OS_RANDOM_SOURCE: &str = "the operating system's random generator (getrandom)";
/// How long `close` waits for commits already handed to the writers to be applied.
const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The most event bytes a commit may put and still be started by
/// [`Transaction::try_commit_pipelined`]: encoding (copy, compression, sealing and CRC)
/// runs on the committing thread, and beyond this it is long CPU work (about 0.1 ms per
/// MiB plain, several times that compressed or sealed) that an async caller should run
/// off its runtime.
const TRY_COMMIT_MAX_PUT_BYTES: u64 = 1024 * 1024;

/// Decodes checkpoint bytes (for the fuzz targets); the error text says what is wrong.
#[doc(hidden)]
pub fn decode_checkpoint_for_fuzzing(bytes: &[u8]) -> Result<(), String> {
    checkpoint::Checkpoint::decode(bytes).map(|_| ())
}

/// A running file channel's in-memory state, from [`FileChannel::live_figures`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveFigures {
    /// Events queued, ready to be taken.
    pub queued_events: u64,
    /// The next event a take gets: the oldest queued event.
    pub queue_head: Option<EventPointer>,
    /// The newest queued event.
    pub queue_tail: Option<EventPointer>,
    /// Transactions begun and not yet committed or rolled back.
    pub open_transactions: u64,
    /// Events taken by open transactions: still in the channel's size, back at the head
    /// of the queue if their transaction rolls back.
    pub in_flight_taken_events: u64,
    /// Events put by open transactions (capacity reserved, not yet visible).
    pub in_flight_put_events: u64,
    /// Queued and in-flight events pointing into each segment, by segment id (segments
    /// with none are absent).
    pub live_events_by_segment: BTreeMap<u32, u64>,
}

/// A durable, file-backed channel.
pub struct FileChannel {
    shared: Arc<Shared>,
}

/// A data directory and its writer.
struct DataDir {
    path: PathBuf,
    writer: DirWriterHandle,
}

struct Shared {
    name: String,
    config: FileChannelConfig,
    storage: Arc<dyn Storage>,
    dirs: Vec<DataDir>,
    registry: Arc<SegmentRegistry>,
    state: Mutex<QueueState>,
    /// Signalled when events join the queue or return to it.
    events_available: Condvar,
    /// Wakes async takers whenever `events_available` wakes blocked ones.
    arrivals: crate::channel::Arrivals,
    /// Signalled when capacity is released.
    space_freed: Condvar,
    /// Signalled when the sequencer applies commits.
    commits_applied: Condvar,
    next_transaction_id: AtomicU64,
    /// Transactions begun and not yet committed, rolled back or dropped.
    open_transactions: AtomicU64,
    next_write_order_id: AtomicU64,
    next_segment_id: Arc<AtomicU32>,
    stripe_cursor: AtomicUsize,
    max_event_bytes: u64,
    health: Arc<Health>,
    /// Every directory held open, to notice one removed or replaced under the channel.
    dir_watch: Arc<DirWatch>,
    space: Arc<SpaceGuard>,
    counters: ChannelCounters,
    closed: AtomicBool,
    locks: Mutex<Vec<Box<dyn DirLock>>>,
    recovery: RecoveryReport,
    /// Checkpoint files: primary, then backup when `useDualCheckpoints`.
    checkpoint_files: Vec<PathBuf>,
    checkpoints: Mutex<maintenance::CheckpointState>,
    maintenance: maintenance::MaintenanceHandle,
    /// What this open seals put records with (the active key and this open's nonces);
    /// present exactly when the channel encrypts (`encryption.*` is set).
    sealer: Option<Sealer>,
}

struct QueueState {
    /// Queued events in put-commit order, with their order keys.
    queue: OrderedQueue<EventPointer>,
    /// Events taken by open transactions, by order key: still counted in the channel's
    /// size, and merged back into their places in a checkpoint's queue.
    in_flight: BTreeMap<u64, EventPointer>,
    /// Capacity reserved by puts of open transactions.
    reserved_puts: u64,
    /// The write-order id the sequencer applies next.
    next_apply_write_order_id: u64,
    /// Finished commits waiting for earlier ones, by their first write-order id.
    finished: BTreeMap<u64, FinishedCommit>,
    /// Queued and in-flight events per segment.
    live_events: HashMap<u32, u64>,
    /// Segments each segment must outlive (see the module doc).
    outlives: HashMap<u32, HashSet<u32>>,
}

impl QueueState {
    fn occupied(&self) -> u64 {
        self.queue.len() as u64 + self.in_flight.len() as u64 + self.reserved_puts
    }

    fn size(&self) -> u64 {
        self.queue.len() as u64 + self.in_flight.len() as u64
    }

    fn add_live(&mut self, pointers: &[EventPointer]) {
        count_live_events(&mut self.live_events, pointers);
    }

    fn remove_live(&mut self, pointers: impl Iterator<Item = EventPointer>) {
        for pointer in pointers {
            if let Some(count) = self.live_events.get_mut(&pointer.segment_id) {
                *count -= 1;
                if *count == 0 {
                    self.live_events.remove(&pointer.segment_id);
                }
            }
        }
    }

    fn add_outlives(&mut self, segment_id: u32, others: impl Iterator<Item = u32>) {
        let set = self.outlives.entry(segment_id).or_default();
        set.extend(others.filter(|&other| other != segment_id));
    }
}

/// Counts the events each segment holds among `pointers` into `live_events`.
fn count_live_events<'a>(
    live_events: &mut HashMap<u32, u64>,
    pointers: impl IntoIterator<Item = &'a EventPointer>,
) {
    for pointer in pointers {
        *live_events.entry(pointer.segment_id).or_default() += 1;
    }
}

/// A written (or failed) commit waiting for its turn in write order.
struct FinishedCommit {
    last_write_order_id: u64,
    effect: CommitEffect,
}

enum CommitEffect {
    /// Durable: the puts join the queue, the takes are final.
    Applied {
        put_pointers: Vec<EventPointer>,
        takes: Vec<(u64, EventPointer)>,
        /// `(segment, segments it must outlive)` learned from where the records landed.
        dependencies: Vec<(u32, Vec<u32>)>,
    },
    /// Failed: the puts are dropped, the takes return to their places at the head.
    Abandoned {
        put_count: u64,
        takes: Vec<(u64, EventPointer)>,
    },
}

impl FileChannel {
    /// Opens (creating if needed) the channel on the real filesystem.
    pub fn open(name: &str, config: FileChannelConfig) -> Result<Self, OpenError> {
        Self::open_with_storage(name, config, Arc::new(crate::storage::RealFs))
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
        let io_error = |path: &Path, operation, source| OpenError::Io {
            channel: name.to_string(),
            path: path.to_path_buf(),
            operation,
            source,
        };
        let mut checkpoint_dirs = vec![config.checkpoint_dir.clone()];
        if config.use_dual_checkpoints {
            checkpoint_dirs.extend(config.backup_checkpoint_dir.clone());
        }
        let file_modes = config.file_modes();
        let mut locks = Vec::new();
        for dir in config.data_dirs.iter().chain(&checkpoint_dirs) {
            storage
                .create_dir_all(dir, file_modes)
                .map_err(|source| io_error(dir, "create directory", source))?;
            let lock_file = dir.join(LOCK_FILE_NAME);
            match storage.lock_file(&lock_file, file_modes) {
                Ok(lock) => locks.push(lock),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(OpenError::Locked {
                        channel: name.to_string(),
                        dir: dir.clone(),
                        lock_file,
                    })
                }
                Err(source) => return Err(io_error(&lock_file, "lock", source)),
            }
        }
        let checkpoint_files: Vec<PathBuf> = checkpoint_dirs
            .iter()
            .map(|dir| dir.join(CHECKPOINT_FILE_NAME))
            .collect();
        let keys = match &config.encryption {
            Some(encryption) => Some(Arc::new(KeyRing::load(encryption).map_err(|source| {
                OpenError::Key {
                    channel: name.to_string(),
                    source,
                }
            })?)),
            None => None,
        };
        let sealer = match &keys {
            Some(keys) => Some(Sealer::from_os_random(Arc::clone(keys.active())).map_err(
                |source| {
                    io_error(
                        Path::new(OS_RANDOM_SOURCE),
                        "read (for this open's nonce prefix)",
                        source,
                    )
                },
            )?),
            None => None,
        };
        let recovered = recover(&RecoveryInput {
            channel: name,
            storage: storage.as_ref(),
            data_dirs: &config.data_dirs,
            checkpoint_files: checkpoint_files.clone(),
            tolerate_tail_damage: !config.fsync_per_transaction,
            progress: &progress,
            keys: keys.as_deref(),
        })?;
        let registry = Arc::new(SegmentRegistry::with_keys(keys.clone()));
        let opened_at_ms = crate::channel::unix_time_ms();
        for segment in recovered.segments {
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
        let space = Arc::new(SpaceGuard::new(
            config.effective_minimum_required_space_bytes(),
            &config.data_dirs,
            &checkpoint_dirs,
        ));
        space.refresh(storage.as_ref());
        let health = Arc::new(Health::default());
        let checkpoint_roles = [DirRole::Checkpoint, DirRole::BackupCheckpoint];
        let dir_watch = Arc::new(DirWatch::open(
            name,
            storage.as_ref(),
            config
                .data_dirs
                .iter()
                .map(|dir| (DirRole::Data, dir.clone()))
                .chain(
                    checkpoint_roles
                        .into_iter()
                        .zip(checkpoint_dirs.iter().cloned()),
                ),
            Arc::clone(&health),
        )?);
        let next_segment_id = Arc::new(AtomicU32::new(recovered.next_segment_id));
        let mut dirs = Vec::new();
        for (dir_index, dir) in config.data_dirs.iter().enumerate() {
            let writer = DirWriterHandle::spawn(WriterSettings {
                channel: name.to_string(),
                dir_index,
                dir: dir.clone(),
                space: Arc::clone(&space),
                storage: Arc::clone(&storage),
                registry: Arc::clone(&registry),
                next_segment_id: Arc::clone(&next_segment_id),
                max_file_size_bytes: config.max_file_size_bytes,
                fsync_per_transaction: config.fsync_per_transaction,
                fsync_interval: config.fsync_interval,
                health: Arc::clone(&health),
                dir_watch: Arc::clone(&dir_watch),
                file_modes,
                segment_key: keys.as_ref().map(|keys| Arc::clone(keys.active())),
            })
            .map_err(|source| io_error(dir, "start writer thread", source))?;
            dirs.push(DataDir {
                path: dir.clone(),
                writer,
            });
        }
        let max_record_bytes = (config.max_file_size_bytes - SEGMENT_HEADER_BYTES as u64)
            .min(u64::from(MAX_RECORD_BYTES));
        let max_event_bytes =
            max_record_bytes - (RECORD_HEADER_BYTES + MAX_PUT_ENVELOPE_BYTES) as u64;
        let mut live_events = HashMap::new();
        count_live_events(&mut live_events, &recovered.queue);
        let state = QueueState {
            // Reuses the recovered vector's allocation: no second copy of the queue.
            queue: recovered.queue.into(),
            in_flight: BTreeMap::new(),
            reserved_puts: 0,
            next_apply_write_order_id: recovered.next_write_order_id,
            finished: BTreeMap::new(),
            live_events,
            outlives: recovered.outlives,
        };
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
            state: Mutex::new(state),
            events_available: Condvar::new(),
            arrivals: crate::channel::Arrivals::default(),
            space_freed: Condvar::new(),
            commits_applied: Condvar::new(),
            next_transaction_id: AtomicU64::new(recovered.next_transaction_id),
            open_transactions: AtomicU64::new(0),
            next_write_order_id: AtomicU64::new(recovered.next_write_order_id),
            next_segment_id,
            stripe_cursor: AtomicUsize::new(0),
            max_event_bytes,
            health,
            dir_watch,
            space,
            counters: ChannelCounters::started_now(),
            closed: AtomicBool::new(false),
            locks: Mutex::new(locks),
            recovery: recovered.report,
            checkpoint_files,
            checkpoints: Mutex::new(maintenance::CheckpointState {
                sequence: recovered.checkpoint_sequence,
                slot_needs: recovered.slot_needs,
            }),
            maintenance: maintenance::MaintenanceHandle::default(),
            config,
            sealer,
        });
        maintenance::start(&shared, replayed_records > 0).map_err(|source| {
            io_error(
                &shared.config.checkpoint_dir,
                "start checkpoint thread",
                source,
            )
        })?;
        Ok(FileChannel { shared })
    }

    /// Starts a transaction with the concrete type (the [`Channel`] trait boxes it).
    ///
    /// Refused once the channel is closed. A channel that has failed still begins
    /// transactions, as Flume's does, so that each put, take and commit in them is
    /// refused and counted where Flume counts it (a refused put is an
    /// `EventPutErrorCount`).
    pub fn transaction(&self) -> Result<FileTransaction, ChannelError> {
        self.shared.check_open()?;
        self.shared
            .open_transactions
            .fetch_add(1, Ordering::Relaxed);
        Ok(FileTransaction {
            shared: Arc::clone(&self.shared),
            puts: Vec::new(),
            put_bytes: 0,
            takes: Vec::new(),
            finished: false,
        })
    }

    /// Writes a checkpoint now and deletes the segments it makes unnecessary.
    pub fn checkpoint_now(&self) -> Result<CheckpointReport, ChannelError> {
        self.shared.checkpoint()
    }

    /// The settings the channel runs with.
    pub fn config(&self) -> &FileChannelConfig {
        &self.shared.config
    }

    /// Events queued (not counting those taken by open transactions).
    pub fn queued_events(&self) -> u64 {
        self.shared.state.lock().queue.len() as u64
    }

    /// What the channel holds in memory right now: the queue, open transactions and what
    /// they hold, live events per segment. One snapshot under the queue's lock.
    pub fn live_figures(&self) -> LiveFigures {
        let state = self.shared.state.lock();
        LiveFigures {
            queued_events: state.queue.len() as u64,
            queue_head: state.queue.front().copied(),
            queue_tail: state.queue.back().copied(),
            open_transactions: self.shared.open_transactions.load(Ordering::Relaxed),
            in_flight_taken_events: state.in_flight.len() as u64,
            in_flight_put_events: state.reserved_puts,
            live_events_by_segment: state
                .live_events
                .iter()
                .map(|(&segment_id, &events)| (segment_id, events))
                .collect(),
        }
    }

    /// Segment files currently known, by id.
    pub fn segment_paths(&self) -> Vec<(u32, PathBuf)> {
        self.shared.registry.segment_paths()
    }

    /// The storage the channel's files live on (for read-only scans by `inspect`).
    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }

    /// Re-reads free space now instead of waiting for the background refresh.
    pub fn refresh_free_space(&self) {
        self.shared.space.refresh(self.shared.storage.as_ref());
    }
}

impl Drop for FileChannel {
    fn drop(&mut self) {
        let _ = self.shared.close();
    }
}

impl Channel for FileChannel {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn arrivals(&self) -> Option<&crate::channel::Arrivals> {
        Some(&self.shared.arrivals)
    }

    fn begin(&self) -> Result<Box<dyn Transaction>, ChannelError> {
        Ok(Box::new(self.transaction()?))
    }

    fn stats(&self) -> ChannelStats {
        let size = self.shared.state.lock().size();
        self.shared
            .counters
            .snapshot(size, self.shared.config.capacity)
    }

    fn health(&self) -> ChannelHealth {
        if let Some(reason) = self.shared.health.failure() {
            ChannelHealth::Failed { reason }
        } else if self.shared.closed.load(Ordering::Acquire) {
            ChannelHealth::Closed
        } else if let Err(error) = self.shared.space.check_put(&self.shared.name, 0) {
            ChannelHealth::ReadOnly {
                reason: error.to_string(),
            }
        } else {
            ChannelHealth::Open
        }
    }

    fn close(&self) -> Result<(), ChannelError> {
        self.shared.close()
    }

    fn checkpoint(&self) -> Result<(), ChannelError> {
        self.shared.checkpoint().map(|_| ())
    }

    fn recovery_report(&self) -> Option<RecoveryReport> {
        Some(self.shared.recovery.clone())
    }

    fn dir_stats(&self) -> Vec<(PathBuf, Arc<DirStats>)> {
        self.shared
            .dirs
            .iter()
            .map(|dir| (dir.path.clone(), Arc::clone(&dir.writer.stats)))
            .collect()
    }

    fn as_file_channel(&self) -> Option<&FileChannel> {
        Some(self)
    }
}

impl Shared {
    fn check_usable(&self) -> Result<(), ChannelError> {
        if let Some(reason) = self.health.failure() {
            return Err(ChannelError::Failed {
                channel: self.name.clone(),
                reason,
            });
        }
        self.check_open()
    }

    fn check_open(&self) -> Result<(), ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed {
                channel: self.name.clone(),
            });
        }
        Ok(())
    }

    /// [`Self::check_usable`] for a put or a commit of puts: a refusal because the channel
    /// failed (its storage did) counts as a put error, as Flume counts a put that meets an
    /// I/O error.
    fn check_usable_for_puts(&self) -> Result<(), ChannelError> {
        let checked = self.check_usable();
        if let Err(ChannelError::Failed { .. }) = &checked {
            ChannelCounters::add(&self.counters.put_error, 1);
        }
        checked
    }

    /// Stops the channel: no new transactions, background work stopped, writers drained
    /// and their segments closed, commits in flight applied, then (with
    /// `checkpointOnClose`) a final checkpoint, so that the next start replays nothing.
    fn close(&self) -> Result<(), ChannelError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.maintenance.stop();
        for dir in &self.dirs {
            dir.writer.shutdown();
        }
        self.wait_for_allocated_commits();
        let mut result = Ok(());
        if self.config.checkpoint_on_close && self.health.failure().is_none() {
            if let Err(error) = self.checkpoint() {
                result = Err(error);
            }
        }
        self.counters.mark_stopped();
        self.locks.lock().clear();
        // Wake anyone waiting so they notice the channel closed.
        self.events_available.notify_all();
        self.arrivals.notify();
        self.space_freed.notify_all();
        self.commits_applied.notify_all();
        info!(channel = %self.name, "file channel closed");
        if let Some(reason) = self.health.failure() {
            return Err(ChannelError::Failed {
                channel: self.name.clone(),
                reason,
            });
        }
        result
    }

    /// Waits until every write-order range handed out has been applied or abandoned.
    fn wait_for_allocated_commits(&self) {
        let deadline = Instant::now() + CLOSE_DRAIN_TIMEOUT;
        let mut state = self.state.lock();
        while state.next_apply_write_order_id < self.next_write_order_id.load(Ordering::Acquire) {
            if self
                .commits_applied
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                break;
            }
        }
    }

    /// The directory for a transaction writing `bytes`: among the directories with room
    /// above the space guard (any, when the transaction only takes), the one with the
    /// fewest bytes waiting to be written; ties go round-robin.
    fn pick_dir(&self, bytes: u64, needs_space: bool) -> Result<&DataDir, ChannelError> {
        let start = self.stripe_cursor.fetch_add(1, Ordering::Relaxed);
        let count = self.dirs.len();
        (0..count)
            .map(|step| (start + step) % count)
            .filter(|&index| !needs_space || self.space.data_dir_has_room(index, bytes))
            .min_by_key(|&index| {
                self.dirs[index]
                    .writer
                    .pending_bytes
                    .load(Ordering::Relaxed)
            })
            .map(|index| &self.dirs[index])
            .ok_or_else(|| {
                self.space
                    .check_put(&self.name, bytes)
                    .err()
                    .unwrap_or_else(|| ChannelError::Failed {
                        channel: self.name.clone(),
                        reason: "no data directory has room".into(),
                    })
            })
    }

    /// Reserves capacity for one put if the channel has room now.
    fn try_reserve_put(&self) -> bool {
        let mut state = self.state.lock();
        if state.occupied() >= self.config.capacity {
            return false;
        }
        state.reserved_puts += 1;
        true
    }

    /// Reserves capacity for one put, waiting up to `keep-alive`.
    fn reserve_put(&self) -> Result<(), ChannelError> {
        let started = Instant::now();
        let deadline = started + self.config.keep_alive;
        let mut state = self.state.lock();
        while state.occupied() >= self.config.capacity {
            self.check_usable()?;
            if self
                .space_freed
                .wait_until(&mut state, deadline)
                .timed_out()
                && state.occupied() >= self.config.capacity
            {
                return Err(ChannelError::ChannelFull {
                    channel: self.name.clone(),
                    capacity: self.config.capacity,
                    size: state.occupied(),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
        state.reserved_puts += 1;
        Ok(())
    }

    /// Hands a finished commit to the sequencer, which applies commits in write order.
    /// With `wait_until_applied`, returns only once this one is applied (visible to
    /// takers); without, a commit whose predecessors are still on their way is applied
    /// by whichever of them finishes last.
    fn finish_commit(
        &self,
        first_write_order_id: u64,
        commit: FinishedCommit,
        wait_until_applied: bool,
    ) {
        let last = commit.last_write_order_id;
        let mut state = self.state.lock();
        state.finished.insert(first_write_order_id, commit);
        let mut applied_any = false;
        loop {
            let next = state.next_apply_write_order_id;
            let Some(commit) = state.finished.remove(&next) else {
                break;
            };
            state.next_apply_write_order_id = commit.last_write_order_id + 1;
            self.apply(&mut state, commit.effect);
            applied_any = true;
        }
        if applied_any {
            self.commits_applied.notify_all();
        }
        while wait_until_applied && state.next_apply_write_order_id <= last {
            self.commits_applied.wait(&mut state);
        }
    }

    fn apply(&self, state: &mut QueueState, effect: CommitEffect) {
        match effect {
            CommitEffect::Applied {
                put_pointers,
                takes,
                dependencies,
            } => {
                let put_count = put_pointers.len() as u64;
                state.reserved_puts -= put_count;
                state.add_live(&put_pointers);
                state.queue.extend(put_pointers);
                for (key, _) in &takes {
                    state.in_flight.remove(key);
                }
                state.remove_live(takes.iter().map(|(_, pointer)| *pointer));
                for (segment_id, others) in dependencies {
                    state.add_outlives(segment_id, others.into_iter());
                }
                let take_count = takes.len() as u64;
                ChannelCounters::add(&self.counters.put_success, put_count);
                ChannelCounters::add(&self.counters.take_success, take_count);
                if put_count > 0 {
                    self.events_available.notify_all();
                    self.arrivals.notify();
                }
                if take_count > 0 {
                    self.space_freed.notify_all();
                }
            }
            CommitEffect::Abandoned { put_count, takes } => {
                state.reserved_puts -= put_count;
                self.return_takes(state, &takes);
                if put_count > 0 {
                    self.space_freed.notify_all();
                }
            }
        }
    }

    /// Puts taken events back in their places at the head of the queue (by order key),
    /// whatever order transactions roll back in.
    fn return_takes(&self, state: &mut QueueState, takes: &[(u64, EventPointer)]) {
        for (key, _) in takes {
            state.in_flight.remove(key);
        }
        state.queue.return_taken(takes.to_vec());
        if !takes.is_empty() {
            self.events_available.notify_all();
            self.arrivals.notify();
        }
    }
}

/// A transaction on a [`FileChannel`]. Dropping it without commit rolls it back.
pub struct FileTransaction {
    shared: Arc<Shared>,
    puts: Vec<Event>,
    /// Encoded bytes of the events in `puts`.
    put_bytes: u64,
    /// Taken events with their order keys.
    takes: Vec<(u64, EventPointer)>,
    finished: bool,
}

impl FileTransaction {
    fn take_inner(&mut self, wait: Option<Duration>) -> Result<Option<Event>, ChannelError> {
        let shared = &self.shared;
        ChannelCounters::add(&shared.counters.take_attempt, 1);
        shared.check_usable()?;
        if self.takes.len() as u64 >= shared.config.transaction_capacity {
            return Err(ChannelError::TransactionFull {
                channel: shared.name.clone(),
                transaction_capacity: shared.config.transaction_capacity,
                operation: "take",
            });
        }
        let (key, pointer) = {
            let mut state = shared.state.lock();
            let deadline = wait.map(|wait| Instant::now() + wait);
            loop {
                if let Some((key, pointer)) = state.queue.pop_front() {
                    state.in_flight.insert(key, pointer);
                    break (key, pointer);
                }
                let Some(deadline) = deadline else {
                    return Ok(None);
                };
                if shared
                    .events_available
                    .wait_until(&mut state, deadline)
                    .timed_out()
                    && state.queue.is_empty()
                {
                    return Ok(None);
                }
                shared.check_usable()?;
            }
        };
        match shared.registry.read_event(pointer) {
            Ok(event) => {
                self.takes.push((key, pointer));
                Ok(Some(event))
            }
            Err(failure) => {
                {
                    let mut state = shared.state.lock();
                    shared.return_takes(&mut state, &[(key, pointer)]);
                }
                Err(self.fail_unreadable(failure))
            }
        }
    }

    /// A take could not read its event: counts the error and fails the channel, since
    /// serving later events past one that cannot be read would lose it silently (the
    /// operator runs `channelctl verify`). The pointer is already back at the head.
    fn fail_unreadable(&self, failure: segments::ReadFailure) -> ChannelError {
        let shared = &self.shared;
        ChannelCounters::add(&shared.counters.take_error, 1);
        let error = match failure {
            segments::ReadFailure::Io { path, source } => ChannelError::Io {
                channel: shared.name.clone(),
                file: path,
                operation: "read",
                source,
            },
            segments::ReadFailure::Corrupt {
                path,
                offset,
                detail,
            } => ChannelError::Corruption {
                channel: shared.name.clone(),
                file: path,
                offset,
                detail,
            },
        };
        shared.health.fail(error.to_string());
        error
    }

    /// Encodes the transaction's records: one put record per batch (compressed and
    /// sealed as the channel is configured), then a take record, then the commit
    /// record, with consecutive write-order ids. Runs on the committing thread.
    fn encode(
        &self,
        transaction_id: u64,
        first_write_order_id: u64,
        put_batches: &[std::ops::Range<usize>],
    ) -> Result<Vec<u8>, ChannelError> {
        let shared = &self.shared;
        let encoding = PutEncoding {
            compression: shared.config.compression,
            sealing: shared.sealer.as_ref(),
        };
        let mut buffer = Vec::new();
        let mut write_order_id = first_write_order_id;
        for batch in put_batches {
            encode_put_record(
                &mut buffer,
                transaction_id,
                write_order_id,
                &self.puts[batch.clone()],
                encoding,
            )
            .map_err(|exhausted| ChannelError::Failed {
                channel: shared.name.clone(),
                reason: exhausted.to_string(),
            })?;
            write_order_id += 1;
        }
        if !self.takes.is_empty() {
            let pointers: Vec<EventPointer> =
                self.takes.iter().map(|(_, pointer)| *pointer).collect();
            encode_record(
                &mut buffer,
                RecordKind::Take,
                transaction_id,
                write_order_id,
                |buffer| encode_take_payload(buffer, &pointers),
            );
            write_order_id += 1;
        }
        let summary = CommitSummary {
            put_records: put_batches.len() as u32,
            put_events: self.puts.len() as u32,
            take_events: self.takes.len() as u32,
            committed_unix_ms: crate::channel::unix_time_ms(),
        };
        encode_record(
            &mut buffer,
            RecordKind::Commit,
            transaction_id,
            write_order_id,
            |buffer| summary.encode(buffer),
        );
        Ok(buffer)
    }

    /// Splits the puts into batches of about [`PUT_RECORD_TARGET_BYTES`].
    fn put_batches(&self) -> Vec<std::ops::Range<usize>> {
        let mut batches = Vec::new();
        let mut start = 0;
        let mut batch_bytes = 0;
        for (index, event) in self.puts.iter().enumerate() {
            let event_bytes = encoded_event_bytes(event);
            let max_batch_bytes = self.shared.max_event_bytes as usize;
            if index > start
                && (batch_bytes + event_bytes > PUT_RECORD_TARGET_BYTES
                    || batch_bytes + event_bytes > max_batch_bytes)
            {
                batches.push(start..index);
                start = index;
                batch_bytes = 0;
            }
            batch_bytes += event_bytes;
        }
        if start < self.puts.len() {
            batches.push(start..self.puts.len());
        }
        batches
    }

    fn rollback_in_memory(&mut self) {
        self.finished = true;
        let shared = &self.shared;
        let mut state = shared.state.lock();
        shared.return_takes(&mut state, &self.takes);
        let released = self.puts.len() as u64;
        state.reserved_puts -= released;
        if released > 0 {
            shared.space_freed.notify_all();
        }
        self.takes.clear();
        self.puts.clear();
        self.put_bytes = 0;
    }

    /// Pointers to the committed events (one per event, in order), and the decoded
    /// batches handed to the take cache so fresh events are served from memory.
    fn cache_and_point(
        &self,
        put_batches: &[std::ops::Range<usize>],
        puts: Vec<Event>,
        locations: &[RecordLocation],
    ) -> Vec<EventPointer> {
        let mut pointers = Vec::with_capacity(puts.len());
        let mut events = puts.into_iter();
        for (batch, location) in put_batches.iter().zip(locations) {
            let batch_events: Vec<Event> = events.by_ref().take(batch.len()).collect();
            pointers.extend((0..batch.len() as u32).map(|event_index| EventPointer {
                segment_id: location.segment_id,
                record_offset: location.offset,
                event_index,
            }));
            self.shared.registry.cache_put_record(
                location.segment_id,
                location.offset,
                batch_events,
            );
        }
        pointers
    }
}

/// Which segments must outlive which, from where a transaction's records landed: the
/// take record's segment outlives the taken events' segments, and the commit record's
/// segment outlives the put records' segments.
fn record_dependencies(
    locations: &[RecordLocation],
    put_record_count: usize,
    takes: &[(u64, EventPointer)],
) -> Vec<(u32, Vec<u32>)> {
    let mut dependencies = Vec::new();
    let commit_segment = locations.last().expect("a commit record").segment_id;
    let put_segments: Vec<u32> = locations[..put_record_count]
        .iter()
        .map(|location| location.segment_id)
        .filter(|&segment| segment != commit_segment)
        .collect();
    if !put_segments.is_empty() {
        dependencies.push((commit_segment, put_segments));
    }
    if !takes.is_empty() {
        let take_segment = locations[put_record_count].segment_id;
        let mut taken_segments: Vec<u32> = takes
            .iter()
            .map(|(_, pointer)| pointer.segment_id)
            .collect();
        taken_segments.sort_unstable();
        taken_segments.dedup();
        dependencies.push((take_segment, taken_segments));
        if take_segment != commit_segment {
            dependencies.push((commit_segment, vec![take_segment]));
        }
    }
    dependencies
}

/// A file transaction's commit once its records are handed to the dir writer: its place
/// in the write order is fixed, its durability still to come. [`SubmittedCommit::finish`]
/// waits for the writer and applies the outcome; dropping it unfinished finishes it, so
/// the sequencer never waits for a commit that nobody completes.
pub struct SubmittedCommit {
    transaction: Box<FileTransaction>,
    put_batches: Vec<std::ops::Range<usize>>,
    first_write_order_id: u64,
    last_write_order_id: u64,
    /// The writer's answer to come, or the error that stopped the records before the
    /// writer.
    reply: WriterReply,
    finished: bool,
}

impl FileTransaction {
    /// Assigns the commit its write-order range and hands its records to a dir writer,
    /// without waiting for them to be durable.
    fn submit_commit(mut self: Box<Self>) -> Result<SubmittedCommit, ChannelError> {
        if self.puts.is_empty() && self.takes.is_empty() {
            self.finished = true;
            return Ok(SubmittedCommit {
                transaction: self,
                put_batches: Vec::new(),
                first_write_order_id: 0,
                last_write_order_id: 0,
                reply: WriterReply::Taken,
                finished: true,
            });
        }
        let usable = if self.puts.is_empty() {
            self.shared.check_usable()
        } else {
            self.shared.check_usable_for_puts()
        };
        if let Err(error) = usable {
            self.rollback_in_memory();
            return Err(error);
        }
        let shared = Arc::clone(&self.shared);
        let put_batches = self.put_batches();
        let put_bytes = self.put_bytes;
        let dir = match shared.pick_dir(put_bytes, !self.puts.is_empty()) {
            Ok(dir) => dir,
            Err(error) => {
                ChannelCounters::add(&shared.counters.put_error, 1);
                self.rollback_in_memory();
                return Err(error);
            }
        };
        let record_count = put_batches.len() + usize::from(!self.takes.is_empty()) + 1;
        let transaction_id = shared.next_transaction_id.fetch_add(1, Ordering::Relaxed);
        // From here on the write-order range must reach the sequencer, whatever happens,
        // or later commits would wait for it forever: SubmittedCommit finishes on drop.
        let first_write_order_id = shared
            .next_write_order_id
            .fetch_add(record_count as u64, Ordering::AcqRel);
        let last_write_order_id = first_write_order_id + record_count as u64 - 1;
        let (reply_sender, reply_receiver) = oneshot::channel();
        let reply = match self.encode(transaction_id, first_write_order_id, &put_batches) {
            Err(error) => WriterReply::Failed(error),
            Ok(records) => match dir.writer.submit(WriteJob {
                records,
                record_count,
                puts_events: !self.puts.is_empty(),
                reply: reply_sender,
            }) {
                Ok(()) => WriterReply::Waiting(reply_receiver),
                Err(_) => WriterReply::Failed(ChannelError::Closed {
                    channel: shared.name.clone(),
                }),
            },
        };
        self.finished = true;
        Ok(SubmittedCommit {
            transaction: self,
            put_batches,
            first_write_order_id,
            last_write_order_id,
            reply,
            finished: false,
        })
    }
}

impl SubmittedCommit {
    /// Waits (blocking) for the writer's answer and applies it.
    fn complete(&mut self, wait_until_applied: bool) -> Result<(), ChannelError> {
        if self.finished {
            return Ok(());
        }
        let outcome = self.reply.receive_blocking(&self.transaction.shared.name);
        self.apply(outcome, wait_until_applied)
    }

    /// Hands the writer's answer to the sequencer: the commit's effects, or its
    /// abandonment.
    fn apply(
        &mut self,
        outcome: CommitOutcome,
        wait_until_applied: bool,
    ) -> Result<(), ChannelError> {
        self.finished = true;
        let transaction = &mut self.transaction;
        let shared = Arc::clone(&transaction.shared);
        let puts = std::mem::take(&mut transaction.puts);
        let takes = std::mem::take(&mut transaction.takes);
        let first_write_order_id = self.first_write_order_id;
        let last_write_order_id = self.last_write_order_id;
        match outcome {
            Ok(locations) => {
                let dependencies = record_dependencies(&locations, self.put_batches.len(), &takes);
                let put_pointers = transaction.cache_and_point(&self.put_batches, puts, &locations);
                shared.finish_commit(
                    first_write_order_id,
                    FinishedCommit {
                        last_write_order_id,
                        effect: CommitEffect::Applied {
                            put_pointers,
                            takes,
                            dependencies,
                        },
                    },
                    wait_until_applied,
                );
                Ok(())
            }
            Err(error) => {
                if !puts.is_empty() {
                    ChannelCounters::add(&shared.counters.put_error, 1);
                }
                shared.finish_commit(
                    first_write_order_id,
                    FinishedCommit {
                        last_write_order_id,
                        effect: CommitEffect::Abandoned {
                            put_count: puts.len() as u64,
                            takes,
                        },
                    },
                    wait_until_applied,
                );
                Err(error)
            }
        }
    }
}

impl PendingCommit for SubmittedCommit {
    /// Durable (or failed) on return; visible to takers once every commit started
    /// before it has finished too, so pipelined commits never wait for each other here.
    fn finish(mut self: Box<Self>) -> Result<(), ChannelError> {
        self.complete(false)
    }

    fn finish_async(mut self: Box<Self>) -> CommitFuture {
        Box::pin(async move {
            if self.finished {
                return Ok(());
            }
            let outcome = self.reply.receive(&self.transaction.shared.name).await;
            self.apply(outcome, false)
        })
    }
}

/// The dir writer's answer to a submitted commit, as it travels.
enum WriterReply {
    /// Not received yet (blocking receivers use it as is).
    Waiting(oneshot::Receiver<CommitOutcome>),
    /// Not received yet, being awaited.
    Awaiting(oneshot::AsyncReceiver<CommitOutcome>),
    /// The records never reached the writer.
    Failed(ChannelError),
    /// Received already.
    Taken,
}

impl WriterReply {
    fn closed(channel: &str) -> ChannelError {
        ChannelError::Closed {
            channel: channel.to_string(),
        }
    }

    /// Waits for the answer on this thread.
    fn receive_blocking(&mut self, channel: &str) -> CommitOutcome {
        match std::mem::replace(self, WriterReply::Taken) {
            WriterReply::Waiting(receiver) => receiver
                .recv()
                .unwrap_or_else(|_| Err(Self::closed(channel))),
            WriterReply::Awaiting(receiver) => {
                block_on_reply(receiver).unwrap_or_else(|_| Err(Self::closed(channel)))
            }
            WriterReply::Failed(error) => Err(error),
            WriterReply::Taken => Err(Self::closed(channel)),
        }
    }

    /// Awaits the answer. If the future is dropped before it arrives, the receiver stays
    /// here, so dropping the commit still completes it.
    async fn receive(&mut self, channel: &str) -> CommitOutcome {
        if let WriterReply::Waiting(_) = self {
            let WriterReply::Waiting(receiver) = std::mem::replace(self, WriterReply::Taken) else {
                unreachable!("checked above");
            };
            *self = WriterReply::Awaiting(std::future::IntoFuture::into_future(receiver));
        }
        let received = match self {
            WriterReply::Awaiting(receiver) => Some(receiver.await),
            _ => None,
        };
        match received {
            Some(answer) => {
                *self = WriterReply::Taken;
                answer.unwrap_or_else(|_| Err(Self::closed(channel)))
            }
            None => self.receive_blocking(channel),
        }
    }
}

/// Waits on this thread for an answer that was being awaited when its future was
/// dropped.
fn block_on_reply(
    mut receiver: oneshot::AsyncReceiver<CommitOutcome>,
) -> Result<CommitOutcome, oneshot::RecvError> {
    struct ThreadWaker(std::thread::Thread);
    impl std::task::Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    loop {
        match std::future::Future::poll(std::pin::Pin::new(&mut receiver), &mut context) {
            std::task::Poll::Ready(answer) => return answer,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

impl Drop for SubmittedCommit {
    fn drop(&mut self) {
        let _ = self.complete(false);
    }
}

impl FileTransaction {
    /// The checks a put makes before it reserves room; returns the event's encoded size.
    fn check_put(&self, event: &Event) -> Result<u64, ChannelError> {
        let shared = &self.shared;
        ChannelCounters::add(&shared.counters.put_attempt, 1);
        shared.check_usable_for_puts()?;
        if self.puts.len() as u64 >= shared.config.transaction_capacity {
            return Err(ChannelError::TransactionFull {
                channel: shared.name.clone(),
                transaction_capacity: shared.config.transaction_capacity,
                operation: "put",
            });
        }
        let event_bytes = encoded_event_bytes(event) as u64;
        if event_bytes > shared.max_event_bytes {
            return Err(ChannelError::EventTooLarge {
                channel: shared.name.clone(),
                event_bytes,
                max_event_bytes: shared.max_event_bytes,
            });
        }
        shared.space.check_put(&shared.name, event_bytes)?;
        Ok(event_bytes)
    }
}

impl Transaction for FileTransaction {
    fn put(&mut self, event: Event) -> Result<(), ChannelError> {
        let event_bytes = self.check_put(&event)?;
        self.shared.reserve_put()?;
        self.put_bytes += event_bytes;
        self.puts.push(event);
        Ok(())
    }

    fn try_put(&mut self, event: Event) -> Result<PutAttempt, ChannelError> {
        let event_bytes = self.check_put(&event)?;
        if !self.shared.try_reserve_put() {
            return Ok(PutAttempt::WouldBlock(event));
        }
        self.put_bytes += event_bytes;
        self.puts.push(event);
        Ok(PutAttempt::Added)
    }

    /// Takes from the head while its events' put records
    /// are in the record cache, one state lock for the run; a record that is not is
    /// read outside the lock if the page cache holds it. Counts a take attempt per event
    /// taken, and one more when it stopped at an empty queue.
    fn try_take_many(
        &mut self,
        max_events: usize,
        accept: &mut dyn FnMut(&Event) -> bool,
        taken: &mut Vec<Event>,
    ) -> Result<TakeStop, ChannelError> {
        let shared = Arc::clone(&self.shared);
        if let Err(error) = shared.check_usable() {
            ChannelCounters::add(&shared.counters.take_attempt, 1);
            return Err(error);
        }
        let limit = shared.counters.take_room(
            &shared.name,
            shared.config.transaction_capacity,
            self.takes.len(),
            max_events,
        )?;
        let first_new = taken.len();
        // The put record of the previous event taken (or of the head, just read), with
        // its place: used as long as the head points into it, even if the cache has
        // evicted it meanwhile.
        let mut record: Option<(segments::RecordKey, segments::DecodedRecord)> = None;
        let outcome = loop {
            let mut state = shared.state.lock();
            let mut refused = false;
            let uncached_head = loop {
                if taken.len() - first_new == limit {
                    break None;
                }
                let Some(&pointer) = state.queue.front() else {
                    break None;
                };
                let place = (pointer.segment_id, pointer.record_offset);
                let events = match record.take() {
                    Some((cached_place, events)) if cached_place == place => events,
                    _ => match shared.registry.cached_record(pointer) {
                        Some(events) => events,
                        None => break Some(pointer),
                    },
                };
                let Some(event) = events.get(pointer.event_index as usize) else {
                    break Some(pointer);
                };
                if !accept(event) {
                    refused = true;
                    break None;
                }
                taken.push(event.clone());
                let (key, _) = state.queue.pop_front().expect("the head was just read");
                state.in_flight.insert(key, pointer);
                self.takes.push((key, pointer));
                record = Some((place, events));
            };
            let queue_empty = state.queue.is_empty();
            drop(state);
            let Some(head) = uncached_head else {
                break Ok(
                    if queue_empty && !refused && taken.len() - first_new < limit {
                        TakeStop::Empty
                    } else {
                        TakeStop::Limit
                    },
                );
            };
            // The head's record is not cached (or is too short for its pointer): read it
            // without the lock if the page cache has it, then go on from the head.
            match shared.registry.load_record_without_blocking(head) {
                Ok(Some(events)) if head.event_index < events.len() as u32 => {
                    record = Some(((head.segment_id, head.record_offset), events));
                }
                Ok(Some(events)) => {
                    let failure = shared.registry.event_index_out_of_range(head, events.len());
                    break Err(self.fail_unreadable(failure));
                }
                Ok(None) => break Ok(TakeStop::WouldBlock),
                Err(failure) => break Err(self.fail_unreadable(failure)),
            }
        };
        shared
            .counters
            .add_take_attempts(taken.len() - first_new, &outcome);
        outcome
    }

    fn try_commit_pipelined(self: Box<Self>) -> Result<CommitAttempt, ChannelError> {
        if self.put_bytes > TRY_COMMIT_MAX_PUT_BYTES {
            return Ok(CommitAttempt::WouldBlock(self));
        }
        Ok(CommitAttempt::Started(Box::new(self.submit_commit()?)))
    }

    fn take(&mut self) -> Result<Option<Event>, ChannelError> {
        self.take_inner(None)
    }

    fn take_waiting(&mut self, wait: Duration) -> Result<Option<Event>, ChannelError> {
        self.take_inner(Some(wait))
    }

    fn commit(self: Box<Self>) -> Result<(), ChannelError> {
        self.submit_commit()?.complete(true)
    }

    fn commit_pipelined(self: Box<Self>) -> Result<Box<dyn PendingCommit>, ChannelError> {
        Ok(Box::new(self.submit_commit()?))
    }

    fn rollback(mut self: Box<Self>) -> Result<(), ChannelError> {
        self.rollback_in_memory();
        Ok(())
    }
}

impl Drop for FileTransaction {
    fn drop(&mut self) {
        if !self.finished {
            self.rollback_in_memory();
        }
        self.shared
            .open_transactions
            .fetch_sub(1, Ordering::Relaxed);
    }
}
