//! [`FileChannel`], the handle its users hold: what it tells about itself, how it closes,
//! and how it and its transactions fulfil the channel contract
//! ([`Channel`], [`Transaction`]) with the pieces of this module.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::maintenance::CheckpointReport;
use super::shared::Shared;
use super::transaction::FileTransaction;
use crate::channel::{
    Arrivals, Channel, ChannelHealth, ChannelStats, CommitAttempt, PendingCommit, PutAttempt,
    TakeStop, Transaction,
};
use crate::config::FileChannelConfig;
use crate::error::ChannelError;
use crate::event::Event;
use crate::figures::{DirStats, RecoveryReport};
use crate::record::EventPointer;
use crate::storage::Storage;

/// A running file channel's in-memory state, from [`FileChannel::live_figures`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveFigures {
    /// Events queued, ready to be taken.
    pub queued_events: u64,
    /// The next event a take gets: the oldest queued event.
    pub queue_head: Option<EventPointer>,
    /// The newest queued event.
    pub queue_tail: Option<EventPointer>,
    /// Transactions begun and not yet committed or rolled back.
    pub open_transactions: u64,
    /// Events taken by open transactions: still in the channel's size, back at the head
    /// of the queue if their transaction rolls back.
    pub in_flight_taken_events: u64,
    /// Events put by open transactions (capacity reserved, not yet visible).
    pub in_flight_put_events: u64,
    /// Queued and in-flight events pointing into each segment, by segment id (segments
    /// with none are absent).
    pub live_events_by_segment: BTreeMap<u32, u64>,
}

/// A durable, file-backed channel.
pub struct FileChannel {
    pub(super) shared: Arc<Shared>,
}

impl FileChannel {
    /// Starts a transaction with the concrete type (the [`Channel`] trait boxes it).
    ///
    /// Refused once the channel is closed. A channel that has failed still begins
    /// transactions, as Flume's does, so that each put, take and commit in them is
    /// refused and counted where Flume counts it (a refused put is an
    /// `EventPutErrorCount`).
    pub fn transaction(&self) -> Result<FileTransaction, ChannelError> {
        self.shared.check_open()?;
        Ok(FileTransaction::begin(&self.shared))
    }

    /// Writes a checkpoint now and deletes the segments it makes unnecessary.
    pub fn checkpoint_now(&self) -> Result<CheckpointReport, ChannelError> {
        self.shared.checkpoint()
    }

    /// The settings the channel runs with.
    pub fn config(&self) -> &FileChannelConfig {
        &self.shared.config
    }

    /// Events queued (not counting those taken by open transactions).
    pub fn queued_events(&self) -> u64 {
        self.shared.queue.state.lock().queue.len() as u64
    }

    /// What the channel holds in memory right now: the queue, open transactions and what
    /// they hold, live events per segment. One snapshot under the queue's lock.
    pub fn live_figures(&self) -> LiveFigures {
        let state = self.shared.queue.state.lock();
        LiveFigures {
            queued_events: state.queue.len() as u64,
            queue_head: state.queue.front().copied(),
            queue_tail: state.queue.back().copied(),
            open_transactions: self.shared.open_transactions.load(Ordering::Relaxed),
            in_flight_taken_events: state.in_flight.len() as u64,
            in_flight_put_events: state.reserved_puts,
            live_events_by_segment: state
                .live_events
                .iter()
                .map(|(&segment_id, &events)| (segment_id, events))
                .collect(),
        }
    }

    /// Segment files currently known, by id.
    pub fn segment_paths(&self) -> Vec<(u32, PathBuf)> {
        self.shared.registry.segment_paths()
    }

    /// The storage the channel's files live on (for read-only scans by `inspect`).
    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }

    /// Re-reads free space now instead of waiting for the background refresh.
    pub fn refresh_free_space(&self) {
        self.shared.space.refresh(self.shared.storage.as_ref());
    }
}

/// Stops the channel: no new transactions, background work stopped, writers drained and
/// their segments closed, commits in flight applied, then (with `checkpointOnClose`) a
/// final checkpoint, so that the next start replays nothing. Safe to call more than once.
fn close(shared: &Shared) -> Result<(), ChannelError> {
    if shared.closed.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    shared.maintenance.stop();
    for dir in &shared.dirs {
        dir.writer.shutdown();
    }
    shared
        .queue
        .wait_for_allocated_commits(&shared.next_write_order_id);
    let mut result = Ok(());
    if shared.config.checkpoint_on_close && shared.health.failure().is_none() {
        if let Err(error) = shared.checkpoint() {
            result = Err(error);
        }
    }
    shared.counters.mark_stopped();
    shared.locks.lock().clear();
    // Wake anyone waiting so they notice the channel closed.
    shared.queue.wake_all();
    info!(channel = %shared.name, "file channel closed");
    if let Some(reason) = shared.health.failure() {
        return Err(ChannelError::Failed {
            channel: shared.name.clone(),
            reason,
        });
    }
    result
}

