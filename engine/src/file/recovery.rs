//! Recovery by replaying the segments of every data directory.
//!
//! Each directory is read oldest segment first. A transaction's records sit together in
//! one directory, its commit record last; a transaction is applied only if its commit
//! record is present, valid, and vouches for exactly the records seen. Committed
//! transactions from all directories are then ordered by the write-order id of their
//! commit record, which is the order the live channel applied them in: puts join the
//! queue in that order, and committed takes remove their events.
//!
//! Where a segment stops being valid, recovery decides between a torn tail and corruption
//! (see `docs/format.md`, "Recovery decisions"):
//! - zeros to the end of the file: the normal end of data;
//! - damage in a directory's newest segment with no valid record after it: a torn last
//!   write, truncated with a warning naming the file and offset;
//! - damage followed by valid records of the same final write round (or the round right
//!   after the last good record): a power loss that persisted pages of the last unsynced
//!   round out of order; also truncated with a warning;
//! - anything else, or any damage in an older segment (synced before the writer moved
//!   on): corruption, reported with file and offset; the channel does not start.
//!
//! With `fsyncPerTransaction = false` acknowledged data may be unsynced by contract, so
//! damage anywhere in a directory's newest segment is treated as a torn tail.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::segments::parse_segment_file_name;
use crate::error::OpenError;
use crate::record::{
    decode_record, decode_take_payload, peek_record_bytes, put_event_count, CommitSummary,
    EventPointer, RecordHeader, RecordKind, SegmentHeader, MAX_RECORD_BYTES, RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::storage::{Storage, StorageFile};

/// Bytes read from a segment at a time during replay.
const SCAN_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// How the last start rebuilt the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPath {
    /// From the primary checkpoint plus the log after it.
    Checkpoint,
    /// From the backup checkpoint plus the log after it.
    BackupCheckpoint,
    /// From the log alone.
    FullReplay,
}

impl RecoveryPath {
    /// The name `/health` reports: `checkpoint`, `backup-checkpoint` or `full-replay`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RecoveryPath::Checkpoint => "checkpoint",
            RecoveryPath::BackupCheckpoint => "backup-checkpoint",
            RecoveryPath::FullReplay => "full-replay",
        }
    }
}

/// A torn tail that recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment.
    pub file: PathBuf,
    /// Where the valid data ended and the file now ends.
    pub offset: u64,
    /// Bytes cut off.
    pub discarded_bytes: u64,
}

/// What the last start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// How the state was rebuilt.
    pub path: RecoveryPath,
    /// Log records read and applied or skipped.
    pub records_replayed: u64,
    /// Bytes of those records.
    pub bytes_replayed: u64,
    /// Committed transactions found.
    pub transactions_committed: u64,
    /// Segments read.
    pub segments_scanned: u64,
    /// Events in the queue after recovery.
    pub events_recovered: u64,
    /// Torn tails cut off.
    pub truncated_tails: Vec<TruncatedTail>,
    /// Segments whose creation never completed (no valid header, nothing after it),
    /// removed.
    pub removed_unfinished_segments: Vec<PathBuf>,
    /// Wall time of the recovery.
    pub duration_ms: u64,
}

/// A segment found on disk.
pub(crate) struct RecoveredSegment {
    pub(crate) segment_id: u32,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn StorageFile>,
}

/// The channel state rebuilt from disk.
pub(crate) struct RecoveredLog {
    pub(crate) queue: Vec<EventPointer>,
    pub(crate) next_transaction_id: u64,
    pub(crate) next_write_order_id: u64,
    pub(crate) next_segment_id: u32,
    pub(crate) segments: Vec<RecoveredSegment>,
    pub(crate) report: RecoveryReport,
}

struct CommittedTransaction {
    commit_write_order_id: u64,
    puts: Vec<EventPointer>,
    takes: Vec<EventPointer>,
}

struct PendingTransaction {
    transaction_id: u64,
    puts: Vec<EventPointer>,
    put_records: u32,
    takes: Vec<EventPointer>,
}

/// Replay state shared across directories.
struct Replay<'a> {
    channel: &'a str,
    storage: &'a dyn Storage,
    tolerate_tail_damage: bool,
    committed: Vec<CommittedTransaction>,
    max_transaction_id: Option<u64>,
    max_write_order_id: Option<u64>,
    max_segment_id: Option<u32>,
    report: RecoveryReport,
}

