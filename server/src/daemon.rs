//! channeld from start to stop.
//!
//! ```text
//! config ─► channel-agent --check (with sources or sinks: every adapter key, ports)
//!        ─► bind HTTP (answers /health: "recovering")
//!        ─► open channels (blocking pool) ─► bind protocol ─► ready file ─► serve
//! SIGTERM/SIGINT ─► Draining: stop accepting; sessions finish their transactions
//!                ─► after shutdownGraceMs (or when all are done) Aborting: roll back the rest
//!                ─► close() every channel (checkpointing it with checkpointOnClose) ─► exit 0
//! ```
//!
//! A second signal skips the grace period.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use millrace_engine::storage::{IoBackend, IoBackendChoice, RealFs};
use millrace_protocol::{DecodeLimits, DEFAULT_MAX_TAKE_WAIT_MS};
use serde_json::json;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::adapters::{
    absolute_conf_file, check_adapters, locate_agent_binary, AdapterCheckError, AdapterLaunch,
    AdapterStatuses, AdapterSupervisor,
};
use crate::cli::ChanneldArgs;
use crate::config::{
    load_agent_config, max_connections, max_frame_bytes, read_agent_config, AgentConfig,
    ConfigErrors, HostPort, SettingError, DEFAULT_DATA_BASE_DIR,
};
use crate::descriptors::{check_descriptor_limit, DescriptorError};
use crate::http::{self, HttpLimits, HttpState};
use crate::listener::ProtocolListener;
use crate::metrics::flume_counters;
use crate::registry::{ChannelRegistry, RegistryError};
use crate::session::SessionSettings;
use crate::shutdown::{ShutdownController, ShutdownPhase};

/// sysexits.h `EX_CONFIG`: the configuration is wrong.
pub const EXIT_CONFIG_ERROR: i32 = 78;
/// Any other failure to start or run.
pub const EXIT_FAILURE: i32 = 1;
/// Once aborting, how long to wait for sessions to roll back and close.
const ABORT_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the HTTP listener to finish requests in flight at exit.
const HTTP_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the runtime waits at exit for engine calls still running on the blocking
/// pool (a take waiting on a channel wakes when the channel closes).
pub const RUNTIME_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Environment variable that forces the log writers' I/O backend (`io_uring`, `pwrite`
/// or `auto`) when `server.ioBackend` is left at `auto`: a test and debugging switch.
pub const IO_BACKEND_VARIABLE: &str = "MILLRACE_IO_BACKEND";

/// Why channeld could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration file is invalid; every problem is listed.
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),

    /// A server setting (from a flag or the file) cannot be used.
    #[error("invalid server setting: {0}")]
    Setting(#[from] SettingError),

    /// A listener could not bind its address.
    #[error("cannot listen for {purpose} on {address}: {source}")]
    Bind {
        /// `protocol` or `HTTP`.
        purpose: &'static str,
        /// The configured address.
        address: HostPort,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// A channel's directory is locked by another process.
    #[error("{0}")]
    ChannelLocked(RegistryError),

    /// The ready file could not be written.
    #[error("cannot write the ready file {path}: {source}")]
    ReadyFile {
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },

    /// The configuration is invalid, as `channel-agent --check` found it: every problem
    /// of the file (its own rules, the sources' and sinks' keys, their ports), or why the
    /// check could not run.
    #[error("invalid configuration:\n{0}")]
    AdapterConfig(AdapterCheckError),

    /// The open-file limit cannot hold the connections and files the configuration
    /// allows.
    #[error("{0}")]
    Descriptors(#[from] DescriptorError),

    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),

    /// The signal handlers could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signals(#[source] std::io::Error),

    /// Opening the channels stopped abnormally.
    #[error("opening the channels failed: {0}")]
    OpenTaskFailed(String),
}

impl DaemonError {
    /// The process exit code: 78 (EX_CONFIG) for configuration problems, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Config(_)
            | DaemonError::Setting(_)
            | DaemonError::AdapterConfig(_)
            | DaemonError::Descriptors(_) => EXIT_CONFIG_ERROR,
            _ => EXIT_FAILURE,
        }
    }
}

/// Reads the configuration the arguments name (or the embedded default) and applies the
/// flags.
pub fn load_config(args: &ChanneldArgs) -> Result<AgentConfig, DaemonError> {
    let mut config = match (&args.conf_file, &args.name) {
        (Some(file), Some(agent)) => {
            load_agent_config(file, agent, Path::new(DEFAULT_DATA_BASE_DIR))
                .map_err(DaemonError::Config)?
        }
        _ => AgentConfig::embedded_default(),
    };
    for warning in &config.warnings {
        warn!("{warning}");
    }
    args.apply_overrides(&mut config.server)?;
    Ok(config)
}

