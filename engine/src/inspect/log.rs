//! Rebuilding the channel's transactions and queue in memory from scanned records.
//!
//! This is a full replay, like recovery without a checkpoint, with two differences: it
//! never stops at damage (a transaction that lost records to damage is kept with what
//! remains and its loss counted), and it keeps what an operator wants to see — which
//! transaction put each event, when it committed, which takes removed which events.
//!
//! Why a full replay of what remains is exact even after segment cleanup: a put record
//! survives while any of its events is live, and the take records that removed its other
//! events survive as long as it does (see `docs/format.md`, "Segment cleanup").

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::record::{CommitSummary, EventPointer, SEGMENT_HEADER_BYTES};

use super::scan::{DamageKind, RecordBody, ScannedRecord, SegmentScan};

/// A damaged place that explains a loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamageLocation {
    /// The segment file.
    pub file: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
}

/// What a committed transaction lost to damage: its commit record vouches for more than
/// the readable log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionLoss {
    /// Put records vouched for but not found.
    pub lost_put_records: u32,
    /// Put events vouched for but not found.
    pub lost_put_events: u32,
    /// Taken events vouched for but not found (a salvage may deliver them again).
    pub lost_take_events: u32,
    /// The damage before the commit record in the same directory, if any; `None` when
    /// the counts disagree with no damage in sight (itself corruption).
    pub cause: Option<DamageLocation>,
}

/// A committed transaction found in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTransaction {
    /// Its id.
    pub transaction_id: u64,
    /// Write-order id of its commit record: the order in which commits took effect.
    pub commit_write_order_id: u64,
    /// What the commit record says (counts and commit time).
    pub summary: CommitSummary,
    /// The commit record's segment file and offset.
    pub commit_file: PathBuf,
    /// The commit record's offset.
    pub commit_offset: u64,
    /// Its events, in put order, with the write-order id of the put record holding each.
    pub puts: Vec<(EventPointer, u64)>,
    /// The events it took, in take order.
    pub takes: Vec<EventPointer>,
    /// Set when records it vouches for are missing.
    pub loss: Option<TransactionLoss>,
}

/// Why records without a commit record are not a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UncommittedReason {
    /// They end in a torn tail: the crash came before their commit was synced, so the
    /// commit was never acknowledged. A restart discards them.
    TornTail,
    /// Damage follows them: their commit record may have been in the damaged bytes.
    DamageFollows(DamageLocation),
    /// Another transaction's records follow, or the log ends, without a commit.
    NoCommitRecord,
}

/// Records of a transaction that has no (readable) commit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncommittedTransaction {
    /// Its id.
    pub transaction_id: u64,
    /// Segment file of its first record.
    pub file: PathBuf,
    /// Offset of its first record.
    pub offset: u64,
    /// Put events in its readable records.
    pub put_events: u32,
    /// Taken events in its readable records.
    pub take_events: u32,
    /// Why it is not counted as committed.
    pub reason: UncommittedReason,
}

/// An event in the rebuilt queue, with where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Where it lives.
    pub pointer: EventPointer,
    /// The transaction that put it.
    pub transaction_id: u64,
    /// The write-order id of the put record holding it.
    pub put_write_order_id: u64,
    /// When that transaction committed.
    pub committed_unix_ms: u64,
}

/// The replayed log.
#[derive(Debug, Clone, Default)]
pub struct ReplayedLog {
    /// Committed transactions, in commit order (by commit write-order id).
    pub committed: Vec<CommittedTransaction>,
    /// Records without a readable commit.
    pub uncommitted: Vec<UncommittedTransaction>,
    /// The queue a restart would rebuild: committed events not taken, in order.
    pub queue: Vec<QueuedEvent>,
}

impl ReplayedLog {
    /// Every committed event (taken or not) by pointer.
    pub fn committed_events(&self) -> HashMap<EventPointer, QueuedEvent> {
        self.committed
            .iter()
            .flat_map(|transaction| {
                transaction
                    .puts
                    .iter()
                    .map(move |&(pointer, put_write_order_id)| {
                        (
                            pointer,
                            QueuedEvent {
                                pointer,
                                transaction_id: transaction.transaction_id,
                                put_write_order_id,
                                committed_unix_ms: transaction.summary.committed_unix_ms,
                            },
                        )
                    })
            })
            .collect()
    }
}

struct Pending {
    transaction_id: u64,
    file: PathBuf,
    offset: u64,
    starts_a_segment: bool,
    puts: Vec<(EventPointer, u64)>,
    put_records: u32,
    takes: Vec<EventPointer>,
}

impl Pending {
    fn uncommitted(self, reason: UncommittedReason) -> UncommittedTransaction {
        UncommittedTransaction {
            transaction_id: self.transaction_id,
            file: self.file,
            offset: self.offset,
            put_events: self.puts.len() as u32,
            take_events: self.takes.len() as u32,
            reason,
        }
    }
}

enum Item<'a> {
    Record(&'a ScannedRecord),
    Damage(DamageLocation, DamageKind),
}

