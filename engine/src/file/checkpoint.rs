//! Checkpoints: the queue of event pointers, the write-order id it covers, and what each
//! segment needs, so that a restart reads only the log written after it.
//!
//! ```text
//! 0   [u8; 8] magic "MLRCCKPT"
//! 8   u16 format_version (1)
//! 10  u16 header_bytes (64)
//! 12  u32 reserved (0)
//! 16  u64 sequence               increases with every checkpoint of the channel
//! 24  u64 covered_write_order_id every commit with a smaller write-order id is reflected
//! 32  u64 next_transaction_id
//! 40  u32 next_segment_id
//! 44  u32 segment_count
//! 48  u64 event_count            events in the queue, in put-commit order (in-flight takes
//!                                in their places)
//! 56  u64 created_unix_ms
//! 64  event_count × 12 bytes     u32 segment_id, u32 record_offset, u32 event_index
//!     segment_count × entries    u32 segment_id, u64 max_write_order_id, u8 closed,
//!                                u32 outlives_count, outlives_count × u32 segment_id
//! end u32 crc32c                 over every byte before it
//! ```
//!
//! Nothing here depends on the channel's `capacity`. Event bodies never appear in a
//! checkpoint, only pointers. Do not reorder or resize fields.

use std::collections::HashSet;

use crate::record::{EventPointer, POINTER_BYTES};

/// First bytes of a checkpoint file.
pub(crate) const CHECKPOINT_MAGIC: [u8; 8] = *b"MLRCCKPT";
/// Checkpoint format version written and read by this build.
pub(crate) const CHECKPOINT_FORMAT_VERSION: u16 = 1;
const CHECKPOINT_HEADER_BYTES: usize = 64;
const CHECKPOINT_CRC_BYTES: usize = 4;
/// Bytes of a segment entry before its `outlives` list.
const SEGMENT_ENTRY_FIXED_BYTES: usize = 4 + 8 + 1 + 4;
/// The checkpoint's file name in `checkpointDir` (and `backupCheckpointDir`).
pub(crate) const CHECKPOINT_FILE_NAME: &str = "checkpoint";
/// Where a checkpoint is written before it is renamed into place.
pub(crate) const CHECKPOINT_TEMP_FILE_NAME: &str = "checkpoint.tmp";

/// What a checkpoint records about one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentEntry {
    pub(crate) segment_id: u32,
    /// The largest write-order id in the segment when the checkpoint was taken.
    pub(crate) max_write_order_id: u64,
    /// The writer had finished with it (synced and trimmed): it will not grow.
    pub(crate) closed: bool,
    /// Segments this one must outlive (see `docs/format.md`, "Segment cleanup").
    pub(crate) outlives: Vec<u32>,
}

impl SegmentEntry {
    /// Whether a restart from a checkpoint covering `covered_write_order_id` skips the
    /// segment: it was closed, with every record below that id.
    pub(crate) fn is_covered_by(&self, covered_write_order_id: u64) -> bool {
        self.closed && self.max_write_order_id < covered_write_order_id
    }
}

/// What the checkpoint a slot holds needs from the log to stay usable, so that cleanup
/// keeps it: every segment with records at or above its coverage (a restart reads them),
/// and the segments listed here whatever their write-order ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotNeeds {
    /// Commits below this id are in the checkpoint.
    pub(crate) covered_write_order_id: u64,
    /// Segments its queue points into, and segments its table lists as not wholly
    /// covered (a restart from it requires both to exist).
    pub(crate) segments: HashSet<u32>,
}

impl SlotNeeds {
    /// The needs of a checkpoint covering `covered_write_order_id` whose queue points
    /// into `queue_segments` and whose segment table is `table`.
    pub(crate) fn new(
        covered_write_order_id: u64,
        queue_segments: impl IntoIterator<Item = u32>,
        table: &[SegmentEntry],
    ) -> Self {
        let mut segments: HashSet<u32> = queue_segments.into_iter().collect();
        segments.extend(
            table
                .iter()
                .filter(|entry| !entry.is_covered_by(covered_write_order_id))
                .map(|entry| entry.segment_id),
        );
        SlotNeeds {
            covered_write_order_id,
            segments,
        }
    }

    /// The needs of a checkpoint read from a slot.
    pub(crate) fn of_checkpoint(checkpoint: &Checkpoint) -> Self {
        SlotNeeds::new(
            checkpoint.covered_write_order_id,
            checkpoint.queue.iter().map(|pointer| pointer.segment_id),
            &checkpoint.segments,
        )
    }
}

