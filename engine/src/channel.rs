//! The channel contract every channel type implements, and Flume's channel counters.
//!
//! A channel is used through transactions, as in Flume: `begin`, then puts and/or takes,
//! then `commit` or `rollback`. Dropping an open transaction rolls it back. A transaction
//! belongs to one user at a time (it is `Send`, not `Sync`); concurrency comes from many
//! transactions.
//!
//! # Calls that never block
//!
//! [`Channel::begin`], [`Transaction::rollback`] and the `try_` calls of a transaction
//! ([`Transaction::try_put`], [`Transaction::try_take_many`],
//! [`Transaction::try_commit_pipelined`]) never block the calling thread: they take
//! short locks and do bounded CPU work, but never wait for room, for an event, for
//! another thread or for disk I/O. An async runtime may call them on its own threads.
//! What would block is handed back (the event, the transaction) for the caller to run
//! where blocking is allowed. The other calls may block.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::unix_time_ms;
use crate::error::ChannelError;
use crate::event::Event;
use crate::figures::{DirStats, RecoveryReport};

/// A named channel that hands out transactions.
pub trait Channel: Send + Sync {
    /// The channel's name, as configured.
    fn name(&self) -> &str;

    /// Starts a transaction. Fails when the channel is closed. A file channel that has
    /// failed still begins one, as Flume's does, and refuses its puts, takes and commit
    /// (counting the refused puts as put errors). Never blocks (see the module
    /// documentation).
    fn begin(&self) -> Result<Box<dyn Transaction>, ChannelError>;

    /// A snapshot of the channel's size, capacity and counters.
    fn stats(&self) -> ChannelStats;

    /// Whether the channel serves requests, and if not, why.
    fn health(&self) -> ChannelHealth;

    /// Stops the channel: waits for commits in progress, syncs and releases its files.
    /// Safe to call more than once.
    fn close(&self) -> Result<(), ChannelError>;

    /// Writes a checkpoint now (durable channels); channels without one return at once.
    fn checkpoint(&self) -> Result<(), ChannelError> {
        Ok(())
    }

    /// How the last start rebuilt the channel (durable channels only).
    fn recovery_report(&self) -> Option<RecoveryReport> {
        None
    }

    /// Per data directory: path and write figures (file-backed channels only).
    fn dir_stats(&self) -> Vec<(std::path::PathBuf, std::sync::Arc<DirStats>)> {
        Vec::new()
    }

    /// What async takers await instead of [`Transaction::take_waiting`], which holds a
    /// thread for the whole wait: signalled whenever events may have become takeable
    /// (a put commit, a rollback returning takes, the channel closing). `None` for a
    /// channel that cannot tell; its callers must use `take_waiting`.
    fn arrivals(&self) -> Option<&Arrivals> {
        None
    }

    /// Copies of the events at the head of the queue, oldest first, without taking them:
    /// at most `max_events`, and only while `admit` says yes (it bounds what the caller can
    /// carry; the first event it refuses ends the peek). Events taken by open
    /// transactions are not at the head and are not shown. Changes nothing: no counter,
    /// no log record, no order. `None` for a channel type that cannot peek.
    fn peek(
        &self,
        max_events: usize,
        admit: &mut dyn FnMut(&Event) -> bool,
    ) -> Option<Result<Vec<Event>, ChannelError>> {
        let _ = (max_events, admit);
        None
    }
}

/// The first `max_events` of `events` while `admit` says yes: a peek at a queue held in
/// memory.
pub(crate) fn peek_in_memory<'e>(
    events: impl Iterator<Item = &'e Event>,
    max_events: usize,
    admit: &mut dyn FnMut(&Event) -> bool,
) -> Vec<Event> {
    events
        .take(max_events)
        .take_while(|event| admit(event))
        .cloned()
        .collect()
}

/// Signals async takers that a channel's events may have changed, so that a take that
/// waits for an event holds no thread (a thousand idle consumers must not occupy a
/// thread pool that commits and checkpoints need).
///
/// Use: [`listen`](Self::listen) first, then look at the channel with a never-blocking
/// take ([`Transaction::try_take_many`]), then await the listener if nothing was there.
/// An arrival between the look and the await still wakes the listener, because it was
/// registered before the look. Wake-ups may be spurious (another taker got the event):
/// look again.
#[derive(Debug, Default)]
pub struct Arrivals {
    event: event_listener::Event,
}

