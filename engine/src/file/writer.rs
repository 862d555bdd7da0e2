//! One writer thread per data directory: it owns the directory's active segment and
//! commits in groups.
//!
//! Committers encode their transaction's records (and the CRC of their bulk) on their own
//! thread, then hand the bytes to the writer of the directory they were striped to and
//! wait. The writer takes everything that is waiting (a *round*), places each record,
//! stamps it with the round number and its segment id, writes the round with one write
//! call, syncs once, and answers every committer in the round. Under load a round carries
//! many transactions for one `fdatasync`; when idle a round is a single transaction and
//! pays a single sync, so latency stays low.
//!
//! Failure rules:
//! - a failed sync is fail-stop for the channel: nothing in the round is acknowledged,
//!   the channel reports the errno and file, and every later job is refused. A sync is
//!   never retried, since Linux may have dropped the dirty pages already;
//! - a write, allocation or segment creation that fails for lack of space (ENOSPC,
//!   EDQUOT) fails the round's transactions but not the channel: nothing was
//!   acknowledged, the next round overwrites the same offsets, and a segment id that got
//!   no file is used by the next roll. Any other failure of them (EIO, EACCES, EMFILE, a
//!   file already at a new segment's path) is fail-stop like a failed sync: the writer
//!   cannot tell what reached the disk, or why its directory stopped taking files, and
//!   an operator must look (see `docs/design.md`, "Which storage errors a channel
//!   survives");
//! - after a round is written and before any of it is answered, the channel's
//!   directories are checked to still be where they were opened (see `dir_watch`): a
//!   round written into a directory removed meanwhile is in no file a restart reads;
//! - a segment is synced before the writer moves to the next one, so only a directory's
//!   newest segment can end in a torn write.
//!
//! Space: the writer reserves segment space ahead (fallocate) only as far as the space
//! guard leaves room, and refuses a round's put transactions that would take the
//! directory below `minimumRequiredSpace` (the guard's figure counts each reservation),
//! so neither a put nor the reservation made for it crosses the guard. Transactions that
//! only take are never refused: the guard's margin is their headroom.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use tracing::{debug, error, warn};

use super::dir_watch::DirWatch;
use super::health::Health;
use super::segments::{segment_path, SegmentHandle, SegmentMeta, SegmentRegistry};
use super::space::SpaceGuard;
use crate::clock::unix_time_ms;
use crate::crypto::RecordKey;
use crate::error::ChannelError;
use crate::figures::DirStats;
use crate::record::{peek_record_bytes, seal_record, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::storage::{FileMode, Storage, StorageFile, WriteSyncError};

/// Space reserved ahead of the write position, so that most syncs carry no size change.
pub(crate) const PREALLOCATION_CHUNK_BYTES: u64 = 16 * 1024 * 1024;
/// The most jobs one round takes, so that one round's latency stays bounded under load.
const MAX_JOBS_PER_ROUND: usize = 4096;
/// The most bytes one round takes (a round may exceed it by one job).
const MAX_ROUND_BYTES: usize = 32 * 1024 * 1024;

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordLocation {
    pub(crate) segment_id: u32,
    pub(crate) offset: u32,
}

/// Where a transaction's records landed, or why they did not.
pub(crate) type CommitOutcome = Result<Vec<RecordLocation>, ChannelError>;

/// A transaction's encoded records, waiting to be written.
pub(crate) struct WriteJob {
    pub(crate) records: Vec<u8>,
    pub(crate) record_count: usize,
    /// The transaction puts events, so the space guard may refuse it.
    pub(crate) puts_events: bool,
    pub(crate) reply: oneshot::Sender<CommitOutcome>,
}

enum WriterMessage {
    Job(WriteJob),
    Shutdown,
}

/// The committers' side of a directory writer.
#[derive(Debug)]
pub(crate) struct DirWriterHandle {
    sender: Sender<WriterMessage>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Bytes handed to the writer and not yet answered: the directory's load.
    pub(crate) pending_bytes: Arc<AtomicU64>,
    pub(crate) stats: Arc<DirStats>,
}

impl std::fmt::Debug for WriterMessage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriterMessage::Job(job) => write!(formatter, "Job({} bytes)", job.records.len()),
            WriterMessage::Shutdown => write!(formatter, "Shutdown"),
        }
    }
}

