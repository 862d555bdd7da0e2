//! Background work of a file channel: a check that its directories are still in place,
//! free-space refresh, checkpoints, segment cleanup.
//!
//! ## Checkpoints
//! A checkpoint copies, under the channel lock, the queue (in-flight takes merged back
//! into their places: put-commit order), the write-order id it covers and each
//! segment's bookkeeping. Everything else —
//! encoding, writing `checkpoint.tmp`, `fsync`, rename over `checkpoint`, `fsync` of the
//! directory — happens outside the lock, so puts and takes pause only for the copy. With
//! `useDualCheckpoints` the same checkpoint is then written to `backupCheckpointDir` the
//! same way. The rename is atomic, so each slot always holds a complete checkpoint: the new
//! one or the previous one.
//!
//! ## Cleanup
//! After a checkpoint, a segment is deleted when all of these hold:
//! - the writer has closed it, and every record in it is below the write-order id covered
//!   by *every* checkpoint slot, and no slot's checkpoint points into it or lists it as
//!   not wholly covered (so whichever slot a restart uses, it does not need it — a backup
//!   whose last write failed keeps its older checkpoint, and the segments that one needs);
//! - no queued or in-flight event points into it;
//! - every segment it must outlive is already gone or deleted in the same pass (see the
//!   module doc of `file`), and deletions run in that order, with the directory synced
//!   after each, so a crash part-way never leaves a take record's segment gone while the
//!   put it cancels remains;
//! - retention (`retentionTime`, `retentionBytes`, Millrace extensions) no longer keeps it
//!   for replay.
//!
//! One stuck event pins only its own segment (and the few segments holding takes of its
//! neighbours), never every newer segment: disk use stays bounded under steady load.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::checkpoint::{
    encode_checkpoint_body, seal_checkpoint, CheckpointHead, CheckpointState, SegmentEntry,
    SlotNeeds, CHECKPOINT_TEMP_FILE_NAME,
};
use super::segments::SegmentHandle;
use super::shared::Shared;
use super::space::SPACE_REFRESH_INTERVAL_MS;
use crate::channel::ChannelCounters;
use crate::clock::unix_time_ms;
use crate::error::ChannelError;
use crate::ordered_queue::merge_by_key;
use crate::storage::{FileMode, Storage};

/// What a checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The checkpoint's sequence number.
    pub sequence: u64,
    /// Commits below this write-order id are in it.
    pub covered_write_order_id: u64,
    /// Events in its queue.
    pub events: u64,
    /// Size of the checkpoint file.
    pub bytes: u64,
    /// Whether the backup slot was written too.
    pub backup_written: bool,
    /// Segments deleted by the cleanup that followed.
    pub segments_deleted: Vec<PathBuf>,
    /// Wall time of checkpoint and cleanup.
    pub duration_ms: u64,
}

/// Starts the background thread. It holds only a weak reference, so a channel that is
/// dropped without `close` is not kept alive by it.
pub(crate) fn start(shared: &Arc<Shared>, checkpoint_soon: bool) -> io::Result<()> {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let signal = Arc::clone(&shared.maintenance.signal);
    let interval = shared.config.effective_checkpoint_interval();
    let refresh = Duration::from_millis(SPACE_REFRESH_INTERVAL_MS);
    let thread = std::thread::Builder::new()
        .name(format!("millrace-checkpoint-{}", shared.name))
        .spawn(move || {
            let mut next_checkpoint = if checkpoint_soon {
                Instant::now()
            } else {
                Instant::now() + interval
            };
            loop {
                {
                    let mut stopped = signal.stopped.lock();
                    let wake_at = next_checkpoint.min(Instant::now() + refresh);
                    if !*stopped {
                        signal.wake.wait_until(&mut stopped, wake_at);
                    }
                    if *stopped {
                        return;
                    }
                }
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                // A directory removed under an idle channel fails it here, so /health
                // says so before the next commit would.
                if shared.health.failure().is_some() || shared.dir_watch.verify().is_err() {
                    continue;
                }
                shared.space.refresh(shared.storage.as_ref());
                if Instant::now() >= next_checkpoint {
                    if let Err(error) = shared.checkpoint() {
                        warn!(channel = %shared.name, %error, "background checkpoint failed; will retry");
                    }
                    next_checkpoint = Instant::now() + interval;
                }
            }
        })?;
    *shared.maintenance.thread.lock() = Some(thread);
    Ok(())
}

/// Writes `bytes` to `target` so that `target` always holds either its old content or
/// all of the new: temp file, fsync, rename, fsync of the directory (so the rename
/// survives a power loss).
fn write_atomically(
    storage: &dyn Storage,
    target: &Path,
    bytes: &[u8],
    mode: FileMode,
) -> io::Result<()> {
    let dir = target.parent().unwrap_or_else(|| Path::new("."));
    let temp = dir.join(CHECKPOINT_TEMP_FILE_NAME);
    match storage.remove_file(&temp) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let file = storage.create_file(&temp, mode)?;
    file.write_all_at(bytes, 0)?;
    file.sync_all()?;
    storage.rename(&temp, target)?;
    storage.sync_dir(dir)
}

