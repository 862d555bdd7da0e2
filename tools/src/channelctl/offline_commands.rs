//! `channelctl inspect`, `verify`, `checkpoint` and `replay`: command-line arguments for
//! the offline tools in [`crate::offline`], and their online forms through the server.
//!
//! A channel on disk is named either by its configuration (`-f FILE -n AGENT --channel
//! NAME`, as channeld reads it) or by its directories (`--data-dir DIR…
//! --checkpoint-dir DIR [--backup-checkpoint-dir DIR]`). Without either, `inspect`,
//! `checkpoint` and `replay` ask the server (`--server ADDR`) about the live channel and
//! print the same report as offline.

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgGroup, Args};
use millrace_client::Client;

use super::{ChannelctlError, ServerArgs, DEFAULT_CHANNEL};
use crate::offline::{
    self, ChannelTarget, CheckpointOptions, InspectOptions, ReplayOptions, ReplayPointSpec,
    ToolError, VerifyOptions,
};

/// Where a stopped channel's files are.
#[derive(Debug, Clone, Args)]
pub struct ChannelFilesArgs {
    /// Flume agent configuration file naming the channel.
    #[arg(
        short = 'f',
        long = "conf-file",
        value_name = "FILE",
        requires = "agent"
    )]
    pub conf_file: Option<PathBuf>,

    /// The agent in that file.
    #[arg(short = 'n', long = "name", value_name = "AGENT")]
    pub agent: Option<String>,

    /// The channel.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CHANNEL)]
    pub channel: String,

    /// A data directory of the channel (repeat for several), instead of `-f`.
    #[arg(long = "data-dir", value_name = "DIR", conflicts_with = "conf_file")]
    pub data_dirs: Vec<PathBuf>,

    /// The channel's checkpoint directory, with `--data-dir`.
    #[arg(long = "checkpoint-dir", value_name = "DIR", requires = "data_dirs")]
    pub checkpoint_dir: Option<PathBuf>,

    /// The backup checkpoint directory, with `--data-dir`.
    #[arg(
        long = "backup-checkpoint-dir",
        value_name = "DIR",
        requires = "data_dirs"
    )]
    pub backup_checkpoint_dir: Option<PathBuf>,
}

impl ChannelFilesArgs {
    fn is_given(&self) -> bool {
        self.conf_file.is_some() || !self.data_dirs.is_empty()
    }

    fn target(&self) -> Result<ChannelTarget, ToolError> {
        match (&self.conf_file, &self.agent) {
            (Some(file), Some(agent)) => {
                ChannelTarget::from_agent_config(file, agent, &self.channel)
            }
            _ => {
                let checkpoint_dir =
                    self.checkpoint_dir
                        .clone()
                        .ok_or_else(|| ToolError::Usage {
                            option: "--checkpoint-dir",
                            problem:
                                "give -f FILE -n AGENT, or --data-dir DIR --checkpoint-dir DIR"
                                    .into(),
                        })?;
                Ok(ChannelTarget::from_dirs(
                    &self.channel,
                    self.data_dirs.clone(),
                    checkpoint_dir,
                    self.backup_checkpoint_dir.clone(),
                ))
            }
        }
    }
}

/// How to reach channeld when a command that also works offline is given no files.
#[derive(Debug, Clone, Args)]
pub struct OnlineArgs {
    /// channeld's protocol address.
    #[arg(long, value_name = "ADDR", default_value = millrace_client::DEFAULT_SERVER_ADDRESS)]
    pub server: String,

    /// The server's shared token, if it requires one.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MILLRACE_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
}

impl OnlineArgs {
    fn for_channel(&self, channel: &str) -> ServerArgs {
        ServerArgs {
            server: self.server.clone(),
            channel: channel.to_string(),
            auth_token: self.auth_token.clone(),
        }
    }
}

/// `channelctl inspect`: offline with `-f` or `--data-dir`, else online through the
/// server (the live channel's report, with its open transactions and counters).
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Where the stopped channel's files are (offline).
    #[command(flatten)]
    pub files: ChannelFilesArgs,

    /// The server to ask (online).
    #[command(flatten)]
    pub online: OnlineArgs,

    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,

    /// Dump events (headers, body as text or hex).
    #[arg(long)]
    pub events: bool,

    /// Dump at most N events.
    #[arg(long, value_name = "N", default_value_t = offline::DEFAULT_EVENT_LIMIT)]
    pub limit: usize,

    /// Dump events from this write-order id on.
    #[arg(long = "from", value_name = "ID")]
    pub from_write_order_id: Option<u64>,
}

/// `channelctl verify` (offline).
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Where the stopped channel's files are (offline).
    #[command(flatten)]
    pub files: ChannelFilesArgs,

    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,

    /// Also write every readable committed event into a new channel under DIR.
    #[arg(long, value_name = "DIR")]
    pub salvage: Option<PathBuf>,
}

/// `channelctl checkpoint`: online through the server, or offline (with `-f` or
/// `--data-dir`) by rebuilding the checkpoint from the segments.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Where the stopped channel's files are (offline).
    #[command(flatten)]
    pub files: ChannelFilesArgs,

    /// The server to ask (online).
    #[command(flatten)]
    pub online: OnlineArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `channelctl replay`: offline with `-f` or `--data-dir` (the channel stopped), else