/// Replays the scanned segments: each directory oldest segment first, then all
/// committed transactions in commit order.
pub(crate) fn replay(segments: &[SegmentScan], dir_count: usize) -> ReplayedLog {
    let mut log = ReplayedLog::default();
    for dir_index in 0..dir_count {
        let mut pending: Option<Pending> = None;
        let mut damage_since_commit: Option<DamageLocation> = None;
        let mut last_damage: Option<(DamageLocation, DamageKind)> = None;
        for segment in segments
            .iter()
            .filter(|segment| segment.dir_index == dir_index)
        {
            let mut items: Vec<(u64, Item<'_>)> = segment
                .kept_records()
                .iter()
                .map(|record| (record.offset, Item::Record(record)))
                .collect();
            items.extend(segment.damaged_regions.iter().map(|region| {
                (
                    region.offset,
                    Item::Damage(
                        DamageLocation {
                            file: segment.path.clone(),
                            offset: region.offset,
                        },
                        region.kind,
                    ),
                )
            }));
            items.sort_by_key(|(offset, _)| *offset);
            for (_, item) in items {
                match item {
                    Item::Damage(location, kind) => {
                        if kind == DamageKind::Corruption {
                            damage_since_commit = Some(location.clone());
                        }
                        last_damage = Some((location, kind));
                    }
                    Item::Record(record) => {
                        if pending
                            .as_ref()
                            .is_some_and(|open| open.transaction_id != record.header.transaction_id)
                        {
                            let open = pending.take().expect("checked");
                            let reason = match &last_damage {
                                Some((location, _))
                                    if (&location.file, location.offset)
                                        > (&open.file, open.offset) =>
                                {
                                    UncommittedReason::DamageFollows(location.clone())
                                }
                                _ => UncommittedReason::NoCommitRecord,
                            };
                            log.uncommitted.push(open.uncommitted(reason));
                        }
                        let open = pending.get_or_insert_with(|| Pending {
                            transaction_id: record.header.transaction_id,
                            file: segment.path.clone(),
                            offset: record.offset,
                            starts_a_segment: record.offset == SEGMENT_HEADER_BYTES as u64,
                            puts: Vec::new(),
                            put_records: 0,
                            takes: Vec::new(),
                        });
                        match &record.body {
                            RecordBody::Put { event_count } => {
                                open.put_records += 1;
                                open.puts.extend((0..*event_count).map(|event_index| {
                                    (
                                        EventPointer {
                                            segment_id: record.segment_id,
                                            record_offset: record.offset as u32,
                                            event_index,
                                        },
                                        record.header.write_order_id,
                                    )
                                }));
                            }
                            RecordBody::Take { pointers } => {
                                open.takes.extend(pointers.iter().copied());
                            }
                            RecordBody::Rollback => pending = None,
                            RecordBody::Commit(summary) => {
                                let open = pending.take().expect("inserted above");
                                let loss = loss_of(&open, summary, damage_since_commit.take());
                                log.committed.push(CommittedTransaction {
                                    transaction_id: open.transaction_id,
                                    commit_write_order_id: record.header.write_order_id,
                                    summary: *summary,
                                    commit_file: segment.path.clone(),
                                    commit_offset: record.offset,
                                    puts: open.puts,
                                    takes: open.takes,
                                    loss,
                                });
                            }
                        }
                    }
                }
            }
        }
        if let Some(open) = pending {
            let reason = match last_damage {
                Some((_, DamageKind::TornTail)) => UncommittedReason::TornTail,
                Some((location, _))
                    if (&location.file, location.offset) > (&open.file, open.offset) =>
                {
                    UncommittedReason::DamageFollows(location)
                }
                _ => UncommittedReason::NoCommitRecord,
            };
            log.uncommitted.push(open.uncommitted(reason));
        }
    }
    log.committed
        .sort_by_key(|transaction| transaction.commit_write_order_id);
    let taken: HashSet<EventPointer> = log
        .committed
        .iter()
        .flat_map(|transaction| transaction.takes.iter().copied())
        .collect();
    log.queue = log
        .committed
        .iter()
        .flat_map(|transaction| {
            transaction
                .puts
                .iter()
                .map(move |&(pointer, put_write_order_id)| QueuedEvent {
                    pointer,
                    transaction_id: transaction.transaction_id,
                    put_write_order_id,
                    committed_unix_ms: transaction.summary.committed_unix_ms,
                })
        })
        .filter(|event| !taken.contains(&event.pointer))
        .collect();
    log
}

/// Compares what a commit vouches for with what was read. A shortfall with no damage
/// before it, in a transaction whose first readable record opens a segment, means the
/// transaction began in a segment cleanup deleted (all its events there were taken):
/// nothing is lost.
fn loss_of(
    open: &Pending,
    summary: &CommitSummary,
    damage: Option<DamageLocation>,
) -> Option<TransactionLoss> {
    let found = (
        open.put_records,
        open.puts.len() as u32,
        open.takes.len() as u32,
    );
    if found == summary.counts() {
        return None;
    }
    if damage.is_none() && open.starts_a_segment {
        return None;
    }
    Some(TransactionLoss {
        lost_put_records: summary.put_records.saturating_sub(found.0),
        lost_put_events: summary.put_events.saturating_sub(found.1),
        lost_take_events: summary.take_events.saturating_sub(found.2),
        cause: damage,
    })
}
