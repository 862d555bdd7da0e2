//! # The memory channel
//!
//! A channel held entirely in process memory, with the semantics of Apache Flume's
//! `MemoryChannel`. It is the fast channel and it is **not durable**: every queued event,
//! and every event taken by a transaction that has not committed, is lost when the channel
//! is closed, when the process stops, and when it crashes. Nothing is written anywhere.
//! Use the file channel when an acknowledged put must survive.
//!
//! ## Constraints
//! - Takes see events in put-commit order. A rolled-back take (or a transaction dropped
//!   while open) returns its events to their places at the head of the queue: put-commit
//!   order holds whatever order open transactions roll back in (see
//!   `ordered_queue`).
//! - A put only appends to its transaction: it reserves nothing and nobody sees it before
//!   commit. `capacity` and `byteCapacity` are checked **at commit**, as in Flume (the
//!   file channel reserves capacity at put instead).
//! - `transactionCapacity` bounds the puts and, separately, the takes of one transaction;
//!   the put (or take) that would exceed it fails at once.
//! - A commit that finds no room waits up to `keep-alive` for takes to commit and free
//!   some, then fails with the limit named, and its takes return to the head.
//! - A transaction may mix puts and takes. Commit accounts for the net change: a
//!   transaction that takes at least as many events as it puts needs no capacity.
//! - A take never waits unless asked: [`Transaction::take`] returns `None` at once on an
//!   empty channel, [`Transaction::take_waiting`] waits as long as its caller says.
//!
//! ## Accounting
//! Flume keeps three semaphores (`queueRemaining`, `queueStored`, `bytesRemaining`). Here
//! they are three numbers behind one mutex, next to the queue itself, so that every check
//! and its effect happen in one critical section:
//!
//! ```text
//!   capacity (events)
//!   |<-- queue: committed, takeable -->|<-- taken by open transactions -->|<-- free -->|
//!                 queue.len()                      taken_events
//!
//!   byte slots (ceil(body bytes / 100), at least 1, per event)
//!   |<-- slots of queued events ------>|<-- slots of taken events ------->|<-- free -->|
//!   |<------------------------ byte_slots_in_use --------------------->|
//! ```
//!
//! A taken event keeps its place in both until its transaction commits: Flume releases a
//! take's permits only at commit, so a rollback always has room to put events back.
//! A transaction with `puts` events of `put_slots` slots and `takes` events of
//! `take_slots` slots commits when
//!
//! ```text
//!   puts <= takes  or  queue.len() + taken_events - takes + puts <= capacity
//!   put_slots <= take_slots  or  byte_slots_in_use - take_slots + put_slots <= byte slots
//! ```
//!
//! and the commit then moves its puts to the tail, forgets its takes, and adjusts both
//! numbers. Byte slots come from `byteCapacity × (100 − byteCapacityBufferPercentage) /
//! 100 / 100` (the buffer leaves room for headers, which are not counted). When
//! `byteCapacity` is not set, Flume uses 80% of the JVM's maximum heap; Millrace uses 80%
//! of the machine's memory (`MemTotal` in `/proc/meminfo`), or of
//! [`FALLBACK_MACHINE_MEMORY_BYTES`] when that cannot be read.
//!
//! ## Waiting
//! Two condition variables: `events_available` wakes waiting takers (one per event made
//! takeable, so a commit of one event does not wake a crowd), `space_freed` wakes commits
//! waiting for room (all of them: each needs a different amount). Waiting is not fair, as
//! Flume's semaphores are not: a large commit can be overtaken by small ones.
//!
//! ## Where Millrace differs from Flume, and why
//! - **Take does not wait by itself.** Flume's `take()` waits up to `keep-alive` for an
//!   event before returning null. The engine's [`Transaction::take`] contract is "return
//!   `None` at once" (the protocol's take has its own optional wait), so the wait is
//!   explicit: [`Transaction::take_waiting`] with any duration, or
//!   [`MemoryTransaction::take_within_keep_alive`] for Flume's exact behaviour.
//! - **Byte accounting is always net.** Flume acquires byte permits only when a
//!   transaction puts more events than it takes, and then acquires all of its put bytes
//!   before releasing its take bytes. A mixed transaction that takes as many events as it
//!   puts but puts larger bodies therefore adds bytes without any check, and the permits
//!   drift from the bytes actually held. Millrace checks the net byte change of every
//!   commit, so the limit holds exactly.
//! - **One keep-alive per commit.** Flume waits up to `keep-alive` for bytes and then up
//!   to `keep-alive` again for capacity; Millrace waits once, for both, up to `keep-alive`.
//! - **Hopeless commits fail at once.** A transaction whose puts alone need more byte
//!   slots than the channel has can never commit; it fails without waiting.
//! - **A failed commit rolls back.** Our `commit` consumes the transaction, so when it
//!   fails its takes go back to the head and its puts are dropped, as a Flume caller's
//!   mandatory `rollback()` after a failed commit would do.
//! - **`ChannelSize` is live.** Flume sets it to the queue length after each commit and
//!   rollback; Millrace reads the queue length when stats are asked for.
//! - **Bad settings are refused** ([`MemoryChannelConfig::validate`]) instead of replaced
//!   by defaults or turned into "unlimited".
//!
//! ## Cost
//! Puts touch only their transaction (plus one relaxed atomic for the attempt counter).
//! Each take and each commit takes the mutex once. A take keeps a copy of the event so
//! that a rollback can return it: the body is a shared [`bytes::Bytes`] (a reference
//! count, no copy), the headers are cloned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tracing::{info, warn};

