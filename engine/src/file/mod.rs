//! # The file channel
//!
//! A durable channel: a write-ahead log striped over one or more data directories, an
//! in-memory queue of pointers into it, and checkpoints of that queue.
//!
//! ## Constraints
//! - A commit is acknowledged only once its records are on stable storage (one
//!   `fdatasync` per writer round; see [`writer`]), unless `fsyncPerTransaction = false`.
//! - Takes see events in put-commit order across all directories.
//! - A rolled-back take returns its events to their places at the head of the queue:
//!   put-commit order holds whatever order open transactions roll back in (each queued
//!   and in-flight event carries an order key; see `ordered_queue`).
//! - Nothing is written before commit: a transaction's puts and takes are buffered in
//!   memory (at most `transactionCapacity` of each) and written as one contiguous group —
//!   put records, a take record, the commit record — so a rolled-back transaction leaves
//!   no trace on disk and recovery needs no rollback records.
//! - Capacity is reserved at put time and waits up to `keep-alive`, as in Flume.
//! - A checkpoint never stops puts and takes for longer than it takes to copy the queue
//!   of pointers; it is written, synced and renamed outside the channel's lock.
//!
//! ## Ordering across directories
//! Each commit draws a contiguous range of write-order ids before it is written. Writers
//! of different directories finish in any order, so finished commits pass through a
//! sequencer that applies them to the queue strictly in write-order-id order — the same
//! order recovery uses — and a commit returns once it is applied. A slow directory delays
//! the visibility of later commits, never their durability (see [`queue`]).
//!
//! ## Segment accounting
//! For every segment the channel counts the queued and in-flight events that point into
//! it, and records which other segments it must outlive: a segment holding a take record
//! must outlive the segments holding the taken events' puts, and a segment holding a
//! commit record must outlive the segments holding that transaction's puts. Cleanup (see
//! [`maintenance`]) deletes a segment only when nothing points into it, a checkpoint
//! covers it, and every segment it must outlive is gone — so even a full replay of what
//! remains never resurrects a taken event or loses a committed one.
//!
//! ## Compression and encryption
//! Committers compress (LZ4, kept only when smaller) and then seal (AES-256-GCM under
//! this open's subkey of the active key) each put record on their own threads, so the
//! dir writer's work does not grow. Each new segment's header names the active key;
//! takes open a record with the key its segment names. Take and commit records hold only
//! pointers and counts and stay in clear (see `docs/design.md`, "Encryption at rest").
//!
//! ## The pieces
//! - [`open`]: locking the directories, loading keys, recovery, starting the writers.
//! - [`file_channel`]: [`FileChannel`], the handle, and the channel contract.
//! - [`transaction`]: puts and takes of an open transaction.
//! - [`commit`]: the commit pipeline, from buffered records to an applied commit.
//! - [`queue`]: the queue of event pointers and the sequencer.
//! - [`writer`]: one writer thread per data directory (group commit).
//! - [`recovery`] with [`recovery_rule`] and [`chunk_reader`]: rebuilding the state at
//!   open; [`checkpoint`]: the checkpoint file; [`maintenance`]: checkpoints and
//!   cleanup in the background; [`segments`], [`space`], [`dir_watch`], [`health`].

pub(crate) mod checkpoint;
pub(crate) mod chunk_reader;
mod commit;
mod dir_watch;
mod file_channel;
mod health;
mod maintenance;
mod open;
mod queue;
pub(crate) mod recovery;
pub(crate) mod recovery_rule;
pub(crate) mod segments;
mod shared;
mod space;
mod transaction;
mod writer;

pub use crate::figures::{DirStats, RecoveryPath, RecoveryProgress, RecoveryReport, TruncatedTail};
pub use commit::SubmittedCommit;
pub use file_channel::{FileChannel, LiveFigures};
pub use maintenance::CheckpointReport;
pub use transaction::FileTransaction;