/// What a writer needs to know.
pub(crate) struct WriterSettings {
    pub(crate) channel: String,
    pub(crate) dir_index: usize,
    pub(crate) dir: PathBuf,
    pub(crate) space: Arc<SpaceGuard>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) registry: Arc<SegmentRegistry>,
    pub(crate) next_segment_id: Arc<AtomicU32>,
    pub(crate) max_file_size_bytes: u64,
    pub(crate) fsync_per_transaction: bool,
    pub(crate) fsync_interval: Duration,
    pub(crate) health: Arc<Health>,
    /// The channel's directories, checked before each round is answered.
    pub(crate) dir_watch: Arc<DirWatch>,
    /// Permission bits of new segments.
    pub(crate) file_modes: FileMode,
    /// The key committers seal put records with (the active key), named in the header
    /// of every segment this writer creates; `None` when the channel does not encrypt.
    pub(crate) segment_key: Option<Arc<RecordKey>>,
}

impl DirWriterHandle {
    /// Starts the writer thread of one directory.
    pub(crate) fn spawn(settings: WriterSettings) -> io::Result<Self> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let stats = Arc::new(DirStats::default());
        let pending_bytes = Arc::new(AtomicU64::new(0));
        let thread_name = format!("millrace-writer-{}", settings.channel);
        let writer = DirWriter {
            settings,
            stats: Arc::clone(&stats),
            pending_bytes: Arc::clone(&pending_bytes),
            active: None,
            spare_segment_id: None,
            round: 0,
            unsynced_since: None,
            round_buffer: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || writer.run(receiver))?;
        Ok(DirWriterHandle {
            sender,
            thread: Mutex::new(Some(thread)),
            pending_bytes,
            stats,
        })
    }

    /// Queues a job. Fails (returning the job) when the writer has stopped.
    pub(crate) fn submit(&self, job: WriteJob) -> Result<(), WriteJob> {
        let job_bytes = job.records.len() as u64;
        self.pending_bytes.fetch_add(job_bytes, Ordering::Relaxed);
        self.sender
            .send(WriterMessage::Job(job))
            .map_err(|rejected| {
                self.pending_bytes.fetch_sub(job_bytes, Ordering::Relaxed);
                match rejected.0 {
                    WriterMessage::Job(job) => job,
                    WriterMessage::Shutdown => unreachable!("only jobs are submitted"),
                }
            })
    }

    /// Asks the writer to finish the jobs queued so far, sync, trim its segment's
    /// preallocation, and stop; waits for it. Safe to call more than once.
    pub(crate) fn shutdown(&self) {
        let _ = self.sender.send(WriterMessage::Shutdown);
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                error!("a segment writer thread panicked");
            }
        }
    }
}

struct ActiveSegment {
    segment_id: u32,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    meta: Arc<SegmentMeta>,
    /// Where the next record goes.
    position: u64,
    /// Bytes reserved in the file.
    allocated: u64,
}

struct DirWriter {
    settings: WriterSettings,
    stats: Arc<DirStats>,
    pending_bytes: Arc<AtomicU64>,
    active: Option<ActiveSegment>,
    /// A segment id drawn for a roll that failed for lack of space before its file was
    /// made (or after it was removed again): the next roll uses it, so retries while the
    /// disk is full do not use up ids.
    spare_segment_id: Option<u32>,
    round: u32,
    /// When unsynced data was first written (only with `fsyncPerTransaction = false`).
    unsynced_since: Option<Instant>,
    round_buffer: Vec<u8>,
}

/// Why a round failed, and whether the channel must stop.
struct RoundFailure {
    error: ChannelError,
    fatal: bool,
}

impl DirWriter {
    fn run(mut self, receiver: Receiver<WriterMessage>) {
        let mut shutting_down = false;
        while !shutting_down {
            let first = match self.next_message(&receiver) {
                Some(message) => message,
                None => break,
            };
            let mut jobs = Vec::new();
            let mut round_bytes = 0;
            let mut message = Some(first);
            while let Some(current) = message.take() {
                match current {
                    WriterMessage::Job(job) => {
                        round_bytes += job.records.len();
                        jobs.push(job);
                    }
                    WriterMessage::Shutdown => {
                        shutting_down = true;
                        break;
                    }
                }
                if jobs.len() >= MAX_JOBS_PER_ROUND || round_bytes >= MAX_ROUND_BYTES {
                    break;
                }
                message = receiver.try_recv().ok();
            }
            if !jobs.is_empty() {
                self.write_round(jobs);
            }
        }
        // Jobs that arrived after the shutdown request are refused by dropping them: their
        // committers see the reply channel close and report the channel closed.
        self.finish();
    }

