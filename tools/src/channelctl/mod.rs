//! `channelctl`: the operator tool.
//!
//! Scriptable by contract (`docs/contracts.md`, "channelctl's scriptable output"):
//!
//! - `put` reads newline-separated bodies from stdin, commits every `--batch` events
//!   (default 100) and at end of input, and prints `committed TOTAL` after each
//!   successful commit. Non-zero exit on error.
//! - `take` writes each body as one line to stdout, flushes, then commits; it stops after
//!   `--max` events or when a take returns nothing within `--wait-ms` (default 1000);
//!   `--follow` keeps waiting instead.
//! - `stats` prints a table for people, `--json` for scripts.
//! - `validate -f FILE -n AGENT` exits 0 with a summary when the configuration is valid,
//!   78 (EX_CONFIG) listing every error when it is not.
//!
//! - `peek` prints the events at the head of a live channel (headers, body as text or
//!   hex) without taking them.
//!
//! - `top` shows channels, data dirs and adapters live, from the HTTP listener
//!   (`--http`, default `127.0.0.1:41451`).
//!
//! `--server` defaults to `127.0.0.1:41450`, `--channel` to `default`; the auth token
//! comes from `--auth-token` or `MILLRACE_AUTH_TOKEN`.

mod offline_commands;
mod peek;
mod put;
mod stats;
mod take;
mod top;
mod validate;

use std::path::PathBuf;

pub use offline_commands::{ChannelFilesArgs, CheckpointArgs, InspectArgs, ReplayArgs, VerifyArgs};
pub use peek::PeekArgs;
pub use top::TopArgs;

use clap::{Args, Parser, Subcommand};
use millrace_client::{ClientError, ClientOptions, DEFAULT_SERVER_ADDRESS};
use thiserror::Error;

/// The channel a command uses when `--channel` is not given.
pub const DEFAULT_CHANNEL: &str = "default";
/// Events per transaction when `--batch` is not given.
pub const DEFAULT_BATCH_EVENTS: u32 = 100;
/// How long `take` waits for an event before it stops (or, with `--follow`, asks again).
pub const DEFAULT_WAIT_MS: u32 = 1_000;
/// sysexits.h `EX_CONFIG`: `validate` found the configuration invalid.
pub const EXIT_CONFIG_INVALID: i32 = 78;
/// Any other failure.
pub const EXIT_FAILURE: i32 = 1;

/// channelctl: put, take, inspect and check Millrace channels.
#[derive(Debug, Parser)]
#[command(
    name = "channelctl",
    version,
    about = "channelctl: put, take, inspect, verify, checkpoint and replay Millrace channels, \
             and validate Flume configurations"
)]
pub struct ChannelctlArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Put newline-separated bodies from stdin; print `committed TOTAL` after each commit.
    Put(PutArgs),
    /// Take events and write each body as one line to stdout.
    Take(TakeArgs),
    /// Show a channel's counters.
    Stats(StatsArgs),
    /// Show the events at the head of a live channel, with headers and body, without
    /// taking them.
    Peek(PeekArgs),
    /// Check a configuration file without starting channeld.
    Validate(ValidateArgs),
    /// Show a channel's segments, checkpoints, queue, free space and open transactions:
    /// a live channel through the server, or a stopped one's files (with -f or --data-dir).
    Inspect(InspectArgs),
    /// Check every record and checkpoint of a stopped channel; optionally salvage it.
    Verify(VerifyArgs),
    /// Make the server checkpoint a channel now, or rebuild a stopped channel's
    /// checkpoint from its segments (with -f or --data-dir).
    Checkpoint(CheckpointArgs),
    /// Rewind a channel: re-enqueue the events taken since a point (plans unless
    /// --execute); through the server, or on a stopped channel's files (with -f or
    /// --data-dir).
    Replay(ReplayArgs),
    /// A live view of a running channeld: channels, data dirs and adapters, refreshed in
    /// place (plain lines when stdout is not a terminal); reads its HTTP listener.
    Top(TopArgs),
}

/// How to reach the server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// channeld's protocol address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_SERVER_ADDRESS)]
    pub server: String,

    /// The channel.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CHANNEL)]
    pub channel: String,

    /// The server's shared token, if it requires one.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MILLRACE_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
}

impl ServerArgs {
    fn client_options(&self) -> ClientOptions {
        let options = ClientOptions::new(self.server.clone())
            .with_client_name(format!("channelctl {}", env!("CARGO_PKG_VERSION")));
        match &self.auth_token {
            Some(token) => options.with_auth_token(token.clone()),
            None => options,
        }
    }
}

