//! `channel-agent`: runs the sources, sinks and sink groups of a Flume agent
//! configuration as clients of channeld. See `docs/adapters.md`.

use clap::Parser;
use millrace_adapters::cli::{self, AgentArgs};
use millrace_logging::init_stderr_logging;

fn main() {
    millrace_clidocs::write_if_requested::<AgentArgs>();
    init_stderr_logging();
    let args = AgentArgs::parse();
    let failure_file = args.failure_file.clone();
    if let Err(error) = cli::run(args) {
        eprintln!("channel-agent: {error}");
        if let Some(failure_file) = failure_file {
            cli::record_failure(&failure_file, &error);
        }
        std::process::exit(error.exit_code());
    }
}
