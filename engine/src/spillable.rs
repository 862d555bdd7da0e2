//! # The spillable memory channel
//!
//! A memory tier of `memoryCapacity` events in front of an embedded file channel (the
//! overflow, `overflowCapacity` events). Flume's `SpillableMemoryChannel`, with two
//! differences: takes follow one global put-commit order across both tiers *within* a
//! transaction (Flume binds a take transaction to one tier and returns nothing at the
//! boundary), and the overflow's puts and takes commit atomically in one file transaction.
//!
//! ## Durability, stated plainly
//! Events in the memory tier are lost on a crash or a stop; events that spilled to the
//! overflow survive like any file channel's. A restart brings back exactly the spilled
//! events that were not taken.
//!
//! ## How order is kept
//! Every event gets an *order key* from one sequence for both tiers when its put commits
//! (see `ordered_queue`). The memory tier keeps its events with their keys; for the
//! overflow the channel keeps only the keys of its queued events, run-length encoded,
//! in the overflow's own queue order. A take compares the two head keys and takes from
//! the tier with the smaller; a rollback returns each event, and its key, to its place
//! in its tier, so put-commit order holds whatever order open transactions roll back in.
//! Overflow commits that put events hold a lock across the file commit and the append of
//! their keys, so the overflow's own queue order and its keys agree. (This serialises
//! spilling producers: under heavy spilling each spill commit pays its own sync.) An
//! overflow rollback runs under the channel's lock, so no take sees the overflow's
//! events returned but not their keys.
//!
//! ## Which tier a commit goes to
//! As in Flume: the memory tier if it has room for the whole transaction (events and byte
//! slots of `avgEventSize`), waiting up to `overflowTimeout`; otherwise the overflow,
//! which then stays active (puts spill at once) until a take commit leaves at least
//! `overflowDeactivationThreshold` percent of the memory tier free. `memoryCapacity = 0`
//! sends everything to the overflow (a file channel); `overflowCapacity = 0` disables it
//! (a memory channel, refusing commits it cannot hold).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::channel::{
    Channel, ChannelCounters, ChannelHealth, ChannelStats, CommitAttempt, PutAttempt, TakeStop,
    Transaction,
};
use crate::config::{usable_byte_slots, SpillableChannelConfig};
use crate::error::{ChannelError, OpenError};
use crate::event::Event;
use crate::figures::{DirStats, RecoveryReport};
use crate::file::{FileChannel, FileTransaction};
use crate::memory::resolve_byte_capacity;
use crate::ordered_queue::OrderedQueue;
use crate::storage::Storage;

/// Which tier holds a run of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Memory,
    Overflow,
}

/// A memory tier in front of a file channel, in one global order.
pub struct SpillableChannel {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    config: SpillableChannelConfig,
    overflow: Option<FileChannel>,
    state: Mutex<SpillState>,
    events_available: Condvar,
    /// Wakes async takers whenever `events_available` wakes blocked ones.
    arrivals: crate::channel::Arrivals,
    memory_freed: Condvar,
    /// Held across an overflow commit with puts and the append of its run.
    spill_lock: Mutex<()>,
    byte_slot_capacity: u64,
    counters: ChannelCounters,
    closed: AtomicBool,
}

#[derive(Default)]
struct SpillState {
    /// Memory-tier events, with their order keys.
    memory: OrderedQueue<Event>,
    /// Memory-tier events taken by open transactions (still holding their slots).
    memory_in_flight: u64,
    byte_slots_used: u64,
    /// The order keys of the events queued in the overflow, in its queue order.
    overflow_keys: OrderedQueue<()>,
    /// The order key the next committed event gets, in either tier.
    next_order_key: u64,
    overflow_active: bool,
}

impl SpillState {
    /// The tier holding the next event in put-commit order.
    fn head_tier(&self) -> Option<Tier> {
        match (self.memory.front_key(), self.overflow_keys.front_key()) {
            (Some(memory), Some(overflow)) if overflow < memory => Some(Tier::Overflow),
            (Some(_), _) => Some(Tier::Memory),
            (None, Some(_)) => Some(Tier::Overflow),
            (None, None) => None,
        }
    }

    fn next_key(&mut self) -> u64 {
        let key = self.next_order_key;
        self.next_order_key += 1;
        key
    }

