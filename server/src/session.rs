//! One client connection: handshake, requests in order, one transaction at a time.
//!
//! # Constraints
//!
//! - **The engine blocks; the runtime must not.** A commit waits for `fdatasync`, a put
//!   may wait `keep-alive` for capacity, a take may wait for an event or read the disk.
//!   The session first makes each call in the engine's never-blocking form (`begin`,
//!   `try_put`, `try_take`, `try_commit_pipelined`, `rollback`) on the runtime's own
//!   thread, which is the common case and costs no thread hand-off. Only what the engine
//!   hands back as blocking moves to tokio's blocking pool ([`on_blocking_pool`]): the
//!   session's transaction (`Box<dyn Transaction>`, `Send`) moves into that call and
//!   comes back with the result, so the session owns it between requests.
//! - **Waiting is not work.** A take that waits for an event holds no thread: the
//!   session listens to the channel's [`Arrivals`], looks with a never-blocking take and
//!   awaits the listener, so hundreds of idle consumers cannot occupy the blocking pool
//!   that commits and checkpoints need. (The pool itself may grow to a thread per
//!   connection: see `daemon`.)
//! - **Unauthenticated means small and short.** Before its `Hello` is accepted a
//!   connection is read no further than the `Hello` can need (the decoder refuses a
//!   larger one from its length prefix) and must finish it within the handshake
//!   deadline. Client-chosen text reaches the log only as [`Untrusted`].
//! - **In order, exactly once.** Requests are executed one after another as they are
//!   decoded, each answered once, in order. Responses collect in an output buffer that is
//!   written when no complete request is left to execute (so a pipelined burst is
//!   answered with few writes), before a `Take` that may wait, and when it grows large.
//! - **Limits before allocation.** The decoder refuses an oversized length prefix as soon
//!   as it arrives. A frame whose first byte has arrived must complete within the frame
//!   deadline (counted while the session waits for bytes, so a pipelining client is not
//!   charged for the server's own work); a connection with nothing to read and nothing
//!   in progress is closed after the idle timeout.
//! - **Disconnect = rollback.** However the session ends (client close, error, timeout,
//!   shutdown), an open transaction is rolled back. If the session is dropped while its
//!   transaction is inside an engine call, the engine call finishes on its thread and
//!   dropping the transaction there rolls it back (the engine's `Drop` contract).
//! - **Closing politely.** An error frame sent before closing is followed by a write
//!   shutdown and a short drain of what the client already sent, so the close is a FIN
//!   after the error, not a reset that could destroy it in flight.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use bytes::BytesMut;
use millrace_engine::{
    Arrivals, Channel, ChannelError, ChannelStats as EngineStats, CommitAttempt, PendingCommit,
    PutAttempt, TakeStop, Transaction,
};
use millrace_protocol::{
    encoded_event_bytes, negotiate_version, ChannelStats, DecodeError, DecodeLimits, EncodeError,
    Encoder, ErrorClass, ErrorResponse, EventBatch, Hello, HelloAccepted, InspectReport,
    ReplayRequest, Request, RequestDecoder, RequestFrame, RequestId, Response, MAGIC,
};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

use crate::config::AuthToken;
use crate::error_mapping::{engine_error_response, inspect_error_response};
use crate::logging::Untrusted;
use crate::metrics::flume_counters;
use crate::registry::{ChannelEntry, ChannelRegistry, ConnectionId};
use crate::reports::{live_inspect_report, replay_report, resolve_replay_point};
use crate::shutdown::{ShutdownPhase, ShutdownWatcher};

/// Bytes the read buffer grows by before each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most `PutCommit`s of one connection on their way to the disk at once. Their commits
/// are started in request order and answered in request order; meanwhile the session
/// reads and starts the next ones, so one sync can carry several of them.
pub const MAX_PIPELINED_COMMITS: usize = 32;
/// Responses are written once this many bytes are waiting, even in the middle of a
/// pipelined burst, so the output buffer stays bounded.
const FLUSH_THRESHOLD_BYTES: usize = 1024 * 1024;
/// After a closing error frame: how long the session keeps reading (and discarding) what
/// the client still sends, waiting for it to close, so the error is not lost to a reset.
const CLOSE_LINGER: Duration = Duration::from_millis(1_000);
/// After a closing error frame: the most bytes discarded while lingering.
const CLOSE_DRAIN_MAX_BYTES: usize = 1024 * 1024;
/// Why a replay needs a file channel, for the `NOT_SUPPORTED` answer.
const REPLAY_NEEDS_A_LOG: &str = "only a file channel keeps the log of taken events a replay \
     reads back (a spillable channel's memory tier never reaches disk)";
/// Why an inspect report needs a file channel, for the `NOT_SUPPORTED` answer.
/// The most events one `Peek` shows, whatever it asks: a look at the head, not a dump
/// (`channelctl inspect` reads a stopped channel's every event). Keeps the copies a peek
/// holds bounded before the frame limit applies.
const MAX_PEEK_EVENTS: usize = 10_000;

const INSPECT_NEEDS_FILES: &str = "only a file channel has segments and checkpoints to \
     report; `channelctl stats` shows this channel's counters";

/// What every session of a server shares.
#[derive(Debug)]
pub struct SessionSettings {
    /// The decoder's limits (`server.maxFrameBytes`).
    pub decode_limits: DecodeLimits,
    /// `server.frameDeadlineMs`: a started frame must be complete within it; also the
    /// longest a write of responses may take.
    pub frame_deadline: Duration,
    /// `server.idleTimeoutMs`.
    pub idle_timeout: Duration,
    /// `server.handshakeDeadlineMs`: from accept to a complete `Hello`.
    pub handshake_deadline: Duration,
    /// The longest a `Take` waits; larger `wait_ms` values are clamped.
    pub max_take_wait: Duration,
    /// `server.authToken`.
    pub auth_token: Option<AuthToken>,
    /// Sent in `HelloAccepted`, e.g. `channeld 0.1.0`.
    pub server_name: String,
}

/// Why a session ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    /// The client closed the connection.
    ClientClosed,
    /// The server closed it after an error frame (protocol violation, timeout, refusal).
    ClosedWithError,
    /// The server is stopping.
    ShuttingDown,
}

/// What to do after a request.
enum Flow {
    Continue,
    Close(SessionEnd),
}

/// A failure that ends a session without an error frame: the connection itself broke.
#[derive(Debug, Error)]
enum SessionError {
    #[error("reading from the client failed: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing to the client failed: {0}")]
    Write(#[source] std::io::Error),
    #[error("writing {pending_bytes} bytes of responses took longer than {limit_ms} ms")]
    WriteTimedOut {
        pending_bytes: usize,
        limit_ms: u128,
    },
    #[error("an engine call panicked: {0}")]
    EngineTaskFailed(String),
}

/// Runs `work` on tokio's blocking pool, for engine calls that may wait.
async fn on_blocking_pool<T, F>(work: F) -> Result<T, SessionError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join_error| SessionError::EngineTaskFailed(join_error.to_string()))
}

