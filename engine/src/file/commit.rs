//! The commit pipeline: from a transaction's buffered puts and takes to an acknowledged,
//! applied commit.
//!
//! 1. On the committing thread: pick a data directory (fewest bytes waiting, above the
//!    space guard), draw a transaction id and a contiguous range of write-order ids, and
//!    encode the records — put records of about [`PUT_RECORD_TARGET_BYTES`] (compressed
//!    and sealed as configured), a take record, the commit record.
//! 2. Hand them to the directory's writer ([`SubmittedCommit`] from then on: the range
//!    must reach the sequencer whatever happens, so it finishes on drop).
//! 3. The writer writes and syncs a round and answers; the answer goes to the sequencer
//!    (`queue`), which applies commits in write order: puts join the queue (and the take
//!    cache), takes become final — or, on failure, the puts are dropped and the takes
//!    return to their places.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::queue::{CommitEffect, FinishedCommit};
use super::transaction::FileTransaction;
use super::writer::{CommitOutcome, RecordLocation, WriteJob};
use crate::channel::{ChannelCounters, CommitAttempt, CommitFuture, PendingCommit};
use crate::clock::unix_time_ms;
use crate::error::ChannelError;
use crate::event::Event;
use crate::record::{
    encode_put_record, encode_record, encode_take_payload, encoded_event_bytes, CommitSummary,
    EventPointer, PutEncoding, RecordKind,
};

/// A put record is closed once it holds this many bytes of events, so that a take reads
/// and decodes a bounded amount to reach one event.
const PUT_RECORD_TARGET_BYTES: usize = 1024 * 1024;
/// The most event bytes a commit may put and still be started by
/// [`Transaction::try_commit_pipelined`](crate::channel::Transaction::try_commit_pipelined):
/// encoding (copy, compression, sealing and CRC) runs on the committing thread, and
/// beyond this it is long CPU work (about 0.1 ms per MiB plain, several times that
/// compressed or sealed) that an async caller should run off its runtime.
const TRY_COMMIT_MAX_PUT_BYTES: u64 = 1024 * 1024;

impl FileTransaction {
    /// Encodes the transaction's records: one put record per batch (compressed and
    /// sealed as the channel is configured), then a take record, then the commit
    /// record, with consecutive write-order ids. Runs on the committing thread.
    fn encode(
        &self,
        transaction_id: u64,
        first_write_order_id: u64,
        put_batches: &[Range<usize>],
    ) -> Result<Vec<u8>, ChannelError> {
        let shared = &self.shared;
        let encoding = PutEncoding {
            compression: shared.config.compression,
            sealing: shared.sealer.as_ref(),
        };
        let mut buffer = Vec::new();
        let mut write_order_id = first_write_order_id;
        for batch in put_batches {
            encode_put_record(
                &mut buffer,
                transaction_id,
                write_order_id,
                &self.puts[batch.clone()],
                encoding,
            )
            .map_err(|exhausted| ChannelError::Failed {
                channel: shared.name.clone(),
                reason: exhausted.to_string(),
            })?;
            write_order_id += 1;
        }
        if !self.takes.is_empty() {
            let pointers: Vec<EventPointer> =
                self.takes.iter().map(|(_, pointer)| *pointer).collect();
            encode_record(
                &mut buffer,
                RecordKind::Take,
                transaction_id,
                write_order_id,
                |buffer| encode_take_payload(buffer, &pointers),
            );
            write_order_id += 1;
        }
        let summary = CommitSummary {
            put_records: put_batches.len() as u32,
            put_events: self.puts.len() as u32,
            take_events: self.takes.len() as u32,
            committed_unix_ms: unix_time_ms(),
        };
        encode_record(
            &mut buffer,
            RecordKind::Commit,
            transaction_id,
            write_order_id,
            |buffer| summary.encode(buffer),
        );
        Ok(buffer)
    }

