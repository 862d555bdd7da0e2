//! A read-only scan of a whole channel ([`scan_channel`]): every segment, the full replay
//! in memory and the checkpoint slots, and what it says — problems and their severity,
//! figures per segment and directory, the queue a restart would rebuild, and its events
//! read back.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::checkpoints::{self, CheckpointSlotReport, SlotState};
use super::error::InspectError;
use super::log::{self, QueuedEvent, ReplayedLog, UncommittedReason};
use super::progress::Progress;
use super::scan::{self, DamageKind, RecordBody, SegmentScan};
use crate::config::FileChannelConfig;
use crate::crypto::KeyRing;
use crate::event::Event;
use crate::record::{
    decode_put_record, EventPointer, SegmentHeader, MAX_RECORD_BYTES, RECORD_HEADER_BYTES,
};
use crate::storage::Storage;

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// A restart repairs or works around it by itself (a torn tail is truncated, an
    /// unusable checkpoint is replaced by the other slot or a full replay).
    Warning,
    /// A restart refuses to start, or committed events are unreadable.
    Error,
}

impl Severity {
    /// `warning` or `error`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing wrong, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// How serious.
    pub severity: Severity,
    /// A short stable name: `torn-tail`, `corruption`, `unfinished-segment`,
    /// `lost-records`, `uncommitted-records`, `checkpoint-unusable`, `checkpoint-missing`.
    pub kind: &'static str,
    /// The file.
    pub file: PathBuf,
    /// The byte offset, when the problem has one.
    pub offset: Option<u64>,
    /// What is wrong, with the values involved.
    pub detail: String,
}

/// The outcome of a verify, from which a tool's exit code follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing wrong.
    Clean,
    /// Only warnings: a restart deals with them by itself.
    RepairsItself,
    /// At least one error.
    Damaged,
}

/// Per-segment figures for an inspect report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentFigures {
    /// Valid put records.
    pub put_records: u64,
    /// Valid take records.
    pub take_records: u64,
    /// Valid commit records.
    pub commit_records: u64,
    /// Smallest and largest write-order id of its valid records.
    pub write_order_range: Option<(u64, u64)>,
    /// Earliest and latest commit time of its commit records.
    pub commit_time_range_unix_ms: Option<(u64, u64)>,
    /// Queued events pointing into it.
    pub live_events: u64,
}

/// A data directory: its segments and free space against the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirReport {
    /// The directory.
    pub path: PathBuf,
    /// Segment files in it.
    pub segment_count: usize,
    /// Bytes of those files.
    pub segment_bytes: u64,
    /// Usable bytes on its filesystem, if they could be read.
    pub available_bytes: Option<u64>,
    /// The channel's `minimumRequiredSpace`, as applied.
    pub minimum_required_space_bytes: u64,
}

impl DataDirReport {
    /// Whether puts to this directory would be refused by the space guard.
    pub fn below_guard(&self) -> bool {
        self.available_bytes
            .is_some_and(|available| available < self.minimum_required_space_bytes)
    }
}

/// The queue a restart would rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSummary {
    /// Events queued.
    pub depth: u64,
    /// The oldest queued event's commit time.
    pub oldest_event_committed_unix_ms: Option<u64>,
    /// The newest queued event's commit time.
    pub newest_event_committed_unix_ms: Option<u64>,
}

/// A queued event read back, for `inspect --events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedEvent {
    /// Its position in the queue (0 = next to be taken).
    pub position: u64,
    /// Where it came from.
    pub source: QueuedEvent,
    /// The event.
    pub event: Event,
}

/// Everything a read-only scan of a channel learned.
#[derive(Debug, Clone)]
pub struct ChannelScan {
    /// The channel's name.
    pub channel: String,
    /// The settings the scan used.
    pub config: FileChannelConfig,
    /// Every segment of every data dir, dir by dir, oldest first.
    pub segments: Vec<SegmentScan>,
    /// The checkpoint slots: primary, then the backup when `useDualCheckpoints`.
    pub checkpoints: Vec<CheckpointSlotReport>,
    /// The full replay in memory.
    pub log: ReplayedLog,
    /// When the scan ran.
    pub scanned_unix_ms: u64,
}

