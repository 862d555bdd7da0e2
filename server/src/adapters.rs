//! Adapter supervision: channeld runs each source, sink group and ungrouped sink of its
//! agent as its own `channel-agent` process, restarts one that exits with a growing
//! delay while the others keep running, and stops them all (SIGTERM, then SIGKILL after
//! a grace period) before it drains its own sessions.
//!
//! The children inherit channeld's standard output and error, so a logger sink's lines
//! appear in channeld's output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::config::HostPort;

/// Environment variable naming the `channel-agent` binary to run.
pub const AGENT_BINARY_ENV: &str = "MILLRACE_AGENT_BIN";
/// The adapter binary's name, looked for next to channeld and then on `PATH`.
pub const AGENT_BINARY_NAME: &str = "channel-agent";
/// First wait before restarting an adapter that exited.
pub const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
/// Longest wait between restarts.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// An adapter that ran this long before exiting restarts at the first delay again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a stopping adapter gets after SIGTERM before SIGKILL.
pub const ADAPTER_STOP_GRACE: Duration = Duration::from_secs(10);

/// What every adapter process is started with.
#[derive(Debug, Clone)]
pub struct AdapterLaunch {
    /// The `channel-agent` binary.
    pub binary: PathBuf,
    /// The configuration file channeld was started with.
    pub conf_file: PathBuf,
    /// The agent name.
    pub agent: String,
    /// channeld's protocol address as bound (a port 0 resolved).
    pub server_address: String,
    /// The shared token, passed in the environment (not visible in the process list).
    pub auth_token: Option<String>,
}

/// Finds `channel-agent`: `$MILLRACE_AGENT_BIN`, else next to this executable, else
/// the bare name for a `PATH` search.
pub fn locate_agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(AGENT_BINARY_ENV) {
        return PathBuf::from(path);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(AGENT_BINARY_NAME)))
        .filter(|candidate| candidate.exists())
        .unwrap_or_else(|| PathBuf::from(AGENT_BINARY_NAME))
}

/// Why `channel-agent --check` did not pass the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterCheckError {
    /// The configuration is invalid: every problem of the file, one per line, as
    /// channel-agent printed them (the file's own, every source and sink key, ports).
    #[error("{0}")]
    Invalid(String),
    /// channel-agent could not be run at all.
    #[error(
        "cannot run {binary} to check the sources and sinks ({reason}); set \
         {AGENT_BINARY_ENV} to the channel-agent binary"
    )]
    CannotRun {
        /// The binary tried.
        binary: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
}

