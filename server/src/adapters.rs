//! Adapter supervision: channeld runs each source, sink group and ungrouped sink of its
//! agent as its own `channel-agent` process, restarts one that exits with a growing
//! delay while the others keep running, and stops them all (SIGTERM, then SIGKILL after
//! a grace period) before it drains its own sessions.
//!
//! The children inherit channeld's standard output and error, so a logger sink's lines
//! appear in channeld's output.
//!
//! # Failures are visible
//!
//! Each child runs with `--failure-file`: a component that fails stops its process
//! (instead of restarting inside it) after writing why to a file in a private directory
//! of this supervisor. So every restart happens here, is counted, and keeps the last
//! error; [`AdapterStatuses`] holds them for `/health`, which reports a component as
//! `failing` from a failure until it has run [`HEALTHY_RUN`] again (the same minute after
//! which its restart delay starts over) and the server as `degraded` meanwhile.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
/// An adapter that ran this long before exiting restarts at the first delay again; one
/// that has run this long since its last failure is no longer reported as failing.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Most bytes of a failure file kept as the last error (the rest is cut: a message, not
/// a log).
const MAX_FAILURE_MESSAGE_BYTES: u64 = 4096;
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

/// Whether an adapter is doing its work, as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterState {
    /// Its process runs and has not failed in the last [`HEALTHY_RUN`] of running.
    Running,
    /// It failed, and is waiting to be restarted or has run less than [`HEALTHY_RUN`]
    /// since.
    Failing,
}

impl AdapterState {
    /// The name `/health` uses.
    pub fn name(self) -> &'static str {
        match self {
            AdapterState::Running => "running",
            AdapterState::Failing => "failing",
        }
    }
}

/// One adapter as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterStatus {
    /// The component's name.
    pub component: String,
    /// Whether it is doing its work.
    pub state: AdapterState,
    /// How often its process was restarted after a failure.
    pub restarts: u64,
    /// Why it last failed, as the component said (or how its process ended).
    pub last_error: Option<String>,
    /// When it last failed, in milliseconds since the Unix epoch.
    pub last_failure_unix_ms: Option<u64>,
}

/// What the supervisor knows about one component.
#[derive(Debug, Clone, Default)]
struct AdapterRecord {
    restarts: u64,
    last_error: Option<String>,
    last_failure_unix_ms: Option<u64>,
    /// When its current process started; `None` while none runs.
    running_since: Option<Instant>,
}

impl AdapterRecord {
    fn state(&self, now: Instant) -> AdapterState {
        let recovered = self
            .running_since
            .is_some_and(|since| now.saturating_duration_since(since) >= HEALTHY_RUN);
        if self.last_error.is_none() || recovered {
            AdapterState::Running
        } else {
            AdapterState::Failing
        }
    }
}

/// Every supervised adapter's state, restarts and last error, for `/health`.
#[derive(Debug, Default)]
pub struct AdapterStatuses {
    records: parking_lot::Mutex<Vec<(String, AdapterRecord)>>,
}

impl AdapterStatuses {
    fn update(&self, component: &str, change: impl FnOnce(&mut AdapterRecord)) {
        let mut records = self.records.lock();
        match records.iter_mut().find(|(name, _)| name == component) {
            Some((_, record)) => change(record),
            None => {
                let mut record = AdapterRecord::default();
                change(&mut record);
                records.push((component.to_string(), record));
            }
        }
    }

    /// Lists `component` before its first start.
    fn register(&self, component: &str) {
        self.update(component, |_| {});
    }

    /// Its process started at `at`.
    fn started(&self, component: &str, at: Instant) {
        self.update(component, |record| record.running_since = Some(at));
    }

    /// It failed with `error` and will be restarted.
    fn failed(&self, component: &str, error: String) {
        self.update(component, |record| {
            record.running_since = None;
            record.restarts += 1;
            record.last_error = Some(error);
            record.last_failure_unix_ms = Some(unix_time_ms());
        });
    }

    /// Every adapter as of `now`, in the order they were started.
    pub fn snapshot(&self, now: Instant) -> Vec<AdapterStatus> {
        self.records
            .lock()
            .iter()
            .map(|(component, record)| AdapterStatus {
                component: component.clone(),
                state: record.state(now),
                restarts: record.restarts,
                last_error: record.last_error.clone(),
                last_failure_unix_ms: record.last_failure_unix_ms,
            })
            .collect()
    }
}

fn unix_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
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

/// The running supervisors; [`AdapterSupervisor::stop`] ends them.
#[derive(Debug)]
pub struct AdapterSupervisor {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Holds the children's failure files; removed once every child has stopped.
    _failure_files: Option<tempfile::TempDir>,
}