/// Runs channeld until it is stopped by a signal.
pub fn run(args: ChanneldArgs) -> Result<(), DaemonError> {
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(DaemonError::Config(errors)) => return Err(every_config_problem(&args, errors)),
        Err(other) => return Err(other),
    };
    if let (Some(file), Some(agent)) = (&args.conf_file, &args.name) {
        if !config.adapter_components().is_empty() {
            let listeners = (&config.server.bind, &config.server.http);
            let warnings = check_adapters(&locate_agent_binary(), file, agent, listeners)
                .map_err(DaemonError::AdapterConfig)?;
            for warning in warnings {
                warn!("{warning}");
            }
        }
    }
    let descriptors = check_descriptor_limit(&config)?;
    info!(
        limit = descriptors.limit,
        started_with = descriptors.started_with,
        needed = descriptors.needed(),
        protocol_sockets = descriptors.protocol_sockets,
        http_sockets = descriptors.http_sockets,
        channels = descriptors.channels,
        "open-file limit"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("channeld")
        .max_blocking_threads(blocking_threads(config.server.max_connections))
        .build()
        .map_err(DaemonError::Runtime)?;
    let adapter_config = match (&args.conf_file, &args.name) {
        (Some(file), Some(agent)) => Some((absolute_conf_file(file), agent.clone())),
        _ => None,
    };
    let outcome = runtime.block_on(serve(config, args.ready_file, adapter_config));
    runtime.shutdown_timeout(RUNTIME_STOP_TIMEOUT);
    outcome
}

/// Threads the blocking pool may start beyond one per connection: channel opening and
/// closing, and engine calls still finishing for connections that just closed.
const BLOCKING_THREADS_FOR_THE_SERVER: u64 = 64;
/// Tokio's own default ceiling of the blocking pool; never go below it.
const TOKIO_DEFAULT_BLOCKING_THREADS: u64 = 512;
/// The most blocking threads asked for, whatever `maxConnections` says.
const MAX_BLOCKING_THREADS: u64 = 16_384;

/// The blocking pool's ceiling: a thread for each connection's one engine call that may
/// block (a session makes them one at a time: a put waiting `keep-alive` for room, a
/// commit too large to start without blocking, a checkpoint, a disk read), plus the
/// server's own. So a checkpoint or a commit never queues behind other connections'
/// waits. (Waiting takes hold no thread at all: they await the channel's arrivals.)
/// Threads are started only when needed and end after ten idle seconds.
fn blocking_threads(max_connections: u64) -> usize {
    let wanted = max_connections
        .saturating_add(BLOCKING_THREADS_FOR_THE_SERVER)
        .clamp(TOKIO_DEFAULT_BLOCKING_THREADS, MAX_BLOCKING_THREADS);
    usize::try_from(wanted).unwrap_or(usize::MAX)
}

/// A file with errors may have problems in its sources and sinks too, which only
/// `channel-agent --check` can see; its report lists every problem of the file, so it
/// replaces `errors` when the file has sources or sinks and the check can run.
fn every_config_problem(args: &ChanneldArgs, errors: ConfigErrors) -> DaemonError {
    let (Some(file), Some(agent)) = (&args.conf_file, &args.name) else {
        return DaemonError::Config(errors);
    };
    let reading = read_agent_config(file, agent, Path::new(DEFAULT_DATA_BASE_DIR));
    if reading.config.adapter_components().is_empty() {
        return DaemonError::Config(errors);
    }
    let mut server = reading.config.server;
    if let Some(bind) = &args.bind {
        server.bind = bind.clone();
    }
    if let Some(http) = &args.http {
        server.http = http.clone();
    }
    match check_adapters(
        &locate_agent_binary(),
        file,
        agent,
        (&server.bind, &server.http),
    ) {
        Err(invalid @ AdapterCheckError::Invalid(_)) => DaemonError::AdapterConfig(invalid),
        Ok(_) | Err(AdapterCheckError::CannotRun { .. }) => DaemonError::Config(errors),
    }
}

async fn bind(purpose: &'static str, address: &HostPort) -> Result<TcpListener, DaemonError> {
    TcpListener::bind((address.host.as_str(), address.port))
        .await
        .map_err(|source| DaemonError::Bind {
            purpose,
            address: address.clone(),
            source,
        })
}

fn local_address(
    listener: &TcpListener,
    purpose: &'static str,
    address: &HostPort,
) -> Result<SocketAddr, DaemonError> {
    listener.local_addr().map_err(|source| DaemonError::Bind {
        purpose,
        address: address.clone(),
        source,
    })
}

