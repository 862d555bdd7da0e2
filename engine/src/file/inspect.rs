//! Offline reads of a stopped channel's segments, for operator tools (`channelctl
//! inspect` and `verify`): which cipher and key each segment needs, and whether every
//! record in it checks out — put records opened and authenticated when the keys are
//! given.
//!
//! These functions read files directly and change nothing. They do not take the
//! directory lock, so run them on a stopped channel (a running writer may be appending
//! to the newest segment, whose tail then reads as unfinished).

use std::io;
use std::path::{Path, PathBuf};

use super::segments::parse_segment_file_name;
use crate::crypto::{KeyRing, SegmentKeyProblem};
use crate::record::{
    check_put_payload, decode_put_record, decode_record, decode_take_payload, CommitSummary,
    RecordError, RecordKind, SegmentHeader, SegmentHeaderError, SEGMENT_HEADER_BYTES,
};

/// Why a segment could not be inspected at all.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The segment header is invalid.
    #[error("{path}: invalid segment header: {source}")]
    Header {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: SegmentHeaderError,
    },
}

/// A segment file and its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The segment file.
    pub path: PathBuf,
    /// Its decoded header; [`SegmentHeader::required_key_id`] says which key it needs.
    pub header: SegmentHeader,
}

/// Reads and checks the header of one segment file.
pub fn read_segment_header(path: &Path) -> Result<SegmentHeader, InspectError> {
    use std::io::Read;
    let io_error = |source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::with_capacity(SEGMENT_HEADER_BYTES);
    std::fs::File::open(path)
        .map_err(io_error)?
        .take(SEGMENT_HEADER_BYTES as u64)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    SegmentHeader::decode(&bytes).map_err(|source| InspectError::Header {
        path: path.to_path_buf(),
        source,
    })
}

/// The segments of one data directory, oldest first, with their headers.
pub fn list_segments(data_dir: &Path) -> Result<Vec<SegmentSummary>, InspectError> {
    let entries = std::fs::read_dir(data_dir).map_err(|source| InspectError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| InspectError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let Some(segment_id) = name.to_str().and_then(parse_segment_file_name) else {
            continue;
        };
        let path = entry.path();
        let header = read_segment_header(&path)?;
        segments.push((segment_id, SegmentSummary { path, header }));
    }
    segments.sort_by_key(|(segment_id, _)| *segment_id);
    Ok(segments.into_iter().map(|(_, summary)| summary).collect())
}

/// What [`verify_segment`] found in one segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentVerification {
    /// Valid records read.
    pub records: u64,
    /// Put records among them.
    pub put_records: u64,
    /// Events in those put records (from their clear event counts).
    pub put_events: u64,
    /// Put records whose seal was opened and authenticated (all of them when the key
    /// was available, none otherwise).
    pub authenticated_put_records: u64,
    /// Events taken by the take records.
    pub take_events: u64,
    /// Commit records.
    pub commit_records: u64,
    /// The key the segment needs and why it could not be used, when it could not.
    pub unavailable_key: Option<String>,
    /// Where the valid records end and why, when something other than the end of data
    /// (zeros or the end of the file) ends them.
    pub damage: Option<SegmentDamage>,
}

/// The first record that did not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDamage {
    /// Byte offset of the record in the segment.
    pub offset: u64,
    /// What is wrong.
    pub detail: String,
}

/// Reads every record of a segment, checking CRCs and payloads; with `keys`, opens
/// and authenticates every sealed put record too. Reading stops at the end of data or
/// at the first damaged record.
pub fn verify_segment(
    path: &Path,
    keys: Option<&KeyRing>,
) -> Result<SegmentVerification, InspectError> {
    let bytes = std::fs::read(path).map_err(|source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let header = SegmentHeader::decode(&bytes).map_err(|source| InspectError::Header {
        path: path.to_path_buf(),
        source,
    })?;
    let mut found = SegmentVerification::default();
    let can_open = match (header.required_key_id(), keys) {
        (None, _) => true,
        (Some(key_id), None) => {
            found.unavailable_key = Some(format!("key {key_id:?}: no keys were given"));
            false
        }
        (Some(key_id), Some(keys)) => match keys.key_for_segment(key_id, &header.key_check) {
            Ok(_) => true,
            Err(SegmentKeyProblem::Missing) => {
                found.unavailable_key = Some(format!(
                    "key {key_id:?}: not among the keys given ({})",
                    keys.key_ids().join(" ")
                ));
                false
            }
            Err(SegmentKeyProblem::Mismatch { key_file }) => {
                found.unavailable_key = Some(format!(
                    "key {key_id:?}: the key from {} is a different key",
                    key_file.display()
                ));
                false
            }
        },
    };
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset < bytes.len() {
        let damage = |detail: String| SegmentDamage {
            offset: offset as u64,
            detail,
        };
        let (record_header, payload) = match decode_record(&bytes[offset..], header.segment_id) {
            Ok(decoded) => decoded,
            Err(RecordError::EndOfData) => break,
            Err(error) => {
                found.damage = Some(damage(error.to_string()));
                break;
            }
        };
        let record_bytes = record_header.record_bytes as usize;
        let checked = match record_header.kind {
            RecordKind::Put => {
                check_put_payload(record_header.flags, payload, header.cipher).map(|count| {
                    found.put_records += 1;
                    found.put_events += u64::from(count);
                })
            }
            RecordKind::Take => decode_take_payload(payload).map(|pointers| {
                found.take_events += pointers.len() as u64;
            }),
            RecordKind::Commit => CommitSummary::decode(payload).map(|_| {
                found.commit_records += 1;
            }),
            RecordKind::Rollback => Ok(()),
        };
        if let Err(error) = checked {
            found.damage = Some(damage(error.to_string()));
            break;
        }
        if record_header.kind == RecordKind::Put && can_open {
            let record = bytes[offset..offset + record_bytes].to_vec();
            if let Err(error) = decode_put_record(record, &header, keys) {
                found.damage = Some(damage(error.to_string()));
                break;
            }
            if header.required_key_id().is_some() {
                found.authenticated_put_records += 1;
            }
        }
        found.records += 1;
        offset += record_bytes;
    }
    Ok(found)
}
