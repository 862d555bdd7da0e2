//! # Async client for channeld
//!
//! A [`Client`] is one connection to `channeld`: it performs the handshake (with the
//! server's shared token when it has one), then sends requests and reads their answers
//! with the `millrace-protocol` codec. A connection holds at most one transaction at a
//! time; open several clients for concurrency.
//!
//! ```no_run
//! use millrace_client::{Client, ClientOptions, Event};
//! use std::time::Duration;
//!
//! # async fn example() -> Result<(), millrace_client::ClientError> {
//! let mut client = Client::connect(ClientOptions::new("127.0.0.1:41450")).await?;
//! client.put_and_commit("default", &[Event::new("hello").with_header("host", "web-1")]).await?;
//!
//! client.begin("default").await?;
//! let events = client.take(100, Duration::from_millis(500)).await?;
//! // … hand the events on, then:
//! client.commit().await?;
//! # Ok(()) }
//! ```
//!
//! ## Contracts
//!
//! - **Typed errors.** A refused request is [`ClientError::Server`] carrying the server's
//!   [`ErrorResponse`]: its code, channel, message and numeric fields. Its class tells
//!   what to do: retry later (`1xx`, the transaction was rolled back), fix the request
//!   (`2xx`), or reconnect (`3xx`, the server closed the connection).
//! - **Pipelining.** [`Client::send`], [`Client::flush`] and [`Client::receive`] expose
//!   the protocol's pipelining: requests go out back to back, answers come back in
//!   order and are checked against the ids sent. The convenience methods pipeline where
//!   the protocol allows (a put split over several frames, a fallback put-and-commit).
//! - **After a connection error** (I/O, a `3xx` error, a decode error) the connection is
//!   unusable: call [`Client::reconnect`], which retries with exponential backoff. The
//!   server rolled back any open transaction.

#![warn(missing_docs)]

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
pub use millrace_protocol::{
    counters, fields, ChannelStats, ErrorClass, ErrorCode, ErrorResponse, Event, EventLocation,
    HelloAccepted, ReplayExecution, ReplayPoint, ReplayReport, ReplayRequest, Request, RequestId,
    Response, RetainedCommit,
};
use millrace_protocol::{
    DecodeError, DecodeLimits, EncodeError, Encoder, Hello, InvalidLimit, ResponseDecoder,
    ResponseFrame,
};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Default address of channeld's protocol listener.
pub const DEFAULT_SERVER_ADDRESS: &str = "127.0.0.1:41450";
/// Default time allowed for the TCP connect and the handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes the read buffer grows by before each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// What a client announces it accepts by default: the largest frame the protocol can
/// describe. A server keeps every answer within its own `max_frame_bytes` too (and says
/// which in its handshake, after which the client holds it to that), so in effect a
/// client takes the server's limit: any event the server accepted in a put, the client
/// can take. A client that must bound its memory lower sets
/// [`ClientOptions::max_frame_bytes`], and then cannot take an event larger than that
/// (the server answers `FRAME_TOO_LARGE`; `docs/operations.md` says what to do).
pub const CLIENT_MAX_FRAME_BYTES: u32 = u32::MAX;