impl Arrivals {
    /// Wakes every listener registered so far. Costs an atomic load when none is.
    pub(crate) fn notify(&self) {
        self.event.notify(usize::MAX);
    }

    /// A listener woken by the next notification (see the type's
    /// documentation for the order of listening and looking).
    pub fn listen(&self) -> ArrivalListener {
        ArrivalListener(self.event.listen())
    }
}

/// A registration with [`Arrivals`]: a future that completes at the next arrival. Needs
/// no particular async runtime.
#[derive(Debug)]
pub struct ArrivalListener(event_listener::EventListener);

impl std::future::Future for ArrivalListener {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(context)
    }
}

/// One transaction on a channel.
pub trait Transaction: Send {
    /// Adds an event to the transaction. It becomes visible to takers only at commit.
    fn put(&mut self, event: Event) -> Result<(), ChannelError>;

    /// Removes the event at the head of the channel into this transaction, or returns
    /// `None` at once when the channel is empty.
    fn take(&mut self) -> Result<Option<Event>, ChannelError>;

    /// Like [`Transaction::take`], but waits up to `wait` for an event to arrive.
    fn take_waiting(&mut self, wait: Duration) -> Result<Option<Event>, ChannelError>;

    /// Makes the transaction's puts visible and its takes final. For durable channels it
    /// returns only once the transaction is on stable storage (unless the channel is
    /// configured to acknowledge before syncing).
    fn commit(self: Box<Self>) -> Result<(), ChannelError>;

    /// Discards the puts and returns the taken events to the head of the channel, each to
    /// its place in put-commit order, whatever order open transactions roll back in.
    /// Never blocks (see the module documentation).
    fn rollback(self: Box<Self>) -> Result<(), ChannelError>;

    /// Starts the commit and returns at once with a handle that completes it. Commits
    /// started one after another this way take effect in the order they were started,
    /// so a caller can have several on their way to the disk and let one sync carry
    /// them all. Each is durable (or failed) when its [`PendingCommit::finish`]
    /// returns, and visible to takers once every commit started before it has finished
    /// as well; finishing them in any order, from any threads, never blocks on another.
    /// Channels that commit synchronously finish here.
    fn commit_pipelined(self: Box<Self>) -> Result<Box<dyn PendingCommit>, ChannelError> {
        self.commit()?;
        Ok(Box::new(AlreadyCommitted))
    }

    /// Like [`Transaction::put`], but never blocks the calling thread (see the module
    /// documentation): when the put would have to wait for room, the event comes back in
    /// [`PutAttempt::WouldBlock`] and the transaction is unchanged. Errors are those of
    /// `put`. The default hands every event back.
    fn try_put(&mut self, event: Event) -> Result<PutAttempt, ChannelError> {
        Ok(PutAttempt::WouldBlock(event))
    }

    /// Takes up to `max_events` events from the head of the channel, as that many
    /// [`Transaction::take`]s would, appending them to `taken`; never blocks the calling
    /// thread: it stops before an event it cannot get without waiting (one that must be
    /// read from the device, say). `accept` sees each event before it is taken and
    /// stops the run by refusing it (the event stays at the head): a caller with a byte
    /// budget takes only what it can carry. Says why it stopped. Fails as `take` does
    /// when the transaction is full before the first event; reaching
    /// `transactionCapacity` later stops it with [`TakeStop::Limit`]. After a failure
    /// part-way, the events taken before it stay in the transaction and in `taken`. The
    /// default takes nothing.
    fn try_take_many(
        &mut self,
        _max_events: usize,
        _accept: &mut dyn FnMut(&Event) -> bool,
        _taken: &mut Vec<Event>,
    ) -> Result<TakeStop, ChannelError> {
        Ok(TakeStop::WouldBlock)
    }

    /// Like [`Transaction::commit_pipelined`], but never blocks the calling thread: a
    /// commit that would have to wait (for room, for the disk, or for long CPU work)
    /// hands the transaction back, unchanged, in [`CommitAttempt::WouldBlock`] (a
    /// channel that cannot tell hands every transaction back).
    fn try_commit_pipelined(self: Box<Self>) -> Result<CommitAttempt, ChannelError>;
}