/// Reads a channel's directories and replays its log in memory, changing nothing.
pub fn scan_channel(
    storage: &dyn Storage,
    channel: &str,
    config: &FileChannelConfig,
    progress: &dyn Progress,
) -> Result<ChannelScan, InspectError> {
    let mut listed = Vec::new();
    let mut total_bytes = 0u64;
    for (dir_index, dir) in config.data_dirs.iter().enumerate() {
        let segments = scan::list_segments(storage, dir)?;
        for (position, (segment_id, path)) in segments.iter().enumerate() {
            let size_bytes = match storage.open_file(path).and_then(|file| file.len_bytes()) {
                Ok(size_bytes) => size_bytes,
                // Deleted by a live channel's cleanup since the listing: not part of it.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(InspectError::io(path, "stat", source)),
            };
            total_bytes += size_bytes;
            let newest_in_dir = position + 1 == segments.len();
            listed.push((dir_index, *segment_id, path.clone(), newest_in_dir));
        }
    }
    progress.begin("scanning segments", total_bytes);
    let mut segments = Vec::with_capacity(listed.len());
    for (dir_index, segment_id, path, newest_in_dir) in listed {
        match scan::scan_segment(
            storage,
            dir_index,
            segment_id,
            &path,
            newest_in_dir,
            !config.fsync_per_transaction,
            progress,
        ) {
            Ok(segment) => segments.push(segment),
            // Deleted by a live channel's cleanup since the listing: not part of it.
            Err(InspectError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    progress.finish();
    let log = log::replay(&segments, config.data_dirs.len());
    let checkpoints = checkpoints::read_slots(storage, config, &segments);
    Ok(ChannelScan {
        channel: channel.to_string(),
        config: config.clone(),
        segments,
        checkpoints,
        log,
        scanned_unix_ms: crate::clock::unix_time_ms(),
    })
}

impl ChannelScan {
    /// Every problem found, segments first (by directory, segment, offset), then
    /// transactions, then checkpoint slots.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for segment in &self.segments {
            for region in &segment.damaged_regions {
                let (severity, detail) = match region.kind {
                    DamageKind::TornTail => (
                        Severity::Warning,
                        format!(
                            "torn tail: {} ({} bytes to the end of the file; {} valid records of \
                             the unsynced last write after it); a restart truncates here",
                            region.reason,
                            region.end_offset - region.offset,
                            segment.records_discarded_by_restart
                        ),
                    ),
                    DamageKind::UnfinishedSegment => (
                        Severity::Warning,
                        format!("{}; a restart removes the file", region.reason),
                    ),
                    DamageKind::Corruption => (
                        Severity::Error,
                        format!(
                            "{}; {} bytes unreadable up to offset {}",
                            region.reason,
                            region.end_offset - region.offset,
                            region.end_offset
                        ),
                    ),
                };
                problems.push(Problem {
                    severity,
                    kind: region.kind.as_str(),
                    file: segment.path.clone(),
                    offset: Some(region.offset),
                    detail,
                });
            }
        }
        for transaction in &self.log.committed {
            let Some(loss) = &transaction.loss else {
                continue;
            };
            let (file, offset, cause) = match &loss.cause {
                Some(cause) => (
                    cause.file.clone(),
                    cause.offset,
                    format!(
                        "lost to the damage at {} offset {}",
                        cause.file.display(),
                        cause.offset
                    ),
                ),
                None => (
                    transaction.commit_file.clone(),
                    transaction.commit_offset,
                    "the log holds fewer records than its commit vouches for".to_string(),
                ),
            };
            problems.push(Problem {
                severity: Severity::Error,
                kind: "lost-records",
                file,
                offset: Some(offset),
                detail: format!(
                    "committed transaction {} (commit record at {} offset {}) is missing {} put \
                     events in {} put records and {} taken events: {cause}",
                    transaction.transaction_id,
                    transaction.commit_file.display(),
                    transaction.commit_offset,
                    loss.lost_put_events,
                    loss.lost_put_records,
                    loss.lost_take_events
                ),
            });
        }
        for transaction in &self.log.uncommitted {
            let (severity, why) = match &transaction.reason {
                UncommittedReason::TornTail => continue,
                UncommittedReason::DamageFollows(location) => (
                    Severity::Error,
                    format!(
                        "its commit record may have been in the damage at {} offset {}",
                        location.file.display(),
                        location.offset
                    ),
                ),
                UncommittedReason::NoCommitRecord => (
                    Severity::Warning,
                    "no commit record follows (a write that failed before its commit); a \
                     restart ignores these records"
                        .to_string(),
                ),
            };
            problems.push(Problem {
                severity,
                kind: "uncommitted-records",
                file: transaction.file.clone(),
                offset: Some(transaction.offset),
                detail: format!(
                    "transaction {} ({} put events, {} taken events) has no readable commit: {why}",
                    transaction.transaction_id, transaction.put_events, transaction.take_events
                ),
            });
        }
        for slot in &self.checkpoints {
            match &slot.state {
                SlotState::Valid(_) => {}
                SlotState::Missing => problems.push(Problem {
                    severity: Severity::Warning,
                    kind: "checkpoint-missing",
                    file: slot.file.clone(),
                    offset: None,
                    detail: format!(
                        "no {} checkpoint; a restart uses the other slot or replays the whole log",
                        slot.slot.as_str()
                    ),
                }),
                SlotState::Unusable { offset, reason } => problems.push(Problem {
                    severity: Severity::Warning,
                    kind: "checkpoint-unusable",
                    file: slot.file.clone(),
                    offset: Some(*offset),
                    detail: format!(
                        "{} checkpoint unusable: {reason}; a restart uses the other slot or \
                         replays the whole log (`channelctl checkpoint` rebuilds it)",
                        slot.slot.as_str()
                    ),
                }),
            }
        }
        problems
    }

    /// Clean, only warnings, or damaged.
    pub fn verdict(&self) -> Verdict {
        match self.problems().iter().map(|problem| problem.severity).max() {
            None => Verdict::Clean,
            Some(Severity::Warning) => Verdict::RepairsItself,
            Some(Severity::Error) => Verdict::Damaged,
        }
    }

    /// Figures for one segment (by its index in [`ChannelScan::segments`]).
    pub fn segment_figures(&self, segment: &SegmentScan) -> SegmentFigures {
        let mut figures = SegmentFigures::default();
        for record in &segment.records {
            let id = record.header.write_order_id;
            figures.write_order_range = Some(match figures.write_order_range {
                None => (id, id),
                Some((low, high)) => (low.min(id), high.max(id)),
            });
            match &record.body {
                RecordBody::Put { .. } => figures.put_records += 1,
                RecordBody::Take { .. } => figures.take_records += 1,
                RecordBody::Commit(summary) => {
                    figures.commit_records += 1;
                    let time = summary.committed_unix_ms;
                    figures.commit_time_range_unix_ms =
                        Some(match figures.commit_time_range_unix_ms {
                            None => (time, time),
                            Some((low, high)) => (low.min(time), high.max(time)),
                        });
                }
                RecordBody::Rollback => {}
            }
        }
        figures.live_events = self
            .log
            .queue
            .iter()
            .filter(|event| event.pointer.segment_id == segment.segment_id)
            .count() as u64;
        figures
    }

    /// The data directories with their segments and free space.
    pub fn data_dirs(&self, storage: &dyn Storage) -> Vec<DataDirReport> {
        self.config
            .data_dirs
            .iter()
            .enumerate()
            .map(|(dir_index, path)| {
                let in_dir = self
                    .segments
                    .iter()
                    .filter(|segment| segment.dir_index == dir_index);
                DataDirReport {
                    path: path.clone(),
                    segment_count: in_dir.clone().count(),
                    segment_bytes: in_dir.map(|segment| segment.size_bytes).sum(),
                    available_bytes: storage.available_space_bytes(path).ok(),
                    minimum_required_space_bytes: self
                        .config
                        .effective_minimum_required_space_bytes(),
                }
            })
            .collect()
    }

    /// Queue depth and the age of its oldest event.
    pub fn queue_summary(&self) -> QueueSummary {
        let times = self.log.queue.iter().map(|event| event.committed_unix_ms);
        QueueSummary {
            depth: self.log.queue.len() as u64,
            oldest_event_committed_unix_ms: times.clone().min(),
            newest_event_committed_unix_ms: times.max(),
        }
    }

    /// Reads up to `limit` queued events, starting at the first whose put record's
    /// write-order id is at least `from_write_order_id`.
    pub fn read_events(
        &self,
        storage: &dyn Storage,
        from_write_order_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DumpedEvent>, InspectError> {
        let mut reader = EventReader::new(storage, self);
        let mut dumped = Vec::new();
        for (position, queued) in self.log.queue.iter().enumerate() {
            if dumped.len() >= limit {
                break;
            }
            if from_write_order_id.is_some_and(|from| queued.put_write_order_id < from) {
                continue;
            }
            dumped.push(DumpedEvent {
                position: position as u64,
                source: *queued,
                event: reader.read(queued.pointer)?,
            });
        }
        Ok(dumped)
    }

    /// The path of a segment by id, if it is on disk.
    pub fn segment_path(&self, segment_id: u32) -> Option<&Path> {
        self.segments
            .iter()
            .find(|segment| segment.segment_id == segment_id)
            .map(|segment| segment.path.as_path())
    }
}

/// Reads events by pointer, keeping the last decoded put record.
pub(crate) struct EventReader<'a> {
    storage: &'a dyn Storage,
    paths: HashMap<u32, PathBuf>,
    /// Segment headers that decoded: they say which cipher and key a record needs.
    headers: HashMap<u32, SegmentHeader>,
    /// The channel's keys (from its `encryption.*` settings), or why they did not load.
    keys: Option<Result<KeyRing, String>>,
    last: Option<((u32, u32), Vec<Event>)>,
}

impl<'a> EventReader<'a> {
    pub(crate) fn new(storage: &'a dyn Storage, scan: &ChannelScan) -> Self {
        EventReader {
            storage,
            paths: scan
                .segments
                .iter()
                .map(|segment| (segment.segment_id, segment.path.clone()))
                .collect(),
            headers: scan
                .segments
                .iter()
                .filter_map(|segment| Some((segment.segment_id, segment.header.clone().ok()?)))
                .collect(),
            keys: scan
                .config
                .encryption
                .as_ref()
                .map(|encryption| KeyRing::load(encryption).map_err(|error| error.to_string())),
            last: None,
        }
    }

    pub(crate) fn read(&mut self, pointer: EventPointer) -> Result<Event, InspectError> {
        let key = (pointer.segment_id, pointer.record_offset);
        if self
            .last
            .as_ref()
            .is_none_or(|(last_key, _)| *last_key != key)
        {
            let events = self.read_put_record(pointer)?;
            self.last = Some((key, events));
        }
        let (_, events) = self.last.as_ref().expect("just filled");
        events
            .get(pointer.event_index as usize)
            .cloned()
            .ok_or_else(|| InspectError::UnreadableEvent {
                file: self.paths[&pointer.segment_id].clone(),
                offset: u64::from(pointer.record_offset),
                detail: format!(
                    "the put record holds {} events, the pointer asks for index {}",
                    events.len(),
                    pointer.event_index
                ),
            })
    }

    fn read_put_record(&self, pointer: EventPointer) -> Result<Vec<Event>, InspectError> {
        let offset = u64::from(pointer.record_offset);
        let Some(path) = self.paths.get(&pointer.segment_id) else {
            return Err(InspectError::UnreadableEvent {
                file: PathBuf::from(crate::file::segments::segment_file_name(pointer.segment_id)),
                offset,
                detail: "the segment is not on disk".into(),
            });
        };
        let unreadable = |detail: String| InspectError::UnreadableEvent {
            file: path.clone(),
            offset,
            detail,
        };
        let file = self
            .storage
            .open_file(path)
            .map_err(|source| InspectError::io(path, "open", source))?;
        let mut length = [0u8; 4];
        file.read_exact_at(&mut length, offset)
            .map_err(|source| InspectError::io(path, "read", source))?;
        let record_bytes = u32::from_le_bytes(length);
        if (record_bytes as usize) < RECORD_HEADER_BYTES || record_bytes > MAX_RECORD_BYTES {
            return Err(unreadable(format!(
                "impossible record length {record_bytes}"
            )));
        }
        let mut record = vec![0u8; record_bytes as usize];
        file.read_exact_at(&mut record, offset)
            .map_err(|source| InspectError::io(path, "read", source))?;
        let segment_header = self
            .headers
            .get(&pointer.segment_id)
            .ok_or_else(|| unreadable("the segment's header is damaged".into()))?;
        let keys = match &self.keys {
            None => None,
            Some(Ok(keys)) => Some(keys),
            Some(Err(reason)) => {
                return Err(unreadable(format!(
                    "the channel's keys did not load: {reason}"
                )))
            }
        };
        decode_put_record(record, segment_header, keys)
            .map_err(|error| unreadable(error.to_string()))
    }
}