    /// Records `count` events just committed to the overflow.
    fn append_overflow(&mut self, count: u64) {
        for _ in 0..count {
            let key = self.next_key();
            self.overflow_keys.push_back_keyed(key, ());
        }
    }
}

/// Byte slots an event costs in the memory tier: `ceil(body / avgEventSize)`, at least 1.
fn byte_slots(event: &Event, avg_event_size_bytes: u64) -> u64 {
    (event.body.len() as u64)
        .div_ceil(avg_event_size_bytes.max(1))
        .max(1)
}

impl SpillableChannel {
    /// Opens the channel on the real filesystem, its overflow writing with io_uring
    /// where this process may use it ([`RealFs::auto`](crate::storage::RealFs::auto)).
    pub fn open(name: &str, config: SpillableChannelConfig) -> Result<Self, OpenError> {
        Self::open_with_storage(name, config, Arc::new(crate::storage::RealFs::auto()))
    }

    /// Opens the channel; the overflow recovers its spilled events, the memory tier
    /// starts empty.
    pub fn open_with_storage(
        name: &str,
        config: SpillableChannelConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, OpenError> {
        let overflow = if config.overflow_capacity == 0 {
            None
        } else {
            let mut file_config = config.overflow.clone();
            file_config.capacity = config.overflow_capacity;
            file_config.transaction_capacity = file_config
                .transaction_capacity
                .min(config.overflow_capacity);
            file_config.keep_alive = config.overflow_timeout;
            Some(FileChannel::open_with_storage(name, file_config, storage)?)
        };
        let (byte_capacity, _) = resolve_byte_capacity(config.byte_capacity_bytes);
        let byte_slot_capacity = usable_byte_slots(
            byte_capacity,
            config.byte_capacity_buffer_percentage,
            config.avg_event_size_bytes,
        )
        .max(1);
        let mut state = SpillState::default();
        if let Some(overflow) = &overflow {
            state.append_overflow(overflow.queued_events());
        }
        Ok(SpillableChannel {
            shared: Arc::new(Shared {
                name: name.to_string(),
                config,
                overflow,
                state: Mutex::new(state),
                events_available: Condvar::new(),
                arrivals: crate::channel::Arrivals::default(),
                memory_freed: Condvar::new(),
                spill_lock: Mutex::new(()),
                byte_slot_capacity,
                counters: ChannelCounters::started_now(),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Events in the memory tier (queued, not taken).
    pub fn memory_events(&self) -> u64 {
        self.shared.state.lock().memory.len() as u64
    }

    /// Events queued in the overflow.
    pub fn overflow_events(&self) -> u64 {
        self.shared
            .overflow
            .as_ref()
            .map_or(0, FileChannel::queued_events)
    }
}

impl Shared {
    fn check_open(&self) -> Result<(), ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed {
                channel: self.name.clone(),
            });
        }
        Ok(())
    }

    fn transaction_capacity(&self) -> u64 {
        self.config.overflow.transaction_capacity
    }

    /// Moves puts into the memory tier if it can hold them, waiting up to `wait`.
    /// Returns the puts back when it cannot.
    fn try_memory(&self, puts: Vec<Event>, wait: Duration) -> Result<(), Vec<Event>> {
        if self.config.memory_capacity == 0 {
            return Err(puts);
        }
        let slots: u64 = puts
            .iter()
            .map(|event| byte_slots(event, self.config.avg_event_size_bytes))
            .sum();
        let count = puts.len() as u64;
        let deadline = Instant::now() + wait;
        let mut state = self.state.lock();
        loop {
            let held = state.memory.len() as u64 + state.memory_in_flight;
            let fits = held + count <= self.config.memory_capacity
                && state.byte_slots_used + slots <= self.byte_slot_capacity;
            if fits {
                state.byte_slots_used += slots;
                for event in puts {
                    let key = state.next_key();
                    state.memory.push_back_keyed(key, event);
                }
                self.events_available.notify_all();
                self.arrivals.notify();
                return Ok(());
            }
            if self
                .memory_freed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                // Decided under the same lock as the check: a take commit that frees
                // memory either came first (and this put found room) or comes after and
                // sees the overflow active, so it can deactivate it.
                if self.overflow.is_some() {
                    state.overflow_active = true;
                }
                return Err(puts);
            }
        }
    }

    fn memory_full_error(&self) -> ChannelError {
        let state = self.state.lock();
        ChannelError::ChannelFull {
            channel: self.name.clone(),
            capacity: self.config.memory_capacity,
            size: state.memory.len() as u64 + state.memory_in_flight,
            waited_ms: self.config.overflow_timeout.as_millis() as u64,
        }
    }

    /// Releases the memory tier's hold on taken events, and — on every take commit, from
    /// either tier, as in Flume — deactivates the overflow once enough memory is free.
    /// (Checking only when memory events were taken would never deactivate: while the
    /// overflow is active, new events and so the takes all go through it.)
    fn release_memory_takes(&self, taken: &[(u64, Event)]) {
        let slots: u64 = taken
            .iter()
            .map(|(_, event)| byte_slots(event, self.config.avg_event_size_bytes))
            .sum();
        let mut state = self.state.lock();
        state.memory_in_flight -= taken.len() as u64;
        state.byte_slots_used -= slots;
        if state.overflow_active && self.config.memory_capacity > 0 {
            let held = state.memory.len() as u64 + state.memory_in_flight;
            let free_percent =
                (self.config.memory_capacity - held.min(self.config.memory_capacity)) * 100
                    / self.config.memory_capacity;
            if free_percent >= u64::from(self.config.overflow_deactivation_threshold_percent) {
                state.overflow_active = false;
            }
        }
        self.memory_freed.notify_all();
    }
}

impl Channel for SpillableChannel {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn arrivals(&self) -> Option<&crate::channel::Arrivals> {
        Some(&self.shared.arrivals)
    }

    /// Merges the two tiers by order key under the state lock, which also keeps the
    /// overflow's head where the keys say it is (takes from the overflow hold it too).
    fn peek(
        &self,
        max_events: usize,
        admit: &mut dyn FnMut(&Event) -> bool,
    ) -> Option<Result<Vec<Event>, ChannelError>> {
        Some(self.peek_events(max_events, admit))
    }

    fn begin(&self) -> Result<Box<dyn Transaction>, ChannelError> {
        self.shared.check_open()?;
        Ok(Box::new(SpillableTransaction {
            shared: Arc::clone(&self.shared),
            puts: Vec::new(),
            memory_takes: Vec::new(),
            overflow_taken_keys: Vec::new(),
            overflow_transaction: None,
            finished: false,
        }))
    }

    fn stats(&self) -> ChannelStats {
        let size = {
            let state = self.shared.state.lock();
            state.memory.len() as u64 + state.memory_in_flight
        } + self
            .shared
            .overflow
            .as_ref()
            .map_or(0, |overflow| overflow.stats().channel_size);
        self.shared.counters.snapshot(
            size,
            self.shared.config.memory_capacity + self.shared.config.overflow_capacity,
        )
    }

    fn health(&self) -> ChannelHealth {
        if self.shared.closed.load(Ordering::Acquire) {
            return ChannelHealth::Closed;
        }
        match &self.shared.overflow {
            Some(overflow) => overflow.health(),
            None => ChannelHealth::Open,
        }
    }

    fn close(&self) -> Result<(), ChannelError> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.shared.counters.mark_stopped();
        self.shared.events_available.notify_all();
        self.shared.arrivals.notify();
        self.shared.memory_freed.notify_all();
        match &self.shared.overflow {
            Some(overflow) => overflow.close(),
            None => Ok(()),
        }
    }

    fn checkpoint(&self) -> Result<(), ChannelError> {
        match &self.shared.overflow {
            Some(overflow) => overflow.checkpoint(),
            None => Ok(()),
        }
    }

    fn recovery_report(&self) -> Option<RecoveryReport> {
        self.shared.overflow.as_ref()?.recovery_report()
    }

    fn dir_stats(&self) -> Vec<(std::path::PathBuf, Arc<DirStats>)> {
        self.shared
            .overflow
            .as_ref()
            .map(|overflow| overflow.dir_stats())
            .unwrap_or_default()
    }
}

impl Drop for SpillableChannel {
    fn drop(&mut self) {
        let _ = Channel::close(self);
    }
}

/// A transaction on a [`SpillableChannel`].
pub struct SpillableTransaction {
    shared: Arc<Shared>,
    puts: Vec<Event>,
    /// Memory-tier events taken, with their order keys, for a rollback.
    memory_takes: Vec<(u64, Event)>,
    /// The order keys of the overflow events taken (the overflow transaction holds the
    /// events).
    overflow_taken_keys: Vec<u64>,
    overflow_transaction: Option<FileTransaction>,
    finished: bool,
}

/// What a take at the head got.
enum HeadTake {
    Taken(Event),
    /// The caller's `accept` refused the head event; it stays.
    Refused,
    Empty,
    WouldBlock,
}

/// How a take at the head may wait.
enum TakeMode<'a> {
    /// Up to this long for an event to arrive (`None`: not at all), reading the overflow
    /// from the disk when needed.
    Waiting(Option<Duration>),
    /// Never blocking: an overflow event that must be read from the disk is left in
    /// place, and so is one the caller's `accept` refuses.
    WithoutBlocking(&'a mut dyn FnMut(&Event) -> bool),
}

impl SpillableTransaction {
    /// Events taken so far, from both tiers.
    fn taken_events(&self) -> u64 {
        (self.memory_takes.len() + self.overflow_taken_keys.len()) as u64
    }

