//! Commit latency per channel: how long a commit takes from the moment a client asks
//! for it to the moment its outcome is known (for a durable channel, until its records
//! are on stable storage). It is what a producer waits for, so the status page,
//! `channelctl top` and the Prometheus histogram `millrace_channel_commit_duration_seconds`
//! report it.
//!
//! # Constraints
//!
//! - **Outside the engine, around any channel.** [`TimedChannel`] wraps the
//!   `Arc<dyn Channel>` the registry opened and forwards every call; only the three ways
//!   a commit is made ([`Transaction::commit`], [`Transaction::commit_pipelined`] and
//!   [`Transaction::try_commit_pipelined`]) are timed. A pipelined commit is timed until
//!   its [`PendingCommit`] finishes, so a group commit's shared sync counts for each
//!   transaction it carried.
//! - **Only commits that did something.** A consumer polling an empty channel commits
//!   empty transactions many times a second; counting them would drown the figure of
//!   real work in near-zero samples. A commit is timed when its transaction put or took
//!   at least one event.
//! - **Successful commits only.** A failed commit is counted by the error counters and
//!   makes the channel unhealthy; its duration says nothing about the disk's latency.
//! - **A commit handed back is one commit.** `try_commit_pipelined` may hand the
//!   transaction back (it would block); the clock keeps running from the first attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_engine::file::{DirStats, RecoveryReport};
use millrace_engine::{
    Arrivals, Channel, ChannelError, ChannelHealth, ChannelStats, CommitAttempt, CommitFuture,
    Event, PendingCommit, PutAttempt, TakeStop, Transaction,
};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// The smallest histogram bucket: 50 µs (a memory channel's commit, a cached sync).
const FIRST_BUCKET_SECONDS: f64 = 0.000_05;
/// Each bucket doubles the previous one.
const BUCKET_FACTOR: f64 = 2.0;
/// 50 µs · 2^17 ≈ 6.5 s: beyond it a commit is a stall, whatever its exact length.
const BUCKET_COUNT: u16 = 18;

/// One channel's commit figures. Cumulative since channeld started; readers derive the
/// mean over an interval from two readings (`Δtotal_us / Δcount`).
#[derive(Debug)]
pub struct CommitTimes {
    count: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
    histogram: Histogram,
}

impl Default for CommitTimes {
    fn default() -> Self {
        CommitTimes {
            count: AtomicU64::new(0),
            total_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
            histogram: Histogram::new(exponential_buckets(
                FIRST_BUCKET_SECONDS,
                BUCKET_FACTOR,
                BUCKET_COUNT,
            )),
        }
    }
}

/// A reading of [`CommitTimes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitTimesSnapshot {
    /// Commits timed.
    pub count: u64,
    /// Their durations added up, in microseconds.
    pub total_us: u64,
    /// The longest one, in microseconds.
    pub max_us: u64,
}

impl CommitTimes {
    /// Records one commit.
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(micros, Ordering::Relaxed);
        self.max_us.fetch_max(micros, Ordering::Relaxed);
        self.histogram.observe(elapsed.as_secs_f64());
    }

    /// The figures now.
    pub fn snapshot(&self) -> CommitTimesSnapshot {
        CommitTimesSnapshot {
            count: self.count.load(Ordering::Relaxed),
            total_us: self.total_us.load(Ordering::Relaxed),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }

    /// The Prometheus histogram (a handle on the same buckets, for registering).
    pub fn histogram(&self) -> Histogram {
        self.histogram.clone()
    }
}

/// A channel whose commits are timed into `times`; everything else is forwarded.
pub struct TimedChannel {
    inner: Arc<dyn Channel>,
    times: Arc<CommitTimes>,
}

impl TimedChannel {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn Channel>, times: Arc<CommitTimes>) -> Arc<dyn Channel> {
        Arc::new(TimedChannel { inner, times })
    }
}

impl Channel for TimedChannel {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn begin(&self) -> Result<Box<dyn Transaction>, ChannelError> {
        Ok(Box::new(TimedTransaction {
            inner: self.inner.begin()?,
            times: Arc::clone(&self.times),
            did_work: false,
            commit_started: None,
        }))
    }

    fn stats(&self) -> ChannelStats {
        self.inner.stats()
    }

    fn health(&self) -> ChannelHealth {
        self.inner.health()
    }

    fn close(&self) -> Result<(), ChannelError> {
        self.inner.close()
    }

    fn checkpoint(&self) -> Result<(), ChannelError> {
        self.inner.checkpoint()
    }

    fn recovery_report(&self) -> Option<RecoveryReport> {
        self.inner.recovery_report()
    }

    fn dir_stats(&self) -> Vec<(std::path::PathBuf, Arc<DirStats>)> {
        self.inner.dir_stats()
    }

    fn arrivals(&self) -> Option<&Arrivals> {
        self.inner.arrivals()
    }

    fn peek(
        &self,
        max_events: usize,
        admit: &mut dyn FnMut(&Event) -> bool,
    ) -> Option<Result<Vec<Event>, ChannelError>> {
        self.inner.peek(max_events, admit)
    }
}

struct TimedTransaction {
    inner: Box<dyn Transaction>,
    times: Arc<CommitTimes>,
    /// Whether an event was put or taken: only such commits are timed.
    did_work: bool,
    /// When the first commit attempt was made (set when `try_commit_pipelined` handed
    /// the transaction back).
    commit_started: Option<Instant>,
}

impl TimedTransaction {
    fn timer(&self) -> Option<(Arc<CommitTimes>, Instant)> {
        self.did_work.then(|| {
            (
                Arc::clone(&self.times),
                self.commit_started.unwrap_or_else(Instant::now),
            )
        })
    }
}

