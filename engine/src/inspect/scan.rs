//! Reading every record of every segment, past damage.
//!
//! Recovery stops a segment at its first invalid record, because it only has to decide
//! whether the channel may start. An operator needs more: every damaged place, and every
//! valid record around it, so that salvage can keep what is still readable. After a bad
//! record this scanner *resyncs*: it searches forward byte by byte for the next position
//! where a record validates (its CRC folds in the segment id, so a match by chance is
//! negligible), reports the bytes in between as one damaged region, and carries on.
//!
//! Nothing here writes: files are opened through [`Storage`] and only read.

use std::io;
use std::path::{Path, PathBuf};

use crate::file::chunk_reader::{ChunkReader, RecordProbe};
use crate::file::recovery_rule::{self, Finding, RecordsStop, Verdict};
use crate::file::segments::{parse_segment_file_name, segment_file_name};
use crate::record::{
    decode_take_payload, put_event_count, CommitSummary, EventPointer, PayloadError, RecordHeader,
    RecordKind, SegmentHeader, MAX_RECORD_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::storage::Storage;

use super::error::InspectError;
use super::progress::Progress;

/// What a valid record says, without its event bodies (those are read again on demand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordBody {
    /// A put record holding this many events.
    Put {
        /// Events in the record.
        event_count: u32,
    },
    /// A take record and the events it took.
    Take {
        /// Pointers to the taken events.
        pointers: Vec<EventPointer>,
    },
    /// A commit record.
    Commit(CommitSummary),
    /// A rollback record (reserved; never written by Millrace).
    Rollback,
}

/// One valid record found by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRecord {
    /// The segment holding it.
    pub segment_id: u32,
    /// Its byte offset in the segment.
    pub offset: u64,
    /// Its header fields.
    pub header: RecordHeader,
    /// Its payload, decoded.
    pub body: RecordBody,
}

/// How bad a damaged region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// The end of a directory's newest segment, cut short by a crash during its last
    /// unsynced write. A restart truncates it with a warning; nothing acknowledged is lost.
    TornTail,
    /// A segment file whose header never became valid and that holds nothing else: its
    /// creation was cut short. A restart removes it.
    UnfinishedSegment,
    /// Damage a restart refuses to pass: bytes that were synced, or a record that fails
    /// its checks with valid records after it.
    Corruption,
}

impl DamageKind {
    /// The name used in reports: `torn-tail`, `unfinished-segment` or `corruption`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DamageKind::TornTail => "torn-tail",
            DamageKind::UnfinishedSegment => "unfinished-segment",
            DamageKind::Corruption => "corruption",
        }
    }
}

/// A run of bytes in a segment that holds no valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRegion {
    /// Where the damage starts (a record was expected here).
    pub offset: u64,
    /// Where the next valid record starts, or the end of the file.
    pub end_offset: u64,
    /// What was wrong with the bytes at `offset`.
    pub reason: String,
    /// Whether a restart repairs it by itself.
    pub kind: DamageKind,
}

/// Everything the scan learned about one segment file.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    /// The id from the file name.
    pub segment_id: u32,
    /// Index of its data directory in the channel's `dataDirs`.
    pub dir_index: usize,
    /// The file.
    pub path: PathBuf,
    /// The file's size.
    pub size_bytes: u64,
    /// The decoded header, or why it did not decode.
    pub header: Result<SegmentHeader, String>,
    /// Valid records, in file order (including those after a torn point).
    pub records: Vec<ScannedRecord>,
    /// Damaged regions, in file order.
    pub damaged_regions: Vec<DamagedRegion>,
    /// Records after a torn tail's start: valid, but from the unsynced last write round,
    /// so a restart discards them (they were never acknowledged).
    pub records_discarded_by_restart: usize,
    /// The segment is the newest of its directory.
    pub newest_in_dir: bool,
}

impl SegmentScan {
    /// The records a restart keeps: all but those after a torn tail's start.
    pub fn kept_records(&self) -> &[ScannedRecord] {
        &self.records[..self.records.len() - self.records_discarded_by_restart]
    }
}

