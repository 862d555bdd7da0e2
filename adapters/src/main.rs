//! `channel-agent`: runs the sources, sinks and sink groups of a Flume agent
//! configuration as clients of channeld. See `docs/adapters.md`.

use std::io::IsTerminal;

use clap::Parser;
use millrace_adapters::cli::{self, AgentArgs};
use tracing_subscriber::EnvFilter;

/// Log filter when `RUST_LOG` is unset.
const DEFAULT_LOG_FILTER: &str = "info";

fn main() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = AgentArgs::parse();
    if let Err(error) = cli::run(args) {
        eprintln!("channel-agent: {error}");
        std::process::exit(error.exit_code());
    }
}
