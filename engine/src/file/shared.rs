//! The state a file channel's handle, its transactions and its background thread share,
//! and the checks they all make before they act.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tracing::warn;

use super::checkpoint::CheckpointState;
use super::dir_watch::DirWatch;
use super::health::Health;
use super::queue::EventQueue;
use super::segments::SegmentRegistry;
use super::space::SpaceGuard;
use super::writer::DirWriterHandle;
use crate::channel::ChannelCounters;
use crate::config::FileChannelConfig;
use crate::crypto::Sealer;
use crate::error::ChannelError;
use crate::figures::RecoveryReport;
use crate::storage::{DirLock, Storage};

/// A data directory and its writer.
pub(super) struct DataDir {
    pub(super) path: PathBuf,
    pub(super) writer: DirWriterHandle,
}

pub(super) struct Shared {
    pub(super) name: String,
    pub(super) config: FileChannelConfig,
    pub(super) storage: Arc<dyn Storage>,
    pub(super) dirs: Vec<DataDir>,
    pub(super) registry: Arc<SegmentRegistry>,
    pub(super) queue: EventQueue,
    pub(super) next_transaction_id: AtomicU64,
    /// Transactions begun and not yet committed, rolled back or dropped.
    pub(super) open_transactions: AtomicU64,
    pub(super) next_write_order_id: AtomicU64,
    pub(super) next_segment_id: Arc<AtomicU32>,
    pub(super) stripe_cursor: AtomicUsize,
    pub(super) max_event_bytes: u64,
    pub(super) health: Arc<Health>,
    /// Every directory held open, to notice one removed or replaced under the channel.
    pub(super) dir_watch: Arc<DirWatch>,
    pub(super) space: Arc<SpaceGuard>,
    pub(super) counters: ChannelCounters,
    pub(super) closed: AtomicBool,
    pub(super) locks: Mutex<Vec<Box<dyn DirLock>>>,
    pub(super) recovery: RecoveryReport,
    /// Checkpoint files: primary, then backup when `useDualCheckpoints`.
    pub(super) checkpoint_files: Vec<PathBuf>,
    pub(super) checkpoints: Mutex<CheckpointState>,
    pub(super) maintenance: MaintenanceHandle,
    /// What this open seals put records with (the active key and this open's nonces);
    /// present exactly when the channel encrypts (`encryption.*` is set).
    pub(super) sealer: Option<Sealer>,
}

/// Wakes the background thread early, to stop it.
#[derive(Debug, Default)]
pub(super) struct Signal {
    pub(super) stopped: Mutex<bool>,
    pub(super) wake: Condvar,
}

/// The channel's handle on its background thread (see `maintenance`).
#[derive(Debug, Default)]
pub(super) struct MaintenanceHandle {
    pub(super) signal: Arc<Signal>,
    pub(super) thread: Mutex<Option<JoinHandle<()>>>,
}

impl MaintenanceHandle {
    /// Stops the thread and waits for it. Safe to call more than once.
    pub(super) fn stop(&self) {
        *self.signal.stopped.lock() = true;
        self.signal.wake.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                warn!("the checkpoint thread panicked");
            }
        }
    }
}

impl Shared {
    /// Fails when the channel has failed or is closed.
    pub(super) fn check_usable(&self) -> Result<(), ChannelError> {
        if let Some(reason) = self.health.failure() {
            return Err(ChannelError::Failed {
                channel: self.name.clone(),
                reason,
            });
        }
        self.check_open()
    }

    /// Fails when the channel is closed.
    pub(super) fn check_open(&self) -> Result<(), ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed {
                channel: self.name.clone(),
            });
        }
        Ok(())
    }

    /// [`Self::check_usable`] for a put or a commit of puts: a refusal because the channel
    /// failed (its storage did) counts as a put error, as Flume counts a put that meets an
    /// I/O error.
    pub(super) fn check_usable_for_puts(&self) -> Result<(), ChannelError> {
        let checked = self.check_usable();
        if let Err(ChannelError::Failed { .. }) = &checked {
            ChannelCounters::add(&self.counters.put_error, 1);
        }
        checked
    }

    /// The directory for a transaction writing `bytes`: among the directories with room
    /// above the space guard (any, when the transaction only takes), the one with the
    /// fewest bytes waiting to be written; ties go round-robin.
    pub(super) fn pick_dir(&self, bytes: u64, needs_space: bool) -> Result<&DataDir, ChannelError> {
        let start = self.stripe_cursor.fetch_add(1, Ordering::Relaxed);
        let count = self.dirs.len();
        (0..count)
            .map(|step| (start + step) % count)
            .filter(|&index| !needs_space || self.space.data_dir_has_room(index, bytes))
            .min_by_key(|&index| {
                self.dirs[index]
                    .writer
                    .pending_bytes
                    .load(Ordering::Relaxed)
            })
            .map(|index| &self.dirs[index])
            .ok_or_else(|| {
                self.space
                    .check_put(&self.name, bytes)
                    .err()
                    .unwrap_or_else(|| ChannelError::Failed {
                        channel: self.name.clone(),
                        reason: "no data directory has room".into(),
                    })
            })
    }
}
