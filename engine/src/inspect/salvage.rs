//! Salvage: copy every committed, untaken event that can still be read into a new
//! channel, and say exactly what could not be.
//!
//! The new channel is written through [`FileChannel`] with ordinary put transactions, in
//! the original queue order, so it is a channel like any other: its own segments,
//! checkpoint and write-order ids. The damaged channel is only read.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::channel::{Channel, Transaction};
use crate::config::FileChannelConfig;
use crate::file::FileChannel;
use crate::record::EventPointer;
use crate::storage::Storage;

use super::channel_scan::{ChannelScan, EventReader};
use super::error::InspectError;
use super::log::{CommittedTransaction, DamageLocation, UncommittedReason, UncommittedTransaction};
use super::progress::Progress;
use super::scan::{DamageKind, DamagedRegion};

/// Directory names inside a salvage destination.
const SALVAGE_DATA_DIR: &str = "data";
const SALVAGE_CHECKPOINT_DIR: &str = "checkpoint";
const SALVAGE_BACKUP_CHECKPOINT_DIR: &str = "backup-checkpoint";

/// What a salvage wrote and what it could not save.
#[derive(Debug, Clone)]
pub struct SalvageReport {
    /// The new channel's settings (the source's, with directories under the destination):
    /// point the configuration at these directories to use it.
    pub destination: FileChannelConfig,
    /// Events written to the new channel.
    pub events_salvaged: u64,
    /// Damaged regions of the source, with their segment files.
    pub damaged_regions: Vec<(PathBuf, DamagedRegion)>,
    /// Committed transactions that lost records to damage (their readable events were
    /// salvaged).
    pub damaged_transactions: Vec<CommittedTransaction>,
    /// Records whose commit record may have been destroyed: not salvaged, since their
    /// commit cannot be proven.
    pub unconfirmed_transactions: Vec<UncommittedTransaction>,
    /// Write-order ids that fell inside damaged regions (inclusive ranges), with the
    /// damage: records that existed and are gone.
    pub missing_write_order_ids: Vec<(DamageLocation, u64, u64)>,
    /// Queued events whose put record could not be read back.
    pub unreadable_events: Vec<(EventPointer, String)>,
    /// Put events committed but lost to damage.
    pub lost_put_events: u64,
    /// Taken events whose take record was lost: if their puts survived, the salvage
    /// delivers them again (at-least-once).
    pub lost_take_events: u64,
}

impl ChannelScan {
    /// Write-order ids that lie inside corrupted regions: between the valid records on
    /// either side of the damage in the same segment, and found nowhere in the channel.
    pub fn missing_write_order_ids(&self) -> Vec<(DamageLocation, u64, u64)> {
        let present: BTreeSet<u64> = self
            .segments
            .iter()
            .flat_map(|segment| {
                segment
                    .records
                    .iter()
                    .map(|record| record.header.write_order_id)
            })
            .collect();
        let mut missing = Vec::new();
        for segment in &self.segments {
            for region in &segment.damaged_regions {
                if region.kind != DamageKind::Corruption {
                    continue;
                }
                let before = segment
                    .records
                    .iter()
                    .filter(|record| record.offset < region.offset)
                    .map(|record| record.header.write_order_id)
                    .max();
                let after = segment
                    .records
                    .iter()
                    .filter(|record| record.offset >= region.end_offset)
                    .map(|record| record.header.write_order_id)
                    .min();
                let (Some(before), Some(after)) = (before, after) else {
                    continue;
                };
                let location = DamageLocation {
                    file: segment.path.clone(),
                    offset: region.offset,
                };
                let mut run: Option<(u64, u64)> = None;
                for id in before + 1..after {
                    if present.contains(&id) {
                        if let Some((first, last)) = run.take() {
                            missing.push((location.clone(), first, last));
                        }
                    } else {
                        run = Some(run.map_or((id, id), |(first, _)| (first, id)));
                    }
                }
                if let Some((first, last)) = run {
                    missing.push((location, first, last));
                }
            }
        }
        missing
    }
}