    fn take_inner(&mut self, wait: Option<Duration>) -> Result<Option<Event>, ChannelError> {
        match self.take_from_head(TakeMode::Waiting(wait))? {
            HeadTake::Taken(event) => Ok(Some(event)),
            HeadTake::Refused | HeadTake::Empty | HeadTake::WouldBlock => Ok(None),
        }
    }

    /// A take at the head; every take counts as an attempt except one handed back
    /// because it would block (it is made again by a call that may block).
    fn take_from_head(&mut self, mode: TakeMode<'_>) -> Result<HeadTake, ChannelError> {
        let attempt = self.take_from_head_uncounted(mode);
        if !matches!(attempt, Ok(HeadTake::WouldBlock)) {
            ChannelCounters::add(&self.shared.counters.take_attempt, 1);
        }
        attempt
    }

    fn take_from_head_uncounted(
        &mut self,
        mut mode: TakeMode<'_>,
    ) -> Result<HeadTake, ChannelError> {
        let shared = Arc::clone(&self.shared);
        shared.check_open()?;
        if self.taken_events() >= shared.transaction_capacity() {
            return Err(ChannelError::TransactionFull {
                channel: shared.name.clone(),
                transaction_capacity: shared.transaction_capacity(),
                operation: "take",
            });
        }
        let deadline = match mode {
            TakeMode::Waiting(wait) => wait.map(|wait| Instant::now() + wait),
            TakeMode::WithoutBlocking(_) => None,
        };
        let mut state = shared.state.lock();
        loop {
            match state.head_tier() {
                Some(Tier::Memory) => {
                    if let TakeMode::WithoutBlocking(accept) = &mut mode {
                        let head = state.memory.front().expect("a memory head key");
                        if !accept(head) {
                            return Ok(HeadTake::Refused);
                        }
                    }
                    let (key, event) = state.memory.pop_front().expect("a memory head key");
                    state.memory_in_flight += 1;
                    self.memory_takes.push((key, event.clone()));
                    return Ok(HeadTake::Taken(event));
                }
                Some(Tier::Overflow) => {
                    let overflow = shared
                        .overflow
                        .as_ref()
                        .expect("overflow runs need an overflow");
                    if self.overflow_transaction.is_none() {
                        self.overflow_transaction = Some(overflow.transaction()?);
                    }
                    let transaction = self.overflow_transaction.as_mut().expect("just set");
                    let taken = match &mut mode {
                        TakeMode::Waiting(_) => transaction.take()?,
                        TakeMode::WithoutBlocking(accept) => {
                            let mut overflow_taken = Vec::with_capacity(1);
                            match transaction.try_take_many(
                                1,
                                &mut **accept,
                                &mut overflow_taken,
                            )? {
                                TakeStop::WouldBlock => return Ok(HeadTake::WouldBlock),
                                TakeStop::Limit if overflow_taken.is_empty() => {
                                    return Ok(HeadTake::Refused)
                                }
                                TakeStop::Limit | TakeStop::Empty => overflow_taken.pop(),
                            }
                        }
                    };
                    let event = taken.ok_or_else(|| ChannelError::Failed {
                        channel: shared.name.clone(),
                        reason: "the order keys expected an overflow event that is not there"
                            .into(),
                    })?;
                    let (key, ()) = state
                        .overflow_keys
                        .pop_front()
                        .expect("an overflow head key");
                    self.overflow_taken_keys.push(key);
                    return Ok(HeadTake::Taken(event));
                }
                None => {
                    let Some(deadline) = deadline else {
                        return Ok(HeadTake::Empty);
                    };
                    if shared
                        .events_available
                        .wait_until(&mut state, deadline)
                        .timed_out()
                        && state.head_tier().is_none()
                    {
                        return Ok(HeadTake::Empty);
                    }
                    shared.check_open()?;
                }
            }
        }
    }