/// How [`Client::connect_with_retry`] and [`Client::reconnect`] retry: the delay starts
/// at `initial_delay` and doubles up to `max_delay`, for at most `max_attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed attempt.
    pub initial_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s, 10 attempts (about 25 s in all).
    fn default() -> Self {
        Backoff {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_attempts: 10,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (1-based; attempt 1 has none).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let doublings = (attempt - 2).min(u32::BITS - 1);
        self.initial_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port` of channeld's protocol listener.
    pub address: String,
    /// The server's shared token, when it requires one.
    pub auth_token: Option<String>,
    /// Sent in the handshake for the server's logs.
    pub client_name: String,
    /// Largest frame this client accepts (the server keeps `Events` answers within it,
    /// and within its own limit). Default [`CLIENT_MAX_FRAME_BYTES`]: whatever the
    /// server's limit is.
    pub max_frame_bytes: u32,
    /// Time allowed for the TCP connect and the handshake.
    pub connect_timeout: Duration,
    /// Retry policy of [`Client::connect_with_retry`] and [`Client::reconnect`].
    pub backoff: Backoff,
}

impl ClientOptions {
    /// Defaults for the given address: no token, the server's frame limit, 10 s connect
    /// timeout.
    pub fn new(address: impl Into<String>) -> Self {
        ClientOptions {
            address: address.into(),
            auth_token: None,
            client_name: format!("millrace-client {}", env!("CARGO_PKG_VERSION")),
            max_frame_bytes: CLIENT_MAX_FRAME_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            backoff: Backoff::default(),
        }
    }

    /// Sets the auth token.
    pub fn with_auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(token.into());
        self
    }

    /// Sets the name sent in the handshake.
    pub fn with_client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }
}

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The server address.
        address: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },

    /// Connecting and the handshake took longer than the connect timeout.
    #[error("connecting to {address} timed out after {timeout_ms} ms")]
    ConnectTimedOut {
        /// The server address.
        address: String,
        /// The timeout.
        timeout_ms: u128,
    },

    /// Reading or writing the connection failed.
    #[error("connection to {address} failed: {source}")]
    Io {
        /// The server address.
        address: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },

    /// The server closed the connection with requests unanswered.
    #[error("{address} closed the connection")]
    Closed {
        /// The server address.
        address: String,
    },

    /// The server refused the handshake (wrong or missing token, no common version, too
    /// many connections, shutting down).
    #[error("{address} refused the connection: {error}")]
    Rejected {
        /// The server address.
        address: String,
        /// The server's error, with its code and message.
        error: ErrorResponse,
    },

    /// The server refused a request. The error's class says whether the transaction
    /// was rolled back (`1xx`, `2xx` after a failed put/take/commit) and whether the
    /// connection is closing (`3xx`).
    #[error("{error}")]
    Server {
        /// The server's error, with its code and message.
        error: ErrorResponse,
    },

    /// The server's bytes could not be decoded (or it is not a Millrace server).
    #[error("cannot decode what {address} sent: {source}")]
    Decode {
        /// The server address.
        address: String,
        /// What is wrong with the bytes.
        #[source]
        source: DecodeError,
    },

    /// A request could not be encoded (too large for the server's frame limit, a field
    /// too long).
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),

    /// The client's own frame limit is unusable.
    #[error("invalid client option: {0}")]
    InvalidOption(#[from] InvalidLimit),

    /// The server answered with a response of the wrong kind.
    #[error("unexpected answer to {request}: {response}")]
    UnexpectedResponse {
        /// The request sent.
        request: &'static str,
        /// What came back, for the message.
        response: String,
    },

    /// Answers arrived out of order (a server bug).
    #[error("expected the answer to request {expected}, got one for request {received}")]
    OutOfOrder {
        /// The id due.
        expected: RequestId,
        /// The id received.
        received: RequestId,
    },

    /// An answer arrived with no request waiting for it.
    #[error("received an answer to request {received} with no request outstanding")]
    Unsolicited {
        /// The id received.
        received: RequestId,
    },

    /// Every connection attempt failed.
    #[error("gave up connecting to {address} after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// The server address.
        address: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// The server's error, when the server refused a request or the connection.
    pub fn server_error(&self) -> Option<&ErrorResponse> {
        match self {
            ClientError::Server { error } | ClientError::Rejected { error, .. } => Some(error),
            ClientError::RetriesExhausted { last, .. } => last.server_error(),
            _ => None,
        }
    }

    /// The server's error code, if the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.server_error().map(|error| error.code)
    }

    /// True for transient conditions worth retrying later: a `1xx` server error, or a
    /// connection that broke or could not be made.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Server { error } => error.class() == ErrorClass::Retryable,
            ClientError::Connect { .. }
            | ClientError::ConnectTimedOut { .. }
            | ClientError::Io { .. }
            | ClientError::Closed { .. } => true,
            ClientError::Rejected { error, .. } => {
                matches!(
                    error.code,
                    ErrorCode::TooManyConnections | ErrorCode::ShuttingDown
                )
            }
            _ => false,
        }
    }

    /// True when the connection can no longer be used and [`Client::reconnect`] is
    /// needed.
    pub fn breaks_connection(&self) -> bool {
        match self {
            ClientError::Server { error } => error.class() == ErrorClass::ConnectionClosing,
            ClientError::Encode(_)
            | ClientError::InvalidOption(_)
            | ClientError::UnexpectedResponse { .. } => false,
            _ => true,
        }
    }
}

/// Short name of a request, for messages.
fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Hello(_) => "Hello",
        Request::Ping => "Ping",
        Request::Begin { .. } => "Begin",
        Request::Put { .. } => "Put",
        Request::Take { .. } => "Take",
        Request::Commit => "Commit",
        Request::Rollback => "Rollback",
        Request::PutCommit { .. } => "PutCommit",
        Request::Stats { .. } => "Stats",
        Request::Checkpoint { .. } => "Checkpoint",
        Request::Replay { .. } => "Replay",
        Request::Inspect { .. } => "Inspect",
        Request::ReportCounters { .. } => "ReportCounters",
        Request::Peek { .. } => "Peek",
    }
}

/// One connection to channeld. See the crate documentation.
pub struct Client {
    options: ClientOptions,
    stream: TcpStream,
    decoder: ResponseDecoder,
    encoder: Encoder,
    input: BytesMut,
    output: BytesMut,
    last_request_id: RequestId,
    outstanding: VecDeque<RequestId>,
    server: HelloAccepted,
}

impl Client {
    /// Connects and performs the handshake, once.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        let limits = DecodeLimits::new(options.max_frame_bytes)?;
        let timeout = options.connect_timeout;
        match tokio::time::timeout(timeout, Self::handshake(options.clone(), limits)).await {
            Ok(connected) => connected,
            Err(_) => Err(ClientError::ConnectTimedOut {
                address: options.address,
                timeout_ms: timeout.as_millis(),
            }),
        }
    }

    /// Connects, retrying with the options' backoff while the failure is retryable (a
    /// refused or broken connection, a server at its connection limit or shutting down).
    pub async fn connect_with_retry(options: ClientOptions) -> Result<Client, ClientError> {
        let backoff = options.backoff;
        let attempts = backoff.max_attempts.max(1);
        let mut last_error = None;
        for attempt in 1..=attempts {
            tokio::time::sleep(backoff.delay_before(attempt)).await;
            match Client::connect(options.clone()).await {
                Ok(client) => return Ok(client),
                Err(error) if error.is_retryable() => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(ClientError::RetriesExhausted {
            address: options.address,
            attempts,
            last: Box::new(last_error.expect("at least one attempt was made")),
        })
    }

    /// Replaces the connection with a new one (with backoff). Any transaction open on the
    /// old connection was rolled back by the server.
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        *self = Client::connect_with_retry(self.options.clone()).await?;
        Ok(())
    }

    async fn handshake(
        options: ClientOptions,
        limits: DecodeLimits,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(&options.address)
            .await
            .map_err(|source| ClientError::Connect {
                address: options.address.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let mut hello = Hello::new(options.client_name.clone());
        hello.max_frame_bytes = options.max_frame_bytes;
        hello.auth_token = options.auth_token.clone();
        let mut client = Client {
            stream,
            decoder: ResponseDecoder::new(limits),
            encoder: Encoder::default(),
            input: BytesMut::new(),
            output: BytesMut::new(),
            last_request_id: RequestId::CONNECTION,
            outstanding: VecDeque::new(),
            server: HelloAccepted {
                version: 0,
                max_frame_bytes: 0,
                server_name: String::new(),
            },
            options,
        };
        client.send(&Request::Hello(hello))?;
        client.flush().await?;
        let frame = client.receive().await?;
        match frame.response {
            Response::HelloAccepted(accepted) => {
                client
                    .encoder
                    .set_peer_max_frame_bytes(accepted.max_frame_bytes);
                client
                    .decoder
                    .lower_max_frame_bytes(accepted.max_frame_bytes);
                client.server = accepted;
                Ok(client)
            }
            Response::HandshakeRejected(error) => Err(ClientError::Rejected {
                address: client.options.address.clone(),
                error,
            }),
            other => Err(ClientError::UnexpectedResponse {
                request: "Hello",
                response: format!("{other:?}"),
            }),
        }
    }

    /// The server's handshake answer: protocol version, frame limit, name.
    pub fn server(&self) -> &HelloAccepted {
        &self.server
    }

    /// The largest frame this connection receives: the smaller of what the client
    /// announced and the server's own limit. A take can return an event only if an
    /// `Events` frame carrying it alone fits in this.
    pub fn receive_max_frame_bytes(&self) -> u32 {
        self.decoder.limits().max_frame_bytes()
    }

    /// The options this client connects with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    fn next_request_id(&mut self) -> RequestId {
        self.last_request_id = self.last_request_id.next();
        self.last_request_id
    }

    /// Queues a request without sending it (pipelining); [`flush`](Self::flush) sends
    /// what is queued. Returns the request's id.
    pub fn send(&mut self, request: &Request) -> Result<RequestId, ClientError> {
        let request_id = self.next_request_id();
        self.encoder
            .encode_request(request_id, request, &mut self.output)?;
        self.outstanding.push_back(request_id);
        Ok(request_id)
    }

    /// Sends every queued request.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.output.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(&self.output)
            .await
            .map_err(|source| ClientError::Io {
                address: self.options.address.clone(),
                source,
            })?;
        self.output.clear();
        Ok(())
    }

    /// Reads the next answer, checking that it answers the oldest outstanding request.
    /// Error frames are returned as frames, not as errors.
    pub async fn receive(&mut self) -> Result<ResponseFrame, ClientError> {
        loop {
            match self.decoder.decode(&mut self.input) {
                Ok(Some(frame)) => return self.match_outstanding(frame),
                Ok(None) => {}
                Err(source) => {
                    return Err(ClientError::Decode {
                        address: self.options.address.clone(),
                        source,
                    })
                }
            }
            self.input.reserve(READ_CHUNK_BYTES);
            let read = self
                .stream
                .read_buf(&mut self.input)
                .await
                .map_err(|source| ClientError::Io {
                    address: self.options.address.clone(),
                    source,
                })?;
            if read == 0 {
                return Err(ClientError::Closed {
                    address: self.options.address.clone(),
                });
            }
        }
    }

    fn match_outstanding(&mut self, frame: ResponseFrame) -> Result<ResponseFrame, ClientError> {
        if frame.request_id == RequestId::CONNECTION {
            // A connection-level error (timeout, shutdown) answers no particular request.
            return Ok(frame);
        }
        match self.outstanding.pop_front() {
            Some(expected) if expected == frame.request_id => Ok(frame),
            Some(expected) => Err(ClientError::OutOfOrder {
                expected,
                received: frame.request_id,
            }),
            None => Err(ClientError::Unsolicited {
                received: frame.request_id,
            }),
        }
    }

    /// Sends one request and waits for its answer; an `Error` answer becomes
    /// [`ClientError::Server`].
    pub async fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.send(request)?;
        self.flush().await?;
        self.answer().await
    }

    /// Reads the next answer; an `Error` answer becomes [`ClientError::Server`].
    async fn answer(&mut self) -> Result<Response, ClientError> {
        match self.receive().await?.response {
            Response::Error(error) | Response::HandshakeRejected(error) => {
                Err(ClientError::Server { error })
            }
            response => Ok(response),
        }
    }

    async fn expect_ok(&mut self, request: &Request) -> Result<(), ClientError> {
        match self.call(request).await? {
            Response::Ok => Ok(()),
            other => Err(ClientError::UnexpectedResponse {
                request: request_name(request),
                response: format!("{other:?}"),
            }),
        }
    }

    /// Checks the connection: `Ping`, answered with `Pong`.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        match self.call(&Request::Ping).await? {
            Response::Pong => Ok(()),
            other => Err(ClientError::UnexpectedResponse {
                request: "Ping",
                response: format!("{other:?}"),
            }),
        }
    }

    /// Opens the connection's transaction on `channel`.
    pub async fn begin(&mut self, channel: &str) -> Result<(), ClientError> {
        self.expect_ok(&Request::Begin {
            channel: channel.to_string(),
        })
        .await
    }

    /// Commits the open transaction; for puts, returns once they are durable.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.expect_ok(&Request::Commit).await
    }

    /// Rolls the open transaction back.
    pub async fn rollback(&mut self) -> Result<(), ClientError> {
        self.expect_ok(&Request::Rollback).await
    }

    /// Queues `events` as `Put` frames (as many as the server's frame limit needs).
    /// Returns the number of frames queued.
    fn queue_puts(&mut self, events: &[Event]) -> Result<usize, ClientError> {
        let mut frames = 0;
        let mut remaining = events;
        while !remaining.is_empty() || frames == 0 {
            let request_id = self.next_request_id();
            let mut writer = self.encoder.put_writer(&mut self.output, request_id);
            let mut written = 0;
            for event in remaining {
                match writer.push_event(event) {
                    Ok(()) => written += 1,
                    Err(EncodeError::BatchFull { .. }) => break,
                    Err(error) => return Err(error.into()),
                }
            }
            writer.finish()?;
            self.outstanding.push_back(request_id);
            frames += 1;
            remaining = &remaining[written..];
        }
        Ok(frames)
    }

    /// Reads `count` answers that should all be `Ok`, and returns the first error among
    /// them (later ones are usually `NO_TRANSACTION`, a consequence of the first).
    async fn expect_oks(&mut self, request: &'static str, count: usize) -> Result<(), ClientError> {
        let mut first_error = None;
        for _ in 0..count {
            match self.answer().await {
                Ok(Response::Ok) => {}
                Ok(other) => {
                    first_error.get_or_insert(ClientError::UnexpectedResponse {
                        request,
                        response: format!("{other:?}"),
                    });
                }
                Err(error) if error.breaks_connection() => return Err(first_error.unwrap_or(error)),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Adds events to the open transaction, in as many `Put` frames as the server's
    /// frame limit needs (pipelined). A failure rolls the transaction back.
    pub async fn put(&mut self, events: &[Event]) -> Result<(), ClientError> {
        let frames = self.queue_puts(events)?;
        self.flush().await?;
        self.expect_oks("Put", frames).await
    }

    /// Opens a transaction on `channel` and takes up to `max_events` into it, both
    /// requests sent together (one round trip instead of two); as [`begin`](Self::begin)
    /// then [`take`](Self::take). When the `Begin` is refused, the `Take` (answered with
    /// an error as well) is read too and the `Begin`'s error returned.
    pub async fn begin_and_take(
        &mut self,
        channel: &str,
        max_events: u32,
        wait: Duration,
    ) -> Result<Vec<Event>, ClientError> {
        self.send(&Request::Begin {
            channel: channel.to_string(),
        })?;
        self.send(&take_request(max_events, wait))?;
        self.flush().await?;
        let begun = match self.answer().await {
            Ok(Response::Ok) => Ok(()),
            Ok(other) => Err(ClientError::UnexpectedResponse {
                request: "Begin",
                response: format!("{other:?}"),
            }),
            Err(error) => Err(error),
        };
        let taken = self.answer().await;
        begun?;
        match taken? {
            Response::Events(batch) => Ok(batch.to_events()),
            other => Err(ClientError::UnexpectedResponse {
                request: "Take",
                response: format!("{other:?}"),
            }),
        }
    }

    /// Takes up to `max_events` into the open transaction, waiting up to `wait` for the
    /// first one when the channel is empty. May return fewer (or none).
    pub async fn take(
        &mut self,
        max_events: u32,
        wait: Duration,
    ) -> Result<Vec<Event>, ClientError> {
        match self.call(&take_request(max_events, wait)).await? {
            Response::Events(batch) => Ok(batch.to_events()),
            other => Err(ClientError::UnexpectedResponse {
                request: "Take",
                response: format!("{other:?}"),
            }),
        }
    }

    /// Puts `events` on `channel` and commits them, all or none. One `PutCommit` frame
    /// when they fit the server's frame limit; else `Begin`, `Put`s and `Commit`,
    /// pipelined. Needs no open transaction and leaves none.
    pub async fn put_and_commit(
        &mut self,
        channel: &str,
        events: &[Event],
    ) -> Result<(), ClientError> {
        let request_id = self.next_request_id();
        let mut writer = self
            .encoder
            .put_commit_writer(&mut self.output, request_id, channel)?;
        let mut fits = true;
        for event in events {
            match writer.push_event(event) {
                Ok(()) => {}
                Err(EncodeError::BatchFull { .. } | EncodeError::FrameTooLarge { .. }) => {
                    fits = false;
                    break;
                }
                Err(error) => return Err(error.into()),
            }
        }
        if fits {
            writer.finish()?;
            self.outstanding.push_back(request_id);
            self.flush().await?;
            return self.expect_oks("PutCommit", 1).await;
        }
        // Dropping the writer removes the partial frame.
        drop(writer);
        self.send(&Request::Begin {
            channel: channel.to_string(),
        })?;
        let put_frames = self.queue_puts(events)?;
        self.send(&Request::Commit)?;
        self.flush().await?;
        self.expect_oks("PutCommit", 1 + put_frames + 1).await
    }

    /// The channel's counters (Flume's names; see [`counters`]).
    pub async fn stats(&mut self, channel: &str) -> Result<ChannelStats, ClientError> {
        let request = Request::Stats {
            channel: channel.to_string(),
        };
        match self.call(&request).await? {
            Response::Stats(stats) => Ok(stats),
            other => Err(ClientError::UnexpectedResponse {
                request: "Stats",
                response: format!("{other:?}"),
            }),
        }
    }

    /// Reports an adapter component's counters (Flume's names) for the server to
    /// publish on its metrics as `<component_type>.<component>`.
    pub async fn report_counters(
        &mut self,
        component_type: &str,
        component: &str,
        counters: Vec<(String, u64)>,
    ) -> Result<(), ClientError> {
        self.expect_ok(&Request::ReportCounters {
            component_type: component_type.to_string(),
            component: component.to_string(),
            counters: ChannelStats { counters },
        })
        .await
    }

    /// Asks the server to checkpoint `channel` now; returns when the checkpoint is
    /// durable.
    pub async fn checkpoint(&mut self, channel: &str) -> Result<(), ClientError> {
        self.expect_ok(&Request::Checkpoint {
            channel: channel.to_string(),
        })
        .await
    }

    /// Plans a replay of the file channel `channel` from `point`: the events taken since
    /// then, which the server would put back. With `execute` the server puts copies of
    /// them at the tail of the queue; without it nothing changes. A memory or spillable
    /// channel answers `NOT_SUPPORTED`.
    pub async fn replay(
        &mut self,
        channel: &str,
        point: ReplayPoint,
        execute: bool,
    ) -> Result<ReplayReport, ClientError> {
        let request = Request::Replay {
            channel: channel.to_string(),
            replay: ReplayRequest { point, execute },
        };
        match self.call(&request).await? {
            Response::Replay(report) => Ok(report),
            other => Err(ClientError::UnexpectedResponse {
                request: "Replay",
                response: format!("{other:?}"),
            }),
        }
    }

    /// The inspect report of the live file channel `channel`, as JSON text (its shape is
    /// in `docs/inspect.md`). A memory or spillable channel answers `NOT_SUPPORTED`.
    pub async fn inspect(&mut self, channel: &str) -> Result<String, ClientError> {
        let request = Request::Inspect {
            channel: channel.to_string(),
        };
        match self.call(&request).await? {
            Response::Inspect(report) => Ok(report.json),
            other => Err(ClientError::UnexpectedResponse {
                request: "Inspect",
                response: format!("{other:?}"),
            }),
        }
    }

    /// Copies of up to `max_events` events at the head of `channel`, oldest first,
    /// without taking them (the server may return fewer: what one frame carries). Needs
    /// no open transaction; changes nothing on the channel.
    pub async fn peek(
        &mut self,
        channel: &str,
        max_events: u32,
    ) -> Result<Vec<Event>, ClientError> {
        let request = Request::Peek {
            channel: channel.to_string(),
            max_events,
        };
        match self.call(&request).await? {
            Response::Events(batch) => Ok(batch.to_events()),
            other => Err(ClientError::UnexpectedResponse {
                request: "Peek",
                response: format!("{other:?}"),
            }),
        }
    }
}

/// A `Take` of up to `max_events` (at least 1), waiting up to `wait` for the first.
fn take_request(max_events: u32, wait: Duration) -> Request {
    Request::Take {
        max_events: max_events.max(1),
        wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let backoff = Backoff {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_attempts: 6,
        };
        let delays: Vec<u128> = (1..=6)
            .map(|attempt| backoff.delay_before(attempt).as_millis())
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 500, 500]);
        assert_eq!(backoff.delay_before(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn retryable_errors_follow_the_server_error_class() {
        let full = ClientError::Server {
            error: ErrorResponse::channel_full("c1", 10, 10),
        };
        assert!(full.is_retryable());
        assert!(!full.breaks_connection());
        assert_eq!(full.code(), Some(ErrorCode::ChannelFull));
        let unknown = ClientError::Server {
            error: ErrorResponse::unknown_channel("c9"),
        };
        assert!(!unknown.is_retryable());
        let unauthorized = ClientError::Rejected {
            address: "x".into(),
            error: ErrorResponse::unauthorized(),
        };
        assert!(!unauthorized.is_retryable());
        assert_eq!(unauthorized.code(), Some(ErrorCode::Unauthorized));
    }
}