    /// Splits the puts into batches of about [`PUT_RECORD_TARGET_BYTES`].
    fn put_batches(&self) -> Vec<Range<usize>> {
        let mut batches = Vec::new();
        let mut start = 0;
        let mut batch_bytes = 0;
        for (index, event) in self.puts.iter().enumerate() {
            let event_bytes = encoded_event_bytes(event);
            let max_batch_bytes = self.shared.max_event_bytes as usize;
            if index > start
                && (batch_bytes + event_bytes > PUT_RECORD_TARGET_BYTES
                    || batch_bytes + event_bytes > max_batch_bytes)
            {
                batches.push(start..index);
                start = index;
                batch_bytes = 0;
            }
            batch_bytes += event_bytes;
        }
        if start < self.puts.len() {
            batches.push(start..self.puts.len());
        }
        batches
    }

    /// Pointers to the committed events (one per event, in order), and the decoded
    /// batches handed to the take cache so fresh events are served from memory.
    fn cache_and_point(
        &self,
        put_batches: &[Range<usize>],
        puts: Vec<Event>,
        locations: &[RecordLocation],
    ) -> Vec<EventPointer> {
        let mut pointers = Vec::with_capacity(puts.len());
        let queued_events = self.shared.queue.state.lock().queue.len();
        let mut events = puts.into_iter();
        for (batch, location) in put_batches.iter().zip(locations) {
            let batch_events: Vec<Event> = events.by_ref().take(batch.len()).collect();
            pointers.extend((0..batch.len() as u32).map(|event_index| EventPointer {
                segment_id: location.segment_id,
                record_offset: location.offset,
                event_index,
            }));
            self.shared.registry.cache_put_record(
                location.segment_id,
                location.offset,
                batch_events,
                queued_events,
            );
        }
        pointers
    }

    /// Assigns the commit its write-order range and hands its records to a dir writer,
    /// without waiting for them to be durable.
    pub(super) fn submit_commit(mut self: Box<Self>) -> Result<SubmittedCommit, ChannelError> {
        if self.puts.is_empty() && self.takes.is_empty() {
            self.finished = true;
            return Ok(SubmittedCommit {
                transaction: self,
                put_batches: Vec::new(),
                first_write_order_id: 0,
                last_write_order_id: 0,
                reply: WriterReply::Taken,
                finished: true,
            });
        }
        let usable = if self.puts.is_empty() {
            self.shared.check_usable()
        } else {
            self.shared.check_usable_for_puts()
        };
        if let Err(error) = usable {
            self.rollback_in_memory();
            return Err(error);
        }
        let shared = Arc::clone(&self.shared);
        let put_batches = self.put_batches();
        let put_bytes = self.put_bytes;
        let dir = match shared.pick_dir(put_bytes, !self.puts.is_empty()) {
            Ok(dir) => dir,
            Err(error) => {
                ChannelCounters::add(&shared.counters.put_error, 1);
                self.rollback_in_memory();
                return Err(error);
            }
        };
        let record_count = put_batches.len() + usize::from(!self.takes.is_empty()) + 1;
        let transaction_id = shared.next_transaction_id.fetch_add(1, Ordering::Relaxed);
        // From here on the write-order range must reach the sequencer, whatever happens,
        // or later commits would wait for it forever: SubmittedCommit finishes on drop.
        let first_write_order_id = shared
            .next_write_order_id
            .fetch_add(record_count as u64, Ordering::AcqRel);
        let last_write_order_id = first_write_order_id + record_count as u64 - 1;
        let (reply_sender, reply_receiver) = oneshot::channel();
        let reply = match self.encode(transaction_id, first_write_order_id, &put_batches) {
            Err(error) => WriterReply::Failed(error),
            Ok(records) => match dir.writer.submit(WriteJob {
                records,
                record_count,
                puts_events: !self.puts.is_empty(),
                reply: reply_sender,
            }) {
                Ok(()) => WriterReply::Waiting(reply_receiver),
                Err(_) => WriterReply::Failed(ChannelError::Closed {
                    channel: shared.name.clone(),
                }),
            },
        };
        self.finished = true;
        Ok(SubmittedCommit {
            transaction: self,
            put_batches,
            first_write_order_id,
            last_write_order_id,
            reply,
            finished: false,
        })
    }

