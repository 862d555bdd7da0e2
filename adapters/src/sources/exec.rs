//! The `exec` source: one event per line a command writes to its standard output.
//!
//! As Flume's `ExecSource`: the command runs through `shell` (`/bin/sh -c`, the command
//! as one argument) or, without one, split on whitespace; lines (without `\n` or
//! `\r\n`) are delivered in batches of `batchSize`, or when `batchTimeout` has passed
//! since the first line of a batch. When the command exits its last batch is delivered,
//! then it is started again after `restartThrottle` if `restart = true`; otherwise the
//! source ends.
//!
//! Unlike Flume, nothing is lost when the channel is full: the batch is retried until
//! it is committed, and meanwhile the command's output is not read, so the command
//! blocks on its full pipe (back-pressure) instead of the batch being dropped. On stop
//! the command is killed.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use millrace_client::Event;
use millrace_config::{values, ComponentSettings};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{SourceError, BATCH_SIZE_KEY};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::delivery::ChannelProcessor;

/// Flume's default `restartThrottle`.
pub const DEFAULT_RESTART_THROTTLE: Duration = Duration::from_millis(10_000);
/// Flume's default `batchSize`.
pub const DEFAULT_BATCH_SIZE: usize = 20;
/// Flume's default `batchTimeout`.
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_millis(3_000);

/// How an exec source is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSettings {
    /// `command`.
    pub command: String,
    /// `shell`, such as `/bin/sh -c`.
    pub shell: Option<String>,
    /// `restart`: start the command again when it exits.
    pub restart: bool,
    /// `restartThrottle`: wait before starting it again.
    pub restart_throttle: Duration,
    /// `logStdErr`: log the command's standard error.
    pub log_stderr: bool,
    /// `batchSize`: lines per transaction.
    pub batch_size: usize,
    /// `batchTimeout`: longest a line waits for its batch to fill.
    pub batch_timeout: Duration,
}

impl ExecSettings {
    /// Reads an exec source's keys (Flume's `ExecSource`).
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> Option<ExecSettings> {
        let command = keys.required_text("command", "the command to run");
        if command
            .as_deref()
            .is_some_and(|command| command.trim().is_empty())
        {
            keys.conflict("command", "expected a command, got only whitespace");
        }
        let shell = keys.text("shell");
        let restart = keys.boolean_or("restart", false);
        let restart_throttle = keys.millis_or("restartThrottle", DEFAULT_RESTART_THROTTLE);
        let log_stderr = keys.boolean_or("logStdErr", false);
        let batch_size = keys.count_or(BATCH_SIZE_KEY, DEFAULT_BATCH_SIZE as u64);
        let batch_timeout = keys.parsed_or(
            "batchTimeout",
            DEFAULT_BATCH_TIMEOUT,
            values::positive_milliseconds,
        );
        keys.choice_or("charset", "UTF-8", &["UTF-8"]);
        Some(ExecSettings {
            command: command.filter(|command| !command.trim().is_empty())?,
            shell,
            restart,
            restart_throttle,
            log_stderr,
            batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
            batch_timeout,
        })
    }
}

impl ExecSettings {
    /// The program and its arguments.
    pub fn argv(&self) -> Vec<String> {
        match &self.shell {
            Some(shell) => shell
                .split_whitespace()
                .map(str::to_string)
                .chain(std::iter::once(self.command.clone()))
                .collect(),
            None => self
                .command
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        }
    }
}

/// How one run of the command ended.
enum RunEnd {
    /// It closed its output and exited.
    Exited,
    /// A stop was asked for.
    Stopped,
}

/// Runs the command (again and again with `restart`) until it ends or `stop` is raised.
pub async fn run(
    settings: ExecSettings,
    mut processor: ChannelProcessor,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
) -> Result<(), SourceError> {
    let outcome = loop {
        match run_command_once(&settings, &mut processor, &counters, &mut stop).await {
            Ok(RunEnd::Stopped) => break Ok(()),
            Ok(RunEnd::Exited) if settings.restart => {
                info!(
                    command = %settings.command,
                    restart_in_ms = settings.restart_throttle.as_millis() as u64,
                    "restarting the command"
                );
                if !stop.sleep(settings.restart_throttle).await {
                    break Ok(());
                }
            }
            Ok(RunEnd::Exited) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    processor.close();
    outcome
}

fn spawn(settings: &ExecSettings) -> Result<Child, SourceError> {
    let argv = settings.argv();
    let spawn_error = |source| SourceError::Spawn {
        command: settings.command.clone(),
        source,
    };
    let Some((program, arguments)) = argv.split_first() else {
        return Err(spawn_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the command is empty",
        )));
    };
    Command::new(program)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if settings.log_stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)
}

/// Logs each line of the command's standard error.
fn log_stderr(child: &mut Child, command: &str) {
    let Some(stderr) = child.stderr.take() else {
        return;
    };
    let command = command.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut number = 0_u64;
        while let Ok(Some(line)) = lines.next_line().await {
            number += 1;
            info!(%command, line_number = number, "stderr: {line}");
        }
    });
}

/// The lines read but not yet delivered.
struct PendingBatch {
    events: Vec<Event>,
    /// When the first of them must be delivered at the latest.
    deadline: Option<Instant>,
}

impl PendingBatch {
    fn push(&mut self, line: &[u8], batch_timeout: Duration) {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        self.events.push(Event::new(text.to_vec()));
        self.deadline
            .get_or_insert_with(|| Instant::now() + batch_timeout);
    }
}

