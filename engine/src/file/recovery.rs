//! Recovery: rebuild a file channel from its newest valid checkpoint plus the log written
//! after it, or from the log alone.
//!
//! Order of attempts: the checkpoint slot with the highest sequence, then the other slot
//! (with `useDualCheckpoints`), then a full replay. A checkpoint is unusable when it does
//! not decode (checksum, truncation, version) or when a segment it needs is missing; the
//! reason is logged and the next attempt made. The log is never the reason to fall back:
//! damage in it is found the same way by every attempt.
//!
//! A checkpoint covers every commit below its `covered_write_order_id`. Segments it lists
//! as closed with all records below that id are not read at all — after a clean stop that
//! is every segment, so a restart replays nothing. Every other segment is read in full;
//! transactions below the covered id are skipped (they are in the checkpoint's queue),
//! the rest applied in write-order-id order.
//!
//! Each directory is read oldest segment first. A transaction's records sit together in
//! one directory, its commit record last; a transaction is applied only if its commit
//! record is present, valid, and vouches for exactly the records seen.
//!
//! Where a segment stops being valid, recovery asks the one rule (`recovery_rule`, the
//! table in `docs/format.md`, "Recovery decisions") and carries its verdict out: the end
//! of data needs nothing; a torn tail is truncated with a warning naming the file and
//! offset; a segment whose creation was cut short is removed with a warning; corruption
//! is reported with file and offset, and the channel does not start.
//!
//! Encrypted segments: replay never decrypts. A put record's event count is in clear,
//! so pointers are rebuilt without a key; what replay checks is that every segment's
//! key is configured and is the very key the segment was sealed with (the header's key
//! check), before anything on disk is changed. A missing or different key stops the
//! open with the key id and the segment file; restoring the key restores everything.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::checkpoint::{Checkpoint, SlotNeeds};
use super::chunk_reader::{ChunkReader, RecordProbe};
use super::recovery_rule::{self, Corruption, Finding, RecordsStop, Verdict};
use super::segments::{parse_segment_file_name, segment_file_name};
use crate::crypto::{KeyRing, SegmentKeyProblem};
use crate::error::OpenError;
use crate::figures::{RecoveryPath, RecoveryProgress, RecoveryReport, TruncatedTail};
use crate::record::{
    check_put_payload, decode_take_payload, CommitSummary, EventPointer, RecordHeader, RecordKind,
    SegmentHeader, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::storage::{Storage, StorageFile};

/// Replay logs its progress each time another tenth of the log has been read.
const PROGRESS_LOG_STEPS: u64 = 10;

/// A segment found on disk.
pub(crate) struct RecoveredSegment {
    pub(crate) segment_id: u32,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn StorageFile>,
    pub(crate) header: SegmentHeader,
    pub(crate) max_write_order_id: u64,
    pub(crate) size_bytes: u64,
}

/// The channel state rebuilt from disk.
pub(crate) struct RecoveredLog {
    pub(crate) queue: Vec<EventPointer>,
    pub(crate) next_transaction_id: u64,
    pub(crate) next_write_order_id: u64,
    pub(crate) next_segment_id: u32,
    pub(crate) checkpoint_sequence: u64,
    /// What the checkpoint slots that are valid (primary, backup) need from the log.
    pub(crate) slot_needs: [Option<SlotNeeds>; 2],
    pub(crate) segments: Vec<RecoveredSegment>,
    pub(crate) outlives: HashMap<u32, HashSet<u32>>,
    pub(crate) report: RecoveryReport,
}

/// Where recovery looks.
pub(crate) struct RecoveryInput<'a> {
    pub(crate) channel: &'a str,
    pub(crate) storage: &'a dyn Storage,
    pub(crate) data_dirs: &'a [PathBuf],
    /// Checkpoint files: the primary, then the backup if there is one.
    pub(crate) checkpoint_files: Vec<PathBuf>,
    pub(crate) tolerate_tail_damage: bool,
    pub(crate) progress: &'a RecoveryProgress,
    /// The configured keys; every encrypted segment's key must be among them.
    pub(crate) keys: Option<&'a KeyRing>,
}