/// Writes the ready file atomically (temporary file, then rename), so a reader never
/// sees half of it.
fn write_ready_file(
    path: &Path,
    protocol: SocketAddr,
    http: SocketAddr,
) -> Result<(), DaemonError> {
    let body = json!({
        "protocol": protocol.to_string(),
        "http": http.to_string(),
        "pid": std::process::id(),
    });
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, format!("{body}\n"))
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|source| DaemonError::ReadyFile {
            path: path.to_path_buf(),
            source,
        })
}

/// Advances the stop sequence on SIGTERM and SIGINT: the first signal drains, the
/// second aborts.
fn watch_signals(controller: Arc<ShutdownController>) -> Result<(), DaemonError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    tokio::spawn(async move {
        for phase in [ShutdownPhase::Draining, ShutdownPhase::Aborting] {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            info!(
                signal = name,
                "stopping: {}",
                match phase {
                    ShutdownPhase::Draining =>
                        "no new connections or transactions; open transactions may finish",
                    _ => "rolling back open transactions now",
                }
            );
            controller.advance(phase);
        }
    });
    Ok(())
}

/// The real filesystem with the I/O backend channeld's file channels write with:
/// `server.ioBackend` (after `--io-backend`), or when that is `auto`,
/// [`IO_BACKEND_VARIABLE`]. A configured `io_uring` that cannot be used here fails
/// start; one forced by the variable shows up as failed writes, with the reason. The
/// choice is logged.
fn log_writer_storage(configured: IoBackendChoice) -> Result<RealFs, SettingError> {
    let requested = std::env::var(IO_BACKEND_VARIABLE).unwrap_or_default();
    let backend = match (configured, requested.parse()) {
        (IoBackendChoice::Auto, Ok(IoBackendChoice::IoUring)) => IoBackend::IoUring,
        (IoBackendChoice::Auto, Ok(IoBackendChoice::Pwrite)) => IoBackend::Pwrite,
        (choice, _) => choice
            .resolve()
            .map_err(|error| SettingError::IoBackendUnavailable {
                choice,
                reason: error.to_string(),
            })?,
    };
    info!(?backend, ?configured, variable = %requested, "log writer I/O backend chosen");
    Ok(RealFs::new(backend))
}