/// The outcome of [`Transaction::try_put`].
#[must_use]
pub enum PutAttempt {
    /// The event is in the transaction.
    Added,
    /// The channel has no room now; `put` would wait for it. The event is handed back.
    WouldBlock(Event),
}

/// Why [`Transaction::try_take_many`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeStop {
    /// It took `max_events`, the transaction reached `transactionCapacity`, or `accept`
    /// refused the next event.
    Limit,
    /// The channel has nothing more to take.
    Empty,
    /// The next event cannot be had without blocking; a [`Transaction::take`] on a
    /// thread that may block gets it.
    WouldBlock,
}

/// The outcome of [`Transaction::try_commit_pipelined`].
#[must_use]
pub enum CommitAttempt {
    /// The commit is started, as [`Transaction::commit_pipelined`] starts it.
    Started(Box<dyn PendingCommit>),
    /// Committing would block; the transaction is handed back as it was.
    WouldBlock(Box<dyn Transaction>),
}

/// The future [`PendingCommit::finish_async`] returns.
pub type CommitFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ChannelError>> + Send>>;

/// A commit on its way to stable storage (see [`Transaction::commit_pipelined`]).
/// Dropping it unfinished still completes it, blocking until the outcome is known.
pub trait PendingCommit: Send {
    /// Waits until the commit is durable (or failed) and applies it.
    fn finish(self: Box<Self>) -> Result<(), ChannelError>;

    /// The same without holding a thread while the disk syncs: for async callers. The
    /// future needs no particular runtime. Dropped before it completes, the commit still
    /// completes (blocking the dropping thread until the outcome is known).
    fn finish_async(self: Box<Self>) -> CommitFuture {
        Box::pin(std::future::ready(self.finish()))
    }
}

/// A commit that was already complete when it was returned.
pub(crate) struct AlreadyCommitted;

impl PendingCommit for AlreadyCommitted {
    fn finish(self: Box<Self>) -> Result<(), ChannelError> {
        Ok(())
    }
}

/// Whether a channel is serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelHealth {
    /// Serving puts and takes.
    Open,
    /// Serving takes, commits and rollbacks, but refusing puts (for example below the
    /// free-space guard).
    ReadOnly {
        /// Why puts are refused.
        reason: String,
    },
    /// Stopped after a failure that must not be papered over (fsync error, corruption).
    Failed {
        /// What failed, with the file and errno where known.
        reason: String,
    },
    /// Closed by its owner.
    Closed,
}

/// A snapshot of Flume's channel counters plus size and capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// `ChannelSize`. File channel: events queued plus events taken by open transactions.
    /// Memory channel: events queued, as Flume's `queue.size()`.
    pub channel_size: u64,
    /// `ChannelCapacity`.
    pub channel_capacity: u64,
    /// `EventPutAttemptCount`: one per put call, successful or not.
    pub event_put_attempt_count: u64,
    /// `EventPutSuccessCount`: events of committed put transactions.
    pub event_put_success_count: u64,
    /// `EventTakeAttemptCount`: one per take call, including those that found nothing
    /// and those that failed.
    pub event_take_attempt_count: u64,
    /// `EventTakeSuccessCount`: events of committed take transactions.
    pub event_take_success_count: u64,
    /// `EventPutErrorCount`: puts and put commits that failed on the channel's storage
    /// (an I/O error, a directory removed under it, no space at the writer), including
    /// every put refused once the channel has failed.
    pub event_put_error_count: u64,
    /// `EventTakeErrorCount`: takes that failed on an I/O error or corruption.
    pub event_take_error_count: u64,
    /// `CheckpointWriteErrorCount`.
    pub checkpoint_write_error_count: u64,
    /// `CheckpointBackupWriteErrorCount`.
    pub checkpoint_backup_write_error_count: u64,
    /// `StartTime`, milliseconds since the Unix epoch.
    pub start_time_ms: u64,
    /// `StopTime`, milliseconds since the Unix epoch; 0 while running.
    pub stop_time_ms: u64,
}

impl ChannelStats {
    /// `ChannelFillPercentage`: size over capacity, in percent. Flume reports
    /// `Double.MAX_VALUE` for a zero capacity; so do we.
    pub fn channel_fill_percentage(&self) -> f64 {
        if self.channel_capacity == 0 {
            f64::MAX
        } else {
            self.channel_size as f64 * 100.0 / self.channel_capacity as f64
        }
    }
}

