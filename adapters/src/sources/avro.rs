//! The `avro` source: Flume's Avro RPC (`AvroSourceProtocol` over Netty framing), so
//! Flume agents' avro sinks, the Flume SDK's RPC client, its log4j appenders and
//! `flume-ng avro-client` deliver to Millrace unchanged. The wire is `millrace-avro`'s
//! (`docs/avro.md`); this module puts it on sockets.
//!
//! ## Calls
//!
//! Each `append` or `appendBatch` call is one delivery through the source's selector and
//! interceptors, **one transaction per required channel, all or nothing**, and is
//! answered only after the commits:
//!
//! | answer | when |
//! |---|---|
//! | `OK` | every event committed on every required channel (durable for a file channel), or every event dropped by an interceptor |
//! | `FAILED` | a required channel refused or could not be reached (full, unhealthy, more events than its `transactionCapacity`, an event too large): nothing of the call is committed on that channel, and the sender retries |
//!
//! Flume's clients wait for each answer before the next call. A client that pipelines
//! (Avro IPC allows several serials in flight once the handshake is answered) gets up to
//! `maxCallsInFlight` calls of its connection delivered at once, each answered by serial
//! as soon as its commit is done: calls in flight together may commit in any order, and
//! a client that needs its calls in order waits for each answer, as Flume's do.
//!
//! As in Flume, with several required channels the channels are committed one after
//! another, so a `FAILED` after the first one committed makes the retry duplicate the
//! events on it. A batch larger than a channel's `transactionCapacity` is answered
//! `FAILED` (with an error in the log naming both numbers), as in Flume: the sender must
//! send smaller batches.
//!
//! ## Bounds (the peer may be hostile)
//!
//! - At most `maxConnections` connections; more are closed as they arrive. `ipFilter`
//!   closes connections its rules deny before anything is read from them.
//! - A connection that sends nothing for `idleTimeout` is closed, and one that starts a
//!   request and does not finish it within `frameReadTimeout` too.
//! - Every length a peer claims is checked against `maxFrameBytes` (and the codec's other
//!   caps, `docs/avro.md` §6) before a byte is buffered on its account; a connection
//!   reads at most one frame (inflated) plus one read at a time.
//! - Calls being delivered hold their events: at most `maxCallsInFlight` per connection,
//!   and at most `maxInFlightBytes` of event bytes across all connections; a connection
//!   whose next call would go over waits, and reads nothing meanwhile.
//! - Garbage, a lying length, a frame over the caps, a corrupt zlib stream or a
//!   handshake for another protocol closes that connection (after a system-error answer
//!   where the framing still allows one); the source keeps serving the others.
//! - At most `threads` calls are delivered to channeld at once (0: no limit besides the
//!   connections).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_avro::{
    Access, AvroFlumeEvent, CallLimits, CallOutcome, ClientProtocolCache, Compression, FrameLimits,
    HostLookup, Inbound, IpFilterRules, Message, Outbound, Reply, ServerSession, ServerStep,
    Status, DEFAULT_COMPRESSION_LEVEL, DEFAULT_MAX_FRAME_BYTES, JAVA_BUFFER_BYTES,
};
use millrace_client::Event;
use millrace_config::values;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::{
    host_port, listen_tcp, read_within, serve_connections, ListenerLimits, ProcessorFactory,
    SourceError,
};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::delivery::{ChannelProcessor, DeliveryError};
use crate::interceptors::resolver_local_address;
use millrace_config::ComponentSettings;

/// Default `maxConnections` of an avro source.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default `idleTimeout`: Flume's clients keep their connection between batches, so
/// this is long (channeld's own idle timeout).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
/// How much room each socket read offers (Java's buffer size, times a few).
const READ_CHUNK_BYTES: usize = 8 * JAVA_BUFFER_BYTES;
/// The smallest `maxFrameBytes`: a handshake with Flume's protocol text must fit.
const MIN_MAX_FRAME_BYTES: u64 = 4096;
/// Default `maxCallsInFlight`: a client that pipelines its calls (several serials on the
/// wire before the first answer) gets up to this many delivered at once; Flume's own
/// clients wait for each answer, so they never have more than one.
pub const DEFAULT_MAX_CALLS_IN_FLIGHT: u64 = 8;
/// Default `maxInFlightBytes`: the event bytes all connections' calls in delivery hold
/// together; a connection whose next call does not fit waits (and stops reading).
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: u64 = 256 * 1024 * 1024;
/// Default `frameReadTimeout`: a request begun must be complete this soon, however often
/// its bytes trickle in (`idleTimeout` alone lets a byte per period hold a slot).
pub const DEFAULT_FRAME_READ_TIMEOUT_MS: u64 = 30_000;