/// Delivers the pending lines, waiting while the channel is full. `Ok(false)` when a
/// stop came first.
async fn flush(
    pending: &mut PendingBatch,
    processor: &mut ChannelProcessor,
    counters: &SourceCounters,
    stop: &mut StopSignal,
) -> Result<bool, SourceError> {
    pending.deadline = None;
    if pending.events.is_empty() {
        return Ok(true);
    }
    counters::increment(&counters.append_batches_received);
    match processor.deliver_patiently(&pending.events, stop).await {
        Ok(Ok(())) => {
            counters::increment(&counters.append_batches_accepted);
            pending.events.clear();
            Ok(true)
        }
        Ok(Err(refused)) => Err(refused.into()),
        Err(_stopped) => Ok(false),
    }
}

/// On stop: one last attempt for the lines already read, then the command is killed.
async fn finish_on_stop(
    mut child: Child,
    pending: &mut PendingBatch,
    processor: &mut ChannelProcessor,
    command: &str,
) {
    if !pending.events.is_empty() {
        if let Err(error) = processor.deliver(&pending.events).await {
            warn!(%command, lost_lines = pending.events.len(), %error, "stopping: lines read from the command could not be delivered");
        }
        pending.events.clear();
    }
    if let Err(error) = child.kill().await {
        warn!(%command, %error, "could not kill the command");
    }
}

async fn run_command_once(
    settings: &ExecSettings,
    processor: &mut ChannelProcessor,
    counters: &SourceCounters,
    stop: &mut StopSignal,
) -> Result<RunEnd, SourceError> {
    let mut child = spawn(settings)?;
    info!(command = %settings.command, pid = child.id(), "command started");
    if settings.log_stderr {
        log_stderr(&mut child, &settings.command);
    }
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stdout = BufReader::new(stdout);
    let mut pending = PendingBatch {
        events: Vec::with_capacity(settings.batch_size),
        deadline: None,
    };
    // Bytes of the line being read; a read cut short by another branch of the select
    // leaves its bytes here and the next read goes on from them.
    let mut line = Vec::new();
    loop {
        let deadline = pending.deadline;
        let read = tokio::select! {
            read = stdout.read_until(b'\n', &mut line) => read,
            () = sleep_until(deadline) => {
                if !flush(&mut pending, processor, counters, stop).await? {
                    finish_on_stop(child, &mut pending, processor, &settings.command).await;
                    return Ok(RunEnd::Stopped);
                }
                continue;
            }
            () = stop.raised() => {
                finish_on_stop(child, &mut pending, processor, &settings.command).await;
                return Ok(RunEnd::Stopped);
            }
        };
        match read {
            Ok(0) => break,
            Ok(_) => {
                counters::increment(&counters.events_received);
                pending.push(&line, settings.batch_timeout);
                line.clear();
                if pending.events.len() >= settings.batch_size
                    && !flush(&mut pending, processor, counters, stop).await?
                {
                    finish_on_stop(child, &mut pending, processor, &settings.command).await;
                    return Ok(RunEnd::Stopped);
                }
            }
            Err(error) => {
                counters::increment(&counters.event_read_failures);
                warn!(command = %settings.command, %error, "reading the command's output failed");
                break;
            }
        }
    }
    if !flush(&mut pending, processor, counters, stop).await? {
        finish_on_stop(child, &mut pending, processor, &settings.command).await;
        return Ok(RunEnd::Stopped);
    }
    let status = tokio::select! {
        status = child.wait() => status,
        () = stop.raised() => {
            finish_on_stop(child, &mut pending, processor, &settings.command).await;
            return Ok(RunEnd::Stopped);
        }
    };
    log_exit(&settings.command, status);
    Ok(RunEnd::Exited)
}

fn log_exit(command: &str, status: std::io::Result<ExitStatus>) {
    match status {
        Ok(status) => info!(%command, %status, "command exited"),
        Err(error) => warn!(%command, %error, "could not learn how the command exited"),
    }
}

/// Sleeps until `deadline`; never wakes without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(command: &str, shell: Option<&str>) -> ExecSettings {
        ExecSettings {
            command: command.to_string(),
            shell: shell.map(str::to_string),
            restart: false,
            restart_throttle: DEFAULT_RESTART_THROTTLE,
            log_stderr: false,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_timeout: DEFAULT_BATCH_TIMEOUT,
        }
    }

    #[test]
    fn without_a_shell_the_command_is_split_on_whitespace() {
        assert_eq!(
            settings("tail  -F /var/log/x", None).argv(),
            ["tail", "-F", "/var/log/x"]
        );
    }

    #[test]
    fn with_a_shell_the_command_is_its_last_single_argument() {
        assert_eq!(
            settings("for i in 1 2; do echo $i; done", Some("/bin/bash -c")).argv(),
            ["/bin/bash", "-c", "for i in 1 2; do echo $i; done"]
        );
    }

    #[test]
    fn lines_lose_their_newline_and_carriage_return() {
        let mut pending = PendingBatch {
            events: Vec::new(),
            deadline: None,
        };
        pending.push(b"one\r\n", DEFAULT_BATCH_TIMEOUT);
        pending.push(b"two\n", DEFAULT_BATCH_TIMEOUT);
        pending.push(b"last", DEFAULT_BATCH_TIMEOUT);
        let bodies: Vec<&[u8]> = pending.events.iter().map(|event| &event.body[..]).collect();
        assert_eq!(bodies, [&b"one"[..], b"two", b"last"]);
        assert!(pending.deadline.is_some());
    }
}