/// Flume's channel counters, shared by every channel type. Updated with relaxed atomics:
/// each counter is exact, but a snapshot of several is not taken atomically.
#[derive(Debug, Default)]
pub struct ChannelCounters {
    pub(crate) put_attempt: AtomicU64,
    pub(crate) put_success: AtomicU64,
    pub(crate) take_attempt: AtomicU64,
    pub(crate) take_success: AtomicU64,
    pub(crate) put_error: AtomicU64,
    pub(crate) take_error: AtomicU64,
    pub(crate) checkpoint_write_error: AtomicU64,
    pub(crate) checkpoint_backup_write_error: AtomicU64,
    pub(crate) start_time_ms: AtomicU64,
    pub(crate) stop_time_ms: AtomicU64,
}

impl ChannelCounters {
    /// Counters starting from zero, with the start time set to now.
    pub fn started_now() -> Self {
        let counters = ChannelCounters::default();
        counters
            .start_time_ms
            .store(unix_time_ms(), Ordering::Relaxed);
        counters
    }

    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Counts the take attempts of a [`Transaction::try_take_many`] that took
    /// `taken_events`: one per event, and one more for the look that found the channel
    /// empty or the take that failed (Flume counts every take call, including those that
    /// return nothing and those that throw).
    pub(crate) fn add_take_attempts(
        &self,
        taken_events: usize,
        stop: &Result<TakeStop, ChannelError>,
    ) {
        let empty_or_failed = matches!(stop, Ok(TakeStop::Empty) | Err(_));
        Self::add(
            &self.take_attempt,
            taken_events as u64 + u64::from(empty_or_failed),
        );
    }

    /// How many events a [`Transaction::try_take_many`] of `max_events` may take in a
    /// transaction that holds `taken_events` of `transaction_capacity`; when it holds
    /// them all already, the error a take fails with (counted as an attempt).
    pub(crate) fn take_room(
        &self,
        channel: &str,
        transaction_capacity: u64,
        taken_events: usize,
        max_events: usize,
    ) -> Result<usize, ChannelError> {
        let room = transaction_capacity.saturating_sub(taken_events as u64);
        if room == 0 {
            Self::add(&self.take_attempt, 1);
            return Err(ChannelError::TransactionFull {
                channel: channel.to_string(),
                transaction_capacity,
                operation: "take",
            });
        }
        Ok(usize::try_from(room).unwrap_or(usize::MAX).min(max_events))
    }

    /// Records the stop time (the channel was closed).
    pub fn mark_stopped(&self) {
        self.stop_time_ms.store(unix_time_ms(), Ordering::Relaxed);
    }

    /// Counts `events` put attempts (for channels outside the engine, such as Kafka's).
    pub fn count_put_attempts(&self, events: u64) {
        Self::add(&self.put_attempt, events);
    }

    /// Counts `events` committed puts.
    pub fn count_put_successes(&self, events: u64) {
        Self::add(&self.put_success, events);
    }

    /// Counts `events` puts whose commit failed.
    pub fn count_put_errors(&self, events: u64) {
        Self::add(&self.put_error, events);
    }

    /// Counts `events` take attempts (including takes that found nothing).
    pub fn count_take_attempts(&self, events: u64) {
        Self::add(&self.take_attempt, events);
    }

    /// Counts `events` committed takes.
    pub fn count_take_successes(&self, events: u64) {
        Self::add(&self.take_success, events);
    }

    /// Counts `events` takes that failed.
    pub fn count_take_errors(&self, events: u64) {
        Self::add(&self.take_error, events);
    }

    /// Fills the counter fields of a stats snapshot.
    pub fn snapshot(&self, channel_size: u64, channel_capacity: u64) -> ChannelStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ChannelStats {
            channel_size,
            channel_capacity,
            event_put_attempt_count: load(&self.put_attempt),
            event_put_success_count: load(&self.put_success),
            event_take_attempt_count: load(&self.take_attempt),
            event_take_success_count: load(&self.take_success),
            event_put_error_count: load(&self.put_error),
            event_take_error_count: load(&self.take_error),
            checkpoint_write_error_count: load(&self.checkpoint_write_error),
            checkpoint_backup_write_error_count: load(&self.checkpoint_backup_write_error),
            start_time_ms: load(&self.start_time_ms),
            stop_time_ms: load(&self.stop_time_ms),
        }
    }
}