use crate::channel::{
    AlreadyCommitted, Channel, ChannelCounters, ChannelHealth, ChannelStats, CommitAttempt,
    PutAttempt, TakeStop, Transaction,
};
use crate::config::{usable_byte_slots, MemoryChannelConfig, MEMORY_BYTE_SLOT_SIZE_BYTES};
use crate::error::{ChannelError, OpenError};
use crate::event::Event;
use crate::ordered_queue::OrderedQueue;

/// Where the machine's total memory is read from.
pub const MEMINFO_PATH: &str = "/proc/meminfo";
/// Flume's default `byteCapacity` is this percentage of the memory the JVM may use.
pub const DEFAULT_BYTE_CAPACITY_PERCENT_OF_MEMORY: u64 = 80;
/// Memory assumed when [`MEMINFO_PATH`] cannot be read (not Linux, `/proc` not mounted):
/// 1 GiB. Deliberately small, so that the default byte limit it yields (800 MiB) does not
/// promise more than a small host has; set `byteCapacity` to choose another limit.
pub const FALLBACK_MACHINE_MEMORY_BYTES: u64 = 1 << 30;
/// `/proc/meminfo` reports sizes in kibibytes (it writes "kB").
const MEMINFO_UNIT_BYTES: u64 = 1024;
/// A whole, in percent.
const FULL_PERCENT: u64 = 100;

/// The byte slots an event costs: its body length in slots of
/// [`MEMORY_BYTE_SLOT_SIZE_BYTES`], rounded up, and at least one slot for an empty body
/// (FLUME-1622). Headers are not counted; `byteCapacityBufferPercentage` covers them.
pub fn event_byte_slots(event: &Event) -> u64 {
    (event.body.len() as u64)
        .div_ceil(MEMORY_BYTE_SLOT_SIZE_BYTES)
        .max(1)
}

/// The machine's total memory in bytes (`MemTotal` in [`MEMINFO_PATH`]), or `None` when
/// it cannot be read.
pub fn machine_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string(MEMINFO_PATH).ok()?;
    parse_mem_total_bytes(&meminfo)
}

