//! Figures a durable channel reports through the channel contract
//! ([`Channel::recovery_report`](crate::channel::Channel::recovery_report),
//! [`Channel::dir_stats`](crate::channel::Channel::dir_stats)): how its last start rebuilt
//! it, and what each data directory's writer did. Plain data, so that the contract names
//! them without knowing the channel types that fill them in.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

/// How the last start rebuilt the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPath {
    /// From the primary checkpoint plus the log after it.
    Checkpoint,
    /// From the backup checkpoint plus the log after it.
    BackupCheckpoint,
    /// From the log alone.
    FullReplay,
}

impl RecoveryPath {
    /// The name `/health` reports: `checkpoint`, `backup-checkpoint` or `full-replay`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RecoveryPath::Checkpoint => "checkpoint",
            RecoveryPath::BackupCheckpoint => "backup-checkpoint",
            RecoveryPath::FullReplay => "full-replay",
        }
    }
}

/// A torn tail that recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment.
    pub file: PathBuf,
    /// Where the valid data ended and the file now ends.
    pub offset: u64,
    /// Bytes cut off.
    pub discarded_bytes: u64,
}

/// What the last start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// How the state was rebuilt.
    pub path: RecoveryPath,
    /// Checkpoints that could not be used, with the reason.
    pub unusable_checkpoints: Vec<String>,
    /// Log records read (applied or skipped).
    pub records_replayed: u64,
    /// Bytes of those records.
    pub bytes_replayed: u64,
    /// Committed transactions applied on top of the checkpoint (all of them on a full
    /// replay).
    pub transactions_committed: u64,
    /// Segments read.
    pub segments_scanned: u64,
    /// Segments the checkpoint made it unnecessary to read.
    pub segments_skipped: u64,
    /// Events in the queue after recovery.
    pub events_recovered: u64,
    /// Torn tails cut off.
    pub truncated_tails: Vec<TruncatedTail>,
    /// Segments whose creation never completed (no valid header, nothing after it),
    /// removed.
    pub removed_unfinished_segments: Vec<PathBuf>,
    /// Wall time of the recovery.
    pub duration_ms: u64,
}

/// Replay progress, readable while a channel opens (for `/health` and metrics).
#[derive(Debug, Default)]
pub struct RecoveryProgress {
    /// Bytes of log to read.
    pub bytes_total: AtomicU64,
    /// Bytes of log read so far.
    pub bytes_replayed: AtomicU64,
    /// Records read so far.
    pub records_replayed: AtomicU64,
}

/// Per-directory figures, read by metrics.
#[derive(Debug, Default)]
pub struct DirStats {
    /// Bytes of records written.
    pub bytes_written: AtomicU64,
    /// `fdatasync` calls on segments.
    pub syncs: AtomicU64,
    /// Total time spent in those syncs.
    pub sync_time_us: AtomicU64,
    /// Rounds written (each one write and at most one sync).
    pub rounds: AtomicU64,
    /// Transactions committed through this directory.
    pub transactions: AtomicU64,
    /// Segments created.
    pub segments_created: AtomicU64,
}
