//! Checkpoint slots, decoded and checked the way recovery checks them: a slot is
//! unusable when it does not decode, when its queue points into a missing segment or past
//! a segment's end, or when a segment holding log it does not cover is missing.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::FileChannelConfig;
use crate::file::checkpoint::{Checkpoint, CHECKPOINT_FILE_NAME, CHECKPOINT_MAGIC};
use crate::record::{POINTER_BYTES, RECORD_HEADER_BYTES};
use crate::storage::Storage;

use super::scan::SegmentScan;

/// Bytes of a checkpoint's fixed header (see `docs/format.md`, "Checkpoint file").
const CHECKPOINT_HEADER_BYTES: u64 = 64;
/// Bytes of the trailing CRC.
const CHECKPOINT_CRC_BYTES: u64 = 4;
/// Offset of the format version field.
const CHECKPOINT_VERSION_OFFSET: u64 = 8;
/// Offset of the first field after magic and version (where structural checks begin).
const CHECKPOINT_FIELDS_OFFSET: u64 = 16;

/// Which checkpoint slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointSlot {
    /// `checkpointDir`.
    Primary,
    /// `backupCheckpointDir` (with `useDualCheckpoints`).
    Backup,
}

impl CheckpointSlot {
    /// `primary` or `backup`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckpointSlot::Primary => "primary",
            CheckpointSlot::Backup => "backup",
        }
    }
}

/// What a valid checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// Increases with every checkpoint of the channel; a restart prefers the highest.
    pub sequence: u64,
    /// Every commit below this write-order id is reflected in it.
    pub covered_write_order_id: u64,
    /// When it was written.
    pub created_unix_ms: u64,
    /// Events in its queue (in-flight takes at the time included).
    pub queued_events: u64,
    /// Segments it lists.
    pub segments_listed: usize,
    /// Size of the file.
    pub file_bytes: u64,
}

/// The state of one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// No checkpoint file.
    Missing,
    /// The file exists but a restart cannot use it.
    Unusable {
        /// Where in the file the problem is (the CRC field for a checksum mismatch, the
        /// offending queue entry for a dangling pointer).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Usable.
    Valid(CheckpointSummary),
}

/// One checkpoint slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSlotReport {
    /// Which slot.
    pub slot: CheckpointSlot,
    /// The checkpoint file.
    pub file: PathBuf,
    /// Valid, missing or unusable.
    pub state: SlotState,
}

/// The checkpoint files of a channel: the primary, then the backup.
pub(crate) fn slot_files(config: &FileChannelConfig) -> Vec<(CheckpointSlot, PathBuf)> {
    let mut files = vec![(
        CheckpointSlot::Primary,
        config.checkpoint_dir.join(CHECKPOINT_FILE_NAME),
    )];
    if config.use_dual_checkpoints {
        if let Some(backup) = &config.backup_checkpoint_dir {
            files.push((CheckpointSlot::Backup, backup.join(CHECKPOINT_FILE_NAME)));
        }
    }
    files
}

pub(crate) fn read_slots(
    storage: &dyn Storage,
    config: &FileChannelConfig,
    segments: &[SegmentScan],
) -> Vec<CheckpointSlotReport> {
    slot_files(config)
        .into_iter()
        .map(|(slot, file)| CheckpointSlotReport {
            slot,
            state: read_slot(storage, &file, segments),
            file,
        })
        .collect()
}

fn read_slot(storage: &dyn Storage, path: &Path, segments: &[SegmentScan]) -> SlotState {
    let bytes = match read_file(storage, path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return SlotState::Missing,
        Err(error) => {
            return SlotState::Unusable {
                offset: 0,
                reason: format!("cannot read: {error}"),
            }
        }
    };
    let checkpoint = match Checkpoint::decode(&bytes) {
        Ok(checkpoint) => checkpoint,
        Err(reason) => {
            return SlotState::Unusable {
                offset: decode_failure_offset(&bytes),
                reason,
            }
        }
    };
    if let Some((offset, reason)) = dangling(&checkpoint, segments) {
        return SlotState::Unusable { offset, reason };
    }
    SlotState::Valid(CheckpointSummary {
        sequence: checkpoint.sequence,
        covered_write_order_id: checkpoint.covered_write_order_id,
        created_unix_ms: checkpoint.created_unix_ms,
        queued_events: checkpoint.queue.len() as u64,
        segments_listed: checkpoint.segments.len(),
        file_bytes: bytes.len() as u64,
    })
}

fn read_file(storage: &dyn Storage, path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match storage.open_file(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut bytes = vec![0u8; file.len_bytes()? as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(Some(bytes))
}

/// Where a checkpoint that failed to decode is wrong, as closely as the format allows:
/// the start for a short file or bad magic, the CRC field for a checksum mismatch (the
/// damaged byte itself cannot be located), the version field, else the fields after it.
fn decode_failure_offset(bytes: &[u8]) -> u64 {
    let len = bytes.len() as u64;
    if len < CHECKPOINT_HEADER_BYTES + CHECKPOINT_CRC_BYTES || bytes[0..8] != CHECKPOINT_MAGIC {
        return 0;
    }
    let body_len = (len - CHECKPOINT_CRC_BYTES) as usize;
    let stored = u32::from_le_bytes(bytes[body_len..].try_into().expect("4 bytes"));
    if stored != crc32c::crc32c(&bytes[..body_len]) {
        return body_len as u64;
    }
    let version_at = CHECKPOINT_VERSION_OFFSET as usize;
    if u16::from_le_bytes([bytes[version_at], bytes[version_at + 1]])
        != crate::file::checkpoint::CHECKPOINT_FORMAT_VERSION
    {
        return CHECKPOINT_VERSION_OFFSET;
    }
    CHECKPOINT_FIELDS_OFFSET
}

/// Recovery's usability checks against the segments on disk.
fn dangling(checkpoint: &Checkpoint, segments: &[SegmentScan]) -> Option<(u64, String)> {
    let size_of = |segment_id: u32| {
        segments
            .iter()
            .find(|segment| segment.segment_id == segment_id)
            .map(|segment| segment.size_bytes)
    };
    for (index, pointer) in checkpoint.queue.iter().enumerate() {
        let offset = CHECKPOINT_HEADER_BYTES + (index * POINTER_BYTES) as u64;
        match size_of(pointer.segment_id) {
            None => {
                return Some((
                    offset,
                    format!(
                        "queue entry {index} points into segment {}, which is missing",
                        pointer.segment_id
                    ),
                ))
            }
            Some(size_bytes)
                if u64::from(pointer.record_offset) + RECORD_HEADER_BYTES as u64 > size_bytes =>
            {
                return Some((
                    offset,
                    format!(
                        "queue entry {index} points to offset {} of segment {}, which is only \
                         {size_bytes} bytes",
                        pointer.record_offset, pointer.segment_id
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let queue_end = CHECKPOINT_HEADER_BYTES + (checkpoint.queue.len() * POINTER_BYTES) as u64;
    checkpoint
        .segments
        .iter()
        .find(|entry| {
            let covered =
                entry.closed && entry.max_write_order_id < checkpoint.covered_write_order_id;
            !covered && size_of(entry.segment_id).is_none()
        })
        .map(|missing| {
            (
                queue_end,
                format!(
                    "segment {} holds log the checkpoint does not cover, and is missing",
                    missing.segment_id
                ),
            )
        })
}