/// Lists a data directory's segments, sorted by id: `(id, path)`.
pub(crate) fn list_segments(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Vec<(u32, PathBuf)>, InspectError> {
    let names = storage
        .list_dir(dir)
        .map_err(|source| InspectError::io(dir, "list", source))?;
    let mut ids: Vec<u32> = names
        .iter()
        .filter_map(|name| parse_segment_file_name(name))
        .collect();
    ids.sort_unstable();
    Ok(ids
        .into_iter()
        .map(|id| (id, dir.join(segment_file_name(id))))
        .collect())
}

/// Scans one segment. `tolerate_tail_damage` is `!fsyncPerTransaction`: any damage in a
/// directory's newest segment is then a torn tail, as recovery treats it.
pub(crate) fn scan_segment(
    storage: &dyn Storage,
    dir_index: usize,
    segment_id: u32,
    path: &Path,
    newest_in_dir: bool,
    tolerate_tail_damage: bool,
    progress: &dyn Progress,
) -> Result<SegmentScan, InspectError> {
    let file = storage
        .open_file(path)
        .map_err(|source| InspectError::io(path, "open", source))?;
    let size_bytes = file
        .len_bytes()
        .map_err(|source| InspectError::io(path, "stat", source))?;
    let read_error = |source| InspectError::io(path, "read", source);
    let mut reader = ChunkReader::new(file, size_bytes);
    let header_bytes = reader
        .bytes_at(0, SEGMENT_HEADER_BYTES)
        .map_err(read_error)?
        .to_vec();
    let header = match SegmentHeader::decode(&header_bytes) {
        Ok(decoded) if decoded.segment_id != segment_id => Err(format!(
            "header names segment {}, but the file name says {segment_id}",
            decoded.segment_id
        )),
        Ok(decoded) => Ok(decoded),
        Err(error) => Err(error.to_string()),
    };
    let mut scan = SegmentScan {
        segment_id,
        dir_index,
        path: path.to_path_buf(),
        size_bytes,
        header,
        records: Vec::new(),
        damaged_regions: Vec::new(),
        records_discarded_by_restart: 0,
        newest_in_dir,
    };
    if let Err(reason) = &scan.header {
        let data_after_header = reader
            .first_nonzero_at_or_after(SEGMENT_HEADER_BYTES as u64)
            .map_err(read_error)?
            .is_some();
        // A read-only scan does not know which segments the checkpoints name: the
        // checkpoint report says what a checkpoint misses.
        let finding = Finding::BadHeader {
            data_after_header,
            named_by_checkpoint: false,
        };
        if recovery_rule::verdict(&finding) == Verdict::UnfinishedSegment {
            scan.damaged_regions.push(DamagedRegion {
                offset: 0,
                end_offset: size_bytes,
                reason: format!("bad segment header ({reason}) and no data after it"),
                kind: DamageKind::UnfinishedSegment,
            });
            progress.advance(size_bytes);
            return Ok(scan);
        }
        scan.damaged_regions.push(DamagedRegion {
            offset: 0,
            end_offset: SEGMENT_HEADER_BYTES as u64,
            reason: format!("bad segment header ({reason}) before data"),
            kind: DamageKind::Corruption,
        });
    }
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    while offset < size_bytes {
        match probe(&mut reader, offset, segment_id).map_err(read_error)? {
            Probe::Record(record) => {
                let length = u64::from(record.header.record_bytes);
                progress.advance(length);
                scan.records.push(record);
                offset += length;
            }
            Probe::EndOfData => {
                let Some(nonzero) = reader
                    .first_nonzero_at_or_after(offset)
                    .map_err(read_error)?
                else {
                    break;
                };
                let next = next_valid_record_at_or_after(&mut reader, nonzero, segment_id)
                    .map_err(read_error)?;
                scan.damaged_regions.push(DamagedRegion {
                    offset,
                    end_offset: next.unwrap_or(size_bytes),
                    reason: format!("a zero length field (end of data), but non-zero bytes follow at offset {nonzero}"),
                    kind: DamageKind::Corruption,
                });
                match next {
                    Some(next) => offset = next,
                    None => break,
                }
            }
            Probe::Invalid(reason) => {
                let next = next_valid_record_at_or_after(&mut reader, offset + 1, segment_id)
                    .map_err(read_error)?;
                scan.damaged_regions.push(DamagedRegion {
                    offset,
                    end_offset: next.unwrap_or(size_bytes),
                    reason,
                    kind: DamageKind::Corruption,
                });
                match next {
                    Some(next) => offset = next,
                    None => break,
                }
            }
        }
    }
    progress.advance(size_bytes.saturating_sub(offset));
    classify_tail(&mut scan, tolerate_tail_damage);
    Ok(scan)
}

/// Asks recovery's rule (`docs/format.md`, "Recovery decisions") what a segment's record
/// damage means, and marks it so: in a directory's newest segment, damage with no valid
/// record after it, or followed only by records of the final write round, is a torn
/// tail, and the records after its start are discarded by a restart.
fn classify_tail(scan: &mut SegmentScan, tolerate_tail_damage: bool) {
    if scan.header.is_err() {
        return;
    }
    let Some(first_damage) = scan.damaged_regions.first().map(|region| region.offset) else {
        return;
    };
    let before = scan
        .records
        .iter()
        .take_while(|record| record.offset < first_damage)
        .count();
    let later_rounds: Vec<u32> = scan.records[before..]
        .iter()
        .map(|record| record.header.write_round)
        .collect();
    let finding = Finding::RecordsStop(RecordsStop {
        // The scan marks damage only where non-zero bytes follow the valid data.
        only_zeros_follow: false,
        newest_in_dir: scan.newest_in_dir,
        tolerate_tail_damage,
        last_round_before: before
            .checked_sub(1)
            .map(|index| scan.records[index].header.write_round),
        later_rounds: &later_rounds,
    });
    if recovery_rule::verdict(&finding) == Verdict::TornTail {
        for region in &mut scan.damaged_regions {
            region.kind = DamageKind::TornTail;
        }
        scan.records_discarded_by_restart = later_rounds.len();
    }
}

/// What the bytes at an offset are.
enum Probe {
    Record(ScannedRecord),
    EndOfData,
    Invalid(String),
}

/// Checks the record at `offset` and decodes its payload, saying what is wrong in the
/// words of a report.
fn probe(reader: &mut ChunkReader, offset: u64, segment_id: u32) -> io::Result<Probe> {
    let header = match reader.probe_record(offset, segment_id)? {
        RecordProbe::Valid(header) => header,
        RecordProbe::EndOfData => return Ok(Probe::EndOfData),
        RecordProbe::PartialHeader { available_bytes } => {
            return Ok(Probe::Invalid(format!(
                "a partial record header ({available_bytes} bytes before the end of the file)"
            )))
        }
        RecordProbe::ImpossibleLength(record_bytes) => {
            return Ok(Probe::Invalid(format!(
                "impossible record length {record_bytes} (allowed {RECORD_HEADER_BYTES}..={MAX_RECORD_BYTES})"
            )))
        }
        RecordProbe::Invalid(error) => {
            return Ok(Probe::Invalid(format!("invalid record: {error}")))
        }
    };
    let payload = reader.payload_at(offset, &header)?;
    Ok(match decode_body(&header, payload) {
        Ok(body) => Probe::Record(ScannedRecord {
            segment_id,
            offset,
            header,
            body,
        }),
        Err(error) => Probe::Invalid(format!(
            "{:?} record with a valid checksum but a {error}",
            header.kind
        )),
    })
}

/// A valid record's payload, decoded as its kind says.
fn decode_body(header: &RecordHeader, payload: &[u8]) -> Result<RecordBody, PayloadError> {
    match header.kind {
        RecordKind::Put => {
            put_event_count(payload).map(|event_count| RecordBody::Put { event_count })
        }
        RecordKind::Take => {
            decode_take_payload(payload).map(|pointers| RecordBody::Take { pointers })
        }
        RecordKind::Commit => CommitSummary::decode(payload).map(RecordBody::Commit),
        RecordKind::Rollback => Ok(RecordBody::Rollback),
    }
}

/// The first position at or after `start` where a record begins that checks out and
/// whose payload decodes.
fn next_valid_record_at_or_after(
    reader: &mut ChunkReader,
    start: u64,
    segment_id: u32,
) -> io::Result<Option<u64>> {
    let found = reader.next_record_at_or_after(start, segment_id, |header, payload| {
        decode_body(header, payload).is_ok()
    })?;
    Ok(found.map(|(position, _)| position))
}