    /// The next message, running the background sync when `fsyncPerTransaction = false`.
    fn next_message(&mut self, receiver: &Receiver<WriterMessage>) -> Option<WriterMessage> {
        loop {
            let Some(since) = self.unsynced_since else {
                return receiver.recv().ok();
            };
            let due = since + self.settings.fsync_interval;
            match receiver.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(message) => return Some(message),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(failure) = self.sync_active() {
                        self.settings.health.fail(failure.error.to_string());
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn write_round(&mut self, mut jobs: Vec<WriteJob>) {
        let job_bytes: u64 = jobs.iter().map(|job| job.records.len() as u64).sum();
        let outcome = match self.settings.health.failure() {
            Some(reason) => Err(RoundFailure {
                error: ChannelError::Failed {
                    channel: self.settings.channel.clone(),
                    reason,
                },
                fatal: false,
            }),
            None => {
                jobs = self.refuse_puts_beyond_the_guard(std::mem::take(&mut jobs));
                if jobs.is_empty() {
                    Ok(Vec::new())
                } else {
                    let written = self.place_and_write(&mut jobs);
                    // After the write, before any answer: records that went into a
                    // directory removed (or replaced) meanwhile are in no file a restart
                    // would read, whatever the write and sync said.
                    match self.settings.dir_watch.verify() {
                        Ok(()) => written,
                        Err(error) => Err(RoundFailure { error, fatal: true }),
                    }
                }
            }
        };
        match outcome {
            Ok(locations) => {
                if !jobs.is_empty() {
                    self.stats.rounds.fetch_add(1, Ordering::Relaxed);
                }
                self.stats
                    .transactions
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                for (job, job_locations) in jobs.into_iter().zip(locations) {
                    let _ = job.reply.send(Ok(job_locations));
                }
            }
            Err(failure) => {
                if failure.fatal {
                    self.settings.health.fail(failure.error.to_string());
                }
                for job in jobs {
                    let _ = job.reply.send(Err(clone_error(&failure.error)));
                }
            }
        }
        // Answered: the directory's load drops. Relaxed is enough: the figure only
        // steers the choice of directory.
        self.pending_bytes.fetch_sub(job_bytes, Ordering::Relaxed);
    }

    /// Answers, and takes out of the round, each put transaction that would take the
    /// directory's usable space below the guard, counting the bytes of every transaction
    /// placed before it in the round (takes included) and the header of a segment the
    /// round may have to start. The guard's figure is the last `statvfs` less every
    /// reservation made since, plus what is reserved and not yet written; reservations
    /// stay within it (see [`Self::write_buffer`]).
    fn refuse_puts_beyond_the_guard(&self, jobs: Vec<WriteJob>) -> Vec<WriteJob> {
        let settings = &self.settings;
        let mut round_bytes = SEGMENT_HEADER_BYTES as u64;
        jobs.into_iter()
            .filter_map(|job| {
                let needed_bytes = round_bytes + job.records.len() as u64;
                if job.puts_events
                    && !settings
                        .space
                        .data_dir_has_room(settings.dir_index, needed_bytes)
                {
                    let shortage = settings.space.shortage(
                        &settings.channel,
                        settings.dir_index,
                        needed_bytes,
                    );
                    let _ = job.reply.send(Err(shortage));
                    return None;
                }
                round_bytes = needed_bytes;
                Some(job)
            })
            .collect()
    }

    /// Places every record, writes the round and syncs it. Returns each job's record
    /// locations.
    fn place_and_write(
        &mut self,
        jobs: &mut [WriteJob],
    ) -> Result<Vec<Vec<RecordLocation>>, RoundFailure> {
        self.round = self.round.wrapping_add(1);
        let round = self.round;
        let mut buffer = std::mem::take(&mut self.round_buffer);
        buffer.clear();
        let mut all_locations = Vec::with_capacity(jobs.len());
        let result = (|| {
            if self.active.is_none() {
                self.roll()?;
            }
            let mut buffer_start = self.active_ref().position;
            let segment_capacity = self.settings.max_file_size_bytes - SEGMENT_HEADER_BYTES as u64;
            for job in jobs.iter_mut() {
                let mut locations = Vec::with_capacity(job.record_count);
                // A transaction that fits in one segment is never split across two: roll
                // first. (Only a transaction larger than a segment spans several.)
                let job_bytes = job.records.len() as u64;
                let end_position = buffer_start + buffer.len() as u64 + job_bytes;
                if job_bytes <= segment_capacity
                    && end_position > self.settings.max_file_size_bytes
                    && buffer_start + (buffer.len() as u64) > SEGMENT_HEADER_BYTES as u64
                {
                    self.write_buffer(&buffer, buffer_start, Durability::Deferred)?;
                    buffer.clear();
                    self.roll()?;
                    buffer_start = self.active_ref().position;
                }
                let mut cursor = 0;
                while cursor < job.records.len() {
                    let record_bytes = peek_record_bytes(&job.records[cursor..])
                        .expect("committers encode whole records")
                        as usize;
                    let end_position = buffer_start + (buffer.len() + record_bytes) as u64;
                    if end_position > self.settings.max_file_size_bytes {
                        self.write_buffer(&buffer, buffer_start, Durability::Deferred)?;
                        buffer.clear();
                        self.roll()?;
                        buffer_start = self.active_ref().position;
                    }
                    let active = self.active_ref();
                    let record = &mut job.records[cursor..cursor + record_bytes];
                    seal_record(record, round, active.segment_id);
                    active
                        .meta
                        .max_write_order_id
                        .fetch_max(record_write_order_id(record), Ordering::Relaxed);
                    let offset = buffer_start + buffer.len() as u64;
                    locations.push(RecordLocation {
                        segment_id: active.segment_id,
                        offset: offset as u32,
                    });
                    buffer.extend_from_slice(record);
                    cursor += record_bytes;
                }
                all_locations.push(locations);
            }
            if self.settings.fsync_per_transaction {
                self.write_buffer(&buffer, buffer_start, Durability::Synced)?;
            } else {
                self.write_buffer(&buffer, buffer_start, Durability::Deferred)?;
                if self.unsynced_since.is_none() {
                    self.unsynced_since = Some(Instant::now());
                }
            }
            Ok(all_locations)
        })();
        self.round_buffer = buffer;
        result
    }

    fn active_ref(&self) -> &ActiveSegment {
        self.active
            .as_ref()
            .expect("a segment is active after roll")
    }

    /// Writes `buffer` at `position` of the active segment, reserving space ahead first:
    /// up to a preallocation chunk, but no further than the space guard leaves room for
    /// (the bytes the write needs are reserved whatever the guard says: a round that got
    /// here was admitted, and takes may write below the guard).
    ///
    /// With [`Durability::Synced`] the write and its `fdatasync` go out together (one
    /// io_uring submission where available); a failed write is recoverable when the disk
    /// is full, a failed sync is fail-stop.
    fn write_buffer(
        &mut self,
        buffer: &[u8],
        position: u64,
        durability: Durability,
    ) -> Result<(), RoundFailure> {
        if buffer.is_empty() {
            return match durability {
                Durability::Synced => self.sync_active(),
                Durability::Deferred => Ok(()),
            };
        }
        let max_file_size = self.settings.max_file_size_bytes;
        let channel = self.settings.channel.clone();
        let space = &self.settings.space;
        let dir_index = self.settings.dir_index;
        let active = self.active.as_mut().expect("a segment is active");
        let end = position + buffer.len() as u64;
        if end > active.allocated {
            let wanted = (end + PREALLOCATION_CHUNK_BYTES).min(max_file_size.max(end));
            let target = end.max(wanted.min(active.allocated + space.room_bytes(dir_index)));
            let reserved = reserve(&*active.file, end, target).map_err(|source| {
                write_failure(io_error(&channel, &active.path, "fallocate", source))
            })?;
            space.consume(dir_index, reserved - active.allocated);
            active.allocated = reserved;
        }
        match durability {
            Durability::Deferred => {
                active
                    .file
                    .write_all_at(buffer, position)
                    .map_err(|source| {
                        write_failure(io_error(&channel, &active.path, "write", source))
                    })?
            }
            Durability::Synced => {
                let started = Instant::now();
                active
                    .file
                    .write_all_at_and_sync_data(buffer, position)
                    .map_err(|failure| match failure {
                        WriteSyncError::Write(source) => {
                            write_failure(io_error(&channel, &active.path, "write", source))
                        }
                        WriteSyncError::Sync(source) => RoundFailure {
                            error: io_error(&channel, &active.path, "fdatasync", source),
                            fatal: true,
                        },
                    })?;
                self.unsynced_since = None;
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .sync_time_us
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        }
        active.position = end;
        active.meta.size_bytes.store(end, Ordering::Relaxed);
        space.set_reserved_ahead(dir_index, active.allocated - end);
        self.stats
            .bytes_written
            .fetch_add(buffer.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// `fdatasync` of the active segment. A failure is fail-stop.
    fn sync_active(&mut self) -> Result<(), RoundFailure> {
        self.unsynced_since = None;
        let Some(active) = self.active.as_ref() else {
            return Ok(());
        };
        let started = Instant::now();
        active.file.sync_data().map_err(|source| RoundFailure {
            error: io_error(&self.settings.channel, &active.path, "fdatasync", source),
            fatal: true,
        })?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .sync_time_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the active segment (synced, preallocation trimmed) and starts a new one:
    /// header written, space reserved, file synced, directory synced — in that order, so
    /// that a segment that exists after a crash always has a valid header.
    fn roll(&mut self) -> Result<(), RoundFailure> {
        self.close_active()?;
        let settings = &self.settings;
        let segment_id = self
            .spare_segment_id
            .take()
            .unwrap_or_else(|| settings.next_segment_id.fetch_add(1, Ordering::Relaxed));
        let path = segment_path(&settings.dir, segment_id);
        // The committers seal with the same key for the channel's whole open, and a
        // recovered segment is never appended to, so every record placed in this
        // segment was sealed with the key its header names.
        let header =
            SegmentHeader::new(segment_id, unix_time_ms(), settings.segment_key.as_deref());
        let header_bytes = SEGMENT_HEADER_BYTES as u64;
        // A chunk ahead, as far as the space guard leaves room; the header in any case.
        let initial_bytes = header_bytes.max(
            (header_bytes + PREALLOCATION_CHUNK_BYTES)
                .min(settings.max_file_size_bytes)
                .min(settings.space.room_bytes(settings.dir_index)),
        );
        let io = |operation, source| io_error(&settings.channel, &path, operation, source);
        let file = match settings.storage.create_file(&path, settings.file_modes) {
            Ok(file) => file,
            Err(source) => {
                let failure = write_failure(io("create", source));
                if !failure.fatal {
                    self.spare_segment_id = Some(segment_id);
                }
                return Err(failure);
            }
        };
        let prepared = file
            .write_all_at(&header.encode(), 0)
            .map_err(|source| io("write header", source))
            .and_then(|()| {
                reserve(&*file, header_bytes, initial_bytes)
                    .map_err(|source| io("fallocate", source))
            });
        let allocated = match prepared {
            Ok(allocated) => allocated,
            Err(error) => {
                let failure = write_failure(error);
                // Leave no empty segment behind when the disk is full; its id goes to
                // the next roll once the file is gone.
                if settings.storage.remove_file(&path).is_ok() {
                    let _ = settings.storage.sync_dir(&settings.dir);
                    if !failure.fatal {
                        self.spare_segment_id = Some(segment_id);
                    }
                }
                return Err(failure);
            }
        };
        settings.space.consume(settings.dir_index, allocated);
        settings
            .space
            .set_reserved_ahead(settings.dir_index, allocated - header_bytes);
        file.sync_all().map_err(|source| RoundFailure {
            error: io("fsync", source),
            fatal: true,
        })?;
        settings
            .storage
            .sync_dir(&settings.dir)
            .map_err(|source| RoundFailure {
                error: io_error(&settings.channel, &settings.dir, "fsync directory", source),
                fatal: true,
            })?;
        let meta = Arc::new(SegmentMeta::default());
        meta.size_bytes
            .store(SEGMENT_HEADER_BYTES as u64, Ordering::Relaxed);
        settings.registry.insert(
            segment_id,
            SegmentHandle {
                path: path.clone(),
                file: Arc::clone(&file),
                meta: Arc::clone(&meta),
                header: Arc::new(header),
            },
        );
        self.stats.segments_created.fetch_add(1, Ordering::Relaxed);
        debug!(channel = %settings.channel, segment = %path.display(), "segment created");
        self.active = Some(ActiveSegment {
            segment_id,
            path,
            file,
            meta,
            position: SEGMENT_HEADER_BYTES as u64,
            allocated,
        });
        Ok(())
    }

    /// Syncs the active segment and trims its unused preallocation.
    fn close_active(&mut self) -> Result<(), RoundFailure> {
        if self.active.is_none() {
            return Ok(());
        }
        self.sync_active()?;
        let active = self.active.take().expect("checked above");
        // Published after the sync: a closed segment's records are all durable.
        active.meta.close(active.position, unix_time_ms());
        let space = &self.settings.space;
        space.set_reserved_ahead(self.settings.dir_index, 0);
        if active.allocated > active.position {
            let trimmed = active
                .file
                .set_len(active.position)
                .and_then(|()| active.file.sync_data());
            match trimmed {
                Ok(()) => {
                    space.release(self.settings.dir_index, active.allocated - active.position)
                }
                // The data is synced; an untrimmed tail is zeros that recovery reads as
                // end of data. Not worth failing the channel over.
                Err(source) => warn!(
                    channel = %self.settings.channel,
                    segment = %active.path.display(),
                    error = %source,
                    "could not trim a closed segment's preallocated tail"
                ),
            }
        }
        Ok(())
    }

    fn finish(&mut self) {
        if self.settings.health.failure().is_some() {
            return;
        }
        if let Err(failure) = self.close_active() {
            self.settings.health.fail(failure.error.to_string());
        }
    }
}

/// The write-order id field of an encoded record (bytes 24..32 of its header).
fn record_write_order_id(record: &[u8]) -> u64 {
    u64::from_le_bytes(
        record[24..32]
            .try_into()
            .expect("a record header is 32 bytes"),
    )
}

/// Whether a buffer written by the writer must be durable before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Written and synced (the round's last write, with `fsyncPerTransaction`).
    Synced,
    /// Written only (before a roll, whose close syncs it; or without per-transaction sync).
    Deferred,
}

/// Reserves the first `preferred_bytes` of `file` and returns how many are reserved. When
/// the disk cannot give that much (ENOSPC), reserves only `needed_bytes`, what the write
/// at hand needs: the space guard keeps a margin for takes and commits, and a whole
/// preallocation chunk (up to a segment) may be larger than that margin, so insisting on
/// it would refuse a take's few bytes on a disk that still has room for them.
fn reserve(file: &dyn StorageFile, needed_bytes: u64, preferred_bytes: u64) -> io::Result<u64> {
    match file.allocate(preferred_bytes) {
        Ok(()) => Ok(preferred_bytes),
        Err(error)
            if error.kind() == io::ErrorKind::StorageFull && needed_bytes < preferred_bytes =>
        {
            file.allocate(needed_bytes).map(|()| needed_bytes)
        }
        Err(error) => Err(error),
    }
}

/// A failed write, allocation or segment creation: only its round fails when the disk
/// is short of space (ENOSPC, EDQUOT); any other error fails the channel.
fn write_failure(error: ChannelError) -> RoundFailure {
    RoundFailure {
        fatal: !error.is_space_shortage(),
        error,
    }
}

pub(crate) fn io_error(
    channel: &str,
    path: &std::path::Path,
    operation: &'static str,
    source: io::Error,
) -> ChannelError {
    ChannelError::Io {
        channel: channel.to_string(),
        file: path.to_path_buf(),
        operation,
        source,
    }
}

/// Errors are answered to every job of a failed round; `io::Error` is not `Clone`, so
/// each copy keeps the kind, errno and message.
fn clone_error(error: &ChannelError) -> ChannelError {
    match error {
        ChannelError::Io {
            channel,
            file,
            operation,
            source,
        } => ChannelError::Io {
            channel: channel.clone(),
            file: file.clone(),
            operation,
            source: match source.raw_os_error() {
                Some(errno) => io::Error::from_raw_os_error(errno),
                None => io::Error::new(source.kind(), source.to_string()),
            },
        },
        ChannelError::Failed { channel, reason } => ChannelError::Failed {
            channel: channel.clone(),
            reason: reason.clone(),
        },
        ChannelError::DirectoryLost {
            channel,
            role,
            dir,
            detail,
        } => ChannelError::DirectoryLost {
            channel: channel.clone(),
            role,
            dir: dir.clone(),
            detail: detail.clone(),
        },
        other => ChannelError::Failed {
            channel: String::new(),
            reason: other.to_string(),
        },
    }
}
