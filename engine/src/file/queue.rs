//! The queue of event pointers and the sequencer in front of it.
//!
//! The queue holds pointers to committed events in put-commit order, each with an order
//! key (see `ordered_queue`), plus what open transactions hold: events they took (still
//! in the channel's size, returned to their places if they roll back) and capacity their
//! puts reserved. One lock guards it all, held only for bounded work.
//!
//! The sequencer applies finished commits strictly in write-order-id order, the order
//! recovery uses: each commit draws a contiguous range of write-order ids before it is
//! written, writers of different directories finish in any order, and a finished commit
//! waits in [`QueueState::finished`] until every range before its own is applied. A slow
//! directory delays the visibility of later commits, never their durability.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::channel::{Arrivals, ChannelCounters};
use crate::error::ChannelError;
use crate::ordered_queue::OrderedQueue;
use crate::record::EventPointer;

/// How long a closing channel waits for commits already handed to the writers to be
/// applied.
const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The queue, its lock, and the signals its changes send.
pub(super) struct EventQueue {
    pub(super) state: Mutex<QueueState>,
    /// Signalled when events join the queue or return to it.
    pub(super) events_available: Condvar,
    /// Wakes async takers whenever `events_available` wakes blocked ones.
    pub(super) arrivals: Arrivals,
    /// Signalled when capacity is released.
    pub(super) space_freed: Condvar,
    /// Signalled when the sequencer applies commits.
    pub(super) commits_applied: Condvar,
}

/// What the queue's lock guards.
pub(super) struct QueueState {
    /// Queued events in put-commit order, with their order keys.
    pub(super) queue: OrderedQueue<EventPointer>,
    /// Events taken by open transactions, by order key: still counted in the channel's
    /// size, and merged back into their places in a checkpoint's queue.
    pub(super) in_flight: BTreeMap<u64, EventPointer>,
    /// Capacity reserved by puts of open transactions.
    pub(super) reserved_puts: u64,
    /// The write-order id the sequencer applies next.
    pub(super) next_apply_write_order_id: u64,
    /// Finished commits waiting for earlier ones, by their first write-order id.
    pub(super) finished: BTreeMap<u64, FinishedCommit>,
    /// Queued and in-flight events per segment.
    pub(super) live_events: HashMap<u32, u64>,
    /// Segments each segment must outlive (see the module doc of `file`).
    pub(super) outlives: HashMap<u32, HashSet<u32>>,
}

impl QueueState {
    /// The state a channel opens with: `queue` (recovered) and what recovery learned of
    /// the segments, nothing in flight.
    pub(super) fn recovered(
        queue: Vec<EventPointer>,
        next_apply_write_order_id: u64,
        outlives: HashMap<u32, HashSet<u32>>,
    ) -> Self {
        let mut live_events = HashMap::new();
        count_live_events(&mut live_events, &queue);
        QueueState {
            // Reuses the recovered vector's allocation: no second copy of the queue.
            queue: queue.into(),
            in_flight: BTreeMap::new(),
            reserved_puts: 0,
            next_apply_write_order_id,
            finished: BTreeMap::new(),
            live_events,
            outlives,
        }
    }

    /// Events queued or taken, plus capacity reserved by puts: what `capacity` bounds.
    pub(super) fn occupied(&self) -> u64 {
        self.queue.len() as u64 + self.in_flight.len() as u64 + self.reserved_puts
    }

    /// `ChannelSize`: events queued or taken by open transactions.
    pub(super) fn size(&self) -> u64 {
        self.queue.len() as u64 + self.in_flight.len() as u64
    }

    fn add_live(&mut self, pointers: &[EventPointer]) {
        count_live_events(&mut self.live_events, pointers);
    }

    fn remove_live(&mut self, pointers: impl Iterator<Item = EventPointer>) {
        for pointer in pointers {
            if let Some(count) = self.live_events.get_mut(&pointer.segment_id) {
                *count -= 1;
                if *count == 0 {
                    self.live_events.remove(&pointer.segment_id);
                }
            }
        }
    }

    fn add_outlives(&mut self, segment_id: u32, others: impl Iterator<Item = u32>) {
        let set = self.outlives.entry(segment_id).or_default();
        set.extend(others.filter(|&other| other != segment_id));
    }
}

/// Counts the events each segment holds among `pointers` into `live_events`.
fn count_live_events<'a>(
    live_events: &mut HashMap<u32, u64>,
    pointers: impl IntoIterator<Item = &'a EventPointer>,
) {
    for pointer in pointers {
        *live_events.entry(pointer.segment_id).or_default() += 1;
    }
}

/// A written (or failed) commit waiting for its turn in write order.
pub(super) struct FinishedCommit {
    pub(super) last_write_order_id: u64,
    pub(super) effect: CommitEffect,
}

/// What applying a finished commit does to the queue.
pub(super) enum CommitEffect {
    /// Durable: the puts join the queue, the takes are final.
    Applied {
        put_pointers: Vec<EventPointer>,
        takes: Vec<(u64, EventPointer)>,
        /// `(segment, segments it must outlive)` learned from where the records landed.
        dependencies: Vec<(u32, Vec<u32>)>,
    },
    /// Failed: the puts are dropped, the takes return to their places at the head.
    Abandoned {
        put_count: u64,
        takes: Vec<(u64, EventPointer)>,
    },
}