    /// Starts the commit unless encoding it is long CPU work (see
    /// [`TRY_COMMIT_MAX_PUT_BYTES`]), in which case the transaction comes back unchanged.
    pub(super) fn try_submit_commit(self: Box<Self>) -> Result<CommitAttempt, ChannelError> {
        if self.put_bytes > TRY_COMMIT_MAX_PUT_BYTES {
            return Ok(CommitAttempt::WouldBlock(self));
        }
        Ok(CommitAttempt::Started(Box::new(self.submit_commit()?)))
    }
}

/// Which segments must outlive which, from where a transaction's records landed: the
/// take record's segment outlives the taken events' segments, and the commit record's
/// segment outlives the put records' segments.
fn record_dependencies(
    locations: &[RecordLocation],
    put_record_count: usize,
    takes: &[(u64, EventPointer)],
) -> Vec<(u32, Vec<u32>)> {
    let mut dependencies = Vec::new();
    let commit_segment = locations.last().expect("a commit record").segment_id;
    let put_segments: Vec<u32> = locations[..put_record_count]
        .iter()
        .map(|location| location.segment_id)
        .filter(|&segment| segment != commit_segment)
        .collect();
    if !put_segments.is_empty() {
        dependencies.push((commit_segment, put_segments));
    }
    if !takes.is_empty() {
        let take_segment = locations[put_record_count].segment_id;
        let mut taken_segments: Vec<u32> = takes
            .iter()
            .map(|(_, pointer)| pointer.segment_id)
            .collect();
        taken_segments.sort_unstable();
        taken_segments.dedup();
        dependencies.push((take_segment, taken_segments));
        if take_segment != commit_segment {
            dependencies.push((commit_segment, vec![take_segment]));
        }
    }
    dependencies
}

/// A file transaction's commit once its records are handed to the dir writer: its place
/// in the write order is fixed, its durability still to come. [`SubmittedCommit::finish`]
/// waits for the writer and applies the outcome; dropping it unfinished finishes it, so
/// the sequencer never waits for a commit that nobody completes.
pub struct SubmittedCommit {
    transaction: Box<FileTransaction>,
    put_batches: Vec<Range<usize>>,
    first_write_order_id: u64,
    last_write_order_id: u64,
    /// The writer's answer to come, or the error that stopped the records before the
    /// writer.
    reply: WriterReply,
    finished: bool,
}

impl SubmittedCommit {
    /// Waits (blocking) for the writer's answer and applies it.
    pub(super) fn complete(&mut self, wait_until_applied: bool) -> Result<(), ChannelError> {
        if self.finished {
            return Ok(());
        }
        let outcome = self.reply.receive_blocking(&self.transaction.shared.name);
        self.apply(outcome, wait_until_applied)
    }

    /// Hands the writer's answer to the sequencer: the commit's effects, or its
    /// abandonment.
    fn apply(
        &mut self,
        outcome: CommitOutcome,
        wait_until_applied: bool,
    ) -> Result<(), ChannelError> {
        self.finished = true;
        let transaction = &mut self.transaction;
        let shared = Arc::clone(&transaction.shared);
        let puts = std::mem::take(&mut transaction.puts);
        let takes = std::mem::take(&mut transaction.takes);
        let first_write_order_id = self.first_write_order_id;
        let last_write_order_id = self.last_write_order_id;
        match outcome {
            Ok(locations) => {
                let dependencies = record_dependencies(&locations, self.put_batches.len(), &takes);
                let put_pointers = transaction.cache_and_point(&self.put_batches, puts, &locations);
                shared.queue.finish_commit(
                    first_write_order_id,
                    FinishedCommit {
                        last_write_order_id,
                        effect: CommitEffect::Applied {
                            put_pointers,
                            takes,
                            dependencies,
                        },
                    },
                    wait_until_applied,
                    &shared.counters,
                );
                Ok(())
            }
            Err(error) => {
                if !puts.is_empty() {
                    ChannelCounters::add(&shared.counters.put_error, 1);
                }
                shared.queue.finish_commit(
                    first_write_order_id,
                    FinishedCommit {
                        last_write_order_id,
                        effect: CommitEffect::Abandoned {
                            put_count: puts.len() as u64,
                            takes,
                        },
                    },
                    wait_until_applied,
                    &shared.counters,
                );
                Err(error)
            }
        }
    }
}

