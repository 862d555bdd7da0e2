//! Sources: read events from the outside and put them on their channels.
//!
//! Every source hands its events to a [`ChannelProcessor`] and only acknowledges its
//! input (an `OK` line, a renamed file, an HTTP 200) once the puts are committed.

pub mod avro;
pub mod exec;
pub mod http;
pub mod kafka;
pub mod multiport_syslog;
pub mod netcat;
pub mod netcat_udp;
pub mod seq;
pub mod spooldir;
pub mod syslog;
pub mod taildir;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace_client::ClientOptions;
use millrace_config::values::{self, Expected};
use millrace_config::{ChannelSelector, ComponentSettings};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Pause after a failed `accept` (out of file descriptors, …) before the next one.
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::delivery::{ChannelProcessor, DeliveryError, SourceDeadLetter};
use crate::file_problem::FileProblem;
use crate::interceptors::Interceptor;
use crate::pool::{ServerPool, DEFAULT_CHANNELD_CONNECTIONS};

pub use avro::AvroSourceSettings;
pub use exec::ExecSettings;
pub use http::HttpSettings;
pub use multiport_syslog::MultiportSyslogSettings;
pub use netcat::NetcatSettings;
pub use netcat_udp::NetcatUdpSettings;
pub use seq::SeqSettings;
pub use spooldir::SpoolDirSettings;
pub use syslog::SyslogSettings;
pub use taildir::TaildirSettings;

/// The key every batching source reads its batch size from.
pub(crate) const BATCH_SIZE_KEY: &str = "batchSize";

/// Flume's TLS settings of its TLS-capable sources (`SslContextAwareAbstractSource`),
/// read only when `ssl` is on.
const FLUME_TLS_SETTINGS: &[&str] = &[
    "keystore",
    "keystore-password",
    "keystore-type",
    "exclude-protocols",
    "include-protocols",
    "exclude-cipher-suites",
    "include-cipher-suites",
];

/// What a TLS switch turned on gets.
const TLS_REFUSAL: &str = "false (TLS is not supported here; put a TLS proxy in front)";

/// Reads a source's TLS switches (`ssl`, and `enableSSL` for http), refusing `true`,
/// and accepts its other TLS settings ([`FLUME_TLS_SETTINGS`] and `extra_settings`, where
/// a trailing `.` names a prefix) with a warning: with TLS off, Flume does not read them
/// either.
pub(crate) fn refuse_tls(
    keys: &mut ComponentSettings<'_>,
    switches: &[&str],
    extra_settings: &[&str],
) {
    for switch in switches {
        keys.parsed_or(switch, (), |value| match values::boolean(value)? {
            false => Ok(()),
            true => Err(Expected::new(TLS_REFUSAL)),
        });
    }
    let no_effect = "a TLS setting; TLS is off (Millrace's sources do not do TLS), so it has \
                     no effect, as in Flume with ssl off";
    for setting in FLUME_TLS_SETTINGS.iter().chain(extra_settings) {
        if setting.ends_with('.') {
            keys.accept_prefix_with_warning(setting, no_effect);
        } else {
            keys.accept_with_warning(setting, no_effect);
        }
    }
}