impl EventQueue {
    pub(super) fn new(state: QueueState) -> Self {
        EventQueue {
            state: Mutex::new(state),
            events_available: Condvar::new(),
            arrivals: Arrivals::default(),
            space_freed: Condvar::new(),
            commits_applied: Condvar::new(),
        }
    }

    /// Reserves capacity for one put if the channel has room now.
    pub(super) fn try_reserve_put(&self, capacity: u64) -> bool {
        let mut state = self.state.lock();
        if state.occupied() >= capacity {
            return false;
        }
        state.reserved_puts += 1;
        true
    }

    /// Reserves capacity for one put, waiting up to `keep_alive` for room. While it
    /// waits, `check_usable` says whether the channel still serves.
    pub(super) fn reserve_put(
        &self,
        channel: &str,
        capacity: u64,
        keep_alive: Duration,
        check_usable: impl Fn() -> Result<(), ChannelError>,
    ) -> Result<(), ChannelError> {
        let started = Instant::now();
        let deadline = started + keep_alive;
        let mut state = self.state.lock();
        while state.occupied() >= capacity {
            check_usable()?;
            if self
                .space_freed
                .wait_until(&mut state, deadline)
                .timed_out()
                && state.occupied() >= capacity
            {
                return Err(ChannelError::ChannelFull {
                    channel: channel.to_string(),
                    capacity,
                    size: state.occupied(),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
        state.reserved_puts += 1;
        Ok(())
    }

    /// Hands a finished commit to the sequencer, which applies commits in write order
    /// and counts their successes in `counters`. With `wait_until_applied`, returns only
    /// once this one is applied (visible to takers); without, a commit whose
    /// predecessors are still on their way is applied by whichever of them finishes
    /// last.
    pub(super) fn finish_commit(
        &self,
        first_write_order_id: u64,
        commit: FinishedCommit,
        wait_until_applied: bool,
        counters: &ChannelCounters,
    ) {
        let last = commit.last_write_order_id;
        let mut state = self.state.lock();
        state.finished.insert(first_write_order_id, commit);
        let mut applied_any = false;
        loop {
            let next = state.next_apply_write_order_id;
            let Some(commit) = state.finished.remove(&next) else {
                break;
            };
            state.next_apply_write_order_id = commit.last_write_order_id + 1;
            self.apply(&mut state, commit.effect, counters);
            applied_any = true;
        }
        if applied_any {
            self.commits_applied.notify_all();
        }
        while wait_until_applied && state.next_apply_write_order_id <= last {
            self.commits_applied.wait(&mut state);
        }
    }

    fn apply(&self, state: &mut QueueState, effect: CommitEffect, counters: &ChannelCounters) {
        match effect {
            CommitEffect::Applied {
                put_pointers,
                takes,
                dependencies,
            } => {
                let put_count = put_pointers.len() as u64;
                state.reserved_puts -= put_count;
                state.add_live(&put_pointers);
                state.queue.extend(put_pointers);
                for (key, _) in &takes {
                    state.in_flight.remove(key);
                }
                state.remove_live(takes.iter().map(|(_, pointer)| *pointer));
                for (segment_id, others) in dependencies {
                    state.add_outlives(segment_id, others.into_iter());
                }
                let take_count = takes.len() as u64;
                ChannelCounters::add(&counters.put_success, put_count);
                ChannelCounters::add(&counters.take_success, take_count);
                if put_count > 0 {
                    self.events_available.notify_all();
                    self.arrivals.notify();
                }
                if take_count > 0 {
                    self.space_freed.notify_all();
                }
            }
            CommitEffect::Abandoned { put_count, takes } => {
                state.reserved_puts -= put_count;
                self.return_takes(state, &takes);
                if put_count > 0 {
                    self.space_freed.notify_all();
                }
            }
        }
    }

    /// Puts taken events back in their places at the head of the queue (by order key),
    /// whatever order transactions roll back in.
    pub(super) fn return_takes(&self, state: &mut QueueState, takes: &[(u64, EventPointer)]) {
        for (key, _) in takes {
            state.in_flight.remove(key);
        }
        state.queue.return_taken(takes.to_vec());
        if !takes.is_empty() {
            self.events_available.notify_all();
            self.arrivals.notify();
        }
    }

    /// Rolls back what an open transaction holds: its takes return to their places, the
    /// capacity its `put_count` puts reserved is released.
    pub(super) fn roll_back(&self, takes: &[(u64, EventPointer)], put_count: u64) {
        let mut state = self.state.lock();
        self.return_takes(&mut state, takes);
        state.reserved_puts -= put_count;
        if put_count > 0 {
            self.space_freed.notify_all();
        }
    }

    /// Waits (up to a bound) until every write-order range handed out, up to
    /// `next_write_order_id`, has been applied or abandoned.
    pub(super) fn wait_for_allocated_commits(&self, next_write_order_id: &AtomicU64) {
        let deadline = Instant::now() + CLOSE_DRAIN_TIMEOUT;
        let mut state = self.state.lock();
        while state.next_apply_write_order_id < next_write_order_id.load(Ordering::Acquire) {
            if self
                .commits_applied
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                break;
            }
        }
    }

    /// Wakes everyone waiting on the queue, so that they notice the channel closed.
    pub(super) fn wake_all(&self) {
        self.events_available.notify_all();
        self.arrivals.notify();
        self.space_freed.notify_all();
        self.commits_applied.notify_all();
    }
}