/// How an avro source is configured.
#[derive(Debug, Clone)]
pub struct AvroSourceSettings {
    /// `bind`.
    pub bind: String,
    /// `port`.
    pub port: u16,
    /// `compression-type`: both directions of every connection.
    pub compression: Compression,
    /// `threads`: calls delivered at once; `None` for no limit.
    pub max_concurrent_calls: Option<usize>,
    /// `ipFilterRules` when `ipFilter = true`.
    pub ip_filter: Option<IpFilterRules>,
    /// `maxConnections` and `idleTimeout`.
    pub listener: ListenerLimits,
    /// `maxFrameBytes`: the largest Netty frame accepted, on the wire.
    pub max_frame_bytes: usize,
    /// `maxCallsInFlight`: calls of one connection delivered at once.
    pub max_calls_in_flight: usize,
    /// `maxInFlightBytes`: event bytes of the calls being delivered, all connections
    /// together.
    pub max_in_flight_bytes: usize,
    /// `frameReadTimeout`: longest a client may take to send the rest of a request it
    /// started; `None` for no limit.
    pub frame_read_timeout: Option<Duration>,
}

impl AvroSourceSettings {
    fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            max_frame_bytes: self.max_frame_bytes,
            max_buffer_bytes: self.max_frame_bytes,
            ..FrameLimits::default()
        }
    }
}

/// Reads an avro source's keys (the generic source keys are read by the caller).
pub fn plan(keys: &mut ComponentSettings<'_>) -> Option<AvroSourceSettings> {
    let bind = keys.required_text("bind", "the address to listen on (0.0.0.0 for every one)");
    let port = keys.port("port");
    let compression = plan_compression_type(keys, DEFAULT_COMPRESSION_LEVEL);
    let threads = keys.parsed_or("threads", 0, values::non_negative_integer);
    let ip_filter = keys.boolean_or("ipFilter", false);
    let rules = keys.text("ipFilterRules");
    let ip_filter = match (ip_filter, rules) {
        (true, None) => {
            keys.required_text("ipFilterRules", "rules such as allow:ip:127.*,deny:ip:*");
            None
        }
        (true, Some(rules)) => match IpFilterRules::parse(&rules) {
            Ok(rules) => Some(rules),
            Err(problem) => {
                keys.conflict("ipFilterRules", problem.to_string());
                None
            }
        },
        (false, Some(_)) => {
            keys.accept_with_warning(
                "ipFilterRules",
                "not acted on: ipFilter is not true (as in Flume)",
            );
            None
        }
        (false, None) => None,
    };
    let max_connections = keys.count_or("maxConnections", DEFAULT_MAX_CONNECTIONS as u64);
    let idle_timeout = keys.millis_or(
        "idleTimeout",
        Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
    );
    let max_frame_bytes =
        keys.parsed_or("maxFrameBytes", DEFAULT_MAX_FRAME_BYTES as u64, |value| {
            let bytes = values::positive_integer(value)?;
            if !(MIN_MAX_FRAME_BYTES..=i32::MAX as u64).contains(&bytes) {
                return Err(values::Expected::new(format!(
                    "a number of bytes from {MIN_MAX_FRAME_BYTES} to {}",
                    i32::MAX
                )));
            }
            Ok(bytes)
        });
    let max_calls_in_flight = keys.count_or("maxCallsInFlight", DEFAULT_MAX_CALLS_IN_FLIGHT);
    let max_in_flight_bytes = keys.parsed_or(
        "maxInFlightBytes",
        DEFAULT_MAX_IN_FLIGHT_BYTES,
        values::positive_integer,
    );
    let frame_read_timeout = keys.millis_or(
        "frameReadTimeout",
        Duration::from_millis(DEFAULT_FRAME_READ_TIMEOUT_MS),
    );
    crate::sources::refuse_tls(keys, &["ssl"], &[]);
    Some(AvroSourceSettings {
        bind: bind?,
        port: port?,
        compression,
        max_concurrent_calls: (threads > 0).then(|| usize::try_from(threads).unwrap_or(usize::MAX)),
        ip_filter,
        listener: ListenerLimits {
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
        },
        max_frame_bytes: usize::try_from(max_frame_bytes).unwrap_or(usize::MAX),
        max_calls_in_flight: usize::try_from(max_calls_in_flight.max(1)).unwrap_or(usize::MAX),
        frame_read_timeout: (!frame_read_timeout.is_zero()).then_some(frame_read_timeout),
        max_in_flight_bytes: usize::try_from(max_in_flight_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS),
    })
}