/// Records the commit when it has succeeded.
fn record_success(
    timer: Option<(Arc<CommitTimes>, Instant)>,
    outcome: Result<(), ChannelError>,
) -> Result<(), ChannelError> {
    if let (Some((times, started)), Ok(())) = (&timer, &outcome) {
        times.record(started.elapsed());
    }
    outcome
}

/// A pipelined commit, timed until it finishes.
struct TimedPendingCommit {
    inner: Box<dyn PendingCommit>,
    timer: Option<(Arc<CommitTimes>, Instant)>,
}

fn timed_pending(
    inner: Box<dyn PendingCommit>,
    timer: Option<(Arc<CommitTimes>, Instant)>,
) -> Box<dyn PendingCommit> {
    match timer {
        Some(timer) => Box::new(TimedPendingCommit {
            inner,
            timer: Some(timer),
        }),
        None => inner,
    }
}

impl PendingCommit for TimedPendingCommit {
    fn finish(self: Box<Self>) -> Result<(), ChannelError> {
        let TimedPendingCommit { inner, timer } = *self;
        record_success(timer, inner.finish())
    }

    fn finish_async(self: Box<Self>) -> CommitFuture {
        let TimedPendingCommit { inner, timer } = *self;
        let finishing = inner.finish_async();
        Box::pin(async move { record_success(timer, finishing.await) })
    }
}

impl Transaction for TimedTransaction {
    fn put(&mut self, event: Event) -> Result<(), ChannelError> {
        self.inner.put(event)?;
        self.did_work = true;
        Ok(())
    }

    fn take(&mut self) -> Result<Option<Event>, ChannelError> {
        let taken = self.inner.take()?;
        self.did_work |= taken.is_some();
        Ok(taken)
    }

    fn take_waiting(&mut self, wait: Duration) -> Result<Option<Event>, ChannelError> {
        let taken = self.inner.take_waiting(wait)?;
        self.did_work |= taken.is_some();
        Ok(taken)
    }

    fn commit(self: Box<Self>) -> Result<(), ChannelError> {
        let timer = self.timer();
        record_success(timer, self.inner.commit())
    }

    fn rollback(self: Box<Self>) -> Result<(), ChannelError> {
        self.inner.rollback()
    }

    fn commit_pipelined(self: Box<Self>) -> Result<Box<dyn PendingCommit>, ChannelError> {
        let timer = self.timer();
        Ok(timed_pending(self.inner.commit_pipelined()?, timer))
    }

    fn try_put(&mut self, event: Event) -> Result<PutAttempt, ChannelError> {
        let attempt = self.inner.try_put(event)?;
        self.did_work |= matches!(attempt, PutAttempt::Added);
        Ok(attempt)
    }

    fn try_take_many(
        &mut self,
        max_events: usize,
        accept: &mut dyn FnMut(&Event) -> bool,
        taken: &mut Vec<Event>,
    ) -> Result<TakeStop, ChannelError> {
        let before = taken.len();
        let outcome = self.inner.try_take_many(max_events, accept, taken);
        // Events taken before a failure stay in the transaction.
        self.did_work |= taken.len() > before;
        outcome
    }

    fn try_commit_pipelined(self: Box<Self>) -> Result<CommitAttempt, ChannelError> {
        let timer = self.timer();
        let TimedTransaction {
            inner,
            times,
            did_work,
            ..
        } = *self;
        Ok(match inner.try_commit_pipelined()? {
            CommitAttempt::Started(pending) => {
                CommitAttempt::Started(timed_pending(pending, timer))
            }
            CommitAttempt::WouldBlock(inner) => {
                CommitAttempt::WouldBlock(Box::new(TimedTransaction {
                    inner,
                    times,
                    did_work,
                    commit_started: timer.map(|(_, started)| started),
                }))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use millrace_engine::config::MemoryChannelConfig;
    use millrace_engine::MemoryChannel;

    use super::*;

    fn timed_memory_channel() -> (Arc<dyn Channel>, Arc<CommitTimes>) {
        let times = Arc::new(CommitTimes::default());
        let inner: Arc<dyn Channel> =
            Arc::new(MemoryChannel::open("m1", MemoryChannelConfig::default()).unwrap());
        (TimedChannel::wrap(inner, Arc::clone(&times)), times)
    }

    #[test]
    fn commits_that_put_or_took_are_timed_and_empty_ones_are_not() {
        let (channel, times) = timed_memory_channel();
        channel.begin().unwrap().commit().unwrap();
        assert_eq!(times.snapshot().count, 0, "an empty commit is not timed");

        let mut put = channel.begin().unwrap();
        put.put(Event::from_body("a")).unwrap();
        put.put(Event::from_body("b")).unwrap();
        put.commit().unwrap();
        assert_eq!(times.snapshot().count, 1);

        let mut take = channel.begin().unwrap();
        assert!(take.take().unwrap().is_some());
        take.commit_pipelined().unwrap().finish().unwrap();
        assert_eq!(times.snapshot().count, 2);

        let mut nothing = channel.begin().unwrap();
        assert!(nothing.take().unwrap().is_some());
        nothing.rollback().unwrap();
        assert_eq!(times.snapshot().count, 2, "a rollback is not a commit");
        assert_eq!(channel.stats().channel_size, 1, "calls reach the channel");
    }

    #[test]
    fn the_snapshot_adds_up_durations_and_keeps_the_longest() {
        let times = CommitTimes::default();
        times.record(Duration::from_micros(300));
        times.record(Duration::from_micros(100));
        assert_eq!(
            times.snapshot(),
            CommitTimesSnapshot {
                count: 2,
                total_us: 400,
                max_us: 300
            }
        );
    }
}
