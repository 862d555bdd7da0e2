//! Replay (rewind): put back the events taken since a point in time or a write-order id.
//!
//! Taken events stay readable only while their segments do, which is what the retention
//! settings (`retentionTime`, `retentionBytes`) are for. A plan finds the committed take
//! records at or after the point (by the commit record's `committed_unix_ms`, or its
//! write-order id), resolves each taken pointer to its put record, and orders the events
//! as they were originally put. Executing the plan puts *copies* of them through an
//! ordinary transaction: they join the tail of the queue with new write-order ids, and
//! the original take records stay as they are (the log is append-only).
//!
//! Offline, the plan is made from a scan of the stopped channel and executed by opening
//! it. Online, [`FileChannel::replay_plan`] scans the live channel's files read-only —
//! records of a write still in progress look like a torn tail and are left out, which is
//! right since they are not acknowledged — and [`FileChannel::replay_execute`] puts the
//! copies through the open channel.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::channel::{Channel, Transaction};
use crate::file::FileChannel;
use crate::record::EventPointer;
use crate::storage::Storage;

use super::channel_scan::{ChannelScan, EventReader};
use super::error::InspectError;
use super::log::QueuedEvent;
use super::progress::{NoProgress, Progress};
use super::scan::RecordBody;

/// The first segment id a channel ever creates: while it is on disk, no segment has been
/// deleted, so the retained history reaches back to the channel's beginning.
const FIRST_SEGMENT_ID: u32 = 1;

/// Where a replay rewinds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayPoint {
    /// Takes committed at or after this time (Unix milliseconds, the committer's clock).
    FromUnixMs(u64),
    /// Takes whose commit record's write-order id is at least this.
    FromWriteOrderId(u64),
}

/// What a replay would re-enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    /// The point.
    pub point: ReplayPoint,
    /// Committed transactions with takes at or after the point.
    pub take_transactions: u64,
    /// Events to put back, in their original put order.
    pub events: Vec<QueuedEvent>,
    /// Segments holding those events.
    pub segments: Vec<u32>,
    /// Events taken since the point whose put records are no longer retained.
    pub not_retained: Vec<EventPointer>,
    /// The earliest commit still on disk: `(write-order id, unix ms)`.
    pub oldest_retained_commit: Option<(u64, u64)>,
    /// Whether older segments were deleted and the point lies before the oldest retained
    /// commit, so that takes between the point and that commit cannot be seen.
    pub history_truncated: bool,
}

/// What executing a plan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Events put back.
    pub events_replayed: u64,
    /// Transactions used to put them.
    pub transactions: u64,
}

/// Plans a replay from a scan. Changes nothing.
pub fn plan_replay(scan: &ChannelScan, point: ReplayPoint) -> ReplayPlan {
    let committed_events = scan.log.committed_events();
    let mut take_transactions = 0u64;
    let mut events = Vec::new();
    let mut not_retained = Vec::new();
    for transaction in &scan.log.committed {
        let since = match point {
            ReplayPoint::FromUnixMs(unix_ms) => transaction.summary.committed_unix_ms >= unix_ms,
            ReplayPoint::FromWriteOrderId(id) => transaction.commit_write_order_id >= id,
        };
        if !since || transaction.takes.is_empty() {
            continue;
        }
        take_transactions += 1;
        for pointer in &transaction.takes {
            match committed_events.get(pointer) {
                Some(event) => events.push(*event),
                None => not_retained.push(*pointer),
            }
        }
    }
    events.sort_by_key(|event| (event.put_write_order_id, event.pointer.event_index));
    events.dedup_by_key(|event| event.pointer);
    let segments: Vec<u32> = events
        .iter()
        .map(|event| event.pointer.segment_id)
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .collect();
    let oldest_retained_commit = scan
        .segments
        .iter()
        .flat_map(|segment| segment.records.iter())
        .filter_map(|record| match &record.body {
            RecordBody::Commit(summary) => {
                Some((record.header.write_order_id, summary.committed_unix_ms))
            }
            _ => None,
        })
        .min();
    let segments_deleted = !scan
        .segments
        .iter()
        .any(|segment| segment.segment_id == FIRST_SEGMENT_ID);
    let history_truncated = segments_deleted
        && oldest_retained_commit.is_some_and(|(id, unix_ms)| match point {
            ReplayPoint::FromUnixMs(from) => from < unix_ms,
            ReplayPoint::FromWriteOrderId(from) => from < id,
        });
    ReplayPlan {
        point,
        take_transactions,
        events,
        segments,
        not_retained,
        oldest_retained_commit,
        history_truncated,
    }
}

