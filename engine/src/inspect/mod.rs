//! # Looking into a stopped file channel, and repairing it
//!
//! Operators of other buffers can neither see into them nor mend them. This module reads
//! a file channel's directories — segments, checkpoint slots — without writing a byte,
//! and builds on that read the few repairs a damaged or mistreated channel needs.
//!
//! ## Constraints
//! - **Read-only scans.** [`scan_channel`] opens files only to read them: it never
//!   truncates a torn tail, never removes an unfinished segment, never takes the
//!   channel's directory locks. It can therefore run beside a live channel, though what
//!   it then sees of the active segments may be mid-write (reported as a torn tail).
//! - **Every problem, not the first.** Recovery stops a segment at its first bad record;
//!   the scan resyncs past damage (see [`scan`]) and reports each damaged region with its
//!   file and offsets, classified by recovery's own rules as a torn tail (a restart
//!   repairs it) or corruption (a restart refuses to start).
//! - **Repairs go through the channel.** Salvage, checkpoint rebuild and replay write
//!   only through [`FileChannel`]: a salvage fills a *new* channel with ordinary puts, a
//!   rebuild opens the channel (full replay) and checkpoints it, a replay puts copies of
//!   taken events back with a transaction. The on-disk rules stay in one place.
//!
//! ## What the pieces do
//! - [`scan`]: every segment, every record, damaged regions.
//! - [`log`]: a full replay in memory: committed transactions (and what damage cost
//!   them), records without a commit, and the queue a restart would rebuild.
//! - [`checkpoints`]: each checkpoint slot decoded and checked against the segments.
//! - [`salvage`], [`rebuild_checkpoint`], [`plan_replay`]/[`execute_replay`]: repairs.
//! - [`LiveInspection`] ([`FileChannel::inspect_live`]): the scan of a running channel
//!   joined with its in-memory queue and open transactions, for inspect through the
//!   server.

mod channel_scan;
pub mod checkpoints;
mod error;
mod live;
pub mod log;
mod progress;
mod repair;
mod replay;
mod salvage;
pub mod scan;

pub use channel_scan::{
    scan_channel, ChannelScan, DataDirReport, DumpedEvent, Problem, QueueSummary, SegmentFigures,
    Severity, Verdict,
};
pub use checkpoints::{CheckpointSlot, CheckpointSlotReport, CheckpointSummary, SlotState};
pub use error::InspectError;
pub use live::LiveInspection;
pub use log::{
    CommittedTransaction, DamageLocation, QueuedEvent, ReplayedLog, TransactionLoss,
    UncommittedReason, UncommittedTransaction,
};
pub use progress::{NoProgress, Progress};
pub use repair::{rebuild_checkpoint, CheckpointRebuildReport};
pub use replay::{execute_replay, plan_replay, ReplayOutcome, ReplayPlan, ReplayPoint};
pub use salvage::{salvage, SalvageReport};
pub use scan::{DamageKind, DamagedRegion, RecordBody, ScannedRecord, SegmentScan};
