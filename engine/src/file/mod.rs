//! # The file channel
//!
//! A durable channel: a write-ahead log striped over one or more data directories, and an
//! in-memory queue of pointers into it.
//!
//! ## Constraints
//! - A commit is acknowledged only once its records are on stable storage (one
//!   `fdatasync` per writer round; see [`writer`]), unless `fsyncPerTransaction = false`.
//! - Takes see events in put-commit order across all directories.
//! - A rolled-back take returns its events to the head of the queue in their order.
//! - Nothing is written before commit: a transaction's puts and takes are buffered in
//!   memory (at most `transactionCapacity` of each) and written as one contiguous group —
//!   put records, a take record, the commit record — so a rolled-back transaction leaves
//!   no trace on disk and recovery needs no rollback records.
//! - Capacity is reserved at put time and waits up to `keep-alive`, as in Flume.
//!
//! ## Ordering across directories
//! Each commit draws a contiguous range of write-order ids before it is written. Writers
//! of different directories finish in any order, so finished commits pass through a
//! sequencer that applies them to the queue strictly in write-order-id order — the same
//! order recovery uses — and a commit returns once it is applied. A slow directory delays
//! the visibility of later commits, never their durability.

mod health;
mod recovery;
mod segments;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tracing::info;

pub use recovery::{RecoveryPath, RecoveryReport, TruncatedTail};
pub use writer::DirStats;

use self::health::Health;
use self::recovery::recover;
use self::segments::{SegmentHandle, SegmentRegistry, LOCK_FILE_NAME};
use self::writer::{DirWriterHandle, RecordLocation, WriteJob, WriterSettings};
use crate::channel::{Channel, ChannelCounters, ChannelHealth, ChannelStats, Transaction};
use crate::config::FileChannelConfig;
use crate::error::{ChannelError, OpenError};
use crate::event::Event;
use crate::record::{
    encode_put_payload, encode_record, encode_take_payload, encoded_event_bytes, CommitSummary,
    EventPointer, RecordKind, MAX_RECORD_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::storage::{DirLock, Storage};

/// A put record is closed once it holds this many bytes of events, so that a take reads
/// and decodes a bounded amount to reach one event.
const PUT_RECORD_TARGET_BYTES: usize = 1024 * 1024;
/// Bytes of a put payload before its events (the event count).
const PUT_PAYLOAD_PREFIX_BYTES: usize = 4;

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
    dirs: Vec<DataDir>,
    registry: Arc<SegmentRegistry>,
    state: Mutex<QueueState>,
    /// Signalled when events join the queue or return to it.
    events_available: Condvar,
    /// Signalled when capacity is released.
    space_freed: Condvar,
    /// Signalled when the sequencer applies commits.
    commits_applied: Condvar,
    next_transaction_id: AtomicU64,
    next_write_order_id: AtomicU64,
    stripe_cursor: AtomicUsize,
    max_event_bytes: u64,
    health: Arc<Health>,
    counters: ChannelCounters,
    closed: AtomicBool,
    locks: Mutex<Vec<Box<dyn DirLock>>>,
    recovery: RecoveryReport,
}

struct QueueState {
    queue: VecDeque<EventPointer>,
    /// Events taken by open transactions: still counted in the channel's size.
    in_flight_takes: u64,
    /// Capacity reserved by puts of open transactions.
    reserved_puts: u64,
    /// The write-order id the sequencer applies next.
    next_apply_write_order_id: u64,
    /// Finished commits waiting for earlier ones, by their first write-order id.
    finished: BTreeMap<u64, FinishedCommit>,
}

impl QueueState {
    fn occupied(&self) -> u64 {
        self.queue.len() as u64 + self.in_flight_takes + self.reserved_puts
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
        take_count: u64,
    },
    /// Failed: the puts are dropped, the takes return to the head in order.
    Abandoned {
        put_count: u64,
        takes: Vec<EventPointer>,
    },
}

impl FileChannel {
    /// Opens (creating if needed) the channel on the real filesystem.
    pub fn open(name: &str, config: FileChannelConfig) -> Result<Self, OpenError> {
        Self::open_with_storage(name, config, Arc::new(crate::storage::RealFs))
    }