/// Compares the offered token with the configured one in time independent of where they
/// differ (only the length can be learnt from timing).
fn tokens_match(offered: &str, expected: &str) -> bool {
    bool::from(offered.as_bytes().ct_eq(expected.as_bytes()))
}

/// The connection's open transaction.
struct OpenTransaction {
    entry: Arc<ChannelEntry>,
    /// The channel the transaction runs on (a waiting take listens to its arrivals).
    channel: Arc<dyn Channel>,
    transaction: Box<dyn Transaction>,
    /// Events put so far.
    put_count: u64,
    /// Events taken so far (delivered or not).
    take_count: u64,
}

impl OpenTransaction {
    fn channel_name(&self) -> &str {
        self.entry.name()
    }

    /// Rolls back (the engine's rollback never blocks); logs a failure (it only fails on
    /// a closed channel, where nothing is left to undo).
    fn roll_back(self) {
        let channel = self.entry.name().to_string();
        if let Err(error) = self.transaction.rollback() {
            warn!(%channel, %error, "rollback failed");
        }
    }
}

/// Converts a received event to the engine's. Headers become a map: when a key repeats,
/// the last value wins (the protocol keeps duplicates; Flume's events are maps).
fn to_engine_event(event: millrace_protocol::Event) -> millrace_engine::Event {
    millrace_engine::Event {
        headers: event.headers.into_iter().collect(),
        body: event.body,
    }
}

/// Flume's counters of a channel as a stats reply.
fn stats_reply(stats: &EngineStats) -> ChannelStats {
    flume_counters(stats)
        .into_iter()
        .fold(ChannelStats::default(), |reply, (name, value)| {
            reply.with_counter(name, value)
        })
}

/// The outcome of a take: the encoded `Events` frame, or the error to answer with (the
/// transaction must then be rolled back).
type TakeOutcome = Result<BytesMut, ErrorResponse>;

/// The room an `Events` frame has for events within the client's frame limit; the
/// engine asks it before taking each event, so an event the frame cannot carry is never
/// taken.
struct FrameRoom {
    /// The frame's bytes before its events: length prefix, header and event count.
    header_bytes: usize,
    room_bytes: u64,
    used_bytes: usize,
    /// The size of the first event refused for lack of room.
    refused_event_bytes: Option<usize>,
    /// An event whose size cannot be encoded at all.
    sizing_error: Option<EncodeError>,
}

impl FrameRoom {
    fn new(encoder: Encoder, request_id: RequestId) -> Self {
        let mut probe = BytesMut::new();
        let writer = encoder.events_writer(&mut probe, request_id);
        FrameRoom {
            header_bytes: writer.frame_bytes(),
            room_bytes: writer.remaining_bytes(),
            used_bytes: 0,
            refused_event_bytes: None,
            sizing_error: None,
        }
    }

    /// Makes room for `event` and says yes, or remembers why not and says no.
    fn admit(&mut self, event: &millrace_engine::Event) -> bool {
        match encoded_event_bytes(event.headers.iter(), event.body.len()) {
            Ok(event_bytes) if event_bytes as u64 <= self.room_bytes => {
                self.room_bytes -= event_bytes as u64;
                self.used_bytes += event_bytes;
                true
            }
            Ok(event_bytes) => {
                self.refused_event_bytes.get_or_insert(event_bytes);
                false
            }
            Err(error) => {
                self.sizing_error.get_or_insert(error);
                false
            }
        }
    }

    /// The answer when not even one event fits: `FRAME_TOO_LARGE` (closing) naming the
    /// sizes, or `INTERNAL` for an event that cannot be encoded; `None` when nothing was
    /// refused.
    fn refusal(&mut self, encoder: Encoder) -> Option<ErrorResponse> {
        if let Some(error) = self.sizing_error.take() {
            return Some(ErrorResponse::internal(error));
        }
        self.refused_event_bytes.take().map(|event_bytes| {
            ErrorResponse::frame_too_large(
                (self.header_bytes + event_bytes) as u64,
                encoder.peer_max_frame_bytes(),
            )
        })
    }

    /// Encodes `events` (admitted by this room) as one `Events` frame.
    fn encode(
        self,
        encoder: Encoder,
        request_id: RequestId,
        events: &[millrace_engine::Event],
    ) -> TakeOutcome {
        let mut frame = BytesMut::with_capacity(self.header_bytes + self.used_bytes);
        let mut writer = encoder.events_writer(&mut frame, request_id);
        for event in events {
            writer
                .push(event.headers.iter(), &event.body)
                .map_err(ErrorResponse::internal)?;
        }
        writer.finish().map_err(ErrorResponse::internal)?;
        Ok(frame)
    }
}

/// What a never-blocking take found.
enum TakeAttempt {
    /// Events taken (or an error); the answer is ready.
    Done(TakeOutcome),
    /// Nothing taken: the channel is empty and the client is willing to wait.
    Empty,
    /// Nothing taken: the head event must be read from the device, which may block.
    NeedsBlockingRead,
}

/// Takes up to `max_events` into the transaction without blocking and encodes them as
/// one `Events` frame within the client's frame limit. When nothing could be taken
/// without blocking, or nothing is there and `may_wait`, nothing was taken and the
/// attempt says which.
fn take_events_without_blocking(
    open: &mut OpenTransaction,
    encoder: Encoder,
    request_id: RequestId,
    max_events: u32,
    may_wait: bool,
) -> TakeAttempt {
    let mut room = FrameRoom::new(encoder, request_id);
    let mut taken = Vec::new();
    let stop = open.transaction.try_take_many(
        max_events as usize,
        &mut |event| room.admit(event),
        &mut taken,
    );
    open.take_count += taken.len() as u64;
    match stop {
        // The transaction is full after some events: return those.
        Err(ChannelError::TransactionFull { .. }) if !taken.is_empty() => {}
        Err(error) => {
            return TakeAttempt::Done(Err(engine_error_response(&error, open.take_count + 1)))
        }
        Ok(_) if !taken.is_empty() => {}
        Ok(stop) => {
            // A refused event never left the channel; the closing error ends the session.
            if let Some(refusal) = room.refusal(encoder) {
                return TakeAttempt::Done(Err(refusal));
            }
            match stop {
                TakeStop::WouldBlock => return TakeAttempt::NeedsBlockingRead,
                TakeStop::Empty if may_wait => return TakeAttempt::Empty,
                TakeStop::Empty | TakeStop::Limit => {}
            }
        }
    }
    TakeAttempt::Done(room.encode(encoder, request_id, &taken))
}