impl AdapterSupervisor {
    /// Starts one supervised process per component, recording each one's state in
    /// `statuses`.
    pub fn start(
        launch: AdapterLaunch,
        components: Vec<String>,
        statuses: Arc<AdapterStatuses>,
    ) -> Self {
        let (stop, stopping) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let launch = Arc::new(launch);
        // Private (0700), so no other user can plant or read a failure message.
        let failure_files = tempfile::Builder::new()
            .prefix("channeld-adapters-")
            .tempdir()
            .map_err(|error| {
                warn!(%error, "cannot create a directory for adapter failure files; /health will show exit statuses only")
            })
            .ok();
        for (index, component) in components.into_iter().enumerate() {
            statuses.register(&component);
            let failure_file = failure_files
                .as_ref()
                .map(|directory| directory.path().join(format!("{index}.failure")));
            tasks.spawn(supervise(
                Arc::clone(&launch),
                component,
                failure_file,
                Arc::clone(&statuses),
                stopping.clone(),
            ));
        }
        AdapterSupervisor {
            stop,
            tasks,
            _failure_files: failure_files,
        }
    }

    /// Stops every adapter (SIGTERM, SIGKILL after [`ADAPTER_STOP_GRACE`]) and waits.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

fn spawn_adapter(
    launch: &AdapterLaunch,
    component: &str,
    failure_file: Option<&Path>,
) -> std::io::Result<Child> {
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
    if let Some(failure_file) = failure_file {
        command.arg("--failure-file").arg(failure_file);
    }
    match &launch.auth_token {
        Some(token) => command.env("MILLRACE_AUTH_TOKEN", token),
        None => command.env_remove("MILLRACE_AUTH_TOKEN"),
    };
    command.spawn()
}

/// Why a child ended: its failure file, or else how it ended.
fn failure_of(failure_file: Option<&Path>, status: &str) -> String {
    let written = failure_file
        .and_then(|path| std::fs::File::open(path).ok())
        .and_then(|file| {
            let mut bytes = Vec::new();
            file.take(MAX_FAILURE_MESSAGE_BYTES)
                .read_to_end(&mut bytes)
                .ok()?;
            let message = String::from_utf8_lossy(&bytes).trim().to_string();
            (!message.is_empty()).then_some(message)
        });
    written.unwrap_or_else(|| format!("the adapter process ended ({status}) without saying why"))
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
    failure_file: Option<PathBuf>,
    statuses: Arc<AdapterStatuses>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        if let Some(stale) = &failure_file {
            let _ = std::fs::remove_file(stale);
        }
        let started = Instant::now();
        let mut child = match spawn_adapter(&launch, &component, failure_file.as_deref()) {
            Ok(child) => child,
            Err(spawn_error) => {
                error!(
                    %component,
                    binary = %launch.binary.display(),
                    error = %spawn_error,
                    "cannot start the adapter (set {AGENT_BINARY_ENV} to the channel-agent binary)"
                );
                statuses.failed(
                    &component,
                    format!(
                        "cannot start {}: {spawn_error} (set {AGENT_BINARY_ENV} to the \
                         channel-agent binary)",
                        launch.binary.display()
                    ),
                );
                if wait_or_stop(&mut stopping, delay).await {
                    return;
                }
                delay = (delay * 2).min(MAX_RESTART_DELAY);
                continue;
            }
        };
        statuses.started(&component, started);
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
        let failure = failure_of(failure_file.as_deref(), &status);
        warn!(%component, %status, error = %failure, restart_in_ms = delay.as_millis() as u64, "adapter exited; restarting");
        statuses.failed(&component, failure);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_is_failing_from_a_failure_until_it_has_run_a_healthy_minute() {
        let statuses = AdapterStatuses::default();
        let start = Instant::now();
        statuses.register("r1");
        statuses.started("r1", start);
        let state = |at: Instant| statuses.snapshot(at)[0].state;
        assert_eq!(state(start), AdapterState::Running, "never failed");

        statuses.failed("r1", "cannot listen on 127.0.0.1:5140: in use".into());
        assert_eq!(
            state(start),
            AdapterState::Failing,
            "waiting for its restart"
        );
        let restarted = start + Duration::from_secs(1);
        statuses.started("r1", restarted);
        assert_eq!(state(restarted + HEALTHY_RUN / 2), AdapterState::Failing);
        assert_eq!(state(restarted + HEALTHY_RUN), AdapterState::Running);

        let snapshot = &statuses.snapshot(restarted)[0];
        assert_eq!(snapshot.component, "r1");
        assert_eq!(snapshot.restarts, 1);
        assert_eq!(
            snapshot.last_error.as_deref(),
            Some("cannot listen on 127.0.0.1:5140: in use")
        );
        assert!(snapshot.last_failure_unix_ms.is_some());
    }

    #[test]
    fn the_failure_file_gives_the_reason_else_the_exit_status_does() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("0.failure");
        assert_eq!(
            failure_of(Some(&file), "exit status: 1"),
            "the adapter process ended (exit status: 1) without saying why"
        );
        std::fs::write(&file, "source r1: cannot listen\n").unwrap();
        assert_eq!(
            failure_of(Some(&file), "exit status: 1"),
            "source r1: cannot listen"
        );
        let long = "x".repeat(10_000);
        std::fs::write(&file, &long).unwrap();
        assert_eq!(
            failure_of(Some(&file), "exit status: 1").len() as u64,
            MAX_FAILURE_MESSAGE_BYTES
        );
    }
}