/// `compression-type` (`none` or `deflate`, any case), compressing what this side sends
/// at `level`.
pub fn plan_compression_type(keys: &mut ComponentSettings<'_>, level: u32) -> Compression {
    match keys.choice_or("compression-type", "none", &["none", "deflate"]) {
        "deflate" => Compression::Deflate { level },
        _ => Compression::None,
    }
}

/// Reverse DNS and the local host's address, for `ipFilterRules`' `name` rules.
struct SystemHostLookup;

impl HostLookup for SystemHostLookup {
    fn host_name(&self, address: IpAddr) -> Option<String> {
        dns_lookup::lookup_addr(&address).ok()
    }

    fn is_local_host(&self, address: IpAddr) -> bool {
        resolver_local_address() == Some(address)
    }
}

/// What every connection of one source shares.
struct Endpoint {
    settings: AvroSourceSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    cache: Arc<ClientProtocolCache>,
    calls: Option<Arc<Semaphore>>,
    /// `maxInFlightBytes`, in permits of one byte.
    in_flight_bytes: Arc<Semaphore>,
}

/// Accepts connections until `stop` is raised.
pub async fn run(
    settings: AvroSourceSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    stop: StopSignal,
) -> Result<(), SourceError> {
    let listener = listen_tcp(&host_port(&settings.bind, settings.port), "avro").await?;
    let limits = settings.listener;
    let endpoint = Arc::new(Endpoint {
        in_flight_bytes: Arc::new(Semaphore::new(settings.max_in_flight_bytes)),
        calls: settings
            .max_concurrent_calls
            .map(|calls| Arc::new(Semaphore::new(calls))),
        settings,
        processors,
        counters: Arc::clone(&counters),
        cache: Arc::new(ClientProtocolCache::default()),
    });
    let connection_stop = stop.clone();
    serve_connections(
        listener,
        "avro",
        limits,
        counters,
        stop,
        move |stream, peer| {
            let endpoint = Arc::clone(&endpoint);
            let stop = connection_stop.clone();
            async move { serve_connection(stream, peer, endpoint, stop).await }
        },
    )
    .await
}

/// Whether `ipFilterRules` let `peer` in (the reverse lookup, when a rule needs it,
/// runs off the async threads).
async fn admitted(endpoint: &Endpoint, peer: SocketAddr) -> bool {
    let Some(rules) = endpoint.settings.ip_filter.clone() else {
        return true;
    };
    let decided = tokio::task::spawn_blocking(move || {
        let (access, rule) = rules.decide(peer.ip(), &SystemHostLookup);
        (access, rule.map(ToString::to_string))
    })
    .await;
    match decided {
        Ok((Access::Allow, _)) => true,
        Ok((Access::Deny, rule)) => {
            debug!(%peer, rule = rule.as_deref().unwrap_or(""), "avro source: ipFilterRules deny the peer; closed");
            false
        }
        Err(error) => {
            warn!(%peer, %error, "avro source: the ipFilterRules check failed; closed");
            false
        }
    }
}

/// What to do after answering a request.
enum AfterAnswer {
    KeepServing,
    Close,
}

/// A call decoded from a request, waiting for its delivery.
struct PendingCall {
    serial: i32,
    reply: Reply,
    single: bool,
    events: Vec<Event>,
}

/// What a request turned into.
enum Decoded {
    /// A call to deliver, then answer.
    Call(PendingCall),
    /// Answered already (a handshake alone, or a refusal) into the answer buffer.
    Answered(AfterAnswer),
}

/// A delivered call: its answer frame, and the processor it borrowed.
struct DeliveredCall {
    answer: Result<Vec<u8>, millrace_avro::FrameEncodeError>,
    processor: ChannelProcessor,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    endpoint: Arc<Endpoint>,
    stop: StopSignal,
) -> std::io::Result<()> {
    if !admitted(&endpoint, peer).await {
        return Ok(());
    }
    let _ = stream.set_nodelay(true);
    let mut connection = Connection {
        outbound: Outbound::new(endpoint.settings.compression).map_err(std::io::Error::other)?,
        writer: None,
        in_flight: JoinSet::new(),
        spare_processors: Vec::new(),
        endpoint,
        peer,
    };
    let (reader, writer) = stream.into_split();
    connection.writer = Some(writer);
    let served = connection.serve(reader, stop).await;
    // Calls in flight are never abandoned half-way: each finishes its delivery, and its
    // answer is sent if the client is still there.
    connection.finish_in_flight().await;
    served
}