/// `MemTotal` from the text of `/proc/meminfo`, in bytes.
fn parse_mem_total_bytes(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let mut fields = line.strip_prefix("MemTotal:")?.split_whitespace();
        let amount: u64 = fields.next()?.parse().ok()?;
        match fields.next() {
            Some("kB") => amount.checked_mul(MEMINFO_UNIT_BYTES),
            _ => None,
        }
    })
}

/// Where a memory channel's `byteCapacity` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteCapacitySource {
    /// Set in the configuration.
    Configured,
    /// Not set: 80% of the machine's total memory.
    MachineMemory,
    /// Not set, and the machine's memory could not be read: 80% of
    /// [`FALLBACK_MACHINE_MEMORY_BYTES`].
    Fallback,
}

/// The `byteCapacity` a configuration stands for, in bytes, and where it came from.
pub fn resolve_byte_capacity_bytes(config: &MemoryChannelConfig) -> (u64, ByteCapacitySource) {
    resolve_byte_capacity(config.byte_capacity_bytes)
}

/// A `byteCapacity` setting as applied: the configured figure, else 80% of the machine's
/// memory (shared by the memory channel and the spillable channel's memory tier).
pub fn resolve_byte_capacity(configured_bytes: Option<u64>) -> (u64, ByteCapacitySource) {
    if let Some(bytes) = configured_bytes {
        return (bytes, ByteCapacitySource::Configured);
    }
    let (memory_bytes, source) = match machine_memory_bytes() {
        Some(bytes) => (bytes, ByteCapacitySource::MachineMemory),
        None => (FALLBACK_MACHINE_MEMORY_BYTES, ByteCapacitySource::Fallback),
    };
    let default_bytes = u128::from(memory_bytes)
        * u128::from(DEFAULT_BYTE_CAPACITY_PERCENT_OF_MEMORY)
        / u128::from(FULL_PERCENT);
    (u64::try_from(default_bytes).unwrap_or(u64::MAX), source)
}

/// A channel in process memory, with Flume's `MemoryChannel` semantics. Its contents are
/// lost on close and on crash (see the module documentation).
pub struct MemoryChannel {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    config: MemoryChannelConfig,
    /// `byteCapacity` in bytes, the default already applied.
    byte_capacity_bytes: u64,
    /// Byte slots available to bodies, after the buffer percentage.
    byte_capacity_slots: u64,
    state: Mutex<QueueState>,
    /// Signalled once per event that becomes takeable (commit of puts, rollback of takes).
    events_available: Condvar,
    /// Wakes async takers whenever `events_available` wakes blocked ones.
    arrivals: crate::channel::Arrivals,
    /// Signalled when a commit releases capacity or byte slots, and on close.
    space_freed: Condvar,
    counters: ChannelCounters,
    /// Set once by `close`; read under the state lock by anyone about to wait, and set
    /// before the lock is taken to wake them, so no waiter misses it.
    closed: AtomicBool,
}

struct QueueState {
    /// Committed events in put-commit order.
    queue: OrderedQueue<Event>,
    /// Events taken by open transactions. They still hold their capacity and byte slots.
    taken_events: u64,
    /// Byte slots of queued events plus those of taken events.
    byte_slots_in_use: u64,
}

/// What a transaction asks of the channel at commit.
#[derive(Debug, Clone, Copy)]
struct CommitNeed {
    puts: u64,
    takes: u64,
    put_byte_slots: u64,
    take_byte_slots: u64,
}

/// Which limit keeps a commit from going through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shortfall {
    ByteSlots,
    Capacity,
}

