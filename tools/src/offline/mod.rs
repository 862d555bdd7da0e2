//! `channelctl` subcommands that work on a stopped file channel: `inspect`, `verify`
//! (with `--salvage`), `checkpoint` and `replay`.
//!
//! Each subcommand is a function taking the channel ([`ChannelTarget`]) and its parsed
//! options, writing its report to `out` — a table for people, or JSON with `--json`
//! (shapes in `docs/inspect.md`) — and returning the process exit code ([`exit`]). A
//! failure to run at all (no such channel, unreadable directory, channel running) is a
//! [`ToolError`], whose [`ToolError::exit_code`] the binary exits with after printing it.
//!
//! Long work shows a progress bar on stderr when stderr is a terminal, and nothing
//! otherwise ([`progress_for_stderr`]).

mod checkpoint;
mod inspect;
mod replay;
mod salvage;
mod verify;

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use millrace_engine::config::{ChannelConfig, FileChannelConfig};
use millrace_engine::inspect::{InspectError, NoProgress, Progress};
use millrace_engine::storage::{RealFs, Storage};

pub use checkpoint::{checkpoint_offline, CheckpointOptions};
pub use inspect::{inspect, write_inspect_report, InspectOptions, DEFAULT_EVENT_LIMIT};
pub use replay::{replay, write_replay_report, ReplayOptions, ReplayPointSpec};
pub use salvage::{salvage, SalvageOptions};
pub use verify::{verify, VerifyOptions};

/// Exit codes of the offline subcommands. The 6x/7x values are the BSD `sysexits.h`
/// codes, as `channelctl validate` uses 78 (`EX_CONFIG`).
pub mod exit {
    /// Done; nothing wrong.
    pub const OK: i32 = 0;
    /// `verify`: only problems a restart repairs by itself (a torn tail, an unusable
    /// checkpoint).
    pub const REPAIRS_ITSELF: i32 = 1;
    /// `verify`: damage a restart refuses to pass; `salvage`: events were lost.
    pub const DAMAGED: i32 = 2;
    /// A bad option value (a duration or time that does not parse).
    pub const USAGE: i32 = 64;
    /// The channel's directories do not exist.
    pub const NO_INPUT: i32 = 66;
    /// The salvage destination is not empty.
    pub const CANNOT_CREATE: i32 = 73;
    /// Reading or writing a file failed.
    pub const IO_ERROR: i32 = 74;
    /// The channel is open in another process: stop it first.
    pub const TEMPORARY_FAILURE: i32 = 75;
    /// The configuration is invalid, lacks the channel, or the channel is not a file
    /// channel.
    pub const CONFIG: i32 = 78;
}

/// Why an offline subcommand could not run.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The configuration file did not load.
    #[error("{file}: invalid configuration:\n{messages}")]
    Config {
        /// The file.
        file: PathBuf,
        /// Every problem, one per line.
        messages: String,
    },
    /// The agent has no channel of that name.
    #[error("{file}: agent {agent} has no channel named {channel} (it has: {known})")]
    NoSuchChannel {
        /// The file.
        file: PathBuf,
        /// The agent (`-n`).
        agent: String,
        /// The channel asked for.
        channel: String,
        /// The channels it has, comma-separated.
        known: String,
    },
    /// The channel is a memory channel: nothing on disk to inspect.
    #[error("channel {channel} is a {kind} channel; only file channels (and the overflow of a spillable channel) have files to inspect")]
    NotFileChannel {
        /// The channel.
        channel: String,
        /// Its type.
        kind: &'static str,
    },
    /// An option value did not parse.
    #[error("{option}: {problem}")]
    Usage {
        /// The option.
        option: &'static str,
        /// What is wrong with the value.
        problem: String,
    },
    /// The engine could not read or repair the channel.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// Writing the report failed.
    #[error("writing the report failed: {0}")]
    Output(#[from] io::Error),
}

impl ToolError {
    /// The exit code the binary should end with.
    pub fn exit_code(&self) -> i32 {
        match self {
            ToolError::Config { .. }
            | ToolError::NoSuchChannel { .. }
            | ToolError::NotFileChannel { .. } => exit::CONFIG,
            ToolError::Usage { .. } => exit::USAGE,
            ToolError::Output(_) => exit::IO_ERROR,
            ToolError::Inspect(error) => match error {
                InspectError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    exit::NO_INPUT
                }
                InspectError::DestinationNotEmpty { .. } => exit::CANNOT_CREATE,
                InspectError::Open(millrace_engine::OpenError::Locked { .. }) => {
                    exit::TEMPORARY_FAILURE
                }
                InspectError::Open(millrace_engine::OpenError::Corruption { .. }) => exit::DAMAGED,
                _ => exit::IO_ERROR,
            },
        }
    }
}

