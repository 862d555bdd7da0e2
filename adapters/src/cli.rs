//! channel-agent's command line.
//!
//! ```text
//! channel-agent -f agent.conf -n a1                      # every source and sink of a1
//! channel-agent -f agent.conf -n a1 --component k1       # only k1 (what channeld runs)
//! channel-agent -f agent.conf -n a1 --check              # validate the adapter keys
//! ```

use std::path::{Path, PathBuf};

use clap::Parser;
use millrace_config::{ConfigErrors, HostPort};
use rustix::process::{getppid, set_parent_process_death_signal, Pid, Signal};
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::agent::{counters_for, run_components, ComponentFailed, RestartPolicy, ServerAddress};
use crate::check::{check_agent, CheckOptions, CheckedAgent, ListenerOverrides};
use crate::connection::stop_signal;

/// sysexits.h `EX_CONFIG`.
pub const EXIT_CONFIG_ERROR: i32 = 78;
/// Any other failure.
pub const EXIT_FAILURE: i32 = 1;

/// channel-agent: Flume's sources and sinks as clients of channeld.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "channel-agent",
    version,
    about = "Runs the sources, sinks and sink groups of a Flume agent configuration against channeld"
)]
pub struct AgentArgs {
    /// Flume agent configuration file (Java properties).
    #[arg(short = 'f', long = "conf-file", value_name = "FILE")]
    pub conf_file: PathBuf,

    /// The agent of the file to run.
    #[arg(short = 'n', long = "name", value_name = "AGENT")]
    pub name: String,

    /// Run only these components (a source, a sink group or a sink outside groups);
    /// repeatable. Default: all of them.
    #[arg(long = "component", value_name = "NAME")]
    pub components: Vec<String>,

    /// channeld's protocol address (default: the file's server.bind).
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,

    /// channeld's shared token (default: the file's server.authToken).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MILLRACE_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,

    /// Check the configuration (the whole file, every source and sink key, and that no
    /// source listens where channeld or another source does), print the components and
    /// exit. Warnings go to stderr.
    #[arg(long)]
    pub check: bool,

    /// With --check: channeld's protocol listener, when a flag moved it from the file's
    /// server.bind (channeld passes its own).
    #[arg(long, value_name = "HOST:PORT", hide = true, requires = "check")]
    pub channeld_bind: Option<HostPort>,

    /// With --check: channeld's HTTP listener, when a flag moved it from the file's
    /// server.http (channeld passes its own).
    #[arg(long, value_name = "HOST:PORT", hide = true, requires = "check")]
    pub channeld_http: Option<HostPort>,

    /// Stop (SIGTERM) when the process with this pid, our parent, dies — even by
    /// SIGKILL. channeld passes its own pid.
    #[arg(long, value_name = "PID", hide = true)]
    pub exit_with_parent: Option<i32>,

    /// For a supervisor that restarts processes (channeld): a component that fails stops
    /// the process instead of being restarted in it, and why any run ends in an error is
    /// written to FILE, which the supervisor reports on its /health.
    #[arg(long, value_name = "FILE", hide = true)]
    pub failure_file: Option<PathBuf>,
}

/// Why channel-agent stopped with an error.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The configuration is invalid; every problem is listed.
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),
    /// `--component` named something the agent does not have.
    #[error("agent {agent} has no component {component:?}; it has: {available}")]
    UnknownComponent {
        /// The agent.
        agent: String,
        /// The name asked for.
        component: String,
        /// The names it has.
        available: String,
    },
    /// The supervising parent is already gone.
    #[error("the supervising process {pid} is gone")]
    ParentGone {
        /// Its pid.
        pid: i32,
    },
    /// The runtime or the signal handlers could not start.
    #[error("cannot start: {0}")]
    Runtime(#[source] std::io::Error),
    /// A component failed under `--failure-file`, which stops the process.
    #[error("{0}")]
    ComponentFailed(ComponentFailed),
}

impl AgentError {
    /// 78 for configuration problems, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Config(_) | AgentError::UnknownComponent { .. } => EXIT_CONFIG_ERROR,
            AgentError::Runtime(_)
            | AgentError::ParentGone { .. }
            | AgentError::ComponentFailed(_) => EXIT_FAILURE,
        }
    }

    /// What a supervisor should show as the reason (the failing component's own error,
    /// without the name it already knows the process by).
    pub fn failure_message(&self) -> String {
        match self {
            AgentError::ComponentFailed(failure) => failure.error.clone(),
            other => other.to_string(),
        }
    }
}