/// Runs `channel-agent --check` on the configuration, so that channeld refuses to
/// start (like any other configuration error) instead of restarting adapters that can
/// never run. `listeners` are channeld's protocol and HTTP addresses after its flags,
/// which the check compares the sources' ports with. Returns the warnings it printed.
pub fn check_adapters(
    binary: &Path,
    conf_file: &Path,
    agent: &str,
    listeners: (&HostPort, &HostPort),
) -> Result<Vec<String>, AdapterCheckError> {
    let (bind, http) = listeners;
    let output = std::process::Command::new(binary)
        .arg("-f")
        .arg(conf_file)
        .args(["-n", agent, "--check"])
        .args(["--channeld-bind", &bind.to_string()])
        .args(["--channeld-http", &http.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| AdapterCheckError::CannotRun {
            binary: binary.to_path_buf(),
            reason: error.to_string(),
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Ok(stderr
            .lines()
            .filter_map(|line| line.strip_prefix(WARNING_PREFIX))
            .map(str::to_string)
            .collect());
    }
    let problems = stderr
        .trim()
        .strip_prefix("channel-agent: invalid configuration:\n")
        .unwrap_or(stderr.trim());
    Err(AdapterCheckError::Invalid(problems.to_string()))
}

/// How `channel-agent --check` marks a warning line on stderr.
const WARNING_PREFIX: &str = "warning: ";

/// Restart counts per component, for metrics.
#[derive(Debug, Default)]
pub struct AdapterRestarts {
    counts: parking_lot::Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

impl AdapterRestarts {
    fn counter(&self, component: &str) -> Arc<AtomicU64> {
        let mut counts = self.counts.lock();
        if let Some((_, counter)) = counts.iter().find(|(name, _)| name == component) {
            return Arc::clone(counter);
        }
        let counter = Arc::new(AtomicU64::new(0));
        counts.push((component.to_string(), Arc::clone(&counter)));
        counter
    }

    /// Each supervised component and how often it was restarted.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.counts
            .lock()
            .iter()
            .map(|(name, counter)| (name.clone(), counter.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The running supervisors; [`AdapterSupervisor::stop`] ends them.
#[derive(Debug)]
pub struct AdapterSupervisor {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl AdapterSupervisor {
    /// Starts one supervised process per component.
    pub fn start(
        launch: AdapterLaunch,
        components: Vec<String>,
        restarts: Arc<AdapterRestarts>,
    ) -> Self {
        let (stop, stopping) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let launch = Arc::new(launch);
        for component in components {
            let counter = restarts.counter(&component);
            tasks.spawn(supervise(
                Arc::clone(&launch),
                component,
                counter,
                stopping.clone(),
            ));
        }
        AdapterSupervisor { stop, tasks }
    }

    /// Stops every adapter (SIGTERM, SIGKILL after [`ADAPTER_STOP_GRACE`]) and waits.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

fn spawn_adapter(launch: &AdapterLaunch, component: &str) -> std::io::Result<Child> {
    let mut command = Command::new(&launch.binary);
    command
        .arg("-f")
        .arg(&launch.conf_file)
        .args(["-n", &launch.agent, "--component", component])
        .args(["--server", &launch.server_address])
        .args(["--exit-with-parent", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    match &launch.auth_token {
        Some(token) => command.env("MILLRACE_AUTH_TOKEN", token),
        None => command.env_remove("MILLRACE_AUTH_TOKEN"),
    };
    command.spawn()
}

fn terminate(child: &Child) {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    if let Some(pid) = pid {
        let _ = kill_process(pid, Signal::TERM);
    }
}

async fn supervise(
    launch: Arc<AdapterLaunch>,
    component: String,
    restarts: Arc<AtomicU64>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let started = Instant::now();
        let mut child = match spawn_adapter(&launch, &component) {
            Ok(child) => child,
            Err(spawn_error) => {
                error!(
                    %component,
                    binary = %launch.binary.display(),
                    error = %spawn_error,
                    "cannot start the adapter (set {AGENT_BINARY_ENV} to the channel-agent binary)"
                );
                if wait_or_stop(&mut stopping, delay).await {
                    return;
                }
                delay = (delay * 2).min(MAX_RESTART_DELAY);
                continue;
            }
        };
        info!(%component, pid = child.id().unwrap_or(0), "adapter started");
        let exit = tokio::select! {
            status = child.wait() => Some(status),
            _ = stopping.wait_for(|stop| *stop) => None,
        };
        let Some(status) = exit else {
            terminate(&child);
            match tokio::time::timeout(ADAPTER_STOP_GRACE, child.wait()).await {
                Ok(_) => info!(%component, "adapter stopped"),
                Err(_) => {
                    warn!(%component, grace_ms = ADAPTER_STOP_GRACE.as_millis() as u64, "adapter did not stop in time; killing it");
                    let _ = child.kill().await;
                }
            }
            return;
        };
        let status = status.map_or_else(|error| error.to_string(), |status| status.to_string());
        if started.elapsed() >= HEALTHY_RUN {
            delay = FIRST_RESTART_DELAY;
        }
        warn!(%component, %status, restart_in_ms = delay.as_millis() as u64, "adapter exited; restarting");
        restarts.fetch_add(1, Ordering::Relaxed);
        if wait_or_stop(&mut stopping, delay).await {
            return;
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

/// Sleeps `delay`; returns `true` when a stop was asked for instead.
async fn wait_or_stop(stopping: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    let slept = tokio::select! {
        () = tokio::time::sleep(delay) => true,
        _ = stopping.wait_for(|stop| *stop) => false,
    };
    !slept || *stopping.borrow()
}

/// The configuration file path as children should see it (absolute, since they may
/// resolve it after channeld changed nothing, but an absolute path is unambiguous).
pub fn absolute_conf_file(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