    /// Opens the channel on the given storage: locks every data directory, replays the
    /// log, and starts one writer per directory.
    pub fn open_with_storage(
        name: &str,
        config: FileChannelConfig,
        storage: Arc<dyn Storage>,
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
        let mut locks = Vec::new();
        for dir in &config.data_dirs {
            storage
                .create_dir_all(dir)
                .map_err(|source| io_error(dir, "create directory", source))?;
            let lock_file = dir.join(LOCK_FILE_NAME);
            match storage.lock_file(&lock_file) {
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
        let recovered = recover(
            name,
            storage.as_ref(),
            &config.data_dirs,
            !config.fsync_per_transaction,
        )?;
        let registry = Arc::new(SegmentRegistry::default());
        for segment in recovered.segments {
            registry.insert(
                segment.segment_id,
                SegmentHandle {
                    path: segment.path,
                    file: segment.file,
                },
            );
        }
        let health = Arc::new(Health::default());
        let next_segment_id = Arc::new(AtomicU32::new(recovered.next_segment_id));
        let mut dirs = Vec::new();
        for dir in &config.data_dirs {
            let writer = DirWriterHandle::spawn(WriterSettings {
                channel: name.to_string(),
                dir: dir.clone(),
                storage: Arc::clone(&storage),
                registry: Arc::clone(&registry),
                next_segment_id: Arc::clone(&next_segment_id),
                max_file_size_bytes: config.max_file_size_bytes,
                fsync_per_transaction: config.fsync_per_transaction,
                fsync_interval: config.fsync_interval,
                health: Arc::clone(&health),
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
            max_record_bytes - (RECORD_HEADER_BYTES + PUT_PAYLOAD_PREFIX_BYTES) as u64;
        info!(
            channel = name,
            events = recovered.queue.len(),
            data_dirs = config.data_dirs.len(),
            "file channel open"
        );
        let shared = Shared {
            name: name.to_string(),
            dirs,
            registry,
            state: Mutex::new(QueueState {
                queue: recovered.queue.into(),
                in_flight_takes: 0,
                reserved_puts: 0,
                next_apply_write_order_id: recovered.next_write_order_id,
                finished: BTreeMap::new(),
            }),
            events_available: Condvar::new(),
            space_freed: Condvar::new(),
            commits_applied: Condvar::new(),
            next_transaction_id: AtomicU64::new(recovered.next_transaction_id),
            next_write_order_id: AtomicU64::new(recovered.next_write_order_id),
            stripe_cursor: AtomicUsize::new(0),
            max_event_bytes,
            health,
            counters: ChannelCounters::started_now(),
            closed: AtomicBool::new(false),
            locks: Mutex::new(locks),
            recovery: recovered.report,
            config,
        };
        Ok(FileChannel {
            shared: Arc::new(shared),
        })
    }

    /// Starts a transaction with the concrete type (the [`Channel`] trait boxes it).
    pub fn transaction(&self) -> Result<FileTransaction, ChannelError> {
        self.shared.check_usable()?;
        Ok(FileTransaction {
            shared: Arc::clone(&self.shared),
            puts: Vec::new(),
            takes: Vec::new(),
            finished: false,
        })
    }

    /// The settings the channel runs with.
    pub fn config(&self) -> &FileChannelConfig {
        &self.shared.config
    }

    /// Events queued (not counting those taken by open transactions).
    pub fn queued_events(&self) -> u64 {
        self.shared.state.lock().queue.len() as u64
    }

    /// Segment files currently known, by id.
    pub fn segment_paths(&self) -> Vec<(u32, PathBuf)> {
        self.shared.registry.segment_paths()
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

    fn begin(&self) -> Result<Box<dyn Transaction>, ChannelError> {
        Ok(Box::new(self.transaction()?))
    }

    fn stats(&self) -> ChannelStats {
        let size = {
            let state = self.shared.state.lock();
            state.queue.len() as u64 + state.in_flight_takes
        };
        self.shared
            .counters
            .snapshot(size, self.shared.config.capacity)
    }

    fn health(&self) -> ChannelHealth {
        if let Some(reason) = self.shared.health.failure() {
            ChannelHealth::Failed { reason }
        } else if self.shared.closed.load(Ordering::Acquire) {
            ChannelHealth::Closed
        } else {
            ChannelHealth::Open
        }
    }

    fn close(&self) -> Result<(), ChannelError> {
        self.shared.close()
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
}

impl Shared {
    fn check_usable(&self) -> Result<(), ChannelError> {
        if let Some(reason) = self.health.failure() {
            return Err(ChannelError::Failed {
                channel: self.name.clone(),
                reason,
            });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed {
                channel: self.name.clone(),
            });
        }
        Ok(())
    }

    fn close(&self) -> Result<(), ChannelError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        for dir in &self.dirs {
            dir.writer.shutdown();
        }
        self.counters.mark_stopped();
        self.locks.lock().clear();
        // Wake anyone waiting so they notice the channel closed.
        self.events_available.notify_all();
        self.space_freed.notify_all();
        self.commits_applied.notify_all();
        info!(channel = %self.name, "file channel closed");
        match self.health.failure() {
            Some(reason) => Err(ChannelError::Failed {
                channel: self.name.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The directory for the next transaction: the one with the fewest bytes waiting to
    /// be written; ties go round-robin so idle directories share the work.
    fn pick_dir(&self) -> &DataDir {
        let start = self.stripe_cursor.fetch_add(1, Ordering::Relaxed);
        let count = self.dirs.len();
        (0..count)
            .map(|step| &self.dirs[(start + step) % count])
            .min_by_key(|dir| dir.writer.pending_bytes.load(Ordering::Relaxed))
            .expect("a channel has at least one data directory")
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

    /// Hands a finished commit to the sequencer and waits until it has been applied.
    fn finish_commit(&self, first_write_order_id: u64, commit: FinishedCommit) {
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
        while state.next_apply_write_order_id <= last {
            self.commits_applied.wait(&mut state);
        }
    }

    fn apply(&self, state: &mut QueueState, effect: CommitEffect) {
        match effect {
            CommitEffect::Applied {
                put_pointers,
                take_count,
            } => {
                let put_count = put_pointers.len() as u64;
                state.reserved_puts -= put_count;
                state.queue.extend(put_pointers);
                state.in_flight_takes -= take_count;
                ChannelCounters::add(&self.counters.put_success, put_count);
                ChannelCounters::add(&self.counters.take_success, take_count);
                if put_count > 0 {
                    self.events_available.notify_all();
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

    /// Puts taken events back at the head of the queue, in their original order.
    fn return_takes(&self, state: &mut QueueState, takes: &[EventPointer]) {
        for pointer in takes.iter().rev() {
            state.queue.push_front(*pointer);
        }
        state.in_flight_takes -= takes.len() as u64;
        if !takes.is_empty() {
            self.events_available.notify_all();
        }
    }
}

/// A transaction on a [`FileChannel`]. Dropping it without commit rolls it back.
pub struct FileTransaction {
    shared: Arc<Shared>,
    puts: Vec<Event>,
    takes: Vec<EventPointer>,
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
        let pointer = {
            let mut state = shared.state.lock();
            let deadline = wait.map(|wait| Instant::now() + wait);
            loop {
                if let Some(pointer) = state.queue.pop_front() {
                    state.in_flight_takes += 1;
                    break pointer;
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
                self.takes.push(pointer);
                Ok(Some(event))
            }
            Err(failure) => {
                ChannelCounters::add(&shared.counters.take_error, 1);
                {
                    let mut state = shared.state.lock();
                    shared.return_takes(&mut state, &[pointer]);
                }
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
                // Serving later events past one that cannot be read would lose it
                // silently; stop instead and let the operator run `channelctl verify`.
                shared.health.fail(error.to_string());
                Err(error)
            }
        }
    }

    /// Encodes the transaction's records: one put record per batch, then a take record,
    /// then the commit record, with consecutive write-order ids.
    fn encode(
        &self,
        transaction_id: u64,
        first_write_order_id: u64,
        put_batches: &[std::ops::Range<usize>],
    ) -> Vec<u8> {
        let mut buffer = Vec::new();
        let mut write_order_id = first_write_order_id;
        for batch in put_batches {
            encode_record(
                &mut buffer,
                RecordKind::Put,
                transaction_id,
                write_order_id,
                |buffer| encode_put_payload(buffer, self.puts[batch.clone()].iter()),
            );
            write_order_id += 1;
        }
        if !self.takes.is_empty() {
            encode_record(
                &mut buffer,
                RecordKind::Take,
                transaction_id,
                write_order_id,
                |buffer| encode_take_payload(buffer, &self.takes),
            );
            write_order_id += 1;
        }
        let summary = CommitSummary {
            put_records: put_batches.len() as u32,
            put_events: self.puts.len() as u32,
            take_events: self.takes.len() as u32,
        };
        encode_record(
            &mut buffer,
            RecordKind::Commit,
            transaction_id,
            write_order_id,
            |buffer| summary.encode(buffer),
        );
        buffer
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
    }
}

impl Transaction for FileTransaction {
    fn put(&mut self, event: Event) -> Result<(), ChannelError> {
        let shared = &self.shared;
        ChannelCounters::add(&shared.counters.put_attempt, 1);
        shared.check_usable()?;
        if self.puts.len() as u64 >= shared.config.transaction_capacity {
            return Err(ChannelError::TransactionFull {
                channel: shared.name.clone(),
                transaction_capacity: shared.config.transaction_capacity,
                operation: "put",
            });
        }
        let event_bytes = encoded_event_bytes(&event) as u64;
        if event_bytes > shared.max_event_bytes {
            return Err(ChannelError::EventTooLarge {
                channel: shared.name.clone(),
                event_bytes,
                max_event_bytes: shared.max_event_bytes,
            });
        }
        shared.reserve_put()?;
        self.puts.push(event);
        Ok(())
    }

    fn take(&mut self) -> Result<Option<Event>, ChannelError> {
        self.take_inner(None)
    }

    fn take_waiting(&mut self, wait: Duration) -> Result<Option<Event>, ChannelError> {
        self.take_inner(Some(wait))
    }

    fn commit(mut self: Box<Self>) -> Result<(), ChannelError> {
        if self.puts.is_empty() && self.takes.is_empty() {
            self.finished = true;
            return Ok(());
        }
        if let Err(error) = self.shared.check_usable() {
            self.rollback_in_memory();
            return Err(error);
        }
        let shared = Arc::clone(&self.shared);
        let put_batches = self.put_batches();
        let record_count = put_batches.len() + usize::from(!self.takes.is_empty()) + 1;
        let transaction_id = shared.next_transaction_id.fetch_add(1, Ordering::Relaxed);
        // From here on the write-order range must reach the sequencer, whatever happens,
        // or later commits would wait for it forever.
        let first_write_order_id = shared
            .next_write_order_id
            .fetch_add(record_count as u64, Ordering::Relaxed);
        let last_write_order_id = first_write_order_id + record_count as u64 - 1;
        let records = self.encode(transaction_id, first_write_order_id, &put_batches);
        let (reply_sender, reply_receiver) = crossbeam_channel::bounded(1);
        let dir = shared.pick_dir();
        let outcome = match dir.writer.submit(WriteJob {
            records,
            record_count,
            reply: reply_sender,
        }) {
            Ok(()) => reply_receiver.recv().unwrap_or_else(|_| {
                Err(ChannelError::Closed {
                    channel: shared.name.clone(),
                })
            }),
            Err(_) => Err(ChannelError::Closed {
                channel: shared.name.clone(),
            }),
        };
        self.finished = true;
        let puts = std::mem::take(&mut self.puts);
        let takes = std::mem::take(&mut self.takes);
        match outcome {
            Ok(locations) => {
                let put_pointers = self.cache_and_point(&put_batches, puts, &locations);
                shared.finish_commit(
                    first_write_order_id,
                    FinishedCommit {
                        last_write_order_id,
                        effect: CommitEffect::Applied {
                            put_pointers,
                            take_count: takes.len() as u64,
                        },
                    },
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
                );
                Err(error)
            }
        }
    }

    fn rollback(mut self: Box<Self>) -> Result<(), ChannelError> {
        self.rollback_in_memory();
        Ok(())
    }
}

impl FileTransaction {
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

impl Drop for FileTransaction {
    fn drop(&mut self) {
        if !self.finished {
            self.rollback_in_memory();
        }
    }
}