    /// Returns the takes, and their keys, to their places in their tiers.
    fn rollback_inner(&mut self) {
        self.finished = true;
        let shared = Arc::clone(&self.shared);
        let taken = self.taken_events();
        // The overflow's events and their keys go back under one hold of the lock, as
        // takes see them (a take holds it across its overflow take).
        let mut state = shared.state.lock();
        if let Some(transaction) = self.overflow_transaction.take() {
            let _ = Box::new(transaction).rollback();
        }
        state.memory_in_flight -= self.memory_takes.len() as u64;
        state
            .memory
            .return_taken(std::mem::take(&mut self.memory_takes));
        let overflow_keys = self.overflow_taken_keys.drain(..).map(|key| (key, ()));
        state.overflow_keys.return_taken(overflow_keys.collect());
        self.puts.clear();
        if taken > 0 {
            shared.events_available.notify_all();
            shared.arrivals.notify();
        }
    }
}

impl Transaction for SpillableTransaction {
    fn put(&mut self, event: Event) -> Result<(), ChannelError> {
        let shared = &self.shared;
        ChannelCounters::add(&shared.counters.put_attempt, 1);
        shared.check_open()?;
        if self.puts.len() as u64 >= shared.transaction_capacity() {
            return Err(ChannelError::TransactionFull {
                channel: shared.name.clone(),
                transaction_capacity: shared.transaction_capacity(),
                operation: "put",
            });
        }
        self.puts.push(event);
        Ok(())
    }