/// Why a source stopped.
#[derive(Debug, Error)]
pub enum SourceError {
    /// Its listening address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `host:port`.
        address: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be read, written or renamed.
    #[error("{0}")]
    File(#[from] FileProblem),
    /// An assumption of the source was broken (a spooled file changed while being
    /// read, a name reused); it stops so an operator can look.
    #[error("FATAL: {0}. Restart or reconfigure the source to continue processing.")]
    Violation(String),
    /// The channel refused events for what they are.
    #[error("{0}")]
    Delivery(#[from] DeliveryError),
    /// The Kafka consumer could not be created or subscribed.
    #[error("{0}")]
    Kafka(#[from] millrace_kafka::KafkaError),
    /// The command of an `exec` source could not be started.
    #[error("cannot run {command:?}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// Makes [`ChannelProcessor`]s for a source: one per client connection it serves, all
/// sharing the source's small pool of channeld connections.
#[derive(Debug, Clone)]
pub struct ProcessorFactory {
    /// The source's channels, in its `channels` order.
    pub channels: Vec<String>,
    /// Its selector.
    pub selector: ChannelSelector,
    /// The source's connections to channeld.
    pub pool: Arc<ServerPool>,
    /// The source's counters.
    pub counters: Arc<SourceCounters>,
    /// Its interceptors, in order.
    pub interceptors: Vec<Interceptor>,
    /// Where refused events go.
    pub dead_letter: Option<SourceDeadLetter>,
}

impl ProcessorFactory {
    /// For a source reaching channeld with `options` over at most
    /// [`DEFAULT_CHANNELD_CONNECTIONS`] connections, writing to `channels` through a
    /// replicating selector, without interceptors or dead-letter channel.
    pub fn new(
        options: ClientOptions,
        channels: Vec<String>,
        counters: Arc<SourceCounters>,
    ) -> Self {
        ProcessorFactory {
            channels,
            selector: ChannelSelector::Replicating {
                optional: Vec::new(),
            },
            pool: ServerPool::new(options, DEFAULT_CHANNELD_CONNECTIONS),
            counters,
            interceptors: Vec::new(),
            dead_letter: None,
        }
    }

    /// A processor; its deliveries borrow connections from the shared pool.
    pub fn build(&self) -> ChannelProcessor {
        ChannelProcessor::new(
            self.channels.clone(),
            self.selector.clone(),
            Arc::clone(&self.pool),
            Arc::clone(&self.counters),
        )
        .with_interceptors(self.interceptors.clone())
        .with_dead_letter(self.dead_letter.clone())
    }
}

/// One configured source.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// `netcat`.
    Netcat(NetcatSettings),
    /// `spooldir`.
    SpoolDir(SpoolDirSettings),
    /// `exec`.
    Exec(ExecSettings),
    /// `syslogtcp`.
    SyslogTcp(SyslogSettings),
    /// `syslogudp`.
    SyslogUdp(SyslogSettings),
    /// `http`.
    Http(HttpSettings),
    /// `avro`.
    Avro(AvroSourceSettings),
    /// `TAILDIR`.
    Taildir(Box<TaildirSettings>),
    /// `seq`.
    Seq(SeqSettings),
    /// `netcatudp`.
    NetcatUdp(NetcatUdpSettings),
    /// `multiport_syslogtcp`.
    MultiportSyslogTcp(MultiportSyslogSettings),
    /// `kafka`.
    Kafka(Box<millrace_kafka::KafkaSourceSettings>),
}

impl SourceKind {
    /// Runs the source until `stop` is raised or it fails.
    pub async fn run(
        self,
        processors: ProcessorFactory,
        stop: StopSignal,
    ) -> Result<(), SourceError> {
        let counters = Arc::clone(&processors.counters);
        let pool = Arc::clone(&processors.pool);
        let outcome = match self {
            SourceKind::Netcat(settings) => netcat::run(settings, processors, counters, stop).await,
            SourceKind::SpoolDir(settings) => {
                spooldir::run(settings, processors.build(), counters, stop).await
            }
            SourceKind::Exec(settings) => {
                exec::run(settings, processors.build(), counters, stop).await
            }
            SourceKind::SyslogTcp(settings) => {
                syslog::tcp::run(settings, processors, counters, stop).await
            }
            SourceKind::SyslogUdp(settings) => {
                syslog::udp::run(settings, processors, counters, stop).await
            }
            SourceKind::Http(settings) => http::run(settings, processors, counters, stop).await,
            SourceKind::Avro(settings) => avro::run(settings, processors, counters, stop).await,
            SourceKind::Taildir(settings) => {
                taildir::run(*settings, processors.build(), counters, stop).await
            }
            SourceKind::Seq(settings) => {
                seq::run(settings, processors.build(), counters, stop).await
            }
            SourceKind::NetcatUdp(settings) => {
                netcat_udp::run(settings, processors, counters, stop).await
            }
            SourceKind::MultiportSyslogTcp(settings) => {
                multiport_syslog::run(settings, processors, counters, stop).await
            }
            SourceKind::Kafka(settings) => kafka::run(*settings, processors, counters, stop).await,
        };
        pool.close_all_idle();
        outcome
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What to say when `address` cannot be bound.
pub fn bind_failure(address: &str) -> impl Fn(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Bind {
        address: address.to_string(),
        source,
    }
}

/// Binds the listening socket of a TCP source and logs where it listens.
pub async fn listen_tcp(address: &str, source_type: &str) -> Result<TcpListener, SourceError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(bind_failure(address))?;
    let local = listener.local_addr().map_err(bind_failure(address))?;
    info!(address = %local, "{source_type} source listening");
    Ok(listener)
}

/// The bounds of a source's own TCP listener (netcat, syslogtcp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// `maxConnections`: clients served at once; more are closed as they connect.
    pub max_connections: usize,
    /// `idleTimeout`: a client that sends nothing for this long is disconnected;
    /// `None` never.
    pub idle_timeout: Option<Duration>,
}

/// Clients a netcat or syslogtcp source serves at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// Silence after which a netcat or syslogtcp client is disconnected, by default (as
/// channeld's own idle timeout).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_millis(300_000);
/// Least time between two warnings about refused connections.
const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }
}

impl ListenerLimits {
    /// `maxConnections` and `idleTimeout` of a netcat or syslogtcp listener.
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> ListenerLimits {
        let max_connections = keys.count_or("maxConnections", DEFAULT_MAX_CONNECTIONS as u64);
        let idle_timeout = keys.millis_or("idleTimeout", DEFAULT_IDLE_TIMEOUT);
        ListenerLimits {
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
        }
    }