impl MemoryChannel {
    /// Creates an empty channel. Fails only on settings that break a rule
    /// ([`MemoryChannelConfig::validate`]).
    pub fn open(name: &str, config: MemoryChannelConfig) -> Result<Self, OpenError> {
        config.validate().map_err(|source| OpenError::Config {
            channel: name.to_string(),
            source,
        })?;
        let (byte_capacity_bytes, source) = resolve_byte_capacity_bytes(&config);
        let byte_capacity_slots = usable_byte_slots(
            byte_capacity_bytes,
            config.byte_capacity_buffer_percentage,
            MEMORY_BYTE_SLOT_SIZE_BYTES,
        );
        if source == ByteCapacitySource::Fallback {
            warn!(
                channel = name,
                meminfo = MEMINFO_PATH,
                assumed_memory_bytes = FALLBACK_MACHINE_MEMORY_BYTES,
                byte_capacity_bytes,
                "byteCapacity not set and the machine's memory could not be read; \
                 assuming the fallback (set byteCapacity to choose the limit)"
            );
        }
        info!(
            channel = name,
            capacity = config.capacity,
            transaction_capacity = config.transaction_capacity,
            byte_capacity_bytes,
            byte_capacity_source = ?source,
            "memory channel open (contents are lost on close and on crash)"
        );
        let shared = Shared {
            name: name.to_string(),
            byte_capacity_bytes,
            byte_capacity_slots,
            state: Mutex::new(QueueState {
                queue: OrderedQueue::default(),
                taken_events: 0,
                byte_slots_in_use: 0,
            }),
            events_available: Condvar::new(),
            arrivals: crate::channel::Arrivals::default(),
            space_freed: Condvar::new(),
            counters: ChannelCounters::started_now(),
            closed: AtomicBool::new(false),
            config,
        };
        Ok(MemoryChannel {
            shared: Arc::new(shared),
        })
    }

    /// Starts a transaction with the concrete type (the [`Channel`] trait boxes it).
    pub fn transaction(&self) -> Result<MemoryTransaction, ChannelError> {
        self.shared.check_open()?;
        Ok(MemoryTransaction {
            shared: Arc::clone(&self.shared),
            puts: Vec::new(),
            put_byte_slots: 0,
            takes: Vec::new(),
            take_byte_slots: 0,
            finished: false,
        })
    }

    /// The settings the channel runs with (`byte_capacity_bytes` as configured; see
    /// [`MemoryChannel::byte_capacity_bytes`] for the value in force).
    pub fn config(&self) -> &MemoryChannelConfig {
        &self.shared.config
    }

    /// `byteCapacity` in force, in bytes: the configured value or the default.
    pub fn byte_capacity_bytes(&self) -> u64 {
        self.shared.byte_capacity_bytes
    }

    /// Byte slots available to event bodies, after the buffer percentage.
    pub fn byte_capacity_slots(&self) -> u64 {
        self.shared.byte_capacity_slots
    }

    /// Byte slots held by queued events and by takes of open transactions.
    pub fn byte_slots_in_use(&self) -> u64 {
        self.shared.state.lock().byte_slots_in_use
    }

    /// Events queued (not counting those taken by open transactions).
    pub fn queued_events(&self) -> u64 {
        self.shared.state.lock().queue.len() as u64
    }

    /// Events taken by open transactions (they still hold their capacity).
    pub fn taken_events(&self) -> u64 {
        self.shared.state.lock().taken_events
    }
}

impl Drop for MemoryChannel {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Channel for MemoryChannel {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn arrivals(&self) -> Option<&crate::channel::Arrivals> {
        Some(&self.shared.arrivals)
    }

    fn peek(
        &self,
        max_events: usize,
        admit: &mut dyn FnMut(&Event) -> bool,
    ) -> Option<Result<Vec<Event>, ChannelError>> {
        if let Err(closed) = self.shared.check_open() {
            return Some(Err(closed));
        }
        let state = self.shared.state.lock();
        Some(Ok(crate::channel::peek_in_memory(
            state.queue.iter(),
            max_events,
            admit,
        )))
    }

    fn begin(&self) -> Result<Box<dyn Transaction>, ChannelError> {
        Ok(Box::new(self.transaction()?))
    }

    fn stats(&self) -> ChannelStats {
        let queued_events = self.shared.state.lock().queue.len() as u64;
        self.shared
            .counters
            .snapshot(queued_events, self.shared.config.capacity)
    }