/// A channel found on disk: its name and settings (directories above all).
#[derive(Debug, Clone)]
pub struct ChannelTarget {
    /// The channel's name.
    pub name: String,
    /// Its settings.
    pub config: FileChannelConfig,
    /// The storage its files are on (the real filesystem outside tests).
    pub storage: Arc<dyn Storage>,
}

impl ChannelTarget {
    /// The channel `channel` of agent `agent` in the Flume properties file `file`
    /// (`-f FILE -n AGENT --channel NAME`). Channels without configured directories use
    /// `./millrace-data/<channel>/` as channeld does. A spillable channel's overflow is
    /// its file channel.
    pub fn from_agent_config(file: &Path, agent: &str, channel: &str) -> Result<Self, ToolError> {
        let loaded = millrace_config::load_agent_config(
            file,
            agent,
            Path::new(millrace_config::DEFAULT_DATA_BASE_DIR),
        )
        .map_err(|errors| ToolError::Config {
            file: file.to_path_buf(),
            messages: errors.messages().join("\n"),
        })?;
        let config = match loaded.channel(channel) {
            Some(ChannelConfig::File(config)) => config.clone(),
            Some(ChannelConfig::Spillable(config)) => config.overflow.clone(),
            Some(ChannelConfig::Memory(_)) => {
                return Err(ToolError::NotFileChannel {
                    channel: channel.to_string(),
                    kind: "memory",
                })
            }
            Some(ChannelConfig::Kafka(_)) => {
                return Err(ToolError::NotFileChannel {
                    channel: channel.to_string(),
                    kind: "kafka",
                })
            }
            None => {
                return Err(ToolError::NoSuchChannel {
                    file: file.to_path_buf(),
                    agent: agent.to_string(),
                    channel: channel.to_string(),
                    known: loaded
                        .channels
                        .iter()
                        .map(|(name, _)| name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        };
        Ok(Self::from_config(channel, config))
    }

    /// A channel given by its directories (`--data-dir DIR… --checkpoint-dir DIR
    /// [--backup-checkpoint-dir DIR]`), with every other setting at its default.
    pub fn from_dirs(
        name: &str,
        data_dirs: Vec<PathBuf>,
        checkpoint_dir: PathBuf,
        backup_checkpoint_dir: Option<PathBuf>,
    ) -> Self {
        let mut config = FileChannelConfig::new(data_dirs, checkpoint_dir);
        config.use_dual_checkpoints = backup_checkpoint_dir.is_some();
        config.backup_checkpoint_dir = backup_checkpoint_dir;
        Self::from_config(name, config)
    }

    /// A channel with the given settings on the real filesystem.
    pub fn from_config(name: &str, config: FileChannelConfig) -> Self {
        ChannelTarget {
            name: name.to_string(),
            config,
            storage: Arc::new(RealFs::auto()),
        }
    }
}

/// Progress of long work: a bar on stderr when it is a terminal, else nothing.
pub fn progress_for_stderr() -> Box<dyn Progress> {
    if io::stderr().is_terminal() {
        Box::new(TerminalProgress::default())
    } else {
        Box::new(NoProgress)
    }
}

/// An indicatif bar per phase.
#[derive(Default)]
struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
}

/// How the bar looks: phase, bar, done/total, rate, time left.
const PROGRESS_TEMPLATE: &str =
    "{msg:>20} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)";

impl Progress for TerminalProgress {
    fn begin(&self, phase: &str, total: u64) {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(PROGRESS_TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(phase.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, units: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(units);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}

/// A Unix time in milliseconds as RFC 3339 (UTC, milliseconds).
pub(crate) fn format_unix_ms(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// An age in milliseconds, to the second, for people ("3m 12s").
pub(crate) fn format_age_ms(age_ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(age_ms / 1000)).to_string()
}

/// A new table in the style every offline report uses.
pub(crate) fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::ASCII_BORDERS_ONLY_CONDENSED)
        .set_header(header.iter().copied());
    table
}

/// Writes a JSON value followed by a newline.
pub(crate) fn write_json(out: &mut dyn Write, value: &serde_json::Value) -> Result<(), ToolError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// `path` as text for reports.
pub(crate) fn display_path(path: &Path) -> String {
    path.display().to_string()
}