    /// Reads `reader` with the idle timeout: `Ok(None)` when the client stayed silent.
    pub async fn read_or_idle<T>(
        &self,
        reader: impl Future<Output = std::io::Result<T>>,
    ) -> std::io::Result<Option<T>> {
        read_within(self.idle_timeout, reader).await
    }
}

/// Reads with a time limit (`None`: none): `Ok(None)` when nothing came within it.
pub async fn read_within<T>(
    limit: Option<Duration>,
    reader: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<Option<T>> {
    match limit {
        None => reader.await.map(Some),
        Some(limit) => match tokio::time::timeout(limit, reader).await {
            Ok(read) => read.map(Some),
            Err(_elapsed) => Ok(None),
        },
    }
}

/// Accepts connections until `stop` is raised, each served by `serve` in its own task
/// and counted in `OpenConnectionCount` while it lasts. Beyond `limits.max_connections`
/// a new connection is closed at once (with a warning at most every 10 s).
pub async fn serve_connections<Serve, Served>(
    listener: TcpListener,
    source_type: &'static str,
    limits: ListenerLimits,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
    mut serve: Serve,
) -> Result<(), SourceError>
where
    Serve: FnMut(TcpStream, SocketAddr) -> Served,
    Served: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut refused_since_warning = 0_u64;
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.raised() => return Ok(()),
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    drop(stream);
                    refused_since_warning += 1;
                    if last_warning.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_INTERVAL) {
                        warn!(%peer, max_connections = limits.max_connections, refused = refused_since_warning, "{source_type} source at maxConnections; closed new connections");
                        refused_since_warning = 0;
                        last_warning = Some(Instant::now());
                    }
                    continue;
                };
                let connection = serve(stream, peer);
                let counters = Arc::clone(&counters);
                tokio::spawn(async move {
                    counters::increment(&counters.open_connections);
                    if let Err(error) = connection.await {
                        warn!(%peer, %error, "{source_type} connection ended with an error");
                    }
                    counters::decrement(&counters.open_connections);
                    drop(slot);
                });
            }
            Err(error) => {
                warn!(%error, "accepting a {source_type} connection failed");
                // Out of descriptors, say: do not spin.
                if !stop.sleep(ACCEPT_RETRY_DELAY).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Where a datagram source listens and how it reads.
pub(crate) struct DatagramListener<'a> {
    /// The source type, for logs (`syslogudp`, `netcatudp`).
    pub source_type: &'static str,
    /// The address to bind.
    pub host: &'a str,
    /// The port to bind.
    pub port: u16,
    /// Room for one datagram.
    pub buffer_bytes: usize,
    /// Datagrams delivered together at most.
    pub batch_size: usize,
}

/// Binds `listener`'s socket and delivers its datagrams until `stop` is raised: those
/// already waiting go together (up to `batch_size`) in one attempt, each turned into an
/// event by `to_event` (`None`: nothing to deliver). UDP has no back-pressure, so what
/// the channel cannot take now is logged and dropped (refused events go to the
/// dead-letter channel through the processor).
pub(crate) async fn serve_datagrams(
    listener: DatagramListener<'_>,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
    mut to_event: impl FnMut(&[u8], SocketAddr) -> Option<millrace_client::Event>,
) -> Result<(), SourceError> {
    let source_type = listener.source_type;
    let address = host_port(listener.host, listener.port);
    let socket = UdpSocket::bind(&address)
        .await
        .map_err(bind_failure(&address))?;
    let local = socket.local_addr().map_err(bind_failure(&address))?;
    info!(address = %local, "{source_type} source listening");
    let mut processor = processors.build();
    let mut datagram = vec![0_u8; listener.buffer_bytes];
    let batch_size = listener.batch_size.max(1);
    let mut events = Vec::with_capacity(batch_size);
    loop {
        let receiving = receive_datagrams(
            &socket,
            &mut datagram,
            batch_size,
            &mut stop,
            &counters,
            source_type,
            |bytes, peer| events.extend(to_event(bytes, peer)),
        );
        if !receiving.await {
            break;
        }
        if events.is_empty() {
            continue;
        }
        counters::increment(&counters.append_batches_received);
        match processor.deliver(&events).await {
            Ok(()) => counters::increment(&counters.append_batches_accepted),
            Err(error) => warn!(
                %error,
                events = events.len(),
                "the channel did not take all {source_type} datagrams; the rest are dropped (UDP cannot wait)"
            ),
        }
        events.clear();
    }
    processor.close();
    Ok(())
}

/// Waits for a datagram (or `stop`), then takes those already waiting, up to `max` in
/// all, handing each to `take` with its sender; `false` once `stop` is raised. A failed
/// receive is counted in `EventReadFail` and ends the round.
async fn receive_datagrams(
    socket: &UdpSocket,
    buffer: &mut [u8],
    max: usize,
    stop: &mut StopSignal,
    counters: &SourceCounters,
    source_type: &str,
    mut take: impl FnMut(&[u8], SocketAddr),
) -> bool {
    let mut received = tokio::select! {
        received = socket.recv_from(buffer) => received,
        () = stop.raised() => return false,
    };
    let mut taken = 0;
    loop {
        match received {
            Ok((length, peer)) => {
                take(&buffer[..length], peer);
                taken += 1;
            }
            Err(error) => {
                counters::increment(&counters.event_read_failures);
                warn!(%error, "receiving a {source_type} datagram failed");
                break;
            }
        }
        if taken >= max {
            break;
        }
        match socket.try_recv_from(buffer) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            other => received = other,
        }
    }
    true
}