    fn health(&self) -> ChannelHealth {
        if self.shared.closed.load(Ordering::Acquire) {
            ChannelHealth::Closed
        } else {
            ChannelHealth::Open
        }
    }

    /// Stops the channel and **discards every queued event**. Open transactions fail
    /// their next put, take or commit; their rollbacks succeed. Safe to call more than
    /// once.
    fn close(&self) -> Result<(), ChannelError> {
        self.shared.close();
        Ok(())
    }
}

impl Shared {
    fn check_open(&self) -> Result<(), ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            Err(ChannelError::Closed {
                channel: self.name.clone(),
            })
        } else {
            Ok(())
        }
    }

    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let discarded_events = {
            let mut state = self.state.lock();
            let queued_slots: u64 = state.queue.iter().map(event_byte_slots).sum();
            state.byte_slots_in_use -= queued_slots;
            // Replace rather than clear, so the queue's memory is returned now.
            std::mem::take(&mut state.queue).len()
        };
        self.counters.mark_stopped();
        // The lock was taken after `closed` was set: every waiter has either seen the
        // flag or is parked and gets this wake-up.
        self.events_available.notify_all();
        self.arrivals.notify();
        self.space_freed.notify_all();
        if discarded_events > 0 {
            warn!(
                channel = %self.name,
                discarded_events,
                "memory channel closed; its queued events are discarded"
            );
        } else {
            info!(channel = %self.name, "memory channel closed");
        }
    }

    /// Which limit, if any, the commit would break now. Byte capacity is checked first,
    /// as Flume acquires byte permits before queue permits.
    fn shortfall(&self, state: &QueueState, need: CommitNeed) -> Option<Shortfall> {
        let grows_bytes = need.put_byte_slots > need.take_byte_slots;
        let byte_slots_after = state.byte_slots_in_use - need.take_byte_slots + need.put_byte_slots;
        if grows_bytes && byte_slots_after > self.byte_capacity_slots {
            return Some(Shortfall::ByteSlots);
        }
        let grows_events = need.puts > need.takes;
        let events_after = state.queue.len() as u64 + state.taken_events - need.takes + need.puts;
        if grows_events && events_after > self.config.capacity {
            return Some(Shortfall::Capacity);
        }
        None
    }

    /// Waits until the commit fits, up to `keep-alive`. On success the lock is still
    /// held, so the caller applies the commit in the same critical section.
    fn wait_for_room(
        &self,
        state: &mut MutexGuard<'_, QueueState>,
        need: CommitNeed,
    ) -> Result<(), ChannelError> {
        let started = Instant::now();
        let deadline = started.checked_add(self.config.keep_alive);
        loop {
            self.check_open()?;
            if self.shortfall(state, need).is_none() {
                return Ok(());
            }
            // Puts that alone exceed the byte limit can never fit: no point waiting.
            let hopeless = need.put_byte_slots > self.byte_capacity_slots;
            let timed_out = hopeless
                || match deadline {
                    Some(deadline) => self.space_freed.wait_until(state, deadline).timed_out(),
                    None => {
                        self.space_freed.wait(state);
                        false
                    }
                };
            if timed_out {
                self.check_open()?;
                return match self.shortfall(state, need) {
                    None => Ok(()),
                    Some(shortfall) => {
                        Err(self.full_error(state, need, shortfall, started.elapsed()))
                    }
                };
            }
        }
    }

    fn full_error(
        &self,
        state: &QueueState,
        need: CommitNeed,
        shortfall: Shortfall,
        waited: Duration,
    ) -> ChannelError {
        let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        match shortfall {
            Shortfall::ByteSlots => ChannelError::ByteCapacityFull {
                channel: self.name.clone(),
                byte_capacity_bytes: self.byte_capacity_bytes,
                body_limit_bytes: slots_to_bytes(self.byte_capacity_slots),
                body_bytes_in_use: slots_to_bytes(state.byte_slots_in_use),
                body_bytes_needed: slots_to_bytes(need.put_byte_slots - need.take_byte_slots),
                waited_ms,
            },
            Shortfall::Capacity => ChannelError::ChannelFull {
                channel: self.name.clone(),
                capacity: self.config.capacity,
                size: state.queue.len() as u64 + state.taken_events,
                waited_ms,
            },
        }
    }

    /// Puts taken events back in their places at the head of the queue, in put-commit
    /// order among the events there. Their byte slots were never released, so only the
    /// taken count changes. On a closed channel the events are dropped with their slots:
    /// the queue is gone.
    fn return_takes(
        &self,
        state: &mut QueueState,
        takes: &mut Vec<(u64, Event)>,
        take_byte_slots: u64,
    ) {
        let count = takes.len();
        state.taken_events -= count as u64;
        if self.closed.load(Ordering::Acquire) {
            state.byte_slots_in_use -= take_byte_slots;
            takes.clear();
            return;
        }
        state.queue.return_taken(std::mem::take(takes));
    }

    /// Wakes at most one waiting taker per event that became takeable, and every async
    /// taker (they look again and go back to waiting if others were first).
    fn wake_takers(&self, events: usize) {
        if events > 0 {
            self.arrivals.notify();
        }
        for _ in 0..events {
            if !self.events_available.notify_one() {
                break;
            }
        }
    }
}