struct DiskSegment {
    segment_id: u32,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    header: SegmentHeader,
    size_bytes: u64,
}

struct CommittedTransaction {
    commit_write_order_id: u64,
    puts: Vec<PutRecordEvents>,
    takes: Vec<EventPointer>,
}

/// The events of one put record, indexes `0..event_count`: replay keeps one of these per
/// record rather than a pointer per event, and expands them only into the final queue.
#[derive(Debug, Clone, Copy)]
struct PutRecordEvents {
    segment_id: u32,
    record_offset: u32,
    event_count: u32,
}

impl PutRecordEvents {
    fn pointers(self) -> impl Iterator<Item = EventPointer> {
        (0..self.event_count).map(move |event_index| EventPointer {
            segment_id: self.segment_id,
            record_offset: self.record_offset,
            event_index,
        })
    }
}

struct PendingTransaction {
    transaction_id: u64,
    /// Below the checkpoint's coverage: read only for segment dependencies.
    covered: bool,
    puts: Vec<PutRecordEvents>,
    put_events: u32,
    put_records: u32,
    put_segments: HashSet<u32>,
    takes: Vec<EventPointer>,
}

/// Why an attempt failed.
enum AttemptError {
    /// Try the next checkpoint, or a full replay.
    CheckpointUnusable(String),
    /// Stop: the log itself is damaged or unreadable.
    Fatal(OpenError),
}

impl From<OpenError> for AttemptError {
    fn from(error: OpenError) -> Self {
        AttemptError::Fatal(error)
    }
}

/// Rebuilds the channel. See the module doc for the order of attempts.
pub(crate) fn recover(input: &RecoveryInput<'_>) -> Result<RecoveredLog, OpenError> {
    let started = Instant::now();
    let mut report = RecoveryReport {
        path: RecoveryPath::FullReplay,
        unusable_checkpoints: Vec::new(),
        records_replayed: 0,
        bytes_replayed: 0,
        transactions_committed: 0,
        segments_scanned: 0,
        segments_skipped: 0,
        events_recovered: 0,
        truncated_tails: Vec::new(),
        removed_unfinished_segments: Vec::new(),
        duration_ms: 0,
    };
    let mut slots: Vec<(RecoveryPath, Checkpoint)> = Vec::new();
    let mut slot_needs = [None, None];
    for (slot_index, path) in input.checkpoint_files.iter().enumerate() {
        let slot_path = if slot_index == 0 {
            RecoveryPath::Checkpoint
        } else {
            RecoveryPath::BackupCheckpoint
        };
        match load_checkpoint(input, path) {
            Ok(Some(checkpoint)) => {
                slot_needs[slot_index] = Some(SlotNeeds::of_checkpoint(&checkpoint));
                slots.push((slot_path, checkpoint));
            }
            Ok(None) => {}
            Err(reason) => {
                warn!(channel = input.channel, checkpoint = %path.display(), %reason, "checkpoint unusable");
                report
                    .unusable_checkpoints
                    .push(format!("{}: {reason}", path.display()));
            }
        }
    }
    // A segment enters the channel (and so any checkpoint) only once its header and its
    // directory entry are synced: a segment a checkpoint names cannot be one whose
    // creation was cut short, however empty it looks now.
    let named_by_checkpoints: HashSet<u32> = slots
        .iter()
        .flat_map(|(_, checkpoint)| {
            checkpoint
                .queue
                .iter()
                .map(|pointer| pointer.segment_id)
                .chain(checkpoint.segments.iter().map(|entry| entry.segment_id))
        })
        .collect();
    let mut dirs = Vec::new();
    for dir in input.data_dirs {
        dirs.push(discover_segments(
            input,
            dir,
            &named_by_checkpoints,
            &mut report,
        )?);
    }
    // Newest first; the primary wins a tie.
    slots.sort_by_key(|(_, checkpoint)| std::cmp::Reverse(checkpoint.sequence));
    let mut attempts: Vec<(RecoveryPath, Option<Checkpoint>)> = slots
        .into_iter()
        .map(|(path, checkpoint)| (path, Some(checkpoint)))
        .collect();
    attempts.push((RecoveryPath::FullReplay, None));
    for (path, checkpoint) in attempts {
        let checkpoint_sequence = checkpoint
            .as_ref()
            .map_or(0, |checkpoint| checkpoint.sequence);
        let mut replay = Replay::new(input, checkpoint.as_ref());
        match replay.run(&dirs, checkpoint.as_ref()) {
            Ok(()) => {
                report.path = path;
                return Ok(replay.finish(
                    input,
                    dirs,
                    checkpoint,
                    checkpoint_sequence,
                    slot_needs,
                    report,
                    started,
                ));
            }
            Err(AttemptError::CheckpointUnusable(reason)) => {
                warn!(channel = input.channel, path = path.as_str(), %reason, "checkpoint unusable, trying the next way");
                report
                    .unusable_checkpoints
                    .push(format!("{}: {reason}", path.as_str()));
                report.truncated_tails.extend(replay.truncated_tails);
            }
            Err(AttemptError::Fatal(error)) => return Err(error),
        }
    }
    unreachable!("a full replay either succeeds or fails fatally")
}