/// Takes up to `max_events` into the transaction on a thread that may block: the first
/// waiting up to `wait` and read from the disk if need be, the rest as far as they come
/// without blocking (the first one's put record is cached by then). Encodes them as one
/// `Events` frame within the client's frame limit. `None` when no event came (nothing
/// was taken).
///
/// Only channels without [`Channel::arrivals`] take with a non-zero `wait` here: the
/// others wait without a thread ([`Session::take`]) and come here only to read.
fn take_events_blocking(
    open: &mut OpenTransaction,
    encoder: Encoder,
    request_id: RequestId,
    max_events: u32,
    wait: Duration,
) -> Option<TakeOutcome> {
    let mut room = FrameRoom::new(encoder, request_id);
    if max_events == 0 {
        return Some(room.encode(encoder, request_id, &[]));
    }
    let first = if wait.is_zero() {
        open.transaction.take()
    } else {
        open.transaction.take_waiting(wait)
    };
    let first = match first {
        Ok(Some(event)) => event,
        Ok(None) => return None,
        Err(error) => return Some(Err(engine_error_response(&error, open.take_count + 1))),
    };
    open.take_count += 1;
    if !room.admit(&first) {
        // Closing error: the session ends and its rollback puts the event back.
        return Some(Err(room
            .refusal(encoder)
            .expect("an event that was not admitted was refused")));
    }
    let mut taken = vec![first];
    let rest = open.transaction.try_take_many(
        max_events as usize - 1,
        &mut |event| room.admit(event),
        &mut taken,
    );
    open.take_count += (taken.len() - 1) as u64;
    match rest {
        // Full after the first events, or the rest would block: return what came.
        Ok(_) | Err(ChannelError::TransactionFull { .. }) => {}
        Err(error) => return Some(Err(engine_error_response(&error, open.take_count + 1))),
    }
    Some(room.encode(encoder, request_id, &taken))
}

/// Puts `events` into the transaction, in order, in the never-blocking form. Returns
/// the events not put yet (the first one handed back by the engine and those after it)
/// for the caller to put on the blocking pool; empty when all went in.
///
/// The events' bodies share one copy of the batch, not the connection's read buffer
/// they were decoded from: a queued or cached event would otherwise keep the whole read
/// buffer alive (64 KiB and more for a one-event frame), the next read would have to
/// allocate a fresh one, and the memory held would be many times what the events count.
fn try_put_events(
    transaction: &mut dyn Transaction,
    events: &EventBatch,
    put_count: &mut u64,
) -> Result<Vec<millrace_engine::Event>, ChannelError> {
    let batch = events.unshared();
    let mut events = batch.shared_events().map(to_engine_event);
    while let Some(event) = events.next() {
        match transaction.try_put(event)? {
            PutAttempt::Added => *put_count += 1,
            PutAttempt::WouldBlock(event) => {
                return Ok(std::iter::once(event).chain(events).collect());
            }
        }
    }
    Ok(Vec::new())
}

/// Puts events that may wait for room (on the blocking pool).
fn put_waiting(
    transaction: &mut dyn Transaction,
    events: Vec<millrace_engine::Event>,
    put_count: &mut u64,
) -> Result<(), ChannelError> {
    for event in events {
        transaction.put(event)?;
        *put_count += 1;
    }
    Ok(())
}

/// Starts a commit: in the never-blocking form when the engine can, else on the
/// blocking pool.
async fn start_commit(
    transaction: Box<dyn Transaction>,
) -> Result<Result<Box<dyn PendingCommit>, ChannelError>, SessionError> {
    match transaction.try_commit_pipelined() {
        Ok(CommitAttempt::Started(pending)) => Ok(Ok(pending)),
        Ok(CommitAttempt::WouldBlock(transaction)) => {
            on_blocking_pool(move || transaction.commit_pipelined()).await
        }
        Err(error) => Ok(Err(error)),
    }
}

/// What a session reads requests from and writes responses to: a `TcpStream` in
/// channeld, an in-memory duplex stream in the session's own tests. A type parameter,
/// not a trait object, so the hot path pays no dynamic call per read or write.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}

impl<Stream: AsyncRead + AsyncWrite + Unpin + Send> Connection for Stream {}

/// One client connection.
pub struct Session<Stream> {
    stream: Stream,
    peer: SocketAddr,
    /// This connection's number, which its counter reports are recorded under.
    connection_id: ConnectionId,
    /// When the connection was accepted: the handshake deadline counts from here.
    accepted_at: Instant,
    registry: Arc<ChannelRegistry>,
    settings: Arc<SessionSettings>,
    decoder: RequestDecoder,
    encoder: Encoder,
    input: BytesMut,
    output: BytesMut,
    transaction: Option<OpenTransaction>,
    shutdown: ShutdownWatcher,
    /// When the first byte of the frame being received was seen.
    partial_frame_since: Option<Instant>,
    /// The client's name from its `Hello`, as it sent it: log it only as
    /// [`Untrusted`].
    client_name: String,
    /// True once `HelloAccepted` is queued: until then the server's first bytes are
    /// still to come, so a refusal is a handshake rejection preceded by the magic.
    handshake_accepted: bool,
    /// `PutCommit`s started and not yet answered, oldest first.
    pending_commits: VecDeque<PendingPutCommit>,
}

/// A `PutCommit` or `Commit` whose commit is on its way to the disk.
struct PendingPutCommit {
    request_id: RequestId,
    attempted_events: u64,
    /// Whether it commits puts (a later request on the connection waits for those to be
    /// answered, so it sees them); a commit of takes only holds nothing back.
    commits_puts: bool,
    completion: CommitCompletion,
    /// Answers to the requests received after it, sent once it is answered.
    answers_after: BytesMut,
}

/// The engine's finishing of a pipelined commit, running or done.
enum CommitCompletion {
    /// Still waiting for the disk.
    Running(JoinHandle<Result<(), ChannelError>>),
    /// Finished; the outcome is kept until the commit's turn to be answered.
    Finished(Result<Result<(), ChannelError>, JoinError>),
}

impl CommitCompletion {
    /// Follows a started commit: one already complete (a memory channel's, say) is kept
    /// as finished, with no task; one still on its way to the disk is awaited by a task
    /// of its own, so that it applies as soon as the disk answers even while the session
    /// is busy or blocked writing to a slow client. Later commits of other connections
    /// become visible only after this one has applied, so its applying must not wait for
    /// this session.
    fn of(pending: Box<dyn PendingCommit>) -> Self {
        let mut finishing = pending.finish_async();
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match finishing.as_mut().poll(&mut context) {
            std::task::Poll::Ready(outcome) => CommitCompletion::Finished(Ok(outcome)),
            std::task::Poll::Pending => CommitCompletion::Running(tokio::spawn(finishing)),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            CommitCompletion::Running(handle) => handle.is_finished(),
            CommitCompletion::Finished(_) => true,
        }
    }
}

impl<Stream: Connection> Session<Stream> {
    /// A session for an accepted connection.
    pub fn new(
        stream: Stream,
        peer: SocketAddr,
        connection_id: ConnectionId,
        registry: Arc<ChannelRegistry>,
        settings: Arc<SessionSettings>,
        shutdown: ShutdownWatcher,
    ) -> Self {
        let decoder = RequestDecoder::new(settings.decode_limits);
        Session {
            stream,
            peer,
            connection_id,
            accepted_at: Instant::now(),
            registry,
            settings,
            decoder,
            encoder: Encoder::default(),
            input: BytesMut::new(),
            output: BytesMut::new(),
            transaction: None,
            shutdown,
            partial_frame_since: None,
            client_name: String::new(),
            handshake_accepted: false,
            pending_commits: VecDeque::new(),
        }
    }