/// `channelctl put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The server, channel and token to use.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Commit every N events (and at end of input).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_EVENTS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
}

/// `channelctl take`.
#[derive(Debug, Args)]
pub struct TakeArgs {
    /// The server, channel and token to use.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Stop after N events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,

    /// Take (and commit) at most N events per transaction.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_EVENTS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,

    /// How long a take waits for an event before channelctl stops.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_WAIT_MS)]
    pub wait_ms: u32,

    /// Keep waiting for events instead of stopping when none arrive.
    #[arg(long)]
    pub follow: bool,
}

/// `channelctl stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The server, channel and token to use.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `channelctl validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Flume agent configuration file.
    #[arg(short = 'f', long = "conf-file", value_name = "FILE")]
    pub conf_file: PathBuf,

    /// The agent to check.
    #[arg(short = 'n', long = "name", value_name = "AGENT")]
    pub name: String,
}

/// Why a command failed.
#[derive(Debug, Error)]
pub enum ChannelctlError {
    /// Talking to the server failed, or the server refused a request.
    #[error("{0}")]
    Client(#[from] ClientError),

    /// A line of `put` whose event no take could ever return from this server.
    #[error(
        "line {line} is not put: its {body_bytes}-byte event would need a {frame_bytes}-byte \
         Events frame to be taken, more than the {max_frame_bytes} bytes this server sends \
         (server.maxFrameBytes); no take could ever return it. Nothing after the last \
         `committed` line was committed"
    )]
    EventNeverTakeable {
        /// The line of stdin (1-based).
        line: u64,
        /// The body's length.
        body_bytes: u64,
        /// The `Events` frame that would carry it.
        frame_bytes: u64,
        /// The server's frame limit.
        max_frame_bytes: u32,
    },

    /// Reading stdin or writing stdout failed.
    #[error("{stream}: {source}")]
    Io {
        /// `stdin` or `stdout`.
        stream: &'static str,
        /// The reason.
        #[source]
        source: std::io::Error,
    },

    /// The configuration is invalid; the problems were already printed.
    #[error("{error_count} configuration error(s)")]
    InvalidConfig {
        /// How many.
        error_count: usize,
    },

    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),

    /// `top` could not install its SIGTERM/SIGINT/SIGHUP handlers.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),

    /// An offline tool failed.
    #[error("{0}")]
    Offline(#[from] crate::offline::ToolError),

    /// The command ran and reported its findings; it exits with this code (for example
    /// `verify` finding damage).
    #[error("exit {exit_code}")]
    Finished {
        /// The exit code.
        exit_code: i32,
    },
}

impl ChannelctlError {
    /// The exit code: 78 for an invalid configuration, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ChannelctlError::InvalidConfig { .. } => EXIT_CONFIG_INVALID,
            ChannelctlError::Offline(error) => error.exit_code(),
            ChannelctlError::Finished { exit_code } => *exit_code,
            _ => EXIT_FAILURE,
        }
    }

    fn stdout(source: std::io::Error) -> Self {
        ChannelctlError::Io {
            stream: "stdout",
            source,
        }
    }

    fn stdin(source: std::io::Error) -> Self {
        ChannelctlError::Io {
            stream: "stdin",
            source,
        }
    }
}

/// Runs a subcommand.
pub fn run(args: ChannelctlArgs) -> Result<(), ChannelctlError> {
    match &args.command {
        Command::Validate(validate) => return validate::run(validate),
        Command::Inspect(inspect) => return offline_commands::inspect(inspect),
        Command::Verify(verify) => return offline_commands::verify(verify),
        Command::Replay(replay) => return offline_commands::replay(replay),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ChannelctlError::Runtime)?;
    runtime.block_on(async {
        match &args.command {
            Command::Put(put) => put::run(put).await,
            Command::Take(take) => take::run(take).await,
            Command::Stats(stats) => stats::run(stats).await,
            Command::Peek(peek) => peek::run(peek).await,
            Command::Checkpoint(checkpoint) => offline_commands::checkpoint(checkpoint).await,
            Command::Top(top) => top::run(top).await,
            Command::Validate(_)
            | Command::Inspect(_)
            | Command::Verify(_)
            | Command::Replay(_) => {
                unreachable!("handled above")
            }
        }
    })
}