/// Reads a checkpoint slot: `Ok(None)` when the file does not exist.
fn load_checkpoint(input: &RecoveryInput<'_>, path: &Path) -> Result<Option<Checkpoint>, String> {
    let file = match input.storage.open_file(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot open: {error}")),
    };
    let len = file
        .len_bytes()
        .map_err(|error| format!("cannot stat: {error}"))?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|error| format!("cannot read: {error}"))?;
    Checkpoint::decode(&bytes).map(Some)
}

fn io_error(channel: &str, path: &Path, operation: &'static str, source: io::Error) -> OpenError {
    OpenError::Io {
        channel: channel.to_string(),
        path: path.to_path_buf(),
        operation,
        source,
    }
}

fn corruption(channel: &str, file: &Path, offset: u64, detail: String) -> OpenError {
    OpenError::Corruption {
        channel: channel.to_string(),
        file: file.to_path_buf(),
        offset,
        detail,
    }
}

/// Lists a directory's segments, oldest first, checking each header. A file whose header
/// never became valid and that holds nothing after it is a segment whose creation was
/// cut short: removed — unless a checkpoint names it (`named_by_checkpoints`), which
/// proves its header was once synced: then its contents were destroyed, and that is
/// corruption (removing it would let a full replay drop its events silently).
fn discover_segments(
    input: &RecoveryInput<'_>,
    dir: &Path,
    named_by_checkpoints: &HashSet<u32>,
    report: &mut RecoveryReport,
) -> Result<Vec<DiskSegment>, OpenError> {
    let channel = input.channel;
    let names = input
        .storage
        .list_dir(dir)
        .map_err(|source| io_error(channel, dir, "list", source))?;
    let mut ids: Vec<u32> = names
        .iter()
        .filter_map(|name| parse_segment_file_name(name))
        .collect();
    ids.sort_unstable();
    let mut segments = Vec::new();
    for segment_id in ids {
        let path = dir.join(segment_file_name(segment_id));
        let file = input
            .storage
            .open_file(&path)
            .map_err(|source| io_error(channel, &path, "open", source))?;
        let size_bytes = file
            .len_bytes()
            .map_err(|source| io_error(channel, &path, "stat", source))?;
        let mut header = vec![0u8; (size_bytes as usize).min(SEGMENT_HEADER_BYTES)];
        file.read_exact_at(&mut header, 0)
            .map_err(|source| io_error(channel, &path, "read", source))?;
        match SegmentHeader::decode(&header) {
            Ok(decoded) if decoded.segment_id == segment_id => {
                check_segment_key(input, &path, &decoded)?;
                segments.push(DiskSegment {
                    segment_id,
                    path,
                    file,
                    header: decoded,
                    size_bytes,
                })
            }
            Ok(decoded) => {
                return Err(corruption(
                    channel,
                    &path,
                    0,
                    format!(
                        "header names segment {}, but the file name says {segment_id}",
                        decoded.segment_id
                    ),
                ))
            }
            Err(header_error) => {
                let mut reader = ChunkReader::new(Arc::clone(&file), size_bytes);
                let data_after_header = reader
                    .first_nonzero_at_or_after(SEGMENT_HEADER_BYTES as u64)
                    .map_err(|source| io_error(channel, &path, "read", source))?
                    .is_some();
                let finding = Finding::BadHeader {
                    data_after_header,
                    named_by_checkpoint: named_by_checkpoints.contains(&segment_id),
                };
                let detail = match recovery_rule::verdict(&finding) {
                    Verdict::UnfinishedSegment => None,
                    Verdict::Corruption(Corruption::BadHeaderBeforeData) => {
                        Some(format!("bad segment header ({header_error}) before data"))
                    }
                    Verdict::Corruption(Corruption::BadHeaderOfCheckpointedSegment) => {
                        Some(format!(
                            "bad segment header ({header_error}) and no data, but a \
                             checkpoint names segment {segment_id}: its contents were lost"
                        ))
                    }
                    other => unreachable!("a header finding cannot be judged {other:?}"),
                };
                if let Some(detail) = detail {
                    return Err(corruption(channel, &path, 0, detail));
                }
                warn!(
                    channel,
                    segment = %path.display(),
                    "removing a segment whose creation did not finish (no valid header, no data)"
                );
                input
                    .storage
                    .remove_file(&path)
                    .and_then(|()| input.storage.sync_dir(dir))
                    .map_err(|source| io_error(channel, &path, "remove", source))?;
                report.removed_unfinished_segments.push(path);
            }
        }
    }
    Ok(segments)
}