    /// Serves the connection until it ends, then rolls back what is open and closes.
    /// `places` are the connection's places under `maxConnections` and the socket
    /// bound, released on return.
    pub async fn run<Places: Send>(mut self, places: Places) {
        debug!(peer = %self.peer, "connection opened");
        let mut abort = self.shutdown.clone();
        let served = tokio::select! {
            outcome = self.serve() => Some(outcome),
            () = abort.reached(ShutdownPhase::Aborting) => None,
        };
        let served = match served {
            Some(Ok(end)) => match self.settle_pending_commits().await {
                Ok(()) => Some(Ok(end)),
                Err(error) => Some(Err(error)),
            },
            other => other,
        };
        let end = match served {
            Some(Ok(end)) => end,
            Some(Err(error)) => {
                debug!(peer = %self.peer, %error, "connection broke");
                self.output.clear();
                SessionEnd::ClientClosed
            }
            None => {
                // Stopped between two awaits of serve(): the output buffer holds whole
                // frames only, so the closing error can follow them.
                self.queue_closing_error(RequestId::CONNECTION, ErrorResponse::shutting_down());
                SessionEnd::ShuttingDown
            }
        };
        self.finish(end).await;
        drop(places);
    }

    async fn serve(&mut self) -> Result<SessionEnd, SessionError> {
        loop {
            loop {
                let frame = match self.decoder.decode(&mut self.input) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => return Ok(self.refuse_undecodable(error)),
                };
                self.partial_frame_since = None;
                if let Flow::Close(end) = self.execute(frame).await? {
                    return Ok(end);
                }
                if self.output.len() >= FLUSH_THRESHOLD_BYTES {
                    self.flush().await?;
                }
            }
            self.answer_finished_commits().await?;
            self.flush().await?;
            if let Flow::Close(end) = self.wait_for_bytes().await? {
                return Ok(end);
            }
        }
    }

    /// Answers the oldest pending `PutCommit` once its commit has finished.
    async fn answer_oldest_commit(&mut self) -> Result<(), SessionError> {
        let Some(pending) = self.pending_commits.pop_front() else {
            return Ok(());
        };
        let finished = match pending.completion {
            CommitCompletion::Running(handle) => handle.await,
            CommitCompletion::Finished(outcome) => outcome,
        };
        let outcome = finished
            .map_err(|join_error| SessionError::EngineTaskFailed(join_error.to_string()))?;
        // Every commit before this one is answered, so its answer and the answers held
        // behind it go straight out.
        let response = match outcome {
            Ok(()) => Response::Ok,
            Err(error) => Response::Error(engine_error_response(&error, pending.attempted_events)),
        };
        if let Err(error) =
            self.encoder
                .encode_response(pending.request_id, &response, &mut self.output)
        {
            warn!(peer = %self.peer, %error, "could not encode a commit's answer");
        }
        self.output.extend_from_slice(&pending.answers_after);
        Ok(())
    }

    /// Answers the pending `PutCommit`s whose commits have finished, in order, without
    /// waiting for the others.
    async fn answer_finished_commits(&mut self) -> Result<(), SessionError> {
        while self
            .pending_commits
            .front()
            .is_some_and(|pending| pending.completion.is_finished())
        {
            self.answer_oldest_commit().await?;
        }
        Ok(())
    }

    /// Waits for every pending `PutCommit` and answers them, in order.
    async fn settle_pending_commits(&mut self) -> Result<(), SessionError> {
        while !self.pending_commits.is_empty() {
            self.answer_oldest_commit().await?;
        }
        Ok(())
    }

    /// Waits for more request bytes, within the idle timeout (nothing buffered) or the
    /// frame deadline (part of a frame buffered). While draining, a session without a
    /// transaction stops waiting and closes.
    async fn wait_for_bytes(&mut self) -> Result<Flow, SessionError> {
        let handshake = (
            self.accepted_at + self.settings.handshake_deadline,
            self.settings.handshake_deadline,
            "handshake deadline (server.handshakeDeadlineMs)",
        );
        let (deadline, limit, what) = if self.input.is_empty() {
            self.partial_frame_since = None;
            if self.handshake_accepted {
                (
                    Instant::now() + self.settings.idle_timeout,
                    self.settings.idle_timeout,
                    "idle timeout (server.idleTimeoutMs)",
                )
            } else {
                // A connection that has not said its Hello gets the (short) handshake
                // deadline from its accept, so a silent one cannot hold its place.
                handshake
            }
        } else {
            let since = *self.partial_frame_since.get_or_insert_with(Instant::now);
            let frame = (
                since + self.settings.frame_deadline,
                self.settings.frame_deadline,
                "frame-completion deadline (server.frameDeadlineMs)",
            );
            // A Hello being trickled meets whichever deadline comes first.
            if self.handshake_accepted || frame.0 <= handshake.0 {
                frame
            } else {
                handshake
            }
        };
        let stop_when_draining = self.transaction.is_none() && self.pending_commits.is_empty();
        // Before the handshake, read no more than the Hello can still need: an
        // unauthenticated peer holds at most max_hello_frame_bytes of this server's
        // memory (what it pipelined behind the Hello waits in the kernel).
        let read_limit_bytes = if self.handshake_accepted {
            READ_CHUNK_BYTES
        } else {
            let hello_bytes =
                MAGIC.len() + self.settings.decode_limits.max_hello_frame_bytes() as usize;
            hello_bytes
                .saturating_sub(self.input.len())
                .clamp(1, READ_CHUNK_BYTES)
        };
        self.input.reserve(read_limit_bytes);
        if let Some(oldest) = self.pending_commits.front_mut() {
            if let CommitCompletion::Running(handle) = &mut oldest.completion {
                // A commit on its way: answer it as soon as it finishes, or read on.
                let finished = tokio::select! {
                    read = self.stream.read_buf(&mut self.input) => return match read {
                        Ok(0) => Ok(Flow::Close(SessionEnd::ClientClosed)),
                        Ok(_) => Ok(Flow::Continue),
                        Err(error) => Err(SessionError::Read(error)),
                    },
                    finished = handle => finished,
                };
                oldest.completion = CommitCompletion::Finished(finished);
                return Ok(Flow::Continue);
            }
        }
        let mut room = (&mut self.input).limit(read_limit_bytes);
        tokio::select! {
            read = self.stream.read_buf(&mut room) => match read {
                Ok(0) => Ok(Flow::Close(SessionEnd::ClientClosed)),
                Ok(_) => Ok(Flow::Continue),
                Err(error) => Err(SessionError::Read(error)),
            },
            () = tokio::time::sleep_until(deadline) => {
                info!(peer = %self.peer, client = %Untrusted(&self.client_name), limit_ms = limit.as_millis() as u64, "{what} expired; closing");
                let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
                Ok(self.close_with(RequestId::CONNECTION, ErrorResponse::timed_out(what, limit_ms)))
            },
            () = self.shutdown.reached(ShutdownPhase::Draining), if stop_when_draining => {
                Ok(self.close_with(RequestId::CONNECTION, ErrorResponse::shutting_down()))
            },
        }
    }

    /// Answers a stream the decoder refused: a hint in the peer's own protocol for a
    /// non-Millrace client, else the decoder's error frame. Closes either way.
    fn refuse_undecodable(&mut self, error: DecodeError) -> SessionEnd {
        match &error {
            DecodeError::NotMillrace { looks_like, .. } => {
                info!(peer = %self.peer, %error, "not a Millrace client; answering with a hint");
                self.output.extend_from_slice(looks_like.hint_reply());
                SessionEnd::ClosedWithError
            }
            _ => {
                info!(peer = %self.peer, client = %Untrusted(&self.client_name), %error, "undecodable request; closing");
                let request_id = error.request_id().unwrap_or(RequestId::CONNECTION);
                self.queue_closing_error(request_id, error.to_error_response());
                SessionEnd::ClosedWithError
            }
        }
    }

    /// Queues an error frame after which the connection closes: a handshake rejection
    /// (after the magic) while the handshake is not accepted, else an ordinary error.
    fn queue_closing_error(&mut self, request_id: RequestId, error: ErrorResponse) {
        let response = if self.handshake_accepted {
            Response::Error(error)
        } else {
            Response::HandshakeRejected(error)
        };
        self.respond(request_id, &response);
    }

    fn close_with(&mut self, request_id: RequestId, error: ErrorResponse) -> Flow {
        self.queue_closing_error(request_id, error);
        Flow::Close(SessionEnd::ClosedWithError)
    }

    /// Appends a response. Every response this server builds fits the protocol's minimum
    /// frame size except `Events`, which is encoded separately, so a failure here is a
    /// server bug: it is logged and answered with `INTERNAL`.
    fn respond(&mut self, request_id: RequestId, response: &Response) {
        let answers = match self.pending_commits.back_mut() {
            // Behind a commit still on its way: held until that commit is answered.
            Some(pending) => &mut pending.answers_after,
            None => &mut self.output,
        };
        if let Err(error) = self.encoder.encode_response(request_id, response, answers) {
            warn!(peer = %self.peer, %error, "could not encode a response");
            let fallback = Response::Error(ErrorResponse::internal(error));
            let _ = self.encoder.encode_response(request_id, &fallback, answers);
        }
    }

    /// Answers a request with an error. A `3xx` error closes the connection.
    fn respond_error(&mut self, request_id: RequestId, error: ErrorResponse) -> Flow {
        let closing = error.class() == ErrorClass::ConnectionClosing;
        self.respond(request_id, &Response::Error(error));
        if closing {
            Flow::Close(SessionEnd::ClosedWithError)
        } else {
            Flow::Continue
        }
    }

    fn respond_ok(&mut self, request_id: RequestId) -> Flow {
        self.respond(request_id, &Response::Ok);
        Flow::Continue
    }

    async fn flush(&mut self) -> Result<(), SessionError> {
        if self.output.is_empty() {
            return Ok(());
        }
        let pending_bytes = self.output.len();
        let limit = self.settings.frame_deadline;
        match timeout(limit, self.stream.write_all(&self.output)).await {
            Ok(Ok(())) => {
                self.output.clear();
                Ok(())
            }
            Ok(Err(error)) => Err(SessionError::Write(error)),
            Err(_) => Err(SessionError::WriteTimedOut {
                pending_bytes,
                limit_ms: limit.as_millis(),
            }),
        }
    }

    /// Rolls back what is open, sends what is queued and closes the connection.
    async fn finish(mut self, end: SessionEnd) {
        self.registry.release_components(self.connection_id);
        if let Some(open) = self.transaction.take() {
            debug!(peer = %self.peer, channel = open.channel_name(), "rolling back the open transaction");
            open.roll_back();
        }
        if let Err(error) = self.flush().await {
            debug!(peer = %self.peer, %error, "could not send the last responses");
            return;
        }
        if end != SessionEnd::ClientClosed {
            linger(&mut self.stream).await;
        }
        debug!(peer = %self.peer, ?end, "connection closed");
    }

    async fn execute(&mut self, frame: RequestFrame) -> Result<Flow, SessionError> {
        let request_id = frame.request_id;
        let draining = self.shutdown.phase() >= ShutdownPhase::Draining;
        let puts_pending = self
            .pending_commits
            .iter()
            .any(|pending| pending.commits_puts);
        let waits_for_commits = draining
            || match &frame.request {
                // Commits never wait for the ones before them: they start in order.
                Request::PutCommit { .. } | Request::Commit => false,
                // A transaction's requests see the puts committed before them on the
                // connection; commits of takes only hold nothing back.
                Request::Begin { .. }
                | Request::Put { .. }
                | Request::Take { .. }
                | Request::Rollback => puts_pending,
                _ => true,
            };
        if waits_for_commits {
            self.settle_pending_commits().await?;
        }
        match frame.request {
            Request::Hello(hello) => Ok(self.handshake(request_id, hello)),
            _ if draining && self.transaction.is_none() => {
                Ok(self.close_with(request_id, ErrorResponse::shutting_down()))
            }
            Request::Ping => {
                self.respond(request_id, &Response::Pong);
                Ok(Flow::Continue)
            }
            Request::Begin { channel } => self.begin(request_id, &channel).await,
            Request::Put { events } => self.put(request_id, events).await,
            Request::Take {
                max_events,
                wait_ms,
            } => self.take(request_id, max_events, wait_ms).await,
            Request::Commit => self.commit(request_id).await,
            Request::Rollback => self.rollback(request_id).await,
            Request::PutCommit { channel, events } => {
                self.put_commit(request_id, &channel, events).await
            }
            Request::Stats { channel } => Ok(self.stats(request_id, &channel)),
            Request::Checkpoint { channel } => self.checkpoint(request_id, &channel).await,
            Request::Replay { channel, replay } => self.replay(request_id, &channel, replay).await,
            Request::Inspect { channel } => self.inspect(request_id, &channel).await,
            Request::Peek {
                channel,
                max_events,
            } => self.peek(request_id, &channel, max_events).await,
            Request::ReportCounters {
                component_type,
                component,
                counters,
            } => {
                match self.registry.record_component_counters(
                    self.connection_id,
                    &component_type,
                    &component,
                    counters.counters,
                ) {
                    Ok(()) => Ok(self.respond_ok(request_id)),
                    Err(refusal) => {
                        debug!(peer = %self.peer, client = %Untrusted(&self.client_name), %refusal, "counter report refused");
                        let error = ErrorResponse::report_refused(
                            &component_type,
                            &component,
                            &refusal.to_string(),
                        );
                        Ok(self.respond_error(request_id, error))
                    }
                }
            }
        }
    }

    fn handshake(&mut self, request_id: RequestId, hello: Hello) -> Flow {
        self.client_name = hello.client_name.clone();
        let client = Untrusted(&hello.client_name);
        let Some(version) = negotiate_version(hello.oldest_version, hello.newest_version) else {
            info!(peer = %self.peer, %client, "no common protocol version");
            return self.close_with(
                request_id,
                ErrorResponse::unsupported_version(hello.oldest_version, hello.newest_version),
            );
        };
        if let Some(expected) = &self.settings.auth_token {
            let accepted = hello
                .auth_token
                .as_deref()
                .is_some_and(|offered| tokens_match(offered, expected.expose_secret()));
            if !accepted {
                warn!(
                    peer = %self.peer,
                    %client,
                    token_offered = hello.auth_token.is_some(),
                    "auth token missing or wrong; refusing the connection"
                );
                return self.close_with(request_id, ErrorResponse::unauthorized());
            }
        }
        // Responses (an `Events` frame above all) stay within the client's limit and
        // within this server's own: a client announcing 4 GiB cannot make the server
        // build a frame larger than any it would accept.
        let own_max_frame_bytes = self.settings.decode_limits.max_frame_bytes();
        self.encoder
            .set_peer_max_frame_bytes(hello.max_frame_bytes.min(own_max_frame_bytes));
        debug!(peer = %self.peer, %client, version, "handshake accepted");
        let accepted = HelloAccepted {
            version,
            max_frame_bytes: own_max_frame_bytes,
            server_name: self.settings.server_name.clone(),
        };
        self.respond(request_id, &Response::HelloAccepted(accepted));
        self.handshake_accepted = true;
        Flow::Continue
    }

    /// The named channel, if it exists and has opened; else the error to answer with.
    fn serving_channel(
        &self,
        name: &str,
    ) -> Result<(Arc<ChannelEntry>, Arc<dyn Channel>), ErrorResponse> {
        let entry = self
            .registry
            .get(name)
            .ok_or_else(|| ErrorResponse::unknown_channel(name))?;
        // An open channel that has failed since (or closed) is handed on all the same: it
        // refuses the work itself, with its reason, and counts what it refuses as Flume
        // does (a put on a failed file channel is an `EventPutErrorCount`).
        match entry.channel() {
            Some(channel) => Ok((Arc::clone(entry), channel)),
            None => Err(ErrorResponse::channel_unhealthy(
                name,
                &entry
                    .unavailable_reason()
                    .unwrap_or_else(|| "the channel is not open".to_string()),
            )),
        }
    }

    async fn begin(
        &mut self,
        request_id: RequestId,
        channel_name: &str,
    ) -> Result<Flow, SessionError> {
        if let Some(open) = &self.transaction {
            let error = ErrorResponse::transaction_already_open(open.channel_name());
            return Ok(self.respond_error(request_id, error));
        }
        let (entry, channel) = match self.serving_channel(channel_name) {
            Ok(serving) => serving,
            Err(error) => return Ok(self.respond_error(request_id, error)),
        };
        match channel.begin() {
            Ok(transaction) => {
                self.transaction = Some(OpenTransaction {
                    entry,
                    channel,
                    transaction,
                    put_count: 0,
                    take_count: 0,
                });
                Ok(self.respond_ok(request_id))
            }
            Err(error) => Ok(self.respond_error(request_id, engine_error_response(&error, 0))),
        }
    }

    async fn put(
        &mut self,
        request_id: RequestId,
        events: EventBatch,
    ) -> Result<Flow, SessionError> {
        let Some(mut open) = self.transaction.take() else {
            return Ok(self.respond_error(request_id, ErrorResponse::no_transaction()));
        };
        let attempted_events = open.put_count + events.len() as u64;
        let waiting = try_put_events(open.transaction.as_mut(), &events, &mut open.put_count);
        let outcome = match waiting {
            Ok(waiting) if waiting.is_empty() => Ok(()),
            Ok(waiting) => {
                // The channel is full: the rest may wait `keep-alive` for room.
                let (returned, outcome) = on_blocking_pool(move || {
                    let outcome =
                        put_waiting(open.transaction.as_mut(), waiting, &mut open.put_count);
                    (open, outcome)
                })
                .await?;
                open = returned;
                outcome
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => {
                self.transaction = Some(open);
                Ok(self.respond_ok(request_id))
            }
            Err(error) => {
                // A failed Put rolls the transaction back (protocol §8).
                open.roll_back();
                Ok(self.respond_error(request_id, engine_error_response(&error, attempted_events)))
            }
        }
    }

    async fn take(
        &mut self,
        request_id: RequestId,
        max_events: u32,
        wait_ms: u32,
    ) -> Result<Flow, SessionError> {
        let Some(open) = self.transaction.take() else {
            return Ok(self.respond_error(request_id, ErrorResponse::no_transaction()));
        };
        let wait = Duration::from_millis(u64::from(wait_ms)).min(self.settings.max_take_wait);
        let (open, outcome) = match self
            .take_waiting_without_a_thread(open, request_id, max_events, wait)
            .await
        {
            Ok(taken) => taken,
            Err((open, error)) => {
                self.transaction = open;
                return Err(error);
            }
        };
        match outcome {
            Ok(frame) => {
                match self.pending_commits.back_mut() {
                    Some(pending) => pending.answers_after.extend_from_slice(&frame),
                    None => self.output.extend_from_slice(&frame),
                }
                self.transaction = Some(open);
                Ok(Flow::Continue)
            }
            Err(error) => {
                // A failed Take rolls the transaction back (protocol §8); the events
                // return to the head of the channel.
                open.roll_back();
                Ok(self.respond_error(request_id, error))
            }
        }
    }

    /// Takes for a `Take`, waiting up to `wait` for the first event without holding a
    /// thread: it listens to the channel's [`Arrivals`], looks with a never-blocking
    /// take, and sleeps on the listener (or the deadline) when the channel is empty. A
    /// thousand consumers waiting on empty channels so hold no thread of the blocking
    /// pool, which commits and checkpoints need. Only a head event that must be read
    /// from the device goes to the blocking pool, for the read alone. On a failure of
    /// the connection the transaction is handed back with the error.
    async fn take_waiting_without_a_thread(
        &mut self,
        mut open: OpenTransaction,
        request_id: RequestId,
        max_events: u32,
        wait: Duration,
    ) -> Result<(OpenTransaction, TakeOutcome), (Option<OpenTransaction>, SessionError)> {
        let encoder = self.encoder;
        let deadline = Instant::now() + wait;
        let channel = Arc::clone(&open.channel);
        let arrivals = channel.arrivals();
        let mut flushed = false;
        loop {
            // Registered before the look, so an event committed after it still wakes us.
            let listener = arrivals.map(Arrivals::listen);
            let may_wait = Instant::now() < deadline;
            match take_events_without_blocking(&mut open, encoder, request_id, max_events, may_wait)
            {
                TakeAttempt::Done(outcome) => return Ok((open, outcome)),
                TakeAttempt::NeedsBlockingRead => {
                    let (returned, outcome) = on_blocking_pool(move || {
                        let outcome = take_events_blocking(
                            &mut open,
                            encoder,
                            request_id,
                            max_events,
                            Duration::ZERO,
                        );
                        (open, outcome)
                    })
                    .await
                    .map_err(|error| (None, error))?;
                    open = returned;
                    if let Some(outcome) = outcome {
                        return Ok((open, outcome));
                    }
                    // Another taker was first; look again (or answer empty).
                    continue;
                }
                TakeAttempt::Empty => {}
            }
            if !flushed {
                // Responses queued before a take that may wait must not wait with it.
                if let Err(error) = self.flush().await {
                    return Err((Some(open), error));
                }
                flushed = true;
            }
            let Some(listener) = listener else {
                // A channel that cannot signal arrivals: wait on the blocking pool.
                let wait = deadline.saturating_duration_since(Instant::now());
                let (open, outcome) = on_blocking_pool(move || {
                    let outcome =
                        take_events_blocking(&mut open, encoder, request_id, max_events, wait);
                    (open, outcome)
                })
                .await
                .map_err(|error| (None, error))?;
                let outcome = outcome.unwrap_or_else(|| {
                    FrameRoom::new(encoder, request_id).encode(encoder, request_id, &[])
                });
                return Ok((open, outcome));
            };
            tokio::select! {
                () = listener => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn commit(&mut self, request_id: RequestId) -> Result<Flow, SessionError> {
        let Some(open) = self.transaction.take() else {
            return Ok(self.respond_error(request_id, ErrorResponse::no_transaction()));
        };
        let OpenTransaction {
            transaction,
            put_count,
            ..
        } = open;
        if self.pending_commits.len() >= MAX_PIPELINED_COMMITS {
            self.answer_oldest_commit().await?;
        }
        // Started in request order; answered in order once durable, while the requests
        // behind it (the next Begin and Take of a consumer) go on.
        match start_commit(transaction).await? {
            Ok(pending) => {
                self.pending_commits.push_back(PendingPutCommit {
                    request_id,
                    attempted_events: put_count,
                    commits_puts: put_count > 0,
                    completion: CommitCompletion::of(pending),
                    answers_after: BytesMut::new(),
                });
                Ok(Flow::Continue)
            }
            Err(error) => Ok(self.respond_error(request_id, engine_error_response(&error, 0))),
        }
    }

    async fn rollback(&mut self, request_id: RequestId) -> Result<Flow, SessionError> {
        let Some(open) = self.transaction.take() else {
            return Ok(self.respond_error(request_id, ErrorResponse::no_transaction()));
        };
        open.roll_back();
        Ok(self.respond_ok(request_id))
    }

    async fn put_commit(
        &mut self,
        request_id: RequestId,
        channel_name: &str,
        events: EventBatch,
    ) -> Result<Flow, SessionError> {
        if let Some(open) = &self.transaction {
            let error = ErrorResponse::transaction_already_open(open.channel_name());
            return Ok(self.respond_error(request_id, error));
        }
        let channel = match self.serving_channel(channel_name) {
            Ok((_, channel)) => channel,
            Err(error) => {
                self.settle_pending_commits().await?;
                return Ok(self.respond_error(request_id, error));
            }
        };
        if self.pending_commits.len() >= MAX_PIPELINED_COMMITS {
            self.answer_oldest_commit().await?;
        }
        let attempted_events = events.len() as u64;
        // Started here, in request order, so the commits take effect in that order; the
        // wait for the disk runs beside the session, which reads the next request.
        let started = match self.begin_and_put(channel, events).await? {
            Ok(transaction) => start_commit(transaction).await?,
            Err(error) => Err(error),
        };
        match started {
            Ok(pending) => {
                self.pending_commits.push_back(PendingPutCommit {
                    request_id,
                    attempted_events,
                    commits_puts: true,
                    completion: CommitCompletion::of(pending),
                    answers_after: BytesMut::new(),
                });
                Ok(Flow::Continue)
            }
            Err(error) => {
                self.settle_pending_commits().await?;
                Ok(self.respond_error(request_id, engine_error_response(&error, attempted_events)))
            }
        }
    }

    /// Begins a transaction and puts `events` into it, on the runtime's thread unless the
    /// channel is full (then the rest wait for room on the blocking pool). On error the
    /// transaction is dropped, which rolls it back.
    async fn begin_and_put(
        &mut self,
        channel: Arc<dyn Channel>,
        events: EventBatch,
    ) -> Result<Result<Box<dyn Transaction>, ChannelError>, SessionError> {
        let mut transaction = match channel.begin() {
            Ok(transaction) => transaction,
            Err(error) => return Ok(Err(error)),
        };
        let mut put_count = 0;
        let waiting = match try_put_events(transaction.as_mut(), &events, &mut put_count) {
            Ok(waiting) => waiting,
            Err(error) => return Ok(Err(error)),
        };
        if waiting.is_empty() {
            return Ok(Ok(transaction));
        }
        on_blocking_pool(move || {
            put_waiting(transaction.as_mut(), waiting, &mut put_count).map(|()| transaction)
        })
        .await
    }

    fn stats(&mut self, request_id: RequestId, channel_name: &str) -> Flow {
        let Some(entry) = self.registry.get(channel_name) else {
            return self.respond_error(request_id, ErrorResponse::unknown_channel(channel_name));
        };
        match entry.channel() {
            // A snapshot of atomics and a queue length under a short lock: safe on the
            // runtime's threads.
            Some(channel) => {
                let reply = stats_reply(&channel.stats());
                self.respond(request_id, &Response::Stats(reply));
                Flow::Continue
            }
            None => {
                let reason = entry
                    .unavailable_reason()
                    .unwrap_or_else(|| "the channel is not open".to_string());
                self.respond_error(
                    request_id,
                    ErrorResponse::channel_unhealthy(channel_name, &reason),
                )
            }
        }
    }

    async fn checkpoint(
        &mut self,
        request_id: RequestId,
        channel_name: &str,
    ) -> Result<Flow, SessionError> {
        let channel = match self.serving_channel(channel_name) {
            Ok((_, channel)) => channel,
            Err(error) => return Ok(self.respond_error(request_id, error)),
        };
        match on_blocking_pool(move || channel.checkpoint()).await? {
            Ok(()) => Ok(self.respond_ok(request_id)),
            Err(error) => Ok(self.respond_error(request_id, engine_error_response(&error, 0))),
        }
    }
}

/// Operator requests: replay and inspect of a file channel.
impl<Stream: Connection> Session<Stream> {
    /// Plans a replay of a file channel (and with `execute` performs it) on the blocking
    /// pool: the plan scans the channel's files, the copies go through its transactions.
    async fn replay(
        &mut self,
        request_id: RequestId,
        channel_name: &str,
        replay: ReplayRequest,
    ) -> Result<Flow, SessionError> {
        let (entry, _) = match self.serving_channel(channel_name) {
            Ok(serving) => serving,
            Err(error) => return Ok(self.respond_error(request_id, error)),
        };
        let Some(file_channel) = entry.file_channel() else {
            let error = ErrorResponse::not_supported(
                channel_name,
                entry.type_name(),
                "replay",
                REPLAY_NEEDS_A_LOG,
            );
            return Ok(self.respond_error(request_id, error));
        };
        info!(peer = %self.peer, client = %Untrusted(&self.client_name), channel = %Untrusted(channel_name), point = ?replay.point, execute = replay.execute, "replay requested");
        let point = resolve_replay_point(replay.point, std::time::SystemTime::now());
        let outcome = on_blocking_pool(move || {
            if replay.execute {
                file_channel
                    .replay_execute(point)
                    .map(|(plan, outcome)| replay_report(&plan, Some(&outcome)))
            } else {
                file_channel
                    .replay_plan(point)
                    .map(|plan| replay_report(&plan, None))
            }
        })
        .await?;
        match outcome {
            Ok(report) => {
                self.respond(request_id, &Response::Replay(report));
                Ok(Flow::Continue)
            }
            Err(error) => {
                warn!(channel = %Untrusted(channel_name), %error, "replay failed");
                let error = inspect_error_response(channel_name, &error);
                Ok(self.respond_error(request_id, error))
            }
        }
    }

    /// Builds a file channel's inspect report on the blocking pool (it scans the files).
    /// A channel that failed since it opened can still be inspected; one that is still
    /// recovering or never opened cannot.
    /// The named channel when it is open; otherwise the error answered (unknown
    /// channel, or not open with the reason).
    fn ready_channel(
        &mut self,
        request_id: RequestId,
        channel_name: &str,
    ) -> Result<(Arc<ChannelEntry>, Arc<dyn Channel>), Flow> {
        let Some(entry) = self.registry.get(channel_name).cloned() else {
            return Err(
                self.respond_error(request_id, ErrorResponse::unknown_channel(channel_name))
            );
        };
        let Some(channel) = entry.channel() else {
            let reason = entry
                .unavailable_reason()
                .unwrap_or_else(|| "the channel is not open".to_string());
            let error = ErrorResponse::channel_unhealthy(channel_name, &reason);
            return Err(self.respond_error(request_id, error));
        };
        Ok((entry, channel))
    }

    /// `Peek`: copies of the head's events, as many as one `Events` frame carries, read
    /// on the blocking pool (a file channel reads them from its segments).
    async fn peek(
        &mut self,
        request_id: RequestId,
        channel_name: &str,
        max_events: u32,
    ) -> Result<Flow, SessionError> {
        let (entry, channel) = match self.ready_channel(request_id, channel_name) {
            Ok(ready) => ready,
            Err(flow) => return Ok(flow),
        };
        let encoder = self.encoder;
        let max_events = (max_events as usize).min(MAX_PEEK_EVENTS);
        let outcome = on_blocking_pool(move || {
            let mut room = FrameRoom::new(encoder, request_id);
            match channel.peek(max_events, &mut |event| room.admit(event)) {
                None => Err(None),
                Some(Err(error)) => Err(Some(engine_error_response(&error, 0))),
                Some(Ok(events)) if events.is_empty() => match room.refusal(encoder) {
                    Some(refusal) => Err(Some(refusal)),
                    None => room.encode(encoder, request_id, &events).map_err(Some),
                },
                Some(Ok(events)) => room.encode(encoder, request_id, &events).map_err(Some),
            }
        })
        .await?;
        match outcome {
            Ok(frame) => {
                self.output.extend_from_slice(&frame);
                Ok(Flow::Continue)
            }
            Err(Some(error)) => Ok(self.respond_error(request_id, error)),
            Err(None) => {
                let error = ErrorResponse::not_supported(
                    channel_name,
                    entry.type_name(),
                    "peek",
                    "this channel type keeps no queue the server can read",
                );
                Ok(self.respond_error(request_id, error))
            }
        }
    }

    async fn inspect(
        &mut self,
        request_id: RequestId,
        channel_name: &str,
    ) -> Result<Flow, SessionError> {
        let (entry, channel) = match self.ready_channel(request_id, channel_name) {
            Ok(ready) => ready,
            Err(flow) => return Ok(flow),
        };
        let Some(file_channel) = entry.file_channel() else {
            let error = ErrorResponse::not_supported(
                channel_name,
                entry.type_name(),
                "inspect",
                INSPECT_NEEDS_FILES,
            );
            return Ok(self.respond_error(request_id, error));
        };
        let outcome = on_blocking_pool(move || {
            let inspection = file_channel.inspect_live()?;
            Ok(live_inspect_report(&inspection, &channel.stats()).to_string())
        })
        .await?;
        let json = match outcome {
            Ok(json) => json,
            Err(error) => {
                let error = inspect_error_response(channel_name, &error);
                return Ok(self.respond_error(request_id, error));
            }
        };
        let response = Response::Inspect(InspectReport { json });
        match self
            .encoder
            .encode_response(request_id, &response, &mut self.output)
        {
            Ok(_) => Ok(Flow::Continue),
            Err(EncodeError::FrameTooLarge {
                frame_bytes,
                max_frame_bytes,
            }) => {
                let error = ErrorResponse::report_too_large(
                    channel_name,
                    "inspect report",
                    frame_bytes,
                    max_frame_bytes,
                );
                Ok(self.respond_error(request_id, error))
            }
            Err(error) => Ok(self.respond_error(request_id, ErrorResponse::internal(error))),
        }
    }
}

/// Refuses a connection over `maxConnections`: a handshake rejection, then close.
pub async fn refuse_connection(
    mut stream: impl Connection,
    peer: SocketAddr,
    max_connections: u32,
) {
    info!(%peer, max_connections, "connection limit reached; refusing");
    let mut output = Vec::new();
    let rejection =
        Response::HandshakeRejected(ErrorResponse::too_many_connections(max_connections));
    if Encoder::default()
        .encode_response(RequestId::CONNECTION, &rejection, &mut output)
        .is_err()
    {
        return;
    }
    let sent = timeout(CLOSE_LINGER, stream.write_all(&output)).await;
    if matches!(sent, Ok(Ok(()))) {
        linger(&mut stream).await;
    }
}

/// Half-closes and discards what the client still sends, for at most [`CLOSE_LINGER`]
/// and [`CLOSE_DRAIN_MAX_BYTES`], so the client reads the last frame before the close.
async fn linger(stream: &mut impl Connection) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut discard = vec![0u8; READ_CHUNK_BYTES];
    let _ = timeout(CLOSE_LINGER, async {
        let mut drained_bytes = 0usize;
        while drained_bytes < CLOSE_DRAIN_MAX_BYTES {
            match stream.read(&mut discard).await {
                Ok(0) | Err(_) => break,
                Ok(read) => drained_bytes += read,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