/// Bytes that a number of slots stands for.
fn slots_to_bytes(slots: u64) -> u64 {
    slots.saturating_mul(MEMORY_BYTE_SLOT_SIZE_BYTES)
}

/// A transaction on a [`MemoryChannel`]. Dropping it without commit rolls it back.
pub struct MemoryTransaction {
    shared: Arc<Shared>,
    /// Events put, in order; nobody else sees them before commit.
    puts: Vec<Event>,
    put_byte_slots: u64,
    /// Copies of the events taken, in order, with their order keys, kept for a rollback.
    takes: Vec<(u64, Event)>,
    take_byte_slots: u64,
    finished: bool,
}

impl MemoryTransaction {
    /// Takes as Flume's memory channel does: waits up to the channel's `keep-alive` for an
    /// event, then returns `None`.
    pub fn take_within_keep_alive(&mut self) -> Result<Option<Event>, ChannelError> {
        let keep_alive = self.shared.config.keep_alive;
        self.take_inner(Some(keep_alive))
    }

    fn take_inner(&mut self, wait: Option<Duration>) -> Result<Option<Event>, ChannelError> {
        let shared = &*self.shared;
        ChannelCounters::add(&shared.counters.take_attempt, 1);
        shared.check_open()?;
        if self.takes.len() as u64 >= shared.config.transaction_capacity {
            return Err(ChannelError::TransactionFull {
                channel: shared.name.clone(),
                transaction_capacity: shared.config.transaction_capacity,
                operation: "take",
            });
        }
        let (key, event) = {
            let mut state = shared.state.lock();
            // `None` inside `Some` means a wait too long to represent: wait until woken.
            let deadline = wait.map(|wait| Instant::now().checked_add(wait));
            loop {
                if let Some(keyed) = state.queue.pop_front() {
                    state.taken_events += 1;
                    break keyed;
                }
                let timed_out = match deadline {
                    None => true,
                    Some(Some(deadline)) => shared
                        .events_available
                        .wait_until(&mut state, deadline)
                        .timed_out(),
                    Some(None) => {
                        shared.events_available.wait(&mut state);
                        false
                    }
                };
                if timed_out && state.queue.is_empty() {
                    return Ok(None);
                }
                shared.check_open()?;
            }
        };
        self.take_byte_slots += event_byte_slots(&event);
        self.takes.push((key, event.clone()));
        Ok(Some(event))
    }