/// An encrypted segment's key must be configured and be the key it was sealed with.
fn check_segment_key(
    input: &RecoveryInput<'_>,
    path: &Path,
    header: &SegmentHeader,
) -> Result<(), OpenError> {
    let Some(key_id) = header.required_key_id() else {
        return Ok(());
    };
    let missing = |configured_key_ids: String| OpenError::SegmentKeyMissing {
        channel: input.channel.to_string(),
        segment: path.to_path_buf(),
        key_id: key_id.to_string(),
        configured_key_ids,
    };
    let Some(keys) = input.keys else {
        return Err(missing("none, encryption is not configured".to_string()));
    };
    match keys.key_for_segment(key_id, &header.key_check) {
        Ok(_) => Ok(()),
        Err(SegmentKeyProblem::Missing) => Err(missing(keys.key_ids().join(" "))),
        Err(SegmentKeyProblem::Mismatch { key_file }) => Err(OpenError::SegmentKeyMismatch {
            channel: input.channel.to_string(),
            segment: path.to_path_buf(),
            key_id: key_id.to_string(),
            key_file,
        }),
    }
}

/// One attempt at rebuilding the state, from a checkpoint or from nothing.
struct Replay<'a> {
    channel: &'a str,
    tolerate_tail_damage: bool,
    progress: &'a RecoveryProgress,
    covered_write_order_id: u64,
    /// Segments the checkpoint covers whole, with their largest write-order id.
    covered_segments: HashMap<u32, u64>,
    committed: Vec<CommittedTransaction>,
    max_transaction_id: Option<u64>,
    max_write_order_id: Option<u64>,
    segment_max_write_order_id: HashMap<u32, u64>,
    outlives: HashMap<u32, HashSet<u32>>,
    records_replayed: u64,
    bytes_replayed: u64,
    segments_scanned: u64,
    truncated_tails: Vec<TruncatedTail>,
    next_progress_log_bytes: u64,
}

