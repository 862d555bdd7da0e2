//! `channeld`: the Millrace channel server. See `docs/operations.md`.

use clap::Parser;
use millrace_logging::init_stderr_logging;
use millrace_server::cli::ChanneldArgs;
use millrace_server::daemon;

fn main() {
    millrace_clidocs::write_if_requested::<ChanneldArgs>();
    init_stderr_logging();
    let args = ChanneldArgs::parse();
    if let Err(error) = daemon::run(args) {
        eprintln!("channeld: {error}");
        std::process::exit(error.exit_code());
    }
}