/// One client connection: calls are decoded in order and up to `maxCallsInFlight` of
/// them are delivered at once, each answered (by serial) as soon as it is committed.
struct Connection {
    endpoint: Arc<Endpoint>,
    peer: SocketAddr,
    outbound: Outbound,
    writer: Option<OwnedWriteHalf>,
    in_flight: JoinSet<DeliveredCall>,
    spare_processors: Vec<ChannelProcessor>,
}

impl Connection {
    async fn serve(
        &mut self,
        mut reader: OwnedReadHalf,
        mut stop: StopSignal,
    ) -> std::io::Result<()> {
        let endpoint = Arc::clone(&self.endpoint);
        let settings = &endpoint.settings;
        let peer = self.peer;
        let mut inbound = Inbound::new(settings.frame_limits(), settings.compression);
        let mut session = ServerSession::new(Arc::clone(&endpoint.cache), CallLimits::default());
        let mut answer = Vec::new();
        let mut partial_frame_since: Option<Instant> = None;
        loop {
            while self.in_flight.len() < settings.max_calls_in_flight {
                let frame = match inbound.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(problem) => {
                        counters::increment(&endpoint.counters.event_read_failures);
                        warn!(%peer, %problem, "avro source: unreadable bytes from the client; closing its connection");
                        return Ok(());
                    }
                };
                answer.clear();
                let decoded = decode_request(&endpoint, &mut session, frame, &mut answer)
                    .map_err(std::io::Error::other)?;
                match decoded {
                    Decoded::Call(call) => self.start(call).await,
                    Decoded::Answered(after) => {
                        self.send(&answer).await?;
                        if let AfterAnswer::Close = after {
                            return Ok(());
                        }
                    }
                }
            }
            let window_open = self.in_flight.len() < settings.max_calls_in_flight;
            // The frame deadline runs while the client owes the rest of a request, not
            // while the source keeps it waiting.
            if window_open && inbound.has_partial_frame() {
                partial_frame_since.get_or_insert_with(Instant::now);
            } else {
                partial_frame_since = None;
            }
            let read_limit = match (partial_frame_since, settings.frame_read_timeout) {
                (Some(since), Some(frame_read_timeout)) => {
                    let left = frame_read_timeout.saturating_sub(since.elapsed());
                    Some(
                        settings
                            .listener
                            .idle_timeout
                            .map_or(left, |idle| idle.min(left)),
                    )
                }
                _ => settings.listener.idle_timeout,
            };
            let buffer = inbound.read_buffer();
            buffer.reserve(READ_CHUNK_BYTES);
            tokio::select! {
                Some(delivered) = self.in_flight.join_next() => {
                    self.answer(delivered).await?;
                }
                read = read_within(read_limit, reader.read_buf(buffer)), if window_open => {
                    match read? {
                        None if partial_frame_since.is_some() => {
                            counters::increment(&endpoint.counters.event_read_failures);
                            warn!(%peer, "avro client sent part of a request and not the rest within frameReadTimeout (or idleTimeout); disconnected, nothing of it was delivered");
                            return Ok(());
                        }
                        None => {
                            debug!(%peer, "avro client idle past idleTimeout; disconnected");
                            return Ok(());
                        }
                        Some(0) => {
                            if inbound.has_partial_frame() {
                                counters::increment(&endpoint.counters.event_read_failures);
                                warn!(%peer, "avro client closed its connection in the middle of a request; nothing of it was delivered");
                            }
                            return Ok(());
                        }
                        Some(_) => {}
                    }
                }
                () = stop.raised() => return Ok(()),
            }
        }
    }

    /// Starts delivering `call`, once the source's in-flight byte budget has room for it.
    async fn start(&mut self, call: PendingCall) {
        let call_bytes = call.events.iter().map(event_bytes).sum::<usize>();
        let budget_permits =
            u32::try_from(call_bytes.min(self.endpoint.settings.max_in_flight_bytes))
                .unwrap_or(u32::MAX);
        let budget = Arc::clone(&self.endpoint.in_flight_bytes)
            .acquire_many_owned(budget_permits)
            .await
            .expect("the in-flight byte budget is never closed");
        let processor = self
            .spare_processors
            .pop()
            .unwrap_or_else(|| self.endpoint.processors.build());
        let endpoint = Arc::clone(&self.endpoint);
        self.in_flight.spawn(async move {
            let delivered = deliver_call(&endpoint, processor, call).await;
            drop(budget);
            delivered
        });
    }

    /// Sends a delivered call's answer.
    async fn answer(
        &mut self,
        delivered: Result<DeliveredCall, tokio::task::JoinError>,
    ) -> std::io::Result<()> {
        let delivered = delivered.map_err(|failure| {
            std::io::Error::other(format!("an avro call's delivery task failed: {failure}"))
        })?;
        self.spare_processors.push(delivered.processor);
        let answer = delivered.answer.map_err(std::io::Error::other)?;
        self.send(&answer).await
    }

    async fn send(&mut self, answer: &[u8]) -> std::io::Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        };
        let wire = self
            .outbound
            .wire_bytes(answer)
            .map_err(std::io::Error::other)?;
        if let Err(failure) = writer.write_all(wire).await {
            // The client is gone: the calls still in flight finish without answers.
            self.writer = None;
            return Err(failure);
        }
        Ok(())
    }

    async fn finish_in_flight(&mut self) {
        while let Some(delivered) = self.in_flight.join_next().await {
            if self.writer.is_some() {
                let _ = self.answer(delivered).await;
            }
        }
    }
}