impl PendingCommit for SubmittedCommit {
    /// Durable (or failed) on return; visible to takers once every commit started
    /// before it has finished too, so pipelined commits never wait for each other here.
    fn finish(mut self: Box<Self>) -> Result<(), ChannelError> {
        self.complete(false)
    }

    fn finish_async(mut self: Box<Self>) -> CommitFuture {
        Box::pin(async move {
            if self.finished {
                return Ok(());
            }
            let outcome = self.reply.receive(&self.transaction.shared.name).await;
            self.apply(outcome, false)
        })
    }
}

/// The dir writer's answer to a submitted commit, as it travels.
enum WriterReply {
    /// Not received yet (blocking receivers use it as is).
    Waiting(oneshot::Receiver<CommitOutcome>),
    /// Not received yet, being awaited.
    Awaiting(oneshot::AsyncReceiver<CommitOutcome>),
    /// The records never reached the writer.
    Failed(ChannelError),
    /// Received already.
    Taken,
}

impl WriterReply {
    fn closed(channel: &str) -> ChannelError {
        ChannelError::Closed {
            channel: channel.to_string(),
        }
    }

    /// Waits for the answer on this thread.
    fn receive_blocking(&mut self, channel: &str) -> CommitOutcome {
        match std::mem::replace(self, WriterReply::Taken) {
            WriterReply::Waiting(receiver) => receiver
                .recv()
                .unwrap_or_else(|_| Err(Self::closed(channel))),
            WriterReply::Awaiting(receiver) => {
                block_on_reply(receiver).unwrap_or_else(|_| Err(Self::closed(channel)))
            }
            WriterReply::Failed(error) => Err(error),
            WriterReply::Taken => Err(Self::closed(channel)),
        }
    }

    /// Awaits the answer. If the future is dropped before it arrives, the receiver stays
    /// here, so dropping the commit still completes it.
    async fn receive(&mut self, channel: &str) -> CommitOutcome {
        if let WriterReply::Waiting(_) = self {
            let WriterReply::Waiting(receiver) = std::mem::replace(self, WriterReply::Taken) else {
                unreachable!("checked above");
            };
            *self = WriterReply::Awaiting(std::future::IntoFuture::into_future(receiver));
        }
        let received = match self {
            WriterReply::Awaiting(receiver) => Some(receiver.await),
            _ => None,
        };
        match received {
            Some(answer) => {
                *self = WriterReply::Taken;
                answer.unwrap_or_else(|_| Err(Self::closed(channel)))
            }
            None => self.receive_blocking(channel),
        }
    }
}

/// Waits on this thread for an answer that was being awaited when its future was
/// dropped.
fn block_on_reply(
    mut receiver: oneshot::AsyncReceiver<CommitOutcome>,
) -> Result<CommitOutcome, oneshot::RecvError> {
    struct ThreadWaker(std::thread::Thread);
    impl std::task::Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    loop {
        match std::future::Future::poll(std::pin::Pin::new(&mut receiver), &mut context) {
            std::task::Poll::Ready(answer) => return answer,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

impl Drop for SubmittedCommit {
    fn drop(&mut self) {
        let _ = self.complete(false);
    }
}