/// A checkpoint encoded from the channel's state, before its checksum.
struct CheckpointSnapshot {
    needs: SlotNeeds,
    events: u64,
    bytes: Vec<u8>,
}

impl Shared {
    /// Writes a checkpoint to every slot, then deletes the segments no slot needs. The
    /// channel's directories are checked before (never write into a directory that has
    /// been replaced) and after (never report a checkpoint that went into one removed
    /// meanwhile).
    pub(super) fn checkpoint(&self) -> Result<CheckpointReport, ChannelError> {
        let started = Instant::now();
        let mut checkpoints = self.checkpoints.lock();
        if let Some(reason) = self.health.failure() {
            return Err(ChannelError::Failed {
                channel: self.name.clone(),
                reason,
            });
        }
        self.dir_watch.verify()?;
        let file_modes = self.config.file_modes();
        let sequence = checkpoints.sequence + 1;
        let mut snapshot = self.snapshot(sequence);
        seal_checkpoint(&mut snapshot.bytes);
        let bytes = snapshot.bytes;
        let primary = &self.checkpoint_files[0];
        if let Err(source) = write_atomically(self.storage.as_ref(), primary, &bytes, file_modes) {
            ChannelCounters::add(&self.counters.checkpoint_write_error, 1);
            // A checkpoint directory removed under the channel fails it, rather than
            // leaving it to retry into nowhere.
            self.dir_watch.verify()?;
            return Err(ChannelError::Io {
                channel: self.name.clone(),
                file: primary.clone(),
                operation: "write checkpoint",
                source,
            });
        }
        let covered_write_order_id = snapshot.needs.covered_write_order_id;
        checkpoints.sequence = sequence;
        checkpoints.slot_needs[0] = Some(snapshot.needs.clone());
        let mut backup_written = false;
        if let Some(backup) = self.checkpoint_files.get(1) {
            match write_atomically(self.storage.as_ref(), backup, &bytes, file_modes) {
                Ok(()) => {
                    checkpoints.slot_needs[1] = Some(snapshot.needs);
                    backup_written = true;
                }
                Err(error) => {
                    ChannelCounters::add(&self.counters.checkpoint_backup_write_error, 1);
                    warn!(
                        channel = %self.name,
                        checkpoint = %backup.display(),
                        %error,
                        "backup checkpoint not written; the primary is, and the backup \
                         keeps its older checkpoint (cleanup keeps the segments it needs)"
                    );
                }
            }
        }
        self.dir_watch.verify()?;
        let segments_deleted = self.cleanup(&checkpoints);
        let report = CheckpointReport {
            sequence,
            covered_write_order_id,
            events: snapshot.events,
            bytes: bytes.len() as u64,
            backup_written,
            segments_deleted,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        debug!(
            channel = %self.name,
            sequence,
            events = report.events,
            segments_deleted = report.segments_deleted.len(),
            duration_ms = report.duration_ms,
            "checkpoint written"
        );
        Ok(report)
    }

    /// Encodes what a checkpoint holds, but its checksum, under the channel lock. The
    /// segment list is read before the lock: a segment created in between is simply not
    /// listed, and a restart reads unlisted segments in full.
    fn snapshot(&self, sequence: u64) -> CheckpointSnapshot {
        let handles = self.registry.handles();
        let state = self.queue.state.lock();
        let segments: Vec<SegmentEntry> = handles
            .iter()
            .map(|(segment_id, handle)| {
                // `closed` first: once it reads true, the maximum is final.
                let closed = handle.meta.is_closed();
                let mut outlives: Vec<u32> = state
                    .outlives
                    .get(segment_id)
                    .map(|set| set.iter().copied().collect())
                    .unwrap_or_default();
                outlives.sort_unstable();
                SegmentEntry {
                    segment_id: *segment_id,
                    max_write_order_id: handle
                        .meta
                        .max_write_order_id
                        .load(std::sync::atomic::Ordering::Acquire),
                    closed,
                    outlives,
                }
            })
            .collect();
        let head = CheckpointHead {
            sequence,
            covered_write_order_id: state.next_apply_write_order_id,
            next_transaction_id: self
                .next_transaction_id
                .load(std::sync::atomic::Ordering::Acquire),
            next_segment_id: self
                .next_segment_id
                .load(std::sync::atomic::Ordering::Acquire),
            created_unix_ms: unix_time_ms(),
        };
        let events = state.size();
        // In-flight takes merged back into their places, so the queue is in put-commit
        // order: a restart finds them where a rollback would have put them.
        let in_flight = state.in_flight.iter().map(|(key, pointer)| (*key, pointer));
        let bytes = encode_checkpoint_body(
            &head,
            events as usize,
            merge_by_key(in_flight, state.queue.iter_keyed()),
            &segments,
        );
        // What a restart from this checkpoint needs: the segments its queue points into
        // (exactly those with live events now) and those its table does not cover.
        let needs = SlotNeeds::new(
            head.covered_write_order_id,
            state.live_events.keys().copied(),
            &segments,
        );
        CheckpointSnapshot {
            needs,
            events,
            bytes,
        }
    }

    /// Deletes the segments that no checkpoint slot, no event and no other segment needs,
    /// once retention lets them go. Returns their paths.
    fn cleanup(&self, checkpoints: &CheckpointState) -> Vec<PathBuf> {
        let slots = &checkpoints.slot_needs[..self.checkpoint_files.len()];
        let Some(slots) = slots
            .iter()
            .map(Option::as_ref)
            .collect::<Option<Vec<&SlotNeeds>>>()
        else {
            return Vec::new();
        };
        let Some(coverage) = slots.iter().map(|needs| needs.covered_write_order_id).min() else {
            return Vec::new();
        };
        let needed_by_slots: HashSet<u32> = slots
            .iter()
            .flat_map(|needs| needs.segments.iter().copied())
            .collect();
        let handles = self.registry.handles();
        let present: HashSet<u32> = handles.iter().map(|(id, _)| *id).collect();
        let (mut candidates, outlives) = {
            let state = self.queue.state.lock();
            let candidates: HashMap<u32, _> = handles
                .into_iter()
                .filter(|(id, handle)| {
                    handle.meta.is_closed()
                        && handle
                            .meta
                            .max_write_order_id
                            .load(std::sync::atomic::Ordering::Acquire)
                            < coverage
                        && !needed_by_slots.contains(id)
                        && !state.live_events.contains_key(id)
                })
                .collect();
            let outlives: HashMap<u32, HashSet<u32>> = candidates
                .keys()
                .map(|id| (*id, state.outlives.get(id).cloned().unwrap_or_default()))
                .collect();
            (candidates, outlives)
        };
        self.apply_retention(&mut candidates);
        // Keep only segments whose every "must outlive" is gone or goes too.
        loop {
            let before = candidates.len();
            let kept: HashSet<u32> = candidates.keys().copied().collect();
            candidates.retain(|id, _| {
                outlives[id]
                    .iter()
                    .all(|other| kept.contains(other) || !present.contains(other))
            });
            if candidates.len() == before {
                break;
            }
        }
        let mut remaining: HashSet<u32> = candidates.keys().copied().collect();
        let mut deleted = Vec::new();
        while !remaining.is_empty() {
            // Next: a segment none of whose "must outlive" is still waiting; in a cycle
            // (concurrent dirs can produce one) the lowest id.
            let next = remaining
                .iter()
                .copied()
                .filter(|id| outlives[id].iter().all(|other| !remaining.contains(other)))
                .min()
                .unwrap_or_else(|| *remaining.iter().min().expect("not empty"));
            remaining.remove(&next);
            let handle = &candidates[&next];
            let dir = handle
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            self.registry.remove(next);
            let removed = self
                .storage
                .remove_file(&handle.path)
                .and_then(|()| self.storage.sync_dir(&dir));
            if let Err(error) = removed {
                warn!(channel = %self.name, segment = %handle.path.display(), %error, "segment cleanup stopped");
                break;
            }
            deleted.push(next);
        }
        if !deleted.is_empty() {
            let mut state = self.queue.state.lock();
            for id in &deleted {
                state.outlives.remove(id);
            }
            info!(channel = %self.name, segments = deleted.len(), "deleted segments no longer needed");
        }
        deleted
            .iter()
            .map(|id| candidates[id].path.clone())
            .collect()
    }

    /// Drops from `candidates` the segments retention keeps: with `retentionTime`, those
    /// closed more recently; with `retentionBytes`, the newest up to that many bytes; with
    /// both, a segment must satisfy both to be kept.
    fn apply_retention(&self, candidates: &mut HashMap<u32, SegmentHandle>) {
        let retention_ms = self.config.retention_time.as_millis() as u64;
        let retention_bytes = self.config.retention_bytes;
        if retention_ms == 0 && retention_bytes == 0 {
            return;
        }
        let now_ms = unix_time_ms();
        let mut newest_first: Vec<(u32, u64, u64)> = candidates
            .iter()
            .map(|(id, handle)| {
                let meta = &handle.meta;
                (
                    *id,
                    meta.closed_at_ms.load(std::sync::atomic::Ordering::Relaxed),
                    meta.size_bytes.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        newest_first.sort_by_key(|&(id, closed_at, _)| std::cmp::Reverse((closed_at, id)));
        let mut retained_bytes = 0u64;
        for (id, closed_at_ms, size_bytes) in newest_first {
            let young = retention_ms > 0 && now_ms.saturating_sub(closed_at_ms) < retention_ms;
            let fits = retention_bytes > 0 && retained_bytes + size_bytes <= retention_bytes;
            let keep = match (retention_ms > 0, retention_bytes > 0) {
                (true, true) => young && fits,
                _ => young || fits,
            };
            if keep {
                retained_bytes += size_bytes;
                candidates.remove(&id);
            }
        }
    }
}