/// Puts copies of the plan's events into `channel`, in order, in transactions of at most
/// `transactionCapacity` events. Reads every event before writing any, so an unreadable
/// event stops the replay before it changes anything.
fn put_copies(
    storage: &dyn Storage,
    scan: &ChannelScan,
    plan: &ReplayPlan,
    channel: &FileChannel,
    progress: &dyn Progress,
) -> Result<ReplayOutcome, InspectError> {
    let mut reader = EventReader::new(storage, scan);
    let events = plan
        .events
        .iter()
        .map(|event| reader.read(event.pointer))
        .collect::<Result<Vec<_>, _>>()?;
    let config = channel.config();
    let batch_size = config.transaction_capacity.min(config.capacity).max(1) as usize;
    let mut transactions = 0u64;
    let mut events_replayed = 0u64;
    progress.begin("replaying events", events.len() as u64);
    for batch in events.chunks(batch_size) {
        let committed = channel.transaction().and_then(|mut transaction| {
            for event in batch {
                transaction.put(event.clone())?;
            }
            Box::new(transaction).commit()
        });
        if let Err(source) = committed {
            progress.finish();
            // Before the first commit nothing changed; after it, say how far it got.
            return Err(if transactions == 0 {
                InspectError::Channel(source)
            } else {
                InspectError::ReplayInterrupted {
                    events_replayed,
                    events_planned: events.len() as u64,
                    transactions,
                    source,
                }
            });
        }
        transactions += 1;
        events_replayed += batch.len() as u64;
        progress.advance(batch.len() as u64);
    }
    progress.finish();
    Ok(ReplayOutcome {
        events_replayed,
        transactions,
    })
}

/// Executes a plan made from `scan` of a stopped channel: opens the channel with the
/// scan's settings, puts the copies, and closes it (checkpointing on close as configured).
pub fn execute_replay(
    storage: &Arc<dyn Storage>,
    scan: &ChannelScan,
    plan: &ReplayPlan,
    progress: &dyn Progress,
) -> Result<ReplayOutcome, InspectError> {
    let channel =
        FileChannel::open_with_storage(&scan.channel, scan.config.clone(), Arc::clone(storage))?;
    let outcome = put_copies(storage.as_ref(), scan, plan, &channel, progress)?;
    channel.close()?;
    Ok(outcome)
}

impl FileChannel {
    /// Plans a replay of this open channel: a read-only scan of its files (see the module
    /// doc for why that is safe beside the writers).
    pub fn replay_plan(&self, point: ReplayPoint) -> Result<ReplayPlan, InspectError> {
        let scan = self.scan_own_files()?;
        Ok(plan_replay(&scan, point))
    }

    /// Plans and executes a replay on this open channel: copies of the events taken since
    /// `point` join the tail of the queue, in their original order.
    pub fn replay_execute(
        &self,
        point: ReplayPoint,
    ) -> Result<(ReplayPlan, ReplayOutcome), InspectError> {
        let scan = self.scan_own_files()?;
        let plan = plan_replay(&scan, point);
        let outcome = put_copies(self.storage().as_ref(), &scan, &plan, self, &NoProgress)?;
        Ok((plan, outcome))
    }
}