async fn serve(
    config: AgentConfig,
    ready_file: Option<PathBuf>,
    adapter_config: Option<(PathBuf, String)>,
) -> Result<(), DaemonError> {
    let settings = config.server.clone();
    let max_frame_bytes = max_frame_bytes(&settings)?;
    let max_connections = max_connections(&settings)?;
    let decode_limits =
        DecodeLimits::new(max_frame_bytes).map_err(|_| SettingError::MaxFrameBytesOutOfRange {
            max_frame_bytes: settings.max_frame_bytes,
            min_bytes: millrace_protocol::MIN_MAX_FRAME_BYTES,
            max_bytes: u32::MAX,
        })?;
    let storage = log_writer_storage(settings.io_backend)?;
    let (registry, openers) = ChannelRegistry::plan_on(&config.channels, Arc::new(storage));
    let adapter_statuses = Arc::new(AdapterStatuses::default());
    let registry = Arc::new(registry);
    let controller = Arc::new(ShutdownController::new());
    watch_signals(Arc::clone(&controller))?;

    let http_listener = bind("HTTP", &settings.http).await?;
    let http_address = local_address(&http_listener, "HTTP", &settings.http)?;
    let http_state = Arc::new(HttpState {
        registry: Arc::clone(&registry),
        shutdown: controller.watcher(),
        adapters: Arc::clone(&adapter_statuses),
    });
    let http_limits = HttpLimits {
        max_connections: settings.http_max_connections,
        header_timeout: settings.http_header_timeout,
    };
    let http_task = tokio::spawn(http::serve(http_listener, http_state, http_limits));
    info!(address = %http_address, "metrics and health listening");

    let opening = Arc::clone(&registry);
    tokio::task::spawn_blocking(move || opening.open_all(openers))
        .await
        .map_err(|join_error| DaemonError::OpenTaskFailed(join_error.to_string()))?
        .map_err(DaemonError::ChannelLocked)?;

    let protocol_listener = bind("protocol", &settings.bind).await?;
    let protocol_address = local_address(&protocol_listener, "protocol", &settings.bind)?;
    if let Some(path) = &ready_file {
        write_ready_file(path, protocol_address, http_address)?;
    }
    info!(
        protocol = %protocol_address,
        http = %http_address,
        channels = registry.entries().len(),
        auth = settings.auth_token.is_some(),
        "channeld serving"
    );
    crate::systemd::notify_ready(&format!(
        "serving {} channel(s) on {protocol_address}, HTTP on {http_address}",
        registry.entries().len()
    ));

    let token_bytes = settings
        .auth_token
        .as_ref()
        .map_or(0, |token| token.expose_secret().len());
    let session_settings = Arc::new(SessionSettings {
        decode_limits: decode_limits.with_auth_token_bytes(token_bytes),
        frame_deadline: settings.frame_deadline,
        idle_timeout: settings.idle_timeout,
        handshake_deadline: settings.handshake_deadline,
        max_take_wait: Duration::from_millis(u64::from(DEFAULT_MAX_TAKE_WAIT_MS)),
        auth_token: settings.auth_token.clone(),
        server_name: format!("channeld {}", env!("CARGO_PKG_VERSION")),
    });
    let components = config.adapter_components();
    let adapters = match adapter_config {
        Some((conf_file, agent)) if !components.is_empty() => {
            let launch = AdapterLaunch {
                binary: locate_agent_binary(),
                conf_file,
                agent,
                server_address: protocol_address.to_string(),
                auth_token: settings
                    .auth_token
                    .as_ref()
                    .map(|token| token.expose_secret().to_string()),
            };
            info!(components = %components.join(" "), binary = %launch.binary.display(), "starting adapters");
            Some(AdapterSupervisor::start(
                launch,
                components,
                Arc::clone(&adapter_statuses),
            ))
        }
        _ => None,
    };
    let sessions = ProtocolListener {
        listener: protocol_listener,
        registry: Arc::clone(&registry),
        settings: session_settings,
        max_connections,
        shutdown: controller.watcher(),
    }
    .accept_until_draining()
    .await;
    crate::systemd::notify_stopping("draining: open transactions may finish");

    if let Some(adapters) = adapters {
        info!("stopping adapters");
        adapters.stop().await;
    }
    stop_sessions(sessions, &controller, settings.shutdown_grace).await;
    close_channels(&registry).await;
    match tokio::time::timeout(HTTP_STOP_TIMEOUT, http_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => warn!(%error, "the HTTP listener stopped with an error"),
        Ok(Err(error)) => warn!(%error, "the HTTP listener task failed"),
        Err(_) => warn!("HTTP requests still in flight; stopping anyway"),
    }
    if let Some(path) = &ready_file {
        let _ = std::fs::remove_file(path);
    }
    info!("channeld stopped");
    Ok(())
}

/// Lets sessions finish their transactions for up to `grace`, then aborts the rest and
/// waits (boundedly) for them to roll back.
async fn stop_sessions(
    mut sessions: JoinSet<()>,
    controller: &ShutdownController,
    grace: Duration,
) {
    let open_sessions = sessions.len();
    if open_sessions > 0 {
        info!(
            open_sessions,
            grace_ms = grace.as_millis() as u64,
            "waiting for open transactions to finish"
        );
    }
    let mut abort_signal = controller.watcher();
    let drained = tokio::select! {
        finished = tokio::time::timeout(grace, async { while sessions.join_next().await.is_some() {} }) => finished.is_ok(),
        () = abort_signal.reached(ShutdownPhase::Aborting) => false,
    };
    if !drained {
        info!(
            open_sessions = sessions.len(),
            "grace period over; rolling back open transactions"
        );
    }
    controller.advance(ShutdownPhase::Aborting);
    let all_closed = tokio::time::timeout(ABORT_WAIT, async {
        while sessions.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !all_closed {
        warn!(
            open_sessions = sessions.len(),
            "sessions still closing; stopping anyway"
        );
        sessions.abort_all();
    }
}

/// Closes every open channel on the blocking pool, logging the final counters as Flume
/// does. A file channel (and a spillable channel's overflow) writes its final checkpoint
/// in `close` when `checkpointOnClose` is true, and only then.
async fn close_channels(registry: &ChannelRegistry) {
    for entry in registry.entries() {
        let Some(channel) = entry.channel() else {
            continue;
        };
        let name = entry.name().to_string();
        let closing = tokio::task::spawn_blocking(move || {
            let closed = channel.close();
            (closed, channel.stats())
        })
        .await;
        match closing {
            Ok((closed, stats)) => {
                if let Err(error) = closed {
                    error!(channel = %name, %error, "closing the channel failed");
                }
                let counters = flume_counters(&stats)
                    .iter()
                    .map(|(counter, value)| format!("{counter} == {value}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                info!(channel = %name, "Shutdown Metric for type: CHANNEL, name: {name}. {counters}");
            }
            Err(error) => error!(channel = %name, %error, "closing the channel failed"),
        }
    }
}