/// What an event weighs against the in-flight byte budget.
fn event_bytes(event: &Event) -> usize {
    event.body.len()
        + event
            .headers
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum::<usize>()
}

fn to_channel_event(event: AvroFlumeEvent) -> Event {
    let mut converted = Event::new(event.body);
    converted.headers = event.headers;
    converted
}

/// Decodes one request: a call to deliver, or a request answered at once into `answer`.
fn decode_request(
    endpoint: &Endpoint,
    session: &mut ServerSession,
    frame: millrace_avro::NettyFrame,
    answer: &mut Vec<u8>,
) -> Result<Decoded, millrace_avro::FrameEncodeError> {
    let counters = &endpoint.counters;
    let (message, reply) = match session.receive(&frame.message) {
        Ok(ServerStep::Call { message, reply, .. }) => (message, reply),
        Ok(ServerStep::HandshakeOnly { reply }) => {
            reply.encode_handshake_only(frame.serial, answer)?;
            return Ok(Decoded::Answered(AfterAnswer::KeepServing));
        }
        Err(refusal) => {
            counters::increment(&counters.event_read_failures);
            warn!(problem = %refusal, "avro source: refused a request; closing the connection");
            refusal.encode_reply(frame.serial, answer)?;
            return Ok(Decoded::Answered(AfterAnswer::Close));
        }
    };
    let single = matches!(message, Message::Append(_));
    let events: Vec<Event> = message
        .into_events()
        .into_iter()
        .map(to_channel_event)
        .collect();
    if single {
        counters::increment(&counters.appends_received);
    } else {
        counters::increment(&counters.append_batches_received);
    }
    counters::add(&counters.events_received, events.len());
    Ok(Decoded::Call(PendingCall {
        serial: frame.serial,
        reply,
        single,
        events,
    }))
}

/// Delivers one call's events (one transaction per required channel) and encodes its
/// answer: `OK` after the commits, `FAILED` when a channel refused.
async fn deliver_call(
    endpoint: &Endpoint,
    mut processor: ChannelProcessor,
    call: PendingCall,
) -> DeliveredCall {
    let counters = &endpoint.counters;
    let _call_slot = match &endpoint.calls {
        Some(calls) => Some(
            Arc::clone(calls)
                .acquire_owned()
                .await
                .expect("the call semaphore is never closed"),
        ),
        None => None,
    };
    let status = match processor.deliver_whole(call.events).await {
        Ok(()) => {
            if call.single {
                counters::increment(&counters.appends_accepted);
            } else {
                counters::increment(&counters.append_batches_accepted);
            }
            Status::Ok
        }
        Err(refusal) => {
            report_refusal(counters, &refusal);
            Status::Failed
        }
    };
    let mut answer = Vec::new();
    let answer = call
        .reply
        .encode(call.serial, &CallOutcome::Status(status), &mut answer)
        .map(|()| answer);
    DeliveredCall { answer, processor }
}

fn report_refusal(counters: &SourceCounters, refusal: &DeliveryError) {
    match refusal {
        DeliveryError::TooManyEvents { .. } => {
            counters::increment(&counters.channel_write_failures);
            error!(%refusal, "avro source: a call holds more events than a channel takes in one transaction; answered FAILED (lower the sender's batch-size, or raise transactionCapacity)");
        }
        refusal if refusal.is_transient() => {
            warn!(%refusal, "avro source: the channel did not take the call's events; answered FAILED");
        }
        refusal => {
            error!(%refusal, "avro source: the channel refused the call's events; answered FAILED");
        }
    }
}