    fn take(&mut self) -> Result<Option<Event>, ChannelError> {
        self.take_inner(None)
    }

    fn take_waiting(&mut self, wait: Duration) -> Result<Option<Event>, ChannelError> {
        self.take_inner(Some(wait))
    }

    fn try_put(&mut self, event: Event) -> Result<PutAttempt, ChannelError> {
        // A put only joins the transaction: which tier it goes to is decided at commit.
        self.put(event)?;
        Ok(PutAttempt::Added)
    }

    fn try_take_many(
        &mut self,
        max_events: usize,
        accept: &mut dyn FnMut(&Event) -> bool,
        taken: &mut Vec<Event>,
    ) -> Result<TakeStop, ChannelError> {
        let first_new = taken.len();
        while taken.len() - first_new < max_events {
            // Full after some events: stop with those (full before the first: the take
            // below fails as `take` does).
            let full = self.taken_events() >= self.shared.transaction_capacity();
            if full && taken.len() > first_new {
                return Ok(TakeStop::Limit);
            }
            match self.take_from_head(TakeMode::WithoutBlocking(&mut *accept))? {
                HeadTake::Taken(event) => taken.push(event),
                HeadTake::Refused => return Ok(TakeStop::Limit),
                HeadTake::Empty => return Ok(TakeStop::Empty),
                HeadTake::WouldBlock => return Ok(TakeStop::WouldBlock),
            }
        }
        Ok(TakeStop::Limit)
    }

    /// A commit may wait `overflowTimeout` for memory room and spills with a sync of the
    /// overflow, so it is always handed back.
    fn try_commit_pipelined(self: Box<Self>) -> Result<CommitAttempt, ChannelError> {
        Ok(CommitAttempt::WouldBlock(self))
    }