/// Rebuilds the channel from the segments in `data_dirs`.
pub(crate) fn recover(
    channel: &str,
    storage: &dyn Storage,
    data_dirs: &[PathBuf],
    tolerate_tail_damage: bool,
) -> Result<RecoveredLog, OpenError> {
    let started = Instant::now();
    let mut replay = Replay {
        channel,
        storage,
        tolerate_tail_damage,
        committed: Vec::new(),
        max_transaction_id: None,
        max_write_order_id: None,
        max_segment_id: None,
        report: RecoveryReport {
            path: RecoveryPath::FullReplay,
            records_replayed: 0,
            bytes_replayed: 0,
            transactions_committed: 0,
            segments_scanned: 0,
            events_recovered: 0,
            truncated_tails: Vec::new(),
            removed_unfinished_segments: Vec::new(),
            duration_ms: 0,
        },
    };
    let mut segments = Vec::new();
    for dir in data_dirs {
        segments.extend(replay.recover_dir(dir)?);
    }
    replay
        .committed
        .sort_by_key(|transaction| transaction.commit_write_order_id);
    let taken: HashSet<EventPointer> = replay
        .committed
        .iter()
        .flat_map(|transaction| transaction.takes.iter().copied())
        .collect();
    let queue: Vec<EventPointer> = replay
        .committed
        .iter()
        .flat_map(|transaction| transaction.puts.iter().copied())
        .filter(|pointer| !taken.contains(pointer))
        .collect();
    let mut report = replay.report;
    report.transactions_committed = replay.committed.len() as u64;
    report.events_recovered = queue.len() as u64;
    report.duration_ms = started.elapsed().as_millis() as u64;
    info!(
        channel,
        path = report.path.as_str(),
        records = report.records_replayed,
        bytes = report.bytes_replayed,
        events = report.events_recovered,
        duration_ms = report.duration_ms,
        "channel recovered"
    );
    Ok(RecoveredLog {
        queue,
        next_transaction_id: replay.max_transaction_id.map_or(1, |id| id + 1),
        next_write_order_id: replay.max_write_order_id.map_or(1, |id| id + 1),
        next_segment_id: replay.max_segment_id.map_or(1, |id| id + 1),
        segments,
        report,
    })
}