impl Drop for FileChannel {
    fn drop(&mut self) {
        let _ = close(&self.shared);
    }
}

impl Channel for FileChannel {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn arrivals(&self) -> Option<&Arrivals> {
        Some(&self.shared.queue.arrivals)
    }

    fn begin(&self) -> Result<Box<dyn Transaction>, ChannelError> {
        Ok(Box::new(self.transaction()?))
    }

    /// Copies the head's pointers under the queue lock, then reads their events without
    /// it (a read may wait for the device; puts and takes must not). An event taken and
    /// cleaned up meanwhile cannot be read any more: the peek ends there, since it is no
    /// longer at the head. A read failure of an event still queued is returned, and does
    /// not fail the channel (the take that reaches it will).
    fn peek(
        &self,
        max_events: usize,
        admit: &mut dyn FnMut(&Event) -> bool,
    ) -> Option<Result<Vec<Event>, ChannelError>> {
        Some(self.peek_events(max_events, admit))
    }

    fn stats(&self) -> ChannelStats {
        let size = self.shared.queue.state.lock().size();
        self.shared
            .counters
            .snapshot(size, self.shared.config.capacity)
    }

    fn health(&self) -> ChannelHealth {
        if let Some(reason) = self.shared.health.failure() {
            ChannelHealth::Failed { reason }
        } else if self.shared.closed.load(Ordering::Acquire) {
            ChannelHealth::Closed
        } else if let Err(error) = self.shared.space.check_put(&self.shared.name, 0) {
            ChannelHealth::ReadOnly {
                reason: error.to_string(),
            }
        } else {
            ChannelHealth::Open
        }
    }

    fn close(&self) -> Result<(), ChannelError> {
        close(&self.shared)
    }

    fn checkpoint(&self) -> Result<(), ChannelError> {
        self.shared.checkpoint().map(|_| ())
    }

    fn recovery_report(&self) -> Option<RecoveryReport> {
        Some(self.shared.recovery.clone())
    }

    fn dir_stats(&self) -> Vec<(PathBuf, Arc<DirStats>)> {
        self.shared
            .dirs
            .iter()
            .map(|dir| (dir.path.clone(), Arc::clone(&dir.writer.stats)))
            .collect()
    }
}

impl Transaction for FileTransaction {
    fn put(&mut self, event: Event) -> Result<(), ChannelError> {
        self.put_waiting(event)
    }

    fn try_put(&mut self, event: Event) -> Result<PutAttempt, ChannelError> {
        self.put_without_blocking(event)
    }

    fn try_take_many(
        &mut self,
        max_events: usize,
        accept: &mut dyn FnMut(&Event) -> bool,
        taken: &mut Vec<Event>,
    ) -> Result<TakeStop, ChannelError> {
        self.take_many_without_blocking(max_events, accept, taken)
    }

    fn try_commit_pipelined(self: Box<Self>) -> Result<CommitAttempt, ChannelError> {
        self.try_submit_commit()
    }

    fn take(&mut self) -> Result<Option<Event>, ChannelError> {
        self.take_event(None)
    }

    fn take_waiting(&mut self, wait: Duration) -> Result<Option<Event>, ChannelError> {
        self.take_event(Some(wait))
    }

    fn commit(self: Box<Self>) -> Result<(), ChannelError> {
        self.submit_commit()?.complete(true)
    }

    fn commit_pipelined(self: Box<Self>) -> Result<Box<dyn PendingCommit>, ChannelError> {
        Ok(Box::new(self.submit_commit()?))
    }

    fn rollback(mut self: Box<Self>) -> Result<(), ChannelError> {
        self.rollback_in_memory();
        Ok(())
    }
}

impl FileChannel {
    fn peek_events(
        &self,
        max_events: usize,
        admit: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<Vec<Event>, ChannelError> {
        let shared = &self.shared;
        shared.check_usable()?;
        let head: Vec<(u64, EventPointer)> = {
            let state = shared.queue.state.lock();
            state
                .queue
                .iter_keyed()
                .take(max_events)
                .map(|(key, pointer)| (key, *pointer))
                .collect()
        };
        let mut events = Vec::with_capacity(head.len());
        for (key, pointer) in head {
            let event = match shared.registry.read_event(pointer) {
                Ok(event) => event,
                Err(failure) => {
                    let still_queued = shared
                        .queue
                        .state
                        .lock()
                        .queue
                        .iter_keyed()
                        .any(|(queued_key, _)| queued_key == key);
                    if still_queued {
                        return Err(super::transaction::read_failure_error(
                            &shared.name,
                            failure,
                        ));
                    }
                    break;
                }
            };
            if !admit(&event) {
                break;
            }
            events.push(event);
        }
        Ok(events)
    }
}