    fn commit(mut self: Box<Self>) -> Result<(), ChannelError> {
        let shared = Arc::clone(&self.shared);
        if let Err(error) = shared.check_open() {
            self.rollback_inner();
            return Err(error);
        }
        let puts = std::mem::take(&mut self.puts);
        let put_count = puts.len() as u64;
        let mut spill = Vec::new();
        if !puts.is_empty() {
            let wait = if shared.state.lock().overflow_active {
                Duration::ZERO
            } else {
                shared.config.overflow_timeout
            };
            if let Err(returned) = shared.try_memory(puts, wait) {
                if shared.overflow.is_none() {
                    let error = shared.memory_full_error();
                    self.rollback_inner();
                    return Err(error);
                }
                spill = returned;
            }
        }
        // The overflow part: spilled puts and overflow takes, in one file transaction.
        let overflow_result = if spill.is_empty() {
            match self.overflow_transaction.take() {
                Some(transaction) => Box::new(transaction).commit(),
                None => Ok(()),
            }
        } else {
            let overflow = shared.overflow.as_ref().expect("checked above");
            let _spilling = shared.spill_lock.lock();
            let mut transaction = match self.overflow_transaction.take() {
                Some(transaction) => transaction,
                None => match overflow.transaction() {
                    Ok(transaction) => transaction,
                    Err(error) => {
                        self.rollback_inner();
                        return Err(error);
                    }
                },
            };
            let spilled = spill.len() as u64;
            let mut result = Ok(());
            for event in spill {
                if let Err(error) = transaction.put(event) {
                    result = Err(error);
                    break;
                }
            }
            match result {
                Ok(()) => {
                    let committed = Box::new(transaction).commit();
                    if committed.is_ok() {
                        let mut state = shared.state.lock();
                        state.append_overflow(spilled);
                        shared.events_available.notify_all();
                        shared.arrivals.notify();
                    }
                    committed
                }
                Err(error) => {
                    self.overflow_transaction = Some(transaction);
                    Err(error)
                }
            }
        };
        if let Err(error) = overflow_result {
            // A failed spill means none of the transaction's puts landed. A failed commit
            // of overflow takes after the puts went to memory leaves those puts in place:
            // the overflow has failed (fail-stop) and reports it; the takes roll back.
            self.rollback_inner();
            return Err(error);
        }
        self.finished = true;
        let memory_takes = std::mem::take(&mut self.memory_takes);
        shared.release_memory_takes(&memory_takes);
        let take_count = memory_takes.len() as u64 + self.overflow_taken_keys.len() as u64;
        ChannelCounters::add(&shared.counters.put_success, put_count);
        ChannelCounters::add(&shared.counters.take_success, take_count);
        Ok(())
    }

    fn rollback(mut self: Box<Self>) -> Result<(), ChannelError> {
        self.rollback_inner();
        Ok(())
    }
}

impl Drop for SpillableTransaction {
    fn drop(&mut self) {
        if !self.finished {
            self.rollback_inner();
        }
    }
}

impl SpillableChannel {
    fn peek_events(
        &self,
        max_events: usize,
        admit: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<Vec<Event>, ChannelError> {
        let shared = &self.shared;
        shared.check_open()?;
        let state = shared.state.lock();
        // The head's tiers in order: `None` for an overflow event, the event for a
        // memory one.
        let mut memory = state.memory.iter_keyed().peekable();
        let mut overflow = state.overflow_keys.iter_keyed().peekable();
        let mut order: Vec<Option<&Event>> = Vec::new();
        while order.len() < max_events {
            match (memory.peek(), overflow.peek()) {
                (Some((memory_key, _)), Some((overflow_key, _))) if overflow_key < memory_key => {
                    overflow.next();
                    order.push(None);
                }
                (Some(_), _) => order.push(memory.next().map(|(_, event)| event)),
                (None, Some(_)) => {
                    overflow.next();
                    order.push(None);
                }
                (None, None) => break,
            }
        }
        let overflow_count = order.iter().filter(|tier| tier.is_none()).count();
        let mut overflow_events = match (&shared.overflow, overflow_count) {
            (_, 0) | (None, _) => Vec::new(),
            (Some(overflow), count) => overflow
                .peek(count, &mut |_| true)
                .unwrap_or_else(|| Ok(Vec::new()))?,
        }
        .into_iter();
        let mut events = Vec::with_capacity(order.len());
        for tier in order {
            let event = match tier {
                Some(event) => event.clone(),
                None => match overflow_events.next() {
                    Some(event) => event,
                    // The overflow's head moved: what follows is not the head any more.
                    None => break,
                },
            };
            if !admit(&event) {
                break;
            }
            events.push(event);
        }
        Ok(events)
    }
}