    /// Drops the puts and returns the takes to their places at the head of the queue.
    fn roll_back(&mut self) {
        self.finished = true;
        self.puts.clear();
        self.put_byte_slots = 0;
        if self.takes.is_empty() {
            return;
        }
        let returned = self.takes.len();
        {
            let mut state = self.shared.state.lock();
            self.shared
                .return_takes(&mut state, &mut self.takes, self.take_byte_slots);
        }
        self.take_byte_slots = 0;
        self.shared.wake_takers(returned);
    }
}

impl MemoryTransaction {
    /// What the transaction needs from the channel to commit.
    fn need(&self) -> CommitNeed {
        CommitNeed {
            puts: self.puts.len() as u64,
            takes: self.takes.len() as u64,
            put_byte_slots: self.put_byte_slots,
            take_byte_slots: self.take_byte_slots,
        }
    }

    /// Moves the puts to the tail and makes the takes final, in the critical section that
    /// found room for them (`state`), then wakes takers and waiting commits.
    fn apply_commit(&mut self, mut state: MutexGuard<'_, QueueState>, need: CommitNeed) {
        let shared = Arc::clone(&self.shared);
        state.queue.extend(self.puts.drain(..));
        state.taken_events -= need.takes;
        state.byte_slots_in_use =
            state.byte_slots_in_use - need.take_byte_slots + need.put_byte_slots;
        drop(state);
        self.takes.clear();
        self.finished = true;

        ChannelCounters::add(&shared.counters.put_success, need.puts);
        ChannelCounters::add(&shared.counters.take_success, need.takes);
        shared.wake_takers(need.puts as usize);
        let frees_capacity = need.takes > need.puts;
        let frees_bytes = need.take_byte_slots > need.put_byte_slots;
        if frees_capacity || frees_bytes {
            shared.space_freed.notify_all();
        }
    }
}

impl Transaction for MemoryTransaction {
    fn put(&mut self, event: Event) -> Result<(), ChannelError> {
        let shared = &*self.shared;
        ChannelCounters::add(&shared.counters.put_attempt, 1);
        shared.check_open()?;
        if self.puts.len() as u64 >= shared.config.transaction_capacity {
            return Err(ChannelError::TransactionFull {
                channel: shared.name.clone(),
                transaction_capacity: shared.config.transaction_capacity,
                operation: "put",
            });
        }
        self.put_byte_slots += event_byte_slots(&event);
        self.puts.push(event);
        Ok(())
    }

    fn take(&mut self) -> Result<Option<Event>, ChannelError> {
        self.take_inner(None)
    }

    fn take_waiting(&mut self, wait: Duration) -> Result<Option<Event>, ChannelError> {
        self.take_inner(Some(wait))
    }

