//! A transaction on a file channel until it commits: puts buffered in memory (nothing is
//! written before commit) with the capacity they reserved, and takes moved from the head
//! of the queue into the transaction, read back from the record cache or the segments.
//! Committing is the commit pipeline's work (`commit`); rolling back returns the takes to
//! their places and releases the reservations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::segments::{self, DecodedRecord, ReadFailure, RecordKey};
use super::shared::Shared;
use crate::channel::{ChannelCounters, PutAttempt, TakeStop};
use crate::error::ChannelError;
use crate::event::Event;
use crate::record::{encoded_event_bytes, EventPointer};

/// A transaction on a [`FileChannel`](super::FileChannel). Dropping it without commit
/// rolls it back.
pub struct FileTransaction {
    pub(super) shared: Arc<Shared>,
    pub(super) puts: Vec<Event>,
    /// Encoded bytes of the events in `puts`.
    pub(super) put_bytes: u64,
    /// Taken events with their order keys.
    pub(super) takes: Vec<(u64, EventPointer)>,
    /// Committed, handed to the commit pipeline, or rolled back: nothing left to undo.
    pub(super) finished: bool,
}

impl FileTransaction {
    /// A new, empty transaction, counted as open until it is dropped.
    pub(super) fn begin(shared: &Arc<Shared>) -> Self {
        shared
            .open_transactions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        FileTransaction {
            shared: Arc::clone(shared),
            puts: Vec::new(),
            put_bytes: 0,
            takes: Vec::new(),
            finished: false,
        }
    }

    /// Adds an event, waiting up to `keep-alive` for capacity.
    pub(super) fn put_waiting(&mut self, event: Event) -> Result<(), ChannelError> {
        let event_bytes = self.check_put(&event)?;
        let shared = &self.shared;
        shared.queue.reserve_put(
            &shared.name,
            shared.config.capacity,
            shared.config.keep_alive,
            || shared.check_usable(),
        )?;
        self.put_bytes += event_bytes;
        self.puts.push(event);
        Ok(())
    }

    /// Adds an event if the channel has capacity now; hands it back otherwise.
    pub(super) fn put_without_blocking(
        &mut self,
        event: Event,
    ) -> Result<PutAttempt, ChannelError> {
        let event_bytes = self.check_put(&event)?;
        if !self
            .shared
            .queue
            .try_reserve_put(self.shared.config.capacity)
        {
            return Ok(PutAttempt::WouldBlock(event));
        }
        self.put_bytes += event_bytes;
        self.puts.push(event);
        Ok(PutAttempt::Added)
    }

    /// The checks a put makes before it reserves room; returns the event's encoded size.
    fn check_put(&self, event: &Event) -> Result<u64, ChannelError> {
        let shared = &self.shared;
        ChannelCounters::add(&shared.counters.put_attempt, 1);
        shared.check_usable_for_puts()?;
        if self.puts.len() as u64 >= shared.config.transaction_capacity {
            return Err(ChannelError::TransactionFull {
                channel: shared.name.clone(),
                transaction_capacity: shared.config.transaction_capacity,
                operation: "put",
            });
        }
        let event_bytes = encoded_event_bytes(event) as u64;
        if event_bytes > shared.max_event_bytes {
            return Err(ChannelError::EventTooLarge {
                channel: shared.name.clone(),
                event_bytes,
                max_event_bytes: shared.max_event_bytes,
            });
        }
        shared.space.check_put(&shared.name, event_bytes)?;
        Ok(event_bytes)
    }

    /// Takes the event at the head of the queue, waiting up to `wait` for one (`None`:
    /// not at all).
    pub(super) fn take_event(
        &mut self,
        wait: Option<Duration>,
    ) -> Result<Option<Event>, ChannelError> {
        let shared = &self.shared;
        ChannelCounters::add(&shared.counters.take_attempt, 1);
        shared.check_usable()?;
        if self.takes.len() as u64 >= shared.config.transaction_capacity {
            return Err(ChannelError::TransactionFull {
                channel: shared.name.clone(),
                transaction_capacity: shared.config.transaction_capacity,
                operation: "take",
            });
        }
        let (key, pointer) = {
            let mut state = shared.queue.state.lock();
            let deadline = wait.map(|wait| Instant::now() + wait);
            loop {
                if let Some((key, pointer)) = state.queue.pop_front() {
                    state.in_flight.insert(key, pointer);
                    break (key, pointer);
                }
                let Some(deadline) = deadline else {
                    return Ok(None);
                };
                if shared
                    .queue
                    .events_available
                    .wait_until(&mut state, deadline)
                    .timed_out()
                    && state.queue.is_empty()
                {
                    return Ok(None);
                }
                shared.check_usable()?;
            }
        };
        match shared.registry.read_event(pointer) {
            Ok(event) => {
                self.takes.push((key, pointer));
                Ok(Some(event))
            }
            Err(failure) => {
                {
                    let mut state = shared.queue.state.lock();
                    shared.queue.return_takes(&mut state, &[(key, pointer)]);
                }
                Err(self.fail_unreadable(failure))
            }
        }
    }

