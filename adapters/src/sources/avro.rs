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
//! - A connection that sends nothing for `idleTimeout` is closed.
//! - Every length a peer claims is checked against `maxFrameBytes` (and the codec's other
//!   caps, `docs/avro.md` §6) before a byte is buffered on its account; a connection
//!   holds at most one frame (inflated) plus one read.
//! - Garbage, a lying length, a frame over the caps, a corrupt zlib stream or a
//!   handshake for another protocol closes that connection (after a system-error answer
//!   where the framing still allows one); the source keeps serving the others.
//! - At most `threads` calls are delivered to channeld at once (0: no limit besides the
//!   connections).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use millrace_avro::{
    Access, AvroFlumeEvent, CallLimits, CallOutcome, ClientProtocolCache, Compression, FrameLimits,
    HostLookup, Inbound, IpFilterRules, Message, Outbound, ServerSession, ServerStep, Status,
    DEFAULT_COMPRESSION_LEVEL, DEFAULT_MAX_FRAME_BYTES, JAVA_BUFFER_BYTES,
};
use millrace_client::Event;
use millrace_config::values;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::{debug, error, warn};

use super::{
    host_port, listen_tcp, serve_connections, ListenerLimits, ProcessorFactory, SourceError,
};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::delivery::DeliveryError;
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
        std::time::Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
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

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    endpoint: Arc<Endpoint>,
    mut stop: StopSignal,
) -> std::io::Result<()> {
    if !admitted(&endpoint, peer).await {
        return Ok(());
    }
    let _ = stream.set_nodelay(true);
    let settings = &endpoint.settings;
    let (mut reader, mut writer) = stream.into_split();
    let mut inbound = Inbound::new(settings.frame_limits(), settings.compression);
    let mut outbound = Outbound::new(settings.compression).map_err(std::io::Error::other)?;
    let mut session = ServerSession::new(Arc::clone(&endpoint.cache), CallLimits::default());
    let mut processor = endpoint.processors.build();
    let mut answer = Vec::new();
    loop {
        loop {
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
            let after = answer_request(&endpoint, &mut session, &mut processor, frame, &mut answer)
                .await
                .map_err(std::io::Error::other)?;
            let wire = outbound
                .wire_bytes(&answer)
                .map_err(std::io::Error::other)?;
            writer.write_all(wire).await?;
            if let AfterAnswer::Close = after {
                return Ok(());
            }
        }
        let buffer = inbound.read_buffer();
        buffer.reserve(READ_CHUNK_BYTES);
        let read = tokio::select! {
            read = settings.listener.read_or_idle(reader.read_buf(buffer)) => read?,
            () = stop.raised() => return Ok(()),
        };
        match read {
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
}

fn to_channel_event(event: AvroFlumeEvent) -> Event {
    let mut converted = Event::new(event.body);
    converted.headers = event.headers;
    converted
}

/// Decodes one request, executes its call, and writes the answer into `answer`.
async fn answer_request(
    endpoint: &Endpoint,
    session: &mut ServerSession,
    processor: &mut crate::delivery::ChannelProcessor,
    frame: millrace_avro::NettyFrame,
    answer: &mut Vec<u8>,
) -> Result<AfterAnswer, millrace_avro::FrameEncodeError> {
    let counters = &endpoint.counters;
    let (message, reply) = match session.receive(&frame.message) {
        Ok(ServerStep::Call { message, reply, .. }) => (message, reply),
        Ok(ServerStep::HandshakeOnly { reply }) => {
            reply.encode_handshake_only(frame.serial, answer)?;
            return Ok(AfterAnswer::KeepServing);
        }
        Err(refusal) => {
            counters::increment(&counters.event_read_failures);
            warn!(problem = %refusal, "avro source: refused a request; closing the connection");
            refusal.encode_reply(frame.serial, answer)?;
            return Ok(AfterAnswer::Close);
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
    let _call_slot = match &endpoint.calls {
        Some(calls) => Some(
            Arc::clone(calls)
                .acquire_owned()
                .await
                .expect("the call semaphore is never closed"),
        ),
        None => None,
    };
    let status = match processor.deliver_whole(events).await {
        Ok(()) => {
            if single {
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
    reply.encode(frame.serial, &CallOutcome::Status(status), answer)?;
    Ok(AfterAnswer::KeepServing)
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