/// A decoded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) sequence: u64,
    pub(crate) covered_write_order_id: u64,
    pub(crate) next_transaction_id: u64,
    pub(crate) next_segment_id: u32,
    pub(crate) created_unix_ms: u64,
    pub(crate) queue: Vec<EventPointer>,
    pub(crate) segments: Vec<SegmentEntry>,
}

/// A checkpoint's fields besides its queue and segment table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckpointHead {
    pub(crate) sequence: u64,
    pub(crate) covered_write_order_id: u64,
    pub(crate) next_transaction_id: u64,
    pub(crate) next_segment_id: u32,
    pub(crate) created_unix_ms: u64,
}

/// Encodes a checkpoint up to its checksum, reading the `event_count` pointers of `queue`
/// once: the channel encodes straight from its queue, under its lock, rather than copying
/// the queue first and so holding it twice. [`seal_checkpoint`] appends the checksum.
pub(crate) fn encode_checkpoint_body<'a>(
    head: &CheckpointHead,
    event_count: usize,
    queue: impl Iterator<Item = &'a EventPointer>,
    segments: &[SegmentEntry],
) -> Vec<u8> {
    let outlives_total: usize = segments.iter().map(|entry| entry.outlives.len()).sum();
    let mut out = Vec::with_capacity(
        CHECKPOINT_HEADER_BYTES
            + event_count * POINTER_BYTES
            + segments.len() * SEGMENT_ENTRY_FIXED_BYTES
            + outlives_total * 4
            + CHECKPOINT_CRC_BYTES,
    );
    out.extend_from_slice(&CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(CHECKPOINT_HEADER_BYTES as u16).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&head.sequence.to_le_bytes());
    out.extend_from_slice(&head.covered_write_order_id.to_le_bytes());
    out.extend_from_slice(&head.next_transaction_id.to_le_bytes());
    out.extend_from_slice(&head.next_segment_id.to_le_bytes());
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    out.extend_from_slice(&(event_count as u64).to_le_bytes());
    out.extend_from_slice(&head.created_unix_ms.to_le_bytes());
    let queue_start = out.len();
    for pointer in queue {
        out.extend_from_slice(&pointer.segment_id.to_le_bytes());
        out.extend_from_slice(&pointer.record_offset.to_le_bytes());
        out.extend_from_slice(&pointer.event_index.to_le_bytes());
    }
    assert_eq!(
        out.len() - queue_start,
        event_count * POINTER_BYTES,
        "the queue holds the event count the header states"
    );
    for entry in segments {
        out.extend_from_slice(&entry.segment_id.to_le_bytes());
        out.extend_from_slice(&entry.max_write_order_id.to_le_bytes());
        out.push(u8::from(entry.closed));
        out.extend_from_slice(&(entry.outlives.len() as u32).to_le_bytes());
        for id in &entry.outlives {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

/// Appends the checksum to what [`encode_checkpoint_body`] encoded.
pub(crate) fn seal_checkpoint(body: &mut Vec<u8>) {
    let crc = crc32c::crc32c(body);
    body.extend_from_slice(&crc.to_le_bytes());
}

impl Checkpoint {
    /// The whole checkpoint's bytes (the channel encodes from its state instead).
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let head = CheckpointHead {
            sequence: self.sequence,
            covered_write_order_id: self.covered_write_order_id,
            next_transaction_id: self.next_transaction_id,
            next_segment_id: self.next_segment_id,
            created_unix_ms: self.created_unix_ms,
        };
        let mut out =
            encode_checkpoint_body(&head, self.queue.len(), self.queue.iter(), &self.segments);
        seal_checkpoint(&mut out);
        out
    }

    /// Decodes and verifies a checkpoint; the error says what is wrong.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < CHECKPOINT_HEADER_BYTES + CHECKPOINT_CRC_BYTES {
            return Err(format!(
                "{} bytes is shorter than a checkpoint header",
                bytes.len()
            ));
        }
        if bytes[0..8] != CHECKPOINT_MAGIC {
            return Err("bad magic".into());
        }
        let body_len = bytes.len() - CHECKPOINT_CRC_BYTES;
        let stored = read_u32(bytes, body_len);
        let computed = crc32c::crc32c(&bytes[..body_len]);
        if stored != computed {
            return Err(format!(
                "checksum {stored:#010x} does not match computed {computed:#010x}"
            ));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != CHECKPOINT_FORMAT_VERSION {
            return Err(format!("format version {version} is not supported"));
        }
        let segment_count = read_u32(bytes, 44) as usize;
        let event_count = read_u64(bytes, 48);
        let queue_bytes = event_count
            .checked_mul(POINTER_BYTES as u64)
            .filter(|&queue_bytes| queue_bytes <= (body_len - CHECKPOINT_HEADER_BYTES) as u64)
            .ok_or_else(|| format!("event count {event_count} does not fit the file"))?
            as usize;
        let queue_end = CHECKPOINT_HEADER_BYTES + queue_bytes;
        let queue = bytes[CHECKPOINT_HEADER_BYTES..queue_end]
            .chunks_exact(POINTER_BYTES)
            .map(|chunk| EventPointer {
                segment_id: read_u32(chunk, 0),
                record_offset: read_u32(chunk, 4),
                event_index: read_u32(chunk, 8),
            })
            .collect();
        let mut cursor = queue_end;
        let mut segments =
            Vec::with_capacity(segment_count.min(body_len / SEGMENT_ENTRY_FIXED_BYTES));
        for _ in 0..segment_count {
            if cursor + SEGMENT_ENTRY_FIXED_BYTES > body_len {
                return Err("segment table runs past the end".into());
            }
            let outlives_count = read_u32(bytes, cursor + 13) as usize;
            let entry_end = cursor + SEGMENT_ENTRY_FIXED_BYTES + outlives_count * 4;
            if entry_end > body_len {
                return Err("segment table runs past the end".into());
            }
            segments.push(SegmentEntry {
                segment_id: read_u32(bytes, cursor),
                max_write_order_id: read_u64(bytes, cursor + 4),
                closed: bytes[cursor + 12] != 0,
                outlives: (0..outlives_count)
                    .map(|index| read_u32(bytes, cursor + SEGMENT_ENTRY_FIXED_BYTES + index * 4))
                    .collect(),
            });
            cursor = entry_end;
        }
        if cursor != body_len {
            return Err(format!(
                "{} unexpected bytes after the segment table",
                body_len - cursor
            ));
        }
        Ok(Checkpoint {
            sequence: read_u64(bytes, 16),
            covered_write_order_id: read_u64(bytes, 24),
            next_transaction_id: read_u64(bytes, 32),
            next_segment_id: read_u32(bytes, 40),
            created_unix_ms: read_u64(bytes, 56),
            queue,
            segments,
        })
    }
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

/// Checkpoint bookkeeping, guarded by one lock so checkpoints never overlap.
#[derive(Debug)]
pub(crate) struct CheckpointState {
    /// Sequence of the last checkpoint written (or loaded).
    pub(crate) sequence: u64,
    /// What each slot's current checkpoint (primary, backup) needs from the log; `None`
    /// while a slot holds no valid checkpoint.
    pub(crate) slot_needs: [Option<SlotNeeds>; 2],
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            sequence: 3,
            covered_write_order_id: 1_000,
            next_transaction_id: 77,
            next_segment_id: 9,
            created_unix_ms: 1_700_000_000_000,
            queue: vec![
                EventPointer {
                    segment_id: 2,
                    record_offset: 128,
                    event_index: 0,
                },
                EventPointer {
                    segment_id: 8,
                    record_offset: 4096,
                    event_index: 31,
                },
            ],
            segments: vec![
                SegmentEntry {
                    segment_id: 2,
                    max_write_order_id: 400,
                    closed: true,
                    outlives: vec![],
                },
                SegmentEntry {
                    segment_id: 8,
                    max_write_order_id: 999,
                    closed: false,
                    outlives: vec![2, 5],
                },
            ],
        }
    }

    #[test]
    fn checkpoint_round_trips() {
        let checkpoint = sample();
        assert_eq!(
            Checkpoint::decode(&checkpoint.encode()).unwrap(),
            checkpoint
        );
    }

    #[test]
    fn every_byte_flip_and_every_truncation_is_detected() {
        let bytes = sample().encode();
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert!(Checkpoint::decode(&damaged).is_err(), "flip at {position}");
            assert!(
                Checkpoint::decode(&bytes[..position]).is_err(),
                "cut at {position}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Checkpoint::decode(&bytes);
        }
    }
}