/// The source's settings with every directory moved under `destination`.
fn destination_config(
    source: &FileChannelConfig,
    destination: &Path,
    depth: u64,
) -> FileChannelConfig {
    let mut config = source.clone();
    config.data_dirs = if source.data_dirs.len() == 1 {
        vec![destination.join(SALVAGE_DATA_DIR)]
    } else {
        (0..source.data_dirs.len())
            .map(|index| destination.join(format!("{SALVAGE_DATA_DIR}{index}")))
            .collect()
    };
    config.checkpoint_dir = destination.join(SALVAGE_CHECKPOINT_DIR);
    if config.use_dual_checkpoints {
        config.backup_checkpoint_dir = Some(destination.join(SALVAGE_BACKUP_CHECKPOINT_DIR));
    }
    // The salvaged backlog may exceed `capacity` (a restart accepts that); let it in.
    config.capacity = config.capacity.max(depth);
    config
}

/// Writes every committed, untaken, readable event of `scan` into a new channel under
/// `destination` (which must be missing or empty), in queue order.
pub fn salvage(
    storage: &Arc<dyn Storage>,
    scan: &ChannelScan,
    destination: &Path,
    progress: &dyn Progress,
) -> Result<SalvageReport, InspectError> {
    match storage.list_dir(destination) {
        Ok(entries) if !entries.is_empty() => {
            return Err(InspectError::DestinationNotEmpty {
                path: destination.to_path_buf(),
            })
        }
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(InspectError::io(destination, "list", source)),
    }
    let depth = scan.log.queue.len() as u64;
    let config = destination_config(&scan.config, destination, depth);
    let batch_size = config.transaction_capacity.min(config.capacity).max(1) as usize;
    let channel =
        FileChannel::open_with_storage(&scan.channel, config.clone(), Arc::clone(storage))?;
    let mut reader = EventReader::new(storage.as_ref(), scan);
    let mut unreadable_events = Vec::new();
    let mut events_salvaged = 0u64;
    progress.begin("salvaging events", depth);
    for batch in scan.log.queue.chunks(batch_size) {
        let mut transaction = channel.transaction()?;
        for queued in batch {
            match reader.read(queued.pointer) {
                Ok(event) => {
                    transaction.put(event)?;
                    events_salvaged += 1;
                }
                Err(error) => unreadable_events.push((queued.pointer, error.to_string())),
            }
        }
        Box::new(transaction).commit()?;
        progress.advance(batch.len() as u64);
    }
    progress.finish();
    channel.close()?;
    let damaged_transactions: Vec<CommittedTransaction> = scan
        .log
        .committed
        .iter()
        .filter(|transaction| transaction.loss.is_some())
        .cloned()
        .collect();
    let lost_put_events = damaged_transactions
        .iter()
        .filter_map(|transaction| transaction.loss.as_ref())
        .map(|loss| u64::from(loss.lost_put_events))
        .sum();
    let lost_take_events = damaged_transactions
        .iter()
        .filter_map(|transaction| transaction.loss.as_ref())
        .map(|loss| u64::from(loss.lost_take_events))
        .sum();
    Ok(SalvageReport {
        destination: config,
        events_salvaged,
        damaged_regions: scan
            .segments
            .iter()
            .flat_map(|segment| {
                segment
                    .damaged_regions
                    .iter()
                    .map(|region| (segment.path.clone(), region.clone()))
            })
            .collect(),
        damaged_transactions,
        unconfirmed_transactions: scan
            .log
            .uncommitted
            .iter()
            .filter(|transaction| matches!(transaction.reason, UncommittedReason::DamageFollows(_)))
            .cloned()
            .collect(),
        missing_write_order_ids: scan.missing_write_order_ids(),
        unreadable_events,
        lost_put_events,
        lost_take_events,
    })
}