/// Reads and checks the file (see [`crate::check`]) and plans its components.
pub fn load_plans(
    conf_file: &Path,
    agent: &str,
    options: &CheckOptions,
) -> Result<(ServerAddress, CheckedAgent), AgentError> {
    let checked = check_agent(conf_file, agent, options).map_err(AgentError::Config)?;
    let config = &checked.config;
    let bind = &config.server.bind;
    let host = match bind.host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_string(),
        "::" => "::1".to_string(),
        host => host.to_string(),
    };
    let address = if host.contains(':') {
        format!("[{host}]:{}", bind.port)
    } else {
        format!("{host}:{}", bind.port)
    };
    let server = ServerAddress {
        address,
        auth_token: config
            .server
            .auth_token
            .as_ref()
            .map(|token| token.expose_secret().to_string()),
    };
    Ok((server, checked))
}

/// Asks the kernel for SIGTERM when the parent dies, then checks it has not died already.
fn follow_parent(parent_pid: i32) -> Result<(), AgentError> {
    set_parent_process_death_signal(Some(Signal::TERM)).map_err(|errno| {
        AgentError::Runtime(std::io::Error::from_raw_os_error(errno.raw_os_error()))
    })?;
    if getppid().map(Pid::as_raw_nonzero).map(i32::from) != Some(parent_pid) {
        return Err(AgentError::ParentGone { pid: parent_pid });
    }
    Ok(())
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(args: AgentArgs) -> Result<(), AgentError> {
    if let Some(parent_pid) = args.exit_with_parent {
        follow_parent(parent_pid)?;
    }
    // The ports were checked by channeld (which passes --check first) or are about to be;
    // running components leaves a port someone else holds to the component, which fails
    // and says so.
    let options = CheckOptions {
        listeners: args.check.then(|| ListenerOverrides {
            bind: args.channeld_bind.clone(),
            http: args.channeld_http.clone(),
        }),
        files: false,
    };
    let (mut server, checked) = load_plans(&args.conf_file, &args.name, &options)?;
    if args.check {
        for warning in &checked.warnings {
            eprintln!("warning: {warning}");
        }
    } else if args.components.is_empty() {
        // Under channeld (--component) the warnings were shown when it checked the file.
        for warning in &checked.warnings {
            warn!("{warning}");
        }
    }
    let mut plans = checked.components;
    if let Some(address) = args.server {
        server.address = address;
    }
    if args.auth_token.is_some() {
        server.auth_token = args.auth_token;
    }
    if !args.components.is_empty() {
        let available = plans
            .iter()
            .map(|plan| plan.name().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(missing) = args
            .components
            .iter()
            .find(|name| !plans.iter().any(|plan| plan.name() == name.as_str()))
        {
            return Err(AgentError::UnknownComponent {
                agent: args.name,
                component: missing.clone(),
                available,
            });
        }
        plans.retain(|plan| args.components.iter().any(|name| name == plan.name()));
    }
    if args.check {
        for plan in &plans {
            println!("{}", plan.name());
        }
        return Ok(());
    }
    let policy = if args.failure_file.is_some() {
        RestartPolicy::ExitProcess
    } else {
        RestartPolicy::InProcess
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("channel-agent")
        .build()
        .map_err(AgentError::Runtime)?;
    runtime.block_on(async move {
        let (stop, _signal) = stop_signal();
        let mut terminate = signal(SignalKind::terminate()).map_err(AgentError::Runtime)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(AgentError::Runtime)?;
        let counters = counters_for(&plans);
        info!(server = %server.address, components = plans.len(), "channel-agent starting");
        let running = run_components(plans, server, counters, &stop, policy);
        tokio::pin!(running);
        let outcome = tokio::select! {
            outcome = &mut running => outcome,
            _ = terminate.recv() => { info!("SIGTERM: stopping"); stop.stop(); running.await }
            _ = interrupt.recv() => { info!("SIGINT: stopping"); stop.stop(); running.await }
        };
        info!("channel-agent stopped");
        outcome.map_err(AgentError::ComponentFailed)
    })
}

/// Writes why the agent stopped to the `--failure-file`, for the supervisor that reads
/// it after the process exits. A failure to write is only logged: the exit status still
/// says the agent failed.
pub fn record_failure(failure_file: &Path, error: &AgentError) {
    if let Err(write_error) = std::fs::write(failure_file, error.failure_message()) {
        warn!(file = %failure_file.display(), %write_error, "cannot write the failure file");
    }
}