/// online through the server.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("point").required(true).args(["since", "from_time", "from_id"])))]
pub struct ReplayArgs {
    /// Where the stopped channel's files are (offline).
    #[command(flatten)]
    pub files: ChannelFilesArgs,

    /// The server to ask (online).
    #[command(flatten)]
    pub online: OnlineArgs,

    /// Rewind this far back (`90s`, `15m`, `2h`).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,

    /// Rewind to this time (RFC 3339, or Unix milliseconds).
    #[arg(long = "from-time", value_name = "TIME")]
    pub from_time: Option<String>,

    /// Rewind to this write-order id.
    #[arg(long = "from-id", value_name = "WRITE_ORDER_ID")]
    pub from_id: Option<String>,

    /// Put the events back; without it only the plan is printed.
    #[arg(long)]
    pub execute: bool,

    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs an offline tool and turns its outcome into channelctl's.
fn finish(outcome: Result<i32, ToolError>) -> Result<(), ChannelctlError> {
    match outcome {
        Ok(0) => Ok(()),
        Ok(exit_code) => Err(ChannelctlError::Finished { exit_code }),
        Err(error) => Err(ChannelctlError::Offline(error)),
    }
}

/// Runs one request against the server on a runtime of its own.
fn with_server<T>(
    work: impl std::future::Future<Output = Result<T, ChannelctlError>>,
) -> Result<T, ChannelctlError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ChannelctlError::Runtime)?
        .block_on(work)
}

pub(super) fn inspect(args: &InspectArgs) -> Result<(), ChannelctlError> {
    if !args.files.is_given() {
        if args.events {
            return finish(Err(ToolError::Usage {
                option: "--events",
                problem: "events are read from the channel's files: give -f FILE -n AGENT or \
                          --data-dir (reading them is safe beside a running channel)"
                    .into(),
            }));
        }
        let server = args.online.for_channel(&args.files.channel);
        let report = with_server(async {
            let mut client = Client::connect(server.client_options()).await?;
            Ok(client.inspect(&server.channel).await?)
        })?;
        let report: serde_json::Value =
            serde_json::from_str(&report).map_err(|error| ChannelctlError::Io {
                stream: "the server's inspect report",
                source: error.into(),
            })?;
        let mut stdout = std::io::stdout().lock();
        return finish(offline::write_inspect_report(&report, args.json, &mut stdout).map(|()| 0));
    }
    let options = InspectOptions {
        json: args.json,
        events: args.events,
        limit: args.limit,
        from_write_order_id: args.from_write_order_id,
    };
    let mut stdout = std::io::stdout().lock();
    finish(
        args.files
            .target()
            .and_then(|target| offline::inspect(&target, &options, &mut stdout)),
    )
}

pub(super) fn verify(args: &VerifyArgs) -> Result<(), ChannelctlError> {
    let options = VerifyOptions {
        json: args.json,
        salvage: args.salvage.clone(),
    };
    let mut stdout = std::io::stdout().lock();
    finish(
        args.files
            .target()
            .and_then(|target| offline::verify(&target, &options, &mut stdout)),
    )
}

pub(super) fn replay(args: &ReplayArgs) -> Result<(), ChannelctlError> {
    let point = match (&args.since, &args.from_time, &args.from_id) {
        (Some(since), _, _) => ReplayPointSpec::parse_since(since),
        (_, Some(time), _) => ReplayPointSpec::parse_from_time(time),
        (_, _, Some(id)) => ReplayPointSpec::parse_from_id(id),
        _ => Err(ToolError::Usage {
            option: "--since",
            problem: "give --since, --from-time or --from-id".into(),
        }),
    };
    let point = match point {
        Ok(point) => point,
        Err(error) => return finish(Err(error)),
    };
    if !args.files.is_given() {
        let server = args.online.for_channel(&args.files.channel);
        let report = with_server(async {
            let mut client = Client::connect(server.client_options()).await?;
            Ok(client
                .replay(&server.channel, point.to_wire(), args.execute)
                .await?)
        })?;
        let mut stdout = std::io::stdout().lock();
        return finish(
            offline::write_replay_report(&server.channel, &report, args.json, &mut stdout)
                .map(|()| 0),
        );
    }
    let options = ReplayOptions {
        json: args.json,
        point,
        execute: args.execute,
    };
    let mut stdout = std::io::stdout().lock();
    finish(
        args.files
            .target()
            .and_then(|target| offline::replay(&target, &options, &mut stdout)),
    )
}

pub(super) async fn checkpoint(args: &CheckpointArgs) -> Result<(), ChannelctlError> {
    if args.files.is_given() {
        let options = CheckpointOptions { json: args.json };
        let mut stdout = std::io::stdout().lock();
        return finish(
            args.files
                .target()
                .and_then(|target| offline::checkpoint_offline(&target, &options, &mut stdout)),
        );
    }
    let server = args.online.for_channel(&args.files.channel);
    let mut client = Client::connect(server.client_options()).await?;
    client.checkpoint(&server.channel).await?;
    let text = if args.json {
        format!(
            "{}\n",
            serde_json::json!({ "channel": server.channel, "checkpoint": "written" })
        )
    } else {
        format!("channel {}: checkpoint written\n", server.channel)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(ChannelctlError::stdout)
}