    /// Checks `capacity` and `byteCapacity` for the net change, waiting up to `keep-alive`
    /// for room; then makes the puts takeable and the takes final. On failure the
    /// transaction is rolled back: its takes return to the head, its puts are dropped.
    fn commit(mut self: Box<Self>) -> Result<(), ChannelError> {
        if self.puts.is_empty() && self.takes.is_empty() {
            self.finished = true;
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let need = self.need();
        let mut state = shared.state.lock();
        if let Err(error) = shared.wait_for_room(&mut state, need) {
            drop(state);
            self.roll_back();
            return Err(error);
        }
        self.apply_commit(state, need);
        Ok(())
    }

    fn try_put(&mut self, event: Event) -> Result<PutAttempt, ChannelError> {
        // Puts never wait here: room is checked at commit.
        self.put(event)?;
        Ok(PutAttempt::Added)
    }

    /// Takes the run under one lock: a memory take never waits unless asked to.
    fn try_take_many(
        &mut self,
        max_events: usize,
        accept: &mut dyn FnMut(&Event) -> bool,
        taken: &mut Vec<Event>,
    ) -> Result<TakeStop, ChannelError> {
        let shared = Arc::clone(&self.shared);
        shared.check_open().inspect_err(|_| {
            ChannelCounters::add(&shared.counters.take_attempt, 1);
        })?;
        let limit = shared.counters.take_room(
            &shared.name,
            shared.config.transaction_capacity,
            self.takes.len(),
            max_events,
        )?;
        let (count, stop) = {
            let mut state = shared.state.lock();
            let available = limit.min(state.queue.len());
            let count = state
                .queue
                .iter()
                .take(available)
                .position(|event| !accept(event))
                .unwrap_or(available);
            let queue = &mut state.queue;
            self.takes
                .extend((0..count).map_while(|_| queue.pop_front()));
            state.taken_events += count as u64;
            let stop = if count < limit && state.queue.is_empty() {
                TakeStop::Empty
            } else {
                TakeStop::Limit
            };
            (count, stop)
        };
        // The copies kept for a rollback are the ones just moved in; the caller gets
        // clones (bodies shared), made outside the lock.
        for (_, event) in &self.takes[self.takes.len() - count..] {
            self.take_byte_slots += event_byte_slots(event);
            taken.push(event.clone());
        }
        let stop = Ok(stop);
        shared.counters.add_take_attempts(count, &stop);
        stop
    }

    /// Commits now when the channel has room for the net change (a memory commit is
    /// complete when it returns); hands the transaction back when it would have to wait
    /// for room.
    fn try_commit_pipelined(mut self: Box<Self>) -> Result<CommitAttempt, ChannelError> {
        if self.puts.is_empty() && self.takes.is_empty() {
            self.finished = true;
            return Ok(CommitAttempt::Started(Box::new(AlreadyCommitted)));
        }
        let shared = Arc::clone(&self.shared);
        let need = self.need();
        let state = shared.state.lock();
        shared.check_open()?;
        if shared.shortfall(&state, need).is_some() {
            drop(state);
            return Ok(CommitAttempt::WouldBlock(self));
        }
        self.apply_commit(state, need);
        Ok(CommitAttempt::Started(Box::new(AlreadyCommitted)))
    }

    fn rollback(mut self: Box<Self>) -> Result<(), ChannelError> {
        self.roll_back();
        Ok(())
    }
}

impl Drop for MemoryTransaction {
    fn drop(&mut self) {
        if !self.finished {
            self.roll_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_kibibytes() {
        let meminfo = "MemTotal:       16318412 kB\nMemFree:         1234 kB\n";
        assert_eq!(parse_mem_total_bytes(meminfo), Some(16_318_412 * 1024));
    }

    #[test]
    fn meminfo_without_a_usable_mem_total_gives_nothing() {
        assert_eq!(parse_mem_total_bytes("MemFree: 1234 kB\n"), None);
        assert_eq!(parse_mem_total_bytes("MemTotal: many kB\n"), None);
        assert_eq!(parse_mem_total_bytes("MemTotal: 1234 pages\n"), None);
    }

    #[test]
    fn an_event_costs_its_body_in_hundred_byte_slots_and_at_least_one() {
        assert_eq!(event_byte_slots(&Event::from_body(Vec::new())), 1);
        assert_eq!(event_byte_slots(&Event::from_body(vec![0u8; 1])), 1);
        assert_eq!(event_byte_slots(&Event::from_body(vec![0u8; 100])), 1);
        assert_eq!(event_byte_slots(&Event::from_body(vec![0u8; 101])), 2);
        assert_eq!(event_byte_slots(&Event::from_body(vec![0u8; 405])), 5);
    }

    #[test]
    fn the_default_byte_capacity_is_eighty_percent_of_memory() {
        let (bytes, source) = resolve_byte_capacity_bytes(&MemoryChannelConfig::default());
        let memory = match source {
            ByteCapacitySource::MachineMemory => machine_memory_bytes().unwrap(),
            ByteCapacitySource::Fallback => FALLBACK_MACHINE_MEMORY_BYTES,
            ByteCapacitySource::Configured => panic!("nothing was configured"),
        };
        assert_eq!(bytes, memory / 100 * 80 + memory % 100 * 80 / 100);
    }
}