impl<'a> Replay<'a> {
    fn new(input: &'a RecoveryInput<'a>, checkpoint: Option<&Checkpoint>) -> Self {
        let covered_write_order_id =
            checkpoint.map_or(0, |checkpoint| checkpoint.covered_write_order_id);
        let covered_segments = checkpoint
            .map(|checkpoint| {
                checkpoint
                    .segments
                    .iter()
                    .filter(|entry| entry.is_covered_by(covered_write_order_id))
                    .map(|entry| (entry.segment_id, entry.max_write_order_id))
                    .collect()
            })
            .unwrap_or_default();
        Replay {
            channel: input.channel,
            tolerate_tail_damage: input.tolerate_tail_damage,
            progress: input.progress,
            covered_write_order_id,
            covered_segments,
            committed: Vec::new(),
            max_transaction_id: None,
            max_write_order_id: None,
            segment_max_write_order_id: HashMap::new(),
            outlives: HashMap::new(),
            records_replayed: 0,
            bytes_replayed: 0,
            segments_scanned: 0,
            truncated_tails: Vec::new(),
            next_progress_log_bytes: 0,
        }
    }

    fn run(
        &mut self,
        dirs: &[Vec<DiskSegment>],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), AttemptError> {
        let on_disk: HashMap<u32, u64> = dirs
            .iter()
            .flatten()
            .map(|segment| (segment.segment_id, segment.size_bytes))
            .collect();
        if let Some(checkpoint) = checkpoint {
            for pointer in &checkpoint.queue {
                match on_disk.get(&pointer.segment_id) {
                    None => {
                        return Err(AttemptError::CheckpointUnusable(format!(
                            "its queue points into segment {}, which is missing",
                            pointer.segment_id
                        )))
                    }
                    Some(&size_bytes) if u64::from(pointer.record_offset) + RECORD_HEADER_BYTES as u64 > size_bytes => {
                        return Err(AttemptError::CheckpointUnusable(format!(
                            "its queue points to offset {} of segment {}, which is only {size_bytes} bytes",
                            pointer.record_offset, pointer.segment_id
                        )))
                    }
                    Some(_) => {}
                }
            }
            if let Some(missing) = checkpoint.segments.iter().find(|entry| {
                !self.covered_segments.contains_key(&entry.segment_id)
                    && !on_disk.contains_key(&entry.segment_id)
            }) {
                return Err(AttemptError::CheckpointUnusable(format!(
                    "segment {} holds log it does not cover, and is missing",
                    missing.segment_id
                )));
            }
        }
        let to_scan_bytes: u64 = dirs
            .iter()
            .flatten()
            .filter(|segment| !self.covered_segments.contains_key(&segment.segment_id))
            .map(|segment| segment.size_bytes)
            .sum();
        self.progress
            .bytes_total
            .store(to_scan_bytes, Ordering::Relaxed);
        self.progress.bytes_replayed.store(0, Ordering::Relaxed);
        self.progress.records_replayed.store(0, Ordering::Relaxed);
        self.next_progress_log_bytes = to_scan_bytes / PROGRESS_LOG_STEPS;
        for segments in dirs {
            let mut pending = None;
            let mut previous_segment = None;
            for (index, segment) in segments.iter().enumerate() {
                if let Some(&max_write_order_id) = self.covered_segments.get(&segment.segment_id) {
                    self.segment_max_write_order_id
                        .insert(segment.segment_id, max_write_order_id);
                    pending = None;
                } else {
                    let newest = index + 1 == segments.len();
                    self.scan_segment(
                        segment,
                        newest,
                        previous_segment,
                        &mut pending,
                        to_scan_bytes,
                    )?;
                }
                previous_segment = Some(segment.segment_id);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        mut self,
        input: &RecoveryInput<'_>,
        dirs: Vec<Vec<DiskSegment>>,
        checkpoint: Option<Checkpoint>,
        checkpoint_sequence: u64,
        slot_needs: [Option<SlotNeeds>; 2],
        mut report: RecoveryReport,
        started: Instant,
    ) -> RecoveredLog {
        self.committed
            .sort_by_key(|transaction| transaction.commit_write_order_id);
        let taken: HashSet<EventPointer> = self
            .committed
            .iter()
            .flat_map(|transaction| transaction.takes.iter().copied())
            .collect();
        let (
            base_queue,
            checkpoint_next_transaction_id,
            checkpoint_next_segment_id,
            checkpoint_segments,
        ) = match checkpoint {
            Some(checkpoint) => (
                checkpoint.queue,
                checkpoint.next_transaction_id,
                checkpoint.next_segment_id,
                checkpoint.segments,
            ),
            None => (Vec::new(), 0, 0, Vec::new()),
        };
        // The checkpoint's queue, then the replayed puts, less what was taken: built in
        // the checkpoint queue's own allocation, grown once to its final size.
        let mut queue = base_queue;
        if !taken.is_empty() {
            queue.retain(|pointer| !taken.contains(pointer));
        }
        let appended_events: usize = self
            .committed
            .iter()
            .flat_map(|transaction| &transaction.puts)
            .map(|record| record.event_count as usize)
            .sum();
        queue.reserve_exact(appended_events);
        queue.extend(
            self.committed
                .iter()
                .flat_map(|transaction| {
                    transaction.puts.iter().flat_map(|record| record.pointers())
                })
                .filter(|pointer| !taken.contains(pointer)),
        );
        for entry in checkpoint_segments {
            self.outlives
                .entry(entry.segment_id)
                .or_default()
                .extend(entry.outlives);
        }
        let max_segment_on_disk = dirs
            .iter()
            .flatten()
            .map(|segment| segment.segment_id)
            .max();
        let segments: Vec<RecoveredSegment> = dirs
            .into_iter()
            .flatten()
            .map(|segment| RecoveredSegment {
                max_write_order_id: self
                    .segment_max_write_order_id
                    .get(&segment.segment_id)
                    .copied()
                    .unwrap_or(0),
                segment_id: segment.segment_id,
                path: segment.path,
                file: segment.file,
                header: segment.header,
                size_bytes: segment.size_bytes,
            })
            .collect();
        let live_segments: HashSet<u32> =
            segments.iter().map(|segment| segment.segment_id).collect();
        self.outlives.retain(|id, _| live_segments.contains(id));
        report.records_replayed = self.records_replayed;
        report.bytes_replayed = self.bytes_replayed;
        report.segments_scanned = self.segments_scanned;
        report.segments_skipped = self.covered_segments.len() as u64;
        report.transactions_committed = self.committed.len() as u64;
        report.events_recovered = queue.len() as u64;
        report.truncated_tails.extend(self.truncated_tails);
        report.duration_ms = started.elapsed().as_millis() as u64;
        info!(
            channel = input.channel,
            path = report.path.as_str(),
            records = report.records_replayed,
            bytes = report.bytes_replayed,
            segments_skipped = report.segments_skipped,
            events = report.events_recovered,
            duration_ms = report.duration_ms,
            "channel recovered"
        );
        RecoveredLog {
            queue,
            next_transaction_id: self
                .max_transaction_id
                .map_or(1, |id| id + 1)
                .max(checkpoint_next_transaction_id),
            next_write_order_id: self
                .max_write_order_id
                .map_or(1, |id| id + 1)
                .max(self.covered_write_order_id),
            next_segment_id: max_segment_on_disk
                .map_or(1, |id| id + 1)
                .max(checkpoint_next_segment_id),
            checkpoint_sequence,
            slot_needs,
            segments,
            outlives: self.outlives,
            report,
        }
    }

    fn scan_segment(
        &mut self,
        segment: &DiskSegment,
        newest_in_dir: bool,
        previous_segment: Option<u32>,
        pending: &mut Option<PendingTransaction>,
        bytes_total: u64,
    ) -> Result<(), OpenError> {
        self.segments_scanned += 1;
        let path = &segment.path;
        let mut reader = ChunkReader::new(Arc::clone(&segment.file), segment.size_bytes);
        let mut offset = SEGMENT_HEADER_BYTES as u64;
        let mut last_round = None;
        let mut segment_max = 0;
        loop {
            let probe = reader
                .probe_record(offset, segment.segment_id)
                .map_err(|source| io_error(self.channel, path, "read", source))?;
            match probe {
                RecordProbe::Valid(header) => {
                    let payload = reader
                        .payload_at(offset, &header)
                        .map_err(|source| io_error(self.channel, path, "read", source))?;
                    self.apply(segment, previous_segment, offset, &header, payload, pending)?;
                    segment_max = segment_max.max(header.write_order_id);
                    self.records_replayed += 1;
                    self.bytes_replayed += u64::from(header.record_bytes);
                    self.report_progress(u64::from(header.record_bytes), bytes_total);
                    last_round = Some(header.write_round);
                    offset += u64::from(header.record_bytes);
                }
                stop => {
                    self.segment_max_write_order_id
                        .insert(segment.segment_id, segment_max);
                    return self.handle_stop(
                        segment,
                        &mut reader,
                        newest_in_dir,
                        offset,
                        last_round,
                        stop_reason(&stop),
                    );
                }
            }
        }
    }

    fn report_progress(&mut self, record_bytes: u64, bytes_total: u64) {
        self.progress
            .bytes_replayed
            .fetch_add(record_bytes, Ordering::Relaxed);
        self.progress
            .records_replayed
            .fetch_add(1, Ordering::Relaxed);
        if self.next_progress_log_bytes > 0 && self.bytes_replayed >= self.next_progress_log_bytes {
            info!(
                channel = self.channel,
                bytes_replayed = self.bytes_replayed,
                bytes_total,
                percent = self.bytes_replayed * 100 / bytes_total.max(1),
                "replaying the log"
            );
            self.next_progress_log_bytes += bytes_total / PROGRESS_LOG_STEPS;
        }
    }

    /// Carries out the rule's verdict on the end of valid data at `offset` (see the
    /// module doc).
    fn handle_stop(
        &mut self,
        segment: &DiskSegment,
        reader: &mut ChunkReader,
        newest_in_dir: bool,
        offset: u64,
        last_round: Option<u32>,
        reason: String,
    ) -> Result<(), OpenError> {
        let path = &segment.path;
        let read_error = |source| io_error(self.channel, path, "read", source);
        let only_zeros_follow = reader
            .first_nonzero_at_or_after(offset)
            .map_err(read_error)?
            .is_none();
        let later_rounds = if recovery_rule::later_rounds_matter(only_zeros_follow, newest_in_dir) {
            valid_record_rounds_after(reader, offset, segment.segment_id).map_err(read_error)?
        } else {
            Vec::new()
        };
        let finding = Finding::RecordsStop(RecordsStop {
            only_zeros_follow,
            newest_in_dir,
            tolerate_tail_damage: self.tolerate_tail_damage,
            last_round_before: last_round,
            later_rounds: &later_rounds,
        });
        let detail = match recovery_rule::verdict(&finding) {
            Verdict::EndOfData => return Ok(()),
            Verdict::TornTail => None,
            Verdict::Corruption(Corruption::InSyncedSegment) => Some(format!(
                "{reason}, in a segment that was synced before a newer one began"
            )),
            Verdict::Corruption(Corruption::EarlierRoundsFollow) => Some(format!(
                "{reason}, followed by {} valid records from earlier write rounds",
                later_rounds.len()
            )),
            other => unreachable!("the end of a segment's records cannot be judged {other:?}"),
        };
        if let Some(detail) = detail {
            return Err(corruption(self.channel, path, offset, detail));
        }
        let discarded_bytes = reader.file_len - offset;
        warn!(
            channel = self.channel,
            segment = %path.display(),
            offset,
            discarded_bytes,
            valid_records_discarded = later_rounds.len(),
            %reason,
            "truncating a torn tail: the last unsynced write was cut short by a crash"
        );
        segment
            .file
            .set_len(offset)
            .and_then(|()| segment.file.sync_all())
            .map_err(|source| io_error(self.channel, path, "truncate", source))?;
        self.truncated_tails.push(TruncatedTail {
            file: path.clone(),
            offset,
            discarded_bytes,
        });
        Ok(())
    }

    fn apply(
        &mut self,
        segment: &DiskSegment,
        previous_segment: Option<u32>,
        offset: u64,
        header: &RecordHeader,
        payload: &[u8],
        pending: &mut Option<PendingTransaction>,
    ) -> Result<(), OpenError> {
        self.max_transaction_id = self.max_transaction_id.max(Some(header.transaction_id));
        self.max_write_order_id = self.max_write_order_id.max(Some(header.write_order_id));
        let channel = self.channel;
        let malformed = |detail: String| corruption(channel, &segment.path, offset, detail);
        if pending
            .as_ref()
            .is_some_and(|transaction| transaction.transaction_id != header.transaction_id)
        {
            // The earlier transaction's records end without a commit: it never committed.
            *pending = None;
        }
        let covered = header.write_order_id < self.covered_write_order_id;
        let transaction = pending.get_or_insert_with(|| PendingTransaction {
            transaction_id: header.transaction_id,
            covered,
            puts: Vec::new(),
            put_events: 0,
            put_records: 0,
            put_segments: HashSet::new(),
            takes: Vec::new(),
        });
        match header.kind {
            RecordKind::Put => {
                let count = check_put_payload(header.flags, payload, segment.header.cipher)
                    .map_err(|error| malformed(error.to_string()))?;
                transaction.put_records += 1;
                transaction.put_segments.insert(segment.segment_id);
                if !transaction.covered {
                    transaction.puts.push(PutRecordEvents {
                        segment_id: segment.segment_id,
                        record_offset: offset as u32,
                        event_count: count,
                    });
                    transaction.put_events = transaction.put_events.saturating_add(count);
                }
            }
            RecordKind::Take => {
                let pointers =
                    decode_take_payload(payload).map_err(|error| malformed(error.to_string()))?;
                let outlives = self.outlives.entry(segment.segment_id).or_default();
                outlives.extend(pointers.iter().map(|pointer| pointer.segment_id));
                outlives.remove(&segment.segment_id);
                if !transaction.covered {
                    transaction.takes.extend(pointers);
                }
            }
            RecordKind::Commit => {
                let summary =
                    CommitSummary::decode(payload).map_err(|error| malformed(error.to_string()))?;
                let transaction = pending.take().expect("inserted above");
                let outlives = self.outlives.entry(segment.segment_id).or_default();
                outlives.extend(transaction.put_segments.iter().copied());
                if transaction.put_records < summary.put_records {
                    // The transaction began in a segment this attempt did not read (it is
                    // covered by the checkpoint); it spans from the previous segment.
                    outlives.extend(previous_segment);
                }
                outlives.remove(&segment.segment_id);
                if transaction.covered {
                    return Ok(());
                }
                let found = (
                    transaction.put_records,
                    transaction.put_events,
                    transaction.takes.len() as u32,
                );
                if found != summary.counts() {
                    return Err(malformed(format!(
                        "commit of transaction {} vouches for (put records, put events, takes) {:?} but the log holds {found:?}",
                        header.transaction_id,
                        summary.counts()
                    )));
                }
                self.committed.push(CommittedTransaction {
                    commit_write_order_id: header.write_order_id,
                    puts: transaction.puts,
                    takes: transaction.takes,
                });
            }
            RecordKind::Rollback => *pending = None,
        }
        Ok(())
    }
}

/// Why valid data ends at a record that is not [`RecordProbe::Valid`], as recovery's
/// warnings and errors say it.
fn stop_reason(probe: &RecordProbe) -> String {
    match probe {
        RecordProbe::Valid(_) => unreachable!("a valid record does not stop the data"),
        RecordProbe::EndOfData => "end of data".into(),
        RecordProbe::PartialHeader { .. } => "a partial record header".into(),
        RecordProbe::ImpossibleLength(record_bytes) => {
            format!("impossible record length {record_bytes}")
        }
        RecordProbe::Invalid(error) => format!("invalid record ({error})"),
    }
}

/// Write rounds of the valid records found after the damage at `offset`, in file order
/// (searching every byte position, see [`ChunkReader::next_record_at_or_after`]).
fn valid_record_rounds_after(
    reader: &mut ChunkReader,
    offset: u64,
    segment_id: u32,
) -> io::Result<Vec<u32>> {
    let mut rounds = Vec::new();
    let mut position = offset + 1;
    while let Some((found, header)) =
        reader.next_record_at_or_after(position, segment_id, |_, _| true)?
    {
        rounds.push(header.write_round);
        position = found + u64::from(header.record_bytes);
    }
    Ok(rounds)
}