impl Replay<'_> {
    fn io_error(&self, path: &Path, operation: &'static str, source: io::Error) -> OpenError {
        OpenError::Io {
            channel: self.channel.to_string(),
            path: path.to_path_buf(),
            operation,
            source,
        }
    }

    fn corruption(&self, file: &Path, offset: u64, detail: String) -> OpenError {
        OpenError::Corruption {
            channel: self.channel.to_string(),
            file: file.to_path_buf(),
            offset,
            detail,
        }
    }

    fn recover_dir(&mut self, dir: &Path) -> Result<Vec<RecoveredSegment>, OpenError> {
        let names = self
            .storage
            .list_dir(dir)
            .map_err(|source| self.io_error(dir, "list", source))?;
        let mut ids: Vec<u32> = names
            .iter()
            .filter_map(|name| parse_segment_file_name(name))
            .collect();
        ids.sort_unstable();
        let mut segments = Vec::new();
        for segment_id in ids {
            self.max_segment_id = self.max_segment_id.max(Some(segment_id));
            let path = dir.join(super::segments::segment_file_name(segment_id));
            if let Some(segment) = self.open_segment(dir, segment_id, path)? {
                segments.push(segment);
            }
        }
        let mut pending = None;
        let newest_index = segments.len().checked_sub(1);
        for (index, segment) in segments.iter().enumerate() {
            self.scan_segment(segment, Some(index) == newest_index, &mut pending)?;
        }
        // A transaction still pending here never committed.
        Ok(segments)
    }

    /// Opens a segment and checks its header. A file whose header never became valid and
    /// that holds nothing after it is a segment whose creation was cut short: removed.
    fn open_segment(
        &mut self,
        dir: &Path,
        segment_id: u32,
        path: PathBuf,
    ) -> Result<Option<RecoveredSegment>, OpenError> {
        let file = self
            .storage
            .open_file(&path)
            .map_err(|source| self.io_error(&path, "open", source))?;
        let file_len = file
            .len_bytes()
            .map_err(|source| self.io_error(&path, "stat", source))?;
        let mut header = vec![0u8; (file_len as usize).min(SEGMENT_HEADER_BYTES)];
        file.read_exact_at(&mut header, 0)
            .map_err(|source| self.io_error(&path, "read", source))?;
        match SegmentHeader::decode(&header) {
            Ok(decoded) if decoded.segment_id == segment_id => Ok(Some(RecoveredSegment {
                segment_id,
                path,
                file,
            })),
            Ok(decoded) => Err(self.corruption(
                &path,
                0,
                format!(
                    "header names segment {}, but the file name says {segment_id}",
                    decoded.segment_id
                ),
            )),
            Err(header_error) => {
                let mut reader = ChunkReader::new(Arc::clone(&file), file_len);
                let data_after_header = reader
                    .first_nonzero_at_or_after(SEGMENT_HEADER_BYTES as u64)
                    .map_err(|source| self.io_error(&path, "read", source))?;
                if data_after_header.is_some() {
                    return Err(self.corruption(
                        &path,
                        0,
                        format!("bad segment header ({header_error}) before data"),
                    ));
                }
                warn!(
                    channel = self.channel,
                    segment = %path.display(),
                    "removing a segment whose creation did not finish (no valid header, no data)"
                );
                self.storage
                    .remove_file(&path)
                    .and_then(|()| self.storage.sync_dir(dir))
                    .map_err(|source| self.io_error(&path, "remove", source))?;
                self.report.removed_unfinished_segments.push(path);
                Ok(None)
            }
        }
    }

    fn scan_segment(
        &mut self,
        segment: &RecoveredSegment,
        newest_in_dir: bool,
        pending: &mut Option<PendingTransaction>,
    ) -> Result<(), OpenError> {
        self.report.segments_scanned += 1;
        let path = &segment.path;
        let file_len = segment
            .file
            .len_bytes()
            .map_err(|source| self.io_error(path, "stat", source))?;
        let mut reader = ChunkReader::new(Arc::clone(&segment.file), file_len);
        let mut offset = SEGMENT_HEADER_BYTES as u64;
        let mut last_round = None;
        loop {
            let outcome = reader
                .record_at(offset, segment.segment_id)
                .map_err(|source| self.io_error(path, "read", source))?;
            match outcome {
                ScanOutcome::Record(header, payload) => {
                    self.apply(segment, offset, &header, &payload, pending)?;
                    self.report.records_replayed += 1;
                    self.report.bytes_replayed += u64::from(header.record_bytes);
                    last_round = Some(header.write_round);
                    offset += u64::from(header.record_bytes);
                }
                ScanOutcome::Stop(reason) => {
                    return self.handle_stop(
                        segment,
                        &mut reader,
                        newest_in_dir,
                        offset,
                        last_round,
                        reason,
                    );
                }
            }
        }
    }

    /// Decides what the end of valid data at `offset` means (see the module doc).
    fn handle_stop(
        &mut self,
        segment: &RecoveredSegment,
        reader: &mut ChunkReader,
        newest_in_dir: bool,
        offset: u64,
        last_round: Option<u32>,
        reason: String,
    ) -> Result<(), OpenError> {
        let path = &segment.path;
        let read_error = |source| self.io_error(path, "read", source);
        if reader
            .first_nonzero_at_or_after(offset)
            .map_err(read_error)?
            .is_none()
        {
            return Ok(());
        }
        if !newest_in_dir {
            return Err(self.corruption(
                path,
                offset,
                format!("{reason}, in a segment that was synced before a newer one began"),
            ));
        }
        let later_rounds = reader
            .valid_record_rounds_after(offset, segment.segment_id)
            .map_err(read_error)?;
        let torn = match later_rounds.first() {
            None => true,
            Some(_) if self.tolerate_tail_damage => true,
            Some(&final_round) => {
                later_rounds.iter().all(|&round| round == final_round)
                    && match last_round {
                        None => true,
                        Some(round) => round == final_round || round.wrapping_add(1) == final_round,
                    }
            }
        };
        if !torn {
            return Err(self.corruption(
                path,
                offset,
                format!(
                    "{reason}, followed by {} valid records from earlier write rounds",
                    later_rounds.len()
                ),
            ));
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
            .map_err(|source| self.io_error(path, "truncate", source))?;
        self.report.truncated_tails.push(TruncatedTail {
            file: path.clone(),
            offset,
            discarded_bytes,
        });
        Ok(())
    }

    fn apply(
        &mut self,
        segment: &RecoveredSegment,
        offset: u64,
        header: &RecordHeader,
        payload: &[u8],
        pending: &mut Option<PendingTransaction>,
    ) -> Result<(), OpenError> {
        self.max_transaction_id = self.max_transaction_id.max(Some(header.transaction_id));
        self.max_write_order_id = self.max_write_order_id.max(Some(header.write_order_id));
        let malformed = |detail: String| self.corruption(&segment.path, offset, detail);
        if pending
            .as_ref()
            .is_some_and(|transaction| transaction.transaction_id != header.transaction_id)
        {
            // The earlier transaction's records end without a commit: it never committed
            // (its write failed and a later round overwrote nothing of it).
            *pending = None;
        }
        let transaction = pending.get_or_insert_with(|| PendingTransaction {
            transaction_id: header.transaction_id,
            puts: Vec::new(),
            put_records: 0,
            takes: Vec::new(),
        });
        match header.kind {
            RecordKind::Put => {
                let count =
                    put_event_count(payload).map_err(|error| malformed(error.to_string()))?;
                transaction.put_records += 1;
                transaction
                    .puts
                    .extend((0..count).map(|event_index| EventPointer {
                        segment_id: segment.segment_id,
                        record_offset: offset as u32,
                        event_index,
                    }));
            }
            RecordKind::Take => {
                let pointers =
                    decode_take_payload(payload).map_err(|error| malformed(error.to_string()))?;
                transaction.takes.extend(pointers);
            }
            RecordKind::Commit => {
                let summary =
                    CommitSummary::decode(payload).map_err(|error| malformed(error.to_string()))?;
                let transaction = pending.take().expect("inserted above");
                let found = CommitSummary {
                    put_records: transaction.put_records,
                    put_events: transaction.puts.len() as u32,
                    take_events: transaction.takes.len() as u32,
                };
                if found != summary {
                    return Err(malformed(format!(
                        "commit of transaction {} vouches for {summary:?} but the log holds {found:?}",
                        header.transaction_id
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

enum ScanOutcome {
    Record(RecordHeader, Vec<u8>),
    /// Valid data ends here, for this reason.
    Stop(String),
}

/// Sequential reads of a segment through a buffer of [`SCAN_CHUNK_BYTES`].
struct ChunkReader {
    file: Arc<dyn StorageFile>,
    file_len: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
}

impl ChunkReader {
    fn new(file: Arc<dyn StorageFile>, file_len: u64) -> Self {
        ChunkReader {
            file,
            file_len,
            buffer: Vec::new(),
            buffer_start: 0,
        }
    }

    /// Up to `wanted` bytes at `offset` (fewer only at the end of the file).
    fn bytes_at(&mut self, offset: u64, wanted: usize) -> io::Result<&[u8]> {
        let available = self.file_len.saturating_sub(offset).min(wanted as u64) as usize;
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if offset < self.buffer_start || offset + available as u64 > buffer_end {
            let read_len = self
                .file_len
                .saturating_sub(offset)
                .min(SCAN_CHUNK_BYTES.max(available) as u64) as usize;
            self.buffer.resize(read_len, 0);
            self.file.read_exact_at(&mut self.buffer, offset)?;
            self.buffer_start = offset;
        }
        let start = (offset - self.buffer_start) as usize;
        Ok(&self.buffer[start..start + available])
    }

    fn record_at(&mut self, offset: u64, segment_id: u32) -> io::Result<ScanOutcome> {
        let head = self.bytes_at(offset, RECORD_HEADER_BYTES)?;
        let record_bytes = match peek_record_bytes(head) {
            None if head.iter().all(|&byte| byte == 0) => {
                return Ok(ScanOutcome::Stop("end of data".into()))
            }
            None => return Ok(ScanOutcome::Stop("a partial record header".into())),
            Some(0) => return Ok(ScanOutcome::Stop("end of data".into())),
            Some(length) => length,
        };
        if (record_bytes as usize) < RECORD_HEADER_BYTES || record_bytes > MAX_RECORD_BYTES {
            return Ok(ScanOutcome::Stop(format!(
                "impossible record length {record_bytes}"
            )));
        }
        let bytes = self.bytes_at(offset, record_bytes as usize)?;
        match decode_record(bytes, segment_id) {
            Ok((header, payload)) => Ok(ScanOutcome::Record(header, payload.to_vec())),
            Err(error) => Ok(ScanOutcome::Stop(format!("invalid record ({error})"))),
        }
    }

    fn first_nonzero_at_or_after(&mut self, mut offset: u64) -> io::Result<Option<u64>> {
        while offset < self.file_len {
            let chunk = self.bytes_at(offset, SCAN_CHUNK_BYTES)?;
            if let Some(position) = chunk.iter().position(|&byte| byte != 0) {
                return Ok(Some(offset + position as u64));
            }
            offset += chunk.len() as u64;
        }
        Ok(None)
    }

    /// Write rounds of the valid records found after the damage at `offset`, searching
    /// every byte position (a damaged length field says nothing about where the next
    /// record starts).
    fn valid_record_rounds_after(&mut self, offset: u64, segment_id: u32) -> io::Result<Vec<u32>> {
        let mut rounds = Vec::new();
        let mut position = offset + 1;
        while position + RECORD_HEADER_BYTES as u64 <= self.file_len {
            let Some(next_nonzero) = self.first_nonzero_at_or_after(position)? else {
                break;
            };
            position = next_nonzero;
            let head = self.bytes_at(position, 4)?;
            let plausible = peek_record_bytes(head).is_some_and(|length| {
                length as usize >= RECORD_HEADER_BYTES
                    && length <= MAX_RECORD_BYTES
                    && position + u64::from(length) <= self.file_len
            });
            if plausible {
                if let ScanOutcome::Record(header, _) = self.record_at(position, segment_id)? {
                    rounds.push(header.write_round);
                    position += u64::from(header.record_bytes);
                    continue;
                }
            }
            position += 1;
        }
        Ok(rounds)
    }
}
