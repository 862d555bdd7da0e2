//! Sources: read events from the outside and put them on their channels.
//!
//! Every source hands its events to a [`ChannelProcessor`] and only acknowledges its
//! input (an `OK` line, a renamed file, an HTTP 200) once the puts are committed.

pub mod exec;
pub mod http;
pub mod netcat;
pub mod spooldir;
pub mod syslog;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use millrace_client::ClientOptions;
use millrace_server::config::ChannelSelector;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use crate::connection::{Connection, StopSignal};
use crate::counters::{self, SourceCounters};
use crate::delivery::{ChannelProcessor, DeliveryError};
use crate::file_problem::FileProblem;
use crate::interceptors::Interceptor;

pub use exec::ExecSettings;
pub use http::HttpSettings;
pub use netcat::NetcatSettings;
pub use spooldir::SpoolDirSettings;
pub use syslog::SyslogSettings;

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

/// Makes [`ChannelProcessor`]s for a source: one per client connection it serves.
#[derive(Debug, Clone)]
pub struct ProcessorFactory {
    /// The source's channels, in its `channels` order.
    pub channels: Vec<String>,
    /// Its selector.
    pub selector: ChannelSelector,
    /// How to reach channeld.
    pub options: ClientOptions,
    /// The source's counters.
    pub counters: Arc<SourceCounters>,
    /// Its interceptors, in order.
    pub interceptors: Vec<Interceptor>,
}

impl ProcessorFactory {
    /// A processor with its own connection to channeld.
    pub fn build(&self) -> ChannelProcessor {
        ChannelProcessor::new(
            self.channels.clone(),
            self.selector.clone(),
            Connection::new(self.options.clone()),
            Arc::clone(&self.counters),
        )
        .with_interceptors(self.interceptors.clone())
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
}

impl SourceKind {
    /// Runs the source until `stop` is raised or it fails.
    pub async fn run(
        self,
        processors: ProcessorFactory,
        stop: StopSignal,
    ) -> Result<(), SourceError> {
        let counters = Arc::clone(&processors.counters);
        match self {
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
        }
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

/// Accepts connections until `stop` is raised, each served by `serve` in its own task
/// and counted in `OpenConnectionCount` while it lasts.
pub async fn serve_connections<Serve, Served>(
    listener: TcpListener,
    source_type: &'static str,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
    mut serve: Serve,
) -> Result<(), SourceError>
where
    Serve: FnMut(TcpStream, SocketAddr) -> Served,
    Served: Future<Output = std::io::Result<()>> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.raised() => return Ok(()),
        };
        match accepted {
            Ok((stream, peer)) => {
                let connection = serve(stream, peer);
                let counters = Arc::clone(&counters);
                tokio::spawn(async move {
                    counters::increment(&counters.open_connections);
                    if let Err(error) = connection.await {
                        warn!(%peer, %error, "{source_type} connection ended with an error");
                    }
                    counters::decrement(&counters.open_connections);
                });
            }
            Err(error) => warn!(%error, "accepting a {source_type} connection failed"),
        }
    }
}