    /// Takes from the head while its events' put records are in the record cache, one
    /// state lock for the run; a record that is not is read outside the lock if the page
    /// cache holds it. Counts a take attempt per event taken, and one more when it
    /// stopped at an empty queue. See [`Transaction::try_take_many`] for the contract.
    ///
    /// [`Transaction::try_take_many`]: crate::channel::Transaction::try_take_many
    pub(super) fn take_many_without_blocking(
        &mut self,
        max_events: usize,
        accept: &mut dyn FnMut(&Event) -> bool,
        taken: &mut Vec<Event>,
    ) -> Result<TakeStop, ChannelError> {
        let shared = Arc::clone(&self.shared);
        if let Err(error) = shared.check_usable() {
            ChannelCounters::add(&shared.counters.take_attempt, 1);
            return Err(error);
        }
        let limit = shared.counters.take_room(
            &shared.name,
            shared.config.transaction_capacity,
            self.takes.len(),
            max_events,
        )?;
        let first_new = taken.len();
        // The put record of the previous event taken (or of the head, just read), with
        // its place: used as long as the head points into it, even if the cache has
        // evicted it meanwhile.
        let mut record: Option<(RecordKey, DecodedRecord)> = None;
        let outcome = loop {
            let mut state = shared.queue.state.lock();
            let mut refused = false;
            let uncached_head = loop {
                if taken.len() - first_new == limit {
                    break None;
                }
                let Some(&pointer) = state.queue.front() else {
                    break None;
                };
                let place = (pointer.segment_id, pointer.record_offset);
                let events = match record.take() {
                    Some((cached_place, events)) if cached_place == place => events,
                    _ => match shared.registry.cached_record(pointer) {
                        Some(events) => events,
                        None => break Some(pointer),
                    },
                };
                let Some(event) = events.get(pointer.event_index as usize) else {
                    break Some(pointer);
                };
                if !accept(event) {
                    refused = true;
                    break None;
                }
                taken.push(event.clone());
                let (key, _) = state.queue.pop_front().expect("the head was just read");
                state.in_flight.insert(key, pointer);
                self.takes.push((key, pointer));
                record = Some((place, events));
            };
            let queue_empty = state.queue.is_empty();
            drop(state);
            let Some(head) = uncached_head else {
                break Ok(
                    if queue_empty && !refused && taken.len() - first_new < limit {
                        TakeStop::Empty
                    } else {
                        TakeStop::Limit
                    },
                );
            };
            // The head's record is not cached (or is too short for its pointer): read it
            // without the lock if the page cache has it, then go on from the head.
            match shared.registry.load_record_without_blocking(head) {
                Ok(Some(events)) if head.event_index < events.len() as u32 => {
                    record = Some(((head.segment_id, head.record_offset), events));
                }
                Ok(Some(events)) => {
                    let failure = shared.registry.event_index_out_of_range(head, events.len());
                    break Err(self.fail_unreadable(failure));
                }
                Ok(None) => break Ok(TakeStop::WouldBlock),
                Err(failure) => break Err(self.fail_unreadable(failure)),
            }
        };
        shared
            .counters
            .add_take_attempts(taken.len() - first_new, &outcome);
        outcome
    }

    /// A take could not read its event: counts the error and fails the channel, since
    /// serving later events past one that cannot be read would lose it silently (the
    /// operator runs `channelctl verify`). The pointer is already back at the head.
    fn fail_unreadable(&self, failure: ReadFailure) -> ChannelError {
        let shared = &self.shared;
        ChannelCounters::add(&shared.counters.take_error, 1);
        let error = read_failure_error(&shared.name, failure);
        shared.health.fail(error.to_string());
        error
    }

    /// Returns the takes to their places at the head of the queue and releases the
    /// capacity the puts reserved; the transaction is finished, and empty.
    pub(super) fn rollback_in_memory(&mut self) {
        self.finished = true;
        self.shared
            .queue
            .roll_back(&self.takes, self.puts.len() as u64);
        self.takes.clear();
        self.puts.clear();
        self.put_bytes = 0;
    }
}

impl Drop for FileTransaction {
    fn drop(&mut self) {
        if !self.finished {
            self.rollback_in_memory();
        }
        self.shared
            .open_transactions
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The channel error for an event of `channel` that could not be read.
pub(super) fn read_failure_error(channel: &str, failure: segments::ReadFailure) -> ChannelError {
    match failure {
        segments::ReadFailure::Io { path, source } => ChannelError::Io {
            channel: channel.to_string(),
            file: path,
            operation: "read",
            source,
        },
        segments::ReadFailure::Corrupt {
            path,
            offset,
            detail,
        } => ChannelError::Corruption {
            channel: channel.to_string(),
            file: path,
            offset,
            detail,
        },
    }
}
